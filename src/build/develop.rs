//! Development builds (`packyard develop`): the modules a workspace keeps as development
//! checkouts (`<workspace>/.packyard/develop.json`), and each one's state between builds
//! (`_output/<module>/develop.json`): the key of its last build — made from the working
//! tree as that build left it — and the configuration it was configured with, so the
//! next build runs `init` and `configure` again only when that changed; and what its
//! stage was made from (`_output/<module>/staged`), so the next one stages its build
//! dependencies again only when they changed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The development checkouts of a workspace, by full module name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkouts {
    pub modules: BTreeMap<String, Checkout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// The configuration it was checked out as.
    pub configuration: String,
    /// RFC 3339.
    pub since: String,
}

fn list_path(workspace: &Path) -> PathBuf {
    workspace.join(".packyard").join("develop.json")
}

/// The workspace's development checkouts (none when it has no list).
pub fn checkouts(workspace: &Path) -> io::Result<Checkouts> {
    match fs::read(list_path(workspace)) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkouts::default()),
        Err(e) => Err(e),
    }
}

/// Writes the list, atomically.
pub fn save(workspace: &Path, list: &Checkouts) -> io::Result<()> {
    let path = list_path(workspace);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec_pretty(list).map_err(io::Error::other)?;
    crate::atomic::write(&path, &text)
}

/// What a development build left for the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Its key, from the working tree as the build left it.
    pub key: String,
    /// The digest of the configuration `init`/`configure` last ran with.
    pub configured: String,
    /// What it left in `_output/<module>/artifacts`: a cached build's, without reading
    /// them again.
    #[serde(default)]
    pub artifacts: Vec<crate::repo::builds::BuiltFile>,
}

fn state_path(output: &Path) -> PathBuf {
    output.join("develop.json")
}

/// The state the last development build of the component at `output` left, if any.
pub fn state(output: &Path) -> Option<State> {
    fs::read(state_path(output))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

pub fn save_state(output: &Path, state: &State) -> io::Result<()> {
    let text = serde_json::to_vec(state).map_err(io::Error::other)?;
    crate::atomic::write(&state_path(output), &text)
}

fn staged_path(output: &Path) -> PathBuf {
    output.join("staged")
}

/// What the stage at `output` was made from, if it is whole.
pub fn staged(output: &Path) -> Option<String> {
    fs::read_to_string(staged_path(output)).ok()
}

/// Records that the stage at `output` was made, whole, from `digest`.
pub fn mark_staged(output: &Path, digest: &str) -> io::Result<()> {
    crate::atomic::write(&staged_path(output), digest.as_bytes())
}

/// Forgets what the stage at `output` was made from: done before it is touched, so a
/// build stopped while staging leaves no stage that passes for whole.
pub fn forget_stage(output: &Path) -> io::Result<()> {
    match fs::remove_file(staged_path(output)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes `job`'s checkout a development one: its checkout command run in the workspace
/// unless the module's directory is there already (a developer's own stays); the list's
/// entry for it.
pub fn adopt(job: &super::run::Job) -> Result<Checkout, AdoptError> {
    if !job.checkout_dir.is_dir() {
        let cmd = job
            .commands
            .get("checkout")
            .ok_or_else(|| AdoptError::NoCheckout(job.configuration.clone()))?;
        let io = |e| AdoptError::Io(job.workspace.clone(), e);
        fs::create_dir_all(&job.workspace).map_err(io)?;
        let ran = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&job.workspace)
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(io)?;
        if !ran.success() || !job.checkout_dir.is_dir() {
            return Err(AdoptError::Failed {
                command: cmd.clone(),
                module: job.module.clone(),
            });
        }
    }
    Ok(Checkout {
        configuration: job.configuration.clone(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{0} has no checkout command; add one under [configuration.commands]")]
    NoCheckout(String),
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("`{command}` did not check {module} out")]
    Failed { command: String, module: String },
}
