//! Which object a path of a repository reads — the one question serving asks. Names live
//! in the store: an index directory's files are read from its current generation, a
//! package's download-from path from its record's object, its `.sha256` record from the
//! record itself. Anything else (build records and logs, the public key) is an object at
//! its path.

use super::{RepoError, Repositories};
use crate::blobs::{Meta, Object};

impl Repositories {
    /// The index directory (`yum/<platform>/repodata`, `<apt>/dists/<suite>`) that `path`
    /// lies in, and the rest of it.
    fn index_dir<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        if let Some(at) = path.find("/repodata/") {
            let end = at + "/repodata".len();
            return Some((&path[..end], &path[end + 1..]));
        }
        let apt = &self.layout.repository.apt;
        let rest = path.strip_prefix(apt.as_str())?.strip_prefix("/dists/")?;
        let (suite, file) = rest.split_once('/')?;
        let end = apt.len() + "/dists/".len() + suite.len();
        Some((&path[..end], file))
    }

    /// A URL the package at `path` of `repo` can be fetched from directly for `ttl`, where
    /// it is a package — at its download-from path, or at the index name dnf, zypper and
    /// apt fetch it by — and the blob backend gives such URLs (presigned). Index files are
    /// never redirected: a client must not mix generations.
    pub fn package_url(
        &self,
        repo: &str,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, RepoError> {
        // An index name is its object's key (asked of no store: it is what clients fetch
        // most); a name that holds nothing gets the object store's 404.
        let key = match super::publish::is_index_name(self, path) {
            true => Some(format!("{repo}/{path}")),
            false => self.package_object(repo, path)?,
        };
        Ok(key.and_then(|key| self.blobs.url(&key, ttl)))
    }

    /// The key of the object holding the package at `path` of `repo` (or a file of a
    /// Debian source package beside its `.dsc`), if there is one.
    fn package_object(&self, repo: &str, path: &str) -> Result<Option<String>, RepoError> {
        if let Some(p) = self.store.package(repo, path)? {
            return Ok(Some(format!(
                "{repo}/{}",
                super::publish::object_key(self, &p)
            )));
        }
        let file = path.rsplit('/').next().unwrap_or(path);
        let Some((source, _)) = file
            .split_once('_')
            .filter(|_| super::package::is_source_part(file))
        else {
            return Ok(None);
        };
        // The newest `.dsc` that names it (an `.orig.tar.*` may be named by several).
        let mut holders: Vec<_> = self
            .store
            .packages_named(repo, source)?
            .into_iter()
            .filter(|p| !p.parts.is_empty())
            .collect();
        holders.sort_by_key(|p| std::cmp::Reverse(p.published));
        Ok(holders.iter().find_map(|p| {
            super::publish::record_files(self, p)
                .into_iter()
                .find(|(_, at)| at == path)
                .map(|(object, _)| format!("{repo}/{object}"))
        }))
    }

    /// Opens what path `path` of repository `repo` reads (already checked as a key), or
    /// `None`. `range` as [`crate::blobs::Blobs::open`] takes it.
    pub fn open_path(
        &self,
        repo: &str,
        path: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<Object>, RepoError> {
        if let Some((dir, file)) = self.index_dir(path)
            && let Some(g) = self.store.generation(repo, dir)?
        {
            for key in super::generations::read_keys(&format!("{repo}/{dir}"), &g, file) {
                if let Some(o) = self.blobs.open(&key, range.clone())? {
                    return Ok(Some(o));
                }
            }
            return Ok(None);
        }
        // Most requests are for a package at its path, which backends that materialise
        // names (files) answer at once.
        if let Some(o) = self.blobs.open(&format!("{repo}/{path}"), range.clone())? {
            return Ok(Some(o));
        }
        if let Some(key) = self.package_object(repo, path)? {
            return Ok(self.blobs.open(&key, range)?);
        }
        if let Some(stem) = path.strip_suffix(".sha256")
            && let Some(p) = self.store.package(repo, stem)?
        {
            let line = crate::paths::checksum_line(&p.path, &p.sha256).into_bytes();
            let meta = Meta {
                len: line.len() as u64,
                modified: std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(p.published.max(0) as u64),
                etag: format!("\"{:.16}\"", p.sha256),
            };
            return Ok(Some(Object::in_memory(meta, line.into(), range)));
        }
        Ok(None)
    }
}

impl Repositories {
    /// Every path repository `repo` serves from stored bytes, sorted: its packages at
    /// their paths and at their index names (with the files a kept index generation still
    /// names), the `.sha256` records kept for tarballs, build records and logs, its public
    /// key, and the files of each index directory's current generation. The setup files a
    /// server writes for clients (`.repo`, `.sources`) are not stored, so not named.
    pub fn served_paths(&self, repo: &str) -> Result<Vec<String>, RepoError> {
        let record = self.repo(repo)?;
        let mut paths = Vec::new();
        for p in self.store.packages(repo)? {
            if p.kind == crate::store::FileKind::Tgz {
                paths.push(crate::paths::checksum_key(&p.path));
            }
            paths.extend(
                super::publish::record_files(self, &p)
                    .into_iter()
                    .map(|(_, path)| path),
            );
        }
        // Objects at their served paths; generations' objects (under `.<dir>.gen-*/`)
        // are served at their directory's path, below.
        let prefix = format!("{repo}/");
        paths.extend(
            self.blobs
                .list(repo)?
                .into_iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                .filter(|k| !k.split('/').any(|part| part.starts_with('.'))),
        );
        for dir in self
            .all_trees(&record)?
            .iter()
            .filter_map(|t| self.index_dir_of(t))
        {
            if let Some(g) = self.store.generation(repo, &dir)? {
                paths.retain(|p| !p.starts_with(&format!("{dir}/")));
                paths.extend(g.files.iter().map(|f| format!("{dir}/{f}")));
            }
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }
}
