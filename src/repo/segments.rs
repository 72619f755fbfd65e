//! Compressed index files made of cached segments, so adding one package recompresses a
//! small piece instead of the whole file. A document is a head, many parts (one per
//! package, in order) and a tail. Parts are grouped into segments at content-defined
//! boundaries (a part ends a segment when its key hashes so), so a new package changes
//! only the segment it falls in. Each segment is compressed on its own — gzip members,
//! xz streams and zstd frames may be concatenated, and every reader (zlib, liblzma,
//! libzstd as apt, libsolv and librepo use them) reads the whole — and cached by the hash
//! of its plain bytes. The plain file's size and sha256 are computed over everything, as
//! `open-checksum` and APT's `Release` need.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::pack::compress;
use crate::pack::spec::{Algorithm, Compression};

/// On average one part in this many ends a segment.
const AVERAGE_PARTS: u64 = 32;
/// A segment never holds more parts than this.
const MAX_PARTS: usize = 256;

/// A built document.
pub struct Built {
    pub compressed: Vec<u8>,
    pub plain_size: u64,
    pub plain_sha256: String,
}

/// Compressed segments known from earlier builds, and those this build adds and uses.
#[derive(Default)]
pub struct Cache {
    known: HashMap<String, Vec<u8>>,
    pub added: Vec<(String, Vec<u8>)>,
    pub used: Vec<String>,
}

impl Cache {
    pub fn new(known: HashMap<String, Vec<u8>>) -> Cache {
        Cache {
            known,
            ..Cache::default()
        }
    }
}

fn fnv(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Bumped whenever the rendering of entries changes, so cached segments of the old
/// rendering are not reused.
const RENDERING: &str = "1";

/// The cache key of a segment: compression, rendering and the identities of its parts
/// (an identity changes whenever its bytes can: hashing identities is much cheaper than
/// hashing the bytes).
fn segment_key(c: Compression, doc: &str, identities: &Sha256) -> String {
    format!(
        "{doc}-{:?}{}-r{RENDERING}-{:x}",
        c.algorithm,
        c.level,
        identities.clone().finalize()
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
fn join_xz(streams: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
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
/// with `c`, reusing `cache`. `parts` are `(identity, bytes)`: the identity decides the
/// segment boundaries and, with `doc`, the cache keys, so it must change whenever the
/// bytes do.
pub fn build(
    doc: &str,
    head: &[u8],
    parts: &[(&str, &[u8])],
    tail: &[u8],
    c: Compression,
    cache: &mut Cache,
) -> std::io::Result<Built> {
    let mut whole = Sha256::new();
    let mut plain_size = 0u64;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    // Head and tail are small and change with the count: compressed every time.
    whole.update(head);
    plain_size += head.len() as u64;
    pieces.push(compress::compress(head, c)?);
    let mut segment: Vec<u8> = Vec::new();
    let mut identities = Sha256::new();
    let mut count = 0;
    for (i, (key, bytes)) in parts.iter().enumerate() {
        whole.update(bytes);
        plain_size += bytes.len() as u64;
        segment.extend_from_slice(bytes);
        identities.update(key.as_bytes());
        identities.update([0]);
        count += 1;
        let last = i + 1 == parts.len();
        if last || fnv(key).is_multiple_of(AVERAGE_PARTS) || count >= MAX_PARTS {
            let k = segment_key(c, doc, &identities);
            identities = Sha256::new();
            let bytes = match cache.known.get(&k) {
                Some(b) => b.clone(),
                None => {
                    let b = compress::compress(&segment, c)?;
                    cache.known.insert(k.clone(), b.clone());
                    cache.added.push((k.clone(), b.clone()));
                    b
                }
            };
            pieces.push(bytes);
            cache.used.push(k);
            segment.clear();
            count = 0;
        }
    }
    whole.update(tail);
    plain_size += tail.len() as u64;
    pieces.push(compress::compress(tail, c)?);
    let compressed = match c.algorithm {
        // apt reads only the first of concatenated xz streams: join their blocks into one.
        Algorithm::Xz => join_xz(&pieces)?,
        _ => pieces.concat(),
    };
    Ok(Built {
        compressed,
        plain_size,
        plain_sha256: format!("{:x}", whole.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn parts(n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("pkg-{i:05}"),
                    format!("<package {i}/>\n").into_bytes(),
                )
            })
            .collect()
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
        let mut cache = Cache::default();
        let a = build("primary", b"", &[("p1", b"<primary/>")], b"", c, &mut cache).unwrap();
        let b = build("other", b"", &[("p1", b"<other/>")], b"", c, &mut cache).unwrap();
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
            let refs: Vec<(&str, &[u8])> = all
                .iter()
                .map(|(k, b)| (k.as_str(), b.as_slice()))
                .collect();
            let mut cache = Cache::default();
            let first = build("doc", b"<head>\n", &refs, b"</head>", c, &mut cache).unwrap();
            let mut plain = b"<head>\n".to_vec();
            for (_, b) in &all {
                plain.extend_from_slice(b);
            }
            plain.extend_from_slice(b"</head>");
            assert_eq!(decode(algorithm, &first.compressed), plain, "{algorithm:?}");
            assert_eq!(first.plain_size, plain.len() as u64);
            assert_eq!(first.plain_sha256, format!("{:x}", Sha256::digest(&plain)));
            let segments = cache.used.len();
            assert!((10..=100).contains(&segments), "{segments} segments");

            // One more part in the middle: one segment is new, the rest come from the cache.
            all.insert(500, ("pkg-00499a".into(), b"<package new/>\n".to_vec()));
            let refs: Vec<(&str, &[u8])> = all
                .iter()
                .map(|(k, b)| (k.as_str(), b.as_slice()))
                .collect();
            let mut cache = Cache::new(cache.added.into_iter().collect());
            let second = build("doc", b"<head>\n", &refs, b"</head>", c, &mut cache).unwrap();
            assert!(
                cache.added.len() <= 2,
                "{} segments recompressed",
                cache.added.len()
            );
            let text = decode(algorithm, &second.compressed);
            assert!(String::from_utf8(text).unwrap().contains("<package new/>"));
        }
    }
}
