#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# check-spdx.sh: list the source files lacking an SPDX-License-Identifier
# line in their first five lines, or naming another licence than the map
# in tests/lib/spdx.sh (docs/licensing.md) gives them.  Exit 1 if any.
#   tests/lib/check-spdx.sh            from anywhere in the tree
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/spdx.sh
missing=0 wrong=0
while IFS= read -r f; do
  want=$(spdx_licence "$f")
  if ! have=$(spdx_has "$f"); then
    echo "missing: $f (wants $want)"; missing=$((missing + 1))
  elif [ "$have" != "$want" ]; then
    echo "wrong:   $f ($have, the map says $want)"; wrong=$((wrong + 1))
  fi
done < <(spdx_files)
[ $((missing + wrong)) -eq 0 ] || { echo "check-spdx: $missing missing, $wrong wrong (tests/lib/add-spdx.sh adds the missing ones)" >&2; exit 1; }
