#!/usr/bin/env bash
# End to end: WIM images mounted through a synthesized NTFS volume.  Every
# WIM of the corpus that wimlib accepts, read-only, by index and by name,
# against wim/listings/<name>.tsv (and the ImageX inputs in wim/reference/);
# the damaged ones refused with nothing left behind; integrity; split WIMs;
# read/write: commit (replace, append, while mounted), discard, dedup; a WIM
# captured from an NTFS volume keeps its streams, hard links and names.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd wimlib-imagex wiminfo unzip sha256sum
need_file "$DISM" "$CORPUS/wim/listings"
W=$CORPUS/wim
mkdir -p "$TMPD"/m{1,2,3}
M=$TMPD/m1
run() { OUT=$(dism "$@" 2>&1); RC=$?; }

# listing DIR IMAGE: the tree as the corpus listings write it (image, type,
# path, size, sha256 of the unnamed stream), sorted by path.
listing() {
  $PY "$ROOT/tests/lib/tree-listing.py" "$1" "$2"
}
# expected NAME IMAGE: that image's lines of the corpus listing, sorted alike.
expected() {
  $PY "$ROOT/tests/lib/listing-expected.py" "$W/listings/$1.tsv" "$2"
}
nothing_left() {  # nothing_left WHAT: no mount, record, volume or live state
  local left
  left=$(ls -A "$DISM_STATE_DIR/mounts" "$DISM_STATE_DIR/scratch" "$DISM_RUN_DIR/mounts" 2>/dev/null | grep -v '^/\|^$' || true)
  if mountpoint -q "$M" || [ -n "$left" ] || [ -n "$(ls -A "$M")" ]; then
    not_ok "$1: nothing left behind"; diag "left: $left"
  else
    ok "$1: nothing left behind"
  fi
}
# apply_list WIM INDEX: wimlib's own extraction of an image, as a listing.
apply_list() {
  local d=$TMPD/apply.$$
  rm -rf "$d"
  wimlib-imagex apply "$1" "$2" "$d" --no-acls >/dev/null 2>&1 || { echo "apply failed"; return 1; }
  listing "$d" "$3"
  rm -rf "$d"
}

# ---- every WIM of the corpus that wimlib accepts, read-only --------------------
bad=" wimlib-tests-corrupted_file_1 wimlib-tests-corrupted_file_2 wimlib-tests-cyclic wimlib-mwl-VerifyFail "
for f in "$W"/*.wim; do
  n=$(basename "$f" .wim)
  [[ $bad == *" $n "* ]] && continue
  count=$(wiminfo "$f" | sed -n 's/^Image Count: *//p')
  for ((i = 1; i <= count; i++)); do
    run /Mount-Image /ImageFile:"$f" /Index:$i /MountDir:"$M" /ReadOnly
    if [ $RC -ne 0 ]; then not_ok "$n index $i: mount read-only"; diag "$OUT"; continue; fi
    is "$n index $i: tree, sizes and hashes equal the listing" "$(listing "$M" $i)" "$(expected "$n" $i)"
    case $n in
      imagex-archive*)
        z=${n#imagex-}; z=${z%%-*}
        ref=$TMPD/ref/$z
        [ -d "$ref" ] || { mkdir -p "$ref" && unzip -q "$W/reference/$z.zip" -d "$ref"; }
        check "  equals reference/$z.zip (names, directories, bytes)" diff -r "$ref" "$M" ;;
      imagex-simple*)
        z=${n#imagex-}; z=${z%%-*}
        check "  equals reference/$z.dat byte for byte" cmp "$W/reference/$z.dat" "$M/$z.dat" ;;
    esac
    run /Unmount-Image /MountDir:"$M" /Discard
    [ $RC -eq 0 ] || { not_ok "$n index $i: unmount"; diag "$OUT"; }
  done
done
nothing_left "after the corpus"

# ---- by name --------------------------------------------------------------------
for spec in "wimlib-mwl-MultiImage:Changes:2" "wimlib-mwl-MultiImage:Delta:3" \
            "wimlib-mwl-LZMS:Sample:1" "imagex-archive1-lzx:Multiple_files_test__archive1.zip:1"; do
  IFS=: read -r n name i <<<"$spec"
  run /Mount-Image /ImageFile:"$W/$n.wim" /Name:"$name" /MountDir:"$M" /ReadOnly
  is "$n by name \"$name\": mounted" "$RC" 0
  is "  it is index $i" "$(listing "$M" $i)" "$(expected "$n" $i)"
  dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
done
run /Mount-Image /ImageFile:"$W/wimlib-mwl-MultiImage.wim" /Name:NoSuchImage /MountDir:"$M" /ReadOnly
like "an unknown name -> DISMAPI_E_INVALID_IMAGE_NAME" "$OUT" "Error: 0xc0040006"
run /Mount-Image /ImageFile:"$W/wimlib-mwl-MultiImage.wim" /Index:4 /MountDir:"$M" /ReadOnly
like "an unknown index -> DISMAPI_E_INVALID_IMAGE_INDEX" "$OUT" "Error: 0xc0040005"

# ---- damaged WIMs, integrity, split WIMs ------------------------------------------
for n in wimlib-tests-corrupted_file_1 wimlib-tests-corrupted_file_2 wimlib-tests-cyclic; do
  run /Mount-Image /ImageFile:"$W/$n.wim" /Index:1 /MountDir:"$M" /ReadOnly
  like "$n: refused with ERROR_FILE_CORRUPT naming the WIM" "$OUT" "Error: 0x80070570.*$n.wim"
  nothing_left "$n"
done
run /Mount-Image /ImageFile:"$W/wimlib-mwl-VerifyFail.wim" /Index:1 /MountDir:"$M" /ReadOnly /CheckIntegrity
like "VerifyFail /CheckIntegrity: refused, integrity check named" "$OUT" "Error: 0x80070570.*integrity check"
nothing_left "VerifyFail"
run /Mount-Image /ImageFile:"$W/wimlib-mwl-VerifySuccess.wim" /Index:1 /MountDir:"$M" /ReadOnly /CheckIntegrity
is "VerifySuccess /CheckIntegrity: mounts" "$RC" 0
is "  and its tree is right" "$(listing "$M" 1)" "$(expected wimlib-mwl-VerifySuccess 1)"
dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
# A WIM whose XML claims more than the scratch directory can hold (a lie, or a
# real image too big for it): refused before anything is built or mounted.
mkdir -p "$TMPD/big/src"; echo small > "$TMPD/big/src/a.txt"
wimlib-imagex capture "$TMPD/big/src" "$TMPD/big/big.wim" big >/dev/null
wimlib-imagex info "$TMPD/big/big.wim" 1 --image-property TOTALBYTES=9000000000000000 >/dev/null
big_sum=$(sha256sum < "$TMPD/big/big.wim")
run /Mount-Image /ImageFile:"$TMPD/big/big.wim" /Index:1 /MountDir:"$M" /ReadOnly
like "an image larger than the scratch space -> ERROR_DISK_FULL, sizes named" "$OUT" \
  "Error: 0x80070070.*not enough space in the scratch directory.*big.wim: its files take about 85830688[0-9]{2} MiB"
nothing_left "too big for the scratch directory"
is "  the WIM is untouched" "$(sha256sum < "$TMPD/big/big.wim")" "$big_sum"
run /Mount-Image /ImageFile:"$W/wimlib-mwl-split/Split.swm" /Index:1 /MountDir:"$M" /ReadOnly
like "a .swm is refused: split WIM" "$OUT" "Error: 0x80070057.*split WIM"
cp "$W/wimlib-mwl-split/Split.swm" "$TMPD/split-part.wim"
run /Mount-Image /ImageFile:"$TMPD/split-part.wim" /Index:1 /MountDir:"$M" /ReadOnly
like "a split part named .wim is refused too" "$OUT" "Error: 0x80070057.*split WIM"
nothing_left "refused mounts"

# ---- /Get-ImageInfo -------------------------------------------------------------------
run /Get-ImageInfo /ImageFile:"$W/wimlib-mwl-MultiImage.wim"
like "/Get-ImageInfo lists every image (index, name, size)" "$OUT" \
  "Index : 1"$'\n'"Name : Base"$'\n'"Description : "$'\n'"Size : 3 bytes.*Index : 3"$'\n'"Name : Delta"
run /Get-ImageInfo /ImageFile:"$W/wimlib-mwl-MultiImage.wim" /Index:3
like "/Get-ImageInfo /Index:3 gives the details" "$OUT" "Name : Delta.*Directories : 2"$'\n'"Files : 4"
run /Get-ImageInfo /ImageFile:"$W/wimlib-mwl-BootLZX.wim" /Name:Sample01
like "  /Name, boot image" "$OUT" "Index : 1.*WIM Bootable : Yes"

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

# ---- cancel (SIGINT -> the cancel event) while the volume is being built -------------------
mkdir -p "$TMPD/src4"; head -c 256M /dev/urandom > "$TMPD/src4/big.bin"
wimlib-imagex capture "$TMPD/src4" "$TMPD/cancel.wim" Cancel --compress=none >/dev/null 2>&1
rm -rf "$TMPD/src4"
"$DISM" /LogPath:"$LOG" /Mount-Image /ImageFile:"$TMPD/cancel.wim" /Index:1 /MountDir:"$M" /ReadOnly > "$TMPD/cancel.out" 2>&1 &
pid=$!
for ((t = 0; t < 2000; t++)); do grep -Eq "Progress: (9|[1-4][0-9])\." "$TMPD/cancel.out" && break; sleep 0.005; done
kill -INT $pid; wait $pid; RC=$?
is "SIGINT while the image is applied: cancelled (exit 199)" "$RC" 199
like "  ERROR_CANCELLED, during the synthesis" "$(cat "$TMPD/cancel.out")" "Error: 0x800704c7.*while the image was applied"
nothing_left "after the cancel"
rm -f "$TMPD/cancel.wim"

# ---- kill -9 during a commit: the WIM still verifies ----------------------------------------
run /Mount-Image /ImageFile:"$TMPD/dedup.wim" /Index:1 /MountDir:"$M"
head -c 160M /dev/urandom > "$TMPD/large.bin"; cp "$TMPD/large.bin" "$M/large.bin"
"$DISM" /LogPath:"$TMPD/kill.log" /Unmount-Image /MountDir:"$M" /Commit >/dev/null 2>&1 &
pid=$!
# kill it as soon as it logs that the capture began
for ((t = 0; t < 2000; t++)); do grep -q "capturing" "$TMPD/kill.log" 2>/dev/null && break; sleep 0.005; done
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
status_of() { dism /Get-MountedImageInfo /Format:json | $PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    if m["mount_dir"] == sys.argv[1]: print(m["status"])' "$1"; }
run /Mount-Image /ImageFile:"$RW" /Index:1 /MountDir:"$M"
echo "survives a reboot" > "$M/keep.txt"; sync
for f in "$DISM_RUN_DIR"/mounts/*/server.pid; do kill -9 "$(cat "$f")"; done
sleep 0.3
umount -l "$M"
for conf in "$DISM_STATE_DIR"/mounts/*.conf; do
  dev=$(sed -n 's/^attach.fs_dev=//p' "$conf"); [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
done
for f in $(awk -v r="$DISM_RUN_DIR/mounts/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo); do
  umount -l "$f"
done
rm -rf "$DISM_RUN_DIR"
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

# ---- a WIM captured from an NTFS volume: streams, hard links, Unicode names ----------
vol=$TMPD/ntfs.img mnt=$TMPD/ntfs.mnt
truncate -s 64M "$vol"; mkntfs -F -Q -q "$vol" >/dev/null 2>&1; mkdir -p "$mnt"
if ntfs-3g -o streams_interface=xattr "$vol" "$mnt"; then
  echo "main data" > "$mnt/file.txt"
  $PY -c 'import os,sys; os.setxattr(sys.argv[1], "user.stream", b"alternate data")' "$mnt/file.txt"
  ln "$mnt/file.txt" "$mnt/link.txt"
  echo "unicode" > "$mnt/Ünïcødé ✓ файл.txt"
  umount "$mnt"
fi
wimlib-imagex capture "$vol" "$TMPD/cap.wim" Captured >/dev/null 2>&1
run /Mount-Image /ImageFile:"$TMPD/cap.wim" /Name:Captured /MountDir:"$M" /ReadOnly
is "a WIM captured from NTFS mounts" "$RC" 0
is "  the ADS is the user.stream xattr" \
  "$($PY -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.stream").decode())' "$M/file.txt" 2>&1)" "alternate data"
is "  the hard link: link count 2" "$(stat -c %h "$M/file.txt")" 2
is "  the Unicode name" "$(cat "$M/Ünïcødé ✓ файл.txt" 2>&1)" "unicode"
dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
nothing_left "at the end"
