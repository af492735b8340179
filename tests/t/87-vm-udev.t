#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# udev/60-dism.rules under a running systemd-udevd on the real kernel nbd
# driver, in the VM (docs/vm-tests.md, docs/udev.md).  The host builds a GPT
# disk as a dynamic VHDX and an MBR disk with a logical partition as a dynamic
# VHD, with file names udev must encode; the guest (tests/vm/87-udev.guest.sh)
# starts systemd-udevd with our rules among the stock 60-block,
# 60-persistent-storage and 99-systemd rules (Debian's systemd 252), loads nbd
# with nbds_max=4 so that idle, never-connected devices exist, and checks:
# the idle devices are not probed, not watched, not ready for systemd; after
# `dism /Mount-Image` of both images the /dev/disk/by-dism links resolve to
# /dev/nbdX and /dev/nbdXpN, the devices carry the DISM_* properties and are
# not watched (a virtio disk is: the control); nothing but dism mounted
# anything; after unmounting the links are gone.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-system-x86_64 qemu-img udevadm mkntfs mkfs.vfat ntfs-3g sfdisk
need_file "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-udev-id" "$ROOT/udev/60-dism.rules.in" \
  /lib/systemd/systemd-udevd
VMT0=$(date +%s)
D=$TMPD/img; mkdir -p "$D"
G_NAME='Win 11 (gpt).vhdx' G_ENC='Win\x2011\x20\x28gpt\x29.vhdx'
M_NAME='old disk.vhd'      M_ENC='old\x20disk.vhd'

check "host: build the GPT disk (mkwinimg.sh gpt) -> dynamic VHDX" bash -c \
  "'$ROOT/tests/lib/mkwinimg.sh' gpt '$D/g.raw' && qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M '$D/g.raw' '$D/g.vhdx'" || exit 1
check "host: build the MBR disk (mkwinimg.sh mbr) -> dynamic VHD" bash -c \
  "'$ROOT/tests/lib/mkwinimg.sh' mbr '$D/m.raw' && qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on '$D/m.raw' '$D/m.vhd'" || exit 1
printf "G_NAME='%s'\nG_ENC='%s'\nM_NAME='%s'\nM_ENC='%s'\n" "$G_NAME" "$G_ENC" "$M_NAME" "$M_ENC" > "$D/env"
# the rules as `make install LIBEXECDIR=/usr/bin` would write them (the
# initramfs puts every binary in /usr/bin)
sed 's|@LIBEXECDIR@|/usr/bin|g' "$ROOT/udev/60-dism.rules.in" > "$D/60-dism.rules"
truncate -s 8M "$D/scratch.raw"
rules=()
for r in 60-block.rules 60-persistent-storage.rules 99-systemd.rules; do
  rules+=(--file "/usr/lib/udev/rules.d/$r:/usr/lib/udev/rules.d/$r")
done

run_vm 51 "$ROOT/tests/vm/87-udev.guest.sh" --mem 1024 --modopt 'nbd nbds_max=4 max_part=16' \
   --file "$D/g.vhdx:/test/$G_NAME" --file "$D/m.vhd:/test/$M_NAME" --file "$D/env:/test/env" \
   --file "$D/60-dism.rules:/usr/lib/udev/rules.d/60-dism.rules" "${rules[@]}" \
   --drive "$D/scratch.raw" \
   -- "$BIN/dism" "$BIN/dism-nbd-server" "$BIN/dism-udev-id" udevadm /lib/systemd/systemd-udevd
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
