//! What one published package holds, read back from its file for the API and the browse
//! pages: descriptive fields, relations (requires, depends, provides...) and the file
//! list. Pure: bytes in, [`Details`] out.

use std::collections::BTreeMap;
use std::io::Read;

use rpm::{DependencyFlags, FileType};
use serde::Serialize;

use super::package::{self, Parsed};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    pub summary: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub homepage: Option<String>,
    /// Relations by kind (`requires`, `provides`, `conflicts`, `obsoletes` for RPM;
    /// the control fields `depends`, `pre-depends`, `recommends`, `breaks`... for DEB),
    /// each as written (`name [op version]`).
    pub relations: BTreeMap<String, Vec<String>>,
    pub files: Vec<FileInfo>,
    /// The path of the source package it was built from, when the repository holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
    /// What names its source package: an RPM's `.src.rpm` file name, a DEB's source
    /// package name (its `Source` field, else its own).
    #[serde(skip)]
    source_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Permission bits, octal (`0755`).
    pub mode: String,
    pub size: u64,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Reads `bytes` (a package named `name`) back into [`Details`].
pub fn read(name: &str, bytes: &[u8]) -> Result<Details, String> {
    match package::parse(name, bytes)? {
        Parsed::Rpm(m) => Ok(Details {
            source_name: m.get_source_rpm().ok().map(str::to_string),
            ..rpm_details(&m)
        }),
        Parsed::Srpm(m) => Ok(rpm_details(&m)),
        Parsed::Dsc(dsc) => Ok(dsc_details(&dsc)),
        Parsed::Deb(control) => {
            let mut d = Details {
                summary: None,
                description: None,
                license: None,
                homepage: control.get("Homepage").map(str::to_string),
                source_name: control
                    .get("Source")
                    .and_then(|s| s.split_whitespace().next())
                    .or(control.get("Package"))
                    .map(str::to_string),
                ..Details::default()
            };
            if let Some(desc) = control.get("Description") {
                let (short, long) = desc.split_once('\n').unwrap_or((desc, ""));
                d.summary = Some(short.trim().to_string());
                let long: Vec<&str> = long
                    .lines()
                    .map(|l| {
                        let l = l.strip_prefix(' ').unwrap_or(l);
                        if l == "." { "" } else { l }
                    })
                    .collect();
                d.description = Some(long.join("\n").trim().to_string());
            }
            for (field, value) in &control.fields {
                let key = field.to_ascii_lowercase();
                if matches!(
                    key.as_str(),
                    "depends"
                        | "pre-depends"
                        | "recommends"
                        | "suggests"
                        | "conflicts"
                        | "breaks"
                        | "replaces"
                        | "provides"
                ) {
                    let items = value
                        .split(',')
                        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                        .filter(|s| !s.is_empty())
                        .collect();
                    d.relations.insert(key, items);
                }
            }
            d.files = deb_files(bytes)?;
            Ok(d)
        }
        Parsed::Tgz => Ok(Details {
            files: tar_files(flate2::read::GzDecoder::new(bytes))?,
            ..Details::default()
        }),
    }
}

/// A `.dsc`'s fields, its build relations, and the files it names.
fn dsc_details(dsc: &package::Dsc) -> Details {
    let c = &dsc.control;
    let mut relations = BTreeMap::new();
    for field in [
        "Build-Depends",
        "Build-Depends-Indep",
        "Build-Conflicts",
        "Binary",
    ] {
        if let Some(v) = c.get(field) {
            let items: Vec<String> = v
                .split(',')
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|s| !s.is_empty())
                .collect();
            relations.insert(field.to_ascii_lowercase(), items);
        }
    }
    Details {
        homepage: c.get("Homepage").map(str::to_string),
        relations,
        files: dsc
            .files
            .iter()
            .map(|f| FileInfo {
                path: f.name.clone(),
                kind: "file",
                mode: "0644".into(),
                size: f.size,
                target: None,
            })
            .collect(),
        ..Details::default()
    }
}

fn rpm_details(m: &rpm::PackageMetadata) -> Details {
    let text = |r: Result<&str, rpm::Error>| r.ok().map(str::to_string);
    let mut relations = BTreeMap::new();
    for (kind, deps) in [
        ("requires", m.get_requires()),
        ("provides", m.get_provides()),
        ("conflicts", m.get_conflicts()),
        ("obsoletes", m.get_obsoletes()),
        ("recommends", m.get_recommends()),
    ] {
        let list: Vec<String> = deps
            .unwrap_or_default()
            .into_iter()
            // rpmlib() capabilities are rpm's own bookkeeping, not the package's.
            .filter(|d| !d.name.starts_with("rpmlib("))
            .map(|d| match op(d.flags) {
                Some(op) if !d.version.is_empty() => format!("{} {op} {}", d.name, d.version),
                _ => d.name,
            })
            .collect();
        if !list.is_empty() {
            relations.insert(kind.to_string(), list);
        }
    }
    let files = m
        .get_file_entries()
        .unwrap_or_default()
        .into_iter()
        .map(|f| FileInfo {
            path: f.path().to_string_lossy().into_owned(),
            kind: match f.file_type() {
                FileType::Regular => "file",
                FileType::Dir => "dir",
                FileType::SymbolicLink => "symlink",
                _ => "other",
            },
            mode: format!("{:04o}", f.permissions()),
            size: f.size() as u64,
            target: f.linkto().filter(|t| !t.is_empty()).map(str::to_string),
        })
        .collect();
    Details {
        summary: text(m.get_summary()),
        description: text(m.get_description()),
        license: text(m.get_license()),
        homepage: text(m.get_url()),
        relations,
        files,
        ..Details::default()
    }
}

fn op(f: DependencyFlags) -> Option<&'static str> {
    match f.bits() & 0xf {
        2 => Some("<"),
        4 => Some(">"),
        8 => Some("="),
        10 => Some("<="),
        12 => Some(">="),
        _ => None,
    }
}

/// The file list of a DEB's `data.tar.*`.
fn deb_files(bytes: &[u8]) -> Result<Vec<FileInfo>, String> {
    let members = crate::archive::ar_members(bytes)?;
    let data = members
        .iter()
        .find(|m| m.name.starts_with("data.tar"))
        .ok_or("no data.tar member")?;
    let compression = crate::archive::compression_of(&data.name)?;
    tar_files(crate::archive::decoder(compression, data.data)?)
}

fn tar_files(r: impl Read) -> Result<Vec<FileInfo>, String> {
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(r);
    for e in tar.entries().map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let h = e.header();
        let path = e.path().map_err(|e| e.to_string())?;
        let path = format!(
            "/{}",
            path.to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
        );
        if path == "/" {
            continue;
        }
        let t = h.entry_type();
        out.push(FileInfo {
            path,
            kind: if t.is_file() || t.is_hard_link() {
                "file"
            } else if t.is_dir() {
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else {
                "other"
            },
            mode: format!("{:04o}", h.mode().unwrap_or(0) & 0o7777),
            size: h.size().unwrap_or(0),
            target: e
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.to_string_lossy().into_owned()),
        });
    }
    Ok(out)
}

impl super::Repositories {
    /// A published package's record and what its file holds.
    pub fn package_details(
        &self,
        repo: &str,
        path: &str,
    ) -> Result<(crate::store::PackageRecord, Details), super::RepoError> {
        let record =
            self.store
                .package(repo, path)?
                .ok_or_else(|| super::RepoError::NoSuchPackage {
                    repo: repo.into(),
                    path: path.into(),
                })?;
        let object = super::publish::object_key(self, &record);
        let bytes = self
            .blobs
            .get(&format!("{repo}/{object}"))?
            .ok_or_else(|| super::RepoError::NoSuchPackage {
                repo: repo.into(),
                path: path.into(),
            })?;
        // It was checked when published: failing now means the stored file is damaged.
        let mut details = read(path, &bytes).map_err(|why| {
            super::RepoError::Internal(format!(
                "the stored file {repo}/{path} is unreadable: {why}"
            ))
        })?;
        details.source_package = self.source_package(repo, &record, &details)?;
        Ok((record, details))
    }

    /// The source package in `repo` that binary package `record` was built from.
    fn source_package(
        &self,
        repo: &str,
        record: &crate::store::PackageRecord,
        details: &Details,
    ) -> Result<Option<String>, super::RepoError> {
        use crate::store::FileKind;
        let Some(source) = &details.source_name else {
            return Ok(None);
        };
        let found = match record.kind {
            // `name-version-release.src.rpm`: the name is what comes before the last two `-`.
            FileKind::Rpm => {
                let name = source.rsplitn(3, '-').nth(2).unwrap_or_default();
                self.store
                    .packages_named(repo, name)?
                    .into_iter()
                    .find(|p| p.kind == FileKind::Srpm && p.path.rsplit('/').next() == Some(source))
            }
            FileKind::Deb => self
                .store
                .packages_named(repo, source)?
                .into_iter()
                .find(|p| {
                    p.kind == FileKind::Dsc
                        && (p.epoch, &p.version, &p.release)
                            == (record.epoch, &record.version, &record.release)
                }),
            _ => None,
        };
        Ok(found.map(|p| p.path))
    }
}
