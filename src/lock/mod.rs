//! Locking and cloning configurations (DESIGN §1 "Locking and registration"), the pure
//! part: a configuration's canonical text (its own metadata plus the module fields it
//! inherits, no release context), its hash, the changes between two canonical texts, and
//! the text edit that clones a configuration entry under a new version.
//! Recording locks is the store's job ([`crate::repo`]).

use sha2::{Digest, Sha256};

use crate::config::{ConfigId, Tree};

/// The canonical text of a configuration: one `key = value` line per piece of metadata,
/// in a fixed order, values quoted. Only what the configuration says itself and what it
/// inherits from its module (no project properties), as locking is done "without
/// context".
pub fn canonical(tree: &Tree, id: ConfigId) -> String {
    let c = &tree.configurations[id];
    let m = &tree.modules[c.module];
    let mut lines: Vec<String> = Vec::new();
    let mut put = |k: &str, v: &str| lines.push(format!("{k} = {v:?}"));
    put("configuration", &c.name);
    put("module", &m.name);
    if let Some((v, _)) = &c.version {
        put("version", v);
    }
    if let Some((a, _)) = &c.age {
        put("age", &a.to_string());
    }
    if let Some(t) = &c.tag {
        put("tag", t);
    }
    if !c.profiles.is_empty() {
        put("profiles", &c.profiles.join(","));
    }
    let (own, inherited) = (&c.fields, &m.fields);
    for (k, v) in [
        (
            "description",
            own.description.clone().or(inherited.description.clone()),
        ),
        ("vcsroot", own.vcsroot.clone().or(inherited.vcsroot.clone())),
        ("license", own.license.clone().or(inherited.license.clone())),
        (
            "package_name",
            own.package_name
                .as_ref()
                .or(inherited.package_name.as_ref())
                .map(|s| s.get_ref().clone()),
        ),
        (
            "homepage",
            own.homepage.clone().or(inherited.homepage.clone()),
        ),
        ("vendor", own.vendor.clone().or(inherited.vendor.clone())),
        (
            "download_from",
            own.download_from
                .clone()
                .or(inherited.download_from.clone()),
        ),
    ] {
        if let Some(v) = v {
            put(k, &v);
        }
    }
    if let Some((children, _)) = &c.children {
        put("children", &children.join(","));
    }
    let mut props: Vec<_> = c.properties.iter().collect();
    props.sort_by(|a, b| a.key.cmp(&b.key));
    for p in props {
        put(&format!("property {}", p.key), &p.value);
    }
    for (i, d) in c.dependencies.iter().enumerate() {
        let e = &d.entry;
        let mut parts = Vec::new();
        if let Some(m) = &e.module {
            parts.push(format!("module={m}"));
        }
        if let Some(x) = &e.external {
            parts.push(format!("external={x}"));
        }
        parts.push(format!("scope={:?}", e.scope).to_lowercase());
        if let Some(x) = &e.constraint {
            parts.push(format!("constraint={x}"));
        }
        if let Some(x) = &e.configuration {
            parts.push(format!("configuration={x}"));
        }
        if let Some(x) = &e.exception {
            parts.push(format!("exception={x}"));
        }
        put(&format!("dependency {}", i + 1), &parts.join(" "));
    }
    if let Some(cmds) = c.commands() {
        for (target, text) in cmds.iter() {
            put(&format!("command {target}"), text);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The value of `key` in a canonical text, if it has that line.
pub fn field(canonical: &str, key: &str) -> Option<String> {
    let prefix = format!("{key} = ");
    canonical
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        // Values are written with Rust's string escapes, which JSON reads for every
        // character a package name or version may hold.
        .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
}

/// The hex sha256 of a canonical text.
pub fn hash(canonical: &str) -> String {
    format!("{:x}", Sha256::digest(canonical.as_bytes()))
}

/// What changed from `old` to `new`, one human line per key: `version: "1.0" → "1.1"`,
/// `property x: added "v"`, `command test: removed`.
pub fn changes(old: &str, new: &str) -> Vec<String> {
    let split = |s: &str| -> Vec<(String, String)> {
        s.lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (a, b) = (split(old), split(new));
    let get =
        |v: &[(String, String)], k: &str| v.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let mut keys: Vec<&String> = a.iter().map(|(k, _)| k).collect();
    for (k, _) in &b {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .filter_map(|k| match (get(&a, k), get(&b, k)) {
            (Some(x), Some(y)) if x != y => Some(format!("{k}: {x} → {y}")),
            (Some(_), None) => Some(format!("{k}: removed")),
            (None, Some(y)) => Some(format!("{k}: added {y}")),
            _ => None,
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CloneError {
    #[error("{0} is not a valid X.Y.Z version")]
    BadVersion(String),
    #[error("no `[[configuration]]` entry named {0} at its recorded line")]
    EntryNotFound(String),
    #[error("{0} does not end in _R_<major>_<minor>_<revision>_<age>")]
    NotATagConfiguration(String),
}

/// A configuration's name for another version and age: `web_server_R_2_5_1_1` →
/// `web_server_R_2_6_0_1`.
pub fn cloned_name(name: &str, version: &str, age: u32) -> Result<String, CloneError> {
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(CloneError::BadVersion(version.into()));
    }
    let Some(i) = name.rfind("_R_") else {
        return Err(CloneError::NotATagConfiguration(name.into()));
    };
    Ok(format!("{}_R_{}_{age}", &name[..i], parts.join("_")))
}

/// The text of a module file with a copy of the `[[configuration]]` entry starting at
/// `line` (1-based, as recorded for `name`) appended, renamed to `new_name` with the new
/// version and age; a tag and a description that mention the old version follow it.
pub fn clone_entry(
    text: &str,
    name: &str,
    line: usize,
    old_version: &str,
    new_name: &str,
    version: &str,
    age: u32,
) -> Result<String, CloneError> {
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with("[[configuration]]");
    // The entry's header is the `[[configuration]]` line at or above the recorded line.
    let start = (0..line.min(lines.len()))
        .rev()
        .find(|&i| is_header(lines[i]))
        .ok_or_else(|| CloneError::EntryNotFound(name.into()))?;
    let end = (start + 1..lines.len())
        .find(|&i| is_header(lines[i]))
        .unwrap_or(lines.len());
    let mut block: Vec<String> = Vec::new();
    let mut in_tables = false;
    let mut found = false;
    for l in &lines[start..end] {
        let t = l.trim_start();
        if t.starts_with('[') && !is_header(t) {
            in_tables = true;
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let new = if in_tables {
            l.to_string()
        } else {
            match key {
                "name" => {
                    found = found || t.contains(&format!("\"{name}\""));
                    format!("name = \"{new_name}\"")
                }
                "version" => format!("version = \"{version}\""),
                "age" => format!("age = {age}"),
                "tag" | "description" => l.replace(old_version, version),
                _ => l.to_string(),
            }
        };
        block.push(new);
    }
    if !found {
        return Err(CloneError::EntryNotFound(name.into()));
    }
    while block.last().is_some_and(|l| l.trim().is_empty()) {
        block.pop();
    }
    let mut out = text.trim_end_matches('\n').to_string();
    out.push_str("\n\n");
    out.push_str(&block.join("\n"));
    out.push('\n');
    Ok(out)
}

/// What `clone` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cloned {
    pub configuration: String,
    pub from: String,
    pub version: String,
    pub age: u32,
    pub file: std::path::PathBuf,
}

/// Clones `name` in its module file as version `version`, age `age` (default: 1 for a new
/// version, the next age for the same one). The file is rewritten atomically, then read
/// back to check the new entry parses.
pub fn clone_in_tree(
    tree: &Tree,
    name: &str,
    version: &str,
    age: Option<u32>,
) -> Result<Cloned, CloneFailure> {
    let id = tree
        .configuration(name)
        .ok_or_else(|| CloneFailure::Other(format!("no configuration named {name}")))?;
    let c = &tree.configurations[id];
    let old_version = c
        .version
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or_default();
    let old_age = c.age.as_ref().map(|(a, _)| *a).unwrap_or(0);
    let age = age.unwrap_or(if old_version == version {
        u32::try_from(old_age + 1).unwrap_or(1)
    } else {
        1
    });
    let new_name = cloned_name(name, version, age)?;
    if tree.configuration(&new_name).is_some() {
        return Err(CloneFailure::Other(format!("{new_name} exists already")));
    }
    let file = c.location.file.clone();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| CloneFailure::Other(format!("{}: {e}", file.display())))?;
    let out = clone_entry(
        &text,
        name,
        c.location.line,
        &old_version,
        &new_name,
        version,
        age,
    )?;
    crate::atomic::write(&file, out.as_bytes())
        .map_err(|e| CloneFailure::Other(format!("{}: {e}", file.display())))?;
    let reread = Tree::load(&tree.root).map_err(|e| CloneFailure::Other(e.to_string()))?;
    if reread.configuration(&new_name).is_none() || !reread.problems.is_empty() {
        // Put the file back as it was: a clone must not break the tree.
        let _ = crate::atomic::write(&file, text.as_bytes());
        return Err(CloneFailure::Other(format!(
            "the cloned entry did not read back from {}; the file is unchanged",
            file.display()
        )));
    }
    Ok(Cloned {
        configuration: new_name,
        from: name.into(),
        version: version.into(),
        age,
        file,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CloneFailure {
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"[module]
name = "p.tool"
kind = "component"

[[configuration]]
name = "tool_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "tool-1.0.0"
description = "1.0.0-1: first"

[configuration.properties]
"version" = "stays"

[configuration.commands]
checkout = "git checkout tool-1.0.0"

[[configuration]]
name = "tool_R_0_9_0_1"
version = "0.9.0"
age = 1
"#;

    #[test]
    fn clone_copies_the_entry_with_the_new_version() {
        let name = cloned_name("tool_R_1_0_0_1", "1.1.0", 2).unwrap();
        assert_eq!(name, "tool_R_1_1_0_2");
        let out = clone_entry(FILE, "tool_R_1_0_0_1", 6, "1.0.0", &name, "1.1.0", 2).unwrap();
        assert!(out.starts_with(FILE.trim_end()));
        let added = &out[FILE.trim_end().len()..];
        assert!(added.contains("name = \"tool_R_1_1_0_2\"\nversion = \"1.1.0\"\nage = 2\n"));
        assert!(added.contains("tag = \"tool-1.1.0\""));
        assert!(added.contains("description = \"1.1.0-1: first\""));
        // Sub-tables are copied as written: the property named `version` stays.
        assert!(added.contains("\"version\" = \"stays\""));
        assert!(added.contains("checkout = \"git checkout tool-1.0.0\""));
        assert!(!added.contains("0.9.0"));
        let parsed: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(parsed["configuration"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn bad_clones_are_refused() {
        assert_eq!(
            cloned_name("tool_R_1_0_0_1", "1.1", 1),
            Err(CloneError::BadVersion("1.1".into()))
        );
        assert!(cloned_name("tool_B_main", "1.1.0", 1).is_err());
        assert!(clone_entry(FILE, "tool_R_9_9_9_9", 6, "9", "x", "1.0.0", 1).is_err());
    }

    #[test]
    fn changes_name_each_key() {
        let old = "version = \"1.0\"\ncommand test = \"make check\"\n";
        let new = "version = \"1.1\"\nproperty x = \"v\"\n";
        assert_eq!(
            changes(old, new),
            [
                "version: \"1.0\" → \"1.1\"",
                "command test: removed",
                "property x: added \"v\""
            ]
        );
    }
}
