#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Privileges of the server alone (docs/nbd-server.md, PRIVILEGES): once set
# up it keeps nothing it does not need (no capabilities, no_new_privs, a
# seccomp allow-list, a Landlock ruleset; the FUSE unmount helper keeps
# CAP_SYS_ADMIN alone) and still serves reads, writes, flushes and commits
# over a read/write overlay, its control socket and its FUSE file.
# 47-privileges-mount.t does the same for a dism mount.
#
# SAN_BUILD (default build-san) names the ASan+UBSan build checked at the end.
# needs-root: drops root's capabilities, runs as other users, FUSE mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/privileges.sh"


img=$TMPD/a.raw
truncate -s 64M "$img"
head -c $((8 << 20)) /dev/urandom > "$TMPD/data"
head -c $((1 << 20)) /dev/urandom > "$TMPD/data2"
fuse=$TMPD/a.fuse
SRV_ENV=DISM_TEST_SANDBOX_SELFTEST=1 start_srv a --unix "$TMPD/a.sock" --control "$TMPD/a.ctl" \
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
for probe in "execve" "socket(AF_INET)" "fork" "kill(1, 0)" "mmap PROT_EXEC" \
             "tee" "vmsplice" "copy_file_range"; do
  like "seccomp refuses $probe (EPERM)" "$log" "sandbox selftest: $(req "$probe"): refused \\(Operation not permitted\\)"
done
# The zero-copy READ path's two calls pass the filter (EBADF from the kernel).
for probe in "sendfile" "cachestat"; do
  like "seccomp allows $probe (reaches the kernel: EBADF)" "$log" "sandbox selftest: $probe: failed, not by the sandbox \\(Bad file descriptor\\)"
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
SRV_ENV=DISM_TEST_SANDBOX_SELFTEST=1 start_srv n --no-sandbox -r --unix "$TMPD/n.sock" "$img"
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
