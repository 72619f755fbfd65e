//! The PostgreSQL metadata store against a real server: PostgreSQL (Debian's
//! `postgresql`), started once for the whole test binary on 127.0.0.1 and stopped with it.
//! Each test takes a database of its own. Where the server's programs are missing the
//! tests are skipped, except under CI, where that fails them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use packyard::backends::Backends;
use packyard::repo::{NewRepo, PublishOptions, Repositories};
use packyard::store::{Change, PostgresStore, RepoKind, RepoRecord, Store};

use crate::support::root;

/// The directory holding PostgreSQL's programs (`initdb`, `postgres`):
/// `PACKYARD_TEST_PG_BIN`, else Debian's newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PACKYARD_TEST_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether every directory above `dir` lets other users through (the server runs as
/// `postgres` when the tests run as root).
fn reachable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// The user and group the server runs as: `postgres` when the tests run as root
/// (PostgreSQL refuses to run as root), else nobody else.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail; getpwnam's result is read at once, on this thread.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() {
            panic!("the tests run as root and there is no `postgres` user to run PostgreSQL");
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Where this test run's server keeps its files: `target/test-pg/<pid>` (what runs that
/// are gone left there is removed), or under the temporary directory when `target/` is
/// not reachable by the server's user.
fn server_dir() -> PathBuf {
    let mut base = root().join("target/test-pg");
    std::fs::create_dir_all(&base).unwrap();
    if server_user().is_some() && !reachable_by_others(&base.join("x")) {
        base = std::env::temp_dir().join("packyard-test-pg");
        std::fs::create_dir_all(&base).unwrap();
    }
    crate::support::run_dir(&base)
}

fn as_server_user(cmd: &mut Command) {
    if let Some((uid, gid)) = server_user() {
        std::os::unix::process::CommandExt::uid(cmd, uid);
        std::os::unix::process::CommandExt::gid(cmd, gid);
    }
}

/// The running server's port, or `None` (skipped) where PostgreSQL is missing outside CI.
pub(crate) fn server() -> Option<u16> {
    static PORT: OnceLock<Option<u16>> = OnceLock::new();
    *PORT.get_or_init(|| {
        let Some(bin) = bin_dir() else {
            crate::support::have_tool("initdb", &["--version"]);
            return None;
        };
        let initdb = bin.join("initdb");
        if !crate::support::have_tool(initdb.to_str().unwrap(), &["--version"]) {
            return None;
        }
        let dir = server_dir();
        let data = dir.join("data");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut init = Command::new(&initdb);
        init.arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null());
        as_server_user(&mut init);
        let out = init.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::support::free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(&dir)
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            // Its dynamic shared memory as files in its data directory, which the next run
            // removes: the server is killed with the test binary, and segments in
            // /dev/shm (the default) would stay there, in memory, run after run.
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            .stdout(Stdio::null())
            .stderr(log);
        as_server_user(&mut cmd);
        crate::support::spawn_for_the_run(cmd);
        let start = Instant::now();
        while postgres::Client::connect(&admin_url(port), postgres::NoTls).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not take connections on {port} within a minute (see {})",
                "target/test-pg/<pid>/server.log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(port)
    })
}

fn admin_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// A new database on the server, and its `--store` URL. Its default collation is ICU's
/// English where the server has ICU (so byte order is not what sorting text gives).
pub(crate) fn database(port: u16, name: &str) -> String {
    let mut admin = postgres::Client::connect(&admin_url(port), postgres::NoTls).unwrap();
    let icu = format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
         LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    );
    if admin.batch_execute(&icu).is_err() {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

#[test]
fn postgres_store_keeps_the_store_contract() {
    let Some(port) = server() else { return };
    let url = database(port, "contract");
    let store = PostgresStore::open(&url).unwrap();
    // Text sorts otherwise in this database: the store's orders are its own.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let sorted: Vec<String> = c
        .query("SELECT x FROM unnest(ARRAY['a', 'B']) AS x ORDER BY x", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    eprintln!("this database sorts text as {sorted:?}");
    packyard::store::conformance::check(&store);
    // Build ids start at 1, as the embedded store's do.
    let ids: Vec<u64> = store
        .farm_builds()
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids.last(), Some(&1));
}

fn repo(name: &str) -> RepoRecord {
    RepoRecord {
        name: name.into(),
        kind: RepoKind::Volatile,
        platforms: vec![],
        keep: None,
        created: 0,
        key: None,
        yum_compression: Default::default(),
        pending: vec![],
        private: false,
    }
}

#[test]
fn two_stores_on_one_database_share_records_locks_and_the_queue() {
    let Some(port) = server() else { return };
    let url = database(port, "shared");
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    // What one writes the other reads at once: nothing is kept from before.
    assert!(b.repo("r").unwrap().is_none());
    a.apply(vec![Change::PutRepo(repo("r"))]).unwrap();
    assert_eq!(b.repo("r").unwrap(), Some(repo("r")));
    assert!(b.index_entries("r", "yum/el9").unwrap().is_empty());
    let mut listed = packyard::store::PackageRecord {
        path: "t.rpm".into(),
        kind: packyard::store::FileKind::Rpm,
        platform: "el9_x86_64".into(),
        name: "t".into(),
        epoch: 0,
        version: "1".into(),
        release: "1".into(),
        arch: "x86_64".into(),
        size: 1,
        sha256: "0".repeat(64),
        published: 1,
        configuration: None,
        signed: false,
        listed: Some(packyard::store::Listing {
            tree: "yum/el9".into(),
            order: "t".into(),
        }),
        external: false,
        parts: Vec::new(),
        index: std::sync::Arc::new(packyard::store::IndexEntry::Yum {
            primary: "<package/>".into(),
            filelists: String::new(),
            other: String::new(),
        }),
    };
    a.apply(vec![Change::PutPackage {
        repo: "r".into(),
        record: listed.clone(),
    }])
    .unwrap();
    assert_eq!(b.index_entries("r", "yum/el9").unwrap().len(), 1);
    listed.sha256 = "1".repeat(64);
    b.apply(vec![Change::PutPackage {
        repo: "r".into(),
        record: listed.clone(),
    }])
    .unwrap();
    assert_eq!(
        a.index_entries("r", "yum/el9").unwrap()[0].sha256,
        listed.sha256
    );

    // A repository locked through one store waits through the other.
    let held = a.lock_repo("r").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _g = b.lock_repo("r").unwrap();
            tx.send(Instant::now()).unwrap();
        });
        // Another repository is not held up.
        drop(b.lock_repo("other").unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        let released = Instant::now();
        drop(held);
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(got >= released);
    });

    // Claims through both never share a task.
    let q = packyard::farm::Queue::new(Duration::from_secs(60), Duration::from_secs(15));
    let tasks = (0..30)
        .map(|i| packyard::farm::NewTask {
            configuration: format!("t{i}_R_1"),
            module: format!("p.t{i}"),
            platform: "el9_x86_64".into(),
            deps: vec![],
            cached: None,
        })
        .collect();
    let build = packyard::store::FarmBuild {
        id: 0,
        project: "p_R_1".into(),
        platforms: vec!["el9_x86_64".into()],
        repo: "r".into(),
        only: vec![],
        force: false,
        defaults: vec![],
        by: "test".into(),
        submitted: 0,
        finished: None,
        cancelled: false,
    };
    q.submit(&a, build, tasks, 0).unwrap();
    let got = std::sync::Mutex::new(Vec::new());
    let platforms = vec!["el9_x86_64".to_string()];
    std::thread::scope(|s| {
        for (i, store) in [&a, &b, &a, &b].into_iter().enumerate() {
            let (got, platforms) = (&got, &platforms);
            s.spawn(move || {
                let q = packyard::farm::Queue::new(Duration::from_secs(60), Duration::from_secs(1));
                while let Some(t) = q.claim(store, &format!("agent{i}"), platforms, 1).unwrap() {
                    got.lock().unwrap().push(t.index);
                }
            });
        }
    });
    let mut got = got.into_inner().unwrap();
    got.sort();
    assert_eq!(got, (0..30).collect::<Vec<u32>>());

    // Opening again changes nothing; the schema is recorded once.
    drop(PostgresStore::open(&url).unwrap());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=PostgresStore::schema_version()).collect::<Vec<_>>()
    );
    // A database a newer packyard wrote is refused, saying so.
    c.execute("INSERT INTO schema_version (version) VALUES (9999)", &[])
        .unwrap();
    let e = PostgresStore::open(&url).err().unwrap().to_string();
    assert!(e.contains("newer packyard"), "{e}");
}

/// Two servers' queues on one database (each store with its own connections), changing
/// the same builds' tasks at the same moment: reports of two dependencies at once, two
/// expiries of one lease, a cancel among claims (the store contract's shared part).
#[test]
fn two_queues_on_one_database_change_a_builds_tasks_one_at_a_time() {
    let Some(port) = server() else { return };
    let url = database(port, "farm_shared");
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    packyard::store::conformance::check_shared(&a, &b);
}

/// A build's lock is a session advisory lock of its own key space (two 32-bit keys, apart
/// from the repositories' 64-bit ones), and a session that ends lets go of it.
#[test]
fn a_builds_lock_goes_with_its_session() {
    let Some(port) = server() else { return };
    let url = database(port, "farm_locks");
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let held = a.lock_farm_build(5).unwrap();
    let repo = a.lock_repo("5").unwrap();
    // (objid, objsubid, pid) of each advisory lock granted in this database (other tests
    // use others): objsubid 2 for a two-key lock.
    let locks = |admin: &mut postgres::Client| -> Vec<(i64, i16, i32)> {
        admin
            .query(
                "SELECT objid::bigint, objsubid, pid FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND database = \
                     (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 ORDER BY objsubid",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let now = locks(&mut admin);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0].1, 1, "the repository's lock: one 64-bit key");
    assert_eq!((now[1].0, now[1].1), (5, 2), "the build's lock: two keys");
    drop(repo);
    // Held: the other store waits for it; once the holder's session is gone, it gets it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _g = b.lock_farm_build(5).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        let pid = now[1].2;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    });
    // Dropping the guard of a lost session is no error (its connection is closed).
    drop(held);
    assert!(locks(&mut admin).is_empty());
    drop(a.lock_farm_build(5).unwrap());
}

/// A server's follower of a shared store's changes (`Store::follow`, what `server::copies`
/// keeps copies by): a batch that changes a repository returns only once every live
/// follower acknowledged it, and the acknowledgement shows the repository's new version;
/// a follower dropped, killed, or silent past its lease is not waited for.
#[test]
fn a_batch_waits_for_every_live_follower_to_acknowledge_it() {
    let Some(port) = server() else { return };
    let url = database(port, "followers");
    let writer = PostgresStore::open(&url).unwrap();
    let reader = PostgresStore::open(&url).unwrap();
    writer.apply(vec![Change::PutRepo(repo("f"))]).unwrap();
    // Nobody follows: a batch does not wait.
    writer.apply(vec![Change::PutRepo(repo("f"))]).unwrap();

    let mut follower = reader
        .follow()
        .unwrap()
        .expect("a shared store has followers");
    let lease = Duration::from_secs(30);
    follower.acknowledge(None, lease).unwrap();
    let (seen, first) = follower.read().unwrap();
    follower.acknowledge(Some(&seen), lease).unwrap();
    let v1 = first["f"];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            writer.apply(vec![Change::PutRepo(repo("f"))]).unwrap();
            tx.send(()).unwrap();
        });
        // Committed, but not answered: the follower has not acknowledged it (renewing
        // its lease with a read from before it acknowledges nothing new).
        follower.wait(Duration::from_secs(10)).unwrap();
        follower.acknowledge(Some(&seen), lease).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "a batch returned before its follower acknowledged it"
        );
        let (seen, now) = follower.read().unwrap();
        assert!(now["f"] > v1, "the read shows the change: {now:?}");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a batch returned once its follower read it, before it acknowledged it"
        );
        follower.acknowledge(Some(&seen), lease).unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the acknowledged batch returned");
    });
    // A batch of no repository (a token) waits for nobody (the follower, silent now,
    // holds a lease of 30 s).
    let start = std::time::Instant::now();
    writer
        .apply(vec![Change::PutToken(packyard::store::TokenRecord {
            id: "t".into(),
            name: "t".into(),
            role: packyard::store::Role::Builder,
            hash: "0".repeat(64),
            created: 0,
            expires: None,
            revoked: None,
        })])
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // A follower whose session ends (its server died) is not waited for.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let pid: i32 = admin
        .query_one("SELECT pid FROM serve_leases", &[])
        .unwrap()
        .get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let start = std::time::Instant::now();
    writer.apply(vec![Change::PutRepo(repo("f"))]).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(follower.read().is_err(), "its connection is gone");
    drop(follower);

    // A follower that stops acknowledging is waited for until its lease runs out.
    let mut silent = reader.follow().unwrap().unwrap();
    silent.acknowledge(None, Duration::from_secs(2)).unwrap();
    let start = std::time::Instant::now();
    writer.apply(vec![Change::PutRepo(repo("f"))]).unwrap();
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "waited {waited:?} for a lease of 2 s"
    );
    // Dropped, its row goes (the killed one's stays, of a session that ended).
    silent.acknowledge(None, Duration::from_secs(30)).unwrap();
    drop(silent);
    let pids: Vec<i32> = admin
        .query("SELECT pid FROM serve_leases", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids, [pid]);
}

/// A publish that prunes an older version removes its file after its last batch of
/// records and indexes; a server could keep a copy of that file, read at the version
/// that batch gave, and answer it after the file is gone. So the publish moves the
/// repository's version once more after removing it: a follower (what each server runs)
/// never reads the final version while the pruned file is still there.
#[test]
fn a_pruned_file_is_gone_before_the_repository_version_a_server_keeps_copies_at() {
    let Some(port) = server() else { return };
    let url = database(port, "pruning");
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let repos = open(&data, &url);
    repos
        .create(&NewRepo {
            keep: Some(1),
            ..NewRepo::volatile("pruned")
        })
        .unwrap();
    let opts = PublishOptions {
        platform: Some("el9_x86_64".into()),
        ..Default::default()
    };
    let build = |version: &str| {
        let dir = t.path().join(version);
        std::fs::create_dir_all(&dir).unwrap();
        crate::support::small_rpm_version(&dir, "pruny", version, &format!("{version}\n"))
    };
    let quiet = &packyard::progress::Quiet;
    let first = repos
        .publish("pruned", &[build("1.0")], &opts, quiet)
        .unwrap();
    let old = data.join("repos/pruned").join(&first.files[0].path);
    assert!(old.exists(), "{}", old.display());

    // A follower, as a server runs it: each round records the repository's version and
    // whether the old file was there when it read it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen: std::sync::Mutex<Vec<(i64, bool)>> = Default::default();
    let follower_store = PostgresStore::open(&url).unwrap();
    let mut follower = follower_store.follow().unwrap().unwrap();
    follower.acknowledge(None, Duration::from_secs(30)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                follower.wait(Duration::from_millis(50)).unwrap();
                let (at, versions) = follower.read().unwrap();
                let there = old.exists();
                seen.lock().unwrap().push((versions["pruned"], there));
                follower
                    .acknowledge(Some(&at), Duration::from_secs(30))
                    .unwrap();
            }
        });
        let second = repos
            .publish("pruned", &[build("1.1")], &opts, quiet)
            .unwrap();
        assert_eq!(second.removed.len(), 1, "1.0 pruned");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(!old.exists());
    let last = follower_store.follow().unwrap().unwrap().read().unwrap().1["pruned"];
    let seen = seen.into_inner().unwrap();
    let at_last: Vec<bool> = seen
        .iter()
        .filter(|(v, _)| *v == last)
        .map(|(_, there)| *there)
        .collect();
    assert!(
        !at_last.is_empty(),
        "the follower read the final version: {seen:?}"
    );
    assert!(
        at_last.iter().all(|there| !there),
        "the pruned file was still there at the final version: {seen:?}"
    );
}

pub(crate) use crate::support::small_rpm as rpm;

fn open(data: &Path, url: &str) -> Repositories {
    let backends = Backends::choose(data, Some(url), None, None, None).unwrap();
    Repositories::open_backends(&backends, packyard::layout::Layout::builtin()).unwrap()
}

fn read(repos: &Repositories, repo: &str, path: &str) -> Vec<u8> {
    match repos.open_path(repo, path, None).unwrap() {
        Some(o) => o.into_bytes().unwrap(),
        None => panic!("{path}: not found through the store"),
    }
}

/// The package names the repository's el9 primary index lists.
fn primary_names(repos: &Repositories, repo: &str) -> Vec<String> {
    let repomd =
        String::from_utf8(read(repos, repo, "yum/el9_x86_64/repodata/repomd.xml")).unwrap();
    let at = repomd
        .find("type=\"primary\"")
        .expect("primary in repomd.xml");
    let rest = &repomd[at..];
    let href = &rest[rest.find("href=\"").unwrap() + 6..];
    let href = &href[..href.find('"').unwrap()];
    let gz = read(repos, repo, &format!("yum/el9_x86_64/{href}"));
    let mut xml = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut xml)
        .unwrap();
    let mut names: Vec<String> = xml
        .split("<name>")
        .skip(1)
        .map(|s| s[..s.find("</name>").unwrap()].to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn a_repository_in_postgres_is_published_indexed_and_read() {
    let Some(port) = server() else { return };
    let url = database(port, "published");
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let repos = open(&data, &url);
    repos.create(&NewRepo::volatile("nightly")).unwrap();
    let opts = PublishOptions {
        platform: Some("el9_x86_64".into()),
        ..Default::default()
    };
    let report = repos
        .publish(
            "nightly",
            &[rpm(t.path(), "pgtool")],
            &opts,
            &packyard::progress::Quiet,
        )
        .unwrap();
    assert!(!report.files.is_empty());
    for f in &report.files {
        use sha2::Digest;
        let bytes = read(&repos, "nightly", &f.path);
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&bytes)),
            f.sha256,
            "{}",
            f.path
        );
    }
    assert_eq!(primary_names(&repos, "nightly"), ["pgtool"]);
    // Nothing of it is in the data directory's embedded store: it is all in the database.
    assert!(!data.join("store").exists());
    drop(repos);
    // Another process (here: another opening) sees the same repository.
    let again = open(&data, &url);
    assert_eq!(again.store.packages("nightly").unwrap().len(), 1);
    assert_eq!(primary_names(&again, "nightly"), ["pgtool"]);
    again.delete("nightly").unwrap();
    assert!(again.store.repo("nightly").unwrap().is_none());
    assert!(again.store.deleting().unwrap().is_empty());
}

/// Two servers on one database and one blob store (here: two openings, in two threads)
/// publishing into one repository at the same moment: every package lands in the index;
/// and a publish through one waits while the other holds the repository's lock.
#[test]
fn two_publishers_on_one_database_both_land_in_the_index() {
    let Some(port) = server() else { return };
    let url = database(port, "racing");
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let first = open(&data, &url);
    let second = open(&data, &url);
    first.create(&NewRepo::volatile("shared")).unwrap();
    let opts = PublishOptions {
        platform: Some("el9_x86_64".into()),
        ..Default::default()
    };
    let mut all = Vec::new();
    for round in 0..3 {
        let names = [format!("left{round}"), format!("right{round}")];
        let files: Vec<PathBuf> = names.iter().map(|n| rpm(t.path(), n)).collect();
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for (repos, file) in [(&first, &files[0]), (&second, &files[1])] {
                let (start, opts) = (&start, &opts);
                s.spawn(move || {
                    start.wait();
                    repos
                        .publish(
                            "shared",
                            std::slice::from_ref(file),
                            opts,
                            &packyard::progress::Quiet,
                        )
                        .unwrap();
                });
            }
        });
        all.extend(names);
        all.sort();
        assert_eq!(primary_names(&first, "shared"), all, "round {round}");
        assert_eq!(primary_names(&second, "shared"), all, "round {round}");
    }
    // While one holds the repository's lock, the other's publish waits for it.
    let held = first.store.lock_repo("shared").unwrap();
    let late = rpm(t.path(), "late");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = second.publish(
                "shared",
                std::slice::from_ref(&late),
                &opts,
                &packyard::progress::Quiet,
            );
            tx.send(r.map(drop)).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
        drop(held);
        rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
    });
    all.push("late".into());
    all.sort();
    assert_eq!(primary_names(&first, "shared"), all);
    let record = first.store.repo("shared").unwrap().unwrap();
    assert!(record.pending.is_empty(), "{:?}", record.pending);
    assert_eq!(
        first
            .store
            .index_entries("shared", "yum/el9_x86_64")
            .unwrap()
            .len(),
        all.len()
    );
}

/// The command line and a server on one database: what the CLI published the server
/// serves, its handlers reading the store from the server's own threads (where the
/// client's runtime would panic if called there); and the CLI keeps publishing while the
/// server runs (the database is no one process's).
#[test]
fn a_server_on_postgres_serves_what_the_command_line_published() {
    let Some(port) = server() else { return };
    let url = database(port, "served");
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    // The database takes protected keys only: every command and the server unlock the
    // key with this passphrase.
    let pass = t.path().join("key-passphrase");
    std::fs::write(&pass, "served from postgres\n").unwrap();
    let py = |args: &[&str]| {
        let out = crate::support::packyard_at(&d)
            .args(["--store", &url])
            .env("PACKYARD_KEY_PASSPHRASE_FILE", &pass)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    py(&["repo", "create", "nightly", "--kind", "volatile"]);
    py(&["key", "generate", "--repo", "nightly"]);
    let file = rpm(t.path(), "pgserved");
    let report = py(&[
        "--json",
        "publish",
        "--repo",
        "nightly",
        "--platform",
        "el9_x86_64",
        file.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let path = report["files"][0]["path"].as_str().unwrap().to_string();

    // Started here: a server on a shared store leaves no server.json to find it by.
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut server = crate::support::packyard_at(&d)
        .args(["--store", &url, "serve", "--listen", &listen])
        .env("PACKYARD_KEY_PASSPHRASE_FILE", &pass)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    crate::support::wait_listening(&mut server, &listen, &t.path().join("serve.log"));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let get = |path: &str| {
        let mut r = agent.get(format!("http://{listen}{path}")).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_vec().unwrap())
    };
    let (status, body) = get("/api/v1/repos");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let repos: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(repos[0]["name"], "nightly", "{repos}");
    let (status, body) = get(&format!("/repos/nightly/{path}"));
    assert_eq!(status, 200);
    {
        use sha2::Digest;
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&body)),
            report["files"][0]["sha256"].as_str().unwrap()
        );
    }
    // Published by the command line while the server runs: the server shows it at once.
    let more = rpm(t.path(), "pgmore");
    py(&[
        "publish",
        "--repo",
        "nightly",
        "--platform",
        "el9_x86_64",
        more.to_str().unwrap(),
    ]);
    let (status, repomd) = get("/repos/nightly/yum/el9_x86_64/repodata/repomd.xml");
    assert_eq!(status, 200);
    let repomd = String::from_utf8(repomd).unwrap();
    let at = repomd.find("type=\"primary\"").unwrap();
    let href = &repomd[at..];
    let href = &href[href.find("href=\"").unwrap() + 6..];
    let href = &href[..href.find('"').unwrap()];
    let (status, gz) = get(&format!("/repos/nightly/yum/el9_x86_64/{href}"));
    assert_eq!(status, 200);
    let mut xml = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut xml)
        .unwrap();
    assert!(xml.contains("<name>pgserved</name>") && xml.contains("<name>pgmore</name>"));
    let (status, _) = get("/repos/nightly/yum/el9_x86_64/repodata/repomd.xml.asc");
    assert_eq!(
        status, 200,
        "the index is signed with the key kept in the database"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
}

/// No server needed: a store URL nothing answers is refused at once, naming what to fix
/// and not the password.
#[test]
fn an_unreachable_database_is_a_clear_error() {
    let closed = crate::support::free_port();
    let t = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    // A command, and a server, which stops at start rather than at its first request.
    for command in [&["repo", "list"][..], &["serve", "--listen", &listen]] {
        let out = crate::support::packyard_at(t.path())
            .arg("--store")
            .arg(format!("postgres://me:hunter2@127.0.0.1:{closed}/packyard"))
            .args(command)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("start PostgreSQL or fix --store"), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{closed}")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
