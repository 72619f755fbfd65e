//! `packyard resolve`: the plan against a repository directory and against the same
//! packages served by `packyard serve`.

use std::process::Command;

use serde_json::Value;

use crate::repo::create_nightly;
use crate::serve::{Server, upload_packed};
use crate::support::{fixture, packed, stderr};

fn resolve(repo: &str, privileged: &str) -> (bool, Value) {
    let tree = fixture("trees/my-project");
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", "resolve", "--tree", tree.to_str().unwrap()])
        .args([
            "--configuration",
            "web_server_R_2_5_1_1",
            "--platform",
            "el9_x86_64",
        ])
        .args(["--repo", repo, "--privileged", privileged])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    (o.status.success(), v)
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["module"].as_str().unwrap().to_string(),
                d["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn resolve_plans_the_same_from_a_directory_and_from_a_server() {
    let dir = packed("el9_x86_64").to_str().unwrap().to_string();
    let (_, plan) = resolve(&dir, "yes");
    assert_eq!(
        plan["order"],
        serde_json::json!([
            "database_schemas_R_3_0_0_1",
            "database_server_R_2_0_1_1",
            "web_server_R_2_5_1_1"
        ]),
        "{plan}"
    );
    let by_module = actions(&plan);
    let get = |m: &str| {
        by_module
            .iter()
            .find(|(n, _)| n == m)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("{m}: {plan}"))
    };
    // Privileged: the RPMs are installed; unprivileged: the tarballs are downloaded.
    assert_eq!(get("my-project.servers.database_schemas"), "install");
    assert_eq!(get("my-project.servers.database_server"), "install");
    let (_, unprivileged) = resolve(&dir, "no");
    let un = actions(&unprivileged);
    assert!(
        un.contains(&(
            "my-project.servers.database_schemas".into(),
            "download".into()
        )),
        "{unprivileged}"
    );
    // The latest-wins choice is explained.
    let java = plan["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["module"] == "my-project.clients.java_api")
        .unwrap();
    assert!(
        java["reason"]
            .as_str()
            .unwrap()
            .contains("latest in the release wins"),
        "{java}"
    );
    assert!(
        java["reason"].as_str().unwrap().starts_with("runtime only"),
        "{java}"
    );

    // The same packages served: the same actions, sources are URLs.
    let data = tempfile::tempdir().unwrap();
    create_nightly(data.path(), &[]);
    let token =
        crate::repo::py_json(data.path(), &["token", "create", "--role", "builder"])["token"]
            .as_str()
            .unwrap()
            .to_string();
    let server = Server::start(data.path(), &[]);
    upload_packed(&server, "nightly", "el9_x86_64", &token);
    let (_, served) = resolve(&format!("{}/repos/nightly", server.url), "yes");
    assert_eq!(actions(&served), by_module);
    let src = served["dependencies"][0]["source"].as_str().unwrap();
    assert!(
        src.starts_with(&format!("{}/repos/nightly/my-project/", server.url)),
        "{served}"
    );
    server.stop();
}
