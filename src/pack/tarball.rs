//! Deterministic tar streams from walked entries: sorted, fixed mtime, numeric owner 0
//! with names (root unless `package.owner.<path>` says otherwise), GNU long names.
//! Used for the `.tar.gz` and for a DEB's `data.tar` and `control.tar`.

use std::io::{self, Write};

use tar::{EntryType, Header};

use super::compress::Encoder;
use super::spec::Compression;
use super::walk::{Entry, EntryKind};

pub struct TarStyle<'a> {
    /// dpkg-deb's names for DEB members: a `./` entry first and every path under `./`.
    /// Tarballs hold plain relative paths.
    pub dpkg: bool,
    pub mtime: u64,
    /// The owner and group names of an entry, by its prefix-relative path.
    pub owner: &'a dyn Fn(&str) -> (&'a str, &'a str),
}

/// Writes `entries` (already in order) as a tar stream into `w`; `on_bytes` sees each
/// file's size as it is written (for progress).
pub fn write<W: Write>(
    w: W,
    entries: &[Entry],
    style: &TarStyle,
    on_bytes: &dyn Fn(u64),
) -> io::Result<W> {
    let mut b = tar::Builder::new(w);
    let lead = if style.dpkg { "./" } else { "" };
    if style.dpkg {
        let h = header(EntryType::Directory, 0o755, style, ("root", "root"));
        append(&mut b, h, b"./", None, &[])?;
    }
    for e in entries {
        let owner = (style.owner)(&e.path);
        let path = format!("{lead}{}", e.path);
        match &e.kind {
            EntryKind::Dir => {
                let h = header(EntryType::Directory, e.mode, style, owner);
                append(&mut b, h, format!("{path}/").as_bytes(), None, &[])?;
            }
            EntryKind::Symlink { target } => {
                let h = header(EntryType::Symlink, 0o777, style, owner);
                append(&mut b, h, path.as_bytes(), Some(target.as_bytes()), &[])?;
            }
            EntryKind::File {
                link_to: Some(first),
                ..
            } => {
                let h = header(EntryType::Link, e.mode, style, owner);
                let target = format!("{lead}{first}");
                append(&mut b, h, path.as_bytes(), Some(target.as_bytes()), &[])?;
            }
            EntryKind::File { data, .. } => {
                let h = header(EntryType::Regular, e.mode, style, owner);
                append(&mut b, h, path.as_bytes(), None, data)?;
                on_bytes(data.len() as u64);
            }
        }
    }
    b.into_inner()
}

/// A whole compressed tar stream in memory.
pub fn compressed(
    entries: &[Entry],
    style: &TarStyle,
    compression: Compression,
    on_bytes: &dyn Fn(u64),
) -> io::Result<Vec<u8>> {
    let enc = Encoder::new(Vec::new(), compression)?;
    write(enc, entries, style, on_bytes)?.finish()
}

/// Appends one member with its name (and link target) stored byte for byte, as GNU tar
/// and dpkg-deb write them: `./usr/bin/x`, directories with a trailing `/`, names over
/// 100 bytes in a preceding `././@LongLink` member. (The tar crate's own path setters
/// normalise `./` away.)
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: &[u8],
) -> io::Result<()> {
    const FIELD: usize = 100;
    if name.len() > FIELD {
        long_member(b, EntryType::GNULongName, name)?;
    }
    if let Some(link) = link
        && link.len() > FIELD
    {
        long_member(b, EntryType::GNULongLink, link)?;
    }
    {
        let old = h.as_old_mut();
        let n = name.len().min(FIELD);
        old.name = [0; FIELD];
        old.name[..n].copy_from_slice(&name[..n]);
        old.linkname = [0; FIELD];
        if let Some(link) = link {
            let n = link.len().min(FIELD);
            old.linkname[..n].copy_from_slice(&link[..n]);
        }
    }
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data)
}

fn long_member<W: Write>(b: &mut tar::Builder<W>, kind: EntryType, value: &[u8]) -> io::Result<()> {
    let mut h = Header::new_gnu();
    let name = b"././@LongLink";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    let mut body = value.to_vec();
    body.push(0);
    h.set_size(body.len() as u64);
    h.set_cksum();
    b.append(&h, body.as_slice())
}

fn header(kind: EntryType, mode: u32, style: &TarStyle, owner: (&str, &str)) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(style.mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    // Names that do not fit the header are left out; dpkg and tar then use the ids.
    let _ = h.set_username(owner.0);
    let _ = h.set_groupname(owner.1);
    h
}
