//! What `packyard serve` writes to a file or a pipe: log lines without colour codes.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::repo::create_nightly;

/// The server's log, sent to a file, for a start, a few requests and a stop.
fn served_log(json: bool) -> String {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_nightly(d, &[]);
    let log = d.join("serve.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_packyard"));
    crate::support::ready_data(d);
    cmd.arg("--data").arg(d);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .env("PACKYARD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let Some(url) = crate::support::listening_url(&mut child, Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!(
            "no server: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    for path in ["/healthz", "/repos/nightly/missing", "/api/v1/repos"] {
        agent.get(format!("{url}{path}")).call().unwrap();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait().unwrap();
    fs::read_to_string(&log).unwrap()
}

#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    for json in [false, true] {
        let log = served_log(json);
        // Something was logged (the requests), so the check below could fail.
        assert!(log.contains("/repos/nightly/missing"), "{log}");
        assert!(!log.contains('\x1b'), "colour codes in a file:\n{log:?}");
    }
}
