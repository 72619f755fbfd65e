//! `packyard serve`: the server on a loopback port, judged by dnf and apt-get through the
//! files it serves, by plain HTTP requests (raw ones for the path tricks), and by what is
//! on disk and in the store afterwards.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::repo::{AptRoot, check_consistent, create_nightly, ed25519_key, py, py_json, snapshot};
use crate::support::{have_tool, packed, stderr, stdout};

/// A running `packyard serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    agent: ureq::Agent,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_at(data, "127.0.0.1:0", extra)
    }

    /// A server listening on `listen` (a fixed port, to start it again at the same URL).
    pub fn start_at(data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = crate::support::packyard_at(data)
            .args(["serve", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let Some(url) = crate::support::listening_url(&mut child, Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!("the server did not start");
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Server {
            child: Some(child),
            url,
            agent,
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// dnf installs `packages` into `<w>/root` from repository `repo`'s el9 platform, set
    /// up by the `.repo` file this server gives.
    pub fn dnf_install(&self, w: &Path, repo: &str, packages: &[&str]) {
        let (status, repo_file) = self.get(&format!("/repos/{repo}/el9_x86_64.repo"));
        assert_eq!(status, 200);
        let reposdir = w.join("yum.repos.d");
        fs::create_dir_all(&reposdir).unwrap();
        fs::write(reposdir.join(format!("{repo}.repo")), repo_file).unwrap();
        let mut args = vec!["install"];
        args.extend(packages);
        crate::repo::dnf_run(crate::repo::dnf_command(w, &reposdir), &args);
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.get_as(path, None)
    }

    /// GET with a bearer token, if given.
    pub fn get_as(&self, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().unwrap();
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (status, body)
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// PUT `body` to the upload route; status and JSON answer.
    pub fn upload(
        &self,
        repo: &str,
        key: &str,
        body: &[u8],
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .agent
            .put(format!("{}/api/v1/repos/{repo}/files/{key}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut r = req.send(body).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A JSON API call (`get`, `post` with `body`, `delete`); status and JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let bearer = token.map(|t| format!("Bearer {t}"));
        let r = match method {
            "get" => self.agent.get(&url).header("Accept", "application/json"),
            "delete" => self.agent.delete(&url).header("Accept", "application/json"),
            _ => {
                let mut req = if method == "put" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(b) = &bearer {
                    req = req.header("Authorization", b);
                }
                let mut r = req.send_json(body.unwrap_or(json!({}))).unwrap();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                return (
                    r.status().as_u16(),
                    serde_json::from_str(&text).unwrap_or(Value::Null),
                );
            }
        };
        let r = match &bearer {
            Some(b) => r.header("Authorization", b),
            None => r,
        };
        let mut r = r.call().unwrap();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// POST JSON to an API route; status and JSON answer.
    pub fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        self.call("post", path, Some(body.clone()), token)
    }

    /// A request written byte for byte (no client normalises the path); status and body.
    pub fn raw(&self, method: &str, target: &[u8], extra: &str) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req = Vec::new();
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(target);
        req.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
        );
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A token with `role`, made with the command line before the server starts.
pub(crate) fn token(data: &Path, role: &str) -> String {
    py_json(data, &["token", "create", "--role", role])["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Locks the fixture release's web server configuration in `data`; the fixture tree.
pub(crate) fn lock_web_server(data: &Path) -> PathBuf {
    let tree = crate::support::fixture("trees/my-project");
    py_json(
        data,
        &[
            "lock",
            "web_server_R_2_5_1_1",
            "--tree",
            tree.to_str().unwrap(),
        ],
    );
    tree
}

/// Every file of a `pack --out` tree, by its download-from path.
pub(crate) fn tree_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, p);
            }
        }
    }
    out
}

/// Uploads the packed fixture release of `platform`; every answer must be 201.
pub(crate) fn upload_packed(server: &Server, repo: &str, platform: &'static str, token: &str) {
    for (key, path) in tree_files(packed(platform)) {
        let (status, body) = server.upload(repo, &key, &fs::read(path).unwrap(), Some(token), &[]);
        assert_eq!(status, 201, "{key}: {body}");
        assert_eq!(body["path"], key.as_str(), "{body}");
    }
}

/// A server on `d` with a signed `nightly` holding the packed fixture release of
/// `platforms` (uploaded with a builder token, which is returned).
pub(crate) fn signed_nightly(d: &Path, platforms: &[&'static str]) -> (Server, String) {
    create_nightly(d, &[]);
    ed25519_key(d);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    for p in platforms {
        upload_packed(&server, "nightly", p, &builder);
    }
    (server, builder)
}

#[test]
fn dnf_and_apt_install_through_the_served_setup_files() {
    let data = tempfile::tempdir().unwrap();
    let (server, _) = signed_nightly(data.path(), &["el9_x86_64", "deb12_amd64"]);

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // dnf: the .repo file as served, dropped into an empty repository directory.
    let (status, repo_file) = server.get("/repos/nightly/el9_x86_64.repo");
    assert_eq!(status, 200);
    let repo_file = String::from_utf8(repo_file).unwrap();
    assert!(repo_file.contains("repo_gpgcheck=1"), "{repo_file}");
    assert!(
        repo_file.contains(&format!("gpgkey={}/repos/nightly/key.asc", server.url)),
        "{repo_file}"
    );
    if have_tool("dnf", &["--version"]) {
        server.dnf_install(w, "nightly", &["my-database-schemas"]);
        let q = Command::new("rpm")
            .arg("--root")
            .arg(w.join("root"))
            .args(["-q", "my-database-schemas"])
            .output()
            .unwrap();
        assert!(
            stdout(&q).starts_with("my-database-schemas-3.0.0"),
            "{}",
            stdout(&q)
        );
    }

    // apt: the deb822 .sources file as served (key inline), then update and install.
    let (status, sources) = server.get("/repos/nightly/deb12.sources");
    assert_eq!(status, 200);
    let sources = String::from_utf8(sources).unwrap();
    assert!(
        sources.contains("Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{sources}"
    );
    if have_tool("apt-get", &["--version"]) {
        let root = w.join("aptroot");
        let apt = AptRoot::from_sources(&root, &sources);
        apt.update(&[]);
        assert_eq!(apt.available(), 6);
        apt.install(&["my-database-schemas"]);
    }
    assert!(server.stop().success());
}

#[test]
fn uploads_answer_201_401_403_and_409() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    py_json(d, &["repo", "create", "releases", "--kind", "registered"]);
    let builder = token(d, "builder");
    let release = token(d, "release");
    let admin = token(d, "admin");
    let server = Server::start(d, &[]);
    let files = tree_files(packed("el9_x86_64"));
    let (key, path) = files.iter().find(|(k, _)| k.ends_with(".rpm")).unwrap();
    let bytes = fs::read(path).unwrap();

    // No token, a made-up token, a revoked token: 401.
    let (s, body) = server.upload("nightly", key, &bytes, None, &[]);
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["hint"].as_str().unwrap().contains("token create"),
        "{body}"
    );
    let (s, _) = server.upload("nightly", key, &bytes, Some("pky_0123456789ab_00"), &[]);
    assert_eq!(s, 401);
    // A builder may not write a registered repository, nor create repositories.
    let (s, body) = server.upload("releases", key, &bytes, Some(&builder), &[]);
    assert_eq!(s, 403, "{body}");
    let (s, _) = server.post(
        "/api/v1/repos",
        &json!({"name": "more", "kind": "volatile"}),
        Some(&builder),
    );
    assert_eq!(s, 403);
    assert!(!crate::support::tree(d, "releases").join(key).exists());

    // The right roles: 201, with the checksum checked when given.
    let sha = {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(&bytes))
    };
    let (s, body) = server.upload(
        "nightly",
        key,
        &bytes,
        Some(&builder),
        &[("X-Checksum-Sha256", &sha)],
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["action"], "added");
    assert_eq!(body["sha256"], sha.as_str());
    // The same bytes again: nothing to do, 200.
    let (s, body) = server.upload("nightly", key, &bytes, Some(&builder), &[]);
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["action"], "unchanged");
    // A registered repository takes registrations only: a plain upload is 422, and
    // leaves nothing; a third-party package goes in as an external, by an admin.
    let (s, body) = server.upload("releases", key, &bytes, Some(&release), &[]);
    assert_eq!(
        (s, body["code"].as_str()),
        (422, Some("not_registered")),
        "{body}"
    );
    assert!(
        body["hint"].as_str().unwrap().contains("register"),
        "{body}"
    );
    assert!(!crate::support::tree(d, "releases").join(key).exists());
    let external = format!("{key}?external=true");
    let (s, body) = server.upload("releases", &external, &bytes, Some(&release), &[]);
    assert_eq!(s, 403, "{body}");
    let (s, body) = server.upload("releases", &external, &bytes, Some(&admin), &[]);
    assert_eq!(s, 201, "{body}");
    let listed = server.get_json("/api/v1/repos/releases/packages");
    assert_eq!(listed[0]["external"], true, "{listed}");
    let (s, _) = server.post(
        "/api/v1/repos",
        &json!({"name": "more", "kind": "volatile"}),
        Some(&admin),
    );
    assert_eq!(s, 201);

    // Other bytes under a registered path: 409 naming both checksums; nothing changes.
    let other = tree_files(packed("el9_x86_64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".rpm") && k != key)
        .map(|(_, p)| fs::read(p).unwrap())
        .unwrap();
    let before = snapshot(&crate::support::tree(d, "releases"));
    let (s, body) = server.upload("releases", &external, &other, Some(&admin), &[]);
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "overwrite");
    assert!(body["message"].as_str().unwrap().contains(&sha), "{body}");
    assert_eq!(snapshot(&crate::support::tree(d, "releases")), before);
    assert_eq!(
        fs::read(crate::support::tree(d, "releases").join(key)).unwrap(),
        bytes
    );

    // An admin revokes the builder's token: 401 from then on.
    let id = &builder[4..16];
    let mut r = ureq::delete(format!("{}/api/v1/tokens/{id}", server.url))
        .header("Authorization", format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    let (s, body) = server.upload("nightly", key, &bytes, Some(&builder), &[]);
    assert_eq!(s, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // A token past its expiry: 401 `expired_token`, naming when, and how to get another.
    let made = server.post(
        "/api/v1/tokens",
        &json!({"role": "builder", "expires": "2s"}),
        Some(&admin),
    );
    assert_eq!(made.0, 201, "{}", made.1);
    let short = made.1["token"].as_str().unwrap().to_string();
    let (s, body) = server.upload("nightly", key, &bytes, Some(&short), &[]);
    assert_eq!(s, 200, "still valid: {body}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, body) = server.upload("nightly", key, &bytes, Some(&short), &[]);
    assert_eq!(
        (s, body["code"].as_str()),
        (401, Some("expired_token")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("expired at"),
        "{body}"
    );
    assert!(
        body["hint"].as_str().unwrap().contains("--expires"),
        "{body}"
    );
    server.stop();
}

/// `DELETE /api/v1/repos/{repo}`: admin only, volatile only; the name can be used again at
/// once by the same server, and the deleted repository leaves `/metrics`.
#[test]
fn an_admin_deletes_a_volatile_repository_through_the_server() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    py_json(d, &["repo", "create", "scratch", "--kind", "volatile"]);
    py_json(d, &["repo", "create", "releases", "--kind", "registered"]);
    let builder = token(d, "builder");
    let admin = token(d, "admin");
    let server = Server::start(d, &[]);
    let files = tree_files(packed("el9_x86_64"));
    let (key, path) = files.iter().find(|(k, _)| k.ends_with(".rpm")).unwrap();
    let bytes = fs::read(path).unwrap();
    let (s, body) = server.upload("scratch", key, &bytes, Some(&builder), &[]);
    assert_eq!(s, 201, "{body}");
    let delete = |repo: &str, tok: &str| -> (u16, Value) {
        let r = ureq::delete(format!("{}/api/v1/repos/{repo}", server.url))
            .header("Authorization", format!("Bearer {tok}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let body = r.into_body().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    };
    assert_eq!(delete("scratch", &builder).0, 403);
    let (s, body) = delete("releases", &admin);
    assert_eq!(
        (s, body["code"].as_str()),
        (409, Some("permanent")),
        "{body}"
    );
    assert_eq!(delete("nope", &admin).0, 404);
    // Served before the delete: what the server kept to serve it must not outlive it.
    assert_eq!(server.get(&format!("/repos/scratch/{key}")).1, bytes);
    let (s, body) = server.get("/metrics");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("repo=\"scratch\""));
    let (s, body) = delete("scratch", &admin);
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["packages"], 1);
    assert_eq!(server.get(&format!("/repos/scratch/{key}")).0, 404);
    assert_eq!(server.get("/api/v1/repos/scratch").0, 404);
    let (_, body) = server.get("/metrics");
    assert!(!String::from_utf8_lossy(&body).contains("repo=\"scratch\""));
    // Created again, private this time: the same server stores into it from scratch,
    // and serves it only to a caller with a token.
    let (s, body) = server.post(
        "/api/v1/repos",
        &json!({"name": "scratch", "kind": "volatile", "private": true}),
        Some(&admin),
    );
    assert_eq!(s, 201, "{body}");
    let (s, body) = server.upload("scratch", key, &bytes, Some(&builder), &[]);
    assert_eq!((s, body["action"].as_str()), (201, Some("added")), "{body}");
    assert_eq!(server.get(&format!("/repos/scratch/{key}")).0, 401);
    let mut r = ureq::get(format!("{}/repos/scratch/{key}", server.url))
        .header("Authorization", format!("Bearer {builder}"))
        .call()
        .unwrap();
    assert_eq!(
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap(),
        bytes
    );
    assert!(server.stop().success());
}

/// What a failed upload must leave as it was: the repository tree, the store's records,
/// and the spool directory (empty).
fn state_of(server: &Server, d: &Path) -> (BTreeMap<String, String>, Value, usize) {
    (
        snapshot(&crate::support::tree(d, "nightly")),
        server.get_json("/api/v1/repos/nightly/packages"),
        fs::read_dir(d.join("uploads")).unwrap().count(),
    )
}

#[test]
fn bad_uploads_are_refused_and_leave_no_trace() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let config = crate::support::config_file(d, "max_upload_bytes = 200000\n");
    let server = Server::start(d, &["--config", config.to_str().unwrap()]);
    upload_packed(&server, "nightly", "deb12_amd64", &builder);
    let before = state_of(&server, d);
    assert_eq!(before.2, 0);
    let good = tree_files(packed("el9_x86_64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".rpm"))
        .unwrap();
    let good_bytes = fs::read(&good.1).unwrap();
    let mut broken = good_bytes.clone();
    let n = broken.len();
    broken[n - 10] ^= 0xff;

    // (path, body, headers, status, part of the message)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "p/1.0/el9_x86_64/junk-1.0-1.x86_64.rpm",
            b"not an rpm".to_vec(),
            vec![],
            400,
            "not a valid RPM",
        ),
        (&good.0, broken, vec![], 400, "digests do not match"),
        (
            "p/1.0/deb12_amd64/junk_1.0-1_amd64.deb",
            b"!<arch>\nnonsense".to_vec(),
            vec![],
            400,
            "not a valid DEB",
        ),
        (
            "p/1.0/deb12_amd64/junk-1.0-1.tar.gz",
            vec![0x1f, 0x8b, 8, 0, 1, 2],
            vec![],
            400,
            "not a valid .tar.gz",
        ),
        (
            "p/1.0/el9_x86_64/readme.txt",
            b"text".to_vec(),
            vec![],
            400,
            "must end in .rpm",
        ),
        (
            &good.0,
            good_bytes.clone(),
            vec![(
                "X-Checksum-Sha256",
                "0000000000000000000000000000000000000000000000000000000000000000",
            )],
            400,
            "X-Checksum-Sha256 says 0000",
        ),
        (
            &good.0,
            good_bytes.clone(),
            vec![("X-Checksum-Sha256", "xyz")],
            400,
            "64 hexadecimal",
        ),
        (
            "p/1.0/el9_x86_64/big-1.0-1.x86_64.rpm",
            vec![0u8; 300_000],
            vec![],
            413,
            "limit of 200000 bytes",
        ),
    ];
    for (key, body, headers, want, message) in cases {
        let (s, answer) = server.upload("nightly", key, &body, Some(&builder), &headers);
        assert_eq!(s, want, "{key}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{key}: {answer}"
        );
        assert!(answer["hint"].is_string(), "{answer}");
        assert_eq!(state_of(&server, d), before, "{key} left a trace");
    }
    // A body larger than the limit that does not say so up front (chunked) is cut off.
    let (s, _) = server.raw(
        "PUT",
        b"/api/v1/repos/nightly/files/p/1.0/el9_x86_64/big-1.0-1.x86_64.rpm",
        &format!(
            "Authorization: Bearer {builder}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n",
            250_000,
            "x".repeat(250_000)
        ),
    );
    assert_eq!(s, 413);
    assert_eq!(state_of(&server, d), before);
    server.stop();
}

#[test]
fn path_tricks_never_reach_outside_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    fs::write(d.join("keys-not-served"), "TOP-SECRET").unwrap();
    let server = Server::start(d, &[]);
    let reads: [&[u8]; 20] = [
        b"/repos/nightly/../../secret.txt",
        b"/repos/nightly/%2e%2e/%2e%2e/secret.txt",
        b"/repos/nightly/%2E%2E%2F%2E%2E%2Fsecret.txt",
        b"/repos/nightly/..%2f..%2fsecret.txt",
        b"/repos/nightly//etc/passwd",
        b"/repos/nightly/%2fetc%2fpasswd",
        b"/repos/..%2f..%2fsecret.txt/x",
        b"/repos/%2e%2e/secret.txt",
        b"/repos/nightly/key.asc%00",
        b"/repos/nightly/.%2e/keys-not-served",
        b"/api/v1/repos/nightly/packages/..%2f..%2f..%2fsecret.txt",
        b"/r/nightly/f/../../../secret.txt",
        b"/r/nightly/f/..%2f..%2f..%2fsecret.txt",
        b"/r/..%2f..%2fsecret.txt/p/x",
        b"/r/nightly/p/..%2f..%2f..%2fsecret.txt",
        b"/api/v1/repos/..%2f..%2fsecret.txt",
        b"/api/v1/repos/%2e%2e/packages",
        b"/api/v1/locks/..%2f..%2fsecret.txt",
        b"/repos/nightly/..%2f..%2fsecret.txt.repo",
        b"/repos/nightly/%00.sources",
    ];
    for target in reads {
        let (s, body) = server.raw("GET", target, "");
        assert!(
            (400..500).contains(&s),
            "{}: {s}",
            String::from_utf8_lossy(target)
        );
        assert!(
            !body.contains("TOP-SECRET"),
            "{}",
            String::from_utf8_lossy(target)
        );
        assert!(
            !body.contains("root:x:0"),
            "{}",
            String::from_utf8_lossy(target)
        );
    }
    let rpm = tree_files(packed("el9_x86_64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".rpm"))
        .map(|(_, p)| fs::read(p).unwrap())
        .unwrap();
    let auth = format!(
        "Authorization: Bearer {builder}\r\nContent-Length: {}\r\n",
        rpm.len()
    );
    let writes: [&[u8]; 6] = [
        b"/api/v1/repos/nightly/files/../../../escaped.rpm",
        b"/api/v1/repos/nightly/files/%2e%2e/%2e%2e/%2e%2e/escaped.rpm",
        b"/api/v1/repos/nightly/files/..%2f..%2f..%2fescaped.rpm",
        b"/api/v1/repos/nightly/files/%2ftmp%2fescaped.rpm",
        b"/api/v1/repos/nightly/files//tmp/escaped.rpm",
        b"/api/v1/repos/nightly/files/a/%00/escaped.rpm",
    ];
    for target in writes {
        let addr = server.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req = b"PUT ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n").as_bytes(),
        );
        req.extend_from_slice(&rpm);
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(
            (400..500).contains(&status),
            "{}: {text}",
            String::from_utf8_lossy(target)
        );
    }
    // Nothing named escaped.rpm anywhere under the work directory or /tmp.
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap().flatten() {
            assert_ne!(e.file_name(), "escaped.rpm", "{}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(!Path::new("/tmp/escaped.rpm").exists());
    assert_eq!(server.get_json("/api/v1/repos/nightly/packages"), json!([]));
    server.stop();
}

#[test]
fn files_are_served_with_ranges_etags_and_types() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let (server, _) = signed_nightly(d, &["deb12_amd64"]);
    let listed =
        server.get_json("/api/v1/repos/nightly/packages?kind=deb&name=my-database-schemas");
    let url = listed[0]["url"].as_str().unwrap();
    let on_disk =
        fs::read(crate::support::tree(d, "nightly").join(listed[0]["path"].as_str().unwrap()))
            .unwrap();

    let (s, head) = server.raw("GET", url.as_bytes(), "");
    assert_eq!(s, 200);
    assert!(
        head.contains("content-type: application/vnd.debian.binary-package"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}", on_disk.len())),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    let modified = head
        .lines()
        .find_map(|l| l.strip_prefix("last-modified: "))
        .unwrap()
        .trim()
        .to_string();
    let (s, _) = server.raw("GET", url.as_bytes(), &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(s, 304);
    let (s, _) = server.raw(
        "GET",
        url.as_bytes(),
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(s, 304);
    let (s, part) = server.raw("GET", url.as_bytes(), "Range: bytes=0-7\r\n");
    assert_eq!(s, 206);
    assert!(part.ends_with("!<arch>\n"), "{part}");
    let (s, head) = server.raw("HEAD", url.as_bytes(), "");
    assert_eq!(s, 200);
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    let (s, body) = server.get(url);
    assert_eq!((s, body), (200, on_disk));

    for (path, kind) in [
        ("/repos/nightly/key.asc", "application/pgp-keys"),
        ("/repos/nightly/apt/dists/deb12/InRelease", "text/plain"),
        (
            "/repos/nightly/apt/dists/deb12/main/binary-amd64/Packages.xz",
            "application/x-xz",
        ),
    ] {
        let (s, head) = server.raw("HEAD", path.as_bytes(), "");
        assert_eq!(s, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
    }
    // Directories are not listed; unknown things are 404 with a JSON reason.
    for path in [
        "/repos/nightly/apt/",
        "/repos/nightly/apt",
        "/repos/nightly/yum/el9_x86_64/repodata/",
    ] {
        assert_eq!(server.get(path).0, 404, "{path}");
    }
    let (s, body) = server.get("/repos/nope/key.asc");
    assert_eq!(s, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "no_such_repo");
    assert!(v["hint"].is_string());
    server.stop();
}

/// 100 RPMs and 100 DEBs of distinct names, packed with the library from one tiny prefix.
fn many_packages(dir: &Path) -> Vec<(String, Vec<u8>)> {
    use packyard::config::{ResolveOptions, Tree};
    use packyard::layout::Layout;
    let tree_dir = dir.join("tree");
    crate::support::write(
        &tree_dir.join("module.toml"),
        "[module]\nname = \"proj\"\nkind = \"project\"\ndescription = \"Many\"\nlicense = \"MIT\"\nvendor = \"Tests\"\n\
         [[configuration]]\nname = \"proj_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\nchildren = [\"c_R_1_0_0_1\"]\n\
         [configuration.properties]\n\"package.maintainer\" = \"Tests <tests@example.org>\"\n",
    );
    crate::support::write(
        &tree_dir.join("c/module.toml"),
        "[module]\nname = \"proj.c\"\nkind = \"component\"\ndescription = \"One of many\"\npackage_name = \"many\"\n\
         [[configuration]]\nname = \"c_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\ntag = \"v1\"\n\
         [configuration.commands]\ncheckout = \"true\"\n",
    );
    let prefix = dir.join("prefix");
    crate::support::write(&prefix.join("usr/share/many/README"), "many\n");
    let tree = Tree::load(&tree_dir).unwrap();
    let layout = Layout::builtin();
    let out = dir.join("out");
    for i in 0..100 {
        for platform in ["el9_x86_64", "deb12_amd64"] {
            let request = packyard::pack::PackRequest {
                tree: &tree,
                layout: &layout,
                configuration: "c_R_1_0_0_1",
                options: ResolveOptions {
                    platform: Some(platform.into()),
                    overrides: vec![("packageName".into(), format!("many-{i:03}"))],
                    ..ResolveOptions::default()
                },
                prefix: &prefix,
                out: &out,
                source_date_epoch: Some(1_700_000_000),
                formats: &[if platform.starts_with("el") {
                    packyard::pack::ArtifactFormat::Rpm
                } else {
                    packyard::pack::ArtifactFormat::Deb
                }],
            };
            packyard::pack::pack(&request, &packyard::progress::Quiet).unwrap();
        }
    }
    tree_files(&out)
        .into_iter()
        .map(|(k, p)| (k, fs::read(p).unwrap()))
        .collect()
}

#[test]
fn sixteen_clients_upload_two_hundred_packages_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    ed25519_key(d);
    let builder = token(d, "builder");
    let packages = many_packages(dir.path());
    assert_eq!(packages.len(), 200);
    let server = Server::start(d, &[]);
    let batches = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for client in 0..16 {
            let (server, packages, builder, batches) = (&server, &packages, &builder, &batches);
            s.spawn(move || {
                for (key, bytes) in packages.iter().skip(client).step_by(16) {
                    let (status, body) = server.upload("nightly", key, bytes, Some(builder), &[]);
                    assert_eq!(status, 201, "{key}: {body}");
                    batches
                        .lock()
                        .unwrap()
                        .push(body["batch"].as_u64().unwrap());
                }
            });
        }
    });
    let listed = server.get_json("/api/v1/repos/nightly/packages");
    assert_eq!(listed.as_array().unwrap().len(), 200);
    let batches = batches.into_inner().unwrap();
    // Uploads that arrived during a publish went into the next one together.
    let largest = *batches.iter().max().unwrap();
    assert!(
        largest > 1,
        "no two of 200 concurrent uploads were published together"
    );
    assert!(server.stop().success());
    // Both indexes name all of them (100 each), and each entry matches its file.
    assert_eq!(check_consistent(d, "nightly"), 200);
}

#[test]
fn a_restart_keeps_packages_tokens_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let admin = token(d, "admin");
    lock_web_server(d);
    let server = Server::start(d, &[]);
    if crate::support::on_postgres_s3() {
        // A shared store is opened by the command line while servers run.
        let list = py_json(d, &["repo", "list"]);
        assert_eq!(list[0]["name"], "nightly", "{list}");
    } else {
        held_by_the_server(d, &server);
    }
    restarted_keeps_everything(d, server, &admin);
}

/// The command line says where the embedded data directory went, instead of waiting.
fn held_by_the_server(d: &Path, server: &Server) {
    let start = Instant::now();
    let o = py(d, &["repo", "list"]);
    assert!(!o.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = stderr(&o);
    assert!(
        err.contains("in use by `packyard serve`") && err.contains(&server.url),
        "{err}"
    );
    assert!(err.contains("--server"), "{err}");
}

/// Packages, tokens and locks outlive a restart of the server.
fn restarted_keeps_everything(d: &Path, server: Server, admin: &str) {
    upload_packed(&server, "nightly", "el9_x86_64", admin);
    let (s, made) = server.post(
        "/api/v1/tokens",
        &json!({"role": "builder", "name": "ci"}),
        Some(admin),
    );
    assert_eq!(s, 201, "{made}");
    let builder = made["token"].as_str().unwrap().to_string();
    let before = server.get_json("/api/v1/repos/nightly/packages");
    // Each component's RPM and tarball.
    assert_eq!(before.as_array().unwrap().len(), 12);
    assert!(server.stop().success(), "SIGTERM ends the server cleanly");
    assert!(!d.join("server.json").exists());

    let server = Server::start(d, &[]);
    assert_eq!(server.get_json("/api/v1/repos/nightly/packages"), before);
    let locks = server.get_json("/api/v1/locks");
    assert_eq!(locks[0]["configuration"], "web_server_R_2_5_1_1", "{locks}");
    // The token made through the API before the restart still works.
    let rpm = tree_files(packed("el9_x86_64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".rpm"))
        .unwrap();
    let (s, body) = server.upload(
        "nightly",
        &rpm.0,
        &fs::read(&rpm.1).unwrap(),
        Some(&builder),
        &[],
    );
    assert_eq!(s, 200, "{body}");
    server.stop();
    // And the command line has the data directory back.
    assert_eq!(py_json(d, &["repo", "show", "nightly"])["packages"], 12);
}

#[test]
fn health_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    assert_eq!(server.get("/healthz"), (200, b"ok\n".to_vec()));
    upload_packed(&server, "nightly", "deb12_amd64", &builder);
    server.get("/repos/nightly/apt/dists/deb12/Release");
    server.get("/repos/nightly/nope");
    let (s, text) = server.get("/metrics");
    assert_eq!(s, 200);
    let text = String::from_utf8(text).unwrap();
    for want in [
        "packyard_http_requests_total{route=\"/repos/{repo}/{tail:.*}\",method=\"GET\",status=\"200\"} 1",
        "packyard_http_requests_total{route=\"/repos/{repo}/{tail:.*}\",method=\"GET\",status=\"404\"} 1",
        "packyard_uploads_total{result=\"added\"} 12",
        "packyard_publish_duration_seconds_count 12",
        "packyard_repository_packages{repo=\"nightly\"} 12",
        "packyard_http_response_bytes_total{route=\"/repos/{repo}/{tail:.*}\"}",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    server.stop();
}

#[test]
fn private_repositories_need_a_token_to_read() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    py_json(
        d,
        &[
            "repo",
            "create",
            "secret",
            "--kind",
            "volatile",
            "--private",
        ],
    );
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    upload_packed(&server, "secret", "deb12_amd64", &builder);
    let (s, _) = server.get("/repos/secret/apt/dists/deb12/Release");
    assert_eq!(s, 401);
    let (s, _) = server.get("/api/v1/repos/secret/packages");
    assert_eq!(s, 401);
    let names: Vec<_> = server
        .get_json("/api/v1/repos")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["nightly"]);
    let (s, _) = server.raw(
        "GET",
        b"/repos/secret/apt/dists/deb12/Release",
        &format!("Authorization: Bearer {builder}\r\n"),
    );
    assert_eq!(s, 200);
    server.stop();
}

/// `packyard --server URL --token T ...`, which must succeed; its `--json` output.
pub(crate) fn remote(url: &str, token: &str, args: &[&str]) -> Value {
    let o = remote_run(url, token, args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

pub(crate) fn remote_run(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_packyard"))
        // No data directory of its own: everything goes to the server.
        .arg("--data")
        .arg(data.path().join("none"))
        .args(["--json", "--server", url, "--token", token])
        .args(args)
        .current_dir(crate::support::root())
        .output()
        .unwrap()
}

#[test]
fn the_command_line_works_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let admin = token(d, "admin");
    let server = Server::start(d, &[]);
    let url = server.url.clone();

    remote(
        &url,
        &admin,
        &["repo", "create", "reg", "--kind", "registered"],
    );
    let key = remote(
        &url,
        &admin,
        &[
            "key",
            "generate",
            "--repo",
            "nightly",
            "--algorithm",
            "ed25519",
        ],
    );
    assert_eq!(key["repo"], "nightly");
    // A secret key made elsewhere is imported through the server, once.
    let elsewhere = dir.path().join("elsewhere");
    // An embedded data directory on any run: its key is an unprotected file.
    crate::support::write(&elsewhere.join("packyard.toml"), "");
    py_json(&elsewhere, &["repo", "create", "tmp", "--kind", "volatile"]);
    let made = py_json(
        &elsewhere,
        &["key", "generate", "--repo", "tmp", "--algorithm", "ed25519"],
    );
    let secret = dir.path().join("tmp.asc");
    let armored = crate::support::open_store(&elsewhere)
        .secret_key("tmp")
        .unwrap()
        .unwrap();
    fs::write(&secret, armored).unwrap();
    let import = ["key", "import", "--repo", "reg", secret.to_str().unwrap()];
    let imported = remote(&url, &admin, &import);
    assert_eq!(imported["fingerprint"], made["fingerprint"], "{imported}");
    assert_eq!(server.get("/repos/reg/key.asc").0, 200);
    let o = remote_run(&url, &admin, &import);
    assert!(!o.status.success());
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("already has a key"), "{said}");
    let report = remote(
        &url,
        &admin,
        &[
            "publish",
            "--repo",
            "nightly",
            packed("el9_x86_64").to_str().unwrap(),
        ],
    );
    assert_eq!(report["files"].as_array().unwrap().len(), 12, "{report}");
    assert!(
        report["indexes"]
            .as_array()
            .unwrap()
            .contains(&json!("yum/el9_x86_64")),
        "{report}"
    );
    let shown = remote(&url, &admin, &["repo", "show", "nightly"]);
    assert_eq!(shown["packages"], 12);
    assert!(shown["key"].is_string());

    // A loose file: the server places it by its header.
    let loose_dir = dir.path().join("loose");
    fs::create_dir_all(&loose_dir).unwrap();
    let (_, rpm) = tree_files(packed("deb12_amd64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".deb"))
        .unwrap();
    let loose = loose_dir.join(rpm.file_name().unwrap());
    fs::copy(&rpm, &loose).unwrap();
    let report = remote(
        &url,
        &admin,
        &[
            "publish",
            "--repo",
            "nightly",
            "--platform",
            "deb12_amd64",
            loose.to_str().unwrap(),
        ],
    );
    let path = report["files"][0]["path"].as_str().unwrap();
    assert!(
        path.ends_with(&format!(
            "/deb12_amd64/{}",
            rpm.file_name().unwrap().to_str().unwrap()
        )),
        "{report}"
    );

    // Lock through the server; pack (which reads locks) still works while the server
    // holds the data directory, and refuses once the entry changes.
    let tree = dir.path().join("tree");
    crate::repo::copy_tree(&crate::support::fixture("trees/my-project"), &tree);
    let t = tree.to_str().unwrap();
    let locked = remote(&url, &admin, &["lock", "web_server_R_2_5_1_1", "--tree", t]);
    assert_eq!(locked["new"], true);
    let web = crate::support::release("el9_x86_64")
        .iter()
        .find(|b| b.configuration == "web_server_R_2_5_1_1")
        .unwrap();
    let out = dir.path().join("out");
    let pack = |tree: &str| {
        crate::support::packyard_at(d)
            .args([
                "pack",
                "--tree",
                tree,
                "--configuration",
                "web_server_R_2_5_1_1",
            ])
            .args(["--platform", "el9_x86_64", "--prefix"])
            .arg(&web.prefix)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = pack(t);
    assert!(o.status.success(), "{}", stderr(&o));
    let registered = remote(
        &url,
        &admin,
        &[
            "register",
            "web_server_R_2_5_1_1",
            "--tree",
            t,
            "--repo",
            "reg",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        registered["files"].as_array().unwrap().len(),
        2,
        "{registered}"
    );
    let listed = server.get_json("/api/v1/repos/reg/packages");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["configuration"] == "web_server_R_2_5_1_1"),
        "{listed}"
    );
    // Registering into a volatile repository, or a configuration that is not locked, fails.
    for (conf, repo, why) in [
        ("web_server_R_2_5_1_1", "nightly", "volatile"),
        ("cli_client_R_5_6_1_1", "reg", "not locked"),
    ] {
        let o = remote_run(
            &url,
            &admin,
            &[
                "register",
                conf,
                "--tree",
                t,
                "--repo",
                repo,
                out.to_str().unwrap(),
            ],
        );
        assert!(!o.status.success());
        assert!(stdout(&o).contains(why), "{}", stdout(&o));
    }

    let module = tree.join("servers/web_server/module.toml");
    let text = fs::read_to_string(&module).unwrap();
    fs::write(
        &module,
        text.replacen("greets with the schema version", "greets louder", 1),
    )
    .unwrap();
    let o = pack(t);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is locked and its entry changed"),
        "{}",
        stderr(&o)
    );

    let tokens = remote(&url, &admin, &["token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    // A wrong token is refused with the server's reason and hint.
    let o = remote_run(
        &url,
        "pky_000000000000_00",
        &["repo", "create", "x", "--kind", "volatile"],
    );
    assert!(!o.status.success());
    let err: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(err["error"].as_str().unwrap().contains("HTTP 401"), "{err}");
    assert!(
        err["hint"].as_str().unwrap().contains("token create"),
        "{err}"
    );
    server.stop();
}

/// A headless Chromium driven through chromedriver's WebDriver protocol.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    fn start(downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let start = Instant::now();
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = downloads.with_file_name("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1200,900",
                         format!("--user-data-dir={}", profile.display())],
                "prefs": {"download.default_directory": downloads.to_str().unwrap(),
                          "download.prompt_for_download": false}
            }
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            agent,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap().to_string();
        // Headless Chromium downloads only when told where to.
        b.call(
            "POST",
            "/chromium/send_command",
            Some(json!({"cmd": "Page.setDownloadBehavior",
                        "params": {"behavior": "allow", "downloadPath": downloads.to_str().unwrap()}})),
        );
        b
    }

    /// A WebDriver command on the session (`path` starting with `/`); its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if self.session.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let r = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut r = r.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(status, 200, "{method} {path}: {v}");
        v.get("value").cloned().unwrap_or(Value::Null)
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page source once `ready` holds: a click that navigates returns
    /// before the next page has loaded, so reading the source at once races.
    fn source_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let page = self.source();
            if ready(&page) {
                return page;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{what}: {page}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn browse_pages_in_chromium_find_and_download_a_package() {
    if !have_tool("chromedriver", &["--version"]) || !have_tool("chromium", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    upload_packed(&server, "nightly", "el9_x86_64", &builder);
    let downloads = dir.path().join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads);

    // The front page lists the repository; following it shows every package.
    b.go(&format!("{}/", server.url));
    b.source_when("front page", |p| p.contains("Repositories"));
    b.click("a[href='/r/nightly']");
    b.source_when("repository page", |p| {
        p.contains("my-web-server") && p.contains("my-database-schemas")
    });
    // Search narrows the list.
    b.type_into("input[name=q]", "schemas");
    b.click("button[type=submit]");
    b.source_when("search did not filter", |p| {
        p.contains("value=\"schemas\"")
            && p.contains("my-database-schemas")
            && !p.contains("my-web-server")
    });
    // The package, its RPM, and the download link.
    b.click("a[href='/r/nightly/p/my-database-schemas']");
    b.source_when("package page", |p| {
        p.contains("<h1>my-database-schemas") && p.contains("href=\"/r/nightly/f/")
    });
    b.click("a[href$='.rpm']");
    b.source_when("RPM page", |p| {
        p.contains("dnf install my-database-schemas-3.0.0-1") && p.contains("/usr/share/")
    });
    if let Some(path) = std::env::var_os("PACKYARD_SCREENSHOT") {
        fs::write(path, b.screenshot()).unwrap();
    }
    b.click("#download");
    let listed =
        server.get_json("/api/v1/repos/nightly/packages?name=my-database-schemas&kind=rpm");
    let key = listed[0]["path"].as_str().unwrap();
    let want = fs::read(crate::support::tree(d, "nightly").join(key)).unwrap();
    let name = key.rsplit('/').next().unwrap();
    let start = Instant::now();
    loop {
        if let Ok(got) = fs::read(downloads.join(name))
            && got == want
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no download of {name}: {:?}",
            fs::read_dir(&downloads)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b);
    server.stop();
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let mut server = Server::start(d, &[]);
    let (key, path) = tree_files(packed("el9_x86_64"))
        .into_iter()
        .find(|(k, _)| k.ends_with(".rpm"))
        .unwrap();
    let bytes = fs::read(path).unwrap();
    // Half the body, then SIGTERM, then the rest.
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(
        format!(
            "PUT /api/v1/repos/nightly/files/{key} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer {builder}\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let half = bytes.len() / 2;
    s.write_all(&bytes[..half]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let child = server.child.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the old one finishes.
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still accepting after SIGTERM"
    );
    s.write_all(&bytes[half..]).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let mut child = child;
    assert!(child.wait().unwrap().success());
    // After a restart the package is there.
    let server = Server::start(d, &[]);
    let listed = server.get_json("/api/v1/repos/nightly/packages");
    assert_eq!(listed[0]["path"], key.as_str());
    server.stop();
}
