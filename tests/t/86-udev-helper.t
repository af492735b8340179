#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# udev's helper dism-udev-id against synthetic sysfs trees and records
# (docs/udev.md): the properties, udev-style name encoding, hostile backends,
# records nobody should trust, the loop race (record without the attach
# yet), usage.  86-udev-rules.t runs it under udev on real devices.
# needs-root: trusts root-owned records only, chowns them to another user
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/udev-fixtures.sh"
HELPER=$BIN/dism-udev-id
need_file "$HELPER"

S=$TMPD/sys R=$TMPD/hrun ST=$TMPD/hstate
mkdir -p "$S" "$R/mounts/$ID" "$ST/mounts"
mkdev "$S/nbd0" nbd0 43 0 disk; echo 131072 > "$S/nbd0/size"; echo "dism:$ID" > "$S/nbd0/backend"
mkdev "$S/nbd0/nbd0p3" nbd0p3 43 3 partition 3
record "$R/mounts/$ID/live.conf" "$ID" "/srv/img/win 11.vhdx"
h() { OUT=$("$HELPER" --run-dir "$R" --state-dir "$ST" "$@" 2>&1); RC=$?; }
h "$S/nbd0"
is "nbd disk with backend dism:<id>: exit 0" "$RC" 0
is "  its properties" "$OUT" "DISM_MOUNT_ID=$ID
DISM_ATTACH=nbd
DISM_IMAGE_FILE_ENC=win\\x2011.vhdx
DISM_INDEX=1
DISM_IMAGE_FILE=win 11.vhdx
DISM_FORMAT=vhdx
DISM_MODE=rw
DISM_IMAGE=/srv/img/win 11.vhdx
DISM_MOUNT_DIR=/mnt/w"
h "$S/nbd0/nbd0p3/"
is "its partition 3: the same plus DISM_PART=3 (trailing / accepted)" \
   "$(grep -c . <<<"$OUT") $(sed -n 5p <<<"$OUT")" "10 DISM_PART=3"
mkdir -p "$S/class"; ln -sfn ../nbd0/nbd0p3 "$S/class/nbd0p3"
h "$S/class/nbd0p3"
is "a partition named through a class-style symlink: its disk is found (DISM_PART=3)" \
   "$RC $(sed -n 5p <<<"$OUT")" "0 DISM_PART=3"
out1=$(DISM_RUN_DIR=$R "$HELPER" --state-dir "$ST" "$S/nbd0")
is "\$DISM_RUN_DIR is the run directory when --run-dir is not given (by hand)" "$out1" "$("$HELPER" --run-dir "$R" "$S/nbd0")"
rm -f "$R/mounts/$ID/live.conf"
record "$ST/mounts/$ID.conf" "$ID" "/srv/img/win 11.vhdx"
h "$S/nbd0"
is "no live.conf: the persistent record is read instead" "$RC $(head -1 <<<"$OUT")" "0 DISM_MOUNT_ID=$ID"
rm -f "$ST/mounts/$ID.conf"
h "$S/nbd0"
is "no record at all: exit 1, nothing printed" "$RC:$OUT" "1:"

# hostile or foreign backends: exit 1, no output
bad_backend() {
  printf '%s' "$2" > "$S/nbd0/backend"
  record "$R/mounts/$ID/live.conf" "$ID" "/srv/img/x.vhdx"
  h "$S/nbd0"
  is "backend $1: not ours (exit 1, no output)" "$RC:$OUT" "1:"
}
bad_backend "of another tool" "ourtool:$ID"
bad_backend "with an upper-case GUID" "dism:${ID^^}"
bad_backend "with a path in it" "dism:../../../../etc/passwd"
bad_backend "with a GUID and more" "dism:${ID}x"
bad_backend "with a control byte after the GUID" "dism:$ID"$'\x01'
bad_backend "of 4 KiB" "dism:$(head -c 4096 /dev/zero | tr '\0' a)"
bad_backend "empty" ""
printf 'dism:%s\0\n' "$ID" > "$S/nbd0/backend"; h "$S/nbd0"
is "backend with a NUL after the GUID: not ours (exit 1, no output)" "$RC:$OUT" "1:"
printf 'dism:%s\n' "$ID" > "$S/nbd0/backend"

# records nobody should trust or that do not fit
bad_record() {  # bad_record WHAT (after the caller changed live.conf)
  h "$S/nbd0"
  is "record $1: ignored (exit 1, no output)" "$RC:$OUT" "1:"
  record "$R/mounts/$ID/live.conf" "$ID" "/srv/img/x.vhdx"
}
LC=$R/mounts/$ID/live.conf
chmod 620 "$LC"; bad_record "writable by its group"
chmod 602 "$LC"; bad_record "writable by others"
chown 65534 "$LC"; bad_record "owned by another user"
mv "$LC" "$LC.real"; ln -s "$LC.real" "$LC"; bad_record "that is a symlink"; rm -f "$LC.real"
record "$LC" "$ID2" "/srv/img/x.vhdx"; bad_record "of another mount id"
record "$LC" "$ID" "img/x.vhdx"; bad_record "with a relative image path"
record "$LC" "$ID" "/srv/img/"; bad_record "with an image path ending in /"
sed -i 's/^index=1$/index=0/' "$LC"; bad_record "with index 0"
sed -i 's/^index=1$/index=01/' "$LC"; bad_record "with index 01"
sed -i 's/^index=1$/index=4294967296/' "$LC"; bad_record "with an index beyond 32 bits"
sed -i '/^index=/d' "$LC"; bad_record "without an index"
head -c 70000 /dev/zero | tr '\0' '#' >> "$LC"; bad_record "of more than 64 KiB"
echo 3x > "$S/nbd0/nbd0p3/partition"; h "$S/nbd0/nbd0p3"
is "a partition whose number is not a number: exit 1" "$RC:$OUT" "1:"
echo 3 > "$S/nbd0/nbd0p3/partition"
mkdev "$S/sda" sda 8 0 disk; echo "dism:$ID" > "$S/sda/backend"; h "$S/sda"
is "a backend file on a device that is not nbd*: exit 1" "$RC:$OUT" "1:"

# names: encoded as udev/blkid encode labels, cut at 200 bytes on a character boundary
enc_of() {  # enc_of FILENAME: DISM_IMAGE_FILE_ENC for an image of that name
  record "$LC" "$ID" "/srv/img/$1" "image_name=Windows 11 Pro"
  "$HELPER" --run-dir "$R" "$S/nbd0" | sed -n 's/^DISM_IMAGE_FILE_ENC=//p'
}
is "encoding: spaces, brackets, backslash, \$, a bad UTF-8 byte, U+FFFE; UTF-8 and #+-.:=@_ kept" \
   "$(enc_of $'Wïn 11 [x]\\y$z\xff\xef\xbf\xbe😀#+-.:=@_.vhdx')" \
   'Wïn\x2011\x20\x5bx\x5d\x5cy\x24z\xff\xef\xbf\xbe😀#+-.:=@_.vhdx'
is "encoding: an overlong NUL (C0 80) and a surrogate (ED A0 80) are bytes" \
   "$(enc_of $'a\xc0\x80b\xed\xa0\x80.vhd')" 'a\xc0\x80b\xed\xa0\x80.vhd'
is "encoding: a control character is \\x09; DISM_IMAGE_FILE shows it as ?" \
   "$(enc_of $'a\tb.vhdx') $("$HELPER" --run-dir "$R" "$S/nbd0" | sed -n 's/^DISM_IMAGE_FILE=//p')" \
   'a\x09b.vhdx a?b.vhdx'
long=$(printf 'é%.0s' $(seq 120))
is "encoding: 120 x é (240 bytes) is cut to 100 (200 bytes)" "$(enc_of "$long")" "$(printf 'é%.0s' $(seq 100))"
long=$(printf ' %.0s' $(seq 80))x
is "encoding: 80 spaces are cut to 50 whole \\x20 (200 bytes)" "$(enc_of "$long")" "$(printf '\\x20%.0s' $(seq 50))"
record "$LC" "$ID" "/srv/img/ lead and trail .wim" "image_name=Windows 11 Pro" "format=wim"
h "$S/nbd0"
like "values udev would strip are quoted; the WIM image name is there" "$OUT" \
     'DISM_IMAGE_FILE=" lead and trail \.wim".*DISM_IMAGE_NAME=Windows 11 Pro'

# usage
"$HELPER" >/dev/null 2>&1; is "no SYSPATH: exit 2" "$?" 2
"$HELPER" --run-dir run "$S/nbd0" >/dev/null 2>&1; is "a relative --run-dir: exit 2" "$?" 2
"$HELPER" --bogus "$S/nbd0" >/dev/null 2>&1; is "an unknown option: exit 2" "$?" 2
check "--help: exit 0" "$HELPER" --help
"$HELPER" "$TMPD/nonexistent/nbd9" >/dev/null 2>&1; is "a path that does not exist: exit 1" "$?" 1
