//! Carrying a plan out on this node (`packyard fetch`): downloads prebuilt tarballs and
//! packages — in parallel, resumable, each checked against the repository's `.sha256`
//! record — unpacks the tarballs into `${stageDir}`, installs binary and OS packages with
//! the platform's tool, and checks out what must be built from source into
//! `${workspaceDir}/<module>`.
//!
//! Order matters for "a failure changes nothing": every download is checked and every
//! tarball unpacked (into a scratch directory beside the stage dir) before anything is
//! installed, and the unpacked files move into the stage dir only after the install
//! worked.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::unpack::{self, UnpackError};
use super::{Action, Plan, Planned};
use crate::client::is_url;
use crate::config::{DependencyType, absolute};
use crate::layout::PackageFormat;
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no checksum record for {file}: {record} is missing")]
    NoRecord { file: String, record: String },
    #[error("{record} does not hold a SHA-256 checksum")]
    BadRecord { record: String },
    #[error("cannot download {url}: {why}")]
    Download { url: String, why: String },
    #[error(
        "{file} does not match the repository's record: its sha256 is {actual}, the record says {expected}"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("`{command}` failed: {why}")]
    Install { command: String, why: String },
    #[error("{module} must be built from source, but {why}")]
    Checkout {
        module: String,
        command: Option<String>,
        why: String,
    },
    #[error("{path}: {why}")]
    Io { path: String, why: String },
}

impl FetchError {
    pub fn hint(&self) -> String {
        match self {
            FetchError::NoRecord { .. } | FetchError::BadRecord { .. } => {
                "packyard writes `<file>.sha256` beside every file it publishes; point --repo \
                 at a packyard repository, or publish the file again"
                    .into()
            }
            FetchError::Download { .. } => {
                "check the --repo URL and that the server runs; run fetch again to resume".into()
            }
            FetchError::Checksum { .. } => {
                "the file changed after it was published, or was damaged on the way; nothing \
                 was unpacked or installed. Tell the repository's admin"
                    .into()
            }
            FetchError::Unpack(UnpackError::Unsafe { .. }) => {
                "the tarball tries to write outside the stage dir; nothing was written. Do not \
                 use it, and tell the repository's admin"
                    .into()
            }
            FetchError::Unpack(_) => "nothing was moved into the stage dir".into(),
            FetchError::Install { .. } => {
                "the stage dir is unchanged; fix the package manager's complaint and run fetch \
                 again (downloads are kept)"
                    .into()
            }
            FetchError::Checkout { .. } => "check the module's `checkout` command".into(),
            FetchError::Io { .. } => "check the directory's permissions and free space".into(),
        }
    }
}

pub struct FetchOptions {
    /// Downloaded files are kept here, at their download-from paths, so a second run
    /// (or a resumed one) does not fetch them again.
    pub cache: PathBuf,
    pub stage_dir: PathBuf,
    pub workspace_dir: PathBuf,
    /// Whether this node installs packages (as in the plan).
    pub privileged: bool,
    /// Run installs through `sudo -n` (privileged, but not root).
    pub sudo: bool,
    /// Parallel downloads.
    pub jobs: usize,
    /// Bearer token for private served repositories.
    pub token: Option<String>,
    pub dry_run: bool,
}

/// What fetch did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct FetchReport {
    pub dry_run: bool,
    pub stage_dir: String,
    pub workspace_dir: String,
    pub downloaded: Vec<Fetched>,
    /// Modules whose tarballs were unpacked into the stage dir.
    pub unpacked: Vec<String>,
    /// The install command run, if any.
    pub installed: Option<String>,
    pub checked_out: Vec<CheckedOut>,
    /// What this node still has to do by hand (unresolved, or installs it may not run).
    pub left: Vec<Left>,
}

#[derive(Debug, Serialize)]
pub struct Fetched {
    pub module: String,
    pub source: String,
    /// Where the checked file is on this machine.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// Already downloaded and intact: not fetched again.
    pub cached: bool,
}

#[derive(Debug, Serialize)]
pub struct CheckedOut {
    pub module: String,
    pub dir: String,
    pub command: String,
    /// The directory was there already: the command was not run.
    pub skipped: bool,
}

#[derive(Debug, Serialize)]
pub struct Left {
    pub module: String,
    pub reason: String,
}

/// The plan's dependencies sorted by what fetch does with them.
#[derive(Default)]
pub struct Work<'a> {
    pub tarballs: Vec<&'a Planned>,
    pub binaries: Vec<&'a Planned>,
    pub os_packages: Vec<&'a Planned>,
    pub sources: Vec<&'a Planned>,
    pub left: Vec<Left>,
}

pub fn work(plan: &Plan, privileged: bool) -> Work<'_> {
    let mut w = Work::default();
    for d in plan.dependencies.iter().filter(|d| !d.listed_only) {
        let external = d.kind == DependencyType::External;
        match d.action {
            Action::Installed => {}
            Action::Download => w.tarballs.push(d),
            Action::Install if !privileged => w.left.push(Left {
                module: d.module.clone(),
                reason: d.reason.clone(),
            }),
            Action::Install if external => w.os_packages.push(d),
            Action::Install => w.binaries.push(d),
            Action::Source => w.sources.push(d),
            Action::Unresolved => w.left.push(Left {
                module: d.module.clone(),
                reason: d.reason.clone(),
            }),
        }
    }
    w
}

/// The one command that installs `files` (downloaded packages) and OS packages `names`.
/// dnf and apt-get resolve the packages' own dependencies; rpm alone is the fallback on
/// an RPM node without dnf when only files are to be installed.
pub fn install_command(
    format: PackageFormat,
    sudo: bool,
    have_dnf: bool,
    files: &[PathBuf],
    names: &[String],
) -> Option<Vec<String>> {
    if files.is_empty() && names.is_empty() {
        return None;
    }
    let mut cmd: Vec<String> = if sudo {
        vec!["sudo".into(), "-n".into()]
    } else {
        vec![]
    };
    match format {
        PackageFormat::Rpm if !have_dnf && names.is_empty() => {
            cmd.extend(["rpm", "-U", "--replacepkgs"].map(String::from))
        }
        PackageFormat::Rpm => cmd.extend(["dnf", "install", "-y"].map(String::from)),
        PackageFormat::Deb => cmd.extend(["apt-get", "install", "-y"].map(String::from)),
    }
    // apt-get takes a file only as a path with a slash in it; absolute paths have one.
    cmd.extend(files.iter().map(|f| f.display().to_string()));
    cmd.extend(names.iter().cloned());
    Some(cmd)
}

/// Carries `plan` out.
pub fn fetch(
    plan: &Plan,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchReport, FetchError> {
    let work = work(plan, opts.privileged);
    let mut report = FetchReport {
        dry_run: opts.dry_run,
        stage_dir: opts.stage_dir.display().to_string(),
        workspace_dir: opts.workspace_dir.display().to_string(),
        ..Default::default()
    };
    let cache = absolute(&opts.cache);
    let names: Vec<String> = work
        .os_packages
        .iter()
        .filter_map(|d| d.package_name.clone())
        .collect();
    let have_dnf = on_path("dnf");

    if opts.dry_run {
        for d in work.tarballs.iter().chain(&work.binaries) {
            let (source, file) = where_to(d, &cache);
            report.downloaded.push(Fetched {
                module: d.module.clone(),
                source,
                file: file.display().to_string(),
                sha256: String::new(),
                bytes: 0,
                cached: false,
            });
        }
        let files: Vec<PathBuf> = work
            .binaries
            .iter()
            .map(|d| where_to(d, &cache).1)
            .collect();
        report.installed =
            install_command(plan.format, opts.sudo, have_dnf, &files, &names).map(|c| c.join(" "));
        report.unpacked = work.tarballs.iter().map(|d| d.module.clone()).collect();
        report.checked_out = work
            .sources
            .iter()
            .map(|d| CheckedOut {
                module: d.module.clone(),
                dir: opts.workspace_dir.join(&d.module).display().to_string(),
                command: d.checkout.clone().unwrap_or_default(),
                skipped: false,
            })
            .collect();
        report.left = work.left;
        return Ok(report);
    }

    // 1. Every file, checked.
    let wanted: Vec<&Planned> = work
        .tarballs
        .iter()
        .chain(&work.binaries)
        .copied()
        .collect();
    let fetched = download_all(&wanted, &cache, opts, progress)?;
    let (tarballs, binaries) = fetched.split_at(work.tarballs.len());

    // 2. Every tarball, unpacked into scratch space on the stage dir's file system.
    let stage = absolute(&opts.stage_dir);
    let scratch_parent = stage.parent().unwrap_or(Path::new("/")).to_path_buf();
    fs::create_dir_all(&scratch_parent).map_err(io_at(&scratch_parent))?;
    let scratch = tempfile::Builder::new()
        .prefix(".packyard-unpack-")
        .tempdir_in(&scratch_parent)
        .map_err(io_at(&scratch_parent))?;
    progress.start(
        "unpacking",
        tarballs.iter().map(|f| f.bytes).sum::<u64>().max(1),
    );
    for f in tarballs {
        unpack::unpack(Path::new(&f.file), scratch.path())?;
        progress.advance(f.bytes);
        report.unpacked.push(f.module.clone());
    }
    progress.finish();

    // 3. Packages installed, all in one transaction.
    let files: Vec<PathBuf> = binaries.iter().map(|f| PathBuf::from(&f.file)).collect();
    if let Some(cmd) = install_command(plan.format, opts.sudo, have_dnf, &files, &names) {
        run_install(&cmd)?;
        report.installed = Some(cmd.join(" "));
    }

    // 4. The stage dir changes only now.
    if !tarballs.is_empty() {
        unpack::move_into(scratch.path(), &stage)?;
    }
    drop(scratch);
    report.downloaded = fetched;

    // 5. Sources.
    for d in &work.sources {
        report
            .checked_out
            .push(checkout(d, &absolute(&opts.workspace_dir))?);
    }
    report.left = work.left;
    Ok(report)
}

/// Where a planned file comes from, and where its download is kept.
fn where_to(d: &Planned, cache: &Path) -> (String, PathBuf) {
    let source = d.source.clone().unwrap_or_default();
    let rel = d
        .path
        .clone()
        .unwrap_or_else(|| source.rsplit('/').next().unwrap_or(&source).to_string());
    (source, cache.join(rel))
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> FetchError + '_ {
    move |e| FetchError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Downloads (or, for a repository directory, checks in place) every planned file, `jobs`
/// at a time. Results are in the order of `wanted`.
fn download_all(
    wanted: &[&Planned],
    cache: &Path,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<Vec<Fetched>, FetchError> {
    let getter = Getter {
        agent: crate::client::agent(None),
        token: opts.token.clone(),
    };
    progress.start("fetching", 0);
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..wanted.len()).collect());
    let results: Mutex<Vec<Option<Result<Fetched, FetchError>>>> =
        Mutex::new((0..wanted.len()).map(|_| None).collect());
    let jobs = opts.jobs.clamp(1, 16).min(wanted.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some(i) = next else { break };
                    let r = fetch_one(&getter, wanted[i], cache, progress);
                    let failed = r.is_err();
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                    if failed {
                        // The others finish what they have; nothing new starts.
                        queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    }
                }
            });
        }
    });
    progress.finish();
    let mut out = Vec::new();
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Some(r) => out.push(r?),
            None => continue,
        }
    }
    Ok(out)
}

struct Getter {
    agent: ureq::Agent,
    token: Option<String>,
}

impl Getter {
    fn get(&self, url: &str, range_from: u64) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut req = crate::client::authorized(self.agent.get(url), self.token.as_deref());
        if range_from > 0 {
            req = req.header("Range", format!("bytes={range_from}-"));
        }
        req.call().map_err(|e| e.to_string())
    }

    /// The repository's record of `source`'s SHA-256: `<source>.sha256`.
    fn record(&self, source: &str) -> Result<String, FetchError> {
        let record = crate::paths::checksum_key(source);
        let text = if is_url(source) {
            let mut r = self.get(&record, 0).map_err(|why| FetchError::Download {
                url: record.clone(),
                why,
            })?;
            match r.status().as_u16() {
                200 => r
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| FetchError::Download {
                        url: record.clone(),
                        why: e.to_string(),
                    })?,
                404 => {
                    return Err(FetchError::NoRecord {
                        file: source.into(),
                        record,
                    });
                }
                s => {
                    return Err(FetchError::Download {
                        url: record,
                        why: format!("HTTP {s}"),
                    });
                }
            }
        } else {
            match fs::read_to_string(&record) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(FetchError::NoRecord {
                        file: source.into(),
                        record,
                    });
                }
                Err(e) => return Err(io_at(Path::new(&record))(e)),
            }
        };
        crate::paths::parse_checksum(&text).ok_or(FetchError::BadRecord { record })
    }
}

fn fetch_one(
    getter: &Getter,
    d: &Planned,
    cache: &Path,
    progress: &dyn Progress,
) -> Result<Fetched, FetchError> {
    let (source, dest) = where_to(d, cache);
    let expected = match &d.sha256 {
        Some(sum) => sum.clone(),
        None => getter.record(&source)?,
    };
    let mismatch = |actual: String| FetchError::Checksum {
        file: source.clone(),
        expected: expected.clone(),
        actual,
    };
    let done = |file: &Path, bytes: u64, cached: bool| Fetched {
        module: d.module.clone(),
        source: source.clone(),
        file: file.display().to_string(),
        sha256: expected.clone(),
        bytes,
        cached,
    };
    if !is_url(&source) {
        // A repository directory: checked where it is.
        let path = Path::new(&source);
        let len = fs::metadata(path).map_err(io_at(path))?.len();
        progress.grow(len);
        let actual = sha256_file(path, progress)?;
        if actual != expected {
            return Err(mismatch(actual));
        }
        return Ok(done(path, len, true));
    }
    // The size of the kept download, if it is the file asked for.
    let kept = |progress: &dyn Progress| -> Result<Option<u64>, FetchError> {
        let Ok(m) = fs::metadata(&dest) else {
            return Ok(None);
        };
        progress.grow(m.len());
        if sha256_file(&dest, progress)? != expected {
            return Ok(None);
        }
        // Used now: a cache that prunes by age (a workspace's downloads) keeps it.
        let _ = fs::File::options()
            .write(true)
            .open(&dest)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(m.len()))
    };
    if let Some(len) = kept(progress)? {
        return Ok(done(&dest, len, true));
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    // Builds sharing the cache may want the same file at once: the one holding the lock
    // on its partial download fetches it, and the others find it done.
    let _held = crate::atomic::FileLock::exclusive(&part).map_err(io_at(&part))?;
    if let Some(len) = kept(&crate::progress::Quiet)? {
        if fs::metadata(&part).is_ok_and(|p| p.len() == 0) {
            let _ = fs::remove_file(&part);
        }
        return Ok(done(&dest, len, true));
    }
    let actual = download(getter, &source, &part, progress)?;
    let actual = if actual == expected {
        actual
    } else {
        // A stale partial download from an earlier run (the file was replaced since) is
        // the innocent explanation: try once from the start.
        let _ = fs::remove_file(&part);
        download(getter, &source, &part, progress)?
    };
    if actual != expected {
        let _ = fs::remove_file(&part);
        return Err(mismatch(actual));
    }
    fs::rename(&part, &dest).map_err(io_at(&dest))?;
    let len = fs::metadata(&dest).map_err(io_at(&dest))?.len();
    Ok(done(&dest, len, false))
}

/// Downloads `url` into `part`, continuing a partial download there; the SHA-256 of the
/// whole file.
fn download(
    getter: &Getter,
    url: &str,
    part: &Path,
    progress: &dyn Progress,
) -> Result<String, FetchError> {
    let failed = |why: String| FetchError::Download {
        url: url.into(),
        why,
    };
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let resp = getter.get(url, have).map_err(failed)?;
    let status = resp.status().as_u16();
    let mut hasher = Sha256::new();
    let mut file = match status {
        206 if have > 0 => {
            let mut f = fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(part)
                .map_err(io_at(part))?;
            // What is there already counts towards the checksum.
            let mut r = io::BufReader::new(&mut f);
            io::copy(&mut r, &mut hasher).map_err(io_at(part))?;
            progress.grow(have);
            progress.advance(have);
            f
        }
        // The whole file is in `part` already.
        416 if have > 0 => {
            progress.grow(have);
            return sha256_file(part, progress);
        }
        200 => fs::File::create(part).map_err(io_at(part))?,
        404 => return Err(failed("not found (HTTP 404)".into())),
        s => return Err(failed(format!("HTTP {s}"))),
    };
    let mut body = resp.into_body();
    if let Some(len) = body.content_length() {
        progress.grow(len);
    }
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io_at(part))?;
        progress.advance(n as u64);
    }
    file.sync_all().map_err(io_at(part))?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String, FetchError> {
    let mut f = fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn run_install(cmd: &[String]) -> Result<(), FetchError> {
    let line = cmd.join(" ");
    let failed = |why: String| FetchError::Install {
        command: line.clone(),
        why,
    };
    // The tool talks to the user on stderr: stdout may be carrying --json.
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(io::stderr())
        .status()
        .map_err(|e| failed(format!("cannot run {}: {e}", cmd[0])))?;
    if !status.success() {
        return Err(failed(format!("it exited with {status}")));
    }
    Ok(())
}

/// Runs the checkout command of `d` in `workspace`; it must create `workspace/<module>`.
/// A directory that is there already (and not empty) is taken as checked out.
fn checkout(d: &Planned, workspace: &Path) -> Result<CheckedOut, FetchError> {
    let dir = workspace.join(&d.module);
    let err = |command: Option<String>, why: String| FetchError::Checkout {
        module: d.module.clone(),
        command,
        why,
    };
    let Some(command) = d.checkout.clone() else {
        return Err(err(
            None,
            "its configuration has no `checkout` command".into(),
        ));
    };
    let mut out = CheckedOut {
        module: d.module.clone(),
        dir: dir.display().to_string(),
        command: command.clone(),
        skipped: false,
    };
    if fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        out.skipped = true;
        return Ok(out);
    }
    fs::create_dir_all(workspace).map_err(io_at(workspace))?;
    let status = Command::new("sh")
        .args(["-c", &command])
        .current_dir(workspace)
        .stdout(io::stderr())
        .status()
        .map_err(|e| err(Some(command.clone()), format!("cannot run sh: {e}")))?;
    if !status.success() {
        return Err(err(
            Some(command.clone()),
            format!("its checkout command `{command}` exited with {status}"),
        ));
    }
    if !dir.is_dir() {
        return Err(err(
            Some(command.clone()),
            format!(
                "its checkout command `{command}` ran and did not create {}",
                dir.display()
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scope;

    fn planned(module: &str, action: Action, kind: DependencyType) -> Planned {
        Planned {
            module: module.into(),
            configuration: None,
            version: None,
            scope: Scope::Build,
            kind,
            action,
            reason: format!("because {module}"),
            source: Some(format!("/repo/{module}.pkg")),
            path: Some(format!("p/{module}.pkg")),
            package_name: Some(format!("pkg-{module}")),
            checkout: None,
            listed_only: false,
            sha256: None,
        }
    }

    fn plan() -> Plan {
        let mut listed = planned("r", Action::Download, DependencyType::Dynamic);
        listed.listed_only = true;
        Plan {
            order: vec![],
            dependencies: vec![
                planned("a", Action::Download, DependencyType::Dynamic),
                planned("b", Action::Install, DependencyType::Dynamic),
                planned("gcc", Action::Install, DependencyType::External),
                planned("c", Action::Source, DependencyType::Static),
                planned("d", Action::Installed, DependencyType::Dynamic),
                planned("x", Action::Unresolved, DependencyType::External),
                listed,
            ],
            stage_dir: "stage".into(),
            workspace_dir: "ws".into(),
            format: PackageFormat::Rpm,
        }
    }

    fn modules(v: &[&Planned]) -> Vec<String> {
        v.iter().map(|d| d.module.clone()).collect()
    }

    #[test]
    fn work_sorts_the_plan() {
        let p = plan();
        let w = work(&p, true);
        assert_eq!(modules(&w.tarballs), ["a"]);
        assert_eq!(modules(&w.binaries), ["b"]);
        assert_eq!(modules(&w.os_packages), ["gcc"]);
        assert_eq!(modules(&w.sources), ["c"]);
        assert_eq!(
            w.left.iter().map(|l| l.module.as_str()).collect::<Vec<_>>(),
            ["x"]
        );
        // Unprivileged: installs are left to the user, with the plan's reason.
        let w = work(&p, false);
        assert!(w.binaries.is_empty() && w.os_packages.is_empty());
        assert_eq!(
            w.left
                .iter()
                .map(|l| (l.module.as_str(), l.reason.as_str()))
                .collect::<Vec<_>>(),
            [
                ("b", "because b"),
                ("gcc", "because gcc"),
                ("x", "because x")
            ]
        );
    }

    #[test]
    fn install_commands() {
        let files = [PathBuf::from("/c/p-1.rpm")];
        let names = ["gcc".to_string()];
        let line = |f: PackageFormat, sudo, dnf, files: &[PathBuf], names: &[String]| {
            install_command(f, sudo, dnf, files, names).map(|c| c.join(" "))
        };
        assert_eq!(line(PackageFormat::Rpm, false, true, &[], &[]), None);
        assert_eq!(
            line(PackageFormat::Rpm, true, true, &files, &names).as_deref(),
            Some("sudo -n dnf install -y /c/p-1.rpm gcc")
        );
        assert_eq!(
            line(PackageFormat::Rpm, false, false, &files, &[]).as_deref(),
            Some("rpm -U --replacepkgs /c/p-1.rpm")
        );
        assert_eq!(
            line(
                PackageFormat::Deb,
                false,
                false,
                &[PathBuf::from("/c/p.deb")],
                &names
            )
            .as_deref(),
            Some("apt-get install -y /c/p.deb gcc")
        );
    }

    #[test]
    fn a_checkout_must_create_its_directory() {
        let ws = tempfile::tempdir().unwrap();
        let mut d = planned("p.c", Action::Source, DependencyType::Dynamic);
        d.checkout = Some("mkdir -p p.c && echo hi > p.c/README".into());
        let out = checkout(&d, ws.path()).unwrap();
        assert!(!out.skipped);
        assert_eq!(
            fs::read_to_string(ws.path().join("p.c/README")).unwrap(),
            "hi\n"
        );
        // There already: not run again.
        d.checkout = Some("false".into());
        assert!(checkout(&d, ws.path()).unwrap().skipped);
        // A command that makes nothing is an error naming the directory.
        let mut e = planned("p.e", Action::Source, DependencyType::Dynamic);
        e.checkout = Some("true".into());
        let msg = checkout(&e, ws.path()).unwrap_err().to_string();
        assert!(
            msg.contains("did not create") && msg.contains("p.e"),
            "{msg}"
        );
        e.checkout = Some("exit 3".into());
        let msg = checkout(&e, ws.path()).unwrap_err().to_string();
        assert!(msg.contains("exited with"), "{msg}");
        e.checkout = None;
        let msg = checkout(&e, ws.path()).unwrap_err().to_string();
        assert!(msg.contains("no `checkout` command"), "{msg}");
    }
}
