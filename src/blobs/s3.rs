//! Objects in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, SeaweedFS), addressed
//! path-style (`ENDPOINT/BUCKET/PREFIX/KEY`). Requests are signed with SigV4 by `rusty-s3`
//! (sans-IO: it signs, we send) and sent with `ureq`, the HTTP client packyard already has;
//! `object_store` would have brought an async runtime's HTTP stack and TLS a second time.
//! Nothing is materialised: a repository here is read through the store (a server), which
//! names every object.

use std::io::Seek;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use rusty_s3::actions::{GetObject, HeadObject, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{BlobError, Blobs, Body, Data, Meta, Object, check_key, copy_checked};

/// How long a request's signature is good for.
const SIGNED_FOR: Duration = Duration::from_secs(300);

pub struct S3Blobs {
    bucket: Bucket,
    credentials: Credentials,
    /// Put before every key: `""` or `PREFIX/`.
    prefix: String,
    agent: ureq::Agent,
    /// `s3://BUCKET/PREFIX`, for messages.
    name: String,
}

fn remote(what: impl std::fmt::Display) -> BlobError {
    BlobError::Remote {
        what: what.to_string(),
    }
}

type Response = ureq::http::Response<ureq::Body>;

impl S3Blobs {
    /// Opens `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=R` with the credentials
    /// in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn open(spec: &str) -> Result<S3Blobs, BlobError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => S3Blobs::open_with(spec, &key, &secret),
            _ => Err(remote(format!(
                "no credentials for {spec}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ))),
        }
    }

    /// Opens the store `spec` names (as [`S3Blobs::open`]) with these credentials.
    pub fn open_with(spec: &str, key: &str, secret: &str) -> Result<S3Blobs, BlobError> {
        let bad = |why: &str| {
            remote(format!(
                "{spec:?} is not an object store URL: {why} \
                 (give s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION)"
            ))
        };
        let url = url::Url::parse(spec).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(bad("it does not start with s3://"));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket"))?;
        let prefix = url.path().trim_matches('/');
        let mut endpoint = None;
        let mut region = "us-east-1".to_string();
        for (k, v) in url.query_pairs() {
            match &*k {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = v.into_owned(),
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("no endpoint="))?;
        let endpoint = url::Url::parse(&endpoint).map_err(|e| bad(&format!("endpoint: {e}")))?;
        let credentials = Credentials::new(key, secret);
        let bucket_name = bucket.to_string();
        let bucket = Bucket::new(endpoint, UrlStyle::Path, bucket_name.clone(), region)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(S3Blobs {
            bucket,
            credentials,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(300)))
                .build()
                .new_agent(),
            name: format!("s3://{bucket_name}/{prefix}"),
        })
    }

    /// Asks the store for one key: fails, saying what to fix, when it cannot be reached
    /// or refuses the credentials or the bucket.
    pub fn check(&self) -> Result<(), BlobError> {
        let mut list = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
        list.with_max_keys(1);
        let r = self.send(
            self.agent.get(list.sign(SIGNED_FOR).as_str()).call(),
            "list",
        )?;
        match r.status().as_u16() {
            200 => Ok(()),
            403 => Err(remote(format!(
                "{} refused the credentials (403): check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY",
                self.name
            ))),
            404 => Err(remote(format!(
                "{}: no such bucket (404): create it, or name one that exists",
                self.name
            ))),
            s => Err(remote(format!("{}: HTTP {s} to a listing", self.name))),
        }
    }

    fn object(&self, key: &str) -> Result<String, BlobError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn send(&self, r: Result<Response, ureq::Error>, what: &str) -> Result<Response, BlobError> {
        r.map_err(|e| {
            remote(format!(
                "{} cannot be reached ({what}): {e}; check the endpoint and that the object \
                 store runs",
                self.name
            ))
        })
    }

    /// A failed answer as an error naming the object.
    fn failed(&self, key: &str, what: &str, mut r: Response) -> BlobError {
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        let code = body
            .split("<Code>")
            .nth(1)
            .and_then(|c| c.split('<').next())
            .unwrap_or("");
        remote(format!(
            "{}{key}: {what} answered HTTP {status} {code}",
            self.name
        ))
    }

    fn meta(r: &Response) -> Meta {
        let header = |h: &str| r.headers().get(h).and_then(|v| v.to_str().ok());
        let len = header("content-range")
            .and_then(|c| c.rsplit('/').next())
            .and_then(|n| n.parse().ok())
            .or_else(|| header("content-length").and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let modified = header("last-modified")
            .and_then(|d| d.parse::<actix_web::http::header::HttpDate>().ok())
            .map(SystemTime::from)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let etag = header("etag").unwrap_or("\"\"").to_string();
        Meta {
            len,
            modified,
            etag,
        }
    }

    /// `body` checked whole against `sha256`, ready to be sent (more than once, if need
    /// be): a stream goes through a temporary file, hashed on the way, so a large package
    /// is never all in memory and nothing is sent that does not match.
    fn checked<'a>(
        key: &str,
        body: Body<'a>,
        sha256: Option<&str>,
    ) -> Result<Checked<'a>, BlobError> {
        match body {
            Body::Bytes(bytes) => {
                if sha256.is_some() {
                    let named = std::path::Path::new(key);
                    copy_checked(&mut &bytes[..], &mut std::io::sink(), sha256, named)
                        .map_err(remote)??;
                }
                Ok(Checked::Bytes(bytes))
            }
            Body::Read { from, source } => {
                let io = |e| BlobError::Io {
                    path: source.to_path_buf(),
                    source: e,
                };
                let mut tmp = tempfile::tempfile().map_err(io)?;
                copy_checked(from, &mut tmp, sha256, source).map_err(io)??;
                let len = tmp.stream_position().map_err(io)?;
                Ok(Checked::File(tmp, len, source))
            }
        }
    }

    /// PUTs `body` to `key`, whatever is there.
    fn put_over(&self, key: &str, body: &mut Checked<'_>) -> Result<(), BlobError> {
        let r = self.put_checked(key, body, &[])?;
        match r.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            _ => Err(self.failed(key, "a put", r)),
        }
    }

    /// PUTs `body` to `key` with extra signed headers.
    fn put_checked(
        &self,
        key: &str,
        body: &mut Checked<'_>,
        headers: &[(&'static str, String)],
    ) -> Result<Response, BlobError> {
        match body {
            Checked::Bytes(bytes) => self.put_object(key, headers, |req| req.send(*bytes)),
            Checked::File(tmp, _, source) => {
                tmp.rewind().map_err(|e| BlobError::Io {
                    path: source.to_path_buf(),
                    source: e,
                })?;
                self.put_object(key, headers, |req| req.send(&*tmp))
            }
        }
    }

    /// A signed PUT of `key` (the extra headers signed too); `send` gives the body.
    fn put_object(
        &self,
        key: &str,
        headers: &[(&'static str, String)],
        send: impl FnOnce(
            ureq::RequestBuilder<ureq::typestate::WithBody>,
        ) -> Result<Response, ureq::Error>,
    ) -> Result<Response, BlobError> {
        let object = self.object(key)?;
        let mut action =
            rusty_s3::actions::PutObject::new(&self.bucket, Some(&self.credentials), &object);
        for (h, v) in headers {
            action.headers_mut().insert(*h, v.clone());
        }
        let url = action.sign(SIGNED_FOR);
        let mut req = self.agent.put(url.as_str());
        for (h, v) in headers {
            req = req.header(*h, v);
        }
        self.send(send(req), "put")
    }

    /// Whether the object at `key` has `body`'s bytes (see [`super::found_holds`]).
    fn holds(&self, key: &str, body: &mut Checked<'_>) -> Result<bool, BlobError> {
        let len = body.len();
        match body {
            Checked::Bytes(b) => super::found_holds(self, key, len, &mut &b[..]),
            Checked::File(f, _, _) => {
                f.rewind().map_err(|source| BlobError::Io {
                    path: key.into(),
                    source,
                })?;
                super::found_holds(self, key, len, f)
            }
        }
    }
}

/// A put's body, checked whole: in memory, or in a temporary file of that length.
enum Checked<'a> {
    Bytes(&'a [u8]),
    File(std::fs::File, u64, &'a std::path::Path),
}

impl Checked<'_> {
    fn len(&self) -> u64 {
        match self {
            Checked::Bytes(b) => b.len() as u64,
            Checked::File(_, len, _) => *len,
        }
    }
}

impl Blobs for S3Blobs {
    fn put(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<(), BlobError> {
        self.put_over(key, &mut Self::checked(key, body, sha256)?)
    }

    fn put_new(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<bool, BlobError> {
        let mut body = Self::checked(key, body, sha256)?;
        // Create-only: the store answers 412 when the key holds an object already.
        let r = self.put_checked(key, &mut body, &[("if-none-match", "*".to_string())])?;
        match r.status().as_u16() {
            200 | 201 | 204 => return Ok(true),
            412 => {}
            _ => return Err(self.failed(key, "a create-only put", r)),
        }
        // One with other bytes is what a put cut short left: replaced (the trait's rule).
        if self.holds(key, &mut body)? {
            return Ok(false);
        }
        self.put_over(key, &mut body)?;
        Ok(true)
    }

    fn flush(&self) -> Result<(), BlobError> {
        // A put is durable once it is answered.
        Ok(())
    }

    fn open(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<Object>, BlobError> {
        let object = self.object(key)?;
        let url = GetObject::new(&self.bucket, Some(&self.credentials), &object).sign(SIGNED_FOR);
        let mut req = self.agent.get(url.as_str());
        if let Some(r) = &range {
            if r.end <= r.start {
                // Nothing asked for: the object's metadata is all there is to answer.
                return Ok(self.stat(key)?.map(|meta| Object {
                    meta,
                    data: Data::Bytes(bytes::Bytes::new()),
                }));
            }
            req = req.header("Range", format!("bytes={}-{}", r.start, r.end - 1));
        }
        let r = self.send(req.call(), "get")?;
        match r.status().as_u16() {
            200 | 206 => {
                let meta = Self::meta(&r);
                Ok(Some(Object {
                    meta,
                    data: Data::Stream(Box::new(r.into_body().into_reader())),
                }))
            }
            404 => Ok(None),
            // A range past the end: there is nothing of it to read.
            416 => Ok(self.stat(key)?.map(|meta| Object {
                meta,
                data: Data::Bytes(bytes::Bytes::new()),
            })),
            _ => Err(self.failed(key, "a get", r)),
        }
    }

    fn stat(&self, key: &str) -> Result<Option<Meta>, BlobError> {
        let object = self.object(key)?;
        let url = HeadObject::new(&self.bucket, Some(&self.credentials), &object).sign(SIGNED_FOR);
        let r = self.send(self.agent.head(url.as_str()).call(), "head")?;
        match r.status().as_u16() {
            200 => Ok(Some(Self::meta(&r))),
            404 => Ok(None),
            _ => Err(self.failed(key, "a head", r)),
        }
    }

    fn remove(&self, key: &str) -> Result<(), BlobError> {
        let object = self.object(key)?;
        let url =
            rusty_s3::actions::DeleteObject::new(&self.bucket, Some(&self.credentials), &object)
                .sign(SIGNED_FOR);
        let r = self.send(self.agent.delete(url.as_str()).call(), "delete")?;
        match r.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.failed(key, "a delete", r)),
        }
    }

    fn remove_all(&self, prefix: &str) -> Result<(), BlobError> {
        // Not atomic on an object store: the store stopped naming these first.
        let keys = self.list(prefix)?;
        super::for_each(self, &keys, |key| self.remove(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let full = format!("{}/", self.object(prefix)?);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            list.with_prefix(full.as_str());
            if let Some(t) = &token {
                list.with_continuation_token(t.as_str());
            }
            let mut r = self.send(
                self.agent.get(list.sign(SIGNED_FOR).as_str()).call(),
                "list",
            )?;
            if r.status().as_u16() != 200 {
                return Err(self.failed(prefix, "a listing", r));
            }
            let text = r
                .body_mut()
                .read_to_string()
                .map_err(|e| remote(format!("{}{prefix}: a listing: {e}", self.name)))?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| {
                remote(format!(
                    "{}{prefix}: a listing that does not parse: {e}",
                    self.name
                ))
            })?;
            keys.extend(
                page.contents
                    .into_iter()
                    .filter_map(|c| c.key.strip_prefix(&self.prefix).map(str::to_string)),
            );
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let source = format!("/{}/{}", self.bucket.name(), self.object(from)?);
        let source: String =
            percent_encoding::utf8_percent_encode(&source, COPY_SOURCE).to_string();
        let r = self.put_object(to, &[("x-amz-copy-source", source)], |req| {
            req.send(&[][..])
        })?;
        match r.status().as_u16() {
            200 => Ok(()),
            _ => Err(self.failed(to, "a copy", r)),
        }
    }

    fn url(&self, key: &str, ttl: Duration) -> Option<String> {
        let object = self.object(key).ok()?;
        Some(
            GetObject::new(&self.bucket, Some(&self.credentials), &object)
                .sign(ttl)
                .to_string(),
        )
    }

    fn describe(&self, key: &str) -> String {
        format!("{}{key}", self.name.trim_end_matches('/').to_string() + "/")
    }
}

/// What `x-amz-copy-source` escapes: all but unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
