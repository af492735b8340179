# SPDX-License-Identifier: GPL-2.0-or-later
# wim-mount.sh - what tests/t/77-dism-wim-*.t share (sourced after tap.sh and
# dism-img.sh): the corpus WIMs, mount folders, listings to compare trees.
need_cmd wimlib-imagex wiminfo unzip sha256sum
need_file "$DISM" "$CORPUS/wim/listings"
W=$CORPUS/wim
mkdir -p "$TMPD"/m{1,2,3}
M=$TMPD/m1
run() { OUT=$(dism "$@" 2>&1); RC=$?; }

# listing DIR IMAGE: the tree as the corpus listings write it (image, type,
# path, size, sha256 of the unnamed stream), sorted by path.
listing() {
  $PY "$ROOT/tests/lib/tree-listing.py" "$1" "$2"
}
# expected NAME IMAGE: that image's lines of the corpus listing, sorted alike.
expected() {
  $PY "$ROOT/tests/lib/listing-expected.py" "$W/listings/$1.tsv" "$2"
}
# nothing_left WHAT: no mount, record, overlay or live state; the metadata
# cache (scratch/wim-cache) may keep finished volumes for the next mount,
# never an unfinished build.
nothing_left() {
  local left
  left=$(ls -A "$DISM_STATE_DIR/mounts" "$DISM_STATE_DIR/scratch" "$DISM_RUN_DIR/mounts" 2>/dev/null | grep -v '^/\|^$\|^wim-cache$' || true)
  left="$left$(ls -A "$DISM_STATE_DIR/scratch/wim-cache" 2>/dev/null | grep '^\.build-' || true)"
  if mountpoint -q "$M" || [ -n "$left" ] || [ -n "$(ls -A "$M")" ]; then
    not_ok "$1: nothing left behind"; diag "left: $left"
  else
    ok "$1: nothing left behind"
  fi
}
# apply_list WIM INDEX: wimlib's own extraction of an image, as a listing.
apply_list() {
  local d=$TMPD/apply.$$
  rm -rf "$d"
  wimlib-imagex apply "$1" "$2" "$d" --no-acls >/dev/null 2>&1 || { echo "apply failed"; return 1; }
  listing "$d" "$3"
  rm -rf "$d"
}

