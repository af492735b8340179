#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The same random write/trim/zero/flush load over four libnbd connections,
# against dynamic VHDX and VHD images served with a copy-on-write overlay:
# the export matches the model at every flush; kill -9 of the server after
# the last flush loses nothing (the overlay reopened by our reader and by a
# restarted server both hold the model); the image file is untouched until
# COMMIT, after which qemu-img reads the model from the image itself.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd "$PY" qemu-img nbdcopy
need_file "$BIN/dism-nbd-server" "$TBIN/disk-tool"

for fmt in vhdx vpc; do
  ext=$([ $fmt = vpc ] && echo vhd || echo vhdx)
  opts=$([ $fmt = vpc ] && echo subformat=dynamic,force_size=on || echo subformat=dynamic,block_size=1M)
  img=$TMPD/base.$ext ovl=$TMPD/o-$ext.ovl
  qemu-img create -q -f $fmt -o $opts "$img" 64M
  head -c 8M /dev/urandom > "$TMPD/seed"; "$TBIN/disk-tool" "$img" write $((20 << 20)) "$TMPD/seed" >/dev/null
  sum=$(sha256sum < "$img")
  start_server "ovl-$ext" --threads 8 --overlay "$ovl" "$img" || { not_ok "$ext: server starts"; continue; }
  result=$(timeout 80 "$PY" "$ROOT/tests/lib/nbd-random-io.py" "$(uri "$SOCK")" - "$TMPD/model" 7 20 2>&1)
  like "$ext + overlay: random I/O over 4 connections matches the model at every flush" "$result" "^ok: "
  diag "$result"
  kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  is "$ext: the image file is untouched (writes went to the overlay)" "$(sha256sum < "$img")" "$sum"
  check "$ext: after kill -9 the reopened overlay holds the model" \
    bash -c "cmp <('$TBIN/disk-tool' -O '$ovl' '$img' cat) '$TMPD/model'"
  start_server "ovl2-$ext" --overlay "$ovl" --control "$TMPD/c-$ext.sock" "$img"
  check "$ext: a restarted server on the same overlay serves the model" \
    bash -c "cmp <(nbdcopy '$(uri "$SOCK")' -) '$TMPD/model'"
  check "$ext: COMMIT" $PY "$ROOT/tests/lib/ctl.py" "$TMPD/c-$ext.sock" COMMIT
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  qemu-img convert -f $fmt -O raw "$img" "$TMPD/q.raw"
  check "$ext: after COMMIT qemu-img reads the model from the image" cmp "$TMPD/q.raw" "$TMPD/model"
done

# The engine's own write paths under the same concurrent load: the VHDX and
# VHD served writable without an overlay; after kill -9 following the last
# flush, qemu-img (replaying a VHDX log left dirty, on a copy) reads the model.
for fmt in vhdx vpc; do
  ext=$([ $fmt = vpc ] && echo vhd || echo vhdx)
  opts=$([ $fmt = vpc ] && echo subformat=dynamic,force_size=on || echo subformat=dynamic,block_size=1M)
  img=$TMPD/direct.$ext
  qemu-img create -q -f $fmt -o $opts "$img" 64M
  start_server "direct-$ext" --threads 8 "$img" || { not_ok "$ext: server starts"; continue; }
  result=$(timeout 80 "$PY" "$ROOT/tests/lib/nbd-random-io.py" "$(uri "$SOCK")" - "$TMPD/model" 9 20 2>&1)
  like "$ext written in place: random I/O over 4 connections matches the model" "$result" "^ok: "
  kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  check "$ext: after kill -9 our reader holds the model" \
    bash -c "cmp <('$TBIN/disk-tool' -r '$img' cat) '$TMPD/model'"
  cp "$img" "$TMPD/copy.$ext"
  [ $fmt = vhdx ] && check "$ext: qemu-img check -r all accepts it" qemu-img check -q -r all "$TMPD/copy.$ext"
  qemu-img convert -f $fmt -O raw "$TMPD/copy.$ext" "$TMPD/q.raw"
  check "$ext: qemu-img reads the model" cmp "$TMPD/q.raw" "$TMPD/model"
done
