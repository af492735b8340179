# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 82-dism.guest.sh - guest half of tests/t/82-vm-dism.t (busybox sh, as
# /test/run.sh).  The dism command end to end on the real kernel nbd driver:
# here nbd.ko is loaded, so libdism takes the NBD method (netlink CONNECT,
# one socket, two where asked) instead of the loop+FUSE fallback.  From the host (all
# under /test):
#   env            G_SHA256 G_SIZE (the GPT disk as raw), M_SHA256 M_SIZE (the
#                  MBR disk), NEW_SHA256 AFTER_SHA256 (the files written here)
#   g.vhdx         GPT disk (ESP, MSR, NTFS "WIN" with \Windows = p3, NTFS
#                  "DATA" = p4) as a dynamic VHDX, read/write scenarios
#   g.manifest     sha256sum lines of every file of p3 (paths from its root)
#   m.vhd          MBR disk (FAT p1, NTFS \Windows p2, extended p3, logical
#                  NTFS p5) as a dynamic VHD, read-only scenarios
#   new.bin after.bin   files copied into the mount (the host knows their sums)
# At the end the committed g.vhdx goes back to the host on /dev/vda: sector 0
# holds "DISMVHDX <size> <sha256>", the file starts at 1 MiB.
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server   # (also found next to dism)
STATE=/var/lib/dism RUN=/run/dism LOG=/tmp/dism.log
G=/test/g.vhdx M=/test/m.vhd
UNI='Ünïcødé ✓ файл.txt'
T0=$(uptime_s)

ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
run() { OUT=$(dism /LogPath:"$LOG" "$@" 2>&1); RC=$?; }
# timed NAME dism-args...: run, record the guest-side time in ms in $MS
timed() { _what=$1; shift; _t=$(ms); run "$@"; MS=$(( $(ms) - _t )); diag "timing: $_what: $MS ms"; }
like() {  # like "what" got substring
  case "$2" in *"$3"*) ok "$1" ;; *) not_ok "$1"; diag "got: $2"; diag "wanted: ...$3..." ;; esac
}
rc_is() {  # rc_is "what" expected (uses $RC, shows $OUT on failure)
  if [ "$RC" = "$2" ]; then ok "$1"; else not_ok "$1"; diag "exit $RC, expected $2"; diag "$OUT"; fi
}
sha() { sha256sum < "$1" | cut -d' ' -f1; }
rec_of() { grep -l "^mount_dir=$1\$" "$STATE"/mounts/*.conf 2>/dev/null | head -1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
json_line() {  # the /Get-MountedImageInfo /Format:Json entry of a mount dir
  dism /Format:Json /Get-MountedImageInfo 2>/dev/null | grep -F "{\"mount_dir\": \"$1\","
}
# connections to a mount's NBD socket as the server sees them: its accepted
# sockets are listed in /proc/net/unix with the path the listening socket
# was bound to (nbd.sock.PID.tmp: the server renames it into place), state 03
# (connected).  (busybox netstat -x cannot parse this kernel's format.)
conns_of() { awk -v p="$RUN/mounts/$1/nbd.sock" 'index($NF, p) == 1 && $6 == "03"' /proc/net/unix | wc -l; }
is_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; }
manifest_ok() {  # manifest_ok DIR MANIFEST: every file in MANIFEST has its sum
  _bad=0
  while read -r _s _p; do
    [ "$(sha "$1/${_p#./}" 2>/dev/null)" = "$_s" ] || { _bad=1; echo "mismatch: $_p"; }
  done < "$2"
  return $_bad
}
nbd_left() {
  _l=
  for _d in /sys/block/nbd*; do
    [ -e "$_d" ] || continue
    [ -e "$_d/pid" ] && _l="$_l $(basename "$_d")(connected)"
    [ "$(cat "$_d/size")" != 0 ] && _l="$_l $(basename "$_d")(size)"
  done
  echo "$_l"
}
gone_or_empty() {  # gone_or_empty WHAT INDEX: /dev/nbdINDEX disconnected
  _n=30; while [ -e /sys/block/nbd$2/pid ] && [ $_n -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  if [ ! -e /sys/block/nbd$2 ] || { [ "$(cat /sys/block/nbd$2/size)" = 0 ] && [ ! -e /sys/block/nbd$2/pid ]; }; then
    ok "$1: /dev/nbd$2 is gone or disconnected (size 0)"
  else not_ok "$1: /dev/nbd$2 is gone or disconnected (size 0)"; diag "$(ls /sys/block/nbd$2; cat /sys/block/nbd$2/size)"; fi
}
leftovers() { find "$STATE/mounts" "$STATE/scratch" "$RUN/mounts" -mindepth 1 2>/dev/null; }
server_procs() { ps | grep -c '[d]ism-nbd-server'; }

mkdir -p /mnt/g /mnt/g2 /mnt/x /mnt/m1 /mnt/m2
check "dism runs (/?)" dism /?
check "nbd.ko is loaded (libdism will take the NBD method)" test -d /sys/module/nbd

# ============ 1. read/write mount of the GPT VHDX ==================================
# Two connections (multi-conn, asked for: one is the default, attach-nbd.c).
export DISM_NBD_CONNECTIONS=2
timed "mount VHDX read/write" /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/g
unset DISM_NBD_CONNECTIONS
MOUNT_RW_MS=$MS
rc_is "1: /Mount-Image $G read/write: exit 0" 0
like "1: progress and success" "$OUT" "The operation completed successfully."
like "1: the \\Windows partition (3 of 4, GPT) was chosen" "$OUT" "partition 3 of 4 (gpt, NTFS, holds \\Windows)"
REC=$(rec_of /mnt/g)
if [ -n "$REC" ]; then ok "1: a registry record names /mnt/g"; else not_ok "1: a registry record names /mnt/g"; diag "$(ls -la $STATE/mounts; cat $LOG | tail -20)"; fi
ID=$(basename "${REC:-none}" .conf)
I=$(kv "$REC" attach.nbd_index) DEV=$(kv "$REC" attach.disk_dev) FS=$(kv "$REC" attach.fs_dev)
diag "record: $(grep -E '^(mode|attach\.(method|disk_dev|fs_dev|nbd_index|backend_id))=' "$REC" | tr '\n' ' ')"
is "1: attach method is nbd" "$(kv "$REC" attach.method)" nbd
is "1: the disk device is /dev/nbd$I" "$DEV" "/dev/nbd$I"
is "1: /proc/mounts: /dev/nbd${I}p3 at /mnt/g (fuseblk)" \
   "$(awk '$2 == "/mnt/g" { print $1, $3 }' /proc/mounts)" "/dev/nbd${I}p3 fuseblk"
is "1: the record's fs_dev is that partition" "$FS" "/dev/nbd${I}p3"
check "1: files: every file of the image has its sha256" manifest_ok /mnt/g /test/g.manifest
is "1: \\Windows\\System32\\ntoskrnl.exe reads" "$(cat /mnt/g/Windows/System32/ntoskrnl.exe)" "not really a kernel"
is "1: the Unicode file name reads" "$(cat "/mnt/g/$UNI" 2>&1)" "grüße"
is "1: /Get-MountedImageInfo /Format:Json: Ok, image, index 1, read/write" "$(json_line /mnt/g)" \
   "  {\"mount_dir\": \"/mnt/g\", \"image_file\": \"$G\", \"image_index\": 1, \"read_write\": true, \"status\": \"Ok\"}"
is "1: /sys/block/nbd$I/backend is our id" "$(cat /sys/block/nbd$I/backend 2>&1)" "dism:$ID"
check "1: connected (/sys/block/nbd$I/pid)" test -e /sys/block/nbd$I/pid
is "1: the device is writable" "$(cat /sys/block/nbd$I/ro)" 0
is "1: device size = the disk's" "$(blockdev --getsize64 /dev/nbd$I)" "$G_SIZE"
for p in 1 2 3 4; do check "1: /dev/nbd${I}p$p exists" test -b /dev/nbd${I}p$p; done
HWQ=$(ls /sys/block/nbd$I/mq 2>/dev/null | wc -l)
if [ "$HWQ" = 2 ]; then ok "1: multi-conn (DISM_NBD_CONNECTIONS=2): 2 hardware queues"; else not_ok "1: multi-conn (DISM_NBD_CONNECTIONS=2): 2 hardware queues"; diag "mq: $(ls /sys/block/nbd$I/mq)"; fi
NC=$(conns_of "$ID")
if [ "$NC" = 2 ] && [ "$NC" = "$HWQ" ]; then ok "1: the server holds $NC connections (one per queue)"
else not_ok "1: the server holds one connection per hardware queue"; diag "connections: $NC, queues: $HWQ"; diag "$(grep nbd.sock /proc/net/unix)"; fi
# Nothing is written yet: ntfs-3g's read/write mount of a clean volume leaves
# the disk as it was (its journal reset rewrites what mkntfs wrote), so the
# whole device, read through the server, is still the raw disk.
is "1: dd of /dev/nbd$I equals the raw disk (sha256)" \
   "$(dd if=/dev/nbd$I bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)" "$G_SHA256"
# ntfsinfo/ntfsfix on a read/write-mounted device: ntfsprogs refuse (they
# see it in /proc/mounts); they are run on the read-only mount in 4.
check_fail "1: ntfsfix -n refuses the read/write-mounted $FS" ntfsfix -n "$FS"

# A second mount of a read/write-mounted image
run /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/x
like "4: a second read/write mount -> Error: 0xc1420127" "$OUT" "Error: 0xc1420127"
run /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/x /ReadOnly
like "4: a read-only mount of a read/write-mounted image -> Error: 0xc1420127" "$OUT" "Error: 0xc1420127"
is "4: the refused mounts left /mnt/x empty and no extra device" "$(ls -A /mnt/x)|$(ls -d /sys/block/nbd* | wc -l)" "|1"

# ============ 2. writes, commit while mounted, unmount /Commit ======================
check "2: copy new.bin (2 MiB) into the mount" cp /test/new.bin /mnt/g/new.bin
check "2: create a directory and a Unicode-named file" sh -c "mkdir -p /mnt/g/Windows/Temp && echo 'ünï written in the VM' > '/mnt/g/Windows/Temp/$UNI'"
check "2: delete dismtest.txt" rm /mnt/g/dismtest.txt
timed "commit while mounted" /Commit-Image /MountDir:/mnt/g
COMMIT_MS=$MS
rc_is "2: /Commit-Image while mounted: exit 0" 0
like "2: commit progress relayed" "$OUT" "Progress: 100.0%"
# what the image file holds right now is checked later (mounted read-only
# as another file): the commit alone must have put the writes in it
check "2: copy the image file as it is after /Commit-Image" cp "$G" /tmp/c1.vhdx
check "2: the mount is still usable: new.bin reads back" test "$(sha /mnt/g/new.bin)" = "$NEW_SHA256"
check "2: write again after the commit (after.bin)" cp /test/after.bin /mnt/g/after.bin
check "2: append to a file after the commit" sh -c "echo 'line 2' >> '/mnt/g/Windows/Temp/$UNI'"
is "2: status still Ok" "$(json_line /mnt/g | grep -o '"status": "[A-Za-z]*"')" '"status": "Ok"'
is "2: still on /dev/nbd$I" "$(awk '$2 == "/mnt/g" { print $1 }' /proc/mounts)" "/dev/nbd${I}p3"

# ============ 5. unmount with a file open ==========================================
exec 7</mnt/g/after.bin
run /Unmount-Image /MountDir:/mnt/g /Commit
like "5: unmount with a file open -> Error: 0xc1420117" "$OUT" "Error: 0xc1420117"
rc_is "5: exit status 23 (0xc1420117 & 0xff)" 23
check "5: the mount is intact" is_mounted /mnt/g
check "5: and usable: nothing lost" test "$(sha /mnt/g/new.bin)|$(sha /mnt/g/after.bin)" = "$NEW_SHA256|$AFTER_SHA256"
check "5: still connected" test -e /sys/block/nbd$I/pid
is "5: status still Ok" "$(json_line /mnt/g | grep -o '"status": "[A-Za-z]*"')" '"status": "Ok"'
exec 7<&-
timed "unmount /Commit" /Unmount-Image /MountDir:/mnt/g /Commit
UNMOUNT_MS=$MS
rc_is "2: /Unmount-Image /Commit once the file is closed: exit 0" 0
check_fail "2: /mnt/g is no longer a mount point" is_mounted /mnt/g
is "2: /mnt/g is empty again" "$(ls -A /mnt/g)" ""
gone_or_empty "2" "$I"
is "2: no record, overlay or live state left" "$(leftovers)" ""
is "2: no dism-nbd-server left" "$(server_procs)" 0
G_COMMITTED=$(sha "$G")
if [ "$G_COMMITTED" != "$G_SHA_VHDX" ]; then ok "2: the image file changed"; else not_ok "2: the image file changed"; fi

# ============ 4. read-only mounts (both changes are in the image) ===================
timed "mount VHDX read-only" /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/g /ReadOnly
rc_is "4: /Mount-Image /ReadOnly of the committed image: exit 0" 0
REC=$(rec_of /mnt/g); I=$(kv "$REC" attach.nbd_index); FS=$(kv "$REC" attach.fs_dev)
is "4: new.bin (written before /Commit-Image) is in the image" "$(sha /mnt/g/new.bin 2>&1)" "$NEW_SHA256"
is "4: after.bin (written after it) too" "$(sha /mnt/g/after.bin 2>&1)" "$AFTER_SHA256"
is "4: the Unicode file with both lines" "$(cat "/mnt/g/Windows/Temp/$UNI" 2>&1)" "ünï written in the VM
line 2"
check "4: the deleted dismtest.txt is gone" test ! -e /mnt/g/dismtest.txt
check "4: the original files are intact" sh -c "grep -v dismtest.txt /test/g.manifest > /tmp/m.keep && cd /mnt/g && sha256sum -c -s /tmp/m.keep"
is "4: the kernel marks /dev/nbd$I read-only" "$(cat /sys/block/nbd$I/ro)" 1
is "4: /Get-MountedImageInfo: Ok, read-only" "$(json_line /mnt/g)" \
   "  {\"mount_dir\": \"/mnt/g\", \"image_file\": \"$G\", \"image_index\": 1, \"read_write\": false, \"status\": \"Ok\"}"
check_fail "4: writing a file is refused" sh -c 'echo x > /mnt/g/x.txt'
check_fail "4: deleting a file is refused" rm /mnt/g/new.bin
check_fail "4: a raw write to $FS is refused" dd if=/dev/zero of="$FS" bs=512 count=1 conv=fsync
# ntfsprogs on the device of a read-only mount: ntfsfix -n opens it read-only
# and works; ntfsinfo refuses any mounted device unless forced (-f), which is
# harmless here since it only reads.
check_fail "4: ntfsinfo -m refuses the mounted $FS without -f" ntfsinfo -m "$FS"
out=$(ntfsinfo -f -m "$FS" 2>&1)
like "4: ntfsinfo -f -m $FS (volume WIN)" "$out" "Volume Name: WIN"
check "4: ntfsfix -n $FS" ntfsfix -n "$FS"
# a second read-only mount of the same image at the same time
timed "second read-only mount" /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/g2 /ReadOnly
rc_is "4: a second read-only mount of the same image: exit 0" 0
I2=$(kv "$(rec_of /mnt/g2)" attach.nbd_index)
if [ -n "$I2" ] && [ "$I2" != "$I" ]; then ok "4: on its own device (/dev/nbd$I2)"; else not_ok "4: on its own device"; diag "I=$I I2=$I2"; fi
is "4: both read new.bin" "$(sha /mnt/g/new.bin)|$(sha /mnt/g2/new.bin 2>&1)" "$NEW_SHA256|$NEW_SHA256"
is "4: both listed Ok" "$(dism /Format:Json /Get-MountedImageInfo | grep -c '"status": "Ok"')" 2
run /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/x
like "4: a read/write mount while read-only ones exist -> Error: 0x80070020" "$OUT" "Error: 0x80070020"
run /Unmount-Image /MountDir:/mnt/g /Discard
rc_is "4: unmount the first read-only mount" 0
is "4: the second one still reads" "$(sha /mnt/g2/after.bin 2>&1)" "$AFTER_SHA256"
run /Unmount-Image /MountDir:/mnt/g2 /Commit
rc_is "4: unmount /Commit of the second read-only mount (nothing to save)" 0
gone_or_empty "4" "$I"; gone_or_empty "4 (second)" "$I2"
is "4: read-only mounts left the image unchanged" "$(sha "$G")" "$G_COMMITTED"

# ============ 3. discard ==========================================================
timed "mount VHDX read/write again (warm)" /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/g
rc_is "3: mount read/write again" 0
I=$(kv "$(rec_of /mnt/g)" attach.nbd_index)
check "3: write junk and delete new.bin" sh -c 'head -c 300000 /dev/urandom > /mnt/g/junk.bin && rm /mnt/g/new.bin && echo x > /mnt/g/after.bin'
timed "unmount /Discard" /Unmount-Image /MountDir:/mnt/g /Discard
rc_is "3: /Unmount-Image /Discard: exit 0" 0
is "3: the image file is unchanged (sha256)" "$(sha "$G")" "$G_COMMITTED"
gone_or_empty "3" "$I"
is "3: no overlay left" "$(ls -A $STATE/scratch 2>/dev/null)" ""

# ============ 2b. the image as /Commit-Image left it (copied in 2) ==================
run /Mount-Image /ImageFile:/tmp/c1.vhdx /Index:1 /MountDir:/mnt/x /ReadOnly
rc_is "2b: mount the copy taken after /Commit-Image read-only" 0
is "2b: it holds new.bin" "$(sha /mnt/x/new.bin 2>&1)" "$NEW_SHA256"
is "2b: the Unicode file with its first line only" "$(cat "/mnt/x/Windows/Temp/$UNI" 2>&1)" "ünï written in the VM"
check "2b: dismtest.txt deleted" test ! -e /mnt/x/dismtest.txt
check "2b: after.bin (written after the commit) is not there" test ! -e /mnt/x/after.bin
run /Unmount-Image /MountDir:/mnt/x /Discard
rc_is "2b: unmount it" 0
rm -f /tmp/c1.vhdx

# ============ 8. the server dies: Needs Remount, /Remount-Image ======================
# (a copy of the image, discarded at the end).  What was fsync'ed before the
# crash survives; the remount must not wait for the NBD dead-connection
# timeout (30 s) on the dead device's pending requests.
cp "$G" /tmp/k.vhdx
run /Mount-Image /ImageFile:/tmp/k.vhdx /Index:1 /MountDir:/mnt/x
rc_is "8: mount a copy read/write" 0
I=$(kv "$(rec_of /mnt/x)" attach.nbd_index)
check "8: write a file with fsync" dd if=/test/after.bin of=/mnt/x/synced.bin bs=64k conv=fsync
SPID=$(cat $RUN/mounts/*/server.pid 2>/dev/null)
check "8: kill -9 the image server ($SPID)" kill -9 "$SPID"
sleep 0.3
is "8: status NeedsRemount" "$(json_line /mnt/x | grep -o '"status": "[A-Za-z]*"')" '"status": "NeedsRemount"'
timed "remount after the server died" /Remount-Image /MountDir:/mnt/x
rc_is "8: /Remount-Image: exit 0" 0
if [ "$MS" -lt 10000 ]; then ok "8: the remount took $MS ms (< 10 s: no dead-connection wait)"
else not_ok "8: the remount took $MS ms (waited for the dead-connection timeout)"; fi
is "8: status Ok again" "$(json_line /mnt/x | grep -o '"status": "[A-Za-z]*"')" '"status": "Ok"'
is "8: the fsync'ed file survived" "$(sha /mnt/x/synced.bin 2>&1)" "$AFTER_SHA256"
I2=$(kv "$(rec_of /mnt/x)" attach.nbd_index)
check "8: on a connected /dev/nbd$I2 again" test -e /sys/block/nbd$I2/pid
SPID=$(cat $RUN/mounts/*/server.pid 2>/dev/null)
check "8: kill -9 the new server too" kill -9 "$SPID"
sleep 0.3
timed "unmount /Discard after the server died" /Unmount-Image /MountDir:/mnt/x /Discard
rc_is "8: /Unmount-Image /Discard of the dead mount: exit 0" 0
if [ "$MS" -lt 10000 ]; then ok "8: the unmount took $MS ms (< 10 s)"; else not_ok "8: the unmount took $MS ms"; fi
check_fail "8: /mnt/x is unmounted" is_mounted /mnt/x
gone_or_empty "8" "$I2"
rm -f /tmp/k.vhdx

# ============ MBR disk (VHD), read-only: the whole device, ntfsprogs ================
timed "mount VHD (MBR) read-only" /Mount-Image /ImageFile:"$M" /Index:1 /MountDir:/mnt/m1 /ReadOnly
rc_is "mbr: /Mount-Image of the MBR VHD /ReadOnly: exit 0" 0
like "mbr: partition 2 (\\Windows) chosen, not the logical 5" "$OUT" "partition 2 of"
REC=$(rec_of /mnt/m1); I=$(kv "$REC" attach.nbd_index); FS=$(kv "$REC" attach.fs_dev)
is "mbr: fs_dev /dev/nbd${I}p2" "$FS" "/dev/nbd${I}p2"
for p in 1 2 5; do check "mbr: /dev/nbd${I}p$p exists" test -b /dev/nbd${I}p$p; done
is "mbr: dd of /dev/nbd$I equals the raw disk (sha256)" \
   "$(dd if=/dev/nbd$I bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)" "$M_SHA256"
is "mbr: dismtest.txt names the volume" "$(cat /mnt/m1/dismtest.txt 2>&1)" WIN
out=$(ntfsinfo -f -m "$FS" 2>&1)
like "mbr: ntfsinfo -f -m $FS" "$out" "Volume Name: WIN"
check "mbr: ntfsfix -n $FS" ntfsfix -n "$FS"
is "mbr: the logical p5 is the DATA volume (ntfsinfo)" "$(ntfsinfo -m /dev/nbd${I}p5 2>&1 | sed -n 's/^[[:space:]]*Volume Name:[[:space:]]*//p')" DATA
is "mbr: one connection by default (one hardware queue)" "$(ls /sys/block/nbd$I/mq | wc -l)" 1
is "mbr: the server holds one connection" "$(conns_of "$(basename "$REC" .conf)")" 1
run /Unmount-Image /MountDir:/mnt/m1 /Discard
rc_is "mbr: unmount" 0
gone_or_empty "mbr" "$I"
is "mbr: the VHD is unchanged" "$(sha "$M")" "$M_SHA_VHD"

# ============ 6. nothing left ======================================================
sleep 0.3
is "6: no nbd device connected or sized" "$(nbd_left)" ""
is "6: no dism-nbd-server process" "$(server_procs)" 0
is "6: /Get-MountedImageInfo lists nothing" "$(dism /Format:Json /Get-MountedImageInfo)" '{"mounted_images": []}'
is "6: registry, overlays and live state empty" "$(leftovers)" ""
is "6: nothing of ours in /proc/mounts" "$(grep -c -E 'nbd|/mnt/' /proc/mounts)" 0
diag "nbd devices at the end: $(cd /sys/block && ls -d nbd* 2>/dev/null | tr '\n' ' ')"

# ============ 7. timings; the image back to the host ================================
diag "timing summary (guest clock, TCG; the first mount is cold: first run of dism, the server and ntfs-3g): mount rw $MOUNT_RW_MS ms, commit-while-mounted $COMMIT_MS ms, unmount+commit $UNMOUNT_MS ms"
if [ -b /dev/vda ]; then
  SZ=$(stat -c %s "$G")
  printf 'DISMVHDX %s %s\n' "$SZ" "$G_COMMITTED" | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
  check "the committed VHDX copied to /dev/vda for the host" dd if="$G" of=/dev/vda bs=1M seek=1 conv=fsync
else
  not_ok "the committed VHDX copied to /dev/vda for the host (no /dev/vda)"
fi
diag "guest time: $(awk -v t0="$T0" '{ printf "%.1f", $1 - t0 }' /proc/uptime) s"
[ "$VM_FAILED" = 0 ]
