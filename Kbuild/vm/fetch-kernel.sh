#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fetch-kernel.sh - obtain Debian's linux-image-amd64 kernel for the VM tests
# WITHOUT installing it on the host.
#
#   Kbuild/vm/fetch-kernel.sh [CACHE_DIR]        (default: build/vm/kernel)
#
# Resolves the versioned package that linux-image-amd64 depends on (e.g.
# linux-image-6.1.0-56-amd64), `apt-get download`s it and `dpkg-deb -x`s it
# into CACHE_DIR/<package>/root.  Then it prepares CACHE_DIR/<package>/:
#   vmlinuz          the kernel
#   kver             the kernel release (uname -r inside the VM)
#   modules/*.ko     the modules the VM needs (nbd fuse loop virtio_blk ...) and
#                    their dependencies, decompressed (.ko.xz/.ko.zst -> .ko,
#                    busybox insmod reads only plain .ko)
#   modules/load.order  load order (dependencies first), one file name a line
# and points CACHE_DIR/current at it.
# It also fetches the guest-only userspace packages (GUEST_PKGS: Debian's
# nbd-client and the libnl libraries it links) into CACHE_DIR/../guest-pkgs/root
# the same way (download + extract, never installed on the host).  Idempotent: a finished cache (stamp
# file .done) is reused without any download.  If the package lists cannot be
# read (offline), the existing `current` is used.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${1:-$ROOT/build/vm/kernel}
# Modules wanted in the guest (missing ones are an error unless built in).
WANT_MODULES=(nbd fuse loop virtio_blk virtio_pci)

die() { echo "fetch-kernel.sh: $*" >&2; exit 1; }
for c in apt-cache apt-get dpkg-deb depmod flock; do
  command -v "$c" >/dev/null || die "'$c' is missing (this needs a Debian host)"
done
mkdir -p "$CACHE"
# One fetch at a time (parallel test runs share the cache).
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"

# --- guest-only packages (nbd-client for the kernel attach) ----------------
GUEST_PKGS=(nbd-client libnl-3-200 libnl-genl-3-200)
gdir=$(dirname "$CACHE")/guest-pkgs
gstamp="$gdir/.done-$(echo "${GUEST_PKGS[*]}" | tr ' ' '+')"
if [ ! -e "$gstamp" ]; then
  rm -rf "$gdir"; mkdir -p "$gdir/dl"
  echo "fetch-kernel.sh: downloading ${GUEST_PKGS[*]} for the guest (not installed on the host)" >&2
  if ! (cd "$gdir/dl" && apt-get download -q "${GUEST_PKGS[@]}" >/dev/null 2>&1); then
    [ "$(id -u)" -eq 0 ] && apt-get update -qq || true
    (cd "$gdir/dl" && apt-get download -q "${GUEST_PKGS[@]}") || die "apt-get download ${GUEST_PKGS[*]} failed"
  fi
  for deb in "$gdir"/dl/*.deb; do dpkg-deb -x "$deb" "$gdir/root"; done
  [ -x "$gdir/root/sbin/nbd-client" ] || [ -x "$gdir/root/usr/sbin/nbd-client" ] \
    || die "nbd-client binary not found in the nbd-client package"
  rm -rf "$gdir/dl" "$gdir/root/usr/share" "$gdir/root/etc" "$gdir/root/lib/systemd"
  touch "$gstamp"
fi

# --- kernel -----------------------------------------------------------------
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
      | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1 || true)
if [ -z "$pkg" ]; then
  if [ -e "$CACHE/current/.done" ]; then
    echo "fetch-kernel.sh: cannot resolve linux-image-amd64 (no package lists?); using cached $(readlink "$CACHE/current")" >&2
    exit 0
  fi
  die "cannot resolve the package linux-image-amd64 depends on (run apt-get update / tests/deps.sh)"
fi
dir=$CACHE/$pkg
if [ -e "$dir/.done" ]; then
  ln -sfn "$pkg" "$CACHE/current"
  exit 0
fi

rm -rf "$dir"; mkdir -p "$dir/dl"
echo "fetch-kernel.sh: downloading $pkg (not installed on the host)" >&2
if ! (cd "$dir/dl" && apt-get download -q "$pkg" >/dev/null 2>&1); then
  # Stale lists give a 404: refresh them once (root only) and retry.
  [ "$(id -u)" -eq 0 ] && apt-get update -qq || true
  (cd "$dir/dl" && apt-get download -q "$pkg") || die "apt-get download $pkg failed"
fi
deb=$(ls "$dir"/dl/*.deb)
dpkg-deb -x "$deb" "$dir/root"

kver=$(ls "$dir/root/lib/modules" | head -n1)
[ -n "$kver" ] || die "$deb holds no lib/modules/<version>"
mdir=$dir/root/lib/modules/$kver
cp "$dir/root/boot/vmlinuz-$kver" "$dir/vmlinuz" || die "$deb holds no boot/vmlinuz-$kver"
echo "$kver" > "$dir/kver"

# modules.dep is made by the package's postinst, which we do not run: make it.
if [ ! -s "$mdir/modules.dep" ]; then
  command -v depmod >/dev/null || die "'depmod' is missing (package kmod)"
  depmod -b "$dir/root" "$kver" || die "depmod -b $dir/root $kver failed"
fi
# Resolve module names -> paths (+ dependencies) with modules.dep.  Names may
# use - or _ interchangeably.
mkdir -p "$dir/modules"
: > "$dir/modules/load.order"
declare -A seen=()
add_module() {   # add_module PATH-relative-to-mdir (as in modules.dep)
  local rel=$1 line dep
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  line=$(grep -m1 "^$rel:" "$mdir/modules.dep") || die "$rel not in modules.dep"
  for dep in ${line#*:}; do add_module "$dep"; done
  local base; base=$(basename "$rel"); base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
  case "$rel" in
    *.ko.xz)  xz -dc "$mdir/$rel"   > "$dir/modules/$base" ;;
    *.ko.zst) zstd -qdc "$mdir/$rel" > "$dir/modules/$base" ;;
    *.ko.gz)  gzip -dc "$mdir/$rel" > "$dir/modules/$base" ;;
    *.ko)     cp "$mdir/$rel" "$dir/modules/$base" ;;
    *) die "unknown module file type: $rel" ;;
  esac
  echo "$base" >> "$dir/modules/load.order"
}
for m in "${WANT_MODULES[@]}"; do
  pat=${m//[-_]/[-_]}
  rel=$(grep -oE "^[^:]*/$pat\.ko(\.xz|\.zst|\.gz)?:" "$mdir/modules.dep" | head -n1 | tr -d :) || true
  if [ -n "$rel" ]; then
    add_module "$rel"
  elif grep -qE "/$pat\.ko$" "$mdir/modules.builtin" 2>/dev/null; then
    echo "fetch-kernel.sh: $m is built into $kver" >&2
  else
    die "module $m is neither in modules.dep nor modules.builtin of $kver"
  fi
done
# The rest of the package is not needed: keep the cache small.
rm -rf "$dir/root" "$dir/dl"
touch "$dir/.done"
ln -sfn "$pkg" "$CACHE/current"
# Drop kernels an older linux-image-amd64 pointed at.
for old in "$CACHE"/linux-image-*; do
  [ "$old" = "$dir" ] || rm -rf "$old"
done
echo "fetch-kernel.sh: $pkg ready in $dir ($(wc -l < "$dir/modules/load.order") modules)" >&2
