//! `packyard agent`: a build node of the farm. While it has a free slot it asks the server
//! for a task of one of its platforms and builds it on a thread of its own, with the code
//! `packyard build` runs ([`run::begin`], [`run::finish`]; the task's [`Assignment`]
//! answers the build's questions, so no module tree is needed), publishing under the
//! task's lease. Beside each build a watcher renews the lease, sends what the log gained,
//! and stops the build's steps when the build is cancelled or the lease is lost; at the
//! end the rest of the log and the report go, also for a failed build. Calls that do not
//! reach the server are asked again with backoff, so a build rides out a server restart.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::build::cache::{BuildRepo, CacheError, RemoteBuildRepo};
use crate::build::isolate::{self, Isolation};
use crate::build::{self, ComponentResult, Outcome, run, stop};
use crate::client::{Backoff, Claim, Client, ClientError, Retry, lease_param};
use crate::farm::{Assignment, Beat, TaskReport};
use crate::repo::builds::{BuildRecord, BuiltFile, StoredBuild};
use crate::store::{BuildId, TaskState};

/// At most this much of the log goes in one part.
const PART_BYTES: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Isolate(#[from] isolate::IsolateError),
    #[error(transparent)]
    Held(#[from] crate::build::workspace::WorkspaceError),
    /// The server refuses to give this agent work (token, role, or no build farm there).
    #[error("the server refuses to give work: {0}")]
    Refused(ClientError),
}

impl AgentError {
    pub fn hint(&self) -> Option<String> {
        match self {
            AgentError::Workspace { .. } => {
                Some("--workspace must be a directory this user can write".into())
            }
            AgentError::Isolate(e) => Some(e.hint()),
            AgentError::Held(e) => Some(e.hint()),
            AgentError::Refused(e) => e.hint().or_else(|| {
                Some(
                    "an agent needs a token of role builder (`packyard token create --role \
                     builder`) and a server that runs the build farm"
                        .into(),
                )
            }),
        }
    }
}

/// A task held under a lease: what every report names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRef {
    pub build: BuildId,
    pub index: u32,
    #[serde(skip)]
    pub lease: String,
}

impl TaskRef {
    pub fn of(a: &Assignment) -> TaskRef {
        TaskRef {
            build: a.build,
            index: a.index,
            lease: a.lease.clone(),
        }
    }
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.build, self.index)
    }
}

/// What an agent asks of the build farm's server: the HTTP routes ([`HttpFarm`]), or a
/// stand-in.
pub trait Farm: Sync {
    /// A task to build, or `None` when there is nothing to do now.
    fn claim(&self, claim: &Claim) -> Result<Option<Assignment>, ClientError>;
    fn started(&self, task: &TaskRef) -> Result<(), ClientError>;
    fn heartbeat(&self, task: &TaskRef) -> Result<Beat, ClientError>;
    /// Appends `text` to the task's log at `offset` (the bytes of text sent before).
    fn log(&self, task: &TaskRef, offset: u64, text: &str) -> Result<(), ClientError>;
    fn report(&self, task: &TaskRef, report: &TaskReport) -> Result<(), ClientError>;
    fn hand_back(&self, task: &TaskRef) -> Result<(), ClientError>;
    /// The repository the task publishes into and reuses from, under its lease.
    fn repo<'a>(&'a self, a: &Assignment) -> Box<dyn BuildRepo + 'a>;
}

/// The build farm of a running `packyard serve`.
pub struct HttpFarm<'a> {
    /// The farm's own calls: each ends within a timeout, and the agent asks again itself.
    control: Client,
    /// Uploads and build records: no timeout, transient failures asked again.
    files: Client,
    url: String,
    token: Option<String>,
    layout: &'a crate::layout::Layout,
}

impl<'a> HttpFarm<'a> {
    /// How long one of the farm's calls may take.
    pub const TIMEOUT: Duration = Duration::from_secs(30);
    /// How long an upload is asked again while the server cannot be reached.
    pub const UPLOAD_PATIENCE: Duration = Duration::from_secs(600);

    pub fn new(url: &str, token: Option<String>, layout: &'a crate::layout::Layout) -> Self {
        HttpFarm {
            control: Client::with_timeout(url, token.clone(), Some(Self::TIMEOUT)),
            files: Client::new(url, token.clone()).retrying(Retry {
                backoff: Backoff::SERVER,
                patience: Self::UPLOAD_PATIENCE,
            }),
            url: url.trim_end_matches('/').to_string(),
            token,
            layout,
        }
    }
}

impl Farm for HttpFarm<'_> {
    fn claim(&self, claim: &Claim) -> Result<Option<Assignment>, ClientError> {
        self.control.claim(claim)
    }

    fn started(&self, t: &TaskRef) -> Result<(), ClientError> {
        self.control.task_started(t.build, t.index, &t.lease)
    }

    fn heartbeat(&self, t: &TaskRef) -> Result<Beat, ClientError> {
        self.control.heartbeat(t.build, t.index, &t.lease)
    }

    fn log(&self, t: &TaskRef, offset: u64, text: &str) -> Result<(), ClientError> {
        self.control
            .log_part(t.build, t.index, &t.lease, offset, text)
    }

    fn report(&self, t: &TaskRef, report: &TaskReport) -> Result<(), ClientError> {
        self.control
            .report_task(t.build, t.index, &t.lease, report)
            .map(|_| ())
    }

    fn hand_back(&self, t: &TaskRef) -> Result<(), ClientError> {
        self.control.hand_back(t.build, t.index, &t.lease)
    }

    fn repo<'b>(&'b self, a: &Assignment) -> Box<dyn BuildRepo + 'b> {
        Box::new(RemoteBuildRepo {
            client: &self.files,
            url: self.url.clone(),
            name: a.repo.clone(),
            token: self.token.clone(),
            layout: self.layout,
            lease: Some(lease_param(a.build, a.index, &a.lease)),
        })
    }
}

/// How an agent works.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// How the server names it (in a task's history, among the agents).
    pub name: String,
    pub platforms: Vec<String>,
    /// Tasks built at once.
    pub jobs: usize,
    /// Absolute; slot `N` builds in `<workspace>/slot-N`, so no two builds share a
    /// checkout.
    pub workspace: PathBuf,
    pub isolation: Isolation,
    /// The pristine roots its builds run in, by platform (`--root`), made ready.
    pub roots: Vec<crate::build::root::Root>,
    /// The waits after a call that did not reach the server.
    pub backoff: Backoff,
    /// The wait before asking again when there was nothing to do.
    pub idle: Duration,
    /// How often the log's new bytes are sent while a task runs.
    pub log_every: Duration,
}

impl AgentOptions {
    pub fn new(name: String, platforms: Vec<String>, workspace: PathBuf) -> AgentOptions {
        AgentOptions {
            name,
            platforms,
            jobs: 4,
            workspace,
            isolation: Isolation::None,
            roots: Vec::new(),
            backoff: Backoff::SERVER,
            idle: Duration::from_secs(1),
            log_every: Duration::from_secs(2),
        }
    }

    /// The workspace of slot `n`.
    pub fn slot_workspace(&self, n: usize) -> PathBuf {
        self.workspace.join(format!("slot-{n}"))
    }
}

/// `<hostname>-<pid>`: an agent's name unless given one.
pub fn default_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = match std::str::from_utf8(&buf[..end]) {
        Ok(h) if ok && !h.is_empty() => h.to_string(),
        _ => "agent".to_string(),
    };
    format!("{host}-{}", std::process::id())
}

/// How a task ended on this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Built,
    Cached,
    Failed,
    Cancelled,
    /// Another agent holds it now, or it ended on the server: dropped, not reported.
    Dropped,
    /// The server refused the report.
    Unreported,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Built => "built",
            End::Cached => "cached",
            End::Failed => "failed",
            End::Cancelled => "cancelled",
            End::Dropped => "dropped",
            End::Unreported => "unreported",
        }
    }
}

/// A task this agent is done with (`--json` prints one a line).
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub build: BuildId,
    pub index: u32,
    pub configuration: String,
    pub module: String,
    pub platform: String,
    pub result: End,
    pub seconds: f64,
    pub key: Option<String>,
    pub artifacts: Vec<BuiltFile>,
    /// Why it failed, was cancelled, dropped or not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where its log can be read: the published one, else this node's file.
    pub log: Option<String>,
}

/// Hears what the agent does, for progress lines.
pub trait AgentObserver: Sync {
    fn claimed(&self, _task: &TaskRef, _a: &Assignment) {}
    /// The task's build moved on to `step`.
    fn step(&self, _task: &TaskRef, _configuration: &str, _step: &str) {}
    /// The task's steps were stopped.
    fn halted(&self, _task: &TaskRef, _why: &Halt) {}
    /// `what` failed; asked again after `retry`.
    fn trouble(&self, _what: &str, _e: &ClientError, _retry: Duration) {}
    fn finished(&self, _f: &Finished) {}
}

/// Observes nothing.
pub struct Unobserved;
impl AgentObserver for Unobserved {}

/// Why a task's steps were stopped before its build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// Its build was cancelled: it is reported cancelled.
    Cancelled,
    /// The lease is no longer the task's (another agent holds it, or it ended): it is
    /// dropped.
    Lost(String),
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Cancelled => write!(f, "the build was cancelled; its running steps were stopped"),
            Halt::Lost(why) => write!(f, "the task is no longer this agent's: {why}"),
        }
    }
}

/// The tasks an agent holds now, with their leases: what its claims say it runs, and what
/// it hands back when it is stopped.
#[derive(Debug, Default)]
pub struct Held(Mutex<BTreeMap<(BuildId, u32), String>>);

impl Held {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<(BuildId, u32), String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, t: &TaskRef) {
        self.map().insert((t.build, t.index), t.lease.clone());
    }

    fn remove(&self, t: &TaskRef) {
        self.map().remove(&(t.build, t.index));
    }

    pub fn list(&self) -> Vec<TaskRef> {
        self.map()
            .iter()
            .map(|(&(build, index), lease)| TaskRef {
                build,
                index,
                lease: lease.clone(),
            })
            .collect()
    }

    /// Hands every held task back with `give` (e.g. [`Farm::hand_back`]), each asked
    /// once; the ones the server took.
    pub fn hand_back_all(
        &self,
        give: impl Fn(&TaskRef) -> Result<(), ClientError>,
    ) -> Vec<TaskRef> {
        self.list()
            .into_iter()
            .filter(|t| give(t).is_ok())
            .collect()
    }
}

/// What the agent did, by how tasks ended.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub ended: BTreeMap<End, usize>,
}

/// Asks for work while a slot is free and `stopping()` is false, builds what it gets, and
/// returns once it is stopping and every task it took has ended (or when the server
/// refuses it work and nothing runs any more).
pub fn run(
    farm: &dyn Farm,
    opts: &AgentOptions,
    held: &Held,
    stopping: &dyn Fn() -> bool,
    observer: &dyn AgentObserver,
) -> Result<Summary, AgentError> {
    isolate::check(opts.isolation)?;
    let jobs = opts.jobs.max(1);
    // Each slot's workspace is this agent's for as long as it runs.
    let mut _held = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let path = opts.slot_workspace(n);
        fs::create_dir_all(&path).map_err(|source| AgentError::Workspace {
            path: path.clone(),
            source,
        })?;
        _held.push(crate::build::workspace::hold(&path)?);
    }
    let mut busy = vec![false; jobs];
    let mut summary = Summary::default();
    let mut refused: Option<ClientError> = None;
    let (tx, rx) = mpsc::channel::<(usize, Finished)>();
    let mut next_ask = Instant::now();
    let mut failures = 0u32;
    std::thread::scope(|s| {
        loop {
            let asking = refused.is_none() && !stopping();
            if !asking && busy.iter().all(|b| !b) {
                break;
            }
            let free = busy.iter().position(|b| !b);
            if let Some(slot) = free.filter(|_| asking && Instant::now() >= next_ask) {
                let claim = Claim {
                    agent: opts.name.clone(),
                    platforms: opts.platforms.clone(),
                    workspace: opts.slot_workspace(slot),
                    slots: jobs,
                    running: held.list().iter().map(|t| (t.build, t.index)).collect(),
                };
                match farm.claim(&claim) {
                    Ok(Some(a)) => {
                        failures = 0;
                        let task = TaskRef::of(&a);
                        held.insert(&task);
                        observer.claimed(&task, &a);
                        busy[slot] = true;
                        let tx = tx.clone();
                        let workspace = claim.workspace;
                        s.spawn(move || {
                            let f = build_task(farm, opts, &workspace, a, observer);
                            let _ = tx.send((slot, f));
                        });
                        // Another free slot asks at once.
                        continue;
                    }
                    Ok(None) => {
                        failures = 0;
                        next_ask = Instant::now() + opts.idle;
                    }
                    Err(e) if refuses(&e) => refused = Some(e),
                    Err(e) => {
                        let wait = opts.backoff.delay(failures, rand::random());
                        failures = failures.saturating_add(1);
                        observer.trouble("asking for work", &e, wait);
                        next_ask = Instant::now() + wait;
                    }
                }
            }
            let wait = if asking && free.is_some() {
                next_ask.saturating_duration_since(Instant::now())
            } else {
                Duration::MAX
            };
            // Looks at `stopping` again now and then.
            match rx.recv_timeout(wait.min(Duration::from_millis(200))) {
                Ok((slot, f)) => {
                    busy[slot] = false;
                    held.remove(&TaskRef {
                        build: f.build,
                        index: f.index,
                        lease: String::new(),
                    });
                    *summary.ended.entry(f.result).or_default() += 1;
                    observer.finished(&f);
                    if failures == 0 {
                        next_ask = Instant::now();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    match refused {
        Some(e) => Err(AgentError::Refused(e)),
        None => Ok(summary),
    }
}

/// A refusal that asking again will not change: the token, its role, a server without a
/// build farm, a claim it cannot read.
fn refuses(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
        || matches!(e, ClientError::Answer { .. })
}

/// One task's build, on its slot's thread (in `workspace`): the watcher beside it, then
/// the rest of the log and the report.
fn build_task(
    farm: &dyn Farm,
    opts: &AgentOptions,
    workspace: &Path,
    a: Assignment,
    observer: &dyn AgentObserver,
) -> Finished {
    let task = TaskRef::of(&a);
    let start = Instant::now();
    // The slot is held for the agent's life: its long-unused downloads go task by task.
    let _ = crate::build::workspace::prune_downloads(workspace);
    let mut job = a.job.clone();
    job.isolation = opts.isolation;
    job.root = opts
        .roots
        .iter()
        .find(|r| r.platform == job.platform)
        .cloned();
    // The tree stays on the server; a sandbox shows the workspace in its place.
    if !job.tree_dir.is_dir() {
        job.tree_dir = job.workspace.clone();
    }
    let mut finished = Finished {
        build: a.build,
        index: a.index,
        configuration: job.configuration.clone(),
        module: job.module.clone(),
        platform: job.platform.clone(),
        result: End::Failed,
        seconds: 0.0,
        key: None,
        artifacts: vec![],
        reason: None,
        log: None,
    };
    let log_file = job.log_file();
    let control = Control {
        steps: stop::Task::new(),
        halt: Mutex::new(None),
    };
    let mut tail = LogTail::default();
    let result = if job.workspace != workspace {
        // Two slots must never share a checkout.
        Err(format!(
            "the server resolved the task for workspace {}, not {}",
            job.workspace.display(),
            workspace.display()
        ))
    } else {
        // What an earlier build of this slot logged is not this one's.
        let _ = fs::remove_file(&log_file);
        let done = Done::default();
        let steps = Steps {
            task: &task,
            configuration: &job.configuration,
            observer,
        };
        std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let w = Watch {
                    farm,
                    task: &task,
                    control: &control,
                    log_file: &log_file,
                    beat_every: Duration::from_millis(a.heartbeat_ms.max(50)),
                    opts,
                    observer,
                };
                w.watch(&done)
            });
            let result = {
                let _steps_are_the_tasks = control.steps.enter();
                let begun = run::begin(&job, &steps);
                let repo = Guarded {
                    inner: farm.repo(&a),
                    control: &control,
                };
                run::finish(&job, begun, &a.dependency_keys, &a, &repo, &steps).0
            };
            done.set();
            if let Ok(t) = watcher.join() {
                tail = t;
            }
            Ok(result)
        })
    };
    finished.seconds = start.elapsed().as_secs_f64();
    let halt = control.halted();
    if let Some(Halt::Lost(why)) = &halt {
        finished.result = End::Dropped;
        finished.reason = Some(why.clone());
        finished.log = Some(log_file.display().to_string());
        return finished;
    }
    let report = match result {
        Ok(r) => report_of(&r, halt.as_ref(), &mut finished),
        Err(why) => {
            finished.reason = Some(why.clone());
            TaskReport {
                state: TaskState::Failed,
                key: None,
                artifacts: vec![],
                reason: Some(why),
                log: None,
            }
        }
    };
    if finished.log.is_none() {
        finished.log = Some(log_file.display().to_string());
    }
    let patient = Patient {
        backoff: opts.backoff,
        observer,
    };
    // The rest of the log, always; then the report.
    let sent = patient.call("sending the log", || {
        send_log(farm, &task, &log_file, &mut tail, true)
    });
    if let Err(e) = &sent
        && e.is_stale_lease()
    {
        finished.result = End::Dropped;
        finished.reason = Some(e.to_string());
        return finished;
    }
    match patient.call("reporting the task", || farm.report(&task, &report)) {
        Ok(()) => {}
        Err(e) if e.is_stale_lease() => {
            finished.result = End::Dropped;
            finished.reason = Some(e.to_string());
        }
        Err(e) => {
            finished.result = End::Unreported;
            finished.reason = Some(e.to_string());
        }
    }
    finished
}

/// The report of a build that ran (`halt`: why its steps were stopped), and the same in
/// `finished`.
fn report_of(r: &ComponentResult, halt: Option<&Halt>, finished: &mut Finished) -> TaskReport {
    let (state, end, reason) = match (halt, r.result) {
        (Some(h), _) => (TaskState::Cancelled, End::Cancelled, Some(h.to_string())),
        (None, Outcome::Built) => (TaskState::Built, End::Built, None),
        (None, Outcome::Cached) => (TaskState::Cached, End::Cached, None),
        (None, Outcome::Failed | Outcome::Skipped) => {
            (TaskState::Failed, End::Failed, r.reason.clone())
        }
    };
    // Only a published log is named: this node's file is no use to others.
    let log = r
        .log
        .clone()
        .filter(|l| crate::client::is_url(l) && halt.is_none());
    finished.result = end;
    finished.key = r.key.clone();
    finished.artifacts = r.artifacts.clone();
    finished.reason = reason.clone();
    finished.log = log.clone();
    TaskReport {
        state,
        key: r.key.clone(),
        artifacts: if halt.is_some() {
            vec![]
        } else {
            r.artifacts.clone()
        },
        reason,
        log,
    }
}

/// A task's steps and why they were stopped.
struct Control {
    steps: stop::Task,
    halt: Mutex<Option<Halt>>,
}

impl Control {
    fn halted(&self) -> Option<Halt> {
        self.halt.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the task's steps for `why` (the first reason holds); whether this was the
    /// first.
    fn halt(&self, why: Halt) -> bool {
        {
            let mut h = self.halt.lock().unwrap_or_else(|p| p.into_inner());
            if h.is_some() {
                return false;
            }
            *h = Some(why);
        }
        self.steps.stop();
        true
    }
}

/// The task's repository, refusing to publish once its steps were stopped.
struct Guarded<'a> {
    inner: Box<dyn BuildRepo + 'a>,
    control: &'a Control,
}

impl Guarded<'_> {
    fn open(&self) -> Result<(), CacheError> {
        match self.control.halted() {
            Some(h) => Err(CacheError {
                what: h.to_string(),
                hint: None,
            }),
            None => Ok(()),
        }
    }
}

impl BuildRepo for Guarded<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn build(&self, tarball: &str) -> Result<Option<StoredBuild>, CacheError> {
        self.inner.build(tarball)
    }

    fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError> {
        self.open()?;
        self.inner.publish(out)
    }

    fn record(&self, tarball: &str, record: &BuildRecord, log: &[u8]) -> Result<(), CacheError> {
        self.open()?;
        self.inner.record(tarball, record, log)
    }

    fn location(&self, path: &str) -> String {
        self.inner.location(path)
    }

    fn packages(&self) -> Result<Box<dyn crate::resolve::Packages>, CacheError> {
        self.inner.packages()
    }

    fn token(&self) -> Option<String> {
        self.inner.token()
    }
}

/// A task's build steps, heard by the agent's observer.
struct Steps<'a> {
    task: &'a TaskRef,
    configuration: &'a str,
    observer: &'a dyn AgentObserver,
}

impl build::Observer for Steps<'_> {
    fn step(&self, _index: usize, step: &str) {
        self.observer.step(self.task, self.configuration, step);
    }
}

/// Calls asked again, with backoff, while they fail for a transient reason.
struct Patient<'a> {
    backoff: Backoff,
    observer: &'a dyn AgentObserver,
}

impl Patient<'_> {
    fn call<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            match call() {
                Err(e) if e.is_transient() => {
                    let wait = self.backoff.delay(attempt, rand::random());
                    self.observer.trouble(what, &e, wait);
                    std::thread::sleep(wait);
                    attempt = attempt.saturating_add(1);
                }
                r => return r,
            }
        }
    }
}

/// Beside a running build: the start reported, the lease renewed, the log sent.
struct Watch<'a> {
    farm: &'a dyn Farm,
    task: &'a TaskRef,
    control: &'a Control,
    log_file: &'a Path,
    beat_every: Duration,
    opts: &'a AgentOptions,
    observer: &'a dyn AgentObserver,
}

/// Set when a task's build is over; the watcher beside it sleeps on it, so it wakes at
/// once rather than at its next look.
#[derive(Default)]
struct Done {
    set: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Done {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `d`, less once it is set.
    fn wait(&self, d: Duration) {
        let g = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.cond.wait_timeout_while(g, d, |set| !*set);
    }
}

impl Watch<'_> {
    /// Until `done`; returns how much of the log was sent.
    fn watch(&self, done: &Done) -> LogTail {
        let mut tail = LogTail::default();
        let now = Instant::now();
        let (mut started, mut start_failures, mut next_start) = (false, 0u32, now);
        let (mut beat_failures, mut next_beat) = (0u32, now + self.beat_every);
        let mut next_log = now + self.opts.log_every;
        while !done.is_set() {
            // A lost task is dropped: nothing more is said of it.
            if matches!(self.control.halted(), Some(Halt::Lost(_))) {
                done.wait(Duration::from_millis(50));
                continue;
            }
            let now = Instant::now();
            if !started && now >= next_start {
                match self.farm.started(self.task) {
                    Ok(()) => started = true,
                    Err(e) => {
                        if let Some(wait) = self.failed("reporting the start", &e, start_failures) {
                            start_failures = start_failures.saturating_add(1);
                            next_start = now + wait;
                        }
                    }
                }
            }
            if now >= next_beat {
                match self.farm.heartbeat(self.task) {
                    Ok(beat) => {
                        beat_failures = 0;
                        next_beat = now + self.beat_every;
                        if beat.cancel && self.control.halt(Halt::Cancelled) {
                            self.observer.halted(self.task, &Halt::Cancelled);
                        }
                    }
                    Err(e) => {
                        if let Some(wait) = self.failed("renewing the lease", &e, beat_failures) {
                            beat_failures = beat_failures.saturating_add(1);
                            // Never less often than the heartbeat asks.
                            next_beat = now + wait.min(self.beat_every);
                        }
                    }
                }
            }
            if now >= next_log {
                next_log = now + self.opts.log_every;
                if let Err(e) = send_log(self.farm, self.task, self.log_file, &mut tail, false) {
                    // The same part goes again next time.
                    self.failed("sending the log", &e, 0);
                }
            }
            done.wait(Duration::from_millis(50));
        }
        tail
    }

    /// After a failed call: a lost lease (or a task the server no longer knows) stops the
    /// task's steps (`None`); else how long to wait before asking again.
    fn failed(&self, what: &str, e: &ClientError, failures: u32) -> Option<Duration> {
        let lost = e.is_stale_lease() || matches!(e, ClientError::Http { status: 404, .. });
        if lost {
            let why = Halt::Lost(e.to_string());
            if self.control.halt(why.clone()) {
                self.observer.halted(self.task, &why);
            }
            return None;
        }
        let wait = self.opts.backoff.delay(failures, rand::random());
        self.observer.trouble(what, e, wait);
        Some(wait)
    }
}

/// How much of a task's log the server has: the bytes of the file read, and the bytes of
/// text sent (the next part's offset; the two differ where bytes that are not UTF-8 were
/// replaced).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogTail {
    pub read: u64,
    pub sent: u64,
}

/// The next part of a log, from `bytes` (what follows the part sent last): its text and
/// how many of the bytes it takes. Bytes that are not UTF-8 become U+FFFD; a character
/// cut at the end waits for the rest of it, unless this is the `last` part.
pub fn log_part(bytes: &[u8], last: bool) -> (String, usize) {
    let mut text = String::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match std::str::from_utf8(&bytes[at..]) {
            Ok(rest) => {
                text.push_str(rest);
                at = bytes.len();
            }
            Err(e) => {
                let good = e.valid_up_to();
                text.push_str(&String::from_utf8_lossy(&bytes[at..at + good]));
                at += good;
                match e.error_len() {
                    Some(bad) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        at += bad;
                    }
                    None if last => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        at = bytes.len();
                    }
                    None => break,
                }
            }
        }
    }
    (text, at)
}

/// Sends what `path` gained since `tail`, in parts; with `last`, all of it (a character
/// cut at the end included). A file not there yet has nothing to send. Past
/// [`crate::repo::builds::MAX_LOG_BYTES`] nothing more is sent: the published log has
/// the end.
fn send_log(
    farm: &dyn Farm,
    task: &TaskRef,
    path: &Path,
    tail: &mut LogTail,
    last: bool,
) -> Result<(), ClientError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(()),
    };
    let mut buf = Vec::with_capacity(PART_BYTES);
    let mut again = false;
    while tail.sent < crate::repo::builds::MAX_LOG_BYTES as u64 {
        buf.clear();
        let read = file
            .seek(SeekFrom::Start(tail.read))
            .and_then(|_| (&mut file).take(PART_BYTES as u64).read_to_end(&mut buf));
        if read.is_err() || buf.is_empty() {
            return Ok(());
        }
        let at_end = buf.len() < PART_BYTES;
        let (text, used) = log_part(&buf, last && at_end);
        if used == 0 {
            return Ok(());
        }
        match farm.log(task, tail.sent, &text) {
            // The server has less than was sent (it lost some): all of it again, from
            // the start (what it has is taken once).
            Err(ClientError::Http { code, .. }) if code == "log_gap" && !again => {
                again = true;
                *tail = LogTail::default();
                continue;
            }
            r => r?,
        }
        tail.read += used as u64;
        tail.sent += text.len() as u64;
        if at_end {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::run::{Job, Steps as JobSteps};
    use crate::farm::WirePlan;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn backoff_doubles_up_to_its_limit_and_jitter_only_shortens() {
        let b = Backoff::SERVER;
        let secs: Vec<u64> = (0..8).map(|n| b.delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(30));
        let j = b.delay(2, 0.999);
        assert!(
            j < Duration::from_secs(4) && j > Duration::from_secs(3),
            "{j:?}"
        );
    }

    #[test]
    fn log_parts_keep_characters_whole_and_replace_what_is_not_utf8() {
        assert_eq!(log_part(b"make\n", false), ("make\n".into(), 5));
        // "é" is C3 A9: cut after C3, the part stops before it and waits.
        assert_eq!(log_part(b"caf\xc3", false), ("caf".into(), 3));
        assert_eq!(log_part(b"\xc3", false), (String::new(), 0));
        assert_eq!(log_part(b"\xc3\xa9!", false), ("é!".into(), 3));
        // The last part sends a cut character as a replacement.
        assert_eq!(log_part(b"caf\xc3", true), ("caf\u{fffd}".into(), 4));
        // Bytes that cannot be UTF-8 are replaced, and the text goes on.
        assert_eq!(
            log_part(b"a\xffb\xc3(c", false),
            ("a\u{fffd}b\u{fffd}(c".into(), 6)
        );
    }

    /// A server's farm, played: tasks made from recipes as agents claim them.
    struct FakeFarm {
        recipes: Mutex<Vec<Recipe>>,
        /// Claims that fail as if the server were down, first.
        unreachable_claims: AtomicUsize,
        unreachable_reports: AtomicUsize,
        claims: Mutex<Vec<PathBuf>>,
        calls: Mutex<Vec<String>>,
        logs: Mutex<BTreeMap<u32, String>>,
        parts: AtomicUsize,
        reports: Mutex<Vec<(u32, TaskReport)>>,
        published: Mutex<Vec<String>>,
        beats: AtomicUsize,
        /// What the heartbeat of each claimed task answers.
        beat: Mutex<BTreeMap<u32, Answer>>,
    }

    struct Recipe {
        commands: Vec<(&'static str, String)>,
        /// What the heartbeat answers.
        beat: Answer,
    }

    /// What a heartbeat answers, the `n`th of the farm.
    type Answer = fn(usize) -> Result<Beat, ClientError>;

    fn fine(_: usize) -> Result<Beat, ClientError> {
        Ok(Beat {
            expires: 0,
            cancel: false,
        })
    }

    fn unreachable() -> ClientError {
        ClientError::Unreachable {
            url: "http://127.0.0.1:9".into(),
            why: "connection refused".into(),
        }
    }

    impl FakeFarm {
        fn new(recipes: Vec<Recipe>) -> FakeFarm {
            FakeFarm {
                recipes: Mutex::new(recipes),
                unreachable_claims: AtomicUsize::new(0),
                unreachable_reports: AtomicUsize::new(0),
                claims: Mutex::new(vec![]),
                calls: Mutex::new(vec![]),
                logs: Mutex::new(BTreeMap::new()),
                parts: AtomicUsize::new(0),
                reports: Mutex::new(vec![]),
                published: Mutex::new(vec![]),
                beats: AtomicUsize::new(0),
                beat: Mutex::new(BTreeMap::new()),
            }
        }

        fn all_claimed(&self) -> bool {
            self.recipes.lock().unwrap().is_empty()
        }

        fn call(&self, what: String) {
            self.calls.lock().unwrap().push(what);
        }
    }

    fn job(ws: &Path, index: usize, commands: &[(&str, String)]) -> Job {
        let module = format!("p.m{index}");
        let output = ws.join("_output").join(&module);
        Job {
            index,
            configuration: format!("m{index}_R_1_0_0_1"),
            module: module.clone(),
            platform: "el9_x86_64".into(),
            commands: commands
                .iter()
                .map(|(t, c)| (t.to_string(), c.clone()))
                .collect(),
            workspace: ws.to_path_buf(),
            tree_dir: ws.join("no-such-tree"),
            checkout_dir: ws.join(&module),
            prefix: output.join("prefix"),
            stage: output.join("stage"),
            artifacts: output.join("artifacts"),
            output,
            tarball: format!("p/{module}/1.0.0/el9_x86_64/m{index}-1.0.0-1.tar.gz"),
            configuration_text: format!("configuration m{index}"),
            tag: None,
            steps: JobSteps::full(),
            force: false,
            keep_going: false,
            step_timeout: None,
            isolation: Isolation::None,
            root: None,
            env: vec![],
            development: None,
            local_deps: vec![],
        }
    }

    impl Farm for FakeFarm {
        fn claim(&self, claim: &Claim) -> Result<Option<Assignment>, ClientError> {
            self.call("claim".into());
            if self
                .unreachable_claims
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(unreachable());
            }
            let mut recipes = self.recipes.lock().unwrap();
            if recipes.is_empty() {
                return Ok(None);
            }
            let r = recipes.remove(0);
            let mut claims = self.claims.lock().unwrap();
            claims.push(claim.workspace.clone());
            let index = claims.len() as u32 - 1;
            let job = job(&claim.workspace, index as usize, &r.commands);
            self.beat.lock().unwrap().insert(index, r.beat);
            Ok(Some(Assignment {
                build: 1,
                index,
                lease: format!("lease{index}"),
                expires: 0,
                heartbeat_ms: 100,
                repo: "nightly".into(),
                plan: Ok(WirePlan {
                    order: vec![job.configuration.clone()],
                    dependencies: vec![],
                    stage_dir: job.stage.clone(),
                    workspace_dir: job.workspace.clone(),
                    format: crate::layout::PackageFormat::Rpm,
                }),
                spec: Err("packed by its packaging target".into()),
                source: Err("packed by its packaging target".into()),
                dependency_keys: vec![],
                job,
            }))
        }

        fn started(&self, t: &TaskRef) -> Result<(), ClientError> {
            self.call(format!("started {}", t.index));
            Ok(())
        }

        fn heartbeat(&self, t: &TaskRef) -> Result<Beat, ClientError> {
            self.call(format!("heartbeat {}", t.index));
            let n = self.beats.fetch_add(1, Ordering::SeqCst);
            let beat = self.beat.lock().unwrap()[&t.index];
            beat(n)
        }

        fn log(&self, t: &TaskRef, offset: u64, text: &str) -> Result<(), ClientError> {
            let mut logs = self.logs.lock().unwrap();
            let log = logs.entry(t.index).or_default();
            // Parts come in order, each at the end of what came before.
            assert_eq!(offset, log.len() as u64, "task {}", t.index);
            log.push_str(text);
            self.parts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn report(&self, t: &TaskRef, report: &TaskReport) -> Result<(), ClientError> {
            self.call(format!("report {}", t.index));
            if self
                .unreachable_reports
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(unreachable());
            }
            assert_eq!(t.lease, format!("lease{}", t.index));
            self.reports.lock().unwrap().push((t.index, report.clone()));
            Ok(())
        }

        fn hand_back(&self, t: &TaskRef) -> Result<(), ClientError> {
            self.call(format!("hand back {}", t.index));
            Ok(())
        }

        fn repo<'a>(&'a self, _a: &Assignment) -> Box<dyn BuildRepo + 'a> {
            Box::new(FakeRepo(self))
        }
    }

    struct FakeRepo<'a>(&'a FakeFarm);

    impl BuildRepo for FakeRepo<'_> {
        fn describe(&self) -> String {
            "the fake farm's repository".into()
        }
        fn build(&self, _tarball: &str) -> Result<Option<StoredBuild>, CacheError> {
            Ok(None)
        }
        fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError> {
            let mut files = vec![];
            for e in fs::read_dir(out).map_err(|e| CacheError {
                what: e.to_string(),
                hint: None,
            })? {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                self.0.published.lock().unwrap().push(name.clone());
                files.push(BuiltFile {
                    path: name,
                    sha256: "0".repeat(64),
                });
            }
            Ok(files)
        }
        fn record(&self, tarball: &str, _r: &BuildRecord, _log: &[u8]) -> Result<(), CacheError> {
            self.0.call(format!("record {tarball}"));
            Ok(())
        }
        fn location(&self, path: &str) -> String {
            format!("http://127.0.0.1:9/repos/nightly/{path}")
        }
        fn packages(&self) -> Result<Box<dyn crate::resolve::Packages>, CacheError> {
            Err(CacheError {
                what: "not asked".into(),
                hint: None,
            })
        }
        fn token(&self) -> Option<String> {
            None
        }
    }

    fn options(ws: &Path, jobs: usize) -> AgentOptions {
        AgentOptions {
            jobs,
            backoff: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(100),
            },
            idle: Duration::from_millis(20),
            log_every: Duration::from_millis(100),
            ..AgentOptions::new("test".into(), vec!["el9_x86_64".into()], ws.to_path_buf())
        }
    }

    /// Commands of a component that builds: a checkout, a compile that takes a while and
    /// logs a character that is not ASCII, and a packaging target writing its artifact.
    fn builds(seconds: &str) -> Vec<(&'static str, String)> {
        vec![
            ("checkout", "mkdir -p $MODULE && echo source > $MODULE/src.txt".into()),
            (
                "compile",
                format!("echo compiling; sleep {seconds}; printf 'caf\\303\\251\\n'"),
            ),
            (
                "packaging",
                "mkdir -p ../_output/$MODULE/artifacts && echo pkg > ../_output/$MODULE/artifacts/m.tar.gz".into(),
            ),
        ]
    }

    /// `commands` with `$MODULE` named, for task `i`.
    fn named(commands: Vec<(&'static str, String)>, i: usize) -> Vec<(&'static str, String)> {
        commands
            .into_iter()
            .map(|(t, c)| (t, c.replace("$MODULE", &format!("p.m{i}"))))
            .collect()
    }

    #[test]
    fn an_agent_builds_its_tasks_streams_their_logs_and_rides_out_an_unreachable_server() {
        let dir = tempfile::tempdir().unwrap();
        let farm = FakeFarm::new(vec![
            Recipe {
                commands: named(builds("0.6"), 0),
                beat: fine,
            },
            Recipe {
                commands: named(builds("0.6"), 1),
                beat: fine,
            },
        ]);
        farm.unreachable_claims.store(2, Ordering::SeqCst);
        farm.unreachable_reports.store(1, Ordering::SeqCst);
        let opts = options(dir.path(), 2);
        let held = Held::default();
        let summary = run(&farm, &opts, &held, &|| farm.all_claimed(), &Unobserved).unwrap();
        assert_eq!(summary.ended.get(&End::Built), Some(&2), "{summary:?}");
        assert!(held.list().is_empty());
        // Each slot built in its own workspace.
        let claims: BTreeSet<PathBuf> = farm.claims.lock().unwrap().iter().cloned().collect();
        assert_eq!(
            claims,
            [opts.slot_workspace(0), opts.slot_workspace(1)].into()
        );
        let reports = farm.reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 2);
        let logs = farm.logs.lock().unwrap().clone();
        for (i, r) in &reports {
            assert_eq!(r.state, TaskState::Built, "{r:?}");
            assert_eq!(r.artifacts.len(), 1);
            assert!(r.key.is_some());
            // The published log is the one named.
            assert!(r.log.as_deref().unwrap().ends_with(".build.log"), "{r:?}");
            // The server has the whole log, as the file holds it.
            let ws = &farm.claims.lock().unwrap()[*i as usize];
            let file = job(ws, *i as usize, &[]).log_file();
            assert_eq!(logs[i], fs::read_to_string(file).unwrap());
            assert!(logs[i].contains("café"), "{}", logs[i]);
        }
        // Parts went while the builds ran, not only at the end.
        assert!(farm.parts.load(Ordering::SeqCst) > 2);
        let calls = farm.calls.lock().unwrap().clone();
        for i in 0..2 {
            let at = |what: &str| calls.iter().position(|c| *c == format!("{what} {i}"));
            let (started, report) = (at("started").unwrap(), at("report").unwrap());
            assert!(started < report, "{calls:?}");
            assert!(at("heartbeat").unwrap() < report, "{calls:?}");
        }
        // Two claims failed, one report did: each asked again.
        assert!(calls.iter().filter(|c| *c == "claim").count() >= 4);
        assert_eq!(calls.iter().filter(|c| c.starts_with("report")).count(), 3);
    }

    #[test]
    fn a_cancelled_task_stops_within_a_heartbeat_and_is_reported_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = |_| {
            Ok(Beat {
                expires: 0,
                cancel: true,
            })
        };
        let farm = FakeFarm::new(vec![Recipe {
            commands: named(builds("30"), 0),
            beat: cancel,
        }]);
        let start = Instant::now();
        run(
            &farm,
            &options(dir.path(), 1),
            &Held::default(),
            &|| farm.all_claimed(),
            &Unobserved,
        )
        .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let reports = farm.reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 1);
        let r = &reports[0].1;
        assert_eq!(r.state, TaskState::Cancelled);
        assert!(r.reason.as_deref().unwrap().contains("cancelled"), "{r:?}");
        assert!(r.artifacts.is_empty());
        // Nothing was published after the stop; the log went all the same.
        assert!(farm.published.lock().unwrap().is_empty());
        assert!(farm.logs.lock().unwrap()[&0].contains("== compile"));
    }

    #[test]
    fn a_task_whose_lease_is_lost_is_dropped_unreported() {
        let dir = tempfile::tempdir().unwrap();
        let stale = |_| {
            Err(ClientError::Http {
                url: "http://127.0.0.1:9/api/v1/builds/1/tasks/0/heartbeat".into(),
                status: 409,
                code: "stale_lease".into(),
                message: "lease is not current (other holds it now)".into(),
                hint: None,
            })
        };
        let farm = FakeFarm::new(vec![Recipe {
            commands: named(builds("30"), 0),
            beat: stale,
        }]);
        struct Seen(Mutex<Vec<Finished>>);
        impl AgentObserver for Seen {
            fn finished(&self, f: &Finished) {
                self.0.lock().unwrap().push(f.clone());
            }
        }
        let seen = Seen(Mutex::new(vec![]));
        let start = Instant::now();
        let summary = run(
            &farm,
            &options(dir.path(), 1),
            &Held::default(),
            &|| farm.all_claimed(),
            &seen,
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(summary.ended.get(&End::Dropped), Some(&1));
        let f = seen.0.lock().unwrap()[0].clone();
        assert!(f.reason.unwrap().contains("other holds it now"));
        assert!(farm.reports.lock().unwrap().is_empty());
        assert!(farm.published.lock().unwrap().is_empty());
        let calls = farm.calls.lock().unwrap().clone();
        assert!(!calls.iter().any(|c| c.starts_with("record")), "{calls:?}");
        // One heartbeat told it; nothing was said of the task after.
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("heartbeat")).count(),
            1
        );
    }
}
