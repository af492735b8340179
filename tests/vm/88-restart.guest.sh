# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 88-restart.guest.sh - guest half of tests/t/88-vm-server-restart.t (busybox
# sh, as /test/run.sh).  A read/write dism mount on the real /dev/nbdN, a
# write load (files copied round after round, some written with fsync) and
# the image server killed with kill -9 again and again meanwhile: its
# supervisor (dism-supervise) restarts it and gives the same /dev/nbdN new
# connections (NBD_CMD_RECONFIGURE).  The copies must all succeed, the
# kernel must log no I/O error, every file must read back (from the server,
# after the page cache is dropped) with its sha256, the unmount with
# /Commit must succeed and the committed image must hold every file.
# From the host: /test/w.vhdx (an MBR disk, one NTFS partition with
# \Windows), /test/env (KILLS).  The committed image goes back on /dev/vda:
# sector 0 "DISMVHDX <size> <sha256> <manifest bytes>", the manifest of
# the copied files from byte 512, the VHDX from 1 MiB.
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server
# Requests the killed server never answered are sent again when their
# request timeout expires: 5 s here (30 s by default) keeps the test short.
export DISM_NBD_TIMEOUT=5
STATE=/var/lib/dism RUN=/run/dism LOG=/tmp/dism.log
W=/test/w.vhdx
T0=$(uptime_s)

ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
run() { OUT=$(dism /LogPath:"$LOG" "$@" 2>&1); RC=$?; }
rc_is() { if [ "$RC" = "$2" ]; then ok "$1"; else not_ok "$1"; diag "exit $RC, expected $2"; diag "$OUT"; fi; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
status_of() { dism /Format:Json /Get-MountedImageInfo 2>/dev/null | grep -F "\"mount_dir\": \"$1\"" | grep -o '"status": "[A-Za-z]*"'; }
alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
rand_ms() { echo $(( $(od -An -N2 -tu2 /dev/urandom) % ($2 - $1) + $1 )); }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }
io_errors() { dmesg | grep -E 'I/O error|Buffer I/O|blk_update_request|critical (medium|target|space)|EXT4-fs error|print_req_error'; }

mkdir -p /mnt/w

# ============ the source files (tmpfs) and their sums ===============================
mkdir -p /tmp/src/small
for f in 1:7340032 2:5242880 3:3145728 4:1048576 5:307201 6:9437184; do
  head -c "${f#*:}" /dev/urandom > "/tmp/src/big${f%%:*}.bin"
done
i=0; while [ $i -lt 120 ]; do head -c $(( (i * 977) % 20000 + 1 )) /dev/urandom > /tmp/src/small/f$i; i=$((i + 1)); done
(cd /tmp/src && find . -type f | sort | while read -r p; do echo "$(sha "$p")  $p"; done) > /tmp/src.manifest
SRC_MB=$(du -sm /tmp/src | cut -f1)
diag "source: $(wc -l < /tmp/src.manifest) files, $SRC_MB MiB"

# ============ mount read/write on /dev/nbdN =========================================
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:/mnt/w
rc_is "/Mount-Image read/write: exit 0" 0
REC=$(grep -l '^mount_dir=/mnt/w$' $STATE/mounts/*.conf 2>/dev/null | head -1)
ID=$(basename "${REC:-none}" .conf)
I=$(kv "$REC" attach.nbd_index)
L=$RUN/mounts/$ID
is "attach method nbd" "$(kv "$REC" attach.method)" nbd
check "a supervisor runs (supervisor.pid)" test -s "$L/supervisor.pid"
SUP=$(cat "$L/supervisor.pid" 2>/dev/null)
SPID0=$(cat "$L/server.pid" 2>/dev/null)
is "the server is the supervisor's child" "$(awk '/^PPid:/ { print $2 }' /proc/$SPID0/status 2>/dev/null)" "$SUP"
is "/sys/block/nbd$I/backend is ours" "$(cat /sys/block/nbd$I/backend 2>&1)" "dism:$ID"
is "request timeout as asked (DISM_NBD_TIMEOUT=5)" "$(cat /sys/block/nbd$I/queue/io_timeout 2>&1)" 5000
HWQ=$(ls /sys/block/nbd$I/mq | wc -l)
diag "/dev/nbd$I: $HWQ connections; supervisor PID $SUP, server PID $SPID0"
dmesg -c >/dev/null 2>&1 || true    # from here on the kernel log is ours to check

# ============ the killer (background) ==============================================
# kill -9 the server at random moments (1.2-3.5 s after its predecessor was
# reconnected, so that no kill looks like a crash loop); kill number 5 is
# followed at once by a kill of its successor before it is reconnected.
# Every kill waits for the supervisor's "serves /dev/nbdN again" line.
killer() {
  k=0
  while [ $k -lt "$KILLS" ]; do
    sleep_ms "$(rand_ms 1200 3500)"
    pid=$(cat "$L/server.pid" 2>/dev/null)
    if ! alive "$pid"; then echo "no-server $k" >> /tmp/kills.log; sleep 0.5; continue; fi
    before=$(grep -c 'serves /dev/nbd' "$L/server.log")
    t0=$(ms); kill -9 "$pid"; k=$((k + 1))
    echo "kill $k $pid" >> /tmp/kills.log
    if [ $k -eq 5 ] && [ $k -lt "$KILLS" ]; then
      n=0; new=$pid
      while [ $n -lt 400 ]; do
        new=$(cat "$L/server.pid" 2>/dev/null)
        [ "$new" != "$pid" ] && alive "$new" && break
        sleep 0.05; n=$((n + 1))
      done
      kill -9 "$new" && k=$((k + 1)) && echo "kill $k $new (before its reconnect)" >> /tmp/kills.log
    fi
    n=0
    while [ "$(grep -c 'serves /dev/nbd' "$L/server.log")" -le "$before" ] && [ $n -lt 600 ]; do
      sleep 0.05; n=$((n + 1))
    done
    echo "reconnected $k $(( $(ms) - t0 ))" >> /tmp/kills.log
  done
  echo done >> /tmp/kills.log
}
: > /tmp/kills.log
killer &
KPID=$!

# ============ the load ==============================================================
# Writeback all the time (not in 30 s bursts), and a reader of the raw
# device with O_DIRECT: requests are in flight whenever the server dies.
echo 262144 > /proc/sys/vm/dirty_background_bytes
echo 50 > /proc/sys/vm/dirty_expire_centisecs
echo 20 > /proc/sys/vm/dirty_writeback_centisecs
reader() {
  n=0 fail=0
  while [ ! -e /tmp/stop-reader ]; do
    dd if=/dev/nbd$I of=/dev/null bs=1M count=8 skip=$(( (n * 8) % 152 )) iflag=direct \
      2>/tmp/rd.err || { fail=$((fail + 1)); cat /tmp/rd.err >> /tmp/reader.log; }
    n=$((n + 1))
  done
  echo "$n $fail" > /tmp/reader.res
}
reader &
RPID=$!
# rounds into r0, r1, r0, ... until the killer is through (at least 2)
mkdir -p /mnt/w/load
round=0 cp_fail=0 LOAD_T0=$(ms)
while [ $round -lt 2 ] || alive "$KPID"; do
  d=/mnt/w/load/r$((round % 2))
  rm -rf "$d" || cp_fail=$((cp_fail + 1))
  if ! cp -r /tmp/src "$d" 2>/tmp/cp.err; then cp_fail=$((cp_fail + 1)); diag "round $round: cp: $(cat /tmp/cp.err)"; fi
  # one file per round written with fsync: FLUSH requests under the kills
  if ! dd if=/tmp/src/big3.bin of="$d/fsynced.bin" bs=256k conv=fsync 2>/tmp/cp.err; then
    cp_fail=$((cp_fail + 1)); diag "round $round: dd conv=fsync: $(cat /tmp/cp.err)"
  fi
  round=$((round + 1))
  [ $round -ge 40 ] && break
done
wait "$KPID" 2>/dev/null
touch /tmp/stop-reader; wait "$RPID" 2>/dev/null
check "sync after the load" sync
read -r RN RFAIL < /tmp/reader.res
diag "reader: $RN reads of 8 MiB (O_DIRECT) of /dev/nbd$I during the load"
if [ "$RN" -gt 0 ] && [ "$RFAIL" = 0 ]; then ok "every direct read of the device during the kills succeeded ($RN)"
else not_ok "every direct read of the device during the kills succeeded"; diag "$RN reads, $RFAIL failed: $(cat /tmp/reader.log)"; fi
LOAD_MS=$(( $(ms) - LOAD_T0 ))
KILLED=$(grep -c '^kill ' /tmp/kills.log)
diag "load: $round rounds of $SRC_MB MiB in $LOAD_MS ms with $KILLED kills"
if [ "$KILLED" -ge "$KILLS" ]; then ok "the server was killed $KILLED times under the write load"
else not_ok "the server was killed $KILLS times under the write load"; diag "$(cat /tmp/kills.log)"; fi
is "every copy and fsync'ed write succeeded" "$cp_fail" 0
grep -q '^done' /tmp/kills.log || { not_ok "the killer finished"; diag "$(cat /tmp/kills.log)"; }

# ============ what the supervisor and the kernel say ================================
diag "server.log, the supervisor's first lines:"
diag "$(grep 'dism-supervise' "$L/server.log" | head -4 | cut -c1-200)"
RESTARTS=$(grep -c 'restarting it for /dev/nbd' "$L/server.log")
is "the supervisor restarted the server after every kill" "$RESTARTS" "$KILLED"
AGAIN=$(grep -c 'serves /dev/nbd'"$I"' again' "$L/server.log")
if [ "$AGAIN" -ge $((KILLED - 1)) ]; then ok "and reconnected /dev/nbd$I each time ($AGAIN reconnects)"
else not_ok "and reconnected /dev/nbd$I each time"; diag "$(grep dism-supervise "$L/server.log")"; fi
is "the same supervisor throughout" "$(cat "$L/supervisor.pid" 2>/dev/null)" "$SUP"
SPID=$(cat "$L/server.pid" 2>/dev/null)
if alive "$SPID" && [ "$SPID" != "$SPID0" ]; then ok "a new server runs (PID $SPID)"; else not_ok "a new server runs"; fi
is "still /dev/nbd$I, still ours" "$(cat /sys/block/nbd$I/backend 2>&1)" "dism:$ID"
check "still connected" test -e /sys/block/nbd$I/pid
is "one nbd device (no new one was made)" "$(ls -d /sys/block/nbd* | wc -l)" 1
is "status Ok" "$(status_of /mnt/w)" '"status": "Ok"'
ERRS=$(io_errors)
is "the kernel logged no I/O error" "$ERRS" ""
RECONN=$(dmesg | grep -c 'reconnected socket')
diag "kernel: $RECONN 'reconnected socket', $(dmesg | grep -c 'Receive control failed') 'Receive control failed', $(dmesg | grep -c 'Connection timed out') 'Connection timed out', $(dmesg | grep -c 'Send control failed\|Request send failed') send failures"
if [ "$RECONN" -ge "$AGAIN" ]; then ok "the kernel took the new connections ($RECONN 'reconnected socket')"
else not_ok "the kernel took the new connections"; diag "$(dmesg | grep -i nbd | tail -20)"; fi
RESENT=$(dmesg | grep -c 'Connection timed out, retrying')
if [ "$RESENT" -ge 1 ]; then ok "requests in flight at a kill were sent again to the new server ($RESENT timeouts, none failed)"
else not_ok "requests in flight at a kill were sent again to the new server"; diag "$(dmesg | grep nbd | tail -20)"; fi
check_fail "ntfs-3g logged no I/O error" grep -qi 'input/output error' "$L/ntfs-3g.log"

# timings: kill -> the supervisor's reconnect line (guest clock)
TIMES=$(awk '$1 == "reconnected" { print $3 }' /tmp/kills.log | sort -n)
diag "timing: kill -> reconnected (ms): $(echo $TIMES)"
diag "timing: supervisor, crash -> connections handed over (s): $(sed -n 's/.*again, \([0-9.]*\) s after.*/\1/p' "$L/server.log" | tr '\n' ' ')"
MAXT=$(echo "$TIMES" | tail -1)
if [ -n "$MAXT" ] && [ "$MAXT" -lt 20000 ]; then ok "every reconnect came within 20 s (slowest $MAXT ms; the dead-connection timeout is 30 s)"
else not_ok "every reconnect came within 20 s"; diag "$(cat /tmp/kills.log)"; fi

# ============ the files, read from the server =======================================
echo 3 > /proc/sys/vm/drop_caches
for r in 0 1; do
  check "r$r: every file has its sha256 (page cache dropped: read through the server)" \
    sh -c "cd /mnt/w/load/r$r && sha256sum -c -s /tmp/src.manifest"
  is "r$r: the fsync'ed file too" "$(sha /mnt/w/load/r$r/fsynced.bin 2>&1)" "$(sha /tmp/src/big3.bin)"
done
is "the image's own files are intact" "$(cat /mnt/w/hello.txt 2>&1)" "hello from the image"

# one more kill with nothing in flight, then unmount /Commit right away:
# the commit waits for the restarted server
SPID=$(cat "$L/server.pid")
kill -9 "$SPID"
T=$(ms)
run /Unmount-Image /MountDir:/mnt/w /Commit
UNMOUNT_MS=$(( $(ms) - T ))
rc_is "/Unmount-Image /Commit right after another kill: exit 0" 0
diag "timing: unmount /Commit right after a kill: $UNMOUNT_MS ms"
check_fail "/mnt/w is unmounted" awk '$2 == "/mnt/w" { f = 1 } END { exit !f }' /proc/mounts
if [ ! -e /sys/block/nbd$I ] || [ "$(cat /sys/block/nbd$I/size)" = 0 ]; then ok "/dev/nbd$I is gone"; else not_ok "/dev/nbd$I is gone"; fi
is "no server or supervisor left" "$(ps | grep -cE '[d]ism-(nbd-server|supervise)')" 0
is "no record, overlay (or live map) or live state left" \
  "$(find $STATE/mounts $STATE/scratch $RUN/mounts -mindepth 1 2>/dev/null)" ""
is "still no I/O error in the kernel log" "$(io_errors)" ""

# ============ the committed image ===================================================
run /Mount-Image /ImageFile:"$W" /Index:1 /MountDir:/mnt/w /ReadOnly
rc_is "mount the committed image read-only" 0
for r in 0 1; do
  check "committed r$r: every file has its sha256" sh -c "cd /mnt/w/load/r$r && sha256sum -c -s /tmp/src.manifest"
  is "committed r$r: the fsync'ed file" "$(sha /mnt/w/load/r$r/fsynced.bin 2>&1)" "$(sha /tmp/src/big3.bin)"
done
run /Unmount-Image /MountDir:/mnt/w /Discard
rc_is "unmount it" 0

if [ -b /dev/vda ]; then
  SZ=$(stat -c %s "$W") MB=$(stat -c %s /tmp/src.manifest)
  printf 'DISMVHDX %s %s %s\n' "$SZ" "$(sha "$W")" "$MB" | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
  dd if=/tmp/src.manifest of=/dev/vda bs=512 seek=1 conv=fsync 2>/dev/null
  check "the committed VHDX copied to /dev/vda for the host" dd if="$W" of=/dev/vda bs=1M seek=1 conv=fsync
else
  not_ok "the committed VHDX copied to /dev/vda for the host (no /dev/vda)"
fi
diag "guest time: $(awk -v t0="$T0" '{ printf "%.1f", $1 - t0 }' /proc/uptime) s"
[ "$VM_FAILED" = 0 ]
