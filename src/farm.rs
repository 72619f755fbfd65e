//! The build farm's queue, on the metadata store: a submitted build becomes tasks (one per
//! component and platform, with their build-time edges); agents claim claimable tasks under
//! leases they renew; every report names its lease, and one that is no longer current
//! changes nothing; a lease that runs out puts its task back (or fails it after
//! [`Queue::MAX_ATTEMPTS`]); a task's end makes its dependents claimable or skips them.
//! The HTTP layer and the agent are thin shells over these calls.
//!
//! Any number of servers may share one store (PostgreSQL), each with a `Queue` of its
//! own, so nothing here is held in the process. Every call that reads a build's tasks (or
//! its record) and writes them back — started, heartbeat, report, hand back, cancel, and
//! expiry build by build — does so under the store's lock of that build
//! ([`Store::lock_farm_build`]), reading afresh once it holds it: two reports of a task's
//! dependencies at once each see the other's end, two expiries never put one lease's
//! task back twice. A claim takes the oldest claimable task atomically in the store, and
//! under the same lock: so a claim never lands between a cancel's read of the queued
//! tasks and its write, and a task is either cancelled or held by the one agent whose
//! heartbeats hear of the cancel. A submit needs no lock: no one knows the build's id
//! before its batch is in.

use std::time::Duration;

use crate::repo::builds::BuiltFile;
use crate::store::{
    BuildId, Change, FarmBuild, Lease, Store, StoreError, Task, TaskEvent, TaskState,
};

#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no build {0}")]
    NoSuchBuild(BuildId),
    #[error("build {build} has no task {index}")]
    NoSuchTask { build: BuildId, index: u32 },
    /// A report under a lease that is no longer the task's: it changes nothing.
    #[error("task {build}/{index}: lease {lease} is not current ({why})")]
    StaleLease {
        build: BuildId,
        index: u32,
        lease: String,
        why: String,
    },
    /// A part of a running log that starts past what is held: parts before it are missing.
    #[error("the server has {have} bytes of this log, the part starts at {offset}")]
    LogGap { have: u64, offset: u64 },
    #[error("{0}")]
    Invalid(String),
}

impl FarmError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            FarmError::Store(e) => e.hint(),
            FarmError::NoSuchBuild(_) => "list builds with `packyard builds list`".into(),
            FarmError::NoSuchTask { build, .. } => {
                format!("see its tasks with `packyard builds show {build}`")
            }
            FarmError::StaleLease { .. } => "the task was given to another agent (its lease ran \
                 out, or it was handed back or cancelled); drop it and ask for new work"
                .into(),
            FarmError::LogGap { have, .. } => format!("send the log again from offset {have}"),
            FarmError::Invalid(_) => return None,
        })
    }
}

/// A task of a build being submitted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub configuration: String,
    pub module: String,
    pub platform: String,
    /// Indices (in the submitted list) of its build dependencies; they come before it.
    pub deps: Vec<u32>,
    /// Known cached at submission (its key and artifacts): no agent builds it.
    pub cached: Option<(String, Vec<BuiltFile>)>,
}

/// How a task ended, as its agent reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskReport {
    pub state: TaskState,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<BuiltFile>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub log: Option<String>,
}

/// What a heartbeat answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    /// The lease's new expiry (milliseconds since the epoch).
    pub expires: i64,
    /// The build was cancelled: stop the task and report it cancelled.
    pub cancel: bool,
}

/// The queue's settings. It holds no lock of its own: the store's per-build locks
/// serialise changes across every process sharing the store (see the module's notes).
pub struct Queue {
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// How often agents are told to renew it.
    pub heartbeat: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Queue {
    /// Claims past this many ended by a lost lease fail the task.
    pub const MAX_ATTEMPTS: u32 = 3;

    pub fn new(lease: Duration, heartbeat: Duration) -> Queue {
        Queue { lease, heartbeat }
    }

    /// Stores `build` with its tasks: the cached ones done at once, those whose
    /// dependencies are all done claimable; the build ends at once when nothing is left
    /// to build. Returns its id.
    pub fn submit(
        &self,
        store: &dyn Store,
        mut build: FarmBuild,
        tasks: Vec<NewTask>,
        now: i64,
    ) -> Result<BuildId, FarmError> {
        for (i, t) in tasks.iter().enumerate() {
            if let Some(d) = t.deps.iter().find(|&&d| d as usize >= i) {
                return Err(FarmError::Invalid(format!(
                    "task {i} ({}) needs task {d}, which does not come before it",
                    t.configuration
                )));
            }
        }
        build.id = store.new_build_id()?;
        build.submitted = now;
        let mut stored: Vec<Task> = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.into_iter().enumerate() {
            let (state, key, artifacts, what) = match t.cached {
                Some((key, artifacts)) => (
                    TaskState::Cached,
                    Some(key),
                    artifacts,
                    "cached: the repository holds its build",
                ),
                None => (TaskState::Queued, None, vec![], "queued"),
            };
            let ready = state == TaskState::Queued
                && t.deps.iter().all(|&d| stored[d as usize].state.succeeded());
            stored.push(Task {
                build: build.id,
                index: i as u32,
                configuration: t.configuration,
                module: t.module,
                platform: t.platform,
                deps: t.deps,
                state,
                ready,
                attempts: 0,
                lease: None,
                history: vec![TaskEvent {
                    at: now,
                    what: what.into(),
                    agent: None,
                }],
                key,
                reason: None,
                artifacts,
                log: None,
                queued: now,
                claimed: None,
                finished: (state == TaskState::Cached).then_some(now),
            });
        }
        if stored.iter().all(|t| t.state.ended()) {
            build.finished = Some(now);
        }
        let id = build.id;
        let mut changes = vec![Change::PutFarmBuild(build)];
        changes.extend(stored.into_iter().map(Change::PutTask));
        store.apply(changes)?;
        Ok(id)
    }

    /// Gives `agent` the oldest claimable task of one of its `platforms`, under a new
    /// lease, or nothing.
    pub fn claim(
        &self,
        store: &dyn Store,
        agent: &str,
        platforms: &[String],
        now: i64,
    ) -> Result<Option<Task>, FarmError> {
        let lease = Lease {
            id: lease_id(),
            agent: agent.to_string(),
            expires: now + ms(self.lease),
        };
        Ok(store.claim(platforms, lease, now)?)
    }

    /// The task, if `lease` is its current one.
    fn leased(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
    ) -> Result<Task, FarmError> {
        let task = store
            .task(build, index)?
            .ok_or(FarmError::NoSuchTask { build, index })?;
        let stale = |why: String| FarmError::StaleLease {
            build,
            index,
            lease: lease.to_string(),
            why,
        };
        match &task.lease {
            Some(l) if l.id == lease && task.state.held() => Ok(task),
            Some(l) if task.state.held() => Err(stale(format!("{} holds it now", l.agent))),
            _ => Err(stale(format!("it is {}", task.state.as_str()))),
        }
    }

    /// Fails unless `lease` is the task's current lease (for what an agent sends under
    /// it: uploads, log parts).
    pub fn check(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
    ) -> Result<(), FarmError> {
        self.leased(store, build, index, lease).map(|_| ())
    }

    /// Adds `bytes`, the part of a running task's log its agent sent from byte `offset`,
    /// to the log the store keeps (so every server of a shared store shows the same one).
    /// What the store already has of the part is taken once, so an agent may send a part
    /// again after an error; a part past the end is refused, naming where to resume.
    pub fn append_log(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), FarmError> {
        let _held = store.lock_farm_build(build)?;
        self.leased(store, build, index, lease)?;
        let have = store.task_log_len(build, index)?;
        if offset > have {
            return Err(FarmError::LogGap { have, offset });
        }
        let skip = (have - offset).min(bytes.len() as u64) as usize;
        if skip < bytes.len() {
            store.append_task_log(build, index, have, &bytes[skip..])?;
        }
        Ok(())
    }

    /// Renews the lease; says whether the task's build was cancelled.
    pub fn heartbeat(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
        now: i64,
    ) -> Result<Beat, FarmError> {
        let _build = store.lock_farm_build(build)?;
        let mut task = self.leased(store, build, index, lease)?;
        let cancel = store.farm_build(build)?.is_some_and(|b| b.cancelled);
        let expires = now + ms(self.lease);
        if let Some(l) = task.lease.as_mut() {
            l.expires = expires;
        }
        store.apply(vec![Change::PutTask(task)])?;
        Ok(Beat { expires, cancel })
    }

    /// The agent started building the task.
    pub fn started(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
        now: i64,
    ) -> Result<(), FarmError> {
        let _build = store.lock_farm_build(build)?;
        let mut task = self.leased(store, build, index, lease)?;
        if task.state == TaskState::Claimed {
            task.state = TaskState::Running;
            let agent = task.lease.as_ref().map(|l| l.agent.clone());
            task.history.push(TaskEvent {
                at: now,
                what: "started".into(),
                agent,
            });
            store.apply(vec![Change::PutTask(task)])?;
        }
        Ok(())
    }

    /// Ends the task as its agent reports (built, cached, failed, cancelled); its
    /// dependents become claimable, or are skipped.
    pub fn report(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
        report: TaskReport,
        now: i64,
    ) -> Result<Task, FarmError> {
        if !report.state.ended() || report.state == TaskState::Skipped {
            return Err(FarmError::Invalid(format!(
                "a task is reported built, cached, failed or cancelled, not {}",
                report.state.as_str()
            )));
        }
        let _build = store.lock_farm_build(build)?;
        let mut task = self.leased(store, build, index, lease)?;
        let agent = task.lease.take().map(|l| l.agent);
        task.history.push(TaskEvent {
            at: now,
            what: match &report.reason {
                Some(r) => format!("{}: {r}", report.state.as_str()),
                None => report.state.as_str().into(),
            },
            agent,
        });
        task.state = report.state;
        task.key = report.key;
        task.artifacts = report.artifacts;
        task.reason = report.reason;
        task.log = report.log;
        task.finished = Some(now);
        let ended = task.clone();
        self.settle(store, build, vec![task], now)?;
        Ok(ended)
    }

    /// The agent gives the task back unfinished (it is stopping): queued again at once,
    /// the attempt not held against it.
    pub fn hand_back(
        &self,
        store: &dyn Store,
        build: BuildId,
        index: u32,
        lease: &str,
        now: i64,
    ) -> Result<(), FarmError> {
        let _build = store.lock_farm_build(build)?;
        let mut task = self.leased(store, build, index, lease)?;
        let agent = task.lease.take().map(|l| l.agent);
        task.attempts = task.attempts.saturating_sub(1);
        task.state = TaskState::Queued;
        task.ready = true;
        task.history.push(TaskEvent {
            at: now,
            what: "handed back".into(),
            agent,
        });
        store.apply(vec![Change::PutTask(task)])?;
        Ok(())
    }

    /// Puts back the tasks whose lease ran out (naming the lost agent), or fails those
    /// that ran out [`Queue::MAX_ATTEMPTS`] times. Returns how many it put back or failed.
    /// Another server may expire the same leases at the same moment: each task is read
    /// again under its build's lock and left alone unless its lease still ran out (the
    /// other expired it, its agent reported, or a new claim holds it now).
    pub fn expire(&self, store: &dyn Store, now: i64) -> Result<usize, FarmError> {
        // By build, oldest lease first within each: one lock per build.
        let mut by_build: Vec<(BuildId, Vec<u32>)> = Vec::new();
        for (build, index) in store.expired(now)? {
            match by_build.iter_mut().find(|(b, _)| *b == build) {
                Some((_, indices)) => indices.push(index),
                None => by_build.push((build, vec![index])),
            }
        }
        let mut touched = 0;
        for (build, indices) in by_build {
            let _build = store.lock_farm_build(build)?;
            for index in indices {
                let Some(mut task) = store.task(build, index)? else {
                    continue;
                };
                let ran_out =
                    task.state.held() && task.lease.as_ref().is_some_and(|l| l.expires < now);
                let Some(lease) = task.lease.take().filter(|_| ran_out) else {
                    continue;
                };
                touched += 1;
                let lost = format!("the lease of {} ran out", lease.agent);
                if task.attempts >= Self::MAX_ATTEMPTS {
                    let why = format!("{lost}, the {} attempt's", ordinal(task.attempts));
                    task.history.push(TaskEvent {
                        at: now,
                        what: format!("failed: {why}"),
                        agent: Some(lease.agent),
                    });
                    task.state = TaskState::Failed;
                    task.reason = Some(why);
                    task.finished = Some(now);
                    self.settle(store, build, vec![task], now)?;
                } else {
                    task.history.push(TaskEvent {
                        at: now,
                        what: format!("{lost}; queued again"),
                        agent: Some(lease.agent),
                    });
                    task.state = TaskState::Queued;
                    task.ready = true;
                    store.apply(vec![Change::PutTask(task)])?;
                }
            }
        }
        Ok(touched)
    }

    /// Cancels a build: its queued tasks end `cancelled` (their dependents skipped); held
    /// ones are told at their next heartbeat and report themselves. Claims wait while
    /// this holds the build's lock, so each task is cancelled or claimed, never both.
    pub fn cancel(&self, store: &dyn Store, build: BuildId, now: i64) -> Result<(), FarmError> {
        let _build = store.lock_farm_build(build)?;
        let mut b = store
            .farm_build(build)?
            .ok_or(FarmError::NoSuchBuild(build))?;
        if !b.cancelled {
            b.cancelled = true;
            store.apply(vec![Change::PutFarmBuild(b)])?;
        }
        let queued: Vec<Task> = store
            .tasks(build)?
            .into_iter()
            .filter(|t| t.state == TaskState::Queued)
            .map(|mut t| {
                t.state = TaskState::Cancelled;
                t.ready = false;
                t.reason = Some("the build was cancelled".into());
                t.finished = Some(now);
                t.history.push(TaskEvent {
                    at: now,
                    what: "cancelled".into(),
                    agent: None,
                });
                t
            })
            .collect();
        self.settle(store, build, queued, now)
    }

    /// Stores `ended` (tasks that just ended) with what follows in the same batch: each
    /// queued dependent becomes claimable once all its dependencies succeeded, or is
    /// skipped (and so on down) when one did not; the build ends with its last task.
    /// Called holding the build's lock, so the tasks it reads are current.
    fn settle(
        &self,
        store: &dyn Store,
        build: BuildId,
        ended: Vec<Task>,
        now: i64,
    ) -> Result<(), FarmError> {
        let mut all = store.tasks(build)?;
        let mut changed = vec![false; all.len()];
        for t in ended {
            let i = t.index as usize;
            if i < all.len() {
                all[i] = t;
                changed[i] = true;
            }
        }
        // Tasks come after their dependencies: one pass in order settles every chain.
        for i in 0..all.len() {
            if all[i].state != TaskState::Queued {
                continue;
            }
            let blocker = all[i]
                .deps
                .iter()
                .map(|&d| &all[d as usize])
                .find(|d| d.state.ended() && !d.state.succeeded())
                .map(|d| (d.configuration.clone(), d.state));
            if let Some((conf, state)) = blocker {
                let why = format!("needs {conf}, which was {}", past(state));
                let t = &mut all[i];
                t.state = TaskState::Skipped;
                t.ready = false;
                t.finished = Some(now);
                t.history.push(TaskEvent {
                    at: now,
                    what: format!("skipped: {why}"),
                    agent: None,
                });
                t.reason = Some(why);
                changed[i] = true;
            } else if !all[i].ready
                && all[i]
                    .deps
                    .iter()
                    .all(|&d| all[d as usize].state.succeeded())
            {
                all[i].ready = true;
                changed[i] = true;
            }
        }
        let mut changes: Vec<Change> = all
            .iter()
            .zip(&changed)
            .filter(|(_, c)| **c)
            .map(|(t, _)| Change::PutTask(t.clone()))
            .collect();
        if all.iter().all(|t| t.state.ended())
            && let Some(mut b) = store.farm_build(build)?
            && b.finished.is_none()
        {
            b.finished = Some(now);
            changes.push(Change::PutFarmBuild(b));
        }
        store.apply(changes)?;
        Ok(())
    }
}

/// A build with its tasks, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuildView {
    #[serde(flatten)]
    pub build: FarmBuild,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// How many tasks are in each state.
    pub counts: std::collections::BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
}

/// A task as the API shows it: its record, but for the lease's id, which an agent proves
/// its hold with and only the agent that claimed the task knows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskView {
    pub build: BuildId,
    pub index: u32,
    pub configuration: String,
    pub module: String,
    pub platform: String,
    pub deps: Vec<u32>,
    pub state: TaskState,
    pub ready: bool,
    pub attempts: u32,
    pub lease: Option<LeaseView>,
    pub history: Vec<crate::store::TaskEvent>,
    pub key: Option<String>,
    pub reason: Option<String>,
    pub artifacts: Vec<crate::repo::builds::BuiltFile>,
    pub log: Option<String>,
    pub queued: i64,
    pub claimed: Option<i64>,
    pub finished: Option<i64>,
}

/// Who holds a task, and until when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseView {
    pub agent: String,
    /// Milliseconds since the epoch when it runs out unless renewed.
    pub expires: i64,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> TaskView {
        TaskView {
            build: t.build,
            index: t.index,
            configuration: t.configuration,
            module: t.module,
            platform: t.platform,
            deps: t.deps,
            state: t.state,
            ready: t.ready,
            attempts: t.attempts,
            lease: t.lease.map(|l| LeaseView {
                agent: l.agent,
                expires: l.expires,
            }),
            history: t.history,
            key: t.key,
            reason: t.reason,
            artifacts: t.artifacts,
            log: t.log,
            queued: t.queued,
            claimed: t.claimed,
            finished: t.finished,
        }
    }
}

impl BuildView {
    /// The view of `build` and its tasks.
    pub fn of(build: FarmBuild, tasks: Vec<Task>, with_tasks: bool) -> BuildView {
        let mut counts = std::collections::BTreeMap::new();
        for t in &tasks {
            *counts.entry(t.state.as_str().to_string()).or_insert(0) += 1;
        }
        let state = if build.finished.is_none() {
            if tasks.iter().any(|t| t.state.held() || t.state.ended()) {
                "running"
            } else {
                "queued"
            }
        } else if build.cancelled {
            "cancelled"
        } else if tasks.iter().all(|t| t.state.succeeded()) {
            "succeeded"
        } else {
            "failed"
        };
        BuildView {
            build,
            state: state.into(),
            counts,
            tasks: with_tasks.then(|| tasks.into_iter().map(TaskView::from).collect()),
        }
    }

    /// Every task ended built or cached.
    pub fn succeeded(&self) -> bool {
        self.state == "succeeded"
    }
}

/// Reads a file of a repository by its path there (`None`: not there).
/// The build recorded beside a tarball of the repository a build publishes into.
pub type ReadBuild<'a> =
    dyn Fn(&str) -> Result<Option<crate::repo::builds::StoredBuild>, crate::repo::RepoError> + 'a;

/// What a server with the module tree resolves, for a submission or a claim.
pub struct Release<'a> {
    pub tree: &'a crate::config::Tree,
    pub layout: &'a crate::layout::Layout,
    /// The project configuration; `None`: the newest release.
    pub project: Option<String>,
    pub only: Vec<String>,
    pub force: bool,
    /// The defaults profiles, by name (loaded from the tree).
    pub defaults: Vec<String>,
}

impl<'a> Release<'a> {
    /// The release resolved for `platform`, in a build of workspace `workspace`, as
    /// `packyard build` resolves it.
    fn prepare(
        &self,
        platform: &str,
        workspace: &std::path::Path,
    ) -> Result<
        (crate::build::BuildRequest<'a>, crate::build::Prepared<'a>),
        crate::build::BuildError,
    > {
        let req = crate::build::BuildRequest {
            tree: self.tree,
            layout: self.layout,
            options: crate::config::ResolveOptions {
                platform: Some(platform.to_string()),
                project: self.project.clone(),
                workspace: Some(workspace.to_path_buf()),
                profiles: crate::config::profile::load_all(&self.tree.root, &self.defaults)?,
                ..Default::default()
            },
            only: self.only.clone(),
            targets: None,
            jobs: 1,
            force: self.force,
            keep_going: false,
            step_timeout: None,
            isolation: Default::default(),
            root: None,
            publish_development: false,
        };
        let prepared = crate::build::prepare(&req)?;
        Ok((req, prepared))
    }

    /// The tasks of a build of this release for `platforms`, and its project
    /// configuration. A tagged configuration whose build key (its tag standing for the
    /// source) is recorded beside its tarball with its artifacts still there, and whose
    /// dependencies are all cached so, is cached already (unless `force`): no agent
    /// builds it. `read` reads a file of the repository the build publishes into.
    pub fn tasks(
        &self,
        platforms: &[String],
        read: &ReadBuild<'_>,
    ) -> Result<(String, Vec<NewTask>), crate::build::BuildError> {
        // Keys do not depend on the workspace (its path is named in them).
        let workspace = std::path::Path::new("/workspace");
        let mut tasks: Vec<NewTask> = Vec::new();
        let mut project = String::new();
        for platform in platforms {
            let (req, prepared) = self.prepare(platform, workspace)?;
            project = prepared.project().to_string();
            let offset = tasks.len() as u32;
            let mut keys: Vec<Option<String>> = Vec::new();
            let components = prepared.components();
            for (i, (configuration, module, deps)) in components.iter().cloned().enumerate() {
                let job = prepared.job(&req, i)?;
                // A dependency's key is known only when it is cached too.
                let dep_keys: Option<Vec<(String, String)>> = deps
                    .iter()
                    .map(|&d| keys[d].clone().map(|k| (components[d].0.clone(), k)))
                    .collect();
                let key = match (&job.tag, dep_keys) {
                    (Some(tag), Some(dep_keys)) if !self.force => {
                        Some(crate::build::key::build_key(
                            &job.configuration_text,
                            &format!("tag {tag}"),
                            &job.platform,
                            &dep_keys,
                        ))
                    }
                    _ => None,
                };
                let cached = match &key {
                    Some(key) => read(&job.tarball)
                        .ok()
                        .flatten()
                        .filter(|b| b.current && &b.record.key == key)
                        .map(|b| (key.clone(), b.record.artifacts)),
                    None => None,
                };
                keys.push(cached.as_ref().map(|(k, _)| k.clone()));
                tasks.push(NewTask {
                    configuration,
                    module,
                    platform: platform.clone(),
                    deps: deps.iter().map(|&d| offset + d as u32).collect(),
                    cached,
                });
            }
        }
        Ok((project, tasks))
    }

    /// The whole release resolved for `platform` in an agent's `workspace`, with each
    /// component's position: what [`Prepared::assignment`] answers claims from. A server
    /// keeps it for the claims that follow (resolving a release of thousands of
    /// components costs far more than one claim may).
    pub fn prepare_for_agents(
        &self,
        platform: &str,
        workspace: &std::path::Path,
    ) -> Result<Prepared<'a>, crate::build::BuildError> {
        let (req, prepared) = self.prepare(platform, workspace)?;
        let positions = prepared
            .components()
            .into_iter()
            .enumerate()
            .map(|(i, (configuration, _, _))| (configuration, i))
            .collect();
        Ok(Prepared {
            req,
            prepared,
            positions,
        })
    }
}

/// A release resolved for one platform and agent workspace (see
/// [`Release::prepare_for_agents`]).
pub struct Prepared<'a> {
    req: crate::build::BuildRequest<'a>,
    prepared: crate::build::Prepared<'a>,
    positions: std::collections::HashMap<String, usize>,
}

impl Prepared<'_> {
    /// What the agent that claimed `task` gets: the component's job resolved for the
    /// agent's workspace, the keys of its dependencies (`deps`: their tasks), and the
    /// staging plan from `packages` and the package spec.
    pub fn assignment(
        &self,
        build: &FarmBuild,
        task: &Task,
        deps: &[Task],
        packages: &dyn crate::resolve::Packages,
        heartbeat: Duration,
    ) -> Result<Assignment, crate::build::BuildError> {
        let (req, prepared) = (&self.req, &self.prepared);
        let i = *self.positions.get(&task.configuration).ok_or_else(|| {
            crate::build::BuildError::NotInRelease {
                name: task.configuration.clone(),
                release: prepared.project().to_string(),
            }
        })?;
        let mut job = prepared.job(req, i)?;
        let plan = prepared.plan(req, i, packages).map(WirePlan::from_plan);
        let spec = prepared.spec(req, i);
        let source = prepared.source(req, i);
        job.index = task.index as usize;
        job.force = build.force;
        let lease = task.lease.as_ref();
        Ok(Assignment {
            build: task.build,
            index: task.index,
            lease: lease.map(|l| l.id.clone()).unwrap_or_default(),
            expires: lease.map_or(0, |l| l.expires),
            heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
            repo: build.repo.clone(),
            dependency_keys: deps
                .iter()
                .map(|d| (d.configuration.clone(), d.key.clone().unwrap_or_default()))
                .collect(),
            plan,
            spec,
            source,
            job,
        })
    }
}

/// What an agent gets when it claims a task: the task, its lease, and everything the
/// build of the component needs but the module tree (which stays on the server): the
/// job resolved for the agent's workspace, its dependencies' keys, and — asked only on a
/// cache miss — the plan that stages its build dependencies and its package spec.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub build: BuildId,
    pub index: u32,
    pub lease: String,
    /// When the lease runs out unless renewed (milliseconds since the epoch).
    pub expires: i64,
    /// How often to renew it.
    pub heartbeat_ms: u64,
    /// The repository to publish into and reuse from.
    pub repo: String,
    pub job: crate::build::run::Job,
    /// The build dependencies' configurations and build keys, for the build key.
    pub dependency_keys: Vec<(String, String)>,
    pub plan: Result<WirePlan, String>,
    pub spec: Result<crate::pack::PackageSpec, String>,
    /// What its source packages are made of.
    #[serde(default = "no_source_plan")]
    pub source: Result<crate::pack::SourcePlan, String>,
}

fn no_source_plan() -> Result<crate::pack::SourcePlan, String> {
    Err("the server sent no source package plan (a server older than this agent)".into())
}

impl crate::build::run::Coordinator for Assignment {
    fn plan(&self, _index: usize) -> Result<crate::resolve::Plan, String> {
        self.plan.clone().map(WirePlan::into_plan)
    }

    fn spec(&self, _index: usize) -> Result<crate::pack::PackageSpec, String> {
        self.spec.clone()
    }

    fn source(&self, _index: usize) -> Result<crate::pack::SourcePlan, String> {
        self.source.clone()
    }
}

/// A [`crate::resolve::Plan`] whole, as it travels to a build node (the printed plan
/// leaves out what only `fetch` needs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WirePlan {
    pub order: Vec<String>,
    pub dependencies: Vec<WirePlanned>,
    pub stage_dir: std::path::PathBuf,
    pub workspace_dir: std::path::PathBuf,
    pub format: crate::layout::PackageFormat,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WirePlanned {
    pub module: String,
    pub configuration: Option<String>,
    pub version: Option<String>,
    pub scope: crate::config::Scope,
    pub kind: crate::config::DependencyType,
    pub action: crate::resolve::Action,
    pub reason: String,
    pub source: Option<String>,
    pub path: Option<String>,
    pub package_name: Option<String>,
    pub checkout: Option<String>,
    pub listed_only: bool,
    #[serde(default)]
    pub sha256: Option<String>,
}

impl WirePlan {
    pub fn from_plan(p: crate::resolve::Plan) -> WirePlan {
        WirePlan {
            order: p.order,
            dependencies: p
                .dependencies
                .into_iter()
                .map(|d| WirePlanned {
                    module: d.module,
                    configuration: d.configuration,
                    version: d.version,
                    scope: d.scope,
                    kind: d.kind,
                    action: d.action,
                    reason: d.reason,
                    source: d.source,
                    path: d.path,
                    package_name: d.package_name,
                    checkout: d.checkout,
                    listed_only: d.listed_only,
                    sha256: d.sha256,
                })
                .collect(),
            stage_dir: p.stage_dir,
            workspace_dir: p.workspace_dir,
            format: p.format,
        }
    }

    pub fn into_plan(self) -> crate::resolve::Plan {
        crate::resolve::Plan {
            order: self.order,
            dependencies: self
                .dependencies
                .into_iter()
                .map(|d| crate::resolve::Planned {
                    module: d.module,
                    configuration: d.configuration,
                    version: d.version,
                    scope: d.scope,
                    kind: d.kind,
                    action: d.action,
                    reason: d.reason,
                    source: d.source,
                    path: d.path,
                    package_name: d.package_name,
                    checkout: d.checkout,
                    listed_only: d.listed_only,
                    sha256: d.sha256,
                })
                .collect(),
            stage_dir: self.stage_dir,
            workspace_dir: self.workspace_dir,
            format: self.format,
        }
    }
}

fn past(state: TaskState) -> &'static str {
    match state {
        TaskState::Failed => "failed",
        TaskState::Skipped => "skipped",
        TaskState::Cancelled => "cancelled",
        other => other.as_str(),
    }
}

fn ordinal(n: u32) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        n => format!("{n}th"),
    }
}

/// A lease id: 128 random bits, hex.
fn lease_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().r#gen::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use std::sync::Mutex;

    fn build() -> FarmBuild {
        FarmBuild {
            id: 0,
            project: "p_R_1_0_0_1".into(),
            platforms: vec!["el9_x86_64".into()],
            repo: "nightly".into(),
            only: vec![],
            force: false,
            defaults: vec![],
            by: "test".into(),
            submitted: 0,
            finished: None,
            cancelled: false,
        }
    }

    use crate::store::conformance::{report, states};

    fn task(name: &str, deps: &[u32]) -> NewTask {
        crate::store::conformance::new_task(name, "el9_x86_64", deps)
    }

    const EL9: &[&str] = &["el9_x86_64"];

    fn platforms(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tasks_are_claimed_in_order_once_their_dependencies_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
        // a <- b <- c, and d alone; b needs a.
        let id = q
            .submit(
                &store,
                build(),
                vec![
                    task("a", &[]),
                    task("d", &[]),
                    task("b", &[0]),
                    task("c", &[2]),
                ],
                1000,
            )
            .unwrap();
        let el9 = platforms(EL9);
        // Another platform's agent gets nothing.
        assert!(
            q.claim(&store, "arm", &platforms(&["el9_aarch64"]), 1001)
                .unwrap()
                .is_none()
        );
        let a = q.claim(&store, "x", &el9, 1001).unwrap().unwrap();
        let d = q.claim(&store, "y", &el9, 1001).unwrap().unwrap();
        assert_eq!((a.index, d.index), (0, 1));
        // b waits for a.
        assert!(q.claim(&store, "y", &el9, 1002).unwrap().is_none());
        let lease = a.lease.unwrap().id;
        q.started(&store, id, 0, &lease, 1003).unwrap();
        q.report(&store, id, 0, &lease, report(TaskState::Built), 1004)
            .unwrap();
        let b = q.claim(&store, "y", &el9, 1005).unwrap().unwrap();
        assert_eq!(b.index, 2);
        assert_eq!(
            states(&store, id),
            [
                TaskState::Built,
                TaskState::Claimed,
                TaskState::Claimed,
                TaskState::Queued
            ]
        );
        // A failure skips what needs it, and nothing else; the build ends with its last.
        let lb = b.lease.unwrap().id;
        let mut failed = report(TaskState::Failed);
        failed.reason = Some("compile: exit status 2".into());
        q.report(&store, id, 2, &lb, failed, 1006).unwrap();
        assert_eq!(states(&store, id)[3], TaskState::Skipped);
        let c = store.task(id, 3).unwrap().unwrap();
        assert!(c.reason.unwrap().contains("b_R_1_0_0_1, which was failed"));
        assert!(store.farm_build(id).unwrap().unwrap().finished.is_none());
        let ld = d.lease.unwrap().id;
        q.report(&store, id, 1, &ld, report(TaskState::Built), 1007)
            .unwrap();
        assert_eq!(store.farm_build(id).unwrap().unwrap().finished, Some(1007));
    }

    #[test]
    fn a_report_under_a_lease_that_is_not_current_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let q = Queue::new(Duration::from_millis(100), Duration::from_millis(30));
        let id = q.submit(&store, build(), vec![task("a", &[])], 0).unwrap();
        let el9 = platforms(EL9);
        let first = q.claim(&store, "lost", &el9, 10).unwrap().unwrap();
        let old = first.lease.unwrap().id;
        // Renewed in time, it holds; then it runs out, and the task is queued again,
        // naming the lost node.
        assert_eq!(q.heartbeat(&store, id, 0, &old, 50).unwrap().expires, 150);
        assert_eq!(q.expire(&store, 120).unwrap(), 0);
        assert_eq!(q.expire(&store, 151).unwrap(), 1);
        let t = store.task(id, 0).unwrap().unwrap();
        assert_eq!((t.state, t.ready, t.attempts), (TaskState::Queued, true, 1));
        assert!(
            t.history
                .last()
                .unwrap()
                .what
                .contains("lease of lost ran out")
        );
        let second = q.claim(&store, "other", &el9, 160).unwrap().unwrap();
        assert_eq!(second.attempts, 2);
        // The node that comes back is refused, whatever it reports.
        for e in [
            q.heartbeat(&store, id, 0, &old, 170).unwrap_err(),
            q.report(&store, id, 0, &old, report(TaskState::Built), 170)
                .unwrap_err(),
        ] {
            assert!(matches!(e, FarmError::StaleLease { .. }), "{e}");
            assert!(e.to_string().contains("other holds it now"), "{e}");
        }
        assert_eq!(
            store.task(id, 0).unwrap().unwrap().state,
            TaskState::Claimed
        );
        let new = second.lease.unwrap().id;
        q.report(&store, id, 0, &new, report(TaskState::Built), 180)
            .unwrap();
        let t = store.task(id, 0).unwrap().unwrap();
        let agents: Vec<_> = t.history.iter().filter_map(|e| e.agent.clone()).collect();
        assert!(agents.contains(&"lost".into()) && agents.contains(&"other".into()));
        // After the end, even the last lease is stale.
        assert!(
            q.report(&store, id, 0, &new, report(TaskState::Built), 190)
                .is_err()
        );
    }

    #[test]
    fn a_task_whose_lease_runs_out_three_times_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let q = Queue::new(Duration::from_millis(10), Duration::from_millis(3));
        let id = q
            .submit(&store, build(), vec![task("a", &[]), task("b", &[0])], 0)
            .unwrap();
        let el9 = platforms(EL9);
        for round in 0..3 {
            let now = round * 100;
            assert!(
                q.claim(&store, &format!("n{round}"), &el9, now)
                    .unwrap()
                    .is_some()
            );
            q.expire(&store, now + 50).unwrap();
        }
        assert_eq!(states(&store, id), [TaskState::Failed, TaskState::Skipped]);
        let a = store.task(id, 0).unwrap().unwrap();
        assert!(a.reason.unwrap().contains("lease of n2 ran out, the third"));
        assert!(q.claim(&store, "n3", &el9, 400).unwrap().is_none());
    }

    #[test]
    fn cached_tasks_need_no_agent_and_cancel_ends_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
        let cached = |name: &str, deps: &[u32]| NewTask {
            cached: Some(("key".into(), vec![])),
            ..task(name, deps)
        };
        let all = q
            .submit(
                &store,
                build(),
                vec![cached("a", &[]), cached("b", &[0])],
                5,
            )
            .unwrap();
        assert_eq!(store.farm_build(all).unwrap().unwrap().finished, Some(5));
        let el9 = platforms(EL9);
        assert!(q.claim(&store, "x", &el9, 6).unwrap().is_none());
        // A cached dependency makes its dependent claimable at once.
        let id = q
            .submit(
                &store,
                build(),
                vec![cached("a", &[]), task("b", &[0]), task("c", &[1])],
                7,
            )
            .unwrap();
        let b = q.claim(&store, "x", &el9, 8).unwrap().unwrap();
        assert_eq!((b.build, b.index), (id, 1));
        q.cancel(&store, id, 9).unwrap();
        assert_eq!(
            states(&store, id),
            [TaskState::Cached, TaskState::Claimed, TaskState::Cancelled]
        );
        // The running task hears of it at its next heartbeat.
        let lease = b.lease.unwrap().id;
        assert!(q.heartbeat(&store, id, 1, &lease, 10).unwrap().cancel);
        q.report(&store, id, 1, &lease, report(TaskState::Cancelled), 11)
            .unwrap();
        assert!(store.farm_build(id).unwrap().unwrap().finished.is_some());
    }

    #[test]
    fn many_agents_asking_at_once_never_share_a_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
        let tasks: Vec<NewTask> = (0..40).map(|i| task(&format!("t{i}"), &[])).collect();
        q.submit(&store, build(), tasks, 0).unwrap();
        let el9 = platforms(EL9);
        let got = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for a in 0..8 {
                let (q, store, el9, got) = (&q, &store, &el9, &got);
                s.spawn(move || {
                    while let Some(t) = q.claim(store, &format!("a{a}"), el9, 1).unwrap() {
                        got.lock().unwrap().push(t.index);
                    }
                });
            }
        });
        let mut got = got.into_inner().unwrap();
        got.sort();
        assert_eq!(got, (0..40).collect::<Vec<u32>>());
    }
}
