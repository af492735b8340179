#!/usr/bin/env bash
# Privileges (docs/nbd-server.md, PRIVILEGES): the server keeps nothing it
# does not need once it is set up (no capabilities, no_new_privs, a seccomp
# allow-list, a Landlock ruleset; the FUSE unmount helper keeps
# CAP_SYS_ADMIN alone) and still serves reads, writes, flushes and commits;
# the state directories, records and sockets are root's alone; an
# unprivileged user can neither reach a mount's sockets, state or files nor
# mount, unmount or commit with dism.
#
# SAN_BUILD (default build-san) names the ASan+UBSan build checked at the
# end of part 1.
# needs-root: drops root's capabilities, runs as other users, mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd setpriv useradd userdel nbdcopy nbdinfo pgrep sha256sum cmp
need_file /dev/fuse "$BIN/dism-nbd-server" "$DISM"
SRV=$BIN/dism-nbd-server
CTL="$PY $ROOT/tests/lib/ctl.py"
ZERO=0000000000000000

# Only the directories under test may keep other users out: TMPD itself
# (mktemp's 0700) must not.
chmod 755 "$TMPD"

# An unprivileged account for the whole test (removed at the end).
TU=dism-priv-t
if ! id "$TU" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin "$TU" ||
    { not_ok "useradd $TU"; exit 1; }
  tap_cleanup "userdel $TU"
fi
TUID=$(id -u "$TU") TGID=$(id -g "$TU")
as_user() { setpriv --reuid="$TUID" --regid="$TGID" --clear-groups "$@"; }

field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mode() { stat -c %a "$1"; }
landlock_abi() {
  $PY -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); print(max(l.syscall(444, None, 0, 1), 0))'
}

# start_srv NAME ARGS...: the server with --pidfile TMPD/NAME.pid, stderr in
# TMPD/NAME.log, $SRV_ENV in its environment; its pid in SPID.
start_srv() {
  local name=$1 i
  shift
  rm -f "$TMPD/$name.pid"
  env ${SRV_ENV:+"$SRV_ENV"} "$SRV" --pidfile "$TMPD/$name.pid" "$@" 2>"$TMPD/$name.log" &
  SPID=$!
  tap_cleanup "kill -9 $SPID 2>/dev/null"
  for i in $(seq 200); do
    [ -e "$TMPD/$name.pid" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  diag "$(cat "$TMPD/$name.log")"
  return 1
}
wait_gone() { local i; for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
mounted() { grep -q " $1 " /proc/self/mounts; }

# ---------------------------------------------------------------------------
# 1. The server alone: read/write overlay, control socket, FUSE file.
img=$TMPD/a.raw
truncate -s 64M "$img"
head -c $((8 << 20)) /dev/urandom > "$TMPD/data"
head -c $((1 << 20)) /dev/urandom > "$TMPD/data2"
fuse=$TMPD/a.fuse
SRV_ENV=DISM_SANDBOX_SELFTEST=1 start_srv a --unix "$TMPD/a.sock" --control "$TMPD/a.ctl" \
  --overlay "$TMPD/a.ovl" --fuse-file "$fuse" "$img" ||
  { not_ok "the sandboxed server starts"; exit 1; }
ok "the sandboxed server starts (overlay, control socket, FUSE file)"
P=$SPID
is "server: NoNewPrivs 1" "$(field $P NoNewPrivs)" 1
is "server: Seccomp 2 (filter)" "$(field $P Seccomp)" 2
for c in CapEff CapPrm CapInh CapAmb CapBnd; do
  is "server: $c empty" "$(field $P $c)" $ZERO
done
is "server: still uid 0 (no --user)" "$(field $P Uid)" 0
helper=$(pgrep -P $P)
is "one FUSE unmount helper, a child of the server" "$(cat /proc/$helper/comm 2>/dev/null)" dism-fuse-umnt
is "  helper: CapEff is CAP_SYS_ADMIN alone" "$(field "$helper" CapEff)" 0000000000200000
is "  helper: CapPrm is CAP_SYS_ADMIN alone" "$(field "$helper" CapPrm)" 0000000000200000
is "  helper: CapBnd is CAP_SYS_ADMIN alone" "$(field "$helper" CapBnd)" 0000000000200000
is "  helper: NoNewPrivs 1, Seccomp 2" "$(field "$helper" NoNewPrivs) $(field "$helper" Seccomp)" "1 2"
is "  helper: holds no descriptor of the server's (0, 1, 2, its pipe)" \
  "$(ls /proc/$helper/fd | sort -n | tr '\n' ' ')" "0 1 2 3 "
log=$(cat "$TMPD/a.log")
abi=$(landlock_abi)
if [ "$abi" -gt 0 ]; then
  like "the server reports Landlock ABI $abi in force" "$log" "sandbox: uid 0 gid 0, no capabilities, no_new_privs, Landlock ABI $abi, seccomp"
else
  like "no Landlock in this kernel: the server says so" "$log" "no Landlock"
fi
req() { local s=${1//(/\\(}; printf '%s' "${s//)/\\)}"; }   # ( ) as regex literals
for probe in "execve" "socket(AF_INET)" "fork" "kill(1, 0)" "mmap PROT_EXEC"; do
  like "seccomp refuses $probe (EPERM)" "$log" "sandbox selftest: $(req "$probe"): refused \\(Operation not permitted\\)"
done
if [ "$abi" -gt 0 ]; then
  for probe in "open /etc/passwd" "reopen the image" "create a file in /tmp"; do
    like "Landlock refuses: $probe (EACCES)" "$log" "sandbox selftest: $probe: refused \\(Permission denied\\)"
  done
fi
check "no file left by the create probe" bash -c "! ls /tmp/dism-sandbox-selftest.* 2>/dev/null"
is "Unix socket, control socket, pid file: mode 600" \
  "$(mode "$TMPD/a.sock") $(mode "$TMPD/a.ctl") $(mode "$TMPD/a.pid")" "600 600 600"

# Serving with the sandbox on.
U="nbd+unix:///?socket=$TMPD/a.sock"
check "write 8 MiB through NBD" nbdcopy "$TMPD/data" "$U"
check "  read back through NBD" bash -c "cmp <(nbdcopy '$U' - | head -c $((8 << 20))) '$TMPD/data'"
check "  read through the FUSE file" cmp -n $((8 << 20)) "$fuse" "$TMPD/data"
check "write 1 MiB through the FUSE file (O_DIRECT, fsync)" \
  dd if="$TMPD/data2" of="$fuse" bs=1M seek=16 oflag=direct conv=notrunc,fsync status=none
check "  read back through NBD" \
  bash -c "cmp <(nbdcopy '$U' - | tail -c +$(( (16 << 20) + 1 )) | head -c $((1 << 20))) '$TMPD/data2'"
check "FLUSH on the control socket" $CTL "$TMPD/a.ctl" FLUSH
like "STATUS on the control socket" "$($CTL "$TMPD/a.ctl" STATUS)" "^OK size=67108864 .*overlay_bytes=[1-9]"
is "the image is untouched before COMMIT" "$(cmp -n $((8 << 20)) "$img" "$TMPD/data" >/dev/null 2>&1; echo $?)" 1
check "COMMIT on the control socket" $CTL "$TMPD/a.ctl" COMMIT
check "  the image holds the NBD write" cmp -n $((8 << 20)) "$img" "$TMPD/data"
check "  and the FUSE write" bash -c "cmp <(tail -c +$(( (16 << 20) + 1 )) '$img' | head -c $((1 << 20))) '$TMPD/data2'"
check "SHUTDOWN on the control socket" $CTL "$TMPD/a.ctl" SHUTDOWN
wait $P
is "  the server exits 0" "$?" 0
check "  the FUSE file is unmounted (by the helper)" bash -c "! grep -q ' $fuse ' /proc/self/mounts"
check "  the helper is gone" bash -c "! kill -0 $helper 2>/dev/null"
check "  sockets and pid file removed" bash -c "! ls '$TMPD/a.sock' '$TMPD/a.ctl' '$TMPD/a.pid' 2>/dev/null"
check "  no selftest side effect on the image" cmp -n $((8 << 20)) "$img" "$TMPD/data"

# A killed server: the helper still unmounts its FUSE file.
start_srv k -r --unix "$TMPD/k.sock" --fuse-file "$TMPD/k.fuse" "$img"
kh=$(pgrep -P $SPID)
check "kill -9: the FUSE file was mounted" grep -q " $TMPD/k.fuse " /proc/self/mounts
kill -9 $SPID
wait $SPID 2>/dev/null
for _ in $(seq 50); do mounted "$TMPD/k.fuse" || break; sleep 0.1; done
check "kill -9: the helper unmounts the FUSE file" bash -c "! grep -q ' $TMPD/k.fuse ' /proc/self/mounts"
check "  and exits" wait_gone "$kh"

# --no-sandbox keeps everything (and the selftest sees it).
SRV_ENV=DISM_SANDBOX_SELFTEST=1 start_srv n --no-sandbox -r --unix "$TMPD/n.sock" "$img"
is "--no-sandbox: NoNewPrivs 0, Seccomp 0" "$(field $SPID NoNewPrivs) $(field $SPID Seccomp)" "0 0"
isnt_zero=$(field $SPID CapEff)
check "--no-sandbox: capabilities kept" test "$isnt_zero" != $ZERO
like "--no-sandbox: the selftest's open is allowed" "$(cat "$TMPD/n.log")" "open /etc/passwd: ALLOWED"
kill $SPID; wait $SPID

# --user: an unprivileged server for an image only root can read.
mkdir -p "$TMPD/u"
chown "$TUID:$TGID" "$TMPD/u"
cp "$img" "$TMPD/u.raw"
chmod 600 "$TMPD/u.raw"
start_srv u/u --user "$TU" -r --unix "$TMPD/u/u.sock" "$TMPD/u.raw"
is "--user: uid and gid switched" "$(field $SPID Uid) $(field $SPID Gid)" "$TUID $TGID"
is "--user: no capabilities, NoNewPrivs 1, Seccomp 2" \
  "$(field $SPID CapEff) $(field $SPID CapPrm) $(field $SPID NoNewPrivs) $(field $SPID Seccomp)" "$ZERO $ZERO 1 2"
check "--user: serves the image it opened as root" \
  bash -c "cmp <(nbdcopy 'nbd+unix:///?socket=$TMPD/u/u.sock' - | head -c $((8 << 20))) '$TMPD/data'"
check_fail "--user: the user itself still cannot read the image" as_user cat "$TMPD/u.raw"
kill $SPID; wait $SPID
is "--user: exits 0 on SIGTERM" "$?" 0
check "--user: removed its socket and pid file" bash -c "! ls '$TMPD/u/u.sock' '$TMPD/u/u.pid' 2>/dev/null"
check_fail "--user with --no-sandbox is refused" "$SRV" --user "$TU" --no-sandbox -r --unix "$TMPD/x.sock" "$img"

# The ASan+UBSan build under the same sandbox (LeakSanitizer at exit).
SANSRV=$SAN/bin/dism-nbd-server
if [ -x "$SANSRV" ]; then
  SRV=$SANSRV start_srv s --unix "$TMPD/s.sock" --control "$TMPD/s.ctl" --overlay "$TMPD/s.ovl" \
    --fuse-file "$TMPD/s.fuse" "$img"
  is "ASan build: Seccomp 2, NoNewPrivs 1" "$(field $SPID Seccomp) $(field $SPID NoNewPrivs)" "2 1"
  check "ASan build: write and read back" bash -c \
    "nbdcopy '$TMPD/data2' 'nbd+unix:///?socket=$TMPD/s.sock' && cmp -n $((1 << 20)) '$TMPD/s.fuse' '$TMPD/data2'"
  check "ASan build: COMMIT" $CTL "$TMPD/s.ctl" COMMIT
  kill $SPID; wait $SPID
  is "ASan build: exits 0 on SIGTERM" "$?" 0
  check "ASan build: no sanitizer report" bash -c "! grep -E 'Sanitizer|runtime error' '$TMPD/s.log'"
  check "ASan build: FUSE file unmounted" bash -c "! grep -q ' $TMPD/s.fuse ' /proc/self/mounts"
else
  not_ok "the ASan build $SANSRV exists (make SANITIZE=1; SAN_BUILD=...)"
fi

# ---------------------------------------------------------------------------
# 2. A dism mount: the spawned server, the state's modes, another user.
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
