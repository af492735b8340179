# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# bench-serve.guest.sh - guest half of tests/bench/run-vm-serve-bench.sh (busybox
# sh, as /test/run.sh in the VM).  The host gives the same disk as a raw file
# (/dev/vda) and as a dynamic VHDX (/dev/vdb); both are copied into the guest's
# RAM so every server reads from the page cache.  Then, ROUNDS times in turn:
# each server serves its file read-only on a Unix socket, nbd-client attaches
# it to /dev/nbd0, and `dd if=/dev/nbd0 of=/dev/null bs=1M` reads the whole
# device; the device's own cache is dropped before each read.  Prints
# "# result NAME MIB_PER_S" lines for the host to collect.
. /usr/share/dism-vm/tap.sh
ROUNDS=${ROUNDS:-3}
[ -f /test/env ] && . /test/env
SOCK=/tmp/s.sock
cat /dev/vda > /tmp/disk.raw && cat /dev/vdb > /tmp/disk.vhdx
check "the raw and VHDX images are in RAM" test -s /tmp/disk.raw -a -s /tmp/disk.vhdx
SIZE=$(wc -c < /tmp/disk.raw)

# read_through NAME SERVER-COMMAND...: serve, attach, read the device whole.
read_through() {
  _name=$1; shift
  rm -f "$SOCK"
  "$@" >/tmp/server.log 2>&1 &
  _pid=$!
  _n=100
  while [ ! -S "$SOCK" ] && [ $_n -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  if ! nbd-client -unix "$SOCK" /dev/nbd0 -b 512 >/tmp/client.log 2>&1 ||
     ! wait_for /sys/block/nbd0/pid 50; then
    not_ok "$_name: attached"; diag "$(cat /tmp/client.log /tmp/server.log)"
    kill "$_pid" 2>/dev/null; wait "$_pid" 2>/dev/null; return 1
  fi
  sync; echo 3 > /proc/sys/vm/drop_caches
  _t0=$(uptime_s)
  _got=$(dd if=/dev/nbd0 bs=1M 2>/dev/null | wc -c)
  _t1=$(uptime_s)
  nbd-client -d /dev/nbd0 >/dev/null 2>&1
  _n=50; while [ -e /sys/block/nbd0/pid ] && [ $_n -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  kill "$_pid" 2>/dev/null; wait "$_pid" 2>/dev/null
  is "$_name: read the whole device" "$_got" "$SIZE"
  echo "# result $_name $(awk -v b="$SIZE" -v a="$_t0" -v z="$_t1" 'BEGIN { printf "%.0f", b / 1048576 / (z - a) }')"
}

r=1
while [ $r -le "$ROUNDS" ]; do
  read_through nbdkit-raw nbdkit -f -r -U "$SOCK" /usr/bin/nbdkit-file-plugin.so file=/tmp/disk.raw
  read_through dism-raw dism-nbd-server --readonly --unix "$SOCK" /tmp/disk.raw
  read_through dism-vhdx dism-nbd-server --readonly --unix "$SOCK" /tmp/disk.vhdx
  read_through dism-vhdx-copy dism-nbd-server --readonly --no-sendfile --unix "$SOCK" /tmp/disk.vhdx
  r=$((r+1))
done
