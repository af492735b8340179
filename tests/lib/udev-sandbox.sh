#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# udev-sandbox.sh RULES_DIR [--sys-block DIR] [--run DIR] -- CMD...
#
# Run CMD (e.g. `udevadm test --action=change /sys/class/block/loop3`) in a
# private mount namespace where udev reads only the rules in RULES_DIR and
# writes nothing the rest of the system sees.  `udevadm test` is not a dry
# run (systemd 252): it creates the /dev links and the /run/udev database of
# the event it simulates, and /dev is devtmpfs, one instance for the whole
# kernel.  Inside the namespace:
#   /run                          a fresh tmpfs (udev's database, no /run/udev/rules.d)
#   /dev                          a fresh tmpfs with /dev/null and a node for
#                                 every block device in /sys/class/block
#   /usr/lib/udev/rules.d         RULES_DIR (bind mount; /lib is /usr/lib here)
#   /etc/udev/rules.d, /usr/local/lib/udev/rules.d   empty
#   --sys-block DIR               DIR over /sys/devices/virtual/block: synthetic
#                                 devices (nbd0/uevent, nbd0/backend, ...)
#   --run DIR                     DIR at /run/dism (dism-udev-id's default run dir)
# Everything disappears with CMD's exit, whose status is returned.  Needs root.
set -euo pipefail
if [ "${1:-}" != --inside ]; then
  exec unshare --mount --propagation private "$0" --inside "$@"
fi
shift
[ $# -ge 3 ] || { echo "usage: udev-sandbox.sh RULES_DIR [--sys-block DIR] [--run DIR] -- CMD..." >&2; exit 2; }
rules=$(realpath "$1"); shift
sysblock='' run=''
while [ $# -gt 0 ]; do
  case "$1" in
    --sys-block) sysblock=$(realpath "$2"); shift 2 ;;
    --run) run=$(realpath "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "udev-sandbox.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# the nodes first, while /sys/class/block still shows the real devices
nodes=()
for d in /sys/class/block/*; do
  [ -r "$d/dev" ] && nodes+=("$(basename "$d") $(cat "$d/dev")")
done
mount -t tmpfs -o mode=0755 dism-udev-run /run
mount -t tmpfs -o mode=0755 dism-udev-dev /dev
mknod -m 0666 /dev/null c 1 3
for entry in ${nodes[@]+"${nodes[@]}"}; do
  read -r name majmin <<<"$entry"
  mknod -m 0660 "/dev/$name" b "${majmin%%:*}" "${majmin##*:}"
done
mount --bind "$rules" /usr/lib/udev/rules.d
for d in /etc/udev/rules.d /usr/local/lib/udev/rules.d; do
  [ -d "$d" ] && mount -t tmpfs -o mode=0755 dism-udev-empty "$d"
done
[ -n "$sysblock" ] && mount --bind "$sysblock" /sys/devices/virtual/block
if [ -n "$run" ]; then
  mkdir -p /run/dism
  mount --bind "$run" /run/dism
fi
exec "$@"
