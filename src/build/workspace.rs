//! A workspace's own safety and upkeep: one build at a time in it (an exclusive lock on
//! `_output/.lock`, which says who holds it), `_output/` as only the packyard version
//! that wrote it knows it (`_output/.packyard-version`; another version's is cleared),
//! and the downloads its builds share (`_output/.downloads`) kept while they are used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Who holds a workspace: what its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// RFC 3339.
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {}, `{}`, started {}",
            self.pid, self.command, self.started
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("workspace {workspace} is in use by another build ({holder})")]
    Busy { workspace: PathBuf, holder: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl WorkspaceError {
    pub fn hint(&self) -> String {
        match self {
            WorkspaceError::Busy { .. } => {
                "wait for it to finish, or build in another --workspace".into()
            }
            WorkspaceError::Io { .. } => "check the workspace's permissions and disk".into(),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A workspace held by this process until dropped (the lock goes with the descriptor,
/// also when the process dies).
#[derive(Debug)]
pub struct Held {
    _file: File,
    /// The version `_output/` was written by, when it was another and was cleared.
    pub cleared: Option<String>,
    /// Downloads removed as long unused.
    pub pruned: Pruned,
}

/// Where a workspace's builds keep their downloads (below `_output/`), shared by its
/// components and kept between builds.
pub const DOWNLOADS: &str = ".downloads";

/// A download no build of the workspace has used for this long is removed (each use
/// marks it used: its modification time).
pub const DOWNLOADS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// A partial download (`*.part`) is continued by the next build that wants the file; one
/// left this long is removed.
const PARTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The downloads of `workspace`.
pub fn downloads(workspace: &Path) -> PathBuf {
    workspace.join("_output").join(DOWNLOADS)
}

/// What pruning removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub files: u64,
    pub bytes: u64,
}

/// Removes the downloads of `workspace` unused for [`DOWNLOADS_KEPT`] (partial ones after
/// a day), and directories left empty. Only while the workspace is held: no build of it
/// is fetching.
pub fn prune_downloads(workspace: &Path) -> Result<Pruned, WorkspaceError> {
    prune_older(&downloads(workspace), SystemTime::now())
}

fn prune_older(dir: &Path, now: SystemTime) -> Result<Pruned, WorkspaceError> {
    let mut pruned = Pruned::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(pruned),
        Err(e) => return Err(io_at(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_at(dir))?;
        let path = e.path();
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if meta.is_dir() {
            let inner = prune_older(&path, now)?;
            pruned.files += inner.files;
            pruned.bytes += inner.bytes;
            // Left empty: gone too (another entry keeps it).
            let _ = fs::remove_dir(&path);
            continue;
        }
        let kept = if path.extension().is_some_and(|x| x == "part") {
            PARTS_KEPT
        } else {
            DOWNLOADS_KEPT
        };
        let unused = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > kept);
        if unused {
            fs::remove_file(&path).map_err(io_at(&path))?;
            pruned.files += 1;
            pruned.bytes += meta.len();
        }
    }
    Ok(pruned)
}

/// The stamp of the packyard that writes `_output/`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Takes `workspace` for this build: fails at once, naming the holder, while another
/// build holds it; then clears `_output/` (but the lock) if another packyard version
/// wrote it, and stamps it with this one; and prunes downloads long unused.
pub fn hold(workspace: &Path) -> Result<Held, WorkspaceError> {
    let output = workspace.join("_output");
    fs::create_dir_all(&output).map_err(io_at(&output))?;
    let path = output.join(".lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    // SAFETY: flock on a descriptor this File owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_at(&path)(err));
        }
        let mut said = String::new();
        let _ = file.read_to_string(&mut said);
        let holder = serde_json::from_str::<Holder>(&said)
            .map(|h| h.to_string())
            .unwrap_or_else(|_| "a build that has not said who it is yet".into());
        return Err(WorkspaceError::Busy {
            workspace: workspace.to_path_buf(),
            holder,
        });
    }
    let me = Holder {
        pid: std::process::id(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = serde_json::to_string(&me).unwrap_or_default();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(io_at(&path))?;
    let cleared = stamp(&output)?;
    let pruned = prune_downloads(workspace)?;
    Ok(Held {
        _file: file,
        cleared,
        pruned,
    })
}

/// Clears `output` (but its lock) when another version wrote it — or one from before
/// stamps, when it holds anything — and stamps it; the other version, if so.
fn stamp(output: &Path) -> Result<Option<String>, WorkspaceError> {
    let path = output.join(".packyard-version");
    let written = fs::read_to_string(&path).ok().map(|v| v.trim().to_string());
    if written.as_deref() == Some(VERSION) {
        return Ok(None);
    }
    let others: Vec<fs::DirEntry> = fs::read_dir(output)
        .map_err(io_at(output))?
        .flatten()
        .filter(|e| e.file_name() != ".lock")
        .collect();
    let cleared = match written {
        Some(v) => Some(v),
        None => (!others.is_empty()).then(|| "an earlier version (no stamp)".to_string()),
    };
    if cleared.is_some() {
        for e in others {
            let p = e.path();
            let gone = if e.file_type().map_err(io_at(&p))?.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            gone.map_err(io_at(&p))?;
        }
    }
    crate::atomic::write(&path, format!("{VERSION}\n").as_bytes()).map_err(io_at(&path))?;
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_another_versions_output_is_cleared() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path();
        fs::create_dir_all(ws.join("_output/m/prefix")).unwrap();
        fs::write(ws.join("_output/.packyard-version"), "0.0.1\n").unwrap();
        let held = hold(ws).unwrap();
        assert_eq!(held.cleared.as_deref(), Some("0.0.1"));
        assert!(!ws.join("_output/m").exists());
        // A second holder (another descriptor: flock locks belong to the open file).
        match hold(ws) {
            Err(WorkspaceError::Busy { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        fs::create_dir_all(ws.join("_output/m")).unwrap();
        let again = hold(ws).unwrap();
        assert_eq!(again.cleared, None, "this version's output stays");
        assert!(ws.join("_output/m").exists());
    }

    #[test]
    fn downloads_long_unused_are_pruned_and_used_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let dir = downloads(t.path());
        let file = |rel: &str, age_days: u64| {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"12345").unwrap();
            let when = SystemTime::now() - Duration::from_secs(age_days * 24 * 3600);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        file("a/old.tar.gz", 31);
        file("a/used.tar.gz", 29);
        file("b/only-old.tar.gz", 40);
        file("b/c/left.tar.gz.part", 2);
        file("fresh.tar.gz.part", 0);
        let pruned = prune_downloads(t.path()).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                files: 3,
                bytes: 15
            }
        );
        assert!(dir.join("a/used.tar.gz").exists());
        assert!(dir.join("fresh.tar.gz.part").exists());
        for gone in ["a/old.tar.gz", "b", "b/c/left.tar.gz.part"] {
            assert!(!dir.join(gone).exists(), "{gone}");
        }
        // Holding the workspace (of this version) prunes; nothing to prune is no error.
        fs::write(
            t.path().join("_output/.packyard-version"),
            format!("{VERSION}\n"),
        )
        .unwrap();
        file("x/old.tar.gz", 60);
        assert_eq!(hold(t.path()).unwrap().pruned.files, 1);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(prune_downloads(t.path()).unwrap(), Pruned::default());
    }
}
