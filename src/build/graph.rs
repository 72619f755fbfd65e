//! What a build builds: the components of a release (or those asked for, plus every
//! component they need at build time), one configuration per module, with their
//! build-time edges and layers. Pure, over a [`Resolver`] bound to the release.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::config::{ConfigId, ModuleKind, ResolvedConfiguration, Resolver, Tree};
use crate::version::{self, Scheme};

use super::BuildError;

pub struct Node {
    pub id: ConfigId,
    pub resolved: Rc<ResolvedConfiguration>,
    /// Indices (in [`Graph::nodes`]) of its build-time dependencies.
    pub deps: Vec<usize>,
    /// 0 for a component that needs none of the others, else one more than its deepest
    /// dependency: the order to start in.
    pub layer: usize,
}

/// The components to build, in build order (layer, then name).
pub struct Graph {
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Every node that depends on node `i` at build time, directly or not.
    pub fn dependents(&self, i: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut todo = vec![i];
        while let Some(n) = todo.pop() {
            for (j, node) in self.nodes.iter().enumerate() {
                if node.deps.contains(&n) && out.insert(j) {
                    todo.push(j);
                }
            }
        }
        out
    }
}

/// The graph for `resolver`'s release: its components — only those `only` names (by
/// module name, its last part, or configuration name) and what they need, if given.
pub fn select(tree: &Tree, resolver: &Resolver, only: &[String]) -> Result<Graph, BuildError> {
    let release = resolver.release().ok_or(BuildError::NoRelease)?;
    // One configuration per module: when the release holds several, the newest (the one
    // its dependents resolve to).
    let mut members: BTreeMap<usize, ConfigId> = BTreeMap::new();
    let mut ids: Vec<ConfigId> = release.parents.keys().copied().collect();
    ids.sort();
    for id in ids {
        let c = &tree.configurations[id];
        if tree.modules[c.module].kind != ModuleKind::Component {
            continue;
        }
        let newer = |old: ConfigId| {
            let v = |x: ConfigId| tree.configurations[x].version_age().unwrap_or_default();
            version::compare(Scheme::Rpm, &v(id), &v(old)).is_gt()
        };
        match members.get(&c.module) {
            Some(&old) if !newer(old) => {}
            _ => {
                members.insert(c.module, id);
            }
        }
    }
    let mut start: Vec<ConfigId> = if only.is_empty() {
        members.values().copied().collect()
    } else {
        let mut picked = Vec::new();
        for name in only {
            let found = members.values().copied().find(|&id| {
                let c = &tree.configurations[id];
                let m = &tree.modules[c.module].name;
                c.name == *name || m == name || m.rsplit('.').next() == Some(name.as_str())
            });
            match found {
                Some(id) => picked.push(id),
                None => {
                    return Err(BuildError::NotInRelease {
                        name: name.clone(),
                        release: tree.configurations[release.project].name.clone(),
                    });
                }
            }
        }
        picked
    };
    start.sort();
    start.dedup();

    // Everything they need at build time, followed through the dependencies' own.
    let mut edges: BTreeMap<ConfigId, BTreeSet<ConfigId>> = BTreeMap::new();
    let mut resolved: BTreeMap<ConfigId, Rc<ResolvedConfiguration>> = BTreeMap::new();
    let mut by_module: BTreeMap<usize, ConfigId> = BTreeMap::new();
    let mut todo = start;
    while let Some(id) = todo.pop() {
        if resolved.contains_key(&id) {
            continue;
        }
        let module = tree.configurations[id].module;
        if let Some(&other) = by_module.get(&module) {
            return Err(BuildError::TwoConfigurations {
                module: tree.modules[module].name.clone(),
                a: tree.configurations[other].name.clone(),
                b: tree.configurations[id].name.clone(),
            });
        }
        by_module.insert(module, id);
        let r = resolver.resolve(id)?;
        let mut deps = BTreeSet::new();
        for d in &r.dependencies {
            if let (true, Some(dep)) = (d.scope.at_build(), d.config_id) {
                deps.insert(dep);
                todo.push(dep);
            }
        }
        edges.insert(id, deps);
        resolved.insert(id, r);
    }
    let layers = crate::resolve::layers(&edges).map_err(|cycle| {
        BuildError::Cycle(
            cycle
                .into_iter()
                .map(|id| tree.configurations[id].name.clone())
                .collect(),
        )
    })?;
    let mut order: Vec<(usize, String, ConfigId)> = layers
        .iter()
        .map(|(&id, &l)| (l, tree.configurations[id].name.clone(), id))
        .collect();
    order.sort();
    let index: BTreeMap<ConfigId, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (_, _, id))| (*id, i))
        .collect();
    let nodes = order
        .into_iter()
        .map(|(layer, _, id)| Node {
            id,
            resolved: resolved[&id].clone(),
            deps: edges[&id].iter().map(|d| index[d]).collect(),
            layer,
        })
        .collect();
    Ok(Graph { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResolveOptions;
    use crate::layout::Layout;

    fn names(tree: &Tree, only: &[&str]) -> Result<Vec<(usize, String)>, BuildError> {
        let layout = Layout::builtin();
        let pid = crate::config::project(tree, "my-project_R_2_0_0_1")?;
        let release = crate::config::Release::of(tree, pid);
        let resolver = Resolver::new(tree, &layout, ResolveOptions::default(), Some(release))?;
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        let g = select(tree, &resolver, &only)?;
        Ok(g.nodes
            .iter()
            .map(|n| (n.layer, n.resolved.configuration.clone()))
            .collect())
    }

    #[test]
    fn a_release_in_layers_and_only_what_a_component_needs() {
        let tree = Tree::load(std::path::Path::new("fixtures/trees/my-project")).unwrap();
        let all = names(&tree, &[]).unwrap();
        assert_eq!(
            all,
            [
                (0, "database_schemas_R_3_0_0_1".to_string()),
                (0, "database_server_R_2_0_1_1".into()),
                (0, "java_api_R_5_2_2_1".into()),
                (0, "python_api_R_5_0_0_1".into()),
                (1, "cli_client_R_5_6_1_1".into()),
                (1, "web_server_R_2_5_1_1".into()),
            ]
        );
        // By last part, full module name or configuration; build-time needs follow.
        for only in [
            "web_server",
            "my-project.servers.web_server",
            "web_server_R_2_5_1_1",
        ] {
            let got: Vec<String> = names(&tree, &[only])
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            assert_eq!(
                got,
                [
                    "database_schemas_R_3_0_0_1",
                    "database_server_R_2_0_1_1",
                    "web_server_R_2_5_1_1"
                ]
            );
        }
        assert!(matches!(
            names(&tree, &["web_server_R_2_4_0_1"]),
            Err(BuildError::NotInRelease { .. })
        ));
    }
}
