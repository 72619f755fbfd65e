//! `packyard resolve`: the plan against a repository directory and against the same
//! packages served by `packyard serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::repo::{copy_tree, create_nightly, py_json};
use crate::serve::{Server, tree_files, upload_packed};
use crate::support::{fixture, packed, stderr, stdout};

fn resolve(repo: &str, privileged: &str) -> (bool, Value) {
    let tree = fixture("trees/my-project");
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", "resolve", "--tree", tree.to_str().unwrap()])
        .args([
            "--configuration",
            "web_server_R_2_5_1_1",
            "--platform",
            "el9_x86_64",
        ])
        .args(["--repo", repo, "--privileged", privileged])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    (o.status.success(), v)
}

/// Per dependency of a plan, the values of `keys`.
fn fields(plan: &Value, keys: &[&str]) -> Vec<Vec<Value>> {
    plan["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| keys.iter().map(|k| d[*k].clone()).collect())
        .collect()
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    fields(plan, &["module", "action"])
        .into_iter()
        .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
        .collect()
}

#[test]
fn resolve_plans_the_same_from_a_directory_and_from_a_server() {
    let dir = packed("el9_x86_64").to_str().unwrap().to_string();
    let (_, plan) = resolve(&dir, "yes");
    assert_eq!(
        plan["order"],
        serde_json::json!([
            "database_schemas_R_3_0_0_1",
            "database_server_R_2_0_1_1",
            "web_server_R_2_5_1_1"
        ]),
        "{plan}"
    );
    let by_module = actions(&plan);
    let get = |m: &str| {
        by_module
            .iter()
            .find(|(n, _)| n == m)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("{m}: {plan}"))
    };
    // Privileged: the RPMs are installed; unprivileged: the tarballs are downloaded.
    assert_eq!(get("my-project.servers.database_schemas"), "install");
    assert_eq!(get("my-project.servers.database_server"), "install");
    let (_, unprivileged) = resolve(&dir, "no");
    let un = actions(&unprivileged);
    assert!(
        un.contains(&(
            "my-project.servers.database_schemas".into(),
            "download".into()
        )),
        "{unprivileged}"
    );
    // The latest-wins choice is explained.
    let java = plan["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["module"] == "my-project.clients.java_api")
        .unwrap();
    assert!(
        java["reason"]
            .as_str()
            .unwrap()
            .contains("latest in the release wins"),
        "{java}"
    );
    assert!(
        java["reason"].as_str().unwrap().starts_with("runtime only"),
        "{java}"
    );

    // The same packages served: the same actions, sources are URLs.
    let data = tempfile::tempdir().unwrap();
    create_nightly(data.path(), &[]);
    let token =
        crate::repo::py_json(data.path(), &["token", "create", "--role", "builder"])["token"]
            .as_str()
            .unwrap()
            .to_string();
    let server = Server::start(data.path(), &[]);
    upload_packed(&server, "nightly", "el9_x86_64", &token);
    let (_, served) = resolve(&format!("{}/repos/nightly", server.url), "yes");
    assert_eq!(actions(&served), by_module);
    let src = served["dependencies"][0]["source"].as_str().unwrap();
    assert!(
        src.starts_with(&format!("{}/repos/nightly/my-project/", server.url)),
        "{served}"
    );
    server.stop();
}

// ---------------------------------------------------------------------------------------
// The scenario: the fixture release on deb12, partly published.

const WEB: &str = "web_server_R_2_5_1_1";
const ABSENT: &str = "packyard-absent-tool";

/// A copy of the fixture tree whose web server also needs, at build time, `dpkg` (on every
/// Debian node) and a package no node has. Its sources stay reachable (`src.root`).
fn scenario_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("trees/my-project");
    copy_tree(&fixture("trees/my-project"), &tree);
    std::os::unix::fs::symlink(fixture("src"), dir.join("src")).unwrap();
    let file = tree.join("servers/web_server/module.toml");
    let text = fs::read_to_string(&file).unwrap();
    let make = "external = \"make\"\nscope = \"build\"\nconstraint = \">= 4.0\"\n";
    assert!(text.contains(make));
    let more = format!(
        "{make}\n[[configuration.dependencies]]\nexternal = \"dpkg\"\nscope = \"build\"\n\n\
         [[configuration.dependencies]]\nexternal = \"{ABSENT}\"\nscope = \"build\"\n"
    );
    fs::write(&file, text.replacen(make, &more, 1)).unwrap();
    tree
}

/// A data directory whose `nightly` holds, of the packed deb12 release: the database
/// schemas as DEB and tarball, the database server as tarball only, the Java API not at
/// all. Returns the repository directory and the published download-from paths.
fn scenario_repo(d: &Path) -> (PathBuf, BTreeMap<&'static str, String>) {
    create_nightly(d, &[]);
    let packed = tree_files(packed("deb12_amd64"));
    let pick = |prefix: &str, suffix: &str| -> String {
        let found: Vec<&String> = packed
            .keys()
            .filter(|k| {
                let f = k.rsplit('/').next().unwrap();
                f.starts_with(prefix) && f.ends_with(suffix)
            })
            .collect();
        assert_eq!(found.len(), 1, "{prefix}*{suffix} in {packed:?}");
        found[0].clone()
    };
    let chosen = BTreeMap::from([
        ("schemas.deb", pick("my-database-schemas_", ".deb")),
        ("schemas.tgz", pick("my-database-schemas-", ".tar.gz")),
        ("server.tgz", pick("my-database-server-", ".tar.gz")),
    ]);
    let sel = d.join("selection");
    for key in chosen.values() {
        let to = sel.join(key);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&packed[key], &to).unwrap();
    }
    py_json(d, &["publish", "--repo", "nightly", sel.to_str().unwrap()]);
    (crate::support::tree(d, "nightly"), chosen)
}

/// `packyard --json <cmd> ...` on the scenario: (success, JSON on stdout, stderr).
fn scenario_run(cmd: &str, tree: &Path, repo: &str, extra: &[&str]) -> (bool, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["--json", cmd, "--tree", tree.to_str().unwrap()])
        .args(["--configuration", WEB, "--platform", "deb12_amd64"])
        .args(["--repo", repo, "--runtime-deps"])
        .args(extra)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    // With --json a failure is reported on stdout.
    let err = format!("{}{}", stderr(&o), v["error"].as_str().unwrap_or(""));
    (o.status.success(), v, err)
}

/// The scenario, set up in a fresh work directory `w`: the tree, the data directory with
/// its partly filled `nightly`, and where fetch puts things.
struct Scenario {
    _work: tempfile::TempDir,
    w: PathBuf,
    tree: PathBuf,
    data: PathBuf,
    repo: PathBuf,
    chosen: BTreeMap<&'static str, String>,
    stage: PathBuf,
    ws: PathBuf,
    cache: PathBuf,
}

impl Scenario {
    fn new() -> Scenario {
        let work = tempfile::tempdir().unwrap();
        let w = work.path().to_path_buf();
        let tree = scenario_tree(&w);
        let data = w.join("data");
        let (repo, chosen) = scenario_repo(&data);
        Scenario {
            _work: work,
            stage: w.join("stage"),
            ws: w.join("ws"),
            cache: w.join("cache"),
            w,
            tree,
            data,
            repo,
            chosen,
        }
    }

    /// Where the published file `key` (`schemas.tgz`...) is.
    fn at(&self, key: &str) -> PathBuf {
        self.repo.join(&self.chosen[key])
    }

    fn resolve(&self, repo: &str, extra: &[&str]) -> (bool, Value, String) {
        scenario_run("resolve", &self.tree, repo, extra)
    }

    /// `fetch` on an unprivileged node into `stage`, the workspace and the cache.
    fn fetch_into(&self, repo: &str, stage: &Path, extra: &[&str]) -> (bool, Value, String) {
        let mut args = vec!["--privileged", "no", "--stage", stage.to_str().unwrap()];
        args.extend(["--workspace", self.ws.to_str().unwrap()]);
        args.extend(["--cache", self.cache.to_str().unwrap()]);
        args.extend_from_slice(extra);
        scenario_run("fetch", &self.tree, repo, &args)
    }

    fn fetch(&self, repo: &str) -> (bool, Value, String) {
        self.fetch_into(repo, &self.stage, &[])
    }
}

fn dpkg_version(name: &str) -> String {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", name])
        .output()
        .expect("dpkg-query (dpkg) is needed");
    assert!(o.status.success(), "{name} must be installed for this test");
    stdout(&o)
}

/// Every path under `dir` (files, directories, links), relative, with file contents.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
                out.insert(rel + "/", vec![]);
            } else if t.is_symlink() {
                out.insert(rel, fs::read_link(&p).unwrap().into_os_string().into_vec());
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The entries of a tarball as `tar` lists them (directories with a trailing slash).
fn tar_entries(file: &Path) -> BTreeSet<String> {
    let o = Command::new("tar").arg("tzf").arg(file).output().unwrap();
    assert!(o.status.success());
    stdout(&o)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn scenario_resolve_gives_each_dependency_its_action_and_fetch_carries_it_out() {
    let sc = Scenario::new();
    let repo_s = sc.repo.to_str().unwrap();
    let at = |k: &str| sc.at(k).display().to_string();

    let (ok, plan, err) = sc.resolve(repo_s, &["--privileged", "no"]);
    // The absent external makes the plan fail, and says so.
    assert!(!ok, "{plan}");
    assert!(plan.is_object(), "{err}");
    let (make, dpkg) = (dpkg_version("make"), dpkg_version("dpkg"));
    let expected = json!({
        "order": [
            "database_schemas_R_3_0_0_1",
            "database_server_R_2_0_1_1",
            "java_api_R_5_2_2_1",
            WEB
        ],
        "dependencies": [
            {
                "module": "my-project.servers.database_schemas",
                "configuration": "database_schemas_R_3_0_0_1",
                "version": "3.0.0-1",
                "scope": "build",
                "type": "dynamic",
                "action": "download",
                "reason": "prebuilt tarball in the repository (my-project.servers.database_schemas.DEFAULT in project my-project_R_2_0_0_1)",
                "source": at("schemas.tgz"),
            },
            {
                "module": "my-project.servers.database_server",
                "configuration": "database_server_R_2_0_1_1",
                "version": "2.0.1-1",
                "scope": "both",
                "type": "static",
                "action": "download",
                "reason": "prebuilt tarball in the repository (static: the configuration is named)",
                "source": at("server.tgz"),
            },
            {
                "module": "my-project.clients.java_api",
                "configuration": "java_api_R_5_2_2_1",
                "version": "5.2.2-1",
                "scope": "runtime",
                "type": "constrained",
                "action": "source",
                "reason": format!(
                    "no prebuilt my-api-java_5.2.2-1_deb12_amd64.deb or my-api-java-5.2.2-1.tar.gz in {repo_s} \
                     (latest in the release wins: java_api_R_5_2_2_1 is newer than \
                     my-project.clients.java_api.DEFAULT = java_api_R_5_1_0_1; satisfies >= 5.2.0)"
                ),
                "source": null,
            },
            {
                "module": "dpkg",
                "configuration": null,
                "version": dpkg,
                "scope": "build",
                "type": "external",
                "action": "installed",
                "reason": format!("OS package dpkg {dpkg} is installed"),
                "source": null,
            },
            {
                "module": "make",
                "configuration": null,
                "version": make,
                "scope": "build",
                "type": "external",
                "action": "installed",
                "reason": format!("OS package make {make} is installed"),
                "source": null,
            },
            {
                "module": ABSENT,
                "configuration": null,
                "version": null,
                "scope": "build",
                "type": "external",
                "action": "unresolved",
                "reason": format!(
                    "OS package {ABSENT} is not installed, and this node cannot install packages: \
                     run `sudo apt-get install {ABSENT}`"
                ),
                "source": format!("apt-get install -y {ABSENT}"),
            },
        ]
    });
    assert_eq!(plan, expected);

    // A node that may install: the DEB instead of the tarball, and the OS package.
    let (_, plan, _) = sc.resolve(repo_s, &["--privileged", "yes"]);
    let deps = plan["dependencies"].as_array().unwrap();
    assert_eq!(deps[0]["action"], "install");
    assert_eq!(deps[0]["source"], at("schemas.deb"));
    assert_eq!(deps[1]["action"], "download", "only a tarball: {plan}");
    assert_eq!(deps[5]["action"], "install");

    // fetch: the tarballs unpacked into the stage dir, the Java API checked out; the
    // absent OS package is left for the user, so it fails, after doing the rest.
    let (ok, report, err) = sc.fetch(repo_s);
    assert!(!ok, "{report}");
    assert!(report.is_object(), "{err}");
    assert_eq!(report["left"][0]["module"], ABSENT, "{report}");
    assert_eq!(report["left"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        report["unpacked"],
        json!([
            "my-project.servers.database_schemas",
            "my-project.servers.database_server"
        ])
    );
    let mut want: BTreeSet<String> = tar_entries(&sc.at("schemas.tgz"));
    want.extend(tar_entries(&sc.at("server.tgz")));
    let got: BTreeSet<String> = snapshot_dir(&sc.stage).into_keys().collect();
    assert_eq!(got, want);
    let java = sc.ws.join("my-project.clients.java_api");
    let src_files: BTreeSet<String> = snapshot_dir(&fixture("src/java_api")).into_keys().collect();
    let checked_out: BTreeSet<String> = snapshot_dir(&java).into_keys().collect();
    assert_eq!(checked_out, src_files);
    assert_eq!(report["checked_out"][0]["skipped"], false, "{report}");
    // Nothing else beside the stage dir: the scratch directory is gone.
    let beside: Vec<String> = fs::read_dir(&sc.w)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".packyard"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");

    // Again: the same stage dir, the checkout is not run twice.
    let before = snapshot_dir(&sc.stage);
    let (_, report, _) = sc.fetch(repo_s);
    assert_eq!(report["checked_out"][0]["skipped"], true, "{report}");
    assert_eq!(snapshot_dir(&sc.stage), before);

    // --dry-run says what it would do and does nothing.
    let fresh = sc.w.join("stage2");
    let (_, report, _) = sc.fetch_into(repo_s, &fresh, &["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["downloaded"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert!(!fresh.exists());
}

#[test]
fn a_tampered_tarball_is_refused_and_the_stage_dir_is_unchanged() {
    let sc = Scenario::new();
    fs::create_dir_all(sc.stage.join("lib")).unwrap();
    fs::write(sc.stage.join("lib/already-here"), "keep me").unwrap();
    let before = snapshot_dir(&sc.stage);
    // One byte changed in the published file, after the publish.
    let file = sc.at("server.tgz");
    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    if crate::support::on_postgres_s3() {
        let key = format!("nightly/{}", sc.chosen["server.tgz"]);
        crate::support::put_blob(&sc.data, &key, &bytes);
    }

    let server = Server::start(&sc.data, &[]);
    let url = format!("{}/repos/nightly", server.url);
    for source in [sc.repo.to_str().unwrap(), url.as_str()] {
        let (ok, _, err) = sc.fetch(source);
        assert!(!ok);
        assert!(
            err.contains("does not match the repository's record")
                && err.contains(&sc.chosen["server.tgz"]),
            "{source}: {err}"
        );
        assert_eq!(snapshot_dir(&sc.stage), before, "{source}");
        // Nothing of the bad download is kept.
        let kept: Vec<String> = snapshot_dir(&sc.cache)
            .into_keys()
            .filter(|k| k.contains("my-database-server"))
            .collect();
        assert!(kept.is_empty(), "{kept:?}");
        // No source was checked out either: nothing happens after a failed download.
        assert!(!sc.ws.join("my-project.clients.java_api").exists());
    }
    server.stop();
}

/// A gzip tarball with the given raw (unchecked) entry names.
fn evil_tarball(names: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for name in names {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(4);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_tarball_with_escaping_entries_is_refused_and_nothing_is_written_outside() {
    use sha2::Digest;
    let sc = Scenario::new();
    let stage = sc.w.join("deep/stage");
    fs::create_dir_all(&stage).unwrap();
    fs::write(stage.join("keep"), "keep").unwrap();
    let abs = sc.w.join("absolute-target");
    let cases = [
        vec!["usr/share/ok.txt".to_string(), "../escaped.txt".to_string()],
        vec![
            "usr/share/ok.txt".to_string(),
            format!("{}/abs.txt", abs.display()),
        ],
    ];
    for names in cases {
        // The repository's record matches: only the unpacking can stop it.
        let file = sc.at("server.tgz");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let bytes = evil_tarball(&names);
        fs::write(&file, &bytes).unwrap();
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        fs::write(
            format!("{}.sha256", file.display()),
            format!("{:x}  {file_name}\n", sha2::Sha256::digest(&bytes)),
        )
        .unwrap();
        let before = snapshot_dir(&sc.w);
        let (ok, _, err) = sc.fetch_into(sc.repo.to_str().unwrap(), &stage, &[]);
        assert!(!ok);
        assert!(
            err.contains("refused") && err.contains(names[1]),
            "{names:?}: {err}"
        );
        // Nothing anywhere in the work dir changed (the stage dir included), and the
        // escaping paths do not exist.
        assert_eq!(snapshot_dir(&sc.w), before, "{names:?}");
        assert!(!sc.w.join("deep/escaped.txt").exists());
        assert!(!abs.exists());
    }
}

#[test]
fn downloads_resume_and_are_kept() {
    let sc = Scenario::new();
    let (repo, chosen, cache) = (&sc.repo, &sc.chosen, &sc.cache);
    let server = Server::start(&sc.data, &[]);
    let url = format!("{}/repos/nightly", server.url);
    // Half of the server tarball is there from an interrupted run.
    let full = fs::read(repo.join(&chosen["server.tgz"])).unwrap();
    let part = cache.join(format!("{}.part", chosen["server.tgz"]));
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, &full[..full.len() / 2]).unwrap();
    let sent = |server: &Server| -> f64 {
        let (_, text) = server.get("/metrics");
        String::from_utf8(text)
            .unwrap()
            .lines()
            .filter(|l| {
                l.starts_with("packyard_http_response_bytes_total{") && l.contains("/repos/")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = sent(&server);
    let (_, report, err) = sc.fetch(&url);
    assert_eq!(
        report["unpacked"].as_array().map(Vec::len),
        Some(2),
        "{err}"
    );
    let schemas = fs::read(repo.join(&chosen["schemas.tgz"])).unwrap();
    let sent_first = sent(&server) - before;
    // Exactly: the schemas tarball whole, the server tarball's second half, and the two
    // checksum records.
    let record = |k: &str| {
        fs::metadata(format!("{}.sha256", repo.join(&chosen[k]).display()))
            .unwrap()
            .len() as usize
    };
    let records = record("schemas.tgz") + record("server.tgz");
    let expected = (schemas.len() + full.len() - full.len() / 2 + records) as f64;
    assert_eq!(sent_first, expected);
    assert_eq!(
        fs::read(cache.join(&chosen["server.tgz"])).unwrap(),
        full,
        "the resumed download is whole"
    );
    assert!(!part.exists());
    // A second run downloads nothing: the kept files are checked and used, and marked
    // used (a workspace prunes downloads by their last use).
    let kept = cache.join(&chosen["server.tgz"]);
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86400);
    fs::File::options()
        .write(true)
        .open(&kept)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    let before = sent(&server);
    let (_, report, _) = sc.fetch(&url);
    let used = fs::metadata(&kept).unwrap().modified().unwrap();
    assert!(used.elapsed().unwrap().as_secs() < 3600, "{used:?}");
    assert!(
        report["downloaded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["cached"] == true),
        "{report}"
    );
    assert_eq!(sent(&server) - before, records as f64);
    server.stop();
}

#[test]
fn the_server_plans_for_curl_only_nodes() {
    let sc = Scenario::new();
    let chosen = &sc.chosen;
    let server = Server::start(&sc.data, &["--tree", sc.tree.to_str().unwrap()]);
    let get = |path: &str| -> (u16, Value) {
        let (s, b) = server.get(path);
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    };
    let (status, plan) = get(&format!(
        "/api/v1/resolve?configuration={WEB}&platform=deb12_amd64&runtime_deps=true\
         &installed=dpkg%3D1.21.22&installed=make%3D4.3-4.1"
    ));
    assert_eq!(status, 200, "{plan}");
    // The same plan as the command line's against the served repository.
    let (_, cli, _) = sc.resolve(
        &format!("{}/repos/nightly", server.url),
        &["--privileged", "no"],
    );
    let actions = |p: &Value| fields(p, &["module", "action", "source"]);
    assert_eq!(plan["order"], cli["order"]);
    assert_eq!(actions(&plan), actions(&cli));
    assert_eq!(
        plan["dependencies"][0]["source"],
        format!("{}/repos/nightly/{}", server.url, chosen["schemas.tgz"])
    );
    // Privileged: the DEB; the absent OS package is installed by apt-get.
    let (_, plan) = get(&format!(
        "/api/v1/resolve?configuration={WEB}&platform=deb12_amd64&privileged=true"
    ));
    assert_eq!(plan["dependencies"][0]["action"], "install", "{plan}");
    assert!(plan.to_string().contains(ABSENT), "{plan}");
    // The server keeps the tree between plans, but not past an edit of a module file.
    let file = sc.tree.join("servers/web_server/module.toml");
    let text = fs::read_to_string(&file).unwrap();
    let absent =
        format!("[[configuration.dependencies]]\nexternal = \"{ABSENT}\"\nscope = \"build\"\n");
    assert!(text.contains(&absent));
    fs::write(&file, text.replacen(&absent, "", 1)).unwrap();
    let (status, plan) = get(&format!(
        "/api/v1/resolve?configuration={WEB}&platform=deb12_amd64&privileged=true"
    ));
    assert_eq!(status, 200, "{plan}");
    assert!(!plan.to_string().contains(ABSENT), "{plan}");
    // Errors: a failing plan, a bad parameter.
    let (status, e) = get("/api/v1/resolve?configuration=nope&platform=deb12_amd64");
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("unresolvable")),
        "{e}"
    );
    let (status, e) = get(&format!("/api/v1/resolve?configuration={WEB}&colour=red"));
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("bad_query")),
        "{e}"
    );
    server.stop();
}
