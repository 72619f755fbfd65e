//! What every metadata store must do alike, as one check the test suites run on each: the
//! embedded store (a unit test) and PostgreSQL (an integration test that starts a
//! server). Records come back as they were put, in the orders the trait names; a batch's
//! package changes keep the by-name lookup and the index trees in step; a removed
//! repository leaves nothing; the farm's queue hands out tasks oldest first, once.
//! [`check_shared`] checks two handles on one store, as two servers sharing it hold: a
//! farm build's tasks change under one lock for both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use super::{
    BuildId, Change, FarmBuild, FileKind, Generation, IndexEntry, Lease, LeftFile, Listing,
    LockRecord, PackageRecord, RepoKind, RepoRecord, Role, Store, Task, TaskEvent, TaskState,
    TokenRecord, TreeAfter,
};
use crate::farm::{NewTask, Queue, TaskReport};

/// Checks `store`, which must be empty, against the trait's contract, panicking at the
/// first difference.
pub fn check(store: &dyn Store) {
    repositories_and_packages(store);
    prepared_batches(store);
    index_trees(store);
    index_trees_in_byte_order(store);
    trees_foreseen_before_batches(store);
    segments_left_files_and_generations(store);
    marks_keys_tokens_and_locks(store);
    removed_repositories_leave_nothing(store);
    publish_locks(store);
    build_locks(store);
    farm_records(store);
    queue_order_and_dependencies(store);
    stale_leases(store);
    many_agents_at_once(store);
    claims_wait_for_the_builds_lock(store);
    running_logs(store);
}

/// A running task's log in parts: appended at its length, read whole in order, a part
/// put again unchanged, other tasks' logs apart, removed for a new attempt.
fn running_logs(store: &dyn Store) {
    let (b, i) = (9_000_001, 3);
    assert_eq!(store.task_log_len(b, i).unwrap(), 0);
    assert!(store.task_log(b, i).unwrap().is_empty());
    store.append_task_log(b, i, 0, b"hello ").unwrap();
    store.append_task_log(b, i + 1, 0, b"other").unwrap();
    let at = store.task_log_len(b, i).unwrap();
    assert_eq!(at, 6);
    // Past 16 parts, so an order by text rather than by offset would show.
    let mut want = b"hello ".to_vec();
    for n in 0..20u8 {
        let part = vec![b'a' + n; usize::from(n) + 1];
        let at = store.task_log_len(b, i).unwrap();
        store.append_task_log(b, i, at, &part).unwrap();
        want.extend_from_slice(&part);
    }
    // A part at an offset already held changes nothing.
    store.append_task_log(b, i, 0, b"HELLO ").unwrap();
    assert_eq!(store.task_log(b, i).unwrap(), want);
    assert_eq!(store.task_log_len(b, i).unwrap(), want.len() as u64);
    assert_eq!(store.task_log(b, i + 1).unwrap(), b"other");
    store.remove_task_log(b, i).unwrap();
    assert_eq!(store.task_log_len(b, i).unwrap(), 0);
    assert_eq!(store.task_log(b, i + 1).unwrap(), b"other");
    store.remove_task_log(b, i + 1).unwrap();
}

/// Checks `a` and `b`, two handles on one store that holds no farm work yet (two
/// processes' connections to a shared database; where one process holds the store, the
/// same store twice), each with a queue of its own as two servers have: a build's lock
/// held through one holds for the other, and the queue's changes made through both at
/// once lose none of each other's. Panics at the first difference.
pub fn check_shared(a: &dyn Store, b: &dyn Store) {
    index_trees_across(a, b);
    build_locks_across(a, b);
    racing_reports(a, b);
    racing_expiries(a, b);
    cancel_racing_claims(a, b);
}

fn repo(name: &str) -> RepoRecord {
    RepoRecord {
        name: name.into(),
        kind: RepoKind::Volatile,
        platforms: vec![],
        keep: Some(3),
        created: 0,
        key: None,
        yum_compression: Default::default(),
        pending: vec![],
        private: false,
    }
}

/// A package record for the contract's checks (also the unit tests').
pub(crate) fn record(path: &str) -> PackageRecord {
    PackageRecord {
        path: path.into(),
        kind: FileKind::Rpm,
        platform: "el9_x86_64".into(),
        name: "tool".into(),
        epoch: 0,
        version: "1.0.0".into(),
        release: "1".into(),
        arch: "x86_64".into(),
        size: 10,
        sha256: "00".repeat(32),
        published: 1,
        configuration: None,
        signed: false,
        listed: None,
        external: false,
        parts: Vec::new(),
        index: Default::default(),
    }
}

/// A package listed in `tree` at `order`, its entry naming its path.
fn listed(path: &str, tree: &str, order: &str, sha: &str) -> PackageRecord {
    PackageRecord {
        sha256: sha.repeat(64),
        listed: Some(Listing {
            tree: tree.into(),
            order: order.into(),
        }),
        index: Arc::new(IndexEntry::Yum {
            primary: format!("<package>{path}</package>"),
            filelists: String::new(),
            other: String::new(),
        }),
        ..record(path)
    }
}

fn put(repo: &str, record: PackageRecord) -> Change {
    Change::PutPackage {
        repo: repo.into(),
        record,
    }
}

fn remove(repo: &str, path: &str) -> Change {
    Change::RemovePackage {
        repo: repo.into(),
        path: path.into(),
    }
}

fn paths(records: Vec<PackageRecord>) -> Vec<String> {
    records.into_iter().map(|p| p.path).collect()
}

fn keys(store: &dyn Store, repo: &str, tree: &str) -> Vec<String> {
    store
        .index_entries(repo, tree)
        .unwrap()
        .iter()
        .map(|r| r.key.clone())
        .collect()
}

fn repositories_and_packages(store: &dyn Store) {
    store
        .apply(vec![
            Change::PutRepo(repo("nightly")),
            Change::PutRepo(repo("nightly-old")),
            put("nightly", record("b/tool.rpm")),
            put("nightly", record("a/tool.rpm")),
            put("nightly-old", record("c/tool.rpm")),
        ])
        .unwrap();
    let names: Vec<_> = store.repos().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["nightly", "nightly-old"]);
    assert_eq!(store.repo("nightly").unwrap(), Some(repo("nightly")));
    assert!(store.repo("nightl").unwrap().is_none());
    // A repository whose name extends another's does not leak into it.
    assert_eq!(
        paths(store.packages("nightly").unwrap()),
        ["a/tool.rpm", "b/tool.rpm"]
    );
    assert_eq!(
        store.package("nightly", "a/tool.rpm").unwrap(),
        Some(record("a/tool.rpm"))
    );
    store.apply(vec![remove("nightly", "a/tool.rpm")]).unwrap();
    assert!(store.package("nightly", "a/tool.rpm").unwrap().is_none());
    assert!(store.package("nightly", "b/tool.rpm").unwrap().is_some());
    assert_eq!(
        paths(store.packages_named("nightly", "tool").unwrap()),
        ["b/tool.rpm"]
    );
    assert!(store.packages_named("nightly", "too").unwrap().is_empty());
    assert_eq!(store.packages("nightly-old").unwrap().len(), 1);
    // Renamed in place: found by its new name only. By name, in path order.
    let renamed = PackageRecord {
        name: "other".into(),
        ..record("b/tool.rpm")
    };
    store
        .apply(vec![
            put("nightly", renamed.clone()),
            put(
                "nightly",
                PackageRecord {
                    name: "other".into(),
                    ..record("a/other.rpm")
                },
            ),
        ])
        .unwrap();
    assert!(store.packages_named("nightly", "tool").unwrap().is_empty());
    assert_eq!(
        paths(store.packages_named("nightly", "other").unwrap()),
        ["a/other.rpm", "b/tool.rpm"]
    );
    assert_eq!(
        store.package("nightly", "b/tool.rpm").unwrap(),
        Some(renamed)
    );
    // Added and removed in one batch: nothing is left; removed and added: it is there.
    store
        .apply(vec![
            put("nightly", record("c/brief.rpm")),
            remove("nightly", "c/brief.rpm"),
            remove("nightly", "a/other.rpm"),
            put("nightly", record("a/other.rpm")),
        ])
        .unwrap();
    assert!(store.package("nightly", "c/brief.rpm").unwrap().is_none());
    assert_eq!(
        paths(store.packages_named("nightly", "tool").unwrap()),
        ["a/other.rpm"]
    );
    // An empty batch is nothing.
    store.apply(vec![]).unwrap();
}

/// A prepared batch writes nothing until it is applied (nor if it never is), and then
/// writes all of it: also into an index tree read, and perhaps kept, in between.
fn prepared_batches(store: &dyn Store) {
    let tree = "yum/el9";
    let batch = || {
        vec![
            Change::PutRepo(repo("prepared")),
            put("prepared", listed("p/one.rpm", tree, "one", "a")),
        ]
    };
    drop(store.prepare(batch()).unwrap());
    assert!(store.repo("prepared").unwrap().is_none());
    let prepared = store.prepare(batch()).unwrap();
    assert!(store.repo("prepared").unwrap().is_none());
    assert!(store.package("prepared", "p/one.rpm").unwrap().is_none());
    assert!(keys(store, "prepared", tree).is_empty());
    prepared.apply().unwrap();
    assert_eq!(store.repo("prepared").unwrap(), Some(repo("prepared")));
    assert!(store.package("prepared", "p/one.rpm").unwrap().is_some());
    assert_eq!(keys(store, "prepared", tree), ["one\0p/one.rpm"]);
    store
        .apply(vec![Change::RemoveRepo("prepared".into())])
        .unwrap();
}

/// A tree one handle read (and may keep) shows what the other changed since, and what it
/// changed itself; a repository the other removed shows nothing.
fn index_trees_across(a: &dyn Store, b: &dyn Store) {
    let t = "yum/el9";
    let read = |s: &dyn Store| keys(s, "shared", t);
    a.apply(vec![put("shared", listed("x.rpm", t, "m", "1"))])
        .unwrap();
    assert_eq!(read(a), ["m\0x.rpm"]);
    assert_eq!(read(b), ["m\0x.rpm"]);
    b.apply(vec![put("shared", listed("y.rpm", t, "n", "1"))])
        .unwrap();
    assert_eq!(read(a), ["m\0x.rpm", "n\0y.rpm"]);
    a.apply(vec![remove("shared", "x.rpm")]).unwrap();
    assert_eq!(read(a), ["n\0y.rpm"]);
    assert_eq!(read(b), ["n\0y.rpm"]);
    b.apply(vec![Change::RemoveRepo("shared".into())]).unwrap();
    assert!(read(a).is_empty());
    a.apply(vec![put("shared", listed("z.rpm", t, "o", "1"))])
        .unwrap();
    assert_eq!(read(b), ["o\0z.rpm"]);
    a.apply(vec![Change::RemoveRepo("shared".into())]).unwrap();
    assert!(read(a).is_empty() && read(b).is_empty());
}

/// What a publish foresees of its index trees before their batch ([`TreeAfter`]) is what
/// the store holds after it: packages added, rebuilt in place, moved to another tree or
/// place in the order, removed, put and removed in one batch, put twice.
fn trees_foreseen_before_batches(store: &dyn Store) {
    let (repo, el9, el8) = ("foresee", "yum/el9", "yum/el8");
    let batches = vec![
        vec![
            put(repo, listed("a.rpm", el9, "m", "1")),
            put(repo, listed("b.rpm", el9, "n", "1")),
            put(repo, listed("c.rpm", el8, "n", "1")),
            put(repo, record("tool.tar.gz")),
        ],
        vec![
            // Rebuilt elsewhere in the order; moved to the other tree; one removed.
            put(repo, listed("a.rpm", el9, "z", "2")),
            put(repo, listed("b.rpm", el8, "b", "2")),
            remove(repo, "c.rpm"),
            put(repo, listed("d.rpm", el9, "d", "2")),
        ],
        vec![
            // Added and pruned at once; put twice; a path never stored removed.
            put(repo, listed("e.rpm", el9, "e", "3")),
            remove(repo, "e.rpm"),
            put(repo, listed("d.rpm", el9, "d", "3")),
            put(repo, listed("d.rpm", el8, "d", "4")),
            remove(repo, "never.rpm"),
            remove(repo, "tool.tar.gz"),
        ],
    ];
    for changes in batches {
        let mut stored = HashMap::new();
        for c in &changes {
            let path = match c {
                Change::PutPackage { record, .. } => &record.path,
                Change::RemovePackage { path, .. } => path,
                _ => continue,
            };
            if let Some(p) = store.package(repo, path).unwrap() {
                stored.insert(path.clone(), p);
            }
        }
        let foreseen: Vec<(&str, TreeAfter)> = [el9, el8]
            .into_iter()
            .map(|tree| {
                let before = store.index_entries(repo, tree).unwrap();
                (tree, TreeAfter::new(before, repo, tree, &changes, &stored))
            })
            .collect();
        store.apply(changes).unwrap();
        for (tree, after) in foreseen {
            let rows = store.index_entries(repo, tree).unwrap();
            let row_keys = |rows: Vec<&super::IndexRow>| -> Vec<String> {
                rows.iter().map(|r| r.key.clone()).collect()
            };
            assert_eq!(
                row_keys(after.rows()),
                row_keys(rows.iter().collect()),
                "{tree}"
            );
            assert!(after.matches(&rows), "{tree}");
        }
    }
    let keys_of = |tree| keys(store, repo, tree);
    assert_eq!(keys_of(el9), ["z\0a.rpm"]);
    assert_eq!(keys_of(el8), ["b\0b.rpm", "d\0d.rpm"]);
    // A tree foreseen wrongly does not match.
    let before = store.index_entries(repo, el9).unwrap();
    let wrong = TreeAfter::new(before, repo, el9, &[], &HashMap::new());
    assert!(!wrong.matches(&store.index_entries(repo, el8).unwrap()));
}

fn index_trees(store: &dyn Store) {
    let el9 = "yum/el9";
    let segment = |key: &str, bytes: &[u8]| Change::PutSegment {
        repo: "r".into(),
        tree: el9.into(),
        key: key.into(),
        bytes: bytes.to_vec(),
    };
    store
        .apply(vec![
            put("r", listed("x.rpm", el9, "m", "1")),
            put("r", listed("y.rpm", el9, "n", "1")),
            segment("s1", b"one"),
        ])
        .unwrap();
    assert_eq!(keys(store, "r", el9), ["m\0x.rpm", "n\0y.rpm"]);
    assert_eq!(store.segments("r", el9).unwrap().len(), 1);
    store
        .apply(vec![
            // Rebuilt, listed elsewhere in the order; another removed; one added.
            put("r", listed("x.rpm", el9, "z", "2")),
            remove("r", "y.rpm"),
            put("r", listed("w.rpm", el9, "a", "3")),
            segment("s2", b"two"),
            Change::RemoveSegment {
                repo: "r".into(),
                tree: el9.into(),
                key: "s1".into(),
            },
        ])
        .unwrap();
    let rows = store.index_entries("r", el9).unwrap();
    let got: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(got, ["a\0w.rpm", "z\0x.rpm"]);
    assert_eq!(rows[1].sha256, "2".repeat(64));
    assert_eq!(rows[1].published, 1);
    assert_eq!(
        *rows[1].entry,
        IndexEntry::Yum {
            primary: "<package>x.rpm</package>".into(),
            filelists: String::new(),
            other: String::new(),
        }
    );
    assert_ne!(rows[0].identity(), rows[1].identity());
    // A big batch: rows added around and between the kept ones, one moved, one removed,
    // one put twice (the second stays).
    let mut many: Vec<Change> = (0..30)
        .map(|i| {
            put(
                "r",
                listed(&format!("p{i:02}.rpm"), el9, &format!("{}", i % 3), "4"),
            )
        })
        .collect();
    many.push(put("r", listed("w.rpm", el9, "b", "5")));
    many.push(remove("r", "x.rpm"));
    many.push(put("r", listed("p07.rpm", el9, "y", "6")));
    store.apply(many).unwrap();
    let merged = store.index_entries("r", el9).unwrap();
    assert_eq!(merged.len(), 31);
    assert_eq!(merged[30].key, "y\0p07.rpm");
    assert_eq!(merged[30].sha256, "6".repeat(64));
    assert_eq!(merged[0].key, "0\0p00.rpm");
    assert!(merged.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(
        *store.segments("r", el9).unwrap(),
        [("s2".to_string(), b"two".to_vec())].into_iter().collect()
    );
    // Listed in another tree now: it leaves the first; unlisted: it leaves every tree.
    store
        .apply(vec![
            put("r", listed("p00.rpm", "yum/el8", "0", "7")),
            put("r", record("p01.rpm")),
        ])
        .unwrap();
    assert_eq!(keys(store, "r", "yum/el8"), ["0\0p00.rpm"]);
    let el9_keys = keys(store, "r", el9);
    assert_eq!(el9_keys.len(), 29);
    assert!(
        !el9_keys
            .iter()
            .any(|k| k.ends_with("p00.rpm") || k.ends_with("p01.rpm"))
    );
    // Added and removed in one batch: no entry is left behind.
    store
        .apply(vec![
            put("r", listed("brief.rpm", el9, "0", "8")),
            remove("r", "brief.rpm"),
        ])
        .unwrap();
    assert_eq!(keys(store, "r", el9).len(), 29);
    assert!(store.index_entries("r", "yum/none").unwrap().is_empty());
    assert!(store.index_entries("other", el9).unwrap().is_empty());
}

/// Entries list in the byte order of their keys (`<order>\0<path>`), not in a locale's
/// collation: upper case before lower, a shorter order before a longer one it begins,
/// UTF-8 after ASCII.
fn index_trees_in_byte_order(store: &dyn Store) {
    let tree = "apt/bookworm";
    let orders = [
        ("p1.deb", "a-b"),
        ("p2.deb", "a"),
        ("p3.deb", "B"),
        ("p4.deb", "é"),
        ("p5.deb", "b"),
        ("p6.deb", "a b"),
        ("p0.deb", "a"),
        // As YUM trees order: file name, NUL, directory.
        ("p7.deb", "a\0z"),
    ];
    store
        .apply(
            orders
                .iter()
                .map(|(path, order)| put("bytes", listed(path, tree, order, "1")))
                .collect(),
        )
        .unwrap();
    assert_eq!(
        keys(store, "bytes", tree),
        [
            "B\0p3.deb",
            "a\0p0.deb",
            "a\0p2.deb",
            "a\0z\0p7.deb",
            "a b\0p6.deb",
            "a-b\0p1.deb",
            "b\0p5.deb",
            "é\0p4.deb"
        ]
    );
    // Paths too list in byte order.
    store
        .apply(vec![
            put("bytes", record("Z.rpm")),
            put("bytes", record("a.rpm")),
            put("bytes", record("_.rpm")),
        ])
        .unwrap();
    let all = paths(store.packages("bytes").unwrap());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all[..3], ["Z.rpm", "_.rpm", "a.rpm"]);
}

fn segments_left_files_and_generations(store: &dyn Store) {
    let left = vec![LeftFile {
        key: "yum/el9/a.rpm".into(),
        path: "pool/a.rpm".into(),
        sha256: "ab".repeat(32),
    }];
    let generation = Generation {
        name: ".repodata.gen-1".into(),
        files: vec!["repomd.xml".into()],
        carried: vec![],
        previous: Some(".repodata.gen-0".into()),
    };
    store
        .apply(vec![
            Change::PutSegment {
                repo: "g".into(),
                tree: "yum/el9".into(),
                key: "primary:zstd".into(),
                bytes: vec![0, 1, 2, 255],
            },
            Change::PutLeft {
                repo: "g".into(),
                tree: "yum/el9".into(),
                files: left.clone(),
            },
            Change::PutGeneration {
                repo: "g".into(),
                dir: "yum/el9/repodata".into(),
                generation: generation.clone(),
            },
        ])
        .unwrap();
    assert_eq!(
        store.segments("g", "yum/el9").unwrap()["primary:zstd"],
        [0, 1, 2, 255]
    );
    assert!(store.segments("g", "yum/el8").unwrap().is_empty());
    assert_eq!(store.left_files("g", "yum/el9").unwrap(), left);
    assert!(store.left_files("g", "yum/el8").unwrap().is_empty());
    assert_eq!(
        store.generation("g", "yum/el9/repodata").unwrap(),
        Some(generation.clone())
    );
    assert!(store.generation("g", "yum/el8/repodata").unwrap().is_none());
    // Replaced, and emptied.
    let next = Generation {
        name: ".repodata.gen-2".into(),
        previous: Some(generation.name.clone()),
        ..generation
    };
    store
        .apply(vec![
            Change::PutLeft {
                repo: "g".into(),
                tree: "yum/el9".into(),
                files: vec![],
            },
            Change::PutGeneration {
                repo: "g".into(),
                dir: "yum/el9/repodata".into(),
                generation: next.clone(),
            },
        ])
        .unwrap();
    assert!(store.left_files("g", "yum/el9").unwrap().is_empty());
    assert_eq!(
        store.generation("g", "yum/el9/repodata").unwrap(),
        Some(next)
    );
}

fn marks_keys_tokens_and_locks(store: &dyn Store) {
    let mark = |repo: &str, marked| Change::Deleting {
        repo: repo.into(),
        marked,
    };
    store
        .apply(vec![mark("b-repo", true), mark("a-repo", true)])
        .unwrap();
    assert_eq!(store.deleting().unwrap(), ["a-repo", "b-repo"]);
    store
        .apply(vec![mark("a-repo", false), mark("b-repo", true)])
        .unwrap();
    assert_eq!(store.deleting().unwrap(), ["b-repo"]);
    store.apply(vec![mark("b-repo", false)]).unwrap();
    assert!(store.deleting().unwrap().is_empty());

    assert!(store.secret_key("k").unwrap().is_none());
    let armored =
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxcLY\n-----END PGP PRIVATE KEY BLOCK-----\n";
    store.put_secret_key("k", armored).unwrap();
    assert_eq!(store.secret_key("k").unwrap().as_deref(), Some(armored));
    assert!(store.secret_key("k2").unwrap().is_none());
    store.put_secret_key("k", "replaced").unwrap();
    assert_eq!(store.secret_key("k").unwrap().as_deref(), Some("replaced"));
    assert!(store.secret_key_place("k").contains('k'));
    store.remove_secret_key("k").unwrap();
    store.remove_secret_key("k").unwrap();
    assert!(store.secret_key("k").unwrap().is_none());

    let token = |id: &str| TokenRecord {
        id: id.into(),
        role: Role::Builder,
        name: format!("for {id}"),
        hash: "cd".repeat(32),
        created: 5,
        revoked: None,
        expires: Some(50),
    };
    let lock = |conf: &str| LockRecord {
        configuration: conf.into(),
        module: "m".into(),
        version: "1.0".into(),
        age: 1,
        sha256: "ef".repeat(32),
        canonical: "a = 1\n".into(),
        locked: 7,
    };
    store
        .apply(vec![
            Change::PutToken(token("t2")),
            Change::PutToken(token("t1")),
            Change::PutLock(lock("m_R_2")),
            Change::PutLock(lock("m_R_1")),
        ])
        .unwrap();
    let ids: Vec<_> = store.tokens().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t1", "t2"]);
    assert_eq!(store.token("t1").unwrap(), Some(token("t1")));
    assert!(store.token("t3").unwrap().is_none());
    let revoked = TokenRecord {
        revoked: Some(9),
        ..token("t1")
    };
    store
        .apply(vec![Change::PutToken(revoked.clone())])
        .unwrap();
    assert_eq!(store.token("t1").unwrap(), Some(revoked));
    let confs: Vec<_> = store
        .locks()
        .unwrap()
        .into_iter()
        .map(|l| l.configuration)
        .collect();
    assert_eq!(confs, ["m_R_1", "m_R_2"]);
    assert_eq!(store.lock("m_R_2").unwrap(), Some(lock("m_R_2")));
    assert!(store.lock("m_R_3").unwrap().is_none());
    store.flush().unwrap();
}

fn removed_repositories_leave_nothing(store: &dyn Store) {
    let everything = |name: &str| {
        vec![
            Change::PutRepo(repo(name)),
            put(name, listed("a.rpm", "yum/el9", "a", "1")),
            put(name, record("b.tgz")),
            Change::PutSegment {
                repo: name.into(),
                tree: "yum/el9".into(),
                key: "k".into(),
                bytes: b"s".to_vec(),
            },
            Change::PutLeft {
                repo: name.into(),
                tree: "yum/el9".into(),
                files: vec![LeftFile {
                    key: "k".into(),
                    path: "p".into(),
                    sha256: "s".into(),
                }],
            },
            Change::PutGeneration {
                repo: name.into(),
                dir: "yum/el9/repodata".into(),
                generation: Generation {
                    name: ".repodata.gen-1".into(),
                    files: vec![],
                    carried: vec![],
                    previous: None,
                },
            },
        ]
    };
    let mut batch = everything("gone");
    batch.extend(everything("gone-too"));
    store.apply(batch).unwrap();
    store.put_secret_key("gone", "key").unwrap();
    // As a delete does: the records go and the mark is set in one batch.
    store
        .apply(vec![
            Change::RemoveRepo("gone".into()),
            Change::Deleting {
                repo: "gone".into(),
                marked: true,
            },
        ])
        .unwrap();
    let left = |name: &str| {
        (
            store.repo(name).unwrap().is_some(),
            store.packages(name).unwrap().len(),
            store.packages_named(name, "tool").unwrap().len(),
            store.index_entries(name, "yum/el9").unwrap().len(),
            store.segments(name, "yum/el9").unwrap().len(),
            store.left_files(name, "yum/el9").unwrap().len(),
            store
                .generation(name, "yum/el9/repodata")
                .unwrap()
                .is_some(),
        )
    };
    assert_eq!(left("gone"), (false, 0, 0, 0, 0, 0, false));
    assert_eq!(left("gone-too"), (true, 2, 2, 1, 1, 1, true));
    // The mark and the key stay until the delete ends.
    assert_eq!(store.deleting().unwrap(), ["gone"]);
    assert!(store.secret_key("gone").unwrap().is_some());
    store.remove_secret_key("gone").unwrap();
    store
        .apply(vec![Change::Deleting {
            repo: "gone".into(),
            marked: false,
        }])
        .unwrap();
    // Created again, it starts empty.
    store.apply(vec![Change::PutRepo(repo("gone"))]).unwrap();
    assert_eq!(left("gone"), (true, 0, 0, 0, 0, 0, false));
}

/// Four threads take a lock 15 times each with `take` (which also checks that other
/// locks are not held up by it): never two inside at once.
pub(crate) fn held_alone(take: impl Fn() -> Box<dyn std::any::Any> + Sync) {
    let inside = AtomicU32::new(0);
    let most = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..15 {
                    let _g = take();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1));
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(most.into_inner(), 1);
}

fn publish_locks(store: &dyn Store) {
    held_alone(|| {
        let g = store.lock_repo("locked").unwrap();
        // Another repository is not held up by it.
        drop(store.lock_repo("other").unwrap());
        Box::new(g)
    });
}

fn build_locks(store: &dyn Store) {
    held_alone(|| {
        let g = store.lock_farm_build(7).unwrap();
        // Another build is not held up by it, nor a repository named alike.
        drop(store.lock_farm_build(8).unwrap());
        drop(store.lock_repo("7").unwrap());
        Box::new(g)
    });
}

fn farm_build(id: BuildId) -> FarmBuild {
    FarmBuild {
        id,
        project: "p_R_1_0_0_1".into(),
        platforms: vec!["el9_x86_64".into()],
        repo: "nightly".into(),
        only: vec![],
        force: false,
        defaults: vec![],
        by: "test".into(),
        submitted: 0,
        finished: None,
        cancelled: false,
    }
}

fn task(build: BuildId, index: u32, platform: &str, ready: bool) -> Task {
    Task {
        build,
        index,
        configuration: format!("c{index}_R_1"),
        module: format!("p.c{index}"),
        platform: platform.into(),
        deps: vec![],
        state: TaskState::Queued,
        ready,
        attempts: 0,
        lease: None,
        history: vec![TaskEvent {
            at: 0,
            what: "queued".into(),
            agent: None,
        }],
        key: None,
        reason: None,
        artifacts: vec![],
        log: None,
        queued: 0,
        claimed: None,
        finished: None,
    }
}

fn lease(agent: &str, expires: i64) -> Lease {
    Lease {
        id: format!("lease-of-{agent}"),
        agent: agent.into(),
        expires,
    }
}

fn strings(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

fn farm_records(store: &dyn Store) {
    let a = store.new_build_id().unwrap();
    let b = store.new_build_id().unwrap();
    assert!(a >= 1 && b > a, "{a}, {b}");
    let (el9, deb) = ("el9_x86_64", "deb12_x86_64");
    // Put in another order than their ids'.
    store
        .apply(vec![
            Change::PutFarmBuild(farm_build(b)),
            Change::PutTask(task(b, 0, el9, true)),
            Change::PutFarmBuild(farm_build(a)),
            Change::PutTask(task(a, 2, el9, false)),
            Change::PutTask(task(a, 1, deb, true)),
            Change::PutTask(task(a, 0, el9, true)),
        ])
        .unwrap();
    let ids: Vec<_> = store
        .farm_builds()
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [b, a], "newest first");
    assert_eq!(store.farm_build(a).unwrap(), Some(farm_build(a)));
    assert!(store.farm_build(b + 1000).unwrap().is_none());
    let indices: Vec<_> = store.tasks(a).unwrap().iter().map(|t| t.index).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(store.task(a, 1).unwrap(), Some(task(a, 1, deb, true)));
    assert!(store.task(a, 9).unwrap().is_none());
    assert_eq!(store.claimable().unwrap(), 3);

    // Nothing for another platform; the oldest build first, then build order.
    assert!(
        store
            .claim(&strings(&["el9_aarch64"]), lease("arm", 100), 10)
            .unwrap()
            .is_none()
    );
    let first = store
        .claim(&strings(&[deb, el9]), lease("x", 500), 10)
        .unwrap()
        .unwrap();
    assert_eq!(first.id(), (a, 0));
    assert_eq!(first.state, TaskState::Claimed);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.claimed, Some(10));
    assert_eq!(first.lease, Some(lease("x", 500)));
    let last = first.history.last().unwrap();
    assert_eq!(
        (last.at, last.what.as_str(), last.agent.as_deref()),
        (10, "claimed (attempt 1)", Some("x"))
    );
    assert_eq!(store.task(a, 0).unwrap(), Some(first));
    // (a, 2) is not ready: the next el9 task is the newer build's.
    let second = store
        .claim(&strings(&[el9]), lease("y", 300), 11)
        .unwrap()
        .unwrap();
    assert_eq!(second.id(), (b, 0));
    let third = store
        .claim(&strings(&[deb]), lease("z", 300), 12)
        .unwrap()
        .unwrap();
    assert_eq!(third.id(), (a, 1));
    assert!(
        store
            .claim(&strings(&[el9, deb]), lease("w", 300), 13)
            .unwrap()
            .is_none()
    );
    assert_eq!(store.claimable().unwrap(), 0);
    let count = |state| {
        store
            .task_counts()
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == state)
            .unwrap()
            .1
    };
    let states: Vec<_> = store
        .task_counts()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(states, TaskState::ALL);
    assert_eq!(
        (count(TaskState::Claimed), count(TaskState::Queued)),
        (3, 1)
    );
    assert_eq!(count(TaskState::Built), 0);

    // Leases by expiry, oldest first (then build order); only those before now.
    assert!(store.expired(300).unwrap().is_empty());
    assert_eq!(store.expired(301).unwrap(), [(a, 1), (b, 0)]);
    assert_eq!(store.expired(1000).unwrap(), [(a, 1), (b, 0), (a, 0)]);
    // Handed back: claimable again, no longer held; running under a renewed lease: held.
    let mut back = third.clone();
    back.state = TaskState::Queued;
    back.lease = None;
    let mut running = second.clone();
    running.state = TaskState::Running;
    running.lease = Some(lease("y", 2000));
    let mut built = store.task(a, 0).unwrap().unwrap();
    built.state = TaskState::Built;
    store
        .apply(vec![
            Change::PutTask(back),
            Change::PutTask(running),
            Change::PutTask(built),
        ])
        .unwrap();
    assert_eq!(store.expired(1000).unwrap(), []);
    assert_eq!(store.expired(2001).unwrap(), [(b, 0)]);
    assert_eq!(store.claimable().unwrap(), 1);
    assert_eq!(count(TaskState::Built), 1);
    // A task put twice in one batch: the second is what finds it.
    let mut twice = store.task(a, 2).unwrap().unwrap();
    twice.ready = true;
    let mut cancelled = twice.clone();
    cancelled.state = TaskState::Cancelled;
    store
        .apply(vec![Change::PutTask(twice), Change::PutTask(cancelled)])
        .unwrap();
    assert_eq!(store.claimable().unwrap(), 1);
    let again = store
        .claim(&strings(&[el9, deb]), lease("v", 3000), 14)
        .unwrap()
        .unwrap();
    assert_eq!((again.id(), again.attempts), ((a, 1), 2));
    assert_eq!(store.claimable().unwrap(), 0);
}

pub(crate) fn new_task(name: &str, platform: &str, deps: &[u32]) -> NewTask {
    NewTask {
        configuration: format!("{name}_R_1_0_0_1"),
        module: format!("p.{name}"),
        platform: platform.into(),
        deps: deps.to_vec(),
        cached: None,
    }
}

pub(crate) fn report(state: TaskState) -> TaskReport {
    TaskReport {
        state,
        key: Some("k".into()),
        artifacts: vec![],
        reason: None,
        log: None,
    }
}

pub(crate) fn states(store: &dyn Store, build: BuildId) -> Vec<TaskState> {
    store
        .tasks(build)
        .unwrap()
        .iter()
        .map(|t| t.state)
        .collect()
}

/// The queue on this store: tasks claimed in order once their dependencies are done.
fn queue_order_and_dependencies(store: &dyn Store) {
    let p = "order_x86_64";
    let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
    // a <- b <- c, and d alone; b needs a.
    let id = q
        .submit(
            store,
            farm_build(0),
            vec![
                new_task("a", p, &[]),
                new_task("d", p, &[]),
                new_task("b", p, &[0]),
                new_task("c", p, &[2]),
            ],
            1000,
        )
        .unwrap();
    let mine = strings(&[p]);
    let a = q.claim(store, "x", &mine, 1001).unwrap().unwrap();
    let d = q.claim(store, "y", &mine, 1001).unwrap().unwrap();
    assert_eq!((a.index, d.index), (0, 1));
    // b waits for a.
    assert!(q.claim(store, "y", &mine, 1002).unwrap().is_none());
    let lease = a.lease.unwrap().id;
    q.started(store, id, 0, &lease, 1003).unwrap();
    q.report(store, id, 0, &lease, report(TaskState::Built), 1004)
        .unwrap();
    let b = q.claim(store, "y", &mine, 1005).unwrap().unwrap();
    assert_eq!(b.index, 2);
    assert_eq!(
        states(store, id),
        [
            TaskState::Built,
            TaskState::Claimed,
            TaskState::Claimed,
            TaskState::Queued
        ]
    );
    let mut failed = report(TaskState::Failed);
    failed.reason = Some("compile: exit status 2".into());
    q.report(store, id, 2, &b.lease.unwrap().id, failed, 1006)
        .unwrap();
    assert_eq!(states(store, id)[3], TaskState::Skipped);
    assert!(store.farm_build(id).unwrap().unwrap().finished.is_none());
    q.report(
        store,
        id,
        1,
        &d.lease.unwrap().id,
        report(TaskState::Built),
        1007,
    )
    .unwrap();
    assert_eq!(store.farm_build(id).unwrap().unwrap().finished, Some(1007));
}

/// Leases that run out: the task is queued again, the lost agent refused; the third time
/// the task fails.
fn stale_leases(store: &dyn Store) {
    let p = "stale_x86_64";
    let mine = strings(&[p]);
    let q = Queue::new(Duration::from_millis(100), Duration::from_millis(30));
    let id = q
        .submit(store, farm_build(0), vec![new_task("a", p, &[])], 0)
        .unwrap();
    let first = q.claim(store, "lost", &mine, 10).unwrap().unwrap();
    let old = first.lease.unwrap().id;
    assert_eq!(q.heartbeat(store, id, 0, &old, 50).unwrap().expires, 150);
    assert_eq!(q.expire(store, 120).unwrap(), 0);
    assert_eq!(q.expire(store, 151).unwrap(), 1);
    let t = store.task(id, 0).unwrap().unwrap();
    assert_eq!((t.state, t.ready, t.attempts), (TaskState::Queued, true, 1));
    let second = q.claim(store, "other", &mine, 160).unwrap().unwrap();
    assert_eq!(second.attempts, 2);
    assert!(q.heartbeat(store, id, 0, &old, 170).is_err());
    let new = second.lease.unwrap().id;
    q.report(store, id, 0, &new, report(TaskState::Built), 180)
        .unwrap();
    assert!(!store.expired(i64::MAX).unwrap().iter().any(|t| t.0 == id));

    let q = Queue::new(Duration::from_millis(10), Duration::from_millis(3));
    let id = q
        .submit(
            store,
            farm_build(0),
            vec![new_task("a", p, &[]), new_task("b", p, &[0])],
            0,
        )
        .unwrap();
    for round in 0..3 {
        let now = 1000 + round * 100;
        let t = q
            .claim(store, &format!("n{round}"), &mine, now)
            .unwrap()
            .unwrap();
        assert_eq!(t.build, id);
        q.expire(store, now + 50).unwrap();
    }
    assert_eq!(states(store, id), [TaskState::Failed, TaskState::Skipped]);
    assert!(q.claim(store, "n3", &mine, 2000).unwrap().is_none());
}

/// Agents claiming at once, each through a queue of its own (as separate servers would):
/// every task is handed out exactly once.
fn many_agents_at_once(store: &dyn Store) {
    let p = "many_x86_64";
    let mine = strings(&[p]);
    let tasks: Vec<NewTask> = (0..40)
        .map(|i| new_task(&format!("t{i}"), p, &[]))
        .collect();
    let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
    let id = q.submit(store, farm_build(0), tasks, 0).unwrap();
    let got = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for a in 0..6 {
            let (mine, got) = (&mine, &got);
            s.spawn(move || {
                let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
                while let Some(t) = q.claim(store, &format!("a{a}"), mine, 1).unwrap() {
                    assert_eq!(t.build, id);
                    got.lock().unwrap().push(t.index);
                }
            });
        }
    });
    let mut got = got.into_inner().unwrap();
    got.sort();
    assert_eq!(got, (0..40).collect::<Vec<u32>>());
}

/// A claim waits while its task's build is locked, and takes only what the holder left
/// claimable: a task cancelled meanwhile is not handed out. Other builds' tasks are not
/// held up.
fn claims_wait_for_the_builds_lock(store: &dyn Store) {
    let (p, other) = (strings(&["waits_x86_64"]), strings(&["free_x86_64"]));
    let q = Queue::new(Duration::from_secs(60), Duration::from_secs(15));
    let id = q
        .submit(store, farm_build(0), vec![new_task("a", &p[0], &[])], 0)
        .unwrap();
    let free = q
        .submit(store, farm_build(0), vec![new_task("f", &other[0], &[])], 0)
        .unwrap();
    let held = store.lock_farm_build(id).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            tx.send(store.claim(&p, lease("w", 100), 1).unwrap())
                .unwrap()
        });
        let t = store.claim(&other, lease("f", 100), 1).unwrap().unwrap();
        assert_eq!(t.id(), (free, 0));
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // As a cancel does, holding the lock.
        let mut cancelled = store.task(id, 0).unwrap().unwrap();
        cancelled.state = TaskState::Cancelled;
        store.apply(vec![Change::PutTask(cancelled)]).unwrap();
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), None);
    });
    assert_eq!(
        store.task(id, 0).unwrap().unwrap().state,
        TaskState::Cancelled
    );
}

/// A build's lock held through one handle holds for the other; other builds, and a
/// repository named alike, are not held up.
fn build_locks_across(a: &dyn Store, b: &dyn Store) {
    let held = a.lock_farm_build(41).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _g = b.lock_farm_build(41).unwrap();
            tx.send(std::time::Instant::now()).unwrap();
        });
        drop(b.lock_farm_build(42).unwrap());
        drop(b.lock_repo("41").unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        let released = std::time::Instant::now();
        drop(held);
        let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(got >= released);
    });
}

/// The lease of `t`, as its agent knows it.
fn lease_of(t: &Task) -> String {
    t.lease.as_ref().map(|l| l.id.clone()).unwrap_or_default()
}

/// Two dependencies of one task reported at the same moment through two queues: each
/// report's settling sees the other's end, so the dependent always becomes claimable and
/// the build ends.
fn racing_reports(a: &dyn Store, b: &dyn Store) {
    let mine = strings(&["reports_x86_64"]);
    let p = mine[0].as_str();
    let (qa, qb) = (
        Queue::new(Duration::from_secs(60), Duration::from_secs(15)),
        Queue::new(Duration::from_secs(60), Duration::from_secs(15)),
    );
    for round in 0..50 {
        let tasks = vec![
            new_task("a", p, &[]),
            new_task("b", p, &[]),
            new_task("c", p, &[0, 1]),
        ];
        let id = qa.submit(a, farm_build(0), tasks, 0).unwrap();
        let ta = qa.claim(a, "x", &mine, 1).unwrap().unwrap();
        let tb = qb.claim(b, "y", &mine, 1).unwrap().unwrap();
        assert_eq!((ta.id(), tb.id()), ((id, 0), (id, 1)));
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            for (q, store, t) in [(&qa, a, &ta), (&qb, b, &tb)] {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    q.report(
                        store,
                        id,
                        t.index,
                        &lease_of(t),
                        report(TaskState::Built),
                        2,
                    )
                    .unwrap();
                });
            }
        });
        let c = qb.claim(b, "z", &mine, 3).unwrap();
        assert_eq!(
            c.as_ref().map(Task::id),
            Some((id, 2)),
            "round {round}: {:?}",
            states(a, id)
        );
        let c = c.unwrap();
        qa.report(a, id, 2, &lease_of(&c), report(TaskState::Built), 4)
            .unwrap();
        assert_eq!(
            a.farm_build(id).unwrap().unwrap().finished,
            Some(4),
            "round {round}"
        );
    }
}

/// Two queues expiring the same run-out leases at once while agents, through both, claim
/// each task as soon as it is queued again: each is put back once (one attempt lost, one
/// event, one count), and no new claim is undone by the expiry that came second.
fn racing_expiries(a: &dyn Store, b: &dyn Store) {
    let mine = strings(&["expiries_x86_64"]);
    let p = mine[0].as_str();
    let lease_ms = Duration::from_millis(10);
    let (qa, qb) = (
        Queue::new(lease_ms, Duration::from_millis(3)),
        Queue::new(lease_ms, Duration::from_millis(3)),
    );
    const TASKS: usize = 8;
    for round in 0..20 {
        let t0 = 1_000_000 + round * 1000;
        let tasks = (0..TASKS)
            .map(|i| new_task(&format!("t{i}"), p, &[]))
            .collect();
        let id = qa.submit(a, farm_build(0), tasks, t0).unwrap();
        for _ in 0..TASKS {
            assert_eq!(qa.claim(a, "lost", &mine, t0).unwrap().unwrap().build, id);
        }
        // Leases of claims made now run out after it: not expired again.
        let now = t0 + 100;
        let start = Barrier::new(4);
        let (expired, ended) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let claimed: Mutex<Vec<Task>> = Mutex::default();
        std::thread::scope(|s| {
            for (q, store) in [(&qa, a), (&qb, b)] {
                let (start, expired, ended) = (&start, &expired, &ended);
                s.spawn(move || {
                    start.wait();
                    expired.fetch_add(q.expire(store, now).unwrap(), Ordering::SeqCst);
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
            for (i, (q, store)) in [(&qa, a), (&qb, b)].into_iter().enumerate() {
                let (start, ended, claimed, mine) = (&start, &ended, &claimed, &mine);
                s.spawn(move || {
                    start.wait();
                    loop {
                        let finished = ended.load(Ordering::SeqCst) == 2;
                        match q.claim(store, &format!("new{i}"), mine, now).unwrap() {
                            Some(t) => claimed.lock().unwrap().push(t),
                            None if finished => return,
                            None => {}
                        }
                    }
                });
            }
        });
        assert_eq!(expired.into_inner(), TASKS, "round {round}: expired twice");
        let claimed = claimed.into_inner().unwrap();
        assert_eq!(
            claimed.len(),
            TASKS,
            "round {round}: a new claim was undone"
        );
        for t in a.tasks(id).unwrap() {
            let ran_out = t
                .history
                .iter()
                .filter(|e| e.what.contains("ran out"))
                .count();
            let mine: Vec<&Task> = claimed.iter().filter(|c| c.id() == t.id()).collect();
            assert_eq!(
                (t.state, t.attempts, ran_out, mine.len()),
                (TaskState::Claimed, 2, 1, 1),
                "round {round}: {:?}",
                t.history
            );
            assert_eq!(t.lease, mine[0].lease);
            qa.report(
                a,
                id,
                t.index,
                &lease_of(&t),
                report(TaskState::Built),
                now + 1,
            )
            .unwrap();
        }
        assert!(a.farm_build(id).unwrap().unwrap().finished.is_some());
    }
}

/// A cancel through one queue while agents claim through both: every task ends up either
/// cancelled, never handed out, or held by the one agent it was handed to, whose
/// heartbeat is told of the cancel.
fn cancel_racing_claims(a: &dyn Store, b: &dyn Store) {
    let mine = strings(&["cancels_x86_64"]);
    let p = mine[0].as_str();
    let (qa, qb) = (
        Queue::new(Duration::from_secs(60), Duration::from_secs(15)),
        Queue::new(Duration::from_secs(60), Duration::from_secs(15)),
    );
    for round in 0..20 {
        let tasks = (0..12)
            .map(|i| new_task(&format!("t{i}"), p, &[]))
            .collect();
        let id = qa.submit(a, farm_build(0), tasks, 0).unwrap();
        let handed: Mutex<Vec<Task>> = Mutex::default();
        let start = Barrier::new(3);
        std::thread::scope(|s| {
            for (i, (q, store)) in [(&qa, a), (&qb, b)].into_iter().enumerate() {
                let (start, handed, mine) = (&start, &handed, &mine);
                s.spawn(move || {
                    start.wait();
                    while let Some(t) = q.claim(store, &format!("agent{i}"), mine, 1).unwrap() {
                        handed.lock().unwrap().push(t);
                    }
                });
            }
            start.wait();
            qb.cancel(b, id, 2).unwrap();
        });
        let handed = handed.into_inner().unwrap();
        for t in a.tasks(id).unwrap() {
            let to: Vec<&Task> = handed.iter().filter(|h| h.id() == t.id()).collect();
            match t.state {
                TaskState::Cancelled => {
                    assert!(
                        to.is_empty(),
                        "round {round}: task {} cancelled after it was handed out",
                        t.index
                    );
                }
                TaskState::Claimed => {
                    assert_eq!(
                        to.len(),
                        1,
                        "round {round}: task {} handed out {} times",
                        t.index,
                        to.len()
                    );
                    assert_eq!(t.lease, to[0].lease, "round {round}: task {}", t.index);
                    let lease = lease_of(&t);
                    assert!(qa.heartbeat(a, id, t.index, &lease, 3).unwrap().cancel);
                    assert!(qb.heartbeat(b, id, t.index, &lease, 3).unwrap().cancel);
                    qa.report(a, id, t.index, &lease, report(TaskState::Cancelled), 4)
                        .unwrap();
                }
                other => panic!("round {round}: task {} is {}", t.index, other.as_str()),
            }
        }
        assert!(
            a.farm_build(id).unwrap().unwrap().finished.is_some(),
            "round {round}"
        );
    }
}
