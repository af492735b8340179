#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# make install ships libdism (shared with soname libdism.so.1, static),
# DismApi.h, dism.pc, the dism command and the man pages; a program built
# with `pkg-config dism` links and runs; uninstall removes them.
source "$(dirname "$0")/../lib/tap.sh"
# make install with another PREFIX rebuilds the path-bearing files (generator,
# units, rules) in $BUILD: rebuild them for the default paths afterwards.
tap_cleanup "make -s -C '$ROOT' BUILD='$BUILD' all"
need_cmd pkg-config cc objdump nm
stage=$TMPD/stage P=/opt/dism-api-test
make -s -C "$ROOT" BUILD="$BUILD" install PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
check "make install succeeds" test $? -eq 0
for f in sbin/dism lib/libdism.so.1 lib/libdism.so lib/libdism.a include/DismApi.h \
         lib/pkgconfig/dism.pc share/man/man8/dism.8 share/man/man3/DismApi.3; do
  check "installed $f" test -e "$stage$P/$f"
done
is "soname is libdism.so.1" "$(objdump -p "$stage$P/lib/libdism.so.1" | awk '/SONAME/ {print $2}')" libdism.so.1
like "only Dism* functions are exported" "$(nm -D --defined-only "$stage$P/lib/libdism.so.1" | awk '$2 == "T" {print $3}' | sort -u | tr '\n' ' ')" "^(Dism[A-Za-z]*(@@LIBDISM_1)? )+$"
like "dism.pc names the prefix" "$(cat "$stage$P/lib/pkgconfig/dism.pc")" "prefix=$P"
cat > "$TMPD/sample.c" <<'CEOF'
#include <DismApi.h>
#include <stdio.h>
int main(void) {
  DismString *msg = NULL;
  HRESULT hr = DismMountImage(L"C:\\x.vhdx", L"/tmp", 1, NULL, DismImageIndex, 0, NULL, NULL, NULL);
  DismGetLastErrorMessage(&msg);
  printf("0x%08x %ls\n", (unsigned) hr, msg->Value);
  return DismDelete(msg) == S_OK ? 0 : 1;
}
CEOF
flags=$(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$stage$P/lib/pkgconfig pkg-config --cflags --libs dism)
check "a sample program compiles with pkg-config dism" cc -o "$TMPD/sample" "$TMPD/sample.c" $flags
is "  and runs against the installed library" "$(LD_LIBRARY_PATH=$stage$P/lib "$TMPD/sample")" \
  "0xc0040001 DismInitialize has not been called in this process."
# (their first line is the SPDX comment)
pages=("$stage$P/share/man/man8/dism.8" "$stage$P/share/man/man8/dism-nbd-server.8" "$stage$P/share/man/man3/DismApi.3")
is "the man pages are roff pages" \
  "$(for p in "${pages[@]}"; do grep -v '^\.\\"' "$p" | head -c 3; echo -n ' '; done)" ".TH .TH .TH "
like "the installed dism runs" "$("$stage$P/sbin/dism" /? 2>&1)" "Deployment Image Servicing and Management tool"
make -s -C "$ROOT" BUILD="$BUILD" uninstall PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
is "make uninstall removes every installed file" "$(find "$stage" -type f -o -type l)" ""
