#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# NBD protocol conformance with a raw-socket client (tests/lib/nbdclient.py):
# everything libnbd will not send.  Runs the checks against the normal build
# and again against the ASan/UBSan build (build-san, `make SANITIZE=1`).
source "$(dirname "$0")/../lib/tap.sh"
need_cmd "$PY" truncate
need_file "$BIN/dism-nbd-server" "$SAN/bin/dism-nbd-server"

MiB=$((1024 * 1024))
make_image() {   # 64 MiB, sparse, data only in [8 MiB, 12 MiB)
  rm -f "$1"
  truncate -s 64M "$1"
  head -c $((4 * MiB)) /dev/urandom | dd of="$1" bs=1M seek=8 conv=notrunc status=none
}

# run_checks LABEL ARGS...: run the Python checks, one TAP line per check.
run_checks() {
  local label=$1 line rc; shift
  timeout 120 "$PY" "$ROOT/tests/lib/nbd-protocol-checks.py" "$@" >"$TMPD/$label.out" 2>&1
  rc=$?
  while IFS= read -r line; do
    case "$line" in
      "PASS "*) ok "$label: ${line#PASS }" ;;
      "FAIL "*) not_ok "$label: ${line#FAIL }" ;;
      *) echo "$line" ;;
    esac
  done <"$TMPD/$label.out"
  is "$label: the check script ran to the end" "$rc" 0
}

serve_pair() {   # serve_pair BINDIR TAG: rw + ro servers of $TMPD/TAG.img
  local bindir=$1 tag=$2
  make_image "$TMPD/$tag.img"
  BIN=$bindir start_server "$tag-rw" "$TMPD/$tag.img" || { not_ok "$tag: rw server starts"; exit 1; }
  RW_PID=$SERVER_PID RW_SOCK=$SOCK
  BIN=$bindir start_server "$tag-ro" -r "$TMPD/$tag.img" || { not_ok "$tag: ro server starts"; exit 1; }
  RO_PID=$SERVER_PID RO_SOCK=$SOCK
}

# -- the normal build, with the memory check (none in the suite's sanitizer
#    pass, where $BIN is an ASan build too)
serve_pair "$BIN" plain
run_checks plain --rw "$RW_SOCK" --ro "$RO_SOCK" --image "$TMPD/plain.img" --pid "$RW_PID" \
  $([ "$SANITIZED" = 1 ] && echo --no-rss)
kill -TERM "$RW_PID" "$RO_PID"
wait "$RW_PID"; is "plain: rw server exits 0 on SIGTERM" "$?" 0
wait "$RO_PID"; is "plain: ro server exits 0 on SIGTERM" "$?" 0
[ ! -e "$RW_SOCK" ]; is "plain: socket removed on exit" "$?" 0

# -- the sanitizer build: same checks (no RSS limit under ASan), then a clean
#    exit with no sanitizer report (LeakSanitizer runs at exit).
serve_pair "$SAN/bin" san
run_checks san --rw "$RW_SOCK" --ro "$RO_SOCK" --image "$TMPD/san.img" --pid "$RW_PID" --no-rss
kill -TERM "$RW_PID" "$RO_PID"
wait "$RW_PID"; is "san: rw server exits 0 on SIGTERM" "$?" 0
wait "$RO_PID"; is "san: ro server exits 0 on SIGTERM" "$?" 0
if grep -qE 'Sanitizer|runtime error' "$TMPD/san-rw.log" "$TMPD/san-ro.log"; then
  not_ok "san: no sanitizer reports"; diag "$(grep -hE -A20 'Sanitizer|runtime error' "$TMPD"/san-*.log | head -60)"
else
  ok "san: no sanitizer reports"
fi
exit $((_tap_failed > 0))
