//! Property expansion: `${KEY}` in any text, with inheritance already merged, nested
//! references, `${dep.KEY}` into first-level dependencies, and `$${` for a literal `${`.
//!
//! Pure logic: it sees maps of strings, never files.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Where a property's value came from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "source", rename_all = "lowercase")]
pub enum Origin {
    /// Set by packyard (platform, directories, packager defaults).
    System,
    /// A field of the configuration or module, named in `source`.
    Field(String),
    /// The project configuration named in `source`.
    Project(String),
    /// The subsystem configuration named in `source`.
    Subsystem(String),
    /// The component configuration named in `source`.
    Component(String),
    /// `-p KEY=VALUE` on the command line.
    Override,
    /// A defaults profile (`--defaults NAME`).
    Profile(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::System => f.write_str("system"),
            Origin::Field(s) => write!(f, "field of {s}"),
            Origin::Project(s) => write!(f, "project {s}"),
            Origin::Subsystem(s) => write!(f, "subsystem {s}"),
            Origin::Component(s) => write!(f, "component {s}"),
            Origin::Override => f.write_str("override (-p)"),
            Origin::Profile(p) => write!(f, "profile:{p}"),
        }
    }
}

/// One property before expansion.
#[derive(Debug, Clone)]
pub struct RawProperty {
    pub raw: String,
    pub origin: Origin,
}

/// A property reference that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("{configuration}: undefined property `${{{key}}}` in `{text}`")]
    Undefined {
        configuration: String,
        key: String,
        text: String,
    },
    #[error("{configuration}: properties refer to each other in a cycle ({}) in `{text}`", chain.join(" -> "))]
    Cycle {
        configuration: String,
        chain: Vec<String>,
        text: String,
    },
    #[error("{configuration}: `${{` without a closing `}}` in `{text}`")]
    Unterminated { configuration: String, text: String },
    #[error("{configuration}: while reading `${{{key}}}` from dependency {dependency}: {message}")]
    Dependency {
        configuration: String,
        key: String,
        dependency: String,
        message: String,
    },
}

impl PropertyError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            PropertyError::Undefined { .. } => {
                "define it in the configuration, its subsystem or project configuration, or pass -p KEY=VALUE; write $${...} for a literal ${...} (e.g. a shell variable)"
            }
            PropertyError::Cycle { .. } => "make one of the properties in the cycle a plain value",
            PropertyError::Unterminated { .. } => {
                "close the reference with `}`, or write $${ for a literal ${"
            }
            PropertyError::Dependency { .. } => {
                "fix the dependency's configuration first (packyard show it)"
            }
        }
    }
}

/// Computes a dependency's resolved properties (or says why it cannot).
pub type DepProperties<'a> = Box<dyn Fn() -> Result<Rc<BTreeMap<String, String>>, String> + 'a>;

/// A first-level dependency as property lookups see it.
pub struct DepScope<'a> {
    /// Full dotted module name.
    pub module: String,
    /// Its last dotted part, when no other first-level dependency shares it.
    pub short: Option<String>,
    /// Its resolved properties, computed on first use (dependencies may be many and deep).
    pub properties: DepProperties<'a>,
}

/// Expands text against one configuration's merged properties.
pub struct Expander<'a> {
    configuration: &'a str,
    props: &'a BTreeMap<String, RawProperty>,
    deps: &'a [DepScope<'a>],
    cache: RefCell<HashMap<String, String>>,
}

impl<'a> Expander<'a> {
    pub fn new(
        configuration: &'a str,
        props: &'a BTreeMap<String, RawProperty>,
        deps: &'a [DepScope<'a>],
    ) -> Expander<'a> {
        Expander {
            configuration,
            props,
            deps,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Replaces every `${KEY}` in `text`; errors name the configuration and `text`.
    pub fn expand(&self, text: &str) -> Result<String, PropertyError> {
        let mut stack = Vec::new();
        self.expand_in(text, &mut stack)
            .map_err(|e| self.with_text(e, text))
    }

    /// The value of property `key`, expanded.
    pub fn value(&self, key: &str) -> Result<String, PropertyError> {
        let text = format!("${{{key}}}");
        self.expand(&text)
    }

    /// The same error, told about `text` (e.g. a property's raw value).
    pub fn with_text(&self, e: PropertyError, text: &str) -> PropertyError {
        let text = text.to_string();
        match e {
            PropertyError::Undefined {
                configuration, key, ..
            } => PropertyError::Undefined {
                configuration,
                key,
                text,
            },
            PropertyError::Cycle {
                configuration,
                chain,
                ..
            } => PropertyError::Cycle {
                configuration,
                chain,
                text,
            },
            PropertyError::Unterminated { configuration, .. } => PropertyError::Unterminated {
                configuration,
                text,
            },
            other => other,
        }
    }

    fn expand_in(&self, text: &str, stack: &mut Vec<String>) -> Result<String, PropertyError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                let close = matching_brace(after).ok_or_else(|| PropertyError::Unterminated {
                    configuration: self.configuration.to_string(),
                    text: text.to_string(),
                })?;
                // The key itself may hold references: `${${which}.DEFAULT}`.
                let key = self.expand_in(&after[..close], stack)?;
                out.push_str(&self.lookup(key.trim(), stack)?);
                rest = &after[close + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, key: &str, stack: &mut Vec<String>) -> Result<String, PropertyError> {
        if let Some(v) = self.cache.borrow().get(key) {
            return Ok(v.clone());
        }
        if let Some(pos) = stack.iter().position(|k| k == key) {
            let mut chain = stack[pos..].to_vec();
            chain.push(key.to_string());
            return Err(PropertyError::Cycle {
                configuration: self.configuration.to_string(),
                chain,
                text: String::new(),
            });
        }
        let value = if let Some(p) = self.props.get(key) {
            stack.push(key.to_string());
            let v = self.expand_in(&p.raw, stack);
            stack.pop();
            v?
        } else {
            self.dependency_lookup(key)?
        };
        self.cache
            .borrow_mut()
            .insert(key.to_string(), value.clone());
        Ok(value)
    }

    /// `${dep.KEY}`: the longest prefix naming a first-level dependency wins.
    fn dependency_lookup(&self, key: &str) -> Result<String, PropertyError> {
        let undefined = || PropertyError::Undefined {
            configuration: self.configuration.to_string(),
            key: key.to_string(),
            text: String::new(),
        };
        for (dot, _) in key.rmatch_indices('.') {
            let (prefix, rest) = (&key[..dot], &key[dot + 1..]);
            let Some(dep) = self
                .deps
                .iter()
                .find(|d| d.module == prefix || d.short.as_deref() == Some(prefix))
            else {
                continue;
            };
            let props = (dep.properties)().map_err(|message| PropertyError::Dependency {
                configuration: self.configuration.to_string(),
                key: key.to_string(),
                dependency: dep.module.clone(),
                message,
            })?;
            return props.get(rest).cloned().ok_or_else(undefined);
        }
        Err(undefined())
    }
}

/// Index of the `}` closing a reference whose `${` was just consumed.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, RawProperty> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    RawProperty {
                        raw: v.to_string(),
                        origin: Origin::System,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn nested_and_escaped_references() {
        let p = props(&[
            ("a", "x${b}y"),
            ("b", "${c}${c}"),
            ("c", "1"),
            ("which", "c"),
            ("hx.greeting", "hi"),
        ]);
        let e = Expander::new("conf", &p, &[]);
        assert_eq!(e.expand("${a}").unwrap(), "x11y");
        assert_eq!(e.expand("${${which}}").unwrap(), "1");
        assert_eq!(
            e.expand("echo $HOME $${HOME} ${hx.greeting}").unwrap(),
            "echo $HOME ${HOME} hi"
        );
    }

    #[test]
    fn undefined_and_cycles_name_configuration_and_text() {
        let p = props(&[("a", "${b}"), ("b", "${a}")]);
        let e = Expander::new("web_server_R_2_5_1_1", &p, &[]);
        let err = e.expand("make ${nope}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "web_server_R_2_5_1_1: undefined property `${nope}` in `make ${nope}`"
        );
        let err = e.expand("run ${a}").unwrap_err();
        assert!(
            matches!(&err, PropertyError::Cycle { chain, .. } if chain == &["a", "b", "a"]),
            "{err}"
        );
        assert!(err.to_string().contains("run ${a}"));
        assert!(matches!(
            e.expand("x ${a"),
            Err(PropertyError::Unterminated { .. })
        ));
    }

    #[test]
    fn dependency_properties_by_full_or_short_name() {
        let p = props(&[("hx.greeting", "own")]);
        let dep_props: Rc<BTreeMap<String, String>> = Rc::new(
            [
                ("greeting".to_string(), "hello".to_string()),
                ("a.b".to_string(), "ab".to_string()),
            ]
            .into_iter()
            .collect(),
        );
        let deps = vec![DepScope {
            module: "my-project.servers.hx".into(),
            short: Some("hx".into()),
            properties: Box::new(move || Ok(dep_props.clone())),
        }];
        let e = Expander::new("c", &p, &deps);
        // A key found whole along the chain wins over a dependency lookup.
        assert_eq!(e.expand("${hx.greeting}").unwrap(), "own");
        assert_eq!(
            e.expand("${my-project.servers.hx.greeting}").unwrap(),
            "hello"
        );
        assert_eq!(e.expand("${hx.a.b}").unwrap(), "ab");
        assert!(e.expand("${hx.missing}").is_err());
    }
}
