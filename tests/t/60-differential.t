#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Differential reads through our NBD server: every VHD/VHDX in the corpus and
# images generated here with qemu-img hold exactly the bytes the reference
# readers give (MANIFEST sha256, qemu-img convert), read with nbdcopy over
# 4 connections; nbdinfo --map agrees with the BAT (qemu-img map for VHD,
# an independent BAT reader for VHDX).
source "$(dirname "$0")/../lib/tap.sh"
need_cmd nbdcopy nbdinfo qemu-img sha256sum
need_file "$BIN/dism-nbd-server"

# serve_sha IMG [server args]: sha256 of the whole export read with nbdcopy.
serve_sha() {
  local img=$1; shift
  start_server diff "$@" --readonly "$img" || { echo "server-failed"; return; }
  nbdcopy --connections=4 "$(uri "$SOCK")" - | sha256sum | cut -d' ' -f1
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null
}

# --- corpus: name|sha256 of the correct raw disk (MANIFEST.md) ------------
while IFS='|' read -r rel sha; do
  [ -n "$rel" ] || continue
  img=$(corpus_file "$rel")
  is "corpus $rel: bytes through NBD equal the reference" "$(serve_sha "$img")" "$sha"
done <<'LIST'
vhd/dissect-win10-dynamic.vhd|ecff2ef6615a3cddc6a6885f1c6d9cf13a232697e1dc6575f2c2f01f57247784
vhd/dissect-win10-fixed.vhd.gz|459325ab1fcd1d5ec9854cba790ee26378317cda177ffc1072008a1df88e6463
vhd/nodevhd-win10-dynamic-512M.vhd.gz|c461afded0b54cc1cfb5441e08f4d7f9d699d2eff7d9526d1cf6ad227da26683
vhd/nodevhd-win10-fixed.vhd.gz|fa0490edf13cf9699ac7ead2b2024f2ec7921f583ff824039bca0529055e409d
vhd/qemu-disk2vhd-zerofilled.vhd.bz2|1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143
vhdx/dissect-win10-dynamic.vhdx|8e2b5e9265d694b42b81819e3bff29770eff4ed0f4f9f311693ff3dbdc93efac
vhdx/dissect-win10-fixed.vhdx.gz|bc0be4623b15aa84216fb31ba24e3b621ec7f1c72d198c990ac0eced222d9f62
vhdx/discutils-win10-dirty-log-1G.vhdx.gz|3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e
vhdx/discutils-win10-swap-10G.vhdx.gz|60dd30b4c74361427d1089510cabb36e2eeda0cc4747f467ea43173acd358c49
vhdx/discutils-win10-xfs5-10G.vhdx.gz|edc5d630b2da0ddb08992afb58ded06ffb56b884e184b4974fda16e31b7e6817
vhdx/discutils-win10-lvm2-10G-unmapped.vhdx.gz|f7dc6812a3b12a35f3ec895ce981bd59ff4558270fc80cd812c9cd522bff1295
vhdx/qemu-hyperv2012-dynamic-1G.vhdx.bz2|d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478
vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2|179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f
vhdx/qemu-disk2vhd-256M.vhdx.bz2|96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a
LIST

# The dirty-log images are served read-only: the file must be untouched.
for rel in vhdx/discutils-win10-dirty-log-1G.vhdx.gz vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2; do
  img=$TMPD/corpus/${rel%.*}
  sum=$(sha256sum "$img" | cut -d' ' -f1)
  case $rel in
    *1G*)  want=d0805b6f7cdd3908239442900d73053a013079f839656d69bae00a44948983d6 ;;
    *10G*) want=511daba998dba208ffc57a7814194d5dd3afb7c314731b904ff1682e3fb4951a ;;
  esac
  is "corpus $rel: read-only replay left the file byte-identical" "$sum" "$want"
done

# The two 127 GiB empty VHDs: size is current_size (what Windows uses), the
# whole map is hole+zero, and reads spread over the disk are zero.
for rel in vhd/qemu-virtualpc-dynamic.vhd vhd/qemu-hyperv2012r2-dynamic.vhd; do
  img=$(corpus_file "$rel")
  start_server big --readonly "$img"
  size=$(nbdinfo --size "$(uri "$SOCK")")
  is "corpus $rel: virtual size is current_size" "$size" 136365211648
  map=$(nbdinfo --map --totals "$(uri "$SOCK")" | awk '{print $3}' | tr '\n' ' ')
  like "corpus $rel: map is all hole+zero" "$map" '^3 $'
  zero=$($PY "$ROOT/tests/lib/nbd-sampled-zero.py" "$(uri "$SOCK")")
  is "corpus $rel: sampled reads are zero" "$zero" zero
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null
done

# --- generated images with known data ------------------------------------
raw=$TMPD/src.raw
$PY "$ROOT/tests/lib/sparse-random-raw.py" "$raw"
srcsum=$(sha256sum "$raw" | cut -d' ' -f1)

gen() {  # gen NAME qemu-img-convert-args...
  local name=$1; shift
  qemu-img convert -f raw "$@" "$raw" "$TMPD/$name" 2>"$TMPD/$name.err" || diag "$(cat "$TMPD/$name.err")"
}
gen vpc-dynamic.vhd  -O vpc  -o subformat=dynamic,force_size=on
gen vpc-fixed.vhd    -O vpc  -o subformat=fixed,force_size=on
gen vhdx-dyn-1M.vhdx   -O vhdx -o subformat=dynamic,block_size=1M
gen vhdx-dyn-8M.vhdx   -O vhdx -o subformat=dynamic,block_size=8M
gen vhdx-dyn-32M.vhdx  -O vhdx -o subformat=dynamic,block_size=32M
gen vhdx-dyn-256M.vhdx -O vhdx -o subformat=dynamic,block_size=256M
gen vhdx-fixed.vhdx  -O vhdx -o subformat=fixed

for name in vpc-dynamic.vhd vpc-fixed.vhd vhdx-dyn-1M.vhdx vhdx-dyn-8M.vhdx \
            vhdx-dyn-32M.vhdx vhdx-dyn-256M.vhdx vhdx-fixed.vhdx; do
  img=$TMPD/$name
  qfmt=$(case $name in *.vhd) echo vpc;; *) echo vhdx;; esac)
  ref=$(qemu-img convert -f $qfmt -O raw "$img" "$TMPD/ref.raw" && sha256sum "$TMPD/ref.raw" | cut -d' ' -f1)
  is "generated $name: qemu-img reads the source back" "$ref" "$srcsum"
  is "generated $name: bytes through NBD equal qemu-img's" "$(serve_sha "$img")" "$ref"
  start_server map --readonly "$img"
  nbdinfo --map --json "$(uri "$SOCK")" > "$TMPD/ours.json"
  # The reference map: qemu-img map for VHD (qemu's vpc driver reports the
  # BAT); qemu's vhdx driver reports everything as data, so for VHDX an
  # independent reading of the BAT (tests/lib/vhdxbat.py).
  if [ $qfmt = vpc ]; then
    qemu-img map -f $qfmt --output=json "$img" > "$TMPD/qemu.json"
  else
    $PY "$ROOT/tests/lib/vhdxbat.py" "$img" > "$TMPD/qemu.json"
  fi
  check "generated $name: nbdinfo --map agrees with the BAT" \
    $PY "$ROOT/tests/lib/mapcmp.py" "$TMPD/ours.json" "$TMPD/qemu.json"
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null
done
