//! Pristine build roots: `build --root deb12_amd64=ROOT.tar` installs each component's
//! build-time externals into a fresh layer of a Debian 12 root (made once with mmdebstrap
//! and kept under `target/`) and runs its targets there, read-only and as nobody;
//! nothing lands on the host. `rebuild` makes binary packages from a source package
//! alone in such a root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::build::{build, component, results};
use crate::repo::create_nightly;
use crate::support::{have_tool, stderr, stdout, write};

/// A Debian 12 build root (`mmdebstrap --variant=buildd bookworm`), made once and kept in
/// `target/roots/` between test runs. `None` where it cannot be made outside CI (no
/// mmdebstrap, not root); under CI that fails the test.
fn debian_root() -> Option<PathBuf> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "build roots need root: run the tests as root under CI"
            );
            eprintln!("SKIPPED: build roots need root");
            return None;
        }
        let dir = crate::support::root().join("target/roots");
        let tar = dir.join("deb12-buildd.tar");
        if tar.is_file() {
            return Some(tar);
        }
        if !have_tool("mmdebstrap", &["--version"]) {
            return None;
        }
        fs::create_dir_all(&dir).unwrap();
        // mmdebstrap picks its output's format by the name's extension: `.tar` here, or
        // it makes a directory (which `is_file` above would never find again).
        let part = dir.join(format!("deb12-buildd.{}.tar", std::process::id()));
        let o = std::process::Command::new("mmdebstrap")
            .args(["--variant=buildd", "--quiet", "bookworm"])
            .arg(&part)
            .output()
            .unwrap();
        assert!(o.status.success(), "mmdebstrap: {}", stderr(&o));
        fs::rename(&part, &tar).unwrap();
        Some(tar)
    })
    .clone()
}

/// What the host's dpkg has installed.
fn host_packages() -> String {
    fs::read_to_string("/var/lib/dpkg/status").unwrap_or_default()
}

/// A release `rt_R_1_0_0_1` for deb12 of components `(name, externals, compile)`.
fn root_tree(dir: &Path, components: &[(&str, &[&str], &str)]) -> PathBuf {
    let tree = dir.join("tree");
    let children: Vec<String> = components
        .iter()
        .map(|(n, ..)| format!("\"{n}_R_1_0_0_1\""))
        .collect();
    write(
        &tree.join("module.toml"),
        &format!(
            r#"[module]
name = "rt"
kind = "project"
description = "Components built in a root"
license = "MIT"
vendor = "Tests"

[[configuration]]
name = "rt_R_1_0_0_1"
version = "1.0.0"
age = 1
children = [{}]

[configuration.properties]
"package.maintainer" = "Tests <tests@example.org>"
"#,
            children.join(", ")
        ),
    );
    for (name, externals, compile) in components {
        // `name` or `name constraint`.
        let deps: String = externals
            .iter()
            .map(|e| {
                let (name, constraint) = e.split_once(' ').unwrap_or((e, ""));
                let mut d = format!(
                    "[[configuration.dependencies]]\nexternal = \"{name}\"\nscope = \"build\"\n"
                );
                if !constraint.is_empty() {
                    d += &format!("constraint = \"{constraint}\"\n");
                }
                d + "\n"
            })
            .collect();
        write(
            &tree.join(name).join("module.toml"),
            &format!(
                r#"[module]
name = "rt.{name}"
kind = "component"
description = "Built in a root"

[[configuration]]
name = "{name}_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"

{deps}[configuration.commands]
checkout = 'mkdir -p ${{moduleName}} && echo source > ${{moduleName}}/README'
compile = '{compile}'
install = 'mkdir -p ${{prefix}}/usr/share/rt && cp README ${{prefix}}/usr/share/rt/{name}'
"#
            ),
        );
    }
    tree
}

#[test]
fn a_root_installs_what_a_component_needs_runs_it_as_nobody_and_refuses_the_rest() {
    let Some(root) = debian_root() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let tree = root_tree(
        t.path(),
        &[
            // `tree` is no part of a buildd root, nor of this host.
            (
                "needs",
                &["tree >= 1.8"],
                "tree --version && id -u && id -un",
            ),
            ("missing", &["no-such-package-packyard"], "true"),
            ("escape", &[], "echo x > /usr/local/escape"),
        ],
    );
    let before = host_packages();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let ws = t.path().join("ws");
    let spec = format!("deb12_amd64={}", root.display());
    let (o, list) = build(
        Some(&d),
        &tree,
        &[
            "--platform",
            "deb12_amd64",
            "--workspace",
            ws.to_str().unwrap(),
            "--root",
            &spec,
        ],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    let r = results(&list);
    assert_eq!(r["needs_R_1_0_0_1"], "built", "{list:?}");
    let log = |c: &str| crate::support::read_location(component(&list, c)["log"].as_str().unwrap());
    let needs = log("needs_R_1_0_0_1");
    assert!(
        needs.contains("== root: installing tree (>= 1.8) (as root)"),
        "{needs}"
    );
    assert!(needs.contains("tree v"), "tree ran in the root: {needs}");
    assert!(
        needs.contains("\n65534\n"),
        "the targets run as nobody: {needs}"
    );
    assert!(needs.contains("== root: taken down"), "{needs}");
    // The external does not exist: the component fails naming it.
    assert_eq!(r["missing_R_1_0_0_1"], "failed");
    let why = component(&list, "missing_R_1_0_0_1")["reason"].to_string();
    assert!(
        why.contains("no-such-package-packyard is not a package of the deb12_amd64 root"),
        "{why}"
    );
    // A write outside the workspace fails: the root is read-only.
    assert_eq!(r["escape_R_1_0_0_1"], "failed");
    let escape = log("escape_R_1_0_0_1");
    assert!(escape.contains("Read-only file system"), "{escape}");
    // Nothing was installed on the host, and no layer is left behind.
    assert_eq!(host_packages(), before, "the host's packages changed");
    for c in ["rt.needs", "rt.missing", "rt.escape"] {
        assert!(
            !ws.join("_output").join(c).join("root").exists(),
            "{c}'s layer stayed"
        );
    }
}

#[test]
fn the_fixture_release_builds_in_a_debian_root_and_its_packages_install_and_run() {
    let Some(root) = debian_root() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    crate::repo::ed25519_key(&d);
    let ws = t.path().join("ws");
    let spec = format!("deb12_amd64={}", root.display());
    let before = host_packages();
    let (o, list) = build(
        Some(&d),
        &crate::support::fixture("trees/my-project"),
        &[
            "--platform",
            "deb12_amd64",
            "--workspace",
            ws.to_str().unwrap(),
            "--root",
            &spec,
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(results(&list).values().all(|r| r == "built"), "{list:?}");
    let log = |c: &str| crate::support::read_location(component(&list, c)["log"].as_str().unwrap());
    // The declared externals went into the root: make for the web server (already in a
    // buildd root), python3 for the Python API's tests (not in it).
    assert!(log("web_server_R_2_5_1_1").contains("== root: installing make (>= 4.0)"));
    assert!(log("python_api_R_5_0_0_1").contains("== root: installing python3"));
    assert_eq!(host_packages(), before, "the host's packages changed");
    // The packages install on a Debian 12 system (a fresh layer of the same root, their
    // other dependencies from the distribution) and their programs run there.
    let debs: Vec<PathBuf> = crate::serve::tree_files(&crate::support::tree(&d, "nightly"))
        .into_iter()
        .filter(|(k, _)| k.ends_with(".deb") && !k.starts_with("apt/"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(debs.len(), 6, "{debs:?}");
    let said = in_root(
        &root,
        &t.path().join("check"),
        &debs,
        "mycli --version && dbserver --version && web-server --version",
    );
    for program in ["mycli", "dbserver", "web"] {
        assert!(said.to_lowercase().contains(program), "{program}: {said}");
    }
}

/// Installs `debs` into a fresh layer of `root` (with apt-get, their dependencies from
/// the distribution), then runs `script` there; what it printed.
fn in_root(root: &Path, dir: &Path, debs: &[PathBuf], script: &str) -> String {
    use packyard::build::root::{Layer, RootSpec, prepare};
    let spec = RootSpec::parse(&format!("deb12_amd64={}", root.display())).unwrap();
    let ready = prepare(
        &spec,
        packyard::layout::PackageFormat::Deb,
        &dir.join("root"),
        &mut |_| {},
    )
    .unwrap();
    let pool = dir.join("debs");
    fs::create_dir_all(&pool).unwrap();
    for d in debs {
        fs::copy(d, pool.join(d.file_name().unwrap())).unwrap();
    }
    let layer = Layer::over(&ready, &dir.join("layer")).unwrap();
    layer.mount_points(&[&pool]).unwrap();
    let o = layer
        .privileged_with(
            &format!(
                "cd {} && apt-get install -y -q ./*.deb >/dev/null && {script}",
                pool.display()
            ),
            &[&pool],
        )
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{said}");
    let _ = layer.remove();
    said
}

#[test]
fn the_fixture_source_packages_rebuild_alone_in_a_root_into_packyards_own() {
    let Some(root) = debian_root() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    // packyard's own DEBs of the release, by package name.
    let field = |deb: &Path, f: &str| {
        crate::repo::run_ok(
            std::process::Command::new("dpkg-deb")
                .arg("-f")
                .arg(deb)
                .arg(f),
        )
        .trim()
        .to_string()
    };
    let ours: BTreeMap<String, PathBuf> =
        crate::serve::tree_files(crate::support::packed("deb12_amd64"))
            .into_values()
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .map(|p| (field(&p, "Package"), p))
            .collect();
    // The project's own packages a relation list names, with what they depend on in turn.
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .filter_map(|r| r.split_whitespace().next())
            .filter(|n| ours.contains_key(*n))
            .map(str::to_string)
            .collect()
    };
    let mut checked = 0;
    for b in crate::support::release("deb12_amd64") {
        let c = &b.configuration;
        let co = crate::source::checkout(&t.path().join("ws").join(c), c, "deb12_amd64");
        let files = crate::source::pack_source(c, &co, &t.path().join("src-out").join(c));
        let dir = t.path().join("src").join(c);
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            fs::write(dir.join(name), bytes).unwrap();
        }
        let dsc = files.keys().find(|n| n.ends_with(".dsc")).unwrap();
        let text = String::from_utf8_lossy(&files[dsc]).into_owned();
        let build_depends = text
            .lines()
            .find_map(|l| l.strip_prefix("Build-Depends: "))
            .unwrap_or_default();
        // The internal build dependencies (not in the distribution) are given with it.
        let mut with: Vec<String> = names(build_depends);
        let mut i = 0;
        while i < with.len() {
            for n in names(&field(&ours[&with[i]], "Depends")) {
                if !with.contains(&n) {
                    with.push(n);
                }
            }
            i += 1;
        }
        let out = t.path().join("rebuilt").join(c);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_packyard"));
        cmd.args(["--json", "rebuild"])
            .arg(dir.join(dsc))
            .arg("--root")
            .arg(format!("deb12_amd64={}", root.display()))
            .arg("--out")
            .arg(&out)
            .arg("--work")
            .arg(t.path().join("work"));
        for w in &with {
            cmd.arg("--with").arg(&ours[w]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{c}: {}{}", stdout(&o), stderr(&o));
        let made: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(made.len(), 1, "{c}: {made:?}");
        let rebuilt = PathBuf::from(&made[0]);
        let own = &ours[&field(&rebuilt, "Package")];
        // The same package as packyard's own: files, relations, scripts, md5sums.
        assert_eq!(
            crate::source::deb_facts(own),
            crate::source::deb_facts(&rebuilt),
            "{c}: packyard's DEB and the one rebuilt in the root differ"
        );
        // Its programs run, and say what packyard's say.
        let (xa, xb) = (
            t.path().join("x-ours").join(c),
            t.path().join("x-rebuilt").join(c),
        );
        for (deb, x) in [(own, &xa), (&rebuilt, &xb)] {
            fs::create_dir_all(x).unwrap();
            crate::repo::run_ok(
                std::process::Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb)
                    .arg(x),
            );
        }
        assert_eq!(
            crate::source::programs(&xa),
            crate::source::programs(&xb),
            "{c}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn an_agent_builds_its_tasks_in_a_root() {
    let Some(root) = debian_root() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let tree = root_tree(t.path(), &[("needs", &["tree"], "tree --version && id -u")]);
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let token = crate::serve::token(&d, "builder");
    let server = crate::serve::Server::start(&d, &["--tree", tree.to_str().unwrap()]);
    let before = host_packages();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--server", &server.url, "--token", &token])
        .args(["agent", "--platforms", "deb12_amd64", "--name", "rooted"])
        .arg("--workspace")
        .arg(t.path().join("agent-ws"))
        .arg("--root")
        .arg(format!("deb12_amd64={}", root.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", "--server", &server.url, "--token", &token])
        .args(["submit", "--platform", "deb12_amd64", "--wait"])
        .output()
        .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    let _ = agent.wait();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = b["id"].as_u64().unwrap();
    assert_eq!(b["tasks"][0]["state"], "built", "{b}");
    let (status, log) = server.get(&format!("/api/v1/builds/{id}/tasks/0/log"));
    assert_eq!(status, 200);
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("== root: installing tree (as root)"), "{log}");
    assert!(log.contains("tree v") && log.contains("\n65534\n"), "{log}");
    assert_eq!(host_packages(), before, "the host's packages changed");
    assert!(server.stop().success());
}
