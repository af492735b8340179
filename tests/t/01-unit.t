#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The unit tests of common/ (the shared layer): tests/unit/test-NAME.c for
# common/NAME.h, each a C program printing TAP.  Their lines are relayed
# here as "NAME: what", then their plan and exit status are checked.
source "$(dirname "$0")/../lib/tap.sh"

# Every header of common/ has its unit test, but those that hold only
# constants and struct layouts (checked by their own _Static_asserts).
for h in "$ROOT"/common/*.h; do
  name=$(basename "$h" .h)
  case $name in nbd-protocol|path-size) continue ;; esac
  check "common/$name.h has a unit test (tests/unit/test-$name.c)" test -e "$ROOT/tests/unit/test-$name.c"
done

for src in "$ROOT"/tests/unit/test-*.c; do
  name=$(basename "$src" .c); name=${name#test-}
  [ -e "$ROOT/common/$name.h" ] || continue
  bin=$TBIN/unit/test-$name
  need_file "$bin"
  out=$("$bin" 2>&1); rc=$?
  plan=
  while IFS= read -r line; do
    case $line in
      "ok "*)     ok "$name: ${line#* - }" ;;
      "not ok "*) not_ok "$name: ${line#* - }" ;;
      1..*)       plan=${line#1..} ;;
      *)          diag "$name: $line" ;;
    esac
  done <<<"$out"
  ran=$(grep -c '^\(not \)\?ok ' <<<"$out")
  check "$name: exit status 0, all $ran tests of its plan ran" test "$rc" -eq 0 -a "${plan:-x}" = "$ran"
done
