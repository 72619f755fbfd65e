//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (tests run with it as the current directory, but be explicit).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// Runs the packyard binary built for this test run.
pub fn packyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_packyard"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the packyard binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether an external tool is available. Under CI (`CI` set) a missing tool fails the
/// test instead of skipping it: the test command installs what the tests need.
pub fn have_tool(cmd: &str, probe: &[&str]) -> bool {
    let ok = Command::new(cmd)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "`{cmd} {}` failed: required under CI (scripts/test installs it)",
                probe.join(" ")
            );
        }
        eprintln!(
            "SKIPPED: `{cmd} {}` failed; run scripts/test to install what tests need",
            probe.join(" ")
        );
    }
    ok
}

/// Starts the engine `cmd` (a database, an object store) for the whole test run, from a
/// thread that lives as long as the tests do: it dies with that thread (PR_SET_PDEATHSIG,
/// set after any change of user the command makes), so it never outlives the tests.
pub fn spawn_for_the_run(mut cmd: std::process::Command) {
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = cmd.spawn().expect("the engine starts");
        let _ = tx.send(());
        let _ = child.wait();
    });
    rx.recv().unwrap();
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small deterministic generator, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Runs a shell command in `dir`, failing the test with its output if it fails.
pub fn sh(cmd: &str, dir: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A component of the fixture release, built and installed into its own prefix.
#[derive(Debug, Clone)]
pub struct Built {
    pub configuration: String,
    pub module: String,
    pub prefix: PathBuf,
}

pub const FIXTURE_TREE: &str = "fixtures/trees/my-project";

/// `packyard show CONFIGURATION --json` of the fixture tree for `platform` in workspace
/// `ws`: its module, properties and resolved commands.
pub fn shown(configuration: &str, platform: &str, ws: &Path) -> serde_json::Value {
    let o = packyard(&[
        "show",
        configuration,
        "--tree",
        FIXTURE_TREE,
        "--platform",
        platform,
        "--workspace",
        ws.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Builds the latest fixture release for `platform` in `ws`, running every target of
/// every component exactly as `show` resolves them (checkout, compile, install, test).
pub fn build_release(ws: &Path, platform: &str) -> Vec<Built> {
    let out = packyard(&["demo", "--json", "--platform", platform]);
    assert!(out.status.success(), "{}", stderr(&out));
    let demo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let latest = &demo["releases"][0];
    assert_eq!(latest["project"], "my-project_R_2_0_0_1");
    let mut built = Vec::new();
    for c in latest["configurations"].as_array().unwrap() {
        let name = c["configuration"].as_str().unwrap();
        let r = shown(name, platform, ws);
        let module = r["module"].as_str().unwrap();
        let prefix = r["properties"]["prefix"]["value"].as_str().unwrap();
        for cmd in r["commands"].as_array().unwrap() {
            let target = cmd["target"].as_str().unwrap();
            let text = cmd["command"].as_str().unwrap();
            if target == "checkout" {
                std::fs::create_dir_all(ws).unwrap();
                sh(text, ws);
                assert!(
                    ws.join(module).is_dir(),
                    "{name}: checkout created no {module}/"
                );
            } else {
                sh(text, &ws.join(module));
            }
        }
        built.push(Built {
            configuration: name.to_string(),
            module: module.to_string(),
            prefix: PathBuf::from(prefix),
        });
    }
    built
}

/// A directory for a fixture kept for the whole run. Statics are never dropped, so it is
/// made in this run's directory under `target/`, which the next run removes (in the
/// system's temporary directory it would outlive every run).
fn fixture_dir() -> tempfile::TempDir {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    let run = RUN.get_or_init(|| run_dir(&root().join("target/test-fixtures")));
    tempfile::tempdir_in(run).unwrap()
}

/// The fixture release built once per platform, shared by every test of the binary.
pub fn release(platform: &'static str) -> &'static [Built] {
    static EL9: OnceLock<(tempfile::TempDir, Vec<Built>)> = OnceLock::new();
    static DEB12: OnceLock<(tempfile::TempDir, Vec<Built>)> = OnceLock::new();
    let cell = if platform == "el9_x86_64" {
        &EL9
    } else {
        &DEB12
    };
    let (_, built) = cell.get_or_init(|| {
        let ws = fixture_dir();
        let built = build_release(ws.path(), platform);
        (ws, built)
    });
    built
}

/// The fixture release packed once per platform (`SOURCE_DATE_EPOCH` fixed): the `--out`
/// tree holding every component's tarball and RPM or DEB.
pub fn packed(platform: &'static str) -> &'static Path {
    static EL9: OnceLock<tempfile::TempDir> = OnceLock::new();
    static DEB12: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cell = if platform == "el9_x86_64" {
        &EL9
    } else {
        &DEB12
    };
    cell.get_or_init(|| {
        let out = fixture_dir();
        for b in release(platform) {
            let o = Command::new(env!("CARGO_BIN_EXE_packyard"))
                .args(["pack", "--tree", FIXTURE_TREE, "--configuration"])
                .arg(&b.configuration)
                .args(["--platform", platform, "--prefix"])
                .arg(&b.prefix)
                .arg("--out")
                .arg(out.path())
                .current_dir(root())
                .env("SOURCE_DATE_EPOCH", "1767225600")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "pack {}: {}",
                b.configuration,
                stderr(&o)
            );
        }
        out
    })
    .path()
}

/// The backends this run's data directories use, from `PACKYARD_TEST_BACKENDS`:
/// `sled+file` (the default: the embedded store and files under the data directory) or
/// `postgres+s3` (each data directory a test makes names a database of its own on the
/// test PostgreSQL and a prefix of its own in a bucket of the test SeaweedFS, in its
/// `packyard.toml`). The same tests run on both; `scripts/test` runs both.
pub fn on_postgres_s3() -> bool {
    static WHICH: OnceLock<bool> = OnceLock::new();
    *WHICH.get_or_init(
        || match std::env::var("PACKYARD_TEST_BACKENDS").as_deref() {
            Err(_) | Ok("") | Ok("sled+file") => false,
            Ok("postgres+s3") => true,
            Ok(other) => {
                panic!("PACKYARD_TEST_BACKENDS={other}: expected sled+file or postgres+s3")
            }
        },
    )
}

/// Readies `data` as a data directory for this run's backends (see [`on_postgres_s3`]):
/// on postgres+s3, the first time, writes its `packyard.toml` naming a new database and a
/// new prefix. Idempotent; a data directory that already has a `packyard.toml` (a test
/// that chose its backends) is left as it is.
pub fn ready_data(data: &Path) {
    if !on_postgres_s3() || data.join("packyard.toml").exists() {
        return;
    }
    static BUCKET: OnceLock<(u16, u16)> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let &(pg, s3) = BUCKET.get_or_init(|| {
        let (Some(pg), Some(s3)) = (crate::pg::server(), crate::s3::weed()) else {
            panic!("PACKYARD_TEST_BACKENDS=postgres+s3 needs PostgreSQL and SeaweedFS (scripts/test installs them)");
        };
        crate::s3::bucket(s3, "suite");
        (pg, s3)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let store = crate::pg::database(pg, &format!("suite_{n}"));
    let blobs = format!("s3://suite/d{n}?endpoint=http://127.0.0.1:{s3}&region=us-east-1");
    std::fs::create_dir_all(data).unwrap();
    // A shared store keeps signing keys protected by a passphrase (relative: beside it).
    std::fs::write(data.join("key-passphrase"), format!("suite {n}\n")).unwrap();
    std::fs::write(
        data.join("packyard.toml"),
        format!(
            "store = \"{store}\"\nblobs = \"{blobs}\"\nkey_passphrase_file = \"key-passphrase\"\n\
             [s3]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            crate::s3::KEY,
            crate::s3::SECRET
        ),
    )
    .unwrap();
}

/// `packyard --data DATA`, from the repository root, on this run's backends.
pub fn packyard_at(data: &Path) -> Command {
    ready_data(data);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_packyard"));
    cmd.arg("--data").arg(data).current_dir(root());
    cmd
}

/// The served tree of repository `repo` of data directory `data`, as a directory: on the
/// file backend the repository's own directory; elsewhere written out now with
/// `packyard repo export` (call again after a change).
pub fn tree(data: impl AsRef<Path>, repo: &str) -> PathBuf {
    let data = data.as_ref();
    if !on_postgres_s3() {
        return data.join("repos").join(repo);
    }
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = data.join(format!("export-{repo}-{n}"));
    let o = packyard_at(data)
        .args(["repo", "export", repo])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "packyard repo export {repo}: {}",
        stderr(&o)
    );
    out
}

/// The URL a `packyard serve` child (started with stdout piped) says it listens on, or
/// `None` if it says nothing within `within`. Its stdout is read to the end meanwhile.
pub fn listening_url(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<String> {
    use std::io::BufRead;
    let out = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("packyard serve: listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    rx.recv_timeout(within).ok()
}

/// The backends data directory `data` uses (its `packyard.toml`, else embedded).
fn backends_of(data: &Path) -> packyard::backends::Backends {
    packyard::backends::Backends::choose(data, None, None, None, None).unwrap()
}

/// The keys of the objects under `prefix/` in data directory `data`'s blob backend.
pub fn blob_keys(data: &Path, prefix: &str) -> Vec<String> {
    backends_of(data)
        .open_blobs()
        .unwrap()
        .list(prefix)
        .unwrap()
}

/// Opens data directory `data`'s store (no server may hold an embedded one), for a test
/// to read or damage what it keeps.
pub fn open_store(data: &Path) -> Box<dyn packyard::store::Store> {
    backends_of(data)
        .open_store(std::time::Duration::from_secs(10))
        .unwrap()
}

/// Replaces the bytes of object `key` in data directory `data`'s blobs behind its
/// store's back (a test damaging what is stored).
pub fn put_blob(data: &Path, key: &str, bytes: &[u8]) {
    backends_of(data)
        .open_blobs()
        .unwrap()
        .put(key, packyard::blobs::Body::Bytes(bytes), None)
        .unwrap();
}

/// A config file for `--config` holding `settings` and, on this run's shared backends,
/// the data directory's backends (`--config` replaces `<data>/packyard.toml`).
pub fn config_file(data: &Path, settings: &str) -> PathBuf {
    ready_data(data);
    let backends = std::fs::read_to_string(data.join("packyard.toml")).unwrap_or_default();
    // Top-level settings go before the backends' `[s3]` table.
    let path = data.join("serve.toml");
    std::fs::write(&path, format!("{settings}{backends}")).unwrap();
    path
}

/// The text at a location packyard reported (a build's log): a file on this machine, or
/// a URL (a presigned one, where an object store holds it).
pub fn read_location(at: &str) -> String {
    if at.starts_with("http://") || at.starts_with("https://") {
        return ureq::get(at)
            .call()
            .unwrap_or_else(|e| panic!("GET {at}: {e}"))
            .body_mut()
            .read_to_string()
            .unwrap();
    }
    std::fs::read_to_string(at).unwrap_or_else(|e| panic!("{at}: {e}"))
}

/// Waits until `server` (a `packyard serve --listen ADDR` child, its stderr in `log`)
/// takes connections on `listen`; fails the test with its log if it exits or takes a
/// minute.
pub fn wait_listening(server: &mut std::process::Child, listen: &str, log: &Path) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60)
                && server.try_wait().unwrap().is_none(),
            "the server did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// This test run's own directory under `base` (`base/<pid>`, made empty), after removing
/// those of runs that are gone: engines killed with their tests leave theirs behind.
pub fn run_dir(base: &Path) -> PathBuf {
    std::fs::create_dir_all(base).unwrap();
    for e in std::fs::read_dir(base).unwrap().flatten() {
        let gone = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
            // SAFETY: signal 0 only asks whether the process exists.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } != 0);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `<name>-1.0-1.x86_64.rpm` in `dir`: one small file, for tests of what stores it.
pub fn small_rpm(dir: &Path, name: &str) -> PathBuf {
    small_rpm_version(dir, name, "1.0", &format!("{name}\n"))
}

/// [`small_rpm`] at `version`, its readme holding `text`.
pub fn small_rpm_version(dir: &Path, name: &str, version: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}-{version}-1.x86_64.rpm"));
    rpm::PackageBuilder::new(name, version, "MIT", "x86_64", "a small test package")
        .release("1")
        .with_file_contents(
            text.to_string(),
            rpm::FileOptions::new(format!("/usr/share/{name}/readme")),
        )
        .unwrap()
        .build()
        .unwrap()
        .write_file(&path)
        .unwrap();
    path
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
