# SPDX-License-Identifier: GPL-2.0-or-later
# tap.sh - helpers for the suite's TAP test scripts (sourced by tests/t/*.t).
#
# Conventions: every test script prints TAP ("ok N - what", "not ok N - what")
# and a plan at the end.  A missing tool, device or corpus file is a FAILURE
# (need_cmd / need_file), never a skip.  Scripts run from the project root
# with $BUILD set (default build).
#
# Root: a script that needs root says so in its header, once, on a line
#   # needs-root: WHY (e.g. loop devices, mounts)
# Run by anyone else it is skipped whole ("1..0 # SKIP needs root: WHY");
# run-tests.sh reads the same line (tests/lib/needs-root.sh) to list a
# non-root run's skips.  That is the only skip there is: run as root, every
# script runs.

set -u
: "${BUILD:=build}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CORPUS=${CORPUS:-$ROOT/../shared/corpus}
BIN=$ROOT/$BUILD/bin
TBIN=$ROOT/$BUILD/tests
# The ASan+UBSan build the tests also run beside $BUILD: SAN_BUILD, else
# $BUILD-san or ${BUILD}san if it is built (build-h4 -> build-h4san), else
# build-san.  SAN is its directory.
if [ -z "${SAN_BUILD:-}" ]; then
  SAN_BUILD=build-san
  for _b in "$BUILD-san" "${BUILD}san"; do [ -d "$ROOT/$_b" ] && SAN_BUILD=$_b && break; done
fi
SAN=$ROOT/$SAN_BUILD
PY=/usr/bin/python3
# 1 when $BUILD holds ASan builds (the suite's sanitizer pass, run-tests.sh):
# memory bounds are not asserted on them (ASan's shadow and quarantine).
SANITIZED=0
grep -q __asan_init "$BIN/dism-nbd-server" 2>/dev/null && SANITIZED=1
source "$ROOT/tests/lib/needs-root.sh"
_tap_why=$(needs_root "$0")
if [ -n "$_tap_why" ] && [ "$(id -u)" -ne 0 ]; then
  echo "1..0 # SKIP needs root: $_tap_why"
  exit 0
fi
_tap_n=0
_tap_failed=0
TMPD=$(mktemp -d /tmp/dism-test.XXXXXX)
_tap_cleanups=()

tap_cleanup() { _tap_cleanups+=("$*"); }
_tap_exit() {
  local i
  for ((i=${#_tap_cleanups[@]}-1; i>=0; i--)); do eval "${_tap_cleanups[$i]}" >/dev/null 2>&1 || true; done
  rm -rf "$TMPD"
  echo "1..$_tap_n"
}
trap _tap_exit EXIT

ok()     { _tap_n=$((_tap_n+1)); echo "ok $_tap_n - $*"; }
not_ok() { _tap_n=$((_tap_n+1)); _tap_failed=$((_tap_failed+1)); echo "not ok $_tap_n - $*"; }
diag()   { sed 's/^/# /' <<<"$*"; }

# check "description" command...: ok if the command succeeds.
check() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what"; diag "command: $*"; diag "$out"; fi
}
# check_fail "description" command...: ok if the command fails.
check_fail() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then not_ok "$what (unexpected success)"; diag "$out"; else ok "$what"; fi
}
# is "description" got expected
is() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; diag "got:      $2"; diag "expected: $3"; fi
}
like() {  # like "description" got regex
  if [[ $2 =~ $3 ]]; then ok "$1"; else not_ok "$1"; diag "got: $2"; diag "wanted match: $3"; fi
}
unlike() {  # unlike "description" got regex
  if [[ $2 =~ $3 ]]; then not_ok "$1"; diag "got: $2"; diag "wanted no match: $3"; else ok "$1"; fi
}
isnt() {  # isnt "description" got unexpected
  if [ "$2" != "$3" ]; then ok "$1"; else not_ok "$1"; diag "got (and did not want): $2"; fi
}

need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { not_ok "required tool '$c' is missing (run tests/deps.sh)"; exit 1; }
  done
}
need_file() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || { not_ok "required file '$f' is missing"; exit 1; }
  done
}

# corpus_file REL: path to a corpus image, decompressed into $TMPD if it is
# stored as .gz/.bz2.  Keeps the directory structure (chains need siblings).
corpus_file() {
  local rel=$1 src=$CORPUS/$1 dst
  need_file "$src"
  case "$rel" in
    *.gz)  dst=$TMPD/corpus/${rel%.gz};  mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || gzip -dc "$src" > "$dst" ;;
    *.bz2) dst=$TMPD/corpus/${rel%.bz2}; mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || bzip2 -dc "$src" > "$dst" ;;
    *)     dst=$src ;;
  esac
  echo "$dst"
}

# start_server SOCKNAME args...: start dism-nbd-server on a Unix socket in
# $TMPD, wait until it accepts, register its cleanup.  Sets SERVER_PID and
# SOCK; the NBD URI is nbd+unix:///?socket=$SOCK
start_server() {
  local name=$1; shift
  SOCK=$TMPD/$name.sock
  rm -f "$SOCK"
  "$BIN/dism-nbd-server" --unix "$SOCK" "$@" 2>>"$TMPD/$name.log" &
  SERVER_PID=$!
  tap_cleanup "kill $SERVER_PID; wait $SERVER_PID"
  local i
  for i in $(seq 1 200); do
    [ -S "$SOCK" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { diag "$(cat "$TMPD/$name.log")"; return 1; }
    sleep 0.05
  done
  return 1
}
uri() { echo "nbd+unix:///?socket=$1"; }

# run_vm MIN_OKS GUEST_SCRIPT [run-vm.sh options...] -- BINARIES...: boot the
# test VM (Kbuild/vm/run-vm.sh) with the guest script, relay its "ok - " /
# "not ok - " lines as TAP, and check that the VM reached the script's end,
# that the script exited 0 and that it reported at least MIN_OKS passes.
run_vm() {
  local min=$1 script=$2 out=$TMPD/vm.out err=$TMPD/vm.err line vmrc oks=0
  shift 2
  local opts=() bins=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  bins=("$@")
  "$ROOT/Kbuild/vm/run-vm.sh" --timeout "${VM_TIMEOUT:-240}" "${opts[@]}" \
    "$script" "${bins[@]}" >"$out" 2>"$err"
  vmrc=$?
  while IFS= read -r line; do
    case "$line" in
      "ok - "*)     ok "vm: ${line#ok - }"; oks=$((oks+1)) ;;
      "not ok - "*) not_ok "vm: ${line#not ok - }" ;;
      "#"*)         echo "$line" ;;
      *)            diag "vm: $line" ;;
    esac
  done < "$out"
  if [ $vmrc -eq 2 ] || [ $vmrc -eq 3 ]; then
    not_ok "the VM ran the guest script to its end (run-vm.sh exit $vmrc)"
    diag "$(cat "$err")"
  else
    ok "the VM ran the guest script to its end"
    diag "$(grep '^run-vm.sh:' "$err")"
    is "the guest script exited 0" "$vmrc" 0
  fi
  if [ $oks -ge "$min" ]; then ok "the guest reported $oks passing checks"
  else not_ok "the guest reported only $oks passing checks (expected >= $min)"; fi
}
