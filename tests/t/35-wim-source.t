#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The engine's WIM data source (nbd-server/engine/wim-source.c) and the "wim"
# disk format (wimvol.c, wim-map.c): every blob of every corpus WIM and of
# WIMs made here (none, XPRESS, LZX, LZMS, several chunk sizes, solid LZMS,
# LZX and XPRESS, an integrity table after the data, a file over 4 GiB:
# 8-byte chunk table entries; image metadata resources included) read whole
# through wim_source_read with its SHA-1 checked, and random partial reads
# from several threads compared with the whole reads (tests/drivers/
# wim-blobs.c).  A damaged chunk fails that blob only, with a message naming
# the WIM, the resource and the chunk; pipable and split WIMs are refused
# clearly; a truncated WIM fails reads without a crash.  The map: its own
# selftest, and a "wim" disk read through disk-tool equals the blob bytes.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd wimlib-imagex wiminfo python3 nbdcopy
WB=$TBIN/wim-blobs
need_file "$WB" "$TBIN/wim-map-tool"
W=$CORPUS/wim
need_file "$CORPUS/MANIFEST.md" "$W/imagex-archive1-lzx.wim"

# wim_blobs_ok NAME WIM [args]: every blob reads right.
wim_blobs_ok() {
  local name=$1 wim=$2 out; shift 2
  out=$("$WB" --threads 4 --reads 500 "$@" "$wim" 2>&1)
  if [ $? -eq 0 ] && [[ $out =~ failed\ 0\ .*partial_bad\ 0 ]]; then
    ok "$name: every blob reads whole with its SHA-1, partial reads agree (${out##*stats })"
  else
    not_ok "$name: blobs"; diag "$out"
  fi
}

# ---- the map file -------------------------------------------------------------
check "wim-map: write, read, lookup; every flipped byte and truncation refused" \
  "$TBIN/wim-map-tool" selftest "$TMPD"

# ---- the corpus ---------------------------------------------------------------
bad=" wimlib-tests-corrupted_file_1 wimlib-tests-corrupted_file_2 wimlib-mwl-VerifyFail "
for f in "$W"/*.wim; do
  n=$(basename "$f" .wim)
  [[ $bad == *" $n "* ]] && continue
  wim_blobs_ok "corpus $n" "$f"
done
# Damaged by their makers: the bad blob fails, the others read.
for n in wimlib-tests-corrupted_file_2 wimlib-mwl-VerifyFail; do
  out=$("$WB" "$W/$n.wim" 2>&1)
  like "corpus $n: the damaged chunk is EIO naming the WIM, resource and chunk, the rest reads" \
    "$out" "FAIL .*Input/output error: $W/$n.wim: resource at [0-9]+: chunk 0 of 1 does not decompress.*failed 1 "
done
out=$("$WB" "$W/wimlib-tests-corrupted_file_1.wim" 2>&1)
like "corpus corrupted_file_1: the blob whose bytes are wrong fails its SHA-1, the other reads" \
  "$out" "SHA-1 mismatch.*blobs 2 ok 1 failed 1"
for f in "$W"/wimlib-mwl-split/*.swm; do
  out=$("$WB" --open "$f" 2>&1)
  like "split WIM $(basename "$f") refused clearly" "$out" "open failed: .*split WIM .*join it first"
done

# ---- WIMs made here --------------------------------------------------------------
SRC=$TMPD/src
python3 - "$SRC" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(35)
os.makedirs(root + "/d/e", exist_ok=True)
words = [("".join(r.choice("abcdefghij klmnop") for _ in range(r.randint(2, 9)))) for _ in range(300)]
def text(n): 
    out = []; size = 0
    while size < n:
        w = r.choice(words); out.append(w); size += len(w) + 1
    return (" ".join(out))[:n].encode()
files = {
  "empty": b"", "one": b"x", "two": b"yz",
  "chunk32k": text(32768), "chunk32k+1": text(32769), "chunk64k": text(65536),
  "random1m": r.randbytes(1 << 20), "text3m": text(3 << 20),
  "zeros2m": bytes(2 << 20), "mixed": r.randbytes(40000) + text(200000) + r.randbytes(5),
  "d/small": text(700), "d/e/deep": text(123457),
}
for i in range(40):
    files["d/e/f%02d" % i] = text(r.randint(1, 20000))
for name, data in files.items():
    with open(os.path.join(root, name), "wb") as f: f.write(data)
os.link(root + "/text3m", root + "/d/hardlink")
EOF
mk() {  # mk NAME capture-args...: capture SRC into $TMPD/NAME.wim
  local n=$1; shift
  wimlib-imagex capture "$SRC" "$TMPD/$n.wim" --threads=2 "$@" >"$TMPD/$n.log" 2>&1 ||
    { not_ok "capture $n: $*"; diag "$(cat "$TMPD/$n.log")"; return 1; }
}
for spec in "none:--compress=none" "xpress:--compress=XPRESS" "lzx:--compress=LZX" \
            "lzms:--compress=LZMS" "xpress-4k:--compress=XPRESS --chunk-size=4096" \
            "xpress-64k:--compress=XPRESS --chunk-size=65536" \
            "lzx-64k:--compress=LZX --chunk-size=65536" "lzx-2m:--compress=LZX --chunk-size=2M" \
            "lzms-1m:--compress=LZMS --chunk-size=1M" "lzx-check:--compress=LZX --check" \
            "solid-lzx:--solid --solid-compress=LZX --solid-chunk-size=65536" \
            "solid-xpress:--solid --solid-compress=XPRESS --solid-chunk-size=32768"; do
  n=${spec%%:*}
  # shellcheck disable=SC2086
  mk "$n" ${spec#*:} && wim_blobs_ok "made $n (${spec#*:})" "$TMPD/$n.wim"
done
# The .esd kind: an LZMS solid export (64 MiB chunks), with a cache of one
# such chunk and then the default.
if wimlib-imagex export "$TMPD/lzx.wim" 1 "$TMPD/solid.esd" --solid >"$TMPD/esd.log" 2>&1; then
  like "the export is solid LZMS" "$("$WB" --list "$TMPD/solid.esd")" " 0x3 "
  wim_blobs_ok "LZMS solid export (.esd)" "$TMPD/solid.esd"
  wim_blobs_ok "LZMS solid export, a cache smaller than one chunk" "$TMPD/solid.esd" --cache 1048576
else
  not_ok "export --solid"; diag "$(cat "$TMPD/esd.log")"
fi

# A pipable WIM: refused with a way out.
if mk pipable --compress=LZX --pipable; then
  out=$("$WB" --open "$TMPD/pipable.wim" 2>&1)
  like "a pipable WIM is refused clearly" "$out" "open failed: .*pipable WIM.*wimlib-imagex export"
fi

# Truncated: reads past the end fail (EINVAL: outside the file) or EIO,
# nothing crashes; blobs before the cut still read.
if [ -f "$TMPD/lzx.wim" ]; then
  sz=$(stat -c %s "$TMPD/lzx.wim")
  head -c $((sz * 2 / 3)) "$TMPD/lzx.wim" > "$TMPD/trunc.wim"
  out=$("$WB" --blobs-from "$TMPD/lzx.wim" "$TMPD/trunc.wim" 2>&1); rc=$?
  if [ $rc -eq 1 ] && [[ $out =~ failed\ [1-9] ]] && [[ $out =~ ok\ [1-9] ]] &&
     ! [[ $out =~ SHA-1 ]]; then
    ok "truncated WIM: blobs past the cut fail cleanly, the others read (${out##*blobs })"
  else
    not_ok "truncated WIM (rc $rc)"; diag "$out"
  fi
  head -c 100 "$TMPD/lzx.wim" > "$TMPD/trunc100.wim"
  like "a WIM cut inside its header is refused" "$("$WB" --open "$TMPD/trunc100.wim" 2>&1)" \
    "open failed: .*not a WIM file"
fi

# One damaged chunk in the middle of one big LZX file.
if [ -f "$TMPD/lzx.wim" ]; then
  cp "$TMPD/lzx.wim" "$TMPD/damaged.wim"
  # text3m: 3 MiB, the only non-metadata blob of that size.
  read -r roff rsize _ <<<"$("$WB" --list "$TMPD/damaged.wim" | awk '$6 == 3145728')"
  # 96 chunks: a 95-entry table of 4 bytes; damage the middle of the resource.
  at=$((roff + rsize / 2))
  printf '\xff%.0s' $(seq 64) | dd of="$TMPD/damaged.wim" bs=1 seek=$at conv=notrunc status=none
  out=$("$WB" "$TMPD/damaged.wim" 2>&1)
  nfail=$(grep -c '^FAIL' <<<"$out")
  like "damaged chunk: that blob is EIO naming the WIM, resource $roff and the chunk" \
    "$out" "FAIL blob .*Input/output error: $TMPD/damaged.wim: resource at $roff: chunk [0-9]+ of 96 "
  is "damaged chunk: only that blob fails, the others read right" "$nfail" 1
  # Served: reading that file's range is EIO with a log line naming the
  # WIM, resource, chunk and volume offset; the rest of the disk reads
  # right; the server lives on.
  V=$TMPD/vol-damaged; mkdir -p "$V"
  out=$("$WB" --mkmap "$TMPD/damaged.wim" "$V" 2>&1)
  read -r _ boff blen <<<"$(grep '^bad ' <<<"$out")"
  if [ -n "${blen:-}" ] && start_server damaged --readonly "$V/vol.map"; then
    r=$("$PY" - "$(uri "$SOCK")" "$boff" "$blen" "$V/expect.img" <<'EOF'
import nbd, sys
uri, boff, blen, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
h = nbd.NBD(); h.connect_uri(uri)
try:
    h.pread(65536, boff + blen // 2); print("damaged range read")
except nbd.Error as e:
    print("damaged range errno", e.errno)
exp = open(expect, "rb").read(); size = h.get_size(); bad = 0
for off in range(0, size, 1 << 20):
    n = min(1 << 20, size - off)
    if off + n <= boff or off >= boff + blen:
        bad += h.pread(n, off) != exp[off:off + n]
    else:   # around the damaged file: the parts outside it
        if off < boff: bad += h.pread(boff - off, off) != exp[off:boff]
        if off + n > boff + blen: bad += h.pread(off + n - boff - blen, boff + blen) != exp[boff + blen:off + n]
print("other ranges bad", bad)
EOF
)
    like "served, damaged chunk: that file's range is EIO" "$r" "damaged range errno (5|EIO)"
    like "served, damaged chunk: every other range reads right" "$r" "other ranges bad 0"
    like "served, damaged chunk: the log names the WIM, the resource, the chunk and the volume offset" \
      "$(cat "$TMPD/damaged.log")" "$TMPD/damaged.wim: resource at $roff: chunk [0-9]+ of 96 .*volume offset [0-9]+, MFT record [0-9]+"
    check "served, damaged chunk: the server lives on" kill -0 "$SERVER_PID"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  else
    not_ok "a map over the damaged WIM, served"; diag "$out"
  fi
  # Its chunk table damaged instead: an entry past the resource.
  cp "$TMPD/lzx.wim" "$TMPD/damaged2.wim"
  printf '\xff\xff\xff\x7f' | dd of="$TMPD/damaged2.wim" bs=1 seek=$((roff + 40)) conv=notrunc status=none
  out=$("$WB" "$TMPD/damaged2.wim" 2>&1)
  like "damaged chunk table: EIO naming the chunk" "$out" \
    "Input/output error: $TMPD/damaged2.wim: resource at $roff: chunk [0-9]+ of 96: bad chunk table entry"
fi

# ---- the "wim" disk format -----------------------------------------------------
DT=$TBIN/disk-tool
need_file "$DT"
for n in lzx solid-xpress; do
  [ -f "$TMPD/$n.wim" ] || continue
  V=$TMPD/vol-$n; mkdir -p "$V"
  if ! out=$("$WB" --mkmap "$TMPD/$n.wim" "$V" 2>&1); then
    not_ok "wim-blobs --mkmap $n"; diag "$out"; continue
  fi
  is "wim format ($n): probed as wim" "$("$DT" -r "$V/vol.map" info | sed -n 's/^format=//p')" wim
  check "wim format ($n): the whole disk equals the volume with the blobs in place" \
    bash -c "'$DT' -r '$V/vol.map' cat | cmp - '$V/expect.img'"
  # Reads that start and end inside extents and across their edges.
  bad=0
  for spec in "0 4096" "4000 100000" "123457 777777" "$(( $(stat -c %s "$V/vol.img") - 5000 )) 5000"; do
    read -r o l <<<"$spec"
    cmp -s <("$DT" -r "$V/vol.map" read "$o" "$l") <(tail -c +$((o + 1)) "$V/expect.img" | head -c "$l") || bad=$((bad + 1))
  done
  is "wim format ($n): partial reads across extent edges" "$bad" 0
  like "wim format ($n): mapped ranges are data, gaps are holes" \
    "$("$DT" -r "$V/vol.map" map | head -3 | tr '\n' ' ')" "^0 [0-9]+ 0 [0-9]+ [0-9]+ 3 "
  like "wim format ($n): opening it writable is refused clearly" \
    "$("$DT" "$V/vol.map" info 2>&1)" "WIM volume map is read-only"
  like "wim format ($n): the server says so" "$("$BIN/dism-nbd-server" --capabilities)" $'(^|\n)wim(\n|$)'
done
if [ -d "$TMPD/vol-lzx" ]; then
  V=$TMPD/vol-lzx
  # Served (sandboxed, as by default) with a small cache, and under an overlay.
  need_cmd nbdcopy
  if start_server wimvol --readonly --wim-cache-size 2M "$V/vol.map"; then
    check "wim format: served by dism-nbd-server (sandboxed, 2M cache), the device equals the volume" \
      bash -c "nbdcopy '$(uri "$SOCK")' - | cmp - '$V/expect.img'"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  else
    not_ok "server on a wim map"
  fi
  if start_server wimvol-ov --overlay "$TMPD/wimvol.ovl" "$V/vol.map"; then
    check "wim format: under an overlay, the device equals the volume" \
      bash -c "nbdcopy '$(uri "$SOCK")' - | cmp - '$V/expect.img'"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  else
    not_ok "server on a wim map under an overlay"
  fi
  like "wim format: --wim-cache-size refuses a nonsense size" \
    "$("$BIN/dism-nbd-server" --unix "$TMPD/x.sock" --readonly --wim-cache-size 12Q "$V/vol.map" 2>&1)" \
    "wim-cache-size 12Q: expected a size"
  # WIM_RES_DAMAGED (4): the builder found data whose SHA-1 did not match;
  # such a resource never reads (EIO, saying so); an unknown flag (8) is refused.
  flagmap() {  # flagmap SRC DST FLAG: every resource's flags | FLAG, the CRC-32C redone
    $PY - "$@" <<'EOF'
import struct, sys
def crc32c(data):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    c = 0xffffffff
    for b in data:
        c = t[(c ^ b) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff
src, dst, flag = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
b = bytearray(open(src, 'rb').read())
assert struct.unpack_from('<I', b, len(b) - 4)[0] == crc32c(b[:-4]), 'crc'
for i in range(struct.unpack_from('<I', b, 32)[0]):
    p = 128 + 32 * i + 24
    struct.pack_into('<I', b, p, struct.unpack_from('<I', b, p)[0] | flag)
struct.pack_into('<I', b, len(b) - 4, crc32c(b[:-4]))
open(dst, 'wb').write(b)
EOF
  }
  flagmap "$V/vol.map" "$V/damaged.map" 4 && flagmap "$V/vol.map" "$V/unknown.map" 8
  read -r _ eoff elen _ <<<"$("$TBIN/wim-map-tool" dump "$V/vol.map" | grep -m1 '^ext ')"
  like "wim map: resources flagged damaged (4) parse" \
    "$("$TBIN/wim-map-tool" dump "$V/damaged.map" | grep -m1 '^res ')" "^res 0 [0-9]+ [0-9]+ [0-9]+ 0x[4-7]$"
  like "wim format: a damaged resource's range reads EIO, its SHA-1 named" \
    "$("$DT" -r "$V/damaged.map" read "$eoff" "$(( elen < 4096 ? elen : 4096 ))" 2>&1 >/dev/null)" \
    "lzx.wim: read of .* damaged, its SHA-1 did not match when the volume was built.*Input/output error"
  is "wim format: the unmapped bytes before that range still read" \
    "$("$DT" -r "$V/damaged.map" read 0 "$eoff" | cmp - <(head -c "$eoff" "$V/expect.img") && echo same)" same
  like "wim map: an unknown resource flag (8) is refused" \
    "$("$DT" -r "$V/unknown.map" info 2>&1)" "WIM map: resource 0 is invalid .*flags 0x[89a-f]"
  cp "$V/vol.map" "$TMPD/copy.map"   # relative volume path: not next to this copy
  like "wim format: a map whose volume is missing is refused naming it" \
    "$("$DT" -r "$TMPD/copy.map" info 2>&1)" "$TMPD/vol.img: the volume of WIM map"
  # wimlib writes by appending (a commit, finished or killed): what the map
  # names stays where it was, so an appended WIM still serves it
  cp "$TMPD/lzx.wim" "$TMPD/lzx.orig"
  head -c 70000 /dev/urandom >> "$TMPD/lzx.wim"; touch "$TMPD/lzx.wim"
  like "wim format: a WIM appended to since the build still serves its map" \
    "$("$DT" -r "$V/vol.map" info 2>&1)" "format"
  # the same file with other content (another WIM: another GUID), or shorter
  cat "$TMPD/lzx.orig" > "$TMPD/lzx.wim"
  truncate -s -1 "$TMPD/lzx.wim"
  like "wim format: a WIM shorter than at the build is refused" \
    "$("$DT" -r "$V/vol.map" info 2>&1)" "the WIM changed since the volume was built"
  cat "$TMPD/lzx.orig" > "$TMPD/lzx.wim"
  printf 'GUIDGUIDGUIDGUID' | dd of="$TMPD/lzx.wim" bs=1 seek=24 conv=notrunc status=none
  like "wim format: another WIM (GUID) in the same file is refused" \
    "$("$DT" -r "$V/vol.map" info 2>&1)" "the WIM changed since the volume was built"
fi

# A file over 4 GiB (sparse source): 8-byte chunk table entries.
if [ "${WIM_SOURCE_SKIP_BIG:-0}" != 1 ]; then
  BIG=$TMPD/bigsrc; mkdir -p "$BIG"
  truncate -s $(( (4 << 30) + (3 << 20) + 12345 )) "$BIG/big"
  head -c 1000000 "$SRC/text3m" | dd of="$BIG/big" bs=1M seek=4095 conv=notrunc status=none
  head -c 5000 "$SRC/random1m" | dd of="$BIG/big" bs=1 seek=$(( (4 << 30) + (3 << 20) )) conv=notrunc status=none
  cp "$SRC/text3m" "$BIG/small"
  if wimlib-imagex capture "$BIG" "$TMPD/big.wim" --compress=XPRESS --threads=2 >"$TMPD/big.log" 2>&1; then
    wim_blobs_ok "a 4 GiB + 3 MiB file (8-byte chunk table entries)" "$TMPD/big.wim" --reads 100
  else
    not_ok "capture of a file over 4 GiB"; diag "$(tail -5 "$TMPD/big.log")"
  fi
  rm -rf "$BIG" "$TMPD/big.wim"
fi
