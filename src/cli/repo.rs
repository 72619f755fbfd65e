//! `repo`, `key` and `publish`: arguments and output; the work is in [`crate::repo`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{Failure, Outcome, print_json};
use crate::layout::Layout;
use crate::repo::{PublishOptions, RepoError, Repositories};
use crate::store::RepoKind;

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository.
    Create {
        name: String,
        /// volatile: packages may be replaced and pruned; registered: never changed.
        #[arg(long, value_enum)]
        kind: RepoKind,
        /// Platforms it takes (comma-separated); default: all.
        #[arg(long, value_delimiter = ',', value_name = "P,...")]
        platforms: Vec<String>,
        /// Volatile only: keep the newest N versions of each package.
        #[arg(long, value_name = "N")]
        keep: Option<u32>,
    },
    /// List the repositories.
    List,
    /// A repository's settings and contents.
    Show { name: String },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate the repository's OpenPGP signing key.
    Generate {
        #[arg(long)]
        repo: String,
        /// rsa4096 works everywhere (EL8 rpm included); ed25519 is small and fast.
        #[arg(long, value_enum, default_value = "rsa4096")]
        algorithm: crate::repo::keys::Algorithm,
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
    /// Import an armored, unprotected secret key as the repository's signing key.
    Import {
        #[arg(long)]
        repo: String,
        /// The armored secret key file (`gpg --armor --export-secret-keys`).
        file: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Print the repository's armored public key.
    Export {
        #[arg(long)]
        repo: String,
    },
}

#[derive(Args)]
pub struct PublishArgs {
    #[arg(long)]
    repo: String,
    /// `pack --out` trees (paths inside = download-from paths) or loose package files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also sign each RPM with the repository key.
    #[arg(long)]
    sign: bool,
    /// Platform of loose files (a tree's paths name theirs).
    #[arg(long)]
    platform: Option<String>,
}

fn open(data: &Path, layout: &Layout) -> Result<Repositories, Failure> {
    Repositories::open(data, layout.clone()).map_err(failure)
}

pub fn failure(e: RepoError) -> Failure {
    let hint = e.hint();
    Failure::new(e, hint)
}

pub fn cmd_repo(cmd: RepoCommand, data: &Path, layout: &Layout, json: bool) -> Outcome {
    let repos = open(data, layout)?;
    match cmd {
        RepoCommand::Create {
            name,
            kind,
            platforms,
            keep,
        } => {
            let r = repos
                .create(&name, kind, &platforms, keep)
                .map_err(failure)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "created {} repository {} in {}",
                    serde_json::to_value(r.kind)?.as_str().unwrap_or_default(),
                    r.name,
                    data.join("repos").join(&r.name).display()
                );
                println!("next: packyard key generate --repo {name}");
            }
        }
        RepoCommand::List => {
            let list = repos.list().map_err(failure)?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "no repositories; create one with `packyard repo create NAME --kind volatile`"
                );
            } else {
                for r in list {
                    println!(
                        "{:<24} {:<10} {:>6} packages  {:>12} bytes",
                        r.record.name,
                        serde_json::to_value(r.record.kind)?
                            .as_str()
                            .unwrap_or_default(),
                        r.packages,
                        r.bytes
                    );
                }
            }
        }
        RepoCommand::Show { name } => {
            let r = repos.show(&name).map_err(failure)?;
            if json {
                print_json(&r)?;
            } else {
                let platforms = if r.record.platforms.is_empty() {
                    "all".to_string()
                } else {
                    r.record.platforms.join(", ")
                };
                println!("repository  {}", r.record.name);
                println!(
                    "kind        {}",
                    serde_json::to_value(r.record.kind)?
                        .as_str()
                        .unwrap_or_default()
                );
                println!("platforms   {platforms}");
                if let Some(k) = r.record.keep {
                    println!("keep        {k} versions per package");
                }
                println!(
                    "key         {}",
                    r.record.key.as_deref().unwrap_or("none (indexes unsigned)")
                );
                println!("packages    {} ({} bytes)", r.packages, r.bytes);
                println!("tree        {}", data.join("repos").join(&name).display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_key(cmd: KeyCommand, data: &Path, layout: &Layout, json: bool) -> Outcome {
    let repos = open(data, layout)?;
    let (repo, info) = match cmd {
        KeyCommand::Generate {
            repo,
            algorithm,
            force,
        } => {
            let info = repos
                .generate_key(&repo, algorithm, force)
                .map_err(failure)?;
            (repo, info)
        }
        KeyCommand::Import { repo, file, force } => {
            let armored = std::fs::read_to_string(&file)
                .map_err(|e| Failure::new(format!("{}: {e}", file.display()), None))?;
            let info = repos.import_key(&repo, &armored, force).map_err(failure)?;
            (repo, info)
        }
        KeyCommand::Export { repo } => {
            print!("{}", repos.public_key(&repo).map_err(failure)?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&info)?;
    } else {
        println!("repository {repo} signs with key {}", info.fingerprint);
        println!(
            "public key: {}",
            data.join("repos").join(&repo).join("key.asc").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_publish(args: PublishArgs, data: &Path, layout: &Layout, json: bool) -> Outcome {
    let repos = open(data, layout)?;
    let opts = PublishOptions {
        sign: args.sign,
        platform: args.platform,
    };
    let report = repos
        .publish(&args.repo, &args.paths, &opts)
        .map_err(failure)?;
    if json {
        print_json(&report)?;
    } else {
        for f in &report.files {
            println!(
                "{:<9} {}  {} bytes  sha256 {}",
                serde_json::to_value(f.action)?.as_str().unwrap_or_default(),
                f.path,
                f.size,
                f.sha256
            );
        }
        for p in &report.removed {
            println!("removed   {p}");
        }
        if report.indexes.is_empty() {
            println!("indexes unchanged");
        } else {
            println!("indexes   {}", report.indexes.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
