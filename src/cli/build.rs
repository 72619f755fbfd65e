//! `build`: arguments, the repository to publish into, progress lines and the summary;
//! the build itself is [`crate::build`].

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::repo::Target;
use super::{ContextArgs, Failure, Outcome, print_json, refuse_broken_tree};
use crate::build::cache::{CacheError, LocalBuildRepo, RemoteBuildRepo};
use crate::build::{self, BuildRequest, ComponentResult, Observer};
use crate::config::Tree;
use crate::repo::RepoSummary;
use crate::store::RepoKind;

#[derive(Args)]
pub struct BuildArgs {
    /// Parallel component builds.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Build only these components (module name, its last part, or configuration), and
    /// what they need.
    #[arg(long, num_args = 1.., value_name = "MODULE")]
    only: Vec<String>,
    /// Run only these steps (comma-separated): checkout, init, configure, compile, doc,
    /// checkstyle, install, packaging, test, prepublish, publish, postpublish, clean.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    targets: Option<Vec<String>>,
    /// The repository to publish into (and take cached builds from); the data
    /// directory's or server's only volatile repository if omitted.
    #[arg(long, value_name = "NAME")]
    repo: Option<String>,
    /// Build everything, even what the repository holds already.
    #[arg(long)]
    force: bool,
    /// After a failing target, still run the component's remaining targets (nothing is
    /// packed or published), so one run shows every failure.
    #[arg(long)]
    keep_going: bool,
    /// Stop any step (checkout, a target, clean) that runs longer than SECONDS, with
    /// everything it started, and fail the component.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    step_timeout: Option<u64>,
    /// How each step runs: `none`, on the host as it is; `bwrap`, in a bubblewrap
    /// sandbox (the host read-only but for the component's checkout, its
    /// `_output/<module>/` and a private /tmp; its own PID namespace; no network after
    /// checkout).
    #[arg(long, value_enum, default_value_t = Isolate::None, value_name = "HOW")]
    isolate: Isolate,
    /// Build each component in a fresh copy of this minimal system of the platform (a
    /// directory or tarball, e.g. `mmdebstrap --variant=buildd bookworm ROOT.tar`): its
    /// build-time externals installed there first (as root), its targets run there as
    /// nobody with no network. Repeatable, one per platform; needs root.
    #[arg(long = "root", value_name = "PLATFORM=ROOTFS", value_parser = build::root::RootSpec::parse)]
    roots: Vec<build::root::RootSpec>,
    #[command(flatten)]
    ctx: ContextArgs,
}

/// Makes the root `roots` gives for the build's platform ready in `dir/<platform>/`,
/// saying so on stderr unless `quiet`.
pub(super) fn ready_root(
    roots: &[build::root::RootSpec],
    platform: &crate::layout::Platform,
    dir: &std::path::Path,
    quiet: bool,
) -> Result<Option<build::root::Root>, Failure> {
    let Some(spec) = roots.iter().find(|r| r.platform == platform.name) else {
        if let Some(r) = roots.first() {
            return Err(Failure::new(
                format!(
                    "--root names {}, but this build is for {}",
                    r.platform, platform.name
                ),
                format!(
                    "give --root {}=ROOTFS, or build with --platform {}",
                    platform.name, r.platform
                ),
            ));
        }
        return Ok(None);
    };
    let start = Instant::now();
    let dir = dir.join(&platform.name);
    let mut say = |what: &str| {
        if !quiet {
            eprintln!("root {}: {what}", platform.name);
        }
    };
    let root = build::root::prepare(spec, platform.format, &dir, &mut say).map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    say(&format!("ready in {:.1} s", start.elapsed().as_secs_f64()));
    Ok(Some(root))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Isolate {
    None,
    Bwrap,
}

impl From<Isolate> for build::isolate::Isolation {
    fn from(i: Isolate) -> Self {
        match i {
            Isolate::None => build::isolate::Isolation::None,
            Isolate::Bwrap => build::isolate::Isolation::Bwrap,
        }
    }
}

/// The repository named, or the only volatile one.
fn pick_repo(list: &[RepoSummary], asked: Option<&str>, place: &str) -> Result<String, Failure> {
    if let Some(name) = asked {
        return Ok(name.to_string());
    }
    let volatile: Vec<&str> = list
        .iter()
        .filter(|r| r.record.kind == RepoKind::Volatile)
        .map(|r| r.record.name.as_str())
        .collect();
    match volatile.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Failure::new(
            format!("{place} has no volatile repository to publish builds into"),
            "create one: `packyard repo create nightly --kind volatile`, or name one with --repo"
                .to_string(),
        )),
        many => Err(Failure::new(
            format!(
                "{place} has several volatile repositories: {}",
                many.join(", ")
            ),
            "name the one to publish into with --repo".to_string(),
        )),
    }
}

pub fn cmd_build(args: BuildArgs, target: &Target, token: Option<&str>, json: bool) -> Outcome {
    let layout = target.layout();
    let tree = Tree::load(&args.ctx.tree)?;
    refuse_broken_tree(&tree)?;
    let request = BuildRequest {
        tree: &tree,
        layout,
        options: args.ctx.options()?,
        only: args.only.clone(),
        targets: args.targets.clone(),
        jobs: args.jobs,
        force: args.force,
        keep_going: args.keep_going,
        step_timeout: args.step_timeout.map(std::time::Duration::from_secs),
        isolation: args.isolate.into(),
        root: None,
        publish_development: args.repo.is_some(),
    };
    let prepared = build::prepare(&request).map_err(build_failed)?;
    // One build at a time in a workspace; another packyard's `_output/` is cleared.
    let held = build::workspace::hold(prepared.workspace()).map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    if let Some(version) = &held.cleared {
        eprintln!(
            "workspace {}: _output/ was written by packyard {version}; cleared it for {}",
            prepared.workspace().display(),
            build::workspace::VERSION
        );
    }
    if held.pruned.files > 0 {
        eprintln!(
            "workspace {}: removed {} unused download(s), {} bytes (unused for {} days, or \
             partial for a day)",
            prepared.workspace().display(),
            held.pruned.files,
            held.pruned.bytes,
            build::workspace::DOWNLOADS_KEPT.as_secs() / 86_400
        );
    }
    let mut request = request;
    request.root = ready_root(
        &args.roots,
        prepared.platform(),
        &prepared.workspace().join("_output").join(".roots"),
        json,
    )?;
    let lines = Lines::new(!json, prepared.configurations());
    let report = match target {
        Target::Local {
            data,
            layout,
            backends,
        } => {
            // A server holding the data directory is named at once, not after checkouts.
            if let Some(info) = crate::repo::running(data) {
                return Err(super::repo::failure(crate::repo::RepoError::InUse {
                    url: info.url,
                    pid: info.pid,
                }));
            }
            let asked = args.repo.clone();
            let place = data.display().to_string();
            let pick = Box::new(move |list: &[RepoSummary]| {
                pick_repo(list, asked.as_deref(), &place).map_err(|f| CacheError {
                    what: f.message,
                    hint: f.hint,
                })
            });
            let repo = LocalBuildRepo::open(backends, (*layout).clone(), args.repo.clone(), pick)
                .map_err(|e| Failure::new(&e, e.hint.clone()))?;
            let report = build::build(&request, &prepared, &repo, &lines).map_err(build_failed)?;
            // Every store write was flushed when made; closing the store would only
            // wait for its threads, which the command's exit ends anyway.
            std::mem::forget(repo);
            report
        }
        Target::Remote {
            client,
            url,
            layout,
        } => {
            let list = client.repos().map_err(super::repo::remote_failure)?;
            let name = pick_repo(&list, args.repo.as_deref(), url)?;
            client.repo(&name).map_err(super::repo::remote_failure)?;
            let repo = RemoteBuildRepo {
                client,
                url: url.clone(),
                name,
                token: token.map(str::to_string),
                layout,
                lease: None,
            };
            build::build(&request, &prepared, &repo, &lines).map_err(build_failed)?
        }
    };
    lines.finish();
    if json {
        print_json(&report.components)?;
    } else {
        summary(&report, lines.elapsed());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(report: &build::BuildReport, elapsed: Duration) {
    println!(
        "{} for {} into {}",
        report.project, report.platform, report.repository
    );
    let width = report
        .components
        .iter()
        .map(|c| c.configuration.len())
        .max()
        .unwrap_or(0)
        .max("component".len());
    println!(
        "{:<width$}  {:<8} {:>8}  log",
        "component", "result", "time"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &report.components {
        *counts.entry(c.result.as_str()).or_default() += 1;
        println!(
            "{:<width$}  {:<8} {:>6.2} s  {}",
            c.configuration,
            c.result.as_str(),
            c.seconds,
            c.log.as_deref().unwrap_or("-")
        );
        if let Some(r) = &c.reason {
            println!("{:<width$}  └ {r}", "");
        }
    }
    let part = |k: &str| format!("{} {k}", counts.get(k).copied().unwrap_or(0));
    println!(
        "{} components: {}, {}, {}, {} in {:.1} s",
        report.components.len(),
        part("built"),
        part("cached"),
        part("failed"),
        part("skipped"),
        elapsed.as_secs_f64()
    );
}

/// One line per running component with its current step, on a terminal only.
struct Lines {
    multi: Option<MultiProgress>,
    names: Vec<String>,
    bars: Mutex<BTreeMap<usize, ProgressBar>>,
    start: Instant,
}

impl Lines {
    fn new(wanted: bool, names: Vec<String>) -> Lines {
        let multi = (wanted && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Lines {
            multi,
            names,
            bars: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl Observer for Lines {
    fn step(&self, index: usize, step: &str) {
        let Some(multi) = &self.multi else { return };
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(index).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:40} {msg:12} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(self.names.get(index).cloned().unwrap_or_default());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        bar.set_message(step.to_string());
    }

    fn done(&self, index: usize, result: &ComponentResult) {
        let Some(multi) = &self.multi else { return };
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index)
        {
            b.finish_and_clear();
            multi.remove(&b);
        }
        let _ = multi.println(format!(
            "{:<8} {} ({:.1} s)",
            result.result.as_str(),
            result.configuration,
            result.seconds
        ));
    }
}

#[derive(Args)]
pub struct RebuildArgs {
    /// The source package: a `.dsc` (the files it names beside it) or a `.src.rpm`.
    source: std::path::PathBuf,
    /// The root to rebuild in, e.g. `deb12_amd64=bookworm.tar` (see `build --root`).
    #[arg(long = "root", value_name = "PLATFORM=ROOTFS", value_parser = build::root::RootSpec::parse)]
    root: build::root::RootSpec,
    /// Binary packages to install into the root first: those its build dependencies name
    /// that the distribution does not have (the project's own). Repeatable.
    #[arg(long, value_name = "PACKAGE")]
    with: Vec<std::path::PathBuf>,
    /// Where the binary packages go.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: std::path::PathBuf,
    /// Scratch space (the root, the unpacked source, the build), emptied first.
    #[arg(long, value_name = "DIR", default_value = "workspace/_output/.rebuild")]
    work: std::path::PathBuf,
}

pub fn cmd_rebuild(args: RebuildArgs, layout: &crate::layout::Layout, json: bool) -> Outcome {
    let platform = layout.platforms.get(&args.root.platform).ok_or_else(|| {
        Failure::new(
            format!("unknown platform `{}` in --root", args.root.platform),
            "see `packyard platforms`".to_string(),
        )
    })?;
    let root = ready_root(
        std::slice::from_ref(&args.root),
        platform,
        &args.work.join("roots"),
        json,
    )?
    .ok_or_else(|| Failure::new("no root", "give --root PLATFORM=ROOTFS".to_string()))?;
    let mut say = |what: &str| {
        if !json {
            eprintln!("rebuild: {what}");
        }
    };
    let made = build::rebuild::rebuild(
        &build::rebuild::RebuildRequest {
            source: &args.source,
            root: &root,
            with: &args.with,
            work: &args.work.join("build"),
            out: &args.out,
        },
        &mut say,
    )
    .map_err(|e| {
        Failure::new(
            e,
            "the log above says which step; a build dependency the distribution lacks is \
             given with --with"
                .to_string(),
        )
    })?;
    let paths: Vec<String> = made.iter().map(|p| p.display().to_string()).collect();
    if json {
        print_json(&paths)?;
    } else {
        for p in &paths {
            println!("{p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A build error as the command line reports it, with its hint.
fn build_failed(e: build::BuildError) -> Failure {
    let hint = e.hint();
    Failure::new(e, hint)
}

#[derive(Args)]
pub struct DevelopArgs {
    /// Modules to check out for development (full name or last part).
    modules: Vec<String>,
    /// List the workspace's development checkouts.
    #[arg(long, conflicts_with_all = ["modules", "release"])]
    list: bool,
    /// Release a development checkout: the next build checks the module out afresh.
    #[arg(long, value_name = "MODULE", conflicts_with = "modules")]
    release: Vec<String>,
    #[command(flatten)]
    ctx: ContextArgs,
}

pub fn cmd_develop(args: DevelopArgs, layout: &crate::layout::Layout, json: bool) -> Outcome {
    let options = args.ctx.options()?;
    let workspace = crate::config::absolute(
        options
            .workspace
            .as_deref()
            .unwrap_or(std::path::Path::new("workspace")),
    );
    let io = |e: std::io::Error| {
        Failure::new(
            format!(
                "{}: {e}",
                workspace.join(".packyard/develop.json").display()
            ),
            "check the workspace".to_string(),
        )
    };
    let mut list = build::develop::checkouts(&workspace).map_err(io)?;
    let named =
        |asked: &str, module: &str| module == asked || module.rsplit('.').next() == Some(asked);
    if !args.release.is_empty() {
        for asked in &args.release {
            let Some(m) = list.modules.keys().find(|m| named(asked, m)).cloned() else {
                return Err(Failure::new(
                    format!(
                        "{asked} is no development checkout of {}",
                        workspace.display()
                    ),
                    "see `packyard develop --list`".to_string(),
                ));
            };
            list.modules.remove(&m);
            if !json {
                println!("released {m}: the next build checks it out afresh");
            }
        }
        build::develop::save(&workspace, &list).map_err(io)?;
    } else if !args.modules.is_empty() {
        let tree = Tree::load(&args.ctx.tree)?;
        refuse_broken_tree(&tree)?;
        let request = BuildRequest {
            tree: &tree,
            layout,
            options,
            only: args.modules.clone(),
            targets: None,
            jobs: 1,
            force: false,
            keep_going: false,
            step_timeout: None,
            isolation: Default::default(),
            root: None,
            publish_development: false,
        };
        let prepared = build::prepare(&request).map_err(build_failed)?;
        for asked in &args.modules {
            let components = prepared.components();
            let Some(i) = components
                .iter()
                .position(|(c, m, _)| named(asked, m) || c == asked)
            else {
                return Err(Failure::new(
                    format!("{asked} is no component of the release"),
                    "name a module (full or last part) or configuration of it".to_string(),
                ));
            };
            let job = prepared.job(&request, i).map_err(build_failed)?;
            let checkout = build::develop::adopt(&job).map_err(|e| {
                Failure::new(
                    e,
                    "the checkout command must create the directory named after the module"
                        .to_string(),
                )
            })?;
            list.modules.insert(job.module.clone(), checkout);
            if !json {
                println!(
                    "{} ({}): a development checkout in {}",
                    job.module,
                    job.configuration,
                    job.checkout_dir.display()
                );
            }
        }
        build::develop::save(&workspace, &list).map_err(io)?;
    }
    if json {
        print_json(&list)?;
    } else if args.list || (args.modules.is_empty() && args.release.is_empty()) {
        if list.modules.is_empty() {
            println!("no development checkouts in {}", workspace.display());
        }
        for (m, c) in &list.modules {
            println!(
                "{m}  {}  since {}  {}",
                c.configuration,
                c.since,
                workspace.join(m).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
