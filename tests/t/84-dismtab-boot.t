#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Mounting at boot from dismtab(5), natively (loop+FUSE here; the VM test
# 85-vm-boot.t does it on /dev/nbdN; 84-dismtab-generator.t checks the units
# themselves):
#  * the units' commands run here in order: a VHDX read/write with commit, a
#    WIM by name read-only in a folder with a space, a VHD read/write "keep,
#    remount" in a folder created by "mkdir"; the files are there; starting
#    again is harmless; ExecStop commits / discards / parks;
#  * a simulated reboot (servers killed -9, mounts lazily dropped, the run dir
#    cleared): the mounts are NeedsRemount; the "remount" entry comes back
#    with its changes through its own ExecStart, an entry without "remount"
#    fails saying how to recover, dism-remount.service's `dism-boot remount
#    --all` brings back the rest.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd systemd-escape
GEN=$BIN/dism-generator BOOT=$BIN/dism-boot
need_file "$GEN" "$BOOT" "$DISM" "$CORPUS/wim/wimlib-mwl-MultiImage.wim"
export SYSTEMD_LOG_TARGET=console   # the generator's messages on stderr, not in the kernel log
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
# unit_cmd UNITFILE KEY: run the unit's KEY= command as systemd would; output
# in $OUT, status in $RC.
unit_cmd() { OUT=$($PY "$ROOT/tests/lib/unit-cmd.py" "$1" "$2" 2>&1); RC=$?; }
unit_key() { sed -n "s/^$2=//p" "$1"; }   # unit_key UNITFILE KEY: its values
unit_for() { echo "$OUTD/$(systemd-escape --path --template=dism-mount@.service "$1")"; }

# ============ 3. running the units' commands ============================================
make_windows_disk "$TMPD/disk.raw" 48 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/a.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/c.vhd"
make_vhdx "$TMPD/disk.raw" "$TMPD/d.vhdx"
cp "$CORPUS/wim/wimlib-mwl-MultiImage.wim" "$TMPD/multi image.wim"; chmod u+w "$TMPD/multi image.wim"
wim_sum=$(sha256sum < "$TMPD/multi image.wim")
mkdir -p "$TMPD/m1" "$TMPD/m 2" "$TMPD/m4"
LOGF=$TMPD/dism.log
esc() { printf '%s' "$1" | sed 's/ /\\040/g'; }
cat > "$TMPD/dismtab" <<EOF
# entries mounted at "boot" by this test
$TMPD/a.vhdx   1   $TMPD/m1   rw,commit,log=$LOGF
$(esc "$TMPD/multi image.wim")  name=Changes  $(esc "$TMPD/m 2")  ro,log=$LOGF
$TMPD/c.vhd    1   $TMPD/m3   rw,keep,remount,mkdir,log=$LOGF
$TMPD/d.vhdx   1   $TMPD/m4   rw,discard,log=$LOGF
EOF
OUTD=$TMPD/units; mkdir -p "$OUTD"
DISMTAB=$TMPD/dismtab DISM_CLI=$DISM DISM_BOOT=$BOOT "$GEN" "$OUTD" 2> "$TMPD/gen.err"
is "generator on the test's dismtab: exit 0, no messages" "$?:$(cat "$TMPD/gen.err")" "0:"
E1=$(unit_for "$TMPD/m1") E2=$(unit_for "$TMPD/m 2") E3=$(unit_for "$TMPD/m3") E4=$(unit_for "$TMPD/m4")
out=$(cd "$OUTD" && systemd-analyze verify --man=no ./*.service 2>&1)
is "  systemd-analyze verify: no warning" "$out" ""
# boot order: follow After= from the unit that follows no other entry
order=() u=
for _ in 1 2 3 4; do
  for f in "$OUTD"/*.service; do
    prev=$(unit_key "$f" After | grep '^dism-mount@' || true)
    if [ "$prev" = "$u" ] && [[ " ${order[*]} " != *" $(basename "$f") "* ]]; then u=$(basename "$f"); order+=("$u"); break; fi
  done
done
is "the After= chain is the file order" "${order[*]}" "$(basename "$E1") $(basename "$E2") $(basename "$E3") $(basename "$E4")"
for u in "${order[@]}"; do
  unit_cmd "$OUTD/$u" ExecStart
  is "ExecStart of $u: exit 0" "$RC" 0 || diag "$OUT"
done
is "m1 (VHDX rw): the image's files" "$(cat "$TMPD/m1/hello.txt" 2>&1)" "hello from the image"
is "  Ok, read/write" "$(status_of "$TMPD/m1")" "Ok"
is "m 2 (WIM by name, ro): image Changes' files" "$(cd "$TMPD/m 2" && find . -type f | LC_ALL=C sort | tr '\n' ' ')" "./B/C.txt ./B/D.ini ./Z.txt "
check "  read-only" bash -c "! touch '$TMPD/m 2/x' 2>/dev/null"
check "m3 (VHD): its folder was created (mkdir) and mounted" mountpoint -q "$TMPD/m3"
is "  the image's files" "$(cat "$TMPD/m3/hello.txt" 2>&1)" "hello from the image"
is "m4 (VHDX rw discard): mounted" "$(cat "$TMPD/m4/hello.txt" 2>&1)" "hello from the image"
unit_cmd "$E1" ExecStart
is "ExecStart again on a live mount: exit 0" "$RC" 0
like "  says it is already mounted" "$OUT" "already mounted at $TMPD/m1 \(status Ok\): nothing to do"
is "  still one mount at m1" "$(dism /Get-MountedImageInfo /Format:json | grep -c "\"$TMPD/m1\"")" 1
run /Unmount-Image /MountDir:"$TMPD/m4" /Discard
run /Mount-Image /ImageFile:"$TMPD/multi image.wim" /Index:1 /MountDir:"$TMPD/m4" /ReadOnly
is "(m4 holds a read-only mount of the WIM's image 1 instead)" "$RC" 0
unit_cmd "$E4" ExecStart
is "ExecStart on a folder holding another mount: exit 1" "$RC" 1
like "  says what is there and what to do" "$OUT" "$TMPD/m4 already holds another mount: $TMPD/multi image.wim index 1 \(Base\), read-only, status Ok; this entry wants $TMPD/d.vhdx index 1 \(read/write\)\. Unmount the other one first"
check "  the other mount is untouched" test -e "$TMPD/m4/A.txt"
run /Unmount-Image /MountDir:"$TMPD/m4" /Discard
unit_cmd "$E4" ExecStart
is "  once it is gone the entry mounts: exit 0" "$RC" 0

echo "committed at shutdown" > "$TMPD/m1/shutdown.txt"
echo "discarded at shutdown" > "$TMPD/m4/junk.txt"
echo "kept across the shutdown" > "$TMPD/m3/kept.txt"
d_sum=$(sha256sum < "$TMPD/d.vhdx")
declare -A stop_out
for ((i=${#order[@]}-1; i>=0; i--)); do
  unit_cmd "$OUTD/${order[$i]}" ExecStop
  is "ExecStop of ${order[$i]} (reverse order): exit 0" "$RC" 0 || diag "$OUT"
  stop_out[$i]=$OUT
done
check "every folder is unmounted" bash -c "! mountpoint -q '$TMPD/m1' && ! mountpoint -q '$TMPD/m 2' && ! mountpoint -q '$TMPD/m3' && ! mountpoint -q '$TMPD/m4'"
is "commit: a.vhdx holds the file written at m1" "$(image_file "$TMPD/a.vhdx" shutdown.txt)" "committed at shutdown"
is "discard: d.vhdx is unchanged" "$(sha256sum < "$TMPD/d.vhdx")" "$d_sum"
is "the WIM is unchanged" "$(sha256sum < "$TMPD/multi image.wim")" "$wim_sum"
is "keep: the VHD's mount is parked, Needs Remount" "$(status_of "$TMPD/m3")" "NeedsRemount"
like "  ExecStop said so" "${stop_out[2]}" "parked $TMPD/m3: unmounted and its server stopped; the changes are kept in .*\.ovl"
is "  no server left" "$(pgrep -f "dism-nbd-server.*$DISM_RUN_DIR" || true)" ""
is "  only its record is left" "$(dism /Get-MountedImageInfo /Format:json | grep -c mount_dir)" 1
unit_cmd "$E3" ExecStart
is "next boot: the keep,remount entry's ExecStart: exit 0" "$RC" 0 || diag "$OUT"
like "  it remounted" "$OUT" "needs a remount .*remounting it with its changes"
is "  Ok" "$(status_of "$TMPD/m3")" "Ok"
is "  the change made before the shutdown is back" "$(cat "$TMPD/m3/kept.txt" 2>&1)" "kept across the shutdown"

# ============ 4. a simulated reboot ============================================================
# m3 (keep,remount) is live again; m1 (rw,commit) is mounted by its unit and
# m5 by hand (not in the dismtab); then the machine "crashes".
unit_cmd "$E1" ExecStart
is "m1 mounted again by its unit" "$RC" 0
unit_cmd "$E2" ExecStart
is "m 2 (the WIM, read-only) too" "$RC" 0
mkdir -p "$TMPD/m5"; make_vhdx "$TMPD/disk.raw" "$TMPD/e.vhdx"
run /Mount-Image /ImageFile:"$TMPD/e.vhdx" /Index:1 /MountDir:"$TMPD/m5"
is "m5 mounted by hand" "$RC" 0
echo "written before the crash" > "$TMPD/m3/crash.txt"
echo "m1 before the crash" > "$TMPD/m1/crash.txt"
echo "m5 before the crash" > "$TMPD/m5/crash.txt"
sync
for c in "$DISM_RUN_DIR"/mounts/*/control.sock; do $PY "$ROOT/tests/lib/ctl.py" "$c" FLUSH >/dev/null; done
simulate_reboot "$TMPD/m1" "$TMPD/m 2" "$TMPD/m3" "$TMPD/m5"
is "after the reboot: m1, m 2, m3, m5 are Needs Remount" \
  "$(status_of "$TMPD/m1") $(status_of "$TMPD/m 2") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" \
  "NeedsRemount NeedsRemount NeedsRemount NeedsRemount"
unit_cmd "$E2" ExecStart
is "boot: the read-only WIM's unit (no remount option): exit 0" "$RC" 0 || diag "$OUT"
like "  a read-only mount has nothing to lose: remounted" "$OUT" "needs a remount .*remounting it \(read-only\)"
is "  Ok, the image's files" "$(status_of "$TMPD/m 2") $(cat "$TMPD/m 2/Z.txt" | wc -c)" "Ok 1"
unit_cmd "$E3" ExecStart
is "boot: m3's unit (remount): exit 0" "$RC" 0 || diag "$OUT"
is "  Ok" "$(status_of "$TMPD/m3")" "Ok"
is "  the file written before the crash is back" "$(cat "$TMPD/m3/crash.txt" 2>&1)" "written before the crash"
is "  and the one from before the clean shutdown" "$(cat "$TMPD/m3/kept.txt" 2>&1)" "kept across the shutdown"
unit_cmd "$E1" ExecStart
is "boot: m1's unit (no remount option): exit 1" "$RC" 1
like "  says it needs a remount and how" "$OUT" "$TMPD/a.vhdx at $TMPD/m1 needs a remount .*Run dism /Remount-Image /MountDir:$TMPD/m1, or add the option 'remount'"
is "  still Needs Remount (nothing lost)" "$(status_of "$TMPD/m1")" "NeedsRemount"
"$BOOT" remount --log "$LOGF" --all > "$TMPD/remount.out" 2>&1
is "dism-remount.service's ExecStart (dism-boot remount --all): exit 0" "$?" 0
like "  it remounted m1 and m5" "$(cat "$TMPD/remount.out")" "remounted $TMPD/m[15].*remounted $TMPD/m[15].*2 mounts needed a remount"
is "  every mount is Ok" "$(status_of "$TMPD/m1") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" "Ok Ok Ok"
is "  m1's file is back" "$(cat "$TMPD/m1/crash.txt" 2>&1)" "m1 before the crash"
is "  m5's file is back" "$(cat "$TMPD/m5/crash.txt" 2>&1)" "m5 before the crash"
unit_cmd "$E1" ExecStart
is "  then m1's unit starts fine (already mounted)" "$RC" 0
"$BOOT" remount --all > "$TMPD/remount.out" 2>&1
like "remount --all with nothing to do" "$(cat "$TMPD/remount.out")" "0 mounts needed a remount"
"$BOOT" park --log "$LOGF" --own > "$TMPD/park.out" 2>&1
is "dism-remount.service's ExecStop (park --own): exit 0" "$?" 0
is "  parked every mount whose server runs in its cgroup (here: all)" \
  "$(status_of "$TMPD/m1") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" "NeedsRemount NeedsRemount NeedsRemount"
"$BOOT" remount --log "$LOGF" "$TMPD/m5" > /dev/null 2>&1
is "dism-boot remount DIR" "$(status_of "$TMPD/m5")" "Ok"
check_fail "dism-boot park of a folder without a mount fails" "$BOOT" park "$TMPD"
check_fail "dism-boot park with no target is a usage error" "$BOOT" park
unit_cmd "$E3" ExecStop
unit_cmd "$E3" ExecStart
dism /Remount-Image /MountDir:"$TMPD/m1" >/dev/null 2>&1
unit_cmd "$E1" ExecStop
is "m1's ExecStop commits after all that" "$RC" 0
is "  a.vhdx has the file from before the crash" "$(image_file "$TMPD/a.vhdx" crash.txt)" "m1 before the crash"
run /Unmount-Image /MountDir:"$TMPD/m5" /Discard
run /Unmount-Image /MountDir:"$TMPD/m3" /Commit
unit_cmd "$E2" ExecStop
# an Invalid mount in an entry's folder: its overlay is gone
unit_cmd "$E4" ExecStart
"$BOOT" park "$TMPD/m4" >/dev/null 2>&1
rm -f "$(sed -n 's/^overlay=//p' "$(grep -l "^mount_dir=$TMPD/m4\$" "$DISM_STATE_DIR"/mounts/*.conf)")"
is "m4 parked and its overlay deleted: Invalid" "$(status_of "$TMPD/m4")" "Invalid"
unit_cmd "$E4" ExecStart
is "  its unit's ExecStart: exit 1" "$RC" 1
like "  says so and what to do" "$OUT" "the mount of $TMPD/d.vhdx at $TMPD/m4 is Invalid .*run dism /Cleanup-Mountpoints"
run /Cleanup-Mountpoints
unit_cmd "$E4" ExecStart
is "  after /Cleanup-Mountpoints it mounts: exit 0" "$RC" 0
unit_cmd "$E4" ExecStop
is "the rest unmounted" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'
is "  c.vhd holds both files" "$(image_file "$TMPD/c.vhd" kept.txt)$(image_file "$TMPD/c.vhd" crash.txt)" \
  "kept across the shutdownwritten before the crash"

