#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Incremental WIM commit (issue 12, item 4): dism_wim_commit_changes through
# tests/drivers/wim-commit.c.  A WIM is captured from an NTFS volume rich in
# metadata (streams, ACLs, attributes, reparse points, hard links, a DOS
# name, set times); its image 1 applied into a fresh NTFS volume is the
# "base" (what the mount builds); a sparse copy of it, changed through
# ntfs-3g with the mount's options, is the "current" volume.  For each
# change the commit must: give a WIM `wimlib-imagex verify` accepts; an
# image 1 equal, entry by entry (`wimlib-imagex dir --detailed`: names,
# short names, attributes, security descriptors, creation and write times,
# streams by hash, link counts; not access times; the root's times are
# kept, see docs/dism-api.md), to a full capture of the current volume,
# and an apply with the same file hashes; image 2 untouched; no full
# capture where the change is expressible, and file data read about the
# changed files' size only.  A change that cannot be expressed (the root's
# ACL) falls back to a full capture, says so, and is right too.
# needs-root: ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
need_cmd wimlib-imagex mkntfs ntfs-3g setfattr getfattr sha256sum
WC=$TBIN/wim-commit
need_file "$WC" "$ROOT/tests/lib/ntfsmeta.py"
NM="$PY $ROOT/tests/lib/ntfsmeta.py"
D=$TMPD/w S=$TMPD/s M=$TMPD/m
mkdir -p "$D" "$S" "$M"
tap_cleanup 'mountpoint -q "$S" && umount "$S"; mountpoint -q "$M" && umount "$M"'
OPTS=windows_names,streams_interface=xattr,noatime   # as a dism read/write mount

# ---- the source volume, the WIM (2 images), the base volume ---------------------------
T1=130000000000000000 T2=131000000000000000 T3=132000000000000000 T4=133000000000000000
build() {
  truncate -s 64M "$D/src.vol" && mkntfs -F -Q -q "$D/src.vol" >/dev/null 2>&1 || return 1
  ntfs-3g -o streams_interface=xattr,noatime "$D/src.vol" "$S" || return 1
  ( cd "$S" || exit 1
    mkdir -p dir/sub other deep/a/b/c
    head -c 3000000 /dev/urandom > big.bin
    for i in 1 2 3 4; do head -c 40000 /dev/urandom > dir/f$i.bin; done
    echo "sub file" > dir/sub/s.txt; head -c 9000 /dev/urandom > dir/sub/s2.bin
    echo other > other/o.txt; echo deep > deep/a/b/c/d.txt
    echo "main data" > streams.txt; setfattr -n user.stream -v "alternate data" streams.txt
    echo secured > dir/secured.txt
    setfattr -n system.ntfs_acl -v "$($NM sd 1001 513 0x1f01ff 0x1200a9)" dir/secured.txt
    echo rhs > rhs.txt; setfattr -n system.ntfs_attrib -v "$($NM attrib 0x7)" rhs.txt
    echo linked > linked.txt; ln linked.txt dir/linked2.txt
    echo long > "other/a long file name.txt"
    setfattr -n system.ntfs_dos_name -v "ALONGF~1.TXT" "other/a long file name.txt"
    touch rsymlink; setfattr -n system.ntfs_reparse_data -v "$($NM symlink 'dir\secured.txt')" rsymlink
    for f in streams.txt dir/secured.txt dir/sub other; do
      setfattr -n system.ntfs_times -v "$($NM times $T1 $T2 $T3 $T4)" "$f"
    done ) || return 1
  umount "$S"
}
check "source volume: streams, ACLs, attributes, reparse point, hard links, a DOS name, times" build
mkdir -p "$D/two"; echo "second image" > "$D/two/only.txt"
check "capture image 1 (NTFS mode)" wimlib-imagex capture "$D/src.vol" "$D/orig.wim" One --norpfix
check "append image 2" wimlib-imagex append "$D/two" "$D/orig.wim" Two
truncate -s 256M "$D/base.vol"
check "the base volume: image 1 applied into a fresh NTFS volume" \
  sh -c "mkntfs -F -Q -q '$D/base.vol' >/dev/null 2>&1 && wimlib-imagex apply '$D/orig.wim' 1 '$D/base.vol' >/dev/null"

# dir --detailed without what a commit may change or that differs by
# layout (offsets, compressed sizes, reference counts, link group ids), access
# times, and the root's own times (kept from the image).
detailed() {  # detailed WIM INDEX
  wimlib-imagex dir "$1" "$2" --detailed 2>&1 | awk '
    /^Full Path/ { root = ($0 == "Full Path           = \"/\"") }
    /^(Offset in WIM|Compressed size|Part Number|Reference Count|Flags|Last Access Time|Link Group ID)/ { next }
    root && /^(Creation Time|Last Write Time)/ { next }
    { print }'
}
files_of() {  # files_of WIM INDEX: path and sha256 of every file of an apply
  rm -rf "$D/apply"
  wimlib-imagex apply "$1" "$2" "$D/apply" --no-acls >/dev/null 2>&1 || { echo "apply failed"; return; }
  (cd "$D/apply" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
OLD2=$(detailed "$D/orig.wim" 2)

# ---- one change, committed and checked ------------------------------------------------
# commit_case NAME FULL MAXDATA 'commands run in the mounted current volume' [FLAG]
#   FULL: 1 if it must fall back to a full capture, - if either; MAXDATA: the most file data
#   (bytes) the commit may read from the volume; FLAG: --integrity.
commit_case() {
  local name=$1 full=$2 maxdata=$3 cmds=$4 flag=${5:-} out bad=""
  cp "$D/orig.wim" "$D/w.wim"; rm -f "$D/cur.vol"
  cp --sparse=always "$D/base.vol" "$D/cur.vol"
  ntfs-3g -o $OPTS "$D/cur.vol" "$M" || { not_ok "$name: mount"; return; }
  (cd "$M" && eval "$cmds") || { not_ok "$name: the change itself failed"; umount "$M"; return; }
  umount "$M"
  out=$("$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D" $flag 2>&1)
  if [ $? -ne 0 ]; then not_ok "$name: commit"; diag "$out"; return; fi
  if [ "$flag" = --integrity ]; then
    wimlib-imagex info "$D/w.wim" | grep -q '^Attributes:.*Integrity info' || bad+=" no-integrity-table"
  fi
  local fc dr reason
  fc=$(sed -n 's/^full_capture=//p' <<<"$out"); dr=$(sed -n 's/^data_bytes_read=//p' <<<"$out")
  reason=$(sed -n 's/^fallback_reason=//p' <<<"$out")
  diag "$name: $(grep -E '^(added|replaced|deleted|renamed|volume_bytes_read|data_bytes_read)=' <<<"$out" | tr '\n' ' ')${reason:+ fallback: $reason}"
  wimlib-imagex verify "$D/w.wim" >/dev/null 2>&1 || bad+=" verify"
  rm -f "$D/ref.wim"
  wimlib-imagex capture "$D/cur.vol" "$D/ref.wim" Ref --norpfix >/dev/null 2>&1 || bad+=" reference-capture"
  local got want
  got=$(detailed "$D/w.wim" 1); want=$(detailed "$D/ref.wim" 1)
  if [ "$got" != "$want" ]; then bad+=" metadata"; diag "$(diff <(echo "$want") <(echo "$got") | head -30)"; fi
  [ "$(files_of "$D/w.wim" 1)" = "$(files_of "$D/ref.wim" 1)" ] || bad+=" files"
  [ "$(detailed "$D/w.wim" 2)" = "$OLD2" ] || bad+=" image-2"
  [ "$full" = - ] || [ "$fc" = "$full" ] || bad+=" full_capture=$fc"
  [ "${dr:-0}" -le "$maxdata" ] || bad+=" data_bytes_read=$dr>$maxdata"
  if [ -z "$bad" ]; then ok "$name"; else not_ok "$name:$bad"; fi
}

commit_case "add a file"                 0 600000   'head -c 500000 /dev/urandom > dir/new.bin'
commit_case "change a file's data"       0 3100000  'head -c 1000 /dev/urandom | dd of=big.bin bs=1000 seek=7 conv=notrunc status=none'
commit_case "truncate a file"            0 100000   'truncate -s 1000 dir/f1.bin'
commit_case "delete a file"              0 0        'rm dir/f2.bin'
commit_case "rename a file (no data read)" 0 0      'mv dir/f3.bin dir/f3-renamed.bin'
commit_case "move a file between directories (no data read)" 0 0 'mv dir/f4.bin other/f4.bin'
commit_case "rename a big file (no data read)" 0 0  'mv big.bin big-renamed.bin'
commit_case "ACL change"                 0 100000   "setfattr -n system.ntfs_acl -v $($NM sd 1002 514 0x1f01ff 0x120089) dir/f1.bin"
commit_case "named stream added"         0 100000   'setfattr -n user.added -v "a new stream" dir/f1.bin'
commit_case "named stream changed"       0 100000   'setfattr -n user.stream -v "changed alternate data" streams.txt'
commit_case "reparse point set"          0 10000    "setfattr -n system.ntfs_reparse_data -v $($NM symlink 'other\\o.txt') other/o.txt"
commit_case "attributes changed"         0 10000    "setfattr -n system.ntfs_attrib -v $($NM attrib 0x21) other/o.txt"
commit_case "hard link added"            0 100000   'ln dir/f1.bin other/f1-link.bin'
commit_case "hard link removed"          0 10000    'rm dir/linked2.txt'
commit_case "new directory with files"   0 300000   'mkdir -p newdir/inner && head -c 200000 /dev/urandom > newdir/inner/n.bin && echo x > newdir/x.txt'
commit_case "delete a directory tree"    0 0        'rm -rf dir/sub'
commit_case "rename a directory (no data read)" 0 0 'mv dir dir-renamed'
commit_case "move a directory into another" 0 0     'mv deep/a other/a'
commit_case "new file deep under an unchanged tree" 0 10000 'echo n > deep/a/b/c/new.txt'
commit_case "swap two names"             0 0        'mv dir/f1.bin tmp.bin && mv dir/f2.bin dir/f1.bin && mv tmp.bin dir/f2.bin'
commit_case "a file next to one with a DOS name" 0 10000 'echo n > other/new.txt'
commit_case "directory times set back"  0 10000    "echo n > other/new.txt && setfattr -n system.ntfs_times -v $($NM times $T1 $T2 $T3 $T4) other"
commit_case "many changes at once"       0 1000000  'rm dir/f2.bin; mv dir/f3.bin other/; echo changed > dir/sub/s.txt; mkdir nd; head -c 300000 /dev/urandom > nd/a.bin; mv deep deep2; setfattr -n user.s -v v dir'
# ntfs_xattrs NAME: the last commit's image 1 applied (--ntfs: NTFS mode, into a fresh
# volume) shows, through ntfs-3g's xattrs, what the current volume shows: every path's
# data, streams, ACL, attributes, reparse data, DOS name, creation time, link count
# (not system.ntfs_times: the access and MFT change times differ by nature).
ntfs_xattrs() {
  local a b
  rm -f "$D/ap.vol"; truncate -s 256M "$D/ap.vol"
  mkntfs -F -Q -q "$D/ap.vol" >/dev/null 2>&1 && wimlib-imagex apply "$D/w.wim" 1 "$D/ap.vol" >/dev/null 2>&1 &&
    ntfs-3g -o ro,streams_interface=xattr "$D/ap.vol" "$M" || { not_ok "$1: apply --ntfs"; return; }
  a=$($NM dump "$M" | grep -v $'\tntfs_times\t'); umount "$M"
  ntfs-3g -o ro,streams_interface=xattr "$D/cur.vol" "$M" || { not_ok "$1: mount"; return; }
  b=$($NM dump "$M" | grep -v $'\tntfs_times\t'); umount "$M"
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$1: apply --ntfs shows the volume's metadata (ntfs-3g xattrs)"
  else not_ok "$1: apply --ntfs shows the volume's metadata"; diag "$(diff <(echo "$b") <(echo "$a") | head -20)"; fi
}
ntfs_xattrs "many changes at once"
commit_case "object id set"              0 10000    'setfattr -n system.ntfs_object_id -v 0x00112233445566778899aabbccddeeff other/o.txt'
ntfs_xattrs "object id set"
commit_case "write into a sparse file"      0 1000     'truncate -s 16M sp.bin; echo x | dd of=sp.bin bs=1M seek=5 conv=notrunc status=none'
commit_case "rename a directory and add a file in it" 0 10000 'mv dir dir2 && echo new > dir2/new.txt'
commit_case "move a directory out, delete its old parent" 0 100000 'mv dir/sub other/sub2 && rm -rf dir'
commit_case "a Unicode name"             0 10000    'echo u > "other/Ünïcødé ✓ 日本語.txt"'
commit_case "move a file out of a tree, delete the tree" 0 0 'mv deep/a/b/c/d.txt . && rm -rf deep'
commit_case "a big (non-resident) named stream" 0 200000   "$PY -c 'import os; os.setxattr(\"dir/f1.bin\", \"user.big\", os.urandom(60000))'"
commit_case "a file replaced by a directory" 0 10000 'rm dir/f1.bin && mkdir dir/f1.bin && echo x > dir/f1.bin/in.txt'
commit_case "a directory replaced by a file" 0 10000 'rm -rf dir/sub && echo file > dir/sub'
commit_case "with an integrity table"    0 10000    'echo i > dir/i.txt' --integrity
for seed in 1 2 3 4 5 6 7 8; do
  commit_case "random changes, seed $seed" - 99999999 "$PY $ROOT/tests/lib/random-changes.py $seed >/dev/null"
done
commit_case "root ACL change: full capture" 1 99999999 "setfattr -n system.ntfs_acl -v $($NM sd 500 512 0x1f01ff) ."
commit_case "no change at all"           0 0        'true'

# ---- /Append: a full capture as a new image; image 1 untouched ---------------------------
cp "$D/orig.wim" "$D/w.wim"; rm -f "$D/cur.vol"; cp --sparse=always "$D/base.vol" "$D/cur.vol"
ntfs-3g -o $OPTS "$D/cur.vol" "$M" && echo appended > "$M/appended.txt" && umount "$M"
out=$("$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D" --append 2>&1)
is "--append: a new image 3, by a full capture" "$(sed -n 's/^index=//p;s/^full_capture=//p' <<<"$out" | tr '\n' ' ')" "3 1 "
rm -f "$D/ref.wim"; wimlib-imagex capture "$D/cur.vol" "$D/ref.wim" Ref --norpfix >/dev/null 2>&1
is "  image 3 is the current volume" "$(detailed "$D/w.wim" 3)" "$(detailed "$D/ref.wim" 1)"
is "  image 1 untouched" "$(detailed "$D/w.wim" 1)" "$(detailed "$D/orig.wim" 1)"
check "  the WIM verifies" wimlib-imagex verify "$D/w.wim"

# ---- a cancel before anything is written leaves the WIM as it was -------------------------
cp "$D/orig.wim" "$D/w.wim"
"$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D" --cancel >/dev/null 2>&1
is "a cancel from the progress callback: the commit says cancelled" "$?" 3
check "  the WIM is byte for byte the old one" cmp "$D/w.wim" "$D/orig.wim"
out=$("$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D")
like "  progress is reported" "$(sed -n 's/^progress_calls=//p' <<<"$out")" '^[1-9][0-9]*$'

# ---- the commit reads about the changed file, not the image ---------------------------
cp "$D/orig.wim" "$D/w.wim"; cp --sparse=always "$D/base.vol" "$D/cur.vol"
ntfs-3g -o $OPTS "$D/cur.vol" "$M" && echo "one small change" > "$M/dir/one.txt" && umount "$M"
out=$("$WC" "$D/w.wim" 1 "$D/base.vol" "$D/cur.vol" "$D")
vr=$(sed -n 's/^volume_bytes_read=//p' <<<"$out")
if [ -n "$vr" ] && [ "$vr" -lt 3000000 ]; then ok "a one-file commit reads $vr bytes of the volume (less than big.bin alone)"
else not_ok "a one-file commit reads $vr bytes of the volume"; fi
is "  no temporary volume left in the scratch directory" "$(ls "$D" | grep -c '^wim-commit-')" 0
