//! Repository signing keys (OpenPGP, with rPGP — the `pgp` crate the `rpm` crate signs
//! with): generate, import, export; detached and clear-text signatures for indexes
//! (`repomd.xml.asc`, `Release.gpg`, `InRelease`) and RPM header signatures.
//!
//! The secret key lives in `<data>/keys/<repo>.asc` (mode 0600), never under the served
//! tree; the public key is published at `<repo>/key.asc`. Signatures carry the time of the
//! content they sign (the newest publish), so the same content is signed identically.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedSecretKey, SubpacketConfig,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, KeyVersion, Password, SigningKey, Timestamp};
use serde::Serialize;

use super::{RepoError, Repositories};
use crate::store::{Change, RepoRecord};

/// Key algorithms offered by `key generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// RSA 4096: every rpm, dnf and apt reads it (EL8's rpm 4.14 included).
    Rsa4096,
    /// Ed25519 (v4 EdDSA): small and fast; rpm 4.16+ and gpg 2.2 read it.
    Ed25519,
}

/// What `key generate` / `key import` report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub repo: String,
    pub fingerprint: String,
    pub user_id: String,
}

/// A repository's secret key, ready to sign.
#[derive(Clone)]
pub struct Signer {
    key: SignedSecretKey,
    armored: String,
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

impl Signer {
    /// Reads an armored, unprotected secret key that can sign.
    pub fn from_armored(armored: &str) -> Result<Signer, RepoError> {
        let (key, _) = SignedSecretKey::from_string(armored).map_err(|e| {
            key_error(
                format!("not an armored OpenPGP secret key: {e}"),
                "export it with `gpg --armor --export-secret-keys KEYID` (without a passphrase)",
            )
        })?;
        key.verify_bindings().map_err(pgp_error)?;
        Ok(Signer {
            key,
            armored: armored.to_string(),
        })
    }

    /// [`Signer::from_armored`], and a trial signature: a key that is protected or cannot
    /// sign is refused when it is installed, not at a later publish.
    pub fn checked(armored: &str) -> Result<Signer, RepoError> {
        let s = Signer::from_armored(armored)?;
        s.detached(b"probe", 0)?;
        Ok(s)
    }

    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    pub fn user_id(&self) -> String {
        self.key
            .details
            .users
            .first()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .unwrap_or_default()
    }

    pub fn public_armored(&self) -> Result<String, RepoError> {
        self.key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)
    }

    /// The key that makes data signatures: a signing subkey if there is one (as gpg
    /// picks), else the primary key. Boxed: rPGP implements `SigningKey` for
    /// `Box<&dyn SigningKey>`, not for the bare reference.
    #[allow(clippy::redundant_allocation)]
    fn signing_key(&self) -> Box<&dyn SigningKey> {
        if let Some(sk) = self
            .key
            .secret_subkeys
            .iter()
            .find(|sk| sk.signatures.iter().any(|s| s.key_flags().sign()))
        {
            return Box::new(&sk.key);
        }
        Box::new(&self.key.primary_key)
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
        let signer = rpm::signature::pgp::Signer::from_asc(&self.armored)
            .map_err(|e| format!("the repository key cannot sign RPMs: {e}"))?;
        let mut pkg = rpm::Package::parse(&mut &bytes[..]).map_err(|e| e.to_string())?;
        let t = self.time(i64::try_from(pkg.metadata.get_build_time().unwrap_or(0)).unwrap_or(0));
        pkg.sign_with_timestamp(&signer, u32::try_from(t).unwrap_or(u32::MAX))
            .map_err(|e| format!("signing the RPM failed: {e}"))?;
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

    /// The repository's signer, if it has a key.
    pub fn signer(&self, repo: &RepoRecord) -> Result<Signer, RepoError> {
        let armored = self.store.secret_key(&repo.name)?.ok_or_else(|| {
            key_error(
                format!("repository {} has no signing key", repo.name),
                &format!("run `packyard key generate --repo {}`", repo.name),
            )
        })?;
        Signer::from_armored(&armored)
    }

    /// Generates the repository's key.
    pub fn generate_key(
        &self,
        repo: &str,
        alg: Algorithm,
        force: bool,
    ) -> Result<KeyInfo, RepoError> {
        let record = self.repo(repo)?;
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
        let key = params
            .build()
            .map_err(pgp_error)?
            .generate(rand::thread_rng())
            .map_err(pgp_error)?;
        let armored = key
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)?;
        self.install_key(record, &armored, force)
    }

    /// Imports an armored secret key as the repository's key.
    pub fn import_key(&self, repo: &str, armored: &str, force: bool) -> Result<KeyInfo, RepoError> {
        let record = self.repo(repo)?;
        self.install_key(record, armored, force)
    }

    /// The armored public key.
    pub fn public_key(&self, repo: &str) -> Result<String, RepoError> {
        let record = self.repo(repo)?;
        self.signer(&record)?.public_armored()
    }

    fn install_key(
        &self,
        record: RepoRecord,
        armored: &str,
        force: bool,
    ) -> Result<KeyInfo, RepoError> {
        let signer = Signer::checked(armored)?;
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
        self.store.put_secret_key(&record.name, armored)?;
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
}
