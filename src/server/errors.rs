//! Errors as the API shows them: a status and a JSON body with a stable `code`, the
//! `message` and a `hint` saying what to do.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::blobs::BlobError;
use crate::repo::RepoError;
use crate::repo::keys::KeyName;
use crate::store::StoreError;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        r.json(self)
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &e {
            RepoError::NoSuchRepo(_) => (S::NOT_FOUND, "no_such_repo"),
            RepoError::NoSuchPackage { .. } => (S::NOT_FOUND, "no_such_package"),
            RepoError::Exists(_) => (S::CONFLICT, "exists"),
            RepoError::Leftover { .. } => (S::CONFLICT, "leftover"),
            RepoError::BadName(_) => (S::BAD_REQUEST, "bad_name"),
            RepoError::UnknownPlatform(_) => (S::BAD_REQUEST, "unknown_platform"),
            RepoError::BadPackage { .. } => (S::BAD_REQUEST, "bad_package"),
            RepoError::Overwrite { .. } => (S::CONFLICT, "overwrite"),
            RepoError::Permanent(_) => (S::CONFLICT, "permanent"),
            RepoError::NotRegistered { .. } => (S::UNPROCESSABLE_ENTITY, "not_registered"),
            RepoError::PlatformNotTaken { .. } => (S::BAD_REQUEST, "platform_not_taken"),
            RepoError::Key { .. } => (S::BAD_REQUEST, "invalid"),
            RepoError::KeyExists(_) => (S::CONFLICT, "exists"),
            // A key given to import that the server's passphrase does not open: the
            // client's to fix; a stored key the server cannot unlock, or no passphrase
            // where the store needs one: the server's configuration.
            RepoError::KeyNeedsPassphrase {
                key: KeyName::Given { .. },
            }
            | RepoError::WrongPassphrase {
                key: KeyName::Given { .. },
                ..
            } => (S::BAD_REQUEST, "key_passphrase"),
            RepoError::KeyNeedsPassphrase { .. }
            | RepoError::WrongPassphrase { .. }
            | RepoError::ClearKeyRefused { .. }
            | RepoError::PassphraseFile { .. } => (S::INTERNAL_SERVER_ERROR, "key_passphrase"),
            RepoError::Lock { .. } => (S::CONFLICT, "lock"),
            RepoError::BadBuild(_) => (S::UNPROCESSABLE_ENTITY, "bad_build"),
            RepoError::Blob(BlobError::BadKey { .. }) => (S::BAD_REQUEST, "bad_path"),
            RepoError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            RepoError::Store(StoreError::Busy { .. }) | RepoError::InUse { .. } => {
                (S::SERVICE_UNAVAILABLE, "busy")
            }
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code,
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &e {
            AuthError::Missing => (S::UNAUTHORIZED, "unauthorized"),
            AuthError::Invalid | AuthError::Revoked { .. } => (S::UNAUTHORIZED, "bad_token"),
            AuthError::Expired { .. } => (S::UNAUTHORIZED, "expired_token"),
            AuthError::BadExpiry(_) => (S::BAD_REQUEST, "bad_expiry"),
            AuthError::Forbidden { .. } => (S::FORBIDDEN, "forbidden"),
            AuthError::NoSuchToken(_) => (S::NOT_FOUND, "no_such_token"),
            AuthError::Store(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            hint: Some(e.hint()),
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        RepoError::from(e).into()
    }
}

/// The server's own module tree does not read: its admin's to fix, not the caller's.
impl From<crate::config::TreeError> for ApiError {
    fn from(e: crate::config::TreeError) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad_tree", e.to_string())
            .hint("the server's --tree does not read; its admin can check it with `packyard lint`")
    }
}
