//! What a package says about itself, decided before any byte is written: names,
//! versions, texts, relations, config files, scripts, changelog, date and compression.
//! Built from a resolved configuration; pure except for reading script files. Every check
//! runs and keeps its refusal ([`refusals`]): `pack` stops at the first, `lint` lists them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::PackError;
use crate::config::{DependencyType, ResolvedConfiguration, Scope, Tree};
use crate::config::{names::package_name_problem, tree::ConfigId};
use crate::layout::{PackageFormat, Platform};
use crate::version::{self, Clause, Constraint, DebVersion, Op, Scheme};

/// One package relation: a name and the version clauses that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub name: String,
    pub clauses: Vec<Clause>,
}

impl Relation {
    /// RPM form, one string per clause (`foo >= 1.2`), or just the name.
    pub fn rpm(&self) -> Vec<String> {
        if self.clauses.is_empty() {
            return vec![self.name.clone()];
        }
        Constraint(self.clauses.clone()).rpm_requires(&self.name)
    }

    /// Debian form: `foo (>= 1.2), foo (<< 2)`, or just the name.
    pub fn deb(&self) -> String {
        if self.clauses.is_empty() {
            return self.name.clone();
        }
        Constraint(self.clauses.clone()).deb_depends(&self.name)
    }
}

/// Relations by kind. RPM and Debian share most; the mapping is in the user guide
/// (docs/guide.md, "Packing").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relations {
    pub requires: Vec<Relation>,
    /// RPM `Requires(pre)`, Debian `Pre-Depends`.
    pub requires_pre: Vec<Relation>,
    /// RPM `Requires(post)`, Debian `Depends` (configured before our postinst runs).
    pub requires_post: Vec<Relation>,
    pub recommends: Vec<Relation>,
    pub provides: Vec<Relation>,
    pub conflicts: Vec<Relation>,
    pub obsoletes: Vec<Relation>,
    pub breaks: Vec<Relation>,
    pub replaces: Vec<Relation>,
}

/// Maintainer scripts' contents, by the moment they run (RPM `%pre`, `%post`, `%preun`,
/// `%postun`; DEB `preinst`, `postinst`, `prerm`, `postrm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scripts {
    pub pre_install: Option<String>,
    pub post_install: Option<String>,
    pub pre_uninstall: Option<String>,
    pub post_uninstall: Option<String>,
}

/// One changelog entry: a configuration of the module, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// `version-age`.
    pub version: String,
    pub date: i64,
    pub author: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Gzip,
    Zstd,
    Xz,
}

/// Payload compression, always with an explicit level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: Algorithm,
    pub level: u32,
}

impl Compression {
    pub const GZIP_DEFAULT: Compression = Compression {
        algorithm: Algorithm::Gzip,
        level: 9,
    };
}

/// Everything the writers need besides the staged files. Plain data: it can be decided
/// where the module tree is and sent to a build node that has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSpec {
    pub name: String,
    pub version: String,
    /// The packaging release: the configuration's age.
    pub release: String,
    pub epoch: Option<u32>,
    pub platform: Platform,
    pub summary: String,
    /// Long description, paragraphs separated by blank lines, lines within 79 columns.
    pub description: String,
    pub license: String,
    pub vendor: Option<String>,
    pub homepage: Option<String>,
    /// `Name <email>`; required for DEB.
    pub maintainer: Option<String>,
    pub group: String,
    pub section: String,
    pub priority: String,
    pub build_host: String,
    pub relations: Relations,
    /// Install paths (absolute) of files marked as configuration.
    pub config_files: Vec<String>,
    pub scripts: Scripts,
    pub changelog: Vec<ChangeEntry>,
    /// Seconds since the epoch: build time and every file's mtime.
    pub date: i64,
    pub compression: Compression,
    /// `package.owner.<install path>` = `user:group`.
    pub owners: Vec<(String, String, String)>,
    /// Where the prefix is installed: `""` for `/`, else `/opt/x` (no trailing slash).
    pub install_root: String,
    /// Whether to derive requirements from ELF files (`package.autoreqprov`).
    pub autoreqprov: bool,
    /// Download-from paths, relative to the output tree.
    pub tarball_path: String,
    pub package_path: String,
}

impl PackageSpec {
    /// `[epoch:]version-release`, the Debian `Version` and RPM EVR.
    pub fn full_version(&self) -> String {
        match self.epoch {
            Some(e) => format!("{e}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }

    /// Where a prefix-relative path is installed (`usr/bin/x` → `/usr/bin/x`).
    pub fn install_path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.install_root)
    }

    /// Owner and group of an installed path: `package.owner.<path>`, else root.
    pub fn owner(&self, install_path: &str) -> (&str, &str) {
        self.owners
            .iter()
            .find(|(p, _, _)| p == install_path)
            .map_or(("root", "root"), |(_, u, g)| (u.as_str(), g.as_str()))
    }
}

/// The inputs beyond the resolved configuration.
pub struct SpecInput<'a> {
    pub tree: &'a Tree,
    pub id: ConfigId,
    pub resolved: &'a ResolvedConfiguration,
    pub platform: &'a Platform,
    /// `SOURCE_DATE_EPOCH` when set.
    pub source_date_epoch: Option<i64>,
    /// The last commit time of the configuration's module.toml, when the tree is in git;
    /// asked only when neither `SOURCE_DATE_EPOCH` nor `package.date` gives the date.
    pub committed_at: &'a dyn Fn() -> Option<i64>,
    /// "Now", used only when `package.date = now` asks for it.
    pub now: i64,
}

/// The date used when nothing else gives one: fixed, so output stays reproducible.
pub const FALLBACK_DATE: i64 = 946_684_800; // 2000-01-01T00:00:00Z

const DAY: i64 = 86_400;

/// What holds a value that pack refuses, so `lint` can point at its file:line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The configuration itself: a value it lacks, or one made of several.
    Configuration,
    /// A property, or a field by its property name (`packageName`, `version`, `license`).
    Property(String),
    /// A dependency of the configuration, by module name or external package name.
    Dependency(String),
}

/// One refusal of the configuration's metadata, and what holds the refused value.
#[derive(Debug)]
pub struct Refusal {
    pub place: Place,
    pub error: PackError,
}

/// The refusals found so far: each check records its own and the others still run, so
/// `lint` hears of them all.
#[derive(Default)]
struct Refusals(Vec<Refusal>);

impl Refusals {
    fn refuse(&mut self, place: Place, error: PackError) {
        self.0.push(Refusal { place, error });
    }

    /// The value, or its default once the refusal is recorded.
    fn take<T: Default>(&mut self, place: Place, r: Result<T, PackError>) -> T {
        r.unwrap_or_else(|error| {
            self.refuse(place, error);
            T::default()
        })
    }
}

fn property(key: &str) -> Place {
    Place::Property(key.to_string())
}

/// Builds and checks the spec; the first refusal is the error.
pub fn build(input: &SpecInput) -> Result<PackageSpec, PackError> {
    let (spec, refusals) = assemble(input);
    match refusals.into_iter().next() {
        Some(r) => Err(r.error),
        None => Ok(spec),
    }
}

/// Every refusal [`build`] would make for the input's platform: what the metadata alone
/// stops from being packed, whatever the staged prefix holds. Empty when it packs.
pub fn refusals(input: &SpecInput) -> Vec<Refusal> {
    assemble(input).1
}

/// The spec and every refusal, in the order `build` checks them. With a refusal the
/// spec holds defaults in place of the refused values and is not to be used.
fn assemble(input: &SpecInput) -> (PackageSpec, Vec<Refusal>) {
    let mut refused = Refusals::default();
    let r = input.resolved;
    let platform = input.platform;
    let format = platform.format;
    let get = |k: &str| r.value(k).map(str::trim).filter(|v| !v.is_empty());
    let conf = &input.tree.configurations[input.id];
    let module = &input.tree.modules[conf.module];

    let name = match get("packageName") {
        Some(n) => {
            refused.take(property("packageName"), check_package_name(n, format));
            n.to_string()
        }
        None => {
            refused.refuse(
                property("packageName"),
                PackError::Spec {
                    what: format!("`{}` has no package name", r.configuration),
                    hint: format!(
                        "set package_name in the [module] of {}",
                        module.location.file.display()
                    ),
                },
            );
            String::new()
        }
    };

    let version = get("version").unwrap_or_default().to_string();
    let release = get("age").unwrap_or_default().to_string();
    let versioned = !version.is_empty() && !release.is_empty();
    if !versioned {
        refused.refuse(
            Place::Configuration,
            PackError::Spec {
                what: format!("`{}` has no version or age", r.configuration),
                hint: "only tagged (_R_) configurations with version and age can be packed".into(),
            },
        );
    }
    let epoch = match get("package.epoch") {
        None => None,
        Some(e) => refused.take(
            property("package.epoch"),
            e.parse::<u32>().map(Some).map_err(|_| PackError::Spec {
                what: format!("package.epoch = `{e}` is not a number"),
                hint: "give a small non-negative integer, or remove it".into(),
            }),
        ),
    };
    if versioned {
        refused.take(
            property("version"),
            check_version(&version, &release, epoch, format),
        );
    }

    let module_description = module
        .fields
        .description
        .clone()
        .unwrap_or_else(|| name.clone());
    let summary = get("package.summary")
        .map(str::to_string)
        .unwrap_or_else(|| first_line(&module_description));
    let summary = summary.trim_end_matches('.').to_string();
    let config_description = strip_version(
        get("description").unwrap_or_default(),
        &format!("{version}-{release}"),
    );
    let description = match get("package.description") {
        Some(d) => wrap(d, 79),
        None => {
            let mut text = format!(
                "{}. Component {} of {}, version {version}-{release}",
                module_description.trim_end_matches('.'),
                r.module,
                get("projectName").unwrap_or("its project"),
            );
            if !config_description.is_empty() && config_description != module_description {
                text.push_str(&format!(": {}", config_description.trim_end_matches('.')));
            }
            text.push('.');
            let mut origin = format!("Built from configuration {}", r.configuration);
            if let Some(tag) = get("tag") {
                origin.push_str(&format!(", tag {tag}"));
            }
            if let Some(vcs) = get("vcsroot") {
                origin.push_str(&format!(" of {vcs}"));
            }
            wrap(&format!("{text}\n\n{origin}."), 79)
        }
    };

    let license = get("license").map(str::to_string).unwrap_or_else(|| {
        refused.refuse(
            property("license"),
            PackError::Spec {
                what: format!("`{}` has no license", r.configuration),
                hint:
                    "set license (an SPDX identifier such as Apache-2.0) in the module or project"
                        .into(),
            },
        );
        String::new()
    });
    let maintainer = get("package.maintainer").map(str::to_string);
    if format == PackageFormat::Deb && maintainer.is_none() {
        refused.refuse(
            property("package.maintainer"),
            PackError::Spec {
                what: format!(
                    "`{}` has no package.maintainer; a Debian package needs one",
                    r.configuration
                ),
                hint: "set the property package.maintainer = \"Name <email>\" (in the project \
                       configuration to cover every component)"
                    .into(),
            },
        );
    }

    let relations = relations(r, format, &mut refused);
    if format == PackageFormat::Deb {
        // The control file's own check, made before the prefix is read.
        for (_, field) in super::deb::relation_fields(&relations) {
            refused.take(Place::Configuration, field);
        }
    }
    let install_root = refused.take(
        property("package.prefix"),
        install_root(get("package.prefix")),
    );
    let config_files = refused.take(
        property("package.configFiles"),
        config_files(get("package.configFiles"), &install_root),
    );
    let owners = owners(r, &mut refused);
    let dir = module_dir(input);
    let mut script = |key: &str| refused.take(property(key), read_script(r, &dir, key));
    let scripts = Scripts {
        pre_install: script("package.preInstall"),
        post_install: script("package.postInstall"),
        pre_uninstall: script("package.preUninstall"),
        post_uninstall: script("package.postUninstall"),
    };
    let date = refused.take(property("package.date"), build_date(input));
    let author = maintainer
        .clone()
        .or_else(|| get("vendor").map(str::to_string))
        .unwrap_or_else(|| get("projectName").unwrap_or("packyard").to_string());
    let changelog = changelog(input, date, &author, format);
    let compression = compression(r, format, &mut refused);
    let (tarball_path, package_path) = match &r.download {
        None => {
            refused.refuse(
                Place::Configuration,
                PackError::Spec {
                    what: format!("`{}` has no download-from paths", r.configuration),
                    hint: "only components can be packed".into(),
                },
            );
            Default::default()
        }
        Some(download) => {
            for p in [&download.tarball, &download.package] {
                refused.take(Place::Configuration, check_relative(p));
            }
            (download.tarball.clone(), download.package.clone())
        }
    };

    let spec = PackageSpec {
        name,
        version,
        release,
        epoch,
        platform: platform.clone(),
        summary,
        description,
        license,
        vendor: get("vendor").map(str::to_string),
        homepage: get("homepage").map(str::to_string),
        maintainer,
        group: get("package.group")
            .unwrap_or("Applications/System")
            .to_string(),
        section: get("package.section").unwrap_or("misc").to_string(),
        priority: get("package.priority").unwrap_or("optional").to_string(),
        build_host: get("package.buildHost").unwrap_or("localhost").to_string(),
        relations,
        config_files,
        scripts,
        changelog,
        date,
        compression,
        owners,
        install_root,
        autoreqprov: !matches!(
            get("package.autoreqprov")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("no" | "false" | "0" | "off")
        ),
        tarball_path,
        package_path,
    };
    (spec, refused.0)
}

/// `package.prefix` as the install root: `""` for `/`, else an absolute path without a
/// trailing `/`.
fn install_root(prefix: Option<&str>) -> Result<String, PackError> {
    match prefix.unwrap_or("/").trim_end_matches('/') {
        "" => Ok(String::new()),
        p if p.starts_with('/') && !p.split('/').any(|c| c == "..") => Ok(p.to_string()),
        p => Err(PackError::Spec {
            what: format!("package.prefix = `{p}` is not an absolute path"),
            hint: "give the install location, e.g. / or /opt/my-project".into(),
        }),
    }
}

/// `package.configFiles`, comma-separated install paths. Only a plain absolute path below
/// the install root can name a file of the package; any other is refused here, before
/// the prefix is read.
fn config_files(value: Option<&str>, install_root: &str) -> Result<Vec<String>, PackError> {
    let mut out = Vec::new();
    for c in value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let plain = c.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
        });
        let inside = c
            .strip_prefix(install_root)
            .is_some_and(|rest| rest.starts_with('/'));
        if !plain || !inside {
            let root = if install_root.is_empty() {
                "/"
            } else {
                install_root
            };
            return Err(PackError::Spec {
                what: format!(
                    "package.configFiles names `{c}`, which is not a plain absolute path \
                     below the install root {root}"
                ),
                hint: "give install paths (e.g. /etc/app/app.conf) of regular files the install \
                       target puts in the prefix, below package.prefix"
                    .into(),
            });
        }
        out.push(c.to_string());
    }
    Ok(out)
}

/// Descriptions often start with their own version (`2.5.1-1: ...`): drop it.
fn strip_version<'t>(text: &'t str, version_age: &str) -> &'t str {
    text.strip_prefix(version_age)
        .and_then(|t| t.strip_prefix(':'))
        .map_or(text, str::trim)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

/// Refuses a download-from path that would land outside the output tree.
fn check_relative(p: &str) -> Result<(), PackError> {
    if p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty() || c == ".") {
        return Err(PackError::Spec {
            what: format!("the download-from path `{p}` is not a plain relative path"),
            hint: "fix download_from or the layout template: no leading /, no `..`, no `//`".into(),
        });
    }
    Ok(())
}

pub fn check_package_name(name: &str, format: PackageFormat) -> Result<(), PackError> {
    let problem = match format {
        PackageFormat::Deb => package_name_problem(name),
        PackageFormat::Rpm => {
            if name.starts_with('-') || name.is_empty() {
                Some("must start with a letter or a digit".to_string())
            } else {
                name.chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || "._+-".contains(*c)))
                    .map(|c| format!("`{c}` is not allowed (only letters, digits, . _ + -)"))
            }
        }
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(PackError::Spec {
            what: format!(
                "`{name}` is not a valid {} package name: {why}",
                format_name(format)
            ),
            hint: format!(
                "change package_name in module.toml (e.g. `{}`)",
                name.to_ascii_lowercase().replace('_', "-")
            ),
        }),
    }
}

fn format_name(f: PackageFormat) -> &'static str {
    match f {
        PackageFormat::Rpm => "RPM",
        PackageFormat::Deb => "Debian",
    }
}

fn check_version(
    version: &str,
    release: &str,
    epoch: Option<u32>,
    format: PackageFormat,
) -> Result<(), PackError> {
    let bad = |why: String| PackError::Spec {
        what: format!("version `{version}-{release}` cannot be used: {why}"),
        hint: "versions are digits and letters joined by `.`, `+` or `~`".into(),
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ".+~_^".contains(c);
    if let Some(c) = version
        .chars()
        .chain(release.chars())
        .find(|c| !ok_char(*c))
    {
        return Err(bad(format!("`{c}` is not allowed")));
    }
    if format == PackageFormat::Deb {
        let full = match epoch {
            Some(e) => format!("{e}:{version}-{release}"),
            None => format!("{version}-{release}"),
        };
        DebVersion::parse(&full).map_err(|e| bad(e.to_string()))?;
        if version.contains('_') || release.contains('_') {
            return Err(bad("`_` is not allowed in Debian versions".into()));
        }
    }
    Ok(())
}

/// Runtime relations from the configuration's dependencies and the `package.*` lists;
/// a refused entry is left out.
fn relations(
    r: &ResolvedConfiguration,
    format: PackageFormat,
    refused: &mut Refusals,
) -> Relations {
    let mut rel = Relations::default();
    for d in &r.dependencies {
        if d.scope == Scope::Build {
            continue;
        }
        let at = Place::Dependency(d.name.clone());
        let name = match (d.kind, &d.package_name) {
            (DependencyType::External, _) => d.name.clone(),
            (_, Some(n)) => n.clone(),
            (_, None) => {
                refused.refuse(
                    at,
                    PackError::Spec {
                        what: format!(
                            "runtime dependency {} of `{}` has no package name",
                            d.name, r.configuration
                        ),
                        hint: format!("set package_name in the module {}", d.name),
                    },
                );
                continue;
            }
        };
        if let Err(e) = check_package_name(&name, format) {
            refused.refuse(at, e);
            continue;
        }
        let clauses = match d.kind {
            DependencyType::External | DependencyType::Constrained => d
                .constraint
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            DependencyType::Dynamic => at_version(Op::Ge, &d.version),
            DependencyType::Static => at_version(Op::Eq, &d.version),
        };
        rel.requires.push(Relation { name, clauses });
    }
    let lists: [(&str, &mut Vec<Relation>); 9] = [
        ("package.requires", &mut rel.requires),
        ("package.requiresPre", &mut rel.requires_pre),
        ("package.requiresPost", &mut rel.requires_post),
        ("package.recommends", &mut rel.recommends),
        ("package.provides", &mut rel.provides),
        ("package.conflicts", &mut rel.conflicts),
        ("package.obsoletes", &mut rel.obsoletes),
        ("package.breaks", &mut rel.breaks),
        ("package.replaces", &mut rel.replaces),
    ];
    for (key, into) in lists {
        if let Some(v) = r.value(key) {
            into.extend(refused.take(property(key), parse_relations(key, v)));
        }
    }
    rel
}

fn at_version(op: Op, version: &Option<String>) -> Vec<Clause> {
    version
        .iter()
        .map(|v| Clause {
            op,
            version: v.clone(),
        })
        .collect()
}

/// `foo >= 1.2, bar, baz < 2` → relations. Each entry is a name and at most one clause;
/// name an entry twice for a range.
pub fn parse_relations(key: &str, text: &str) -> Result<Vec<Relation>, PackError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let split = part.find(|c: char| c.is_whitespace() || "<>=".contains(c));
        let (name, rest) = match split {
            Some(i) => (&part[..i], part[i..].trim()),
            None => (part, ""),
        };
        let bad = |why: String| PackError::Spec {
            what: format!("{key}: `{part}` {why}"),
            hint: "write entries as `name`, or `name OP version` with OP one of < <= = >= >, \
                   separated by commas"
                .into(),
        };
        if name.is_empty() {
            return Err(bad("has no package name".into()));
        }
        let clauses = if rest.is_empty() {
            Vec::new()
        } else {
            rest.parse::<Constraint>()
                .map_err(|e| bad(e.to_string()))?
                .0
        };
        out.push(Relation {
            name: name.to_string(),
            clauses,
        });
    }
    Ok(out)
}

/// `package.owner.<path>` = `user:group`, each checked on its own.
fn owners(r: &ResolvedConfiguration, refused: &mut Refusals) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (key, p) in &r.properties {
        let Some(path) = key.strip_prefix("package.owner.") else {
            continue;
        };
        let (user, group) = p.value.split_once(':').unwrap_or((&p.value, &p.value));
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !path.starts_with('/') || !valid(user) || !valid(group) {
            refused.refuse(
                property(key),
                PackError::Spec {
                    what: format!("{key} = `{}` is not an owner of an absolute path", p.value),
                    hint: "write \"package.owner./var/lib/app\" = \"user:group\"".into(),
                },
            );
            continue;
        }
        out.push((
            path.trim_end_matches('/').to_string(),
            user.into(),
            group.into(),
        ));
    }
    out
}

fn module_dir(input: &SpecInput) -> PathBuf {
    let conf = &input.tree.configurations[input.id];
    conf.location
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Reads the maintainer script named by `key` (`package.preInstall`, `package.postInstall`,
/// `package.preUninstall`, `package.postUninstall`); a relative name is relative to the
/// module's folder in the tree.
fn read_script(
    r: &ResolvedConfiguration,
    module_dir: &Path,
    key: &str,
) -> Result<Option<String>, PackError> {
    let Some(file) = r.value(key).map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = module_dir.join(file);
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| PackError::Spec {
            what: format!("{key}: cannot read the script {}: {e}", path.display()),
            hint: "give a path relative to the module's folder, or an absolute one".into(),
        })
}

/// `YYYY-MM-DD`, RFC 3339, or seconds since the epoch.
fn parse_date(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.timestamp());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
}

/// `SOURCE_DATE_EPOCH`, else `package.date` (`now` asks for the current time), else the
/// module file's last commit, else a fixed date. Never the current time unless asked.
fn build_date(input: &SpecInput) -> Result<i64, PackError> {
    if let Some(d) = input.source_date_epoch {
        return Ok(d);
    }
    if let Some(text) = input.resolved.value("package.date").map(str::trim) {
        if text == "now" {
            return Ok(input.now);
        }
        return parse_date(text).ok_or_else(|| PackError::Spec {
            what: format!("package.date = `{text}` is not a date"),
            hint: "write YYYY-MM-DD, an RFC 3339 time, seconds since 1970, or `now`".into(),
        });
    }
    Ok((input.committed_at)().unwrap_or(FALLBACK_DATE))
}

/// One entry per configuration of the module up to this one, newest first. Dates fall
/// strictly (Debian requires it): an entry's own `package.date` when earlier than the
/// next newer entry's, else one day before it.
fn changelog(
    input: &SpecInput,
    date: i64,
    author: &str,
    format: PackageFormat,
) -> Vec<ChangeEntry> {
    let scheme = match format {
        PackageFormat::Rpm => Scheme::Rpm,
        PackageFormat::Deb => Scheme::Deb,
    };
    let tree = input.tree;
    let this = &tree.configurations[input.id];
    let Some(current) = this.version_age() else {
        return Vec::new();
    };
    let mut confs: Vec<_> = tree.modules[this.module]
        .configurations
        .iter()
        .map(|&id| &tree.configurations[id])
        .filter_map(|c| c.version_age().map(|v| (v, c)))
        .filter(|(v, _)| version::compare(scheme, v, &current).is_le())
        .collect();
    confs.sort_by(|a, b| version::compare(scheme, &b.0, &a.0));
    confs.dedup_by(|a, b| a.0 == b.0);
    let mut out: Vec<ChangeEntry> = Vec::new();
    for (v, c) in confs {
        let own = c
            .properties
            .iter()
            .find(|p| p.key == "package.date")
            .and_then(|p| parse_date(p.value.trim()));
        let date = match out.last() {
            None => date,
            Some(newer) => match own {
                Some(d) if d < newer.date => d,
                _ => newer.date - DAY,
            },
        };
        let text = c
            .fields
            .description
            .clone()
            .unwrap_or_else(|| format!("Version {v}"));
        let text = strip_version(&text, &v).to_string();
        out.push(ChangeEntry {
            version: v,
            date,
            author: author.to_string(),
            text,
        });
    }
    out
}

/// `package.compression` and `package.compressionLevel`; gzip at its default when refused.
fn compression(
    r: &ResolvedConfiguration,
    format: PackageFormat,
    refused: &mut Refusals,
) -> Compression {
    let name = r.value("package.compression").unwrap_or("gzip").trim();
    let (algorithm, default, max) = match name {
        "gzip" | "gz" => (Algorithm::Gzip, 9, 9),
        "zstd" | "zst" => (Algorithm::Zstd, 19, 22),
        "xz" => (Algorithm::Xz, 6, 9),
        other => {
            refused.refuse(
                property("package.compression"),
                PackError::Spec {
                    what: format!("package.compression = `{other}` is not known"),
                    hint: "use gzip (default, readable by every rpm and dpkg), zstd or xz".into(),
                },
            );
            return Compression::GZIP_DEFAULT;
        }
    };
    if algorithm == Algorithm::Xz && format == PackageFormat::Rpm {
        refused.refuse(
            property("package.compression"),
            PackError::Spec {
                what: "xz-compressed RPM payloads are not supported".into(),
                hint: "use package.compression = zstd (smaller and faster) or gzip for RPM \
                       platforms"
                    .into(),
            },
        );
    }
    let level = match r.value("package.compressionLevel").map(str::trim) {
        None | Some("") => default,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= max && (n >= 1 || algorithm != Algorithm::Zstd) => n,
            _ => {
                refused.refuse(
                    property("package.compressionLevel"),
                    PackError::Spec {
                        what: format!(
                            "package.compressionLevel = `{l}` is out of range for {name}"
                        ),
                        hint: format!("give a level from 1 to {max}"),
                    },
                );
                default
            }
        },
    };
    Compression { algorithm, level }
}

/// Wraps each paragraph to `width` columns; blank lines separate paragraphs.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
        if !lines.is_empty() {
            out.push(lines.join("\n"));
        }
    }
    out.join("\n\n")
}

/// `Sat, 21 Nov 2026 00:00:00 +0000`, the date form of Debian changelogs.
pub fn rfc2822(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// A package spec for unit tests: `a` 1.0-1 for el9_x86_64, one owner set.
#[cfg(test)]
pub(crate) fn sample() -> PackageSpec {
    use crate::layout::{PackageFormat, Platform};
    PackageSpec {
        name: "a".into(),
        version: "1.0".into(),
        release: "1".into(),
        epoch: None,
        platform: Platform {
            name: "el9_x86_64".into(),
            os: "el9".into(),
            format: PackageFormat::Rpm,
            rpm_arch: "x86_64".into(),
            deb_arch: "amd64".into(),
            lib_dir: "lib64".into(),
        },
        summary: "A".into(),
        description: "A package.".into(),
        license: "MIT".into(),
        vendor: None,
        homepage: None,
        maintainer: None,
        group: "Applications/System".into(),
        section: "misc".into(),
        priority: "optional".into(),
        build_host: "localhost".into(),
        relations: Relations::default(),
        config_files: Vec::new(),
        scripts: Scripts::default(),
        changelog: Vec::new(),
        date: 1_700_000_000,
        compression: Compression::GZIP_DEFAULT,
        owners: vec![("/var/lib/a/state".into(), "nobody".into(), "nobody".into())],
        install_root: String::new(),
        autoreqprov: false,
        tarball_path: "a.tar.gz".into(),
        package_path: "a.rpm".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_parse_and_render() {
        let r = parse_relations("package.requires", "foo >= 1.2, bar,baz<2").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].rpm(), ["foo >= 1.2"]);
        assert_eq!(r[0].deb(), "foo (>= 1.2)");
        assert_eq!(r[1].deb(), "bar");
        assert_eq!(r[2].deb(), "baz (<< 2)");
        assert!(parse_relations("k", "foo 1.2").is_err());
        assert!(parse_relations("k", ">= 1").is_err());
    }

    #[test]
    fn wrapping_keeps_paragraphs() {
        let w = wrap("aaa bbb ccc\n\nddd", 7);
        assert_eq!(w, "aaa bbb\nccc\n\nddd");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2000-01-01"), Some(FALLBACK_DATE));
        assert_eq!(parse_date("946684800"), Some(FALLBACK_DATE));
        assert_eq!(rfc2822(FALLBACK_DATE), "Sat, 01 Jan 2000 00:00:00 +0000");
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn config_files_are_plain_paths_below_the_install_root() {
        let ok = config_files(Some("/etc/a.conf, /etc/b,"), "").unwrap();
        assert_eq!(ok, ["/etc/a.conf", "/etc/b"]);
        assert!(config_files(None, "").unwrap().is_empty());
        for bad in ["etc/a", "/etc//a", "/etc/../a", "/etc/a/", "/etc/./a", "/"] {
            assert!(config_files(Some(bad), "").is_err(), "{bad}");
        }
        assert!(config_files(Some("/opt/x/etc/a"), "/opt/x").is_ok());
        assert!(config_files(Some("/etc/a"), "/opt/x").is_err());
        assert!(config_files(Some("/opt/xy/a"), "/opt/x").is_err());
    }

    #[test]
    fn debian_names_are_checked() {
        assert!(check_package_name("my_pkg", PackageFormat::Deb).is_err());
        assert!(check_package_name("My-pkg", PackageFormat::Deb).is_err());
        assert!(check_package_name("my_pkg", PackageFormat::Rpm).is_ok());
        assert!(check_package_name("my pkg", PackageFormat::Rpm).is_err());
    }

    #[test]
    fn a_spec_goes_to_a_build_node_whole() {
        // Decided where the tree is, sent as JSON to a node that has none.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let tree = Tree::load(&root.join("fixtures/trees/my-project")).unwrap();
        let layout = crate::layout::Layout::builtin();
        for platform in ["el9_x86_64", "deb12_amd64"] {
            let options = crate::config::ResolveOptions {
                platform: Some(platform.into()),
                ..Default::default()
            };
            let spec =
                crate::pack::spec_for(&tree, &layout, "web_server_R_2_5_1_1", options, Some(1))
                    .unwrap();
            let sent: PackageSpec =
                serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(sent, spec);
            assert!(!spec.relations.requires.is_empty() || !spec.changelog.is_empty());
        }
    }
}
