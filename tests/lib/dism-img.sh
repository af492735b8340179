# SPDX-License-Identifier: GPL-2.0-or-later
# dism-img.sh - test images for the dism tests (sourced after tap.sh).
#
# make_windows_disk RAW [MiB]: an MBR disk whose one NTFS partition (from
# 1 MiB) holds \Windows\System32, hello.txt with an alternate data stream
# "stream", a Unicode file name and a 1 MiB file of known bytes.
# make_vhdx RAW OUT / make_vhd RAW OUT: qemu-img conversions.
# image_file VHD(X) PATH: print PATH's content from inside the image's NTFS
# partition (converted back to raw and mounted read-only).
# status_of DIR: the status /Get-MountedImageInfo gives the mount at DIR.
# simulate_reboot DIR...: what a reboot does to live mounts (servers killed,
# the folders DIR... and the servers' FUSE files unmounted, loop devices
# detached, $DISM_RUN_DIR cleared); records and overlays stay.

need_cmd sfdisk mkntfs ntfs-3g losetup qemu-img python3 mountpoint

make_windows_disk() {
  local raw=$1 mib=${2:-64} loop mnt=$TMPD/mk.$$
  truncate -s "${mib}M" "$raw" || return 1
  printf 'label: dos\nstart=2048, type=7\n' | sfdisk -q "$raw" >/dev/null || return 1
  loop=$(losetup -f --show -o $((2048 * 512)) "$raw") || return 1
  mkntfs -q -F -f -L DISMTEST -p 2048 -H 255 -S 63 "$loop" >/dev/null 2>&1 || { losetup -d "$loop"; return 1; }
  mkdir -p "$mnt"
  ntfs-3g "$loop" "$mnt" || { losetup -d "$loop"; return 1; }
  mkdir -p "$mnt/Windows/System32"
  echo "hello from the image" > "$mnt/hello.txt"
  echo "grüße" > "$mnt/Ünïcødé ✓ файл.txt"
  head -c 1048576 /dev/urandom > "$mnt/random.bin"
  sha256sum < "$mnt/random.bin" | cut -d' ' -f1 > "$TMPD/random.sha256"
  python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.stream", b"alternate data")' "$mnt/hello.txt"
  umount "$mnt"
  losetup -d "$loop"
}

make_vhdx() { qemu-img convert -f raw -O vhdx -o subformat=dynamic "$1" "$2"; }
make_vhd()  { qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$1" "$2"; }

image_file() {
  local img=$1 path=$2 raw=$TMPD/peek.raw mnt=$TMPD/peek.mnt loop rc=0
  qemu-img convert -O raw "$img" "$raw" || return 1
  loop=$(losetup -f --show -r -o $((2048 * 512)) "$raw") || return 1
  mkdir -p "$mnt"
  if ntfs-3g -o ro "$loop" "$mnt"; then
    cat "$mnt/$path" 2>/dev/null || rc=1
    umount "$mnt"
  else
    rc=1
  fi
  losetup -d "$loop"
  rm -f "$raw"
  return $rc
}

# relay: the C program's "ok - x" / "not ok - x" lines as TAP
relay() {
  local line
  while IFS= read -r line; do
    case "$line" in
      "ok - "*) ok "${line#ok - }" ;;
      "not ok - "*) not_ok "${line#not ok - }" ;;
      *) diag "$line" ;;
    esac
  done
}
# Registry and live state of these tests live under $TMPD, not /run, /var.
export DISM_RUN_DIR=$TMPD/run DISM_STATE_DIR=$TMPD/state
DISM=$BIN/dism
LOG=$TMPD/dism.log
dism() { "$DISM" /LogPath:"$LOG" "$@"; }

# Undo whatever a failed test left mounted (registered as a cleanup).
dism_test_cleanup() {
  local d
  for d in "$TMPD"/m*; do
    [ -d "$d" ] || continue
    "$DISM" /Unmount-Image /MountDir:"$d" /Discard >/dev/null 2>&1
    mountpoint -q "$d" && umount -l "$d"
  done
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  for f in "$DISM_RUN_DIR"/mounts/*/server.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  return 0
}
tap_cleanup dism_test_cleanup

simulate_reboot() {
  local f d conf dev
  for f in "$DISM_RUN_DIR"/mounts/*/server.pid; do kill -9 "$(cat "$f")"; done
  sleep 0.3
  for d in "$@"; do umount -l "$d"; done
  for conf in "$DISM_STATE_DIR"/mounts/*.conf; do
    dev=$(sed -n 's/^attach.fs_dev=//p' "$conf")
    [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
  done
  # the servers' FUSE files (a dead FUSE mount does not even stat: no glob)
  for f in $(awk -v r="$DISM_RUN_DIR/mounts/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo); do
    umount -l "$f"
  done
  rm -rf "$DISM_RUN_DIR"
}

status_of() { dism /Get-MountedImageInfo /Format:json | $PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    if m["mount_dir"] == sys.argv[1]: print(m["status"])' "$1"; }
