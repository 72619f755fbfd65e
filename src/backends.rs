//! Which metadata store and which blob backend a data directory uses (DESIGN §6), chosen
//! by URL: on the command line (`--store`, `--blobs`, or `PACKYARD_STORE`,
//! `PACKYARD_BLOBS`), else in a config file (`--config FILE`, else `packyard.toml` in the
//! data directory), else the embedded defaults — sled in `<data>/store`, files in
//! `<data>/repos`. The only place that turns those names into backends. The file holding
//! the secret keys' passphrase is chosen the same way (`--key-passphrase-file`,
//! `PACKYARD_KEY_PASSPHRASE_FILE`, `key_passphrase_file`; none by default).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::blobs::{Blobs, FsBlobs, S3Blobs};
use crate::store::{PostgresStore, SledStore, Store};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0:?} is not a store: give `sled` or `postgres://USER@HOST:PORT/DB`")]
    BadStore(String),
    #[error(
        "{0:?} is not a blob backend: give `file` or `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION`"
    )]
    BadBlobs(String),
    #[error("{path}: {why}")]
    Config { path: PathBuf, why: String },
}

impl BackendError {
    pub fn hint(&self) -> String {
        match self {
            BackendError::Config { .. } => {
                "packyard.toml takes `store = \"...\"`, `blobs = \"...\"`, \
                 `key_passphrase_file = \"...\"` and an `[s3]` table with access_key_id and \
                 secret_access_key"
                    .into()
            }
            _ => "see `packyard --help` for --store and --blobs".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sled,
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobsUrl {
    File,
    S3(String),
}

/// Credentials for an object store, when the config file gives them (else the usual
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Credentials({}, <secret>)", self.access_key_id)
    }
}

/// The config file: the backends, and `packyard serve`'s settings (`server::Settings`
/// reads the same file; they are named here so that a misspelt key is an error).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the serve keys are read by server::Settings
struct ConfigFile {
    store: Option<String>,
    blobs: Option<String>,
    s3: Option<S3Credentials>,
    key_passphrase_file: Option<PathBuf>,
    listen: Option<toml::Value>,
    max_upload_bytes: Option<toml::Value>,
    workers: Option<toml::Value>,
    base_url: Option<toml::Value>,
    shutdown_timeout: Option<toml::Value>,
    tree: Option<toml::Value>,
    lease_seconds: Option<toml::Value>,
    heartbeat_seconds: Option<toml::Value>,
    redirect_blobs: Option<toml::Value>,
}

/// A data directory and the backends it uses.
#[derive(Debug, Clone)]
pub struct Backends {
    pub data: PathBuf,
    pub store: StoreUrl,
    pub blobs: BlobsUrl,
    s3: Option<S3Credentials>,
    /// The file whose first line is the secret keys' passphrase.
    pub key_passphrase_file: Option<PathBuf>,
}

pub fn parse_store(s: &str) -> Result<StoreUrl, BackendError> {
    match s {
        "sled" => Ok(StoreUrl::Sled),
        s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            Ok(StoreUrl::Postgres(s.to_string()))
        }
        s => Err(BackendError::BadStore(s.to_string())),
    }
}

pub fn parse_blobs(s: &str) -> Result<BlobsUrl, BackendError> {
    match s {
        "file" => Ok(BlobsUrl::File),
        s if s.starts_with("s3://") => Ok(BlobsUrl::S3(s.to_string())),
        s => Err(BackendError::BadBlobs(s.to_string())),
    }
}

impl Backends {
    /// The embedded defaults in `data`.
    pub fn embedded(data: &Path) -> Backends {
        Backends {
            data: data.to_path_buf(),
            store: StoreUrl::Sled,
            blobs: BlobsUrl::File,
            s3: None,
            key_passphrase_file: None,
        }
    }

    /// What `data` uses: `store`, `blobs` and `key_passphrase_file` as given (command
    /// line, environment), else the config file's, else the defaults. A relative
    /// `key_passphrase_file` in the config file is taken from the file's folder.
    pub fn choose(
        data: &Path,
        store: Option<&str>,
        blobs: Option<&str>,
        key_passphrase_file: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<Backends, BackendError> {
        let default_file = data.join("packyard.toml");
        let (path, must) = match config {
            Some(p) => (p.to_path_buf(), true),
            None => (default_file, false),
        };
        let file: ConfigFile = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| BackendError::Config {
                path: path.clone(),
                why: e.message().to_string(),
            })?,
            Err(e) if !must && e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => {
                return Err(BackendError::Config {
                    path,
                    why: e.to_string(),
                });
            }
        };
        Ok(Backends {
            data: data.to_path_buf(),
            store: match store.or(file.store.as_deref()) {
                Some(s) => parse_store(s)?,
                None => StoreUrl::Sled,
            },
            blobs: match blobs.or(file.blobs.as_deref()) {
                Some(b) => parse_blobs(b)?,
                None => BlobsUrl::File,
            },
            s3: file.s3,
            key_passphrase_file: match key_passphrase_file {
                Some(p) => Some(p.to_path_buf()),
                None => file
                    .key_passphrase_file
                    .map(|p| path.parent().unwrap_or(Path::new(".")).join(p)),
            },
        })
    }

    /// The secret keys' passphrase, read from its file now; none if no file is named.
    pub fn key_passphrase(
        &self,
    ) -> Result<Option<crate::repo::keys::Passphrase>, crate::repo::RepoError> {
        self.key_passphrase_file
            .as_deref()
            .map(crate::repo::keys::Passphrase::read)
            .transpose()
    }

    /// Whether this is a data directory one process holds (the embedded store).
    pub fn embedded_store(&self) -> bool {
        self.store == StoreUrl::Sled
    }

    /// Whether the repositories are directories under the data directory (`--blobs
    /// file`), so a path there is a `file://` repository.
    pub fn blobs_are_files(&self) -> bool {
        self.blobs == BlobsUrl::File
    }

    /// Whether the store exists yet: the embedded one once its files are there (a command
    /// that finds none has nothing to read); a database always.
    pub fn store_exists(&self) -> bool {
        match self.store {
            StoreUrl::Sled => self.data.join("store").is_dir(),
            StoreUrl::Postgres(_) => true,
        }
    }

    /// Where the repositories are directories (`--blobs file`): `<data>/repos`, each
    /// repository a `file://` repository below it.
    pub fn repos_dir(&self) -> Option<PathBuf> {
        self.blobs_are_files().then(|| self.data.join("repos"))
    }

    pub fn open_store(
        &self,
        patience: std::time::Duration,
    ) -> Result<Box<dyn Store>, crate::repo::RepoError> {
        match &self.store {
            StoreUrl::Sled => Ok(Box::new(SledStore::open_waiting(
                &self.data.join("store"),
                patience,
            )?)),
            // Shared by every process that names it: nothing to wait for here.
            StoreUrl::Postgres(url) => Ok(Box::new(PostgresStore::open(url)?)),
        }
    }

    /// The data directory's own files (`<data>/repos`), read without the store: what a
    /// `file://` reader of the repositories sees.
    pub fn file_blobs(&self) -> FsBlobs {
        FsBlobs::new(self.data.join("repos"))
    }

    /// The blob backend, checked: an object store that cannot be reached, or refuses the
    /// credentials or the bucket, is an error now rather than at the first upload.
    pub fn open_blobs(&self) -> Result<Box<dyn Blobs>, crate::repo::RepoError> {
        match &self.blobs {
            BlobsUrl::File => {
                let root = self.data.join("repos");
                std::fs::create_dir_all(&root).map_err(|source| crate::repo::RepoError::Io {
                    path: root.clone(),
                    source,
                })?;
                Ok(Box::new(self.file_blobs()))
            }
            BlobsUrl::S3(url) => {
                let b = match &self.s3 {
                    Some(c) => S3Blobs::open_with(url, &c.access_key_id, &c.secret_access_key)?,
                    None => S3Blobs::open(url)?,
                };
                b.check()?;
                Ok(Box::new(b))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_config_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b = Backends::choose(d, None, None, None, None).unwrap();
        assert_eq!((b.store, b.blobs), (StoreUrl::Sled, BlobsUrl::File));
        std::fs::write(
            d.join("packyard.toml"),
            "blobs = \"s3://b/p?endpoint=http://127.0.0.1:1\"\n\
             [s3]\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n",
        )
        .unwrap();
        let b = Backends::choose(d, None, None, None, None).unwrap();
        assert_eq!(
            b.blobs,
            BlobsUrl::S3("s3://b/p?endpoint=http://127.0.0.1:1".into())
        );
        assert!(
            !format!("{b:?}").contains("\"s\""),
            "the secret shows: {b:?}"
        );
        let b = Backends::choose(d, Some("sled"), Some("file"), None, None).unwrap();
        assert_eq!(b.blobs, BlobsUrl::File);
        // A named config file must be there; a bad one says where.
        assert!(Backends::choose(d, None, None, None, Some(&d.join("missing.toml"))).is_err());
        std::fs::write(d.join("serve.toml"), "listen = \"127.0.0.1:1\"\n").unwrap();
        assert!(Backends::choose(d, None, None, None, Some(&d.join("serve.toml"))).is_ok());
        std::fs::write(d.join("bad.toml"), "stor = \"sled\"\n").unwrap();
        let e = Backends::choose(d, None, None, None, Some(&d.join("bad.toml"))).unwrap_err();
        assert!(e.to_string().contains("bad.toml"), "{e}");
        assert!(parse_store("mysql://x").is_err());
        assert_eq!(b.key_passphrase_file, None);
        assert!(b.key_passphrase().unwrap().is_none());
        assert!(parse_blobs("gs://x").is_err());
        assert_eq!(
            crate::store::postgres::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }

    #[test]
    fn the_key_passphrase_file_is_chosen_like_the_backends_and_read_once_asked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("packyard.toml"), "key_passphrase_file = \"pass\"\n").unwrap();
        // Relative in the config file: beside the file.
        let b = Backends::choose(d, None, None, None, None).unwrap();
        assert_eq!(b.key_passphrase_file, Some(d.join("pass")));
        // Missing: an error naming the file, when the passphrase is needed.
        let e = b.key_passphrase().unwrap_err().to_string();
        assert!(e.contains("pass"), "{e}");
        // The first line, without its line break.
        std::fs::write(d.join("pass"), "s3cret words\r\nsecond line\n").unwrap();
        let p = b.key_passphrase().unwrap().unwrap();
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        // The command line wins.
        let other = d.join("other");
        let b = Backends::choose(d, None, None, Some(&other), None).unwrap();
        assert_eq!(b.key_passphrase_file.as_deref(), Some(other.as_path()));
        // An empty first line is refused, saying so.
        std::fs::write(&other, "\nsecond\n").unwrap();
        let e = b.key_passphrase().unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("other"), "{e}");
    }
}
