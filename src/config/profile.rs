//! Defaults profiles (`--defaults NAME`): `profiles/<name>.toml` at the root of a module
//! tree picks, by one name, the properties (versions as `<module>.DEFAULT`, switches), the
//! environment of every target, per-module properties (`[[override]]`, modules by a
//! regular expression over full names) and the modules left out of a release. A profile's
//! values rank above the configurations and below `-p`, and are taken as given like
//! `-p` ones.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::tree::Location;

/// One profile, loaded and checked for form (what it names is checked by `lint` and at
/// resolution).
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    /// Full module names left out, each with its line.
    pub disable: Vec<(String, usize)>,
    /// `KEY = VALUE`, each with its line, in file order.
    pub properties: Vec<(String, String, usize)>,
    /// The environment of every target.
    pub env: Vec<(String, String)>,
    pub overrides: Vec<Override>,
}

/// `[[override]]`: properties for the modules a regular expression matches (whole names).
#[derive(Debug, Clone)]
pub struct Override {
    pub modules: regex::Regex,
    pub line: usize,
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("no profile {name}: {path} does not exist")]
    Missing { name: String, path: PathBuf },
    #[error("{at}: {message}")]
    Bad { at: Location, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ProfileError {
    pub fn hint(&self) -> String {
        match self {
            ProfileError::Missing { .. } => {
                "profiles are profiles/<NAME>.toml at the root of the module tree".into()
            }
            ProfileError::Bad { .. } => "see the guide, Profiles, for the format".into(),
            ProfileError::Io { .. } => "check the file's permissions".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: Option<String>,
    #[serde(default)]
    disable: Vec<Spanned<String>>,
    #[serde(default)]
    properties: toml::Table,
    #[serde(default)]
    env: toml::Table,
    #[serde(default, rename = "override")]
    overrides: Vec<Spanned<OverrideEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideEntry {
    modules: Spanned<String>,
    #[serde(default)]
    properties: toml::Table,
}

/// The file of profile `name` in `tree_root`.
pub fn path_of(tree_root: &Path, name: &str) -> PathBuf {
    tree_root.join("profiles").join(format!("{name}.toml"))
}

/// The names of the profiles a tree has, sorted.
pub fn names(tree_root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(tree_root.join("profiles"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

/// Loads profile `name` of the tree at `tree_root`.
pub fn load(tree_root: &Path, name: &str) -> Result<Profile, ProfileError> {
    let path = path_of(tree_root, name);
    if name.is_empty() || name.contains('/') || name.starts_with('.') || !path.is_file() {
        return Err(ProfileError::Missing {
            name: name.to_string(),
            path,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Io {
        path: path.clone(),
        source,
    })?;
    parse(name, &path, &text)
}

/// Loads each of `names`, in order (a later one wins where they overlap).
pub fn load_all(tree_root: &Path, names: &[String]) -> Result<Vec<Profile>, ProfileError> {
    names.iter().map(|n| load(tree_root, n)).collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A profile from its text.
pub fn parse(name: &str, path: &Path, text: &str) -> Result<Profile, ProfileError> {
    let at = |line: usize| Location {
        file: path.to_path_buf(),
        line,
    };
    let file: File = toml::from_str(text).map_err(|e| ProfileError::Bad {
        at: at(e.span().map_or(1, |s| line_of(text, s.start))),
        message: e.message().to_string(),
    })?;
    // A key's line: where `"KEY" =` or `KEY =` first appears after `from`.
    let key_line = |key: &str, from: usize| {
        let quoted = format!("\"{key}\"");
        let rest = &text[from.min(text.len())..];
        let found = rest
            .lines()
            .scan(from, |pos, l| {
                let here = *pos;
                *pos += l.len() + 1;
                Some((here, l))
            })
            .find(|(_, l)| {
                let t = l.trim_start();
                (t.starts_with(&quoted) || t.starts_with(key))
                    && t[if t.starts_with(&quoted) {
                        quoted.len()
                    } else {
                        key.len()
                    }..]
                        .trim_start()
                        .starts_with('=')
            });
        found.map_or(1, |(pos, _)| line_of(text, pos))
    };
    let strings = |table: &toml::Table, what: &str, from: usize| {
        table
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k.clone(), s.clone(), key_line(k, from))),
                toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_) => {
                    Ok((k.clone(), v.to_string(), key_line(k, from)))
                }
                _ => Err(ProfileError::Bad {
                    at: at(key_line(k, from)),
                    message: format!("{what} {k}: a value must be a string"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let section = |header: &str| text.find(header).unwrap_or(0);
    let properties = strings(&file.properties, "property", section("[properties]"))?;
    let env = strings(&file.env, "env", section("[env]"))?
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    let mut overrides = Vec::new();
    for o in &file.overrides {
        let start = o.span().start;
        let e = o.get_ref();
        let line = line_of(text, e.modules.span().start);
        // The whole name: `a\.b` must not match `xa.bc`.
        let modules =
            regex::Regex::new(&format!("^(?:{})$", e.modules.get_ref())).map_err(|err| {
                ProfileError::Bad {
                    at: at(line),
                    message: format!(
                        "modules {:?} is not a regular expression: {err}",
                        e.modules.get_ref()
                    ),
                }
            })?;
        overrides.push(Override {
            modules,
            line,
            properties: strings(&e.properties, "override property", start)?
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect(),
        });
    }
    Ok(Profile {
        name: name.to_string(),
        file: path.to_path_buf(),
        description: file.description,
        disable: file
            .disable
            .iter()
            .map(|d| (d.get_ref().clone(), line_of(text, d.span().start)))
            .collect(),
        properties,
        env,
        overrides,
    })
}

impl Profile {
    /// The properties it sets for module `module`: its own, then its overrides' that
    /// match the module (later ones win), each with the line that sets it.
    pub fn properties_for(&self, module: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .properties
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        for o in self.overrides.iter().filter(|o| o.modules.is_match(module)) {
            out.extend(o.properties.iter().cloned());
        }
        out
    }

    /// Whether it leaves `module` out.
    pub fn disables(&self, module: &str) -> bool {
        self.disable.iter().any(|(m, _)| m == module)
    }

    /// What a build key names of it: everything that can change what a build makes.
    pub fn key_text(&self) -> String {
        let mut s = format!("profile {}\n", self.name);
        for (m, _) in &self.disable {
            s += &format!("profile disable {m}\n");
        }
        for (k, v) in &self.env {
            s += &format!("profile env {k} = {v:?}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIGHTLY: &str = r#"description = "Nightly: branch heads, Java client off"
disable = ["my-project.clients.java_api"]

[properties]
"my-project.servers.web_server.DEFAULT" = "web_server_B_TRUNK"

[env]
CFLAGS = "-O0 -g"

[[override]]
modules = 'my-project\.servers\..*'
properties = { "package.compression" = "xz" }
"#;

    #[test]
    fn a_profile_reads_with_its_lines_and_matches_whole_names() {
        let p = parse("nightly", Path::new("profiles/nightly.toml"), NIGHTLY).unwrap();
        assert_eq!(p.disable, [("my-project.clients.java_api".to_string(), 2)]);
        assert_eq!(p.properties[0].2, 5);
        assert_eq!(p.env, [("CFLAGS".to_string(), "-O0 -g".to_string())]);
        assert_eq!(p.overrides[0].line, 11);
        let web = p.properties_for("my-project.servers.web_server");
        assert!(web.contains(&("package.compression".into(), "xz".into())));
        assert!(
            !p.properties_for("my-project.servers")
                .contains(&("package.compression".into(), "xz".into()))
        );
        assert!(
            !p.properties_for("x.my-project.servers.web")
                .iter()
                .any(|(k, _)| k == "package.compression")
        );
        assert!(p.disables("my-project.clients.java_api"));
    }

    #[test]
    fn a_broken_profile_says_where() {
        let e = parse("x", Path::new("p.toml"), "disable = [\"a\"]\nunknown = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
        let e = parse("x", Path::new("p.toml"), "[[override]]\nmodules = '('\n").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
    }
}
