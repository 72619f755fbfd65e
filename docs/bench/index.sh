#!/usr/bin/env bash
# Index speed: `packyard publish` against createrepo_c and apt-ftparchive on the same packages.
#
#   docs/bench/index.sh [N] [BIG_N]      (defaults: 2000 and 20000 packages)
#
# For N and BIG_N packages of each format (generated with `packyard pack`, one small
# package per name):
#   cold     publish all RPMs into an empty repository   vs  createrepo_c --workers 2
#            publish all DEBs into an empty repository   vs  apt-ftparchive packages +
#                                                            gzip + xz + release
#   add-one  publish one more RPM                        vs  createrepo_c --update
#            publish one more DEB                        vs  apt-ftparchive again
#            and the same through a running `packyard serve` (curl -T of one package,
#            answered once published; the server has taken one upload before)
# Wall times. packyard also copies each file into the repository and syncs it to disk;
# the references index files already in place, so they are shown alone and with the
# copy (`cp`) an admin runs first. Indexes unsigned on both sides.
# Needs: createrepo_c (createrepo-c), apt-ftparchive (apt-utils), gzip, xz, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
BIG_N=${2:-20000}

. docs/bench/common.sh
bench_setup index.sh "createrepo-c apt-utils xz-utils python3" createrepo_c apt-ftparchive gzip xz python3
mkdir -p "$W/prefix/usr/share/bench"
for j in 1 2 3; do echo "file $j of a benchmark package" > "$W/prefix/usr/share/bench/f$j.txt"; done

gen() { # FROM TO PLATFORM FORMAT OUT: packages bench-FROM..bench-(TO-1)
  for ((i = $1; i < $2; i++)); do
    "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform "$3" --formats "$4" \
      --prefix "$W/prefix" --out "$5" -p "packageName=bench-$i" >/dev/null
  done
}

secs() { # prints wall seconds of "$@"
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  python3 -c "print(round($t1-$t0,3))"
}

apt_index() { # DIR: what a repository admin runs to index a pool with apt-ftparchive
  (cd "$1" && mkdir -p dists/s/main/binary-amd64 \
    && apt-ftparchive packages pool > dists/s/main/binary-amd64/Packages \
    && gzip -9 -k -f dists/s/main/binary-amd64/Packages \
    && xz -k -f dists/s/main/binary-amd64/Packages \
    && apt-ftparchive -o APT::FTPArchive::Release::Suite=s release dists/s > "$1/Release.tmp" \
    && mv "$1/Release.tmp" dists/s/Release)
}

put_one() { # DATA WARM-UP-TREE TREE: seconds for `curl -T` of the package in TREE to a server
  local tok port pid url t f key t0 t1
  tok=$("$PY" --data "$1" token create --role builder 2>/dev/null)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PACKYARD_LOG=warn "$PY" --data "$1" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 & pid=$!
  url=http://127.0.0.1:$port
  until curl -sf -o /dev/null "$url/healthz"; do sleep 0.05; done
  for f in "$2" "$3"; do
    key=$(cd "$f" && find . -type f -printf '%P\n')
    t0=$(date +%s.%N)
    curl -sf -o /dev/null -T "$f/$key" -H "Authorization: Bearer $tok" "$url/api/v1/repos/bench/files/$key" \
      || { echo "upload of $key failed" >&2; kill "$pid"; exit 1; }
    t1=$(date +%s.%N)
    t=$(python3 -c "print(round($t1-$t0,3))")
  done
  kill "$pid"; wait "$pid" || true
  echo "$t"
}

run() { # COUNT
  local n=$1 g="$W/gen$1"
  echo "== $n packages of each format"
  gen 0 "$n" el9_x86_64 rpm "$g/rpm"
  gen 0 "$n" deb12_amd64 deb "$g/deb"
  gen "$n" $((n + 1)) el9_x86_64 rpm "$g/rpm-one"
  gen "$n" $((n + 1)) deb12_amd64 deb "$g/deb-one"
  gen $((n + 1)) $((n + 2)) el9_x86_64 rpm "$g/rpm-two"
  gen $((n + 2)) $((n + 3)) el9_x86_64 rpm "$g/rpm-three"
  gen $((n + 1)) $((n + 2)) deb12_amd64 deb "$g/deb-two"
  gen $((n + 2)) $((n + 3)) deb12_amd64 deb "$g/deb-three"

  # createrepo_c indexes a directory of RPMs in place.
  mkdir -p "$g/cr"
  local cp_rpm cr_cold cr_add py_rpm_cold py_rpm_add
  cp_rpm=$(secs find "$g/rpm" -name '*.rpm' -exec cp -t "$g/cr/" {} +)
  cr_cold=$(secs createrepo_c --workers 2 --no-database "$g/cr")
  find "$g/rpm-one" -name '*.rpm' -exec cp {} "$g/cr/" \;
  cr_add=$(secs createrepo_c --workers 2 --no-database --update "$g/cr")

  "$PY" --data "$g/data-rpm" repo create bench --kind volatile >/dev/null
  py_rpm_cold=$(secs "$PY" --data "$g/data-rpm" publish --repo bench "$g/rpm")
  py_rpm_add=$(secs "$PY" --data "$g/data-rpm" publish --repo bench "$g/rpm-one")
  py_rpm_put=$(put_one "$g/data-rpm" "$g/rpm-two" "$g/rpm-three")

  # apt-ftparchive: a pool of DEBs, then Packages, .gz, .xz and Release.
  mkdir -p "$g/apt/pool"
  local cp_deb af_cold af_add py_deb_cold py_deb_add
  cp_deb=$(secs find "$g/deb" -name '*.deb' -exec cp -t "$g/apt/pool/" {} +)
  af_cold=$(secs apt_index "$g/apt")
  find "$g/deb-one" -name '*.deb' -exec cp {} "$g/apt/pool/" \;
  af_add=$(secs apt_index "$g/apt")

  "$PY" --data "$g/data-deb" repo create bench --kind volatile >/dev/null
  py_deb_cold=$(secs "$PY" --data "$g/data-deb" publish --repo bench "$g/deb")
  py_deb_add=$(secs "$PY" --data "$g/data-deb" publish --repo bench "$g/deb-one")
  py_deb_put=$(put_one "$g/data-deb" "$g/deb-two" "$g/deb-three")

  python3 - "$n" "$cp_rpm" "$cr_cold" "$py_rpm_cold" "$cr_add" "$py_rpm_add" "$cp_deb" "$af_cold" "$py_deb_cold" "$af_add" "$py_deb_add" "$py_rpm_put" "$py_deb_put" <<'PY'
import sys
n = sys.argv[1]
cp_rpm, cr_cold, py_rpm_cold, cr_add, py_rpm_add, cp_deb, af_cold, py_deb_cold, af_add, py_deb_add, py_rpm_put, py_deb_put = map(float, sys.argv[2:])
def row(what, ref_name, ref, py):
    print(f"  {what:8} {ref_name:34} {ref:8.3f} s | packyard {py:8.3f} s -> ratio {ref / py:6.2f}")
row("cold", "createrepo_c --workers 2", cr_cold, py_rpm_cold)
row("cold", "cp + createrepo_c --workers 2", cp_rpm + cr_cold, py_rpm_cold)
row("add-one", "createrepo_c --update", cr_add, py_rpm_add)
row("add-one", "createrepo_c --update (vs serve PUT)", cr_add, py_rpm_put)
row("cold", "apt-ftparchive + gzip/xz", af_cold, py_deb_cold)
row("cold", "cp + apt-ftparchive + gzip/xz", cp_deb + af_cold, py_deb_cold)
row("add-one", "apt-ftparchive + gzip/xz", af_add, py_deb_add)
row("add-one", "apt-ftparchive (vs serve PUT)", af_add, py_deb_put)
PY
  rm -rf "$g"
}

run "$N"
run "$BIG_N"
