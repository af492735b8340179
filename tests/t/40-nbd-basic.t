#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# dism-nbd-server basics with libnbd's tools: flags, map, copy in and out,
# export listing, TCP, --fd / --fd-transmission, pidfile, idle exit, errors.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd nbdinfo nbdcopy "$PY" truncate cmp
need_file "$BIN/dism-nbd-server"

MiB=$((1024 * 1024))
IMG=$TMPD/disk.img             # sparse: data at 1 MiB, 10..13 MiB, 40 MiB, tail
truncate -s 64M "$IMG"
for at in 1 10 11 12 40 63; do
  head -c $MiB /dev/urandom | dd of="$IMG" bs=1M seek=$at conv=notrunc status=none
done

start_server rw -e disk1 -d "test disk one" "$IMG" || { not_ok "server starts"; exit 1; }
RW=$SOCK RW_PID=$SERVER_PID
U="nbd+unix:///disk1?socket=$RW"

json=$(nbdinfo --json "$U")
check "nbdinfo --json works" test -n "$json"
jget() {   # jget PYTHON-EXPR: evaluate with j = the nbdinfo JSON, e = its export
  echo "$json" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); e=j["exports"][0]; print('"$1"')'
}
is "size" "$(jget 'e["export-size"]')" $((64 * MiB))
is "structured replies negotiated" "$(jget 'j["structured"]')" True
is "base:allocation offered" "$(jget 'e["contexts"]')" "['base:allocation']"
is "block sizes 1/4096/32M" "$(jget 'e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]')" "1 4096 33554432"

for cap in flush fua trim zero fast-zero df multi-conn cache; do
  check "nbdinfo --can $cap" nbdinfo --can "$cap" "$U"
done
check_fail "rw export: not read-only" nbdinfo --is read-only "$U"
check_fail "not rotational" nbdinfo --is rotational "$U"

# The allocation map must match the file's own holes (SEEK_DATA/SEEK_HOLE).
expected_map() {
  "$PY" "$ROOT/tests/lib/file-extent-map.py" "$IMG"
}
got_map=$(nbdinfo --map --json "$U" | "$PY" -c 'import json,sys
for e in json.load(sys.stdin): print(e["offset"], e["length"], e["type"])')
is "nbdinfo --map equals the file's holes" "$got_map" "$(expected_map)"
like "map has holes and data" "$got_map" "^0 $MiB 3"

check "nbdcopy --connections=4 export -> file" nbdcopy --connections=4 "$U" "$TMPD/out.img"
check "copied file equals the image" cmp "$TMPD/out.img" "$IMG"

SRC=$TMPD/src.img
truncate -s 64M "$SRC"
for at in 0 5 33 62; do
  head -c $((3 * MiB / 2)) /dev/urandom | dd of="$SRC" bs=1M seek=$at conv=notrunc status=none
done
check "nbdcopy --connections=4 file -> export" nbdcopy --connections=4 "$SRC" "$U"
check "image equals the source after the copy" cmp "$SRC" "$IMG"
check "nbdcopy --flush --connections=4 (zeroes in holes)" nbdcopy --flush --connections=4 "$TMPD/out.img" "$U"
check "image equals the first copy again" cmp "$TMPD/out.img" "$IMG"

list=$(nbdinfo --list "nbd+unix:///?socket=$RW")
like "nbdinfo --list shows the export name" "$list" 'export="disk1"'
like "nbdinfo --list shows the description" "$list" 'description: test disk one'
check_fail "unknown export name refused" nbdinfo "nbd+unix:///other?socket=$RW"
check "empty export name selects the default export" nbdinfo --size "nbd+unix:///?socket=$RW"

# read-only export of the same file, without multi-conn
start_server ro -r --no-multi-conn "$IMG" || not_ok "ro server starts"
RO="nbd+unix:///?socket=$SOCK"
check "ro export: --is read-only" nbdinfo --is read-only "$RO"
check_fail "ro export: no multi-conn with --no-multi-conn" nbdinfo --can multi-conn "$RO"
check_fail "ro export: cannot trim" nbdinfo --can trim "$RO"
check "ro export: can flush (a no-op) and cache" nbdinfo --can cache "$RO"
check_fail "ro export: nbdcopy into it fails" nbdcopy "$SRC" "$RO"
check "ro export: contents intact" cmp "$TMPD/out.img" "$IMG"
st=$(stat -c %a "$SOCK"); is "unix socket mode is 0600" "$st" 600

# TCP on loopback, pidfile written once listening, exit when idle
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/dism-nbd-server" --tcp "$PORT" --pidfile "$TMPD/tcp.pid" --exit-when-idle -r "$IMG" 2>"$TMPD/tcp.log" &
TCP_PID=$!
tap_cleanup "kill $TCP_PID"
for i in $(seq 100); do [ -s "$TMPD/tcp.pid" ] && break; sleep 0.05; done
is "pidfile holds the server pid" "$(cat "$TMPD/tcp.pid" 2>/dev/null)" "$TCP_PID"
is "TCP export size" "$(nbdinfo --size "nbd://127.0.0.1:$PORT")" $((64 * MiB))
wait_exit() { local i; for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; return 1; }
check "--exit-when-idle: exits after the last client" wait_exit "$TCP_PID"
wait "$TCP_PID"; is "--exit-when-idle exit status" "$?" 0
check_fail "pidfile removed at exit" test -e "$TMPD/tcp.pid"

# --fd: a connected socket, handshake included (libnbd on the other end);
# --fd-transmission: handshake done elsewhere, simple replies only.
out=$("$PY" "$ROOT/tests/lib/nbd-fd-modes.py" "$BIN/dism-nbd-server" "$IMG" "$ROOT/tests/lib" 2>&1)
is "--fd and --fd-transmission serve a socketpair" "$out" "fd-ok"

# --socket-activation: a listening socket passed as fd 3 (LISTEN_PID/LISTEN_FDS)
out=$("$PY" "$ROOT/tests/lib/nbd-socket-activation.py" "$BIN/dism-nbd-server" "$IMG" "$TMPD/sa.sock" 2>&1)
is "--socket-activation serves the passed socket" "$out" "sa-ok"

# SIGTERM while a client is connected (idle): the server ends the
# connection, flushes and exits 0; the client sees the connection close.
start_server term "$IMG" || not_ok "server starts"
out=$("$PY" "$ROOT/tests/lib/nbd-sigterm-client.py" "$(uri "$SOCK")" "$SERVER_PID" 2>&1)
is "SIGTERM with a connected client: connection closed" "$out" "closed"
wait "$SERVER_PID"; is "SIGTERM with a connected client: exit status 0" "$?" 0
is "the write before SIGTERM is in the file" "$(head -c 8 "$IMG")" "termterm"

# errors: "dism-nbd-server: FILE: problem", status 1
err=$("$BIN/dism-nbd-server" --unix "$TMPD/x.sock" "$TMPD/nonexistent.img" 2>&1); st=$?
is "missing image: exit status 1" "$st" 1
like "missing image: message names the file" "$err" "^dism-nbd-server: $TMPD/nonexistent.img: "
err=$("$BIN/dism-nbd-server" "$IMG" 2>&1); st=$?
is "no listener: exit status 1" "$st" 1
like "usage message" "$("$BIN/dism-nbd-server" --help)" "^Usage: dism-nbd-server"
# --capabilities: one word a line, for programs (libdism), exit status 0
caps=$("$BIN/dism-nbd-server" --capabilities); st=$?
is "--capabilities: exit status 0" "$st" 0
is "--capabilities: control and fuse-file, one word a line" \
  "$(grep -xE 'control|fuse-file' <<<"$caps" | sort | tr '\n' ' ')" "control fuse-file "
like "--help names --capabilities" "$("$BIN/dism-nbd-server" --help)" "--capabilities"

# clean shutdown of the first server: SIGTERM flushes and exits 0
kill -TERM "$RW_PID"; wait "$RW_PID"; is "SIGTERM: exit status 0" "$?" 0
exit $((_tap_failed > 0))
