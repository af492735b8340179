#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A WIM mounted by dism on the real kernel nbd driver, in the VM
# (docs/vm-tests.md, docs/dism-api.md "WIM").  The host builds a small WIM:
# the corpus's MultiImage.wim (3 images) plus a fourth image "Data" captured
# here (random files, a Unicode name, a subdirectory); a last commit is killed
# with kill -9 and the WIM must stay valid (verify) with image 4 old or new.  The guest
# (tests/vm/83-dism-wim.guest.sh) mounts image 4 read-only by name (libdism
# synthesizes an NTFS volume with mkntfs + libwim in the guest, serves it, and
# it appears as a whole-disk NTFS on /dev/nbdN: no partitions; ntfsinfo and
# ntfsfix read it), then read/write by index: changes, /Unmount-Image
# /Commit; then a /Discard that must leave the WIM byte-identical.  The WIM
# comes back on a virtio disk; the host checks it with wimlib alone
# (verify, apply of every image) against what only the host knows.
# needs-root: the host side builds or checks disks with loop devices and ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-system-x86_64 wimlib-imagex wiminfo mkntfs ntfs-3g ntfsfix sha256sum truncate setfattr getfattr
need_file "$BIN/dism" "$BIN/dism-nbd-server" "$CORPUS/wim/wimlib-mwl-MultiImage.wim"
VMT0=$(date +%s)
D=$TMPD/w; mkdir -p "$D"
sum() { sha256sum < "$1" | cut -d' ' -f1; }
# tree DIR: path, type, size and sha256 of everything under DIR, sorted
tree() { (cd "$1" && find . -mindepth 1 -printf '%y %s %p\n' | LC_ALL=C sort -k3 |
  while read -r t s p; do
    if [ "$t" = f ]; then echo "$p f $s $(sum "$p")"; else echo "$p $t"; fi
  done); }
apply_tree() {  # apply_tree WIM INDEX: wimlib's extraction of an image, as a tree
  rm -rf "$D/apply"
  wimlib-imagex apply "$1" "$2" "$D/apply" --no-acls >/dev/null 2>&1 || { echo "apply of $2 failed"; return 1; }
  tree "$D/apply"
}

# ---- host: the WIM ------------------------------------------------------------------
src=$D/src; mkdir -p "$src/dir/sub"
head -c 3145728 /dev/urandom > "$src/big.bin"
head -c 100000 /dev/urandom > "$src/dir/sub/data.bin"
echo "grüße" > "$src/Ünïcødé ✓ файл.txt"
echo "to be changed" > "$src/dir/changed.txt"
echo "to be deleted" > "$src/dir/deleted.txt"
echo "to be renamed" > "$src/renamed.txt"
(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) > "$D/w.manifest"
cp "$CORPUS/wim/wimlib-mwl-MultiImage.wim" "$D/w.wim"; chmod u+w "$D/w.wim"
check "host: append image 4 \"Data\" (LZX) to a copy of MultiImage.wim" \
  wimlib-imagex append "$src" "$D/w.wim" Data --compress=LZX
is "host: 4 images" "$(wiminfo "$D/w.wim" | sed -n 's/^Name: *//p' | tr '\n' ' ')" "Base Changes Delta Data "
orig=(); for i in 1 2 3; do orig[i]=$(apply_tree "$D/w.wim" $i); done
head -c 2097152 /dev/urandom > "$D/new.bin"
head -c 1048576 /dev/urandom > "$D/killed.bin"
cat > "$D/env" <<ENV
W_SHA256=$(sum "$D/w.wim")
NEW_SHA256=$(sum "$D/new.bin")
ENV
# the expected image 4 after the guest's changes
exp=$D/exp; cp -a "$src" "$exp"
cp "$D/new.bin" "$exp/new.bin"
echo 'changed in the VM' > "$exp/dir/changed.txt"
rm "$exp/dir/deleted.txt"; mv "$exp/renamed.txt" "$exp/renamed ✓.txt"
mkdir -p "$exp/Neu"; echo 'ünï written in the VM' > "$exp/Neu/Ünïcødé ✓ файл.txt"
diag "w.wim: $(stat -c %s "$D/w.wim") bytes"
truncate -s 64M "$D/back.raw"

# ---- the VM ----------------------------------------------------------------------------
run_vm 45 "$ROOT/tests/vm/83-dism-wim.guest.sh" --mem 1024 \
  --file "$D/w.wim:/test/w.wim" --file "$D/w.manifest:/test/w.manifest" \
  --file "$D/env:/test/env" --file "$D/new.bin:/test/new.bin" --file "$D/killed.bin:/test/killed.bin" \
  --drive "$D/back.raw" -- "$BIN/dism" "$BIN/dism-nbd-server" "$(command -v setfattr)" "$(command -v getfattr)"

# ---- host: the committed WIM, checked with wimlib only -------------------------------------
read -r magic bsize bsum _ < <(head -c 512 "$D/back.raw" | tr -d '\0')
if [ "$magic" = DISMWIM ] && [[ $bsize =~ ^[0-9]+$ ]]; then
  ok "host: the guest sent the committed WIM back ($bsize bytes)"
  dd if="$D/back.raw" of="$D/back.wim" bs=1M skip=1 status=none && truncate -s "$bsize" "$D/back.wim"
  is "host: it arrived intact (sha256 as in the guest)" "$(sum "$D/back.wim")" "$bsum"
  check "host: wimlib-imagex verify accepts it" wimlib-imagex verify "$D/back.wim"
  is "host: still 4 images, names kept" "$(wiminfo "$D/back.wim" | sed -n 's/^Name: *//p' | tr '\n' ' ')" "Base Changes Delta Data "
  # the guest killed a later commit (of killed.bin) with kill -9: image 4 is
  # the committed one, or that one plus killed.bin, never anything else
  got4=$(apply_tree "$D/back.wim" 4)
  if [ "$got4" = "$(tree "$exp")" ]; then
    ok "host: wimlib's apply of image 4 shows exactly the guest's changes (the killed commit left it as it was)"
  else
    cp "$D/killed.bin" "$exp/killed.bin"
    is "host: wimlib's apply of image 4 shows exactly the guest's changes (the killed commit had completed)" "$got4" "$(tree "$exp")"
  fi
  # wimlib's own record of new.bin: a named stream "vmstream" of 11 bytes
  # whose SHA-1 is that of "from the vm"
  is "host: the stream written in the guest (vmstream, 11 bytes, its SHA-1)" \
     "$(wimlib-imagex dir "$D/back.wim" 4 --path=/new.bin --detailed 2>&1 |
        awk '/Named data stream "vmstream"/ { f = 1 } f && /^Hash/ { h = $3 } f && /^Uncompressed size/ { print h, $4; exit }')" \
     "0x$(printf 'from the vm' | sha1sum | cut -d' ' -f1) 11"
  for i in 1 2 3; do
    is "host: image $i untouched" "$(apply_tree "$D/back.wim" $i)" "${orig[i]}"
  done
else
  not_ok "host: the guest sent the committed WIM back"
  diag "sector 0 of the return disk: $(head -c 80 "$D/back.raw" | tr -d '\0' | od -c | head -3)"
fi
diag "wall time of this test: $(( $(date +%s) - VMT0 )) s"
