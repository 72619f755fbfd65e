//! Build records: what `packyard build` leaves in a repository beside a component's
//! artifacts, so that any build node can reuse them (the repository is the shared build
//! cache) and anyone can read why a build failed.
//!
//! For a component whose tarball's download-from path is `<stem>.tar.gz`, the
//! repository holds `<stem>.build.log` (every target's output) and `<stem>.build.json`
//! (a [`BuildRecord`]). Both are plain files of the repository tree, so they are served
//! like the packages; the record is written last and only names artifacts the
//! repository holds with those checksums.

use serde::{Deserialize, Serialize};

use super::{RepoError, Repositories};
use crate::paths::{checksum_key, log_path, parse_checksum, record_path};

/// How a component's build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildResult {
    Built,
    Failed,
}

pub use crate::paths::BuiltFile;

/// The latest build of one configuration for one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub configuration: String,
    pub module: String,
    pub platform: String,
    /// The build key: equal keys mean equal inputs (see `build::key`).
    pub key: String,
    pub result: BuildResult,
    /// What the build published (empty for a failed one).
    pub artifacts: Vec<BuiltFile>,
    /// The failed target, for a failed build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_target: Option<String>,
    pub seconds: f64,
    /// Unix seconds when the build ended.
    pub finished: i64,
    /// The packyard version that built it.
    pub packyard: String,
    /// A development build (`packyard develop`): of a working tree, not of a tag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub development: bool,
}

/// Logs bigger than this are cut (their end is kept: that is where failures are).
pub const MAX_LOG_BYTES: usize = 16 << 20;

/// The end of a log that is too long, with a first line saying so.
pub fn cut_log(log: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if log.len() <= MAX_LOG_BYTES {
        return log.into();
    }
    let keep = &log[log.len() - MAX_LOG_BYTES..];
    let mut out = format!(
        "[packyard: the first {} bytes of this log were cut]\n",
        log.len() - keep.len()
    )
    .into_bytes();
    out.extend_from_slice(keep);
    out.into()
}

impl Repositories {
    /// Stores a build's log and record in repository `repo`, beside the tarball at
    /// `tarball`. Every artifact the record names must be in the repository with that
    /// checksum, so a record never points at a missing or different file. The log goes
    /// first: a crash between the two leaves the previous record, which is still true.
    pub fn record_build(
        &self,
        repo: &str,
        tarball: &str,
        record: &BuildRecord,
        log: &[u8],
    ) -> Result<(), RepoError> {
        let repo = self.repo(repo)?.name;
        crate::blobs::check_key(tarball)?;
        if !tarball.ends_with(".tar.gz") {
            return Err(RepoError::BadBuild(format!(
                "{tarball}: a build is recorded beside its tarball (a path ending in .tar.gz)"
            )));
        }
        for a in &record.artifacts {
            match self.store.package(&repo, &a.path)? {
                Some(p) if p.sha256 == a.sha256 => {}
                Some(p) => {
                    return Err(RepoError::BadBuild(format!(
                        "{}: the repository holds sha256 {}, the record says {}",
                        a.path, p.sha256, a.sha256
                    )));
                }
                None => {
                    return Err(RepoError::BadBuild(format!(
                        "{}: not in repository {repo}; publish the artifacts before recording the build",
                        a.path
                    )));
                }
            }
        }
        self.blobs
            .put_now(&format!("{repo}/{}", log_path(tarball)), &cut_log(log))?;
        let json =
            serde_json::to_vec_pretty(record).map_err(|e| RepoError::BadBuild(e.to_string()))?;
        self.blobs
            .put_now(&format!("{repo}/{}", record_path(tarball)), &json)?;
        Ok(())
    }

    /// The latest build recorded beside the tarball at `tarball`, if any, and whether
    /// the repository still holds every artifact it names with the recorded checksum (a
    /// later publish may have replaced or pruned one).
    pub fn build(&self, repo: &str, tarball: &str) -> Result<Option<StoredBuild>, RepoError> {
        let repo = self.repo(repo)?.name;
        read_build(
            tarball,
            |path| Ok(self.blobs.get(&format!("{repo}/{path}"))?),
            |path| Ok(self.store.package(&repo, path)?.map(|p| p.sha256)),
        )
    }
}

/// The build recorded beside `tarball` in a repository whose objects `read` gives (by
/// path in the repository; `None` if absent), and whether it is current: `checksum` (the
/// repository's record of each artifact) still names the recorded sha256.
pub fn read_build(
    tarball: &str,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, RepoError>,
    checksum: impl Fn(&str) -> Result<Option<String>, RepoError>,
) -> Result<Option<StoredBuild>, RepoError> {
    crate::blobs::check_key(tarball)?;
    let Some(bytes) = read(&record_path(tarball))? else {
        return Ok(None);
    };
    // A record that no longer reads (hand-edited, older format) is no cache entry.
    let Ok(record) = serde_json::from_slice::<BuildRecord>(&bytes) else {
        return Ok(None);
    };
    let mut current = record.result == BuildResult::Built;
    for a in &record.artifacts {
        if !current {
            break;
        }
        current = crate::blobs::check_key(&a.path).is_ok()
            && checksum(&a.path)?.as_deref() == Some(a.sha256.as_str());
    }
    Ok(Some(StoredBuild { record, current }))
}

/// The sha256 a repository read as `file://` gives for the package at `path`: its
/// `.sha256` record (written for tarballs, and for every package by earlier releases),
/// else the package's own bytes hashed.
pub fn file_checksum(
    path: &str,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, RepoError>,
) -> Result<Option<String>, RepoError> {
    if let Some(line) = read(&checksum_key(path))? {
        return Ok(parse_checksum(&String::from_utf8_lossy(&line)));
    }
    Ok(read(path)?.map(|b| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&b))
    }))
}

/// A build record as the repository holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredBuild {
    #[serde(flatten)]
    pub record: BuildRecord,
    /// A successful build whose artifacts are all still there, unchanged: usable as a
    /// cached build.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_logs_keep_their_end() {
        let mut log = vec![b'a'; MAX_LOG_BYTES];
        log.extend_from_slice(b"error: the end\n");
        let cut = cut_log(&log);
        assert!(cut.starts_with(b"[packyard: the first 15 bytes of this log were cut]\n"));
        assert!(cut.ends_with(b"error: the end\n"));
        assert_eq!(&*cut_log(b"short"), b"short");
    }
}
