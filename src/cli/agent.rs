//! `agent`: arguments, the server's build farm, the stopping signals, progress lines and
//! `--json` lines; the agent itself is [`crate::agent`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use super::build::Isolate;
use super::{Failure, Outcome};
use crate::agent::{
    self, AgentObserver, AgentOptions, End, Finished, Halt, Held, HttpFarm, TaskRef,
};
use crate::build::stop;
use crate::client::{Client, ClientError};
use crate::farm::Assignment;
use crate::layout::Layout;

#[derive(Args)]
pub struct AgentArgs {
    /// The platforms this node builds for (comma-separated; `packyard platforms` lists
    /// them): it is given only tasks of these.
    #[arg(long, value_delimiter = ',', value_name = "P,...")]
    platforms: Vec<String>,
    /// Tasks built at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Where tasks are built: slot N in DIR/slot-N.
    #[arg(long, value_name = "DIR", default_value = "agent-workspace")]
    workspace: PathBuf,
    /// How the server names this node; default <hostname>-<pid>.
    #[arg(long)]
    name: Option<String>,
    /// How each step runs: `none`, on the host as it is; `bwrap`, in a bubblewrap
    /// sandbox (as `packyard build --isolate bwrap`).
    #[arg(long, value_enum, default_value_t = Isolate::None, value_name = "HOW")]
    isolate: Isolate,
    /// Build that platform's tasks in fresh copies of this minimal system (as
    /// `packyard build --root`; made ready once, in WORKSPACE/roots/). Repeatable.
    #[arg(long = "root", value_name = "PLATFORM=ROOTFS", value_parser = crate::build::root::RootSpec::parse)]
    roots: Vec<crate::build::root::RootSpec>,
}

/// How long handing the tasks back may take once a second signal came.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

pub fn cmd_agent(
    args: AgentArgs,
    server: Option<&str>,
    token: Option<&str>,
    layout: &Layout,
    json: bool,
) -> Outcome {
    let Some(url) = server else {
        return Err(Failure::new(
            "packyard agent needs --server URL: the `packyard serve` to take tasks from",
            "packyard agent --server http://HOST:PORT --token TOKEN --platforms el9_x86_64"
                .to_string(),
        ));
    };
    let Some(token) = token else {
        return Err(Failure::new(
            "packyard agent needs --token (or PACKYARD_TOKEN): a token of role builder",
            "create one on the server: packyard token create --role builder --name NODE"
                .to_string(),
        ));
    };
    let known = || {
        layout
            .platforms
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if args.platforms.is_empty() {
        return Err(Failure::new(
            "packyard agent needs --platforms: which platforms this node builds for",
            format!(
                "name them comma-separated, e.g. --platforms el9_x86_64; known: {}",
                known()
            ),
        ));
    }
    if let Some(p) = args
        .platforms
        .iter()
        .find(|p| !layout.platforms.contains_key(p.as_str()))
    {
        return Err(Failure::new(
            format!("unknown platform `{p}` in --platforms"),
            format!("known platforms: {}", known()),
        ));
    }
    let url = url.trim_end_matches('/').to_string();
    let token = token.to_string();
    let workspace = crate::config::absolute(&args.workspace);
    let mut roots = Vec::new();
    for spec in &args.roots {
        let Some(platform) = layout
            .platforms
            .get(&spec.platform)
            .filter(|_| args.platforms.contains(&spec.platform))
        else {
            return Err(Failure::new(
                format!(
                    "--root names {}, which this agent does not build for",
                    spec.platform
                ),
                format!("add it to --platforms ({})", args.platforms.join(",")),
            ));
        };
        let dir = workspace.join("roots");
        roots.extend(super::build::ready_root(
            std::slice::from_ref(spec),
            platform,
            &dir,
            json,
        )?);
    }
    let opts = AgentOptions {
        jobs: usize::from(args.jobs),
        isolation: args.isolate.into(),
        roots,
        ..AgentOptions::new(
            args.name.unwrap_or_else(agent::default_name),
            args.platforms,
            crate::config::absolute(&args.workspace),
        )
    };
    let lines = Lines {
        terminal: std::io::stderr().is_terminal(),
        json,
    };

    // The first signal lets what runs finish; the second stops it and hands it back.
    let held = Arc::new(Held::default());
    {
        let (held, url, token, terminal) =
            (held.clone(), url.clone(), token.clone(), lines.terminal);
        stop::drain_first(Box::new(move || {
            let client = Client::with_timeout(&url, Some(token.clone()), Some(HAND_BACK_TIMEOUT));
            let back = held.hand_back_all(|t| client.hand_back(t.build, t.index, &t.lease));
            if terminal {
                eprintln!("handed {} task(s) back to {url}", back.len());
            }
        }))
        .map_err(|why| {
            Failure::new(
                format!("cannot take packyard's stopping signals: {why}"),
                None,
            )
        })?;
    }
    if lines.terminal {
        eprintln!(
            "agent {}: building {} for {url}, {} at a time, in {}",
            opts.name,
            opts.platforms.join(", "),
            opts.jobs,
            opts.workspace.display()
        );
    }
    let farm = HttpFarm::new(&url, Some(token), layout);
    let said = AtomicBool::new(false);
    let stopping = || {
        let draining = stop::draining();
        if draining && !said.swap(true, Ordering::SeqCst) && lines.terminal {
            eprintln!(
                "stopping: finishing the {} running task(s); signal again to stop them and \
                 hand them back",
                held.list().len()
            );
        }
        draining
    };
    let summary = agent::run(&farm, &opts, &held, &stopping, &lines).map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    if lines.terminal {
        let parts: Vec<String> = summary
            .ended
            .iter()
            .map(|(end, n)| format!("{n} {}", end.as_str()))
            .collect();
        eprintln!(
            "agent {}: done ({})",
            opts.name,
            if parts.is_empty() {
                "no tasks".to_string()
            } else {
                parts.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress lines on a terminal (stderr), and with `--json` a line on stdout per task
/// claimed (`"event": "claimed"`, with its lease) and per task finished
/// (`"event": "finished"`).
struct Lines {
    terminal: bool,
    json: bool,
}

impl AgentObserver for Lines {
    fn claimed(&self, task: &TaskRef, a: &Assignment) {
        if self.json {
            // The lease is this agent's to know: with it an operator can tell its calls
            // apart in the server's log.
            let line = serde_json::json!({
                "event": "claimed",
                "build": a.build,
                "index": a.index,
                "lease": a.lease,
                "configuration": a.job.configuration,
                "platform": a.job.platform,
                "workspace": a.job.workspace,
            });
            println!("{line}");
        }
        if self.terminal {
            eprintln!(
                "task {task}: {} for {} (in {})",
                a.job.configuration,
                a.job.platform,
                a.job.workspace.display()
            );
        }
    }

    fn step(&self, task: &TaskRef, configuration: &str, step: &str) {
        if self.terminal {
            eprintln!("task {task}: {configuration}: {step}");
        }
    }

    fn halted(&self, task: &TaskRef, why: &Halt) {
        if self.terminal {
            eprintln!("task {task}: stopped: {why}");
        }
    }

    fn trouble(&self, what: &str, e: &ClientError, retry: Duration) {
        if self.terminal {
            eprintln!("{what}: {e}; asking again in {:.1} s", retry.as_secs_f64());
        }
    }

    fn finished(&self, f: &Finished) {
        if self.json {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                event: &'static str,
                #[serde(flatten)]
                finished: &'a Finished,
            }
            let line = Line {
                event: "finished",
                finished: f,
            };
            match serde_json::to_string(&line) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("task {}/{}: {e}", f.build, f.index),
            }
        }
        if self.terminal {
            let why = match (&f.reason, f.result) {
                (Some(r), End::Failed | End::Cancelled | End::Dropped | End::Unreported) => {
                    format!(": {r}")
                }
                _ => String::new(),
            };
            eprintln!(
                "task {}/{}: {} {} for {} ({:.1} s){why}",
                f.build,
                f.index,
                f.result.as_str(),
                f.configuration,
                f.platform,
                f.seconds
            );
        }
    }
}
