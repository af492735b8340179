#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Scale on the real kernel nbd driver, in the VM (docs/vm-tests.md; issue 13):
# nbd.ko loaded with nbds_max=4, and VM_SCALE_N (default 12) dism processes
# mount at once: VHDX, VHD and WIM, read/write (each its own file) and
# read-only (one shared file per kind).  The netlink CONNECT without an
# index finds the 4 preallocated devices taken and makes new ones, so the
# mounts get distinct /dev/nbdN beyond nbds_max.  Every record is right in
# /Get-MountedImageInfo; a file is written in each read/write mount; all are
# unmounted at once (half /Commit, half /Discard); a committed VHDX shows
# its file when mounted again; discarded and read-only images are unchanged;
# nothing is left (servers, supervisors, ntfs-3g, mounts, connected nbd
# devices, records).  The guest half is tests/vm/89-scale.guest.sh.
# 12 mounts, not the native test's 64: TCG emulates the guest kernel on two
# CPUs; the 12 mounts take 3-4 s, the whole test about 20 s.
# needs-root: the host side builds disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd qemu-system-x86_64 wimlib-imagex
need_file "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-supervise"
VMT0=$(date +%s)
N=${VM_SCALE_N:-12}
[ $((N % 6)) -eq 0 ] && [ "$N" -gt 0 ] || { not_ok "VM_SCALE_N=$N is a positive multiple of 6"; exit 1; }

D=$TMPD/img; mkdir -p "$D/wimsrc/Windows/System32"
check "host: build a 16 MiB MBR disk with NTFS holding \\Windows" make_windows_disk "$D/s.raw" 16 || exit 1
make_vhdx "$D/s.raw" "$D/s.vhdx"
make_vhd "$D/s.raw" "$D/s.vhd"
echo "hello from the image" > "$D/wimsrc/hello.txt"
head -c 65536 /dev/urandom > "$D/wimsrc/Windows/System32/data.bin"
wimlib-imagex capture "$D/wimsrc" "$D/s.wim" Small --compress=none >/dev/null 2>&1
check "host: the VHDX, VHD and WIM" test -s "$D/s.vhdx" -a -s "$D/s.vhd" -a -s "$D/s.wim"
echo "N=$N" > "$D/env"
rm -f "$D/s.raw"

VM_TIMEOUT=${VM_TIMEOUT:-300} run_vm $((N / 2 + 12)) "$ROOT/tests/vm/89-scale.guest.sh" --mem 1536 \
   --modopt 'nbd nbds_max=4 max_part=16' \
   --file "$D/s.vhdx:/test/s.vhdx" --file "$D/s.vhd:/test/s.vhd" --file "$D/s.wim:/test/s.wim" \
   --file "$D/env:/test/env" -- "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-supervise"
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
