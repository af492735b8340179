#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The server's FUSE file (the loop fallback) and its control socket:
# the FUSE file holds the virtual disk, writes through it land in the
# overlay (the image untouched), a loop device over a byte range of it reads
# that range; COMMIT merges the overlay into the image while the export is
# in use, and writes racing the commit are neither lost nor merged twice.
# needs-root: FUSE file, loop devices
source "$(dirname "$0")/../lib/tap.sh"
need_cmd qemu-img losetup nbdcopy sha256sum
need_file /dev/fuse "$BIN/dism-nbd-server"
CTL="$PY $ROOT/tests/lib/ctl.py"

img=$TMPD/d.vhdx
qemu-img create -q -f vhdx -o subformat=dynamic,block_size=1M "$img" 48M
$PY -c "import random; open('$TMPD/seed','wb').write(random.Random(3).randbytes(6<<20))"
"$TBIN/disk-tool" "$img" write $((5 << 20)) "$TMPD/seed" >/dev/null
img_sum=$(sha256sum < "$img")

fuse=$TMPD/disk.fuse
start_server fc --overlay "$TMPD/o.ovl" --control "$TMPD/c.sock" --fuse-file "$fuse" "$img"
is "FUSE file has the virtual size" "$(stat -c %s "$fuse")" $((48 << 20))
check "FUSE file holds the same bytes as the NBD export" \
  bash -c "cmp <(cat '$fuse') <(nbdcopy '$(uri "$SOCK")' -)"
check "FUSE file holds the image's bytes" \
  bash -c "cmp '$fuse' <('$TBIN/disk-tool' -r '$img' cat)"

# A loop device over a byte range (as the fallback attaches a partition).
loop=$(losetup --find --show --offset $((5 << 20)) --sizelimit $((6 << 20)) "$fuse")
tap_cleanup "losetup -d $loop"
check "loop device over a range of the FUSE file reads that range" cmp "$loop" "$TMPD/seed"
head -c $((2 << 20)) /dev/urandom > "$TMPD/w1"
dd if="$TMPD/w1" of="$loop" bs=1M seek=1 oflag=direct conv=notrunc,fsync status=none
check "a write through the loop device reads back through NBD" \
  bash -c "cmp '$TMPD/w1' <(nbdcopy '$(uri "$SOCK")' - | tail -c +$(( (6 << 20) + 1 )) | head -c $((2 << 20)))"
losetup -d "$loop"
is "the image file is untouched before COMMIT" "$(sha256sum < "$img")" "$img_sum"

out=$($CTL "$TMPD/c.sock" STATUS)
like "STATUS reports the overlay's bytes" "$out" "^OK size=50331648 sector=512 overlay_bytes=[1-9]"
check_fail "an unknown command is refused" $CTL "$TMPD/c.sock" FROB

# COMMIT while a client writes through NBD at the same time.
$PY "$ROOT/tests/lib/commit-race.py" "$(uri "$SOCK")" "$TMPD/model" "$TMPD/c.sock" "$ROOT/tests/lib/ctl.py" > "$TMPD/race.log" 2>&1
rc=$?
check "three COMMITs while writing through NBD all succeed ($(tail -1 "$TMPD/race.log"))" test $rc -eq 0
check "after the race the export equals the client's model" \
  bash -c "cmp <(nbdcopy '$(uri "$SOCK")' -) '$TMPD/model'"
check "a final COMMIT succeeds" $CTL "$TMPD/c.sock" COMMIT
out=$($CTL "$TMPD/c.sock" STATUS)
like "the overlay is empty after COMMIT" "$out" "overlay_bytes=0 "
check "SHUTDOWN stops the server" $CTL "$TMPD/c.sock" SHUTDOWN
for _ in $(seq 50); do kill -0 $SERVER_PID 2>/dev/null || break; sleep 0.1; done
check "the server exited" bash -c "! kill -0 $SERVER_PID 2>/dev/null"
check "the FUSE file is unmounted" bash -c "! grep -q ' $fuse ' /proc/self/mounts"
check "qemu-img check is clean after the server stopped" qemu-img check -q "$img"
qemu-img convert -O raw "$img" "$TMPD/final.raw"
check "the image now holds the model (read by qemu-img)" cmp "$TMPD/final.raw" "$TMPD/model"
