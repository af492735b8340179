#!/usr/bin/env bash
# Mounting at boot from dismtab(5), natively (loop+FUSE here; the VM test
# 85-vm-boot.t does it on /dev/nbdN):
#  * the parser: one bad line of each kind is reported as FILE:LINE: what is
#    wrong (dism-generator --check and the generator itself), and the good
#    lines around them still get their units;
#  * the generator's units: names (systemd-escape --path), ExecStart/ExecStop,
#    RequiresMountsFor, After= in file order, requires vs wants (nofail),
#    timeouts, quoting of spaces, '%' and '$'; `systemd-analyze verify`;
#  * the units' commands run here in order: a VHDX read/write with commit, a
#    WIM by name read-only in a folder with a space, a VHD read/write "keep,
#    remount" in a folder created by "mkdir"; the files are there; starting
#    again is harmless; ExecStop commits / discards / parks;
#  * a simulated reboot (servers killed -9, mounts lazily dropped, the run dir
#    cleared): the mounts are NeedsRemount; the "remount" entry comes back
#    with its changes through its own ExecStart, an entry without "remount"
#    fails saying how to recover, dism-remount.service's `dism-boot remount
#    --all` brings back the rest;
#  * make install / uninstall of the generator, dism-boot, the unit, dismtab(5).
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd systemd-analyze systemd-escape groff
GEN=$BIN/dism-generator BOOT=$BIN/dism-boot
need_file "$GEN" "$BOOT" "$DISM" "$CORPUS/wim/wimlib-mwl-MultiImage.wim"
export SYSTEMD_LOG_TARGET=console   # the generator's messages on stderr, not in the kernel log
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
status_of() { dism /Get-MountedImageInfo /Format:json | $PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    if m["mount_dir"] == sys.argv[1]: print(m["status"])' "$1"; }
# unit_cmd UNITFILE KEY: run the unit's KEY= command as systemd would (its
# quoting, "%%" and "$$", a leading "-"); output in $OUT, status in $RC.
unit_cmd() {
  OUT=$($PY - "$1" "$2" <<'EOF' 2>&1
import shlex, subprocess, sys
unit, key = sys.argv[1], sys.argv[2]
lines = [l.rstrip('\n')[len(key) + 1:] for l in open(unit, encoding='utf-8') if l.startswith(key + '=')]
if len(lines) != 1:
    print('%s: %d %s= lines' % (unit, len(lines), key)); sys.exit(99)
v = lines[0].lstrip('-').replace('%%', '%').replace('$$', '$')
sys.exit(subprocess.run(shlex.split(v)).returncode)
EOF
); RC=$?
}
unit_key() { sed -n "s/^$2=//p" "$1"; }   # unit_key UNITFILE KEY: its values
unit_for() { echo "$OUTD/$(systemd-escape --path --template=dism-mount@.service "$1")"; }
control() { $PY - "$1" "$2" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2] + "\n").encode())
print(s.recv(4096).decode().strip())
PYEOF
}

# ============ 1. the parser: every kind of bad line, with file and line =============
T=$TMPD/tab
mkdir -p "$T"
BAD=$T/dismtab
: > "$BAD"
declare -A want   # line number -> regex of its message
good_lines=()
n=0
add() {  # add good|bad LINE [REGEX]; $n is its line number
  n=$((n + 1)); printf '%s\n' "$2" >> "$BAD"
  if [ "$1" = bad ]; then want[$n]=$3; else good_lines+=("$n"); fi
}
add good '# a comment, then a blank line'
add good ''
add good '/img/good1.vhdx   1   /mnt/good1   rw,commit'
add bad  '/img/a.vhdx 1' '2 fields: expected IMAGE INDEX\|name=NAME MOUNTDIR \[OPTIONS\]'
add bad  '/img/a.vhdx 1 /mnt/a b c' '5 fields: expected at most 4 .*\\040'
add bad  'img/a.vhdx 1 /mnt/a' "image 'img/a.vhdx' is not an absolute path"
add bad  '/img/a.iso 1 /mnt/a' 'image /img/a.iso is not a .wim, .vhd or .vhdx file'
add bad  '/img/a.swm 1 /mnt/a' 'image /img/a.swm is a split WIM \(.swm\): split WIM files cannot be mounted'
add bad  '/img/a.wim zero /mnt/a' "index 'zero' is not a number from 1 \(or name=NAME for a WIM image\)"
add bad  '/img/a.wim 0 /mnt/a' "index '0' is not a number from 1"
add bad  '/img/a.wim 99999999999 /mnt/a' "index '99999999999' is not a number from 1"
add bad  '/img/a.wim name= /mnt/a' "'name=' needs the WIM image's name"
add bad  '/img/a.vhdx 2 /mnt/a' '/img/a.vhdx is a VHD/VHDX, which holds one image: the index must be 1, not 2'
add bad  '/img/a.vhd name=Win /mnt/a' '/img/a.vhd is a VHD/VHDX: it holds one image, chosen with index 1'
add bad  '/img/a.vhdx 1 mnt/a' "mount folder 'mnt/a' is not an absolute path"
add bad  '/img/a.vhdx 1 /' "mount folder is '/': mounting to the root of a file system is not allowed"
add bad  '/img/a.vhdx 1 //' "mount folder is '/'"
add bad  '/img/a.vhdx 1 /mnt/../etc' "mount folder '/mnt/../etc' has a '.' or '..' component"
add bad  '/img/./a.vhdx 1 /mnt/a' "image '/img/./a.vhdx' has a '.' or '..' component"
add bad  '/img/b.vhdx 1 /mnt/good1/ ro' 'mount folder /mnt/good1 is already used on line 3'
add bad  '/img/good1.vhdx 1 /mnt/other ro' 'image /img/good1.vhdx is already mounted on line 3, and a VHD/VHDX mounted read/write cannot be mounted twice'
add bad  '/img/a.vhdx 1 /mnt/a bogus' "unknown option 'bogus' \(known: ro, rw, commit, discard, keep, remount, nofail, scratch=DIR"
add bad  '/img/a.vhdx 1 /mnt/a ro=yes' "option 'ro' takes no value \(found 'ro=yes'\)"
add bad  '/img/a.vhdx 1 /mnt/a ro,scratch' "option 'scratch' needs a value \(scratch=DIR\)"
add bad  '/img/a.vhdx 1 /mnt/a ro,scratch=rel/dir' "scratch= 'rel/dir' is not an absolute path"
add bad  '/img/a.vhdx 1 /mnt/a ro,scratch=/s,scratch=/t' "option 'scratch=' is given twice"
add bad  '/img/a.vhdx 1 /mnt/a ro,log=' "option 'log' needs a value \(log=FILE\)"
add bad  '/img/a.vhdx 1 /mnt/a ro,timeout=5m' "timeout '5m' is not a number of seconds"
add bad  '/img/a.vhdx 1 /mnt/a ro,rw' "options 'ro' and 'rw' are both given"
add bad  '/img/a.vhdx 1 /mnt/a rw,commit,discard' "options 'commit' and 'discard' are both given"
add bad  '/img/a.vhdx 1 /mnt/a rw' "a read/write entry needs 'commit', 'discard' or 'keep': what happens to its changes at shutdown"
add bad  '/img/a.vhdx 1 /mnt/a ro,commit' "'commit' needs a read/write entry \('rw'\)"
add bad  '/img/a.vhdx 1 /mnt/a ro,,nofail' "options 'ro,,nofail': empty option"
add bad  '/img/a.vhdx 1 /mnt/a ro,' "options 'ro,': empty option"
add bad  '/img/a\x.vhdx 1 /mnt/a' "image '/img/a\\\\x.vhdx': bad escape '\\\\x.v': write \\\\NNN with three octal digits"
add bad  '/img/a.vhdx 1 /mnt/a\04' "mount folder '/mnt/a\\\\04': bad escape '\\\\04'"
add bad  '/img/a\000.vhdx 1 /mnt/a' "image '/img/a\\\\000.vhdx': the escape '\\\\000' gives a NUL byte, which is not allowed"
add bad  '/img/a\012.vhdx 1 /mnt/a' "image '/img/a\\\\012.vhdx': the escape '\\\\012' gives a control character"
add bad  '/img/a\777.vhdx 1 /mnt/a' "image '/img/a\\\\777.vhdx': the escape '\\\\777' gives a value over 255"
add bad  $'/img/a\a.vhdx 1 /mnt/a' 'control character 0x07 in the line'
add bad  $'/img/\xff.vhdx 1 /mnt/a' "image '/img/\\\\377.vhdx' is not valid UTF-8 \\(systemd units need UTF-8"
add bad  '/img/a.vhdx 1 /mnt/\355\240\200' "mount folder '/mnt/\\\\355\\\\240\\\\200' is not valid UTF-8"
add bad  "/img/$(head -c 4100 /dev/zero | tr '\0' x).vhdx 1 /mnt/a" "image '/img/x{100,}.*\.\.\.' is too long \(4110 bytes; at most 4095\)"
add good '/img/Good\040Two.wim  name=Windows\04011\040Pro  /mnt/good\0402  rw,keep,remount,nofail,timeout=0,x-ignored=1  # comment'
L_TWO=$n
add bad  '/img/good1.vhdx 1 /mnt/third rw,discard' 'image /img/good1.vhdx is already mounted on line 3'
add good $'/img/good3%$.vhd\t1\t/mnt/good3%$-x\tdefaults,checkintegrity,optimize,mkdir,scratch=/var/tmp/s,log=/var/log/t.log\r'
L_3=$n
add bad  '/img/Good\040Two.wim 2 /mnt/w2 rw,commit' "image /img/Good Two.wim is already mounted on line $L_TWO, and a WIM file has one read/write mount at most"
add good '/img/Good\040Two.wim 3 /mnt/w3'
L_W3=$n
printf '/img/a.vhdx 1 /mnt/\0nul\n' >> "$BAD"; n=$((n + 1)); want[$n]='the line contains a NUL byte'
add bad  "/img/long.vhdx 1 /mnt/$(head -c 240 /dev/zero | tr '\0' y)" 'the mount folder /mnt/y{240} is too long for a unit name'
add good '/img/last.vhdx 1 /mnt/last ro   '
L_LAST=$n
nbad=${#want[@]}
diag "dismtab with $n lines: ${#good_lines[@]} good or blank, $nbad bad"

# --check: the problems on stderr, the units on stdout
"$GEN" --check "$BAD" > "$T/check.out" 2> "$T/check.err"
is "--check of a dismtab with bad lines: exit 1" "$?" 1
is "  one message per bad line ($nbad)" "$(wc -l < "$T/check.err")" "$nbad"
for l in $(printf '%s\n' "${!want[@]}" | sort -n); do
  like "  line $l: ${want[$l]}" "$(grep "^$BAD:$l: " "$T/check.err")" "^$BAD:$l: ${want[$l]}"
done
is "  the good lines are listed with their unit" "$(cut -d: -f2,3 "$T/check.out" | tr '\n' ' ')" \
  "3: dism-mount@mnt-good1.service $L_TWO: dism-mount@mnt-good\\x202.service $L_3: dism-mount@mnt-good3\\x25\\x24\\x2dx.service $L_W3: dism-mount@mnt-w3.service $L_LAST: dism-mount@mnt-last.service "
like "  with what they do" "$(sed -n 2p "$T/check.out")" \
  "/img/Good Two.wim image Windows 11 Pro at /mnt/good 2, read/write, keep at shutdown, remount, nofail$"

printf '/img/grüße.vhdx 1 /mnt/ü\n' > "$T/utf8"
printf '/img/gr\\303\\274\\303\\237e.vhdx 1 /mnt/\\303\\274\n' > "$T/utf8-escaped"
is "UTF-8 in paths, raw or escaped (\\303\\274): accepted, the same entry" \
  "$("$GEN" --check "$T/utf8" 2>&1 | cut -d: -f2-)" "$("$GEN" --check "$T/utf8-escaped" 2>&1 | cut -d: -f2-)"
like "  unit dism-mount@mnt-\\xc3\\xbc.service" "$("$GEN" --check "$T/utf8" 2>&1)" '1: dism-mount@mnt-\\xc3\\xbc\.service: /img/grüße\.vhdx index 1 at /mnt/ü, read-only'

# the generator itself: messages (FILE:LINE, "line skipped"), exit 1, the good units
OUTD=$T/out; mkdir -p "$OUTD"
DISMTAB=$BAD "$GEN" "$OUTD" 2> "$T/gen.err"
is "the generator with bad lines: exit 1" "$?" 1
is "  one message per bad line" "$(grep -c "^dism-generator: $BAD:[0-9]*: .*; line skipped$" "$T/gen.err")" "$nbad"
like "  e.g. line 7" "$(sed -n 4p "$T/gen.err")" "^dism-generator: $BAD:7: image /img/a.iso is not a .wim, .vhd or .vhdx file; line skipped$"
is "  a unit for each good line, and only those" "$(cd "$OUTD" && ls -1 ./*.service | LC_ALL=C sort | tr '\n' ' ')" \
  "$(printf './dism-mount@%s.service\n' mnt-good1 'mnt-good\x202' 'mnt-good3\x25\x24\x2dx' mnt-last mnt-w3 | LC_ALL=C sort | tr '\n' ' ')"

mkdir -p "$T/none"
DISMTAB=$T/missing "$GEN" "$T/none" 2> "$T/none.err"
is "no dismtab: exit 0" "$?" 0
is "  no units, no messages" "$(ls -A "$T/none")$(cat "$T/none.err")" ""
DISMTAB=$T "$GEN" "$T/none" 2> "$T/dir.err"
is "a dismtab that cannot be read: exit 1" "$?" 1
is "  FILE: why" "$(cat "$T/dir.err")" "dism-generator: $T: cannot read: Is a directory"
"$GEN" --check "$T/missing" > /dev/null 2> "$T/missing.err"
is "--check of a missing file: exit 1" "$?" 1
like "  says so" "$(cat "$T/missing.err")" "no such file"
head -c 1100000 /dev/zero | tr '\0' '#' > "$T/big"
"$GEN" --check "$T/big" > /dev/null 2> "$T/big.err"
is "a dismtab over 1 MiB is refused" "$(cat "$T/big.err")" "$T/big: the file is larger than 1048576 bytes"
check "the generator needs an output directory" bash -c "! '$GEN' /nonexistent 2>/dev/null"
check "  and refuses a wrong number of arguments" bash -c "'$GEN' a b 2>/dev/null; [ \$? = 2 ]"

# ============ 2. the units ============================================================
U1=$(unit_for /mnt/good1) U2=$(unit_for "/mnt/good 2") U3=$(unit_for '/mnt/good3%$-x')
U5=$(unit_for /mnt/w3) U6=$(unit_for /mnt/last)
check "unit names are systemd-escape --path of the folder" test -f "$U1" -a -f "$U2" -a -f "$U3" -a -f "$U5" -a -f "$U6"
is "rw,commit: ExecStart" "$(unit_key "$U1" ExecStart)" \
  "/usr/local/libexec/dism/dism-boot start /usr/local/sbin/dism /Quiet /Mount-Image /ImageFile:/img/good1.vhdx /Index:1 /MountDir:/mnt/good1"
is "  ExecStop commits" "$(unit_key "$U1" ExecStop)" "/usr/local/sbin/dism /Quiet /Unmount-Image /MountDir:/mnt/good1 /Commit"
is "  RequiresMountsFor: image, folder, state and log" "$(unit_key "$U1" RequiresMountsFor)" \
  "/img/good1.vhdx /mnt/good1 /var/lib/dism /var/log/dism"
is "  the first entry is ordered after dism-remount.service only" "$(unit_key "$U1" After | tr '\n' ' ')" "dism-remount.service "
is "  oneshot, stays active, 900 s limits, journal" \
  "$(grep -E '^(Type|RemainAfterExit|TimeoutStartSec|TimeoutStopSec|StandardOutput|StandardError)=' "$U1" | tr '\n' ' ')" \
  "Type=oneshot RemainAfterExit=yes TimeoutStartSec=900 TimeoutStopSec=900 StandardOutput=journal StandardError=journal "
like "  names its source line" "$(head -1 "$U1")" "generated by dism-generator from $BAD, line 3\.$"
is "  SourcePath" "$(unit_key "$U1" SourcePath)" "$BAD"
is "WIM by name, keep, remount: ExecStart (quoted words)" "$(unit_key "$U2" ExecStart)" \
  '/usr/local/libexec/dism/dism-boot start --remount /usr/local/sbin/dism /Quiet /Mount-Image "/ImageFile:/img/Good Two.wim" "/Name:Windows 11 Pro" "/MountDir:/mnt/good 2"'
is "  ExecStop parks (keep)" "$(unit_key "$U2" ExecStop)" '/usr/local/libexec/dism/dism-boot park "/mnt/good 2"'
is "  ordered after the previous good entry" "$(unit_key "$U2" After | tr '\n' ' ')" "dism-remount.service dism-mount@mnt-good1.service "
is "  timeout=0: no limit" "$(unit_key "$U2" TimeoutStartSec) $(unit_key "$U2" TimeoutStopSec)" "infinity infinity"
is "  RequiresMountsFor quotes paths with spaces" "$(unit_key "$U2" RequiresMountsFor)" \
  '"/img/Good Two.wim" "/mnt/good 2" /var/lib/dism /var/log/dism'
is "'%' and '\$' (tabs, CRLF): ExecStart" "$(unit_key "$U3" ExecStart)" \
  '/usr/local/libexec/dism/dism-boot start --mkdir /usr/local/sbin/dism /Quiet /LogPath:/var/log/t.log /ScratchDir:/var/tmp/s /Mount-Image /ImageFile:/img/good3%%$$.vhd /Index:1 /MountDir:/mnt/good3%%$$-x /ReadOnly /Optimize /CheckIntegrity'
is "  read-only default: ExecStop discards" "$(unit_key "$U3" ExecStop)" \
  '/usr/local/sbin/dism /Quiet /LogPath:/var/log/t.log /Unmount-Image /MountDir:/mnt/good3%%$$-x /Discard'
is "  RequiresMountsFor with the log and scratch" "$(unit_key "$U3" RequiresMountsFor)" \
  '/img/good3%%$.vhd /mnt/good3%%$-x /var/lib/dism /var/log/t.log /var/tmp/s'
is "  Description doubles '%'" "$(unit_key "$U3" Description)" 'DISM mount of /img/good3%%$.vhd at /mnt/good3%%$-x'
is "the chain goes on in file order" "$(unit_key "$U5" After | tail -1) $(unit_key "$U6" After | tail -1)" \
  'dism-mount@mnt-good3\x25\x24\x2dx.service dism-mount@mnt-w3.service'
is "multi-user.target requires the entries, wants the nofail ones" \
  "$(cd "$OUTD" && find . -type l | LC_ALL=C sort | tr '\n' ' ')" \
  './multi-user.target.requires/dism-mount@mnt-good1.service ./multi-user.target.requires/dism-mount@mnt-good3\x25\x24\x2dx.service ./multi-user.target.requires/dism-mount@mnt-last.service ./multi-user.target.requires/dism-mount@mnt-w3.service ./multi-user.target.wants/dism-mount@mnt-good\x202.service '
is "  the links point at the units" "$(readlink "$OUTD/multi-user.target.requires/$(basename "$U6")")" "../$(basename "$U6")"
check "  and resolve" test -f "$OUTD/multi-user.target.requires/$(basename "$U6")"

# systemd-analyze verify: real binaries (in a folder with a space, so argv[0]
# is quoted too), a dismtab whose paths exist
SB="$T/bin dir"; mkdir -p "$SB"; ln -s "$DISM" "$SB/dism"; ln -s "$BOOT" "$SB/dism-boot"
V=$T/verify; mkdir -p "$V/out"
cp "$BAD" "$V/dismtab"
DISMTAB=$V/dismtab DISM_CLI="$SB/dism" DISM_BOOT="$SB/dism-boot" "$GEN" "$V/out" 2>/dev/null
like "DISM_CLI/DISM_BOOT name the commands" "$(unit_key "$(ls "$V"/out/*good1.service)" ExecStart)" "^\"$SB/dism-boot\" start \"$SB/dism\" /Quiet "
out=$(cd "$V/out" && systemd-analyze verify --man=no ./*.service 2>&1); rc=$?
is "systemd-analyze verify of the generated units: exit 0" "$rc" 0
is "  and not one warning" "$out" ""
mkdir -p "$V/static"
sed "s|/usr/local/libexec/dism/dism-boot|$BOOT|" "$ROOT/$BUILD/udev/dism-remount.service" > "$V/static/dism-remount.service"
is "systemd-analyze verify of dism-remount.service: no warning" \
  "$(cd "$V/static" && systemd-analyze verify --man=no ./dism-remount.service 2>&1)" ""
sed -i 's/^RequiresMountsFor=/RequiresMountsFor=relative /' "$V"/out/*good1.service
like "  (verify does see problems: a broken unit warns)" "$(cd "$V/out" && systemd-analyze verify --man=no ./*good1.service 2>&1)" "not absolute"

# ============ 3. running the units' commands ============================================
make_windows_disk "$TMPD/disk.raw" 48 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/a.vhdx"
make_vhd "$TMPD/disk.raw" "$TMPD/c.vhd"
make_vhdx "$TMPD/disk.raw" "$TMPD/d.vhdx"
cp "$CORPUS/wim/wimlib-mwl-MultiImage.wim" "$TMPD/multi image.wim"; chmod u+w "$TMPD/multi image.wim"
wim_sum=$(sha256sum < "$TMPD/multi image.wim")
mkdir -p "$TMPD/m1" "$TMPD/m 2" "$TMPD/m4"
LOGF=$TMPD/dism.log
esc() { printf '%s' "$1" | sed 's/ /\\040/g'; }
cat > "$TMPD/dismtab" <<EOF
# entries mounted at "boot" by this test
$TMPD/a.vhdx   1   $TMPD/m1   rw,commit,log=$LOGF
$(esc "$TMPD/multi image.wim")  name=Changes  $(esc "$TMPD/m 2")  ro,log=$LOGF
$TMPD/c.vhd    1   $TMPD/m3   rw,keep,remount,mkdir,log=$LOGF
$TMPD/d.vhdx   1   $TMPD/m4   rw,discard,log=$LOGF
EOF
OUTD=$TMPD/units; mkdir -p "$OUTD"
DISMTAB=$TMPD/dismtab DISM_CLI=$DISM DISM_BOOT=$BOOT "$GEN" "$OUTD" 2> "$TMPD/gen.err"
is "generator on the test's dismtab: exit 0, no messages" "$?:$(cat "$TMPD/gen.err")" "0:"
E1=$(unit_for "$TMPD/m1") E2=$(unit_for "$TMPD/m 2") E3=$(unit_for "$TMPD/m3") E4=$(unit_for "$TMPD/m4")
out=$(cd "$OUTD" && systemd-analyze verify --man=no ./*.service 2>&1)
is "  systemd-analyze verify: no warning" "$out" ""
# boot order: follow After= from the unit that follows no other entry
order=() u=
for _ in 1 2 3 4; do
  for f in "$OUTD"/*.service; do
    prev=$(unit_key "$f" After | grep '^dism-mount@' || true)
    if [ "$prev" = "$u" ] && [[ " ${order[*]} " != *" $(basename "$f") "* ]]; then u=$(basename "$f"); order+=("$u"); break; fi
  done
done
is "the After= chain is the file order" "${order[*]}" "$(basename "$E1") $(basename "$E2") $(basename "$E3") $(basename "$E4")"
for u in "${order[@]}"; do
  unit_cmd "$OUTD/$u" ExecStart
  is "ExecStart of $u: exit 0" "$RC" 0 || diag "$OUT"
done
is "m1 (VHDX rw): the image's files" "$(cat "$TMPD/m1/hello.txt" 2>&1)" "hello from the image"
is "  Ok, read/write" "$(status_of "$TMPD/m1")" "Ok"
is "m 2 (WIM by name, ro): image Changes' files" "$(cd "$TMPD/m 2" && find . -type f | LC_ALL=C sort | tr '\n' ' ')" "./B/C.txt ./B/D.ini ./Z.txt "
check "  read-only" bash -c "! touch '$TMPD/m 2/x' 2>/dev/null"
check "m3 (VHD): its folder was created (mkdir) and mounted" mountpoint -q "$TMPD/m3"
is "  the image's files" "$(cat "$TMPD/m3/hello.txt" 2>&1)" "hello from the image"
is "m4 (VHDX rw discard): mounted" "$(cat "$TMPD/m4/hello.txt" 2>&1)" "hello from the image"
unit_cmd "$E1" ExecStart
is "ExecStart again on a live mount: exit 0" "$RC" 0
like "  says it is already mounted" "$OUT" "already mounted at $TMPD/m1 \(status Ok\): nothing to do"
is "  still one mount at m1" "$(dism /Get-MountedImageInfo /Format:json | grep -c "\"$TMPD/m1\"")" 1
run /Unmount-Image /MountDir:"$TMPD/m4" /Discard
run /Mount-Image /ImageFile:"$TMPD/multi image.wim" /Index:1 /MountDir:"$TMPD/m4" /ReadOnly
is "(m4 holds a read-only mount of the WIM's image 1 instead)" "$RC" 0
unit_cmd "$E4" ExecStart
is "ExecStart on a folder holding another mount: exit 1" "$RC" 1
like "  says what is there and what to do" "$OUT" "$TMPD/m4 already holds another mount: $TMPD/multi image.wim index 1 \(Base\), read-only, status Ok; this entry wants $TMPD/d.vhdx index 1 \(read/write\)\. Unmount the other one first"
check "  the other mount is untouched" test -e "$TMPD/m4/A.txt"
run /Unmount-Image /MountDir:"$TMPD/m4" /Discard
unit_cmd "$E4" ExecStart
is "  once it is gone the entry mounts: exit 0" "$RC" 0

echo "committed at shutdown" > "$TMPD/m1/shutdown.txt"
echo "discarded at shutdown" > "$TMPD/m4/junk.txt"
echo "kept across the shutdown" > "$TMPD/m3/kept.txt"
d_sum=$(sha256sum < "$TMPD/d.vhdx")
declare -A stop_out
for ((i=${#order[@]}-1; i>=0; i--)); do
  unit_cmd "$OUTD/${order[$i]}" ExecStop
  is "ExecStop of ${order[$i]} (reverse order): exit 0" "$RC" 0 || diag "$OUT"
  stop_out[$i]=$OUT
done
check "every folder is unmounted" bash -c "! mountpoint -q '$TMPD/m1' && ! mountpoint -q '$TMPD/m 2' && ! mountpoint -q '$TMPD/m3' && ! mountpoint -q '$TMPD/m4'"
is "commit: a.vhdx holds the file written at m1" "$(image_file "$TMPD/a.vhdx" shutdown.txt)" "committed at shutdown"
is "discard: d.vhdx is unchanged" "$(sha256sum < "$TMPD/d.vhdx")" "$d_sum"
is "the WIM is unchanged" "$(sha256sum < "$TMPD/multi image.wim")" "$wim_sum"
is "keep: the VHD's mount is parked, Needs Remount" "$(status_of "$TMPD/m3")" "NeedsRemount"
like "  ExecStop said so" "${stop_out[2]}" "parked $TMPD/m3: unmounted and its server stopped; the changes are kept in .*\.ovl"
is "  no server left" "$(pgrep -f "dism-nbd-server.*$DISM_RUN_DIR" || true)" ""
is "  only its record is left" "$(dism /Get-MountedImageInfo /Format:json | grep -c mount_dir)" 1
unit_cmd "$E3" ExecStart
is "next boot: the keep,remount entry's ExecStart: exit 0" "$RC" 0 || diag "$OUT"
like "  it remounted" "$OUT" "needs a remount .*remounting it with its changes"
is "  Ok" "$(status_of "$TMPD/m3")" "Ok"
is "  the change made before the shutdown is back" "$(cat "$TMPD/m3/kept.txt" 2>&1)" "kept across the shutdown"

# ============ 4. a simulated reboot ============================================================
# m3 (keep,remount) is live again; m1 (rw,commit) is mounted by its unit and
# m5 by hand (not in the dismtab); then the machine "crashes".
unit_cmd "$E1" ExecStart
is "m1 mounted again by its unit" "$RC" 0
unit_cmd "$E2" ExecStart
is "m 2 (the WIM, read-only) too" "$RC" 0
mkdir -p "$TMPD/m5"; make_vhdx "$TMPD/disk.raw" "$TMPD/e.vhdx"
run /Mount-Image /ImageFile:"$TMPD/e.vhdx" /Index:1 /MountDir:"$TMPD/m5"
is "m5 mounted by hand" "$RC" 0
echo "written before the crash" > "$TMPD/m3/crash.txt"
echo "m1 before the crash" > "$TMPD/m1/crash.txt"
echo "m5 before the crash" > "$TMPD/m5/crash.txt"
sync
for c in "$DISM_RUN_DIR"/mounts/*/control.sock; do control "$c" FLUSH >/dev/null; done
for f in "$DISM_RUN_DIR"/mounts/*/server.pid; do kill -9 "$(cat "$f")"; done
sleep 0.3
for d in m1 "m 2" m3 m5; do umount -l "$TMPD/$d"; done
for conf in "$DISM_STATE_DIR"/mounts/*.conf; do
  dev=$(sed -n 's/^attach.fs_dev=//p' "$conf")
  [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
done
for f in $(awk -v r="$DISM_RUN_DIR/mounts/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo); do
  umount -l "$f"
done
rm -rf "$DISM_RUN_DIR"
is "after the reboot: m1, m 2, m3, m5 are Needs Remount" \
  "$(status_of "$TMPD/m1") $(status_of "$TMPD/m 2") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" \
  "NeedsRemount NeedsRemount NeedsRemount NeedsRemount"
unit_cmd "$E2" ExecStart
is "boot: the read-only WIM's unit (no remount option): exit 0" "$RC" 0 || diag "$OUT"
like "  a read-only mount has nothing to lose: remounted" "$OUT" "needs a remount .*remounting it \(read-only\)"
is "  Ok, the image's files" "$(status_of "$TMPD/m 2") $(cat "$TMPD/m 2/Z.txt" | wc -c)" "Ok 1"
unit_cmd "$E3" ExecStart
is "boot: m3's unit (remount): exit 0" "$RC" 0 || diag "$OUT"
is "  Ok" "$(status_of "$TMPD/m3")" "Ok"
is "  the file written before the crash is back" "$(cat "$TMPD/m3/crash.txt" 2>&1)" "written before the crash"
is "  and the one from before the clean shutdown" "$(cat "$TMPD/m3/kept.txt" 2>&1)" "kept across the shutdown"
unit_cmd "$E1" ExecStart
is "boot: m1's unit (no remount option): exit 1" "$RC" 1
like "  says it needs a remount and how" "$OUT" "$TMPD/a.vhdx at $TMPD/m1 needs a remount .*Run dism /Remount-Image /MountDir:$TMPD/m1, or add the option 'remount'"
is "  still Needs Remount (nothing lost)" "$(status_of "$TMPD/m1")" "NeedsRemount"
"$BOOT" remount --log "$LOGF" --all > "$TMPD/remount.out" 2>&1
is "dism-remount.service's ExecStart (dism-boot remount --all): exit 0" "$?" 0
like "  it remounted m1 and m5" "$(cat "$TMPD/remount.out")" "remounted $TMPD/m[15].*remounted $TMPD/m[15].*2 mounts needed a remount"
is "  every mount is Ok" "$(status_of "$TMPD/m1") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" "Ok Ok Ok"
is "  m1's file is back" "$(cat "$TMPD/m1/crash.txt" 2>&1)" "m1 before the crash"
is "  m5's file is back" "$(cat "$TMPD/m5/crash.txt" 2>&1)" "m5 before the crash"
unit_cmd "$E1" ExecStart
is "  then m1's unit starts fine (already mounted)" "$RC" 0
"$BOOT" remount --all > "$TMPD/remount.out" 2>&1
like "remount --all with nothing to do" "$(cat "$TMPD/remount.out")" "0 mounts needed a remount"
"$BOOT" park --log "$LOGF" --own > "$TMPD/park.out" 2>&1
is "dism-remount.service's ExecStop (park --own): exit 0" "$?" 0
is "  parked every mount whose server runs in its cgroup (here: all)" \
  "$(status_of "$TMPD/m1") $(status_of "$TMPD/m3") $(status_of "$TMPD/m5")" "NeedsRemount NeedsRemount NeedsRemount"
"$BOOT" remount --log "$LOGF" "$TMPD/m5" > /dev/null 2>&1
is "dism-boot remount DIR" "$(status_of "$TMPD/m5")" "Ok"
check_fail "dism-boot park of a folder without a mount fails" "$BOOT" park "$TMPD"
check_fail "dism-boot park with no target is a usage error" "$BOOT" park
unit_cmd "$E3" ExecStop
unit_cmd "$E3" ExecStart
dism /Remount-Image /MountDir:"$TMPD/m1" >/dev/null 2>&1
unit_cmd "$E1" ExecStop
is "m1's ExecStop commits after all that" "$RC" 0
is "  a.vhdx has the file from before the crash" "$(image_file "$TMPD/a.vhdx" crash.txt)" "m1 before the crash"
run /Unmount-Image /MountDir:"$TMPD/m5" /Discard
run /Unmount-Image /MountDir:"$TMPD/m3" /Commit
unit_cmd "$E2" ExecStop
# an Invalid mount in an entry's folder: its overlay is gone
unit_cmd "$E4" ExecStart
"$BOOT" park "$TMPD/m4" >/dev/null 2>&1
rm -f "$(sed -n 's/^overlay=//p' "$(grep -l "^mount_dir=$TMPD/m4\$" "$DISM_STATE_DIR"/mounts/*.conf)")"
is "m4 parked and its overlay deleted: Invalid" "$(status_of "$TMPD/m4")" "Invalid"
unit_cmd "$E4" ExecStart
is "  its unit's ExecStart: exit 1" "$RC" 1
like "  says so and what to do" "$OUT" "the mount of $TMPD/d.vhdx at $TMPD/m4 is Invalid .*run dism /Cleanup-Mountpoints"
run /Cleanup-Mountpoints
unit_cmd "$E4" ExecStart
is "  after /Cleanup-Mountpoints it mounts: exit 0" "$RC" 0
unit_cmd "$E4" ExecStop
is "the rest unmounted" "$(dism /Get-MountedImageInfo /Format:json)" '{"mounted_images": []}'
is "  c.vhd holds both files" "$(image_file "$TMPD/c.vhd" kept.txt)$(image_file "$TMPD/c.vhd" crash.txt)" \
  "kept across the shutdownwritten before the crash"

# ============ 5. make install / uninstall =============================================================
stage=$TMPD/stage P=/opt/dism-boot-test
make -s -C "$ROOT" install PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
check "make install succeeds" test $? -eq 0
for f in lib/systemd/system-generators/dism-generator libexec/dism/dism-boot \
         lib/systemd/system/dism-remount.service share/man/man5/dismtab.5 share/doc/dism/dismtab.example; do
  check "installed $f" test -e "$stage$P/$f"
done
check "  the generator and dism-boot are executable" test -x "$stage$P/lib/systemd/system-generators/dism-generator" -a -x "$stage$P/libexec/dism/dism-boot"
like "dism-remount.service names the installed dism-boot" "$(grep ^Exec "$stage$P/lib/systemd/system/dism-remount.service" | tr '\n' ' ')" \
  "^ExecStart=-$P/libexec/dism/dism-boot remount --all ExecStop=$P/libexec/dism/dism-boot park --own $"
mkdir -p "$TMPD/inst.out"
printf '/img/x.vhdx 1 /mnt/x\n' > "$TMPD/inst.tab"
env -u DISM_CLI -u DISM_BOOT DISMTAB=$TMPD/inst.tab "$stage$P/lib/systemd/system-generators/dism-generator" "$TMPD/inst.out"
is "the installed generator names the installed dism and dism-boot" "$(unit_key "$TMPD/inst.out/dism-mount@mnt-x.service" ExecStart)" \
  "$P/libexec/dism/dism-boot start $P/sbin/dism /Quiet /Mount-Image /ImageFile:/img/x.vhdx /Index:1 /MountDir:/mnt/x /ReadOnly"
# (In the suite's sanitizer pass, libc and the sanitizer runtimes.)
gen_libs=$(ldd "$stage$P/lib/systemd/system-generators/dism-generator" | awk '{print $1}' |
  grep -v -e linux-vdso -e ld-linux -e 'libc\.so')
[ "$SANITIZED" = 1 ] && gen_libs=$(grep -v -e '^libasan\.' -e '^libubsan\.' -e '^libm\.' \
  -e '^libgcc_s\.' -e '^libstdc++\.' <<<"$gen_libs")
is "the installed generator needs only libc" "$(echo $gen_libs)" ""
is "dismtab(5) is a roff page" "$(head -c 3 "$stage$P/share/man/man5/dismtab.5")" ".TH"
is "  groff renders it without a warning" "$(groff -man -ww -z -Tutf8 "$stage$P/share/man/man5/dismtab.5" 2>&1)" ""
make -s -C "$ROOT" uninstall PREFIX=$P DESTDIR="$stage" >/dev/null 2>&1
is "make uninstall removes every installed file" "$(find "$stage" -type f -o -type l)" ""
# install rebuilt the generator for $P: back to the default paths
make -s -C "$ROOT" "$BUILD/bin/dism-generator" "$BUILD/udev/dism-remount.service" >/dev/null 2>&1
