# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# /usr/share/dism-vm/tap.sh - TAP helpers for guest test scripts (busybox sh).
# Guest scripts print unnumbered TAP lines ("ok - what", "not ok - what",
# "# diag"); the host test (e.g. tests/t/80-vm-nbd.t, through tests/lib/tap.sh)
# numbers them.  Usage in /test/run.sh:  . /usr/share/dism-vm/tap.sh
VM_FAILED=0
ok()     { echo "ok - $*"; }
not_ok() { VM_FAILED=$((VM_FAILED+1)); echo "not ok - $*"; }
diag()   { printf '%s\n' "$*" | sed 's/^/# /'; }
# check "description" command...: ok if the command succeeds (output shown on failure)
check() {
  _what=$1; shift
  if _out=$("$@" 2>&1); then ok "$_what"; else not_ok "$_what"; diag "command: $*"; diag "$_out"; fi
}
check_fail() {
  _what=$1; shift
  if _out=$("$@" 2>&1); then not_ok "$_what (unexpected success)"; diag "$_out"; else ok "$_what"; fi
}
is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; diag "got:      $2"; diag "expected: $3"; fi; }
# wait_for PATH [TENTHS]: wait until PATH exists (default 10 s)
wait_for() {
  _n=${2:-100}
  while [ ! -e "$1" ] && [ "$_n" -gt 0 ]; do sleep 0.1; _n=$((_n-1)); done
  [ -e "$1" ]
}
# elapsed: seconds since boot (for timings)
uptime_s() { cut -d' ' -f1 /proc/uptime; }
