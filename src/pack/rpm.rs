//! The RPM writer: a [`PackageSpec`] and rooted entries → package bytes, with the `rpm`
//! crate doing the header and payload format.

use std::collections::{BTreeSet, HashMap};

use rpm::{
    BuildConfig, CompressionWithLevel, Dependency, DependencyFlags, FileOptions, PackageBuilder,
    Scriptlet,
};

use super::PackError;
use super::spec::{Algorithm, PackageSpec, Relation};
use super::walk::{Entry, EntryKind};
use crate::version::Op;

/// Directories other packages (`filesystem`, `systemd`, `python3`...) own. A package
/// lists only directories it creates itself, so removing it never removes `/usr`.
pub(super) const SHARED_DIRS: &[&str] = &[
    "bin",
    "boot",
    "etc",
    "etc/cron.d",
    "etc/default",
    "etc/init.d",
    "etc/logrotate.d",
    "etc/pki",
    "etc/profile.d",
    "etc/security",
    "etc/sudoers.d",
    "etc/sysconfig",
    "etc/systemd",
    "etc/systemd/system",
    "etc/xdg",
    "home",
    "lib",
    "lib64",
    "media",
    "mnt",
    "opt",
    "root",
    "run",
    "sbin",
    "srv",
    "tmp",
    "usr",
    "usr/bin",
    "usr/include",
    "usr/lib",
    "usr/lib/debug",
    "usr/lib/modules",
    "usr/lib/systemd",
    "usr/lib/systemd/system",
    "usr/lib/systemd/user",
    "usr/lib/sysusers.d",
    "usr/lib/tmpfiles.d",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/local/bin",
    "usr/local/lib",
    "usr/local/lib64",
    "usr/local/sbin",
    "usr/local/share",
    "usr/sbin",
    "usr/share",
    "usr/share/applications",
    "usr/share/bash-completion",
    "usr/share/bash-completion/completions",
    "usr/share/doc",
    "usr/share/icons",
    "usr/share/info",
    "usr/share/java",
    "usr/share/licenses",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/pixmaps",
    "usr/share/zsh",
    "usr/share/zsh/site-functions",
    "usr/src",
    "var",
    "var/cache",
    "var/lib",
    "var/log",
    "var/opt",
    "var/run",
    "var/spool",
    "var/tmp",
];

/// Whether the package should list this (rooted, relative) directory as its own.
pub fn owns_dir(path: &str) -> bool {
    if SHARED_DIRS.binary_search(&path).is_ok() {
        return false;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        // man sections, and the Python trees the interpreter's package owns.
        ["usr", "share", "man", sec] => !sec.starts_with("man"),
        ["usr", "lib" | "lib64", py] | ["usr", "lib" | "lib64", py, "site-packages"]
            if py.starts_with("python") =>
        {
            false
        }
        _ => true,
    }
}

fn flags(op: Op) -> DependencyFlags {
    match op {
        Op::Lt => DependencyFlags::LESS,
        Op::Le => DependencyFlags::LESS | DependencyFlags::EQUAL,
        Op::Eq => DependencyFlags::EQUAL,
        Op::Ge => DependencyFlags::GREATER | DependencyFlags::EQUAL,
        Op::Gt => DependencyFlags::GREATER,
    }
}

/// One RPM dependency per clause (`foo >= 1, foo < 2`), with extra flags such as
/// `SCRIPT_PRE`.
pub(super) fn deps(r: &Relation, extra: DependencyFlags) -> Vec<Dependency> {
    if r.clauses.is_empty() {
        let mut d = Dependency::any(r.name.clone());
        d.flags |= extra;
        return vec![d];
    }
    r.clauses
        .iter()
        .map(|c| Dependency {
            name: r.name.clone(),
            flags: flags(c.op) | extra,
            version: c.version.clone(),
        })
        .collect()
}

fn rpm_err(e: rpm::Error) -> PackError {
    PackError::Format {
        format: "rpm",
        message: e.to_string(),
    }
}

/// The interpreter a script asks for in its `#!` line, `/bin/sh` without one.
pub fn interpreter(script: &str) -> Vec<String> {
    match script.lines().next().and_then(|l| l.strip_prefix("#!")) {
        Some(l) => l.split_whitespace().map(str::to_string).collect(),
        None => vec!["/bin/sh".to_string()],
    }
}

/// What RPM marks a file as, by its install path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileKind {
    /// `%config(noreplace)`.
    Config,
    /// `%doc`: everything under `/usr/share/doc` that is not configuration.
    Doc,
    Plain,
}

fn file_kind(install_path: &str, config: &BTreeSet<String>) -> FileKind {
    if config.contains(install_path) {
        FileKind::Config
    } else if install_path.starts_with("/usr/share/doc/") {
        FileKind::Doc
    } else {
        FileKind::Plain
    }
}

/// The RPM hard-link identity (the first member's path) of each file that stays in a
/// hard-link set, by entry path; files not named are written as ordinary files.
///
/// `meta` is what RPM records per path besides the inode's own mode and bytes (file
/// flags, owner). rpmbuild keeps a staged set whole even when its members' flags differ,
/// but the `rpm` crate refuses such a set, and one inode cannot have two owners anyway.
/// So a set is split by `meta`: members that agree stay one set (one inode when
/// installed), a member left alone gets its own copy of the bytes. A doc file linked to
/// a program thus stays `%doc` (`--excludedocs` leaves out only it; rpmlint wants every
/// file under /usr/share/doc marked so) and `rpm -V` finds each path as installed.
fn link_identities<K: Eq + std::hash::Hash>(
    entries: &[Entry],
    meta: impl Fn(&Entry) -> K,
) -> HashMap<&str, &str> {
    let mut groups: HashMap<(&str, K), Vec<&str>> = HashMap::new();
    for e in entries {
        if let EntryKind::File { link_to, .. } = &e.kind {
            let head = link_to.as_deref().unwrap_or(&e.path);
            groups.entry((head, meta(e))).or_default().push(&e.path);
        }
    }
    groups
        .into_values()
        .filter(|members| members.len() > 1)
        .flat_map(|members| {
            let identity = members[0];
            members.into_iter().map(move |m| (m, identity))
        })
        .collect()
}

/// Builds the RPM. `entries` are rooted at `/` (package.prefix already applied);
/// `config` holds the install paths of configuration files; `auto_requires` come from
/// the ELF files.
pub fn build(
    spec: &PackageSpec,
    entries: &[Entry],
    config: &BTreeSet<String>,
    auto_requires: &[String],
) -> Result<Vec<u8>, PackError> {
    let compression = match spec.compression.algorithm {
        Algorithm::Gzip => CompressionWithLevel::Gzip(spec.compression.level),
        Algorithm::Zstd => CompressionWithLevel::Zstd(spec.compression.level as i32),
        Algorithm::Xz => CompressionWithLevel::Xz(spec.compression.level),
    };
    let date = u32::try_from(spec.date).unwrap_or(0);
    let mut b = PackageBuilder::new(
        &spec.name,
        &spec.version,
        &spec.license,
        &spec.platform.rpm_arch,
        &spec.summary,
    );
    b.using_config(BuildConfig::v4().source_date(date).compression(compression));
    b.release(&spec.release)
        .description(&spec.description)
        .group(&spec.group)
        .build_host(&spec.build_host);
    if let Some(e) = spec.epoch {
        b.epoch(e);
    }
    if let Some(u) = &spec.homepage {
        b.url(u);
    }
    if let Some(v) = &spec.vendor {
        b.vendor(v);
    }
    if let Some(m) = &spec.maintainer {
        b.packager(m);
    }
    for c in &spec.changelog {
        let date = u32::try_from(c.date).unwrap_or(0);
        b.add_changelog_entry(
            format!("{} - {}", c.author, c.version),
            format!("- {}", c.text),
            date,
        );
    }

    let rel = &spec.relations;
    let none = DependencyFlags::empty();
    for (list, extra) in [
        (&rel.requires, none),
        (&rel.requires_pre, DependencyFlags::SCRIPT_PRE),
        (&rel.requires_post, DependencyFlags::SCRIPT_POST),
    ] {
        for d in list.iter().flat_map(|r| deps(r, extra)) {
            b.requires(d);
        }
    }
    for text in auto_requires {
        let d = match text.split_once(" = ") {
            Some((name, v)) => Dependency::eq(name, v),
            None => Dependency::any(text.clone()),
        };
        b.requires(d);
    }
    for d in rel.recommends.iter().flat_map(|r| deps(r, none)) {
        b.recommends(d);
    }
    for d in rel.provides.iter().flat_map(|r| deps(r, none)) {
        b.provides(d);
    }
    // Debian's Breaks is the nearest thing RPM has to a Conflicts.
    for d in rel
        .conflicts
        .iter()
        .chain(&rel.breaks)
        .flat_map(|r| deps(r, none))
    {
        b.conflicts(d);
    }
    for d in rel.obsoletes.iter().flat_map(|r| deps(r, none)) {
        b.obsoletes(d);
    }

    let s = &spec.scripts;
    let script = |t: &String| Scriptlet::new(t.clone()).prog(interpreter(t));
    if let Some(t) = &s.pre_install {
        b.pre_install_script(script(t));
    }
    if let Some(t) = &s.post_install {
        b.post_install_script(script(t));
    }
    if let Some(t) = &s.pre_uninstall {
        b.pre_uninstall_script(script(t));
    }
    if let Some(t) = &s.post_uninstall {
        b.post_uninstall_script(script(t));
    }

    let links = link_identities(entries, |e| {
        let path = format!("/{}", e.path);
        (file_kind(&path, config), spec.owner(&path))
    });
    for e in entries {
        let path = format!("/{}", e.path);
        let (user, group) = spec.owner(&path);
        match &e.kind {
            EntryKind::Dir => {
                if owns_dir(&e.path) {
                    let o = FileOptions::dir(path)
                        .permissions(e.mode as u16)
                        .user(user)
                        .group(group);
                    b.with_dir_entry(o).map_err(rpm_err)?;
                }
            }
            EntryKind::Symlink { target } => {
                let o = FileOptions::symlink(path, target).user(user).group(group);
                b.with_symlink(o).map_err(rpm_err)?;
            }
            EntryKind::File { data, .. } => {
                let mut o = FileOptions::new(path.clone())
                    .permissions(e.mode as u16)
                    .user(user)
                    .group(group);
                match file_kind(&path, config) {
                    FileKind::Config => o = o.config().noreplace(),
                    FileKind::Doc => o = o.doc(),
                    FileKind::Plain => {}
                }
                if let Some(identity) = links.get(e.path.as_str()) {
                    o = o.hardlink(*identity);
                }
                b.with_file_contents(data.as_slice(), o).map_err(rpm_err)?;
            }
        }
    }
    let mut package = b.build().map_err(rpm_err)?;
    name_source_rpm(
        &mut package,
        &format!("{}-{}-{}.src.rpm", spec.name, spec.version, spec.release),
    )
    .map_err(rpm_err)?;
    let size = archive_size(&package).map_err(|e| PackError::Format {
        format: "rpm",
        message: format!("reading back the payload: {e}"),
    })?;
    set_archive_size(&mut package, size).map_err(rpm_err)?;
    let mut out = Vec::new();
    package.write(&mut out).map_err(rpm_err)?;
    Ok(out)
}

/// Names the source package a binary one comes from (`SOURCERPM`, as rpmbuild writes
/// it): the rpm crate writes `(none)`, and dnf and the browse pages find a package's
/// source package by this name.
fn name_source_rpm(pkg: &mut rpm::Package, name: &str) -> Result<(), rpm::Error> {
    let tag = rpm::IndexTag::RPMTAG_SOURCERPM as u32;
    let entries = pkg
        .metadata
        .header
        .get_all_entries()?
        .into_iter()
        .filter(|(t, _)| *t != rpm::IndexTag::RPMTAG_HEADERIMMUTABLE as u32)
        .map(|(t, data)| match t == tag {
            true => rpm::HeaderEntry::new(t, rpm::IndexData::StringTag(name.to_string())),
            false => rpm::HeaderEntry::new(t, data),
        })
        .collect();
    replace_header(pkg, entries)
}

/// Gives `pkg` a header of `entries` (the region tag made again), and a signature header
/// with digests of it.
pub fn replace_header(
    pkg: &mut rpm::Package,
    entries: Vec<rpm::HeaderEntry>,
) -> Result<(), rpm::Error> {
    pkg.metadata.header = rpm::Header::from_entries(entries, rpm::IndexTag::RPMTAG_HEADERIMMUTABLE);
    let header_bytes = pkg.header_bytes()?;
    pkg.metadata.signature = rpm::SignatureHeaderBuilder::from_existing(&pkg.metadata.signature)?
        .clear_signatures()
        .calculate_digests(&header_bytes)
        .set_content_length((header_bytes.len() + pkg.payload.len()) as u64)
        .build()?;
    Ok(())
}

/// The size of `pkg`'s uncompressed payload (the cpio archive), counted by reading it.
fn archive_size(pkg: &rpm::Package) -> std::io::Result<u64> {
    let data = pkg.payload.as_slice();
    let mut sink = std::io::sink();
    match pkg
        .metadata
        .header
        .get_entry_data_as_string(rpm::IndexTag::RPMTAG_PAYLOADCOMPRESSOR)
    {
        Ok("zstd") => std::io::copy(&mut zstd::Decoder::new(data)?, &mut sink),
        Ok("xz") | Ok("lzma") => std::io::copy(&mut xz2::read::XzDecoder::new(data), &mut sink),
        _ => std::io::copy(&mut flate2::read::MultiGzDecoder::new(data), &mut sink),
    }
}

/// The archive size `pkg` records for rpm2cpio and rpm's legacy readers (the
/// signature header's `PAYLOADSIZE`, which rpm merges into the header as `ARCHIVESIZE`),
/// if it records one.
pub fn recorded_archive_size(pkg: &rpm::Package) -> Option<u32> {
    pkg.metadata
        .signature
        .get_entry_data_as_u32(rpm::IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
        .ok()
}

/// Records the uncompressed archive size in `pkg`'s signature header. The rpm crate
/// writes none for v4 packages, and rpm2cpio then exits 1 after a full copy (it compares
/// what it copied with `ARCHIVESIZE`); it also drops it when it signs, so signing puts it
/// back.
pub fn set_archive_size(pkg: &mut rpm::Package, size: u64) -> Result<(), rpm::Error> {
    let payload_size = rpm::IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE as u32;
    let mut entries: Vec<rpm::HeaderEntry> = pkg
        .metadata
        .signature
        .get_all_entries()?
        .into_iter()
        .filter(|(tag, _)| *tag != rpm::HEADER_SIGNATURES && *tag != payload_size)
        .map(|(tag, data)| rpm::HeaderEntry::new(tag, data))
        .collect();
    entries.push(rpm::HeaderEntry::new(
        payload_size,
        rpm::IndexData::Int32(vec![u32::try_from(size).unwrap_or(u32::MAX)]),
    ));
    pkg.metadata.signature =
        rpm::Header::from_entries(entries, rpm::IndexSignatureTag::HEADER_SIGNATURES);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_dirs_are_sorted_and_not_owned() {
        assert!(SHARED_DIRS.windows(2).all(|w| w[0] < w[1]));
        assert!(!owns_dir("usr/bin"));
        assert!(!owns_dir("usr/share/man/man1"));
        assert!(!owns_dir("usr/lib/python3.11/site-packages"));
        assert!(owns_dir("etc/web_server"));
        assert!(owns_dir("usr/share/doc/my-web-server"));
        assert!(owns_dir("opt/my-project"));
    }

    fn file(path: &str, link_to: Option<&str>) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                data: std::sync::Arc::new(b"same".to_vec()),
                link_to: link_to.map(str::to_string),
            },
            mode: 0o644,
        }
    }

    #[test]
    fn file_kinds_by_path() {
        let config = BTreeSet::from(["/usr/share/doc/a/sample.conf".to_string()]);
        assert_eq!(
            file_kind("/usr/share/doc/a/sample.conf", &config),
            FileKind::Config
        );
        assert_eq!(file_kind("/usr/share/doc/a/README", &config), FileKind::Doc);
        assert_eq!(
            file_kind("/usr/share/docs/README", &config),
            FileKind::Plain
        );
        assert_eq!(file_kind("/usr/bin/a", &config), FileKind::Plain);
    }

    #[test]
    fn hard_link_sets_split_where_members_differ() {
        let entries = [
            file("usr/bin/a", None),
            file("usr/share/doc/a/a.example", Some("usr/bin/a")),
            file("usr/share/a/README", None),
            file("usr/share/a/README.txt", Some("usr/share/a/README")),
            file("usr/share/doc/a/README", Some("usr/share/a/README")),
            file("usr/share/doc/a/NEWS", None),
            file("usr/share/doc/a/NEWS.txt", Some("usr/share/doc/a/NEWS")),
            file("usr/share/doc/a/ChangeLog", Some("usr/share/doc/a/NEWS")),
            file("usr/lib/a/one", None),
        ];
        let kind = |e: &Entry| file_kind(&format!("/{}", e.path), &BTreeSet::new());
        let links = link_identities(&entries, kind);
        let want = HashMap::from([
            // A set of three: the two plain members stay linked, the doc one leaves.
            ("usr/share/a/README", "usr/share/a/README"),
            ("usr/share/a/README.txt", "usr/share/a/README"),
            // All doc: whole.
            ("usr/share/doc/a/NEWS", "usr/share/doc/a/NEWS"),
            ("usr/share/doc/a/NEWS.txt", "usr/share/doc/a/NEWS"),
            ("usr/share/doc/a/ChangeLog", "usr/share/doc/a/NEWS"),
        ]);
        assert_eq!(links, want);
        // The same sets with nothing to tell members apart stay whole.
        let whole = link_identities(&entries, |_| ());
        assert_eq!(whole.get("usr/share/doc/a/a.example"), Some(&"usr/bin/a"));
        assert_eq!(
            whole.get("usr/share/doc/a/README"),
            Some(&"usr/share/a/README")
        );
        assert_eq!(whole.len(), 8);
    }

    fn spec() -> PackageSpec {
        super::super::spec::sample()
    }

    /// Sets whose members RPM must record differently (doc, config, owner) are packed,
    /// split where they differ.
    /// rpm2cpio compares what it copies with the recorded archive size.
    #[test]
    fn the_archive_size_is_recorded() {
        let bytes = build(
            &spec(),
            &[file("usr/share/a/README", None)],
            &BTreeSet::new(),
            &[],
        )
        .unwrap();
        let pkg = rpm::Package::parse(&mut bytes.as_slice()).unwrap();
        pkg.verify_digests().unwrap();
        let size = archive_size(&pkg).unwrap();
        assert!(size > 0);
        assert_eq!(recorded_archive_size(&pkg), Some(size as u32));
    }

    #[test]
    fn mixed_hard_link_sets_build() {
        let entries = [
            file("etc/a/a.conf", None),
            file("usr/share/a/README", None),
            file("usr/share/a/README.txt", Some("usr/share/a/README")),
            file("usr/share/a/a.conf.default", Some("etc/a/a.conf")),
            file("usr/share/doc/a/README", Some("usr/share/a/README")),
            file("var/lib/a/state", None),
            file("var/lib/a/state.again", Some("var/lib/a/state")),
        ];
        let config = BTreeSet::from(["/etc/a/a.conf".to_string()]);
        let bytes = build(&spec(), &entries, &config, &[]).unwrap();
        let package = rpm::Package::parse(&mut bytes.as_slice()).unwrap();
        let header = &package.metadata.header;
        let inodes = header
            .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEINODES)
            .unwrap();
        let files = package.metadata.get_file_entries().unwrap();
        assert_eq!(files.len(), entries.len());
        let find = |p: &str| {
            let i = files
                .iter()
                .position(|f| f.path() == std::path::Path::new(p))
                .unwrap_or_else(|| panic!("{p} not in the package"));
            (&files[i], inodes[i])
        };
        let (readme, readme_ino) = find("/usr/share/a/README");
        let (_, txt_ino) = find("/usr/share/a/README.txt");
        let (doc, doc_ino) = find("/usr/share/doc/a/README");
        assert_eq!(readme_ino, txt_ino);
        assert_ne!(readme_ino, doc_ino);
        assert!(doc.flags().contains(rpm::FileFlags::DOC));
        assert!(!readme.flags().contains(rpm::FileFlags::DOC));
        let (conf, conf_ino) = find("/etc/a/a.conf");
        let (default, default_ino) = find("/usr/share/a/a.conf.default");
        assert!(conf.flags().contains(rpm::FileFlags::CONFIG));
        assert!(!default.flags().contains(rpm::FileFlags::CONFIG));
        assert_ne!(conf_ino, default_ino);
        let (state, state_ino) = find("/var/lib/a/state");
        let (again, again_ino) = find("/var/lib/a/state.again");
        assert_eq!((state.user(), again.user()), ("nobody", "root"));
        assert_ne!(state_ino, again_ino);
        // Every path still carries the bytes.
        assert!(files.iter().all(|f| f.size() == 4), "{files:?}");
    }

    #[test]
    fn interpreters() {
        assert_eq!(interpreter("#!/bin/bash -e\necho"), ["/bin/bash", "-e"]);
        assert_eq!(interpreter("echo"), ["/bin/sh"]);
    }
}
