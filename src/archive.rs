//! Archives read whole, the way a package is checked before anything is stored: the `ar`
//! container of a `.deb` read strictly, compressed streams read to their end (so their
//! checksums are checked, and nothing may follow them), tar streams entry by entry to the
//! end (every entry's data there in full), and the rules that refuse a tar entry that
//! would land outside the directory it is unpacked into. Pure: bytes in, errors out.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// One member of an `ar` archive.
#[derive(Debug)]
pub struct ArMember<'a> {
    pub name: String,
    pub data: &'a [u8],
}

/// The members of an `ar` archive, in order. Read strictly, as dpkg-deb reads a `.deb`:
/// the global magic, each header's decimal size and its closing "`\n", each member whole
/// with its padding byte, and nothing after the last member. (The `ar` crate accepts a
/// member cut short, a header without its closing magic, and any byte as padding.)
pub fn ar_members(bytes: &[u8]) -> Result<Vec<ArMember<'_>>, String> {
    const MAGIC: &[u8] = b"!<arch>\n";
    const HEADER: usize = 60;
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("it does not start with the ar magic `!<arch>`")?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        if rest.len() < HEADER {
            return Err(format!(
                "{} bytes at offset {at} are not a whole member header",
                rest.len()
            ));
        }
        let (header, after) = rest.split_at(HEADER);
        if &header[58..60] != b"`\n" {
            return Err(format!("the member header at offset {at} is damaged"));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        // Decimal mtime, uid, gid and size, an octal mode: each digits, then spaces.
        let field = |range: std::ops::Range<usize>, what: &str, radix: u32| {
            std::str::from_utf8(&header[range])
                .ok()
                .map(str::trim_end)
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_digit(radix)))
                .and_then(|s| usize::from_str_radix(s, radix).ok())
                .ok_or_else(|| format!("member {name:?} has a damaged {what} field"))
        };
        field(16..28, "mtime", 10)?;
        field(28..34, "owner", 10)?;
        field(34..40, "group", 10)?;
        field(40..48, "mode", 8)?;
        let size = field(48..58, "size", 10)?;
        if size > after.len() {
            return Err(format!(
                "member {name:?} is cut short: {} of {size} bytes",
                after.len()
            ));
        }
        let (data, mut tail) = after.split_at(size);
        if size % 2 == 1 && !tail.is_empty() {
            if tail[0] != b'\n' {
                return Err(format!(
                    "member {name:?} is followed by a damaged padding byte"
                ));
            }
            tail = &tail[1..];
        }
        members.push(ArMember { name, data });
        rest = tail;
    }
    Ok(members)
}

/// How a tar stream is compressed, from its name (`data.tar.xz`, `x-1.0-1.tar.gz`).
pub fn compression_of(name: &str) -> Result<Compression, String> {
    let ext = name.rsplit_once(".tar").map(|(_, e)| e);
    Ok(match ext {
        Some("") => Compression::None,
        Some(".gz") => Compression::Gzip,
        Some(".xz") => Compression::Xz,
        Some(".zst") => Compression::Zstd,
        _ if name.ends_with(".tgz") => Compression::Gzip,
        _ => return Err(format!("{name}: unknown compression")),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// A decompressing reader over bytes in memory that knows where its input stands, so
/// [`Decoded::finish`] can tell a stream read to its end from one with bytes after it.
pub struct Decoded<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Plain(&'a [u8]),
    // Several gzip members in a row are one valid stream (gzip -t and tar take them).
    Gzip(flate2::bufread::MultiGzDecoder<&'a [u8]>),
    Xz(xz2::bufread::XzDecoder<&'a [u8]>),
    Zstd(Box<zstd::stream::read::Decoder<'a, &'a [u8]>>),
}

/// Decompresses `data`.
pub fn decoder(compression: Compression, data: &[u8]) -> Result<Decoded<'_>, String> {
    let inner = match compression {
        Compression::None => Inner::Plain(data),
        Compression::Gzip => Inner::Gzip(flate2::bufread::MultiGzDecoder::new(data)),
        Compression::Xz => Inner::Xz(xz2::bufread::XzDecoder::new(data)),
        Compression::Zstd => Inner::Zstd(Box::new(
            zstd::stream::read::Decoder::with_buffer(data).map_err(|e| e.to_string())?,
        )),
    };
    Ok(Decoded { inner })
}

impl Read for Decoded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(r) => r.read(buf),
            Inner::Gzip(r) => r.read(buf),
            Inner::Xz(r) => r.read(buf),
            Inner::Zstd(r) => r.read(buf),
        }
    }
}

impl Decoded<'_> {
    /// Reads the rest of the stream (its trailer is where gzip keeps the CRC and xz its
    /// check), then refuses any input left after it.
    pub fn finish(mut self) -> Result<(), String> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| format!("its compressed data: {e}"))?;
        let left = match &self.inner {
            Inner::Plain(r) => r.len(),
            Inner::Gzip(r) => r.get_ref().len(),
            Inner::Xz(r) => r.get_ref().len(),
            Inner::Zstd(r) => r.get_ref().len(),
        };
        if left > 0 {
            return Err(format!(
                "{left} bytes follow the end of its compressed data"
            ));
        }
        Ok(())
    }
}

/// A tar entry as its header states it.
#[derive(Debug)]
pub struct TarEntry {
    pub path: PathBuf,
    pub kind: EntryType,
    pub link: Option<PathBuf>,
    pub size: u64,
}

/// Reads the tar stream `r` to its end, handing each entry and a reader of its data to
/// `each` (which may read some or all of it); every entry's data must be there in full.
/// Returns the underlying reader, for the caller to finish.
pub fn read_tar<R: Read>(
    r: R,
    mut each: impl FnMut(&TarEntry, &mut dyn Read) -> Result<(), String>,
) -> Result<R, String> {
    let mut archive = tar::Archive::new(r);
    for e in archive.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| format!("not a readable tar stream: {e}"))?;
        let entry = TarEntry {
            path: e
                .path()
                .map_err(|e| format!("an entry has an unreadable name: {e}"))?
                .into_owned(),
            kind: e.header().entry_type(),
            link: e
                .link_name()
                .map_err(|e| format!("an entry has an unreadable link target: {e}"))?
                .map(|l| l.into_owned()),
            size: e.size(),
        };
        let mut counted = Counted {
            inner: &mut e,
            n: 0,
        };
        each(&entry, &mut counted)?;
        io::copy(&mut counted, &mut io::sink())
            .map_err(|err| format!("{}: {err}", entry.path.display()))?;
        if counted.n != entry.size {
            return Err(format!(
                "{}: the stream ends inside it ({} of {} bytes)",
                entry.path.display(),
                counted.n,
                entry.size
            ));
        }
    }
    Ok(archive.into_inner())
}

struct Counted<'a, R: Read> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Which links an archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A prebuilt tarball unpacked into `${stageDir}`: every link stays inside, and only
    /// files, directories and links (no devices or fifos).
    Inside,
    /// A DEB's `data.tar`, installed at `/`: symlinks may name absolute targets (they are
    /// read on the installed system), any entry type dpkg takes.
    Installed,
}

/// An entry path as plain relative components, or why it is refused. `./` parts are
/// dropped; an empty result is the archive's root entry.
pub fn relative_parts(path: &Path) -> Result<Vec<&std::ffi::OsStr>, &'static str> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(parts)
}

/// Whether symlink `target`, placed at `entry` (relative parts), stays inside the root
/// when read as written (each `..` taken lexically).
fn link_stays_inside(entry: &[&std::ffi::OsStr], target: &Path) -> Result<(), &'static str> {
    let mut depth = entry.len().saturating_sub(1) as i64;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err("its link target leads out of the directory");
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("its link target is an absolute path");
            }
        }
    }
    Ok(())
}

/// Why `entry` would land outside the directory it is unpacked into, if it would.
pub fn refusal(entry: &TarEntry, links: Links) -> Option<String> {
    let parts = match relative_parts(&entry.path) {
        Ok(p) => p,
        Err(why) => return Some(why.into()),
    };
    match entry.kind {
        EntryType::Symlink => match &entry.link {
            None => Some("a symlink without a target".into()),
            Some(_) if links == Links::Installed => None,
            Some(t) => link_stays_inside(&parts, t).err().map(str::to_string),
        },
        EntryType::Link => match &entry.link {
            None => Some("a hard link without a target".into()),
            Some(t) => relative_parts(t)
                .err()
                .map(|_| "its hard link target is outside the directory".into()),
        },
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => None,
        _ if links == Links::Installed => None,
        other => Some(format!(
            "{other:?} entries (devices, fifos) do not belong in a prebuilt tarball"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar_is_read_strictly() {
        let member = |name: &str, data: &[u8]| {
            let mut m = format!(
                "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                644,
                data.len()
            )
            .into_bytes();
            m.extend_from_slice(data);
            if data.len() % 2 == 1 {
                m.push(b'\n');
            }
            m
        };
        let mut good = b"!<arch>\n".to_vec();
        good.extend(member("debian-binary", b"2.0\n"));
        good.extend(member("odd", b"abc"));
        let m = ar_members(&good).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].name.as_str(), m[1].data), ("odd", b"abc".as_slice()));
        let mut junk_after = good.clone();
        junk_after.extend_from_slice(b"junk");
        let mut bad_fmag = good.clone();
        bad_fmag[8 + 58] = b'x';
        let mut bad_pad = good.clone();
        let n = bad_pad.len();
        bad_pad[n - 1] = b'x';
        let mut bad_size = good.clone();
        bad_size[8 + 48] = b'x';
        for (what, bytes) in [
            ("junk after", junk_after),
            ("header magic", bad_fmag),
            ("padding", bad_pad),
            ("size", bad_size),
            ("cut", good[..good.len() - 3].to_vec()),
        ] {
            assert!(ar_members(&bytes).is_err(), "{what} accepted");
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn streams_are_read_to_their_end_and_nothing_may_follow() {
        let text = b"some text that compresses".repeat(50);
        let good = gz(&text);
        let mut d = decoder(Compression::Gzip, &good).unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, text);
        d.finish().unwrap();
        // Two members are one stream.
        let two = [good.clone(), good.clone()].concat();
        decoder(Compression::Gzip, &two).unwrap().finish().unwrap();
        // The CRC, in the trailer, is checked; junk or zeros after the end are refused.
        let mut crc = good.clone();
        let n = crc.len();
        crc[n - 6] ^= 1;
        for bad in [
            crc,
            [good.clone(), b"junk".to_vec()].concat(),
            [good, vec![0; 4]].concat(),
        ] {
            assert!(decoder(Compression::Gzip, &bad).unwrap().finish().is_err());
        }
    }

    #[test]
    fn a_tar_cut_inside_an_entry_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "./a", &[7u8; 1000][..]).unwrap();
        let full = b.into_inner().unwrap();
        let mut seen = Vec::new();
        read_tar(&full[..], |e, r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map_err(|e| e.to_string())?;
            seen.push((e.path.clone(), v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(PathBuf::from("a"), 1000)]);
        let cut = &full[..512 + 600];
        let e = read_tar(cut, |_, _| Ok(())).unwrap_err();
        assert!(e.contains("ends inside"), "{e}");
    }

    #[test]
    fn escaping_entries_are_named() {
        let e = |path: &str, kind, link: Option<&str>| TarEntry {
            path: path.into(),
            kind,
            link: link.map(PathBuf::from),
            size: 0,
        };
        let sym = EntryType::Symlink;
        assert!(refusal(&e("/etc/x", EntryType::Regular, None), Links::Installed).is_some());
        assert!(
            refusal(
                &e("./a/../../x", EntryType::Regular, None),
                Links::Installed
            )
            .is_some()
        );
        assert!(refusal(&e("./usr/lib/x", sym, Some("/etc/x")), Links::Installed).is_none());
        assert!(refusal(&e("./usr/lib/x", sym, Some("/etc/x")), Links::Inside).is_some());
        assert!(refusal(&e("./a/x", sym, Some("../../y")), Links::Inside).is_some());
        assert!(refusal(&e("./a/x", sym, Some("../y")), Links::Inside).is_none());
        assert!(
            refusal(
                &e("./a", EntryType::Link, Some("/etc/shadow")),
                Links::Installed
            )
            .is_some()
        );
        assert!(refusal(&e("./dev", EntryType::Char, None), Links::Inside).is_some());
        assert!(refusal(&e("./dev", EntryType::Char, None), Links::Installed).is_none());
    }
}
