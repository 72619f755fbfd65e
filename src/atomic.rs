//! Atomic file writes: a reader sees the old file or the new one, never a part.
//! Each file goes to a temporary name in its final directory, is synced, then renamed
//! over the target; the directory is synced so the rename survives a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes one file atomically, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_all(&[(path.to_path_buf(), bytes)]).map_err(|(_, e)| e)
}

/// Writes several files as one batch: every file goes to a synced temporary first, and
/// only when all are there are they renamed into place, and each directory synced once.
/// A failure before the renames removes the temporaries and any directory this call
/// created, so nothing of the batch is left; it reports the path that failed.
pub fn write_all(files: &[(PathBuf, &[u8])]) -> Result<(), (PathBuf, io::Error)> {
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    let mut staged: Vec<(tempfile::TempPath, &Path)> = Vec::new();
    for (path, bytes) in files {
        if let Err(e) = stage(path, bytes, &mut created_dirs).map(|t| staged.push((t, path))) {
            drop(staged); // TempPath removes its file on drop.
            remove_created(created_dirs);
            return Err((path.clone(), e));
        }
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (tmp, path) in staged {
        tmp.persist(path)
            .map_err(|e| (path.to_path_buf(), e.error))?;
        let dir = parent(path);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    // New directories must reach the disk too: their parents hold their names.
    for d in &created_dirs {
        if !dirs.contains(&parent(d)) {
            dirs.push(parent(d));
        }
    }
    for dir in dirs {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (dir.to_path_buf(), e))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a synced temporary beside `path`, noting the directories it made.
fn stage(path: &Path, bytes: &[u8], created: &mut Vec<PathBuf>) -> io::Result<tempfile::TempPath> {
    let dir = parent(path);
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    let made = fs::create_dir_all(dir);
    created.extend(missing);
    made?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".packyard-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // Temp files are created 0600; published files are read by web servers and users.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    Ok(tmp.into_temp_path())
}

/// Removes directories this batch created, deepest first (only empty ones go).
fn remove_created(mut dirs: Vec<PathBuf>) {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        let _ = fs::remove_dir(d);
    }
}

/// An exclusive `flock` on a file (created if missing), held until dropped: it serialises
/// processes on one machine, and the threads of one.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; the lock goes with the file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failure_undoes_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, b"a file, not a directory").unwrap();
        let files = [
            (dir.path().join("new/one"), &b"1"[..]),
            (blocker.join("two"), &b"2"[..]),
        ];
        let (failed, _) = write_all(&files).unwrap_err();
        assert_eq!(failed, blocker.join("two"));
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn nothing_is_replaced_until_every_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("keep");
        fs::write(&keep, b"old").unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, b"a file, not a directory").unwrap();
        let files = [(keep.clone(), &b"new"[..]), (blocker.join("x"), &b"x"[..])];
        write_all(&files).unwrap_err();
        assert_eq!(fs::read(&keep).unwrap(), b"old");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["blocker", "keep"], "a temporary was left behind");
    }
}
