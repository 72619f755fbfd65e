#!/usr/bin/env bash
# Build farm overhead: a synthetic release built by `packyard agent`s pulling tasks from a
# server, against the same release built by `packyard build` on one machine.
#
#   docs/bench/farm.sh [COMPONENTS] [LAYERS] [QUEUED]   (defaults: 500, 10 and 10000)
#
# The release: COMPONENTS components in LAYERS layers; each component of a layer needs
# two of the layer below at build time (chosen at random, seeded). Every target does next
# to nothing: checkout makes the directory, install writes one small file (packing needs a
# non-empty prefix), so what is measured is the farm's own cost per task: claim (the
# server resolves the task for the agent), heartbeat, log, upload of the tarball and RPM,
# the build record, the report.
#
# For 1, 2 and 4 agents (one slot each) on this machine, into a fresh data directory each
# time: wall time from `submit` to the build's end. The reference: `packyard build --jobs
# N` of the same release into a fresh data directory (the same work per component, no
# server in between). Overhead per task = (farm - reference) / COMPONENTS with one agent.
# Then a queue of QUEUED claimable tasks (as many independent components, submitted
# once): the time of one claim through HTTP (curl's time_total, median of 20).
# Needs: python3, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-500}
LAYERS=${2:-10}
QUEUED=${3:-10000}

. docs/bench/common.sh
bench_setup farm.sh "python3 curl" python3 curl

python3 - "$PY" "$W" "$N" "$LAYERS" "$QUEUED" <<'PY'
import json, os, random, shutil, signal, subprocess, sys, time
py, w, n, layers, queued = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
random.seed(7)

def tree(root, count, deps_of):
    os.makedirs(root, exist_ok=True)
    children = ", ".join(f'"c{i}_R_1_0_0_1"' for i in range(count))
    with open(f"{root}/module.toml", "w") as f:
        f.write(f'''[module]
name = "farm"
kind = "project"
description = "Synthetic release"
license = "MIT"
vendor = "Bench"
[[configuration]]
name = "farm_R_1_0_0_1"
version = "1.0.0"
age = 1
children = [{children}]
[configuration.properties]
"package.maintainer" = "Bench <bench@example.org>"
''')
    for i in range(count):
        d = f"{root}/c{i}"
        os.makedirs(d, exist_ok=True)
        deps = "".join(f'''
[[configuration.dependencies]]
module = "farm.c{j}"
scope = "build"
''' for j in deps_of(i))
        with open(f"{d}/module.toml", "w") as f:
            f.write(f'''[module]
name = "farm.c{i}"
kind = "component"
description = "Synthetic component {i}"
package_name = "farm-c{i}"
[[configuration]]
name = "c{i}_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1"
{deps}
[configuration.commands]
checkout = "mkdir -p ${{moduleName}}"
install = "mkdir -p ${{prefix}}/usr/share/farm && echo {i} > ${{prefix}}/usr/share/farm/c{i}"
''')

per = max(1, n // layers)
def layered(i):
    layer = i // per
    if layer == 0:
        return []
    below = range((layer - 1) * per, layer * per)
    return sorted(random.sample(list(below), min(2, len(below))))
edges = {i: layered(i) for i in range(n)}
tree(f"{w}/tree", n, lambda i: edges[i])

def run(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args[:5])} failed: {r.stderr.decode()[-2000:]}")
    return r.stdout

def fresh(name):
    d = f"{w}/{name}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
    return d

def reference(jobs):
    d = fresh(f"local{jobs}")
    start = time.perf_counter()
    run([py, "--json", "--data", f"{d}/data", "build", "--tree", f"{w}/tree", "--platform",
         "el9_x86_64", "--workspace", f"{d}/ws", "--jobs", str(jobs)])
    return time.perf_counter() - start

def serve(d, tree_dir):
    tok = json.loads(run([py, "--json", "--data", f"{d}/data", "token", "create", "--role", "builder"]))["token"]
    srv = subprocess.Popen([py, "--data", f"{d}/data", "serve", "--listen", "127.0.0.1:0",
                            "--tree", tree_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            info = json.load(open(f"{d}/data/server.json"))
            if info["pid"] == srv.pid:
                return srv, info["url"], tok
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    sys.exit("the server did not start")

def farm(agents):
    d = fresh(f"farm{agents}")
    srv, url, tok = serve(d, f"{w}/tree")
    procs = [subprocess.Popen([py, "--server", url, "--token", tok, "agent", "--platforms",
                               "el9_x86_64", "--jobs", "1", "--workspace", f"{d}/ws{a}",
                               "--name", f"a{a}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for a in range(agents)]
    start = time.perf_counter()
    out = run([py, "--json", "--server", url, "--token", tok, "submit", "--platform", "el9_x86_64", "--wait"])
    took = time.perf_counter() - start
    view = json.loads(out)
    if view["state"] != "succeeded":
        sys.exit(f"the farm build ended {view['state']}: {view['counts']}")
    for p in procs + [srv]:
        p.send_signal(signal.SIGTERM)
    for p in procs + [srv]:
        p.wait()
    return took

print(f"== {n} components in {layers} layers, targets that do next to nothing")
rows = []
for k in (1, 2, 4):
    ref = reference(k)
    got = farm(k)
    rows.append((k, ref, got))
    print(f"  {k} agent(s) vs build --jobs {k}: {ref:7.2f} s | farm {got:7.2f} s -> ratio {ref / got:5.2f}")
k, ref, got = rows[0]
print(f"  overhead per task (one agent): {(got - ref) / n * 1000:.1f} ms")

# One claim against a long queue: QUEUED independent components, nothing claimed yet.
tree(f"{w}/wide", queued, lambda i: [])
d = fresh("queue")
srv, url, tok = serve(d, f"{w}/wide")
start = time.perf_counter()
run(["curl", "-sf", "-X", "POST", "-H", f"Authorization: Bearer {tok}", "-H", "Content-Type: application/json",
     "-d", '{"platforms": ["el9_x86_64"]}', "-o", "/dev/null", f"{url}/api/v1/builds"])
print(f"  submitting {queued} tasks: {time.perf_counter() - start:.2f} s")
times = []
for i in range(20):
    body = json.dumps({"agent": f"bench{i}", "platforms": ["el9_x86_64"], "workspace": f"{d}/ws"})
    t = run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-X", "POST",
             "-H", f"Authorization: Bearer {tok}", "-H", "Content-Type: application/json",
             "-d", body, f"{url}/api/v1/agents/claim"])
    times.append(float(t))
times.sort()
print(f"  one claim against {queued} queued tasks: median {times[len(times) // 2] * 1000:.1f} ms "
      f"(min {times[0] * 1000:.1f}, max {times[-1] * 1000:.1f})")
srv.send_signal(signal.SIGTERM)
srv.wait()
PY
