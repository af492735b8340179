#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two builds of dism-nbd-server side by side (A/B), for "no regression"
# claims after a change: the same 2 GiB dynamic VHDX as run-bench.sh, served
# read-only by each server in turn, ROUNDS rounds alternating A and B so
# that drift on the machine hits both alike.  Per round and server: one
# whole-disk nbdcopy (4 connections, page cache warm) and FIO_SECONDS of
# 4 KiB random reads (fio's nbd engine, iodepth 16).  Prints every round and
# the medians, and B/A.  Not a test: no assertions.
#   tests/bench/run-ab-serving.sh OLD/dism-nbd-server NEW/dism-nbd-server
set -euo pipefail
A=$1 B=$2
ROUNDS=${AB_ROUNDS:-5}
FIO_SECONDS=${AB_FIO_SECONDS:-5}
W=$(mktemp -d /var/tmp/dism-ab.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$W"' EXIT
for t in qemu-img nbdcopy fio bc; do
  command -v $t >/dev/null || { echo "ab: $t missing: run 'make deps' as root" >&2; exit 1; }
done

source "$(dirname "$0")/serving-disk.sh"
make_serving_disk "$W"
rm -f "$W/disk.raw"

one() {  # one SERVER: prints "MiB/s IOPS"
  local sock=$W/s.sock t0 t1 iops
  rm -f "$sock"
  "$1" --readonly --unix "$sock" "$W/disk.vhdx" 2>/dev/null & PID=$!
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  nbdcopy --connections=4 "nbd+unix:///?socket=$sock" null:
  t0=$(date +%s.%N)
  nbdcopy --connections=4 "nbd+unix:///?socket=$sock" null:
  t1=$(date +%s.%N)
  iops=$(fio --name=rr --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw=randread \
           --bs=4k --iodepth=16 --runtime="$FIO_SECONDS" --time_based --output-format=json 2>/dev/null |
         /usr/bin/python3 -c 'import json,sys; t=sys.stdin.read(); print(round(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))')
  kill $PID; wait $PID 2>/dev/null || true; PID=
  printf '%.0f %s\n' "$(echo "2048 / ($t1 - $t0)" | bc -l)" "$iops"
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

: > "$W/a"; : > "$W/b"
printf '%-6s %12s %12s %12s %12s\n' round "A MiB/s" "A IOPS" "B MiB/s" "B IOPS"
for r in $(seq "$ROUNDS"); do
  a=$(one "$A"); b=$(one "$B")
  echo "$a" >> "$W/a"; echo "$b" >> "$W/b"
  printf '%-6s %12s %12s %12s %12s\n' "$r" $a $b
done
sa=$(cut -d' ' -f1 "$W/a" | median); ia=$(cut -d' ' -f2 "$W/a" | median)
sb=$(cut -d' ' -f1 "$W/b" | median); ib=$(cut -d' ' -f2 "$W/b" | median)
printf '%-6s %12s %12s %12s %12s\n' median "$sa" "$ia" "$sb" "$ib"
echo "B/A: sequential $(echo "scale=3; $sb / $sa" | bc -l), random $(echo "scale=3; $ib / $ia" | bc -l)"
