//! Waiting for a build step with a time limit, and stopping one that runs past it: the
//! shell and every process it started (`make` and its compilers would otherwise go on
//! writing into the workspace after the step has failed).
//!
//! Steps stay in packyard's process group, so Ctrl-C on a terminal still reaches them;
//! the processes to stop are found by walking `/proc` from the shell down.

use std::collections::HashMap;
use std::io;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a step has to exit after SIGTERM before everything left gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Waits for `child`, at most `limit` when given. Past the limit the child and its
/// descendants get SIGTERM, then SIGKILL after a grace period, and the answer is `None`.
pub fn wait(child: &mut Child, limit: Option<Duration>) -> io::Result<Option<ExitStatus>> {
    let Some(limit) = limit else {
        return child.wait().map(Some);
    };
    if let Some(status) = wait_until(child, Instant::now() + limit)? {
        return Ok(Some(status));
    }
    // Listed before the shell dies: its children are then re-parented and can no longer
    // be found from it.
    let mut tree = process_tree(child.id());
    signal(&tree, libc::SIGTERM);
    if wait_until(child, Instant::now() + GRACE)?.is_none() {
        tree.extend(process_tree(child.id()));
    }
    // Whatever ignored SIGTERM, or outlived the shell.
    signal(&tree, libc::SIGKILL);
    child.wait()?;
    Ok(None)
}

/// Polls `child` until it exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

fn signal(pids: &[i32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill has no memory effects; a pid that is gone gives ESRCH.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// `root` and every process below it, parents first.
fn process_tree(root: u32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parent_in_stat(&s))
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut tree = vec![root as i32];
    let mut i = 0;
    while i < tree.len() {
        if let Some(c) = children.get(&tree[i]) {
            tree.extend(c);
        }
        i += 1;
    }
    tree
}

/// The parent pid in a `/proc/<pid>/stat` line: the second field after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_is_read_past_awkward_command_names() {
        assert_eq!(parent_in_stat("123 (sh) S 45 123 123 0 -1"), Some(45));
        assert_eq!(parent_in_stat("7 (a b) c)) R 1 7 7"), Some(1));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn a_step_past_its_limit_is_stopped_with_what_it_started() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; echo never"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Give the shell time to start its two sleeps.
        std::thread::sleep(Duration::from_millis(200));
        let below = process_tree(child.id());
        assert!(below.len() >= 3, "{below:?}");
        let start = Instant::now();
        assert!(
            wait(&mut child, Some(Duration::from_millis(300)))
                .unwrap()
                .is_none()
        );
        assert!(start.elapsed() < GRACE, "SIGTERM was not enough?");
        // Each is gone, or a zombie left for a parent that is not us, once the signal
        // has been taken (a moment after kill returns).
        let stopped = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            matches!(
                stat.rfind(')').map(|i| &stat[i + 2..i + 3]),
                None | Some("Z")
            )
        };
        let until = Instant::now() + Duration::from_secs(2);
        while !below.iter().all(|&p| stopped(p)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in below {
            assert!(stopped(pid), "{pid} still runs");
        }
        // Without a limit, or within it, the exit status comes back.
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let status = wait(&mut quick, Some(Duration::from_secs(10))).unwrap();
        assert!(status.unwrap().success());
    }
}
