#!/usr/bin/env bash
# Times `packyard vercmp --stdin` against the reference orderings on the same pairs:
# rpm's (python3-rpm, in one process) and dpkg's (`dpkg --compare-versions`, one process a
# pair, as scripts use it). Prints seconds and the ratio. Needs a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
DPKG_N=${DPKG_N:-2000}
bin=target/release/packyard
[ -x "$bin" ] || cargo build --release --locked >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

/usr/bin/python3 - "$N" >"$tmp/pairs" <<'PY'
import random, sys
random.seed(7)
parts = ["0", "1", "01", "10", "99", "2024", "a", "rc", "beta", "git", ".", ".", "+", "~", "-"]
def v():
    s = random.choice("0123456789") + "".join(random.choice(parts) for _ in range(random.randint(1, 6)))
    s = s.replace("--", "-").rstrip("-")
    if random.random() < 0.2: s = f"{random.randint(0, 3)}:{s}"
    return s
for _ in range(int(sys.argv[1])): print(v(), v())
PY
head -n "$DPKG_N" "$tmp/pairs" >"$tmp/few"

# Times a command; its answers go to $tmp/out.<label> so agreement is checked too.
t() { local label=$1 s e; shift; s=$(date +%s.%N); "$@" >"$tmp/out.$label"; e=$(date +%s.%N); echo "$e - $s" | bc; }

ours_rpm=$(t ours_rpm sh -c "$bin vercmp --rpm --stdin < $tmp/pairs")
ref_rpm=$(t ref_rpm /usr/bin/python3 -c '
import sys, rpm
for l in sys.stdin:
    a, b = l.split(); x, y = rpm.ver(a), rpm.ver(b)
    print("<" if x < y else ">" if x > y else "=")' <"$tmp/pairs")
ours_deb=$(t ours_deb sh -c "$bin vercmp --deb --stdin < $tmp/few")
ref_deb=$(t ref_deb bash -c 'while read -r a b; do if dpkg --compare-versions "$a" lt "$b"; then echo "<"; elif dpkg --compare-versions "$a" eq "$b"; then echo "="; else echo ">"; fi; done' <"$tmp/few")
ours_deb_all=$(t ours_deb_all sh -c "$bin vercmp --deb --stdin < $tmp/pairs")

printf '%-44s %10s\n' "what" "seconds"
printf '%-44s %10.3f\n' "packyard vercmp --rpm, $N pairs" "$ours_rpm"
printf '%-44s %10.3f\n' "python3-rpm rpm.ver, $N pairs" "$ref_rpm"
printf '%-44s %10.3f\n' "packyard vercmp --deb, $N pairs" "$ours_deb_all"
printf '%-44s %10.3f\n' "packyard vercmp --deb, $DPKG_N pairs" "$ours_deb"
printf '%-44s %10.3f\n' "dpkg --compare-versions, $DPKG_N pairs" "$ref_deb"
echo "ratio rpm (reference / packyard): $(echo "scale=1; $ref_rpm / $ours_rpm" | bc)"
echo "ratio deb (reference / packyard, $DPKG_N pairs): $(echo "scale=1; $ref_deb / $ours_deb" | bc)"
differ() { paste -d' ' "$tmp/out.$1" "$tmp/out.$2" | awk '$1 != $2' | wc -l; }
echo "disagreements: rpm $(differ ours_rpm ref_rpm) of $N, dpkg $(differ ours_deb ref_deb) of $DPKG_N"
