#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Mounting at boot from dismtab(5), the generator (84-dismtab-boot.t runs
# its units here, 85-vm-boot.t on /dev/nbdN):
#  * the parser: one bad line of each kind is reported as FILE:LINE: what is
#    wrong (dism-generator --check and the generator itself), and the good
#    lines around them still get their units;
#  * the generator's units: names (systemd-escape --path), ExecStart/ExecStop,
#    RequiresMountsFor, After= in file order, requires vs wants (nofail),
#    timeouts, quoting of spaces, '%' and '$'; `systemd-analyze verify`.
source "$(dirname "$0")/../lib/tap.sh"
need_cmd systemd-analyze systemd-escape
GEN=$BIN/dism-generator BOOT=$BIN/dism-boot DISM=$BIN/dism
need_file "$GEN" "$BOOT" "$DISM"
export SYSTEMD_LOG_TARGET=console   # the generator's messages on stderr, not in the kernel log
unit_key() { sed -n "s/^$2=//p" "$1"; }   # unit_key UNITFILE KEY: its values
unit_for() { echo "$OUTD/$(systemd-escape --path --template=dism-mount@.service "$1")"; }

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
