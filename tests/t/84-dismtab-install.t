#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Mounting at boot (docs/boot.md): make install / uninstall of the generator,
# dism-boot, dism-remount.service and dismtab(5); the installed generator
# names the installed commands and needs only libc.
# make install with another PREFIX rebuilds the path-bearing files (generator,
# units, rules) in $BUILD: rebuild them for the default paths afterwards.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd groff
need_file "$BIN/dism-generator" "$BIN/dism-boot"
export SYSTEMD_LOG_TARGET=console   # the generator's messages on stderr, not in the kernel log
unit_key() { sed -n "s/^$2=//p" "$1"; }   # unit_key UNITFILE KEY: its values

# ============ 5. make install / uninstall =============================================================
stage=$TMPD/stage P=/opt/dism-boot-test
make -s -C "$ROOT" install PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
check "make install succeeds" test $? -eq 0
for f in lib/systemd/system-generators/dism-generator libexec/dism/dism-boot \
         lib/systemd/system/dism-remount.service share/man/man5/dismtab.5 share/doc/dism/dismtab.example; do
  check "installed $f" test -e "$stage$P/$f"
done
check "  the generator and dism-boot are executable" test -x "$stage$P/lib/systemd/system-generators/dism-generator" -a -x "$stage$P/libexec/dism/dism-boot"
like "dism-remount.service names the installed dism-boot" "$(grep ^Exec "$stage$P/lib/systemd/system/dism-remount.service" | tr '\n' ' ')" \
  "^ExecStart=-$P/libexec/dism/dism-boot remount --all ExecStop=$P/libexec/dism/dism-boot park --own $"
mkdir -p "$TMPD/inst.out"
printf '/img/x.vhdx 1 /mnt/x\n' > "$TMPD/inst.tab"
env -u DISM_CLI -u DISM_BOOT DISMTAB=$TMPD/inst.tab "$stage$P/lib/systemd/system-generators/dism-generator" "$TMPD/inst.out"
is "the installed generator names the installed dism and dism-boot" "$(unit_key "$TMPD/inst.out/dism-mount@mnt-x.service" ExecStart)" \
  "$P/libexec/dism/dism-boot start $P/sbin/dism /Quiet /Mount-Image /ImageFile:/img/x.vhdx /Index:1 /MountDir:/mnt/x /ReadOnly"
# (In the suite's sanitizer pass, libc and the sanitizer runtimes.)
gen_libs=$(ldd "$stage$P/lib/systemd/system-generators/dism-generator" | awk '{print $1}' |
  grep -v -e linux-vdso -e ld-linux -e 'libc\.so')
[ "$SANITIZED" = 1 ] && gen_libs=$(grep -v -e '^libasan\.' -e '^libubsan\.' -e '^libm\.' \
  -e '^libgcc_s\.' -e '^libstdc++\.' <<<"$gen_libs")
is "the installed generator needs only libc" "$(echo $gen_libs)" ""
is "dismtab(5) is a roff page (.TH after its comment lines)" \
  "$(grep -v '^\.\\"' "$stage$P/share/man/man5/dismtab.5" | head -c 3)" ".TH"
is "  groff renders it without a warning" "$(groff -man -ww -z -Tutf8 "$stage$P/share/man/man5/dismtab.5" 2>&1)" ""
make -s -C "$ROOT" uninstall PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
is "make uninstall removes every installed file" "$(find "$stage" -type f -o -type l)" ""
# install rebuilt the generator for $P: back to the default paths
make -s -C "$ROOT" "$BUILD/bin/dism-generator" "$BUILD/udev/dism-remount.service" >/dev/null 2>&1
