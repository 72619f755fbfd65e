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
# the component's own seconds from `build --json` and the whole command's wall time,
# median of 3 runs each. Then the same in a second workspace on the same repository (the
# rest of the release cached there), and the component's own commands run by a shell
# with no packyard, from scratch and after the same change: the build tool's own ratio.
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

def by_hand(src, first_cmds, second_cmds, changed, env):
    """The component's own commands run by a shell in a copy of its tree: what its
    build tool alone costs, first from scratch, then after the same one-file change."""
    d = f"{w}/hand"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d, symlinks=True)
    def timed(cmds):
        start = time.monotonic()
        for c in cmds:
            subprocess.run(["sh", "-c", c], cwd=d, check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - start
    a = timed(first_cmds)
    with open(f"{d}/{changed}", "a") as f:
        f.write("/* a one-line change */\n" if changed.endswith(".c") else "# a one-line change\n")
    return a, timed(second_cmds)

def measure(name, tree, module, configuration, module_dir, changed, first_cmds, second_cmds):
    first, second, third, warm_first, warm_second, hand = [], [], [], [], [], []
    for n in range(3):
        d = f"{w}/run{abs(hash(name)) % 1000}-{n}"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        run([py, "--data", f"{d}/data", "repo", "create", "nightly", "--kind", "volatile"])
        def build(ws):
            start = time.monotonic()
            out = json.loads(run([py, "--json", "--data", f"{d}/data", "build", "--tree", tree,
                                  "--platform", "el9_x86_64", "--workspace", ws]))
            wall = time.monotonic() - start
            c = next(c for c in out if c["configuration"] == configuration)
            return c["seconds"], c["result"], wall
        def change(ws):
            with open(f"{ws}/{module_dir}/{changed}", "a") as f:
                f.write("/* a one-line change */\n" if changed.endswith(".c") else "# a one-line change\n")
        # A fresh workspace and repository: the first build builds the whole release.
        ws = f"{d}/ws"
        run([py, "develop", module, "--tree", tree, "--platform", "el9_x86_64", "--workspace", ws])
        s, r, x = build(ws); first.append((s, x))
        change(ws)
        s, r, x = build(ws); second.append((s, x)); assert r == "built", r
        s, r, x = build(ws); third.append((s, x)); assert r == "cached", r
        # A second workspace on the same repository: the rest of the release is cached,
        # so its first build is the component's (and the cache's answers).
        ws2 = f"{d}/ws2"
        run([py, "develop", module, "--tree", tree, "--platform", "el9_x86_64", "--workspace", ws2])
        s, r, x = build(ws2); warm_first.append((s, x))
        change(ws2)
        s, r, x = build(ws2); warm_second.append((s, x)); assert r == "built", r
        env = dict(os.environ, DESTDIR=f"{d}/hand-prefix")
        hand.append(by_hand(f"{ws}/{module_dir}", first_cmds, second_cmds, changed, env))
    med = lambda runs, i: statistics.median(r[i] for r in runs)
    line = lambda what, a, b, c=None: print(
        f"{name}, {what}: first {a:.3f} s, second after a one-file change {b:.3f} s "
        f"({100 * b / a:.0f} % of the first)" + (f", untouched {c:.3f} s" if c is not None else ""))
    line("the whole `packyard build`, fresh workspace and repository", med(first, 1), med(second, 1), med(third, 1))
    line("the component, fresh workspace and repository", med(first, 0), med(second, 0), med(third, 0))
    line("the whole `packyard build`, the rest of the release cached", med(warm_first, 1), med(warm_second, 1))
    line("the component, the rest of the release cached", med(warm_first, 0), med(warm_second, 0))
    line("its commands by hand (a shell, no packyard)", med(hand, 0), med(hand, 1))

greeting = "Hello from my-project.servers.web_server 2.5.1 (schema 3)"
measure("fixture web_server", fixture, "web_server", "web_server_R_2_5_1_1",
        "my-project.servers.web_server", "body.sh.in",
        ["make clean", f"./configure --prefix=/usr GREETING='{greeting}'", "make",
         'make install DESTDIR="$DESTDIR"', "make check"],
        ["make", 'make install DESTDIR="$DESTDIR"', "make check"])
tree, module, conf, mdir, changed = generated_tree(f"{w}/gen")
measure(f"generated C component, {files} files", tree, module, conf, mdir, changed,
        ["make clean 2>/dev/null; rm -f *.o big", "./configure", "make -j2", 'make install DESTDIR="$DESTDIR"'],
        ["make -j2", 'make install DESTDIR="$DESTDIR"'])
PY
