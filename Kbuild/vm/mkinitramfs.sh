#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# mkinitramfs.sh - build the busybox initramfs for the VM tests.
#
#   Kbuild/vm/mkinitramfs.sh -o OUT.cpio.gz [--file HOSTPATH:GUESTPATH ...]
#                            [--modopt 'MODULE ARGS...' ...] TEST_SCRIPT [BINARY...]
#
# The archive (cpio newc, gzip) holds:
#   /bin/*              busybox-static and a link for every applet
#   /usr/bin/*          BINARY... (host paths or command names), ntfs-3g, ntfsinfo,
#                       ntfsfix, mkntfs, ntfsls, ntfscat, and Debian's nbd-client
#                       (from the guest-pkgs cache, not installed on the host);
#                       every shared library they need (ldd) in
#                       /lib/x86_64-linux-gnu, and the loader in /lib64
#   /lib/modules/       the kernel modules from fetch-kernel.sh + load.order
#   /etc/modopts        module options; default: the product's
#                       Kbuild/modprobe.d-nbd.conf ("options nbd ..."), then --modopt
#   /usr/share/dism-vm/tap.sh   TAP helpers for guest scripts (guest-tap.sh)
#   /test/run.sh        TEST_SCRIPT; --file copies more files (e.g. images)
#   /init               Kbuild/vm/init.sh
# It calls fetch-kernel.sh first (cached, idempotent).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VMCACHE=$ROOT/build/vm
die() { echo "mkinitramfs.sh: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

out='' files=() modopts=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --modopt) modopts+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ -n "$out" ] && [ $# -ge 1 ] || usage
script=$1; shift
[ -r "$script" ] || die "test script '$script' not found"

for c in cpio gzip ldd find; do command -v "$c" >/dev/null || die "'$c' is missing (run tests/deps.sh)"; done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 \
  || die "$BUSYBOX is missing or not static (package busybox-static: run tests/deps.sh)"

"$HERE/fetch-kernel.sh" "$VMCACHE/kernel"
KDIR=$VMCACHE/kernel/current
GROOT=$VMCACHE/guest-pkgs/root
[ -e "$KDIR/.done" ] || die "no kernel cache in $KDIR"

stage=$(mktemp -d "${TMPDIR:-/tmp}/dism-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules,etc,proc,sys,dev,tmp,run,mnt,test,usr/share/dism-vm,root}

# busybox + applet links
cp "$BUSYBOX" "$stage/bin/busybox"
for a in $("$BUSYBOX" --list); do
  [ "$a" = busybox ] || ln -s busybox "$stage/bin/$a"
done

# binaries and their libraries
declare -A libs_done=()
LIBPATH=$GROOT/lib/x86_64-linux-gnu:$GROOT/usr/lib/x86_64-linux-gnu
copy_libs() {   # copy_libs ELF
  local f=$1 line name path
  if ! LD_LIBRARY_PATH=$LIBPATH ldd "$f" >/dev/null 2>&1; then
    return 0   # static or not ELF (scripts): nothing to copy
  fi
  while read -r line; do
    case "$line" in
      *"not found"*) die "$f needs a library ldd cannot find: $line" ;;
      *"=> /"*) name=${line%% =>*}; path=${line#*=> }; path=${path%% (*}
                [ -n "${libs_done[$name]:-}" ] && continue; libs_done[$name]=1
                cp -L "$path" "$stage/lib/x86_64-linux-gnu/$name" ;;
      /*ld-linux*) path=${line%% (*}
                [ -n "${libs_done[loader]:-}" ] && continue; libs_done[loader]=1
                cp -L "$path" "$stage/lib64/$(basename "$path")" ;;
    esac
  done < <(LD_LIBRARY_PATH=$LIBPATH ldd "$f")
}
add_bin() {     # add_bin PATH-or-NAME
  local b=$1 p
  if [[ $b == */* ]]; then p=$b; else p=$(command -v "$b" || true); fi
  [ -n "$p" ] && [ -f "$p" ] || die "binary '$b' not found (run tests/deps.sh, or build it)"
  cp -L "$p" "$stage/usr/bin/$(basename "$p")"
  chmod 0755 "$stage/usr/bin/$(basename "$p")"
  copy_libs "$p"
}
for t in ntfs-3g ntfsinfo ntfsfix mkntfs ntfsls ntfscat; do
  p=$(PATH=$PATH:/usr/sbin:/sbin command -v "$t" || true)
  [ -n "$p" ] || die "'$t' is missing (package ntfs-3g: run tests/deps.sh)"
  add_bin "$p"
done
nbdc=$GROOT/sbin/nbd-client; [ -x "$nbdc" ] || nbdc=$GROOT/usr/sbin/nbd-client
[ -x "$nbdc" ] || die "nbd-client missing from $GROOT (fetch-kernel.sh)"
add_bin "$nbdc"
for b in "$@"; do add_bin "$b"; done

# kernel modules and their options
cp "$KDIR"/modules/*.ko "$KDIR/modules/load.order" "$stage/lib/modules/"
cp "$KDIR/kver" "$stage/etc/kver"
: > "$stage/etc/modopts"
if [ -r "$ROOT/Kbuild/modprobe.d-nbd.conf" ]; then
  sed -n 's/^[[:space:]]*options[[:space:]]\+//p' "$ROOT/Kbuild/modprobe.d-nbd.conf" >> "$stage/etc/modopts"
fi
for m in ${modopts[@]+"${modopts[@]}"}; do echo "$m" >> "$stage/etc/modopts"; done

# init, guest helpers, test script and files
cp "$HERE/init.sh" "$stage/init"; chmod 0755 "$stage/init"
cp "$HERE/guest-tap.sh" "$stage/usr/share/dism-vm/tap.sh"
cp "$script" "$stage/test/run.sh"; chmod 0755 "$stage/test/run.sh"
for spec in ${files[@]+"${files[@]}"}; do
  src=${spec%%:*}; dst=${spec#*:}
  [ "$src" != "$spec" ] && [[ $dst == /* ]] || die "--file wants HOSTPATH:/GUEST/PATH, got '$spec'"
  [ -e "$src" ] || die "--file: '$src' not found"
  mkdir -p "$stage$(dirname "$dst")"
  cp -a "$src" "$stage$dst"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
echo "root:x:0:" > "$stage/etc/group"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) \
  | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
