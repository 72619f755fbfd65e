//! Loading a module tree from disk: a folder per module, each with a `module.toml`.
//!
//! The only I/O of `config/`: it reads files and turns them into [`Tree`]. Files that do
//! not parse become [`LoadProblem`]s (with file:line) so `lint` can list them all.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{
    Commands, ConfigurationEntry, DependencyEntry, ModuleFile, ModuleKind, SharedFields,
};

pub type ModuleId = usize;
pub type ConfigId = usize;

/// A place in a `module.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub kind: ModuleKind,
    /// The folder's own name. Below the root it must be [`Module::own_name`]; the root's
    /// folder is the user's choice (a clone may sit in any folder).
    pub folder: String,
    pub parent: Option<ModuleId>,
    pub children: Vec<ModuleId>,
    pub fields: SharedFields,
    pub location: Location,
    pub configurations: Vec<ConfigId>,
}

impl Module {
    /// The last part of the dotted name (`web_server` of `my-project.servers.web_server`).
    pub fn own_name(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

/// A user property as written, dotted keys flattened.
#[derive(Debug, Clone)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Dependency {
    pub entry: DependencyEntry,
    pub location: Location,
}

#[derive(Debug)]
pub struct Configuration {
    pub name: String,
    pub module: ModuleId,
    pub location: Location,
    pub version: Option<(String, Location)>,
    pub age: Option<(i64, Location)>,
    pub tag: Option<String>,
    pub profiles: Vec<String>,
    pub fields: SharedFields,
    pub children: Option<(Vec<String>, Location)>,
    pub properties: Vec<Property>,
    pub dependencies: Vec<Dependency>,
    pub commands: Option<(Commands, Location)>,
}

impl Configuration {
    /// `version-age`, the comparable identity of a configuration (`2.5.1-1`).
    pub fn version_age(&self) -> Option<String> {
        let (v, _) = self.version.as_ref()?;
        let (a, _) = self.age.as_ref()?;
        Some(format!("{v}-{a}"))
    }

    pub fn commands(&self) -> Option<&Commands> {
        self.commands.as_ref().map(|(c, _)| c)
    }
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone)]
pub struct LoadProblem {
    pub location: Location,
    pub message: String,
}

/// A whole module tree.
#[derive(Debug)]
pub struct Tree {
    /// The tree's root folder, as given.
    pub root: PathBuf,
    pub modules: Vec<Module>,
    pub configurations: Vec<Configuration>,
    pub problems: Vec<LoadProblem>,
    /// The module files as they were when read: [`Tree::is_current`] compares it.
    pub stamp: Stamp,
    module_index: HashMap<String, ModuleId>,
    config_index: HashMap<String, ConfigId>,
}

/// The module files of a tree, each by path, inode, size and change times: an edit in
/// place changes the times, a replacement the inode, a new or removed module the list.
/// Taken before the files are read, so a change while reading shows as a difference
/// later, never as a stale match.
///
/// A file changed within [`RACY`] of the stamp could change again within the same clock
/// tick, same size, and look untouched (git's "racy" files): such a stamp is never taken
/// as current.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp {
    files: Vec<(PathBuf, FileStamp)>,
    racy: bool,
}

/// How recent a change makes a stamp untrustworthy: far more than a clock tick.
const RACY: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A tree that cannot be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}: no such directory")]
    NoDir(PathBuf),
    #[error(
        "{0}: no module.toml here; a module tree's root folder holds the project's module.toml"
    )]
    NoRoot(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A module folder, the index of its parent folder among those found, and its
/// `module.toml`'s stamp.
struct Found {
    dir: PathBuf,
    parent: Option<usize>,
    file: FileStamp,
}

/// The module folders under `dir` (itself first, its `module.toml` described by `meta`),
/// depth first, sub-folders by name. Symlinked folders are not followed (one pointing up
/// would loop), nor hidden ones.
fn find_modules(
    dir: &Path,
    meta: &std::fs::Metadata,
    parent: Option<usize>,
    out: &mut Vec<Found>,
) -> Result<(), TreeError> {
    let index = out.len();
    out.push(Found {
        dir: dir.to_path_buf(),
        parent,
        file: FileStamp::of(meta),
    });
    let mut subdirs: Vec<(std::ffi::OsString, PathBuf, std::fs::Metadata)> = std::fs::read_dir(dir)
        .map_err(|source| TreeError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type().is_ok_and(|t| t.is_dir())
                && !e.file_name().to_string_lossy().starts_with('.')
        })
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path().join("module.toml")).ok()?;
            meta.is_file().then(|| (e.file_name(), e.path(), meta))
        })
        .collect();
    // By name: the same order as by path here, without comparing whole paths.
    subdirs.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, sub, meta) in subdirs {
        find_modules(&sub, &meta, Some(index), out)?;
    }
    Ok(())
}

/// The module folders of the tree at `root`, checked to be one.
fn find_tree(root: &Path) -> Result<Vec<Found>, TreeError> {
    if !root.is_dir() {
        return Err(TreeError::NoDir(root.to_path_buf()));
    }
    let meta = std::fs::metadata(root.join("module.toml"))
        .ok()
        .filter(|m| m.is_file())
        .ok_or_else(|| TreeError::NoRoot(root.to_path_buf()))?;
    let mut found = Vec::new();
    find_modules(root, &meta, None, &mut found)?;
    Ok(found)
}

fn stamp_of(found: &[Found]) -> Stamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Stamp {
        files: found.iter().map(|f| (f.dir.clone(), f.file)).collect(),
        // ctime is the kernel's clock; mtime can be set, also to the future.
        racy: found
            .iter()
            .any(|f| f.file.ctime.0 >= now - RACY || (f.file.mtime.0 - now).abs() <= RACY),
    }
}

/// A module file, read and parsed.
enum Read {
    Failed(std::io::Error),
    NotUtf8 { line: usize },
    Text(String, Box<Result<ModuleFile, toml::de::Error>>),
}

fn read_one(dir: &Path) -> Read {
    match std::fs::read(dir.join("module.toml")) {
        Err(e) => Read::Failed(e),
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let parsed = Box::new(toml::from_str(&text));
                Read::Text(text, parsed)
            }
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                Read::NotUtf8 {
                    line: 1 + good.iter().filter(|b| **b == b'\n').count(),
                }
            }
        },
    }
}

/// Reads and parses the module files of `found` on every core (from 64 of them), in order.
fn read_all(found: &[Found]) -> Vec<Read> {
    crate::cores::map(
        found.iter().collect(),
        64,
        |f| read_one(&f.dir),
        |p| std::panic::resume_unwind(p),
    )
}

impl Tree {
    /// Reads the tree rooted at `root` (which holds the project's `module.toml`).
    pub fn load(root: &Path) -> Result<Tree, TreeError> {
        // Three steps: find the module folders (in order), read and parse their files on
        // every core (a release of ten thousand components is ten thousand files), then
        // add them in folder order, so ids and problems come out as from a plain walk.
        let found = find_tree(root)?;
        let mut tree = Tree {
            root: root.to_path_buf(),
            modules: Vec::new(),
            configurations: Vec::new(),
            problems: Vec::new(),
            stamp: stamp_of(&found),
            module_index: HashMap::new(),
            config_index: HashMap::new(),
        };
        let read = read_all(&found);
        // Per folder, the module its children hang on: its own, or (when its file does
        // not parse) its parent's.
        let mut here: Vec<Option<ModuleId>> = Vec::with_capacity(found.len());
        for (f, r) in found.iter().zip(read) {
            let parent = f.parent.and_then(|p| here[p]);
            let file = f.dir.join("module.toml");
            let id = match r {
                Read::Failed(source) => return Err(TreeError::Io { path: file, source }),
                Read::NotUtf8 { line } => {
                    tree.problems.push(LoadProblem {
                        location: Location { file, line },
                        message: "the file is not UTF-8 text".into(),
                    });
                    None
                }
                Read::Text(text, parsed) => {
                    tree.add_module_file(&file, &text, *parsed, &f.dir, parent)
                }
            };
            here.push(id.or(parent));
        }
        Ok(tree)
    }

    /// Whether the module files are still the ones this tree was read from (a walk and a
    /// `stat` per module, no reading): a long-running server keeps a tree while it is.
    pub fn is_current(&self) -> Result<bool, TreeError> {
        Ok(!self.stamp.racy && stamp_of(&find_tree(&self.root)?).files == self.stamp.files)
    }

    fn add_module_file(
        &mut self,
        file: &Path,
        text: &str,
        parsed: Result<ModuleFile, toml::de::Error>,
        dir: &Path,
        parent: Option<ModuleId>,
    ) -> Option<ModuleId> {
        let lines = LineIndex::new(text);
        let at = |offset: usize| Location {
            file: file.to_path_buf(),
            line: lines.line(offset),
        };
        let parsed: ModuleFile = match parsed {
            Ok(p) => p,
            Err(e) => {
                let line = e.span().map_or(1, |s| lines.line(s.start));
                self.problems.push(LoadProblem {
                    location: Location {
                        file: file.to_path_buf(),
                        line,
                    },
                    message: e.message().trim().to_string(),
                });
                return None;
            }
        };
        let id = self.modules.len();
        let name = parsed.module.name.get_ref().clone();
        self.module_index.entry(name.clone()).or_insert(id);
        self.modules.push(Module {
            name,
            kind: parsed.module.kind,
            folder: folder_name(dir),
            parent,
            children: Vec::new(),
            fields: parsed.module.shared(),
            location: at(parsed.module.name.span().start),
            configurations: Vec::new(),
        });
        if let Some(p) = parent {
            self.modules[p].children.push(id);
        }
        for entry in parsed.configuration {
            let start = entry.span().start;
            let c: ConfigurationEntry = entry.into_inner();
            let cid = self.configurations.len();
            let mut properties = Vec::new();
            for (key, value) in &c.properties {
                flatten_property(
                    key,
                    value.get_ref(),
                    &at(value.span().start),
                    &mut properties,
                    &mut self.problems,
                );
            }
            let config = Configuration {
                name: c.name.get_ref().clone(),
                module: id,
                location: at(start),
                version: c
                    .version
                    .as_ref()
                    .map(|v| (v.get_ref().clone(), at(v.span().start))),
                age: c.age.as_ref().map(|a| (*a.get_ref(), at(a.span().start))),
                tag: c.tag.clone(),
                profiles: c.profiles.clone(),
                fields: c.shared(),
                children: c
                    .children
                    .as_ref()
                    .map(|ch| (ch.get_ref().clone(), at(ch.span().start))),
                properties,
                dependencies: c
                    .dependencies
                    .iter()
                    .map(|d| Dependency {
                        entry: d.get_ref().clone(),
                        location: at(d.span().start),
                    })
                    .collect(),
                commands: c
                    .commands
                    .as_ref()
                    .map(|cm| (cm.get_ref().clone(), at(cm.span().start))),
            };
            self.config_index.entry(config.name.clone()).or_insert(cid);
            self.configurations.push(config);
            self.modules[id].configurations.push(cid);
        }
        Some(id)
    }

    pub fn module(&self, name: &str) -> Option<ModuleId> {
        self.module_index.get(name).copied()
    }

    pub fn configuration(&self, name: &str) -> Option<ConfigId> {
        self.config_index.get(name).copied()
    }

    /// The module's ancestors from the top (project) down to its parent.
    pub fn ancestors(&self, m: ModuleId) -> Vec<ModuleId> {
        let mut out = Vec::new();
        let mut cur = self.modules[m].parent;
        while let Some(p) = cur {
            out.push(p);
            cur = self.modules[p].parent;
        }
        out.reverse();
        out
    }

    /// The project module at the top of `m`'s chain (or `m` itself).
    pub fn project_of(&self, m: ModuleId) -> ModuleId {
        self.ancestors(m).first().copied().unwrap_or(m)
    }

    /// Configuration names that are close to `name`, for "did you mean" hints.
    pub fn similar_configurations(&self, name: &str) -> Vec<&str> {
        let stem = name.split("_R_").next().unwrap_or(name);
        self.configurations
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| n.starts_with(stem) || stem.starts_with(n.split("_R_").next().unwrap_or(n)))
            .take(5)
            .collect()
    }
}

/// The folder's own name, also for `.` or `..` as the tree root.
fn folder_name(dir: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(dir)
        .filter(|n| n != "." && n != "..")
        .or_else(|| std::fs::canonicalize(dir).ok().as_deref().and_then(named))
        .unwrap_or_default()
}

/// Turns `a = { b = "x" }` into `a.b = "x"`; numbers and booleans become their text,
/// arrays are comma-joined (as `package.configFiles` wants).
fn flatten_property(
    key: &str,
    value: &toml::Value,
    at: &Location,
    out: &mut Vec<Property>,
    problems: &mut Vec<LoadProblem>,
) {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten_property(&format!("{key}.{k}"), v, at, out, problems);
            }
            return;
        }
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        toml::Value::Float(_) => {
            // `1.10` would silently become "1.1": version-like values must be strings.
            problems.push(LoadProblem {
                location: at.clone(),
                message: format!(
                    "property `{key}` is a TOML number with a fraction ({value}); quote it, or trailing zeros are lost"
                ),
            });
            return;
        }
        other => other.to_string(),
    };
    out.push(Property {
        key: key.to_string(),
        value: text,
        location: at.clone(),
    });
}

/// Byte offset → 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        // An error at the very end (after the final newline) belongs to the last line.
        let offset = offset.min(self.len.saturating_sub(1));
        self.starts.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("module.toml"), text).unwrap();
        // Loaded whole: the paths the tree names are only text once the directory goes.
        Tree::load(dir.path()).unwrap()
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let t = load_text(
            "[module]\nname = \"p\"\nkind = \"project\"\n\n[[configuration]]\nname = \"p_R_1_0_0_1\"\nversoin = \"1.0.0\"\n",
        );
        assert_eq!(t.problems.len(), 1);
        let p = &t.problems[0];
        assert_eq!(p.location.line, 7, "{p:?}");
        assert!(p.message.contains("versoin"), "{}", p.message);
    }

    #[test]
    fn configurations_keep_lines_and_flatten_properties() {
        let t = load_text(
            "[module]\nname = \"p\"\nkind = \"project\"\n\n[[configuration]]\nname = \"p_R_1_0_0_1\"\nversion = \"1.0.0\"\nage = 1\n[configuration.properties]\npackage.configFiles = [\"/etc/a\", \"/etc/b\"]\n\"x.DEFAULT\" = \"y\"\nn = 3\n",
        );
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let c = &t.configurations[0];
        assert_eq!(c.location.line, 5);
        assert_eq!(c.version_age().as_deref(), Some("1.0.0-1"));
        let props: Vec<(&str, &str)> = c
            .properties
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("n", "3"),
                ("package.configFiles", "/etc/a,/etc/b"),
                ("x.DEFAULT", "y")
            ]
        );
        assert_eq!(c.properties[2].location.line, 11);
    }

    #[test]
    fn floats_and_non_utf8_are_problems_not_surprises() {
        let t = load_text(
            "[module]\nname = \"p\"\nkind = \"project\"\n[[configuration]]\nname = \"p_R_1_0_0_1\"\n[configuration.properties]\njdk = 1.10\n",
        );
        assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
        assert_eq!(t.problems[0].location.line, 7);
        assert!(t.problems[0].message.contains("quote it"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("module.toml"),
            b"[module]\nname = \"p\xff\"\n",
        )
        .unwrap();
        let t = Tree::load(dir.path()).unwrap();
        assert_eq!(t.problems[0].message, "the file is not UTF-8 text");
        assert_eq!(t.problems[0].location.line, 2);
    }

    #[test]
    fn error_at_end_of_file_points_at_the_last_line() {
        let t = load_text("[module]\nname = \"p\"\nkind = \"project\"\nx = \"\"\"open\n");
        assert_eq!(t.problems[0].location.line, 4, "{:?}", t.problems);
    }

    #[test]
    fn a_tree_is_current_until_a_module_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let project = "[module]\nname = \"p\"\nkind = \"project\"\n";
        std::fs::write(root.join("module.toml"), project).unwrap();
        let component = |name: &str, text: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("module.toml"), text).unwrap();
        };
        let c = "[module]\nname = \"p.c\"\nkind = \"component\"\n";
        component("c", c);
        // Just written: too recent to trust.
        let tree = Tree::load(root).unwrap();
        assert!(tree.stamp.racy);
        assert!(!tree.is_current().unwrap());
        // Below, trees loaded as if their files had been changed a while ago (a ctime
        // cannot be set back), to test the comparison itself.
        let load = || {
            let mut tree = Tree::load(root).unwrap();
            tree.stamp.racy = false;
            tree
        };
        let tree = load();
        assert!(tree.is_current().unwrap());
        // Untouched files, a file that is no module file: still current.
        std::fs::write(root.join("c/notes.txt"), "x").unwrap();
        std::fs::create_dir(root.join("not-a-module")).unwrap();
        assert!(tree.is_current().unwrap());
        // An edit in place (same inode).
        component("c", &format!("{c}description = \"now\"\n"));
        assert!(!tree.is_current().unwrap());
        let tree = load();
        // A new module, then its removal.
        component("d", "[module]\nname = \"p.d\"\nkind = \"component\"\n");
        assert!(!tree.is_current().unwrap());
        let tree = load();
        std::fs::remove_dir_all(root.join("d")).unwrap();
        assert!(!tree.is_current().unwrap());
        // A file replaced by a rename (a new inode), even with the same size and times.
        let tree = load();
        let file = root.join("c/module.toml");
        assert!(tree.is_current().unwrap());
        let times = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::copy(&file, root.join("c/new")).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("c/new"))
            .unwrap();
        f.set_modified(times).unwrap();
        std::fs::rename(root.join("c/new"), &file).unwrap();
        assert!(!tree.is_current().unwrap());
        // A root that went away is an error, not a match.
        std::fs::remove_file(root.join("module.toml")).unwrap();
        assert!(tree.is_current().is_err());
    }

    #[test]
    fn missing_root_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tree::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no module.toml"));
    }
}
