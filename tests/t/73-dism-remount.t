#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Mounts survive the process and a (simulated) reboot: status Needs Remount,
# servicing refused with DISMAPI_E_NEEDS_REMOUNT, /Remount-Image and
# DismRemountImage bring the mounts back with their changes; and
# /Cleanup-Mountpoints removes only Invalid mounts.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$DISM" "$TBIN/test-dismapi"

make_windows_disk "$TMPD/disk.raw" 48 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/a.vhdx"
make_vhdx "$TMPD/disk.raw" "$TMPD/b.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/c.vhd"
mkdir -p "$TMPD"/m{1,2,3}
run() { OUT=$(dism "$@" 2>&1); RC=$?; }

run /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$TMPD/m1"
is "mount a.vhdx read/write at m1" "$RC" 0
run /Mount-Image /ImageFile:"$TMPD/b.vhdx" /Index:1 /MountDir:"$TMPD/m2"
is "mount b.vhdx read/write at m2" "$RC" 0
run /Mount-Image /ImageFile:"$TMPD/c.vhd" /Index:1 /MountDir:"$TMPD/m3" /ReadOnly
is "mount c.vhd read-only at m3" "$RC" 0
echo "survives a reboot" > "$TMPD/m1/keep.txt"
echo "b's change" > "$TMPD/m2/b.txt"
sync
for c in "$DISM_RUN_DIR"/mounts/*/control.sock; do $PY "$ROOT/tests/lib/ctl.py" "$c" FLUSH >/dev/null; done

# --- simulated reboot: servers killed, devices gone, /run cleared ---
simulate_reboot "$TMPD"/m{1,2,3}

is "after the reboot m1 is Needs Remount" "$(status_of "$TMPD/m1")" "NeedsRemount"
is "  m2 too" "$(status_of "$TMPD/m2")" "NeedsRemount"
is "  the read-only m3 too" "$(status_of "$TMPD/m3")" "NeedsRemount"
run /Get-MountedImageInfo
like "  listed as 'Status : Needs Remount'" "$OUT" "Status : Needs Remount"
"$TBIN/test-dismapi" expect-needs-remount "$TMPD/m1" > "$TMPD/out" 2>&1
is "test-dismapi expect-needs-remount: exit status" "$?" 0
relay < "$TMPD/out"
run /Commit-Image /MountDir:"$TMPD/m1"
like "/Commit-Image on it -> 0xc1510114" "$OUT" "Error: 0xc1510114"
run /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$TMPD/m2"
like "its image still counts as mounted read/write -> 0xc1420113/0xc1420127" "$OUT" "Error: 0xc14201(13|27)"

run /Remount-Image /MountDir:"$TMPD/m1"
is "/Remount-Image m1: exit 0" "$RC" 0 || diag "$OUT"
is "  status Ok again" "$(status_of "$TMPD/m1")" "Ok"
is "  the change made before the reboot is there" "$(cat "$TMPD/m1/keep.txt" 2>&1)" "survives a reboot"
"$TBIN/test-dismapi" remount "$TMPD/m3" > "$TMPD/out" 2>&1
is "DismRemountImage m3 (read-only): exit status" "$?" 0
relay < "$TMPD/out"
is "  m3 status Ok" "$(status_of "$TMPD/m3")" "Ok"

# --- cleanup: only Invalid mounts go ---
rm -f "$TMPD/b.vhdx"
is "b.vhdx deleted: m2 is Invalid" "$(status_of "$TMPD/m2")" "Invalid"
stale=$DISM_RUN_DIR/mounts/00000000-0000-4000-8000-000000000000
mkdir -p "$stale"
run /Remount-Image /MountDir:"$TMPD/m2"
like "an Invalid mount cannot be remounted" "$OUT" "Error: 0x80004005.*Cleanup-Mountpoints"
b_overlay=$(sed -n 's/^overlay=//p' "$(grep -l "mount_dir=$TMPD/m2\$" "$DISM_STATE_DIR"/mounts/*.conf)")
check "  its overlay exists before cleanup" test -e "$b_overlay"
run /Cleanup-Mountpoints
is "/Cleanup-Mountpoints: exit 0" "$RC" 0
is "  m2 is gone from the list" "$(status_of "$TMPD/m2")" ""
check "  its overlay is deleted" test ! -e "$b_overlay"
check "  the stale live state without a record is removed" test ! -e "$stale"
is "  m1 (Ok) is untouched" "$(status_of "$TMPD/m1")" "Ok"
is "  m1's files still there" "$(cat "$TMPD/m1/keep.txt" 2>&1)" "survives a reboot"
is "  m3 (Ok) is untouched" "$(status_of "$TMPD/m3")" "Ok"

# --- a NeedsRemount mount survives cleanup ---
pid=$(cat "$DISM_RUN_DIR"/mounts/*/server.pid | head -1)
m3id=$(basename "$(grep -l "mount_dir=$TMPD/m3\$" "$DISM_STATE_DIR"/mounts/*.conf)" .conf)
kill -9 "$(cat "$DISM_RUN_DIR/mounts/$m3id/server.pid")"; sleep 0.3
umount -l "$TMPD/m3"; umount -l "$DISM_RUN_DIR/mounts/$m3id/disk"
is "m3 after its server died: Needs Remount" "$(status_of "$TMPD/m3")" "NeedsRemount"
run /Cleanup-Mountpoints
is "  cleanup leaves it" "$(status_of "$TMPD/m3")" "NeedsRemount"
run /Unmount-Image /MountDir:"$TMPD/m3" /Discard
is "  a Needs Remount mount can be unmounted with /Discard" "$RC" 0

run /Unmount-Image /MountDir:"$TMPD/m1" /Commit
is "unmount m1 /Commit" "$RC" 0
is "a.vhdx holds the change made before the reboot" "$(image_file "$TMPD/a.vhdx" keep.txt)" "survives a reboot"
is "nothing mounted at the end" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'
is "no record, no overlay left" "$(ls -A "$DISM_STATE_DIR/mounts" "$DISM_STATE_DIR/scratch" | grep -v : | grep -v '^$' || true)" ""
