//! Bytes: package files and index files, as immutable-once-written objects addressed by
//! slash-separated keys (`<repo>/<path>`). One trait, [`Blobs`], shaped so that an object
//! store can honour it (DESIGN §6): put with a checked sha256, open with a byte range,
//! stat, list by prefix, remove, copy, an optional presigned URL. Which path serves which
//! object — a package's download-from path, the current generation of an index tree — is
//! the store's business (`repo::Repositories::locate`); a backend only *materialises*
//! those names where direct readers need them ([`Blobs::link`], [`Blobs::show`]), which
//! is how [`FsBlobs`] keeps a repository directory a `file://` repository. [`MemBlobs`]
//! keeps objects in memory and materialises nothing, so tests show that publishing,
//! indexing and serving need no file system under them.

use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub mod conformance;
mod fs;
mod mem;
mod s3;
mod small_files;

pub use fs::FsBlobs;
pub use mem::MemBlobs;
pub use s3::S3Blobs;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{key:?} is not a valid storage path: {why}")]
    BadKey { key: String, why: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// An object store's answer (or none), with what to do about it.
    #[error("object store: {what}")]
    Remote { what: String },
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

/// What [`Blobs::put`] stores.
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// Streamed, never all in memory; `source` names it in errors.
    Read {
        from: &'a mut dyn Read,
        source: &'a Path,
    },
}

impl Body<'_> {
    /// All its bytes, in memory, checked against `sha256` (errors name `key` for bytes
    /// given, the source for a stream).
    pub(crate) fn into_checked(
        self,
        key: &str,
        sha256: Option<&str>,
    ) -> Result<Vec<u8>, BlobError> {
        let mut bytes: &[u8];
        let (from, source): (&mut dyn Read, &Path) = match self {
            Body::Bytes(b) => {
                bytes = b;
                (&mut bytes, Path::new(key))
            }
            Body::Read { from, source } => (from, source),
        };
        let mut out = Vec::new();
        copy_checked(from, &mut out, sha256, source).map_err(|e| BlobError::Io {
            path: source.to_path_buf(),
            source: e,
        })??;
        Ok(out)
    }
}

/// What a reader is told about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub len: u64,
    pub modified: SystemTime,
    /// Changes whenever the bytes may have (quoted, as HTTP sends it).
    pub etag: String,
}

/// An object opened for reading.
pub struct Object {
    pub meta: Meta,
    pub data: Data,
}

impl Object {
    /// An object whose bytes are all in memory, opened with `range`: the bytes of the
    /// range (all of them without one; a range past the end gives what is there).
    pub fn in_memory(meta: Meta, bytes: bytes::Bytes, range: Option<Range<u64>>) -> Object {
        let len = bytes.len() as u64;
        let r = range.unwrap_or(0..len);
        let start = r.start.min(len);
        let end = r.end.clamp(start, len);
        Object {
            meta,
            data: Data::Bytes(bytes.slice(start as usize..end as usize)),
        }
    }

    /// All of its bytes (of the range it was opened with), in memory.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        if let Data::Bytes(b) = self.data {
            return Ok(b.into());
        }
        let mut out = Vec::with_capacity(self.meta.len.min(1 << 26) as usize);
        self.into_reader().read_to_end(&mut out)?;
        Ok(out)
    }

    /// Its bytes (of the range it was opened with), as they are read.
    pub fn into_reader(self) -> Box<dyn Read> {
        match self.data {
            Data::Bytes(b) => Box::new(io::Cursor::new(b)),
            Data::File(f) => Box::new(f),
            Data::Stream(r) => r,
        }
    }

    /// Whether it (opened whole) is the `len` bytes `body` reads: its length first, then
    /// its bytes — how a create-only put tells what it found at its key.
    pub(crate) fn holds(self, len: u64, body: &mut dyn Read) -> io::Result<bool> {
        Ok(self.meta.len == len && same_bytes(&mut self.into_reader(), body)?)
    }
}

/// Whether `a` and `b` read the same bytes to their ends: how a create-only put tells the
/// object it was given from one found at its key that only has its length (what a crash
/// before the flush can leave on a file system without a journal).
pub(crate) fn same_bytes(a: &mut dyn Read, b: &mut dyn Read) -> io::Result<bool> {
    const CHUNK: u64 = 64 << 10;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    loop {
        x.clear();
        y.clear();
        let n = a.take(CHUNK).read_to_end(&mut x)?;
        if n != b.take(CHUNK).read_to_end(&mut y)? || x != y {
            return Ok(false);
        }
        if (n as u64) < CHUNK {
            return Ok(true);
        }
    }
}

/// Whether the object `blobs` has at `key` is the `len` bytes `body` reads (see
/// [`Object::holds`]); `false` when there is none.
pub(crate) fn found_holds<B: Blobs + ?Sized>(
    blobs: &B,
    key: &str,
    len: u64,
    body: &mut dyn Read,
) -> Result<bool, BlobError> {
    let Some(found) = blobs.open(key, None)? else {
        return Ok(false);
    };
    found.holds(len, body).map_err(|source| BlobError::Io {
        path: PathBuf::from(key),
        source,
    })
}

pub enum Data {
    /// The whole object as an open file (a backend on a file system): a server hands it
    /// to the kernel and reads the range it needs itself.
    File(std::fs::File),
    /// The bytes of the range asked for (the whole object without one).
    Bytes(bytes::Bytes),
    /// The bytes of the range asked for (the whole object without one), as they arrive
    /// (an object store's answer): never all in memory.
    Stream(Box<dyn Read + Send>),
}

/// Where bytes live. Keys are checked with [`check_key`] by every method.
pub trait Blobs: Send + Sync {
    /// Stores `body` under `key` atomically (a reader sees all or nothing), durable after
    /// the next [`Blobs::flush`]: many objects, one flush. With `sha256` (hex) the bytes
    /// must hash to it — a source changed since it was checked is refused, and nothing is
    /// stored.
    fn put(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<(), BlobError>;
    /// Like [`Blobs::put`], only where no whole object is at `key` yet — for content-named
    /// keys, whose bytes never change, so a second writer has nothing to add (an object
    /// store is asked to refuse the second put, so two servers racing store it once).
    /// An object there with other bytes than `body` is not taken for it but replaced: it
    /// is what a put cut short left (SeaweedFS keeps an empty object when its client dies
    /// between a put's headers and its body), or a crash before the flush (a file system
    /// without a journal can bring a file back at its length with other bytes). Finding
    /// the key taken is rare (a publish a crash cut short, one package under two paths),
    /// so the object found is read whole to tell. Returns whether it stored.
    fn put_new(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<bool, BlobError> {
        let bytes = body.into_checked(key, sha256)?;
        if found_holds(self, key, bytes.len() as u64, &mut &bytes[..])? {
            return Ok(false);
        }
        self.put(key, Body::Bytes(&bytes), None)?;
        Ok(true)
    }
    /// Makes everything stored, linked and removed so far durable.
    fn flush(&self) -> Result<(), BlobError>;
    /// The object at `key`, if there is one; with `range`, only those bytes of it (as far
    /// as it reaches) where the backend reads into memory.
    fn open(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<Object>, BlobError>;
    fn stat(&self, key: &str) -> Result<Option<Meta>, BlobError>;
    /// Removes `key`; a missing key is not an error.
    fn remove(&self, key: &str) -> Result<(), BlobError>;
    /// Removes every object under `prefix/`: readers stop finding any of it at once where
    /// the backend can, and an interrupted removal is finished by the next one.
    fn remove_all(&self, prefix: &str) -> Result<(), BlobError>;
    /// The keys of the objects under `prefix/`, at any depth, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;
    /// Makes `to` an object with `from`'s bytes (a hard link on a file system, a copy
    /// inside an object store); durable after the next flush.
    fn copy(&self, from: &str, to: &str) -> Result<(), BlobError>;
    /// Makes `name` read as the object `target` for those who read the blobs without the
    /// store — a `file://` repository. The store records the name either way (a package's
    /// path); backends read only through the store do nothing.
    fn link(&self, _target: &str, _name: &str) -> Result<(), BlobError> {
        Ok(())
    }
    /// Makes the directory `dir` show generation `generation` (a sibling prefix holding
    /// its objects) to direct readers, atomically; the store names the current
    /// generation either way. Durable on return.
    fn show(&self, _dir: &str, _generation: &str) -> Result<(), BlobError> {
        Ok(())
    }
    /// The generation direct readers see in `dir`, where there are such readers: what a
    /// data directory written before the store named generations shows.
    fn shown(&self, _dir: &str) -> Option<String> {
        None
    }
    /// Whether some read the objects without the store (a `file://` repository), so a
    /// name must be materialised where they look (see [`Blobs::link`], [`Blobs::show`]).
    fn has_direct_readers(&self) -> bool {
        false
    }
    /// A URL a client may fetch `key` from directly until `ttl` passes, where the backend
    /// can give one (presigned).
    fn url(&self, _key: &str, _ttl: std::time::Duration) -> Option<String> {
        None
    }

    /// Whether reading is quick enough to do on a server's request thread (local files);
    /// otherwise a server reads on its blocking pool.
    fn is_local(&self) -> bool {
        false
    }
    /// Where a person finds `key` (a path on this machine, a URL), for messages.
    fn describe(&self, key: &str) -> String {
        key.to_string()
    }

    /// The whole object at `key`, in memory.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(object) = self.open(key, None)? else {
            return Ok(None);
        };
        let bytes = object.into_bytes().map_err(|source| BlobError::Io {
            path: PathBuf::from(key),
            source,
        })?;
        Ok(Some(bytes))
    }
    fn exists(&self, key: &str) -> Result<bool, BlobError> {
        Ok(self.stat(key)?.is_some())
    }
    /// [`Blobs::put`] of `bytes`, then [`Blobs::flush`].
    fn put_now(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.put(key, Body::Bytes(bytes), None)?;
        self.flush()
    }
}

/// `r`, with "not found" taken as done (removing what is not there).
pub(crate) fn unless_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Copies what `from` reads into `to`, hashing it on the way; an error when it does not
/// hash to `sha256` (nothing of it should then be kept). Shared by the backends.
pub(crate) fn copy_checked(
    from: &mut dyn Read,
    to: &mut dyn io::Write,
    sha256: Option<&str>,
    source: &Path,
) -> Result<Result<(), BlobError>, io::Error> {
    use sha2::{Digest, Sha256};
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
        to.write_all(&buf[..n])?;
    }
    let copied = format!("{:x}", h.finalize());
    Ok(match sha256 {
        Some(checked) if checked != copied => Err(BlobError::Changed {
            path: source.to_path_buf(),
            checked: checked.to_string(),
            copied,
        }),
        _ => Ok(()),
    })
}

/// How many requests to an object store one operation keeps in flight: its round trips,
/// not this machine, bound a batch of small objects.
const IN_FLIGHT: usize = 8;

/// Runs `f` on every item — on this thread where `blobs` is local (files: nothing to wait
/// for), else up to [`IN_FLIGHT`] at a time — and returns the first error, if any.
pub fn for_each<T: Sync>(
    blobs: &dyn Blobs,
    items: &[T],
    f: impl Fn(&T) -> Result<(), BlobError> + Sync,
) -> Result<(), BlobError> {
    if blobs.is_local() || items.len() < 2 {
        return items.iter().try_for_each(&f);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..IN_FLIGHT.min(items.len()))
            .map(|_| {
                s.spawn(|| -> Result<(), BlobError> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        f(item)?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(BlobError::Remote {
                    what: "a request thread panicked".into(),
                })
            })
        })
    })
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

    #[test]
    fn the_memory_backend_behaves() {
        conformance::check(&MemBlobs::default());
    }

    #[test]
    fn the_file_backend_behaves() {
        let dir = tempfile::tempdir().unwrap();
        conformance::check(&FsBlobs::new(dir.path()));
    }
}
