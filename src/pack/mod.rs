//! The packager: a staged prefix and a resolved configuration → the `.tar.gz` plus the
//! platform's `.rpm` or `.deb`, written atomically at their download-from paths.
//!
//! Flow: [`spec`] decides what the package says (pure), [`walk`] reads the prefix once,
//! then [`tarball`], [`rpm`] and [`deb`] write their formats in parallel from the same
//! entries, and [`crate::atomic`] puts the results in place.

pub mod autodeps;
pub mod compress;
pub mod deb;
pub mod debsrc;
pub mod rpm;
pub mod spec;
pub mod srpm;
pub mod tarball;
pub mod walk;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{ResolveError, ResolveOptions, Resolver, Tree};
use crate::layout::{Layout, PackageFormat};
pub use spec::PackageSpec;
use walk::{Entry, EntryKind};

/// Why packing failed. Each says what and where; [`PackError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("the staged prefix {path} does not exist")]
    PrefixMissing { path: PathBuf },
    #[error("the staged prefix {path} is not a directory")]
    PrefixNotDir { path: PathBuf },
    #[error("the staged prefix {path} is empty")]
    PrefixEmpty { path: PathBuf },
    #[error("{path} is {what}; packages hold only files, directories and symlinks")]
    SpecialFile { path: PathBuf, what: &'static str },
    #[error("the file name {path:?} {why}")]
    BadFileName { path: PathBuf, why: String },
    #[error("{what}")]
    Spec { what: String, hint: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the {format} failed: {message}")]
    Format {
        format: &'static str,
        message: String,
    },
}

impl PackError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            PackError::Resolve(e) => e.hint(),
            PackError::PrefixMissing { .. } | PackError::PrefixNotDir { .. } => {
                "give --prefix the directory the install target filled (${prefix})".into()
            }
            PackError::PrefixEmpty { .. } => {
                "run the configuration's install target first; it must copy what ships into \
                 the prefix"
                    .into()
            }
            PackError::SpecialFile { .. } => {
                "remove it from the prefix; create it at install time in a maintainer script".into()
            }
            PackError::BadFileName { .. } => {
                "rename it: names must be UTF-8 without control characters".into()
            }
            PackError::Spec { hint, .. } => hint.clone(),
            PackError::Io { .. } => "check the path and its permissions".into(),
            PackError::Format { .. } => return None,
        })
    }
}

/// Which file an [`Artifact`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactFormat {
    Tgz,
    Rpm,
    Deb,
    /// A file of a Debian source package (`.dsc`, `.orig.tar.gz`, `.debian.tar.xz`).
    #[serde(rename = "deb-source")]
    DebSource,
    /// A source RPM.
    Srpm,
}

/// What `pack --formats` offers (source packages come from `pack --source`).
impl crate::choice::Choice for ArtifactFormat {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (ArtifactFormat::Tgz, "tgz", "the .tar.gz"),
        (ArtifactFormat::Rpm, "rpm", "the RPM (an RPM platform)"),
        (ArtifactFormat::Deb, "deb", "the DEB (a DEB platform)"),
    ];
}

impl ArtifactFormat {
    fn label(self) -> &'static str {
        match self {
            ArtifactFormat::Tgz => "tar.gz",
            ArtifactFormat::Rpm => "RPM",
            ArtifactFormat::Deb => "DEB",
            ArtifactFormat::DebSource => "Debian source",
            ArtifactFormat::Srpm => "source RPM",
        }
    }
}

/// A written file.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub format: ArtifactFormat,
    /// Relative to the output directory: the download-from path.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

pub use crate::progress::{Progress, Quiet};

/// What to pack, and where.
pub struct PackRequest<'a> {
    pub tree: &'a Tree,
    pub layout: &'a Layout,
    pub configuration: &'a str,
    pub options: ResolveOptions,
    pub prefix: &'a Path,
    pub out: &'a Path,
    /// `SOURCE_DATE_EPOCH`, read by the caller.
    pub source_date_epoch: Option<i64>,
    /// What to write; empty means the tarball and the platform's package.
    pub formats: &'a [ArtifactFormat],
}

/// Packs one configuration: resolves it, reads the prefix, writes the tarball and the
/// platform's package, and returns what was written.
pub fn pack(req: &PackRequest, progress: &dyn Progress) -> Result<Vec<Artifact>, PackError> {
    let spec = spec_for(
        req.tree,
        req.layout,
        req.configuration,
        req.options.clone(),
        req.source_date_epoch,
    )?;
    pack_spec(&spec, req.formats, req.prefix, req.out, progress)
}

/// What packing `configuration` says of its package: the configuration resolved in its
/// release, checked, with the date it carries. The only step of a pack that needs the
/// module tree.
pub fn spec_for(
    tree: &Tree,
    layout: &Layout,
    configuration: &str,
    options: ResolveOptions,
    source_date_epoch: Option<i64>,
) -> Result<PackageSpec, PackError> {
    let (resolver, id) = Resolver::for_configuration(tree, layout, options, configuration)?;
    let resolved = resolver.resolve(id)?;
    spec_of(tree, layout, id, &resolved, source_date_epoch)
}

/// [`spec_for`] of a configuration already resolved (`id` in `tree`).
pub fn spec_of(
    tree: &Tree,
    layout: &Layout,
    id: crate::config::ConfigId,
    resolved: &crate::config::ResolvedConfiguration,
    source_date_epoch: Option<i64>,
) -> Result<PackageSpec, PackError> {
    let platform = layout
        .platform(Some(&resolved.platform))
        .map_err(|e| PackError::Spec {
            what: e.to_string(),
            hint: "see `packyard platforms`".into(),
        })?;
    let module_file = &tree.configurations[id].location.file;
    spec::build(&spec::SpecInput {
        tree,
        id,
        resolved,
        platform,
        source_date_epoch,
        committed_at: &|| committed_at(module_file),
        now: chrono::Utc::now().timestamp(),
    })
}

/// Packs the staged `prefix` as `spec` says into `out`: reads the prefix, writes the
/// tarball and the platform's package (or the `formats` asked for) at their download-from
/// paths, and returns what was written. Needs no module tree.
pub fn pack_spec(
    spec: &PackageSpec,
    formats: &[ArtifactFormat],
    prefix: &Path,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Artifact>, PackError> {
    let platform = &spec.platform;
    let native = match platform.format {
        PackageFormat::Rpm => ArtifactFormat::Rpm,
        PackageFormat::Deb => ArtifactFormat::Deb,
    };
    let wanted = |f: ArtifactFormat| formats.is_empty() || formats.contains(&f);
    if let Some(f) = formats
        .iter()
        .find(|f| ![ArtifactFormat::Tgz, native].contains(f))
    {
        return Err(PackError::Spec {
            what: format!(
                "platform {} makes {} packages, not {}",
                platform.name,
                native.label(),
                f.label()
            ),
            hint: format!(
                "ask for tgz and/or {}, or pick a platform of the other kind",
                native.label().to_lowercase()
            ),
        });
    }
    let (want_tgz, want_package) = (wanted(ArtifactFormat::Tgz), wanted(native));
    progress.start("reading", 0);
    let staged = walk::walk(prefix, &|n| progress.advance(n))?;
    let rooted = root_entries(&staged, &spec.install_root);
    let config = config_files(spec, &rooted)?;
    check_owners(spec, &rooted)?;
    let auto = if spec.autoreqprov && want_package {
        autodeps::requirements(&rooted, platform.format)
    } else {
        Vec::new()
    };

    let total: u64 =
        staged.iter().map(Entry::size).sum::<u64>() * (want_tgz as u64 + want_package as u64);
    progress.start("packing", total);
    let on_bytes = |n| progress.advance(n);
    // The two formats compress on two threads; one alone stays on this one.
    let (tgz, package) = std::thread::scope(|s| {
        let run_tgz = || tarball_bytes(spec, &staged, &on_bytes);
        let tgz_thread = (want_tgz && want_package).then(|| s.spawn(run_tgz));
        let package = want_package.then(|| match platform.format {
            PackageFormat::Rpm => {
                let r = rpm::build(spec, &rooted, &config, &auto);
                progress.advance(total / 2);
                r
            }
            PackageFormat::Deb => deb::build(spec, rooted, &config, &auto, &on_bytes),
        });
        let tgz = match tgz_thread {
            Some(t) => Some(t.join().unwrap_or_else(|_| {
                Err(PackError::Format {
                    format: "tar.gz",
                    message: "the tarball writer panicked".into(),
                })
            })),
            None => want_tgz.then(run_tgz),
        };
        (tgz, package)
    });
    progress.finish();

    let mut outputs = Vec::new();
    if let Some(tgz) = tgz {
        outputs.push((ArtifactFormat::Tgz, spec.tarball_path.clone(), tgz?));
    }
    if let Some(package) = package {
        outputs.push((native, spec.package_path.clone(), package?));
    }
    let mut artifacts = Vec::new();
    for (format, path, bytes) in &outputs {
        artifacts.push(Artifact {
            format: *format,
            path: path.clone(),
            size: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
        });
    }
    let files: Vec<(PathBuf, &[u8])> = outputs
        .iter()
        .map(|(_, path, bytes)| (out.join(path), bytes.as_slice()))
        .collect();
    crate::atomic::write_all(&files).map_err(|(path, source)| PackError::Io { path, source })?;
    Ok(artifacts)
}

/// What to make source packages of, from which checkout, and where.
pub struct SourceRequest<'a> {
    pub tree: &'a Tree,
    pub layout: &'a Layout,
    pub configuration: &'a str,
    pub options: ResolveOptions,
    /// The component's checkout (its module directory, as `checkout` made it).
    pub checkout: &'a Path,
    pub out: &'a Path,
    pub source_date_epoch: Option<i64>,
}

/// What a configuration's source packages are made of, besides its checkout: resolved
/// from the tree, so a build node without one (a farm agent) can pack them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourcePlan {
    /// The package's spec, resolved with the source package's own `${prefix}` and
    /// `${stageDir}`.
    pub spec: PackageSpec,
    pub build_depends: Vec<spec::Relation>,
    /// The build-time externals alone (OS packages with their constraints): what a
    /// pristine build root gets installed before the build.
    #[serde(default)]
    pub externals: Vec<spec::Relation>,
    /// `(target, command)` of the targets a source package runs.
    pub targets: Vec<(String, String)>,
}

/// The [`SourcePlan`] of `configuration` in the release context `options`.
pub fn source_plan(
    tree: &Tree,
    layout: &Layout,
    configuration: &str,
    mut options: ResolveOptions,
    source_date_epoch: Option<i64>,
) -> Result<SourcePlan, PackError> {
    // A source package's build has its own prefix and installs its build dependencies
    // into the root (`${stageDir}`): the commands name them so.
    options
        .overrides
        .push(("prefix".into(), debsrc::PREFIX_MARK.into()));
    options.overrides.push(("stageDir".into(), "/".into()));
    let (resolver, id) = Resolver::for_configuration(tree, layout, options, configuration)?;
    let resolved = resolver.resolve(id)?;
    let externals = build_depends_of(&resolved, true);
    Ok(SourcePlan {
        spec: spec_of(tree, layout, id, &resolved, source_date_epoch)?,
        build_depends: build_depends(&resolved),
        externals,
        targets: resolved
            .commands
            .iter()
            .filter(|c| debsrc::SOURCE_TARGETS.iter().any(|(t, _)| *t == c.target))
            .map(|c| (c.target.clone(), c.command.clone()))
            .collect(),
    })
}

/// Writes the source packages of a configuration's platform from its checkout, beside
/// where its binary package goes (the download-from directory), and returns them.
pub fn pack_source(
    req: &SourceRequest,
    progress: &dyn Progress,
) -> Result<Vec<Artifact>, PackError> {
    let plan = source_plan(
        req.tree,
        req.layout,
        req.configuration,
        req.options.clone(),
        req.source_date_epoch,
    )?;
    pack_source_plan(&plan, req.checkout, req.out, progress)
}

/// Writes the source packages `plan` describes from `checkout` (`.git` left out) under
/// `out`, at their download-from directory.
pub fn pack_source_plan(
    plan: &SourcePlan,
    checkout: &Path,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Artifact>, PackError> {
    let spec = &plan.spec;
    progress.start("reading", 0);
    let checkout: Vec<Entry> = walk::walk(checkout, &|n| progress.advance(n))?
        .into_iter()
        .filter(|e| e.path != ".git" && !e.path.starts_with(".git/"))
        .collect();
    let input = debsrc::SourceInput {
        spec,
        build_depends: plan.build_depends.clone(),
        targets: plan.targets.clone(),
        checkout,
    };
    progress.start("packing", 0);
    let (format, files) = match spec.platform.format {
        PackageFormat::Deb => (ArtifactFormat::DebSource, debsrc::debian_source(&input)?),
        PackageFormat::Rpm => {
            let tarball = debsrc::upstream_tarball(&input)?;
            (
                ArtifactFormat::Srpm,
                vec![srpm::source_rpm(&input, &tarball)?],
            )
        }
    };
    progress.finish();
    let dir = Path::new(&spec.package_path)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outputs: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|f| {
            let path = if dir.is_empty() {
                f.name
            } else {
                format!("{dir}/{}", f.name)
            };
            (path, f.bytes)
        })
        .collect();
    let artifacts = outputs
        .iter()
        .map(|(path, bytes)| Artifact {
            format,
            path: path.clone(),
            size: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
        })
        .collect();
    let files: Vec<(PathBuf, &[u8])> = outputs
        .iter()
        .map(|(path, bytes)| (out.join(path), bytes.as_slice()))
        .collect();
    crate::atomic::write_all(&files).map_err(|(path, source)| PackError::Io { path, source })?;
    Ok(artifacts)
}

/// What building a configuration needs installed, as package relations: its build-time
/// externals with their constraints, its internal build dependencies by package name at
/// their resolved `version-age`.
fn build_depends(resolved: &crate::config::ResolvedConfiguration) -> Vec<spec::Relation> {
    build_depends_of(resolved, false)
}

/// [`build_depends`], of the externals only when `externals_only`.
fn build_depends_of(
    resolved: &crate::config::ResolvedConfiguration,
    externals_only: bool,
) -> Vec<spec::Relation> {
    use crate::config::resolve::DependencyType;
    use crate::version::{Clause, Op};
    resolved
        .dependencies
        .iter()
        .filter(|d| {
            matches!(
                d.scope,
                crate::config::Scope::Build | crate::config::Scope::Both
            )
        })
        .filter(|d| !externals_only || d.kind == DependencyType::External)
        .filter_map(|d| {
            if d.kind == DependencyType::External {
                return Some(spec::Relation {
                    name: d.name.clone(),
                    clauses: d.constraint.clone().map(|c| c.0).unwrap_or_default(),
                });
            }
            Some(spec::Relation {
                name: d.package_name.clone()?,
                clauses: vec![Clause {
                    op: Op::Eq,
                    version: d.version.clone()?,
                }],
            })
        })
        .collect()
}

/// The tarball: the prefix as is, paths relative to it.
fn tarball_bytes(
    spec: &PackageSpec,
    staged: &[Entry],
    on_bytes: &dyn Fn(u64),
) -> Result<Vec<u8>, PackError> {
    let owner = |rel: &str| spec.owner(&spec.install_path(rel));
    let style = tarball::TarStyle {
        dpkg: false,
        mtime: u64::try_from(spec.date).unwrap_or(0),
        owner: &owner,
    };
    // A tarball is always gzip; it follows the package's level when that is gzip too.
    let gzip = match spec.compression.algorithm {
        spec::Algorithm::Gzip => spec.compression,
        _ => spec::Compression::GZIP_DEFAULT,
    };
    tarball::compressed(staged, &style, gzip, on_bytes).map_err(|e| PackError::Format {
        format: "tar.gz",
        message: e.to_string(),
    })
}

/// The staged entries placed under `package.prefix` (relative to `/`), with the
/// directories leading to it.
pub fn root_entries(staged: &[Entry], install_root: &str) -> Vec<Entry> {
    let root = install_root.trim_start_matches('/');
    if root.is_empty() {
        return staged.to_vec();
    }
    let mut out: Vec<Entry> = walk::dir_chain(root).map(walk::dir_entry).collect();
    for e in staged {
        let mut e = e.clone();
        e.path = format!("{root}/{}", e.path);
        if let EntryKind::File {
            link_to: Some(first),
            ..
        } = &mut e.kind
        {
            *first = format!("{root}/{first}");
        }
        out.push(e);
    }
    out
}

/// Configuration files: `package.configFiles` plus every regular file under `/etc`
/// (as debhelper does). Each named one must be a regular file of the package.
fn config_files(spec: &PackageSpec, rooted: &[Entry]) -> Result<BTreeSet<String>, PackError> {
    let files: BTreeSet<String> = rooted
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .map(|e| format!("/{}", e.path))
        .collect();
    if let Some(c) = spec.config_files.iter().find(|c| !files.contains(*c)) {
        return Err(PackError::Spec {
            what: format!("package.configFiles names {c}, which is not a file in the package"),
            hint: "give install paths (e.g. /etc/app/app.conf) of regular files the install \
                   target puts in the prefix"
                .into(),
        });
    }
    Ok(files
        .into_iter()
        .filter(|f| f.starts_with("/etc/") || spec.config_files.contains(f))
        .collect())
}

fn check_owners(spec: &PackageSpec, rooted: &[Entry]) -> Result<(), PackError> {
    let paths: HashSet<String> = rooted.iter().map(|e| format!("/{}", e.path)).collect();
    for (p, _, _) in &spec.owners {
        if !paths.contains(p) {
            return Err(PackError::Spec {
                what: format!("package.owner.{p} names a path that is not in the package"),
                hint: "give the install path of a file or directory in the prefix".into(),
            });
        }
    }
    Ok(())
}

/// The last commit time of `file` when it sits in a git work tree (a date that stays
/// the same in every clone), else `None`.
fn committed_at(file: &Path) -> Option<i64> {
    let dir = file.parent()?;
    let name = file.file_name()?;
    // Starting git costs more than a small pack: not where there is no repository.
    if !may_be_in_git(dir) {
        return None;
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct", "--"])
        .arg(name)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Whether `dir` may be in a git work tree: a `.git` in it or above it, or `GIT_DIR` set.
fn may_be_in_git(dir: &Path) -> bool {
    std::env::var_os("GIT_DIR").is_some()
        || std::path::absolute(dir).map_or(true, |d| d.ancestors().any(|a| a.join(".git").exists()))
}
