#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# dism-imageinfo: format, subtype, sizes, block size and parent chain of
# corpus images, in text and JSON; clear errors for bad input.
source "$(dirname "$0")/../lib/tap.sh"
need_file "$BIN/dism-imageinfo"
II=$BIN/dism-imageinfo
jget() { $PY -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

img=$(corpus_file vhdx/dissect-win10-dynamic.vhdx)
j=$("$II" --json "$img")
is "vhdx dynamic: format" "$(jget 'd["chain"][0]["format"]' <<<"$j")" vhdx
is "vhdx dynamic: subtype" "$(jget 'd["chain"][0]["subtype"]' <<<"$j")" dynamic
is "vhdx dynamic: virtual size" "$(jget 'd["chain"][0]["virtual_size"]' <<<"$j")" 10485760
is "vhdx dynamic: block size 32 MiB" "$(jget 'd["chain"][0]["block_size"]' <<<"$j")" 33554432
is "vhdx dynamic: sectors 512/4096" "$(jget 'str(d["chain"][0]["logical_sector"])+"/"+str(d["chain"][0]["physical_sector"])' <<<"$j")" 512/4096
is "vhdx dynamic: one 32 MiB block allocated" "$(jget 'd["chain"][0]["allocated_bytes"]' <<<"$j")" 33554432

img=$(corpus_file vhd/dissect-win10-fixed.vhd.gz)
j=$("$II" --json "$img")
is "vhd fixed: format/subtype" "$(jget 'd["chain"][0]["format"]+"/"+d["chain"][0]["subtype"]' <<<"$j")" vhd/fixed
is "vhd fixed: current_size" "$(jget 'd["chain"][0]["virtual_size"]' <<<"$j")" 10485760

img=$(corpus_file vhd/qemu-virtualpc-dynamic.vhd)
t=$("$II" "$img")
like "vhd virtual pc: text output names the CHS size too" "$t" "136363130880"

img=$(corpus_file vhd/dfvfs-image-chain/image-differential.vhd)
out=$("$II" "$img" 2>&1); rc=$?
check "vhd chain with bad checksums: refused by default" test $rc -ne 0
like "vhd chain: the error names the file and the checksum" "$out" "image(-differential)?\.vhd.*checksum"
j=$("$II" --json --allow-bad-checksum "$img")
is "vhd chain (forensic mode): two images in the chain" "$(jget 'len(d["chain"])' <<<"$j")" 2
is "vhd chain: child is differencing" "$(jget 'd["chain"][0]["subtype"]' <<<"$j")" differencing
like "vhd chain: parent is image.vhd" "$(jget 'd["chain"][1]["file"]' <<<"$j")" "/image\.vhd$"

img=$(corpus_file vhd/dfvfs-fat-orphan/fat-differential.vhd)
out=$("$II" "$img" 2>&1); rc=$?
check "orphan differencing vhd: fails" test $rc -ne 0
like "orphan differencing vhd: error names the missing parent" "$out" "fat-parent\.vhd"

img=$(corpus_file vhdx/dissect-win10-differencing-orphan.avhdx.gz)
out=$("$II" "$img" 2>&1); rc=$?
check "orphan differencing vhdx: fails" test $rc -ne 0
like "orphan differencing vhdx: error names the missing parent" "$out" "Generation 1_49C4BAF3"

out=$("$II" "$TMPD/nonexistent.vhdx" 2>&1); rc=$?
check "missing file: fails" test $rc -ne 0
like "missing file: error names the file" "$out" "nonexistent\.vhdx"
