#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# udev/60-dism.rules under `udevadm test`, natively (docs/udev.md); the
# helper alone is 86-udev-helper.t, make install 86-udev-install.t.
#
#  1. The build: the generated rules name the helper's path and nothing else
#     changed; udev's own parser finds nothing to complain about (systemd 252
#     has no `udevadm verify`: every `udevadm test` below parses the file, and
#     a deliberately broken copy shows that the check sees errors).
#  2. Real devices: a GPT VHDX and a WIM mounted by `dism /Mount-Image` (the
#     loop method on this machine), a plain loop device and a look-alike
#     (a file named .../mounts/<guid>/disk with a root-owned live.conf):
#     `udevadm test` in a private mount namespace (tests/lib/udev-sandbox.sh:
#     udev reads only the rules we give it, its /dev and /run are scratch) with
#     our rules alone and with the stock rules around them; the links it makes
#     resolve to the right devices.
#  3. Synthetic nbd devices in that namespace (a tmpfs over
#     /sys/devices/virtual/block): ours connected (disk and partition),
#     unconnected (size 0), torn down (size 0 with `pid`), a stale partition of
#     one, and another tool's: links, DISM_*, no blkid probe and no
#     persistent-storage links for the unconnected ones, and the same
#     unconnected device probed by the stock rules alone (the control).
#  4. The mount sends a synthetic change event for the loop device once the
#     record names it; unmount leaves nothing for the helper to find.
# needs-root: loop devices, mount namespaces, root-owned records
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
source "$(dirname "$0")/../lib/udev-fixtures.sh"
need_cmd udevadm unshare mknod losetup timeout qemu-img
HELPER=$BIN/dism-udev-id
RULES_IN=$ROOT/udev/60-dism.rules.in
SANDBOX=$ROOT/tests/lib/udev-sandbox.sh
need_file "$DISM" "$HELPER" "$RULES_IN" "$ROOT/$BUILD/udev/60-dism.rules" \
  "$CORPUS/wim/wimlib-mwl-MultiImage.wim"

# rules dirs: ours alone (sed as the Makefile does, helper from the build)
# and ours among the stock rules of this machine
ONLY=$TMPD/rules-only FULL=$TMPD/rules-full STOCK=$TMPD/rules-stock
mkdir -p "$ONLY" "$FULL" "$STOCK"
sed "s|@LIBEXECDIR@|$BIN|g" "$RULES_IN" > "$ONLY/60-dism.rules"
cp /usr/lib/udev/rules.d/*.rules "$STOCK/"
cp "$STOCK"/*.rules "$FULL/" && cp "$ONLY/60-dism.rules" "$FULL/"
# parse-time complaints about our file (lines "<path>:<line> ...")
complaints() { grep -E '^/usr/lib/udev/rules.d/60-dism\.rules:[0-9]+ ' <<<"$1"; }
props() { sed -n '/^DEVPATH=/,$p' <<<"$1"; }       # the event's final properties
prop() { props "$1" | sed -n "s/^$2=//p"; }

# ============ 1. the build =============================================================
built=$ROOT/$BUILD/udev/60-dism.rules
libexec=$(sed -n 's|^IMPORT{program}="\(/[^ "]*\)/dism-udev-id %S%p"$|\1|p' "$built")
like "the generated rules import dism-udev-id by its installed path" "$libexec" '^/'
is "  and differ from udev/60-dism.rules.in only there" \
   "$(sed "s|$libexec|@LIBEXECDIR@|g" "$built" | cmp - "$RULES_IN" && echo same)" same
if udevadm verify --help >/dev/null 2>&1; then
  check "udevadm verify accepts the rules" udevadm verify --resolve-names=never "$ONLY/60-dism.rules"
else
  diag "udevadm $(udevadm --version) has no 'verify' (systemd 253+): the parser of udevadm test checks the syntax"
fi
BAD=$TMPD/rules-bad; mkdir -p "$BAD"
{ cat "$ONLY/60-dism.rules"; echo 'FOO{x}=="y", GOTO="dism_end"'; echo 'KERNEL=="x", SYMLINK+="a'; } > "$BAD/60-dism.rules"
anyloop=$(ls -d /sys/class/block/loop* | head -1)
out=$("$SANDBOX" "$BAD" -- udevadm test --action=add "$anyloop" 2>&1)
is "the syntax check sees errors (a broken copy: 2 complaints)" "$(complaints "$out" | wc -l)" 2

# ============ 2. real devices: dism mounts (loop method), plain and look-alike loops =====
D=$TMPD/img; mkdir -p "$D" "$TMPD"/m{1,2}
GNAME='Win 11 (gpt).vhdx'
GENC='Win\x2011\x20\x28gpt\x29.vhdx'
check "build a GPT disk (mkwinimg.sh gpt) as a VHDX named '$GNAME'" \
  bash -c "'$ROOT/tests/lib/mkwinimg.sh' gpt '$D/g.raw' && qemu-img convert -f raw -O vhdx -o subformat=dynamic '$D/g.raw' '$D/$GNAME'"
cp "$CORPUS/wim/wimlib-mwl-MultiImage.wim" "$D/multi.wim"
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
run /Mount-Image /ImageFile:"$D/$GNAME" /Index:1 /MountDir:"$TMPD/m1" /ReadOnly
is "dism /Mount-Image of the VHDX: exit 0" "$RC" 0
run /Mount-Image /ImageFile:"$D/multi.wim" /Index:2 /MountDir:"$TMPD/m2" /ReadOnly
is "dism /Mount-Image of the WIM, index 2: exit 0" "$RC" 0
rec_of() { grep -l "^mount_dir=$1\$" "$DISM_STATE_DIR"/mounts/*.conf 2>/dev/null | head -1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
G_REC=$(rec_of "$TMPD/m1") W_REC=$(rec_of "$TMPD/m2")
G_ID=$(kv "$G_REC" id) W_ID=$(kv "$W_REC" id)
G_DEV=$(kv "$G_REC" attach.fs_dev) W_DEV=$(kv "$W_REC" attach.fs_dev)
is "  the VHDX is on a loop device, partition 3" "${G_DEV%%[0-9]*}:$(kv "$G_REC" attach.partition)" "/dev/loop:3"
is "  the WIM is on a loop device, the whole disk" "${W_DEV%%[0-9]*}:$(kv "$W_REC" attach.partition)" "/dev/loop:0"
G_K=${G_DEV#/dev/} W_K=${W_DEV#/dev/}

head -c 4M /dev/zero > "$D/plain.img"
P_DEV=$(losetup -f --show "$D/plain.img") || P_DEV=
tap_cleanup "[ -n '$P_DEV' ] && losetup -d '$P_DEV'"
FAKEID=5a1e7d3c-2b4f-4e6a-9c8d-7f6e5d4c3b2a
mkdir -p "$TMPD/evil/mounts/$FAKEID"
head -c 4M /dev/zero > "$TMPD/evil/mounts/$FAKEID/disk"
record "$TMPD/evil/mounts/$FAKEID/live.conf" "$FAKEID" "/srv/evil.vhdx" \
  attach.method=loop "attach.fs_dev=PLACEHOLDER" attach.partition=0
E_DEV=$(losetup -f --show "$TMPD/evil/mounts/$FAKEID/disk") || E_DEV=
tap_cleanup "[ -n '$E_DEV' ] && losetup -d '$E_DEV'"
sed -i "s|PLACEHOLDER|$E_DEV|" "$TMPD/evil/mounts/$FAKEID/live.conf"
check "a plain loop device and a look-alike (…/mounts/<guid>/disk, root-owned live.conf)" \
  test -n "$P_DEV" -a -n "$E_DEV"
P_K=${P_DEV#/dev/} E_K=${E_DEV#/dev/}

OUT=$("$HELPER" "/sys/class/block/$G_K"); RC=$?
is "dism-udev-id on the VHDX's loop device" "$RC
$OUT" "0
DISM_MOUNT_ID=$G_ID
DISM_ATTACH=loop
DISM_IMAGE_FILE_ENC=$GENC
DISM_INDEX=1
DISM_PART=3
DISM_IMAGE_FILE=$GNAME
DISM_FORMAT=vhdx
DISM_MODE=ro
DISM_IMAGE=$D/$GNAME
DISM_MOUNT_DIR=$TMPD/m1"
OUT=$("$HELPER" "/sys/class/block/$W_K"); RC=$?
is "dism-udev-id on the WIM's loop device (no DISM_PART: the whole disk)" "$RC
$OUT" "0
DISM_MOUNT_ID=$W_ID
DISM_ATTACH=loop
DISM_IMAGE_FILE_ENC=multi.wim
DISM_INDEX=2
DISM_IMAGE_FILE=multi.wim
DISM_FORMAT=wim
DISM_MODE=ro
DISM_IMAGE_NAME=Changes
DISM_IMAGE=$D/multi.wim
DISM_MOUNT_DIR=$TMPD/m2"
OUT=$("$HELPER" "/sys/class/block/$E_K"); RC=$?
is "the look-alike: its loop file name is its path, not dism:<id> -> exit 1" "$RC:$OUT" "1:"
OUT=$("$HELPER" --run-dir "$TMPD/elsewhere" "/sys/class/block/$G_K"); RC=$?
is "a loop device outside the --run-dir given: exit 1" "$RC:$OUT" "1:"
# the loop race: a record without the attach lines names no partition yet
LIVE=$DISM_RUN_DIR/mounts/$G_ID/live.conf
cp -p "$LIVE" "$TMPD/live.save"; sed -i '/^attach\./d' "$LIVE"
OUT=$("$HELPER" "/sys/class/block/$G_K"); RC=$?
is "a loop device whose record has no attach lines yet: exit 1 (the change event after it comes)" "$RC:$OUT" "1:"
cp -p "$TMPD/live.save" "$LIVE"; sed -i "s|^attach.fs_dev=.*|attach.fs_dev=/dev/loop999|" "$LIVE"
OUT=$("$HELPER" "/sys/class/block/$G_K"); RC=$?
is "a loop device the record does not name (attach.fs_dev): exit 1" "$RC:$OUT" "1:"
cp -p "$TMPD/live.save" "$LIVE"

# udevadm test in the sandbox; T_<k> = output for device k, L_<k> = where its
# by-dism links point, one "name -> target" a line
sandbox_test() {  # sandbox_test RULES_DIR [sandbox options] -- DEVICE-SYSPATHS...
  local rules=$1; shift
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  "$SANDBOX" "$rules" ${opts[@]+"${opts[@]}"} -- bash -c '
    for d in "$@"; do
      echo "@@dism-sandbox-device $d"
      udevadm test --action=change "$d" 2>&1
      echo "@@dism-sandbox-links"
      for l in /dev/disk/by-dism/*; do [ -L "$l" ] && echo "${l##*/} -> $(readlink -f "$l")"; done
      rm -rf /dev/disk /run/udev
    done' sandbox "$@" > "$TMPD/sandbox.out" 2>&1
}
section() {  # section N WHAT: the udevadm output (WHAT=test) or links (WHAT=links) of device N
  awk -v n="$1" -v w="$2" '/^@@dism-sandbox-links$/ { sec = "links"; next }
       /^@@dism-sandbox-device / { dev++; sec = "test"; next }
       dev == n && sec == w' "$TMPD/sandbox.out"
}
DEVS=("/sys/class/block/$G_K" "/sys/class/block/$W_K" "/sys/class/block/$P_K" "/sys/class/block/$E_K")
for mode in only full; do
  if [ $mode = only ]; then dir=$ONLY; what="our rules alone"; else dir=$FULL; what="the stock rules and ours"; fi
  sandbox_test "$dir" -- "${DEVS[@]}"
  t=$(section 1 test)
  is "[$what] no complaint about 60-dism.rules from udev's parser" "$(complaints "$(cat "$TMPD/sandbox.out")")" ""
  like "[$what] VHDX loop: DEVLINKS has by-dism/<name>-1-part3" "$(prop "$t" DEVLINKS)" "/dev/disk/by-dism/${GENC//\\/\\\\}-1-part3( |$)"
  is "[$what]   the link resolves to $G_DEV" "$(section 1 links)" "$GENC-1-part3 -> $G_DEV"
  is "[$what]   DISM_MOUNT_ID, DISM_INDEX, DISM_PART, UDISKS_IGNORE" \
     "$(prop "$t" DISM_MOUNT_ID) $(prop "$t" DISM_INDEX) $(prop "$t" DISM_PART) $(prop "$t" UDISKS_IGNORE)" "$G_ID 1 3 1"
  t=$(section 2 test)
  is "[$what] WIM loop: the link multi.wim-2 resolves to $W_DEV" "$(section 2 links)" "multi.wim-2 -> $W_DEV"
  is "[$what]   DISM_IMAGE_NAME and DISM_FORMAT" "$(prop "$t" DISM_IMAGE_NAME) $(prop "$t" DISM_FORMAT)" "Changes wim"
  t=$(section 3 test)
  is "[$what] plain loop: no DISM_*, no by-dism link, helper not run, not hidden from udisks" \
     "$(props "$t" | grep -c '^DISM_\|^UDISKS_IGNORE'):$(section 3 links):$(grep -c dism-udev-id <<<"$t")" "0::0"
  t=$(section 4 test)
  is "[$what] look-alike loop: helper run, said no; no DISM_*, no link" \
     "$(grep -c 'dism-udev-id.*returned 1' <<<"$t"):$(props "$t" | grep -c '^DISM_\|^UDISKS_IGNORE'):$(section 4 links)" "1:0:"
done
t=$(section 1 test)
is "[stock rules and ours] the VHDX loop is still probed (ID_FS_TYPE=ntfs, by-uuid link)" \
   "$(prop "$t" ID_FS_TYPE) $(prop "$t" DEVLINKS | grep -c by-uuid)" "ntfs 1"

# ============ 3. synthetic nbd devices ==================================================
B=$TMPD/block NRUN=$TMPD/nrun
mkdir -p "$B" "$NRUN"
mkdev "$B/nbd0" nbd0 43 0 disk; echo 131072 > "$B/nbd0/size"; echo "dism:$ID" > "$B/nbd0/backend"; echo 99 > "$B/nbd0/pid"
mkdev "$B/nbd0/nbd0p3" nbd0p3 43 3 partition 3; echo 40960 > "$B/nbd0/nbd0p3/size"
mkdev "$B/nbd1" nbd1 43 32 disk; echo 0 > "$B/nbd1/size"; echo DISKSEQ=77 >> "$B/nbd1/uevent"
mkdev "$B/nbd2" nbd2 43 64 disk; echo 0 > "$B/nbd2/size"; echo 98 > "$B/nbd2/pid"; echo "dism:$ID" > "$B/nbd2/backend"
mkdev "$B/nbd2/nbd2p1" nbd2p1 43 65 partition 1; echo 2048 > "$B/nbd2/nbd2p1/size"
mkdev "$B/nbd3" nbd3 43 96 disk; echo 131072 > "$B/nbd3/size"; echo "ourtool:1" > "$B/nbd3/backend"; echo 97 > "$B/nbd3/pid"
record "$NRUN/mounts/$ID/live.conf" "$ID" "/srv/img/win 11.vhdx"
NB=/sys/devices/virtual/block
export SYSTEMD_DEVICE_VERIFY_SYSFS=0   # let sd-device open devices on our tmpfs
sandbox_test "$FULL" --sys-block "$B" --run "$NRUN" -- "$NB/nbd0" "$NB/nbd0/nbd0p3" "$NB/nbd1" "$NB/nbd2" "$NB/nbd2/nbd2p1" "$NB/nbd3"
t=$(section 1 test)
is "synthetic nbd0 (ours, connected): link win\\x2011.vhdx-1 -> /dev/nbd0" "$(section 1 links)" 'win\x2011.vhdx-1 -> /dev/nbd0'
is "  DISM_MOUNT_ID, DISM_ATTACH, UDISKS_IGNORE; not marked unready" \
   "$(prop "$t" DISM_MOUNT_ID) $(prop "$t" DISM_ATTACH) $(prop "$t" UDISKS_IGNORE) [$(prop "$t" SYSTEMD_READY)]" "$ID nbd 1 []"
is "synthetic nbd0p3: link win\\x2011.vhdx-1-part3 -> /dev/nbd0p3" "$(section 2 links)" 'win\x2011.vhdx-1-part3 -> /dev/nbd0p3'
for n in 3:nbd1:"unconnected (size 0)" 4:nbd2:"torn down (size 0, pid and backend still there)" 5:nbd2p1:"a stale partition of it"; do
  i=${n%%:*} rest=${n#*:}; k=${rest%%:*} what=${rest#*:}
  t=$(section "$i" test)
  is "synthetic $k, $what: no blkid probe, no links, no DISM_*" \
     "$(grep -c "builtin command 'blkid'" <<<"$t"):[$(prop "$t" DEVLINKS)]:$(props "$t" | grep -c '^DISM_')" "0:[]:0"
  is "  SYSTEMD_READY=0 UDISKS_IGNORE=1 UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1" \
     "$(prop "$t" SYSTEMD_READY) $(prop "$t" UDISKS_IGNORE) $(prop "$t" UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG)" "0 1 1"
done
t=$(section 6 test)
is "synthetic nbd3 (another tool's backend): no DISM_*, not hidden, probed by the stock rules" \
   "$(props "$t" | grep -c '^DISM_\|^UDISKS_IGNORE\|^SYSTEMD_READY'):$(grep -c "builtin command 'blkid'" <<<"$t")" "0:1"
sandbox_test "$STOCK" --sys-block "$B" --run "$NRUN" -- "$NB/nbd1"
t=$(section 1 test)
is "control: the stock rules alone do probe unconnected nbd1 and link by-diskseq/77" \
   "$(grep -c "builtin command 'blkid'" <<<"$t") $(prop "$t" DEVLINKS)" "1 /dev/disk/by-diskseq/77"
unset SYSTEMD_DEVICE_VERIFY_SYSFS

# ============ 4. the change event after the record, and unmount ===========================
mkdir -p "$TMPD/m3"
timeout 30 udevadm monitor --kernel --property --subsystem-match=block > "$TMPD/monitor.out" 2>&1 &
MON=$!
tap_cleanup "kill $MON"
sleep 0.5
run /Mount-Image /ImageFile:"$D/multi.wim" /Index:1 /MountDir:"$TMPD/m3" /ReadOnly
is "another mount (WIM index 1) while listening to kernel uevents: exit 0" "$RC" 0
M_DEV=$(kv "$(rec_of "$TMPD/m3")" attach.fs_dev)
sleep 0.5; kill $MON; wait $MON 2>/dev/null
synth=$(awk -v d="DEVNAME=$M_DEV" 'BEGIN { RS = "" } $0 ~ d && /ACTION=change/ && /SYNTH_UUID=0/' "$TMPD/monitor.out" | grep -c '^ACTION=change')
is "  libdism sent one synthetic change event for $M_DEV (SYNTH_UUID=0) once live.conf named it" "$synth" 1
M_ID=$(kv "$(rec_of "$TMPD/m3")" id)
for m in m1 m2 m3; do
  run /Unmount-Image /MountDir:"$TMPD/$m" /Discard
  is "unmount $m: exit 0" "$RC" 0
done
# (another test may have taken a freed loop device since: only our ids count)
OUT=$("$HELPER" "/sys/class/block/$G_K"; "$HELPER" "/sys/class/block/$W_K"; "$HELPER" "/sys/class/block/${M_DEV#/dev/}")
is "  dism-udev-id finds none of these mounts on their loop devices any more" \
   "$(grep -c -e "$G_ID" -e "$W_ID" -e "$M_ID" <<<"$OUT")" 0
