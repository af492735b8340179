#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# End to end with the dism command: mount VHDX/VHD images read/write and
# read-only, see the files (Unicode names, an ADS), commit while mounted,
# commit on unmount, discard, and DISM's rules that need a mount.
# 72-dism-mount-api.t does it through the C API.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$DISM"

make_windows_disk "$TMPD/disk.raw" 64 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/win.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/win.vhd"
mkdir -p "$TMPD"/m{1,2,3,4}
V=$TMPD/win.vhdx M=$TMPD/m1
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
status_rw_of() { dism /Get-MountedImageInfo /Format:json | $PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    if m["mount_dir"] == sys.argv[1]: print(m["status"], m["read_write"])' "$1"; }

# --- read/write mount of a VHDX ---
run /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$M"
is "mount VHDX read/write: exit 0" "$RC" 0
like "  progress lines and success" "$OUT" "Progress: 20.0%.*Progress: 100.0%.*The operation completed successfully."
like "  says which partition was mounted" "$OUT" "Mounted partition 1 .*NTFS.*holds .Windows"
check "  the mount dir is a mount point" mountpoint -q "$M"
is "  hello.txt reads back" "$(cat "$M/hello.txt" 2>&1)" "hello from the image"
is "  Unicode file name" "$(cat "$M/Ünïcødé ✓ файл.txt" 2>&1)" "grüße"
is "  1 MiB file intact" "$(sha256sum < "$M/random.bin" | cut -d' ' -f1)" "$(cat "$TMPD/random.sha256")"
is "  alternate data stream as user.stream xattr" \
  "$($PY -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.stream").decode())' "$M/hello.txt" 2>&1)" "alternate data"
is "  status Ok, read/write" "$(status_rw_of "$M")" "Ok True"
run /Get-MountedImageInfo
like "  /Get-MountedImageInfo in DISM's layout" "$OUT" "Mount Dir : $M"$'\n'"Image File : $V"$'\n'"Image Index : 1"$'\n'"Mounted Read/Write : Yes"$'\n'"Status : Ok"

# --- rules that need a mount ---
run /Mount-Image /ImageFile:"$TMPD/win.vhd" /Index:1 /MountDir:"$M"
like "a folder that holds a dism mount -> 0xc1420113" "$OUT" "Error: 0xc1420113"
run /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$TMPD/m2"
like "second read/write mount of one image -> 0xc1420127" "$OUT" "Error: 0xc1420127"
ln -f "$V" "$TMPD/hardlink.vhdx"
run /Mount-Image /ImageFile:"$TMPD/hardlink.vhdx" /Index:1 /MountDir:"$TMPD/m2"
like "  also through another name (same device+inode)" "$OUT" "Error: 0xc1420127"
rm -f "$TMPD/hardlink.vhdx"
run /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$TMPD/m2" /ReadOnly
like "read-only mount while a read/write one exists -> 0xc1420127" "$OUT" "Error: 0xc1420127"
check "  refused mounts left m2 empty" test -z "$(ls -A "$TMPD/m2")"

# --- writes, commit while mounted, partial unmount ---
echo "written while mounted" > "$M/new.txt"
mkdir -p "$M/Windows/Temp"; echo "ünï" > "$M/Windows/Temp/ünï.txt"
run /Commit-Image /MountDir:"$M"
is "/Commit-Image while mounted: exit 0" "$RC" 0
like "  commit progress relayed" "$OUT" "Progress: 100.0%"
check "  the mount is still usable" test -e "$M/new.txt"
echo "after commit" >> "$M/new.txt"
exec 7<"$M/hello.txt"
run /Unmount-Image /MountDir:"$M" /Commit
like "unmount with a file open -> 0xc1420117" "$OUT" "Error: 0xc1420117"
check "  the mount is intact" mountpoint -q "$M"
is "  and usable, nothing lost" "$(cat "$M/new.txt")" "written while mounted"$'\n'"after commit"
is "  status still Ok" "$(status_rw_of "$M")" "Ok True"
exec 7<&-
run /Unmount-Image /MountDir:"$M" /Commit
is "unmount /Commit once the file is closed: exit 0" "$RC" 0
check "  no longer a mount point" bash -c "! mountpoint -q '$M'"
check "  the folder is empty again" test -z "$(ls -A "$M")"
is "  no record left" "$(ls -A "$DISM_STATE_DIR/mounts" 2>/dev/null)" ""
is "  no overlay left" "$(ls -A "$DISM_STATE_DIR/scratch" 2>/dev/null)" ""
is "  no live state left" "$(ls -A "$DISM_RUN_DIR/mounts" 2>/dev/null)" ""
is "  no server left" "$(pgrep -f "dism-nbd-server.*$DISM_RUN_DIR" || true)" ""
is "the image holds the committed file" "$(image_file "$V" new.txt)" "written while mounted"$'\n'"after commit"
is "  and the Unicode one" "$(image_file "$V" "Windows/Temp/ünï.txt")" "ünï"
is "  and the original files" "$(image_file "$V" hello.txt)" "hello from the image"

# --- discard ---
sum_before=$(sha256sum < "$V")
run /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$M"
is "mount again: exit 0" "$RC" 0
rm -f "$M/hello.txt"; echo junk > "$M/junk.txt"
run /Unmount-Image /MountDir:"$M" /Discard
is "unmount /Discard: exit 0" "$RC" 0
is "  the image file is unchanged" "$(sha256sum < "$V")" "$sum_before"

# --- read-only mounts (VHD) ---
W=$TMPD/win.vhd
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:"$TMPD/m2" /ReadOnly
is "read-only mount of a VHD: exit 0" "$RC" 0
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:"$TMPD/m3" /ReadOnly
is "a second read-only mount of the same VHD: allowed" "$RC" 0
is "  status Ok, read-only" "$(status_rw_of "$TMPD/m3")" "Ok False"
run /Get-MountedImageInfo
like "  listed as Mounted Read/Write : No" "$OUT" "Mounted Read/Write : No"
check_fail "  writing is refused" bash -c "echo x > '$TMPD/m2/x.txt'"
is "  files read" "$(cat "$TMPD/m3/hello.txt")" "hello from the image"
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:"$TMPD/m4"
like "read/write mount while read-only ones exist -> refused (0x80070020)" "$OUT" "Error: 0x80070020"
run /Commit-Image /MountDir:"$TMPD/m2"
like "commit of a read-only mount -> 0x80070005" "$OUT" "Error: 0x80070005.*read-only"
run /Unmount-Image /MountDir:"$TMPD/m2" /Commit
is "unmount /Commit of a read-only mount: exit 0 (nothing to save)" "$RC" 0
run /Unmount-Image /MountDir:"$TMPD/m3" /Discard
is "unmount the other read-only mount" "$RC" 0

is "nothing mounted at the end" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'
