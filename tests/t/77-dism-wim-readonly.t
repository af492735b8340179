#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# End to end: WIM images mounted read-only through a synthesized NTFS volume.
# Every WIM of the corpus that wimlib accepts, by index and by name, against
# wim/listings/<name>.tsv (and the ImageX inputs in wim/reference/); the
# damaged ones refused with nothing left behind; integrity; split WIMs;
# /Get-ImageInfo; a WIM captured from an NTFS volume keeps its streams, hard
# links and names.  77-dism-wim-readwrite.t mounts them read/write.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/wim-mount.sh"

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
# File data is read from the WIM when it is read: a damaged blob (bad
# compressed data; a SHA-1 mismatch of data read whole) fails that file's
# reads with EIO, and the image still mounts.  Damaged metadata is refused.
for n in wimlib-tests-corrupted_file_1 wimlib-tests-corrupted_file_2; do
  run /Mount-Image /ImageFile:"$W/$n.wim" /Index:1 /MountDir:"$M" /ReadOnly
  is "$n: mounts (its file data is read lazily)" "$RC" 0
  like "  its damaged file reads EIO" "$(cat "$M/file" 2>&1)" "Input/output error"
  like "  the server log names the WIM" "$(cat "$DISM_RUN_DIR"/mounts/*/server.log 2>/dev/null)" "$n.wim"
  dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
  nothing_left "$n"
done
run /Mount-Image /ImageFile:"$W/wimlib-tests-cyclic.wim" /Index:1 /MountDir:"$M" /ReadOnly
like "wimlib-tests-cyclic: refused with ERROR_FILE_CORRUPT naming the WIM" "$OUT" "Error: 0x80070570.*wimlib-tests-cyclic.wim"
nothing_left "wimlib-tests-cyclic"
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
  "Error: 0x80070070.*not enough space in the scratch directory.*big.wim: its metadata volume takes about [0-9]{6,} MiB"
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
