#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Random writes/trims/zeroes/reads/flushes over four libnbd connections at
# once (aio, ~100 requests in flight) against a model; after each flush the
# raw image equals the model; after kill -9 following the last flush (the
# server gets no chance to flush on exit) it still does.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd "$PY" truncate cmp
need_file "$BIN/dism-nbd-server"

IMG=$TMPD/disk.img
truncate -s 64M "$IMG"
head -c 8M /dev/urandom | dd of="$IMG" bs=1M seek=20 conv=notrunc status=none

for seed in 1 2; do
  start_server "rw$seed" --threads 8 "$IMG" || { not_ok "server starts"; exit 1; }
  result=$(timeout 50 "$PY" "$ROOT/tests/lib/nbd-random-io.py" "$(uri "$SOCK")" "$IMG" "$TMPD/model" "$seed" 30 2>&1)
  like "seed $seed: random I/O over 4 connections matches the model" "$result" "^ok: "
  diag "$result"
  # No SIGTERM (which would flush): only what FLUSH made stable counts.
  kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  check "seed $seed: after kill -9 the image equals the model" cmp "$IMG" "$TMPD/model"
done
exit $((_tap_failed > 0))
