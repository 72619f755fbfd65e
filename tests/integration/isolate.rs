//! `packyard build --isolate bwrap`: the fixture release builds the same in the sandbox as
//! without; writes outside a component's checkout, `_output/<module>/` and `/tmp` fail it;
//! targets have no network and a PID namespace of their own; a timeout or a stop still
//! stops a sandboxed step whole; without a working bwrap the build fails before it starts,
//! and `--isolate none` never starts bwrap.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{
    all, artifact_bytes, build_with, component, fixtures_copy, hanging_steps_are_stopped, keys,
    need_build_tools, results,
};
use crate::repo::create_nightly;
use crate::support::{have_tool, stderr, stdout, write};

/// A scratch directory outside `/tmp`: a sandboxed step has a private `/tmp`, where what
/// a test puts beside its tree (the fixture's sources, the directories it writes to)
/// would not be seen.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// bwrap installed, and able to make the namespaces a sandbox needs.
pub(crate) fn have_bwrap() -> bool {
    have_tool(
        "bwrap",
        &[
            "--ro-bind",
            "/",
            "/",
            "--unshare-pid",
            "--unshare-net",
            "--",
            "true",
        ],
    )
}

/// The packyard binary with `HOME` set to `home`.
fn packyard(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_packyard"));
    cmd.env("HOME", home);
    cmd
}

/// A release `iso_R_1_0_0_1` of components `(name, checkout, compile)`, none needing
/// another: configurations `<name>_R_1_0_0_1` of modules `iso.<name>`.
pub(crate) fn iso_tree(dir: &Path, components: &[(&str, &str, &str)]) -> PathBuf {
    let tree = dir.join("tree");
    let children: Vec<String> = components
        .iter()
        .map(|(n, ..)| format!("\"{n}_R_1_0_0_1\""))
        .collect();
    write(
        &tree.join("module.toml"),
        &format!(
            r#"[module]
name = "iso"
kind = "project"
description = "Components that write here and there"
license = "MIT"
vendor = "Tests"

[[configuration]]
name = "iso_R_1_0_0_1"
version = "1.0.0"
age = 1
children = [{}]

[configuration.properties]
"package.maintainer" = "Tests <tests@example.org>"
"#,
            children.join(", ")
        ),
    );
    for (name, checkout, compile) in components {
        write(
            &tree.join(name).join("module.toml"),
            &format!(
                r#"[module]
name = "iso.{name}"
kind = "component"
description = "Writes in its build"

[[configuration]]
name = "{name}_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"

[configuration.commands]
checkout = '{checkout}'
compile = '{compile}'
install = 'mkdir -p ${{prefix}}/share && echo x > ${{prefix}}/share/x'
"#
            ),
        );
    }
    tree
}

#[test]
fn the_fixture_release_builds_the_same_in_the_sandbox_as_without() {
    if !need_build_tools() || !have_bwrap() {
        return;
    }
    let t = scratch();
    let tree = fixtures_copy(t.path());
    let mut builds = vec![];
    for how in ["none", "bwrap"] {
        let d = t.path().join(format!("data-{how}"));
        create_nightly(&d, &[]);
        let ws = t.path().join(format!("ws-{how}"));
        let mut cmd = packyard(&t.path().join("home"));
        cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        let (o, list) = build_with(
            cmd,
            Some(&d),
            &tree,
            &[
                "--platform",
                "el9_x86_64",
                "--workspace",
                ws.to_str().unwrap(),
                "--isolate",
                how,
            ],
        );
        assert!(o.status.success(), "{how}: {}{}", stdout(&o), stderr(&o));
        assert_eq!(results(&list), all("built"), "{how}");
        for c in &list {
            let log = crate::support::read_location(c["log"].as_str().unwrap());
            assert_eq!(
                log.contains("(sandboxed (--isolate bwrap): the host read-only"),
                how == "bwrap",
                "{log}"
            );
            // The checkout is in the workspace, its scratch workspace gone.
            let module = c["module"].as_str().unwrap();
            assert!(ws.join(module).is_dir(), "{module}");
            assert!(!ws.join("_output").join(module).join("checkout").exists());
        }
        builds.push((
            artifact_bytes(&crate::support::tree(d, "nightly"), &list),
            keys(&list),
        ));
    }
    let (none, bwrap) = (&builds[0], &builds[1]);
    // A tarball, an RPM and a source RPM of each component.
    assert_eq!(none.0.len(), 18);
    assert_eq!(
        none.0.keys().collect::<Vec<_>>(),
        bwrap.0.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &none.0 {
        assert!(
            bwrap.0[path] == *bytes,
            "{path} differs between --isolate none and bwrap"
        );
    }
    // The key does not name the isolation: either build is the other's cache.
    assert_eq!(none.1, bwrap.1);
}

#[test]
fn a_step_that_writes_outside_its_workspace_fails_in_the_sandbox_and_not_without() {
    if !have_bwrap() {
        return;
    }
    let t = scratch();
    let home = t.path().join("home");
    let outside = t.path().join("outside");
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let etc = PathBuf::from(format!("/etc/packyard-isolate-{}", std::process::id()));
    let host_tmp = PathBuf::from(format!("/tmp/packyard-isolate-{}", std::process::id()));
    // Sources in the host's /tmp, which a sandboxed step does not see.
    let sources = tempfile::tempdir_in("/tmp").unwrap();
    write(&sources.path().join("a"), "a");
    let from_tmp = format!(
        "mkdir -p ${{moduleName}} && cp -R {}/. ${{moduleName}}/",
        sources.path().display()
    );
    let mkdir = "mkdir -p ${moduleName}";
    let to_outside = format!("echo x > {}/x", outside.display());
    // First it tries to make / writable again, as root could with its capabilities.
    let to_etc = format!(
        "mount -o remount,rw / 2>/dev/null; echo x > {}",
        etc.display()
    );
    let in_tmp = format!(
        "echo x > {} && echo x > \"$TMPDIR/x\" && readlink /proc/self/ns/net /proc/self/ns/pid > ns",
        host_tmp.display()
    );
    let tree = iso_tree(
        t.path(),
        &[
            (
                "fine",
                "mkdir -p ${moduleName} && readlink /proc/self/ns/net > ${moduleName}/net-checkout",
                &in_tmp,
            ),
            ("home", mkdir, "echo x > \"$HOME/x\""),
            ("etc", mkdir, &to_etc),
            ("outside", mkdir, &to_outside),
            ("stray", "mkdir -p ${moduleName} && echo x > stray", "true"),
            ("hidden", &from_tmp, "true"),
        ],
    );
    let run = |how: &str, ws: &Path, only: &[&str]| {
        let d = t.path().join(format!("data-{how}"));
        create_nightly(&d, &[]);
        let mut args = vec![
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
            "--isolate",
            how,
        ];
        if !only.is_empty() {
            args.push("--only");
            args.extend(only);
        }
        build_with(packyard(&home), Some(&d), &tree, &args)
    };

    // Without the sandbox they write where they like (all of it in this test's directory).
    let ws = t.path().join("ws-none");
    let (o, list) = run("none", &ws, &["home", "outside", "stray", "hidden"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(results(&list).values().all(|r| r == "built"), "{list:?}");
    for written in [home.join("x"), outside.join("x"), ws.join("stray")] {
        assert!(written.is_file(), "{}", written.display());
        fs::remove_file(written).unwrap();
    }

    // In it, each fails with the write that was refused.
    let ws = t.path().join("ws-bwrap");
    let (o, list) = run("bwrap", &ws, &[]);
    // Were the sandbox to let them through, what it wrote on the host goes at once.
    let leaked: Vec<&PathBuf> = [&etc, &host_tmp]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    for p in &leaked {
        let _ = fs::remove_file(p);
    }
    assert!(leaked.is_empty(), "written on the host: {leaked:?}");
    assert!(!o.status.success());
    let r = results(&list);
    assert_eq!(r["fine_R_1_0_0_1"], "built", "{list:?}");
    for (name, path) in [
        ("home", home.join("x")),
        ("etc", etc.clone()),
        ("outside", outside.join("x")),
    ] {
        let c = component(&list, &format!("{name}_R_1_0_0_1"));
        assert_eq!(c["result"], "failed", "{c}");
        let reason = c["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("compile: `")
                && reason.contains(&format!(
                    "the sandbox refused a write: sh: 1: cannot create {}: Read-only file system",
                    path.display()
                )),
            "{reason}"
        );
        assert!(!path.exists(), "{}", path.display());
        let log = crate::support::read_location(c["log"].as_str().unwrap());
        assert!(log.contains("(sandboxed (--isolate bwrap)"), "{log}");
    }
    let stray = component(&list, "stray_R_1_0_0_1");
    assert_eq!(stray["result"], "failed", "{stray}");
    let reason = stray["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "checkout: the command wrote outside {}: {}",
            ws.join("iso.stray").display(),
            ws.join("stray").display()
        )),
        "{reason}"
    );
    assert!(!ws.join("stray").exists());
    let hidden = component(&list, "hidden_R_1_0_0_1");
    assert_eq!(hidden["result"], "failed", "{hidden}");
    let reason = hidden["reason"].as_str().unwrap();
    assert!(
        reason.contains("No such file or directory (a sandboxed step has a private /tmp"),
        "{reason}"
    );

    // What it may write it wrote (fine built): its checkout, _output/<module>/ and its
    // own /tmp (not the host's, seen above).
    assert!(ws.join("_output/iso.fine/prefix/share/x").is_file());
    // Checkout kept the network; compile had none, and its own PID namespace.
    let own = |ns: &str| {
        fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    let checkout_net = fs::read_to_string(ws.join("iso.fine/net-checkout")).unwrap();
    assert_eq!(checkout_net.trim(), own("net"));
    let ns = fs::read_to_string(ws.join("iso.fine/ns")).unwrap();
    let ns: Vec<&str> = ns.lines().collect();
    assert_eq!(ns.len(), 2, "{ns:?}");
    assert!(ns[0].starts_with("net:") && ns[0] != own("net"), "{ns:?}");
    assert!(ns[1].starts_with("pid:") && ns[1] != own("pid"), "{ns:?}");
}

/// The sandbox stays in the step's process group: `--step-timeout` and a stopped build
/// stop everything a sandboxed step started.
#[test]
fn a_sandboxed_step_past_the_step_timeout_is_stopped() {
    if !have_bwrap() {
        return;
    }
    let t = scratch();
    let log = hanging_steps_are_stopped(t.path(), 8, &["--isolate", "bwrap"]);
    assert!(log.contains("(sandboxed (--isolate bwrap)"), "{log}");
}

/// Runs nothing sandboxed, so it needs no bwrap: one that cannot make namespaces, and
/// none at all, are stood in for by `PATH`.
#[test]
fn without_a_working_bwrap_the_build_fails_up_front_and_none_never_starts_it() {
    let t = tempfile::tempdir().unwrap();
    let mkdir = "mkdir -p ${moduleName}";
    let tree = iso_tree(t.path(), &[("one", mkdir, "true"), ("two", mkdir, "true")]);
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    // A bwrap that says why it cannot, as one without user namespaces does, and leaves a
    // line each time it is started.
    let bin = t.path().join("bin");
    let started = t.path().join("started");
    write(
        &bin.join("bwrap"),
        &format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n",
            started.display()
        ),
    );
    fs::set_permissions(bin.join("bwrap"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let build = |how: &str, path: &str, ws: &Path| {
        crate::support::ready_data(&d);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_packyard"));
        cmd.env("PATH", path)
            .arg("--data")
            .arg(&d)
            .args(["build", "--platform", "el9_x86_64", "--tree"])
            .arg(&tree)
            .arg("--workspace")
            .arg(ws)
            .args(["--isolate", how]);
        cmd.output().unwrap()
    };

    let ws = t.path().join("ws-none");
    let o = build("none", &path, &ws);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(ws.join("iso.one").is_dir() && ws.join("iso.two").is_dir());
    assert!(!started.exists(), "bwrap was started for --isolate none");

    let ws = t.path().join("ws-bwrap");
    let o = build("bwrap", &path, &ws);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--isolate bwrap: bwrap cannot make a sandbox here (exit status 1): bwrap: No permissions to create a new namespace")
            && err.contains("unprivileged user namespaces")
            && err.contains("--isolate none"),
        "{err}"
    );
    // Asked once, before anything ran: no component was tried.
    let asked = fs::read_to_string(&started).unwrap();
    assert_eq!(asked.lines().count(), 1, "{asked}");
    assert!(!ws.exists());

    // No bwrap at all.
    let empty = t.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = build("bwrap", empty.to_str().unwrap(), &ws);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--isolate bwrap needs bwrap (bubblewrap), which is not installed here")
            && err.contains("install bubblewrap"),
        "{err}"
    );
    assert!(!ws.exists());
}
