//! The build node's plan: for each dependency of a configuration (followed through its
//! build-time dependencies), whether it is installed already, can be installed as a
//! binary package, downloaded as a prebuilt tarball, or must be built from source — and
//! the order to build in. Pure: what repositories hold and what the node has come in
//! through [`Packages`] and [`Node`]; `sources` and `node` implement them for real.

pub mod fetch;
pub mod node;
pub mod sources;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::resolve::ResolvedDependency;
use crate::config::{
    ConfigId, DependencyType, ResolveError, ResolveOptions, ResolvedConfiguration, Resolver, Scope,
    Tree,
};
use crate::layout::{Layout, PackageFormat};

/// What the plan does about one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// On this node already.
    Installed,
    /// A binary package (RPM/DEB, or the OS's own package) to install.
    Install,
    /// A prebuilt tarball to unpack into `${stageDir}`.
    Download,
    /// Built from source with its checkout command.
    Source,
    /// Nothing will satisfy it (an external package that is missing and cannot be
    /// installed here).
    Unresolved,
}

#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Full dotted module name, or the OS package for an external dependency.
    pub module: String,
    pub configuration: Option<String>,
    /// `version-age` of the configuration (external: as installed, if it is).
    pub version: Option<String>,
    pub scope: Scope,
    #[serde(rename = "type")]
    pub kind: DependencyType,
    pub action: Action,
    pub reason: String,
    /// Where it comes from: a repository path or URL, or the install command.
    pub source: Option<String>,
    /// The download-from path of the file `source` names.
    #[serde(skip)]
    pub path: Option<String>,
    /// The package name (RPM/DEB and the tarball's), for installing and checking.
    #[serde(skip)]
    pub package_name: Option<String>,
    /// The checkout command, for `source`.
    #[serde(skip)]
    pub checkout: Option<String>,
    /// Not fetched: a runtime-only dependency without `--runtime-deps`.
    #[serde(skip)]
    pub listed_only: bool,
    /// The SHA-256 of the file `source` names, when the plan knew it (else `fetch` reads
    /// the repository's record).
    #[serde(skip)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Configurations in build order (dependencies first), ending with the one asked for.
    pub order: Vec<String>,
    pub dependencies: Vec<Planned>,
    /// `${stageDir}` and `${workspaceDir}` of the configuration asked for: where `fetch`
    /// unpacks tarballs and checks sources out.
    #[serde(skip)]
    pub stage_dir: PathBuf,
    #[serde(skip)]
    pub workspace_dir: PathBuf,
    /// The platform's package format: how `fetch` installs.
    #[serde(skip)]
    pub format: PackageFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("build-time dependencies form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

impl PlanError {
    pub fn hint(&self) -> String {
        match self {
            PlanError::Resolve(e) => e.hint(),
            PlanError::Cycle(_) => "a build-time dependency cycle cannot be built; make one of \
                                   the edges runtime-only, or split a module"
                .into(),
        }
    }
}

/// Where prebuilt packages may be: the repositories to look in, in order.
pub trait Packages {
    /// Where the file at download-from `path` is, if this repository has it.
    fn find(&self, path: &str) -> Option<String>;
    /// The SHA-256 the repository recorded for the file at `path`, where that is cheap
    /// to know (a repository on this machine); `None` leaves it to `fetch` to read the
    /// record beside the file.
    fn checksum(&self, _path: &str) -> Option<String> {
        None
    }
    /// How messages name it.
    fn name(&self) -> String;
}

/// The build node.
pub trait Node {
    /// The installed versions (`version-release`) of package `name`: none if it is not
    /// installed, several for packages like kernels.
    fn installed(&self, format: PackageFormat, name: &str) -> Vec<String>;
    /// Whether packages can be installed here (root, or passwordless sudo).
    fn privileged(&self) -> bool;
}

pub struct PlanRequest<'a> {
    pub tree: &'a Tree,
    pub layout: &'a Layout,
    pub configuration: &'a str,
    pub options: ResolveOptions,
    /// Fetch runtime-only dependencies too.
    pub runtime_deps: bool,
    /// Do not follow the dependencies of a dependency satisfied by a binary.
    pub shallow: bool,
}

/// Makes the plan for `req` against `repos` (first match wins) and `node`.
pub fn plan(
    req: &PlanRequest,
    repos: &[&dyn Packages],
    node: &dyn Node,
) -> Result<Plan, PlanError> {
    let (resolver, root) =
        Resolver::for_configuration(req.tree, req.layout, req.options.clone(), req.configuration)?;
    plan_with(&resolver, root, req, repos, node)
}

/// [`plan`] with the caller's resolver for `req`, which keeps what it resolved (a command
/// that exits next need not spend time freeing ten thousand resolved configurations).
pub fn plan_with(
    resolver: &Resolver,
    root: ConfigId,
    req: &PlanRequest,
    repos: &[&dyn Packages],
    node: &dyn Node,
) -> Result<Plan, PlanError> {
    let platform = req
        .layout
        .platform(req.options.platform.as_deref())
        .map_err(ResolveError::from)?;
    let format = platform.format;
    let privileged = node.privileged();
    let tool = match format {
        PackageFormat::Rpm => "dnf",
        PackageFormat::Deb => "apt-get",
    };

    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    // Build-time edges between configurations, for the order.
    let mut edges: BTreeMap<ConfigId, BTreeSet<ConfigId>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<(ConfigId, bool)> = vec![(root, true)];
    while let Some((id, follow_all)) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let resolved = resolver.resolve(id)?;
        edges.entry(id).or_default();
        for dep in &resolved.dependencies {
            // Below the first level only what building `id` needs is followed, unless
            // runtime dependencies are wanted too.
            if !follow_all && !dep.scope.at_build() && !req.runtime_deps {
                continue;
            }
            if dep.kind == DependencyType::External {
                let key = format!("os:{}", dep.name);
                planned
                    .entry(key)
                    .or_insert_with(|| external(dep, format, tool, privileged, node));
                continue;
            }
            let Some(dep_id) = dep.config_id else {
                continue;
            };
            let target = resolver.resolve(dep_id)?;
            if dep.scope.at_build() {
                edges.entry(id).or_default().insert(dep_id);
            }
            let runtime_only = !dep.scope.at_build();
            let key = format!("cfg:{}", target.configuration);
            let entry = planned
                .entry(key)
                .or_insert_with(|| decide(dep, &target, repos, node, format, tool, privileged));
            // A dependency needed at build time by anyone is fetched.
            if !runtime_only {
                entry.listed_only = false;
                if entry.scope == Scope::Runtime {
                    entry.scope = Scope::Both;
                }
            } else if !req.runtime_deps && entry.scope == Scope::Runtime {
                entry.listed_only = true;
            }
            let binary = matches!(
                entry.action,
                Action::Installed | Action::Install | Action::Download
            );
            let follow = !(req.shallow && binary) && (!runtime_only || req.runtime_deps);
            if follow {
                todo.push((dep_id, false));
            }
        }
    }
    let mut dependencies: Vec<Planned> = planned.into_values().collect();
    for d in &mut dependencies {
        if d.listed_only {
            d.reason = format!(
                "runtime only, not fetched (--runtime-deps fetches it); {}",
                d.reason
            );
        }
    }
    let order = build_order(req.tree, root, &edges)?;
    let top = resolver.resolve(root)?;
    let dir = |key: &str, default: &str| PathBuf::from(top.value(key).unwrap_or(default));
    Ok(Plan {
        order,
        dependencies,
        stage_dir: dir("stageDir", "workspace/stage"),
        workspace_dir: dir("workspaceDir", "workspace"),
        format,
    })
}

fn external(
    dep: &ResolvedDependency,
    format: PackageFormat,
    tool: &str,
    privileged: bool,
    node: &dyn Node,
) -> Planned {
    let scheme = match format {
        PackageFormat::Rpm => crate::version::Scheme::Rpm,
        PackageFormat::Deb => crate::version::Scheme::Deb,
    };
    let versions = node.installed(format, &dep.name);
    // An installed version that misses the constraint counts as missing.
    let fits = |v: &&String| dep.constraint.as_ref().is_none_or(|c| c.matches(scheme, v));
    let installed = versions.iter().find(fits).or(versions.first()).cloned();
    let too_old = match (&installed, &dep.constraint) {
        (Some(v), Some(c)) if !c.matches(scheme, v) => Some(format!(
            "OS package {} {v} is installed but `{c}` is wanted",
            dep.name
        )),
        _ => None,
    };
    let wanted = match &dep.constraint {
        Some(c) => format!("{} ({c})", dep.name),
        None => dep.name.clone(),
    };
    let (action, version, reason, source) = match installed.filter(|_| too_old.is_none()) {
        Some(v) => (
            Action::Installed,
            Some(v.clone()),
            format!("OS package {} {v} is installed", dep.name),
            None,
        ),
        None if privileged => (
            Action::Install,
            None,
            format!(
                "{}; {tool} installs it",
                too_old.unwrap_or(format!("OS package {wanted} is not installed"))
            ),
            Some(format!("{tool} install -y {}", dep.name)),
        ),
        None => (
            Action::Unresolved,
            None,
            format!(
                "{}, and this node cannot install packages: run `sudo {tool} install {}`",
                too_old.unwrap_or(format!("OS package {wanted} is not installed")),
                dep.name
            ),
            Some(format!("{tool} install -y {}", dep.name)),
        ),
    };
    Planned {
        module: dep.name.clone(),
        configuration: None,
        version,
        scope: dep.scope,
        kind: dep.kind,
        action,
        reason,
        source,
        path: None,
        package_name: Some(dep.name.clone()),
        checkout: None,
        listed_only: false,
        sha256: None,
    }
}

fn decide(
    dep: &ResolvedDependency,
    target: &ResolvedConfiguration,
    repos: &[&dyn Packages],
    node: &dyn Node,
    format: PackageFormat,
    tool: &str,
    privileged: bool,
) -> Planned {
    let version = dep.version.clone();
    let package = target
        .value("packageName")
        .map(str::to_string)
        .or_else(|| dep.package_name.clone());
    let why = &dep.reason;
    let find = |path: &str| {
        repos
            .iter()
            .find_map(|r| r.find(path).map(|at| (at, r.checksum(path))))
    };
    let mut out = Planned {
        module: dep.name.clone(),
        configuration: Some(target.configuration.clone()),
        version: version.clone(),
        scope: dep.scope,
        kind: dep.kind,
        action: Action::Source,
        reason: String::new(),
        source: None,
        path: None,
        package_name: package.clone(),
        checkout: target
            .commands
            .iter()
            .find(|c| c.target == "checkout")
            .map(|c| c.command.clone()),
        listed_only: false,
        sha256: None,
    };
    if let (Some(p), Some(v)) = (&package, &version)
        && node.installed(format, p).contains(v)
    {
        out.action = Action::Installed;
        out.reason = format!("{p} {v} is installed ({why})");
        return out;
    }
    let paths = target.download.as_ref();
    let binary = paths.and_then(|d| find(&d.package));
    let tarball = paths.and_then(|d| find(&d.tarball));
    match (binary, tarball) {
        (Some((b, sum)), _) if privileged => {
            out.action = Action::Install;
            out.reason = format!("prebuilt package in the repository ({why})");
            out.source = Some(b);
            out.sha256 = sum;
            out.path = paths.map(|d| d.package.clone());
        }
        (_, Some((t, sum))) => {
            out.action = Action::Download;
            out.reason = format!("prebuilt tarball in the repository ({why})");
            out.source = Some(t);
            out.sha256 = sum;
            out.path = paths.map(|d| d.tarball.clone());
        }
        (Some((b, sum)), None) => {
            out.action = Action::Install;
            out.sha256 = sum;
            let cmd = match format {
                PackageFormat::Rpm => format!("sudo {tool} install -y {b}"),
                PackageFormat::Deb => format!("sudo {tool} install -y ./{}", file_of(&b)),
            };
            out.reason = format!(
                "only a binary package is published and this node cannot install packages: run `{cmd}` ({why})"
            );
            out.source = Some(b);
            out.path = paths.map(|d| d.package.clone());
        }
        (None, None) => {
            out.reason = match paths {
                Some(d) => format!(
                    "no prebuilt {} or {} in {} ({why})",
                    file_of(&d.package),
                    file_of(&d.tarball),
                    if repos.is_empty() {
                        "any repository (none given)".to_string()
                    } else {
                        repos
                            .iter()
                            .map(|r| r.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                None => format!("it has no download-from paths ({why})"),
            };
        }
    }
    out
}

fn file_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Configurations in build order: each after its build-time dependencies; ties broken by
/// name, so the order is the same on every run. A cycle is an error naming it.
///
/// The order is Kahn's, layer by layer (a configuration's layer is one more than its
/// deepest dependency's; names sort within a layer), computed with one depth-first walk:
/// O(V + E) even for a release that is one long chain.
fn build_order(
    tree: &Tree,
    root: ConfigId,
    edges: &BTreeMap<ConfigId, BTreeSet<ConfigId>>,
) -> Result<Vec<String>, PlanError> {
    let name = |id: ConfigId| tree.configurations[id].name.clone();
    let layer =
        layers(edges).map_err(|cycle| PlanError::Cycle(cycle.into_iter().map(name).collect()))?;
    let mut order: Vec<(usize, String, ConfigId)> = layer
        .into_iter()
        .filter(|(id, _)| *id != root)
        .map(|(id, l)| (l, name(id), id))
        .collect();
    order.sort();
    // The configuration asked for comes last, whatever its name.
    let mut names: Vec<String> = order.into_iter().map(|(_, n, _)| n).collect();
    names.push(name(root));
    Ok(names)
}

/// The layer of each configuration in `edges` (its build-time dependencies): 0 for one
/// that needs none, else one more than its deepest dependency. Edges to configurations
/// that are not keys of `edges` are ignored (a dependency below a binary under
/// `--shallow` is not built). A cycle is returned as the path around it, first repeated.
pub(crate) fn layers(
    edges: &BTreeMap<ConfigId, BTreeSet<ConfigId>>,
) -> Result<BTreeMap<ConfigId, usize>, Vec<ConfigId>> {
    let deps_of = |id: ConfigId| -> Vec<ConfigId> {
        edges[&id]
            .iter()
            .copied()
            .filter(|d| edges.contains_key(d))
            .collect()
    };
    let mut layer: BTreeMap<ConfigId, usize> = BTreeMap::new();
    let mut on_path: BTreeSet<ConfigId> = BTreeSet::new();
    for &start in edges.keys() {
        if layer.contains_key(&start) {
            continue;
        }
        // (configuration, its dependencies, how many of them are done)
        let mut stack: Vec<(ConfigId, Vec<ConfigId>, usize)> = vec![(start, deps_of(start), 0)];
        on_path.insert(start);
        while let Some((id, deps, next)) = stack.last_mut() {
            if let Some(&d) = deps.get(*next) {
                *next += 1;
                if layer.contains_key(&d) {
                    continue;
                }
                if on_path.contains(&d) {
                    // The cycle: from d's place on the path to here, and back to d.
                    let from = stack.iter().position(|(n, _, _)| *n == d).unwrap_or(0);
                    let mut cycle: Vec<ConfigId> =
                        stack[from..].iter().map(|(n, _, _)| *n).collect();
                    cycle.push(d);
                    return Err(cycle);
                }
                on_path.insert(d);
                let dd = deps_of(d);
                stack.push((d, dd, 0));
            } else {
                let id = *id;
                let depth = deps.iter().map(|d| layer[d] + 1).max().unwrap_or(0);
                layer.insert(id, depth);
                on_path.remove(&id);
                stack.pop();
            }
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    /// A project `p` with components a, b, c (and d): `deps` lists `(from, to, scope)`.
    fn tree(dir: &Path, deps: &[(&str, &str, &str)], externals: &[(&str, &str)]) -> Tree {
        let write = |rel: &str, text: String| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let names = ["a", "b", "c", "d"];
        let children: Vec<String> = names.iter().map(|n| format!("\"{n}_R_1_0_0_1\"")).collect();
        write(
            "module.toml",
            format!(
                "[module]\nname = \"p\"\nkind = \"project\"\ndescription = \"P\"\nlicense = \"MIT\"\nvendor = \"T\"\n\
                 [[configuration]]\nname = \"p_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\nchildren = [{}]\n",
                children.join(", ")
            ),
        );
        for n in names {
            let mut text = format!(
                "[module]\nname = \"p.{n}\"\nkind = \"component\"\ndescription = \"{n}\"\npackage_name = \"p-{n}\"\n\
                 [[configuration]]\nname = \"{n}_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\ntag = \"v1\"\n"
            );
            for (from, to, scope) in deps.iter().filter(|(f, _, _)| *f == n) {
                let _ = from;
                text += &format!(
                    "[[configuration.dependencies]]\nmodule = \"p.{to}\"\nscope = \"{scope}\"\n"
                );
            }
            for (from, ext) in externals.iter().filter(|(f, _)| *f == n) {
                let _ = from;
                text += &format!(
                    "[[configuration.dependencies]]\nexternal = \"{ext}\"\nscope = \"build\"\n"
                );
            }
            text += &format!("[configuration.commands]\ncheckout = \"git clone x/{n}\"\n");
            write(&format!("{n}/module.toml"), text);
        }
        Tree::load(dir).unwrap()
    }

    /// A repository holding exactly these download-from paths.
    struct Repo(Vec<String>);
    impl Packages for Repo {
        fn find(&self, path: &str) -> Option<String> {
            self.0
                .iter()
                .any(|p| p == path)
                .then(|| format!("repo/{path}"))
        }
        fn name(&self) -> String {
            "repo".into()
        }
    }

    struct FakeNode {
        installed: HashMap<String, String>,
        privileged: bool,
    }
    impl Node for FakeNode {
        fn installed(&self, _: PackageFormat, name: &str) -> Vec<String> {
            self.installed.get(name).cloned().into_iter().collect()
        }
        fn privileged(&self) -> bool {
            self.privileged
        }
    }

    fn node(privileged: bool, installed: &[(&str, &str)]) -> FakeNode {
        FakeNode {
            installed: installed
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            privileged,
        }
    }

    fn paths(layout: &Layout, tree: &Tree, conf: &str) -> (String, String) {
        let (r, id) = Resolver::for_configuration(
            tree,
            layout,
            ResolveOptions {
                platform: Some("el9_x86_64".into()),
                ..Default::default()
            },
            conf,
        )
        .unwrap();
        let d = r.resolve(id).unwrap().download.clone().unwrap();
        (d.package, d.tarball)
    }

    fn run(
        tree: &Tree,
        repo: &Repo,
        node: &FakeNode,
        shallow: bool,
        runtime: bool,
    ) -> Result<Plan, PlanError> {
        let layout = Layout::builtin();
        let req = PlanRequest {
            tree,
            layout: &layout,
            configuration: "a_R_1_0_0_1",
            options: ResolveOptions {
                platform: Some("el9_x86_64".into()),
                ..Default::default()
            },
            runtime_deps: runtime,
            shallow,
        };
        plan(&req, &[repo as &dyn Packages], node)
    }

    fn action(p: &Plan, module: &str) -> Action {
        p.dependencies
            .iter()
            .find(|d| d.module == module)
            .unwrap_or_else(|| panic!("{module} not in the plan"))
            .action
    }

    #[test]
    fn each_dependency_gets_the_first_action_that_applies() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(
            dir.path(),
            &[
                ("a", "b", "build"),
                ("a", "c", "build"),
                ("a", "d", "build"),
            ],
            &[("a", "gcc"), ("a", "flex")],
        );
        let layout = Layout::builtin();
        let (b_rpm, _) = paths(&layout, &t, "b_R_1_0_0_1");
        let (c_rpm, c_tgz) = paths(&layout, &t, "c_R_1_0_0_1");
        let repo = Repo(vec![b_rpm.clone(), c_rpm, c_tgz.clone()]);
        // b: installed already; c: RPM and tarball (privileged: install); d: nothing.
        let n = node(true, &[("p-b", "1.0.0-1"), ("gcc", "12.2-1")]);
        let p = run(&t, &repo, &n, false, false).unwrap();
        assert_eq!(action(&p, "p.b"), Action::Installed);
        assert_eq!(action(&p, "p.c"), Action::Install);
        assert_eq!(action(&p, "p.d"), Action::Source);
        assert_eq!(action(&p, "gcc"), Action::Installed);
        assert_eq!(action(&p, "flex"), Action::Install);
        let d = p.dependencies.iter().find(|d| d.module == "p.d").unwrap();
        assert_eq!(d.checkout.as_deref(), Some("git clone x/d"));
        // Unprivileged: c comes as its tarball, flex cannot be had.
        let n = node(false, &[("p-b", "1.0.0-1")]);
        let p = run(&t, &repo, &n, false, false).unwrap();
        assert_eq!(action(&p, "p.c"), Action::Download);
        let c = p.dependencies.iter().find(|d| d.module == "p.c").unwrap();
        assert_eq!(c.source.as_deref(), Some(format!("repo/{c_tgz}").as_str()));
        assert_eq!(action(&p, "flex"), Action::Unresolved);
        // Another version installed is not "installed".
        let n = node(true, &[("p-b", "0.9.0-1")]);
        let p = run(&t, &repo, &n, false, false).unwrap();
        assert_eq!(action(&p, "p.b"), Action::Install);
    }

    #[test]
    fn an_unprivileged_node_with_only_a_binary_is_told_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(dir.path(), &[("a", "b", "build")], &[]);
        let (b_rpm, _) = paths(&Layout::builtin(), &t, "b_R_1_0_0_1");
        let p = run(
            &t,
            &Repo(vec![b_rpm.clone()]),
            &node(false, &[]),
            false,
            false,
        )
        .unwrap();
        let b = &p.dependencies[0];
        assert_eq!(b.action, Action::Install);
        assert!(
            b.reason
                .contains(&format!("sudo dnf install -y repo/{b_rpm}")),
            "{}",
            b.reason
        );
    }

    #[test]
    fn build_dependencies_are_followed_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        // a needs b and c to build; b needs d; c needs d at run time only.
        let t = tree(
            dir.path(),
            &[
                ("a", "b", "build"),
                ("a", "c", "both"),
                ("b", "d", "build"),
                ("c", "d", "runtime"),
            ],
            &[],
        );
        let p = run(&t, &Repo(vec![]), &node(false, &[]), false, false).unwrap();
        // Layer by layer, names in order within a layer: c needs nothing to build.
        assert_eq!(
            p.order,
            ["c_R_1_0_0_1", "d_R_1_0_0_1", "b_R_1_0_0_1", "a_R_1_0_0_1"]
        );
        assert_eq!(action(&p, "p.d"), Action::Source);
        // Shallow: b is a binary here, so its own dependency d is not followed.
        let (b_rpm, b_tgz) = paths(&Layout::builtin(), &t, "b_R_1_0_0_1");
        let repo = Repo(vec![b_rpm, b_tgz]);
        let p = run(&t, &repo, &node(false, &[]), true, false).unwrap();
        assert!(!p.dependencies.iter().any(|d| d.module == "p.d"), "{p:?}");
        assert_eq!(action(&p, "p.b"), Action::Download);
        let p = run(&t, &repo, &node(false, &[]), false, false).unwrap();
        assert!(p.dependencies.iter().any(|d| d.module == "p.d"));
    }

    #[test]
    fn runtime_only_dependencies_are_listed_not_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(dir.path(), &[("a", "b", "runtime")], &[]);
        let p = run(&t, &Repo(vec![]), &node(false, &[]), false, false).unwrap();
        assert!(p.dependencies[0].listed_only);
        assert!(
            p.dependencies[0]
                .reason
                .starts_with("runtime only, not fetched")
        );
        let p = run(&t, &Repo(vec![]), &node(false, &[]), false, true).unwrap();
        assert!(!p.dependencies[0].listed_only);
    }

    #[test]
    fn a_build_cycle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(
            dir.path(),
            &[
                ("a", "b", "build"),
                ("b", "c", "build"),
                ("c", "b", "build"),
            ],
            &[],
        );
        match run(&t, &Repo(vec![]), &node(false, &[]), false, false) {
            Err(PlanError::Cycle(chain)) => {
                assert_eq!(chain.first(), chain.last(), "{chain:?}");
                assert!(chain.contains(&"b_R_1_0_0_1".to_string()), "{chain:?}");
                assert!(chain.contains(&"c_R_1_0_0_1".to_string()), "{chain:?}");
            }
            other => panic!("{other:?}"),
        }
        // The same edges at run time are fine.
        let t = tree(
            dir.path(),
            &[
                ("a", "b", "build"),
                ("b", "c", "runtime"),
                ("c", "b", "runtime"),
            ],
            &[],
        );
        assert!(run(&t, &Repo(vec![]), &node(false, &[]), false, false).is_ok());
    }

    /// A release naming two configurations of `p.b` (1.0.0 and 2.0.0); a and c both
    /// depend on b (c with `b_constraint`, if any), and a on c.
    fn two_b_tree(dir: &Path, b_constraint: Option<&str>) -> Tree {
        let write = |rel: &str, text: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "module.toml",
            "[module]\nname = \"p\"\nkind = \"project\"\ndescription = \"P\"\nlicense = \"MIT\"\nvendor = \"T\"\n\
             [[configuration]]\nname = \"p_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\n\
             children = [\"a_R_1_0_0_1\", \"c_R_1_0_0_1\", \"b_R_1_0_0_1\", \"b_R_2_0_0_1\"]\n",
        );
        let component = |n: &str, confs: &[&str], deps: &str| {
            let mut t = format!(
                "[module]\nname = \"p.{n}\"\nkind = \"component\"\ndescription = \"{n}\"\n"
            );
            for v in confs {
                let name = format!("{n}_R_{}_1", v.replace('.', "_"));
                t += &format!(
                    "[[configuration]]\nname = \"{name}\"\nversion = \"{v}\"\nage = 1\ntag = \"v\"\n{deps}\
                     [configuration.commands]\ncheckout = \"true\"\n"
                );
            }
            write(&format!("{n}/module.toml"), &t);
        };
        component("b", &["1.0.0", "2.0.0"], "");
        let c_dep = match b_constraint {
            Some(con) => format!(
                "[[configuration.dependencies]]\nmodule = \"p.b\"\nscope = \"build\"\nconstraint = \"{con}\"\n"
            ),
            None => "[[configuration.dependencies]]\nmodule = \"p.b\"\nscope = \"build\"\n".into(),
        };
        component("c", &["1.0.0"], &c_dep);
        component(
            "a",
            &["1.0.0"],
            "[[configuration.dependencies]]\nmodule = \"p.b\"\nscope = \"build\"\n\
             [[configuration.dependencies]]\nmodule = \"p.c\"\nscope = \"build\"\n",
        );
        Tree::load(dir).unwrap()
    }

    #[test]
    fn the_latest_configuration_in_the_release_wins_for_every_component() {
        let dir = tempfile::tempdir().unwrap();
        let t = two_b_tree(dir.path(), None);
        let p = run(&t, &Repo(vec![]), &node(false, &[]), false, false).unwrap();
        // b once, at 2.0.0, for a and c alike; the plan says why.
        let bs: Vec<&Planned> = p
            .dependencies
            .iter()
            .filter(|d| d.module == "p.b")
            .collect();
        assert_eq!(bs.len(), 1, "{p:?}");
        assert_eq!(bs[0].configuration.as_deref(), Some("b_R_2_0_0_1"));
        assert!(
            bs[0]
                .reason
                .contains("latest in the release wins: b_R_2_0_0_1 is the newest of"),
            "{}",
            bs[0].reason
        );
        assert_eq!(p.order, ["b_R_2_0_0_1", "c_R_1_0_0_1", "a_R_1_0_0_1"]);
        assert!(!p.order.iter().any(|o| o == "b_R_1_0_0_1"));
    }

    #[test]
    fn a_failing_constraint_names_both_versions_and_the_constraint() {
        let dir = tempfile::tempdir().unwrap();
        let t = two_b_tree(dir.path(), Some("< 2.0"));
        let e = run(&t, &Repo(vec![]), &node(false, &[]), false, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`p.b` must satisfy `< 2.0`")
                && msg.contains("b_R_2_0_0_1 (2.0.0-1)")
                && msg.starts_with("c_R_1_0_0_1"),
            "{msg}"
        );
        assert!(e.hint().contains("p.b.DEFAULT"), "{}", e.hint());
        // A constraint the latest meets is fine, and said so.
        let dir = tempfile::tempdir().unwrap();
        let t = two_b_tree(dir.path(), Some(">= 1.5"));
        let p = run(&t, &Repo(vec![]), &node(false, &[]), false, false).unwrap();
        let b = p.dependencies.iter().find(|d| d.module == "p.b").unwrap();
        assert_eq!(b.configuration.as_deref(), Some("b_R_2_0_0_1"));
    }
}
