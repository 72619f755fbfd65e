//! The build farm's assignments: one thread keeps releases resolved per project, selection,
//! platform and agent workspace, and answers each claim from them. Resolving a release of
//! thousands of components costs far more than a claim may (a claim answers in
//! milliseconds), and a `Resolver` is not shared across threads — the same reason
//! `packyard build` resolves on one coordinating thread.
//!
//! What is kept is dropped when the server's module tree is read again (a submission
//! found it changed), and the oldest entry goes when too many are kept.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc};

use actix_web::http::StatusCode;

use super::Shared;
use super::errors::ApiError;
use super::farm::no_tree;
use crate::farm::{Assignment, Prepared, Release};
use crate::store::{FarmBuild, Task};

/// Releases kept resolved at most (each agent slot's workspace has its own).
const KEPT: usize = 32;

/// One claim's question to the resolving thread.
struct Ask {
    build: FarmBuild,
    task: Task,
    deps: Vec<Task>,
    workspace: PathBuf,
    /// The server's base URL, for the plan's download locations.
    base: String,
    reply: mpsc::Sender<Result<Assignment, ApiError>>,
}

/// The way to the resolving thread, started with the server.
#[derive(Default)]
pub struct Claims {
    asks: OnceLock<mpsc::Sender<Ask>>,
}

impl Claims {
    /// Starts the thread that answers claims (for a server with a module tree).
    pub fn start(state: Shared) {
        let Some(dir) = state.settings.tree.clone() else {
            return;
        };
        let (tx, rx) = mpsc::channel();
        if state.farm.claims.asks.set(tx).is_ok() {
            std::thread::spawn(move || serve(&state, &dir, &rx));
        }
    }

    /// What the agent that claimed `task` (of `build`, needing `deps`) builds it with in
    /// `workspace`. Blocking.
    pub fn assignment(
        &self,
        build: FarmBuild,
        task: Task,
        deps: Vec<Task>,
        workspace: PathBuf,
        base: String,
    ) -> Result<Assignment, ApiError> {
        let asks = self.asks.get().ok_or_else(no_tree)?;
        let (reply, answer) = mpsc::channel();
        asks.send(Ask {
            build,
            task,
            deps,
            workspace,
            base,
            reply,
        })
        .map_err(|_| no_tree())?;
        answer.recv().map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the build farm's resolving thread stopped",
            )
        })?
    }
}

/// What one kept release is kept for.
#[derive(PartialEq, Eq, Clone)]
struct Key {
    project: String,
    only: Vec<String>,
    force: bool,
    defaults: Vec<String>,
    platform: String,
    workspace: PathBuf,
}

impl Key {
    fn of(ask: &Ask) -> Key {
        Key {
            project: ask.build.project.clone(),
            only: ask.build.only.clone(),
            force: ask.build.force,
            defaults: ask.build.defaults.clone(),
            platform: ask.task.platform.clone(),
            workspace: ask.workspace.clone(),
        }
    }
}

/// The resolving thread: answers asks until the server stops, keeping what it resolved
/// for as long as the module tree stays the one it resolved in.
fn serve(state: &Shared, dir: &std::path::Path, asks: &mpsc::Receiver<Ask>) {
    let mut waiting: Option<Ask> = None;
    loop {
        let Some(ask) = waiting.take().or_else(|| asks.recv().ok()) else {
            return;
        };
        let tree = match state.kept_tree(dir) {
            Ok(t) => t,
            Err(e) => {
                let _ = ask.reply.send(Err(ApiError::from(e)));
                continue;
            }
        };
        let mut kept: VecDeque<(Key, Prepared<'_>)> = VecDeque::new();
        let mut next = Some(ask);
        while let Some(ask) = next.take() {
            // Read again since (a submission saw it change): resolve in the new one.
            if !state.kept_tree(dir).is_ok_and(|t| Arc::ptr_eq(&t, &tree)) {
                waiting = Some(ask);
                break;
            }
            let answer = answer(state, &tree, &mut kept, &ask);
            let _ = ask.reply.send(answer);
            next = asks.recv().ok();
        }
        if waiting.is_none() {
            return;
        }
    }
}

fn answer<'t>(
    state: &'t Shared,
    tree: &'t crate::config::Tree,
    kept: &mut VecDeque<(Key, Prepared<'t>)>,
    ask: &Ask,
) -> Result<Assignment, ApiError> {
    let key = Key::of(ask);
    let at = match kept.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            let release = Release {
                tree,
                layout: &state.layout,
                project: Some(key.project.clone()),
                only: key.only.clone(),
                force: key.force,
                defaults: key.defaults.clone(),
            };
            let prepared = release.prepare_for_agents(&key.platform, &key.workspace)?;
            if kept.len() >= KEPT {
                kept.pop_front();
            }
            kept.push_back((key, prepared));
            kept.len() - 1
        }
    };
    let build = &ask.build;
    // The agent fetches dependencies from the served repository.
    let packages = crate::resolve::sources::StoredRepo {
        repos: &state.repos,
        repo: build.repo.clone(),
        url: format!("{}/repos/{}", ask.base, crate::paths::url_path(&build.repo)),
    };
    let (_, prepared) = &kept[at];
    prepared
        .assignment(
            build,
            &ask.task,
            &ask.deps,
            &packages,
            state.farm.queue.heartbeat,
        )
        .map_err(ApiError::from)
}
