#!/usr/bin/env bash
# Development builds (issue 21): the second build of a development checkout after a
# one-file change, against its first build (which configures and makes everything).
#
#   docs/bench/develop.sh [FILES]     (default 200)
#
# Two components: the sample tree's web server (fixtures/trees/my-project, `packyard
# develop web_server`: its parts are made by sed, so a build is mostly packyard's own
# work — staging, packing), and a generated C component of FILES source files with a
# configure step that probes the compiler (the shape of an autoconf project), where the
# build tool's work dominates. Per component: the first build, then the second after
# appending a comment to one source file, then a third with nothing changed (cached);
# the component's own seconds from `build --json`, median of 3 runs each.
# Needs: make, cc.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:-200}

. docs/bench/common.sh
bench_setup develop.sh "make gcc" make cc

python3 - "$PY" "$PWD/fixtures/trees/my-project" "$W" "$FILES" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time
py, fixture, w, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def run(args, cwd=None):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    if r.returncode != 0:
        sys.exit(f"{args[:4]} failed: {r.stderr.decode()}{r.stdout.decode()[-2000:]}")
    return r.stdout

def generated_tree(d):
    """A project with one C component of `files` files and a probing configure."""
    src = f"{d}/src/big"
    os.makedirs(src)
    for i in range(files):
        with open(f"{src}/f{i}.c", "w") as f:
            body = "".join(f"  x = x * {j + 3} + {i};\n" for j in range(200))
            f.write(f"int f{i}(int x) {{\n{body}  return x;\n}}\n")
    with open(f"{src}/main.c", "w") as f:
        f.write("".join(f"int f{i}(int);\n" for i in range(files)))
        f.write("int main(void) { int x = 1;\n" + "".join(f" x = f{i}(x);\n" for i in range(files)) + " return x == 42; }\n")
    with open(f"{src}/configure", "w") as f:
        # Probes as autoconf does: a compile per check.
        f.write("#!/bin/sh\nset -e\nfor i in 1 2 3 4 5 6 7 8; do echo 'int main(void){return 0;}' > conftest.c; cc -o conftest conftest.c; done\nrm -f conftest conftest.c\necho 'CFLAGS = -O2' > config.mk\n")
    os.chmod(f"{src}/configure", 0o755)
    objs = " ".join(f"f{i}.o" for i in range(files))
    with open(f"{src}/Makefile", "w") as f:
        f.write(f"-include config.mk\nOBJS = {objs} main.o\nbig: $(OBJS)\n\tcc -o big $(OBJS)\n%.o: %.c\n\tcc $(CFLAGS) -c $<\ninstall: big\n\tinstall -D -m 755 big $(DESTDIR)/usr/bin/big\n")
    tree = f"{d}/tree"
    os.makedirs(f"{tree}/big")
    with open(f"{tree}/module.toml", "w") as f:
        f.write('[module]\nname = "dev"\nkind = "project"\ndescription = "Bench"\nlicense = "MIT"\nvendor = "Bench"\n'
                '[[configuration]]\nname = "dev_R_1_0_0_1"\nversion = "1.0.0"\nage = 1\nchildren = ["big_R_1_0_0_1"]\n'
                '[configuration.properties]\n"package.maintainer" = "Bench <bench@example.org>"\n')
    with open(f"{tree}/big/module.toml", "w") as f:
        f.write('[module]\nname = "dev.big"\nkind = "component"\ndescription = "Many C files"\n'
                '[[configuration]]\nname = "big_R_1_0_0_1"\nversion = "1.0.0"\nage = 1\ntag = "v1.0.0"\n'
                f'[configuration.commands]\ncheckout = "cp -R {src} ${{moduleName}}"\n'
                'configure = "./configure"\ncompile = "make -j2"\ninstall = "make install DESTDIR=${prefix}"\n')
    return tree, "big", "big_R_1_0_0_1", "dev.big", "f0.c"

def measure(name, tree, module, configuration, module_dir, changed):
    first, second, third = [], [], []
    for n in range(3):
        d = f"{w}/run{abs(hash(name)) % 1000}-{n}"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
        ws = f"{d}/ws"
        run([py, "develop", module, "--tree", tree, "--platform", "el9_x86_64", "--workspace", ws])
        def build():
            start = time.monotonic()
            out = json.loads(run([py, "--json", "--data", f"{d}/data", "build", "--tree", tree,
                                  "--platform", "el9_x86_64", "--workspace", ws]))
            wall = time.monotonic() - start
            c = next(c for c in out if c["configuration"] == configuration)
            return c["seconds"], c["result"], wall
        s, r, x = build(); first.append((s, x))
        with open(f"{ws}/{module_dir}/{changed}", "a") as f:
            f.write("/* a one-line change */\n" if changed.endswith(".c") else "# a one-line change\n")
        s, r, x = build(); second.append((s, x)); assert r == "built", r
        s, r, x = build(); third.append((s, x)); assert r == "cached", r
    med = lambda runs, i: statistics.median(r[i] for r in runs)
    for i, what in [(0, "the component"), (1, "the whole `packyard build`")]:
        a, b, c = med(first, i), med(second, i), med(third, i)
        print(f"{name}, {what}: first {a:.3f} s, second after a one-file change {b:.3f} s "
              f"({100 * b / a:.0f} % of the first), untouched {c:.3f} s")

measure("fixture web_server", fixture, "web_server", "web_server_R_2_5_1_1",
        "my-project.servers.web_server", "body.sh.in")
tree, module, conf, mdir, changed = generated_tree(f"{w}/gen")
measure(f"generated C component, {files} files", tree, module, conf, mdir, changed)
PY
