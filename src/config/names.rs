//! Name rules: dotted module names, configuration names (`_R_` / `_B_`), package names.

/// What a configuration name says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameBinding {
    /// `<prefix>_R_<major>_<minor>_<revision>_<age>`: bound to a VCS tag.
    Release {
        major: u64,
        minor: u64,
        revision: u64,
        age: u64,
    },
    /// `<prefix>_B_<branch>`: bound to a VCS branch.
    Branch(String),
}

/// A parsed configuration name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationName {
    /// The component (or subsystem, project) name part before `_R_` / `_B_`.
    pub prefix: String,
    pub binding: NameBinding,
}

impl ConfigurationName {
    /// Parses `web_server_R_2_5_1_1` or `emi-unicore-ucc_B_TRUNK`; `None` if neither form.
    pub fn parse(name: &str) -> Option<ConfigurationName> {
        // A branch may itself contain `_R_` (`a_B_FIX_R_2`): try the release form first,
        // then the branch form.
        Self::parse_release(name).or_else(|| Self::parse_branch(name))
    }

    fn parse_release(name: &str) -> Option<ConfigurationName> {
        if let Some(i) = name.rfind("_R_") {
            let nums: Vec<&str> = name[i + 3..].split('_').collect();
            if nums.len() != 4 || i == 0 {
                return None;
            }
            let n: Vec<u64> = nums
                .iter()
                .map(|p| {
                    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                        None
                    } else {
                        p.parse().ok()
                    }
                })
                .collect::<Option<_>>()?;
            return Some(ConfigurationName {
                prefix: name[..i].to_string(),
                binding: NameBinding::Release {
                    major: n[0],
                    minor: n[1],
                    revision: n[2],
                    age: n[3],
                },
            });
        }
        None
    }

    fn parse_branch(name: &str) -> Option<ConfigurationName> {
        let i = name.find("_B_")?;
        let branch = &name[i + 3..];
        if i == 0 || branch.is_empty() || !branch.bytes().all(is_name_byte) {
            return None;
        }
        Some(ConfigurationName {
            prefix: name[..i].to_string(),
            binding: NameBinding::Branch(branch.to_string()),
        })
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Is every dotted part of `name` non-empty and made of letters, digits, `_` and `-`?
pub fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(is_name_byte))
}

/// Parses `M.m.R` (three non-negative integers).
pub fn parse_mmr(version: &str) -> Option<(u64, u64, u64)> {
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let n: Vec<u64> = parts
        .iter()
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    Some((n[0], n[1], n[2]))
}

/// Why a package name cannot be used for both RPM and Debian, or `None` if it can.
///
/// Debian policy §5.6.1 is the stricter of the two: lower case letters, digits, `+ - .`,
/// at least two characters, starting with a letter or digit. RPM accepts all of those.
pub fn package_name_problem(name: &str) -> Option<String> {
    if name.len() < 2 {
        return Some("must be at least two characters long".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Some("must start with a lower-case letter or a digit".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(*c)))
    {
        let what = if c.is_ascii_uppercase() {
            "upper-case letters are not allowed in Debian package names".to_string()
        } else {
            format!("`{c}` is not allowed (only a-z, 0-9, `+`, `-`, `.`)")
        };
        return Some(what);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names() {
        let c = ConfigurationName::parse("web_server_R_2_5_1_1").unwrap();
        assert_eq!(c.prefix, "web_server");
        assert_eq!(
            c.binding,
            NameBinding::Release {
                major: 2,
                minor: 5,
                revision: 1,
                age: 1
            }
        );
        let b = ConfigurationName::parse("a_B_FIX_R_2").unwrap();
        assert_eq!(b.binding, NameBinding::Branch("FIX_R_2".into()));
        let b = ConfigurationName::parse("emi-unicore-ucc_B_TRUNK").unwrap();
        assert_eq!(b.binding, NameBinding::Branch("TRUNK".into()));
        for bad in [
            "web_server",
            "web_server_R_2_5_1",
            "_R_1_0_0_1",
            "x_R_1_a_0_1",
            "x_B_",
        ] {
            assert!(ConfigurationName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn package_names() {
        assert!(package_name_problem("my-web-server").is_none());
        assert!(package_name_problem("libfoo2.0+x").is_none());
        assert!(
            package_name_problem("my-Server")
                .unwrap()
                .contains("upper-case")
        );
        assert!(package_name_problem("web_server").unwrap().contains("`_`"));
        assert!(package_name_problem("x").is_some());
        assert!(package_name_problem("-x").is_some());
    }

    #[test]
    fn versions_and_module_names() {
        assert_eq!(parse_mmr("2.5.1"), Some((2, 5, 1)));
        assert_eq!(parse_mmr("2.5"), None);
        assert_eq!(parse_mmr("2.5.x"), None);
        assert!(valid_module_name("my-project.servers.web_server"));
        assert!(!valid_module_name("my-project..x"));
        assert!(!valid_module_name("a b"));
    }
}
