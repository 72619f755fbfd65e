//! `repo export`: a repository as served, written out as a plain directory tree — a
//! `file://` repository for dnf, apt and zypper, or the source of an rsync mirror —
//! whatever backends hold it.

use std::path::Path;

use serde::Serialize;

use super::{RepoError, Repositories};
use crate::blobs::{Blobs, Body, Data, FsBlobs};

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Exported {
    pub repo: String,
    pub files: u64,
    pub bytes: u64,
}

impl Repositories {
    /// Writes every path `repo` serves (see [`Repositories::served_paths`]) below `dir`,
    /// each file put whole, under the repository's lock so the tree is one state of it
    /// (one index generation with the packages it names).
    pub fn export(&self, repo: &str, dir: &Path) -> Result<Exported, RepoError> {
        std::fs::create_dir_all(dir).map_err(|source| RepoError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let to = FsBlobs::new(dir);
        let _guard = self.lock_repo(repo)?;
        let mut out = Exported {
            repo: repo.to_string(),
            ..Exported::default()
        };
        for path in self.served_paths(repo)? {
            let Some(object) = self.open_path(repo, &path, None)? else {
                return Err(RepoError::Internal(format!(
                    "{repo}/{path} is named by the repository but its bytes are missing \
                     from {}",
                    self.blobs.describe(&format!("{repo}/{path}"))
                )));
            };
            let source = dir.join(&path);
            match object.data {
                Data::Bytes(b) => to.put(&path, Body::Bytes(&b), None)?,
                Data::File(mut f) => to.put(
                    &path,
                    Body::Read {
                        from: &mut f,
                        source: &source,
                    },
                    None,
                )?,
                Data::Stream(mut s) => to.put(
                    &path,
                    Body::Read {
                        from: &mut s,
                        source: &source,
                    },
                    None,
                )?,
            }
            out.files += 1;
            out.bytes += object.meta.len;
        }
        to.flush()?;
        Ok(out)
    }
}
