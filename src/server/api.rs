//! `/api/v1`: the JSON API (described in `docs/openapi.yaml`). Reads are anonymous unless
//! a repository is private; writes need a bearer token: `builder` uploads to volatile
//! repositories, `release` also to registered ones, `admin` manages repositories, keys
//! and tokens.

use std::io::Write;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Shared;
use super::errors::ApiError;
use super::queue::PublishQueue;
use crate::auth;
use crate::repo::NewRepo;
use crate::repo::publish::{Action, Upload, UploadRegistration};
use crate::store::{FileKind, PackageRecord, RepoKind, Role};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .service(
                resource("/repos")
                    .route(web::get().to(list_repos))
                    .route(web::post().to(create_repo)),
            )
            .service(
                resource("/repos/{repo}")
                    .route(web::get().to(show_repo))
                    .route(web::delete().to(delete_repo)),
            )
            .service(resource("/repos/{repo}/key").route(web::post().to(generate_key)))
            .service(resource("/repos/{repo}/packages").route(web::get().to(list_packages)))
            .service(
                resource("/repos/{repo}/packages/{path:.*}").route(web::get().to(show_package)),
            )
            .service(resource("/repos/{repo}/files/{path:.*}").route(web::put().to(upload)))
            .service(
                resource("/repos/{repo}/builds/{path:.*}")
                    .route(web::get().to(show_build))
                    .route(web::put().to(record_build)),
            )
            .service(
                resource("/locks")
                    .route(web::get().to(list_locks))
                    .route(web::post().to(create_lock)),
            )
            .service(resource("/locks/{configuration}").route(web::get().to(show_lock)))
            .service(
                resource("/tokens")
                    .route(web::get().to(list_tokens))
                    .route(web::post().to(create_token)),
            )
            .service(resource("/tokens/{id}").route(web::delete().to(revoke_token)))
            .service(resource("/resolve").route(web::get().to(resolve)))
            .configure(super::farm::routes)
            .default_service(web::to(|req: HttpRequest| async move {
                Err::<HttpResponse, _>(
                    ApiError::not_found(format!("no API route {} {}", req.method(), req.path()))
                        .hint("see docs/openapi.yaml"),
                )
            })),
    );
}

/// A route whose other methods get 405 with a JSON reason.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        Err::<HttpResponse, _>(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} does not take {}", req.path(), req.method()),
            )
            .hint("see docs/openapi.yaml for the methods of each route"),
        )
    }))
}

/// Runs blocking library work (disk writes, fsync, key generation) off the HTTP workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

async fn list_repos(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    let signed_in = state.caller(&req)?.is_some();
    let list: Vec<_> = state
        .repos
        .list()?
        .into_iter()
        .filter(|r| signed_in || !r.record.private)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn create_repo(
    req: HttpRequest,
    body: web::Json<NewRepo>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    let s = state.clone();
    let record = blocking(move || Ok(s.repos.create(&body)?)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/repos/{}", record.name)))
        .json(crate::repo::Repo::from(&record)))
}

async fn show_repo(
    req: HttpRequest,
    path: web::Path<String>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let record = state.readable(&req, &path)?;
    Ok(HttpResponse::Ok().json(state.repos.show(&record.name)?))
}

/// `DELETE /repos/{repo}`: a volatile repository and everything in it, for good.
async fn delete_repo(
    req: HttpRequest,
    path: web::Path<String>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    let name = path.into_inner();
    // Refused before anything stops serving it.
    if state.repos.repo(&name)?.kind == crate::store::RepoKind::Registered {
        return Err(crate::repo::RepoError::Permanent(name).into());
    }
    // Its files stop being served now, and nothing kept of it outlives the delete (the
    // guard goes with the delete, which runs on even if this request is dropped).
    let deleting = state.known.deleting(&name);
    let s = state.clone();
    let gone = blocking(move || {
        let _deleting = deleting;
        Ok(s.repos.delete(&name)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(gone))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    #[serde(default)]
    algorithm: Option<crate::repo::keys::Algorithm>,
    /// An armored, unprotected secret key to install instead of generating one.
    #[serde(default)]
    armored: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn generate_key(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<KeyRequest>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    let repo = path.into_inner();
    let s = state.clone();
    if body.armored.is_some() && body.algorithm.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "give `algorithm` (generate a key) or `armored` (import one), not both",
        ));
    }
    let info = blocking(move || {
        Ok(match &body.armored {
            Some(armored) => s.repos.import_key(&repo, armored, body.force)?,
            None => s.repos.generate_key(
                &repo,
                body.algorithm
                    .unwrap_or(crate::repo::keys::Algorithm::Rsa4096),
                body.force,
            )?,
        })
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/repos/{}/key.asc", info.repo)))
        .json(info))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageQuery {
    /// Exact package name.
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    platform: Option<String>,
    kind: Option<FileKind>,
    /// Search: a part of the name or path, any case.
    q: Option<String>,
}

/// A package as the API lists it: what its record says a client may know, and where to
/// download it (where it sits in its index is the store's business).
#[derive(Serialize)]
pub struct Listed {
    pub path: String,
    pub kind: FileKind,
    pub platform: String,
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub size: u64,
    pub sha256: String,
    pub published: i64,
    pub configuration: Option<String>,
    pub signed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// A `.dsc`'s other files, beside it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::store::SourcePart>,
    pub url: String,
}

pub fn listed(repo: &str, r: PackageRecord) -> Listed {
    Listed {
        url: format!("/repos/{repo}/{}", crate::paths::url_path(&r.path)),
        path: r.path,
        kind: r.kind,
        platform: r.platform,
        name: r.name,
        epoch: r.epoch,
        version: r.version,
        release: r.release,
        arch: r.arch,
        size: r.size,
        sha256: r.sha256,
        published: r.published,
        configuration: r.configuration,
        signed: r.signed,
        external: r.external,
        parts: r.parts,
    }
}

/// The packages of `repo` that match the query, newest first within a name.
pub fn find_packages(
    state: &Shared,
    repo: &str,
    q: &PackageFilter,
) -> Result<Vec<PackageRecord>, ApiError> {
    let mut found: Vec<PackageRecord> = match &q.name {
        Some(n) => state.repos.store.packages_named(repo, n)?,
        None => state.repos.store.packages(repo)?,
    };
    let needle = q.q.as_ref().map(|s| s.to_lowercase());
    found.retain(|p| {
        q.version.as_ref().is_none_or(|v| &p.version == v)
            && q.arch.as_ref().is_none_or(|a| &p.arch == a)
            && q.platform.as_ref().is_none_or(|x| &p.platform == x)
            && q.kind.is_none_or(|k| p.kind == k)
            && needle.as_ref().is_none_or(|n| {
                p.name.to_lowercase().contains(n) || p.path.to_lowercase().contains(n)
            })
    });
    found.sort_by(|a, b| {
        a.name.cmp(&b.name).then_with(|| {
            crate::repo::publish::compare_versions(b, a).then_with(|| a.path.cmp(&b.path))
        })
    });
    Ok(found)
}

/// Filters for [`find_packages`].
#[derive(Default)]
pub struct PackageFilter {
    pub name: Option<String>,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub platform: Option<String>,
    pub kind: Option<FileKind>,
    pub q: Option<String>,
}

async fn list_packages(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PackageQuery>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let record = state.readable(&req, &path)?;
    let q = query.into_inner();
    let filter = PackageFilter {
        name: q.name,
        version: q.version,
        arch: q.arch,
        platform: q.platform,
        kind: q.kind,
        q: q.q,
    };
    let list: Vec<Listed> = find_packages(&state, &record.name, &filter)?
        .into_iter()
        .map(|p| listed(&record.name, p))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// A package the caller may read, with what its file holds (read off the workers).
pub async fn package_details(
    req: &HttpRequest,
    state: &Shared,
    repo: &str,
    key: String,
) -> Result<
    (
        crate::store::RepoRecord,
        PackageRecord,
        crate::repo::details::Details,
    ),
    ApiError,
> {
    let record = state.readable(req, repo)?;
    let s = state.clone();
    let name = record.name.clone();
    let (package, details) = blocking(move || Ok(s.repos.package_details(&name, &key)?)).await?;
    Ok((record, package, details))
}

async fn show_package(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, key) = path.into_inner();
    let (record, package, details) = package_details(&req, &state, &repo, key).await?;
    #[derive(Serialize)]
    struct Shown {
        #[serde(flatten)]
        listed: Listed,
        #[serde(flatten)]
        details: crate::repo::details::Details,
    }
    Ok(HttpResponse::Ok().json(Shown {
        listed: listed(&record.name, package),
        details,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// Sign an RPM with the repository key.
    #[serde(default)]
    sign: bool,
    /// The platform of a loose file (uploaded under its bare file name).
    platform: Option<String>,
    /// Into a registered repository without a registration: a third-party package the
    /// project carries as an external (admin).
    #[serde(default)]
    external: bool,
    /// A build farm task's `BUILD.INDEX.LEASE`: taken only while that lease is current.
    lease: Option<String>,
    /// Registering: the locked configuration the package was built from, the lock's
    /// hash as the client's tree gives it, and what the header must say.
    configuration: Option<String>,
    lock: Option<String>,
    name: Option<String>,
    version: Option<String>,
    release: Option<String>,
}

impl UploadQuery {
    fn registration(&self) -> Result<Option<UploadRegistration>, ApiError> {
        match (
            &self.configuration,
            &self.lock,
            &self.name,
            &self.version,
            &self.release,
        ) {
            (None, None, None, None, None) => Ok(None),
            (Some(c), Some(l), Some(n), Some(v), Some(r)) => Ok(Some(UploadRegistration {
                configuration: c.clone(),
                lock_sha256: l.clone(),
                expect: (n.clone(), v.clone(), r.clone()),
            })),
            _ => Err(ApiError::bad_request(
                "invalid",
                "registering takes all of configuration, lock, name, version and release",
            )
            .hint("`packyard register --server URL` sends them")),
        }
    }
}

/// `PUT /api/v1/repos/<repo>/files/<download-from path>`: the raw body is the package.
async fn upload(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<UploadQuery>,
    mut body: web::Payload,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, key) = path.into_inner();
    let result = receive(&req, &repo, &key, &query, &mut body, &state).await;
    match &result {
        Ok((_, seconds, action)) => state.metrics.upload(action.as_str(), Some(*seconds)),
        Err(e) => state.metrics.upload(e.code, None),
    }
    let (outcome, _, action) = result?;
    let status = match action {
        Action::Unchanged => StatusCode::OK,
        Action::Held => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    // Where it landed: a loose upload's path is the server's choice.
    let location = format!(
        "/repos/{repo}/{}",
        crate::paths::url_path(&outcome.file.path)
    );
    Ok(HttpResponse::build(status)
        .insert_header(("Location", location))
        .json(outcome))
}

async fn receive(
    req: &HttpRequest,
    repo: &str,
    key: &str,
    query: &UploadQuery,
    body: &mut web::Payload,
    state: &Shared,
) -> Result<(super::queue::UploadOutcome, f64, Action), ApiError> {
    let caller = state.require(req, Role::Builder)?;
    let record = state.repos.repo(repo)?;
    if record.kind == RepoKind::Registered {
        auth::require(caller.role, Role::Release)?;
    }
    if query.external {
        auth::require(caller.role, Role::Admin)?;
    }
    check_lease(state, query.lease.as_deref())?;
    crate::blobs::check_key(key).map_err(crate::repo::RepoError::from)?;
    let register = match query.registration()? {
        Some(r) => Some(checked_registration(state, key, r).await?),
        None => None,
    };
    let file_name = key.rsplit('/').next().unwrap_or(key);
    if !crate::repo::package::is_publishable(file_name) {
        return Err(ApiError::bad_request(
            "bad_package",
            format!("{key}: {}", crate::repo::package::PUBLISHABLE),
        )
        .hint("upload to the package's download-from path, e.g. what `packyard pack` wrote under --out"));
    }
    let limit = state.settings.max_upload_bytes;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{key}: the upload is larger than the server's limit of {limit} bytes"),
        )
        .hint("raise max_upload_bytes in the server's --config file")
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let expected = match req.headers().get("X-Checksum-Sha256") {
        None => None,
        Some(v) => {
            let v = v.to_str().unwrap_or_default().trim().to_ascii_lowercase();
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::bad_request(
                    "bad_checksum",
                    "X-Checksum-Sha256 must be 64 hexadecimal digits",
                )
                .hint(
                    "send the file's SHA-256 as `sha256sum` prints it, or leave the header out",
                ));
            }
            Some(v)
        }
    };

    // Stream the body to a temporary file, hashing as it comes.
    // Removed however the request ends (NamedTempFile deletes on drop).
    let mut temp = tempfile::NamedTempFile::new_in(&state.uploads).map_err(io_error)?;
    let file = temp.as_file_mut();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("bad_body", format!("{key}: the upload broke off: {e}"))
        })?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_big());
        }
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(io_error)?;
    }
    let got = format!("{:x}", hasher.finalize());
    if let Some(want) = expected
        && want != got
    {
        return Err(ApiError::bad_request(
            "checksum_mismatch",
            format!("{key}: the body's sha256 is {got}, X-Checksum-Sha256 says {want}"),
        )
        .hint("the upload was damaged or the checksum is of another file; nothing was stored"));
    }
    let start = Instant::now();
    if crate::repo::package::is_source_part(file_name) {
        // Published with the `.dsc` that names it, which comes after it.
        let (s, repo_name, key_name) = (state.clone(), repo.to_string(), key.to_string());
        let path = temp.path().to_path_buf();
        blocking(move || Ok(s.repos.hold_part(&repo_name, &key_name, &path)?)).await?;
        drop(temp);
        let outcome = super::queue::UploadOutcome {
            repo: repo.to_string(),
            file: crate::repo::publish::FileOutcome {
                path: key.to_string(),
                kind: FileKind::Dsc,
                action: Action::Held,
                size,
                sha256: got,
            },
            removed: Vec::new(),
            indexes: Vec::new(),
            batch: 0,
        };
        return Ok((outcome, start.elapsed().as_secs_f64(), Action::Held));
    }
    let upload = Upload {
        file: temp.path().to_path_buf(),
        key: key.to_string(),
        register,
    };
    let opts = crate::repo::PublishOptions {
        sign: query.sign,
        platform: query.platform.clone(),
        external: query.external,
    };
    let outcome = PublishQueue::publish(state, repo, upload, opts).await?;
    let action = outcome.file.action;
    Ok((outcome, start.elapsed().as_secs_f64(), action))
}

/// A registration as the client states it, checked against this server's module tree
/// when it has one (`serve --tree`): the configuration there matches its lock here, the
/// path is one of its download-from paths, and the package it must be is the tree's
/// answer, not the client's. (The lock itself is checked when it is published.)
async fn checked_registration(
    state: &Shared,
    key: &str,
    r: UploadRegistration,
) -> Result<UploadRegistration, ApiError> {
    let Some(dir) = state.settings.tree.clone() else {
        return Ok(r);
    };
    let (s, key) = (state.clone(), key.to_string());
    blocking(move || {
        let tree = s.tree(&dir).map_err(ApiError::from)?;
        let want = s.repos.check_registration_in(&tree, &r, &key)?;
        if want != r.expect {
            return Err(crate::repo::RepoError::Lock {
                what: format!(
                    "{key}: the upload registers {}-{}-{}, but the server's tree builds {}-{}-{} from {}",
                    r.expect.0, r.expect.1, r.expect.2, want.0, want.1, want.2, r.configuration
                ),
                hint: "register from the tree the server serves".into(),
            }
            .into());
        }
        Ok(r)
    })
    .await
}

/// `GET /api/v1/repos/<repo>/builds/<tarball path>`: the latest build of that component.
async fn show_build(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, tarball) = path.into_inner();
    let record = state.readable(&req, &repo)?;
    let s = state.clone();
    let t = tarball.clone();
    match blocking(move || Ok(s.repos.build(&record.name, &t)?)).await? {
        Some(b) => Ok(HttpResponse::Ok().json(b)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_build",
            format!("no build recorded beside {tarball} in repository {repo}"),
        )
        .hint("`packyard build` records one when it builds the component")),
    }
}

/// What a build node sends when a component's build ends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildUpload {
    record: crate::repo::builds::BuildRecord,
    log: String,
}

/// `PUT /api/v1/repos/<repo>/builds/<tarball path>`: a build's record and log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseQuery {
    /// A build farm task's `BUILD.INDEX.LEASE`.
    lease: Option<String>,
}

/// Refuses (409 `stale_lease`) what a build farm agent sends under a lease that is no
/// longer its task's.
fn check_lease(state: &Shared, lease: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = lease else {
        return Ok(());
    };
    let mut parts = text.splitn(3, '.');
    let (Some(b), Some(i), Some(l)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::bad_request(
            "invalid",
            "lease is BUILD.INDEX.LEASE",
        ));
    };
    let (Ok(b), Ok(i)) = (b.parse(), i.parse()) else {
        return Err(ApiError::bad_request(
            "invalid",
            "lease is BUILD.INDEX.LEASE",
        ));
    };
    Ok(state
        .farm
        .queue
        .check(state.repos.store.as_ref(), b, i, l)?)
}

async fn record_build(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<LeaseQuery>,
    body: web::Bytes,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let caller = state.require(&req, Role::Builder)?;
    check_lease(&state, query.lease.as_deref())?;
    let (repo, tarball) = path.into_inner();
    let record = state.repos.repo(&repo)?;
    if record.kind == RepoKind::Registered {
        auth::require(caller.role, Role::Release)?;
    }
    let upload: BuildUpload = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid", format!("the build record does not read: {e}"))
            .hint("send {\"record\": {...}, \"log\": \"...\"} as `packyard build` does")
    })?;
    let s = state.clone();
    let t = tarball.clone();
    let stored = crate::repo::builds::StoredBuild {
        record: upload.record.clone(),
        current: upload.record.result == crate::repo::builds::BuildResult::Built,
    };
    blocking(move || {
        Ok(s.repos
            .record_build(&record.name, &t, &upload.record, upload.log.as_bytes())?)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!(
                "/repos/{repo}/{}",
                crate::paths::url_path(&crate::paths::log_path(&tarball))
            ),
        ))
        .json(stored))
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "upload spool");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("the server could not spool the upload: {e}"),
    )
}

async fn list_locks(state: Shared) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.repos.store.locks()?))
}

async fn create_lock(
    req: HttpRequest,
    body: web::Json<crate::repo::release::NewLock>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Release)?;
    // Made on the client from its tree; the server hashes the canonical text itself.
    let lock = body.into_inner();
    let s = state.clone();
    let out = blocking(move || Ok(s.repos.record_lock(lock)?)).await?;
    let status = if out.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .insert_header((
            "Location",
            format!(
                "/api/v1/locks/{}",
                crate::paths::url_path(&out.lock.configuration)
            ),
        ))
        .json(out))
}

async fn show_lock(path: web::Path<String>, state: Shared) -> Result<HttpResponse, ApiError> {
    let lock = state.repos.store.lock(&path)?.ok_or_else(|| {
        ApiError::not_found(format!("{} is not locked", path.as_str()))
            .hint("lock it with `packyard lock CONFIGURATION --tree DIR`")
    })?;
    Ok(HttpResponse::Ok().json(lock))
}

async fn list_tokens(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    Ok(HttpResponse::Ok().json(auth::list(state.repos.store.as_ref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    role: Role,
    #[serde(default)]
    name: String,
    /// A duration (`90d`) or a date from which the token is refused.
    #[serde(default)]
    expires: Option<String>,
}

async fn create_token(
    req: HttpRequest,
    body: web::Json<TokenRequest>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    let s = state.clone();
    let t = blocking(move || {
        let expires = match &body.expires {
            Some(text) => Some(auth::expiry(text, chrono::Utc::now().timestamp())?),
            None => None,
        };
        Ok(auth::create(
            s.repos.store.as_ref(),
            body.role,
            &body.name,
            expires,
        )?)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/tokens/{}", t.record.id)))
        .json(t))
}

async fn revoke_token(
    req: HttpRequest,
    path: web::Path<String>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    state.require(&req, Role::Admin)?;
    let s = state.clone();
    let id = path.into_inner();
    let t = blocking(move || Ok(auth::revoke(s.repos.store.as_ref(), &id)?)).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// `GET /resolve`: the build node's plan, for nodes that only have curl. The node says
/// what it has (`installed=NAME=VERSION`, repeatable) and whether it may install
/// (`privileged`); the repositories are this server's (`repo=NAME`, repeatable; default:
/// every one the caller may read, registered ones first).
async fn resolve(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    let bad = |m: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m)
            .hint("see docs/openapi.yaml for /api/v1/resolve's parameters")
    };
    let mut configuration = None;
    let mut options = crate::config::ResolveOptions::default();
    let mut repos = Vec::new();
    let mut installed = std::collections::HashMap::new();
    let (mut privileged, mut runtime_deps, mut shallow) = (false, false, false);
    let flag = |k: &str, v: &str| match v {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(bad(format!("`{k}` takes true or false, not `{v}`"))),
    };
    let pair = |k: &str, v: &str| {
        v.split_once('=')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| bad(format!("`{k}` takes NAME=VALUE, not `{v}`")))
    };
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*k {
            "configuration" => configuration = Some(v.into_owned()),
            "platform" => options.platform = Some(v.into_owned()),
            "project" => options.project = Some(v.into_owned()),
            "p" => options.overrides.push(pair(&k, &v)?),
            "repo" => repos.push(v.into_owned()),
            "installed" => {
                let (n, ver) = pair(&k, &v)?;
                installed.insert(n, ver);
            }
            "privileged" => privileged = flag(&k, &v)?,
            "runtime_deps" => runtime_deps = flag(&k, &v)?,
            "shallow" => shallow = flag(&k, &v)?,
            other => return Err(bad(format!("unknown parameter `{other}`"))),
        }
    }
    let configuration = configuration.ok_or_else(|| bad("`configuration` is required".into()))?;
    let Some(tree_dir) = state.settings.tree.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_tree",
            "this server has no module tree to plan from",
        )
        .hint("start it with `packyard serve --tree DIR` (or `tree = ...` in its settings)"));
    };
    // The repositories: readable ones, named or all, registered first.
    let records: Vec<crate::store::RepoRecord> = if repos.is_empty() {
        let signed_in = state.caller(&req)?.is_some();
        let mut all: Vec<_> = state
            .repos
            .store
            .repos()?
            .into_iter()
            .filter(|r| signed_in || !r.private)
            .collect();
        all.sort_by(|a, b| a.search_order().cmp(&b.search_order()));
        all
    } else {
        repos
            .iter()
            .map(|r| state.readable(&req, r))
            .collect::<Result<_, _>>()?
    };
    let base = state.base_url(&req);
    let s = state.clone();
    let plan = blocking(move || {
        let sources: Vec<crate::resolve::sources::StoredRepo> = records
            .iter()
            .map(|r| crate::resolve::sources::StoredRepo {
                repos: &s.repos,
                repo: r.name.clone(),
                url: format!("{base}/repos/{}", crate::paths::url_path(&r.name)),
            })
            .collect();
        let tree = s.tree(&tree_dir).map_err(ApiError::from)?;
        let node = crate::resolve::node::ReportedNode {
            installed,
            privileged,
        };
        let packages: Vec<&dyn crate::resolve::Packages> = sources
            .iter()
            .map(|r| r as &dyn crate::resolve::Packages)
            .collect();
        let request = crate::resolve::PlanRequest {
            tree: &tree,
            layout: &s.layout,
            configuration: &configuration,
            options,
            runtime_deps,
            shallow,
        };
        crate::resolve::plan(&request, &packages, &node).map_err(|e| {
            let hint = e.hint();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unresolvable",
                e.to_string(),
            )
            .hint(hint)
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(plan))
}
