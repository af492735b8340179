#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# TLS on TCP exports (STARTTLS; GnuTLS, X.509 and PSK): libnbd (nbdinfo,
# nbdcopy, nbdsh) and qemu (qemu-img, qemu-io) read and write over TLS and
# get exactly the image's bytes (sha256 against qemu-img's own conversion of
# the VHDX); clients without TLS or with the wrong credentials get nothing
# and the server goes on serving the right ones; the protocol details at the
# byte level (tests/lib/nbd-tls-checks.py); TLS 1.2 and renegotiation
# (tests/drivers/tls-client.c); a bare --tcp PORT listens on loopback only.
# The sanitizer build (SAN_BUILD, default build-san) serves one TLS round.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd certtool psktool nbdinfo nbdcopy nbdsh qemu-img qemu-io ss sha256sum "$PY"
SANBIN=$SAN/bin
need_file "$BIN/dism-nbd-server" "$TBIN/tls-client" "$SANBIN/dism-nbd-server"

MiB=$((1024 * 1024))
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# -- credentials: CA, server and client certificates, a second CA, PSKs ----
PKI=$TMPD/pki
mkdir -p "$PKI"/{ca,ca2,server,client,nocert,rogue,otherca,pskdir,badpskdir}
genkey() { certtool --generate-privkey --key-type=ecdsa --outfile "$1" 2>/dev/null; }
mkca() {   # mkca DIR NAME
  genkey "$1/ca-key.pem"
  printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 30\n' "$2" >"$1/ca.info"
  certtool --generate-self-signed --load-privkey "$1/ca-key.pem" \
    --template "$1/ca.info" --outfile "$1/ca-cert.pem" 2>/dev/null
}
mkcert() {   # mkcert CADIR KEY CERT TEMPLATE-LINES...
  local ca=$1 key=$2 cert=$3; shift 3
  genkey "$key"
  printf '%s\n' "$@" 'expiration_days = 30' 'encryption_key' 'signing_key' >"$cert.info"
  certtool --generate-certificate --load-privkey "$key" --load-ca-certificate "$ca/ca-cert.pem" \
    --load-ca-privkey "$ca/ca-key.pem" --template "$cert.info" --outfile "$cert" 2>/dev/null
}
mkca "$PKI/ca" "dism test CA"
mkca "$PKI/ca2" "some other CA"
mkcert "$PKI/ca" "$PKI/server/server-key.pem" "$PKI/server/server-cert.pem" \
  'cn = localhost' 'dns_name = localhost' 'ip_address = 127.0.0.1' 'ip_address = ::1' 'tls_www_server'
mkcert "$PKI/ca" "$PKI/client/client-key.pem" "$PKI/client/client-cert.pem" 'cn = client1' 'tls_www_client'
# rogue: trusts our CA, but its client certificate comes from the other CA;
# otherca: trusts only the other CA (so it rejects our server).
mkcert "$PKI/ca2" "$PKI/rogue/client-key.pem" "$PKI/rogue/client-cert.pem" 'cn = client1' 'tls_www_client'
cp "$PKI/rogue/client-key.pem" "$PKI/rogue/client-cert.pem" "$PKI/otherca/"
cp "$PKI/ca/ca-cert.pem" "$PKI/server/"
cp "$PKI/ca/ca-cert.pem" "$PKI/client/"
cp "$PKI/ca/ca-cert.pem" "$PKI/nocert/"
cp "$PKI/ca/ca-cert.pem" "$PKI/rogue/"
cp "$PKI/ca2/ca-cert.pem" "$PKI/otherca/"
psktool -u alice -p "$PKI/pskdir/keys.psk" >/dev/null 2>&1
psktool -u alice -p "$PKI/badpskdir/keys.psk" >/dev/null 2>&1   # same user, other key
psktool -u bob -p "$PKI/bob.psk" >/dev/null 2>&1
PSK=$PKI/pskdir/keys.psk
check "certtool and psktool made the credentials" test -s "$PKI/server/server-cert.pem" -a \
  -s "$PKI/client/client-cert.pem" -a -s "$PKI/rogue/client-cert.pem" -a -s "$PSK" -a -s "$PKI/bob.psk"

# -- the image: a VHDX made by qemu-img from random data with holes --------
SRC=$TMPD/src.raw
truncate -s 48M "$SRC"
for at in 0 3 4 17 30 47; do
  head -c $MiB /dev/urandom | dd of="$SRC" bs=1M seek=$at conv=notrunc status=none
done
qemu-img convert -f raw -O vhdx "$SRC" "$TMPD/disk.vhdx"
cp "$TMPD/disk.vhdx" "$TMPD/psk.vhdx"
qemu-img convert -f vhdx -O raw "$TMPD/disk.vhdx" "$TMPD/ref.raw"   # qemu's view
REF_SHA=$(sha "$TMPD/ref.raw")
SIZE=$(stat -c %s "$TMPD/ref.raw")
check "qemu-img's view of the VHDX is the source data" cmp "$TMPD/ref.raw" "$SRC"

# start_tcp NAME PORT ARGS...: a server on TCP, waits for its pidfile
start_tcp() {
  local name=$1 port=$2 bin=${SERVER_BIN:-$BIN/dism-nbd-server} i; shift 2
  rm -f "$TMPD/$name.pid"
  "$bin" -v --tcp "$port" --pidfile "$TMPD/$name.pid" "$@" 2>>"$TMPD/$name.log" &
  SERVER_PID=$!
  tap_cleanup "kill $SERVER_PID; wait $SERVER_PID"
  for i in $(seq 200); do
    [ -s "$TMPD/$name.pid" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { diag "$(cat "$TMPD/$name.log")"; return 1; }
    sleep 0.05
  done
  return 1
}

# -- option errors ----------------------------------------------------------
srv=$BIN/dism-nbd-server
# The credentials are read once the port is bound: --tcp 0 (any free port)
# binds for anyone, where port 1 needs root.
bad_args() {   # bad_args "what" REGEX ARGS...: exit status 1 and a message
  local what=$1 re=$2 err st; shift 2
  err=$("$srv" --tcp 0 "$@" "$TMPD/ref.raw" 2>&1); st=$?
  if [ $st -eq 1 ] && [[ $err =~ $re ]]; then ok "$what"; else not_ok "$what"; diag "status $st: $err"; fi
}
bad_args "--tls=on without credentials is refused" "needs --tls-certificates DIR or --tls-psk FILE" --tls=on
bad_args "--tls=maybe is refused" "expected off, on or require" --tls=maybe
bad_args "a certificate directory without ca-cert.pem names the file" \
  "$TMPD/nonexistent/ca-cert.pem: No such file" --tls-certificates "$TMPD/nonexistent"
printf 'alice:00ff\nno-colon-here\n' >"$TMPD/malformed.psk"
bad_args "a malformed PSK file names the line" "malformed.psk:2: expected username:hexkey" --tls-psk "$TMPD/malformed.psk"
printf 'alice:0g\n' >"$TMPD/nothex.psk"
bad_args "a PSK key that is not hex is refused" "nothex.psk:1: " --tls-psk "$TMPD/nothex.psk"
bad_args "--tls-certificates and --tls-psk together are refused" "give one of them" \
  --tls-certificates "$PKI/server" --tls-psk "$PSK"
bad_args "--tls-verify-peer without certificates is refused" "needs --tls-certificates" --tls-verify-peer --tls-psk "$PSK"
bad_args "--tls=off with credentials is refused" "drop one or the other" --tls=off --tls-psk "$PSK"
bad_args "--tls=require with --fd-transmission is refused (the kernel has no TLS)" \
  "cannot be used with --tls=require" --tls=require --tls-psk "$PSK" --fd-transmission 0
like "--help describes the TLS options" "$("$srv" --help)" "--tls=off\|on\|require.*--tls-certificates DIR.*--tls-verify-peer.*--tls-psk FILE"

# -- X.509, TLS required, client certificates verified ----------------------
XPORT=$(free_port)
start_tcp x509 "$XPORT" --tls=require --tls-certificates "$PKI/server" --tls-verify-peer \
  "$TMPD/disk.vhdx" || { not_ok "X.509 server starts"; exit 1; }
X_PID=$SERVER_PID
ok "X.509 server starts"

# A bare port listens on loopback only.
addrs=$(ss -ltnH "( sport = :$XPORT )" | awk '{print $4}' | sort | tr '\n' ' ')
like "--tcp PORT listens on 127.0.0.1" "$addrs" "(^| )127\.0\.0\.1:$XPORT "
nonloop=$(printf '%s\n' $addrs | grep -vE "^(127\.0\.0\.1|\[::1\]):$XPORT$" || true)
is "--tcp PORT listens on nothing but loopback (127.0.0.1, ::1)" "$nonloop" ""

XURI="nbds://127.0.0.1:$XPORT/?tls-certificates=$PKI/client"
out=$(nbdinfo "$XURI" 2>&1)
like "nbdinfo: the handshake is TLS" "$out" "protocol: newstyle-fixed with TLS"
is "nbdinfo --size over TLS" "$(nbdinfo --size "$XURI" 2>&1)" "$SIZE"
check "nbdcopy --connections=4 over TLS -> file" nbdcopy --connections=4 "$XURI" "$TMPD/x509.out"
is "X.509: the exported bytes hash like qemu-img's conversion" "$(sha "$TMPD/x509.out")" "$REF_SHA"
check "qemu-img convert with tls-creds-x509" qemu-img convert \
  --object "tls-creds-x509,id=tls0,dir=$PKI/client,endpoint=client" \
  --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$XPORT,tls-creds=tls0" \
  -O raw "$TMPD/x509-qemu.out"
is "X.509: qemu-img reads the same bytes" "$(sha "$TMPD/x509-qemu.out")" "$REF_SHA"

# Without the right credentials: nothing.
refused() {   # refused "what" CMD...: fails, prints nothing on stdout
  local what=$1 out st; shift
  out=$("$@" 2>"$TMPD/refused.err"); st=$?
  if [ $st -ne 0 ] && [ -z "$out" ]; then ok "$what"
  else not_ok "$what"; diag "status $st, stdout: ${out:0:200}"; diag "$(cat "$TMPD/refused.err")"; fi
}
refused "no TLS against --tls=require: nbdinfo gets no data" nbdinfo --size "nbd://127.0.0.1:$XPORT/"
like "no TLS: the server answered ERR_TLS_REQD (GO refused, see its log)" \
  "$(cat "$TMPD/x509.log")" "option 7 refused: TLS is required"
refused "TLS without a client certificate: refused" nbdinfo --size "nbds://127.0.0.1:$XPORT/?tls-certificates=$PKI/nocert"
refused "client certificate from another CA: refused" nbdinfo --size "nbds://127.0.0.1:$XPORT/?tls-certificates=$PKI/rogue"
refused "client trusting another CA rejects the server" nbdinfo --size "nbds://127.0.0.1:$XPORT/?tls-certificates=$PKI/otherca"
refused "PSK client against the X.509 server: refused" nbdinfo --size "nbds://alice@127.0.0.1:$XPORT/?tls-psk-file=$PSK"
refused "qemu-img with a certificate from another CA: refused" qemu-img convert \
  --object "tls-creds-x509,id=tls0,dir=$PKI/rogue,endpoint=client" \
  --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$XPORT,tls-creds=tls0" \
  -O raw "$TMPD/never.out"
check_fail "qemu-img wrote no output file" test -s "$TMPD/never.out"
refused "qemu-img without TLS against --tls=require: refused" qemu-img convert \
  --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$XPORT" -O raw "$TMPD/never.out"
check "the server survived the refused clients" kill -0 "$X_PID"
is "and serves the right client afterwards" "$(nbdinfo --size "$XURI" 2>&1)" "$SIZE"
like "the server logged the failed handshakes" "$(cat "$TMPD/x509.log")" "TLS handshake failed"

# Writes over TLS (nbdsh, two connections) persist.  nbdsh runs the
# "python3" on PATH: make it the system one, which has the nbd module.
out=$(PATH=/usr/bin:$PATH TLS_CLIENT_PKI="$PKI/client" TLS_PORT="$XPORT" nbdsh -c - < "$ROOT/tests/lib/tls-nbdsh-writes.py" 2>&1)
is "nbdsh: writes over TLS read back on a new TLS connection" "$out" "written"

# SIGTERM with a TLS client connected: clean exit (close_notify sent).
out=$("$PY" "$ROOT/tests/lib/tls-sigterm-client.py" "$PKI/client" "$XPORT" "$X_PID" 2>&1)
is "SIGTERM with a TLS client connected: the connection is closed" "$out" "closed"
wait "$X_PID"; is "the X.509 server exits 0 on SIGTERM" "$?" 0
"$PY" "$ROOT/tests/lib/tls-writes-landed.py" "$TMPD/disk.vhdx" "$TMPD/after.raw" "$SRC" >"$TMPD/persist.out" 2>&1
is "the TLS writes are in the VHDX file (qemu-img reads them back)" "$(cat "$TMPD/persist.out")" "same"
check "qemu-img check: the VHDX is consistent" qemu-img check -f vhdx "$TMPD/disk.vhdx"

# -- PSK; TLS required because credentials were given (no --tls) ------------
PPORT=$(free_port)
start_tcp psk "$PPORT" --tls-psk "$PSK" "$TMPD/psk.vhdx" || { not_ok "PSK server starts"; exit 1; }
P_PID=$SERVER_PID
PURI="nbds://alice@127.0.0.1:$PPORT/?tls-psk-file=$PSK"
check "nbdcopy --connections=4 over TLS-PSK -> file" nbdcopy --connections=4 "$PURI" "$TMPD/psk.out"
is "PSK: the exported bytes hash like qemu-img's conversion" "$(sha "$TMPD/psk.out")" "$REF_SHA"
QPSK="tls-creds-psk,id=tls0,dir=$PKI/pskdir,endpoint=client,username=alice"
QNBD="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PPORT,tls-creds=tls0"
check "qemu-img convert with tls-creds-psk" qemu-img convert --object "$QPSK" --image-opts "$QNBD" -O raw "$TMPD/psk-qemu.out"
is "PSK: qemu-img reads the same bytes" "$(sha "$TMPD/psk-qemu.out")" "$REF_SHA"
refused "credentials without --tls mean --tls=require: a client without TLS gets nothing" \
  nbdinfo --size "nbd://127.0.0.1:$PPORT/"
refused "PSK: the right user with the wrong key gets nothing" \
  nbdinfo --size "nbds://alice@127.0.0.1:$PPORT/?tls-psk-file=$PKI/badpskdir/keys.psk"
refused "PSK: an unknown user gets nothing" nbdinfo --size "nbds://bob@127.0.0.1:$PPORT/?tls-psk-file=$PKI/bob.psk"
refused "PSK: qemu-img with the wrong key gets nothing" qemu-img convert \
  --object "tls-creds-psk,id=tls0,dir=$PKI/badpskdir,endpoint=client,username=alice" \
  --image-opts "$QNBD" -O raw "$TMPD/never.out"
refused "PSK: an X.509 client gets nothing" nbdinfo --size "nbds://127.0.0.1:$PPORT/?tls-certificates=$PKI/client"
check "the PSK server survived" kill -0 "$P_PID"

# qemu-io writes over TLS-PSK; a second connection verifies the pattern.
out=$(qemu-io --object "$QPSK" --image-opts "$QNBD" -c 'write -P 0x5a 8M 192k' -c 'write -z 16M 64k' 2>&1)
like "qemu-io write over TLS-PSK" "$out" "wrote 196608/196608 bytes"
out=$(qemu-io --object "$QPSK" --image-opts "$QNBD" -c 'read -P 0x5a 8M 192k' -c 'read -P 0 16M 64k' 2>&1)
if [[ $out =~ "read 196608/196608" ]] && [[ $out =~ "read 65536/65536" ]] && [[ ! $out =~ "Pattern verification failed" ]]; then
  ok "qemu-io reads its TLS writes back on a new connection"
else not_ok "qemu-io reads its TLS writes back on a new connection"; diag "$out"; fi

# TLS 1.2 (libnbd and qemu choose 1.3) and renegotiation, refused.
KEY=$(cut -d: -f2 "$PSK")
"$TBIN/tls-client" "$PPORT" alice "$KEY" read $((3 * MiB + 512)) 65536 >"$TMPD/tls12.out" 2>"$TMPD/tls12.err"
cmp -s "$TMPD/tls12.out" <(dd if="$TMPD/ref.raw" bs=512 skip=$((6 * 1024 + 1)) count=128 status=none)
is "TLS 1.2: a READ returns the image's bytes" "$?" 0
check "TLS 1.2: renegotiation during the options is refused (connection closed)" \
  "$TBIN/tls-client" "$PPORT" alice "$KEY" reneg-options
check "TLS 1.2: renegotiation during transmission is refused (connection closed)" \
  "$TBIN/tls-client" "$PPORT" alice "$KEY" reneg-transmission
like "the server logged the refusals" "$(cat "$TMPD/psk.log")" "renegotiation refused"
is "the PSK server still serves" "$(nbdinfo --size "$PURI" 2>&1)" "$SIZE"
kill -TERM "$P_PID"; wait "$P_PID"; is "the PSK server exits 0 on SIGTERM" "$?" 0
out=$(qemu-io -f vhdx -r -c 'read -P 0x5a 8M 192k' "$TMPD/psk.vhdx" 2>&1)
like "the qemu-io writes are in the VHDX file" "$out" "read 196608/196608"

# -- the protocol at the byte level: require / on / off ---------------------
RPORT=$(free_port); start_tcp req "$RPORT" --tls=require --tls-certificates "$PKI/server" \
  --tls-verify-peer -r "$TMPD/ref.raw" || not_ok "require server starts"
OPORT=$(free_port); start_tcp on "$OPORT" --tls=on --tls-certificates "$PKI/server" \
  -r "$TMPD/ref.raw" || not_ok "on server starts"
NPORT=$(free_port); start_tcp off "$NPORT" -r "$TMPD/ref.raw" || not_ok "off server starts"
DPORT=$(free_port); start_tcp deadline "$DPORT" --tls=on --tls-certificates "$PKI/server" \
  --handshake-timeout 3 -r "$TMPD/ref.raw" || not_ok "deadline server starts"
check "--tls=on: a client without TLS is served (nbdinfo)" nbdinfo --size "nbd://127.0.0.1:$OPORT/"
check "--tls=on: a TLS client is served (nbdinfo)" nbdinfo --size "nbds://127.0.0.1:$OPORT/?tls-certificates=$PKI/nocert"
timeout 180 "$PY" "$ROOT/tests/lib/nbd-tls-checks.py" --require "$RPORT" --on "$OPORT" --off "$NPORT" \
  --certs "$PKI/client" --image "$TMPD/ref.raw" --deadline-port "$DPORT" --deadline 3 \
  >"$TMPD/checks.out" 2>&1
rc=$?
while IFS= read -r line; do
  case "$line" in
    "PASS "*) ok "${line#PASS }" ;;
    "FAIL "*) not_ok "${line#FAIL }" ;;
    *) echo "$line" ;;
  esac
done <"$TMPD/checks.out"
is "the byte-level checks ran to the end" "$rc" 0
[ "$rc" -ne 0 ] && diag "deadline server's log: $(grep -v ': option ' "$TMPD/deadline.log" | tail -n 20)"

# -- the sanitizer build: TLS reads, writes, refusals; no reports ------------
SPORT=$(free_port)
cp "$TMPD/ref.raw" "$TMPD/san.raw"
SERVER_BIN=$SANBIN/dism-nbd-server start_tcp san "$SPORT" --tls-psk "$PSK" "$TMPD/san.raw" \
  || { not_ok "sanitizer server starts"; exit 1; }
S_PID=$SERVER_PID
SURI="nbds://alice@127.0.0.1:$SPORT/?tls-psk-file=$PSK"
check "san: nbdcopy --connections=4 over TLS" nbdcopy --connections=4 "$SURI" "$TMPD/san.out"
is "san: the bytes are the image's" "$(sha "$TMPD/san.out")" "$REF_SHA"
head -c "$SIZE" /dev/urandom >"$TMPD/new.raw"
check "san: nbdcopy --connections=4 file -> export over TLS" nbdcopy --connections=4 "$TMPD/new.raw" "$SURI"
refused "san: a wrong key gets nothing" nbdinfo --size "nbds://alice@127.0.0.1:$SPORT/?tls-psk-file=$PKI/badpskdir/keys.psk"
refused "san: no TLS gets nothing" nbdinfo --size "nbd://127.0.0.1:$SPORT/"
check "san: renegotiation refused" "$TBIN/tls-client" "$SPORT" alice "$KEY" reneg-transmission
kill -TERM "$S_PID"; wait "$S_PID"; is "san: exits 0 on SIGTERM" "$?" 0
check "san: the image holds what nbdcopy wrote" cmp "$TMPD/san.raw" "$TMPD/new.raw"
if grep -qE 'Sanitizer|runtime error' "$TMPD/san.log"; then
  not_ok "san: no sanitizer reports"; diag "$(grep -E -A20 'Sanitizer|runtime error' "$TMPD/san.log" | head -60)"
else
  ok "san: no sanitizer reports"
fi
exit $((_tap_failed > 0))
