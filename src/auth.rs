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
    #[error("token {id} expired at {at}")]
    Expired { id: String, at: String },
    #[error(
        "`{0}` is not a time to expire: give a duration (90d, 12h, 30m, 2w) or a date (2027-01-31, or RFC 3339), in the future"
    )]
    BadExpiry(String),
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
            AuthError::Expired { .. } => "an admin creates a new token with `packyard token \
                                           create --role ROLE [--expires 90d]`"
                .into(),
            AuthError::BadExpiry(_) => "for example `--expires 90d`".into(),
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

/// A token as the API and `token list --json` show it, wherever it was read: the store's
/// record without the secret's hash (store types are not API types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Token {
    pub id: String,
    pub role: Role,
    /// What it is for (free text).
    pub name: String,
    pub created: i64,
    /// When it was revoked; a revoked token is refused.
    pub revoked: Option<i64>,
    /// Unix seconds from which it is refused; `None`: it does not expire.
    pub expires: Option<i64>,
}

impl From<&TokenRecord> for Token {
    fn from(r: &TokenRecord) -> Token {
        Token {
            id: r.id.clone(),
            role: r.role,
            name: r.name.clone(),
            created: r.created,
            revoked: r.revoked,
            expires: r.expires,
        }
    }
}

/// Every token, as the API shows them.
pub fn list(store: &dyn Store) -> Result<Vec<Token>, AuthError> {
    Ok(store.tokens()?.iter().map(Token::from).collect())
}

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub record: Token,
    /// The bearer token to hand over.
    pub token: String,
}

const PREFIX: &str = "pky_";

fn digest(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// When a token given `text` (`--expires`) expires, as Unix seconds: `now` plus a
/// duration (`90d`, `12h`, `30m`, `2w`, `3600s`), or a date (`2027-01-31`, midnight UTC)
/// or RFC 3339 time. It must be in the future.
pub fn expiry(text: &str, now: i64) -> Result<i64, AuthError> {
    let bad = || AuthError::BadExpiry(text.to_string());
    let t = text.trim();
    let duration = t.char_indices().last().and_then(|(i, unit)| {
        let n: i64 = t[..i].parse().ok()?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        n.checked_mul(scale)?.checked_add(now)
    });
    let at = duration
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|d| d.timestamp())
        })
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp())
        })
        .ok_or_else(bad)?;
    if at <= now {
        return Err(bad());
    }
    Ok(at)
}

/// Creates a token with `role`, described by `name`, refused from `expires` (Unix
/// seconds) on when given.
pub fn create(
    store: &dyn Store,
    role: Role,
    name: &str,
    expires: Option<i64>,
) -> Result<NewToken, AuthError> {
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
        expires,
    };
    store.apply(vec![Change::PutToken(record.clone())])?;
    Ok(NewToken {
        record: Token::from(&record),
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
    if let Some(at) = record.expires
        && at <= chrono::Utc::now().timestamp()
    {
        return Err(AuthError::Expired {
            id: record.id,
            at: rfc3339(at),
        });
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
pub fn revoke(store: &dyn Store, id: &str) -> Result<Token, AuthError> {
    let mut record = store
        .token(id)?
        .ok_or_else(|| AuthError::NoSuchToken(id.into()))?;
    if record.revoked.is_none() {
        record.revoked = Some(chrono::Utc::now().timestamp());
        store.apply(vec![Change::PutToken(record.clone())])?;
    }
    Ok(Token::from(&record))
}

/// Constant-time comparison: how far two hashes agree must not show in the time taken.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Unix seconds as an RFC 3339 UTC time, for messages.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
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
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let t = create(&store, Role::Release, "ci", None).unwrap();
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

    #[test]
    fn tokens_expire() {
        let now = 1_800_000_000;
        assert_eq!(expiry("90d", now).unwrap(), now + 90 * 86_400);
        assert_eq!(expiry("2w", now).unwrap(), now + 14 * 86_400);
        assert_eq!(expiry(" 12h ", now).unwrap(), now + 12 * 3600);
        assert_eq!(expiry("2027-01-31", 0).unwrap(), 1_801_353_600);
        assert_eq!(
            expiry("2027-01-31T12:00:00+01:00", 0).unwrap(),
            1_801_393_200
        );
        for bad in ["", "d", "10", "10y", "-5d", "0s", "2020-01-01", "soon"] {
            assert!(
                matches!(expiry(bad, now), Err(AuthError::BadExpiry(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let now = chrono::Utc::now().timestamp();
        let live = create(&store, Role::Builder, "ci", Some(now + 3600)).unwrap();
        assert_eq!(
            check(&store, &live.token).unwrap().expires,
            Some(now + 3600)
        );
        let old = create(&store, Role::Builder, "ci", Some(now - 1)).unwrap();
        match check(&store, &old.token) {
            Err(AuthError::Expired { id, at }) => {
                assert_eq!(id, old.record.id);
                assert_eq!(at, rfc3339(now - 1));
            }
            other => panic!("{other:?}"),
        }
    }
}
