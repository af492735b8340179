#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# WIM commit under kill -9 (issue 6, item 5, the WIM part).  A WIM commit is
# wimlib_update_image + wimlib_overwrite (dism_wim_capture): new data and
# tables are appended, the header rewritten last.  tests/shim/crash-shim.so
# kills the committing process just before its Nth write, truncate or sync of
# the WIM file; N runs over >= 50 points spread evenly across every such call
# a full commit makes.  At each point: wimlib-imagex verify accepts the WIM,
# image 1 is exactly the old image or exactly the new one (every file), image
# 2 is untouched; and a commit run again afterwards completes with the new
# image.  Then once end to end through dism: a killed /Unmount-Image /Commit
# keeps the mount and its volume, and the next /Unmount-Image /Commit lands
# the changes.
# needs-root: ntfs-3g mounts, dism mounts (loop devices)
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/wim-crash.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd wimlib-imagex mkntfs ntfs-3g sha256sum
SHIM=$TBIN/crash-shim.so CAP=$TBIN/wim-capture
need_file "$SHIM" "$CAP" "$DISM"
# In the sanitizer pass wim-capture is an ASan program: the shim comes
# before ASan's runtime in the library list, which is harmless here.
[ "$SANITIZED" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
D=$TMPD/w; mkdir -p "$D/src/dir" "$D/src2" "$D/mnt"

# ---- the WIM (2 images) and a changed volume of image 1 -----------------------------
crash_orig_wim

truncate -s 256M "$D/vol"
check "mkntfs a volume" mkntfs -F -Q -q "$D/vol"
check "apply image 1 into it" wimlib-imagex apply "$D/orig.wim" 1 "$D/vol"
check "mount it with ntfs-3g" ntfs-3g "$D/vol" "$D/mnt"
head -c 6291456 /dev/urandom > "$D/mnt/new.bin"         # new data: many chunk writes
echo "new text" > "$D/mnt/changed.txt"
rm "$D/mnt/deleted.txt"
mv "$D/mnt/dir/f1.bin" "$D/mnt/dir/f1-renamed.bin"
NEW1=$(manifest "$D/mnt")
umount "$D/mnt"

# ---- how many writes does a full commit make? --------------------------------------------
cp "$D/orig.wim" "$D/w.wim"
CRASH_SHIM_PATH=$D/w.wim CRASH_SHIM_COUNT=$D/count LD_PRELOAD=$SHIM "$CAP" "$D/w.wim" 1 "$D/vol" >/dev/null
is "a full commit through the shim completes" "$?" 0
TOTAL=$(cat "$D/count" 2>/dev/null || echo 0)
diag "a full commit makes $TOTAL write/truncate/sync calls on the WIM"
if [ "$TOTAL" -ge 50 ]; then ok "at least 50 kill points available ($TOTAL)"; else not_ok "at least 50 kill points available ($TOTAL)"; fi
is "the full commit: image 1 is the new tree" "$(image_manifest "$D/w.wim" 1)" "$NEW1"

# ---- 50+ kill points spread over it ------------------------------------------------------
points=(); for ((i = 0; i < 50; i++)); do points+=($(( 1 + i * (TOTAL - 1) / 49 ))); done
points+=($((TOTAL - 2)) $((TOTAL - 1)) $TOTAL)             # the header, the last calls
declare -A seen=(); bad=0 olds=0 news=0 tried=0 unk=0
for n in "${points[@]}"; do
  [ "$n" -ge 1 ] && [ -z "${seen[$n]:-}" ] || continue; seen[$n]=1; tried=$((tried+1))
  cp "$D/orig.wim" "$D/w.wim"
  { CRASH_SHIM_PATH=$D/w.wim CRASH_SHIM_AFTER=$n LD_PRELOAD=$SHIM "$CAP" "$D/w.wim" 1 "$D/vol"; rc=$?; } >/dev/null 2>&1
  [ $rc -eq 137 ] || { bad=1; diag "kill point $n: exit $rc, not killed"; }
  if ! wimlib-imagex verify "$D/w.wim" >/dev/null 2>&1; then bad=1; diag "kill point $n: verify fails"; continue; fi
  got=$(image_manifest "$D/w.wim" 1)
  if [ "$got" = "$OLD1" ]; then olds=$((olds+1))
  elif [ "$got" = "$NEW1" ]; then news=$((news+1))
  else bad=1; unk=$((unk+1)); diag "kill point $n: image 1 is neither old nor new"; fi
  [ "$(image_manifest "$D/w.wim" 2)" = "$OLD2" ] || { bad=1; diag "kill point $n: image 2 changed"; }
  if [ $((tried % 10)) -eq 0 ]; then  # recommitting after the kill completes
    "$CAP" "$D/w.wim" 1 "$D/vol" >/dev/null 2>&1 && [ "$(image_manifest "$D/w.wim" 1)" = "$NEW1" ] &&
      wimlib-imagex verify "$D/w.wim" >/dev/null 2>&1 || { bad=1; diag "kill point $n: the recommit failed"; }
  fi
done
diag "kill points: $tried; image 1 old at $olds, new at $news, other at $unk"
is "$tried kill points: the WIM verifies, image 1 old or new, image 2 untouched" "$bad" 0
if [ "$tried" -ge 50 ]; then ok "at least 50 distinct kill points tried"; else not_ok "at least 50 distinct kill points tried ($tried)"; fi
if [ $olds -gt 0 ] && [ $news -gt 0 ]; then ok "both outcomes seen (the points span the header rewrite)"
else not_ok "both outcomes seen (old $olds, new $news)"; fi

# ---- end to end: a killed /Unmount-Image /Commit keeps the mount ----------------------------
M=$TMPD/m; mkdir -p "$M"
cp "$D/orig.wim" "$D/e.wim"
dism /Mount-Image /ImageFile:"$D/e.wim" /Index:1 /MountDir:"$M" >/dev/null 2>&1
is "dism: mount read/write" "$?" 0
head -c 3000000 /dev/urandom > "$M/e2e.bin"; E2E=$(sha256sum < "$M/e2e.bin")
{ CRASH_SHIM_PATH=$D/e.wim CRASH_SHIM_AFTER=20 LD_PRELOAD=$SHIM \
  "$DISM" /Unmount-Image /MountDir:"$M" /Commit; rc=$?; } >/dev/null 2>&1
is "dism /Unmount-Image /Commit killed at its 20th write to the WIM" "$rc" 137
check "  the WIM verifies" wimlib-imagex verify "$D/e.wim"
is "  image 1 is still the old one" "$(image_manifest "$D/e.wim" 1)" "$OLD1"
rec=$(grep -l "^image=$D/e.wim\$" "$DISM_STATE_DIR"/mounts/*.conf 2>/dev/null | head -1)
vol=$(sed -n 's/^volume=//p' "$rec" 2>/dev/null)
if [ -n "$vol" ] && [ -s "$vol" ]; then ok "  the mount record and its volume survive the kill"; else not_ok "  the mount record and its volume survive the kill"; fi
dism /Remount-Image /MountDir:"$M" >/dev/null 2>&1
mountpoint -q "$M" || diag "(not mounted after the kill; /Remount-Image did not mount it)"
dism /Unmount-Image /MountDir:"$M" /Commit >/dev/null 2>&1
is "  the next /Unmount-Image /Commit completes" "$?" 0
check "  the WIM verifies" wimlib-imagex verify "$D/e.wim"
is "  e2e.bin is in image 1" "$(wimlib-imagex extract "$D/e.wim" 1 /e2e.bin --to-stdout 2>/dev/null | sha256sum)" "$E2E"
is "  image 2 untouched" "$(image_manifest "$D/e.wim" 2)" "$OLD2"
dism /Cleanup-Mountpoints >/dev/null 2>&1
mountpoint -q "$M" && umount -l "$M"
is "nothing left in the registry" "$(ls -A "$DISM_STATE_DIR/mounts" "$DISM_RUN_DIR/mounts" 2>/dev/null | grep -v '^/\|^$' | tr '\n' ' ')" ""
