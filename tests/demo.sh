#!/usr/bin/env bash
# The README's first command: make a sample Windows-style VHDX (NTFS inside
# an MBR partition, a few files), serve it with dism-nbd-server and show it
# with nbdinfo.  (The mount issue turns this into a real mount.)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/$BUILD/bin
work=$(mktemp -d /tmp/dism-demo.XXXXXX)
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$work"' EXIT
for t in qemu-img mkntfs sfdisk nbdinfo; do
  command -v $t >/dev/null || { echo "demo: $t missing: run 'make deps' as root" >&2; exit 1; }
done

echo "== Building a sample image: 64 MiB disk, MBR, one NTFS partition"
truncate -s 64M "$work/disk.raw"
echo 'label: dos
start=2048, type=7' | sfdisk -q "$work/disk.raw"
truncate -s 63M "$work/part.raw"
mkntfs -q -F -f -L DISMDEMO "$work/part.raw" >/dev/null
dd if="$work/part.raw" of="$work/disk.raw" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$work/disk.raw" "$work/sample.vhdx"
"$BIN/dism-imageinfo" "$work/sample.vhdx"

echo
echo "== Serving it read-only: dism-nbd-server --readonly --unix $work/nbd.sock"
"$BIN/dism-nbd-server" --readonly --unix "$work/nbd.sock" \
  --description "dism demo sample" "$work/sample.vhdx" &
srv=$!
for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && break; sleep 0.05; done
uri="nbd+unix:///?socket=$work/nbd.sock"
nbdinfo "$uri"
echo
echo "== Allocation map (base:allocation from the VHDX BAT)"
nbdinfo --map "$uri"
echo
echo "== NTFS boot sector of partition 1, read through NBD"
nbdsh -u "$uri" -c 'b = h.pread(512, 1048576); print("OEM id:", b[3:11].decode())'
