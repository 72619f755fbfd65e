#!/usr/bin/env bash
# Packing speed: packyard against rpmbuild, dpkg-deb and tar on the same input.
#
#   docs/bench/pack.sh [SMALL_COUNT] [BIG_MB]      (defaults: 2000 components, 200 MB)
#
# (a) SMALL_COUNT small components (5 files of a few KB each): CPU time (user+sys, all
#     child processes) per package. The references write only their package; packyard
#     runs twice per platform: the package alone (`--formats rpm|deb`, like for like)
#     and its default, the tarball plus the package.
# (b) one BIG_MB mixed tree (text, random bytes, copies of system binaries): wall time
#     and output size. References: rpmbuild + dpkg-deb + tar, one after the other;
#     packyard: `pack` for an RPM platform (tarball + RPM) and for a DEB platform
#     (tarball + DEB). Same algorithm and level everywhere: gzip -9.
# Needs: rpm (rpmbuild), dpkg-dev, tar, gzip, python3; builds packyard in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
SMALL=${1:-2000}
BIG_MB=${2:-200}
LEVEL=9

. docs/bench/common.sh
bench_setup pack.sh "rpm dpkg-dev tar gzip python3" rpmbuild dpkg-deb tar gzip python3

# rpmbuild: files copied from the prefix in %install; post-install scripts (strip,
# debuginfo, bytecode) switched off so it does no more than packyard does.
rpm_spec() { # NAME PREFIX
  cat <<SPEC
Name: $1
Version: 1.0.0
Release: 1
Summary: Benchmark component
License: MIT
BuildArch: x86_64
%description
Benchmark component.
%install
mkdir -p %{buildroot}
cp -a $2/. %{buildroot}/
%files
/usr/share/$1
SPEC
}
RPMDEFS=(--define "_topdir $W/rpmbuild" --define "_binary_payload w${LEVEL}.gzdio"
  --define "__os_install_post %{nil}" --define "debug_package %{nil}"
  --define "_build_id_links none" --quiet)

deb_control() { # NAME DIR
  mkdir -p "$2/DEBIAN"
  cat > "$2/DEBIAN/control" <<CTL
Package: $1
Version: 1.0.0-1
Architecture: amd64
Maintainer: Bench <bench@example.org>
Description: Benchmark component
 Benchmark component.
CTL
}

# CPU of a loop = user+sys of its child processes, read from bash's `times`.
child_cpu() { # runs "$@" in a subshell, prints children's user+sys seconds
  ( "$@" >/dev/null 2>&1; times ) | tail -1 | python3 -c '
import sys,re
u,s=sys.stdin.read().split()[:2]
f=lambda x: int(re.match(r"(\d+)m",x).group(1))*60+float(re.search(r"m([\d.]+)s",x).group(1))
print(round(f(u)+f(s),3))'
}

echo "== (a) $SMALL small components, 5 files of 1-8 KB each"
python3 - "$W/small" "$SMALL" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
words = ["alpha","beta","gamma","delta","packyard","rpm","deb","config","value","server"]
for i in range(n):
    d = os.path.join(root, f"c{i}", "usr", "share", f"bench-{i}")
    os.makedirs(d)
    for j in range(5):
        size = rnd.randint(1024, 8192)
        text = " ".join(rnd.choice(words) for _ in range(size // 6))[:size]
        with open(os.path.join(d, f"file{j}.txt"), "w") as f:
            f.write(text)
PY

small_packyard() { # PLATFORM FORMATS
  for ((i = 0; i < SMALL; i++)); do
    "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform "$1" \
      --formats "$2" --prefix "$W/small/c$i" --out "$W/out-py-$1-$2" \
      -p "package.rpmName=bench-$i.rpm" -p "package.debName=bench-$i.deb" >/dev/null
  done
}
small_rpmbuild() {
  mkdir -p "$W/rpmbuild"
  for ((i = 0; i < SMALL; i++)); do
    rpm_spec "bench-$i" "$W/small/c$i" > "$W/bench-$i.spec"
    rpmbuild -bb "${RPMDEFS[@]}" "$W/bench-$i.spec"
  done
}
py_rpm=$(child_cpu small_packyard el9_x86_64 rpm)
py_tgz_rpm=$(child_cpu small_packyard el9_x86_64 tgz,rpm)
py_deb=$(child_cpu small_packyard deb12_amd64 deb)
py_tgz_deb=$(child_cpu small_packyard deb12_amd64 tgz,deb)
ref_rpm=$(child_cpu small_rpmbuild)
# dpkg-deb packs a directory holding DEBIAN/: prepare the copies first, untimed.
for ((i = 0; i < SMALL; i++)); do cp -a "$W/small/c$i" "$W/debsrc-$i"; deb_control "bench-$i" "$W/debsrc-$i"; done
small_dpkg_only() {
  mkdir -p "$W/out-deb"
  for ((i = 0; i < SMALL; i++)); do
    dpkg-deb --root-owner-group -Zgzip -z$LEVEL --build "$W/debsrc-$i" "$W/out-deb/bench-$i.deb"
  done
}
ref_deb=$(child_cpu small_dpkg_only)
python3 - "$SMALL" "$ref_rpm" "$py_rpm" "$py_tgz_rpm" "$ref_deb" "$py_deb" "$py_tgz_deb" <<'PY'
import sys
n = int(sys.argv[1]); ref_rpm, py_rpm, py_tgz_rpm, ref_deb, py_deb, py_tgz_deb = map(float, sys.argv[2:])
ms = lambda s: 1000 * s / n
row = lambda what, t, ref: print(f"  {what:34}: {ms(t):7.2f} ms CPU per package" + (f"  -> packyard uses {ref/t:5.1f}x less" if ref else ""))
row("rpmbuild (rpm)", ref_rpm, None)
row("packyard el9 (rpm)", py_rpm, ref_rpm)
row("packyard el9 (tar.gz + rpm)", py_tgz_rpm, ref_rpm)
row("dpkg-deb (deb)", ref_deb, None)
row("packyard deb12 (deb)", py_deb, ref_deb)
row("packyard deb12 (tar.gz + deb)", py_tgz_deb, ref_deb)
PY

echo "== (b) one ${BIG_MB} MB mixed tree"
python3 - "$W/big" "$BIG_MB" <<'PY'
import os, random, shutil, sys
root, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(2)
base = os.path.join(root, "usr", "share", "bench-big")
os.makedirs(base)
words = open("/usr/share/dict/words").read().split() if os.path.exists("/usr/share/dict/words") else \
    ["alpha","beta","gamma","delta","packyard","rpm","deb","config","value","server","client","index"]
target = mb << 20
written = 0; i = 0
bins = [os.path.join("/usr/bin", b) for b in sorted(os.listdir("/usr/bin"))]
bins = [b for b in bins if os.path.isfile(b) and not os.path.islink(b)]
while written < target:
    kind = i % 10
    d = os.path.join(base, f"d{i % 50}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"f{i}")
    if kind < 5:    # text: half of the files
        size = rnd.randint(2_000, 400_000)
        data = " ".join(rnd.choice(words) for _ in range(size // 6)).encode()[:size]
        open(p, "wb").write(data)
    elif kind < 7:  # incompressible
        size = rnd.randint(10_000, 1_000_000)
        open(p, "wb").write(rnd.randbytes(size))
    else:           # executables
        src = bins[i % len(bins)]
        shutil.copyfile(src, p)
        size = os.path.getsize(p)
    written += size; i += 1
print(f"  {i} files, {written / 1e6:.0f} MB")
PY

wall() { # prints wall seconds of "$@"
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  python3 -c "print(round($t1-$t0,3))"
}
big_rpmbuild() { rpm_spec bench-big "$W/big" > "$W/big.spec"; rpmbuild -bb "${RPMDEFS[@]}" "$W/big.spec"; }
cp -a "$W/big" "$W/bigdeb"; deb_control bench-big "$W/bigdeb"
big_dpkg() { dpkg-deb --root-owner-group -Zgzip -z$LEVEL --build "$W/bigdeb" "$W/big.deb"; }
big_tar() { tar --sort=name --owner=0 --group=0 --numeric-owner -C "$W/big" -cf - . | gzip -$LEVEL -n > "$W/big.tar.gz"; }
big_py() { "$PY" pack --tree "$W/tree" --configuration bench_R_1_0_0_1 --platform "$1" --prefix "$W/big" --out "$W/out-big-$1"; }
sync
t_rpm=$(wall big_rpmbuild)
t_deb=$(wall big_dpkg)
t_tar=$(wall big_tar)
t_py_rpm=$(wall big_py el9_x86_64)
t_py_deb=$(wall big_py deb12_amd64)
size() { stat -c %s "$1"; }
s_rpm=$(size "$(find "$W/rpmbuild/RPMS" -name 'bench-big*.rpm')")
s_deb=$(size "$W/big.deb"); s_tar=$(size "$W/big.tar.gz")
s_py_rpm=$(size "$(find "$W/out-big-el9_x86_64" -name '*.rpm')")
s_py_deb=$(size "$(find "$W/out-big-deb12_amd64" -name '*.deb')")
s_py_tgz=$(size "$(find "$W/out-big-el9_x86_64" -name '*.tar.gz')")
python3 - "$t_rpm" "$t_deb" "$t_tar" "$t_py_rpm" "$t_py_deb" "$s_rpm" "$s_deb" "$s_tar" "$s_py_rpm" "$s_py_deb" "$s_py_tgz" <<'PY'
import sys
t_rpm, t_deb, t_tar, t_py_rpm, t_py_deb = map(float, sys.argv[1:6])
s_rpm, s_deb, s_tar, s_py_rpm, s_py_deb, s_py_tgz = map(int, sys.argv[6:])
ref = t_rpm + t_deb + t_tar; py = t_py_rpm + t_py_deb
print(f"  rpmbuild {t_rpm:7.2f} s  {s_rpm/1e6:7.1f} MB | packyard rpm  {s_py_rpm/1e6:7.1f} MB")
print(f"  dpkg-deb {t_deb:7.2f} s  {s_deb/1e6:7.1f} MB | packyard deb  {s_py_deb/1e6:7.1f} MB")
print(f"  tar+gzip {t_tar:7.2f} s  {s_tar/1e6:7.1f} MB | packyard tgz  {s_py_tgz/1e6:7.1f} MB")
print(f"  references together {ref:7.2f} s; packyard el9 {t_py_rpm:.2f} s + deb12 {t_py_deb:.2f} s = {py:.2f} s"
      f" -> {py/ref:.2f}x the references' time")
PY
