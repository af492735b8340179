#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Scale (issue 13): 64 mounts at once, natively (loop + FUSE attach path),
# started by 64 dism processes in parallel.  The mix, by slot i % 8:
# VHDX read/write (own file, twice), VHDX read-only (one shared file), VHD
# read/write (own file), VHD read-only (shared), WIM read/write (own file),
# WIM read-only (one shared WIM, twice): for 64, 16 + 8 VHDX rw, 8 VHDX ro,
# 8 VHD rw, 8 VHD ro, 8 WIM rw, 16 WIM ro.  While they are mounted every
# record is right in /Get-MountedImageInfo (folder, image, index, mode,
# status Ok) and every mount took the loop path; a file is written in each
# read/write mount.  The summed RSS of the servers is asserted under
# SERVER_RSS_KIB_PER_MOUNT per mount (docs/architecture.md, "Parallel
# mounts"; not on ASan builds) and printed with that of ntfs-3g and the
# supervisors.  Then all are unmounted by 64 dism processes in parallel,
# half /Commit and half /Discard: each committed image holds its file, each
# discarded or read-only one is byte-identical.  Nothing is left: servers,
# supervisors, ntfs-3g, FUSE and folder mounts, loop devices, records,
# overlays, live state.
# Count: DISM_SCALE_N (default 64, a multiple of 8).  64 takes 25-45 s on
# the loaded 2-core build machine (build/), about twice that on build-san/.
# needs-root: loop devices, FUSE, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd wimlib-imagex pgrep sha256sum
need_file "$DISM"
N=${DISM_SCALE_N:-64}
[ $((N % 8)) -eq 0 ] && [ "$N" -gt 0 ] || { not_ok "DISM_SCALE_N=$N is a positive multiple of 8"; exit 1; }
# Measured on build/: ~8 MiB per server (VHDX, VHD, WIM alike), ~1.8 MiB
# per ntfs-3g.  The bound gives 1.5 times that.
SERVER_RSS_KIB_PER_MOUNT=12288
export DISM_WIM_EXTRA_BYTES=$((8 << 20))
T0=$(date +%s)

# ---- the images --------------------------------------------------------------------
make_windows_disk "$TMPD/disk.raw" 16 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/base.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/base.vhd"
mkdir -p "$TMPD/wimsrc/Windows/System32"
echo "hello from the image" > "$TMPD/wimsrc/hello.txt"
head -c 65536 /dev/urandom > "$TMPD/wimsrc/Windows/System32/data.bin"
wimlib-imagex capture "$TMPD/wimsrc" "$TMPD/base.wim" Small --compress=none >/dev/null 2>&1
check "the base images (VHDX, VHD, WIM)" test -s "$TMPD/base.vhdx" -a -s "$TMPD/base.vhd" -a -s "$TMPD/base.wim"
cp "$TMPD/base.vhdx" "$TMPD/ro.vhdx"; cp "$TMPD/base.vhd" "$TMPD/ro.vhd"; cp "$TMPD/base.wim" "$TMPD/ro.wim"

# slot I: KIND (vhdx|vhd|wim), MODE (rw|ro), IMAGE, mount folder; how it
# is unmounted (commit for even I/8).
declare -a KIND MODE IMG
for ((i = 0; i < N; i++)); do
  case $((i % 8)) in
    0|6) KIND[i]=vhdx MODE[i]=rw ;;
    1)   KIND[i]=vhdx MODE[i]=ro ;;
    2)   KIND[i]=vhd  MODE[i]=rw ;;
    3)   KIND[i]=vhd  MODE[i]=ro ;;
    4)   KIND[i]=wim  MODE[i]=rw ;;
    5|7) KIND[i]=wim  MODE[i]=ro ;;
  esac
  if [ "${MODE[i]}" = rw ]; then
    IMG[i]=$TMPD/img$i.${KIND[i]}
    cp --sparse=always "$TMPD/base.${KIND[i]}" "${IMG[i]}"
  else
    IMG[i]=$TMPD/ro.${KIND[i]}
  fi
  mkdir -p "$TMPD/m$i"
done
commits() { [ $(((${1} / 8) % 2)) -eq 0 ]; }
declare -A SUM0
for f in "$TMPD"/img*.* "$TMPD"/ro.*; do SUM0[$f]=$(sha256sum < "$f"); done
diag "images ready in $(( $(date +%s) - T0 )) s"

# ---- N mounts by N dism processes at once ----------------------------------------
mkdir -p "$TMPD/out"
t=$(date +%s)
for ((i = 0; i < N; i++)); do
  ro=; [ "${MODE[i]}" = ro ] && ro=/ReadOnly
  ( dism /Mount-Image /ImageFile:"${IMG[i]}" /Index:1 /MountDir:"$TMPD/m$i" $ro \
      > "$TMPD/out/mount$i" 2>&1; echo $? > "$TMPD/out/mount$i.rc" ) &
done
wait
MOUNT_S=$(( $(date +%s) - t ))
bad=
for ((i = 0; i < N; i++)); do
  [ "$(cat "$TMPD/out/mount$i.rc")" = 0 ] || { bad="$bad $i"; diag "mount $i: $(tail -3 "$TMPD/out/mount$i")"; }
done
is "$N parallel /Mount-Image (${N} processes): every one exited 0" "$bad" ""
diag "$N mounts in $MOUNT_S s"
# The read-only WIM mounts all missed the empty cache at once: one built the
# volume, the others waited for it and reused it.  Each read/write WIM is
# its own file, so its own volume.
built() { grep -c "building the metadata volume .* of $1\$" "$LOG" || true; }
is "$((N / 4)) read-only mounts of one WIM at once: its volume built once" "$(built '.*/ro\.wim')" 1
is "$((N / 8)) read/write WIMs (own files): one volume each" "$(built '.*/img[0-9]*\.wim')" $((N / 8))

# /Get-MountedImageInfo: exactly the N records, each right.
expected=$(for ((i = 0; i < N; i++)); do
  rw=False; [ "${MODE[i]}" = rw ] && rw=True
  printf '%s\t%s\t1\t%s\tOk\n' "$TMPD/m$i" "${IMG[i]}" "$rw"
done | sort)
got=$(dism /Get-MountedImageInfo /Format:json | $PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    print("\t".join(str(m[k]) for k in ("mount_dir", "image_file", "image_index", "read_write", "status")))' | sort)
is "/Get-MountedImageInfo lists the $N mounts: folder, image, index, mode, status Ok" "$got" "$expected"
methods=$(sed -n 's/^attach.method=//p' "$DISM_STATE_DIR"/mounts/*.conf | sort | uniq -c | tr -s ' ')
is "every mount took the loop + FUSE attach path" "$methods" " $N loop"

# Each read/write mount gets a file; each read-only one reads and refuses a write.
bad=
for ((i = 0; i < N; i++)); do
  if [ "${MODE[i]}" = rw ]; then
    echo "written in mount $i" > "$TMPD/m$i/scale-$i.txt" || bad="$bad w$i"
  else
    [ "$(cat "$TMPD/m$i/hello.txt" 2>&1)" = "hello from the image" ] || bad="$bad r$i"
    (echo x > "$TMPD/m$i/x.txt") 2>/dev/null && bad="$bad ro$i"
  fi
done
is "a file written in each read/write mount; each read-only one reads, refuses writes" "$bad" ""

# ---- memory: the servers', ntfs-3g's and the supervisors' RSS ----------------------------
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
pss_of() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }
srv_rss=0 srv_pss=0 srv_n=0
for f in "$DISM_RUN_DIR"/mounts/*/server.pid; do
  p=$(cat "$f"); r=$(rss_of "$p"); [ -n "$r" ] || continue
  srv_rss=$((srv_rss + r)); srv_pss=$((srv_pss + $(pss_of "$p"))); srv_n=$((srv_n + 1))
done
sum_rss() { local p s=0; for p in "$@"; do s=$((s + $(rss_of "$p"))); done; echo $s; }
ntfs_pids=$(pgrep -f "ntfs-3g .* $TMPD/m[0-9]")
sup_pids=$(pgrep -f "dism-supervise .*$DISM_RUN_DIR/")
is "one live server per mount" "$srv_n" "$N"
is "one ntfs-3g per mount" "$(echo "$ntfs_pids" | grep -c .)" "$N"
diag "RSS of the $srv_n servers: $((srv_rss / 1024)) MiB ($((srv_rss / srv_n)) KiB each; PSS $((srv_pss / 1024)) MiB)"
diag "RSS of the ntfs-3g processes: $(( $(sum_rss $ntfs_pids) / 1024 )) MiB; of the supervisors: $(( $(sum_rss $sup_pids) / 1024 )) MiB"
bound=$((N * SERVER_RSS_KIB_PER_MOUNT))
if [ "$SANITIZED" = 1 ]; then
  ok "servers' summed RSS not bounded on an ASan build ($((srv_rss / 1024)) MiB)"
elif [ "$srv_rss" -gt 0 ] && [ "$srv_rss" -le "$bound" ]; then
  ok "the $N servers' summed RSS $((srv_rss / 1024)) MiB <= $((bound / 1024)) MiB"
else
  not_ok "the $N servers' summed RSS $((srv_rss / 1024)) MiB <= $((bound / 1024)) MiB"
fi

# ---- N unmounts at once, half /Commit, half /Discard -------------------------------------
t=$(date +%s)
for ((i = 0; i < N; i++)); do
  how=/Discard; commits $i && how=/Commit
  ( dism /Unmount-Image /MountDir:"$TMPD/m$i" $how > "$TMPD/out/umount$i" 2>&1
    echo $? > "$TMPD/out/umount$i.rc" ) &
done
wait
UMOUNT_S=$(( $(date +%s) - t ))
bad=
for ((i = 0; i < N; i++)); do
  [ "$(cat "$TMPD/out/umount$i.rc")" = 0 ] || { bad="$bad $i"; diag "unmount $i: $(tail -3 "$TMPD/out/umount$i")"; }
done
is "$N parallel /Unmount-Image (half /Commit, half /Discard): every one exited 0" "$bad" ""
diag "$N unmounts in $UMOUNT_S s"
is "/Get-MountedImageInfo lists nothing" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'

# The committed images hold their file; the others are byte-identical.
bad=
for ((i = 0; i < N; i++)); do
  f=${IMG[i]}
  if [ "${MODE[i]}" = rw ] && commits $i; then
    case ${KIND[i]} in
      wim) got=$(wimlib-imagex extract "$f" 1 "/scale-$i.txt" --to-stdout 2>&1) ;;
      *)   got=$(image_file "$f" "scale-$i.txt" 2>&1) ;;
    esac
    [ "$got" = "written in mount $i" ] || { bad="$bad c$i"; diag "image $i: $got"; }
  elif [ "${MODE[i]}" = rw ]; then
    [ "$(sha256sum < "$f")" = "${SUM0[$f]}" ] || bad="$bad d$i"
  fi
done
for f in "$TMPD"/ro.*; do [ "$(sha256sum < "$f")" = "${SUM0[$f]}" ] || bad="$bad $f"; done
is "committed images hold their file; discarded and read-only ones are unchanged" "$bad" ""
check "a committed VHDX passes qemu-img check" qemu-img check -q "${IMG[0]}"
check "a committed WIM passes wimlib-imagex verify" wimlib-imagex verify "${IMG[4]}"

# ---- nothing left -----------------------------------------------------------------------
is "no server process" "$(pgrep -af "dism-nbd-server .*$DISM_RUN_DIR/" || true)" ""
is "no supervisor process" "$(pgrep -af "dism-supervise .*$DISM_RUN_DIR/" || true)" ""
is "no ntfs-3g process" "$(pgrep -af "ntfs-3g .* $TMPD/m[0-9]" || true)" ""
is "no mount under the test's folders (folders, FUSE files)" "$(grep -F " $TMPD/" /proc/mounts || true)" ""
is "no loop device over the test's files" "$(losetup -a 2>/dev/null | grep -F "$TMPD/" || true)" ""
# (the WIM metadata cache may keep finished volumes, never a build in progress)
left=$(find "$DISM_STATE_DIR/mounts" "$DISM_STATE_DIR/scratch" "$DISM_RUN_DIR/mounts" -mindepth 1 2>/dev/null |
       grep -Ev "^$DISM_STATE_DIR/scratch/wim-cache(/\.lock|/[0-9a-f]{16}(/volume|/map)?)?$" || true)
is "no record, overlay or live state" "$left" ""
bad=; for ((i = 0; i < N; i++)); do [ -z "$(ls -A "$TMPD/m$i")" ] || bad="$bad $i"; done
is "every mount folder is empty again" "$bad" ""
diag "wall time of this test: $(( $(date +%s) - T0 )) s"
