//! The build farm over HTTP: builds submitted (resolved in the server's `--tree`), agents
//! claiming tasks and reporting under their leases, running tasks' logs, the agents seen,
//! and the thread that expires leases. A thin shell over [`crate::farm`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::api::blocking;
use super::errors::ApiError;
use super::{Settings, Shared};
use crate::farm::{BuildView, FarmError, Queue, TaskReport, now_ms};
use crate::store::{BuildId, FarmBuild, RepoKind, Role, Task, TaskState};

/// What the server keeps for the farm besides the store.
pub struct FarmState {
    pub queue: Queue,
    /// Agents that asked for work, by name.
    agents: Mutex<BTreeMap<String, AgentSeen>>,
    /// Claims answered from releases kept resolved.
    pub claims: super::claims::Claims,
}

/// An agent, as last seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentSeen {
    pub name: String,
    pub platforms: Vec<String>,
    pub slots: u32,
    /// Milliseconds since the epoch.
    pub last_seen: i64,
    /// Tasks it holds (build, index).
    pub running: Vec<(BuildId, u32)>,
}

impl FarmState {
    pub fn new(settings: &Settings) -> FarmState {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.01));
        FarmState {
            queue: Queue::new(
                secs(settings.lease_seconds),
                secs(settings.heartbeat_seconds),
            ),
            agents: Mutex::default(),
            claims: Default::default(),
        }
    }

    pub fn agents(&self) -> Vec<AgentSeen> {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Expires leases about every second (or every heartbeat, when that is shorter), for as
/// long as the server runs.
pub fn expire_in_background(state: Shared) {
    let every = state
        .farm
        .queue
        .heartbeat
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(20));
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(every);
            if let Err(e) = state
                .farm
                .queue
                .expire(state.repos.store.as_ref(), now_ms())
            {
                tracing::warn!("expiring build farm leases: {e}");
            }
        }
    });
}

impl From<FarmError> for ApiError {
    fn from(e: FarmError) -> ApiError {
        let hint = e.hint();
        let message = e.to_string();
        let err = match e {
            FarmError::Store(s) => return s.into(),
            FarmError::NoSuchBuild(_) | FarmError::NoSuchTask { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_build", message)
            }
            FarmError::StaleLease { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_lease", message)
            }
            FarmError::LogGap { .. } => ApiError::new(StatusCode::CONFLICT, "log_gap", message),
            FarmError::Invalid(_) => ApiError::bad_request("invalid", message),
        };
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

impl From<crate::build::BuildError> for ApiError {
    fn from(e: crate::build::BuildError) -> ApiError {
        let err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unbuildable",
            e.to_string(),
        );
        match e.hint() {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds")
            .route(web::get().to(list_builds))
            .route(web::post().to(submit)),
    )
    .service(web::resource("/builds/{build}").route(web::get().to(show_build)))
    .service(web::resource("/builds/{build}/cancel").route(web::post().to(cancel)))
    .service(
        web::resource("/builds/{build}/tasks/{index}/log")
            .route(web::get().to(read_log))
            .route(web::post().to(append_log)),
    )
    .service(web::resource("/builds/{build}/tasks/{index}/{what}").route(web::post().to(task_call)))
    .service(web::resource("/agents").route(web::get().to(list_agents)))
    .service(web::resource("/agents/claim").route(web::post().to(claim)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Submission {
    /// The project configuration; default: the newest release.
    pub project: Option<String>,
    pub platforms: Vec<String>,
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub force: bool,
    /// Defaults profiles of the server's tree, in order.
    #[serde(default)]
    pub defaults: Vec<String>,
    /// Where the tasks publish; default: the server's only volatile repository.
    pub repo: Option<String>,
}

/// `POST /api/v1/builds`: resolves the release in the server's tree, as `packyard build`
/// does, and queues its tasks (builder).
async fn submit(
    req: HttpRequest,
    body: web::Json<Submission>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let caller = state.require(&req, Role::Builder)?;
    let view = submitted(&state, caller, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/builds/{}", view.build.id)))
        .json(view))
}

/// A submission by `caller`, queued (also the browse pages' form).
pub(super) async fn submitted(
    state: &Shared,
    caller: crate::store::TokenRecord,
    body: Submission,
) -> Result<BuildView, ApiError> {
    let Some(dir) = state.settings.tree.clone() else {
        return Err(no_tree());
    };
    if body.platforms.is_empty() {
        return Err(
            ApiError::bad_request("invalid", "no platforms to build for")
                .hint("give one or more, e.g. \"platforms\": [\"el9_x86_64\"]"),
        );
    }
    let repo = match &body.repo {
        Some(r) => state.repos.repo(r)?.name,
        None => only_volatile(state)?,
    };
    let s = state.clone();
    blocking(move || {
        let tree = s.tree(&dir).map_err(ApiError::from)?;
        let release = crate::farm::Release {
            tree: &tree,
            layout: &s.layout,
            project: body.project.clone(),
            only: body.only.clone(),
            force: body.force,
            defaults: body.defaults.clone(),
        };
        let read = |tarball: &str| s.repos.build(&repo, tarball);
        let (project, tasks) = release.tasks(&body.platforms, &read)?;
        let build = FarmBuild {
            id: 0,
            project,
            platforms: body.platforms.clone(),
            repo: repo.clone(),
            only: body.only.clone(),
            force: body.force,
            defaults: body.defaults.clone(),
            by: if caller.name.is_empty() {
                caller.id.clone()
            } else {
                caller.name.clone()
            },
            submitted: 0,
            finished: None,
            cancelled: false,
        };
        let store = s.repos.store.as_ref();
        let id = s.farm.queue.submit(store, build, tasks, now_ms())?;
        shown(&s, id)
    })
    .await
}

/// The answer of a farm call on a server without a module tree.
pub(super) fn no_tree() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_tree",
        "this server has no module tree to resolve a build in",
    )
    .hint("start the server with `packyard serve --tree DIR`")
}

/// The only volatile repository, where builds go by default.
fn only_volatile(state: &Shared) -> Result<String, ApiError> {
    let volatile: Vec<String> = state
        .repos
        .store
        .repos()?
        .into_iter()
        .filter(|r| r.kind == RepoKind::Volatile)
        .map(|r| r.name)
        .collect();
    match volatile.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_repository",
            "the server has no volatile repository to build into",
        )
        .hint("create one: `packyard repo create nightly --kind volatile`")),
        many => Err(ApiError::bad_request(
            "invalid",
            format!(
                "the server has several volatile repositories ({})",
                many.join(", ")
            ),
        )
        .hint("name one with \"repo\"")),
    }
}

/// Whether the caller may see `build`: as with files, a private repository's builds (their
/// tasks and logs) need a token; so do those into a repository no longer there, which may
/// have been private. Others are anyone's to read.
fn may_see(state: &Shared, req: &HttpRequest, build: &FarmBuild) -> Result<(), ApiError> {
    state
        .may_read(req, &build.repo)
        .or_else(|_| Ok(state.require(req, Role::Builder).map(|_| ())?))
}

/// The builds the caller may see (a caller without a token: those of public repositories).
pub(super) fn visible_builds(
    state: &Shared,
    req: &HttpRequest,
) -> Result<Vec<FarmBuild>, ApiError> {
    let signed_in = state.caller(req)?.is_some();
    let mut builds = state.repos.store.farm_builds()?;
    if !signed_in {
        builds.retain(|b| state.may_read(req, &b.repo).is_ok());
    }
    Ok(builds)
}

/// Build `id`, if the caller may see it.
pub(super) fn seen_build(
    state: &Shared,
    req: &HttpRequest,
    id: BuildId,
) -> Result<FarmBuild, ApiError> {
    let build = stored(state, id)?;
    may_see(state, req, &build)?;
    Ok(build)
}

/// Build `id` with its tasks, if the caller may see it.
pub(super) fn seen(state: &Shared, req: &HttpRequest, id: BuildId) -> Result<BuildView, ApiError> {
    with_tasks(state, seen_build(state, req, id)?)
}

/// Build `id` with its tasks (for a caller who changed it, so may see it).
pub(super) fn shown(state: &Shared, id: BuildId) -> Result<BuildView, ApiError> {
    with_tasks(state, stored(state, id)?)
}

fn stored(state: &Shared, id: BuildId) -> Result<FarmBuild, ApiError> {
    Ok(state
        .repos
        .store
        .farm_build(id)?
        .ok_or(FarmError::NoSuchBuild(id))?)
}

fn with_tasks(state: &Shared, build: FarmBuild) -> Result<BuildView, ApiError> {
    let tasks = state.repos.store.tasks(build.id)?;
    Ok(BuildView::of(build, tasks, true))
}

async fn list_builds(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    let store = state.repos.store.as_ref();
    let mut out = Vec::new();
    for b in visible_builds(&state, &req)? {
        let tasks = store.tasks(b.id)?;
        out.push(BuildView::of(b, tasks, false));
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn show_build(
    req: HttpRequest,
    path: web::Path<BuildId>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(seen(&state, &req, path.into_inner())?))
}

async fn cancel(
    req: HttpRequest,
    path: web::Path<BuildId>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Builder)?;
    let id = path.into_inner();
    let s = state.clone();
    let view = blocking(move || {
        s.farm.queue.cancel(s.repos.store.as_ref(), id, now_ms())?;
        shown(&s, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Claim {
    agent: String,
    platforms: Vec<String>,
    /// Where the agent builds this task: its job is resolved for it.
    workspace: PathBuf,
    #[serde(default = "one")]
    slots: u32,
    #[serde(default)]
    running: Vec<(BuildId, u32)>,
}

fn one() -> u32 {
    1
}

/// `POST /api/v1/agents/claim`: the oldest claimable task of the agent's platforms, with
/// everything to build it (200), or nothing to do (204).
async fn claim(
    req: HttpRequest,
    body: web::Json<Claim>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Builder)?;
    let body = body.into_inner();
    if !body.workspace.is_absolute() {
        return Err(ApiError::bad_request(
            "invalid",
            format!(
                "the workspace {} is not an absolute path",
                body.workspace.display()
            ),
        ));
    }
    let base = state.base_url(&req);
    let s = state.clone();
    let assignment = blocking(move || {
        let now = now_ms();
        s.farm
            .agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                body.agent.clone(),
                AgentSeen {
                    name: body.agent.clone(),
                    platforms: body.platforms.clone(),
                    slots: body.slots,
                    last_seen: now,
                    running: body.running.clone(),
                },
            );
        let store = s.repos.store.as_ref();
        let Some(task) = s
            .farm
            .queue
            .claim(store, &body.agent, &body.platforms, now)?
        else {
            return Ok(None);
        };
        // The log of an attempt before (a lost agent's, one handed back) is not this
        // one's: the new agent's parts start at offset 0.
        store.remove_task_log(task.build, task.index)?;
        match assign(&s, &task, &body.workspace, &base) {
            Ok(a) => Ok(Some(a)),
            Err(e) => {
                // A task that cannot be prepared here (the tree changed under it) fails
                // with the reason rather than going round the queue.
                let lease = task
                    .lease
                    .as_ref()
                    .map(|l| l.id.clone())
                    .unwrap_or_default();
                let report = TaskReport {
                    state: TaskState::Failed,
                    key: None,
                    artifacts: vec![],
                    reason: Some(format!("the server could not prepare it: {}", e.message)),
                    log: None,
                };
                s.farm
                    .queue
                    .report(store, task.build, task.index, &lease, report, now)?;
                Ok(None)
            }
        }
    })
    .await?;
    Ok(match assignment {
        Some(a) => HttpResponse::Ok().json(a),
        None => HttpResponse::NoContent().finish(),
    })
}

fn assign(
    s: &Shared,
    task: &Task,
    workspace: &Path,
    base: &str,
) -> Result<crate::farm::Assignment, ApiError> {
    let store = s.repos.store.as_ref();
    let build = store
        .farm_build(task.build)?
        .ok_or(FarmError::NoSuchBuild(task.build))?;
    // Only the dependencies' tasks: a claim reads nothing else of a long build.
    let mut deps = Vec::with_capacity(task.deps.len());
    for &d in &task.deps {
        deps.extend(store.task(task.build, d)?);
    }
    s.farm.claims.assignment(
        build,
        task.clone(),
        deps,
        workspace.to_path_buf(),
        base.to_string(),
    )
}

#[derive(Deserialize)]
struct LeaseBody {
    lease: String,
    #[serde(flatten)]
    report: Option<TaskReport>,
}

/// `POST /api/v1/builds/{build}/tasks/{index}/{started|heartbeat|report|hand-back}`.
async fn task_call(
    req: HttpRequest,
    path: web::Path<(BuildId, u32, String)>,
    body: web::Json<LeaseBody>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Builder)?;
    let (build, index, what) = path.into_inner();
    let body = body.into_inner();
    let s = state.clone();
    // The answer's body, if any (an HttpResponse cannot leave the blocking thread).
    let answer: Option<serde_json::Value> = blocking(move || {
        let (q, store, now) = (&s.farm.queue, s.repos.store.as_ref(), now_ms());
        let lease = &body.lease;
        Ok(match what.as_str() {
            "started" => {
                let before = store.task(build, index)?;
                q.started(store, build, index, lease, now)?;
                if let Some(t) = before.filter(|t| t.state == TaskState::Claimed)
                    && let Some(claimed) = t.claimed
                {
                    s.metrics.started((now - claimed) as f64 / 1000.0);
                }
                None
            }
            "heartbeat" => Some(json(&q.heartbeat(store, build, index, lease, now)?)?),
            "report" => {
                let report = body.report.ok_or_else(|| {
                    ApiError::bad_request("invalid", "a report names the task's state")
                })?;
                let ended = q.report(store, build, index, lease, report, now)?;
                Some(json(&crate::farm::TaskView::from(ended))?)
            }
            "hand-back" => {
                q.hand_back(store, build, index, lease, now)?;
                None
            }
            other => {
                return Err(ApiError::not_found(format!("no task call {other:?}"))
                    .hint("started, heartbeat, log, report or hand-back"));
            }
        })
    })
    .await?;
    Ok(match answer {
        Some(v) => HttpResponse::Ok().json(v),
        None => HttpResponse::NoContent().finish(),
    })
}

fn json<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogPart {
    lease: String,
    /// Bytes of the log the agent sent before this part.
    offset: u64,
    text: String,
}

/// `POST .../log`: a part of a running task's log, at its offset (a part the server has
/// already is taken once, so an agent may send it again after an error).
async fn append_log(
    req: HttpRequest,
    path: web::Path<(BuildId, u32)>,
    body: web::Json<LogPart>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Builder)?;
    let (build, index) = path.into_inner();
    let part = body.into_inner();
    let s = state.clone();
    blocking(move || {
        let store = s.repos.store.as_ref();
        let bytes = part.text.as_bytes();
        Ok(s.farm
            .queue
            .append_log(store, build, index, &part.lease, part.offset, bytes)?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET .../log`: what the task's agent has sent of its log so far (plain text).
async fn read_log(
    req: HttpRequest,
    path: web::Path<(BuildId, u32)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (build, index) = path.into_inner();
    seen_build(&state, &req, build)?;
    let store = state.repos.store.as_ref();
    if store.task(build, index)?.is_none() {
        return Err(FarmError::NoSuchTask { build, index }.into());
    }
    let s = state.clone();
    let text = blocking(move || Ok(s.repos.store.task_log(build, index)?)).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(text))
}

async fn list_agents(state: Shared) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.farm.agents()))
}
