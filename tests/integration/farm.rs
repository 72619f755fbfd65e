//! The build farm's HTTP side, driven by hand (no agent): a release submitted to a server
//! started with `--tree`, tasks claimed under leases, reports under stale leases refused,
//! logs, cancelling, and many claims at once for one task.

use serde_json::{Value, json};

use crate::repo::create_nightly;
use crate::serve::{Server, token};
use crate::support::fixture;

fn farm_server(d: &std::path::Path, extra: &[&str]) -> (Server, String) {
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let tree = fixture("trees/my-project");
    let mut args = vec!["--tree", tree.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(d, &args), builder)
}

fn claim(server: &Server, token: &str, agent: &str, ws: &str) -> (u16, Value) {
    server.post(
        "/api/v1/agents/claim",
        &json!({"agent": agent, "platforms": ["el9_x86_64"], "workspace": ws}),
        Some(token),
    )
}

fn task_call(server: &Server, token: &str, a: &Value, what: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"lease": a["lease"]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    server.post(
        &format!("/api/v1/builds/{}/tasks/{}/{what}", a["build"], a["index"]),
        &body,
        Some(token),
    )
}

#[test]
fn a_submitted_release_is_claimed_task_by_task_under_leases() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (server, builder) = farm_server(d, &[]);
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64", "deb12_amd64"]}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_u64().unwrap();
    let tasks = b["tasks"].as_array().unwrap();
    // Every component of the release, once per platform, none built yet.
    assert_eq!(tasks.len(), 12, "{b}");
    assert_eq!(b["project"], "my-project_R_2_0_0_1");
    assert!(tasks.iter().all(|t| t["state"] == "queued"), "{b}");
    // An agent of another platform gets nothing; one of el9 gets a task with no
    // dependencies first, resolved for its workspace.
    let (s, _) = server.post(
        "/api/v1/agents/claim",
        &json!({"agent": "arm", "platforms": ["el9_aarch64"], "workspace": "/ws"}),
        Some(&builder),
    );
    assert_eq!(s, 204);
    let (s, a) = claim(&server, &builder, "one", "/srv/ws-one");
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["build"], id);
    let index = a["index"].as_u64().unwrap() as usize;
    assert!(tasks[index]["deps"].as_array().unwrap().is_empty(), "{a}");
    assert_eq!(a["repo"], "nightly");
    assert!(
        a["job"]["checkout_dir"]
            .as_str()
            .unwrap()
            .starts_with("/srv/ws-one/"),
        "{a}"
    );
    assert!(a["spec"]["Ok"]["name"].is_string(), "{a}");
    assert!(a["plan"]["Ok"]["order"].is_array(), "{a}");
    // Started, a heartbeat, two log parts (the second sent twice), read back.
    assert_eq!(
        task_call(&server, &builder, &a, "started", json!({})).0,
        204
    );
    let (s, beat) = task_call(&server, &builder, &a, "heartbeat", json!({}));
    assert_eq!((s, beat["cancel"].as_bool()), (200, Some(false)), "{beat}");
    for (offset, text) in [
        (0, "== checkout\n"),
        (12, "== compile\n"),
        (12, "== compile\n"),
    ] {
        let (s, b) = task_call(
            &server,
            &builder,
            &a,
            "log",
            json!({"offset": offset, "text": text}),
        );
        assert_eq!(s, 204, "{b}");
    }
    let log_path = format!("/api/v1/builds/{id}/tasks/{index}/log");
    assert_eq!(
        server.get(&log_path),
        (200, b"== checkout\n== compile\n".to_vec())
    );
    let o = remote(
        &server,
        &builder,
        &["builds", "log", &id.to_string(), &index.to_string()],
    );
    assert_eq!(crate::support::stdout(&o), "== checkout\n== compile\n");
    // The task is running on the server's side, and /metrics says so; its lease is
    // the agent's secret (anyone may read builds into a public repository).
    let shown = server.get_json(&format!("/api/v1/builds/{id}"));
    assert_eq!(shown["tasks"][index]["state"], "running", "{shown}");
    assert_eq!(shown["tasks"][index]["lease"]["agent"], "one", "{shown}");
    assert!(
        !shown.to_string().contains(a["lease"].as_str().unwrap()),
        "{shown}"
    );
    assert_eq!(shown["state"], "running");
    let claimable = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ready"] == true && t["state"] == "queued")
        .count();
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    for want in [
        "packyard_farm_tasks{state=\"running\"} 1".to_string(),
        "packyard_farm_tasks{state=\"queued\"} 11".to_string(),
        format!("packyard_farm_queue_depth {claimable}"),
        "packyard_farm_agents 2".to_string(),
        "packyard_farm_claim_to_start_seconds_count 1".to_string(),
    ] {
        assert!(metrics.contains(&want), "{want}\n{metrics}");
    }
    // The pages: the build's tasks with what each waits on, the task's log (refreshing
    // while it runs), the agents.
    let (s, page) = server.get(&format!("/builds/{id}"));
    let page = String::from_utf8(page).unwrap();
    assert_eq!(s, 200);
    assert!(
        page.contains("web_server_R_2_5_1_1") && page.contains("(queued)"),
        "{page}"
    );
    let r = ureq::get(format!("{}/builds/{id}/t/{index}", server.url))
        .call()
        .unwrap();
    assert_eq!(r.headers().get("refresh").unwrap(), "3");
    let (_, page) = server.get(&format!("/builds/{id}/t/{index}"));
    assert!(String::from_utf8(page).unwrap().contains("== compile"));
    let (_, page) = server.get("/agents");
    assert!(String::from_utf8(page).unwrap().contains("<td>one</td>"));
    // A made-up lease changes nothing: 409.
    let stale = json!({"build": id, "index": index, "lease": "0".repeat(32)});
    for what in ["heartbeat", "started", "hand-back"] {
        let (s, b) = task_call(&server, &builder, &stale, what, json!({}));
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("stale_lease")),
            "{what}: {b}"
        );
    }
    let (s, b) = task_call(
        &server,
        &builder,
        &stale,
        "report",
        json!({"state": "built"}),
    );
    assert_eq!(s, 409, "{b}");
    let key = format!(
        "x/el9_x86_64/x-1-1.tar.gz?lease={id}.{index}.{}",
        "0".repeat(32)
    );
    let (s, b) = server.upload("nightly", &key, b"x", Some(&builder), &[]);
    assert_eq!((s, b["code"].as_str()), (409, Some("stale_lease")), "{b}");
    // Reported failed under its lease: what needs it is skipped, on its platform only.
    let (s, b) = task_call(
        &server,
        &builder,
        &a,
        "report",
        json!({"state": "failed", "reason": "compile: exit status 2"}),
    );
    assert_eq!(s, 200, "{b}");
    let shown = server.get_json(&format!("/api/v1/builds/{id}"));
    let tasks = shown["tasks"].as_array().unwrap();
    let skipped: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "skipped").collect();
    assert!(!skipped.is_empty(), "{shown}");
    assert!(
        skipped.iter().all(|t| t["platform"] == "el9_x86_64"),
        "{shown}"
    );
    assert!(
        skipped
            .iter()
            .all(|t| t["reason"].as_str().unwrap().contains("failed")),
        "{shown}"
    );
    // The agent was seen.
    let agents = server.get_json("/api/v1/agents");
    assert!(agents.to_string().contains("\"one\""), "{agents}");
    // Cancelled: what was queued ends cancelled, the build ends.
    let (s, b) = server.post(
        &format!("/api/v1/builds/{id}/cancel"),
        &json!({}),
        Some(&builder),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "cancelled", "{b}");
    assert!(
        b["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] != "queued")
    );
    let (s, _) = claim(&server, &builder, "one", "/srv/ws-one");
    assert_eq!(s, 204);
    // The builds page submits with the token it is given, and lists the builds.
    let agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .new_agent();
    for (token, want) in [("pky_bad", 401), (builder.as_str(), 303)] {
        let r = agent
            .post(format!("{}/builds", server.url))
            .send_form([
                ("platforms", "el9_x86_64"),
                ("only", "database_schemas"),
                ("token", token),
            ])
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
        if want == 303 {
            assert!(
                r.headers()
                    .get("location")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("/builds/")
            );
        }
    }
    let (_, page) = server.get("/builds");
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("cancelled") && page.contains("queued"),
        "{page}"
    );
    assert!(server.stop().success());
}

#[test]
fn many_agents_asking_at_once_for_the_only_task_one_gets_it() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (server, builder) = farm_server(d, &[]);
    // One component that needs nothing: one task.
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64"], "only": ["database_schemas"]}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["tasks"].as_array().unwrap().len(), 1, "{b}");
    let got: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (server, builder) = (&server, &builder);
                s.spawn(move || claim(server, builder, &format!("a{i}"), "/ws").0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got.iter().filter(|&&s| s == 200).count(), 1, "{got:?}");
    assert_eq!(got.iter().filter(|&&s| s == 204).count(), 11, "{got:?}");
    let shown = server.get_json(&format!("/api/v1/builds/{}", b["id"]));
    assert_eq!(shown["tasks"][0]["attempts"], 1, "{shown}");
    assert!(server.stop().success());
}

#[test]
fn a_lease_that_runs_out_puts_its_task_back_naming_the_lost_agent() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (server, builder) = farm_server(d, &["--lease", "0.3", "--heartbeat", "0.1"]);
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64"], "only": ["database_schemas"]}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    let (s, first) = claim(&server, &builder, "lost", "/ws");
    assert_eq!(s, 200, "{first}");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (s, second) = claim(&server, &builder, "other", "/ws");
    assert_eq!(s, 200, "{second}");
    assert_ne!(first["lease"], second["lease"]);
    // The first node comes back: its report is refused and changes nothing.
    let (s, b) = task_call(
        &server,
        &builder,
        &first,
        "report",
        json!({"state": "built"}),
    );
    assert_eq!((s, b["code"].as_str()), (409, Some("stale_lease")), "{b}");
    let shown = server.get_json(&format!("/api/v1/builds/{}", first["build"]));
    let history = shown["tasks"][0]["history"].to_string();
    assert!(history.contains("lease of lost ran out"), "{history}");
    assert!(history.contains("other"), "{history}");
    assert_eq!(shown["tasks"][0]["attempts"], 2);
    assert!(server.stop().success());
}

/// `packyard ARGS` against `server` with `token`; its output, which must be a success.
fn remote(server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--server", &server.url, "--token", token])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn submit_and_builds_on_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (server, builder) = farm_server(d, &[]);
    // Without a server there is no farm.
    let o = crate::support::packyard(&["submit", "--platform", "el9_x86_64"]);
    assert!(!o.status.success());
    assert!(
        crate::support::stderr(&o).contains("--server"),
        "{}",
        crate::support::stderr(&o)
    );
    let o = remote(
        &server,
        &builder,
        &[
            "--json",
            "submit",
            "--platform",
            "el9_x86_64",
            "--only",
            "database_schemas",
        ],
    );
    assert!(o.status.success(), "{}", crate::support::stderr(&o));
    let submitted: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = submitted["id"].as_u64().unwrap();
    let o = remote(&server, &builder, &["builds", "list"]);
    let listed = crate::support::stdout(&o);
    assert!(listed.contains(&format!("{id:>5} queued")), "{listed}");
    let o = remote(&server, &builder, &["builds", "show", &id.to_string()]);
    let shown = crate::support::stdout(&o);
    assert!(shown.contains("database_schemas_R_"), "{shown}");
    let o = remote(
        &server,
        &builder,
        &["--json", "builds", "cancel", &id.to_string()],
    );
    assert!(o.status.success(), "{}", crate::support::stderr(&o));
    let cancelled: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    // `--wait` follows a build until it ends: cancelled from elsewhere, it exits 1.
    let waiting = std::process::Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--server", &server.url, "--token", &builder])
        .args([
            "submit",
            "--platform",
            "el9_x86_64",
            "--only",
            "database_schemas",
            "--wait",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let second = loop {
        let list = server.get_json("/api/v1/builds");
        if let Some(b) = list.as_array().unwrap().iter().find(|b| b["id"] != id) {
            break b["id"].as_u64().unwrap();
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "the second build never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (s, _) = server.post(
        &format!("/api/v1/builds/{second}/cancel"),
        &json!({}),
        Some(&builder),
    );
    assert_eq!(s, 200);
    let o = waiting.wait_with_output().unwrap();
    assert!(!o.status.success());
    let out = crate::support::stdout(&o);
    assert!(
        out.contains(&format!(
            "build {second} of my-project_R_2_0_0_1 for el9_x86_64: cancelled"
        )),
        "{out}"
    );
    assert!(server.stop().success());
}

#[test]
fn a_release_built_already_is_cached_at_submission() {
    if !crate::support::have_tool("make", &["--version"])
        || !crate::support::have_tool("cc", &["--version"])
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = crate::build::fixtures_copy(t.path());
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    // A build node built the release through the server, as `packyard build` does.
    let ws = t.path().join("ws");
    let (o, list) = crate::build::build(
        None,
        &tree,
        &[
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
            "--server",
            &server.url,
            "--token",
            &builder,
        ],
    );
    assert!(o.status.success(), "{}", crate::support::stderr(&o));
    assert!(list.iter().all(|c| c["result"] == "built"));
    // Submitted again: every task is cached at once, no agent needed.
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64"]}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["state"], "succeeded", "{b}");
    assert_eq!(b["counts"]["cached"], list.len(), "{b}");
    assert!(b["finished"].is_i64(), "{b}");
    let keys: Vec<&Value> = list.iter().map(|c| &c["key"]).collect();
    for t in b["tasks"].as_array().unwrap() {
        assert!(keys.contains(&&t["key"]), "{t}");
    }
    // --force builds everything again.
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64"], "force": true}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    assert!(b["counts"].get("cached").is_none(), "{b}");
    assert!(server.stop().success());
}

#[test]
fn builds_into_a_private_repository_are_seen_only_with_a_token() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &["--private"]);
    let builder = token(d, "builder");
    let tree = fixture("trees/my-project");
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    let (s, b) = server.post(
        "/api/v1/builds",
        &json!({"platforms": ["el9_x86_64"]}),
        Some(&builder),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_u64().unwrap();
    // Without a token the build is not listed and nothing of it is shown; with one, all is.
    assert_eq!(server.get_json("/api/v1/builds"), json!([]));
    let (s, list) = server.get_as("/api/v1/builds", Some(&builder));
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert_eq!((s, list[0]["id"].as_u64()), (200, Some(id)), "{list}");
    let (_, page) = server.get("/builds");
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("No builds yet"), "{page}");
    for path in [
        format!("/api/v1/builds/{id}"),
        format!("/api/v1/builds/{id}/tasks/0/log"),
        format!("/builds/{id}"),
        format!("/builds/{id}/t/0"),
    ] {
        assert_eq!(server.get(&path).0, 401, "{path}");
        assert_eq!(server.get_as(&path, Some(&builder)).0, 200, "{path}");
    }
    server.stop();
}
