//! The metadata store: repositories, the packages published into them, configuration
//! locks. One trait, [`Store`], so another backend (PostgreSQL, DESIGN §6) can come later
//! without touching publishing or indexing; [`sled::SledStore`] is the embedded default.
//! Bytes (package files, indexes) are not here: they live in [`crate::blobs`].

pub mod conformance;
pub mod postgres;
pub mod queue;
pub mod sled;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::postgres::PostgresStore;
pub use self::queue::{BuildId, FarmBuild, Lease, Task, TaskEvent, TaskState};
pub use self::sled::{ServerInfo, SledStore, running};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the metadata store at {path} is in use by another packyard process")]
    Busy { path: String },
    #[error("metadata store: {0}")]
    Backend(String),
    /// A database that cannot be reached or named, with what to fix.
    #[error("metadata store: {0}")]
    Unreachable(String),
    #[error("metadata store record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn hint(&self) -> String {
        match self {
            StoreError::Busy { .. } => {
                "a running `packyard serve` (or another command) holds this data \
                                        directory; wait for it, or send the command to the server"
                    .into()
            }
            StoreError::Unreachable(_) => {
                "the message names the database; check that it runs and that --store (or \
                 PACKYARD_STORE, or `store` in packyard.toml) names it"
                    .into()
            }
            StoreError::Backend(_) | StoreError::Io { .. } => {
                "check the data directory's disk space and permissions".into()
            }
            StoreError::Corrupt { .. } => {
                "the data directory was written by another packyard version or damaged".into()
            }
        }
    }
}

/// Volatile repositories take replacements and pruning; registered ones never change what
/// they hold (DESIGN §1 "Repositories").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Volatile,
    Registered,
}

impl crate::choice::Choice for RepoKind {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            RepoKind::Volatile,
            "volatile",
            "packages may be replaced, and old versions pruned",
        ),
        (
            RepoKind::Registered,
            "registered",
            "what it holds never changes",
        ),
    ];
}

impl RepoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoKind::Volatile => "volatile",
            RepoKind::Registered => "registered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoRecord {
    pub name: String,
    pub kind: RepoKind,
    /// Platforms the repository takes; empty means every known platform.
    pub platforms: Vec<String>,
    /// Volatile only: how many versions of each package to keep.
    pub keep: Option<u32>,
    /// Unix seconds.
    pub created: i64,
    /// Fingerprint (hex) of the signing key, once there is one.
    pub key: Option<String>,
    /// How the YUM metadata files are compressed.
    #[serde(default)]
    pub yum_compression: MetadataCompression,
    /// Index trees (`yum/<platform>`, `apt/<suite>`) whose packages changed but whose
    /// files were not rewritten yet: an interrupted publish; the next one rebuilds them.
    #[serde(default)]
    pub pending: Vec<String>,
    /// Private repositories are served only to callers with a token.
    #[serde(default)]
    pub private: bool,
}

impl RepoRecord {
    /// Where a build node looks first: registered repositories (final artifacts), then
    /// volatile ones, each by name.
    pub fn search_order(&self) -> (bool, &str) {
        (self.kind != RepoKind::Registered, &self.name)
    }
}

/// Compression of YUM metadata: gzip reads everywhere; zstd is smaller and faster to read
/// (dnf 4.x with a zstd-enabled libsolv, EL8 and later).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataCompression {
    #[default]
    Gzip,
    Zstd,
}

impl crate::choice::Choice for MetadataCompression {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (MetadataCompression::Gzip, "gzip", "read everywhere"),
        (
            MetadataCompression::Zstd,
            "zstd",
            "smaller and faster to read (dnf with a zstd-enabled libsolv, EL8 and later)",
        ),
    ];
}

/// What kind of file a published package is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Tgz,
    Rpm,
    Deb,
    /// A source RPM (`.src.rpm`), listed in its os's YUM source tree (`yum/<os>-source`).
    Srpm,
    /// A Debian source package's `.dsc`; the files it names (`.orig.tar.*`,
    /// `.debian.tar.*`) are its record's [`PackageRecord::parts`].
    Dsc,
}

impl FileKind {
    /// Whether it is a source package (`.src.rpm`, `.dsc`).
    pub fn is_source(self) -> bool {
        matches!(self, FileKind::Srpm | FileKind::Dsc)
    }
}

/// A file a Debian source package's `.dsc` names, stored beside it (same directory, at
/// its download-from path and in its pool directory) and gone with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePart {
    /// The file's name, as the `.dsc` gives it.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One file published into a repository, with everything the indexes need, so adding a
/// package never re-reads the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// Relative to the repository root: the download-from path.
    pub path: String,
    pub kind: FileKind,
    pub platform: String,
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    /// The format's own architecture name (`x86_64`, `amd64`, `noarch`...).
    pub arch: String,
    pub size: u64,
    pub sha256: String,
    /// Unix seconds of the publish.
    pub published: i64,
    /// The configuration it was built from, when known.
    pub configuration: Option<String>,
    /// An RPM carrying an OpenPGP signature (so clients may check it: `gpgcheck=1`).
    #[serde(default)]
    pub signed: bool,
    /// The index tree it is listed in (`yum/<platform>`, `apt/<suite>`) and its place
    /// there (the order createrepo_c or apt-ftparchive gives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Listing>,
    /// Put into a registered repository as a third-party package (`--external`), not
    /// registered from a locked configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// A `.dsc`'s other files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<SourcePart>,
    /// The pre-rendered index entries. Not in the record's JSON: the store keeps them
    /// beside it (see [`Store::index_entries`]) and reading records does not decode them.
    #[serde(skip)]
    pub index: Arc<IndexEntry>,
}

/// An index tree's compressed segments (see `repo::segments`), by key.
pub type Segments = HashMap<String, Vec<u8>>;

/// One package's entry in an index tree.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    /// Its place (listing order, then path): unique within the tree.
    pub key: String,
    pub published: i64,
    /// The package file's sha256: with `key` and `published` it identifies the entry.
    pub sha256: String,
    pub entry: Arc<IndexEntry>,
    /// A digest of `key`, `sha256` and `published`: it changes whenever the rendered entry
    /// can. Worked out once, as rows are read or patched, not at every index build.
    identity: [u8; 16],
}

impl IndexRow {
    pub fn new(
        key: String,
        published: i64,
        sha256: String,
        entry: impl Into<Arc<IndexEntry>>,
    ) -> IndexRow {
        let entry = entry.into();
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [key.as_bytes(), b"\0", sha256.as_bytes(), b"\0"] {
            h.update(part);
        }
        h.update(published.to_le_bytes());
        let mut identity = [0u8; 16];
        identity.copy_from_slice(&h.finalize()[..16]);
        IndexRow {
            key,
            published,
            sha256,
            entry,
            identity,
        }
    }

    /// Bytes that change whenever the rendered entry can change.
    pub fn identity(&self) -> &[u8; 16] {
        &self.identity
    }
}

/// Where a package appears in an index tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub tree: String,
    pub order: String,
}

impl Listing {
    /// The key of the tree's row for the package at `path`: `<order>\0<path>`, so rows
    /// sort in listing order, then by path.
    pub fn row_key(&self, path: &str) -> String {
        row_key(&self.order, path)
    }
}

/// An index tree's row key for the package at `path` listed at `order` (see
/// [`Listing::row_key`]).
pub fn row_key(order: &str, path: &str) -> String {
    format!("{order}\0{path}")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum IndexEntry {
    /// Tarballs are not indexed.
    #[default]
    None,
    /// `<package>` elements of primary.xml, filelists.xml and other.xml.
    Yum {
        primary: String,
        filelists: String,
        other: String,
    },
    /// The `Packages` stanza (without the trailing blank line), its suite and architecture.
    Apt {
        suite: String,
        arch: String,
        stanza: String,
    },
}

impl IndexEntry {
    /// A compact encoding for the store: fields joined by NUL (which none may hold).
    pub fn encode(&self, published: i64, sha256: &str) -> Vec<u8> {
        let parts: Vec<&str> = match self {
            IndexEntry::None => return Vec::new(),
            IndexEntry::Yum {
                primary,
                filelists,
                other,
            } => vec!["Y", primary, filelists, other],
            IndexEntry::Apt {
                suite,
                arch,
                stanza,
            } => vec!["A", suite, arch, stanza],
        };
        let mut out = format!("{published}\0{sha256}\0").into_bytes();
        out.extend_from_slice(parts.join("\0").as_bytes());
        out
    }

    /// The entry, its publish time and package sha256, from [`IndexEntry::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Option<(i64, String, IndexEntry)> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('\0');
        let published = parts.next()?.parse().ok()?;
        let sha256 = parts.next()?.to_string();
        let mut field = || parts.next().map(str::to_string);
        let entry = match field()?.as_str() {
            "Y" => IndexEntry::Yum {
                primary: field()?,
                filelists: field()?,
                other: field()?,
            },
            "A" => IndexEntry::Apt {
                suite: field()?,
                arch: field()?,
                stanza: field()?,
            },
            _ => return None,
        };
        Some((published, sha256, entry))
    }
}

/// A file that left an index tree when the tree's current generation was made: the
/// previous generation, kept for readers that fetched it a moment ago, still names it, so
/// it stays until the next generation replaces that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftFile {
    /// The file's key in the repository (its index alias).
    pub key: String,
    /// The package path and bytes it was the alias of: if that path holds those bytes
    /// again when the file is due, the current index names it and it stays.
    pub path: String,
    pub sha256: String,
}

/// The generation an index directory (`yum/<platform>/repodata`, `apt/dists/<suite>`)
/// shows: its files are objects under the sibling prefix `.<base>.gen-<hash>/`, written
/// whole before this record names them; the record is switched in the store batch that
/// clears the repository's pending indexes, so every server sees one generation at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// `.<base>.gen-<hash>` (the hash covers every file's name and bytes).
    pub name: String,
    /// The files it holds, relative to it (carried ones included), sorted.
    pub files: Vec<String>,
    /// Content-named files carried over from the generation before, for readers of that
    /// one; never carried twice.
    pub carried: Vec<String>,
    /// The generation before, kept for readers in flight; the one before that is dropped.
    pub previous: Option<String>,
}

/// A locked configuration: its canonical content hash, recorded by `packyard lock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRecord {
    pub configuration: String,
    pub module: String,
    pub version: String,
    pub age: u32,
    pub sha256: String,
    /// The canonical text that was hashed, to name what changed later.
    pub canonical: String,
    pub locked: i64,
}

/// What a token may do. Each role can do what the roles below it can:
/// `admin` ⊇ `release` ⊇ `builder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uploads to volatile repositories.
    Builder,
    /// Also locks configurations and registers packages into registered repositories.
    Release,
    /// Also manages repositories and tokens.
    Admin,
}

impl crate::choice::Choice for Role {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Role::Builder, "builder", "uploads to volatile repositories"),
        (
            Role::Release,
            "release",
            "also locks configurations and registers packages",
        ),
        (Role::Admin, "admin", "also manages repositories and tokens"),
    ];
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Builder => "builder",
            Role::Release => "release",
            Role::Admin => "admin",
        }
    }
}

/// An API token. Only the SHA-256 of its secret is stored; the secret is shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub role: Role,
    /// What it is for (free text).
    pub name: String,
    /// Hex SHA-256 of the secret. Never shown by the API (absent when read from it).
    #[serde(default)]
    pub hash: String,
    pub created: i64,
    /// When it was revoked; a revoked token is refused.
    pub revoked: Option<i64>,
    /// Unix seconds from which it is refused; `None`: it does not expire.
    #[serde(default)]
    pub expires: Option<i64>,
}

/// One change, applied with others in a single atomic batch.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built a handful at a time; boxing buys nothing
pub enum Change {
    PutRepo(RepoRecord),
    PutPackage {
        repo: String,
        record: PackageRecord,
    },
    RemovePackage {
        repo: String,
        path: String,
    },
    PutLock(LockRecord),
    PutToken(TokenRecord),
    /// A compressed segment of an index file, by its key (see `repo::segments`).
    PutSegment {
        repo: String,
        tree: String,
        key: String,
        bytes: Vec<u8>,
    },
    RemoveSegment {
        repo: String,
        tree: String,
        key: String,
    },
    /// The files that left an index tree at its current generation (empty: none).
    PutLeft {
        repo: String,
        tree: String,
        files: Vec<LeftFile>,
    },
    /// The generation an index directory of a repository shows from now on.
    PutGeneration {
        repo: String,
        dir: String,
        generation: Generation,
    },
    /// A delete of repository `repo` began (`true`: in the batch that removes its
    /// records) or ended (`false`: its files and key are gone).
    Deleting {
        repo: String,
        marked: bool,
    },
    /// A repository and everything recorded of it: packages, index entries, segments,
    /// files that left, index generations.
    RemoveRepo(String),
    /// Nothing recorded changes, but what repository `repo` serves did: files were
    /// removed after its last batch (a publish's pruned files, `gc`). Its version moves,
    /// so servers drop what they kept of it (`Store::follow`).
    Touch(String),
    /// A build of the farm (its tasks are put one by one).
    PutFarmBuild(FarmBuild),
    /// A task, as it is now: the store keeps what finds it (claimable tasks by platform,
    /// held leases by expiry) in step with it.
    PutTask(Task),
}

/// Held while one publish (or create, delete, key change) of a repository decides and
/// writes; dropped, the next one begins. Whatever the backend keeps to hold the lock (an
/// in-process mark, a database session) is inside.
pub struct RepoGuard(#[allow(dead_code)] Box<dyn Send>);

impl RepoGuard {
    pub fn new(held: impl Send + 'static) -> RepoGuard {
        RepoGuard(Box::new(held))
    }
}

/// A batch [`Store::prepare`]d, to be written by [`Prepared::apply`].
pub struct Prepared<'s>(Box<dyn FnOnce() -> Result<(), StoreError> + Send + 's>);

impl<'s> Prepared<'s> {
    pub fn new(write: impl FnOnce() -> Result<(), StoreError> + Send + 's) -> Prepared<'s> {
        Prepared(Box::new(write))
    }

    /// Writes the batch, all or nothing, durably (as [`Store::apply`]).
    pub fn apply(self) -> Result<(), StoreError> {
        (self.0)()
    }
}

/// Held while one change of a farm build's tasks reads them and writes them back (see
/// [`Store::lock_farm_build`]); dropped, the next one begins. Like [`RepoGuard`], it
/// carries whatever the backend keeps to hold the lock.
pub struct BuildGuard(#[allow(dead_code)] Box<dyn Send>);

impl BuildGuard {
    pub fn new(held: impl Send + 'static) -> BuildGuard {
        BuildGuard(Box::new(held))
    }
}

/// Named locks within one process: enough for a store that one process holds (sled).
#[derive(Default, Clone)]
pub struct NamedLocks {
    held: Arc<(
        std::sync::Mutex<std::collections::HashSet<String>>,
        std::sync::Condvar,
    )>,
}

struct Held {
    locks: NamedLocks,
    name: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let (set, freed) = &*self.locks.held;
        set.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
        freed.notify_all();
    }
}

impl NamedLocks {
    /// Waits until no one holds `name`, then holds it until the guard is dropped.
    pub fn lock(&self, name: &str) -> RepoGuard {
        let (set, freed) = &*self.held;
        let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(name) {
            held = freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(name.to_string());
        RepoGuard::new(Held {
            locks: self.clone(),
            name: name.to_string(),
        })
    }
}

/// A server's place among the followers of a shared store ([`Store::follow`]). A round:
/// [`Follower::read`] every repository's version, drop the copies of those that moved,
/// then [`Follower::acknowledge`] what was read — only then may batches the read showed
/// be answered, so nothing is acknowledged before it is applied. Copies are used only
/// while the lease that the last acknowledgement renewed holds.
pub trait Follower: Send {
    /// Waits up to `timeout` for a batch of another process (or this one) to change a
    /// repository; returns early when one did.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<(), StoreError>;
    /// Every repository's version now (a new number whenever a batch changes anything
    /// of the repository), and the moment it was read, to acknowledge.
    fn read(&mut self) -> Result<(Seen, std::collections::HashMap<String, i64>), StoreError>;
    /// Acknowledges every batch that `seen` (from [`Follower::read`]) shows — `None`: every
    /// batch so far, for a follower that holds no copies yet — and renews this
    /// follower's lease for `lease`. From the first acknowledgement until the lease runs
    /// out, batches wait for this follower to acknowledge them.
    fn acknowledge(
        &mut self,
        seen: Option<&Seen>,
        lease: std::time::Duration,
    ) -> Result<(), StoreError>;
}

/// A moment of a shared store, as its follower read it (opaque: PostgreSQL's snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen(pub String);

/// The metadata store. Every write goes through [`Store::apply`], which applies a batch
/// all or nothing and makes it durable before returning.
pub trait Store: Send + Sync {
    fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError>;
    /// [`Store::apply`] in two steps: this one works out the batch (encodes its rows,
    /// reads what it must) and writes nothing, so it can run while the bytes the batch
    /// will name are still being made durable; [`Prepared::apply`] then writes it. The
    /// caller holds the locks the changes need from this call until that one (as for
    /// `apply`). By default all the work is left to the second step.
    fn prepare(&self, changes: Vec<Change>) -> Result<Prepared<'_>, StoreError> {
        Ok(Prepared::new(move || self.apply(changes)))
    }
    /// Serialises the publishes of repository `repo` among everyone who writes this
    /// store: a publish decides what changes from reads made while it holds this.
    fn lock_repo(&self, repo: &str) -> Result<RepoGuard, StoreError>;
    /// Serialises the changes of farm build `build`'s tasks (and of its record) among
    /// everyone who writes this store: each reads the tasks while it holds this, so none
    /// writes back what another changed meanwhile. [`Store::claim`] takes it too, inside
    /// the store. One at a time per caller: a holder never asks for a second build's.
    fn lock_farm_build(&self, build: BuildId) -> Result<BuildGuard, StoreError>;
    /// Bytes of the running log of task (`build`, `index`) held so far.
    fn task_log_len(&self, build: BuildId, index: u32) -> Result<u64, StoreError>;
    /// Stores `bytes` as the part of that log starting at byte `at` (callers append at
    /// [`Store::task_log_len`], under the build's lock; a part already there stays).
    fn append_task_log(
        &self,
        build: BuildId,
        index: u32,
        at: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError>;
    /// The running log of task (`build`, `index`), its parts in order.
    fn task_log(&self, build: BuildId, index: u32) -> Result<Vec<u8>, StoreError>;
    fn remove_task_log(&self, build: BuildId, index: u32) -> Result<(), StoreError>;
    /// Repositories whose delete began and did not end: their files and keys still go.
    fn deleting(&self) -> Result<Vec<String>, StoreError>;
    /// The armored secret key that signs repository `repo`'s indexes, if it has one.
    fn secret_key(&self, repo: &str) -> Result<Option<String>, StoreError>;
    /// Keeps `armored` as repository `repo`'s secret key, durably, from readers other
    /// than the store's owner.
    fn put_secret_key(&self, repo: &str, armored: &str) -> Result<(), StoreError>;
    fn remove_secret_key(&self, repo: &str) -> Result<(), StoreError>;
    /// Where the secret key of `repo` is kept, for a person reading a message.
    fn secret_key_place(&self, repo: &str) -> String;
    /// Whether asking is quick enough to do on a server's request thread (an embedded
    /// store); otherwise a server asks on its blocking pool.
    fn is_local(&self) -> bool {
        false
    }
    /// Whether secret keys put here stay on this machine, readable by their owner only
    /// (the embedded store's files). A store that others read — every server of a shared
    /// database, its backups — is given passphrase-protected keys only.
    fn keeps_secrets_local(&self) -> bool {
        false
    }
    /// Tells commands that a server at `url` holds this store now (`None`: no more), for
    /// a store that one process holds at a time; others need no telling.
    fn serving(&self, _url: Option<&str>) -> Result<(), StoreError> {
        Ok(())
    }
    /// For a store that other processes write too: a [`Follower`] of repositories'
    /// changes, for a server that keeps copies of what it serves. From then on every
    /// batch that changes a repository returns only once each live follower has
    /// acknowledged it (or its lease has run out), so whatever answers a write has
    /// already made every server drop what the write changed. `None` for a store only
    /// this process writes.
    fn follow(&self) -> Result<Option<Box<dyn Follower>>, StoreError> {
        Ok(None)
    }
    fn repo(&self, name: &str) -> Result<Option<RepoRecord>, StoreError>;
    /// All repositories, by name.
    fn repos(&self) -> Result<Vec<RepoRecord>, StoreError>;
    fn package(&self, repo: &str, path: &str) -> Result<Option<PackageRecord>, StoreError>;
    /// The packages of a repository, by path.
    fn packages(&self, repo: &str) -> Result<Vec<PackageRecord>, StoreError>;
    /// The packages of a repository with this name (any kind, platform, version).
    fn packages_named(&self, repo: &str, name: &str) -> Result<Vec<PackageRecord>, StoreError>;
    fn lock(&self, configuration: &str) -> Result<Option<LockRecord>, StoreError>;
    /// Every configuration lock, by configuration name.
    fn locks(&self) -> Result<Vec<LockRecord>, StoreError>;
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token (revoked ones too), by id.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Makes everything applied so far durable (on shutdown).
    fn flush(&self) -> Result<(), StoreError>;
    /// The index entries of one index tree, in their listing order. Shared: a backend may
    /// keep them between calls.
    fn index_entries(&self, repo: &str, tree: &str) -> Result<Arc<Vec<IndexRow>>, StoreError>;
    /// An index tree's cached segments, by key. Shared, like [`Store::index_entries`].
    fn segments(&self, repo: &str, tree: &str) -> Result<Arc<Segments>, StoreError>;
    /// The files that left an index tree at its current generation.
    fn left_files(&self, repo: &str, tree: &str) -> Result<Vec<LeftFile>, StoreError>;
    /// The generation index directory `dir` of `repo` shows (none before its first
    /// index build, or in a data directory written before generations were recorded).
    fn generation(&self, repo: &str, dir: &str) -> Result<Option<Generation>, StoreError>;

    /// A number for a new farm build, never handed out before.
    fn new_build_id(&self) -> Result<BuildId, StoreError>;
    fn farm_build(&self, id: BuildId) -> Result<Option<FarmBuild>, StoreError>;
    /// Every farm build, newest first.
    fn farm_builds(&self) -> Result<Vec<FarmBuild>, StoreError>;
    /// A build's tasks, by index.
    fn tasks(&self, build: BuildId) -> Result<Vec<Task>, StoreError>;
    fn task(&self, build: BuildId, index: u32) -> Result<Option<Task>, StoreError>;
    /// Atomically takes the oldest claimable task of any of `platforms` (oldest build
    /// first, then build order): two callers never get the same task. It is stored as
    /// claimed under `lease`, its attempts counted and the claim put in its history.
    /// Finds the task without reading the queue (claimable tasks are kept by platform).
    /// The task is taken under its build's lock ([`Store::lock_farm_build`]), waiting
    /// while another holds it, so a claim never lands between another change's read of
    /// the build's tasks and its write (a cancel would write the task back queued).
    fn claim(
        &self,
        platforms: &[String],
        lease: Lease,
        now: i64,
    ) -> Result<Option<Task>, StoreError>;
    /// The held tasks whose lease ran out before `now`, oldest first (without reading
    /// the queue: leases are kept by expiry).
    fn expired(&self, now: i64) -> Result<Vec<(BuildId, u32)>, StoreError>;
    /// How many tasks are in each state, over every build.
    fn task_counts(&self) -> Result<Vec<(TaskState, u64)>, StoreError>;
    /// How many tasks an agent could claim now, over every platform.
    fn claimable(&self) -> Result<u64, StoreError>;
}

/// An index tree as a batch leaves it, worked out before the batch is applied: the rows
/// it holds now and what the batch changes in them. A publish renders the tree's new
/// index from it while the store applies the batch, and uses that index only if the
/// rows the store then holds are the same ([`TreeAfter::matches`]).
pub struct TreeAfter {
    before: Arc<Vec<IndexRow>>,
    changed: std::collections::BTreeMap<String, Option<IndexRow>>,
}

impl TreeAfter {
    /// Tree `tree` of repository `repo` after `changes`, from its rows `before` them and
    /// `stored`: the record each path the changes name has before them (if any). Changes
    /// apply in order, as a batch's do: a path put and then removed leaves nothing.
    pub fn new(
        before: Arc<Vec<IndexRow>>,
        repo: &str,
        tree: &str,
        changes: &[Change],
        stored: &HashMap<String, PackageRecord>,
    ) -> TreeAfter {
        let listed_here = |r: &PackageRecord| {
            r.listed
                .as_ref()
                .filter(|l| l.tree == tree)
                .map(|l| l.row_key(&r.path))
        };
        let mut now: HashMap<&str, Option<&PackageRecord>> = HashMap::new();
        let mut changed = std::collections::BTreeMap::new();
        for c in changes {
            let (path, new) = match c {
                Change::PutPackage { repo: r, record } if r == repo => {
                    (record.path.as_str(), Some(record))
                }
                Change::RemovePackage { repo: r, path } if r == repo => (path.as_str(), None),
                _ => continue,
            };
            let old = match now.get(path) {
                Some(old) => *old,
                None => stored.get(path),
            };
            if let Some(key) = old.and_then(listed_here) {
                changed.insert(key, None);
            }
            if let Some(r) = new
                && let Some(key) = listed_here(r)
            {
                let row =
                    IndexRow::new(key.clone(), r.published, r.sha256.clone(), r.index.clone());
                changed.insert(key, Some(row));
            }
            now.insert(path, new);
        }
        TreeAfter { before, changed }
    }

    /// The rows, in key order.
    pub fn rows(&self) -> Vec<&IndexRow> {
        let changed = self.changed.iter().map(|(k, r)| (k, r.as_ref()));
        merge_by_key(self.before.iter(), changed, |r| &r.key)
    }

    /// Whether `rows` (as the store holds them) are these rows: the same keys, each with
    /// the same identity (and so the same rendered entry).
    pub fn matches(&self, rows: &[IndexRow]) -> bool {
        let mine = self.rows();
        mine.len() == rows.len()
            && mine
                .iter()
                .zip(rows)
                .all(|(a, b)| a.key == b.key && a.identity() == b.identity())
    }
}

/// `rows` (in key order) with `changed` applied: rows replaced, removed or added.
pub(crate) fn merge_rows(
    rows: Vec<IndexRow>,
    changed: std::collections::BTreeMap<String, Option<IndexRow>>,
) -> Vec<IndexRow> {
    merge_by_key(rows, changed, |r| &r.key)
}

/// Rows in key order with changes in key order applied (`None`: the row at that key
/// goes), for owned rows and borrowed ones alike.
fn merge_by_key<T, K: AsRef<str>>(
    rows: impl IntoIterator<Item = T, IntoIter: ExactSizeIterator>,
    changed: impl IntoIterator<Item = (K, Option<T>), IntoIter: ExactSizeIterator>,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    let (rows, changed) = (rows.into_iter(), changed.into_iter());
    let mut out = Vec::with_capacity(rows.len() + changed.len());
    let mut old = rows.peekable();
    for (k, row) in changed {
        let k = k.as_ref();
        while let Some(r) = old.next_if(|r| key(r) < k) {
            out.push(r);
        }
        old.next_if(|r| key(r) == k);
        out.extend(row);
    }
    out.extend(old);
    out
}

#[cfg(test)]
mod tests {
    use super::conformance::record;
    use super::*;

    #[test]
    fn a_repository_lock_is_held_by_one_at_a_time() {
        let locks = NamedLocks::default();
        conformance::held_alone(|| {
            let g = locks.lock("r");
            // Another name is not held up by it.
            drop(locks.lock("other"));
            Box::new(g)
        });
    }

    #[test]
    fn sled_store_keeps_repos_packages_and_locks_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let repo = |name: &str| RepoRecord {
            name: name.into(),
            kind: RepoKind::Volatile,
            platforms: vec![],
            keep: Some(3),
            created: 0,
            key: None,
            yum_compression: Default::default(),
            pending: vec![],
            private: false,
        };
        store
            .apply(vec![
                Change::PutRepo(repo("nightly")),
                Change::PutRepo(repo("nightly-old")),
                Change::PutPackage {
                    repo: "nightly".into(),
                    record: record("b/tool.rpm"),
                },
                Change::PutPackage {
                    repo: "nightly".into(),
                    record: record("a/tool.rpm"),
                },
                Change::PutPackage {
                    repo: "nightly-old".into(),
                    record: record("c/tool.rpm"),
                },
            ])
            .unwrap();
        let names: Vec<_> = store.repos().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["nightly", "nightly-old"]);
        // A repository whose name extends another's does not leak into it.
        let paths: Vec<_> = store
            .packages("nightly")
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["a/tool.rpm", "b/tool.rpm"]);
        store
            .apply(vec![Change::RemovePackage {
                repo: "nightly".into(),
                path: "a/tool.rpm".into(),
            }])
            .unwrap();
        assert!(store.package("nightly", "a/tool.rpm").unwrap().is_none());
        assert!(store.package("nightly", "b/tool.rpm").unwrap().is_some());
        let named: Vec<_> = store
            .packages_named("nightly", "tool")
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(named, ["b/tool.rpm"]);
        assert!(store.packages_named("nightly", "too").unwrap().is_empty());
        drop(store);
        // Durable across a reopen (sled lets go of its lock file shortly after a drop).
        let store = SledStore::open_waiting(
            &dir.path().join("store"),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(store.packages("nightly-old").unwrap().len(), 1);
        assert_eq!(store.repo("nightly").unwrap().unwrap().keep, Some(3));
    }

    #[test]
    fn remembered_index_trees_match_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        let listed = |path: &str, order: &str, sha: &str| PackageRecord {
            sha256: sha.repeat(64),
            listed: Some(Listing {
                tree: "yum/el9".into(),
                order: order.into(),
            }),
            index: Arc::new(IndexEntry::Yum {
                primary: format!("<package>{path}</package>"),
                filelists: String::new(),
                other: String::new(),
            }),
            ..record(path)
        };
        let put = |record| Change::PutPackage {
            repo: "r".into(),
            record,
        };
        let segment = |key: &str, bytes: &[u8]| Change::PutSegment {
            repo: "r".into(),
            tree: "yum/el9".into(),
            key: key.into(),
            bytes: bytes.to_vec(),
        };
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        store
            .apply(vec![
                put(listed("x.rpm", "m", "1")),
                put(listed("y.rpm", "n", "1")),
                segment("s1", b"one"),
            ])
            .unwrap();
        // Read once, so the trees are remembered, then changed by batches.
        assert_eq!(store.index_entries("r", "yum/el9").unwrap().len(), 2);
        assert_eq!(store.segments("r", "yum/el9").unwrap().len(), 1);
        store
            .apply(vec![
                // Rebuilt, listed elsewhere in the order; another removed; one added.
                put(listed("x.rpm", "z", "2")),
                Change::RemovePackage {
                    repo: "r".into(),
                    path: "y.rpm".into(),
                },
                put(listed("w.rpm", "a", "3")),
                segment("s2", b"two"),
                Change::RemoveSegment {
                    repo: "r".into(),
                    tree: "yum/el9".into(),
                    key: "s1".into(),
                },
            ])
            .unwrap();
        let remembered = store.index_entries("r", "yum/el9").unwrap();
        let keys: Vec<&str> = remembered.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a\0w.rpm", "z\0x.rpm"]);
        // A batch too big to patch row by row is merged: rows added around and between
        // the kept ones, one moved, one removed, one put twice (the second stays).
        let mut many: Vec<Change> = (0..30)
            .map(|i| put(listed(&format!("p{i:02}.rpm"), &format!("{}", i % 3), "4")))
            .collect();
        many.push(put(listed("w.rpm", "b", "5")));
        many.push(Change::RemovePackage {
            repo: "r".into(),
            path: "x.rpm".into(),
        });
        many.push(put(listed("p07.rpm", "y", "6")));
        store.apply(many).unwrap();
        let merged = store.index_entries("r", "yum/el9").unwrap();
        assert_eq!(merged.len(), 31);
        assert_eq!(merged[30].key, "y\0p07.rpm");
        assert!(merged.windows(2).all(|w| w[0].key < w[1].key));
        let segments = store.segments("r", "yum/el9").unwrap();
        drop(store);
        let fresh = SledStore::open_waiting(
            &dir.path().join("store"),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(*fresh.index_entries("r", "yum/el9").unwrap(), *merged);
        assert_eq!(*fresh.segments("r", "yum/el9").unwrap(), *segments);
        assert_ne!(remembered[0].identity(), remembered[1].identity());
    }
}
