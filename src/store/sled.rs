//! The embedded store on sled: one tree, keys prefixed by record kind, values JSON (a
//! package's row also carries its index entry: see [`pkg_value`]). A batch is one
//! `apply_batch` (atomic) followed by a flush (durable). Beside the
//! database, in the data directory, it keeps what must be read without opening it or
//! away from it: repositories' secret keys (`keys/<repo>.asc`, owner-only files) and, while
//! a server holds the store, who that is (`server.json`).
//!
//! A package is one row: sled applies a batch row by row, and a cold publish of thousands
//! of packages spent most of its batch on the by-name and by-tree rows it once also
//! wrote. What those rows answered — a repository's packages by name, an index tree's
//! entries in listing order — is worked out from the package rows by one scan of the
//! repository when first asked, kept in memory, and patched by every batch (one process
//! holds the store, so nothing else changes it).
//!
//! Index trees' entries and segments and repositories' names, once read (entries also
//! once changed), are kept decoded in memory and patched by every batch: a running server
//! adding one package to a tree of thousands re-reads none of them. They take at most
//! [`MEMO_BYTES`] (estimated); past it, the ones used least recently are forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BuildId, Change, FarmBuild, Generation, IndexEntry, IndexRow, Lease, LeftFile, LockRecord,
    PackageRecord, Prepared, RepoRecord, Segments, Store, StoreError, Task, TaskState, TokenRecord,
};

pub struct SledStore {
    db: sled::Db,
    /// Index trees read so far, by key prefix: entries in key order, and segments.
    /// Held across a batch, so a reader never caches a tree a batch is changing.
    memo: Mutex<Memo>,
    /// Per-repository publish locks: this process is the store's only writer.
    repos: super::NamedLocks,
    /// Per-build locks of the farm's tasks (claims take them too), for the same reason.
    builds: super::NamedLocks,
    /// The data directory the store is in (`<data>/store`).
    data: PathBuf,
}

/// Written to `<data>/server.json` while a server holds the store, so a command can say
/// where to send what it cannot do itself.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ServerInfo {
    pub url: String,
    pub pid: u32,
}

/// The server holding the store of data directory `data`, if one does (its record names
/// a live process).
pub fn running(data: &Path) -> Option<ServerInfo> {
    let text = std::fs::read_to_string(data.join("server.json")).ok()?;
    let info: ServerInfo = serde_json::from_str(&text).ok()?;
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(info.pid as libc::pid_t, 0) } == 0;
    (alive && info.pid != std::process::id()).then_some(info)
}

// A delete under way: `deleting\0<repo>`, empty.
fn deleting_key(repo: &str) -> Vec<u8> {
    format!("deleting\0{repo}").into_bytes()
}

/// How much memory (estimated) the kept index trees may take; past it, the trees used
/// least recently are forgotten (and read again when next needed).
const MEMO_BYTES: usize = 256 << 20;

/// A repository's package paths by package name.
type Names = HashMap<String, BTreeSet<String>>;

/// Index trees' rows, by tree.
type Trees = HashMap<String, Vec<IndexRow>>;

struct Memo {
    /// By [`ent_prefix`].
    entries: HashMap<Vec<u8>, Arc<Vec<IndexRow>>>,
    /// By [`seg_prefix`].
    segments: HashMap<Vec<u8>, Arc<Segments>>,
    /// By [`names_prefix`].
    names: HashMap<Vec<u8>, Names>,
    /// Each kept tree's (or name map's) estimated size and when it was last used, by
    /// prefix (the three kinds have distinct prefixes).
    kept: HashMap<Vec<u8>, (usize, u64)>,
    clock: u64,
    budget: usize,
}

impl Default for Memo {
    fn default() -> Memo {
        Memo {
            entries: HashMap::new(),
            segments: HashMap::new(),
            names: HashMap::new(),
            kept: HashMap::new(),
            clock: 0,
            budget: MEMO_BYTES,
        }
    }
}

/// Bytes a kept tree takes, roughly: its text plus a guess at each row's overhead.
fn rows_size(rows: &[IndexRow]) -> usize {
    rows.iter()
        .map(|r| {
            let text = match &*r.entry {
                IndexEntry::None => 0,
                IndexEntry::Yum {
                    primary,
                    filelists,
                    other,
                } => primary.len() + filelists.len() + other.len(),
                IndexEntry::Apt {
                    suite,
                    arch,
                    stanza,
                } => suite.len() + arch.len() + stanza.len(),
            };
            128 + r.key.len() + r.sha256.len() + text
        })
        .sum()
}

fn segments_size(segs: &Segments) -> usize {
    segs.iter().map(|(k, v)| 64 + k.len() + v.len()).sum()
}

fn names_size(names: &Names) -> usize {
    names
        .iter()
        .map(|(n, paths)| 64 + n.len() + paths.iter().map(|p| 48 + p.len()).sum::<usize>())
        .sum()
}

/// A batch's change to a memoised tree: the key after the tree's prefix, and the new
/// value (`None`: removed); or to a repository's names: its prefix, the name, the path,
/// and whether the path now has that name or no longer.
enum Patch {
    Entry(Vec<u8>, String, Option<IndexRow>),
    Segment(Vec<u8>, String, Option<Vec<u8>>),
    Name(Vec<u8>, String, String, bool),
}

impl Memo {
    /// Forgets everything kept (the budget stays).
    fn clear(&mut self) {
        *self = Memo {
            budget: self.budget,
            ..Memo::default()
        };
    }

    /// Forgets every kept tree of repository `repo`.
    fn forget_repo(&mut self, repo: &str) {
        let prefixes = repo_prefixes(repo);
        let theirs = |p: &Vec<u8>| prefixes.iter().any(|r| p.starts_with(r));
        self.entries.retain(|p, _| !theirs(p));
        self.segments.retain(|p, _| !theirs(p));
        self.names.retain(|p, _| !theirs(p));
        self.kept.retain(|p, _| !theirs(p));
    }

    /// Notes a use of the tree at `prefix`, with its new size when it changed.
    fn used(&mut self, prefix: &[u8], size: Option<usize>) {
        self.clock += 1;
        let now = self.clock;
        match self.kept.get_mut(prefix) {
            Some(k) => {
                k.1 = now;
                if let Some(size) = size {
                    k.0 = size;
                }
            }
            None => {
                self.kept.insert(prefix.to_vec(), (size.unwrap_or(0), now));
            }
        }
    }

    /// Forgets the trees used least recently until the rest fit the budget; the tree used
    /// last always stays.
    fn shrink(&mut self) {
        let mut total: usize = self.kept.values().map(|k| k.0).sum();
        while total > self.budget && self.kept.len() > 1 {
            let Some(oldest) = self
                .kept
                .iter()
                .min_by_key(|(_, k)| k.1)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some((size, _)) = self.kept.remove(&oldest) {
                total -= size;
            }
            self.entries.remove(&oldest);
            self.segments.remove(&oldest);
            self.names.remove(&oldest);
        }
    }

    fn keep_entries(&mut self, prefix: Vec<u8>, rows: Arc<Vec<IndexRow>>) {
        self.used(&prefix, Some(rows_size(&rows)));
        self.entries.insert(prefix, rows);
        self.shrink();
    }

    fn keep_segments(&mut self, prefix: Vec<u8>, segs: Arc<Segments>) {
        self.used(&prefix, Some(segments_size(&segs)));
        self.segments.insert(prefix, segs);
        self.shrink();
    }

    fn keep_names(&mut self, prefix: Vec<u8>, names: Names) {
        self.used(&prefix, Some(names_size(&names)));
        self.names.insert(prefix, names);
        self.shrink();
    }

    /// Keeps what a scan of repository `repo` read (see [`SledStore::read_repo`]): its
    /// trees, and its names if read. Returns the trees as kept.
    fn keep_read(
        &mut self,
        repo: &str,
        trees: Trees,
        names: Option<Names>,
    ) -> HashMap<String, Arc<Vec<IndexRow>>> {
        if let Some(names) = names {
            self.keep_names(names_prefix(repo), names);
        }
        trees
            .into_iter()
            .map(|(tree, rows)| {
                let rows = Arc::new(rows);
                self.keep_entries(ent_prefix(repo, &tree), rows.clone());
                (tree, rows)
            })
            .collect()
    }

    /// Applies a batch's patches in their order. A tree's entry patches are merged into
    /// its rows in one pass: a cold publish of thousands of packages must not shift the
    /// row vector once per package.
    fn patch(&mut self, patches: Vec<Patch>) {
        let mut entries: HashMap<Vec<u8>, BTreeMap<String, Option<IndexRow>>> = HashMap::new();
        let mut renamed: HashMap<Vec<u8>, isize> = HashMap::new();
        for p in patches {
            match p {
                // A later patch of the same key wins, as it would applied one by one.
                Patch::Entry(prefix, key, row) => {
                    entries.entry(prefix).or_default().insert(key, row);
                }
                Patch::Segment(prefix, key, bytes) => {
                    if let Some(segs) = self.segments.get_mut(&prefix) {
                        let segs = Arc::make_mut(segs);
                        match bytes {
                            Some(b) => segs.insert(key, b),
                            None => segs.remove(&key),
                        };
                        let size = segments_size(segs);
                        self.used(&prefix, Some(size));
                    }
                }
                // A name map's size changes by what goes in and out (worked out whole, it
                // would cost a server a walk of every name per upload).
                Patch::Name(prefix, name, path, present) => {
                    if let Some(names) = self.names.get_mut(&prefix) {
                        let grown = renamed.entry(prefix).or_default();
                        let (name_size, path_size) = (64 + name.len(), 48 + path.len());
                        if present {
                            let paths = names.entry(name).or_insert_with(|| {
                                *grown += name_size as isize;
                                BTreeSet::new()
                            });
                            if paths.insert(path) {
                                *grown += path_size as isize;
                            }
                        } else if let Some(paths) = names.get_mut(&name)
                            && paths.remove(&path)
                        {
                            *grown -= path_size as isize;
                            if paths.is_empty() {
                                names.remove(&name);
                                *grown -= name_size as isize;
                            }
                        }
                    }
                }
            }
        }
        for (prefix, changed) in entries {
            let Some(rows) = self.entries.get_mut(&prefix) else {
                continue;
            };
            // Unshared (as usual between publishes), the rows are changed where they are.
            let rows = Arc::make_mut(rows);
            if changed.len() <= FEW {
                for (key, row) in changed {
                    match (rows.binary_search_by(|r| r.key.cmp(&key)), row) {
                        (Ok(i), Some(row)) => rows[i] = row,
                        (Ok(i), None) => {
                            rows.remove(i);
                        }
                        (Err(i), Some(row)) => rows.insert(i, row),
                        (Err(_), None) => {}
                    }
                }
            } else {
                *rows = super::merge_rows(std::mem::take(rows), changed);
            }
            let size = rows_size(rows);
            self.used(&prefix, Some(size));
        }
        for (prefix, grown) in renamed {
            let was = self.kept.get(&prefix).map_or(0, |k| k.0);
            self.used(&prefix, Some(was.saturating_add_signed(grown)));
        }
        self.shrink();
    }
}

/// Up to this many changes, a tree's rows are patched one by one; more are merged.
const FEW: usize = 16;

/// The kept tree a record is listed in (its [`ent_prefix`]), and its row key there
/// (`<order>\0<path>`).
fn ent_parts(repo: &str, r: &PackageRecord) -> Option<(Vec<u8>, String)> {
    let l = r.listed.as_ref()?;
    Some((ent_prefix(repo, &l.tree), l.row_key(&r.path)))
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
// Kept index trees are named `ent\0<repo>\0<tree>\0` in memory (stores of earlier
// releases had a row per entry under it). Segments: `seg\0<repo>\0<tree>\0<key>`.
fn ent_prefix(repo: &str, tree: &str) -> Vec<u8> {
    format!("ent\0{repo}\0{tree}\0").into_bytes()
}
/// A tree's prefix and the rest of a key, as one key.
fn joined(prefix: &[u8], rest: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(rest.as_bytes());
    k
}
// A repository's kept names are named `name\0<repo>\0` in memory (stores of earlier
// releases had a row per package under it).
fn names_prefix(repo: &str) -> Vec<u8> {
    format!("name\0{repo}\0").into_bytes()
}

/// What marks a package row as this layout's (JSON, the layout before, starts with `{`).
const PKG_ROW: u8 = 1;

/// A package's row: `\x01`, then its tree, listing order, name and record (JSON), each
/// after its length (4 bytes, little-endian), then its index entry (empty when unlisted).
/// The listing and name come first, so a scan for a tree's entries or a repository's
/// names decodes no JSON. (An order may hold NUL: lengths, not separators.)
fn pkg_value(r: &PackageRecord) -> Vec<u8> {
    let (tree, order) = match &r.listed {
        Some(l) => (l.tree.as_str(), l.order.as_str()),
        None => ("", ""),
    };
    // Serialising our own plain records cannot fail.
    let json = serde_json::to_vec(r).unwrap_or_default();
    let mut v = Vec::with_capacity(1 + 16 + tree.len() + order.len() + json.len() + 2048);
    v.push(PKG_ROW);
    for part in [tree.as_bytes(), order.as_bytes(), r.name.as_bytes(), &json] {
        v.extend_from_slice(&(part.len() as u32).to_le_bytes());
        v.extend_from_slice(part);
    }
    if r.listed.is_some() {
        v.extend_from_slice(&r.index.encode(r.published, &r.sha256));
    }
    v
}

/// A package row's parts (see [`pkg_value`]).
struct PkgRow<'a> {
    tree: &'a [u8],
    order: &'a [u8],
    name: &'a [u8],
    json: &'a [u8],
    entry: &'a [u8],
}

fn pkg_row(v: &[u8]) -> Option<PkgRow<'_>> {
    let mut rest = v.strip_prefix(&[PKG_ROW])?;
    let mut part = || {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, after) = after.split_at_checked(len)?;
        rest = after;
        Some(part)
    };
    Some(PkgRow {
        tree: part()?,
        order: part()?,
        name: part()?,
        json: part()?,
        entry: rest,
    })
}

/// A package row's record, without its index entry.
fn decode_pkg(key: &[u8], v: &[u8]) -> Result<PackageRecord, StoreError> {
    let row = pkg_row(v).ok_or_else(|| corrupt(key, "not a package row"))?;
    decode(key, row.json)
}

fn corrupt(key: &[u8], message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        message: message.into(),
    }
}
fn seg_prefix(repo: &str, tree: &str) -> Vec<u8> {
    format!("seg\0{repo}\0{tree}\0").into_bytes()
}
// The build farm: `fbuild\0<id:016x>` builds, `task\0<build:016x>\0<index:08x>` tasks;
// claimable tasks `ready\0<platform>\0<build:016x>\0<index:08x>` and held leases
// `lease\0<expires:016x>\0<build:016x>\0<index:08x>` (empty values) find them without a
// scan. Hex of fixed width sorts as the numbers do.
fn fbuild_key(id: BuildId) -> Vec<u8> {
    format!("fbuild\0{id:016x}").into_bytes()
}
fn task_prefix(build: BuildId) -> Vec<u8> {
    format!("task\0{build:016x}\0").into_bytes()
}
fn task_key(build: BuildId, index: u32) -> Vec<u8> {
    format!("task\0{build:016x}\0{index:08x}").into_bytes()
}
fn task_log_prefix(build: BuildId, index: u32) -> Vec<u8> {
    format!("tasklog\0{build:016x}\0{index:08x}\0").into_bytes()
}
fn ready_prefix(platform: &str) -> Vec<u8> {
    format!("ready\0{platform}\0").into_bytes()
}
fn ready_key(t: &Task) -> Vec<u8> {
    let mut k = ready_prefix(&t.platform);
    k.extend_from_slice(format!("{:016x}\0{:08x}", t.build, t.index).as_bytes());
    k
}
fn lease_key(expires: i64, build: BuildId, index: u32) -> Vec<u8> {
    let e = expires.max(0) as u64;
    format!("lease\0{e:016x}\0{build:016x}\0{index:08x}").into_bytes()
}
/// The task a `ready` or `lease` key points at: its last two parts.
fn task_of_index_key(k: &[u8]) -> Option<(BuildId, u32)> {
    let text = std::str::from_utf8(k).ok()?;
    let mut parts = text.rsplit('\0');
    let index = u32::from_str_radix(parts.next()?, 16).ok()?;
    let build = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((build, index))
}
/// The index keys a task has in its state: claimable, or held under a lease.
fn task_index_keys(t: &Task) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    if t.claimable() {
        keys.push(ready_key(t));
    }
    if let (true, Some(l)) = (t.state.held(), &t.lease) {
        keys.push(lease_key(l.expires, t.build, t.index));
    }
    keys
}

// Files that left an index tree: `left\0<repo>\0<tree>`, a JSON list.
fn left_key(repo: &str, tree: &str) -> Vec<u8> {
    format!("left\0{repo}\0{tree}").into_bytes()
}
// An index directory's current generation: `gen\0<repo>\0<dir>`, JSON.
fn gen_key(repo: &str, dir: &str) -> Vec<u8> {
    format!("gen\0{repo}\0{dir}").into_bytes()
}
/// The prefixes of every key that belongs to repository `repo` (but its own record):
/// packages, segments, files that left, generations; and, in memory, its kept names and
/// index trees.
fn repo_prefixes(repo: &str) -> [Vec<u8>; 6] {
    ["pkg", "seg", "left", "gen", "name", "ent"]
        .map(|kind| format!("{kind}\0{repo}\0").into_bytes())
}

/// Candidates a claim looks at before it gives up for now (see [`Store::claim`]).
const CLAIM_TRIES: usize = 64;

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Removes the snapshot files a killed process left half written.
///
/// sled 0.34.7 writes a snapshot as `snap.<lsn>.generating` and renames it when whole,
/// but at open it reads the newest `snap.*` file, `.generating` ones included (its filter
/// still looks for an older suffix), and a half-written one makes it refuse to open with
/// "Read corrupted data". Such a file was never committed: the log it summarises is still
/// there, so the store opens from the snapshot before it. Files are removed only under
/// sled's own lock on `db`, so a snapshot a live process is writing is never touched.
fn clear_unfinished_snapshots(dir: &Path) -> std::io::Result<()> {
    let db = match std::fs::File::options()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    {
        Ok(db) => db,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match db.try_lock() {
        Ok(()) => {}
        // Held: sled's own open says the store is busy.
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(dir.join(&*name))?;
        }
    }
    // The lock goes with `db`, before sled takes it on its own descriptor.
    Ok(())
}

impl SledStore {
    /// Opens (creating) the store in `dir`. Only one process may hold it.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        clear_unfinished_snapshots(dir)
            .map_err(|e| StoreError::Backend(format!("clearing {}: {e}", dir.display())))?;
        match sled::open(dir) {
            Ok(db) => {
                let store = SledStore {
                    db,
                    memo: Mutex::default(),
                    repos: Default::default(),
                    builds: Default::default(),
                    data: dir.parent().unwrap_or(dir).to_path_buf(),
                };
                store.upgrade()?;
                Ok(store)
            }
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

    /// Stores of earlier releases kept each package in three rows (its record, an empty
    /// row under its name, its index entry under its tree); they become one row each (see
    /// [`pkg_value`]) in one batch, so an upgrade cut short is done whole at the next open.
    /// Every package of theirs had a row under its name, and this layout has none: a
    /// store without such rows (or index entry rows) has nothing to upgrade.
    fn upgrade_rows(&self) -> Result<(), StoreError> {
        let old_rows = |prefix: &[u8]| self.db.scan_prefix(prefix).next().is_some();
        if !old_rows(b"name\0") && !old_rows(b"ent\0") {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut upgraded = 0usize;
        for kv in self.db.scan_prefix(b"pkg\0") {
            let (k, v) = kv.map_err(backend)?;
            if v.first() == Some(&PKG_ROW) {
                continue;
            }
            let mut record: PackageRecord = decode(&k, &v)?;
            let repo = k[4..]
                .split(|b| *b == 0)
                .next()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            if let Some((prefix, rest)) = ent_parts(&repo, &record) {
                let ent = joined(&prefix, &rest);
                match self
                    .db
                    .get(&ent)
                    .map_err(backend)?
                    .as_deref()
                    .and_then(IndexEntry::decode)
                {
                    Some((_, _, entry)) => record.index = Arc::new(entry),
                    // Kept listed without an entry: reading that tree fails, as it did
                    // before; the rest of the store opens.
                    None => tracing::warn!(
                        key = %String::from_utf8_lossy(&ent).replace('\0', "/"),
                        "a listed package's index entry is missing or damaged"
                    ),
                }
            }
            batch.insert(k, pkg_value(&record));
            upgraded += 1;
        }
        for old in [&b"ent\0"[..], b"name\0"] {
            for k in self.db.scan_prefix(old).keys() {
                batch.remove(k.map_err(backend)?);
            }
        }
        self.db.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        if upgraded > 0 {
            tracing::info!("store upgraded: {upgraded} packages now one row each");
        }
        Ok(())
    }

    /// What data directories of earlier releases kept beside the database moves in:
    /// delete marks (`<data>/deleting/<repo>`) become records, then the files go.
    fn upgrade(&self) -> Result<(), StoreError> {
        self.upgrade_rows()?;
        let dir = self.data.join("deleting");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let changes = names
            .iter()
            .filter(|n| crate::paths::is_repo_name(n))
            .map(|n| Change::Deleting {
                repo: n.clone(),
                marked: true,
            })
            .collect();
        self.apply(changes)?;
        let io = |source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::remove_dir_all(&dir).map_err(io)
    }

    fn key_path(&self, repo: &str) -> PathBuf {
        self.data.join("keys").join(format!("{repo}.asc"))
    }

    fn memo(&self) -> MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rows of repository `repo`'s index trees that `want` (asked once per tree), each
    /// tree's in key order, and its names when `names` is set: one scan of its package
    /// rows.
    fn read_repo(
        &self,
        repo: &str,
        want: &dyn Fn(&str) -> bool,
        names: bool,
    ) -> Result<(Trees, Option<Names>), StoreError> {
        let prefix = pkg_prefix(repo);
        let mut trees = Trees::new();
        let mut wanted: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut by_name = Names::new();
        for kv in self.db.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(backend)?;
            let row = pkg_row(&v).ok_or_else(|| corrupt(&k, "not a package row"))?;
            let path = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| corrupt(&k, "a path that is not UTF-8"))?;
            if names {
                by_name
                    .entry(String::from_utf8_lossy(row.name).into_owned())
                    .or_default()
                    .insert(path.to_string());
            }
            if row.tree.is_empty() {
                continue;
            }
            let tree = String::from_utf8_lossy(row.tree);
            let wants = *wanted
                .entry(row.tree.to_vec())
                .or_insert_with(|| want(&tree));
            if wants {
                let (published, sha256, entry) = IndexEntry::decode(row.entry)
                    .ok_or_else(|| corrupt(&k, "not an index entry"))?;
                trees
                    .entry(tree.into_owned())
                    .or_default()
                    .push(IndexRow::new(
                        super::row_key(&String::from_utf8_lossy(row.order), path),
                        published,
                        sha256,
                        entry,
                    ));
            }
        }
        // Package rows come in path order; a tree's come in listing order.
        for rows in trees.values_mut() {
            rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        Ok((trees, names.then_some(by_name)))
    }

    /// A tree's index rows as the database holds them, in key order.
    #[cfg(test)]
    fn read_entries(&self, repo: &str, tree: &str) -> Result<Vec<IndexRow>, StoreError> {
        let (mut trees, _) = self.read_repo(repo, &|t| t == tree, false)?;
        Ok(trees.remove(tree).unwrap_or_default())
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
    serde_json::from_slice(v).map_err(|e| corrupt(key, e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// A batch worked out by [`SledStore::encode`], not yet written.
#[derive(Default)]
struct Encoded {
    /// None: nothing to write (the changes only touched repositories).
    batch: Option<sled::Batch>,
    patches: Vec<Patch>,
    /// The index trees packages are put into, by repository.
    trees: BTreeMap<String, BTreeSet<String>>,
    /// Repositories removed: their kept trees are forgotten once the batch is in.
    gone: Vec<String>,
}

impl SledStore {
    /// Works out what `changes` write — the rows, encoded, and what the kept trees must
    /// be told — reading the store but writing nothing.
    fn encode(&self, changes: Vec<Change>) -> Result<Encoded, StoreError> {
        // One process holds this store: no one else keeps copies to tell.
        if changes.iter().all(|c| matches!(c, Change::Touch(_))) {
            return Ok(Encoded::default());
        }
        let mut batch = sled::Batch::default();
        let mut patches: Vec<Patch> = Vec::new();
        // The index trees packages are put into, by repository.
        let mut trees: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Records as this batch leaves them so far: a later change in the same batch must
        // see an earlier one (a package added and pruned at once leaves nothing behind).
        let mut overlay: HashMap<Vec<u8>, Option<PackageRecord>> =
            HashMap::with_capacity(changes.len());
        // Tasks as this batch leaves them so far.
        let mut tasks: HashMap<Vec<u8>, Task> = Default::default();
        let current = |repo: &str,
                       path: &str,
                       overlay: &HashMap<Vec<u8>, Option<PackageRecord>>|
         -> Result<Option<PackageRecord>, StoreError> {
            match overlay.get(&pkg_key(repo, path)) {
                Some(r) => Ok(r.clone()),
                None => self.package(repo, path),
            }
        };
        // What a record's row answered goes with it from the kept trees and names.
        let unlist = |patches: &mut Vec<Patch>, repo: &str, old: &PackageRecord| {
            patches.push(Patch::Name(
                names_prefix(repo),
                old.name.clone(),
                old.path.clone(),
                false,
            ));
            if let Some((prefix, rest)) = ent_parts(repo, old) {
                patches.push(Patch::Entry(prefix, rest, None));
            }
        };
        // Repositories removed: their kept trees are forgotten once the batch is in.
        let mut gone: Vec<String> = Vec::new();
        for c in changes {
            match c {
                Change::PutRepo(r) => batch.insert(repo_key(&r.name), encode(&r)),
                Change::PutPackage { repo, record } => {
                    // A record replaced in place may have been listed elsewhere.
                    if let Some(old) = current(&repo, &record.path, &overlay)? {
                        unlist(&mut patches, &repo, &old);
                    }
                    patches.push(Patch::Name(
                        names_prefix(&repo),
                        record.name.clone(),
                        record.path.clone(),
                        true,
                    ));
                    if let Some(l) = &record.listed {
                        trees
                            .entry(repo.clone())
                            .or_default()
                            .insert(l.tree.clone());
                    }
                    if let Some((prefix, rest)) = ent_parts(&repo, &record) {
                        patches.push(Patch::Entry(
                            prefix,
                            rest.clone(),
                            Some(IndexRow::new(
                                rest,
                                record.published,
                                record.sha256.clone(),
                                record.index.clone(),
                            )),
                        ));
                    }
                    batch.insert(pkg_key(&repo, &record.path), pkg_value(&record));
                    overlay.insert(pkg_key(&repo, &record.path), Some(record));
                }
                Change::RemovePackage { repo, path } => {
                    if let Some(old) = current(&repo, &path, &overlay)? {
                        unlist(&mut patches, &repo, &old);
                    }
                    overlay.insert(pkg_key(&repo, &path), None);
                    batch.remove(pkg_key(&repo, &path))
                }
                Change::PutLock(l) => batch.insert(lock_key(&l.configuration), encode(&l)),
                Change::PutToken(t) => batch.insert(token_key(&t.id), encode(&t)),
                Change::PutSegment {
                    repo,
                    tree,
                    key,
                    bytes,
                } => {
                    let prefix = seg_prefix(&repo, &tree);
                    batch.insert(joined(&prefix, &key), bytes.as_slice());
                    patches.push(Patch::Segment(prefix, key, Some(bytes)));
                }
                Change::Touch(_) => {}
                Change::RemoveRepo(repo) => {
                    batch.remove(repo_key(&repo));
                    for prefix in repo_prefixes(&repo) {
                        for k in self.db.scan_prefix(&prefix).keys() {
                            batch.remove(k.map_err(backend)?);
                        }
                    }
                    gone.push(repo);
                }
                Change::PutFarmBuild(b) => batch.insert(fbuild_key(b.id), encode(&b)),
                Change::PutTask(t) => {
                    let key = task_key(t.build, t.index);
                    // What finds it now replaces what found it before (also a task put
                    // twice in this batch).
                    let old = match tasks.get(&key) {
                        Some(t) => Some(t.clone()),
                        None => self.get::<Task>(&key)?,
                    };
                    for k in old.iter().flat_map(task_index_keys) {
                        batch.remove(k);
                    }
                    for k in task_index_keys(&t) {
                        batch.insert(k, &[][..]);
                    }
                    batch.insert(key.clone(), encode(&t));
                    tasks.insert(key, t);
                }
                Change::PutLeft { repo, tree, files } if files.is_empty() => {
                    batch.remove(left_key(&repo, &tree))
                }
                Change::PutLeft { repo, tree, files } => {
                    batch.insert(left_key(&repo, &tree), encode(&files))
                }
                Change::PutGeneration {
                    repo,
                    dir,
                    generation,
                } => batch.insert(gen_key(&repo, &dir), encode(&generation)),
                Change::Deleting { repo, marked: true } => {
                    batch.insert(deleting_key(&repo), &[][..])
                }
                Change::Deleting {
                    repo,
                    marked: false,
                } => batch.remove(deleting_key(&repo)),
                Change::RemoveSegment { repo, tree, key } => {
                    let prefix = seg_prefix(&repo, &tree);
                    batch.remove(joined(&prefix, &key));
                    patches.push(Patch::Segment(prefix, key, None));
                }
            }
        }
        Ok(Encoded {
            batch: Some(batch),
            patches,
            trees,
            gone,
        })
    }

    /// Applies what [`SledStore::encode`] worked out, durably, and patches the kept trees.
    fn write(&self, encoded: Encoded) -> Result<(), StoreError> {
        let Encoded {
            batch,
            patches,
            trees,
            gone,
        } = encoded;
        let Some(batch) = batch else {
            return Ok(());
        };
        let mut memo = self.memo();
        // A tree this batch changes is read first, if not yet kept, and kept patched: the
        // index build that follows a publish reads it at once, and a cold publish would
        // otherwise decode from the database the thousands of rows it just wrote.
        for (repo, trees) in trees {
            let missing: BTreeSet<String> = trees
                .into_iter()
                .filter(|t| !memo.entries.contains_key(&ent_prefix(&repo, t)))
                .collect();
            if !missing.is_empty() {
                let (mut rows, _) = self.read_repo(&repo, &|t| missing.contains(t), false)?;
                // A tree without rows yet (the first publish into it) is kept empty.
                for t in missing {
                    rows.entry(t).or_default();
                }
                memo.keep_read(&repo, rows, None);
            }
        }
        if let Err(e) = self.db.apply_batch(batch) {
            // Whether any of it took is unknown: read the trees afresh.
            memo.clear();
            return Err(backend(e));
        }
        memo.patch(patches);
        for repo in gone {
            memo.forget_repo(&repo);
        }
        drop(memo);
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

impl Store for SledStore {
    fn is_local(&self) -> bool {
        true
    }

    fn lock_repo(&self, repo: &str) -> Result<super::RepoGuard, StoreError> {
        Ok(self.repos.lock(repo))
    }

    fn lock_farm_build(&self, build: BuildId) -> Result<super::BuildGuard, StoreError> {
        Ok(super::BuildGuard::new(self.builds.lock(&build.to_string())))
    }

    fn deleting(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .scan_prefix(b"deleting\0")
            .keys()
            .map(|k| {
                let k = k.map_err(backend)?;
                Ok(String::from_utf8_lossy(&k["deleting\0".len()..]).into_owned())
            })
            .collect()
    }

    fn task_log_len(&self, build: BuildId, index: u32) -> Result<u64, StoreError> {
        let Some((k, v)) = self
            .db
            .scan_prefix(task_log_prefix(build, index))
            .next_back()
            .transpose()
            .map_err(backend)?
        else {
            return Ok(0);
        };
        let at = &k[task_log_prefix(build, index).len()..];
        let at = u64::from_str_radix(&String::from_utf8_lossy(at), 16).unwrap_or(0);
        Ok(at + v.len() as u64)
    }

    fn append_task_log(
        &self,
        build: BuildId,
        index: u32,
        at: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let mut key = task_log_prefix(build, index);
        key.extend_from_slice(format!("{at:016x}").as_bytes());
        self.db
            .compare_and_swap(key, None::<&[u8]>, Some(bytes))
            .map_err(backend)?
            .ok();
        // Not flushed: a running log's last part lost in a crash is sent again by its
        // agent, or the task runs again.
        Ok(())
    }

    fn task_log(&self, build: BuildId, index: u32) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        for v in self.db.scan_prefix(task_log_prefix(build, index)).values() {
            out.extend_from_slice(&v.map_err(backend)?);
        }
        Ok(out)
    }

    fn remove_task_log(&self, build: BuildId, index: u32) -> Result<(), StoreError> {
        for k in self.db.scan_prefix(task_log_prefix(build, index)).keys() {
            self.db.remove(k.map_err(backend)?).map_err(backend)?;
        }
        Ok(())
    }

    fn secret_key(&self, repo: &str) -> Result<Option<String>, StoreError> {
        let path = self.key_path(repo);
        match std::fs::read_to_string(&path) {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn put_secret_key(&self, repo: &str, armored: &str) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.key_path(repo);
        let dir = self.data.join("keys");
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Owner-only (temporary files are made 0600), written whole or not at all.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.write_all(armored.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    fn remove_secret_key(&self, repo: &str) -> Result<(), StoreError> {
        let path = self.key_path(repo);
        crate::blobs::unless_missing(std::fs::remove_file(&path)).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    fn secret_key_place(&self, repo: &str) -> String {
        self.key_path(repo).display().to_string()
    }

    fn keeps_secrets_local(&self) -> bool {
        true
    }

    fn serving(&self, url: Option<&str>) -> Result<(), StoreError> {
        let path = self.data.join("server.json");
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        match url {
            Some(url) => {
                let info = ServerInfo {
                    url: url.to_string(),
                    pid: std::process::id(),
                };
                let text = serde_json::to_string(&info).unwrap_or_default();
                crate::atomic::write(&path, text.as_bytes()).map_err(io)
            }
            None => crate::blobs::unless_missing(std::fs::remove_file(&path)).map_err(io),
        }
    }

    fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        self.write(self.encode(changes)?)
    }

    fn prepare(&self, changes: Vec<Change>) -> Result<Prepared<'_>, StoreError> {
        let encoded = self.encode(changes)?;
        Ok(Prepared::new(move || self.write(encoded)))
    }

    fn repo(&self, name: &str) -> Result<Option<RepoRecord>, StoreError> {
        self.get(&repo_key(name))
    }

    fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        self.scan(b"repo\0")
    }

    fn package(&self, repo: &str, path: &str) -> Result<Option<PackageRecord>, StoreError> {
        let key = pkg_key(repo, path);
        match self.db.get(&key).map_err(backend)? {
            None => Ok(None),
            Some(v) => decode_pkg(&key, &v).map(Some),
        }
    }

    fn packages(&self, repo: &str) -> Result<Vec<PackageRecord>, StoreError> {
        self.db
            .scan_prefix(pkg_prefix(repo))
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                decode_pkg(&k, &v)
            })
            .collect()
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
        let prefix = names_prefix(repo);
        let mut memo = self.memo();
        let paths: Vec<String> = match memo.names.get(&prefix) {
            Some(names) => {
                let paths = names.get(name).into_iter().flatten().cloned().collect();
                memo.used(&prefix, None);
                paths
            }
            // The scan also takes the trees not kept: a publish asks for its names first,
            // then for the trees it changes, and a second scan of a big repository's rows
            // would cost about as much as the first.
            None => {
                let kept = |t: &str| memo.entries.contains_key(&ent_prefix(repo, t));
                let (trees, names) = self.read_repo(repo, &|t| !kept(t), true)?;
                let names = names.unwrap_or_default();
                let paths = names.get(name).into_iter().flatten().cloned().collect();
                memo.keep_read(repo, trees, Some(names));
                paths
            }
        };
        // Records are read under the memo's lock: no batch comes between.
        paths
            .iter()
            .filter_map(|p| self.package(repo, p).transpose())
            .collect()
    }

    fn index_entries(&self, repo: &str, tree: &str) -> Result<Arc<Vec<IndexRow>>, StoreError> {
        let prefix = ent_prefix(repo, tree);
        let mut memo = self.memo();
        if let Some(rows) = memo.entries.get(&prefix).cloned() {
            memo.used(&prefix, None);
            return Ok(rows);
        }
        // The scan that finds the tree's rows takes the repository's names too, if they
        // are not kept: a publish asks for both.
        let want_names = !memo.names.contains_key(&names_prefix(repo));
        let (mut trees, names) = self.read_repo(repo, &|t| t == tree, want_names)?;
        // A tree without rows is kept too (empty), so it is not scanned for again.
        trees.entry(tree.to_string()).or_default();
        let mut kept = memo.keep_read(repo, trees, names);
        Ok(kept.remove(tree).unwrap_or_default())
    }

    fn segments(&self, repo: &str, tree: &str) -> Result<Arc<Segments>, StoreError> {
        let prefix = seg_prefix(repo, tree);
        let mut memo = self.memo();
        if let Some(segs) = memo.segments.get(&prefix).cloned() {
            memo.used(&prefix, None);
            return Ok(segs);
        }
        let segs = self
            .db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                Ok((
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    v.to_vec(),
                ))
            })
            .collect::<Result<Segments, StoreError>>()?;
        let segs = Arc::new(segs);
        memo.keep_segments(prefix, segs.clone());
        Ok(segs)
    }

    fn left_files(&self, repo: &str, tree: &str) -> Result<Vec<LeftFile>, StoreError> {
        Ok(self.get(&left_key(repo, tree))?.unwrap_or_default())
    }

    fn generation(&self, repo: &str, dir: &str) -> Result<Option<Generation>, StoreError> {
        self.get(&gen_key(repo, dir))
    }

    fn new_build_id(&self) -> Result<BuildId, StoreError> {
        // Monotonic and durable across restarts; 0 is never handed out.
        Ok(self.db.generate_id().map_err(backend)? + 1)
    }

    fn farm_build(&self, id: BuildId) -> Result<Option<FarmBuild>, StoreError> {
        self.get(&fbuild_key(id))
    }

    fn farm_builds(&self) -> Result<Vec<FarmBuild>, StoreError> {
        let mut all: Vec<FarmBuild> = self.scan(b"fbuild\0")?;
        all.reverse();
        Ok(all)
    }

    fn tasks(&self, build: BuildId) -> Result<Vec<Task>, StoreError> {
        self.scan(&task_prefix(build))
    }

    fn task(&self, build: BuildId, index: u32) -> Result<Option<Task>, StoreError> {
        self.get(&task_key(build, index))
    }

    fn claim(
        &self,
        platforms: &[String],
        lease: Lease,
        now: i64,
    ) -> Result<Option<Task>, StoreError> {
        // Each miss below is another claim (or a cancel) taking the task first; the bound
        // only keeps a damaged index from looping (the agent asks again).
        for _ in 0..CLAIM_TRIES {
            // The first claimable task of each platform; the oldest build's wins.
            let mut best: Option<(BuildId, u32)> = None;
            for p in platforms {
                let first = self.db.scan_prefix(ready_prefix(p)).keys().next();
                if let Some(k) = first.transpose().map_err(backend)?
                    && let Some(id) = task_of_index_key(&k)
                    && best.is_none_or(|b| id < b)
                {
                    best = Some(id);
                }
            }
            let Some((build, index)) = best else {
                return Ok(None);
            };
            // Taken under the build's lock, read again: the change that held it (or a
            // claim just before) may have taken or cancelled it.
            let _build = self.lock_farm_build(build)?;
            let Some(mut task) = self.task(build, index)? else {
                return Ok(None);
            };
            if !task.claimable() || !platforms.contains(&task.platform) {
                continue;
            }
            task.claim(lease, now);
            self.apply(vec![Change::PutTask(task.clone())])?;
            return Ok(Some(task));
        }
        Ok(None)
    }

    fn expired(&self, now: i64) -> Result<Vec<(BuildId, u32)>, StoreError> {
        let mut out = Vec::new();
        for k in self.db.scan_prefix(b"lease\0").keys() {
            let k = k.map_err(backend)?;
            let expires = std::str::from_utf8(&k[6..22])
                .ok()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or(u64::MAX);
            if expires as i64 >= now {
                break;
            }
            out.extend(task_of_index_key(&k));
        }
        Ok(out)
    }

    fn claimable(&self) -> Result<u64, StoreError> {
        Ok(self.db.scan_prefix(b"ready\0").keys().count() as u64)
    }

    fn task_counts(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        let mut counts: HashMap<TaskState, u64> = HashMap::new();
        for t in self.scan::<Task>(b"task\0")? {
            *counts.entry(t.state).or_default() += 1;
        }
        Ok(TaskState::ALL
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Listing;

    fn listed(path: &str, tree: &str) -> Change {
        Change::PutPackage {
            repo: "r".into(),
            record: PackageRecord {
                listed: Some(Listing {
                    tree: tree.into(),
                    order: path.into(),
                }),
                index: Arc::new(IndexEntry::Yum {
                    primary: format!("<package>{}</package>", path.repeat(50)),
                    filelists: String::new(),
                    other: String::new(),
                }),
                ..crate::store::conformance::record(path)
            },
        }
    }

    /// A store of the layout before (three rows per package) opens upgraded: one row per
    /// package, the same records, names and index trees, and no rows of the old kinds.
    #[test]
    fn a_store_of_three_rows_per_package_opens_as_one_row_per_package() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<PackageRecord> = ["a1", "a2", "b1"]
            .into_iter()
            .map(
                |p| match listed(p, if p.starts_with('a') { "yum/a" } else { "yum/b" }) {
                    Change::PutPackage { record, .. } => record,
                    _ => unreachable!(),
                },
            )
            .chain([crate::store::conformance::record("t.tar.gz")])
            .collect();
        {
            // Written as the release before wrote them.
            let db = sled::open(dir.path().join("store")).unwrap();
            for r in &records {
                db.insert(pkg_key("r", &r.path), encode(r)).unwrap();
                db.insert(format!("name\0r\0{}\0{}", r.name, r.path), &[][..])
                    .unwrap();
                if let Some((prefix, rest)) = ent_parts("r", r) {
                    db.insert(
                        joined(&prefix, &rest),
                        r.index.encode(r.published, &r.sha256),
                    )
                    .unwrap();
                }
            }
            db.flush().unwrap();
        }
        let store =
            SledStore::open_waiting(&dir.path().join("store"), Duration::from_secs(10)).unwrap();
        for kind in ["ent\0", "name\0"] {
            assert_eq!(
                store.db.scan_prefix(kind).count(),
                0,
                "{kind} rows are gone"
            );
        }
        for r in &records {
            let got = store.package("r", &r.path).unwrap().unwrap();
            assert_eq!(encode(&got), encode(r));
            let named = store.packages_named("r", &r.name).unwrap();
            assert!(named.iter().any(|n| n.path == r.path));
        }
        let a = store.index_entries("r", "yum/a").unwrap();
        let keys: Vec<&str> = a.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a1\0a1", "a2\0a2"]);
        assert_eq!(a[0].entry, records[0].index);
        assert_eq!(store.index_entries("r", "yum/b").unwrap().len(), 1);
        // Opened again, nothing is upgraded twice. (sled lets go of its lock a moment
        // after a store that wrote is dropped.)
        drop(store);
        let store =
            SledStore::open_waiting(&dir.path().join("store"), Duration::from_secs(10)).unwrap();
        assert_eq!(store.packages("r").unwrap().len(), 4);
        assert_eq!(store.index_entries("r", "yum/a").unwrap().len(), 2);
    }

    /// An old store whose listed package lost its index entry still opens; only reading
    /// that tree says what is wrong, as it did before the upgrade.
    #[test]
    fn an_old_store_missing_an_index_entry_opens_and_that_tree_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let Change::PutPackage { record, .. } = listed("a1", "yum/a") else {
            unreachable!()
        };
        let plain = crate::store::conformance::record("t.tar.gz");
        {
            let db = sled::open(dir.path().join("store")).unwrap();
            for r in [&record, &plain] {
                db.insert(pkg_key("r", &r.path), encode(r)).unwrap();
                db.insert(format!("name\0r\0{}\0{}", r.name, r.path), &[][..])
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let store =
            SledStore::open_waiting(&dir.path().join("store"), Duration::from_secs(10)).unwrap();
        assert_eq!(store.packages("r").unwrap().len(), 2);
        assert!(matches!(
            store.index_entries("r", "yum/a"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// A package row's parts come back as they went in, an unlisted one's empty.
    #[test]
    fn package_rows_split_into_what_was_joined() {
        let Change::PutPackage { record, .. } = listed("a1", "yum/a") else {
            unreachable!()
        };
        let v = pkg_value(&record);
        let row = pkg_row(&v).unwrap();
        assert_eq!((row.tree, row.order), (&b"yum/a"[..], &b"a1"[..]));
        assert_eq!(row.name, record.name.as_bytes());
        assert_eq!(decode_pkg(b"k", &v).unwrap().path, "a1");
        let (_, _, entry) = IndexEntry::decode(row.entry).unwrap();
        assert_eq!(entry, *record.index);
        let plain = crate::store::conformance::record("t.tar.gz");
        let v = pkg_value(&plain);
        let row = pkg_row(&v).unwrap();
        assert!(row.tree.is_empty() && row.entry.is_empty());
        // The layout before (JSON) is not taken for a row of this one.
        assert!(pkg_row(&encode(&plain)).is_none());
    }

    fn kept(store: &SledStore) -> Vec<String> {
        let mut k: Vec<String> = store
            .memo()
            .entries
            .keys()
            .map(|p| String::from_utf8_lossy(p).replace('\0', "/"))
            .collect();
        k.sort();
        k
    }

    /// A process killed while sled wrote a snapshot leaves `snap.<lsn>.generating`, half
    /// written; the store still opens, with everything committed before.
    #[test]
    fn a_snapshot_a_killed_process_left_unfinished_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(&dir.path().join("store")).unwrap();
            store.apply(vec![listed("a1", "yum/a")]).unwrap();
        }
        let unfinished = dir.path().join("store/snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"half a snapshot").unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        assert_eq!(store.index_entries("r", "yum/a").unwrap().len(), 1);
        assert!(!unfinished.exists());
        // While a process holds the store, its files are left alone.
        std::fs::write(&unfinished, b"being written").unwrap();
        assert!(matches!(
            SledStore::open(&dir.path().join("store")),
            Err(StoreError::Busy { .. })
        ));
        assert!(unfinished.exists());
    }

    #[test]
    fn sled_store_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        crate::store::conformance::check(&SledStore::open(&dir.path().join("store")).unwrap());
    }

    /// One process holds a sled store: its servers' queues share the store itself.
    #[test]
    fn sled_store_keeps_the_shared_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        crate::store::conformance::check_shared(&store, &store);
    }

    #[test]
    fn kept_trees_past_the_budget_are_forgotten_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        // Room for about one tree of three rows.
        let one_tree = {
            store
                .apply(vec![
                    listed("a1", "yum/a"),
                    listed("a2", "yum/a"),
                    listed("a3", "yum/a"),
                ])
                .unwrap();
            rows_size(&store.index_entries("r", "yum/a").unwrap())
        };
        store.memo().budget = one_tree + one_tree / 2;
        store
            .apply(vec![
                listed("b1", "yum/b"),
                listed("b2", "yum/b"),
                listed("b3", "yum/b"),
            ])
            .unwrap();
        assert_eq!(
            kept(&store),
            ["ent/r/yum/b/"],
            "the older tree is forgotten"
        );
        // Read again when asked for, and the other one goes.
        assert_eq!(store.index_entries("r", "yum/a").unwrap().len(), 3);
        assert_eq!(kept(&store), ["ent/r/yum/a/"]);
        // A forgotten tree changed by a batch is read first, then patched: never stale.
        store.apply(vec![listed("b4", "yum/b")]).unwrap();
        let b = store.index_entries("r", "yum/b").unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(*b, store.read_entries("r", "yum/b").unwrap());
        // A budget that holds both keeps both.
        store.memo().budget = MEMO_BYTES;
        store.index_entries("r", "yum/a").unwrap();
        assert_eq!(kept(&store), ["ent/r/yum/a/", "ent/r/yum/b/"]);
    }
}
