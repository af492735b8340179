#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# add-spdx.sh: insert the SPDX-License-Identifier line the licence map
# (tests/lib/spdx.sh, docs/licensing.md) gives each source file that has
# none.  Run once from the tree (the lead, after merging); idempotent.
# The line goes first, except after what must stay first: a shebang, a
# Python coding line, a man page's preprocessor line ('\" t).  A file that
# names a licence already is left alone (check-spdx.sh reports a wrong one).
# The body is one function, read whole before it runs: the script edits
# itself too.
set -euo pipefail
main() {
cd "$(dirname "$0")/../.."
source tests/lib/spdx.sh
local n=0 f line after l1 l2 tmp
while IFS= read -r f; do
  spdx_has "$f" >/dev/null && continue
  line=$(spdx_line "$f")
  # after: how many leading lines stay before the SPDX line.
  after=0
  l1=$(sed -n 1p "$f"); l2=$(sed -n 2p "$f")
  case $l1 in '#!'*|"'\\\""*) after=1 ;; esac
  case $f in *.py)
    if [[ $l1 =~ coding[:=] ]]; then after=1
    elif [ $after = 1 ] && [[ $l2 =~ coding[:=] ]]; then after=2; fi ;;
  esac
  tmp=$(mktemp)
  { head -n "$after" "$f"; printf '%s\n' "$line"; tail -n +"$((after + 1))" "$f"; } > "$tmp"
  cat "$tmp" > "$f"     # keeps the file's mode
  rm -f "$tmp"
  n=$((n + 1))
done < <(spdx_files)
echo "add-spdx: $n file(s) given an SPDX line"
}
main "$@"; exit
