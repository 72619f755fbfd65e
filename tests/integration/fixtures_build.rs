//! The fixture release's commands really build: checkout, compile, install and test of
//! every component run in a throwaway workspace, and install fills `${prefix}`.

use std::path::Path;
use std::process::Command;

use crate::support::{build_release, have_tool};

#[test]
fn fixture_release_builds_for_real() {
    if !have_tool("make", &["--version"]) || !have_tool("cc", &["--version"]) {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    for b in build_release(ws.path(), "el9_x86_64") {
        let staged = walk(&b.prefix);
        assert!(
            !staged.is_empty(),
            "{}: install staged nothing in {}",
            b.configuration,
            b.prefix.display()
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
