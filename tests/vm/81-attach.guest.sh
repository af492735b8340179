# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 81-attach.guest.sh - guest half of tests/t/81-vm-attach.t (busybox sh, as
# /test/run.sh).  libdism's NBD attach (through test-attach) instead of
# nbd-client: dism-nbd-server serves the Windows-like GPT disk (as VHDX), the
# same disk with 4096-byte sectors and an MBR disk with a logical partition
# (raw); dism_attach hands N sockets to the kernel over netlink and must come
# back with the kernel-picked index, our backend id, one hardware queue per
# socket (one by default; --conns or DISM_NBD_CONNECTIONS for more, up to
# the CPUs: blk-mq's cap), a raised max_sectors_kb, partition nodes, and the
# \Windows partition chosen; dism_detach must leave nothing.  /test/env sets
# DISK_SHA256, DISK_SIZE, MBR_P5_START (sectors).
. /usr/share/dism-vm/tap.sh
. /test/env
SOCK=/tmp/s.sock
SPID=
T0=$(uptime_s)

kv() { sed -n "s/^$2=//p" "$1" | head -1; }
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

serve() {  # serve NAME IMAGE [rw]
  rm -f "$SOCK"
  if [ "${3:-}" = rw ]; then dism-nbd-server --unix "$SOCK" "$2" >"/tmp/server-$1.log" 2>&1 &
  else dism-nbd-server --readonly --unix "$SOCK" "$2" >"/tmp/server-$1.log" 2>&1 & fi
  SPID=$!
  wait_for "$SOCK" 100 && ok "$1: server listens" || { not_ok "$1: server listens"; diag "$(cat /tmp/server-$1.log)"; return 1; }
}
unserve() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=
}
nbd_devs() { ls -d /sys/block/nbd* 2>/dev/null | tr '\n' ' '; }

# attach NAME STATEFILE [test-attach options]: dism_attach over NBD
# (read-only unless RW=1)
attach() {
  _n=$1 _st=$2 _ro=--ro; shift 2
  [ "${RW:-0}" = 1 ] && _ro=
  _t0=$(ms)
  if test-attach attach --method nbd --socket "$SOCK" $_ro "$@" >"$_st" 2>/tmp/attach.err; then
    ok "$_n: dism_attach (nbd) in $(( $(ms) - _t0 )) ms"
  else
    not_ok "$_n: dism_attach (nbd)"; diag "$(cat /tmp/attach.err)"; diag "$(dmesg | tail -20)"; return 1
  fi
  diag "$(cat "$_st")"
}
# detach NAME STATEFILE
detach() {
  _i=$(kv "$2" nbd_index)
  _t0=$(ms)
  check "$1: dism_detach" test-attach detach "$2"
  diag "$1: detach took $(( $(ms) - _t0 )) ms"
  if [ ! -e /sys/block/nbd$_i ] || [ "$(cat /sys/block/nbd$_i/size)" = 0 ]; then
    ok "$1: /dev/nbd$_i is gone or has size 0 after detach"
  else not_ok "$1: /dev/nbd$_i is gone or has size 0 after detach"; fi
  check_fail "$1: not alive after detach" test-attach alive "$2"
}

# ---- the Windows-like GPT disk, as dynamic VHDX -------------------------------
NBD_BEFORE=$(nbd_devs)
if serve gpt /test/disk.vhdx && attach gpt /tmp/gpt.st --id dism:vm81-gpt --conns 2; then
  I=$(kv /tmp/gpt.st nbd_index) DEV=$(kv /tmp/gpt.st disk_dev) FS=$(kv /tmp/gpt.st fs_dev)
  is "gpt: method nbd" "$(kv /tmp/gpt.st method)" nbd
  is "gpt: disk_dev is the kernel-picked /dev/nbd$I" "$DEV" "/dev/nbd$I"
  check "gpt: /sys/block/nbd$I/pid exists (connected)" test -e /sys/block/nbd$I/pid
  is "gpt: backend is our id" "$(cat /sys/block/nbd$I/backend)" dism:vm81-gpt
  is "gpt: multi-conn (--conns 2): two hardware queues (one per socket)" \
     "$(ls /sys/block/nbd$I/mq | wc -l)" 2
  _hw=$(cat /sys/block/nbd$I/queue/max_hw_sectors_kb)
  _want=4096; [ "$_hw" -lt 4096 ] && _want=$_hw
  is "gpt: max_sectors_kb raised (hw $_hw)" "$(cat /sys/block/nbd$I/queue/max_sectors_kb)" "$_want"
  is "gpt: logical block size 512" "$(cat /sys/block/nbd$I/queue/logical_block_size)" 512
  is "gpt: the kernel marks it read-only" "$(cat /sys/block/nbd$I/ro)" 1
  for p in 1 2 3 4; do
    check "gpt: /dev/nbd${I}p$p exists" test -b /dev/nbd${I}p$p
  done
  is "gpt: the \\Windows partition (3) is chosen" "$FS" "/dev/nbd${I}p3"
  case "$(kv /tmp/gpt.st reason)" in
    "partition 3 of 4 (gpt, NTFS, holds \\Windows)") ok "gpt: reason" ;;
    *) not_ok "gpt: reason"; diag "$(kv /tmp/gpt.st reason)" ;;
  esac
  is "gpt: the kernel's p3 starts where we read it" \
     "$(( $(cat /sys/block/nbd$I/nbd${I}p3/start) * 512 ))" "$(kv /tmp/gpt.st part_offset)"
  check "gpt: dism_attach_alive" test-attach alive /tmp/gpt.st
  is "gpt: dd of /dev/nbd$I equals the raw disk (sha256)" \
     "$(dd if=/dev/nbd$I bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)" "$DISK_SHA256"
  mkdir -p /mnt/w
  if check "gpt: ntfs-3g -o ro mounts $FS" ntfs-3g -o ro "$FS" /mnt/w; then
    is "gpt: \\Windows\\System32 is there" "$(ls /mnt/w/Windows)" System32
    check_fail "gpt: writing to the read-only mount fails" sh -c 'echo x > /mnt/w/new.txt'
    check "gpt: umount" umount /mnt/w
  fi
  check_fail "gpt: a raw write to $FS fails" dd if=/dev/zero of="$FS" bs=512 count=1 conv=fsync
  # a second attach of the same export at the same time gets its own device
  if attach gpt-2nd /tmp/gpt2.st --id dism:vm81-gpt2 --conns 1; then
    I2=$(kv /tmp/gpt2.st nbd_index)
    if [ "$I2" != "$I" ]; then ok "gpt-2nd: another index ($I2)"; else not_ok "gpt-2nd: another index"; fi
    is "gpt-2nd: --conns 1 gives one hardware queue" "$(ls /sys/block/nbd$I2/mq | wc -l)" 1
    is "gpt-2nd: its own backend id" "$(cat /sys/block/nbd$I2/backend)" dism:vm81-gpt2
    detach gpt-2nd /tmp/gpt2.st
  fi
  detach gpt /tmp/gpt.st
fi
unserve

# ---- 4096-byte sectors -----------------------------------------------------------
# More connections asked for than CPUs: one per CPU (blk-mq's queue limit).
export DISM_NBD_CONNECTIONS=$(( $(grep -c ^processor /proc/cpuinfo) + 1 ))
if serve gpt4k /test/gpt4k.raw && attach gpt4k /tmp/4k.st --id dism:vm81-4k; then
  _cpus=$(( DISM_NBD_CONNECTIONS - 1 ))
  I=$(kv /tmp/4k.st nbd_index)
  is "gpt4k: DISM_NBD_CONNECTIONS=$DISM_NBD_CONNECTIONS: $_cpus hardware queues (one per CPU)" \
     "$(ls /sys/block/nbd$I/mq | wc -l)" "$_cpus"
  is "gpt4k: the server holds $_cpus connections" \
     "$(awk -v p="$SOCK" 'index($NF, p) == 1 && $6 == "03"' /proc/net/unix | wc -l)" "$_cpus"
  is "gpt4k: logical block size 4096" "$(cat /sys/block/nbd$I/queue/logical_block_size)" 4096
  is "gpt4k: sector_size recorded" "$(kv /tmp/4k.st sector_size)" 4096
  is "gpt4k: the kernel reads the 4Kn GPT: p3 chosen" "$(kv /tmp/4k.st fs_dev)" "/dev/nbd${I}p3"
  mkdir -p /mnt/k
  if check "gpt4k: ntfs-3g -o ro mounts it" ntfs-3g -o ro "$(kv /tmp/4k.st fs_dev)" /mnt/k; then
    is "gpt4k: \\Windows\\System32 is there" "$(ls /mnt/k/Windows)" System32
    umount /mnt/k
  fi
  detach gpt4k /tmp/4k.st
fi
unserve

# ---- MBR with a logical partition: our numbering is the kernel's ---------------------
unset DISM_NBD_CONNECTIONS
if serve mbr /test/mbr.raw && attach mbr /tmp/mbr.st --id dism:vm81-mbr; then
  I=$(kv /tmp/mbr.st nbd_index)
  # (several would let Linux < 6.19 leave one unread: attach-nbd.c)
  is "mbr: one connection by default: one hardware queue" "$(ls /sys/block/nbd$I/mq | wc -l)" 1
  is "mbr: partition 2 chosen" "$(kv /tmp/mbr.st fs_dev)" "/dev/nbd${I}p2"
  is "mbr: the kernel's logical partition 5 starts where ours does" \
     "$(cat /sys/block/nbd$I/nbd${I}p5/start 2>&1)" "$MBR_P5_START"
  detach mbr /tmp/mbr.st
fi
unserve

# ---- read-write: write through the mount, detach, read back from a new attach ---------
if serve rw /test/mbr.raw rw && RW=1 attach rw /tmp/rw.st --id dism:vm81-rw; then
  I=$(kv /tmp/rw.st nbd_index) FS=$(kv /tmp/rw.st fs_dev)
  is "rw: the device is writable" "$(cat /sys/block/nbd$I/ro)" 0
  mkdir -p /mnt/rw
  if check "rw: ntfs-3g mounts $FS read-write" ntfs-3g "$FS" /mnt/rw; then
    dd if=/dev/urandom of=/tmp/new.bin bs=64k count=40 2>/dev/null
    check "rw: write 2.5 MiB under \\Windows" cp /tmp/new.bin /mnt/rw/Windows/new.bin
    check "rw: umount" umount /mnt/rw
  fi
  detach rw /tmp/rw.st
  if RW=1 attach rw-again /tmp/rw2.st --id dism:vm81-rw2 &&
     check "rw-again: mounts" ntfs-3g -o ro "$(kv /tmp/rw2.st fs_dev)" /mnt/rw; then
    is "rw-again: the written file reads back" "$(sha256sum < /mnt/rw/Windows/new.bin)" "$(sha256sum < /tmp/new.bin)"
    umount /mnt/rw
  fi
  [ -s /tmp/rw2.st ] && detach rw-again /tmp/rw2.st
fi
unserve

# ---- no NTFS: the error comes before any device is made ---------------------------------
if serve fat /test/fatonly.raw; then
  if test-attach attach --method nbd --socket "$SOCK" --ro --id dism:vm81-fat >/dev/null 2>/tmp/fat.err; then
    not_ok "fatonly: dism_attach fails"
  else
    case "$(cat /tmp/fat.err)" in
      *"no NTFS partition in $SOCK: found 1:FAT32(0x0c) 16MiB"*) ok "fatonly: dism_attach fails with a clear message" ;;
      *) not_ok "fatonly: dism_attach fails with a clear message"; diag "$(cat /tmp/fat.err)" ;;
    esac
  fi
fi
unserve

# ---- nothing left ---------------------------------------------------------------
sleep 0.5
left=
for d in /sys/block/nbd*; do
  [ -e "$d" ] || continue
  [ -e "$d/pid" ] && left="$left $(basename "$d")(connected)"
  [ "$(cat "$d/size")" != 0 ] && left="$left $(basename "$d")(size)"
done
is "no nbd device left connected" "$left" ""
diag "nbd devices before: ${NBD_BEFORE:-none}; after: $(nbd_devs)"
is "no dism-nbd-server or test-attach process left" "$(ps | grep -E 'dism-nbd-serve[r]|test-attac[h]' | wc -l)" 0
diag "guest time: $(awk -v t0="$T0" '{ printf "%.1f", $1 - t0 }' /proc/uptime) s"
[ "$VM_FAILED" = 0 ]
