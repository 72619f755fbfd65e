//! Development builds (`packyard develop`): a checkout kept in the workspace and built in
//! place, incrementally — configured once, then from `compile` on — cached while its tree
//! is unchanged, feeding its dependents from the workspace, published only into a
//! repository named with `--repo`.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::build::{build, component, results};
use crate::repo::create_nightly;
use crate::support::{FIXTURE_TREE, root, stderr, stdout};

fn develop(ws: &Path, args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args([
            "--json",
            "develop",
            "--tree",
            FIXTURE_TREE,
            "--platform",
            "el9_x86_64",
        ])
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn log_of(list: &[Value], c: &str) -> String {
    crate::support::read_location(component(list, c)["log"].as_str().unwrap())
}

#[test]
fn a_development_build_configures_once_remakes_what_changed_and_is_cached_when_untouched() {
    if !crate::build::need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let ws = t.path().join("ws");
    let listed = develop(&ws, &["web_server"]);
    assert!(
        listed["modules"]["my-project.servers.web_server"]["configuration"]
            == "web_server_R_2_5_1_1",
        "{listed}"
    );
    let checkout = ws.join("my-project.servers.web_server");
    assert!(checkout.join("Makefile").is_file());
    let tree = root().join(FIXTURE_TREE);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--platform",
            "el9_x86_64",
            "--workspace",
            ws.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (o, list) = build(Some(&d), &tree, &args);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        list
    };
    let web = "web_server_R_2_5_1_1";
    // First build: configured, built, not published (no --repo).
    let first = run(&[]);
    assert_eq!(results(&first)[web], "built");
    let log = log_of(&first, web);
    assert!(log.contains("development build: in place"), "{log}");
    assert!(log.contains("== configure: ./configure"), "{log}");
    assert!(log.contains("== publish: skipped"), "{log}");
    assert!(
        !crate::serve::tree_files(&crate::support::tree(&d, "nightly"))
            .keys()
            .any(|k| k.contains("my-web-server")),
        "a development build went into the repository without --repo"
    );
    // One source file changed: from compile on, and make remakes that part alone.
    let mut body = fs::read_to_string(checkout.join("body.sh.in")).unwrap();
    body.push_str("# a local change\n");
    fs::write(checkout.join("body.sh.in"), body).unwrap();
    let second = run(&[]);
    assert_eq!(results(&second)[web], "built");
    let log = log_of(&second, web);
    assert!(log.contains("== configure: skipped"), "{log}");
    assert!(!log.contains("== configure: ./configure"), "{log}");
    // Its build dependencies did not change: their stage stays.
    assert!(
        log.contains("stage kept (the same build dependencies"),
        "{log}"
    );
    assert!(!log.contains("== staged "), "{log}");
    assert!(log.contains("body.sh.in > build/body.sh"), "{log}");
    assert!(!log.contains("head.sh.in > build/head.sh"), "{log}");
    assert!(
        log.contains("cat build/head.sh build/body.sh > web-server"),
        "{log}"
    );
    // Untouched: cached, from the workspace.
    let third = run(&[]);
    assert_eq!(results(&third)[web], "cached");
    assert!(log_of(&third, web).contains("holds this development build's artifacts"));
    // A changed configuration configures again.
    let fourth = run(&["-p", "web.greeting=Hi"]);
    assert!(log_of(&fourth, web).contains("== configure: ./configure"));
    // Named --repo: published, its record says development.
    let fifth = run(&["--repo", "nightly", "--force"]);
    assert_eq!(results(&fifth)[web], "built");
    let record_path = crate::serve::tree_files(&crate::support::tree(&d, "nightly"))
        .into_iter()
        .find(|(k, _)| k.contains("my-web-server") && k.ends_with(".build.json"))
        .map(|(_, p)| p)
        .expect("no build record published");
    let record: Value = serde_json::from_slice(&fs::read(record_path).unwrap()).unwrap();
    assert_eq!(record["development"], true, "{record}");
    // Released: the next build checks it out afresh, as a release build.
    develop(&ws, &["--release", "web_server"]);
    let sixth = run(&["--force"]);
    assert!(!log_of(&sixth, web).contains("development build"));
    assert!(
        !checkout.join("body.sh.in").exists()
            || !fs::read_to_string(checkout.join("body.sh.in"))
                .unwrap()
                .contains("a local change")
    );
}

#[test]
fn a_dependent_in_the_same_build_uses_the_development_artifacts() {
    if !crate::build::need_build_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    create_nightly(&d, &[]);
    let ws = t.path().join("ws");
    develop(&ws, &["database_schemas"]);
    // A local change to the schemas the web server is built with.
    let sql = ws.join("my-project.servers.database_schemas");
    let marker = "-- a development change";
    let file = fs::read_dir(&sql)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sql"))
        .expect("an .sql file");
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str(&format!("{marker}\n"));
    fs::write(&file, text).unwrap();
    let build_ws = || {
        let (o, list) = build(
            Some(&d),
            &root().join(FIXTURE_TREE),
            &[
                "--platform",
                "el9_x86_64",
                "--workspace",
                ws.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        list
    };
    let list = build_ws();
    let web = log_of(&list, "web_server_R_2_5_1_1");
    assert!(
        web.contains("== staged database_schemas_R_3_0_0_1 into")
            && web.contains("(a development build)"),
        "{web}"
    );
    // The staged schemas are the changed ones, and the dependent is not published either.
    let staged = ws.join("_output/my-project.servers.web_server/stage");
    let found = crate::support::files_under(&staged)
        .into_iter()
        .any(|p| fs::read_to_string(&p).is_ok_and(|s| s.contains(marker)));
    assert!(
        found,
        "the web server was not built on the development schemas"
    );
    assert!(web.contains("== publish: skipped"), "{web}");
    assert_eq!(results(&list)["java_api_R_5_2_2_1"], "built");

    // The web server in development too: its stage is made again when the schemas
    // change, and kept while only its own tree does.
    develop(&ws, &["web_server"]);
    let build_ws = || log_of(&build_ws(), "web_server_R_2_5_1_1");
    // Built on the same schemas as its last build (as their dependent): the stage stays.
    let web = build_ws();
    assert!(
        web.contains("stage kept (the same build dependencies"),
        "{web}"
    );
    let again = "-- changed again";
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str(&format!("{again}\n"));
    fs::write(&file, text).unwrap();
    let web = build_ws();
    assert!(
        web.contains("== staged database_schemas_R_3_0_0_1 into") && !web.contains("kept"),
        "{web}"
    );
    let restaged = crate::support::files_under(&staged)
        .into_iter()
        .any(|p| fs::read_to_string(&p).is_ok_and(|s| s.contains(again)));
    assert!(restaged, "the stage holds the schemas of before");
    let own = ws.join("my-project.servers.web_server/body.sh.in");
    let mut body = fs::read_to_string(&own).unwrap();
    body.push_str("# a local change\n");
    fs::write(&own, body).unwrap();
    let web = build_ws();
    assert!(
        web.contains("stage kept (the same build dependencies"),
        "{web}"
    );
}
