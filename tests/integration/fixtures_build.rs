//! The fixture release's commands really build: checkout, compile, install and test of
//! every component run in a throwaway workspace, and install fills `${prefix}`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{have_tool, packyard, stderr};

fn run(cmd: &str, dir: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fixture_release_builds_for_real() {
    if !have_tool("make", &["--version"]) || !have_tool("cc", &["--version"]) {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let out = packyard(&["demo", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    let latest = &demo["releases"][0];
    assert_eq!(latest["project"], "my-project_R_2_0_0_1");
    for c in latest["configurations"].as_array().unwrap() {
        let name = c["configuration"].as_str().unwrap();
        let shown = packyard(&[
            "show",
            name,
            "--tree",
            "fixtures/trees/my-project",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--json",
        ]);
        assert!(shown.status.success(), "{}", stderr(&shown));
        let r: Value = serde_json::from_slice(&shown.stdout).unwrap();
        let module = r["module"].as_str().unwrap();
        let prefix = r["properties"]["prefix"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        for cmd in r["commands"].as_array().unwrap() {
            let target = cmd["target"].as_str().unwrap();
            let text = cmd["command"].as_str().unwrap();
            let dir = if target == "checkout" {
                ws.path().to_path_buf()
            } else {
                ws.path().join(module)
            };
            if target == "checkout" {
                std::fs::create_dir_all(&dir).unwrap();
            }
            run(text, &dir);
            if target == "checkout" {
                assert!(
                    ws.path().join(module).is_dir(),
                    "{name}: checkout created no {module}/"
                );
            }
        }
        let staged = walk(Path::new(&prefix));
        assert!(
            !staged.is_empty(),
            "{name}: install staged nothing in {prefix}"
        );
    }
    // What the build produced carries the resolved properties.
    let greeting = std::fs::read_to_string(
        ws.path()
            .join("prefix/my-project.servers.web_server/usr/bin/web-server"),
    )
    .unwrap();
    assert!(
        greeting.contains("Hello from my-project.servers.web_server 2.5.1 (schema 3)"),
        "{greeting}"
    );
    let cli = ws
        .path()
        .join("prefix/my-project.clients.cli_client/usr/bin/mycli");
    let out = Command::new(&cli).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mycli 5.6.1 (api 5.2.2)"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
