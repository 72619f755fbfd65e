//! Version constraints such as `>= 1.2.0`, `< 2`, `= 1.0-1`, or several joined by commas.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Scheme, compare};

/// A comparison operator of a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

impl Op {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }

    /// The operator as RPM writes it.
    pub fn rpm(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }

    /// The operator as Debian writes it (`<<` and `>>` are strict).
    pub fn deb(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One `OP VERSION` part of a constraint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Clause {
    pub op: Op,
    pub version: String,
}

impl Clause {
    /// Does `candidate` satisfy this clause? As in rpm and dpkg dependency matching, a
    /// clause version without a release/revision (`>= 1.2`) ignores the candidate's one.
    pub fn matches(&self, scheme: Scheme, candidate: &str) -> bool {
        let ord = if self.version.contains('-') {
            compare(scheme, candidate, &self.version)
        } else {
            let base = candidate
                .rsplit_once('-')
                .map_or(candidate, |(base, _)| base);
            compare(scheme, base, &self.version)
        };
        self.op.holds(ord)
    }
}

/// A conjunction of clauses: every one must hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Constraint(pub Vec<Clause>);

/// Why a constraint does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("empty constraint")]
    Empty,
    #[error("`{0}` has no operator; write e.g. `>= {0}` (operators: < <= = >= >)")]
    NoOperator(String),
    #[error("`{0}` has an operator but no version")]
    NoVersion(String),
    #[error("`{0}` contains whitespace inside the version")]
    Whitespace(String),
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ConstraintError::Empty);
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            // Longest operators first; `<<`/`>>`/`==` are accepted for Debian/semver habits.
            const OPS: [(&str, Op); 8] = [
                ("<<", Op::Lt),
                (">>", Op::Gt),
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("==", Op::Eq),
                ("<", Op::Lt),
                (">", Op::Gt),
                ("=", Op::Eq),
            ];
            let (op, rest) = OPS
                .iter()
                .find_map(|(t, op)| part.strip_prefix(t).map(|rest| (*op, rest)))
                .ok_or_else(|| ConstraintError::NoOperator(part.to_string()))?;
            let version = rest.trim();
            if version.is_empty() {
                return Err(ConstraintError::NoVersion(part.to_string()));
            }
            if version.contains(char::is_whitespace) {
                return Err(ConstraintError::Whitespace(part.to_string()));
            }
            clauses.push(Clause {
                op,
                version: version.to_string(),
            });
        }
        Ok(Constraint(clauses))
    }
}

impl Constraint {
    pub fn matches(&self, scheme: Scheme, candidate: &str) -> bool {
        self.0.iter().all(|c| c.matches(scheme, candidate))
    }

    /// RPM `Requires:` entries, one per clause: `name >= 1.2.0`.
    pub fn rpm_requires(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|c| format!("{name} {} {}", c.op.rpm(), c.version))
            .collect()
    }

    /// A Debian `Depends:` fragment: `name (>= 1.2.0), name (<< 2)`.
    pub fn deb_depends(&self, name: &str) -> String {
        self.0
            .iter()
            .map(|c| format!("{name} ({} {})", c.op.deb(), c.version))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", c.op.rpm(), c.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Constraint {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_like_package_managers() {
        let r = c(">= 1.2, < 2");
        assert!(r.matches(Scheme::Rpm, "1.2.0-1"));
        assert!(r.matches(Scheme::Rpm, "1.10-3"));
        assert!(!r.matches(Scheme::Rpm, "2.0-1"));
        assert!(!r.matches(Scheme::Rpm, "1.1.9-1"));
        assert!(c("= 1.0-1").matches(Scheme::Deb, "1.0-1"));
        assert!(!c("= 1.0-1").matches(Scheme::Deb, "1.0-2"));
        assert!(c("= 1.0").matches(Scheme::Rpm, "1.0-7"));
        assert!(c(">> 1.0~rc1").matches(Scheme::Deb, "1.0"));
    }

    #[test]
    fn renders_for_both_formats() {
        let r = c(">= 1.2.0, < 2");
        assert_eq!(r.rpm_requires("foo"), ["foo >= 1.2.0", "foo < 2"]);
        assert_eq!(r.deb_depends("foo"), "foo (>= 1.2.0), foo (<< 2)");
        assert_eq!(r.to_string(), ">= 1.2.0, < 2");
    }

    #[test]
    fn bad_constraints_say_why() {
        assert_eq!("".parse::<Constraint>(), Err(ConstraintError::Empty));
        assert!(matches!(
            "1.2".parse::<Constraint>(),
            Err(ConstraintError::NoOperator(_))
        ));
        assert!(matches!(
            ">=".parse::<Constraint>(),
            Err(ConstraintError::NoVersion(_))
        ));
        assert!(matches!(
            ">= 1 2".parse::<Constraint>(),
            Err(ConstraintError::Whitespace(_))
        ));
    }
}
