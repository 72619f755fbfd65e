//! Small files read again and again (index files, small packages, build records), kept in
//! memory between reads by the file backend. Every read still asks the file system
//! whether the file at the key is the one kept — one `fstatat` in place of an open, a
//! statx, a read and a close — comparing its device, inode, size, modification and
//! change times (what the ETag is made of, and more), so a file replaced, rewritten or
//! removed is never answered from memory.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::Meta;

/// Files up to this size are kept (most index files and small packages).
pub const LARGEST: u64 = 64 << 10;

/// What the kept files may take in memory all together.
const BUDGET: usize = 32 << 20;

/// Which file a path leads to, and whether it changed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    pub fn of(m: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Of the regular file at `key` below `dir` (a last symlink not followed); `None`
    /// when there is none. The path is not checked to stay below `dir`: an identity read
    /// this way only ever confirms a file first opened by a checked open.
    pub fn at(dir: &File, key: &str) -> io::Result<Option<Identity>> {
        use std::os::fd::AsRawFd;
        let c = std::ffi::CString::new(key).map_err(io::Error::other)?;
        // SAFETY: `stat` is plain integers; all zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory descriptor, a NUL-terminated path, a `stat` to fill.
        let r = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
                _ => Err(e),
            };
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(None);
        }
        Ok(Some(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            len: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }))
    }
}

/// A file kept in memory: its bytes and what was read of it with them.
pub struct Kept {
    pub id: Identity,
    pub meta: Meta,
    pub bytes: Bytes,
}

/// The kept files by key, within [`BUDGET`].
#[derive(Default)]
pub struct SmallFiles {
    kept: Mutex<Shelf>,
}

#[derive(Default)]
struct Shelf {
    files: HashMap<String, Arc<Kept>>,
    bytes: usize,
}

impl SmallFiles {
    /// The file kept for `key`, if the file at `key` below `dir` is still that one.
    pub fn get(&self, dir: &File, key: &str) -> Option<Arc<Kept>> {
        let kept = self.lock().files.get(key).cloned()?;
        match Identity::at(dir, key) {
            Ok(Some(id)) if id == kept.id => Some(kept),
            _ => {
                self.forget(key);
                None
            }
        }
    }

    /// Keeps `file` for `key`; over the budget, others are forgotten first (in no
    /// particular order: the ones read again come back at their next read).
    pub fn keep(&self, key: &str, file: Arc<Kept>) {
        let size = file.bytes.len() + key.len();
        let mut k = self.lock();
        if k.bytes + size > BUDGET {
            let mut freed = 0;
            let goal = k.bytes + size - BUDGET * 3 / 4;
            k.files.retain(|key, f| {
                if freed >= goal {
                    return true;
                }
                freed += f.bytes.len() + key.len();
                false
            });
            k.bytes -= freed.min(k.bytes);
        }
        if let Some(old) = k.files.insert(key.to_string(), file) {
            k.bytes -= (old.bytes.len() + key.len()).min(k.bytes);
        }
        k.bytes += size;
    }

    pub fn forget(&self, key: &str) {
        let mut k = self.lock();
        if let Some(old) = k.files.remove(key) {
            k.bytes -= (old.bytes.len() + key.len()).min(k.bytes);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shelf> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &std::path::Path, key: &str) -> Arc<Kept> {
        let m = std::fs::metadata(dir.join(key)).unwrap();
        Arc::new(Kept {
            id: Identity::of(&m),
            meta: Meta {
                len: m.len(),
                modified: m.modified().unwrap(),
                etag: "\"x\"".into(),
            },
            bytes: std::fs::read(dir.join(key)).unwrap().into(),
        })
    }

    #[test]
    fn a_kept_file_is_answered_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = File::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let small = SmallFiles::default();
        assert!(small.get(&root, "a").is_none());
        small.keep("a", kept(dir.path(), "a"));
        assert_eq!(&small.get(&root, "a").unwrap().bytes[..], b"one");
        // Replaced by another file (a new inode), as every write of the backend does.
        std::fs::write(dir.path().join("a.new"), b"two").unwrap();
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        assert!(small.get(&root, "a").is_none());
        // Forgotten once found changed.
        assert!(small.lock().files.is_empty());
        small.keep("a", kept(dir.path(), "a"));
        // Rewritten in place, same size: the change time moves (or the modification time).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("a"), b"six").unwrap();
        assert!(small.get(&root, "a").is_none());
        small.keep("a", kept(dir.path(), "a"));
        std::fs::remove_file(dir.path().join("a")).unwrap();
        assert!(small.get(&root, "a").is_none());
    }

    #[test]
    fn a_symlink_or_a_directory_is_no_kept_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = File::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("s")).unwrap();
        assert!(Identity::at(&root, "a").unwrap().is_some());
        assert!(Identity::at(&root, "d").unwrap().is_none());
        assert!(Identity::at(&root, "s").unwrap().is_none());
        assert!(Identity::at(&root, "a/x").unwrap().is_none());
        assert!(Identity::at(&root, "missing").unwrap().is_none());
    }

    #[test]
    fn the_budget_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; LARGEST as usize]).unwrap();
        let small = SmallFiles::default();
        let file = kept(dir.path(), "a");
        for i in 0..(2 * BUDGET / LARGEST as usize) {
            small.keep(&format!("k{i}"), file.clone());
            assert!(small.lock().bytes <= BUDGET);
        }
        let k = small.lock();
        let counted: usize = k.files.iter().map(|(k, f)| k.len() + f.bytes.len()).sum();
        assert_eq!(counted, k.bytes);
        assert!(k.files.len() > BUDGET / LARGEST as usize / 2);
    }
}
