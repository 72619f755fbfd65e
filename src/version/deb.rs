//! Debian version ordering: `[epoch:]upstream[-revision]` compared as dpkg's `verrevcmp`.
//!
//! Written here rather than taken from `debian-packaging` because that crate parses numeric
//! runs into `u64` and panics on longer ones, where dpkg compares digit strings of any
//! length. Checked against `dpkg --compare-versions` in `tests/`.

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not a Debian version (the rules of deb-version(7)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebVersionError {
    #[error("version is empty")]
    Empty,
    #[error("epoch `{0}` is not a number")]
    BadEpoch(String),
    #[error("upstream version `{0}` must start with a digit")]
    UpstreamStart(String),
    #[error("`{0}` is not allowed in a Debian version")]
    BadChar(char),
    #[error("revision is empty after `-`")]
    EmptyRevision,
}

/// A Debian package version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DebVersion {
    pub epoch: u64,
    pub upstream: String,
    /// `None` when there was no `-`; compares as `0`, as dpkg does.
    pub revision: Option<String>,
}

impl DebVersion {
    /// Parses and validates like dpkg's `parseversion` (which rejects what we reject here).
    pub fn parse(s: &str) -> Result<DebVersion, DebVersionError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DebVersionError::Empty);
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(DebVersionError::BadEpoch(e.to_string()));
                }
                let epoch = e
                    .parse::<u64>()
                    .map_err(|_| DebVersionError::BadEpoch(e.to_string()))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(DebVersionError::UpstreamStart(upstream.to_string()));
        }
        if let Some(c) = upstream
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".+~-:".contains(*c)))
        {
            return Err(DebVersionError::BadChar(c));
        }
        if let Some(r) = revision {
            if r.is_empty() {
                return Err(DebVersionError::EmptyRevision);
            }
            if let Some(c) = r
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || ".+~".contains(*c)))
            {
                return Err(DebVersionError::BadChar(c));
            }
        }
        Ok(DebVersion {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.map(str::to_string),
        })
    }
}

/// dpkg's character weight: `~` before the end, letters before non-letters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// Compares two upstream versions or revisions exactly like dpkg's `verrevcmp()`.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| {
                verrevcmp(
                    self.revision.as_deref().unwrap_or("0"),
                    other.revision.as_deref().unwrap_or("0"),
                )
            })
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if let Some(r) = &self.revision {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        DebVersion::parse(a)
            .unwrap()
            .cmp(&DebVersion::parse(b).unwrap())
    }

    #[test]
    fn known_dpkg_cases() {
        let cases = [
            ("1.0", "1.0-0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0a", Less),
            ("1:0.1", "2.0", Greater),
            ("1.2.3-1", "1.2.3-1ubuntu1", Less),
            ("0001", "1", Equal),
            ("1.10", "1.9", Greater),
            ("1.0-1", "1.0-1.1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn long_digit_runs_do_not_overflow() {
        assert_eq!(
            cmp(
                "1.123456789012345678901234567890",
                "1.123456789012345678901234567891"
            ),
            Less
        );
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        assert!(DebVersion::parse("").is_err());
        assert!(DebVersion::parse("a1.0").is_err());
        assert!(DebVersion::parse("x:1.0").is_err());
        assert!(DebVersion::parse("1.0_1").is_err());
        assert!(DebVersion::parse("1.0-").is_err());
    }
}
