#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The real kernel path, in a VM (Debian's kernel under qemu TCG, see
# docs/vm-tests.md): dism-nbd-server serves an MBR disk with an NTFS partition,
# as raw and as dynamic VHDX; nbd-client attaches it to /dev/nbd0 over netlink; the device
# content, the partition scan, ntfsinfo/ntfsfix and an ntfs-3g mount are
# checked; then read-write exports (the raw disk; the VHDX with --overlay) are
# written through ntfs-3g and verified from a fresh attach.  The guest half is tests/vm/80-nbd.guest.sh.
#
# DISM_VM_SERVER=qemu-nbd runs the same checks against qemu-nbd (a way to
# check the harness itself); the default, and what the suite runs, is ours.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-system-x86_64 qemu-img mkntfs ntfs-3g sfdisk sha256sum truncate
SERVER=${DISM_VM_SERVER:-dism}
VMT0=$(date +%s)

case "$SERVER" in
  dism)
    need_file "$BIN/dism-nbd-server"
    SERVER_BIN=$BIN/dism-nbd-server
    out=$("$SERVER_BIN" --help 2>&1)
    if [[ $out == *Usage:*--unix* ]]; then ok "dism-nbd-server --help shows its usage"
    else not_ok "dism-nbd-server is functional (--help)"; diag "$out"; exit 1; fi ;;
  qemu-nbd)
    SERVER_BIN=$(command -v qemu-nbd) || { not_ok "qemu-nbd missing"; exit 1; } ;;
  *) not_ok "DISM_VM_SERVER must be dism or qemu-nbd, not '$SERVER'"; exit 1 ;;
esac

# ---- host side: a 32 MiB MBR disk, NTFS in partition 1 (sector 2048 on) ----
D=$TMPD/img; mkdir -p "$D/mnt"
SIZE=$((32*1024*1024)); PSTART=2048
build_image() {
  truncate -s $SIZE "$D/disk.raw" &&
  printf 'label: dos\nstart=%d, type=7\n' $PSTART | sfdisk -q "$D/disk.raw" &&
  truncate -s $((SIZE - PSTART*512)) "$D/part.img" &&
  mkntfs -q -F -Q -L DISMVM -p $PSTART -H 255 -S 63 "$D/part.img" &&
  ntfs-3g "$D/part.img" "$D/mnt" &&
  { tap_cleanup "umount '$D/mnt'"; true; } &&
  head -c 3145728 /dev/urandom > "$D/mnt/random.bin" &&
  echo "hello from the host" > "$D/mnt/hello.txt" &&
  mkdir -p "$D/mnt/dir/sub" &&
  head -c 100000 /dev/urandom > "$D/mnt/dir/sub/file with spaces.bin" &&
  head -c 5000 /dev/urandom > "$D/mnt/dir/small.bin" &&
  (cd "$D/mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$D/manifest" &&
  umount "$D/mnt" &&
  dd if="$D/part.img" of="$D/disk.raw" bs=1M seek=1 conv=notrunc status=none &&
  rm -f "$D/part.img" &&
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M "$D/disk.raw" "$D/disk.vhdx"
}
check "host: build a 32 MiB MBR+NTFS disk (raw and dynamic VHDX)" build_image || exit 1
DISK_SHA=$(sha256sum < "$D/disk.raw" | cut -d' ' -f1)
diag "disk sha256 $DISK_SHA, $(wc -l < "$D/manifest") files"

# ---- which read-write mode: an overlay on the VHDX if ours supports it ------
RW_MODE=raw
if [ "$SERVER" = dism ]; then
  # probe on a copy: a server that ignored --overlay must not touch disk.vhdx
  cp "$D/disk.vhdx" "$TMPD/probe.vhdx"
  if start_server ovlprobe --overlay "$TMPD/probe.ovl" "$TMPD/probe.vhdx" 2>/dev/null &&
     $PY -c 'import nbd, sys; h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"x" * 512, 0)
h.flush() if h.can_flush() else None; h.shutdown()' "$(uri "$SOCK")" >/dev/null 2>&1; then
    RW_MODE=overlay
    ok "host: dism-nbd-server --overlay accepts a write (libnbd)"
  else
    not_ok "host: dism-nbd-server --overlay accepts a write (libnbd); the VM skips the overlay part"
  fi
  kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
fi
diag "read-write part uses: $RW_MODE"

cat > "$D/env" <<ENV
SERVER=$SERVER
RW_MODE=$RW_MODE
DISK_SHA256=$DISK_SHA
DISK_SIZE=$SIZE
ENV

# ---- the VM -----------------------------------------------------------------
VM_TIMEOUT=${VM_TIMEOUT:-180} run_vm 20 "$ROOT/tests/vm/80-nbd.guest.sh" \
   --file "$D/disk.vhdx:/test/disk.vhdx" --file "$D/disk.raw:/test/disk.raw" \
   --file "$D/manifest:/test/manifest" --file "$D/env:/test/env" -- "$SERVER_BIN"
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
