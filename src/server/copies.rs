//! Small files a server keeps in memory when its store is shared with other processes
//! (PostgreSQL), so that a hit asks neither the database nor the object store. What a
//! path of a repository read is kept at the repository's version, and answered from
//! memory only while the server's lease on the store's changes holds and the version
//! is still the one the store last gave.
//!
//! A thread of its own ([`follow`]) renews the lease about every second, and at once
//! when a batch changes a repository; every batch of the store waits until each live
//! server has acknowledged it (`Store::follow`). So once a write is answered — an
//! upload, a CLI publish, a delete — no server answers from memory what it changed.
//! Without a lease (the database out of reach, the thread late) nothing is answered
//! from memory, and a server whose lease lapsed starts afresh where versions moved.
//!
//! Files written without a store batch after them (build records and logs) are never
//! kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::blobs::Meta;
use crate::store::{Follower, StoreError};

/// Objects up to this size are kept (index files, small packages and tarballs).
pub const LARGEST: u64 = 64 << 10;

/// What the kept files may take in memory all together; past it, the largest
/// repository's copies go.
const BUDGET: usize = 64 << 20;

/// A lease as the store records it; batches wait at most this long for a server that
/// stopped renewing it.
const LEASE: Duration = Duration::from_secs(5);
/// Copies are used for this long after the renewal was sent: the store's lease began
/// later, so it is still running when this one ends.
const USE_FOR: Duration = Duration::from_secs(4);
/// How often the lease is renewed when nothing changes.
const RENEW: Duration = Duration::from_secs(1);

/// A kept object: its metadata and every byte of it.
pub struct KeptFile {
    pub meta: Meta,
    pub bytes: Bytes,
}

#[derive(Default)]
pub struct Copies {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Until when copies may be answered (the lease); `None`: not now.
    until: Option<Instant>,
    /// Every repository's version, as the last renewal gave them.
    versions: HashMap<String, i64>,
    /// Per repository, the copies read at its version in `versions`.
    repos: HashMap<String, HashMap<String, Arc<KeptFile>>>,
    bytes: usize,
}

impl Inner {
    fn valid(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }
}

impl Copies {
    /// The copy of `path` of `repo`, if one is kept and may be answered now.
    pub fn get(&self, repo: &str, path: &str) -> Option<Arc<KeptFile>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if !inner.valid() {
            return None;
        }
        inner.repos.get(repo)?.get(path).cloned()
    }

    /// The version of `repo` that a copy read from now on is kept at ([`Copies::keep`]);
    /// `None` when none would be (no lease, a repository no batch versioned yet, a build
    /// file).
    pub fn version(&self, repo: &str, path: &str) -> Option<i64> {
        if crate::paths::is_build_file(path) {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if !inner.valid() {
            return None;
        }
        inner.versions.get(repo).copied()
    }

    /// Keeps `copy` of `path` of `repo`, read after [`Copies::version`] gave `version`:
    /// only while that is still the repository's version (a copy read across a change
    /// may hold bytes of either side).
    pub fn keep(&self, repo: &str, path: &str, version: i64, copy: KeptFile) {
        if copy.bytes.len() as u64 > LARGEST {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if !inner.valid() || inner.versions.get(repo) != Some(&version) {
            return;
        }
        if inner.bytes + copy.bytes.len() > BUDGET {
            inner.drop_largest();
        }
        inner.bytes += copy.bytes.len();
        let before = inner
            .repos
            .entry(repo.to_string())
            .or_default()
            .insert(path.to_string(), Arc::new(copy));
        if let Some(b) = before {
            inner.bytes -= b.bytes.len();
        }
    }

    /// A read of the store gave these versions: copies of repositories whose version
    /// moved (or that are gone) are dropped.
    pub fn moved_to(&self, versions: HashMap<String, i64>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut inner.versions, versions);
        let moved: Vec<String> = inner
            .repos
            .keys()
            .filter(|r| old.get(*r) != inner.versions.get(*r))
            .cloned()
            .collect();
        for r in moved {
            inner.drop_repo(&r);
        }
    }

    /// The lease was renewed by an acknowledgement sent at `sent`: copies may be
    /// answered for [`USE_FOR`] from then.
    pub fn leased(&self, sent: Instant) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).until = Some(sent + USE_FOR);
    }

    /// The lease could not be renewed: nothing is answered from memory until it is.
    pub fn lapsed(&self) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).until = None;
    }
}

impl Inner {
    fn drop_repo(&mut self, repo: &str) {
        if let Some(files) = self.repos.remove(repo) {
            self.bytes -= files.values().map(|c| c.bytes.len()).sum::<usize>();
        }
    }

    fn drop_largest(&mut self) {
        let largest = self
            .repos
            .iter()
            .max_by_key(|(_, files)| files.values().map(|c| c.bytes.len()).sum::<usize>())
            .map(|(r, _)| r.clone());
        if let Some(r) = largest {
            self.drop_repo(&r);
        }
    }
}

/// What starts following a store's changes: `Store::follow`.
pub type Start = dyn Fn() -> Result<Option<Box<dyn Follower>>, StoreError> + Send;

/// Follows the store's changes for `copies` until `stopped`, on a thread of its own; a
/// store only this process writes has none to follow (and nothing is kept).
pub fn follow(copies: Arc<Copies>, start: Box<Start>, stopped: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("packyard-follow".into())
        .spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let mut follower = match start() {
                    Ok(Some(f)) => f,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!("following the store's changes: {e}; trying again");
                        std::thread::sleep(RENEW);
                        continue;
                    }
                };
                // Registered first, holding nothing that may be answered: from here on
                // every batch waits for this server, and the first read below sees every
                // batch before.
                copies.lapsed();
                let mut round = follower.acknowledge(None, LEASE);
                while round.is_ok() && !stopped.load(Ordering::SeqCst) {
                    round = (|| {
                        // Applied before acknowledged: a batch answered after this
                        // acknowledgement finds its changes dropped here.
                        let (seen, versions) = follower.read()?;
                        copies.moved_to(versions);
                        let sent = Instant::now();
                        follower.acknowledge(Some(&seen), LEASE)?;
                        copies.leased(sent);
                        follower.wait(RENEW)
                    })();
                }
                if let Err(e) = round {
                    copies.lapsed();
                    tracing::warn!(
                        "following the store's changes: {e}; files are read from the store \
                         until it answers again"
                    );
                    std::thread::sleep(RENEW);
                }
            }
            copies.lapsed();
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::warn!("cannot start following the store's changes: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(text: &str) -> KeptFile {
        KeptFile {
            meta: Meta {
                len: text.len() as u64,
                modified: std::time::UNIX_EPOCH,
                etag: format!("\"{text}\""),
            },
            bytes: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    fn versions(v: &[(&str, i64)]) -> HashMap<String, i64> {
        v.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    }

    /// One round of the follower: read, then acknowledged at `sent`.
    fn renew(c: &Copies, v: &[(&str, i64)], sent: Instant) {
        c.moved_to(versions(v));
        c.leased(sent);
    }

    #[test]
    fn nothing_is_kept_or_answered_without_a_lease() {
        let c = Copies::default();
        assert_eq!(c.version("r", "a.tar.gz"), None);
        renew(&c, &[("r", 1)], Instant::now());
        let v = c.version("r", "a.tar.gz").unwrap();
        c.keep("r", "a.tar.gz", v, copy("a"));
        assert_eq!(&c.get("r", "a.tar.gz").unwrap().bytes[..], b"a");
        c.lapsed();
        assert!(c.get("r", "a.tar.gz").is_none());
        assert_eq!(c.version("r", "a.tar.gz"), None);
        // A lease that ran out by itself.
        renew(&c, &[("r", 1)], Instant::now() - USE_FOR);
        assert!(c.get("r", "a.tar.gz").is_none());
    }

    #[test]
    fn a_moved_version_drops_that_repository_only() {
        let c = Copies::default();
        renew(&c, &[("r", 1), ("s", 7)], Instant::now());
        c.keep("r", "a", 1, copy("a"));
        c.keep("s", "b", 7, copy("b"));
        renew(&c, &[("r", 2), ("s", 7)], Instant::now());
        assert!(c.get("r", "a").is_none());
        assert!(c.get("s", "b").is_some());
        // A repository gone from the store goes too.
        renew(&c, &[("r", 2)], Instant::now());
        assert!(c.get("s", "b").is_none());
        assert_eq!(c.inner.read().unwrap().bytes, 0);
    }

    #[test]
    fn a_copy_read_across_a_change_is_not_kept() {
        let c = Copies::default();
        renew(&c, &[("r", 1)], Instant::now());
        let v = c.version("r", "a").unwrap();
        // A batch moved the repository on while the copy was being read.
        renew(&c, &[("r", 2)], Instant::now());
        c.keep("r", "a", v, copy("old"));
        assert!(c.get("r", "a").is_none());
        // Never versioned: not kept.
        assert_eq!(c.version("new", "a"), None);
    }

    #[test]
    fn build_files_and_large_objects_are_not_kept() {
        let c = Copies::default();
        renew(&c, &[("r", 1)], Instant::now());
        assert_eq!(c.version("r", "x/a-1.0.build.json"), None);
        assert_eq!(c.version("r", "x/a-1.0.build.log"), None);
        let big = "x".repeat(LARGEST as usize + 1);
        c.keep("r", "big", 1, copy(&big));
        assert!(c.get("r", "big").is_none());
    }

    #[test]
    fn the_budget_drops_the_largest_repository() {
        let c = Copies::default();
        renew(&c, &[("big", 1), ("small", 1)], Instant::now());
        let file = "x".repeat(LARGEST as usize);
        c.keep("small", "s", 1, copy("s"));
        for i in 0..BUDGET / LARGEST as usize {
            c.keep("big", &i.to_string(), 1, copy(&file));
        }
        // The last one did not fit: the largest repository's copies went first.
        assert!(c.get("big", "0").is_none());
        assert!(c.get("small", "s").is_some());
        assert!(c.inner.read().unwrap().bytes <= BUDGET);
    }
}
