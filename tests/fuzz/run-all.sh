#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A fuzzing campaign: every libFuzzer target (ASan+UBSan) for N seconds over
# a fresh copy of its seed corpus (new inputs never land in git), then a
# report of each target's executions, exec/s, coverage (libFuzzer's cov:
# edges out of the instrumented total, ft: features), corpus size and
# findings, from its final stats.  Exit status 1 if any target found
# something; the reproducer is in DIR/artifacts/<target>/.
#
#   tests/fuzz/run-all.sh BUILD_FUZZ_DIR SECONDS [REPORT.md]
#   FUZZ_JOBS=N      targets run at once (default 1)
#   FUZZ_TARGETS=".." only these (names without fuzz-)
# `make fuzz FUZZ_SECONDS=N FUZZ_JOBS=2` runs it into BUILD/fuzz/report.md.
set -euo pipefail
dir=$(cd "$1" && pwd) secs=$2 report=${3:-}
jobs=${FUZZ_JOBS:-1}
root=$(cd "$(dirname "$0")" && pwd)
camp=$dir/campaign
rm -rf "$camp"
mkdir -p "$camp"
touch "$camp/.start"   # findings are the artifacts newer than this

targets=()
for bin in "$dir"/fuzz-*; do
  [ -x "$bin" ] || continue
  kind=$(basename "$bin"); kind=${kind#fuzz-}
  if [ -n "${FUZZ_TARGETS:-}" ] && ! [[ " $FUZZ_TARGETS " == *" $kind "* ]]; then
    continue
  fi
  targets+=("$kind")
done
[ ${#targets[@]} -gt 0 ] || { echo "run-all.sh: no fuzz targets in $dir" >&2; exit 1; }

# run KIND: fuzz it; the log is $camp/KIND.log, the corpus $camp/KIND/.
run() {
  local kind=$1 seeds=$root/corpus/${1%-map} work=$camp/$1 art=$dir/artifacts/$1
  mkdir -p "$work" "$art"
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  local rc=0
  "$dir/fuzz-$kind" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
    -timeout=10 -artifact_prefix="$art/" "$work" >"$camp/$kind.log" 2>&1 || rc=$?
  echo "$rc" > "$camp/$kind.rc"
}

running=0
for kind in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz-$kind: ${secs}s ..." >&2
  run "$kind" &
  running=$((running + 1))
done
wait

stat() {  # stat LOG NAME: a value of libFuzzer's -print_final_stats
  sed -n "s/^stat::$2: *//p" "$1" | tail -1
}
status=0
table="| target | result | executions | exec/s | cov (edges) | edges instrumented | ft (features) | corpus (inputs) | findings |"
table+=$'\n'"|---|---|---:|---:|---:|---:|---:|---:|---|"
for kind in "${targets[@]}"; do
  log=$camp/$kind.log rc=$(cat "$camp/$kind.rc")
  last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  total=$(sed -nE 's/^INFO: Loaded [0-9]+ modules? +\(([0-9]+) inline 8-bit counters\).*/\1/p' "$log" | head -1)
  execs=$(stat "$log" number_of_executed_units)
  eps=$(stat "$log" average_exec_per_sec)
  corpus=$(find "$camp/$kind" -type f | wc -l)
  findings=$(find "$dir/artifacts/$kind" -type f -newer "$camp/.start" 2>/dev/null | wc -l)
  if [ "$rc" = 0 ] && [ "$findings" = 0 ]; then
    res=ok; found=none
  else
    res=FAILED; status=1
    found=$(find "$dir/artifacts/$kind" -type f -newer "$camp/.start" -printf '%f ' 2>/dev/null)
    found=${found:-"exit $rc, see $log"}
    echo "fuzz-$kind: FAILED" >&2
    tail -40 "$log" >&2
  fi
  table+=$'\n'"| fuzz-$kind | $res | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${total:-?} | ${ft:-?} | $corpus | $found |"
done

out="## Fuzzing campaign, $(date -u +%Y-%m-%d) ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
out+=$'\n\n'"Each target ${secs} s, ${jobs} at a time: \`tests/fuzz/run-all.sh $1 $secs\`."
out+=$'\n\n'"$table"
echo "$out"
if [ -n "$report" ]; then
  echo "$out" > "$report"
  echo "report: $report" >&2
fi
exit $status
