//! Source packages: `pack --source` of every component of the fixture release, judged by
//! dpkg-source, lintian and dpkg-buildpackage — and what the source package rebuilds
//! compared with packyard's own binary package of the same configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{FIXTURE_TREE, have_tool, packed, root, sh, stderr, stdout};

/// A fresh checkout of `configuration` (its `checkout` target run in `ws`), and its module.
pub(crate) fn checkout(ws: &Path, configuration: &str, platform: &str) -> PathBuf {
    let r = crate::support::shown(configuration, platform, ws);
    let module = r["module"].as_str().unwrap();
    let command = r["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "checkout")
        .unwrap()["command"]
        .as_str()
        .unwrap();
    std::fs::create_dir_all(ws).unwrap();
    sh(command, ws);
    ws.join(module)
}

/// `pack --source` of `configuration` for Debian 12 into `out`; the files, by name.
pub(crate) fn pack_source(
    configuration: &str,
    checkout: &Path,
    out: &Path,
) -> BTreeMap<String, Vec<u8>> {
    pack_source_for(configuration, "deb12_amd64", checkout, out)
}

/// `pack --source` of `configuration` for `platform` into `out`; the files, by name.
fn pack_source_for(
    configuration: &str,
    platform: &str,
    checkout: &Path,
    out: &Path,
) -> BTreeMap<String, Vec<u8>> {
    pack_source_with(configuration, platform, checkout, out, &[])
}

/// [`pack_source_for`] with more arguments (`-p KEY=VALUE`).
fn pack_source_with(
    configuration: &str,
    platform: &str,
    checkout: &Path,
    out: &Path,
    extra: &[&str],
) -> BTreeMap<String, Vec<u8>> {
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["pack", "--source", "--json", "--tree", FIXTURE_TREE])
        .args(["--configuration", configuration, "--platform", platform])
        .args(extra)
        .arg("--checkout")
        .arg(checkout)
        .arg("--out")
        .arg(out)
        .current_dir(root())
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .output()
        .unwrap();
    assert!(o.status.success(), "{configuration}: {}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let path = a["path"].as_str().unwrap();
            let name = path.rsplit('/').next().unwrap().to_string();
            (name, std::fs::read(out.join(path)).unwrap())
        })
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a DEB says of itself that a rebuild must keep: its files (mode, owner, path),
/// relation fields (as sets: dpkg orders alternatives its own way), conffiles,
/// maintainer scripts, and md5sums.
pub(crate) fn deb_facts(deb: &Path) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let files: Vec<String> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", f[0], f[1], f[5..].join(" "))
        })
        .collect();
    facts.insert("files".into(), files.join("\n"));
    for field in [
        "Package",
        "Version",
        "Architecture",
        "Depends",
        "Pre-Depends",
        "Recommends",
        "Breaks",
        "Conflicts",
        "Provides",
        "Replaces",
        "Section",
        "Priority",
        "Homepage",
        "Maintainer",
        "Description",
        "Installed-Size",
    ] {
        let v = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
        let set: BTreeSet<&str> = v.trim().split(", ").collect();
        facts.insert(field.into(), format!("{set:?}"));
    }
    for member in [
        "conffiles",
        "md5sums",
        "preinst",
        "postinst",
        "prerm",
        "postrm",
    ] {
        let o = Command::new("dpkg-deb")
            .arg("-I")
            .arg(deb)
            .arg(member)
            .output()
            .unwrap();
        facts.insert(
            member.into(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        );
    }
    facts
}

/// The programs of an unpacked package (`usr/bin`, `usr/sbin`), each run with
/// `--version`: what each prints.
pub(crate) fn programs(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for sub in ["usr/bin", "usr/sbin"] {
        let Ok(list) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in list.flatten() {
            let said = run(Command::new(e.path())
                .arg("--version")
                .env("WEB_SERVER_CONF", dir.join("etc/web_server/web.conf")));
            out.insert(format!("{sub}/{}", e.file_name().to_string_lossy()), said);
        }
    }
    out
}

#[test]
fn debian_source_packages_rebuild_into_packyards_own_packages() {
    if !have_tool("dpkg-buildpackage", &["--version"]) || !have_tool("lintian", &["--version"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let built = packed("deb12_amd64");
    let mut debs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in crate::support::files_under(built) {
        if e.extension().is_some_and(|x| x == "deb") {
            let name = run(Command::new("dpkg-deb").arg("-f").arg(&e).arg("Package"));
            debs.insert(name.trim().to_string(), e);
        }
    }
    let mut checked = 0;
    for b in crate::support::release("deb12_amd64") {
        let c = &b.configuration;
        let ws = t.path().join("ws").join(c);
        let co = checkout(&ws, c, "deb12_amd64");
        // Byte-reproducible: packed twice, the same bytes.
        let first = pack_source(c, &co, &t.path().join("out1").join(c));
        let again = pack_source(c, &co, &t.path().join("out2").join(c));
        assert_eq!(first, again, "{c}: packed twice, other bytes");
        assert_eq!(first.len(), 3, "{c}: {:?}", first.keys());
        let dsc = first.keys().find(|n| n.ends_with(".dsc")).unwrap().clone();
        let dir = t.path().join("src").join(c);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &first {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        // lintian: no errors.
        let lint = crate::pack::lintian_in(t.path())
            .args(["-E", "--no-cfg"])
            .arg(dir.join(&dsc))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&lint.stdout);
        assert!(
            !said.lines().any(|l| l.starts_with("E:")),
            "{c}: lintian: {said}"
        );
        // dpkg-source checks every checksum the .dsc gives; dpkg-buildpackage rebuilds.
        let unpacked = dir.join("unpacked");
        run(Command::new("dpkg-source")
            .arg("-x")
            .arg(dir.join(&dsc))
            .arg(&unpacked));
        // Build dependencies are the fixture's own packages, not installed on this host.
        run(Command::new("dpkg-buildpackage")
            .args(["-b", "-us", "-uc", "-d"])
            .current_dir(&unpacked));
        let rebuilt = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .unwrap_or_else(|| panic!("{c}: dpkg-buildpackage made no .deb"));
        let name = run(Command::new("dpkg-deb")
            .arg("-f")
            .arg(&rebuilt)
            .arg("Package"));
        let ours = &debs[name.trim()];
        let (a, b2) = (deb_facts(ours), deb_facts(&rebuilt));
        for (k, v) in &a {
            assert_eq!(
                &b2[k], v,
                "{c}: {k} differs between packyard's DEB and the rebuild"
            );
        }
        // The programs in them run, and say the same.
        let (xa, xb) = (dir.join("x-ours"), dir.join("x-rebuilt"));
        run(Command::new("dpkg-deb").arg("-x").arg(ours).arg(&xa));
        run(Command::new("dpkg-deb").arg("-x").arg(&rebuilt).arg(&xb));
        assert_eq!(programs(&xa), programs(&xb), "{c}");
        checked += 1;
    }
    assert!(checked >= 5, "{checked} components checked");
}

/// What an RPM says of itself that a rebuild must keep: files (mode, owner, group, path),
/// requirements and provides (as sets: rpmbuild lists `/bin/sh` once per scriptlet kind),
/// config files, scriptlets (their text, as rpmbuild trims it) and the changelog.
fn rpm_facts(rpm: &Path) -> BTreeMap<String, String> {
    let q = |args: &[&str]| run(Command::new("rpm").arg("-qp").args(args).arg(rpm));
    let set = |text: String| {
        let lines: BTreeSet<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        format!("{lines:?}")
    };
    let mut facts = BTreeMap::new();
    let files: Vec<String> = q(&["-lv"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[2], f[3], f[f.len() - 1])
        })
        .collect();
    facts.insert("files".into(), files.join("\n"));
    // rtld(GNU_HASH) is what EL's rpmbuild adds for a GNU-hashed ELF file (packyard
    // writes it as EL's would); the test host's rpmbuild (Debian's) does not.
    let requires = q(&["--requires"])
        .lines()
        .filter(|l| !l.starts_with("rtld("))
        .collect::<Vec<_>>()
        .join("\n");
    facts.insert("requires".into(), set(requires));
    facts.insert("provides".into(), set(q(&["--provides"])));
    facts.insert("config".into(), q(&["--configfiles"]));
    facts.insert("changelog".into(), q(&["--changelog"]));
    let scripts: Vec<String> = q(&["--scripts"])
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    facts.insert("scripts".into(), scripts.join("\n"));
    facts
}

#[test]
fn source_rpms_rebuild_into_packyards_own_packages() {
    if !have_tool("rpmbuild", &["--version"]) || !have_tool("rpmlint", &["--version"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let built = packed("el9_x86_64");
    let mut rpms: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in crate::support::files_under(built) {
        if e.extension().is_some_and(|x| x == "rpm") {
            let name = run(Command::new("rpm").args(["-qp", "--qf", "%{NAME}"]).arg(&e));
            rpms.insert(name, e);
        }
    }
    let mut checked = 0;
    for b in crate::support::release("el9_x86_64") {
        let c = &b.configuration;
        let co = checkout(&t.path().join("ws").join(c), c, "el9_x86_64");
        let first = pack_source_for(c, "el9_x86_64", &co, &t.path().join("out1").join(c));
        let again = pack_source_for(c, "el9_x86_64", &co, &t.path().join("out2").join(c));
        assert_eq!(first, again, "{c}: packed twice, other bytes");
        let (name, bytes) = first.iter().next().unwrap();
        assert!(name.ends_with(".src.rpm"), "{name}");
        let srpm = t.path().join(name);
        std::fs::write(&srpm, bytes).unwrap();
        let k = run(Command::new("rpm").arg("-K").arg(&srpm));
        assert!(k.contains("digests OK"), "{c}: {k}");
        assert_eq!(crate::pack::rpmlint(&srpm), Vec::<String>::new(), "{c}");
        let top = t.path().join("rpmbuild").join(c);
        run(Command::new("rpmbuild")
            .args(["--rebuild", "--nodeps", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&srpm));
        let rebuilt = crate::support::files_under(&top.join("RPMS"))
            .into_iter()
            .find(|p| p.extension().is_some_and(|x| x == "rpm"))
            .unwrap_or_else(|| panic!("{c}: rpmbuild made no RPM"));
        let name = run(Command::new("rpm")
            .args(["-qp", "--qf", "%{NAME}"])
            .arg(&rebuilt));
        let ours = &rpms[&name];
        let (a, r) = (rpm_facts(ours), rpm_facts(&rebuilt));
        for (k, v) in &a {
            assert_eq!(
                &r[k], v,
                "{c}: {k} differs between packyard's RPM and the rebuild"
            );
        }
        let (xa, xb) = (
            t.path().join("x-ours").join(c),
            t.path().join("x-rebuilt").join(c),
        );
        for (rpm, x) in [
            (ours, &xa),
            (&rebuilt, &xb),
            (&srpm, &t.path().join("x-src").join(c)),
        ] {
            std::fs::create_dir_all(x).unwrap();
            // rpm2cpio checks the size it copied against the package's record.
            sh(
                &format!(
                    "bash -o pipefail -c 'rpm2cpio {} | cpio -idm --quiet'",
                    rpm.display()
                ),
                x,
            );
        }
        assert_eq!(programs(&xa), programs(&xb), "{c}");
        checked += 1;
    }
    assert!(checked >= 5, "{checked} components checked");
}

/// Source packages of two components for each format, packed into one `pack --out` tree
/// under `t`; the tree, and each source package's files by name.
fn source_tree(t: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let out = t.join("sources");
    let mut files = BTreeMap::new();
    for platform in ["deb12_amd64", "el9_x86_64"] {
        for b in crate::support::release(platform).iter().take(2) {
            let c = &b.configuration;
            let co = checkout(&t.join("ws").join(platform).join(c), c, platform);
            files.extend(pack_source_for(c, platform, &co, &out));
        }
    }
    (out, files)
}

#[test]
fn source_packages_are_indexed_served_and_fetched_by_apt_get_source_and_dnf() {
    use crate::repo::{create_nightly, ed25519_key, py_json};
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &[]);
    ed25519_key(d);
    let (sources, files) = source_tree(t.path());
    let report = py_json(
        d,
        &[
            "publish",
            "--repo",
            "nightly",
            "--sign",
            packed("el9_x86_64").to_str().unwrap(),
            packed("deb12_amd64").to_str().unwrap(),
            sources.to_str().unwrap(),
        ],
    );
    let kinds: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "srpm").count(),
        2,
        "{report}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "dsc").count(), 2, "{report}");
    let indexes = report["indexes"].to_string();
    assert!(indexes.contains("\"yum/el9-source\""), "{indexes}");
    let repo = crate::support::tree(d, "nightly");

    // The source tree's repodata is createrepo_c's for the same files.
    let base = repo.join("yum/el9-source");
    let ours = crate::repo::repodata_docs(&base);
    if have_tool("createrepo_c", &["--version"]) {
        let theirs_dir = t.path().join("createrepo");
        crate::repo::copy_tree(&base.join("packages"), &theirs_dir.join("packages"));
        crate::repo::run_ok(
            Command::new("createrepo_c")
                .args(["--no-database", "--quiet"])
                .arg(&theirs_dir),
        );
        let theirs = crate::repo::repodata_docs(&theirs_dir);
        for kind in ["primary", "filelists", "other"] {
            let a = crate::repo::xml_packages(&ours[kind], &["time@file"]);
            let b = crate::repo::xml_packages(&theirs[kind], &["time@file"]);
            assert_eq!(a.len(), 2, "{kind}");
            assert_eq!(
                a, b,
                "{kind}: our source entries differ from createrepo_c's"
            );
        }
    }
    // Signed with the repository key, like the binary RPMs.
    let srpms: Vec<&String> = files.keys().filter(|n| n.ends_with(".src.rpm")).collect();
    let srpm_path = |name: &str| {
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .find(|p| p.ends_with(&format!("/{name}")))
            .unwrap()
    };
    crate::repo::assert_rpm_signed(
        &t.path().join("rpmdb"),
        &repo.join("key.asc"),
        &repo.join(srpm_path(srpms[0])),
    );

    let server = crate::serve::Server::start(d, &[]);
    // apt-get source: the .sources file as served says deb-src; apt checks every file
    // against the signed Sources, and dpkg-source unpacks them.
    let (status, setup) = server.get("/repos/nightly/deb12.sources");
    assert_eq!(status, 200);
    let setup = String::from_utf8(setup).unwrap();
    assert!(setup.starts_with("Types: deb deb-src\n"), "{setup}");
    if have_tool("apt-get", &["--version"]) {
        let apt = crate::repo::AptRoot::from_sources(&t.path().join("aptroot"), &setup);
        apt.update(&[]);
        for (dsc, bytes) in files.iter().filter(|(n, _)| n.ends_with(".dsc")) {
            let text = String::from_utf8_lossy(bytes);
            let source = text
                .lines()
                .find_map(|l| l.strip_prefix("Source: "))
                .unwrap();
            let dl = t.path().join("apt-source").join(source);
            std::fs::create_dir_all(&dl).unwrap();
            let said = apt.run(&["source", source], &dl);
            // The .dsc and the files it names, as packed.
            for (name, want) in files
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("{source}_")) && !n.ends_with(".src.rpm"))
            {
                assert_eq!(
                    &std::fs::read(dl.join(name)).unwrap(),
                    want,
                    "{dsc}: {name} as apt-get source fetched it\n{said}"
                );
            }
            let unpacked: Vec<PathBuf> = std::fs::read_dir(&dl)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            assert_eq!(unpacked.len(), 1, "{dsc}: {said}");
            assert!(unpacked[0].join("debian/rules").is_file(), "{dsc}: {said}");
        }
    }
    // dnf: the .repo file's source section, off until enabled, finds the source RPMs and
    // their locations download.
    let (status, setup) = server.get("/repos/nightly/el9_x86_64.repo");
    assert_eq!(status, 200);
    let setup = String::from_utf8(setup).unwrap();
    let section = "[packyard-nightly-el9_x86_64-source]";
    let after = setup
        .split_once(section)
        .unwrap_or_else(|| panic!("no source section in\n{setup}"))
        .1;
    assert!(after.contains("enabled=0\n"), "{setup}");
    assert!(after.contains("/yum/el9-source/\n"), "{setup}");
    if have_tool("dnf", &["--version"]) {
        let w = t.path().join("dnf");
        let reposdir = w.join("yum.repos.d");
        std::fs::create_dir_all(&reposdir).unwrap();
        std::fs::write(reposdir.join("nightly.repo"), &setup).unwrap();
        for srpm in &srpms {
            let name = crate::repo::run_ok(
                Command::new("rpm")
                    .args(["-qp", "--qf", "%{NAME}"])
                    .arg(repo.join(srpm_path(srpm))),
            );
            let cmd = crate::repo::dnf_command(&w, &reposdir);
            let location = crate::repo::dnf_run(
                cmd,
                &[
                    "--enablerepo=packyard-nightly-el9_x86_64-source",
                    "repoquery",
                    "--arch",
                    "src",
                    "--location",
                    &name,
                ],
            );
            let url = location
                .lines()
                .find(|l| l.starts_with("http"))
                .unwrap_or_else(|| panic!("{name}: no location in {location:?}"));
            let (status, got) = server.get(&url[server.url.len()..]);
            assert_eq!(status, 200, "{url}");
            assert_eq!(
                crate::repo::run_ok(
                    Command::new("rpm")
                        .args(["-qp", "--qf", "%{NAME}-%{VERSION}-%{RELEASE} %{SOURCERPM}"])
                        .arg(write_to(&t.path().join("dl"), srpm, &got))
                ),
                format!("{} (none)", srpm.trim_end_matches(".src.rpm")),
                "{url}"
            );
        }
    }
    // A binary package's page links its source package.
    let rpm = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .find(|p| {
            p.ends_with(".rpm")
                && !p.ends_with(".src.rpm")
                && srpms.iter().any(|s| {
                    let stem = s.trim_end_matches(".src.rpm");
                    p.rsplit('/')
                        .next()
                        .unwrap()
                        .starts_with(&format!("{stem}."))
                })
        })
        .unwrap();
    let (status, page) = server.get(&format!("/r/nightly/f/{rpm}"));
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("id=source href="),
        "{rpm}: no source package link"
    );
    assert!(server.stop().success());
}

/// Writes `bytes` to `dir/name`; the path.
fn write_to(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn source_packages_upload_through_the_server_parts_first() {
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    let (server, builder) = crate::serve::signed_nightly(d, &[]);
    let (sources, files) = source_tree(t.path());
    let tree = crate::serve::tree_files(&sources);
    // A .dsc whose files never came is refused, naming the first it misses.
    let (dsc_key, dsc_file) = tree.iter().find(|(k, _)| k.ends_with(".dsc")).unwrap();
    let (status, answer) = server.upload(
        "nightly",
        dsc_key,
        &std::fs::read(dsc_file).unwrap(),
        Some(&builder),
        &[],
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains(".orig.tar.gz")
            || answer["message"]
                .as_str()
                .unwrap()
                .contains(".debian.tar.xz"),
        "{answer}"
    );
    // A part alone is held, not served.
    let (part_key, part_file) = tree
        .iter()
        .find(|(k, _)| k.ends_with(".orig.tar.gz"))
        .unwrap();
    let (status, answer) = server.upload(
        "nightly",
        part_key,
        &std::fs::read(part_file).unwrap(),
        Some(&builder),
        &[],
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["action"], "held", "{answer}");
    assert_eq!(server.get(&format!("/repos/nightly/{part_key}")).0, 404);
    // The command line sends the parts first: every source package lands.
    let report = crate::serve::remote(
        &server.url,
        &builder,
        &["publish", "--repo", "nightly", sources.to_str().unwrap()],
    );
    let kinds: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4, "two .dsc and two .src.rpm: {report}");
    let (status, listed) = server.get("/repos/nightly/apt/dists/deb12/main/source/Sources");
    assert_eq!(status, 200);
    let listed = String::from_utf8(listed).unwrap();
    for (name, bytes) in files.iter().filter(|(n, _)| !n.ends_with(".src.rpm")) {
        // Every file, served at its download-from path and listed with its sha256.
        use sha2::Digest;
        let sum = format!("{:x}", sha2::Sha256::digest(bytes));
        assert!(
            listed.contains(&format!(" {sum} ")),
            "{name} not in\n{listed}"
        );
        let key = tree
            .keys()
            .find(|k| k.ends_with(&format!("/{name}")))
            .unwrap();
        let (status, got) = server.get(&format!("/repos/nightly/{key}"));
        assert_eq!((status, &got), (200, bytes), "{key}");
    }
    assert!(server.stop().success());
}

#[test]
fn a_new_revision_keeps_the_upstream_tarball_it_shares_and_drops_the_rest() {
    use crate::repo::{check_consistent, create_nightly, ed25519_key, py, py_json};
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    create_nightly(d, &["--keep", "1"]);
    ed25519_key(d);
    let c = &crate::support::release("deb12_amd64")[0].configuration;
    let co = checkout(&t.path().join("ws"), c, "deb12_amd64");
    let outs: Vec<(PathBuf, BTreeMap<String, Vec<u8>>)> = ["1", "2"]
        .iter()
        .map(|age| {
            let out = t.path().join(format!("age{age}"));
            let files =
                pack_source_with(c, "deb12_amd64", &co, &out, &["-p", &format!("age={age}")]);
            (out, files)
        })
        .collect();
    let names = |i: usize| outs[i].1.keys().cloned().collect::<BTreeSet<String>>();
    let shared: Vec<String> = names(0).intersection(&names(1)).cloned().collect();
    assert_eq!(
        shared.len(),
        1,
        "only the .orig.tar.gz is shared: {shared:?}"
    );
    assert_eq!(outs[0].1[&shared[0]], outs[1].1[&shared[0]]);
    // The repository as served now (on an object store, exported afresh).
    let served = |name: &str| {
        crate::serve::tree_files(&crate::support::tree(d, "nightly"))
            .keys()
            .any(|k| k.rsplit('/').next() == Some(name) && !k.starts_with("apt/"))
    };
    for (out, files) in &outs {
        py_json(d, &["publish", "--repo", "nightly", out.to_str().unwrap()]);
        assert_eq!(
            check_consistent(d, "nightly"),
            1,
            "one source package listed"
        );
        for name in files.keys() {
            assert!(served(name), "{name} not at its path");
        }
    }
    // Revision 1 left with --keep 1: its own files went, the shared tarball stayed.
    for name in names(0).difference(&names(1)) {
        assert!(!served(name), "{name} stayed");
    }
    assert!(served(&shared[0]));
    // gc finds nothing to take, and the served tree is still whole.
    let o = py(d, &["gc", "--grace", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check_consistent(d, "nightly"), 1);
    for name in names(1) {
        assert!(served(&name), "{name} gone after gc");
    }
}

#[test]
fn a_registered_repository_takes_a_locked_configurations_source_packages_once() {
    use crate::repo::{py, py_json};
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("data");
    py_json(d, &["repo", "create", "reg", "--kind", "registered"]);
    let c = "database_schemas_R_3_0_0_1";
    py_json(d, &["lock", c, "--tree", FIXTURE_TREE]);
    // Its source packages for both formats, packed from its checkout and again after a
    // change to it: the same name, version and release, other bytes.
    let pack_at = |changed: bool, out: &Path| {
        for platform in ["el9_x86_64", "deb12_amd64"] {
            let co = checkout(&t.path().join("ws").join(platform), c, platform);
            if changed {
                std::fs::write(co.join("NOTES"), "changed after the lock\n").unwrap();
            }
            let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
                .args(["pack", "--source", "--tree", FIXTURE_TREE])
                .args(["--configuration", c, "--platform", platform])
                .arg("--checkout")
                .arg(&co)
                .arg("--out")
                .arg(out)
                .current_dir(root())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
    };
    let (first, second) = (t.path().join("first"), t.path().join("second"));
    pack_at(false, &first);
    pack_at(true, &second);
    let register = |out: &Path| {
        py(
            d,
            &[
                "--json",
                "register",
                c,
                "--tree",
                FIXTURE_TREE,
                "--repo",
                "reg",
                out.to_str().unwrap(),
            ],
        )
    };
    let o = register(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: BTreeSet<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["dsc", "srpm"]), "{report}");
    // The same files again: nothing changes. Other bytes under those names: refused.
    assert!(register(&first).status.success());
    // Every file's bytes, read now (on the embedded backends the tree is the live one).
    let snapshot = || -> BTreeMap<String, Vec<u8>> {
        crate::serve::tree_files(&crate::support::tree(d, "reg"))
            .into_iter()
            .map(|(k, p)| (k, std::fs::read(p).unwrap()))
            .collect()
    };
    let before = snapshot();
    let o = register(&second);
    let said = stdout(&o) + &stderr(&o);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("is already in registered repository reg"),
        "{said}"
    );
    assert!(
        before == snapshot(),
        "a refused registration changed the repository"
    );
}
