//! Reading a staged prefix once: every directory, file, symlink and hard link with its
//! mode, in a fixed order, with file contents loaded so all formats see the same bytes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::PackError;

/// What an entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    Dir,
    File {
        data: Arc<Vec<u8>>,
        /// Set when this file is a hard link to an earlier entry (in entry order) of the
        /// same inode inside the prefix. A file whose other links are all outside the
        /// prefix is an ordinary file.
        link_to: Option<String>,
    },
    Symlink {
        target: String,
    },
}

/// One path of the staged tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the prefix, `/`-separated, no leading `./` (`usr/bin/tool`).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
}

impl Entry {
    pub fn size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { data, .. } => data.len() as u64,
            _ => 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }
}

/// A directory entry with the usual mode.
pub fn dir_entry(path: String) -> Entry {
    Entry {
        path,
        kind: EntryKind::Dir,
        mode: 0o755,
    }
}

/// `a/b/c` → `a`, `a/b`, `a/b/c`: a path and the directories leading to it.
pub fn dir_chain(path: &str) -> impl Iterator<Item = String> + '_ {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// The order every format writes entries in: by path components, so a directory comes
/// right before its contents (`a`, `a/b`, `a-b`), whatever the bytes of the names.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
}

/// Walks `prefix` (never following symlinks) and loads it.
///
/// Refuses what no package format can hold faithfully: a missing or empty prefix,
/// sockets, devices and FIFOs, names that are not UTF-8 or contain control characters.
pub fn walk(prefix: &Path, progress: &dyn Fn(u64)) -> Result<Vec<Entry>, PackError> {
    let meta = fs::symlink_metadata(prefix).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PackError::PrefixMissing {
                path: prefix.to_path_buf(),
            }
        } else {
            PackError::Io {
                path: prefix.to_path_buf(),
                source,
            }
        }
    })?;
    if !meta.is_dir() {
        return Err(PackError::PrefixNotDir {
            path: prefix.to_path_buf(),
        });
    }
    let mut entries = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    walk_dir(prefix, "", &mut entries, &mut inodes, progress)?;
    if entries.is_empty() {
        return Err(PackError::PrefixEmpty {
            path: prefix.to_path_buf(),
        });
    }
    Ok(entries)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    out: &mut Vec<Entry>,
    inodes: &mut HashMap<(u64, u64), String>,
    progress: &dyn Fn(u64),
) -> Result<(), PackError> {
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err(dir))? {
        let item = item.map_err(io_err(dir))?;
        let full = item.path();
        let name = item
            .file_name()
            .into_string()
            .map_err(|_| PackError::BadFileName {
                path: full.clone(),
                why: "is not valid UTF-8".into(),
            })?;
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(PackError::BadFileName {
                path: full,
                why: format!("contains the control character {c:?}"),
            });
        }
        children.push((name, full));
    }
    children.sort();
    for (name, full) in children {
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if ft.is_dir() {
            out.push(Entry {
                path: path.clone(),
                kind: EntryKind::Dir,
                mode,
            });
            walk_dir(&full, &path, out, inodes, progress)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            let target =
                target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| PackError::BadFileName {
                        path: full.clone(),
                        why: "is a symlink whose target is not valid UTF-8".into(),
                    })?;
            out.push(Entry {
                path,
                kind: EntryKind::Symlink { target },
                mode: 0o777,
            });
        } else if ft.is_file() {
            let link_to = if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                match inodes.get(&key) {
                    Some(first) => Some(first.clone()),
                    None => {
                        inodes.insert(key, path.clone());
                        None
                    }
                }
            } else {
                None
            };
            let data = fs::read(&full).map_err(io_err(&full))?;
            progress(data.len() as u64);
            out.push(Entry {
                path,
                kind: EntryKind::File {
                    data: Arc::new(data),
                    link_to,
                },
                mode,
            });
        } else {
            let what = if ft.is_socket() {
                "a socket"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_block_device() {
                "a block device"
            } else if ft.is_char_device() {
                "a character device"
            } else {
                "not a file, directory or symlink"
            };
            return Err(PackError::SpecialFile { path: full, what });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
        }
    }

    #[test]
    fn dir_chains() {
        let chain: Vec<_> = dir_chain("usr/share/doc").collect();
        assert_eq!(chain, ["usr", "usr/share", "usr/share/doc"]);
        assert_eq!(dir_chain("opt").collect::<Vec<_>>(), ["opt"]);
    }

    #[test]
    fn directories_come_before_their_contents() {
        let mut v = vec![e("a-b"), e("a/b"), e("a"), e("a/b/c"), e("a.b")];
        sort_entries(&mut v);
        let order: Vec<_> = v.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, ["a", "a/b", "a/b/c", "a-b", "a.b"]);
    }
}
