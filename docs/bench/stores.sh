#!/usr/bin/env bash
# Embedded stores on a cold publish's batch: sled (packyard's store today) against redb
# and fjall, the candidates to replace it (sled 0.34 is unmaintained).
#
#   docs/bench/stores.sh [ROUNDS] [N]      (defaults: 5 rounds of 2,000 rows)
#
# Each round, for each store in turn: a fresh store with one row made by one process
# (as `repo create`), then, after a `sync`, a second process opens it and writes N rows
# of a publish (2,300-byte values under sorted keys) in one batch made durable (sled:
# `apply_batch` + `flush`; redb: one write transaction committed with its default,
# immediate durability; fjall: one batch persisted with `SyncAll`); then a third process
# opens the store again and writes one row durably, as the next add-one publish would
# (a store that left work for later pays it here). Prints each round and the medians of
# the open, the batch in memory, the durable part, the batch process's wall time and the
# next process's open and write. The crate is `docs/bench/stores/`; set TMPDIR to run on
# another file system.
set -euo pipefail
cd "$(dirname "$0")/stores"
ROUNDS=${1:-5}
N=${2:-2000}
cargo build --release -q
B=$PWD/target/release/stores-bench
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for ((k = 1; k <= ROUNDS; k++)); do
  for e in sled redb fjall; do
    d="$W/$e$k"
    "$B" "$e" "$d" create >/dev/null
    sync
    t0=$(date +%s%N)
    line=$("$B" "$e" "$d" batch "$N")
    t1=$(date +%s%N)
    next=$("$B" "$e" "$d" create)
    echo "$line, process $(( (t1 - t0) / 1000 )) us; next: $next"
  done
done | tee "$W/out"
python3 - "$W/out" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) batch: rows made [\d.]+ ms, open ([\d.]+) ms, apply ([\d.]+) ms, durable ([\d.]+) ms, total [\d.]+ ms, process (\d+) us; next: .* total ([\d.]+) ms", line)
    if m:
        rows.setdefault(m.group(1), []).append([float(m.group(2)), float(m.group(3)), float(m.group(4)), int(m.group(5)) / 1000, float(m.group(6))])
print("medians (ms):       open   batch  durable  process  next open+write")
for e, r in rows.items():
    med = [statistics.median(c) for c in zip(*r)]
    print(f"  {e:6}         {med[0]:7.1f} {med[1]:7.1f} {med[2]:8.1f} {med[3]:8.1f} {med[4]:10.1f}")
PY
