#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench: our server beside qemu-nbd (same VHDX) and nbdkit's file plugin
# (the equivalent raw file), in one run on one machine; our server also on
# that raw file.
#   - sequential read of the whole 2 GiB disk with nbdcopy, 1 and 4 connections
#   - 4 KiB random read with fio's nbd engine, iodepth 16
# Prints MiB/s, IOPS, each server's CPU time per GiB of data sent in the
# sequential runs, ratios and our server's peak RSS (VmHWM).
# BENCH_DISM_ARGS: extra options for our server (e.g. --no-sendfile).
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

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }   # utime + stime
seq_read() {  # seq_read CONNS: BEST, best MiB/s over $RUNS runs of nbdcopy to
              # null:, and CPU_MS, the server's CPU ms per run
  local conns=$1 best=0 t0 t1 mibs c0
  nbdcopy --connections="$conns" "$URI" null:   # warm the page cache
  c0=$(cpu_ticks "$PID")
  for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    nbdcopy --connections="$conns" "$URI" null:
    t1=$(date +%s.%N)
    mibs=$(echo "2048 / ($t1 - $t0)" | bc -l)
    best=$(echo "if ($mibs > $best) $mibs else $best" | bc -l)
  done
  # nbdcopy skips the holes: each run sends the 1 GiB of data.
  CPU_MS=$(( ($(cpu_ticks "$PID") - c0) * 1000 / $(getconf CLK_TCK) / RUNS ))
  BEST=$(printf '%.0f' "$best")
}
rand_read() {  # IOPS from fio's nbd engine
  fio --name=rr --ioengine=nbd --uri="$URI" --rw=randread --bs=4k --iodepth=16 \
      --runtime="$FIO_SECONDS" --time_based --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; t=sys.stdin.read(); print(round(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))'
}

declare -A SEQ1 SEQ4 RND CPU RSS
run_peer() {  # run_peer LABEL sockname cmd...
  local label=$1; shift
  start "$@"
  seq_read 1; SEQ1[$label]=$BEST
  seq_read 4; SEQ4[$label]=$BEST; CPU[$label]=$CPU_MS
  RND[$label]=$(rand_read)
  RSS[$label]=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$PID/status)
  stop
}

read -r -a DARGS <<<"${BENCH_DISM_ARGS:-}"
echo "== dism-nbd-server (VHDX) ${DARGS[*]}"
run_peer dism dism "$SERVER" --readonly "${DARGS[@]}" --unix "$W/dism.sock" "$W/disk.vhdx"
echo "== dism-nbd-server (raw) ${DARGS[*]}"
run_peer dismraw dismraw "$SERVER" --readonly "${DARGS[@]}" --unix "$W/dismraw.sock" "$raw"
echo "== qemu-nbd $(qemu-nbd --version | head -1 | awk '{print $2}') (VHDX)"
run_peer qemu qemu qemu-nbd -r -f vhdx --shared=8 --persistent -k "$W/qemu.sock" "$W/disk.vhdx"
echo "== nbdkit $(nbdkit --version | awk '{print $2}') file plugin (raw)"
run_peer nbdkit nbdkit nbdkit -f -r -U "$W/nbdkit.sock" file "$raw"

ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo
printf '%-26s %10s %10s %12s %12s %8s\n' "server" "seq 1c" "seq 4c" "4K rand" "CPU ms/GiB" "RSS MiB"
for l in dism:"dism-nbd-server (vhdx)" dismraw:"dism-nbd-server (raw)" \
         qemu:"qemu-nbd (vhdx)" nbdkit:"nbdkit file (raw)"; do
  k=${l%%:*}
  printf '%-26s %10s %10s %12s %12s %8s\n' "${l#*:}" "${SEQ1[$k]}" "${SEQ4[$k]}" \
    "${RND[$k]}" "${CPU[$k]}" "${RSS[$k]}"
done
echo "(seq in MiB/s with nbdcopy --connections=1 / 4; 4K rand in IOPS; CPU: server"
echo " time per GiB of data sent, 4-connection runs)"
echo
echo "seq read 4c: dism(vhdx)/nbdkit = $(ratio "${SEQ4[dism]}" "${SEQ4[nbdkit]}")  (target >= 1.2)"
echo "seq read 4c: dism(raw)/nbdkit  = $(ratio "${SEQ4[dismraw]}" "${SEQ4[nbdkit]}")  (target >= 1.2)"
echo "seq read 1c: dism(vhdx)/nbdkit = $(ratio "${SEQ1[dism]}" "${SEQ1[nbdkit]}")  (target >= 1.2)"
echo "seq read 1c: dism(raw)/nbdkit  = $(ratio "${SEQ1[dismraw]}" "${SEQ1[nbdkit]}")  (target >= 1.2)"
echo "seq read 4c: dism/qemu-nbd     = $(ratio "${SEQ4[dism]}" "${SEQ4[qemu]}")  (target >= 1.5)"
echo "rand read:   dism/qemu-nbd     = $(ratio "${RND[dism]}" "${RND[qemu]}")  (target >= 2.0)"
echo "rand read:   dism/nbdkit       = $(ratio "${RND[dism]}" "${RND[nbdkit]}")"
echo "dism-nbd-server peak RSS: ${RSS[dism]} MiB vhdx, ${RSS[dismraw]} MiB raw (target <= 64)"
