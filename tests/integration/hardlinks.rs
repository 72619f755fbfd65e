//! Hard-link sets with a member under `/usr/share/doc`, as `make install` often leaves
//! them: packed for RPM, DEB and tarball, and judged by rpm, rpmlint, dpkg, lintian, tar.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::pack::{
    artifact, dpkg_install, dpkg_verify_clean, lintian, ok, pack, rpm_install, rpm_verify_clean,
    rpmlint, tree_listing,
};
use crate::support::{FIXTURE_TREE, have_tool, write};

const CONF: &str = "cli_client_R_5_6_1_1";
const PKG: &str = "my-cli-client";
const DOC: &str = "usr/share/doc/my-cli-client/";
const EPOCH: [(&str, &str); 1] = [("SOURCE_DATE_EPOCH", "1700000000")];

/// The staged hard-link sets, first member first; each has one member in the doc directory.
const SETS: [&[&str]; 2] = [
    &[
        "usr/share/my-cli-client/NEWS",
        "usr/share/doc/my-cli-client/NEWS",
    ],
    &[
        "usr/share/my-cli-client/README",
        "usr/share/my-cli-client/README.txt",
        "usr/share/doc/my-cli-client/README",
    ],
];

/// A program, and the sets of [`SETS`] linked as `ln` in an install target makes them.
fn staged_prefix(dir: &Path) -> PathBuf {
    let p = dir.join("prefix");
    let program = p.join("usr/bin/my-cli");
    write(&program, "#!/bin/sh\necho cli\n");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    for set in SETS {
        write(&p.join(set[0]), &format!("{} of {PKG}\n", set[0]));
        for link in &set[1..] {
            fs::create_dir_all(p.join(link).parent().unwrap()).unwrap();
            fs::hard_link(p.join(set[0]), p.join(link)).unwrap();
        }
    }
    p
}

fn ino(root: &Path, rel: &str) -> u64 {
    fs::metadata(root.join(rel)).unwrap().ino()
}

/// Every member of every set is installed under `root` with its staged content.
fn same_contents(root: &Path, prefix: &Path) {
    for member in SETS.iter().flat_map(|s| s.iter()) {
        assert_eq!(
            fs::read(root.join(member)).unwrap(),
            fs::read(prefix.join(member)).unwrap(),
            "{member}"
        );
    }
}

/// Checker findings minus the ones this staged tree causes by design: it links files
/// across directories, which lintian warns about in the DEB (kept as staged), and rpmlint
/// sees the RPM's separate copy of a doc member as a duplicate (see `pack::rpm`).
fn beyond(findings: Vec<String>, tag: &str) -> String {
    findings
        .into_iter()
        .filter(|f| !(f.starts_with(&format!("{tag}: ")) && f.contains(DOC)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hard_links_into_the_doc_directory_pack_as_rpm() {
    if !have_tool("rpm", &["--version"]) || !have_tool("rpmlint", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = staged_prefix(dir.path());
    let out = dir.path().join("out");
    let list = pack(
        Path::new(FIXTURE_TREE),
        CONF,
        "el9_x86_64",
        &prefix,
        &out,
        &EPOCH,
    );
    let rpm = artifact(&list, "rpm", &out);
    let r = rpm.to_str().unwrap();
    assert!(ok("rpm", &["-K", r]).contains("digests OK"));

    // The doc members are still documentation, and only they.
    let docs: BTreeSet<String> = ok("rpm", &["-qpd", r])
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = SETS
        .iter()
        .flat_map(|s| s.iter())
        .filter(|m| m.starts_with(DOC))
        .map(|m| format!("/{m}"))
        .collect();
    assert_eq!(docs, want);

    let root = dir.path().join("root");
    rpm_install(&rpm, &root, &[]);
    rpm_verify_clean(&root, PKG);
    same_contents(&root, &prefix);
    // The members that are not documentation still share one inode.
    assert_eq!(
        ino(&root, "usr/share/my-cli-client/README"),
        ino(&root, "usr/share/my-cli-client/README.txt")
    );

    // Without docs, the other members of each set are still there, and verify clean.
    let bare = dir.path().join("bare");
    rpm_install(&rpm, &bare, &["--excludedocs"]);
    rpm_verify_clean(&bare, PKG);
    for member in SETS.iter().flat_map(|s| s.iter()) {
        assert_eq!(
            bare.join(member).exists(),
            !member.starts_with(DOC),
            "{member} with --excludedocs"
        );
    }

    assert_eq!(beyond(rpmlint(&rpm), "files-duplicate"), "");
}

#[test]
fn hard_links_into_the_doc_directory_pack_as_deb_and_tarball() {
    if !have_tool("dpkg-deb", &["--version"])
        || !have_tool("lintian", &["--version"])
        || !have_tool("tar", &["--version"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = staged_prefix(dir.path());
    let out = dir.path().join("out");
    let list = pack(
        Path::new(FIXTURE_TREE),
        CONF,
        "deb12_amd64",
        &prefix,
        &out,
        &EPOCH,
    );

    // A DEB has no doc flag: every set stays whole, one inode when installed.
    let deb = artifact(&list, "deb", &out);
    let root = dir.path().join("root");
    dpkg_install(&deb, &root);
    dpkg_verify_clean(&root, PKG);
    same_contents(&root, &prefix);
    for set in SETS {
        for member in &set[1..] {
            assert_eq!(ino(&root, set[0]), ino(&root, member), "{member}");
        }
    }
    assert_eq!(beyond(lintian(&deb), "package-contains-hardlink"), "");

    // The tarball unpacks to the prefix again, links and all.
    let tgz = artifact(&list, "tgz", &out);
    let unpacked = crate::pack::untar(&tgz, &dir.path().join("unpacked"));
    assert_eq!(tree_listing(&unpacked), tree_listing(&prefix));
    for set in SETS {
        for member in &set[1..] {
            assert_eq!(ino(&unpacked, set[0]), ino(&unpacked, member), "{member}");
        }
    }
}
