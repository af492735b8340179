#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# End to end: WIM images mounted read/write through a synthesized NTFS
# volume: commit (replace in place, /Append, while mounted), discard, dedup
# and /CheckIntegrity, cancel while the volume is built, kill -9 during a
# commit, a reboot and /Remount-Image.  77-dism-wim-readonly.t mounts the
# corpus read-only.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/wim-mount.sh"

# ---- read/write: commit replaces the image in place ---------------------------------
RW=$TMPD/rw.wim
cp "$W/wimlib-mwl-MultiImage.wim" "$RW"; chmod u+w "$RW"
before1=$(apply_list "$RW" 1 1); before3=$(apply_list "$RW" 3 3)
exp=$TMPD/expected2
wimlib-imagex apply "$RW" 2 "$exp" --no-acls >/dev/null 2>&1
change_tree() {  # the same edits, on the mount and on the expected tree
  echo "new file" > "$1/new.txt"
  echo "changed" > "$1/Z.txt"
  rm -f "$1/B/D.ini"
  mv "$1/B/C.txt" "$1/B/C renamed.txt"
  mkdir -p "$1/Neu"; echo "grüße" > "$1/Neu/ünï.txt"
}
change_tree "$exp"
run /Mount-Image /ImageFile:"$RW" /Index:2 /MountDir:"$M"
is "read/write mount of index 2" "$RC" 0
run /Mount-Image /ImageFile:"$RW" /Index:1 /MountDir:"$TMPD/m2"
like "  a second read/write mount of the WIM -> 0xc1420127" "$OUT" "Error: 0xc1420127"
run /Mount-Image /ImageFile:"$RW" /Index:2 /MountDir:"$TMPD/m2" /ReadOnly
is "  a read-only mount beside it is allowed" "$RC" 0
change_tree "$M"
run /Unmount-Image /MountDir:"$M" /Commit
is "/Unmount-Image /Commit" "$RC" 0
check "  wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$RW"
is "  wimlib's apply of index 2 shows exactly the changes" "$(apply_list "$RW" 2 2)" "$(listing "$exp" 2)"
is "  index 1 untouched" "$(apply_list "$RW" 1 1)" "$before1"
is "  index 3 untouched" "$(apply_list "$RW" 3 3)" "$before3"
is "  still 3 images, names kept" "$(wiminfo "$RW" | sed -n 's/^Name: *//p' | tr '\n' ' ')" "Base Changes Delta "
check "  the read-only mount still sees the image as it was mounted" test -e "$TMPD/m2/B/D.ini"
dism /Unmount-Image /MountDir:"$TMPD/m2" /Discard >/dev/null 2>&1
nothing_left "after commit"

# ---- /Append ---------------------------------------------------------------------------
run /Mount-Image /ImageFile:"$RW" /Name:Base /MountDir:"$M"
echo "appended" > "$M/A.txt"
run /Unmount-Image /MountDir:"$M" /Commit /Append
is "/Unmount-Image /Commit /Append" "$RC" 0
is "  a new last image \"Base (2)\"" "$(wiminfo "$RW" | sed -n 's/^Name: *//p' | tr '\n' ' ')" "Base Changes Delta Base (2) "
is "  it holds the change" "$(wimlib-imagex extract "$RW" 4 /A.txt --to-stdout 2>/dev/null)" "appended"
is "  the original image is as it was" "$(apply_list "$RW" 1 1)" "$before1"
check "  wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$RW"

# ---- discard ------------------------------------------------------------------------------
sum=$(sha256sum < "$RW")
run /Mount-Image /ImageFile:"$RW" /Index:1 /MountDir:"$M"
rm -f "$M/A.txt"; echo junk > "$M/junk.txt"
run /Unmount-Image /MountDir:"$M" /Discard
is "/Discard: exit 0" "$RC" 0
is "  the WIM is byte-identical" "$(sha256sum < "$RW")" "$sum"
nothing_left "after discard"

# ---- DismCommitImage while mounted (/Commit-Image) --------------------------------------
run /Mount-Image /ImageFile:"$RW" /Index:3 /MountDir:"$M"
echo "first" > "$M/live.txt"
run /Commit-Image /MountDir:"$M"
is "/Commit-Image while mounted: exit 0" "$RC" 0
check "  the mount is usable afterwards" test -e "$M/live.txt"
echo "second" >> "$M/live.txt"
is "  the WIM holds the first write" "$(wimlib-imagex extract "$RW" 3 /live.txt --to-stdout 2>/dev/null)" "first"
exec 7<"$M/live.txt"
run /Commit-Image /MountDir:"$M"
like "  with a file open: refused with ERROR_BUSY" "$OUT" "Error: 0x800700aa"
check "  and the mount is intact" test -e "$M/live.txt"
exec 7<&-
run /Unmount-Image /MountDir:"$M" /Commit
is "  unmount /Commit" "$RC" 0
is "  the WIM holds both writes" "$(wimlib-imagex extract "$RW" 3 /live.txt --to-stdout 2>/dev/null)" "first"$'\n'"second"
check "  wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$RW"

# ---- dedup and /CheckIntegrity on commit ------------------------------------------------
src=$TMPD/src; mkdir -p "$src"
head -c 8M /dev/urandom > "$src/big.bin"; echo small > "$src/small.txt"
wimlib-imagex capture "$src" "$TMPD/dedup.wim" Dedup --compress=none >/dev/null 2>&1
size0=$(stat -c %s "$TMPD/dedup.wim")
run /Mount-Image /ImageFile:"$TMPD/dedup.wim" /Index:1 /MountDir:"$M"
echo changed > "$M/small.txt"
run /Unmount-Image /MountDir:"$M" /Commit /CheckIntegrity
is "one-file change, /Commit /CheckIntegrity" "$RC" 0
size1=$(stat -c %s "$TMPD/dedup.wim")
check "  the WIM grew by far less than the image ($size0 -> $size1)" test $((size1 - size0)) -lt $((1024 * 1024))
like "  it has an integrity table now" "$(wiminfo "$TMPD/dedup.wim")" "Integrity info"
check "  wimlib-imagex verify accepts it" wimlib-imagex verify "$TMPD/dedup.wim"
is "  big.bin unchanged" "$(wimlib-imagex extract "$TMPD/dedup.wim" 1 /big.bin --to-stdout | sha256sum)" "$(sha256sum < "$src/big.bin")"

# ---- cancel (SIGINT -> the cancel event) while the metadata volume is built -----------------
# (30000 files: the build takes seconds, file data does not count)
mkdir -p "$TMPD/src4"
for d in $(seq 1 60); do mkdir "$TMPD/src4/d$d"; (cd "$TMPD/src4/d$d" && touch $(seq -f "f%g.txt" 1 500)); done
wimlib-imagex capture "$TMPD/src4" "$TMPD/cancel.wim" Cancel --compress=none >/dev/null 2>&1
rm -rf "$TMPD/src4"
"$DISM" /LogPath:"$LOG" /Mount-Image /ImageFile:"$TMPD/cancel.wim" /Index:1 /MountDir:"$M" /ReadOnly > "$TMPD/cancel.out" 2>&1 &
pid=$!
for ((t = 0; t < 2000; t++)); do grep -Eq "Progress: (9|[1-4][0-9])\." "$TMPD/cancel.out" 2>/dev/null && break; sleep 0.005; done
kill -INT $pid; wait $pid; RC=$?
is "SIGINT while the metadata volume is built: cancelled (exit 199)" "$RC" 199
like "  ERROR_CANCELLED, during the build" "$(cat "$TMPD/cancel.out")" "Error: 0x800704c7.*while the image's metadata volume was built"
nothing_left "after the cancel"
rm -f "$TMPD/cancel.wim"

# ---- kill -9 during a commit: the WIM still verifies ----------------------------------------
run /Mount-Image /ImageFile:"$TMPD/dedup.wim" /Index:1 /MountDir:"$M"
head -c 160M /dev/urandom > "$TMPD/large.bin"; cp "$TMPD/large.bin" "$M/large.bin"
"$DISM" /LogPath:"$TMPD/kill.log" /Unmount-Image /MountDir:"$M" /Commit >/dev/null 2>&1 &
pid=$!
# kill it as soon as it logs that the commit began
for ((t = 0; t < 2000; t++)); do grep -q "committing" "$TMPD/kill.log" 2>/dev/null && break; sleep 0.005; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
grep -q "committed into" "$TMPD/kill.log" && diag "(the commit had finished before the kill)"
check "kill -9 during /Unmount-Image /Commit: wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$TMPD/dedup.wim"
# (an interrupted append may leave bytes past the old end: the WIM is then
# logically, not byte for byte, the old one)
old_tree="$(wimlib-imagex dir "$TMPD/dedup.wim" 1 2>/dev/null | sort | tr '\n' ' ')"
if [ "$old_tree" = "/ /big.bin /small.txt " ]; then
  ok "  it holds the old image (the commit did not complete)"
elif [ "$(wimlib-imagex extract "$TMPD/dedup.wim" 1 /large.bin --to-stdout 2>/dev/null | sha256sum)" = "$(sha256sum < "$TMPD/large.bin")" ]; then
  ok "  it holds the whole new image (the commit completed)"
else
  not_ok "  it holds the old image or the whole new one"; diag "tree: $old_tree"
fi
is "  small.txt is intact either way" "$(wimlib-imagex extract "$TMPD/dedup.wim" 1 /small.txt --to-stdout 2>/dev/null)" "changed"
dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
dism /Cleanup-Mountpoints >/dev/null 2>&1
mountpoint -q "$M" && umount -l "$M"
nothing_left "after the killed commit and a discard"

# ---- a reboot: the volume is kept and /Remount-Image serves it again ------------------
run /Mount-Image /ImageFile:"$RW" /Index:1 /MountDir:"$M"
echo "survives a reboot" > "$M/keep.txt"; sync
simulate_reboot "$M"
is "after a (simulated) reboot: Needs Remount" "$(status_of "$M")" "NeedsRemount"
run /Remount-Image /MountDir:"$M"
is "/Remount-Image: exit 0" "$RC" 0
is "  the change made before the reboot is there" "$(cat "$M/keep.txt" 2>&1)" "survives a reboot"
run /Unmount-Image /MountDir:"$M" /Commit
is "  unmount /Commit" "$RC" 0
is "  the WIM holds it" "$(wimlib-imagex extract "$RW" 1 /keep.txt --to-stdout 2>/dev/null)" "survives a reboot"
cp "$RW" "$TMPD/gone.wim"
run /Mount-Image /ImageFile:"$TMPD/gone.wim" /Index:1 /MountDir:"$M" /ReadOnly
rm -f "$TMPD/gone.wim"
is "a mount whose WIM was deleted is Invalid" "$(status_of "$M")" "Invalid"
run /Cleanup-Mountpoints
is "/Cleanup-Mountpoints: exit 0" "$RC" 0
nothing_left "cleanup (the Invalid mount's volume too)"

