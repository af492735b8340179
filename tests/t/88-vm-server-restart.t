#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Server crash and restart on the real kernel nbd driver, in the VM
# (docs/vm-tests.md, docs/reliability.md "Server crash and restart"): a
# read/write dism mount on /dev/nbdN under a write load, its image server
# killed with kill -9 again and again; dism-supervise restarts it and
# reconnects the same device (NBD_CMD_RECONFIGURE).  The guest
# (tests/vm/88-restart.guest.sh) checks that no copy failed, the kernel
# logged no I/O error, every file reads back from the server and from the
# committed image; the committed VHDX comes back on a virtio disk and is
# checked here without dism (qemu-img check, ntfsfix, ntfs-3g, sha256 of
# every file against the guest's manifest).
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd qemu-system-x86_64 qemu-img ntfs-3g ntfsfix sha256sum truncate losetup
need_file "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-supervise"
VMT0=$(date +%s)
KILLS=${KILLS:-12}

D=$TMPD/img; mkdir -p "$D/mnt"
LOOP=
tap_cleanup 'mountpoint -q "$D/mnt" && umount "$D/mnt"; [ -n "$LOOP" ] && losetup -d "$LOOP"'

# ---- host: the disk ---------------------------------------------------------------
check "host: build a 160 MiB MBR disk with one NTFS partition holding \\Windows" \
  make_windows_disk "$D/w.raw" 160 || exit 1
check "host: -> dynamic VHDX (2 MiB blocks)" \
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M "$D/w.raw" "$D/w.vhdx"
echo "KILLS=$KILLS" > "$D/env"
# the committed image comes back on this (raw, virtio /dev/vda in the guest)
truncate -s 240M "$D/back.raw"

# ---- the VM ----------------------------------------------------------------------
run_vm 35 "$ROOT/tests/vm/88-restart.guest.sh" --timeout "${VM_TIMEOUT:-420}" --mem 1024 \
   --file "$D/w.vhdx:/test/w.vhdx" --file "$D/env:/test/env" \
   --drive "$D/back.raw" -- "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-supervise"

# ---- host: the committed VHDX, checked without dism ---------------------------------
read -r magic bsize bsum mlen _ < <(head -c 512 "$D/back.raw" | tr -d '\0')
if [ "$magic" = DISMVHDX ] && [[ $bsize =~ ^[0-9]+$ ]] && [[ $mlen =~ ^[0-9]+$ ]]; then
  ok "host: the guest sent the committed VHDX back ($bsize bytes)"
  dd if="$D/back.raw" of="$D/back.vhdx" bs=1M skip=1 status=none && truncate -s "$bsize" "$D/back.vhdx"
  tail -c +513 "$D/back.raw" | head -c "$mlen" > "$D/manifest"
  is "host: it arrived intact (sha256 as in the guest)" "$(sha256sum < "$D/back.vhdx" | cut -d' ' -f1)" "$bsum"
  check "host: qemu-img check of the committed VHDX" qemu-img check -f vhdx "$D/back.vhdx"
  check "host: qemu-img converts it to raw" qemu-img convert -f vhdx -O raw "$D/back.vhdx" "$D/back.img"
  LOOP=$(losetup -f --show -r -o $((2048 * 512)) "$D/back.img")
  check "host: ntfsfix -n on the committed volume" ntfsfix -n "$LOOP"
  verify() {
    local bad=0 r big3
    ntfs-3g -o ro "$LOOP" "$D/mnt" || { echo "ntfs-3g failed"; return 1; }
    big3=$(awk '$2 == "./big3.bin" { print $1 }' "$D/manifest")
    for r in 0 1; do
      (cd "$D/mnt/load/r$r" && sha256sum -c --quiet "$D/manifest") || { echo "r$r differs"; bad=1; }
      [ "$(sha256sum < "$D/mnt/load/r$r/fsynced.bin" | cut -d' ' -f1)" = "$big3" ] || { echo "r$r/fsynced.bin differs"; bad=1; }
    done
    [ "$(cat "$D/mnt/hello.txt")" = "hello from the image" ] || { echo "hello.txt differs"; bad=1; }
    umount "$D/mnt"
    return $bad
  }
  check "host: ntfs-3g reads every copied file ($(wc -l < "$D/manifest") per round, 2 rounds) with the guest's sha256" verify
  losetup -d "$LOOP"; LOOP=
else
  not_ok "host: the guest sent the committed VHDX back"
  diag "sector 0 of the return disk: $(head -c 80 "$D/back.raw" | tr -d '\0' | od -c | head -3)"
fi
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
