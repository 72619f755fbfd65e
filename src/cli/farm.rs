//! `submit` and `builds`: the build farm from the command line, through a server
//! ([`crate::client`]); the queue itself is [`crate::farm`]'s.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::repo::{Target, remote_failure};
use super::{Failure, Outcome, print_json};
use crate::client::Client;
use crate::farm::BuildView;

#[derive(Args)]
pub struct SubmitArgs {
    /// The release (project configuration); default: the newest in the server's tree.
    #[arg(long)]
    project: Option<String>,
    /// Platforms to build for, comma-separated.
    #[arg(
        long = "platform",
        required = true,
        value_delimiter = ',',
        value_name = "P[,P...]"
    )]
    platforms: Vec<String>,
    /// Build only these components (and what they need).
    #[arg(long, num_args = 1.., value_name = "MODULE")]
    only: Vec<String>,
    /// Build even what the repository holds already.
    #[arg(long)]
    force: bool,
    /// The repository to build into; default: the server's only volatile one.
    #[arg(long)]
    repo: Option<String>,
    /// Build with defaults profile NAME of the server's tree (repeatable; a later one
    /// wins).
    #[arg(long = "defaults", value_name = "NAME")]
    defaults: Vec<String>,
    /// Follow the build until it ends; exit 0 only if every task was built or cached.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
pub enum BuildsCommand {
    /// Builds submitted to the server, newest first.
    List,
    /// One build with its tasks.
    Show { id: u64 },
    /// A task's log, as its agent has sent it so far.
    Log {
        id: u64,
        /// The task's index in the build (see `builds show`).
        task: u32,
        /// Keep printing what comes until the task ends.
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a build: queued tasks end, running ones are stopped by their agents.
    Cancel { id: u64 },
}

fn client<'a>(target: &'a Target) -> Result<&'a Client, Failure> {
    match target {
        Target::Remote { client, .. } => Ok(client),
        Target::Local { .. } => Err(Failure::new(
            "the build farm is a server's: this command needs one",
            Some("add --server URL --token TOKEN (a server started with --tree)".into()),
        )),
    }
}

pub fn cmd_submit(args: SubmitArgs, target: &Target, json: bool) -> Outcome {
    let client = client(target)?;
    let body = serde_json::json!({
        "project": args.project,
        "platforms": args.platforms,
        "only": args.only,
        "force": args.force,
        "defaults": args.defaults,
        "repo": args.repo,
    });
    let submitted = client.submit(&body).map_err(remote_failure)?;
    let id = submitted.build.id;
    if !args.wait {
        if json {
            print_json(&submitted)?;
        } else {
            println!(
                "build {id}: {} tasks ({} cached) for {}",
                submitted.tasks.as_ref().map_or(0, Vec::len),
                submitted.counts.get("cached").copied().unwrap_or(0),
                submitted.build.platforms.join(", ")
            );
            println!("follow it: packyard builds show {id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        eprintln!("build {id} submitted");
    }
    let done = follow(client, id, !json && std::io::stderr().is_terminal())?;
    if json {
        print_json(&done)?;
    } else {
        print_tasks(&done);
    }
    Ok(if done.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Polls the build until it ends, telling each task's change of state on a terminal.
fn follow(client: &Client, id: u64, tell: bool) -> Result<BuildView, Failure> {
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    loop {
        let view = client.farm_build(id).map_err(remote_failure)?;
        if tell {
            for t in view.tasks.iter().flatten() {
                let state = t.state.as_str().to_string();
                if seen.get(&t.index) != Some(&state) {
                    eprintln!("  {:<10} {} ({})", state, t.configuration, t.platform);
                    seen.insert(t.index, state);
                }
            }
        }
        if view.build.finished.is_some() {
            return Ok(view);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_tasks(view: &BuildView) {
    println!(
        "build {} of {} for {}: {}",
        view.build.id,
        view.build.project,
        view.build.platforms.join(", "),
        view.state
    );
    for t in view.tasks.iter().flatten() {
        let agent = t
            .history
            .iter()
            .rev()
            .find_map(|e| e.agent.clone())
            .unwrap_or_default();
        println!(
            "  {:>3} {:<9} {:<32} {:<12} {}{}",
            t.index,
            t.state.as_str(),
            t.configuration,
            t.platform,
            agent,
            t.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
}

pub fn cmd_builds(cmd: BuildsCommand, target: &Target, json: bool) -> Outcome {
    let client = client(target)?;
    match cmd {
        BuildsCommand::List => {
            let list = client.farm_builds().map_err(remote_failure)?;
            if json {
                print_json(&list)?;
            } else {
                for b in &list {
                    let counts: Vec<String> =
                        b.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                    println!(
                        "{:>5} {:<10} {} for {} ({})",
                        b.build.id,
                        b.state,
                        b.build.project,
                        b.build.platforms.join(", "),
                        counts.join(", ")
                    );
                }
            }
        }
        BuildsCommand::Show { id } => {
            let view = client.farm_build(id).map_err(remote_failure)?;
            if json {
                print_json(&view)?;
            } else {
                print_tasks(&view);
            }
        }
        BuildsCommand::Cancel { id } => {
            let view = client.cancel_build(id).map_err(remote_failure)?;
            if json {
                print_json(&view)?;
            } else {
                println!("build {id}: {}", view.state);
            }
        }
        BuildsCommand::Log { id, task, follow } => {
            let mut printed = 0;
            loop {
                let text = client.task_log(id, task).map_err(remote_failure)?;
                if let Some(new) = text.get(printed..) {
                    print!("{new}");
                    printed = text.len();
                }
                let ended = client
                    .farm_build(id)
                    .map_err(remote_failure)?
                    .tasks
                    .and_then(|t| t.into_iter().find(|t| t.index == task))
                    .is_none_or(|t| t.state.ended());
                if !follow || ended {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
