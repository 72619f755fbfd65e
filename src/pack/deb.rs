//! The DEB writer: `debian-binary`, `control.tar.gz` and `data.tar.*` in an `ar` archive.
//!
//! The `debian-packaging` crate checks the control paragraph and relation syntax; the
//! archive itself is written here because its `DebBuilder` writes binary md5sums and
//! refuses symlinks and empty directories.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::sync::Arc;

use debian_packaging::control::ControlParagraph;
use debian_packaging::dependency::DependencyList;
use md5::{Digest, Md5};

use super::PackError;
use super::compress;
use super::spec::{Compression, PackageSpec, Relation, Relations, rfc2822};
use super::tarball::{self, TarStyle};
use super::walk::{self, Entry, EntryKind};

fn io_err(e: std::io::Error) -> PackError {
    PackError::Format {
        format: "deb",
        message: e.to_string(),
    }
}

/// `Installed-Size` in KiB as dpkg-gencontrol counts it: each file rounded up to a KiB,
/// one for every directory and symlink, a hard-link set once (it is one inode).
pub fn installed_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File {
                link_to: Some(_), ..
            } => 0,
            EntryKind::File { data, .. } => (data.len() as u64).div_ceil(1024),
            _ => 1,
        })
        .sum()
}

fn relation_field(name: &str, lists: &[&[Relation]]) -> Result<Option<String>, PackError> {
    let text = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(Relation::deb)
        .collect::<Vec<_>>()
        .join(", ");
    if text.is_empty() {
        return Ok(None);
    }
    DependencyList::parse(&text).map_err(|e| PackError::Spec {
        what: format!("{name}: `{text}` is not a valid Debian relation list: {e}"),
        hint: "check the package.* relation properties and dependency constraints".into(),
    })?;
    Ok(Some(text))
}

/// The control file's relation fields in dpkg-deb's order, each checked by
/// `debian-packaging`'s parser. Metadata only: `spec` asks it too, to refuse before the
/// prefix is read.
pub fn relation_fields(r: &Relations) -> [(&'static str, Result<Option<String>, PackError>); 7] {
    [
        (
            "Pre-Depends",
            relation_field("Pre-Depends", &[&r.requires_pre]),
        ),
        (
            "Depends",
            relation_field("Depends", &[&r.requires, &r.requires_post]),
        ),
        ("Recommends", relation_field("Recommends", &[&r.recommends])),
        // An RPM Obsoletes (a package this one takes over) is Breaks + Replaces in Debian.
        (
            "Breaks",
            relation_field("Breaks", &[&r.breaks, &r.obsoletes]),
        ),
        ("Conflicts", relation_field("Conflicts", &[&r.conflicts])),
        ("Provides", relation_field("Provides", &[&r.provides])),
        (
            "Replaces",
            relation_field("Replaces", &[&r.replaces, &r.obsoletes]),
        ),
    ]
}

/// The `control` file, fields in dpkg-deb's order.
pub fn control(
    spec: &PackageSpec,
    installed_kib: u64,
    auto_depends: &[String],
) -> Result<String, PackError> {
    let mut fields: Vec<(&str, String)> = vec![
        ("Package", spec.name.clone()),
        ("Version", spec.full_version()),
        ("Architecture", spec.platform.deb_arch.clone()),
        ("Maintainer", spec.maintainer.clone().unwrap_or_default()),
        ("Installed-Size", installed_kib.to_string()),
    ];
    for (name, value) in relation_fields(&spec.relations) {
        let mut value = value?;
        if name == "Depends" && !auto_depends.is_empty() {
            let auto = auto_depends.join(", ");
            value = Some(match value {
                Some(d) => format!("{auto}, {d}"),
                None => auto,
            });
        }
        if let Some(v) = value {
            fields.push((name, v));
        }
    }
    let optional = [
        ("Section", Some(spec.section.clone())),
        ("Priority", Some(spec.priority.clone())),
        ("Homepage", spec.homepage.clone()),
    ];
    fields.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let long: Vec<String> = spec
        .description
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_string()
            } else {
                format!(" {l}")
            }
        })
        .collect();
    fields.push((
        "Description",
        format!("{}\n{}", spec.summary, long.join("\n")),
    ));
    let mut para = ControlParagraph::default();
    for (k, v) in fields {
        para.set_field_from_string(Cow::Borrowed(k), Cow::Owned(v));
    }
    let mut out = Vec::new();
    para.write(&mut out).map_err(io_err)?;
    String::from_utf8(out).map_err(|e| PackError::Format {
        format: "deb",
        message: e.to_string(),
    })
}

/// `/usr/share/doc/<package>/copyright` in the machine-readable format.
pub fn copyright(spec: &PackageSpec) -> String {
    let holder = spec
        .vendor
        .clone()
        .or_else(|| spec.maintainer.clone())
        .unwrap_or_else(|| spec.name.clone());
    let mut s = String::from(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
    );
    s.push_str(&format!("Upstream-Name: {}\n", spec.name));
    if let Some(h) = &spec.homepage {
        s.push_str(&format!("Source: {h}\n"));
    }
    let year = chrono::DateTime::<chrono::Utc>::from_timestamp(spec.date, 0)
        .map(|d| d.format("%Y").to_string())
        .unwrap_or_default();
    s.push_str(&format!(
        "\nFiles: *\nCopyright: {year} {holder}\nLicense: {}\n",
        spec.license
    ));
    if let Some(file) = common_license(&spec.license) {
        s.push_str(&format!(
            " On Debian systems, the full text of this license can be found in\n \
             /usr/share/common-licenses/{file}.\n"
        ));
    }
    s
}

/// The file in `/usr/share/common-licenses` holding an SPDX license's text, if any.
fn common_license(spdx: &str) -> Option<&'static str> {
    Some(
        match spdx.trim_end_matches("-only").trim_end_matches("-or-later") {
            "Apache-2.0" => "Apache-2.0",
            "GPL-2.0" | "GPL-2" => "GPL-2",
            "GPL-3.0" | "GPL-3" => "GPL-3",
            "LGPL-2.1" => "LGPL-2.1",
            "LGPL-3.0" | "LGPL-3" => "LGPL-3",
            "MPL-2.0" => "MPL-2.0",
            "Artistic-1.0" => "Artistic",
            "BSD-3-Clause" => "BSD",
            "CC0-1.0" => "CC0-1.0",
            _ => return None,
        },
    )
}

/// `changelog.Debian` (uncompressed), newest entry first.
pub fn changelog(spec: &PackageSpec) -> String {
    let mut s = String::new();
    for c in &spec.changelog {
        let version = match spec.epoch {
            Some(e) => format!("{e}:{}", c.version),
            None => c.version.clone(),
        };
        s.push_str(&format!(
            "{} ({version}) {}; urgency=medium\n\n",
            spec.name, spec.platform.os
        ));
        let text = super::spec::wrap(&c.text, 74).replace('\n', "\n    ");
        s.push_str(&format!("  * {text}\n\n"));
        s.push_str(&format!(" -- {}  {}\n\n", c.author, rfc2822(c.date)));
    }
    s.pop();
    s
}

fn file(path: &str, data: Vec<u8>, mode: u32) -> Entry {
    Entry {
        path: path.to_string(),
        kind: EntryKind::File {
            data: Arc::new(data),
            link_to: None,
        },
        mode,
    }
}

/// Adds `/usr/share/doc/<name>/copyright` and `changelog.Debian.gz` unless the prefix
/// has them, with the directories leading there.
fn with_generated_docs(
    spec: &PackageSpec,
    mut entries: Vec<Entry>,
) -> Result<Vec<Entry>, PackError> {
    let doc = format!("usr/share/doc/{}", spec.name);
    let have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    for dir in walk::dir_chain(&doc) {
        if !have.contains(&dir) {
            entries.push(walk::dir_entry(dir));
        }
    }
    let changelog = compress::compress(changelog(spec).as_bytes(), Compression::GZIP_DEFAULT)
        .map_err(io_err)?;
    for (name, data) in [
        ("copyright", copyright(spec).into_bytes()),
        ("changelog.Debian.gz", changelog),
    ] {
        let path = format!("{doc}/{name}");
        if !have.contains(&path) {
            entries.push(file(&path, data, 0o644));
        }
    }
    walk::sort_entries(&mut entries);
    Ok(entries)
}

/// Builds the `.deb` from entries rooted at `/`; `conffiles` are install paths.
pub fn build(
    spec: &PackageSpec,
    entries: Vec<Entry>,
    conffiles: &BTreeSet<String>,
    auto_depends: &[String],
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, PackError> {
    let entries = &with_generated_docs(spec, entries)?;
    let mtime = u64::try_from(spec.date).unwrap_or(0);
    let owner = |rel: &str| spec.owner(&format!("/{rel}"));
    let style = TarStyle {
        dpkg: true,
        mtime,
        owner: &owner,
    };

    let data = tarball::compressed(entries, &style, spec.compression, on_bytes).map_err(io_err)?;

    let mut md5sums = String::new();
    for e in entries {
        if let EntryKind::File { data, .. } = &e.kind
            && !conffiles.contains(&format!("/{}", e.path))
        {
            let digest = Md5::digest(data.as_slice());
            md5sums.push_str(&format!("{digest:x}  {}\n", e.path));
        }
    }
    // conffiles and the maintainer scripts; md5sums and control come after.
    let mut control_entries = Vec::new();
    if !conffiles.is_empty() {
        let text: String = conffiles.iter().map(|c| format!("{c}\n")).collect();
        control_entries.push(file("conffiles", text.into_bytes(), 0o644));
    }
    let s = &spec.scripts;
    for (name, text) in [
        ("postinst", &s.post_install),
        ("postrm", &s.post_uninstall),
        ("preinst", &s.pre_install),
        ("prerm", &s.pre_uninstall),
    ] {
        if let Some(text) = text {
            let text = if text.starts_with("#!") {
                text.clone()
            } else {
                format!("#!/bin/sh\n{text}")
            };
            control_entries.push(file(name, text.into_bytes(), 0o755));
        }
    }
    // As dpkg-gencontrol counts the package's build directory when debhelper runs it: the
    // files and directories, the directory itself and `DEBIAN/` with what is in it by
    // then (conffiles, maintainer scripts; md5sums and control come later).
    let installed = installed_size(entries) + 2 + installed_size(&control_entries);
    control_entries.push(file(
        "control",
        control(spec, installed, auto_depends)?.into_bytes(),
        0o644,
    ));
    control_entries.push(file("md5sums", md5sums.into_bytes(), 0o644));
    walk::sort_entries(&mut control_entries);
    let root_owner = |_: &str| ("root", "root");
    let control_style = TarStyle {
        dpkg: true,
        mtime,
        owner: &root_owner,
    };
    let control_gz = tarball::compressed(
        &control_entries,
        &control_style,
        Compression::GZIP_DEFAULT,
        &|_| {},
    )
    .map_err(io_err)?;

    let mut ar = ar::Builder::new(Vec::new());
    let data_name = format!(
        "data.tar.{}",
        compress::extension(spec.compression.algorithm)
    );
    for (name, body) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.gz", &control_gz[..]),
        (data_name.as_str(), &data[..]),
    ] {
        let mut h = ar::Header::new(name.as_bytes().to_vec(), body.len() as u64);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(0o100644);
        ar.append(&h, body).map_err(io_err)?;
    }
    let mut out = ar.into_inner().map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_size_rounds_up_per_file() {
        let entries = vec![
            file("a", vec![0; 1], 0o644),
            file("b", vec![0; 1025], 0o644),
            Entry {
                path: "d".into(),
                kind: EntryKind::Dir,
                mode: 0o755,
            },
        ];
        assert_eq!(installed_size(&entries), 1 + 2 + 1);
    }

    #[test]
    fn installed_size_counts_a_hard_link_set_once() {
        let mut link = file("b", vec![0; 2048], 0o644);
        link.kind = EntryKind::File {
            data: Arc::new(vec![0; 2048]),
            link_to: Some("a".into()),
        };
        let entries = vec![file("a", vec![0; 2048], 0o644), link];
        assert_eq!(installed_size(&entries), 2);
    }

    #[test]
    fn common_licenses() {
        assert_eq!(common_license("GPL-2.0-only"), Some("GPL-2"));
        assert_eq!(common_license("MIT"), None);
    }
}
