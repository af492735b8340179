#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fresh-machine.sh: run the README's first command, as a new user types it,
# on a machine where the project's Debian packages are not installed yet.
#
#   tests/fresh-machine.sh overlay OUT [COMMAND]
#       The host's root file system under an overlay (upper layer on a
#       tmpfs: the host is never written), with the build's -dev packages,
#       pkg-config and the demo's tools purged from it (tests/t/03-fresh-machine.t).
#   tests/fresh-machine.sh debootstrap OUT [COMMAND]
#       A brand-new Debian 12 (debootstrap --variant=minbase, kept in
#       $FRESH_ROOT, default /var/tmp/dism-fresh/bookworm, made once) under
#       an overlay, so every run starts from the pristine system; `make` is
#       installed first, as a new user must (make fresh-machine-test).
#
# COMMAND (default `make deps demo`, the README's `sudo make deps demo` typed
# by root: a minimal Debian has no sudo) runs as root in a copy of the
# project tree (the files git knows, as in the work tree) at /root/dism, with
# a clean environment.  OUT receives command.log, command.rc, seconds,
# before.txt and after.txt (the packages' and headers' state around it);
# the script exits with the command's status.
#
# Everything runs in a private mount namespace: the overlay, /dev, /proc,
# /sys, /run and /tmp binds vanish with it even when the run fails; the
# trap unmounts them first all the same.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# What a new machine lacks until `make deps` runs (tests/deps.sh installs
# them all again).  pkg-config is pkgconf's in Debian 12.
PURGE=(libfuse3-dev libnbd-dev libwim-dev ntfs-3g-dev libgnutls28-dev libseccomp-dev libhivex-dev
       pkg-config pkgconf libnbd-bin qemu-utils)
CHECK_PKGS=(libfuse3-dev libnbd-dev libwim-dev ntfs-3g-dev libgnutls28-dev libseccomp-dev libhivex-dev
            pkg-config libnbd-bin qemu-utils)
CHECK_FILES=(/usr/include/fuse3/fuse.h /usr/include/seccomp.h /usr/bin/pkg-config /usr/bin/qemu-img)
CLEAN_ENV=(env -i HOME=/root LANG=C.UTF-8 TERM=dumb
           PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

die() { echo "fresh-machine: $*" >&2; exit 1; }

# state R: one line per package and file of interest, as seen in root R.
state() {
  local r=$1 p f
  for p in "${CHECK_PKGS[@]}"; do
    if chroot "$r" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'
    then echo "package $p installed"; else echo "package $p absent"; fi
  done
  for f in "${CHECK_FILES[@]}"; do
    if [ -e "$r$f" ]; then echo "file $f present"; else echo "file $f absent"; fi
  done
  echo "dpkg-count: $(chroot "$r" dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed')"
}

# tree_files: the project's files, NUL-separated, relative to ROOT: what
# git knows (a fresh clone, with the work tree's edits), else every file
# but the build trees.
tree_files() {
  if command -v git >/dev/null && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard
  else
    (cd "$ROOT" && find . \( -path './build*' -o -path ./.git \) -prune -o \( -type f -o -type l \) -print0)
  fi
}

# The part that runs inside the private mount namespace.
inner() {
  local mode=$1 out=$2 cmd=$3 lower=$4
  # t and r are global: the EXIT trap needs them after inner returns.
  t=$(mktemp -d /tmp/dism-fresh.XXXXXX)
  r=$t/root
  cleanup() {
    set +e
    # Processes left in the chroot (a failed demo's server) are ours.
    local p
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/root" 2>/dev/null)" = "$r" ] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    mountpoint -q "$r" && umount -R "$r"
    mountpoint -q "$t" && umount -R "$t"
    rmdir "$t"
  }
  trap cleanup EXIT
  mount -t tmpfs -o size=8G,mode=0755 dism-fresh "$t"
  mkdir -p "$t/upper" "$t/work" "$r"
  mount -t overlay dism-fresh -o "lowerdir=$lower,upperdir=$t/upper,workdir=$t/work" "$r"
  mount --rbind /dev "$r/dev"
  mount -t proc proc "$r/proc"
  mount --rbind /sys "$r/sys"
  mount -t tmpfs -o mode=0755 run "$r/run"
  mkdir -p "$r/run/lock"
  mount -t tmpfs -o mode=1777 tmp "$r/tmp"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true

  if [ "$mode" = overlay ]; then
    chroot "$r" "${CLEAN_ENV[@]}" DEBIAN_FRONTEND=noninteractive \
      apt-get purge -y -qq "${PURGE[@]}" > "$out/purge.log" 2>&1
  else
    # A minimal Debian has no make: the one step the README asks for first.
    chroot "$r" "${CLEAN_ENV[@]}" DEBIAN_FRONTEND=noninteractive bash -c \
      'apt-get update -qq && apt-get install -y -qq --no-install-recommends make' > "$out/make-install.log" 2>&1
  fi
  state "$r" > "$out/before.txt"

  # The project as a fresh clone has it, and the shared test corpus beside
  # it where the suite looks for it (tap.sh: ../shared/corpus).
  mkdir -p "$r/root/dism"
  tree_files | (cd "$ROOT" && xargs -0 -r ls -d 2>/dev/null | tar --no-recursion -c -T -) |
    tar -C "$r/root/dism" -x
  if [ -d "$ROOT/../shared/corpus" ]; then
    mkdir -p "$r/root/shared"
    cp -a "$ROOT/../shared/corpus" "$r/root/shared/"
  fi

  local s0 s1 rc=0
  s0=$(date +%s)
  chroot "$r" "${CLEAN_ENV[@]}" bash -c "cd /root/dism && $cmd" > "$out/command.log" 2>&1 || rc=$?
  s1=$(date +%s)
  echo "$rc" > "$out/command.rc"
  echo $((s1 - s0)) > "$out/seconds"
  state "$r" > "$out/after.txt"
}

main() {
if [ "${1:-}" = __inner ]; then shift; inner "$@"; return; fi

local mode=${1:-} out=${2:-} cmd=${3:-make deps demo} lower rc s0
[ -n "$out" ] || die "usage: $0 overlay|debootstrap OUT [COMMAND]"
[ "$(id -u)" -eq 0 ] || die "needs root (mounts, chroot)"
mkdir -p "$out"; out=$(cd "$out" && pwd)
case $mode in
  overlay) lower=/ ;;
  debootstrap)
    lower=${FRESH_ROOT:-/var/tmp/dism-fresh/bookworm}
    if [ ! -x "$lower/usr/bin/apt-get" ]; then
      command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
      mkdir -p "$lower"
      s0=$(date +%s)
      debootstrap --variant=minbase bookworm "$lower" http://deb.debian.org/debian > "$out/debootstrap.log" 2>&1 ||
        { rm -rf "$lower"; die "debootstrap failed: $out/debootstrap.log"; }
      echo $(($(date +%s) - s0)) > "$out/debootstrap.seconds"
    fi ;;
  *) die "mode is overlay or debootstrap" ;;
esac
unshare --mount --propagation private -- "$0" __inner "$mode" "$out" "$cmd" "$lower"
rc=$(cat "$out/command.rc")
echo "fresh-machine ($mode): \`$cmd\` exited $rc after $(cat "$out/seconds")s; log: $out/command.log"
echo "before: $(grep -c ' installed$\| present$' "$out/before.txt") of the packages/files checked present; after: $(grep -c ' absent$' "$out/after.txt") absent"
exit "$rc"
}
# Read whole before it runs (the file may change while a long run goes on).
main "$@"; exit
