#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# NBD abuse: about a hundred scripted misbehaving clients
# (tests/lib/nbd-abuse.py), one named scenario each, against a read-write
# server (Unix socket, TCP, control socket) and a read-only one, while
# well-behaved clients stay connected throughout.  Each scenario checks the
# spec's answer (an error reply or a clean hard disconnect), that both
# servers live, that nothing leaked (connections, threads, fds), that the
# well-behaved clients still get correct data, and that the rw server's
# peak RSS stays <= 64 MiB.  Then the same against the ASan/UBSan build
# ($SAN_BUILD, see tests/lib/tap.sh; no RSS limit there) and its log is checked
# for sanitizer reports.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd "$PY" truncate timeout
need_file "$BIN/dism-nbd-server" "$SAN/bin/dism-nbd-server"

MiB=$((1024 * 1024))
make_image() {   # 64 MiB, sparse, data only in [8 MiB, 12 MiB)
  rm -f "$1"
  truncate -s 64M "$1"
  head -c $((4 * MiB)) /dev/urandom | dd of="$1" bs=1M seek=8 conv=notrunc status=none
}
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_ready() {   # CTL PORT: the control socket exists and the port accepts
  local i
  for i in $(seq 1 200); do
    [ -S "$1" ] && "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $2), 1).close()" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# The negotiation deadline (default 10 s), shorter to keep the run short.
HS_TIMEOUT=4
# run_abuse LABEL BINDIR RSS_LIMIT_MIB(0: none)
run_abuse() {
  local label=$1 bindir=$2 limit=$3 img=$TMPD/$1.img port line rc rw_pid ro_pid rw_sock ro_sock
  make_image "$img"
  port=$(free_port)
  BIN=$bindir start_server "$label-rw" -v --control "$TMPD/$label.ctl" \
    --handshake-timeout $HS_TIMEOUT --tcp "127.0.0.1:$port" "$img" ||
    { not_ok "$label: rw server starts"; return; }
  rw_pid=$SERVER_PID rw_sock=$SOCK
  BIN=$bindir start_server "$label-ro" -v -r --handshake-timeout $HS_TIMEOUT "$img" ||
    { not_ok "$label: ro server starts"; return; }
  ro_pid=$SERVER_PID ro_sock=$SOCK
  wait_ready "$TMPD/$label.ctl" "$port" || { not_ok "$label: control socket and TCP port ready"; return; }

  timeout 300 "$PY" "$ROOT/tests/lib/nbd-abuse.py" --rw "$rw_sock" --ro "$ro_sock" \
    --ctl "$TMPD/$label.ctl" --tcp "$port" --image "$img" --pid "$rw_pid" \
    --ro-pid "$ro_pid" --rss-limit "$limit" --handshake-timeout $HS_TIMEOUT \
    >"$TMPD/$label.out" 2>&1
  rc=$?
  while IFS= read -r line; do
    case "$line" in
      "PASS "*) ok "$label: ${line#PASS }" ;;
      "FAIL "*) not_ok "$label: ${line#FAIL }" ;;
      *) echo "$line" ;;
    esac
  done <"$TMPD/$label.out"
  is "$label: the abuse script ran to the end" "$rc" 0

  kill -TERM "$rw_pid" "$ro_pid"
  wait "$rw_pid"; is "$label: rw server exits 0 on SIGTERM" "$?" 0
  wait "$ro_pid"; is "$label: ro server exits 0 on SIGTERM" "$?" 0
}

# In the suite's sanitizer pass $BIN is an ASan build too: no RSS bound.
run_abuse plain "$BIN" $([ "$SANITIZED" = 1 ] && echo 0 || echo 64)
run_abuse san "$SAN/bin" 0
if grep -qE 'Sanitizer|runtime error' "$TMPD/san-rw.log" "$TMPD/san-ro.log"; then
  not_ok "san: no sanitizer reports in the server logs"
  diag "$(grep -hE -A30 'Sanitizer|runtime error' "$TMPD"/san-*.log | head -80)"
else
  ok "san: no sanitizer reports in the server logs"
fi
exit $((_tap_failed > 0))
