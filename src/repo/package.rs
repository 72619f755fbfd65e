//! Reading a package file before it is published: its kind, identity and metadata, with the
//! checks that catch a damaged or foreign file (RPM digests, a DEB's members and control
//! file, a tarball that unpacks to the end). Pure: bytes in, [`Parsed`] out.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use debian_packaging::control::ControlFile;

use crate::archive;
use crate::store::FileKind;
use crate::version::DebVersion;

/// What a package file is, read from its own bytes.
#[derive(Debug)]
pub enum Parsed {
    Rpm(Box<rpm::PackageMetadata>),
    Srpm(Box<rpm::PackageMetadata>),
    Deb(DebControl),
    Dsc(Dsc),
    Tgz,
}

/// A Debian source control file (`.dsc`): its fields, and the files it names.
#[derive(Debug, Clone)]
pub struct Dsc {
    pub control: DebControl,
    pub files: Vec<DscFile>,
}

/// One file a `.dsc` names, with what the `.dsc` says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DscFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// From the `Files` field, when it names the file.
    pub md5: Option<String>,
}

/// A DEB's `control` file: the fields in their order, values as written (continuation
/// lines joined with `\n`, leading space kept).
#[derive(Debug, Clone)]
pub struct DebControl {
    pub fields: Vec<(String, String)>,
}

impl DebControl {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Name, version and architecture, as the format states them.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    pub arch: String,
}

impl Parsed {
    pub fn kind(&self) -> FileKind {
        match self {
            Parsed::Rpm(_) => FileKind::Rpm,
            Parsed::Srpm(_) => FileKind::Srpm,
            Parsed::Deb(_) => FileKind::Deb,
            Parsed::Dsc(_) => FileKind::Dsc,
            Parsed::Tgz => FileKind::Tgz,
        }
    }
}

/// Whether an RPM's signature header holds an OpenPGP signature (of any algorithm).
pub fn rpm_signed(m: &rpm::PackageMetadata) -> bool {
    use rpm::IndexSignatureTag as T;
    [
        T::RPMSIGTAG_RSA,
        T::RPMSIGTAG_PGP,
        T::RPMSIGTAG_DSA,
        T::RPMSIGTAG_OPENPGP,
    ]
    .into_iter()
    .any(|t| m.signature.entry_is_present(t as u32))
}

/// The kind a file name says it is.
pub fn kind_of(name: &str) -> Option<FileKind> {
    if name.ends_with(".src.rpm") {
        Some(FileKind::Srpm)
    } else if name.ends_with(".rpm") {
        Some(FileKind::Rpm)
    } else if name.ends_with(".deb") {
        Some(FileKind::Deb)
    } else if name.ends_with(".dsc") {
        Some(FileKind::Dsc)
    } else if is_source_part(name) {
        None
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(FileKind::Tgz)
    } else {
        None
    }
}

/// A file a Debian source package's `.dsc` names besides itself: the upstream tarball
/// (`.orig.tar.*`, with its `.asc`), the packaging (`.debian.tar.*`, `.diff.gz`), or a
/// native package's one tarball (`_<version>.tar.*`, which the `.dsc` names).
pub fn is_source_part(name: &str) -> bool {
    let tarball = |stem: &str| {
        [".tar.gz", ".tar.xz", ".tar.bz2", ".tar.lzma", ".tar.zst"]
            .iter()
            .any(|ext| name.ends_with(&format!("{stem}{ext}")))
    };
    tarball(".orig")
        || tarball(".debian")
        || name.ends_with(".diff.gz")
        || (name.contains(".orig") && name.ends_with(".asc"))
        || (name.contains(".orig-") && tarball(""))
}

/// What a publish takes: a package file or a part of a Debian source package.
pub fn is_publishable(name: &str) -> bool {
    kind_of(name).is_some() || is_source_part(name)
}

/// What a publish takes, for messages.
pub const PUBLISHABLE: &str = "not a package: the name must end in .rpm, .deb, .tar.gz or \
     .dsc (with the .orig.tar.* and .debian.tar.* files the .dsc names)";

/// Reads and checks a package of the kind its name says.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Parsed, String> {
    match kind_of(name) {
        Some(FileKind::Rpm) => parse_rpm(bytes, false).map(|m| Parsed::Rpm(Box::new(m))),
        Some(FileKind::Srpm) => parse_rpm(bytes, true).map(|m| Parsed::Srpm(Box::new(m))),
        Some(FileKind::Deb) => parse_deb(bytes).map(Parsed::Deb),
        Some(FileKind::Dsc) => parse_dsc(bytes).map(Parsed::Dsc),
        Some(FileKind::Tgz) => check_tgz(bytes).map(|()| Parsed::Tgz),
        None if is_source_part(name) => {
            Err("a part of a Debian source package: publish it with the .dsc that names it".into())
        }
        None => Err(PUBLISHABLE.into()),
    }
}

fn parse_rpm(bytes: &[u8], source: bool) -> Result<rpm::PackageMetadata, String> {
    // The lead, as rpm reads it (rpmReadLead): the crate does not check its major
    // version and signature type, which rpm refuses a package for.
    if let Some(lead) = bytes.get(..96) {
        if !matches!(lead[4], 3 | 4) {
            return Err(format!("not a valid RPM: lead version {}", lead[4]));
        }
        if lead[78..80] != [0, 5] {
            return Err("not a valid RPM: the lead's signature type is not 5 (header)".into());
        }
    }
    // The rpm crate panics on some crafted headers (offsets out of range): a bad file
    // must be an error naming it, never a crash.
    let parsed = std::panic::catch_unwind(|| rpm::Package::parse(&mut &bytes[..]))
        .map_err(|_| "not a valid RPM: its header is inconsistent".to_string())?;
    let pkg = parsed.map_err(|e| format!("not a valid RPM: {e}"))?;
    match (pkg.metadata.is_source_package(), source) {
        (true, false) => {
            return Err("a source RPM named as a binary one: its name must end in .src.rpm".into());
        }
        (false, true) => return Err("a binary RPM named as a source one (.src.rpm)".into()),
        _ => {}
    }
    pkg.verify_digests()
        .map_err(|e| format!("the RPM's digests do not match its contents: {e}"))?;
    for (what, r) in [
        ("name", pkg.metadata.get_name()),
        ("version", pkg.metadata.get_version()),
        ("release", pkg.metadata.get_release()),
        ("arch", pkg.metadata.get_arch()),
    ] {
        r.map_err(|e| format!("the RPM header has no {what}: {e}"))?;
    }
    Ok(pkg.metadata)
}

/// A `.deb` read whole: its members in dpkg's order (`debian-binary`, `control.tar[.*]`,
/// `data.tar[.*]`), each compressed stream to its end, every tar entry to its end, and
/// `data.tar` against what the control member names: each `md5sums` line a file there
/// with that MD5, each `conffiles` path a file there.
fn parse_deb(bytes: &[u8]) -> Result<DebControl, String> {
    let bad = |why: String| format!("not a valid DEB: {why}");
    let members = archive::ar_members(bytes).map_err(bad)?;
    let mut control = None;
    for (i, m) in members.iter().enumerate() {
        let id = m.name.as_str();
        match i {
            0 if id == "debian-binary" => {
                let minor = m
                    .data
                    .strip_prefix(b"2.")
                    .and_then(|r| r.strip_suffix(b"\n"));
                if !minor.is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit)) {
                    return Err(bad(format!(
                        "debian-binary says {:?}, not 2.x and a newline",
                        String::from_utf8_lossy(m.data).trim()
                    )));
                }
            }
            1 if id.starts_with("control.tar") => {
                control = Some(control_member(id, m.data).map_err(bad)?);
            }
            2 if id.starts_with("data.tar") => {
                let c = control
                    .as_ref()
                    .ok_or_else(|| bad("no control member".into()))?;
                check_data(id, m.data, c).map_err(|e| bad(format!("{id}: {e}")))?;
            }
            // dpkg ignores extra members after data.tar that start with `_`.
            n if n >= 3 && id.starts_with('_') => {}
            _ => {
                return Err(bad(format!(
                    "unexpected member {id:?} at position {}",
                    i + 1
                )));
            }
        }
    }
    if members.len() < 3 {
        return Err(bad(format!(
            "it has {} of the 3 members debian-binary, control.tar, data.tar",
            members.len()
        )));
    }
    let text = control
        .and_then(|c| c.control)
        .ok_or_else(|| bad("no control file in control.tar".into()))?;
    let fields = control_fields(&text).map_err(bad)?;
    let c = DebControl { fields };
    for f in ["Package", "Version", "Architecture"] {
        if c.get(f).is_none_or(|v| v.trim().is_empty()) {
            return Err(bad(format!("the control file has no {f} field")));
        }
    }
    DebVersion::parse(c.get("Version").unwrap_or_default())
        .map_err(|e| bad(format!("Version: {e}")))?;
    Ok(c)
}

/// What a DEB's control member says about its data: the control file's text, and the
/// paths `md5sums` and `conffiles` name.
#[derive(Default)]
struct ControlMember {
    control: Option<String>,
    /// Path (without `./`) → MD5 in hex.
    md5sums: BTreeMap<String, String>,
    /// Install paths (`/etc/...`).
    conffiles: Vec<String>,
}

/// Real control files are a few KB; a huge one is an attack, not a package.
const CONTROL_LIMIT: u64 = 1 << 20;

fn control_member(member: &str, data: &[u8]) -> Result<ControlMember, String> {
    let at = |e: String| format!("{member}: {e}");
    let mut out = ControlMember::default();
    let mut md5sums = None;
    let mut conffiles = None;
    let stream = archive::decoder(archive::compression_of(member)?, data).map_err(at)?;
    let rest = archive::read_tar(stream, |e, r| {
        let slot = match e.path.to_string_lossy().trim_start_matches("./") {
            "control" => &mut out.control,
            "md5sums" => &mut md5sums,
            "conffiles" => &mut conffiles,
            _ => return Ok(()),
        };
        let mut s = String::new();
        r.take(CONTROL_LIMIT + 1)
            .read_to_string(&mut s)
            .map_err(|err| format!("{}: {err}", e.path.display()))?;
        if s.len() as u64 > CONTROL_LIMIT {
            return Err(format!("{} is over 1 MiB", e.path.display()));
        }
        *slot = Some(s);
        Ok(())
    })
    .map_err(at)?;
    rest.finish().map_err(at)?;
    for line in md5sums.unwrap_or_default().lines() {
        let (sum, path) = line
            .split_once(' ')
            .map(|(s, p)| (s, p.trim_start_matches([' ', '*'])))
            .filter(|(s, p)| {
                s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) && !p.is_empty()
            })
            .ok_or_else(|| at(format!("md5sums line {line:?} is not `MD5  path`")))?;
        out.md5sums.insert(
            path.trim_start_matches("./").to_string(),
            sum.to_ascii_lowercase(),
        );
    }
    out.conffiles = conffiles
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        // `remove-on-upgrade /etc/x` (dpkg 1.20) names a path too.
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect();
    Ok(out)
}

/// Reads `data.tar` to its end, checking each entry's path and each file's MD5 against
/// `md5sums`, and that every path `md5sums` and `conffiles` name is a file in it.
fn check_data(member: &str, data: &[u8], control: &ControlMember) -> Result<(), String> {
    use md5::Digest as _;
    // Path → MD5 of each regular file; hard links take their target's.
    let mut files: HashMap<String, String> = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let stream = archive::decoder(archive::compression_of(member)?, data)?;
    let rest = archive::read_tar(stream, |e, r| {
        if let Some(why) = archive::refusal(e, archive::Links::Installed) {
            return Err(format!("entry `{}` refused: {why}", e.path.display()));
        }
        let path = e
            .path
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        match e.kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut h = md5::Md5::new();
                std::io::copy(r, &mut h).map_err(|err| format!("{path}: {err}"))?;
                files.insert(path, format!("{:x}", h.finalize()));
            }
            tar::EntryType::Link => {
                let target = e.link.as_deref().map(|t| t.to_string_lossy().into_owned());
                links.push((
                    path,
                    target.unwrap_or_default().trim_start_matches("./").into(),
                ));
            }
            _ => {}
        }
        Ok(())
    })?;
    rest.finish()?;
    for (path, target) in links {
        let sum = files.get(&target).cloned().ok_or_else(|| {
            format!("hard link {path} names {target}, which comes before it nowhere")
        })?;
        files.insert(path, sum);
    }
    for (path, want) in &control.md5sums {
        match files.get(path) {
            None => return Err(format!("md5sums names {path}, which it does not hold")),
            Some(got) if got != want => {
                return Err(format!(
                    "{path} has MD5 {got}, but md5sums says {want}: its contents are damaged"
                ));
            }
            Some(_) => {}
        }
    }
    for c in &control.conffiles {
        if !files.contains_key(c.trim_start_matches('/')) {
            return Err(format!(
                "conffiles names {c}, which it does not hold as a file"
            ));
        }
    }
    Ok(())
}

/// A `.tar.gz` read whole: the gzip stream to its end (CRC, and nothing after it), every
/// entry to its end, and no entry that `fetch` would refuse to unpack.
fn check_tgz(bytes: &[u8]) -> Result<(), String> {
    let bad = |e: String| format!("not a valid .tar.gz: {e}");
    let stream = archive::decoder(archive::Compression::Gzip, bytes).map_err(bad)?;
    let rest = archive::read_tar(stream, |e, _| {
        match archive::refusal(e, archive::Links::Inside) {
            Some(why) => Err(format!("entry `{}` refused: {why}", e.path.display())),
            None => Ok(()),
        }
    })
    .map_err(bad)?;
    rest.finish().map_err(bad)
}

/// The fields of a control paragraph, as written (continuation lines keep their leading
/// space and are joined with `\n`). Checked by debian-packaging's parser first.
pub fn control_fields(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.contains('\0') {
        return Err("the control file holds a NUL byte".into());
    }
    let parsed = ControlFile::parse_str(text).map_err(|e| format!("control file: {e}"))?;
    if parsed.paragraphs().count() != 1 {
        return Err("the control file must hold exactly one paragraph".into());
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line);
                }
                None => return Err("a continuation line before any field".into()),
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        } else if !line.starts_with('#') {
            return Err(format!("control file line {line:?} is not `Field: value`"));
        }
    }
    Ok(fields)
}

/// Name, version and architecture of a parsed package (a source package's architecture
/// is `src` for RPM, `source` for Debian, as their indexes name it).
pub fn identity(p: &Parsed) -> Option<Identity> {
    let rpm = |m: &rpm::PackageMetadata, arch: Option<&str>| {
        Some(Identity {
            name: m.get_name().ok()?.to_string(),
            epoch: m.get_epoch().unwrap_or(0),
            version: m.get_version().ok()?.to_string(),
            release: m.get_release().ok()?.to_string(),
            arch: match arch {
                Some(a) => a.to_string(),
                None => m.get_arch().ok()?.to_string(),
            },
        })
    };
    let deb = |c: &DebControl, name: &str, arch: Option<&str>| {
        let v = DebVersion::parse(c.get("Version")?).ok()?;
        Some(Identity {
            name: c.get(name)?.to_string(),
            epoch: u32::try_from(v.epoch).ok()?,
            version: v.upstream,
            release: v.revision.unwrap_or_default(),
            arch: match arch {
                Some(a) => a.to_string(),
                None => c.get("Architecture")?.to_string(),
            },
        })
    };
    match p {
        Parsed::Rpm(m) => rpm(m, None),
        Parsed::Srpm(m) => rpm(m, Some("src")),
        Parsed::Deb(c) => deb(c, "Package", None),
        Parsed::Dsc(d) => deb(&d.control, "Source", Some("source")),
        Parsed::Tgz => None,
    }
}

/// A `.dsc` read and checked: one paragraph (inside an OpenPGP clear-signature when
/// signed; the signature itself is the uploader's and not checked here) with `Format`,
/// `Source` and `Version`, and files named by `Checksums-Sha256` — plain names, each
/// once, agreeing with `Files` where both give a size.
fn parse_dsc(bytes: &[u8]) -> Result<Dsc, String> {
    let bad = |why: String| format!("not a valid .dsc: {why}");
    if bytes.len() as u64 > CONTROL_LIMIT {
        return Err(bad("it is over 1 MiB".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
    let text = clear_signed_text(text).map_err(bad)?;
    let fields = control_fields(&text).map_err(bad)?;
    let control = DebControl { fields };
    for f in ["Format", "Source", "Version"] {
        if control.get(f).is_none_or(|v| v.trim().is_empty()) {
            return Err(bad(format!("it has no {f} field")));
        }
    }
    let source = control.get("Source").unwrap_or_default();
    if !source
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return Err(bad(format!(
            "Source {source:?} is not a Debian package name"
        )));
    }
    DebVersion::parse(control.get("Version").unwrap_or_default())
        .map_err(|e| bad(format!("Version: {e}")))?;
    let lines = |field: &str| -> Result<Vec<(String, u64, String)>, String> {
        let mut out = Vec::new();
        for line in control.get(field).unwrap_or_default().lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(sum), Some(size), Some(name), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad(format!(
                    "{field} line {line:?} is not `checksum size name`"
                )));
            };
            let size = size
                .parse()
                .map_err(|_| bad(format!("{field} line {line:?}: size {size:?}")))?;
            if !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{field} line {line:?}: checksum {sum:?}")));
            }
            out.push((sum.to_ascii_lowercase(), size, name.to_string()));
        }
        Ok(out)
    };
    let md5s = lines("Files")?;
    let mut files: Vec<DscFile> = Vec::new();
    for (sha256, size, name) in lines("Checksums-Sha256")? {
        if sha256.len() != 64 {
            return Err(bad(format!(
                "Checksums-Sha256 names {name} with {sha256:?}"
            )));
        }
        if name.contains('/') || name.starts_with('.') || !is_source_part(&name) {
            return Err(bad(format!(
                "it names {name:?}, which is not an .orig.tar.*, .debian.tar.* or .diff.gz \
                 file beside it"
            )));
        }
        if files.iter().any(|f| f.name == name) {
            return Err(bad(format!("it names {name} twice")));
        }
        let md5 = match md5s.iter().find(|(_, _, n)| *n == name) {
            Some((m, s, _)) if *s == size && m.len() == 32 => Some(m.clone()),
            Some(_) => {
                return Err(bad(format!(
                    "Files and Checksums-Sha256 disagree on {name}"
                )));
            }
            None => None,
        };
        files.push(DscFile {
            name,
            size,
            sha256,
            md5,
        });
    }
    if files.is_empty() {
        return Err(bad("Checksums-Sha256 names no files".into()));
    }
    Ok(Dsc { control, files })
}

/// The text of a control file, taken out of an OpenPGP clear-signature if it is in one
/// (dash-escaped lines restored).
fn clear_signed_text(text: &str) -> Result<String, String> {
    const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
    if !text.trim_start().starts_with(BEGIN) {
        return Ok(text.to_string());
    }
    let mut lines = text.trim_start().lines().skip(1);
    // Armor headers (`Hash: SHA512`) up to a blank line.
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
    }
    let mut out = String::new();
    for line in lines {
        if line.starts_with("-----BEGIN PGP SIGNATURE-----") {
            return Ok(out);
        }
        out.push_str(line.strip_prefix("- ").unwrap_or(line));
        out.push('\n');
    }
    Err("a clear-signed text without its signature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_fields_keep_continuations() {
        let f = control_fields(
            "Package: x\nVersion: 1.0-1\nArchitecture: all\nDescription: short\n long line\n .\n more\n",
        )
        .unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[3].1, "short\n long line\n .\n more");
    }

    const DSC: &str = "Format: 3.0 (quilt)\nSource: hello\nVersion: 1:2.10-3\n\
        Checksums-Sha256:\n \
        0000000000000000000000000000000000000000000000000000000000000000 10 hello_2.10.orig.tar.gz\n \
        1111111111111111111111111111111111111111111111111111111111111111 5 hello_2.10-3.debian.tar.xz\n\
        Files:\n \
        00000000000000000000000000000000 10 hello_2.10.orig.tar.gz\n";

    #[test]
    fn a_dsc_names_its_files_signed_or_not() {
        let Parsed::Dsc(d) = parse("hello_2.10-3.dsc", DSC.as_bytes()).unwrap() else {
            panic!("not a .dsc");
        };
        let names: Vec<&str> = d.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["hello_2.10.orig.tar.gz", "hello_2.10-3.debian.tar.xz"]
        );
        assert_eq!(
            d.files[0].md5.as_deref(),
            Some("00000000000000000000000000000000")
        );
        assert_eq!(d.files[1].md5, None);
        let id = identity(&Parsed::Dsc(d)).unwrap();
        assert_eq!(
            (
                id.name.as_str(),
                id.epoch,
                id.version.as_str(),
                id.release.as_str()
            ),
            ("hello", 1, "2.10", "3")
        );
        assert_eq!(id.arch, "source");
        // Clear-signed, as dput uploads them: the same fields.
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{DSC}\n\
             -----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
        );
        let Parsed::Dsc(s) = parse("hello_2.10-3.dsc", signed.as_bytes()).unwrap() else {
            panic!("not a .dsc");
        };
        assert_eq!(s.files.len(), 2);
    }

    #[test]
    fn a_dsc_that_reaches_elsewhere_or_disagrees_is_refused() {
        for (from, to, why) in [
            (
                "0 10 hello_2.10.orig.tar.gz\n 1",
                "0 10 ../hello_2.10.orig.tar.gz\n 1",
                "not an .orig",
            ),
            ("hello_2.10-3.debian.tar.xz", "passwd", "not an .orig"),
            (
                "00000000000000000000000000000000 10",
                "00000000000000000000000000000000 11",
                "disagree",
            ),
            (
                "Source: hello",
                "Source: Hello World",
                "not a Debian package name",
            ),
        ] {
            let bad = DSC.replacen(from, to, 1);
            assert_ne!(bad, DSC, "{from}");
            let err = parse("hello_2.10-3.dsc", bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{to}: {err}");
        }
        assert!(
            parse("hello_2.10.orig.tar.gz", b"")
                .unwrap_err()
                .contains("with the .dsc")
        );
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        assert!(
            parse("x.rpm", b"not an rpm")
                .unwrap_err()
                .contains("not a valid RPM")
        );
        assert!(
            parse("x.deb", b"!<arch>\n")
                .unwrap_err()
                .contains("not a valid DEB")
        );
        assert!(
            parse("x.tar.gz", b"\x1f\x8b junk")
                .unwrap_err()
                .contains(".tar.gz")
        );
        assert!(parse("x.zip", b"").unwrap_err().contains("not a package"));
    }
}
