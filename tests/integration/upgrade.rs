//! Upgrades (issue 18): a data directory written by packyard 0.1
//! (`tests/fixtures/data-0.1.tar.gz`, made by `tests/fixtures/make-data-0.1.sh` with that
//! release's binary; what it holds is listed in `data-0.1.manifest`) opens with this
//! binary: its repositories, tokens, locks, build records and farm builds are all there,
//! every package file is served byte for byte, dnf and apt-get install from its indexes as
//! they were written, and it takes a publish.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::repo::{AptRoot, py_json, run_ok};
use crate::serve::Server;
use crate::support::{have_tool, root};

/// What `data-0.1.manifest` says the fixture holds.
#[derive(Default)]
pub struct Manifest {
    /// name → (role, secret)
    pub tokens: BTreeMap<String, (String, String)>,
    /// name → kind
    pub repos: BTreeMap<String, String>,
    /// configuration → sha256
    pub locks: BTreeMap<String, String>,
    /// (repository, tarball path)
    pub builds: Vec<(String, String)>,
    /// farm build id → state
    pub farm: BTreeMap<u64, String>,
    /// (repository, path, sha256)
    pub files: Vec<(String, String, String)>,
}

pub fn manifest() -> Manifest {
    let text = fs::read_to_string(root().join("tests/fixtures/data-0.1.manifest")).unwrap();
    let mut m = Manifest::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<String> = line.split_whitespace().map(String::from).collect();
        match f[0].as_str() {
            "token" => drop(m.tokens.insert(f[2].clone(), (f[1].clone(), f[3].clone()))),
            "repo" => drop(m.repos.insert(f[1].clone(), f[2].clone())),
            "lock" => drop(m.locks.insert(f[1].clone(), f[2].clone())),
            "build" => m.builds.push((f[1].clone(), f[2].clone())),
            "farm" => drop(m.farm.insert(f[1].parse().unwrap(), f[2].clone())),
            "file" => m.files.push((f[1].clone(), f[2].clone(), f[3].clone())),
            other => panic!("unknown manifest line {other}: {line}"),
        }
    }
    m
}

/// The data directory of packyard 0.1, unpacked at `d`.
pub fn unpack_fixture(d: &Path) {
    let tarball = fs::File::open(root().join("tests/fixtures/data-0.1.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    archive.set_preserve_permissions(true);
    archive.unpack(d).unwrap();
}

#[test]
fn a_data_directory_of_packyard_0_1_opens_serves_and_installs() {
    let m = manifest();
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    unpack_fixture(d);
    let secret = |name: &str| m.tokens[name].1.as_str();
    let token_id = |s: &str| s.split('_').nth(1).unwrap().to_string();

    // The command line: repositories and tokens as the old release left them.
    let repos: BTreeMap<String, String> = py_json(d, &["repo", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(repos, m.repos);
    assert_eq!(py_json(d, &["repo", "show", "ci"])["private"], true);
    let listed = py_json(d, &["token", "list"]);
    let listed: BTreeMap<String, &Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t))
        .collect();
    for (name, (role, s)) in &m.tokens {
        let t = listed[&token_id(s)];
        assert_eq!(
            (t["name"].as_str(), t["role"].as_str()),
            (Some(name.as_str()), Some(role.as_str()))
        );
        assert_eq!(t["revoked"].is_null(), name != "fixture-revoked", "{t}");
        assert_eq!(t["expires"].is_null(), name != "fixture-expiring", "{t}");
    }

    let server = Server::start(d, &[]);
    // Every package file, byte for byte (`ci` is private: a token reads it, nobody else).
    let builder = secret("fixture-builder");
    for (repo, path, sha) in &m.files {
        let url = format!("/repos/{repo}/{path}");
        let (status, body) = server.get_as(&url, Some(builder));
        assert_eq!(status, 200, "GET {url}");
        assert_eq!(&format!("{:x}", Sha256::digest(&body)), sha, "GET {url}");
    }
    let (repo, path, _) = m.files.iter().find(|f| f.0 == "ci").unwrap();
    assert_eq!(server.get_as(&format!("/repos/{repo}/{path}"), None).0, 401);

    // Tokens: each still has its role; the revoked one and a forged secret are refused.
    let tokens = |s: &str| server.call("get", "/api/v1/tokens", None, Some(s));
    let (status, all) = tokens(secret("fixture-admin"));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.as_array().unwrap().len(), m.tokens.len());
    for name in ["fixture-builder", "fixture-release", "fixture-expiring"] {
        assert_eq!(tokens(secret(name)).0, 403, "{name}");
    }
    assert_eq!(tokens(secret("fixture-revoked")).0, 401);
    let forged = format!(
        "pky_{}_{}",
        token_id(secret("fixture-admin")),
        "0".repeat(48)
    );
    assert_eq!(tokens(&forged).0, 401);

    // Locks, build records (still current: their artifacts unchanged), farm builds.
    let locks: BTreeMap<String, String> = server
        .get_json("/api/v1/locks")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["configuration"].as_str().unwrap().into(),
                l["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(locks, m.locks);
    assert!(!m.builds.is_empty());
    for (repo, tarball) in &m.builds {
        let (status, record) = server.call(
            "get",
            &format!("/api/v1/repos/{repo}/builds/{tarball}"),
            None,
            Some(builder),
        );
        assert_eq!(status, 200, "{tarball}: {record}");
        assert_eq!(
            (&record["result"], &record["current"]),
            (&"built".into(), &true.into()),
            "{record}"
        );
    }
    // The farm's builds went into `ci`, which is private: a token sees them, nobody else.
    assert_eq!(server.get_json("/api/v1/builds"), serde_json::json!([]));
    let (status, listed) = server.get_as("/api/v1/builds", Some(builder));
    assert_eq!(status, 200);
    let farm: BTreeMap<u64, String> = serde_json::from_slice::<serde_json::Value>(&listed)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_u64().unwrap(),
                b["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(farm, m.farm);

    // dnf and apt-get from the indexes the old release wrote (signed with its keys).
    let w = t.path();
    if have_tool("dnf", &["--version"]) {
        server.dnf_install(w, "nightly", &["my-database-schemas"]);
        let q = run_ok(
            Command::new("rpm")
                .arg("--root")
                .arg(w.join("root"))
                .args(["-q", "my-database-schemas"]),
        );
        assert!(q.starts_with("my-database-schemas-3.0.0-1"), "{q}");
    }
    let apt_install = |repo: &str, root: &Path| {
        let (status, sources) = server.get(&format!("/repos/{repo}/deb12.sources"));
        assert_eq!(status, 200);
        let apt = AptRoot::from_sources(root, &String::from_utf8(sources).unwrap());
        apt.update(&[]);
        apt.install(&["my-database-schemas"]);
    };
    let have_apt = have_tool("apt-get", &["--version"]);
    if have_apt {
        apt_install("releases", &w.join("apt-releases"));
    }

    // A publish on top: the built DEB from `ci` replaces the demo's in `nightly`, and
    // apt-get installs it through the indexes made now from the old records.
    let (_, key, _) = m
        .files
        .iter()
        .find(|(r, p, _)| {
            r == "ci"
                && p.starts_with("my-project/")
                && p.ends_with("my-database-schemas_3.0.0-1_deb12_amd64.deb")
        })
        .unwrap();
    let deb = fs::read(d.join("repos/ci").join(key)).unwrap();
    let (status, answer) = server.upload("nightly", key, &deb, Some(builder), &[]);
    assert_eq!(
        (status, &answer["action"]),
        (201, &"replaced".into()),
        "{answer}"
    );
    assert_eq!(
        server.get_as(&format!("/repos/nightly/{key}"), None),
        (200, deb)
    );
    if have_apt {
        let root = w.join("apt-nightly");
        apt_install("nightly", &root);
        // The built package (the demo's holds only a README).
        assert!(root.join("usr/share/my-project/schemas/VERSION").is_file());
    }
    assert!(server.stop().success());
}
