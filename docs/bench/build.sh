#!/usr/bin/env bash
# Build speed: the sample release (fixtures/trees/my-project, six components, two of them
# C programs) built from source and published, against the same work done by hand.
#
#   docs/bench/build.sh [PLATFORM]   (default el9_x86_64)
#
# The reference is what a build script would do without packyard build: for each
# component in build order, run its commands as `packyard show` resolves them (checkout,
# compile, install, test) one after the other, `packyard pack` its prefix, and at the end
# one `packyard publish` of everything. packyard build does more per component (a fresh
# checkout, the build key, staging its build dependencies, one publish and a build record
# per component, logs) and runs components in parallel. Then the same build again with
# nothing changed: every component cached. Wall time, best of 3, into fresh data
# directories and workspaces each time.
# Needs: python3, make, cc.
set -euo pipefail
cd "$(dirname "$0")/../.."
PLATFORM=${1:-el9_x86_64}

. docs/bench/common.sh
bench_setup build.sh "python3 make gcc" python3 make cc
TREE=$PWD/fixtures/trees/my-project

python3 - "$PY" "$TREE" "$PLATFORM" "$W" <<'PY'
import json, os, shutil, subprocess, sys, time
py, tree, platform, w = sys.argv[1:]

def run(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit(f"{args[:4]} failed: {r.stderr.decode()}{r.stdout.decode()[-2000:]}")
    return r.stdout

def fresh(name):
    d = f"{w}/{name}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
    return d

def by_hand():
    d = fresh("hand")
    ws = f"{d}/ws"
    os.makedirs(ws)
    demo = json.loads(run([py, "--json", "demo", "--tree", tree, "--platform", platform]))
    for c in demo["releases"][0]["configurations"]:
        name = c["configuration"]
        r = json.loads(run([py, "--json", "show", name, "--tree", tree, "--platform", platform,
                            "--workspace", ws]))
        module = r["module"]
        for cmd in r["commands"]:
            cwd = ws if cmd["target"] == "checkout" else f"{ws}/{module}"
            run(["sh", "-c", cmd["command"]], cwd=cwd)
        run([py, "pack", "--tree", tree, "--configuration", name, "--platform", platform,
             "--prefix", r["properties"]["prefix"]["value"], "--out", f"{d}/out"])
    run([py, "--data", f"{d}/data", "publish", "--repo", "nightly", f"{d}/out"])

def build(jobs, d=None):
    d = d or fresh(f"build{jobs}")
    out = json.loads(run([py, "--json", "--data", f"{d}/data", "build", "--tree", tree,
                          "--platform", platform, "--workspace", f"{d}/ws", "--jobs", str(jobs)]))
    return d, {c["result"] for c in out}

def best(f):
    b = None
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        t = time.perf_counter() - t0
        b = t if b is None else min(b, t)
    return b

hand = best(by_hand)
one = best(lambda: build(1))
four = best(lambda: build(4))
d, results = build(4)
assert results == {"built"}, results
cached_results = []
def again():
    cached_results.append(build(4, d)[1])
cached = best(again)
assert all(r == {"cached"} for r in cached_results), cached_results
print(f"{'by hand (commands, pack, one publish)':40} {hand:7.3f} s")
print(f"{'packyard build --jobs 1':40} {one:7.3f} s   {one / hand:5.2f}x by hand")
print(f"{'packyard build --jobs 4':40} {four:7.3f} s   {four / hand:5.2f}x by hand")
print(f"{'packyard build, nothing changed':40} {cached:7.3f} s   {cached / four:5.1%} of the first build")
PY
