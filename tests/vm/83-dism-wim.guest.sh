# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 83-dism-wim.guest.sh - guest half of tests/t/83-vm-dism-wim.t (busybox sh,
# as /test/run.sh).  A WIM mounted through the real /dev/nbdN: libdism
# builds the image's metadata-only NTFS volume (mkntfs + libntfs-3g + libwim)
# and serves it with file data read from the WIM as a whole-disk NTFS (no
# partition table).  From the host (all under /test):
#   w.wim       4 images: the corpus's MultiImage (Base, Changes, Delta) and
#               "Data" (index 4, LZX) captured on the host
#   w.manifest  sha256sum lines of every file of image 4
#   env         W_SHA256 (of w.wim), NEW_SHA256 (of new.bin)
#   new.bin     a file copied into the read/write mount
#   killed.bin  a file whose commit is killed with kill -9
# At the end the committed w.wim goes back to the host on /dev/vda: sector 0
# holds "DISMWIM <size> <sha256>", the file starts at 1 MiB.
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server
STATE=/var/lib/dism RUN=/run/dism LOG=/tmp/dism.log
W=/test/w.wim
UNI='Ünïcødé ✓ файл.txt'
T0=$(uptime_s)

ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
run() { OUT=$(dism /LogPath:"$LOG" "$@" 2>&1); RC=$?; }
timed() { _what=$1; shift; _t=$(ms); run "$@"; MS=$(( $(ms) - _t )); diag "timing: $_what: $MS ms"; }
like() { case "$2" in *"$3"*) ok "$1" ;; *) not_ok "$1"; diag "got: $2"; diag "wanted: ...$3..." ;; esac; }
rc_is() { if [ "$RC" = "$2" ]; then ok "$1"; else not_ok "$1"; diag "exit $RC, expected $2"; diag "$OUT"; diag "$(tail -15 $LOG)"; fi; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
rec_of() { grep -l "^mount_dir=$1\$" "$STATE"/mounts/*.conf 2>/dev/null | head -1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
manifest_ok() {
  _bad=0
  while read -r _s _p; do
    [ "$(sha "$1/${_p#./}" 2>/dev/null)" = "$_s" ] || { _bad=1; echo "mismatch: $_p"; }
  done < "$2"
  return $_bad
}
gone_or_empty() {
  _n=30; while [ -e /sys/block/nbd$2/pid ] && [ $_n -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  if [ ! -e /sys/block/nbd$2 ] || { [ "$(cat /sys/block/nbd$2/size)" = 0 ] && [ ! -e /sys/block/nbd$2/pid ]; }; then
    ok "$1: /dev/nbd$2 is gone or disconnected"
  else not_ok "$1: /dev/nbd$2 is gone or disconnected"; fi
}
# the metadata cache (scratch/wim-cache) may keep finished volumes, never a build
leftovers() { find "$STATE/mounts" "$STATE/scratch" "$RUN/mounts" -mindepth 1 2>/dev/null | grep -Ev "^$STATE/scratch/wim-cache(/\.lock|/[0-9a-f]+(/volume|/map)?)?$"; }
server_procs() { ps | grep -c '[d]ism-nbd-server'; }

mkdir -p /mnt/w /mnt/w2
check "dism runs (/?)" dism /?
check "nbd.ko is loaded" test -d /sys/module/nbd
is "the WIM arrived intact" "$(sha $W)" "$W_SHA256"

# ============ 1. read-only, by name ================================================
timed "mount WIM read-only (synthesis + attach)" /Mount-Image /ImageFile:"$W" /Name:Data /MountDir:/mnt/w /ReadOnly
rc_is "1: /Mount-Image /Name:Data /ReadOnly: exit 0" 0
REC=$(rec_of /mnt/w)
I=$(kv "$REC" attach.nbd_index) DEV=$(kv "$REC" attach.disk_dev) FS=$(kv "$REC" attach.fs_dev)
diag "record: $(grep -E '^(format|index|image_name|volume|attach\.(method|disk_dev|fs_dev|nbd_index))=' "$REC" | tr '\n' ' ')"
is "1: record: format wim, index 4, name Data" "$(kv "$REC" format) $(kv "$REC" index) $(kv "$REC" image_name)" "wim 4 Data"
is "1: attach method nbd" "$(kv "$REC" attach.method)" nbd
is "1: the disk device is /dev/nbd$I" "$DEV" "/dev/nbd$I"
is "1: whole-disk NTFS: fs_dev is the disk itself" "$FS" "/dev/nbd$I"
is "1: /proc/mounts: /dev/nbd$I at /mnt/w (fuseblk)" "$(awk '$2 == "/mnt/w" { print $1, $3 }' /proc/mounts)" "/dev/nbd$I fuseblk"
is "1: no partitions on /dev/nbd$I" "$(ls -d /sys/block/nbd$I/nbd${I}p* 2>/dev/null | wc -l)" 0
is "1: the kernel marks it read-only" "$(cat /sys/block/nbd$I/ro)" 1
check "1: every file of image 4 has its sha256" manifest_ok /mnt/w /test/w.manifest
is "1: the Unicode name reads" "$(cat "/mnt/w/$UNI" 2>&1)" "grüße"
out=$(ntfsinfo -f -m "$FS" 2>&1)
like "1: ntfsinfo -f -m $FS reads the volume" "$out" "Volume Version: 3.1"
check "1: ntfsfix -n $FS" ntfsfix -n "$FS"
check_fail "1: writing is refused" sh -c 'echo x > /mnt/w/x.txt'
SIZE=$(blockdev --getsize64 /dev/nbd$I)
diag "1: device size $SIZE bytes"
run /Unmount-Image /MountDir:/mnt/w /Discard
rc_is "1: unmount" 0
gone_or_empty 1 "$I"
is "1: the WIM is unchanged" "$(sha $W)" "$W_SHA256"

# ============ 2. read/write by index, commit ========================================
timed "mount WIM read/write" /Mount-Image /ImageFile:"$W" /Index:4 /MountDir:/mnt/w
rc_is "2: /Mount-Image /Index:4 read/write: exit 0" 0
REC=$(rec_of /mnt/w); I=$(kv "$REC" attach.nbd_index); FS=$(kv "$REC" attach.fs_dev)
is "2: on /dev/nbd$I, writable" "$FS $(cat /sys/block/nbd$I/ro)" "/dev/nbd$I 0"
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:/mnt/w2
like "2: a second read/write mount of the WIM -> 0xc1420127" "$OUT" "Error: 0xc1420127"
check "2: copy new.bin into the mount" cp /test/new.bin /mnt/w/new.bin
check "2: change a file, delete one, rename one, a new Unicode directory" sh -c \
  "echo 'changed in the VM' > /mnt/w/dir/changed.txt && rm /mnt/w/dir/deleted.txt && mv /mnt/w/renamed.txt '/mnt/w/renamed ✓.txt' && mkdir -p /mnt/w/Neu && echo 'ünï written in the VM' > '/mnt/w/Neu/$UNI'"
check "2: an alternate data stream on new.bin" setfattr -n user.vmstream -v "from the vm" /mnt/w/new.bin
timed "unmount /Commit" /Unmount-Image /MountDir:/mnt/w /Commit
rc_is "2: /Unmount-Image /Commit: exit 0" 0
gone_or_empty 2 "$I"
is "2: nothing left (record, volume, live state)" "$(leftovers)" ""
W_COMMITTED=$(sha $W)
if [ "$W_COMMITTED" != "$W_SHA256" ]; then ok "2: the WIM changed"; else not_ok "2: the WIM changed"; fi

# ============ 3. the committed image read-only again =================================
run /Mount-Image /ImageFile:"$W" /Index:4 /MountDir:/mnt/w /ReadOnly
rc_is "3: mount the committed image read-only" 0
is "3: new.bin is in it" "$(sha /mnt/w/new.bin 2>&1)" "$NEW_SHA256"
is "3: its stream too" "$(getfattr --only-values -n user.vmstream /mnt/w/new.bin 2>/dev/null)" "from the vm"
is "3: the changed file" "$(cat /mnt/w/dir/changed.txt 2>&1)" "changed in the VM"
check "3: the deleted file is gone" test ! -e /mnt/w/dir/deleted.txt
check "3: the renamed file is there under its new name" test -e "/mnt/w/renamed ✓.txt"
run /Unmount-Image /MountDir:/mnt/w /Discard
rc_is "3: unmount" 0

# ============ 4. discard: byte-identical =================================================
run /Mount-Image /ImageFile:"$W" /Index:4 /MountDir:/mnt/w
rc_is "4: mount read/write again" 0
check "4: write junk, delete new.bin" sh -c 'head -c 300000 /dev/urandom > /mnt/w/junk.bin && rm /mnt/w/new.bin'
run /Unmount-Image /MountDir:/mnt/w /Discard
rc_is "4: /Unmount-Image /Discard: exit 0" 0
is "4: the WIM is byte-identical" "$(sha $W)" "$W_COMMITTED"

# ============ 5. kill -9 during a commit ================================================
# dism is killed as soon as it logs that the commit began; the WIM must stay
# valid and hold image 4 either as before (W_COMMITTED) or with killed.bin:
# the host checks which with wimlib.  Then a discard cleans up.
run /Mount-Image /ImageFile:"$W" /Index:4 /MountDir:/mnt/w
rc_is "5: mount read/write again" 0
check "5: copy killed.bin into the mount" cp /test/killed.bin /mnt/w/killed.bin
dism /LogPath:/tmp/kill.log /Unmount-Image /MountDir:/mnt/w /Commit >/dev/null 2>&1 &
KP=$!
_n=0; while ! grep -q committing /tmp/kill.log 2>/dev/null && [ $_n -lt 3000 ]; do sleep 0.01; _n=$((_n+1)); done
kill -9 $KP 2>/dev/null; wait $KP 2>/dev/null
if grep -q "committed into" /tmp/kill.log; then diag "5: (the commit had finished before the kill)"
else diag "5: killed during the commit after $_n polls"; fi
run /Get-ImageInfo /ImageFile:"$W"
rc_is "5: after the kill the WIM still opens (/Get-ImageInfo)" 0
like "5: ... and lists its 4 images" "$OUT" "Index : 4"
run /Unmount-Image /MountDir:/mnt/w /Discard
diag "5: discard after the kill: exit $RC"
dism /Cleanup-Mountpoints >/dev/null 2>&1
grep -q ' /mnt/w ' /proc/mounts && umount -l /mnt/w
W_KILLED=$(sha $W)

# ============ 6. nothing left ============================================================
sleep 0.3
is "6: no dism-nbd-server process" "$(server_procs)" 0
is "6: /Get-MountedImageInfo lists nothing" "$(dism /Format:Json /Get-MountedImageInfo)" '{"mounted_images": []}'
is "6: registry, volumes and live state empty" "$(leftovers)" ""
is "6: nothing of ours in /proc/mounts" "$(grep -c -E 'nbd|/mnt/' /proc/mounts)" 0

# ============ 7. the WIM back to the host ================================================
if [ -b /dev/vda ]; then
  printf 'DISMWIM %s %s\n' "$(stat -c %s $W)" "$W_KILLED" | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
  check "the committed WIM copied to /dev/vda for the host" dd if="$W" of=/dev/vda bs=1M seek=1 conv=fsync
else
  not_ok "the committed WIM copied to /dev/vda for the host (no /dev/vda)"
fi
diag "guest time: $(awk -v t0="$T0" '{ printf "%.1f", $1 - t0 }' /proc/uptime) s"
[ "$VM_FAILED" = 0 ]
