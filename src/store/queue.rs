//! The build farm's records in the store: submitted builds and their tasks (one per
//! component and platform), with the leases agents hold on the tasks they build. What
//! they mean and how they move is [`crate::farm`]'s; here they are plain data.

use serde::{Deserialize, Serialize};

use crate::paths::BuiltFile;

pub type BuildId = u64;

/// A build submitted to a server: a release, for some platforms, into a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarmBuild {
    pub id: BuildId,
    /// The project configuration (the release).
    pub project: String,
    pub platforms: Vec<String>,
    /// The repository its tasks publish into and reuse from.
    pub repo: String,
    /// `--only`: these components and what they need (empty: the whole release).
    #[serde(default)]
    pub only: Vec<String>,
    /// Build even what the cache holds.
    #[serde(default)]
    pub force: bool,
    /// `--defaults`: the defaults profiles it is built with, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<String>,
    /// Who submitted it (a token's name or id).
    pub by: String,
    /// Milliseconds since the epoch.
    pub submitted: i64,
    /// When its last task ended.
    #[serde(default)]
    pub finished: Option<i64>,
    #[serde(default)]
    pub cancelled: bool,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting: for its build dependencies, or for an agent.
    Queued,
    /// An agent holds it under a lease and has not reported it started.
    Claimed,
    Running,
    Built,
    Cached,
    Failed,
    /// A build dependency failed, was skipped or was cancelled.
    Skipped,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Queued,
        TaskState::Claimed,
        TaskState::Running,
        TaskState::Built,
        TaskState::Cached,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Claimed => "claimed",
            TaskState::Running => "running",
            TaskState::Built => "built",
            TaskState::Cached => "cached",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Its artifacts are in the repository: dependents may build.
    pub fn succeeded(self) -> bool {
        matches!(self, TaskState::Built | TaskState::Cached)
    }

    /// Nothing more happens to it.
    pub fn ended(self) -> bool {
        !matches!(
            self,
            TaskState::Queued | TaskState::Claimed | TaskState::Running
        )
    }

    /// An agent holds it.
    pub fn held(self) -> bool {
        matches!(self, TaskState::Claimed | TaskState::Running)
    }
}

/// An agent's hold on a task: every report it makes names the lease, and only the
/// current one counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Random, unguessable: a report under an old lease is refused.
    pub id: String,
    pub agent: String,
    /// Milliseconds since the epoch when it runs out unless renewed.
    pub expires: i64,
}

/// One line of a task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// One component of a build, for one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub build: BuildId,
    /// Its place in the build (build order).
    pub index: u32,
    pub configuration: String,
    pub module: String,
    pub platform: String,
    /// The tasks of the same build (and platform) it needs at build time.
    pub deps: Vec<u32>,
    pub state: TaskState,
    /// Queued with every build dependency done: an agent may claim it.
    pub ready: bool,
    /// How many times an agent claimed it.
    pub attempts: u32,
    pub lease: Option<Lease>,
    pub history: Vec<TaskEvent>,
    /// Its build key, once known.
    #[serde(default)]
    pub key: Option<String>,
    /// Why it failed, was skipped or cancelled.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<BuiltFile>,
    /// Where its log is read (published beside its tarball).
    #[serde(default)]
    pub log: Option<String>,
    pub queued: i64,
    #[serde(default)]
    pub claimed: Option<i64>,
    #[serde(default)]
    pub finished: Option<i64>,
}

impl Task {
    /// Where the store finds it.
    pub fn id(&self) -> (BuildId, u32) {
        (self.build, self.index)
    }

    /// Claimable: queued, every build dependency done.
    pub fn claimable(&self) -> bool {
        self.ready && self.state == TaskState::Queued
    }

    /// Taken by the agent holding `lease`, at `now`: what every store's claim does.
    pub fn claim(&mut self, lease: Lease, now: i64) {
        self.state = TaskState::Claimed;
        self.attempts += 1;
        self.claimed = Some(now);
        self.history.push(TaskEvent {
            at: now,
            what: format!("claimed (attempt {})", self.attempts),
            agent: Some(lease.agent.clone()),
        });
        self.lease = Some(lease);
    }
}
