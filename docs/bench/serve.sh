#!/usr/bin/env bash
# Serving speed: `packyard serve` against nginx serving the same repository tree on loopback.
#
#   docs/bench/serve.sh [SECONDS] [ROUNDS] [UPLOADS]    (defaults: 10 s a run, 3 rounds, 200)
#
# One volatile repository holding two published .tar.gz packages of random bytes, ~4 KB
# and ~10 MB. nginx (sendfile on, worker_processes auto) has the data directory's repos/
# as its root, so its /bench/<path> is packyard's /repos/bench/<path>; both are checked to
# send the file's bytes first. Compared like for like: nginx without an access log against
# packyard with PACKYARD_LOG=warn (no line a request), and nginx with its access log
# (buffered, `buffer=64k flush=1s`, the usual production setting) against packyard's
# default info logging (one line a request, to a file). Downloads: wrk -t2, -c32 for the
# 4 KB file and -c8 for the 10 MB one, each run after a 1 s warm-up; ROUNDS rounds taking
# turns between the servers, medians shown: requests/s, MiB/s and the server's CPU (all
# its processes and threads, % of one core). wrk shares the cores.
# Uploads: UPLOADS small RPMs of distinct names PUT to /api/v1/repos/bench/files/<path>
# with a builder token, 16 at a time (xargs -P 16), each answered once published:
# uploads/s (no reference: nginx does not publish packages).
# Needs: nginx (nginx-light or nginx), wrk, curl, python3; builds packyard in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
ROUNDS=${2:-3}
UPLOADS=${3:-200}
PATH=$PATH:/usr/sbin

. docs/bench/common.sh
bench_setup serve.sh "nginx-light wrk curl python3" nginx wrk curl python3
D=$W/data
PIDS=()
stop() { local p; for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap 'stop "${PIDS[@]}"; rm -rf "$W"' EXIT

# Packages: content sized so that the .tar.gz files are about 4096 bytes and 10 MiB.
pack() { # NAME PREFIX OUT FORMAT
  "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform el9_x86_64 \
    --formats "$4" --prefix "$2" --out "$3" -p "packageName=$1" >/dev/null
}
mkdir -p "$W/small/usr/share/bench" "$W/big/usr/share/bench" "$W/up/usr/share/bench"
head -c 3860 /dev/urandom > "$W/small/usr/share/bench/small.bin"
head -c $((10485760 - 3450)) /dev/urandom > "$W/big/usr/share/bench/big.bin"
pack bench-small "$W/small" "$W/out" tgz
pack bench-big "$W/big" "$W/out" tgz
"$PY" --data "$D" repo create bench --kind volatile >/dev/null
"$PY" --data "$D" publish --repo bench "$W/out" >/dev/null
SMALL=$(cd "$W/out" && find . -name 'bench-small-*' -printf '%P\n')
BIG=$(cd "$W/out" && find . -name 'bench-big-*' -printf '%P\n')
echo "up" > "$W/up/usr/share/bench/up.txt"
for ((i = 0; i < UPLOADS; i++)); do pack "up-$i" "$W/up" "$W/upl" rpm; done
# Before the server starts: the command line cannot open a data directory being served.
TOKEN=$("$PY" --data "$D" token create --role builder --name bench 2>/dev/null)

start_nginx() { # NAME ACCESS_LOG: sets NGINX (pid) and NURL
  nginx_start "$W/$1" "$D/repos" "$2"
  NURL=http://127.0.0.1:$NGINX_PORT/bench
}
start_nginx nolog off

ready() { # URL PID
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return
    kill -0 "$2" 2>/dev/null || { echo "server $2 stopped" >&2; exit 1; }
    sleep 0.1
  done
  echo "no answer from $1" >&2; exit 1
}
start_packyard() { # LOG_FILTER (empty: PACKYARD_LOG unset, the default; set but empty means errors only)
  PPORT=$(free_port)
  env -u PACKYARD_LOG ${1:+PACKYARD_LOG=$1} "$PY" --data "$D" serve --listen "127.0.0.1:$PPORT" >"$W/serve-${1:-info}.log" 2>&1 & PY_PID=$!
  PIDS+=("$PY_PID")
  PURL=http://127.0.0.1:$PPORT
  ready "$PURL/healthz" "$PY_PID"
}
ticks() { # PID: CPU clock ticks of the process (all threads) and its children
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
RESULTS=$W/results
measure() { # LABEL PID URL CONNECTIONS: one line "LABEL|req/s|transfer/s|CPU %" to $RESULTS
  local t0 t1 out
  wrk -t2 -c"$4" -d1s "$3" >/dev/null
  t0=$(ticks "$2")
  out=$(wrk -t2 -c"$4" -d"${SECS}s" "$3")
  t1=$(ticks "$2")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "$1: $out" >&2; fi
  echo "$1|$(awk '/^Requests\/sec/ {print $2}' <<<"$out")|$(awk '/^Transfer\/sec/ {print $2}' <<<"$out")|$(((t1 - t0) * 100 / $(getconf CLK_TCK) / SECS))" >> "$RESULTS"
}
rounds() { # NGINX_LABEL PACKYARD_LABEL
  local r size f c
  for ((r = 0; r < ROUNDS; r++)); do
    for size in 4KB 10MB; do
      if [ $size = 4KB ]; then f=$SMALL c=32; else f=$BIG c=8; fi
      measure "$1 $size" "$NGINX" "$NURL/$f" $c
      measure "$2 $size" "$PY_PID" "$PURL/repos/bench/$f" $c
    done
  done
}

ready "$NURL/$SMALL" "$NGINX"
start_packyard warn
for f in "$SMALL" "$BIG"; do
  want=$(sha256sum < "$D/repos/bench/$f")
  for u in "$NURL/$f" "$PURL/repos/bench/$f"; do
    [ "$(curl -sf "$u" | sha256sum)" = "$want" ] || { echo "$u: not the file's bytes" >&2; exit 1; }
  done
done
echo "files: $(stat -c %s "$D/repos/bench/$SMALL") and $(stat -c %s "$D/repos/bench/$BIG") bytes, same bytes from both servers; wrk ${SECS} s x $ROUNDS rounds; $(nproc) cores"
rounds nginx-nolog packyard-warn

t0=$(date +%s.%N)
(cd "$W/upl" && find . -name '*.rpm' -printf '%P\n') | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
  -T "$W/upl/{}" -H "Authorization: Bearer $TOKEN" "$PURL/api/v1/repos/bench/files/{}" > "$W/codes"
t1=$(date +%s.%N)
created=$(grep -c '^201$' "$W/codes" || true)
stop "$PY_PID"

stop "$NGINX"
start_nginx log "$W/log/access.log combined buffer=64k flush=1s"
ready "$NURL/$SMALL" "$NGINX"
start_packyard ""
rounds nginx-log packyard-info
stop "$PY_PID" "$NGINX"
echo "log lines written: $(wc -l < "$W/serve-warn.log") with PACKYARD_LOG=warn, $(wc -l < "$W/serve-info.log") with the default"

python3 - "$RESULTS" "$t0" "$t1" "$created" "$UPLOADS" <<'PY'
import statistics, sys
runs = {}
unit = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}
for line in open(sys.argv[1]):
    label, rps, tr, cpu = line.strip().split("|")
    n = tr.rstrip("BKMG")
    runs.setdefault(label, []).append((float(rps), float(n) * unit[tr[len(n):]], int(cpu)))
med = lambda label, i: statistics.median(r[i] for r in runs[label])
print(f"  {'server':20} {'req/s':>8} {'(min-max)':>15} {'MiB/s':>8} {'server CPU':>10}")
for label, rs in sorted(runs.items(), key=lambda kv: (kv[0].endswith("10MB"), kv[0])):
    lo, hi = min(r[0] for r in rs), max(r[0] for r in rs)
    print(f"  {label:20} {med(label, 0):8.0f} {f'({lo:.0f}-{hi:.0f})':>15} {med(label, 1):8.1f} {med(label, 2):9.0f}%")
for size in ("4KB", "10MB"):
    for v, n in (("warn", "nolog"), ("info", "log")):
        r = med(f"packyard-{v} {size}", 0) / med(f"nginx-{n} {size}", 0)
        what = "no access log" if n == "nolog" else "an access log line a request"
        print(f"  {size:4} packyard / nginx, both with {what}: {r:5.2f}x" + ("" if r >= 0.9 else "  (target >= 0.9x: missed)"))
t0, t1, created, n = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"  uploads: {created} of {n} created (201) in {t1 - t0:.2f} s -> {created / (t1 - t0):.1f} uploads/s, 16 in parallel")
PY
