//! Reading a package file before it is published: its kind, identity and metadata, with the
//! checks that catch a damaged or foreign file (RPM digests, a DEB's members and control
//! file, a tarball that unpacks to the end). Pure: bytes in, [`Parsed`] out.

use std::io::Read;

use debian_packaging::control::ControlFile;

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

/// The members of a `.deb`, in order: `debian-binary`, `control.tar[.*]`, `data.tar[.*]`.
fn parse_deb(bytes: &[u8]) -> Result<DebControl, String> {
    let bad = |why: String| format!("not a valid DEB: {why}");
    let mut ar = ar::Archive::new(bytes);
    let mut members = Vec::new();
    let mut control = None;
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let id = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("member {id}: {e}")))?;
        match members.len() {
            0 if id == "debian-binary" => {
                if !data.starts_with(b"2.") {
                    return Err(bad(format!(
                        "debian-binary says {:?}, not 2.x",
                        String::from_utf8_lossy(&data).trim()
                    )));
                }
            }
            1 if id.starts_with("control.tar") => {
                control = Some(control_text(&id, &data).map_err(bad)?);
            }
            2 if id.starts_with("data.tar") => {
                walk_tar(decompress(&id, &data).map_err(bad)?)
                    .map_err(|e| bad(format!("{id}: {e}")))?;
            }
            // dpkg ignores extra members after data.tar that start with `_`.
            n if n >= 3 && id.starts_with('_') => {}
            _ => {
                return Err(bad(format!(
                    "unexpected member {id:?} at position {}",
                    members.len() + 1
                )));
            }
        }
        members.push(id);
    }
    if members.len() < 3 {
        return Err(bad(format!(
            "it has {} of the 3 members debian-binary, control.tar, data.tar",
            members.len()
        )));
    }
    let text = control.ok_or_else(|| bad("no control file in control.tar".into()))?;
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

pub(super) fn decompress<'a>(member: &str, data: &'a [u8]) -> Result<Box<dyn Read + 'a>, String> {
    let ext = member.rsplit_once(".tar").map(|(_, e)| e).unwrap_or("");
    Ok(match ext {
        "" => Box::new(data),
        ".gz" => Box::new(flate2::read::GzDecoder::new(data)),
        ".xz" => Box::new(xz2::read::XzDecoder::new(data)),
        ".zst" => Box::new(zstd::Decoder::new(data).map_err(|e| format!("{member}: {e}"))?),
        _ => return Err(format!("{member}: unknown compression")),
    })
}

fn control_text(member: &str, data: &[u8]) -> Result<String, String> {
    let mut tar = tar::Archive::new(decompress(member, data)?);
    let entries = tar.entries().map_err(|e| format!("{member}: {e}"))?;
    for e in entries {
        let e = e.map_err(|e| format!("{member}: {e}"))?;
        let path = e.path().map_err(|e| format!("{member}: {e}"))?;
        if path.to_string_lossy().trim_start_matches("./") == "control" {
            // Real control files are a few KB; a huge one is an attack, not a package.
            const LIMIT: u64 = 1 << 20;
            let mut s = String::new();
            e.take(LIMIT + 1)
                .read_to_string(&mut s)
                .map_err(|e| format!("{member}: control: {e}"))?;
            if s.len() as u64 > LIMIT {
                return Err(format!("{member}: the control file is over 1 MiB"));
            }
            return Ok(s);
        }
    }
    Err(format!("{member} has no control file"))
}

/// Reads a tar stream to its end, so a truncated or corrupt one is caught.
fn walk_tar(r: impl Read) -> Result<(), String> {
    let mut tar = tar::Archive::new(r);
    for e in tar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        std::io::copy(&mut e, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_tgz(bytes: &[u8]) -> Result<(), String> {
    walk_tar(flate2::read::GzDecoder::new(bytes)).map_err(|e| format!("not a valid .tar.gz: {e}"))
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
