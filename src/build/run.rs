//! One component's build, on a worker thread: a fresh checkout, its build key, the cache
//! check, its build dependencies staged, the targets in order with their output in one
//! log, packing, publishing, and the build record.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cache::BuildRepo;
use super::isolate::{self, Isolation, Sandbox};
use super::root::Layer;
use super::{ComponentResult, Observer, Outcome};
use crate::config::TARGETS;
use crate::pack::PackageSpec;
use crate::repo::builds::{BuildRecord, BuildResult};
use crate::resolve::Plan;
use crate::resolve::fetch::{self, FetchOptions};

/// Everything a worker needs about its component, prepared where the module tree is (on
/// the coordinating thread of `packyard build`, or by a server for a build node): plain
/// data, so the component builds with no tree at hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub index: usize,
    pub configuration: String,
    pub module: String,
    pub platform: String,
    /// Target → expanded command; empty commands left out.
    pub commands: BTreeMap<String, String>,
    pub workspace: PathBuf,
    /// The module tree's directory (a sandbox shows it, read-only).
    pub tree_dir: PathBuf,
    /// `${workspaceDir}/<moduleName>`: where checkout puts the source and targets run.
    pub checkout_dir: PathBuf,
    /// `${workspaceDir}/_output/<moduleName>`: everything else of this component.
    pub output: PathBuf,
    pub prefix: PathBuf,
    pub stage: PathBuf,
    pub artifacts: PathBuf,
    /// The tarball's download-from path: the build record and log sit beside it.
    pub tarball: String,
    pub configuration_text: String,
    /// The VCS tag a release configuration (`_R_`) is bound to: it stands for the
    /// source in the key, so a cached component needs no checkout. `None` (a branch
    /// configuration, or no tag): the checked-out files are hashed.
    pub tag: Option<String>,
    /// Which steps run (`checkout`, the targets, `clean`).
    pub steps: Steps,
    pub force: bool,
    pub keep_going: bool,
    /// How long one step may run.
    pub step_timeout: Option<Duration>,
    /// How its steps run.
    pub isolation: Isolation,
    /// The pristine root its targets run in (`--root`), made ready on this machine.
    #[serde(skip)]
    pub root: Option<super::root::Root>,
    /// The environment of every target (the profiles' `[env]`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// A development build (see `build::develop`): in place and incrementally.
    #[serde(default)]
    pub development: Option<Development>,
    /// Build dependencies built as development builds in this workspace: their
    /// configurations and tarballs there, staged from the workspace, not a repository.
    #[serde(default)]
    pub local_deps: Vec<(String, PathBuf)>,
}

/// How a development build runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Development {
    /// Its own checkout is a development one (not a dependent of one): never removed,
    /// built in place.
    pub in_place: bool,
    /// Published: only into a repository the build was given by name.
    pub publish: bool,
}

impl Job {
    /// The paths its sandboxed steps are made of.
    fn sandbox(&self) -> Sandbox<'_> {
        Sandbox {
            workspace: &self.workspace,
            checkout: &self.checkout_dir,
            output: &self.output,
            tree: &self.tree_dir,
        }
    }

    /// The build's log, written while it runs.
    pub fn log_file(&self) -> PathBuf {
        self.output.join("build.log")
    }

    /// A whole build without `--force` reads (and writes) the cache.
    pub fn uses_cache(&self) -> bool {
        self.steps.is_full() && !self.force
    }
}

/// What a component's build asks of the side that holds the module tree, each only when
/// it needs it (a cached component needs neither): the plan that stages its build
/// dependencies (once they are published), and the spec its prefix is packed by.
/// `packyard build` asks its coordinating thread; a build node gets both with its task.
pub trait Coordinator: Sync {
    fn plan(&self, index: usize) -> Result<Plan, String>;
    /// Why the configuration cannot be packed, if it cannot (the packaging step fails
    /// with it, as `pack` would).
    fn spec(&self, index: usize) -> Result<PackageSpec, String>;
    /// What the component's source packages are made of.
    fn source(&self, index: usize) -> Result<crate::pack::SourcePlan, String>;
}

/// The steps asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Steps {
    pub names: Vec<String>,
}

impl Steps {
    /// Every step but `clean`: a whole build, which may be taken from the cache.
    pub fn full() -> Steps {
        let mut names = vec!["checkout".to_string()];
        names.extend(TARGETS.iter().map(|t| t.to_string()));
        Steps { names }
    }

    pub fn has(&self, step: &str) -> bool {
        self.names.iter().any(|n| n == step)
    }

    pub fn is_full(&self) -> bool {
        let full = Steps::full();
        full.names.iter().all(|n| self.has(n)) && !self.has("clean")
    }
}

/// A failure inside a component's build: which step, and why.
struct Failed {
    step: String,
    why: String,
}

fn failed(step: &str, why: impl std::fmt::Display) -> Failed {
    Failed {
        step: step.to_string(),
        why: why.to_string(),
    }
}

/// The log file of one component, with a line per step.
struct Log {
    path: PathBuf,
    file: fs::File,
}

impl Log {
    fn line(&mut self, text: &str) {
        // A log that cannot be written must not fail the build it describes.
        let _ = writeln!(self.file, "{text}");
    }
}

/// A component after its first phase — a fresh checkout and its source hash, which
/// need nothing of its dependencies — waiting for them to be done.
pub struct Begun {
    start: Instant,
    log: Result<Log, String>,
    /// Whether the first phase checked the source out (a tagged source is checked out
    /// only when the cache misses).
    checked_out: bool,
    /// The source hash (`None` when only `clean` runs), or why the phase failed.
    source: Result<Option<String>, Failed>,
}

/// The first phase of `job`: its directories made afresh, `clean` and `checkout`, the
/// source hash.
pub fn begin(job: &Job, observer: &dyn Observer) -> Begun {
    let start = Instant::now();
    let log_path = job.log_file();
    // What an earlier build left (prefix, stage, artifacts) stays until this one
    // builds: a cached component keeps it.
    let prepared = (|| -> std::io::Result<Log> {
        fs::create_dir_all(job.output.join("tmp"))?;
        let file = fs::File::create(&log_path)?;
        Ok(Log {
            path: log_path.clone(),
            file,
        })
    })();
    let mut log = match prepared {
        Ok(l) => l,
        Err(e) => {
            return Begun {
                start,
                log: Err(format!("{}: {e}", job.output.display())),
                checked_out: false,
                source: Ok(None),
            };
        }
    };
    log.line(&format!(
        "packyard {} build of {} ({}) for {}",
        env!("CARGO_PKG_VERSION"),
        job.configuration,
        job.module,
        job.platform
    ));
    if job.isolation == Isolation::Bwrap {
        log.line("isolation: bwrap (every step in a bubblewrap sandbox; --isolate bwrap)");
    }
    if job.development.as_ref().is_some_and(|d| d.in_place) {
        // Kept as it is: the key covers the working tree's files.
        log.line(&format!(
            "development build: in place in {}, incrementally",
            job.checkout_dir.display()
        ));
        let source = if job.checkout_dir.is_dir() {
            super::key::source_hash(&job.checkout_dir)
                .map(|h| Some(format!("development tree {h}")))
                .map_err(|e| failed("checkout", e))
        } else {
            Err(failed(
                "checkout",
                format!(
                    "the development checkout {} is gone; `packyard develop --release {}` \
                     releases it",
                    job.checkout_dir.display(),
                    job.module
                ),
            ))
        };
        return Begun {
            start,
            log: Ok(log),
            checked_out: true,
            source,
        };
    }
    if let Some(tag) = job.tag.as_ref().filter(|_| job.uses_cache()) {
        log.line(&format!("source: tag {tag}"));
        return Begun {
            start,
            log: Ok(log),
            checked_out: false,
            source: Ok(Some(format!("tag {tag}"))),
        };
    }
    let source = check_out(job, observer, &mut log, true);
    Begun {
        start,
        log: Ok(log),
        checked_out: true,
        source,
    }
}

/// The second phase of `job`, once its build dependencies are done (`dependency_keys`:
/// their configurations and keys): the key, the cache, or the targets, packing and
/// publishing. Every failure ends up in the result; the key is returned for dependents.
pub fn finish(
    job: &Job,
    begun: Begun,
    dependency_keys: &[(String, String)],
    plans: &dyn Coordinator,
    repo: &dyn BuildRepo,
    observer: &dyn Observer,
) -> (ComponentResult, Option<String>) {
    let mut result = ComponentResult::new(&job.configuration, &job.module, Outcome::Failed, None);
    let mut log = match begun.log {
        Ok(l) => l,
        Err(why) => {
            result.reason = Some(why);
            result.seconds = begun.start.elapsed().as_secs_f64();
            return (result, None);
        }
    };
    let outcome = begun.source.and_then(|source| match source {
        Some(source) => build(
            job,
            &source,
            begun.checked_out,
            dependency_keys,
            plans,
            repo,
            observer,
            &mut log,
            &mut result,
        ),
        None => Ok(Outcome::Built),
    });
    let key = result.key.clone();
    match outcome {
        Ok(Outcome::Cached) => {
            result.result = Outcome::Cached;
            // The log of the build that made the artifacts stays the published one (a
            // development build's is this one's, which says where they are).
            if job.development.is_none() {
                result.log = Some(repo.location(&crate::paths::log_path(&job.tarball)));
            }
        }
        Ok(_) => result.result = Outcome::Built,
        Err(f) => {
            log.line(&format!("== {} failed: {}", f.step, f.why));
            result.result = Outcome::Failed;
            result.reason = Some(format!("{}: {}", f.step, f.why));
            result.artifacts.clear();
        }
    }
    result.seconds = begun.start.elapsed().as_secs_f64();
    let _ = fs::remove_dir_all(job.output.join("tmp"));
    if result.result != Outcome::Cached {
        publish_record(job, repo, &mut log, &mut result, key.as_deref());
    }
    if result.log.is_none() {
        result.log = Some(log.path.display().to_string());
    }
    let key = (result.result != Outcome::Failed).then_some(key).flatten();
    (result, key)
}

/// Publishes the log and the record of a finished build (also a failed one, so the
/// failure can be read from the repository).
fn publish_record(
    job: &Job,
    repo: &dyn BuildRepo,
    log: &mut Log,
    result: &mut ComponentResult,
    key: Option<&str>,
) {
    if !job.steps.has("publish") || job.development.as_ref().is_some_and(|d| !d.publish) {
        return;
    }
    let record = BuildRecord {
        configuration: job.configuration.clone(),
        module: job.module.clone(),
        platform: job.platform.clone(),
        key: key.unwrap_or_default().to_string(),
        result: if result.result == Outcome::Built {
            BuildResult::Built
        } else {
            BuildResult::Failed
        },
        artifacts: result.artifacts.clone(),
        failed_target: result
            .reason
            .as_ref()
            .and_then(|r| r.split(':').next())
            .map(str::to_string),
        seconds: result.seconds,
        finished: chrono::Utc::now().timestamp(),
        packyard: env!("CARGO_PKG_VERSION").to_string(),
        development: job.development.is_some(),
    };
    let text = fs::read(&log.path).unwrap_or_default();
    match repo.record(&job.tarball, &record, &text) {
        Ok(()) => {
            result.log = Some(repo.location(&crate::paths::log_path(&job.tarball)));
        }
        Err(e) => {
            log.line(&format!("== the build record was not published: {e}"));
            result.result = Outcome::Failed;
            let why = format!("recording the build in {}: {e}", repo.describe());
            result.reason = Some(match result.reason.take() {
                Some(r) => format!("{r}; {why}"),
                None => why,
            });
        }
    }
}

/// Removes what an earlier build of the component left below `_output/<module>/`
/// (its log is being written), but its stage when `keep_stage`.
fn reset_output(job: &Job, keep_stage: bool) -> std::io::Result<()> {
    if !keep_stage {
        // First: a stage being replaced is never taken for a whole one.
        super::develop::forget_stage(&job.output)?;
    }
    for dir in [
        &job.prefix,
        &job.stage,
        &job.artifacts,
        &job.output.join("downloads"),
    ] {
        if dir.exists() && !(keep_stage && dir == &job.stage) {
            fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

/// `clean` and `checkout` as asked, then the source hash if `hash` (`None` when only
/// `clean` runs).
fn check_out(
    job: &Job,
    observer: &dyn Observer,
    log: &mut Log,
    hash: bool,
) -> Result<Option<String>, Failed> {
    if job.steps.has("clean") {
        observer.step(job.index, "clean");
        reset_output(job, false).map_err(|e| failed("clean", e))?;
        if let Some(cmd) = job.commands.get("clean")
            && job.checkout_dir.is_dir()
        {
            run_step(job, log, "clean", cmd, isolate::Step::Target, None)?;
        }
    }
    if job.steps.has("checkout") {
        observer.step(job.index, "checkout");
        let cmd = job.commands.get("checkout").ok_or_else(|| {
            failed(
                "checkout",
                "the configuration has no checkout command; add one under [configuration.commands]",
            )
        })?;
        if job.checkout_dir.exists() {
            fs::remove_dir_all(&job.checkout_dir).map_err(|e| failed("checkout", e))?;
        }
        fs::create_dir_all(&job.workspace).map_err(|e| failed("checkout", e))?;
        if job.isolation == Isolation::Bwrap {
            let sandbox = job.sandbox();
            isolate::make_scratch(&sandbox).map_err(|e| failed("checkout", e))?;
            let ran =
                run_step(job, log, "checkout", cmd, isolate::Step::Checkout, None).and_then(|()| {
                    isolate::settle_checkout(&sandbox).map_err(|why| failed("checkout", why))
                });
            let _ = fs::remove_dir_all(sandbox.scratch());
            ran?;
        } else {
            run_step(job, log, "checkout", cmd, isolate::Step::Checkout, None)?;
        }
        if !job.checkout_dir.is_dir() {
            return Err(failed(
                "checkout",
                format!(
                    "the command did not create {} (checkout must create the directory named after the module)",
                    job.checkout_dir.display()
                ),
            ));
        }
    }
    let only_clean = job.steps.names.iter().all(|n| n == "clean");
    if only_clean {
        return Ok(None);
    }
    if !job.checkout_dir.is_dir() {
        return Err(failed(
            "checkout",
            format!(
                "no checkout at {}; run the build with the checkout target",
                job.checkout_dir.display()
            ),
        ));
    }

    if !hash {
        return Ok(None);
    }
    super::key::source_hash(&job.checkout_dir)
        .map(Some)
        .map_err(|e| failed("checkout", e))
}

#[allow(clippy::too_many_arguments)]
fn build(
    job: &Job,
    source: &str,
    checked_out: bool,
    dependency_keys: &[(String, String)],
    plans: &dyn Coordinator,
    repo: &dyn BuildRepo,
    observer: &dyn Observer,
    log: &mut Log,
    result: &mut ComponentResult,
) -> Result<Outcome, Failed> {
    // The key, and the cache.
    let key = super::key::build_key(
        &job.configuration_text,
        source,
        &job.platform,
        dependency_keys,
    );
    log.line(&format!("key {key} (source {source})"));
    result.key = Some(key.clone());
    let dev_state = job
        .development
        .as_ref()
        .and_then(|_| super::develop::state(&job.output));
    if job.development.is_some() {
        // Its cache is the workspace: the artifacts of the last build of this key.
        if job.uses_cache()
            && let Some(state) = dev_state.as_ref().filter(|s| s.key == key)
            && !state.artifacts.is_empty()
            && state
                .artifacts
                .iter()
                .all(|f| job.artifacts.join(&f.path).is_file())
        {
            log.line(&format!(
                "cached: {} holds this development build's artifacts",
                job.artifacts.display()
            ));
            result.artifacts = state.artifacts.clone();
            return Ok(Outcome::Cached);
        }
    } else if job.uses_cache() {
        observer.step(job.index, "cache");
        match repo.build(&job.tarball) {
            Ok(Some(b)) if b.current && b.record.key == key => {
                log.line(&format!(
                    "cached: {} holds this build's artifacts",
                    repo.describe()
                ));
                result.artifacts = b.record.artifacts;
                return Ok(Outcome::Cached);
            }
            Ok(_) => {}
            Err(e) => log.line(&format!("the cache could not be read ({e}); building")),
        }
    }

    if !checked_out {
        // Its tag is its key: the files need no hash.
        check_out(job, observer, log, false)?;
    }
    // A development build keeps the stage its last build made from the same build
    // dependencies: staging them again would cost it more than its own build tool's work.
    // What the stage is made from: the key of a build with no source of its own.
    let staged = super::key::build_key(&job.configuration_text, "", &job.platform, dependency_keys);
    let keep_stage = job.development.is_some()
        && job.stage.is_dir()
        && super::develop::staged(&job.output).as_deref() == Some(staged.as_str());
    reset_output(job, keep_stage).map_err(|e| failed("fetch", e))?;
    // A development build configures once per configuration: later ones start at compile.
    let configured = crate::lock::hash(&job.configuration_text);
    let skip_configure = job.development.is_some()
        && dev_state
            .as_ref()
            .is_some_and(|s| s.configured == configured);
    // The source packages, from the fresh checkout before any target changes it, when
    // packyard packs (a packaging command of the configuration's own makes what it
    // makes).
    if job.steps.has("checkout")
        && job.steps.has("packaging")
        && !job.commands.contains_key("packaging")
        && job.development.is_none()
    {
        observer.step(job.index, "source");
        pack_sources(job, plans, log)?;
    }

    // Build dependencies into this component's own stage dir.
    observer.step(job.index, "fetch");
    if keep_stage {
        log.line(&format!(
            "== fetch: stage kept (the same build dependencies as the last build's): {}",
            job.stage.display()
        ));
    } else {
        stage(job, plans, repo, log)?;
        if job.development.is_some()
            && let Err(e) = super::develop::mark_staged(&job.output, &staged)
        {
            log.line(&format!("warning: the stage's record was not kept: {e}"));
        }
    }
    // A fresh root with the build-time externals, which the targets run in.
    let layer = match &job.root {
        Some(root) => {
            observer.step(job.index, "root");
            Some(make_root(job, root, plans, log)?)
        }
        None => None,
    };
    let built = run_targets(
        job,
        plans,
        repo,
        observer,
        log,
        result,
        layer.as_ref(),
        skip_configure,
    );
    if job.development.is_some() && built.is_ok() {
        // The key of the tree as this build left it: unchanged, the next one is cached.
        let after = match job.development.as_ref().is_some_and(|d| d.in_place) {
            true => super::key::source_hash(&job.checkout_dir)
                .map(|h| format!("development tree {h}"))
                .unwrap_or_else(|_| source.to_string()),
            false => source.to_string(),
        };
        let key = super::key::build_key(
            &job.configuration_text,
            &after,
            &job.platform,
            dependency_keys,
        );
        let saved = super::develop::save_state(
            &job.output,
            &super::develop::State {
                key: key.clone(),
                configured,
                artifacts: result.artifacts.clone(),
            },
        );
        if let Err(e) = saved {
            log.line(&format!("warning: the development state was not kept: {e}"));
        }
        result.key = Some(key);
    }
    if let Some(layer) = layer {
        let start = Instant::now();
        let gone = layer.remove();
        log.line(&format!(
            "== root: taken down in {:.2} s{}",
            start.elapsed().as_secs_f64(),
            gone.err()
                .map(|e| format!(" (not whole: {e})"))
                .unwrap_or_default()
        ));
    }
    built
}

/// The targets, packing and publishing, in `layer` when the build has a root; from
/// `compile` on when `skip_configure` (a development build configured before).
#[allow(clippy::too_many_arguments)]
fn run_targets(
    job: &Job,
    plans: &dyn Coordinator,
    repo: &dyn BuildRepo,
    observer: &dyn Observer,
    log: &mut Log,
    result: &mut ComponentResult,
    layer: Option<&Layer>,
    skip_configure: bool,
) -> Result<Outcome, Failed> {
    let mut first_failure: Option<Failed> = None;
    for target in TARGETS {
        if !job.steps.has(target) {
            continue;
        }
        if skip_configure && matches!(target, "init" | "configure") {
            if job.commands.contains_key(target) {
                log.line(&format!(
                    "== {target}: skipped (development build: done by an earlier build of \
                     this configuration)"
                ));
            }
            continue;
        }
        // After a failure only --keep-going goes on, and never to packing or publishing.
        if first_failure.is_some() && (!job.keep_going || matches!(target, "packaging" | "publish"))
        {
            continue;
        }
        // Packyard's own steps, and targets with a command: the others do nothing.
        if job.commands.contains_key(target) || matches!(target, "packaging" | "publish") {
            observer.step(job.index, target);
        }
        let outcome = match (target, job.commands.get(target)) {
            ("install", Some(cmd)) => fs::create_dir_all(&job.prefix)
                .map_err(|e| failed("install", e))
                .and_then(|_| run_step(job, log, target, cmd, isolate::Step::Target, layer)),
            ("packaging", None) => pack(job, plans, log),
            ("packaging", Some(cmd)) => fs::create_dir_all(&job.artifacts)
                .map_err(|e| failed("packaging", e))
                .and_then(|_| run_step(job, log, target, cmd, isolate::Step::Target, layer)),
            ("publish", _) if job.development.as_ref().is_some_and(|d| !d.publish) => {
                log.line(
                    "== publish: skipped (a development build is published only into a \
                     repository named with --repo)",
                );
                local_artifacts(&job.artifacts)
                    .map(|files| result.artifacts = files)
                    .map_err(|e| failed("publish", e))
            }
            ("publish", cmd) => {
                let published = publish(job, repo, log);
                match (published, cmd) {
                    (Ok(files), Some(cmd)) => {
                        result.artifacts = files;
                        run_step(job, log, target, cmd, isolate::Step::Target, layer)
                    }
                    (Ok(files), None) => {
                        result.artifacts = files;
                        Ok(())
                    }
                    (Err(e), _) => Err(e),
                }
            }
            (_, Some(cmd)) => run_step(job, log, target, cmd, isolate::Step::Target, layer),
            (_, None) => Ok(()),
        };
        if let Err(f) = outcome {
            if job.keep_going {
                log.line(&format!(
                    "== {} failed: {}; going on (--keep-going)",
                    f.step, f.why
                ));
            }
            first_failure.get_or_insert(f);
        }
    }
    match first_failure {
        Some(f) => Err(f),
        None => Ok(Outcome::Built),
    }
}

/// Stages the component's build dependencies (tarballs from the repository, or from the
/// workspace for development builds of it) into its own stage dir, as `packyard fetch`
/// would. Installing packages is left to the node's
/// owner: a build never changes the machine outside its workspace.
fn stage(
    job: &Job,
    plans: &dyn Coordinator,
    repo: &dyn BuildRepo,
    log: &mut Log,
) -> Result<(), Failed> {
    let mut plan = plans.plan(job.index).map_err(|why| failed("fetch", why))?;
    // Development builds of this workspace are staged from it.
    for (configuration, tarball) in &job.local_deps {
        fs::create_dir_all(&job.stage).map_err(|e| failed("fetch", e))?;
        crate::resolve::unpack::unpack(tarball, &job.stage).map_err(|e| {
            failed(
                "fetch",
                format!("{configuration} (a development build here): {e}"),
            )
        })?;
        log.line(&format!(
            "== staged {configuration} into {} from {} (a development build)",
            job.stage.display(),
            tarball.display()
        ));
    }
    plan.dependencies.retain(|d| {
        !job.local_deps
            .iter()
            .any(|(c, _)| d.configuration.as_deref() == Some(c.as_str()))
    });
    let missing: Vec<String> = plan
        .dependencies
        .iter()
        .filter(|d| d.action == crate::resolve::Action::Source && !d.listed_only)
        .map(|d| d.configuration.clone().unwrap_or_else(|| d.module.clone()))
        .collect();
    if !missing.is_empty() {
        return Err(failed(
            "fetch",
            format!(
                "{} not in {} (built or cached by this build, but not found there)",
                missing.join(", "),
                repo.describe()
            ),
        ));
    }
    plan.dependencies
        .retain(|d| d.action != crate::resolve::Action::Source);
    let opts = FetchOptions {
        // Shared by the workspace's components and kept between builds: a dependency
        // several components stage is downloaded once (checked against the plan's
        // checksum every time it is used).
        cache: crate::build::workspace::downloads(&job.workspace),
        stage_dir: job.stage.clone(),
        workspace_dir: job.workspace.clone(),
        privileged: false,
        sudo: false,
        jobs: 4,
        token: repo.token(),
        dry_run: false,
    };
    let report = fetch::fetch(&plan, &opts, &crate::progress::Quiet).map_err(|e| {
        let hint = e.hint();
        failed("fetch", format!("{e} ({hint})"))
    })?;
    for m in &report.unpacked {
        log.line(&format!("== staged {m} into {}", job.stage.display()));
    }
    for l in &report.left {
        log.line(&format!(
            "warning: {}: {} (the build goes on; a target that needs it will fail)",
            l.module, l.reason
        ));
    }
    Ok(())
}

fn pack(job: &Job, plans: &dyn Coordinator, log: &mut Log) -> Result<(), Failed> {
    log.line(&format!(
        "== packaging: packyard packs {} into {}",
        job.prefix.display(),
        job.artifacts.display()
    ));
    let spec = plans
        .spec(job.index)
        .map_err(|why| failed("packaging", why))?;
    fs::create_dir_all(&job.prefix).map_err(|e| failed("packaging", e))?;
    let artifacts = crate::pack::pack_spec(
        &spec,
        &[],
        &job.prefix,
        &job.artifacts,
        &crate::progress::Quiet,
    );
    log_artifacts(log, "packaging", artifacts)
}

/// Logs what packing wrote, or fails `step` with why it could not.
fn log_artifacts(
    log: &mut Log,
    step: &str,
    packed: Result<Vec<crate::pack::Artifact>, crate::pack::PackError>,
) -> Result<(), Failed> {
    let artifacts = packed.map_err(|e| {
        let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
        failed(step, format!("{e}{hint}"))
    })?;
    for a in artifacts {
        log.line(&format!(
            "   {} ({} bytes, sha256 {})",
            a.path, a.size, a.sha256
        ));
    }
    Ok(())
}

/// The component's fresh root: a layer over its platform's, the workspace's paths made
/// to bind them, its build-time externals installed (as root, with the network).
fn make_root(
    job: &Job,
    root: &super::root::Root,
    plans: &dyn Coordinator,
    log: &mut Log,
) -> Result<Layer, Failed> {
    let start = Instant::now();
    let layer = Layer::over(root, &job.output.join("root")).map_err(|e| failed("root", e))?;
    layer
        .mount_points(&[
            &job.tree_dir,
            &job.workspace,
            &job.checkout_dir,
            &job.output,
        ])
        .map_err(|e| failed("root", e))?;
    log.line(&format!(
        "== root: a fresh layer over the {} root in {:.2} s",
        root.platform,
        start.elapsed().as_secs_f64()
    ));
    let externals = plans
        .source(job.index)
        .map_err(|why| failed("root", why))?
        .externals;
    let Some(cmd) = super::root::install_command(root.format, &externals) else {
        log.line("== root: no build-time externals to install");
        return Ok(layer);
    };
    let wanted: Vec<String> = externals.iter().map(|r| r.deb()).collect();
    log.line(&format!(
        "== root: installing {} (as root)",
        wanted.join(", ")
    ));
    let start = Instant::now();
    let from = log.file.stream_position().unwrap_or(0);
    let out = log.file.try_clone().map_err(|e| failed("root", e))?;
    let err = log.file.try_clone().map_err(|e| failed("root", e))?;
    let child = super::stop::spawn(layer.privileged(&cmd).stdout(out).stderr(err))
        .map_err(|e| failed("root", format!("cannot run bwrap: {e}")))?;
    let status = super::stop::wait(child, job.step_timeout)
        .map_err(|e| failed("root", format!("waiting for bwrap: {e}")))?;
    let said = output_since(&log.path, from);
    match status {
        Some(s) if s.success() => {
            log.line(&format!(
                "== root: installed in {:.2} s",
                start.elapsed().as_secs_f64()
            ));
            Ok(layer)
        }
        _ => {
            let _ = layer.remove();
            Err(failed(
                "root",
                match super::root::missing_package(&said) {
                    Some(p) => format!(
                        "the build-time external {p} is not a package of the {} root's \
                         distribution",
                        root.platform
                    ),
                    None => format!(
                        "installing {} into the {} root failed (see the log)",
                        wanted.join(", "),
                        root.platform
                    ),
                },
            ))
        }
    }
}

/// Packs the component's source packages from its fresh checkout into its artifacts.
fn pack_sources(job: &Job, plans: &dyn Coordinator, log: &mut Log) -> Result<(), Failed> {
    // A checkout of nothing (but its `.git`) has no source to package.
    let empty = fs::read_dir(&job.checkout_dir)
        .map_err(|e| failed("source", e))?
        .flatten()
        .all(|e| e.file_name() == ".git");
    if empty {
        log.line("== source: the checkout is empty; no source packages");
        return Ok(());
    }
    let plan = plans
        .source(job.index)
        .map_err(|why| failed("source", why))?;
    log.line(&format!(
        "== source: packyard packs {} into source packages in {}",
        job.checkout_dir.display(),
        job.artifacts.display()
    ));
    let artifacts = crate::pack::pack_source_plan(
        &plan,
        &job.checkout_dir,
        &job.artifacts,
        &crate::progress::Quiet,
    );
    log_artifacts(log, "source", artifacts)
}

/// `SOURCE_DATE_EPOCH` from the environment, when it is a number.
pub(super) fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

fn publish(
    job: &Job,
    repo: &dyn BuildRepo,
    log: &mut Log,
) -> Result<Vec<crate::repo::builds::BuiltFile>, Failed> {
    log.line(&format!("== publish: into {}", repo.describe()));
    let files = repo.publish(&job.artifacts).map_err(|e| {
        let hint = e
            .hint
            .as_ref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        failed("publish", format!("{e}{hint}"))
    })?;
    for f in &files {
        log.line(&format!("   {}", f.path));
    }
    Ok(files)
}

/// The files a component's packing left in `artifacts`, as a build records them.
fn local_artifacts(artifacts: &Path) -> std::io::Result<Vec<crate::repo::builds::BuiltFile>> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![artifacts.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(list) = fs::read_dir(&dir) else {
            continue;
        };
        for e in list {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p)?;
                out.push(crate::repo::builds::BuiltFile {
                    path: p
                        .strip_prefix(artifacts)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned(),
                    sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Runs one step's command with `sh -c` (in a sandbox with `--isolate bwrap`) in the
/// directory of its kind, its output appended to the log.
fn run_step(
    job: &Job,
    log: &mut Log,
    step: &str,
    cmd: &str,
    kind: isolate::Step,
    root: Option<&Layer>,
) -> Result<(), Failed> {
    let sandbox = job.sandbox();
    let dir = sandbox.dir(kind);
    log.line(&format!("== {step}: {cmd}"));
    log.line(&format!("   (in {})", dir.display()));
    if !job.env.is_empty() {
        let env: Vec<String> = job.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log.line(&format!(
            "   (environment from the profiles: {})",
            env.join(" ")
        ));
    }
    let sandboxed = job.isolation == Isolation::Bwrap || root.is_some();
    match (root, &job.root) {
        (Some(_), Some(r)) => log.line(&format!(
            "   ({})",
            isolate::describe_root(&sandbox, &r.platform)
        )),
        _ if sandboxed => log.line(&format!("   ({})", isolate::describe(&sandbox, kind))),
        _ => {}
    }
    // Where the step's output starts, to find a write the sandbox refused.
    let from = log.file.stream_position().unwrap_or(0);
    let start = Instant::now();
    let out = log.file.try_clone().map_err(|e| failed(step, e))?;
    let err = log.file.try_clone().map_err(|e| failed(step, e))?;
    let program = if sandboxed { "bwrap" } else { "sh" };
    let mut shell = match root {
        Some(layer) => isolate::rooted(layer, &sandbox),
        None => isolate::shell(job.isolation, &sandbox, kind),
    };
    let child = super::stop::spawn(
        shell
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            // Temporary files stay in the workspace and go with it.
            .env("TMPDIR", job.output.join("tmp"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    )
    .map_err(|e| failed(step, format!("cannot run {program}: {e}")))?;
    let status = super::stop::wait(child, job.step_timeout)
        .map_err(|e| failed(step, format!("waiting for {program}: {e}")))?;
    let seconds = start.elapsed().as_secs_f64();
    let Some(status) = status else {
        let limit = job.step_timeout.unwrap_or_default().as_secs_f64();
        log.line(&format!(
            "== {step}: stopped after {seconds:.2} s (--step-timeout {limit})"
        ));
        return Err(failed(
            step,
            format!(
                "`{cmd}` ran longer than --step-timeout ({limit} s) and was stopped, with \
                 everything it started"
            ),
        ));
    };
    if status.success() {
        log.line(&format!("== {step}: ok in {seconds:.2} s"));
        Ok(())
    } else {
        let how = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        let mut why = format!("`{cmd}` failed ({how}) after {seconds:.2} s");
        if sandboxed
            && let Some(because) = isolate::explain(&sandbox, &output_since(&log.path, from))
        {
            why.push_str(&format!("; {because}"));
        }
        Err(failed(step, why))
    }
}

/// The log from byte `from` on (at most 8 MiB of it): one step's output.
fn output_since(path: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = fs::File::open(path)
        && f.seek(std::io::SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(8 << 20).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}
