#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Full disks.  The scratch file system (a small loop-mounted ext4) fills up
# under read/write VHDX and WIM mounts: writes that do not fit fail, what was
# flushed before is kept, the mount stays usable, commits and /Discard work.
# The image's file system fills up during a commit (VHDX, VHD, WIM; both
# /Commit-Image and /Unmount-Image /Commit): ERROR_DISK_FULL, the image
# byte-identical; once space is freed the same commit completes.
# needs-root: loop devices, ext4 and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/wim-mount.sh"
need_cmd mkfs.ext4 fallocate dd sync

# small_fs DIR MiB: a fresh ext4 (4 KiB blocks, none reserved) loop-mounted at DIR.
small_fs() {
  local img=$TMPD/$(basename "$1").ext4 loop
  truncate -s "$2M" "$img" && mkfs.ext4 -q -F -m 0 -b 4096 "$img" >/dev/null 2>&1 || return 1
  loop=$(losetup -f --show "$img") || return 1
  tap_cleanup "losetup -d $loop"
  mkdir -p "$1" && mount "$loop" "$1" || return 1
  tap_cleanup "umount -l $1"
}
# fill DIR: take every free block of DIR's file system (DIR/filler.N).
fill() {
  local i a
  for i in 1 2 3 4 5 6; do
    a=$(( $(stat -f -c '%a * %S' "$1") ))
    [ "$a" -gt 0 ] || break
    fallocate -l "$a" "$1/filler.$i" 2>/dev/null || fallocate -l 4096 "$1/filler.$i" 2>/dev/null
  done
  [ "$(stat -f -c %a "$1")" -eq 0 ]
}
free_space() { rm -f "$1"/filler.*; sync -f "$1"; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# write_sync FILE MiB: random bytes, fsync'd; prints their sha256.
write_sync() {
  head -c "$(($2 << 20))" /dev/urandom > "$TMPD/payload" &&
    dd if="$TMPD/payload" of="$1" bs=1M conv=fsync status=none && sha "$TMPD/payload"
}
# ro_sha IMAGE FILE [INDEX]: sha256 of FILE in a fresh read-only mount.
ro_sha() {
  local out
  dism /Mount-Image /ImageFile:"$1" /Index:"${3:-1}" /MountDir:"$TMPD/m3" /ReadOnly >/dev/null 2>&1 ||
    { echo "read-only mount failed"; return 1; }
  out=$(sha "$TMPD/m3/$2" 2>&1)
  dism /Unmount-Image /MountDir:"$TMPD/m3" /Discard >/dev/null 2>&1
  echo "$out"
}

make_windows_disk "$TMPD/disk.raw" 64 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/win.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/win.vhd"
SCR=$TMPD/scratch
mkdir -p "$TMPD"/m{4,5,6,7,8}
small_fs "$SCR" 128 || { not_ok "a 128 MiB ext4 scratch"; exit 1; }

# ---- (a) the scratch file system fills up under read/write VHDX and WIM mounts -----
# scratch_full KIND IMAGE INDEX: a mount on the small scratch; a file flushed, the
# scratch filled, a write that does not fit; the mount still reads, deletes, commits,
# takes a smaller write once space is freed, commits on unmount; then /Discard.
scratch_full() {
  local kind=$1 img=$2 idx=$3 kept small out rc sum
  run /Mount-Image /ImageFile:"$img" /Index:"$idx" /MountDir:"$M" /ScratchDir:"$SCR"
  is "$kind: read/write mount with a 128 MiB scratch" "$RC" 0
  kept=$(write_sync "$M/kept.bin" 4)
  is "  4 MiB written and fsync'd before the scratch is full" "$(sha "$M/kept.bin")" "$kept"
  check "  the rest of the scratch taken" fill "$SCR"
  out=$(write_sync "$M/big.bin" 8 2>&1); rc=$?
  is "  an 8 MiB write that does not fit fails" "$rc" 1
  like "  with ENOSPC or EIO" "$out" "No space left on device|Input/output error"
  is "  the earlier file reads back" "$(sha "$M/kept.bin")" "$kept"
  check "  a delete works on the full scratch" rm -f "$M/big.bin"
  run /Commit-Image /MountDir:"$M"
  is "  /Commit-Image with the scratch still full" "$RC" 0
  [ "$RC" = 0 ] || diag "$OUT"
  free_space "$SCR"
  small=$(write_sync "$M/small.bin" 1)
  is "  a smaller write once space is freed" "$(sha "$M/small.bin")" "$small"
  run /Unmount-Image /MountDir:"$M" /Commit
  is "  /Unmount-Image /Commit" "$RC" 0
  is "  a fresh read-only mount: the flushed file" "$(ro_sha "$img" kept.bin "$idx")" "$kept"
  is "  and the one written after space came back" "$(ro_sha "$img" small.bin "$idx")" "$small"

  sum=$(sha "$img")
  run /Mount-Image /ImageFile:"$img" /Index:"$idx" /MountDir:"$M" /ScratchDir:"$SCR"
  is "$kind: mounted again on the same scratch" "$RC" 0
  fill "$SCR"
  check_fail "  a write that does not fit fails" write_sync "$M/junk.bin" 8
  run /Unmount-Image /MountDir:"$M" /Discard
  is "  /Unmount-Image /Discard on the full scratch" "$RC" 0
  is "  the image is unchanged" "$(sha "$img")" "$sum"
  free_space "$SCR"
  nothing_left "$kind on a full scratch"
}
M=$TMPD/m4
scratch_full VHDX "$TMPD/win.vhdx" 1
M=$TMPD/m5
cp "$W/wimlib-mwl-MultiImage.wim" "$TMPD/rw.wim"; chmod u+w "$TMPD/rw.wim"
scratch_full WIM "$TMPD/rw.wim" 2

# ---- (a) the overlay itself: room for a write's data but not for its map page -------
# A fresh map page (granules past the first 63.5 MiB) needs its two slots; with one
# free block the write must be refused, not acknowledged and then unflushable.
DT=$TBIN/disk-tool
need_file "$DT"
OFS=$TMPD/ovlfs
small_fs "$OFS" 8 || { not_ok "an 8 MiB ext4 for an overlay"; exit 1; }
truncate -s 256M "$TMPD/base.raw"
head -c 4096 /dev/urandom > "$TMPD/w4k"
check "overlay created, a write in its first map page" "$DT" -N "$OFS/o.ovl" "$TMPD/base.raw" write 0 "$TMPD/w4k"
check "  the rest of that file system taken" fill "$OFS"
fallocate -p -o 0 -l 4096 "$OFS/filler.1"
is "  the overlay's file system has one free block" "$(stat -f -c "%a %S" "$OFS")" "1 4096"
out=$("$DT" -O "$OFS/o.ovl" "$TMPD/base.raw" write $((200 << 20)) "$TMPD/w4k" 2>&1); rc=$?
is "  a write into a fresh map page fails" "$rc" 1
like "  the write itself is refused with ENOSPC (not acknowledged, then lost at the flush)" \
  "$out" "^disk-tool: write: .*No space left on device"
free_space "$OFS"
check "  the same write once space is freed" "$DT" -O "$OFS/o.ovl" "$TMPD/base.raw" write $((200 << 20)) "$TMPD/w4k"
is "  it reads back after a reopen" "$("$DT" -O "$OFS/o.ovl" "$TMPD/base.raw" read $((200 << 20)) 4096 | sha256sum | cut -d' ' -f1)" "$(sha "$TMPD/w4k")"
is "  and so does the first one" "$("$DT" -O "$OFS/o.ovl" "$TMPD/base.raw" read 0 4096 | sha256sum | cut -d' ' -f1)" "$(sha "$TMPD/w4k")"

# ---- (b) the image's file system fills up during a commit ---------------------------
IFS_=$TMPD/imgfs
small_fs "$IFS_" 64 || { not_ok "a 64 MiB ext4 for the images"; exit 1; }
# image_full KIND IMAGE FILE: write FILE into a read/write mount, fill the image's
# file system, try both commits (ERROR_DISK_FULL, the image unchanged), free the
# space, remount and commit on unmount; FILE then reads back.
image_full() {
  local kind=$1 img=$2 file=$3 idx=${4:-1} sum want st
  run /Mount-Image /ImageFile:"$img" /Index:"$idx" /MountDir:"$M"
  is "$kind: read/write mount of the image on a small file system" "$RC" 0
  want=$(write_sync "$M/$file" 12)
  check "  the rest of its file system taken" fill "$IFS_"
  sum=$(sha "$img")
  run /Commit-Image /MountDir:"$M"
  like "  /Commit-Image on a full file system -> ERROR_DISK_FULL" "$OUT" "Error: 0x80070070"
  diag "$(grep -i 'error' <<<"$OUT")"
  is "  the image is byte-identical" "$(sha "$img")" "$sum"
  is "  the mount still reads the file" "$(sha "$M/$file")" "$want"
  run /Unmount-Image /MountDir:"$M" /Commit
  like "  /Unmount-Image /Commit -> ERROR_DISK_FULL" "$OUT" "Error: 0x80070070"
  is "  the image is byte-identical" "$(sha "$img")" "$sum"
  st=$(status_of "$M")
  like "  the mount needs a remount" "$st" "NeedsRemount|Invalid"
  free_space "$IFS_"
  run /Remount-Image /MountDir:"$M"
  is "  /Remount-Image once space is freed" "$RC" 0
  run /Unmount-Image /MountDir:"$M" /Commit
  is "  /Unmount-Image /Commit completes" "$RC" 0
  is "  a fresh read-only mount reads the file" "$(ro_sha "$img" "$file" "$idx")" "$want"
}
M=$TMPD/m6
cp "$TMPD/win.vhdx" "$IFS_/win.vhdx"
image_full VHDX "$IFS_/win.vhdx" grown.bin
rm -f "$IFS_/win.vhdx"
M=$TMPD/m7
cp "$TMPD/win.vhd" "$IFS_/win.vhd"
image_full VHD "$IFS_/win.vhd" grown.bin
rm -f "$IFS_/win.vhd"
M=$TMPD/m8
cp "$TMPD/rw.wim" "$IFS_/rw.wim"
image_full WIM "$IFS_/rw.wim" grown.bin 2
check "  wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$IFS_/rw.wim"
