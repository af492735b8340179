#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# DISM's C API from a C program (tests/drivers/test-dismapi.c): init/shutdown
# codes, DismDelete, per-thread error messages, the mount rules, cancel
# before start, sessions.  No mount is made here (72-dism-mount-api.t does).
# needs-root: builds its test disk with a loop device and an ntfs-3g mount
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$TBIN/test-dismapi"

make_windows_disk "$TMPD/disk.raw" 32 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/win.vhdx"
mkdir -p "$TMPD/work"

"$TBIN/test-dismapi" rules "$TMPD/win.vhdx" "$TMPD/work" > "$TMPD/out" 2>&1
is "test-dismapi rules: exit status" "$?" 0
relay < "$TMPD/out"
