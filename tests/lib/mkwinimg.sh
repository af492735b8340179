#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# mkwinimg.sh KIND OUT - build a small raw disk laid out like a Windows disk,
# for the attach tests (needs root for the ntfs-3g mounts that fill NTFS).
#
#   gpt      64 MiB GPT: 1 ESP (FAT) 8M, 2 MSR 4M, 3 NTFS "WIN" 20M holding
#            \Windows\System32, 4 NTFS "DATA" ~31M (bigger, no \Windows)
#   gpt4k    the same with 4096-byte logical sectors
#   mbr      64 MiB MBR: 1 FAT32 8M, 2 NTFS "WIN" 20M with \Windows,
#            3 extended holding 5 NTFS "DATA" ~35M (logical, no \Windows)
#   data     GPT: 1 NTFS 12M and 2 NTFS 20M, neither with \Windows
#   whole    16 MiB NTFS on the whole disk (no partition table), \windows in
#            lower case
#   fatonly  MBR with one FAT partition
# Every NTFS volume gets /dismtest.txt naming its label.  With MKWIN_CONFIG=DIR
# in the environment, the files of DIR (test registry hives) are copied into
# \Windows\System32\config of the volume holding \Windows.
set -euo pipefail
KIND=$1 OUT=$2
WORK=$(mktemp -d /tmp/mkwinimg.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
LOOPDEV=
trap 'mountpoint -q "$MNT" && umount "$MNT"; [ -n "$LOOPDEV" ] && losetup -d "$LOOPDEV"; rm -rf "$WORK"' EXIT

# ntfs OUT START_SECTOR SECTORS SECTOR_SIZE LABEL WINDIR: make an NTFS volume
# of SECTORS sectors at START_SECTOR in OUT; WINDIR ("" for none) is created.
ntfs() {
  local out=$1 start=$2 n=$3 ss=$4 label=$5 windir=$6 img=$WORK/part.img
  rm -f "$img"
  truncate -s $((n * ss)) "$img"
  mkntfs -q -F -Q -s "$ss" -L "$label" -p "$start" -H 255 -S 63 "$img" >/dev/null 2>&1
  ntfs-3g "$img" "$MNT"
  echo "$label" > "$MNT/dismtest.txt"
  if [ -n "$windir" ]; then
    mkdir -p "$MNT/$windir/System32"
    echo "not really a kernel" > "$MNT/$windir/System32/ntoskrnl.exe"
    if [ -n "${MKWIN_CONFIG:-}" ]; then
      mkdir -p "$MNT/$windir/System32/config"
      cp "$MKWIN_CONFIG"/* "$MNT/$windir/System32/config/"
    fi
  fi
  umount "$MNT"
  dd if="$img" of="$out" bs="$ss" seek="$start" conv=notrunc status=none
  rm -f "$img"
}
fat() {
  local out=$1 start=$2 n=$3 ss=$4 img=$WORK/fat.img
  rm -f "$img"
  truncate -s $((n * ss)) "$img"
  mkfs.vfat -S "$ss" -n ESP "$img" >/dev/null
  dd if="$img" of="$out" bs="$ss" seek="$start" conv=notrunc status=none
  rm -f "$img"
}
# start and size (in sectors) of partition N as sfdisk sees it
part() { sfdisk -J "$1" 2>/dev/null | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$2-1]; print(p['start'], p['size'])"; }

rm -f "$OUT"
case "$KIND" in
  gpt|gpt4k)
    ss=512; [ "$KIND" = gpt4k ] && ss=4096
    truncate -s 64M "$OUT"
    # this sfdisk has no --sector-size: a loop device with 4096-byte
    # sectors gives it the geometry of a 4Kn disk
    tgt=$OUT
    if [ "$ss" = 4096 ]; then tgt=$(losetup -b 4096 -f --show "$OUT"); LOOPDEV=$tgt; fi
    sfdisk -q "$tgt" 2>/dev/null <<EOF
label: gpt
size=8MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition"
size=4MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name="Microsoft reserved partition"
size=20MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"
type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Data"
EOF
    read -r s1 n1 < <(part "$tgt" 1)
    read -r s3 n3 < <(part "$tgt" 3)
    read -r s4 n4 < <(part "$tgt" 4)
    if [ -n "$LOOPDEV" ]; then losetup -d "$LOOPDEV"; LOOPDEV=; fi
    fat "$OUT" "$s1" "$n1" "$ss"
    ntfs "$OUT" "$s3" "$n3" "$ss" WIN Windows
    ntfs "$OUT" "$s4" "$n4" "$ss" DATA "" ;;
  mbr)
    truncate -s 64M "$OUT"
    sfdisk -q "$OUT" <<EOF
label: dos
size=8MiB, type=c
size=20MiB, type=7, bootable
type=5
type=7
EOF
    read -r s n < <(part "$OUT" 1); fat "$OUT" "$s" "$n" 512
    read -r s n < <(part "$OUT" 2); ntfs "$OUT" "$s" "$n" 512 WIN Windows
    read -r s n < <(part "$OUT" 4); ntfs "$OUT" "$s" "$n" 512 DATA "" ;;
  data)
    truncate -s 40M "$OUT"
    sfdisk -q "$OUT" <<EOF
label: gpt
size=12MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
EOF
    read -r s n < <(part "$OUT" 1); ntfs "$OUT" "$s" "$n" 512 SMALL ""
    read -r s n < <(part "$OUT" 2); ntfs "$OUT" "$s" "$n" 512 BIG "" ;;
  whole)
    truncate -s 16M "$OUT"
    ntfs "$OUT" 0 $((16 * 2048)) 512 WHOLE windows ;;
  fatonly)
    truncate -s 24M "$OUT"
    printf 'label: dos\nsize=16MiB, type=c\n' | sfdisk -q "$OUT"
    read -r s n < <(part "$OUT" 1); fat "$OUT" "$s" "$n" 512 ;;
  *) echo "mkwinimg.sh: unknown kind $KIND" >&2; exit 2 ;;
esac
