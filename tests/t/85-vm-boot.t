#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# dismtab-driven mounting at boot on the real kernel nbd driver, in the VM
# (docs/vm-tests.md, docs/boot.md).  The VM has no systemd: the guest
# (tests/vm/85-boot.guest.sh) writes /etc/dismtab (a VHDX "rw,keep,remount",
# a WIM image by name read-only in a folder with a space, a VHDX
# "rw,commit,mkdir,nofail", and a bad line), runs dism-generator, and plays
# systemd with the units it wrote: their ExecStart lines in After= order at
# boot, their ExecStop lines in reverse at shutdown.  Boot 1; a clean
# shutdown (commit, discard, park) and boot 2, where the parked mount comes
# back with its changes; a crash (servers and ntfs-3g killed -9, devices
# disconnected, mounts dropped, /run cleared) and boot 3: every mount Needs
# Remount, the "remount" entry and the read-only one come back by themselves,
# the other says what to do and comes back through dism-remount.service's
# command; finally the images hold every change.  The host only builds the
# images.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd qemu-system-x86_64 qemu-img sha256sum
need_file "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-generator" "$BIN/dism-boot" \
  "$CORPUS/wim/wimlib-mwl-MultiImage.wim"
VMT0=$(date +%s)
D=$TMPD/boot; mkdir -p "$D"

make_windows_disk "$D/disk.raw" 48 || { not_ok "host: build the test disk"; exit 1; }
vhdx() { qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M "$1" "$2"; }
check "host: the disk as a dynamic VHDX, 2 MiB blocks (g)" vhdx "$D/disk.raw" "$D/g.vhdx"
check "host: and another (h)" vhdx "$D/disk.raw" "$D/h.vhdx"
cp "$CORPUS/wim/wimlib-mwl-MultiImage.wim" "$D/w.wim"; chmod u+w "$D/w.wim"
head -c 1048576 /dev/urandom > "$D/new.bin"
cat > "$D/env" <<ENV
NEW_SHA256=$(sha256sum < "$D/new.bin" | cut -d' ' -f1)
HELLO='hello from the image'
ENV
diag "images: g.vhdx and h.vhdx $(stat -c %s "$D/g.vhdx") bytes, w.wim $(stat -c %s "$D/w.wim") bytes"

run_vm 70 "$ROOT/tests/vm/85-boot.guest.sh" --mem 1024 --timeout 180 \
  --file "$D/g.vhdx:/test/g.vhdx" --file "$D/h.vhdx:/test/h.vhdx" --file "$D/w.wim:/test/w.wim" \
  --file "$D/new.bin:/test/new.bin" --file "$D/env:/test/env" \
  -- "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-generator" "$BIN/dism-boot"
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
