#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make install / uninstall honour PREFIX and DESTDIR, and the installed
# binaries run from wherever they were installed.
source "$(dirname "$0")/../lib/tap.sh"
# make install with another PREFIX rebuilds the path-bearing files (generator,
# units, rules) in $BUILD: rebuild them for the default paths afterwards.
tap_cleanup "make -s -C '$ROOT' BUILD='$BUILD' all"
stage=$TMPD/stage
out=$(make -s -C "$ROOT" BUILD="$BUILD" install PREFIX=/opt/dism-test DESTDIR="$stage" 2>&1)
check "make install into DESTDIR succeeds" test $? -eq 0
for f in opt/dism-test/libexec/dism/dism-nbd-server opt/dism-test/bin/dism-imageinfo \
         opt/dism-test/sbin/dism-nbd-server opt/dism-test/sbin/dism \
         opt/dism-test/lib/libdism.so.1 opt/dism-test/lib/libdism.a \
         opt/dism-test/lib/pkgconfig/dism.pc opt/dism-test/include/DismApi.h \
         opt/dism-test/share/man/man8/dism.8 opt/dism-test/share/man/man3/DismApi.3; do
  check "installed $f" test -e "$stage/$f"
done
check "nothing installed outside DESTDIR/PREFIX" \
  bash -c "[ -z \"\$(find '$stage' -mindepth 1 -maxdepth 1 ! -name opt)\" ]"
check "installed dism-imageinfo runs" "$stage/opt/dism-test/bin/dism-imageinfo" --help
check "installed server runs" "$stage/opt/dism-test/libexec/dism/dism-nbd-server" --help
check "installed server runs through its sbin link" "$stage/opt/dism-test/sbin/dism-nbd-server" --help
check "installed dism runs" "$stage/opt/dism-test/sbin/dism" /?
make -s -C "$ROOT" BUILD="$BUILD" uninstall PREFIX=/opt/dism-test DESTDIR="$stage" >/dev/null 2>&1
left=$(find "$stage" -type f -o -type l)
is "make uninstall removes every installed file" "$left" ""
check "the ASan+UBSan build exists (make SANITIZE=1)" test -x "$SAN/bin/dism-nbd-server"
