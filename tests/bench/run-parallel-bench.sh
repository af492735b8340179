#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench (fourth part): parallel servicing (issue 13).  N images are each
# mounted read/write, get one file, and are unmounted with /Commit: by N dism
# processes at once (each its own image and folder), then the same one after
# another; wall time of both and the ratio parallel / sequential, for
# N = 1, 4, 16, 64 (PAR_BENCH_N), for two kinds of image:
#   vhdx  a 64 MiB dynamic VHDX, GPT, NTFS \Windows partition (mkwinimg.sh
#         gpt); the file is 1 MiB: mount, write, merge of the overlay, fsync
#   wim   a small WIM (3 files, 192 KiB); the file is 1 MiB: mount, write,
#         capture of the changed volume back into the WIM
# Then one WIM of 20 000 files mounted read-only once, and 16 times at once,
# each from an empty metadata cache: the volume is built once either way.
# Target (docs/benchmarks.md): 16 parallel VHDX cycles take <= 0.5 x the time
# of 16 sequential ones on the 2-core build machine.  The load average is
# printed before and after (other work on the machine skews the figures).
# Not a test: prints figures for docs/benchmarks.md; exits 1 only if a cycle
# fails.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DISM=$ROOT/$BUILD/bin/dism
NS=${PAR_BENCH_N:-1 4 16 64}
W=$(mktemp -d /var/tmp/dism-pbench.XXXXXX)
export DISM_RUN_DIR=$W/run DISM_STATE_DIR=$W/state DISM_WIM_EXTRA_BYTES=$((16 << 20))
cleanup() {
  set +e
  local d
  for d in "$W"/m*; do
    mountpoint -q "$d" && "$DISM" /Unmount-Image /MountDir:"$d" /Discard >/dev/null 2>&1
  done
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
for t in qemu-img wimlib-imagex mkntfs ntfs-3g sfdisk bc; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done
[ -x "$DISM" ] || { echo "bench: $DISM missing: make first" >&2; exit 1; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== parallel servicing: preparing the images"
"$ROOT/tests/lib/mkwinimg.sh" gpt "$W/disk.raw"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$W/disk.raw" "$W/pristine.vhdx"
rm -f "$W/disk.raw"
mkdir -p "$W/wimsrc/Windows/System32"
echo "hello" > "$W/wimsrc/hello.txt"
head -c 65536 /dev/urandom > "$W/wimsrc/Windows/System32/a.bin"
head -c 131072 /dev/urandom > "$W/wimsrc/Windows/System32/b.bin"
wimlib-imagex capture "$W/wimsrc" "$W/pristine.wim" Bench >/dev/null
head -c 1M /dev/urandom > "$W/payload"

# cycle KIND I: mount image I read/write, write the file, unmount /Commit.
cycle() {
  local img=$W/img$2.$1 dir=$W/m$2
  "$DISM" /Mount-Image /ImageFile:"$img" /Index:1 /MountDir:"$dir" >/dev/null &&
  cp "$W/payload" "$dir/new.bin" &&
  "$DISM" /Unmount-Image /MountDir:"$dir" /Commit >/dev/null
}
# fresh KIND N: N fresh copies of the image, N empty folders
fresh() {
  local i
  for ((i = 0; i < $2; i++)); do
    cp --sparse=always "$W/pristine.$1" "$W/img$i.$1"
    mkdir -p "$W/m$i"
  done
  sync
}
failed=0
# run KIND N MODE: the N cycles in MODE (seq|par); prints the seconds
run() {
  local kind=$1 n=$2 mode=$3 i t0 pids=() bad=0
  fresh "$kind" "$n"
  t0=$(now)
  if [ "$mode" = seq ]; then
    for ((i = 0; i < n; i++)); do cycle "$kind" $i || bad=$((bad + 1)); done
  else
    for ((i = 0; i < n; i++)); do cycle "$kind" $i & pids+=($!); done
    for i in "${pids[@]}"; do wait "$i" || bad=$((bad + 1)); done
  fi
  since "$t0"
  if [ $bad -gt 0 ]; then
    echo "bench: $bad of $n $kind cycles ($mode) failed" >&2
    failed=$((failed + bad))
  fi
}

echo "== mount + write 1 MiB + unmount /Commit: N at once vs one after another (load before: $(load))"
printf '%-5s %4s %12s %12s %10s\n' kind N "seq s" "par s" "par/seq"
for kind in vhdx wim; do
  for n in $NS; do
    seq_s=$(run "$kind" "$n" seq)
    par_s=$(run "$kind" "$n" par)
    ratio=$(echo "$par_s / $seq_s" | bc -l)
    printf '%-5s %4d %12.2f %12.2f %10.2f\n' "$kind" "$n" "$seq_s" "$par_s" "$ratio"
    if [ "$kind" = vhdx ] && [ "$n" = 16 ]; then
      target=$(echo "$ratio <= 0.5" | bc -l)
      [ "$target" = 1 ] && verdict=met || verdict=MISSED
      vhdx16="16 VHDX cycles: parallel / sequential = $(printf %.2f "$ratio") (target <= 0.5: $verdict)"
    fi
  done
done
echo "(load after: $(load))"

# One WIM, many read-only mounts at once, from an empty metadata cache: the
# first mount builds the image's volume, the others wait for it and reuse it,
# so 16 at once should cost about one build plus 16 attaches.
echo "== one WIM of 20 000 files: 1 read-only mount vs 16 at once, empty cache each time"
mkdir -p "$W/manysrc"
for ((d = 0; d < 100; d++)); do
  mkdir -p "$W/manysrc/d$d"
  for ((f = 0; f < 200; f++)); do echo "file $d $f" > "$W/manysrc/d$d/f$f.txt"; done
done
wimlib-imagex capture "$W/manysrc" "$W/many.wim" Many >/dev/null
# ro_mounts N: RO_S, the seconds for N read-only mounts of many.wim at once,
# and BUILDS, the number of volume builds the log shows
ro_mounts() {
  local n=$1 i t0 bad=0 pids=()
  rm -rf "$DISM_STATE_DIR/scratch/wim-cache"
  for ((i = 0; i < n; i++)); do mkdir -p "$W/r$i"; done
  : > "$W/ro.log"
  t0=$(now)
  for ((i = 0; i < n; i++)); do
    "$DISM" /LogPath:"$W/ro.log" /Mount-Image /ImageFile:"$W/many.wim" /Index:1 \
      /MountDir:"$W/r$i" /ReadOnly >/dev/null & pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || bad=$((bad + 1)); done
  RO_S=$(since "$t0")
  BUILDS=$(grep -c 'building the metadata volume' "$W/ro.log" || true)
  for ((i = 0; i < n; i++)); do
    "$DISM" /Unmount-Image /MountDir:"$W/r$i" /Discard >/dev/null || bad=$((bad + 1))
  done
  [ $bad -eq 0 ] || { echo "bench: $bad read-only WIM mounts or unmounts failed" >&2; failed=$((failed + bad)); }
}
ro_mounts 1; one_s=$RO_S one_b=$BUILDS
ro_mounts 16; many_s=$RO_S many_b=$BUILDS
printf '1 mount: %.2f s (%s build), 16 at once: %.2f s (%s builds), 16 / 1 = %.2f\n' \
  "$one_s" "$one_b" "$many_s" "$many_b" "$(echo "$many_s / $one_s" | bc -l)"
[ -n "${vhdx16:-}" ] && echo "$vhdx16"
[ $failed -eq 0 ] || { echo "bench: $failed cycles failed" >&2; exit 1; }
