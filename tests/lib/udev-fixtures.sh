# SPDX-License-Identifier: GPL-2.0-or-later
# udev-fixtures.sh - synthetic sysfs devices and registry records for the
# udev tests (tests/t/86-udev-*.t); sourced after tap.sh.
ID=0b7e2a4c-1d2e-4f3a-8b4c-5d6e7f809a1b ID2=7f3e0c1a-9b8d-4c6e-a5f4-0e1d2c3b4a59
# mkdev DIR NAME MAJOR MINOR disk|partition [PARTN]: a sysfs-like device directory
mkdev() {
  mkdir -p "$1"
  printf 'MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=%s\n' "$3" "$4" "$2" "$5" > "$1/uevent"
  [ -n "${6:-}" ] && { echo "PARTN=$6" >> "$1/uevent"; echo "$6" > "$1/partition"; }
  echo "$3:$4" > "$1/dev"
  ln -sfn ../../../../class/block "$1/subsystem"
}
# record FILE ID IMAGE [extra lines...]: a registry record (root-owned, 0600)
record() {
  local f=$1 id=$2 img=$3; shift 3
  mkdir -p "$(dirname "$f")"
  { echo "# dism mount record"; echo "id=$id"; echo "image=$img"; echo "format=vhdx"; echo "index=1"
    echo "mode=rw"; echo "mount_dir=/mnt/w"; printf '%s\n' "$@"; } > "$f"
  chmod 600 "$f"
}
