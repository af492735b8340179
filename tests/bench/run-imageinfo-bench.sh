#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# /Get-ImageInfo on a VHDX beside the same facts found by hand (issue 14).
#   image: 8 GiB dynamic VHDX, GPT + one 7 GiB NTFS partition holding
#          \Windows\System32\config\{SOFTWARE (~50 MB, padded), SYSTEM} and
#          FILES small files in 100 directories
#   ours:  dism /Get-ImageInfo (engine + libntfs-3g + hivex, in place)
#   hand:  dism /Mount-Image /ReadOnly, hivexget of the same 14 values,
#          /Unmount-Image /Discard; and the same + find for the counts
# virt-inspector (libguestfs) is the natural peer but needs a kernel in /boot
# for its appliance, which these machines lack (docs/benchmarks.md).
# Not a test: prints figures for docs/benchmarks.md.  Usage: BUILD [FILES]
set -euo pipefail
BUILD=${1:-build}
FILES=${2:-20000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DISM=$ROOT/$BUILD/bin/dism
W=$(mktemp -d /var/tmp/dism-ibench.XXXXXX)
export DISM_RUN_DIR=$W/run DISM_STATE_DIR=$W/state
loopdev=
cleanup() {
  set +e
  mountpoint -q "$W/m" && umount "$W/m"
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  "$DISM" /Cleanup-Mountpoints >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
for t in qemu-img sfdisk mkntfs ntfs-3g losetup hivexget hivexregedit; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done

echo "making the image ($FILES files, hives padded)..." >&2
bash "$ROOT/tests/lib/mkhives.sh" "$W/config" 3000
truncate -s 8G "$W/disk.raw"
printf 'label: gpt\nstart=2048, size=7GiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n' |
  sfdisk -q "$W/disk.raw"
loopdev=$(losetup -f --show -o $((2048 * 512)) --sizelimit $((7 << 30)) "$W/disk.raw")
mkntfs -q -F -Q "$loopdev" >/dev/null 2>&1
mkdir -p "$W/m"
ntfs-3g "$loopdev" "$W/m"
mkdir -p "$W/m/Windows/System32/config"
cp "$W/config"/* "$W/m/Windows/System32/config/"
for ((d = 0; d < 100; d++)); do
  mkdir "$W/m/Windows/d$d"
  for ((f = d; f < FILES; f += 100)); do echo "$f" > "$W/m/Windows/d$d/f$f.dll"; done
done
umount "$W/m"
losetup -d "$loopdev"; loopdev=
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$W/disk.raw" "$W/win.vhdx"
rm -f "$W/disk.raw"
V=$W/win.vhdx
echo "VHDX: $(du -h "$V" | cut -f1) on disk, SOFTWARE $(stat -c %s "$W/config/SOFTWARE") bytes" >&2

ms() { local t0; t0=$(date +%s%N); "$@" >/dev/null 2>&1; echo $((($(date +%s%N) - t0) / 1000000)); }
ours() { "$DISM" /Get-ImageInfo /ImageFile:"$V"; }
values() {
  local sw=$W/m/Windows/System32/config/SOFTWARE sy=$W/m/Windows/System32/config/SYSTEM
  local cv='\Microsoft\Windows NT\CurrentVersion' cs='\ControlSet002\Control'
  for k in ProductName EditionID InstallationType CurrentMajorVersionNumber \
           CurrentMinorVersionNumber CurrentBuildNumber UBR SystemRoot; do
    hivexget "$sw" "$cv" "$k"
  done
  hivexget "$sy" '\Select' Current
  hivexget "$sy" "$cs\\ProductOptions" ProductType
  hivexget "$sy" "$cs\\ProductOptions" ProductSuite
  hivexget "$sy" "$cs\\Session Manager\\Environment" PROCESSOR_ARCHITECTURE
  hivexget "$sy" "$cs\\Nls\\Language" InstallLanguage
  hivexregedit --export "$sy" "$cs\\MUI\\UILanguages"
}
by_hand() {
  "$DISM" /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$W/m" /ReadOnly &&
    values && { [ -z "${1:-}" ] || find "$W/m" -xdev | wc -l; } &&
    "$DISM" /Unmount-Image /MountDir:"$W/m" /Discard
}
ours >/dev/null                      # warm the page cache for both sides
echo "round  get-imageinfo_ms  mount+hivexget_ms  mount+hivexget+find_ms"
for r in 1 2 3; do
  echo "$r  $(ms ours)  $(ms by_hand)  $(ms by_hand find)"
done
ours | sed -n '/^Index/,/^$/p'
