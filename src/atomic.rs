//! Atomic file writes: a reader sees the old file or the new one, never a part.
//! Each file goes to a temporary name in its final directory, is synced, then renamed
//! over the target; the directory is synced so the rename survives a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes one file atomically, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".packyard-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Temp files are created 0600; published files are read by web servers and users.
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Writes several files; on the first failure, removes those already written by this
/// call and any directory it created, and reports the path that failed.
pub fn write_all(files: &[(PathBuf, &[u8])]) -> Result<(), (PathBuf, io::Error)> {
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    let mut written: Vec<&Path> = Vec::new();
    for (path, bytes) in files {
        // Remember which ancestors do not exist yet, to undo them on failure.
        let mut missing = Vec::new();
        let mut d = path.parent();
        while let Some(dir) = d {
            if dir.as_os_str().is_empty() || dir.exists() {
                break;
            }
            missing.push(dir.to_path_buf());
            d = dir.parent();
        }
        if let Err(e) = write(path, bytes) {
            for w in &written {
                let _ = fs::remove_file(w);
            }
            created_dirs.extend(missing);
            // Deepest first; remove_dir only removes empty ones.
            created_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in &created_dirs {
                let _ = fs::remove_dir(d);
            }
            return Err((path.clone(), e));
        }
        written.push(path);
        created_dirs.extend(missing);
    }
    Ok(())
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
}
