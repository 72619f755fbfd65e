//! The command line's way to a running `packyard serve`: the repository operations of the
//! library, sent to `/api/v1` with a bearer token. While a server holds the data
//! directory, `--server URL --token T` makes `publish`, `repo`, `key generate`, `token`,
//! `lock` and `register` go through here. A build node (`packyard agent`) reaches the
//! build farm's routes here too, and publishes under its task's lease.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::auth::NewToken;
use crate::farm::{Assignment, Beat, TaskReport};
use crate::paths::segment;
use crate::repo::builds::{BuildRecord, StoredBuild};
use crate::repo::keys::{Algorithm, KeyInfo};
use crate::repo::publish::{FileOutcome, UploadRegistration};
use crate::repo::release::LockOutcome;
use crate::repo::{NewRepo, RepoSummary};
use crate::store::{BuildId, LockRecord, Role};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} (HTTP {status} from {url})")]
    Http {
        url: String,
        status: u16,
        code: String,
        message: String,
        hint: Option<String>,
    },
    #[error("cannot reach the server at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url} answered what this packyard does not understand: {why}")]
    Answer { url: String, why: String },
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

impl ClientError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Http { hint, .. } => hint.clone(),
            ClientError::Unreachable { .. } => Some(
                "check --server (or PACKYARD_SERVER) and that `packyard serve` runs there".into(),
            ),
            ClientError::Answer { .. } => Some(
                "the server may run another packyard version; use the same on both sides".into(),
            ),
            ClientError::File { .. } => None,
        }
    }

    /// The server refused a report under a lease that is no longer the task's: another
    /// agent holds it, or it ended.
    pub fn is_stale_lease(&self) -> bool {
        matches!(self, ClientError::Http { code, .. } if code == "stale_lease")
    }

    /// Worth asking again: the server could not be reached, or a proxy in front of it
    /// could not reach it (a restart).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Http { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// How long to wait before asking a server again: doubling from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// For a server that may be restarting: 1 s, 2 s, 4 s … up to 30 s.
    pub const SERVER: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };

    /// The wait before retry `attempt` (0: the first retry), less up to a quarter by
    /// `jitter` (in `[0, 1)`), so that many clients do not ask again all at once.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doubled = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        doubled.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
    }
}

/// Asking again after a transient failure, for at most `patience`.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub backoff: Backoff,
    pub patience: Duration,
}

/// The `lease` query parameter of an upload made for a farm task.
pub fn lease_param(build: BuildId, index: u32, lease: &str) -> String {
    format!("{build}.{index}.{lease}")
}

/// What a build node sends when it asks for work.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    pub agent: String,
    pub platforms: Vec<String>,
    /// The workspace the task will be built in (absolute): the server resolves its job
    /// for it.
    pub workspace: std::path::PathBuf,
    pub slots: usize,
    /// The tasks it builds now.
    pub running: Vec<(BuildId, u32)>,
}

/// What one upload got (the server's answer).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Uploaded {
    #[serde(flatten)]
    pub file: FileOutcome,
    pub removed: Vec<String>,
    pub indexes: Vec<String>,
}

/// An HTTP agent that hands error statuses back as answers (callers read their JSON
/// reasons); `timeout` bounds a whole request (none for downloads of any size).
pub fn agent(timeout: Option<std::time::Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// `req` with `Authorization: Bearer <token>`, when there is a token.
pub fn authorized<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => req.header("Authorization", format!("Bearer {t}")),
        None => req,
    }
}

/// Whether a `--repo`-style value names a served repository rather than a directory.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Uploads, build records and their look-ups are asked again on transient failures.
    retry: Option<Retry>,
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client::with_timeout(url, token, None)
    }

    /// A client whose every request ends within `timeout` (answer included), if given.
    pub fn with_timeout(url: &str, token: Option<String>, timeout: Option<Duration>) -> Client {
        Client {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent: agent(timeout),
            retry: None,
        }
    }

    /// The same client, asking again as `retry` says when an upload, a build record or a
    /// look-up of one fails for a transient reason.
    pub fn retrying(self, retry: Retry) -> Client {
        Client {
            retry: Some(retry),
            ..self
        }
    }

    /// `call`, asked again on transient failures if this client retries.
    fn patiently<T>(
        &self,
        mut call: impl FnMut() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let Some(retry) = self.retry else {
            return call();
        };
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            match call() {
                Err(e) if e.is_transient() && start.elapsed() < retry.patience => {
                    std::thread::sleep(retry.backoff.delay(attempt, rand::random()));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        match self.maybe(url, r)? {
            Some(v) => Ok(v),
            // No content reads as JSON null (a unit or an empty option).
            None => {
                serde_json::from_value(serde_json::Value::Null).map_err(|e| ClientError::Answer {
                    url: url.to_string(),
                    why: e.to_string(),
                })
            }
        }
    }

    /// The answer, or `None` for 204 No Content.
    fn maybe<T: DeserializeOwned>(
        &self,
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<T>, ClientError> {
        let (status, text) = self.answer_text(url, r)?;
        if status == 204 {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ClientError::Answer {
                url: url.to_string(),
                why: e.to_string(),
            })
    }

    /// A successful answer's status and body; an error answer as its `{code, message,
    /// hint}`.
    fn answer_text(
        &self,
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ClientError> {
        let mut r = r.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            why: e.to_string(),
        })?;
        let status = r.status().as_u16();
        let text = r
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                why: e.to_string(),
            })?;
        if status >= 400 {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let field = |k: &str| value[k].as_str().map(str::to_string);
            return Err(ClientError::Http {
                url: url.to_string(),
                status,
                code: field("code").unwrap_or_default(),
                message: field("message").unwrap_or_else(|| text.trim().to_string()),
                hint: field("hint"),
            });
        }
        Ok((status, text))
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        authorized(req, self.token.as_deref())
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let r = self.auth(self.agent.get(&url)).call();
        self.answer(&url, r)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let r = self.auth(self.agent.post(&url)).send_json(body);
        self.answer(&url, r)
    }

    /// A POST answered with JSON, or with 204 No Content (`None`).
    fn post_maybe<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Option<T>, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let r = self.auth(self.agent.post(&url)).send_json(body);
        self.maybe(&url, r)
    }

    /// Asks for a task to build: `None` when there is nothing to do now.
    pub fn claim(&self, claim: &Claim) -> Result<Option<Assignment>, ClientError> {
        self.post_maybe("/agents/claim", claim)
    }

    fn task_path(build: BuildId, index: u32, what: &str) -> String {
        format!("/builds/{build}/tasks/{index}/{what}")
    }

    /// The task's build started.
    pub fn task_started(&self, build: BuildId, index: u32, lease: &str) -> Result<(), ClientError> {
        self.post_maybe::<serde_json::Value>(
            &Self::task_path(build, index, "started"),
            &serde_json::json!({"lease": lease}),
        )
        .map(|_| ())
    }

    /// Renews the task's lease; the answer says whether its build was cancelled.
    pub fn heartbeat(&self, build: BuildId, index: u32, lease: &str) -> Result<Beat, ClientError> {
        self.post(
            &Self::task_path(build, index, "heartbeat"),
            &serde_json::json!({"lease": lease}),
        )
    }

    /// Appends `text` to the task's log on the server, at `offset` (the bytes of text sent
    /// before): a part sent again at the same offset is taken once.
    pub fn log_part(
        &self,
        build: BuildId,
        index: u32,
        lease: &str,
        offset: u64,
        text: &str,
    ) -> Result<(), ClientError> {
        self.post_maybe::<serde_json::Value>(
            &Self::task_path(build, index, "log"),
            &serde_json::json!({"lease": lease, "offset": offset, "text": text}),
        )
        .map(|_| ())
    }

    /// Ends the task as `report` says; the answer is the task as it ended.
    pub fn report_task(
        &self,
        build: BuildId,
        index: u32,
        lease: &str,
        report: &TaskReport,
    ) -> Result<crate::farm::TaskView, ClientError> {
        let mut body = serde_json::to_value(report).map_err(|e| ClientError::Answer {
            url: self.base.clone(),
            why: e.to_string(),
        })?;
        body["lease"] = lease.into();
        self.post(&Self::task_path(build, index, "report"), &body)
    }

    /// Gives the task back unfinished.
    pub fn hand_back(&self, build: BuildId, index: u32, lease: &str) -> Result<(), ClientError> {
        self.post_maybe::<serde_json::Value>(
            &Self::task_path(build, index, "hand-back"),
            &serde_json::json!({"lease": lease}),
        )
        .map(|_| ())
    }

    pub fn repos(&self) -> Result<Vec<RepoSummary>, ClientError> {
        self.get("/repos")
    }

    pub fn repo(&self, name: &str) -> Result<RepoSummary, ClientError> {
        self.get(&format!("/repos/{}", segment(name)))
    }

    pub fn create_repo(&self, new: &NewRepo) -> Result<crate::repo::Repo, ClientError> {
        self.post("/repos", new)
    }

    pub fn delete_repo(&self, name: &str) -> Result<RepoSummary, ClientError> {
        let url = format!("{}/api/v1/repos/{}", self.base, segment(name));
        let r = self.auth(self.agent.delete(&url)).call();
        self.answer(&url, r)
    }

    pub fn generate_key(
        &self,
        repo: &str,
        algorithm: Algorithm,
        force: bool,
    ) -> Result<KeyInfo, ClientError> {
        let algorithm = match algorithm {
            Algorithm::Rsa4096 => "rsa4096",
            Algorithm::Ed25519 => "ed25519",
        };
        self.post(
            &format!("/repos/{}/key", segment(repo)),
            &serde_json::json!({"algorithm": algorithm, "force": force}),
        )
    }

    /// Installs an armored secret key as `repo`'s signing key.
    /// The public key that signs `repo`'s indexes, as served beside them (`key`: its
    /// file name in the repository).
    pub fn public_key(&self, repo: &str, key: &str) -> Result<String, ClientError> {
        let url = format!(
            "{}/repos/{}/{}",
            self.base,
            segment(repo),
            crate::paths::url_path(key)
        );
        let r = self.auth(self.agent.get(&url)).call();
        Ok(self.answer_text(&url, r)?.1)
    }

    pub fn import_key(
        &self,
        repo: &str,
        armored: &str,
        force: bool,
    ) -> Result<KeyInfo, ClientError> {
        self.post(
            &format!("/repos/{}/key", segment(repo)),
            &serde_json::json!({"armored": armored, "force": force}),
        )
    }

    /// Uploads `file` to `key` (its download-from path; a bare file name for a loose file,
    /// placed by the server); for a farm task, under its `lease` ([`lease_param`]).
    pub fn upload(
        &self,
        repo: &str,
        key: &str,
        file: &Path,
        opts: &crate::repo::PublishOptions,
        register: Option<&UploadRegistration>,
        lease: Option<&str>,
    ) -> Result<Uploaded, ClientError> {
        self.patiently(|| self.upload_once(repo, key, file, opts, register, lease))
    }

    fn upload_once(
        &self,
        repo: &str,
        key: &str,
        file: &Path,
        opts: &crate::repo::PublishOptions,
        register: Option<&UploadRegistration>,
        lease: Option<&str>,
    ) -> Result<Uploaded, ClientError> {
        use sha2::Digest;
        use std::io::Seek;
        let io = |e: std::io::Error| ClientError::File {
            path: file.display().to_string(),
            why: e.to_string(),
        };
        // Hashed as a stream, then sent from the file: a package of gigabytes never
        // sits in memory.
        let mut f = std::fs::File::open(file).map_err(io)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut f, &mut hasher).map_err(io)?;
        let sha = format!("{:x}", hasher.finalize());
        f.rewind().map_err(io)?;
        let url = format!(
            "{}/api/v1/repos/{}/files/{}",
            self.base,
            segment(repo),
            crate::paths::url_path(key)
        );
        let mut req = self
            .auth(self.agent.put(&url))
            .header("X-Checksum-Sha256", &sha);
        if opts.sign {
            req = req.query("sign", "true");
        }
        if opts.external {
            req = req.query("external", "true");
        }
        if let Some(p) = &opts.platform {
            req = req.query("platform", p);
        }
        if let Some(r) = register {
            req = req
                .query("configuration", &r.configuration)
                .query("lock", &r.lock_sha256)
                .query("name", &r.expect.0)
                .query("version", &r.expect.1)
                .query("release", &r.expect.2);
        }
        if let Some(l) = lease {
            req = req.query("lease", l);
        }
        let r = req.send(f);
        self.answer(&url, r)
    }

    /// The latest build recorded beside the tarball at `tarball`, if any.
    pub fn build(&self, repo: &str, tarball: &str) -> Result<Option<StoredBuild>, ClientError> {
        self.patiently(|| self.build_once(repo, tarball))
    }

    fn build_once(&self, repo: &str, tarball: &str) -> Result<Option<StoredBuild>, ClientError> {
        match self.get(&format!(
            "/repos/{}/builds/{}",
            segment(repo),
            crate::paths::url_path(tarball)
        )) {
            Ok(b) => Ok(Some(b)),
            Err(ClientError::Http { code, .. }) if code == "no_such_build" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records a build (its log and record) beside the tarball at `tarball`; for a farm
    /// task, under its `lease` ([`lease_param`]).
    pub fn record_build(
        &self,
        repo: &str,
        tarball: &str,
        record: &BuildRecord,
        log: &[u8],
        lease: Option<&str>,
    ) -> Result<(), ClientError> {
        self.patiently(|| self.record_build_once(repo, tarball, record, log, lease))
    }

    fn record_build_once(
        &self,
        repo: &str,
        tarball: &str,
        record: &BuildRecord,
        log: &[u8],
        lease: Option<&str>,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/api/v1/repos/{}/builds/{}",
            self.base,
            segment(repo),
            crate::paths::url_path(tarball)
        );
        let body = serde_json::json!({
            "record": record,
            "log": String::from_utf8_lossy(&crate::repo::builds::cut_log(log)),
        });
        let mut req = self.auth(self.agent.put(&url));
        if let Some(l) = lease {
            req = req.query("lease", l);
        }
        let r = req.send_json(&body);
        self.maybe::<serde_json::Value>(&url, r).map(|_| ())
    }

    pub fn lock(&self, lock: &crate::repo::release::NewLock) -> Result<LockOutcome, ClientError> {
        self.post("/locks", lock)
    }

    /// The lock of `configuration`, if it is locked.
    pub fn get_lock(&self, configuration: &str) -> Result<Option<LockRecord>, ClientError> {
        match self.get(&format!("/locks/{}", segment(configuration))) {
            Ok(l) => Ok(Some(l)),
            Err(ClientError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn tokens(&self) -> Result<Vec<crate::auth::Token>, ClientError> {
        self.get("/tokens")
    }

    pub fn create_token(
        &self,
        role: Role,
        name: &str,
        expires: Option<&str>,
    ) -> Result<NewToken, ClientError> {
        self.post(
            "/tokens",
            &serde_json::json!({"role": role.as_str(), "name": name, "expires": expires}),
        )
    }

    pub fn revoke_token(&self, id: &str) -> Result<crate::auth::Token, ClientError> {
        let url = format!("{}/api/v1/tokens/{}", self.base, segment(id));
        let r = self.auth(self.agent.delete(&url)).call();
        self.answer(&url, r)
    }
}

/// The build farm as its submitters and watchers see it.
impl Client {
    /// Submits a build; `body` is what `POST /api/v1/builds` takes.
    pub fn submit(&self, body: &serde_json::Value) -> Result<crate::farm::BuildView, ClientError> {
        self.post("/builds", body)
    }

    pub fn farm_builds(&self) -> Result<Vec<crate::farm::BuildView>, ClientError> {
        self.get("/builds")
    }

    pub fn farm_build(&self, id: u64) -> Result<crate::farm::BuildView, ClientError> {
        self.get(&format!("/builds/{id}"))
    }

    pub fn cancel_build(&self, id: u64) -> Result<crate::farm::BuildView, ClientError> {
        self.post(&format!("/builds/{id}/cancel"), &serde_json::json!({}))
    }

    /// What a task's agent has sent of its log so far.
    pub fn task_log(&self, id: u64, index: u32) -> Result<String, ClientError> {
        let url = format!("{}/api/v1/builds/{id}/tasks/{index}/log", self.base);
        let r = self.auth(self.agent.get(&url)).call();
        Ok(self.answer_text(&url, r)?.1)
    }
}
