#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# libdism's symbols: the shared library exports exactly the functions
# DismApi.h declares, and the static one defines no global symbol outside
# Dism* (the API) and dism_* (internal, for the programs and tests that link
# it; the engine's own names are renamed dism__NAME by the Makefile), so a
# program linking libdism.a never meets our crc32c or raw_open.
# Checked on $BUILD and on the ASan+UBSan build beside it.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd nm gcc cc pkg-config
words() { printf '%s' "$1" | tr '\n' ' '; }   # a list on one line

# The API, from the header itself: gcc -aux-info writes every function
# prototype the translation unit declares, with the file it comes from.
printf '#include <DismApi.h>\n' > "$TMPD/api.c"
gcc -I"$ROOT/userspace/include" -aux-info "$TMPD/api.aux" -fsyntax-only "$TMPD/api.c"
api=$(grep -F '/DismApi.h:' "$TMPD/api.aux" | sed -E 's/^.*[ *](Dism[A-Za-z0-9_]*) \(.*$/\1/' | sort -u)
like "DismApi.h declares the API's functions (DismInitialize ... DismCloseCancelEvent)" \
  "$(words "$api")" "DismCloseCancelEvent .*DismInitialize .*DismUnmountImage"

# Global symbols libdism.a may define besides Dism* and dism_*: none.
# (gcc's ASan/UBSan instrumentation defines no global symbol in the objects;
# their calls into the runtime are undefined references, not definitions.)
ALLOW='^$'

builds=("$BUILD")
[ "$SAN_BUILD" != "$BUILD" ] && [ -e "$SAN/libdism.a" ] && builds+=("$SAN_BUILD")
for b in "${builds[@]}"; do
  so=$ROOT/$b/libdism.so.1 a=$ROOT/$b/libdism.a
  need_file "$so" "$a"
  # Every defined dynamic symbol but the version node (LIBDISM_1, type A).
  exports=$(nm -D --defined-only "$so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}' | sort -u)
  is "$b/libdism.so.1 exports exactly DismApi.h's functions" \
    "$(words "$exports")" "$(words "$api")"
  like "  each under the version LIBDISM_1" \
    "$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | grep -vc '@@LIBDISM_1$')" '^0$'
  stray=$(nm -g --defined-only "$a" | awk 'NF == 3 {print $3}' | grep -Ev '^(Dism|dism_)' |
          grep -Ev "$ALLOW" | sort -u)
  is "$b/libdism.a defines no global symbol outside Dism* and dism_*" "$(words "$stray")" ""
  like "  and does define the API and the internal dism_* functions" \
    "$(nm -g --defined-only "$a" | awk '$2 == "T" {print $3}' | grep -Ec '^(DismMountImage|dism_attach|dism_wim_capture)$')" '^3$'

  # A program with functions named like the engine's links libdism.a as
  # dism.pc says (--static) and runs: the library's names do not clash.
  cat > "$TMPD/clash.c" <<'CEOF'
#include <DismApi.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
uint32_t crc32c(uint32_t crc, const void *buf, size_t len) { (void) buf; return crc + (uint32_t) len; }
int raw_open(void) { return 42; }
int vx_log_replay(void) { return 7; }
int main(void) {
  DismString *msg = NULL;
  (void) DismMountImage(L"C:\\x.vhdx", L"/tmp", 1, NULL, DismImageIndex, 0, NULL, NULL, NULL);
  DismGetLastErrorMessage(&msg);
  printf("%u %d %d %ls\n", crc32c(1, "", 2), raw_open(), vx_log_replay(), msg->Value);
  return DismDelete(msg) == S_OK ? 0 : 1;
}
CEOF
  flags=$(pkg-config --define-variable=libdir="$ROOT/$b" --define-variable=includedir="$ROOT/userspace/include" \
          --static --cflags --libs "$ROOT/$b/dism.pc" | sed 's/-ldism\b/-l:libdism.a/')
  check "  a program defining crc32c, raw_open, vx_log_replay links it (pkg-config --static)" \
    cc -o "$TMPD/clash-$b" "$TMPD/clash.c" $flags
  is "  and runs, each name its own" "$(ASAN_OPTIONS=detect_leaks=0 "$TMPD/clash-$b" 2>&1)" \
    "3 42 7 DismInitialize has not been called in this process."
done
