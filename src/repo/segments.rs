//! Compressed index files made of cached segments, so adding one package recompresses a
//! small piece instead of the whole file. A document is a head, many parts (one per
//! package, in order) and a tail. Parts are grouped into segments at content-defined
//! boundaries ([`Cuts`]: a part ends a segment when its identity digest says so), so a new
//! package changes only the segment it falls in. Each segment is compressed on its own —
//! gzip members, xz streams and zstd frames may be concatenated, and every reader (zlib,
//! liblzma, libzstd as apt, libsolv and librepo use them) reads the whole — and cached
//! under the digest of its parts' identities. The plain file's sha256, which
//! `open-checksum` and APT's `Release` need, is [`plain_sha256`]: callers hash while
//! another thread compresses.

use sha2::{Digest, Sha256};

use crate::pack::compress;
use crate::pack::spec::{Algorithm, Compression};

/// On average one part in this many ends a segment.
const AVERAGE_PARTS: u64 = 32;
/// A segment never holds more parts than this.
const MAX_PARTS: usize = 256;

/// A built document, and the segments it was made of.
pub struct Built {
    pub compressed: Vec<u8>,
    pub plain_size: u64,
    /// Segments compressed for this build (not in `known`), by key.
    pub added: Vec<(String, Vec<u8>)>,
    /// The keys of every segment this build used, old and new.
    pub used: Vec<String>,
}

/// Compressed segments of earlier builds, by key.
pub type Known = crate::store::Segments;

/// What the builds of one index tree did with segments: those compressed anew, and the
/// keys of all they used (the others can go).
#[derive(Default)]
pub struct Usage {
    pub added: Vec<(String, Vec<u8>)>,
    pub used: Vec<String>,
}

impl Usage {
    /// Takes over `built`'s segments, leaving its compressed bytes.
    pub fn take(&mut self, built: &mut Built) {
        self.added.append(&mut built.added);
        self.used.append(&mut built.used);
    }
}

/// An index tree's files (relative names → bytes), and what building them did with
/// segments.
pub struct Rendered {
    pub files: Vec<(String, Vec<u8>)>,
    pub usage: Usage,
}

/// The SHA-256 of `head + parts + tail`, as hex: a document's plain checksum
/// (`open-checksum`), computed apart from [`build`] so the two can run side by side.
pub fn plain_sha256(head: &[u8], parts: &[&[u8]], tail: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(head);
    for b in parts {
        h.update(b);
    }
    h.update(tail);
    format!("{:x}", h.finalize())
}

/// Where parts are cut into segments: the end of each segment (exclusive) and the digest
/// of its parts' identities. The same for every document of the same packages, so it is
/// worked out once for all of them.
pub struct Cuts(Vec<(usize, String)>);

impl Cuts {
    /// The cuts for parts with these identities (digests: uniformly spread bytes).
    pub fn new(identities: &[&[u8; 16]]) -> Cuts {
        let mut cuts = Vec::new();
        let mut digest = Sha256::new();
        let mut count = 0;
        for (i, id) in identities.iter().enumerate() {
            digest.update(id);
            count += 1;
            let last = i + 1 == identities.len();
            let low = u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]]);
            if last || low.is_multiple_of(AVERAGE_PARTS) || count >= MAX_PARTS {
                let done = std::mem::replace(&mut digest, Sha256::new());
                cuts.push((i + 1, format!("{:x}", done.finalize())));
                count = 0;
            }
        }
        Cuts(cuts)
    }
}

/// Bumped whenever the rendering of entries changes, so cached segments of the old
/// rendering are not reused.
const RENDERING: &str = "1";

/// The cache key of a segment: compression, rendering and the digest of its parts'
/// identities (an identity changes whenever its bytes can: hashing identities is much
/// cheaper than hashing the bytes).
fn segment_key(c: Compression, doc: &str, identities: &str) -> String {
    format!(
        "{doc}-{:?}{}-r{RENDERING}-{identities}",
        c.algorithm, c.level
    )
    .to_lowercase()
}

fn bad_xz(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("xz segment: {why}"),
    )
}

/// An xz multibyte integer at `at`; returns it and the position after it.
fn read_mbi(b: &[u8], mut at: usize) -> std::io::Result<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(at).ok_or_else(|| bad_xz("truncated index"))?;
        at += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, at));
        }
    }
    Err(bad_xz("integer too long"))
}

fn write_mbi(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn crc32(b: &[u8]) -> [u8; 4] {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum().to_le_bytes()
}

/// Joins whole .xz streams (one per segment, same check type) into a single stream: their
/// blocks in order, then one index and footer (xz file format 1.0.4, §2.1 and §4).
fn join_xz(streams: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let first = streams.first().ok_or_else(|| bad_xz("nothing to join"))?;
    if first.len() < 24 {
        return Err(bad_xz("too short"));
    }
    let flags = [first[6], first[7]];
    let mut out = first[..12].to_vec();
    let mut records: Vec<(u64, u64)> = Vec::new();
    for s in streams {
        let n = s.len();
        if n < 24 || s[6..8] != flags || &s[n - 2..] != b"YZ" {
            return Err(bad_xz("not a stream of the same kind"));
        }
        let backward = u32::from_le_bytes([s[n - 8], s[n - 7], s[n - 6], s[n - 5]]);
        let index_size = (backward as usize + 1) * 4;
        let index_start = n
            .checked_sub(12 + index_size)
            .filter(|&i| i >= 12)
            .ok_or_else(|| bad_xz("bad backward size"))?;
        let index = &s[index_start..n - 12];
        if index[0] != 0 {
            return Err(bad_xz("no index indicator"));
        }
        let (count, mut at) = read_mbi(index, 1)?;
        for _ in 0..count {
            let (unpadded, next) = read_mbi(index, at)?;
            let (uncompressed, next) = read_mbi(index, next)?;
            at = next;
            records.push((unpadded, uncompressed));
        }
        out.extend_from_slice(&s[12..index_start]);
    }
    let mut index = vec![0u8];
    write_mbi(&mut index, records.len() as u64);
    for (unpadded, uncompressed) in &records {
        write_mbi(&mut index, *unpadded);
        write_mbi(&mut index, *uncompressed);
    }
    while index.len() % 4 != 0 {
        index.push(0);
    }
    let sum = crc32(&index);
    index.extend_from_slice(&sum);
    let backward = (index.len() / 4 - 1) as u32;
    out.extend_from_slice(&index);
    let mut footer_body = backward.to_le_bytes().to_vec();
    footer_body.extend_from_slice(&flags);
    out.extend_from_slice(&crc32(&footer_body));
    out.extend_from_slice(&footer_body);
    out.extend_from_slice(b"YZ");
    Ok(out)
}

/// Builds document `doc` (`primary`, `Packages`...) as `head + parts + tail`, compressed
/// with `c`, reusing the `known` segments. `cuts` come from the parts' identities, which
/// must change whenever their bytes do.
pub fn build(
    doc: &str,
    head: &[u8],
    parts: &[&[u8]],
    cuts: &Cuts,
    tail: &[u8],
    c: Compression,
    known: &Known,
) -> std::io::Result<Built> {
    let mut plain_size = (head.len() + tail.len()) as u64;
    plain_size += parts.iter().map(|b| b.len() as u64).sum::<u64>();
    // Head and tail are small and change with the count: compressed every time.
    let head = compress::compress(head, c)?;
    let tail = compress::compress(tail, c)?;
    let mut added: Vec<(String, Vec<u8>)> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let mut segment: Vec<u8> = Vec::new();
    let mut start = 0;
    for (end, identities) in &cuts.0 {
        let k = segment_key(c, doc, identities);
        // Only a segment seen for the first time is gathered and compressed.
        if !known.contains_key(&k) && !added.iter().any(|(a, _)| *a == k) {
            let range = parts.get(start..*end).ok_or_else(|| {
                std::io::Error::other(format!("{doc}: cuts do not fit its parts"))
            })?;
            segment.clear();
            for b in range {
                segment.extend_from_slice(b);
            }
            added.push((k.clone(), compress::compress(&segment, c)?));
        }
        used.push(k);
        start = *end;
    }
    let piece = |k: &String| -> &[u8] {
        known
            .get(k)
            .or_else(|| added.iter().find(|(a, _)| a == k).map(|(_, b)| b))
            .map_or(&[], Vec::as_slice)
    };
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(used.len() + 2);
    pieces.push(&head);
    pieces.extend(used.iter().map(piece));
    pieces.push(&tail);
    let compressed = match c.algorithm {
        // apt reads only the first of concatenated xz streams: join their blocks into one.
        Algorithm::Xz => join_xz(&pieces)?,
        _ => pieces.concat(),
    };
    Ok(Built {
        compressed,
        plain_size,
        added,
        used,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn id(name: &str) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&Sha256::digest(name.as_bytes())[..16]);
        id
    }

    fn parts(n: usize) -> Vec<([u8; 16], Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    id(&format!("pkg-{i:05}")),
                    format!("<package {i}/>\n").into_bytes(),
                )
            })
            .collect()
    }

    fn split(parts: &[([u8; 16], Vec<u8>)]) -> (Vec<&[u8; 16]>, Vec<&[u8]>) {
        parts.iter().map(|(k, b)| (k, b.as_slice())).unzip()
    }

    fn decode(c: Algorithm, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Algorithm::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            // One stream, as apt reads it (not a multi-stream decoder).
            Algorithm::Xz => {
                xz2::read::XzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Algorithm::Zstd => out = zstd::decode_all(bytes).unwrap(),
        }
        out
    }

    #[test]
    fn documents_with_the_same_parts_do_not_share_segments() {
        let c = Compression {
            algorithm: Algorithm::Gzip,
            level: 6,
        };
        let known = Known::new();
        let cuts = Cuts::new(&[&id("p1")]);
        let a = build("primary", b"", &[b"<primary/>"], &cuts, b"", c, &known).unwrap();
        let b = build("other", b"", &[b"<other/>"], &cuts, b"", c, &known).unwrap();
        assert_ne!(a.used, b.used);
        assert_eq!(decode(Algorithm::Gzip, &a.compressed), b"<primary/>");
        assert_eq!(decode(Algorithm::Gzip, &b.compressed), b"<other/>");
    }

    #[test]
    fn segments_concatenate_and_adding_one_part_recompresses_little() {
        for algorithm in [Algorithm::Gzip, Algorithm::Xz, Algorithm::Zstd] {
            let c = Compression {
                algorithm,
                level: 6,
            };
            let mut all = parts(1000);
            let (keys, refs) = split(&all);
            let cuts = Cuts::new(&keys);
            let first = build(
                "doc",
                b"<head>\n",
                &refs,
                &cuts,
                b"</head>",
                c,
                &Known::new(),
            )
            .unwrap();
            let mut plain = b"<head>\n".to_vec();
            for (_, b) in &all {
                plain.extend_from_slice(b);
            }
            plain.extend_from_slice(b"</head>");
            assert_eq!(decode(algorithm, &first.compressed), plain, "{algorithm:?}");
            assert_eq!(first.plain_size, plain.len() as u64);
            assert_eq!(
                plain_sha256(b"<head>\n", &refs, b"</head>"),
                format!("{:x}", Sha256::digest(&plain))
            );
            let segments = first.used.len();
            assert_eq!(first.added.len(), segments);
            assert!((10..=100).contains(&segments), "{segments} segments");

            // One more part in the middle: one segment is new, the rest come from the cache.
            all.insert(500, (id("pkg-00499a"), b"<package new/>\n".to_vec()));
            let (keys, refs) = split(&all);
            let known: Known = first.added.into_iter().collect();
            let second = build(
                "doc",
                b"<head>\n",
                &refs,
                &Cuts::new(&keys),
                b"</head>",
                c,
                &known,
            )
            .unwrap();
            assert!(
                second.added.len() <= 2,
                "{} segments recompressed",
                second.added.len()
            );
            assert!(
                second
                    .used
                    .iter()
                    .all(|k| known.contains_key(k) || second.added.iter().any(|(a, _)| a == k))
            );
            let text = decode(algorithm, &second.compressed);
            assert!(String::from_utf8(text).unwrap().contains("<package new/>"));
        }
    }
}
