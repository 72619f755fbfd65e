//! Defaults profiles (`--defaults NAME`, `profiles/NAME.toml`): what they set and where
//! it shows, how they change a release, `lint` of a broken one, and the build key.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::build::{build, component, fixtures_copy, results};
use crate::repo::create_nightly;
use crate::support::{FIXTURE_TREE, root, stderr, stdout, write};

fn packyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn a_profiles_values_show_their_origin_and_rank_between_the_tree_and_p() {
    let show = |extra: &[&str]| -> Value {
        let mut args = vec![
            "--json",
            "show",
            "web_server_R_2_5_1_1",
            "--tree",
            FIXTURE_TREE,
            "--platform",
            "el9_x86_64",
        ];
        args.extend_from_slice(extra);
        let o = packyard(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let plain = show(&[]);
    assert_ne!(plain["properties"]["package.compression"]["value"], "zstd");
    let debug = show(&["--defaults", "debug"]);
    let c = &debug["properties"]["package.compression"];
    assert_eq!(c["value"], "zstd", "{c}");
    assert_eq!(
        c["origin"],
        serde_json::json!({"kind": "profile", "source": "debug"})
    );
    // Text output names it profile:debug.
    let o = packyard(&[
        "show",
        "web_server_R_2_5_1_1",
        "--tree",
        FIXTURE_TREE,
        "--platform",
        "el9_x86_64",
        "--defaults",
        "debug",
    ]);
    assert!(stdout(&o).contains("[profile:debug]"), "{}", stdout(&o));
    // -p wins over a profile; the override reaches only the modules it matches.
    let p = show(&["--defaults", "debug", "-p", "package.compression=xz"]);
    assert_eq!(p["properties"]["package.compression"]["value"], "xz");
    let o = packyard(&[
        "--json",
        "show",
        "cli_client_R_5_6_1_1",
        "--tree",
        FIXTURE_TREE,
        "--platform",
        "el9_x86_64",
        "--defaults",
        "debug",
    ]);
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(cli["properties"]["package.compression"]["value"], "zstd");
    // An unknown profile is an error naming where profiles live.
    let o = packyard(&[
        "show",
        "web_server_R_2_5_1_1",
        "--tree",
        FIXTURE_TREE,
        "--defaults",
        "nope",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("profiles/nope.toml"), "{}", stderr(&o));
}

/// The configurations a build of the fixture release would build (a `clean`-only build:
/// nothing is checked out).
fn release_members(extra: &[&str]) -> Vec<String> {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let ws = t.path().join("ws");
    let mut args = vec![
        "--platform",
        "el9_x86_64",
        "--workspace",
        ws.to_str().unwrap(),
        "--targets",
        "clean",
    ];
    args.extend_from_slice(extra);
    let (o, list) = build(Some(&d), &root().join(FIXTURE_TREE), &args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    list.iter()
        .map(|c| c["configuration"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_profile_switches_the_release_to_a_branch_and_leaves_a_component_out() {
    let plain = release_members(&[]);
    assert!(
        plain.contains(&"web_server_R_2_5_1_1".to_string()),
        "{plain:?}"
    );
    assert!(
        plain.contains(&"cli_client_R_5_6_1_1".to_string()),
        "{plain:?}"
    );
    let trunk = release_members(&["--defaults", "trunk"]);
    assert!(
        trunk.contains(&"web_server_B_TRUNK".to_string()),
        "{trunk:?}"
    );
    assert!(
        !trunk.iter().any(|c| c.starts_with("web_server_R_")),
        "{trunk:?}"
    );
    assert!(
        !trunk.iter().any(|c| c.starts_with("cli_client")),
        "{trunk:?}"
    );
    assert_eq!(trunk.len(), plain.len() - 1, "{trunk:?}");
}

#[test]
fn lint_reports_a_broken_profile_and_a_disabled_dependency_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let tree = fixtures_copy(t.path());
    write(
        &tree.join("profiles/broken.toml"),
        "description = \"broken\"\n\
         disable = [\"my-project.clients.nope\"]\n\
         [properties]\n\
         version = \"9.9.9\"\n\
         \"my-project.servers.web_server.DEFAULT\" = \"java_api_R_5_2_2_1\"\n\
         [[override]]\n\
         modules = 'other\\..*'\n\
         properties = { \"package.compression\" = \"xz\" }\n",
    );
    write(
        &tree.join("profiles/off.toml"),
        "disable = [\"my-project.clients.java_api\"]\n",
    );
    let o = packyard(&["--json", "lint", tree.to_str().unwrap()]);
    assert!(!o.status.success());
    let found: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let at = |line: u64, what: &str| {
        found.iter().any(|v| {
            v["rule"] == "profile"
                && v["file"]
                    .as_str()
                    .unwrap()
                    .ends_with("profiles/broken.toml")
                && v["line"] == line
                && v["message"].as_str().unwrap().contains(what)
        })
    };
    assert!(at(2, "unknown module my-project.clients.nope"), "{found:?}");
    assert!(at(4, "protected property version"), "{found:?}");
    assert!(at(5, "a configuration of another module"), "{found:?}");
    assert!(at(7, "matches no module"), "{found:?}");
    // java_api left out while cli_client and the web server need it: an error naming both.
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let o = crate::support::packyard_at(&d)
        .args(["build", "--tree"])
        .arg(&tree)
        .args([
            "--platform",
            "el9_x86_64",
            "--defaults",
            "off",
            "--targets",
            "clean",
        ])
        .arg("--workspace")
        .arg(t.path().join("ws"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let said = stdout(&o) + &stderr(&o);
    assert!(
        said.contains("needs my-project.clients.java_api, which profile off disables"),
        "{said}"
    );
}

#[test]
fn builds_with_different_profiles_have_different_keys_and_are_each_cached() {
    if !crate::build::need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    crate::repo::py_json(&d, &["repo", "create", "debug", "--kind", "volatile"]);
    let tree = Path::new(FIXTURE_TREE);
    let tree = root().join(tree);
    let run = |repo: &str, extra: &[&str]| {
        let ws = t.path().join(format!("ws-{repo}"));
        let mut args = vec![
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
            "--repo",
            repo,
        ];
        args.extend_from_slice(extra);
        let (o, list) = build(Some(&d), &tree, &args);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        list
    };
    let plain = run("nightly", &[]);
    let debug = run("debug", &["--defaults", "debug"]);
    assert!(results(&plain).values().all(|r| r == "built"));
    assert!(results(&debug).values().all(|r| r == "built"));
    for c in results(&plain).keys() {
        assert_ne!(
            component(&plain, c)["key"],
            component(&debug, c)["key"],
            "{c}: the same key with and without the profile"
        );
    }
    // The profile's environment reached the targets; its override, the server packages.
    let log = crate::support::read_location(
        component(&debug, "database_server_R_2_0_1_1")["log"]
            .as_str()
            .unwrap(),
    );
    assert!(
        log.contains("(environment from the profiles: CFLAGS=-O0 -g)"),
        "{log}"
    );
    let rpm = crate::build::artifact(component(&debug, "web_server_R_2_5_1_1"), ".rpm");
    let compressor = crate::repo::run_ok(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{PAYLOADCOMPRESSOR}"])
            .arg(crate::support::tree(&d, "debug").join(&rpm)),
    );
    assert_eq!(compressor, "zstd");
    // Each again: everything cached, each from its own repository.
    for (repo, extra) in [
        ("nightly", &[][..]),
        ("debug", &["--defaults", "debug"][..]),
    ] {
        let again = run(repo, extra);
        assert!(
            results(&again).values().all(|r| r == "cached"),
            "{repo}: {again:?}"
        );
    }
}
