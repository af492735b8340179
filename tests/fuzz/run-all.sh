#!/usr/bin/env bash
# Run every libFuzzer target for N seconds each over its seed corpus (a copy,
# so new inputs don't land in git) and print executions and coverage.
#   tests/fuzz/run-all.sh BUILD_FUZZ_DIR SECONDS
set -euo pipefail
dir=$1 secs=$2
root=$(cd "$(dirname "$0")" && pwd)
status=0
for bin in "$dir"/fuzz-*; do
  name=$(basename "$bin"); kind=${name#fuzz-}; kind=${kind%-map}
  seeds=$root/corpus/$kind
  work=$(mktemp -d /tmp/fuzz-$kind.XXXXXX)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  log=$work.log
  if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$root/" "$work" >"$log" 2>&1; then
    res=ok
  else
    res=FAILED; status=1
  fi
  stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -1)
  echo "$name: $res — $stats"
  [ $res = ok ] || tail -30 "$log"
  rm -rf "$work" "$log"
done
exit $status
