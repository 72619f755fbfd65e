//! Browse pages at `/`: repositories, a repository's packages with search, a package's
//! versions, and one file's contents, relations, checksums and install snippet.
//! Server-rendered HTML with one small stylesheet and no script.

use std::collections::BTreeMap;
use std::fmt::Write;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::Shared;
use super::api::{PackageFilter, find_packages};
use super::errors::ApiError;
use crate::paths::url_path;
use crate::store::{FileKind, PackageRecord, RepoRecord};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/style.css", web::get().to(style))
        .route("/r/{repo}", web::get().to(repository))
        .route("/r/{repo}/p/{name}", web::get().to(package))
        .route("/r/{repo}/f/{path:.*}", web::get().to(file));
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.7em 1.5em;display:flex;gap:1em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:72em;margin:1.5em auto;padding:0 1.5em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef0f4;font-weight:600}
code,pre{font:13px ui-monospace,monospace}
pre{background:#fff;border:1px solid #e3e6eb;padding:.8em;overflow-x:auto}
.tag{display:inline-block;padding:0 .5em;border-radius:.8em;background:#dfe7f5;font-size:12px}
.reg{background:#dff5e3}
form{margin:1em 0}input[type=search]{padding:.35em;width:20em}
.muted{color:#687085}a{color:#1f5fbf}
";

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "max-age=3600"))
        .body(STYLE)
}

/// HTML-escapes text for element content and quoted attributes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width,initial-scale=1\">\
             <title>{} · packyard</title><link rel=stylesheet href=\"/style.css\"></head>\
             <body><header><a href=\"/\">packyard</a><a href=\"/builds\">builds</a>\
             <a href=\"/agents\">agents</a><span class=muted>{}</span></header>\
             <main>{body}</main></body></html>",
            esc(title),
            esc(title)
        ))
}

fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn kind_tag(kind: crate::store::RepoKind) -> String {
    let class = if kind == crate::store::RepoKind::Registered {
        "tag reg"
    } else {
        "tag"
    };
    format!("<span class=\"{class}\">{}</span>", kind.as_str())
}

async fn index(req: HttpRequest, state: Shared) -> Result<HttpResponse, ApiError> {
    let signed_in = state.caller(&req).ok().flatten().is_some();
    let mut body = String::from("<h1>Repositories</h1>");
    let list: Vec<_> = state
        .repos
        .list()?
        .into_iter()
        .filter(|r| signed_in || !r.record.private)
        .collect();
    if list.is_empty() {
        body += "<p>No repositories yet. Create one with \
                 <code>packyard repo create NAME --kind volatile</code>.</p>";
    } else {
        body += "<table><tr><th>repository</th><th>kind</th><th>packages</th><th>size</th>\
                 <th>platforms</th></tr>";
        for r in &list {
            let platforms = if r.record.platforms.is_empty() {
                "all".to_string()
            } else {
                r.record.platforms.join(", ")
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"/r/{n}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                kind_tag(r.record.kind),
                r.packages,
                size(r.bytes),
                esc(&platforms),
                n = esc(&r.record.name),
            );
        }
        body += "</table>";
    }
    Ok(page("repositories", &body))
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
}

async fn repository(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Search>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let record = state.readable(&req, &path)?;
    let q = query.into_inner().q.filter(|s| !s.trim().is_empty());
    let found = find_packages(
        &state,
        &record.name,
        &PackageFilter {
            q: q.clone(),
            ..PackageFilter::default()
        },
    )?;
    let n = esc(&record.name);
    let mut body = format!(
        "<h1>{n} {}</h1><form action=\"/r/{n}\" method=get>\
         <input type=search name=q placeholder=\"search packages\" value=\"{}\"> \
         <button type=submit>Search</button></form>",
        kind_tag(record.kind),
        esc(q.as_deref().unwrap_or("")),
    );
    body += &setup_links(&state, &record);
    // One row per package name: its newest version and how many files it has.
    let mut by_name: BTreeMap<&str, Vec<&PackageRecord>> = BTreeMap::new();
    for p in &found {
        by_name.entry(&p.name).or_default().push(p);
    }
    if by_name.is_empty() {
        body += &match &q {
            Some(q) => format!("<p>No package matches <b>{}</b>.</p>", esc(q)),
            None => "<p>No packages yet.</p>".to_string(),
        };
    } else {
        body += "<table><tr><th>package</th><th>newest</th><th>files</th><th>kinds</th></tr>";
        for (name, files) in by_name {
            let newest = files[0];
            let mut kinds: Vec<&str> = files
                .iter()
                .map(|f| match f.kind {
                    FileKind::Rpm => "rpm",
                    FileKind::Deb => "deb",
                    FileKind::Tgz => "tar.gz",
                    FileKind::Srpm => "src.rpm",
                    FileKind::Dsc => "dsc",
                })
                .collect();
            kinds.sort();
            kinds.dedup();
            let _ = write!(
                body,
                "<tr><td><a href=\"/r/{n}/p/{}\">{}</a></td><td>{}-{}</td><td>{}</td><td>{}</td></tr>",
                url_path(name),
                esc(name),
                esc(&newest.version),
                esc(&newest.release),
                files.len(),
                kinds.join(", ")
            );
        }
        body += "</table>";
    }
    Ok(page(&record.name, &body))
}

fn setup_links(state: &Shared, record: &RepoRecord) -> String {
    let layout = &state.repos.layout;
    let mut links = Vec::new();
    let mut suites = Vec::new();
    for p in layout.platforms.values() {
        if !record.platforms.is_empty() && !record.platforms.contains(&p.name) {
            continue;
        }
        match p.format {
            crate::layout::PackageFormat::Rpm => links.push(format!(
                "<a href=\"/repos/{n}/{p}.repo\">{p}.repo</a>",
                n = esc(&record.name),
                p = esc(&p.name)
            )),
            crate::layout::PackageFormat::Deb if !suites.contains(&p.os) => {
                suites.push(p.os.clone());
                links.push(format!(
                    "<a href=\"/repos/{n}/{s}.sources\">{s}.sources</a>",
                    n = esc(&record.name),
                    s = esc(&p.os)
                ));
            }
            _ => {}
        }
    }
    format!(
        "<p class=muted>Client set-up: {} · <a href=\"/repos/{}/{}\">signing key</a></p>",
        links.join(" · "),
        esc(&record.name),
        esc(&layout.repository.key)
    )
}

async fn package(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, name) = path.into_inner();
    let record = state.readable(&req, &repo)?;
    let files = find_packages(
        &state,
        &record.name,
        &PackageFilter {
            name: Some(name.clone()),
            ..PackageFilter::default()
        },
    )?;
    if files.is_empty() {
        return Err(ApiError::not_found(format!(
            "no package {name} in repository {repo}"
        )));
    }
    let n = esc(&record.name);
    let mut body = format!(
        "<p><a href=\"/r/{n}\">{n}</a></p><h1>{}</h1>\
         <table><tr><th>version</th><th>platform</th><th>arch</th><th>file</th><th>size</th>\
         <th>published</th></tr>",
        esc(&name)
    );
    for f in &files {
        let file_name = f.path.rsplit('/').next().unwrap_or(&f.path);
        let _ = write!(
            body,
            "<tr><td>{}{}-{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/r/{n}/f/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            if f.epoch > 0 {
                format!("{}:", f.epoch)
            } else {
                String::new()
            },
            esc(&f.version),
            esc(&f.release),
            esc(&f.platform),
            esc(&f.arch),
            url_path(&f.path),
            esc(file_name),
            size(f.size),
            chrono::DateTime::from_timestamp(f.published, 0)
                .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        );
    }
    body += "</table>";
    Ok(page(&name, &body))
}

async fn file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: Shared,
) -> Result<HttpResponse, ApiError> {
    let (repo, key) = path.into_inner();
    let (record, p, details) = super::api::package_details(&req, &state, &repo, key).await?;
    let n = esc(&record.name);
    let download = format!("/repos/{}/{}", record.name, url_path(&p.path));
    let file_name = p.path.rsplit('/').next().unwrap_or(&p.path);
    let mut body = format!(
        "<p><a href=\"/r/{n}\">{n}</a> › <a href=\"/r/{n}/p/{pn}\">{pn_text}</a></p>\
         <h1>{}</h1>",
        esc(file_name),
        pn = url_path(&p.name),
        pn_text = esc(&p.name),
    );
    if let Some(s) = &details.summary {
        let _ = write!(body, "<p>{}</p>", esc(s));
    }
    let _ = write!(
        body,
        "<p><a id=download href=\"{}\" download>Download {}</a> ({})</p>",
        esc(&download),
        esc(file_name),
        size(p.size)
    );
    body += "<table>";
    let mut row = |k: &str, v: String| {
        let _ = write!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("name", esc(&p.name));
    let epoch = if p.epoch > 0 {
        format!("{}:", p.epoch)
    } else {
        String::new()
    };
    row(
        "version",
        esc(&format!("{epoch}{}-{}", p.version, p.release)),
    );
    row("platform", esc(&p.platform));
    row("arch", esc(&p.arch));
    row(
        "download-from path",
        format!("<code>{}</code>", esc(&p.path)),
    );
    row("sha256", format!("<code>{}</code>", esc(&p.sha256)));
    if let Some(source) = &details.source_package {
        row(
            "source package",
            format!(
                "<a id=source href=\"/r/{n}/f/{}\">{}</a>",
                esc(&url_path(source)),
                esc(source.rsplit('/').next().unwrap_or(source))
            ),
        );
    }
    if let Some(c) = &p.configuration {
        row("configuration", esc(c));
    }
    if p.external {
        row(
            "external",
            "a third-party package carried as an external, not built from a configuration".into(),
        );
    }
    // A component's tarball has its build's log and record beside it.
    if p.kind == crate::store::FileKind::Tgz {
        let log = crate::paths::log_path(&p.path);
        let logged = state.repos.blobs.exists(&format!("{}/{log}", record.name));
        if logged.map_err(crate::repo::RepoError::from)? {
            row(
                "build",
                format!(
                    "<a href=\"/repos/{repo}/{log}\">log</a> · \
                     <a href=\"/api/v1/repos/{repo}/builds/{tarball}\">record</a>",
                    repo = esc(&url_path(&record.name)),
                    log = esc(&url_path(&log)),
                    tarball = esc(&url_path(&p.path)),
                ),
            );
        }
    }
    if let Some(l) = &details.license {
        row("license", esc(l));
    }
    if let Some(h) = &details.homepage {
        row("homepage", format!("<a href=\"{0}\">{0}</a>", esc(h)));
    }
    body += "</table>";
    let base = state.base_url(&req);
    let _ = write!(
        body,
        "<h2>Install</h2><pre>{}</pre>",
        esc(&install_snippet(&state, &base, &record, &p))
    );
    if let Some(d) = details.description.as_ref().filter(|d| !d.is_empty()) {
        let _ = write!(body, "<h2>Description</h2><pre>{}</pre>", esc(d));
    }
    if !details.relations.is_empty() {
        body += "<h2>Relations</h2><table>";
        for (kind, list) in &details.relations {
            let items: Vec<String> = list
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect();
            let _ = write!(
                body,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(kind),
                items.join("<br>")
            );
        }
        body += "</table>";
    }
    let _ = write!(
        body,
        "<h2>Files ({})</h2><table><tr><th>path</th><th>mode</th><th>size</th></tr>",
        details.files.len()
    );
    for f in &details.files {
        let target = f
            .target
            .as_ref()
            .map(|t| format!(" → {}", esc(t)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td><code>{}{target}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&f.path),
            esc(&f.mode),
            if f.kind == "file" {
                size(f.size)
            } else {
                f.kind.to_string()
            }
        );
    }
    body += "</table>";
    Ok(page(file_name, &body))
}

/// The commands that install this file on a client.
fn install_snippet(state: &Shared, base: &str, repo: &RepoRecord, p: &PackageRecord) -> String {
    let url = format!("{base}/repos/{}", repo.name);
    match p.kind {
        FileKind::Rpm => format!(
            "curl -fsSL -o /etc/yum.repos.d/packyard-{r}-{pl}.repo {url}/{pl}.repo\n\
             dnf install {}-{}-{}",
            p.name,
            p.version,
            p.release,
            r = repo.name,
            pl = p.platform
        ),
        FileKind::Deb | FileKind::Dsc => {
            let suite = state
                .repos
                .layout
                .platforms
                .get(&p.platform)
                .map(|x| x.os.clone())
                .unwrap_or_default();
            let verb = if p.kind == FileKind::Dsc {
                "source"
            } else {
                "install"
            };
            format!(
                "curl -fsSL -o /etc/apt/sources.list.d/packyard-{r}-{suite}.sources {url}/{suite}.sources\n\
                 apt-get update\n\
                 apt-get {verb} {}={}",
                p.name,
                deb_version(p),
                r = repo.name,
            )
        }
        FileKind::Srpm => format!(
            "curl -fsSLO {url}/{}\nrpmbuild --rebuild {}",
            url_path(&p.path),
            p.path.rsplit('/').next().unwrap_or(&p.path),
        ),
        FileKind::Tgz => format!(
            "curl -fsSLO {url}/{}\nsha256sum -c <<< '{}  {}'\ntar -xzf {} -C \"$STAGE_DIR\"",
            url_path(&p.path),
            p.sha256,
            p.path.rsplit('/').next().unwrap_or(&p.path),
            p.path.rsplit('/').next().unwrap_or(&p.path),
        ),
    }
}

/// A Debian package's version as apt names it: `[epoch:]version[-revision]`.
fn deb_version(p: &PackageRecord) -> String {
    let mut v = String::new();
    if p.epoch > 0 {
        v += &format!("{}:", p.epoch);
    }
    v += &p.version;
    if !p.release.is_empty() {
        v += &format!("-{}", p.release);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_path("a b/ü.rpm"), "a%20b/%C3%BC.rpm");
    }
}
