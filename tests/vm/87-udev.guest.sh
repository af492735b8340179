# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 87-udev.guest.sh - guest half of tests/t/87-vm-udev.t (busybox sh, as
# /test/run.sh).  systemd-udevd runs with udev/60-dism.rules among the stock
# 60-block, 60-persistent-storage and 99-systemd rules, on the real kernel
# nbd driver (nbds_max=4 here, so idle, never-connected devices exist).  From
# the host (all under /test):
#   env          G_NAME G_ENC (the GPT VHDX's file name and its udev encoding),
#                M_NAME M_ENC (the MBR VHD's)
#   $G_NAME      GPT disk (ESP, MSR, NTFS \Windows = p3, NTFS data = p4), VHDX
#   $M_NAME      MBR disk (FAT p1, NTFS \Windows p2, extended p3, logical p5), VHD
# /dev/vda is a small scratch disk: a device the stock rules watch (the control
# for "nowatch").
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server
STATE=/var/lib/dism LOG=/tmp/dism.log
G=/test/$G_NAME M=/test/$M_NAME
T0=$(uptime_s)

run() { OUT=$(dism /LogPath:"$LOG" "$@" 2>&1); RC=$?; }
rc_is() { if [ "$RC" = "$2" ]; then ok "$1"; else not_ok "$1"; diag "exit $RC, expected $2"; diag "$OUT"; fi; }
rec_of() { grep -l "^mount_dir=$1\$" "$STATE"/mounts/*.conf 2>/dev/null | head -1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
prop() { udevadm info --query=property --name="$1" 2>/dev/null | sed -n "s/^$2=//p"; }
settle() { udevadm settle --timeout=30 || diag "udevadm settle timed out"; }
link() { readlink -f "/dev/disk/by-dism/$1" 2>/dev/null; }
by_dism() { ls -A /dev/disk/by-dism 2>/dev/null | tr '\n' ' '; }
# watched DEV / unwatched DEV: DEV exists and udevd has / has not an inotify
# watch on it (/run/udev/watch/b<major>:<minor>, a symlink to the watch
# descriptor, which links back: -L, since -e would loop)
watch_entry() { _dev=$(cat "/sys/class/block/${1#/dev/}/dev" 2>/dev/null) && [ -n "$_dev" ] && echo "/run/udev/watch/b$_dev"; }
watched() { _w=$(watch_entry "$1") && [ -L "$_w" ]; }
unwatched() { _w=$(watch_entry "$1") && [ ! -L "$_w" ]; }
nbd_mounts() { grep -c '^/dev/nbd' /proc/mounts; }

mkdir -p /mnt/g /mnt/m

# ---- 0. udevd ------------------------------------------------------------------------
check "nbd.ko loaded with idle devices (nbds_max=4: /dev/nbd3 exists)" test -e /sys/block/nbd3
# (not through check: a daemon holding the command substitution's pipe would hang it)
systemd-udevd --daemon --resolve-names=never </dev/null >/dev/null 2>&1
# The control socket appears before the daemon answers on it: a trigger
# sent in between failed once with "Failed to wait for daemon to reply:
# Broken pipe".  Running means answering a ping.
udevd_answers() {
  _n=50
  until udevadm control --ping >/dev/null 2>&1; do
    [ "$_n" -gt 0 ] || return 1
    sleep 0.1; _n=$((_n-1))
  done
}
if wait_for /run/udev/control 50 && udevd_answers; then ok "systemd-udevd --daemon is running (answers a ping)"
else not_ok "systemd-udevd --daemon is running (answers a ping)"; fi
check "coldplug: udevadm trigger --action=add (block) and settle" \
  sh -c 'udevadm trigger --action=add --subsystem-match=block && udevadm settle --timeout=30'
if watched /dev/vda; then ok "the control: udevd watches /dev/vda (60-block.rules)"
else not_ok "the control: udevd watches /dev/vda (60-block.rules)"; diag "$(ls -la /run/udev/watch 2>&1)"; fi
idle_alone() {  # idle_alone WHEN DEV: an unconnected nbd device left alone
  _d=$1 _n=$2
  is "$_d: $_n unconnected (size 0)" "$(cat "/sys/block/${_n#/dev/}/size")" 0
  is "$_d: $_n not probed: no ID_FS_TYPE, no ID_PART_TABLE_TYPE, no links" \
     "[$(prop "$_n" ID_FS_TYPE)][$(prop "$_n" ID_PART_TABLE_TYPE)][$(prop "$_n" DEVLINKS)]" "[][][]"
  is "$_d: $_n SYSTEMD_READY=0 UDISKS_IGNORE=1 UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1" \
     "$(prop "$_n" SYSTEMD_READY) $(prop "$_n" UDISKS_IGNORE) $(prop "$_n" UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG)" "0 1 1"
  check "$_d: $_n not watched" unwatched "$_n"
}
idle_alone "at boot" /dev/nbd3
_t=$(udevadm test --action=change /sys/block/nbd3 2>&1)
case "$_t" in
  *"60-dism.rules"*) case "$_t" in *"builtin command 'blkid'"*) not_ok "udevadm test of nbd3: no blkid probe"; diag "$_t" ;;
                       *) ok "udevadm test of nbd3: our rules read, no blkid probe" ;; esac ;;
  *) not_ok "udevadm test of nbd3: our rules read"; diag "$_t" ;;
esac

# ---- 1. a GPT VHDX, read/write ---------------------------------------------------------
run /Mount-Image /ImageFile:"$G" /Index:1 /MountDir:/mnt/g
rc_is "mount the GPT VHDX read/write" 0
settle
REC=$(rec_of /mnt/g)
GID=$(kv "$REC" id) GD=$(kv "$REC" attach.disk_dev) GF=$(kv "$REC" attach.fs_dev)
is "  on an nbd device, partition 3 mounted" "$(kv "$REC" attach.method) ${GF#"$GD"}" "nbd p3"
is "  by-dism/$G_ENC-1 -> $GD" "$(link "$G_ENC-1")" "$GD"
for p in 1 2 3 4; do
  is "  by-dism/$G_ENC-1-part$p -> ${GD}p$p" "$(link "$G_ENC-1-part$p")" "${GD}p$p"
done
is "  $GD: DISM_MOUNT_ID DISM_ATTACH DISM_INDEX DISM_MODE DISM_FORMAT UDISKS_IGNORE" \
   "$(prop "$GD" DISM_MOUNT_ID) $(prop "$GD" DISM_ATTACH) $(prop "$GD" DISM_INDEX) $(prop "$GD" DISM_MODE) $(prop "$GD" DISM_FORMAT) $(prop "$GD" UDISKS_IGNORE)" \
   "$GID nbd 1 rw vhdx 1"
is "  $GD: DISM_IMAGE_FILE is the file name" "$(prop "$GD" DISM_IMAGE_FILE)" "$G_NAME"
is "  ${GD}p3: DISM_PART=3, still probed by the stock rules (ID_FS_TYPE=ntfs)" \
   "$(prop "${GD}p3" DISM_PART) $(prop "${GD}p3" ID_FS_TYPE)" "3 ntfs"
is "  $GD ready for systemd (no SYSTEMD_READY=0)" "[$(prop "$GD" SYSTEMD_READY)]" "[]"
check "  $GD not watched (nowatch)" unwatched "$GD"
check "  ${GD}p3 not watched (nowatch)" unwatched "${GD}p3"

# ---- 2. an MBR VHD, read-only, at the same time -------------------------------------------
run /Mount-Image /ImageFile:"$M" /Index:1 /MountDir:/mnt/m /ReadOnly
rc_is "mount the MBR VHD read-only beside it" 0
settle
REC2=$(rec_of /mnt/m)
MD=$(kv "$REC2" attach.disk_dev) MF=$(kv "$REC2" attach.fs_dev)
is "  another nbd device, partition 2 mounted" "$([ "$MD" != "$GD" ] && echo other) ${MF#"$MD"}" "other p2"
is "  by-dism/$M_ENC-1 -> $MD" "$(link "$M_ENC-1")" "$MD"
for p in 1 2 3 5; do
  is "  by-dism/$M_ENC-1-part$p -> ${MD}p$p" "$(link "$M_ENC-1-part$p")" "${MD}p$p"
done
is "  DISM_MODE=ro" "$(prop "$MD" DISM_MODE)" ro
is "  the GPT image's links are still there and still right" "$(link "$G_ENC-1") $(link "$G_ENC-1-part3")" "$GD ${GD}p3"
is "  /dev/disk/by-dism holds exactly the two images' links (5 + 5)" "$(ls -A /dev/disk/by-dism | wc -l)" 10
is "nothing but dism mounted an nbd device (2 mounts: /mnt/g, /mnt/m)" \
   "$(nbd_mounts) $(awk '$1 ~ /^\/dev\/nbd/ { print $2 }' /proc/mounts | sort | tr '\n' ' ')" "2 /mnt/g /mnt/m "
idle_alone "with two images attached" /dev/nbd3
idle_alone "with two images attached" /dev/nbd2

# ---- 3. unmount: the links go -------------------------------------------------------------
run /Unmount-Image /MountDir:/mnt/g /Commit
rc_is "unmount the VHDX /Commit" 0
settle
is "  its links are gone, the VHD's stay" "$(by_dism)" "$M_ENC-1 $M_ENC-1-part1 $M_ENC-1-part2 $M_ENC-1-part3 $M_ENC-1-part5 "
run /Unmount-Image /MountDir:/mnt/m /Discard
rc_is "unmount the VHD" 0
settle
is "  /dev/disk/by-dism is empty" "$(by_dism)" ""
_left=
for _d in /sys/block/nbd*; do
  [ -e "$_d" ] || continue
  [ -n "$(prop "/dev/${_d##*/}" DISM_MOUNT_ID)" ] && _left="$_left ${_d##*/}"
done
is "  no nbd device has DISM_* properties left" "$_left" ""
is "  no nbd mount left" "$(nbd_mounts)" 0
idle_alone "at the end" /dev/nbd3
diag "timing: guest script $(awk -v a="$T0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s"
[ "$VM_FAILED" = 0 ]
