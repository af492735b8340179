# SPDX-License-Identifier: GPL-2.0-or-later
# needs-root.sh - the one reader of a test script's "# needs-root: WHY"
# header line (tests/lib/tap.sh and tests/run-tests.sh source it).
# needs_root FILE: prints WHY, or nothing when FILE needs no root.
needs_root() { sed -n 's/^# needs-root: *//p' "$1" | head -n1; }
