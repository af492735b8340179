#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench: our server beside qemu-nbd (same VHDX) and nbdkit's file plugin
# (the equivalent raw file), in one run on one machine.
#   - sequential read of the whole 2 GiB disk with nbdcopy, 4 connections
#   - 4 KiB random read with fio's nbd engine, iodepth 16
# Prints MiB/s, IOPS, ratios and our server's peak RSS (VmHWM).
# Not a test: no timed assertions.  Record the figures in docs/benchmarks.md.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$ROOT/$BUILD/bin/dism-nbd-server
RUNS=${BENCH_RUNS:-3}
FIO_SECONDS=${BENCH_FIO_SECONDS:-10}
W=$(mktemp -d /var/tmp/dism-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$W"' EXIT
for t in qemu-img qemu-nbd nbdkit nbdcopy fio; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done

echo "== preparing a 2 GiB dynamic VHDX holding 1 GiB of random data"
source "$ROOT/tests/bench/serving-disk.sh"
make_serving_disk "$W"
raw=$W/disk.raw

wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
start() {  # start NAME cmd...: sets PID, URI
  local s=$W/$1.sock; shift
  rm -f "$s"
  "$@" >"$W/server.log" 2>&1 &
  PID=$!; pids+=($PID)
  wait_sock "$s"
  URI="nbd+unix:///?socket=$s"
}
stop() { kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; }

seq_read() {  # best MiB/s over $RUNS runs of nbdcopy to null:
  local best=0 t0 t1 mibs
  nbdcopy --connections=4 "$URI" null:   # warm the page cache
  for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    nbdcopy --connections=4 "$URI" null:
    t1=$(date +%s.%N)
    mibs=$(echo "2048 / ($t1 - $t0)" | bc -l)
    best=$(echo "if ($mibs > $best) $mibs else $best" | bc -l)
  done
  printf '%.0f' "$best"
}
rand_read() {  # IOPS from fio's nbd engine
  fio --name=rr --ioengine=nbd --uri="$URI" --rw=randread --bs=4k --iodepth=16 \
      --runtime="$FIO_SECONDS" --time_based --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; t=sys.stdin.read(); print(round(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))'
}

declare -A SEQ RND
run_peer() {  # run_peer LABEL sockname cmd...
  local label=$1; shift
  start "$@"
  SEQ[$label]=$(seq_read)
  RND[$label]=$(rand_read)
  if [ "$label" = dism ]; then
    RSS=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
  fi
  stop
}

echo "== dism-nbd-server (VHDX)"
run_peer dism dism "$SERVER" --readonly --unix "$W/dism.sock" "$W/disk.vhdx"
echo "== qemu-nbd $(qemu-nbd --version | head -1 | awk '{print $2}') (VHDX)"
run_peer qemu qemu qemu-nbd -r -f vhdx --shared=8 --persistent -k "$W/qemu.sock" "$W/disk.vhdx"
echo "== nbdkit $(nbdkit --version | awk '{print $2}') file plugin (raw)"
run_peer nbdkit nbdkit nbdkit -f -r -U "$W/nbdkit.sock" file "$raw"

ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo
printf '%-28s %12s %12s\n' "server" "seq MiB/s" "4K rand IOPS"
printf '%-28s %12s %12s\n' "dism-nbd-server (vhdx)" "${SEQ[dism]}" "${RND[dism]}"
printf '%-28s %12s %12s\n' "qemu-nbd (vhdx)" "${SEQ[qemu]}" "${RND[qemu]}"
printf '%-28s %12s %12s\n' "nbdkit file (raw)" "${SEQ[nbdkit]}" "${RND[nbdkit]}"
echo
echo "seq read:  dism/qemu-nbd = $(ratio "${SEQ[dism]}" "${SEQ[qemu]}")  (target >= 1.5)"
echo "seq read:  dism/nbdkit   = $(ratio "${SEQ[dism]}" "${SEQ[nbdkit]}")  (target >= 1.0)"
echo "rand read: dism/qemu-nbd = $(ratio "${RND[dism]}" "${RND[qemu]}")  (target >= 2.0)"
echo "rand read: dism/nbdkit   = $(ratio "${RND[dism]}" "${RND[nbdkit]}")"
echo "dism-nbd-server peak RSS: $((RSS / 1024)) MiB (target <= 64)"
