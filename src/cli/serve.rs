//! `serve` and `token`: arguments and output; the work is in [`crate::server`] and
//! [`crate::auth`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::repo::{Target, service_failure};
use super::{Failure, Outcome, print_json};
use crate::layout::Layout;
use crate::server::{self, ServeOptions, Settings};
use crate::store::Role;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the chosen one is printed and
    /// written to <data>/server.json).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// If the data directory has no repositories, fill it with the sample release from
    /// this module tree first.
    #[arg(long, value_name = "TREE", num_args = 0..=1,
          default_missing_value = "fixtures/trees/my-project")]
    demo: Option<PathBuf>,
    /// The module tree `GET /api/v1/resolve` plans from and submitted builds resolve in
    /// (default: the --demo tree).
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Seconds a build farm task's lease lasts without a heartbeat (default 60).
    #[arg(long, value_name = "SECONDS")]
    lease: Option<f64>,
    /// Seconds between an agent's heartbeats (default 15).
    #[arg(long, value_name = "SECONDS")]
    heartbeat: Option<f64>,
    /// Answer a request for a package file with a redirect (302) to a short-lived URL of
    /// its object, where the blob backend gives one (an object store); index files are
    /// always served by packyard.
    #[arg(long)]
    redirect_blobs: bool,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token; its secret is printed once.
    Create {
        #[arg(long, value_parser = super::choice::<Role>())]
        role: Role,
        /// What it is for.
        #[arg(long, default_value = "")]
        name: String,
        /// Refuse it from then on: a duration (90d, 12h, 30m, 2w) or a date (2027-01-31,
        /// or an RFC 3339 time). Without it, it lasts until revoked.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token for good.
    Revoke { id: String },
}

pub fn cmd_serve(
    args: ServeArgs,
    backends: &crate::backends::Backends,
    config: Option<&Path>,
    layout: &Layout,
    json: bool,
) -> Outcome {
    server::init_logging(json, true);
    let in_data = backends.data.join("packyard.toml");
    let file = config.or(in_data.is_file().then_some(in_data.as_path()));
    let mut settings = match file {
        Some(path) => Settings::load(path).map_err(|e| {
            let hint = e.hint();
            Failure::new(e, hint)
        })?,
        None => Settings::default(),
    };
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(t) = args.tree {
        settings.tree = Some(t);
    }
    if let Some(l) = args.lease {
        settings.lease_seconds = l;
    }
    if let Some(h) = args.heartbeat {
        settings.heartbeat_seconds = h;
    }
    settings.redirect_blobs |= args.redirect_blobs;
    let served = server::run(ServeOptions {
        backends: backends.clone(),
        layout: layout.clone(),
        settings,
        demo: args.demo,
    });
    server::log_lines::flush();
    served.map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_token(cmd: TokenCommand, target: &Target, json: bool) -> Outcome {
    // Tokens are made on the data directory, or by an admin through the server.
    let service = target.service()?;
    match cmd {
        TokenCommand::Create {
            role,
            name,
            expires,
        } => {
            let t = service
                .create_token(role, &name, expires.as_deref())
                .map_err(service_failure)?;
            if json {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
                eprintln!(
                    "token {} ({}) created; keep it secret, it is not shown again",
                    t.record.id,
                    role.as_str()
                );
            }
        }
        TokenCommand::List => {
            let list = service.tokens().map_err(service_failure)?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no tokens; create one with `packyard token create --role admin`");
            } else {
                let now = chrono::Utc::now().timestamp();
                for t in list {
                    let state = match (t.revoked, t.expires) {
                        (Some(_), _) => "revoked".to_string(),
                        (None, Some(at)) if at <= now => "expired".to_string(),
                        (None, Some(at)) => format!("active, expires {}", crate::auth::rfc3339(at)),
                        (None, None) => "active".to_string(),
                    };
                    println!("{}  {:<8} {:<8} {}", t.id, t.role.as_str(), t.name, state);
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let t = service.revoke_token(&id).map_err(service_failure)?;
            if json {
                print_json(&t)?;
            } else {
                println!("revoked token {}", t.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
