#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench (third part): WIM images — dism beside wimlib's own ways in.
#   image: /usr/share captured with LZX (WIM_BENCH_SRC= to use another tree);
#          the capture itself is timed: "a full wimlib capture"
#   dism:  /Mount-Image /ReadOnly (synthesizes the NTFS volume, serves it,
#          mounts it), read the whole tree, /Unmount-Image /Discard;
#          /Mount-Image read/write, change one file, /Unmount-Image /Commit
#   peers: wimlib-imagex apply into an NTFS volume file made by mkntfs,
#          wimlib-imagex apply into a directory, wimlib-imagex mount
#          (wimmount, FUSE): time to mount and to read the whole tree
# Reads are `tar -cf - . | cat >/dev/null` with a cold page cache.  Each step
# runs twice (WIM_BENCH_ROUNDS=N: N times), alternating, the WIM fresh for
# each commit; the table shows the best run.  Not a test: prints figures for
# docs/benchmarks.md.
set -euo pipefail
BUILD=${1:-build}
SRC=${WIM_BENCH_SRC:-/usr/share}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DISM=$ROOT/$BUILD/bin/dism
W=$(mktemp -d /var/tmp/dism-wbench.XXXXXX)
export DISM_RUN_DIR=$W/run DISM_STATE_DIR=$W/state
cleanup() {
  set +e
  mountpoint -q "$W/wm" && wimlib-imagex unmount "$W/wm" >/dev/null 2>&1
  mountpoint -q "$W/nm" && umount "$W/nm"
  mountpoint -q "$W/m" && "$DISM" /Unmount-Image /MountDir:"$W/m" /Discard >/dev/null 2>&1
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
for t in wimlib-imagex mkntfs ntfs-3g tar bc; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
read_tree() { local t0=$(now); tar -cf - -C "$1" . | cat > /dev/null; since "$t0"; }
mkdir -p "$W/m" "$W/wm" "$W/nm" "$W/dir" "$W/scratch"

echo "== source: $SRC: $(du -sh "$SRC" | cut -f1), $(find "$SRC" -type f | wc -l) files," \
     "$(find "$SRC" -type d | wc -l) directories"
echo "== full wimlib capture, LZX"
drop_caches
t0=$(now)
wimlib-imagex capture "$SRC" "$W/pristine.wim" bench --compress=LZX >/dev/null
capture=$(since "$t0")
echo "   $(printf '%.2f' "$capture") s, WIM $(du -h "$W/pristine.wim" | cut -f1)"
# The one file a read/write mount changes: the first regular file, by path.
one=$(cd "$SRC" && find . -type f -size +0 | LC_ALL=C sort | sed -n 1p)
vol_size=$(( $(du -sb "$SRC" | cut -f1) * 3 / 2 + 1024 * 1024 * 1024 ))

run_dism() {
  drop_caches
  local t0=$(now)
  "$DISM" /Quiet /ScratchDir:"$W/scratch" /Mount-Image /ImageFile:"$W/pristine.wim" /Index:1 \
    /MountDir:"$W/m" /ReadOnly >/dev/null
  d_ro+=($(since "$t0"))
  drop_caches
  d_read+=($(read_tree "$W/m"))
  "$DISM" /Quiet /Unmount-Image /MountDir:"$W/m" /Discard >/dev/null
  cp "$W/pristine.wim" "$W/x.wim"
  drop_caches
  t0=$(now)
  "$DISM" /Quiet /ScratchDir:"$W/scratch" /Mount-Image /ImageFile:"$W/x.wim" /Index:1 \
    /MountDir:"$W/m" >/dev/null
  d_rw+=($(since "$t0"))
  echo "changed by run-wim-bench" >> "$W/m/$one"
  drop_caches
  t0=$(now)
  "$DISM" /Quiet /Unmount-Image /MountDir:"$W/m" /Commit >/dev/null
  d_commit+=($(since "$t0"))
  d_grow+=($(( $(stat -c %s "$W/x.wim") - $(stat -c %s "$W/pristine.wim") )))
}
run_peers() {
  # apply into NTFS: a sparse volume file made by mkntfs (not timed), apply timed
  rm -f "$W/ntfs.vol"; truncate -s "$vol_size" "$W/ntfs.vol"
  mkntfs -F -Q -q "$W/ntfs.vol" >/dev/null 2>&1
  drop_caches
  local t0=$(now)
  wimlib-imagex apply "$W/pristine.wim" 1 "$W/ntfs.vol" >/dev/null
  p_ntfs+=($(since "$t0"))
  rm -f "$W/ntfs.vol"
  # apply into a directory
  rm -rf "$W/dir"; mkdir "$W/dir"
  drop_caches
  t0=$(now)
  wimlib-imagex apply "$W/pristine.wim" 1 "$W/dir" >/dev/null
  p_dir+=($(since "$t0"))
  rm -rf "$W/dir"
  # wimmount
  drop_caches
  t0=$(now)
  wimlib-imagex mount "$W/pristine.wim" 1 "$W/wm" >/dev/null
  p_wm+=($(since "$t0"))
  drop_caches
  p_wmread+=($(read_tree "$W/wm"))
  wimlib-imagex unmount "$W/wm" >/dev/null
}
d_ro=() d_read=() d_rw=() d_commit=() d_grow=()
p_ntfs=() p_dir=() p_wm=() p_wmread=()
for round in $(seq "${WIM_BENCH_ROUNDS:-2}"); do
  echo "== round $round: wimlib apply (NTFS, directory), wimmount"
  run_peers
  echo "== round $round: dism"
  run_dism
done
best() { printf "%s\n" "$@" | sort -g | sed -n 1p; }
r() { printf '%.2f' "$1"; }
b_ro=$(best "${d_ro[@]}") b_read=$(best "${d_read[@]}") b_rw=$(best "${d_rw[@]}")
b_commit=$(best "${d_commit[@]}") b_ntfs=$(best "${p_ntfs[@]}") b_dir=$(best "${p_dir[@]}")
b_wm=$(best "${p_wm[@]}") b_wmread=$(best "${p_wmread[@]}")

echo
echo "runs (s): dism ro mount ${d_ro[*]} | rw mount ${d_rw[*]} | read ${d_read[*]} |" \
     "commit ${d_commit[*]} | apply NTFS ${p_ntfs[*]} | apply dir ${p_dir[*]} |" \
     "wimmount ${p_wm[*]} | wimmount read ${p_wmread[*]}"
echo "WIM growth by the one-file commit: ${d_grow[*]} bytes"
echo
printf '%-40s %10s %10s %10s %10s\n' "best of ${WIM_BENCH_ROUNDS:-2}, seconds" "dism" "apply NTFS" "apply dir" "wimmount"
printf '%-40s %10s %10s %10s %10s\n' "call to usable mount, read-only" "$(r "$b_ro")" \
  "$(r "$b_ntfs")" "$(r "$b_dir")" "$(r "$b_wm")"
printf '%-40s %10s\n' "call to usable mount, read/write" "$(r "$b_rw")"
printf '%-40s %10s %10s %10s %10s\n' "read the whole tree, cold cache" "$(r "$b_read")" "" "" \
  "$(r "$b_wmread")"
printf '%-40s %10s   (full wimlib capture, LZX: %s)\n' "commit after changing one file" \
  "$(r "$b_commit")" "$(r "$capture")"
echo
worst_mount=$(printf '%s\n' "$b_ro" "$b_rw" | sort -g | tail -1)
verdict() { [ "$(echo "$1" | bc -l)" = 1 ] && echo met || echo MISSED; }
printf 'mount (slower of ro/rw) / apply into NTFS  %6.2f   target <= 1.00: %s\n' \
  "$(echo "$worst_mount / $b_ntfs" | bc -l)" "$(verdict "$worst_mount <= $b_ntfs")"
printf 'wimmount read / dism read                  %6.2f   target >= 3.00: %s\n' \
  "$(echo "$b_wmread / $b_read" | bc -l)" "$(verdict "$b_wmread >= 3 * $b_read")"
printf 'one-file commit / full capture             %6.2f   target <= 0.25: %s\n' \
  "$(echo "$b_commit / $capture" | bc -l)" "$(verdict "$b_commit <= 0.25 * $capture")"
