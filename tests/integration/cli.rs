//! `lint` and `show` on the fixture trees.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{fixture, packyard, stderr, stdout, write};

#[test]
fn good_tree_passes_lint() {
    let out = packyard(&["lint", "fixtures/trees/my-project"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "", "no violations are printed");
}

#[test]
fn bad_tree_breaks_every_rule() {
    let out = packyard(&["lint", "fixtures/trees/bad", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap().to_string())
        .collect();
    let all: BTreeSet<String> = packyard::lint::Rule::ALL
        .iter()
        .map(|r| r.id().to_string())
        .collect();
    let missing: Vec<_> = all.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "rules not triggered by fixtures/trees/bad: {missing:?}"
    );
    for x in v.as_array().unwrap() {
        let file = x["file"].as_str().unwrap();
        assert!(
            file.ends_with("module.toml") || file.contains("/profiles/"),
            "{x}"
        );
        assert!(x["line"].as_u64().unwrap() >= 1, "{x}");
        assert!(!x["hint"].as_str().unwrap().is_empty(), "{x}");
    }
    // The text form names file:line and rule.
    let text = stdout(&packyard(&["lint", "fixtures/trees/bad"]));
    assert!(
        text.contains("fixtures/trees/bad/core/alpha/module.toml:26: [checkout-directory]"),
        "{text}"
    );
}

fn show(args: &[&str]) -> Value {
    let mut all = vec![
        "show",
        "web_server_R_2_5_1_1",
        "--tree",
        "fixtures/trees/my-project",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = packyard(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn show_resolves_values_and_origins() {
    let v = show(&[]);
    let p = &v["properties"];
    assert_eq!(v["project"], "my-project_R_2_0_0_1");
    assert_eq!(v["subsystem"], "servers_R_2_5_0_1");
    assert_eq!(p["version"]["value"], "2.5.1");
    assert_eq!(p["version"]["origin"]["kind"], "field");
    // Inherited from the project module.
    assert_eq!(p["license"]["value"], "Apache-2.0");
    assert_eq!(p["license"]["origin"]["source"], "my-project");
    assert_eq!(p["package.configFiles"]["origin"]["kind"], "component");
    assert_eq!(p["package.autoreqprov"]["origin"]["kind"], "project");
    assert_eq!(p["libDir"]["value"], "lib64");
    assert_eq!(p["libDir"]["origin"]["kind"], "system");
    // Nested references and a property of a first-level dependency.
    assert_eq!(
        p["web.greeting"]["value"],
        "Hello from my-project.servers.web_server 2.5.1 (schema 3)"
    );
    assert!(
        p["web.greeting"]["raw"]
            .as_str()
            .unwrap()
            .contains("${database_schemas.schema.version}")
    );
    // Latest in the release wins over an older .DEFAULT, and satisfies the constraint.
    let deps = v["dependencies"].as_array().unwrap();
    let java = deps
        .iter()
        .find(|d| d["name"] == "my-project.clients.java_api")
        .unwrap();
    assert_eq!(java["configuration"], "java_api_R_5_2_2_1");
    assert_eq!(java["type"], "constrained");
    let stat = deps.iter().find(|d| d["type"] == "static").unwrap();
    assert_eq!(stat["configuration"], "database_server_R_2_0_1_1");
    assert!(
        deps.iter()
            .any(|d| d["type"] == "external" && d["name"] == "make")
    );
    assert_eq!(
        v["download"]["tarball"],
        "my-project/my-project.servers.web_server/2.5.1/el9_x86_64/my-web-server-2.5.1-1.tar.gz"
    );
    assert_eq!(
        v["download"]["package"],
        "my-project/my-project.servers.web_server/2.5.1/el9_x86_64/my-web-server-2.5.1-1.x86_64.rpm"
    );
    let cmds = v["commands"].as_array().unwrap();
    assert_eq!(cmds[0]["target"], "checkout");
    assert!(
        cmds[0]["command"]
            .as_str()
            .unwrap()
            .starts_with("mkdir -p my-project.servers.web_server")
    );
}

#[test]
fn show_on_a_deb_platform_and_older_release() {
    let out = packyard(&[
        "show",
        "web_server_R_2_4_0_1",
        "--tree",
        "fixtures/trees/my-project",
        "--platform",
        "deb12_amd64",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["project"], "my-project_R_1_0_0_1");
    assert_eq!(v["properties"]["architecture"]["value"], "amd64");
    assert_eq!(v["download"]["format"], "deb");
    assert_eq!(
        v["download"]["package"],
        "my-project/my-project.servers.web_server/2.4.0/deb12_amd64/my-web-server_2.4.0-1_deb12_amd64.deb"
    );
    let schemas = &v["dependencies"][0];
    assert_eq!(schemas["configuration"], "database_schemas_R_2_9_0_1");
}

#[test]
fn show_refuses_a_configuration_outside_the_given_release() {
    let out = packyard(&[
        "show",
        "web_server_R_2_5_1_1",
        "--tree",
        "fixtures/trees/my-project",
        "--project",
        "my-project_R_1_0_0_1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not part of the release my-project_R_1_0_0_1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn overrides_win_over_everything() {
    let v = show(&[
        "-p",
        "version=9.9.9",
        "-p",
        "package.configFiles=/etc/other.conf",
    ]);
    let p = &v["properties"];
    assert_eq!(p["version"]["value"], "9.9.9");
    assert_eq!(p["version"]["origin"]["kind"], "override");
    assert_eq!(p["package.configFiles"]["value"], "/etc/other.conf");
    // Overrides feed expansion too.
    assert!(
        p["web.greeting"]["value"]
            .as_str()
            .unwrap()
            .contains(" 9.9.9 ")
    );
    // And may pin a dependency's version through its .DEFAULT.
    let v = show(&[
        "-p",
        "my-project.clients.java_api.DEFAULT=java_api_R_5_2_2_1",
    ]);
    assert!(
        v["dependencies"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("-p")
    );
}

/// Runs `show CONF` on the sample tree, expects failure, returns stderr.
fn show_fails(configuration: &str, extra: &[&str]) -> String {
    let mut args = vec!["show", configuration, "--tree", "fixtures/trees/my-project"];
    args.extend_from_slice(extra);
    let out = packyard(&args);
    assert!(!out.status.success(), "{}", stdout(&out));
    stderr(&out)
}

#[test]
fn undefined_property_names_the_configuration() {
    let err = show_fails("web_server_R_2_5_1_1", &["-p", "web.greeting=hi ${x}"]);
    assert!(
        err.contains("web_server_R_2_5_1_1: undefined property `${x}` in `hi ${x}`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn unsatisfied_constraint_is_a_clear_error() {
    let err = show_fails(
        "cli_client_R_5_6_1_1",
        &[
            "-p",
            "my-project.clients.java_api.DEFAULT=java_api_R_5_1_0_1",
        ],
    );
    assert!(
        err.contains("`my-project.clients.java_api` must satisfy `>= 5.2.0, < 6`, but the release uses java_api_R_5_1_0_1 (5.1.0-1)"),
        "{err}"
    );
}

#[test]
fn unknown_configuration_and_unknown_key_errors() {
    let err = show_fails("web_server_R_9_9_9_9", &[]);
    assert!(
        err.contains("no configuration named `web_server_R_9_9_9_9`"),
        "{err}"
    );
    assert!(err.contains("did you mean"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("p");
    write(
        &tree.join("module.toml"),
        "[module]\nname = \"p\"\nkind = \"project\"\n\n[[configuration]]\nname = \"p_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\nchildern = []\n",
    );
    let out = packyard(&["show", "p_R_1_0_0_1", "--tree", tree.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("module.toml:9: unknown field `childern`"),
        "{err}"
    );
}

#[test]
fn fixture_paths_exist() {
    assert!(fixture("trees/my-project/module.toml").is_file());
    assert!(fixture("src/web_server/Makefile").is_file());
}

#[test]
fn demo_runs_on_the_fixture_release() {
    let out = packyard(&["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("policy: no violations"), "{text}");
    assert!(text.contains("release my-project_R_2_0_0_1"), "{text}");
}
