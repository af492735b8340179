# SPDX-License-Identifier: GPL-2.0-or-later
# ntfs-source.sh - the NTFS-only metadata every NTFS source volume of the WIM
# tests carries (78-dism-wim-metadata.t, 36-wim-build.t, the zoo of
# make-wims.sh).  Sourced after tap.sh (uses $PY, $ROOT).
#
#   ntfs_source_fill DIR [EXTRA]   into DIR, an NTFS volume mounted by ntfs-3g
#       with streams_interface=xattr: alternate data streams (also on a
#       directory, and a 64 KiB one), security descriptors, attributes,
#       reparse points (a symlink and a junction as reparse buffers, an
#       Interix symlink made by `ln -s`), hard links, a DOS short name,
#       Unicode and case-distinct names, a sparse file; then the command
#       EXTRA (run in DIR: what one test adds); then timestamps T1-T4 on
#       file.txt, dir/secured.txt, dir/sub and "Ünïcødé ✓ dir" (last, so
#       nothing done after them moves them).  In a subshell (the caller's
#       directory stays).  Returns non-zero if DIR cannot be entered or the
#       times cannot be set; not at every failed step: callers run it in a
#       condition, where set -e would be off anyway.
NTFS_T1=130000000000000000 NTFS_T2=131000000000000000
NTFS_T3=132000000000000000 NTFS_T4=133000000000000000

ntfs_source_fill() {
  local dir=$1 extra=${2:-} nm="$PY $ROOT/tests/lib/ntfsmeta.py"
  (
    cd "$dir" || exit 1
    mkdir -p dir/sub "Ünïcødé ✓ dir" junction
    echo "main data" > file.txt
    setfattr -n user.stream -v "alternate data" file.txt
    setfattr -n user.Zone.Identifier -v "[ZoneTransfer] ZoneId=3" file.txt
    head -c 70000 /dev/urandom > big-stream.bin
    $PY -c 'import os; os.setxattr("big-stream.bin", "user.big", os.urandom(65536))'
    setfattr -n user.dirstream -v "a stream on a directory" dir
    ln file.txt dir/link1.txt; ln file.txt "Ünïcødé ✓ dir/link2 ✓.txt"   # 3 names
    echo lower > case.txt; echo UPPER > CASE.TXT                          # case-distinct
    echo "grüße" > "Ünïcødé ✓ dir/файл ✓ 日本語.txt"
    # security descriptors: distinct owners, groups and DACLs
    echo secured > dir/secured.txt
    setfattr -n system.ntfs_acl -v "$($nm sd 1001 513 0x1f01ff 0x1200a9 0x120089)" dir/secured.txt
    setfattr -n system.ntfs_acl -v "$($nm sd 1002 514 0x1f01ff 0x1301bf)" dir/sub
    echo other > dir/sub/other.txt
    setfattr -n system.ntfs_acl -v "$($nm sd 500 512 0x120089)" dir/sub/other.txt
    # attributes: readonly+hidden+system, hidden+archive
    echo rhs > rhs.txt; setfattr -n system.ntfs_attrib -v "$($nm attrib 0x7)" rhs.txt
    echo hidden > dir/hidden.txt; setfattr -n system.ntfs_attrib -v "$($nm attrib 0x22)" dir/hidden.txt
    # reparse points: a relative symlink, a junction, an Interix symlink (ln -s)
    touch rsymlink; setfattr -n system.ntfs_reparse_data -v "$($nm symlink 'dir\secured.txt')" rsymlink
    setfattr -n system.ntfs_reparse_data -v "$($nm junction 'C:\Windows\System32')" junction
    ln -s file.txt interix-link
    # a DOS short name
    echo long > "a long file name.txt"; setfattr -n system.ntfs_dos_name -v "ALONGF~1.TXT" "a long file name.txt"
    # a sparse file: 16 MiB with 2 written blocks
    truncate -s 16M sparse.bin
    echo start | dd of=sparse.bin conv=notrunc status=none
    echo middle | dd of=sparse.bin bs=1M seek=9 conv=notrunc status=none
    if [ -n "$extra" ]; then $extra; fi
    # set timestamps (creation, write, access, MFT change) on a few
    for f in file.txt dir/secured.txt dir/sub "Ünïcødé ✓ dir"; do
      setfattr -n system.ntfs_times -v "$($nm times $NTFS_T1 $NTFS_T2 $NTFS_T3 $NTFS_T4)" "$f"
    done
  )
}
