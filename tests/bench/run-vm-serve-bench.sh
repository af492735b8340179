#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make bench (serving through the kernel, issue 15 part 4): in the test VM
# (Debian's kernel under qemu TCG, docs/vm-tests.md), `dd if=/dev/nbd0 bs=1M`
# of a 256 MiB disk through the kernel's nbd driver, served by nbdkit's file
# plugin on the raw file, by dism-nbd-server on the raw file and on the same
# disk as a dynamic VHDX (zero-copy and, for the A/B, --no-sendfile).  TCG
# makes every figure small; the ratios are what count.  Prints the median of
# VM_BENCH_ROUNDS (default 3) rounds and the ratios to nbdkit.
# Not a test: exits 1 only if the VM or a read fails.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/$BUILD/bin
ROUNDS=${VM_BENCH_ROUNDS:-3}
PLUGIN=$(ls /usr/lib/*/nbdkit/plugins/nbdkit-file-plugin.so 2>/dev/null | head -1)
for t in qemu-system-x86_64 qemu-img nbdkit; do
  command -v $t >/dev/null || { echo "bench: $t missing: run 'make deps' as root" >&2; exit 1; }
done
[ -n "$PLUGIN" ] || { echo "bench: nbdkit's file plugin is missing (nbdkit)" >&2; exit 1; }
[ -x "$BIN/dism-nbd-server" ] || { echo "bench: $BIN/dism-nbd-server missing: make first" >&2; exit 1; }
W=$(mktemp -d /var/tmp/dism-vmbench.XXXXXX)
trap 'rm -rf "$W"' EXIT
# Incompressible data: a zero disk would be holes in the VHDX.
head -c 256M /dev/urandom > "$W/disk.raw"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$W/disk.raw" "$W/disk.vhdx"
# The plugin goes in as a "binary" (with its libraries); the guest loads it by path.
cp "$PLUGIN" "$W/nbdkit-file-plugin.so"
echo "ROUNDS=$ROUNDS" > "$W/env"
echo "== serving through /dev/nbd0 in the VM: dd bs=1M of 256 MiB, $ROUNDS rounds"
out=$("$ROOT/Kbuild/vm/run-vm.sh" --timeout 600 --mem 1536 --drive "$W/disk.raw" \
      --drive "$W/disk.vhdx" --file "$W/env:/test/env" "$ROOT/tests/vm/bench-serve.guest.sh" \
      "$BIN/dism-nbd-server" "$(command -v nbdkit)" "$W/nbdkit-file-plugin.so") || {
  echo "$out"; echo "bench: the VM run failed" >&2; exit 1; }
if grep -q '^not ok' <<<"$out"; then echo "$out"; echo "bench: a read failed" >&2; exit 1; fi
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ref=$(awk '$2 == "result" && $3 == "nbdkit-raw" { print $4 }' <<<"$out" | median)
printf '%-16s %10s %8s   %s\n' server "MiB/s" "x nbdkit" "(rounds)"
for name in nbdkit-raw dism-raw dism-vhdx dism-vhdx-copy; do
  all=$(awk -v n="$name" '$2 == "result" && $3 == n { print $4 }' <<<"$out")
  med=$(median <<<"$all")
  printf '%-16s %10s %8.2f   %s\n' "$name" "$med" "$(echo "$med / $ref" | bc -l)" "$(echo $all)"
done
