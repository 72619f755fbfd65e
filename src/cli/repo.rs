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
        /// Compression of the YUM metadata.
        #[arg(long, value_enum, default_value = "gzip")]
        yum_compression: crate::store::MetadataCompression,
        /// Serve it only to callers with a token.
        #[arg(long)]
        private: bool,
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
            yum_compression,
            private,
        } => {
            let r = repos
                .create(&crate::repo::NewRepo {
                    name: name.clone(),
                    kind,
                    platforms,
                    keep,
                    yum_compression,
                    private,
                })
                .map_err(failure)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "created {} repository {} in {}",
                    r.kind.as_str(),
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
                        r.record.kind.as_str(),
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
                println!("kind        {}", r.record.kind.as_str());
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
    let bar = super::progress::Bar::new(!json);
    let report = repos
        .publish(&args.repo, &args.paths, &opts, &bar)
        .map_err(failure)?;
    print_report(&report, json)
}

fn print_report(report: &crate::repo::PublishReport, json: bool) -> Outcome {
    if json {
        print_json(report)?;
    } else {
        for f in &report.files {
            println!(
                "{:<9} {}  {} bytes  sha256 {}",
                f.action.as_str(),
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

#[derive(Args)]
pub struct LockArgs {
    /// The component configuration to lock.
    configuration: String,
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
}

#[derive(Args)]
pub struct CloneArgs {
    /// The configuration to copy.
    configuration: String,
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// The new version, X.Y.Z.
    #[arg(long)]
    version: String,
    /// The new age; default 1 for a new version, the next age for the same one.
    #[arg(long)]
    age: Option<u32>,
}

#[derive(Args)]
pub struct RegisterArgs {
    /// The locked configuration the packages were built from.
    configuration: String,
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// The registered repository.
    #[arg(long)]
    repo: String,
    /// Project configuration giving the release context (the latest holding it if omitted).
    #[arg(long, value_name = "CONFIGURATION")]
    project: Option<String>,
    /// The `pack --out` tree(s) holding its packages.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn load_tree(dir: &Path) -> Result<crate::config::Tree, Failure> {
    let tree = crate::config::Tree::load(dir)?;
    super::refuse_broken_tree(&tree)?;
    Ok(tree)
}

pub fn cmd_lock(args: LockArgs, data: &Path, layout: &Layout, json: bool) -> Outcome {
    let tree = load_tree(&args.tree)?;
    let repos = open(data, layout)?;
    let out = repos.lock(&tree, &args.configuration).map_err(failure)?;
    if json {
        print_json(&out)?;
    } else if out.new {
        println!(
            "locked {} (sha256 {})",
            out.lock.configuration, out.lock.sha256
        );
    } else {
        println!(
            "{} was locked already, with the same content (sha256 {})",
            out.lock.configuration, out.lock.sha256
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_clone(args: CloneArgs, json: bool) -> Outcome {
    let tree = load_tree(&args.tree)?;
    let c = crate::lock::clone_in_tree(&tree, &args.configuration, &args.version, args.age)
        .map_err(|e| {
            Failure::new(
                e,
                "give --version X.Y.Z (and --age N) for a configuration named *_R_*".to_string(),
            )
        })?;
    if json {
        print_json(&c)?;
    } else {
        println!(
            "wrote {} ({} {}-{}) to {}",
            c.configuration,
            c.from,
            c.version,
            c.age,
            c.file.display()
        );
        println!("next: add it to a release (`children` of a project or subsystem configuration)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_register(args: RegisterArgs, data: &Path, layout: &Layout, json: bool) -> Outcome {
    let tree = load_tree(&args.tree)?;
    let repos = open(data, layout)?;
    let options = crate::config::ResolveOptions {
        project: args.project,
        ..Default::default()
    };
    let bar = super::progress::Bar::new(!json);
    let report = repos
        .register(
            &tree,
            &args.configuration,
            options,
            &args.repo,
            &args.paths,
            &bar,
        )
        .map_err(failure)?;
    print_report(&report, json)
}

/// Refuses to pack a locked configuration whose entry changed. Without a data directory
/// there are no locks to check.
pub fn check_lock(
    tree: &crate::config::Tree,
    configuration: &str,
    data: &Path,
    layout: &Layout,
) -> Result<(), Failure> {
    if !data.join("store").is_dir() {
        return Ok(());
    }
    let repos = open(data, layout)?;
    repos.check_lock(tree, configuration).map_err(failure)?;
    Ok(())
}
