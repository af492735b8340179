#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# /init of the VM-test initramfs (installed by Kbuild/vm/mkinitramfs.sh).
# Mounts the API filesystems, loads the modules (options from /etc/modopts),
# brings up lo, runs /test/run.sh with its output framed by markers on the
# serial console, dumps dmesg, and always powers off.  A watchdog powers off
# after dism.timeout= seconds (kernel command line) if the script hangs.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root TERM=dumb
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
hostname dism-vm

timeout=120
for a in $(cat /proc/cmdline); do
  case "$a" in dism.timeout=*) timeout=${a#dism.timeout=} ;; esac
done
(
  sleep "$timeout"
  echo "===DISM-VM-WATCHDOG after ${timeout}s: test script hung==="
  # A hang is read from this alone in CI's log, kernel log first (run-vm.sh
  # keeps the first 400 lines): then each process's state, kernel wait
  # channel and command line, with the kernel stack of those in D state or
  # named dism* and of their threads in D state; kernel threads only when
  # in D state or in nbd code (its receive workers, the rescuer); then the
  # tails of the guest's logs.
  dmesg | tail -n 40
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "$p/status" 2>/dev/null)
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" | cut -c1-160)
    stack=$(cat "$p/stack" 2>/dev/null)
    if [ -z "$cmd" ]; then           # a kernel thread (proc files show size 0)
      case "$st $stack" in
        D*|*nbd*) echo "WD $pid $st [$(cat "$p/comm" 2>/dev/null)]"
                  echo "$stack" | head -n 12 | sed "s/^/WD   $pid /" ;;
      esac
      continue
    fi
    echo "WD $pid $st $(cat "$p/wchan" 2>/dev/null) $cmd"
    case "$st $cmd" in
      D*|*dism*) echo "$stack" | head -n 12 | sed "s/^/WD   $pid /" ;;
    esac
    for t in "$p"/task/[0-9]*; do
      [ "${t##*/}" != "$pid" ] || continue
      grep -q '^State:[[:space:]]*D' "$t/status" 2>/dev/null || continue
      sed "s/^/WD   $pid thread ${t##*/} D /" "$t/stack" 2>/dev/null | head -n 12
    done
  done
  for f in /tmp/*.log /tmp/*.out; do
    [ -f "$f" ] && tail -n 30 "$f" | sed "s|^|WD $f: |"
  done
  poweroff -f
) &

echo "DISM-VM: init at $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r)"
for m in $(cat /lib/modules/load.order); do
  name=${m%.ko}
  opts=$(grep "^$name " /etc/modopts | tail -n 1 | cut -d' ' -f2-)
  # shellcheck disable=SC2086
  insmod /lib/modules/$m $opts || echo "DISM-VM: insmod $m $opts FAILED"
done
ip link set lo up
echo "DISM-VM: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"

# Keep kernel messages off the console while the script runs (they would
# split its lines); they are dumped after the end marker.
echo 1 > /proc/sys/kernel/printk
# ASan builds of our binaries (the suite's sanitizer pass): every process's
# reports go to one directory, which must be empty at the end (a TAP line).
SAN_REPORTS=
for b in /usr/bin/dism /usr/bin/dism-nbd-server; do
  if [ -x "$b" ] && grep -q __asan_init "$b"; then
    SAN_REPORTS=/run/san-reports
    mkdir -m 1777 -p "$SAN_REPORTS"
    export ASAN_OPTIONS="detect_leaks=1:log_path=$SAN_REPORTS/asan:log_exe_name=1"
    export UBSAN_OPTIONS="print_stacktrace=1:log_path=$SAN_REPORTS/ubsan:log_exe_name=1"
    break
  fi
done
cd /test || echo "DISM-VM: no /test"
echo "===DISM-VM-BEGIN==="
sh /test/run.sh </dev/null 2>&1
rc=$?
if [ -n "$SAN_REPORTS" ]; then
  if [ -z "$(ls -A "$SAN_REPORTS")" ]; then
    echo "ok - guest: no sanitizer report from any process (ASan build)"
  else
    echo "not ok - guest: no sanitizer report from any process (ASan build)"
    for f in "$SAN_REPORTS"/*; do echo "# == $f"; head -n 40 "$f" | sed 's/^/# /'; done
  fi
fi
echo "===DISM-VM-END rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)==="
echo "===DISM-VM-DMESG==="
dmesg | tail -n 150
sync
poweroff -f
