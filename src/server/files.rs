//! `/repos/<repo>/...`: the repository trees as plain files (Range, ETag, Last-Modified,
//! conditional requests — actix-files does those), and the generated client set-up files
//! `<platform>.repo` and `<suite>.sources`. Paths are checked twice: as text (no `..`,
//! no hidden parts, no absolute paths) and, once resolved, as a place below the
//! repository's directory. Directories are never listed.

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};

use super::Shared;
use super::errors::ApiError;
use crate::blobs::{Data, Meta};
use crate::layout::{Layout, PackageFormat};
use crate::store::{FileKind, RepoRecord};

/// Files up to this size are read on the worker thread: from the page cache that is
/// faster than a hop to the blocking pool, and repository files are mostly small.
const SYNC_READ_LIMIT: u64 = 1 << 30;

/// How long a redirect's presigned URL works (`--redirect-blobs`).
const REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, tail) = path.into_inner();
    if !tail.contains('/')
        && let Some((stem, kind)) = tail.rsplit_once('.')
        && matches!(kind, "repo" | "sources")
    {
        let record = state.readable(&req, &repo)?;
        return match kind {
            "repo" => dnf_repo_file(&state, &req, &record, stem),
            _ => apt_sources_file(&state, &req, &record, stem),
        };
    }
    state.may_read(&req, &repo)?;
    let missing = || ApiError::not_found(format!("no file {tail} in repository {repo}"));
    if !plain_path(&tail) || state.deleting(&repo) {
        return Err(missing());
    }
    if state.settings.redirect_blobs
        && let Some(url) = state.repos.package_url(&repo, &tail, REDIRECT_TTL)?
    {
        // Short-lived: the redirect itself is not to be kept past the URL's expiry.
        return Ok(HttpResponse::Found()
            .insert_header(("Location", url))
            .insert_header(("Cache-Control", "no-store"))
            .finish());
    }
    let Some(object) = state.repos.open_path(&repo, &tail, None)? else {
        return Err(missing());
    };
    match object.data {
        // A file: actix-files answers Range and the conditional requests from it.
        Data::File(file) => {
            let named = NamedFile::from_file(file, &tail)
                .map_err(|_| missing())?
                .set_content_type(content_type(&tail))
                .set_content_disposition(ContentDisposition {
                    disposition: DispositionType::Inline,
                    parameters: vec![],
                })
                .read_mode_threshold(SYNC_READ_LIMIT);
            Ok(named.into_response(&req))
        }
        Data::Bytes(bytes) => Ok(from_memory(&req, &object.meta, bytes, content_type(&tail))),
    }
}

/// An object read into memory, answered as actix-files answers a file: ETag and
/// Last-Modified, 304 to a matching conditional request, one byte range (206, or 416).
fn from_memory(req: &HttpRequest, meta: &Meta, bytes: Vec<u8>, ct: mime::Mime) -> HttpResponse {
    use actix_web::http::{StatusCode, header};
    let modified = header::HttpDate::from(meta.modified).to_string();
    let header_is = |name: header::HeaderName, v: &str| {
        req.headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.split(',').any(|t| t.trim() == v || t.trim() == "*"))
    };
    let unchanged = header_is(header::IF_NONE_MATCH, &meta.etag)
        || (!req.headers().contains_key(header::IF_NONE_MATCH)
            && req
                .headers()
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<header::HttpDate>().ok())
                .is_some_and(|since| {
                    let since = std::time::SystemTime::from(since);
                    meta.modified
                        .duration_since(since)
                        .map_or(true, |d| d.as_secs() == 0)
                }));
    let answer = |status: StatusCode| {
        let mut b = HttpResponse::build(status);
        b.insert_header((header::ETAG, meta.etag.as_str()))
            .insert_header((header::LAST_MODIFIED, modified.as_str()))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .insert_header(header::ContentType(ct.clone()));
        b
    };
    if unchanged {
        return answer(StatusCode::NOT_MODIFIED).finish();
    }
    let len = bytes.len() as u64;
    if let Some(range) = req
        .headers()
        .get(header::RANGE)
        .and_then(|h| h.to_str().ok())
    {
        return match actix_files::HttpRange::parse(range, len).as_deref() {
            Ok([r]) => {
                let (start, n) = (r.start as usize, r.length as usize);
                answer(StatusCode::PARTIAL_CONTENT)
                    .insert_header((
                        header::CONTENT_RANGE,
                        format!("bytes {}-{}/{len}", r.start, r.start + r.length - 1),
                    ))
                    .body(bytes[start..start + n].to_vec())
            }
            // Several ranges: the whole object, as a server may answer.
            Ok(_) => answer(StatusCode::OK).body(bytes),
            Err(_) => answer(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish(),
        };
    }
    answer(StatusCode::OK).body(bytes)
}

/// A relative path without `.`/`..`/empty parts, control characters or hidden parts
/// (generation directories and other bookkeeping start with `.`).
fn plain_path(tail: &str) -> bool {
    crate::blobs::check_key(tail).is_ok() && !tail.split('/').any(|p| p.starts_with('.'))
}

fn content_type(path: &str) -> mime::Mime {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let t = match ext {
        "rpm" => "application/x-rpm",
        "deb" => "application/vnd.debian.binary-package",
        "gz" => "application/gzip",
        "xz" => "application/x-xz",
        "zst" => "application/zstd",
        "xml" => "application/xml",
        "asc" if name == "key.asc" => "application/pgp-keys",
        // `repodata/repomd.xml.key`, the key SUSE's tools look for beside the index.
        "key" => "application/pgp-keys",
        "asc" | "gpg" => "application/pgp-signature",
        "sha256" => "text/plain; charset=utf-8",
        _ if matches!(name, "Release" | "InRelease" | "Packages") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    t.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

/// The platforms of `format` that repository `record` takes.
fn platforms_of<'a>(
    layout: &'a Layout,
    record: &'a RepoRecord,
    format: PackageFormat,
) -> impl Iterator<Item = &'a crate::layout::Platform> + 'a {
    layout.platforms.values().filter(move |p| {
        p.format == format && (record.platforms.is_empty() || record.platforms.contains(&p.name))
    })
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

/// `<platform>.repo`: drop it into `/etc/yum.repos.d/` as is, or give its URL to
/// `zypper addrepo`.
fn dnf_repo_file(
    state: &Shared,
    req: &HttpRequest,
    record: &RepoRecord,
    platform: &str,
) -> Result<HttpResponse, ApiError> {
    let layout = &state.repos.layout;
    if !platforms_of(layout, record, PackageFormat::Rpm).any(|p| p.name == platform) {
        return Err(ApiError::not_found(format!(
            "repository {} has no RPM platform {platform}",
            record.name
        ))
        .hint("see `/api/v1/repos/<repo>` for its platforms"));
    }
    // Packages are checked (gpgcheck) only when every RPM of the platform is signed;
    // the signed metadata (repo_gpgcheck) vouches for their checksums either way.
    let rpms: Vec<_> = state
        .repos
        .store
        .packages(&record.name)?
        .into_iter()
        .filter(|p| p.kind == FileKind::Rpm && p.platform == platform)
        .collect();
    let signed_rpms = !rpms.is_empty() && rpms.iter().all(|p| p.signed);
    let base = format!("{}/repos/{}", state.base_url(req), record.name);
    let yum = crate::repo::publish::yum_dir(&state.repos, platform);
    let signed = record.key.is_some();
    let mut out = format!(
        "[packyard-{repo}-{platform}]\n\
         name=packyard {repo} ({platform})\n\
         baseurl={base}/{yum}/\n\
         enabled=1\n",
        repo = record.name,
    );
    if signed {
        out += &format!(
            "gpgcheck={}\nrepo_gpgcheck=1\ngpgkey={base}/{}\n",
            u8::from(signed_rpms),
            layout.repository.key
        );
    } else {
        out += "# the repository has no signing key: nothing can be checked\n\
                gpgcheck=0\nrepo_gpgcheck=0\n";
    }
    if record.kind == crate::store::RepoKind::Volatile {
        // Nightly builds replace each other: look again after a minute, not a day (dnf),
        // and before each command at all (zypper, which ignores metadata_expire and
        // otherwise never refreshes a repository added from a file by itself).
        out += "metadata_expire=60\nautorefresh=1\n";
    }
    Ok(text(out))
}

/// `<suite>.sources`: drop it into `/etc/apt/sources.list.d/` as is (deb822, the key
/// inline in `Signed-By`).
fn apt_sources_file(
    state: &Shared,
    req: &HttpRequest,
    record: &RepoRecord,
    suite: &str,
) -> Result<HttpResponse, ApiError> {
    let layout = &state.repos.layout;
    let arches: Vec<&str> = platforms_of(layout, record, PackageFormat::Deb)
        .filter(|p| p.os == suite)
        .map(|p| p.deb_arch.as_str())
        .collect();
    if arches.is_empty() {
        return Err(ApiError::not_found(format!(
            "repository {} has no APT suite {suite}",
            record.name
        ))
        .hint("suites are the os tags of its DEB platforms, e.g. deb12"));
    }
    let base = format!("{}/repos/{}", state.base_url(req), record.name);
    let mut out = format!(
        "Types: deb\nURIs: {base}/{}\nSuites: {suite}\nComponents: {}\nArchitectures: {}\n",
        layout.repository.apt,
        layout.repository.apt_component,
        arches.join(" ")
    );
    if record.key.is_some() {
        let key = state.repos.public_key(&record.name)?;
        out += "Signed-By:\n";
        for line in key.trim_end().lines() {
            // deb822 continuation lines: an empty line is written as ` .`.
            out += if line.trim().is_empty() { " ." } else { " " };
            if !line.trim().is_empty() {
                out += line;
            }
            out += "\n";
        }
    } else {
        out += "# the repository has no signing key\nTrusted: yes\n";
    }
    Ok(text(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_as_text() {
        assert!(plain_path("a/x.rpm"));
        for bad in [
            "../x",
            "a/.hidden/y",
            ".repodata.gen-1/repomd.xml",
            "a//x",
            "/etc/passwd",
            "",
        ] {
            assert!(!plain_path(bad), "{bad:?}");
        }
    }

    #[actix_web::test]
    async fn objects_from_memory_answer_ranges_and_conditional_requests() {
        use actix_web::http::StatusCode;
        use actix_web::test::TestRequest;
        let meta = Meta {
            len: 10,
            modified: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            etag: "\"abc\"".into(),
        };
        let answer = |req: TestRequest| {
            from_memory(
                &req.to_http_request(),
                &meta,
                b"0123456789".to_vec(),
                mime::TEXT_PLAIN,
            )
        };
        let body = |r: HttpResponse| async move {
            actix_web::body::to_bytes(r.into_body()).await.unwrap()
        };
        let r = answer(TestRequest::default());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("etag").unwrap(), "\"abc\"");
        assert_eq!(body(r).await, "0123456789");
        let r = answer(TestRequest::default().insert_header(("range", "bytes=2-4")));
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers().get("content-range").unwrap(), "bytes 2-4/10");
        assert_eq!(body(r).await, "234");
        let r = answer(TestRequest::default().insert_header(("range", "bytes=-3")));
        assert_eq!(body(r).await, "789");
        let r = answer(TestRequest::default().insert_header(("range", "bytes=20-")));
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        let r = answer(TestRequest::default().insert_header(("if-none-match", "\"abc\"")));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = answer(TestRequest::default().insert_header(("if-none-match", "\"old\"")));
        assert_eq!(r.status(), StatusCode::OK);
        let since = actix_web::http::header::HttpDate::from(meta.modified).to_string();
        let r = answer(TestRequest::default().insert_header(("if-modified-since", since)));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.rpm").as_ref(), "application/x-rpm");
        assert_eq!(
            content_type("dists/deb12/InRelease").essence_str(),
            "text/plain"
        );
        assert_eq!(content_type("key.asc").as_ref(), "application/pgp-keys");
        assert_eq!(
            content_type("yum/el9_x86_64/repodata/repomd.xml.key").as_ref(),
            "application/pgp-keys"
        );
        assert_eq!(
            content_type("a/b.tar.gz.sha256").essence_str(),
            "text/plain"
        );
        assert_eq!(
            content_type("repodata/x-primary.xml.gz").as_ref(),
            "application/gzip"
        );
    }
}
