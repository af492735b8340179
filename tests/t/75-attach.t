#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The attach layer on this machine (no nbd.ko: the LOOP method).  Windows-like
# disks built here (GPT with ESP + MSR + NTFS \Windows + a bigger NTFS data
# partition; the same with 4096-byte sectors; MBR with a logical partition;
# two NTFS without \Windows; a whole-disk NTFS; FAT only) go through
# libdism's partition choice and dism_attach (the image itself standing in
# for the server's FUSE file); the loop device must hold exactly the chosen
# partition's bytes, mount with ntfs-3g and show \Windows, and be gone after
# dism_detach.  Then damaged tables (tests/lib/disk-tamper.py) must give clear
# errors, also under ASan+UBSan ($SAN_BUILD, default build-san).  Driver: tests/drivers/test-attach.c.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd sfdisk mkntfs mkfs.vfat ntfs-3g losetup blockdev truncate cmp python3 mountpoint
T=$TBIN/test-attach
TS=$SAN/tests/test-attach
need_file "$T" "$TS"
MNT=$TMPD/mnt; mkdir -p "$MNT"
tap_cleanup "mountpoint -q '$MNT' && umount '$MNT'"

check "format/parse_kv round trips (selftest)" "$T" selftest

for k in gpt gpt4k mbr data whole fatonly; do
  check "build the '$k' test disk" "$ROOT/tests/lib/mkwinimg.sh" "$k" "$TMPD/$k.raw" || exit 1
done

# ---- the partition choice ---------------------------------------------------
# kv TEXT KEY: the value of KEY= in TEXT
kv() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
# table_is KIND PART SECTOR REASON_REGEX
table_is() {
  local out
  out=$("$T" table "$TMPD/$1.raw" 2>&1)
  is "$1: partition $2 chosen" "$(kv "$out" partition)" "$2" || diag "$out"
  is "$1: sector size $3" "$(kv "$out" sector_size)" "$3"
  like "$1: reason" "$(kv "$out" reason)" "$4"
}
table_is gpt   3 512  '^partition 3 of 4 \(gpt, NTFS, holds \\Windows\)$'
table_is gpt4k 3 4096 '^partition 3 of 4 \(gpt, NTFS, holds \\Windows\)$'
table_is mbr   2 512  '^partition 2 of 4 \(mbr, NTFS, holds \\Windows\)$'
table_is data  2 512  '^partition 2 of 2 \(gpt, NTFS, the largest NTFS partition, no \\Windows\)$'
table_is whole 0 512  '^the whole disk \(no partition table, NTFS, holds \\Windows\)$'
out=$("$T" table "$TMPD/mbr.raw")
like "mbr: the logical partition is number 5 (kernel numbering) and is NTFS" "$out" \
  'part=5 offset=[0-9]+ size=[0-9]+ type=NTFS/exFAT\(0x07\) ntfs=1 windows=0'
out=$("$T" table "$TMPD/fatonly.raw" 2>&1); rc=$?
is "fatonly: no NTFS is an error (exit 2)" "$rc" 2
like "fatonly: the message lists what was found" "$out" \
  "error: no NTFS partition in $TMPD/fatonly.raw: found 1:FAT32\(0x0c\) 16MiB \(mbr\)"

# ---- attach with LOOP, read-only ---------------------------------------------
# attach_ro KIND WINDIR SECTOR
attach_ro() {
  local k=$1 windir=$2 ss=$3 img=$TMPD/$1.raw st=$TMPD/$1.state t0 t1 out dev off size
  t0=$(date +%s%N)
  if ! out=$("$T" attach --method loop --fuse-file "$img" --id "dism:t75-$k" --ro 2>&1); then
    not_ok "$k: dism_attach (loop, read-only)"; diag "$out"; return
  fi
  t1=$(date +%s%N)
  echo "$out" > "$st"
  tap_cleanup "'$T' detach '$st'"
  ok "$k: dism_attach (loop, read-only) in $(( (t1 - t0) / 1000000 )) ms"
  dev=$(kv "$out" fs_dev) off=$(kv "$out" part_offset) size=$(kv "$out" part_size)
  like "$k: fs_dev is a loop device" "$dev" '^/dev/loop[0-9]+$'
  is "$k: method recorded" "$(kv "$out" method)" loop
  is "$k: the loop's size is the partition's" "$(blockdev --getsize64 "$dev")" "$size"
  is "$k: the loop's logical sector size" "$(blockdev --getss "$dev")" "$ss"
  is "$k: the loop is read-only" "$(blockdev --getro "$dev")" 1
  like "$k: losetup shows the offset and size limit" "$(losetup -l -n -O OFFSET,SIZELIMIT "$dev")" \
    "^ *$off +$size *$"
  check "$k: the loop device holds exactly the partition's bytes" \
    cmp <(dd if="$img" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none) "$dev"
  check "$k: dism_attach_alive" "$T" alive "$st"
  if check "$k: ntfs-3g -o ro mounts $dev" ntfs-3g -o ro "$dev" "$MNT"; then
    is "$k: \\$windir\\System32 is listed" "$(ls "$MNT/$windir" 2>&1)" System32
    check_fail "$k: writing to the read-only mount fails" sh -c "echo x > '$MNT/new.txt'"
    check "$k: umount" umount "$MNT"
  fi
  t0=$(date +%s%N)
  check "$k: dism_detach" "$T" detach "$st"
  t1=$(date +%s%N)
  diag "$k: detach took $(( (t1 - t0) / 1000000 )) ms"
  check_fail "$k: not alive after detach" "$T" alive "$st"
  is "$k: no loop device left on the image" "$(losetup -j "$img")" ""
}
attach_ro gpt Windows 512
attach_ro gpt4k Windows 4096
attach_ro mbr Windows 512
attach_ro whole windows 512

# ---- read-write: a write through the loop reaches the disk ---------------------
cp "$TMPD/gpt.raw" "$TMPD/rw.raw"
if out=$("$T" attach --method loop --fuse-file "$TMPD/rw.raw" --id dism:t75-rw 2>&1); then
  ok "rw: dism_attach (loop, read-write)"
  echo "$out" > "$TMPD/rw.state"; tap_cleanup "'$T' detach '$TMPD/rw.state'"
  dev=$(kv "$out" fs_dev)
  is "rw: the loop is writable" "$(blockdev --getro "$dev")" 0
  if check "rw: ntfs-3g mounts $dev read-write" ntfs-3g "$dev" "$MNT"; then
    check "rw: write a file under \\Windows" sh -c "echo written-by-t75 > '$MNT/Windows/t75.txt'"
    check "rw: umount" umount "$MNT"
  fi
  check "rw: dism_detach" "$T" detach "$TMPD/rw.state"
  out=$("$T" attach --method loop --fuse-file "$TMPD/rw.raw" --id dism:t75-rw2 --ro 2>&1)
  echo "$out" > "$TMPD/rw2.state"; tap_cleanup "'$T' detach '$TMPD/rw2.state'"
  if check "rw: the written disk attaches again and mounts" ntfs-3g -o ro "$(kv "$out" fs_dev)" "$MNT"; then
    is "rw: the file is there" "$(cat "$MNT/Windows/t75.txt" 2>&1)" written-by-t75
    umount "$MNT"
  fi
  check "rw: dism_detach again" "$T" detach "$TMPD/rw2.state"
else
  not_ok "rw: dism_attach (loop, read-write)"; diag "$out"
fi

# ---- autoclear: the loop frees itself when the mount lets go ---------------------
if out=$("$T" attach --fuse-file "$TMPD/gpt.raw" --id dism:t75-auto --ro 2>&1); then
  echo "$out" > "$TMPD/auto.state"; tap_cleanup "'$T' detach '$TMPD/auto.state'"
  is "auto: method AUTO picks loop here (no nbd.ko)" "$(kv "$out" method)" loop
  dev=$(kv "$out" fs_dev)
  ntfs-3g -o ro "$dev" "$MNT"
  check "auto: dism_attach_autoclear after the mount" "$T" autoclear "$TMPD/auto.state"
  check "auto: still alive while mounted" "$T" alive "$TMPD/auto.state"
  umount "$MNT"
  for _ in $(seq 50); do [ -z "$(losetup -j "$TMPD/gpt.raw")" ] && break; sleep 0.1; done
  is "auto: the loop cleared itself after umount" "$(losetup -j "$TMPD/gpt.raw")" ""
  check "auto: dism_detach of a cleared loop is a no-op" "$T" detach "$TMPD/auto.state"
else
  not_ok "auto: dism_attach (AUTO)"; diag "$out"
fi

# ---- attach failures leave nothing behind -------------------------------------------
out=$("$T" attach --method loop --fuse-file "$TMPD/fatonly.raw" --id dism:t75-fat --ro 2>&1)
like "fatonly: dism_attach fails with the message" "$out" "no NTFS partition in $TMPD/fatonly.raw"
is "fatonly: no loop device left" "$(losetup -j "$TMPD/fatonly.raw")" ""
out=$("$T" attach --method loop --fuse-file "$TMPD/nonexistent" --id dism:t75-x --ro 2>&1)
like "a missing FUSE file is named in the error" "$out" "$TMPD/nonexistent: No such file"
out=$("$T" attach --method nbd --socket "$TMPD/nosock" --id dism:t75-n --ro 2>&1)
like "NBD to a missing socket fails clearly" "$out" "$TMPD/nosock: cannot connect to the NBD server"

# ---- the attach path under ASan+UBSan ------------------------------------------------
if out=$("$TS" attach --method loop --fuse-file "$TMPD/gpt4k.raw" --id dism:t75-san --ro 2>&1); then
  ok "asan: dism_attach (loop) without a finding"
  echo "$out" > "$TMPD/san.state"; tap_cleanup "'$T' detach '$TMPD/san.state'"
  check "asan: dism_attach_alive" "$TS" alive "$TMPD/san.state"
  check "asan: dism_detach" "$TS" detach "$TMPD/san.state"
else
  not_ok "asan: dism_attach (loop) without a finding"; diag "$out"
fi
out=$("$TS" attach --method loop --fuse-file "$TMPD/fatonly.raw" --id dism:t75-san2 --ro 2>&1); rc=$?
is "asan: the failing attach exits 2 (a clean error, no finding)" "$rc" 2

# ---- damaged partition tables ---------------------------------------------------------
# damaged BASE HOW REGEX: the tampered disk gives the error REGEX (exit 2,
# no crash) in both builds
damaged() {
  local img=$TMPD/bad-$2.raw bin out rc
  cp "$TMPD/$1.raw" "$img"
  python3 "$ROOT/tests/lib/disk-tamper.py" "$2" "$img" || { not_ok "tamper $2"; return; }
  for bin in "$T" "$TS"; do
    out=$("$bin" table "$img" 2>&1); rc=$?
    if [ $rc -eq 2 ] && [[ $out =~ $3 ]]; then ok "$2 ($(basename "$(dirname "$(dirname "$bin")")")): clear error"
    else not_ok "$2 ($bin): clear error (exit $rc)"; diag "$out"; fi
  done
  rm -f "$img"
}
damaged gpt both-crc     'invalid GPT \(512-byte sectors\): primary: header CRC32 mismatch at LBA 1; backup: header CRC32 mismatch'
damaged gpt entries-crc  'primary: entry array CRC32 mismatch; backup: entry array CRC32 mismatch'
damaged gpt past-end     'partition 4 \(LBA [0-9]+-[0-9]+\) is outside the usable range'
damaged gpt huge-count   'entry array of 10000000 entries x 128 bytes is too large'
damaged gpt overlap      'gpt partitions 3 and 4 overlap'
damaged gpt array-out    'entry array at LBA [0-9]+ \(32 sectors\) is outside the disk'
damaged mbr mbr-past-end 'mbr partition 1 .* extends past the end of the disk'
damaged mbr mbr-overlap  'mbr partitions 1 and 2 overlap'
damaged mbr ebr-loop     'logical partition chain loops'
damaged mbr bad-status   'MBR entry 1 has an invalid status byte 0x42'
# only the primary GPT damaged: the backup is used, as the kernel does
cp "$TMPD/gpt.raw" "$TMPD/bad-primary.raw"
python3 "$ROOT/tests/lib/disk-tamper.py" primary-crc "$TMPD/bad-primary.raw"
for bin in "$T" "$TS"; do
  out=$("$bin" table "$TMPD/bad-primary.raw" 2>&1)
  like "primary-crc ($(basename "$(dirname "$(dirname "$bin")")")): the backup GPT is used" \
    "$(kv "$out" reason)" '^partition 3 of 4 \(gpt from the backup header, NTFS, holds \\Windows\)$'
done
# the good disks under ASan+UBSan too
for k in gpt gpt4k mbr data whole; do
  check "$k: partition choice under ASan+UBSan" "$TS" table "$TMPD/$k.raw"
done

is "no loop device left on any test disk" "$(losetup -a | grep -F "$TMPD" || true)" ""
