//! The metadata store on PostgreSQL (`--store postgres://USER@HOST:PORT/DB`): what
//! [`super::SledStore`] keeps, in tables (`migrations/*.sql`), so several packyard
//! processes on several machines share one store. Same behaviour as the embedded store,
//! record for record: the same JSON records, index entries listed in the same byte order,
//! one SQL transaction per [`Store::apply`] batch.
//!
//! - **Schema.** Versioned files under `migrations/`, embedded in the binary and applied
//!   at open, in one transaction under an advisory lock (two processes opening a new
//!   database at once do not race), each recorded in `schema_version`. A released file is
//!   never edited; a change is a new file. A database written by a newer packyard is
//!   refused.
//! - **Publishes of one repository serialise across processes.** [`Store::lock_repo`]
//!   takes a session advisory lock (`pg_advisory_lock`) on a hash of the repository name,
//!   on a connection the guard holds; dropping the guard unlocks it (and a process that
//!   dies lets go with its session).
//! - **Changes of a farm build's tasks serialise across processes.**
//!   [`Store::lock_farm_build`] takes a session advisory lock on the two keys
//!   (`BUILD_LOCKS`, the build id's low 32 bits) — a key space of its own, apart from
//!   the 64-bit keys of the repositories' and the schema's locks — on a connection the
//!   guard holds, as `lock_repo` does. `farm::Queue` holds it while it reads a build's
//!   tasks and writes them back; the reads, on other connections, see every batch the
//!   holder before it committed (it committed before it let go, and tasks are never
//!   cached).
//! - **Claims are atomic across processes, under the build's lock.** [`Store::claim`]
//!   reads which build has the oldest claimable task (lowest build id, then index, as the
//!   embedded store orders them) outside any transaction, then in one transaction takes
//!   that build's lock (`pg_advisory_xact_lock`, let go at commit), picks the build's
//!   first claimable task `FOR UPDATE` and claims it. Lock before row, as every holder of
//!   the session lock takes them (its batches lock rows while it holds the lock): had the
//!   claim row-locked its task first and then waited for the lock, a cancel holding the
//!   lock and writing that row would wait for the claim in a circle. A claim that finds
//!   the build's tasks taken meanwhile (by another claim or a cancel) looks again.
//! - **Index trees are kept while provably current; nothing else is cached.** Every
//!   batch that changes a repository's index entries gives it a new entry version (one
//!   sequence, `repo_entry_versions`, rows locked in name order at the batch's start).
//!   A tree read is kept with the version it was read at (the version read first, the
//!   rows after, so rows are never older than their version); a read asks for the
//!   version (one small query) and uses the kept rows only while it is unchanged. This
//!   process's own batches patch the trees they change and move them to the new
//!   version, when the version they moved on from is the one kept (no one else wrote in
//!   between); otherwise the repository's trees are forgotten. Everything else is read
//!   from the database every time.
//! - **Batches are written in bulk.** The package changes of a batch are applied from
//!   memory (a package added and removed in one batch leaves nothing, as in the embedded
//!   store) and written with a few array statements, not one round trip per package; a
//!   batch that deadlocks with another is rolled back and tried again.
//!
//! Connections: the synchronous `postgres` client (the store's callers are synchronous),
//! in a small pool of our own — a `Mutex<Vec<_>>` of idle connections, each with its
//! prepared statements — rather than a pool crate (`r2d2_postgres`): the store needs
//! nothing more. Connections are opened on demand, at most [`MAX_IDLE`] are kept idle,
//! and one that sat idle is checked before reuse. The client drives each call on a Tokio
//! runtime of its own, which panics on a thread already inside a runtime (an actix
//! worker, a `web::block` thread), and the server calls the store from such threads: there
//! every call, and every drop of a connection, is made from a short-lived thread of its
//! own ([`off_runtime`]); elsewhere (commands, agents, tests) it is made inline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BuildGuard, BuildId, Change, FarmBuild, Generation, IndexEntry, IndexRow, Lease, LeftFile,
    LockRecord, PackageRecord, RepoGuard, RepoRecord, Segments, Store, StoreError, Task, TaskState,
    TokenRecord,
};

/// The schema, version by version: `(version, SQL)`, applied in order from the first the
/// database lacks.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_task_logs.sql")),
    (3, include_str!("migrations/0003_entry_versions.sql")),
    (4, include_str!("migrations/0004_serve_leases.sql")),
];

/// Idle connections kept for reuse; more are opened when needed and closed after.
const MAX_IDLE: usize = 8;
/// An idle connection unused for this long is checked before it is used again.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// Rows per statement when a batch writes many.
const CHUNK: usize = 500;
/// Candidates a claim looks at before it gives up for now (see [`Store::claim`]).
const CLAIM_TRIES: usize = 64;
/// Tries of a transaction that PostgreSQL rolled back for a deadlock or a serialization
/// failure.
const ATTEMPTS: usize = 4;

/// The metadata store in a PostgreSQL database.
pub struct PostgresStore {
    pool: Arc<Pool>,
    /// Index trees read, at their repository's entry version.
    kept: KeptTrees,
}

/// Index trees' entries this process read, each with the entry version of its repository
/// it was read at: used while the repository's version is still that one (another
/// process's batch moves it on), and patched by this process's own batches.
#[derive(Default)]
struct KeptTrees {
    trees: Mutex<HashMap<TreeAt, Kept>>,
}

/// A kept tree: the entry version it was read at, and its rows in key order.
type Kept = (i64, Arc<Vec<IndexRow>>);

/// An index tree: repository and tree.
type TreeAt = (String, String);

/// Rows kept at most, over every tree; past it, everything kept is forgotten.
const KEPT_ROWS: usize = 2_000_000;

impl KeptTrees {
    fn get(&self, repo: &str, tree: &str, version: i64) -> Option<Arc<Vec<IndexRow>>> {
        let trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        trees
            .get(&(repo.to_string(), tree.to_string()))
            .filter(|(v, _)| *v == version)
            .map(|(_, rows)| rows.clone())
    }

    fn keep(&self, repo: &str, tree: &str, version: i64, rows: Arc<Vec<IndexRow>>) {
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = trees.values().map(|(_, r)| r.len()).sum();
        if total + rows.len() > KEPT_ROWS {
            trees.clear();
        }
        trees.insert((repo.to_string(), tree.to_string()), (version, rows));
    }

    /// After a batch of this process committed: trees kept at the version the batch
    /// moved on from take its changes and its version; others of those repositories (read
    /// before another process's batch) are forgotten, as are removed repositories'.
    fn after(
        &self,
        bumped: Vec<(String, Option<i64>, i64)>,
        patches: Vec<EntryPatch>,
        removed: &[String],
    ) {
        if bumped.is_empty() {
            return;
        }
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        // A removed repository's entries went without a patch each.
        trees.retain(|(r, _), _| !removed.contains(r));
        let mut changed: HashMap<TreeAt, BTreeMap<String, Option<IndexRow>>> = HashMap::new();
        for (repo, tree, key, value) in patches {
            let key = String::from_utf8_lossy(&key).into_owned();
            let row = value.and_then(|v| {
                let (published, sha256, entry) = IndexEntry::decode(&v)?;
                Some(IndexRow::new(key.clone(), published, sha256, entry))
            });
            changed.entry((repo, tree)).or_default().insert(key, row);
        }
        for (repo, before, now) in bumped {
            let ours: Vec<(String, String)> =
                trees.keys().filter(|(r, _)| *r == repo).cloned().collect();
            for at in ours {
                let Some((version, rows)) = trees.get_mut(&at) else {
                    continue;
                };
                if Some(*version) != before {
                    trees.remove(&at);
                    continue;
                }
                *version = now;
                if let Some(c) = changed.remove(&at) {
                    // Unshared (as usual between publishes), the rows change in place.
                    let r = Arc::make_mut(rows);
                    *r = super::merge_rows(std::mem::take(r), c);
                }
            }
        }
    }
}

struct Pool {
    config: postgres::Config,
    /// The database URL without its password, for messages.
    shown: String,
    idle: Mutex<Vec<Conn>>,
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    used: Instant,
}

/// What goes wrong inside a call: the database's errors are kept as they are until the
/// call ends, so a transaction can tell a deadlock (tried again) from the rest.
enum Fail {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs `f` where the synchronous client may block: inline, unless this thread is inside
/// a Tokio runtime (where the client's own runtime would panic), then on a thread of its
/// own that this one waits for.
fn off_runtime<R: Send>(f: impl FnOnce() -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("packyard-postgres".into())
            .spawn_scoped(s, f)
            .map_err(|e| StoreError::Backend(format!("cannot start a thread: {e}")))?;
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The first of the two numbers of every farm build's advisory lock ("pyfb"). Locks named
/// by two 32-bit numbers are a key space of their own, apart from the 64-bit keys of
/// [`lock_key`] (the schema's and the repositories' locks).
const BUILD_LOCKS: i32 = 0x7079_6662;

/// The two numbers of build `id`'s advisory lock: [`BUILD_LOCKS`] and the id's low 32 bits.
/// Builds 2³² apart share a lock: they only wait for each other (a holder never asks for
/// a second build's lock).
fn build_lock_key(id: BuildId) -> (i32, i32) {
    (BUILD_LOCKS, id as u32 as i32)
}

/// A stable 64-bit number for an advisory lock on `what`.
fn lock_key(what: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("packyard\0{what}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Whether PostgreSQL rolled the transaction back for a conflict with another: trying
/// again can succeed.
fn retriable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// The database's own words for an error (the client's `Display` says only "db error"),
/// else the error and its causes.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            text.push_str("; ");
            text.push_str(extra);
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn retrying<R>(mut f: impl FnMut() -> Result<R, Fail>) -> Result<R, Fail> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(Fail::Db(e)) if attempt < ATTEMPTS && retriable(&e) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10 * attempt as u64));
            }
            other => return other,
        }
    }
}

fn decode<T: DeserializeOwned>(key: impl FnOnce() -> String, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: key(),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> String {
    // Serialising our own plain records cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn build_id(id: BuildId) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Backend(format!("build id {id} is out of range")))
}

fn from_build_id(id: i64) -> Result<BuildId, StoreError> {
    BuildId::try_from(id)
        .map_err(|_| StoreError::Backend(format!("the database holds a build id {id}")))
}

/// An index entry's key within its tree: `<order>\0<path>`, so entries list in their
/// order, then by path (as the embedded store's keys sort).
fn entry_key(order: &[u8], path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(order.len() + 1 + path.len());
    k.extend_from_slice(order);
    k.push(0);
    k.extend_from_slice(path.as_bytes());
    k
}

/// A statement on a connection or in a transaction, prepared once per connection.
struct Db<'a, C: GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl<C: GenericClient> Db<'_, C> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, Fail> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &'static str, params: Params) -> Result<Vec<Row>, Fail> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: Params) -> Result<u64, Fail> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    fn one(&mut self, sql: &'static str, params: Params) -> Result<Row, Fail> {
        let s = self.statement(sql)?;
        Ok(self.client.query_one(&s, params)?)
    }
}

impl Conn {
    fn db(&mut self) -> Db<'_, Client> {
        Db {
            client: &mut self.client,
            statements: &mut self.statements,
        }
    }
}

/// Column `i` of `row` (a mismatch is the schema's fault: an error, not a panic).
fn col<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, Fail> {
    Ok(row.try_get(i)?)
}

impl Pool {
    fn error(&self, f: Fail) -> StoreError {
        match f {
            Fail::Store(e) => e,
            Fail::Db(e) => {
                StoreError::Backend(format!("PostgreSQL ({}): {}", self.shown, describe(&e)))
            }
        }
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let client = self.config.connect(NoTls).map_err(|e| {
            StoreError::Unreachable(format!(
                "cannot connect to PostgreSQL at {}: {}; start PostgreSQL or fix --store \
                 (PACKYARD_STORE, `store` in packyard.toml)",
                self.shown,
                describe(&e)
            ))
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            used: Instant::now(),
        })
    }

    /// An idle connection that still works, or a new one. Called off any runtime.
    fn get(&self) -> Result<Conn, StoreError> {
        loop {
            let next = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut c) = next else {
                return self.connect();
            };
            if c.client.is_closed() {
                continue;
            }
            if c.used.elapsed() > IDLE_CHECK && c.client.is_valid(IDLE_CHECK).is_err() {
                continue;
            }
            return Ok(c);
        }
    }

    /// Takes back a connection after a call (called off any runtime): kept if it still
    /// works and there is room, else closed.
    fn put(&self, mut c: Conn) {
        if c.client.is_closed() {
            return;
        }
        c.used = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Runs `f` on a connection of the pool.
    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, Fail> + Send,
    ) -> Result<R, StoreError> {
        off_runtime(|| {
            let mut c = self.get()?;
            let r = f(&mut c);
            self.put(c);
            r.map_err(|e| self.error(e))
        })
    }

    /// Runs `f` in one transaction, tried again when PostgreSQL rolls it back for a
    /// conflict with another.
    fn transaction<R: Send>(
        &self,
        f: impl Fn(&mut Db<'_, postgres::Transaction<'_>>) -> Result<R, Fail> + Send + Sync,
    ) -> Result<R, StoreError> {
        self.with(|conn| conn.transaction(&f))
    }

    /// A connection of its own holding the session advisory lock `key` (waiting for it),
    /// until the lock is dropped.
    fn session_lock(self: &Arc<Self>, key: AdvisoryKey) -> Result<SessionLock, StoreError> {
        off_runtime(|| {
            let mut c = self.get()?;
            if let Err(e) = key.lock(&mut c) {
                return Err(self.error(e));
            }
            Ok(SessionLock {
                pool: self.clone(),
                conn: Some(c),
                key,
            })
        })
    }
}

impl Conn {
    /// Runs `f` in one transaction on this connection, tried again when PostgreSQL rolls
    /// it back for a conflict with another.
    fn transaction<R>(
        &mut self,
        f: &dyn Fn(&mut Db<'_, postgres::Transaction<'_>>) -> Result<R, Fail>,
    ) -> Result<R, Fail> {
        retrying(|| {
            let Conn {
                client, statements, ..
            } = &mut *self;
            let mut tx = client.transaction()?;
            let r = f(&mut Db {
                client: &mut tx,
                statements,
            })?;
            tx.commit()?;
            Ok(r)
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        // Closing a connection runs the client's runtime too.
        let _ = off_runtime(move || {
            drop(idle);
            Ok(())
        });
    }
}

/// An advisory lock held by a session: a repository's publish lock, or a farm build's.
#[derive(Clone, Copy)]
enum AdvisoryKey {
    /// [`lock_key`] of `repo\0<name>`.
    Repo(i64),
    /// [`build_lock_key`] of the build.
    Build(i32, i32),
}

impl AdvisoryKey {
    fn lock(self, c: &mut Conn) -> Result<(), Fail> {
        match self {
            AdvisoryKey::Repo(key) => c.db().execute("SELECT pg_advisory_lock($1)", &[&key]),
            AdvisoryKey::Build(class, key) => c
                .db()
                .execute("SELECT pg_advisory_lock($1, $2)", &[&class, &key]),
        }
        .map(drop)
    }

    /// Whether the session held it.
    fn unlock(self, c: &mut Conn) -> Result<bool, Fail> {
        let row = match self {
            AdvisoryKey::Repo(key) => c.db().one("SELECT pg_advisory_unlock($1)", &[&key]),
            AdvisoryKey::Build(class, key) => c
                .db()
                .one("SELECT pg_advisory_unlock($1, $2)", &[&class, &key]),
        }?;
        col(&row, 0)
    }
}

/// The advisory lock `key`, held by the session of `conn` (a connection no one else
/// uses meanwhile); a session that ends, its process dying or its connection lost, lets
/// go of it too.
struct SessionLock {
    pool: Arc<Pool>,
    conn: Option<Conn>,
    key: AdvisoryKey,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        let (pool, key) = (&self.pool, self.key);
        let _ = off_runtime(move || {
            // Unlocked, the connection goes back to the pool; failing that, it is closed,
            // which ends the session and its locks.
            if let Ok(true) = key.unlock(&mut c) {
                pool.put(c);
            }
            Ok(())
        });
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`) and
    /// brings its schema up to date.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            StoreError::Unreachable(format!(
                "{shown} is not a PostgreSQL database URL ({e}); give \
                 postgres://USER[:PASSWORD]@HOST:PORT/DB to --store"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("packyard");
        }
        let store = PostgresStore {
            pool: Arc::new(Pool {
                config,
                shown,
                idle: Mutex::default(),
            }),
            kept: KeptTrees::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version this packyard writes.
    pub fn schema_version() -> i32 {
        MIGRATIONS.last().map_or(0, |m| m.0)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let shown = self.pool.shown.clone();
        self.pool.with(|conn| {
            let mut tx = conn.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key("schema")])?;
            tx.batch_execute(
                "SET LOCAL client_min_messages TO warning;
                 CREATE TABLE IF NOT EXISTS schema_version (
                     version integer PRIMARY KEY,
                     applied timestamptz NOT NULL DEFAULT now()
                 )",
            )?;
            let row = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?;
            let current: i32 = col(&row, 0)?;
            let known = Self::schema_version();
            if current > known {
                return Err(StoreError::Backend(format!(
                    "the database at {shown} has schema version {current}, written by a newer \
                     packyard (this one knows up to {known}): upgrade packyard"
                ))
                .into());
            }
            for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[version],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The record in column 0 of the row `sql` finds, if any.
    fn get<T: DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Params,
        key: impl FnOnce() -> String + Send,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self.pool.with(|c| {
            let rows = c.db().query(sql, params)?;
            rows.first().map(|r| col(r, 0)).transpose()
        })?;
        text.map(|t| decode(key, &t)).transpose()
    }

    /// The records in column 0 of the rows `sql` finds, with their keys in column 1.
    fn scan<T: DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Params,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows: Vec<(String, String)> = self.pool.with(|c| {
            c.db()
                .query(sql, params)?
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect()
        })?;
        rows.iter()
            .map(|(record, key)| decode(|| format!("{what}/{key}"), record))
            .collect()
    }
}

/// Writes the batch `changes` in the transaction of `db`.
/// An index entry a batch put (`Some`: its encoded bytes) or removed: repository, tree,
/// key.
type EntryPatch = (String, String, Vec<u8>, Option<Vec<u8>>);

/// Applies `changes` in order; returns the index entries they changed, in order.
fn apply_in<C: GenericClient>(
    db: &mut Db<'_, C>,
    changes: &[Change],
) -> Result<Vec<EntryPatch>, Fail> {
    let is_package =
        |c: &Change| matches!(c, Change::PutPackage { .. } | Change::RemovePackage { .. });
    let mut patches = Vec::new();
    let mut rest = changes;
    while let Some(first) = rest.first() {
        if is_package(first) {
            let n = rest.iter().take_while(|c| is_package(c)).count();
            packages(db, &rest[..n], &mut patches)?;
            rest = &rest[n..];
        } else {
            change(db, first)?;
            rest = &rest[1..];
        }
    }
    Ok(patches)
}

/// Repositories `changes` change in any way (their records, packages, index entries,
/// segments, generations, deletes): each gets a new version, which tells index trees
/// kept by this process and copies kept by servers ([`Store::follow`]) apart from
/// current ones.
fn changed_repos(changes: &[Change]) -> BTreeSet<&str> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::PutRepo(r) => Some(r.name.as_str()),
            Change::PutPackage { repo, .. }
            | Change::RemovePackage { repo, .. }
            | Change::PutSegment { repo, .. }
            | Change::RemoveSegment { repo, .. }
            | Change::PutLeft { repo, .. }
            | Change::PutGeneration { repo, .. }
            | Change::Deleting { repo, .. }
            | Change::RemoveRepo(repo)
            | Change::Touch(repo) => Some(repo.as_str()),
            Change::PutLock(_)
            | Change::PutToken(_)
            | Change::PutFarmBuild(_)
            | Change::PutTask(_) => None,
        })
        .collect()
}

/// Gives each of `repos` a new entry version (locking its row first, in name order);
/// returns `(repo, version before, version now)`.
fn bump_versions<C: GenericClient>(
    db: &mut Db<'_, C>,
    repos: &BTreeSet<&str>,
) -> Result<Vec<(String, Option<i64>, i64)>, Fail> {
    let mut out = Vec::new();
    for repo in repos {
        let before: Option<i64> = db
            .query(
                "SELECT version FROM repo_entry_versions WHERE repo = $1 FOR UPDATE",
                &[repo],
            )?
            .first()
            .map(|r| col(r, 0))
            .transpose()?;
        let now: i64 = col(
            &db.query(
                "INSERT INTO repo_entry_versions (repo, version) \
                 VALUES ($1, nextval('entry_versions')) \
                 ON CONFLICT (repo) DO UPDATE SET version = excluded.version \
                 RETURNING version",
                &[repo],
            )?[0],
            0,
        )?;
        out.push((repo.to_string(), before, now));
    }
    Ok(out)
}

/// The channel every batch that changes a repository notifies at its commit.
const CHANGES_CHANNEL: &str = "packyard_changes";

/// How long a batch waits at most for followers to acknowledge it: a follower that did
/// not acknowledge within a lease has lost it (it renews only by acknowledging).
const ACK_WAIT_MOST: Duration = Duration::from_secs(30);

/// After a batch that changed repositories committed (its transaction id `xid`): waits
/// until every live follower ([`Store::follow`]) has acknowledged it — recorded as seen a
/// read whose snapshot shows the batch — or let its lease run out, or lost its session (a
/// server that died is not waited for). One round trip when none follows.
fn wait_acknowledged(c: &mut Conn, xid: &str) -> Result<(), Fail> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let waiting: i64 = col(
            &c.db().one(
                "SELECT count(*) FROM serve_leases \
                 WHERE NOT pg_visible_in_snapshot($1::text::xid8, seen) \
                   AND lease_until > clock_timestamp() \
                   AND pid IN (SELECT pid FROM pg_stat_activity)",
                &[&xid],
            )?,
            0,
        )?;
        if waiting == 0 {
            break;
        }
        if start.elapsed() > ACK_WAIT_MOST {
            // Leases are far shorter: only a clock gone wrong gets here.
            tracing::warn!(waiting, "servers did not acknowledge a change; going on");
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    tracing::debug!(
        ms = start.elapsed().as_secs_f64() * 1e3,
        "changes acknowledged"
    );
    Ok(())
}

/// A server following the database's changes: a connection of its own that listens on
/// [`CHANGES_CHANNEL`] and renews the server's row of `serve_leases`.
struct PgFollower {
    pool: Arc<Pool>,
    conn: Option<Conn>,
    /// This follower's row.
    id: String,
}

impl PostgresStore {
    fn start_following(&self) -> Result<PgFollower, StoreError> {
        off_runtime(|| {
            let mut conn = self.pool.connect()?;
            // Listening first: no change after the first acknowledgement goes unheard.
            let listen = format!("LISTEN {CHANGES_CHANNEL}");
            conn.client
                .batch_execute(&listen)
                .map_err(|e| self.pool.error(e.into()))?;
            // Rows of servers long gone.
            conn.db()
                .execute(
                    "DELETE FROM serve_leases WHERE lease_until < now() - interval '1 hour'",
                    &[],
                )
                .map_err(|e| self.pool.error(e))?;
            let id = format!(
                "{}-{}-{:016x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                rand::random::<u64>()
            );
            Ok(PgFollower {
                pool: self.pool.clone(),
                conn: Some(conn),
                id,
            })
        })
    }
}

impl PgFollower {
    /// Runs `f` on the listening connection.
    fn on_conn<R: Send>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<R, Fail> + Send,
    ) -> Result<R, StoreError> {
        let pool = &self.pool;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("the listening connection is closed".into()))?;
        off_runtime(|| f(conn).map_err(|e| pool.error(e)))
    }
}

impl super::Follower for PgFollower {
    fn wait(&mut self, timeout: Duration) -> Result<(), StoreError> {
        self.on_conn(|conn| {
            use postgres::fallible_iterator::FallibleIterator;
            let mut n = conn.client.notifications();
            // The first to come, then the rest already here (one acknowledgement covers
            // them all).
            n.timeout_iter(timeout).next()?;
            n.iter().count()?;
            Ok(())
        })
    }

    fn read(&mut self) -> Result<(super::Seen, HashMap<String, i64>), StoreError> {
        self.on_conn(|conn| {
            // One statement: the versions and the snapshot they were read in.
            let row = conn.db().one(
                "SELECT pg_current_snapshot()::text, \
                        coalesce(array_agg(repo), '{}'), coalesce(array_agg(version), '{}') \
                 FROM repo_entry_versions",
                &[],
            )?;
            let seen: String = col(&row, 0)?;
            let repos: Vec<String> = col(&row, 1)?;
            let versions: Vec<i64> = col(&row, 2)?;
            Ok((super::Seen(seen), repos.into_iter().zip(versions).collect()))
        })
    }

    fn acknowledge(
        &mut self,
        seen: Option<&super::Seen>,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let id = self.id.clone();
        let seen = seen.map(|s| s.0.clone());
        self.on_conn(|conn| {
            conn.db()
                .execute(
                    "INSERT INTO serve_leases (server, pid, seen, lease_until) \
                     VALUES ($1, pg_backend_pid(), \
                             coalesce($2::text::pg_snapshot, pg_current_snapshot()), \
                             now() + make_interval(secs => $3)) \
                     ON CONFLICT (server) DO UPDATE SET pid = excluded.pid, \
                       seen = excluded.seen, lease_until = excluded.lease_until",
                    &[&id, &seen, &lease.as_secs_f64()],
                )
                .map(drop)
        })
    }
}

impl Drop for PgFollower {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let id = self.id.clone();
        // Gone at once rather than when the lease runs out: no batch waits for it.
        let _ = off_runtime(move || {
            let _ = conn
                .db()
                .execute("DELETE FROM serve_leases WHERE server = $1", &[&id]);
            drop(conn);
            Ok(())
        });
    }
}

/// Where a package is listed: its index tree and its order there.
type Place = (String, Vec<u8>);
/// An index entry's place: repository, tree and key.
type EntryAt<'a> = (&'a str, String, Vec<u8>);

/// Package changes in a row: applied in memory in their order, then written in bulk.
fn packages<C: GenericClient>(
    db: &mut Db<'_, C>,
    run: &[Change],
    patches: &mut Vec<EntryPatch>,
) -> Result<(), Fail> {
    // The listing of every package the run touches, as the database has it (locked, in
    // one order, so two batches cannot deadlock on them).
    let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in run {
        match c {
            Change::PutPackage { repo, record } => {
                wanted.entry(repo).or_default().insert(&record.path);
            }
            Change::RemovePackage { repo, path } => {
                wanted.entry(repo).or_default().insert(path);
            }
            _ => {}
        }
    }
    // (repo, path) -> where it is listed now (None: absent, or listed nowhere).
    let mut listed: HashMap<(&str, String), Option<Place>> = HashMap::new();
    for (repo, paths) in &wanted {
        let paths: Vec<&str> = paths.iter().copied().collect();
        for chunk in paths.chunks(CHUNK) {
            let rows = db.query(
                "SELECT path, listed_tree, listed_order FROM packages \
                 WHERE repo = $1 AND path = ANY($2) ORDER BY path FOR UPDATE",
                &[repo, &chunk],
            )?;
            for r in &rows {
                let path: String = col(r, 0)?;
                let tree: Option<String> = col(r, 1)?;
                let order: Option<Vec<u8>> = col(r, 2)?;
                listed.insert((repo, path), tree.zip(order));
            }
        }
    }
    // The run's result, by key: Some = put, None = removed.
    let mut records: HashMap<(&str, &str), Option<&PackageRecord>> = HashMap::new();
    let mut entries: HashMap<EntryAt<'_>, Option<Vec<u8>>> = HashMap::new();
    for c in run {
        let (repo, path, record) = match c {
            Change::PutPackage { repo, record } => (repo.as_str(), &record.path, Some(record)),
            Change::RemovePackage { repo, path } => (repo.as_str(), path, None),
            _ => continue,
        };
        // A record replaced in place may have been listed elsewhere.
        if let Some(Some((tree, order))) = listed.get(&(repo, path.clone())) {
            entries.insert((repo, tree.clone(), entry_key(order, path)), None);
        }
        let now = record.and_then(|r| r.listed.as_ref()).map(|l| {
            entries.insert(
                (repo, l.tree.clone(), entry_key(l.order.as_bytes(), path)),
                record.map(|r| r.index.encode(r.published, &r.sha256)),
            );
            (l.tree.clone(), l.order.as_bytes().to_vec())
        });
        listed.insert((repo, path.clone()), now);
        records.insert((repo, path), record);
    }

    patches.extend(
        entries
            .iter()
            .map(|((r, t, k), v)| (r.to_string(), t.clone(), k.clone(), v.clone())),
    );
    let (gone, put): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, v)| v.is_none());
    for chunk in gone.chunks(CHUNK) {
        let repos: Vec<&str> = chunk.iter().map(|((r, ..), _)| *r).collect();
        let trees: Vec<&str> = chunk.iter().map(|((_, t, _), _)| t.as_str()).collect();
        let keys: Vec<&[u8]> = chunk.iter().map(|((.., k), _)| k.as_slice()).collect();
        db.execute(
            "DELETE FROM index_entries e \
             USING unnest($1::text[], $2::text[], $3::bytea[]) AS d(repo, tree, key) \
             WHERE e.repo = d.repo AND e.tree = d.tree AND e.key = d.key",
            &[&repos, &trees, &keys],
        )?;
    }
    for chunk in put.chunks(CHUNK) {
        let repos: Vec<&str> = chunk.iter().map(|((r, ..), _)| *r).collect();
        let trees: Vec<&str> = chunk.iter().map(|((_, t, _), _)| t.as_str()).collect();
        let keys: Vec<&[u8]> = chunk.iter().map(|((.., k), _)| k.as_slice()).collect();
        let values: Vec<&[u8]> = chunk
            .iter()
            .map(|(_, v)| v.as_deref().unwrap_or_default())
            .collect();
        db.execute(
            "INSERT INTO index_entries (repo, tree, key, entry) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[]) \
             ON CONFLICT (repo, tree, key) DO UPDATE SET entry = excluded.entry",
            &[&repos, &trees, &keys, &values],
        )?;
    }

    let (gone, put): (Vec<_>, Vec<_>) = records.into_iter().partition(|(_, v)| v.is_none());
    for chunk in gone.chunks(CHUNK) {
        let repos: Vec<&str> = chunk.iter().map(|((r, _), _)| *r).collect();
        let paths: Vec<&str> = chunk.iter().map(|((_, p), _)| *p).collect();
        db.execute(
            "DELETE FROM packages p USING unnest($1::text[], $2::text[]) AS d(repo, path) \
             WHERE p.repo = d.repo AND p.path = d.path",
            &[&repos, &paths],
        )?;
    }
    let put: Vec<(&str, &PackageRecord)> = put
        .into_iter()
        .filter_map(|((repo, _), r)| Some((repo, r?)))
        .collect();
    for chunk in put.chunks(CHUNK) {
        let repos: Vec<&str> = chunk.iter().map(|(repo, _)| *repo).collect();
        let paths: Vec<&str> = chunk.iter().map(|(_, r)| r.path.as_str()).collect();
        let names: Vec<&str> = chunk.iter().map(|(_, r)| r.name.as_str()).collect();
        let trees: Vec<Option<&str>> = chunk
            .iter()
            .map(|(_, r)| r.listed.as_ref().map(|l| l.tree.as_str()))
            .collect();
        let orders: Vec<Option<&[u8]>> = chunk
            .iter()
            .map(|(_, r)| r.listed.as_ref().map(|l| l.order.as_bytes()))
            .collect();
        let texts: Vec<String> = chunk.iter().map(|(_, r)| encode(r)).collect();
        db.execute(
            "INSERT INTO packages (repo, path, name, listed_tree, listed_order, record) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], \
                                  $6::text[]) \
             ON CONFLICT (repo, path) DO UPDATE SET name = excluded.name, \
                 listed_tree = excluded.listed_tree, listed_order = excluded.listed_order, \
                 record = excluded.record",
            &[&repos, &paths, &names, &trees, &orders, &texts],
        )?;
    }
    Ok(())
}

/// Stores a task with what finds it: claimable, or held under a lease until when.
fn put_task<C: GenericClient>(db: &mut Db<'_, C>, t: &Task) -> Result<(), Fail> {
    let lease = match (&t.lease, t.state.held()) {
        (Some(l), true) => Some(l.expires.max(0)),
        _ => None,
    };
    db.execute(
        "INSERT INTO tasks (build, idx, platform, state, claimable, lease_expires, record) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (build, idx) DO UPDATE SET platform = excluded.platform, \
             state = excluded.state, claimable = excluded.claimable, \
             lease_expires = excluded.lease_expires, record = excluded.record",
        &[
            &build_id(t.build)?,
            &i64::from(t.index),
            &t.platform,
            &t.state.as_str(),
            &t.claimable(),
            &lease,
            &encode(t),
        ],
    )?;
    Ok(())
}

/// Applies one change that is not a package's.
fn change<C: GenericClient>(db: &mut Db<'_, C>, c: &Change) -> Result<(), Fail> {
    match c {
        Change::PutPackage { .. } | Change::RemovePackage { .. } => {
            packages(db, std::slice::from_ref(c), &mut Vec::new())?;
        }
        // Its version moved with the batch's: nothing else to write.
        Change::Touch(_) => {}
        Change::PutRepo(r) => {
            db.execute(
                "INSERT INTO repos (name, record) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                &[&r.name, &encode(r)],
            )?;
        }
        Change::PutLock(l) => {
            db.execute(
                "INSERT INTO locks (configuration, record) VALUES ($1, $2) \
                 ON CONFLICT (configuration) DO UPDATE SET record = excluded.record",
                &[&l.configuration, &encode(l)],
            )?;
        }
        Change::PutToken(t) => {
            db.execute(
                "INSERT INTO tokens (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&t.id, &encode(t)],
            )?;
        }
        Change::PutSegment {
            repo,
            tree,
            key,
            bytes,
        } => {
            db.execute(
                "INSERT INTO segments (repo, tree, key, bytes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo, tree, key) DO UPDATE SET bytes = excluded.bytes",
                &[repo, tree, key, bytes],
            )?;
        }
        Change::RemoveSegment { repo, tree, key } => {
            db.execute(
                "DELETE FROM segments WHERE repo = $1 AND tree = $2 AND key = $3",
                &[repo, tree, key],
            )?;
        }
        Change::PutLeft { repo, tree, files } if files.is_empty() => {
            db.execute(
                "DELETE FROM left_files WHERE repo = $1 AND tree = $2",
                &[repo, tree],
            )?;
        }
        Change::PutLeft { repo, tree, files } => {
            db.execute(
                "INSERT INTO left_files (repo, tree, files) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, tree) DO UPDATE SET files = excluded.files",
                &[repo, tree, &encode(files)],
            )?;
        }
        Change::PutGeneration {
            repo,
            dir,
            generation,
        } => {
            db.execute(
                "INSERT INTO generations (repo, dir, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, dir) DO UPDATE SET record = excluded.record",
                &[repo, dir, &encode(generation)],
            )?;
        }
        Change::Deleting { repo, marked: true } => {
            db.execute(
                "INSERT INTO deleting (repo) VALUES ($1) ON CONFLICT DO NOTHING",
                &[repo],
            )?;
        }
        Change::Deleting {
            repo,
            marked: false,
        } => {
            db.execute("DELETE FROM deleting WHERE repo = $1", &[repo])?;
        }
        Change::RemoveRepo(repo) => {
            db.execute(
                "WITH p AS (DELETE FROM packages WHERE repo = $1), \
                      e AS (DELETE FROM index_entries WHERE repo = $1), \
                      s AS (DELETE FROM segments WHERE repo = $1), \
                      l AS (DELETE FROM left_files WHERE repo = $1), \
                      g AS (DELETE FROM generations WHERE repo = $1) \
                 DELETE FROM repos WHERE name = $1",
                &[repo],
            )?;
        }
        Change::PutFarmBuild(b) => {
            db.execute(
                "INSERT INTO farm_builds (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&build_id(b.id)?, &encode(b)],
            )?;
            // A build put with its id (a migration) is never handed out again.
            db.execute(
                "SELECT setval('farm_build_ids', GREATEST($1, \
                 (SELECT last_value FROM farm_build_ids)))",
                &[&build_id(b.id)?],
            )?;
        }
        Change::PutTask(t) => put_task(db, t)?,
    }
    Ok(())
}

/// What a claim's first pass, which waits for no lock, found.
enum FirstPass {
    /// No task is claimable on these platforms.
    Nothing,
    /// Every candidate's build or task was held by another call for the moment.
    Busy,
    Claimed(Box<Task>),
}

impl Store for PostgresStore {
    fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let repos = changed_repos(&changes);
        let removed: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::RemoveRepo(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let write = |db: &mut Db<'_, postgres::Transaction<'_>>| {
            // Versions first: batches changing one repository take turns here.
            let bumped = bump_versions(db, &repos)?;
            let xid: Option<String> = match repos.is_empty() {
                true => None,
                // The notice is delivered at commit, to every server following changes.
                false => Some(col(
                    &db.one(
                        "SELECT pg_current_xact_id()::text, pg_notify($1, '')",
                        &[&CHANGES_CHANNEL],
                    )?,
                    0,
                )?),
            };
            Ok((bumped, apply_in(db, &changes)?, xid))
        };
        let (bumped, patches) = self.pool.with(|conn| {
            let (bumped, patches, xid) = conn.transaction(&write)?;
            // On the same connection, once committed.
            if let Some(xid) = xid
                && let Err(e) = wait_acknowledged(conn, &xid)
            {
                // The batch is in. A server that did not acknowledge it stops answering
                // from memory when its lease runs out, unrenewed.
                let e = self.pool.error(e);
                tracing::warn!("servers' acknowledgements of a change not awaited: {e}");
            }
            Ok((bumped, patches))
        })?;
        self.kept.after(bumped, patches, &removed);
        Ok(())
    }

    fn follow(&self) -> Result<Option<Box<dyn super::Follower>>, StoreError> {
        Ok(Some(Box::new(self.start_following()?)))
    }

    fn lock_repo(&self, repo: &str) -> Result<RepoGuard, StoreError> {
        let key = AdvisoryKey::Repo(lock_key(&format!("repo\0{repo}")));
        self.pool.session_lock(key).map(RepoGuard::new)
    }

    fn lock_farm_build(&self, build: BuildId) -> Result<BuildGuard, StoreError> {
        let (class, key) = build_lock_key(build);
        self.pool
            .session_lock(AdvisoryKey::Build(class, key))
            .map(BuildGuard::new)
    }

    fn deleting(&self) -> Result<Vec<String>, StoreError> {
        self.pool.with(|c| {
            c.db()
                .query("SELECT repo FROM deleting ORDER BY repo", &[])?
                .iter()
                .map(|r| col(r, 0))
                .collect()
        })
    }

    /// The secret key as it was given to [`Store::put_secret_key`], readable by whoever
    /// may read the database: repositories give this store passphrase-protected keys
    /// only ([`Store::keeps_secrets_local`] is false).
    fn secret_key(&self, repo: &str) -> Result<Option<String>, StoreError> {
        self.pool.with(|c| {
            c.db()
                .query("SELECT armored FROM secret_keys WHERE repo = $1", &[&repo])?
                .first()
                .map(|r| col(r, 0))
                .transpose()
        })
    }

    /// Keeps the armored key exactly as given, in table `secret_keys`.
    fn put_secret_key(&self, repo: &str, armored: &str) -> Result<(), StoreError> {
        self.pool.transaction(|db| {
            db.execute(
                "INSERT INTO secret_keys (repo, armored) VALUES ($1, $2) \
                 ON CONFLICT (repo) DO UPDATE SET armored = excluded.armored",
                &[&repo, &armored],
            )
            .map(drop)
        })
    }

    fn remove_secret_key(&self, repo: &str) -> Result<(), StoreError> {
        self.pool.transaction(|db| {
            db.execute("DELETE FROM secret_keys WHERE repo = $1", &[&repo])
                .map(drop)
        })
    }

    fn task_log_len(&self, build: BuildId, index: u32) -> Result<u64, StoreError> {
        let (b, i) = (build as i64, i64::from(index));
        self.pool.with(|c| {
            let rows = c.db().query(
                "SELECT at + length(bytes) FROM task_log_parts WHERE build = $1 AND idx = $2 \
                 ORDER BY at DESC LIMIT 1",
                &[&b, &i],
            )?;
            Ok(rows
                .first()
                .map(|r| r.get::<_, i64>(0).max(0) as u64)
                .unwrap_or(0))
        })
    }

    fn append_task_log(
        &self,
        build: BuildId,
        index: u32,
        at: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let (b, i, at) = (build as i64, i64::from(index), at as i64);
        self.pool.transaction(|db| {
            db.execute(
                "INSERT INTO task_log_parts (build, idx, at, bytes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (build, idx, at) DO NOTHING",
                &[&b, &i, &at, &bytes],
            )
            .map(drop)
        })
    }

    fn task_log(&self, build: BuildId, index: u32) -> Result<Vec<u8>, StoreError> {
        let (b, i) = (build as i64, i64::from(index));
        self.pool.with(|c| {
            let mut out = Vec::new();
            for r in c.db().query(
                "SELECT bytes FROM task_log_parts WHERE build = $1 AND idx = $2 ORDER BY at",
                &[&b, &i],
            )? {
                out.extend_from_slice(r.get::<_, &[u8]>(0));
            }
            Ok(out)
        })
    }

    fn remove_task_log(&self, build: BuildId, index: u32) -> Result<(), StoreError> {
        let (b, i) = (build as i64, i64::from(index));
        self.pool.transaction(|db| {
            db.execute(
                "DELETE FROM task_log_parts WHERE build = $1 AND idx = $2",
                &[&b, &i],
            )
            .map(drop)
        })
    }

    fn secret_key_place(&self, repo: &str) -> String {
        format!(
            "the secret_keys row of repository {repo} in {}",
            self.pool.shown
        )
    }

    fn repo(&self, name: &str) -> Result<Option<RepoRecord>, StoreError> {
        self.get("SELECT record FROM repos WHERE name = $1", &[&name], || {
            format!("repo/{name}")
        })
    }

    fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        self.scan("SELECT record, name FROM repos ORDER BY name", &[], "repo")
    }

    fn package(&self, repo: &str, path: &str) -> Result<Option<PackageRecord>, StoreError> {
        self.get(
            "SELECT record FROM packages WHERE repo = $1 AND path = $2",
            &[&repo, &path],
            || format!("pkg/{repo}/{path}"),
        )
    }

    fn packages(&self, repo: &str) -> Result<Vec<PackageRecord>, StoreError> {
        self.scan(
            "SELECT record, path FROM packages WHERE repo = $1 ORDER BY path",
            &[&repo],
            &format!("pkg/{repo}"),
        )
    }

    fn packages_named(&self, repo: &str, name: &str) -> Result<Vec<PackageRecord>, StoreError> {
        self.scan(
            "SELECT record, path FROM packages WHERE repo = $1 AND name = $2 ORDER BY path",
            &[&repo, &name],
            &format!("pkg/{repo}"),
        )
    }

    fn lock(&self, configuration: &str) -> Result<Option<LockRecord>, StoreError> {
        self.get(
            "SELECT record FROM locks WHERE configuration = $1",
            &[&configuration],
            || format!("lock/{configuration}"),
        )
    }

    fn locks(&self) -> Result<Vec<LockRecord>, StoreError> {
        self.scan(
            "SELECT record, configuration FROM locks ORDER BY configuration",
            &[],
            "lock",
        )
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get("SELECT record FROM tokens WHERE id = $1", &[&id], || {
            format!("tok/{id}")
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.scan("SELECT record, id FROM tokens ORDER BY id", &[], "tok")
    }

    /// Nothing to do: every batch is committed (durable) before `apply` returns.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn index_entries(&self, repo: &str, tree: &str) -> Result<Arc<Vec<IndexRow>>, StoreError> {
        // The version first, then the rows: rows at least as new as the version they are
        // kept at (a batch between the two only makes the next call read them again).
        // The kept rows if they are current, else the rows as stored (key, entry).
        enum Read {
            Kept(Arc<Vec<IndexRow>>),
            Stored(i64, Vec<(Vec<u8>, Vec<u8>)>),
        }
        let read = self.pool.with(|c| {
            let version: i64 = c
                .db()
                .query(
                    "SELECT version FROM repo_entry_versions WHERE repo = $1",
                    &[&repo],
                )?
                .first()
                .map(|r| col(r, 0))
                .transpose()?
                .unwrap_or(0);
            if let Some(kept) = self.kept.get(repo, tree, version) {
                return Ok(Read::Kept(kept));
            }
            let rows = c
                .db()
                .query(
                    "SELECT key, entry FROM index_entries WHERE repo = $1 AND tree = $2 \
                     ORDER BY key",
                    &[&repo, &tree],
                )?
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect::<Result<Vec<_>, Fail>>()?;
            Ok(Read::Stored(version, rows))
        })?;
        let (version, rows) = match read {
            Read::Kept(rows) => return Ok(rows),
            Read::Stored(version, rows) => (version, rows),
        };
        let rows = rows
            .into_iter()
            .map(|(key, entry)| {
                let key = String::from_utf8_lossy(&key).into_owned();
                let (published, sha256, entry) =
                    IndexEntry::decode(&entry).ok_or_else(|| StoreError::Corrupt {
                        key: format!("ent/{repo}/{tree}/{}", key.replace('\0', "/")),
                        message: "not an index entry".into(),
                    })?;
                Ok(IndexRow::new(key, published, sha256, entry))
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Arc::new)?;
        self.kept.keep(repo, tree, version, rows.clone());
        Ok(rows)
    }

    fn segments(&self, repo: &str, tree: &str) -> Result<Arc<Segments>, StoreError> {
        self.pool
            .with(|c| {
                c.db()
                    .query(
                        "SELECT key, bytes FROM segments WHERE repo = $1 AND tree = $2",
                        &[&repo, &tree],
                    )?
                    .iter()
                    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                    .collect::<Result<Segments, Fail>>()
            })
            .map(Arc::new)
    }

    fn left_files(&self, repo: &str, tree: &str) -> Result<Vec<LeftFile>, StoreError> {
        Ok(self
            .get(
                "SELECT files FROM left_files WHERE repo = $1 AND tree = $2",
                &[&repo, &tree],
                || format!("left/{repo}/{tree}"),
            )?
            .unwrap_or_default())
    }

    fn generation(&self, repo: &str, dir: &str) -> Result<Option<Generation>, StoreError> {
        self.get(
            "SELECT record FROM generations WHERE repo = $1 AND dir = $2",
            &[&repo, &dir],
            || format!("gen/{repo}/{dir}"),
        )
    }

    fn new_build_id(&self) -> Result<BuildId, StoreError> {
        let id: i64 = self.pool.with(|c| {
            let row = c.db().one("SELECT nextval('farm_build_ids')", &[])?;
            col(&row, 0)
        })?;
        from_build_id(id)
    }

    fn farm_build(&self, id: BuildId) -> Result<Option<FarmBuild>, StoreError> {
        self.get(
            "SELECT record FROM farm_builds WHERE id = $1",
            &[&build_id(id)?],
            || format!("fbuild/{id}"),
        )
    }

    fn farm_builds(&self) -> Result<Vec<FarmBuild>, StoreError> {
        self.scan(
            "SELECT record, id::text FROM farm_builds ORDER BY id DESC",
            &[],
            "fbuild",
        )
    }

    fn tasks(&self, build: BuildId) -> Result<Vec<Task>, StoreError> {
        self.scan(
            "SELECT record, build || '/' || idx FROM tasks WHERE build = $1 ORDER BY idx",
            &[&build_id(build)?],
            "task",
        )
    }

    fn task(&self, build: BuildId, index: u32) -> Result<Option<Task>, StoreError> {
        self.get(
            "SELECT record FROM tasks WHERE build = $1 AND idx = $2",
            &[&build_id(build)?, &i64::from(index)],
            || format!("task/{build}/{index}"),
        )
    }

    fn claim(
        &self,
        platforms: &[String],
        lease: Lease,
        now: i64,
    ) -> Result<Option<Task>, StoreError> {
        // What a claim does to the task it takes.
        let take = |db: &mut Db<'_, postgres::Transaction<'_>>,
                    row: &postgres::Row|
         -> Result<Task, Fail> {
            let (text, at): (String, String) = (col(row, 0)?, col(row, 1)?);
            let mut task: Task = decode(|| format!("task/{at}"), &text)?;
            task.claim(lease.clone(), now);
            put_task(db, &task)?;
            Ok(task)
        };
        // A build's first claimable task for these platforms, its row locked as `$lock`.
        macro_rules! first_claimable {
            ($lock:literal) => {
                concat!(
                    "SELECT record, build || '/' || idx FROM tasks \
                     WHERE build = $1 AND claimable AND platform = ANY($2) \
                     ORDER BY idx LIMIT 1 ",
                    $lock
                )
            };
        }
        self.pool.with(|conn| {
            // First without waiting: the oldest builds with claimable tasks whose lock no
            // one holds (`pg_try_advisory_xact_lock`), and in such a build the first
            // claimable task no other claim has locked (`FOR UPDATE SKIP LOCKED`): claims
            // on several servers take different tasks side by side. The build's lock
            // comes before the task's row, the order every holder of the lock takes them
            // in (it writes rows in batches while holding it), so the two never wait for
            // each other in a circle.
            let first = conn.transaction(&|db| {
                let builds = db.query(
                    "SELECT DISTINCT build FROM tasks WHERE claimable AND platform = ANY($1) \
                     ORDER BY build LIMIT 8",
                    &[&platforms],
                )?;
                if builds.is_empty() {
                    return Ok(FirstPass::Nothing);
                }
                for row in &builds {
                    let build: i64 = col(row, 0)?;
                    let (class, key) = build_lock_key(from_build_id(build)?);
                    let free =
                        db.one("SELECT pg_try_advisory_xact_lock($1, $2)", &[&class, &key])?;
                    if !col::<bool>(&free, 0)? {
                        continue;
                    }
                    let rows = db.query(
                        first_claimable!("FOR UPDATE SKIP LOCKED"),
                        &[&build, &platforms],
                    )?;
                    if let Some(row) = rows.first() {
                        return Ok(FirstPass::Claimed(Box::new(take(db, row)?)));
                    }
                }
                Ok(FirstPass::Busy)
            })?;
            match first {
                FirstPass::Nothing => return Ok(None),
                FirstPass::Claimed(task) => return Ok(Some(*task)),
                FirstPass::Busy => {}
            }
            // Every candidate was busy for the moment (a heartbeat or report holds its
            // build's lock): wait for the oldest build's lock rather than answer
            // "nothing" while work is queued. Each miss below is another claim (or a
            // cancel) taking the task first; the bound only keeps the loop finite (the
            // agent asks again).
            for _ in 0..CLAIM_TRIES {
                // Read outside any transaction, so nothing is held while the lock is
                // waited for.
                let rows = conn.db().query(
                    "SELECT build FROM tasks WHERE claimable AND platform = ANY($1) \
                     ORDER BY build, idx LIMIT 1",
                    &[&platforms],
                )?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let build: i64 = col(row, 0)?;
                let (class, key) = build_lock_key(from_build_id(build)?);
                let claimed = conn.transaction(&|db| {
                    // The lock is the transaction's: its commit lets go.
                    db.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&class, &key])?;
                    let rows = db.query(first_claimable!("FOR UPDATE"), &[&build, &platforms])?;
                    match rows.first() {
                        Some(row) => Ok(Some(take(db, row)?)),
                        None => Ok(None),
                    }
                })?;
                if claimed.is_some() {
                    return Ok(claimed);
                }
            }
            Ok(None)
        })
    }

    fn expired(&self, now: i64) -> Result<Vec<(BuildId, u32)>, StoreError> {
        let rows: Vec<(i64, i64)> = self.pool.with(|c| {
            c.db()
                .query(
                    "SELECT build, idx FROM tasks WHERE lease_expires < $1 \
                     ORDER BY lease_expires, build, idx",
                    &[&now],
                )?
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect()
        })?;
        rows.into_iter()
            .map(|(build, index)| {
                let index = u32::try_from(index).map_err(|_| {
                    StoreError::Backend(format!("the database holds a task index {index}"))
                })?;
                Ok((from_build_id(build)?, index))
            })
            .collect()
    }

    fn task_counts(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = self.pool.with(|c| {
            c.db()
                .query("SELECT state, count(*) FROM tasks GROUP BY state", &[])?
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect()
        })?;
        let counts: HashMap<String, i64> = rows.into_iter().collect();
        Ok(TaskState::ALL
            .iter()
            .map(|s| {
                let n = counts.get(s.as_str()).copied().unwrap_or(0);
                (*s, u64::try_from(n).unwrap_or(0))
            })
            .collect())
    }

    fn claimable(&self) -> Result<u64, StoreError> {
        let n: i64 = self.pool.with(|c| {
            let row = c
                .db()
                .one("SELECT count(*) FROM tasks WHERE claimable", &[])?;
            col(&row, 0)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A database URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_as_the_embedded_stores_do() {
        // NUL ends the order, so a shorter order sorts before a longer one it begins.
        assert!(entry_key(b"a", "z.rpm") < entry_key(b"a-b", "a.rpm"));
        assert!(entry_key(b"B", "x") < entry_key(b"a", "x"));
        assert_eq!(entry_key(b"o", "p"), b"o\0p");
    }

    #[test]
    fn repositories_lock_apart() {
        assert_ne!(lock_key("repo\0a"), lock_key("repo\0b"));
    }

    #[test]
    fn a_database_that_is_not_there_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let e = PostgresStore::open(&format!("postgres://u:pw@127.0.0.1:{port}/db"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot connect to PostgreSQL at postgres://u:***@127.0.0.1"),
            "{e}"
        );
        assert!(e.contains("start PostgreSQL or fix --store"), "{e}");
        assert!(!e.contains("pw"), "{e}");
    }
}
