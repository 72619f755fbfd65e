//! Resolving a configuration: merged properties with origins, expanded commands,
//! dependencies bound to configurations, and download-from paths. What `packyard show`
//! prints and what packaging, publishing and building read.
//!
//! Pure logic over a loaded [`Tree`] and [`Layout`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;

use super::model::{ModuleKind, Scope};
use super::names::parse_mmr;
use super::properties::{DepScope, Expander, Origin, PropertyError, RawProperty};
use super::tree::{ConfigId, ModuleId, Tree};
use crate::layout::{Layout, PackageFormat, Platform, UnknownPlatform};
use crate::version::{self, Constraint, ConstraintError, Scheme};

/// Inputs beyond the tree: what the command line says.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    pub platform: Option<String>,
    /// The project configuration giving the release context; found from the tree if `None`.
    pub project: Option<String>,
    /// `-p KEY=VALUE`, in order (a later one wins).
    pub overrides: Vec<(String, String)>,
    /// `--defaults NAME`, loaded, in order (a later one wins; `-p` over all).
    pub profiles: Vec<super::profile::Profile>,
    /// `${workspaceDir}`; the layout's default (relative to the current directory) if `None`.
    pub workspace: Option<PathBuf>,
}

/// A property with its final value.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedProperty {
    pub value: String,
    /// The text before expansion, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    pub origin: Origin,
}

/// How a dependency names its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyType {
    Dynamic,
    Constrained,
    Static,
    External,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedDependency {
    /// Full dotted module name, or the OS package name for an external dependency.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DependencyType,
    pub scope: Scope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    /// The configuration it resolved to (not for external ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<String>,
    /// `version-age` of that configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    /// Why this configuration was chosen.
    pub reason: String,
    #[serde(skip)]
    pub config_id: Option<ConfigId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub target: String,
    pub command: String,
}

/// Where the configuration's packages live (relative to an output tree or repository).
#[derive(Debug, Clone, Serialize)]
pub struct DownloadPaths {
    pub tarball: String,
    /// The RPM or DEB path, by the platform's format.
    pub package: String,
    pub format: PackageFormat,
}

/// A configuration with everything resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedConfiguration {
    pub configuration: String,
    pub module: String,
    pub kind: ModuleKind,
    /// The release context: project and subsystem configurations above this one.
    pub project: Option<String>,
    pub subsystem: Option<String>,
    pub platform: String,
    pub properties: BTreeMap<String, ResolvedProperty>,
    pub dependencies: Vec<ResolvedDependency>,
    pub commands: Vec<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadPaths>,
}

impl ResolvedConfiguration {
    pub fn value(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(|p| p.value.as_str())
    }
}

/// Why a configuration cannot be resolved. Each says which configuration and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("no configuration named `{name}` in the tree")]
    UnknownConfiguration { name: String, similar: Vec<String> },
    #[error("`{project}` is not a project configuration")]
    NotAProject { project: String },
    #[error("{configuration} is not part of the release {project}")]
    NotInRelease {
        configuration: String,
        project: String,
    },
    #[error(transparent)]
    Property(#[from] PropertyError),
    #[error(transparent)]
    Platform(#[from] UnknownPlatformError),
    #[error("{configuration}: dependency on unknown module `{module}`")]
    UnknownModule {
        configuration: String,
        module: String,
    },
    #[error("{configuration} needs {module}, which profile {profile} disables")]
    Disabled {
        configuration: String,
        module: String,
        profile: String,
    },
    #[error("{configuration}: {message}")]
    BadDependency {
        configuration: String,
        message: String,
    },
    #[error("{configuration}: no version of `{module}` to use: {}", match .project {
        Some(p) => format!("no `{module}.DEFAULT` property in {p} and the release holds no configuration of it"),
        None => format!("{configuration} is in no release (no project configuration lists it), so nothing sets `{module}.DEFAULT`"),
    })]
    NoDefault {
        configuration: String,
        module: String,
        project: Option<String>,
    },
    #[error(
        "{configuration}: `{module}` must satisfy `{constraint}`, but the release uses {chosen} ({version})"
    )]
    ConstraintUnsatisfied {
        configuration: String,
        module: String,
        constraint: String,
        chosen: String,
        version: String,
    },
    #[error("{configuration}: bad constraint for `{module}`: {error}")]
    BadConstraint {
        configuration: String,
        module: String,
        error: ConstraintError,
    },
    #[error("configurations read each other's properties in a cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
}

/// [`UnknownPlatform`] made cloneable for [`ResolveError`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct UnknownPlatformError(pub String);

impl From<UnknownPlatform> for ResolveError {
    fn from(e: UnknownPlatform) -> Self {
        ResolveError::Platform(UnknownPlatformError(e.to_string()))
    }
}

impl ResolveError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            ResolveError::UnknownConfiguration { similar, .. } if !similar.is_empty() => {
                format!("did you mean: {}?", similar.join(", "))
            }
            ResolveError::UnknownConfiguration { .. } => {
                "check the name and --tree; `packyard lint TREE` lists what the tree holds".into()
            }
            ResolveError::NotAProject { .. } => "--project takes a configuration of the project module".into(),
            ResolveError::NotInRelease { .. } => {
                "pick a project configuration whose children (directly or through a subsystem) include it, or omit --project".into()
            }
            ResolveError::Property(e) => e.hint().into(),
            ResolveError::Platform(_) => "pass --platform with one of the names listed (repo-layout/platforms.toml)".into(),
            ResolveError::UnknownModule { .. } => "fix the dependency's `module` (a full dotted name) or add the module to the tree".into(),
            ResolveError::Disabled { profile, configuration, .. } => format!(
                "leave {configuration} out too (--only, or the profile's `disable`), or build without profile {profile}"
            ),
            ResolveError::BadDependency { .. } => "see DESIGN §2 for the dependency keys".into(),
            ResolveError::NoDefault { module, .. } => format!(
                "add \"{module}.DEFAULT\" = \"<configuration>\" to the project configuration's properties, or -p {module}.DEFAULT=<configuration>"
            ),
            ResolveError::ConstraintUnsatisfied { module, .. } => format!(
                "the latest configuration of {module} in the release (or {module}.DEFAULT) must \
                 be inside the range: change the release's children or {module}.DEFAULT, or \
                 the constraint"
            ),
            ResolveError::BadConstraint { .. } => "write constraints like `>= 1.2.0` or `>= 1.2, < 2`".into(),
            ResolveError::Cycle { .. } => "break the cycle: a ${dep.KEY} must not lead back to the configuration reading it".into(),
        }
    }
}

/// The configurations a project configuration groups, with each one's chain of parents.
#[derive(Debug, Clone)]
pub struct Release {
    pub project: ConfigId,
    /// Member → its parent configurations, project first.
    pub parents: HashMap<ConfigId, Vec<ConfigId>>,
    /// Module → its configurations in the release.
    pub by_module: HashMap<ModuleId, Vec<ConfigId>>,
}

impl Release {
    /// Walks `children` from `project` down. Unknown children are skipped (lint reports them).
    pub fn of(tree: &Tree, project: ConfigId) -> Release {
        let mut release = Release {
            project,
            parents: HashMap::new(),
            by_module: HashMap::new(),
        };
        let mut stack = vec![(project, Vec::new())];
        let mut seen = HashSet::new();
        while let Some((id, chain)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let c = &tree.configurations[id];
            release.by_module.entry(c.module).or_default().push(id);
            if let Some((children, _)) = &c.children {
                let mut below = chain.clone();
                below.push(id);
                for child in children.iter().rev() {
                    if let Some(cid) = tree.configuration(child) {
                        stack.push((cid, below.clone()));
                    }
                }
            }
            release.parents.insert(id, chain);
        }
        release
    }

    pub fn contains(&self, id: ConfigId) -> bool {
        self.parents.contains_key(&id)
    }

    /// Makes `cid` the release's configuration of module `mid` (which it is of), in the
    /// place of the one there (with its parents); nothing when the module is no member.
    pub fn choose(&mut self, mid: ModuleId, cid: ConfigId) {
        let Some(members) = self.by_module.get(&mid) else {
            return;
        };
        let parents = members
            .first()
            .and_then(|m| self.parents.get(m))
            .cloned()
            .unwrap_or_default();
        for id in self.by_module.remove(&mid).unwrap_or_default() {
            self.parents.remove(&id);
        }
        self.by_module.insert(mid, vec![cid]);
        self.parents.insert(cid, parents);
    }

    /// Leaves module `mid`'s configurations out of the release.
    pub fn leave_out(&mut self, mid: ModuleId) {
        for id in self.by_module.remove(&mid).unwrap_or_default() {
            self.parents.remove(&id);
        }
    }

    /// The project configurations whose releases contain `id`.
    pub fn containing(tree: &Tree, id: ConfigId) -> Vec<Release> {
        tree.configurations
            .iter()
            .enumerate()
            .filter(|(_, c)| tree.modules[c.module].kind == ModuleKind::Project)
            .map(|(pid, _)| Release::of(tree, pid))
            .filter(|r| r.contains(id))
            .collect()
    }
}

/// The newest of `ids` by `version-age` (RPM ordering); configurations without a version
/// last; on a tie the first one stays (so an explicit `.DEFAULT` listed first wins ties).
pub fn latest(tree: &Tree, ids: impl IntoIterator<Item = ConfigId>) -> Option<ConfigId> {
    let newer = |a: ConfigId, b: ConfigId| {
        let va = tree.configurations[a].version_age();
        let vb = tree.configurations[b].version_age();
        match (va, vb) {
            (Some(x), Some(y)) => version::compare(Scheme::Rpm, &x, &y).is_gt(),
            (x, y) => x.is_some() && y.is_none(),
        }
    };
    ids.into_iter().fold(None, |best, id| match best {
        Some(b) if !newer(id, b) => Some(b),
        _ => Some(id),
    })
}

/// Resolves configurations of one tree in one release context and platform, caching each.
pub struct Resolver<'a> {
    tree: &'a Tree,
    layout: &'a Layout,
    platform: &'a Platform,
    options: ResolveOptions,
    release: Option<Release>,
    workspace: PathBuf,
    cache: RefCell<HashMap<ConfigId, Rc<ResolvedConfiguration>>>,
    in_progress: RefCell<Vec<ConfigId>>,
}

impl<'a> Resolver<'a> {
    /// A resolver for `configuration` and everything it depends on.
    pub fn for_configuration(
        tree: &'a Tree,
        layout: &'a Layout,
        options: ResolveOptions,
        configuration: &str,
    ) -> Result<(Resolver<'a>, ConfigId), ResolveError> {
        let id = tree.configuration(configuration).ok_or_else(|| {
            ResolveError::UnknownConfiguration {
                name: configuration.to_string(),
                similar: tree
                    .similar_configurations(configuration)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            }
        })?;
        let release = match &options.project {
            Some(p) => {
                let pid = project(tree, p)?;
                let r = Release::of(tree, pid);
                if !r.contains(id) {
                    return Err(ResolveError::NotInRelease {
                        configuration: configuration.to_string(),
                        project: p.clone(),
                    });
                }
                Some(r)
            }
            None => {
                // Several releases may hold it; the latest project configuration wins.
                let releases = Release::containing(tree, id);
                let newest = latest(tree, releases.iter().map(|r| r.project));
                releases.into_iter().find(|r| Some(r.project) == newest)
            }
        };
        Ok((Resolver::new(tree, layout, options, release)?, id))
    }

    /// A resolver for the members of `release` (what `lint` and `build` walk).
    pub fn new(
        tree: &'a Tree,
        layout: &'a Layout,
        options: ResolveOptions,
        release: Option<Release>,
    ) -> Result<Resolver<'a>, ResolveError> {
        let platform = layout.platform(options.platform.as_deref())?;
        let ws = options.workspace.clone().unwrap_or_else(|| {
            PathBuf::from(layout.system.get("workspaceDir").map_or("workspace", |s| s))
        });
        let workspace = absolute(&ws);
        // The modules a profile disables are no part of the release, and a module whose
        // `<module>.DEFAULT` a profile sets is built in the configuration it names.
        let release = release.map(|mut r| {
            for p in &options.profiles {
                for (key, value, _) in &p.properties {
                    let chosen = key
                        .strip_suffix(".DEFAULT")
                        .and_then(|m| tree.module(m))
                        .zip(tree.configuration(value))
                        .filter(|(mid, cid)| tree.configurations[*cid].module == *mid);
                    if let Some((mid, cid)) = chosen {
                        r.choose(mid, cid);
                    }
                }
                for (m, _) in &p.disable {
                    if let Some(mid) = tree.module(m) {
                        r.leave_out(mid);
                    }
                }
            }
            r
        });
        Ok(Resolver {
            tree,
            layout,
            platform,
            options,
            release,
            workspace,
            cache: RefCell::new(HashMap::new()),
            in_progress: RefCell::new(Vec::new()),
        })
    }

    pub fn release(&self) -> Option<&Release> {
        self.release.as_ref()
    }

    pub fn platform(&self) -> &Platform {
        self.platform
    }

    pub fn options(&self) -> &ResolveOptions {
        &self.options
    }

    /// Resolves configuration `id` (cached).
    pub fn resolve(&self, id: ConfigId) -> Result<Rc<ResolvedConfiguration>, ResolveError> {
        if let Some(r) = self.cache.borrow().get(&id) {
            return Ok(r.clone());
        }
        {
            let mut stack = self.in_progress.borrow_mut();
            if let Some(pos) = stack.iter().position(|x| *x == id) {
                let mut chain: Vec<String> = stack[pos..]
                    .iter()
                    .map(|c| self.tree.configurations[*c].name.clone())
                    .collect();
                chain.push(self.tree.configurations[id].name.clone());
                return Err(ResolveError::Cycle { chain });
            }
            stack.push(id);
        }
        let result = self.compute(id);
        self.in_progress.borrow_mut().pop();
        let resolved = Rc::new(result?);
        self.cache.borrow_mut().insert(id, resolved.clone());
        Ok(resolved)
    }

    fn compute(&self, id: ConfigId) -> Result<ResolvedConfiguration, ResolveError> {
        let tree = self.tree;
        let c = &tree.configurations[id];
        let module = &tree.modules[c.module];
        // A configuration outside the release (a static dependency, a `.DEFAULT` naming a
        // non-member) still reads the release's project properties.
        let parents: Vec<ConfigId> = match &self.release {
            Some(r) => r.parents.get(&id).cloned().unwrap_or_else(|| {
                if r.project == id {
                    Vec::new()
                } else {
                    vec![r.project]
                }
            }),
            None => Vec::new(),
        };

        let props = self.merged_properties(id, &parents);

        // Bind dependencies first (a `.DEFAULT` value may itself use properties), then expand
        // everything with the dependencies in scope.
        let plain = Expander::new(&c.name, &props, &[]);
        let dependencies = self.bind_dependencies(id, &plain, &props)?;
        let deps: Vec<DepScope> = self.dep_scopes(&dependencies);
        let ex = Expander::new(&c.name, &props, &deps);

        let mut properties = BTreeMap::new();
        for (key, p) in &props {
            let value = ex.value(key).map_err(|e| ex.with_text(e, &p.raw))?;
            properties.insert(
                key.clone(),
                ResolvedProperty {
                    raw: (value != p.raw).then(|| p.raw.clone()),
                    value,
                    origin: p.origin.clone(),
                },
            );
        }
        let mut commands = Vec::new();
        if let Some(cmds) = c.commands() {
            for (target, command) in cmds.iter() {
                commands.push(Command {
                    target: target.to_string(),
                    command: ex.expand(command)?,
                });
            }
        }
        let download = if module.kind == ModuleKind::Component {
            Some(self.download_paths(id, &ex)?)
        } else {
            None
        };
        let chain_name = |kind: ModuleKind| {
            parents
                .iter()
                .chain(std::iter::once(&id))
                .find(|p| tree.modules[tree.configurations[**p].module].kind == kind)
                .map(|p| tree.configurations[*p].name.clone())
        };
        Ok(ResolvedConfiguration {
            configuration: c.name.clone(),
            module: module.name.clone(),
            kind: module.kind,
            project: chain_name(ModuleKind::Project),
            subsystem: chain_name(ModuleKind::Subsystem),
            platform: self.platform.name.clone(),
            properties,
            dependencies,
            commands,
            download,
        })
    }

    /// System < fields < project < subsystem < component < `-p`.
    fn merged_properties(
        &self,
        id: ConfigId,
        parents: &[ConfigId],
    ) -> BTreeMap<String, RawProperty> {
        let tree = self.tree;
        let c = &tree.configurations[id];
        let module = &tree.modules[c.module];
        let mut props = BTreeMap::new();
        fn set(props: &mut BTreeMap<String, RawProperty>, key: &str, raw: String, origin: Origin) {
            props.insert(key.to_string(), RawProperty { raw, origin });
        }

        let p = self.platform;
        for (k, v) in [
            ("platformName", p.name.as_str()),
            ("architecture", p.architecture()),
            ("os", p.os.as_str()),
            ("libDir", p.lib_dir.as_str()),
        ] {
            set(&mut props, k, v.to_string(), Origin::System);
        }
        for (k, v) in &self.layout.system {
            set(&mut props, k, v.clone(), Origin::System);
        }
        set(
            &mut props,
            "workspaceDir",
            self.workspace.display().to_string(),
            Origin::System,
        );
        set(
            &mut props,
            "treeDir",
            absolute(&tree.root).display().to_string(),
            Origin::System,
        );
        for (k, v) in &self.layout.package {
            set(&mut props, k, v.clone(), Origin::System);
        }

        // Fields: the configuration's own, else its module's, else (for the organisational
        // ones) the nearest ancestor module's.
        let field = |o: &str| Origin::Field(o.to_string());
        let chain: Vec<ModuleId> = {
            let mut a = tree.ancestors(c.module);
            a.push(c.module);
            a.reverse();
            a
        };
        let from_modules = |get: &dyn Fn(&super::model::SharedFields) -> Option<String>,
                            inherit: bool| {
            if let Some(v) = get(&c.fields) {
                return Some((v, c.name.clone()));
            }
            let n = if inherit { chain.len() } else { 1 };
            chain[..n].iter().find_map(|m| {
                get(&tree.modules[*m].fields).map(|v| (v, tree.modules[*m].name.clone()))
            })
        };
        type Get = fn(&super::model::SharedFields) -> Option<String>;
        let shared: [(&str, Get, bool); 6] = [
            ("description", |f| f.description.clone(), false),
            ("vcsroot", |f| f.vcsroot.clone(), false),
            ("license", |f| f.license.clone(), true),
            ("homepage", |f| f.homepage.clone(), true),
            ("vendor", |f| f.vendor.clone(), true),
            (
                "packageName",
                |f| f.package_name.as_ref().map(|s| s.get_ref().clone()),
                false,
            ),
        ];
        for (key, get, inherit) in shared {
            if let Some((v, src)) = from_modules(&get, inherit) {
                set(&mut props, key, v, field(&src));
            }
        }
        if !props.contains_key("packageName") && module.kind == ModuleKind::Component {
            // The seed's rule: without a package name, the component name is used.
            set(
                &mut props,
                "packageName",
                module.own_name().to_string(),
                field(&module.name),
            );
        }
        set(
            &mut props,
            "moduleName",
            module.name.clone(),
            field(&module.name),
        );
        let project = tree.project_of(c.module);
        set(
            &mut props,
            "projectName",
            tree.modules[project].name.clone(),
            field(&tree.modules[project].name),
        );
        set(
            &mut props,
            "configurationName",
            c.name.clone(),
            field(&c.name),
        );
        if let Some((v, _)) = &c.version {
            set(&mut props, "version", v.clone(), field(&c.name));
            if let Some((maj, min, rev)) = parse_mmr(v) {
                set(&mut props, "majorVersion", maj.to_string(), field(&c.name));
                set(&mut props, "minorVersion", min.to_string(), field(&c.name));
                set(
                    &mut props,
                    "revisionVersion",
                    rev.to_string(),
                    field(&c.name),
                );
            }
        }
        if let Some((a, _)) = &c.age {
            set(&mut props, "age", a.to_string(), field(&c.name));
        }
        if let Some(t) = &c.tag {
            set(&mut props, "tag", t.clone(), field(&c.name));
        }
        set(&mut props, "profiles", c.profiles.join(","), field(&c.name));

        for cid in parents.iter().chain(std::iter::once(&id)) {
            let pc = &tree.configurations[*cid];
            let origin = match tree.modules[pc.module].kind {
                ModuleKind::Project => Origin::Project(pc.name.clone()),
                ModuleKind::Subsystem => Origin::Subsystem(pc.name.clone()),
                ModuleKind::Component => Origin::Component(pc.name.clone()),
            };
            for prop in &pc.properties {
                set(&mut props, &prop.key, prop.value.clone(), origin.clone());
            }
        }
        for p in &self.options.profiles {
            for (k, v) in p.properties_for(&module.name) {
                set(&mut props, &k, v, Origin::Profile(p.name.clone()));
            }
        }
        for (k, v) in &self.options.overrides {
            set(&mut props, k, v.clone(), Origin::Override);
        }
        props
    }

    /// The profile that leaves module `name` out, if one does.
    pub fn disabled_by(&self, name: &str) -> Option<&str> {
        self.options
            .profiles
            .iter()
            .rev()
            .find(|p| p.disables(name))
            .map(|p| p.name.as_str())
    }

    fn bind_dependencies(
        &self,
        id: ConfigId,
        ex: &Expander,
        props: &BTreeMap<String, RawProperty>,
    ) -> Result<Vec<ResolvedDependency>, ResolveError> {
        let tree = self.tree;
        let c = &tree.configurations[id];
        let bad = |message: String| ResolveError::BadDependency {
            configuration: c.name.clone(),
            message,
        };
        let mut out = Vec::new();
        for dep in &c.dependencies {
            let e = &dep.entry;
            let constraint = match &e.constraint {
                Some(text) => Some(text.parse::<Constraint>().map_err(|error| {
                    ResolveError::BadConstraint {
                        configuration: c.name.clone(),
                        module: e
                            .module
                            .clone()
                            .or_else(|| e.external.clone())
                            .unwrap_or_default(),
                        error,
                    }
                })?),
                None => None,
            };
            let (name, module) = match (&e.module, &e.external) {
                (Some(m), None) => (m.clone(), m),
                (None, Some(x)) => {
                    out.push(ResolvedDependency {
                        name: x.clone(),
                        kind: DependencyType::External,
                        scope: e.scope,
                        constraint,
                        configuration: None,
                        version: None,
                        package_name: Some(x.clone()),
                        reason: "external OS package (OS.DEFAULT): whatever the node has or its package manager installs".into(),
                        config_id: None,
                    });
                    continue;
                }
                _ => {
                    return Err(bad(format!(
                        "a dependency (line {}) needs exactly one of `module` and `external`",
                        dep.location.line
                    )));
                }
            };
            let mid = tree
                .module(module)
                .ok_or_else(|| ResolveError::UnknownModule {
                    configuration: c.name.clone(),
                    module: module.clone(),
                })?;
            if let Some(profile) = self.disabled_by(module) {
                return Err(ResolveError::Disabled {
                    configuration: c.name.clone(),
                    module: module.clone(),
                    profile: profile.to_string(),
                });
            }
            let of_module = |cid: ConfigId, what: &str| -> Result<ConfigId, ResolveError> {
                if tree.configurations[cid].module != mid {
                    return Err(bad(format!(
                        "{what} names {}, which is a configuration of {}, not of {module}",
                        tree.configurations[cid].name,
                        tree.modules[tree.configurations[cid].module].name
                    )));
                }
                Ok(cid)
            };
            let (chosen, kind, reason) = if let Some(sc) = &e.configuration {
                if constraint.is_some() {
                    return Err(bad(format!(
                        "the dependency on {module} has both `configuration` and `constraint`; keep one"
                    )));
                }
                let cid = tree.configuration(sc).ok_or_else(|| {
                    bad(format!("static dependency on unknown configuration `{sc}`"))
                })?;
                (
                    of_module(cid, "the static dependency")?,
                    DependencyType::Static,
                    "static: the configuration is named".to_string(),
                )
            } else {
                let key = format!("{module}.DEFAULT");
                let default = match props.get(&key) {
                    Some(p) => {
                        let name = ex.value(&key)?;
                        let cid = tree.configuration(&name).ok_or_else(|| {
                            bad(format!("`{key}` names unknown configuration `{name}`"))
                        })?;
                        Some((of_module(cid, &format!("`{key}`"))?, p.origin.clone()))
                    }
                    None => None,
                };
                let members: Vec<ConfigId> = self
                    .release
                    .as_ref()
                    .and_then(|r| r.by_module.get(&mid).cloned())
                    .unwrap_or_default();
                let (cid, reason) = match &default {
                    // A `-p` override is taken as given.
                    Some((d, Origin::Override)) => (*d, format!("{key} set with -p")),
                    // So is a profile's.
                    Some((d, Origin::Profile(p))) => (*d, format!("{key} set by profile {p}")),
                    _ => {
                        let candidates = default
                            .iter()
                            .map(|(d, _)| *d)
                            .chain(members.iter().copied());
                        let cid =
                            latest(tree, candidates).ok_or_else(|| ResolveError::NoDefault {
                                configuration: c.name.clone(),
                                module: module.clone(),
                                project: self
                                    .release
                                    .as_ref()
                                    .map(|r| tree.configurations[r.project].name.clone()),
                            })?;
                        let reason = match &default {
                            Some((d, origin)) if *d == cid => format!("{key} in {origin}"),
                            Some((d, _)) => format!(
                                "latest in the release wins: {} is newer than {key} = {}",
                                tree.configurations[cid].name, tree.configurations[*d].name
                            ),
                            None if members.len() > 1 => format!(
                                "latest in the release wins: {} is the newest of {}",
                                tree.configurations[cid].name,
                                members
                                    .iter()
                                    .map(|m| tree.configurations[*m].name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            None => "the release's configuration of the module".to_string(),
                        };
                        (cid, reason)
                    }
                };
                if let Some(con) = &constraint {
                    let v = tree.configurations[cid].version_age().unwrap_or_default();
                    if !con.matches(Scheme::Rpm, &v) {
                        return Err(ResolveError::ConstraintUnsatisfied {
                            configuration: c.name.clone(),
                            module: module.clone(),
                            constraint: con.to_string(),
                            chosen: tree.configurations[cid].name.clone(),
                            version: v,
                        });
                    }
                    (
                        cid,
                        DependencyType::Constrained,
                        format!("{reason}; satisfies {con}"),
                    )
                } else {
                    (cid, DependencyType::Dynamic, reason)
                }
            };
            let dc = &tree.configurations[chosen];
            let dm = &tree.modules[dc.module];
            out.push(ResolvedDependency {
                name,
                kind,
                scope: e.scope,
                constraint,
                configuration: Some(dc.name.clone()),
                version: dc.version_age(),
                package_name: dc
                    .fields
                    .package_name
                    .as_ref()
                    .or(dm.fields.package_name.as_ref())
                    .map(|s| s.get_ref().clone()),
                reason,
                config_id: Some(chosen),
            });
        }
        Ok(out)
    }

    fn dep_scopes(&self, deps: &[ResolvedDependency]) -> Vec<DepScope<'_>> {
        let short = |name: &str| name.rsplit('.').next().unwrap_or(name).to_string();
        deps.iter()
            .filter_map(|d| d.config_id.map(|cid| (d, cid)))
            .map(|(d, cid)| {
                let s = short(&d.name);
                // The same module listed twice (build + runtime) keeps its short name.
                let unique = deps
                    .iter()
                    .filter(|o| o.config_id.is_some() && short(&o.name) == s)
                    .all(|o| o.name == d.name);
                DepScope {
                    module: d.name.clone(),
                    short: unique.then_some(s),
                    properties: Box::new(move || {
                        self.resolve(cid)
                            .map(|r| {
                                Rc::new(
                                    r.properties
                                        .iter()
                                        .map(|(k, v)| (k.clone(), v.value.clone()))
                                        .collect(),
                                )
                            })
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect()
    }

    fn download_paths(&self, id: ConfigId, ex: &Expander) -> Result<DownloadPaths, ResolveError> {
        let c = &self.tree.configurations[id];
        let m = &self.tree.modules[c.module];
        let template = c
            .fields
            .download_from
            .as_deref()
            .or(m.fields.download_from.as_deref())
            .unwrap_or(&self.layout.download.template);
        let tarball = ex.expand(template)?;
        let (key, rule) = match self.platform.format {
            PackageFormat::Rpm => ("package.rpmName", &self.layout.download.rpm_name),
            PackageFormat::Deb => ("package.debName", &self.layout.download.deb_name),
        };
        let name = match ex.value(key) {
            Ok(v) => v,
            Err(PropertyError::Undefined { key: k, .. }) if k == key => ex.expand(rule)?,
            Err(e) => return Err(e.into()),
        };
        let package = match tarball.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name,
        };
        Ok(DownloadPaths {
            tarball,
            package,
            format: self.platform.format,
        })
    }
}

/// `p` made absolute against the current directory (as given if that fails).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Every component configuration of the release of project configuration `project`,
/// resolved, in tree order.
pub fn resolve_release(
    tree: &Tree,
    layout: &Layout,
    options: ResolveOptions,
    project: ConfigId,
) -> Result<Vec<Rc<ResolvedConfiguration>>, ResolveError> {
    let release = Release::of(tree, project);
    let mut members: Vec<ConfigId> = release
        .parents
        .keys()
        .copied()
        .filter(|id| tree.modules[tree.configurations[*id].module].kind == ModuleKind::Component)
        .collect();
    members.sort();
    let resolver = Resolver::new(tree, layout, options, Some(release))?;
    members.into_iter().map(|id| resolver.resolve(id)).collect()
}

/// Project configuration `name`: an error naming similar ones if there is no such
/// configuration, or if it is not a project's.
pub fn project(tree: &Tree, name: &str) -> Result<ConfigId, ResolveError> {
    let pid = tree
        .configuration(name)
        .ok_or_else(|| ResolveError::UnknownConfiguration {
            name: name.to_string(),
            similar: tree
                .similar_configurations(name)
                .into_iter()
                .map(str::to_string)
                .collect(),
        })?;
    if tree.modules[tree.configurations[pid].module].kind != ModuleKind::Project {
        return Err(ResolveError::NotAProject {
            project: name.to_string(),
        });
    }
    Ok(pid)
}

/// The project configurations of the tree, newest first.
pub fn project_configurations(tree: &Tree) -> Vec<ConfigId> {
    let mut ids: Vec<ConfigId> = (0..tree.configurations.len())
        .filter(|id| tree.modules[tree.configurations[*id].module].kind == ModuleKind::Project)
        .collect();
    ids.sort_by(|a, b| {
        let v = |id: &ConfigId| tree.configurations[*id].version_age().unwrap_or_default();
        version::compare(Scheme::Rpm, &v(b), &v(a))
    });
    ids
}
