//! The release manager's workflow on the store: `lock` records a configuration's
//! canonical hash, [`Repositories::check_lock`] refuses a locked configuration whose file
//! changed, and `register` publishes into a registered repository only packages built
//! from a locked configuration.

use std::path::PathBuf;

use serde::Serialize;

use super::publish::{Candidate, PublishOptions, PublishReport};
use super::{RepoError, Repositories};
use crate::config::{ResolveOptions, Resolver, Tree};
use crate::lock;
use crate::store::{Change, LockRecord, RepoKind};

/// A lock to record: a configuration's canonical text, made from its tree (here, or on a
/// client that sends it to a server, which hashes it itself).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewLock {
    pub configuration: String,
    pub module: String,
    pub version: String,
    pub age: u32,
    /// The canonical text to hash.
    pub canonical: String,
}

/// What `lock` did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LockOutcome {
    #[serde(flatten)]
    pub lock: LockRecord,
    /// False when it was locked already, with the same content.
    pub new: bool,
}

impl Repositories {
    /// Locks `configuration` of `tree`: records its canonical content hash.
    pub fn lock(&self, tree: &Tree, configuration: &str) -> Result<LockOutcome, RepoError> {
        self.record_lock(new_lock(tree, configuration)?)
    }

    /// Records `lock` (made by [`new_lock`], here or on a client), unless the
    /// configuration is locked already: with the same content that is no change, with
    /// other content an error naming what changed. The hash is computed here.
    pub fn record_lock(&self, new: NewLock) -> Result<LockOutcome, RepoError> {
        let lock = LockRecord {
            sha256: lock::hash(&new.canonical),
            configuration: new.configuration,
            module: new.module,
            version: new.version,
            age: new.age,
            canonical: new.canonical,
            locked: chrono::Utc::now().timestamp(),
        };
        if let Some(existing) = self.store.lock(&lock.configuration)? {
            if existing.sha256 == lock.sha256 {
                return Ok(LockOutcome {
                    lock: existing,
                    new: false,
                });
            }
            return Err(changed(&existing, &lock.canonical));
        }
        self.store.apply(vec![Change::PutLock(lock.clone())])?;
        Ok(LockOutcome { lock, new: true })
    }

    /// Fails when `configuration` is locked and its file no longer matches the lock.
    /// Returns the lock, if there is one.
    pub fn check_lock(
        &self,
        tree: &Tree,
        configuration: &str,
    ) -> Result<Option<LockRecord>, RepoError> {
        let Some(existing) = self.store.lock(configuration)? else {
            return Ok(None);
        };
        let id = find(tree, configuration)?;
        let canonical = lock::canonical(tree, id);
        if lock::hash(&canonical) != existing.sha256 {
            return Err(changed(&existing, &canonical));
        }
        Ok(Some(existing))
    }

    /// Publishes packages built from the locked configuration into the registered
    /// repository `repo`. Each file must be one of the configuration's download-from
    /// paths for its platform, and an RPM's or DEB's name, version and release must be the
    /// configuration's package name, version and age.
    pub fn register(
        &self,
        what: Registering,
        repo: &str,
        opts: &PublishOptions,
        progress: &dyn crate::progress::Progress,
    ) -> Result<PublishReport, RepoError> {
        let Registering {
            tree,
            configuration,
            options,
            inputs,
        } = what;
        let record = self.repo(repo)?;
        if record.kind != RepoKind::Registered {
            return Err(RepoError::Lock {
                what: format!("{repo} is a volatile repository"),
                hint:
                    "register into a registered repository; `packyard publish` fills volatile ones"
                        .into(),
            });
        }
        if self.check_lock(tree, configuration)?.is_none() {
            return Err(not_locked(tree, configuration));
        }
        let candidates = registration(tree, &self.layout, configuration, options, inputs)?
            .into_iter()
            .map(|r| Candidate {
                expect: Some(r.expect),
                configuration: Some(configuration.to_string()),
                ..super::publish::candidate(r.source, Some(r.key), Some(r.platform))
            })
            .collect();
        self.publish_candidates(repo, candidates, opts, progress)
    }
}

/// Why a configuration's packages cannot be registered yet.
pub fn not_locked(tree: &Tree, configuration: &str) -> RepoError {
    RepoError::Lock {
        what: format!("{configuration} is not locked"),
        hint: format!(
            "only packages of a locked configuration are registered: `packyard lock {configuration} --tree {}`",
            tree.root.display()
        ),
    }
}

/// What to register: the `pack --out` trees (`inputs`) of a locked configuration, resolved
/// in `options`' release context.
pub struct Registering<'a> {
    pub tree: &'a Tree,
    pub configuration: &'a str,
    pub options: ResolveOptions,
    pub inputs: &'a [PathBuf],
}

/// A file to register: where it is, its download-from path and platform, and the name,
/// version and release its header must give.
#[derive(Debug, Clone)]
pub struct Registration {
    pub source: PathBuf,
    pub key: String,
    pub platform: String,
    pub expect: (String, String, String),
}

/// Checks that every file of `inputs` (`pack --out` trees) is one of `configuration`'s
/// download-from paths for its platform, and says what each header must hold. Reads the
/// tree only, so a client can check before it uploads.
pub fn registration(
    tree: &Tree,
    layout: &crate::layout::Layout,
    configuration: &str,
    options: ResolveOptions,
    inputs: &[PathBuf],
) -> Result<Vec<Registration>, RepoError> {
    let candidates = super::publish::collect(inputs, &PublishOptions::default(), layout)?;
    let mut checked = Vec::new();
    for c in candidates {
        let platform = c.platform.clone().ok_or_else(|| RepoError::BadPackage {
            path: c.source.display().to_string(),
            why: "its path names no platform; register the `pack --out` tree".into(),
        })?;
        let key = c.key.clone().unwrap_or_default();
        let expect = expected(tree, layout, configuration, &options, &key, &platform)
            .map_err(|why| not_from(&c.source.display().to_string(), configuration, why))?;
        checked.push(Registration {
            key,
            platform,
            source: c.source,
            expect,
        });
    }
    Ok(checked)
}

/// What a package of `configuration` at download-from path `key` for `platform` must
/// say it is (name, version, release), resolved from the tree; the error, when `key` is
/// not one of the configuration's download-from paths for that platform.
pub fn expected(
    tree: &Tree,
    layout: &crate::layout::Layout,
    configuration: &str,
    options: &ResolveOptions,
    key: &str,
    platform: &str,
) -> Result<(String, String, String), String> {
    let mut opts = options.clone();
    opts.platform = Some(platform.to_string());
    let (resolver, id) = Resolver::for_configuration(tree, layout, opts, configuration)
        .map_err(|e| e.to_string())?;
    let resolved = resolver.resolve(id).map_err(|e| e.to_string())?;
    let value = |k: &str| resolved.value(k).unwrap_or_default().to_string();
    let (name, version, age) = (value("packageName"), value("version"), value("age"));
    let paths = resolved
        .download
        .as_ref()
        .map(|d| [d.tarball.clone(), d.package.clone()]);
    // Its source packages lie beside the package: `<name>-<version>-<age>.src.rpm`, or
    // `<name>_<version>…` (`.dsc`, `.orig.tar.*`, `.debian.tar.*`); their headers say the
    // rest.
    let source = paths.as_ref().is_some_and(|[_, package]| {
        let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
        let file = key.rsplit('/').next().unwrap_or(key);
        dir(package) == dir(key)
            && (file == format!("{name}-{version}-{age}.src.rpm")
                || (file.starts_with(&format!("{name}_{version}"))
                    && (file.ends_with(".dsc") || super::package::is_source_part(file))))
    });
    if !source && !paths.as_ref().is_some_and(|e| e.iter().any(|p| p == key)) {
        return Err(format!(
            "its path is not one of the configuration's download-from paths for {platform} ({})",
            paths.map(|e| e.join(", ")).unwrap_or_default()
        ));
    }
    Ok((name, version, age))
}

/// What a package of a locked configuration must say it is (name, version, release),
/// read from the lock alone: its version and age, and its package name (a
/// `packageName` property, else the `package_name` field, else the component's name).
pub fn lock_expect(lock: &LockRecord) -> (String, String, String) {
    let name = lock::field(&lock.canonical, "property packageName")
        .or_else(|| lock::field(&lock.canonical, "package_name"))
        .unwrap_or_else(|| {
            lock.module
                .rsplit('.')
                .next()
                .unwrap_or(&lock.module)
                .into()
        });
    (name, lock.version.clone(), lock.age.to_string())
}

/// The lock of `configuration` as its tree has it now (not recorded anywhere yet).
pub fn new_lock(tree: &Tree, configuration: &str) -> Result<NewLock, RepoError> {
    let id = find(tree, configuration)?;
    let c = &tree.configurations[id];
    if c.commands().is_none() || c.version.is_none() {
        return Err(RepoError::Lock {
            what: format!("{configuration} is not a component configuration with a version"),
            hint: "lock the component configurations a release is built from".into(),
        });
    }
    let canonical = lock::canonical(tree, id);
    Ok(NewLock {
        configuration: configuration.into(),
        module: tree.modules[c.module].name.clone(),
        version: c
            .version
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default(),
        age: c
            .age
            .as_ref()
            .and_then(|(a, _)| u32::try_from(*a).ok())
            .unwrap_or(0),
        canonical,
    })
}

fn find(tree: &Tree, configuration: &str) -> Result<crate::config::ConfigId, RepoError> {
    tree.configuration(configuration)
        .ok_or_else(|| RepoError::Lock {
            what: format!(
                "no configuration named {configuration} in {}",
                tree.root.display()
            ),
            hint: "check the name with `packyard lint`".into(),
        })
}

fn not_from(path: &str, configuration: &str, why: String) -> RepoError {
    RepoError::BadPackage {
        path: path.to_string(),
        why: format!("not built from {configuration}: {why}"),
    }
}

/// The error for a locked configuration whose entry is now `canonical`.
pub fn changed(lock: &LockRecord, canonical: &str) -> RepoError {
    let changes = lock::changes(&lock.canonical, canonical);
    RepoError::Lock {
        what: format!(
            "{} is locked and its entry changed since: {}",
            lock.configuration,
            changes.join("; ")
        ),
        hint: format!(
            "a locked configuration never changes; undo the edit, or make a new version: \
             `packyard clone {} --version X.Y.Z [--age N]`",
            lock.configuration
        ),
    }
}
