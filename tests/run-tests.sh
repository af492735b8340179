#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs the whole suite with prove (TAP), twice:
#   1. on $BUILD (default build/), the optimised binaries;
#   2. on $SAN_BUILD (default build-san/), every binary built with
#      ASan+UBSan (LeakSanitizer on): ASAN_OPTIONS/UBSAN_OPTIONS send every
#      report of every process (daemons included) to one directory, and
#      tests/san/99-sanitizer-reports.t, run last, fails on any report in it.
# `run-tests.sh plain` or `run-tests.sh sanitizers` runs one pass.
# Not root (a contributor's run): both passes run every file that needs no
# root; the files whose header says "# needs-root: WHY" (tests/lib/tap.sh)
# are left out, one "skipped FILE: needs root (WHY)" line each.  As root
# (CI, `sudo make check`) every file runs.
# The last lines ("Files=.. Tests=..", "Result: PASS|FAIL") are what CI reads.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
SAN_BUILD=${SAN_BUILD:-build-san}
passes=${1:-both}
case "$passes" in
  both|plain|sanitizers) ;;
  *) echo "usage: run-tests.sh [plain|sanitizers] (default: both passes)" >&2; exit 2 ;;
esac

source tests/lib/needs-root.sh
files=() skipped=()
for f in tests/t/*.t; do
  why=$(needs_root "$f")
  if [ -n "$why" ] && [ "$(id -u)" -ne 0 ]; then
    skipped+=("skipped $(basename "$f"): needs root ($why)")
  else
    files+=("$f")
  fi
done
if [ ${#skipped[@]} -gt 0 ]; then
  echo "# not root: ${#files[@]} test files run, ${#skipped[@]} need root and are skipped (listed at the end; sudo make check runs them all)"
fi

rc_plain=0 rc_san=0 sum_plain="" sum_san=""
# The WIM zoo (tests/lib/make-wims.sh, ~100 s to make) is made once for both
# passes: it is deterministic, and kept only when its key matches.
if [ -z "${WIM_ZOO_DIR:-}" ]; then
  WIM_ZOO_DIR=$(mktemp -d /tmp/dism-zoo.XXXXXX)
  export WIM_ZOO_DIR
  trap 'rm -rf "$WIM_ZOO_DIR"' EXIT
fi
summary() { grep -E '^Files=' "$1" | tail -n1; }

if [ "$passes" = both ] || [ "$passes" = plain ]; then
  log=$(mktemp /tmp/dism-prove.XXXXXX)
  prove --timer -f "${files[@]}" 2>&1 | tee "$log"
  rc_plain=${PIPESTATUS[0]}
  sum_plain=$(summary "$log")
  rm -f "$log"
fi

if [ "$passes" = both ] || [ "$passes" = sanitizers ]; then
  echo "# sanitizer pass: BUILD=$SAN_BUILD (ASan+UBSan+LSan)"
  reports=$(mktemp -d /tmp/dism-san-reports.XXXXXX)
  chmod 1777 "$reports"                 # servers may run as another user
  log=$(mktemp /tmp/dism-prove.XXXXXX)
  # 90-fuzz-smoke runs the (already ASan) fuzzers: once is enough.
  tests=$(printf '%s\n' "${files[@]}" | grep -v '/90-fuzz-smoke\.t$')
  BUILD=$SAN_BUILD SAN_BUILD=$SAN_BUILD \
  DISM_SANITIZER_REPORTS=$reports \
  ASAN_OPTIONS="detect_leaks=1:log_path=$reports/asan:log_exe_name=1" \
  UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan:log_exe_name=1" \
    prove --timer -f $tests tests/san/99-sanitizer-reports.t 2>&1 | tee "$log"
  rc_san=${PIPESTATUS[0]}
  sum_san=$(summary "$log")
  rm -f "$log"
  if [ -n "$(ls -A "$reports")" ]; then
    echo "# sanitizer reports kept in $reports"
  else
    rmdir "$reports"
  fi
fi

if [ ${#skipped[@]} -gt 0 ]; then printf '%s\n' "${skipped[@]}"; fi
echo "# plain pass:     ${sum_plain:-not run} (exit $rc_plain)"
echo "# sanitizer pass: ${sum_san:-not run} (exit $rc_san)"
if [ "$rc_plain" -eq 0 ] && [ "$rc_san" -eq 0 ]; then
  echo "Result: PASS"
  exit 0
fi
echo "Result: FAIL"
exit 1
