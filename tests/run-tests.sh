#!/usr/bin/env bash
# Runs the whole suite with prove (TAP), twice:
#   1. on $BUILD (default build/), the optimised binaries;
#   2. on $SAN_BUILD (default build-san/), every binary built with
#      ASan+UBSan (LeakSanitizer on): ASAN_OPTIONS/UBSAN_OPTIONS send every
#      report of every process (daemons included) to one directory, and
#      tests/san/99-sanitizer-reports.t, run last, fails on any report in it.
# `run-tests.sh plain` or `run-tests.sh sanitizers` runs one pass.
# The last lines ("Files=.. Tests=..", "Result: PASS|FAIL") are what CI reads.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
SAN_BUILD=${SAN_BUILD:-build-san}
passes=${1:-both}
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests.sh: the suite needs root (loop devices, FUSE, mount): use sudo make check" >&2
  exit 1
fi

rc_plain=0 rc_san=0 sum_plain="" sum_san=""
summary() { grep -E '^Files=' "$1" | tail -n1; }

if [ "$passes" = both ] || [ "$passes" = plain ]; then
  log=$(mktemp /tmp/dism-prove.XXXXXX)
  prove --timer -f tests/t/*.t 2>&1 | tee "$log"
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
  tests=$(ls tests/t/*.t | grep -v '/90-fuzz-smoke\.t$')
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

echo "# plain pass:     ${sum_plain:-not run} (exit $rc_plain)"
echo "# sanitizer pass: ${sum_san:-not run} (exit $rc_san)"
if [ "$rc_plain" -eq 0 ] && [ "$rc_san" -eq 0 ]; then
  echo "Result: PASS"
  exit 0
fi
echo "Result: FAIL"
exit 1
