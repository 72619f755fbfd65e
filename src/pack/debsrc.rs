//! The Debian source package of a configuration, made from its checkout: the upstream
//! tarball (`<name>_<version>.orig.tar.gz`, the checkout without `.git`), the packaging
//! (`<name>_<version>-<age>.debian.tar.xz`: `debian/control`, `rules`, `changelog`,
//! `copyright`, `source/format` = `3.0 (quilt)`) and the `.dsc` naming both with their
//! checksums. All byte-reproducible: sorted entries, the spec's date, fixed owners.
//!
//! `debian/rules` runs the configuration's own targets — `init`, `configure`, `compile`
//! at build time, `install` into the package's root, then `test` — each from a script of
//! its own under `debian/packyard/` (commands as packyard resolved them, so no escaping
//! for make), and writes the binary package with dpkg's own tools, laid out as packyard's
//! binary DEB is: the same files, modes, owners, relations, conffiles, maintainer scripts,
//! `copyright` and `changelog.Debian.gz`.

use std::sync::Arc;

use md5::{Digest, Md5};

use super::PackError;
use super::spec::{Compression, PackageSpec, Relation};
use super::tarball::{self, TarStyle};
use super::walk::{self, Entry, EntryKind};

/// What a resolved command says where it names `${prefix}`: resolved with this as the
/// prefix, each occurrence becomes the build's own prefix (`$PACKYARD_PREFIX`).
pub const PREFIX_MARK: &str = "@PACKYARD_PREFIX@";

/// The targets a source package runs, in order, and where: `build` (before the package's
/// root exists) or `install` (after).
pub const SOURCE_TARGETS: [(&str, Stage); 5] = [
    ("init", Stage::Build),
    ("configure", Stage::Build),
    ("compile", Stage::Build),
    ("install", Stage::Install),
    ("test", Stage::Check),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// RPM `%build`, Debian `build`.
    Build,
    /// RPM `%install`, Debian `binary` into the package's root.
    Install,
    /// RPM `%check`, Debian `binary` after the install, unless `nocheck`.
    Check,
}

/// A configuration's source, as its source packages need it.
pub struct SourceInput<'a> {
    /// The binary package's spec: names, version, relations, config files, scripts.
    pub spec: &'a PackageSpec,
    /// Build-time relations: externals with their constraints, internal dependencies by
    /// package name at their resolved version.
    pub build_depends: Vec<Relation>,
    /// `(target, command)` of [`SOURCE_TARGETS`] that the configuration sets, `${prefix}`
    /// resolved as [`PREFIX_MARK`].
    pub targets: Vec<(String, String)>,
    /// The checkout, walked (`.git` left out), relative to its top directory.
    pub checkout: Vec<Entry>,
}

/// One file of a source package: its name (no directory) and bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `<name>_<version>`: the start of every file name of the source package.
fn stem(spec: &PackageSpec) -> String {
    format!("{}_{}", spec.name, spec.version)
}

/// The Debian version without an epoch (`2.5.1-1`), as file names carry it.
fn file_version(spec: &PackageSpec) -> String {
    format!("{}-{}", spec.version, spec.release)
}

fn io_err(e: std::io::Error) -> PackError {
    PackError::Format {
        format: "deb source",
        message: e.to_string(),
    }
}

fn file(path: String, data: Vec<u8>, mode: u32) -> Entry {
    Entry {
        path,
        kind: EntryKind::File {
            data: Arc::new(data),
            link_to: None,
        },
        mode,
    }
}

/// Entries under `top/`, with the directories leading there.
fn under(top: &str, entries: &[Entry]) -> Vec<Entry> {
    let mut out = vec![walk::dir_entry(top.to_string())];
    out.extend(entries.iter().map(|e| {
        let mut e = e.clone();
        e.path = format!("{top}/{}", e.path);
        if let EntryKind::File {
            link_to: Some(first),
            ..
        } = &mut e.kind
        {
            *first = format!("{top}/{first}");
        }
        e
    }));
    walk::sort_entries(&mut out);
    out
}

fn tar(entries: &[Entry], spec: &PackageSpec, c: Compression) -> Result<Vec<u8>, PackError> {
    let root = |_: &str| ("root", "root");
    let style = TarStyle {
        dpkg: false,
        mtime: u64::try_from(spec.date).unwrap_or(0),
        owner: &root,
    };
    tarball::compressed(entries, &style, c, &|_| {}).map_err(io_err)
}

/// The checkout as a tarball under `<name>-<version>/`: the Debian `.orig.tar.gz` and the
/// source RPM's `Source0`, the same bytes.
pub fn upstream_tarball(input: &SourceInput) -> Result<Vec<u8>, PackError> {
    let spec = input.spec;
    let top = format!("{}-{}", spec.name, spec.version);
    tar(
        &under(&top, &input.checkout),
        spec,
        Compression::GZIP_DEFAULT,
    )
}

/// The source package's three files: the `.orig.tar.gz`, the `.debian.tar.xz` and the
/// `.dsc`, in that order.
pub fn debian_source(input: &SourceInput) -> Result<Vec<SourceFile>, PackError> {
    let spec = input.spec;
    let orig = upstream_tarball(input)?;
    let mut debian: Vec<Entry> = debian_files(input)?
        .into_iter()
        .map(|(path, text, mode)| file(path, text.into_bytes(), mode))
        .collect();
    for dir in ["debian", "debian/source", "debian/packyard"] {
        debian.push(walk::dir_entry(dir.to_string()));
    }
    walk::sort_entries(&mut debian);
    let xz = Compression {
        algorithm: super::spec::Algorithm::Xz,
        level: 6,
    };
    let debian_tar = tar(&debian, spec, xz)?;
    let orig_name = format!("{}.orig.tar.gz", stem(spec));
    let debian_name = format!("{}_{}.debian.tar.xz", spec.name, file_version(spec));
    let dsc = dsc(
        input,
        &[
            (orig_name.as_str(), &orig),
            (debian_name.as_str(), &debian_tar),
        ],
    )?;
    Ok(vec![
        SourceFile {
            name: orig_name,
            bytes: orig,
        },
        SourceFile {
            name: debian_name,
            bytes: debian_tar,
        },
        SourceFile {
            name: format!("{}_{}.dsc", spec.name, file_version(spec)),
            bytes: dsc.into_bytes(),
        },
    ])
}

/// The `Architecture` of the source's binary package: `all`, or `any` (built for the
/// machine that builds it, as packyard's own DEB is for its platform's).
fn architecture(spec: &PackageSpec) -> &'static str {
    if spec.platform.deb_arch == "all" {
        "all"
    } else {
        "any"
    }
}

fn build_depends(input: &SourceInput) -> Option<String> {
    let list: Vec<String> = input.build_depends.iter().map(Relation::deb).collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// Whether the rules must run as root: to give files owners other than root.
fn needs_root(spec: &PackageSpec) -> bool {
    spec.owners
        .iter()
        .any(|(_, u, g)| u != "root" || g != "root")
}

/// `debian/control`: the source paragraph, then the binary package's.
pub fn control(input: &SourceInput) -> Result<String, PackError> {
    let spec = input.spec;
    let mut s = format!("Source: {}\n", spec.name);
    s.push_str(&format!("Section: {}\n", spec.section));
    s.push_str(&format!("Priority: {}\n", spec.priority));
    s.push_str(&format!(
        "Maintainer: {}\n",
        spec.maintainer.clone().unwrap_or_default()
    ));
    if let Some(b) = build_depends(input) {
        s.push_str(&format!("Build-Depends: {b}\n"));
    }
    s.push_str("Standards-Version: 4.6.2\n");
    if let Some(h) = &spec.homepage {
        s.push_str(&format!("Homepage: {h}\n"));
    }
    s.push_str(if needs_root(spec) {
        "Rules-Requires-Root: binary-targets\n"
    } else {
        "Rules-Requires-Root: no\n"
    });
    s.push_str(&format!(
        "\nPackage: {}\nArchitecture: {}\n",
        spec.name,
        architecture(spec)
    ));
    for (name, value) in super::deb::relation_fields(&spec.relations) {
        let value = value?;
        // What the files need (packyard's autodeps) is found by the rules: libraries by
        // dpkg-shlibdeps, the Python interpreter by where modules are.
        let value = if name == "Depends" && spec.autoreqprov {
            Some(match value {
                Some(v) => format!("${{shlibs:Depends}}, ${{misc:Depends}}, {v}"),
                None => "${shlibs:Depends}, ${misc:Depends}".to_string(),
            })
        } else {
            value
        };
        if let Some(v) = value {
            s.push_str(&format!("{name}: {v}\n"));
        }
    }
    s.push_str(&format!("Description: {}\n", spec.summary));
    for l in spec.description.lines() {
        if l.trim().is_empty() {
            s.push_str(" .\n");
        } else {
            s.push_str(&format!(" {l}\n"));
        }
    }
    Ok(s)
}

/// A target's script: the command as packyard resolved it, its prefix the build's.
fn script(target: &str, command: &str) -> String {
    format!(
        "#!/bin/sh\n# The `{target}` target, as packyard runs it.\nset -e\n{}\n",
        command.replace(PREFIX_MARK, "$PACKYARD_PREFIX")
    )
}

/// `debian/rules`: a plain makefile (no debhelper, which would add files and change
/// modes packyard's package does not have).
pub fn rules(input: &SourceInput) -> String {
    let spec = input.spec;
    let name = &spec.name;
    let has = |t: &str| input.targets.iter().any(|(n, _)| n == t);
    let run = |stage: Stage| -> String {
        SOURCE_TARGETS
            .iter()
            .filter(|(t, s)| *s == stage && has(t))
            .map(|(t, _)| format!("\tPACKYARD_PREFIX=$(PREFIX) sh debian/packyard/{t}.sh\n"))
            .collect()
    };
    let mut r = String::from("#!/usr/bin/make -f\n");
    r.push_str(&format!(
        "# Generated by packyard: builds {name} with its configuration's own targets.\n\n"
    ));
    r.push_str(&format!("PKG := {name}\n"));
    r.push_str("ROOT := $(CURDIR)/debian/$(PKG)\n");
    r.push_str(&format!("PREFIX := $(ROOT){}\n", spec.install_root));
    r.push_str(&format!("DOC := $(ROOT)/usr/share/doc/{name}\n\n"));
    r.push_str(".PHONY: build build-arch build-indep binary binary-arch binary-indep clean\n\n");
    r.push_str("build build-arch build-indep: debian/stamp-build\n\n");
    r.push_str("debian/stamp-build:\n");
    r.push_str("\tmkdir -p $(PREFIX)\n");
    r.push_str(&run(Stage::Build));
    r.push_str("\ttouch $@\n\n");
    let (arch_target, other) = if architecture(spec) == "all" {
        ("binary-indep", "binary-arch")
    } else {
        ("binary-arch", "binary-indep")
    };
    r.push_str(&format!("binary: {arch_target}\n{other}:\n\n"));
    r.push_str(&format!("{arch_target}: build\n"));
    r.push_str("\trm -rf $(ROOT)\n\tmkdir -p $(PREFIX)\n");
    r.push_str(&run(Stage::Install));
    if has("test") {
        r.push_str("ifeq (,$(filter nocheck,$(DEB_BUILD_OPTIONS)))\n");
        r.push_str(&run(Stage::Check));
        r.push_str("endif\n");
    }
    // The documentation packyard's DEB carries, unless the install put it there.
    r.push_str("\tmkdir -p $(DOC)\n");
    r.push_str("\t[ -e $(DOC)/copyright ] || install -m 0644 debian/copyright $(DOC)/copyright\n");
    r.push_str(
        "\t[ -e $(DOC)/changelog.Debian.gz ] || gzip -9nc debian/changelog > $(DOC)/changelog.Debian.gz\n",
    );
    r.push_str("\tchmod 0644 $(DOC)/changelog.Debian.gz\n");
    r.push_str("\tmkdir -p $(ROOT)/DEBIAN\n");
    if !spec.config_files.is_empty() {
        // Config files the install wrote are conffiles, as in packyard's package.
        r.push_str("\tfor f in $$(cat debian/packyard/conffiles); do \\\n");
        r.push_str("\t  [ ! -f $(ROOT)$$f ] || echo $$f >> $(ROOT)/DEBIAN/conffiles; \\\n");
        r.push_str("\tdone\n");
    }
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        if maintainer_script(spec, script).is_some() {
            r.push_str(&format!(
                "\tinstall -m 0755 debian/{script} $(ROOT)/DEBIAN/{script}\n"
            ));
        }
    }
    for (path, user, group) in &spec.owners {
        r.push_str(&format!("\tchown -h {user}:{group} $(ROOT){path}\n"));
    }
    if spec.autoreqprov {
        r.push_str("\telf=$$(find $(ROOT) -path $(ROOT)/DEBIAN -prune -o -type f -print | \\\n");
        r.push_str(
            "\t  while read -r f; do [ \"$$(head -c 4 \"$$f\")\" != \"$$(printf '\\177ELF')\" ] || echo \"$$f\"; done); \\\n",
        );
        r.push_str("\t[ -z \"$$elf\" ] || dpkg-shlibdeps -Tdebian/$(PKG).substvars $$elf\n");
        // A module under /usr/lib/pythonX[.Y]/ needs pythonX, as packyard's autodeps say.
        r.push_str(
            "\tfor d in $(ROOT)/usr/lib/python[0-9]* $(ROOT)/usr/lib64/python[0-9]*; do \\\n",
        );
        r.push_str("\t  [ -n \"$$(ls -A $$d 2>/dev/null)\" ] || continue; \\\n");
        r.push_str("\t  v=$${d##*/python}; echo \"python$${v%%.*}\"; \\\n");
        r.push_str("\tdone | sort -u | paste -sd, | sed 's/,/, /g; s/^/misc:Depends=/' >> debian/$(PKG).substvars\n");
    }
    r.push_str("\tdpkg-gencontrol -p$(PKG) -P$(ROOT) -Tdebian/$(PKG).substvars\n");
    // md5sums of every file but the conffiles, as packyard's DEB has; after the control
    // file, as debhelper makes it, so Installed-Size does not count it.
    r.push_str("\tcd $(ROOT) && find . -path ./DEBIAN -prune -o -type f -printf '%P\\n' | LC_ALL=C sort | \\\n");
    r.push_str("\t  while read -r f; do grep -qxF \"/$$f\" DEBIAN/conffiles 2>/dev/null || md5sum \"$$f\"; done > DEBIAN/md5sums\n");
    let owners = if needs_root(spec) {
        ""
    } else {
        " --root-owner-group"
    };
    r.push_str(&format!("\tdpkg-deb{owners} --build $(ROOT) ..\n\n"));
    r.push_str("clean:\n");
    r.push_str("\trm -rf $(ROOT) debian/stamp-build debian/files debian/*.substvars\n");
    r
}

/// A maintainer script's text for `name` (`postinst`...), as packyard's DEB has it.
fn maintainer_script(spec: &PackageSpec, name: &str) -> Option<String> {
    let s = &spec.scripts;
    let text = match name {
        "preinst" => &s.pre_install,
        "postinst" => &s.post_install,
        "prerm" => &s.pre_uninstall,
        "postrm" => &s.post_uninstall,
        _ => return None,
    };
    text.as_ref().map(|t| {
        if t.starts_with("#!") {
            t.clone()
        } else {
            format!("#!/bin/sh\n{t}")
        }
    })
}

/// The files of `debian/`: (path, text, mode).
pub fn debian_files(input: &SourceInput) -> Result<Vec<(String, String, u32)>, PackError> {
    let spec = input.spec;
    let mut files = vec![
        ("debian/control".to_string(), control(input)?, 0o644),
        ("debian/rules".to_string(), rules(input), 0o755),
        (
            "debian/changelog".to_string(),
            super::deb::changelog(spec),
            0o644,
        ),
        (
            "debian/copyright".to_string(),
            super::deb::copyright(spec),
            0o644,
        ),
        (
            "debian/source/format".to_string(),
            "3.0 (quilt)\n".to_string(),
            0o644,
        ),
    ];
    for (target, command) in &input.targets {
        files.push((
            format!("debian/packyard/{target}.sh"),
            script(target, command),
            0o755,
        ));
    }
    if !spec.config_files.is_empty() {
        let list: String = spec.config_files.iter().map(|c| format!("{c}\n")).collect();
        files.push(("debian/packyard/conffiles".into(), list, 0o644));
    }
    for name in ["preinst", "postinst", "prerm", "postrm"] {
        if let Some(text) = maintainer_script(spec, name) {
            files.push((format!("debian/{name}"), text, 0o755));
        }
    }
    Ok(files)
}

/// The `.dsc`, naming `files` (name, bytes) with their sizes and checksums.
fn dsc(input: &SourceInput, files: &[(&str, &Vec<u8>)]) -> Result<String, PackError> {
    let spec = input.spec;
    let arch = architecture(spec);
    let mut s = String::from("Format: 3.0 (quilt)\n");
    s.push_str(&format!("Source: {}\n", spec.name));
    s.push_str(&format!("Binary: {}\n", spec.name));
    s.push_str(&format!("Architecture: {arch}\n"));
    s.push_str(&format!("Version: {}\n", spec.full_version()));
    s.push_str(&format!(
        "Maintainer: {}\n",
        spec.maintainer.clone().unwrap_or_default()
    ));
    if let Some(h) = &spec.homepage {
        s.push_str(&format!("Homepage: {h}\n"));
    }
    s.push_str("Standards-Version: 4.6.2\n");
    if let Some(b) = build_depends(input) {
        s.push_str(&format!("Build-Depends: {b}\n"));
    }
    s.push_str(&format!(
        "Package-List:\n {} deb {} {} arch={arch}\n",
        spec.name, spec.section, spec.priority
    ));
    let line = |digest: String, f: &(&str, &Vec<u8>)| format!(" {digest} {} {}\n", f.1.len(), f.0);
    s.push_str("Checksums-Sha1:\n");
    for f in files {
        s.push_str(&line(format!("{:x}", sha1::Sha1::digest(f.1)), f));
    }
    s.push_str("Checksums-Sha256:\n");
    for f in files {
        s.push_str(&line(format!("{:x}", sha2::Sha256::digest(f.1)), f));
    }
    s.push_str("Files:\n");
    for f in files {
        s.push_str(&line(format!("{:x}", Md5::digest(f.1)), f));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(spec: &PackageSpec) -> SourceInput<'_> {
        SourceInput {
            spec,
            build_depends: vec![Relation {
                name: "make".into(),
                clauses: vec![],
            }],
            targets: vec![
                ("compile".into(), "make".into()),
                (
                    "install".into(),
                    format!("make install DESTDIR={PREFIX_MARK}"),
                ),
            ],
            checkout: vec![file("Makefile".into(), b"all:\n".to_vec(), 0o644)],
        }
    }

    #[test]
    fn the_dsc_names_both_tarballs_with_their_checksums() {
        let spec = crate::pack::spec::sample();
        let files = debian_source(&input(&spec)).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["a_1.0.orig.tar.gz", "a_1.0-1.debian.tar.xz", "a_1.0-1.dsc"]
        );
        let dsc = String::from_utf8(files[2].bytes.clone()).unwrap();
        for f in &files[..2] {
            let sum = format!("{:x}", sha2::Sha256::digest(&f.bytes));
            assert!(
                dsc.contains(&format!(" {sum} {} {}\n", f.bytes.len(), f.name)),
                "{dsc}"
            );
        }
        assert!(dsc.contains("Build-Depends: make\n"), "{dsc}");
        // The same input, the same bytes.
        let again = debian_source(&input(&spec)).unwrap();
        assert!(files.iter().zip(&again).all(|(a, b)| a.bytes == b.bytes));
    }

    #[test]
    fn rules_run_the_targets_with_the_packages_prefix() {
        let spec = crate::pack::spec::sample();
        let i = input(&spec);
        let files = debian_files(&i).unwrap();
        let install = &files
            .iter()
            .find(|(p, _, _)| p == "debian/packyard/install.sh")
            .unwrap()
            .1;
        assert!(
            install.contains("make install DESTDIR=$PACKYARD_PREFIX"),
            "{install}"
        );
        let rules = rules(&i);
        let build = rules.find("packyard/compile.sh").unwrap();
        let inst = rules.find("packyard/install.sh").unwrap();
        assert!(build < inst, "{rules}");
        // A file owned by another user needs root for the binary target.
        assert!(rules.contains("chown -h nobody:nobody $(ROOT)/var/lib/a/state"));
        assert!(
            control(&i)
                .unwrap()
                .contains("Rules-Requires-Root: binary-targets")
        );
    }
}
