# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=sh
# 85-boot.guest.sh - guest half of tests/t/85-vm-boot.t (busybox sh, as
# /test/run.sh).  dismtab-driven mounting at boot on the real /dev/nbdN:
# there is no systemd in the VM, so the generator writes its units into a
# folder and this script plays systemd: it runs their ExecStart lines in the
# After= order at "boot" and their ExecStop lines in reverse at "shutdown".
# Three boots: a clean one; a clean shutdown (commit, discard, park) and a
# reboot; a crash (servers killed -9, devices disconnected, mounts dropped,
# /run cleared) and a reboot.  From the host (all under /test):
#   g.vhdx h.vhdx   the same MBR disk with an NTFS \Windows partition
#   w.wim           the corpus's MultiImage.wim (image 2 "Changes": B/C.txt,
#                   B/D.ini, Z.txt)
#   new.bin env     a file written before the crash; NEW_SHA256 and
#                   HELLO (the content of hello.txt) in env
. /usr/share/dism-vm/tap.sh
. /test/env
export DISM_NBD_SERVER=/usr/bin/dism-nbd-server
STATE=/var/lib/dism RUN=/run/dism LOG=/tmp/dism.log GEN=/run/gen
T0=$(uptime_s)

ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
like() { case "$2" in *"$3"*) ok "$1" ;; *) not_ok "$1"; diag "got: $2"; diag "wanted: ...$3..." ;; esac; }
rc_is() { if [ "$RC" = "$2" ]; then ok "$1"; else not_ok "$1"; diag "exit $RC, expected $2"; diag "$OUT"; diag "$(tail -5 $LOG)"; fi; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
rec_of() { grep -l "^mount_dir=$1\$" "$STATE"/mounts/*.conf 2>/dev/null | head -1; }
kv() { sed -n "s/^$2=//p" "$1" | head -1; }
status_of() {  # the /Get-MountedImageInfo status of a mount dir
  dism /Format:Json /Get-MountedImageInfo 2>/dev/null | grep -F "{\"mount_dir\": \"$1\"," |
    sed -n 's/.*"status": "\([A-Za-z]*\)".*/\1/p'
}
# /proc/mounts writes a space in a mount point as \040
dev_of() { D=$(printf '%s' "$1" | sed 's/ /\\040/g') awk '$2 == ENVIRON["D"] { print $1 }' /proc/mounts; }
on_nbd() {  # on_nbd WHAT DIR: mounted from the /dev/nbdN its record names
  _d=$(dev_of "$2"); _r=$(rec_of "$2")
  case "$_d" in
    /dev/nbd*) if [ "$_d" = "$(kv "$_r" attach.fs_dev)" ] && [ "$(kv "$_r" attach.method)" = nbd ]; then
                 ok "$1: $2 is mounted from $_d (method nbd)"
               else not_ok "$1: $2 is mounted from $_d (method nbd)"; diag "record: $(kv "$_r" attach.method) $(kv "$_r" attach.fs_dev)"; fi ;;
    *) not_ok "$1: $2 is mounted from a /dev/nbdN"; diag "source: '$_d'" ;;
  esac
}
unit_val() { sed -n "s/^$2=//p" "$1"; }
# run_unit UNIT KEY: run the unit's KEY= command line as systemd would: its
# words (double-quoted ones with \\ and \" inside: sh reads them alike),
# "%%" -> "%", "$$" -> "$" (no '$' in this test's paths), a leading "-"
# dropped.  Output in $OUT, status in $RC.
run_unit() {
  _cmd=$(unit_val "$GEN/$1" "$2" | sed -e 's/^-//' -e 's/%%/%/g' -e 's/\$\$/$/g')
  _t=$(ms)
  OUT=$(eval "set -- $_cmd"; "$@" 2>&1); RC=$?
  diag "timing: $2 of $1: $(( $(ms) - _t )) ms"
}
# The units in boot order: the one after no other entry, then the one
# After= it, and so on.
boot_order() {
  _prev=
  while :; do
    _next=
    for _f in "$GEN"/*.service; do
      [ "$(unit_val "$_f" After | grep '^dism-mount@')" = "$_prev" ] || continue
      _next=$(basename "$_f"); break
    done
    [ -n "$_next" ] || break
    printf '%s\n' "$_next"; _prev=$_next
  done
}
reverse() { printf '%s\n' $1 | sed -n '1!G;h;$p'; }
generate() {
  rm -rf "$GEN"; mkdir -p "$GEN" "$GEN.early" "$GEN.late"
  DISMTAB=/etc/dismtab DISM_CLI=/usr/bin/dism DISM_BOOT=/usr/bin/dism-boot SYSTEMD_LOG_TARGET=console \
    dism-generator "$GEN" "$GEN.early" "$GEN.late" > /tmp/gen.out 2>&1
  GEN_RC=$?
  ORDER=$(boot_order)
}
boot() {  # boot N RC...: ExecStart of every unit in order, with the exit
  _n=$1; shift  # statuses expected; all their output in $BOOT_OUT
  BOOT_OUT=
  for _u in $ORDER; do
    run_unit "$_u" ExecStart
    rc_is "boot $_n: ExecStart of $_u" "$1"
    BOOT_OUT="$BOOT_OUT$OUT
"
    shift
  done
}
shut_down() {
  _n=$1
  for _u in $(reverse "$ORDER"); do
    run_unit "$_u" ExecStop
    rc_is "shutdown $_n: ExecStop of $_u" 0
  done
}
connected_nbd() { for _d in /sys/block/nbd*; do [ -e "$_d/pid" ] && basename "$_d"; done; }
server_pids() {
  for _p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$_p/cmdline" 2>/dev/null)" in
      *dism-nbd-server*|*ntfs-3g*) basename "$_p" ;;
    esac
  done
}

check "nbd.ko is loaded (the units' mounts take the NBD method)" test -d /sys/module/nbd
G=/mnt/g W="/mnt/w im" H=/mnt/h
mkdir -p /etc "$G" "$W"
cat > /etc/dismtab <<EOF
# dismtab of the VM boot test (dismtab(5))
/test/g.vhdx   1              /mnt/g          rw,keep,remount,log=$LOG
/test/w.wim    name=Changes   /mnt/w\\040im    ro,log=$LOG
/test/h.vhdx   1              /mnt/h          rw,commit,mkdir,nofail,log=$LOG
/test/bad.iso  1              /mnt/bad
EOF

# ============ the generator =============================================================
generate
is "generator: exit 1 (one bad line)" "$GEN_RC" 1
like "  the bad line named with file and line" "$(cat /tmp/gen.out)" \
  "dism-generator: /etc/dismtab:5: image /test/bad.iso is not a .wim, .vhd or .vhdx file; line skipped"
mkdir -p /tmp/gen.k
DISMTAB=/etc/dismtab dism-generator /tmp/gen.k /tmp/gen.k /tmp/gen.k > /tmp/gen.k.out 2>&1
like "  run as systemd runs it (no terminal), it logs to the kernel log" "$(dmesg | grep 'dism-generator\[')" \
  "dism-generator["
like "  the same message there" "$(dmesg | grep 'dism-generator\[')" \
  "]: /etc/dismtab:5: image /test/bad.iso is not a .wim, .vhd or .vhdx file; line skipped"
is "  and nothing on stderr" "$(cat /tmp/gen.k.out)" ""
UG='dism-mount@mnt-g.service' UW='dism-mount@mnt-w\x20im.service' UH='dism-mount@mnt-h.service'
is "  three units, in file order" "$(printf '%s ' $ORDER)" "$UG $UW $UH "
is "  g: ExecStart" "$(unit_val "$GEN/$UG" ExecStart)" \
  "/usr/bin/dism-boot start --remount /usr/bin/dism /Quiet /LogPath:$LOG /Mount-Image /ImageFile:/test/g.vhdx /Index:1 /MountDir:/mnt/g"
is "  g: ExecStop parks it (keep)" "$(unit_val "$GEN/$UG" ExecStop)" "/usr/bin/dism-boot park --log $LOG /mnt/g"
is "  w: ExecStart quotes the folder with a space" "$(unit_val "$GEN/$UW" ExecStart)" \
  "/usr/bin/dism-boot start /usr/bin/dism /Quiet /LogPath:$LOG /Mount-Image /ImageFile:/test/w.wim /Name:Changes \"/MountDir:/mnt/w im\" /ReadOnly"
is "  h: ExecStop commits" "$(unit_val "$GEN/$UH" ExecStop)" "/usr/bin/dism /Quiet /LogPath:$LOG /Unmount-Image /MountDir:/mnt/h /Commit"
is "  multi-user.target requires g and w" "$(ls "$GEN/multi-user.target.requires" | tr '\n' ' ')" "$UG $UW "
is "  and wants h (nofail)" "$(ls "$GEN/multi-user.target.wants" | tr '\n' ' ')" "$UH "
is "  RequiresMountsFor of g" "$(unit_val "$GEN/$UG" RequiresMountsFor)" "/test/g.vhdx /mnt/g /var/lib/dism $LOG"

# ============ boot 1 ======================================================================
boot 1 0 0 0
on_nbd "boot 1" "$G"; on_nbd "boot 1" "$W"; on_nbd "boot 1" "$H"
is "boot 1: g shows the image's files" "$(cat "$G/hello.txt" 2>&1)" "$HELLO"
is "boot 1: w shows image Changes of the WIM" "$(cd "$W" && find . -type f | sort | tr '\n' ' ')" "./B/C.txt ./B/D.ini ./Z.txt "
check "boot 1: h's folder was made (mkdir) and holds the image" test -f "$H/hello.txt"
is "boot 1: every mount Ok" "$(status_of "$G") $(status_of "$W") $(status_of "$H")" "Ok Ok Ok"
run_unit "$UG" ExecStart
rc_is "boot 1: ExecStart of g again (a restart): exit 0" 0
like "  nothing done" "$OUT" "already mounted at /mnt/g (status Ok): nothing to do"
echo "written in boot 1" > "$G/clean.txt"
echo "committed at shutdown 1" > "$H/commit.txt"

# ============ shutdown 1 (clean) and reboot ====================================================
shut_down 1
is "shutdown 1: nothing mounted" "$(dev_of "$G")$(dev_of "$W")$(dev_of "$H")" ""
is "  no nbd device connected" "$(connected_nbd)" ""
is "  no server or ntfs-3g left" "$(server_pids)" ""
is "  g is parked: Needs Remount; w and h are gone" "$(dism /Format:Json /Get-MountedImageInfo | grep -c mount_dir) $(status_of "$G")" "1 NeedsRemount"
rm -rf "$RUN"   # /run is a tmpfs: empty at the next boot
generate
boot 2 0 0 0
like "boot 2: g came back through its remount option" "$BOOT_OUT" \
  "dism-boot: /test/g.vhdx at /mnt/g needs a remount (it was mounted when the system went down): remounting it with its changes"
on_nbd "boot 2" "$G"; on_nbd "boot 2" "$W"; on_nbd "boot 2" "$H"
is "boot 2: g holds the file written in boot 1" "$(cat "$G/clean.txt" 2>&1)" "written in boot 1"
is "boot 2: h was committed at shutdown 1 (a fresh mount shows the file)" "$(cat "$H/commit.txt" 2>&1)" "committed at shutdown 1"
is "boot 2: every mount Ok" "$(status_of "$G") $(status_of "$W") $(status_of "$H")" "Ok Ok Ok"

# ============ crash and reboot ====================================================================
check "boot 2: write to g with fsync" dd if=/test/new.bin of="$G/crash.bin" bs=64k conv=fsync
check "boot 2: write to h with fsync" sh -c "echo 'written before the crash' | dd of='$H/crash.txt' conv=fsync"
DEVS=$(connected_nbd)
for p in $(server_pids); do kill -9 "$p" 2>/dev/null; done
sleep 0.3
for d in $DEVS; do nbd-client -d "/dev/$d" >/dev/null 2>&1; done
for d in "$G" "$W" "$H"; do umount -l "$d" 2>/dev/null; done
rm -rf "$RUN"
is "crash: no nbd device connected any more" "$(connected_nbd)" ""
is "after the crash: g, w, h are Needs Remount" "$(status_of "$G") $(status_of "$W") $(status_of "$H")" \
  "NeedsRemount NeedsRemount NeedsRemount"
generate
boot 3 0 0 1
like "boot 3: g came back through its remount option" "$BOOT_OUT" "/mnt/g needs a remount"
like "boot 3: w (read-only) was remounted by itself" "$BOOT_OUT" "/mnt/w im needs a remount (it was mounted when the system went down): remounting it (read-only)"
like "boot 3: h (no remount option) says what to do" "$BOOT_OUT" \
  "/test/h.vhdx at /mnt/h needs a remount (it was mounted when the system went down; its changes are kept). Run dism /Remount-Image /MountDir:/mnt/h"
on_nbd "boot 3" "$G"; on_nbd "boot 3" "$W"
is "boot 3: g (remount) holds the file written before the crash" "$(sha "$G/crash.bin" 2>&1)" "$NEW_SHA256"
is "  and the one from boot 1" "$(cat "$G/clean.txt" 2>&1)" "written in boot 1"
is "boot 3: w is Ok" "$(status_of "$W") $(cat "$W/Z.txt" | wc -c)" "Ok 1"
is "boot 3: h is still Needs Remount" "$(status_of "$H")" "NeedsRemount"
_t=$(ms)
OUT=$(dism-boot remount --log "$LOG" --all 2>&1); RC=$?
diag "timing: dism-boot remount --all: $(( $(ms) - _t )) ms"
rc_is "dism-remount.service's ExecStart (dism-boot remount --all): exit 0" 0
like "  it remounted h" "$OUT" "remounted /mnt/h"
on_nbd "after remount --all" "$H"
is "  h holds the file written before the crash" "$(cat "$H/crash.txt" 2>&1)" "written before the crash"
run_unit "$UH" ExecStart
rc_is "  then h's unit starts: exit 0 (already mounted)" 0

# ============ final shutdown; the images hold everything ==========================================
shut_down 3
is "shutdown 3: g parked again, the others unmounted" "$(status_of "$G") $(dism /Format:Json /Get-MountedImageInfo | grep -c mount_dir)" "NeedsRemount 1"
OUT=$(dism /LogPath:$LOG /Unmount-Image /MountDir:"$G" /Commit 2>&1); RC=$?
rc_is "g unmounted with /Commit by hand" 0
mkdir -p /mnt/check
for img in g h; do
  OUT=$(dism /LogPath:$LOG /Mount-Image /ImageFile:/test/$img.vhdx /Index:1 /MountDir:/mnt/check /ReadOnly 2>&1); RC=$?
  rc_is "$img.vhdx mounted read-only to look" 0
  if [ $img = g ]; then
    is "  g.vhdx holds clean.txt and crash.bin" "$(cat /mnt/check/clean.txt 2>&1) $(sha /mnt/check/crash.bin 2>&1)" "written in boot 1 $NEW_SHA256"
  else
    is "  h.vhdx holds commit.txt and crash.txt" "$(cat /mnt/check/commit.txt /mnt/check/crash.txt 2>&1 | tr '\n' ' ')" "committed at shutdown 1 written before the crash "
  fi
  OUT=$(dism /LogPath:$LOG /Unmount-Image /MountDir:/mnt/check /Discard 2>&1); RC=$?
  rc_is "  unmounted" 0
done
# (the WIM metadata cache may keep finished volumes for the next mount)
is "nothing left: mounts, devices, processes, records, overlays" \
  "$(dism /Format:Json /Get-MountedImageInfo)|$(connected_nbd)|$(server_pids)|$(find "$STATE/mounts" "$STATE/scratch" -mindepth 1 2>/dev/null | grep -Ev "^$STATE/scratch/wim-cache(/\.lock|/[0-9a-f]+(/volume|/map)?)?$")" \
  '{"mounted_images": []}|||'
diag "timing: whole guest script $(awk -v a="$T0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s"
[ "$VM_FAILED" = 0 ]
