//! `packyard rebuild`: binary packages from a source package alone, in a pristine root —
//! what a distribution does with one. The source package's build dependencies (and any
//! binary packages given with it, e.g. the internal ones it names) are installed into a
//! fresh layer of the root as root; then, read-only, as nobody and with no network,
//! `dpkg-source -x` + `dpkg-buildpackage -b`, or `rpmbuild --rebuild`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::isolate::{self, Sandbox};
use super::root::{Layer, Root};
use crate::layout::PackageFormat;

/// What to rebuild, in which root.
pub struct RebuildRequest<'a> {
    /// A `.dsc` (its files beside it) or a `.src.rpm`.
    pub source: &'a Path,
    pub root: &'a Root,
    /// Binary packages to install first (what the build dependencies name that the
    /// root's distribution does not have).
    pub with: &'a [PathBuf],
    /// Scratch space, emptied first: the layer, the unpacked source, the build.
    pub work: &'a Path,
    /// Where the binary packages are copied.
    pub out: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{0}: not a source package (a .dsc or a .src.rpm)")]
    NotSource(PathBuf),
    #[error("{source_package} is a {kind} source package, but the root is {platform} ({format:?})")]
    WrongRoot {
        source_package: PathBuf,
        kind: &'static str,
        platform: String,
        format: PackageFormat,
    },
    #[error("{what}")]
    Bad { what: String },
    #[error("{step} failed (exit status {status}); its output:\n{output}")]
    Step {
        step: &'static str,
        status: String,
        output: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RebuildError + '_ {
    move |source| RebuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Rebuilds `req.source`; the binary packages written into `req.out`.
pub fn rebuild(
    req: &RebuildRequest,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, RebuildError> {
    let name = req
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = match crate::repo::package::kind_of(&name) {
        Some(crate::store::FileKind::Dsc) => PackageFormat::Deb,
        Some(crate::store::FileKind::Srpm) => PackageFormat::Rpm,
        _ => return Err(RebuildError::NotSource(req.source.to_path_buf())),
    };
    if format != req.root.format {
        return Err(RebuildError::WrongRoot {
            source_package: req.source.to_path_buf(),
            kind: if format == PackageFormat::Deb {
                "Debian"
            } else {
                "RPM"
            },
            platform: req.root.platform.clone(),
            format: req.root.format,
        });
    }
    if req.work.exists() {
        fs::remove_dir_all(req.work).map_err(io_at(req.work))?;
    }
    let src = req.work.join("src");
    let with = req.work.join("with");
    for d in [&src, &with, &req.out.to_path_buf()] {
        fs::create_dir_all(d).map_err(io_at(d))?;
    }
    let work = fs::canonicalize(req.work).map_err(io_at(req.work))?;
    let src = work.join("src");
    let with = work.join("with");
    // The source package whole: a .dsc with the files it names, each checked.
    let bytes = fs::read(req.source).map_err(io_at(req.source))?;
    let parsed = crate::repo::package::parse(&name, &bytes).map_err(|why| RebuildError::Bad {
        what: format!("{}: {why}", req.source.display()),
    })?;
    fs::write(src.join(&name), &bytes).map_err(io_at(&src))?;
    if let crate::repo::package::Parsed::Dsc(dsc) = &parsed {
        let dir = req.source.parent().unwrap_or(Path::new("."));
        for f in &dsc.files {
            let part = fs::read(dir.join(&f.name)).map_err(io_at(&dir.join(&f.name)))?;
            let sums = crate::repo::apt::FileSums::of(&f.name, &part);
            if sums.sha256 != f.sha256 || sums.size != f.size {
                return Err(RebuildError::Bad {
                    what: format!(
                        "{}: not the {} the .dsc names (sha256 {}, it says {})",
                        dir.join(&f.name).display(),
                        f.name,
                        sums.sha256,
                        f.sha256
                    ),
                });
            }
            fs::write(src.join(&f.name), &part).map_err(io_at(&src))?;
        }
    }
    let mut extra = Vec::new();
    for p in req.with {
        let n = p.file_name().unwrap_or_default();
        fs::copy(p, with.join(n)).map_err(io_at(p))?;
        extra.push(format!("./with/{}", n.to_string_lossy()));
    }
    let layer = Layer::over(req.root, &work.join("layer")).map_err(io_at(&work))?;
    layer.mount_points(&[&work]).map_err(io_at(&work))?;
    let quoted = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let extra: Vec<String> = extra.iter().map(|e| quoted(e)).collect();
    let install = match format {
        PackageFormat::Deb => {
            let mut c = String::new();
            if !extra.is_empty() {
                c += &format!(
                    "apt-get install -y -q --no-install-recommends {} && ",
                    extra.join(" ")
                );
            }
            c + &format!(
                "apt-get build-dep -y -q --no-install-recommends {}",
                quoted(&format!("./src/{name}"))
            )
        }
        PackageFormat::Rpm => {
            let mut c = String::new();
            if !extra.is_empty() {
                c += &format!("dnf -y -q install {} && ", extra.join(" "));
            }
            c + &format!("dnf -y -q builddep {}", quoted(&format!("./src/{name}")))
        }
    };
    log(&format!(
        "installing the build dependencies (as root): {install}"
    ));
    let start = std::time::Instant::now();
    let mut cmd = layer.privileged_with(
        &format!("cd {} && {install}", quoted(&work.to_string_lossy())),
        &[&work],
    );
    run("installing the build dependencies", &mut cmd)?;
    log(&format!(
        "installed in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    let build = match format {
        PackageFormat::Deb => format!(
            "dpkg-source -x {} build && cd build && dpkg-buildpackage -b -us -uc",
            quoted(&name)
        ),
        PackageFormat::Rpm => format!(
            "rpmbuild --rebuild --define {} {}",
            quoted(&format!("_topdir {}/rpmbuild", src.display())),
            quoted(&name)
        ),
    };
    log(&format!("building (as nobody, no network): {build}"));
    let start = std::time::Instant::now();
    let sandbox = Sandbox {
        workspace: &work,
        checkout: &src,
        output: &with,
        tree: &work,
    };
    let mut cmd = isolate::rooted(&layer, &sandbox);
    cmd.arg("-c").arg(&build).current_dir(&src);
    run("the build", &mut cmd)?;
    log(&format!("built in {:.1} s", start.elapsed().as_secs_f64()));
    let mut made = Vec::new();
    collect(&src, format, &mut made).map_err(io_at(&src))?;
    let mut out = Vec::new();
    for m in made {
        let to = req.out.join(m.file_name().unwrap_or_default());
        fs::copy(&m, &to).map_err(io_at(&m))?;
        out.push(to);
    }
    out.sort();
    let _ = layer.remove();
    Ok(out)
}

/// Runs `cmd`, which must succeed.
fn run(step: &'static str, cmd: &mut std::process::Command) -> Result<(), RebuildError> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RebuildError::Bad {
            what: format!("{step}: cannot run bwrap: {e}"),
        })?;
    if o.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&o.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&o.stderr));
    // The end of it says why.
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    Err(RebuildError::Step {
        step,
        status: o
            .status
            .code()
            .map_or("by a signal".into(), |c| c.to_string()),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// The binary packages the build wrote below `dir`.
fn collect(dir: &Path, format: PackageFormat, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let n = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            collect(&p, format, out)?;
        } else if match format {
            PackageFormat::Deb => n.ends_with(".deb"),
            PackageFormat::Rpm => n.ends_with(".rpm") && !n.ends_with(".src.rpm"),
        } {
            out.push(p);
        }
    }
    Ok(())
}
