//! The build policy as lint rules (`packyard lint TREE`): each violation has a rule id,
//! file:line, a message and a hint. It reads a loaded [`Tree`], resolves releases, and asks
//! [`crate::pack::spec`] what the packager would refuse (which reads the scripts named).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::model::ModuleKind;
use crate::config::names::{
    ConfigurationName, NameBinding, package_name_problem, parse_mmr, valid_module_name,
};
use crate::config::properties::Origin;
use crate::config::resolve::ResolveOptions;
use crate::config::tree::Configuration;
use crate::config::{
    ConfigId, Location, Release, ResolveError, ResolvedConfiguration, Resolver, Tree,
};
use crate::layout::{Layout, PackageFormat, Platform};
use crate::pack::spec::{self, Place};
use crate::version::Constraint;

macro_rules! rules {
    ($($variant:ident = $id:literal: $hint:literal,)*) => {
        /// A policy rule. `id()` is stable: scripts and exceptions refer to it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule { $($variant,)* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];

            pub fn id(self) -> &'static str {
                match self { $(Rule::$variant => $id,)* }
            }

            /// The usual way out.
            pub fn hint(self) -> &'static str {
                match self { $(Rule::$variant => $hint,)* }
            }
        }
    };
}

rules! {
    ParseError = "parse-error": "fix the TOML; the keys of module.toml are listed in DESIGN §2",
    ModuleName = "module-name": "a module's name is its parent's name, a dot, and its folder's name (letters, digits, _ and - only); the project's name is one part, whatever its folder is called",
    ModuleKind = "module-kind": "the root is a project; subsystems sit under the project; components under a project or subsystem",
    DuplicateName = "duplicate-name": "module and configuration names are unique in the whole tree: rename one",
    ConfigurationName = "configuration-name": "name configurations <component>_R_<major>_<minor>_<revision>_<age> or <component>_B_<branch>",
    ConfigurationVersion = "configuration-version": "make the _R_ numbers in the name equal version and age, or rename the configuration",
    VersionFormat = "version-format": "version is Major.Minor.Revision (e.g. \"2.5.1\"); age is a whole number from 1 up",
    MissingField = "missing-field": "set the field in the module (shared by its configurations) or in the configuration",
    DisplayName = "display-name": "remove display_name: the name is displayed",
    PackageName = "package-name": "package names are lower case letters, digits, + - . (valid for both RPM and Debian)",
    DuplicatePackageName = "duplicate-package-name": "each component needs its own package name within the project",
    DefaultOutsideProject = "default-outside-project": "move the <module>.DEFAULT property to the project configuration",
    DefaultTarget = "default-target": "a <module>.DEFAULT property names a module of the tree and one of its configurations",
    StaticDependency = "static-dependency": "make it dynamic (drop `configuration`) or version-constrained, or record the approved exception with `exception = \"...\"`",
    ProjectContent = "project-content": "project configurations hold children and properties only: move commands and dependencies to component configurations",
    SubsystemContent = "subsystem-content": "subsystem configurations only group children: move properties to the project or components, dependencies and commands to components",
    Children = "children": "children name configurations of the module's direct sub-modules; components have none",
    CheckoutDirectory = "checkout-directory": "the checkout command must create the folder named after the module, e.g. `mkdir -p ${moduleName}` or `git clone ${vcsroot} ${moduleName}`",
    ProtectedProperty = "protected-property": "don't set properties that packyard derives from fields (version, age, packageName, ...) or sets itself; change the field instead",
    ProjectOnlyProperty = "project-only-property": "set package.prefix and package.autoreqprov (= yes) only in the project configuration",
    Dependency = "dependency": "a dependency has `module` or `external`, a `scope`, and at most one of `configuration` and `constraint`",
    UndefinedProperty = "undefined-property": "define the property, pass it with -p, or write $${...} for a literal ${...}",
    Resolution = "resolution": "see the message: the release must give every dependency a version that fits",
    DependencyCycle = "dependency-cycle": "build-time dependencies must not form a cycle: make one of them runtime, or split a component",
    PackMetadata = "pack-metadata": "`packyard pack` would refuse the configuration on the platforms named: give it what that package format needs",
    Profile = "profile": "a profile (profiles/<name>.toml) names modules and configurations of the tree, sets no protected property, and each [[override]] matches some module",
}

/// One broken rule, where, and what to do.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub rule: &'static str,
    pub message: String,
    pub hint: String,
}

/// Properties packyard sets or derives from fields: configurations must not set them.
const PROTECTED: &[&str] = &[
    "location",
    "version",
    "age",
    "majorVersion",
    "minorVersion",
    "revisionVersion",
    "packageName",
    "moduleName",
    "projectName",
    "configurationName",
    "tag",
    "vcsroot",
    "description",
    "license",
    "homepage",
    "vendor",
    "profiles",
    "platformName",
    "architecture",
    "os",
    "libDir",
    "prefix",
    "stageDir",
    "artifactsDir",
    "workspaceDir",
    "treeDir",
];

struct Linter<'a> {
    tree: &'a Tree,
    out: Vec<Violation>,
}

impl Linter<'_> {
    fn report(&mut self, rule: Rule, at: &Location, message: impl Into<String>) {
        self.report_hint(rule, at, message, rule.hint());
    }

    fn report_hint(
        &mut self,
        rule: Rule,
        at: &Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.out.push(Violation {
            rule: rule.id(),
            file: at.file.display().to_string(),
            line: at.line,
            message: message.into(),
            hint: hint.into(),
        });
    }
}

/// Checks the whole tree; violations are sorted by file and line.
pub fn lint(tree: &Tree, layout: &Layout) -> Vec<Violation> {
    let mut l = Linter {
        tree,
        out: Vec::new(),
    };
    for p in &tree.problems {
        l.report(Rule::ParseError, &p.location, p.message.clone());
    }
    check_modules(&mut l);
    check_configurations(&mut l);
    check_releases(&mut l, layout);
    check_profiles(&mut l);
    l.out.sort();
    l.out.dedup();
    l.out
}

/// Every profile of the tree (`profiles/*.toml`): it reads, names modules and
/// configurations the tree has, sets no protected property, and each `[[override]]`
/// matches a module.
fn check_profiles(l: &mut Linter) {
    use crate::config::profile;
    let tree = l.tree;
    for name in profile::names(&tree.root) {
        let p = match profile::load(&tree.root, &name) {
            Ok(p) => p,
            Err(profile::ProfileError::Bad { at, message }) => {
                l.report(Rule::Profile, &at, message);
                continue;
            }
            Err(e) => {
                let at = Location {
                    file: profile::path_of(&tree.root, &name),
                    line: 1,
                };
                l.report(Rule::Profile, &at, e.to_string());
                continue;
            }
        };
        let at = |line: usize| Location {
            file: p.file.clone(),
            line,
        };
        for (m, line) in &p.disable {
            if tree.module(m).is_none() {
                l.report(
                    Rule::Profile,
                    &at(*line),
                    format!("disable names unknown module {m}"),
                );
            }
        }
        for (key, value, line) in &p.properties {
            if PROTECTED.contains(&key.as_str()) || key.ends_with(".location") {
                l.report(
                    Rule::Profile,
                    &at(*line),
                    format!("sets protected property {key}"),
                );
            }
            if let Some(module) = key.strip_suffix(".DEFAULT") {
                let Some(mid) = tree.module(module) else {
                    l.report(
                        Rule::Profile,
                        &at(*line),
                        format!("{key} names unknown module {module}"),
                    );
                    continue;
                };
                match tree.configuration(value) {
                    Some(cid) if tree.configurations[cid].module == mid => {}
                    Some(_) => l.report(
                        Rule::Profile,
                        &at(*line),
                        format!("{key} = {value}: a configuration of another module"),
                    ),
                    None => l.report(
                        Rule::Profile,
                        &at(*line),
                        format!("{key} names unknown configuration {value}"),
                    ),
                }
            }
        }
        for o in &p.overrides {
            if !tree.modules.iter().any(|m| o.modules.is_match(&m.name)) {
                l.report(
                    Rule::Profile,
                    &at(o.line),
                    format!(
                        "[[override]] modules {} matches no module of the tree",
                        o.modules
                            .as_str()
                            .trim_start_matches("^(?:")
                            .trim_end_matches(")$")
                    ),
                );
            }
            for (key, _) in &o.properties {
                if PROTECTED.contains(&key.as_str()) {
                    l.report(
                        Rule::Profile,
                        &at(o.line),
                        format!("[[override]] sets protected property {key}"),
                    );
                }
            }
        }
    }
}

fn check_modules(l: &mut Linter) {
    let tree = l.tree;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for m in &tree.modules {
        *names.entry(&m.name).or_default() += 1;
    }
    // Package names per project: name → modules using it.
    let mut packages: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (id, m) in tree.modules.iter().enumerate() {
        let at = &m.location;
        if names[m.name.as_str()] > 1 {
            l.report(
                Rule::DuplicateName,
                at,
                format!("module name `{}` is used by more than one module", m.name),
            );
        }
        let parent = m.parent.map(|p| &tree.modules[p]);
        if !valid_module_name(&m.name) {
            l.report(
                Rule::ModuleName,
                at,
                format!("`{}` is not a valid dotted module name", m.name),
            );
        } else {
            match parent {
                // The root's folder is wherever the tree was put: only its name counts.
                None if m.name.contains('.') => l.report(
                    Rule::ModuleName,
                    at,
                    format!(
                        "`{}` at the root of the tree is dotted; a project's name is one part",
                        m.name
                    ),
                ),
                None => {}
                Some(p) => {
                    let expected = format!("{}.{}", p.name, m.folder);
                    if m.name != expected {
                        l.report(
                            Rule::ModuleName,
                            at,
                            format!(
                                "module `{}` in folder `{}` should be named `{expected}`",
                                m.name, m.folder
                            ),
                        );
                    }
                }
            }
        }
        let kind_ok = matches!(
            (m.kind, parent.map(|p| p.kind)),
            (ModuleKind::Project, None)
                | (ModuleKind::Subsystem, Some(ModuleKind::Project))
                | (
                    ModuleKind::Component,
                    Some(ModuleKind::Project | ModuleKind::Subsystem)
                )
        );
        if !kind_ok {
            let place = match parent {
                Some(p) => format!("under {} `{}`", p.kind, p.name),
                None => "at the root of the tree".to_string(),
            };
            l.report(
                Rule::ModuleKind,
                at,
                format!("a {} cannot sit {place}", m.kind),
            );
        }
        if let Some(d) = &m.fields.display_name
            && !d.get_ref().is_empty()
        {
            l.report(
                Rule::DisplayName,
                at,
                format!(
                    "module `{}` sets display_name = \"{}\"",
                    m.name,
                    d.get_ref()
                ),
            );
        }
        if m.kind != ModuleKind::Component {
            continue;
        }
        let configs = &m.configurations;
        let project = &tree.modules[tree.project_of(id)].name;
        let has = |get: &dyn Fn(&crate::config::model::SharedFields) -> bool, inherit: bool| {
            get(&m.fields)
                || (!configs.is_empty()
                    && configs.iter().all(|c| get(&tree.configurations[*c].fields)))
                || (inherit
                    && tree
                        .ancestors(id)
                        .iter()
                        .any(|a| get(&tree.modules[*a].fields)))
        };
        let required: [(&str, bool); 4] = [
            (
                "description",
                has(
                    &|f| f.description.as_ref().is_some_and(|s| !s.trim().is_empty()),
                    false,
                ),
            ),
            (
                "vcsroot",
                has(
                    &|f| f.vcsroot.as_ref().is_some_and(|s| !s.trim().is_empty()),
                    false,
                ),
            ),
            (
                "license",
                has(
                    &|f| f.license.as_ref().is_some_and(|s| !s.trim().is_empty()),
                    true,
                ),
            ),
            ("package_name", has(&|f| f.package_name.is_some(), false)),
        ];
        for (field, present) in required {
            if !present {
                l.report(
                    Rule::MissingField,
                    at,
                    format!("component `{}` has no {field}", m.name),
                );
            }
        }
        let mut pkg_names = Vec::new();
        if let Some(p) = &m.fields.package_name {
            pkg_names.push((p.get_ref().clone(), at.clone()));
        }
        for c in configs {
            let c = &tree.configurations[*c];
            if let Some(p) = &c.fields.package_name {
                pkg_names.push((p.get_ref().clone(), c.location.clone()));
            }
        }
        for (p, at) in pkg_names {
            if let Some(problem) = package_name_problem(&p) {
                l.report(
                    Rule::PackageName,
                    &at,
                    format!("package name `{p}` {problem}"),
                );
            }
            packages
                .entry((project.clone(), p))
                .or_default()
                .insert(m.name.clone());
        }
    }
    for ((project, pkg), modules) in packages {
        if modules.len() > 1 {
            for name in &modules {
                if let Some(id) = tree.module(name) {
                    let at = tree.modules[id].location.clone();
                    let others: Vec<&str> = modules
                        .iter()
                        .filter(|m| *m != name)
                        .map(String::as_str)
                        .collect();
                    l.report(
                        Rule::DuplicatePackageName,
                        &at,
                        format!("package name `{pkg}` of `{name}` is also used in project {project} by {}", others.join(", ")),
                    );
                }
            }
        }
    }
}

fn check_configurations(l: &mut Linter) {
    let tree = l.tree;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for c in &tree.configurations {
        *names.entry(&c.name).or_default() += 1;
    }
    for c in &tree.configurations {
        let m = &tree.modules[c.module];
        let at = &c.location;
        if names[c.name.as_str()] > 1 {
            l.report(
                Rule::DuplicateName,
                at,
                format!("configuration name `{}` is used more than once", c.name),
            );
        }
        // Name and version.
        let parsed = ConfigurationName::parse(&c.name);
        let pkg = c
            .fields
            .package_name
            .as_ref()
            .or(m.fields.package_name.as_ref())
            .map(|p| p.get_ref().as_str());
        match &parsed {
            None => l.report(
                Rule::ConfigurationName,
                at,
                format!(
                    "`{}` is neither <name>_R_<M>_<m>_<R>_<age> nor <name>_B_<branch>",
                    c.name
                ),
            ),
            Some(n) if n.prefix != m.own_name() && Some(n.prefix.as_str()) != pkg => l.report(
                Rule::ConfigurationName,
                at,
                format!(
                    "`{}` should start with the module's name `{}`{}",
                    c.name,
                    m.own_name(),
                    pkg.map(|p| format!(" or its package name `{p}`"))
                        .unwrap_or_default()
                ),
            ),
            _ => {}
        }
        match &c.version {
            None => l.report(
                Rule::MissingField,
                at,
                format!("configuration `{}` has no version", c.name),
            ),
            Some((v, vat)) => {
                if parse_mmr(v).is_none() {
                    l.report(
                        Rule::VersionFormat,
                        vat,
                        format!("version `{v}` of `{}` is not Major.Minor.Revision", c.name),
                    );
                }
            }
        }
        match &c.age {
            None => l.report(
                Rule::MissingField,
                at,
                format!("configuration `{}` has no age", c.name),
            ),
            Some((a, aat)) if *a < 1 => l.report(
                Rule::VersionFormat,
                aat,
                format!("age {a} of `{}` must be 1 or more", c.name),
            ),
            _ => {}
        }
        if let (
            Some(ConfigurationName {
                binding:
                    NameBinding::Release {
                        major,
                        minor,
                        revision,
                        age,
                    },
                ..
            }),
            Some((v, _)),
            Some((a, _)),
        ) = (&parsed, &c.version, &c.age)
            && (parse_mmr(v) != Some((*major, *minor, *revision)) || *a != *age as i64)
        {
            l.report(
                Rule::ConfigurationVersion,
                at,
                format!(
                    "`{}` says {major}.{minor}.{revision}-{age} but its version is {v} and age {a}",
                    c.name
                ),
            );
        }
        if m.kind == ModuleKind::Component && c.tag.as_deref().is_none_or(|t| t.trim().is_empty()) {
            l.report(
                Rule::MissingField,
                at,
                format!("configuration `{}` has no tag", c.name),
            );
        }
        if let Some(d) = &c.fields.display_name
            && !d.get_ref().is_empty()
        {
            l.report(
                Rule::DisplayName,
                at,
                format!(
                    "configuration `{}` sets display_name = \"{}\"",
                    c.name,
                    d.get_ref()
                ),
            );
        }
        check_content(l, c.module, c);
        check_properties(l, m.kind, c);
        check_dependencies(l, c);
        check_commands(l, c);
    }
}

fn check_content(l: &mut Linter, module: usize, c: &crate::config::tree::Configuration) {
    let tree = l.tree;
    let m = &tree.modules[module];
    let at = &c.location;
    match m.kind {
        ModuleKind::Subsystem => {
            let mut what = Vec::new();
            if !c.properties.is_empty() {
                what.push("properties");
            }
            if !c.dependencies.is_empty() {
                what.push("dependencies");
            }
            if c.commands.is_some() {
                what.push("commands");
            }
            if !what.is_empty() {
                l.report(
                    Rule::SubsystemContent,
                    at,
                    format!(
                        "subsystem configuration `{}` has {}",
                        c.name,
                        what.join(" and ")
                    ),
                );
            }
        }
        ModuleKind::Project => {
            if let Some((_, cat)) = &c.commands {
                l.report(
                    Rule::ProjectContent,
                    cat,
                    format!("project configuration `{}` has commands", c.name),
                );
            }
            if let Some(d) = c.dependencies.first() {
                l.report(
                    Rule::ProjectContent,
                    &d.location,
                    format!("project configuration `{}` has dependencies", c.name),
                );
            }
        }
        ModuleKind::Component => {
            if let Some((_, cat)) = &c.children {
                l.report(
                    Rule::Children,
                    cat,
                    format!("component configuration `{}` has children", c.name),
                );
            }
        }
    }
    if let Some((children, cat)) = &c.children {
        for child in children {
            match tree.configuration(child) {
                None => l.report(
                    Rule::Children,
                    cat,
                    format!("`{}` names unknown child configuration `{child}`", c.name),
                ),
                Some(cid) => {
                    let cm = tree.configurations[cid].module;
                    if tree.modules[cm].parent != Some(module) {
                        l.report(
                            Rule::Children,
                            cat,
                            format!("child `{child}` of `{}` belongs to `{}`, which is not a direct sub-module of `{}`", c.name, tree.modules[cm].name, m.name),
                        );
                    }
                }
            }
        }
    }
}

fn check_properties(l: &mut Linter, kind: ModuleKind, c: &crate::config::tree::Configuration) {
    let tree = l.tree;
    for p in &c.properties {
        let at = &p.location;
        if let Some(module) = p.key.strip_suffix(".DEFAULT") {
            if kind != ModuleKind::Project {
                l.report(
                    Rule::DefaultOutsideProject,
                    at,
                    format!("`{}` is set in {kind} configuration `{}`", p.key, c.name),
                );
                continue;
            }
            if module == "OS" {
                continue;
            }
            match tree.module(module) {
                None => l.report(
                    Rule::DefaultTarget,
                    at,
                    format!("`{}`: no module `{module}` in the tree", p.key),
                ),
                Some(mid) => match tree.configuration(&p.value) {
                    Some(cid) if tree.configurations[cid].module == mid => {}
                    Some(_) => l.report(
                        Rule::DefaultTarget,
                        at,
                        format!(
                            "`{}` = `{}` is a configuration of another module",
                            p.key, p.value
                        ),
                    ),
                    None if p.value.contains("${") => {}
                    None => l.report(
                        Rule::DefaultTarget,
                        at,
                        format!("`{}` names unknown configuration `{}`", p.key, p.value),
                    ),
                },
            }
            continue;
        }
        if PROTECTED.contains(&p.key.as_str()) || p.key.ends_with(".location") {
            l.report(
                Rule::ProtectedProperty,
                at,
                format!(
                    "`{}` overrides `${{{}}}`, which packyard sets",
                    c.name, p.key
                ),
            );
        }
        if p.key == "package.prefix" || p.key == "package.autoreqprov" {
            if kind != ModuleKind::Project {
                l.report(
                    Rule::ProjectOnlyProperty,
                    at,
                    format!("`{}` is set in {kind} configuration `{}`", p.key, c.name),
                );
            } else if p.key == "package.autoreqprov" && p.value != "yes" {
                l.report(
                    Rule::ProjectOnlyProperty,
                    at,
                    format!(
                        "package.autoreqprov is `{}`; the policy requires `yes`",
                        p.value
                    ),
                );
            }
        }
    }
}

fn check_dependencies(l: &mut Linter, c: &crate::config::tree::Configuration) {
    let tree = l.tree;
    for d in &c.dependencies {
        let e = &d.entry;
        let at = &d.location;
        let name = e.module.as_deref().or(e.external.as_deref()).unwrap_or("?");
        match (&e.module, &e.external) {
            (Some(_), Some(_)) => l.report(
                Rule::Dependency,
                at,
                format!(
                    "dependency `{name}` of `{}` has both `module` and `external`",
                    c.name
                ),
            ),
            (None, None) => l.report(
                Rule::Dependency,
                at,
                format!(
                    "a dependency of `{}` has neither `module` nor `external`",
                    c.name
                ),
            ),
            _ => {}
        }
        if let Some(con) = &e.constraint
            && let Err(err) = con.parse::<Constraint>()
        {
            l.report(
                Rule::Dependency,
                at,
                format!("dependency `{name}` of `{}`: {err}", c.name),
            );
        }
        if e.external.is_some() {
            if e.configuration.is_some() {
                l.report(
                    Rule::Dependency,
                    at,
                    format!(
                        "external dependency `{name}` of `{}` cannot name a configuration",
                        c.name
                    ),
                );
            }
            continue;
        }
        let Some(module) = &e.module else { continue };
        let Some(mid) = tree.module(module) else {
            l.report(
                Rule::Dependency,
                at,
                format!("`{}` depends on unknown module `{module}`", c.name),
            );
            continue;
        };
        if let Some(sc) = &e.configuration {
            if e.constraint.is_some() {
                l.report(
                    Rule::Dependency,
                    at,
                    format!(
                        "dependency `{module}` of `{}` has both `configuration` and `constraint`",
                        c.name
                    ),
                );
            }
            match tree.configuration(sc) {
                None => l.report(
                    Rule::Dependency,
                    at,
                    format!("`{}` depends on unknown configuration `{sc}`", c.name),
                ),
                Some(cid) if tree.configurations[cid].module != mid => l.report(
                    Rule::Dependency,
                    at,
                    format!("`{sc}` is not a configuration of `{module}`"),
                ),
                _ => {}
            }
            if e.exception.as_deref().is_none_or(|x| x.trim().is_empty()) {
                l.report(
                    Rule::StaticDependency,
                    at,
                    format!("`{}` depends statically on `{sc}`", c.name),
                );
            }
        }
    }
}

fn check_commands(l: &mut Linter, c: &crate::config::tree::Configuration) {
    let tree = l.tree;
    let m = &tree.modules[c.module];
    if m.kind != ModuleKind::Component {
        return;
    }
    let checkout = c.commands().and_then(|cm| cm.checkout.as_deref());
    let at = c.commands.as_ref().map_or(&c.location, |(_, at)| at);
    match checkout {
        None => l.report(
            Rule::CheckoutDirectory,
            at,
            format!(
                "component configuration `{}` has no checkout command",
                c.name
            ),
        ),
        // The command must name the folder: through ${moduleName} or literally.
        Some(cmd)
            if !cmd.contains("${moduleName}")
                && !cmd
                    .split(|ch: char| ch.is_whitespace() || ch == '/' || ch == ';')
                    .any(|w| w == m.name) =>
        {
            l.report(
                Rule::CheckoutDirectory,
                at,
                format!(
                    "checkout command `{cmd}` of `{}` does not create the folder `{}`",
                    c.name, m.name
                ),
            )
        }
        _ => {}
    }
}

/// One platform of each package format the layout defines, the default platform first
/// (standing for its own format): what depends on the format is checked once per format.
fn format_platforms(layout: &Layout) -> Vec<&Platform> {
    let mut out: Vec<&Platform> = layout.platform(None).into_iter().collect();
    for p in layout.platforms.values() {
        if !out.iter().any(|o| o.format == p.format) {
            out.push(p);
        }
    }
    out
}

fn format_label(f: PackageFormat) -> String {
    f.to_string().to_uppercase()
}

/// Resolves every component configuration of every release on one platform of each
/// package format, asks the packager what it would refuse there, and looks for build
/// cycles.
fn check_releases(l: &mut Linter, layout: &Layout) {
    let tree = l.tree;
    let platforms = format_platforms(layout);
    for (pid, pc) in tree.configurations.iter().enumerate() {
        if tree.modules[pc.module].kind != ModuleKind::Project {
            continue;
        }
        let release = Release::of(tree, pid);
        let mut resolvers = Vec::new();
        for p in &platforms {
            let options = ResolveOptions {
                platform: Some(p.name.clone()),
                ..ResolveOptions::default()
            };
            match Resolver::new(tree, layout, options, Some(release.clone())) {
                Ok(r) => resolvers.push((*p, r)),
                Err(e) => l.report(Rule::Resolution, &pc.location, e.to_string()),
            }
        }
        let mut members: Vec<ConfigId> = release.parents.keys().copied().collect();
        members.sort();
        let mut edges: BTreeMap<ConfigId, Vec<ConfigId>> = BTreeMap::new();
        for id in members {
            let c = &tree.configurations[id];
            if tree.modules[c.module].kind != ModuleKind::Component {
                continue;
            }
            // Each problem once, with the formats (indices into `resolvers`) it shows on.
            let mut found: BTreeMap<Finding, Vec<usize>> = BTreeMap::new();
            for (i, (platform, resolver)) in resolvers.iter().enumerate() {
                let r = match resolver.resolve(id) {
                    Ok(r) => r,
                    Err(e) => {
                        let rule = match e {
                            ResolveError::Property(_) => Rule::UndefinedProperty,
                            _ => Rule::Resolution,
                        };
                        let f = Finding::new(rule, &c.location, e.to_string(), e.hint());
                        found.entry(f).or_default().push(i);
                        continue;
                    }
                };
                if i == 0 {
                    let deps = r
                        .dependencies
                        .iter()
                        .filter(|d| d.scope.at_build())
                        .filter_map(|d| d.config_id)
                        .collect();
                    edges.insert(id, deps);
                }
                // The packager's own checks: lint and pack refuse the same things.
                let input = spec::SpecInput {
                    tree,
                    id,
                    resolved: &r,
                    platform,
                    source_date_epoch: None,
                    committed_at: &|| None,
                    now: 0,
                };
                for refusal in spec::refusals(&input) {
                    let at = refusal_location(tree, c, &r, &refusal.place);
                    let hint = refusal.error.hint().unwrap_or_default();
                    let f = Finding::new(Rule::PackMetadata, &at, refusal.error.to_string(), hint);
                    found.entry(f).or_default().push(i);
                }
            }
            for (f, on) in found {
                let formats: Vec<String> = on
                    .iter()
                    .map(|i| format_label(resolvers[*i].0.format))
                    .collect();
                let formats = formats.join(" and ");
                let message = match f.rule {
                    Rule::PackMetadata => format!(
                        "in release {}, pack refuses it for {formats} platforms: {}",
                        pc.name, f.what
                    ),
                    // As before the formats were looked at, when it is all of them.
                    _ if on.len() == resolvers.len() => {
                        format!("in release {}: {}", pc.name, f.what)
                    }
                    _ => format!(
                        "in release {}, for {formats} platforms: {}",
                        pc.name, f.what
                    ),
                };
                let at = Location {
                    file: f.file.into(),
                    line: f.line,
                };
                l.report_hint(f.rule, &at, message, f.hint);
            }
        }
        for cycle in build_cycles(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .map(|c| tree.configurations[*c].name.as_str())
                .collect();
            l.report(
                Rule::DependencyCycle,
                &tree.configurations[cycle[0]].location,
                format!(
                    "in release {}: build-time dependency cycle {}",
                    pc.name,
                    names.join(" -> ")
                ),
            );
        }
    }
}

/// A problem of one release member before it is known on which formats it shows.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    rule: Rule,
    file: String,
    line: usize,
    what: String,
    hint: String,
}

impl Finding {
    fn new(rule: Rule, at: &Location, what: String, hint: String) -> Finding {
        Finding {
            rule,
            file: at.file.display().to_string(),
            line: at.line,
            what,
            hint,
        }
    }
}

/// Where the value a refusal is about is written: the property's, field's or
/// dependency's entry when the tree holds one, else the configuration's.
fn refusal_location(
    tree: &Tree,
    c: &Configuration,
    r: &ResolvedConfiguration,
    place: &Place,
) -> Location {
    let found = match place {
        Place::Configuration => None,
        Place::Dependency(name) => c
            .dependencies
            .iter()
            .find(|d| {
                d.entry.module.as_deref() == Some(name.as_str())
                    || d.entry.external.as_deref() == Some(name.as_str())
            })
            .map(|d| d.location.clone()),
        Place::Property(key) if key == "version" => c.version.as_ref().map(|(_, at)| at.clone()),
        Place::Property(key) => property_location(tree, r, key),
    };
    found.unwrap_or_else(|| c.location.clone())
}

/// The entry that gave a resolved property its value, from its origin.
fn property_location(tree: &Tree, r: &ResolvedConfiguration, key: &str) -> Option<Location> {
    match &r.properties.get(key)?.origin {
        Origin::Project(n) | Origin::Subsystem(n) | Origin::Component(n) => {
            let set_in = &tree.configurations[tree.configuration(n)?];
            set_in
                .properties
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.location.clone())
        }
        Origin::Field(n) => match (tree.configuration(n), tree.module(n)) {
            (Some(cid), _) => Some(tree.configurations[cid].location.clone()),
            (None, Some(mid)) => Some(tree.modules[mid].location.clone()),
            (None, None) => None,
        },
        Origin::System | Origin::Override | Origin::Profile(_) => None,
    }
}

/// Each elementary cycle found by depth-first search, rotated to start at its smallest id,
/// and closed (`a -> b -> a`).
pub fn build_cycles(edges: &BTreeMap<ConfigId, Vec<ConfigId>>) -> Vec<Vec<ConfigId>> {
    fn visit(
        n: ConfigId,
        edges: &BTreeMap<ConfigId, Vec<ConfigId>>,
        path: &mut Vec<ConfigId>,
        done: &mut BTreeSet<ConfigId>,
        found: &mut BTreeSet<Vec<ConfigId>>,
    ) {
        if let Some(pos) = path.iter().position(|x| *x == n) {
            let mut cyc = path[pos..].to_vec();
            let min = cyc
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| **v)
                .map_or(0, |(i, _)| i);
            cyc.rotate_left(min);
            cyc.push(cyc[0]);
            found.insert(cyc);
            return;
        }
        if done.contains(&n) {
            return;
        }
        path.push(n);
        for m in edges.get(&n).into_iter().flatten() {
            visit(*m, edges, path, done, found);
        }
        path.pop();
        done.insert(n);
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(*n, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_kebab_case() {
        let ids: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert!(
            ids.iter()
                .all(|i| i.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }

    #[test]
    fn finds_and_closes_cycles() {
        let edges: BTreeMap<ConfigId, Vec<ConfigId>> =
            [(1, vec![2]), (2, vec![3]), (3, vec![1]), (4, vec![1])]
                .into_iter()
                .collect();
        assert_eq!(build_cycles(&edges), vec![vec![1, 2, 3, 1]]);
        let dag: BTreeMap<ConfigId, Vec<ConfigId>> =
            [(1, vec![2, 3]), (2, vec![3])].into_iter().collect();
        assert!(build_cycles(&dag).is_empty());
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/trees")
            .join(name)
    }

    fn lint_dir(dir: &std::path::Path) -> Vec<Violation> {
        lint(&Tree::load(dir).unwrap(), &Layout::builtin())
    }

    #[test]
    fn the_trees_own_folder_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("my-config");
        copy_dir(&fixture("my-project"), &copy);
        assert_eq!(lint_dir(&copy), []);
        // Below the root, folders still name modules.
        std::fs::rename(copy.join("servers"), copy.join("backends")).unwrap();
        let v = lint_dir(&copy);
        assert!(
            v.iter().any(|v| v.rule == "module-name"
                && v.message
                    .contains("`my-project.servers` in folder `backends`")),
            "{v:#?}"
        );
    }

    #[test]
    fn a_projects_name_is_one_part() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("module.toml"),
            "[module]\nname = \"org.p\"\nkind = \"project\"\n",
        )
        .unwrap();
        let v = lint_dir(dir.path());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!((v[0].rule, v[0].line), ("module-name", 2));
        assert!(v[0].message.contains("one part"), "{}", v[0].message);
    }

    /// A release whose only problems are what the packager refuses, each marked with
    /// `# refused: FORMATS` on the line lint must point at (`;` between several).
    const PROJECT: &str = r#"[module]
name = "p"
kind = "project"
license = "MIT"

[[configuration]]
name = "p_R_1_0_0_1"
version = "1.0.0"
age = 1
children = ["tool_R_1_0_0_1"]

[configuration.properties]
"package.compression" = "xz" # refused: RPM
"#;

    const TOOL: &str = r#"[module]
name = "p.tool"
kind = "component"
description = "A tool"
vcsroot = "https://git.example.org/tool.git"
package_name = "tool"

[[configuration]] # refused: DEB (no package.maintainer); DEB (Depends: no Debian version)
name = "tool_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1.0.0"

[configuration.properties]
"package.date" = "yesterday" # refused: RPM and DEB
"package.postInstall" = "no-such-script.sh" # refused: RPM and DEB
"package.configFiles" = "etc/tool.conf" # refused: RPM and DEB
"package.requires" = "foo >= 1_2"

[[configuration.dependencies]] # refused: DEB (not a Debian name)
external = "Bad_Pkg"
scope = "runtime"

[configuration.commands]
checkout = "mkdir -p ${moduleName}"
"#;

    #[test]
    fn pack_refusals_are_reported_per_format_where_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("module.toml"), PROJECT).unwrap();
        std::fs::create_dir(dir.path().join("tool")).unwrap();
        std::fs::write(dir.path().join("tool/module.toml"), TOOL).unwrap();
        let mut expected: Vec<(String, usize, String)> = Vec::new();
        for (file, text) in [("module.toml", PROJECT), ("tool/module.toml", TOOL)] {
            for (i, line) in text.lines().enumerate() {
                let Some((_, marks)) = line.split_once("# refused: ") else {
                    continue;
                };
                for mark in marks.split("; ") {
                    let on = mark.split(" (").next().unwrap_or(mark);
                    expected.push((file.to_string(), i + 1, format!("for {on} platforms")));
                }
            }
        }
        let v = lint_dir(dir.path());
        let got: Vec<(String, usize, String)> = v
            .iter()
            .map(|v| {
                let file = std::path::Path::new(&v.file)
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string();
                let on = v
                    .message
                    .split_once("pack refuses it ")
                    .and_then(|(_, rest)| rest.split_once(':'))
                    .map_or(String::new(), |(on, _)| on.to_string());
                (file, v.line, on)
            })
            .collect();
        let mut want = expected.clone();
        want.sort();
        let mut have = got.clone();
        have.sort();
        assert_eq!(have, want, "{v:#?}");
        assert!(v.iter().all(|v| v.rule == "pack-metadata"), "{v:#?}");
        // The packager's own words and hints.
        let says = |what: &str| {
            v.iter()
                .any(|v| v.message.contains(what) && !v.hint.is_empty())
        };
        assert!(
            says("xz-compressed RPM payloads are not supported"),
            "{v:#?}"
        );
        assert!(says("has no package.maintainer"), "{v:#?}");
        assert!(says("package.date = `yesterday` is not a date"), "{v:#?}");
        assert!(says("cannot read the script"), "{v:#?}");
        assert!(
            says("names `etc/tool.conf`, which is not a plain absolute path"),
            "{v:#?}"
        );
        assert!(
            says("`Bad_Pkg` is not a valid Debian package name"),
            "{v:#?}"
        );
        assert!(
            says("Depends: `foo (>= 1_2)` is not a valid Debian relation"),
            "{v:#?}"
        );
    }
}
