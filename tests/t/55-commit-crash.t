#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Committing an overlay into a VHD / VHDX under kill -9 at many points: the
# image always opens (our reader; qemu-img check, which replays a VHDX log
# left dirty by the kill as Windows would), every 4 KiB block holds
# its old or its new content, the overlay survives, and committing again
# completes the job with exactly the new content.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-img sha256sum
DT=$TBIN/disk-tool
need_file "$DT"
KILLS=${COMMIT_CRASH_KILLS:-50}
need_cmd strace

# A script of writes, zeroes and trims spread over a 64 MiB disk.
$PY "$ROOT/tests/lib/commit-crash-ops.py" "$TMPD/ops"

for fmt in vhdx vpc; do
  ext=$([ $fmt = vpc ] && echo vhd || echo vhdx)
  opts=$([ $fmt = vpc ] && echo subformat=dynamic,force_size=on || echo subformat=dynamic,block_size=2M)
  base=$TMPD/base.$ext
  # The old content: some data already in the image.
  qemu-img create -q -f $fmt -o $opts "$base" 64M
  $PY -c "import random; r=random.Random(5); open('$TMPD/seed','wb').write(r.randbytes(8<<20))"
  "$DT" "$base" write $((16 << 20)) "$TMPD/seed" >/dev/null
  "$DT" -r "$base" cat > "$TMPD/old.raw"
  # The new content, through an overlay.
  rm -f "$TMPD/o.ovl"
  "$DT" -N "$TMPD/o.ovl" "$base" script "$TMPD/ops"
  "$DT" -O "$TMPD/o.ovl" "$base" cat > "$TMPD/new.raw"
  cp "$base" "$TMPD/pristine.$ext"; cp "$TMPD/o.ovl" "$TMPD/pristine.ovl"

  # Kill points: the commit's image writes, counted once with strace, then
  # the commit is killed (SIGKILL) just before write N for N spread over
  # all of them (DISM_TEST_CRASH_AFTER_WRITES, see disk_full_pwrite).
  # (LeakSanitizer cannot run under ptrace: off for this one run of an
  # ASan disk-tool, in the suite's sanitizer pass.)
  total=$(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
          strace -f -c -e trace=pwrite64 -o "$TMPD/st" "$DT" -W -O "$TMPD/o.ovl" "$base" commit >/dev/null 2>&1;
          awk '$NF == "pwrite64" {print $4}' "$TMPD/st")
  check "$ext: counted the commit's writes (${total:-?})" test "${total:-0}" -gt 10
  bad=0 killed=0
  for i in $(seq 1 "$KILLS"); do
    n=$(( 1 + (i - 1) * (total - 1) / (KILLS - 1) ))
    # (the overlay's live map, left by a killed run, belongs to the state
    # being thrown away: a restore removes it)
    cp "$TMPD/pristine.$ext" "$base"; cp "$TMPD/pristine.ovl" "$TMPD/o.ovl"; rm -f "$TMPD/o.ovl.live"
    # (the braces keep bash's "Killed" notice out of the output)
    { DISM_TEST_CRASH_AFTER_WRITES=$n "$DT" -W -O "$TMPD/o.ovl" "$base" commit; rc=$?; } 2>/dev/null
    [ $rc -eq 137 ] && killed=$((killed+1))
    if ! "$DT" -r "$base" cat > "$TMPD/got.raw" 2>"$TMPD/err"; then
      bad=$((bad+1)); diag "kill $i: image does not open: $(cat "$TMPD/err")"; continue
    fi
    # qemu-img reads the same bytes; a VHDX left with a dirty log is
    # replayed by qemu (check -r all, on a copy) as Windows would on open.
    cp "$base" "$TMPD/qcopy"
    if [ $fmt = vhdx ] && ! qemu-img check -q -r all "$TMPD/qcopy" >"$TMPD/err" 2>&1; then
      bad=$((bad+1)); diag "kill $i: qemu-img check -r all fails: $(cat "$TMPD/err")"; continue
    fi
    if ! qemu-img convert -f $fmt -O raw "$TMPD/qcopy" "$TMPD/q.raw" 2>"$TMPD/err" ||
       ! cmp -s "$TMPD/q.raw" "$TMPD/got.raw"; then
      bad=$((bad+1)); diag "kill $i: qemu-img reads different bytes than we do $(cat "$TMPD/err")"; continue
    fi
    if ! out=$($PY "$ROOT/tests/lib/oldnew.py" "$TMPD/old.raw" "$TMPD/new.raw" "$TMPD/got.raw"); then
      bad=$((bad+1)); diag "kill $i: $out"; continue
    fi
    # Recommit from the surviving overlay: exactly the new content.
    if ! "$DT" -W -O "$TMPD/o.ovl" "$base" commit 2>"$TMPD/err" ||
       ! "$DT" -r "$base" cat | cmp -s - "$TMPD/new.raw"; then
      bad=$((bad+1)); diag "kill $i: recommit did not give the new content: $(cat "$TMPD/err")"
    fi
  done
  is "$ext: $KILLS kill -9 points during commit spread over its $total writes: image valid, old-or-new per block, recommit completes" "$bad" 0
  is "$ext: every kill point stopped the commit" "$killed" "$KILLS"

  # An uninterrupted commit: new content, qemu agrees, overlay emptied.
  cp "$TMPD/pristine.$ext" "$base"; cp "$TMPD/pristine.ovl" "$TMPD/o.ovl"; rm -f "$TMPD/o.ovl.live"
  check "$ext: commit succeeds" "$DT" -W -O "$TMPD/o.ovl" "$base" commit
  qemu-img convert -f $fmt -O raw "$base" "$TMPD/q.raw"
  check "$ext: after commit qemu-img reads the new content" cmp "$TMPD/q.raw" "$TMPD/new.raw"
  used=$("$DT" -O "$TMPD/o.ovl" "$base" info | sed -n "s/^notes=overlay holds \([0-9]*\) bytes.*/\1/p")
  check "$ext: the overlay is empty after commit" test "${used:-x}" = 0
done
