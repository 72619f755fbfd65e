//! Names of files in a repository, and repository paths in URLs: plain string rules (and
//! the one type naming a published file) that the packager, publisher, store, server,
//! client and build node all share. A leaf: it uses no
//! other module of the crate, so any of them can use it without a cycle.

/// One published file of a build: what build records, farm tasks and build nodes name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltFile {
    /// Download-from path in the repository.
    pub path: String,
    pub sha256: String,
}

/// Whether `name` may name a repository: 1-64 of `[a-z0-9._-]`, starting with a letter or
/// digit (so it is one plain path segment, and never hidden).
pub fn is_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// What stays as is in a URL path segment: RFC 3986's unreserved characters and `+`.
pub const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'+');

/// Percent-encodes a repository path for a URL (each part encoded, `/` kept).
pub fn url_path(s: &str) -> String {
    s.split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encodes one URL path segment (a repository name, a configuration).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Where the repository's record of a file's SHA-256 sits beside it: `<path>.sha256`,
/// in `sha256sum` format. It lets a build node check a tarball (which no signed index
/// lists) from a plain directory, a `file://` tree or any HTTP mirror.
pub fn checksum_key(path: &str) -> String {
    format!("{path}.sha256")
}

/// The text of a checksum file: `sha256sum -c` reads it in the file's directory.
pub fn checksum_line(path: &str, sha256: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    format!("{sha256}  {file}\n")
}

/// The SHA-256 a checksum file holds (its first word), in lower case; `None` if it holds
/// none.
pub fn parse_checksum(text: &str) -> Option<String> {
    let sum = text.split_whitespace().next().unwrap_or("");
    (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| sum.to_ascii_lowercase())
}

/// The build record's path for a component whose tarball is at `tarball`.
pub fn record_path(tarball: &str) -> String {
    format!("{}.build.json", stem(tarball))
}

/// The build log's path for a component whose tarball is at `tarball`.
pub fn log_path(tarball: &str) -> String {
    format!("{}.build.log", stem(tarball))
}

fn stem(tarball: &str) -> &str {
    tarball.strip_suffix(".tar.gz").unwrap_or(tarball)
}

/// Whether a repository path is a build file (log or record), not a package.
pub fn is_build_file(path: &str) -> bool {
    path.ends_with(".build.json") || path.ends_with(".build.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_files_sit_beside_the_tarball() {
        let t = "p/p.m/1.0/el9_x86_64/m-1.0-1.tar.gz";
        assert_eq!(record_path(t), "p/p.m/1.0/el9_x86_64/m-1.0-1.build.json");
        assert_eq!(log_path(t), "p/p.m/1.0/el9_x86_64/m-1.0-1.build.log");
        assert!(is_build_file(&log_path(t)) && is_build_file(&record_path(t)));
        assert!(!is_build_file(t));
    }

    #[test]
    fn url_paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(url_path("a b/ü.rpm"), "a%20b/%C3%BC.rpm");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(checksum_line("d/f.tar.gz", "ab"), "ab  f.tar.gz\n");
        let sum = "AB".repeat(32);
        let line = checksum_line("f", &sum);
        assert_eq!(parse_checksum(&line), Some(sum.to_ascii_lowercase()));
        assert_eq!(parse_checksum("abc  f\n"), None);
    }
}
