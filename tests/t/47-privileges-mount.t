#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Privileges of a dism mount (docs/nbd-server.md, PRIVILEGES): the spawned
# server keeps nothing it does not need; the state directories, records and
# sockets are root's alone; an unprivileged user can neither reach a mount's
# sockets, state or files nor mount, unmount or commit with dism.
# 47-privileges-server.t checks the server alone.
# needs-root: drops root's capabilities, runs as other users, mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/privileges.sh"


make_windows_disk "$TMPD/disk.raw" 64 || { not_ok "build the test disk"; exit 1; }
V=$TMPD/win.vhdx
make_vhdx "$TMPD/disk.raw" "$V"
chmod 644 "$V"
M=$TMPD/m1
mkdir -p "$M" "$DISM_RUN_DIR"
chmod 755 "$M" "$DISM_RUN_DIR"      # as an older version left it: must be tightened
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
run /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$M"
is "dism /Mount-Image read/write: exit 0" "$RC" 0
[ "$RC" = 0 ] || diag "$OUT"
LIVE=$(echo "$DISM_RUN_DIR"/mounts/*)
REC=$(echo "$DISM_STATE_DIR"/mounts/*.conf)
OVL=$(echo "$DISM_STATE_DIR"/scratch/*.ovl)
P=$(cat "$LIVE/server.pid")
is "dism's server: NoNewPrivs 1, Seccomp 2" "$(field $P NoNewPrivs) $(field $P Seccomp)" "1 2"
is "dism's server: CapEff, CapPrm, CapBnd empty" \
  "$(field $P CapEff) $(field $P CapPrm) $(field $P CapBnd)" "$ZERO $ZERO $ZERO"
if grep -q "^attach.method=loop" "$REC"; then
  h=$(pgrep -P $P)
  is "  its FUSE unmount helper: CAP_SYS_ADMIN alone" "$(field "$h" CapEff)" 0000000000200000
fi
is "run dir 700 (was 755), mounts 700, live dir 700" \
  "$(mode "$DISM_RUN_DIR") $(mode "$DISM_RUN_DIR/mounts") $(mode "$LIVE")" "700 700 700"
is "lock, sockets, pid file, logs, live.conf: 600" \
  "$(cd "$LIVE" && stat -c %a ../../lock nbd.sock control.sock server.pid server.log ntfs-3g.log live.conf | tr '\n' ' ')" \
  "600 600 600 600 600 600 600 "
is "state dir 700, records dir 700, scratch 700" \
  "$(mode "$DISM_STATE_DIR") $(mode "$DISM_STATE_DIR/mounts") $(mode "$DISM_STATE_DIR/scratch")" "700 700 700"
is "record and overlay: 600" "$(mode "$REC") $(mode "$OVL")" "600 600"
is "the mounted files show as root's alone (umask=077)" "$(stat -c '%a %U' "$M/hello.txt")" "700 root"

echo "written under the sandbox" > "$M/sandboxed.txt"
run /Commit-Image /MountDir:"$M"
is "dism /Commit-Image through the sandboxed server: exit 0" "$RC" 0
[ "$RC" = 0 ] || diag "$OUT"
check "  the mount is still usable" test -e "$M/sandboxed.txt"
echo "after commit" >> "$M/sandboxed.txt"

# Another user, with dism's own files in reach (TMPD is 755).
check_fail "user: cannot list the run dir" as_user ls "$DISM_RUN_DIR"
check_fail "user: cannot connect to the NBD socket" as_user nbdinfo "nbd+unix:///?socket=$LIVE/nbd.sock"
check_fail "user: cannot connect to the control socket" as_user $CTL "$LIVE/control.sock" STATUS
check_fail "user: cannot read the record" as_user cat "$REC"
check_fail "user: cannot read live.conf" as_user cat "$LIVE/live.conf"
check_fail "user: cannot read the server log" as_user cat "$LIVE/server.log"
check_fail "user: cannot read the overlay" as_user cat "$OVL"
check_fail "user: cannot read a file in the mount" as_user cat "$M/hello.txt"
check_fail "user: cannot write into the mount" as_user sh -c "echo x > '$M/user.txt'"
check "  nothing was written" test ! -e "$M/user.txt"

records() { ls "$DISM_STATE_DIR/mounts" | wc -l; }
sum_before=$(sha256sum < "$V")
mkdir -p "$TMPD/um"
chown "$TUID:$TGID" "$TMPD/um"
OUT=$(as_user "$DISM" /Mount-Image /ImageFile:"$V" /Index:1 /MountDir:"$TMPD/um" /ReadOnly 2>&1); RC=$?
like "user: /Mount-Image -> 0x800702e4 (ERROR_ELEVATION_REQUIRED)" "$OUT" "Error: 0x800702e4"
like "  with DISM's message" "$OUT" "Elevated permissions are required to run DISM"
is "  exit status 228 (0x...e4)" "$RC" 228
check "  nothing mounted" bash -c "! mountpoint -q '$TMPD/um'"
is "  no record added" "$(records)" 1
is "  no server added" "$(ls "$DISM_RUN_DIR/mounts" | wc -l)" 1
OUT=$(as_user "$DISM" /Unmount-Image /MountDir:"$M" /Discard 2>&1); RC=$?
like "user: /Unmount-Image -> 0x800702e4" "$OUT" "Error: 0x800702e4"
check "  still mounted" mountpoint -q "$M"
is "  the uncommitted change is still there" "$(tail -1 "$M/sandboxed.txt")" "after commit"
OUT=$(as_user "$DISM" /Commit-Image /MountDir:"$M" 2>&1); RC=$?
like "user: /Commit-Image -> 0x800702e4" "$OUT" "Error: 0x800702e4"
is "  the image file is unchanged" "$(sha256sum < "$V")" "$sum_before"
OUT=$(as_user "$DISM" /Get-MountedImageInfo 2>&1); RC=$?
like "user: /Get-MountedImageInfo -> 0x800702e4 (no listing)" "$OUT" "Error: 0x800702e4"
is "the mount is still Ok for root" \
  "$(dism /Get-MountedImageInfo /Format:json | $PY -c 'import json,sys; print([m["status"] for m in json.load(sys.stdin)["mounted_images"]])')" "['Ok']"

run /Unmount-Image /MountDir:"$M" /Commit
is "dism /Unmount-Image /Commit: exit 0" "$RC" 0
[ "$RC" = 0 ] || diag "$OUT"
is "  the server and its helper are gone" "$(pgrep -f "dism-nbd-server.*$DISM_RUN_DIR" || true)" ""
is "  the image holds the file written under the sandbox" "$(image_file "$V" sandboxed.txt)" \
  "written under the sandbox"$'\n'"after commit"
