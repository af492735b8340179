#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# libdism's NBD attach on a real kernel, in the VM (docs/vm-tests.md): the
# host builds Windows-like disks (tests/lib/mkwinimg.sh: GPT as dynamic VHDX,
# GPT with 4096-byte sectors, MBR with a logical partition, FAT only), the
# guest (tests/vm/81-attach.guest.sh) serves each with dism-nbd-server and
# attaches it with dism_attach through build/tests/test-attach: netlink
# CONNECT with no index and one socket (more when asked), backend id, max_sectors_kb,
# partition scan, the \Windows partition chosen, read-only refused writes,
# dism_detach leaves nothing.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-system-x86_64 qemu-img mkntfs mkfs.vfat ntfs-3g sfdisk sha256sum truncate losetup
need_file "$BIN/dism-nbd-server" "$TBIN/test-attach"
VMT0=$(date +%s)

D=$TMPD/img; mkdir -p "$D"
for k in gpt gpt4k mbr fatonly; do
  check "host: build the '$k' disk" "$ROOT/tests/lib/mkwinimg.sh" "$k" "$D/$k.raw" || exit 1
done
check "host: convert the GPT disk to a dynamic VHDX" \
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M "$D/gpt.raw" "$D/disk.vhdx"
P5=$(sfdisk -J "$D/mbr.raw" | $PY -c 'import json,sys
print([p["start"] for p in json.load(sys.stdin)["partitiontable"]["partitions"] if p["node"].endswith("5")][0])')
cat > "$D/env" <<ENV
DISK_SHA256=$(sha256sum < "$D/gpt.raw" | cut -d' ' -f1)
DISK_SIZE=$(stat -c %s "$D/gpt.raw")
MBR_P5_START=$P5
ENV

run_vm 40 "$ROOT/tests/vm/81-attach.guest.sh" \
   --file "$D/disk.vhdx:/test/disk.vhdx" --file "$D/gpt4k.raw:/test/gpt4k.raw" \
   --file "$D/mbr.raw:/test/mbr.raw" --file "$D/fatonly.raw:/test/fatonly.raw" \
   --file "$D/env:/test/env" -- "$BIN/dism-nbd-server" "$TBIN/test-attach"
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
