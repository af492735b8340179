#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The dism command end to end on the real kernel nbd driver, in the VM
# (docs/vm-tests.md): there nbd.ko is loaded, so libdism takes the NBD method
# (netlink CONNECT, one socket or two when asked, partition scan) instead of the loop+FUSE
# fallback this machine uses.  The host builds a GPT disk (dynamic VHDX) and
# an MBR disk with a logical partition (dynamic VHD); the guest
# (tests/vm/82-dism.guest.sh) mounts, writes, commits while mounted, is
# refused an unmount with a file open, unmounts with /Commit, mounts read-only
# twice at once, discards, and checks that nothing is left.  The committed
# VHDX comes back on a virtio disk; the host then checks it independently
# (qemu-img check, raw conversion, ntfs-3g) against files only the host made.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-system-x86_64 qemu-img mkntfs mkfs.vfat ntfs-3g ntfsfix sfdisk sha256sum truncate losetup
need_file "$BIN/dism" "$BIN/dism-nbd-server"
VMT0=$(date +%s)

D=$TMPD/img; mkdir -p "$D/mnt"
LOOP=
tap_cleanup 'mountpoint -q "$D/mnt" && umount "$D/mnt"; [ -n "$LOOP" ] && losetup -d "$LOOP"'
# part_of RAW N: "start size" in sectors
part_of() { sfdisk -J "$1" | $PY -c 'import json,sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1]) - 1]; print(p["start"], p["size"])' "$2"; }
# with_part RAW N [-r] CMD...: run CMD with $LOOP = partition N of RAW on a loop device
with_part() {
  local raw=$1 n=$2 ro='' s c rc; shift 2
  [ "$1" = -r ] && { ro=-r; shift; }
  read -r s c < <(part_of "$raw" "$n")
  LOOP=$(losetup -f --show $ro -o $((s * 512)) --sizelimit $((c * 512)) "$raw") || return 1
  "$@"; rc=$?
  losetup -d "$LOOP"; LOOP=
  return $rc
}

# ---- host: the disks -------------------------------------------------------------
add_files() {  # the \Windows volume of the GPT disk gets more to check
  ntfs-3g "$LOOP" "$D/mnt" || return 1
  head -c 1048576 /dev/urandom > "$D/mnt/random.bin"
  echo "grüße" > "$D/mnt/Ünïcødé ✓ файл.txt"
  mkdir -p "$D/mnt/Program Files/App"
  head -c 200000 /dev/urandom > "$D/mnt/Program Files/App/data file.bin"
  (cd "$D/mnt" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) > "$D/g.manifest"
  umount "$D/mnt"
}
check "host: build the GPT disk (mkwinimg.sh gpt)" "$ROOT/tests/lib/mkwinimg.sh" gpt "$D/g.raw" || exit 1
check "host: add files to its \\Windows volume (p3)" with_part "$D/g.raw" 3 add_files || exit 1
check "host: build the MBR disk (mkwinimg.sh mbr)" "$ROOT/tests/lib/mkwinimg.sh" mbr "$D/m.raw" || exit 1
check "host: GPT disk -> dynamic VHDX (2 MiB blocks)" \
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=2M "$D/g.raw" "$D/g.vhdx"
check "host: MBR disk -> dynamic VHD" \
  qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$D/m.raw" "$D/m.vhd"
head -c 2097152 /dev/urandom > "$D/new.bin"
head -c 300001 /dev/urandom > "$D/after.bin"
sum() { sha256sum < "$1" | cut -d' ' -f1; }
cat > "$D/env" <<ENV
G_SHA256=$(sum "$D/g.raw")
G_SIZE=$(stat -c %s "$D/g.raw")
G_SHA_VHDX=$(sum "$D/g.vhdx")
M_SHA256=$(sum "$D/m.raw")
M_SHA_VHD=$(sum "$D/m.vhd")
NEW_SHA256=$(sum "$D/new.bin")
AFTER_SHA256=$(sum "$D/after.bin")
ENV
diag "images: g.vhdx $(stat -c %s "$D/g.vhdx") bytes, m.vhd $(stat -c %s "$D/m.vhd") bytes; $(wc -l < "$D/g.manifest") files in the manifest"
# the committed image comes back on this (raw, virtio /dev/vda in the guest)
truncate -s 160M "$D/back.raw"

# ---- the VM ----------------------------------------------------------------------
run_vm 90 "$ROOT/tests/vm/82-dism.guest.sh" --mem 1024 \
   --file "$D/g.vhdx:/test/g.vhdx" --file "$D/m.vhd:/test/m.vhd" \
   --file "$D/g.manifest:/test/g.manifest" --file "$D/env:/test/env" \
   --file "$D/new.bin:/test/new.bin" --file "$D/after.bin:/test/after.bin" \
   --drive "$D/back.raw" -- "$BIN/dism" "$BIN/dism-nbd-server"

# ---- host: the committed VHDX, checked without dism ---------------------------------
read -r magic bsize bsum _ < <(head -c 512 "$D/back.raw" | tr -d '\0')
if [ "$magic" = DISMVHDX ] && [[ $bsize =~ ^[0-9]+$ ]]; then
  ok "host: the guest sent the committed VHDX back ($bsize bytes)"
  dd if="$D/back.raw" of="$D/back.vhdx" bs=1M skip=1 status=none && truncate -s "$bsize" "$D/back.vhdx"
  is "host: it arrived intact (sha256 as in the guest)" "$(sum "$D/back.vhdx")" "$bsum"
  check "host: qemu-img check of the committed VHDX" qemu-img check -f vhdx "$D/back.vhdx"
  check "host: qemu-img converts it to raw" qemu-img convert -f vhdx -O raw "$D/back.vhdx" "$D/back.img"
  is "host: same size as before" "$(stat -c %s "$D/back.img")" "$(stat -c %s "$D/g.raw")"
  is "host: the partition table is unchanged (first 1 MiB)" \
     "$(head -c 1048576 "$D/back.img" | sha256sum)" "$(head -c 1048576 "$D/g.raw" | sha256sum)"
  for p in 1 2 4; do
    read -r s c < <(part_of "$D/g.raw" "$p")
    is "host: partition $p untouched" \
       "$(dd if="$D/back.img" bs=512 skip="$s" count="$c" status=none | sha256sum)" \
       "$(dd if="$D/g.raw" bs=512 skip="$s" count="$c" status=none | sha256sum)"
  done
  fix_n() { ntfsfix -n "$LOOP"; }
  check "host: ntfsfix -n on the committed \\Windows volume" with_part "$D/back.img" 3 -r fix_n
  verify() {
    ntfs-3g -o ro "$LOOP" "$D/mnt" || { echo "ntfs-3g failed"; return 1; }
    local bad=0
    [ "$(sum "$D/mnt/new.bin")" = "$(sum "$D/new.bin")" ] || { echo "new.bin differs"; bad=1; }
    [ "$(sum "$D/mnt/after.bin")" = "$(sum "$D/after.bin")" ] || { echo "after.bin differs"; bad=1; }
    [ "$(cat "$D/mnt/Windows/Temp/Ünïcødé ✓ файл.txt")" = "ünï written in the VM"$'\n'"line 2" ] || { echo "the Unicode file differs"; bad=1; }
    [ ! -e "$D/mnt/dismtest.txt" ] || { echo "dismtest.txt was not deleted"; bad=1; }
    [ ! -e "$D/mnt/junk.bin" ] || { echo "the discarded junk.bin is there"; bad=1; }
    (cd "$D/mnt" && grep -v dismtest.txt "$D/g.manifest" | sha256sum -c --quiet) || bad=1
    umount "$D/mnt"
    return $bad
  }
  check "host: ntfs-3g reads the committed files (new.bin, after.bin, the Unicode file), the originals, not the discarded ones" \
    with_part "$D/back.img" 3 -r verify
else
  not_ok "host: the guest sent the committed VHDX back"
  diag "sector 0 of the return disk: $(head -c 80 "$D/back.raw" | tr -d '\0' | od -c | head -3)"
fi
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
