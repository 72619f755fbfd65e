//! Build keys: equal keys mean a component would be built from equal inputs, so its
//! recorded artifacts can be used instead. The key hashes the resolved configuration
//! (with this node's directories written as their property names, so every node computes
//! the same key), the checked-out source tree, the platform, the packyard version and the
//! keys of the component's build dependencies.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::ResolvedConfiguration;

/// The resolved configuration as text, one line per field, property, dependency and
/// command. `paths` are (absolute path, name) pairs — the workspace and tree directories —
/// replaced in every value by `${name}`.
pub fn configuration_text(r: &ResolvedConfiguration, paths: &[(String, &str)]) -> String {
    let mut paths: Vec<&(String, &str)> = paths.iter().filter(|(p, _)| !p.is_empty()).collect();
    // The longer path first: a workspace inside the tree must not be half replaced.
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let norm = |v: &str| {
        let mut v = v.to_string();
        for (p, name) in &paths {
            v = v.replace(p.as_str(), &format!("${{{name}}}"));
        }
        v
    };
    let mut lines = vec![
        format!("configuration = {:?}", r.configuration),
        format!("module = {:?}", r.module),
        format!("platform = {:?}", r.platform),
    ];
    for (k, p) in &r.properties {
        lines.push(format!("property {k} = {:?}", norm(&p.value)));
    }
    for d in &r.dependencies {
        lines.push(format!(
            "dependency {} {:?} {:?} constraint={:?} configuration={:?}",
            d.name,
            d.kind,
            d.scope,
            d.constraint.as_ref().map(|c| c.to_string()),
            d.configuration
        ));
    }
    for c in &r.commands {
        lines.push(format!("command {} = {:?}", c.target, norm(&c.command)));
    }
    if let Some(d) = &r.download {
        lines.push(format!("download = {:?} {:?}", d.tarball, d.package));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The hash of a checked-out tree: every path (sorted), its type, whether it is
/// executable, and its content or link target. `.git` is left out: the files are the
/// source, not how they were fetched. Like git, only the executable bit of a mode
/// counts, so two nodes with different umasks agree.
pub fn source_hash(dir: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    fn walk(root: &Path, dir: &Path, h: &mut Sha256) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            if name == ".git" {
                continue;
            }
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let meta = fs::symlink_metadata(&path)?;
            let rel = rel.as_os_str().as_encoded_bytes();
            if meta.file_type().is_symlink() {
                h.update(b"link\0");
                h.update(rel);
                h.update(b"\0");
                h.update(fs::read_link(&path)?.as_os_str().as_encoded_bytes());
                h.update(b"\0");
            } else if meta.is_dir() {
                h.update(b"dir\0");
                h.update(rel);
                h.update(b"\0");
                walk(root, &path, h)?;
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                h.update(if exec { b"exec\0" } else { b"file\0" });
                h.update(rel);
                h.update(b"\0");
                let mut f = fs::File::open(&path)?;
                let mut content = Sha256::new();
                io::copy(&mut f, &mut content)?;
                h.update(content.finalize());
            }
        }
        Ok(())
    }
    walk(dir, dir, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The build key from its parts. `dependencies` are (configuration, key) of the
/// component's build dependencies.
pub fn build_key(
    configuration_text: &str,
    source: &str,
    platform: &str,
    dependencies: &[(String, String)],
) -> String {
    let mut deps = dependencies.to_vec();
    deps.sort();
    let mut h = Sha256::new();
    h.update(format!("packyard {}\n", env!("CARGO_PKG_VERSION")));
    h.update(format!("platform {platform}\n"));
    h.update(format!("source {source}\n"));
    for (c, k) in deps {
        h.update(format!("dependency {c} {k}\n"));
    }
    h.update(b"configuration\n");
    h.update(configuration_text.as_bytes());
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_hash_sees_content_names_links_and_the_executable_bit() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fs::create_dir_all(dir.join("src/.git")).unwrap();
        fs::write(dir.join("src/a.c"), "int main;").unwrap();
        fs::write(dir.join("Makefile"), "all:").unwrap();
        let first = source_hash(dir).unwrap();
        // What git holds, not the tree: not part of the source.
        fs::write(dir.join("src/.git/HEAD"), "ref").unwrap();
        assert_eq!(source_hash(dir).unwrap(), first);
        fs::write(dir.join("src/a.c"), "int main();").unwrap();
        let edited = source_hash(dir).unwrap();
        assert_ne!(edited, first);
        fs::set_permissions(dir.join("Makefile"), fs::Permissions::from_mode(0o755)).unwrap();
        let exec = source_hash(dir).unwrap();
        assert_ne!(exec, edited);
        // Other mode bits (umask) do not count.
        fs::set_permissions(dir.join("Makefile"), fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(source_hash(dir).unwrap(), exec);
        std::os::unix::fs::symlink("a.c", dir.join("src/b.c")).unwrap();
        assert_ne!(source_hash(dir).unwrap(), exec);
        fs::rename(dir.join("src/a.c"), dir.join("src/c.c")).unwrap();
        let renamed = source_hash(dir).unwrap();
        assert_ne!(renamed, exec);
    }

    #[test]
    fn the_key_changes_with_each_part_and_not_with_dependency_order() {
        let deps = vec![
            ("a_R_1_0_0_1".to_string(), "k1".to_string()),
            ("b_R_1_0_0_1".to_string(), "k2".to_string()),
        ];
        let k = build_key("text", "src", "el9_x86_64", &deps);
        let mut reversed = deps.clone();
        reversed.reverse();
        assert_eq!(build_key("text", "src", "el9_x86_64", &reversed), k);
        assert_ne!(build_key("text2", "src", "el9_x86_64", &deps), k);
        assert_ne!(build_key("text", "src2", "el9_x86_64", &deps), k);
        assert_ne!(build_key("text", "src", "deb12_amd64", &deps), k);
        let other = vec![deps[0].clone(), ("b_R_1_0_0_1".into(), "k3".into())];
        assert_ne!(build_key("text", "src", "el9_x86_64", &other), k);
    }
}
