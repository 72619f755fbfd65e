//! Damaged packages: generated mutations of the real packed fixture packages (cut short,
//! bytes flipped or zeroed, junk before or after). In process, the package reader must
//! never accept a file whose contents differ from the good one's; through the server,
//! every damaged upload is refused with nothing stored, and what is accepted passes the
//! real tools (`rpm -K` and `rpm2cpio`, `dpkg-deb`, `gzip -t` and `tar`).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::repo::create_nightly;
use crate::serve::{Server, token, tree_files, upload_packed};
use crate::support::{Rng, have_tool, packed};

/// The packed fixture's first file of each kind: (key, bytes) for `.rpm`, `.deb`, `.tar.gz`.
fn originals() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (platform, ext) in [
        ("el9_x86_64", ".rpm"),
        ("deb12_amd64", ".deb"),
        ("el9_x86_64", ".tar.gz"),
    ] {
        let (key, path) = tree_files(packed(platform))
            .into_iter()
            .find(|(k, _)| k.ends_with(ext))
            .unwrap();
        out.push((key, fs::read(path).unwrap()));
    }
    out
}

/// A damaged copy of `good` (never equal to it), and what was done to it.
fn mutate(good: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    loop {
        let (what, b) = mutate_once(good, rng);
        if b != good {
            return (what, b);
        }
    }
}

fn mutate_once(good: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let mut b = good.to_vec();
    let n = b.len();
    let what = match rng.below(7) {
        0 => {
            let at = rng.below(n);
            b.truncate(at);
            format!("cut at {at}")
        }
        1 | 2 => {
            let at = rng.below(n);
            b[at] ^= 1 + rng.below(255) as u8;
            format!("byte {at} flipped")
        }
        3 => {
            // Near the end, where compressed streams keep their checksums.
            let at = n - 1 - rng.below(n.min(64));
            b[at] ^= 1 + rng.below(255) as u8;
            format!("byte {at} (near the end) flipped")
        }
        4 => {
            let at = rng.below(n);
            let len = (1 + rng.below(64)).min(n - at);
            b[at..at + len].fill(0);
            format!("{len} bytes zeroed at {at}")
        }
        5 => {
            let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
            b.splice(0..0, junk.iter().copied());
            format!("{} bytes of junk before", junk.len())
        }
        _ => {
            let len = 1 + rng.below(32);
            let zeros = rng.below(2) == 0;
            b.extend((0..len).map(|_| if zeros { 0 } else { rng.next() as u8 }));
            format!("{len} {} after", if zeros { "zeros" } else { "junk bytes" })
        }
    };
    (what, b)
}

/// Everything a package holds, read with other crates than packyard's reader: what the
/// reader accepts must hold exactly this. `None`: unreadable.
fn contents(key: &str, bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn tar_entries(r: impl Read, out: &mut Vec<(String, Vec<u8>)>) -> Option<()> {
        let mut t = tar::Archive::new(r);
        for e in t.entries().ok()? {
            let mut e = e.ok()?;
            let mut data = Vec::new();
            e.read_to_end(&mut data).ok()?;
            let h = e.header();
            let name = format!(
                "{} {:?} {:o} {:?}",
                e.path().ok()?.display(),
                h.entry_type(),
                h.mode().ok()?,
                e.link_name().ok()?
            );
            out.push((name, data));
        }
        Some(())
    }
    fn stream(name: &str, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if name.ends_with(".gz") {
            flate2::read::MultiGzDecoder::new(data)
                .read_to_end(&mut out)
                .ok()?;
        } else if name.ends_with(".xz") {
            xz2::read::XzDecoder::new(data).read_to_end(&mut out).ok()?;
        } else if name.ends_with(".zst") {
            zstd::stream::read::Decoder::new(data)
                .ok()?
                .read_to_end(&mut out)
                .ok()?;
        } else {
            out = data.to_vec();
        }
        Some(out)
    }
    let mut out = Vec::new();
    if key.ends_with(".rpm") {
        // The rpm crate panics on some damaged headers.
        let p = std::panic::catch_unwind(|| rpm::Package::parse(&mut &bytes[..]))
            .ok()?
            .ok()?;
        let m = &p.metadata;
        let id = format!(
            "{}-{}-{}.{}",
            m.get_name().ok()?,
            m.get_version().ok()?,
            m.get_release().ok()?,
            m.get_arch().ok()?
        );
        out.push((id, Vec::new()));
        for f in p.files().ok()? {
            let f = f.ok()?;
            out.push((
                format!(
                    "{} {:o}",
                    f.metadata.path().display(),
                    f.metadata.mode().raw_mode()
                ),
                f.content().unwrap_or_default().to_vec(),
            ));
        }
    } else if key.ends_with(".deb") {
        let mut ar = ar::Archive::new(bytes);
        while let Some(m) = ar.next_entry() {
            let mut m = m.ok()?;
            let name = String::from_utf8_lossy(m.header().identifier()).into_owned();
            let mut data = Vec::new();
            m.read_to_end(&mut data).ok()?;
            if name.contains(".tar") {
                tar_entries(&stream(&name, &data)?[..], &mut out)?;
            } else {
                out.push((name, data));
            }
        }
    } else {
        tar_entries(&stream(key, bytes)?[..], &mut out)?;
    }
    Some(out)
}

#[test]
fn the_package_reader_accepts_no_damaged_contents() {
    let mut rng = Rng::new(16);
    let mut refused = 0;
    let mut total = 0;
    for (key, good) in originals() {
        let name = key.rsplit('/').next().unwrap();
        packyard::repo::package::parse(name, &good).unwrap();
        let want = contents(&key, &good).unwrap();
        for _ in 0..1500 {
            let (what, bad) = mutate(&good, &mut rng);
            total += 1;
            match packyard::repo::package::parse(name, &bad) {
                Err(why) => {
                    assert!(!why.is_empty());
                    refused += 1;
                }
                Ok(_) => assert!(
                    contents(&key, &bad).as_ref() == Some(&want),
                    "{key}, {what}: accepted, but it does not hold what the good file holds"
                ),
            }
        }
    }
    // Most damage is damage: a reader that refused nothing would not be checking.
    assert!(
        refused * 10 > total * 8,
        "only {refused} of {total} refused"
    );
}

/// Whether the real tools read `bytes` (a `key` file) whole; the first complaint if not.
fn real_tools_accept(key: &str, bytes: &[u8], dir: &Path) -> Result<(), String> {
    let file = dir.join(key.rsplit('/').next().unwrap());
    fs::write(&file, bytes).unwrap();
    let f = file.to_str().unwrap();
    let checks: Vec<String> = if key.ends_with(".rpm") {
        vec![
            format!("rpm -K --nosignature {f}"),
            // cpio judges the payload. (rpm2cpio itself exits 1 on packages without an
            // archive size tag, which the rpm crate does not write.)
            format!("(rpm2cpio {f} || true) | cpio -it --quiet >/dev/null"),
        ]
    } else if key.ends_with(".deb") {
        vec![
            format!("dpkg-deb --info {f} >/dev/null"),
            format!("dpkg-deb --ctrl-tarfile {f} | tar -t >/dev/null"),
            format!("dpkg-deb --fsys-tarfile {f} | tar -t >/dev/null"),
        ]
    } else {
        vec![format!("gzip -t {f}"), format!("tar -tzf {f} >/dev/null")]
    };
    for c in checks {
        let o = Command::new("bash")
            .args(["-o", "pipefail", "-c", &c])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if !o.status.success() {
            return Err(format!("`{c}`: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    Ok(())
}

#[test]
fn damaged_uploads_are_refused_and_nothing_accepted_is_broken() {
    for (tool, probe) in [
        ("rpm", "--version"),
        ("cpio", "--version"),
        ("dpkg-deb", "--version"),
        ("gzip", "--version"),
    ] {
        if !have_tool(tool, &[probe]) {
            return;
        }
    }
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let scratch = tempfile::tempdir().unwrap();
    create_nightly(d, &[]);
    let builder = token(d, "builder");
    let server = Server::start(d, &[]);
    upload_packed(&server, "nightly", "el9_x86_64", &builder);
    upload_packed(&server, "nightly", "deb12_amd64", &builder);
    let mut rng = Rng::new(4);
    let (mut refused, mut accepted) = (0, 0);
    for (key, good) in originals() {
        for i in 0..120 {
            let (what, bad) = mutate(&good, &mut rng);
            // Most go to their own path; some over the good file, which must stay.
            let over = i % 8 == 0;
            let path = if over {
                key.clone()
            } else {
                format!("damaged/{i}/{key}")
            };
            let before = server.get(&format!("/repos/nightly/{path}"));
            let (status, answer) = server.upload("nightly", &path, &bad, Some(&builder), &[]);
            let after = server.get(&format!("/repos/nightly/{path}"));
            match status {
                400 => {
                    refused += 1;
                    assert!(
                        answer["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&path)),
                        "{path}, {what}: {answer}"
                    );
                    assert_eq!(after, before, "{path}, {what}: refused, but changed");
                    if !over {
                        assert_eq!(after.0, 404, "{path}, {what}: refused, but stored");
                    }
                }
                201 => {
                    accepted += 1;
                    assert_eq!(after, (200, bad.clone()), "{path}, {what}");
                    if let Err(e) = real_tools_accept(&key, &after.1, scratch.path()) {
                        panic!("{path}, {what}: accepted and served, but {e}");
                    }
                    // The good file back where it was (an accepted copy of the same package
                    // under another path took its place).
                    let (s, a) = server.upload("nightly", &key, &good, Some(&builder), &[]);
                    assert!(s == 200 || s == 201, "{a}");
                }
                other => panic!("{path}, {what}: {other} {answer}"),
            }
        }
    }
    assert!(refused > 300, "{refused} refused, {accepted} accepted");
    // No index names a file that is not there.
    crate::repo::check_consistent(d, "nightly");
    server.stop();
}
