//! Repositories a plan looks in: a repository directory on this machine (`file://` or a
//! path), or one served by `packyard serve` (`http://HOST/repos/NAME`).

use std::path::PathBuf;

use super::Packages;

/// A repository directory: `<dir>/<download-from path>`.
pub struct LocalRepo {
    pub dir: PathBuf,
}

impl Packages for LocalRepo {
    fn find(&self, path: &str) -> Option<String> {
        if crate::blobs::check_key(path).is_err() {
            return None;
        }
        let full = self.dir.join(path);
        full.is_file().then(|| full.display().to_string())
    }

    fn name(&self) -> String {
        self.dir.display().to_string()
    }
}

/// A served repository: `HEAD <url>/<download-from path>`.
pub struct RemoteRepo {
    pub url: String,
    agent: ureq::Agent,
    /// For private repositories.
    token: Option<String>,
}

impl RemoteRepo {
    pub fn new(url: &str, token: Option<&str>) -> RemoteRepo {
        RemoteRepo {
            url: url.trim_end_matches('/').to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(30)))
                .build()
                .new_agent(),
            token: token.map(str::to_string),
        }
    }
}

impl Packages for RemoteRepo {
    fn find(&self, path: &str) -> Option<String> {
        let url = format!("{}/{}", self.url, crate::server::url_path(path));
        let mut req = self.agent.head(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let r = req.call().ok()?;
        (r.status().as_u16() == 200).then_some(url)
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

/// `--repo` values: URLs are served repositories, anything else a directory.
pub fn open(spec: &str, token: Option<&str>) -> Box<dyn Packages> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        Box::new(RemoteRepo::new(spec, token))
    } else {
        let dir = spec.strip_prefix("file://").unwrap_or(spec);
        Box::new(LocalRepo {
            dir: PathBuf::from(dir),
        })
    }
}
