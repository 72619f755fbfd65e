//! Collecting objects no name leads to: what a publish stored before it failed, index
//! generations older than the one kept for readers in flight, a package's object whose
//! record went while a crash stopped the removal. An object is collected only if the
//! store names it nowhere and it is older than a grace period, so a publish under way
//! (its objects stored, its records not yet) never loses one. Only repositories the store
//! knows are looked at: bytes of a repository it does not know may be all that is left of
//! one (a store put back from an older copy), and are never removed.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{RepoError, Repositories};
use crate::store::FileKind;

/// What a collection found and did.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Collected {
    /// Objects looked at.
    pub objects: usize,
    /// Objects no name leads to, removed (or, in a dry run, to be removed).
    pub removed: Vec<String>,
    pub bytes: u64,
    /// Unnamed, but younger than the grace period: left for the next collection.
    pub young: usize,
}

impl Repositories {
    /// Every object repository `repo` names: package objects and their paths (names a
    /// file backend materialises), checksum records, build records and logs, the public
    /// key, the current and the previous generation of each index directory, and the
    /// files that left a tree and are still due for removal.
    fn named(&self, repo: &str) -> Result<Named, RepoError> {
        let mut keys = BTreeSet::new();
        for p in self.store.packages(repo)? {
            for (object, path) in super::publish::record_files(self, &p) {
                keys.insert(object);
                keys.insert(path);
            }
            keys.insert(crate::paths::checksum_key(&p.path));
            if p.kind == FileKind::Tgz {
                keys.insert(crate::paths::record_path(&p.path));
                keys.insert(crate::paths::log_path(&p.path));
            }
        }
        keys.insert(self.layout.repository.key.clone());
        for tree in &self.all_trees(&self.repo(repo)?)? {
            keys.extend(
                self.store
                    .left_files(repo, tree)?
                    .into_iter()
                    .map(|f| f.key),
            );
        }
        Ok(Named { keys })
    }

    /// Removes the objects of every repository that no name leads to and that are older
    /// than `grace`; with `dry_run`, only says which.
    pub fn collect(&self, grace: Duration, dry_run: bool) -> Result<Collected, RepoError> {
        let mut out = Collected::default();
        let now = SystemTime::now();
        for record in self.store.repos()? {
            let repo = record.name;
            // Nothing changes in the repository while its objects are looked at.
            let _guard = self.lock_repo(&repo)?;
            let named = self.named(&repo)?;
            let mut removed_here = false;
            for key in self.blobs.list(&repo)? {
                out.objects += 1;
                let rel = &key[repo.len() + 1..];
                if named.keys.contains(rel)
                    || crate::paths::is_build_file(rel)
                    || self.kept_generation(&repo, rel)?
                {
                    continue;
                }
                let Some(meta) = self.blobs.stat(&key)? else {
                    continue;
                };
                if now.duration_since(meta.modified).unwrap_or_default() < grace {
                    out.young += 1;
                    continue;
                }
                if !dry_run {
                    self.blobs.remove(&key)?;
                    removed_here = true;
                }
                out.bytes += meta.len;
                out.removed.push(key);
            }
            if removed_here {
                self.removed_files(&repo)?;
            }
        }
        if !dry_run && !out.removed.is_empty() {
            self.blobs.flush()?;
        }
        Ok(out)
    }

    /// Whether `rel` is a file of an index generation the store keeps (the current one or
    /// the previous), or of a directory that has no record (written before generations
    /// were recorded: all of it is kept).
    fn kept_generation(&self, repo: &str, rel: &str) -> Result<bool, RepoError> {
        let mut parts = rel.split('/');
        let mut parent = Vec::new();
        for part in parts.by_ref() {
            if let Some(base) = part
                .strip_prefix('.')
                .and_then(|p| p.split_once(".gen-"))
                .map(|(base, _)| base)
            {
                parent.push(base);
                let dir = parent.join("/");
                return Ok(match self.store.generation(repo, &dir)? {
                    Some(g) => g.name == part || g.previous.as_deref() == Some(part),
                    None => true,
                });
            }
            parent.push(part);
        }
        Ok(false)
    }
}

struct Named {
    /// Keys relative to the repository.
    keys: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unnamed_objects_past_the_grace_period_go() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::in_memory(&dir.path().join("data"));
        let tarball = dir.path().join("tool-1.0-1.tar.gz");
        {
            let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
                std::fs::File::create(&tarball).unwrap(),
                flate2::Compression::fast(),
            ));
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "usr/share/tool/x", &b"abc"[..])
                .unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let opts = super::super::PublishOptions {
            platform: Some("el9_x86_64".into()),
            ..Default::default()
        };
        let report = repos
            .publish("r", &[tarball], &opts, &crate::progress::Quiet)
            .unwrap();
        let path = &report.files[0].path;
        // A failed publish's object, a stale generation, a failed build's record.
        repos
            .blobs
            .put_now("r/stray/orphan.rpm", b"orphan")
            .unwrap();
        repos
            .blobs
            .put_now(
                "r/yum/el9_x86_64/.repodata.gen-0000000000000000/repomd.xml",
                b"old",
            )
            .unwrap();
        let stem = path.strip_suffix(".tar.gz").unwrap();
        repos
            .blobs
            .put_now(&format!("r/{stem}-2.build.json"), b"{}")
            .unwrap();
        let before = repos.blobs.list("r").unwrap();
        // Young: nothing goes.
        let c = repos.collect(Duration::from_secs(3600), false).unwrap();
        assert!(c.removed.is_empty(), "{c:?}");
        assert_eq!(c.young, 2, "{c:?}");
        // Past the grace period: the two unnamed objects go, in a dry run only named.
        let c = repos.collect(Duration::ZERO, true).unwrap();
        let mut gone = c.removed.clone();
        gone.sort();
        assert_eq!(
            gone,
            [
                "r/stray/orphan.rpm",
                "r/yum/el9_x86_64/.repodata.gen-0000000000000000/repomd.xml"
            ]
        );
        assert_eq!(repos.blobs.list("r").unwrap(), before);
        repos.collect(Duration::ZERO, false).unwrap();
        let after: BTreeSet<String> = repos.blobs.list("r").unwrap().into_iter().collect();
        let want: BTreeSet<String> = before.into_iter().filter(|k| !gone.contains(k)).collect();
        assert_eq!(after, want);
        // What is served is all still there.
        assert!(repos.open_path("r", path, None).unwrap().is_some());
        assert!(
            repos
                .open_path("r", "yum/el9_x86_64/repodata/repomd.xml", None)
                .unwrap()
                .is_some()
        );
        // Nothing more to collect.
        assert!(
            repos
                .collect(Duration::ZERO, false)
                .unwrap()
                .removed
                .is_empty()
        );
    }
}
