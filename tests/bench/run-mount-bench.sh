#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench (second half): the mount path beside qemu doing the same by hand.
#   image: 4 GiB dynamic VHDX, MBR + one NTFS partition holding 1 GiB of files
#   ours:  dism /Mount-Image (server + FUSE file + loop + ntfs-3g on this
#          machine; /dev/nbdN where nbd.ko exists), write 256 MiB,
#          dism /Unmount-Image /Commit (merges the overlay into the VHDX)
#   peer:  qemu-storage-daemon exporting the VHDX writable through FUSE,
#          losetup over the partition, ntfs-3g; write 256 MiB; umount,
#          losetup -d, stop the daemon (qemu writes in place: no commit step)
# Also the time to read the whole 1 GiB tree through each mount (cold cache).
# Not a test: prints figures for docs/benchmarks.md.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DISM=$ROOT/$BUILD/bin/dism
W=$(mktemp -d /var/tmp/dism-mbench.XXXXXX)
export DISM_RUN_DIR=$W/run DISM_STATE_DIR=$W/state
cleanup() {
  set +e
  mountpoint -q "$W/m" && umount "$W/m"
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null
  [ -n "${qsd:-}" ] && kill "$qsd" 2>/dev/null && wait "$qsd" 2>/dev/null
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
for t in qemu-img qemu-storage-daemon sfdisk mkntfs ntfs-3g losetup; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

echo "== preparing a 4 GiB VHDX: MBR, NTFS partition, 1 GiB of files"
raw=$W/disk.raw
truncate -s 4G "$raw"
printf 'label: dos\nstart=2048, type=7\n' | sfdisk -q "$raw"
loopdev=$(losetup -f --show -o 1048576 "$raw")
mkntfs -q -F -f -L BENCH "$loopdev" >/dev/null
mkdir -p "$W/m"
ntfs-3g "$loopdev" "$W/m"
mkdir -p "$W/m/Windows/System32" "$W/m/data"
for i in $(seq 1 16); do head -c 64M /dev/urandom > "$W/m/data/f$i.bin"; done
for i in $(seq 1 2000); do echo "small file $i" > "$W/m/Windows/System32/s$i.txt"; done
umount "$W/m"; losetup -d "$loopdev"; loopdev=
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$raw" "$W/img.vhdx"
rm -f "$raw"
head -c 256M /dev/urandom > "$W/payload"
cp "$W/img.vhdx" "$W/pristine.vhdx"

run_dism() {
  cp "$W/pristine.vhdx" "$W/img.vhdx"
  drop_caches
  local t0=$(now)
  "$DISM" /Mount-Image /ImageFile:"$W/img.vhdx" /Index:1 /MountDir:"$W/m" >/dev/null
  ours_mount+=($(since "$t0"))
  drop_caches
  t0=$(now); tar -cf - -C "$W/m" . | cat > /dev/null; ours_read+=($(since "$t0"))
  t0=$(now); cp "$W/payload" "$W/m/new.bin"; sync -f "$W/m/new.bin"; ours_write+=($(since "$t0"))
  t0=$(now)
  "$DISM" /Unmount-Image /MountDir:"$W/m" /Commit >/dev/null
  ours_commit+=($(since "$t0"))
}
run_qemu() {
  cp "$W/pristine.vhdx" "$W/img.vhdx"
  : > "$W/qemu.fuse"
  drop_caches
  local t0=$(now)
  qemu-storage-daemon \
    --blockdev driver=file,node-name=file,filename="$W/img.vhdx",cache.direct=off \
    --blockdev driver=vhdx,node-name=disk,file=file \
    --export type=fuse,id=exp,node-name=disk,mountpoint="$W/qemu.fuse",writable=on &
  qsd=$!
  for _ in $(seq 500); do grep -q " $W/qemu.fuse " /proc/self/mounts && break; sleep 0.01; done
  loopdev=$(losetup -f --show -o 1048576 "$W/qemu.fuse")
  ntfs-3g -o windows_names,streams_interface=xattr,noatime "$loopdev" "$W/m"
  qemu_mount+=($(since "$t0"))
  drop_caches
  t0=$(now); tar -cf - -C "$W/m" . | cat > /dev/null; qemu_read+=($(since "$t0"))
  t0=$(now); cp "$W/payload" "$W/m/new.bin"; sync -f "$W/m/new.bin"; qemu_write+=($(since "$t0"))
  t0=$(now)
  umount "$W/m"; losetup -d "$loopdev"; loopdev=
  kill "$qsd"; wait "$qsd" || true; qsd=
  qemu_commit+=($(since "$t0"))
}
ours_mount=() ours_read=() ours_write=() ours_commit=()
qemu_mount=() qemu_read=() qemu_write=() qemu_commit=()
# Alternate the two, twice each, both from a fresh copy of the image; the
# table shows the better of the two runs of each.
for round in 1 2; do
  echo "== round $round: qemu-storage-daemon + FUSE + loop + ntfs-3g by hand"
  run_qemu
  echo "== round $round: dism"
  run_dism
done
best() { printf '%s\n' "$@" | sort -g | head -1; }

r() { printf '%.2f' "$1"; }
echo
printf '%-44s %10s %10s\n' "" "dism" "qemu"
row() { printf '%-44s %10s %10s\n' "$1" "$(r "$(best $2)")" "$(r "$(best $3)")"; }
row "call to usable mount (s)" "${ours_mount[*]}" "${qemu_mount[*]}"
row "read the whole tree, cold cache (s)" "${ours_read[*]}" "${qemu_read[*]}"
row "write 256 MiB + sync (s)" "${ours_write[*]}" "${qemu_write[*]}"
row "unmount (+ commit for dism) (s)" "${ours_commit[*]}" "${qemu_commit[*]}"
