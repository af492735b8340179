#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The sanitizer pass's last file (tests/run-tests.sh): every process of the
# pass (dism, libdism's helpers, the servers, the unit tests) wrote its
# ASan/UBSan/LSan reports, leaks included, under DISM_SANITIZER_REPORTS.
# There must be none.  The binaries really are instrumented, and a report
# really lands there (a deliberate leak), so an empty directory means
# something.
source "$(dirname "$0")/../lib/tap.sh"
dir=${DISM_SANITIZER_REPORTS:-}
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  not_ok "DISM_SANITIZER_REPORTS names the report directory (run through tests/run-tests.sh)"
  exit 0
fi
for b in dism dism-nbd-server dism-imageinfo dism-boot dism-supervise; do
  like "$b is an ASan binary" "$(grep -c __asan_init "$ROOT/$BUILD/bin/$b" 2>/dev/null || echo 0)" '^[1-9]'
done

# The canary: an instrumented program that leaks writes its report here.
printf '#include <stdlib.h>\nint main(void){ void *volatile p = malloc(77); p = 0; (void)p; return 0; }\n' > "$TMPD/leak.c"
cc -fsanitize=address -g -o "$TMPD/leak" "$TMPD/leak.c"
canary=$(mktemp -d /tmp/dism-san-canary.XXXXXX)
ASAN_OPTIONS="detect_leaks=1:log_path=$canary/asan" "$TMPD/leak" 2>/dev/null
like "a leak is reported to log_path (the mechanism works)" "$(cat "$canary"/asan.* 2>/dev/null)" "77 byte"
rm -rf "$canary"

found=$(find "$dir" -type f | sort)
is "no sanitizer report from any process of the pass" "$found" ""
# On stderr, so that prove shows them without -v.
for f in $found; do
  { echo "== $f"; head -n 60 "$f"; } >&2
done
