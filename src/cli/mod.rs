//! The command line: parses arguments, calls the library, prints text or `--json`.
//! No logic of its own beyond formatting.

mod agent;
mod build;
mod farm;
mod progress;
mod render;
mod repo;
mod resolve;
mod serve;

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    ResolveOptions, ResolvedConfiguration, Resolver, Tree, project_configurations, resolve_release,
};
use crate::layout::Layout;
use crate::lint;
use crate::pack;
use crate::version::{self, DebVersion, Scheme};

#[derive(Parser)]
#[command(
    name = "packyard",
    version,
    about = "RPM/DEB packaging and repository service"
)]
struct Cli {
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Use the platforms and layout in DIR instead of the built-in repo-layout/.
    #[arg(long, global = true, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// The data directory: metadata store, repository trees, signing keys.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PACKYARD_DATA",
        default_value = "packyard-data"
    )]
    data: PathBuf,
    /// Send repository commands to this running `packyard serve` instead of opening the
    /// data directory (which the server holds).
    #[arg(long, global = true, value_name = "URL", env = "PACKYARD_SERVER")]
    server: Option<String>,
    /// The metadata store: `sled` (embedded in the data directory; the default) or
    /// `postgres://USER@HOST:PORT/DB`.
    #[arg(long, global = true, value_name = "URL", env = "PACKYARD_STORE")]
    store: Option<String>,
    /// Where package files and indexes are kept: `file` (the data directory's repos/; the
    /// default) or `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=R` (credentials
    /// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the config file's [s3]).
    #[arg(long, global = true, value_name = "URL", env = "PACKYARD_BLOBS")]
    blobs: Option<String>,
    /// The file whose first line is the passphrase of the repositories' secret keys: keys
    /// generated or imported are stored protected by it (required with a store other than
    /// sled), and stored ones are unlocked with it to sign. Every server of a shared store
    /// needs the same one.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = crate::repo::PASSPHRASE_ENV
    )]
    key_passphrase_file: Option<PathBuf>,
    /// The config file (TOML): store, blobs, key_passphrase_file, [s3] access_key_id and
    /// secret_access_key, and `serve`'s settings; default: packyard.toml in the data
    /// directory, if there.
    #[arg(long, global = true, value_name = "FILE", env = "PACKYARD_CONFIG")]
    config: Option<PathBuf>,
    /// The API token for --server (`packyard token create`).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "PACKYARD_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a module tree against the policy; exit 1 listing every violation.
    Lint {
        /// The tree's root folder (holding the project's module.toml).
        tree: PathBuf,
    },
    /// A configuration with every field and property resolved, and where each came from.
    Show {
        configuration: String,
        #[command(flatten)]
        ctx: ContextArgs,
    },
    /// Pack a staged prefix into the tarball and the platform's RPM or DEB, at their
    /// download-from paths under --out.
    Pack(PackArgs),
    /// Create, list and show repositories.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Repository signing keys: generate, import, export.
    #[command(subcommand)]
    Key(repo::KeyCommand),
    /// Add packages to a repository and update its YUM and APT indexes.
    Publish(repo::PublishArgs),
    /// Freeze a configuration's metadata: record its content hash.
    Lock(repo::LockArgs),
    /// Copy a configuration as a new version into its module file.
    Clone(repo::CloneArgs),
    /// Publish packages of a locked configuration into a registered repository.
    Register(repo::RegisterArgs),
    /// The build node's plan: for each dependency, use what is installed, install a
    /// binary package, download a prebuilt tarball, or build from source.
    Resolve(resolve::ResolveArgs),
    /// Carry the plan out: install packages, download and unpack tarballs into
    /// ${stageDir}, check sources out into ${workspaceDir}.
    Fetch(resolve::FetchArgs),
    /// Build a release: checkout, targets, pack and publish every component in
    /// dependency order, several at once, reusing what the repository holds.
    Build(build::BuildArgs),
    /// Keep components as development checkouts in a workspace: checked out once, never
    /// removed by `build`, built there in place and incrementally.
    Develop(build::DevelopArgs),
    /// Rebuild binary packages from a source package alone (a .dsc with its files, or a
    /// .src.rpm) in a pristine root of its platform.
    Rebuild(build::RebuildArgs),
    /// Submit a release build to a server's build farm (--server, a server with --tree).
    Submit(farm::SubmitArgs),
    /// The build farm's builds: list, show, follow a task's log, cancel.
    #[command(subcommand)]
    Builds(farm::BuildsCommand),
    /// Serve the repositories, the JSON API and the browse pages over HTTP.
    Serve(serve::ServeArgs),
    /// A build node: take tasks from a server's build farm (--server, a builder
    /// --token), build them, upload their packages, logs and build records.
    Agent(agent::AgentArgs),
    /// API tokens for the server: create, list, revoke.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Compare two versions in RPM or Debian ordering: prints <, = or >.
    Vercmp(VercmpArgs),
    /// List the known platforms.
    Platforms,
    /// Copy the data directory's metadata to another store and/or its package files and
    /// indexes to another blob backend (each object checked against its source); run it
    /// again to finish an interrupted one. The source is only read: name the targets in
    /// packyard.toml afterwards.
    Migrate {
        /// The blob backend to copy to (`file`, or `s3://BUCKET/PREFIX?endpoint=...`).
        #[arg(long, value_name = "URL")]
        to_blobs: Option<String>,
        /// The store to copy the metadata to (`postgres://USER@HOST:PORT/DB`, or `sled`).
        #[arg(long, value_name = "URL")]
        to_store: Option<String>,
    },
    /// Remove objects no name leads to (failed publishes' leftovers, index generations
    /// older than the one kept for readers) once older than --grace; a server does it
    /// by itself every hour.
    Gc {
        /// Leave objects younger than this many seconds (a publish may be storing them).
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        grace: u64,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Lint the sample release and show what it resolves to (the quick tour).
    Demo {
        #[arg(long, default_value = "fixtures/trees/my-project")]
        tree: PathBuf,
        #[arg(long)]
        platform: Option<String>,
    },
}

#[derive(Args)]
struct PackArgs {
    /// The component configuration to pack.
    #[arg(long)]
    configuration: String,
    /// The staged install prefix (what the install target filled).
    #[arg(long, value_name = "DIR", required_unless_present = "source")]
    prefix: Option<PathBuf>,
    /// Write the source packages instead (for a Debian platform: `.dsc`, `.orig.tar.gz`,
    /// `.debian.tar.xz`), from the component's checkout.
    #[arg(long, requires = "checkout", conflicts_with_all = ["prefix", "formats"])]
    source: bool,
    /// The component's checkout (the module directory its `checkout` target made).
    #[arg(long, value_name = "DIR")]
    checkout: Option<PathBuf>,
    /// Output tree; files land at their download-from paths inside it.
    #[arg(long, value_name = "DIR", default_value = "_output")]
    out: PathBuf,
    /// Write only these (comma-separated); default: the tarball and the platform's package.
    #[arg(long, value_parser = choice::<pack::ArtifactFormat>(), value_delimiter = ',', value_name = "LIST")]
    formats: Vec<pack::ArtifactFormat>,
    #[command(flatten)]
    ctx: ContextArgs,
}

#[derive(Args)]
struct ContextArgs {
    /// The module tree.
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// Platform name (see `packyard platforms`); the layout's default if omitted.
    #[arg(long)]
    platform: Option<String>,
    /// Project configuration giving the release context; the latest one holding the
    /// configuration if omitted.
    #[arg(long, value_name = "CONFIGURATION")]
    project: Option<String>,
    /// Set a property, winning over every configuration (repeatable).
    #[arg(short = 'p', value_name = "KEY=VALUE", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    /// Build with defaults profile NAME (`profiles/NAME.toml` in the tree; repeatable,
    /// a later one wins; `-p` wins over all).
    #[arg(long = "defaults", value_name = "NAME")]
    defaults: Vec<String>,
    /// ${workspaceDir}; default ./workspace.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("scheme").required(true).args(["rpm", "deb"])))]
struct VercmpArgs {
    a: Option<String>,
    b: Option<String>,
    /// rpm's ordering (rpmvercmp, epoch, ~ and ^).
    #[arg(long)]
    rpm: bool,
    /// dpkg's ordering (epoch, ~, revision).
    #[arg(long)]
    deb: bool,
    /// Read "A B" pairs, one a line, and print one answer a line.
    #[arg(long, conflicts_with_all = ["a", "b"])]
    stdin: bool,
}

/// The parser of a library [`Choice`](crate::choice::Choice): its names offered, each
/// with its help in `--help`.
pub(crate) fn choice<T: crate::choice::Choice + Send + Sync>()
-> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        T::CHOICES
            .iter()
            .map(|(_, name, help)| PossibleValue::new(*name).help(*help)),
    )
    .try_map(|s| T::named(&s).ok_or_else(|| format!("no choice named {s}")))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// A failure to show the user: what happened, and what to do.
pub struct Failure {
    message: String,
    hint: Option<String>,
}

impl Failure {
    fn new(message: impl std::fmt::Display, hint: impl Into<Option<String>>) -> Failure {
        Failure {
            message: message.to_string(),
            hint: hint.into(),
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(e, None)
    }
}

type Outcome = Result<ExitCode, Failure>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output goes away
    // (`packyard show ... | head`) instead of panicking on a broken pipe.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let json = cli.json;
    // Logs are the server's; another command logs only when asked (`PACKYARD_LOG=...`),
    // e.g. to see how long each step of a publish took.
    if std::env::var_os("PACKYARD_LOG").is_some() && !matches!(cli.command, Command::Serve(_)) {
        crate::server::init_logging(false, false);
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(f) => {
            if json {
                let v = serde_json::json!({"error": f.message, "hint": f.hint});
                println!("{v}");
            } else {
                eprintln!("error: {}", f.message);
                if let Some(h) = f.hint {
                    eprintln!("  hint: {h}");
                }
            }
            ExitCode::FAILURE
        }
    };
    // A build being stopped by a signal ends with that signal, once its steps are.
    crate::build::stop::park_if_stopping();
    code
}

fn run(cli: Cli) -> Outcome {
    let layout = match &cli.layout {
        Some(dir) => Layout::from_dir(dir)?,
        None => Layout::builtin(),
    };
    let backends = crate::backends::Backends::choose(
        &cli.data,
        cli.store.as_deref(),
        cli.blobs.as_deref(),
        cli.key_passphrase_file.as_deref(),
        cli.config.as_deref(),
    )
    .map_err(|e| {
        let hint = e.hint();
        Failure::new(e, hint)
    })?;
    let target = match &cli.server {
        Some(url) => repo::Target::Remote {
            client: crate::client::Client::new(url, cli.token.clone()),
            url: url.trim_end_matches('/').to_string(),
            layout: &layout,
        },
        None => repo::Target::Local {
            data: &cli.data,
            layout: &layout,
            backends: &backends,
        },
    };
    match cli.command {
        Command::Lint { tree } => cmd_lint(&tree, &layout, cli.json),
        Command::Show { configuration, ctx } => cmd_show(&configuration, &ctx, &layout, cli.json),
        Command::Pack(args) => cmd_pack(&args, &layout, &target, cli.json),
        Command::Vercmp(args) => cmd_vercmp(&args),
        Command::Repo(cmd) => repo::cmd_repo(cmd, &target, cli.json),
        Command::Key(cmd) => repo::cmd_key(cmd, &target, cli.json),
        Command::Publish(args) => repo::cmd_publish(args, &target, cli.json),
        Command::Lock(args) => repo::cmd_lock(args, &target, cli.json),
        Command::Clone(args) => repo::cmd_clone(args, cli.json),
        Command::Register(args) => repo::cmd_register(args, &target, cli.json),
        Command::Resolve(args) => {
            resolve::cmd_resolve(args, &target, cli.token.as_deref(), cli.json)
        }
        Command::Fetch(args) => resolve::cmd_fetch(args, &target, cli.token.as_deref(), cli.json),
        Command::Build(args) => build::cmd_build(args, &target, cli.token.as_deref(), cli.json),
        Command::Rebuild(args) => build::cmd_rebuild(args, &layout, cli.json),
        Command::Develop(args) => build::cmd_develop(args, &layout, cli.json),
        Command::Submit(args) => farm::cmd_submit(args, &target, cli.json),
        Command::Builds(cmd) => farm::cmd_builds(cmd, &target, cli.json),
        Command::Serve(args) => {
            serve::cmd_serve(args, &backends, cli.config.as_deref(), &layout, cli.json)
        }
        Command::Agent(args) => agent::cmd_agent(
            args,
            cli.server.as_deref(),
            cli.token.as_deref(),
            &layout,
            cli.json,
        ),
        Command::Token(cmd) => serve::cmd_token(cmd, &target, cli.json),
        Command::Migrate { to_blobs, to_store } => {
            repo::cmd_migrate(to_blobs.as_deref(), to_store.as_deref(), &target, cli.json)
        }
        Command::Gc { grace, dry_run } => repo::cmd_gc(grace, dry_run, &target, cli.json),
        Command::Platforms => {
            let platforms: Vec<_> = layout.platforms.values().collect();
            if cli.json {
                print_json(&platforms)?;
            } else {
                render::platforms(&platforms, &layout.default_platform);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { tree, platform } => cmd_demo(&tree, platform, &layout, cli.json),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v)?;
    println!("{s}");
    Ok(())
}

fn cmd_lint(dir: &Path, layout: &Layout, json: bool) -> Outcome {
    let tree = Tree::load(dir)?;
    let violations = lint::lint(&tree, layout);
    if json {
        print_json(&violations)?;
    } else {
        render::violations(&violations);
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl ContextArgs {
    /// The resolve options the arguments give, the profiles loaded from the tree.
    fn options(&self) -> Result<ResolveOptions, Failure> {
        let profiles =
            crate::config::profile::load_all(&self.tree, &self.defaults).map_err(|e| {
                let hint = e.hint();
                Failure::new(e, hint)
            })?;
        Ok(ResolveOptions {
            platform: self.platform.clone(),
            project: self.project.clone(),
            overrides: self.properties.clone(),
            profiles,
            workspace: self.workspace.clone(),
        })
    }
}

fn cmd_show(configuration: &str, ctx: &ContextArgs, layout: &Layout, json: bool) -> Outcome {
    let tree = Tree::load(&ctx.tree)?;
    refuse_broken_tree(&tree)?;
    let options = ctx.options()?;
    let resolve = || {
        let (resolver, id) = Resolver::for_configuration(&tree, layout, options, configuration)?;
        resolver.resolve(id)
    };
    let resolved = resolve().map_err(|e| Failure::new(&e, e.hint()))?;
    if json {
        print_json(&*resolved)?;
    } else {
        render::resolved(&resolved);
    }
    Ok(ExitCode::SUCCESS)
}

/// Commands other than `lint` refuse a tree with unreadable files instead of guessing.
fn refuse_broken_tree(tree: &Tree) -> Result<(), Failure> {
    if let Some(p) = tree.problems.first() {
        return Err(Failure::new(
            format!("{}: {}", p.location, p.message),
            format!(
                "fix the file ({} problem(s) in the tree); `packyard lint {}` lists them all",
                tree.problems.len(),
                tree.root.display()
            ),
        ));
    }
    Ok(())
}

fn cmd_pack(args: &PackArgs, layout: &Layout, target: &repo::Target, json: bool) -> Outcome {
    let tree = Tree::load(&args.ctx.tree)?;
    refuse_broken_tree(&tree)?;
    repo::check_lock(&tree, &args.configuration, target)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<i64>().map_err(|_| {
            Failure::new(
                format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds"),
                "set it to e.g. $(git log -1 --format=%ct), or unset it".to_string(),
            )
        })?),
        _ => None,
    };
    let bar = progress::Bar::new(!json);
    let artifacts = match (&args.prefix, &args.checkout) {
        (_, Some(checkout)) if args.source => pack::pack_source(
            &pack::SourceRequest {
                tree: &tree,
                layout,
                configuration: &args.configuration,
                options: args.ctx.options()?,
                checkout,
                out: &args.out,
                source_date_epoch,
            },
            &bar,
        ),
        (Some(prefix), _) => pack::pack(
            &pack::PackRequest {
                tree: &tree,
                layout,
                configuration: &args.configuration,
                options: args.ctx.options()?,
                prefix,
                out: &args.out,
                source_date_epoch,
                formats: &args.formats,
            },
            &bar,
        ),
        // clap asks for these; said again should that ever change.
        _ => {
            return Err(Failure::new(
                "pack needs a staged prefix, or a checkout to make source packages from",
                "give --prefix DIR, or --source --checkout DIR".to_string(),
            ));
        }
    }
    .map_err(|e| Failure::new(&e, e.hint()))?;
    if json {
        print_json(&artifacts)?;
    } else {
        render::artifacts(&args.out, &artifacts);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_vercmp(args: &VercmpArgs) -> Outcome {
    let scheme = if args.rpm { Scheme::Rpm } else { Scheme::Deb };
    let check = |v: &str| -> Result<(), Failure> {
        if scheme == Scheme::Deb {
            DebVersion::parse(v).map_err(|e| {
                Failure::new(
                    format!("`{v}` is not a Debian version: {e}"),
                    "see deb-version(7): [epoch:]upstream[-revision], upstream starting with a digit".to_string(),
                )
            })?;
        }
        Ok(())
    };
    if args.stdin {
        let stdin = std::io::stdin().lock();
        let mut out = BufWriter::new(std::io::stdout().lock());
        for (n, line) in stdin.lines().enumerate() {
            let line =
                line.map_err(|e| Failure::new(format!("stdin line {}: {e}", n + 1), None))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Failure::new(
                    format!("stdin line {}: expected two versions, got `{line}`", n + 1),
                    "give one pair a line: A B".to_string(),
                ));
            };
            check(a).and_then(|_| check(b)).map_err(|f| {
                Failure::new(format!("stdin line {}: {}", n + 1, f.message), f.hint)
            })?;
            writeln!(
                out,
                "{}",
                version::ordering_symbol(version::compare(scheme, a, b))
            )?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(a), Some(b)) = (&args.a, &args.b) else {
        return Err(Failure::new(
            "vercmp needs two versions (or --stdin)",
            "packyard vercmp 1.0-1 1.0-2 --rpm".to_string(),
        ));
    };
    check(a)?;
    check(b)?;
    println!(
        "{}",
        version::ordering_symbol(version::compare(scheme, a, b))
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_demo(dir: &Path, platform: Option<String>, layout: &Layout, json: bool) -> Outcome {
    let tree = Tree::load(dir).map_err(|e| {
        Failure::new(
            e,
            "run the demo from the repository's root folder, or pass --tree".to_string(),
        )
    })?;
    let violations = lint::lint(&tree, layout);
    refuse_broken_tree(&tree)?;
    let mut releases = Vec::new();
    for pid in project_configurations(&tree) {
        let options = ResolveOptions {
            platform: platform.clone(),
            ..ResolveOptions::default()
        };
        let members =
            resolve_release(&tree, layout, options, pid).map_err(|e| Failure::new(&e, e.hint()))?;
        releases.push((tree.configurations[pid].name.clone(), members));
    }
    if json {
        let releases: Vec<_> = releases
            .iter()
            .map(|(project, members)| {
                let members: Vec<&ResolvedConfiguration> = members.iter().map(|r| &**r).collect();
                serde_json::json!({"project": project, "configurations": members})
            })
            .collect();
        print_json(&serde_json::json!({"violations": violations, "releases": releases}))?;
    } else {
        render::demo(&tree, &violations, &releases);
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
