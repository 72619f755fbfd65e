//! Removing the index generations a publish drops (the one before the previous, kept no
//! longer for readers in flight). A command removes them as the publish ends; a server
//! leaves them to a thread of its own, so that an upload is answered as soon as the new
//! generation is named rather than after a listing and a round of deletes on an object
//! store. That thread takes the repository's lock and removes a generation only if the
//! store still keeps it for nothing (a generation's name hashes its files, so a later
//! publish may have named the same one again). What a stop leaves is the collector's.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::{RepoError, Repositories};

/// A generation dropped from an index directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub repo: String,
    /// The index directory, relative to the repository (`yum/el9/repodata`).
    pub dir: String,
    /// The generation's name (`.repodata.gen-…`).
    pub generation: String,
}

impl Repositories {
    /// From now on dropped generations are left to [`Repositories::tidy`], which the
    /// caller runs on a thread of its own.
    pub fn tidy_later(&self) {
        self.tidy.later.store(true, Ordering::SeqCst);
    }

    /// Removes `dropped` now, or hands it to the tidying thread.
    pub(super) fn drop_generations(&self, dropped: Vec<Dropped>) -> Result<(), RepoError> {
        if dropped.is_empty() {
            return Ok(());
        }
        if self.tidy.later.load(Ordering::SeqCst) {
            let mut waiting = self.tidy.waiting();
            waiting.extend(dropped);
            self.tidy.more.notify_one();
            return Ok(());
        }
        let keys: Vec<String> = dropped.iter().map(key).collect();
        crate::blobs::for_each(&*self.blobs, &keys, |k| self.blobs.remove_all(k))?;
        Ok(())
    }

    /// The tidying thread's work: waits for dropped generations and removes each that
    /// the store keeps for nothing. Returns when `stop()` holds and nothing waits.
    pub fn tidy(&self, stop: &dyn Fn() -> bool) {
        loop {
            let batch = {
                let mut waiting = self.tidy.waiting();
                while waiting.is_empty() {
                    if stop() {
                        return;
                    }
                    waiting = self
                        .tidy
                        .more
                        .wait_timeout(waiting, std::time::Duration::from_millis(500))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                std::mem::take(&mut *waiting)
            };
            let mut by_repo: BTreeMap<String, Vec<Dropped>> = BTreeMap::new();
            for d in batch {
                by_repo.entry(d.repo.clone()).or_default().push(d);
            }
            for (repo, list) in by_repo {
                if let Err(e) = self.remove_dropped(&repo, &list) {
                    tracing::warn!(
                        repo = %repo,
                        "old index generations stay until the next collection: {e}"
                    );
                }
            }
        }
    }

    /// Removes the generations of `list` that `repo`'s store keeps for nothing, under
    /// the repository's lock.
    fn remove_dropped(&self, repo: &str, list: &[Dropped]) -> Result<(), RepoError> {
        let _guard = self.lock_repo(repo)?;
        let mut doomed = Vec::new();
        for d in list {
            let kept = self.store.generation(repo, &d.dir)?.is_some_and(|g| {
                g.name == d.generation || g.previous.as_deref() == Some(d.generation.as_str())
            });
            if !kept {
                doomed.push(key(d));
            }
        }
        crate::blobs::for_each(&*self.blobs, &doomed, |k| self.blobs.remove_all(k))?;
        Ok(())
    }
}

/// The key prefix of a dropped generation's objects.
fn key(d: &Dropped) -> String {
    super::generations::generation_key(&format!("{}/{}", d.repo, d.dir), &d.generation)
}

/// The tidying thread's state in [`Repositories`].
#[derive(Default)]
pub(super) struct Tidy {
    /// Whether dropped generations wait for the thread.
    later: std::sync::atomic::AtomicBool,
    waiting: std::sync::Mutex<Vec<Dropped>>,
    more: std::sync::Condvar,
}

impl Tidy {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Dropped>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
