//! The `module.toml` file format (DESIGN §2), as serde types. Keys are part of the contract:
//! unknown keys are refused, with the file and line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One `module.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleFile {
    pub module: ModuleSection,
    #[serde(default)]
    pub configuration: Vec<Spanned<ConfigurationEntry>>,
}

/// Level of a module in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    Project,
    Subsystem,
    Component,
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModuleKind::Project => "project",
            ModuleKind::Subsystem => "subsystem",
            ModuleKind::Component => "component",
        })
    }
}

/// Fields a module and its configurations share; a configuration inherits what it leaves unset.
/// (Written out in both structs because serde's `flatten` cannot deny unknown keys.)
#[derive(Debug, Default, Clone)]
pub struct SharedFields {
    pub description: Option<String>,
    pub vcsroot: Option<String>,
    pub license: Option<String>,
    pub package_name: Option<Spanned<String>>,
    pub homepage: Option<String>,
    pub vendor: Option<String>,
    /// Policy: must stay empty (the name is displayed).
    pub display_name: Option<Spanned<String>>,
    pub download_from: Option<String>,
}

macro_rules! shared_fields {
    ($t:ty) => {
        impl $t {
            pub fn shared(&self) -> SharedFields {
                SharedFields {
                    description: self.description.clone(),
                    vcsroot: self.vcsroot.clone(),
                    license: self.license.clone(),
                    package_name: self.package_name.clone(),
                    homepage: self.homepage.clone(),
                    vendor: self.vendor.clone(),
                    display_name: self.display_name.clone(),
                    download_from: self.download_from.clone(),
                }
            }
        }
    };
}
shared_fields!(ModuleSection);
shared_fields!(ConfigurationEntry);

/// The `[module]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSection {
    pub name: Spanned<String>,
    pub kind: ModuleKind,
    pub description: Option<String>,
    pub vcsroot: Option<String>,
    pub license: Option<String>,
    pub package_name: Option<Spanned<String>>,
    pub homepage: Option<String>,
    pub vendor: Option<String>,
    /// Policy: must stay empty (the name is displayed).
    pub display_name: Option<Spanned<String>>,
    pub download_from: Option<String>,
}

/// One `[[configuration]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationEntry {
    pub name: Spanned<String>,
    pub version: Option<Spanned<String>>,
    pub age: Option<Spanned<i64>>,
    pub tag: Option<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub description: Option<String>,
    pub vcsroot: Option<String>,
    pub license: Option<String>,
    pub package_name: Option<Spanned<String>>,
    pub homepage: Option<String>,
    pub vendor: Option<String>,
    /// Policy: must stay empty (the name is displayed).
    pub display_name: Option<Spanned<String>>,
    pub download_from: Option<String>,
    /// Project and subsystem configurations: the child configurations of the release.
    pub children: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub dependencies: Vec<Spanned<DependencyEntry>>,
    pub commands: Option<Spanned<Commands>>,
}

/// Build-time, run-time or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Build,
    Runtime,
    Both,
}

impl Scope {
    pub fn at_build(self) -> bool {
        matches!(self, Scope::Build | Scope::Both)
    }
    pub fn at_runtime(self) -> bool {
        matches!(self, Scope::Runtime | Scope::Both)
    }
}

/// One `[[configuration.dependencies]]` entry. Which keys are set gives its type: `module`
/// alone is dynamic, with `constraint` version-constrained, with `configuration` static;
/// `external` is an OS package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependencyEntry {
    pub module: Option<String>,
    pub external: Option<String>,
    pub scope: Scope,
    pub constraint: Option<String>,
    pub configuration: Option<String>,
    /// The approved policy exception that allows a static dependency (a ticket or reason).
    pub exception: Option<String>,
}

/// The build targets, in the order they run; `checkout` before them and `clean` on request.
pub const TARGETS: [&str; 11] = [
    "init",
    "configure",
    "compile",
    "doc",
    "checkstyle",
    "install",
    "packaging",
    "test",
    "prepublish",
    "publish",
    "postpublish",
];

/// `[configuration.commands]`: shell lines per target.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    pub checkout: Option<String>,
    pub init: Option<String>,
    pub configure: Option<String>,
    pub compile: Option<String>,
    pub doc: Option<String>,
    pub checkstyle: Option<String>,
    pub install: Option<String>,
    pub packaging: Option<String>,
    pub test: Option<String>,
    pub prepublish: Option<String>,
    pub publish: Option<String>,
    pub postpublish: Option<String>,
    pub clean: Option<String>,
}

impl Commands {
    /// `(target, command)` for every set command: checkout, the targets in order, clean.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 13] = [
            ("checkout", &self.checkout),
            ("init", &self.init),
            ("configure", &self.configure),
            ("compile", &self.compile),
            ("doc", &self.doc),
            ("checkstyle", &self.checkstyle),
            ("install", &self.install),
            ("packaging", &self.packaging),
            ("test", &self.test),
            ("prepublish", &self.prepublish),
            ("publish", &self.publish),
            ("postpublish", &self.postpublish),
            ("clean", &self.clean),
        ];
        all.into_iter()
            .filter_map(|(t, c)| c.as_deref().map(|c| (t, c)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}
