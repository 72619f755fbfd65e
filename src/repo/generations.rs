//! Index directories replaced as a whole. A new set of index files (`repodata/`, or a
//! suite's `dists/<suite>/`) goes to a fresh generation — objects under the sibling prefix
//! `.<base>.gen-<hash>/` — and the store's [`Generation`] record names it in the batch
//! that clears the pending mark; a reader, or a crash, sees the old set or the new one,
//! never a mix, and every index names files that exist. The generation before stays for
//! readers in flight; the one before that goes once the new one is named.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use crate::blobs::{BlobError, Blobs, Body};
use crate::store::Generation;

/// `dir`'s parent key and base name: `r/yum/el9/repodata` → (`r/yum/el9`, `repodata`).
fn split(dir: &str) -> (&str, &str) {
    dir.rsplit_once('/').unwrap_or(("", dir))
}

fn under(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The generation name of `files` in directory `base`: `.<base>.gen-<16 hex>`, hashing
/// every name and content (the `gen-` keeps `deb12`'s generations apart from those of a
/// sibling named `deb12.1`).
pub fn name(base: &str, files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!(".{base}.gen-{:.16x}", h.finalize())
}

/// The key of a generation's file: `r/yum/el9/.repodata.gen-X/repomd.xml`.
pub fn file_key(dir: &str, generation: &str, file: &str) -> String {
    under(&under(split(dir).0, generation), file)
}

/// The keys that may hold `file` of generation `g` of directory `dir`, in the order to
/// try them: the generation's own, and for a file it carries, the generation before's
/// (where a carried file stays on backends without direct readers).
pub fn read_keys(dir: &str, g: &Generation, file: &str) -> Vec<String> {
    let mut keys = vec![file_key(dir, &g.name, file)];
    if let Some(before) = g
        .previous
        .as_deref()
        .filter(|_| g.carried.iter().any(|c| c == file))
    {
        keys.push(file_key(dir, before, file));
    }
    keys
}

/// The generation direct readers see in directory `dir` (a key), as a record: what a
/// data directory written before the store named generations holds instead of one.
pub fn shown(blobs: &dyn Blobs, dir: &str) -> Result<Option<Generation>, BlobError> {
    let Some(name) = blobs.shown(dir) else {
        return Ok(None);
    };
    let prefix = file_key(dir, &name, "");
    let prefix = prefix.trim_end_matches('/');
    let files = blobs
        .list(prefix)?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}/")).map(str::to_string))
        .collect();
    Ok(Some(Generation {
        name,
        files,
        carried: vec![],
        previous: None,
    }))
}

/// Writes `files` as the next generation of directory `dir` (a key, `<repo>/...`) whose
/// current one is `current` (from the store; or, for data written before generations were
/// recorded, what the blobs show), durably. Returns the record to store and whether the
/// set changed; an unchanged set writes nothing. Files of the current set for which
/// `carry` says yes (names that never change content, like `<sha256>-primary.xml.gz` or
/// `by-hash/SHA256/<sha256>`) stay in the new one for one more generation, so a client
/// that read the old `repomd.xml` or `InRelease` a moment ago still finds what it names.
pub fn write(
    blobs: &dyn Blobs,
    dir: &str,
    current: Option<&Generation>,
    files: &[(String, Vec<u8>)],
    carry: &dyn Fn(&str) -> bool,
) -> Result<(Generation, bool), BlobError> {
    let base = split(dir).1;
    let name = name(base, files);
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    // Data written before the store named generations: the current set is what the
    // blobs show, and every file in it may be carried.
    let shown = match current {
        Some(_) => None,
        None => shown(blobs, dir)?,
    };
    let current = current.or(shown.as_ref());
    if let Some(cur) = current
        && cur.name == name
    {
        let mut same = cur.clone();
        if shown.is_some() {
            same.files = names.iter().map(|n| n.to_string()).collect();
        }
        return Ok((same, false));
    }
    // What to write: each file's bytes, or a copy of an object with the same bytes —
    // the current generation's carried files, and on a file system (links) a by-hash copy
    // of a file put here. On an object store a copy is a request like a put, and one that
    // waited for a put would be a second round: files are put, and all go at once.
    enum Write<'a> {
        Put(String, &'a [u8]),
        Copy(String, String),
    }
    let mut first: HashMap<&[u8], String> = HashMap::new();
    let mut round: Vec<Write> = Vec::new();
    let mut links: Vec<Write> = Vec::new();
    for (file, bytes) in files {
        let key = file_key(dir, &name, file);
        match first.get(bytes.as_slice()) {
            Some(same) if blobs.is_local() => links.push(Write::Copy(same.clone(), key)),
            _ => {
                first.insert(bytes, key.clone());
                round.push(Write::Put(key, bytes));
            }
        }
    }
    let mut carried = Vec::new();
    if let Some(cur) = current {
        for file in &cur.files {
            if carry(file) && !names.contains(file.as_str()) && !cur.carried.contains(file) {
                // Direct readers of a directory find it there (a hard link); elsewhere
                // a carried file is read where it is, in the generation before
                // ([`read_keys`]), and a copy would be one more request per file.
                if blobs.has_direct_readers() {
                    let (from, to) = (file_key(dir, &cur.name, file), file_key(dir, &name, file));
                    round.push(Write::Copy(from, to));
                }
                carried.push(file.clone());
            }
        }
    }
    let write = |w: &Write| match w {
        // Content-named (the generation's name hashes every file): a leftover of a
        // crashed run under this name already holds these bytes.
        Write::Put(key, bytes) => blobs.put_new(key, Body::Bytes(bytes), None).map(drop),
        Write::Copy(from, to) => blobs.copy(from, to),
    };
    crate::blobs::for_each(blobs, &round, write)?;
    crate::blobs::for_each(blobs, &links, write)?;
    // Everything durable before the store names it.
    blobs.flush()?;
    let mut all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    all.extend(carried.iter().cloned());
    all.sort();
    Ok((
        Generation {
            name,
            files: all,
            carried,
            previous: current.map(|c| c.name.clone()),
        },
        true,
    ))
}

/// After the store names `now` for `dir`: direct readers are shown it, and the
/// generation `before` (the record it replaced) kept for its readers is dropped, unless
/// it is one of the two kept.
pub fn switched(
    blobs: &dyn Blobs,
    dir: &str,
    now: &Generation,
    before: Option<&Generation>,
) -> Result<(), BlobError> {
    blobs.show(dir, &now.name)?;
    if let Some(old) = dropped(now, before) {
        blobs.remove_all(&generation_key(dir, old))?;
    }
    Ok(())
}

/// The generation that naming `now` in place of `before` drops: the one `before` kept
/// for its readers, unless it is one of the two kept now.
pub fn dropped<'a>(now: &Generation, before: Option<&'a Generation>) -> Option<&'a str> {
    before
        .and_then(|b| b.previous.as_deref())
        .filter(|&old| old != now.name && Some(old) != now.previous.as_deref())
}

/// The key prefix of generation `name` of directory `dir` (a key).
pub fn generation_key(dir: &str, name: &str) -> String {
    under(split(dir).0, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{FsBlobs, MemBlobs};

    /// One generation after another, as a publish does it: write, name, switch.
    fn next(
        b: &dyn Blobs,
        current: &mut Option<Generation>,
        files: &[(String, Vec<u8>)],
        carry: &dyn Fn(&str) -> bool,
    ) -> bool {
        let (g, changed) = write(b, "r/repodata", current.as_ref(), files, carry).unwrap();
        switched(b, "r/repodata", &g, current.as_ref()).unwrap();
        *current = Some(g);
        changed
    }

    /// What a reader through the store gets for `file` of the current generation.
    fn read(b: &dyn Blobs, g: &Option<Generation>, file: &str) -> Option<Vec<u8>> {
        let g = g.as_ref().unwrap();
        read_keys("r/repodata", g, file)
            .iter()
            .find_map(|k| b.get(k).unwrap())
    }

    fn generations_swap_whole(b: &dyn Blobs) {
        let one = vec![("repomd.xml".to_string(), b"one".to_vec())];
        let two = vec![
            ("repomd.xml".to_string(), b"two".to_vec()),
            ("sub/x".to_string(), b"x".to_vec()),
        ];
        let three = vec![("repomd.xml".to_string(), b"three".to_vec())];
        let mut g = None;
        assert!(next(b, &mut g, &one, &|_| false));
        assert!(
            !next(b, &mut g, &one, &|_| false),
            "unchanged set rewritten"
        );
        assert!(next(b, &mut g, &two, &|_| false));
        assert_eq!(read(b, &g, "repomd.xml").unwrap(), b"two");
        assert_eq!(read(b, &g, "sub/x").unwrap(), b"x");
        assert!(next(b, &mut g, &three, &|_| false));
        assert_eq!(read(b, &g, "repomd.xml").unwrap(), b"three");
        // The current and the previous generation remain.
        let gens: BTreeSet<String> = b
            .list("r")
            .unwrap()
            .iter()
            .map(|k| k.split('/').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(gens.len(), 2, "{gens:?}");
    }

    fn content_named_files_stay_one_generation_longer(b: &dyn Blobs) {
        let set = |n: &str| {
            vec![
                ("repomd.xml".to_string(), n.as_bytes().to_vec()),
                (format!("{n}-primary.xml.gz"), n.as_bytes().to_vec()),
            ]
        };
        let hashed = |name: &str| name.ends_with("-primary.xml.gz");
        let mut g = None;
        next(b, &mut g, &set("a"), &hashed);
        next(b, &mut g, &set("b"), &hashed);
        // A reader of the old repomd.xml still finds what it named (where there are
        // direct readers, in the new generation itself; elsewhere, where it was)...
        assert!(read(b, &g, "a-primary.xml.gz").is_some());
        let own = file_key("r/repodata", &g.as_ref().unwrap().name, "a-primary.xml.gz");
        assert_eq!(b.exists(&own).unwrap(), b.has_direct_readers());
        assert!(read(b, &g, "b-primary.xml.gz").is_some());
        // ...for one generation only.
        next(b, &mut g, &set("c"), &hashed);
        assert!(read(b, &g, "a-primary.xml.gz").is_none());
        assert!(read(b, &g, "b-primary.xml.gz").is_some());
        assert_eq!(read(b, &g, "repomd.xml").unwrap(), b"c");
    }

    #[test]
    fn in_memory() {
        generations_swap_whole(&MemBlobs::default());
        content_named_files_stay_one_generation_longer(&MemBlobs::default());
    }

    #[test]
    fn on_files_the_directory_shows_the_current_generation() {
        let dir = tempfile::tempdir().unwrap();
        generations_swap_whole(&FsBlobs::new(dir.path().join("a")));
        let b = FsBlobs::new(dir.path().join("b"));
        content_named_files_stay_one_generation_longer(&b);
        assert_eq!(
            std::fs::read(dir.path().join("b/r/repodata/repomd.xml")).unwrap(),
            b"c"
        );
    }

    #[test]
    fn a_tree_written_before_generations_were_recorded_is_carried_on() {
        // The old layout: a generation directory and the symlink, no record.
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        let old = vec![
            ("repomd.xml".to_string(), b"a".to_vec()),
            ("a-primary.xml.gz".to_string(), b"a".to_vec()),
        ];
        let gen_a = name("repodata", &old);
        for (f, bytes) in &old {
            b.put_now(&file_key("r/repodata", &gen_a, f), bytes)
                .unwrap();
        }
        b.show("r/repodata", &gen_a).unwrap();
        // The same set again: nothing written, a record to store.
        let (g, changed) = write(&b, "r/repodata", None, &old, &|_| true).unwrap();
        assert!(!changed);
        assert_eq!(g.name, gen_a);
        assert_eq!(g.files, ["a-primary.xml.gz", "repomd.xml"]);
        // A new set carries the old content-named file.
        let new = vec![("repomd.xml".to_string(), b"b".to_vec())];
        let carry = |n: &str| n.ends_with(".gz");
        let (g, changed) = write(&b, "r/repodata", None, &new, &carry).unwrap();
        assert!(changed);
        assert_eq!(g.carried, ["a-primary.xml.gz"]);
        assert_eq!(g.previous.as_deref(), Some(gen_a.as_str()));
    }
}
