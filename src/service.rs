//! What the repository commands ask — repositories, keys, publish, locks, registrations,
//! tokens — behind one trait, [`Service`], answered by the data directory itself
//! ([`Repositories`]) or by a running server ([`Remote`], through `client`). The command
//! line holds a `dyn Service` and formats what it answers: one code path per command,
//! wherever the work is done.

use std::path::{Path, PathBuf};

use crate::auth::{self, AuthError, NewToken, Token};
use crate::client::{Client, ClientError};
use crate::config::Tree;
use crate::layout::Layout;
use crate::progress::Progress;
use crate::repo::keys::{Algorithm, KeyInfo};
use crate::repo::publish::UploadRegistration;
use crate::repo::release::{LockOutcome, Registering, new_lock, not_locked, registration};
use crate::repo::{
    NewRepo, PublishOptions, PublishReport, Repo, RepoError, RepoSummary, Repositories,
};
use crate::store::{LockRecord, Role};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A file the server did not take.
    #[error("{}: {source}", path.display())]
    Upload {
        path: PathBuf,
        source: Box<ClientError>,
    },
}

impl ServiceError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ServiceError::Repo(e) => e.hint(),
            ServiceError::Client(e) => e.hint(),
            ServiceError::Auth(e) => Some(e.hint()),
            ServiceError::Upload { source, .. } => source.hint(),
        }
    }
}

type Result<T> = std::result::Result<T, ServiceError>;

pub trait Service {
    fn create_repo(&self, new: &NewRepo) -> Result<Repo>;
    fn repos(&self) -> Result<Vec<RepoSummary>>;
    fn repo(&self, name: &str) -> Result<RepoSummary>;
    fn delete_repo(&self, name: &str) -> Result<RepoSummary>;
    fn generate_key(&self, repo: &str, algorithm: Algorithm, force: bool) -> Result<KeyInfo>;
    fn import_key(&self, repo: &str, armored: &str, force: bool) -> Result<KeyInfo>;
    /// The armored public key that signs `repo`'s indexes.
    fn public_key(&self, repo: &str) -> Result<String>;
    /// Publishes `paths` (files, or `pack --out` trees) into `repo`.
    fn publish(
        &self,
        repo: &str,
        paths: &[PathBuf],
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport>;
    fn lock(&self, tree: &Tree, configuration: &str) -> Result<LockOutcome>;
    /// Fails when `configuration` is locked and `tree` no longer matches the lock;
    /// returns the lock, if there is one.
    fn check_lock(&self, tree: &Tree, configuration: &str) -> Result<Option<LockRecord>>;
    fn register(
        &self,
        what: Registering,
        repo: &str,
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport>;
    fn create_token(&self, role: Role, name: &str, expires: Option<&str>) -> Result<NewToken>;
    fn tokens(&self) -> Result<Vec<Token>>;
    fn revoke_token(&self, id: &str) -> Result<Token>;
    /// Where a user finds `path` of repository `repo` (a URL, or a place on this machine).
    fn location(&self, repo: &str, path: &str) -> String;
}

impl Service for Repositories {
    fn create_repo(&self, new: &NewRepo) -> Result<Repo> {
        Ok(Repo::from(&self.create(new)?))
    }
    fn repos(&self) -> Result<Vec<RepoSummary>> {
        Ok(self.list()?)
    }
    fn repo(&self, name: &str) -> Result<RepoSummary> {
        Ok(self.show(name)?)
    }
    fn delete_repo(&self, name: &str) -> Result<RepoSummary> {
        Ok(self.delete(name)?)
    }
    fn generate_key(&self, repo: &str, algorithm: Algorithm, force: bool) -> Result<KeyInfo> {
        Ok(Repositories::generate_key(self, repo, algorithm, force)?)
    }
    fn import_key(&self, repo: &str, armored: &str, force: bool) -> Result<KeyInfo> {
        Ok(Repositories::import_key(self, repo, armored, force)?)
    }
    fn public_key(&self, repo: &str) -> Result<String> {
        Ok(Repositories::public_key(self, repo)?)
    }
    fn publish(
        &self,
        repo: &str,
        paths: &[PathBuf],
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport> {
        Ok(Repositories::publish(self, repo, paths, opts, progress)?)
    }
    fn lock(&self, tree: &Tree, configuration: &str) -> Result<LockOutcome> {
        Ok(Repositories::lock(self, tree, configuration)?)
    }
    fn check_lock(&self, tree: &Tree, configuration: &str) -> Result<Option<LockRecord>> {
        Ok(Repositories::check_lock(self, tree, configuration)?)
    }
    fn register(
        &self,
        what: Registering,
        repo: &str,
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport> {
        Ok(Repositories::register(self, what, repo, opts, progress)?)
    }
    fn create_token(&self, role: Role, name: &str, expires: Option<&str>) -> Result<NewToken> {
        let now = chrono::Utc::now().timestamp();
        let expires = expires.map(|e| auth::expiry(e, now)).transpose()?;
        Ok(auth::create(self.store.as_ref(), role, name, expires)?)
    }
    fn tokens(&self) -> Result<Vec<Token>> {
        Ok(auth::list(self.store.as_ref())?)
    }
    fn revoke_token(&self, id: &str) -> Result<Token> {
        Ok(auth::revoke(self.store.as_ref(), id)?)
    }
    fn location(&self, repo: &str, path: &str) -> String {
        let key = match path {
            "" => repo.to_string(),
            p => format!("{repo}/{p}"),
        };
        self.blobs.describe(&key)
    }
}

/// A running server, through its API. The tree-side work (lock hashes, which files a
/// registration takes) is done here, before anything is sent; the server checks again.
pub struct Remote<'a> {
    pub client: Client,
    /// The server's base URL.
    pub url: String,
    pub layout: &'a Layout,
}

impl Service for Remote<'_> {
    fn create_repo(&self, new: &NewRepo) -> Result<Repo> {
        Ok(self.client.create_repo(new)?)
    }
    fn repos(&self) -> Result<Vec<RepoSummary>> {
        Ok(self.client.repos()?)
    }
    fn repo(&self, name: &str) -> Result<RepoSummary> {
        Ok(self.client.repo(name)?)
    }
    fn delete_repo(&self, name: &str) -> Result<RepoSummary> {
        Ok(self.client.delete_repo(name)?)
    }
    fn generate_key(&self, repo: &str, algorithm: Algorithm, force: bool) -> Result<KeyInfo> {
        Ok(self.client.generate_key(repo, algorithm, force)?)
    }
    fn import_key(&self, repo: &str, armored: &str, force: bool) -> Result<KeyInfo> {
        Ok(self.client.import_key(repo, armored, force)?)
    }
    fn public_key(&self, repo: &str) -> Result<String> {
        Ok(self.client.public_key(repo, &self.layout.repository.key)?)
    }
    fn publish(
        &self,
        repo: &str,
        paths: &[PathBuf],
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport> {
        let files = crate::repo::publish::input_files(paths, self.layout)?
            .into_iter()
            .map(|(source, key)| {
                // A loose file goes up under its bare name; the server places it.
                let key = key.unwrap_or_else(|| {
                    source
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                (source, key, None)
            })
            .collect();
        upload_all(&self.client, repo, files, opts, progress)
    }
    fn lock(&self, tree: &Tree, configuration: &str) -> Result<LockOutcome> {
        let lock = new_lock(tree, configuration)?;
        Ok(self.client.lock(&lock)?)
    }
    fn check_lock(&self, tree: &Tree, configuration: &str) -> Result<Option<LockRecord>> {
        let Some(existing) = self.client.get_lock(configuration)? else {
            return Ok(None);
        };
        let now = new_lock(tree, configuration)?;
        if crate::lock::hash(&now.canonical) != existing.sha256 {
            return Err(crate::repo::release::changed(&existing, &now.canonical).into());
        }
        Ok(Some(existing))
    }
    fn register(
        &self,
        what: Registering,
        repo: &str,
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport> {
        let Registering {
            tree,
            configuration,
            options,
            inputs,
        } = what;
        // Checked here first: the lock and the files; the server checks the lock's hash
        // again and each header against what it must say.
        let lock = self
            .check_lock(tree, configuration)?
            .ok_or_else(|| not_locked(tree, configuration))?;
        let files = registration(tree, self.layout, configuration, options, inputs)?
            .into_iter()
            .map(|r| {
                let register = UploadRegistration {
                    configuration: configuration.to_string(),
                    lock_sha256: lock.sha256.clone(),
                    expect: r.expect,
                };
                (r.source, r.key, Some(register))
            })
            .collect();
        upload_all(&self.client, repo, files, opts, progress)
    }
    fn create_token(&self, role: Role, name: &str, expires: Option<&str>) -> Result<NewToken> {
        Ok(self.client.create_token(role, name, expires)?)
    }
    fn tokens(&self) -> Result<Vec<Token>> {
        Ok(self.client.tokens()?)
    }
    fn revoke_token(&self, id: &str) -> Result<Token> {
        Ok(self.client.revoke_token(id)?)
    }
    fn location(&self, repo: &str, path: &str) -> String {
        format!(
            "{}/repos/{}/{}",
            self.url,
            crate::paths::url_path(repo),
            crate::paths::url_path(path)
        )
    }
}

/// Whether an upload must come before the others: a part of a Debian source package,
/// held by the server until its `.dsc` comes.
pub fn is_held_first(key: &str) -> bool {
    crate::repo::package::is_source_part(key.rsplit('/').next().unwrap_or(key))
}

/// Uploads `files` (source, download-from path, registration) a few at a time — the
/// server publishes concurrent uploads together — and sums up the answers.
fn upload_all(
    client: &Client,
    repo: &str,
    files: Vec<(PathBuf, String, Option<UploadRegistration>)>,
    opts: &PublishOptions,
    bar: &dyn Progress,
) -> Result<PublishReport> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    bar.start(
        "uploading",
        files.iter().filter_map(|(p, ..)| size(p)).sum(),
    );
    // The parts of Debian source packages first: the server holds them until the `.dsc`
    // that names them comes.
    let mut files = files;
    files.sort_by_key(|(_, key, _)| !is_held_first(key));
    let parts = files
        .iter()
        .filter(|(_, key, _)| is_held_first(key))
        .count();
    let results = std::sync::Mutex::new(Vec::new());
    for range in [0..parts, parts..files.len()] {
        let next = std::sync::atomic::AtomicUsize::new(range.start);
        let end = std::sync::atomic::AtomicUsize::new(range.end);
        std::thread::scope(|s| {
            for _ in 0..4.min(range.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= end.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let (source, key, register) = &files[i];
                        let r = client.upload(repo, key, source, opts, register.as_ref(), None);
                        bar.advance(size(source).unwrap_or(0));
                        let failed = r.is_err();
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, r));
                        if failed {
                            // Stop handing out more files after the first failure.
                            end.store(0, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let failed = results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(_, r)| r.is_err());
        if failed {
            break;
        }
    }
    bar.finish();
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut report = PublishReport {
        repo: repo.to_string(),
        files: vec![],
        removed: vec![],
        indexes: vec![],
    };
    for (i, r) in results {
        let up = r.map_err(|source| ServiceError::Upload {
            path: files[i].0.clone(),
            source: Box::new(source),
        })?;
        // A held part is published with its `.dsc`, which the report names.
        if up.file.action != crate::repo::publish::Action::Held {
            report.files.push(up.file);
        }
        for p in up.removed {
            if !report.removed.contains(&p) {
                report.removed.push(p);
            }
        }
        for x in up.indexes {
            if !report.indexes.contains(&x) {
                report.indexes.push(x);
            }
        }
    }
    report.indexes.sort();
    Ok(report)
}
