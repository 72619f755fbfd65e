//! What file serving keeps per repository — whether it is private — so the hot path asks
//! the store as little as it can. A repository being deleted is not served and not
//! kept, and what was kept of it is forgotten, so a repository created again under its
//! name starts afresh.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

#[derive(Default)]
pub struct Known {
    /// Shared with [`Deleting`] guards, which may outlive the request that made them.
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Moves on when a delete begins or ends: what was looked up across it is neither
    /// kept nor answered.
    epoch: u64,
    /// Moves on when another process changed a repository: what was looked up across it
    /// is answered (it was read from the store) but not kept.
    changes: u64,
    entries: HashMap<String, Entry>,
    /// Deletes running, per repository.
    deleting: HashMap<String, usize>,
    /// Over a shared store, until when what is kept may be answered: the server's lease
    /// on the store's changes. `None`: always (no other process writes the store).
    /// Past it, what is kept is not answered and what is looked up is not kept.
    until: Option<Instant>,
}

impl Inner {
    fn valid(&self) -> bool {
        self.until.is_none_or(|t| Instant::now() < t)
    }
}

/// What is kept of one repository.
#[derive(Default)]
pub struct Entry {
    pub private: Option<bool>,
}

fn read(inner: &RwLock<Inner>) -> RwLockReadGuard<'_, Inner> {
    inner.read().unwrap_or_else(|p| p.into_inner())
}

fn write(inner: &RwLock<Inner>) -> RwLockWriteGuard<'_, Inner> {
    inner.write().unwrap_or_else(|p| p.into_inner())
}

impl Known {
    /// What `get` finds kept of repository `name`, else what `look` finds (kept with
    /// `set`). `None` while it is being deleted, or when a delete began or ended while
    /// looking.
    pub fn get_or<T: Clone, E>(
        &self,
        name: &str,
        get: impl Fn(&Entry) -> Option<T>,
        set: impl FnOnce(&mut Entry, T),
        look: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let (epoch, changes) = {
            let k = read(&self.inner);
            if k.deleting.contains_key(name) {
                return Ok(None);
            }
            if let Some(v) = k.entries.get(name).filter(|_| k.valid()).and_then(&get) {
                return Ok(Some(v));
            }
            (k.epoch, k.changes)
        };
        let v = look()?;
        let mut k = write(&self.inner);
        if k.epoch != epoch {
            // A delete began or ended while looking: the answer may be of a repository
            // that is gone. The caller gets no answer (as while deleting).
            return Ok(None);
        }
        if k.changes == changes && k.valid() {
            set(k.entries.entry(name.to_string()).or_default(), v.clone());
        }
        Ok(Some(v))
    }

    /// Whether a delete of repository `name` is under way (it is not served meanwhile).
    pub fn is_deleting(&self, name: &str) -> bool {
        read(&self.inner).deleting.contains_key(name)
    }

    /// Forgets repository `name` and stops serving it until the guard is dropped (when
    /// its delete has ended, whichever way: keep the guard where the delete runs), then
    /// forgets it again.
    pub fn deleting(&self, name: &str) -> Deleting {
        let mut k = write(&self.inner);
        k.forget(name);
        *k.deleting.entry(name.to_string()).or_default() += 1;
        Deleting {
            inner: self.inner.clone(),
            name: name.to_string(),
        }
    }

    /// Forgets what was kept of repository `name`: another process changed it (it may
    /// have been deleted and made again).
    pub fn forget(&self, name: &str) {
        let mut k = write(&self.inner);
        k.changes += 1;
        k.entries.remove(name);
    }

    /// Forgets everything kept, and keeps nothing until [`Known::leased`]: changes by
    /// other processes can no longer be followed.
    pub fn lapsed(&self) {
        let mut k = write(&self.inner);
        k.changes += 1;
        k.entries.clear();
        k.until = Some(Instant::now());
    }

    /// Changes by other processes are followed until `until` (each one forgets what it
    /// changed): what is looked up is kept, and answered, until then.
    pub fn leased(&self, until: Instant) {
        write(&self.inner).until = Some(until);
    }
}

impl Inner {
    fn forget(&mut self, name: &str) {
        self.epoch += 1;
        self.entries.remove(name);
    }
}

/// A delete under way: see [`Known::deleting`].
pub struct Deleting {
    inner: Arc<RwLock<Inner>>,
    name: String,
}

impl Drop for Deleting {
    fn drop(&mut self) {
        let mut k = write(&self.inner);
        k.forget(&self.name);
        if let Some(n) = k.deleting.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                k.deleting.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(k: &Known, name: &str, found: bool) -> Option<bool> {
        private_while(k, name, found, || {})
    }

    /// A lookup of `name` that finds `found` in the store, `meanwhile` happening while it
    /// asks.
    fn private_while(k: &Known, name: &str, found: bool, meanwhile: impl FnOnce()) -> Option<bool> {
        k.get_or(
            name,
            |e| e.private,
            |e, p| e.private = Some(p),
            || {
                meanwhile();
                Ok::<_, ()>(found)
            },
        )
        .unwrap()
    }

    #[test]
    fn kept_until_deleted_and_not_served_meanwhile() {
        let k = Known::default();
        assert_eq!(private(&k, "r", false), Some(false));
        // Kept: a different answer from the store is not asked for.
        assert_eq!(private(&k, "r", true), Some(false));
        {
            let _d = k.deleting("r");
            assert_eq!(private(&k, "r", true), None);
        }
        // Created again, private now: looked up afresh.
        assert_eq!(private(&k, "r", true), Some(true));
    }

    #[test]
    fn a_lookup_across_another_process_s_change_is_answered_not_kept() {
        let k = Known::default();
        let got = private_while(&k, "r", false, || k.forget("r"));
        assert_eq!(got, Some(false));
        // Not kept: asked again.
        assert_eq!(private(&k, "r", true), Some(true));
    }

    #[test]
    fn nothing_is_kept_or_answered_without_a_lease() {
        let k = Known::default();
        assert_eq!(private(&k, "r", false), Some(false));
        k.lapsed();
        // Forgotten, and what is looked up meanwhile is answered but not kept: another
        // process may delete the repository and make it again, private, unseen.
        assert_eq!(private(&k, "r", false), Some(false));
        assert_eq!(private(&k, "r", true), Some(true));
        k.leased(Instant::now() + std::time::Duration::from_secs(60));
        assert_eq!(private(&k, "r", true), Some(true));
        assert_eq!(private(&k, "r", false), Some(true));
        // A lease that ran out by itself (the follower late): what is kept is not
        // answered any more.
        k.leased(Instant::now());
        assert_eq!(private(&k, "r", false), Some(false));
    }

    #[test]
    fn a_lookup_that_overlaps_a_delete_is_not_kept() {
        let k = Known::default();
        // The delete starts and ends while the store is being asked.
        let got = private_while(&k, "r", false, || drop(k.deleting("r")));
        assert_eq!(got, None);
        assert_eq!(private(&k, "r", true), Some(true));
    }
}
