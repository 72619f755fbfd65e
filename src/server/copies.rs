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
        // A short read is never kept (nor answered whole from here).
        if copy.bytes.len() as u64 > LARGEST || copy.bytes.len() as u64 != copy.meta.len {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if !inner.valid() || inner.versions.get(repo) != Some(&version) {
            return;
        }
        while inner.bytes + copy.bytes.len() > BUDGET && !inner.repos.is_empty() {
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
    /// moved (or that are gone) are dropped. Returns every repository whose version
    /// moved, appeared or went.
    pub fn moved_to(&self, versions: HashMap<String, i64>) -> Vec<String> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut inner.versions, versions);
        let new = &inner.versions;
        let moved: Vec<String> = old
            .keys()
            .chain(new.keys().filter(|r| !old.contains_key(*r)))
            .filter(|r| old.get(*r) != new.get(*r))
            .cloned()
            .collect();
        for r in &moved {
            inner.drop_repo(r);
        }
        moved
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

/// Follows the store's changes for `state.copies` until `stopped`, on a thread of its
/// own; a store only this process writes has none to follow (and nothing is kept).
/// What file serving keeps of a repository (`server::known`) is forgotten when its
/// version moves, and, like the copies, neither kept nor answered past the lease.
pub fn follow(state: super::Shared, stopped: Arc<AtomicBool>) {
    let lapsed = |state: &super::Shared| {
        state.copies.lapsed();
        state.known.lapsed();
    };
    std::thread::Builder::new()
        .name("packyard-follow".into())
        .spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let mut follower = match state.repos.store.follow() {
                    Ok(Some(f)) => f,
                    Ok(None) => return,
                    Err(e) => {
                        // A shared store not followed yet: nothing is kept meanwhile.
                        lapsed(&state);
                        tracing::warn!("following the store's changes: {e}; trying again");
                        std::thread::sleep(RENEW);
                        continue;
                    }
                };
                // Registered first, holding nothing that may be answered: from here on
                // every batch waits for this server, and the first read below sees every
                // batch before.
                lapsed(&state);
                let mut held = Instant::now();
                let mut round = follower.acknowledge(None, LEASE).map(|()| false);
                while let Ok(quiet) = round
                    && !stopped.load(Ordering::SeqCst)
                {
                    round = one_round(&state, &mut *follower, quiet, &mut held);
                }
                if let Err(e) = round {
                    lapsed(&state);
                    tracing::warn!(
                        "following the store's changes: {e}; files are read from the store \
                         until it answers again"
                    );
                    std::thread::sleep(RENEW);
                }
            }
            lapsed(&state);
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::warn!("cannot start following the store's changes: {e}"));
}

/// One round of a follower (after waiting for a change when the last one was `quiet`):
/// read every version, drop what moved, acknowledge the read. `held`: when the lease was
/// last renewed. Returns whether the lease held throughout, so copies may be answered;
/// if not, the caller runs another round at once.
fn one_round(
    state: &super::Shared,
    follower: &mut dyn Follower,
    quiet: bool,
    held: &mut Instant,
) -> Result<bool, StoreError> {
    if quiet {
        follower.wait(RENEW)?;
    }
    // Applied before acknowledged: a batch answered after this acknowledgement finds
    // its changes dropped here.
    let (seen, versions) = follower.read()?;
    for repo in state.copies.moved_to(versions) {
        state.known.forget(&repo);
    }
    let sent = Instant::now();
    follower.acknowledge(Some(&seen), LEASE)?;
    // The lease held from the last acknowledgement to this one: no batch went
    // unacknowledged between the read and now. Else (a stall past the lease) a batch
    // may have been answered without this server; the next read shows it.
    let held_on = Instant::now() < *held + USE_FOR;
    *held = sent;
    if held_on {
        state.copies.leased(sent);
        state.known.leased(sent + USE_FOR);
    }
    Ok(held_on)
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
    fn a_read_names_every_repository_that_moved_came_or_went() {
        let c = Copies::default();
        assert_eq!(c.moved_to(versions(&[("r", 1), ("s", 1)])).len(), 2);
        let mut moved = c.moved_to(versions(&[("r", 2), ("s", 1), ("t", 1)]));
        moved.sort();
        assert_eq!(moved, ["r", "t"]);
        assert_eq!(c.moved_to(versions(&[("r", 2), ("t", 1)])), ["s"]);
    }

    #[test]
    fn a_short_read_is_not_kept() {
        let c = Copies::default();
        renew(&c, &[("r", 1)], Instant::now());
        let mut short = copy("abc");
        short.meta.len = 4;
        c.keep("r", "a", 1, short);
        assert!(c.get("r", "a").is_none());
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
