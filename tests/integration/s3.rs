//! The S3 blob backend against a real object store that checks signatures: SeaweedFS
//! (`weed mini`, installed by scripts/test into `target/test-venv`), started once for the
//! whole test binary on 127.0.0.1 and stopped with it. Each test takes a bucket of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use packyard::blobs::{Blobs, Data, S3Blobs};

use crate::support::root;

pub(crate) const KEY: &str = "packyard-test";
pub(crate) const SECRET: &str = "packyard-test-secret";

/// The running store's S3 port, or `None` (skipped) where `weed` is missing outside CI.
pub(crate) fn weed() -> Option<u16> {
    static PORT: OnceLock<Option<u16>> = OnceLock::new();
    *PORT.get_or_init(|| {
        let bin = std::env::var_os("PACKYARD_TEST_WEED")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/test-venv/bin/weed"));
        if !crate::support::have_tool(bin.to_str().unwrap_or("weed"), &["version"]) {
            return None;
        }
        let port = crate::support::free_port();
        // The store is killed with the tests, so nothing would remove a temporary
        // directory after it: the next run removes it, and the sockets it left.
        let dir = crate::support::run_dir(&root().join("target/test-weed"));
        remove_stale_sockets();
        let mut cmd = Command::new(&bin);
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"])
            .arg(format!("-s3.port={port}"))
            // Every other server of its own on a free port too, so test runs side by side
            // do not collide; no telemetry (nothing but loopback).
            .args(
                [
                    "master",
                    "master.grpc",
                    "volume",
                    "volume.grpc",
                    "filer",
                    "filer.grpc",
                    "webdav",
                    "admin",
                    "admin.grpc",
                ]
                .map(|s| {
                    let (server, grpc) = s.split_once('.').map_or((s, ""), |(a, _)| (a, ".grpc"));
                    format!("-{server}.port{grpc}={}", crate::support::free_port())
                }),
            )
            .arg("-master.telemetry=false")
            // Its volume server keeps files in a directory of the system's temporary one
            // whatever `-dir` says: there, they would outlive the run.
            .env("TMPDIR", &dir)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("weed.log")).unwrap());
        crate::support::spawn_for_the_run(cmd);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "SeaweedFS did not listen on {port} within a minute; the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(port)
    })
}

/// SeaweedFS's servers each make a unix socket in `/tmp` (`seaweedfs-<server>-<port>.sock`,
/// not all of them movable by a flag), which a store killed with the tests leaves: those
/// no one listens on any more go. A store of another run beside this one still answers.
fn remove_stale_sockets() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("seaweedfs-") && name.ends_with(".sock")) {
            continue;
        }
        if let Err(err) = std::os::unix::net::UnixStream::connect(e.path())
            && err.kind() == std::io::ErrorKind::ConnectionRefused
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A new bucket on the store, and the `--blobs` URL of a prefix in it.
pub(crate) fn bucket(port: u16, name: &str) -> String {
    let endpoint: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let bucket = rusty_s3::Bucket::new(
        endpoint,
        rusty_s3::UrlStyle::Path,
        name.to_string(),
        "us-east-1",
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new(KEY, SECRET);
    let url = rusty_s3::S3Action::sign(
        &rusty_s3::actions::CreateBucket::new(&bucket, &creds),
        Duration::from_secs(60),
    );
    // The store may take a moment after it listens before it takes buckets: on a fresh
    // install, with the machine busy (a release build beside the suite), over 30 s.
    let start = Instant::now();
    loop {
        match ureq::put(url.as_str()).send_empty() {
            Ok(_) => break,
            Err(e) if start.elapsed() < Duration::from_secs(120) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("creating bucket {name}: {e}"),
        }
    }
    format!("s3://{name}/some/prefix?endpoint=http://127.0.0.1:{port}&region=us-east-1")
}

fn open(spec: &str) -> S3Blobs {
    S3Blobs::open_with(spec, KEY, SECRET).unwrap()
}

/// A client killed between a put's headers and its body — a publish stopped while it
/// stores an index — leaves SeaweedFS an empty object under the key. A create-only put of
/// the same content-named key (the next publish writing the same index) must not take it
/// for the object, or the store would name an empty file that the signed index lists.
#[test]
fn a_put_cut_short_is_replaced_by_the_next_create_only_put() {
    use std::io::Write;
    let Some(port) = weed() else { return };
    let spec = bucket(port, "cutshort");
    let endpoint: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let bucket =
        rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "cutshort", "us-east-1").unwrap();
    let creds = rusty_s3::Credentials::new(KEY, SECRET);
    let whole = b"a whole primary.xml.gz";
    let key = "r/repodata/cut-primary.xml.gz";
    let object = format!("some/prefix/{key}");
    let url = rusty_s3::S3Action::sign(
        &rusty_s3::actions::PutObject::new(&bucket, Some(&creds), &object),
        Duration::from_secs(60),
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "PUT {}?{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        url.path(),
        url.query().unwrap_or(""),
        whole.len()
    )
    .unwrap();
    drop(conn);
    // The store finishes with the request after the client is gone.
    std::thread::sleep(Duration::from_millis(500));
    let b = open(&spec);
    let kept = b.stat(key).unwrap();
    assert!(
        kept.as_ref().is_none_or(|m| m.len < whole.len() as u64),
        "{kept:?}"
    );
    b.put_new(key, packyard::blobs::Body::Bytes(whole), None)
        .unwrap();
    assert_eq!(b.get(key).unwrap().unwrap(), whole);
}

#[test]
fn s3_backend_keeps_the_blob_contract() {
    let Some(port) = weed() else { return };
    let spec = bucket(port, "contract");
    let b = open(&spec);
    b.check().unwrap();
    packyard::blobs::conformance::check(&b);
    // A presigned URL reads the object without credentials, until it expires.
    b.put_now("r/x.rpm", b"presigned").unwrap();
    let url = b.url("r/x.rpm", Duration::from_secs(60)).unwrap();
    let got = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(got, b"presigned");
    // Unsigned, it is refused: the store checks signatures.
    let plain = url.split('?').next().unwrap();
    let r = ureq::get(plain)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "{plain}");
}

#[test]
fn a_repository_on_s3_is_published_indexed_and_read_through_the_store() {
    let Some(port) = weed() else { return };
    let spec = bucket(port, "repos");
    let t = tempfile::tempdir().unwrap();
    let blobs = Box::new(open(&spec));
    let repos = packyard::repo::Repositories::open_with(
        &t.path().join("data"),
        packyard::layout::Layout::builtin(),
        blobs,
    )
    .unwrap();
    repos
        .create(&packyard::repo::NewRepo::volatile("nightly"))
        .unwrap();
    let rpm = crate::support::small_rpm(t.path(), "tool");
    let opts = packyard::repo::PublishOptions {
        platform: Some("el9_x86_64".into()),
        ..Default::default()
    };
    let report = repos
        .publish("nightly", &[rpm], &opts, &packyard::progress::Quiet)
        .unwrap();
    assert!(!report.files.is_empty());
    let read = |path: &str| match repos.open_path("nightly", path, None).unwrap() {
        Some(o) => match o.data {
            Data::Stream(mut r) => {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut r, &mut b).unwrap();
                b
            }
            Data::Bytes(_) | Data::File(_) => panic!("an object store's answer is streamed"),
        },
        None => panic!("{path}: not found through the store"),
    };
    for f in &report.files {
        use sha2::Digest;
        let bytes = read(&f.path);
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&bytes)),
            f.sha256,
            "{}",
            f.path
        );
    }
    let repomd = String::from_utf8(read("yum/el9_x86_64/repodata/repomd.xml")).unwrap();
    assert!(repomd.contains("primary"), "{repomd}");
    // The objects are in the bucket under the prefix, the generation's among them.
    let keys = repos.blobs.list("nightly").unwrap();
    assert!(
        keys.iter().any(|k| k.contains("/.repodata.gen-")),
        "{keys:?}"
    );
    repos.delete("nightly").unwrap();
    assert!(repos.blobs.list("nightly").unwrap().is_empty());
}

#[test]
fn wrong_credentials_or_an_unreachable_store_are_clear_errors() {
    let Some(port) = weed() else { return };
    let spec = bucket(port, "creds");
    // A wrong secret: the check says which and what to fix.
    let e = S3Blobs::open_with(&spec, KEY, "wrong")
        .unwrap()
        .check()
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("refused the credentials (403)"), "{text}");
    assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    // Nothing listening.
    let closed = crate::support::free_port();
    let dead = format!("s3://x/p?endpoint=http://127.0.0.1:{closed}&region=us-east-1");
    let e = S3Blobs::open_with(&dead, KEY, SECRET)
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be reached"), "{e}");
    // A server given either stops at start, saying which and what to fix.
    let t = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    for (blobs, secret, says) in [
        (&spec, "wrong", "AWS_SECRET_ACCESS_KEY"),
        (&dead, SECRET, "cannot be reached"),
    ] {
        let out = crate::support::packyard_at(t.path())
            .args(["--blobs", blobs, "serve", "--listen", &listen])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{blobs}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("object store") && err.contains(says), "{err}");
        assert!(!err.contains("wrong"), "the secret is not shown: {err}");
    }
    // Not an object store URL at all.
    let e = S3Blobs::open_with("s3://bucket/p", KEY, SECRET)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("endpoint"), "{e}");
}

/// The command line and a server on a data directory whose packyard.toml puts its bytes in
/// a bucket: nothing lands under the data directory's repos/, dnf installs through the
/// server (streamed from the bucket), and with --redirect-blobs a package is a redirect to
/// a presigned URL while the indexes are still served by packyard.
#[test]
fn a_server_on_s3_serves_dnf_and_redirects_when_asked() {
    let Some(port) = weed() else { return };
    let spec = bucket(port, "served");
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("packyard.toml"),
        format!(
            "blobs = \"{spec}\"\n[s3]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let py = |args: &[&str]| {
        let out = crate::support::packyard_at(&d).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    py(&["repo", "create", "nightly", "--kind", "volatile"]);
    py(&["key", "generate", "--repo", "nightly"]);
    let rpm = crate::support::small_rpm(t.path(), "s3tool");
    let report = py(&[
        "--json",
        "publish",
        "--repo",
        "nightly",
        "--platform",
        "el9_x86_64",
        rpm.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let path = report["files"][0]["path"].as_str().unwrap().to_string();
    // The bytes are in the bucket, not in the data directory.
    let files: Vec<_> = crate::support::files_under(&d.join("repos"));
    assert!(files.is_empty(), "{files:?}");

    let server = crate::serve::Server::start(&d, &[]);
    let (status, body) = server.get(&format!("/repos/nightly/{path}"));
    assert_eq!(status, 200);
    {
        use sha2::Digest;
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&body)),
            report["files"][0]["sha256"].as_str().unwrap()
        );
    }
    // Streamed from the bucket: a range, and a conditional request.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("{}/repos/nightly/{path}", server.url);
    let mut r = agent
        .get(&url)
        .header("Range", "bytes=10-19")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.body_mut().read_to_vec().unwrap(), body[10..20]);
    let r = agent.get(&url).call().unwrap();
    let etag = r
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let r = agent
        .get(&url)
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let r = agent
        .get(&url)
        .header("Range", "bytes=999999-")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);
    if crate::support::have_tool("dnf", &["--version"]) {
        let w = t.path().join("client");
        server.dnf_install(&w, "nightly", &["s3tool"]);
        assert!(w.join("root/usr/share/s3tool/readme").is_file());
    }
    assert!(server.stop().success());

    let server = crate::serve::Server::start(&d, &["--redirect-blobs"]);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    // Each URL is a short-lived redirect to a presigned URL holding the package's bytes.
    let redirected = |url: String| {
        let r = agent.get(&url).call().unwrap();
        assert_eq!(r.status().as_u16(), 302, "{url}");
        assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
        let location = r.headers().get("location").unwrap().to_str().unwrap();
        assert!(location.contains("X-Amz-Signature"), "{location}");
        let got = ureq::get(location)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        use sha2::Digest;
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&got)),
            report["files"][0]["sha256"].as_str().unwrap(),
            "{url}"
        );
    };
    redirected(format!("{}/repos/nightly/{path}", server.url));
    let (status, repomd) = server.get("/repos/nightly/yum/el9_x86_64/repodata/repomd.xml");
    assert_eq!(status, 200, "index files are served, never redirected");
    // What dnf fetches is the package's index name (content-named): redirected too.
    let repomd = String::from_utf8(repomd).unwrap();
    let primary = repomd
        .split("<location href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("primary.xml"))
        .unwrap();
    let (status, gz) = server.get(&format!("/repos/nightly/yum/el9_x86_64/{primary}"));
    assert_eq!(status, 200, "{primary}");
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut xml)
        .unwrap();
    let href = xml
        .split("<location href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("s3tool"))
        .unwrap();
    redirected(format!(
        "{}/repos/nightly/yum/el9_x86_64/{href}",
        server.url
    ));
    if crate::support::have_tool("dnf", &["--version"]) {
        let w = t.path().join("redirected-client");
        server.dnf_install(&w, "nightly", &["s3tool"]);
        assert!(w.join("root/usr/share/s3tool/readme").is_file());
    }
    assert!(server.stop().success());
}

/// The 0.1 fixture's bytes moved to a bucket: everything served afterwards (packages,
/// keys, indexes) is what was served before; a second migration copies nothing; one
/// interrupted (objects missing in the bucket) is finished by running it again.
#[test]
fn the_0_1_data_directory_migrates_to_s3_and_serves_the_same_bytes() {
    let Some(port) = weed() else { return };
    let spec = bucket(port, "migrated");
    let m = crate::upgrade::manifest();
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    crate::upgrade::unpack_fixture(&d);
    let token = m.tokens["fixture-builder"].1.clone();
    let paths = fixture_paths(&m);
    let fetch_all = |server: &crate::serve::Server| -> Vec<(u16, Vec<u8>)> {
        paths
            .iter()
            .map(|p| server.get_as(p, Some(&token)))
            .collect()
    };
    let server = crate::serve::Server::start(&d, &[]);
    let before = fetch_all(&server);
    assert!(server.stop().success());
    assert!(before.iter().all(|(s, _)| *s == 200));

    let migrate = || -> serde_json::Value {
        let out = crate::support::packyard_at(&d)
            .args(["--json", "migrate", "--to-blobs", &spec])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = migrate();
    assert!(first["blobs"]["copied"].as_u64().unwrap() > 100, "{first}");
    assert_eq!(migrate()["blobs"]["copied"], 0);
    // Three objects lost on the way: the next run copies those three.
    let bucket = open(&spec);
    for key in bucket.list("nightly").unwrap().iter().take(3) {
        bucket.remove(key).unwrap();
    }
    assert_eq!(migrate()["blobs"]["copied"], 3);

    std::fs::write(
        d.join("packyard.toml"),
        format!(
            "blobs = \"{spec}\"\n[s3]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let server = crate::serve::Server::start(&d, &[]);
    let after = fetch_all(&server);
    assert!(server.stop().success());
    for (p, (b, a)) in paths.iter().zip(before.iter().zip(&after)) {
        assert_eq!(a.0, 200, "{p}");
        assert!(a.1 == b.1, "{p}: other bytes after the migration");
    }
}

/// A `packyard serve` on a data directory whose store is not the embedded one (no
/// `server.json`): ready once `/healthz` answers; stopped when dropped.
struct Served {
    child: std::process::Child,
    url: String,
}

impl Served {
    fn start(data: &std::path::Path) -> Served {
        let port = crate::support::free_port();
        let child = crate::support::packyard_at(data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while ureq::get(&format!("{url}/healthz")).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no server on {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, url }
    }

    fn put_as(&self, path: &str, body: &[u8], token: &str) -> (u16, Vec<u8>) {
        let mut r = ureq::put(&format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)
            .unwrap();
        let answer = r.body_mut().read_to_vec().unwrap();
        (r.status().as_u16(), answer)
    }

    fn get_as(&self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let mut r = ureq::get(&format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (r.status().as_u16(), body)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The 0.1 data directory moved to PostgreSQL and a bucket (`migrate --to-store
/// --to-blobs`): a server on a new data directory naming only those serves every package,
/// key and index byte for byte, with the same tokens; a second migration changes nothing.
/// The 0.1 keys (unprotected files) go into the database protected by the passphrase the
/// migration is given — without one it stops before copying anything — and the server,
/// given the same passphrase, signs what it publishes next with them.
#[test]
fn the_0_1_data_directory_migrates_to_postgres_and_s3() {
    let (Some(port), Some(pg)) = (weed(), crate::pg::server()) else {
        return;
    };
    let spec = bucket(port, "cluster");
    let store = crate::pg::database(pg, "migrated");
    let m = crate::upgrade::manifest();
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    crate::upgrade::unpack_fixture(&d);
    let token = m.tokens["fixture-builder"].1.clone();
    let mut paths = fixture_paths(&m);
    paths.push("/api/v1/locks".into());
    let server = crate::serve::Server::start(&d, &[]);
    let before: Vec<(u16, Vec<u8>)> = paths
        .iter()
        .map(|p| server.get_as(p, Some(&token)))
        .collect();
    assert!(server.stop().success());

    let pass = t.path().join("key-passphrase");
    std::fs::write(&pass, "moved into the database\n").unwrap();
    let migrate = |pass: Option<&Path>| -> std::process::Output {
        let mut cmd = crate::support::packyard_at(&d);
        if let Some(p) = pass {
            cmd.arg("--key-passphrase-file").arg(p);
        }
        cmd.args([
            "--json",
            "migrate",
            "--to-store",
            &store,
            "--to-blobs",
            &spec,
        ])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap()
    };
    let migrated = |pass: &Path| -> serde_json::Value {
        let out = migrate(Some(pass));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let db = || postgres::Client::connect(&store, postgres::NoTls).unwrap();
    let stored_keys = || -> Vec<(String, String)> {
        db().query("SELECT repo, armored FROM secret_keys ORDER BY repo", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };

    // Without a passphrase the unprotected keys cannot go: nothing is copied at all.
    let out = migrate(None);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("unprotected")
            && err["hint"]
                .as_str()
                .unwrap()
                .contains("--key-passphrase-file"),
        "{err}"
    );
    let repos: i64 = db()
        .query_one("SELECT count(*) FROM repos", &[])
        .unwrap()
        .get(0);
    assert_eq!(repos, 0);
    assert!(stored_keys().is_empty());
    assert!(open(&spec).list("nightly").unwrap().is_empty());

    let first = migrated(&pass);
    assert!(first["store"]["packages"].as_u64().unwrap() > 50, "{first}");
    let keys = stored_keys();
    assert_eq!(
        keys.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        m.repos.keys().map(String::as_str).collect::<Vec<_>>()
    );
    let second = migrated(&pass);
    assert_eq!(second["blobs"]["copied"], 0, "{second}");
    assert_eq!(first["store"]["kept"], 0, "{first}");
    assert_eq!(second["store"]["records"], 0, "{second}");
    // Every repository and farm build was there: kept as it is.
    assert_eq!(
        second["store"]["kept"].as_u64(),
        Some((m.repos.len() + m.farm.len()) as u64),
        "{second}"
    );
    assert_eq!(stored_keys(), keys, "the second migration changed the keys");
    // Each key row: gpg cannot use it without the passphrase, and with it signs as the
    // repository's published key.
    if crate::support::have_tool("gpg", &["--version"])
        && crate::support::have_tool("gpgv", &["--version"])
    {
        for (repo, armored) in &keys {
            let ring = t.path().join(format!("{repo}.gpg"));
            crate::repo::keyring(&d.join("repos").join(repo).join("key.asc"), &ring);
            assert!(
                crate::keys::gpg_needs_the_passphrase(
                    &t.path().join("gpg").join(repo),
                    armored,
                    &pass,
                    &ring
                ),
                "{repo}: the key in the database is usable without the passphrase"
            );
        }
    }

    // A data directory holding nothing but the names of the database and the bucket, and
    // the passphrase file.
    let d2 = t.path().join("elsewhere");
    std::fs::create_dir_all(&d2).unwrap();
    std::fs::write(
        d2.join("packyard.toml"),
        format!(
            "store = \"{store}\"\nblobs = \"{spec}\"\nkey_passphrase_file = \"{}\"\n\
             [s3]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n",
            pass.display()
        ),
    )
    .unwrap();
    let served = Served::start(&d2);
    for (p, (b, a)) in paths.iter().zip(
        before
            .iter()
            .zip(paths.iter().map(|p| served.get_as(p, &token))),
    ) {
        assert_eq!(a.0, b.0, "{p}");
        assert!(a.1 == b.1, "{p}: other bytes after the migration");
    }
    // A package uploaded now is published with an index signed by the key from the
    // database, which verifies with the repository's public key.
    let input = t.path().join("upload");
    std::fs::create_dir_all(&input).unwrap();
    let rpm = crate::pg::rpm(&input, "aftermigration");
    let (status, answer) = served.put_as(
        "/api/v1/repos/nightly/files/aftermigration-1.0-1.x86_64.rpm?platform=el9_x86_64",
        &std::fs::read(&rpm).unwrap(),
        &token,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    if crate::support::have_tool("gpgv", &["--version"]) {
        let base = "/repos/nightly/yum/el9_x86_64/repodata";
        let files = t.path().join("served");
        std::fs::create_dir_all(&files).unwrap();
        for (path, name) in [
            ("/repos/nightly/key.asc", "key.asc"),
            (&format!("{base}/repomd.xml") as &str, "repomd.xml"),
            (&format!("{base}/repomd.xml.asc"), "repomd.xml.asc"),
        ] {
            let (status, body) = served.get_as(path, &token);
            assert_eq!(status, 200, "{path}");
            std::fs::write(files.join(name), body).unwrap();
        }
        let xml = std::fs::read_to_string(files.join("repomd.xml")).unwrap();
        let ring = files.join("key.gpg");
        crate::repo::keyring(&files.join("key.asc"), &ring);
        let v = Command::new("gpgv")
            .arg("--keyring")
            .arg(&ring)
            .arg(files.join("repomd.xml.asc"))
            .arg(files.join("repomd.xml"))
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "gpgv: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        let before_repomd = &before[paths
            .iter()
            .position(|p| p == "/repos/nightly/yum/el9_x86_64/repodata/repomd.xml")
            .unwrap()]
        .1;
        assert_ne!(
            xml.as_bytes(),
            &before_repomd[..],
            "the index did not change"
        );
    }
    // Migrating again once the target is in use rolls nothing back: the package
    // published there since stays, and so does the index that names it.
    let repomd = "/repos/nightly/yum/el9_x86_64/repodata/repomd.xml";
    let (_, in_use) = served.get_as(repomd, &token);
    drop(served);
    let third = migrated(&pass);
    assert_eq!(third["store"]["records"], 0, "{third}");
    let served = Served::start(&d2);
    assert_eq!(served.get_as(repomd, &token).1, in_use);
    let listed = served.get_as("/api/v1/repos/nightly/packages?name=aftermigration", &token);
    assert!(
        String::from_utf8_lossy(&listed.1).contains("aftermigration"),
        "{}",
        String::from_utf8_lossy(&listed.1)
    );
    drop(served);
    assert!(
        !d2.join("repos").exists() || crate::support::files_under(&d2.join("repos")).is_empty()
    );
}

/// What the 0.1 fixture serves, as URL paths: every package file, and each repository's
/// public key and index entry points.
fn fixture_paths(m: &crate::upgrade::Manifest) -> Vec<String> {
    let mut paths: Vec<String> = m
        .files
        .iter()
        .map(|(r, p, _)| format!("/repos/{r}/{p}"))
        .collect();
    for r in m.repos.keys() {
        for p in [
            "key.asc",
            "yum/el9_x86_64/repodata/repomd.xml",
            "apt/dists/deb12/InRelease",
        ] {
            paths.push(format!("/repos/{r}/{p}"));
        }
    }
    paths
}
