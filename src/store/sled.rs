//! The embedded store on sled: one tree, keys prefixed by record kind, values JSON.
//! A batch is one `apply_batch` (atomic) followed by a flush (durable).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Change, IndexEntry, IndexRow, LockRecord, PackageRecord, RepoRecord, Store, StoreError,
    TokenRecord,
};

pub struct SledStore {
    db: sled::Db,
}

// Keys: `repo\0<name>`, `pkg\0<repo>\0<path>`, `lock\0<configuration>`. NUL cannot occur
// in names or paths, so a prefix scan never crosses into a longer repository name.
fn repo_key(name: &str) -> Vec<u8> {
    format!("repo\0{name}").into_bytes()
}
fn pkg_prefix(repo: &str) -> Vec<u8> {
    format!("pkg\0{repo}\0").into_bytes()
}
fn pkg_key(repo: &str, path: &str) -> Vec<u8> {
    format!("pkg\0{repo}\0{path}").into_bytes()
}
fn lock_key(conf: &str) -> Vec<u8> {
    format!("lock\0{conf}").into_bytes()
}
fn token_key(id: &str) -> Vec<u8> {
    format!("tok\0{id}").into_bytes()
}
// Index entries: `ent\0<repo>\0<tree>\0<order>\0<path>`, so a prefix scan lists a tree's
// entries in their order. Segments: `seg\0<repo>\0<tree>\0<key>`.
fn ent_prefix(repo: &str, tree: &str) -> Vec<u8> {
    format!("ent\0{repo}\0{tree}\0").into_bytes()
}
fn ent_key(repo: &str, r: &PackageRecord) -> Option<Vec<u8>> {
    let l = r.listed.as_ref()?;
    let mut k = ent_prefix(repo, &l.tree);
    k.extend_from_slice(format!("{}\0{}", l.order, r.path).as_bytes());
    Some(k)
}
// Packages by name: `name\0<repo>\0<name>\0<path>` (empty value), so a publish reads
// only the records of the names it touches.
fn name_prefix(repo: &str, name: &str) -> Vec<u8> {
    format!("name\0{repo}\0{name}\0").into_bytes()
}
fn name_key(repo: &str, r: &PackageRecord) -> Vec<u8> {
    let mut k = name_prefix(repo, &r.name);
    k.extend_from_slice(r.path.as_bytes());
    k
}
fn seg_prefix(repo: &str, tree: &str) -> Vec<u8> {
    format!("seg\0{repo}\0{tree}\0").into_bytes()
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledStore {
    /// Opens (creating) the store in `dir`. Only one process may hold it.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        match sled::open(dir) {
            Ok(db) => Ok(SledStore { db }),
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(StoreError::Busy {
                    path: dir.display().to_string(),
                })
            }
            // sled reports a held lock file as a plain I/O error with this text.
            Err(e) if e.to_string().contains("lock") => Err(StoreError::Busy {
                path: dir.display().to_string(),
            }),
            Err(e) => Err(backend(e)),
        }
    }

    /// Opens the store, waiting up to `patience` while another process holds it, and
    /// saying so on stderr after a second.
    pub fn open_waiting(dir: &Path, patience: Duration) -> Result<SledStore, StoreError> {
        let start = Instant::now();
        let mut told = false;
        loop {
            match SledStore::open(dir) {
                Err(StoreError::Busy { .. }) if start.elapsed() < patience => {
                    if !told && start.elapsed() > Duration::from_secs(1) {
                        eprintln!(
                            "waiting for another packyard process to finish with {}",
                            dir.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(key).map_err(backend)? {
            None => Ok(None),
            Some(v) => decode(key, &v).map(Some),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                decode(&k, &v)
            })
            .collect()
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Store for SledStore {
    fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        // Records as this batch leaves them so far: a later change in the same batch must
        // see an earlier one (a package added and pruned at once leaves nothing behind).
        let mut overlay: std::collections::HashMap<Vec<u8>, Option<PackageRecord>> =
            Default::default();
        let current = |repo: &str,
                       path: &str,
                       overlay: &std::collections::HashMap<Vec<u8>, Option<PackageRecord>>|
         -> Result<Option<PackageRecord>, StoreError> {
            match overlay.get(&pkg_key(repo, path)) {
                Some(r) => Ok(r.clone()),
                None => self.package(repo, path),
            }
        };
        for c in &changes {
            match c {
                Change::PutRepo(r) => batch.insert(repo_key(&r.name), encode(r)),
                Change::PutPackage { repo, record } => {
                    // A record replaced in place may have been listed elsewhere.
                    if let Some(old) = current(repo, &record.path, &overlay)? {
                        batch.remove(name_key(repo, &old));
                        if let Some(k) = ent_key(repo, &old) {
                            batch.remove(k);
                        }
                    }
                    batch.insert(name_key(repo, record), &[] as &[u8]);
                    if let Some(k) = ent_key(repo, record) {
                        batch.insert(k, record.index.encode(record.published, &record.sha256));
                    }
                    overlay.insert(pkg_key(repo, &record.path), Some(record.clone()));
                    batch.insert(pkg_key(repo, &record.path), encode(record))
                }
                Change::RemovePackage { repo, path } => {
                    if let Some(old) = current(repo, path, &overlay)? {
                        batch.remove(name_key(repo, &old));
                        if let Some(k) = ent_key(repo, &old) {
                            batch.remove(k);
                        }
                    }
                    overlay.insert(pkg_key(repo, path), None);
                    batch.remove(pkg_key(repo, path))
                }
                Change::PutLock(l) => batch.insert(lock_key(&l.configuration), encode(l)),
                Change::PutToken(t) => batch.insert(token_key(&t.id), encode(t)),
                Change::PutSegment {
                    repo,
                    tree,
                    key,
                    bytes,
                } => {
                    let mut k = seg_prefix(repo, tree);
                    k.extend_from_slice(key.as_bytes());
                    batch.insert(k, bytes.as_slice())
                }
                Change::RemoveSegment { repo, tree, key } => {
                    let mut k = seg_prefix(repo, tree);
                    k.extend_from_slice(key.as_bytes());
                    batch.remove(k)
                }
            }
        }
        self.db.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn repo(&self, name: &str) -> Result<Option<RepoRecord>, StoreError> {
        self.get(&repo_key(name))
    }

    fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        self.scan(b"repo\0")
    }

    fn package(&self, repo: &str, path: &str) -> Result<Option<PackageRecord>, StoreError> {
        self.get(&pkg_key(repo, path))
    }

    fn packages(&self, repo: &str) -> Result<Vec<PackageRecord>, StoreError> {
        self.scan(&pkg_prefix(repo))
    }

    fn lock(&self, configuration: &str) -> Result<Option<LockRecord>, StoreError> {
        self.get(&lock_key(configuration))
    }

    fn locks(&self) -> Result<Vec<LockRecord>, StoreError> {
        self.scan(b"lock\0")
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(&token_key(id))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.scan(b"tok\0")
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(backend)
    }

    fn packages_named(&self, repo: &str, name: &str) -> Result<Vec<PackageRecord>, StoreError> {
        let prefix = name_prefix(repo, name);
        let mut out = Vec::new();
        for k in self.db.scan_prefix(&prefix).keys() {
            let k = k.map_err(backend)?;
            let path = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.extend(self.package(repo, &path)?);
        }
        Ok(out)
    }

    fn index_entries(&self, repo: &str, tree: &str) -> Result<Vec<IndexRow>, StoreError> {
        let prefix = ent_prefix(repo, tree);
        self.db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                let (published, sha256, entry) =
                    IndexEntry::decode(&v).ok_or_else(|| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&k).replace('\0', "/"),
                        message: "not an index entry".into(),
                    })?;
                Ok(IndexRow {
                    key: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    published,
                    sha256,
                    entry,
                })
            })
            .collect()
    }

    fn segments(&self, repo: &str, tree: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = seg_prefix(repo, tree);
        self.db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                Ok((
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    v.to_vec(),
                ))
            })
            .collect()
    }
}
