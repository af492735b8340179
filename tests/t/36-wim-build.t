#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The metadata-only volume of a WIM image (dism_wim_build, issue 12): built
# by tests/drivers/wim-build from WIMs made here (an NTFS volume with
# streams, ACLs, attributes, reparse points, hard links, DOS names,
# Unicode and case-distinct names, times, empty, small, large, duplicate and
# sparse files, captured LZX, XPRESS, none and LZMS solid; a tree of many
# small files) and from the corpus WIMs.  Each volume: ntfsfix -n clean;
# the map sane (extents sorted, inside the volume, each one the runlist of
# its file: ntfsinfo); the data clusters never written (holes in the volume
# file); the volume with every mapped range filled from the WIM (--fill:
# what the server serves) shows, through ntfs-3g, every file's bytes and
# metadata as `wimlib-imagex apply` of the same image into NTFS does; and
# so does the volume served by dism-nbd-server ("wim" format, FUSE file),
# which equals the filled volume byte for byte.
# Then cancel (nothing left), a missing image, a damaged small file.
# needs-root: ntfs-3g mounts, the server's FUSE file
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/ntfs-source.sh"
need_cmd wimlib-imagex mkntfs ntfs-3g ntfsfix ntfsinfo setfattr truncate mountpoint
need_file "$TBIN/wim-build" "$TBIN/wim-map-tool" "$ROOT/tests/lib/ntfsmeta.py" "$BIN/dism-nbd-server" /dev/fuse
NM="$PY $ROOT/tests/lib/ntfsmeta.py"
WB=$TBIN/wim-build
OPTS=streams_interface=xattr,noatime
S=$TMPD/s M=$TMPD/m
mkdir -p "$S" "$M"
tap_cleanup 'mountpoint -q "$S" && umount "$S"; mountpoint -q "$M" && umount "$M"'

# ---- the source volume (as 78-dism-wim-metadata.t, plus data of every size) -----------------
SRC=$TMPD/src.vol
src_extra() {  # run in the volume by ntfs_source_fill, before the times
  mkdir -p "long directory name"
  head -c 300000 /dev/urandom > big-linked.bin; ln big-linked.bin dir/big-link.bin
  setfattr -n system.ntfs_dos_name -v "LONGDI~1" "long directory name"
  echo x > "long directory name/inner file name.dat"
  setfattr -n system.ntfs_dos_name -v "INNERF~1.DAT" "long directory name/inner file name.dat"
  # a DOS-named file whose other name comes first in the walk (ntfs-3g sets a DOS name
  # only while a file has one link: the builder makes the group through that name)
  mkdir -p "a dir" "z dir"; echo linked > "z dir/long linked name.txt"
  setfattr -n system.ntfs_dos_name -v "LONGLI~1.TXT" "z dir/long linked name.txt"
  ln "z dir/long linked name.txt" "a dir/alias.txt"
  : > empty.txt
  head -c 5000000 /dev/urandom > large.bin; cp large.bin large-dup.bin
  for n in 1 100 600 700 900 1000 4095 4096 4097 65537; do head -c $n /dev/urandom > "size-$n.bin"; done
  setfattr -n system.ntfs_object_id -v 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff file.txt
  setfattr -n system.ntfs_object_id -v 0xa0112233445566778899aabbccddeeff dir/sub
}
build_src() {
  truncate -s 96M "$SRC" && mkntfs -F -Q -q -L SRC "$SRC" >/dev/null 2>&1 || return 1
  ntfs-3g -o $OPTS "$SRC" "$S" || return 1
  ntfs_source_fill "$S" src_extra || { umount "$S"; return 1; }
  umount "$S"
}
check "source: an NTFS volume with streams, ACLs, attributes, reparse points, links, DOS names, times, data of every size" build_src

# a tree of many directories and small files (a directory capture, not NTFS)
TREE=$TMPD/tree
mk_tree() {
  $PY - "$TREE" <<'EOF'
import os, sys, random
r = random.Random(7); root = sys.argv[1]
for d in range(120):
    p = os.path.join(root, 'd%03d' % d, 'sub%d' % (d % 7))
    os.makedirs(p, exist_ok=True)
    for f in range(25):
        n = r.choice([0, 5, 200, 800, 3000, 5000, 20000])
        with open(os.path.join(p, 'f%02d.txt' % f), 'wb') as o:
            o.write(r.randbytes(n))
EOF
}
check "a tree of 120 directories, 3000 files" mk_tree

W=$TMPD/w
mkdir -p "$W"
check "capture the volume: LZX (NTFS mode)" wimlib-imagex capture "$SRC" "$W/lzx.wim" Meta --compress=LZX
check "capture the volume: XPRESS, 16 KiB chunks" wimlib-imagex capture "$SRC" "$W/xpress.wim" Meta --compress=XPRESS --chunk-size=16384
check "capture the volume: none" wimlib-imagex capture "$SRC" "$W/none.wim" Meta --compress=none
check "export it as LZMS solid" wimlib-imagex export "$W/lzx.wim" 1 "$W/solid.wim" --solid
check "export the tree as LZMS solid, 64 KiB chunks (many small files in many chunks)" \
  bash -c "wimlib-imagex capture '$TREE' '$W/t.wim' --compress=none >/dev/null && wimlib-imagex export '$W/t.wim' 1 '$W/tree-solid.wim' --solid --solid-chunk-size=65536"
check "capture the tree (LZX) as a second image too" \
  bash -c "wimlib-imagex capture '$TREE' '$W/tree.wim' Tree --compress=LZX && wimlib-imagex append '$SRC' '$W/tree.wim' Meta2"

# ---- build + checks ---------------------------------------------------------------------------
# What legitimately differs from wimlib's apply: the MFT change time (not in
# a WIM: the build's own time).  A sparse file keeps its holes (its zero
# clusters), as wimlib's apply makes them.
filter() {
  $PY - "$1" <<'EOF'
import sys
for l in open(sys.argv[1]):
    p, k, v = l.rstrip('\n').split('\t')
    if k == 'ntfs_times':
        v = v[:48]
    print('%s\t%s\t%s' % (p, k, v))
EOF
}
dump_of() {  # dump_of IMG OUT
  ntfs-3g -o ro,$OPTS "$1" "$M" || return 1
  $NM dump "$M" > "$2"; local rc=$?
  umount "$M"; return $rc
}
# map_sane MAP VOLUME: extents sorted, not overlapping, inside the volume; every mapped
# range a hole of the volume file (never written); each extent on its file's clusters
map_sane() {
  "$TBIN/wim-map-tool" dump "$1" > "$1.txt" || return 1
  $PY - "$1.txt" "$2" <<'EOF'
import os, sys
txt, vol = sys.argv[1], sys.argv[2]
size = os.path.getsize(vol); fd = os.open(vol, os.O_RDONLY)
prev_end = 0; n = 0; bad = []
for l in open(txt):
    f = l.split()
    if f[0] != 'ext':
        continue
    off, ln = int(f[1]), int(f[2]); n += 1
    if off < prev_end: bad.append('overlap/unsorted at %d' % off)
    if off + ln > size: bad.append('outside the volume at %d' % off)
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        d = size
    if d < off + ln: bad.append('written data at %d inside the extent at %d' % (d, off))
    prev_end = off + ln
print('\n'.join(bad[:5]))
sys.exit(1 if bad else 0)
EOF
}
# runlists_match VOLUME MAP: for each file in the map, the clusters of its extents
# (rounded up to clusters) = the clusters of its data runlists (ntfsinfo)
runlists_match() {
  $PY - "$1" "$2.txt" <<'EOF'
import subprocess, sys, collections
vol, txt = sys.argv[1], sys.argv[2]
cs = 4096; want = collections.defaultdict(set); bad = 0
for l in open(txt):
    f = l.split()
    if f[0] == 'image': cs = int(f[f.index('cluster') + 1])
    if f[0] == 'ext':
        off, ln, mft = int(f[1]), int(f[2]), int(f[-1])
        want[mft] |= set(range(off // cs, (off + ln + cs - 1) // cs))
for mft in sorted(want)[:40]:
    out = subprocess.run(['ntfsinfo', '-v', '-i', str(mft), vol], capture_output=True, text=True).stdout
    got = set(); inrl = False
    for l in out.splitlines():
        if 'Runlist:' in l: inrl = True; continue
        f = l.split()
        if inrl and len(f) == 3 and f[1] == '<HOLE>': continue
        if inrl and len(f) == 3 and all(x.startswith('0x') for x in f):
            lcn, n = int(f[1], 16), int(f[2], 16); got |= set(range(lcn, lcn + n))
        else: inrl = False
    if got != want[mft]:
        print('mft %d: map %d clusters, runlists %d' % (mft, len(want[mft]), len(got))); bad = 1
sys.exit(bad)
EOF
}
sizes_right() {  # sizes_right VOLUME PATH SIZE: allocated = rounded, initialized = size, not sparse
  local out; out=$(ntfsinfo -F "$2" "$1" 2>/dev/null) || return 1
  local alloc init flags
  alloc=$(awk '/Allocated size:/ {print $3}' <<<"$out" | tail -1)
  init=$(awk '/Initialized size:/ {print $3}' <<<"$out" | tail -1)
  [ "$alloc" = $(( ($3 + 4095) / 4096 * 4096 )) ] && [ "$init" = "$3" ] ||
    { echo "allocated $alloc initialized $init for size $3"; return 1; }
}

build_and_compare() {  # build_and_compare NAME WIM INDEX
  local name=$1 wim=$2 idx=$3 d=$TMPD/$1
  mkdir -p "$d"
  local out
  out=$("$WB" "$wim" "$idx" $((256 << 20)) "$d/vol" "$d/map" 2>&1)
  is "$name: built" "$?" 0 || { diag "$out"; return; }
  diag "$name: $out"
  like "$name: progress reached 100, never went back" "$out" "progress 100 "
  check "$name: ntfsfix -n clean" ntfsfix -n "$d/vol"
  check "$name: map sane (sorted, inside, never written)" map_sane "$d/map" "$d/vol"
  check "$name: each file's extents = its data runlists (ntfsinfo)" runlists_match "$d/vol" "$d/map"
  check "$name: filled from the WIM through the map" "$WB" --fill "$d/map" "$d/filled"
  check "$name: the filled volume is clean" ntfsfix -n "$d/filled"
  dump_of "$d/filled" "$d/got.dump"
  truncate -s 256M "$d/apply"; mkntfs -F -Q -q "$d/apply" >/dev/null 2>&1
  wimlib-imagex apply "$wim" "$idx" "$d/apply" >/dev/null 2>&1
  dump_of "$d/apply" "$d/exp.dump"
  [ -s "$d/exp.dump" ] || { not_ok "$name: wimlib's apply dumped"; return; }
  is "$name: every file's bytes and metadata = wimlib-imagex apply" \
    "$(diff <(filter "$d/exp.dump") <(filter "$d/got.dump") | head -20)" ""
  # served: the "wim" disk format (volume + map + WIM), read through the FUSE file
  if start_server "srv-$name" --readonly --fuse-file "$d/fuse" "$d/map"; then
    check "$name: served (wim format): the device = the filled volume, byte for byte" cmp "$d/fuse" "$d/filled"
    dump_of "$d/fuse" "$d/srv.dump"
    is "$name: served, mounted with ntfs-3g: every file = wimlib-imagex apply" \
      "$(diff <(filter "$d/exp.dump") <(filter "$d/srv.dump") | head -20)" ""
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
  else
    not_ok "$name: served by dism-nbd-server"; diag "$(cat "$TMPD/srv-$name.log")"
  fi
}
for c in lzx xpress none solid; do
  build_and_compare "$c" "$W/$c.wim" 1
done
build_and_compare tree "$W/tree.wim" 1
build_and_compare tree-solid "$W/tree-solid.wim" 1
build_and_compare tree-img2 "$W/tree.wim" 2
for n in 4096 4097 65537; do
  check "lzx: size-$n.bin allocated rounded up, initialized = its size" sizes_right "$TMPD/lzx/vol" "/size-$n.bin" $n
done
check "lzx: large.bin allocated rounded up, initialized = its size" sizes_right "$TMPD/lzx/vol" /large.bin 5000000
objids() {
  ntfs-3g -o ro,$OPTS "$1" "$M" || return 1
  getfattr -e hex -n system.ntfs_object_id "$M/file.txt" "$M/dir/sub" 2>&1 | grep =
  umount "$M"
}
is "lzx: object ids (a file's 64 bytes, a directory's 16) as wimlib applies them" \
  "$(objids "$TMPD/lzx/filled")" "$(objids "$TMPD/lzx/apply")"
like "  and they are there" "$(objids "$TMPD/lzx/filled")" "=0x00112233.*=0xa0112233"
is "lzx: sparse.bin keeps FILE_ATTRIBUTE_SPARSE_FILE (and its archive bit)" \
  "$(awk -F'\t' '$1 == "/sparse.bin" && $2 == "ntfs_attrib" {print $3}' "$TMPD/lzx/got.dump")" 20020000
like "lzx: sparse.bin: a sparse data attribute, 2 clusters allocated (its 2 non-zero ones), the rest holes" \
  "$(ntfsinfo -v -F /sparse.bin "$TMPD/lzx/vol" 2>/dev/null | tr -s '\t ' ' ' | tr '\n' '|')" \
  "Resident: No\|.* Attribute flags: 0x8000\|.* Data size: 16777216 \(0x1000000\)\| Allocated size: 16777216 \(0x1000000\)\| Initialized size: 16777216 \(0x1000000\)\| Compressed size: 8192 \(0x2000\)\| Runlist:.*<HOLE>.*<HOLE>"
is "lzx: sparse.bin: only its 2 non-zero clusters mapped" \
  "$(mft=$(ntfsinfo -F /sparse.bin "$TMPD/lzx/vol" 2>/dev/null | awk '/^Dumping Inode/ {print $3; exit}')
     awk -v m="$mft" '$1 == "ext" && $NF == m {n++; b += $3} END {print n, b}' "$TMPD/lzx/map.txt")" "2 8192"
for c in lzx solid; do
  is "$c: sparse.bin is sparse as wimlib applies it (sparse yes)" \
    "$(awk -F'\t' '$1 == "/sparse.bin" && $2 == "sparse" {print $3}' "$TMPD/$c/got.dump")" yes
done
like "lzx: data of a duplicate and of hard links mapped once per file (two 5000000 extents, one 300000)" \
  "$(awk '$1 == "ext" {print $3}' "$TMPD/lzx/map.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ',')" "2 5000000,.* 1 300000,|1 300000,.*2 5000000,"

# ---- the corpus WIMs ---------------------------------------------------------------------------
for w in "$CORPUS"/wim/*.wim; do
  n=$(basename "$w" .wim)
  case $n in
    *VerifyFail|*cyclic)  # damaged metadata: refused with the WIM named
      d=$TMPD/c-$n; mkdir -p "$d"
      out=$("$WB" "$w" 1 $((64 << 20)) "$d/vol" "$d/map" 2>&1)
      like "corpus $n: refused, naming the WIM" "$out" "$n.wim"
      check "corpus $n: nothing left behind" test ! -e "$d/vol" -a ! -e "$d/map"
      continue ;;
    *corrupted_file_1)  # a 12-byte file whose SHA-1 does not match: mapped, flagged damaged
      d=$TMPD/c-$n; mkdir -p "$d"
      out=$("$WB" "$w" 1 $((64 << 20)) "$d/vol" "$d/map" 2>&1)
      like "corpus $n: built, the file whose SHA-1 does not match mapped" "$out" "damaged 1 "
      check "corpus $n: ntfsfix -n clean" ntfsfix -n "$d/vol"
      like "corpus $n: its resource flagged damaged (4) in the map" \
        "$("$TBIN/wim-map-tool" dump "$d/map" | awk '$1 == "res" {print $6}' | tr '\n' ' ')" "0x[0-9a-f]*[4-7] "
      out=$("$WB" --fill "$d/map" "$d/filled" 2>&1)
      like "corpus $n: its mapped range does not read, the SHA-1 named" "$out" "SHA-1 did not match"
      continue ;;
    *corrupted_file_2)  # one file's data damaged: built, that file mapped (it reads EIO)
      d=$TMPD/c-$n; mkdir -p "$d"
      out=$("$WB" "$w" 1 $((64 << 20)) "$d/vol" "$d/map" 2>&1)
      like "corpus $n: built, the damaged small file mapped" "$out" "damaged 1 "
      check "corpus $n: ntfsfix -n clean" ntfsfix -n "$d/vol"
      check_fail "corpus $n: its mapped range does not read" "$WB" --fill "$d/map" "$d/filled"
      continue ;;
  esac
  d=$TMPD/c-$n; mkdir -p "$d"
  ok=1
  "$WB" "$w" 1 $((64 << 20)) "$d/vol" "$d/map" >/dev/null 2>"$d/err" || ok=0
  [ $ok = 1 ] && { ntfsfix -n "$d/vol" >/dev/null 2>&1 || ok=0; }
  [ $ok = 1 ] && { map_sane "$d/map" "$d/vol" >/dev/null || ok=0; }
  [ $ok = 1 ] && { "$WB" --fill "$d/map" "$d/filled" >/dev/null || ok=0; }
  [ $ok = 1 ] && dump_of "$d/filled" "$d/got.dump"
  truncate -s 64M "$d/apply"; mkntfs -F -Q -q "$d/apply" >/dev/null 2>&1
  wimlib-imagex apply "$w" 1 "$d/apply" >/dev/null 2>&1 && dump_of "$d/apply" "$d/exp.dump"
  if [ $ok = 1 ] && [ -s "$d/exp.dump" ] && diff -q <(filter "$d/exp.dump") <(filter "$d/got.dump") >/dev/null; then
    ok "corpus $n: built, clean, map sane, = wimlib-imagex apply"
  elif [ $ok = 1 ] && [ ! -s "$d/exp.dump" ] && [ -s "$d/got.dump" ]; then
    ok "corpus $n: built, clean, map sane (wimlib's apply fails on it)"
  else
    not_ok "corpus $n: built, clean, map sane, = wimlib-imagex apply"
    diag "$(cat "$d/err"; diff <(filter "$d/exp.dump") <(filter "$d/got.dump") 2>&1 | head -10)"
  fi
done

# ---- cancel, errors --------------------------------------------------------------------------------
d=$TMPD/cancel; mkdir -p "$d"
out=$("$WB" "$W/tree.wim" 1 $((256 << 20)) "$d/vol" "$d/map" --cancel-at 30 2>&1)
like "cancel during the walk: ECANCELED" "$out" "Operation canceled"
check "cancel: the volume and the map are removed" test ! -e "$d/vol" -a ! -e "$d/map"
out=$("$WB" "$W/lzx.wim" 3 $((256 << 20)) "$d/vol" "$d/map" 2>&1)
like "a missing image: refused, naming the WIM" "$out" "lzx.wim has no image 3"
check "a missing image: nothing left behind" test ! -e "$d/vol" -a ! -e "$d/map"
touch "$d/exists"
out=$("$WB" "$W/lzx.wim" 1 $((256 << 20)) "$d/exists" "$d/map" 2>&1)
like "an existing volume file is not overwritten" "$out" "cannot create the volume file"
check "  and stays" test -e "$d/exists"

