#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench (third part): WIM images — dism beside wimlib's own ways in.
#   images: /usr/share captured with LZX ("share"), a solid LZMS export of
#          it (`wimlib-imagex export --solid`; "solid"), a larger tree
#          (WIM_BENCH_SRC, default /usr: several GB, 100k+ files; "large")
#          captured with LZX.  Each capture (the export for "solid") is
#          timed: "a full wimlib capture".  (LZMS solid compresses at about
#          1-2 MB/s per core here: an export of /usr would take most of an
#          hour; WIM_BENCH_SOLID_OF=large asks for it.)
#   dism:  /Mount-Image /ReadOnly: time to a usable mount, scratch bytes
#          after it (du of the scratch directory), one large file's first
#          read (MiB/s, cold cache), the whole tree read (cold cache),
#          /Unmount-Image /Discard; /Mount-Image read/write, append to one
#          file, /Unmount-Image /Commit (the WIM fresh for each commit)
#   peers: wimlib-imagex apply into an NTFS volume file made by mkntfs;
#          wimlib-imagex apply into a directory (share only);
#          wimlib-imagex mount (wimmount): time to mount, the same large
#          file's first read, the whole tree; wimlib-imagex mountrw, the same
#          one-file change, unmount --commit (timed).  wimmount reads a solid
#          WIM's 64 MiB chunks again for each file: its reads and commit are
#          cut at WIM_BENCH_PEER_TIMEOUT seconds (default 300, quick 60), shown as ">N"
# Reads are `tar -cf - . | cat >/dev/null` (tree) and `cat >/dev/null`
# (file) after `sync; echo 3 > /proc/sys/vm/drop_caches`.  Each step runs
# WIM_BENCH_ROUNDS times (default 2), dism and peers alternating; tables show
# the best run, then the ratios the issue (12) sets as targets.
#   WIM_BENCH_QUICK=1   a try in a few minutes: /usr/lib/python3 as "share"
#                       (and its solid export), /usr/include as "large", 1 round
#   WIM_BENCH_IMAGES=   which of share, solid, large (default all three)
#   WIM_BENCH_SOLID_OF= share (default) or large: the WIM exported solid
#   WIM_BENCH_SRC=      the large tree (default /usr; /usr/include when quick)
#   WIM_BENCH_SHARE=    the first tree (default /usr/share)
# Not a test: prints figures for docs/benchmarks.md.  The large tree takes
# long (a /usr capture with LZX and its LZMS export are minutes each): run
# it on an otherwise idle machine.
set -euo pipefail
BUILD=${1:-build}
QUICK=${WIM_BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  SHARE=${WIM_BENCH_SHARE:-/usr/lib/python3} LARGE=${WIM_BENCH_SRC:-/usr/include} ROUNDS=${WIM_BENCH_ROUNDS:-1}
else
  SHARE=${WIM_BENCH_SHARE:-/usr/share} LARGE=${WIM_BENCH_SRC:-/usr} ROUNDS=${WIM_BENCH_ROUNDS:-2}
fi
IMAGES=${WIM_BENCH_IMAGES:-share solid large}
SOLID_OF=${WIM_BENCH_SOLID_OF:-share}
PT=${WIM_BENCH_PEER_TIMEOUT:-$([ "$QUICK" = 1 ] && echo 60 || echo 300)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DISM=$ROOT/$BUILD/bin/dism
W=$(mktemp -d /var/tmp/dism-wbench.XXXXXX)
export DISM_RUN_DIR=$W/run DISM_STATE_DIR=$W/state
cleanup() {
  set +e
  for d in "$W/wm" "$W/wrw"; do
    mountpoint -q "$d" && wimlib-imagex unmount "$d" >/dev/null 2>&1
  done
  mountpoint -q "$W/m" && "$DISM" /Unmount-Image /MountDir:"$W/m" /Discard >/dev/null 2>&1
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
for t in wimlib-imagex mkntfs ntfs-3g tar bc; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done
[ -x "$DISM" ] || { echo "bench: $DISM missing: make all" >&2; exit 1; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
read_tree() { local t0=$(now); tar -cf - -C "$1" . | cat > /dev/null; since "$t0"; }
read_file() { local t0=$(now); cat "$1" > /dev/null; since "$t0"; }   # seconds
# capped CMD...: seconds CMD took, or ">$PT" when cut at $PT seconds
capped() { local t0=$(now); if timeout "$PT" "$@" >/dev/null; then since "$t0"; else echo ">$PT"; fi; }
mkdir -p "$W/m" "$W/wm" "$W/wrw" "$W/scratch"
best() { printf "%s\n" "$@" | tr -d '>' | sort -g | sed -n 1p; }
r() { printf '%.2f' "$1"; }
mib() { echo "$1 / 1048576" | bc -l; }

# bench_image NAME WIM SRC CAPTURE-SECONDS [NOTE]: the file a commit changes
# is the first non-empty regular file by path, the large file the largest
bench_image() {
  local name=$1 wim=$2 src=$3 capture=$4 note=${5:-} one big bigsize files vol_size
  local d_ro=() d_scratch=() d_big=() d_read=() d_rw=() d_commit=()
  local p_ntfs=() p_dir=() p_wm=() p_wmbig=() p_wmread=() p_wmcommit=()
  files=$(wimlib-imagex info "$wim" 1 | sed -n 's/^Total Bytes: *//p')
  one=/$(cd "$src" && find . -type f -size +0 | LC_ALL=C sort | sed -n '1s|^\./||p')
  read -r bigsize big < <(cd "$src" && find . -type f -printf '%s %p\n' | sort -n | tail -1)
  big=/${big#./}
  vol_size=$(( files * 3 / 2 + 1024 * 1024 * 1024 ))
  echo "== $name: $(describe "$src")$note; WIM $(du -h "$wim" | cut -f1), files $(( files >> 20 )) MiB;" \
       "one-file change: $one; large file: $big ($(( bigsize >> 20 )) MiB)"
  for round in $(seq "$ROUNDS"); do
    echo "   round $round: wimlib apply, wimmount, mountrw"
    rm -f "$W/ntfs.vol"; truncate -s "$vol_size" "$W/ntfs.vol"
    mkntfs -F -Q -q "$W/ntfs.vol" >/dev/null 2>&1
    drop_caches; local t0=$(now)
    wimlib-imagex apply "$wim" 1 "$W/ntfs.vol" >/dev/null
    p_ntfs+=($(since "$t0")); rm -f "$W/ntfs.vol"
    if [ "$name" = share ]; then
      rm -rf "$W/dir"; mkdir "$W/dir"; drop_caches; t0=$(now)
      wimlib-imagex apply "$wim" 1 "$W/dir" >/dev/null
      p_dir+=($(since "$t0")); rm -rf "$W/dir"
    fi
    drop_caches; t0=$(now)
    wimlib-imagex mount "$wim" 1 "$W/wm" >/dev/null
    p_wm+=($(since "$t0"))
    drop_caches; p_wmbig+=($(capped cat "$W/wm$big"))
    # (not tar -cf /dev/null: GNU tar then skips reading the files)
    drop_caches; p_wmread+=($(capped sh -c 'tar -cf - -C "$1" . | cat' sh "$W/wm"))
    wimlib-imagex unmount "$W/wm" >/dev/null
    cp "$wim" "$W/y.wim"
    wimlib-imagex mountrw "$W/y.wim" 1 "$W/wrw" >/dev/null
    echo "changed by run-wim-bench" >> "$W/wrw$one"
    drop_caches
    p_wmcommit+=($(capped wimlib-imagex unmount "$W/wrw" --commit))
    mountpoint -q "$W/wrw" && { wimlib-imagex unmount "$W/wrw" >/dev/null 2>&1 || umount -l "$W/wrw"; }
    rm -f "$W/y.wim"

    echo "   round $round: dism"
    drop_caches; t0=$(now)
    "$DISM" /Quiet /ScratchDir:"$W/scratch" /Mount-Image /ImageFile:"$wim" /Index:1 \
      /MountDir:"$W/m" /ReadOnly >/dev/null
    d_ro+=($(since "$t0"))
    d_scratch+=($(du -s --block-size=1 "$W/scratch" | cut -f1))   # allocated, not apparent
    drop_caches; d_big+=($(read_file "$W/m$big"))
    drop_caches; d_read+=($(read_tree "$W/m"))
    "$DISM" /Quiet /Unmount-Image /MountDir:"$W/m" /Discard >/dev/null
    cp "$wim" "$W/x.wim"
    drop_caches; t0=$(now)
    "$DISM" /Quiet /ScratchDir:"$W/scratch" /Mount-Image /ImageFile:"$W/x.wim" /Index:1 \
      /MountDir:"$W/m" >/dev/null
    d_rw+=($(since "$t0"))
    echo "changed by run-wim-bench" >> "$W/m$one"
    drop_caches; t0=$(now)
    "$DISM" /Quiet /Unmount-Image /MountDir:"$W/m" /Commit >/dev/null
    d_commit+=($(since "$t0")); rm -f "$W/x.wim"
  done
  local b_ro b_rw b_scr b_big b_read b_commit b_ntfs b_dir="" b_wm b_wmbig b_wmread b_wmcommit
  b_ro=$(best "${d_ro[@]}") b_rw=$(best "${d_rw[@]}") b_scr=$(best "${d_scratch[@]}")
  b_big=$(best "${d_big[@]}") b_read=$(best "${d_read[@]}") b_commit=$(best "${d_commit[@]}")
  b_ntfs=$(best "${p_ntfs[@]}") b_wm=$(best "${p_wm[@]}") b_wmbig=$(best "${p_wmbig[@]}")
  b_wmread=$(best "${p_wmread[@]}") b_wmcommit=$(best "${p_wmcommit[@]}")
  [ ${#p_dir[@]} -gt 0 ] && b_dir=$(r "$(best "${p_dir[@]}")")
  # rc CAPPED-RUNS...: the best run for the table, ">N" when every run was cut
  rc() { if printf '%s\n' "$@" | grep -qv '^>'; then r "$(best "$@")"; else echo ">$PT"; fi; }
  echo
  echo "runs (s): dism ro ${d_ro[*]} | rw ${d_rw[*]} | big file ${d_big[*]} | tree ${d_read[*]} |" \
       "commit ${d_commit[*]} | scratch bytes ${d_scratch[*]} | apply NTFS ${p_ntfs[*]} |" \
       "apply dir ${p_dir[*]:-} | wimmount ${p_wm[*]} | big file ${p_wmbig[*]} | tree ${p_wmread[*]} |" \
       "mountrw commit ${p_wmcommit[*]} (>N: cut at N s)"
  printf '%-44s %10s %10s %10s %10s\n' "$name, best of $ROUNDS, seconds" dism "apply NTFS" "apply dir" wimmount
  printf '%-44s %10s %10s %10s %10s\n' "call to usable mount, read-only" "$(r "$b_ro")" "$(r "$b_ntfs")" "$b_dir" "$(r "$b_wm")"
  printf '%-44s %10s\n' "call to usable mount, read/write" "$(r "$b_rw")"
  printf '%-44s %10s\n' "scratch after the ro mount, MiB" "$(r "$(mib "$b_scr")")"
  printf '%-44s %10s %10s %10s %10s\n' "large file's first read, MiB/s" \
    "$(r "$(echo "$(mib "$bigsize") / $b_big" | bc -l)")" "" "" \
    "$(if [ "$(rc "${p_wmbig[@]}")" = ">$PT" ]; then echo "<$(r "$(echo "$(mib "$bigsize") / $PT" | bc -l)")"; else r "$(echo "$(mib "$bigsize") / $b_wmbig" | bc -l)"; fi)"
  printf '%-44s %10s %10s %10s %10s\n' "read the whole tree, cold cache" "$(r "$b_read")" "" "" "$(rc "${p_wmread[@]}")"
  printf '%-44s %10s %10s %10s %10s\n' "one-file commit (wimmount: mountrw)" \
    "$(r "$b_commit")" "" "" "$(rc "${p_wmcommit[@]}")"
  printf '%-44s %10s\n' "full wimlib capture (solid: the export)" "$(r "$capture")"
  local worst verdict
  worst=$(printf '%s\n' "$b_ro" "$b_rw" | sort -g | tail -1)
  verdict() { [ "$(echo "$1" | bc -l)" = 1 ] && echo met || echo MISSED; }
  echo "$name: ratios, targets of issue 12"
  printf '  mount (slower of ro/rw) / apply into NTFS   %8.3f  target <= 0.10: %s; mount %.2f s, target < 3 s: %s\n' \
    "$(echo "$worst / $b_ntfs" | bc -l)" "$(verdict "$worst <= 0.10 * $b_ntfs")" "$worst" "$(verdict "$worst < 3")"
  printf '  scratch after mount / image file bytes      %8.3f  target <= 0.05: %s\n' \
    "$(echo "$b_scr / $files" | bc -l)" "$(verdict "$b_scr <= 0.05 * $files")"
  printf '  one-file commit / wimmount one-file commit  %8.3f  target <= 2.00: %s\n' \
    "$(echo "$b_commit / $b_wmcommit" | bc -l)" "$(verdict "$b_commit <= 2 * $b_wmcommit")"
  printf '  one-file commit / full capture              %8.3f  target <= 0.05: %s\n' \
    "$(echo "$b_commit / $capture" | bc -l)" "$(verdict "$b_commit <= 0.05 * $capture")"
  printf '  wimmount tree read / dism tree read         %8.3f  target >= 2.00: %s\n' \
    "$(echo "$b_wmread / $b_read" | bc -l)" "$(verdict "$b_wmread >= 2 * $b_read")"
  echo
}

capture() {  # capture NAME SRC: prints seconds
  local t0
  drop_caches; t0=$(now)
  wimlib-imagex capture "$2" "$W/$1.wim" "$1" --compress=LZX >/dev/null
  since "$t0"
}
describe() { echo "$1: $(du -sh "$1" | cut -f1), $(find "$1" -type f | wc -l) files, $(find "$1" -type d | wc -l) directories"; }

echo "== dism WIM benchmark ($([ "$QUICK" = 1 ] && echo quick || echo full), $ROUNDS round(s)): $IMAGES; solid of $SOLID_OF"
has() { [[ " $IMAGES " == *" $1 "* ]]; }
for src_name in share large; do
  if [ $src_name = share ]; then src=$SHARE; else src=$LARGE; fi
  want_solid=0; has solid && [ "$SOLID_OF" = $src_name ] && want_solid=1
  has $src_name || [ $want_solid = 1 ] || continue
  echo "== capture $src (LZX)"
  c=$(capture $src_name "$src")
  if has $src_name; then bench_image $src_name "$W/$src_name.wim" "$src" "$c"; fi
  if [ $want_solid = 1 ]; then
    echo "== export --solid (LZMS) of the $src_name WIM"
    drop_caches; t0=$(now)
    wimlib-imagex export "$W/$src_name.wim" all "$W/solid.esd" --solid >/dev/null
    c=$(since "$t0")
    ln "$W/solid.esd" "$W/solid.wim"   # dism mounts .wim names only
    bench_image solid "$W/solid.wim" "$src" "$c" ", solid LZMS export"
    rm -f "$W/solid.esd" "$W/solid.wim"
  fi
  rm -f "$W/$src_name.wim"
done
