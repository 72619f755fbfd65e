//! API tokens: creating, checking and revoking the bearer tokens that `packyard serve`
//! asks of writers. A token reads `pky_<id>_<secret>`; the store keeps the id, the role
//! and the SHA-256 of the secret, so a leaked store does not leak usable tokens.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{Change, Role, Store, StoreError, TokenRecord};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token given")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("token {id} was revoked")]
    Revoked { id: String },
    #[error("this needs the {needed} role; the token has {has}")]
    Forbidden {
        needed: &'static str,
        has: &'static str,
    },
    #[error("no token with id {0}")]
    NoSuchToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    pub fn hint(&self) -> String {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Revoked { .. } => {
                "send `Authorization: Bearer <token>`; an admin creates tokens with \
                 `packyard token create --role builder|release|admin`"
                    .into()
            }
            AuthError::Forbidden { .. } => "ask an admin for a token with that role".into(),
            AuthError::NoSuchToken(_) => "see `packyard token list`".into(),
            AuthError::Store(e) => e.hint(),
        }
    }
}

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The bearer token to hand over.
    pub token: String,
}

const PREFIX: &str = "pky_";

fn digest(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// Creates a token with `role`, described by `name`.
pub fn create(store: &dyn Store, role: Role, name: &str) -> Result<NewToken, AuthError> {
    let mut rng = rand::thread_rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let secret = hex(&secret);
    let record = TokenRecord {
        id: id.clone(),
        role,
        name: name.to_string(),
        hash: digest(&secret),
        created: chrono::Utc::now().timestamp(),
        revoked: None,
    };
    store.apply(vec![Change::PutToken(record.clone())])?;
    Ok(NewToken {
        record,
        token: format!("{PREFIX}{id}_{secret}"),
    })
}

/// The record of a valid, unrevoked token.
pub fn check(store: &dyn Store, token: &str) -> Result<TokenRecord, AuthError> {
    let (id, secret) = token
        .strip_prefix(PREFIX)
        .and_then(|t| t.split_once('_'))
        .ok_or(AuthError::Invalid)?;
    let record = store.token(id)?.ok_or(AuthError::Invalid)?;
    if !same(record.hash.as_bytes(), digest(secret).as_bytes()) {
        return Err(AuthError::Invalid);
    }
    if record.revoked.is_some() {
        return Err(AuthError::Revoked { id: record.id });
    }
    Ok(record)
}

/// Whether `has` may do what `needed` allows.
pub fn require(has: Role, needed: Role) -> Result<(), AuthError> {
    if has >= needed {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            needed: needed.as_str(),
            has: has.as_str(),
        })
    }
}

/// Revokes token `id` (for good); revoking twice keeps the first date.
pub fn revoke(store: &dyn Store, id: &str) -> Result<TokenRecord, AuthError> {
    let mut record = store
        .token(id)?
        .ok_or_else(|| AuthError::NoSuchToken(id.into()))?;
    if record.revoked.is_none() {
        record.revoked = Some(chrono::Utc::now().timestamp());
        store.apply(vec![Change::PutToken(record.clone())])?;
    }
    Ok(record)
}

/// Constant-time comparison: how far two hashes agree must not show in the time taken.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn tokens_check_roles_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let t = create(&store, Role::Release, "ci").unwrap();
        assert!(t.token.starts_with("pky_"));
        let r = check(&store, &t.token).unwrap();
        assert_eq!(r.role, Role::Release);
        // Only the hash is stored.
        assert!(!serde_json::to_string(&r).unwrap().contains(&t.token[17..]));
        // A changed secret, a made-up id and garbage are all refused.
        let mut wrong = t.token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(check(&store, &wrong), Err(AuthError::Invalid)));
        assert!(matches!(
            check(&store, "pky_000000000000_00"),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(check(&store, "Bearer x"), Err(AuthError::Invalid)));
        assert!(require(r.role, Role::Builder).is_ok());
        assert!(require(r.role, Role::Release).is_ok());
        assert!(matches!(
            require(r.role, Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        revoke(&store, &r.id).unwrap();
        assert!(matches!(
            check(&store, &t.token),
            Err(AuthError::Revoked { .. })
        ));
        assert!(matches!(
            revoke(&store, "nope"),
            Err(AuthError::NoSuchToken(_))
        ));
    }
}
