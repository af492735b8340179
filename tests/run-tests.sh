#!/usr/bin/env bash
# Runs the whole suite with prove (TAP).  The last lines prove prints
# ("Files=.. Tests=..", "Result: PASS|FAIL") are what CI reads.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests.sh: the suite needs root (loop devices, FUSE, mount): use sudo make check" >&2
  exit 1
fi
prove --timer -f tests/t/*.t
