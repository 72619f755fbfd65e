//! `packyard build`: the fixture release built from source into a repository, dnf and
//! apt-get installing the results, the repository as the build cache, failures.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

use crate::repo::{AptRoot, copy_tree, create_nightly, ed25519_key, run_ok};
use crate::serve::{Server, token};
use crate::support::{have_tool, stderr, stdout};

/// A copy of `fixtures/` (the tree and the sources its checkouts copy) to change freely.
pub(crate) fn fixtures_copy(dir: &Path) -> PathBuf {
    copy_tree(&crate::support::fixture(""), &dir.join("fixtures"));
    dir.join("fixtures/trees/my-project")
}

/// `packyard --json [--data D] build --tree T ARGS`: exit status and the JSON array.
pub(crate) fn build(data: Option<&Path>, tree: &Path, args: &[&str]) -> (Output, Vec<Value>) {
    build_with(
        Command::new(env!("CARGO_BIN_EXE_packyard")),
        data,
        tree,
        args,
    )
}

/// [`build`] with `cmd` (the packyard binary, with its environment set).
pub(crate) fn build_with(
    mut cmd: Command,
    data: Option<&Path>,
    tree: &Path,
    args: &[&str],
) -> (Output, Vec<Value>) {
    cmd.arg("--json");
    if let Some(d) = data {
        crate::support::ready_data(d);
        cmd.arg("--data").arg(d);
    }
    let o = cmd
        .args(["build", "--tree"])
        .arg(tree)
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "build output is not JSON ({e}): {}{}",
            stdout(&o),
            stderr(&o)
        )
    });
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .clone();
    (o, list)
}

/// configuration → result.
pub(crate) fn results(list: &[Value]) -> BTreeMap<String, String> {
    list.iter()
        .map(|c| {
            (
                c["configuration"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn all(result: &str) -> BTreeMap<String, String> {
    [
        "database_schemas_R_3_0_0_1",
        "database_server_R_2_0_1_1",
        "java_api_R_5_2_2_1",
        "python_api_R_5_0_0_1",
        "cli_client_R_5_6_1_1",
        "web_server_R_2_5_1_1",
    ]
    .iter()
    .map(|c| (c.to_string(), result.to_string()))
    .collect()
}

pub(crate) fn component<'a>(list: &'a [Value], configuration: &str) -> &'a Value {
    list.iter()
        .find(|c| c["configuration"] == configuration)
        .unwrap_or_else(|| panic!("{configuration} not in {list:?}"))
}

/// The artifact of `c` whose path ends with `suffix`.
pub(crate) fn artifact(c: &Value, suffix: &str) -> String {
    c["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        // `.rpm` is a binary package, not the `.src.rpm` beside it.
        .find(|p| p.ends_with(suffix) && (suffix.ends_with(".src.rpm") || !p.ends_with(".src.rpm")))
        .unwrap_or_else(|| panic!("no {suffix} artifact in {c}"))
}

pub(crate) fn need_build_tools() -> bool {
    have_tool("make", &["--version"]) && have_tool("cc", &["--version"])
}

#[test]
fn the_fixture_release_builds_from_source_and_dnf_and_apt_install_it() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = fixtures_copy(t.path());
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    ed25519_key(d);

    // el9 on the data directory itself.
    let ws = t.path().join("ws-el9");
    let (o, el9) = build(
        Some(d),
        &tree,
        &[
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(results(&el9), all("built"));
    for c in &el9 {
        for field in ["configuration", "result", "seconds", "artifacts", "log"] {
            assert!(c.get(field).is_some(), "{field} missing: {c}");
        }
        // The published log has every target's output.
        let log = crate::support::read_location(c["log"].as_str().unwrap());
        assert!(log.contains("== checkout: ok"), "{log}");
        assert!(log.contains("== publish: into repository nightly"), "{log}");
    }
    let server_rpm = artifact(component(&el9, "database_server_R_2_0_1_1"), ".rpm");
    assert!(
        server_rpm.ends_with("el9_x86_64/my-database-server-2.0.1-1.x86_64.rpm"),
        "{server_rpm}"
    );
    // A build dependency is staged in the dependent's own stage dir.
    let log = crate::support::read_location(
        component(&el9, "web_server_R_2_5_1_1")["log"]
            .as_str()
            .unwrap(),
    );
    assert!(
        log.contains("== staged my-project.servers.database_schemas into"),
        "{log}"
    );
    assert!(
        ws.join("_output/my-project.servers.web_server/stage/usr/share/my-project/schemas/VERSION")
            .is_file()
    );

    // deb12 through the server, as a build node would.
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    let ws = t.path().join("ws-deb12");
    let (o, deb12) = build(
        None,
        &tree,
        &[
            "--platform",
            "deb12_amd64",
            "--workspace",
            ws.to_str().unwrap(),
            "--server",
            &server.url,
            "--token",
            &builder,
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(results(&deb12), all("built"));
    let cli = component(&deb12, "cli_client_R_5_6_1_1");
    let log_url = cli["log"].as_str().unwrap();
    assert!(
        log_url.starts_with(&format!("{}/repos/nightly/", server.url)),
        "{log_url}"
    );
    let (status, log) = server.get(&log_url[server.url.len()..]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&log).contains("== compile: make VERSION=5.6.1 API=5.2.2"));
    let tarball = artifact(cli, ".tar.gz");
    let record = server.get_json(&format!("/api/v1/repos/nightly/builds/{tarball}"));
    assert_eq!(record["result"], "built");
    assert_eq!(record["current"], true);
    assert_eq!(record["key"], cli["key"]);

    // The programs really compiled: run them out of the published packages.
    let x = t.path().join("extract");
    fs::create_dir_all(&x).unwrap();
    let repo = crate::support::tree(d, "nightly");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "rpm2cpio {} | cpio -idm --quiet",
                repo.join(&server_rpm).display()
            ))
            .current_dir(&x),
    );
    let v = run_ok(Command::new(x.join("usr/sbin/dbserver")).arg("--version"));
    assert!(v.contains("dbserver 2.0.1"), "{v}");
    let deb = artifact(cli, ".deb");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(repo.join(&deb))
            .arg(&x),
    );
    let v = run_ok(&mut Command::new(x.join("usr/bin/mycli")));
    assert_eq!(v.trim(), "mycli 5.6.1 (api 5.2.2)");

    // dnf and apt-get install from the repository the build published into.
    let w = t.path().join("clients");
    if have_tool("dnf", &["--version"]) {
        server.dnf_install(&w, "nightly", &["my-database-schemas", "my-api-java"]);
        let q = run_ok(Command::new("rpm").arg("--root").arg(w.join("root")).args([
            "-q",
            "my-database-schemas",
            "my-api-java",
        ]));
        assert!(
            q.contains("my-database-schemas-3.0.0-1") && q.contains("my-api-java-5.2.2-1"),
            "{q}"
        );
    }
    if have_tool("apt-get", &["--version"]) {
        let (status, sources) = server.get("/repos/nightly/deb12.sources");
        assert_eq!(status, 200);
        let root = w.join("aptroot");
        let apt = AptRoot::from_sources(&root, &String::from_utf8(sources).unwrap());
        apt.update(&[]);
        apt.install(&["my-database-schemas", "my-api-java"]);
    }
    assert!(server.stop().success());
}

/// Every artifact of a build: path → bytes, read from the repository.
pub(crate) fn artifact_bytes(repo: &Path, list: &[Value]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for c in list {
        for a in c["artifacts"].as_array().unwrap() {
            let p = a["path"].as_str().unwrap();
            out.insert(p.to_string(), fs::read(repo.join(p)).unwrap());
        }
    }
    out
}

pub(crate) fn keys(list: &[Value]) -> BTreeMap<String, String> {
    list.iter()
        .map(|c| {
            (
                c["configuration"].as_str().unwrap().to_string(),
                c["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn builds_are_reproducible_cached_and_rebuild_only_what_a_change_reaches() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = fixtures_copy(t.path());
    let (d1, d4) = (t.path().join("data1"), t.path().join("data4"));
    create_nightly(&d1, &[]);
    create_nightly(&d4, &[]);
    let ws = |n: &str| t.path().join(n).to_str().unwrap().to_string();
    let el9 = ["--platform", "el9_x86_64"];

    let (o, one) = build(
        Some(&d1),
        &tree,
        &[&el9[..], &["--jobs", "1", "--workspace", &ws("ws1")]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let start = Instant::now();
    let (o, four) = build(
        Some(&d4),
        &tree,
        &[&el9[..], &["--jobs", "4", "--workspace", &ws("ws4")]].concat(),
    );
    let first = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&four), all("built"));

    // --jobs 1 and --jobs 4, in other workspaces and repositories: the same bytes, and
    // the same keys (no machine path enters a key).
    let a1 = artifact_bytes(&crate::support::tree(&d1, "nightly"), &one);
    let a4 = artifact_bytes(&crate::support::tree(&d4, "nightly"), &four);
    // A tarball, an RPM and a source RPM of each component.
    assert_eq!(a1.len(), 18);
    assert_eq!(a1.keys().collect::<Vec<_>>(), a4.keys().collect::<Vec<_>>());
    for (path, bytes) in &a1 {
        assert!(
            a4[path] == *bytes,
            "{path} differs between --jobs 1 and --jobs 4"
        );
    }
    assert_eq!(keys(&one), keys(&four));

    let in_ws4 = |extra: &[&str]| {
        build(
            Some(&d4),
            &tree,
            &[&el9[..], &["--workspace", &ws("ws4")], extra].concat(),
        )
    };
    // Nothing changed: nothing builds (how much faster that is varies with the machine:
    // printed, not asserted).
    let start = Instant::now();
    let (o, again) = in_ws4(&[]);
    let second = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&again), all("cached"));
    eprintln!("first build {first:?}, cached build {second:?}");
    assert_eq!(keys(&again), keys(&four));
    // Another node (workspace) uses the same cache.
    let (_, elsewhere) = build(
        Some(&d4),
        &tree,
        &[&el9[..], &["--workspace", &ws("ws-other")]].concat(),
    );
    assert_eq!(results(&elsewhere), all("cached"));

    // A release configuration's tag stands for its source: no checkout is needed to
    // know it is cached (tags do not move; --force rebuilds anyway).
    let sql = tree.join("../../src/database_schemas/users.sql");
    let edit = || {
        let mut text = fs::read_to_string(&sql).unwrap();
        text.push_str("-- a comment\n");
        fs::write(&sql, text).unwrap();
    };
    edit();
    let (_, tagged) = in_ws4(&[]);
    assert_eq!(results(&tagged), all("cached"));
    // Without a tag the checked-out files are the source: a change to them rebuilds the
    // component and what needs it at build time (the web server; the database server
    // needs the schemas only at run time).
    let schemas = tree.join("servers/database_schemas/module.toml");
    let text = fs::read_to_string(&schemas)
        .unwrap()
        .replacen("tag = \"v3.0.0\"\n", "", 1);
    fs::write(&schemas, text).unwrap();
    let mut want = all("cached");
    want.insert("database_schemas_R_3_0_0_1".into(), "built".into());
    want.insert("web_server_R_2_5_1_1".into(), "built".into());
    for change in [false, true] {
        if change {
            edit();
        }
        let (o, changed) = in_ws4(&[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(results(&changed), want, "source changed: {change}");
    }
    let (_, same) = in_ws4(&[]);
    assert_eq!(results(&same), all("cached"));
    // A change to a configuration does the same.
    let module = tree.join("clients/java_api/module.toml");
    let text = fs::read_to_string(&module).unwrap().replacen(
        "test = \"make check\"",
        "test = \"make check && true\"",
        1,
    );
    fs::write(&module, text).unwrap();
    let (_, changed) = in_ws4(&[]);
    let mut want = all("cached");
    want.insert("java_api_R_5_2_2_1".into(), "built".into());
    want.insert("cli_client_R_5_6_1_1".into(), "built".into());
    assert_eq!(results(&changed), want);

    // --only takes a component and what it needs; --force builds what is cached.
    let (o, only) = in_ws4(&["--only", "web_server", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<_> = results(&only).into_iter().collect();
    assert_eq!(
        got,
        [
            (
                "database_schemas_R_3_0_0_1".to_string(),
                "built".to_string()
            ),
            ("database_server_R_2_0_1_1".into(), "built".into()),
            ("web_server_R_2_5_1_1".into(), "built".into()),
        ]
    );
}

#[test]
fn a_failing_target_skips_its_dependents_and_its_log_is_published() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = fixtures_copy(t.path());
    let makefile = tree.join("../../src/database_schemas/Makefile");
    let text = fs::read_to_string(&makefile)
        .unwrap()
        .replace("grep -q \"CREATE TABLE\"", "grep -q \"NO SUCH TABLE\"");
    fs::write(&makefile, text).unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    let (o, list) = build(
        None,
        &tree,
        &[
            "--platform",
            "el9_x86_64",
            "--workspace",
            t.path().join("ws").to_str().unwrap(),
            "--server",
            &server.url,
            "--token",
            &builder,
        ],
    );
    assert!(!o.status.success());
    let mut want = all("built");
    want.insert("database_schemas_R_3_0_0_1".into(), "failed".into());
    want.insert("web_server_R_2_5_1_1".into(), "skipped".into());
    assert_eq!(results(&list), want);
    let failed = component(&list, "database_schemas_R_3_0_0_1");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("test: `make check` failed"),
        "{failed}"
    );
    assert!(failed["artifacts"].as_array().unwrap().is_empty());
    let skipped = component(&list, "web_server_R_2_5_1_1");
    assert_eq!(
        skipped["reason"],
        "needs database_schemas_R_3_0_0_1, which failed"
    );

    // The failure can be read from the server: the log, and the record.
    let url = failed["log"].as_str().unwrap();
    let (status, log) = server.get(&url[server.url.len()..]);
    assert_eq!(status, 200, "{url}");
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.contains("grep -q \"NO SUCH TABLE\" users.sql sessions.sql"),
        "{log}"
    );
    assert!(
        log.contains("== test failed: `make check` failed (exit status 2)"),
        "{log}"
    );
    let tarball = "my-project/my-project.servers.database_schemas/3.0.0/el9_x86_64/my-database-schemas-3.0.0-1.tar.gz";
    let record = server.get_json(&format!("/api/v1/repos/nightly/builds/{tarball}"));
    assert_eq!(record["result"], "failed");
    assert_eq!(record["failed_target"], "test");
    assert_eq!(record["current"], false);
    // Nothing of it was published but the log and record.
    let (status, _) = server.get(&format!("/repos/nightly/{tarball}"));
    assert_eq!(status, 404);
    // A built component's tarball page links its build's log and record, which serve.
    let built = list
        .iter()
        .find(|c| c["result"] == "built")
        .expect("a built component");
    let tarball = artifact(built, ".tar.gz");
    let (status, page) = server.get(&format!("/r/nightly/f/{tarball}"));
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    let stem = tarball.trim_end_matches(".tar.gz");
    for link in [
        format!("/repos/nightly/{stem}.build.log"),
        format!("/api/v1/repos/nightly/builds/{tarball}"),
    ] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link} in {page}"
        );
        assert_eq!(server.get(&link).0, 200, "{link}");
    }
    assert!(server.stop().success());
}

#[test]
fn keep_going_custom_packaging_and_clean() {
    if !need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = fixtures_copy(t.path());
    // The schemas' install fails; the Java API packs by its own command, which here
    // leaves nothing to publish.
    let schemas = tree.join("servers/database_schemas/module.toml");
    let text = fs::read_to_string(&schemas).unwrap().replacen(
        "install = \"make install",
        "install = \"false && make install",
        1,
    );
    fs::write(&schemas, text).unwrap();
    let java = tree.join("clients/java_api/module.toml");
    let text = fs::read_to_string(&java).unwrap().replacen(
        "test = \"make check\"",
        "test = \"make check\"\npackaging = \"mkdir -p ${artifactsDir} && echo custom packaging\"",
        1,
    );
    fs::write(&java, text).unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    let ws = t.path().join("ws");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--platform", "el9_x86_64", "--workspace"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(ws.to_str().unwrap().into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let log_of = |list: &[Value], c: &str| {
        crate::support::read_location(component(list, c)["log"].as_str().unwrap())
    };
    for keep_going in [false, true] {
        let extra: &[&str] = if keep_going { &["--keep-going"] } else { &[] };
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (o, list) = build(Some(d), &tree, &a);
        assert!(!o.status.success());
        let r = results(&list);
        assert_eq!(r["database_schemas_R_3_0_0_1"], "failed");
        assert_eq!(r["web_server_R_2_5_1_1"], "skipped");
        let log = log_of(&list, "database_schemas_R_3_0_0_1");
        assert!(log.contains("== install failed"), "{log}");
        // Only --keep-going runs the targets after the failure; neither packs.
        assert_eq!(log.contains("== test: make check"), keep_going, "{log}");
        assert!(!log.contains("== packaging"), "{log}");
        // The custom packaging ran instead of packyard's.
        let java = component(&list, "java_api_R_5_2_2_1");
        assert_eq!(java["result"], "failed", "{java}");
        let log = log_of(&list, "java_api_R_5_2_2_1");
        assert!(log.contains("custom packaging"), "{log}");
        assert!(!log.contains("packyard packs"), "{log}");
        assert_eq!(
            java["reason"].as_str().unwrap().split(':').next(),
            Some("publish"),
            "{java}"
        );
    }
    // --targets clean empties each component's _output/.
    assert!(
        ws.join("_output/my-project.clients.python_api/prefix")
            .is_dir()
    );
    let a = args(&["--targets", "clean"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (o, list) = build(Some(d), &tree, &a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(list.len(), 6);
    assert!(
        !ws.join("_output/my-project.clients.python_api/prefix")
            .exists()
    );
    let o = crate::support::packyard_at(d)
        .args(["build", "--tree"])
        .arg(&tree)
        .args(["--targets", "compile,nonsense"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("unknown target `nonsense`"),
        "{}",
        stderr(&o)
    );
    assert!(!o.status.success());
}

/// A release whose one component hangs in `compile`: three `sleep MARKER` (one below the
/// shell, one in the background, one re-parented at once). The tree and the marker, a
/// number no other process on the machine has in its command line (`n` tells apart the
/// tests that use one).
pub(crate) fn hanging_tree(dir: &Path, n: u32) -> (PathBuf, String) {
    let tree = dir.join("tree");
    crate::support::write(
        &tree.join("module.toml"),
        r#"[module]
name = "slow"
kind = "project"
description = "A project with a hanging build"
license = "MIT"
vendor = "Tests"

[[configuration]]
name = "slow_R_1_0_0_1"
version = "1.0.0"
age = 1
children = ["hang_R_1_0_0_1"]

[configuration.properties]
"package.maintainer" = "Tests <tests@example.org>"
"#,
    );
    let marker = format!("{}.{n}", 3000 + std::process::id() % 1000);
    crate::support::write(
        &tree.join("hang/module.toml"),
        &format!(
            r#"[module]
name = "slow.hang"
kind = "component"
description = "Hangs in compile"

[[configuration]]
name = "hang_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"

[configuration.commands]
checkout = "mkdir -p ${{moduleName}}"
compile = "(sleep {marker} &); sleep {marker} & sleep {marker}; echo end-$((40 + 2))"
"#
        ),
    );
    (tree, marker)
}

/// Whether a `sleep MARKER` runs on the machine.
pub(crate) fn sleeping(marker: &str) -> bool {
    let wanted = format!("sleep\0{marker}\0");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
}

/// `--step-timeout`: a target that hangs is stopped with what it started (also what was
/// re-parented on the way), and fails its component with a reason that says so. A build
/// that is itself stopped (SIGTERM, as Ctrl-C would) stops its steps too.
#[test]
fn a_step_past_the_step_timeout_is_stopped_and_fails() {
    let t = tempfile::tempdir().unwrap();
    hanging_steps_are_stopped(t.path(), 7, &[]);

    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["build", "--step-timeout", "0", "--tree"])
        .arg(t.path().join("tree"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--step-timeout"), "{}", stderr(&o));
}

/// The hanging component of [`hanging_tree`] built in `dir` with `extra` arguments: with
/// `--step-timeout 1` it fails, its sleeps stopped; without, a SIGTERM to packyard stops
/// them and then packyard. The failed component's log.
pub(crate) fn hanging_steps_are_stopped(dir: &Path, n: u32, extra: &[&str]) -> String {
    let (tree, marker) = hanging_tree(dir, n);
    let running = || sleeping(&marker);

    // The look for the sleeps sees one when there is one (once it has started).
    let mut own = Command::new("sleep").arg(&marker).spawn().unwrap();
    let until = Instant::now() + std::time::Duration::from_secs(5);
    while !running() && Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(running());
    own.kill().unwrap();
    own.wait().unwrap();
    let d = &dir.join("data");
    create_nightly(d, &[]);
    let ws = dir.join("ws");
    let start = Instant::now();
    let args = [
        &[
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
            "--step-timeout",
            "1",
        ],
        extra,
    ]
    .concat();
    let (o, list) = build(Some(d), &tree, &args);
    assert!(!o.status.success());
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    let hang = component(&list, "hang_R_1_0_0_1");
    assert_eq!(hang["result"], "failed", "{hang}");
    let reason = hang["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("compile: `(sleep")
            && reason.contains("ran longer than --step-timeout (1 s)"),
        "{reason}"
    );
    let log = crate::support::read_location(hang["log"].as_str().unwrap());
    assert!(log.contains("== compile: stopped after"), "{log}");
    assert!(!log.contains("end-42"), "{log}");
    // Both sleeps are gone (a moment after the kill).
    let until = Instant::now() + std::time::Duration::from_secs(3);
    while running() && Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!running(), "a `sleep {marker}` outlived its step");

    // No limit, but the build itself is stopped while the step hangs.
    let mut packyard = crate::support::packyard_at(d)
        .args(["build", "--platform", "el9_x86_64", "--workspace"])
        .arg(dir.join("ws2"))
        .arg("--tree")
        .arg(&tree)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + std::time::Duration::from_secs(60);
    while !running() && Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(running(), "the step never started");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(packyard.id() as libc::pid_t, libc::SIGTERM) };
    let status = packyard.wait().unwrap();
    // It ends by the signal, once its steps are stopped.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let until = Instant::now() + std::time::Duration::from_secs(3);
    while running() && Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!running(), "a `sleep {marker}` outlived the stopped build");
    log
}

#[test]
fn one_build_at_a_time_in_a_workspace_and_another_versions_output_is_cleared() {
    let t = tempfile::tempdir().unwrap();
    let tree = crate::isolate::iso_tree(t.path(), &[("slow", "mkdir -p ${moduleName}", "sleep 3")]);
    let args = |ws: &Path| -> Vec<String> {
        ["--json", "build", "--tree"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                tree.display().to_string(),
                "--platform".into(),
                "el9_x86_64".into(),
                "--workspace".into(),
                ws.display().to_string(),
            ])
            .collect()
    };
    let start = |data: &str, ws: &Path| {
        let d = t.path().join(data);
        create_nightly(&d, &[]);
        crate::support::packyard_at(&d)
            .args(args(ws))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ws = t.path().join("ws");
    let first = start("d1", &ws);
    // Once it holds the workspace, a second build there stops at once, naming it.
    let lock = ws.join("_output/.lock");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fs::read_to_string(&lock).is_ok_and(|s| s.contains(&first.id().to_string())) {
        assert!(
            std::time::Instant::now() < until,
            "the first build never took its workspace"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = start("d2", &ws).wait_with_output().unwrap();
    assert!(!second.status.success());
    let said = stdout(&second) + &stderr(&second);
    assert!(
        said.contains("is in use by another build")
            && said.contains(&format!("pid {}", first.id()))
            && said.contains("build --tree")
            && said.contains("started 20"),
        "{said}"
    );
    // In another workspace, a build runs beside it; the first finishes normally.
    let other = start("d3", &t.path().join("ws-other"))
        .wait_with_output()
        .unwrap();
    assert!(other.status.success(), "{}", stderr(&other));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    // `_output/` of another packyard version is cleared, with a message.
    fs::write(ws.join("_output/.packyard-version"), "0.0.1\n").unwrap();
    fs::write(ws.join("_output/left-by-0.0.1"), "x").unwrap();
    // A build in `ws` that succeeds and says `what`.
    let builds_saying = |data: &str, what: &str| {
        let out = start(data, &ws).wait_with_output().unwrap();
        let said = stderr(&out);
        assert!(out.status.success() && said.contains(what), "{said}");
    };
    builds_saying("d4", "_output/ was written by packyard 0.0.1; cleared it");
    assert!(!ws.join("_output/left-by-0.0.1").exists());
    assert_eq!(
        fs::read_to_string(ws.join("_output/.packyard-version")).unwrap(),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    // Downloads no build used for a month go when a build takes the workspace, saying so;
    // the others stay.
    let downloads = ws.join("_output/.downloads/some-server");
    fs::create_dir_all(&downloads).unwrap();
    let (old, used) = (downloads.join("old.tar.gz"), downloads.join("used.tar.gz"));
    fs::write(&old, "old bytes").unwrap();
    fs::write(&used, "used").unwrap();
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86400))
        .unwrap();
    builds_saying("d5", "removed 1 unused download(s), 9 bytes");
    assert!(!old.exists() && used.exists());
}
