#!/usr/bin/env bash
# Resolver speed: `packyard resolve` on a synthetic release, against `tsort` on its edges.
#
#   docs/bench/resolve.sh [COMPONENTS] [EDGES_PER_COMPONENT]   (defaults: 10000 and 5)
#
# The release: one project configuration holding COMPONENTS components; component i
# depends on i-1 (so everything is reachable from the last) and on EDGES_PER_COMPONENT-1
# more of the lower-numbered ones, chosen at random (seeded) — COMPONENTS ×
# EDGES_PER_COMPONENT edges in all (the first few have fewer, the last more), all at
# build time, all dynamic (resolved through the release). One in ten also has an external
# OS dependency. `packyard resolve --json` plans the last component against an empty
# repository directory: every component is read, resolved, looked up in the repository
# (two stats each) and ordered. Wall time, best of 3, start-up and loading the tree
# included.
#
# The reference: coreutils `tsort` on the same edges — the build order alone, without
# reading a tree or resolving anything. It bounds from below what ordering costs.
# Needs: python3, tsort (coreutils).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
K=${2:-5}

. docs/bench/common.sh
bench_setup resolve.sh "python3 coreutils" python3 tsort

python3 - "$W/release" "$N" "$K" <<'PY'
import os, random, sys
root, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(42)
os.makedirs(root, exist_ok=True)
children = ", ".join(f'"c{i}_R_1_0_0_1"' for i in range(n))
with open(f"{root}/module.toml", "w") as f:
    f.write(f'''[module]
name = "big"
kind = "project"
description = "Synthetic release"
license = "MIT"
vendor = "Bench"
[[configuration]]
name = "big_R_1_0_0_1"
version = "1.0.0"
age = 1
children = [{children}]
''')
edges = 0
with open(f"{root}/../edges.txt", "w") as e:
    for i in range(n):
        # The first components have fewer to choose from; the last makes up for them, so
        # there are n*k edges in all.
        want = min(i, k) + (k * (k + 1) // 2 if i == n - 1 else 0)
        deps = set()
        if i > 0:
            deps.add(i - 1)
            deps.update(random.sample(range(i), min(i, k - 1)))
        while len(deps) < want:
            deps.add(random.randrange(i))
        d = f"{root}/c{i}"
        os.makedirs(d, exist_ok=True)
        text = f'''[module]
name = "big.c{i}"
kind = "component"
description = "component {i}"
package_name = "big-c{i}"
[[configuration]]
name = "c{i}_R_1_0_0_1"
version = "1.0.{i}"
age = 1
tag = "v1"
'''
        for j in sorted(deps):
            text += f'[[configuration.dependencies]]\nmodule = "big.c{j}"\nscope = "build"\n'
            e.write(f"c{i} c{j}\n")
            edges += 1
        if i % 10 == 0:
            text += '[[configuration.dependencies]]\nexternal = "bash"\nscope = "build"\n'
        text += '[configuration.commands]\ncheckout = "true"\n'
        with open(f"{d}/module.toml", "w") as f:
            f.write(text)
print(f"{n} components, {edges} dependency edges", file=sys.stderr)
PY

mkdir -p "$W/empty-repo"
LAST="c$((N - 1))_R_1_0_0_1"
best() { # best wall seconds of 3 runs of "$@"
  python3 - "$@" <<'PY'
import subprocess, sys, time
best = None
for _ in range(3):
    t0 = time.perf_counter()
    r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.exit(f"{sys.argv[1]} failed: {r.stderr.decode()}")
    best = t if best is None else min(best, t)
print(f"{best:.3f}")
PY
}

# Check the answer before timing it: all N components in the order, the last one last.
"$PY" --json resolve --tree "$W/release" --configuration "$LAST" --repo "$W/empty-repo" \
  --privileged no > "$W/plan.json" || true
python3 - "$W/plan.json" "$N" "$LAST" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
n, last = int(sys.argv[2]), sys.argv[3]
assert len(plan["order"]) == n and plan["order"][-1] == last, "wrong order"
assert len([d for d in plan["dependencies"] if d["type"] != "external"]) == n - 1
PY

ours=$(best "$PY" --json resolve --tree "$W/release" --configuration "$LAST" \
  --repo "$W/empty-repo" --privileged no)
ref=$(best tsort "$W/edges.txt")
printf "%-34s %8s s\n" "packyard resolve ($N components)" "$ours"
printf "%-34s %8s s\n" "tsort (order of the same edges)" "$ref"
python3 -c "print(f'ratio packyard/tsort: {$ours/$ref:.1f}x; under 1 s: {$ours < 1.0}')"
