//! `packyard agent`: build nodes taking the tasks of releases submitted to a server started
//! with `--tree`, judged by the server's view of the tasks, the repository's files and
//! records, the logs, and the processes left: a whole release built, a lost node's task
//! built by another after its lease, the stopping signals, a cancel.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::build::{need_build_tools, sleeping};
use crate::repo::create_nightly;
use crate::serve::{Server, token};
use crate::support::fixture;

/// A running `packyard agent`, killed when dropped.
struct Agent {
    child: Option<Child>,
}

impl Agent {
    fn start(server: &Server, token: &str, ws: &Path, name: &str, extra: &[&str]) -> Agent {
        let child = Command::new(env!("CARGO_BIN_EXE_packyard"))
            .args(["--json", "--server", &server.url, "--token", token])
            .args(["agent", "--platforms", "el9_x86_64", "--name", name])
            .arg("--workspace")
            .arg(ws)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child: Some(child) }
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits at most `limit` for the agent to exit: its status and its `--json` lines.
    fn end(mut self, limit: Duration) -> (ExitStatus, Vec<Value>, String) {
        let mut child = self.child.take().unwrap();
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (status, lines, err)
    }
}

/// The lines of one kind (`claimed`, `finished`) of an agent's `--json` output.
fn events(lines: &[Value], event: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"] == event)
        .cloned()
        .collect()
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `check` every 50 ms until it gives something, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn submit(server: &Server, token: &str, body: Value) -> u64 {
    let (s, b) = server.post("/api/v1/builds", &body, Some(token));
    assert_eq!(s, 201, "{b}");
    b["id"].as_u64().unwrap()
}

fn build_view(server: &Server, id: u64) -> Value {
    server.get_json(&format!("/api/v1/builds/{id}"))
}

fn finished(server: &Server, id: u64, limit: Duration) -> Value {
    wait_for("the build to end", limit, || {
        let b = build_view(server, id);
        (!b["finished"].is_null()).then_some(b)
    })
}

/// The build's one task once it runs on `agent`.
fn running_on(server: &Server, id: u64, agent: &str) -> Value {
    wait_for(
        &format!("the task to run on {agent}"),
        Duration::from_secs(60),
        || {
            let t = build_view(server, id)["tasks"][0].clone();
            (t["state"] == "running" && t["lease"]["agent"] == agent).then_some(t)
        },
    )
}

fn history(task: &Value) -> String {
    task["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} [{}]", e["what"], e["agent"]))
        .collect::<Vec<_>>()
        .join("; ")
}

fn agents_in(task: &Value) -> Vec<String> {
    task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["agent"].as_str().map(str::to_string))
        .collect()
}

/// The task's log as the server has it.
fn task_log(server: &Server, id: u64, index: u64) -> String {
    let (s, body) = server.get(&format!("/api/v1/builds/{id}/tasks/{index}/log"));
    assert_eq!(s, 200);
    String::from_utf8(body).unwrap()
}

#[test]
fn an_agent_builds_a_submitted_release_into_the_repository() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let tree = fixture("trees/my-project");
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    let ws = t.path().join("agent-ws");
    let agent = Agent::start(&server, &builder, &ws, "one", &["--jobs", "2"]);
    let id = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    let b = finished(&server, id, Duration::from_secs(600));
    assert_eq!(b["state"], "succeeded", "{b}");
    let tasks = b["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 6, "{b}");
    let repo = crate::support::tree(d, "nightly");
    let mut slots = std::collections::BTreeSet::new();
    for task in &tasks {
        let h = history(task);
        assert_eq!(task["state"], "built", "{h}");
        // Claimed, started and reported by the one agent, once.
        assert_eq!(agents_in(task), ["one", "one", "one"], "{h}");
        // Its packages are in the repository, as reported.
        let artifacts = task["artifacts"].as_array().unwrap();
        assert!(artifacts.len() >= 2, "{task}");
        for a in artifacts {
            let path = a["path"].as_str().unwrap();
            assert!(repo.join(path).is_file(), "{path} not in the repository");
        }
        let tarball = artifacts
            .iter()
            .map(|a| a["path"].as_str().unwrap())
            .find(|p| p.ends_with(".tar.gz"))
            .unwrap();
        let record = server.get_json(&format!("/api/v1/repos/nightly/builds/{tarball}"));
        assert_eq!(record["result"], "built");
        assert_eq!(record["current"], true);
        assert_eq!(record["key"], task["key"]);
        // The log the agent sent as it went is the one published beside the tarball.
        let index = task["index"].as_u64().unwrap();
        let streamed = task_log(&server, id, index);
        assert!(streamed.contains("== publish: into"), "{streamed}");
        let published = task["log"].as_str().unwrap();
        assert!(published.ends_with(".build.log"), "{published}");
        let (s, text) = server.get(&published[server.url.len()..]);
        assert_eq!(s, 200);
        assert_eq!(String::from_utf8(text).unwrap(), streamed);
        slots.insert(
            streamed
                .lines()
                .find_map(|l| l.strip_prefix("   (in "))
                .map(|d| PathBuf::from(d.trim_end_matches(')')))
                .unwrap(),
        );
    }
    // Two slots, each in its own workspace (where the first step, checkout, ran).
    assert_eq!(
        slots,
        [ws.join("slot-0"), ws.join("slot-1")].into_iter().collect(),
        "{slots:?}"
    );
    // A second submission of the unchanged release: cached at once (the agent's records
    // and keys are the server's), no agent needed.
    let again = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    let b = build_view(&server, again);
    assert!(!b["finished"].is_null(), "{b}");
    let states: Vec<&str> = b["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["cached"; 6], "{b}");
    // SIGTERM with nothing running: the agent stops at once, one JSON line per task.
    agent.signal(libc::SIGTERM);
    let (status, lines, err) = agent.end(Duration::from_secs(10));
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(events(&lines, "claimed").len(), 6, "{lines:?}");
    let lines = events(&lines, "finished");
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines.iter().all(|l| l["result"] == "built"), "{lines:?}");
    // Not on a terminal: no progress lines.
    assert!(err.is_empty(), "{err}");
    assert!(server.stop().success());
}

/// A release of one component whose compile sleeps as long as the file `ctl/seconds`
/// says (read when the step starts), then installs a file. The tree and the control dir.
fn sleepy_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("tree");
    let ctl = dir.join("ctl");
    fs::create_dir_all(&ctl).unwrap();
    crate::support::write(
        &tree.join("module.toml"),
        r#"[module]
name = "sleepy"
kind = "project"
description = "A project that takes its time"
license = "MIT"
vendor = "Tests"

[[configuration]]
name = "sleepy_R_1_0_0_1"
version = "1.0.0"
age = 1
children = ["nap_R_1_0_0_1"]

[configuration.properties]
"package.maintainer" = "Tests <tests@example.org>"
"#,
    );
    crate::support::write(
        &tree.join("nap/module.toml"),
        &format!(
            r#"[module]
name = "sleepy.nap"
kind = "component"
description = "Sleeps in compile"

[[configuration]]
name = "nap_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"

[configuration.commands]
checkout = "mkdir -p ${{moduleName}}"
compile = "echo napping; sleep $(cat {ctl}/seconds); echo awake"
install = "mkdir -p ${{prefix}}/usr/share/nap && echo rested > ${{prefix}}/usr/share/nap/README"
"#,
            ctl = ctl.display()
        ),
    );
    (tree, ctl)
}

/// [`sleepy_tree`] in `dir` with its compile sleeping `seconds`, and a data directory
/// beside it with `nightly` and a builder token: tree, control dir, data dir, token.
fn sleepy_setup(dir: &Path, seconds: &str) -> (PathBuf, PathBuf, PathBuf, String) {
    let (tree, ctl) = sleepy_tree(dir);
    fs::write(ctl.join("seconds"), seconds).unwrap();
    let d = dir.join("data");
    create_nightly(&d, &[]);
    let builder = token(&d, "builder");
    (tree, ctl, d, builder)
}

/// A number of seconds no other process on the machine sleeps (`n` tells the tests
/// apart), as `sleeping` looks for it.
fn marker(n: u32) -> String {
    format!("{}.{n}", 5000 + std::process::id() % 1000)
}

/// Stops the `sleep MARKER` a killed agent's step left running (its own session outlives
/// the agent, as it would on a lost node).
fn stop_sleeping(marker: &str) {
    let wanted = format!("sleep\0{marker}\0");
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()) {
            // SAFETY: a process this test's agent started, found by its unique command line.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Lost node: an agent killed (SIGKILL) while its task runs; the task's log could be read
/// while it ran; after the lease it is claimed by another agent and built, its history
/// naming both.
#[test]
fn a_lost_agent_s_task_is_built_by_another_after_its_lease() {
    let t = tempfile::tempdir().unwrap();
    let m = marker(1);
    let (tree, ctl, d, builder) = sleepy_setup(t.path(), &m);
    let d = &d;
    let server = Server::start(
        d,
        &[
            "--tree",
            tree.to_str().unwrap(),
            "--lease",
            "2",
            "--heartbeat",
            "0.3",
        ],
    );
    let lost = Agent::start(&server, &builder, &t.path().join("ws-lost"), "lost", &[]);
    let id = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    running_on(&server, id, "lost");
    // The running task's log is on the server, a few seconds behind.
    let log = wait_for("the running log", Duration::from_secs(20), || {
        let l = task_log(&server, id, 0);
        l.contains("napping").then_some(l)
    });
    assert!(log.contains("== compile"), "{log}");
    assert!(sleeping(&m));
    lost.signal(libc::SIGKILL);
    let (status, lines, _) = lost.end(Duration::from_secs(10));
    assert!(!status.success());
    let claimed = events(&lines, "claimed");
    assert_eq!(claimed.len(), 1, "{lines:?}");
    let lost_lease = claimed[0]["lease"].as_str().unwrap().to_string();
    stop_sleeping(&m);
    fs::write(ctl.join("seconds"), "0").unwrap();

    let other = Agent::start(&server, &builder, &t.path().join("ws-other"), "other", &[]);
    let b = finished(&server, id, Duration::from_secs(60));
    let task = &b["tasks"][0];
    let h = history(task);
    assert_eq!(task["state"], "built", "{h}");
    assert!(h.contains("the lease of lost ran out"), "{h}");
    let agents = agents_in(task);
    assert!(
        agents.contains(&"lost".to_string()) && agents.contains(&"other".to_string()),
        "{h}"
    );
    assert_eq!(task["attempts"], 2, "{task}");
    for a in task["artifacts"].as_array().unwrap() {
        let path = a["path"].as_str().unwrap();
        assert!(
            crate::support::tree(d, "nightly").join(path).is_file(),
            "{path}"
        );
    }
    // The log on the server is the second attempt's, whole.
    let log = task_log(&server, id, 0);
    let file = t
        .path()
        .join("ws-other/slot-0/_output/sleepy.nap/build.log");
    assert_eq!(log, fs::read_to_string(file).unwrap());
    assert!(log.contains("awake") && log.contains("== publish"), "{log}");
    // The lost node comes back and reports under its old lease: refused, nothing changed.
    let (s, b) = server.post(
        &format!("/api/v1/builds/{id}/tasks/0/report"),
        &json!({"lease": lost_lease, "state": "failed", "artifacts": [], "reason": "late"}),
        Some(&builder),
    );
    assert_eq!((s, b["code"].as_str()), (409, Some("stale_lease")), "{b}");
    assert_eq!(build_view(&server, id)["tasks"][0]["state"], "built");
    other.signal(libc::SIGTERM);
    assert!(other.end(Duration::from_secs(10)).0.success());
    assert!(server.stop().success());
}

/// The stopping signals: a first SIGTERM lets the running task finish, a second stops its
/// steps and hands it back at once; a task finishing after one SIGTERM is reported and
/// the agent exits 0. A cancelled build stops its running task within a heartbeat.
#[test]
fn signals_drain_or_hand_back_and_a_cancel_stops_the_running_task() {
    let t = tempfile::tempdir().unwrap();
    let m = marker(2);
    let (tree, ctl, d, builder) = sleepy_setup(t.path(), &m);
    let d = &d;
    let server = Server::start(
        d,
        &[
            "--tree",
            tree.to_str().unwrap(),
            "--lease",
            "30",
            "--heartbeat",
            "0.3",
        ],
    );
    let ws = t.path().join("ws");

    // Two signals: handed back, its steps stopped.
    let mut first = Agent::start(&server, &builder, &ws, "first", &[]);
    let id = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    running_on(&server, id, "first");
    wait_for("the sleep", Duration::from_secs(20), || {
        sleeping(&m).then_some(())
    });
    first.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(first.running(), "one SIGTERM ended the agent");
    assert!(sleeping(&m), "one SIGTERM stopped the step");
    assert_eq!(build_view(&server, id)["tasks"][0]["state"], "running");
    first.signal(libc::SIGTERM);
    let (status, lines, err) = first.end(Duration::from_secs(20));
    assert!(!status.success(), "{err}");
    assert!(events(&lines, "finished").is_empty(), "{lines:?}");
    assert!(!sleeping(&m), "the step outlived the second signal");
    let task = build_view(&server, id)["tasks"][0].clone();
    let h = history(&task);
    assert_eq!(task["state"], "queued", "{h}");
    assert!(h.ends_with("\"handed back\" [\"first\"]"), "{h}");

    // One signal while a short step runs: the task is finished and reported, then the
    // agent exits 0.
    fs::write(ctl.join("seconds"), "2").unwrap();
    let second = Agent::start(&server, &builder, &ws, "second", &[]);
    running_on(&server, id, "second");
    second.signal(libc::SIGTERM);
    let (status, lines, err) = second.end(Duration::from_secs(60));
    assert!(status.success(), "{status:?} {err}");
    let lines = events(&lines, "finished");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["result"], "built", "{lines:?}");
    let b = build_view(&server, id);
    assert_eq!(b["tasks"][0]["state"], "built", "{b}");

    // Cancelled while its step sleeps: stopped within a heartbeat, reported cancelled.
    fs::write(ctl.join("seconds"), &m).unwrap();
    let third = Agent::start(&server, &builder, &ws, "third", &[]);
    let again = submit(
        &server,
        &builder,
        json!({"platforms": ["el9_x86_64"], "force": true}),
    );
    running_on(&server, again, "third");
    wait_for("the sleep", Duration::from_secs(20), || {
        sleeping(&m).then_some(())
    });
    let (s, b) = server.post(
        &format!("/api/v1/builds/{again}/cancel"),
        &json!({}),
        Some(&builder),
    );
    assert_eq!(s, 200, "{b}");
    let start = Instant::now();
    let b = finished(&server, again, Duration::from_secs(10));
    // A heartbeat (0.3 s), the stop (SIGTERM is enough for sleep), the report.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let task = &b["tasks"][0];
    assert_eq!(task["state"], "cancelled", "{}", history(task));
    assert!(!sleeping(&m));
    assert!(task_log(&server, again, 0).contains("napping"));
    third.signal(libc::SIGTERM);
    let (status, lines, _) = third.end(Duration::from_secs(10));
    assert!(status.success());
    let lines = events(&lines, "finished");
    assert_eq!(lines[0]["result"], "cancelled", "{lines:?}");
    assert!(server.stop().success());
}

/// `--isolate bwrap`: the agent's steps run in the sandbox, as `build --isolate bwrap`'s.
#[test]
fn an_agent_builds_in_the_sandbox_when_asked() {
    if !crate::isolate::have_bwrap() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (tree, _, d, builder) = sleepy_setup(t.path(), "0");
    let d = &d;
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    let ws = t.path().join("ws");
    let agent = Agent::start(&server, &builder, &ws, "boxed", &["--isolate", "bwrap"]);
    let id = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    let b = finished(&server, id, Duration::from_secs(60));
    assert_eq!(
        b["tasks"][0]["state"],
        "built",
        "{}",
        history(&b["tasks"][0])
    );
    let log = task_log(&server, id, 0);
    assert!(log.contains("isolation: bwrap"), "{log}");
    // The compile ran sandboxed, without network.
    assert!(
        log.contains("(sandboxed (--isolate bwrap): the host read-only")
            && log.contains("no network"),
        "{log}"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.end(Duration::from_secs(10)).0.success());
    assert!(server.stop().success());
}

/// Every file under `dir`, by relative path, with its sha256.
fn digests(dir: &Path) -> std::collections::BTreeMap<String, String> {
    crate::serve::tree_files(dir)
        .into_iter()
        // The packages at their download-from paths (not the indexes' aliases of them).
        .filter(|(k, _)| !k.starts_with("yum/") && !k.starts_with("apt/"))
        .filter(|(k, _)| {
            [".rpm", ".deb", ".tar.gz", ".dsc", ".tar.xz"]
                .iter()
                .any(|x| k.ends_with(x))
        })
        .map(|(k, p)| {
            use sha2::Digest;
            (
                k,
                format!("{:x}", sha2::Sha256::digest(fs::read(p).unwrap())),
            )
        })
        .collect()
}

/// Two agents (two slots each, their own workspaces) build the release for two platforms
/// from one `submit --wait`: every task built once, the same bytes as a local
/// `packyard build`, and dnf and apt-get install the results from the server.
#[test]
fn two_agents_build_a_release_for_two_platforms_as_packyard_build_does() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    crate::repo::ed25519_key(d);
    let builder = token(d, "builder");
    let tree = fixture("trees/my-project");
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    let both = ["--platforms", "deb12_amd64", "--jobs", "2"];
    let agents = [
        Agent::start(&server, &builder, &t.path().join("ws-a"), "a", &both),
        Agent::start(&server, &builder, &t.path().join("ws-b"), "b", &both),
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", "--server", &server.url, "--token", &builder])
        .args(["submit", "--platform", "el9_x86_64,deb12_amd64", "--wait"])
        .output()
        .unwrap();
    let b: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(
        o.status.success(),
        "{b} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tasks = b["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 12, "{b}");
    for task in tasks {
        let h = history(task);
        assert_eq!(task["state"], "built", "{h}");
        let claims = task["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["what"].as_str().unwrap().starts_with("claimed"))
            .count();
        assert_eq!(claims, 1, "built more than once: {h}");
    }
    // (Which agent takes which task is the race of their claims.)
    let names: std::collections::BTreeSet<String> = tasks.iter().flat_map(agents_in).collect();
    assert!(names.iter().all(|n| n == "a" || n == "b"), "{names:?}");
    // The same release built here, by packyard build, gives the same bytes.
    let local = t.path().join("local");
    create_nightly(&local, &[]);
    for platform in ["el9_x86_64", "deb12_amd64"] {
        let ws = t.path().join(format!("ws-local-{platform}"));
        let (o, _) = crate::build::build(
            Some(&local),
            &tree,
            &["--platform", platform, "--workspace", ws.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let farm = digests(&crate::support::tree(d, "nightly"));
    let here = digests(&crate::support::tree(local, "nightly"));
    // Per component: a tarball and a package, and its source package: a .src.rpm, or a
    // .dsc with its .orig.tar.gz and .debian.tar.xz.
    assert_eq!(farm.len(), 6 * 3 + 6 * 5, "{farm:?}");
    assert_eq!(farm, here);
    // Installed from the server by dnf and apt-get.
    let w = t.path().join("clients");
    if crate::support::have_tool("dnf", &["--version"]) {
        server.dnf_install(&w, "nightly", &["my-database-schemas"]);
    }
    if crate::support::have_tool("apt-get", &["--version"]) {
        let (_, sources) = server.get("/repos/nightly/deb12.sources");
        let apt = crate::repo::AptRoot::from_sources(
            &w.join("aptroot"),
            &String::from_utf8(sources).unwrap(),
        );
        apt.update(&[]);
        apt.install(&["my-database-schemas"]);
    }
    for a in agents {
        a.signal(libc::SIGTERM);
        assert!(a.end(Duration::from_secs(30)).0.success());
    }
    assert!(server.stop().success());
}

/// A failing target: its log can be read through the API while the task runs and after;
/// what needs it is skipped, what does not is built, and `submit --wait` exits 1.
#[test]
fn a_failing_target_skips_its_dependents_and_fails_the_build() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let ctl = t.path().join("ctl");
    fs::create_dir_all(&ctl).unwrap();
    let m = marker(3);
    fs::write(ctl.join("seconds"), &m).unwrap();
    crate::support::write(
        &tree.join("module.toml"),
        "[module]\nname = \"p\"\nkind = \"project\"\ndescription = \"P\"\nlicense = \"MIT\"\n\
         vendor = \"Tests\"\n\n[[configuration]]\nname = \"p_R_1_0_0_1\"\nversion = \"1.0.0\"\n\
         age = 1\nchildren = [\"bad_R_1_0_0_1\", \"needs_R_1_0_0_1\", \"alone_R_1_0_0_1\"]\n\
         [configuration.properties]\n\"package.maintainer\" = \"Tests <t@example.org>\"\n",
    );
    let component = |name: &str, compile: &str, deps: &str| {
        crate::support::write(
            &tree.join(name).join("module.toml"),
            &format!(
                "[module]\nname = \"p.{name}\"\nkind = \"component\"\ndescription = \"{name}\"\n\n\
                 [[configuration]]\nname = \"{name}_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\n\
                 tag = \"v1\"\n{deps}\n[configuration.commands]\n\
                 checkout = \"mkdir -p ${{moduleName}}\"\ncompile = \"{compile}\"\n\
                 install = \"mkdir -p ${{prefix}}/usr/share/{name} && echo ok > ${{prefix}}/usr/share/{name}/x\"\n"
            ),
        );
    };
    component(
        "bad",
        &format!(
            "echo building; sleep $(cat {}/seconds); echo broken >&2; exit 3",
            ctl.display()
        ),
        "",
    );
    component(
        "needs",
        "true",
        "[[configuration.dependencies]]\nmodule = \"p.bad\"\nscope = \"build\"\n",
    );
    component("alone", "true", "");
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &["--tree", tree.to_str().unwrap(), "--heartbeat", "0.5"]);
    let agent = Agent::start(
        &server,
        &builder,
        &t.path().join("ws"),
        "one",
        &["--jobs", "2"],
    );
    let waiting = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", "--server", &server.url, "--token", &builder])
        .args(["submit", "--platform", "el9_x86_64", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_for("the build", Duration::from_secs(30), || {
        server.get_json("/api/v1/builds")[0]["id"].as_u64()
    });
    let bad = wait_for("bad to run", Duration::from_secs(60), || {
        build_view(&server, id)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["configuration"] == "bad_R_1_0_0_1" && t["state"] == "running")
            .cloned()
    });
    let index = bad["index"].as_u64().unwrap();
    // While it runs, its log is on the server.
    wait_for("the running log", Duration::from_secs(20), || {
        task_log(&server, id, index)
            .contains("building")
            .then_some(())
    });
    stop_sleeping(&m);
    let o = waiting.wait_with_output().unwrap();
    assert!(!o.status.success(), "submit --wait succeeded");
    let b: Value = serde_json::from_slice(&o.stdout).unwrap();
    let state = |c: &str| {
        b["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["configuration"] == c)
            .map(|t| t["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state("bad_R_1_0_0_1"), "failed", "{b}");
    assert_eq!(state("needs_R_1_0_0_1"), "skipped", "{b}");
    assert_eq!(state("alone_R_1_0_0_1"), "built", "{b}");
    // After the end, the whole log, the failure in it.
    let log = task_log(&server, id, index);
    assert!(
        log.contains("broken") && log.contains("compile failed"),
        "{log}"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.end(Duration::from_secs(30)).0.success());
    assert!(server.stop().success());
}

/// The server restarted while an agent builds: the agent rides it out and the task is
/// recorded once, built.
#[test]
fn a_task_survives_a_server_restart() {
    let t = tempfile::tempdir().unwrap();
    let (tree, _, d, builder) = sleepy_setup(t.path(), "4");
    let d = &d;
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let args = ["--tree", tree.to_str().unwrap(), "--heartbeat", "0.5"];
    let server = Server::start_at(d, &listen, &args);
    let agent = Agent::start(&server, &builder, &t.path().join("ws"), "one", &[]);
    let id = submit(&server, &builder, json!({"platforms": ["el9_x86_64"]}));
    running_on(&server, id, "one");
    assert!(server.stop().success());
    std::thread::sleep(Duration::from_secs(1));
    let server = Server::start_at(d, &listen, &args);
    let b = finished(&server, id, Duration::from_secs(90));
    let task = &b["tasks"][0];
    let h = history(task);
    assert_eq!(task["state"], "built", "{h}");
    assert_eq!(task["attempts"], 1, "{h}");
    let ends = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "built")
        .count();
    assert_eq!(ends, 1, "{h}");
    agent.signal(libc::SIGTERM);
    assert!(agent.end(Duration::from_secs(30)).0.success());
    assert!(server.stop().success());
}
