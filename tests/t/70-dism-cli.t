#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The dism command: syntax, output, and DISM's rules that need no mount.
# needs-root: builds its test disk with a loop device and an ntfs-3g mount
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$DISM"

make_windows_disk "$TMPD/disk.raw" 32 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/win.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/win.vhd"
cp "$TMPD/win.vhdx" "$TMPD/WIN2.VHDX"
mkdir -p "$TMPD/m1" "$TMPD/full"; touch "$TMPD/full/x"
V=$TMPD/win.vhdx

# run: sets OUT and RC
run() { OUT=$(dism "$@" 2>&1); RC=$?; }

run /?
is "/? exits 0" "$RC" 0
like "/? shows the banner" "$OUT" "Deployment Image Servicing and Management tool"$'\n'"Version: "
like "/? lists the commands" "$OUT" "/Mount-Image.*/Unmount-Image.*/Commit-Image.*/Remount-Image.*/Get-MountedImageInfo.*/Get-ImageInfo.*/Cleanup-Mountpoints"
run /Mount-Image /?
like "/Mount-Image /? is the command's help" "$OUT" "/ImageFile:<path>"
run /unmount-IMAGE /?
like "commands are case-insensitive" "$OUT" "/Commit \\| /Discard"
run /Frobnicate
like "an unknown option is an error" "$OUT" "Error: 0x80070057"
is "  with exit status 87 (low byte of the HRESULT)" "$RC" 87

run /Get-MountedImageInfo
is "/Get-MountedImageInfo with nothing mounted: exit 0" "$RC" 0
like "  says no mounted images, then success" "$OUT" "No mounted images found.*The operation completed successfully."
run /Get-MountedWimInfo /Format:Json
is "legacy /Get-MountedWimInfo + /Format:Json: empty list" "$OUT" '{"mounted_images": []}'
check "the log file is written where /LogPath: says" test -s "$LOG"

run /Get-ImageInfo /ImageFile:"$V"
like "/Get-ImageInfo on a VHDX: index 1" "$OUT" "Index : 1"
like "  name is the file name" "$OUT" "Name : win.vhdx"
like "  size is the virtual size" "$OUT" "Size : 33,554,432 bytes"
run /Get-WimInfo /WimFile:"$TMPD/win.vhd" /Format:JSON
like "/Get-WimInfo /WimFile: on a VHD, JSON" "$OUT" '"index": 1, "type": "vhd", "name": "win.vhd".*"size": 33554432'
run /Get-ImageInfo /ImageFile:"$V" /Index:2
like "/Get-ImageInfo /Index:2 on a VHDX -> 0xc0040005" "$OUT" "Error: 0xc0040005"
run /Get-ImageInfo /ImageFile:"$TMPD/x.wim"
like "/Get-ImageInfo on a missing WIM -> 0x80070002" "$OUT" "Error: 0x80070002"$'\n\n'".*x.wim does not exist"

mount_rc() { run /Mount-Image "$@"; }
mount_rc /ImageFile:"$TMPD/disk.raw" /Index:1 /MountDir:"$TMPD/m1"
like "image without .wim/.vhd/.vhdx extension -> 0x80070057" "$OUT" "Error: 0x80070057.*extension"
mount_rc /ImageFile:"$TMPD/WIN2.VHDX" /Index:2 /MountDir:"$TMPD/m1"
like "upper-case .VHDX is accepted (then index 2 -> 0xc0040005)" "$OUT" "Error: 0xc0040005"
mount_rc /ImageFile:"$TMPD/x.swm" /Index:1 /MountDir:"$TMPD/m1"
like ".swm is refused clearly" "$OUT" "Error: 0x80070057.*split WIM"
mount_rc /ImageFile:"$TMPD/nope.vhdx" /Index:1 /MountDir:"$TMPD/m1"
like "nonexistent image -> 0x80070057" "$OUT" "Error: 0x80070057.*does not exist"
mount_rc /ImageFile:"$V" /Index:1 /MountDir:"$TMPD/nope"
like "nonexistent mount dir -> 0x80070057" "$OUT" "Error: 0x80070057.*does not exist"
mount_rc /ImageFile:"$V" /Index:1 /MountDir:"$V"
like "mount dir that is a file -> 0x80070057" "$OUT" "Error: 0x80070057.*not a directory"
mount_rc /ImageFile:"$V" /Index:1 /MountDir:"$TMPD/full"
like "non-empty mount dir -> 0xc1420114" "$OUT" "Error: 0xc1420114"
is "  exit status 0x14" "$RC" 20
mount_rc /ImageFile:"$V" /Index:1 /MountDir:/
like "mount at / -> refused (root of a file system)" "$OUT" "Error: 0x80070057.*root of a file system"
mount_rc /ImageFile:"$V" /Index:1 /MountDir:/proc
like "mount at a mount point -> refused" "$OUT" "Error: 0x80070057.*root of a file system"
mount_rc /ImageFile:"$V" /Index:2 /MountDir:"$TMPD/m1"
like "VHDX /Index:2 -> 0xc0040005" "$OUT" "Error: 0xc0040005"
mount_rc /ImageFile:"$TMPD/win.vhd" /Name:Windows /MountDir:"$TMPD/m1"
like "VHD /Name: -> 0xc0040006" "$OUT" "Error: 0xc0040006"
mount_rc /ImageFile:"$V" /MountDir:"$TMPD/m1"
like "neither /Index nor /Name -> usage error" "$OUT" "Error: 0x80070057.*/Index"
echo MSWIM > "$TMPD/x.wim"
mount_rc /ImageFile:"$TMPD/x.wim" /Index:1 /MountDir:"$TMPD/m1"
like "WIM mount of a file that is no WIM -> 0x80070570, named" "$OUT" "Error: 0x80070570.*x.wim cannot be opened as a WIM file"

run /Unmount-Image /MountDir:"$TMPD/m1" /Discard
like "unmount of a folder without a mount -> 0xc0040007" "$OUT" "Error: 0xc0040007"
run /Unmount-Image /MountDir:"$TMPD/m1"
like "unmount without /Commit or /Discard -> usage error" "$OUT" "Error: 0x80070057.*/Commit and /Discard"
run /Remount-Image /MountDir:"$TMPD/m1"
like "remount of a folder without a mount -> 0xc142011c" "$OUT" "Error: 0xc142011c"
run /Commit-Image /MountDir:"$TMPD/m1"
like "commit of a folder without a mount -> 0x80070057" "$OUT" "Error: 0x80070057"
run /Cleanup-Wim
is "legacy /Cleanup-Wim with nothing to clean: exit 0" "$RC" 0
check "failed mounts left no record" test -z "$(ls -A "$DISM_STATE_DIR/mounts" 2>/dev/null)"
check "failed mounts left no live state" test -z "$(ls -A "$DISM_RUN_DIR/mounts" 2>/dev/null)"
check "failed mounts left the folder empty" test -z "$(ls -A "$TMPD/m1")"

OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$DISM" /Get-MountedImageInfo 2>&1); RC=$?
like "not root -> 0x800702e4 (ERROR_ELEVATION_REQUIRED)" "$OUT" "Error: 0x800702e4"
