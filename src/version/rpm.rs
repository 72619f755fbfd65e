//! RPM version ordering: `rpmvercmp` and EVR (`epoch:version-release`) as rpm 4.x does it.
//!
//! Written here rather than taken from `rpm-version` because that crate splits the release at
//! the *first* `-` while rpm splits at the last one; the segment comparison follows
//! rpm's `rpmvio.c`/`rpmvercmp.c` line by line and is checked against rpm itself in
//! `tests/`.

use std::cmp::Ordering;
use std::fmt;

/// Compares two version (or release) strings exactly like rpm's `rpmvercmp()`.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let is_sep = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    while !one.is_empty() || !two.is_empty() {
        one = skip_while(one, is_sep);
        two = skip_while(two, is_sep);

        // `~` sorts before everything, even the end of the string.
        if one.first() == Some(&b'~') || two.first() == Some(&b'~') {
            if one.first() != Some(&b'~') {
                return Ordering::Greater;
            }
            if two.first() != Some(&b'~') {
                return Ordering::Less;
            }
            one = &one[1..];
            two = &two[1..];
            continue;
        }
        // `^` sorts after the end of the string but before anything else.
        if one.first() == Some(&b'^') || two.first() == Some(&b'^') {
            if one.is_empty() {
                return Ordering::Less;
            }
            if two.is_empty() {
                return Ordering::Greater;
            }
            if one.first() != Some(&b'^') {
                return Ordering::Greater;
            }
            if two.first() != Some(&b'^') {
                return Ordering::Less;
            }
            one = &one[1..];
            two = &two[1..];
            continue;
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let seg1_len = one.iter().take_while(|c| class(c)).count();
        let seg2_len = two.iter().take_while(|c| class(c)).count();
        let (mut seg1, rest1) = one.split_at(seg1_len);
        let (mut seg2, rest2) = two.split_at(seg2_len);
        if seg2.is_empty() {
            // Different segment types: numeric is newer than alpha.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            seg1 = skip_while(seg1, |c| *c == b'0');
            seg2 = skip_while(seg2, |c| *c == b'0');
            match seg1.len().cmp(&seg2.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match seg1.cmp(seg2) {
            Ordering::Equal => {}
            other => return other,
        }
        one = rest1;
        two = rest2;
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn skip_while(s: &[u8], pred: impl Fn(&u8) -> bool) -> &[u8] {
    let n = s.iter().take_while(|c| pred(c)).count();
    &s[n..]
}

/// An RPM `[epoch:]version[-release]`, parsed as rpm's `rpmverParse` does: the epoch is the
/// leading digits before a `:`, the release follows the last `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpmEvr {
    /// `None` when the string had no epoch; compares as 0.
    pub epoch: Option<String>,
    pub version: String,
    /// `None` when the string had no `-`; older than any release with equal versions.
    pub release: Option<String>,
}

impl RpmEvr {
    pub fn parse(s: &str) -> RpmEvr {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = if s.as_bytes().get(digits) == Some(&b':') {
            let e = &s[..digits];
            (
                Some(if e.is_empty() { "0" } else { e }.to_string()),
                &s[digits + 1..],
            )
        } else {
            (None, s)
        };
        let (version, release) = match rest.rfind('-') {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_string())),
            None => (rest, None),
        };
        RpmEvr {
            epoch,
            version: version.to_string(),
            release,
        }
    }

    pub fn epoch_or_zero(&self) -> &str {
        self.epoch.as_deref().unwrap_or("0")
    }

    /// Compares epoch and version only: what a dependency without a release asks for.
    pub fn cmp_without_release(&self, other: &RpmEvr) -> Ordering {
        rpmvercmp(self.epoch_or_zero(), other.epoch_or_zero())
            .then_with(|| rpmvercmp(&self.version, &other.version))
    }
}

impl Ord for RpmEvr {
    fn cmp(&self, other: &Self) -> Ordering {
        // As rpm 4.18 compares parsed EVRs: with equal versions, a release that is present
        // beats one that is absent, whatever it holds (even `~`).
        self.cmp_without_release(other)
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
    }
}

impl PartialOrd for RpmEvr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RpmEvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.epoch {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn known_rpmvercmp_cases() {
        // A selection of rpm's own test suite (tests/rpmvercmp.at).
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("1.0aa", "1.0a", Greater),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.0^20160101^git1", "1.0^20160101", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("001", "1", Equal),
            ("+", "_", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr_parse_uses_last_dash_and_numeric_epoch() {
        let e = RpmEvr::parse("2:1.0-rc-3");
        assert_eq!(e.epoch.as_deref(), Some("2"));
        assert_eq!(e.version, "1.0-rc");
        assert_eq!(e.release.as_deref(), Some("3"));
        let e = RpmEvr::parse("a:1");
        assert_eq!(e.epoch, None);
        assert_eq!(e.version, "a:1");
        assert_eq!(e.to_string(), "a:1");
    }

    #[test]
    fn missing_epoch_is_zero_and_missing_release_is_oldest() {
        assert_eq!(RpmEvr::parse("0:1.0-1").cmp(&RpmEvr::parse("1.0-1")), Equal);
        assert_eq!(RpmEvr::parse("1.0").cmp(&RpmEvr::parse("1.0-1")), Less);
        assert_eq!(RpmEvr::parse("1:0.1").cmp(&RpmEvr::parse("9.9")), Greater);
        // rpm.ver("6.") < rpm.ver("6-~."): a present release wins even when it is `~`.
        assert_eq!(RpmEvr::parse("6.").cmp(&RpmEvr::parse("6-~.")), Less);
    }
}
