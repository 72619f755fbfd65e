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
    Deb(DebControl),
    Tgz,
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
            Parsed::Deb(_) => FileKind::Deb,
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
    if name.ends_with(".rpm") {
        Some(FileKind::Rpm)
    } else if name.ends_with(".deb") {
        Some(FileKind::Deb)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(FileKind::Tgz)
    } else {
        None
    }
}

/// Reads and checks a package of the kind its name says.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Parsed, String> {
    match kind_of(name) {
        Some(FileKind::Rpm) => parse_rpm(bytes).map(|m| Parsed::Rpm(Box::new(m))),
        Some(FileKind::Deb) => parse_deb(bytes).map(Parsed::Deb),
        Some(FileKind::Tgz) => check_tgz(bytes).map(|()| Parsed::Tgz),
        None => Err("not a package: the name must end in .rpm, .deb or .tar.gz".into()),
    }
}

fn parse_rpm(bytes: &[u8]) -> Result<rpm::PackageMetadata, String> {
    // The rpm crate panics on some crafted headers (offsets out of range): a bad file
    // must be an error naming it, never a crash.
    let parsed = std::panic::catch_unwind(|| rpm::Package::parse(&mut &bytes[..]))
        .map_err(|_| "not a valid RPM: its header is inconsistent".to_string())?;
    let pkg = parsed.map_err(|e| format!("not a valid RPM: {e}"))?;
    if pkg.metadata.is_source_package() {
        return Err("a source RPM; repositories hold binary packages".into());
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

/// Name, version and architecture of a parsed RPM or DEB.
pub fn identity(p: &Parsed) -> Option<Identity> {
    match p {
        Parsed::Rpm(m) => Some(Identity {
            name: m.get_name().ok()?.to_string(),
            epoch: m.get_epoch().unwrap_or(0),
            version: m.get_version().ok()?.to_string(),
            release: m.get_release().ok()?.to_string(),
            arch: m.get_arch().ok()?.to_string(),
        }),
        Parsed::Deb(c) => {
            let v = DebVersion::parse(c.get("Version")?).ok()?;
            Some(Identity {
                name: c.get("Package")?.to_string(),
                epoch: u32::try_from(v.epoch).ok()?,
                version: v.upstream,
                release: v.revision.unwrap_or_default(),
                arch: c.get("Architecture")?.to_string(),
            })
        }
        Parsed::Tgz => None,
    }
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
