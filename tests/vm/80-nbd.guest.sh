# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 80-nbd.guest.sh - guest half of tests/t/80-vm-nbd.t (runs as /test/run.sh
# inside the VM, busybox sh).  Serves /test/disk.raw and /test/disk.vhdx (the
# same disk) read-only with the NBD server, attaches each to the kernel's nbd
# driver with nbd-client (netlink, unix socket), and checks the block device,
# partitions, ntfsprogs and an ntfs-3g mount; then read-write exports (the raw
# image, and the VHDX with --overlay): write through ntfs-3g, disconnect, and
# verify from a fresh attach.  /test/env (from the host) sets:
#   SERVER=dism|qemu-nbd  RW_MODE=overlay|raw  DISK_SHA256  DISK_SIZE
# RW_MODE=raw (the host found --overlay not working) skips the overlay part.
. /usr/share/dism-vm/tap.sh
. /test/env
SOCK=/tmp/s.sock
SPID=
T0=$(uptime_s)

# serve NAME ro|rw IMAGE [OVERLAY]: start the server in the background.
serve() {
  _log=/tmp/server-$1.log; rm -f "$SOCK"
  case "$SERVER:$2" in
    dism:ro)      dism-nbd-server --readonly --unix "$SOCK" "$3" >"$_log" 2>&1 & ;;
    dism:rw)      if [ -n "${4:-}" ]; then dism-nbd-server --overlay "$4" --unix "$SOCK" "$3" >"$_log" 2>&1 &
                  else dism-nbd-server --unix "$SOCK" "$3" >"$_log" 2>&1 & fi ;;
    qemu-nbd:ro)  qemu-nbd --read-only -t -k "$SOCK" "$3" >"$_log" 2>&1 & ;;
    qemu-nbd:rw)  qemu-nbd -t -k "$SOCK" -f raw "$3" >"$_log" 2>&1 & ;;
  esac
  SPID=$!
  _n=100   # 10 s, but stop waiting as soon as the server has exited
  while [ ! -S "$SOCK" ] && [ $_n -gt 0 ] && kill -0 "$SPID" 2>/dev/null; do sleep 0.1; _n=$((_n-1)); done
  if [ -S "$SOCK" ]; then ok "$1: $SERVER server listens on $SOCK"
  else not_ok "$1: $SERVER server listens on $SOCK"; diag "$(cat "$_log")"; return 1; fi
}
unserve() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=
}
# attach NAME: nbd-client over netlink (nbds_max=0: the device is created on
# connect), then open the device so the kernel scans the partition table.
attach() {
  if _out=$(nbd-client -unix "$SOCK" /dev/nbd0 -b 512 2>&1) && wait_for /sys/block/nbd0/pid 50; then
    ok "$1: nbd-client attaches /dev/nbd0 (netlink, unix socket)"
  else
    not_ok "$1: nbd-client attaches /dev/nbd0 (netlink, unix socket)"; diag "$_out"; diag "$(cat /tmp/server-*.log)"; return 1
  fi
  dd if=/dev/nbd0 of=/dev/null bs=512 count=1 2>/dev/null
  if wait_for /dev/nbd0p1 50; then ok "$1: /dev/nbd0p1 appears after a 512-byte read"
  else not_ok "$1: /dev/nbd0p1 appears after a 512-byte read"; diag "$(ls /dev/nbd* /sys/block/nbd0 2>&1)"; return 1; fi
}
detach() {
  check "$1: nbd-client -d /dev/nbd0" nbd-client -d /dev/nbd0
  _n=50; while [ -e /sys/block/nbd0/pid ] && [ $_n -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  is "$1: device size is 0 after disconnect" "$(cat /sys/block/nbd0/size)" 0
}

# ---- read-only exports: the raw disk, then the same disk as VHDX ----------
# ro_checks NAME IMAGE
ro_checks() {
  serve "$1" ro "$2" && attach "$1" || return 0
  is "$1: /dev/nbd0 size" "$(blockdev --getsize64 /dev/nbd0)" "$DISK_SIZE"
  is "$1: kernel marks the device read-only" "$(cat /sys/block/nbd0/ro)" 1
  is "$1: dd of /dev/nbd0 matches the raw disk (sha256)" \
     "$(dd if=/dev/nbd0 bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)" "$DISK_SHA256"
  is "$1: partition 1 starts at sector 2048" "$(cat /sys/block/nbd0/nbd0p1/start)" 2048
  if out=$(ntfsinfo -m /dev/nbd0p1 2>&1); then ok "$1: ntfsinfo -m /dev/nbd0p1"
    case "$out" in *DISMVM*) ok "$1: ntfsinfo shows the volume name DISMVM" ;;
                   *) not_ok "$1: ntfsinfo shows the volume name DISMVM"; diag "$out" ;; esac
  else not_ok "$1: ntfsinfo -m /dev/nbd0p1"; diag "$out"; fi
  check "$1: ntfsfix -n /dev/nbd0p1" ntfsfix -n /dev/nbd0p1
  mkdir -p /mnt/ro
  if check "$1: ntfs-3g -o ro mounts /dev/nbd0p1" ntfs-3g -o ro /dev/nbd0p1 /mnt/ro; then
    check "$1: files on the mount have the right sha256" sh -c 'cd /mnt/ro && sha256sum -c /test/manifest'
    check_fail "$1: writing to the read-only mount fails" sh -c 'echo x > /mnt/ro/new.txt'
    check "$1: umount" umount /mnt/ro
  fi
  check_fail "$1: a raw write to /dev/nbd0 fails" dd if=/dev/zero of=/dev/nbd0 bs=512 count=1 conv=fsync
  detach "$1"
}
ro_checks ro-raw /test/disk.raw
unserve
ro_checks ro-vhdx /test/disk.vhdx
unserve
T1=$(uptime_s)

# ---- read-write exports: write, disconnect, verify from a fresh attach -----
# rw_checks NAME IMAGE [OVERLAY]
rw_checks() {
  _name=$1 _img=$2 _ovl=${3:-}
  diag "$_name: read-write export of $_img${_ovl:+ with the overlay $_ovl}"
  _base_before=$(sha256sum "$_img" | cut -d' ' -f1)
  _newsum=
  if serve "$_name" rw "$_img" "$_ovl" && attach "$_name"; then
    is "$_name: kernel marks the device writable" "$(cat /sys/block/nbd0/ro)" 0
    mkdir -p /mnt/rw
    if check "$_name: ntfs-3g mounts /dev/nbd0p1 read-write" ntfs-3g /dev/nbd0p1 /mnt/rw; then
      dd if=/dev/urandom of=/tmp/new.bin bs=64k count=24 2>/dev/null   # 1.5 MiB
      _newsum=$(sha256sum /tmp/new.bin | cut -d' ' -f1)
      check "$_name: write a 1.5 MiB file and a directory" \
        sh -c 'mkdir /mnt/rw/newdir && cp /tmp/new.bin /mnt/rw/newdir/new.bin && echo hello > /mnt/rw/hello2.txt'
      check "$_name: delete an existing file" rm /mnt/rw/hello.txt
      check "$_name: sync" sync
      check "$_name: umount" umount /mnt/rw
    fi
    check "$_name: blockdev --flushbufs" blockdev --flushbufs /dev/nbd0
    detach "$_name"
  fi
  unserve
  if [ -n "$_ovl" ]; then
    is "$_name: the base image is unchanged (writes went to the overlay)" \
       "$(sha256sum "$_img" | cut -d' ' -f1)" "$_base_before"
  else
    _after=$(sha256sum "$_img" | cut -d' ' -f1)
    if [ "$_after" != "$_base_before" ]; then ok "$_name: the image file changed"
    else not_ok "$_name: the image file changed"; fi
  fi
  _v=$_name-reattach
  if serve "$_v" rw "$_img" "$_ovl" && attach "$_v"; then
    check "$_v: ntfsfix -n is clean after the write" ntfsfix -n /dev/nbd0p1
    mkdir -p /mnt/v
    if check "$_v: ntfs-3g -o ro mounts the written volume" ntfs-3g -o ro /dev/nbd0p1 /mnt/v; then
      is "$_v: the new file reads back with the same sha256" \
         "$(sha256sum /mnt/v/newdir/new.bin 2>&1 | cut -d' ' -f1)" "$_newsum"
      is "$_v: the small new file" "$(cat /mnt/v/hello2.txt 2>&1)" hello
      check_fail "$_v: the deleted file is gone" test -e /mnt/v/hello.txt
      check "$_v: the other original files are intact" \
        sh -c 'cd /mnt/v && grep -v " \./hello.txt$" /test/manifest | sha256sum -c -'
      check "$_v: umount" umount /mnt/v
    fi
    detach "$_v"
  fi
  unserve
}
rw_checks rw-raw /test/disk.raw
if [ "$RW_MODE" = overlay ]; then
  rw_checks rw-overlay /test/disk.vhdx /tmp/o.ovl
else
  diag "the server has no working --overlay yet: overlay write checks not run"
fi
T2=$(uptime_s)
diag "guest timings: read-only part $(echo "$T1 - $T0" | bc 2>/dev/null || echo "$T0..$T1")s, read-write part $(echo "$T2 - $T1" | bc 2>/dev/null || echo "$T1..$T2")s"
[ "$VM_FAILED" = 0 ]
