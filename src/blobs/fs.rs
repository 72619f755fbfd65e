//! Objects as files under a root directory, the default backend. The names the store
//! gives objects are materialised — a package's path as a hard link of its object, an
//! index tree's current generation as a symlink swapped by rename — so the root is also a
//! repository tree that dnf, apt and zypper read as `file://`. Only this module knows
//! that: new files are unnamed (`O_TMPFILE`) and linked in whole, one `syncfs` makes a
//! batch durable, and reads are opened with `openat2(RESOLVE_BENEATH)` below the root.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::small_files::{self, Identity, Kept, SmallFiles};
use super::{BlobError, Blobs, Body, Data, Meta, Object, check_key, copy_checked, unless_missing};

/// Blobs as files under a root directory.
pub struct FsBlobs {
    root: PathBuf,
    /// The root, opened once: every read is resolved below it by the kernel.
    dir: OnceLock<Arc<File>>,
    /// Directories known to exist, so a publish of many files does not ask again.
    made: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// Small files read before, each checked against its file when read again.
    small: SmallFiles,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> FsBlobs {
        FsBlobs {
            root: root.into(),
            dir: OnceLock::new(),
            made: Default::default(),
            small: SmallFiles::default(),
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
    /// temporary name renamed over the old file. A `fill` error stores nothing. Unless
    /// `replace`, a file already at `key` stays and `Ok(false)` says so.
    fn put_with(
        &self,
        key: &str,
        replace: bool,
        fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        self.make_dir(dir)?;
        // A file system (or kernel, or a missing `/proc`) without unnamed files: a
        // temporary name, then a rename over the old file.
        match link_unnamed(dir, &path, replace, fill).map_err(io_at(&path))? {
            Linked::Stored => return Ok(true),
            Linked::Taken => return Ok(false),
            Linked::Unsupported => {}
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
        if replace {
            tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        } else if let Err(e) = tmp.persist_noclobber(&path) {
            if e.error.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_at(&path)(e.error));
            }
            if !differs(&path, e.file.as_file()).map_err(io_at(&path))? {
                return Ok(false);
            }
            e.file.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        }
        Ok(true)
    }

    /// Stores `body` under `key` (see [`FsBlobs::put_with`]), its bytes checked against
    /// `sha256` as they are written.
    fn put_body(
        &self,
        key: &str,
        body: Body<'_>,
        sha256: Option<&str>,
        replace: bool,
    ) -> Result<bool, BlobError> {
        let mut slice: &[u8];
        let (from, source): (&mut dyn io::Read, &Path) = match body {
            Body::Bytes(bytes) if sha256.is_none() => {
                return self.put_with(key, replace, &mut |f| f.write_all(bytes));
            }
            Body::Bytes(bytes) => {
                slice = bytes;
                (&mut slice, Path::new(key))
            }
            Body::Read { from, source } => (from, source),
        };
        // Set when the bytes differ: the copy then stops with an error, nothing stored.
        let mut refused: Option<BlobError> = None;
        let stored = self.put_with(key, replace, &mut |f| {
            match copy_checked(&mut *from, f, sha256, source)? {
                Ok(()) => Ok(()),
                Err(e) => {
                    refused = Some(e);
                    // Not linked: the unnamed file (or the temporary) goes away.
                    Err(io::Error::other("the source changed since it was checked"))
                }
            }
        });
        match refused {
            Some(e) => Err(e),
            None => stored,
        }
    }
}

/// What [`link_unnamed`] did.
enum Linked {
    Stored,
    /// Not replacing, and a file was at the path: it stays.
    Taken,
    /// Unnamed files cannot be made or linked here; nothing was filled.
    Unsupported,
}

/// Whether the file a create-only put found at `path` is not the object `new` holds (the
/// trait's rule, [`Blobs::put_new`]). A put here names a file only once it is whole, but
/// before the flush: a crash then can leave the name with other bytes.
fn differs(path: &Path, new: &File) -> io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut old = match File::open(path) {
        Ok(f) => f,
        Err(e) if absent(&e) => return Ok(true),
        Err(e) => return Err(e),
    };
    if old.metadata()?.len() != new.metadata()?.len() {
        return Ok(true);
    }
    let mut new = new;
    new.seek(SeekFrom::Start(0))?;
    Ok(!super::same_bytes(&mut old, &mut new)?)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Stores at `path` what `fill` writes into an unnamed file in `dir` (`O_TMPFILE`), linked
/// in once whole (over an old file, when `replace`: under a fresh temporary name, renamed
/// over it): a new file changes its directory once, where a temporary name costs an
/// entry, a rename and a removal, most of a small file's cost. `Unsupported`, before
/// anything is filled, where unnamed files cannot be made or linked: `fill` may read a
/// stream, so it runs once at most.
fn link_unnamed(
    dir: &Path,
    path: &Path,
    replace: bool,
    fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<Linked> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Linking an unnamed file goes through its `/proc/self/fd` name.
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return Ok(Linked::Unsupported);
    }
    // Readable too: a create-only put that finds its name taken compares the bytes.
    let mut f = match fs::OpenOptions::new()
        .read(true)
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
            return Ok(Linked::Unsupported);
        }
        Err(e) => return Err(e),
    };
    // Repository files are read by web servers and users, whatever the umask (one call
    // per file saved where the umask already lets 0644 through, as it usually does).
    if !umask_keeps_0644() {
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    fill(&mut f)?;
    match link_fd(f.as_raw_fd(), path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !replace && !differs(path, &f)? => {
            return Ok(Linked::Taken);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            link_over(dir, path, |tmp| link_fd(f.as_raw_fd(), tmp))?
        }
        r => r?,
    }
    Ok(Linked::Stored)
}

/// Gives the open unnamed file `fd` the name `to`. By the descriptor itself where the
/// kernel lets this process (`AT_EMPTY_PATH`: with `CAP_DAC_READ_SEARCH`, or on Linux 6.10
/// and later for a file it opened), else through its `/proc/self/fd` name, which costs a
/// path walk through `/proc` per file.
fn link_fd(fd: std::os::fd::RawFd, to: &Path) -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static BY_FD: AtomicBool = AtomicBool::new(true);
    if BY_FD.load(Ordering::Relaxed) {
        match link_at(fd, Path::new(""), to, libc::AT_EMPTY_PATH) {
            Ok(()) => return Ok(()),
            // ENOENT or EPERM is also what a kernel that does not allow it answers: the
            // `/proc` name decides, and if it works, it is used from then on.
            Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) => {
                return Err(e);
            }
            Err(_) => {}
        }
    }
    let proc_name = format!("/proc/self/fd/{fd}");
    link_at(
        libc::AT_FDCWD,
        Path::new(&proc_name),
        to,
        libc::AT_SYMLINK_FOLLOW,
    )?;
    BY_FD.store(false, Ordering::Relaxed);
    Ok(())
}

/// Whether this process's umask leaves a file created 0644 as it is. Read from
/// `/proc/self/status` (setting the umask to learn it would race other threads); when it
/// cannot be read, no.
fn umask_keeps_0644() -> bool {
    static KEEPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEPS.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
            .is_some_and(|m| m & 0o644 == 0)
    })
}

/// `linkat(fd, from, AT_FDCWD, to, flags)`.
fn link_at(fd: std::os::fd::RawFd, from: &Path, to: &Path, flags: libc::c_int) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated paths that outlive the call; `fd` is the caller's.
    let linked = unsafe { libc::linkat(fd, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) };
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

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Opens `tail` below the directory `dir` for reading. The kernel resolves the path and
/// refuses any step out of `dir` — through `..`, an absolute symlink, or a symlink that
/// leads outside — while symlinks inside it (index generations) are followed
/// (`openat2` with `RESOLVE_BENEATH`, Linux 5.6+). Older kernels get the same answer
/// from resolving the whole path and comparing it with the directory's.
pub fn open_beneath(dir: &File, tail: &str) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(tail).map_err(io::Error::other)?;
    // SAFETY: open_how is plain integers; all zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory descriptor, a NUL-terminated path, and `how` with its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        return Ok(unsafe { File::from_raw_fd(fd as i32) });
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let base = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let full = fs::canonicalize(base.join(tail))?;
    if !full.starts_with(&base) {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    File::open(full)
}

fn meta_of(m: &fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta {
        len: m.len(),
        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
        etag: format!(
            "\"{:x}-{:x}.{:x}-{:x}\"",
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.len()
        ),
    }
}

/// "Not there" for a read: missing, or a directory in the way.
fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

impl FsBlobs {
    /// The first parts of the keys held (the repositories of a data directory).
    pub fn top_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    fn root_dir(&self) -> Result<Arc<File>, BlobError> {
        if let Some(d) = self.dir.get() {
            return Ok(d.clone());
        }
        let d = Arc::new(File::open(&self.root).map_err(io_at(&self.root))?);
        Ok(self.dir.get_or_init(|| d).clone())
    }

    /// Objects under `dir` (hidden names left out — temporaries, removals under way, old
    /// bookkeeping — but for index generations), as keys starting with `prefix`.
    fn walk(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && !name.contains(".gen-") {
                continue;
            }
            let key = format!("{prefix}/{name}");
            match e.file_type() {
                Ok(t) if t.is_dir() => self.walk(&e.path(), &key, out),
                Ok(t) if t.is_file() => out.push(key),
                _ => {}
            }
        }
    }
}

impl Blobs for FsBlobs {
    fn put(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<(), BlobError> {
        self.put_body(key, body, sha256, true).map(drop)
    }

    /// One link that fails when the name is taken, not a look first: a `stat` per file
    /// was a tenth of storing a cold publish's small packages. A body given for a key
    /// already there is read, compared with the file there and dropped if the same
    /// (rare: a publish a crash cut short, one package under two paths).
    fn put_new(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<bool, BlobError> {
        self.put_body(key, body, sha256, false)
    }

    fn flush(&self) -> Result<(), BlobError> {
        // One syncfs flushes every file, rename and link of the batch.
        let root = File::open(&self.root).map_err(io_at(&self.root))?;
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(io_at(&self.root)(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn open(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<Object>, BlobError> {
        check_key(key)?;
        let dir = self.root_dir()?;
        if let Some(kept) = self.small.get(&dir, key) {
            return Ok(Some(Object::in_memory(
                kept.meta.clone(),
                kept.bytes.clone(),
                range,
            )));
        }
        let mut file = match open_beneath(dir.as_ref(), key) {
            Ok(f) => f,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(io_at(&self.root.join(key))(e)),
        };
        let m = file.metadata().map_err(io_at(&self.root.join(key)))?;
        if !m.is_file() {
            return Ok(None);
        }
        if m.len() > small_files::LARGEST {
            return Ok(Some(Object {
                meta: meta_of(&m),
                data: Data::File(file),
            }));
        }
        // A small file is read whole and kept: the next read of it opens nothing.
        let mut bytes = Vec::with_capacity(m.len() as usize);
        io::Read::read_to_end(&mut file, &mut bytes).map_err(io_at(&self.root.join(key)))?;
        let id = Identity::of(&m);
        let kept = Arc::new(Kept {
            id,
            meta: Meta {
                len: bytes.len() as u64,
                ..meta_of(&m)
            },
            bytes: bytes.into(),
        });
        // Kept only if it did not change while it was read (the backend never writes a
        // file in place, but someone else may have).
        if kept.meta.len == m.len() && file.metadata().is_ok_and(|now| Identity::of(&now) == id) {
            self.small.keep(key, kept.clone());
        }
        Ok(Some(Object::in_memory(
            kept.meta.clone(),
            kept.bytes.clone(),
            range,
        )))
    }

    fn stat(&self, key: &str) -> Result<Option<Meta>, BlobError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn remove(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        self.small.forget(key);
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
            Err(e) if absent(&e) => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn remove_all(&self, prefix: &str) -> Result<(), BlobError> {
        let path = self.path(prefix)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Renamed away first, so readers stop finding any of it at once. Hidden names
        // are not served; a leftover of an interrupted removal is finished by the next
        // removal of the same prefix.
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

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let path = self.path(prefix)?;
        let mut out = Vec::new();
        self.walk(&path, prefix, &mut out);
        out.sort();
        Ok(out)
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let (from, to) = (self.path(from)?, self.path(to)?);
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

    fn link(&self, target: &str, name: &str) -> Result<(), BlobError> {
        self.copy(target, name)
    }

    fn show(&self, dir: &str, generation: &str) -> Result<(), BlobError> {
        let link = self.path(dir)?;
        check_key(generation)?;
        let parent = link.parent().unwrap_or(&self.root).to_path_buf();
        if fs::read_link(&link).ok().as_deref() == Some(Path::new(generation)) {
            return Ok(());
        }
        let base = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{base}.link-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(generation, &tmp).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &link).map_err(io_at(&link))?;
        sync_dir(&parent)
    }

    fn describe(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn is_local(&self) -> bool {
        true
    }

    fn has_direct_readers(&self) -> bool {
        true
    }

    fn shown(&self, dir: &str) -> Option<String> {
        let link = self.path(dir).ok()?;
        let target = fs::read_link(link).ok()?;
        Some(target.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn put_file(b: &FsBlobs, key: &str, source: &Path, sha: &str) -> Result<(), BlobError> {
        let mut from = File::open(source).unwrap();
        b.put(
            key,
            Body::Read {
                from: &mut from,
                source,
            },
            Some(sha),
        )
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
            b.put_now("r/a/file.rpm", bytes).unwrap();
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
        put_file(&b, "r/pkg.deb", &source, &sha).unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes);
        // Streamed over an existing file: the stream is read once, and replaces it.
        let newer = format!("{:x}", Sha256::digest(&bytes[1..]));
        b.put(
            "r/pkg.deb",
            Body::Read {
                from: &mut &bytes[1..],
                source: &source,
            },
            Some(&newer),
        )
        .unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes[1..]);
        put_file(&b, "r/pkg.deb", &source, &sha).unwrap();
        assert_eq!(b.get("r/pkg.deb").unwrap().unwrap(), bytes);
        // Changed since the check: refused, naming both checksums; for a new key and for
        // a replacement, nothing changes at the key and no temporary is left.
        fs::write(&source, b"rewritten").unwrap();
        for key in ["r/new.deb", "r/pkg.deb"] {
            let e = put_file(&b, key, &source, &sha).unwrap_err();
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
            b.put_now(&format!("r/f{i}"), format!("file {i}").as_bytes())
                .unwrap();
            b.put_now(&format!("r/g{i}"), b"other").unwrap();
            b.put_now(&format!("r/packages/a{i}"), b"old").unwrap();
        }
        // Eight threads replacing aliases in one directory at once, many times over, each
        // time with another file; the last one is f<i>.
        std::thread::scope(|s| {
            for i in 0..8 {
                let b = &b;
                s.spawn(move || {
                    for n in 0..200 {
                        let target = if n % 2 == 0 { "g" } else { "f" };
                        b.copy(&format!("r/{target}{i}"), &format!("r/packages/a{i}"))
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
        b.put_now("r/a/one.rpm", b"1").unwrap();
        b.put_now("r/b/two.rpm", b"2").unwrap();
        b.put_now("rest/keep.rpm", b"k").unwrap();
        // A removal interrupted earlier left its trash behind.
        fs::create_dir_all(dir.path().join(".removing-r/old")).unwrap();
        fs::write(dir.path().join(".removing-r/old/f"), b"x").unwrap();
        b.remove_all("r").unwrap();
        b.remove_all("r").unwrap();
        assert_eq!(names(dir.path()), ["rest"]);
        // The directories it had made are made again (this instance remembered them).
        b.put_now("r/a/one.rpm", b"again").unwrap();
        assert_eq!(b.get("r/a/one.rpm").unwrap().unwrap(), b"again");
    }

    #[test]
    fn a_directory_emptied_by_remove_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put_now("r/a/b/x.rpm", b"1").unwrap();
        b.remove("r/a/b/x.rpm").unwrap();
        assert!(!dir.path().join("r/a").exists());
        // The same process writes there again (a server runs for days).
        b.put_now("r/a/b/x.rpm", b"2").unwrap();
        assert_eq!(b.get("r/a/b/x.rpm").unwrap().unwrap(), b"2");
    }

    #[test]
    fn alias_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put_now("r/a/b/file.deb", b"deb").unwrap();
        b.copy("r/a/b/file.deb", "r/apt/pool/main/f/file.deb")
            .unwrap();
        b.copy("r/a/b/file.deb", "r/apt/pool/main/f/file.deb")
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

    #[test]
    fn files_open_only_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("r/a")).unwrap();
        fs::create_dir_all(root.join("other")).unwrap();
        fs::write(root.join("r/a/x.rpm"), b"x").unwrap();
        fs::write(root.join("other/secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../other/secret", root.join("r/leak")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("r/abs")).unwrap();
        std::os::unix::fs::symlink("a", root.join("r/inside")).unwrap();
        let repo = File::open(root.join("r")).unwrap();
        assert!(open_beneath(&repo, "a/x.rpm").is_ok());
        assert!(open_beneath(&repo, "inside/x.rpm").is_ok());
        // The kernel check holds on its own, without the key check.
        for bad in ["leak", "abs", "../other/secret", "a/../../other/secret"] {
            assert!(open_beneath(&repo, bad).is_err(), "{bad:?}");
        }
        // Through the trait, keys are checked first.
        let b = FsBlobs::new(root.join("r"));
        assert!(b.open("a/x.rpm", None).unwrap().is_some());
        assert!(b.open("a/../../other/secret", None).is_err());
        assert!(b.open("leak", None).is_err());
        assert!(
            b.open("a", None).unwrap().is_none(),
            "a directory is no object"
        );
    }

    #[test]
    fn a_shown_generation_is_what_direct_readers_see() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put_now("r/.repodata.gen-1/repomd.xml", b"one").unwrap();
        b.put_now("r/.repodata.gen-2/repomd.xml", b"two").unwrap();
        assert_eq!(b.shown("r/repodata"), None);
        b.show("r/repodata", ".repodata.gen-1").unwrap();
        assert_eq!(
            fs::read(dir.path().join("r/repodata/repomd.xml")).unwrap(),
            b"one"
        );
        b.show("r/repodata", ".repodata.gen-2").unwrap();
        assert_eq!(b.get("r/repodata/repomd.xml").unwrap().unwrap(), b"two");
        assert_eq!(b.shown("r/repodata").as_deref(), Some(".repodata.gen-2"));
        // Generations are objects; the link is a name, not listed.
        assert_eq!(
            b.list("r").unwrap(),
            [
                "r/.repodata.gen-1/repomd.xml",
                "r/.repodata.gen-2/repomd.xml"
            ]
        );
    }
}
