//! Text output of the commands (the `--json` output is the serde form of the same values).

use std::rc::Rc;

use crate::config::{Origin, ResolvedConfiguration, Tree};
use crate::layout::Platform;
use crate::lint::Violation;

pub fn violations(vs: &[Violation]) {
    for v in vs {
        println!("{}:{}: [{}] {}", v.file, v.line, v.rule, v.message);
        println!("    hint: {}", v.hint);
    }
    if vs.is_empty() {
        eprintln!("no policy violations");
    } else {
        let mut rules: Vec<&str> = vs.iter().map(|v| v.rule).collect();
        rules.sort();
        rules.dedup();
        eprintln!(
            "{} violation(s) of {} rule(s): {}",
            vs.len(),
            rules.len(),
            rules.join(", ")
        );
    }
}

pub fn platforms(ps: &[&Platform], default: &str) {
    println!(
        "{:<14} {:<6} {:<7} {:<8} {:<8} libDir",
        "platform", "os", "format", "rpm", "deb"
    );
    for p in ps {
        let mark = if p.name == default { "  (default)" } else { "" };
        println!(
            "{:<14} {:<6} {:<7} {:<8} {:<8} {}{mark}",
            p.name, p.os, p.format, p.rpm_arch, p.deb_arch, p.lib_dir
        );
    }
}

pub fn resolved(r: &ResolvedConfiguration) {
    println!("{} ({} {})", r.configuration, r.kind, r.module);
    let ctx = [r.project.as_deref(), r.subsystem.as_deref()]
        .into_iter()
        .flatten()
        .filter(|n| *n != r.configuration)
        .collect::<Vec<_>>();
    if !ctx.is_empty() {
        println!("release: {}", ctx.join(" / "));
    }
    println!("platform: {}", r.platform);
    let width = r.properties.keys().map(String::len).max().unwrap_or(0);
    let section = |title: &str, pick: &dyn Fn(&Origin) -> bool| {
        let rows: Vec<_> = r
            .properties
            .iter()
            .filter(|(_, p)| pick(&p.origin))
            .collect();
        if rows.is_empty() {
            return;
        }
        println!("\n{title}");
        for (k, p) in rows {
            let raw = p
                .raw
                .as_ref()
                .map(|raw| format!(", from `{raw}`"))
                .unwrap_or_default();
            println!("  {k:<width$}  {}  [{}{raw}]", p.value, p.origin);
        }
    };
    section("fields", &|o| matches!(o, Origin::Field(_)));
    section("properties", &|o| {
        !matches!(o, Origin::Field(_) | Origin::System)
    });
    section("system properties", &|o| matches!(o, Origin::System));
    if !r.dependencies.is_empty() {
        println!("\ndependencies");
        for d in &r.dependencies {
            let scope = format!("{:?}", d.scope).to_lowercase();
            let kind = format!("{:?}", d.kind).to_lowercase();
            let target = match (&d.configuration, &d.version) {
                (Some(c), Some(v)) => format!(" -> {c} ({v})"),
                (Some(c), None) => format!(" -> {c}"),
                _ => String::new(),
            };
            let con = d
                .constraint
                .as_ref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            println!("  {scope:<7} {kind:<11} {}{con}{target}", d.name);
            println!("          {}", d.reason);
        }
    }
    if !r.commands.is_empty() {
        println!("\ncommands");
        for c in &r.commands {
            println!("  {:<11} {}", c.target, c.command);
        }
    }
    if let Some(d) = &r.download {
        println!("\ndownload-from");
        println!("  tar.gz  {}", d.tarball);
        println!("  {:<6}  {}", d.format.to_string(), d.package);
    }
}

pub fn demo(tree: &Tree, vs: &[Violation], releases: &[(String, Vec<Rc<ResolvedConfiguration>>)]) {
    println!(
        "module tree {}: {} modules, {} configurations",
        tree.root.display(),
        tree.modules.len(),
        tree.configurations.len()
    );
    if vs.is_empty() {
        println!("policy: no violations");
    } else {
        violations(vs);
    }
    for (project, members) in releases {
        println!("\nrelease {project}");
        for r in members {
            let version = r.value("version").unwrap_or("?");
            let age = r.value("age").unwrap_or("?");
            let pkg = r.value("packageName").unwrap_or("?");
            println!("  {:<28} {pkg:<20} {version}-{age}", r.configuration);
            for d in &r.dependencies {
                let target = d.configuration.as_deref().unwrap_or("(OS package)");
                let scope = format!("{:?}", d.scope).to_lowercase();
                println!("      {scope:<7} {} -> {target}", d.name);
            }
            if let Some(d) = &r.download {
                println!("      {}", d.package);
            }
        }
    }
    println!(
        "\nnext: packyard show web_server_R_2_5_1_1 --tree {}",
        tree.root.display()
    );
}

pub fn artifacts(out: &std::path::Path, list: &[crate::pack::Artifact]) {
    for a in list {
        println!(
            "{}  {} bytes  sha256 {}",
            out.join(&a.path).display(),
            a.size,
            a.sha256
        );
    }
}
