//! Moving a data directory's bytes to another blob backend (`packyard migrate
//! --to-blobs URL`): every object a repository names — packages, checksum records of
//! tarballs, build records and logs, the public key, each index directory's current
//! generation — copied, each one read back and checked against the sha256 of the source,
//! then the names materialised where the target needs them (hard links, the generation
//! shown). The source is only read. A second run copies only what the first did not
//! finish (an object already there with the right bytes is checked, not copied), so an
//! interrupted migration is finished by running it again.
//!
//! A store migration copies records the same way: what the target lacks, in the batches
//! the source's records were copied in (a repository with all its records, a farm build
//! with its tasks, tokens with locks), so a run again after the target was put to use
//! never rolls it back — a repository, build or token set the target has is left as it
//! is, whatever the source says.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{RepoError, Repositories};
use crate::blobs::{Blobs, Body};
use crate::store::{Change, FileKind};

/// What a migration did.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Migrated {
    /// Objects the repositories name.
    pub objects: usize,
    /// Copied now (the others were there already, with the right bytes).
    pub copied: usize,
    pub bytes: u64,
}

/// What a store migration copied.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StoreMigrated {
    /// Records copied now.
    pub records: usize,
    pub packages: usize,
    /// Repositories and farm builds the target had already (from an earlier run, or put
    /// there since): left as they are.
    #[serde(default)]
    pub kept: usize,
}

/// Repositories' armored secret keys as a store migration puts them into its target.
pub struct StoreKeys(std::collections::HashMap<String, String>);

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

impl Repositories {
    /// The current generation of index directory `dir` of `repo`: the store's record, or
    /// for a data directory written before generations were recorded, what the blobs show.
    fn current_generation(
        &self,
        repo: &str,
        dir: &str,
    ) -> Result<Option<crate::store::Generation>, RepoError> {
        Ok(match self.store.generation(repo, dir)? {
            Some(g) => Some(g),
            None => super::generations::shown(&*self.blobs, &format!("{repo}/{dir}"))?,
        })
    }

    /// Copies every named object of every repository into `to` (see the module doc).
    /// `names` is the store that is to name them: the target store of a migration that
    /// moves both, else this one. A generation it does not name yet (data written before
    /// generations were recorded) is recorded there; one it names otherwise (a target put
    /// to use since an earlier run) is not shown in `to`, so nothing goes back in time.
    pub fn migrate_blobs(
        &self,
        to: &dyn Blobs,
        names: &dyn crate::store::Store,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Migrated, RepoError> {
        let mut out = Migrated::default();
        let records = self.store.repos()?;
        progress.start("migrating", records.len() as u64);
        for record in records {
            let repo = record.name.clone();
            // Nothing changes in the repository while it is copied.
            let _guard = self.lock_repo(&repo)?;
            let packages = self.store.packages(&repo)?;
            let mut objects: Vec<String> = Vec::new();
            for p in &packages {
                objects.extend(
                    super::publish::record_files(self, p)
                        .into_iter()
                        .map(|(object, _)| object),
                );
                if p.kind == FileKind::Tgz {
                    objects.push(crate::paths::checksum_key(&p.path));
                }
            }
            objects.extend(
                self.blobs
                    .list(&repo)?
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&format!("{repo}/")).map(str::to_string))
                    .filter(|k| crate::paths::is_build_file(k)),
            );
            objects.push(self.layout.repository.key.clone());
            // Each index directory's current generation.
            let mut shown = Vec::new();
            for dir in self
                .all_trees(&record)?
                .iter()
                .filter_map(|t| self.index_dir_of(t))
            {
                let key = format!("{repo}/{dir}");
                let Some(g) = self.current_generation(&repo, &dir)? else {
                    continue;
                };
                for f in &g.files {
                    // A carried file is in this generation or, on a backend without
                    // direct readers, the one before: whichever holds it is copied.
                    for full in super::generations::read_keys(&key, &g, f) {
                        objects.push(full[repo.len() + 1..].to_string());
                    }
                }
                shown.push((dir, g));
            }
            objects.sort();
            objects.dedup();
            for rel in &objects {
                let key = format!("{repo}/{rel}");
                let Some(bytes) = self.blobs.get(&key)? else {
                    continue;
                };
                out.objects += 1;
                let want = sha(&bytes);
                if to.get(&key)?.is_some_and(|b| sha(&b) == want) {
                    continue;
                }
                to.put(&key, Body::Bytes(&bytes), Some(&want))?;
                // Read back: what the target holds is what the source held.
                let back = to.get(&key)?.map(|b| sha(&b));
                if back.as_deref() != Some(want.as_str()) {
                    return Err(RepoError::Internal(format!(
                        "{}: copied, but it reads back as sha256 {} where the source has {want}",
                        to.describe(&key),
                        back.unwrap_or_else(|| "nothing".into())
                    )));
                }
                out.copied += 1;
                out.bytes += bytes.len() as u64;
            }
            // The names, where the target materialises them.
            for p in &packages {
                for (object, path) in super::publish::record_files(self, p) {
                    if object != path {
                        to.link(&format!("{repo}/{object}"), &format!("{repo}/{path}"))?;
                    }
                }
            }
            // A target read directly (files) finds a carried file in the generation
            // itself, as a publish there leaves it.
            if to.has_direct_readers() {
                for (dir, g) in &shown {
                    let key = format!("{repo}/{dir}");
                    for f in &g.carried {
                        let keys = super::generations::read_keys(&key, g, f);
                        if let [own, before] = keys.as_slice()
                            && !to.exists(own)?
                            && to.exists(before)?
                        {
                            to.copy(before, own)?;
                        }
                    }
                }
            }
            to.flush()?;
            for (dir, g) in shown {
                match names.generation(&repo, &dir)? {
                    Some(named) if named.name != g.name => continue,
                    Some(_) => {}
                    None => names.apply(vec![Change::PutGeneration {
                        repo: repo.clone(),
                        dir: dir.clone(),
                        generation: g.clone(),
                    }])?,
                }
                to.show(&format!("{repo}/{dir}"), &g.name)?;
            }
            progress.advance(1);
        }
        progress.finish();
        Ok(out)
    }

    /// The secret keys a store migration into `to` puts there, each as `to` must keep it
    /// ([`Repositories::key_for`]: into a store others read, protected by the configured
    /// passphrase). Decided before anything is copied — bytes included — so a key that
    /// cannot go stops the migration before it begins.
    pub fn keys_for_store(&self, to: &dyn crate::store::Store) -> Result<StoreKeys, RepoError> {
        let mut keys = std::collections::HashMap::new();
        for record in self.store.repos()? {
            if let Some(armored) = self.store.secret_key(&record.name)?
                && let Some(kept) = self.key_for(to, &record.name, &armored)?
            {
                keys.insert(record.name, kept);
            }
        }
        Ok(StoreKeys(keys))
    }

    /// Copies every record of this data directory's store into `to` that `to` lacks (an
    /// empty store, or one an earlier run filled in part or in whole): repositories with
    /// their packages and index entries, cached index segments, generations, files that
    /// left and secret keys (`keys`, from [`Repositories::keys_for_store`]); tokens, locks
    /// and delete marks; the build farm's builds and tasks. Each repository's records go
    /// in one batch, each build's too, and tokens with locks and marks: what the target
    /// has of one of these it has whole, and keeps (see the module doc). The source is
    /// only read.
    pub fn migrate_store(
        &self,
        to: &dyn crate::store::Store,
        keys: &StoreKeys,
    ) -> Result<StoreMigrated, RepoError> {
        let mut out = StoreMigrated::default();
        // Tokens, locks and delete marks: one batch, so a target holding any token or
        // lock was given them all (or had its own): a token revoked there stays revoked.
        if to.tokens()?.is_empty() && to.locks()?.is_empty() {
            let mut first = Vec::new();
            for t in self.store.tokens()? {
                first.push(Change::PutToken(t));
            }
            for l in self.store.locks()? {
                first.push(Change::PutLock(l));
            }
            for repo in self.store.deleting()? {
                first.push(Change::Deleting { repo, marked: true });
            }
            out.records += first.len();
            to.apply(first)?;
        }
        for record in self.store.repos()? {
            let repo = record.name.clone();
            if to.repo(&repo)?.is_some() {
                out.kept += 1;
                continue;
            }
            let _guard = self.lock_repo(&repo)?;
            let mut batch = vec![Change::PutRepo(record.clone())];
            let mut rows: std::collections::HashMap<
                String,
                std::sync::Arc<Vec<crate::store::IndexRow>>,
            > = Default::default();
            for mut p in self.store.packages(&repo)? {
                if let Some(l) = p.listed.clone() {
                    if !rows.contains_key(&l.tree) {
                        rows.insert(l.tree.clone(), self.store.index_entries(&repo, &l.tree)?);
                    }
                    let key = format!("{}\0{}", l.order, p.path);
                    if let Some(row) = rows[&l.tree].iter().find(|r| r.key == key) {
                        p.index = row.entry.clone();
                    }
                }
                batch.push(Change::PutPackage {
                    repo: repo.clone(),
                    record: p,
                });
                out.packages += 1;
            }
            for tree in &self.all_trees(&record)? {
                for (key, bytes) in self.store.segments(&repo, tree)?.iter() {
                    batch.push(Change::PutSegment {
                        repo: repo.clone(),
                        tree: tree.clone(),
                        key: key.clone(),
                        bytes: bytes.clone(),
                    });
                }
                let files = self.store.left_files(&repo, tree)?;
                if !files.is_empty() {
                    batch.push(Change::PutLeft {
                        repo: repo.clone(),
                        tree: tree.clone(),
                        files,
                    });
                }
            }
            for dir in self
                .all_trees(&record)?
                .iter()
                .filter_map(|t| self.index_dir_of(t))
            {
                if let Some(generation) = self.current_generation(&repo, &dir)? {
                    batch.push(Change::PutGeneration {
                        repo: repo.clone(),
                        dir,
                        generation,
                    });
                }
            }
            // The key first: a run stopped between the two finds the repository missing
            // and puts both again.
            if let Some(key) = keys.0.get(&repo) {
                to.put_secret_key(&repo, key)?;
            }
            out.records += batch.len();
            to.apply(batch)?;
        }
        for b in self.store.farm_builds()? {
            if to.farm_build(b.id)?.is_some() {
                out.kept += 1;
                continue;
            }
            let mut batch = vec![Change::PutFarmBuild(b.clone())];
            batch.extend(self.store.tasks(b.id)?.into_iter().map(Change::PutTask));
            out.records += batch.len();
            to.apply(batch)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::MemBlobs;

    /// What `path` of repository `r` serves, whole.
    fn read(repos: &Repositories, path: &str) -> Vec<u8> {
        let o = repos.open_path("r", path, None).unwrap().expect(path);
        o.into_bytes().unwrap()
    }

    #[test]
    fn a_store_migration_resumes_and_never_rolls_the_target_back() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let repos =
            Repositories::open(&dir.path().join("data"), crate::layout::Layout::builtin()).unwrap();
        for name in ["a", "b"] {
            repos
                .create(&super::super::NewRepo::volatile(name))
                .unwrap();
        }
        crate::auth::create(
            repos.store.as_ref(),
            crate::store::Role::Builder,
            "ci",
            None,
        )
        .unwrap();
        let to = crate::store::sled::SledStore::open(&dir.path().join("target")).unwrap();
        let keys = repos.keys_for_store(&to).unwrap();
        // Stopped after the tokens and repository `a`: a second run copies `b`.
        let tokens: Vec<Change> = repos
            .store
            .tokens()
            .unwrap()
            .into_iter()
            .map(Change::PutToken)
            .collect();
        to.apply(tokens).unwrap();
        to.apply(vec![Change::PutRepo(
            repos.store.repo("a").unwrap().unwrap(),
        )])
        .unwrap();
        let resumed = repos.migrate_store(&to, &keys).unwrap();
        // `b` with its index generations; `a` and the tokens were there.
        assert!(resumed.records >= 1 && resumed.kept == 1, "{resumed:?}");
        assert!(to.repo("b").unwrap().is_some());
        // The target in use: a token revoked and a repository changed there stay so.
        let id = to.tokens().unwrap()[0].id.clone();
        crate::auth::revoke(&to, &id).unwrap();
        let mut a = to.repo("a").unwrap().unwrap();
        a.keep = Some(7);
        to.apply(vec![Change::PutRepo(a.clone())]).unwrap();
        let again = repos.migrate_store(&to, &keys).unwrap();
        assert_eq!((again.records, again.kept), (0, 2), "{again:?}");
        assert!(to.token(&id).unwrap().unwrap().revoked.is_some());
        assert_eq!(to.repo("a").unwrap().unwrap(), a);
    }

    #[test]
    fn a_migration_copies_what_is_served_and_a_second_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let repos = Repositories::open(&data, crate::layout::Layout::builtin()).unwrap();
        repos.create(&super::super::NewRepo::volatile("r")).unwrap();
        let rpm = dir.path().join("tool-1.0-1.x86_64.rpm");
        rpm::PackageBuilder::new("tool", "1.0", "MIT", "x86_64", "a tool")
            .release("1")
            .with_file_contents("tool\n", rpm::FileOptions::new("/usr/share/tool/readme"))
            .unwrap()
            .build()
            .unwrap()
            .write_file(&rpm)
            .unwrap();
        let opts = super::super::PublishOptions {
            platform: Some("el9_x86_64".into()),
            ..Default::default()
        };
        let report = repos
            .publish("r", &[rpm], &opts, &crate::progress::Quiet)
            .unwrap();
        let path = report.files[0].path.clone();
        let before: Vec<String> = repos.blobs.list("r").unwrap();

        let to = MemBlobs::default();
        let first = repos
            .migrate_blobs(&to, repos.store.as_ref(), &crate::progress::Quiet)
            .unwrap();
        assert!(
            first.copied > 0 && first.copied == first.objects,
            "{first:?}"
        );
        let second = repos
            .migrate_blobs(&to, repos.store.as_ref(), &crate::progress::Quiet)
            .unwrap();
        assert_eq!((second.objects, second.copied), (first.objects, 0));
        // The source is as it was.
        assert_eq!(repos.blobs.list("r").unwrap(), before);
        // The same repository served from the target (the same store, the bytes in
        // the target): byte for byte.
        let paths = [path.as_str(), "yum/el9_x86_64/repodata/repomd.xml"];
        let served: Vec<Vec<u8>> = paths.iter().map(|p| read(&repos, p)).collect();
        drop(repos);
        let there =
            Repositories::open_with(&data, crate::layout::Layout::builtin(), Box::new(to)).unwrap();
        for (p, want) in paths.iter().zip(served) {
            assert_eq!(read(&there, p), want, "{p}");
        }
    }
}
