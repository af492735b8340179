#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The README's first command: make a sample Windows-style VHDX (MBR, one
# NTFS partition holding \Windows and a few files), mount it with
# `dism /Mount-Image`, list it, write a file, unmount with /Commit, show the
# change is in the VHDX, and show the same image over NBD with nbdinfo.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/$BUILD/bin
work=$(mktemp -d /tmp/dism-demo.XXXXXX)
srv=
cleanup() {
  set +e
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  mountpoint -q "$work/mnt" && "$BIN/dism" /Unmount-Image /MountDir:"$work/mnt" /Discard >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] || { echo "demo: mounting needs root: sudo make demo" >&2; exit 1; }
for t in qemu-img mkntfs ntfs-3g sfdisk nbdinfo losetup; do
  command -v $t >/dev/null || { echo "demo: $t missing: run 'sudo make deps'" >&2; exit 1; }
done

echo "== A sample image: 64 MiB VHDX, MBR, NTFS partition with \\Windows and a few files"
truncate -s 64M "$work/disk.raw"
printf 'label: dos\nstart=2048, type=7\n' | sfdisk -q "$work/disk.raw"
loop=$(losetup -f --show -o 1048576 "$work/disk.raw")
mkntfs -q -F -f -L DISMDEMO "$loop" >/dev/null
mkdir -p "$work/mnt"
ntfs-3g "$loop" "$work/mnt"
mkdir -p "$work/mnt/Windows/System32"
echo "Hello from a Windows image" > "$work/mnt/readme.txt"
echo "[boot loader]" > "$work/mnt/Windows/win.ini"
umount "$work/mnt"; losetup -d "$loop"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$work/disk.raw" "$work/sample.vhdx"
rm -f "$work/disk.raw"
"$BIN/dism-imageinfo" "$work/sample.vhdx"

echo
echo "== dism /Mount-Image /ImageFile:sample.vhdx /Index:1 /MountDir:mnt"
"$BIN/dism" /Mount-Image /ImageFile:"$work/sample.vhdx" /Index:1 /MountDir:"$work/mnt"
echo
"$BIN/dism" /Get-MountedImageInfo
echo
echo "== The image's files at the mount folder"
(cd "$work/mnt" && find . | sort)
cat "$work/mnt/readme.txt"
echo "Written on Linux" > "$work/mnt/Windows/from-linux.txt"

echo
echo "== dism /Unmount-Image /MountDir:mnt /Commit"
"$BIN/dism" /Unmount-Image /MountDir:"$work/mnt" /Commit

echo
echo "== The change is in the VHDX: served read-only over NBD, seen by nbdinfo"
"$BIN/dism-nbd-server" --readonly --unix "$work/nbd.sock" \
  --description "dism demo sample" "$work/sample.vhdx" &
srv=$!
for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && break; sleep 0.05; done
nbdinfo "nbd+unix:///?socket=$work/nbd.sock"
kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
"$BIN/dism" /Mount-Image /ImageFile:"$work/sample.vhdx" /Index:1 /MountDir:"$work/mnt" /ReadOnly >/dev/null
echo "Windows/from-linux.txt after remounting read-only: $(cat "$work/mnt/Windows/from-linux.txt")"
"$BIN/dism" /Unmount-Image /MountDir:"$work/mnt" /Discard >/dev/null
