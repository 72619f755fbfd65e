//! Build steps in a bubblewrap sandbox (`--isolate bwrap`): the host's file system
//! read-only; writable only the component's checkout, its `_output/<module>/` and a
//! private `/tmp`; a PID namespace of its own; no network, but for checkout. Here are
//! bwrap's arguments (worked out without I/O), the check made once before a build that
//! bwrap can make such a sandbox at all, and the move of a sandboxed checkout out of the
//! scratch workspace it ran in.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// How a build runs its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// `sh -c` on the host, as it is.
    #[default]
    None,
    /// `sh -c` in a bubblewrap sandbox.
    Bwrap,
}

/// Which kind of step a sandbox is made for: what it may write and where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `checkout`: runs in the workspace, must create `<module>/`, keeps the network.
    Checkout,
    /// Every other step (the targets, `clean`): runs in the checkout, no network.
    Target,
}

/// The paths of one component that its sandboxes are made of.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox<'a> {
    pub workspace: &'a Path,
    /// `<workspace>/<module>`.
    pub checkout: &'a Path,
    /// `<workspace>/_output/<module>`.
    pub output: &'a Path,
    /// The module tree: steps read from it (or beside it), also when it is below `/tmp`.
    pub tree: &'a Path,
}

impl Sandbox<'_> {
    /// Where a sandboxed checkout runs: an empty directory the sandbox shows as the
    /// workspace, inside the component's own output.
    pub fn scratch(&self) -> PathBuf {
        self.output.join("checkout")
    }

    /// The directory a step of kind `step` runs in.
    pub fn dir(&self, step: Step) -> &Path {
        match step {
            Step::Checkout => self.workspace,
            Step::Target => self.checkout,
        }
    }
}

/// The program and arguments that run `sh` for a step (the caller adds `-c CMD`):
/// `sh` itself, or bwrap around it. The one place where a step's process is chosen.
pub fn shell(isolation: Isolation, sandbox: &Sandbox, step: Step) -> Command {
    match isolation {
        Isolation::None => Command::new("sh"),
        Isolation::Bwrap => {
            let mut c = Command::new("bwrap");
            c.args(bwrap_args(sandbox, step)).arg("sh");
            c
        }
    }
}

/// `sh` for a target in a build root (`--root`): bwrap on the root's read-only layer
/// (see `build::root`) instead of the host, as `nobody`, with the same binds, no network
/// and no capabilities as `--isolate bwrap`.
pub fn rooted(layer: &super::root::Layer, s: &Sandbox) -> Command {
    let mut c = layer.target();
    let mut a = Args(on(layer.merged()));
    a.mount("--ro-bind", s.tree, s.tree);
    target_binds(&mut a, s);
    a.0.extend(["--unshare-user", "--uid", "65534", "--gid", "65534"].map(OsString::from));
    a.0.push("--chdir".into());
    a.0.push(s.dir(Step::Target).into());
    a.0.extend(confinement(Step::Target));
    a.0.push("--".into());
    c.args(a.0).arg("sh");
    c
}

/// bwrap's arguments for a step of kind `step`, up to and including `--`. Mounts are
/// made in order, a later one over an earlier one.
pub fn bwrap_args(s: &Sandbox, step: Step) -> Vec<OsString> {
    let mut a = Args(base());
    // The private /tmp hides the host's: a tree below /tmp is shown again, read-only.
    a.mount("--ro-bind", s.tree, s.tree);
    match step {
        Step::Checkout => {
            // The workspace is seen as an empty scratch directory, so the command creates
            // `<module>` as it would in the workspace (`cp -R SRC <module>` copies SRC
            // itself: had `<module>` been made beforehand to be bound writable, SRC would
            // land inside it). The real workspace stays out of reach; packyard moves
            // `<module>` into it afterwards.
            a.mount("--bind", &s.scratch(), s.workspace);
            a.mount("--bind", s.output, s.output);
        }
        Step::Target => target_binds(&mut a, s),
    }
    a.0.push("--chdir".into());
    a.0.push(s.dir(step).into());
    a.0.extend(confinement(step));
    a.0.push("--".into());
    a.0
}

/// What a target sees of the workspace: the workspace read-only (again: it may be below
/// /tmp), its checkout and `_output/<module>/` writable.
fn target_binds(a: &mut Args, s: &Sandbox) {
    a.mount("--ro-bind", s.workspace, s.workspace);
    a.mount("--bind", s.checkout, s.checkout);
    a.mount("--bind", s.output, s.output);
}

/// The file system every sandbox starts from: the host read-only, its own `/dev`,
/// `/proc` (of its PID namespace) and an empty, writable `/tmp`.
fn base() -> Vec<OsString> {
    on(Path::new("/"))
}

/// [`base`] with `root` as `/`.
fn on(root: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--ro-bind".into(), root.into(), "/".into()];
    v.extend(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"].map(OsString::from));
    v
}

/// Namespaces, capabilities and lifetime. No `--new-session`: the sandbox stays in the
/// step's session and process group, which a timeout or a stop signals as a whole (see
/// `build::stop`). `--die-with-parent`: what runs inside goes when bwrap goes, also when
/// a stop kills it. `--cap-drop ALL`: run by root, bwrap would keep root's capabilities,
/// with which a step could mount `/` writable again.
fn confinement(step: Step) -> Vec<OsString> {
    let mut v: Vec<OsString> = ["--unshare-pid", "--die-with-parent", "--cap-drop", "ALL"]
        .map(OsString::from)
        .to_vec();
    if step == Step::Target {
        v.push("--unshare-net".into());
    }
    v
}

struct Args(Vec<OsString>);

impl Args {
    /// `flag SRC DEST`.
    fn mount(&mut self, flag: &str, src: &Path, dest: &Path) {
        self.0.extend([flag.into(), src.into(), dest.into()]);
    }
}

/// For the log: what a target in a build root ran in.
pub fn describe_root(s: &Sandbox, platform: &str) -> String {
    format!(
        "in the {platform} root, read-only: writable only {}, {} and a private /tmp; as \
         nobody; own PID namespace; no network",
        s.checkout.display(),
        s.output.display()
    )
}

/// For the log: what a step of kind `step` ran in, when sandboxed.
pub fn describe(s: &Sandbox, step: Step) -> String {
    match step {
        Step::Checkout => format!(
            "sandboxed (--isolate bwrap): the host read-only; writable only {} (made in an \
             empty scratch workspace, then moved in), {} and a private /tmp; own PID \
             namespace; network kept",
            s.checkout.display(),
            s.output.display()
        ),
        Step::Target => format!(
            "sandboxed (--isolate bwrap): the host read-only; writable only {}, {} and a \
             private /tmp; own PID namespace; no network",
            s.checkout.display(),
            s.output.display()
        ),
    }
}

/// Why bwrap cannot sandbox this build's steps.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    #[error("--isolate bwrap needs bwrap (bubblewrap), which is not installed here")]
    Missing,
    #[error("--isolate bwrap: cannot run bwrap: {0}")]
    Run(io::Error),
    #[error("--isolate bwrap: bwrap cannot make a sandbox here ({status}): {message}")]
    Refused { status: String, message: String },
}

impl IsolateError {
    pub fn hint(&self) -> String {
        let or_none = "or build with --isolate none";
        match self {
            IsolateError::Missing => format!(
                "install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`), {or_none}"
            ),
            IsolateError::Run(_) => {
                format!("check the bwrap on PATH (install bubblewrap), {or_none}")
            }
            IsolateError::Refused { .. } => format!(
                "bwrap creates user, mount, PID and network namespaces: run as root, or allow \
                 unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces; a container must be allowed to create them), {or_none}"
            ),
        }
    }
}

/// Whether steps can run as `isolation` says: for bwrap, one empty sandbox like a
/// target's is made and run. Once, before a build, so that a machine without bwrap or
/// namespaces fails the build at once rather than every component.
pub fn check(isolation: Isolation) -> Result<(), IsolateError> {
    if isolation == Isolation::None {
        return Ok(());
    }
    let mut args = base();
    args.extend(confinement(Step::Target));
    args.push("--".into());
    let out = Command::new("bwrap")
        .args(args)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => IsolateError::Missing,
            _ => IsolateError::Run(e),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(IsolateError::Refused {
        status: match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        },
        message: if message.is_empty() {
            "no message".into()
        } else {
            message
        },
    })
}

/// Makes the scratch workspace of a sandboxed checkout, empty.
pub fn make_scratch(s: &Sandbox) -> io::Result<()> {
    let scratch = s.scratch();
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    fs::create_dir_all(&scratch)
}

/// After a sandboxed checkout that succeeded: the `<module>/` it created in the scratch
/// workspace moves into the workspace. Anything else written there is refused: a
/// checkout writes only its `<module>/` (what the sandbox showed as `_output/<module>`
/// was the real one). The caller removes the scratch directory either way.
pub fn settle_checkout(s: &Sandbox) -> Result<(), String> {
    let scratch = s.scratch();
    let module = s.checkout.file_name().unwrap_or_default();
    // Where bwrap made the mount point of `_output/<module>` inside the scratch workspace.
    let chain: Vec<&OsStr> = match s.output.strip_prefix(s.workspace) {
        Ok(rel) => rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect(),
        Err(_) => vec![],
    };
    let strays =
        strays(&scratch, module, &chain).map_err(|e| format!("{}: {e}", scratch.display()))?;
    if !strays.is_empty() {
        let list: Vec<String> = strays
            .iter()
            .map(|p| s.workspace.join(p).display().to_string())
            .collect();
        return Err(format!(
            "the command wrote outside {}: {} (under --isolate bwrap a checkout may write only \
             {}/, {} and /tmp; what it wrote elsewhere in the workspace was dropped)",
            s.checkout.display(),
            list.join(", "),
            s.checkout.display(),
            s.output.display()
        ));
    }
    let made = scratch.join(module);
    if made.is_dir() {
        fs::rename(&made, s.checkout)
            .map_err(|e| format!("moving {} to {}: {e}", made.display(), s.checkout.display()))?;
    }
    Ok(())
}

/// The entries below `scratch` (relative to it) other than `module` and the mount-point
/// directories along `chain` (its last one was covered by the real directory).
fn strays(scratch: &Path, module: &OsStr, chain: &[&OsStr]) -> io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut dir = PathBuf::new();
    // One directory a level, down the chain; the top level also holds `module`.
    for depth in 0..chain.len().max(1) {
        let keep = chain.get(depth).copied();
        for e in fs::read_dir(scratch.join(&dir))? {
            let name = e?.file_name();
            if Some(name.as_os_str()) != keep && !(depth == 0 && name == module) {
                out.push(dir.join(name));
            }
        }
        match keep {
            Some(k) if scratch.join(&dir).join(k).is_dir() => dir.push(k),
            _ => break,
        }
    }
    out.sort();
    Ok(out)
}

/// What the sandbox had to do with a failed step, from the step's output: a write it
/// refused, else a path below `/tmp` that was not found (the host's `/tmp` is not seen).
/// The line that says so, with what the sandbox allows.
pub fn explain(s: &Sandbox, output: &str) -> Option<String> {
    let find = |wanted: &dyn Fn(&str) -> bool| output.lines().find(|l| wanted(l)).map(cut);
    if let Some(line) = find(&|l| l.contains("Read-only file system")) {
        return Some(format!(
            "the sandbox refused a write: {line} (a sandboxed step, with --isolate bwrap or \
             --root, writes only to {}, {} and /tmp)",
            s.checkout.display(),
            s.output.display()
        ));
    }
    let hidden = find(&|l| l.contains("/tmp/") && l.contains("No such file or directory"))?;
    Some(format!(
        "{hidden} (a sandboxed step has a private /tmp: of the host's it sees only the tree \
         and the workspace)"
    ))
}

/// `line` trimmed and cut to a readable length.
fn cut(line: &str) -> String {
    const MAX: usize = 300;
    let line = line.trim();
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox<'static> {
        Sandbox {
            workspace: Path::new("/w"),
            checkout: Path::new("/w/p.c"),
            output: Path::new("/w/_output/p.c"),
            tree: Path::new("/t/tree"),
        }
    }

    /// The mounts in order: (flag, source, destination).
    fn mounts(args: &[OsString]) -> Vec<(String, String, String)> {
        let a: Vec<String> = args
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let mut out = vec![];
        let mut i = 0;
        while i < a.len() {
            match a[i].as_str() {
                "--ro-bind" | "--bind" => {
                    out.push((a[i].clone(), a[i + 1].clone(), a[i + 2].clone()));
                    i += 3;
                }
                "--dev" | "--proc" | "--tmpfs" => {
                    out.push((a[i].clone(), String::new(), a[i + 1].clone()));
                    i += 2;
                }
                "--chdir" => i += 2,
                _ => i += 1,
            }
        }
        out
    }

    fn has(args: &[OsString], flag: &str) -> bool {
        args.iter().any(|a| a == flag)
    }

    fn dropped_caps(args: &[OsString]) -> bool {
        args.windows(2)
            .any(|w| w[0] == "--cap-drop" && w[1] == "ALL")
    }

    fn chdir(args: &[OsString]) -> Option<String> {
        let i = args.iter().position(|a| a == "--chdir")?;
        Some(args.get(i + 1)?.to_string_lossy().into_owned())
    }

    fn writable(m: &[(String, String, String)]) -> Vec<(&str, &str)> {
        m.iter()
            .filter(|(f, ..)| f == "--bind")
            .map(|(_, s, d)| (s.as_str(), d.as_str()))
            .collect()
    }

    #[test]
    fn a_target_writes_only_its_checkout_output_and_tmp_without_network() {
        let args = bwrap_args(&sandbox(), Step::Target);
        let m = mounts(&args);
        assert_eq!(m[0], ("--ro-bind".into(), "/".into(), "/".into()));
        assert_eq!(
            writable(&m),
            [("/w/p.c", "/w/p.c"), ("/w/_output/p.c", "/w/_output/p.c")]
        );
        // The private /tmp comes before everything shown again over it.
        let tmp = m.iter().position(|x| x.0 == "--tmpfs" && x.2 == "/tmp");
        let tree = m
            .iter()
            .position(|x| x == &("--ro-bind".into(), "/t/tree".into(), "/t/tree".into()));
        let ws = m
            .iter()
            .position(|x| x == &("--ro-bind".into(), "/w".into(), "/w".into()));
        let first_bind = m.iter().position(|x| x.0 == "--bind");
        assert!(
            tmp.is_some() && tmp < tree && tree < ws && ws < first_bind,
            "{m:?}"
        );
        assert_eq!(chdir(&args).as_deref(), Some("/w/p.c"));
        for flag in ["--unshare-net", "--unshare-pid", "--die-with-parent"] {
            assert!(has(&args, flag), "{flag} in {args:?}");
        }
        assert!(dropped_caps(&args), "{args:?}");
        // It must stay in the step's process group.
        assert!(!has(&args, "--new-session"));
        assert_eq!(args.last().map(|a| a.as_os_str()), Some(OsStr::new("--")));
    }

    #[test]
    fn a_checkout_sees_a_scratch_workspace_and_keeps_the_network() {
        let args = bwrap_args(&sandbox(), Step::Checkout);
        let m = mounts(&args);
        assert_eq!(
            writable(&m),
            [
                ("/w/_output/p.c/checkout", "/w"),
                ("/w/_output/p.c", "/w/_output/p.c")
            ]
        );
        // The real workspace is not bound: only the scratch one is seen there.
        assert!(!m.iter().any(|x| x.1 == "/w"), "{m:?}");
        assert_eq!(chdir(&args).as_deref(), Some("/w"));
        assert!(!has(&args, "--unshare-net"));
        assert!(has(&args, "--unshare-pid") && has(&args, "--die-with-parent"));
        assert!(dropped_caps(&args), "{args:?}");
    }

    #[test]
    fn shell_starts_bwrap_only_when_asked() {
        let s = sandbox();
        let none = shell(Isolation::None, &s, Step::Target);
        assert_eq!(none.get_program(), "sh");
        assert_eq!(none.get_args().count(), 0);
        let bwrap = shell(Isolation::Bwrap, &s, Step::Target);
        assert_eq!(bwrap.get_program(), "bwrap");
        let args: Vec<&OsStr> = bwrap.get_args().collect();
        assert_eq!(
            &args[args.len() - 2..],
            [OsStr::new("--"), OsStr::new("sh")]
        );
    }

    #[test]
    fn a_checkout_moves_in_and_what_it_wrote_elsewhere_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("w");
        let checkout = ws.join("p.c");
        let output = ws.join("_output/p.c");
        let tree = t.path().join("tree");
        let s = Sandbox {
            workspace: &ws,
            checkout: &checkout,
            output: &output,
            tree: &tree,
        };
        make_scratch(&s).unwrap();
        let scratch = s.scratch();
        // What bwrap leaves: the mount point of _output/p.c; and the checkout.
        fs::create_dir_all(scratch.join("_output/p.c")).unwrap();
        fs::create_dir_all(scratch.join("p.c/src")).unwrap();
        fs::write(scratch.join("p.c/src/a"), "a").unwrap();
        settle_checkout(&s).unwrap();
        assert_eq!(fs::read_to_string(checkout.join("src/a")).unwrap(), "a");

        fs::remove_dir_all(&checkout).unwrap();
        make_scratch(&s).unwrap();
        assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0);
        fs::create_dir_all(scratch.join("_output/p.c")).unwrap();
        fs::create_dir_all(scratch.join("_output/other")).unwrap();
        fs::create_dir_all(scratch.join("p.c")).unwrap();
        fs::write(scratch.join("stray"), "").unwrap();
        let why = settle_checkout(&s).unwrap_err();
        let w = ws.display();
        assert!(
            why.contains(&format!("{w}/_output/other, {w}/stray")),
            "{why}"
        );
        assert!(!checkout.exists());
    }

    #[test]
    fn a_failure_is_explained_by_a_refused_write_or_a_hidden_tmp() {
        let s = sandbox();
        let out = "make: entering\nsh: 1: cannot create /root/x: Read-only file system\n\
                   cp: cannot stat '/tmp/src/a': No such file or directory\n";
        assert_eq!(
            explain(&s, out).as_deref(),
            Some(
                "the sandbox refused a write: sh: 1: cannot create /root/x: Read-only file \
                 system (a sandboxed step, with --isolate bwrap or --root, writes only to \
                 /w/p.c, /w/_output/p.c and /tmp)"
            )
        );
        let hidden = explain(
            &s,
            "cp: cannot stat '/tmp/src/a': No such file or directory\n",
        );
        assert!(
            hidden.as_deref().is_some_and(
                |h| h.starts_with("cp: cannot stat '/tmp/src/a'") && h.contains("private /tmp")
            ),
            "{hidden:?}"
        );
        assert_eq!(
            explain(&s, "cc: error: x.c: No such file or directory\n"),
            None
        );
        let long = format!("{} Read-only file system", "é".repeat(400));
        let why = explain(&s, &long).unwrap();
        let line = why.split(" (a sandboxed").next().unwrap();
        assert!(line.ends_with('…') && line.len() < 340, "{why}");
    }
}
