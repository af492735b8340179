#!/usr/bin/env bash
# Every libFuzzer target runs briefly over its seed corpus without a
# finding (ASan+UBSan).  Longer campaigns: make fuzz FUZZ_SECONDS=N.
source "$(dirname "$0")/../lib/tap.sh"
SECS=${FUZZ_SMOKE_SECONDS:-15}
FZ=$ROOT/$BUILD/fuzz
for kind in vhd vhdx nbd overlay-map partition; do
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
