//! `lint` and `pack` agree: what pack refuses for lack of metadata, lint reports first;
//! and a tree lints the same whatever its own folder is called.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::repo::copy_tree;
use crate::support::{fixture, stderr, stdout, write};

/// The fixture tree copied into `<dir>/my-config`: a clone under a name of its own.
fn copied(dir: &Path) -> PathBuf {
    let tree = dir.join("my-config");
    copy_tree(&fixture("trees/my-project"), &tree);
    tree
}

fn run(args: &[&str], tree: &Path, rest: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(args)
        .arg(tree)
        .args(rest)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// `pack` of web_server_R_2_5_1_1 from a prefix that holds its configuration file.
fn pack(tree: &Path, platform: &str, dir: &Path) -> Output {
    let prefix = dir.join("prefix");
    write(&prefix.join("etc/web_server/web.conf"), "greeting = hi\n");
    write(&prefix.join("usr/bin/web_server"), "#!/bin/sh\necho hi\n");
    let out = dir.join(format!("out-{platform}"));
    let mut args = vec!["--configuration", "web_server_R_2_5_1_1", "--platform"];
    args.push(platform);
    let (prefix, out) = (prefix.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--prefix", prefix, "--out", out]);
    run(&["pack", "--tree"], tree, &args)
}

#[test]
fn a_tree_lints_clean_in_a_folder_of_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let tree = copied(dir.path());
    let out = run(&["lint"], &tree, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn lint_reports_the_missing_maintainer_that_pack_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let tree = copied(dir.path());
    // The unchanged copy packs for Debian: what follows fails for the maintainer alone.
    let before = pack(&tree, "deb12_amd64", dir.path());
    assert!(before.status.success(), "{}", stderr(&before));

    let project = tree.join("module.toml");
    let text = fs::read_to_string(&project).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("\"package.maintainer\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        without, text,
        "the fixture sets package.maintainer in the project"
    );
    fs::write(&project, without).unwrap();

    let out = run(&["lint", "--json"], &tree, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert!(
        list.iter().all(|x| x["rule"] == "pack-metadata"),
        "only the new rule is broken: {v:#}"
    );
    // The configuration's own entry, file:line.
    let file = tree.join("servers/web_server/module.toml");
    let lines: Vec<String> = fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let name = lines
        .iter()
        .position(|l| l == "name = \"web_server_R_2_5_1_1\"")
        .unwrap();
    let line = 1 + lines[..name]
        .iter()
        .rposition(|l| l.starts_with("[[configuration]]"))
        .unwrap();
    let found = list.iter().find(|x| {
        x["file"] == file.to_str().unwrap()
            && x["line"] == line
            && x["message"]
                .as_str()
                .unwrap()
                .contains("web_server_R_2_5_1_1")
    });
    let found = found.unwrap_or_else(|| panic!("no violation at {}:{line}: {v:#}", file.display()));
    let message = found["message"].as_str().unwrap();
    assert!(message.contains("package.maintainer"), "{message}");
    assert!(message.contains("DEB"), "names the format: {message}");
    assert!(!message.contains("RPM"), "RPM needs none: {message}");
    assert!(
        found["hint"]
            .as_str()
            .unwrap()
            .contains("package.maintainer"),
        "{found}"
    );
    let text = stdout(&run(&["lint"], &tree, &[]));
    assert!(
        text.contains(&format!("{}:{line}: [pack-metadata]", file.display())),
        "{text}"
    );

    // And pack agrees: refused for Debian, packed for RPM.
    let deb = pack(&tree, "deb12_amd64", dir.path());
    assert!(!deb.status.success(), "{}", stdout(&deb));
    assert!(
        stderr(&deb).contains("package.maintainer"),
        "{}",
        stderr(&deb)
    );
    let rpm = pack(&tree, "el9_x86_64", dir.path());
    assert!(rpm.status.success(), "{}", stderr(&rpm));
}
