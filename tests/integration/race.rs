//! Publishes that race: several `packyard publish` processes started at once against one
//! data directory (no server running) queue for the store, one at a time, and every
//! package each of them brought ends up in the YUM and APT indexes, read back by dnf and
//! apt-get.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::repo::{
    AptRoot, check_consistent, create_nightly, dnf_command, dnf_run, ed25519_key, py_json,
    repodata_docs, run_ok,
};
use crate::support::{have_tool, stderr, stdout, write};

const COMPONENTS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
const VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];
const EL9: &str = "el9_x86_64";
const DEB12: &str = "deb12_amd64";

/// A project with six components, each in versions 1.0.0 and 1.1.0 (a release each).
fn race_tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    let mut project = String::from(
        "[module]\nname = \"race\"\nkind = \"project\"\ndescription = \"Racing publishes\"\nlicense = \"MIT\"\nvendor = \"Tests\"\n",
    );
    for v in VERSIONS {
        let u = v.replace('.', "_");
        let children: Vec<String> = COMPONENTS
            .iter()
            .map(|c| format!("\"{c}_R_{u}_1\""))
            .collect();
        project.push_str(&format!(
            "\n[[configuration]]\nname = \"race_R_{u}_1\"\nversion = \"{v}\"\nage = 1\nchildren = [{}]\n[configuration.properties]\n\"package.maintainer\" = \"Tests <tests@example.org>\"\n",
            children.join(", ")
        ));
    }
    write(&root.join("module.toml"), &project);
    for c in COMPONENTS {
        let mut component = format!(
            "[module]\nname = \"race.{c}\"\nkind = \"component\"\ndescription = \"Component {c} of the race\"\npackage_name = \"race-{c}\"\n"
        );
        for v in VERSIONS {
            let u = v.replace('.', "_");
            component.push_str(&format!(
                "\n[[configuration]]\nname = \"{c}_R_{u}_1\"\nversion = \"{v}\"\nage = 1\ntag = \"v{v}\"\ndescription = \"{v}-1: release\"\n[configuration.commands]\ncheckout = \"true\"\n"
            ));
        }
        write(&root.join(c).join("module.toml"), &component);
    }
    root
}

/// One publish of the race: a component's version packed for a platform.
struct Input {
    /// The package name (`race-<component>`).
    name: String,
    version: &'static str,
    platform: &'static str,
    /// The `pack --out` tree it is published from.
    out: PathBuf,
    /// The RPM's or DEB's file name and sha256 (published unsigned: the same bytes).
    file: String,
    sha256: String,
}

impl Input {
    /// The index tree it goes into.
    fn tree(&self) -> &'static str {
        if self.platform == EL9 {
            "yum/el9_x86_64"
        } else {
            "apt/deb12"
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Packs every `(component, version, platform)` at once, each from a prefix of its own
/// (contents differ per component and version) into a `--out` tree of its own.
fn pack_all(dir: &Path, tree: &Path, jobs: &[(&str, usize, &'static str)]) -> Vec<Input> {
    let children: Vec<_> = jobs
        .iter()
        .map(|&(c, v, platform)| {
            let version = VERSIONS[v];
            let out = dir.join(format!("in/{c}-{version}-{platform}"));
            let prefix = out.with_extension("prefix");
            write(
                &prefix.join(format!("usr/share/race-{c}/version.txt")),
                &format!("{c} {version} {platform}\n"),
            );
            let child = Command::new(env!("CARGO_BIN_EXE_packyard"))
                .args(["pack", "--tree"])
                .arg(tree)
                .args([
                    "--configuration",
                    &format!("{c}_R_{}_1", version.replace('.', "_")),
                ])
                .args(["--platform", platform, "--prefix"])
                .arg(&prefix)
                .arg("--out")
                .arg(&out)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (c, version, platform, out, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(c, version, platform, out, child)| {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "pack {c} {version} {platform}: {}",
                stderr(&o)
            );
            let ext = if platform == EL9 { ".rpm" } else { ".deb" };
            let packages: Vec<PathBuf> = files(&out)
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with(ext))
                .collect();
            assert_eq!(packages.len(), 1, "{c} {version} {platform}: {packages:?}");
            Input {
                name: format!("race-{c}"),
                version,
                platform,
                file: packages[0]
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                sha256: sha256(&fs::read(&packages[0]).unwrap()),
                out,
            }
        })
        .collect()
}

/// Starts one `packyard publish` per input, all at once against data directory `d`, and
/// waits for every one: each must succeed. Their `--json` reports, in input order.
fn race(d: &Path, inputs: &[&Input]) -> Vec<Value> {
    let start = Instant::now();
    let waiters: Vec<_> = inputs
        .iter()
        .map(|input| {
            let child = crate::support::packyard_at(d)
                .args(["--json", "publish", "--repo", "nightly"])
                .arg(&input.out)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // A thread each, so each end is seen when it happens.
            std::thread::spawn(move || {
                let o = child.wait_with_output().unwrap();
                (o, start.elapsed())
            })
        })
        .collect();
    let mut ends = Vec::new();
    let mut reports = Vec::new();
    for (input, waiter) in inputs.iter().zip(waiters) {
        let (o, end) = waiter.join().unwrap();
        let (out, err) = (stdout(&o), stderr(&o));
        let what = format!("{} {} {}", input.name, input.version, input.platform);
        assert!(o.status.success(), "publish of {what} failed: {out}{err}");
        let waited = err.contains("waiting for another packyard process");
        ends.push((end, what, waited));
        reports.push(serde_json::from_str(&out).unwrap());
    }
    ends.sort();
    for (end, what, waited) in ends {
        let note = if waited { " (said it waited)" } else { "" };
        eprintln!("  {end:>12.1?}  {what}{note}");
    }
    reports
}

/// What an index lists: package name → (version, path relative to the tree, sha256).
type Listed = BTreeMap<String, (String, String, String)>;

/// The packages the primary of `base/repodata/repomd.xml` lists (repomd's checksums of
/// the documents checked on the way).
fn yum_listed(base: &Path) -> Listed {
    let docs = repodata_docs(base);
    let primary = String::from_utf8(docs["primary"].clone()).unwrap();
    let between = |text: &str, from: &str, to: &str| -> String {
        let rest = text
            .split_once(from)
            .unwrap_or_else(|| panic!("no {from} in {text}"))
            .1;
        rest.split_once(to).unwrap().0.to_string()
    };
    let mut listed = Listed::new();
    for pkg in primary.split("<package type=\"rpm\">").skip(1) {
        let name = between(pkg, "<name>", "</name>");
        let version = between(pkg, " ver=\"", "\"");
        let href = between(pkg, "<location href=\"", "\"");
        let sum = between(pkg, "<checksum type=\"sha256\" pkgid=\"YES\">", "<");
        assert!(
            listed.insert(name.clone(), (version, href, sum)).is_none(),
            "{name} listed twice in primary"
        );
    }
    listed
}

/// The packages a `Packages` file lists.
fn apt_listed(packages: &Path) -> Listed {
    let text = fs::read_to_string(packages).unwrap();
    let mut listed = Listed::new();
    for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("no {k} in\n{stanza}"))
                .to_string()
        };
        let name = field("Package");
        assert!(
            listed
                .insert(
                    name.clone(),
                    (field("Version"), field("Filename"), field("SHA256"))
                )
                .is_none(),
            "{name} listed twice in Packages"
        );
    }
    listed
}

/// The index lists exactly the expected packages, each with the sha256 of the file that
/// was published, and that file is in the tree at the path the index gives.
fn assert_listed(what: &str, base: &Path, listed: &Listed, expected: &BTreeMap<String, &Input>) {
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: not the packages published"
    );
    for (name, (version, path, sum)) in listed {
        let input = expected[name];
        assert!(
            version.starts_with(input.version),
            "{what}: {name} {version}, published {}",
            input.version
        );
        assert_eq!(
            sum, &input.sha256,
            "{what}: {name} is not the published file"
        );
        assert!(path.ends_with(&input.file), "{what}: {name} at {path}");
        let bytes = fs::read(base.join(path)).unwrap_or_else(|e| panic!("{what}: {path}: {e}"));
        assert_eq!(&sha256(&bytes), sum, "{what}: {path} has other bytes");
    }
}

/// dnf installs every expected RPM from the YUM tree (repomd.xml's signature checked),
/// and apt-get downloads every expected DEB from the APT tree (Release's signature
/// checked, each download against Packages): the real clients find all of them.
fn clients_get_everything(
    repo: &Path,
    work: &Path,
    rpms: &BTreeMap<String, &Input>,
    debs: &BTreeMap<String, &Input>,
) {
    let key = repo.join("key.asc");
    if have_tool("dnf", &["--version"]) {
        let empty = work.join("no-repos");
        fs::create_dir_all(&empty).unwrap();
        let mut cmd = dnf_command(work, &empty);
        cmd.arg(format!(
            "--repofrompath=nightly,file://{}",
            repo.join("yum/el9_x86_64").display()
        ))
        // The packages are published unsigned; the repository metadata is signed.
        .args([
            "--setopt=nightly.gpgcheck=0",
            "--setopt=nightly.repo_gpgcheck=1",
        ])
        .arg(format!("--setopt=nightly.gpgkey=file://{}", key.display()));
        let wanted: Vec<String> = rpms
            .values()
            .map(|i| format!("{}-{}", i.name, i.version))
            .collect();
        let mut args = vec!["install"];
        args.extend(wanted.iter().map(String::as_str));
        dnf_run(cmd, &args);
        let q = run_ok(
            Command::new("rpm")
                .arg("--root")
                .arg(work.join("root"))
                .args(["-q", "--qf", "%{NAME} %{VERSION}\\n"])
                .args(rpms.keys()),
        );
        let want: String = rpms
            .values()
            .map(|i| format!("{} {}\n", i.name, i.version))
            .collect();
        assert_eq!(q, want, "installed by dnf");
    }
    if have_tool("apt-get", &["--version"]) {
        let apt = AptRoot::from_sources(
            &work.join("apt"),
            &format!(
                "Types: deb\nURIs: file://{}\nSuites: deb12\nComponents: main\nSigned-By: {}\n",
                repo.join("apt").display(),
                key.display()
            ),
        );
        apt.update(&[]);
        assert_eq!(apt.available(), debs.len(), "packages apt-get knows");
        let dl = work.join("downloads");
        fs::create_dir_all(&dl).unwrap();
        // (One version of each is published: the candidate is the one.)
        let mut args = vec!["download"];
        args.extend(debs.keys().map(String::as_str));
        apt.run(&args, &dl);
        let mut got: Vec<String> = files(&dl)
            .iter()
            .map(|p| sha256(&fs::read(p).unwrap()))
            .collect();
        got.sort();
        let mut want: Vec<String> = debs.values().map(|i| i.sha256.clone()).collect();
        want.sort();
        assert_eq!(got, want, "downloaded by apt-get");
    }
}

/// Checks data directory `d` after a race: every package published so far is listed,
/// with the newest version of each name (the repository keeps one), by `repo show`,
/// the YUM and APT indexes and the real clients.
fn check_everything_landed(d: &Path, work: &Path, published: &[&Input]) {
    let (mut rpms, mut debs) = (BTreeMap::new(), BTreeMap::new());
    for &i in published {
        let kind = if i.platform == EL9 {
            &mut rpms
        } else {
            &mut debs
        };
        let newer = kind
            .get(&i.name)
            .is_none_or(|old: &&Input| old.version < i.version);
        if newer {
            kind.insert(i.name.clone(), i);
        }
    }
    // Each package with its tarball; nothing left half done.
    let shown = py_json(d, &["repo", "show", "nightly"]);
    assert_eq!(shown["packages"], 2 * (rpms.len() + debs.len()), "{shown}");
    assert!(shown["pending"].as_array().unwrap().is_empty(), "{shown}");
    let repo = crate::support::tree(d, "nightly");
    let yum = repo.join("yum/el9_x86_64");
    assert_listed("primary", &yum, &yum_listed(&yum), &rpms);
    let apt = repo.join("apt");
    let packages = apt.join("dists/deb12/main/binary-amd64/Packages");
    assert_listed("Packages", &apt, &apt_listed(&packages), &debs);
    // Every index, compressed copy and signature agrees with what it names.
    assert_eq!(check_consistent(d, "nightly"), rpms.len() + debs.len());
    clients_get_everything(&repo, work, &rpms, &debs);
}

/// Checks the reports of one round: each publish saw the store as the ones before it
/// left it. The first of a file adds it (its tarball too), rewrites its index and
/// removes the version it replaces with that one's tarball; the same file published
/// again in the same round changes nothing.
fn check_reports(round: &[&Input], reports: &[Value], before: &[&Input]) {
    let mut seen = std::collections::BTreeSet::new();
    let mut firsts = 0;
    for (input, report) in round.iter().zip(reports) {
        assert_eq!(report["repo"], "nightly", "{report}");
        let files = report["files"].as_array().unwrap();
        assert_eq!(files.len(), 2, "{report}");
        let removed = report["removed"].as_array().unwrap();
        if files.iter().all(|f| f["action"] == "unchanged") {
            assert!(removed.is_empty(), "{report}");
            assert_eq!(report["indexes"], serde_json::json!([]), "{report}");
            continue;
        }
        firsts += 1;
        assert!(
            seen.insert(&input.out),
            "{} added twice: {report}",
            input.file
        );
        assert!(files.iter().all(|f| f["action"] == "added"), "{report}");
        let indexes = serde_json::json!([input.tree()]);
        assert_eq!(report["indexes"], indexes, "{report}");
        let replaced = before
            .iter()
            .filter(|p| p.name == input.name && p.platform == input.platform)
            .max_by_key(|p| p.version);
        match replaced {
            Some(old) => {
                assert_eq!(removed.len(), 2, "{report}");
                let gone = removed
                    .iter()
                    .any(|r| r.as_str().unwrap().ends_with(&old.file));
                assert!(gone, "{} not removed: {report}", old.file);
            }
            None => assert!(removed.is_empty(), "{report}"),
        }
    }
    let distinct: std::collections::BTreeSet<_> = round.iter().map(|i| &i.out).collect();
    assert_eq!(firsts, distinct.len(), "each file added once: {reports:?}");
}

#[test]
fn racing_publishes_serialise_and_all_land() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tree = race_tree(dir.path());
    let d = &dir.path().join("data");
    create_nightly(d, &["--keep", "1"]);
    ed25519_key(d);
    // (component, version, platform) of each publish, a round at a time.
    let rounds: [&[(&str, usize, &str)]; 3] = [
        // Three new RPMs and three new DEBs.
        &[
            ("alpha", 0, EL9),
            ("bravo", 0, EL9),
            ("charlie", 0, EL9),
            ("delta", 0, DEB12),
            ("echo", 0, DEB12),
            ("foxtrot", 0, DEB12),
        ],
        // Newer versions of two of each (the repository keeps one version: the older
        // ones go), and a name new to each index.
        &[
            ("alpha", 1, EL9),
            ("delta", 1, DEB12),
            ("foxtrot", 0, EL9),
            ("bravo", 1, EL9),
            ("charlie", 0, DEB12),
            ("echo", 1, DEB12),
        ],
        // Newer versions of the rest, two of them published twice at once.
        &[
            ("charlie", 1, EL9),
            ("foxtrot", 1, DEB12),
            ("charlie", 1, EL9),
            ("foxtrot", 1, EL9),
            ("foxtrot", 1, DEB12),
            ("charlie", 1, DEB12),
        ],
    ];
    let mut jobs: Vec<_> = rounds.iter().flat_map(|r| r.iter().copied()).collect();
    jobs.sort();
    jobs.dedup();
    let packed: BTreeMap<_, _> = jobs
        .iter()
        .copied()
        .zip(pack_all(dir.path(), &tree, &jobs))
        .collect();
    eprintln!("packed {} inputs in {:?}", packed.len(), started.elapsed());
    let mut published: Vec<&Input> = Vec::new();
    for (n, round) in rounds.iter().enumerate() {
        let batch: Vec<&Input> = round.iter().map(|job| &packed[job]).collect();
        eprintln!("round {n}: {} publishes at once", batch.len());
        let t = Instant::now();
        let reports = race(d, &batch);
        eprintln!("round {n}: all done in {:?}", t.elapsed());
        check_reports(&batch, &reports, &published);
        published.extend(batch);
        let t = Instant::now();
        check_everything_landed(d, &dir.path().join(format!("clients{n}")), &published);
        eprintln!("round {n}: checked in {:?}", t.elapsed());
    }
    eprintln!("whole test: {:?}", started.elapsed());
}
