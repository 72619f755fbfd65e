//! `resolve` and `fetch`: arguments and output; the plan is made and carried out by
//! [`crate::resolve`].

use std::process::ExitCode;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::progress::Bar;
use super::repo::Target;
use super::{ContextArgs, Failure, Outcome, print_json, refuse_broken_tree};
use crate::config::{Resolver, Tree};
use crate::resolve::fetch::FetchOptions;
use crate::resolve::node::ThisNode;
use crate::resolve::{self, Packages, Plan, PlanRequest};

#[derive(Clone, Copy, ValueEnum)]
pub enum Privileged {
    /// Root, or passwordless sudo.
    Auto,
    Yes,
    No,
}

#[derive(Args)]
pub struct ResolveArgs {
    /// The configuration to build.
    #[arg(long)]
    configuration: String,
    /// A repository to look for prebuilt packages in: a name of --data's (or --server's)
    /// repositories, a served one (`http://HOST/repos/NAME`) or a directory. Repeatable; the first that has a file
    /// wins, so list the registered repository first. Without it: every repository of
    /// --data or --server, registered ones first.
    #[arg(long = "repo", value_name = "NAME|URL|PATH")]
    repos: Vec<String>,
    /// Whether this node may install packages.
    #[arg(long, value_enum, default_value = "auto")]
    privileged: Privileged,
    /// Fetch runtime-only dependencies too.
    #[arg(long)]
    runtime_deps: bool,
    /// Stop at dependencies satisfied by a binary: do not follow theirs.
    #[arg(long)]
    shallow: bool,
    #[command(flatten)]
    ctx: ContextArgs,
}

/// `fetch`: the plan's arguments, and where to carry it out.
#[derive(Args)]
pub struct FetchArgs {
    #[command(flatten)]
    resolve: ResolveArgs,
    /// Where tarballs are unpacked; the configuration's ${stageDir} if omitted.
    #[arg(long, value_name = "DIR")]
    stage: Option<PathBuf>,
    /// Where downloads are kept (and resumed); ${workspaceDir}/.packyard-downloads if
    /// omitted.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Print what would be done, and do nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The plan, made against the `--repo` repositories, or else against every repository
/// of the data directory or `--server` (registered ones first, then volatile ones).
fn make_plan(
    args: &ResolveArgs,
    target: &Target,
    token: Option<&str>,
    privileged: bool,
) -> Result<(Plan, Vec<String>), Failure> {
    let layout = target.layout();
    let tree = Tree::load(&args.ctx.tree)?;
    refuse_broken_tree(&tree)?;
    let specs = if args.repos.is_empty() {
        default_repos(target)?
    } else {
        args.repos.iter().map(|r| named_repo(r, target)).collect()
    };
    // On an object store a data directory's repositories are read through its store.
    let stored = match target {
        Target::Local {
            layout, backends, ..
        } if !backends.blobs_are_files() => Some(std::sync::Arc::new(
            crate::repo::Repositories::open_backends(backends, (*layout).clone())?,
        )),
        _ => None,
    };
    let mut repos: Vec<Box<dyn Packages>> = Vec::new();
    for spec in &specs {
        let open = match (&stored, spec.strip_prefix(STORED)) {
            (Some(r), Some(name)) => Ok(Box::new(resolve::sources::ObjectRepo {
                repos: r.clone(),
                repo: name.to_string(),
            }) as Box<dyn Packages>),
            _ => resolve::sources::open(spec, token),
        };
        repos.push(open.map_err(|e| {
            Failure::new(
                e,
                "--repo takes a repository name of --data (or of --server), a repository \
                 directory (<data>/repos/NAME) or a served repository's URL \
                 (http://HOST/repos/NAME)"
                    .to_string(),
            )
        })?);
    }
    let specs: Vec<String> = repos.iter().map(|r| r.name()).collect();
    let repos: Vec<&dyn Packages> = repos.iter().map(|r| r.as_ref()).collect();
    let node = ThisNode::new(Some(privileged));
    let request = PlanRequest {
        tree: &tree,
        layout,
        configuration: &args.configuration,
        options: args.ctx.options()?,
        runtime_deps: args.runtime_deps,
        shallow: args.shallow,
    };
    let failed = |e: resolve::PlanError| {
        let hint = e.hint();
        Failure::new(e, hint)
    };
    let (resolver, root) =
        Resolver::for_configuration(&tree, layout, request.options.clone(), &args.configuration)
            .map_err(|e| failed(e.into()))?;
    let plan = resolve::plan_with(&resolver, root, &request, &repos, &node).map_err(failed)?;
    // The command ends soon after: freeing every resolved configuration and the tree
    // would cost a big release a sixth of its time, for nothing.
    std::mem::forget(resolver);
    std::mem::forget(tree);
    Ok((plan, specs))
}

/// How a repository of a data directory on an object store is named among `--repo`
/// values (read through the store: see [`make_plan`]).
const STORED: &str = "stored:";

/// A `--repo` value as a directory or URL: a bare repository name (`nightly`) is that
/// repository of `--data` (its directory, or [`STORED`] and its name where the
/// repositories are in an object store) or of `--server` (its URL); a URL or a path
/// stays as given (a directory of that name in the working directory wins over a name
/// `--data` does not have).
fn named_repo(spec: &str, target: &Target) -> String {
    if crate::repo::check_repo_name(spec).is_err() || crate::client::is_url(spec) {
        return spec.to_string();
    }
    match target {
        Target::Remote { url, .. } => format!("{url}/repos/{}", crate::paths::url_path(spec)),
        Target::Local { backends, .. }
            if !backends.blobs_are_files() && !Path::new(spec).is_dir() =>
        {
            format!("{STORED}{spec}")
        }
        Target::Local { backends, .. } => {
            let dir = backends.repos_dir().unwrap_or_default().join(spec);
            if dir.is_dir() || !Path::new(spec).is_dir() {
                dir.display().to_string()
            } else {
                spec.to_string()
            }
        }
    }
}

/// Every repository of the target, registered ones first, as `--repo` values.
fn default_repos(target: &Target) -> Result<Vec<String>, Failure> {
    // Served repositories are named by URL, those of a data directory by their folder.
    enum Place {
        Served(String),
        Dir(PathBuf),
        Stored,
    }
    let (mut list, place) = match target {
        Target::Remote { client, url, .. } => (client.repos()?, Place::Served(url.clone())),
        Target::Local {
            data,
            layout,
            backends,
        } => {
            if !backends.blobs_are_files() {
                (
                    crate::repo::Repositories::open_backends(backends, (*layout).clone())?
                        .list()?,
                    Place::Stored,
                )
            } else if !backends.repos_dir().is_some_and(|d| d.is_dir()) {
                return Ok(vec![]);
            } else {
                match crate::repo::running(data) {
                    Some(info) => (
                        crate::client::Client::new(&info.url, None).repos()?,
                        Place::Served(info.url.trim_end_matches('/').to_string()),
                    ),
                    None => (
                        crate::repo::Repositories::open_backends(backends, (*layout).clone())?
                            .list()?,
                        Place::Dir(backends.repos_dir().unwrap_or_default()),
                    ),
                }
            }
        }
    };
    list.sort_by(|a, b| a.record.search_order().cmp(&b.record.search_order()));
    Ok(list
        .iter()
        .map(|r| match &place {
            Place::Served(url) => {
                format!("{url}/repos/{}", crate::paths::url_path(&r.record.name))
            }
            Place::Dir(dir) => dir.join(&r.record.name).display().to_string(),
            Place::Stored => format!("{STORED}{}", r.record.name),
        })
        .collect())
}

fn privileged(p: Privileged) -> bool {
    match p {
        Privileged::Yes => true,
        Privileged::No => false,
        Privileged::Auto => resolve::node::can_install(),
    }
}

fn failed_deps(plan: &Plan) -> bool {
    plan.dependencies
        .iter()
        .any(|d| d.action == resolve::Action::Unresolved && !d.listed_only)
}

pub fn cmd_resolve(args: ResolveArgs, target: &Target, token: Option<&str>, json: bool) -> Outcome {
    let (plan, repos) = make_plan(&args, target, token, privileged(args.privileged))?;
    if json {
        print_json(&plan)?;
    } else {
        if repos.is_empty() {
            println!("repositories: none (pass --repo, or --server)");
        } else {
            println!("repositories: {}", repos.join(", "));
        }
        println!("build order: {}", plan.order.join(" → "));
        println!();
        println!(
            "{:<40} {:<9} {:<12} {:<28} {:<10} reason",
            "dependency", "scope", "type", "configuration", "action"
        );
        for d in &plan.dependencies {
            println!(
                "{:<40} {:<9} {:<12} {:<28} {:<10} {}",
                d.module,
                format!("{:?}", d.scope).to_lowercase(),
                format!("{:?}", d.kind).to_lowercase(),
                d.configuration.as_deref().unwrap_or("-"),
                format!("{:?}", d.action).to_lowercase(),
                d.reason
            );
            if let Some(s) = &d.source {
                let how = if d.kind == crate::config::DependencyType::External {
                    "with"
                } else {
                    "from"
                };
                println!("{:<40} {how} {s}", "");
            }
        }
    }
    Ok(if failed_deps(&plan) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn cmd_fetch(args: FetchArgs, target: &Target, token: Option<&str>, json: bool) -> Outcome {
    let can = privileged(args.resolve.privileged);
    let (plan, _) = make_plan(&args.resolve, target, token, can)?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let opts = FetchOptions {
        cache: args
            .cache
            .clone()
            .unwrap_or_else(|| plan.workspace_dir.join(".packyard-downloads")),
        stage_dir: args.stage.clone().unwrap_or_else(|| plan.stage_dir.clone()),
        workspace_dir: plan.workspace_dir.clone(),
        privileged: can,
        sudo: can && !root,
        jobs: args.jobs,
        token: token.map(str::to_string),
        dry_run: args.dry_run,
    };
    let bar = Bar::new(!json);
    let report = resolve::fetch::fetch(&plan, &opts, &bar).map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    if json {
        print_json(&report)?;
    } else {
        let would = if report.dry_run { "would " } else { "" };
        for f in &report.downloaded {
            let how = if report.dry_run {
                "fetch"
            } else if f.cached {
                "checked"
            } else {
                "downloaded"
            };
            println!("{would}{how:<10} {:<40} {}", f.module, f.source);
        }
        let (unpack, install) = if report.dry_run {
            ("would unpack", "would install")
        } else {
            ("unpacked", "installed")
        };
        if !report.unpacked.is_empty() {
            println!(
                "{unpack} {} into {}",
                report.unpacked.join(", "),
                report.stage_dir
            );
        }
        if let Some(cmd) = &report.installed {
            println!("{install} with `{cmd}`");
        }
        for c in &report.checked_out {
            let how = if c.skipped {
                "there already"
            } else if report.dry_run {
                "would check out"
            } else {
                "checked out"
            };
            println!("{how:<14} {:<40} {}", c.module, c.dir);
        }
        for l in &report.left {
            println!("not done      {:<40} {}", l.module, l.reason);
        }
    }
    Ok(if report.left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
