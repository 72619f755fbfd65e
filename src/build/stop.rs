//! Running a build step so that it can be stopped whole: the shell and every process it
//! started (`make` and its compilers would otherwise go on writing into the workspace after
//! the step has failed), also those re-parented on the way (`( cmd & )`, a daemonising
//! helper). Only what leaves its session on purpose (`setsid`) escapes.
//!
//! Each step runs in a session and process group of its own, with no controlling terminal
//! (a tool that asks for a password on `/dev/tty` fails at once instead of waiting), which
//! a stop signals as a whole. The terminal's Ctrl-C then reaches packyard only, so
//! packyard stops the steps itself: a signal handler wakes a thread that passes the signal
//! (SIGINT, SIGTERM, SIGHUP or SIGQUIT) on to every running step, then SIGTERM, SIGKILL to
//! what is left after a grace period, and only then lets the signal take packyard. Steps
//! are started and registered under the lock that thread takes, so none slips through;
//! once packyard is stopping, no step starts and no thread returns from a step. A second
//! signal cuts the grace period short.
//!
//! A step's shell is not reaped until its group has been stopped, so its process group id
//! cannot be given to another process meanwhile.
//!
//! Steps started on a thread that entered a [`Task`] belong to it: [`Task::stop`] stops
//! those alone (a build node's task cancelled, or given to another node) and refuses new
//! ones, while the rest go on. A process that must finish its work when asked to stop (a
//! build node) calls [`drain_first`]: the first signal then only sets [`draining`], and
//! the second stops the steps as above.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long a step has to exit after SIGTERM before everything left gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The signals that stop packyard, passed on to the steps.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The steps packyard started, by process group.
struct Running {
    /// The process groups of the steps running now (or of what they left running), each
    /// with the task it belongs to (0: none).
    groups: BTreeMap<i32, u64>,
    /// Tasks stopped: no step of theirs starts any more.
    stopped: BTreeSet<u64>,
    /// Tasks whose steps are being stopped now: their shells are not reaped meanwhile.
    stopping: BTreeSet<u64>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    groups: BTreeMap::new(),
    stopped: BTreeSet::new(),
    stopping: BTreeSet::new(),
});

fn running() -> MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running step: its shell, the leader of its process group, and its task (0: none).
pub struct Step {
    child: Child,
    task: u64,
}

impl Drop for Step {
    fn drop(&mut self) {
        // What the step left running in the background stays within reach of a stop.
        let pgid = self.child.id() as i32;
        if !group_exists(pgid) {
            running().groups.remove(&pgid);
        }
    }
}

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The task the steps this thread starts belong to (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// A unit of work whose steps can be stopped apart from the others: the steps a thread
/// starts while it has entered the task.
#[derive(Debug)]
pub struct Task {
    id: u64,
}

/// The calling thread's steps belong to a task until this is dropped.
pub struct Entered {
    before: u64,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.before));
    }
}

impl Default for Task {
    fn default() -> Self {
        Task::new()
    }
}

impl Task {
    pub fn new() -> Task {
        Task {
            id: NEXT_TASK.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Until the guard is dropped, the steps this thread starts are the task's.
    pub fn enter(&self) -> Entered {
        Entered {
            before: CURRENT.with(|c| c.replace(self.id)),
        }
    }

    /// Whether [`Task::stop`] was called.
    pub fn stopped(&self) -> bool {
        running().stopped.contains(&self.id)
    }

    /// Stops the task's running steps, each with everything it started (SIGTERM, then
    /// SIGKILL after the grace period to what is left), and refuses its steps from now
    /// on; returns once they are stopped. Steps of other tasks go on.
    pub fn stop(&self) {
        let groups: Vec<i32> = {
            let mut r = running();
            r.stopped.insert(self.id);
            r.stopping.insert(self.id);
            r.groups
                .iter()
                .filter(|&(_, &t)| t == self.id)
                .map(|(&g, _)| g)
                .collect()
        };
        for &g in &groups {
            terminate(g, libc::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && {
            let live = live_groups();
            groups.iter().any(|g| live.contains(g))
        } {
            std::thread::sleep(Duration::from_millis(20));
        }
        for &g in &groups {
            signal_group(g, libc::SIGKILL);
        }
        running().stopping.remove(&self.id);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let mut r = running();
        r.stopped.remove(&self.id);
        r.stopping.remove(&self.id);
    }
}

/// Once packyard is stopping, the calling thread waits here for the end (the stopping
/// thread ends the process): a build that returned first would exit with an ordinary
/// failure before its steps were all stopped.
pub fn park_if_stopping() {
    while STOPPING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Starts `cmd` as a step, in a session of its own that packyard's stopping signals are
/// passed on to.
pub fn spawn(cmd: &mut Command) -> io::Result<Step> {
    if let Some(why) = forward_signals() {
        return Err(io::Error::other(format!(
            "cannot pass stopping signals on to build steps: {why}"
        )));
    }
    let task = CURRENT.with(Cell::get);
    let mut running = running();
    // Checked under the lock the stopping thread takes (after setting the flag) before it
    // looks at the steps: a step started here is one it sees.
    if STOPPING.load(Ordering::SeqCst) {
        drop(running);
        park_if_stopping();
        return Err(io::Error::other("packyard is stopping"));
    }
    // The same for a task being stopped.
    if running.stopped.contains(&task) {
        return Err(io::Error::other("its task was stopped"));
    }
    // Groups that ended since: their ids may be reused.
    running.groups.retain(|&g, _| group_exists(g));
    // SAFETY: setsid is async-signal-safe.
    let child = unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
    .spawn()?;
    running.groups.insert(child.id() as i32, task);
    Ok(Step { child, task })
}

/// Waits for `step`, at most `limit` when given. Past the limit its whole process group
/// gets SIGTERM, then SIGKILL after a grace period, and the answer is `None`.
pub fn wait(mut step: Step, limit: Option<Duration>) -> io::Result<Option<ExitStatus>> {
    let exited = match limit {
        None => wait_exited(&step.child).map(|()| true)?,
        Some(limit) => exited_by(&step.child, Instant::now() + limit, || true)?,
    };
    // Not reaped while packyard (or its task) is stopping its steps: the group id stays
    // taken.
    park_if_stopping();
    while running().stopping.contains(&step.task) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if exited {
        return step.child.wait().map(Some);
    }
    stop_group(&mut step.child);
    Ok(None)
}

/// SIGTERM to the group of `leader`; SIGKILL to whatever is left of it once the group has
/// no live process or the grace period is over; then the leader is reaped.
fn stop_group(leader: &mut Child) {
    let pgid = leader.id() as i32;
    terminate(pgid, libc::SIGTERM);
    let _ = exited_by(leader, Instant::now() + GRACE, || {
        !live_groups().contains(&pgid)
    });
    signal_group(pgid, libc::SIGKILL);
    let _ = leader.wait();
}

/// `sig` to a group, and SIGCONT, so that a stopped process acts on it.
fn terminate(pgid: i32, sig: libc::c_int) {
    signal_group(pgid, sig);
    signal_group(pgid, libc::SIGCONT);
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
    Ok(waitid(child, libc::WNOHANG)? != 0)
}

/// Waits until `child` has exited, leaving it to be reaped.
fn wait_exited(child: &Child) -> io::Result<()> {
    loop {
        match waitid(child, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|_| ()),
        }
    }
}

/// `waitid` for `child` exiting, not reaping it, with `flags` added; the pid it reports
/// (0: none yet).
fn waitid(child: &Child, flags: libc::c_int) -> io::Result<libc::pid_t> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid writes into it only.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | flags;
    // SAFETY: waiting on our own child, with a valid siginfo_t.
    if unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled in by waitid; 0 when nothing has exited.
    Ok(unsafe { info.si_pid() })
}

/// Whether process group `pgid` has any member, zombies too: one system call, for the
/// bookkeeping of every step. Linux gives no new process an id that is still a group's,
/// so a group listed while it has members is still the step's.
fn group_exists(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    let sent = unsafe { libc::kill(-pgid, 0) };
    sent == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The process groups that have a process other than a zombie: one walk of `/proc`, for
/// waiting out a stop (a zombie there needs no more signals).
fn live_groups() -> BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| match state_and_group(&stat) {
            Some((s, g)) if s != "Z" => Some(g),
            _ => None,
        })
        .collect()
}

/// The state and process group in a `/proc/<pid>/stat` line: the first and third fields
/// after the command name, which is in parentheses and may itself hold spaces and
/// parentheses.
fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    Some((state, rest.nth(1)?.parse().ok()?))
}

/// Set by the stopping thread once it has taken a signal: from then on no step starts and
/// no thread returns from one.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Set by the first signal after [`drain_first`].
static DRAINING: AtomicBool = AtomicBool::new(false);
/// What runs before a second signal takes packyard, after [`drain_first`].
static LAST: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();
/// How long [`drain_first`]'s last words may take.
const LAST_WORDS: Duration = Duration::from_secs(10);

/// From now on the first stopping signal only sets [`draining`] (the caller finishes
/// what runs and ends); a second one stops every step as [`spawn`] describes, running
/// `last` meanwhile (at most ten seconds) before the signal takes packyard. Installs the
/// signal handlers now; may be called once.
pub fn drain_first(last: Box<dyn Fn() + Send + Sync>) -> Result<(), String> {
    LAST.set(last)
        .map_err(|_| "the stopping signals are drained already".to_string())?;
    match forward_signals() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// A first stopping signal came after [`drain_first`]: finish what runs, start nothing.
pub fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}
/// The write end of the pipe that wakes the stopping thread.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Installs, once, the handlers of packyard's stopping signals — each that is not ignored
/// (`nohup` stays in force) — and the thread that stops the steps when one comes. Why it
/// could not, if it could not.
fn forward_signals() -> Option<String> {
    static SET_UP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SET_UP.get_or_init(set_up).clone()
}

fn set_up() -> Option<String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Some(io::Error::last_os_error().to_string());
    }
    if let Err(e) = std::thread::Builder::new()
        .name("packyard-stop".into())
        .spawn(move || stopping_thread(fds[0]))
    {
        // SAFETY: closing the descriptors just made.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return Some(e.to_string());
    }
    WAKE.store(fds[1], Ordering::SeqCst);
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
        // SAFETY: the action only reads atomics and calls write, signal and raise, which
        // are async-signal-safe.
        if let Err(e) = unsafe { signal_hook_registry::register(sig, move || on_signal(sig)) } {
            return Some(e.to_string());
        }
    }
    None
}

/// In a signal handler: wakes the stopping thread with `sig` (a second signal cuts its
/// grace period short).
fn on_signal(sig: libc::c_int) {
    let byte = sig as u8;
    // SAFETY: async-signal-safe calls on a descriptor that stays open.
    unsafe {
        if libc::write(WAKE.load(Ordering::SeqCst), (&byte as *const u8).cast(), 1) != 1 {
            die(sig);
        }
    }
}

/// `sig` with its default action, taken at once (the caller does not block it).
fn die(sig: libc::c_int) {
    // SAFETY: async-signal-safe calls.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Waits for a signal; then stops every running step's group (the signal itself, then
/// SIGTERM, SIGKILL after the grace period) and lets the signal take packyard.
fn stopping_thread(wake: libc::c_int) {
    let read = || {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local.
        while unsafe { libc::read(wake, (&mut byte as *mut u8).cast(), 1) } != 1 {}
        libc::c_int::from(byte)
    };
    let mut sig = read();
    if LAST.get().is_some() {
        DRAINING.store(true, Ordering::SeqCst);
        sig = read();
    }
    STOPPING.store(true, Ordering::SeqCst);
    let groups: Vec<i32> = running().groups.keys().copied().collect();
    for &g in &groups {
        signal_group(g, sig);
        // Background jobs of a non-interactive shell ignore SIGINT and SIGQUIT.
        terminate(g, libc::SIGTERM);
    }
    let last = LAST.get().map(|last| {
        let (done, said) = std::sync::mpsc::channel::<()>();
        let _ = std::thread::Builder::new()
            .name("packyard-last".into())
            .spawn(move || {
                last();
                let _ = done.send(());
            });
        said
    });
    // The grace period, unless another signal comes.
    let deadline = Instant::now() + GRACE;
    let mut again = libc::pollfd {
        fd: wake,
        events: libc::POLLIN,
        revents: 0,
    };
    while Instant::now() < deadline && {
        let live = live_groups();
        groups.iter().any(|g| live.contains(g))
    } {
        // SAFETY: polling one descriptor we own.
        if unsafe { libc::poll(&mut again, 1, 20) } > 0 {
            break;
        }
    }
    for &g in &groups {
        signal_group(g, libc::SIGKILL);
    }
    if let Some(said) = last {
        let _ = said.recv_timeout(LAST_WORDS);
    }
    die(sig);
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

    #[test]
    fn a_group_exists_while_it_has_a_member() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        assert!(group_exists(pgid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!group_exists(pgid));
    }

    #[test]
    fn stopping_a_task_stops_its_steps_and_no_other() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Task::new(), Task::new());
        let run = |task: &Task, name: &str| {
            let _in = task.enter();
            // A background sleep too: the whole group goes.
            let script = format!(
                "sleep 30 & echo $! > {p}; wait",
                p = dir.path().join(name).display()
            );
            let step = spawn(Command::new("sh").args(["-c", &script])).unwrap();
            wait(step, None).unwrap()
        };
        std::thread::scope(|s| {
            let ra = s.spawn(|| run(&a, "a"));
            let rb = s.spawn(|| run(&b, "b"));
            let pid = |name: &str| -> i32 {
                let until = Instant::now() + Duration::from_secs(5);
                loop {
                    let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
                    if let Ok(p) = text.trim().parse() {
                        return p;
                    }
                    assert!(Instant::now() < until, "{name} did not start");
                    std::thread::sleep(Duration::from_millis(10));
                }
            };
            let (pa, pb) = (pid("a"), pid("b"));
            let start = Instant::now();
            a.stop();
            assert!(start.elapsed() < GRACE, "SIGTERM was not enough?");
            let status = ra.join().unwrap().unwrap();
            assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
            assert!(stopped(pa), "a's sleep still runs");
            assert!(a.stopped() && !b.stopped());
            // b's step runs on; a starts no new step.
            assert!(!stopped(pb), "b's sleep was stopped too");
            {
                let _in = a.enter();
                let refused = spawn(&mut Command::new("true")).err().unwrap();
                assert!(
                    refused.to_string().contains("task was stopped"),
                    "{refused}"
                );
            }
            // Outside the task, steps start as ever.
            let free = spawn(&mut Command::new("true")).unwrap();
            assert!(wait(free, None).unwrap().unwrap().success());
            b.stop();
            assert!(rb.join().unwrap().unwrap().signal().is_some());
            assert!(stopped(pb));
        });
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
        // Without a limit, or within it, the exit status comes back.
        let quick = spawn(&mut Command::new("true")).unwrap();
        let status = wait(quick, Some(Duration::from_secs(10))).unwrap();
        assert!(status.unwrap().success());
        let code = spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(wait(code, None).unwrap().unwrap().code(), Some(3));
        // Steps lead a session of their own, with no controlling terminal, and start with
        // no signal blocked.
        let mut own = spawn(
            Command::new("sh")
                // The mask read by the step's own process (`exec`): read from another
                // process it could catch sh blocking everything around a fork.
                .args([
                    "-c",
                    "cat /proc/$$/stat; exec grep SigBlk /proc/self/status",
                ])
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut own.child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(wait(own, None).unwrap().unwrap().success());
        let (stat, mask) = out.split_once('\n').unwrap();
        // pid, then past the command name: state, ppid, pgrp, session, tty_nr.
        let pid = stat.split_whitespace().next().unwrap();
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        assert_eq!((rest[2], rest[3], rest[4]), (pid, pid, "0"), "{out}");
        assert_eq!(
            mask.split_whitespace().nth(1),
            Some("0000000000000000"),
            "{out}"
        );
    }
}
