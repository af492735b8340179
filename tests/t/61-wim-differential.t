#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# WIM differential (issue 12): what a dism read-only mount of a WIM shows
# equals what wimlib itself extracts from the same image.
#   * every image of the WIM zoo (tests/lib/make-wims.sh: none, XPRESS 4K and
#     32K chunks, LZX 32K and 1M chunks, solid LZMS and XPRESS exports, most
#     files small, multi-image, NTFS-only metadata, a >4 GiB sparse file) and
#     of every corpus WIM that wimlib accepts (non-solid LZMS is there): the
#     listing (type, path, size, symlink target, hard-link groups) and the
#     sha256 of every file, read through the mount by 8 readers in parallel
#     (xargs -P8), equal `wimlib-imagex apply` into a directory (the >4 GiB
#     file: the source's sha256, a 4 GiB apply costs 20 s);
#   * the NTFS-metadata image: ntfs-3g's view of the mount (streams, ACLs,
#     attributes, reparse data, DOS names, object ids, times, links) equals
#     its view of `wimlib-imagex apply` into a fresh NTFS volume;
#   * two representative images (the solid LZMS export; the NTFS one, LZX): the block
#     device under the mount, read end to end, is an NTFS volume `ntfsfix -n`
#     accepts (read by 8 concurrent dd readers); read again by nbdcopy with 4
#     connections through the server's socket, the bytes are the same.
# The same test must pass on the eager path and on the lazy one.  About
# 3 min on an idle 2-core machine (the zoo ~1 min of it; 5-6 min with the
# machine loaded); WIM_ZOO_DIR=DIR keeps the zoo there between runs.
# needs-root: dism mounts (loop devices, FUSE), ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/make-wims.sh"
need_cmd wimlib-imagex ntfsfix nbdcopy xargs setfattr getfattr findmnt
need_file "$DISM" "$CORPUS/wim" "$ROOT/tests/lib/ntfsmeta.py"
M=$TMPD/m1 REF=$TMPD/ref
mkdir -p "$M"
run() { OUT=$(dism "$@" 2>&1); RC=$?; }

# hashes DIR [P]: "sha256  path" of every regular file, read by P (8) readers
HASH=$ROOT/tests/lib/sha256-files.py  # FILE...: "sha256  path" lines, ERROR for unreadable
hashes() {
  local n=$(find "$1" -type f | wc -l)
  n=$(( n / ${2:-8} / 2 + 1 ))  # about two batches per reader
  (cd "$1" && find . -type f -print0 | xargs -0 -r -P "${2:-8}" -n $n "$PY" "$HASH") | LC_ALL=C sort -k2
}
# listing DIR: type, path, size (files), target (symlinks), and for a file
# with several names the first of them (its hard-link group), sorted
cat > "$TMPD/listing.py" <<'EOF'
import os, sys
root = sys.argv[1]
ents, groups = [], {}
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        if os.path.islink(p):
            ents.append((rel, 'link', os.readlink(p), None))
        elif os.path.isdir(p):
            ents.append((rel, 'dir', '-', None))
        else:
            ents.append((rel, 'file', str(st.st_size), st.st_ino))
            groups.setdefault(st.st_ino, []).append(rel)
# (the names seen, not st_nlink: ntfs-3g counts a DOS name as a link)
for rel, t, v, ino in sorted(ents):
    g = '-' if ino is None or len(groups[ino]) == 1 else '%s (%d)' % (min(groups[ino]), len(groups[ino]))
    if t == 'link' and v.startswith(os.path.abspath(root) + '/'):
        v = '<root>' + v[len(os.path.abspath(root)):]
    print('%s\t%s\t%s\t%s' % (t, rel, v, g))
EOF
listing() { "$PY" "$TMPD/listing.py" "$1"; }
# same WHAT GOT EXPECTED: is, with a diff (first lines) instead of both texts
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else
    not_ok "$1"; diag "$(diff <(echo "$3") <(echo "$2") | head -20)"; fi
}
record_of() { grep -l "^mount_dir=$1\$" "$DISM_STATE_DIR"/mounts/*.conf 2>/dev/null | head -1; }

# differential WIM INDEX WHAT [REFDIR]: mount, compare with wimlib's apply
# into a directory (or with REFDIR, made by the caller), leave it mounted
differential() {
  local wim=$1 idx=$2 what=$3 ref=${4:-$REF} got exp t0=$SECONDS
  run /Mount-Image /ImageFile:"$wim" /Index:"$idx" /MountDir:"$M" /ReadOnly
  if [ $RC -ne 0 ]; then not_ok "$what: mount read-only"; diag "$OUT"; return 1; fi
  if [ $# -lt 4 ]; then
    rm -rf "$REF"
    if ! out=$(wimlib-imagex apply "$wim" "$idx" "$REF" --no-acls 2>&1); then
      not_ok "$what: wimlib-imagex apply (the reference)"; diag "$out"; return 0
    fi
  fi
  same "$what: listing = wimlib apply (types, sizes, targets, hard links)" "$(listing "$M")" "$(listing "$ref")"
  got=$(hashes "$M" 8) exp=$(hashes "$ref" 2)
  same "$what: every file's sha256, 8 parallel readers = wimlib apply ($(wc -l <<<"$exp") files)" "$got" "$exp"
  [ $# -lt 4 ] && rm -rf "$REF"
  [ $((SECONDS - t0)) -lt 5 ] || diag "  ($((SECONDS - t0)) s)"
}
unmount() {
  run /Unmount-Image /MountDir:"$M" /Discard
  if [ $RC -ne 0 ]; then  # a reader may still hold it: once more
    sleep 1; run /Unmount-Image /MountDir:"$M" /Discard
  fi
  [ $RC -eq 0 ] || { not_ok "$1: unmount /Discard"; diag "$OUT"; }
}

# device_checks WHAT: the block device under the mount at $M
device_checks() {
  local what=$1 rec dev id sock size n chunk i copy=$TMPD/dev.img sum t0=$SECONDS
  rec=$(record_of "$M")
  dev=$(sed -n 's/^attach.fs_dev=//p' "$rec" 2>/dev/null)
  [ -b "$dev" ] || dev=$(findmnt -n -o SOURCE --target "$M")
  if [ ! -b "$dev" ]; then not_ok "$what: the mount's block device"; diag "record $rec: fs_dev '$dev'"; return; fi
  size=$(blockdev --getsize64 "$dev")
  # end to end by 8 concurrent dd readers (O_DIRECT), chunk by chunk, into a
  # sparse copy (the volume is mostly free space)
  n=8; chunk=$(( (size / 1048576 + n - 1) / n ))
  : > "$copy"
  local pids=() bad=0 p
  for i in $(seq 0 $((n - 1))); do
    dd if="$dev" of="$copy" bs=1M skip=$((i * chunk)) seek=$((i * chunk)) count=$chunk \
      iflag=direct conv=sparse,notrunc status=none 2>>"$TMPD/dd.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || bad=1; done
  truncate -s "$size" "$copy"
  if [ $bad = 0 ] && [ "$(stat -c %s "$copy")" = "$size" ]; then
    ok "$what: $dev read end to end by 8 concurrent dd readers ($((size >> 20)) MiB)"
  else
    not_ok "$what: $dev read end to end"; diag "$(cat "$TMPD/dd.err" 2>/dev/null)"; return
  fi
  check "$what: the device's bytes are a clean NTFS volume (ntfsfix -n on the copy)" ntfsfix -n "$copy"
  sum=$(cd "$TMPD" && "$PY" "$HASH" "${copy##*/}" | cut -c1-64)
  # and by nbdcopy, 4 connections, through the server's own socket
  id=$(basename "$rec" .conf)
  sock=$DISM_RUN_DIR/mounts/$id/nbd.sock
  if [ -S "$sock" ]; then
    if nbdcopy --connections=4 --requests=16 "nbd+unix:///?socket=$sock" "$TMPD/nbd.img" 2>"$TMPD/nbdcopy.err"; then
      is "$what: read again by nbdcopy (4 connections) through $id/nbd.sock: the same bytes" \
        "$(cd "$TMPD" && "$PY" "$HASH" nbd.img | cut -c1-64)" "$sum"
    else
      not_ok "$what: nbdcopy through the server's socket"; diag "$(cat "$TMPD/nbdcopy.err")"
    fi
  else
    not_ok "$what: the server's socket $sock"; diag "$(ls -la "$DISM_RUN_DIR/mounts/$id" 2>&1)"
  fi
  rm -f "$copy" "$TMPD/nbd.img"
  diag "  (device checks: $((SECONDS - t0)) s)"
}

# objids ROOT: system.ntfs_object_id of every path (ntfsmeta.py dump has no object ids)
objids() {
  "$PY" - "$1" <<'EOF'
import os, sys
root = sys.argv[1]
paths = [root]
for d, dirs, files in os.walk(root):
    paths += [os.path.join(d, n) for n in dirs + files]
for p in paths:
    try:
        v = os.getxattr(p, 'system.ntfs_object_id', follow_symlinks=False).hex()
    except OSError:
        v = '-'
    print('%s\tntfs_object_id\t%s' % ('/' + os.path.relpath(p, root) if p != root else '/', v))
EOF
}

# ---- the zoo ---------------------------------------------------------------------
ZOO=${WIM_ZOO_DIR:-$TMPD/zoo}
t0=$(date +%s)
if zoo_make "$ZOO" all 2>"$TMPD/zoo.err"; then
  ok "the WIM zoo: $(wc -l < "$ZOO/zoo.tsv") images in $(( $(date +%s) - t0 )) s"
else
  not_ok "the WIM zoo"; diag "$(cat "$TMPD/zoo.err")"; exit 1
fi
devices=" tree-solid ntfs-lzx "
while IFS=$'\t' read -r name wim idx notes; do
  case $name in
    multi-1) continue ;;  # = tree-lzx; images 2 and 3 show the index is resolved
    huge-*)
      # >4 GiB: against the source's hash (hashlib, 3 s) rather than a 4 GiB
      # apply (20 s); the listing against wimlib's listing of the image
      run /Mount-Image /ImageFile:"$ZOO/$wim" /Index:"$idx" /MountDir:"$M" /ReadOnly
      if [ $RC -ne 0 ]; then not_ok "$name ($notes): mount read-only"; diag "$OUT"; continue; fi
      is "$name: the names in the mount = wimlib-imagex dir" \
        "$(cd "$M" && find . -mindepth 1 | sed 's|^\.||' | LC_ALL=C sort)" \
        "$(wimlib-imagex dir "$ZOO/$wim" "$idx" | grep -v '^/$' | LC_ALL=C sort)"
      is "$name: the 4 GiB + 4 MiB file's size" "$(stat -c %s "$M/huge.bin")" $(( (4 << 30) + (4 << 20) ))
      is "$name: its sha256 through the mount = the source's" \
        "$(cd "$M" && "$PY" "$HASH" huge.bin)" "$(cat "$ZOO/huge.sha256")"
      is "$name: the small file beside it" "$(cat "$M/small.txt")" "beside the huge file"
      unmount "$name"
      continue ;;
  esac
  if [ "$name" != ntfs-lzx ]; then
    differential "$ZOO/$wim" "$idx" "$name ($notes)" || continue
  else
    # NTFS metadata: the reference is wimlib's own NTFS apply (an Interix
    # symlink or a junction shows differently in an apply to a directory)
    NM="$PY $ROOT/tests/lib/ntfsmeta.py"
    vol=$TMPD/applied.vol mnt=$TMPD/applied.mnt
    mkdir -p "$mnt"; truncate -s 64M "$vol"; mkntfs -F -Q -q "$vol" >/dev/null 2>&1
    if wimlib-imagex apply "$ZOO/$wim" "$idx" "$vol" >/dev/null 2>"$TMPD/apply.err" &&
       ntfs-3g -o ro,streams_interface=xattr,noatime "$vol" "$mnt"; then
      tap_cleanup "mountpoint -q '$mnt' && umount '$mnt'"
      differential "$ZOO/$wim" "$idx" "$name ($notes)" "$mnt" || { umount "$mnt"; continue; }
      { $NM dump "$mnt"; objids "$mnt"; } > "$TMPD/applied.dump"; umount "$mnt"
      { $NM dump "$M"; objids "$M"; } > "$TMPD/mount.dump"
      # the root's times are the volume's own (mkntfs / the build); the MFT
      # change time is not in a WIM (the last 16 hex digits of ntfs_times);
      # wimlib's NTFS apply does not make a sparse file sparse again, the
      # mount does (as the source was): checked on its own below
      norm() { grep -v -P '^/\t(ntfs_times|ntfs_crtime)\t|\tsparse\t' "$1" |
               sed -E 's/^([^\t]*\tntfs_times\t[0-9a-f]{48})[0-9a-f]{16}$/\1/'; }
      same "ntfs-lzx: ntfs-3g's view of the mount = of wimlib-imagex apply --ntfs ($(wc -l < "$TMPD/applied.dump") lines)" \
        "$(norm "$TMPD/mount.dump")" "$(norm "$TMPD/applied.dump")"
      is "ntfs-lzx: the sparse file is sparse in the mount, as in the source" \
        "$(grep -P '^/sparse.bin\tsparse\t' "$TMPD/mount.dump")" "$(printf '/sparse.bin\tsparse\tyes')"
      for k in ntfs_acl ntfs_reparse_data ntfs_dos_name ntfs_object_id 'stream user.'; do
        like "  the comparison holds set $k values" "$(grep -P "\t$k" "$TMPD/applied.dump" | grep -v -P '\t-$' | head -1)" "$k"
      done
    else
      not_ok "ntfs-lzx: wimlib-imagex apply into an NTFS volume"; diag "$(cat "$TMPD/apply.err")"
    fi
    rm -f "$vol"
  fi
  [[ $devices == *" $name "* ]] && device_checks "$name"
  unmount "$name"
done < "$ZOO/zoo.tsv"

# ---- every corpus WIM wimlib accepts, every image -----------------------------------
bad=" wimlib-tests-corrupted_file_1 wimlib-tests-corrupted_file_2 wimlib-tests-cyclic wimlib-mwl-VerifyFail "
for f in "$CORPUS"/wim/*.wim; do
  n=$(basename "$f" .wim)
  [[ $bad == *" $n "* ]] && continue
  count=$(wimlib-imagex info "$f" | sed -n 's/^Image Count: *//p')
  for ((i = 1; i <= count; i++)); do
    differential "$f" $i "corpus $n index $i" || continue
    unmount "corpus $n"
  done
done
left=$(ls -A "$DISM_STATE_DIR/mounts" "$DISM_RUN_DIR/mounts" 2>/dev/null | grep -v '^/\|^$' || true)
is "nothing left mounted or recorded" "$left" ""
diag "61 took $SECONDS s"
