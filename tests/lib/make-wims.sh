# SPDX-License-Identifier: GPL-2.0-or-later
# make-wims.sh - the WIM zoo: WIMs made during a test run, for the
# differential and damage tests (61, 62) and anyone else.  Sourced after
# tap.sh (uses $PY, $ROOT, $TMPD).  Needs wimlib-imagex; the NTFS source
# also mkntfs, ntfs-3g, setfattr (root).
#
#   zoo_tree DIR        the general tree: nested directories, small files of
#                       every size around the 4 KiB / 32 KiB / 64 KiB / 1 MiB
#                       boundaries, large files whose chunks are compressible,
#                       incompressible (stored raw) and zero, empty files and
#                       directories, hard links (groups of 2-10 names),
#                       names that differ only in case, Unicode names (also
#                       outside the BMP, and NFC/NFD twins), a symlink, a
#                       small sparse file.  Deterministic (seeded).
#   zoo_small DIR       "most files small": 3000 files of 0-900 bytes
#                       (resident in the MFT), a few larger ones.
#   zoo_huge DIR        one sparse file of 4 GiB + 4 MiB (a few MiB of real
#                       data at both ends and across the 4 GiB line): its
#                       resource is over 4 GiB, so its chunk table has 8-byte
#                       entries.  Writes DIR.sha256 (python's hashlib: 3 s;
#                       coreutils sha256sum takes 20 s for it).
#   zoo_ntfs_source VOL MNT   a 64 MiB NTFS volume with NTFS-only metadata
#                       (streams, ACLs, attributes, reparse points, DOS names,
#                       object ids, times, hard links, case, sparse): the
#                       source of 78 (tests/lib/ntfs-source.sh), plus object ids and
#                       non-resident streams.
#   zoo_make OUT [SET]  build the zoo into OUT and write OUT/zoo.tsv, one line
#                       per image: name <TAB> wim <TAB> index <TAB> notes.
#                       The tree with none, XPRESS (32K, 4K chunks), LZX (32K,
#                       1M chunks); its solid exports: LZMS (tree-solid.esd,
#                       mounted through the hard link tree-solid.wim: dism
#                       takes .wim names only) and XPRESS with 64K chunks;
#                       small-lzx; multi.wim (tree, small, tree changed);
#                       ntfs-lzx; huge-xpress.  SET: "all" (default) or
#                       "nohuge".  Time: nohuge ~17 s of CPU (30-40 s on a
#                       loaded 2-core machine), the huge WIM ~15 s more (its
#                       capture reads 4 GiB of holes: wimlib does not skip
#                       them).  Kept when WIM_ZOO_DIR names OUT and
#                       OUT/zoo.done holds this file's sha256 and SET.
#   zoo_damage WIM PATH OUT   copy WIM to OUT with one compressed chunk in
#                       the middle of PATH's resource overwritten by garbage
#                       that wimlib's own decompressor rejects (checked:
#                       `wimlib-imagex extract` fails with a decompression
#                       error, not only a SHA-1 mismatch).  Prints "offset
#                       length chunk" of the damage.
#
# The chunk sizes wimlib allows (1.13): XPRESS 4K-64K, LZX 32K-2M, LZMS
# 32K-1G, powers of two; none has no chunks.  Solid resources: any of the
# three, --solid-chunk-size up to the same limits (LZMS default 64 MiB).

ZOO_SELF=${BASH_SOURCE[0]}
source "$(dirname "$ZOO_SELF")/ntfs-source.sh"

zoo_tree() {
  $PY - "$1" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(12)
def w(p, data):
    p = os.path.join(root, p)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
def text(n):  # compressible but not trivially: base64-ish of random bytes
    import base64
    return base64.b64encode(r.randbytes(n * 3 // 4 + 3))[:n]
os.makedirs(root, exist_ok=True)
# nested directories with small files of assorted sizes
for a in range(12):
    for b in range(6):
        d = 'd%02d/s%d' % (a, b)
        for c in range(12):
            n = r.choice([0, 1, 17, 300, 700, 1000, 2000, 4095, 4096, 4097, 9000, 20000])
            w('%s/f%02d.%s' % (d, c, r.choice(['txt', 'bin', 'dat'])),
              text(n) if c % 2 else r.randbytes(n))
# chunk and cluster boundaries
for n in [1, 511, 512, 513, 4095, 4096, 4097, 32767, 32768, 32769, 65535, 65536,
          65537, 131072, 1048575, 1048576, 1048577, 2097153]:
    w('sizes/%d.bin' % n, text(n))
# large files: compressible, incompressible (chunks stored raw), zeros, mixed
w('large/text-2m.txt', text(2 << 20))
w('large/random-1m.bin', r.randbytes(1 << 20))
w('large/zeros-1m.bin', bytes(1 << 20))
mixed = b''.join([r.randbytes(40000), text(40000), bytes(40000)] * 12)
w('large/mixed.bin', mixed)
# empty files and directories
for i in range(20):
    w('empty/e%02d' % i, b'')
for i in range(5):
    os.makedirs(os.path.join(root, 'emptydirs/ed%d/inner' % i), exist_ok=True)
# hard links: 40 files with 2..10 names each, across directories
for i in range(40):
    first = 'links/src/l%02d.dat' % i
    w(first, text(r.choice([50, 5000, 70000])))
    for k in range(1, 2 + i % 9):
        p = os.path.join(root, 'links/n%d/l%02d-%d.dat' % (k % 4, i, k))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.link(os.path.join(root, first), p)
# names that differ only in case (files and directories)
for n, data in [('case.txt', b'lower\n'), ('CASE.TXT', b'UPPER\n'), ('Case.txt', b'Mixed\n')]:
    w('case/' + n, data)
w('case/Dir/x', b'Dir\n'); w('case/dir/x', b'dir\n'); w('case/DIR/x', b'DIR\n')
# Unicode: Latin, Cyrillic, CJK, RTL, outside the BMP (UTF-16 surrogates),
# NFC and NFD spellings of the same name (two distinct names)
for n in ['Ünïcødé ✓ файл.txt', '日本語/ファイル名.txt', 'עברית/קובץ.txt',
          '😀 emoji 𝄞.txt', 'caf\u00e9.txt', 'cafe\u0301.txt', 'spaces  in  name .txt',
          '.hidden-dot', 'a' * 200 + '.txt']:
    w('unicode/' + n, n.encode() + b'\n')
# a symlink (a reparse point in the WIM) and a small sparse file
os.symlink('sizes/4096.bin', os.path.join(root, 'symlink-to-4096'))
with open(os.path.join(root, 'sparse-10m.bin'), 'wb') as f:
    f.truncate(10 << 20)
    f.seek(3 << 20); f.write(text(70000))
    f.seek((10 << 20) - 5000); f.write(text(5000))
EOF
}

zoo_small() {
  $PY - "$1" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(34)
for d in range(30):
    dd = os.path.join(root, 'p%02d' % d)
    os.makedirs(dd, exist_ok=True)
    for i in range(100):
        n = r.randrange(0, 900)
        with open(os.path.join(dd, 'f%03d' % i), 'wb') as f:
            f.write(r.randbytes(n // 2) + bytes(n - n // 2))
os.makedirs(os.path.join(root, 'big'), exist_ok=True)
for i in range(3):
    with open(os.path.join(root, 'big', 'b%d' % i), 'wb') as f:
        f.write(r.randbytes(200000) * 3)
EOF
}

zoo_huge() {
  $PY - "$1" <<'EOF'
import hashlib, os, random, sys
root = sys.argv[1]
r = random.Random(56)
os.makedirs(root, exist_ok=True)
p = os.path.join(root, 'huge.bin')
size = (4 << 30) + (4 << 20)
with open(p, 'wb') as f:
    f.truncate(size)
    for off, n in [(0, 1 << 20), (1 << 30, 1 << 20), ((4 << 30) - (1 << 20), 2 << 20),
                   (size - 4096, 4096)]:
        f.seek(off); f.write(r.randbytes(n // 2) + bytes(n // 4) + r.randbytes(n - n // 2 - n // 4))
with open(os.path.join(root, 'small.txt'), 'wb') as f:
    f.write(b'beside the huge file\n')
h = hashlib.sha256()
with open(p, 'rb') as f:
    while True:
        b = f.read(1 << 24)
        if not b:
            break
        h.update(b)
with open(root + '.sha256', 'w') as f:
    f.write('%s  huge.bin\n' % h.hexdigest())
EOF
}

_zoo_ntfs_extra() {  # run in the volume by ntfs_source_fill, before the times
  $PY -c 'import os; os.setxattr("big-stream.bin", "user.text", b"abc" * 20000)'
  # object ids: 16-byte GUIDs (ntfs-3g takes 16 or 64 bytes)
  setfattr -n system.ntfs_object_id -v 0x00112233445566778899aabbccddeeff file.txt
  setfattr -n system.ntfs_object_id -v 0x0102030405060708090a0b0c0d0e0f10 dir
  head -c 3000000 /dev/urandom | base64 > nonresident.txt
}
zoo_ntfs_source() {  # zoo_ntfs_source VOL MNT
  local vol=$1 mnt=$2 rc
  truncate -s 64M "$vol" && mkntfs -F -Q -q -L ZOO "$vol" >/dev/null 2>&1 || return 1
  mkdir -p "$mnt" && ntfs-3g -o streams_interface=xattr,noatime "$vol" "$mnt" || return 1
  ntfs_source_fill "$mnt" _zoo_ntfs_extra
  rc=$?
  umount "$mnt" || rc=1
  return $rc
}

# _zoo_cap NAME WIM SRC OPTIONS... : capture SRC as image NAME, line in zoo.tsv
_zoo_cap() {
  local name=$1 wim=$2 src=$3; shift 3
  wimlib-imagex capture "$src" "$ZOO/$wim" "$name" "$@" >/dev/null 2>"$ZOO/err" ||
    { echo "zoo: capture $wim ($*) failed: $(cat "$ZOO/err")" >&2; return 1; }
  printf '%s\t%s\t1\t%s\n' "${wim%.*}" "$wim" "capture $*" >> "$ZOO/zoo.tsv"
}

zoo_make() {
  local out=$1 set=${2:-all} key
  # the key: this file and the NTFS source's (a change to either remakes the zoo)
  key=$(cat "$ZOO_SELF" "$(dirname "$ZOO_SELF")/ntfs-source.sh" | sha256sum | cut -c1-16)-$set
  if [ -n "${WIM_ZOO_DIR:-}" ] && [ "$WIM_ZOO_DIR" = "$out" ] &&
     [ "$(cat "$out/zoo.done" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  ZOO=$out
  rm -rf "$out"; mkdir -p "$out/src" || return 1
  : > "$out/zoo.tsv"
  zoo_tree "$out/src/tree" && zoo_small "$out/src/small" || return 1
  # the general tree in every compression and several chunk sizes
  _zoo_cap tree tree-none.wim "$out/src/tree" --compress=none &&
  _zoo_cap tree tree-xpress.wim "$out/src/tree" --compress=XPRESS &&
  _zoo_cap tree tree-xpress-4k.wim "$out/src/tree" --compress=XPRESS --chunk-size=4K &&
  _zoo_cap tree tree-lzx.wim "$out/src/tree" --compress=LZX &&
  _zoo_cap tree tree-lzx-1m.wim "$out/src/tree" --compress=LZX --chunk-size=1M || return 1
  # (non-solid LZMS: the corpus has one, wimlib-mwl-LZMS.wim)
  # solid: LZMS (64 MiB chunks: the whole tree is one chunk), and XPRESS
  # with 64 KiB solid chunks (many chunks, blobs across chunk boundaries)
  wimlib-imagex export "$out/tree-lzx.wim" all "$out/tree-solid.esd" --solid >/dev/null 2>&1 &&
  ln "$out/tree-solid.esd" "$out/tree-solid.wim" &&   # dism mounts .wim only
  printf 'tree-solid\ttree-solid.wim\t1\texport --solid (LZMS), tree-solid.esd\n' >> "$out/zoo.tsv" &&
  wimlib-imagex export "$out/tree-xpress.wim" all "$out/tree-solid-xpress.wim" --solid \
    --solid-compress=XPRESS --solid-chunk-size=64K >/dev/null 2>&1 &&
  printf 'tree-solid-xpress\ttree-solid-xpress.wim\t1\texport --solid XPRESS 64K\n' >> "$out/zoo.tsv" ||
    { echo "zoo: solid export failed" >&2; return 1; }
  # most files small
  _zoo_cap small small-lzx.wim "$out/src/small" --compress=LZX || return 1
  # a multi-image WIM: tree, small, tree changed (shares most blobs with 1)
  cp "$out/tree-lzx.wim" "$out/multi.wim"
  wimlib-imagex append "$out/src/small" "$out/multi.wim" small >/dev/null 2>&1 &&
  cp -a "$out/src/tree" "$out/src/tree2" && rm -rf "$out/src/tree2/d03" &&
  echo changed >> "$out/src/tree2/large/text-2m.txt" && echo new > "$out/src/tree2/new.txt" &&
  wimlib-imagex append "$out/src/tree2" "$out/multi.wim" tree2 >/dev/null 2>&1 &&
  rm -rf "$out/src/tree2" &&
  printf 'multi-%s\tmulti.wim\t%s\tmulti-image (%s)\n' 1 1 tree 2 2 small 3 3 tree2 >> "$out/zoo.tsv" ||
    { echo "zoo: multi-image WIM failed" >&2; return 1; }
  # NTFS-only metadata
  if zoo_ntfs_source "$out/src/ntfs.vol" "$out/src/ntfs.mnt"; then
    _zoo_cap ntfs ntfs-lzx.wim "$out/src/ntfs.vol" --compress=LZX || return 1
  else
    echo "zoo: the NTFS source volume failed" >&2; return 1
  fi
  if [ "$set" = all ]; then
    zoo_huge "$out/src/huge" &&
    _zoo_cap huge huge-xpress.wim "$out/src/huge" --compress=XPRESS || return 1
    mv "$out/src/huge.sha256" "$out/huge.sha256"
    rm -rf "$out/src/huge"
  fi
  rm -f "$out/err"
  echo "$key" > "$out/zoo.done"
}

zoo_damage() {  # zoo_damage WIM PATH OUT
  local wim=$1 path=$2 out=$3 info off csize usize
  info=$(wimlib-imagex dir "$wim" 1 --path="$path" --detailed) || return 1
  off=$(sed -n 's/^Offset in WIM *= *\([0-9]*\) bytes/\1/p' <<<"$info" | head -1)
  csize=$(sed -n 's/^Compressed size *= *\([0-9]*\) bytes/\1/p' <<<"$info" | head -1)
  usize=$(sed -n 's/^Uncompressed size *= *\([0-9]*\) bytes/\1/p' <<<"$info" | head -1)
  [ -n "$off" ] && [ -n "$csize" ] && grep -q 'WIM_RESHDR_FLAG_COMPRESSED' <<<"$info" &&
    ! grep -q 'WIM_RESHDR_FLAG_SOLID' <<<"$info" ||
    { echo "zoo_damage: $path: not a compressed non-solid resource" >&2; return 1; }
  # the chunk table: (chunks - 1) entries of 4 bytes (8 when over 4 GiB),
  # each the offset of chunk i (i >= 1) from the end of the table
  $PY - "$wim" "$out" "$off" "$csize" "$usize" "$path" <<'EOF'
import random, struct, subprocess, sys
wim, out, off, csize, usize, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
data = open(wim, 'rb').read()
# the header's chunk size (offset 0x14 in the WIM header)
chunk = struct.unpack_from('<I', data, 0x14)[0] or 32768
n = (usize + chunk - 1) // chunk
esz = 8 if usize > 0xFFFFFFFF else 4
table = [0] + [struct.unpack_from('<Q' if esz == 8 else '<I', data, off + esz * i)[0] for i in range(n - 1)]
base = off + esz * (n - 1)
ends = table[1:] + [csize - esz * (n - 1)]
# a compressed chunk in the middle (a chunk stored raw cannot fail to decompress)
cands = [i for i in range(1, n - 1) if ends[i] - table[i] < chunk]
if not cands:
    sys.exit('no compressed chunk in the middle of %s' % path)
i = cands[len(cands) // 2]
start, length = base + table[i], ends[i] - table[i]
for seed in range(50):
    r = random.Random(seed)
    b = bytearray(data)
    b[start:start + length] = r.randbytes(length)
    open(out, 'wb').write(b)
    p = subprocess.run(['wimlib-imagex', 'extract', out, '1', path, '--to-stdout'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0 and b'decompress' in p.stderr.lower():
        print(start, length, i)
        sys.exit(0)
sys.exit('no garbage found that the decompressor rejects')
EOF
}
