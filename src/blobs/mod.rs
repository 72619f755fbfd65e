//! Bytes: package files and index trees, addressed by slash-separated keys
//! (`<repo>/<download-from path>`). One trait, [`Blobs`], so object storage can come later
//! (DESIGN §6); [`FsBlobs`] keeps them as plain files, so a repository directory is also a
//! `file://` repository.
//!
//! Index directories (`repodata/`, `dists/`) are replaced as a whole: the new files go to a
//! fresh generation directory and a symlink is swapped by rename, so a reader — or a crash —
//! sees the old set or the new one, never a mix, and every index names files that exist.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{key:?} is not a valid storage path: {why}")]
    BadKey { key: String, why: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} changed while it was being published: sha256 {checked} when checked, {copied} when copied"
    )]
    Changed {
        path: PathBuf,
        checked: String,
        copied: String,
    },
}

/// Checks that `key` is a plain relative path: no empty, `.` or `..` parts, no leading
/// `/`, no NUL or backslash, so it can never leave the store's root.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let bad = |why| {
        Err(BlobError::BadKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') {
        return bad("it is absolute");
    }
    if key.contains('\\') || key.chars().any(char::is_control) {
        return bad("it holds a control character or a backslash");
    }
    if key
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return bad("it has an empty, `.` or `..` part");
    }
    Ok(())
}

/// Where bytes live. Keys are checked with [`check_key`] by every method.
pub trait Blobs: Send + Sync {
    /// Stores `bytes` under `key` atomically and durably.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.put_unsynced(key, bytes)?;
        self.sync()
    }
    /// Stores `bytes` under `key` atomically (a reader sees all or nothing), durable only
    /// after the next [`Blobs::sync`]: many files, one flush.
    fn put_unsynced(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    /// Like [`Blobs::put_unsynced`], with the bytes of the file `source`, streamed (never
    /// all in memory), which must still have the SHA-256 `sha256` (hex): a file changed
    /// since it was checked is refused, and nothing is stored.
    fn put_file_unsynced(&self, key: &str, source: &Path, sha256: &str) -> Result<(), BlobError> {
        let mut from = File::open(source).map_err(io_at(source))?;
        self.put_reader_unsynced(key, &mut from, source, sha256)
    }
    /// Like [`Blobs::put_file_unsynced`], with what `from` reads (`source` names it in
    /// errors).
    fn put_reader_unsynced(
        &self,
        key: &str,
        from: &mut dyn io::Read,
        source: &Path,
        sha256: &str,
    ) -> Result<(), BlobError>;
    /// Makes everything stored so far durable.
    fn sync(&self) -> Result<(), BlobError>;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    fn exists(&self, key: &str) -> Result<bool, BlobError>;
    /// Removes `key`; a missing key is not an error.
    fn remove(&self, key: &str) -> Result<(), BlobError>;
    /// Removes `key` and everything under it, if there: readers stop finding any of it
    /// at once, even if the removal itself is interrupted.
    fn remove_tree(&self, key: &str) -> Result<(), BlobError>;
    /// Makes `alias` hold the same bytes as `target` (a hard link on a file system);
    /// durable after the next [`Blobs::sync`].
    fn alias(&self, target: &str, alias: &str) -> Result<(), BlobError>;
    /// Replaces the directory `key` with exactly `files` (relative names → bytes), all at
    /// once. Returns false when it already held exactly these.
    ///
    /// Files of the current set for which `carry` says yes (names that never change
    /// content, like `<sha256>-primary.xml.gz` or `by-hash/SHA256/<sha256>`) stay
    /// reachable in the new set for one more generation, so a client that read the old
    /// `repomd.xml` or `InRelease` a moment ago still finds what it names.
    fn replace_dir(
        &self,
        key: &str,
        files: &[(String, Vec<u8>)],
        carry: &dyn Fn(&str) -> bool,
    ) -> Result<bool, BlobError>;
    /// The file behind `key`, for stores that have one (used to serve and to read back).
    fn local_path(&self, key: &str) -> Option<PathBuf>;
}

/// Blobs as files under a root directory.
pub struct FsBlobs {
    root: PathBuf,
    /// Directories known to exist, so a publish of many files does not ask again.
    made: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> FsBlobs {
        FsBlobs {
            root: root.into(),
            made: Default::default(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn make_dir(&self, dir: &Path) -> Result<(), BlobError> {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if !made.contains(dir) {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            made.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Stores under `key` what `fill` writes into a new file, atomically: an unnamed file
    /// linked in once whole, or (replacing, or where unnamed files are not supported) a
    /// temporary name renamed over the old file. A `fill` error stores nothing.
    fn put_with(
        &self,
        key: &str,
        fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        self.make_dir(dir)?;
        // A file system (or kernel, or a missing `/proc`) without unnamed files: a
        // temporary name, then a rename over the old file.
        if put_new(dir, &path, fill).map_err(io_at(&path))? {
            return Ok(());
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".packyard-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_at(dir))?;
        // Temp files are created 0600; repository files are read by web servers and users.
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(io_at(&path))?;
        fill(tmp.as_file_mut()).map_err(io_at(&path))?;
        tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        Ok(())
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// In a generation directory: the names carried over from the one before.
const CARRIED: &str = ".carried";

/// Files under `dir`, as relative slash-separated names (hidden ones left out).
fn list_files(dir: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => go(root, &path, out),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = path.strip_prefix(root) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out
}

/// Stores at `path` what `fill` writes into an unnamed file in `dir` (`O_TMPFILE`), linked
/// in once whole (over an old file: under a fresh temporary name, renamed over it): a new
/// file changes its directory once, where a temporary name costs an entry, a rename and a
/// removal, most of a small file's cost. `Ok(false)`,
/// before anything is filled, where unnamed files cannot be made or linked: `fill` may
/// read a stream, so it runs once at most.
fn put_new(
    dir: &Path,
    path: &Path,
    fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Linking an unnamed file goes through its `/proc/self/fd` name.
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return Ok(false);
    }
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir)
    {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    // Repository files are read by web servers and users, whatever the umask.
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    fill(&mut f)?;
    let from = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    match link_following(&from, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            link_over(dir, path, |tmp| link_following(&from, tmp))?
        }
        r => r?,
    }
    Ok(true)
}

/// `linkat` that follows `from` when it is a symlink (a `/proc/self/fd` name).
fn link_following(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated paths that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces `to` with a file that `link` gives a name, atomically: `link` makes that
/// name under a fresh temporary name in `dir` (unique per call, so threads replacing
/// files side by side do not take each other's), renamed over `to`.
fn link_over(dir: &Path, to: &Path, link: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".packyard-")
        .suffix(".link")
        .make_in(dir, |p| link(p))?;
    let name = tmp.path().to_path_buf();
    tmp.persist(to).map_err(|e| e.error)?;
    // A rename between two names of one file does nothing, leaving the temporary name.
    unless_missing(fs::remove_file(name))
}

/// `r`, with "not found" taken as done (removing what is not there).
pub(crate) fn unless_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

impl Blobs for FsBlobs {
    fn put_unsynced(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.put_with(key, &mut |f| f.write_all(bytes))
    }

    fn put_reader_unsynced(
        &self,
        key: &str,
        from: &mut dyn io::Read,
        source: &Path,
        sha256: &str,
    ) -> Result<(), BlobError> {
        // Set when the bytes differ: the copy then stops with an error, nothing stored.
        let mut changed: Option<String> = None;
        let stored = self.put_with(key, &mut |f| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n])?;
            }
            let copied = format!("{:x}", h.finalize());
            if copied == sha256 {
                return Ok(());
            }
            changed = Some(copied);
            // Not linked: the unnamed file (or the temporary) goes away.
            Err(io::Error::other("the source changed since it was checked"))
        });
        match changed {
            Some(copied) => Err(BlobError::Changed {
                path: source.to_path_buf(),
                checked: sha256.to_string(),
                copied,
            }),
            None => stored,
        }
    }

    fn sync(&self) -> Result<(), BlobError> {
        // One syncfs flushes every file, rename and link of the batch.
        let root = File::open(&self.root).map_err(io_at(&self.root))?;
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(io_at(&self.root)(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        path.try_exists().map_err(io_at(&path))
    }

    fn remove(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                let dir = path.parent().unwrap_or(&self.root);
                // Leave no empty directories behind, up to the root.
                let mut d = Some(dir);
                while let Some(p) = d {
                    if p == self.root || fs::remove_dir(p).is_err() {
                        break;
                    }
                    // Gone now: the next file put there must make it again.
                    self.made
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(p);
                    d = p.parent();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn remove_tree(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Hidden names are not served; a leftover of an interrupted removal is finished
        // by the next removal of the same key.
        let trash = path.with_file_name(format!(".removing-{name}"));
        // What an interrupted removal left goes first: a rename cannot replace it.
        unless_missing(fs::remove_dir_all(&trash)).map_err(io_at(&trash))?;
        unless_missing(fs::rename(&path, &trash)).map_err(io_at(&path))?;
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| !d.starts_with(&path));
        unless_missing(fs::remove_dir_all(&trash)).map_err(io_at(&trash))
    }

    fn alias(&self, target: &str, alias: &str) -> Result<(), BlobError> {
        let (from, to) = (self.path(target)?, self.path(alias)?);
        let dir = to.parent().unwrap_or(&self.root);
        self.make_dir(dir)?;
        match fs::hard_link(&from, &to) {
            Ok(()) => Ok(()),
            // Already there: unless it is this very file, replace it atomically.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                use std::os::unix::fs::MetadataExt;
                let same =
                    |a: &fs::Metadata, b: &fs::Metadata| (a.dev(), a.ino()) == (b.dev(), b.ino());
                if let (Ok(a), Ok(b)) = (fs::metadata(&from), fs::symlink_metadata(&to))
                    && same(&a, &b)
                {
                    return Ok(());
                }
                link_over(dir, &to, |tmp| fs::hard_link(&from, tmp)).map_err(io_at(&to))
            }
            Err(e) => Err(io_at(&from)(e)),
        }
    }

    fn replace_dir(
        &self,
        key: &str,
        files: &[(String, Vec<u8>)],
        carry: &dyn Fn(&str) -> bool,
    ) -> Result<bool, BlobError> {
        let link = self.path(key)?;
        for (name, _) in files {
            check_key(name)?;
        }
        let parent = link.parent().unwrap_or(&self.root).to_path_buf();
        let base = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut h = Sha256::new();
        for (name, bytes) in files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        // `.<name>.gen-<hash>`: the `gen-` keeps `deb12`'s generations apart from those
        // of a sibling named `deb12.1`.
        let generation = format!(".{base}.gen-{:.16x}", h.finalize());
        let current = fs::read_link(&link).ok();
        if current.as_deref() == Some(Path::new(&generation)) {
            return Ok(false);
        }
        let gen_dir = parent.join(&generation);
        // A leftover of a crashed run is incomplete: start it afresh.
        let _ = fs::remove_dir_all(&gen_dir);
        // Files with the same bytes (APT's by-hash copies) become hard links of one.
        let mut first: std::collections::HashMap<&[u8], PathBuf> = Default::default();
        for (name, bytes) in files {
            let path = gen_dir.join(name);
            let dir = path.parent().unwrap_or(&gen_dir);
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            if let Some(same) = first.get(bytes.as_slice()) {
                fs::hard_link(same, &path).map_err(io_at(&path))?;
                continue;
            }
            let mut f = File::create(&path).map_err(io_at(&path))?;
            f.write_all(bytes).map_err(io_at(&path))?;
            first.insert(bytes, path);
        }
        // Names the old set had and the new one drops stay one generation longer (hard
        // links); `.carried` lists them so they are not carried again.
        if let Some(cur) = &current {
            let old_dir = parent.join(cur);
            let already: Vec<String> = fs::read_to_string(old_dir.join(CARRIED))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            let new_names: std::collections::HashSet<&str> =
                files.iter().map(|(n, _)| n.as_str()).collect();
            let mut carried = Vec::new();
            for name in list_files(&old_dir) {
                if carry(&name) && !new_names.contains(name.as_str()) && !already.contains(&name) {
                    let to = gen_dir.join(&name);
                    let dir = to.parent().unwrap_or(&gen_dir);
                    fs::create_dir_all(dir).map_err(io_at(dir))?;
                    fs::hard_link(old_dir.join(&name), &to).map_err(io_at(&to))?;
                    carried.push(name);
                }
            }
            if !carried.is_empty() {
                fs::write(gen_dir.join(CARRIED), carried.join("\n") + "\n")
                    .map_err(io_at(&gen_dir))?;
            }
        }
        // Everything on disk before the switch.
        self.sync()?;
        let tmp = parent.join(format!(".{base}.link-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&generation, &tmp).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &link).map_err(io_at(&link))?;
        sync_dir(&parent)?;
        // Keep the previous generation for readers still on it; drop older ones.
        let keep = [
            Some(generation.clone()),
            current.map(|c| c.to_string_lossy().into_owned()),
        ];
        let prefix = format!(".{base}.gen-");
        if let Ok(entries) = fs::read_dir(&parent) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && !keep.iter().flatten().any(|k| *k == name) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(true)
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_leave_the_root() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a/",
            "a\0b",
            "a\\b",
            "a\nb.deb",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "a/b.rpm",
            "my-project/x/1.0/el9_x86_64/x-1.0-1.tar.gz",
            "a..b",
        ] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_and_replaced_files_are_whole_and_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        // New (an unnamed file linked in), then replaced (a temporary name and a rename).
        for bytes in [b"first".as_slice(), b"second, longer"] {
            b.put("r/a/file.rpm", bytes).unwrap();
            assert_eq!(b.get("r/a/file.rpm").unwrap().as_deref(), Some(bytes));
            let mode = fs::metadata(dir.path().join("r/a/file.rpm"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // Nothing else is left in the directory: no temporary names.
        assert_eq!(names(&dir.path().join("r/a")), ["file.rpm"]);
    }

    #[test]
    fn a_copied_file_must_still_have_its_checked_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path().join("blobs"));
        let source = dir.path().join("pkg.deb");
        // Bigger than the copy's buffer, so it takes several reads.
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&source, &bytes).unwrap();
        let sha = format!("{:x}", Sha256::digest(&bytes));
        b.put_file_unsynced("r/pkg.deb", &source, &sha).unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes);
        // Streamed over an existing file: the stream is read once, and replaces it.
        let newer = format!("{:x}", Sha256::digest(&bytes[1..]));
        b.put_reader_unsynced("r/pkg.deb", &mut &bytes[1..], &source, &newer)
            .unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes[1..]);
        b.put_file_unsynced("r/pkg.deb", &source, &sha).unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes);
        // Changed since the check: refused, naming both checksums; for a new key and for
        // a replacement, nothing changes at the key and no temporary is left.
        fs::write(&source, b"rewritten").unwrap();
        for key in ["r/new.deb", "r/pkg.deb"] {
            let e = b.put_file_unsynced(key, &source, &sha).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, BlobError::Changed { .. }), "{text}");
            assert!(
                text.contains(&sha) && text.contains("changed while"),
                "{text}"
            );
        }
        assert!(b.get("r/new.deb").unwrap().is_none());
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes);
        assert_eq!(names(&dir.path().join("blobs/r")), ["pkg.deb"]);
    }

    #[test]
    fn aliases_replaced_side_by_side_each_get_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        for i in 0..8 {
            b.put(&format!("r/f{i}"), format!("file {i}").as_bytes())
                .unwrap();
            b.put(&format!("r/g{i}"), b"other").unwrap();
            b.put(&format!("r/packages/a{i}"), b"old").unwrap();
        }
        // Eight threads replacing aliases in one directory at once, many times over, each
        // time with another file; the last one is f<i>.
        std::thread::scope(|s| {
            for i in 0..8 {
                let b = &b;
                s.spawn(move || {
                    for n in 0..200 {
                        let target = if n % 2 == 0 { "g" } else { "f" };
                        b.alias(&format!("r/{target}{i}"), &format!("r/packages/a{i}"))
                            .unwrap();
                    }
                });
            }
        });
        for i in 0..8 {
            let got = b.get(&format!("r/packages/a{i}")).unwrap().unwrap();
            assert_eq!(got, format!("file {i}").as_bytes());
        }
        let names = names(&dir.path().join("r/packages"));
        assert_eq!(names.len(), 8, "{names:?}");
    }

    #[test]
    fn a_removed_tree_goes_whole_and_can_be_stored_into_again() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put("r/a/one.rpm", b"1").unwrap();
        b.put("r/b/two.rpm", b"2").unwrap();
        b.put("rest/keep.rpm", b"k").unwrap();
        // A removal interrupted earlier left its trash behind.
        fs::create_dir_all(dir.path().join(".removing-r/old")).unwrap();
        fs::write(dir.path().join(".removing-r/old/f"), b"x").unwrap();
        b.remove_tree("r").unwrap();
        b.remove_tree("r").unwrap();
        assert_eq!(names(dir.path()), ["rest"]);
        // The directories it had made are made again (this instance remembered them).
        b.put("r/a/one.rpm", b"again").unwrap();
        assert_eq!(b.get("r/a/one.rpm").unwrap().unwrap(), b"again");
    }

    #[test]
    fn a_directory_emptied_by_remove_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put("r/a/b/x.rpm", b"1").unwrap();
        b.remove("r/a/b/x.rpm").unwrap();
        assert!(!dir.path().join("r/a").exists());
        // The same process writes there again (a server runs for days).
        b.put("r/a/b/x.rpm", b"2").unwrap();
        assert_eq!(b.get("r/a/b/x.rpm").unwrap().unwrap(), b"2");
    }

    #[test]
    fn replace_dir_swaps_whole_generations() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        let one = vec![("repomd.xml".to_string(), b"one".to_vec())];
        let two = vec![
            ("repomd.xml".to_string(), b"two".to_vec()),
            ("sub/x".to_string(), b"x".to_vec()),
        ];
        let three = vec![("repomd.xml".to_string(), b"three".to_vec())];
        assert!(b.replace_dir("r/repodata", &one, &|_| false).unwrap());
        assert!(
            !b.replace_dir("r/repodata", &one, &|_| false).unwrap(),
            "unchanged set rewritten"
        );
        assert!(b.replace_dir("r/repodata", &two, &|_| false).unwrap());
        assert_eq!(b.get("r/repodata/repomd.xml").unwrap().unwrap(), b"two");
        assert_eq!(b.get("r/repodata/sub/x").unwrap().unwrap(), b"x");
        assert!(b.replace_dir("r/repodata", &three, &|_| false).unwrap());
        // The current and the previous generation remain, and the link.
        let names = names(&dir.path().join("r"));
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(b.get("r/repodata/repomd.xml").unwrap().unwrap(), b"three");
    }

    #[test]
    fn content_named_files_stay_one_generation_longer() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        let set = |n: &str| {
            vec![
                ("repomd.xml".to_string(), n.as_bytes().to_vec()),
                (format!("{n}-primary.xml.gz"), n.as_bytes().to_vec()),
            ]
        };
        let hashed = |name: &str| name.ends_with("-primary.xml.gz");
        b.replace_dir("r/repodata", &set("a"), &hashed).unwrap();
        b.replace_dir("r/repodata", &set("b"), &hashed).unwrap();
        // A reader of the old repomd.xml still finds what it named...
        assert!(b.exists("r/repodata/a-primary.xml.gz").unwrap());
        assert!(b.exists("r/repodata/b-primary.xml.gz").unwrap());
        // ...for one generation only.
        b.replace_dir("r/repodata", &set("c"), &hashed).unwrap();
        assert!(!b.exists("r/repodata/a-primary.xml.gz").unwrap());
        assert!(b.exists("r/repodata/b-primary.xml.gz").unwrap());
        assert_eq!(b.get("r/repodata/repomd.xml").unwrap().unwrap(), b"c");
    }

    #[test]
    fn alias_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put("r/a/b/file.deb", b"deb").unwrap();
        b.alias("r/a/b/file.deb", "r/apt/pool/main/f/file.deb")
            .unwrap();
        b.alias("r/a/b/file.deb", "r/apt/pool/main/f/file.deb")
            .unwrap();
        assert_eq!(
            b.get("r/apt/pool/main/f/file.deb").unwrap().unwrap(),
            b"deb"
        );
        b.remove("r/a/b/file.deb").unwrap();
        assert!(!dir.path().join("r/a").exists(), "empty directories left");
        assert!(b.exists("r/apt/pool/main/f/file.deb").unwrap());
        b.remove("r/missing").unwrap();
    }
}
