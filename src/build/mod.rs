//! `packyard build`: a release's components built as a graph. Each component gets a
//! fresh checkout; its build key (see [`key`]) is looked up in the repository it
//! publishes to, which doubles as the shared cache; a miss stages its build
//! dependencies, runs its targets, packs its prefix and publishes the artifacts with the
//! log and a build record. Independent components build at once, up to `jobs`; a failed
//! one skips its dependents and nothing else.
//!
//! The coordinating thread owns the resolver (it is not shared across threads): it
//! selects the graph, prepares each component's [`run::Job`] (commands, paths, the
//! resolver's plan for its dependencies) when the component's dependencies are done, and
//! hands it to a worker.

pub mod cache;
pub mod develop;
pub mod graph;
pub mod isolate;
pub mod key;
pub mod rebuild;
pub mod root;
pub mod run;
pub mod stop;
pub mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;

use crate::config::{
    ResolveError, ResolveOptions, Resolver, TARGETS, Tree, project_configurations,
};
use crate::layout::Layout;
use crate::repo::builds::BuiltFile;
use crate::resolve::{PlanError, PlanRequest};

use cache::BuildRepo;
use run::{Job, Steps};

/// What happened to one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Built,
    Cached,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Built => "built",
            Outcome::Cached => "cached",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One component's line of the summary (`--json` prints an array of these).
#[derive(Debug, Clone, Serialize)]
pub struct ComponentResult {
    pub configuration: String,
    pub module: String,
    pub result: Outcome,
    pub seconds: f64,
    /// What the repository holds of it (published now, or by the cached build).
    pub artifacts: Vec<BuiltFile>,
    /// Where its log can be read: the published one, else the workspace's.
    pub log: Option<String>,
    pub key: Option<String>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ComponentResult {
    /// A result with nothing run yet: no time, artifacts, log or key.
    pub fn new(
        configuration: &str,
        module: &str,
        result: Outcome,
        reason: Option<String>,
    ) -> ComponentResult {
        ComponentResult {
            configuration: configuration.to_string(),
            module: module.to_string(),
            result,
            seconds: 0.0,
            artifacts: vec![],
            log: None,
            key: None,
            reason,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Profile(#[from] crate::config::profile::ProfileError),
    #[error("{path}: {source}")]
    Develop {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tree has no project configuration to build")]
    NoRelease,
    #[error("{name} is not a component of release {release}")]
    NotInRelease { name: String, release: String },
    #[error(
        "module {module} is needed as both {a} and {b}; a build holds one configuration per module"
    )]
    TwoConfigurations {
        module: String,
        a: String,
        b: String,
    },
    #[error("build-time dependencies form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Isolate(#[from] isolate::IsolateError),
}

impl BuildError {
    /// The message with its hint, for a component's `reason`.
    pub fn with_hint(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self} ({h})"),
            None => self.to_string(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Resolve(e) => Some(e.hint()),
            BuildError::Plan(e) => Some(e.hint()),
            BuildError::Profile(e) => Some(e.hint()),
            BuildError::Develop { .. } => {
                Some("the workspace's development list is unreadable: fix or remove it".into())
            }
            BuildError::NoRelease => {
                Some("a build starts from a project configuration (kind = \"project\") that names its children".into())
            }
            BuildError::NotInRelease { .. } => Some(
                "--only takes module names (full or last part) or configuration names of the release's components; \
                 pick another release with --project"
                    .into(),
            ),
            BuildError::TwoConfigurations { .. } => Some(
                "make the dependencies agree (a .DEFAULT in the project configuration), or build the two apart".into(),
            ),
            BuildError::Cycle(_) => Some(
                "a build-time dependency cycle cannot be built; make one of the edges runtime-only".into(),
            ),
            BuildError::UnknownTarget(_) => Some(format!(
                "targets are checkout, {}, clean",
                TARGETS.join(", ")
            )),
            BuildError::Cache(e) => e.hint.clone(),
            BuildError::Isolate(e) => Some(e.hint()),
        }
    }
}

pub struct BuildRequest<'a> {
    pub tree: &'a Tree,
    pub layout: &'a Layout,
    /// Platform, release (`project`), `-p` overrides and `${workspaceDir}`.
    pub options: ResolveOptions,
    /// Build only these components (and what they need).
    pub only: Vec<String>,
    /// The steps to run; `None` for a whole build.
    pub targets: Option<Vec<String>>,
    pub jobs: usize,
    /// Build even what the cache holds.
    pub force: bool,
    /// After a failing target, still run the component's other targets (not packing
    /// or publishing), so one run shows every failure.
    pub keep_going: bool,
    /// Stop a step (checkout, target, clean) that runs longer than this, and fail it.
    pub step_timeout: Option<std::time::Duration>,
    /// How steps run: as they are, or each in a sandbox.
    pub isolation: isolate::Isolation,
    /// The pristine root the targets run in (`--root`), made ready with [`root::prepare`].
    pub root: Option<root::Root>,
    /// Development builds publish: the repository was named (`--repo`).
    pub publish_development: bool,
}

/// Hears what the build does, for progress lines.
pub trait Observer: Sync {
    /// Component `index` of [`BuildReport::components`] moved on to `step`.
    fn step(&self, _index: usize, _step: &str) {}
    /// Component `index` is done.
    fn done(&self, _index: usize, _result: &ComponentResult) {}
}

/// Observes nothing.
pub struct Unobserved;
impl Observer for Unobserved {}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub project: String,
    pub platform: String,
    pub repository: String,
    pub workspace: String,
    /// In build order.
    pub components: Vec<ComponentResult>,
}

impl BuildReport {
    pub fn ok(&self) -> bool {
        self.components
            .iter()
            .all(|c| matches!(c.result, Outcome::Built | Outcome::Cached))
    }
}

/// The configurations a build will handle, in order, before it starts (for progress).
pub struct Prepared<'a> {
    tree: &'a Tree,
    resolver: Resolver<'a>,
    graph: graph::Graph,
    steps: Steps,
    project: String,
    workspace: PathBuf,
    /// This machine, for every plan of the build: its package database is read once.
    node: crate::resolve::node::ThisNode,
    /// Per component: a development checkout of the workspace (`packyard develop`), or
    /// built on one (its build dependencies, at any depth): see [`develop`].
    development: Vec<Option<bool>>,
}

impl Prepared<'_> {
    pub fn configurations(&self) -> Vec<String> {
        self.graph
            .nodes
            .iter()
            .map(|n| n.resolved.configuration.clone())
            .collect()
    }

    /// The project configuration built.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The platform built for.
    pub fn platform(&self) -> &crate::layout::Platform {
        self.resolver.platform()
    }

    /// `${workspaceDir}`.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The components in build order: configuration, module, and the indices of their
    /// build dependencies (which come before them).
    pub fn components(&self) -> Vec<(String, String, Vec<usize>)> {
        self.graph
            .nodes
            .iter()
            .map(|n| {
                (
                    n.resolved.configuration.clone(),
                    n.resolved.module.clone(),
                    n.deps.clone(),
                )
            })
            .collect()
    }

    /// Component `i`'s job, as this build's worker gets it.
    pub fn job(&self, req: &BuildRequest, i: usize) -> Result<Job, BuildError> {
        job_for(req, self, i)
    }

    /// The plan that stages component `i`'s build dependencies from `packages`.
    pub fn plan(
        &self,
        req: &BuildRequest,
        i: usize,
        packages: &dyn crate::resolve::Packages,
    ) -> Result<crate::resolve::Plan, String> {
        plan_for(req, self, i, packages, &self.node).map_err(|e| e.with_hint())
    }

    /// What packing component `i` writes, or why it cannot be packed.
    pub fn spec(&self, req: &BuildRequest, i: usize) -> Result<crate::pack::PackageSpec, String> {
        let n = &self.graph.nodes[i];
        crate::pack::spec_of(
            self.tree,
            req.layout,
            n.id,
            &n.resolved,
            run::source_date_epoch(),
        )
        .map_err(|e| match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        })
    }
}

impl Prepared<'_> {
    /// What component `i`'s source packages are made of, or why they cannot be made.
    pub fn source(&self, req: &BuildRequest, i: usize) -> Result<crate::pack::SourcePlan, String> {
        let n = &self.graph.nodes[i];
        crate::pack::source_plan(
            self.tree,
            req.layout,
            &n.resolved.configuration,
            self.resolver.options().clone(),
            run::source_date_epoch(),
        )
        .map_err(|e| match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        })
    }
}

/// Where a component's files go, below the workspace: the build's own settings of
/// `${prefix}` and `${stageDir}`, and `${artifactsDir}` from the layout.
fn build_overrides() -> Vec<(String, String)> {
    vec![
        (
            "prefix".into(),
            "${workspaceDir}/_output/${moduleName}/prefix".into(),
        ),
        (
            "stageDir".into(),
            "${workspaceDir}/_output/${moduleName}/stage".into(),
        ),
    ]
}

/// Resolves the release and selects what to build; checks that steps can be isolated as
/// asked (before anything runs, not once per component).
pub fn prepare<'a>(req: &BuildRequest<'a>) -> Result<Prepared<'a>, BuildError> {
    let tree = req.tree;
    let steps = match &req.targets {
        None => Steps::full(),
        Some(list) => {
            for t in list {
                if t != "checkout" && t != "clean" && !TARGETS.contains(&t.as_str()) {
                    return Err(BuildError::UnknownTarget(t.clone()));
                }
            }
            Steps {
                names: list.clone(),
            }
        }
    };
    let pid = match &req.options.project {
        Some(p) => crate::config::project(tree, p)?,
        None => *project_configurations(tree)
            .first()
            .ok_or(BuildError::NoRelease)?,
    };
    let project = tree.configurations[pid].name.clone();
    let mut options = req.options.clone();
    options.project = Some(project.clone());
    // The user's -p still wins over the build's directories.
    let mut overrides = build_overrides();
    overrides.extend(options.overrides);
    options.overrides = overrides;
    let release = crate::config::Release::of(tree, pid);
    if !release.contains(pid) {
        return Err(BuildError::NoRelease);
    }
    let resolver = Resolver::new(tree, req.layout, options, Some(release))?;
    let graph = graph::select(tree, &resolver, &req.only)?;
    isolate::check(req.isolation)?;
    let workspace = crate::config::absolute(
        req.options.workspace.as_deref().unwrap_or(Path::new(
            req.layout
                .system
                .get("workspaceDir")
                .map_or("workspace", |s| s),
        )),
    );
    let checkouts = develop::checkouts(&workspace).map_err(|source| BuildError::Develop {
        path: workspace.join(".packyard/develop.json"),
        source,
    })?;
    let development = development_of(&graph, &checkouts);
    Ok(Prepared {
        tree,
        resolver,
        graph,
        steps,
        project,
        workspace,
        node: crate::resolve::node::ThisNode::new(Some(false)),
        development,
    })
}

/// Per component: `Some(true)` for a development checkout, `Some(false)` for one built on
/// one (a build dependency at any depth), `None` for the others.
fn development_of(graph: &graph::Graph, checkouts: &develop::Checkouts) -> Vec<Option<bool>> {
    let mut dev = vec![None; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        if checkouts.modules.contains_key(&n.resolved.module) {
            dev[i] = Some(true);
            for j in graph.dependents(i) {
                dev[j].get_or_insert(false);
            }
        }
    }
    dev
}

/// Runs the build `prepared` describes, publishing into (and reusing from) `repo`.
///
/// Each component runs in two phases on worker threads, `jobs` at a time: the first
/// (fresh checkout, source hash) needs nothing of its dependencies, so it overlaps with
/// their builds; the second (key, cache, targets, publish) starts once they are done.
/// Second phases go first when both could start: they are on the critical path.
pub fn build(
    req: &BuildRequest,
    prepared: &Prepared,
    repo: &dyn BuildRepo,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    let graph = &prepared.graph;
    let n = graph.nodes.len();
    let mut results: Vec<Option<ComponentResult>> = vec![None; n];
    let mut keys: Vec<Option<String>> = vec![None; n];
    // Per component: its job and first phase, once that is done.
    let mut begun: Vec<Option<(Job, run::Begun)>> = (0..n).map(|_| None).collect();
    let mut first_started = vec![false; n];
    let mut second_started = vec![false; n];
    let mut packages: Option<Box<dyn crate::resolve::Packages>> = None;
    let node = &prepared.node;
    let platform = prepared.resolver.platform().name.clone();
    let jobs = req.jobs.max(1);
    let (tx, rx) = mpsc::channel::<Msg>();
    let ok = |r: &Option<ComponentResult>| {
        r.as_ref()
            .is_some_and(|r| matches!(r.result, Outcome::Built | Outcome::Cached))
    };

    std::thread::scope(|s| -> Result<(), BuildError> {
        let mut running = 0;
        loop {
            // Skip what can no longer build: a dependency failed or was skipped.
            for i in 0..n {
                if second_started[i] || results[i].is_some() {
                    continue;
                }
                let blocked = graph.nodes[i].deps.iter().find(|&&d| {
                    results[d]
                        .as_ref()
                        .is_some_and(|r| matches!(r.result, Outcome::Failed | Outcome::Skipped))
                });
                if let Some(&d) = blocked {
                    // A first phase under way finishes; its component is skipped all the same.
                    second_started[i] = true;
                    first_started[i] = true;
                    let r = skipped(graph, i, &results[d]);
                    observer.done(i, &r);
                    results[i] = Some(r);
                }
            }
            while running < jobs {
                // A second phase whose dependencies are done…
                let second = (0..n).find(|&i| {
                    !second_started[i]
                        && begun[i].is_some()
                        && graph.nodes[i].deps.iter().all(|&d| ok(&results[d]))
                });
                if let Some(i) = second {
                    let Some((job, first)) = begun[i].take() else {
                        break;
                    };
                    second_started[i] = true;
                    let deps: Vec<(String, String)> = graph.nodes[i]
                        .deps
                        .iter()
                        .map(|&d| {
                            (
                                graph.nodes[d].resolved.configuration.clone(),
                                keys[d].clone().unwrap_or_default(),
                            )
                        })
                        .collect();
                    running += 1;
                    let tx = tx.clone();
                    s.spawn(move || {
                        let plans = Asked(tx.clone());
                        let (r, key) = run::finish(&job, first, &deps, &plans, repo, observer);
                        let _ = tx.send(Msg::Done(i, r, key));
                    });
                    continue;
                }
                // …else the next first phase, in build order.
                let Some(i) = (0..n).find(|&i| !first_started[i]) else {
                    break;
                };
                first_started[i] = true;
                let job = match job_for(req, prepared, i) {
                    Ok(job) => job,
                    Err(e) => {
                        second_started[i] = true;
                        let r = failed_before(graph, i, &e);
                        observer.done(i, &r);
                        results[i] = Some(r);
                        continue;
                    }
                };
                running += 1;
                let tx = tx.clone();
                s.spawn(move || {
                    let first = run::begin(&job, observer);
                    let _ = tx.send(Msg::Begun(i, Box::new((job, first))));
                });
            }
            if running == 0 {
                break;
            }
            match rx.recv() {
                Ok(Msg::Plan(i, reply)) => {
                    if packages.is_none() {
                        packages = Some(repo.packages()?);
                    }
                    let plan = match &packages {
                        Some(p) => plan_for(req, prepared, i, p.as_ref(), node),
                        None => continue,
                    };
                    let _ = reply.send(plan.map_err(|e| e.with_hint()));
                }
                Ok(Msg::Spec(i, reply)) => {
                    let _ = reply.send(prepared.spec(req, i));
                }
                Ok(Msg::Source(i, reply)) => {
                    let _ = reply.send(prepared.source(req, i));
                }
                Ok(Msg::Begun(i, b)) => {
                    running -= 1;
                    if results[i].is_none() {
                        begun[i] = Some(*b);
                    }
                }
                Ok(Msg::Done(i, r, key)) => {
                    running -= 1;
                    observer.done(i, &r);
                    keys[i] = key;
                    results[i] = Some(r);
                }
                Err(_) => break,
            }
        }
        Ok(())
    })?;

    let components = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| skipped(graph, i, &None)))
        .collect();
    Ok(BuildReport {
        project: prepared.project.clone(),
        platform,
        repository: repo.describe(),
        workspace: prepared.workspace.display().to_string(),
        components,
    })
}

fn failed_before(graph: &graph::Graph, i: usize, e: &BuildError) -> ComponentResult {
    let r = &graph.nodes[i].resolved;
    ComponentResult::new(
        &r.configuration,
        &r.module,
        Outcome::Failed,
        Some(e.with_hint()),
    )
}

/// What workers tell the coordinating thread.
pub enum Msg {
    /// Component `i` missed the cache and needs the plan for its dependencies (made
    /// here, where the resolver is; only on a miss, as it may query the package database).
    Plan(usize, mpsc::Sender<Result<crate::resolve::Plan, String>>),
    /// Component `i` is to be packed by packyard and needs its spec.
    Spec(
        usize,
        mpsc::Sender<Result<crate::pack::PackageSpec, String>>,
    ),
    /// Component `i` is built from a checkout and needs its source packages' plan.
    Source(usize, mpsc::Sender<Result<crate::pack::SourcePlan, String>>),
    /// Component `i`'s first phase is done.
    Begun(usize, Box<(Job, run::Begun)>),
    Done(usize, ComponentResult, Option<String>),
}

/// Plans asked of the coordinating thread, which owns the resolver.
struct Asked(mpsc::Sender<Msg>);

impl Asked {
    fn ask<T>(
        &self,
        msg: impl FnOnce(mpsc::Sender<Result<T, String>>) -> Msg,
    ) -> Result<T, String> {
        let (reply, answer) = mpsc::channel();
        if self.0.send(msg(reply)).is_err() {
            return Err("the build is ending".into());
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err("the build is ending".into()))
    }
}

impl run::Coordinator for Asked {
    fn plan(&self, index: usize) -> Result<crate::resolve::Plan, String> {
        self.ask(|reply| Msg::Plan(index, reply))
    }

    fn spec(&self, index: usize) -> Result<crate::pack::PackageSpec, String> {
        self.ask(|reply| Msg::Spec(index, reply))
    }

    fn source(&self, index: usize) -> Result<crate::pack::SourcePlan, String> {
        self.ask(|reply| Msg::Source(index, reply))
    }
}

/// The resolver's plan for component `i`'s dependencies, staged into its own stage dir.
fn plan_for(
    req: &BuildRequest,
    prepared: &Prepared,
    i: usize,
    packages: &dyn crate::resolve::Packages,
    node: &dyn crate::resolve::Node,
) -> Result<crate::resolve::Plan, BuildError> {
    let n = &prepared.graph.nodes[i];
    let r = &n.resolved;
    let plan_request = PlanRequest {
        tree: prepared.tree,
        layout: req.layout,
        configuration: &r.configuration,
        options: prepared.resolver.options().clone(),
        runtime_deps: false,
        shallow: false,
    };
    // The plan's stage and workspace dirs are the component's: the resolver has the
    // build's ${stageDir} for each.
    Ok(crate::resolve::plan_with(
        &prepared.resolver,
        n.id,
        &plan_request,
        &[packages],
        node,
    )?)
}

fn skipped(graph: &graph::Graph, i: usize, because: &Option<ComponentResult>) -> ComponentResult {
    let r = &graph.nodes[i].resolved;
    let reason = match because {
        Some(b) if b.result == Outcome::Failed => {
            format!("needs {}, which failed", b.configuration)
        }
        Some(b) => format!("needs {}, which was skipped", b.configuration),
        None => "not started".into(),
    };
    ComponentResult::new(&r.configuration, &r.module, Outcome::Skipped, Some(reason))
}

/// Prepares component `i`'s job on the coordinating thread.
fn job_for(req: &BuildRequest, prepared: &Prepared, i: usize) -> Result<Job, BuildError> {
    let graph = &prepared.graph;
    let n = &graph.nodes[i];
    let r = &n.resolved;
    let path = |key: &str| PathBuf::from(r.value(key).unwrap_or_default());
    let commands: BTreeMap<String, String> = r
        .commands
        .iter()
        .filter(|c| !c.command.trim().is_empty())
        .map(|c| (c.target.clone(), c.command.clone()))
        .collect();
    let tarball = r
        .download
        .as_ref()
        .map(|d| d.tarball.clone())
        .unwrap_or_default();
    let workspace = prepared.workspace.clone();
    let tree_dir = crate::config::absolute(&prepared.tree.root);
    let mut configuration_text = key::configuration_text(
        r,
        &[
            (workspace.display().to_string(), "workspaceDir"),
            (tree_dir.display().to_string(), "treeDir"),
        ],
    );
    // The profiles: what they change beyond properties (which the text already holds).
    let profiles = &prepared.resolver.options().profiles;
    for p in profiles {
        configuration_text.push_str(&p.key_text());
    }
    let tag = match crate::config::names::ConfigurationName::parse(&r.configuration) {
        Some(crate::config::names::ConfigurationName {
            binding: crate::config::names::NameBinding::Release { .. },
            ..
        }) => r.value("tag").map(str::to_string),
        _ => None,
    };
    Ok(Job {
        index: i,
        configuration: r.configuration.clone(),
        module: r.module.clone(),
        platform: r.platform.clone(),
        commands,
        checkout_dir: workspace.join(&r.module),
        output: workspace.join("_output").join(&r.module),
        prefix: path("prefix"),
        stage: path("stageDir"),
        artifacts: path("artifactsDir"),
        workspace,
        tree_dir,
        tarball,
        configuration_text,
        tag,
        steps: prepared.steps.clone(),
        force: req.force,
        keep_going: req.keep_going,
        step_timeout: req.step_timeout,
        isolation: req.isolation,
        root: req.root.clone(),
        env: profiles.iter().flat_map(|p| p.env.clone()).collect(),
        development: prepared.development[i].map(|in_place| run::Development {
            in_place,
            publish: req.publish_development,
        }),
        local_deps: prepared.graph.nodes[i]
            .deps
            .iter()
            .filter(|&&d| prepared.development[d].is_some())
            .map(|&d| {
                let r = &prepared.graph.nodes[d].resolved;
                let tarball = r
                    .download
                    .as_ref()
                    .map(|x| x.tarball.clone())
                    .unwrap_or_default();
                (
                    r.configuration.clone(),
                    prepared
                        .workspace
                        .join("_output")
                        .join(&r.module)
                        .join("artifacts")
                        .join(tarball),
                )
            })
            .collect(),
    })
}
