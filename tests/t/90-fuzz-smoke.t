#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Every libFuzzer target (one per tests/fuzz/fuzz-*.c) runs briefly over its
# seed corpus without a finding (ASan+UBSan).  The corpus holds every input
# that ever crashed a target, so this is also their regression test.
# Longer campaigns with a report: make fuzz FUZZ_SECONDS=N FUZZ_JOBS=2.
source "$(dirname "$0")/../lib/tap.sh"
SECS=${FUZZ_SMOKE_SECONDS:-15}
FZ=$ROOT/$BUILD/fuzz
for src in "$ROOT"/tests/fuzz/fuzz-*.c; do
  kind=$(basename "$src" .c); kind=${kind#fuzz-}
  bin=$FZ/fuzz-$kind
  need_file "$bin"
  seeds=$ROOT/tests/fuzz/corpus/${kind%-map}
  need_file "$seeds"
  work=$TMPD/fz-$kind; mkdir -p "$work"; cp -r "$seeds"/. "$work"/
  if "$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$TMPD/" "$work" >"$TMPD/$kind.log" 2>&1; then
    ok "fuzz-$kind: ${SECS}s without a finding ($(grep -oE '#[0-9]+' "$TMPD/$kind.log" | tail -1) execs)"
  else
    not_ok "fuzz-$kind found a problem"; diag "$(tail -40 "$TMPD/$kind.log")"
  fi
done
