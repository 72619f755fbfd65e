//! Issue 19's cluster: two `packyard serve` processes, each on a data directory of its own
//! (its uploads and its log), sharing one PostgreSQL database (the store) and one bucket
//! on SeaweedFS (the blobs), both named in each data directory's packyard.toml. What one
//! server acknowledged the other serves at once; uploads spread over both all land; a
//! server killed while it publishes loses nothing it acknowledged; the command line works
//! on the same database and bucket while both run. Judged by dnf, apt-get and zypper
//! installing through a server, and by every index read back through each server: every
//! file an index names fetched and checked against the checksum the index gives.
//!
//! The engines are the ones pg.rs and s3.rs start once for the test binary; where they are
//! missing the tests are skipped, except under CI, where that fails them. Each test's
//! servers log to `<data>/serve.log`, printed when the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::repo::{AptRoot, py_json};
use crate::support::{have_tool, stderr, stdout};

const REPO: &str = "nightly";
const EL9: &str = "el9_x86_64";
const DEB12: &str = "deb12_amd64";

/// A server's answer to an upload (status and JSON), or why there was none.
type Answer = Result<(u16, Value), String>;

/// Answers by the key uploaded to.
type Answers = Vec<(String, Answer)>;

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A package to upload: an RPM or a DEB holding `/usr/share/<name>/readme`.
#[derive(Clone)]
struct Pkg {
    name: String,
    /// The download-from path it is uploaded to (`<name>/1.0/<platform>/<file>`).
    key: String,
    bytes: Vec<u8>,
    sha256: String,
}

impl Pkg {
    fn rpm(name: &str) -> Pkg {
        let mut b =
            rpm::PackageBuilder::new(name, "1.0", "MIT", "x86_64", "a package of the cluster");
        b.release("1");
        b.with_file_contents(
            format!("{name}\n"),
            rpm::FileOptions::new(format!("/usr/share/{name}/readme")),
        )
        .unwrap();
        // Gzip at its fastest: hundreds are built per test, unoptimised.
        b.using_config(rpm::BuildConfig::default().compression(rpm::CompressionWithLevel::Gzip(1)));
        let mut bytes = Vec::new();
        b.build().unwrap().write(&mut bytes).unwrap();
        Pkg::new(name, EL9, &format!("{name}-1.0-1.x86_64.rpm"), bytes)
    }

    /// A DEB as dpkg-deb builds one: `debian-binary`, `control.tar.gz` (control and
    /// md5sums), `data.tar.gz`.
    fn deb(name: &str) -> Pkg {
        let content = format!("{name}\n");
        let path = format!("usr/share/{name}/readme");
        let md5 = {
            use md5::Digest as _;
            format!("{:x}", md5::Md5::digest(content.as_bytes()))
        };
        let control = format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\n\
             Maintainer: Tests <tests@example.org>\nInstalled-Size: 1\nSection: misc\n\
             Priority: optional\nDescription: a package of the cluster\n \
             {name}, uploaded to one server and read through the other.\n"
        );
        let control_tar = tgz(
            &[],
            &[
                ("./control".into(), control.into_bytes()),
                ("./md5sums".into(), format!("{md5}  {path}\n").into_bytes()),
            ],
        );
        let data_tar = tgz(
            &[
                "./".into(),
                "./usr/".into(),
                "./usr/share/".into(),
                format!("./usr/share/{name}/"),
            ],
            &[(format!("./{path}"), content.into_bytes())],
        );
        let mut ar = ar::Builder::new(Vec::new());
        for (id, data) in [
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", control_tar),
            ("data.tar.gz", data_tar),
        ] {
            let mut h = ar::Header::new(id.as_bytes().to_vec(), data.len() as u64);
            h.set_mode(0o100644);
            h.set_mtime(1_700_000_000);
            ar.append(&h, &data[..]).unwrap();
        }
        let bytes = ar.into_inner().unwrap();
        Pkg::new(name, DEB12, &format!("{name}_1.0-1_amd64.deb"), bytes)
    }

    fn new(name: &str, platform: &str, file: &str, bytes: Vec<u8>) -> Pkg {
        Pkg {
            name: name.into(),
            key: format!("{name}/1.0/{platform}/{file}"),
            sha256: sha256(&bytes),
            bytes,
        }
    }

    fn file(&self) -> &str {
        self.key.rsplit('/').next().unwrap()
    }

    fn is_rpm(&self) -> bool {
        self.key.ends_with(".rpm")
    }

    /// Written into `dir` under its file name, for the command line.
    fn write_to(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(self.file());
        std::fs::write(&p, &self.bytes).unwrap();
        p
    }
}

fn tgz(dirs: &[String], files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for d in dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        t.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (p, bytes) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        t.append_data(&mut h, p, &bytes[..]).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

/// `n` packages named `<prefix>-<i>`, every other one an RPM, the rest DEBs; built on two
/// threads.
fn packages(prefix: &str, n: usize) -> Vec<Pkg> {
    let start = Instant::now();
    let mut out: Vec<Pkg> = std::thread::scope(|s| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                s.spawn(move || {
                    (0..n)
                        .filter(|i| i % 2 == half)
                        .map(|i| {
                            let name = format!("{prefix}-{i:03}");
                            if half == 0 {
                                Pkg::rpm(&name)
                            } else {
                                Pkg::deb(&name)
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    eprintln!("  built {n} packages in {:.1?}", start.elapsed());
    out
}

/// One `packyard serve --listen 127.0.0.1:0` on its own data directory; its address
/// read from what it prints, its stderr in `<data>/serve.log` (printed if the test
/// fails). Killed when dropped.
struct Node {
    name: &'static str,
    data: PathBuf,
    child: Option<Child>,
    pid: u32,
    url: String,
    agent: ureq::Agent,
}

impl Node {
    fn start(name: &'static str, data: &Path) -> Node {
        let log_path = data.join("serve.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut child = crate::support::packyard_at(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(crate::support::root())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = match crate::support::listening_url(&mut child, Duration::from_secs(60)) {
            Some(url) => url,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server {name} did not say where it listens; its log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A publish stuck on a dead server's lock fails the test instead of hanging it.
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Node {
            name,
            data: data.to_path_buf(),
            pid: child.id(),
            child: Some(child),
            url,
            agent,
        }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path} from {}: {e}", self.name));
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (status, body)
    }

    /// GET that must answer 200.
    fn get_ok(&self, path: &str) -> Vec<u8> {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path} from {}: {}",
            self.name,
            String::from_utf8_lossy(&body)
        );
        body
    }

    fn get_json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get_ok(path)).unwrap()
    }

    /// PUT to the upload route with a builder token and the checksum; the status and JSON
    /// answer, or the transport error (a dead server answers nothing).
    fn upload(&self, repo: &str, p: &Pkg, token: &str) -> Answer {
        let mut r = self
            .agent
            .put(format!("{}/api/v1/repos/{repo}/files/{}", self.url, p.key))
            .header("Authorization", format!("Bearer {token}"))
            .header("X-Checksum-Sha256", &p.sha256)
            .send(&p.bytes[..])
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET /api/v1/repos/<repo>/packages`: path → sha256.
    fn packages(&self, repo: &str) -> BTreeMap<String, String> {
        let list = self.get_json(&format!("/api/v1/repos/{repo}/packages"));
        let mut out = BTreeMap::new();
        for p in list.as_array().unwrap() {
            let path = p["path"].as_str().unwrap().to_string();
            let before = out.insert(path.clone(), p["sha256"].as_str().unwrap().to_string());
            assert!(before.is_none(), "{}: {path} listed twice", self.name);
        }
        out
    }

    fn kill(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "----- server {} ({}), its log (last 300 of {} lines) -----\n{}\n-----",
                self.name,
                self.url,
                lines.len(),
                lines[lines.len().saturating_sub(300)..].join("\n")
            );
        }
    }
}

/// Two servers, `a` and `b`, on one database and one bucket, and a data directory `cli`
/// for the command line on the same backends. `nightly` is created (volatile, with an
/// Ed25519 key) through the command line while both servers run.
struct Cluster {
    /// First: the servers stop before their directories go.
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    cli: PathBuf,
    /// A builder token, made with the command line.
    token: String,
    /// The `--store` URL of the database they share.
    store: String,
}

/// Every node's packyard.toml: the guide's deployment example (docs/deploy/packyard.toml)
/// with this test's database, bucket, credentials and passphrase file in place of the
/// example's, and without its `base_url` (each node is reached directly here).
fn deploy_config(store: &str, blobs: &str, passphrase: &Path) -> String {
    let example =
        std::fs::read_to_string(crate::support::root().join("docs/deploy/packyard.toml")).unwrap();
    std::fs::write(passphrase, "cluster test passphrase\n").unwrap();
    let mut config = example.clone();
    for (from, to) in [
        (
            "\"postgres://packyard@db.example.org:5432/packyard\"".to_string(),
            format!("\"{store}\""),
        ),
        (
            "\"s3://packages/prod?endpoint=http://s3.example.org:8333&region=us-east-1\"".into(),
            format!("\"{blobs}\""),
        ),
        (
            "\"/etc/packyard/key-passphrase\"".into(),
            format!("\"{}\"", passphrase.display()),
        ),
        (
            "base_url = \"https://packages.example.org\"\n".into(),
            String::new(),
        ),
        (
            "access_key_id = \"packyard\"".into(),
            format!("access_key_id = \"{}\"", crate::s3::KEY),
        ),
        (
            "secret_access_key = \"change-me\"".into(),
            format!("secret_access_key = \"{}\"", crate::s3::SECRET),
        ),
    ] {
        assert_eq!(
            example.matches(&from).count(),
            1,
            "docs/deploy/packyard.toml no longer has {from} once: keep the test in step"
        );
        config = config.replace(&from, &to);
    }
    config
}

impl Cluster {
    /// `None` (skipped) where PostgreSQL or SeaweedFS is missing outside CI.
    fn start(tag: &str) -> Option<Cluster> {
        let (pg, s3) = (crate::pg::server(), crate::s3::weed());
        let (Some(pg), Some(s3)) = (pg, s3) else {
            return None;
        };
        let start = Instant::now();
        let store = crate::pg::database(pg, &format!("cluster_{tag}"));
        let blobs = crate::s3::bucket(s3, &format!("cluster-{tag}"));
        let dir = tempfile::tempdir().unwrap();
        let config = deploy_config(&store, &blobs, &dir.path().join("key-passphrase"));
        for d in ["a", "b", "cli"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("packyard.toml"), &config).unwrap();
        }
        // Both at once, on a database nothing has opened yet.
        let nodes: Vec<Node> = std::thread::scope(|s| {
            let a = s.spawn(|| Node::start("a", &dir.path().join("a")));
            let b = s.spawn(|| Node::start("b", &dir.path().join("b")));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let cli = dir.path().join("cli");
        py_json(&cli, &["repo", "create", REPO, "--kind", "volatile"]);
        py_json(
            &cli,
            &["key", "generate", "--repo", REPO, "--algorithm", "ed25519"],
        );
        let token = py_json(&cli, &["token", "create", "--role", "builder"])["token"]
            .as_str()
            .unwrap()
            .to_string();
        eprintln!(
            "  cluster {tag}: servers a {} and b {}, repository and token made, in {:.1?}",
            nodes[0].url,
            nodes[1].url,
            start.elapsed()
        );
        Some(Cluster {
            nodes,
            dir,
            cli,
            token,
            store,
        })
    }

    fn a(&self) -> &Node {
        &self.nodes[0]
    }

    fn b(&self) -> &Node {
        &self.nodes[1]
    }

    /// A fresh scratch directory inside the cluster's.
    fn scratch(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// What a repository's indexes name, as read through one server: file name → sha256.
#[derive(Debug, Default, PartialEq)]
struct Indexed {
    rpms: BTreeMap<String, String>,
    debs: BTreeMap<String, String>,
}

impl Indexed {
    /// What `pkgs` would make.
    fn of<'a>(pkgs: impl IntoIterator<Item = &'a Pkg>) -> Indexed {
        let mut out = Indexed::default();
        for p in pkgs {
            let to = if p.is_rpm() {
                &mut out.rpms
            } else {
                &mut out.debs
            };
            to.insert(p.file().to_string(), p.sha256.clone());
        }
        out
    }

    /// Those of `pkgs` it does not name with their checksum.
    fn missing<'a>(&self, pkgs: impl IntoIterator<Item = &'a Pkg>) -> Vec<String> {
        pkgs.into_iter()
            .filter(|p| {
                let from = if p.is_rpm() { &self.rpms } else { &self.debs };
                from.get(p.file()) != Some(&p.sha256)
            })
            .map(|p| p.key.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.rpms.len() + self.debs.len()
    }
}

/// The package file an index path names: its last part, less the `<16 hex>-` that index
/// names put before the file's own name (`packages/<id>-<file>`, `pool/<id>-<file>`).
fn file_of(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap();
    match last.split_once('-') {
        Some((id, file)) if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            file.to_string()
        }
        _ => last.to_string(),
    }
}

/// The text between the first `start` and the next `end` after it.
fn between<'s>(s: &'s str, start: &str, end: &str) -> Option<&'s str> {
    let at = s.find(start)? + start.len();
    let rest = &s[at..];
    Some(&rest[..rest.find(end)?])
}

fn unpack(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
    } else if name.ends_with(".zst") {
        out = zstd::stream::decode_all(bytes).unwrap();
    } else if name.ends_with(".xz") {
        xz2::read::XzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = bytes.to_vec();
    }
    out
}

/// Fetches every `(path, sha256, size)` through `node` (four at a time): each must be there
/// with that checksum (and size, when given). Failures are gathered and reported together.
fn verify_files(node: &Node, what: &str, files: &[(String, String, Option<u64>)]) {
    let errors = Mutex::new(Vec::new());
    let next = Mutex::new(files.iter());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let Some((path, want, size)) = next.lock().unwrap().next() else {
                        return;
                    };
                    let (status, body) = node.get(path);
                    let got = sha256(&body);
                    if status != 200 {
                        errors.lock().unwrap().push(format!("{path}: {status}"));
                    } else if &got != want {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("{path}: sha256 {got}, the index says {want}"));
                    } else if size.is_some_and(|n| n != body.len() as u64) {
                        errors.lock().unwrap().push(format!(
                            "{path}: {} bytes, the index says {size:?}",
                            body.len()
                        ));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "server {}: files {what} names are not as it says:\n{}",
        node.name,
        errors.join("\n")
    );
}

/// `gpgv` with `ring` on `files`, which must verify.
fn gpgv(ring: &Path, files: &[&Path]) {
    let o = Command::new("gpgv")
        .arg("--keyring")
        .arg(ring)
        .args(files)
        .output()
        .unwrap();
    assert!(o.status.success(), "gpgv {files:?}: {}", stderr(&o));
}

/// Checks `repo`'s el9 and deb12 indexes as `node` serves them: repomd.xml names files
/// with its checksums and sizes (and the documents unpack to their open checksums), the
/// Release file likewise (and its compressed Packages unpack to the plain one), both are
/// signed by the repository's key, and every RPM and DEB they list is fetched through
/// the server with the checksum the index gives. Returns what the indexes name.
fn check_indexes(node: &Node, repo: &str, work: &Path) -> Indexed {
    let start = Instant::now();
    let work = work.join(format!("check-{}-{repo}", node.name));
    std::fs::create_dir_all(&work).unwrap();
    let mut out = Indexed::default();
    let ring = (have_tool("gpg", &["--version"]) && have_tool("gpgv", &["--version"])).then(|| {
        let armored = work.join("key.asc");
        std::fs::write(&armored, node.get_ok(&format!("/repos/{repo}/key.asc"))).unwrap();
        let ring = work.join("key.gpg");
        crate::repo::keyring(&armored, &ring);
        ring
    });

    // YUM: repomd.xml, what it names, and every package of the primary document.
    let base = format!("/repos/{repo}/yum/{EL9}");
    let repomd_bytes = node.get_ok(&format!("{base}/repodata/repomd.xml"));
    if let Some(ring) = &ring {
        let (xml, asc) = (work.join("repomd.xml"), work.join("repomd.xml.asc"));
        std::fs::write(&xml, &repomd_bytes).unwrap();
        std::fs::write(
            &asc,
            node.get_ok(&format!("{base}/repodata/repomd.xml.asc")),
        )
        .unwrap();
        gpgv(ring, &[&asc, &xml]);
    }
    let repomd = String::from_utf8(repomd_bytes).unwrap();
    let mut primary = None;
    let mut named = Vec::new();
    for record in repomd.split("<data type=\"").skip(1) {
        let kind = &record[..record.find('"').unwrap()];
        let href = between(record, "<location href=\"", "\"").unwrap();
        let sum = between(record, "<checksum type=\"sha256\">", "<").unwrap();
        let size: u64 = between(record, "<size>", "<").unwrap().parse().unwrap();
        let path = format!("{base}/{href}");
        let bytes = node.get_ok(&path);
        assert_eq!(sha256(&bytes), sum, "{}: {path} (repomd.xml)", node.name);
        assert_eq!(
            bytes.len() as u64,
            size,
            "{}: {path} (repomd.xml)",
            node.name
        );
        if let Some(open) = between(record, "<open-checksum type=\"sha256\">", "<") {
            let plain = unpack(href, &bytes);
            assert_eq!(sha256(&plain), open, "{}: {path} unpacked", node.name);
            if kind == "primary" {
                primary = Some(String::from_utf8(plain).unwrap());
            }
        }
        named.push(kind.to_string());
    }
    let primary = primary.unwrap_or_else(|| panic!("{}: no primary in {repomd}", node.name));
    let declared: usize = between(&primary, "packages=\"", "\"")
        .unwrap()
        .parse()
        .unwrap();
    let mut rpms = Vec::new();
    for pkg in primary.split("<package type=\"rpm\">").skip(1) {
        let sum = between(pkg, "pkgid=\"YES\">", "<").unwrap().to_string();
        let href = between(pkg, "<location href=\"", "\"").unwrap();
        let file = file_of(href);
        assert!(
            out.rpms.insert(file.clone(), sum.clone()).is_none(),
            "{}: {file} twice in primary",
            node.name
        );
        rpms.push((format!("{base}/{href}"), sum, None));
    }
    assert_eq!(declared, rpms.len(), "{}: primary's packages=", node.name);
    verify_files(node, "primary.xml", &rpms);

    // APT: InRelease and Release (signed), what Release names, every package of Packages.
    let dists = format!("/repos/{repo}/apt/dists/deb12");
    let release_bytes = node.get_ok(&format!("{dists}/Release"));
    let inrelease = node.get_ok(&format!("{dists}/InRelease"));
    if let Some(ring) = &ring {
        let (r, g, i) = (
            work.join("Release"),
            work.join("Release.gpg"),
            work.join("InRelease"),
        );
        std::fs::write(&r, &release_bytes).unwrap();
        std::fs::write(&g, node.get_ok(&format!("{dists}/Release.gpg"))).unwrap();
        std::fs::write(&i, &inrelease).unwrap();
        gpgv(ring, &[&g, &r]);
        gpgv(ring, &[&i]);
    }
    let release = String::from_utf8(release_bytes).unwrap();
    assert!(
        String::from_utf8_lossy(&inrelease).contains(&release),
        "{}: InRelease does not hold Release",
        node.name
    );
    let listed: Vec<(u64, String, String)> = release
        .split("SHA256:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with(' '))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (
                parts[1].parse().unwrap(),
                parts[2].to_string(),
                parts[0].to_string(),
            )
        })
        .collect();
    let mut plain: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut compressed = Vec::new();
    for (size, name, sum) in &listed {
        let path = format!("{dists}/{name}");
        let bytes = node.get_ok(&path);
        assert_eq!(&sha256(&bytes), sum, "{}: {path} (Release)", node.name);
        assert_eq!(bytes.len() as u64, *size, "{}: {path} (Release)", node.name);
        if [".gz", ".xz", ".zst"].iter().any(|e| name.ends_with(e)) {
            compressed.push((name.clone(), bytes));
        } else {
            plain.insert(name.clone(), bytes);
        }
    }
    for (name, bytes) in compressed {
        let stem = &name[..name.rfind('.').unwrap()];
        if let Some(p) = plain.get(stem) {
            assert!(
                unpack(&name, &bytes) == *p,
                "{}: {name} does not unpack to {stem}",
                node.name
            );
        }
    }
    let packages = plain
        .get("main/binary-amd64/Packages")
        .unwrap_or_else(|| panic!("{}: Release names no Packages: {release}", node.name));
    let mut debs = Vec::new();
    for stanza in String::from_utf8_lossy(packages).split("\n\n") {
        if stanza.trim().is_empty() {
            continue;
        }
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("{}: no {k} in {stanza}", node.name))
                .to_string()
        };
        let filename = field("Filename");
        let file = file_of(&filename);
        assert!(
            out.debs.insert(file.clone(), field("SHA256")).is_none(),
            "{}: {file} twice in Packages",
            node.name
        );
        debs.push((
            format!("/repos/{repo}/apt/{filename}"),
            field("SHA256"),
            Some(field("Size").parse().unwrap()),
        ));
    }
    verify_files(node, "Packages", &debs);
    eprintln!(
        "  server {}: {repo}'s indexes ({}) consistent, {} RPMs and {} DEBs fetched and checked, in {:.1?}",
        node.name,
        named.join(", "),
        rpms.len(),
        debs.len(),
        start.elapsed()
    );
    out
}

/// What the packages API lists, in the shape of [`Indexed`] (file name → sha256).
fn listed(node: &Node, repo: &str) -> Indexed {
    let mut out = Indexed::default();
    for (path, sum) in node.packages(repo) {
        let file = path.rsplit('/').next().unwrap().to_string();
        let to = if file.ends_with(".rpm") {
            &mut out.rpms
        } else {
            &mut out.debs
        };
        to.insert(file, sum);
    }
    out
}

/// dnf installs `name` into `<work>/root` from `node`'s `.repo` file for `nightly`.
fn dnf_install(node: &Node, work: &Path, name: &str) {
    if !have_tool("dnf", &["--version"]) {
        return;
    }
    let reposdir = work.join("yum.repos.d");
    std::fs::create_dir_all(&reposdir).unwrap();
    std::fs::write(
        reposdir.join(format!("{REPO}.repo")),
        node.get_ok(&format!("/repos/{REPO}/{EL9}.repo")),
    )
    .unwrap();
    crate::repo::dnf_run(
        crate::repo::dnf_command(work, &reposdir),
        &["install", name],
    );
    rpm_installed(&work.join("root"), name);
}

fn rpm_installed(root: &Path, name: &str) {
    let q = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["-q", name])
        .output()
        .unwrap();
    assert!(
        stdout(&q).starts_with(&format!("{name}-1.0-1")),
        "rpm -q {name}: {}{}",
        stdout(&q),
        stderr(&q)
    );
    assert!(root.join(format!("usr/share/{name}/readme")).is_file());
}

/// apt-get installs `name` into a throwaway root from `node`'s deb822 source for `nightly`.
fn apt_install(node: &Node, work: &Path, name: &str) {
    if !have_tool("apt-get", &["--version"]) {
        return;
    }
    let sources = node.get_ok(&format!("/repos/{REPO}/deb12.sources"));
    let apt = AptRoot::from_sources(work, &String::from_utf8(sources).unwrap());
    apt.update(&[]);
    apt.install(&[name]);
    assert!(work.join(format!("usr/share/{name}/readme")).is_file());
}

/// zypper adds `nightly` by `node`'s `.repo` file, refreshes (checking the signed
/// metadata with the key it names) and installs `name` into a throwaway root.
fn zypper_install(node: &Node, work: &Path, name: &str) {
    if !(have_tool("env", &["ZYPP_LOGFILE=/dev/null", "zypper", "--version"])
        && have_tool("rpm", &["--version"]))
    {
        return;
    }
    let root = work.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let zypper = |args: &[&str]| {
        let o = Command::new("zypper")
            .arg("--non-interactive")
            .arg("--root")
            .arg(&root)
            .args(args)
            .env("ZYPP_LOCKFILE_ROOT", work)
            .env("ZYPP_LOGFILE", work.join("zypper.log"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "zypper {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    };
    zypper(&["addrepo", &format!("{}/repos/{REPO}/{EL9}.repo", node.url)]);
    zypper(&["--gpg-auto-import-keys", "refresh"]);
    zypper(&["install", name]);
    rpm_installed(&root, name);
}

/// Uploads `pkgs` through `node`; each must be answered 201 (added).
fn upload_all(node: &Node, token: &str, pkgs: &[Pkg]) {
    for p in pkgs {
        let (status, body) = node
            .upload(REPO, p, token)
            .unwrap_or_else(|e| panic!("upload of {} to {}: {e}", p.key, node.name));
        assert_eq!(status, 201, "upload of {} to {}: {body}", p.key, node.name);
        assert_eq!(body["path"], p.key.as_str(), "{body}");
    }
}

/// Done-means 1: a package uploaded through the first server is in the packages list and
/// the indexes of the second, and dnf, apt-get and zypper install it through the second,
/// as soon as the upload is answered.
#[test]
fn an_upload_to_one_server_installs_through_the_other() {
    let Some(c) = Cluster::start("serve") else {
        return;
    };
    let start = Instant::now();
    let pkgs = vec![Pkg::rpm("cl-first"), Pkg::deb("cl-first")];
    upload_all(c.a(), &c.token, &pkgs);
    let answered = Instant::now();
    // At once, through b: listed, indexed, consistent.
    assert_eq!(listed(c.b(), REPO), Indexed::of(&pkgs));
    let indexed = check_indexes(c.b(), REPO, &c.scratch("check"));
    assert_eq!(indexed, Indexed::of(&pkgs));
    eprintln!(
        "  uploaded through a, listed and indexed through b {:.1?} after the answer",
        answered.elapsed()
    );
    dnf_install(c.b(), &c.scratch("dnf"), "cl-first");
    apt_install(c.b(), &c.scratch("apt"), "cl-first");
    zypper_install(c.b(), &c.scratch("zypper"), "cl-first");
    eprintln!(
        "  uploads, checks and installs through b (dnf, apt-get, zypper): {:.1?}",
        start.elapsed()
    );
}

/// Done-means 2: sixteen uploaders, eight on each server, 400 small packages (RPMs and
/// DEBs): every upload answered 201, every package listed by both servers, and the
/// indexes both serve consistent and naming all 400.
#[test]
fn sixteen_uploaders_on_two_servers_land_400_packages() {
    let Some(c) = Cluster::start("many") else {
        return;
    };
    let pkgs = packages("cl-many", 400);
    let start = Instant::now();
    let answers: Mutex<Vec<(String, &str, Answer)>> = Mutex::default();
    std::thread::scope(|s| {
        for u in 0..16 {
            let (node, pkgs, answers, token) = (&c.nodes[u % 2], &pkgs, &answers, &c.token);
            s.spawn(move || {
                for p in pkgs.iter().skip(u).step_by(16) {
                    let r = node.upload(REPO, p, token);
                    answers.lock().unwrap().push((p.key.clone(), node.name, r));
                }
            });
        }
    });
    let uploaded = start.elapsed();
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), 400);
    let bad: Vec<String> = answers
        .iter()
        .filter(|(_, _, r)| !matches!(r, Ok((201, _))))
        .map(|(key, node, r)| format!("{key} to {node}: {r:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of 400 uploads not answered 201:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let batches: Vec<u64> = answers
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok()?.1["batch"].as_u64())
        .collect();
    eprintln!(
        "  400 uploads answered 201 in {uploaded:.1?} (batch sizes up to {}, {:.1} on average)",
        batches.iter().max().unwrap_or(&0),
        batches.iter().sum::<u64>() as f64 / batches.len().max(1) as f64
    );
    let want = Indexed::of(&pkgs);
    for node in &c.nodes {
        assert_eq!(listed(node, REPO), want, "server {}: packages", node.name);
        let indexed = check_indexes(node, REPO, &c.scratch("check"));
        assert_eq!(
            indexed.missing(&pkgs),
            Vec::<String>::new(),
            "server {}",
            node.name
        );
        assert_eq!(indexed, want, "server {}: indexes", node.name);
    }
    eprintln!("  whole test body: {:.1?}", start.elapsed());
}

/// When server a is killed in a round of [`kill_a_while_publishing`].
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// At its third acknowledgement, the rest of its uploads queued or arriving.
    ThirdAnswer,
    /// This long after its third acknowledgement.
    After(Duration),
    /// As soon as, after its third answer, the store newly lists an upload a has not
    /// answered: its publish has recorded the packages and marked the indexes dirty, and
    /// is writing the indexes.
    Recorded,
}

/// What a round did: every answer by key (a's, then b's), and for [`KillAt::Recorded`]
/// the upload whose record set the kill off.
struct Round {
    a: Answers,
    b: Answers,
    trigger: Option<String>,
}

/// Uploads `for_a` through a (eight at a time) and `for_b` through b (three at a time);
/// a is killed (SIGKILL) `at` the given point.
fn kill_a_while_publishing(c: &Cluster, for_a: &[Pkg], for_b: &[Pkg], at: KillAt) -> Round {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<(String, Answer)>();
    let b_answers: Mutex<Answers> = Mutex::default();
    // a's uploads answered so far (noted before anything else sees the answer).
    let answered: Mutex<BTreeSet<String>> = Mutex::default();
    let killed = AtomicBool::new(false);
    let trigger: Mutex<Option<String>> = Mutex::default();
    let kill = |why: String| {
        if !killed.swap(true, Ordering::SeqCst) {
            c.a().kill();
            eprintln!("  killed a {why}, {:.1?} in", start.elapsed());
        }
    };
    let a_answers = std::thread::scope(|s| {
        for u in 0..8 {
            let (a, token, tx, answered) = (c.a(), &c.token, tx.clone(), &answered);
            s.spawn(move || {
                for p in for_a.iter().skip(u).step_by(8) {
                    let r = a.upload(REPO, p, token);
                    answered.lock().unwrap().insert(p.key.clone());
                    let _ = tx.send((p.key.clone(), r));
                }
            });
        }
        drop(tx);
        for u in 0..3 {
            let (b, token, b_answers) = (c.b(), &c.token, &b_answers);
            s.spawn(move || {
                for p in for_b.iter().skip(u).step_by(3) {
                    let r = b.upload(REPO, p, token);
                    b_answers.lock().unwrap().push((p.key.clone(), r));
                }
            });
        }
        if let KillAt::Recorded = at {
            let (answered, trigger, killed, kill) = (&answered, &trigger, &killed, &kill);
            s.spawn(move || {
                let mine: BTreeSet<&str> = for_a.iter().map(|p| p.key.as_str()).collect();
                // The database itself, read in a millisecond: a server's API answers more
                // slowly than a publish goes from its records to its answers.
                let store = packyard::store::PostgresStore::open(&c.store).unwrap();
                // What the previous look found: a record not there then is at most a look
                // old, far less than a publish takes from its records to its answers.
                let mut before: Option<BTreeSet<String>> = None;
                while !killed.load(Ordering::SeqCst) {
                    let listed: BTreeSet<String> = packyard::store::Store::packages(&store, REPO)
                        .unwrap()
                        .into_iter()
                        .map(|p| p.path)
                        .collect();
                    let answered = answered.lock().unwrap().clone();
                    if answered.len() == for_a.len() {
                        return;
                    }
                    // Armed once a has acknowledged a few (it answers 201 or nothing).
                    let new = before
                        .as_ref()
                        .filter(|_| answered.len() >= 3)
                        .and_then(|b| {
                            listed.iter().find(|k| {
                                mine.contains(k.as_str())
                                    && !b.contains(*k)
                                    && !answered.contains(*k)
                            })
                        });
                    if let Some(key) = new {
                        *trigger.lock().unwrap() = Some(key.clone());
                        kill(format!("as the store listed {key}, not yet answered"));
                        return;
                    }
                    before = Some(listed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        let mut a_answers = Answers::new();
        let mut acked = 0;
        while let Ok(answer) = rx.recv() {
            acked += usize::from(matches!(answer.1, Ok((201, _))));
            a_answers.push(answer);
            match at {
                KillAt::ThirdAnswer if acked >= 3 => kill("at its third acknowledgement".into()),
                KillAt::After(delay) if acked >= 3 && !killed.load(Ordering::SeqCst) => {
                    std::thread::sleep(delay);
                    kill(format!("{delay:?} after its third acknowledgement"));
                }
                _ => {}
            }
        }
        a_answers
    });
    assert!(
        killed.into_inner(),
        "a was not killed ({at:?}): it answered all {} uploads: {a_answers:?}",
        for_a.len()
    );
    Round {
        a: a_answers,
        b: b_answers.into_inner().unwrap(),
        trigger: trigger.into_inner().unwrap(),
    }
}

/// Done-means 3: server a is killed (SIGKILL) while it publishes a stream of uploads, in
/// five rounds (a started again on its data directory between them): at its third
/// acknowledgement, 80 ms after it, and three times as soon as the database lists an
/// upload a has not answered, i.e. between a publish's records and its indexes (at least
/// one of those must come before that answer); b takes uploads all the while. Each time b keeps serving consistent
/// indexes naming every upload acknowledged so far, its next publish completes, and then
/// what the store lists is what the indexes name (an upload a recorded but never
/// answered is indexed by b's publish). At the end a, started again, serves the very
/// indexes b serves.
#[test]
fn a_server_killed_while_publishing_loses_no_acknowledged_upload() {
    let Some(mut c) = Cluster::start("kill") else {
        return;
    };
    const FOR_A: usize = 40;
    const FOR_B: usize = 12;
    let rounds = [
        KillAt::ThirdAnswer,
        KillAt::Recorded,
        KillAt::After(Duration::from_millis(80)),
        KillAt::Recorded,
        KillAt::Recorded,
    ];
    let all = packages("cl-kill", 10 + rounds.len() * (FOR_A + FOR_B + 1));
    let (before, mut rest) = all.split_at(10);
    let start = Instant::now();
    upload_all(c.b(), &c.token, before);
    let mut acked: Vec<&Pkg> = before.iter().collect();
    let by_key = |key: &str| all.iter().find(|p| p.key == key).unwrap();
    let check = c.scratch("check");
    let mut indexed = Indexed::default();
    let (mut tries, mut hits) = (0, 0);
    for (round, at) in rounds.into_iter().enumerate() {
        let (for_a, r) = rest.split_at(FOR_A);
        let (for_b, r) = r.split_at(FOR_B);
        let (extra, r) = r.split_at(1);
        rest = r;
        if round > 0 {
            let a_dir = c.a().data.clone();
            c.nodes[0] = Node::start("a", &a_dir);
        }
        let done = kill_a_while_publishing(&c, for_a, for_b, at);
        // a answered 201 or nothing (a dead server answers nothing); b, 201 every time.
        let mut unanswered = Vec::new();
        for (key, r) in &done.a {
            match r {
                Ok((201, _)) => acked.push(by_key(key)),
                Err(_) => unanswered.push(by_key(key)),
                Ok(other) => panic!("round {round}: upload of {key} to a: {other:?}"),
            }
        }
        for (key, r) in &done.b {
            match r {
                Ok((201, _)) => acked.push(by_key(key)),
                other => panic!("round {round}: upload of {key} to b as a died: {other:?}"),
            }
        }
        // A kill set off by a record came between that publish's records and its answers
        // unless the answer overtook it (then the round is a kill after a publish).
        let hit = done
            .trigger
            .as_ref()
            .filter(|key| unanswered.iter().any(|p| &p.key == *key));
        tries += usize::from(done.trigger.is_some());
        hits += usize::from(hit.is_some());
        // b serves consistent indexes at once, naming every acknowledged upload.
        let now = check_indexes(c.b(), REPO, &check);
        assert_eq!(
            now.missing(acked.iter().copied()),
            Vec::<String>::new(),
            "round {round}: acknowledged uploads missing from b's indexes right after the kill"
        );
        // b's next publish completes, and then every acknowledged upload is indexed.
        let t = Instant::now();
        upload_all(c.b(), &c.token, extra);
        let next = t.elapsed();
        acked.push(&extra[0]);
        indexed = check_indexes(c.b(), REPO, &check);
        assert_eq!(
            indexed.missing(acked.iter().copied()),
            Vec::<String>::new(),
            "round {round}: acknowledged uploads missing from b's indexes after its next publish"
        );
        // What the store lists is what the indexes name: uploads a took but never
        // answered are in both or in neither.
        assert_eq!(
            listed(c.b(), REPO),
            indexed,
            "round {round}: b's packages listed vs indexed"
        );
        let landed: Vec<&str> = unanswered
            .iter()
            .filter(|p| indexed.missing(std::iter::once(**p)).is_empty())
            .map(|p| p.key.as_str())
            .collect();
        if let Some(key) = hit {
            assert!(
                landed.contains(&key.as_str()),
                "round {round}: {key}, recorded by a's killed publish, is not indexed after b's"
            );
        }
        if let Some(key) = hit {
            eprintln!("  round {round}: killed between the records and the answers of {key}");
        }
        eprintln!(
            "  round {round} ({at:?}): a acknowledged {} of {FOR_A} and left {} unanswered \
             ({} of those indexed by b's next publish), b {FOR_B} of {FOR_B}; b's next \
             publish answered in {next:.1?}; {} packages indexed, {} acknowledged so far",
            FOR_A - unanswered.len(),
            unanswered.len(),
            landed.len(),
            indexed.len(),
            acked.len()
        );
    }
    assert!(
        hits > 0,
        "in {tries} tries no kill came between a publish's records and its answers"
    );
    // a, started again on its data directory, serves the same.
    let a_dir = c.a().data.clone();
    c.nodes[0] = Node::start("a", &a_dir);
    let again = check_indexes(c.a(), REPO, &check);
    assert_eq!(again, indexed, "a, restarted, serves other indexes than b");
    eprintln!("  whole test body: {:.1?}", start.elapsed());
}

/// Done-means 4: while both servers run, the command line (a third data directory with
/// the same packyard.toml) creates a repository and publishes into it and into the one the
/// servers take uploads for; both servers serve the results at once.
#[test]
fn the_command_line_creates_and_publishes_while_both_servers_run() {
    let Some(c) = Cluster::start("cli") else {
        return;
    };
    let start = Instant::now();
    let pkgs = packages("cl-cli", 5);
    let input = c.scratch("in");
    upload_all(c.a(), &c.token, &pkgs[0..1]);

    py_json(&c.cli, &["repo", "create", "made", "--kind", "volatile"]);
    py_json(
        &c.cli,
        &[
            "key",
            "generate",
            "--repo",
            "made",
            "--algorithm",
            "ed25519",
        ],
    );
    let publish = |repo: &str, p: &Pkg| {
        let platform = if p.is_rpm() { EL9 } else { DEB12 };
        let report = py_json(
            &c.cli,
            &[
                "publish",
                "--repo",
                repo,
                "--platform",
                platform,
                p.write_to(&input.join(repo)).to_str().unwrap(),
            ],
        );
        assert_eq!(report["files"][0]["sha256"], p.sha256.as_str(), "{report}");
    };
    publish("made", &pkgs[1]);
    publish("made", &pkgs[2]);
    publish(REPO, &pkgs[3]);
    eprintln!(
        "  repo create, key generate, 3 publishes through the command line: {:.1?}",
        start.elapsed()
    );
    upload_all(c.b(), &c.token, &pkgs[4..5]);

    let check = c.scratch("check");
    for node in &c.nodes {
        let repos = node.get_json("/api/v1/repos");
        let names: BTreeSet<&str> = repos
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["made", REPO]),
            "{}: {repos}",
            node.name
        );
        let made = Indexed::of(&pkgs[1..3]);
        assert_eq!(listed(node, "made"), made, "{}: made", node.name);
        assert_eq!(
            check_indexes(node, "made", &check),
            made,
            "{}: made",
            node.name
        );
        let nightly = Indexed::of([&pkgs[0], &pkgs[3], &pkgs[4]]);
        assert_eq!(listed(node, REPO), nightly, "{}: {REPO}", node.name);
        assert_eq!(
            check_indexes(node, REPO, &check),
            nightly,
            "{}: {REPO}",
            node.name
        );
    }
    eprintln!("  whole test body: {:.1?}", start.elapsed());
}

/// Small files that a server keeps in memory over the shared store (`server::copies`)
/// are never answered after a write through another process changed them: a tarball
/// rebuilt at the same path, and the index that a new RPM changes, read through `b`
/// right after `a` (or the command line) answered the write. And `b` does answer from
/// memory between writes.
#[test]
fn a_server_never_answers_a_kept_copy_of_what_another_changed() {
    let Some(c) = Cluster::start("copies") else {
        return;
    };
    let tarball = |round: usize| {
        let bytes = tgz(
            &["./".into()],
            &[("./round".into(), format!("round {round}\n").into_bytes())],
        );
        Pkg::new("cl-tar", EL9, "cl-tar-1.0-1.tar.gz", bytes)
    };
    let path = format!("/repos/{REPO}/{}", tarball(0).key);
    let from_copies = |node: &Node| -> u64 {
        let text = String::from_utf8(node.get_ok("/metrics")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("packyard_files_from_copies_total "))
            .unwrap_or_else(|| panic!("{}: no copies counter in /metrics", node.name))
            .trim()
            .parse()
            .unwrap()
    };
    let input = c.scratch("in");
    let hits_before = from_copies(c.b());
    for round in 0..12 {
        let p = tarball(round);
        if round % 4 == 3 {
            // A process that is no server: the command line.
            let report = py_json(
                &c.cli,
                &[
                    "publish",
                    "--repo",
                    REPO,
                    "--platform",
                    EL9,
                    p.write_to(&input.join(round.to_string())).to_str().unwrap(),
                ],
            );
            assert_eq!(report["files"][0]["sha256"], p.sha256.as_str(), "{report}");
        } else {
            let (status, answer) = c.a().upload(REPO, &p, &c.token).unwrap();
            assert!(
                matches!(status, 200 | 201),
                "round {round}: {status} {answer}"
            );
        }
        // At once, through b, twice (the second read may come from b's memory).
        for read in 0..2 {
            let got = c.b().get_ok(&path);
            assert_eq!(
                sha256(&got),
                p.sha256,
                "round {round}, read {read}: old bytes"
            );
        }
    }
    let hits = from_copies(c.b()) - hits_before;
    assert!(hits >= 6, "b answered {hits} of 24 reads from memory");

    // An index changed through a: b's kept repomd.xml is not answered after it.
    let repomd = format!("/repos/{REPO}/yum/{EL9}/repodata/repomd.xml");
    let rpm = Pkg::rpm("cl-copies");
    upload_all(c.a(), &c.token, &[Pkg::rpm("cl-copies-first")]);
    let before = c.b().get_ok(&repomd);
    assert_eq!(c.b().get_ok(&repomd), before);
    upload_all(c.a(), &c.token, std::slice::from_ref(&rpm));
    let after = c.b().get_ok(&repomd);
    assert_ne!(
        after, before,
        "b answered the repomd.xml of before the upload"
    );
    assert_eq!(after, c.a().get_ok(&repomd));
    let indexed = check_indexes(c.b(), REPO, &c.scratch("check"));
    assert!(indexed.missing([&rpm]).is_empty(), "{indexed:?}");
}
