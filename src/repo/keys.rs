//! Repository signing keys (OpenPGP, with rPGP — the `pgp` crate the `rpm` crate signs
//! with): generate, import, export; detached and clear-text signatures for indexes
//! (`repomd.xml.asc`, `Release.gpg`, `InRelease`) and RPM header signatures.
//!
//! The store keeps each repository's armored secret key (the embedded store in
//! `<data>/keys/<repo>.asc`, mode 0600; PostgreSQL in a table), never under the served
//! tree; the public key is published at `<repo>/key.asc`. With a passphrase
//! (`--key-passphrase-file`) keys are stored with their secret parts protected by OpenPGP
//! S2K, and unlocked in memory only, to sign. A store that others read (not the embedded
//! one) takes protected keys only. Signatures carry the time of the content they sign (the
//! newest publish), so the same content is signed identically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedSecretKey, SubpacketConfig,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{
    KeyDetails, KeyVersion, Password, S2kParams, SecretParams, SigningKey, StringToKey, Timestamp,
};
use rand::Rng;
use serde::Serialize;
use zeroize::Zeroizing;

use super::{RepoError, Repositories};
use crate::store::{Change, RepoRecord, Store};

/// Key algorithms offered by `key generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// RSA 4096: every rpm, dnf and apt reads it (EL8's rpm 4.14 included).
    Rsa4096,
    /// Ed25519 (v4 EdDSA): small and fast; rpm 4.16+ and gpg 2.2 read it.
    Ed25519,
}

impl crate::choice::Choice for Algorithm {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            Algorithm::Rsa4096,
            "rsa4096",
            "RSA 4096: every rpm, dnf and apt reads it (EL8's rpm 4.14 included)",
        ),
        (
            Algorithm::Ed25519,
            "ed25519",
            "Ed25519 (v4 EdDSA): small and fast; rpm 4.16+ and gpg 2.2 read it",
        ),
    ];
}

/// What `key generate` / `key import` report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub repo: String,
    pub fingerprint: String,
    pub user_id: String,
}

/// The passphrase that protects the secret keys in the store: the first line of the file
/// `--key-passphrase-file` names. Kept in memory only, wiped when the last copy goes.
#[derive(Clone)]
pub struct Passphrase {
    secret: Arc<Zeroizing<Vec<u8>>>,
    file: PathBuf,
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passphrase(from {})", self.file.display())
    }
}

impl Passphrase {
    /// The first line of `file` (its line break not included); an empty one is refused.
    pub fn read(file: &Path) -> Result<Passphrase, RepoError> {
        let bad = |why: String| RepoError::PassphraseFile {
            path: file.to_path_buf(),
            why,
        };
        let text = Zeroizing::new(std::fs::read(file).map_err(|e| bad(e.to_string()))?);
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        // A file written on Windows ends its line with CR LF.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(bad("its first line, the passphrase, is empty".into()));
        }
        Ok(Passphrase {
            secret: Arc::new(Zeroizing::new(line.to_vec())),
            file: file.to_path_buf(),
        })
    }

    fn password(&self) -> Password {
        Password::from(&self.secret[..])
    }
}

/// The key a message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyName {
    /// A repository's key, as the store keeps it.
    Stored { repo: String },
    /// A key given to `key generate` or `key import` for a repository.
    Given {
        repo: String,
        fingerprint: String,
        user_id: String,
    },
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyName::Stored { repo } => write!(f, "the signing key of repository {repo}"),
            KeyName::Given {
                repo,
                fingerprint,
                user_id,
            } => write!(
                f,
                "key {fingerprint} ({user_id}) given for repository {repo}"
            ),
        }
    }
}

impl KeyName {
    fn given(repo: &str, key: &SignedSecretKey) -> KeyName {
        KeyName::Given {
            repo: repo.to_string(),
            fingerprint: fingerprint(key),
            user_id: user_id(key),
        }
    }
}

/// A repository's secret key, ready to sign: the part that signs is unlocked, in memory.
#[derive(Clone)]
pub struct Signer {
    key: SignedSecretKey,
    /// The same key for the `rpm` crate, made once rather than for every package.
    rpm: std::sync::OnceLock<Result<rpm::signature::pgp::Signer, String>>,
}

fn key_error(what: impl Into<String>, hint: &str) -> RepoError {
    RepoError::Key {
        what: what.into(),
        hint: hint.into(),
    }
}

fn pgp_error(e: impl std::fmt::Display) -> RepoError {
    key_error(
        format!("OpenPGP: {e}"),
        "check the key; `packyard key generate --force` makes a new one",
    )
}

fn when(t: i64) -> Timestamp {
    Timestamp::from_secs(u32::try_from(t.max(0)).unwrap_or(u32::MAX))
}

fn fingerprint(key: &SignedSecretKey) -> String {
    format!("{:X}", key.primary_key.fingerprint())
}

fn user_id(key: &SignedSecretKey) -> String {
    key.details
        .users
        .first()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .unwrap_or_default()
}

/// Reads an armored secret key (protected or not) and checks its self-signatures.
fn parse_secret(armored: &str) -> Result<SignedSecretKey, RepoError> {
    let (key, _) = SignedSecretKey::from_string(armored).map_err(|e| {
        key_error(
            format!("not an armored OpenPGP secret key: {e}"),
            "export it with `gpg --armor --export-secret-keys KEYID`",
        )
    })?;
    key.verify_bindings().map_err(pgp_error)?;
    Ok(key)
}

/// Which secret part makes data signatures: a signing subkey if there is one (as gpg
/// picks), else the primary key.
fn signing_part(key: &SignedSecretKey) -> Option<usize> {
    key.secret_subkeys
        .iter()
        .position(|sk| sk.signatures.iter().any(|s| s.key_flags().sign()))
}

/// A part that holds no secret (gpg's `--export-secret-subkeys` leaves such a stub of the
/// primary key, S2K type 101): nothing to unlock or protect.
fn is_stub(p: &SecretParams) -> bool {
    matches!(p, SecretParams::Encrypted(e) if matches!(
        e.string_to_key_params(),
        S2kParams::Cfb { s2k: StringToKey::Private { .. }, .. }
            | S2kParams::MalleableCfb { s2k: StringToKey::Private { .. }, .. }
    ))
}

/// Every secret part of `key`.
fn secret_parts(key: &SignedSecretKey) -> impl Iterator<Item = &SecretParams> {
    std::iter::once(key.primary_key.secret_params())
        .chain(key.secret_subkeys.iter().map(|sk| sk.key.secret_params()))
}

/// Whether any secret part of `key` is protected by a passphrase.
fn any_protected(key: &SignedSecretKey) -> bool {
    secret_parts(key).any(|p| p.is_encrypted() && !is_stub(p))
}

/// Whether every secret part of `key` is protected by a passphrase.
fn all_protected(key: &SignedSecretKey) -> bool {
    secret_parts(key).all(|p| p.is_encrypted())
}

/// Every secret part unlocked, in memory.
fn unlock_all(
    key: &mut SignedSecretKey,
    passphrase: &Passphrase,
    name: &KeyName,
) -> Result<(), RepoError> {
    let pw = passphrase.password();
    // rPGP tells a wrong passphrase only as a failed check of what it decrypted.
    let wrong = |_| RepoError::WrongPassphrase {
        key: name.clone(),
        file: passphrase.file.clone(),
    };
    if !is_stub(key.primary_key.secret_params()) {
        key.primary_key.remove_password(&pw).map_err(wrong)?;
    }
    for sk in &mut key.secret_subkeys {
        if !is_stub(sk.key.secret_params()) {
            sk.key.remove_password(&pw).map_err(wrong)?;
        }
    }
    Ok(())
}

/// S2K iterations: 16 MiB of hashing per unlock (OpenPGP's coded count 224), what rPGP and
/// gpg use by default.
const S2K_COUNT: u8 = 224;

/// How secret parts are protected: AES-256 in CFB mode with a SHA-1 check (S2K usage
/// 254), the key derived by iterated and salted SHA-256 — what gpg 2.2 reads and writes
/// (it reads no Argon2).
fn s2k_params() -> S2kParams {
    let mut rng = rand::thread_rng();
    let sym_alg = SymmetricKeyAlgorithm::AES256;
    let mut iv = vec![0u8; sym_alg.block_size()];
    rng.fill(&mut iv[..]);
    S2kParams::Cfb {
        sym_alg,
        s2k: StringToKey::new_iterated(&mut rng, HashAlgorithm::Sha256, S2K_COUNT),
        iv: iv.into(),
    }
}

/// `key` (unlocked) armored with every secret part protected by `passphrase`.
fn protected_armored(key: &SignedSecretKey, passphrase: &Passphrase) -> Result<String, RepoError> {
    let mut locked = key.clone();
    let pw = passphrase.password();
    if !is_stub(locked.primary_key.secret_params()) {
        locked
            .primary_key
            .set_password_with_s2k(&pw, s2k_params())
            .map_err(pgp_error)?;
    }
    for sk in &mut locked.secret_subkeys {
        if !is_stub(sk.key.secret_params()) {
            sk.key
                .set_password_with_s2k(&pw, s2k_params())
                .map_err(pgp_error)?;
        }
    }
    locked
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_error)
}

/// The armored public key of an armored secret key (nothing unlocked).
fn public_of(armored: &str) -> Result<String, RepoError> {
    parse_secret(armored)?
        .to_public_key()
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_error)
}

/// A new key of `alg` for repository `repo`, unprotected (in memory).
fn new_key(repo: &str, alg: Algorithm) -> Result<SignedSecretKey, RepoError> {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(match alg {
            Algorithm::Rsa4096 => KeyType::Rsa(4096),
            Algorithm::Ed25519 => KeyType::Ed25519Legacy,
        })
        .version(KeyVersion::V4)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("packyard repository {repo}"))
        .preferred_hash_algorithms(
            [HashAlgorithm::Sha512, HashAlgorithm::Sha256]
                .into_iter()
                .collect(),
        );
    params
        .build()
        .map_err(pgp_error)?
        .generate(rand::thread_rng())
        .map_err(pgp_error)
}

impl Signer {
    /// The signer of `key`, unlocking the part that signs with `passphrase` where it is
    /// protected.
    pub fn unlock(
        mut key: SignedSecretKey,
        passphrase: Option<&Passphrase>,
        name: &KeyName,
    ) -> Result<Signer, RepoError> {
        let part = signing_part(&key);
        let params = match part {
            Some(i) => key.secret_subkeys[i].key.secret_params(),
            None => key.primary_key.secret_params(),
        };
        if params.is_encrypted() {
            let Some(p) = passphrase else {
                return Err(RepoError::KeyNeedsPassphrase { key: name.clone() });
            };
            let pw = p.password();
            match part {
                Some(i) => key.secret_subkeys[i].key.remove_password(&pw),
                None => key.primary_key.remove_password(&pw),
            }
            .map_err(|_| RepoError::WrongPassphrase {
                key: name.clone(),
                file: p.file.clone(),
            })?;
        }
        Ok(Signer {
            key,
            rpm: Default::default(),
        })
    }

    /// The key as the rpm crate signs with it, made at the first RPM: the rpm crate takes
    /// fewer key kinds than index signatures do.
    fn rpm_signer(&self) -> Result<&rpm::signature::pgp::Signer, String> {
        self.rpm
            .get_or_init(|| {
                // The rpm crate reads keys from armored text: this one's (the part that
                // signs unlocked) lives in memory only, for as long as it is read.
                let text = Zeroizing::new(
                    self.key
                        .to_armored_string(ArmorOptions::default())
                        .map_err(|e| e.to_string())?,
                );
                let by = match signing_part(&self.key) {
                    Some(i) => self.key.secret_subkeys[i].key.fingerprint(),
                    None => self.key.primary_key.fingerprint(),
                };
                rpm::signature::pgp::Signer::from_asc(&text)
                    .and_then(|s| s.with_signing_key(by.as_bytes()))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| format!("the repository key cannot sign RPMs: {e}"))
    }

    /// A trial signature: a key that cannot sign is refused when it is installed, not
    /// at a later publish.
    fn check(&self) -> Result<(), RepoError> {
        self.detached(b"probe", 0).map(drop)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }

    pub fn user_id(&self) -> String {
        user_id(&self.key)
    }

    pub fn public_armored(&self) -> Result<String, RepoError> {
        self.key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)
    }

    /// The key that makes data signatures ([`signing_part`]). Boxed: rPGP implements
    /// `SigningKey` for `Box<&dyn SigningKey>`, not for the bare reference.
    #[allow(clippy::redundant_allocation)]
    fn signing_key(&self) -> Box<&dyn SigningKey> {
        match signing_part(&self.key) {
            Some(i) => Box::new(&self.key.secret_subkeys[i].key),
            None => Box::new(&self.key.primary_key),
        }
    }

    fn subpackets(
        k: &impl SigningKey,
        t: i64,
    ) -> Result<(Vec<Subpacket>, Vec<Subpacket>), RepoError> {
        Ok((
            vec![
                Subpacket::regular(SubpacketData::SignatureCreationTime(when(t)))
                    .map_err(pgp_error)?,
                Subpacket::regular(SubpacketData::IssuerFingerprint(k.fingerprint()))
                    .map_err(pgp_error)?,
            ],
            vec![
                Subpacket::regular(SubpacketData::IssuerKeyId(k.legacy_key_id()))
                    .map_err(pgp_error)?,
            ],
        ))
    }

    /// A signature time: the content's, but never before the key existed (verifiers
    /// refuse a signature older than its key).
    fn time(&self, t: i64) -> i64 {
        let created = i64::from(self.key.primary_key.created_at().as_secs());
        t.max(created)
    }

    /// An armored detached signature of `data`, made at time `t`.
    pub fn detached(&self, data: &[u8], t: i64) -> Result<String, RepoError> {
        let t = self.time(t);
        let k = self.signing_key();
        let (hashed, unhashed) = Self::subpackets(&k, t)?;
        let sig = DetachedSignature::sign_binary_data_with_subpackets(
            rand::thread_rng(),
            &k,
            &Password::empty(),
            HashAlgorithm::Sha512,
            data,
            SubpacketConfig::UserDefined { hashed, unhashed },
        )
        .map_err(pgp_error)?;
        sig.to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)
    }

    /// `text` clear-signed, as an `InRelease` file holds it.
    pub fn clearsign(&self, text: &str, t: i64) -> Result<String, RepoError> {
        let t = self.time(t);
        let k = self.signing_key();
        let mut cfg =
            SignatureConfig::v4(SignatureType::Text, k.algorithm(), HashAlgorithm::Sha512);
        let (hashed, unhashed) = Self::subpackets(&k, t)?;
        cfg.hashed_subpackets = hashed;
        cfg.unhashed_subpackets = unhashed;
        // The line break before the signature block is not part of the signed text, and
        // OpenPGP hashes lines without trailing blanks (rPGP does not strip them).
        let body = text.strip_suffix('\n').unwrap_or(text);
        let msg = CleartextSignedMessage::new_many(body, |normalized: &str| {
            let trimmed: Vec<&str> = normalized
                .split("\r\n")
                .map(|l| l.trim_end_matches([' ', '\t']))
                .collect();
            Ok(vec![cfg.sign(
                &k,
                &Password::empty(),
                trimmed.join("\r\n").as_bytes(),
            )?])
        })
        .map_err(pgp_error)?;
        msg.to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)
    }

    /// The RPM in `bytes`, signed (header signature), at its own build time.
    pub fn sign_rpm(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut pkg = rpm::Package::parse(&mut &bytes[..]).map_err(|e| e.to_string())?;
        let t = self.time(i64::try_from(pkg.metadata.get_build_time().unwrap_or(0)).unwrap_or(0));
        let archive = crate::pack::rpm::recorded_archive_size(&pkg);
        pkg.sign_with_timestamp(self.rpm_signer()?, u32::try_from(t).unwrap_or(u32::MAX))
            .map_err(|e| format!("signing the RPM failed: {e}"))?;
        // Signing rebuilds the signature header without the archive size: put it back.
        if let Some(size) = archive {
            crate::pack::rpm::set_archive_size(&mut pkg, u64::from(size))
                .map_err(|e| format!("signing the RPM failed: {e}"))?;
        }
        let mut out = Vec::with_capacity(bytes.len() + 1024);
        pkg.write(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

impl Repositories {
    /// Removes the repository's signing key, if it has one (the repository is going).
    pub(super) fn remove_key(&self, repo: &str) -> Result<(), RepoError> {
        Ok(self.store.remove_secret_key(repo)?)
    }

    /// The armored secret key of `repo` as the store keeps it.
    fn stored_key(&self, repo: &str) -> Result<String, RepoError> {
        self.store.secret_key(repo)?.ok_or_else(|| {
            key_error(
                format!("repository {repo} has no signing key"),
                &format!("run `packyard key generate --repo {repo}`"),
            )
        })
    }

    /// The repository's signer, if it has a key: unlocked with the configured passphrase
    /// where the stored key is protected.
    pub fn signer(&self, repo: &RepoRecord) -> Result<Signer, RepoError> {
        let armored = self.stored_key(&repo.name)?;
        let key = parse_secret(&armored)?;
        Signer::unlock(
            key,
            self.passphrase.as_ref(),
            &KeyName::Stored {
                repo: repo.name.clone(),
            },
        )
    }

    /// Why each repository key that cannot sign here cannot (no passphrase, the wrong
    /// one, a damaged key): a server says so when it starts rather than at the first
    /// publish into the repository.
    pub fn keys_that_cannot_sign(&self) -> Result<Vec<RepoError>, RepoError> {
        let mut out = Vec::new();
        for record in self.store.repos()? {
            if record.key.is_some()
                && let Err(e) = self.signer(&record)
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Refuses to keep `repo`'s key unprotected in a store that others read.
    fn may_keep_unprotected(&self, store: &dyn Store, repo: &str) -> Result<(), RepoError> {
        if store.keeps_secrets_local() {
            return Ok(());
        }
        Err(RepoError::ClearKeyRefused {
            repo: repo.to_string(),
            place: store.secret_key_place(repo),
        })
    }

    /// Generates the repository's key.
    pub fn generate_key(
        &self,
        repo: &str,
        alg: Algorithm,
        force: bool,
    ) -> Result<KeyInfo, RepoError> {
        let record = self.repo(repo)?;
        if self.passphrase.is_none() {
            // Before the work of making a key that could not be kept.
            self.may_keep_unprotected(&*self.store, repo)?;
        }
        let key = new_key(repo, alg)?;
        self.install_key(record, key, None, force)
    }

    /// Imports an armored secret key as the repository's key. A protected one must open
    /// with the configured passphrase.
    pub fn import_key(&self, repo: &str, armored: &str, force: bool) -> Result<KeyInfo, RepoError> {
        let record = self.repo(repo)?;
        let key = parse_secret(armored)?;
        self.install_key(record, key, Some(armored), force)
    }

    /// The armored public key.
    pub fn public_key(&self, repo: &str) -> Result<String, RepoError> {
        let record = self.repo(repo)?;
        public_of(&self.stored_key(&record.name)?)
    }

    /// Installs `key` (`given`: its armored text as given to `key import`): with a
    /// passphrase, stored with every secret part protected by it; without, stored as
    /// given, where the store keeps secrets on this machine only.
    fn install_key(
        &self,
        record: RepoRecord,
        mut key: SignedSecretKey,
        given: Option<&str>,
        force: bool,
    ) -> Result<KeyInfo, RepoError> {
        let name = KeyName::given(&record.name, &key);
        let kept = match &self.passphrase {
            Some(p) => {
                // Re-protected even where it came protected: with this passphrase and
                // these S2K parameters, whatever it had.
                unlock_all(&mut key, p, &name)?;
                protected_armored(&key, p)?
            }
            None => {
                if any_protected(&key) {
                    return Err(RepoError::KeyNeedsPassphrase { key: name });
                }
                self.may_keep_unprotected(&*self.store, &record.name)?;
                match given {
                    Some(text) => text.to_string(),
                    None => key
                        .to_armored_string(ArmorOptions::default())
                        .map_err(pgp_error)?,
                }
            }
        };
        let signer = Signer::unlock(key, None, &name)?;
        signer.check()?;
        // Like a publish: no publish, delete or other key change of this repository runs
        // meanwhile, and the record is read again under the lock (a publish that ran
        // since may have changed it; a delete, removed it).
        let _guard = self.lock_repo(&record.name)?;
        let mut record = self.repo(&record.name)?;
        if record.key.is_some() && !force {
            return Err(RepoError::KeyExists(record.name.clone()));
        }
        // First mark every index tree pending, so that a crash anywhere below leaves the
        // next publish to re-sign them (and to put the matching key.asc in place).
        record.pending.extend(self.trees_of(&record)?);
        record.pending.sort();
        record.pending.dedup();
        self.store.apply(vec![Change::PutRepo(record.clone())])?;
        self.store.put_secret_key(&record.name, &kept)?;
        record.key = Some(signer.fingerprint());
        self.store.apply(vec![Change::PutRepo(record.clone())])?;
        let pending: std::collections::BTreeSet<String> = record.pending.iter().cloned().collect();
        self.rebuild_indexes(&record, &pending, Some(&signer), Default::default())?;
        Ok(KeyInfo {
            repo: record.name,
            fingerprint: signer.fingerprint(),
            user_id: signer.user_id(),
        })
    }

    /// `repo`'s armored secret key as store `to` must keep it, for a migration: as it is
    /// where `to` keeps secrets on this machine, or where it is protected; else
    /// protected with the configured passphrase (without one, an error). A key `to`
    /// already holds protected, the same key and opened by the passphrase, is kept as it
    /// is (`None`), so a second migration changes nothing.
    pub(super) fn key_for(
        &self,
        to: &dyn Store,
        repo: &str,
        armored: &str,
    ) -> Result<Option<String>, RepoError> {
        if to.keeps_secrets_local() {
            return Ok(Some(armored.to_string()));
        }
        let name = KeyName::Stored {
            repo: repo.to_string(),
        };
        let named = |e: RepoError| match e {
            RepoError::Key { what, hint } => RepoError::Key {
                what: format!("{name} ({}): {what}", self.store.secret_key_place(repo)),
                hint,
            },
            e => e,
        };
        let mut key = parse_secret(armored).map_err(named)?;
        if all_protected(&key) {
            // Opened now: a passphrase that does not open it would leave every server
            // unable to sign.
            if let Some(p) = &self.passphrase {
                unlock_all(&mut key, p, &name)?;
            }
            return Ok(Some(armored.to_string()));
        }
        let Some(p) = &self.passphrase else {
            self.may_keep_unprotected(to, repo)?;
            return Ok(Some(armored.to_string()));
        };
        unlock_all(&mut key, p, &name)?;
        if let Some(there) = to.secret_key(repo)?
            && let Ok(mut held) = parse_secret(&there)
            && all_protected(&held)
            && held.primary_key.fingerprint() == key.primary_key.fingerprint()
            && unlock_all(&mut held, p, &name).is_ok()
        {
            return Ok(None);
        }
        protected_armored(&key, p).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::NewRepo;

    /// A passphrase file holding `text` (and a line after it, which is not read).
    fn passphrase(dir: &Path, name: &str, text: &str) -> Passphrase {
        let file = dir.join(name);
        std::fs::write(&file, format!("{text}\nnot this line\n")).unwrap();
        Passphrase::read(&file).unwrap()
    }

    fn open(dir: &Path, p: Option<&Passphrase>) -> Repositories {
        Repositories::open(&dir.join("data"), crate::layout::Layout::builtin())
            .unwrap()
            .with_key_passphrase(p.cloned())
    }

    fn verifies(public: &str, signature: &str, data: &[u8]) -> bool {
        let (public, _) = pgp::composed::SignedPublicKey::from_string(public).unwrap();
        let (sig, _) = DetachedSignature::from_string(signature).unwrap();
        sig.verify(&public, data).is_ok()
    }

    fn armored(key: &SignedSecretKey) -> String {
        key.to_armored_string(ArmorOptions::default()).unwrap()
    }

    #[test]
    fn a_key_is_stored_protected_and_signs_only_with_its_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let right = passphrase(dir.path(), "right", "correct horse");
        let repos = open(dir.path(), Some(&right));
        repos.create(&NewRepo::volatile("r")).unwrap();
        let info = repos.generate_key("r", Algorithm::Ed25519, false).unwrap();
        let stored = repos.store.secret_key("r").unwrap().unwrap();
        let key = parse_secret(&stored).unwrap();
        assert!(all_protected(&key), "stored unprotected:\n{stored}");
        assert_eq!(fingerprint(&key), info.fingerprint);
        // Protected the way gpg 2.2 reads: AES-256, CFB with SHA-1 check, iterated and
        // salted SHA-256.
        let SecretParams::Encrypted(e) = key.primary_key.secret_params() else {
            unreachable!()
        };
        assert!(matches!(
            e.string_to_key_params(),
            S2kParams::Cfb {
                sym_alg: SymmetricKeyAlgorithm::AES256,
                s2k: StringToKey::IteratedAndSalted {
                    hash_alg: HashAlgorithm::Sha256,
                    ..
                },
                ..
            }
        ));
        let record = repos.repo("r").unwrap();
        let signer = repos.signer(&record).unwrap();
        let public = repos.public_key("r").unwrap();
        assert!(verifies(
            &public,
            &signer.detached(b"data", 1).unwrap(),
            b"data"
        ));
        drop(repos);

        // The public key needs no passphrase; signing does, and says whose key and how.
        let repos = open(dir.path(), None);
        assert_eq!(repos.public_key("r").unwrap(), public);
        let e = repos.signer(&record).err().unwrap();
        assert!(
            matches!(&e, RepoError::KeyNeedsPassphrase { key: KeyName::Stored { repo } } if repo == "r"),
            "{e:?}"
        );
        assert!(e.to_string().contains("repository r"), "{e}");
        assert!(e.hint().unwrap().contains("--key-passphrase-file"), "{e:?}");
        assert!(e.hint().unwrap().contains(crate::repo::PASSPHRASE_ENV));
        drop(repos);

        let wrong = passphrase(dir.path(), "wrong", "battery staple");
        let repos = open(dir.path(), Some(&wrong));
        let e = repos.signer(&record).err().unwrap();
        assert!(
            matches!(&e, RepoError::WrongPassphrase { key: KeyName::Stored { .. }, file, .. } if file.ends_with("wrong")),
            "{e:?}"
        );
        assert!(e.to_string().contains("repository r"), "{e}");
        // Nothing was changed by trying.
        assert_eq!(repos.store.secret_key("r").unwrap().unwrap(), stored);
    }

    #[test]
    fn protecting_and_unlocking_round_trip_and_a_wrong_passphrase_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = passphrase(dir.path(), "p", "pass phrase");
        let other = passphrase(dir.path(), "other", "another one");
        let key = new_key("r", Algorithm::Ed25519).unwrap();
        let locked = protected_armored(&key, &p).unwrap();
        assert!(!locked.contains(&armored(&key)));
        let mut back = parse_secret(&locked).unwrap();
        assert!(all_protected(&back) && any_protected(&back));
        let name = KeyName::given("r", &back);
        let e = unlock_all(&mut back.clone(), &other, &name).unwrap_err();
        assert!(matches!(e, RepoError::WrongPassphrase { .. }), "{e:?}");
        assert!(e.to_string().contains(&fingerprint(&key)), "{e}");
        unlock_all(&mut back, &p, &name).unwrap();
        assert!(!any_protected(&back));
        // The same secret: what it signs verifies with the original's public key.
        let signer = Signer::unlock(back, None, &name).unwrap();
        let public = key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .unwrap();
        assert!(verifies(&public, &signer.detached(b"x", 0).unwrap(), b"x"));
        // A protected key opens for signing with the passphrase alone, and RPMs too.
        let signer = Signer::unlock(parse_secret(&locked).unwrap(), Some(&p), &name).unwrap();
        let mut rpm = rpm::PackageBuilder::new("t", "1", "MIT", "noarch", "t")
            .build()
            .unwrap();
        crate::pack::rpm::set_archive_size(&mut rpm, 124).unwrap();
        let mut bytes = Vec::new();
        rpm.write(&mut bytes).unwrap();
        let signed = signer.sign_rpm(&bytes).unwrap();
        let pkg = rpm::Package::parse(&mut &signed[..]).unwrap();
        pkg.verify_signature(rpm::signature::pgp::Verifier::from_asc(&public).unwrap())
            .unwrap();
        // The archive size rpm2cpio checks survives the signing.
        assert_eq!(crate::pack::rpm::recorded_archive_size(&pkg), Some(124));
    }

    #[test]
    fn imports_take_keys_the_passphrase_opens_and_store_them_protected_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = passphrase(dir.path(), "p", "pass phrase");
        let other = passphrase(dir.path(), "other", "another one");
        let key = new_key("r", Algorithm::Ed25519).unwrap();
        let fpr = fingerprint(&key);
        let plain = armored(&key);
        let by_p = protected_armored(&key, &p).unwrap();
        let by_other = protected_armored(&key, &other).unwrap();

        // With a passphrase: an unprotected key, and one it opens, are stored protected
        // (re-protected: the stored text is ours, not the given one).
        let repos = open(dir.path(), Some(&p));
        repos.create(&NewRepo::volatile("r")).unwrap();
        for given in [&plain, &by_p] {
            let info = repos.import_key("r", given, true).unwrap();
            assert_eq!(info.fingerprint, fpr);
            let stored = repos.store.secret_key("r").unwrap().unwrap();
            assert_ne!(&stored, given);
            assert!(all_protected(&parse_secret(&stored).unwrap()));
            repos.signer(&repos.repo("r").unwrap()).unwrap();
        }
        // One protected by another passphrase: refused, naming the key, nothing stored.
        let before = repos.store.secret_key("r").unwrap();
        let e = repos.import_key("r", &by_other, true).unwrap_err();
        assert!(
            matches!(&e, RepoError::WrongPassphrase { key: KeyName::Given { fingerprint, .. }, .. } if *fingerprint == fpr),
            "{e:?}"
        );
        assert!(e.to_string().contains(&fpr) && e.to_string().contains("repository r"));
        assert!(e.hint().unwrap().contains("gpg --passwd"), "{e:?}");
        assert_eq!(repos.store.secret_key("r").unwrap(), before);
        drop(repos);

        // Without a passphrase (the embedded store): a protected key is refused; an
        // unprotected one is stored as given, as before passphrases.
        let repos = open(dir.path(), None);
        let e = repos.import_key("r", &by_p, true).unwrap_err();
        assert!(
            matches!(
                &e,
                RepoError::KeyNeedsPassphrase {
                    key: KeyName::Given { .. }
                }
            ),
            "{e:?}"
        );
        repos.import_key("r", &plain, true).unwrap();
        assert_eq!(repos.store.secret_key("r").unwrap().unwrap(), plain);
        repos.signer(&repos.repo("r").unwrap()).unwrap();
    }

    #[test]
    fn an_empty_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p");
        for text in ["", "\n", "\r\nsecond\n"] {
            std::fs::write(&file, text).unwrap();
            let e = Passphrase::read(&file).unwrap_err();
            assert!(matches!(e, RepoError::PassphraseFile { .. }), "{e:?}");
            assert!(e.to_string().contains("empty"), "{e}");
        }
        let e = Passphrase::read(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
