# SPDX-License-Identifier: GPL-2.0-or-later
# wim-crash.sh - what the WIM commit crash tests share (57-wim-commit-crash.t,
# 59-wim-commit-crash-incremental.t).  Sourced after tap.sh; uses $D (their
# work directory: $D/src, $D/src2 made by the caller).
#
#   manifest DIR              path and sha256 of every file, sorted
#   image_manifest WIM INDEX  the manifest of that image, applied (no ACLs)
#                             into $D/apply; "apply failed" if it cannot be
#   crash_orig_wim            files into $D/src (keep.bin, dir/f1-6.bin,
#                             changed.txt, deleted.txt; the caller may add
#                             more first) and $D/src2, captured as $D/orig.wim
#                             (image 1 One, LZX; image 2 Two): two checks;
#                             sets OLD1 and OLD2, the images' manifests.
manifest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum); }
image_manifest() {  # image_manifest WIM INDEX
  rm -rf "$D/apply"
  wimlib-imagex apply "$1" "$2" "$D/apply" --no-acls >/dev/null 2>&1 || { echo "apply failed"; return; }
  manifest "$D/apply"
}
crash_orig_wim() {
  head -c 4194304 /dev/urandom > "$D/src/keep.bin"
  for i in 1 2 3 4 5 6; do head -c 50000 /dev/urandom > "$D/src/dir/f$i.bin"; done
  echo "old text" > "$D/src/changed.txt"
  echo "to be deleted" > "$D/src/deleted.txt"
  echo "second image" > "$D/src2/only.txt"
  check "capture image 1 (LZX)" wimlib-imagex capture "$D/src" "$D/orig.wim" One --compress=LZX
  check "append image 2" wimlib-imagex append "$D/src2" "$D/orig.wim" Two
  OLD1=$(image_manifest "$D/orig.wim" 1) OLD2=$(image_manifest "$D/orig.wim" 2)
}
