//! Unpacking prebuilt tarballs so that nothing lands outside the directory they are
//! unpacked into: absolute paths, `..`, links that lead out and device files are refused
//! with the entry named. Tarballs are unpacked into a fresh directory first and moved into
//! `${stageDir}` only when all of them unpacked, so a bad one changes nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{tarball}: entry `{entry}` refused: {why}")]
    Unsafe {
        tarball: String,
        entry: String,
        why: String,
    },
    #[error("{tarball}: {why}")]
    Broken { tarball: String, why: String },
    #[error("cannot move unpacked files into {dir}: {why}")]
    Move { dir: String, why: String },
}

/// Unpacks the gzip tarball `file` into `dir`. Returns the number of entries written.
pub fn unpack(file: &Path, dir: &Path) -> Result<u64, UnpackError> {
    let tarball = file.display().to_string();
    let broken = |why: String| UnpackError::Broken {
        tarball: tarball.clone(),
        why,
    };
    let f = fs::File::open(file).map_err(|e| broken(e.to_string()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(io::BufReader::new(f)));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut count = 0;
    for entry in archive.entries().map_err(|e| broken(e.to_string()))? {
        let mut entry = entry.map_err(|e| broken(format!("not a readable tarball: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| broken(format!("an entry has an unreadable name: {e}")))?
            .into_owned();
        let unsafe_entry = |why: &str| UnpackError::Unsafe {
            tarball: tarball.clone(),
            entry: path.display().to_string(),
            why: why.to_string(),
        };
        if crate::archive::relative_parts(&path).is_ok_and(|p| p.is_empty()) {
            continue;
        }
        let checked = crate::archive::TarEntry {
            path: path.clone(),
            kind: entry.header().entry_type(),
            link: entry
                .link_name()
                .map_err(|e| broken(e.to_string()))?
                .map(|l| l.into_owned()),
            size: entry.size(),
        };
        if let Some(why) = crate::archive::refusal(&checked, crate::archive::Links::Inside) {
            return Err(unsafe_entry(&why));
        }
        // The tar crate also checks, on the real file system, that the entry's parent
        // directory (after any symlinks unpacked so far) is inside `dir`.
        let written = entry.unpack_in(dir).map_err(|e| {
            if e.to_string().contains("outside of") {
                unsafe_entry("it would be written through a link that leads out")
            } else {
                broken(format!("{}: {e}", path.display()))
            }
        })?;
        if !written {
            return Err(unsafe_entry("it would be written outside the directory"));
        }
        count += 1;
    }
    check_links(dir, dir).map_err(|(entry, why)| UnpackError::Unsafe {
        tarball,
        entry,
        why,
    })?;
    Ok(count)
}

/// Every symlink under `dir` that resolves must resolve inside `root` — the check that
/// catches chains of links the per-entry test reads one at a time.
fn check_links(root: &Path, dir: &Path) -> Result<(), (String, String)> {
    let canonical_root = fs::canonicalize(root).map_err(|e| (String::new(), e.to_string()))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| (d.display().to_string(), e.to_string()))?;
        for e in entries.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_symlink()
                && let Ok(real) = fs::canonicalize(&p)
                && !real.starts_with(&canonical_root)
            {
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                return Err((rel, "its link chain leads out of the directory".into()));
            }
        }
    }
    Ok(())
}

/// Moves everything under `from` into `to` (made if missing), merging directories and
/// replacing files. Clashes (a directory where a file is, or the reverse) are found before
/// anything moves.
pub fn move_into(from: &Path, to: &Path) -> Result<(), UnpackError> {
    let err = |why: String| UnpackError::Move {
        dir: to.display().to_string(),
        why,
    };
    let mut moves = Vec::new();
    plan_moves(from, to, &mut moves).map_err(err)?;
    fs::create_dir_all(to).map_err(|e| err(e.to_string()))?;
    for (src, dst) in moves {
        if let Ok(m) = fs::symlink_metadata(&dst)
            && !m.is_dir()
        {
            fs::remove_file(&dst).map_err(|e| err(format!("{}: {e}", dst.display())))?;
        }
        fs::rename(&src, &dst).map_err(|e| err(format!("{}: {e}", dst.display())))?;
    }
    Ok(())
}

fn plan_moves(from: &Path, to: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), String> {
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let src = e.path();
        let dst = to.join(e.file_name());
        let src_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        match fs::symlink_metadata(&dst) {
            Err(_) => out.push((src, dst)),
            Ok(m) if m.is_dir() && src_dir => plan_moves(&src, &dst, out)?,
            Ok(m) if m.is_dir() => {
                return Err(format!(
                    "{} is a directory there, but a file in the tarball",
                    dst.display()
                ));
            }
            Ok(_) if src_dir => {
                return Err(format!(
                    "{} is a file there, but a directory in the tarball",
                    dst.display()
                ));
            }
            Ok(_) => out.push((src, dst)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType;

    /// A raw tar entry: path, type, link target, data.
    type Raw<'a> = (&'a str, EntryType, &'a str, &'a [u8]);

    /// A gzip tarball of raw entries: (path, type, link target, data). Paths are written
    /// into the header bytes as given, so `../` and absolute names get through.
    fn tarball(entries: &[Raw]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                let l = &mut h.as_old_mut().linkname;
                l[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    fn try_unpack(entries: &[Raw]) -> (tempfile::TempDir, String) {
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("t.tar.gz");
        fs::write(&file, tarball(entries)).unwrap();
        let out = work.path().join("a/b/out");
        fs::create_dir_all(&out).unwrap();
        let r = unpack(&file, &out);
        let msg = match r {
            Ok(n) => format!("ok {n}"),
            Err(e) => e.to_string(),
        };
        (work, msg)
    }

    /// Every file under `dir`, relative.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn plain_tarballs_unpack() {
        let (w, msg) = try_unpack(&[
            ("./", EntryType::Directory, "", b""),
            ("./bin/", EntryType::Directory, "", b""),
            ("./bin/tool", EntryType::Regular, "", b"#!/bin/sh\n"),
            ("lib/libx.so.1", EntryType::Regular, "", b"elf"),
            ("lib/libx.so", EntryType::Symlink, "libx.so.1", b""),
            ("share/x/../../lib", EntryType::Regular, "", b""),
        ]);
        // The last entry has `..` even though it would land inside: refused all the same.
        assert!(msg.contains("`..`"), "{msg}");
        let (w2, msg) = try_unpack(&[
            ("./bin/tool", EntryType::Regular, "", b"#!/bin/sh\n"),
            ("lib/libx.so.1", EntryType::Regular, "", b"elf"),
            ("lib/libx.so", EntryType::Symlink, "libx.so.1", b""),
            ("lib/up", EntryType::Symlink, "../bin/tool", b""),
        ]);
        assert_eq!(msg, "ok 4");
        let out = w2.path().join("a/b/out");
        assert_eq!(
            files(&out),
            [
                "bin",
                "bin/tool",
                "lib",
                "lib/libx.so",
                "lib/libx.so.1",
                "lib/up"
            ]
        );
        assert_eq!(fs::read(out.join("lib/libx.so")).unwrap(), b"elf");
        drop(w);
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_lands_outside() {
        let cases: &[(&[Raw], &str)] = &[
            (
                &[("../evil", EntryType::Regular, "", b"x")],
                "contains `..`",
            ),
            (
                &[("/tmp/packyard-evil", EntryType::Regular, "", b"x")],
                "absolute path",
            ),
            (
                &[("link", EntryType::Symlink, "/etc", b"")],
                "link target is an absolute path",
            ),
            (
                &[("d/link", EntryType::Symlink, "../../x", b"")],
                "leads out",
            ),
            (
                // A link that looks inside but goes through another one.
                &[
                    ("b", EntryType::Symlink, "x/..", b""),
                    ("x/", EntryType::Directory, "", b""),
                    ("up", EntryType::Symlink, "b/..", b""),
                ],
                "link chain leads out",
            ),
            (
                &[("h", EntryType::Link, "../../../etc/passwd", b"")],
                "hard link target",
            ),
            (&[("dev", EntryType::Char, "", b"")], "devices"),
        ];
        for (entries, want) in cases {
            let (w, msg) = try_unpack(entries);
            assert!(msg.contains(want), "{entries:?}: {msg}");
            // Nothing beside the output directory or above it.
            let outside: Vec<String> = files(w.path())
                .into_iter()
                .filter(|f| !f.starts_with("a/b/out/"))
                .collect();
            assert_eq!(outside, ["a", "a/b", "a/b/out", "t.tar.gz"], "{entries:?}");
            assert!(!Path::new("/tmp/packyard-evil").exists());
        }
    }

    #[test]
    fn a_file_written_through_a_link_that_leads_out_is_refused() {
        // `l -> .` is fine; then writing through a chain must stay inside. Here the chain
        // `c -> d/..` with `d -> ..`: d is refused outright.
        let (_w, msg) = try_unpack(&[
            ("d", EntryType::Symlink, "..", b""),
            ("d/x", EntryType::Regular, "", b"x"),
        ]);
        assert!(msg.contains("leads out"), "{msg}");
    }

    #[test]
    fn moving_merges_and_checks_clashes_first() {
        let w = tempfile::tempdir().unwrap();
        let (from, to) = (w.path().join("from"), w.path().join("to"));
        fs::create_dir_all(from.join("lib/sub")).unwrap();
        fs::write(from.join("lib/sub/new"), "new").unwrap();
        fs::write(from.join("lib/same"), "2").unwrap();
        fs::create_dir_all(to.join("lib")).unwrap();
        fs::write(to.join("lib/same"), "1").unwrap();
        fs::write(to.join("lib/keep"), "k").unwrap();
        move_into(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(to.join("lib/same")).unwrap(), "2");
        assert_eq!(fs::read_to_string(to.join("lib/sub/new")).unwrap(), "new");
        assert_eq!(fs::read_to_string(to.join("lib/keep")).unwrap(), "k");
        // A clash moves nothing.
        fs::create_dir_all(from.join("a")).unwrap();
        fs::write(from.join("a/f"), "f").unwrap();
        fs::create_dir_all(from.join("lib/keep")).unwrap();
        let e = move_into(&from, &to).unwrap_err();
        assert!(e.to_string().contains("is a file there"), "{e}");
        assert!(!to.join("a").exists());
    }
}
