#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make install / uninstall of udev/60-dism.rules and its helper
# dism-udev-id (docs/udev.md): the installed rules import the installed
# helper.
source "$(dirname "$0")/../lib/tap.sh"
# make install with another PREFIX rebuilds the path-bearing files (generator,
# units, rules) in $BUILD: rebuild them for the default paths afterwards.
tap_cleanup "make -s -C '$ROOT' BUILD='$BUILD' all"

stage=$TMPD/stage P=/opt/dism-udev-test
make -s -C "$ROOT" BUILD="$BUILD" install PREFIX=$P DESTDIR="$stage" >"$TMPD/install.log" 2>&1
is "make install into DESTDIR: exit 0" "$?" 0
check "  the rules in \$(PREFIX)/lib/udev/rules.d" test -f "$stage$P/lib/udev/rules.d/60-dism.rules"
check "  the helper in \$(LIBEXECDIR), executable" test -x "$stage$P/libexec/dism/dism-udev-id"
is "  the installed rules import the installed helper" \
   "$(grep -c "^IMPORT{program}=\"$P/libexec/dism/dism-udev-id %S%p\"\$" "$stage$P/lib/udev/rules.d/60-dism.rules")" 1
make -s -C "$ROOT" BUILD="$BUILD" uninstall PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
is "make uninstall removes them" \
   "$(ls "$stage$P/lib/udev/rules.d/60-dism.rules" "$stage$P/libexec/dism/dism-udev-id" 2>/dev/null)" ""
# put the build's own paths back (install rebuilt the rules with PREFIX=$P)
make -s -C "$ROOT" BUILD="$BUILD" "$BUILD/udev/60-dism.rules" >/dev/null 2>&1
