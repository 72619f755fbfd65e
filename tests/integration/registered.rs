//! What goes into a registered repository: only registrations, checked by the server
//! against its own lock records and its own module tree (not against what the client
//! says), and third-party packages an admin puts in as externals.

use std::fs;

use crate::repo::py_json;
use crate::serve::{Server, token, tree_files};
use crate::support::{fixture, packed};

/// A registration's query: configuration, lock hash, and the name-version-release the
/// client says the package is.
fn registering(key: &str, conf: &str, lock: &str, nvr: (&str, &str, &str)) -> String {
    format!(
        "{key}?configuration={conf}&lock={lock}&name={}&version={}&release={}",
        nvr.0, nvr.1, nvr.2
    )
}

#[test]
fn registrations_are_checked_against_the_servers_own_locks_and_tree() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    py_json(d, &["repo", "create", "reg", "--kind", "registered"]);
    let tree = fixture("trees/my-project");
    let tree = tree.to_str().unwrap();
    let lock = py_json(d, &["lock", "web_server_R_2_5_1_1", "--tree", tree]);
    let sha = lock["sha256"].as_str().unwrap().to_string();
    let release = token(d, "release");
    let files = tree_files(packed("el9_x86_64"));
    let rpm_of = |module: &str| {
        files
            .iter()
            .find(|(k, _)| k.contains(module) && k.ends_with(".rpm"))
            .map(|(k, p)| (k.clone(), fs::read(p).unwrap()))
            .unwrap()
    };
    let (web_key, web) = rpm_of("web_server");
    let (cli_key, cli) = rpm_of("cli_client");
    let web_nvr = ("my-web-server", "2.5.1", "1");
    let cli_nvr = ("my-cli-client", "5.6.1", "1");

    // (path, body, query, status, part of the message); the first two on a server
    // without a tree (its locks alone decide), the last on one with `--tree`.
    let refused = [
        // A configuration this server holds no lock for.
        (
            &cli_key,
            &cli,
            registering(&cli_key, "cli_client_R_5_6_1_1", &sha, cli_nvr),
            409,
            "not locked",
        ),
        // A locked configuration, with a package of another one that says of itself
        // what it is: the lock says what the package must be, not the client.
        (
            &cli_key,
            &cli,
            registering(&cli_key, "web_server_R_2_5_1_1", &sha, cli_nvr),
            409,
            "locked as my-web-server-2.5.1-1",
        ),
        // The right package at a path that is not one of the configuration's
        // download-from paths in the server's tree.
        (
            &web_key,
            &web,
            registering(
                &format!("elsewhere/{web_key}"),
                "web_server_R_2_5_1_1",
                &sha,
                web_nvr,
            ),
            400,
            "download-from paths",
        ),
    ];
    let mut server = Server::start(d, &[]);
    for (i, (key, body, query, status, message)) in refused.into_iter().enumerate() {
        if i == 2 {
            server.stop();
            server = Server::start(d, &["--tree", tree]);
        }
        let (s, answer) = server.upload("reg", &query, body, Some(&release), &[]);
        assert_eq!(s, status, "{query}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{query}: {answer}"
        );
        assert_eq!(server.get(&format!("/repos/reg/{key}")).0, 404, "{query}");
    }
    assert_eq!(
        server.get_json("/api/v1/repos/reg/packages"),
        serde_json::json!([])
    );

    // The registration the server's lock and tree agree with.
    let query = registering(&web_key, "web_server_R_2_5_1_1", &sha, web_nvr);
    let (s, answer) = server.upload("reg", &query, &web, Some(&release), &[]);
    assert_eq!(s, 201, "{answer}");
    let listed = server.get_json("/api/v1/repos/reg/packages");
    assert_eq!(
        listed[0]["configuration"], "web_server_R_2_5_1_1",
        "{listed}"
    );
    assert!(listed[0].get("external").is_none(), "{listed}");
    server.stop();
}
