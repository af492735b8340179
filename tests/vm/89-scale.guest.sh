# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 89-scale.guest.sh - guest half of tests/t/89-vm-scale.t (busybox sh, as
# /test/run.sh).  N dism processes mount at once on the real nbd driver,
# loaded with nbds_max=4: more mounts than preallocated devices.  From the
# host (all under /test):
#   env                 N (a multiple of 6)
#   s.vhdx s.vhd s.wim  a 16 MiB MBR disk with NTFS \Windows (hello.txt) as
#                       dynamic VHDX and VHD; a small WIM (hello.txt)
# Slot i by i % 6: VHDX rw, VHDX ro, VHD rw, VHD ro, WIM rw, WIM ro; a rw
# slot mounts its own copy, a ro slot the shared original.  Slots with even
# i / 6 unmount with /Commit, the others with /Discard.
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server DISM_WIM_EXTRA_BYTES=8388608
STATE=/var/lib/dism RUN=/run/dism LOG=/tmp/dism.log
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
T0=$(ms)
sha() { sha256sum < "$1" | cut -d' ' -f1; }
kind_of() { case $(($1 % 6)) in 0|1) echo vhdx ;; 2|3) echo vhd ;; *) echo wim ;; esac; }
rw_of() { [ $(($1 % 2)) = 0 ]; }
commits() { [ $(($1 / 6 % 2)) = 0 ]; }
image_of() { if rw_of "$1"; then echo "/tmp/img$1.$(kind_of "$1")"; else echo "/test/s.$(kind_of "$1")"; fi; }
json() { dism /Format:Json /Get-MountedImageInfo 2>/dev/null; }
leftovers() { find "$STATE/mounts" "$STATE/scratch" "$RUN/mounts" -mindepth 1 2>/dev/null | grep -Ev "^$STATE/scratch/wim-cache(/\.lock|/[0-9a-f]+(/volume|/map)?)?$"; }
# procs NAME [EXCEPT]: processes running NAME, not counting lines naming EXCEPT
# (a supervisor's command line names the server too)
procs() { ps | grep "[${1%"${1#?}"}]${1#?}" | grep -v "${2:-^$}" | grep -c .; }
nbd_connected() { _l=; for _d in /sys/block/nbd*; do [ -e "$_d/pid" ] && _l="$_l ${_d##*/}"; done; echo "$_l"; }

check "nbd.ko is loaded" test -d /sys/module/nbd
is "nbds_max is 4" "$(cat /sys/module/nbd/parameters/nbds_max 2>/dev/null)" 4
diag "nbd devices before: $(ls /sys/block | grep -c '^nbd')"
for k in vhdx vhd wim; do eval "SUM_$k=$(sha /test/s.$k)"; done
sum0() { eval echo "\$SUM_$1"; }
i=0
while [ $i -lt "$N" ]; do
  rw_of $i && cp "/test/s.$(kind_of $i)" "$(image_of $i)"
  mkdir -p /mnt/s$i
  i=$((i + 1))
done

# ---- N mounts at once ------------------------------------------------------------
t=$(ms)
i=0
while [ $i -lt "$N" ]; do
  ro=; rw_of $i || ro=/ReadOnly
  ( dism /LogPath:"$LOG" /Mount-Image /ImageFile:"$(image_of $i)" /Index:1 /MountDir:/mnt/s$i $ro \
      > /tmp/mount$i.out 2>&1; echo $? > /tmp/mount$i.rc ) &
  i=$((i + 1))
done
wait
diag "timing: $N parallel mounts: $(( $(ms) - t )) ms"
bad=; i=0
while [ $i -lt "$N" ]; do
  [ "$(cat /tmp/mount$i.rc)" = 0 ] || { bad="$bad $i"; diag "mount $i: $(tail -3 /tmp/mount$i.out)"; }
  i=$((i + 1))
done
is "$N parallel /Mount-Image: every one exited 0" "$bad" ""

# Every record right: folder, image, index, mode, status.
J=$(json)
is "/Get-MountedImageInfo lists $N mounts" "$(echo "$J" | grep -c '"mount_dir"')" "$N"
bad=; i=0
while [ $i -lt "$N" ]; do
  rw=false; rw_of $i && rw=true
  line=$(echo "$J" | grep -F "{\"mount_dir\": \"/mnt/s$i\",")
  [ "$line" = "  {\"mount_dir\": \"/mnt/s$i\", \"image_file\": \"$(image_of $i)\", \"image_index\": 1, \"read_write\": $rw, \"status\": \"Ok\"}," ] ||
  [ "$line" = "  {\"mount_dir\": \"/mnt/s$i\", \"image_file\": \"$(image_of $i)\", \"image_index\": 1, \"read_write\": $rw, \"status\": \"Ok\"}" ] ||
    { bad="$bad $i"; diag "record $i: $line"; }
  i=$((i + 1))
done
is "each record: folder, image, index 1, mode, status Ok" "$bad" ""
is "every mount took the NBD method" "$(sed -n "s/^attach.method=//p" "$STATE"/mounts/*.conf | sort | uniq -c | tr -s " ")" " $N nbd"
# One connection each (attach-nbd.c): with two, Linux < 6.19's workqueue
# rescuer left one connection's replies unread in 1-3 of the 12 devices of
# most runs, and their first request waited out the 30 s timeout.
is "one hardware queue (connection) per device" \
   "$(for d in /sys/block/nbd*; do [ -e "$d/pid" ] && ls "$d/mq" | wc -l; done | sort | uniq -c | tr -s " ")" " $N 1"
is "no nbd request timed out (dmesg)" "$(dmesg | grep -c 'Connection timed out')" 0
idx=$(grep -h '^attach.nbd_index=' "$STATE"/mounts/*.conf | cut -d= -f2 | sort -n)
is "each mount has its own /dev/nbdN" "$(echo "$idx" | sort -u | grep -c .)" "$N"
max=$(echo "$idx" | tail -1)
diag "nbd indexes: $(echo $idx); devices now: $(ls /sys/block | grep -c '^nbd')"
check "devices beyond nbds_max were made on demand (highest index $max >= 4)" test "$max" -ge 4
is "a server per mount" "$(procs dism-nbd-server dism-supervise)" "$N"
is "a supervisor per mount" "$(procs dism-supervise)" "$N"
is "an ntfs-3g per mount" "$(procs ntfs-3g)" "$N"
srv=0; for f in "$RUN"/mounts/*/server.pid; do srv=$((srv + $(awk '/^VmRSS:/ { print $2 }' /proc/$(cat "$f")/status))); done
diag "RSS of the $N servers: $((srv / 1024)) MiB"

bad=; i=0
while [ $i -lt "$N" ]; do
  if rw_of $i; then
    echo "written in mount $i" > /mnt/s$i/scale-$i.txt || bad="$bad w$i"
  else
    [ "$(cat /mnt/s$i/hello.txt 2>&1)" = "hello from the image" ] || bad="$bad r$i"
  fi
  i=$((i + 1))
done
is "a file written in each read/write mount, hello.txt read in each read-only one" "$bad" ""

# ---- N unmounts at once ------------------------------------------------------------
t=$(ms)
i=0
while [ $i -lt "$N" ]; do
  how=/Discard; commits $i && how=/Commit
  ( dism /LogPath:"$LOG" /Unmount-Image /MountDir:/mnt/s$i $how > /tmp/umount$i.out 2>&1
    echo $? > /tmp/umount$i.rc ) &
  i=$((i + 1))
done
wait
diag "timing: $N parallel unmounts: $(( $(ms) - t )) ms"
bad=; i=0
while [ $i -lt "$N" ]; do
  [ "$(cat /tmp/umount$i.rc)" = 0 ] || { bad="$bad $i"; diag "unmount $i: $(tail -3 /tmp/umount$i.out)"; }
  i=$((i + 1))
done
is "$N parallel /Unmount-Image (half /Commit, half /Discard): every one exited 0" "$bad" ""
is "/Get-MountedImageInfo lists nothing" "$(json | grep -c '"mount_dir"')" 0

bad=; i=0
while [ $i -lt "$N" ]; do
  f=$(image_of $i)
  if rw_of $i && commits $i; then
    [ "$(sha "$f")" != "$(sum0 "$(kind_of $i)")" ] || bad="$bad c$i"
  elif rw_of $i; then
    [ "$(sha "$f")" = "$(sum0 "$(kind_of $i)")" ] || bad="$bad d$i"
  fi
  i=$((i + 1))
done
for k in vhdx vhd wim; do [ "$(sha /test/s.$k)" = "$(sum0 $k)" ] || bad="$bad ro-$k"; done
is "committed images changed; discarded and read-only ones byte-identical" "$bad" ""

# ---- nothing left --------------------------------------------------------------------
is "no server process" "$(procs dism-nbd-server dism-supervise)" 0
is "no supervisor process" "$(procs dism-supervise)" 0
is "no ntfs-3g process" "$(procs ntfs-3g)" 0
is "no mount under /mnt/s*" "$(grep -c ' /mnt/s' /proc/mounts)" 0
is "no connected nbd device" "$(nbd_connected)" ""
is "no record, overlay or live state" "$(leftovers)" ""

# A committed VHDX shows its file when mounted again (read-only).
dism /LogPath:"$LOG" /Mount-Image /ImageFile:/tmp/img0.vhdx /Index:1 /MountDir:/mnt/s0 /ReadOnly >/dev/null 2>&1
is "the committed VHDX holds the file written in its mount" "$(cat /mnt/s0/scale-0.txt 2>&1)" "written in mount 0"
dism /LogPath:"$LOG" /Unmount-Image /MountDir:/mnt/s0 /Discard >/dev/null 2>&1
is "and unmounts: nothing left" "$(procs dism-nbd-server) $(nbd_connected)$(leftovers)" "0 "
diag "guest time: $(( ($(ms) - T0) / 1000 )) s"
