//! Requirements found in a package's files (`package.autoreqprov`), as rpmbuild's
//! dependency generators and debhelper would add them.
//!
//! Python: a module under `/usr/lib/pythonX.Y/` needs `python(abi) = X.Y` (RPM); one
//! under `/usr/lib/python3/` needs `python3` (Debian).
//!
//! RPM: `libfoo.so.1()(64bit)` and `libfoo.so.1(VER)(64bit)` for every needed library and
//! version, straight from the files. Debian: only the C library is mapped (to
//! `libc6 (>= newest GLIBC_ version needed)`); other libraries need a package name this
//! machine cannot know, so they are left to `package.requires`.

use std::collections::BTreeSet;

use goblin::elf::Elf;

use super::walk::{Entry, EntryKind};
use crate::layout::PackageFormat;
use crate::version::{self, Scheme};

/// The sonames glibc's own package provides.
const GLIBC: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libcrypt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "ld-linux.so.2",
];

/// What one ELF file needs: (library, versions needed from it), and its word size.
struct Needs {
    is_64: bool,
    libraries: Vec<(String, Vec<String>)>,
}

fn needs(data: &[u8]) -> Option<Needs> {
    if !data.starts_with(b"\x7fELF") {
        return None;
    }
    let elf = Elf::parse(data).ok()?;
    let mut libraries: Vec<(String, Vec<String>)> = elf
        .libraries
        .iter()
        .map(|l| (l.to_string(), Vec::new()))
        .collect();
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            let Some(file) = elf.dynstrtab.get_at(need.vn_file) else {
                continue;
            };
            let versions: Vec<String> = need
                .iter()
                .filter_map(|aux| elf.dynstrtab.get_at(aux.vna_name).map(str::to_string))
                .collect();
            match libraries.iter_mut().find(|(l, _)| l == file) {
                Some((_, v)) => v.extend(versions),
                None => libraries.push((file.to_string(), versions)),
            }
        }
    }
    Some(Needs {
        is_64: elf.is_64,
        libraries,
    })
}

/// The requirements to add, sorted and without duplicates.
pub fn requirements(entries: &[Entry], format: PackageFormat) -> Vec<String> {
    let mut rpm: BTreeSet<String> = BTreeSet::new();
    let mut deb: BTreeSet<String> = BTreeSet::new();
    let mut needs_libc = false;
    // The newest `GLIBC_x.y` symbol version any file needs.
    let mut libc_version: Option<&str> = None;
    let mut files = Vec::new();
    for e in entries {
        if let ["usr", "lib" | "lib64", py, _, ..] = e.path.split('/').collect::<Vec<_>>()[..]
            && let Some(v) = py.strip_prefix("python")
            && v.starts_with(|c: char| c.is_ascii_digit())
        {
            rpm.insert(format!("python(abi) = {v}"));
            deb.insert(format!("python{}", v.split('.').next().unwrap_or(v)));
        }
        if let EntryKind::File {
            data,
            link_to: None,
        } = &e.kind
        {
            files.extend(needs(data));
        }
    }
    for n in &files {
        // rpm writes `lib()(64bit)` for 64-bit objects and the bare name for 32-bit ones.
        let mark = if n.is_64 { "(64bit)" } else { "" };
        for (lib, versions) in &n.libraries {
            rpm.insert(if n.is_64 {
                format!("{lib}()(64bit)")
            } else {
                lib.clone()
            });
            let is_libc = GLIBC.contains(&lib.as_str());
            needs_libc |= is_libc;
            for v in versions {
                rpm.insert(format!("{lib}({v}){mark}"));
                let glibc = v
                    .strip_prefix("GLIBC_")
                    .filter(|n| is_libc && n.starts_with(|c: char| c.is_ascii_digit()));
                if let Some(num) = glibc
                    && libc_version.is_none_or(|g| version::compare(Scheme::Deb, num, g).is_gt())
                {
                    libc_version = Some(num);
                }
            }
        }
    }
    match format {
        PackageFormat::Rpm => rpm.into_iter().collect(),
        PackageFormat::Deb => {
            if needs_libc {
                deb.insert(match libc_version {
                    Some(v) => format!("libc6 (>= {v})"),
                    None => "libc6".into(),
                });
            }
            deb.into_iter().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_modules_need_the_interpreter() {
        let e = |path: &str| Entry {
            path: path.into(),
            kind: EntryKind::File {
                data: std::sync::Arc::new(b"print(1)".to_vec()),
                link_to: None,
            },
            mode: 0o644,
        };
        let el = [e("usr/lib/python3.9/site-packages/m.py")];
        assert_eq!(requirements(&el, PackageFormat::Rpm), ["python(abi) = 3.9"]);
        let deb = [e("usr/lib/python3/dist-packages/m.py")];
        assert_eq!(requirements(&deb, PackageFormat::Deb), ["python3"]);
    }

    #[test]
    fn non_elf_needs_nothing() {
        let e = Entry {
            path: "usr/bin/script".into(),
            kind: EntryKind::File {
                data: std::sync::Arc::new(b"#!/bin/sh\necho hi\n".to_vec()),
                link_to: None,
            },
            mode: 0o755,
        };
        assert!(requirements(&[e], PackageFormat::Rpm).is_empty());
    }

    /// The test binary itself is an ELF file linked against glibc.
    #[test]
    fn this_test_binary_needs_glibc() {
        let Ok(me) = std::env::current_exe().and_then(std::fs::read) else {
            return;
        };
        let e = Entry {
            path: "usr/bin/t".into(),
            kind: EntryKind::File {
                data: std::sync::Arc::new(me),
                link_to: None,
            },
            mode: 0o755,
        };
        let rpm = requirements(std::slice::from_ref(&e), PackageFormat::Rpm);
        assert!(
            rpm.iter().any(|r| r.starts_with("libc.so.6(GLIBC_")),
            "{rpm:?}"
        );
        let deb = requirements(&[e], PackageFormat::Deb);
        assert!(deb[0].starts_with("libc6 (>= 2."), "{deb:?}");
    }
}
