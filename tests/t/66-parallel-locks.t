#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Locking by what is shared (docs/dism-api.md, "Locking"): an operation
# holds its folder and its image, never the whole registry.  A mount is held
# in its middle (DISM_TEST_PAUSE_AT) while other operations run: those on
# other folders and images complete; those on its folder or image wait,
# then meet DISM's rules; a wait is cancelled by SIGINT; the mount in
# progress is not listed and /Cleanup-Mountpoints leaves it alone.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_file "$DISM"

make_windows_disk "$TMPD/disk.raw" 64 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/a.vhdx"
make_vhdx "$TMPD/disk.raw" "$TMPD/b.vhdx"
rm -f "$TMPD/disk.raw"
mkdir -p "$TMPD"/m{1,2,3,4,5}
A=$TMPD/a.vhdx B=$TMPD/b.vhdx M1=$TMPD/m1 M2=$TMPD/m2 M3=$TMPD/m3 M4=$TMPD/m4 M5=$TMPD/m5
sum_a=$(sha256sum < "$A")
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
# Wait (up to 60 s) for file to exist.
wait_for() { local i; for i in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
running() { kill -0 "$1" 2>/dev/null; }

# --- a read/write mount of a.vhdx held just after it claimed its record ---
P=$TMPD/pause-a
DISM_TEST_PAUSE_AT="DismMountImage:recorded:$P" dism /Mount-Image /ImageFile:"$A" /Index:1 \
  /MountDir:"$M1" >"$TMPD/a.out" 2>&1 &
pid_a=$!
check "mount A (a.vhdx at m1) reaches its pause" wait_for "$P"
like "  the hook announced itself" "$(cat "$TMPD/a.out")" "test hook DISM_TEST_PAUSE_AT=.* is in force"
check "  its record is written (state mounting)" \
  grep -qx "state=mounting" "$DISM_STATE_DIR"/mounts/*.conf

run /Get-MountedImageInfo
is "/Get-MountedImageInfo meanwhile: exit 0" "$RC" 0
unlike "  the mount in progress is not listed" "$OUT" "Mount Dir : $M1"

# Another image, another folder: not held up by A.
run /Mount-Image /ImageFile:"$B" /Index:1 /MountDir:"$M2"
is "mount B (b.vhdx at m2) while A is held: exit 0" "$RC" 0
is "  B's status Ok" "$(status_of "$M2")" "Ok"
check "  A is still held" running "$pid_a"

# The same image, another folder: waits for A, then meets the rule.
dism /Mount-Image /ImageFile:"$A" /Index:1 /MountDir:"$M3" /ReadOnly >"$TMPD/c.out" 2>&1 &
pid_c=$!
# The same folder, another image: waits for A too.
dism /Mount-Image /ImageFile:"$B" /Index:1 /MountDir:"$M1" /ReadOnly >"$TMPD/d.out" 2>&1 &
pid_d=$!
# A wait cancelled by SIGINT ends at once with ERROR_CANCELLED.
# (dism itself, not the shell function: $! must be the process that gets SIGINT)
"$DISM" /LogPath:"$LOG" /Mount-Image /ImageFile:"$A" /Index:1 /MountDir:"$M4" /ReadOnly \
  >"$TMPD/e.out" 2>&1 &
pid_e=$!
sleep 1
check "the same image's mount waits" running "$pid_c"
check "the same folder's mount waits" running "$pid_d"
check "a third waiter waits" running "$pid_e"
kill -INT "$pid_e"
wait "$pid_e"; rc_e=$?
isnt "  SIGINT ends its wait: non-zero exit" "$rc_e" 0
like "  ERROR_CANCELLED, while waiting" "$(cat "$TMPD/e.out")" "Error: 0x800704c7.*waiting for another operation"
check "  m4 untouched" test -z "$(ls -A "$M4")"

run /Cleanup-Mountpoints
is "/Cleanup-Mountpoints while A is held: exit 0" "$RC" 0
check "  A's record is left alone" grep -qx "state=mounting" "$DISM_STATE_DIR"/mounts/*.conf
check "  B's mount is left alone" mountpoint -q "$M2"
run /Unmount-Image /MountDir:"$M2" /Discard
is "unmount B while A is held: exit 0" "$RC" 0
check "  A is still held" running "$pid_a"

rm -f "$P"
wait "$pid_a"; rc_a=$?
is "A goes on once released: exit 0" "$rc_a" 0
is "  A's status Ok, read/write" "$(status_of "$M1")" "Ok"
wait "$pid_c"; rc_c=$?
isnt "the same image's mount, after A: refused" "$rc_c" 0
like "  already mounted read/write (0xc1420127)" "$(cat "$TMPD/c.out")" "Error: 0xc1420127"
wait "$pid_d"; rc_d=$?
isnt "the same folder's mount, after A: refused" "$rc_d" 0
like "  the folder holds a mount (0xc1420113)" "$(cat "$TMPD/d.out")" "Error: 0xc1420113"
check "  m3 untouched" test -z "$(ls -A "$M3")"

# --- an unmount held in its middle: a commit of the same mount waits ---
echo "written in A" > "$M1/a.txt"
P=$TMPD/pause-u
DISM_TEST_PAUSE_AT="DismUnmountImage:locked:$P" dism /Unmount-Image /MountDir:"$M1" /Commit \
  >"$TMPD/u.out" 2>&1 &
pid_u=$!
check "unmount of A reaches its pause" wait_for "$P"
dism /Commit-Image /MountDir:"$M1" >"$TMPD/k.out" 2>&1 &
pid_k=$!
run /Mount-Image /ImageFile:"$B" /Index:1 /MountDir:"$M5" /ReadOnly
is "a read-only mount of b.vhdx meanwhile: exit 0" "$RC" 0
sleep 0.5
check "the commit of the mount being unmounted waits" running "$pid_k"
rm -f "$P"
wait "$pid_u"; is "the unmount completes" "$?" 0
wait "$pid_k"; rc_k=$?
isnt "  the commit after it finds no mount" "$rc_k" 0
run /Unmount-Image /MountDir:"$M5" /Discard
is "unmount the read-only mount of b.vhdx" "$RC" 0
isnt "a.vhdx holds the commit" "$(sha256sum < "$A")" "$sum_a"
run /Mount-Image /ImageFile:"$A" /Index:1 /MountDir:"$M1" /ReadOnly
is "  mounted again read-only" "$RC" 0
is "  a.txt is there" "$(cat "$M1/a.txt" 2>&1)" "written in A"
run /Unmount-Image /MountDir:"$M1" /Discard
is "  unmounted" "$RC" 0

# --- nothing left ---
is "no record left" "$(ls -A "$DISM_STATE_DIR/mounts")" ""
is "no live part left" "$(ls -A "$DISM_RUN_DIR/mounts" 2>/dev/null)" ""
is "no mount left" "$(grep -c "$TMPD" /proc/mounts)" 0
