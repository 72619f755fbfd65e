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

/// A repository of the data directory, opened by this process.
pub struct LocalBuildRepo<'a> {
    pub repos: &'a Repositories,
    pub name: String,
    /// `<data>/repos/<name>`.
    pub dir: std::path::PathBuf,
}

impl BuildRepo for LocalBuildRepo<'_> {
    fn describe(&self) -> String {
        format!("repository {} ({})", self.name, self.dir.display())
    }

    fn build(&self, tarball: &str) -> Result<Option<StoredBuild>, CacheError> {
        Ok(self.repos.build(&self.name, tarball)?)
    }

    fn publish(&self, out: &Path) -> Result<Vec<BuiltFile>, CacheError> {
        let report = self.repos.publish(
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
        Ok(self.repos.record_build(&self.name, tarball, record, log)?)
    }

    fn location(&self, path: &str) -> String {
        self.dir.join(path).display().to_string()
    }

    fn packages(&self) -> Result<Box<dyn Packages>, CacheError> {
        Ok(Box::new(crate::resolve::sources::LocalRepo {
            dir: self.dir.clone(),
            url: None,
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
        let mut published = Vec::new();
        for (source, key) in files {
            let key = key.ok_or_else(|| CacheError {
                what: format!("{}: not at a download-from path", source.display()),
                hint: Some("the packaging target writes into ${artifactsDir}".into()),
            })?;
            let up = self
                .client
                .upload(&self.name, &key, &source, false, None, None)?;
            published.push(BuiltFile {
                path: up.file.path,
                sha256: up.file.sha256,
            });
        }
        Ok(published)
    }

    fn record(&self, tarball: &str, record: &BuildRecord, log: &[u8]) -> Result<(), CacheError> {
        Ok(self.client.record_build(&self.name, tarball, record, log)?)
    }

    fn location(&self, path: &str) -> String {
        format!(
            "{}/repos/{}/{}",
            self.url,
            self.name,
            crate::server::url_path(path)
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
