#!/usr/bin/env bash
# Index speed: `packyard publish` against createrepo_c and apt-ftparchive on the same packages.
#
#   docs/bench/index.sh [N] [BIG_N]      (defaults: 2000 and 20000 packages; BIG_N=0: N only)
#
# For N and BIG_N packages of each format (generated with `packyard pack`, one small
# package per name):
#   cold     publish all RPMs into an empty repository   vs  createrepo_c --workers 2
#            publish all DEBs into an empty repository   vs  apt-ftparchive packages +
#                                                            gzip + xz + release
#   add-one  publish one more RPM                        vs  createrepo_c --update
#            publish one more DEB                        vs  apt-ftparchive again
#            and the same through a running `packyard serve` (curl -T of one package,
#            answered once published; curl's time_total, without curl's start-up; the
#            server has taken one upload before)
# Wall times; each add-one is timed ADD times (default 5, one new package each) and the
# median is shown, as single runs of a few milliseconds vary by tens of percent; the cold
# RPM steps run WARMUP times (default 1, shown, not counted), then ROUNDS times (default
# 3), and the medians of those are shown.
# packyard also copies each file into the repository and syncs it to disk; the references
# index files already in place, so they are shown alone, with the copy (`cp`) an admin
# runs first, and with that copy and a `sync` (the same durable end state). Indexes
# unsigned on both sides. Set TMPDIR to run on another file system (a tmpfs: no disk).
# Needs: createrepo_c (createrepo-c), apt-ftparchive (apt-utils), gzip, xz, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
BIG_N=${2:-20000}
ADD=${ADD:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}

. docs/bench/common.sh
bench_setup index.sh "createrepo-c apt-utils xz-utils python3" createrepo_c apt-ftparchive gzip xz python3
mkdir -p "$W/prefix/usr/share/bench"
for j in 1 2 3; do echo "file $j of a benchmark package" > "$W/prefix/usr/share/bench/f$j.txt"; done

gen() { # FROM TO PLATFORM FORMAT OUT: packages bench-FROM..bench-(TO-1)
  local i
  for ((i = $1; i < $2; i++)); do
    "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform "$3" --formats "$4" \
      --prefix "$W/prefix" --out "$5" -p "packageName=bench-$i" >/dev/null
  done
}

secs() { # prints wall seconds of "$@"
  local t0 t1
  # packyard syncs what it writes (one syncfs), which would also flush what earlier steps
  # left dirty: every timed step starts from a clean file system.
  sync
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  python3 -c "print(round($t1-$t0,4))"
}

settle() { # waits out the file system's memory of recent deletions
  # ext4 without a journal does not reuse an inode within 30 s (dirty_expire_centisecs)
  # of its deletion (`recently_deleted`, checked inode by inode on every allocation):
  # right after mass deletions — packing stages and removes files, a test suite removes
  # tens of thousands — creating files was up to 10x slower here (perf: 50-60 % of a cold
  # publish in `recently_deleted`), for `cp` and packyard alike, whichever ran first.
  sync
  sleep $(( $(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 3000) / 100 + 6 ))
}

median() { # the median of the numbers given
  python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "$@"
}

one() { # DIR: the one package file under DIR
  find "$1" -type f
}

apt_index() { # DIR: what a repository admin runs to index a pool with apt-ftparchive
  (cd "$1" && mkdir -p dists/s/main/binary-amd64 \
    && apt-ftparchive packages pool > dists/s/main/binary-amd64/Packages \
    && gzip -9 -k -f dists/s/main/binary-amd64/Packages \
    && xz -k -f dists/s/main/binary-amd64/Packages \
    && apt-ftparchive -o APT::FTPArchive::Release::Suite=s release dists/s > "$1/Release.tmp" \
    && mv "$1/Release.tmp" dists/s/Release)
}

put_each() { # DATA WARM-UP-TREE TREE...: median seconds of `curl -T` of each TREE's package
  local tok port pid url f key t times=()
  tok=$("$PY" --data "$1" token create --role builder 2>/dev/null)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PACKYARD_LOG=warn "$PY" --data "$1" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 & pid=$!
  url=http://127.0.0.1:$port
  until curl -sf -o /dev/null "$url/healthz"; do sleep 0.05; done
  shift
  for f in "$@"; do
    key=$(cd "$f" && find . -type f -printf '%P\n')
    sync
    # curl's own measure, from connecting to the answer: starting the curl process costs
    # ~9 ms here, more than the request.
    t=$(curl -sf -o /dev/null -w '%{time_total}' -T "$f/$key" \
      -H "Authorization: Bearer $tok" "$url/api/v1/repos/bench/files/$key") \
      || { echo "upload of $key failed" >&2; kill "$pid"; exit 1; }
    times+=("$t")
  done
  kill "$pid"; wait "$pid" || true
  median "${times[@]:1}"
}

run() { # COUNT
  local n=$1 g="$W/gen$1" i
  echo "== $n packages of each format"
  gen 0 "$n" el9_x86_64 rpm "$g/rpm"
  gen 0 "$n" deb12_amd64 deb "$g/deb"
  # One directory per added package: ADD for the command line and the references, one
  # to warm the server up and ADD more for it.
  for ((i = n; i < n + 2 * ADD + 1; i++)); do
    gen "$i" $((i + 1)) el9_x86_64 rpm "$g/rpm-add/$i"
    gen "$i" $((i + 1)) deb12_amd64 deb "$g/deb-add/$i"
  done
  settle
  local cli=() srv=()
  for ((i = n; i < n + ADD; i++)); do cli+=("$i"); done
  for ((i = n + ADD; i < n + 2 * ADD + 1; i++)); do srv+=("$i"); done

  # createrepo_c indexes a directory of RPMs in place. The cold steps run ROUNDS times,
  # taking turns, each into fresh directories (none removed: see settle), and the medians
  # are shown: single runs of a few hundred milliseconds varied by half on a virtual
  # machine. Add-one continues from the first round's directories.
  local cp_rpm cr_cold cr_add py_rpm_cold py_rpm_add py_rpm_put cr_synced t=() k
  local cps=() crs=() syncs=() pys=() warm=""
  # WARMUP rounds first, shown but not counted: right after the packages are made, a
  # first round was up to 2.5x slower for cp and 1.3x for createrepo_c and packyard (the
  # file system still settling), though not every time.
  for ((k = 1 - WARMUP; k <= ROUNDS; k++)); do
    mkdir -p "$g/cr$k" "$g/cr-synced$k"
    cps+=("$(secs find "$g/rpm" -name '*.rpm' -exec cp -t "$g/cr$k/" {} +)")
    crs+=("$(secs createrepo_c --workers 2 --no-database "$g/cr$k")")
    # The same, made durable as packyard makes a publish (it syncs the files, its store
    # and the index before it answers): copy, index and sync, timed as one step.
    syncs+=("$(secs sh -c 'find "$1" -name "*.rpm" -exec cp -t "$2/" {} + \
      && createrepo_c --workers 2 --no-database "$2" && sync' sh "$g/rpm" "$g/cr-synced$k")")
    "$PY" --data "$g/data-rpm$k" repo create bench --kind volatile >/dev/null
    pys+=("$(secs "$PY" --data "$g/data-rpm$k" publish --repo bench "$g/rpm")")
    if ((k <= 0)); then
      warm+=" cp ${cps[-1]}, createrepo_c ${crs[-1]}, cp+createrepo_c+sync ${syncs[-1]}, packyard ${pys[-1]};"
      cps=() crs=() syncs=() pys=()
    fi
  done
  cp_rpm=$(median "${cps[@]}")
  cr_cold=$(median "${crs[@]}")
  cr_synced=$(median "${syncs[@]}")
  py_rpm_cold=$(median "${pys[@]}")
  if [ -n "$warm" ]; then echo "  cold RPM warm-up (s, not counted):$warm"; fi
  echo "  cold RPM rounds (s): cp ${cps[*]} | createrepo_c ${crs[*]} | cp+createrepo_c+sync ${syncs[*]} | packyard ${pys[*]}"
  for i in "${cli[@]}"; do
    cp "$(one "$g/rpm-add/$i")" "$g/cr1/"
    t+=("$(secs createrepo_c --workers 2 --no-database --update "$g/cr1")")
  done
  cr_add=$(median "${t[@]}")

  t=()
  for i in "${cli[@]}"; do t+=("$(secs "$PY" --data "$g/data-rpm1" publish --repo bench "$g/rpm-add/$i")"); done
  py_rpm_add=$(median "${t[@]}")
  py_rpm_put=$(put_each "$g/data-rpm1" "${srv[@]/#/$g/rpm-add/}")

  # apt-ftparchive: a pool of DEBs, then Packages, .gz, .xz and Release.
  mkdir -p "$g/apt/pool"
  local cp_deb af_cold af_add py_deb_cold py_deb_add py_deb_put
  cp_deb=$(secs find "$g/deb" -name '*.deb' -exec cp -t "$g/apt/pool/" {} +)
  af_cold=$(secs apt_index "$g/apt")
  t=()
  for i in "${cli[@]}"; do
    cp "$(one "$g/deb-add/$i")" "$g/apt/pool/"
    t+=("$(secs apt_index "$g/apt")")
  done
  af_add=$(median "${t[@]}")

  "$PY" --data "$g/data-deb" repo create bench --kind volatile >/dev/null
  py_deb_cold=$(secs "$PY" --data "$g/data-deb" publish --repo bench "$g/deb")
  t=()
  for i in "${cli[@]}"; do t+=("$(secs "$PY" --data "$g/data-deb" publish --repo bench "$g/deb-add/$i")"); done
  py_deb_add=$(median "${t[@]}")
  py_deb_put=$(put_each "$g/data-deb" "${srv[@]/#/$g/deb-add/}")

  python3 - "$n" "$cp_rpm" "$cr_cold" "$py_rpm_cold" "$cr_add" "$py_rpm_add" "$cp_deb" "$af_cold" "$py_deb_cold" "$af_add" "$py_deb_add" "$py_rpm_put" "$py_deb_put" "$cr_synced" <<'PY'
import sys
n = sys.argv[1]
cp_rpm, cr_cold, py_rpm_cold, cr_add, py_rpm_add, cp_deb, af_cold, py_deb_cold, af_add, py_deb_add, py_rpm_put, py_deb_put, cr_synced = map(float, sys.argv[2:])
def row(what, ref_name, ref, py):
    print(f"  {what:8} {ref_name:34} {ref:8.3f} s | packyard {py:8.3f} s -> ratio {ref / py:6.2f}")
row("cold", "createrepo_c --workers 2", cr_cold, py_rpm_cold)
row("cold", "cp + createrepo_c --workers 2", cp_rpm + cr_cold, py_rpm_cold)
row("cold", "cp + createrepo_c + sync", cr_synced, py_rpm_cold)
row("add-one", "createrepo_c --update", cr_add, py_rpm_add)
row("add-one", "createrepo_c --update (vs serve PUT)", cr_add, py_rpm_put)
row("cold", "apt-ftparchive + gzip/xz", af_cold, py_deb_cold)
row("cold", "cp + apt-ftparchive + gzip/xz", cp_deb + af_cold, py_deb_cold)
row("add-one", "apt-ftparchive + gzip/xz", af_add, py_deb_add)
row("add-one", "apt-ftparchive (vs serve PUT)", af_add, py_deb_put)
PY
  # Not removed before the next run: on ext4 without a journal, inodes freed in the last
  # minute make creating new files far slower, which would time the file system.
}

run "$N"
# BIG_N=0 skips the second size.
if [ "$BIG_N" -gt 0 ]; then run "$BIG_N"; fi
