//! Platforms and layout defaults: the data in `repo-layout/` (built in, or `--layout DIR`).
//!
//! Pure data and lookups; the files are parsed once at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const BUILTIN_PLATFORMS: &str = include_str!("../../repo-layout/platforms.toml");
const BUILTIN_LAYOUT: &str = include_str!("../../repo-layout/layout.toml");

/// Binary package format of a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    Rpm,
    Deb,
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageFormat::Rpm => "rpm",
            PackageFormat::Deb => "deb",
        })
    }
}

/// A named build target environment (`el9_x86_64`, `deb12_amd64`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The table's key in `platforms.toml` (set from it when the layout is read); kept
    /// when a platform travels as JSON (a package spec sent to a build node).
    #[serde(default)]
    pub name: String,
    /// Os tag, used as `${os}` and as the APT suite (`el9`, `deb12`).
    pub os: String,
    pub format: PackageFormat,
    pub rpm_arch: String,
    pub deb_arch: String,
    pub lib_dir: String,
}

impl Platform {
    /// `${architecture}`: the architecture name in the platform's own package format.
    pub fn architecture(&self) -> &str {
        match self.format {
            PackageFormat::Rpm => &self.rpm_arch,
            PackageFormat::Deb => &self.deb_arch,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRules {
    pub template: String,
    pub rpm_name: String,
    pub deb_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryLayout {
    pub yum: String,
    pub apt: String,
    pub apt_component: String,
    pub key: String,
}

/// Everything in `repo-layout/`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub default_platform: String,
    pub download: DownloadRules,
    /// System properties (`workspaceDir`, `stageDir`, `prefix`) as templates.
    pub system: BTreeMap<String, String>,
    /// Default packager settings (`package.*`).
    pub package: BTreeMap<String, String>,
    pub repository: RepositoryLayout,
    pub platforms: BTreeMap<String, Platform>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    default_platform: String,
    download: DownloadRules,
    system: BTreeMap<String, String>,
    package: BTreeMap<String, String>,
    repository: RepositoryLayout,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformsFile {
    platform: BTreeMap<String, Platform>,
}

/// A layout file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// An unknown platform name, with the known ones as a hint.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform `{name}`; known platforms: {known}")]
pub struct UnknownPlatform {
    pub name: String,
    pub known: String,
}

impl Layout {
    /// The layout compiled into the binary (the repository's `repo-layout/`).
    pub fn builtin() -> Layout {
        Layout::parse(Path::new("repo-layout"), BUILTIN_LAYOUT, BUILTIN_PLATFORMS)
            .expect("the built-in repo-layout/ is valid (checked by a unit test)")
    }

    /// Reads `layout.toml` and `platforms.toml` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Layout, LayoutError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| LayoutError::Read { path, source })
        };
        Layout::parse(dir, &read("layout.toml")?, &read("platforms.toml")?)
    }

    fn parse(dir: &Path, layout: &str, platforms: &str) -> Result<Layout, LayoutError> {
        let parse_err = |name: &str, e: toml::de::Error| LayoutError::Parse {
            path: dir.join(name),
            source: Box::new(e),
        };
        let file: LayoutFile = toml::from_str(layout).map_err(|e| parse_err("layout.toml", e))?;
        let pf: PlatformsFile =
            toml::from_str(platforms).map_err(|e| parse_err("platforms.toml", e))?;
        let invalid = |message: String| LayoutError::Invalid {
            path: dir.join("platforms.toml"),
            message,
        };
        let mut platforms = BTreeMap::new();
        for (name, mut p) in pf.platform {
            let arch = name.strip_prefix(&format!("{}_", p.os)).ok_or_else(|| {
                invalid(format!("platform `{name}` must be named `{}_<arch>`", p.os))
            })?;
            if arch != p.rpm_arch && arch != p.deb_arch {
                return Err(invalid(format!(
                    "platform `{name}`: `{arch}` is neither its rpm_arch `{}` nor its deb_arch `{}`",
                    p.rpm_arch, p.deb_arch
                )));
            }
            p.name = name.clone();
            platforms.insert(name, p);
        }
        if !platforms.contains_key(&file.default_platform) {
            return Err(LayoutError::Invalid {
                path: dir.join("layout.toml"),
                message: format!(
                    "default_platform `{}` is not in platforms.toml",
                    file.default_platform
                ),
            });
        }
        Ok(Layout {
            default_platform: file.default_platform,
            download: file.download,
            system: file.system,
            package: file.package,
            repository: file.repository,
            platforms,
        })
    }

    /// The platform called `name`, or the default one when `name` is `None`.
    pub fn platform(&self, name: Option<&str>) -> Result<&Platform, UnknownPlatform> {
        let name = name.unwrap_or(&self.default_platform);
        self.platforms.get(name).ok_or_else(|| UnknownPlatform {
            name: name.to_string(),
            known: self
                .platforms
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_layout_has_the_required_platforms() {
        let l = Layout::builtin();
        for name in [
            "el8_x86_64",
            "el9_x86_64",
            "el9_aarch64",
            "el9_noarch",
            "deb12_amd64",
            "deb12_arm64",
            "deb12_all",
        ] {
            let p = l.platform(Some(name)).unwrap();
            assert_eq!(p.name, name);
        }
        let deb = l.platform(Some("deb12_amd64")).unwrap();
        assert_eq!(
            (deb.format, deb.architecture(), deb.os.as_str()),
            (PackageFormat::Deb, "amd64", "deb12")
        );
        let el = l.platform(Some("el9_x86_64")).unwrap();
        assert_eq!(
            (el.architecture(), el.lib_dir.as_str()),
            ("x86_64", "lib64")
        );
        assert!(l.platform(Some("sl5_x86_64")).is_err());
    }

    #[test]
    fn platform_name_must_match_os_and_arch() {
        let bad = "[platform.el9_x86_64]\nos = \"el8\"\nformat = \"rpm\"\nrpm_arch = \"x86_64\"\ndeb_arch = \"amd64\"\nlib_dir = \"lib64\"\n";
        let err = Layout::parse(Path::new("x"), BUILTIN_LAYOUT, bad).unwrap_err();
        assert!(err.to_string().contains("el8_<arch>"), "{err}");
    }
}
