//! `serve --demo`: fills an empty data directory with the sample release, so a new user
//! sees real repositories at once. Every component configuration of the tree is packed
//! for one RPM and one DEB platform and published into `nightly` (volatile); each is also
//! locked and registered into `releases` (registered). Both repositories get an Ed25519
//! signing key, which signs their indexes and RPMs. The staged prefix of each component
//! is generated (a README naming the configuration): building the components for real
//! needs make and a C compiler, which `packyard build` will run.

use std::path::Path;

use crate::config::{ModuleKind, ResolveOptions, Tree, project_configurations, resolve_release};
use crate::pack::{self, PackRequest};
use crate::progress::Quiet;
use crate::repo::keys::Algorithm;
use crate::repo::{NewRepo, PublishOptions, Repositories};
use crate::store::{MetadataCompression, RepoKind};

use super::ServeError;

const PLATFORMS: [&str; 2] = ["el9_x86_64", "deb12_amd64"];

/// Seeds `repos` from the module tree at `tree`, unless it already holds repositories.
pub fn seed(repos: &Repositories, tree: &Path) -> Result<(), ServeError> {
    if !repos.list()?.is_empty() {
        tracing::info!("the data directory has repositories; no demo data added");
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| ServeError::Demo(e.to_string());
    let tree = Tree::load(tree).map_err(|e| fail(&e))?;
    tracing::info!(tree = %tree.root.display(), "adding demo data");
    for (name, kind, keep) in [
        ("nightly", RepoKind::Volatile, Some(3)),
        ("releases", RepoKind::Registered, None),
    ] {
        repos.create(&NewRepo {
            name: name.into(),
            kind,
            platforms: PLATFORMS.iter().map(|p| p.to_string()).collect(),
            keep,
            yum_compression: MetadataCompression::Gzip,
            private: false,
        })?;
        repos.generate_key(name, Algorithm::Ed25519, false)?;
    }
    let work = tempfile::tempdir()?;
    // The components of each release, in that release's context.
    let mut components: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    for pid in project_configurations(&tree) {
        let members = resolve_release(&tree, &repos.layout, ResolveOptions::default(), pid)
            .map_err(|e| fail(&e))?;
        for m in members.iter().filter(|m| m.kind == ModuleKind::Component) {
            if components.iter().any(|(c, _, _)| *c == m.configuration) {
                continue;
            }
            let config_files = m
                .value("package.configFiles")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().trim_start_matches('/').to_string())
                .filter(|s| !s.is_empty() && !s.contains(".."))
                .collect();
            components.push((m.configuration.clone(), m.project.clone(), config_files));
        }
    }
    for (configuration, project, config_files) in &components {
        let prefix = work.path().join("prefix").join(configuration);
        let doc = prefix.join("usr/share/packyard-demo").join(configuration);
        std::fs::create_dir_all(&doc)?;
        std::fs::write(
            doc.join("README"),
            format!("{configuration}: demo package made by `packyard serve --demo`.\n"),
        )?;
        // The configuration files it declares must be in the package.
        for conf in config_files {
            let path = prefix.join(conf);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, format!("# {configuration} settings\n"))?;
        }
        let out = work.path().join("out").join(configuration);
        for platform in PLATFORMS {
            let request = PackRequest {
                tree: &tree,
                layout: &repos.layout,
                configuration,
                options: ResolveOptions {
                    platform: Some(platform.into()),
                    project: project.clone(),
                    ..ResolveOptions::default()
                },
                prefix: &prefix,
                out: &out,
                source_date_epoch: None,
                formats: &[],
            };
            pack::pack(&request, &Quiet).map_err(|e| fail(&e))?;
        }
        // Signed RPMs, so dnf with gpgcheck on takes them.
        let signed = PublishOptions {
            sign: true,
            ..PublishOptions::default()
        };
        repos.publish("nightly", std::slice::from_ref(&out), &signed, &Quiet)?;
        repos.lock(&tree, configuration)?;
        repos.register(
            crate::repo::release::Registering {
                tree: &tree,
                configuration,
                options: ResolveOptions {
                    project: project.clone(),
                    ..ResolveOptions::default()
                },
                inputs: std::slice::from_ref(&out),
            },
            "releases",
            &signed,
            &Quiet,
        )?;
    }
    tracing::info!(configurations = components.len(), "demo data added");
    Ok(())
}
