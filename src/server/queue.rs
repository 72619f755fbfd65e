//! Uploads to one repository are published together: while one publish runs, the uploads
//! that arrive queue up, and the next publish takes all of them at once (group commit).
//! Sixteen builders uploading at once then cost a few index rebuilds, not one each.
//! If a batch fails, its uploads are published one by one, so each gets its own answer
//! and one bad file never fails another's upload.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::repo::publish::{FileOutcome, Upload};
use crate::repo::{PublishOptions, PublishReport, RepoError, Repositories};

/// What one upload got: its file's outcome and the indexes the publish rewrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadOutcome {
    pub repo: String,
    #[serde(flatten)]
    pub file: FileOutcome,
    /// Paths that left the repository with this publish (replaced or pruned).
    pub removed: Vec<String>,
    pub indexes: Vec<String>,
    /// How many uploads were published together with this one.
    pub batch: usize,
}

struct Job {
    upload: Upload,
    reply: oneshot::Sender<Result<UploadOutcome, RepoError>>,
}

/// Uploads published together share these: repository, signing, and the platform of
/// loose files.
/// Repository, `sign`, `external`, loose files' platform: uploads published together.
type SlotKey = (String, bool, bool, Option<String>);

/// The uploads waiting for one slot key, and whether a publisher thread
/// is draining them.
#[derive(Default)]
struct Slot {
    jobs: Vec<Job>,
    draining: bool,
}

#[derive(Default)]
pub struct PublishQueue {
    waiting: Mutex<HashMap<SlotKey, Slot>>,
}

impl PublishQueue {
    /// Queues `file` (a temporary upload) for `key` in `repo`, and waits for its publish.
    pub async fn publish(
        state: &super::Shared,
        repo: &str,
        upload: Upload,
        opts: PublishOptions,
    ) -> Result<UploadOutcome, RepoError> {
        let (tx, rx) = oneshot::channel();
        let slot = (repo.to_string(), opts.sign, opts.external, opts.platform);
        let start = {
            let mut waiting = state
                .queue
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let entry = waiting.entry(slot.clone()).or_default();
            entry.jobs.push(Job { upload, reply: tx });
            !std::mem::replace(&mut entry.draining, true)
        };
        if start {
            // The publisher holds the state (an Arc) until its queue is empty.
            let state = state.clone();
            std::thread::spawn(move || state.queue.drain(&state.repos, slot));
        }
        rx.await.unwrap_or_else(|_| {
            Err(RepoError::Internal(format!(
                "the publisher of {repo} stopped before answering"
            )))
        })
    }

    /// Publishes what waits for `slot` until nothing does.
    fn drain(&self, repos: &Repositories, slot: SlotKey) {
        loop {
            // Wait for the repository's lock before taking the batch: while another
            // process publishes into it, uploads keep arriving here and go out together
            // (taken first, they would be a small batch stuck behind it).
            let _ = repos.wait_for_publishes(&slot.0);
            let jobs = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let entry = waiting.entry(slot.clone()).or_default();
                if entry.jobs.is_empty() {
                    entry.draining = false;
                    return;
                }
                std::mem::take(&mut entry.jobs)
            };
            let opts = PublishOptions {
                sign: slot.1,
                external: slot.2,
                platform: slot.3.clone(),
            };
            publish_jobs(repos, &slot.0, jobs, &opts);
        }
    }
}

fn publish_jobs(repos: &Repositories, repo: &str, jobs: Vec<Job>, opts: &PublishOptions) {
    let uploads: Vec<Upload> = jobs.iter().map(|j| j.upload.clone()).collect();
    match repos.publish_uploads(repo, &uploads, opts) {
        Ok(report) => {
            let batch = jobs.len();
            for job in jobs {
                let _ = job.reply.send(outcome(&report, &job.upload.key, batch));
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(_) => {
            for job in jobs {
                let r = repos
                    .publish_uploads(repo, std::slice::from_ref(&job.upload), opts)
                    .and_then(|report| outcome(&report, &job.upload.key, 1));
                let _ = job.reply.send(r);
            }
        }
    }
}

fn outcome(report: &PublishReport, key: &str, batch: usize) -> Result<UploadOutcome, RepoError> {
    let file = report
        .files
        .iter()
        // A loose upload (a bare file name) lands at `<name>/<version>/<platform>/<file>`.
        .find(|f| f.path == key || (!key.contains('/') && f.path.rsplit('/').next() == Some(key)))
        .cloned()
        .ok_or_else(|| RepoError::Internal(format!("the publish did not report {key}")))?;
    Ok(UploadOutcome {
        repo: report.repo.clone(),
        file,
        removed: report.removed.clone(),
        indexes: report.indexes.clone(),
        batch,
    })
}
