#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The incremental WIM commit under kill -9 (issue 12, item 4).  An
# incremental commit (dism_wim_commit_changes: one wimlib_update_image of
# DELETE/RENAME/ADD, then wimlib_overwrite appending and rewriting the
# header last) run by tests/drivers/wim-commit.c under tests/shim/crash-shim.so,
# killed just before its Nth write, truncate or sync of the WIM, N over >= 50
# points spread across every such call the commit makes.  At each point:
# `wimlib-imagex verify` accepts the WIM, image 1 is exactly the old image or
# exactly the new one (every file), image 2 is untouched, and (every tenth
# point) a commit run again afterwards completes with the new image.
# needs-root: ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/wim-crash.sh"
need_cmd wimlib-imagex mkntfs ntfs-3g sha256sum
SHIM=$TBIN/crash-shim.so WC=$TBIN/wim-commit
need_file "$SHIM" "$WC"
[ "$SANITIZED" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
D=$TMPD/w; mkdir -p "$D/src/dir" "$D/src/sub/deep" "$D/src2" "$D/mnt" "$D/scratch"
tap_cleanup 'mountpoint -q "$D/mnt" && umount "$D/mnt"'

# ---- the WIM (2 images), the base volume, the changed current volume -----------------
echo deep > "$D/src/sub/deep/d.txt"
crash_orig_wim
truncate -s 256M "$D/base.vol"
check "the base volume (image 1 applied)" \
  sh -c "mkntfs -F -Q -q '$D/base.vol' >/dev/null 2>&1 && wimlib-imagex apply '$D/orig.wim' 1 '$D/base.vol' >/dev/null"
cp --sparse=always "$D/base.vol" "$D/cur.vol"
check "mount the current volume" ntfs-3g -o windows_names,streams_interface=xattr,noatime "$D/cur.vol" "$D/mnt"
head -c 6291456 /dev/urandom > "$D/mnt/new.bin"           # new data: many chunk writes
echo "new text" > "$D/mnt/changed.txt"
rm "$D/mnt/deleted.txt"
mv "$D/mnt/dir/f1.bin" "$D/mnt/dir/f1-renamed.bin"
mv "$D/mnt/sub/deep" "$D/mnt/dir/deep"
NEW1=$(manifest "$D/mnt")
umount "$D/mnt"

commit() { "$WC" "$1" 1 "$D/base.vol" "$D/cur.vol" "$D/scratch"; }

# ---- how many writes does the incremental commit make? --------------------------------
cp "$D/orig.wim" "$D/w.wim"
out=$(CRASH_SHIM_PATH=$D/w.wim CRASH_SHIM_COUNT=$D/count LD_PRELOAD=$SHIM commit "$D/w.wim")
is "the incremental commit through the shim completes" "$?" 0
is "  it is incremental (no full capture)" "$(sed -n 's/^full_capture=//p' <<<"$out")" 0
TOTAL=$(cat "$D/count" 2>/dev/null || echo 0)
diag "the incremental commit makes $TOTAL write/truncate/sync calls on the WIM"
if [ "$TOTAL" -ge 50 ]; then ok "at least 50 kill points available ($TOTAL)"; else not_ok "at least 50 kill points available ($TOTAL)"; fi
is "  image 1 is the new tree" "$(image_manifest "$D/w.wim" 1)" "$NEW1"

# ---- 50+ kill points spread over it ------------------------------------------------------
points=(); for ((i = 0; i < 50; i++)); do points+=($(( 1 + i * (TOTAL - 1) / 49 ))); done
points+=($((TOTAL - 2)) $((TOTAL - 1)) $TOTAL)
declare -A seen=(); bad=0 olds=0 news=0 tried=0 unk=0
for n in "${points[@]}"; do
  [ "$n" -ge 1 ] && [ -z "${seen[$n]:-}" ] || continue; seen[$n]=1; tried=$((tried+1))
  cp "$D/orig.wim" "$D/w.wim"
  { CRASH_SHIM_PATH=$D/w.wim CRASH_SHIM_AFTER=$n LD_PRELOAD=$SHIM "$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D/scratch"; rc=$?; } >/dev/null 2>&1
  [ $rc -eq 137 ] || { bad=1; diag "kill point $n: exit $rc, not killed"; }
  if ! wimlib-imagex verify "$D/w.wim" >/dev/null 2>&1; then bad=1; diag "kill point $n: verify fails"; continue; fi
  got=$(image_manifest "$D/w.wim" 1)
  if [ "$got" = "$OLD1" ]; then olds=$((olds+1))
  elif [ "$got" = "$NEW1" ]; then news=$((news+1))
  else bad=1; unk=$((unk+1)); diag "kill point $n: image 1 is neither old nor new"; fi
  [ "$(image_manifest "$D/w.wim" 2)" = "$OLD2" ] || { bad=1; diag "kill point $n: image 2 changed"; }
  if [ $((tried % 10)) -eq 0 ]; then  # committing again after the kill completes
    if [ "$got" = "$OLD1" ]; then
      commit "$D/w.wim" >/dev/null 2>&1 && [ "$(image_manifest "$D/w.wim" 1)" = "$NEW1" ] &&
        wimlib-imagex verify "$D/w.wim" >/dev/null 2>&1 || { bad=1; diag "kill point $n: the recommit failed"; }
    fi
  fi
done
diag "kill points: $tried; image 1 old at $olds, new at $news, other at $unk"
is "$tried kill points: the WIM verifies, image 1 old or new, image 2 untouched" "$bad" 0
if [ "$tried" -ge 50 ]; then ok "at least 50 distinct kill points tried"; else not_ok "at least 50 distinct kill points tried ($tried)"; fi
if [ $olds -gt 0 ] && [ $news -gt 0 ]; then ok "both outcomes seen (the points span the header rewrite)"
else not_ok "both outcomes seen (old $olds, new $news)"; fi
# A killed commit leaves its temporary volume; the next commit removes it.
commit "$D/orig.wim" >/dev/null 2>&1
is "no temporary volume left after a later commit" "$(ls "$D/scratch" | grep -c '^wim-commit-')" 0
