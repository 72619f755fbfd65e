#!/usr/bin/env bash
# The cost of pristine build roots: the sample release (fixtures/trees/my-project) built
# for deb12_amd64 on the host, then with `--root deb12_amd64=ROOT.tar` (a Debian 12 root
# made with `mmdebstrap --variant=buildd bookworm`, kept in target/roots/ as the tests
# keep it). Prints the wall time of both builds (best of 3, fresh data directory and
# workspace each), the root's preparation once per build (unpacking the tarball,
# `apt-get update` into its index layer), and per component what the build logs say: the
# fresh layer, installing the build-time externals, taking the layer down.
# Needs: root, mmdebstrap, bwrap, make, cc, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

. docs/bench/common.sh
bench_setup roots.sh "mmdebstrap bubblewrap make gcc python3" mmdebstrap bwrap make cc python3
[ "$(id -u)" -eq 0 ] || { echo "roots.sh needs root (the overlay mount and apt do)" >&2; exit 1; }
ROOT=$PWD/target/roots/deb12-buildd.tar
if [ ! -f "$ROOT" ]; then
  mkdir -p target/roots
  mmdebstrap --variant=buildd --quiet bookworm "$ROOT.part"
  mv "$ROOT.part" "$ROOT"
fi
TREE=$PWD/fixtures/trees/my-project

python3 - "$PY" "$TREE" "$ROOT" "$W" <<'PY'
import json, os, re, shutil, subprocess, sys, time
py, tree, root, w = sys.argv[1:]

def run(args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"{args[:4]} failed: {r.stderr.decode()}{r.stdout.decode()[-2000:]}")
    return r

def build(extra):
    d = f"{w}/b"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
    start = time.monotonic()
    r = run([py, "--json", "--data", f"{d}/data", "build", "--tree", tree, "--platform",
             "deb12_amd64", "--workspace", f"{d}/ws"] + extra)
    took = time.monotonic() - start
    logs = {c["configuration"]: open(c["log"]).read() for c in json.loads(r.stdout)}
    return took, logs

def best(extra):
    runs = [build(extra) for _ in range(3)]
    return min(runs, key=lambda x: x[0])

host, _ = best([])
rooted, logs = best(["--root", f"deb12_amd64={root}"])
print(f"fixture release for deb12_amd64, 6 components, --jobs 4, best of 3")
print(f"  on the host:        {host:6.2f} s")
print(f"  in a root:          {rooted:6.2f} s  ({rooted / host:.1f}x the host build)")
# The root's preparation, once per build: what the build prints before it starts.
start = time.monotonic()
d = f"{w}/prep"
shutil.rmtree(d, ignore_errors=True)
os.makedirs(d)
run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
r = run([py, "--data", f"{d}/data", "build", "--tree", tree, "--platform", "deb12_amd64",
         "--workspace", f"{d}/ws", "--targets", "clean", "--root", f"deb12_amd64={root}"])
ready = re.search(r"ready in ([0-9.]+) s", r.stderr.decode())
print(f"  root made ready once per build (unpack + apt-get update): {ready.group(1)} s")
print(f"  per component (layer / install / take down, seconds):")
num = lambda pat, text: float(m.group(1)) if (m := re.search(pat, text)) else 0.0
for c, text in sorted(logs.items()):
    layer = num(r"root: a fresh layer over the \S+ root in ([0-9.]+) s", text)
    inst = num(r"root: installed in ([0-9.]+) s", text)
    down = num(r"root: taken down in ([0-9.]+) s", text)
    what = re.search(r"root: installing (.*) \(as root\)", text)
    print(f"    {c:28} {layer:5.2f} {inst:5.2f} {down:5.2f}  {what.group(1) if what else '(nothing to install)'}")
PY
