#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# End to end through DISM's C API (tests/drivers/test-dismapi.c): mount a
# VHDX read/write, a session, commit while mounted, a cancelled unmount,
# unmount; the commit reaches the image.  72-dism-mount-cli.t does it with
# the dism command.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$TBIN/test-dismapi"

make_windows_disk "$TMPD/disk.raw" 64 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/api.vhdx"
mkdir -p "$TMPD/m5"

"$TBIN/test-dismapi" mount "$TMPD/api.vhdx" "$TMPD/m5" > "$TMPD/out" 2>&1
is "test-dismapi mount: exit status" "$?" 0
relay < "$TMPD/out"
is "the C API's commit reached the image" "$(image_file "$TMPD/api.vhdx" from-api.txt)" "written through the C API test"

is "nothing mounted at the end" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'
