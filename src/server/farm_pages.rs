//! The build farm's browse pages: builds (with a form to submit one, which asks for a
//! token), one build's tasks and what each waits on, a task's log (refreshing while it
//! runs), and the agents seen. Server-rendered, no script.

use std::fmt::Write;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::Shared;
use super::browse::{esc, page};
use super::errors::ApiError;
use crate::store::{BuildId, TaskState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/builds", web::get().to(builds))
        .route("/builds", web::post().to(submit))
        .route("/builds/{build}", web::get().to(build))
        .route("/builds/{build}/t/{index}", web::get().to(task_log))
        .route("/agents", web::get().to(agents));
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

async fn builds(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    let store = state.repos.store.as_ref();
    let mut body = String::from("<h1>Builds</h1>");
    let list = super::farm::visible_builds(&state, &req)?;
    if list.is_empty() {
        body += "<p>No builds yet.</p>";
    } else {
        body += "<table><tr><th>build</th><th>state</th><th>release</th><th>platforms</th>\
                 <th>tasks</th><th>submitted</th><th>by</th></tr>";
        for b in list {
            let tasks = store.tasks(b.id)?;
            let v = crate::farm::BuildView::of(b, tasks, false);
            let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = write!(
                body,
                "<tr><td><a href=\"/builds/{id}\">{id}</a></td><td><span class=tag>{}</span></td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.state),
                esc(&v.build.project),
                esc(&v.build.platforms.join(", ")),
                esc(&counts.join(", ")),
                when(v.build.submitted),
                esc(&v.build.by),
                id = v.build.id,
            );
        }
        body += "</table>";
    }
    if state.settings.tree.is_some() {
        body += "<h2>Submit a build</h2><form method=post action=\"/builds\">\
                 <p><label>platforms <input name=platforms placeholder=\"el9_x86_64,deb12_amd64\" required></label>\
                 <label> release <input name=project placeholder=\"the newest\"></label>\
                 <label> only <input name=only placeholder=\"modules, comma-separated\"></label></p>\
                 <p><label>token <input type=password name=token required></label> \
                 <button>submit</button></p></form>";
    }
    Ok(page("builds", &body))
}

#[derive(Deserialize)]
struct SubmitForm {
    platforms: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    only: String,
    token: String,
}

/// The form's submission: the token it carries must be a builder's.
async fn submit(form: web::Form<SubmitForm>, state: Shared) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let caller = crate::auth::check(state.repos.store.as_ref(), form.token.trim())?;
    crate::auth::require(caller.role, crate::store::Role::Builder)?;
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let submission = super::farm::Submission {
        project: Some(form.project.trim().to_string()).filter(|p| !p.is_empty()),
        platforms: list(&form.platforms),
        only: list(&form.only),
        force: false,
        defaults: vec![],
        repo: None,
    };
    let view = super::farm::submitted(&state, caller, submission).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("/builds/{}", view.build.id)))
        .finish())
}

async fn build(
    req: HttpRequest,
    path: web::Path<BuildId>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let v = super::farm::seen(&state, &req, id)?;
    let tasks = v.tasks.clone().unwrap_or_default();
    let mut body = format!(
        "<h1>Build {id}</h1><p><span class=tag>{}</span> {} for {} into <a href=\"/r/{repo}\">{repo}</a>, \
         submitted {} by {}</p>",
        esc(&v.state),
        esc(&v.build.project),
        esc(&v.build.platforms.join(", ")),
        when(v.build.submitted),
        esc(&v.build.by),
        repo = esc(&v.build.repo),
    );
    body += "<table><tr><th>#</th><th>configuration</th><th>platform</th><th>state</th>\
             <th>waits on</th><th>agent</th><th>attempts</th><th>log</th></tr>";
    for t in &tasks {
        let waits: Vec<String> = t
            .deps
            .iter()
            .filter_map(|&d| tasks.get(d as usize))
            .map(|d| format!("{} ({})", esc(&d.configuration), d.state.as_str()))
            .collect();
        let agent = t.history.iter().rev().find_map(|e| e.agent.clone());
        let _ = write!(
            body,
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td><span class=tag>{}</span>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td><a href=\"/builds/{id}/t/{i}\">log</a></td></tr>",
            esc(&t.configuration),
            esc(&t.platform),
            t.state.as_str(),
            t.reason
                .as_ref()
                .map(|r| format!(" {}", esc(r)))
                .unwrap_or_default(),
            waits.join(", "),
            esc(&agent.unwrap_or_default()),
            t.attempts,
            i = t.index,
        );
    }
    body += "</table>";
    Ok(page(&format!("build {id}"), &body))
}

async fn task_log(
    req: HttpRequest,
    path: web::Path<(BuildId, u32)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (id, index) = path.into_inner();
    super::farm::seen_build(&state, &req, id)?;
    let task = state
        .repos
        .store
        .task(id, index)?
        .ok_or(crate::farm::FarmError::NoSuchTask { build: id, index })?;
    let text = state.repos.store.task_log(id, index)?;
    let mut history = String::new();
    for e in &task.history {
        let _ = writeln!(
            history,
            "{}  {}{}",
            when(e.at),
            e.what,
            e.agent
                .as_ref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        );
    }
    let body = format!(
        "<h1>{} ({})</h1><p>build <a href=\"/builds/{id}\">{id}</a>, task {index}: \
         <span class=tag>{}</span></p><h2>History</h2><pre>{}</pre><h2>Log</h2><pre>{}</pre>",
        esc(&task.configuration),
        esc(&task.platform),
        task.state.as_str(),
        esc(&history),
        esc(&String::from_utf8_lossy(&text)),
    );
    let mut r = page(&format!("{} log", task.configuration), &body);
    // A running task's page follows its log.
    if matches!(
        task.state,
        TaskState::Queued | TaskState::Claimed | TaskState::Running
    ) {
        r.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("refresh"),
            actix_web::http::header::HeaderValue::from_static("3"),
        );
    }
    Ok(r)
}

async fn agents(state: Shared) -> Result<HttpResponse, ApiError> {
    let mut body = String::from("<h1>Agents</h1>");
    let list = state.farm.agents();
    if list.is_empty() {
        body += "<p>No agent has asked for work since the server started.</p>";
    } else {
        body += "<table><tr><th>agent</th><th>platforms</th><th>slots</th><th>running</th>\
                 <th>last seen</th></tr>";
        for a in list {
            let running: Vec<String> = a
                .running
                .iter()
                .map(|(b, i)| format!("<a href=\"/builds/{b}/t/{i}\">{b}/{i}</a>"))
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.name),
                esc(&a.platforms.join(", ")),
                a.slots,
                running.join(", "),
                when(a.last_seen),
            );
        }
        body += "</table>";
    }
    Ok(page("agents", &body))
}
