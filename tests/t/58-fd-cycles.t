#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Resources over many mounts: one long-lived libdism process
# (tests/drivers/test-fd-cycles.c) mounts and unmounts a tiny VHDX 200 times
# and, spread among those, a small WIM 40 times, read-only and read/write
# alternating; its open descriptors, threads, child processes and heap in
# use must not grow, and after DismShutdown its descriptors are those it had
# before DismInitialize.
# Afterwards nothing is left: no mount, loop device, server process, record,
# overlay, volume or live state.  The same program then runs fewer cycles
# under ASan+UBSan (SAN_BUILD, default build-san) with LeakSanitizer on:
# no leak, no error.
#   FD_CYCLES_VHDX / FD_CYCLES_WIM (default 200 / 40), FD_CYCLES_SAN_VHDX /
#   FD_CYCLES_SAN_WIM (default 60 / 12) change the counts.  A cycle takes
#   0.1 to 0.5 s on the loaded 2-core build machine: 30 to 70 s in all.
# Then many threads of one process (tests/drivers/test-parallel-cycles.c):
# FD_CYCLES_PAR (default 64) threads, each on its own image (three VHDX to
# one WIM) and folder, mount at once, are all listed, write, unmount (rw
# ones half commit), after a warm-up round of 4 of them; descriptors,
# threads and children return to their counts, each thread's error message
# is its own.  Under ASan FD_CYCLES_SAN_PAR (default 16) threads.  5 to 15 s.
# needs-root: dism mounts (loop devices, ntfs-3g)
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd wimlib-imagex pgrep
need_file "$TBIN/test-fd-cycles"
need_file "$TBIN/test-parallel-cycles" "$SAN/tests/test-parallel-cycles"
need_file "$SAN/tests/test-fd-cycles" "$SAN/bin/dism-nbd-server"
N_VHDX=${FD_CYCLES_VHDX:-200} N_WIM=${FD_CYCLES_WIM:-40}
N_SAN_VHDX=${FD_CYCLES_SAN_VHDX:-60} N_SAN_WIM=${FD_CYCLES_SAN_WIM:-12}
N_PAR=${FD_CYCLES_PAR:-64} N_SAN_PAR=${FD_CYCLES_SAN_PAR:-16}

# A tiny VHDX (16 MiB disk, MBR + NTFS holding \Windows) and a small WIM
# whose synthesized volume gets little room beyond its data.
make_windows_disk "$TMPD/disk.raw" 16 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/tiny.vhdx"
mkdir -p "$TMPD/wimsrc/Windows/System32"
echo "hello from the WIM" > "$TMPD/wimsrc/hello.txt"
head -c 65536 /dev/urandom > "$TMPD/wimsrc/Windows/System32/data.bin"
wimlib-imagex capture "$TMPD/wimsrc" "$TMPD/small.wim" Small --compress=none >/dev/null 2>&1
check "a small WIM for the cycles" test -s "$TMPD/small.wim"
export DISM_WIM_EXTRA_BYTES=$((8 << 20))
mkdir -p "$TMPD/m1"

# nothing_left WHAT [MANY]: no mount, loop device, server, record, overlay, volume
# or live state of this test remains.
nothing_left() {
  local left
  left=$(grep -F " $TMPD/" /proc/mounts || true)
  is "$1: no mount under the test's folders" "$left" ""
  left=$(losetup -a 2>/dev/null | grep -F "$TMPD/" || true)
  is "$1: no loop device over the test's files" "$left" ""
  left=$(pgrep -af "dism-nbd-server.*$DISM_RUN_DIR" || true)
  is "$1: no server process" "$left" ""
  # (the WIM metadata cache keeps the one finished volume of the WIM, for the
  # next mount: one entry however many cycles (one per WIM file with MANY),
  # never a build in progress)
  left=$(find "$DISM_STATE_DIR/mounts" "$DISM_STATE_DIR/scratch" "$DISM_RUN_DIR/mounts" \
           -mindepth 1 2>/dev/null | grep -Ev "^$DISM_STATE_DIR/scratch/wim-cache(/\.lock|/[0-9a-f]{16}(/volume|/map)?)?$" || true)
  is "$1: no record, overlay or live state" "$left" ""
  if [ -d "$DISM_STATE_DIR/scratch/wim-cache" ] && [ -z "${2:-}" ]; then
    is "$1: one cached WIM volume" "$(ls "$DISM_STATE_DIR/scratch/wim-cache" | wc -l)" 1
  fi
  is "$1: the mount folder is empty" "$(ls -A "$TMPD/m1")" ""
}

start=$(date +%s)
# glibc's per-thread cache off: then the heap in use it reports is exact.
GLIBC_TUNABLES=glibc.malloc.tcache_count=0 \
  "$TBIN/test-fd-cycles" "$TMPD/tiny.vhdx" "$TMPD/small.wim" "$TMPD/m1" "$N_VHDX" "$N_WIM" \
  "$TMPD/cycles.log" > "$TMPD/out" 2>&1
rc=$?
relay < "$TMPD/out"
is "test-fd-cycles: exit status" "$rc" 0
diag "$((N_VHDX + N_WIM)) cycles in $(( $(date +%s) - start )) s"
nothing_left "after $((N_VHDX + N_WIM)) cycles"
check "the VHDX is still consistent (qemu-img check)" qemu-img check -q "$TMPD/tiny.vhdx"

# The same under ASan+UBSan: the library, the program and the servers it
# starts (SAN/bin, beside SAN/tests) are all instrumented.
# Every process's reports go to files (the servers' stderr is a log file
# removed at unmount): $TMPD/san/report.PID.
mkdir -p "$TMPD/san"
start=$(date +%s)
ASAN_OPTIONS=detect_leaks=1:log_path=$TMPD/san/report \
UBSAN_OPTIONS=print_stacktrace=1:log_path=$TMPD/san/report \
  "$SAN/tests/test-fd-cycles" "$TMPD/tiny.vhdx" "$TMPD/small.wim" "$TMPD/m1" \
  "$N_SAN_VHDX" "$N_SAN_WIM" "$TMPD/cycles-san.log" > "$TMPD/out-san" 2> "$TMPD/err-san"
rc=$?
relay < "$TMPD/out-san"
is "ASan: test-fd-cycles exit status" "$rc" 0
diag "ASan: $((N_SAN_VHDX + N_SAN_WIM)) cycles in $(( $(date +%s) - start )) s"
reports=$(cat "$TMPD/err-san" "$TMPD"/san/report.* 2>/dev/null |
          grep -E "LeakSanitizer|AddressSanitizer|runtime error" || true)
if [ -n "$reports" ]; then
  not_ok "ASan: no leak or error reported (the program and its servers)"
  diag "$(cat "$TMPD"/san/report.* "$TMPD/err-san" 2>/dev/null | head -80)"
else
  ok "ASan: no leak or error reported (the program and its servers)"
fi
nothing_left "after the ASan cycles"

# ---- many threads of one process ---------------------------------------------------
# par_args N: "IMAGE DIR" for N threads, each its own copy (every fourth a WIM)
par_args() {
  local i img
  for ((i = 0; i < $1; i++)); do
    img=$TMPD/par$i.vhdx; [ $((i % 4)) = 3 ] && img=$TMPD/par$i.wim
    [ -e "$img" ] || cp --sparse=always "$TMPD/${img##*.}" "$img"
    mkdir -p "$TMPD/mp$i"
    printf '%s\n%s\n' "$img" "$TMPD/mp$i"
  done
}
cp "$TMPD/tiny.vhdx" "$TMPD/vhdx"; cp "$TMPD/small.wim" "$TMPD/wim"
# par_run WHAT PROGRAM N: the program on N threads, its lines as TAP, nothing left
par_run() {
  local what=$1 prog=$2 n=$3 rc left
  mapfile -t args < <(par_args "$n")
  start=$(date +%s)
  "$prog" "$TMPD/par.log" 2 "${args[@]}" > "$TMPD/out-par" 2>&1
  rc=$?
  relay < "$TMPD/out-par"
  is "$what: test-parallel-cycles exit status" "$rc" 0
  diag "$what: a warm-up and a round of $n threads in $(( $(date +%s) - start )) s"
  nothing_left "$what" many
  left=$(for ((i = 0; i < n; i++)); do ls -A "$TMPD/mp$i"; done)
  is "$what: every thread's folder is empty" "$left" ""
}
par_run "$N_PAR threads" "$TBIN/test-parallel-cycles" "$N_PAR"
ASAN_OPTIONS=detect_leaks=1:log_path=$TMPD/san/par \
UBSAN_OPTIONS=print_stacktrace=1:log_path=$TMPD/san/par \
  par_run "ASan: $N_SAN_PAR threads" "$SAN/tests/test-parallel-cycles" "$N_SAN_PAR"
reports=$(cat "$TMPD"/san/par.* 2>/dev/null | grep -E "LeakSanitizer|AddressSanitizer|ThreadSanitizer|runtime error" || true)
is "ASan: no leak or error reported by $N_SAN_PAR threads (the program and its servers)" "$reports" ""
