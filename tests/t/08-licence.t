#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The licence: its texts are in the tree and every source file names its
# licence in an SPDX line, the one the map of docs/licensing.md gives
# (tests/lib/spdx.sh: LGPL-2.1-or-later for the library, GPL-2.0-or-later
# for the rest).
source "$(dirname "$0")/../lib/tap.sh"
need_cmd git
cd "$ROOT" || exit 1

check "COPYING is the GPL version 2" grep -q 'GNU GENERAL PUBLIC LICENSE' COPYING
check "COPYING.LGPL is the LGPL version 2.1" grep -q 'GNU LESSER GENERAL PUBLIC LICENSE' COPYING.LGPL
check "LICENSE says which part is under which" grep -q 'LGPL\|Lesser' LICENSE
out=$(bash tests/lib/check-spdx.sh 2>&1); rc=$?
is "every source file carries the SPDX line its part wants" "$rc" 0
[ "$rc" = 0 ] || diag "$out"
n=$(source tests/lib/spdx.sh && spdx_files | wc -l)
like "the map covers the tree's sources ($n files)" "$n" '^[1-9][0-9][0-9]+$'
