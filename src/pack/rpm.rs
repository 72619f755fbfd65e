//! The RPM writer: a [`PackageSpec`] and rooted entries → package bytes, with the `rpm`
//! crate doing the header and payload format.

use std::collections::{BTreeSet, HashSet};

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
const SHARED_DIRS: &[&str] = &[
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
fn deps(r: &Relation, extra: DependencyFlags) -> Vec<Dependency> {
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

    // The first member of each hard-link set, so it can be marked as one too.
    let link_heads: HashSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File {
                link_to: Some(first),
                ..
            } => Some(first.as_str()),
            _ => None,
        })
        .collect();
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
            EntryKind::File { data, link_to } => {
                let mut o = FileOptions::new(path.clone())
                    .permissions(e.mode as u16)
                    .user(user)
                    .group(group);
                if config.contains(&path) {
                    o = o.config().noreplace();
                } else if path.starts_with("/usr/share/doc/") {
                    o = o.doc();
                }
                let head = match link_to {
                    Some(first) => Some(first.as_str()),
                    None if link_heads.contains(e.path.as_str()) => Some(e.path.as_str()),
                    None => None,
                };
                if let Some(head) = head {
                    o = o.hardlink(head);
                }
                b.with_file_contents(data.as_slice(), o).map_err(rpm_err)?;
            }
        }
    }
    let package = b.build().map_err(rpm_err)?;
    let mut out = Vec::new();
    package.write(&mut out).map_err(rpm_err)?;
    Ok(out)
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

    #[test]
    fn interpreters() {
        assert_eq!(interpreter("#!/bin/bash -e\necho"), ["/bin/bash", "-e"]);
        assert_eq!(interpreter("echo"), ["/bin/sh"]);
    }
}
