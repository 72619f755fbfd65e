//! `packyard vercmp` against the real orderings: rpm (through python3-rpm) and
//! `dpkg --compare-versions`, on generated pairs full of the tricky characters.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{Rng, have_tool, packyard, stdout};

const PAIRS: usize = 2500;

fn piece(rng: &mut Rng, deb: bool) -> String {
    let numbers = [
        "0",
        "00",
        "1",
        "01",
        "2",
        "9",
        "10",
        "010",
        "99",
        "100",
        "2024",
        "123456789012345678901234567890",
    ];
    let words = [
        "a", "b", "z", "A", "Z", "rc", "alpha", "beta", "pre", "git", "p", "svn",
    ];
    let rpm_seps = [".", ".", "_", "+", "~", "^", "~~", "^~", "%", ".."];
    let deb_seps = [".", ".", "+", "~", "~~", ".+", "+~"];
    match rng.below(3) {
        0 => rng.pick(&numbers).to_string(),
        1 => rng.pick(&words).to_string(),
        _ => {
            if deb {
                rng.pick(&deb_seps).to_string()
            } else {
                rng.pick(&rpm_seps).to_string()
            }
        }
    }
}

fn part(rng: &mut Rng, deb: bool, min: usize) -> String {
    let n = min + rng.below(5);
    (0..n).map(|_| piece(rng, deb)).collect()
}

fn rpm_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(4) == 0 {
        s.push_str(rng.pick(&["0", "1", "2", "10", "01"]));
        s.push(':');
    }
    // rpm's parser splits at the last '-', so the version has none.
    s.push_str(&part(rng, false, 1));
    if rng.below(3) != 0 {
        s.push('-');
        s.push_str(&part(rng, false, 1));
    }
    s
}

fn deb_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(4) == 0 {
        s.push_str(rng.pick(&["0", "1", "2", "10", "01"]));
        s.push(':');
    }
    let has_rev = rng.below(3) != 0;
    s.push_str(rng.pick(&["0", "1", "2", "9", "10", "01"]));
    s.push_str(&part(rng, true, 0));
    if has_rev && rng.below(5) == 0 {
        // Upstream versions may hold '-' when there is a revision.
        s.push('-');
        s.push_str(&part(rng, true, 1));
    }
    if has_rev {
        s.push('-');
        s.push_str(&part(rng, true, 1));
    }
    s
}

/// A second version close to the first, so orderings are decided deep inside the strings.
fn neighbour(rng: &mut Rng, v: &str, deb: bool) -> String {
    let mut s = v.to_string();
    match rng.below(6) {
        0 => s.push_str(&piece(rng, deb)),
        1 if s.len() > 1 => {
            s.pop();
        }
        2 => s = s.replacen('.', rng.pick(&["~", ".0", ""]), 1),
        3 => s = s.replacen('1', "01", 1),
        4 => s.push_str(if deb { "~" } else { "^" }),
        // A release or revision made only of separators, or `~`, decided by presence alone.
        5 if rng.below(2) == 0 => s.push_str(rng.pick(if deb {
            &["-0", "-~", "-+", "-.0"][..]
        } else {
            &["-~", "-.", "-+", "-~."][..]
        })),
        _ => s = s.replacen('a', "b", 1),
    }
    s
}

fn pairs(seed: u64, deb: bool) -> Vec<(String, String)> {
    let mut rng = Rng::new(seed);
    let gen_one = |rng: &mut Rng| {
        if deb {
            deb_version(rng)
        } else {
            rpm_version(rng)
        }
    };
    let mut out = Vec::new();
    while out.len() < PAIRS {
        let a = gen_one(&mut rng);
        let b = if rng.below(2) == 0 {
            neighbour(&mut rng, &a, deb)
        } else {
            gen_one(&mut rng)
        };
        // Keep only pairs the tools accept as versions (checked by our parser for Debian).
        if deb
            && (packyard::version::DebVersion::parse(&a).is_err()
                || packyard::version::DebVersion::parse(&b).is_err())
        {
            continue;
        }
        if !deb
            && (b.is_empty()
                || b.contains(char::is_whitespace)
                || b.matches(':').count() > 1
                || b.starts_with(':'))
        {
            continue;
        }
        out.push((a, b));
    }
    out
}

fn ours(flag: &str, pairs: &[(String, String)]) -> Vec<String> {
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_packyard")).args(["vercmp", flag, "--stdin"]),
        &input,
    )
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Vec<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

fn assert_agree(what: &str, pairs: &[(String, String)], ours: &[String], theirs: &[String]) {
    assert_eq!(
        ours.len(),
        pairs.len(),
        "{what}: packyard answered {} of {} pairs",
        ours.len(),
        pairs.len()
    );
    assert_eq!(
        theirs.len(),
        pairs.len(),
        "{what}: reference answered {} of {} pairs",
        theirs.len(),
        pairs.len()
    );
    let bad: Vec<String> = pairs
        .iter()
        .zip(ours.iter().zip(theirs))
        .filter(|(_, (o, t))| o != t)
        .map(|((a, b), (o, t))| format!("{a} vs {b}: packyard {o}, reference {t}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} disagreement(s) in {} pairs:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
}

#[test]
fn rpm_ordering_agrees_with_rpm() {
    // python3-rpm installs into the system's Python, which may not be first on PATH.
    let python =
        std::env::var("PACKYARD_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    if !have_tool(&python, &["-c", "import rpm"]) {
        return;
    }
    let pairs = pairs(0x5eed_0001, false);
    let reference = "import sys, rpm\n\
        for line in sys.stdin:\n\
        \x20   a, b = line.split()\n\
        \x20   x, y = rpm.ver(a), rpm.ver(b)\n\
        \x20   print('<' if x < y else '>' if x > y else '=')\n";
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let theirs = run_with_stdin(Command::new(&python).args(["-c", reference]), &input);
    assert_agree("rpm", &pairs, &ours("--rpm", &pairs), &theirs);
}

#[test]
fn deb_ordering_agrees_with_dpkg() {
    if !have_tool("dpkg", &["--version"]) {
        return;
    }
    let pairs = pairs(0x5eed_0002, true);
    let script = r#"while read -r a b; do
        if dpkg --compare-versions "$a" lt "$b"; then echo '<';
        elif dpkg --compare-versions "$a" eq "$b"; then echo '=';
        else echo '>'; fi
    done"#;
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let theirs = run_with_stdin(Command::new("bash").args(["-c", script]), &input);
    assert_agree("dpkg", &pairs, &ours("--deb", &pairs), &theirs);
}

#[test]
fn generated_pairs_are_not_trivial() {
    // Guards the generator: both orders, equality and the tricky characters all occur.
    for deb in [false, true] {
        let p = pairs(0x5eed_0003, deb);
        let answers = ours(if deb { "--deb" } else { "--rpm" }, &p);
        for sym in ["<", "=", ">"] {
            let n = answers.iter().filter(|a| *a == sym).count();
            assert!(n >= 50, "only {n} `{sym}` answers (deb={deb})");
        }
        for ch in ['~', ':', '-', '+'] {
            assert!(
                p.iter().any(|(a, _)| a.contains(ch)),
                "no `{ch}` generated (deb={deb})"
            );
        }
        if !deb {
            assert!(p.iter().any(|(a, _)| a.contains('^')));
        }
    }
}

#[test]
fn vercmp_cli_single_pair_and_errors() {
    assert_eq!(
        stdout(&packyard(&["vercmp", "1.0~rc1", "1.0", "--rpm"])).trim(),
        "<"
    );
    assert_eq!(
        stdout(&packyard(&["vercmp", "1:0.9", "2.0", "--deb"])).trim(),
        ">"
    );
    assert_eq!(
        stdout(&packyard(&["vercmp", "1.0", "1.0-0", "--deb"])).trim(),
        "="
    );
    let bad = packyard(&["vercmp", "a1.0", "1.0", "--deb"]);
    assert!(!bad.status.success());
    assert!(crate::support::stderr(&bad).contains("`a1.0` is not a Debian version"));
    let none = packyard(&["vercmp", "1", "2"]);
    assert!(!none.status.success(), "a scheme is required");
}
