//! Versions and their two orderings (RPM's `rpmvercmp`, Debian's dpkg), and constraints.
//!
//! Pure logic, no I/O. `compare` is what `packyard vercmp` and the resolver use.

mod constraint;
mod deb;
mod rpm;

use std::cmp::Ordering;

pub use constraint::{Clause, Constraint, ConstraintError, Op};
pub use deb::{DebVersion, DebVersionError, verrevcmp};
pub use rpm::{RpmEvr, rpmvercmp};

/// Which package manager's ordering to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Rpm,
    Deb,
}

/// Compares two full version strings (`[epoch:]version[-release]`) in `scheme`'s ordering.
///
/// For Debian, a string that is not a valid version is compared by the same algorithm on
/// its parts anyway (as `dpkg --compare-versions` does after warning); use
/// [`DebVersion::parse`] first where validity matters.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Ordering {
    match scheme {
        Scheme::Rpm => RpmEvr::parse(a).cmp(&RpmEvr::parse(b)),
        Scheme::Deb => match (DebVersion::parse(a), DebVersion::parse(b)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => lenient_deb(a).cmp(&lenient_deb(b)),
        },
    }
}

fn lenient_deb(s: &str) -> DebVersion {
    let s = s.trim();
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => (e.parse().unwrap_or(0), rest),
        None => (0, s),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r.to_string())),
        None => (rest, None),
    };
    DebVersion {
        epoch,
        upstream: upstream.to_string(),
        revision,
    }
}

/// `<`, `=` or `>`, as `packyard vercmp` prints it.
pub fn ordering_symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}
