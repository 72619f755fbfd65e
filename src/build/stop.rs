//! Running a build step so that it can be stopped whole: the shell and every process it
//! started (`make` and its compilers would otherwise go on writing into the workspace after
//! the step has failed), also those re-parented on the way (`( cmd & )`, a daemonising
//! helper). Only what leaves on purpose, with `setsid`, escapes.
//!
//! Each step runs in a process group of its own, which a stop signals as a whole. The
//! terminal's Ctrl-C then reaches packyard's group only, so packyard passes SIGINT (and
//! SIGTERM, SIGHUP, SIGQUIT) on to every running step's group before taking it itself.
//! A step's shell is not reaped until its group has been stopped, so its process group id
//! cannot be given to another process meanwhile.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long a step has to exit after SIGTERM before everything left gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The signals that stop packyard, passed on to the steps.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Process groups of the steps running now (0: a free slot). Read by the signal handler,
/// so a fixed array of atomics: nothing there may allocate or lock.
static GROUPS: [AtomicI32; 1024] = [const { AtomicI32::new(0) }; 1024];

/// A running step: its shell, the leader of its process group.
pub struct Step {
    child: Child,
    slot: usize,
}

impl Drop for Step {
    fn drop(&mut self) {
        GROUPS[self.slot].store(0, Ordering::SeqCst);
    }
}

/// Starts `cmd` as a step, in a new process group that packyard's stopping signals are
/// passed on to.
pub fn spawn(cmd: &mut Command) -> io::Result<Step> {
    forward_signals();
    // Signals that arrive while the group is not registered yet wait until it is; the
    // step itself starts with the mask packyard had.
    let blocked = Blocked::new();
    let mask = blocked.0;
    // SAFETY: pthread_sigmask is async-signal-safe, and `mask` a copied value.
    let child = unsafe {
        cmd.process_group(0).pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            Ok(())
        })
    }
    .spawn()?;
    let pgid = child.id() as i32;
    let slot = GROUPS
        .iter()
        .position(|g| {
            g.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
        .ok_or_else(|| io::Error::other("more than 1024 build steps at once"));
    drop(blocked);
    match slot {
        Ok(slot) => Ok(Step { child, slot }),
        Err(e) => {
            let mut child = child;
            stop_group(&mut child);
            Err(e)
        }
    }
}

/// Waits for `step`, at most `limit` when given. Past the limit its whole process group
/// gets SIGTERM, then SIGKILL after a grace period, and the answer is `None`.
pub fn wait(mut step: Step, limit: Option<Duration>) -> io::Result<Option<ExitStatus>> {
    let Some(limit) = limit else {
        return step.child.wait().map(Some);
    };
    if exited_by(&step.child, Instant::now() + limit, || true)? {
        return step.child.wait().map(Some);
    }
    stop_group(&mut step.child);
    Ok(None)
}

/// SIGTERM to the group of `leader`; SIGKILL to whatever is left of it once the group has
/// no live process or the grace period is over; then the leader is reaped.
fn stop_group(leader: &mut Child) {
    let pgid = leader.id() as i32;
    signal_group(pgid, libc::SIGTERM);
    let _ = exited_by(leader, Instant::now() + GRACE, || !group_alive(pgid));
    signal_group(pgid, libc::SIGKILL);
    let _ = leader.wait();
}

fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; an empty group gives ESRCH.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Polls until `child` has exited (without reaping it) and `done()` holds, or `deadline`
/// passes; whether it got there.
fn exited_by(child: &Child, deadline: Instant, done: impl Fn() -> bool) -> io::Result<bool> {
    loop {
        if exited(child)? && done() {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Whether `child` has exited, leaving it to be reaped (`WNOWAIT`).
fn exited(child: &Child) -> io::Result<bool> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid writes into it only.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waiting on our own child, with a valid siginfo_t.
    if unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled in by waitid; 0 when nothing has exited.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Whether a process of group `pgid`, other than a zombie, still runs.
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| state_and_group(&stat).is_some_and(|(s, g)| g == pgid && s != "Z"))
}

/// The state and process group in a `/proc/<pid>/stat` line: the first and third fields
/// after the command name, which is in parentheses and may itself hold spaces and
/// parentheses.
fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    Some((state, rest.nth(1)?.parse().ok()?))
}

/// Installs, once, the handlers that pass packyard's stopping signals on to the steps'
/// groups — for each signal not ignored (`nohup` stays in force).
fn forward_signals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in FORWARDED {
            // SAFETY: asking for the current action only.
            let ignored = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
            };
            if ignored {
                continue;
            }
            // SAFETY: the action only reads atomics and calls kill, signal and raise,
            // which are async-signal-safe.
            let _ = unsafe { signal_hook_registry::register(sig, move || forward(sig)) };
        }
    });
}

/// In a signal handler: `sig` to every step's group, then to packyard itself with its
/// default action (taken once the handler returns).
fn forward(sig: libc::c_int) {
    for g in &GROUPS {
        let pgid = g.load(Ordering::SeqCst);
        if pgid > 0 {
            signal_group(pgid, sig);
        }
    }
    // SAFETY: async-signal-safe calls.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The forwarded signals blocked in this thread until dropped.
struct Blocked(libc::sigset_t);

impl Blocked {
    fn new() -> Blocked {
        // SAFETY: sigset_t values set up by sigemptyset/sigaddset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in FORWARDED {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Blocked(old)
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved in new().
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_group_are_read_past_awkward_command_names() {
        assert_eq!(
            state_and_group("123 (sh) S 45 123 123 0 -1"),
            Some(("S", 123))
        );
        assert_eq!(state_and_group("7 (a b) c)) Z 1 9 7"), Some(("Z", 9)));
        assert_eq!(state_and_group("garbage"), None);
    }

    /// Whether `pid` is gone, or a zombie left for a parent that is not us.
    fn stopped(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        matches!(state_and_group(&stat), None | Some(("Z", _)))
    }

    #[test]
    fn a_step_past_its_limit_is_stopped_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // Two sleeps below the shell, and one re-parented at once (its subshell exits).
        let script = format!(
            "(sleep 30 & echo $! >> {p}); sleep 30 & echo $! >> {p}; sleep 30; echo never",
            p = pids.display()
        );
        let step = spawn(Command::new("sh").args(["-c", &script])).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let below = loop {
            let text = std::fs::read_to_string(&pids).unwrap_or_default();
            let below: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            if below.len() == 2 || Instant::now() > until {
                break below;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(below.len(), 2, "{below:?}");
        let start = Instant::now();
        assert!(
            wait(step, Some(Duration::from_millis(300)))
                .unwrap()
                .is_none()
        );
        assert!(start.elapsed() < GRACE, "SIGTERM was not enough?");
        let until = Instant::now() + Duration::from_secs(2);
        while !below.iter().all(|&p| stopped(p)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in below {
            assert!(stopped(pid), "{pid} still runs");
        }
        // Its slot is free again.
        assert!(GROUPS.iter().all(|g| g.load(Ordering::SeqCst) == 0));
        // Without a limit, or within it, the exit status comes back.
        let quick = spawn(&mut Command::new("true")).unwrap();
        let status = wait(quick, Some(Duration::from_secs(10))).unwrap();
        assert!(status.unwrap().success());
        let code = spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(wait(code, None).unwrap().unwrap().code(), Some(3));
        // Steps start with no signal blocked (none is while they are registered).
        let mut mask = spawn(
            Command::new("sh")
                .args(["-c", "grep SigBlk /proc/$$/status"])
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut mask.child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(wait(mask, None).unwrap().unwrap().success());
        assert_eq!(
            out.split_whitespace().nth(1),
            Some("0000000000000000"),
            "{out}"
        );
    }
}
