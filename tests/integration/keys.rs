//! Signing keys in a store others read (PostgreSQL): kept with their secret parts
//! protected by the passphrase every command and server is given
//! (`--key-passphrase-file`, `PACKYARD_KEY_PASSPHRASE_FILE`), unlocked in memory to sign.
//! gpg reads the stored key with that passphrase and cannot use it without; what it signs
//! verifies with `gpgv` and `rpm -K`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{have_tool, stderr, stdout};

/// A gpg home of its own, its agent stopped when dropped.
pub(crate) struct Gpg {
    home: PathBuf,
}

impl Gpg {
    pub(crate) fn new(home: PathBuf) -> Gpg {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&home).unwrap();
        // gpg warns about a home others can read.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    /// gpg in batch mode, the passphrase (if any) read from `passphrase`, never asked.
    pub(crate) fn run(&self, passphrase: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--pinentry-mode", "loopback"]);
        match passphrase {
            Some(p) => cmd.arg("--passphrase-file").arg(p),
            None => cmd.args(["--passphrase", ""]),
        };
        cmd.args(args).output().unwrap()
    }

    /// Whether the secret key it imported signs `file` with `passphrase` (none: an
    /// empty one), making `file.sig`.
    pub(crate) fn signs(&self, passphrase: Option<&Path>, file: &Path) -> bool {
        let sig = file.with_extension("sig");
        let _ = std::fs::remove_file(&sig);
        let o = self.run(
            passphrase,
            &[
                "--output",
                sig.to_str().unwrap(),
                "--detach-sign",
                file.to_str().unwrap(),
            ],
        );
        o.status.success()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// Whether gpg can sign with the armored secret key `armored` only when given the
/// passphrase in `passphrase`: imported without it, it does not sign; with it, it does,
/// and the signature verifies with `ring` (the repository's public key). `work` is
/// scratch space.
pub(crate) fn gpg_needs_the_passphrase(
    work: &Path,
    armored: &str,
    passphrase: &Path,
    ring: &Path,
) -> bool {
    std::fs::create_dir_all(work).unwrap();
    let key = work.join("secret.asc");
    std::fs::write(&key, armored).unwrap();
    let data = work.join("data.txt");
    std::fs::write(&data, "signed by the stored key\n").unwrap();
    // Imported without the passphrase: gpg keeps it protected and cannot sign with it.
    let bare = Gpg::new(work.join("bare"));
    let o = bare.run(None, &["--import", key.to_str().unwrap()]);
    assert!(o.status.success(), "gpg --import: {}", stderr(&o));
    if bare.signs(None, &data) {
        return false;
    }
    // With it: imported, it signs, and the signature is the repository key's.
    let home = Gpg::new(work.join("with"));
    let o = home.run(Some(passphrase), &["--import", key.to_str().unwrap()]);
    assert!(o.status.success(), "gpg --import: {}", stderr(&o));
    assert!(
        home.signs(Some(passphrase), &data),
        "gpg cannot sign with the passphrase"
    );
    let v = Command::new("gpgv")
        .arg("--keyring")
        .arg(ring)
        .arg(data.with_extension("sig"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(v.status.success(), "gpgv: {}", stderr(&v));
    true
}

/// `packyard --data DATA --store URL ARGS`, the passphrase file (if any) given as `pass` says.
fn py(data: &Path, url: &str, pass: Pass, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_packyard"));
    cmd.arg("--data")
        .arg(data)
        .args(["--store", url])
        .env_remove("PACKYARD_KEY_PASSPHRASE_FILE");
    match pass {
        Pass::None => {}
        Pass::Flag(p) => drop(cmd.arg("--key-passphrase-file").arg(p)),
        Pass::Env(p) => drop(cmd.env("PACKYARD_KEY_PASSPHRASE_FILE", p)),
    }
    cmd.args(args).output().unwrap()
}

#[derive(Clone, Copy)]
enum Pass<'a> {
    None,
    Flag(&'a Path),
    Env(&'a Path),
}

fn ok(o: Output, what: &str) -> Value {
    assert!(o.status.success(), "{what}: {}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// The armored secret key PostgreSQL keeps for `repo`.
fn stored_key(url: &str, repo: &str) -> Option<String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_opt("SELECT armored FROM secret_keys WHERE repo = $1", &[&repo])
        .unwrap()
        .map(|r| r.get(0))
}

#[test]
fn keys_in_postgres_are_protected_and_sign_only_with_the_passphrase() {
    let Some(port) = crate::pg::server() else {
        return;
    };
    let tools = have_tool("gpg", &["--version"])
        && have_tool("gpgv", &["--version"])
        && have_tool("rpm", &["--version"]);
    let url = crate::pg::database(port, "keys");
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let pass = t.path().join("passphrase");
    std::fs::write(&pass, "a long passphrase for the repository keys\n").unwrap();
    let wrong = t.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    ok(
        py(
            &d,
            &url,
            Pass::None,
            &["repo", "create", "nightly", "--kind", "volatile"],
        ),
        "repo create",
    );

    // No passphrase: the database takes no unprotected key.
    let o = py(
        &d,
        &url,
        Pass::None,
        &["key", "generate", "--repo", "nightly"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    for want in [
        "nightly",
        "unprotected",
        "--key-passphrase-file",
        "PACKYARD_KEY_PASSPHRASE_FILE",
    ] {
        assert!(err.contains(want), "no {want:?} in: {err}");
    }
    assert_eq!(stored_key(&url, "nightly"), None);

    // With one (the flag): stored protected.
    let info = ok(
        py(
            &d,
            &url,
            Pass::Flag(&pass),
            &["--json", "key", "generate", "--repo", "nightly"],
        ),
        "key generate",
    );
    let fpr = info["fingerprint"].as_str().unwrap().to_string();
    let armored = stored_key(&url, "nightly").expect("a key row");
    assert!(armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));

    // A publish (the passphrase from the environment) signs the RPM and the index.
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let file = crate::pg::rpm(&input, "keytool");
    let report = ok(
        py(
            &d,
            &url,
            Pass::Env(&pass),
            &[
                "--json",
                "publish",
                "--repo",
                "nightly",
                "--sign",
                "--platform",
                "el9_x86_64",
                file.to_str().unwrap(),
            ],
        ),
        "publish",
    );
    let repo = d.join("repos/nightly");
    let published = repo.join(report["files"][0]["path"].as_str().unwrap());
    let repodata = repo.join("yum/el9_x86_64/repodata");
    let key_file = repo.join("key.asc");
    let ring = t.path().join("ring.gpg");
    if tools {
        crate::repo::keyring(&key_file, &ring);
        let v = Command::new("gpgv")
            .arg("--keyring")
            .arg(&ring)
            .arg(repodata.join("repomd.xml.asc"))
            .arg(repodata.join("repomd.xml"))
            .output()
            .unwrap();
        assert!(v.status.success(), "gpgv repomd.xml: {}", stderr(&v));
        crate::repo::assert_rpm_signed(&t.path().join("rpmdb"), &key_file, &published);
    }

    // Without the passphrase, or with the wrong one, a publish fails before writing,
    // naming the repository's key and what to pass.
    let repomd = std::fs::read(repodata.join("repomd.xml")).unwrap();
    let more = crate::pg::rpm(&input, "keymore");
    let publish = |pass: Pass| {
        py(
            &d,
            &url,
            pass,
            &[
                "publish",
                "--repo",
                "nightly",
                "--platform",
                "el9_x86_64",
                more.to_str().unwrap(),
            ],
        )
    };
    let o = publish(Pass::None);
    assert!(!o.status.success());
    let err = stderr(&o);
    for want in [
        "signing key of repository nightly",
        "--key-passphrase-file",
        "PACKYARD_KEY_PASSPHRASE_FILE",
    ] {
        assert!(err.contains(want), "no {want:?} in: {err}");
    }
    let o = publish(Pass::Flag(&wrong));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("does not open the signing key of repository nightly")
            && err.contains("wrong"),
        "{err}"
    );
    assert_eq!(std::fs::read(repodata.join("repomd.xml")).unwrap(), repomd);
    assert_eq!(
        stored_key(&url, "nightly").as_deref(),
        Some(armored.as_str())
    );

    if tools {
        // gpg: the stored key is protected by the passphrase, and it is the key that
        // signs the repository.
        assert!(
            gpg_needs_the_passphrase(&t.path().join("gpg"), &armored, &pass, &ring),
            "gpg signs with the stored key without the passphrase"
        );
        // A key gpg exports (protected, by gpg, with the same passphrase) imports into
        // another repository; another passphrase does not open it, and says which key.
        ok(
            py(
                &d,
                &url,
                Pass::None,
                &["repo", "create", "other", "--kind", "volatile"],
            ),
            "repo create other",
        );
        let home = Gpg::new(t.path().join("gpg/export"));
        let o = home.run(
            Some(&pass),
            &[
                "--import",
                t.path().join("gpg/secret.asc").to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = home.run(Some(&pass), &["--armor", "--export-secret-keys", &fpr]);
        assert!(o.status.success(), "{}", stderr(&o));
        let exported = t.path().join("exported.asc");
        std::fs::write(&exported, &o.stdout).unwrap();
        let import = [
            "key",
            "import",
            "--repo",
            "other",
            exported.to_str().unwrap(),
        ];
        let o = py(&d, &url, Pass::Flag(&wrong), &import);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(&fpr) && err.contains("does not open"), "{err}");
        let o = py(&d, &url, Pass::None, &import);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--key-passphrase-file"),
            "{}",
            stderr(&o)
        );
        let mut with_json = vec!["--json"];
        with_json.extend(import);
        let imported = ok(py(&d, &url, Pass::Flag(&pass), &with_json), "key import");
        assert_eq!(imported["fingerprint"], fpr.as_str());
        let other = stored_key(&url, "other").expect("a key row");
        assert!(gpg_needs_the_passphrase(
            &t.path().join("gpg2"),
            &other,
            &pass,
            &ring
        ));
    }

    // A server without the passphrase says so when it starts, and an upload into the
    // repository fails with the same error.
    let token = ok(
        py(
            &d,
            &url,
            Pass::None,
            &["--json", "token", "create", "--role", "builder"],
        ),
        "token create",
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let log = t.path().join("serve.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_packyard"))
        .arg("--data")
        .arg(&d)
        .args(["--store", &url, "serve", "--listen", &listen])
        .env_remove("PACKYARD_KEY_PASSPHRASE_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    crate::support::wait_listening(&mut server, &listen, &log);
    let mut r = ureq::put(format!(
        "http://{listen}/api/v1/repos/nightly/files/keymore-1.0-1.x86_64.rpm?platform=el9_x86_64"
    ))
    .header("Authorization", format!("Bearer {token}"))
    .config()
    .http_status_as_error(false)
    .build()
    .send(&std::fs::read(&more).unwrap()[..])
    .unwrap();
    let status = r.status().as_u16();
    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    assert_eq!(
        (status, &body["code"]),
        (500, &Value::from("key_passphrase")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("signing key of repository nightly"),
        "{body}"
    );
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("--key-passphrase-file"),
        "{body}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("cannot sign") && logged.contains("repository nightly"),
        "{logged}"
    );
}
