#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# 50-overlay.t - the copy-on-write overlay (nbd-server/engine/overlay.c):
# random write/zero/trim patterns against a raw model, crash (kill -9)
# consistency at many kill points, concurrent sub-granule writes, base
# identity checks, header and map-page corruption, a sparse 2 TiB base.
#
# The model for every script is the same script applied by disk-tool to a
# raw copy of the base (the raw backend is the reference implementation).
source "$(dirname "$0")/../lib/tap.sh"

DT=$TBIN/disk-tool
need_file "$DT" "$TBIN/test-overlay-threads"
need_cmd sha256sum cmp truncate
need_file "$PY"

# gen SEED SIZE NOPS FLUSHES KILL > script: random writes, zeroes, trims,
# FLUSHES "f" lines, a final "k" if KILL is 1 (tests/lib/ovl-script.py).
gen() { "$PY" "$ROOT/tests/lib/ovl-script.py" "$@"; }

# granules OVL OLD NEW: every 4 KiB granule of OVL equals OLD's or NEW's.
granules_old_or_new() {
  "$PY" "$ROOT/tests/lib/granules-old-or-new.py" "$@"
}

mkbase() {  # mkbase FILE SIZE: random contents
  head -c "$2" /dev/urandom > "$1"
}

# ---------------------------------------------------------------------------
# Basics: create, info, map states, refuse to create twice.
B=$TMPD/base.img
mkbase "$B" $((1024 * 1024))
sum_before=$(sha256sum < "$B")
check "create an overlay over a raw base" "$DT" -N "$TMPD/o.ovl" "$B" flush
info=$("$DT" -O "$TMPD/o.ovl" "$B" info 2>&1)
like "info says format=overlay" "$info" "format=overlay"
like "info says the granule" "$info" "block_size=4096"
check_fail "creating an existing overlay again fails" "$DT" -N "$TMPD/o.ovl" "$B" flush
printf 'hello' > "$TMPD/h"
"$DT" -O "$TMPD/o.ovl" "$B" write 4094 "$TMPD/h" >/dev/null 2>&1
"$DT" -O "$TMPD/o.ovl" "$B" zero 16384 16384 mt >/dev/null 2>&1
map=$("$DT" -O "$TMPD/o.ovl" "$B" map 2>&1)
like "map: zeroed granules report ZERO" "$map" $'16384 16384 2'
info=$("$DT" -O "$TMPD/o.ovl" "$B" info 2>&1)
like "info: allocated bytes = 2 data + 4 zero granules" "$info" "allocated_bytes=24576"

# ---------------------------------------------------------------------------
# Random patterns: overlay == raw model; the base never changes.
SIZE=$((4 * 1024 * 1024))
mkbase "$TMPD/rb.img" $SIZE
rsum=$(sha256sum < "$TMPD/rb.img")
for seed in 1 2 3 4 5 6; do
  gen $seed $SIZE 300 $((seed % 3 * 4)) 0 > "$TMPD/s.txt"
  cp "$TMPD/rb.img" "$TMPD/model.img"
  rm -f "$TMPD/r.ovl"
  if "$DT" "$TMPD/model.img" script "$TMPD/s.txt" &&
     "$DT" -N "$TMPD/r.ovl" "$TMPD/rb.img" script "$TMPD/s.txt" &&
     "$DT" -O "$TMPD/r.ovl" "$TMPD/rb.img" cat > "$TMPD/got.img" &&
     cmp "$TMPD/got.img" "$TMPD/model.img"; then
    ok "random pattern seed $seed: overlay reads equal the raw model"
  else
    not_ok "random pattern seed $seed: overlay reads equal the raw model"
  fi
done
is "the base is byte-identical after all patterns" "$(sha256sum < "$TMPD/rb.img")" "$rsum"
map=$("$DT" -O "$TMPD/r.ovl" "$TMPD/rb.img" map 2>&1)
end=$(awk 'BEGIN{e=0} {if ($1 != e) {print "gap at " $1; exit} e=$1+$2} END{print e}' <<<"$map")
is "map covers the disk in order" "$end" "$SIZE"

# ---------------------------------------------------------------------------
# Crash: writes, flushes, more writes, kill -9.  Reopened, every granule
# must hold either its state at the last flush or its final state; since a
# granule untouched after the flush has old == new, flushed data must be
# exactly there.
CSIZE=$((2 * 1024 * 1024))
mkbase "$TMPD/cb.img" $CSIZE
csum=$(sha256sum < "$TMPD/cb.img")
crash_ok=0 crash_runs=0
for seed in $(seq 101 124); do
  nops=$((40 + seed % 7 * 30))
  gen $seed $CSIZE $nops $((1 + seed % 4)) 1 > "$TMPD/c.txt"
  # old: everything up to the last "f"; new: everything but the "k".
  last_f=$(grep -n '^f$' "$TMPD/c.txt" | tail -1 | cut -d: -f1)
  head -n "$last_f" "$TMPD/c.txt" > "$TMPD/c-old.txt"
  grep -v '^k$' "$TMPD/c.txt" > "$TMPD/c-new.txt"
  cp "$TMPD/cb.img" "$TMPD/old.img"; cp "$TMPD/cb.img" "$TMPD/new.img"
  "$DT" "$TMPD/old.img" script "$TMPD/c-old.txt"
  "$DT" "$TMPD/new.img" script "$TMPD/c-new.txt"
  rm -f "$TMPD/c.ovl"
  # A subshell with stderr closed, so bash's "Killed" notice stays quiet.
  ( "$DT" -N "$TMPD/c.ovl" "$TMPD/cb.img" script "$TMPD/c.txt"; echo $? > "$TMPD/rc" ) 2>/dev/null
  rc=$(cat "$TMPD/rc")
  crash_runs=$((crash_runs + 1))
  if [ $rc -ne 137 ]; then
    not_ok "crash seed $seed: disk-tool was killed (rc $rc)"
    continue
  fi
  if out=$("$DT" -O "$TMPD/c.ovl" "$TMPD/cb.img" cat > "$TMPD/cgot.img" 2>&1 &&
           granules_old_or_new "$TMPD/cgot.img" "$TMPD/old.img" "$TMPD/new.img" 2>&1); then
    ok "crash seed $seed (kill after op $nops, last flush at line $last_f): flushed data present, the rest old or new"
    crash_ok=$((crash_ok + 1))
  else
    not_ok "crash seed $seed: flushed data present, the rest old or new"
    diag "$out"
  fi
done
is "all $crash_runs kill points recovered" "$crash_ok" "$crash_runs"
is "the base is byte-identical after the crashes" "$(sha256sum < "$TMPD/cb.img")" "$csum"
# The recovered overlay keeps working: more writes, reopen, compare.
gen 999 $CSIZE 100 2 0 > "$TMPD/more.txt"
"$DT" -O "$TMPD/c.ovl" "$TMPD/cb.img" cat > "$TMPD/m.img"
"$DT" "$TMPD/m.img" script "$TMPD/more.txt"
"$DT" -O "$TMPD/c.ovl" "$TMPD/cb.img" script "$TMPD/more.txt"
check "a crashed-and-reopened overlay takes more writes correctly" \
  bash -c "'$DT' -O '$TMPD/c.ovl' '$TMPD/cb.img' cat | cmp - '$TMPD/m.img'"

# ---------------------------------------------------------------------------
# Concurrency: overlapping sub-granule writes from several threads.
mkdir -p "$TMPD/th"
check "concurrent sub-granule writes match the per-byte model" "$TBIN/test-overlay-threads" "$TMPD/th"

# ---------------------------------------------------------------------------
# Base identity.
mkbase "$TMPD/big.img" $((2 * 1024 * 1024))
out=$("$DT" -O "$TMPD/o.ovl" "$TMPD/big.img" cat 2>&1 >/dev/null)
like "reopen over a base of another size fails, naming overlay and both bases" \
  "$out" "o\.ovl: overlay was made for base .*base\.img of 1048576 bytes, but base .*big\.img is 2097152 bytes"
cp "$B" "$TMPD/other.img"
out=$("$DT" -O "$TMPD/o.ovl" "$TMPD/other.img" cat 2>&1 >/dev/null)
like "reopen over another image of the same size fails, naming both" \
  "$out" "o\.ovl: overlay was made for base .*/base\.img, not for base .*/other\.img"
(cd "$TMPD" && "$DT" -O o.ovl ./base.img flush) >/dev/null 2>&1
check "a relative path to the same base is the same base" test $? -eq 0

# ---------------------------------------------------------------------------
# Header and map-page corruption.
poke() {  # poke FILE OFFSET: flip one byte
  "$PY" -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0xff]))' "$1" "$2"
}
cp "$TMPD/o.ovl" "$TMPD/bad.ovl"
poke "$TMPD/bad.ovl" 200
out=$("$DT" -O "$TMPD/bad.ovl" "$B" cat 2>&1 >/dev/null)
like "a corrupted header is refused with a clear error" "$out" "bad\.ovl: overlay header is corrupt \(checksum mismatch\)"
cp "$TMPD/o.ovl" "$TMPD/bad.ovl"
poke "$TMPD/bad.ovl" 0
out=$("$DT" -O "$TMPD/bad.ovl" "$B" cat 2>&1 >/dev/null)
like "a file that is not an overlay is refused" "$out" "bad\.ovl: not a dism overlay"

# Torn map page: flush 1 writes granule 0 (map slot A), flush 2 granule 1
# (slot B).  Damaging slot B must fall back to slot A: granule 0 from the
# overlay, granule 1 from the base again.
rm -f "$TMPD/t.ovl"
printf 'w 0 4096 7\nf\nw 4096 4096 8\nf\n' > "$TMPD/t.txt"
"$DT" -N "$TMPD/t.ovl" "$B" script "$TMPD/t.txt"
printf 'w 0 4096 7\n' > "$TMPD/t1.txt"
cp "$B" "$TMPD/t-model.img"; "$DT" "$TMPD/t-model.img" script "$TMPD/t1.txt"
poke "$TMPD/t.ovl" $((8192 + 100))
check "a torn map page falls back to the previous flushed copy" \
  bash -c "'$DT' -O '$TMPD/t.ovl' '$B' cat | cmp - '$TMPD/t-model.img'"
poke "$TMPD/t.ovl" $((4096 + 100))
out=$("$DT" -O "$TMPD/t.ovl" "$B" cat 2>&1 >/dev/null)
like "both copies of a map page damaged: a clear error" "$out" "t\.ovl: map page 0 is corrupt"
is "the base is byte-identical" "$(sha256sum < "$B")" "$sum_before"

# ---------------------------------------------------------------------------
# A sparse 2 TiB base: small overlay file and small memory.
truncate -s 2T "$TMPD/huge.img"
printf 'w 0 65536 1\nw 1099511627776 8192 2\nz 2000000000000 4096\nw 2199023251456 4096 3\nf\n' > "$TMPD/h.txt"
rss=$("$PY" "$ROOT/tests/lib/overlay-huge-rss.py" "$DT" "$TMPD/huge.ovl" "$TMPD/huge.img" "$TMPD/h.txt")
if [[ $rss =~ ^[0-9]+$ ]] && [ "$rss" -lt 65536 ]; then
  ok "2 TiB base: create, write, map within 64 MiB RSS ($rss KiB)"
else
  not_ok "2 TiB base: create, write, map within 64 MiB RSS"; diag "$rss"
fi
used=$(du -k "$TMPD/huge.ovl" | cut -f1)
check "2 TiB base: the overlay file stays small (${used} KiB)" test "$used" -lt 2048
map=$("$DT" -O "$TMPD/huge.ovl" "$TMPD/huge.img" map 2>&1)
like "2 TiB base: map shows data at 1 TiB" "$map" $'1099511627776 8192 0'
like "2 TiB base: map shows the zeroed granule" "$map" $'\n2000000000000 4096 2\n'

# ---------------------------------------------------------------------------
# Fuzz corpus replay (the seeds must load cleanly in the fuzz target).
FUZZ_BIN=${FUZZ_BIN:-$ROOT/build/fuzz/fuzz-overlay-map}
need_file "$FUZZ_BIN" "$ROOT/tests/fuzz/corpus/overlay"
check "fuzz-overlay-map replays its corpus cleanly" \
  "$FUZZ_BIN" -runs=0 "$ROOT/tests/fuzz/corpus/overlay"
