//! `packyard pack` judged by the real tools: rpm, rpmlint, dpkg, dpkg-deb, lintian, tar.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{FIXTURE_TREE, have_tool, packyard, release, stderr, write};

pub(crate) fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

pub(crate) fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packs and returns the parsed `--json` artifact list.
pub(crate) fn pack(
    tree: &Path,
    conf: &str,
    platform: &str,
    prefix: &Path,
    out: &Path,
    env: &[(&str, &str)],
) -> Vec<Value> {
    pack_args(tree, conf, platform, prefix, out, &[], env)
}

/// `pack` with extra arguments (SOURCE_DATE_EPOCH only from `env`).
fn pack_args(
    tree: &Path,
    conf: &str,
    platform: &str,
    prefix: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["pack", "--json", "--tree"])
        .arg(tree)
        .args(["--configuration", conf, "--platform", platform, "--prefix"])
        .arg(prefix)
        .arg("--out")
        .arg(out)
        .args(extra)
        .current_dir(crate::support::root())
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pack {conf} {platform} {extra:?}: {}{}",
        crate::support::stdout(&o),
        stderr(&o)
    );
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) fn artifact(list: &[Value], format: &str, out: &Path) -> PathBuf {
    let a = list
        .iter()
        .find(|a| a["format"] == format)
        .unwrap_or_else(|| panic!("no {format} in {list:?}"));
    let p = out.join(a["path"].as_str().unwrap());
    assert_eq!(fs::metadata(&p).unwrap().len(), a["size"].as_u64().unwrap());
    p
}

fn shown(conf: &str, platform: &str) -> Value {
    let o = packyard(&[
        "show",
        conf,
        "--tree",
        FIXTURE_TREE,
        "--platform",
        platform,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What the configuration says the package requires at run time, in RPM or Debian form.
fn expected_requires(r: &Value, deb: bool) -> BTreeSet<String> {
    let mut want = BTreeSet::new();
    for d in r["dependencies"].as_array().unwrap() {
        if d["scope"] == "build" {
            continue;
        }
        let name = d["package_name"].as_str().or(d["name"].as_str()).unwrap();
        let version = d["version"].as_str().unwrap_or_default();
        let clauses: Vec<(String, String)> = match d["type"].as_str().unwrap() {
            "dynamic" => vec![(">=".into(), version.into())],
            "static" => vec![("=".into(), version.into())],
            _ => d["constraint"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c["op"].as_str().unwrap().into(),
                                c["version"].as_str().unwrap().into(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if clauses.is_empty() {
            want.insert(name.to_string());
        }
        for (op, v) in clauses {
            if deb {
                let op = match op.as_str() {
                    "<" => "<<",
                    ">" => ">>",
                    o => o,
                };
                want.insert(format!("{name} ({op} {v})"));
            } else {
                want.insert(format!("{name} {op} {v}"));
            }
        }
    }
    if let Some(extra) = r["properties"]["package.requires"]["value"].as_str() {
        want.extend(extra.split(',').map(|s| s.trim().to_string()));
    }
    want
}

/// (path, type char + permission bits, symlink target) of every entry under a prefix.
/// GNU tar's unpacking of tarball `tgz` into `dir` (made); `dir`.
pub(crate) fn untar(tgz: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    ok(
        "tar",
        &["-xzf", tgz.to_str().unwrap(), "-C", dir.to_str().unwrap()],
    );
    dir.to_path_buf()
}

pub(crate) fn tree_listing(root: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, Option<String>)>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let kind = if m.file_type().is_symlink() {
                'l'
            } else if m.is_dir() {
                'd'
            } else {
                '-'
            };
            let target = fs::read_link(&p)
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
            let mode = if kind == 'l' {
                0o777
            } else {
                m.mode() & 0o7777
            };
            out.insert(rel, (format!("{kind}{mode:o}"), target));
            if kind == 'd' {
                go(root, &p, out);
            }
        }
    }
    go(root, root, &mut out);
    out
}

/// Findings of a checker, minus those allowed in tests/lint-allow.toml.
fn unexpected(tool: &str, findings: Vec<(String, String)>) -> Vec<String> {
    let allow: toml::Table = toml::from_str(
        &fs::read_to_string(crate::support::root().join("tests/lint-allow.toml")).unwrap(),
    )
    .unwrap();
    let allowed = allow[tool].as_table().unwrap();
    findings
        .into_iter()
        .filter(|(tag, _)| !allowed.contains_key(tag))
        .map(|(tag, line)| format!("{tag}: {line}"))
        .collect()
}

pub(crate) fn rpmlint(rpm: &Path) -> Vec<String> {
    let out = run("rpmlint", &[rpm.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings = text
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(": E: ").or_else(|| l.split_once(": W: "))?;
            Some((rest.split_whitespace().next()?.to_string(), l.to_string()))
        })
        .collect();
    unexpected("rpmlint", findings)
}

/// lintian with its temporary files in `tmp`, a directory the caller removes: it leaves
/// the Berkeley DB files of its ELF checks (`mldbm-elf-*`) behind.
pub(crate) fn lintian_in(tmp: &Path) -> Command {
    let mut cmd = Command::new("lintian");
    cmd.env("TMPDIR", tmp);
    cmd
}

pub(crate) fn lintian(deb: &Path) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = lintian_in(tmp.path())
        .args(["--allow-root", deb.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("lintian: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .filter_map(|l| {
            Some((
                l.splitn(3, ": ")
                    .nth(2)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
                l.to_string(),
            ))
        })
        .collect();
    unexpected("lintian", findings)
}

fn rpm_query(rpm: &Path, what: &str) -> BTreeSet<String> {
    ok("rpm", &["-qp", what, rpm.to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.starts_with("rpmlib("))
        .collect()
}

/// Installs an RPM into a new database under `root`, without dependencies or scripts;
/// `extra` adds options such as `--excludedocs`.
pub(crate) fn rpm_install(rpm: &Path, root: &Path, extra: &[&str]) {
    let root_s = root.to_str().unwrap();
    ok("rpm", &["--root", root_s, "--initdb"]);
    let mut args = vec!["-i", "--nodeps", "--noscripts", "--root", root_s];
    args.extend_from_slice(extra);
    args.push(rpm.to_str().unwrap());
    ok("rpm", &args);
}

/// `rpm -V` of a package installed under `root` succeeds and reports nothing.
pub(crate) fn rpm_verify_clean(root: &Path, name: &str) {
    let verify = run(
        "rpm",
        &["-V", "--nodeps", "--root", root.to_str().unwrap(), name],
    );
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "rpm -V {name}: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// Installs a DEB into a new dpkg database under `root` (scripts run, outside a chroot).
pub(crate) fn dpkg_install(deb: &Path, root: &Path) {
    let admin = root.join("var/lib/dpkg");
    for sub in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(sub)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    ok(
        "dpkg",
        &[
            &root_arg,
            "--force-depends",
            "--force-script-chrootless",
            "--log=/dev/null",
            "-i",
            deb.to_str().unwrap(),
        ],
    );
}

/// `dpkg -V` of a package installed under `root` succeeds and reports nothing.
pub(crate) fn dpkg_verify_clean(root: &Path, pkg: &str) {
    let root_arg = format!("--root={}", root.display());
    let verify = run("dpkg", &[&root_arg, "-V", pkg]);
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "dpkg -V {pkg}: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn rpm_packages_pass_rpm_checks() {
    if !have_tool("make", &["--version"])
        || !have_tool("rpm", &["--version"])
        || !have_tool("rpmlint", &["--version"])
    {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    for b in release("el9_x86_64") {
        let list = pack(
            Path::new(FIXTURE_TREE),
            &b.configuration,
            "el9_x86_64",
            &b.prefix,
            out.path(),
            &[],
        );
        let rpm = artifact(&list, "rpm", out.path());
        let r = rpm.to_str().unwrap();
        assert!(ok("rpm", &["-K", r]).contains("digests OK"));

        // Relations as the configuration says.
        let shown = shown(&b.configuration, "el9_x86_64");
        let requires = rpm_query(&rpm, "--requires");
        for want in expected_requires(&shown, false) {
            assert!(
                requires.contains(&want),
                "{}: no `{want}` in {requires:?}",
                b.configuration
            );
        }
        let props = &shown["properties"];
        for (key, query) in [
            ("package.provides", "--provides"),
            ("package.conflicts", "--conflicts"),
            ("package.obsoletes", "--obsoletes"),
        ] {
            let got = rpm_query(&rpm, query);
            if let Some(v) = props[key]["value"].as_str() {
                for want in v.split(',').map(str::trim) {
                    assert!(
                        got.contains(want),
                        "{}: no `{want}` in {query} {got:?}",
                        b.configuration
                    );
                }
            }
        }

        // Modes and symlinks as staged; only the package's own directories listed.
        let staged = tree_listing(&b.prefix);
        let listing = ok("rpm", &["-qlvp", r]);
        let mut listed = BTreeSet::new();
        for line in listing.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let path = f[8].trim_start_matches('/').to_string();
            let (mode, target) = &staged[&path];
            let kind = mode.chars().next().unwrap();
            assert_eq!(
                f[0].chars().next().unwrap(),
                if kind == '-' { '-' } else { kind },
                "{line}"
            );
            if let Some(t) = target {
                assert_eq!(f.get(10), Some(&t.as_str()), "{line}");
            }
            listed.insert(path);
        }
        for (path, (mode, _)) in &staged {
            if !mode.starts_with('d') {
                assert!(
                    listed.contains(path),
                    "{}: {path} not in the RPM",
                    b.configuration
                );
            }
        }
        for shared in ["usr", "usr/bin", "usr/share", "etc", "usr/lib"] {
            assert!(
                !listed.contains(shared),
                "{}: owns /{shared}",
                b.configuration
            );
        }

        // Installs into a throwaway root and verifies clean.
        let root = tempfile::tempdir().unwrap();
        rpm_install(&rpm, root.path(), &[]);
        let name = ok("rpm", &["-qp", "--qf", "%{NAME}", r]);
        rpm_verify_clean(root.path(), &name);
        assert_eq!(rpmlint(&rpm).join("\n"), "", "{}", b.configuration);
    }
    // The web server's relations, written out in full.
    let web = out.path().join("my-project/my-project.servers.web_server/2.5.1/el9_x86_64/my-web-server-2.5.1-1.x86_64.rpm");
    let req = rpm_query(&web, "--requires");
    for want in [
        "my-api-java >= 5.2.0",
        "my-database-server = 2.0.1-1",
        "ca-certificates",
        "/bin/sh",
    ] {
        assert!(req.contains(want), "{want} not in {req:?}");
    }
    assert!(
        !req.iter().any(|r| r.starts_with("make")),
        "build-only dependency in {req:?}"
    );
    assert!(rpm_query(&web, "--provides").contains("web-front-end = 2.5.1"));
    assert_eq!(
        rpm_query(&web, "--conflicts"),
        BTreeSet::from(["old-web-server < 2.0".to_string()])
    );
    assert_eq!(
        rpm_query(&web, "--obsoletes"),
        BTreeSet::from(["my-web-frontend < 2.0".to_string()])
    );
    let w = web.to_str().unwrap();
    let config = ok("rpm", &["-qcp", w]);
    assert_eq!(config.trim(), "/etc/web_server/web.conf");
    let scripts = ok("rpm", &["-qp", "--scripts", w]);
    assert!(
        scripts.contains("postinstall scriptlet") && scripts.contains("preuninstall scriptlet"),
        "{scripts}"
    );
    let changelog = ok("rpm", &["-qp", "--changelog", w]);
    assert!(
        changelog.contains("- 2.5.1-1\n- greets with the schema version"),
        "{changelog}"
    );
    assert!(
        changelog.contains("- 2.4.0-1\n- first release"),
        "{changelog}"
    );
    let db = out.path().join("my-project/my-project.servers.database_server/2.0.1/el9_x86_64/my-database-server-2.0.1-1.x86_64.rpm");
    assert!(rpm_query(&db, "--requires").contains("libc.so.6()(64bit)"));
}

#[test]
fn deb_packages_pass_dpkg_checks() {
    if !have_tool("make", &["--version"])
        || !have_tool("dpkg-deb", &["--version"])
        || !have_tool("lintian", &["--version"])
    {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    for b in release("deb12_amd64") {
        let list = pack(
            Path::new(FIXTURE_TREE),
            &b.configuration,
            "deb12_amd64",
            &b.prefix,
            out.path(),
            &[],
        );
        let deb = artifact(&list, "deb", out.path());
        let d = deb.to_str().unwrap();
        let shown = shown(&b.configuration, "deb12_amd64");
        let field = |name: &str| ok("dpkg-deb", &["--field", d, name]).trim().to_string();
        assert_eq!(
            field("Package"),
            shown["properties"]["packageName"]["value"]
                .as_str()
                .unwrap()
        );
        assert_eq!(
            field("Version"),
            format!(
                "{}-{}",
                shown["properties"]["version"]["value"].as_str().unwrap(),
                shown["properties"]["age"]["value"].as_str().unwrap()
            )
        );
        assert_eq!(field("Architecture"), "amd64");
        let depends: BTreeSet<String> = field("Depends")
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for want in expected_requires(&shown, true) {
            assert!(
                depends.contains(&want),
                "{}: no `{want}` in {depends:?}",
                b.configuration
            );
        }
        ok("dpkg-deb", &["--info", d]);

        // Contents: every staged path with its mode, plus the generated docs.
        let contents = ok("dpkg-deb", &["--contents", d]);
        let staged = tree_listing(&b.prefix);
        for (path, (mode, target)) in &staged {
            let suffix = if mode.starts_with('d') { "/" } else { "" };
            let line = contents
                .lines()
                .find(|l| {
                    l.contains(&format!(" ./{path}{suffix}"))
                        && !l.contains(&format!(" ./{path}{suffix}/"))
                })
                .unwrap_or_else(|| panic!("{path} not in\n{contents}"));
            assert!(line.starts_with(mode.chars().next().unwrap()), "{line}");
            if let Some(t) = target {
                assert!(line.ends_with(&format!("-> {t}")), "{line}");
            }
        }
        let pkg = field("Package");
        assert!(contents.contains(&format!("./usr/share/doc/{pkg}/copyright")));
        assert!(contents.contains(&format!("./usr/share/doc/{pkg}/changelog.Debian.gz")));

        // Installs into a throwaway root (scripts run, outside a chroot) and verifies.
        let root = tempfile::tempdir().unwrap();
        dpkg_install(&deb, root.path());
        dpkg_verify_clean(root.path(), &pkg);
        for path in staged.keys() {
            assert!(
                fs::symlink_metadata(root.path().join(path)).is_ok(),
                "{path} not installed"
            );
        }
        assert_eq!(lintian(&deb).join("\n"), "", "{}", b.configuration);
    }
    let web = out.path().join("my-project/my-project.servers.web_server/2.5.1/deb12_amd64/my-web-server_2.5.1-1_deb12_amd64.deb");
    let w = web.to_str().unwrap();
    assert_eq!(
        ok("dpkg-deb", &["--field", w, "Conflicts"]).trim(),
        "old-web-server (<< 2.0)"
    );
    for field in ["Breaks", "Replaces"] {
        assert_eq!(
            ok("dpkg-deb", &["--field", w, field]).trim(),
            "my-web-frontend (<< 2.0)",
            "{field}"
        );
    }
    assert_eq!(
        ok("dpkg-deb", &["--info", w, "conffiles"]).trim(),
        "/etc/web_server/web.conf"
    );
    let md5 = ok("dpkg-deb", &["--info", w, "md5sums"]);
    assert!(
        md5.lines()
            .any(|l| l.ends_with("  usr/bin/web-server") && l.len() == 32 + 2 + 18),
        "{md5}"
    );
    assert!(ok("dpkg-deb", &["--info", w, "postinst"]).starts_with("#!/bin/sh"));
    assert!(ok("dpkg-deb", &["--info", w, "prerm"]).starts_with("#!/bin/sh"));
}

/// A one-component tree to pack hand-made prefixes with.
fn mini_tree(dir: &Path, package_name: &str) -> PathBuf {
    let root = dir.join("edge");
    write(
        &root.join("module.toml"),
        r#"[module]
name = "edge"
kind = "project"
description = "Edge cases"
license = "MIT"
vendor = "Tests"
homepage = "https://example.org/edge"

[[configuration]]
name = "edge_R_1_0_0_1"
version = "1.0.0"
age = 1
children = ["tool_R_1_0_0_1"]

[configuration.properties]
"package.maintainer" = "Tests <tests@example.org>"
"#,
    );
    write(
        &root.join("tool/module.toml"),
        &format!(
            r#"[module]
name = "edge.tool"
kind = "component"
description = "A tool with awkward files"
package_name = "{package_name}"

[[configuration]]
name = "tool_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"
description = "1.0.0-1: first"

[configuration.properties]
"package.owner./var/lib/edge-tool" = "nobody:nogroup"

[configuration.commands]
checkout = "true"
"#
        ),
    );
    root
}

/// Hard links, names with spaces and non-ASCII, a long path, empty directories,
/// relative and absolute symlinks, unusual modes.
fn awkward_prefix(dir: &Path) -> PathBuf {
    let p = dir.join("prefix");
    let file = |rel: &str, text: &str, mode: u32| {
        let path = p.join(rel);
        write(&path, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    file("usr/bin/edge-tool", "#!/bin/sh\necho edge\n", 0o755);
    fs::hard_link(
        p.join("usr/bin/edge-tool"),
        p.join("usr/bin/edge-tool-again"),
    )
    .unwrap();
    file("usr/share/edge-tool/with space.txt", "space\n", 0o644);
    file(
        "usr/share/edge-tool/ünïcödé ファイル.txt",
        "unicode\n",
        0o644,
    );
    file("usr/share/edge-tool/private.key", "secret\n", 0o600);
    let long = format!(
        "usr/share/edge-tool/{}/{}.txt",
        "d".repeat(60),
        "f".repeat(60)
    );
    file(&long, "long\n", 0o644);
    std::os::unix::fs::symlink("edge-tool", p.join("usr/bin/edge-link")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/edge-tool/with space.txt",
        p.join("usr/bin/abs-link"),
    )
    .unwrap();
    fs::create_dir_all(p.join("var/lib/edge-tool")).unwrap();
    fs::set_permissions(
        p.join("var/lib/edge-tool"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    fs::create_dir_all(p.join("usr/share/edge-tool/empty")).unwrap();
    p
}

/// Path → (mode, symlink target) of an installed tree, restricted to the staged paths,
/// and the inode of each regular file.
fn installed(
    root: &Path,
    staged: &BTreeMap<String, (String, Option<String>)>,
) -> BTreeMap<String, (String, Option<String>)> {
    let all = tree_listing(root);
    staged
        .keys()
        .filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

#[test]
fn awkward_prefixes_survive_every_format() {
    if !have_tool("rpm", &["--version"])
        || !have_tool("dpkg-deb", &["--version"])
        || !have_tool("tar", &["--version"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = mini_tree(dir.path(), "edge-tool");
    let prefix = awkward_prefix(dir.path());
    let staged = tree_listing(&prefix);
    let out = dir.path().join("out");
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];

    // The tarball, unpacked by GNU tar, is the prefix again.
    let el = pack(&tree, "tool_R_1_0_0_1", "el9_x86_64", &prefix, &out, &env);
    let tgz = artifact(&el, "tgz", &out);
    let unpacked = untar(&tgz, &dir.path().join("unpacked"));
    assert_eq!(tree_listing(&unpacked), staged);
    let listing = ok("tar", &["-tvzf", tgz.to_str().unwrap()]);
    assert!(
        listing
            .lines()
            .all(|l| l.contains(" root/root ") || l.contains(" nobody/nogroup ")),
        "{listing}"
    );
    assert!(
        listing.contains("var/lib/edge-tool/") && listing.contains("nobody/nogroup"),
        "{listing}"
    );
    assert!(
        listing.contains("2023-11-14"),
        "mtime is SOURCE_DATE_EPOCH: {listing}"
    );
    assert!(
        listing.contains("usr/bin/edge-tool-again link to usr/bin/edge-tool"),
        "{listing}"
    );

    // The RPM installs the same tree; hard links share an inode.
    let rpm = artifact(&el, "rpm", &out);
    let root = dir.path().join("rpmroot");
    let root_s = root.to_str().unwrap();
    rpm_install(&rpm, &root, &[]);
    let got = installed(&root, &staged);
    assert_eq!(
        got,
        staged
            .iter()
            .filter(|(k, _)| got.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    );
    for (path, (mode, _)) in &staged {
        if !mode.starts_with('d') {
            assert!(got.contains_key(path), "{path} not installed from the RPM");
        }
    }
    let ino = |r: &Path, p: &str| fs::metadata(r.join(p)).unwrap().ino();
    assert_eq!(
        ino(&root, "usr/bin/edge-tool"),
        ino(&root, "usr/bin/edge-tool-again")
    );
    let owner = ok(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]",
            rpm.to_str().unwrap(),
        ],
    );
    assert!(
        owner.contains("/var/lib/edge-tool nobody:nogroup"),
        "{owner}"
    );
    let verify = run("rpm", &["-V", "--nodeps", "--root", root_s, "edge-tool"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // The DEB too.
    let deb_list = pack(&tree, "tool_R_1_0_0_1", "deb12_amd64", &prefix, &out, &env);
    let deb = artifact(&deb_list, "deb", &out);
    let root = dir.path().join("debroot");
    ok(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    assert_eq!(installed(&root, &staged), staged);
    assert_eq!(
        ino(&root, "usr/bin/edge-tool"),
        ino(&root, "usr/bin/edge-tool-again")
    );
    let contents = ok("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    assert!(contents.contains("drwxr-x--- nobody/nogroup"), "{contents}");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let out = Command::new("cp")
        .arg("-R")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn packing_is_reproducible_across_directories() {
    if !have_tool("make", &["--version"]) {
        return;
    }
    let web = release("el9_x86_64")
        .iter()
        .find(|b| b.module == "my-project.servers.web_server")
        .unwrap();
    let digests = |base: &Path, platform: &str, env: &[(&str, &str)]| -> Vec<(String, String)> {
        // Fresh copies (new mtimes, other absolute paths) of the tree and the prefix.
        let tree = base.join("some/where/tree");
        let prefix = base.join("else/prefix");
        copy_dir(&crate::support::root().join(FIXTURE_TREE), &tree);
        copy_dir(&web.prefix, &prefix);
        let out = base.join("out");
        pack(&tree, &web.configuration, platform, &prefix, &out, env)
            .iter()
            .map(|a| {
                (
                    a["path"].as_str().unwrap().to_string(),
                    a["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    for platform in ["el9_x86_64", "deb12_amd64"] {
        for env in [&[("SOURCE_DATE_EPOCH", "1700000000")][..], &[]] {
            let a = tempfile::tempdir().unwrap();
            let b = tempfile::tempdir().unwrap();
            let first = digests(a.path(), platform, env);
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let second = digests(&b.path().join("deeper"), platform, env);
            assert_eq!(first.len(), 2);
            assert_eq!(first, second, "{platform} {env:?}");
        }
    }
}

/// Runs a pack that must fail; checks the message and that `out` did not change.
fn refused(tree: &Path, platform: &str, prefix: &Path, expect: &[&str]) {
    refused_with(tree, platform, prefix, &[], expect)
}

fn refused_with(tree: &Path, platform: &str, prefix: &Path, extra: &[&str], expect: &[&str]) {
    let out = prefix.parent().unwrap().join("out-refused");
    write(&out.join("keep/me.txt"), "already here");
    let before = tree_listing(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(["pack", "--tree"])
        .arg(tree)
        .args([
            "--configuration",
            "tool_R_1_0_0_1",
            "--platform",
            platform,
            "--prefix",
        ])
        .arg(prefix)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "packed anyway: {err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` not in: {err}");
    }
    assert!(err.contains("hint: "), "no hint: {err}");
    assert_eq!(tree_listing(&out), before, "--out changed");
}

#[test]
fn bad_prefixes_and_names_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let tree = mini_tree(dir.path(), "edge-tool");
    let base = dir.path().join("cases");

    refused(
        &tree,
        "el9_x86_64",
        &base.join("missing/prefix"),
        &["does not exist"],
    );

    let empty = base.join("empty/prefix");
    fs::create_dir_all(&empty).unwrap();
    refused(&tree, "el9_x86_64", &empty, &["is empty", "install target"]);

    let socket = base.join("socket/prefix");
    fs::create_dir_all(socket.join("run")).unwrap();
    write(&socket.join("usr/bin/tool"), "x");
    let _listener = std::os::unix::net::UnixListener::bind(socket.join("run/tool.sock")).unwrap();
    refused(&tree, "deb12_amd64", &socket, &["tool.sock", "is a socket"]);

    let fifo = base.join("fifo/prefix");
    write(&fifo.join("usr/bin/tool"), "x");
    ok("mkfifo", &[fifo.join("usr/bin/pipe").to_str().unwrap()]);
    refused(&tree, "el9_x86_64", &fifo, &["pipe", "is a FIFO"]);

    // Creating a device node needs root; the CI runs as root.
    if running_as_root() {
        let dev = base.join("device/prefix");
        write(&dev.join("usr/bin/tool"), "x");
        ok(
            "mknod",
            &[dev.join("usr/null").to_str().unwrap(), "c", "1", "3"],
        );
        refused(&tree, "el9_x86_64", &dev, &["null", "character device"]);
    }

    let good = base.join("good/prefix");
    write(&good.join("usr/bin/tool"), "x");
    fs::create_dir_all(good.join("var/lib/edge-tool")).unwrap();
    for bad in ["edge_tool", "Edge-tool"] {
        let named = dir.path().join(bad);
        let tree = mini_tree(&named, bad);
        refused(
            &tree,
            "deb12_amd64",
            &good,
            &[bad, "not a valid Debian package name", "package_name"],
        );
    }
    // The same names are fine for RPM.
    let rpm_ok = mini_tree(&dir.path().join("rpm-ok"), "edge_tool");
    let out = dir.path().join("rpm-ok-out");
    pack(&rpm_ok, "tool_R_1_0_0_1", "el9_x86_64", &good, &out, &[]);
}

#[test]
fn formats_choose_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let tree = mini_tree(dir.path(), "edge-tool");
    let prefix = dir.path().join("prefix");
    write(&prefix.join("usr/bin/tool"), "#!/bin/sh\necho tool\n");
    fs::create_dir_all(prefix.join("var/lib/edge-tool")).unwrap();
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let both = dir.path().join("both");
    let all = pack(
        &tree,
        "tool_R_1_0_0_1",
        "deb12_amd64",
        &prefix,
        &both,
        &epoch,
    );
    assert_eq!(all.len(), 2);
    for (format, other) in [("deb", "tgz"), ("tgz", "deb")] {
        let out = dir.path().join(format);
        let one = pack_args(
            &tree,
            "tool_R_1_0_0_1",
            "deb12_amd64",
            &prefix,
            &out,
            &["--formats", format],
            &epoch,
        );
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!(one[0]["format"], format);
        // The same bytes as when written together, and nothing else in --out.
        let same = all.iter().find(|a| a["format"] == format).unwrap();
        assert_eq!(one[0]["sha256"], same["sha256"]);
        assert_eq!(
            tree_listing(&out)
                .values()
                .filter(|(k, _)| k.starts_with('-'))
                .count(),
            1
        );
        assert!(
            !out.join(artifact(&all, other, &both).strip_prefix(&both).unwrap())
                .exists()
        );
    }
    refused_with(
        &tree,
        "deb12_amd64",
        &prefix,
        &["--formats", "tgz,rpm"],
        &["platform deb12_amd64 makes DEB packages, not RPM"],
    );
}

/// Without SOURCE_DATE_EPOCH or `package.date`, a package is dated by the last commit of
/// its module file when the tree is in git, else by a fixed date: never by the clock.
#[test]
fn a_git_tree_dates_packages_by_the_module_files_last_commit() {
    if !have_tool("git", &["--version"]) || !have_tool("rpm", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = mini_tree(dir.path(), "edge-tool");
    let prefix = dir.path().join("prefix");
    write(&prefix.join("usr/bin/tool"), "#!/bin/sh\necho tool\n");
    fs::create_dir_all(prefix.join("var/lib/edge-tool")).unwrap();
    let built_at = |out: &str| -> i64 {
        let out = dir.path().join(out);
        let list = pack(&tree, "tool_R_1_0_0_1", "el9_x86_64", &prefix, &out, &[]);
        let rpm = artifact(&list, "rpm", &out);
        ok(
            "rpm",
            &["-qp", "--qf", "%{BUILDTIME}", rpm.to_str().unwrap()],
        )
        .trim()
        .parse()
        .unwrap()
    };
    assert_eq!(built_at("plain"), 946_684_800, "not in git: 2000-01-01");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=T", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(&tree)
            .env("GIT_AUTHOR_DATE", "@1600000000 +0000")
            .env("GIT_COMMITTER_DATE", "@1600000000 +0000")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "tree"]);
    assert_eq!(built_at("committed"), 1_600_000_000);
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
