//! `repo`, `key`, `publish`, `lock`, `clone` and `register`: arguments and output; the
//! work is done by a [`Service`]: the data directory, or a server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{Failure, Outcome, print_json};
use crate::client::{Client, ClientError};
use crate::layout::Layout;
use crate::repo::{PublishOptions, RepoError, Repositories};
use crate::service::{Remote, Service, ServiceError};
use crate::store::RepoKind;

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository.
    Create {
        name: String,
        /// What it may hold over time.
        #[arg(long, value_parser = super::choice::<RepoKind>())]
        kind: RepoKind,
        /// Platforms it takes (comma-separated); default: all.
        #[arg(long, value_delimiter = ',', value_name = "P,...")]
        platforms: Vec<String>,
        /// Volatile only: keep the newest N versions of each package.
        #[arg(long, value_name = "N")]
        keep: Option<u32>,
        /// Compression of the YUM metadata.
        #[arg(long, value_parser = super::choice::<crate::store::MetadataCompression>(), default_value = "gzip")]
        yum_compression: crate::store::MetadataCompression,
        /// Serve it only to callers with a token.
        #[arg(long)]
        private: bool,
    },
    /// List the repositories.
    List,
    /// A repository's settings and contents.
    Show { name: String },
    /// Delete a volatile repository with its packages, indexes and signing key, for
    /// good (registered repositories are never deleted).
    Delete {
        name: String,
        /// Yes, delete it: without this, nothing happens.
        #[arg(long)]
        yes: bool,
    },
    /// Write a repository as served (packages, indexes, public key, build records) to a
    /// directory: a `file://` repository, or the source of an rsync mirror.
    Export {
        name: String,
        /// Where to write it (made if missing; files already there are replaced).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate the repository's OpenPGP signing key.
    Generate {
        #[arg(long)]
        repo: String,
        /// rsa4096 works everywhere (EL8 rpm included); ed25519 is small and fast.
        #[arg(long, value_parser = super::choice::<crate::repo::keys::Algorithm>(), default_value = "rsa4096")]
        algorithm: crate::repo::keys::Algorithm,
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
    /// Import an armored secret key as the repository's signing key: unprotected, or
    /// protected by the --key-passphrase-file passphrase.
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
    /// Into a registered repository: third-party packages the project carries as
    /// externals (recorded as such; admin). Packages built from a configuration go in
    /// with `register`.
    #[arg(long)]
    external: bool,
}

fn open(backends: &crate::backends::Backends, layout: &Layout) -> Result<Repositories, Failure> {
    Repositories::open_backends(backends, layout.clone()).map_err(failure)
}

pub fn failure(e: RepoError) -> Failure {
    let hint = e.hint();
    Failure::new(e, hint)
}

pub fn remote_failure(e: ClientError) -> Failure {
    let hint = e.hint();
    Failure::new(e, hint)
}

pub fn service_failure(e: ServiceError) -> Failure {
    let hint = e.hint();
    Failure::new(e, hint)
}

/// Where a command does its work: on the data directory itself, or through a running
/// server (`--server URL --token T`).
pub enum Target<'a> {
    Local {
        data: &'a Path,
        layout: &'a Layout,
        backends: &'a crate::backends::Backends,
    },
    Remote {
        client: Client,
        url: String,
        layout: &'a Layout,
    },
}

impl Target<'_> {
    pub fn layout(&self) -> &Layout {
        match self {
            Target::Local { layout, .. } | Target::Remote { layout, .. } => layout,
        }
    }

    /// What does a repository command's work here: the data directory (opened now), or
    /// the server.
    pub fn service(&self) -> Result<Box<dyn Service + '_>, Failure> {
        Ok(match self {
            Target::Local {
                layout, backends, ..
            } => Box::new(open(backends, layout)?),
            Target::Remote {
                client,
                url,
                layout,
            } => Box::new(Remote {
                client: client.clone(),
                url: url.clone(),
                layout,
            }),
        })
    }
}

pub fn cmd_repo(cmd: RepoCommand, target: &Target, json: bool) -> Outcome {
    let service = target.service()?;
    match cmd {
        RepoCommand::Create {
            name,
            kind,
            platforms,
            keep,
            yum_compression,
            private,
        } => {
            let new = crate::repo::NewRepo {
                name: name.clone(),
                kind,
                platforms,
                keep,
                yum_compression,
                private,
            };
            let r = service.create_repo(&new).map_err(service_failure)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "created {} repository {} in {}",
                    r.kind.as_str(),
                    r.name,
                    service.location(&name, "")
                );
                println!("next: packyard key generate --repo {name}");
            }
        }
        RepoCommand::List => {
            let list = service.repos().map_err(service_failure)?;
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
        RepoCommand::Delete { name, yes } => {
            if !yes {
                let r = service.repo(&name).map_err(service_failure)?;
                return Err(Failure::new(
                    format!(
                        "deleting {} would remove its {} packages ({} bytes), its indexes \
                         and its signing key for good",
                        r.record.name, r.packages, r.bytes
                    ),
                    format!("run `packyard repo delete {name} --yes` to do it"),
                ));
            }
            let gone = service.delete_repo(&name).map_err(service_failure)?;
            if json {
                print_json(&gone)?;
            } else {
                println!(
                    "deleted {} ({} packages, {} bytes)",
                    gone.record.name, gone.packages, gone.bytes
                );
            }
        }
        RepoCommand::Export { name, dir } => {
            // Export opens the data directory by itself (and refuses a server).
            drop(service);
            return cmd_export(&name, &dir, target, json);
        }
        RepoCommand::Show { name } => {
            let r = service.repo(&name).map_err(service_failure)?;
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
                if r.record.private {
                    println!("private     served only with a token");
                }
                println!(
                    "key         {}",
                    r.record.key.as_deref().unwrap_or("none (indexes unsigned)")
                );
                println!("packages    {} ({} bytes)", r.packages, r.bytes);
                println!("tree        {}", service.location(&name, ""));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_key(cmd: KeyCommand, target: &Target, json: bool) -> Outcome {
    let service = target.service()?;
    let info = match cmd {
        KeyCommand::Generate {
            repo,
            algorithm,
            force,
        } => service.generate_key(&repo, algorithm, force),
        KeyCommand::Import { repo, file, force } => {
            let armored = std::fs::read_to_string(&file)
                .map_err(|e| Failure::new(format!("{}: {e}", file.display()), None))?;
            service.import_key(&repo, &armored, force)
        }
        KeyCommand::Export { repo } => {
            print!("{}", service.public_key(&repo).map_err(service_failure)?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    .map_err(service_failure)?;
    if json {
        print_json(&info)?;
    } else {
        println!(
            "repository {} signs with key {}",
            info.repo, info.fingerprint
        );
        let key = &target.layout().repository.key;
        println!("public key: {}", service.location(&info.repo, key));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_publish(args: PublishArgs, target: &Target, json: bool) -> Outcome {
    let bar = super::progress::Bar::new(!json);
    let opts = PublishOptions {
        sign: args.sign,
        platform: args.platform.clone(),
        external: args.external,
    };
    let report = target
        .service()?
        .publish(&args.repo, &args.paths, &opts, &bar)
        .map_err(service_failure)?;
    print_report(&report, json)
}

/// The data directory of a command that runs only where the data is.
fn where_the_data_is<'t>(
    target: &'t Target,
    command: &str,
    hint: &str,
) -> Result<(&'t Layout, &'t crate::backends::Backends), Failure> {
    match target {
        Target::Local {
            layout, backends, ..
        } => Ok((layout, backends)),
        Target::Remote { .. } => Err(Failure::new(
            format!("{command} runs where the data is, not through a server"),
            hint.to_string(),
        )),
    }
}

fn cmd_export(name: &str, dir: &Path, target: &Target, json: bool) -> Outcome {
    let (layout, backends) = where_the_data_is(
        target,
        "repo export",
        "on the embedded store, stop the server (its repository directory already is \
         this tree); on a shared store, run it without --server",
    )?;
    let done = open(backends, layout)?.export(name, dir).map_err(failure)?;
    if json {
        print_json(&done)?;
    } else {
        println!(
            "wrote {} files ({} bytes) of {} to {}",
            done.files,
            done.bytes,
            done.repo,
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_migrate(
    to_blobs: Option<&str>,
    to_store: Option<&str>,
    target: &Target,
    json: bool,
) -> Outcome {
    let (layout, backends) = where_the_data_is(
        target,
        "migrate",
        "stop the server, then run it on the data directory",
    )?;
    if to_store.is_none() && to_blobs.is_none() {
        return Err(Failure::new(
            "nothing to migrate to",
            "give --to-store URL (postgres://USER@HOST:PORT/DB) and/or --to-blobs URL \
             (s3://BUCKET/PREFIX?endpoint=...&region=...)"
                .to_string(),
        ));
    }
    let bad = |e: crate::backends::BackendError| {
        let hint = e.hint();
        Failure::new(e, hint)
    };
    let mut to = (*backends).clone();
    if let Some(url) = to_store {
        to.store = crate::backends::parse_store(url).map_err(bad)?;
        if to.store == backends.store {
            return Err(Failure::new(
                format!("the data directory's store is {url} already"),
                "give another --to-store".to_string(),
            ));
        }
    }
    if let Some(url) = to_blobs {
        to.blobs = crate::backends::parse_blobs(url).map_err(bad)?;
        if to.blobs == backends.blobs {
            return Err(Failure::new(
                format!("the data directory's blobs are {url} already"),
                "give another --to-blobs".to_string(),
            ));
        }
    }
    let repos = open(backends, layout)?;
    // The target store opened, and the keys it is to keep made ready, before any byte is
    // copied: a database that cannot be reached, or a key that cannot go there, stops
    // the migration before it begins.
    let target_store = match to_store {
        Some(_) => {
            let store = to
                .open_store(std::time::Duration::from_secs(30))
                .map_err(failure)?;
            let keys = repos.keys_for_store(store.as_ref()).map_err(failure)?;
            Some((store, keys))
        }
        None => None,
    };
    let mut done = serde_json::Map::new();
    if to_blobs.is_some() {
        let target_blobs = to.open_blobs().map_err(failure)?;
        let bar = super::progress::Bar::new(!json);
        // Generations are named in the store that is to name them.
        let names = match &target_store {
            Some((store, _)) => store.as_ref(),
            None => repos.store.as_ref(),
        };
        let m = repos
            .migrate_blobs(target_blobs.as_ref(), names, &bar)
            .map_err(failure)?;
        if !json {
            println!(
                "blobs: {} objects named; {} copied ({} bytes), the others were there \
                 already; each checked against its source",
                m.objects, m.copied, m.bytes
            );
        }
        done.insert("blobs".into(), serde_json::to_value(&m)?);
    }
    if let Some((store, keys)) = target_store {
        let m = repos
            .migrate_store(store.as_ref(), &keys)
            .map_err(failure)?;
        if !json {
            println!(
                "store: {} records copied ({} packages with their index entries)",
                m.records, m.packages
            );
        }
        done.insert("store".into(), serde_json::to_value(&m)?);
    }
    if json {
        print_json(&done)?;
    } else {
        println!(
            "next: name them in packyard.toml (store = \"...\", blobs = \"...\") or with \
             --store/--blobs; the source is as it was"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_gc(grace: u64, dry_run: bool, target: &Target, json: bool) -> Outcome {
    let (layout, backends) = where_the_data_is(
        target,
        "gc",
        "a server collects by itself every hour; on its machine, stop it or wait",
    )?;
    let repos = open(backends, layout)?;
    let c = repos
        .collect(std::time::Duration::from_secs(grace), dry_run)
        .map_err(failure)?;
    if json {
        print_json(&c)?;
    } else {
        for k in &c.removed {
            println!("{} {k}", if dry_run { "would remove" } else { "removed" });
        }
        println!(
            "{} of {} objects unnamed ({} bytes){}; {} younger than {grace} s left",
            c.removed.len(),
            c.objects,
            c.bytes,
            if dry_run {
                ", nothing removed (--dry-run)"
            } else {
                ", removed"
            },
            c.young
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &crate::repo::PublishReport, json: bool) -> Outcome {
    if json {
        print_json(report)?;
        return Ok(ExitCode::SUCCESS);
    }
    // A line per file: written in blocks, not a system call per line.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    for f in &report.files {
        writeln!(
            out,
            "{:<9} {}  {} bytes  sha256 {}",
            f.action.as_str(),
            f.path,
            f.size,
            f.sha256
        )?;
    }
    for p in &report.removed {
        writeln!(out, "removed   {p}")?;
    }
    if report.indexes.is_empty() {
        writeln!(out, "indexes unchanged")?;
    } else {
        writeln!(out, "indexes   {}", report.indexes.join(", "))?;
    }
    out.flush()?;
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
    /// Also sign each RPM with the repository's key, as `publish --sign` does (the
    /// signature is made at the package's build time: registering again is a no-op).
    #[arg(long)]
    sign: bool,
    /// The `pack --out` tree(s) holding its packages.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn load_tree(dir: &Path) -> Result<crate::config::Tree, Failure> {
    let tree = crate::config::Tree::load(dir)?;
    super::refuse_broken_tree(&tree)?;
    Ok(tree)
}

pub fn cmd_lock(args: LockArgs, target: &Target, json: bool) -> Outcome {
    let tree = load_tree(&args.tree)?;
    let out = target
        .service()?
        .lock(&tree, &args.configuration)
        .map_err(service_failure)?;
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

pub fn cmd_register(args: RegisterArgs, target: &Target, json: bool) -> Outcome {
    let tree = load_tree(&args.tree)?;
    let options = crate::config::ResolveOptions {
        project: args.project,
        ..Default::default()
    };
    let bar = super::progress::Bar::new(!json);
    let report = target
        .service()?
        .register(
            crate::repo::release::Registering {
                tree: &tree,
                configuration: &args.configuration,
                options,
                inputs: &args.paths,
            },
            &args.repo,
            &crate::repo::PublishOptions {
                sign: args.sign,
                ..Default::default()
            },
            &bar,
        )
        .map_err(service_failure)?;
    print_report(&report, json)
}

/// Refuses to pack a locked configuration whose entry changed. Locks are read from the
/// server when one holds the data directory (or `--server` names one), or from a shared
/// store; without a data directory there are no locks to check.
pub fn check_lock(
    tree: &crate::config::Tree,
    configuration: &str,
    target: &Target,
) -> Result<(), Failure> {
    let service = match target {
        Target::Local {
            data,
            layout,
            backends,
        } => match crate::repo::running(data) {
            Some(server) => Box::new(Remote {
                client: Client::new(&server.url, None),
                url: server.url,
                layout,
            }),
            None if backends.store_exists() => target.service()?,
            None => return Ok(()),
        },
        Target::Remote { .. } => target.service()?,
    };
    service
        .check_lock(tree, configuration)
        .map_err(service_failure)?;
    Ok(())
}
