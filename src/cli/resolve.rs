//! `resolve`: arguments and output; the plan is made by [`crate::resolve`].

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{ContextArgs, Failure, Outcome, print_json, refuse_broken_tree};
use crate::config::Tree;
use crate::layout::Layout;
use crate::resolve::{self, Packages, PlanRequest};

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
    /// A repository to look for prebuilt packages in: a served one
    /// (`http://HOST/repos/NAME`) or a directory. Repeatable; the first that has a file
    /// wins, so list the registered repository first.
    #[arg(long = "repo", value_name = "URL|PATH")]
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

pub fn cmd_resolve(args: ResolveArgs, layout: &Layout, json: bool) -> Outcome {
    let tree = Tree::load(&args.ctx.tree)?;
    refuse_broken_tree(&tree)?;
    let repos: Vec<Box<dyn Packages>> = args
        .repos
        .iter()
        .map(|r| resolve::sources::open(r))
        .collect();
    let repos: Vec<&dyn Packages> = repos.iter().map(|r| r.as_ref()).collect();
    let node = resolve::node::ThisNode {
        privileged: match args.privileged {
            Privileged::Auto => None,
            Privileged::Yes => Some(true),
            Privileged::No => Some(false),
        },
    };
    let request = PlanRequest {
        tree: &tree,
        layout,
        configuration: &args.configuration,
        options: args.ctx.options(),
        runtime_deps: args.runtime_deps,
        shallow: args.shallow,
    };
    let plan = resolve::plan(&request, &repos, &node).map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    if json {
        print_json(&plan)?;
    } else {
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
                println!("{:<40} from {s}", "");
            }
        }
    }
    let unresolved = plan
        .dependencies
        .iter()
        .any(|d| d.action == resolve::Action::Unresolved && !d.listed_only);
    Ok(if unresolved {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
