#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# NTFS metadata through a WIM mount (issue 4, Tests paragraph 2).  An NTFS
# volume is built here with ntfs-3g carrying alternate data streams, security
# descriptors, attributes, reparse points (a symlink and a junction as real
# reparse buffers, an Interix symlink made by `ln -s`), hard links, DOS short
# names, Unicode and case-distinct names, set timestamps and a sparse file.
# (ntfs-3g's `ln -s` makes an Interix symlink, a system file, not a reparse
# point: the reparse points are written through system.ntfs_reparse_data.)
# Case-distinct names need a source mounted without windows_names.
# wimlib captures it (NTFS mode, LZX); dism mounts the WIM read-only and
# ntfs-3g's view of the mount must equal its view of the source volume,
# attribute by attribute (tests/lib/ntfsmeta.py dump).  Then a read/write
# mount changes some of it, /Unmount-Image /Commit, and a fresh
# `wimlib-imagex apply` into a new NTFS volume must show the changes and the
# untouched metadata.
# needs-root: ntfs-3g mounts, dism mounts (loop devices)
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/ntfs-source.sh"
need_cmd wimlib-imagex mkntfs ntfs-3g setfattr getfattr truncate mountpoint
need_file "$BIN/dism" "$ROOT/tests/lib/ntfsmeta.py"
export DISM_STATE_DIR=$TMPD/state DISM_RUN_DIR=$TMPD/run
NM="$PY $ROOT/tests/lib/ntfsmeta.py"
OPTS=streams_interface=xattr,noatime
dism() { "$BIN/dism" /LogPath:"$TMPD/dism.log" "$@"; }
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
M=$TMPD/m SRC=$TMPD/src.vol S=$TMPD/s
mkdir -p "$M" "$S"
tap_cleanup 'mountpoint -q "$S" && umount "$S"; mountpoint -q "$M" && dism /Unmount-Image /MountDir:"$M" /Discard'

# ---- the source volume ----------------------------------------------------------------
T1=130000000000000000 T2=131000000000000000 T3=132000000000000000 T4=133000000000000000
build() {
  truncate -s 64M "$SRC" && mkntfs -F -Q -q -L SRC "$SRC" >/dev/null 2>&1 || return 1
  ntfs-3g -o $OPTS "$SRC" "$S" || return 1
  ntfs_source_fill "$S" || { umount "$S"; return 1; }
  umount "$S"
}
check "source: an NTFS volume with streams, ACLs, attributes, reparse points, links, names, times, sparse" build
ntfs-3g -o ro,$OPTS "$SRC" "$S" && $NM dump "$S" > "$TMPD/src.dump"; umount "$S"
diag "source: $(cut -f1 "$TMPD/src.dump" | sort -u | wc -l) paths, $(wc -l < "$TMPD/src.dump") attribute lines"
# the dump checks itself: what was set is in it (so an empty or broken dump cannot pass)
src_has() {  # src_has PATH KIND VALUE-PREFIX...
  local bad=0
  while [ $# -ge 3 ]; do
    grep -q "^$1"$'\t'"$2"$'\t'"$3" "$TMPD/src.dump" || { echo "missing: $1 $2 $3"; grep "^$1"$'\t'"$2" "$TMPD/src.dump"; bad=1; }
    shift 3
  done
  return $bad
}
check "source dump: the set reparse data, ACL, attributes, times, DOS name, streams; sparse; 3 links" src_has \
  /junction ntfs_reparse_data 030000a0 /rsymlink ntfs_reparse_data 0c0000a0 \
  /dir/secured.txt ntfs_acl "$($NM sd 1001 513 0x1f01ff 0x1200a9 0x120089 | cut -c3-)" \
  /rhs.txt ntfs_attrib 07000000 /dir/hidden.txt ntfs_attrib 22000000 \
  /file.txt ntfs_crtime "$($PY -c "import struct; print(struct.pack('<Q', $T1).hex())")" \
  "/a long file name.txt" ntfs_dos_name 414c4f4e47467e31 \
  /file.txt "stream user.stream" 14 /big-stream.bin "stream user.big" 65536 \
  /sparse.bin sparse yes /file.txt nlink 3 /sparse.bin ntfs_attrib 2002
WIM=$TMPD/x.wim
check "wimlib-imagex capture of the volume (NTFS mode, LZX)" wimlib-imagex capture "$SRC" "$WIM" Meta --compress=LZX

# compare WHAT GOT EXPECTED: attribute by attribute, every line of a kind
# (the dumps hold one line per path and attribute: path<TAB>kind<TAB>value)
kinds="type data sparse nlink stream ntfs_acl ntfs_attrib ntfs_reparse_data ntfs_dos_name ntfs_crtime ntfs_times"
pick() { awk -F'\t' -v k="$2" '$2 == k || index($2, k " ") == 1' "$1" | sort; }
compare() {
  local what=$1 got=$2 exp=$3 k
  for k in ${KINDS:-$kinds}; do
    is "$what: $k of every path" "$(pick "$got" "$k" | filter "$k")" "$(pick "$exp" "$k" | filter "$k")"
  done
}
# What legitimately differs is filtered out here, by kind:
filter() {
  case $1 in
    # ntfs_times = creation, last write, last access, MFT change.  The MFT
    # change time is not in a WIM (it records creation, write and access
    # only): the extraction's own time.  Keep the first three (48 hex digits).
    ntfs_times) sed -E 's/\t([0-9a-f]{48})[0-9a-f]{16}$/\t\1/' ;;
    *) cat ;;
  esac | {
    # the root directory's times: extraction creates entries in it after
    # setting them (and mkntfs made it), so they are the new volume's own;
    # its ACL, attributes and streams are compared like any path's.
    if [ "$1" = ntfs_times ] || [ "$1" = ntfs_crtime ]; then grep -v $'^/\t'; else cat; fi; }
}

# ---- read-only mount --------------------------------------------------------------------
run /Mount-Image /ImageFile:"$WIM" /Index:1 /MountDir:"$M" /ReadOnly
is "dism /Mount-Image /ReadOnly of the captured WIM" "$RC" 0
[ $RC -eq 0 ] || diag "$OUT"
$NM dump "$M" > "$TMPD/mnt.dump"
compare "read-only mount = source" "$TMPD/mnt.dump" "$TMPD/src.dump"
is "  readlink of the relative symlink reparse point" "$(readlink "$M/rsymlink")" "dir/secured.txt"
is "  the case-distinct files keep their contents" "$(cat "$M/case.txt")|$(cat "$M/CASE.TXT")" "lower|UPPER"
run /Unmount-Image /MountDir:"$M" /Discard
is "  unmount" "$RC" 0

# ---- read/write mount, commit, a fresh apply ---------------------------------------------
run /Mount-Image /ImageFile:"$WIM" /Index:1 /MountDir:"$M"
is "dism /Mount-Image read/write" "$RC" 0
[ $RC -eq 0 ] || diag "$OUT"
change() {
  cd "$M" || return 1
  echo "new in the mount" > new.txt && setfattr -n user.newstream -v "new stream" new.txt &&
  setfattr -n system.ntfs_attrib -v "$($NM attrib 0x1)" rhs.txt &&            # was RHS
  setfattr -n system.ntfs_attrib -v "$($NM attrib 0x20)" dir/hidden.txt &&    # unhidden
  ln dir/secured.txt "Ünïcødé ✓ dir/secured link.txt" &&                      # 2 links
  setfattr -n system.ntfs_acl -v "$($NM sd 1003 513 0x1f01ff)" new.txt &&
  setfattr -x user.Zone.Identifier file.txt
  local rc=$?; cd /; return $rc
}
check "change it: a new file with a stream and an ACL, attributes, a new hard link, a stream removed" change
$NM dump "$M" > "$TMPD/rw.dump"
run /Unmount-Image /MountDir:"$M" /Commit
is "/Unmount-Image /Commit" "$RC" 0
[ $RC -eq 0 ] || diag "$OUT"
check "wimlib-imagex verify accepts the WIM" wimlib-imagex verify "$WIM"
NEW=$TMPD/new.vol
truncate -s 64M "$NEW"; mkntfs -F -Q -q "$NEW" >/dev/null 2>&1
check "wimlib-imagex apply into a fresh NTFS volume" wimlib-imagex apply "$WIM" 1 "$NEW"
ntfs-3g -o ro,$OPTS "$NEW" "$S" && $NM dump "$S" > "$TMPD/new.dump"; umount "$S"
compare "fresh apply = the mount before /Commit" "$TMPD/new.dump" "$TMPD/rw.dump"
new_has() { grep -q "^$1"$'\t'"$2"$'\t'"$3" "$TMPD/new.dump"; }
check "  the new file's stream" new_has /new.txt "stream user.newstream" 10
check "  the new file's ACL" new_has /new.txt ntfs_acl "$($NM sd 1003 513 0x1f01ff | cut -c3-)"
check "  rhs.txt: readonly only" new_has /rhs.txt ntfs_attrib 01000000
check "  dir/hidden.txt: archive only" new_has /dir/hidden.txt ntfs_attrib 20000000
check "  dir/secured.txt: 2 links" new_has /dir/secured.txt nlink 2
check "  the new link has its ACL (the same file)" new_has "/Ünïcødé ✓ dir/secured link.txt" ntfs_acl "$($NM sd 1001 513 0x1f01ff 0x1200a9 0x120089 | cut -c3-)"
check_fail "  the removed stream is gone" new_has /file.txt "stream user.Zone.Identifier" ''
# the untouched paths: as in the source volume (every kind; not the changed files, the hard links of file.txt,
# the directories whose entries changed: their times changed)
untouched() { grep -v -e '^/new.txt' -e '^/rhs.txt' -e '^/dir/hidden.txt' -e '^/dir/secured.txt' -e '^/file.txt' -e '^/dir/link1.txt' -e '^/Ünïcødé ✓ dir/link2' \
  -e $'^/\t' -e $'^/dir\t' -e $'^/Ünïcødé ✓ dir\t' -e '^/Ünïcødé ✓ dir/secured link.txt' "$1" > "$1.untouched"; echo "$1.untouched"; }
compare "untouched paths = source" "$(untouched "$TMPD/new.dump")" "$(untouched "$TMPD/src.dump")"
