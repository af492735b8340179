#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Every NTFS-bearing VHD/VHDX of the corpus and images generated here (GPT
# Windows layout and a bare whole-disk NTFS, each holding a large file, a
# sparse file, a Unicode name and an alternate data stream; as dynamic VHD,
# dynamic VHDX and fixed VHDX) mounted with dism read-only and read-write:
# the tree (names, sizes, sha256) equals what an independent path sees
# (qemu-img convert + losetup + ntfs-3g read-only); after a read-write
# mount, changes and /Unmount-Image /Commit, qemu-img check is clean, our
# reader, qemu-img and libvhdi read the same bytes, and the independent
# view shows exactly the changes.  Images without NTFS are refused clearly
# and leave nothing behind.
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd sgdisk mkntfs ntfs-3g qemu-img losetup setfattr getfattr
need_file "$DISM"
mkdir -p "$TMPD/m" "$TMPD/ind"

# tree DIR: one line per entry: type, path, size, sha256 (files), sorted.
tree() {
  (cd "$1" && find . -mindepth 1 \( -type d -printf 'd\t%p\t-\n' \) -o \( -type f -printf 'f\t%p\t%s\n' \) |
     sort | while IFS=$'\t' read -r t p s; do
       if [ "$t" = f ]; then printf 'f %s %s %s\n' "$p" "$s" "$(sha256sum < "$p" | cut -c1-16)"; else echo "d $p"; fi
     done)
}
qfmt() { case $1 in *.vhd) echo vpc ;; *) echo vhdx ;; esac; }
# ind_tree IMG PARTNO: the tree of partition PARTNO (0: whole disk) read
# without dism: qemu-img to raw, sfdisk for the offset, ntfs-3g read-only.
ind_tree() {
  local img=$1 part=$2 raw=$TMPD/ind.raw off=0 size loop
  qemu-img convert -f "$(qfmt "$img")" -O raw "$img" "$raw" || return 1
  size=$(stat -c %s "$raw")
  if [ "$part" != 0 ]; then
    read -r off size < <(sfdisk -J "$raw" | $PY -c "import json,sys; p=json.load(sys.stdin)['partitiontable']; s=p.get('sectorsize',512); q=p['partitions'][$part-1]; print(q['start']*s, q['size']*s)")
  fi
  loop=$(losetup -f --show -r -o "$off" --sizelimit "$size" "$raw") || return 1
  ntfs-3g -o ro,streams_interface=xattr "$loop" "$TMPD/ind" || { losetup -d "$loop"; return 1; }
  tree "$TMPD/ind"
  getfattr -n user.stream --only-values "$TMPD/ind/hello.txt" 2>/dev/null | sed 's/^/ads /'
  umount "$TMPD/ind"; losetup -d "$loop"; rm -f "$raw"
}
partno_of() { sed -n 's/.*Mounted partition \([0-9]*\) of.*/\1/p; s/.*Mounted the whole disk.*/0/p' <<<"$1" | head -1; }
mounted_tree() {
  tree "$TMPD/m"
  getfattr -n user.stream --only-values "$TMPD/m/hello.txt" 2>/dev/null | sed 's/^/ads /'
}

# --- generated images ----------------------------------------------------
fill() {  # fill MOUNTDIR: the content every generated image holds
  mkdir -p "$1/Windows/System32" "$1/Program Files/App"
  echo "hello" > "$1/hello.txt"
  setfattr -n user.stream -v "an alternate data stream" "$1/hello.txt"
  echo "grüße" > "$1/Program Files/App/Ünïcødé ✓ файл.txt"
  head -c $((48 << 20)) /dev/urandom > "$1/large.bin"
  truncate -s 100M "$1/sparse.bin"
  head -c 1M /dev/urandom | dd of="$1/sparse.bin" bs=1M seek=50 conv=notrunc status=none
  echo "to be deleted" > "$1/delete-me.txt"
}
gen_gpt() {
  local raw=$1 loop
  truncate -s 160M "$raw"
  sgdisk -o -n 1:2048:+16M -t 1:ef00 -n 2:0:+16M -t 2:0c01 -n 3:0:0 -t 3:0700 "$raw" >/dev/null
  read -r off size < <(sfdisk -J "$raw" | $PY -c "import json,sys; q=json.load(sys.stdin)['partitiontable']['partitions'][2]; print(q['start']*512, q['size']*512)")
  loop=$(losetup -f --show -o "$off" --sizelimit "$size" "$raw")
  mkntfs -q -F -f -L WIN "$loop" >/dev/null 2>&1
  ntfs-3g -o streams_interface=xattr "$loop" "$TMPD/m" && fill "$TMPD/m"; umount "$TMPD/m"; losetup -d "$loop"
}
gen_bare() {
  local raw=$1
  truncate -s 96M "$raw"
  mkntfs -q -F -f -L BARE "$raw" >/dev/null 2>&1
  ntfs-3g -o streams_interface=xattr "$raw" "$TMPD/m" && fill "$TMPD/m"; umount "$TMPD/m"
}
gen_gpt "$TMPD/gpt.raw"; gen_bare "$TMPD/bare.raw"
images=()
for layout in gpt bare; do
  qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$TMPD/$layout.raw" "$TMPD/$layout-dyn.vhd"
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=8M "$TMPD/$layout.raw" "$TMPD/$layout-dyn.vhdx"
  qemu-img convert -f raw -O vhdx -o subformat=fixed "$TMPD/$layout.raw" "$TMPD/$layout-fixed.vhdx"
  images+=("$TMPD/$layout-dyn.vhd" "$TMPD/$layout-dyn.vhdx" "$TMPD/$layout-fixed.vhdx")
  rm -f "$TMPD/$layout.raw"
done
# --- corpus images with NTFS (copied: the corpus is never written) --------
for rel in vhd/dissect-win10-dynamic.vhd vhd/dissect-win10-fixed.vhd.gz \
           vhd/nodevhd-win10-dynamic-512M.vhd.gz vhdx/dissect-win10-dynamic.vhdx \
           vhdx/dissect-win10-fixed.vhdx.gz; do
  src=$(corpus_file "$rel"); dst=$TMPD/corpus-$(basename "$src")
  cp "$src" "$dst"; chmod u+w "$dst"
  images+=("$dst")
done

for img in "${images[@]}"; do
  name=$(basename "$img")
  # read-only
  OUT=$(dism /Mount-Image /ImageFile:"$img" /Index:1 /MountDir:"$TMPD/m" /ReadOnly 2>&1)
  if [ $? -ne 0 ]; then not_ok "$name: read-only mount"; diag "$OUT"; continue; fi
  part=$(partno_of "$OUT")
  mounted_tree > "$TMPD/ours.tree"
  dism /Unmount-Image /MountDir:"$TMPD/m" /Discard >/dev/null 2>&1
  ind_tree "$img" "$part" > "$TMPD/ind.tree"
  # Generated images hold files; the corpus volumes may be empty.
  if cmp -s "$TMPD/ours.tree" "$TMPD/ind.tree" && { [ -s "$TMPD/ours.tree" ] || [[ $name == corpus-* ]]; }; then
    ok "$name: read-only mount (partition $part) shows the tree an independent reader sees ($(wc -l < "$TMPD/ours.tree") entries)"
  else
    not_ok "$name: read-only tree differs"; diag "$(diff "$TMPD/ours.tree" "$TMPD/ind.tree" | head -20)"
  fi
  # read-write, changes, commit
  OUT=$(dism /Mount-Image /ImageFile:"$img" /Index:1 /MountDir:"$TMPD/m" 2>&1)
  if [ $? -ne 0 ]; then not_ok "$name: read-write mount"; diag "$OUT"; continue; fi
  head -c 3M /dev/urandom > "$TMPD/m/added.bin"
  echo "changed on Linux" >> "$TMPD/m/dismtest-change.txt"
  rm -f "$TMPD/m/delete-me.txt"
  mkdir -p "$TMPD/m/Windows/Temp"; echo "ünï" > "$TMPD/m/Windows/Temp/ünï.txt"
  mounted_tree > "$TMPD/expected.tree"
  OUT=$(dism /Unmount-Image /MountDir:"$TMPD/m" /Commit 2>&1)
  is "$name: unmount /Commit" "$?" 0
  if [ "$(qfmt "$img")" = vhdx ]; then
    check "$name: qemu-img check clean after commit" qemu-img check -q "$img"
  fi
  ours=$("$TBIN/disk-tool" -r "$img" cat | sha256sum | cut -d' ' -f1)
  qemu=$(qemu-img convert -f "$(qfmt "$img")" -O raw "$img" "$TMPD/q.raw" && sha256sum < "$TMPD/q.raw" | cut -d' ' -f1)
  vhdi=$($PY -c "import pyvhdi,hashlib,sys
f=pyvhdi.file(); f.open(sys.argv[1]); h=hashlib.sha256(); n=f.get_media_size(); o=0
while o<n:
    b=f.read_buffer(min(1<<22,n-o)); h.update(b); o+=len(b)
print(h.hexdigest())" "$img")
  rm -f "$TMPD/q.raw"
  is "$name: after commit qemu-img reads what we read" "$qemu" "$ours"
  is "$name: after commit libvhdi reads what we read" "$vhdi" "$ours"
  ind_tree "$img" "$part" > "$TMPD/ind.tree"
  if cmp -s "$TMPD/expected.tree" "$TMPD/ind.tree"; then
    ok "$name: the committed image holds exactly the changes (independent reader)"
  else
    not_ok "$name: committed tree differs"; diag "$(diff "$TMPD/expected.tree" "$TMPD/ind.tree" | head -20)"
  fi
done

# --- images without NTFS: clear refusal, nothing left ----------------------
for rel in vhd/nodevhd-win10-fixed.vhd.gz vhdx/discutils-win10-swap-10G.vhdx.gz; do
  img=$(corpus_file "$rel")
  OUT=$(dism /Mount-Image /ImageFile:"$img" /Index:1 /MountDir:"$TMPD/m" /ReadOnly 2>&1); rc=$?
  check "$(basename "$img"): refused" test $rc -ne 0
  like "$(basename "$img"): the error says there is no NTFS" "$OUT" "[Nn]o NTFS"
  check "$(basename "$img"): nothing mounted, folder empty" test -z "$(ls -A "$TMPD/m")" -a "$(mountpoint -q "$TMPD/m"; echo $?)" != 0
  is "$(basename "$img"): no record left" "$(ls -A "$DISM_STATE_DIR/mounts" 2>/dev/null)" ""
done
