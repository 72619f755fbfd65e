//! `/repos/<repo>/...`: the repository trees as plain files (Range, ETag, Last-Modified,
//! conditional requests — actix-files does those), and the generated client set-up files
//! `<platform>.repo` and `<suite>.sources`. Paths are checked twice: as text (no `..`,
//! no hidden parts, no absolute paths) and, once resolved, as a place below the
//! repository's directory. Directories are never listed.

use std::fs::File;

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};

use super::Shared;
use super::errors::ApiError;
use crate::layout::{Layout, PackageFormat};
use crate::store::{FileKind, RepoRecord};

/// Files up to this size are read on the worker thread: from the page cache that is
/// faster than a hop to the blocking pool, and repository files are mostly small.
const SYNC_READ_LIMIT: u64 = 1 << 30;

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
    if !plain_path(&tail) {
        return Err(missing());
    }
    let file = match state.repo_dir(&repo) {
        Some(dir) => open_beneath(&dir, &tail).map_err(|_| missing())?,
        None => return Err(missing()),
    };
    let named = NamedFile::from_file(file, &tail).map_err(|_| missing())?;
    if !named.metadata().is_file() {
        return Err(missing());
    }
    let named = named
        .set_content_type(content_type(&tail))
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Inline,
            parameters: vec![],
        })
        .read_mode_threshold(SYNC_READ_LIMIT);
    Ok(named.into_response(&req))
}

/// A relative path without `.`/`..`/empty parts, control characters or hidden parts
/// (generation directories and other bookkeeping start with `.`).
fn plain_path(tail: &str) -> bool {
    crate::blobs::check_key(tail).is_ok() && !tail.split('/').any(|p| p.starts_with('.'))
}

/// Opens `tail` below the directory `dir` for reading. The kernel resolves the path and
/// refuses any step out of `dir` — through `..`, an absolute symlink, or a symlink that
/// leads outside — while symlinks inside it (the index generations) are followed
/// (`openat2` with `RESOLVE_BENEATH`, Linux 5.6+). Older kernels get the same answer
/// from resolving the whole path and comparing it with the directory's.
pub fn open_beneath(dir: &File, tail: &str) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(tail).map_err(std::io::Error::other)?;
    // SAFETY: open_how is plain integers; all zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory descriptor, a NUL-terminated path, and `how` with its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        return Ok(unsafe { File::from_raw_fd(fd as i32) });
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let base = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let full = std::fs::canonicalize(base.join(tail))?;
    if !full.starts_with(&base) {
        return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
    }
    File::open(full)
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
    fn files_open_only_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("r/a/.hidden")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("r/a/x.rpm"), b"x").unwrap();
        std::fs::write(root.join("r/a/.hidden/y"), b"y").unwrap();
        std::fs::write(root.join("other/secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../other/secret", root.join("r/leak")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("r/abs")).unwrap();
        std::os::unix::fs::symlink("a", root.join("r/inside")).unwrap();
        let repo = File::open(root.join("r")).unwrap();
        let open = |p: &str| plain_path(p) && open_beneath(&repo, p).is_ok();
        assert!(open("a/x.rpm"));
        assert!(open("inside/x.rpm"));
        for bad in [
            "../other/secret",
            "a/../../other/secret",
            "/etc/passwd",
            "leak",
            "abs",
            "a/.hidden/y",
            "a//x.rpm",
            "a/x.rpm\0",
            "",
        ] {
            assert!(!open(bad), "{bad:?}");
        }
        // The kernel check holds on its own, without the text check.
        for bad in ["leak", "abs", "../other/secret", "a/../../other/secret"] {
            assert!(open_beneath(&repo, bad).is_err(), "{bad:?}");
        }
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
