//! APT metadata: per suite, `dists/<suite>/Release`, `InRelease`, `Release.gpg`,
//! `main/binary-<arch>/Packages{,.gz,.xz}` and (with source packages)
//! `main/source/Sources{,.gz,.xz}`, with `by-hash/SHA256/` copies. A package's
//! stanza is rendered once, at publish, the way `apt-ftparchive packages` writes it
//! ([`entry`]); a suite's files are the stored stanzas put together ([`render`]).

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::keys::Signer;
use super::package::DebControl;
use super::{RepoError, segments};
use crate::layout::Platform;
use crate::pack::spec::{Algorithm, Compression};
use crate::store::{IndexEntry, IndexRow, PackageRecord};

/// `Packages.gz` at gzip's best, `Packages.xz` at xz's default.
const GZIP: Compression = Compression {
    algorithm: Algorithm::Gzip,
    level: 9,
};
const XZ: Compression = Compression {
    algorithm: Algorithm::Xz,
    level: 6,
};

/// apt's canonical field order for `Packages` (apt-pkg/tagfile-order.c); fields not in
/// it follow in their control-file order.
const ORDER: &[&str] = &[
    "Package",
    "Package-Type",
    "Architecture",
    "Subarchitecture",
    "Version",
    "Kernel-Version",
    "Built-Using",
    "Static-Built-Using",
    "Built-For-Profiles",
    "Auto-Built-Package",
    "Multi-Arch",
    "Status",
    "Priority",
    "Build-Essential",
    "Protected",
    "Important",
    "Essential",
    "Installer-Menu-Item",
    "Section",
    "Source",
    "Origin",
    "Phased-Update-Percentage",
    "Maintainer",
    "Original-Maintainer",
    "Bugs",
    "Config-Version",
    "Conffiles",
    "Triggers-Awaited",
    "Triggers-Pending",
    "Installed-Size",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Enhances",
    "Filename",
    "MSDOS-Filename",
    "Size",
    "MD5sum",
    "SHA1",
    "SHA256",
    "SHA512",
    "Homepage",
    "Description",
    "Description-md5",
    "Tag",
    "Task",
];

/// Fields the archive adds; a control file's own copies of them are dropped.
const ADDED: &[&str] = &[
    "Filename",
    "MSDOS-Filename",
    "Size",
    "MD5sum",
    "SHA1",
    "SHA256",
    "SHA512",
];

/// The `Packages` stanza of one DEB (no trailing blank line). `filename` is relative to
/// the APT base URL.
pub fn entry(
    control: &DebControl,
    r: &PackageRecord,
    filename: &str,
    platform: &Platform,
    bytes: &[u8],
) -> IndexEntry {
    let mut fields: Vec<(String, String)> = control
        .fields
        .iter()
        .filter(|(k, _)| !ADDED.iter().any(|o| o.eq_ignore_ascii_case(k)))
        .map(|(k, v)| {
            // apt-ftparchive rewrites Maintainer and drops its trailing blanks.
            let v = if k.eq_ignore_ascii_case("Maintainer") {
                v.trim_end().to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    fields.extend([
        ("Filename".to_string(), filename.to_string()),
        ("Size".to_string(), bytes.len().to_string()),
        ("MD5sum".to_string(), format!("{:x}", Md5::digest(bytes))),
        ("SHA1".to_string(), format!("{:x}", Sha1::digest(bytes))),
        ("SHA256".to_string(), r.sha256.clone()),
        ("SHA512".to_string(), format!("{:x}", Sha512::digest(bytes))),
    ]);
    IndexEntry::Apt {
        suite: platform.os.clone(),
        arch: r.arch.clone(),
        stanza: stanza_of(fields, ORDER),
    }
}

/// A file's size and digests, as a `Sources` stanza lists them.
#[derive(Debug, Clone)]
pub struct FileSums {
    pub name: String,
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
}

impl FileSums {
    pub fn of(name: &str, bytes: &[u8]) -> FileSums {
        FileSums {
            name: name.to_string(),
            size: bytes.len() as u64,
            md5: format!("{:x}", Md5::digest(bytes)),
            sha1: format!("{:x}", Sha1::digest(bytes)),
            sha256: format!("{:x}", Sha256::digest(bytes)),
        }
    }
}

/// apt's field order for `Sources` (apt-pkg/tagfile-order.c); fields not in it follow in
/// their `.dsc` order.
const SOURCE_ORDER: &[&str] = &[
    "Package",
    "Source",
    "Binary",
    "Package-List",
    "Version",
    "Priority",
    "Section",
    "Maintainer",
    "Original-Maintainer",
    "Uploaders",
    "Dm-Upload-Allowed",
    "Standards-Version",
    "Build-Depends",
    "Build-Depends-Arch",
    "Build-Depends-Indep",
    "Build-Conflicts",
    "Build-Conflicts-Arch",
    "Build-Conflicts-Indep",
    "Architecture",
    "Testsuite",
    "Testsuite-Triggers",
    "Homepage",
    "Description",
    "Vcs-Browser",
    "Vcs-Git",
    "Directory",
    "Files",
    "Checksums-Md5",
    "Checksums-Sha1",
    "Checksums-Sha256",
    "Checksums-Sha512",
];

/// The `Sources` stanza of one Debian source package (no trailing blank line), as
/// `apt-ftparchive sources` writes it: the `.dsc`'s fields with `Source` as `Package`, its
/// pool `directory`, and every file — the `.dsc` (`own`) first — with its size and sums.
pub fn source_entry(
    dsc: &DebControl,
    directory: &str,
    own: &FileSums,
    parts: &[FileSums],
    platform: &Platform,
) -> IndexEntry {
    const DROPPED: &[&str] = &[
        "Files",
        "Checksums-Sha1",
        "Checksums-Sha256",
        "Checksums-Sha512",
    ];
    let mut fields: Vec<(String, String)> = dsc
        .fields
        .iter()
        .filter(|(k, _)| !DROPPED.iter().any(|d| d.eq_ignore_ascii_case(k)))
        .map(|(k, v)| match k.as_str() {
            "Source" => ("Package".to_string(), v.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let list = |sum: fn(&FileSums) -> &String| {
        std::iter::once(own)
            .chain(parts)
            .map(|f| format!("\n {} {} {}", sum(f), f.size, f.name))
            .collect::<String>()
    };
    fields.extend([
        ("Directory".to_string(), directory.to_string()),
        ("Files".to_string(), list(|f| &f.md5)),
        ("Checksums-Sha1".to_string(), list(|f| &f.sha1)),
        ("Checksums-Sha256".to_string(), list(|f| &f.sha256)),
    ]);
    IndexEntry::Apt {
        suite: platform.os.clone(),
        arch: SOURCE.to_string(),
        stanza: stanza_of(fields, SOURCE_ORDER),
    }
}

/// The architecture a source package's entry has: its stanzas go to `Sources`.
pub const SOURCE: &str = "source";

/// Fields sorted by `order` (a stable sort: unknown ones keep their order, after the
/// known ones), one `Field: value` line each (a multi-line value starts on the next line).
fn stanza_of(mut fields: Vec<(String, String)>, order: &[&str]) -> String {
    let rank = |k: &str| {
        order
            .iter()
            .position(|o| o.eq_ignore_ascii_case(k))
            .unwrap_or(order.len())
    };
    fields.sort_by_key(|(k, _)| rank(k));
    let mut stanza = String::new();
    for (k, v) in &fields {
        stanza.push_str(k);
        stanza.push(':');
        if !v.starts_with('\n') {
            stanza.push(' ');
        }
        stanza.push_str(v);
        stanza.push('\n');
    }
    stanza
}

/// What a suite's Release says about itself.
pub struct Suite<'a> {
    pub origin: &'a str,
    pub suite: &'a str,
    pub component: &'a str,
    pub architectures: Vec<String>,
    /// Release's Date while the suite has no packages: the repository's creation.
    pub created: i64,
}

/// The files of `dists/<suite>/` (relative names → bytes), from the suite's index rows
/// (already in apt-ftparchive's order: by path). Release's Date is the newest publish
/// time (the repository's creation while it is empty), so the same packages always give
/// the same bytes.
pub fn render(
    suite: &Suite,
    rows: &[&IndexRow],
    signer: Option<&Signer>,
    known: &segments::Known,
) -> Result<segments::Rendered, RepoError> {
    let date = rows
        .iter()
        .map(|r| r.published)
        .max()
        .unwrap_or(suite.created);
    let io = |source| RepoError::Io {
        path: "Packages".into(),
        source,
    };
    let mut usage = segments::Usage::default();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut indexed: Vec<(String, u64, String)> = Vec::new();
    // Each binary architecture's `Packages` (with the `all` packages), and `Sources`
    // where the suite has source packages.
    let mut lists: Vec<Option<&str>> = suite
        .architectures
        .iter()
        .map(|a| Some(a.as_str()))
        .collect();
    let has_sources = rows
        .iter()
        .any(|r| matches!(&*r.entry, IndexEntry::Apt { arch, .. } if arch == SOURCE));
    if has_sources {
        lists.push(None);
    }
    for binary in lists {
        // A binary architecture's list (with the `all` packages), or the sources.
        let (sub, list) = match binary {
            Some(arch) => (format!("binary-{arch}"), "Packages"),
            None => ("source".to_string(), "Sources"),
        };
        let wanted = |a: &str| match binary {
            Some(arch) => a == arch || a == "all",
            None => a == SOURCE,
        };
        // Each stanza with the blank line that ends it.
        let stanzas: Vec<(&[u8; 16], String)> = rows
            .iter()
            .filter_map(|r| match &*r.entry {
                IndexEntry::Apt {
                    arch: a, stanza, ..
                } if wanted(a) => Some((r.identity(), format!("{stanza}\n"))),
                _ => None,
            })
            .collect();
        let ids: Vec<&[u8; 16]> = stanzas.iter().map(|(k, _)| *k).collect();
        let parts: Vec<&[u8]> = stanzas.iter().map(|(_, s)| s.as_bytes()).collect();
        let cuts = segments::Cuts::new(&ids);
        let dir = format!("{}/{sub}", suite.component);
        let plain: Vec<u8> = parts.concat();
        // xz is the slow one: gzip runs beside it.
        let (gz, xz) = crate::cores::both(
            || segments::build(list, b"", &parts, &cuts, b"", GZIP, known),
            || segments::build(list, b"", &parts, &cuts, b"", XZ, known),
        );
        let (mut gz, mut xz) = (gz.map_err(io)?, xz.map_err(io)?);
        usage.take(&mut gz);
        usage.take(&mut xz);
        for (name, bytes) in [
            (list.to_string(), plain),
            (format!("{list}.gz"), gz.compressed),
            (format!("{list}.xz"), xz.compressed),
        ] {
            let sum = format!("{:x}", Sha256::digest(&bytes));
            indexed.push((format!("{dir}/{name}"), bytes.len() as u64, sum.clone()));
            files.push((format!("{dir}/by-hash/SHA256/{sum}"), bytes.clone()));
            files.push((format!("{dir}/{name}"), bytes));
        }
    }
    indexed.sort();
    let when = chrono::DateTime::from_timestamp(date, 0).unwrap_or_default();
    let mut release = String::new();
    for (k, v) in [
        ("Origin", suite.origin.to_string()),
        ("Label", suite.origin.to_string()),
        ("Suite", suite.suite.to_string()),
        ("Codename", suite.suite.to_string()),
        (
            "Date",
            when.format("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        ),
        ("Acquire-By-Hash", "yes".to_string()),
        ("Architectures", suite.architectures.join(" ")),
        ("Components", suite.component.to_string()),
    ] {
        release.push_str(&format!("{k}: {v}\n"));
    }
    release.push_str("SHA256:\n");
    for (path, size, sum) in &indexed {
        release.push_str(&format!(" {sum} {size:>16} {path}\n"));
    }
    if let Some(s) = signer {
        files.push((
            "InRelease".into(),
            s.clearsign(&release, date)?.into_bytes(),
        ));
        files.push((
            "Release.gpg".into(),
            s.detached(release.as_bytes(), date)?.into_bytes(),
        ));
    }
    files.push(("Release".into(), release.into_bytes()));
    Ok(segments::Rendered { files, usage })
}
