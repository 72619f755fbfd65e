//! `/repos/<repo>/...`: the repository trees as plain files (Range, ETag, Last-Modified,
//! conditional requests; small files from memory, larger files on disk read in large
//! parts on the worker thread, objects elsewhere streamed from the blocking pool), and
//! the generated client set-up files `<platform>.repo` and `<suite>.sources`. Paths are
//! checked twice: as text (no `..`, no hidden parts, no absolute paths) and, once
//! resolved, as a place below the repository's directory. Directories are never listed.

use actix_web::{HttpRequest, HttpResponse, web};

use super::Shared;
use super::errors::ApiError;
use crate::blobs::{Data, Meta};
use crate::layout::{Layout, PackageFormat};
use crate::store::{FileKind, RepoRecord};

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
        && let Some(url) = {
            let s = state.clone();
            let (r, t) = (repo.clone(), tail.clone());
            super::api::blocking(move || Ok(s.repos.package_url(&r, &t, REDIRECT_TTL)?)).await?
        }
    {
        // Short-lived: the redirect itself is not to be kept past the URL's expiry.
        return Ok(HttpResponse::Found()
            .insert_header(("Location", url))
            .insert_header(("Cache-Control", "no-store"))
            .finish());
    }
    let ct = content_type(&tail);
    // Local files named by a local store are opened on this thread; a database or an
    // object store is asked on the blocking pool (a network round trip must not hold a
    // request thread).
    if state.repos.blobs.is_local() && state.repos.store.is_local() {
        let Some(object) = state.repos.open_path(&repo, &tail, None)? else {
            return Err(missing());
        };
        return match object.data {
            // A small file comes whole from memory (the backend keeps those it has read):
            // headers and body leave in one write, with none of a file stream's set-up.
            Data::Bytes(bytes) => Ok(answer(&req, &object.meta, ct, Body::Memory(bytes))),
            // A larger one: read in 256 KiB parts on this thread as the client takes them
            // (from the page cache; 5 % more 10 MB answers a second than actix-files' 64 KiB
            // parts here, 1 MiB parts were slower). A mapped file answered as one body was
            // slower still: actix copies a body into its write buffer either way.
            Data::File(file) => Ok(answer(&req, &object.meta, ct, Body::File(file))),
            Data::Stream(r) => Ok(answer(&req, &object.meta, ct, Body::Stream(r))),
        };
    }
    // A store other processes write too: a small file kept while provably current
    // (`copies`) asks neither the database nor the object store.
    if let Some(c) = state.copies.get(&repo, &tail) {
        state.metrics.from_copy();
        return Ok(answer(&req, &c.meta, ct, Body::Memory(c.bytes.clone())));
    }
    let version = state.copies.version(&repo, &tail);
    let s = state.clone();
    let (r, t) = (repo.clone(), tail.clone());
    let Some(object) = super::api::blocking(move || {
        let object = s.repos.open_path(&r, &t, None)?;
        // Small enough to keep: read whole here, off the request thread.
        Ok(match object {
            Some(o) if version.is_some() && o.meta.len <= super::copies::LARGEST => {
                let meta = o.meta.clone();
                let bytes = o.into_bytes().map_err(|e| {
                    crate::repo::RepoError::Blob(crate::blobs::BlobError::Remote {
                        what: format!("reading {t} of repository {r}: {e}"),
                    })
                })?;
                Some(crate::blobs::Object::in_memory(meta, bytes.into(), None))
            }
            other => other,
        })
    })
    .await?
    else {
        return Err(missing());
    };
    if let (Some(v), Data::Bytes(bytes)) = (version, &object.data) {
        let copy = super::copies::KeptFile {
            meta: object.meta.clone(),
            bytes: bytes.clone(),
        };
        state.copies.keep(&repo, &tail, v, copy);
    }
    let meta = object.meta.clone();
    let body = match object.data {
        Data::Bytes(b) => Body::Memory(b),
        Data::File(f) => Body::Stream(Box::new(f)),
        Data::Stream(whole) => match wanted_range(&req, meta.len) {
            // A range: asked of the store by itself, the whole answer left unread.
            Some(Ok((start, n))) if !unchanged(&req, &meta) => {
                drop(whole);
                let s = state.clone();
                let (r, t) = (repo.clone(), tail.clone());
                let ranged = super::api::blocking(move || {
                    Ok(s.repos.open_path(&r, &t, Some(start..start + n))?)
                })
                .await?
                .ok_or_else(missing)?;
                return Ok(match ranged.data {
                    Data::Stream(r) => partial(&req, &meta, ct, start, n, Body::Stream(r)),
                    Data::Bytes(b) => partial(&req, &meta, ct, start, n, Body::Memory(b)),
                    Data::File(f) => partial(&req, &meta, ct, start, n, Body::Stream(Box::new(f))),
                });
            }
            _ => Body::Stream(whole),
        },
    };
    Ok(answer(&req, &meta, ct, body))
}

/// An answer's bytes: in memory (all of the object), or read as they come.
enum Body {
    Memory(actix_web::web::Bytes),
    /// A local file, read on the worker thread as the client takes it (from the page
    /// cache that is faster than a hop to the blocking pool).
    File(std::fs::File),
    Stream(Box<dyn std::io::Read + Send>),
}

/// Whether the client holds these bytes already (If-None-Match, else If-Modified-Since).
fn unchanged(req: &HttpRequest, meta: &Meta) -> bool {
    use actix_web::http::header;
    let none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok());
    if let Some(h) = none_match {
        return h
            .split(',')
            .any(|t| t.trim() == meta.etag || t.trim() == "*");
    }
    req.headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<header::HttpDate>().ok())
        .is_some_and(|since| {
            let since = std::time::SystemTime::from(since);
            meta.modified
                .duration_since(since)
                .map_or(true, |d| d.as_secs() == 0)
        })
}

/// The one byte range asked for (start, length), or `Err` when it cannot be satisfied;
/// `None` for the whole object (no Range, or several ranges: a server may send all).
fn wanted_range(req: &HttpRequest, len: u64) -> Option<Result<(u64, u64), ()>> {
    let range = req
        .headers()
        .get(actix_web::http::header::RANGE)?
        .to_str()
        .ok()?;
    match actix_files::HttpRange::parse(range, len).as_deref() {
        Ok([r]) => Some(Ok((r.start, r.length))),
        Ok(_) => None,
        Err(_) => Some(Err(())),
    }
}

fn builder(
    meta: &Meta,
    ct: &'static str,
    status: actix_web::http::StatusCode,
) -> actix_web::HttpResponseBuilder {
    use actix_web::http::header::{self, HeaderValue};
    let mut b = HttpResponse::build(status);
    b.insert_header((header::ETAG, meta.etag.as_str()))
        .insert_header((header::LAST_MODIFIED, http_date(meta.modified)))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")))
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(ct)));
    b
}

/// `modified` as an HTTP date. The last one made on this thread is kept: requests for
/// one file come in runs, and formatting a date costs more than the rest of the headers.
fn http_date(modified: std::time::SystemTime) -> actix_web::http::header::HeaderValue {
    use actix_web::http::header::{HeaderValue, HttpDate};
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(std::time::SystemTime, HeaderValue)>> =
            const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((at, v)) if *at == modified => v.clone(),
        _ => {
            let v = HeaderValue::from_str(&HttpDate::from(modified).to_string())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            *last = Some((modified, v.clone()));
            v
        }
    })
}

/// The bytes of `body` as an answer of `len` bytes: from memory, or streamed from a
/// blocking read on the blocking pool as the client takes them.
fn send(mut b: actix_web::HttpResponseBuilder, len: u64, body: Body) -> HttpResponse {
    match body {
        Body::Memory(bytes) => b.body(bytes),
        Body::File(file) => b.body(actix_web::body::SizedStream::new(
            len,
            Box::pin(FileChunks { file, left: len }),
        )),
        Body::Stream(mut from) => {
            let (tx, rx) =
                tokio::sync::mpsc::channel::<Result<actix_web::web::Bytes, std::io::Error>>(4);
            actix_web::rt::task::spawn_blocking(move || {
                loop {
                    let mut buf = vec![0u8; 64 << 10];
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            if tx.blocking_send(Ok(buf.into())).is_err() {
                                break; // the client went away
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            b.body(actix_web::body::SizedStream::new(len, Box::pin(stream)))
        }
    }
}

/// How much of a large answer a connection gathers before it writes to the socket: fewer,
/// larger writes. Measured with 10 MB answers (`wrk -t2 -c8`, three rounds): 145–151 a
/// second with actix-web's 32 KiB, 165–193 with 256 KiB, 189–223 with 512 KiB, 194–214
/// with 1 MiB, 152–170 with 4 MiB. Each connection sending a large file holds up to this
/// plus a part ([`FILE_CHUNK`]) in memory.
pub const WRITE_BUFFER: usize = 512 << 10;

/// How much of a file one read takes: large reads mean fewer system calls and fewer,
/// larger socket writes.
const FILE_CHUNK: usize = 256 << 10;

/// The next `left` bytes of a file, read in `FILE_CHUNK`s on the worker thread.
struct FileChunks {
    file: std::fs::File,
    left: u64,
}

impl futures_util::Stream for FileChunks {
    type Item = Result<actix_web::web::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::io::Read;
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(FILE_CHUNK as u64) as usize;
        let mut buf = Vec::with_capacity(want);
        let this = &mut *self;
        match (&mut this.file).take(want as u64).read_to_end(&mut buf) {
            Ok(0) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than it was",
            )))),
            Ok(n) => {
                this.left -= n as u64;
                Poll::Ready(Some(Ok(buf.into())))
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// A part of an object (206).
fn partial(
    req: &HttpRequest,
    meta: &Meta,
    ct: &'static str,
    start: u64,
    n: u64,
    body: Body,
) -> HttpResponse {
    let _ = req;
    let mut b = builder(meta, ct, actix_web::http::StatusCode::PARTIAL_CONTENT);
    b.insert_header((
        actix_web::http::header::CONTENT_RANGE,
        format!("bytes {start}-{}/{}", start + n - 1, meta.len),
    ));
    send(b, n, body)
}

/// An object answered as actix-files answers a file: ETag and Last-Modified, 304 to a
/// matching conditional request, one byte range (206, or 416) — for a body in memory
/// (the whole object), the range is cut from it; a streamed body is the whole object.
fn answer(req: &HttpRequest, meta: &Meta, ct: &'static str, body: Body) -> HttpResponse {
    use actix_web::http::{StatusCode, header};
    if unchanged(req, meta) {
        return builder(meta, ct, StatusCode::NOT_MODIFIED).finish();
    }
    match (wanted_range(req, meta.len), body) {
        (Some(Err(())), _) => builder(meta, ct, StatusCode::RANGE_NOT_SATISFIABLE)
            .insert_header((header::CONTENT_RANGE, format!("bytes */{}", meta.len)))
            .finish(),
        (Some(Ok((start, n))), Body::Memory(bytes)) => {
            let cut = bytes.slice(start as usize..(start + n) as usize);
            partial(req, meta, ct, start, n, Body::Memory(cut))
        }
        (Some(Ok((start, n))), Body::File(mut file)) => {
            use std::io::Seek;
            match file.seek(std::io::SeekFrom::Start(start)) {
                Ok(_) => partial(req, meta, ct, start, n, Body::File(file)),
                Err(e) => HttpResponse::InternalServerError().body(format!("reading: {e}")),
            }
        }
        (_, body) => send(builder(meta, ct, StatusCode::OK), meta.len, body),
    }
}

/// A relative path without `.`/`..`/empty parts, control characters or hidden parts
/// (generation directories and other bookkeeping start with `.`).
fn plain_path(tail: &str) -> bool {
    crate::blobs::check_key(tail).is_ok() && !tail.split('/').any(|p| p.starts_with('.'))
}

fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
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
    }
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
    let os = layout
        .platforms
        .get(platform)
        .map(|p| p.os.clone())
        .unwrap_or_default();
    let packages = state.repos.store.packages(&record.name)?;
    let of = |kind: FileKind, on: &dyn Fn(&str) -> bool| -> Vec<_> {
        packages
            .iter()
            .filter(|p| p.kind == kind && on(&p.platform))
            .collect()
    };
    let rpms = of(FileKind::Rpm, &|p| p == platform);
    // Source RPMs of every platform of the os share its source tree.
    let same_os = |p: &str| layout.platforms.get(p).is_some_and(|x| x.os == os);
    let srpms = of(FileKind::Srpm, &same_os);
    let base = format!("{}/repos/{}", state.base_url(req), record.name);
    let mut out = String::new();
    let mut section = |id: String, name: String, tree: &str, enabled: bool, signed_files: bool| {
        let yum = crate::repo::publish::yum_dir(&state.repos, tree);
        if !out.is_empty() {
            out += "\n";
        }
        out += &format!(
            "[{id}]\nname={name}\nbaseurl={base}/{yum}/\nenabled={}\n",
            u8::from(enabled)
        );
        if record.key.is_some() {
            out += &format!(
                "gpgcheck={}\nrepo_gpgcheck=1\ngpgkey={base}/{}\n",
                u8::from(signed_files),
                layout.repository.key
            );
        } else {
            out += "# the repository has no signing key: nothing can be checked\n\
                    gpgcheck=0\nrepo_gpgcheck=0\n";
        }
        if record.kind == crate::store::RepoKind::Volatile {
            // Nightly builds replace each other: look again after a minute, not a day
            // (dnf), and before each command at all (zypper, which ignores
            // metadata_expire and otherwise never refreshes a repository added from a
            // file by itself).
            out += "metadata_expire=60\nautorefresh=1\n";
        }
    };
    // Packages are checked (gpgcheck) only when every RPM of the tree is signed; the
    // signed metadata (repo_gpgcheck) vouches for their checksums either way.
    let all_signed =
        |list: &[&crate::store::PackageRecord]| !list.is_empty() && list.iter().all(|p| p.signed);
    let repo = &record.name;
    section(
        format!("packyard-{repo}-{platform}"),
        format!("packyard {repo} ({platform})"),
        platform,
        true,
        all_signed(&rpms),
    );
    // The source packages, off until asked for (`dnf --enablerepo=...-source`).
    if !srpms.is_empty() {
        section(
            format!("packyard-{repo}-{platform}-source"),
            format!("packyard {repo} ({os} source packages)"),
            &format!("{os}-source"),
            false,
            all_signed(&srpms),
        );
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
    // `apt-get source` reads the suite's Sources, written once it has source packages.
    // The suite's current index says so: no package record needs reading.
    let dists = format!("{}/dists/{suite}", layout.repository.apt);
    let sources_file = format!("{}/source/Sources", layout.repository.apt_component);
    let sources = state
        .repos
        .store
        .generation(&record.name, &dists)?
        .is_some_and(|g| g.files.contains(&sources_file));
    let mut out = format!(
        "Types: deb{}\nURIs: {base}/{}\nSuites: {suite}\nComponents: {}\nArchitectures: {}\n",
        if sources { " deb-src" } else { "" },
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
    async fn objects_answer_ranges_and_conditional_requests_from_memory_and_files() {
        use actix_web::http::StatusCode;
        use actix_web::test::TestRequest;
        let meta = Meta {
            len: 10,
            modified: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            etag: "\"abc\"".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
        let bodies: [&dyn Fn() -> Body; 2] =
            [&|| Body::Memory(b"0123456789".to_vec().into()), &|| {
                Body::File(std::fs::File::open(dir.path().join("f")).unwrap())
            }];
        for make in bodies {
            let answer = |req: TestRequest| {
                super::answer(&req.to_http_request(), &meta, "text/plain", make())
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
    }

    #[actix_web::test]
    async fn a_file_larger_than_a_read_is_sent_whole_and_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..FILE_CHUNK * 2 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("f"), &bytes).unwrap();
        let meta = Meta {
            len: bytes.len() as u64,
            modified: std::time::UNIX_EPOCH,
            etag: "\"e\"".into(),
        };
        let send = |range: Option<String>| {
            let mut req = actix_web::test::TestRequest::default();
            if let Some(r) = range {
                req = req.insert_header(("range", r));
            }
            let file = std::fs::File::open(dir.path().join("f")).unwrap();
            super::answer(
                &req.to_http_request(),
                &meta,
                "text/plain",
                Body::File(file),
            )
        };
        let whole = actix_web::body::to_bytes(send(None).into_body())
            .await
            .unwrap();
        assert_eq!(whole, bytes);
        // A part that crosses a read's boundary.
        let (start, end) = (FILE_CHUNK - 10, FILE_CHUNK * 2 + 5);
        let part =
            actix_web::body::to_bytes(send(Some(format!("bytes={start}-{end}"))).into_body())
                .await
                .unwrap();
        assert_eq!(part, bytes[start..=end]);
        // A file that shrank under the server ends the answer with an error, not short.
        let r = send(None);
        std::fs::write(dir.path().join("f"), b"short").unwrap();
        assert!(actix_web::body::to_bytes(r.into_body()).await.is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.rpm"), "application/x-rpm");
        assert_eq!(
            content_type("dists/deb12/InRelease"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type("key.asc"), "application/pgp-keys");
        assert_eq!(
            content_type("yum/el9_x86_64/repodata/repomd.xml.key"),
            "application/pgp-keys"
        );
        assert_eq!(
            content_type("a/b.tar.gz.sha256"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type("repodata/x-primary.xml.gz"),
            "application/gzip"
        );
        // Every one is a valid header value.
        for name in [
            "a.rpm", "a.deb", "a.gz", "a.xz", "a.zst", "a.xml", "key.asc", "a.key",
        ] {
            assert!(content_type(name).parse::<mime::Mime>().is_ok());
        }
    }
}
