//! One store batch of a cold publish, on three embedded stores: `stores-bench ENGINE DIR
//! create` makes a store holding one small row (`repo create`); `stores-bench ENGINE DIR
//! batch [N]` opens it and writes N rows (default 2,000) in one durable batch, shaped as
//! packyard's package rows (a sorted key of a download-from path, a 2,300-byte value: the
//! record and its index entries), then exits without closing, as packyard does. It
//! prints the open, the batch in memory, and the part that makes it durable.

use std::time::Instant;

fn rows(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut hex = String::new();
            for _ in 0..4 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                hex.push_str(&format!("{x:016x}"));
            }
            let key = format!("pkg\0bench\0proj/proj.bench/1.0.0/el9_x86_64/bench-{i}-1.0.0-1.x86_64.rpm");
            let mut v = format!("{{\"path\":\"{key}\",\"sha256\":\"{hex}\",\"name\":\"bench-{i}\",\"version\":\"1.0.0\",\"release\":\"1\",\"arch\":\"x86_64\",\"size\":6628,\"published\":1796694394}}");
            v.push_str(&format!("<package type=\"rpm\"><name>bench-{i}</name><arch>x86_64</arch><version epoch=\"0\" ver=\"1.0.0\" rel=\"1\"/><checksum type=\"sha256\" pkgid=\"YES\">{hex}</checksum><summary>Benchmark component</summary><description>Benchmark component. Component proj.bench of proj, version 1.0.0-1.\n\nBuilt from configuration bench_R_1_0_0_1, tag v1.</description>"));
            while v.len() < 2300 {
                v.push_str(&format!("<rpm:entry name=\"bench-{i}\" flags=\"EQ\" epoch=\"0\" ver=\"1.0.0\" rel=\"1\"/>{hex}"));
            }
            v.truncate(2300);
            (key.into_bytes(), v.into_bytes())
        })
        .collect();
    out.sort();
    out
}

const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("main");

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (engine, dir, what) = (a[1].as_str(), std::path::Path::new(&a[2]), a[3].as_str());
    let n: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let t0 = Instant::now();
    let data = if what == "create" {
        vec![(b"repo\0bench".to_vec(), b"{}".to_vec())]
    } else {
        rows(n)
    };
    let tb = t0.elapsed();
    let t0 = Instant::now();
    let (open, apply) = match engine {
        "sled" => {
            let db = sled::open(dir).unwrap();
            let open = t0.elapsed();
            let mut b = sled::Batch::default();
            for (k, v) in data {
                b.insert(k, v);
            }
            db.apply_batch(b).unwrap();
            let apply = t0.elapsed() - open;
            db.flush().unwrap();
            (open, apply)
        }
        "redb" => {
            std::fs::create_dir_all(dir).unwrap();
            let db = redb::Database::create(dir.join("store.redb")).unwrap();
            let open = t0.elapsed();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(T).unwrap();
                for (k, v) in &data {
                    t.insert(k.as_slice(), v.as_slice()).unwrap();
                }
            }
            let apply = t0.elapsed() - open;
            tx.commit().unwrap();
            (open, apply)
        }
        "fjall" => {
            let db = fjall::Database::builder(dir).open().unwrap();
            let ks = db
                .keyspace("main", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            let open = t0.elapsed();
            let mut b = db.batch().durability(Some(fjall::PersistMode::SyncAll));
            for (k, v) in data {
                b.insert(&ks, k, v);
            }
            let apply = t0.elapsed() - open;
            b.commit().unwrap();
            (open, apply)
        }
        _ => panic!("engine"),
    };
    let total = t0.elapsed();
    println!(
        "{engine} {what}: rows made {:.1} ms, open {:.1} ms, apply {:.1} ms, durable {:.1} ms, total {:.1} ms",
        tb.as_secs_f64() * 1e3,
        open.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3,
        (total - open - apply).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}
