#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# VHD backend (nbd-server/engine/vhd.c) driven through disk-tool: the corpus
# against the MANIFEST, qemu-made images against qemu-img and libvhdi, the
# write paths against a model file, differencing chains made by
# tests/lib/mkvhd.py, and malformed images (also under ASan).
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-img qemu-io vhdiinfo sha256sum cmp truncate gzip bzip2
need_file "$TBIN/disk-tool" "$TBIN/test-vhd-threads" "$BIN/dism-imageinfo" "$PY" \
  "$SAN/tests/disk-tool" "$SAN/tests/test-vhd-threads"
"$PY" -c 'import pyvhdi' 2>/dev/null || { not_ok "python3 module pyvhdi is missing (run tests/deps.sh)"; exit 1; }

DT=$TBIN/disk-tool
DTSAN=$SAN/tests/disk-tool
MK=$ROOT/tests/lib/mkvhd.py
W=$TMPD/w
mkdir -p "$W"
sha() { sha256sum | cut -d' ' -f1; }
fsha() { sha256sum "$1" | cut -d' ' -f1; }
ZERO1M=$(head -c 1048576 /dev/zero | sha)
# pysha IMG [PARENT]: sha256 of the whole disk as libvhdi reads it.
pysha() {
  "$PY" "$ROOT/tests/lib/vhdi-sha256.py" "$@"
}
# qraw IMG OUT: qemu's raw view (current_size, as we and Windows use).
qraw() { qemu-img convert --image-opts "driver=vpc,force_size_calc=current_size,file.filename=$1" -O raw "$2"; }
# qcheck IMG: qemu-img check; qemu 7.2's vpc driver has no checker (rc 63),
# which is accepted, anything it does report is not.
qcheck() {
  local out rc
  out=$(qemu-img check -f vpc "$1" 2>&1); rc=$?
  [ $rc -eq 0 ] || { [ $rc -eq 63 ] && [[ $out == *"does not support checks"* ]]; } || { echo "$out"; return 1; }
  qemu-img info -f vpc "$1" >/dev/null
}
# gen_script FILE SEED SIZE COUNT MAXLEN ALIGN [ZEROES]: random disk-tool writes.
gen_script() {
  "$PY" "$ROOT/tests/lib/vhd-write-script.py" "$@"
}
size_of() { "$DT" -r "$1" info | sed -n 's/^virtual_size=//p'; }

# ---- 1. corpus ---------------------------------------------------------
while IFS='|' read -r rel want; do
  [ -n "$rel" ] || continue
  img=$(corpus_file "vhd/$rel")
  is "corpus $rel: sha256 of the disk equals the MANIFEST" "$("$DT" -r "$img" cat | sha)" "$want"
done <<'LIST'
dissect-win10-dynamic.vhd|ecff2ef6615a3cddc6a6885f1c6d9cf13a232697e1dc6575f2c2f01f57247784
dissect-win10-fixed.vhd.gz|459325ab1fcd1d5ec9854cba790ee26378317cda177ffc1072008a1df88e6463
nodevhd-win10-dynamic-512M.vhd.gz|c461afded0b54cc1cfb5441e08f4d7f9d699d2eff7d9526d1cf6ad227da26683
nodevhd-win10-fixed.vhd.gz|fa0490edf13cf9699ac7ead2b2024f2ec7921f583ff824039bca0529055e409d
qemu-disk2vhd-zerofilled.vhd.bz2|1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143
LIST

# The two empty 127 GiB images: size, map and a few reads, not a full cat.
for rel in qemu-virtualpc-dynamic.vhd qemu-hyperv2012r2-dynamic.vhd; do
  img=$(corpus_file "vhd/$rel")
  is "corpus $rel: virtual size is current_size" "$(size_of "$img")" 136365211648
  is "corpus $rel: map is one HOLE|ZERO extent" "$("$DT" -r "$img" map)" "0 136365211648 3"
  for off in 0 68182605824 136364163072; do
    is "corpus $rel: 1 MiB at $off reads zero" "$("$DT" -r "$img" read $off 1048576 | sha)" "$ZERO1M"
  done
done
img=$(corpus_file vhd/qemu-virtualpc-dynamic.vhd)
like "corpus qemu-virtualpc-dynamic.vhd: info exposes the CHS size too" \
  "$("$BIN/dism-imageinfo" "$img")" "CHS 65278/16/255 = 136363130880 bytes"
# dfvfs chain: bad checksums refused, accepted in forensic mode (-B).
chain_c=$(corpus_file vhd/dfvfs-image-chain/image-differential.vhd)
chain_p=$(corpus_file vhd/dfvfs-image-chain/image.vhd)
for f in "$chain_c" "$chain_p"; do
  out=$("$DT" -r "$f" cat 2>&1 >/dev/null); rc=$?
  [ $rc -ne 0 ] && [[ $out == *"$f"*"footer checksum"*"expected 0x"*"found 0x"* ]] &&
    ok "corpus $(basename "$f"): bad checksum refused by default" ||
    { not_ok "corpus $(basename "$f"): bad checksum refused by default"; diag "$out"; }
done
is "corpus dfvfs chain: with -B the child reads the merged disk" \
  "$("$DT" -r -B "$chain_c" cat | sha)" c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25
like "corpus dfvfs chain: the parent is found by name" "$("$DT" -r -B "$chain_c" info)" "has_parent=1"
orphan=$(corpus_file vhd/dfvfs-fat-orphan/fat-differential.vhd)
out=$("$DT" -r "$orphan" cat 2>&1 >/dev/null)
like "corpus fat-differential.vhd: missing parent named in the error" "$out" \
  "fat-differential.vhd: parent image .*not found.*W2ru .*fat-parent\.vhd"

# ---- 2. qemu-made images: our reads equal qemu's and libvhdi's ----------
head -c 3000000 /dev/urandom > "$W/rnd"
truncate -s 40M "$W/src.raw"
dd if="$W/rnd" of="$W/src.raw" bs=1 seek=1000000 conv=notrunc status=none
dd if="$W/rnd" of="$W/src.raw" bs=512 seek=60000 count=3000 conv=notrunc status=none
for sub in dynamic fixed; do
  for sz in 5M 33M 40M; do
    img=$W/q-$sub-$sz.vhd
    if [ $sz = 40M ]; then
      qemu-img convert -f raw -O vpc -o subformat=$sub "$W/src.raw" "$img"
    else
      qemu-img create -q -f vpc -o subformat=$sub "$img" $sz
      qemu-io -f vpc -c 'write -P 0x41 0 1M' -c 'write -P 0x42 2097000 5000' \
        -c 'write -P 0x43 4000256 512' "$img" >/dev/null
    fi
    qraw "$img" "$W/q.raw"
    is "qemu $sub $sz: sha equals qemu-img convert" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/q.raw")"
    is "qemu $sub $sz: size equals qemu's" "$(size_of "$img")" "$(stat -c %s "$W/q.raw")"
    is "qemu $sub $sz: libvhdi reads the same" "$(pysha "$img")" "$(fsha "$W/q.raw")"
  done
done
sz=$(size_of "$W/q-dynamic-33M.vhd")
is "qemu dynamic 33M: map shows the two allocated blocks, then a hole" \
  "$("$DT" -r "$W/q-dynamic-33M.vhd" map | tr '\n' ' ')" "0 4194304 0 4194304 $((sz - 4194304)) 3 "

# ---- 3. writes: dynamic and fixed, against a model ---------------------
for sub in dynamic fixed; do
  img=$W/w-$sub.vhd
  cp "$W/q-$sub-33M.vhd" "$img"
  sz=$(size_of "$img")
  qraw "$img" "$W/model.raw"
  gen_script "$W/s-$sub" 7 "$sz" 40 20000 1 zeroes
  "$PY" "$MK" model "$W/model.raw" "$W/s-$sub"
  check "write $sub: random writes, zeroes, flushes" "$DT" "$img" script "$W/s-$sub"
  is "write $sub: our reads equal the model" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/model.raw")"
  qraw "$img" "$W/q.raw"
  is "write $sub: qemu-img convert equals the model" "$(fsha "$W/q.raw")" "$(fsha "$W/model.raw")"
  check "write $sub: qemu-img check/info accept the image" qcheck "$img"
  check "write $sub: vhdiinfo opens it" vhdiinfo "$img"
  is "write $sub: libvhdi reads the model" "$(pysha "$img")" "$(fsha "$W/model.raw")"
  [ $sub = dynamic ] && check "write $sub: structure clean (footers, BAT, blocks)" "$PY" "$MK" check "$img"
done
# Write whole new blocks into an empty image, then a copy under ASan.
img=$W/w-new.vhd
qemu-img create -q -f vpc -o subformat=dynamic "$img" 20M
sz=$(size_of "$img")
truncate -s "$sz" "$W/model2.raw"
gen_script "$W/s-new" 11 "$sz" 25 9000 512
"$PY" "$MK" model "$W/model2.raw" "$W/s-new"
cp "$img" "$W/w-new-san.vhd"
check "write new blocks: script" "$DT" "$img" script "$W/s-new"
is "write new blocks: reads equal the model" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/model2.raw")"
qraw "$img" "$W/q.raw"
is "write new blocks: qemu equals the model" "$(fsha "$W/q.raw")" "$(fsha "$W/model2.raw")"
check "write new blocks: structure clean" "$PY" "$MK" check "$img"
check "write new blocks (ASan build): script" "$DTSAN" "$W/w-new-san.vhd" script "$W/s-new"
is "write new blocks (ASan build): same file as the normal build" "$(fsha "$W/w-new-san.vhd")" "$(fsha "$img")"
# Zero: unallocated ranges of a dynamic disk are already zero (fast).
alloc0=$("$DT" -r "$img" info | sed -n 's/^allocated_bytes=//p')
hole=$("$DT" -r "$img" map | awk '$3==3 {print $1, $2; exit}')
set -- $hole
check "zero fast over an unallocated range succeeds" "$DT" "$img" zero "$1" "$2" fast
is "zero over an unallocated range allocates nothing" \
  "$("$DT" -r "$img" info | sed -n 's/^allocated_bytes=//p')" "$alloc0"
out=$("$DT" "$img" zero 0 4096 fast 2>&1)
like "zero fast over allocated data is refused (ENOTSUP)" "$out" "not supported|Operation not supported"
# Read-only opens never write.
before=$(fsha "$img")
check_fail "read-only open refuses writes" "$DT" -r "$img" write 0 "$W/rnd"
"$DT" -r "$img" cat >/dev/null; "$DT" -r "$img" map >/dev/null
is "read-only open left the file byte-identical" "$(fsha "$img")" "$before"

# ---- 4. crash consistency ----------------------------------------------
img=$W/crash.vhd
qemu-img create -q -f vpc -o subformat=dynamic "$img" 64M
sz=$(size_of "$img"); truncate -s "$sz" "$W/model3.raw"
gen_script "$W/s-crash" 5 "$sz" 20 9000 1
"$PY" "$MK" model "$W/model3.raw" "$W/s-crash"
{ cat "$W/s-crash"; echo "w 9000000 70000 77"; echo "k"; } > "$W/s-crash-k"
printf 'w 9000000 70000 77\n' > "$W/s-k"; "$PY" "$MK" model "$W/model3.raw" "$W/s-k"
("$DT" "$img" script "$W/s-crash-k") >/dev/null 2>&1
check "kill -9 after writes: image is structurally clean" "$PY" "$MK" check "$img"
is "kill -9 after writes: every returned write is there" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/model3.raw")"
check "kill -9 after writes: qemu accepts it" qcheck "$img"
# Lose the footer at the end (as if its write never reached the disk): the
# copy at offset 0 is used, and the next allocation writes a new end footer.
truncate -s -512 "$img"
like "lost end footer: opens from the copy at offset 0" "$("$BIN/dism-imageinfo" "$img")" "copy at offset 0"
is "lost end footer: same data" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/model3.raw")"
hole=$("$DT" -r "$img" map | awk '$3==3 {print $1; exit}')
printf 'w %d 5000 78\nf\n' $((hole + 1000)) > "$W/s-k2"; "$PY" "$MK" model "$W/model3.raw" "$W/s-k2"
check "lost end footer: a new block can be written" "$DT" "$img" script "$W/s-k2"
check "lost end footer: structure clean again" "$PY" "$MK" check "$img"
is "lost end footer: data equals the model" "$("$DT" -r "$img" cat | sha)" "$(fsha "$W/model3.raw")"

# ---- 5. differencing ---------------------------------------------------
D=$W/diff; mkdir -p "$D/sub"
P=$D/parent.vhd
qemu-img create -q -f vpc -o subformat=dynamic "$P" 9M
qemu-io -f vpc -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 5M 100k' -c 'write -P 0x22 8M 4096' "$P" >/dev/null
psha=$(fsha "$P")
qraw "$P" "$D/parent.raw"
C=$D/child.vhd
"$PY" "$MK" diff "$C" "$P"
check "diff: child structure clean" "$PY" "$MK" check "$C"
is "diff: empty child reads as its parent" "$("$DT" -r "$C" cat | sha)" "$(fsha "$D/parent.raw")"
is "diff: libvhdi (set_parent) agrees" "$(pysha "$C" "$P")" "$(fsha "$D/parent.raw")"
info=$("$DT" -r "$C" info)
like "diff: info says differencing with the recorded parent" "$info" "subtype=differencing.*parent=\.\\\\parent\.vhd.*has_parent=1"
is "diff: map of an empty child is the parent's map" "$("$DT" -r "$C" map)" "$("$DT" -r "$P" map)"
sz=$(size_of "$C")
cp "$D/parent.raw" "$D/model.raw"
gen_script "$D/s-al" 3 "$sz" 25 20000 4096
"$PY" "$MK" model "$D/model.raw" "$D/s-al"
check "diff: 4 KiB-aligned writes to the child" "$DT" "$C" script "$D/s-al"
is "diff: child reads the model" "$("$DT" -r "$C" cat | sha)" "$(fsha "$D/model.raw")"
is "diff: libvhdi (set_parent) reads the model" "$(pysha "$C" "$P")" "$(fsha "$D/model.raw")"
# libvhdi 20210425 treats a bitmap byte as one unit, so unaligned writes
# are checked against the model only.
gen_script "$D/s-un" 4 "$sz" 30 7000 1
"$PY" "$MK" model "$D/model.raw" "$D/s-un"
check "diff: unaligned writes (sub-sector, merged with the parent)" "$DT" "$C" script "$D/s-un"
is "diff: child reads the model after unaligned writes" "$("$DT" -r "$C" cat | sha)" "$(fsha "$D/model.raw")"
check "diff: structure clean after writes" "$PY" "$MK" check "$C"
is "diff: parent is byte-identical after child writes" "$(fsha "$P")" "$psha"
# A grandchild over the written child.
G=$D/grand.vhd
"$PY" "$MK" diff "$G" "$C" --locators W2ku
is "diff: grandchild (W2ku only) reads the child" "$("$DT" -r "$G" cat | sha)" "$(fsha "$D/model.raw")"
# Each locator kind alone, from another folder, and the name alone.
for loc in W2ru W2ku Wi2r Wi2k; do
  case $loc in *r*) cd_=$D/sub ;; *) cd_=$D ;; esac   # relative ones from a subfolder
  "$PY" "$MK" diff "$cd_/c-$loc.vhd" "$P" --locators $loc --name nothere.vhd
  is "diff: locator $loc alone finds the parent" "$("$DT" -r "$cd_/c-$loc.vhd" cat | sha)" "$(fsha "$D/parent.raw")"
done
"$PY" "$MK" diff "$D/c-name.vhd" "$P" --locators ""
is "diff: no locators, the parent name beside the child" "$("$DT" -r "$D/c-name.vhd" cat | sha)" "$(fsha "$D/parent.raw")"
# Refusals: a loop, a wrong parent id, a missing parent.
"$PY" "$MK" loop "$D/loopA.vhd" "$D/loopB.vhd" 4194304
out=$("$DT" -r "$D/loopA.vhd" info 2>&1)
like "diff: parent loop refused" "$out" "loopA\.vhd.*loop"
"$PY" "$MK" diff "$D/wrongid.vhd" "$P" --parent-id 01234567-89ab-cdef-0123-456789abcdef --size "$sz" --name parent.vhd
puid=$("$PY" "$MK" uid "$P")
out=$("$DT" -r "$D/wrongid.vhd" info 2>&1)
like "diff: wrong parent id refused, naming both files and ids" "$out" \
  "wrongid\.vhd: parent .*parent\.vhd has unique id $puid, but .*wrongid\.vhd expects parent id 01234567-89ab-cdef-0123-456789abcdef"
"$PY" "$MK" diff "$D/orphan.vhd" "$D/missing-parent.vhd" --parent-id 01234567-89ab-cdef-0123-456789abcdef --size "$sz"
out=$("$DT" -r "$D/orphan.vhd" info 2>&1)
like "diff: missing parent names the child and the paths tried" "$out" \
  "orphan\.vhd: parent image .*not found; tried W2ru .*missing-parent\.vhd"

# ---- 6. threads: concurrent unaligned writes on shared blocks ----------
for b in "$BUILD" "$SAN_BUILD"; do
  img=$W/th-$b.vhd
  qemu-img create -q -f vpc -o subformat=dynamic "$img" 24M
  check "threads ($b): dynamic, 8 writers on the same blocks" "$ROOT/$b/tests/test-vhd-threads" "$img" 8 300
  check "threads ($b): dynamic image structure clean" "$PY" "$MK" check "$img"
  "$PY" "$MK" diff "$W/thc-$b.vhd" "$P"
  check "threads ($b): differencing child, 8 writers" "$ROOT/$b/tests/test-vhd-threads" "$W/thc-$b.vhd" 8 300
  check "threads ($b): differencing child structure clean" "$PY" "$MK" check "$W/thc-$b.vhd"
done
is "threads: the parent is still untouched" "$(fsha "$P")" "$psha"

# ---- 7. malformed images (normal and ASan builds) ----------------------
M=$W/bad; mkdir -p "$M"
"$PY" "$MK" dyn "$M/good.vhd" 1048576 4096
printf 'w 0 5000 1\nw 300000 9000 2\nw 1040000 8576 3\n' > "$M/s"
"$DT" "$M/good.vhd" script "$M/s"
qemu-img create -q -f vpc -o subformat=fixed "$M/goodfixed.vhd" 64K
bad_cases=(
  "trunc-tiny|too small for a VHD|truncate -s 300"
  "trunc-block|BAT entry [0-9]+ points past the end of the file|truncate -s -5000"
  "bat-past-eof|BAT entry 1 points past the end of the file|$PY $MK set @ bat.1 0x100000"
  "bat-overlap|overlaps the VHD metadata|$PY $MK set @ bat.1 1"
  "footer-csum|bad VHD footer checksum \(expected 0x[0-9a-f]+, found 0x12345678\)|$PY $MK set @ footer.checksum 0x12345678"
  "header-csum|bad VHD dynamic header checksum \(expected 0x[0-9a-f]+, found 0x00000007\)|$PY $MK set @ header.checksum 7"
  "blocksize-odd|unsupported block size 12345|$PY $MK set @ header.block_size 12345"
  "blocksize-huge|unsupported block size 2147483648|$PY $MK set @ header.block_size 0x80000000"
  "table-past-eof|BAT \(offset 99999999999, [0-9]+ entries\) extends past the end|$PY $MK set @ header.table_offset 99999999999"
  "table-wrap|BAT \(offset [0-9]+, [0-9]+ entries\) extends past the end|$PY $MK set @ header.table_offset 0xfffffffffffffff0"
  "few-entries|BAT has 1 entries but the virtual size|$PY $MK set @ header.max_entries 1"
  "header-past-eof|dynamic header offset [0-9]+ is outside the file|$PY $MK set @ footer.data_offset 0x7fffffffffffffff"
  "type-bad|unsupported VHD disk type 9|$PY $MK set @ footer.type 9"
  "size-huge|BAT has [0-9]+ entries but the virtual size|$PY $MK set @ footer.cur_size 0xffffffffffffff00"
  "fixed-trunc|fixed VHD is truncated|FIXED $PY $MK set @ footer.cur_size 0x100000"
  "no-footer|not a VHD: no 'conectix' footer|FIXED truncate -s -600"
)
# An old Virtual PC 511-byte footer is accepted.
head -c -1 "$M/goodfixed.vhd" > "$M/footer511.vhd"
is "511-byte footer: reads like the 512-byte one" "$("$DT" -r "$M/footer511.vhd" cat | sha)" "$("$DT" -r "$M/goodfixed.vhd" cat | sha)"
for tool in "$DT" "$DTSAN"; do
  tag=$([ "$tool" = "$DTSAN" ] && echo "ASan" || echo "normal")
  for c in "${bad_cases[@]}"; do
    IFS='|' read -r name re cmd <<<"$c"
    f=$M/$name.vhd
    if [[ $cmd == FIXED* ]]; then cp "$M/goodfixed.vhd" "$f"; cmd=${cmd#FIXED }; else cp "$M/good.vhd" "$f"; fi
    if [[ $cmd == *@* ]]; then ${cmd//@/$f} >/dev/null; else $cmd "$f"; fi
    out=$("$tool" -r -F vhd "$f" cat 2>&1 >/dev/null); rc=$?
    if [ $rc -eq 1 ] && [[ $out =~ $f:\ .*$re ]] && [[ $out != *AddressSanitizer* && $out != *"runtime error"* ]]; then
      ok "malformed ($tag) $name: clear error naming the file"
    else
      not_ok "malformed ($tag) $name: clear error naming the file"; diag "rc=$rc"; diag "$out"
    fi
  done
  # Forensic mode reads a bad checksum; a bad end footer alone falls back to the copy.
  f=$M/footer-csum.vhd
  is "malformed ($tag) footer-csum: -B reads it" "$("$tool" -r -B "$f" cat | sha)" "$("$DT" -r "$M/good.vhd" cat | sha)"
  cp "$M/good.vhd" "$M/endonly.vhd"
  printf '\x01' | dd of="$M/endonly.vhd" bs=1 seek=$(( $(stat -c %s "$M/endonly.vhd") - 512 + 100 )) conv=notrunc status=none
  is "malformed ($tag) bad end footer only: the copy at 0 is used" \
    "$("$tool" -r "$M/endonly.vhd" cat | sha)" "$("$DT" -r "$M/good.vhd" cat | sha)"
done
