//! YUM metadata: `repodata/` with primary, filelists and other (gzip) and `repomd.xml`
//! (plus, when signed, `repomd.xml.asc` and the public key as `repomd.xml.key`), as
//! `createrepo_c --no-database` writes them. A package's three
//! entries are rendered once, at publish, from its header ([`entries`]); an index is the
//! stored entries put together ([`render`]), so no package file is read again.

use std::borrow::Cow;
use std::fmt::Write as _;

use rpm::{Dependency, DependencyFlags, FileType, IndexSignatureTag, IndexTag, PackageMetadata};
use sha2::{Digest, Sha256};

use super::keys::Signer;
use super::{RepoError, segments};
use crate::pack::spec::{Algorithm, Compression};
use crate::store::{IndexEntry, IndexRow, MetadataCompression, PackageRecord};

/// createrepo_c keeps this many changelog entries, the newest.
const CHANGELOG_LIMIT: usize = 10;
/// createrepo_c compresses with zlib level 6; the same level gives the same sizes.
const GZIP: Compression = Compression {
    algorithm: Algorithm::Gzip,
    level: 6,
};
/// A zstd level that compresses about as well as xz at a fraction of its time.
const ZSTD: Compression = Compression {
    algorithm: Algorithm::Zstd,
    level: 10,
};

/// XML text content, escaped as libxml2 does (quotes stay).
fn text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// An XML attribute value: also quotes and the whitespace libxml2 writes as references.
fn attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, in_attribute: bool) -> Cow<'_, str> {
    // Most names and texts need nothing escaped: borrowed, not copied.
    let special = |b: u8| match b {
        b'&' | b'<' | b'>' | b'\r' => true,
        b'"' | b'\n' | b'\t' => in_attribute,
        _ => false,
    };
    if !s.bytes().any(special) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#13;"),
            '"' if in_attribute => o.push_str("&quot;"),
            '\n' if in_attribute => o.push_str("&#10;"),
            '\t' if in_attribute => o.push_str("&#9;"),
            c => o.push(c),
        }
    }
    Cow::Owned(o)
}

/// Control characters XML 1.0 cannot carry (createrepo_c refuses them too).
fn check_chars(what: &str, s: &str) -> Result<(), String> {
    // Bytes, not chars: in UTF-8 a byte below 0x20 is always that character (every byte
    // of a longer one is 0x80 or more), and a byte scan skips decoding each entry's 2 KB.
    match s
        .bytes()
        .find(|b| *b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        Some(b) => Err(format!(
            "the RPM's {what} holds the control character U+{b:04X}, which XML cannot carry"
        )),
        None => Ok(()),
    }
}

/// `[epoch:]version[-release]` of a dependency, split as createrepo_c does.
fn split_evr(evr: &str) -> (&str, &str, Option<&str>) {
    let (epoch, rest) = match evr.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e, r),
        _ => ("0", evr),
    };
    match rest.split_once('-') {
        Some((v, r)) => (epoch, v, Some(r)),
        None => (epoch, rest, None),
    }
}

fn flag_name(f: DependencyFlags) -> Option<&'static str> {
    match f.bits() & 0xf {
        2 => Some("LT"),
        4 => Some("GT"),
        8 => Some("EQ"),
        10 => Some("LE"),
        12 => Some("GE"),
        _ => None,
    }
}

fn is_pre(f: DependencyFlags) -> bool {
    f.intersects(
        DependencyFlags::PREREQ | DependencyFlags::SCRIPT_PRE | DependencyFlags::SCRIPT_POST,
    )
}

fn entry(out: &mut String, d: &Dependency, pre: bool) {
    _ = write!(out, "      <rpm:entry name=\"{}\"", attr(&d.name));
    if let Some(f) = flag_name(d.flags) {
        let (e, v, r) = split_evr(&d.version);
        _ = write!(
            out,
            " flags=\"{f}\" epoch=\"{}\" ver=\"{}\"",
            attr(e),
            attr(v)
        );
        if let Some(r) = r {
            _ = write!(out, " rel=\"{}\"", attr(r));
        }
    }
    if pre {
        out.push_str(" pre=\"1\"");
    }
    out.push_str("/>\n");
}

fn block(out: &mut String, tag: &str, deps: &[(Dependency, bool)]) {
    if deps.is_empty() {
        return;
    }
    _ = writeln!(out, "    <rpm:{tag}>");
    for (d, pre) in deps {
        entry(out, d, *pre);
    }
    _ = writeln!(out, "    </rpm:{tag}>");
}

/// The files createrepo_c lists in primary.xml (so depsolvers see them without filelists).
fn is_primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path == "/usr/lib/sendmail" || path.contains("bin/")
}

/// The text inside the first `(...)` of a `libc.so.6` requirement, from its first digit.
fn libc_version(name: &str) -> &str {
    let Some(open) = name.find('(') else {
        return "";
    };
    let inner = &name[open + 1..];
    let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
    inner
        .find(|c: char| c.is_ascii_digit())
        .map_or("", |i| &inner[i..])
}

/// Requirements as createrepo_c keeps them: no `rpmlib(...)`, none met by the package's
/// own primary files or exactly by its own provides, no repeat of the previous entry of
/// the same name, and only the highest `libc.so.6` one, last.
fn filter_requires(
    requires: Vec<Dependency>,
    provides: &[Dependency],
    primary_files: &[String],
) -> Vec<(Dependency, bool)> {
    let key = |d: &Dependency| (d.name.clone(), flag_name(d.flags), d.version.clone());
    let provided: Vec<_> = provides.iter().map(key).collect();
    let mut out: Vec<(Dependency, bool)> = Vec::new();
    let mut libc: Option<(Dependency, bool)> = None;
    let mut last: std::collections::HashMap<String, (Option<&str>, String, bool)> =
        std::collections::HashMap::new();
    for d in requires {
        if d.name.starts_with("rpmlib(") {
            continue;
        }
        if d.name.starts_with('/') && primary_files.contains(&d.name) {
            continue;
        }
        if provided.contains(&key(&d)) {
            continue;
        }
        let pre = is_pre(d.flags);
        let sig = (flag_name(d.flags), d.version.clone(), pre);
        if last.get(&d.name) == Some(&sig) {
            continue;
        }
        if d.name.starts_with("libc.so.6") {
            let better = match &libc {
                None => true,
                Some((l, _)) => {
                    crate::version::rpmvercmp(libc_version(&d.name), libc_version(&l.name))
                        == std::cmp::Ordering::Greater
                }
            };
            if better {
                libc = Some((d, pre));
            }
            continue;
        }
        last.insert(d.name.clone(), sig);
        out.push((d, pre));
    }
    out.extend(libc);
    out
}

/// The RPM's payload (cpio archive) size, wherever this rpm version put it.
fn archive_size(m: &PackageMetadata) -> u64 {
    m.signature
        .get_entry_data_as_u64(IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
        .or_else(|_| {
            m.signature
                .get_entry_data_as_u32(IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .or_else(|_| {
            m.header
                .get_entry_data_as_u32(IndexTag::RPMTAG_ARCHIVESIZE)
                .map(u64::from)
        })
        .unwrap_or(0)
}

/// The primary, filelists and other entries of one RPM, as createrepo_c writes them.
/// `href` is relative to the platform's base URL; `time file` is the publish time.
pub fn entries(m: &PackageMetadata, r: &PackageRecord, href: &str) -> Result<IndexEntry, String> {
    let s = |v: Result<&str, rpm::Error>| v.unwrap_or("").to_string();
    let name = s(m.get_name());
    // A source RPM's header names the machine it was made on; indexes list it as `src`.
    let arch = if m.is_source_package() {
        "src".to_string()
    } else {
        s(m.get_arch())
    };
    let (summary, description) = (s(m.get_summary()), s(m.get_description()));
    for (what, v) in [("summary", &summary), ("description", &description)] {
        check_chars(what, v)?;
    }
    let version = format!(
        "<version epoch=\"{}\" ver=\"{}\" rel=\"{}\"/>",
        m.get_epoch().unwrap_or(0),
        attr(&s(m.get_version())),
        attr(&s(m.get_release()))
    );
    let files = m.get_file_entries().unwrap_or_default();
    let file_lines: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let path = f.path().to_string_lossy().into_owned();
            let kind = if f.mode().file_type() == FileType::Dir {
                " type=\"dir\""
            } else if f.flags().contains(rpm::FileFlags::GHOST) {
                " type=\"ghost\""
            } else {
                ""
            };
            let line = format!("<file{kind}>{}</file>", text(&path));
            (path, line)
        })
        .collect();
    let primary_files: Vec<String> = file_lines
        .iter()
        .filter(|(p, _)| is_primary_file(p))
        .map(|(p, _)| p.clone())
        .collect();
    let provides = m.get_provides().unwrap_or_default();
    let requires = filter_requires(
        m.get_requires().unwrap_or_default(),
        &provides,
        &primary_files,
    );
    let plain = |v: Vec<Dependency>| v.into_iter().map(|d| (d, false)).collect::<Vec<_>>();
    let offsets = m.get_package_segment_offsets();

    let mut p = String::new();
    p.push_str("<package type=\"rpm\">\n");
    _ = writeln!(p, "  <name>{}</name>", text(&name));
    _ = writeln!(p, "  <arch>{}</arch>", text(&arch));
    _ = writeln!(p, "  {version}");
    _ = writeln!(
        p,
        "  <checksum type=\"sha256\" pkgid=\"YES\">{}</checksum>",
        r.sha256
    );
    _ = writeln!(p, "  <summary>{}</summary>", text(&summary));
    _ = writeln!(p, "  <description>{}</description>", text(&description));
    _ = writeln!(p, "  <packager>{}</packager>", text(&s(m.get_packager())));
    _ = writeln!(p, "  <url>{}</url>", text(&s(m.get_url())));
    _ = writeln!(
        p,
        "  <time file=\"{}\" build=\"{}\"/>",
        r.published,
        m.get_build_time().unwrap_or(0)
    );
    _ = writeln!(
        p,
        "  <size package=\"{}\" installed=\"{}\" archive=\"{}\"/>",
        r.size,
        m.get_installed_size().unwrap_or(0),
        archive_size(m)
    );
    _ = writeln!(p, "  <location href=\"{}\"/>", attr(href));
    p.push_str("  <format>\n");
    for (tag, v) in [
        ("license", s(m.get_license())),
        ("vendor", s(m.get_vendor())),
        ("group", s(m.get_group())),
        ("buildhost", s(m.get_build_host())),
        ("sourcerpm", s(m.get_source_rpm())),
    ] {
        _ = writeln!(p, "    <rpm:{tag}>{}</rpm:{tag}>", text(&v));
    }
    _ = writeln!(
        p,
        "    <rpm:header-range start=\"{}\" end=\"{}\"/>",
        offsets.header, offsets.payload
    );
    block(&mut p, "provides", &plain(provides));
    block(&mut p, "requires", &requires);
    // After provides and requires, createrepo_c's order of the other relations.
    type Relations = fn(&PackageMetadata) -> Result<Vec<Dependency>, rpm::Error>;
    let others: [(&str, Relations); 6] = [
        ("conflicts", PackageMetadata::get_conflicts),
        ("obsoletes", PackageMetadata::get_obsoletes),
        ("suggests", PackageMetadata::get_suggests),
        ("enhances", PackageMetadata::get_enhances),
        ("recommends", PackageMetadata::get_recommends),
        ("supplements", PackageMetadata::get_supplements),
    ];
    for (tag, get) in others {
        block(&mut p, tag, &plain(get(m).unwrap_or_default()));
    }
    for (path, line) in &file_lines {
        if is_primary_file(path) {
            _ = writeln!(p, "    {line}");
        }
    }
    p.push_str("  </format>\n</package>\n");

    let head = format!(
        "<package pkgid=\"{}\" name=\"{}\" arch=\"{}\">\n  {version}\n",
        r.sha256,
        attr(&name),
        attr(&arch)
    );
    let mut f = head.clone();
    for (_, line) in &file_lines {
        _ = writeln!(f, "  {line}");
    }
    f.push_str("</package>\n");

    let mut o = head;
    let log = m.get_changelog_entries().unwrap_or_default();
    // The header lists newest first; createrepo_c keeps the newest ten, oldest first, and
    // moves entries that share a second apart so each has its own.
    let mut last = None;
    let mut bump = 0;
    for c in log.iter().take(CHANGELOG_LIMIT).rev() {
        let mut date = c.timestamp;
        if last == Some(date) {
            bump += 1;
            date += bump;
        } else {
            last = Some(date);
            bump = 0;
        }
        _ = writeln!(
            o,
            "  <changelog author=\"{}\" date=\"{date}\">{}</changelog>",
            attr(c.name.trim_end()),
            text(&c.description)
        );
    }
    o.push_str("</package>\n");
    // Any field (file names, changelog texts...) may carry what XML cannot.
    for (what, doc) in [("header", &p), ("file list", &f), ("changelog", &o)] {
        check_chars(what, doc)?;
    }
    Ok(IndexEntry::Yum {
        primary: p,
        filelists: f,
        other: o,
    })
}

/// The `repodata/` files of one platform, `(name, bytes)`, from its index rows (already
/// in createrepo_c's order: file name, then directory). The revision and timestamps are
/// the newest publish time, so the same packages always give the same bytes.
pub fn render(
    rows: &[&IndexRow],
    how: MetadataCompression,
    signer: Option<&Signer>,
    known: &segments::Known,
    created: i64,
) -> Result<segments::Rendered, RepoError> {
    let pkgs: Vec<(&[u8; 16], [&str; 3])> = rows
        .iter()
        .filter_map(|r| match &*r.entry {
            IndexEntry::Yum {
                primary,
                filelists,
                other,
            } => Some((r.identity(), [primary.as_str(), filelists, other])),
            _ => None,
        })
        .collect();
    let n = pkgs.len();
    // The newest publish; the repository's creation while the tree is empty.
    let revision = rows.iter().map(|r| r.published).max().unwrap_or(created);
    let (c, ext) = match how {
        MetadataCompression::Gzip => (GZIP, "gz"),
        MetadataCompression::Zstd => (ZSTD, "zst"),
    };
    let docs = [
        (
            "primary",
            format!(
                "<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{n}\">\n"
            ),
            "</metadata>",
        ),
        (
            "filelists",
            format!(
                "<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"{n}\">\n"
            ),
            "</filelists>",
        ),
        (
            "other",
            format!(
                "<otherdata xmlns=\"http://linux.duke.edu/metadata/other\" packages=\"{n}\">\n"
            ),
            "</otherdata>",
        ),
    ];
    let heads: Vec<String> = docs
        .iter()
        .map(|(_, open, _)| format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{open}"))
        .collect();
    let parts: Vec<Vec<&[u8]>> = (0..docs.len())
        .map(|i| pkgs.iter().map(|(_, d)| d[i].as_bytes()).collect())
        .collect();
    let ids: Vec<&[u8; 16]> = pkgs.iter().map(|(k, _)| *k).collect();
    let cuts = segments::Cuts::new(&ids);
    // The plain files' checksums (`open-checksum`) are most of the work: the biggest
    // (primary) is hashed on another core while this one compresses, then hashes the rest.
    let plain_sum =
        |i: usize| segments::plain_sha256(heads[i].as_bytes(), &parts[i], docs[i].2.as_bytes());
    let (first_sum, (built, other_sums)) = crate::cores::both(
        || plain_sum(0),
        || {
            let built = docs
                .iter()
                .zip(&heads)
                .zip(&parts)
                .map(|(((kind, _, close), head), p)| {
                    segments::build(kind, head.as_bytes(), p, &cuts, close.as_bytes(), c, known)
                })
                .collect::<std::io::Result<Vec<segments::Built>>>();
            (built, (1..docs.len()).map(plain_sum).collect::<Vec<_>>())
        },
    );
    let plain_sums = std::iter::once(first_sum).chain(other_sums);
    let built = built.map_err(|source| RepoError::Io {
        path: "repodata".into(),
        source,
    })?;
    let mut usage = segments::Usage::default();
    let mut files = Vec::new();
    let mut repomd = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n",
    );
    _ = writeln!(repomd, "  <revision>{revision}</revision>");
    for (((kind, _, _), mut doc), plain_sum) in docs.iter().zip(built).zip(plain_sums) {
        usage.take(&mut doc);
        let sum = format!("{:x}", Sha256::digest(&doc.compressed));
        let name = format!("{sum}-{kind}.xml.{ext}");
        _ = write!(
            repomd,
            "  <data type=\"{kind}\">\n    <checksum type=\"sha256\">{sum}</checksum>\n    <open-checksum type=\"sha256\">{plain_sum}</open-checksum>\n    <location href=\"repodata/{name}\"/>\n    <timestamp>{revision}</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            doc.compressed.len(),
            doc.plain_size
        );
        files.push((name, doc.compressed));
    }
    repomd.push_str("</repomd>\n");
    if let Some(s) = signer {
        let sig = s.detached(repomd.as_bytes(), revision)?;
        files.push(("repomd.xml.asc".into(), sig.into_bytes()));
        // Where SUSE's tools (zypper, libzypp) look for the key of a repository added by
        // its URL alone; in the same generation as the signature, so the two never part.
        files.push(("repomd.xml.key".into(), s.public_armored()?.into_bytes()));
    }
    files.push(("repomd.xml".into(), repomd.into_bytes()));
    Ok(segments::Rendered { files, usage })
}

/// createrepo_c's order of a package in a platform's index: by file name, then directory.
pub fn listing_order(path: &str) -> String {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{base}\0{dir}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, flags: DependencyFlags, v: &str) -> Dependency {
        Dependency {
            name: name.into(),
            flags,
            version: v.into(),
        }
    }

    #[test]
    fn requires_are_filtered_like_createrepo_c() {
        let pre = DependencyFlags::SCRIPT_PRE;
        let got = filter_requires(
            vec![
                dep("/bin/sh", DependencyFlags::ANY, ""),
                dep("/bin/sh", pre, ""),
                dep("/bin/sh", DependencyFlags::SCRIPT_POST, ""),
                dep("/bin/sh", DependencyFlags::ANY, ""),
                dep("/usr/bin/own", DependencyFlags::ANY, ""),
                dep("libc.so.6()(64bit)", DependencyFlags::ANY, ""),
                dep("libc.so.6(GLIBC_2.14)(64bit)", DependencyFlags::ANY, ""),
                dep("libc.so.6(GLIBC_2.3)(64bit)", DependencyFlags::ANY, ""),
                dep(
                    "rpmlib(CompressedFileNames)",
                    DependencyFlags::LE,
                    "3.0.4-1",
                ),
                dep("self-virt", DependencyFlags::ANY, ""),
                dep("zlib", DependencyFlags::GE, "1:1.2-3"),
            ],
            &[dep("self-virt", DependencyFlags::ANY, "")],
            &["/usr/bin/own".to_string()],
        );
        let names: Vec<String> = got
            .iter()
            .map(|(d, p)| format!("{}{}", d.name, if *p { "+pre" } else { "" }))
            .collect();
        assert_eq!(
            names,
            [
                "/bin/sh",
                "/bin/sh+pre",
                "/bin/sh",
                "zlib",
                "libc.so.6(GLIBC_2.14)(64bit)"
            ]
        );
        let mut s = String::new();
        entry(&mut s, &got[3].0, false);
        assert_eq!(
            s.trim(),
            r#"<rpm:entry name="zlib" flags="GE" epoch="1" ver="1.2" rel="3"/>"#
        );
    }

    #[test]
    fn escaping_follows_libxml2() {
        assert_eq!(text("a & <b> \"q\" 'x'"), "a &amp; &lt;b&gt; \"q\" 'x'");
        assert_eq!(attr("a \"q\"\n"), "a &quot;q&quot;&#10;");
        assert!(check_chars("summary", "bell\u{7}").is_err());
    }
}
