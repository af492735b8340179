# SPDX-License-Identifier: GPL-2.0-or-later
# privileges.sh - what tests/t/47-privileges-*.t share (sourced after tap.sh
# and dism-img.sh): an unprivileged account for the whole test (removed at
# the end), the server started with a pidfile, /proc status fields.
need_cmd setpriv useradd userdel nbdcopy nbdinfo pgrep sha256sum cmp
need_file /dev/fuse "$BIN/dism-nbd-server" "$DISM"
SRV=$BIN/dism-nbd-server
CTL="$PY $ROOT/tests/lib/ctl.py"
ZERO=0000000000000000

# Only the directories under test may keep other users out: TMPD itself
# (mktemp's 0700) must not.
chmod 755 "$TMPD"

# The unprivileged account.
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
