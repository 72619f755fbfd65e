//! Pristine build roots (`build --root PLATFORM=ROOTFS`, `agent --root`, `rebuild`): a
//! minimal system of the platform (a directory, or a tarball unpacked once per build) and
//! its package index, read-only layers of an overlay; each component gets a fresh
//! writable layer over them, its build-time externals installed there as root with the
//! distribution's package manager (`apt-get satisfy`, `dnf install`), then its targets
//! run on it read-only, as `nobody`, with no network, the checkout and `_output/<module>/`
//! bound in at their own paths. The layer goes when the component is done.
//!
//! The overlay is mounted in a mount namespace of the step's own (made just before the
//! step's program starts), so nothing is mounted on the host, and it needs root: the
//! kernel's overlay and the package manager's chown and chroot do.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::layout::PackageFormat;
use crate::pack::spec::Relation;

/// `PLATFORM=ROOTFS` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpec {
    pub platform: String,
    /// A directory holding the system, or a tarball of it (`.tar`, `.tar.gz`, `.tar.xz`,
    /// `.tar.zst`: what `mmdebstrap` writes).
    pub source: PathBuf,
}

impl RootSpec {
    pub fn parse(s: &str) -> Result<RootSpec, String> {
        match s.split_once('=') {
            Some((p, r)) if !p.is_empty() && !r.is_empty() => Ok(RootSpec {
                platform: p.to_string(),
                source: PathBuf::from(r),
            }),
            _ => Err(format!(
                "{s:?} is not PLATFORM=ROOTFS (e.g. deb12_amd64=bookworm.tar)"
            )),
        }
    }
}

/// A platform's root, ready for its components: the read-only layers, top first.
#[derive(Debug, Clone)]
pub struct Root {
    pub platform: String,
    pub format: PackageFormat,
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("--root needs packyard to run as root (the overlay mount and the package manager do)")]
    NotRoot,
    #[error("--root {platform}: {source_path} is neither a directory nor a file")]
    Missing {
        platform: String,
        source_path: PathBuf,
    },
    #[error("--root {platform}: {what}")]
    Failed { platform: String, what: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl RootError {
    pub fn hint(&self) -> String {
        match self {
            RootError::NotRoot => {
                "run the build as root (e.g. with sudo), or without --root".into()
            }
            RootError::Missing { .. } => {
                "make one: `mmdebstrap --variant=buildd bookworm ROOT.tar` (see the guide, \
                 Pristine build roots)"
                    .into()
            }
            RootError::Failed { .. } => {
                "the root must be a system of that platform with its package manager and \
                 package sources (and the network to reach them)"
                    .into()
            }
            RootError::Io { .. } => "check the workspace's file system".into(),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RootError + '_ {
    move |source| RootError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether packyard runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `spec`'s root ready under `dir` (emptied first): a tarball unpacked there, then
/// the package index fetched into a layer of its own (`apt-get update`, `dnf makecache`),
/// so each component's install starts from it. A root given as a directory is only read.
pub fn prepare(
    spec: &RootSpec,
    format: PackageFormat,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Root, RootError> {
    if !is_root() {
        return Err(RootError::NotRoot);
    }
    let failed = |what: String| RootError::Failed {
        platform: spec.platform.clone(),
        what,
    };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let base = if spec.source.is_dir() {
        spec.source.clone()
    } else if spec.source.is_file() {
        let base = dir.join("base");
        fs::create_dir_all(&base).map_err(io_at(&base))?;
        log(&format!("unpacking {}", spec.source.display()));
        // GNU tar: owners, modes, device nodes and any compression, as the root was made.
        let out = Command::new("tar")
            .args([
                "--extract",
                "--numeric-owner",
                "--same-permissions",
                "--file",
            ])
            .arg(&spec.source)
            .arg("--directory")
            .arg(&base)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run tar: {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "tar could not unpack {}: {}",
                spec.source.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        base
    } else {
        return Err(RootError::Missing {
            platform: spec.platform.clone(),
            source_path: spec.source.clone(),
        });
    };
    let base = fs::canonicalize(&base).map_err(io_at(&base))?;
    let index = dir.join("index");
    let layer = Layer::new(&index, vec![base.clone()]).map_err(io_at(&index))?;
    let refresh = match format {
        PackageFormat::Deb => "apt-get update -q",
        PackageFormat::Rpm => "dnf -y -q makecache",
    };
    log(&format!("fetching the package index: {refresh}"));
    let out = layer
        .privileged(refresh)
        .output()
        .map_err(|e| failed(format!("cannot run bwrap: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "`{refresh}` in the root failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Root {
        platform: spec.platform.clone(),
        format,
        layers: vec![layer.upper, base],
    })
}

/// A writable layer over read-only ones: `<dir>/upper` (what changes), `<dir>/work`
/// (the overlay's own) and `<dir>/merged` (where the whole is seen).
pub struct Layer {
    pub dir: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
    lower: Vec<PathBuf>,
}

impl Layer {
    /// A fresh layer in `dir` (emptied first) over `lower` (top first).
    pub fn new(dir: &Path, lower: Vec<PathBuf>) -> io::Result<Layer> {
        // The overlay's options separate paths with `:` and `,`.
        if let Some(p) = lower
            .iter()
            .map(PathBuf::as_path)
            .chain([dir])
            .find(|p| p.to_string_lossy().contains([':', ',']))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: an overlay cannot take a path with `:` or `,`; use a workspace and \
                     root without them",
                    p.display()
                ),
            ));
        }
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d)?;
        }
        Ok(Layer {
            dir: dir.to_path_buf(),
            upper: fs::canonicalize(upper)?,
            work: fs::canonicalize(work)?,
            merged: fs::canonicalize(merged)?,
            lower,
        })
    }

    /// A component's fresh layer in `dir` over `root`.
    pub fn over(root: &Root, dir: &Path) -> io::Result<Layer> {
        Layer::new(dir, root.layers.clone())
    }

    /// Makes `paths` exist in the layer as directories, to bind them at the same place
    /// once the layer is read-only.
    pub fn mount_points(&self, paths: &[&Path]) -> io::Result<()> {
        for p in paths {
            let rel = p.strip_prefix("/").unwrap_or(p);
            fs::create_dir_all(self.upper.join(rel))?;
        }
        Ok(())
    }

    /// `sh -c CMD` as root in the layer, written to, with the network: the install step.
    pub fn privileged(&self, cmd: &str) -> Command {
        self.privileged_with(cmd, &[])
    }

    /// [`Layer::privileged`] with `binds` (host directories, made mount points with
    /// [`Layer::mount_points`]) seen at their own paths.
    pub fn privileged_with(&self, cmd: &str, binds: &[&Path]) -> Command {
        let mut c = Command::new("bwrap");
        let m = &self.merged;
        c.arg("--bind").arg(m).arg("/");
        // The host's resolver, to reach the package sources.
        c.args(["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]);
        c.args(["--dev", "/dev", "--proc", "/proc", "--perms", "01777"]);
        c.args(["--tmpfs", "/tmp", "--unshare-pid", "--die-with-parent"]);
        // After /tmp: they may lie below it.
        for b in binds {
            c.arg("--bind").arg(b).arg(b);
        }
        c.args(["--setenv", "DEBIAN_FRONTEND", "noninteractive"]);
        c.args(["--", "sh", "-c", cmd]);
        c.stdin(Stdio::null());
        overlay(&mut c, &self.lower, Some((&self.upper, &self.work)), m);
        c
    }

    /// bwrap for a target in the layer, read-only: the arguments that replace the
    /// host's `/` (see `isolate::bwrap_args`); the caller adds the rest.
    pub fn target(&self) -> Command {
        let mut c = Command::new("bwrap");
        let mut lower = vec![self.upper.clone()];
        lower.extend(self.lower.iter().cloned());
        overlay(&mut c, &lower, None, &self.merged);
        c
    }

    /// Where the layer is seen while a step runs.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// Takes the layer down (what the component installed goes with it).
    pub fn remove(self) -> io::Result<()> {
        fs::remove_dir_all(&self.dir)
    }
}

/// Has `c` mount the overlay of `lower` (top first), with `upper` written to when given,
/// at `at` in a mount namespace of its own, just before its program starts.
fn overlay(c: &mut Command, lower: &[PathBuf], upper: Option<(&Path, &Path)>, at: &Path) {
    let join = |ps: &[PathBuf]| {
        let mut o = OsString::new();
        for (i, p) in ps.iter().enumerate() {
            if i > 0 {
                o.push(":");
            }
            o.push(p);
        }
        o
    };
    let mut opts = OsString::from("lowerdir=");
    opts.push(join(lower));
    if let Some((u, w)) = upper {
        opts.push(",upperdir=");
        opts.push(u);
        opts.push(",workdir=");
        opts.push(w);
    }
    // Made before the fork: nothing is allocated between fork and exec.
    let opts = CString::new(opts.as_bytes()).unwrap_or_default();
    let at = CString::new(at.as_os_str().as_bytes()).unwrap_or_default();
    let flags = if upper.is_none() { libc::MS_RDONLY } else { 0 };
    // SAFETY: unshare and mount are async-signal-safe; the strings live in the closure.
    unsafe {
        c.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Nothing mounted here reaches the host's namespace.
            let none = c"none".as_ptr();
            if libc::mount(
                none,
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                c"overlay".as_ptr(),
                at.as_ptr(),
                c"overlay".as_ptr(),
                flags,
                opts.as_ptr().cast(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The install step's command: the externals the root lacks named first (a package the
/// distribution does not have fails with its name), then installed with their
/// constraints.
pub fn install_command(format: PackageFormat, externals: &[Relation]) -> Option<String> {
    if externals.is_empty() {
        return None;
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let names: Vec<String> = externals.iter().map(|r| quote(&r.name)).collect();
    Some(match format {
        PackageFormat::Deb => {
            let wanted = externals
                .iter()
                .map(Relation::deb)
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "for p in {}; do apt-cache show --no-all-versions \"$p\" >/dev/null 2>&1 || \
                 {{ echo \"packyard: no package $p in the root's distribution\"; exit 3; }}; done; \
                 apt-get satisfy -y -q --no-install-recommends {}",
                names.join(" "),
                quote(&wanted)
            )
        }
        PackageFormat::Rpm => {
            let wanted: Vec<String> = externals
                .iter()
                .flat_map(Relation::rpm)
                .map(|r| quote(&r))
                .collect();
            format!(
                "for p in {}; do dnf -q repoquery \"$p\" 2>/dev/null | grep -q . || \
                 {{ echo \"packyard: no package $p in the root's distribution\"; exit 3; }}; done; \
                 dnf -y -q install {}",
                names.join(" "),
                wanted.join(" ")
            )
        }
    })
}

/// The name of the missing package the install step reported in `output`, if any.
pub fn missing_package(output: &str) -> Option<&str> {
    output.lines().find_map(|l| {
        l.strip_prefix("packyard: no package ")
            .and_then(|r| r.strip_suffix(" in the root's distribution"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Clause, Op};

    #[test]
    fn specs_and_install_commands() {
        let s = RootSpec::parse("deb12_amd64=/r/bookworm.tar").unwrap();
        assert_eq!(s.platform, "deb12_amd64");
        assert_eq!(s.source, PathBuf::from("/r/bookworm.tar"));
        for bad in ["deb12_amd64", "=x", "p="] {
            assert!(RootSpec::parse(bad).is_err(), "{bad}");
        }
        let make = Relation {
            name: "make".into(),
            clauses: vec![Clause {
                op: Op::Ge,
                version: "4.0".into(),
            }],
        };
        let deb = install_command(PackageFormat::Deb, std::slice::from_ref(&make)).unwrap();
        assert!(
            deb.contains("apt-get satisfy -y -q --no-install-recommends 'make (>= 4.0)'"),
            "{deb}"
        );
        let rpm = install_command(PackageFormat::Rpm, &[make]).unwrap();
        assert!(rpm.contains("dnf -y -q install 'make >= 4.0'"), "{rpm}");
        assert_eq!(install_command(PackageFormat::Deb, &[]), None);
        let t = tempfile::tempdir().unwrap();
        let e = Layer::new(&t.path().join("a:b"), vec![]).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            missing_package("x\npackyard: no package nope in the root's distribution\n"),
            Some("nope")
        );
    }
}
