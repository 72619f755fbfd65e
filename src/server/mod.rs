//! `packyard serve`: one data directory over HTTP — the repository trees, client set-up
//! files, the JSON API, browse pages, health and metrics. Handlers are thin: they check
//! the caller, then call the same library functions as the command line.
//!
//! | module | routes |
//! |---|---|
//! | [`files`] | `/repos/<repo>/...`: tree files, `<platform>.repo`, `<suite>.sources` |
//! | [`api`] | `/api/v1/...`: repositories, packages, uploads, tokens |
//! | [`farm`] | `/api/v1/builds/...`, `/api/v1/agents/...`: the build farm |
//! | [`browse`] | `/`: HTML pages |
//! | [`metrics`] | `/metrics`, `/healthz`, and the per-request accounting |
//! | [`queue`] | uploads to one repository published together (group commit) |
//! | [`known`] | what file serving keeps per repository, forgotten on delete |
//! | [`copies`] | small files kept in memory over a shared store, while provably current |

pub mod api;
pub mod browse;
pub mod claims;
pub mod copies;
pub mod demo;
pub mod errors;
pub mod farm;
pub mod farm_pages;
pub mod files;
pub mod known;
pub mod log_lines;
pub mod metrics;
pub mod queue;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use actix_web::{App, HttpRequest, HttpServer, web};
use serde::Deserialize;

use crate::auth::{self, AuthError};
use crate::layout::Layout;
use crate::repo::{RepoError, Repositories};
use crate::store::{RepoRecord, Role, TokenRecord};

/// Settings from the config file (`--config FILE`, else `packyard.toml` in the data
/// directory; TOML); every one has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on; `--listen` wins.
    pub listen: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// HTTP worker threads; default: one per core.
    pub workers: Option<usize>,
    /// The URL clients reach the server at, for the set-up files (behind a proxy);
    /// default: what the request's Host header says.
    pub base_url: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_timeout: u64,
    /// The module tree `GET /api/v1/resolve` plans from and submitted builds resolve
    /// in; `--tree` wins.
    pub tree: Option<PathBuf>,
    /// Seconds a build farm task's lease lasts without a heartbeat; `--lease` wins.
    pub lease_seconds: f64,
    /// Seconds between an agent's heartbeats; `--heartbeat` wins.
    pub heartbeat_seconds: f64,
    /// Package files answered with a redirect to a presigned URL of their object, where
    /// the blob backend gives one; `--redirect-blobs` sets it.
    pub redirect_blobs: bool,
    /// The backends (`store`, `blobs`, `[s3]`) and `key_passphrase_file`, read from the
    /// same file by [`crate::backends`].
    pub store: Option<toml::Value>,
    pub blobs: Option<toml::Value>,
    pub s3: Option<toml::Value>,
    pub key_passphrase_file: Option<toml::Value>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: "127.0.0.1:8080".into(),
            max_upload_bytes: 2 << 30,
            workers: None,
            base_url: None,
            shutdown_timeout: 60,
            tree: None,
            lease_seconds: 60.0,
            heartbeat_seconds: 15.0,
            redirect_blobs: false,
            store: None,
            blobs: None,
            s3: None,
            key_passphrase_file: None,
        }
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ServeError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the demo data could not be made: {0}")]
    Demo(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ServeError::Config { .. } => {
                Some("see `docs/guide.md` (Serving) for the settings".into())
            }
            ServeError::Bind { .. } => {
                Some("pick another address with --listen HOST:PORT (port 0: any free port)".into())
            }
            ServeError::Repo(e) => e.hint(),
            _ => None,
        }
    }
}

/// What every handler shares.
pub struct State {
    pub repos: Repositories,
    pub data: PathBuf,
    /// Where uploads are streamed before they are published.
    pub uploads: PathBuf,
    pub settings: Settings,
    pub metrics: metrics::Metrics,
    pub queue: queue::PublishQueue,
    /// Per repository: whether it is private (fixed at creation); forgotten when it is
    /// deleted.
    pub known: known::Known,
    /// Small files served from memory over a store other processes write too.
    pub copies: std::sync::Arc<copies::Copies>,
    /// Platforms and download-from templates, for plans.
    pub layout: crate::layout::Layout,
    /// The module tree of the last plan, kept while its files stay the same: reading a
    /// release of ten thousand components costs far more than checking it.
    tree: std::sync::Mutex<Option<std::sync::Arc<crate::config::Tree>>>,
    /// The build farm: its queue (in the store), the agents seen, running tasks' logs.
    pub farm: farm::FarmState,
}

pub type Shared = web::Data<State>;

impl State {
    /// The module tree at `dir`: the one kept from an earlier plan if its files are
    /// unchanged, else read again (and kept). Blocking.
    pub fn tree(
        &self,
        dir: &std::path::Path,
    ) -> Result<std::sync::Arc<crate::config::Tree>, crate::config::TreeError> {
        let start = std::time::Instant::now();
        let kept = self.tree.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = kept
            && t.root == dir
            && t.is_current()?
        {
            tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "module tree kept");
            return Ok(t);
        }
        // Read without holding the lock: plans on a kept tree need not wait.
        let t = std::sync::Arc::new(crate::config::Tree::load(dir)?);
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
        tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "module tree read");
        Ok(t)
    }

    /// The module tree kept by the last read of `dir`, unchecked, or read now if there is
    /// none: for the build farm's claims, which build what was submitted (the submission
    /// read it checked), so a claim does not look at every module file again.
    pub fn kept_tree(
        &self,
        dir: &std::path::Path,
    ) -> Result<std::sync::Arc<crate::config::Tree>, crate::config::TreeError> {
        let kept = self.tree.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match kept {
            Some(t) if t.root == dir => Ok(t),
            _ => self.tree(dir),
        }
    }

    /// The token the request carries, checked; `None` when it carries none.
    pub fn caller(&self, req: &HttpRequest) -> Result<Option<TokenRecord>, AuthError> {
        let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t)
            .ok_or(AuthError::Invalid)?;
        auth::check(self.repos.store.as_ref(), token.trim()).map(Some)
    }

    /// The caller, who must hold at least `role`.
    pub fn require(&self, req: &HttpRequest, role: Role) -> Result<TokenRecord, AuthError> {
        let caller = self.caller(req)?.ok_or(AuthError::Missing)?;
        auth::require(caller.role, role)?;
        Ok(caller)
    }

    /// A repository the caller may read: private ones need a token.
    pub fn readable(&self, req: &HttpRequest, name: &str) -> Result<RepoRecord, errors::ApiError> {
        let record = self.readable_record(name)?;
        if record.private {
            self.require(req, Role::Builder)?;
        }
        Ok(record)
    }

    /// Whether the caller may read files of repository `name`: the hot path of file
    /// serving, so the answer per repository is kept (privacy never changes).
    pub fn may_read(&self, req: &HttpRequest, name: &str) -> Result<(), errors::ApiError> {
        let private = self.known.get_or(
            name,
            |e| e.private,
            |e, p| e.private = Some(p),
            || Ok::<_, errors::ApiError>(self.readable_record(name)?.private),
        )?;
        match private {
            // Being deleted.
            None => Err(RepoError::NoSuchRepo(name.into()).into()),
            Some(true) => Ok(self.require(req, Role::Builder).map(|_| ())?),
            Some(false) => Ok(()),
        }
    }

    fn readable_record(&self, name: &str) -> Result<RepoRecord, errors::ApiError> {
        crate::repo::check_repo_name(name).map_err(|_| RepoError::NoSuchRepo(name.into()))?;
        Ok(self.repos.repo(name)?)
    }

    /// Whether repository `name` is being deleted (then it is not served).
    pub fn deleting(&self, name: &str) -> bool {
        self.known.is_deleting(name)
    }

    /// The URL clients reach this server at: the configured one, else the request's.
    pub fn base_url(&self, req: &HttpRequest) -> String {
        match &self.settings.base_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let info = req.connection_info();
                format!("{}://{}", info.scheme(), info.host())
            }
        }
    }
}

pub struct ServeOptions {
    /// The data directory and the backends it uses.
    pub backends: crate::backends::Backends,
    pub layout: Layout,
    pub settings: Settings,
    /// Seed an empty data directory with the fixture release.
    pub demo: Option<PathBuf>,
}

/// Runs the server until SIGTERM or SIGINT, then lets in-flight requests finish and
/// flushes the store.
pub fn run(opts: ServeOptions) -> Result<(), ServeError> {
    // Refuses a data directory another server holds.
    let repos = Repositories::open_backends(&opts.backends, opts.layout.clone())?;
    if let Some(tree) = &opts.demo {
        demo::seed(&repos, tree)?;
    }
    // Every publish into such a repository fails until the server is given what unlocks
    // its key: said now, not at the first upload.
    for e in repos.keys_that_cannot_sign()? {
        tracing::warn!(error = %e, hint = e.hint().unwrap_or_default(), "a signing key cannot sign");
    }
    let uploads = opts.backends.data.join("uploads");
    // Left by a server that stopped mid-upload: never published, safe to drop.
    let _ = std::fs::remove_dir_all(&uploads);
    std::fs::create_dir_all(&uploads)?;
    let mut settings = opts.settings.clone();
    if settings.tree.is_none() {
        settings.tree = opts.demo.clone();
    }
    let state = web::Data::new(State {
        repos,
        data: opts.backends.data.clone(),
        uploads,
        settings: settings.clone(),
        metrics: metrics::Metrics::new(),
        queue: queue::PublishQueue::default(),
        known: Default::default(),
        copies: Default::default(),
        layout: opts.layout.clone(),
        tree: Default::default(),
        farm: farm::FarmState::new(&settings),
    });
    // Leases that run out put their tasks back, also while no agent asks.
    farm::expire_in_background(state.clone());
    collect_in_background(state.clone());
    // Old index generations go after the publish that dropped them has answered.
    state.repos.tidy_later();
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tidying = {
        let (state, stopped) = (state.clone(), stopped.clone());
        std::thread::spawn(move || state.repos.tidy(&|| stopped.load(Ordering::SeqCst)))
    };
    claims::Claims::start(state.clone());
    copies::follow(state.clone(), stopped.clone());

    actix_web::rt::System::new().block_on(async move {
        let app_state = state.clone();
        let max_upload = settings.max_upload_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(max_upload as usize))
                .app_data(web::JsonConfig::default().error_handler(|e, _| {
                    errors::ApiError::bad_request("bad_json", format!("the JSON body: {e}"))
                        .hint("see docs/openapi.yaml for the fields")
                        .into()
                }))
                // A path segment of the wrong kind (`/api/v1/builds/abc`) names nothing.
                .app_data(web::PathConfig::default().error_handler(|e, req| {
                    errors::ApiError::not_found(format!("nothing at {}: {e}", req.path()))
                        .hint("build ids and task indexes are numbers")
                        .into()
                }))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    errors::ApiError::bad_request("bad_query", format!("the query string: {e}"))
                        .hint("see docs/openapi.yaml for the parameters")
                        .into()
                }))
                .wrap(actix_web::middleware::from_fn(metrics::account))
                .configure(routes)
        })
        .shutdown_timeout(settings.shutdown_timeout)
        // Answers streamed in parts must not wait for the client's delayed ACK (Nagle):
        // without this a keep-alive request's last part came ~40 ms late.
        .tcp_nodelay(true)
        // A large file's parts gathered before each write to the socket (actix-web's
        // default is 32 KiB).
        .h1_write_buffer_size(files::WRITE_BUFFER);
        if let Some(w) = settings.workers {
            server = server.workers(w);
        }
        let server = server
            .bind(&settings.listen)
            .map_err(|source| ServeError::Bind {
                addr: settings.listen.clone(),
                source,
            })?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| ServeError::Bind {
                addr: settings.listen.clone(),
                source: std::io::Error::other("no address bound"),
            })?;
        let url = format!("http://{addr}");
        state
            .repos
            .store
            .serving(Some(&url))
            .map_err(RepoError::from)?;
        tracing::info!(%url, data = %opts.backends.data.display(), "listening");
        println!("packyard serve: listening on {url}");
        let result = server.run().await;
        tracing::info!("stopped; flushing the store");
        // What the last publishes dropped goes first (the store is still open).
        stopped.store(true, Ordering::SeqCst);
        let _ = tidying.join();
        let _ = state.repos.store.serving(None);
        state.repos.store.flush().map_err(RepoError::from)?;
        result.map_err(ServeError::Io)
    })
}

/// How often a server collects unnamed objects, and how old they must be.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Collects objects no name leads to (`repo::gc`) every hour, for as long as the server
/// runs.
fn collect_in_background(state: Shared) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(COLLECT_EVERY);
            match state.repos.collect(COLLECT_EVERY, false) {
                Ok(c) if !c.removed.is_empty() => tracing::info!(
                    removed = c.removed.len(),
                    bytes = c.bytes,
                    "collected unnamed objects"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("collecting unnamed objects: {e}"),
            }
        }
    });
}

/// Every route, in one place.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(metrics::routes)
        .configure(api::routes)
        .route("/repos/{repo}/{tail:.*}", web::get().to(files::get))
        .route("/repos/{repo}/{tail:.*}", web::head().to(files::get))
        .configure(farm_pages::routes)
        .configure(browse::routes);
}

/// Starts logging to stderr (`PACKYARD_LOG` sets the filter, e.g. `debug`); `gather`:
/// lines not at a terminal are written in blocks ([`log_lines`]; a server's request log).
pub fn init_logging(json: bool, gather: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PACKYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let colour = !json && colour(terminal, std::env::var_os("NO_COLOR"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(log_lines::LogLines::new(gather && !terminal));
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Whether log lines are coloured: only for a person at a terminal, never into a file or
/// a pipe, and not when `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(super::colour(true, None));
        assert!(super::colour(true, Some("".into())));
        assert!(!super::colour(true, Some("1".into())));
        assert!(!super::colour(false, None));
    }
}
