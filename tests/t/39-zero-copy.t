#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Zero-copy READ replies (sendfile from the page cache): every format, the
# differencing chains and the overlay read the same bytes with sendfile on
# and forced off (--no-sendfile, DISM_NBD_SENDFILE=0), against qemu-img's
# raw conversion or a raw model; simple and structured replies (holes as
# OFFSET_HOLE chunks); clients that vanish mid-reply never corrupt another
# connection's replies.  /proc/PID/io shows which path the server took.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd nbdcopy qemu-img sha256sum ss
need_file "$BIN/dism-nbd-server"
IO="$PY $ROOT/tests/lib/zero-copy-io.py"
MiB=$((1024 * 1024))

# srv NAME on|off|env ARGS...: start the server; SOCK and SPID are set.
srv() {
  local name=$1 mode=$2; shift 2
  local extra=() envv=()
  case $mode in off) extra=(--no-sendfile) ;; env) envv=(DISM_NBD_SENDFILE=0) ;; esac
  SOCK=$TMPD/$name.sock; rm -f "$SOCK"
  env "${envv[@]}" "$BIN/dism-nbd-server" --unix "$SOCK" "${extra[@]}" "$@" \
    2>>"$TMPD/$name.log" &
  SPID=$!
  tap_cleanup "kill $SPID 2>/dev/null; wait $SPID 2>/dev/null"
  for _ in $(seq 1 200); do
    [ -S "$SOCK" ] && return 0
    kill -0 $SPID 2>/dev/null || break
    sleep 0.05
  done
  diag "$(cat "$TMPD/$name.log")"
  return 1
}
# Bytes the server sent by sendfile: /proc/PID/io's wchar counts what write,
# writev and sendfile hand on, not sendmsg (the copy path).  No strace:
# LeakSanitizer cannot run under ptrace.
wchar() { awk '/^wchar:/ {print $2}' "/proc/$SPID/io"; }
stop() { kill "$SPID"; wait "$SPID" 2>/dev/null; }
sha() { sha256sum "$@" | cut -d' ' -f1; }

# differential NAME IMG REF [server args]: read IMG's export both ways.
differential() {
  local name=$1 img=$2 ref=$3 mode want; shift 3
  want=$(sha "$ref")
  for mode in on off; do
    srv "$name-$mode" $mode --readonly "$@" "$img" || { not_ok "$name ($mode): server starts"; continue; }
    is "$name, sendfile $mode: nbdcopy --connections=4 reads the reference" \
      "$(nbdcopy --connections=4 "$(uri "$SOCK")" - | sha)" "$want"
    like "$name, sendfile $mode: simple replies, uneven reads" "$($IO read "$SOCK" "$ref" simple)" '^equal'
    got=$($IO read "$SOCK" "$ref" structured)
    like "$name, sendfile $mode: structured replies, uneven reads" "$got" '^equal'
    sent=$(wchar)
    stop
    if [ $mode = on ]; then
      check "$name, sendfile on: data went by sendfile ($sent bytes)" test "${sent:-0}" -ge $MiB
    else
      check "$name, sendfile off: none by sendfile ($sent bytes)" test "${sent:-1}" -lt 65536
    fi
  done
}

# --- raw, VHD, VHDX from one sparse random raw -------------------------------
raw=$TMPD/src.raw
$PY "$ROOT/tests/lib/sparse-random-raw.py" "$raw"
differential raw "$raw" "$raw"
srv holes on --readonly "$raw"
got=$($IO read "$SOCK" "$raw" structured)
like "raw: structured replies carry OFFSET_HOLE chunks for the holes" "$got" '^equal holes=[1-9]'
got=$($IO read "$SOCK" "$raw" extended)
like "raw: extended headers, uneven reads, OFFSET_HOLE chunks" "$got" '^equal holes=[1-9]'
stop

for spec in "vpc-dyn.vhd vpc subformat=dynamic,force_size=on" \
            "vpc-fixed.vhd vpc subformat=fixed,force_size=on" \
            "vhdx-dyn.vhdx vhdx subformat=dynamic,block_size=1M" \
            "vhdx-fixed.vhdx vhdx subformat=fixed"; do
  set -- $spec
  qemu-img convert -f raw -O $2 -o $3 "$raw" "$TMPD/$1"
  qemu-img convert -f $2 -O raw "$TMPD/$1" "$TMPD/$1.ref"
  differential "$1" "$TMPD/$1" "$TMPD/$1.ref"
done

# --- differencing: VHD (writes make partial sector bitmaps), VHDX ----------
D=$TMPD/d; mkdir -p "$D"
cp "$TMPD/vpc-dyn.vhd" "$D/parent.vhd"
"$PY" "$ROOT/tests/lib/mkvhd.py" diff "$D/child.vhd" "$D/parent.vhd"
cp "$TMPD/vpc-dyn.vhd.ref" "$D/vhd-model.raw"
srv vhdw on "$D/child.vhd"
like "VHD child: unaligned writes and zeroes through the server" "$($IO write "$SOCK" "$D/vhd-model.raw")" '^written'
stop
differential vhd-diff "$D/child.vhd" "$D/vhd-model.raw"

head -c 32M "$raw" > "$D/base.raw"
qemu-img convert -f raw -O vhdx -o block_size=1M "$D/base.raw" "$D/base.vhdx"
head -c 32M /dev/urandom > "$D/c.raw"
PRESENT="1000:5000,2M:1M,5M:100K,9437184:512,15M:1M,20M:3M"
"$PY" "$ROOT/tests/lib/mkvhdx.py" create "$D/child.vhdx" --size 32M --block-size 1M \
  --parent "$D/base.vhdx" --data "$D/c.raw" --present "$PRESENT"
"$PY" "$ROOT/tests/lib/merge-present.py" "$D" "$PRESENT"
differential vhdx-diff "$D/child.vhdx" "$D/merged.raw"
srv vhdxw on "$D/child.vhdx"
like "VHDX child: unaligned writes and zeroes through the server" "$($IO write "$SOCK" "$D/merged.raw")" '^written'
stop
differential vhdx-diff-written "$D/child.vhdx" "$D/merged.raw"

# --- the overlay: DATA granules from its file, BASE from the VHDX below ----
cp "$TMPD/vhdx-dyn.vhdx.ref" "$TMPD/ovl-model.raw"
srv ovlw on --overlay "$TMPD/changes.ovl" "$TMPD/vhdx-dyn.vhdx"
like "overlay: writes and zeroes through the server" "$($IO write "$SOCK" "$TMPD/ovl-model.raw")" '^written'
stop
differential overlay "$TMPD/vhdx-dyn.vhdx" "$TMPD/ovl-model.raw" --overlay "$TMPD/changes.ovl"

# --- DISM_NBD_SENDFILE=0 is --no-sendfile ----------------------------------
srv envoff env --readonly "$raw"
is "DISM_NBD_SENDFILE=0: nbdcopy reads the image" \
  "$(nbdcopy "$(uri "$SOCK")" - | sha)" "$(sha "$raw")"
sent=$(wchar)
stop
check "DISM_NBD_SENDFILE=0: none by sendfile ($sent bytes)" test "${sent:-1}" -lt 65536

# --- the send buffer of zero-copy Unix connections ------------------------
# A 256 KiB reply must fit the socket's send buffer, or server and client
# take turns (one nbdcopy connection at half speed, docs/benchmarks.md): the
# server asks for 4 MiB, which the kernel caps at wmem_max and doubles.
# tb is the server end's sk_sndbuf while a client holds the connection.
sndbuf() {
  $PY -c 'import nbd, subprocess, sys
h = nbd.NBD(); h.connect_unix(sys.argv[1]); h.pread(4096, 0)
print(subprocess.run(["ss", "-xmpH"], capture_output=True, text=True).stdout)' "$SOCK" |
    grep "pid=$SPID," | sed -n 's/.*skmem:([^)]*tb\([0-9]*\).*/\1/p' | head -1
}
wmem_max=$(cat /proc/sys/net/core/wmem_max)
want=$(( (wmem_max < 4 * MiB ? wmem_max : 4 * MiB) * 2 ))
srv sndbuf-on on --readonly "$raw"
is "Unix socket, sendfile on: the send buffer is min(4 MiB, wmem_max) doubled" "$(sndbuf)" "$want"
stop
srv sndbuf-off off --readonly "$raw"
is "Unix socket, sendfile off: the send buffer is the default" "$(sndbuf)" "$(cat /proc/sys/net/core/wmem_default)"
stop

# --- clients vanishing mid-reply --------------------------------------------
# Between them, a client reading and checking on two more connections.
srv cut on --readonly "$raw"
like "vanishing clients: every other reply whole and right" "$($IO cut "$SOCK" "$raw" 24)" '^intact [1-9]'
check "vanishing clients: the server still runs" kill -0 "$SPID"
stop
check_fail "vanishing clients: nothing logged as an image error" grep -q 'image ended' "$TMPD/cut.log"

# --- the image cut short under the server: no reply taken as whole ---------
cp "$raw" "$TMPD/cut.raw"
srv short on --readonly "$TMPD/cut.raw"
truncate -s 8M "$TMPD/cut.raw"
like "file cut short: the end's READ is refused or dropped, never whole" "$($IO short "$SOCK" "$raw")" '^refused: dropped'
stop
like "file cut short: the server says why" "$(cat "$TMPD/short.log")" 'image ended at offset [0-9]+ inside a READ reply'
