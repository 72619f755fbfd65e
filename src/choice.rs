//! Enums a user picks by name (on the command line): each lists its choices here, with a
//! line of help, so library types need no command-line parser and the CLI offers exactly
//! these names.

/// A value picked by name from a fixed list.
pub trait Choice: Copy + 'static {
    /// Every value a user may name: the value, its name, a line of help.
    const CHOICES: &'static [(Self, &'static str, &'static str)];

    /// The value called `name`, if any.
    fn named(name: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(v, _, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::Choice;

    #[test]
    fn every_choice_is_found_by_its_name_and_names_are_distinct() {
        fn check<T: Choice + PartialEq + std::fmt::Debug>() {
            let mut names = std::collections::BTreeSet::new();
            for (v, name, _) in T::CHOICES {
                assert_eq!(T::named(name), Some(*v));
                assert!(names.insert(*name), "{name} twice");
            }
            assert_eq!(T::named("no-such-choice"), None);
        }
        check::<crate::store::RepoKind>();
        check::<crate::store::MetadataCompression>();
        check::<crate::store::Role>();
        check::<crate::repo::keys::Algorithm>();
        check::<crate::pack::ArtifactFormat>();
    }
}
