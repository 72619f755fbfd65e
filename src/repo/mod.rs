//! Package repositories: a data directory holding the metadata [`crate::store`], the
//! repository trees in [`crate::blobs`] and the signing keys; creating repositories,
//! publishing packages into them and keeping their YUM and APT indexes.
//!
//! Data directory:
//! ```text
//! <data>/store/          metadata (sled)
//! <data>/repos/<repo>/   the repository tree served at /repos/<repo>/ (DESIGN §4)
//! <data>/keys/<repo>.asc the secret signing key (0600; never under repos/; S2K-protected
//!                        when a key passphrase is given)
//! ```

pub mod apt;
pub mod builds;
pub mod details;
pub mod export;
pub mod gc;
pub mod generations;
pub mod keys;
pub mod migrate;
pub mod names;
pub mod package;
pub mod publish;
pub mod release;
pub mod segments;
pub mod tidy;
pub mod yum;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backends::Backends;
use crate::blobs::{BlobError, Blobs};
use crate::layout::Layout;
use crate::store::{MetadataCompression, RepoKind, RepoRecord, SledStore, Store, StoreError};

pub use publish::{PublishOptions, PublishReport};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] crate::backends::BackendError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("no repository named {0:?}")]
    NoSuchRepo(String),
    #[error("no package {path} in repository {repo}")]
    NoSuchPackage { repo: String, path: String },
    #[error("a repository named {0:?} already exists")]
    Exists(String),
    #[error(
        "the data directory already holds {path}, of a repository named {name:?} that the store does not know"
    )]
    Leftover { name: String, path: String },
    #[error("{0:?} is not a valid repository name")]
    BadName(String),
    #[error("unknown platform {0:?}")]
    UnknownPlatform(String),
    #[error("{path}: {why}")]
    BadPackage { path: String, why: String },
    #[error(
        "{path} is already in registered repository {repo} with sha256 {existing}; the new file has sha256 {new}"
    )]
    Overwrite {
        repo: String,
        path: String,
        existing: String,
        new: String,
    },
    #[error(
        "{repo} is a registered repository: only `packyard register` puts packages there, and {path} is not a registration"
    )]
    NotRegistered { repo: String, path: String },
    #[error("repository {0} is registered: what it holds is final, and it is never deleted")]
    Permanent(String),
    #[error("repository {repo} takes platforms {allowed}, not {platform} ({path})")]
    PlatformNotTaken {
        repo: String,
        platform: String,
        allowed: String,
        path: String,
    },
    #[error("{what}")]
    Key { what: String, hint: String },
    #[error("repository {0} already has a key")]
    KeyExists(String),
    #[error("{key} is protected by a passphrase, and none was given")]
    KeyNeedsPassphrase { key: keys::KeyName },
    #[error("the passphrase in {} does not open {key}", file.display())]
    WrongPassphrase { key: keys::KeyName, file: PathBuf },
    #[error(
        "repository {repo}'s secret key would be kept unprotected in {place}, which others \
         can read: a store other than the embedded one takes passphrase-protected keys only"
    )]
    ClearKeyRefused { repo: String, place: String },
    #[error("key passphrase file {}: {why}", path.display())]
    PassphraseFile { path: PathBuf, why: String },
    #[error("{what}")]
    Lock { what: String, hint: String },
    /// Something on the server's side that a client cannot fix.
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    BadBuild(String),
    #[error("the data directory is in use by `packyard serve` (pid {pid}) at {url}")]
    InUse { url: String, pid: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RepoError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RepoError::Store(e) => e.hint(),
            RepoError::Backend(e) => e.hint(),
            RepoError::Blob(BlobError::BadKey { .. }) => {
                "paths inside a repository are relative, without `..`".into()
            }
            RepoError::Blob(BlobError::Changed { .. }) => {
                "something rewrote the file during the publish; publish it again once it is \
                 written"
                    .into()
            }
            RepoError::Blob(BlobError::Remote { .. }) => {
                "the message says what the object store answered; check its endpoint, bucket \
                 and credentials"
                    .into()
            }
            RepoError::Blob(BlobError::Io { .. }) | RepoError::Internal(_) => {
                "check the data directory's disk space and permissions, and the server's log"
                    .into()
            }
            RepoError::NoSuchRepo(_) => "see `packyard repo list`, or create it with \
                                         `packyard repo create NAME --kind volatile|registered`"
                .into(),
            RepoError::NoSuchPackage { repo, .. } => {
                format!("list what it holds with `packyard repo show {repo}`")
            }
            RepoError::Exists(_) => "pick another name, or use the existing one".into(),
            RepoError::Leftover { path, .. } => format!(
                "if the store was restored from an older copy, restore one that matches; else \
                 move {} away (a key there may be the only copy of a signing key) and create \
                 the repository again",
                path
            ),
            RepoError::BadName(_) => {
                "use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit"
                    .into()
            }
            RepoError::UnknownPlatform(_) => "see `packyard platforms`".into(),
            RepoError::BadPackage { .. } => {
                "publish only packages written by `packyard pack` or another correct packager"
                    .into()
            }
            RepoError::Overwrite { .. } => "a registered package never changes: build a new \
                                            version (`packyard clone`), or publish to a volatile repository"
                .into(),
            RepoError::NotRegistered { repo, .. } => format!(
                "register the `pack --out` tree of a locked configuration: `packyard register \
                 CONFIGURATION --tree TREE --repo {repo} DIR`; a third-party package the \
                 project carries as an external goes in with `packyard publish --external` \
                 (admin)"
            ),
            RepoError::Permanent(_) => {
                "only volatile repositories can be deleted; see `packyard repo list`".into()
            }
            RepoError::PlatformNotTaken { .. } => {
                "publish it to a repository that takes this platform".into()
            }
            RepoError::Key { hint, .. } | RepoError::Lock { hint, .. } => hint.clone(),
            RepoError::KeyExists(_) => "clients trust that key; replace it only with --force, \
                                        then give them the new key.asc"
                .into(),
            RepoError::KeyNeedsPassphrase { key } => format!(
                "pass --key-passphrase-file FILE (or set {PASSPHRASE_ENV}=FILE, or \
                 key_passphrase_file = \"FILE\" in packyard.toml), the file's first line \
                 being the passphrase{}",
                match key {
                    keys::KeyName::Stored { .. } => "; every server that signs needs it",
                    keys::KeyName::Given { .. } => " (the key is stored protected with it)",
                }
            ),
            RepoError::WrongPassphrase { key, .. } => match key {
                keys::KeyName::Stored { repo } => format!(
                    "give the file holding the passphrase the key was stored with (every \
                     server of the store needs the same one); if it is lost, `packyard key \
                     generate --repo {repo} --force` makes a new key, and clients need the \
                     new key.asc"
                ),
                keys::KeyName::Given { .. } => "import the key protected with the \
                                                 configured passphrase (`gpg --passwd KEYID`, \
                                                 then export it again), or unprotected: it is \
                                                 stored protected with the configured one"
                    .into(),
            },
            RepoError::ClearKeyRefused { .. } => format!(
                "pass --key-passphrase-file FILE (or set {PASSPHRASE_ENV}=FILE, or \
                 key_passphrase_file = \"FILE\" in packyard.toml): the key is stored \
                 protected with the passphrase on the file's first line, and every server \
                 of the store needs the same file"
            ),
            RepoError::PassphraseFile { .. } => "the file's first line is the passphrase (its \
                                                 line break is not part of it); keep the file \
                                                 readable by packyard's user only (chmod 600)"
                .into(),
            RepoError::InUse { url, .. } => format!(
                "send the command to the server: add `--server {url} --token TOKEN` \
                 (an admin makes tokens with `packyard token create`), or stop the server first"
            ),
            RepoError::Io { .. } => "check the path and its permissions".into(),
            RepoError::BadBuild(_) => "`packyard build` publishes a component's artifacts, \
                                       then records its build"
                .into(),
        })
    }
}

/// What `repo create` (or `POST /api/v1/repos`) asks for.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRepo {
    pub name: String,
    pub kind: RepoKind,
    /// Platforms it takes; empty: every known platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Volatile only: keep the newest N versions of each package.
    #[serde(default)]
    pub keep: Option<u32>,
    #[serde(default)]
    pub yum_compression: MetadataCompression,
    /// Served only to callers with a token.
    #[serde(default)]
    pub private: bool,
}

impl NewRepo {
    /// A volatile repository with every default.
    pub fn volatile(name: &str) -> NewRepo {
        NewRepo {
            name: name.into(),
            kind: RepoKind::Volatile,
            platforms: vec![],
            keep: None,
            yum_compression: Default::default(),
            private: false,
        }
    }
}

/// A repository as the API and `--json` show it (the store's record is not an API type).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Repo {
    pub name: String,
    pub kind: RepoKind,
    /// Platforms it takes, sorted; empty means every known platform.
    pub platforms: Vec<String>,
    /// Volatile only: how many versions of each package are kept.
    pub keep: Option<u32>,
    /// Unix seconds.
    pub created: i64,
    /// Fingerprint of the signing key, once there is one.
    pub key: Option<String>,
    pub yum_compression: crate::store::MetadataCompression,
    /// Index trees left to rebuild by an interrupted publish; normally empty.
    pub pending: Vec<String>,
    pub private: bool,
}

impl Repo {
    /// Where a build node looks first: as [`RepoRecord::search_order`].
    pub fn search_order(&self) -> (bool, &str) {
        (self.kind != RepoKind::Registered, &self.name)
    }
}

impl From<&RepoRecord> for Repo {
    fn from(r: &RepoRecord) -> Repo {
        Repo {
            name: r.name.clone(),
            kind: r.kind,
            platforms: r.platforms.clone(),
            keep: r.keep,
            created: r.created,
            key: r.key.clone(),
            yum_compression: r.yum_compression,
            pending: r.pending.clone(),
            private: r.private,
        }
    }
}

/// A repository with what it holds, for `repo list` / `repo show`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RepoSummary {
    #[serde(flatten)]
    pub record: Repo,
    pub packages: usize,
    pub bytes: u64,
}

/// The environment variable that names the key passphrase file (as
/// `--key-passphrase-file` does), for messages.
pub const PASSPHRASE_ENV: &str = "PACKYARD_KEY_PASSPHRASE_FILE";

/// How long a command waits for another packyard process to let go of the store (one
/// process holds it at a time): concurrent publishes queue instead of failing.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub use crate::store::{ServerInfo, running};

/// The data directory, opened: store, blobs, keys, layout.
pub struct Repositories {
    pub store: Box<dyn Store>,
    pub blobs: Box<dyn Blobs>,
    /// Where a publish stages signed packages it cannot keep in memory (an unnamed file,
    /// gone with the process).
    scratch: PathBuf,
    pub layout: Layout,
    /// How many bytes of checked files one publish keeps in memory (the rest are read
    /// again when stored).
    keep_bytes: u64,
    /// What unlocks the stored secret keys, and protects the ones stored from now on.
    passphrase: Option<keys::Passphrase>,
    /// Index generations publishes dropped, when a thread removes them (a server).
    tidy: tidy::Tidy,
}

/// Repository names: 1-64 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_repo_name(name: &str) -> Result<(), RepoError> {
    match crate::paths::is_repo_name(name) {
        true => Ok(()),
        false => Err(RepoError::BadName(name.to_string())),
    }
}

impl Repositories {
    /// Opens (creating) the data directory with the embedded store and its files.
    pub fn open(data: &Path, layout: Layout) -> Result<Repositories, RepoError> {
        Self::open_backends(&Backends::embedded(data), layout)
    }

    /// Opens the data directory with the backends `b` names.
    pub fn open_backends(b: &Backends, layout: Layout) -> Result<Repositories, RepoError> {
        let data = &b.data;
        let io = |source| RepoError::Io {
            path: data.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data).map_err(io)?;
        // The embedded store is held by one process: a server holding it answers instead.
        if b.embedded_store()
            && let Some(info) = running(data)
        {
            return Err(RepoError::InUse {
                url: info.url,
                pid: info.pid,
            });
        }
        let passphrase = b.key_passphrase()?;
        let store = b.open_store(STORE_WAIT)?;
        let blobs = b.open_blobs()?;
        Ok(Self::assemble(data, layout, store, blobs)?.with_key_passphrase(passphrase))
    }

    /// The passphrase that unlocks stored keys and protects new ones (none: keys are
    /// stored unprotected, which only the embedded store takes).
    pub fn with_key_passphrase(mut self, passphrase: Option<keys::Passphrase>) -> Repositories {
        self.passphrase = passphrase;
        self
    }

    /// Opens the data directory's embedded store with its bytes in `blobs`.
    pub fn open_with(
        data: &Path,
        layout: Layout,
        blobs: Box<dyn Blobs>,
    ) -> Result<Repositories, RepoError> {
        let store = SledStore::open_waiting(&data.join("store"), STORE_WAIT)?;
        Self::assemble(data, layout, Box::new(store), blobs)
    }

    /// A data directory in `data` whose bytes are in memory, holding volatile repository
    /// `r`: what unit tests publish, index and serve with no file system under them.
    #[cfg(test)]
    pub(crate) fn in_memory(data: &Path) -> Repositories {
        let blobs = Box::new(crate::blobs::MemBlobs::default());
        let repos = Self::open_with(data, Layout::builtin(), blobs).unwrap();
        repos.create(&NewRepo::volatile("r")).unwrap();
        repos
    }

    fn assemble(
        data: &Path,
        layout: Layout,
        store: Box<dyn Store>,
        blobs: Box<dyn Blobs>,
    ) -> Result<Repositories, RepoError> {
        let repos = Repositories {
            store,
            blobs,
            scratch: data.join("tmp"),
            layout,
            keep_bytes: publish::KEEP_BYTES,
            passphrase: None,
            tidy: Default::default(),
        };
        repos.sweep()?;
        Ok(repos)
    }

    /// Files of repository `repo` were removed after its last batch (a publish's pruned
    /// files, `gc`): its version moves, so servers that keep copies of what they serve
    /// drop those of it before this returns.
    pub(super) fn removed_files(&self, repo: &str) -> Result<(), RepoError> {
        Ok(self
            .store
            .apply(vec![crate::store::Change::Touch(repo.into())])?)
    }

    /// Finishes the deletes that were interrupted: each is marked in the store until its
    /// files and key are gone. Only marked repositories are touched — a store that lost
    /// records some other way (restored from an older copy) never costs files or keys.
    fn sweep(&self) -> Result<(), RepoError> {
        for name in self.store.deleting()? {
            // One that cannot be finished now (a file that will not go) keeps its mark
            // for the next command, and stops no other.
            if let Err(e) = self.finish_delete(&name) {
                tracing::warn!(repo = %name, "an interrupted delete is not finished: {e}");
            }
        }
        Ok(())
    }

    /// Finishes an interrupted delete of `name`, if one is marked: its files and key go
    /// (unless its records are there again: then it was created again meanwhile), then
    /// the mark.
    fn finish_delete(&self, name: &str) -> Result<(), RepoError> {
        if !self.store.deleting()?.iter().any(|n| n == name) {
            return Ok(());
        }
        if self.store.repo(name)?.is_none() {
            self.remove_files(name)?;
        }
        self.store.apply(vec![crate::store::Change::Deleting {
            repo: name.into(),
            marked: false,
        }])?;
        Ok(())
    }

    /// A deleted repository's files and key.
    fn remove_files(&self, name: &str) -> Result<(), RepoError> {
        self.blobs.remove_all(name)?;
        self.remove_key(name)
    }

    pub fn create(&self, new: &NewRepo) -> Result<RepoRecord, RepoError> {
        let name = new.name.as_str();
        check_repo_name(name)?;
        // Two creates of one name: the second finds the first's record.
        let _guard = self.lock_repo(name)?;
        if self.store.repo(name)?.is_some() {
            return Err(RepoError::Exists(name.into()));
        }
        for p in &new.platforms {
            if !self.layout.platforms.contains_key(p) {
                return Err(RepoError::UnknownPlatform(p.clone()));
            }
        }
        if new.keep == Some(0) {
            return Err(RepoError::Key {
                what: "--keep 0 would remove every package at each publish".into(),
                hint: "give --keep 1 or more, or leave it out to keep every version".into(),
            });
        }
        if new.keep.is_some() && new.kind == RepoKind::Registered {
            return Err(RepoError::Key {
                what: "--keep applies to volatile repositories only".into(),
                hint: "a registered repository keeps every package for good; drop --keep".into(),
            });
        }
        // Files and a key a delete left when it was interrupted after its records went
        // go; any others are not ours to remove.
        self.finish_delete(name)?;
        let files = (!self.blobs.list(name)?.is_empty()).then(|| self.blobs.describe(name));
        let key = self
            .store
            .secret_key(name)?
            .map(|_| self.store.secret_key_place(name));
        if let Some(path) = files.or(key) {
            return Err(RepoError::Leftover {
                name: name.into(),
                path,
            });
        }
        let mut platforms = new.platforms.clone();
        platforms.sort();
        platforms.dedup();
        let record = RepoRecord {
            name: name.into(),
            kind: new.kind,
            platforms,
            keep: new.keep,
            created: chrono::Utc::now().timestamp(),
            key: None,
            yum_compression: new.yum_compression,
            pending: vec![],
            private: new.private,
        };
        // A repository is valid from its creation: empty indexes of every tree it has
        // (signed once it has a key), which dnf and apt take, with the trees marked
        // pending in the same batch as the record, so an interrupted create is finished
        // by the next publish.
        let mut pending = record.clone();
        pending.pending = self.trees_of(&record)?.into_iter().collect();
        self.store
            .apply(vec![crate::store::Change::PutRepo(pending.clone())])?;
        let trees = pending.pending.iter().cloned().collect();
        self.rebuild_indexes(&pending, &trees, None, Default::default())?;
        Ok(record)
    }

    /// Deletes volatile repository `name`: its records, its files and its signing key,
    /// for good. Returns what it held. Registered repositories are never deleted.
    pub fn delete(&self, name: &str) -> Result<RepoSummary, RepoError> {
        self.repo(name)?;
        // No publish is halfway through it while it goes.
        let _guard = self.lock_repo(name)?;
        let record = self.repo(name)?;
        if record.kind == RepoKind::Registered {
            return Err(RepoError::Permanent(name.into()));
        }
        let summary = self.summary(record)?;
        // Marked in the batch that removes the records: from then on nobody sees the
        // repository, and its name can be used again. Files and key go last; the mark
        // says they may (an interrupted delete is finished by the next command, or by a
        // create of the same name).
        self.store.apply(vec![
            crate::store::Change::RemoveRepo(name.into()),
            crate::store::Change::Deleting {
                repo: name.into(),
                marked: true,
            },
        ])?;
        self.remove_files(name)?;
        self.store.apply(vec![crate::store::Change::Deleting {
            repo: name.into(),
            marked: false,
        }])?;
        Ok(summary)
    }

    pub fn repo(&self, name: &str) -> Result<RepoRecord, RepoError> {
        self.store
            .repo(name)?
            .ok_or_else(|| RepoError::NoSuchRepo(name.into()))
    }

    pub fn list(&self) -> Result<Vec<RepoSummary>, RepoError> {
        self.store
            .repos()?
            .into_iter()
            .map(|r| self.summary(r))
            .collect()
    }

    pub fn show(&self, name: &str) -> Result<RepoSummary, RepoError> {
        let r = self.repo(name)?;
        self.summary(r)
    }

    fn summary(&self, record: RepoRecord) -> Result<RepoSummary, RepoError> {
        let packages = self.store.packages(&record.name)?;
        Ok(RepoSummary {
            packages: packages.len(),
            bytes: packages.iter().map(|p| p.size).sum(),
            record: Repo::from(&record),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_interrupted_after_its_records_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let repos = Repositories::open(&data, Layout::builtin()).unwrap();
        for name in ["gone", "kept", "old"] {
            repos.create(&NewRepo::volatile(name)).unwrap();
            repos
                .generate_key(name, keys::Algorithm::Ed25519, false)
                .unwrap();
            repos
                .blobs
                .put_now(&format!("{name}/a/b.tar.gz"), b"x")
                .unwrap();
        }
        // A delete marks "gone" as its records go, then the process dies; "kept" lost its
        // record some other way (an older store put back) and is not marked; "old" was
        // marked by a release that kept delete marks as files.
        let deleting = |repo: &str| crate::store::Change::Deleting {
            repo: repo.into(),
            marked: true,
        };
        repos
            .store
            .apply(vec![
                crate::store::Change::RemoveRepo("gone".into()),
                deleting("gone"),
                deleting("never"),
                crate::store::Change::RemoveRepo("kept".into()),
                crate::store::Change::RemoveRepo("old".into()),
            ])
            .unwrap();
        std::fs::create_dir_all(data.join("deleting")).unwrap();
        std::fs::write(data.join("deleting/old"), b"").unwrap();
        std::fs::create_dir_all(data.join("repos/.removing-gone/a")).unwrap();
        drop(repos);
        let repos = Repositories::open(&data, Layout::builtin()).unwrap();
        for gone in ["gone", "old"] {
            assert!(!data.join("repos").join(gone).exists(), "{gone}");
            assert!(!data.join(format!("keys/{gone}.asc")).exists(), "{gone}");
        }
        assert!(!data.join("repos/.removing-gone").exists());
        assert!(!data.join("deleting").exists());
        assert!(repos.store.deleting().unwrap().is_empty());
        // Unmarked: files and key stay, and a create of the name says why it cannot.
        assert!(data.join("repos/kept/a/b.tar.gz").exists());
        assert!(data.join("keys/kept.asc").exists());
        let e = repos.create(&NewRepo::volatile("kept")).unwrap_err();
        assert!(matches!(e, RepoError::Leftover { .. }), "{e}");
        assert!(e.hint().unwrap().contains("move"), "{e}");
        assert!(data.join("keys/kept.asc").exists());
        // The finished delete's name is free.
        repos.create(&NewRepo::volatile("gone")).unwrap();
    }

    #[test]
    fn repository_names() {
        for good in ["nightly", "reg-1", "a.b_c", "9"] {
            assert!(check_repo_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Nightly", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_repo_name(bad).is_err(), "{bad}");
        }
    }
}
