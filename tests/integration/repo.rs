//! Repositories: `repo`, `key`, `publish`, judged by createrepo_c, apt-ftparchive, dnf,
//! apt-get, gpgv and rpm.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use quick_xml::events::Event;
use serde_json::Value;

use crate::support::{have_tool, packed, stderr, stdout};

/// `packyard --data DATA args...`
pub(crate) fn py(data: &Path, args: &[&str]) -> Output {
    crate::support::packyard_at(data)
        .args(args)
        .current_dir(crate::support::root())
        .output()
        .unwrap()
}

/// Runs packyard, which must succeed; returns its `--json` output.
pub(crate) fn py_json(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = py(data, &all);
    assert!(
        o.status.success(),
        "packyard {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `repomd.xml`'s `(type, href, checksum, size, open-checksum)` records.
fn repomd_records(repomd: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut reader = quick_xml::Reader::from_str(repomd);
    reader.config_mut().trim_text(true);
    let mut cur: Option<BTreeMap<String, String>> = None;
    let mut field = String::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_string();
                let attrs: BTreeMap<String, String> = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (a.key.as_ref().to_string(), a.value.to_string())
                    })
                    .collect();
                if name == "data" {
                    let mut m = BTreeMap::new();
                    m.insert("type".into(), attrs["type"].clone());
                    cur = Some(m);
                } else if name == "location"
                    && let Some(m) = cur.as_mut()
                {
                    m.insert("href".into(), attrs["href"].clone());
                }
                field = name;
            }
            Event::Text(t) => {
                if let Some(m) = cur.as_mut() {
                    m.insert(field.clone(), t.as_ref().to_string());
                }
            }
            Event::End(e) if e.name().as_ref() == "data" => out.extend(cur.take()),
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Every `<package>` of a primary/filelists/other document, keyed by its pkgid, as a list
/// of `path [attrs] text` lines (text and attributes raw, i.e. still escaped, so the
/// escaping is compared too). `skip` drops attributes by `element@attribute`.
pub(crate) fn xml_packages(xml: &[u8], skip: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut out = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut key = String::new();
    let mut buf = Vec::new();
    loop {
        let ev = reader.read_event_into(&mut buf).unwrap();
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_string();
                stack.push(name.clone());
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.unwrap();
                    let k = a.key.as_ref().to_string();
                    let v = a.value.to_string();
                    if name == "package" && k == "pkgid" {
                        key = v.clone();
                    }
                    if !skip.contains(&format!("{name}@{k}").as_str()) {
                        attrs.push(format!("{k}={v}"));
                    }
                }
                if name == "package" {
                    lines.clear();
                }
                lines.push(format!("{} [{}]", stack.join("/"), attrs.join(" ")));
                if empty {
                    stack.pop();
                }
            }
            Event::Text(t) => {
                let text = t.as_ref().to_string();
                if let Some(l) = lines.last_mut() {
                    l.push_str(&text);
                }
                if stack.last().is_some_and(|s| s == "checksum") {
                    key = text;
                }
            }
            Event::GeneralRef(r) => {
                if let Some(l) = lines.last_mut() {
                    l.push('&');
                    l.push_str(r.as_ref());
                    l.push(';');
                }
            }
            Event::End(_) => {
                let closed = stack.pop();
                if closed.as_deref() == Some("package") {
                    out.insert(key.clone(), lines.clone());
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    out
}

/// The primary, filelists and other documents a `repodata/` directory's repomd.xml names,
/// checked against the sizes and checksums it gives.
pub(crate) fn repodata_docs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    use sha2::{Digest, Sha256};
    let repomd = fs::read_to_string(dir.join("repodata/repomd.xml")).unwrap();
    let mut docs = BTreeMap::new();
    for r in repomd_records(&repomd) {
        let gz = fs::read(dir.join(&r["href"])).unwrap();
        assert_eq!(gz.len().to_string(), r["size"], "{}", r["href"]);
        assert_eq!(format!("{:x}", Sha256::digest(&gz)), r["checksum"]);
        let xml = if r["href"].ends_with(".zst") {
            zstd::decode_all(gz.as_slice()).unwrap()
        } else {
            gunzip(&gz)
        };
        assert_eq!(xml.len().to_string(), r["open-size"]);
        assert_eq!(format!("{:x}", Sha256::digest(&xml)), r["open-checksum"]);
        docs.insert(r["type"].clone(), xml);
    }
    docs
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A data directory with one volatile repository holding the packed fixture release.
fn published(platform: &'static str) -> (tempfile::TempDir, Value) {
    let data = tempfile::tempdir().unwrap();
    create_nightly(data.path(), &[]);
    let report = publish_packed(data.path(), platform, &[]);
    (data, report)
}

/// Volatile repository `nightly` in data directory `d`; `extra` adds `repo create` options.
pub(crate) fn create_nightly(d: &Path, extra: &[&str]) {
    let mut args = vec!["repo", "create", "nightly", "--kind", "volatile"];
    args.extend_from_slice(extra);
    py_json(d, &args);
}

/// An Ed25519 signing key for `nightly` (generated in a millisecond; RSA takes seconds).
pub(crate) fn ed25519_key(d: &Path) {
    py_json(
        d,
        &[
            "key",
            "generate",
            "--repo",
            "nightly",
            "--algorithm",
            "ed25519",
        ],
    );
}

/// Publishes the packed fixture release of `platform` into `nightly`; its report.
pub(crate) fn publish_packed(d: &Path, platform: &'static str, extra: &[&str]) -> Value {
    let out = packed(platform).to_str().unwrap().to_string();
    let mut args = vec!["publish", "--repo", "nightly"];
    args.extend_from_slice(extra);
    args.push(&out);
    py_json(d, &args)
}

#[test]
fn yum_indexes_match_createrepo_c() {
    let (data, report) = published("el9_x86_64");
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 12, "6 tarballs and 6 RPMs: {report}");
    assert!(files.iter().all(|f| f["action"] == "added"));
    assert_eq!(report["indexes"], serde_json::json!(["yum/el9_x86_64"]));

    let base = crate::support::tree(data.path(), "nightly").join("yum/el9_x86_64");
    let ours = repodata_docs(&base);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        ["filelists", "other", "primary"]
    );
    if !have_tool("createrepo_c", &["--version"]) {
        return;
    }
    // The same RPMs, at the same relative paths, indexed by createrepo_c.
    let theirs_dir = tempfile::tempdir().unwrap();
    copy_tree(&base.join("packages"), &theirs_dir.path().join("packages"));
    run_ok(
        Command::new("createrepo_c")
            .args(["--no-database", "--quiet"])
            .arg(theirs_dir.path()),
    );
    let theirs = repodata_docs(theirs_dir.path());
    // `time file` is the file's mtime for createrepo_c, the publish time for us.
    for kind in ["primary", "filelists", "other"] {
        let a = xml_packages(&ours[kind], &["time@file"]);
        let b = xml_packages(&theirs[kind], &["time@file"]);
        assert_eq!(a.len(), 6, "{kind}");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{kind}: not the same packages"
        );
        for (id, entry) in &a {
            assert_eq!(entry, &b[id], "{kind} entry of {id} differs");
        }
    }
}

/// `Packages` stanzas by Filename.
fn stanzas(text: &str) -> BTreeMap<String, String> {
    text.split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let f = s
                .lines()
                .find_map(|l| l.strip_prefix("Filename: "))
                .unwrap()
                .to_string();
            (f, format!("{s}\n"))
        })
        .collect()
}

#[test]
fn apt_indexes_match_apt_ftparchive() {
    let (data, report) = published("deb12_amd64");
    assert_eq!(report["files"].as_array().unwrap().len(), 12, "{report}");
    assert_eq!(report["indexes"], serde_json::json!(["apt/deb12"]));
    let apt = crate::support::tree(data.path(), "nightly").join("apt");
    let dists = apt.join("dists/deb12");
    let release = fs::read_to_string(dists.join("Release")).unwrap();
    for field in [
        "Origin: nightly",
        "Suite: deb12",
        "Codename: deb12",
        "Components: main",
        "Acquire-By-Hash: yes",
        "Architectures: amd64 arm64",
    ] {
        assert!(
            release.contains(&format!("{field}\n")),
            "{field} not in\n{release}"
        );
    }
    // Every index Release names is there with that size and checksum, also by hash.
    use sha2::{Digest, Sha256};
    let listed: Vec<&str> = release.split("SHA256:\n").nth(1).unwrap().lines().collect();
    assert_eq!(listed.len(), 6, "{release}");
    for line in listed {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (sum, size, path) = (parts[0], parts[1], parts[2]);
        let bytes = fs::read(dists.join(path)).unwrap();
        assert_eq!(bytes.len().to_string(), size, "{path}");
        assert_eq!(format!("{:x}", Sha256::digest(&bytes)), sum, "{path}");
        let dir = Path::new(path).parent().unwrap();
        assert_eq!(
            fs::read(dists.join(dir).join("by-hash/SHA256").join(sum)).unwrap(),
            bytes
        );
    }
    let ours = fs::read_to_string(dists.join("main/binary-amd64/Packages")).unwrap();
    assert_eq!(
        gunzip(&fs::read(dists.join("main/binary-amd64/Packages.gz")).unwrap()),
        ours.as_bytes()
    );
    if !have_tool("apt-ftparchive", &["--version"]) {
        return;
    }
    let theirs = run_ok(
        Command::new("apt-ftparchive")
            .args(["packages", "pool"])
            .current_dir(&apt),
    );
    let (a, b) = (stanzas(&ours), stanzas(&theirs));
    assert_eq!(a.len(), 6);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (f, s) in &a {
        assert_eq!(s, &b[f], "stanza of {f} differs");
    }
}

/// The published file of `package` (by file name prefix) among a publish report's files.
fn published_file(data: &Path, report: &Value, suffix: &str, package: &str) -> std::path::PathBuf {
    let f = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .find(|p| p.ends_with(suffix) && p.rsplit('/').next().unwrap().starts_with(package))
        .unwrap_or_else(|| panic!("no {package}*{suffix} in {report}"));
    crate::support::tree(data, "nightly").join(f)
}

/// `rpm -K` on `rpm_file`, in an rpm database at `db` holding only `key_file`: the
/// signature must check.
pub(crate) fn assert_rpm_signed(db: &Path, key_file: &Path, rpm_file: &Path) {
    fs::create_dir_all(db).unwrap();
    run_ok(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(db)
            .arg("--import")
            .arg(key_file),
    );
    let k = run_ok(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(db)
            .arg("-K")
            .arg(rpm_file),
    );
    assert!(k.contains("signatures OK"), "{k}");
}

/// An armored key turned into the binary keyring gpgv reads.
pub(crate) fn keyring(armored: &Path, out: &Path) {
    let mut gpg = Command::new("gpg")
        .arg("--dearmor")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    gpg.stdin
        .take()
        .unwrap()
        .write_all(&fs::read(armored).unwrap())
        .unwrap();
    let o = gpg.wait_with_output().unwrap();
    assert!(o.status.success());
    fs::write(out, o.stdout).unwrap();
}

#[test]
fn dnf_installs_signed_packages_from_a_signed_repository() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    // RSA: the key kind every rpm reads.
    let key = py_json(d, &["key", "generate", "--repo", "nightly"]);
    let fingerprint = key["fingerprint"].as_str().unwrap().to_string();
    let report = publish_packed(d, "el9_x86_64", &["--sign"]);
    let repo = crate::support::tree(d, "nightly");
    let key_file = repo.join("key.asc");
    let exported = stdout(&py(d, &["key", "export", "--repo", "nightly"]));
    assert_eq!(exported, fs::read_to_string(&key_file).unwrap());

    // repomd.xml.asc verifies with the published key.
    let base = repo.join("yum/el9_x86_64");
    if have_tool("gpgv", &["--version"]) {
        let ring = d.join("keyring.gpg");
        keyring(&key_file, &ring);
        let v = Command::new("gpgv")
            .arg("--keyring")
            .arg(&ring)
            .arg(base.join("repodata/repomd.xml.asc"))
            .arg(base.join("repodata/repomd.xml"))
            .output()
            .unwrap();
        assert!(v.status.success(), "gpgv: {}", stderr(&v));
    }

    // rpm -K: the package signature is good once the key is imported, and it is ours.
    let rpm_file = published_file(d, &report, ".rpm", "my-database-schemas");
    assert_rpm_signed(&d.join("rpmdb"), &key_file, &rpm_file);
    let info = run_ok(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{RSAHEADER:pgpsig}\n"])
            .arg(&rpm_file),
    );
    let short = fingerprint[fingerprint.len() - 16..].to_lowercase();
    assert!(info.contains(&short), "signed by another key: {info}");

    dnf_install(d, &base, Some(&key_file), "my-database-schemas");
}

/// dnf on a throwaway root, cache and config under `work`, with the YUM tree at `base`
/// as its only repository; signatures checked when a key is given. Must succeed.
fn dnf(work: &Path, base: &Path, key: Option<&Path>, args: &[&str]) -> String {
    let empty = work.join("no-repos");
    fs::create_dir_all(&empty).unwrap();
    let mut cmd = dnf_command(work, &empty);
    cmd.arg(format!("--repofrompath=nightly,file://{}", base.display()));
    match key {
        Some(k) => {
            cmd.args([
                "--setopt=nightly.gpgcheck=1",
                "--setopt=nightly.repo_gpgcheck=1",
            ])
            .arg(format!("--setopt=nightly.gpgkey=file://{}", k.display()));
        }
        None => {
            cmd.args([
                "--setopt=nightly.gpgcheck=0",
                "--setopt=nightly.repo_gpgcheck=0",
            ]);
        }
    }
    dnf_run(cmd, args)
}

/// dnf with a throwaway root, cache and config under `work`, reading repository files
/// from `reposdir` only.
pub(crate) fn dnf_command(work: &Path, reposdir: &Path) -> Command {
    let conf = work.join("dnf.conf");
    fs::write(&conf, "[main]\ngpgcheck=1\n").unwrap();
    let mut cmd = Command::new("dnf");
    cmd.arg("-y")
        .arg("-c")
        .arg(&conf)
        .arg(format!("--installroot={}", work.join("root").display()))
        .args([
            "--releasever=9",
            "--nodocs",
            "--setopt=install_weak_deps=False",
        ])
        .arg(format!("--setopt=reposdir={}", reposdir.display()))
        .arg(format!(
            "--setopt=cachedir={}",
            work.join("cache").display()
        ));
    cmd
}

/// Runs a dnf command, which must succeed; its output.
pub(crate) fn dnf_run(mut cmd: Command, args: &[&str]) -> String {
    let o = cmd.args(args).output().unwrap();
    assert!(
        o.status.success(),
        "dnf {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// `dnf install PACKAGE` into a throwaway root; then `rpm -q` finds it there.
fn dnf_install(d: &Path, base: &Path, key: Option<&Path>, package: &str) {
    if !have_tool("dnf", &["--version"]) {
        return;
    }
    dnf(d, base, key, &["install", package]);
    let q = run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(d.join("root"))
            .args(["-q", package]),
    );
    assert!(q.starts_with(package), "{q}");
}

#[test]
fn zstd_repodata_reads_the_same_and_installs() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &["--yum-compression", "zstd"]);
    publish_packed(d, "el9_x86_64", &[]);
    let base = crate::support::tree(d, "nightly").join("yum/el9_x86_64");
    let repomd = fs::read_to_string(base.join("repodata/repomd.xml")).unwrap();
    assert_eq!(repomd.matches(".xml.zst\"").count(), 3, "{repomd}");
    let docs = repodata_docs(&base);
    assert_eq!(xml_packages(&docs["primary"], &[]).len(), 6);
    dnf_install(d, &base, None, "my-database-schemas");
}

#[test]
fn apt_get_fetches_from_a_signed_repository() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    ed25519_key(d);
    publish_packed(d, "deb12_amd64", &[]);
    let repo = crate::support::tree(d, "nightly");
    if !have_tool("apt-get", &["--version"]) {
        return;
    }
    let apt = AptRoot::new(&d.join("aptroot"), &repo);
    apt.update(&[]);
    // Every package is there, read from Packages.xz, and again from Packages.gz (both
    // are made of separately compressed segments).
    assert_eq!(apt.available(), 6);
    for e in fs::read_dir(apt.root.join("var/lib/apt/lists"))
        .unwrap()
        .flatten()
    {
        if e.file_type().unwrap().is_file() {
            fs::remove_file(e.path()).unwrap();
        }
    }
    apt.update(&[
        "-o",
        "Acquire::CompressionTypes::Order::=gz",
        "-o",
        "Acquire::CompressionTypes::xz=",
    ]);
    assert_eq!(apt.available(), 6);
    let dl = d.join("downloads");
    fs::create_dir_all(&dl).unwrap();
    apt.run(&["download", "my-database-schemas"], &dl);
    let got: Vec<_> = fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("my-database-schemas_3.0.0-1"), "{got:?}");
}

/// A throwaway apt root whose only source is repository `repo` (suite deb12, signed-by its
/// key.asc): apt-get and apt-cache touch nothing of the machine's own.
pub(crate) struct AptRoot {
    pub(crate) root: std::path::PathBuf,
}

impl AptRoot {
    pub(crate) fn new(root: &Path, repo: &Path) -> AptRoot {
        let apt = AptRoot::empty(root);
        fs::write(
            root.join("etc/apt/sources.list"),
            format!(
                "deb [signed-by={}] file://{} deb12 main\n",
                repo.join("key.asc").display(),
                repo.join("apt").display()
            ),
        )
        .unwrap();
        apt
    }

    /// A root whose only source is the deb822 file `sources`.
    pub(crate) fn from_sources(root: &Path, sources: &str) -> AptRoot {
        let apt = AptRoot::empty(root);
        fs::write(root.join("etc/apt/sources.list"), "").unwrap();
        fs::write(
            root.join("etc/apt/sources.list.d/packyard.sources"),
            sources,
        )
        .unwrap();
        apt
    }

    fn empty(root: &Path) -> AptRoot {
        for dir in [
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
            "var/log/apt",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        AptRoot {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.arg("-o")
            .arg(format!("Dir={}", self.root.display()))
            .arg("-o")
            .arg(format!(
                "Dir::State::status={}",
                self.root.join("var/lib/dpkg/status").display()
            ))
            .args(["-o", "Debug::NoLocking=1", "-o", "APT::Architecture=amd64"])
            .args(["-o", "APT::Architectures=amd64"]);
        c
    }

    /// apt-get ARGS in `cwd`, which must succeed; its output.
    pub(crate) fn run(&self, args: &[&str], cwd: &Path) -> String {
        let o = self
            .cmd("apt-get")
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "apt-get {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o) + &stderr(&o)
    }

    /// `apt-get update`, refusing warnings too (a bad signature is only a warning).
    pub(crate) fn update(&self, options: &[&str]) {
        let mut args = options.to_vec();
        args.push("update");
        let out = self.run(&args, &self.root);
        assert!(!out.contains("W:") && !out.contains("E:"), "{out}");
        assert!(out.contains("Packages"), "{out}");
    }

    /// `apt-get install PACKAGES` into the root itself (dpkg `--root`, scripts run
    /// without chroot, not as root), which must succeed; then dpkg's status lists each.
    pub(crate) fn install(&self, packages: &[&str]) {
        for dir in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
        ] {
            fs::create_dir_all(self.root.join(dir)).unwrap();
        }
        let dpkg_root = format!("DPkg::Options::=--root={}", self.root.display());
        let mut args = vec![
            "-y",
            "-o",
            &dpkg_root,
            "-o",
            "DPkg::Options::=--force-script-chrootless",
            "-o",
            "DPkg::Options::=--force-not-root",
            "install",
        ];
        args.extend_from_slice(packages);
        self.run(&args, &self.root);
        let status = fs::read_to_string(self.root.join("var/lib/dpkg/status")).unwrap();
        for p in packages {
            assert!(
                status.contains(&format!("Package: {p}\nStatus: install ok installed")),
                "{status}"
            );
        }
    }

    /// How many packages apt knows.
    pub(crate) fn available(&self) -> usize {
        let o = self.cmd("apt-cache").arg("dumpavail").output().unwrap();
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("Package: "))
            .count()
    }
}

/// A tree with one component in versions 1.0.0, 1.1.0 and 1.2.0 (one release each).
fn versions_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("tree");
    let mut project = String::from(
        "[module]\nname = \"vt\"\nkind = \"project\"\ndescription = \"Versions\"\nlicense = \"MIT\"\nvendor = \"Tests\"\n",
    );
    let mut component = String::from(
        "[module]\nname = \"vt.tool\"\nkind = \"component\"\ndescription = \"A tool in versions\"\npackage_name = \"vt-tool\"\n",
    );
    for minor in 0..3 {
        project.push_str(&format!(
            "\n[[configuration]]\nname = \"vt_R_1_{minor}_0_1\"\nversion = \"1.{minor}.0\"\nage = 1\nchildren = [\"tool_R_1_{minor}_0_1\"]\n[configuration.properties]\n\"package.maintainer\" = \"Tests <tests@example.org>\"\n"
        ));
        component.push_str(&format!(
            "\n[[configuration]]\nname = \"tool_R_1_{minor}_0_1\"\nversion = \"1.{minor}.0\"\nage = 1\ntag = \"v1.{minor}.0\"\ndescription = \"1.{minor}.0-1: release\"\n[configuration.commands]\ncheckout = \"true\"\n"
        ));
    }
    crate::support::write(&root.join("module.toml"), &project);
    crate::support::write(&root.join("tool/module.toml"), &component);
    root
}

/// Packs version 1.`minor`.0 of the versions tree into `out` with a given date.
fn pack_version(tree: &Path, minor: u32, out: &Path, epoch: &str) {
    pack_version_for(tree, minor, out, epoch, "el9_x86_64")
}

fn pack_version_for(tree: &Path, minor: u32, out: &Path, epoch: &str, platform: &str) {
    let prefix = out.with_extension("prefix");
    crate::support::write(
        &prefix.join("usr/share/vt-tool/version.txt"),
        &format!("1.{minor}.0\n"),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["pack", "--tree"])
        .arg(tree)
        .args(["--configuration", &format!("tool_R_1_{minor}_0_1")])
        .args(["--platform", platform, "--prefix"])
        .arg(&prefix)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every file and link below `dir` with its content's sha256 (a link: its target); of an
/// index directory's generations only the one shown (the others are a server's to remove
/// when it gets to them, after its answers).
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        let shown: Vec<std::path::PathBuf> = entries
            .iter()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .collect();
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && name.contains(".gen-")
                && !shown
                    .iter()
                    .any(|t| t.as_os_str() == e.file_name().as_os_str())
            {
                continue;
            }
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                go(root, &p, out);
            } else {
                out.insert(rel, format!("{:x}", Sha256::digest(fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

fn primary_names(data: &Path, repo: &str) -> Vec<String> {
    let docs = repodata_docs(&crate::support::tree(data, repo).join("yum/el9_x86_64"));
    let text = String::from_utf8(docs["primary"].clone()).unwrap();
    text.split("<location href=\"")
        .skip(1)
        .map(|s| {
            // packages/<hash>-<file>: the file name after the content hash.
            let name = s.split('"').next().unwrap().rsplit('/').next().unwrap();
            name.split_once('-').unwrap().1.to_string()
        })
        .collect()
}

#[test]
fn registered_repositories_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let (one, one_again) = (dir.path().join("one"), dir.path().join("one-rebuilt"));
    pack_version(&tree, 0, &one, "1700000000");
    pack_version(&tree, 0, &one_again, "1700009999");
    let d = &dir.path().join("data");
    py_json(d, &["repo", "create", "reg", "--kind", "registered"]);
    // Only registrations and externals go in: a plain publish is refused, naming
    // `register`, and leaves nothing.
    let plain = py(d, &["publish", "--repo", "reg", one.to_str().unwrap()]);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("packyard register"),
        "{}",
        stderr(&plain)
    );
    assert_eq!(py_json(d, &["repo", "show", "reg"])["packages"], 0);
    assert!(!crate::support::tree(d, "reg").join("vt").exists());
    fn external(dir: &Path) -> [&str; 5] {
        [
            "publish",
            "--repo",
            "reg",
            "--external",
            dir.to_str().unwrap(),
        ]
    }
    let first = py_json(d, &external(&one));
    assert!(first["files"].to_string().contains("added"), "{first}");
    assert!(
        first["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "added")
    );
    let before = snapshot(&crate::support::tree(d, "reg"));

    // The same files again: nothing to do, nothing rewritten.
    let again = py_json(d, &external(&one));
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged")
    );
    assert_eq!(again["indexes"], serde_json::json!([]));
    assert_eq!(snapshot(&crate::support::tree(d, "reg")), before);

    // Other bytes under the same name: refused, naming both checksums; nothing changes.
    let o = py(d, &external(&one_again));
    let err = stderr(&o);
    assert!(!o.status.success(), "overwrote: {err}");
    let old_sum = first["files"][0]["sha256"].as_str().unwrap();
    assert!(err.contains("registered repository reg"), "{err}");
    assert!(err.contains(old_sum), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert_eq!(snapshot(&crate::support::tree(d, "reg")), before);
    let shown = py_json(d, &["repo", "show", "reg"]);
    assert_eq!(shown["packages"], 2);
}

#[test]
fn volatile_repositories_can_be_deleted_and_registered_ones_cannot() {
    let (data, report) = published("el9_x86_64");
    let d = data.path();
    ed25519_key(d);
    publish_packed(d, "el9_x86_64", &[]);
    let held = report["files"].as_array().unwrap().len();
    assert!(held > 0);
    // Without --yes: nothing happens, and it says what would go.
    let before = snapshot(&crate::support::tree(d, "nightly"));
    let o = py(d, &["repo", "delete", "nightly"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("its {held} packages")), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(snapshot(&crate::support::tree(d, "nightly")), before);
    // With it: the records, files and key go.
    let gone = py_json(d, &["repo", "delete", "nightly", "--yes"]);
    assert_eq!(gone["packages"], held);
    assert_eq!(py_json(d, &["repo", "list"]), serde_json::json!([]));
    if !crate::support::on_postgres_s3() {
        let left: Vec<_> = fs::read_dir(d.join("repos")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
    let left = crate::support::blob_keys(d, "nightly");
    assert!(left.is_empty(), "{left:?}");
    assert!(
        crate::support::open_store(d)
            .secret_key("nightly")
            .unwrap()
            .is_none()
    );
    let o = py(d, &["repo", "show", "nightly"]);
    assert!(!o.status.success());
    // The name can be used again, from scratch.
    create_nightly(d, &[]);
    let again = publish_packed(d, "el9_x86_64", &[]);
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "added"),
        "{again}"
    );
    assert!(check_consistent(d, "nightly") > 0);
    // A registered repository is permanent.
    py_json(d, &["repo", "create", "reg", "--kind", "registered"]);
    let o = py(d, &["repo", "delete", "reg", "--yes"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("registered"), "{}", stderr(&o));
    assert_eq!(py_json(d, &["repo", "list"]).as_array().unwrap().len(), 2);
}

#[test]
fn volatile_repositories_replace_and_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &["--keep", "2"]);
    let out = |name: &str| dir.path().join(name);
    pack_version(&tree, 0, &out("v0"), "1700000000");
    pack_version(&tree, 0, &out("v0b"), "1700005555");
    pack_version(&tree, 1, &out("v1"), "1700100000");
    pack_version(&tree, 2, &out("v2"), "1700200000");
    py_json(
        d,
        &["publish", "--repo", "nightly", out("v0").to_str().unwrap()],
    );

    // A rebuild of the same version replaces it.
    let r = py_json(
        d,
        &["publish", "--repo", "nightly", out("v0b").to_str().unwrap()],
    );
    assert!(
        r["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "replaced"),
        "{r}"
    );
    let rpm_v0 = r["files"][1]["path"].as_str().unwrap().to_string();
    let v0b_rpm = fs::read_dir(out("v0b").join("vt/vt.tool/1.0.0/el9_x86_64"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".rpm"))
        .unwrap()
        .path();
    assert_eq!(
        fs::read(crate::support::tree(d, "nightly").join(&rpm_v0)).unwrap(),
        fs::read(v0b_rpm).unwrap()
    );

    py_json(
        d,
        &["publish", "--repo", "nightly", out("v1").to_str().unwrap()],
    );
    assert_eq!(
        primary_names(d, "nightly"),
        ["vt-tool-1.0.0-1.x86_64.rpm", "vt-tool-1.1.0-1.x86_64.rpm"]
    );
    // A third version: the oldest goes, from the index, the store and the disk.
    let r = py_json(
        d,
        &["publish", "--repo", "nightly", out("v2").to_str().unwrap()],
    );
    let removed: Vec<&str> = r["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 2, "{r}");
    assert!(removed.iter().all(|p| p.contains("/1.0.0/")), "{r}");
    assert_eq!(
        primary_names(d, "nightly"),
        ["vt-tool-1.1.0-1.x86_64.rpm", "vt-tool-1.2.0-1.x86_64.rpm"]
    );
    assert!(!crate::support::tree(d, "nightly").join(&rpm_v0).exists());
    // Only its index alias stays, for readers of the previous index (kept one
    // generation), which names it.
    let left = snapshot(&crate::support::tree(d, "nightly"));
    let of_v0: Vec<&String> = left.keys().filter(|k| k.contains("1.0.0")).collect();
    assert_eq!(of_v0.len(), 1, "{of_v0:?}");
    assert!(
        of_v0[0].starts_with("yum/el9_x86_64/packages/"),
        "{of_v0:?}"
    );
    assert_eq!(py_json(d, &["repo", "show", "nightly"])["packages"], 4);
}

/// `pack` of a configuration of the versions tree, returning the process output.
fn pack_conf(tree: &Path, data: &Path, conf: &str, out: &Path) -> Output {
    let prefix = out.with_extension("prefix");
    crate::support::write(&prefix.join("usr/share/vt-tool/version.txt"), "x\n");
    crate::support::packyard_at(data)
        .args(["pack", "--tree"])
        .arg(tree)
        .args([
            "--configuration",
            conf,
            "--platform",
            "el9_x86_64",
            "--prefix",
        ])
        .arg(&prefix)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

#[test]
fn lock_edit_clone_and_register() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let t = tree.to_str().unwrap();
    let d = &dir.path().join("data");
    py_json(d, &["repo", "create", "reg", "--kind", "registered"]);
    create_nightly(d, &[]);

    let locked = py_json(d, &["lock", "tool_R_1_0_0_1", "--tree", t]);
    assert_eq!(locked["new"], true);
    assert_eq!(locked["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        py_json(d, &["lock", "tool_R_1_0_0_1", "--tree", t])["new"],
        false
    );

    // Built from the locked configuration: registered, with the configuration recorded.
    let v0 = dir.path().join("v0");
    let o = pack_conf(&tree, d, "tool_R_1_0_0_1", &v0);
    assert!(o.status.success(), "{}", stderr(&o));
    let v0s = v0.to_str().unwrap();
    let r = py_json(
        d,
        &[
            "register",
            "tool_R_1_0_0_1",
            "--tree",
            t,
            "--repo",
            "reg",
            v0s,
        ],
    );
    assert_eq!(r["files"].as_array().unwrap().len(), 2, "{r}");
    // Only into registered repositories.
    let o = py(
        d,
        &[
            "register",
            "tool_R_1_0_0_1",
            "--tree",
            t,
            "--repo",
            "nightly",
            v0s,
        ],
    );
    assert!(
        stderr(&o).contains("nightly is a volatile repository"),
        "{}",
        stderr(&o)
    );

    // Signed on the way in: rpm -K accepts the signature, and registering the same files
    // again changes nothing (the signature is made at the package's build time).
    py_json(d, &["repo", "create", "reg-signed", "--kind", "registered"]);
    py_json(d, &["key", "generate", "--repo", "reg-signed"]);
    let args = [
        "register",
        "tool_R_1_0_0_1",
        "--tree",
        t,
        "--repo",
        "reg-signed",
        "--sign",
        v0s,
    ];
    let signed = py_json(d, &args);
    let again = py_json(d, &args);
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{again}"
    );
    let rpm_key = signed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .find(|p| p.ends_with(".rpm"))
        .unwrap_or_else(|| panic!("no RPM in {signed}"));
    let key_file = dir.path().join("reg-signed.asc");
    fs::write(
        &key_file,
        stdout(&py(d, &["key", "export", "--repo", "reg-signed"])),
    )
    .unwrap();
    assert_rpm_signed(
        &dir.path().join("rpmdb"),
        &key_file,
        &crate::support::tree(d, "reg-signed").join(rpm_key),
    );

    // Packages of another configuration are not registered under this one.
    let v1 = dir.path().join("v1");
    assert!(pack_conf(&tree, d, "tool_R_1_1_0_1", &v1).status.success());
    let before = snapshot(&crate::support::tree(d, "reg"));
    let o = py(
        d,
        &[
            "register",
            "tool_R_1_0_0_1",
            "--tree",
            t,
            "--repo",
            "reg",
            v1.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("not built from tool_R_1_0_0_1"), "{err}");
    assert_eq!(snapshot(&crate::support::tree(d, "reg")), before);
    // Nor a package whose header is another version, even at the right path.
    let forged = dir.path().join("forged");
    copy_tree(&v1, &forged);
    let from = forged.join("vt/vt.tool/1.1.0");
    fs::rename(&from, forged.join("vt/vt.tool/1.0.0")).unwrap();
    let dir0 = forged.join("vt/vt.tool/1.0.0/el9_x86_64");
    fs::rename(
        dir0.join("vt-tool-1.1.0-1.x86_64.rpm"),
        dir0.join("vt-tool-1.0.0-1.x86_64.rpm"),
    )
    .unwrap();
    fs::remove_file(dir0.join("vt-tool-1.1.0-1.tar.gz")).unwrap();
    let o = py(
        d,
        &[
            "register",
            "tool_R_1_0_0_1",
            "--tree",
            t,
            "--repo",
            "reg",
            forged.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("vt-tool-1.1.0-1"), "{}", stderr(&o));

    // Edit the locked entry: pack and register refuse, naming the change.
    let file = tree.join("tool/module.toml");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(
        &file,
        text.replacen("1.0.0-1: release", "1.0.0-1: edited", 1),
    )
    .unwrap();
    let out = dir.path().join("after-edit");
    let o = pack_conf(&tree, d, "tool_R_1_0_0_1", &out);
    let err = stderr(&o);
    assert!(!o.status.success(), "packed an edited locked configuration");
    assert!(err.contains("tool_R_1_0_0_1 is locked"), "{err}");
    assert!(
        err.contains("description: \"1.0.0-1: release\" → \"1.0.0-1: edited\""),
        "{err}"
    );
    assert!(
        err.contains("packyard clone tool_R_1_0_0_1 --version"),
        "{err}"
    );
    assert!(!out.exists());
    let o = py(
        d,
        &[
            "register",
            "tool_R_1_0_0_1",
            "--tree",
            t,
            "--repo",
            "reg",
            v0s,
        ],
    );
    assert!(stderr(&o).contains("is locked"), "{}", stderr(&o));

    // Clone: a new configuration entry, which packs.
    let c = py_json(
        d,
        &["clone", "tool_R_1_0_0_1", "--tree", t, "--version", "1.0.1"],
    );
    assert_eq!(c["configuration"], "tool_R_1_0_1_1");
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("name = \"tool_R_1_0_1_1\"\nversion = \"1.0.1\"\nage = 1"),
        "{text}"
    );
    let out = dir.path().join("cloned");
    let o = pack_conf(&tree, d, "tool_R_1_0_1_1", &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.join("vt/vt.tool/1.0.1/el9_x86_64/vt-tool-1.0.1-1.x86_64.rpm")
            .is_file()
    );
}

/// Checks that every index of `repo` names only files that exist with the stated sizes
/// and checksums, and that signatures verify. Returns how many packages the indexes name.
pub(crate) fn check_consistent(data: &Path, repo: &str) -> usize {
    use sha2::{Digest, Sha256};
    let root = crate::support::tree(data, repo);
    let ring = data.join("check-keyring.gpg");
    if root.join("key.asc").exists() && !ring.exists() {
        keyring(&root.join("key.asc"), &ring);
    }
    let gpgv = |args: &[&Path]| {
        if ring.exists() {
            let o = Command::new("gpgv")
                .arg("--keyring")
                .arg(&ring)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "gpgv {args:?}: {}", stderr(&o));
        }
    };
    let mut named = 0;
    for p in fs::read_dir(root.join("yum"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let base = p.path();
        if !base.join("repodata").exists() {
            continue;
        }
        gpgv(&[
            &base.join("repodata/repomd.xml.asc"),
            &base.join("repodata/repomd.xml"),
        ]);
        let docs = repodata_docs(&base);
        let primary = String::from_utf8(docs["primary"].clone()).unwrap();
        for pkg in primary.split("<package type=\"rpm\">").skip(1) {
            let sum = pkg
                .split("pkgid=\"YES\">")
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap();
            let href = pkg
                .split("<location href=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let bytes = fs::read(base.join(href)).unwrap_or_else(|e| panic!("{href}: {e}"));
            assert_eq!(format!("{:x}", Sha256::digest(&bytes)), sum, "{href}");
            named += 1;
        }
    }
    for s in fs::read_dir(root.join("apt/dists"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dists = s.path();
        if s.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        gpgv(&[&dists.join("InRelease")]);
        gpgv(&[&dists.join("Release.gpg"), &dists.join("Release")]);
        let release = fs::read_to_string(dists.join("Release")).unwrap();
        for line in release.split("SHA256:\n").nth(1).unwrap().lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let bytes = fs::read(dists.join(parts[2])).unwrap();
            assert_eq!(
                format!("{:x}", Sha256::digest(&bytes)),
                parts[0],
                "{}",
                parts[2]
            );
            // The compressed copies hold exactly the plain file (read as apt reads them:
            // xz as one stream, gzip members in sequence).
            let plain = |ext: &str| fs::read(dists.join(parts[2].trim_end_matches(ext))).unwrap();
            if parts[2].ends_with(".xz") {
                let mut out = Vec::new();
                xz2::read::XzDecoder::new(bytes.as_slice())
                    .read_to_end(&mut out)
                    .unwrap();
                assert!(
                    out == plain(".xz"),
                    "{} does not unpack to Packages",
                    parts[2]
                );
            }
            if parts[2].ends_with(".gz") {
                let gz = gunzip(&bytes) == plain(".gz");
                assert!(gz, "{} does not unpack to Packages", parts[2]);
            }
            if parts[2].ends_with("/Packages") {
                for st in stanzas(&String::from_utf8(bytes.clone()).unwrap()).values() {
                    let field = |k: &str| {
                        st.lines()
                            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                            .unwrap()
                            .to_string()
                    };
                    let file = root.join("apt").join(field("Filename"));
                    let deb = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    assert_eq!(format!("{:x}", Sha256::digest(&deb)), field("SHA256"));
                    named += 1;
                }
            }
            // Every file of every source package, in its directory, with its sha256.
            if parts[2].ends_with("/Sources") {
                let text = String::from_utf8(bytes).unwrap();
                for st in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
                    let dir = st
                        .lines()
                        .find_map(|l| l.strip_prefix("Directory: "))
                        .unwrap();
                    let sums = st.split("Checksums-Sha256:\n").nth(1).unwrap();
                    for line in sums.lines().take_while(|l| l.starts_with(' ')) {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        let file = root.join("apt").join(dir).join(f[2]);
                        let got =
                            fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                        assert_eq!(format!("{:x}", Sha256::digest(&got)), f[0], "{f:?}");
                    }
                    named += 1;
                }
            }
        }
    }
    named
}

/// dnf and apt-get read repository `nightly` (signed) without a complaint.
fn clients_read(data: &Path, work: &Path) {
    let repo = crate::support::tree(data, "nightly");
    let key = repo.join("key.asc");
    if repo.join("yum/el9_x86_64/repodata").exists() && have_tool("dnf", &["--version"]) {
        let listed = dnf(
            work,
            &repo.join("yum/el9_x86_64"),
            Some(&key),
            &["list", "--available"],
        );
        assert!(listed.contains("nightly"), "{listed}");
    }
    if repo.join("apt/dists/deb12").exists() && have_tool("apt-get", &["--version"]) {
        let apt = AptRoot::new(&work.join("apt"), &repo);
        apt.update(&[]);
        assert!(apt.available() > 0);
    }
}

#[test]
fn a_killed_publish_leaves_a_consistent_repository() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &["--keep", "2"]);
    ed25519_key(d);
    // Rebuilds with other dates give other bytes, so every publish has work to do.
    let mut inputs = Vec::new();
    for i in 0..24u32 {
        let out = dir.path().join(format!("in{i}"));
        let platform = if i % 2 == 0 {
            "el9_x86_64"
        } else {
            "deb12_amd64"
        };
        pack_version_for(
            &tree,
            i % 3,
            &out,
            &(1_700_000_000 + i).to_string(),
            platform,
        );
        inputs.push(out);
    }
    let fixture = [packed("el9_x86_64"), packed("deb12_amd64")];
    // How long a whole publish takes here, at its fastest: the kill points are spread over
    // it. The fastest of four, so a probe slowed by other work on the machine does not put
    // the kill points after the end of the publishes that follow.
    let mut whole = std::time::Duration::MAX;
    for (i, platform) in ["el9_x86_64", "deb12_amd64"]
        .into_iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        let probe = dir.path().join(format!("probe{i}"));
        pack_version_for(&tree, 0, &probe, &(1_600_000_000 + i).to_string(), platform);
        let start = std::time::Instant::now();
        let o = py(
            d,
            &[
                "publish",
                "--repo",
                "nightly",
                "--sign",
                probe.to_str().unwrap(),
                fixture[i % 2].to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        whole = whole.min(start.elapsed());
    }
    let mut killed = 0;
    for (i, input) in inputs.iter().enumerate() {
        let mut child = crate::support::packyard_at(d)
            .args(["publish", "--repo", "nightly", "--sign"])
            .arg(input)
            .arg(fixture[i % 2])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a different point each time, from at once to about when it is done.
        std::thread::sleep(whole * i as u32 / inputs.len() as u32);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            // It was done before the kill: publishes run faster now than the probes did.
            whole = whole * 3 / 4;
        }
        let _ = child.kill();
        let _ = child.wait();
        check_consistent(d, "nightly");
        // Now and then, the real clients read it as it is.
        if i % 8 == 5 {
            clients_read(d, &dir.path().join(format!("clients{i}")));
        }
    }
    assert!(
        killed >= 8,
        "only {killed} publishes were interrupted (a whole one takes {whole:?})"
    );
    // A publish that runs to its end repairs what the killed ones left pending.
    let last = py_json(
        d,
        &[
            "publish",
            "--repo",
            "nightly",
            fixture[0].to_str().unwrap(),
            fixture[1].to_str().unwrap(),
        ],
    );
    assert!(last["files"].is_array());
    let named = check_consistent(d, "nightly");
    assert!(named >= 12, "{named} packages indexed");
    clients_read(d, &dir.path().join("clients-end"));
    let shown = py_json(d, &["repo", "show", "nightly"]);
    assert!(shown["pending"].as_array().unwrap().is_empty(), "{shown}");
}

#[test]
fn concurrent_publishes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let mut inputs = vec![packed("el9_x86_64").to_path_buf()];
    for minor in 0..3 {
        let out = dir.path().join(format!("v{minor}"));
        pack_version(&tree, minor, &out, "1700000000");
        inputs.push(out);
    }
    // All at once: one process holds the store at a time, the others wait for it.
    let children: Vec<_> = inputs
        .iter()
        .map(|input| {
            crate::support::packyard_at(d)
                .args(["publish", "--repo", "nightly"])
                .arg(input)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(py_json(d, &["repo", "show", "nightly"])["packages"], 18);
    assert_eq!(check_consistent(d, "nightly"), 9);
}

/// Runs a publish that must fail; checks the message and that neither the repository
/// tree nor the store changed.
fn publish_refused(d: &Path, repo: &str, args: &[&str], expect: &[&str]) {
    let before = snapshot(&crate::support::tree(d, repo));
    let count = py_json(d, &["repo", "show", repo])["packages"].clone();
    let mut all = vec!["publish", "--repo", repo];
    all.extend_from_slice(args);
    let o = py(d, &all);
    let err = stderr(&o);
    assert!(!o.status.success(), "published anyway: {args:?}");
    for e in expect {
        assert!(err.contains(e), "`{e}` not in: {err}");
    }
    assert!(err.contains("hint: "), "no hint: {err}");
    assert_eq!(
        snapshot(&crate::support::tree(d, repo)),
        before,
        "tree changed"
    );
    assert_eq!(py_json(d, &["repo", "show", repo])["packages"], count);
}

#[test]
fn bad_packages_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    py_json(
        d,
        &[
            "repo",
            "create",
            "el",
            "--kind",
            "volatile",
            "--platforms",
            "el9_x86_64",
        ],
    );
    let good = dir.path().join("good");
    pack_version(&tree, 0, &good, "1700000000");
    py_json(d, &["publish", "--repo", "el", good.to_str().unwrap()]);
    let rpm = |root: &Path| root.join("vt/vt.tool/1.0.0/el9_x86_64/vt-tool-1.0.0-1.x86_64.rpm");

    // A truncated RPM among good files: the whole publish is refused.
    let cut = dir.path().join("cut");
    pack_version(&tree, 0, &cut, "1700000001");
    let bytes = fs::read(rpm(&cut)).unwrap();
    fs::write(rpm(&cut), &bytes[..bytes.len() / 2]).unwrap();
    publish_refused(
        d,
        "el",
        &[cut.to_str().unwrap()],
        &["vt-tool-1.0.0-1.x86_64.rpm", "RPM"],
    );

    // One flipped byte in the payload: the digests say so.
    let flipped = dir.path().join("flipped");
    pack_version(&tree, 0, &flipped, "1700000002");
    let mut bytes = fs::read(rpm(&flipped)).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    fs::write(rpm(&flipped), &bytes).unwrap();
    publish_refused(d, "el", &[flipped.to_str().unwrap()], &["digest"]);

    // Not a package at all, and a name that says DEB but holds junk.
    let junk = dir.path().join("junk");
    crate::support::write(&junk.join("el9_x86_64/notes.txt"), "hello");
    publish_refused(
        d,
        "el",
        &[junk.to_str().unwrap()],
        &["notes.txt", "not a package"],
    );
    let fake = dir.path().join("fake.deb");
    fs::write(&fake, b"!<arch>\nnot really").unwrap();
    publish_refused(
        d,
        "el",
        &["--platform", "el9_x86_64", fake.to_str().unwrap()],
        &["fake.deb", "not a valid DEB"],
    );

    // A symlink in a tree (it could point anywhere).
    let linked = dir.path().join("linked");
    copy_tree(&good, &linked);
    std::os::unix::fs::symlink("/etc/passwd", linked.join("vt/passwd.rpm")).unwrap();
    publish_refused(
        d,
        "el",
        &[linked.to_str().unwrap()],
        &["passwd.rpm", "symlink"],
    );

    // A loose file needs a platform; the repository takes only el9_x86_64.
    let loose = rpm(&good);
    let loose = loose.to_str().unwrap();
    publish_refused(d, "el", &[loose], &["no platform", "--platform"]);
    publish_refused(
        d,
        "el",
        &["--platform", "deb12_amd64", loose],
        &["takes platforms el9_x86_64"],
    );
    let deb = dir.path().join("deb");
    pack_version_for(&tree, 0, &deb, "1700000000", "deb12_amd64");
    publish_refused(d, "el", &[deb.to_str().unwrap()], &["deb12_amd64"]);
}

#[test]
fn loose_files_go_to_name_version_platform() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let out = dir.path().join("v1");
    pack_version(&tree, 1, &out, "1700000000");
    let dir1 = out.join("vt/vt.tool/1.1.0/el9_x86_64");
    let r = py_json(
        d,
        &[
            "publish",
            "--repo",
            "nightly",
            "--platform",
            "el9_x86_64",
            dir1.join("vt-tool-1.1.0-1.x86_64.rpm").to_str().unwrap(),
            dir1.join("vt-tool-1.1.0-1.tar.gz").to_str().unwrap(),
        ],
    );
    let paths: Vec<&str> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "vt-tool/1.1.0/el9_x86_64/vt-tool-1.1.0-1.x86_64.rpm",
            "vt-tool/1.1.0/el9_x86_64/vt-tool-1.1.0-1.tar.gz"
        ]
    );
    for p in paths {
        assert!(crate::support::tree(d, "nightly").join(p).is_file(), "{p}");
    }
    assert_eq!(check_consistent(d, "nightly"), 1);
}

#[test]
fn an_imported_gpg_key_signs_the_indexes() {
    if !have_tool("gpg", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("gnupg");
    fs::create_dir_all(&home).unwrap();
    let gpg = |args: &[&str]| {
        let o = Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "gpg {args:?}: {}", stderr(&o));
        o.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "Release Team <release@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let secret = dir.path().join("secret.asc");
    fs::write(&secret, gpg(&["--armor", "--export-secret-keys"])).unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    publish_packed(d, "deb12_amd64", &[]);
    // Importing signs what is already there.
    let info = py_json(
        d,
        &[
            "key",
            "import",
            "--repo",
            "nightly",
            secret.to_str().unwrap(),
        ],
    );
    assert_eq!(info["user_id"], "Release Team <release@example.org>");
    let listed = String::from_utf8(gpg(&["--with-colons", "--fingerprint"])).unwrap();
    let fpr = info["fingerprint"].as_str().unwrap();
    assert!(listed.contains(fpr), "{fpr} not in {listed}");
    check_consistent(d, "nightly");
    // A second key needs --force; a junk file is refused with a hint.
    let o = py(
        d,
        &[
            "key",
            "import",
            "--repo",
            "nightly",
            secret.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("already has a key"), "{}", stderr(&o));
    let junk = dir.path().join("junk.asc");
    fs::write(&junk, "-----BEGIN PGP PRIVATE KEY BLOCK-----\nnope\n").unwrap();
    let o = py(
        d,
        &[
            "key",
            "import",
            "--repo",
            "nightly",
            "--force",
            junk.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("hint: "), "{}", stderr(&o));
    assert_eq!(
        py_json(d, &["repo", "show", "nightly"])["key"]
            .as_str()
            .unwrap(),
        fpr
    );
    // A key that no longer loads stops a publish; indexes never go out unsigned.
    crate::support::open_store(d)
        .put_secret_key("nightly", "damaged")
        .unwrap();
    let before = snapshot(&crate::support::tree(d, "nightly"));
    let fixture = packed("el9_x86_64").to_str().unwrap().to_string();
    let o = py(d, &["publish", "--repo", "nightly", &fixture]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not an armored OpenPGP secret key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        snapshot(&crate::support::tree(d, "nightly")),
        before,
        "indexes written without a key"
    );
}

#[test]
fn package_paths_cannot_reach_into_the_index_trees() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let good = dir.path().join("good");
    pack_version(&tree, 0, &good, "1700000000");
    py_json(d, &["publish", "--repo", "nightly", good.to_str().unwrap()]);
    // A tree whose paths would land inside yum/ (and so inside a repodata generation).
    let sneaky = dir.path().join("sneaky");
    let rpm = good.join("vt/vt.tool/1.0.0/el9_x86_64/vt-tool-1.0.0-1.x86_64.rpm");
    let inside = sneaky.join("yum/el9_x86_64/repodata");
    fs::create_dir_all(&inside).unwrap();
    fs::copy(&rpm, inside.join("vt-tool-1.0.0-1.x86_64.rpm")).unwrap();
    publish_refused(
        d,
        "nightly",
        &["--platform", "el9_x86_64", sneaky.to_str().unwrap()],
        &["holds the repository's indexes"],
    );
}

#[test]
fn an_older_version_than_keep_allows_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &["--keep", "1"]);
    let (new, old) = (dir.path().join("v2"), dir.path().join("v0"));
    pack_version(&tree, 2, &new, "1700000000");
    pack_version(&tree, 0, &old, "1700000000");
    py_json(d, &["publish", "--repo", "nightly", new.to_str().unwrap()]);
    // 1.0.0 after 1.2.0 with --keep 1: added and pruned at once.
    let r = py_json(d, &["publish", "--repo", "nightly", old.to_str().unwrap()]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(primary_names(d, "nightly"), ["vt-tool-1.2.0-1.x86_64.rpm"]);
    assert_eq!(py_json(d, &["repo", "show", "nightly"])["packages"], 2);
    let left = snapshot(&crate::support::tree(d, "nightly"));
    assert!(!left.keys().any(|k| k.contains("1.0.0")), "{left:?}");
    check_consistent(d, "nightly");
    let o = py(
        d,
        &[
            "repo", "create", "zero", "--kind", "volatile", "--keep", "0",
        ],
    );
    assert!(stderr(&o).contains("--keep 0"), "{}", stderr(&o));
}

#[test]
fn an_arch_all_package_shared_by_two_platforms_stays_listed_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pack_version_for(&tree, 0, &a, "1700000000", "deb12_all");
    pack_version_for(&tree, 0, &b, "1700000001", "deb12_all");
    let deb = |root: &Path| {
        root.join("vt/vt.tool/1.0.0/deb12_all/vt-tool_1.0.0-1_deb12_all.deb")
            .to_str()
            .unwrap()
            .to_string()
    };
    for platform in ["deb12_amd64", "deb12_arm64"] {
        py_json(
            d,
            &[
                "publish",
                "--repo",
                "nightly",
                "--platform",
                platform,
                &deb(&a),
            ],
        );
    }
    // A rebuild for one platform only: the other still lists (and has) its file.
    py_json(
        d,
        &[
            "publish",
            "--repo",
            "nightly",
            "--platform",
            "deb12_amd64",
            &deb(&b),
        ],
    );
    assert_eq!(check_consistent(d, "nightly"), 4);
}

#[test]
fn a_client_on_the_previous_index_still_finds_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pack_version(&tree, 0, &a, "1700000000");
    pack_version(&tree, 1, &b, "1700000000");
    py_json(d, &["publish", "--repo", "nightly", a.to_str().unwrap()]);
    let base = crate::support::tree(d, "nightly").join("yum/el9_x86_64");
    let old = fs::read_to_string(base.join("repodata/repomd.xml")).unwrap();
    py_json(d, &["publish", "--repo", "nightly", b.to_str().unwrap()]);
    let base = crate::support::tree(d, "nightly").join("yum/el9_x86_64");
    assert_ne!(
        fs::read_to_string(base.join("repodata/repomd.xml")).unwrap(),
        old
    );
    // What the previous repomd.xml named is still there, with its bytes.
    for r in repomd_records(&old) {
        assert!(base.join(&r["href"]).is_file(), "{} is gone", r["href"]);
    }
}

/// The package files an index names, relative to the tree base: YUM `location href`s of
/// the primary a repomd.xml names, or APT `Filename`s of a Packages file.
fn named_by(base: &Path, index: &str) -> Vec<String> {
    let text = if index.contains("<repomd") {
        let primary = repomd_records(index)
            .into_iter()
            .find(|r| r["type"] == "primary")
            .unwrap();
        let mut xml = String::new();
        // Segments are gzip members of their own.
        flate2::read::MultiGzDecoder::new(fs::File::open(base.join(&primary["href"])).unwrap())
            .read_to_string(&mut xml)
            .unwrap();
        xml
    } else {
        index.to_string()
    };
    let mut out = Vec::new();
    for part in text.split("<location href=\"").skip(1) {
        out.push(part.split('"').next().unwrap().to_string());
    }
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("Filename: ") {
            out.push(f.to_string());
        }
    }
    assert!(!out.is_empty(), "{index}");
    out
}

#[test]
fn a_replaced_package_stays_while_a_kept_index_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = versions_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let packages = "dists/deb12/main/binary-amd64/Packages";
    // The same package rebuilt three times (other dates, other bytes), each published over
    // the one before. What each index named, before the next publish.
    let mut named: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for (i, epoch) in ["1700000000", "1700000100", "1700000200"]
        .iter()
        .enumerate()
    {
        let out = dir.path().join(format!("build{i}"));
        pack_version_for(&tree, 0, &out, epoch, "el9_x86_64");
        pack_version_for(&tree, 0, &out, epoch, "deb12_amd64");
        let r = py_json(d, &["publish", "--repo", "nightly", out.to_str().unwrap()]);
        if i > 0 {
            assert!(r["files"].to_string().contains("replaced"), "{r}");
        }
        let yum = crate::support::tree(d, "nightly").join("yum/el9_x86_64");
        let apt = crate::support::tree(d, "nightly").join("apt");
        let repomd = fs::read_to_string(yum.join("repodata/repomd.xml")).unwrap();
        named.push((
            named_by(&yum, &repomd),
            named_by(&apt, &fs::read_to_string(apt.join(packages)).unwrap()),
        ));
        // What the current index and the one before it (kept for readers in flight)
        // name is there; what only older ones named is gone.
        for (k, (rpms, debs)) in named.iter().enumerate() {
            let kept = k + 1 >= named.len().saturating_sub(1);
            for (base, f) in rpms
                .iter()
                .map(|f| (&yum, f))
                .chain(debs.iter().map(|f| (&apt, f)))
            {
                assert_eq!(
                    base.join(f).is_file(),
                    kept,
                    "after publish {i}: {f} of publish {k} {}",
                    if kept { "is gone" } else { "was kept" }
                );
            }
        }
    }
    check_consistent(d, "nightly");
}

#[test]
fn a_new_repository_is_valid_before_its_first_publish() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let repo = crate::support::tree(d, "nightly");
    let yum = repo.join("yum/el9_x86_64");
    // Empty indexes from the start, of every platform it takes; no key yet.
    assert!(yum.join("repodata/repomd.xml").is_file());
    assert!(repo.join("apt/dists/deb12/Release").is_file());
    assert!(!repo.join("key.asc").exists());
    ed25519_key(d);
    let repo = crate::support::tree(d, "nightly");
    let yum = repo.join("yum/el9_x86_64");
    // Signed once it has a key, and the key beside them.
    assert!(repo.join("key.asc").is_file());
    assert!(yum.join("repodata/repomd.xml.asc").is_file());
    assert!(repo.join("apt/dists/deb12/InRelease").is_file());
    check_consistent(d, "nightly");
    if have_tool("dnf", &["--version"]) {
        let out = dnf(
            &dir.path().join("dnf"),
            &yum,
            Some(&repo.join("key.asc")),
            &["makecache"],
        );
        assert!(out.contains("Metadata cache created"), "{out}");
    }
    if have_tool("apt-get", &["--version"]) {
        // (apt fetches no Packages file that Release lists as empty.)
        let apt = AptRoot::new(&dir.path().join("apt"), &repo);
        let out = apt.run(&["update"], &apt.root);
        assert!(!out.contains("W:") && !out.contains("E:"), "{out}");
        assert_eq!(apt.available(), 0);
    }
    // The build node's plan finds it by its directory and by its name in --data.
    let tree = crate::support::fixture("trees/my-project");
    for spec in [repo.to_str().unwrap(), "nightly"] {
        let o = py(
            d,
            &[
                "resolve",
                "--tree",
                tree.to_str().unwrap(),
                "--configuration",
                "web_server_R_2_5_1_1",
                "--platform",
                "el9_x86_64",
                "--repo",
                spec,
                "--json",
            ],
        );
        assert!(o.status.success(), "--repo {spec}: {}", stderr(&o));
        let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // A name reads the repository where its backends keep it.
        let place = if spec == "nightly" && crate::support::on_postgres_s3() {
            "/nightly".to_string()
        } else {
            repo.to_string_lossy().into_owned()
        };
        assert!(plan.to_string().contains(&place), "--repo {spec}: {plan}");
    }
}
