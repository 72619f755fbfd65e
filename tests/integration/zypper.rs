//! zypper (libzypp, as on SUSE) installing from packyard repositories into a throwaway
//! root: added by the YUM tree's base URL, by the served `.repo` file, and as a `file://`
//! tree, each with the key imported from where zypper finds it and the signed metadata
//! checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo::{create_nightly, ed25519_key, publish_packed, py_json};
use crate::serve::signed_nightly;
use crate::support::{have_tool, stderr, stdout};

/// The package every test installs: in the fixture release, needing nothing else.
const PACKAGE: &str = "my-database-schemas";

/// zypper on a root of its own. Its lock file and log go there too (libzypp otherwise
/// writes `/run/zypp.pid` and `/var/log/zypper.log` of the machine, whatever `--root`).
struct Zypper {
    dir: tempfile::TempDir,
}

impl Zypper {
    fn new() -> Zypper {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        Zypper { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `zypper --non-interactive --root ROOT args...`, which must succeed; its output.
    fn run(&self, args: &[&str]) -> String {
        let log = self.dir.path().join("zypper.log");
        let o = Command::new("zypper")
            .arg("--non-interactive")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("ZYPP_LOCKFILE_ROOT", self.dir.path())
            .env("ZYPP_LOGFILE", &log)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "zypper {args:?}: {}{}\nlog (last lines):\n{}",
            stdout(&o),
            stderr(&o),
            tail(&log, 30)
        );
        stdout(&o)
    }

    /// The repository zypper already knows, refreshed with signature checks (importing
    /// the key it finds), then the package installed; the package is in the root's rpm
    /// database, and so is the repository's key, `fingerprint`, and no other.
    fn refresh_and_install(&self, fingerprint: &str) {
        self.run(&["--gpg-auto-import-keys", "refresh"]);
        self.run(&["install", PACKAGE]);
        let q = |args: &[&str]| {
            let o = Command::new("rpm")
                .arg("--root")
                .arg(self.root())
                .args(args)
                .output()
                .unwrap();
            stdout(&o)
        };
        let installed = q(&["-q", PACKAGE]);
        assert!(
            installed.starts_with(&format!("{PACKAGE}-3.0.0")),
            "{installed}"
        );
        let keys = q(&["-q", "gpg-pubkey", "--qf", "%{VERSION}\n"]);
        let short = fingerprint[fingerprint.len() - 8..].to_lowercase();
        assert_eq!(keys.trim(), short, "imported keys: {keys}");
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn have_zypper() -> bool {
    // Even `zypper --version` writes the log, so the probe sends it nowhere.
    have_tool("env", &["ZYPP_LOGFILE=/dev/null", "zypper", "--version"])
        && have_tool("rpm", &["--version"])
}

/// A server with a signed `nightly` holding the fixture release for el9_x86_64, and the
/// fingerprint of its key.
fn served() -> (tempfile::TempDir, crate::serve::Server, String) {
    let data = tempfile::tempdir().unwrap();
    let (server, _) = signed_nightly(data.path(), &["el9_x86_64"]);
    let fingerprint = server.get_json("/api/v1/repos/nightly")["key"]
        .as_str()
        .unwrap()
        .to_string();
    (data, server, fingerprint)
}

#[test]
fn zypper_installs_from_a_repository_added_by_its_base_url() {
    if !have_zypper() {
        return;
    }
    let (_data, server, fingerprint) = served();
    let z = Zypper::new();
    // No key given: zypper takes the one beside repomd.xml (repodata/repomd.xml.key).
    let base = format!("{}/repos/nightly/yum/el9_x86_64/", server.url);
    z.run(&["addrepo", &base, "nightly"]);
    z.refresh_and_install(&fingerprint);
    assert!(server.stop().success());
}

#[test]
fn zypper_installs_from_a_repository_added_by_the_served_repo_file() {
    if !have_zypper() {
        return;
    }
    let (_data, server, fingerprint) = served();
    let z = Zypper::new();
    z.run(&[
        "addrepo",
        &format!("{}/repos/nightly/el9_x86_64.repo", server.url),
    ]);
    // zypper kept the file's settings: signed metadata checked, key from `gpgkey=`.
    let repos = z.run(&["repos", "--details"]);
    assert!(repos.contains("packyard-nightly-el9_x86_64"), "{repos}");
    let saved = fs::read_to_string(
        z.root()
            .join("etc/zypp/repos.d/packyard-nightly-el9_x86_64.repo"),
    )
    .unwrap();
    assert!(saved.contains("repo_gpgcheck=1"), "{saved}");
    // A volatile repository changes often: zypper refreshes it by itself.
    assert!(saved.contains("autorefresh=1"), "{saved}");
    assert!(
        saved.contains(&format!("gpgkey={}/repos/nightly/key.asc", server.url)),
        "{saved}"
    );
    z.refresh_and_install(&fingerprint);
    assert!(server.stop().success());
}

#[test]
fn zypper_installs_from_the_tree_on_disk_after_the_key_is_replaced() {
    if !have_zypper() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    ed25519_key(d);
    publish_packed(d, "el9_x86_64", &[]);
    let repo = crate::support::tree(d, "nightly");
    let repodata = repo.join("yum/el9_x86_64/repodata");
    let first = fs::read_to_string(repo.join("key.asc")).unwrap();
    assert_eq!(
        fs::read_to_string(repodata.join("repomd.xml.key")).unwrap(),
        first
    );
    // A new key re-signs the indexes; the key beside them follows.
    let info = py_json(
        d,
        &[
            "key",
            "generate",
            "--repo",
            "nightly",
            "--algorithm",
            "ed25519",
            "--force",
        ],
    );
    let repo = crate::support::tree(d, "nightly");
    let repodata = repo.join("yum/el9_x86_64/repodata");
    let second = fs::read_to_string(repo.join("key.asc")).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        fs::read_to_string(repodata.join("repomd.xml.key")).unwrap(),
        second
    );
    let z = Zypper::new();
    let url = format!("file://{}", repo.join("yum/el9_x86_64").display());
    z.run(&["addrepo", &url, "nightly"]);
    z.refresh_and_install(info["fingerprint"].as_str().unwrap());
}
