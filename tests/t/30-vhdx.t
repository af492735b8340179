#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# VHDX backend (nbd-server/engine/vhdx.c, vhdx-log.c) driven through
# disk-tool: the corpus against the MANIFEST (dirty logs replayed in memory
# and on disk), qemu-made images against qemu-img and libvhdi, the write
# paths against a model file and qemu-img check, 4Kn and differencing images
# made by tests/lib/mkvhdx.py, crashes (kill -9), and malformed images (also
# under ASan; the ASan build is $SAN, see tests/lib/tap.sh).
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-img qemu-io sha256sum cmp gzip bzip2
need_file "$TBIN/disk-tool" "$TBIN/test-vhdx-threads" "$PY" "$SAN/tests/disk-tool" \
  "$SAN/tests/test-vhdx-threads"
"$PY" -c 'import pyvhdi' 2>/dev/null || { not_ok "python3 module pyvhdi is missing (run tests/deps.sh)"; exit 1; }

DT=$TBIN/disk-tool
DTSAN=$SAN/tests/disk-tool
MK="$PY $ROOT/tests/lib/mkvhdx.py"
W=$TMPD/w
mkdir -p "$W"
# psha: sha256 of stdin (python's hashlib is about twice as fast as sha256sum).
psha() {
  "$PY" -c '
import hashlib, sys
h = hashlib.sha256(); r = sys.stdin.buffer
while True:
    b = r.read(4 << 20)
    if not b: break
    h.update(b)
print(h.hexdigest())'
}
fsha() { sha256sum "$1" | cut -d' ' -f1; }
# pysha IMG [PARENT]: the whole disk as libvhdi reads it.
pysha() {
  "$PY" "$ROOT/tests/lib/vhdi-sha256.py" "$@"
}
ourcat() { "$DT" -r "$1" cat; }
# mkscript SIZE SEED BS OUT: random writes/zeroes/trims (and flushes) inside
# SIZE.  Trims cover whole BS blocks: partial-block trims are hints a VHDX
# ignores, while the raw model file would punch them.
mkscript() {
  "$PY" "$ROOT/tests/lib/vhdx-write-script.py" "$1" "$2" "$3" > "$4"
}

# ---- corpus ----------------------------------------------------------------
declare -A WANT=(
  [vhdx/dissect-win10-dynamic.vhdx]=8e2b5e9265d694b42b81819e3bff29770eff4ed0f4f9f311693ff3dbdc93efac
  [vhdx/dissect-win10-fixed.vhdx.gz]=bc0be4623b15aa84216fb31ba24e3b621ec7f1c72d198c990ac0eced222d9f62
  [vhdx/discutils-win10-dirty-log-1G.vhdx.gz]=3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e
  [vhdx/discutils-win10-swap-10G.vhdx.gz]=60dd30b4c74361427d1089510cabb36e2eeda0cc4747f467ea43173acd358c49
  [vhdx/discutils-win10-xfs5-10G.vhdx.gz]=edc5d630b2da0ddb08992afb58ded06ffb56b884e184b4974fda16e31b7e6817
  [vhdx/discutils-win10-lvm2-10G-unmapped.vhdx.gz]=f7dc6812a3b12a35f3ec895ce981bd59ff4558270fc80cd812c9cd522bff1295
  [vhdx/qemu-hyperv2012-dynamic-1G.vhdx.bz2]=d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478
  [vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2]=179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f
  [vhdx/qemu-disk2vhd-256M.vhdx.bz2]=96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a
)
DIRTY=(vhdx/discutils-win10-dirty-log-1G.vhdx.gz vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2)
declare -A IMG BEFORE
for rel in "${!WANT[@]}"; do IMG[$rel]=$(corpus_file "$rel"); done
for rel in "${DIRTY[@]}"; do BEFORE[$rel]=$(fsha "${IMG[$rel]}"); done
# Two hashing lanes (10 GiB disks take ~9 s each); each lane writes name=sha.
lane() {
  local rel
  for rel in "$@"; do echo "$rel=$(ourcat "${IMG[$rel]}" | psha)"; done
}
lane vhdx/discutils-win10-swap-10G.vhdx.gz vhdx/discutils-win10-xfs5-10G.vhdx.gz \
     vhdx/dissect-win10-dynamic.vhdx vhdx/dissect-win10-fixed.vhdx.gz \
     vhdx/qemu-disk2vhd-256M.vhdx.bz2 > "$W/lane1" 2>&1 &
L1=$!
lane vhdx/discutils-win10-lvm2-10G-unmapped.vhdx.gz vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2 \
     vhdx/discutils-win10-dirty-log-1G.vhdx.gz vhdx/qemu-hyperv2012-dynamic-1G.vhdx.bz2 > "$W/lane2" 2>&1 &
L2=$!
wait $L1 $L2
for rel in $(printf '%s\n' "${!WANT[@]}" | sort); do
  got=$(grep "^$rel=" "$W/lane1" "$W/lane2" -h | cut -d= -f2)
  is "corpus $rel: full read matches the MANIFEST" "$got" "${WANT[$rel]}"
done
for rel in "${DIRTY[@]}"; do
  is "corpus $rel: read-only replay left the file byte-identical" "$(fsha "${IMG[$rel]}")" "${BEFORE[$rel]}"
  like "corpus $rel: info reports the in-memory replay" "$("$DT" -r "${IMG[$rel]}" info)" \
    'notes=log replayed in memory \([0-9]+ entries\)'
done
like "corpus dissect dynamic: creator string" "$("$DT" -r "${IMG[vhdx/dissect-win10-dynamic.vhdx]}" info)" \
  'creator=Microsoft Windows 10\.0\.18363\.0'
like "corpus dissect fixed: subtype fixed, 2 MiB blocks" "$("$DT" -r "${IMG[vhdx/dissect-win10-fixed.vhdx.gz]}" info)" \
  'subtype=fixed.*block_size=2097152'

# Read-write open of a copy replays the log into the file like Windows.
rel=vhdx/discutils-win10-dirty-log-1G.vhdx.gz
cp "${IMG[$rel]}" "$W/d1.vhdx"
check "dirty 1G: read-write open replays to disk" "$DT" "$W/d1.vhdx" flush
check "dirty 1G: qemu-img check clean after our replay" qemu-img check -q "$W/d1.vhdx"
qemu-img convert -O raw "$W/d1.vhdx" "$W/d1.raw"
is "dirty 1G: qemu reads the replayed raw from our file" "$(fsha "$W/d1.raw")" "${WANT[$rel]}"
rm -f "$W/d1.raw"
like "dirty 1G: reopened, the log is clean" "$("$DT" -r "$W/d1.vhdx" info)" 'notes=log clean'
rm -f "$W/d1.vhdx"
rel=vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2
cp "${IMG[$rel]}" "$W/d2.vhdx"; cp "${IMG[$rel]}" "$W/d2q.vhdx"
check "dirty 10G: read-write open replays to disk" "$DT" "$W/d2.vhdx" flush
check "dirty 10G: qemu-img check clean after our replay" qemu-img check -q "$W/d2.vhdx"
qemu-img check -q -r all "$W/d2q.vhdx" >/dev/null 2>&1
check "dirty 10G: our on-disk replay equals qemu's" qemu-img compare -q "$W/d2.vhdx" "$W/d2q.vhdx"
rm -f "$W/d2.vhdx" "$W/d2q.vhdx"

# The orphan checkpoint: its parent was never published.
orphan=$(corpus_file vhdx/dissect-win10-differencing-orphan.avhdx.gz)
out=$("$DT" -r "$orphan" info 2>&1); rc=$?
[ $rc -ne 0 ] && [[ $out == *"no parent found"* ]] && \
  [[ $out == *"Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx"* ]] && \
  [[ $out == *"dissect-win10-differencing-orphan.avhdx"* ]] && [[ $out == *"No such file"* ]] \
  && ok "orphan avhdx: missing-parent error names child and parent" \
  || { not_ok "orphan avhdx: missing-parent error names child and parent"; diag "$out"; }
rm -rf "$TMPD/corpus"   # only the decompressed copies; never the corpus itself

# ---- qemu-made images: reads, writes --------------------------------------
# raw with data at scattered places and holes
mkraw() {  # mkraw SIZE OUT
  truncate -s "$1" "$2"
  local s=$(( $(stat -c %s "$2") / 1048576 ))
  for mb in 0 3 $((s / 3)) $((s / 2 + 1)) $((s - 2)); do
    head -c 1572864 /dev/urandom | dd of="$2" bs=1M seek="$mb" conv=notrunc status=none
  done
}
for cfg in "dynamic 1M 64M" "dynamic 8M 64M" "dynamic 32M 96M" "dynamic 256M 600M" \
           "fixed 1M 32M" "fixed 8M 64M"; do
  set -- $cfg; sub=$1 bs=$2 size=$3
  name="qemu $sub block_size=$bs"
  img=$W/q.vhdx; raw=$W/q.raw
  mkraw "$size" "$raw"
  qemu-img convert -f raw -O vhdx -o subformat=$sub,block_size=$bs "$raw" "$img"
  is "$name: our read equals the source raw" "$(ourcat "$img" | psha)" "$(psha < "$raw")"
  is "$name: libvhdi agrees" "$(pysha "$img")" "$(psha < "$raw")"
  like "$name: info" "$("$DT" -r "$img" info)" "subtype=$sub"
  mkscript "$(stat -c %s "$raw")" "${#bs}${#size}7" $(( ${bs%M} << 20 )) "$W/s.txt"
  "$DT" "$raw" script "$W/s.txt"
  if out=$("$DT" "$img" script "$W/s.txt" 2>&1); then ok "$name: write script"; else not_ok "$name: write script"; diag "$out"; fi
  check "$name: qemu-img check clean after our writes" qemu-img check -q "$img"
  qemu-img convert -O raw "$img" "$W/qq.raw"
  check "$name: qemu reads what the model says" cmp "$W/qq.raw" "$raw"
  is "$name: we read what the model says" "$(ourcat "$img" | psha)" "$(psha < "$raw")"
  rm -f "$img" "$raw" "$W/qq.raw"
done

# Zero and trim map to BAT states; FAST_ZERO refuses partial blocks with data.
img=$W/z.vhdx
qemu-img create -q -f vhdx -o block_size=1M "$img" 16M
qemu-io -f vhdx -c "write -P 0x5a 0 16M" "$img" >/dev/null
check "zero fast: whole blocks" "$DT" "$img" zero 1048576 2097152 fast
check_fail "zero fast: a partial block with data is refused" "$DT" "$img" zero 4096 4096 fast
check "trim: whole block" "$DT" "$img" trim 8388608 1048576
is "zero/trim: map shows holes" "$("$DT" -r "$img" map | tr '\n' ' ')" \
  "0 1048576 0 1048576 2097152 3 3145728 5242880 0 8388608 1048576 3 9437184 7340032 0 "
check "zero/trim: qemu-img check clean" qemu-img check -q "$img"
is "zero/trim: content" "$(ourcat "$img" | psha)" "$(qemu-img convert -O raw "$img" "$W/z.raw"; psha < "$W/z.raw")"

# ---- 4Kn (mkvhdx; qemu cannot make or read them) ---------------------------
for bs in 1M 32M; do
  raw=$W/k.raw img=$W/k.vhdx
  mkraw 64M "$raw"
  $MK create "$img" --size 64M --block-size $bs --lss 4096 --data "$raw"
  like "4Kn bs=$bs: 4096-byte logical sectors" "$("$DT" -r "$img" info)" 'logical_sector=4096'
  is "4Kn bs=$bs: read equals the raw" "$(ourcat "$img" | psha)" "$(psha < "$raw")"
  is "4Kn bs=$bs: libvhdi agrees" "$(pysha "$img")" "$(psha < "$raw")"
  mkscript 67108864 41 $(( ${bs%M} << 20 )) "$W/s.txt"
  "$DT" "$raw" script "$W/s.txt"
  check "4Kn bs=$bs: write script" "$DT" "$img" script "$W/s.txt"
  is "4Kn bs=$bs: reads follow the model" "$(ourcat "$img" | psha)" "$(psha < "$raw")"
  is "4Kn bs=$bs: libvhdi reads our writes" "$(pysha "$img")" "$(psha < "$raw")"
done

# ---- differencing ----------------------------------------------------------
D=$W/diff; mkdir -p "$D"
mkraw 32M "$D/base.raw"
qemu-img convert -f raw -O vhdx -o block_size=1M "$D/base.raw" "$D/base.vhdx"
head -c 32M /dev/urandom > "$D/c.raw"
PRESENT="1000:5000,2M:1M,5M:100K,9437184:512,15M:1M,20M:3M"
$MK create "$D/child.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --data "$D/c.raw" --present "$PRESENT"
"$PY" "$ROOT/tests/lib/merge-present.py" "$D" "$PRESENT"
PSUM=$(fsha "$D/base.vhdx")
like "diff: info" "$("$DT" -r "$D/child.vhdx" info)" 'subtype=differencing.*has_parent=1'
is "diff: merged read (bitmap runs + parent)" "$(ourcat "$D/child.vhdx" | psha)" "$(psha < "$D/merged.raw")"
is "diff: libvhdi agrees" "$(pysha "$D/child.vhdx" "$D/base.vhdx")" "$(psha < "$D/merged.raw")"
mkscript 33554432 99 1048576 "$W/s.txt"
"$DT" "$D/merged.raw" script "$W/s.txt"
check "diff: write script" "$DT" "$D/child.vhdx" script "$W/s.txt"
is "diff: reads follow the model" "$(ourcat "$D/child.vhdx" | psha)" "$(psha < "$D/merged.raw")"
is "diff: the parent is byte-identical" "$(fsha "$D/base.vhdx")" "$PSUM"
# ZERO blocks in a child read as zeroes, not the parent (libvhdi differs).
$MK create "$D/zchild.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --zero-blocks 3
is "diff: a ZERO block hides the parent" "$("$DT" -r "$D/zchild.vhdx" read 3145728 1048576 | psha)" \
  "$(head -c 1048576 /dev/zero | psha)"
is "diff: other blocks come from the parent" "$("$DT" -r "$D/zchild.vhdx" read 0 1048576 | psha)" \
  "$(head -c 1048576 "$D/base.raw" | psha)"
# Parent found through absolute_win32_path when relative_path is wrong.
$MK create "$D/abs.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --parent-path "sub/base.vhdx"
check "diff: parent found via absolute_win32_path" "$DT" -r "$D/abs.vhdx" info
# Wrong linkage.
$MK create "$D/bad.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --linkage "{01234567-89ab-cdef-0123-456789abcdef}"
out=$("$DT" -r "$D/bad.vhdx" info 2>&1)
[[ $out == *"bad.vhdx"*"base.vhdx"*"does not match"* ]] && ok "diff: linkage mismatch names both files" \
  || { not_ok "diff: linkage mismatch names both files"; diag "$out"; }
# Missing parent.
mkdir -p "$D/lonely"; cp "$D/child.vhdx" "$D/lonely/"
out=$("$DT" -r "$D/lonely/child.vhdx" info 2>&1)
[[ $out == *"lonely/child.vhdx: no parent found"*"lonely/base.vhdx: not found"* ]] && ok "diff: missing parent names child and tried path" \
  || { not_ok "diff: missing parent names child and tried path"; diag "$out"; }
# A locator path that names the wrong file does not end the search (as in
# Hyper-V): a valid VHDX with another DataWriteGuid or a damaged one is
# passed over for the next path (sub/base.vhdx has other data, so the bytes
# read show the right parent won).  When no path fits, one error names each
# path and why: another DataWriteGuid, missing, raw, VHD, 4Kn, the child.
mkdir -p "$D/sub" "$D/far"
head -c 32M /dev/urandom > "$D/other.raw"
$MK create "$D/sub/base.vhdx" --size 32M --block-size 1M --data "$D/other.raw"
$MK create "$D/sub/bad.vhdx" --size 32M --block-size 1M --data "$D/other.raw"
$MK corrupt "$D/sub/bad.vhdx" rt-both
$MK create "$D/k4.vhdx" --size 32M --block-size 1M --lss 4096
head -c 1M /dev/urandom > "$D/far/raw.img"
$MK create "$D/wrongrel.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --parent-path sub/base.vhdx
$MK create "$D/badrel.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --parent-path sub/bad.vhdx \
  --abs-path 'C:\vms\base.vhdx'
# Only a damaged file: its own error is kept in the list.
$MK create "$D/far/dmg.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" --parent-path ../sub/bad.vhdx \
  --abs-path 'C:\vms\gone.vhdx' --volume-path 'C:\vms\gone.vhdx'
# Every path wrong: another VHDX, nothing, a raw file.
$MK create "$D/far/none.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx" \
  --parent-path ../sub/base.vhdx --abs-path 'C:\vms\missing.vhdx' --volume-path '\\?\Volume{1}\vms\raw.img'
# The expected DataWriteGuid, but 4096-byte sectors (and a VHD parent).
qemu-img create -q -f vpc "$D/far/v.vhd" 32M
$MK create "$D/far/k4.vhdx" --size 32M --block-size 1M --parent-path ../k4.vhdx \
  --linkage "$($MK guid "$D/k4.vhdx")" --abs-path 'C:\vms\v.vhd' --volume-path 'D:\k4.vhdx'
for t in "$DT" "$DTSAN"; do
  tag=$(basename "$(dirname "$(dirname "$t")")")
  # Exit status 0 too, and no sanitizer report on the refusals: under ASan
  # a leaked (rejected) parent fails the run.
  out=$("$t" -r "$D/wrongrel.vhdx" info 2>&1); rc=$?
  [ $rc -eq 0 ] && [[ $out == *"parent=C:\vms\base.vhdx"* ]] && ok "diff: wrong relative_path passed over, absolute_win32_path found ($tag)" \
    || { not_ok "diff: wrong relative_path passed over, absolute_win32_path found ($tag)"; diag "rc=$rc $out"; }
  want=$(psha < "$D/base.raw"; echo rc=0)
  is "diff: the right parent's bytes are read ($tag)" \
    "$("$t" -r "$D/wrongrel.vhdx" cat | psha; echo "rc=${PIPESTATUS[0]}")" "$want"
  is "diff: a damaged candidate is passed over too ($tag)" \
    "$("$t" -r "$D/badrel.vhdx" cat | psha; echo "rc=${PIPESTATUS[0]}")" "$want"
  out=$("$t" -r "$D/far/none.vhdx" info 2>&1); rc=$?
  [ $rc -eq 1 ] && [[ $out != *Sanitizer* ]] && [[ $out == *"far/none.vhdx: no parent found: "* ]] &&
    [[ $out == *'..\sub\base.vhdx -> '*"/far/../sub/base.vhdx: DataWriteGuid {"*"} does not match the expected {"* ]] &&
    [[ $out == *'C:\vms\missing.vhdx -> '*"/far/missing.vhdx: not found"* ]] &&
    [[ $out == *'\vms\raw.img -> '*"/far/raw.img: a raw image, not VHDX"* ]] &&
    ok "diff: no locator fits: one error naming each path and why ($tag)" \
    || { not_ok "diff: no locator fits: one error naming each path and why ($tag)"; diag "rc=$rc $out"; }
  out=$("$t" -r "$D/far/k4.vhdx" info 2>&1); rc=$?
  [ $rc -eq 1 ] && [[ $out != *Sanitizer* ]] && [[ $out == *"/far/../k4.vhdx: 4096-byte logical sectors, the child has 512"* ]] &&
    [[ $out == *"/far/v.vhd: a vhd image, not VHDX"* ]] && [[ $out == *"/far/k4.vhdx: parent loop"* ]] &&
    ok "diff: sector size, format and self-parent each named ($tag)" \
    || { not_ok "diff: sector size, format and self-parent each named ($tag)"; diag "rc=$rc $out"; }
  out=$("$t" -r "$D/far/dmg.vhdx" info 2>&1); rc=$?
  [ $rc -eq 1 ] && [[ $out != *Sanitizer* ]] && [[ $out == *"far/dmg.vhdx: no parent found: "*"/sub/bad.vhdx: both region tables are invalid"* ]] &&
    [ "$(grep -o 'far/gone.vhdx: not found' <<< "$out" | wc -l)" -eq 1 ] &&
    ok "diff: a damaged candidate's own error is listed, a repeated path once ($tag)" \
    || { not_ok "diff: a damaged candidate's own error is listed, a repeated path once ($tag)"; diag "rc=$rc $out"; }
done
# Loop: a -> b -> a.
$MK create "$D/a.vhdx" --size 32M --block-size 1M --parent-path b.vhdx --linkage "{01234567-89ab-cdef-0123-456789abcdef}"
$MK create "$D/b.vhdx" --size 32M --block-size 1M --parent "$D/a.vhdx"
for t in "$DT" "$DTSAN"; do
  out=$("$t" -r "$D/a.vhdx" info 2>&1); rc=$?
  [ $rc -ne 0 ] && [[ $out == *"parent loop"* ]] && [[ $out == *".vhdx"* ]] && ok "diff: parent loop refused ($(basename "$(dirname "$(dirname "$t")")"))" \
    || { not_ok "diff: parent loop refused ($t)"; diag "$out"; }
done

# ---- threads: racing allocations (dynamic and differencing), under ASan too
qemu-img create -q -f vhdx -o block_size=1M "$W/t.vhdx" 64M
check "threads: concurrent writes/reads on a dynamic image" "$TBIN/test-vhdx-threads" "$W/t.vhdx"
check "threads: qemu-img check clean" qemu-img check -q "$W/t.vhdx"
$MK create "$D/tc.vhdx" --size 32M --block-size 1M --parent "$D/base.vhdx"
check "threads: differencing child under ASan" "$SAN/tests/test-vhdx-threads" "$D/tc.vhdx"
is "threads: the parent is byte-identical" "$(fsha "$D/base.vhdx")" "$PSUM"

# ---- generated dirty log ----------------------------------------------------
mkraw 16M "$W/l.raw"
dd if=/dev/zero of="$W/l.raw" bs=4096 seek=7 count=1 conv=notrunc status=none
$MK create "$W/l.vhdx" --size 16M --block-size 1M --data "$W/l.raw" --dirty-log --log-extend 2M
before=$(fsha "$W/l.vhdx")
is "mkvhdx dirty log: read-only replay gives the data" "$(ourcat "$W/l.vhdx" | psha)" "$(psha < "$W/l.raw")"
is "mkvhdx dirty log: file untouched" "$(fsha "$W/l.vhdx")" "$before"
cp "$W/l.vhdx" "$W/lq.vhdx"
qemu-img check -q -r all "$W/lq.vhdx" >/dev/null 2>&1
qemu-img convert -O raw "$W/lq.vhdx" "$W/lq.raw"
check "mkvhdx dirty log: qemu's replay agrees" cmp "$W/lq.raw" "$W/l.raw"
check "mkvhdx dirty log: our read-write replay" "$DT" "$W/l.vhdx" flush
check "mkvhdx dirty log: qemu-img check clean" qemu-img check -q "$W/l.vhdx"
is "mkvhdx dirty log: file extended to LastFileOffset" "$(stat -c %s "$W/l.vhdx")" "$(( $(stat -c %s "$W/lq.vhdx") + 2097152 ))"

# ---- crash: kill -9 in the middle of a session ------------------------------
for variant in flushed unflushed; do
  img=$W/c.vhdx raw=$W/c.raw
  qemu-img create -q -f vhdx -o block_size=1M "$img" 32M
  truncate -s 32M "$raw"
  printf 'w 0 100000 1\nw 5000000 2000000 2\nz 8388608 2097152\nw 12000000 777 3\n' > "$W/k1.txt"
  "$DT" "$raw" script "$W/k1.txt"
  { cat "$W/k1.txt"; [ $variant = flushed ] && echo f; echo "w 20000000 1000 4"; echo "w 26214400 1048576 5"; echo k; } > "$W/k2.txt"
  ( "$DT" "$img" script "$W/k2.txt" >/dev/null 2>&1 & wait ) 2>/dev/null   # ends with kill -9
  check "crash $variant: opens read-only (log replayed in memory)" "$DT" -r "$img" info
  ourcat "$img" > "$W/after.raw"
  if [ $variant = flushed ]; then
    check "crash flushed: flushed writes survived" cmp -n 20000000 "$W/after.raw" "$raw"
  fi
  cp "$img" "$W/cq.vhdx"
  qemu-img check -q -r all "$W/cq.vhdx" >/dev/null 2>&1
  qemu-img convert -O raw "$W/cq.vhdx" "$W/cq.raw"
  check "crash $variant: qemu's replay of our log agrees with ours" cmp "$W/cq.raw" "$W/after.raw"
  check "crash $variant: read-write reopen" "$DT" "$img" flush
  check "crash $variant: qemu-img check clean" qemu-img check -q "$img"
  qemu-img convert -O raw "$img" "$W/cq.raw"
  check "crash $variant: same data after our replay" cmp "$W/cq.raw" "$W/after.raw"
  rm -f "$img" "$W/cq.vhdx" "$W/cq.raw" "$W/after.raw"
done

# ---- malformed ---------------------------------------------------------------
mkraw 8M "$W/m.raw"
mal() {  # mal WHAT: a fresh image with one corruption
  $MK create "$W/m-$1.vhdx" --size 8M --block-size 1M --data "$W/m.raw"
  $MK corrupt "$W/m-$1.vhdx" "$1"
  echo "$W/m-$1.vhdx"
}
for t in "$DT" "$DTSAN"; do
  tag=$(basename "$(dirname "$(dirname "$t")")")
  for what in hdr1 hdr2 rt1; do
    f=$(mal $what)
    is "malformed $what ($tag): the other copy is used" "$("$t" -r "$f" cat | psha)" "$(psha < "$W/m.raw")"
  done
  for spec in "rt-both:region tables are invalid" "bat-eof:past the end" "meta-required:unknown required metadata" \
              "blocksize:not a power of two" "bat-overlap:overlap"; do
    what=${spec%%:*} msg=${spec#*:}
    f=$(mal $what)
    out=$("$t" -r "$f" info 2>&1); rc=$?
    [ $rc -eq 1 ] && [[ $out == *"m-$what.vhdx"* ]] && [[ $out == *"$msg"* ]] && ok "malformed $what ($tag): clear error" \
      || { not_ok "malformed $what ($tag): clear error"; diag "rc=$rc $out"; }
  done
  f=$(mal hdr1); $MK corrupt "$f" hdr2
  out=$("$t" -r "$f" info 2>&1); rc=$?
  [ $rc -eq 1 ] && [[ $out == *"both VHDX headers are invalid"* ]] && ok "malformed both headers ($tag): clear error" \
    || { not_ok "malformed both headers ($tag)"; diag "$out"; }
done
# A dirty log under ASan, both ways.
$MK create "$W/sl.vhdx" --size 8M --block-size 1M --data "$W/m.raw" --dirty-log
is "asan: dirty log replayed in memory" "$("$DTSAN" -r "$W/sl.vhdx" cat | psha)" "$(psha < "$W/m.raw")"
check "asan: dirty log replayed to disk, then writes" "$DTSAN" "$W/sl.vhdx" script "$W/s.txt"

exit 0
