//! Publishing: package files in, repository out. Every file is read and checked before
//! anything is written; then the files are stored at their download-from paths, recorded
//! in the store, and the indexes of the platforms they touch are rebuilt from the store's
//! pre-rendered entries (no other package file is read). Files that leave the repository
//! (replaced, pruned) are deleted only after the indexes stop naming them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::package::{self, Identity, Parsed};
use super::{RepoError, Repositories};
use crate::blobs::Body;
use crate::layout::{PackageFormat, Platform};
use crate::paths::{checksum_key, checksum_line, log_path, record_path};
use crate::progress::Progress;
use crate::store::{
    Change, FileKind, IndexEntry, IndexRow, LeftFile, Listing, PackageRecord, RepoKind, RepoRecord,
    TreeAfter,
};
use crate::version::{self, Scheme};

#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Sign each RPM with the repository key.
    pub sign: bool,
    /// The platform of loose files (those not inside a `pack --out` tree).
    pub platform: Option<String>,
    /// Into a registered repository without a registration: third-party packages the
    /// project carries as externals, recorded as such.
    pub external: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Added,
    Replaced,
    Unchanged,
    /// A part of a Debian source package uploaded alone: kept aside until the `.dsc`
    /// that names it is uploaded (see [`Repositories::hold_part`]).
    Held,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Replaced => "replaced",
            Action::Unchanged => "unchanged",
            Action::Held => "held",
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FileOutcome {
    pub path: String,
    pub kind: FileKind,
    pub action: Action,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PublishReport {
    pub repo: String,
    pub files: Vec<FileOutcome>,
    /// Paths that left the repository: replaced by a new build, or pruned by `--keep`.
    pub removed: Vec<String>,
    /// Index trees rewritten (`yum/el9_x86_64`, `apt/deb12`).
    pub indexes: Vec<String>,
}

/// An uploaded file to publish.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The temporary file holding it.
    pub file: PathBuf,
    /// Its download-from path.
    pub key: String,
    pub register: Option<UploadRegistration>,
}

/// What an upload that registers a package claims (see [`super::release::registration`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct UploadRegistration {
    pub configuration: String,
    /// The lock's hash, computed from the client's tree.
    pub lock_sha256: String,
    /// Name, version and release the header must give.
    pub expect: (String, String, String),
}

/// A file to publish: where it comes from and where it goes.
pub(super) struct Candidate {
    pub source: PathBuf,
    /// The download-from path inside the repository, when the input tree gives it.
    pub key: Option<String>,
    pub platform: Option<String>,
    /// `register`: the name, version and release the package must have.
    pub expect: Option<(String, String, String)>,
    /// The configuration it was built from, when known.
    pub configuration: Option<String>,
    /// How messages name it, when not by its source path (an upload's URL path).
    pub label: Option<String>,
}

/// A file to publish: where it comes from and where it goes.
pub(super) fn candidate(
    source: PathBuf,
    key: Option<String>,
    platform: Option<String>,
) -> Candidate {
    Candidate {
        source,
        key,
        platform,
        expect: None,
        configuration: None,
        label: None,
    }
}

/// A checked file, ready to store.
struct Ready {
    key: String,
    content: Content,
    record: PackageRecord,
    previous: Option<PackageRecord>,
    /// A `.dsc`'s parts: where each is read from (checked against the record's sums when
    /// stored), and the place its candidate had.
    parts: Vec<(PathBuf, PartPlace)>,
}

/// Where a candidate lies, to match a `.dsc` with the files it names: its download-from
/// directory when the input gives one, else the directory of its source.
type PartPlace = (String, String);

fn part_place(c: &Candidate, file_name: &str) -> PartPlace {
    let dir = match &c.key {
        Some(k) => format!("key:{}", k.rsplit_once('/').map(|(d, _)| d).unwrap_or("")),
        None => format!(
            "source:{}",
            c.source
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    };
    (dir, file_name.to_string())
}

/// The name a candidate's kind is read from: its key's or label's last part (an upload's
/// source is a temporary file), else the source's own name.
fn candidate_name(c: &Candidate) -> std::borrow::Cow<'_, str> {
    match c.key.as_ref().or(c.label.as_ref()) {
        Some(k) => k.rsplit('/').next().unwrap_or(k).into(),
        None => c
            .source
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
    }
}

/// A checked file's bytes: kept from the check, or — once a publish has kept
/// [`KEEP_BYTES`] (the default) — read again when stored (streamed, and refused if they
/// no longer have the checked sha256), so a publish of many big packages does not hold
/// them all in memory: from the source, or, for RPMs signed here (whose signed bytes
/// exist nowhere else), from an unnamed file in the data directory.
enum Content {
    Kept(Vec<u8>),
    /// Stored already: the bytes are in the blobs.
    Stored,
    Source(PathBuf),
    /// `len` bytes at `at` in the publish's [`Staging`] file.
    Staged {
        at: u64,
        len: u64,
    },
}

/// Signed RPMs a publish cannot keep in memory: one unnamed file under the data directory
/// (not in memory, nor on a `/tmp` that may be memory), each package at its own offset —
/// one descriptor however many there are — gone when the publish ends, crash or not.
struct Staging<'a> {
    dir: &'a Path,
    file: std::sync::OnceLock<Result<File, (std::io::ErrorKind, String)>>,
    end: AtomicU64,
}

impl Staging<'_> {
    fn new(dir: &Path) -> Staging<'_> {
        Staging {
            dir,
            file: Default::default(),
            end: AtomicU64::new(0),
        }
    }

    fn io(&self, source: std::io::Error) -> RepoError {
        RepoError::Io {
            path: self.dir.to_path_buf(),
            source,
        }
    }

    fn file(&self) -> Result<&File, RepoError> {
        let made = self.file.get_or_init(|| {
            fs::create_dir_all(self.dir)
                .and_then(|()| tempfile::tempfile_in(self.dir))
                .map_err(|e| (e.kind(), e.to_string()))
        });
        made.as_ref()
            .map_err(|(kind, e)| self.io(std::io::Error::new(*kind, e.clone())))
    }

    /// Stages `bytes`; where they went.
    fn put(&self, bytes: &[u8]) -> Result<Content, RepoError> {
        use std::os::unix::fs::FileExt;
        let file = self.file()?;
        let len = bytes.len() as u64;
        let at = self.end.fetch_add(len, Ordering::Relaxed);
        file.write_all_at(bytes, at).map_err(|e| self.io(e))?;
        Ok(Content::Staged { at, len })
    }

    /// A reader of staged bytes.
    fn read(&self, at: u64, len: u64) -> Result<StagedBytes<'_>, RepoError> {
        Ok(StagedBytes {
            file: self.file()?,
            at,
            end: at + len,
        })
    }
}

struct StagedBytes<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl std::io::Read for StagedBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.at) as usize);
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// From how many files a publish checks and stores them on every core.
const CORES_FROM: usize = 8;

/// From this many changes a publish's batch keeps a core busy for a while (about 20 µs a
/// change in sled), so the index rendered beside it keeps to the other core; a smaller
/// batch (one upload into a big repository) ends at once, and the render, then the
/// longer task, uses every core.
const BUSY_BATCH: usize = 256;

/// How many bytes of checked files one publish keeps in memory, by default.
pub(super) const KEEP_BYTES: u64 = 256 << 20;

/// Takes `n` bytes of what is left of `budget` after `kept`, if there are that many.
fn keep(kept: &AtomicU64, budget: u64, n: u64) -> bool {
    kept.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
        (k + n <= budget).then_some(k + n)
    })
    .is_ok()
}

/// The object that holds a package's bytes, relative to the repository: for RPMs and DEBs
/// their index alias (content-named, so never overwritten), for tarballs their path.
pub fn object_key(repos: &Repositories, r: &PackageRecord) -> String {
    alias_key(repos, r).unwrap_or_else(|| r.path.clone())
}

/// Where a package's second name lives, relative to the repository: RPMs under their
/// platform's YUM tree (source RPMs under their os's source tree), DEBs and Debian
/// source packages under the APT pool, so each index names its packages with plain
/// relative paths. The name holds the content's hash: a rebuild gets a new name, and the
/// old one stays, for the old index, until the new index is in place.
pub fn alias_key(repos: &Repositories, r: &PackageRecord) -> Option<String> {
    match r.kind {
        FileKind::Rpm | FileKind::Srpm => Some(format!(
            "{}/{}",
            yum_dir(repos, &yum_tree_name(repos, r)?),
            index_href(r)
        )),
        FileKind::Deb | FileKind::Dsc => {
            Some(format!("{}/{}", repos.layout.repository.apt, index_href(r)))
        }
        FileKind::Tgz => None,
    }
}

/// Every file a record stands for, as (object key, download-from path), relative to the
/// repository: the package itself, and a `.dsc`'s parts (in its pool directory, and
/// beside it at its path).
pub fn record_files(repos: &Repositories, r: &PackageRecord) -> Vec<(String, String)> {
    let object = object_key(repos, r);
    let mut out = Vec::with_capacity(1 + r.parts.len());
    let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
    for part in &r.parts {
        let at = |p: &str| match dir(p) {
            Some(d) => format!("{d}/{}", part.name),
            None => part.name.clone(),
        };
        out.push((at(&object), at(&r.path)));
    }
    out.insert(0, (object, r.path.clone()));
    out
}

/// Whether `path` (relative to the repository) has the shape of a package's index name
/// ([`index_href`] below a YUM tree or the APT base): content-named, so its bytes never
/// change while it exists.
pub fn is_index_name(repos: &Repositories, path: &str) -> bool {
    let hex_id = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let apt = format!("{}/pool/", repos.layout.repository.apt);
    if let Some(rest) = path.strip_prefix(&apt) {
        // `pool/<id>-<file>`, or a Debian source package's `pool/<id>/<file>`.
        return match rest.split_once('/') {
            Some((id, file)) => hex_id(id) && !file.is_empty() && !file.contains('/'),
            None => rest
                .split_once('-')
                .is_some_and(|(id, f)| hex_id(id) && !f.is_empty()),
        };
    }
    let Some((dir, file)) = path.rsplit_once('/') else {
        return false;
    };
    let yum_root = repos.layout.repository.yum.split("${").next().unwrap_or("");
    dir.ends_with("/packages")
        && path.starts_with(yum_root)
        && file
            .split_once('-')
            .is_some_and(|(id, f)| hex_id(id) && !f.is_empty())
}

/// The YUM tree name a (source) RPM is listed in: its platform, or `<os>-source`.
fn yum_tree_name(repos: &Repositories, r: &PackageRecord) -> Option<String> {
    match r.kind {
        FileKind::Srpm => Some(format!(
            "{}-source",
            repos.layout.platforms.get(&r.platform)?.os
        )),
        _ => Some(r.platform.clone()),
    }
}

/// A package's path as its index names it, relative to the YUM or APT base:
/// `packages/<id>-<file>` (RPM), `pool/<id>-<file>` (DEB), where `<id>` hashes the
/// record's path and content: a rebuild gets a new name, and no two records share one (so
/// removing one never takes a file another still lists). One flat directory: a directory
/// per package would cost an inode each. A Debian source package gets a directory,
/// `pool/<id>/`, as its `.dsc` names its other files by bare name.
fn index_href(r: &PackageRecord) -> String {
    let file = r.path.rsplit('/').next().unwrap_or(&r.path);
    let id = Sha256::digest(format!("{}\0{}", r.path, r.sha256));
    match r.kind {
        FileKind::Deb => format!("pool/{id:.16x}-{file}"),
        FileKind::Dsc => format!("pool/{id:.16x}/{file}"),
        _ => format!("packages/{id:.16x}-{file}"),
    }
}

/// Time spent in each step of one publish, logged at debug level
/// (`PACKYARD_LOG=packyard::repo=debug`): where an admin looks when publishing is slow.
struct Phases {
    what: String,
    start: std::time::Instant,
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start(what: String) -> Phases {
        let now = std::time::Instant::now();
        Phases {
            what,
            start: now,
            last: now,
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.laps
            .push((step, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }

    /// Notes how long a part of the next step took that runs beside another.
    fn part(&mut self, part: &'static str, took: std::time::Duration) {
        self.laps.push((part, took.as_secs_f64() * 1000.0));
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        let laps: Vec<String> = self
            .laps
            .iter()
            .map(|(s, ms)| format!("{s} {ms:.2}"))
            .collect();
        tracing::debug!(
            what = %self.what,
            total_ms = format!("{:.2}", self.start.elapsed().as_secs_f64() * 1000.0),
            steps_ms = %laps.join(", "),
            "timing"
        );
    }
}

/// An index tree rendered while the batch that changes its rows was applied: from the
/// rows foreseen, with the segments known then.
struct Ahead {
    after: TreeAfter,
    known: Arc<crate::store::Segments>,
    rendered: super::segments::Rendered,
}

/// Where a part of a Debian source package waits for its `.dsc` (a hidden prefix:
/// never served).
fn held_key(repo: &str, key: &str) -> String {
    format!("{repo}/.held/{key}")
}

/// `yum/<platform>`, relative to the repository.
pub fn yum_dir(repos: &Repositories, platform: &str) -> String {
    repos
        .layout
        .repository
        .yum
        .replace("${platformName}", platform)
}

impl Repositories {
    /// Publishes `inputs` (files, or `pack --out` trees) into repository `name`.
    pub fn publish(
        &self,
        name: &str,
        inputs: &[PathBuf],
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport, RepoError> {
        let candidates = collect(inputs, opts, &self.layout)?;
        self.publish_candidates(name, candidates, opts, progress)
    }

    /// Publishes uploaded files (temporary files with the download-from path each goes
    /// to; the platform comes from the path). Messages name the path, not the temporary
    /// file. An upload that registers must name a locked configuration with the lock's
    /// hash as the client computed it, and goes to a registered repository only.
    pub fn publish_uploads(
        &self,
        name: &str,
        uploads: &[Upload],
        opts: &PublishOptions,
    ) -> Result<PublishReport, RepoError> {
        // A `.dsc`'s parts uploaded before it, held until now.
        let mut held = Vec::new();
        let mut with_parts = uploads.to_vec();
        for u in uploads.iter().filter(|u| u.key.ends_with(".dsc")) {
            for (key, file) in self.held_parts(name, u, uploads)? {
                held.push((key.clone(), file));
                let source = held.last().map(|(_, f)| f.path().to_path_buf());
                with_parts.push(Upload {
                    file: source.unwrap_or_default(),
                    key,
                    register: u.register.clone(),
                });
            }
        }
        let report = self.publish_upload_batch(name, &with_parts, opts)?;
        for (key, _) in &held {
            self.blobs.remove(&held_key(name, key))?;
        }
        Ok(report)
    }

    /// Keeps `file`, a part of a Debian source package uploaded to `key` in `repo`, until
    /// the `.dsc` that names it is uploaded (clients upload a `.dsc` last). Held parts
    /// are objects no index names: `gc` removes those no `.dsc` came for.
    pub fn hold_part(&self, repo: &str, key: &str, file: &Path) -> Result<(), RepoError> {
        self.repo(repo)?;
        crate::blobs::check_key(key)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        if !key.contains('/') || !package::is_source_part(name) {
            return Err(RepoError::BadPackage {
                path: key.into(),
                why: "only the parts of a Debian source package are held, at their \
                      download-from path (what `pack --source` wrote under --out)"
                    .into(),
            });
        }
        let mut from = File::open(file).map_err(|source| RepoError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let body = Body::Read {
            from: &mut from,
            source: file,
        };
        self.blobs.put(&held_key(repo, key), body, None)?;
        Ok(())
    }

    /// The held parts the `.dsc` uploaded as `dsc` names that are not among `uploads`,
    /// each copied to a temporary file.
    fn held_parts(
        &self,
        repo: &str,
        dsc: &Upload,
        uploads: &[Upload],
    ) -> Result<Vec<(String, tempfile::NamedTempFile)>, RepoError> {
        let Some((dir, _)) = dsc.key.rsplit_once('/') else {
            return Ok(Vec::new());
        };
        // A damaged `.dsc` is refused by the publish, with its reason.
        let Ok(Parsed::Dsc(parsed)) = fs::read(&dsc.file)
            .map_err(|e| e.to_string())
            .and_then(|b| package::parse(&dsc.key, &b))
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for f in &parsed.files {
            let key = format!("{dir}/{}", f.name);
            if uploads.iter().any(|u| u.key == key) {
                continue;
            }
            let Some(bytes) = self.blobs.get(&held_key(repo, &key))? else {
                continue;
            };
            let io = |source| RepoError::Io {
                path: self.scratch.clone(),
                source,
            };
            fs::create_dir_all(&self.scratch).map_err(io)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.scratch).map_err(io)?;
            std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
            out.push((key, file));
        }
        Ok(out)
    }

    fn publish_upload_batch(
        &self,
        name: &str,
        uploads: &[Upload],
        opts: &PublishOptions,
    ) -> Result<PublishReport, RepoError> {
        let mut candidates = Vec::new();
        for u in uploads {
            // A bare file name is a loose file: it goes to `<name>/<version>/<platform>/`.
            let key = u.key.contains('/').then(|| u.key.clone());
            let mut c = Candidate {
                label: Some(u.key.clone()),
                ..candidate(
                    u.file.clone(),
                    key,
                    platform_in_path(&u.key, &self.layout).or_else(|| opts.platform.clone()),
                )
            };
            if let Some(r) = &u.register {
                self.check_registration(name, r)?;
                c.expect = Some(r.expect.clone());
                c.configuration = Some(r.configuration.clone());
            }
            candidates.push(c);
        }
        self.publish_candidates(name, candidates, opts, &crate::progress::Quiet)
    }

    fn check_registration(&self, repo: &str, r: &UploadRegistration) -> Result<(), RepoError> {
        if self.repo(repo)?.kind != RepoKind::Registered {
            return Err(RepoError::Lock {
                what: format!("{repo} is a volatile repository"),
                hint: "register into a registered repository; publish fills volatile ones".into(),
            });
        }
        match self.store.lock(&r.configuration)? {
            None => Err(RepoError::Lock {
                what: format!("{} is not locked", r.configuration),
                hint: format!(
                    "only packages of a locked configuration are registered: `packyard lock {}`",
                    r.configuration
                ),
            }),
            Some(l) if l.sha256 != r.lock_sha256 => Err(RepoError::Lock {
                what: format!(
                    "{} is locked with sha256 {}, but the client's tree gives {}",
                    r.configuration, l.sha256, r.lock_sha256
                ),
                hint: "the configuration's entry changed since it was locked; undo the edit, \
                       or `packyard clone` a new version"
                    .into(),
            }),
            Some(l) => {
                // What the package must be comes from the lock this store holds, not
                // from what the client says.
                let want = super::release::lock_expect(&l);
                if r.expect != want {
                    return Err(RepoError::Lock {
                        what: format!(
                            "the upload registers {}-{}-{}, but {} is locked as {}-{}-{}",
                            r.expect.0,
                            r.expect.1,
                            r.expect.2,
                            r.configuration,
                            want.0,
                            want.1,
                            want.2
                        ),
                        hint: "register with the tree the configuration was locked from".into(),
                    });
                }
                Ok(())
            }
        }
    }

    /// A registration checked against a module tree of this side's own (a server
    /// started with `--tree`): the configuration there still matches its lock, and `key`
    /// is one of its download-from paths for `platform`. Returns what the package must be.
    pub fn check_registration_in(
        &self,
        tree: &crate::config::Tree,
        r: &UploadRegistration,
        key: &str,
    ) -> Result<(String, String, String), RepoError> {
        if self.check_lock(tree, &r.configuration)?.is_none() {
            return Err(RepoError::Lock {
                what: format!("{} is not locked", r.configuration),
                hint: format!(
                    "only packages of a locked configuration are registered: `packyard lock {}`",
                    r.configuration
                ),
            });
        }
        let platform =
            platform_in_path(key, &self.layout).ok_or_else(|| RepoError::BadPackage {
                path: key.into(),
                why: "its path names no platform".into(),
            })?;
        super::release::expected(
            tree,
            &self.layout,
            &r.configuration,
            &Default::default(),
            key,
            &platform,
        )
        .map_err(|why| RepoError::BadPackage {
            path: key.into(),
            why: format!("not built from {}: {why}", r.configuration),
        })
    }

    pub(super) fn publish_candidates(
        &self,
        name: &str,
        candidates: Vec<Candidate>,
        opts: &PublishOptions,
        progress: &dyn Progress,
    ) -> Result<PublishReport, RepoError> {
        // The record is read under the lock: another publish may have just changed it.
        self.repo(name)?;
        let _guard = self.lock_repo(name)?;
        let mut timer = Phases::start(format!("publish to {name}"));
        let repo = self.repo(name)?;
        // Only a registration (a locked configuration's packages) or an explicit
        // external goes into a registered repository.
        match (repo.kind, opts.external) {
            (RepoKind::Registered, false) => {
                if let Some(c) = candidates.iter().find(|c| c.configuration.is_none()) {
                    return Err(RepoError::NotRegistered {
                        repo: name.into(),
                        path: c
                            .label
                            .clone()
                            .unwrap_or_else(|| c.source.display().to_string()),
                    });
                }
            }
            (RepoKind::Volatile, true) => {
                return Err(RepoError::Key {
                    what: format!(
                        "{name} is a volatile repository; --external is for registered ones"
                    ),
                    hint: "publish to a volatile repository without --external".into(),
                });
            }
            _ => {}
        }
        let total: u64 = match progress.shown() {
            true => candidates
                .iter()
                .filter_map(|c| fs::metadata(&c.source).ok())
                .map(|m| m.len())
                .sum(),
            false => 0,
        };
        progress.start("checking", total);
        // Loaded before anything is written: a key that does not load stops the publish
        // here. It signs the indexes, and the RPMs too with --sign.
        let key = if opts.sign || repo.key.is_some() {
            Some(self.signer(&repo)?)
        } else {
            None
        };
        let rpm_signer = if opts.sign { key.as_ref() } else { None };

        // 1. Read and check everything (on every core); nothing is written if any file
        // is bad.
        let staging = Staging::new(&self.scratch);
        let mut ready = self
            .check_all(&repo, candidates, rpm_signer, &staging, progress)
            .into_iter()
            .collect::<Result<Vec<Ready>, RepoError>>()?;
        for r in ready.iter_mut().filter(|_| opts.external) {
            r.record.external = r.record.configuration.is_none();
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut identities: HashMap<IdentityKey, usize> = HashMap::new();
        for (i, r) in ready.iter().enumerate() {
            if let Some(&other) = identities.get(&identity_key(&r.record)) {
                return Err(RepoError::BadPackage {
                    path: r.key.clone(),
                    why: format!(
                        "the same package ({} {}-{} {}) as {} in this publish",
                        r.record.name,
                        r.record.version,
                        r.record.release,
                        r.record.arch,
                        ready[other].key
                    ),
                });
            }
            identities.insert(identity_key(&r.record), i);
            if !seen.insert(&r.key) {
                return Err(RepoError::BadPackage {
                    path: r.key.clone(),
                    why: "given twice in one publish".into(),
                });
            }
        }
        timer.lap("checked");
        // 2. What each file does to the repository.
        // Only records of the names being published can be twins or be pruned — and only
        // of names with a file that changes: a file published again as it is changes
        // nothing (a repository never holds one identity twice), so a publish of a
        // directory most of which is there already reads no records for it.
        let mut existing: Vec<PackageRecord> = Vec::new();
        let unchanged = |r: &Ready| {
            r.previous
                .as_ref()
                .is_some_and(|p| p.sha256 == r.record.sha256)
        };
        let names: BTreeSet<&str> = ready
            .iter()
            .filter(|r| !unchanged(r))
            .map(|r| r.record.name.as_str())
            .collect();
        for n in names {
            existing.extend(self.store.packages_named(name, n)?);
        }
        // Each path's record before this publish, for the rows its batch will leave.
        let mut stored: HashMap<String, PackageRecord> = existing
            .iter()
            .map(|p| (p.path.clone(), p.clone()))
            .collect();
        let mut changes = Vec::new();
        let mut files = Vec::new();
        let mut removed: Vec<PackageRecord> = Vec::new();
        let mut touched = BTreeSet::new();
        let mut to_write = Vec::new();
        for r in ready {
            let action = match &r.previous {
                Some(p) if p.sha256 == r.record.sha256 => Action::Unchanged,
                Some(p) if repo.kind == RepoKind::Registered => {
                    return Err(RepoError::Overwrite {
                        repo: name.into(),
                        path: r.key,
                        existing: p.sha256.clone(),
                        new: r.record.sha256,
                    });
                }
                Some(_) => Action::Replaced,
                None => Action::Added,
            };
            // The same name-version-release-arch under another path.
            let twins: Vec<&PackageRecord> = existing
                .iter()
                .filter(|e| e.path != r.key && same_identity(e, &r.record))
                .collect();
            if let Some(t) = twins.first()
                && repo.kind == RepoKind::Registered
            {
                return Err(RepoError::Overwrite {
                    repo: name.into(),
                    path: format!("{} (as {})", t.path, r.key),
                    existing: t.sha256.clone(),
                    new: r.record.sha256,
                });
            }
            files.push(FileOutcome {
                path: r.key.clone(),
                kind: r.record.kind,
                action,
                size: r.record.size,
                sha256: r.record.sha256.clone(),
            });
            if action == Action::Unchanged {
                continue;
            }
            if let Some(p) = &r.previous {
                stored.insert(p.path.clone(), p.clone());
            }
            for t in twins {
                changes.push(Change::RemovePackage {
                    repo: name.into(),
                    path: t.path.clone(),
                });
                removed.push(t.clone());
            }
            if let Some(i) = self.index_of(&r.record) {
                touched.insert(i);
            }
            // A rebuild may move to another platform: its old index changes too.
            if let Some(i) = r.previous.as_ref().and_then(|p| self.index_of(p)) {
                touched.insert(i);
            }
            changes.push(Change::PutPackage {
                repo: name.into(),
                record: r.record.clone(),
            });
            to_write.push(r);
        }

        // 3. Volatile repositories keep the newest N versions of each package.
        if let Some(keep) = repo.keep {
            let mut after: BTreeMap<String, PackageRecord> = existing
                .iter()
                .map(|p| (p.path.clone(), p.clone()))
                .collect();
            for r in &removed {
                after.remove(&r.path);
            }
            for r in &to_write {
                after.insert(r.key.clone(), r.record.clone());
            }
            for p in prune(after.values(), keep) {
                changes.push(Change::RemovePackage {
                    repo: name.into(),
                    path: p.path.clone(),
                });
                if let Some(i) = self.index_of(p) {
                    touched.insert(i);
                }
                removed.push(p.clone());
            }
            // A new file pruned at once (older than the kept versions) is not written at
            // all; the one it replaced leaves with it.
            let gone: BTreeSet<String> = removed.iter().map(|p| p.path.clone()).collect();
            let (kept, dropped): (Vec<Ready>, Vec<Ready>) =
                to_write.into_iter().partition(|r| !gone.contains(&r.key));
            to_write = kept;
            removed.extend(dropped.into_iter().filter_map(|r| r.previous));
        }

        // Indexes left dirty by an interrupted publish are rebuilt too.
        touched.extend(repo.pending.iter().cloned());
        if to_write.is_empty() && removed.is_empty() && touched.is_empty() {
            return Ok(PublishReport {
                repo: name.into(),
                files,
                removed: vec![],
                indexes: vec![],
            });
        }

        // 4. Bytes first, then the records (marking the indexes dirty), then the indexes.
        progress.start("storing", to_write.iter().map(|r| r.record.size).sum());
        // Spread over the cores: each file is its own inode and data, and one file's
        // write waits on the file system while another is prepared.
        // A package's bytes go to its object (for RPMs and DEBs the content-named index
        // alias, never overwritten); its path is a name of that object, which the store
        // records and the blobs materialise where direct readers need it. A file's bytes
        // are let go once stored: the batch's memory can be theirs.
        let store = |mut r: Ready| -> Result<Ready, RepoError> {
            progress.advance(r.record.size);
            let key = format!("{name}/{}", object_key(self, &r.record));
            let path = format!("{name}/{}", r.key);
            // An RPM's or DEB's object is content-named: stored once (a publish a crash
            // stopped after storing it finds it there); a tarball's is its path.
            let put = |body: Body<'_>, checked: Option<&str>| -> Result<(), RepoError> {
                if key == path {
                    self.blobs.put(&key, body, checked)?;
                } else {
                    self.blobs.put_new(&key, body, checked)?;
                }
                Ok(())
            };
            let checked = Some(r.record.sha256.as_str());
            match std::mem::replace(&mut r.content, Content::Stored) {
                // Each file comes here once.
                Content::Stored => {}
                Content::Kept(bytes) => put(Body::Bytes(&bytes), None)?,
                Content::Source(path) => {
                    let mut from = std::fs::File::open(&path).map_err(|source| RepoError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let body = Body::Read {
                        from: &mut from,
                        source: &path,
                    };
                    put(body, checked)?
                }
                Content::Staged { at, len } => {
                    let body = Body::Read {
                        from: &mut staging.read(at, len)?,
                        source: &self.scratch,
                    };
                    put(body, checked)?
                }
            }
            if key != path {
                self.blobs.link(&key, &path)?;
            }
            // A `.dsc`'s parts, in its pool directory and beside it.
            let files = record_files(self, &r.record);
            for (((object, at), (source, _)), part) in
                files.iter().skip(1).zip(&r.parts).zip(&r.record.parts)
            {
                let mut from = File::open(source).map_err(|e| RepoError::Io {
                    path: source.clone(),
                    source: e,
                })?;
                let object = format!("{name}/{object}");
                let body = Body::Read {
                    from: &mut from,
                    source,
                };
                self.blobs.put_new(&object, body, Some(&part.sha256))?;
                self.blobs.link(&object, &format!("{name}/{at}"))?;
            }
            // Tarballs, which build nodes download, have their checksum record beside
            // them for `file://` readers; an RPM's or DEB's is in the signed indexes, and
            // a server answers `<file>.sha256` of any package from its record.
            if r.record.kind == FileKind::Tgz {
                let line = checksum_line(&r.key, &r.record.sha256);
                self.blobs.put(
                    &format!("{name}/{}", checksum_key(&r.key)),
                    Body::Bytes(line.as_bytes()),
                    None,
                )?;
            }
            Ok(r)
        };
        let to_write = crate::cores::map(to_write, CORES_FROM, store, |_| {
            Err(RepoError::BadPackage {
                path: name.into(),
                why: "a storing thread panicked".into(),
            })
        })
        .into_iter()
        .collect::<Result<Vec<Ready>, RepoError>>()?;
        timer.lap("stored");
        let mut dirty = repo.clone();
        dirty.pending = touched.iter().cloned().collect();
        changes.push(Change::PutRepo(dirty));
        // The new indexes need only the rows the batch leaves, which are known now: they
        // are rendered on another core while the store works out its batch and writes it
        // (on one), then written and named after it, as before. A tree whose rows turn
        // out otherwise is rendered again.
        let signer = self.index_signer(&repo, key.as_ref())?;
        let mut foreseen = Vec::new();
        for tree in touched.iter().filter(|t| self.index_dir_of(t).is_some()) {
            let before = self.store.index_entries(name, tree)?;
            let after = TreeAfter::new(before, name, tree, &changes, &stored);
            foreseen.push((tree.clone(), after, self.store.segments(name, tree)?));
        }
        timer.lap("foreseen");
        let busy_batch = changes.len() >= BUSY_BATCH;
        let panicked = |what: &str| RepoError::BadPackage {
            path: name.into(),
            why: format!("the thread {what} panicked"),
        };
        let (recorded, ahead) = std::thread::scope(|s| {
            // The store works out its batch while the files are made durable, and writes
            // it only once they are: durable before the store names them.
            let flush = s.spawn(|| self.blobs.flush());
            let batch = s.spawn(move || {
                let start = std::time::Instant::now();
                let prepared = self.store.prepare(changes);
                let encoded = start.elapsed();
                let flushed = flush.join().map_err(|_| panicked("flushing the files"))?;
                let synced = start.elapsed();
                flushed?;
                prepared?.apply()?;
                Ok::<_, RepoError>([encoded, synced, start.elapsed()])
            });
            let start = std::time::Instant::now();
            let ahead = foreseen
                .into_iter()
                .map(|(tree, after, known)| {
                    let render =
                        || self.render_tree(&repo, &tree, &after.rows(), signer.as_ref(), &known);
                    let rendered = match busy_batch {
                        true => crate::cores::on_one_core(render),
                        false => render(),
                    }?;
                    let ahead = Ahead {
                        after,
                        known,
                        rendered,
                    };
                    Ok((tree, ahead))
                })
                .collect::<Result<BTreeMap<String, Ahead>, RepoError>>();
            (batch.join(), (ahead, start.elapsed()))
        });
        let [encoded, synced, batch_took] =
            recorded.map_err(|_| panicked("applying the batch"))??;
        let (ahead, render_took) = ahead;
        let ahead = ahead?;
        timer.part("beside it encoded", encoded);
        timer.part("synced", synced);
        timer.part("batch", batch_took);
        timer.part("beside it rendered", render_took);
        timer.lap("recorded");
        progress.finish();
        // The index aliases of replaced and removed packages leave their trees: the new
        // generation does not name them, but the previous one, kept for readers, does.
        // (The sets below are of every file written: made only when something leaves.)
        let leaving: Vec<&PackageRecord> = removed
            .iter()
            .chain(to_write.iter().filter_map(|r| r.previous.as_ref()))
            .collect();
        let written: BTreeSet<&str> = match leaving.is_empty() {
            true => BTreeSet::new(),
            false => to_write.iter().map(|r| r.key.as_str()).collect(),
        };
        let mut left: BTreeMap<String, Vec<LeftFile>> = BTreeMap::new();
        let mut gone = Vec::new();
        let mut unlisted = Vec::new();
        let written_objects: BTreeSet<String> = match leaving.is_empty() {
            true => BTreeSet::new(),
            false => to_write
                .iter()
                .flat_map(|r| record_files(self, &r.record))
                .map(|(object, _)| object)
                .collect(),
        };
        for p in leaving {
            // Tarballs have no index alias: only their path goes, below.
            let aliases = match alias_key(self, p) {
                Some(_) => record_files(self, p),
                None => Vec::new(),
            };
            for (alias, _) in aliases
                .into_iter()
                .filter(|(o, _)| !written_objects.contains(o))
            {
                match self.index_of(p) {
                    Some(tree) => left.entry(tree).or_default().push(LeftFile {
                        key: alias,
                        path: p.path.clone(),
                        sha256: p.sha256.clone(),
                    }),
                    // Of a platform no longer known: no index names it.
                    None => unlisted.push(alias),
                }
            }
            if !written.contains(p.path.as_str()) {
                gone.push(p);
            }
        }
        // A `.dsc`'s parts beside it may be another's too (an `.orig.tar.*` every
        // revision of one version names): they go only when no package left names them.
        let gone_paths: BTreeSet<&str> = gone.iter().map(|p| p.path.as_str()).collect();
        let mut still_named: BTreeSet<String> = BTreeSet::new();
        if !gone.is_empty() {
            still_named.extend(
                existing
                    .iter()
                    .filter(|p| !gone_paths.contains(p.path.as_str()))
                    .chain(to_write.iter().map(|r| &r.record))
                    .flat_map(|p| record_files(self, p).into_iter().skip(1))
                    .map(|(_, path)| path),
            );
            still_named.extend(written.iter().map(|p| p.to_string()));
        }
        let rewritten =
            self.rebuild_indexes_ahead(&repo, &touched, signer.as_ref(), left, ahead)?;
        timer.lap("indexed");

        // 5. Only now may the files of removed packages go (no index names them; their
        // aliases went to the trees' lists above, to go with the next generation).
        let removing = !unlisted.is_empty() || !gone.is_empty();
        for alias in unlisted {
            self.blobs.remove(&format!("{name}/{alias}"))?;
        }
        for p in gone {
            for (_, path) in record_files(self, p).into_iter().skip(1) {
                if !still_named.contains(&path) {
                    self.blobs.remove(&format!("{name}/{path}"))?;
                }
            }
            self.blobs.remove(&format!("{name}/{}", p.path))?;
            self.blobs
                .remove(&format!("{name}/{}", checksum_key(&p.path)))?;
            // A pruned component's build files go with its tarball.
            if p.kind == FileKind::Tgz {
                for f in [record_path(&p.path), log_path(&p.path)] {
                    self.blobs.remove(&format!("{name}/{f}"))?;
                }
            }
        }
        if removing {
            self.removed_files(name)?;
        }
        timer.lap("cleaned");
        Ok(PublishReport {
            repo: name.into(),
            files,
            removed: removed
                .into_iter()
                .map(|p| p.path)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            indexes: rewritten,
        })
    }

    /// The index tree a record belongs to: `yum/<platform>` or `apt/<suite>`.
    pub(super) fn index_of(&self, r: &PackageRecord) -> Option<String> {
        let platform = self.layout.platforms.get(&r.platform)?;
        match r.kind {
            FileKind::Rpm => Some(format!("yum/{}", platform.name)),
            FileKind::Srpm => Some(format!("yum/{}-source", platform.os)),
            FileKind::Deb | FileKind::Dsc => Some(format!("apt/{}", platform.os)),
            FileKind::Tgz => None,
        }
    }

    /// Every index tree `repo` has: a YUM tree per RPM platform it takes and an APT suite
    /// per Debian os (all known platforms when it names none), and those its packages are
    /// listed in.
    pub(super) fn trees_of(&self, repo: &RepoRecord) -> Result<BTreeSet<String>, RepoError> {
        let mut trees: BTreeSet<String> = self
            .layout
            .platforms
            .values()
            .filter(|p| repo.platforms.is_empty() || repo.platforms.contains(&p.name))
            .map(|p| match p.format {
                PackageFormat::Rpm => format!("yum/{}", p.name),
                PackageFormat::Deb => format!("apt/{}", p.os),
            })
            .collect();
        for p in self.store.packages(&repo.name)? {
            trees.extend(self.index_of(&p));
        }
        Ok(trees)
    }

    /// The directory of index tree `tree` (`yum/<platform>`, `apt/<suite>`), relative to
    /// the repository: `<yum dir>/repodata`, `<apt>/dists/<suite>`.
    pub(super) fn index_dir_of(&self, tree: &str) -> Option<String> {
        if let Some(platform) = tree.strip_prefix("yum/") {
            Some(format!("{}/repodata", yum_dir(self, platform)))
        } else {
            tree.strip_prefix("apt/")
                .map(|suite| format!("{}/dists/{suite}", self.layout.repository.apt))
        }
    }

    /// Every index tree of `repo`, with those an interrupted publish left pending.
    pub(super) fn all_trees(&self, repo: &RepoRecord) -> Result<BTreeSet<String>, RepoError> {
        let mut trees = self.trees_of(repo)?;
        trees.extend(repo.pending.iter().cloned());
        Ok(trees)
    }

    /// Rebuilds the named index trees from the store, then stores `repo` with no index
    /// pending; returns the trees that changed. `left`: files that leave each tree with
    /// this build. They stay while a kept generation names them: a tree's new generation
    /// keeps the one before it for readers in flight and drops the one before that, so
    /// the files that left when the previous generation was made go now, and these are
    /// recorded to go with the next one.
    pub fn rebuild_indexes(
        &self,
        repo: &RepoRecord,
        which: &BTreeSet<String>,
        signer: Option<&super::keys::Signer>,
        left: BTreeMap<String, Vec<LeftFile>>,
    ) -> Result<Vec<String>, RepoError> {
        self.rebuild_indexes_ahead(repo, which, signer, left, BTreeMap::new())
    }

    /// The key that signs `repo`'s indexes: `signer` if given, else the repository's own.
    /// A repository with a key signs every index; a key that no longer loads is an
    /// error, not a reason to publish unsigned indexes.
    fn index_signer(
        &self,
        repo: &RepoRecord,
        signer: Option<&super::keys::Signer>,
    ) -> Result<Option<super::keys::Signer>, RepoError> {
        Ok(match (signer, &repo.key) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(_)) => Some(self.signer(repo)?),
            (None, None) => None,
        })
    }

    /// Index tree `index`'s files, rendered from its rows.
    fn render_tree(
        &self,
        repo: &RepoRecord,
        index: &str,
        rows: &[&IndexRow],
        signer: Option<&super::keys::Signer>,
        known: &super::segments::Known,
    ) -> Result<super::segments::Rendered, RepoError> {
        Ok(if index.starts_with("yum/") {
            super::yum::render(rows, repo.yum_compression, signer, known, repo.created)?
        } else {
            let suite = &index["apt/".len()..];
            super::apt::render(
                &super::apt::Suite {
                    origin: &repo.name,
                    suite,
                    component: &self.layout.repository.apt_component,
                    architectures: self.suite_architectures(repo, suite),
                    created: repo.created,
                },
                rows,
                signer,
                known,
            )?
        })
    }

    /// [`Repositories::rebuild_indexes`], using the trees in `ahead` — rendered while
    /// the batch that changed their rows was applied — where their rows are as foreseen.
    fn rebuild_indexes_ahead(
        &self,
        repo: &RepoRecord,
        which: &BTreeSet<String>,
        signer: Option<&super::keys::Signer>,
        mut left: BTreeMap<String, Vec<LeftFile>>,
        mut ahead: BTreeMap<String, Ahead>,
    ) -> Result<Vec<String>, RepoError> {
        let signer = self.index_signer(repo, signer)?;
        // The public key next to the indexes is always the one that signs them (each YUM
        // tree also holds its own copy, `repodata/repomd.xml.key`, written with the index).
        if let Some(s) = &signer {
            let key = format!("{}/{}", repo.name, self.layout.repository.key);
            let public = s.public_armored()?;
            if self.blobs.get(&key)?.as_deref() != Some(public.as_bytes()) {
                self.blobs.put_now(&key, public.as_bytes())?;
            }
        }
        let mut rewritten = Vec::new();
        // Segments to keep and to drop, and the files that left each tree, recorded with
        // the cleared pending mark at the end.
        let mut changes: Vec<Change> = Vec::new();
        // Files no kept generation names any more.
        let mut due: Vec<LeftFile> = Vec::new();
        // Each directory's new generation and the one it replaces, to show once named.
        let mut shown = Vec::new();
        for index in which {
            let mut timer = Phases::start(format!("index {}/{index}", repo.name));
            let rows = self.store.index_entries(&repo.name, index)?;
            let ahead = ahead.remove(index);
            // Compressed segments of earlier builds of this tree: as read for the render
            // ahead, if any (only a build of this repository's indexes writes them, under
            // the lock its publish holds), else read now.
            let known = match &ahead {
                Some(a) => a.known.clone(),
                None => self.store.segments(&repo.name, index)?,
            };
            timer.lap("read");
            let Some(dir) = self.index_dir_of(index) else {
                continue;
            };
            let ready = ahead.and_then(|a| {
                let same = a.after.matches(&rows);
                if !same {
                    tracing::warn!(
                        repo = %repo.name,
                        tree = %index,
                        "the index rendered during the batch does not match its rows; rendering it again"
                    );
                }
                same.then_some(a.rendered)
            });
            let super::segments::Rendered { files, usage } = match ready {
                Some(r) => r,
                None => {
                    let rows: Vec<&IndexRow> = rows.iter().collect();
                    self.render_tree(repo, index, &rows, signer.as_ref(), &known)?
                }
            };
            timer.lap("rendered");
            // Content-named files (`<sha256>-*.xml.*`, `by-hash/`) outlive their index by
            // one generation, for clients that read the previous one a moment ago.
            let content_named = |name: &str| {
                name.contains("/by-hash/")
                    || name.split_once('-').is_some_and(|(h, _)| {
                        h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
                    })
            };
            let dir_key = format!("{}/{dir}", repo.name);
            let current = self.store.generation(&repo.name, &dir)?;
            let (generation, swapped) = super::generations::write(
                &*self.blobs,
                &dir_key,
                current.as_ref(),
                &files,
                &content_named,
            )?;
            if current.as_ref() != Some(&generation) {
                changes.push(Change::PutGeneration {
                    repo: repo.name.clone(),
                    dir: dir.clone(),
                    generation: generation.clone(),
                });
            }
            shown.push((dir_key, generation, current));
            let before = self.store.left_files(&repo.name, index)?;
            let mut after = Vec::new();
            if swapped {
                rewritten.push(index.clone());
                due.extend(before.iter().cloned());
            } else {
                after.extend(before.iter().cloned());
            }
            after.extend(left.remove(index).unwrap_or_default());
            if after != before {
                changes.push(Change::PutLeft {
                    repo: repo.name.clone(),
                    tree: index.clone(),
                    files: after,
                });
            }
            timer.lap("written");
            // Keep the segments this build used; drop the others.
            let used: BTreeSet<&String> = usage.used.iter().collect();
            changes.extend(known.keys().filter(|k| !used.contains(k)).map(|key| {
                Change::RemoveSegment {
                    repo: repo.name.clone(),
                    tree: index.clone(),
                    key: key.clone(),
                }
            }));
            changes.extend(
                usage
                    .added
                    .into_iter()
                    .map(|(key, bytes)| Change::PutSegment {
                        repo: repo.name.clone(),
                        tree: index.clone(),
                        key,
                        bytes,
                    }),
            );
        }
        // Every departing file has its tree among `which`; any other is kept, recorded.
        for (tree, files) in left {
            let mut kept = self.store.left_files(&repo.name, &tree)?;
            kept.extend(files);
            changes.push(Change::PutLeft {
                repo: repo.name.clone(),
                tree,
                files: kept,
            });
        }
        // Removed before the batch that forgets them: a crash between leaves them listed,
        // and removing them again is no harm. A path that holds those bytes again has its
        // alias named by the current index: it stays.
        let mut doomed = Vec::new();
        for f in due {
            let back = self
                .store
                .package(&repo.name, &f.path)?
                .is_some_and(|p| p.sha256 == f.sha256);
            if !back {
                doomed.push(format!("{}/{}", repo.name, f.key));
            }
        }
        crate::blobs::for_each(&*self.blobs, &doomed, |key| self.blobs.remove(key))?;
        let mut clean = repo.clone();
        clean.pending.clear();
        changes.push(Change::PutRepo(clean));
        self.store.apply(changes)?;
        // Direct readers see the new generations now; the ones they no longer keep go
        // now or, on a server, once the publish has answered (`repo::tidy`).
        crate::blobs::for_each(&*self.blobs, &shown, |(dir, now, _)| {
            self.blobs.show(dir, &now.name)
        })?;
        let dropped = shown
            .iter()
            .filter_map(|(dir, now, before)| {
                let old = super::generations::dropped(now, before.as_ref())?;
                Some(super::tidy::Dropped {
                    repo: repo.name.clone(),
                    dir: dir.strip_prefix(&format!("{}/", repo.name))?.to_string(),
                    generation: old.to_string(),
                })
            })
            .collect();
        self.drop_generations(dropped)?;
        Ok(rewritten)
    }

    /// The DEB architectures of a suite: those of the repository's platforms with that os
    /// (all known ones when it takes every platform), without `all`.
    fn suite_architectures(&self, repo: &RepoRecord, suite: &str) -> Vec<String> {
        let archs = |taken: bool| {
            let mut a: Vec<String> = self
                .layout
                .platforms
                .values()
                .filter(|p| p.os == suite && p.format == PackageFormat::Deb && p.deb_arch != "all")
                .filter(|p| !taken || repo.platforms.is_empty() || repo.platforms.contains(&p.name))
                .map(|p| p.deb_arch.clone())
                .collect();
            a.sort();
            a.dedup();
            a
        };
        // A repository taking only the `all` platform lists its packages for every
        // architecture of the suite.
        let taken = archs(true);
        if taken.is_empty() {
            archs(false)
        } else {
            taken
        }
    }

    /// [`Self::check`] of every candidate, spread over the available cores; results in
    /// the candidates' order.
    fn check_all(
        &self,
        repo: &RepoRecord,
        candidates: Vec<Candidate>,
        signer: Option<&super::keys::Signer>,
        staging: &Staging,
        progress: &dyn Progress,
    ) -> Vec<Result<Ready, RepoError>> {
        let kept = AtomicU64::new(0);
        // The parts of Debian source packages are read with the `.dsc` that names them.
        let (parts, candidates): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|c| package::is_source_part(&candidate_name(c)));
        let mut labels: HashMap<PartPlace, String> = HashMap::new();
        let parts: HashMap<PartPlace, PathBuf> = parts
            .into_iter()
            .map(|c| {
                let place = part_place(&c, &candidate_name(&c));
                let label = c
                    .label
                    .clone()
                    .unwrap_or_else(|| c.source.display().to_string());
                labels.insert(place.clone(), label);
                (place, c.source)
            })
            .collect();
        let check = |c| {
            let r = self.check(repo, c, signer, &kept, staging, &parts);
            if let Ok(r) = &r {
                progress.advance(r.record.size);
            }
            r
        };
        let mut out = crate::cores::map(candidates, CORES_FROM, check, |_| {
            Err(RepoError::BadPackage {
                path: repo.name.clone(),
                why: "a checking thread panicked".into(),
            })
        });
        // A part no `.dsc` of this publish named would be stored nowhere.
        let named: HashSet<&PartPlace> = out
            .iter()
            .flatten()
            .flat_map(|r| r.parts.iter().map(|(_, place)| place))
            .collect();
        let mut orphans: Vec<&String> = labels
            .iter()
            .filter(|(place, _)| !named.contains(place))
            .map(|(_, label)| label)
            .collect();
        orphans.sort();
        if let Some(label) = orphans.first() {
            out.push(Err(RepoError::BadPackage {
                path: label.to_string(),
                why: "a part of a Debian source package, but no .dsc beside it in this publish \
                      names it: publish the .dsc with the files it names"
                    .into(),
            }));
        }
        out
    }

    /// Reads and checks one file for `repo`.
    fn check(
        &self,
        repo: &RepoRecord,
        c: Candidate,
        signer: Option<&super::keys::Signer>,
        kept: &AtomicU64,
        staging: &Staging,
        parts: &HashMap<PartPlace, PathBuf>,
    ) -> Result<Ready, RepoError> {
        let shown = c
            .label
            .clone()
            .unwrap_or_else(|| c.source.display().to_string());
        let bad = |why: String| RepoError::BadPackage {
            path: shown.clone(),
            why,
        };
        let file_name = candidate_name(&c).into_owned();
        let mut bytes = fs::read(&c.source).map_err(|source| RepoError::Io {
            path: c.source.clone(),
            source,
        })?;
        let parsed = package::parse(&file_name, &bytes).map_err(&bad)?;
        // A `.dsc`'s parts, read whole and checked against what it says of them.
        let mut part_files = Vec::new();
        let mut part_sums = Vec::new();
        if let Parsed::Dsc(dsc) = &parsed {
            for f in &dsc.files {
                let place = part_place(&c, &f.name);
                let source = parts.get(&place).ok_or_else(|| {
                    bad(format!(
                        "it names {}, which is not beside it in this publish",
                        f.name
                    ))
                })?;
                let part = fs::read(source).map_err(|source_err| RepoError::Io {
                    path: source.clone(),
                    source: source_err,
                })?;
                let sums = super::apt::FileSums::of(&f.name, &part);
                if sums.size != f.size || sums.sha256 != f.sha256 {
                    return Err(bad(format!(
                        "{} has {} bytes with sha256 {}, but the .dsc says {} bytes with {}: \
                         a damaged or mismatched file",
                        f.name, sums.size, sums.sha256, f.size, f.sha256
                    )));
                }
                if f.md5.as_ref().is_some_and(|m| *m != sums.md5) {
                    return Err(bad(format!(
                        "{} has MD5 {}, but the .dsc's Files says {}",
                        f.name,
                        sums.md5,
                        f.md5.as_deref().unwrap_or_default()
                    )));
                }
                part_files.push((source.clone(), place));
                part_sums.push(sums);
            }
        }
        let identity = match package::identity(&parsed) {
            Some(i) => i,
            None => tarball_identity(&file_name).ok_or_else(|| {
                bad("a tarball's name must be NAME-VERSION-RELEASE.tar.gz".into())
            })?,
        };
        let platform_name = c.platform.clone().ok_or_else(|| {
            bad("no platform: its path names none, and --platform was not given".into())
        })?;
        let platform = self
            .layout
            .platforms
            .get(&platform_name)
            .ok_or_else(|| RepoError::UnknownPlatform(platform_name.clone()))?;
        if !repo.platforms.is_empty() && !repo.platforms.contains(&platform_name) {
            return Err(RepoError::PlatformNotTaken {
                repo: repo.name.clone(),
                platform: platform_name,
                allowed: repo.platforms.join(", "),
                path: shown,
            });
        }
        check_platform(&parsed, &identity, platform).map_err(&bad)?;
        if let Some((name, version, release)) = &c.expect {
            let got = (&identity.name, &identity.version, &identity.release);
            if !matches!(parsed, Parsed::Tgz) && got != (name, version, release) {
                return Err(bad(format!(
                    "its header says {}-{}-{}, but the configuration builds {name}-{version}-{release}",
                    got.0, got.1, got.2
                )));
            }
        }
        let key = match c.key {
            Some(k) => k,
            None => format!(
                "{}/{}/{}/{file_name}",
                identity.name, identity.version, platform_name
            ),
        };
        crate::blobs::check_key(&key)?;
        // The index trees and the key live beside the packages; a package path must not
        // reach into them.
        let first = key.split('/').next().unwrap_or_default();
        let layout = &self.layout.repository;
        let reserved = [
            layout.yum.split('/').next().unwrap_or_default(),
            layout.apt.split('/').next().unwrap_or_default(),
            layout.key.as_str(),
        ];
        if reserved.contains(&first) {
            return Err(bad(format!(
                "its repository path {key} starts with `{first}`, which holds the repository's indexes"
            )));
        }
        if let (Some(s), Parsed::Rpm(_) | Parsed::Srpm(_)) = (signer, &parsed) {
            bytes = s.sign_rpm(&bytes).map_err(&bad)?;
        }
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let mut record = PackageRecord {
            path: key.clone(),
            kind: parsed.kind(),
            platform: platform_name,
            name: identity.name,
            epoch: identity.epoch,
            version: identity.version,
            release: identity.release,
            arch: identity.arch,
            size: bytes.len() as u64,
            sha256,
            published: chrono::Utc::now().timestamp(),
            configuration: c.configuration.clone(),
            signed: match &parsed {
                Parsed::Rpm(m) | Parsed::Srpm(m) => signer.is_some() || package::rpm_signed(m),
                _ => false,
            },
            listed: None,
            external: false,
            parts: part_sums
                .iter()
                .map(|p| crate::store::SourcePart {
                    name: p.name.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                })
                .collect(),
            index: Default::default(),
        };
        record.listed = self.index_of(&record).map(|tree| Listing {
            order: match record.kind {
                FileKind::Rpm | FileKind::Srpm => super::yum::listing_order(&record.path),
                _ => record.path.clone(),
            },
            tree,
        });
        record.index = Arc::new(match &parsed {
            Parsed::Rpm(unsigned) | Parsed::Srpm(unsigned) => {
                // Signing changed the bytes (and moved the header range): read them again.
                let signed = match signer {
                    Some(_) => package::parse(&file_name, &bytes).map_err(&bad)?,
                    None => Parsed::Tgz,
                };
                let meta = match &signed {
                    Parsed::Rpm(m) | Parsed::Srpm(m) => m,
                    _ => unsigned,
                };
                super::yum::entries(meta, &record, &index_href(&record)).map_err(&bad)?
            }
            Parsed::Deb(control) => {
                super::apt::entry(control, &record, &index_href(&record), platform, &bytes)
            }
            Parsed::Dsc(dsc) => {
                let href = index_href(&record);
                let directory = href.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
                let own = super::apt::FileSums::of(&file_name, &bytes);
                super::apt::source_entry(&dsc.control, directory, &own, &part_sums, platform)
            }
            Parsed::Tgz => IndexEntry::None,
        });
        let previous = self.store.package(&repo.name, &key)?;
        // Signed bytes exist only here: staged, unless kept; others can be read again.
        let signed_here = signer.is_some() && matches!(record.kind, FileKind::Rpm | FileKind::Srpm);
        let content = if keep(kept, self.keep_bytes, record.size) {
            Content::Kept(bytes)
        } else if signed_here {
            staging.put(&bytes)?
        } else {
            Content::Source(c.source)
        };
        Ok(Ready {
            key,
            content,
            record,
            previous,
            parts: part_files,
        })
    }

    /// Serialises publishes to one repository among everyone who writes the store.
    pub(super) fn lock_repo(&self, name: &str) -> Result<crate::store::RepoGuard, RepoError> {
        Ok(self.store.lock_repo(name)?)
    }

    /// Waits until no one publishes into `name` (its lock taken, and let go at once).
    pub fn wait_for_publishes(&self, name: &str) -> Result<(), RepoError> {
        self.lock_repo(name).map(drop)
    }
}

/// What makes two records the same package: kind, platform, name, epoch, version,
/// release, arch.
type IdentityKey<'a> = (FileKind, &'a str, &'a str, u32, &'a str, &'a str, &'a str);

fn identity_key(r: &PackageRecord) -> IdentityKey<'_> {
    (
        r.kind,
        &r.platform,
        &r.name,
        r.epoch,
        &r.version,
        &r.release,
        &r.arch,
    )
}

fn same_identity(a: &PackageRecord, b: &PackageRecord) -> bool {
    identity_key(a) == identity_key(b)
}

fn evr(r: &PackageRecord) -> String {
    format!("{}:{}-{}", r.epoch, r.version, r.release)
}

/// Orders two records of one package by version, in their format's ordering.
pub fn compare_versions(a: &PackageRecord, b: &PackageRecord) -> std::cmp::Ordering {
    let scheme = if a.kind == FileKind::Deb {
        Scheme::Deb
    } else {
        Scheme::Rpm
    };
    version::compare(scheme, &evr(a), &evr(b))
}

/// Records to drop so that each (kind, platform, name) keeps its newest `keep` versions.
fn prune<'a>(
    records: impl Iterator<Item = &'a PackageRecord>,
    keep: u32,
) -> Vec<&'a PackageRecord> {
    let mut groups: BTreeMap<(FileKind, &str, &str), Vec<&PackageRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.kind, r.platform.as_str(), r.name.as_str()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for (_, mut rs) in groups {
        rs.sort_by(|a, b| compare_versions(b, a));
        let mut versions: Vec<String> = Vec::new();
        for r in rs {
            let v = evr(r);
            if !versions.contains(&v) {
                versions.push(v.clone());
            }
            if versions.iter().position(|x| *x == v).unwrap_or(0) >= keep as usize {
                out.push(r);
            }
        }
    }
    out
}

/// `name-version-release.tar.gz` (version and release hold no `-`).
fn tarball_identity(file: &str) -> Option<Identity> {
    let stem = file
        .strip_suffix(".tar.gz")
        .or_else(|| file.strip_suffix(".tgz"))?;
    let mut parts = stem.rsplitn(3, '-');
    let release = parts.next()?;
    let version = parts.next()?;
    let name = parts.next()?;
    if name.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(Identity {
        name: name.into(),
        epoch: 0,
        version: version.into(),
        release: release.into(),
        arch: String::new(),
    })
}

/// A package must be of the platform's format and architecture (or arch-independent).
fn check_platform(p: &Parsed, id: &Identity, platform: &Platform) -> Result<(), String> {
    let (format, arch, any) = match p {
        Parsed::Rpm(_) => (PackageFormat::Rpm, &platform.rpm_arch, "noarch"),
        Parsed::Deb(_) => (PackageFormat::Deb, &platform.deb_arch, "all"),
        // A source package builds for any architecture of its format.
        Parsed::Srpm(_) => (PackageFormat::Rpm, &id.arch, "src"),
        Parsed::Dsc(_) => (PackageFormat::Deb, &id.arch, "source"),
        Parsed::Tgz => return Ok(()),
    };
    if platform.format != format {
        return Err(format!(
            "platform {} takes {:?} packages, not this one",
            platform.name, platform.format
        ));
    }
    if id.arch != *arch && id.arch != any {
        return Err(format!(
            "built for {}, but platform {} is {arch}",
            id.arch, platform.name
        ));
    }
    Ok(())
}

/// The files to publish: a directory is a `pack --out` tree (relative path = download-from
/// path, platform = the path part that names one); a file is loose.
pub(super) fn collect(
    inputs: &[PathBuf],
    opts: &PublishOptions,
    layout: &crate::layout::Layout,
) -> Result<Vec<Candidate>, RepoError> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = fs::metadata(input).map_err(|source| RepoError::Io {
            path: input.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(input, input, &mut files)?;
            for (rel, source) in files {
                let platform = platform_in_path(&rel, layout).or_else(|| opts.platform.clone());
                out.push(candidate(source, Some(rel), platform));
            }
        } else {
            out.push(candidate(input.clone(), None, opts.platform.clone()));
        }
    }
    if out.is_empty() {
        return Err(RepoError::BadPackage {
            path: inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            why: "no package files found".into(),
        });
    }
    Ok(out)
}

/// The files `inputs` stand for, each with its download-from path when a `pack --out`
/// tree gives it (`None`: a loose file, placed by its header).
pub fn input_files(
    inputs: &[PathBuf],
    layout: &crate::layout::Layout,
) -> Result<Vec<(PathBuf, Option<String>)>, RepoError> {
    Ok(collect(inputs, &PublishOptions::default(), layout)?
        .into_iter()
        .map(|c| (c.source, c.key))
        .collect())
}

/// The platform a download-from path names (one of its parts), if any.
pub fn platform_in_path(path: &str, layout: &crate::layout::Layout) -> Option<String> {
    path.split('/')
        .find(|part| layout.platforms.contains_key(*part))
        .map(str::to_string)
}

/// Regular files under `dir` (hidden entries skipped; symlinks refused: a tree to publish
/// holds the files themselves).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), RepoError> {
    let io = |source| RepoError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let ft = e.file_type().map_err(io)?;
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            if !package::is_publishable(&name) {
                return Err(RepoError::BadPackage {
                    path: path.display().to_string(),
                    why: package::PUBLISHABLE.into(),
                });
            }
            let rel = path
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or(name);
            out.push((rel, path));
        } else {
            return Err(RepoError::BadPackage {
                path: path.display().to_string(),
                why: "a symlink or special file; publish the file itself".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, version: &str) -> PackageRecord {
        PackageRecord {
            path: format!("{name}/{version}/x.rpm"),
            kind: FileKind::Rpm,
            platform: "el9_x86_64".into(),
            name: name.into(),
            epoch: 0,
            version: version.into(),
            release: "1".into(),
            arch: "x86_64".into(),
            size: 1,
            sha256: String::new(),
            published: 0,
            configuration: None,
            signed: false,
            listed: None,
            external: false,
            parts: Vec::new(),
            index: Default::default(),
        }
    }

    #[test]
    fn prune_keeps_the_newest_versions_per_package() {
        let rs = [
            rec("a", "1.0"),
            rec("a", "1.10"),
            rec("a", "1.9"),
            rec("b", "0.1"),
        ];
        let gone: Vec<_> = prune(rs.iter(), 2)
            .into_iter()
            .map(|r| &r.version)
            .collect();
        assert_eq!(gone, ["1.0"]);
        assert_eq!(prune(rs.iter(), 1).len(), 2);
    }

    /// A gzipped tar holding one file with `text`.
    fn tarball(text: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "usr/share/tool/readme", text.as_bytes())
            .unwrap();
        b.into_inner().unwrap().finish().unwrap()
    }

    /// A data directory with volatile repository `r`, once on each blob backend: files
    /// (in `dir/data`), and memory (no file system under the repositories).
    fn repositories(dir: &Path) -> [Repositories; 2] {
        let on_files =
            Repositories::open(&dir.join("data"), crate::layout::Layout::builtin()).unwrap();
        on_files
            .create(&super::super::NewRepo::volatile("r"))
            .unwrap();
        [on_files, Repositories::in_memory(&dir.join("data-mem"))]
    }

    /// What `path` of repository `r` serves, whole, if anything.
    fn served(repos: &Repositories, path: &str) -> Option<Vec<u8>> {
        let o = repos.open_path("r", path, None).unwrap()?;
        Some(o.into_bytes().unwrap())
    }

    fn publish_el9(repos: &Repositories, inputs: &[PathBuf], sign: bool) -> PublishReport {
        let opts = PublishOptions {
            sign,
            platform: Some("el9_x86_64".into()),
            external: false,
        };
        repos
            .publish("r", inputs, &opts, &crate::progress::Quiet)
            .unwrap()
    }

    #[test]
    fn files_past_the_memory_budget_are_read_again_when_stored() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<PathBuf> = (0..12)
            .map(|i| {
                let p = dir.path().join(format!("tool{i}-1.0-1.tar.gz"));
                fs::write(&p, tarball(&format!("tool {i}\n").repeat(100 * (i + 1)))).unwrap();
                p
            })
            .collect();
        for mut repos in repositories(dir.path()) {
            // Room for about one file: the others are streamed from their sources.
            repos.keep_bytes = fs::metadata(&inputs[0]).unwrap().len();
            let report = publish_el9(&repos, &inputs, false);
            assert_eq!(report.files.len(), 12);
            for (f, input) in report.files.iter().zip(&inputs) {
                let stored = repos.blobs.get(&format!("r/{}", f.path)).unwrap().unwrap();
                assert_eq!(stored, fs::read(input).unwrap(), "{}", f.path);
                assert_eq!(served(&repos, &f.path).unwrap(), stored);
            }
        }
    }

    #[test]
    fn rpms_signed_past_the_memory_budget_are_staged_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<PathBuf> = (0..6)
            .map(|i| {
                let pkg =
                    rpm::PackageBuilder::new(&format!("tool{i}"), "1.0", "MIT", "x86_64", "a tool")
                        .release("1")
                        .with_file_contents(
                            format!("tool {i}\n").repeat(500),
                            rpm::FileOptions::new(format!("/usr/share/tool{i}/readme")),
                        )
                        .unwrap()
                        .build()
                        .unwrap();
                let p = dir.path().join(format!("tool{i}-1.0-1.x86_64.rpm"));
                pkg.write_file(&p).unwrap();
                p
            })
            .collect();
        for mut repos in repositories(dir.path()) {
            repos
                .generate_key("r", super::super::keys::Algorithm::Ed25519, false)
                .unwrap();
            // Room for none of them: every signed RPM goes through a staged file.
            repos.keep_bytes = 0;
            let report = publish_el9(&repos, &inputs, true);
            let public = repos.public_key("r").unwrap();
            assert_eq!(report.files.len(), 6);
            for (f, input) in report.files.iter().zip(&inputs) {
                let stored = served(&repos, &f.path).unwrap();
                assert_ne!(
                    stored,
                    fs::read(input).unwrap(),
                    "{} was not signed",
                    f.path
                );
                assert_eq!(format!("{:x}", Sha256::digest(&stored)), f.sha256);
                let pkg = rpm::Package::parse(&mut &stored[..]).unwrap();
                let verifier = rpm::signature::pgp::Verifier::from_asc(&public).unwrap();
                pkg.verify_signature(verifier).unwrap();
            }
            // Nothing staged is left behind.
            let left: Vec<_> = fs::read_dir(&repos.scratch).unwrap().collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    /// An RPM `name`-1.0-1.x86_64 with one file, written into `dir`.
    fn rpm_file(dir: &Path, name: &str) -> PathBuf {
        let pkg = rpm::PackageBuilder::new(name, "1.0", "MIT", "x86_64", "a tool")
            .release("1")
            .with_file_contents(
                format!("{name}\n"),
                rpm::FileOptions::new(format!("/usr/share/{name}/readme")),
            )
            .unwrap()
            .build()
            .unwrap();
        let p = dir.join(format!("{name}-1.0-1.x86_64.rpm"));
        pkg.write_file(&p).unwrap();
        p
    }

    #[test]
    fn yum_trees_hold_the_key_that_signs_them_also_after_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let input = rpm_file(dir.path(), "tool");
        for repos in repositories(dir.path()) {
            let alg = super::super::keys::Algorithm::Ed25519;
            repos.generate_key("r", alg, false).unwrap();
            publish_el9(&repos, std::slice::from_ref(&input), false);
            let key_in_tree = || served(&repos, "yum/el9_x86_64/repodata/repomd.xml.key");
            let first = served(&repos, "key.asc").unwrap();
            assert_eq!(key_in_tree().unwrap(), first);
            // A new key re-signs the indexes that are there; the copy in the tree follows.
            repos.generate_key("r", alg, true).unwrap();
            let second = served(&repos, "key.asc").unwrap();
            assert_ne!(second, first);
            assert_eq!(key_in_tree().unwrap(), second);
            assert_eq!(
                second,
                repos.public_key("r").unwrap().into_bytes(),
                "key.asc is not the key that signs"
            );
        }
        // On files, the tree on disk is the same (a `file://` repository).
        let root = dir.path().join("data/repos/r");
        assert_eq!(
            fs::read(root.join("yum/el9_x86_64/repodata/repomd.xml.key")).unwrap(),
            fs::read(root.join("key.asc")).unwrap()
        );
    }

    #[test]
    fn unsigned_yum_trees_hold_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let input = rpm_file(dir.path(), "tool");
        for repos in repositories(dir.path()) {
            publish_el9(&repos, std::slice::from_ref(&input), false);
            let repodata = "yum/el9_x86_64/repodata";
            assert!(served(&repos, &format!("{repodata}/repomd.xml")).is_some());
            assert!(served(&repos, &format!("{repodata}/repomd.xml.key")).is_none());
            assert!(served(&repos, &format!("{repodata}/repomd.xml.asc")).is_none());
        }
        let on_disk = dir.path().join("data/repos/r/yum/el9_x86_64/repodata");
        assert!(on_disk.join("repomd.xml").is_file());
        assert!(!on_disk.join("repomd.xml.key").exists());
    }

    #[test]
    fn generations_dropped_on_a_server_go_on_its_tidying_thread_unless_named_again() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::in_memory(&dir.path().join("data"));
        repos.tidy_later();
        let generations = || -> BTreeSet<String> {
            repos
                .blobs
                .list("r/yum/el9_x86_64")
                .unwrap()
                .into_iter()
                .filter_map(|k| {
                    k.split('/')
                        .find(|p| p.starts_with(".repodata.gen-"))
                        .map(str::to_string)
                })
                .collect()
        };
        for name in ["a", "b", "c"] {
            publish_el9(&repos, &[rpm_file(dir.path(), name)], false);
        }
        let kept = repos
            .store
            .generation("r", "yum/el9_x86_64/repodata")
            .unwrap()
            .unwrap();
        let want: BTreeSet<String> = [kept.name.clone(), kept.previous.clone().unwrap()].into();
        // Those dropped (the empty index of the new repository's, the first publish's)
        // wait for the thread.
        let before = generations();
        assert!(before.is_superset(&want) && before.len() == 4, "{before:?}");
        repos.tidy(&|| true);
        assert_eq!(generations(), want);
        // One the store names again by the time the thread comes to it stays.
        repos
            .drop_generations(vec![super::super::tidy::Dropped {
                repo: "r".into(),
                dir: "yum/el9_x86_64/repodata".into(),
                generation: kept.name.clone(),
            }])
            .unwrap();
        repos.tidy(&|| true);
        assert_eq!(generations(), want);
        assert!(
            repos
                .open_path("r", "yum/el9_x86_64/repodata/repomd.xml", None)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn publishing_indexing_and_serving_need_no_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::in_memory(&dir.path().join("data"));
        repos
            .generate_key("r", super::super::keys::Algorithm::Ed25519, false)
            .unwrap();
        let read = |path: &str| match repos.open_path("r", path, None).unwrap() {
            Some(o) => match o.data {
                crate::blobs::Data::Bytes(b) => Some(b.to_vec()),
                _ => panic!("{path}: not bytes from memory"),
            },
            None => None,
        };
        let input = rpm_file(dir.path(), "tool");
        let first = publish_el9(&repos, std::slice::from_ref(&input), true);
        let path = &first.files[0].path;
        // The package at its path (a name the store keeps, no object there), its
        // checksum record, and the index that names it.
        let bytes = read(path).unwrap();
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            first.files[0].sha256
        );
        let line = String::from_utf8(read(&checksum_key(path)).unwrap()).unwrap();
        assert!(line.starts_with(&first.files[0].sha256), "{line}");
        let repomd =
            String::from_utf8(read("yum/el9_x86_64/repodata/repomd.xml").unwrap()).unwrap();
        let primary = repomd
            .split("<location href=\"repodata/")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        assert!(primary.contains("primary.xml"), "{repomd}");
        assert!(primary.ends_with(".gz"), "{primary}");
        let mut xml = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(
                &read(&format!("yum/el9_x86_64/repodata/{primary}")).unwrap()[..],
            ),
            &mut xml,
        )
        .unwrap();
        let href = String::from_utf8_lossy(&xml)
            .split("<location href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        assert_eq!(read(&format!("yum/el9_x86_64/{href}")).unwrap(), bytes);
        assert!(read("yum/el9_x86_64/repodata/repomd.xml.asc").is_some());
        // The index name is known as one by its shape (what `--redirect-blobs` sends to
        // the object store); paths and index files are not.
        assert!(is_index_name(&repos, &format!("yum/el9_x86_64/{href}")));
        let apt = &repos.layout.repository.apt;
        for (name, is) in [
            (path.clone(), false),
            ("yum/el9_x86_64/repodata/repomd.xml".into(), false),
            ("yum/el9_x86_64/packages/not-an-id.rpm".into(), false),
            (format!("{apt}/pool/0123456789abcdef-x_1.0_amd64.deb"), true),
            (format!("{apt}/pool/0123456789abcdef/x_1.0.dsc"), true),
            (format!("{apt}/pool/0123456789abcdef/a/b"), false),
            (format!("{apt}/dists/deb12/InRelease"), false),
        ] {
            assert_eq!(is_index_name(&repos, &name), is, "{name}");
        }
        // A rebuild replaces the package: the new index names the new bytes; the old
        // index file and the old alias stay one generation for readers in flight.
        let rebuilt = dir.path().join("rebuilt");
        fs::create_dir_all(&rebuilt).unwrap();
        let second_input = rebuilt.join("tool-1.0-1.x86_64.rpm");
        rpm::PackageBuilder::new("tool", "1.0", "MIT", "x86_64", "a tool")
            .release("1")
            .with_file_contents("rebuilt\n", rpm::FileOptions::new("/usr/share/tool/readme"))
            .unwrap()
            .build()
            .unwrap()
            .write_file(&second_input)
            .unwrap();
        let second = publish_el9(&repos, &[second_input], true);
        assert_eq!(&second.files[0].path, path);
        assert!(read(&format!("yum/el9_x86_64/repodata/{primary}")).is_some());
        assert!(read(&format!("yum/el9_x86_64/{href}")).is_some());
        assert_eq!(
            format!("{:x}", Sha256::digest(read(path).unwrap())),
            second.files[0].sha256
        );
        // Deleted: nothing of it is left.
        repos.delete("r").unwrap();
        assert!(repos.blobs.list("r").unwrap().is_empty());
    }

    #[test]
    fn tarball_names() {
        let i = tarball_identity("my-web-server-2.5.1-1.tar.gz").unwrap();
        assert_eq!(
            (i.name.as_str(), i.version.as_str(), i.release.as_str()),
            ("my-web-server", "2.5.1", "1")
        );
        assert!(tarball_identity("server.tar.gz").is_none());
    }
}
