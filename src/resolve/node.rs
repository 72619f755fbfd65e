//! The machine a plan is for: what its package manager says is installed, and whether
//! it may install more.

use std::collections::HashMap;
use std::process::Command;

use super::Node;
use crate::layout::PackageFormat;

/// This machine. `privileged` overrides the check (`--privileged yes|no`).
pub struct ThisNode {
    pub privileged: Option<bool>,
}

impl Node for ThisNode {
    fn installed(&self, format: PackageFormat, name: &str) -> Option<String> {
        let out = match format {
            PackageFormat::Rpm => Command::new("rpm")
                .args(["-q", "--qf", "%{VERSION}-%{RELEASE}\\n", name])
                .output(),
            PackageFormat::Deb => Command::new("dpkg-query")
                .args(["-W", "-f", "${Status}\\t${Version}\\n", name])
                .output(),
        }
        .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next()?.trim();
        match format {
            PackageFormat::Rpm => Some(line.to_string()),
            PackageFormat::Deb => {
                let (status, version) = line.split_once('\t')?;
                status.ends_with(" installed").then(|| version.to_string())
            }
        }
    }

    fn privileged(&self) -> bool {
        self.privileged.unwrap_or_else(can_install)
    }
}

/// Whether this process may install packages: root, or passwordless sudo.
pub fn can_install() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    euid == 0
        || Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// A node that said what it has (`GET /api/v1/resolve?installed=NAME=VERSION`): the
/// server cannot look at it.
pub struct ReportedNode {
    pub installed: HashMap<String, String>,
    pub privileged: bool,
}

impl Node for ReportedNode {
    fn installed(&self, _: PackageFormat, name: &str) -> Option<String> {
        self.installed.get(name).cloned()
    }

    fn privileged(&self) -> bool {
        self.privileged
    }
}
