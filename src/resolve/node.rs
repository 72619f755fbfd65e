//! The machine a plan is for: what its package manager says is installed, and whether
//! it may install more.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use super::Node;
use crate::layout::PackageFormat;

/// This machine. `privileged` overrides the check (`--privileged yes|no`). The package
/// database is read once, on first use (one `rpm -qa` / `dpkg-query -W`, not one query per
/// dependency: a release has thousands).
pub struct ThisNode {
    pub privileged: Option<bool>,
    /// The RPM and the DEB database.
    installed: [OnceLock<HashMap<String, Vec<String>>>; 2],
}

impl ThisNode {
    pub fn new(privileged: Option<bool>) -> ThisNode {
        ThisNode {
            privileged,
            installed: Default::default(),
        }
    }
}

/// `name → versions` from the package database's listing.
fn read_database(format: PackageFormat) -> HashMap<String, Vec<String>> {
    let out = match format {
        PackageFormat::Rpm => Command::new("rpm")
            .args(["-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"])
            .output(),
        PackageFormat::Deb => Command::new("dpkg-query")
            .args(["-W", "-f", "${Package}\\t${Status}\\t${Version}\\n"])
            .output(),
    };
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    let Ok(out) = out else { return map };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let name = f.next().unwrap_or_default();
        let version = match format {
            PackageFormat::Rpm => f.next(),
            // Removed packages whose configuration files remain are listed too.
            PackageFormat::Deb => match (f.next(), f.next()) {
                (Some(status), v) if status.ends_with(" installed") => v,
                _ => None,
            },
        };
        if let Some(v) = version.filter(|_| !name.is_empty()) {
            map.entry(name.to_string()).or_default().push(v.to_string());
        }
    }
    map
}

impl Node for ThisNode {
    fn installed(&self, format: PackageFormat, name: &str) -> Vec<String> {
        let slot = match format {
            PackageFormat::Rpm => &self.installed[0],
            PackageFormat::Deb => &self.installed[1],
        };
        slot.get_or_init(|| read_database(format))
            .get(name)
            .cloned()
            .unwrap_or_default()
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
    fn installed(&self, _: PackageFormat, name: &str) -> Vec<String> {
        self.installed.get(name).cloned().into_iter().collect()
    }

    fn privileged(&self) -> bool {
        self.privileged
    }
}
