#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# 51-overlay-live.t - the overlay's live map (<overlay>.live): a process
# killed between flushes (the machine still up) loses no write that
# returned, so a restarted server carries on where the dead one stopped;
# across a simulated reboot (another boot id) the last flushed map stands.
#
# Models as in 50-overlay.t: the same script applied by disk-tool to a raw
# copy of the base.
source "$(dirname "$0")/../lib/tap.sh"

DT=$TBIN/disk-tool
need_file "$DT" "$BIN/dism-nbd-server" "$PY"
need_cmd sha256sum cmp

# gen SEED SIZE NOPS FLUSHES > script: random writes, zeroes and trims,
# FLUSHES "f" lines, then "k" (kill -9 self) (tests/lib/ovl-script.py).
gen() { "$PY" "$ROOT/tests/lib/ovl-script.py" "$@" 1; }

# run_killed ARGS...: disk-tool killed by its own "k"; prints its exit status
run_killed() {
  ( "$DT" "$@"; echo $? > "$TMPD/rc" ) 2>/dev/null
  cat "$TMPD/rc"
}

SIZE=$((3 * 1024 * 1024))
B=$TMPD/base.img
head -c $SIZE /dev/urandom > "$B"
bsum=$(sha256sum < "$B")

# ---------------------------------------------------------------------------
# kill -9 between flushes: the reopened overlay holds every write, exactly.
exact=0 runs=0
for seed in $(seq 1 12); do
  gen $seed $SIZE $((30 + seed * 7)) $((seed % 3)) > "$TMPD/s.txt"
  grep -v '^k$' "$TMPD/s.txt" > "$TMPD/s-new.txt"
  cp "$B" "$TMPD/new.img"; "$DT" "$TMPD/new.img" script "$TMPD/s-new.txt"
  rm -f "$TMPD/o.ovl" "$TMPD/o.ovl.live"
  rc=$(run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/s.txt")
  runs=$((runs + 1))
  if [ "$rc" != 137 ]; then
    not_ok "seed $seed: disk-tool was killed (rc $rc)"
    continue
  fi
  if "$DT" -O "$TMPD/o.ovl" "$B" cat | cmp -s - "$TMPD/new.img"; then
    exact=$((exact + 1))
  else
    not_ok "seed $seed: after kill -9 the reopened overlay reads exactly the final writes"
  fi
done
is "kill -9 after random writes, zeroes, trims (0-2 flushes): $exact of $runs reopen with every write" \
  "$exact" "$runs"
check "  a clean close removes the live map" test ! -e "$TMPD/o.ovl.live"
is "  the base is untouched" "$(sha256sum < "$B")" "$bsum"

# The adopted map is made durable by the next flush: after a simulated
# reboot (another boot id) the writes are still there.
printf 'w 0 65536 11\nw 1048576 8192 12\nz 2097152 16384\nk\n' > "$TMPD/a.txt"
grep -v '^k$' "$TMPD/a.txt" > "$TMPD/a-new.txt"
cp "$B" "$TMPD/a-model.img"; "$DT" "$TMPD/a-model.img" script "$TMPD/a-new.txt"
rm -f "$TMPD/o.ovl"
run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/a.txt" >/dev/null
check "after a kill the live map is there" test -s "$TMPD/o.ovl.live"
"$DT" -O "$TMPD/o.ovl" "$B" flush
check "  reopened and flushed: the writes survive a reboot" \
  bash -c "DISM_TEST_BOOT_ID=another-boot '$DT' -O '$TMPD/o.ovl' '$B' cat | cmp - '$TMPD/a-model.img'"

# ---------------------------------------------------------------------------
# A simulated reboot after the kill: the live map of the old boot is not
# trusted (its data may not have reached the disk); the flushed map stands.
printf 'w 0 8192 21\nf\nw 65536 8192 22\nw 1048576 4096 23\nk\n' > "$TMPD/r.txt"
printf 'w 0 8192 21\n' > "$TMPD/r-old.txt"
cp "$B" "$TMPD/r-model.img"; "$DT" "$TMPD/r-model.img" script "$TMPD/r-old.txt"
rm -f "$TMPD/o.ovl"
run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/r.txt" >/dev/null
check "another boot id: the last flush's state, not the live map" \
  bash -c "DISM_TEST_BOOT_ID=another-boot '$DT' -O '$TMPD/o.ovl' '$B' cat | cmp - '$TMPD/r-model.img'"

# ---------------------------------------------------------------------------
# A stale live map (a copy kept from before a later session that flushed)
# is refused: the flushed map's generation is outside its window.
printf 'w 0 4096 31\nk\n' > "$TMPD/g1.txt"
printf 'w 8192 4096 32\nf\n' > "$TMPD/g2.txt"
cp "$B" "$TMPD/g-model.img"
"$DT" "$TMPD/g-model.img" script <(printf 'w 8192 4096 32\n')
rm -f "$TMPD/o.ovl"
run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/g1.txt" >/dev/null
cp "$TMPD/o.ovl.live" "$TMPD/stale.live"
# the second session starts from a reboot's view (no live map) and flushes
DISM_TEST_BOOT_ID=another-boot "$DT" -O "$TMPD/o.ovl" "$B" script "$TMPD/g2.txt"
cp "$TMPD/stale.live" "$TMPD/o.ovl.live"
check "a stale live map (older generation window) is refused" \
  bash -c "'$DT' -O '$TMPD/o.ovl' '$B' cat | cmp - '$TMPD/g-model.img'"

# A live map left by a deleted overlay of the same name is not taken over
# by a new overlay.
rm -f "$TMPD/o.ovl"
run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/g1.txt" >/dev/null
rm -f "$TMPD/o.ovl"
check "a new overlay at the same path starts empty despite an old live map" \
  bash -c "'$DT' -N '$TMPD/o.ovl' '$B' cat | cmp - '$B'"

# A damaged live map is refused (invalid granule state), not trusted.
rm -f "$TMPD/o.ovl"
run_killed -N "$TMPD/o.ovl" "$B" script "$TMPD/g1.txt" >/dev/null
printf '\377' | dd of="$TMPD/o.ovl.live" bs=1 seek=$((4096 + 10)) conv=notrunc 2>/dev/null
check "a live map with an invalid state is refused (the flushed map: empty)" \
  bash -c "'$DT' -O '$TMPD/o.ovl' '$B' cat | cmp - '$B'"

# ---------------------------------------------------------------------------
# The server: writes acknowledged over NBD, no FLUSH, kill -9, a new server
# on the same overlay serves them.
S=$TMPD/s.sock
start_server() {
  "$BIN/dism-nbd-server" --unix "$S" --overlay "$TMPD/srv.ovl" "$B" 2>>"$TMPD/srv.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.05; done
}
rm -f "$TMPD/srv.ovl"
start_server
out=$("$PY" "$ROOT/tests/lib/live-write-64.py" "$S" 2>&1)
is "64 writes acknowledged (no flush)" "$out" "written"
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
start_server
out=$("$PY" "$ROOT/tests/lib/live-read-64.py" "$S" 2>&1)
is "  after kill -9 a new server on the same overlay reads them all" "$out" "all there"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
check "  a clean shutdown leaves no live map" test ! -s "$TMPD/srv.ovl.live"
is "  the base is untouched" "$(sha256sum < "$B")" "$bsum"
