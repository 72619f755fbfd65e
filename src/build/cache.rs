//! The repository a build publishes into, which is also its cache: either the data
//! directory opened here, or a running server reached through the API. Both give the
//! same four operations, so the build itself does not know which it talks to.

use std::path::Path;

use crate::client::{Client, ClientError};
use crate::repo::builds::{BuildRecord, BuiltFile, StoredBuild};
use crate::repo::{PublishOptions, RepoError, Repositories};
use crate::resolve::Packages;

/// Why the repository could not do what the build asked.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct CacheError {
    pub what: String,
    pub hint: Option<String>,
}

impl From<RepoError> for CacheError {
    fn from(e: RepoError) -> CacheError {
        CacheError {
            hint: e.hint(),
            what: e.to_string(),
        }
    }
}

impl From<ClientError> for CacheError {
    fn from(e: ClientError) -> CacheError {
        CacheError {
            hint: e.hint(),
            what: e.to_string(),
        }
    }
}

pub trait BuildRepo: Sync {
    /// How messages name it: `repository nightly in ./data`, or its URL.
    fn describe(&self) -> String;
    /// The latest build recorded beside `tarball`.
    fn build(&self, tarball: &str) -> Result<Option<StoredBuild>, CacheError>;
    /// Publishes the `pack --out` tree `out`; returns what was published.
    fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError>;
    /// Records a build (log first, then the record) beside `tarball`.
    fn record(&self, tarball: &str, record: &BuildRecord, log: &[u8]) -> Result<(), CacheError>;
    /// Where a published file can be read: a path on this machine, or a URL.
    fn location(&self, path: &str) -> String;
    /// The repository as a source of prebuilt dependencies, for the resolver's plan.
    fn packages(&self) -> Result<Box<dyn Packages>, CacheError>;
    /// The bearer token fetch needs for a private served repository.
    fn token(&self) -> Option<String>;
}

type Pick = Box<dyn Fn(&[crate::repo::RepoSummary]) -> Result<String, CacheError> + Send + Sync>;

/// A repository of the data directory, opened by this process. Whether a component is
/// cached is read from the repository's objects (the record beside the tarball, the
/// `.sha256` beside each artifact) as a `file://` client reads them, so a build that turns
/// out to be cached never opens the store; it is opened at the first publish.
pub struct LocalBuildRepo {
    backends: crate::backends::Backends,
    /// The data directory's objects, read without the store.
    blobs: std::sync::Arc<dyn crate::blobs::Blobs>,
    layout: crate::layout::Layout,
    pick: Pick,
    /// The repository: named by `--repo`, the only one there, or picked from the store.
    name: String,
    store: std::sync::Mutex<Option<std::sync::Arc<Repositories>>>,
}

impl LocalBuildRepo {
    /// The repository `asked` for, or the only one of `data`; else `pick` chooses from
    /// the store's list (which opens it now).
    pub fn open(
        backends: &crate::backends::Backends,
        layout: crate::layout::Layout,
        asked: Option<String>,
        pick: Pick,
    ) -> Result<LocalBuildRepo, CacheError> {
        // The repositories a file backend holds are its top directories; any other
        // backend is asked through the store.
        let dirs = match backends.blobs {
            crate::backends::BlobsUrl::File => backends.file_blobs().top_names(),
            _ => vec![],
        };
        let blobs = std::sync::Arc::from(backends.open_blobs()?);
        let mut repo = LocalBuildRepo {
            backends: backends.clone(),
            blobs,
            layout,
            pick,
            name: String::new(),
            store: std::sync::Mutex::new(None),
        };
        repo.name = match (asked, dirs.as_slice()) {
            (Some(name), _) => name,
            (None, [only]) => only.clone(),
            (None, _) => {
                let repos = repo.repositories()?;
                (repo.pick)(&repos.list()?)?
            }
        };
        if !dirs.contains(&repo.name) {
            // No such repository, most likely: the store says so, with its hint.
            repo.repositories()?;
        }
        Ok(repo)
    }

    /// The store, opened on first use; the repository is checked to be one to publish into.
    fn repositories(&self) -> Result<std::sync::Arc<Repositories>, CacheError> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = store.as_ref() {
            return Ok(r.clone());
        }
        let repos = Repositories::open_backends(&self.backends, self.layout.clone())?;
        if !self.name.is_empty() {
            let list = repos.list()?;
            if !list.iter().any(|r| r.record.name == self.name) {
                repos.repo(&self.name)?;
            }
            // Without --repo, the only repository must also be one builds may go to.
            (self.pick)(&list)?;
        }
        let repos = std::sync::Arc::new(repos);
        *store = Some(repos.clone());
        Ok(repos)
    }

    fn key(&self, path: &str) -> String {
        format!("{}/{path}", self.name)
    }
}

impl BuildRepo for LocalBuildRepo {
    fn describe(&self) -> String {
        format!(
            "repository {} ({})",
            self.name,
            self.blobs.describe(&self.name)
        )
    }

    fn build(&self, tarball: &str) -> Result<Option<StoredBuild>, CacheError> {
        let read = |path: &str| Ok(self.blobs.get(&self.key(path))?);
        if self.blobs.is_local() {
            return Ok(crate::repo::builds::read_build(tarball, read, |path| {
                crate::repo::builds::file_checksum(path, read)
            })?);
        }
        // An object store holds packages under their content names, not their paths: their
        // checksums are the store's records (a shared store, cheap to open).
        let repos = self.repositories()?;
        Ok(crate::repo::builds::read_build(tarball, read, |path| {
            Ok(repos.store.package(&self.name, path)?.map(|p| p.sha256))
        })?)
    }

    fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError> {
        let report = self.repositories()?.publish(
            &self.name,
            &[out.to_path_buf()],
            &PublishOptions::default(),
            &crate::progress::Quiet,
        )?;
        Ok(report
            .files
            .into_iter()
            .map(|f| BuiltFile {
                path: f.path,
                sha256: f.sha256,
            })
            .collect())
    }

    fn record(&self, tarball: &str, record: &BuildRecord, log: &[u8]) -> Result<(), CacheError> {
        Ok(self
            .repositories()?
            .record_build(&self.name, tarball, record, log)?)
    }

    fn location(&self, path: &str) -> String {
        let key = self.key(path);
        self.blobs
            .url(&key, std::time::Duration::from_secs(3600))
            .unwrap_or_else(|| self.blobs.describe(&key))
    }

    fn packages(&self) -> Result<Box<dyn Packages>, CacheError> {
        if !self.blobs.is_local() {
            return Ok(Box::new(crate::resolve::sources::ObjectRepo {
                repos: self.repositories()?,
                repo: self.name.clone(),
            }));
        }
        Ok(Box::new(crate::resolve::sources::BlobRepo {
            blobs: self.blobs.clone(),
            repo: self.name.clone(),
        }))
    }

    fn token(&self) -> Option<String> {
        None
    }
}

/// A repository of a running server.
pub struct RemoteBuildRepo<'a> {
    pub client: &'a Client,
    /// The server's base URL.
    pub url: String,
    pub name: String,
    pub token: Option<String>,
    pub layout: &'a crate::layout::Layout,
    /// A build farm task's lease ([`crate::client::lease_param`]): what it publishes is
    /// taken only while the lease is the task's.
    pub lease: Option<String>,
}

impl RemoteBuildRepo<'_> {
    /// Uploads `files` (source, download-from path) at once; the answers in their order.
    fn upload_together(
        &self,
        files: &[&(std::path::PathBuf, String)],
    ) -> Vec<Result<crate::client::Uploaded, ClientError>> {
        std::thread::scope(|s| {
            let running: Vec<_> = files
                .iter()
                .map(|(source, key)| {
                    s.spawn(move || {
                        self.client.upload(
                            &self.name,
                            key,
                            source,
                            &Default::default(),
                            None,
                            self.lease.as_deref(),
                        )
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

impl BuildRepo for RemoteBuildRepo<'_> {
    fn describe(&self) -> String {
        format!("{}/repos/{}", self.url, self.name)
    }

    fn build(&self, tarball: &str) -> Result<Option<StoredBuild>, CacheError> {
        Ok(self.client.build(&self.name, tarball)?)
    }

    fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError> {
        let files = crate::repo::publish::input_files(&[out.to_path_buf()], self.layout)?;
        let mut keyed = Vec::with_capacity(files.len());
        for (source, key) in files {
            let key = key.ok_or_else(|| CacheError {
                what: format!("{}: not at a download-from path", source.display()),
                hint: Some("the packaging target writes into ${artifactsDir}".into()),
            })?;
            keyed.push((source, key));
        }
        // All at once: the server publishes uploads that arrive together in one batch
        // (one index rebuild for the component's tarball and package). The parts of a
        // Debian source package go first: the server holds them for their `.dsc`.
        let (parts, rest): (Vec<_>, Vec<_>) = keyed
            .iter()
            .partition(|(_, key)| crate::service::is_held_first(key));
        let mut uploaded = self.upload_together(&parts);
        if uploaded.iter().all(Result::is_ok) {
            uploaded.extend(self.upload_together(&rest));
        }
        let mut published = Vec::with_capacity(uploaded.len());
        for up in uploaded {
            let up = up?;
            if up.file.action == crate::repo::publish::Action::Held {
                continue;
            }
            published.push(BuiltFile {
                path: up.file.path,
                sha256: up.file.sha256,
            });
        }
        Ok(published)
    }

    fn record(&self, tarball: &str, record: &BuildRecord, log: &[u8]) -> Result<(), CacheError> {
        Ok(self
            .client
            .record_build(&self.name, tarball, record, log, self.lease.as_deref())?)
    }

    fn location(&self, path: &str) -> String {
        format!(
            "{}/repos/{}/{}",
            self.url,
            self.name,
            crate::paths::url_path(path)
        )
    }

    fn packages(&self) -> Result<Box<dyn Packages>, CacheError> {
        Ok(Box::new(crate::resolve::sources::RemoteRepo::new(
            &format!("{}/repos/{}", self.url, self.name),
            self.token.as_deref(),
        )))
    }

    fn token(&self) -> Option<String> {
        self.token.clone()
    }
}
