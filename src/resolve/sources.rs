//! Repositories a plan looks in: a repository directory on this machine (`file://` or a
//! path), or one served by `packyard serve` (`http://HOST/repos/NAME`).

use std::path::PathBuf;

use super::Packages;

/// A repository directory: `<dir>/<download-from path>` (a `file://` repository).
pub struct LocalRepo {
    pub dir: PathBuf,
}

impl Packages for LocalRepo {
    fn find(&self, path: &str) -> Option<String> {
        if crate::blobs::check_key(path).is_err() {
            return None;
        }
        let full = self.dir.join(path);
        full.is_file().then(|| full.display().to_string())
    }

    fn checksum(&self, path: &str) -> Option<String> {
        let record = self.dir.join(crate::paths::checksum_key(path));
        crate::paths::parse_checksum(&std::fs::read_to_string(record).ok()?)
    }

    fn name(&self) -> String {
        self.dir.display().to_string()
    }
}

/// A repository of this machine's data directory on the file backend, read straight from
/// its files as a build that publishes into it does (without opening the store, which a
/// server may hold).
pub struct BlobRepo {
    pub blobs: std::sync::Arc<dyn crate::blobs::Blobs>,
    pub repo: String,
}

impl Packages for BlobRepo {
    fn find(&self, path: &str) -> Option<String> {
        crate::blobs::check_key(path).ok()?;
        let key = format!("{}/{path}", self.repo);
        self.blobs.stat(&key).ok()??;
        Some(
            self.blobs
                .url(&key, std::time::Duration::from_secs(3600))
                .unwrap_or_else(|| self.blobs.describe(&key)),
        )
    }

    fn checksum(&self, path: &str) -> Option<String> {
        let key = format!("{}/{}", self.repo, crate::paths::checksum_key(path));
        crate::paths::parse_checksum(&String::from_utf8_lossy(&self.blobs.get(&key).ok()??))
    }

    fn name(&self) -> String {
        self.blobs.describe(&self.repo)
    }
}

/// A repository as the store holds it, named by the URL it is served at: the server's
/// own view of its repositories (it asks its store, not a directory).
pub struct StoredRepo<'a> {
    pub repos: &'a crate::repo::Repositories,
    pub repo: String,
    pub url: String,
}

impl Packages for StoredRepo<'_> {
    fn find(&self, path: &str) -> Option<String> {
        crate::blobs::check_key(path).ok()?;
        self.repos.store.package(&self.repo, path).ok()??;
        Some(format!("{}/{}", self.url, crate::paths::url_path(path)))
    }

    fn checksum(&self, path: &str) -> Option<String> {
        Some(self.repos.store.package(&self.repo, path).ok()??.sha256)
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

/// A repository of this machine's data directory whose bytes are in an object store:
/// found by the store's records, fetched from presigned URLs of its objects (a command
/// run beside servers on a shared store reads it as they do, with no server between).
pub struct ObjectRepo {
    pub repos: std::sync::Arc<crate::repo::Repositories>,
    pub repo: String,
}

impl Packages for ObjectRepo {
    fn find(&self, path: &str) -> Option<String> {
        crate::blobs::check_key(path).ok()?;
        self.repos
            .package_url(&self.repo, path, std::time::Duration::from_secs(3600))
            .ok()?
    }

    fn checksum(&self, path: &str) -> Option<String> {
        Some(self.repos.store.package(&self.repo, path).ok()??.sha256)
    }

    fn name(&self) -> String {
        self.repos.blobs.describe(&self.repo)
    }
}

/// A served repository: `HEAD <url>/<download-from path>`.
pub struct RemoteRepo {
    pub url: String,
    agent: ureq::Agent,
    /// For private repositories.
    token: Option<String>,
}

impl RemoteRepo {
    pub fn new(url: &str, token: Option<&str>) -> RemoteRepo {
        RemoteRepo {
            url: url.trim_end_matches('/').to_string(),
            agent: crate::client::agent(Some(std::time::Duration::from_secs(30))),
            token: token.map(str::to_string),
        }
    }
}

impl Packages for RemoteRepo {
    fn find(&self, path: &str) -> Option<String> {
        let url = format!("{}/{}", self.url, crate::paths::url_path(path));
        let req = self.agent.head(&url);
        let r = crate::client::authorized(req, self.token.as_deref())
            .call()
            .ok()?;
        (r.status().as_u16() == 200).then_some(url)
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

/// `--repo` values: URLs are served repositories, anything else a directory (which must
/// exist: a mistyped path would otherwise quietly mean "build everything from source").
pub fn open(spec: &str, token: Option<&str>) -> Result<Box<dyn Packages>, String> {
    if crate::client::is_url(spec) {
        Ok(Box::new(RemoteRepo::new(spec, token)))
    } else {
        let dir = PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec));
        if !dir.is_dir() {
            return Err(format!(
                "repository directory {} does not exist",
                dir.display()
            ));
        }
        Ok(Box::new(LocalRepo { dir }))
    }
}
