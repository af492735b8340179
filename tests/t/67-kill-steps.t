#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A killed dism (docs/reliability.md, "A killed dism"): the CLI is killed
# with SIGKILL at each step of mount, unmount (/Commit, /Discard), remount
# and commit (DISM_TEST_KILL_AT; the steps come from a real run's
# DISM_TEST_STEPS_LOG, so a new step is covered without editing this file).
# Afterwards /Get-MountedImageInfo tells the truth, the documented command
# brings the system back to clean, the image file is byte-identical unless a
# commit completed (then it holds the whole change), and a fresh mount of
# the same image into the same folder works.  SIGTERM to the CLI cancels a
# mount in progress like the cancel event.
# Every step of every operation is covered for a read/write and a read-only
# VHDX; a read/write WIM is killed at every step of its mount and unmount
# /Commit, and DISM_KILL_STEPS_ALL=1 adds its /Discard, remount and commit
# (27 s more under ASan).
# needs-root: loop devices, ntfs-3g mounts
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/dism-img.sh"
need_cmd wimlib-imagex losetup pgrep sha256sum
W=$CORPUS/wim
need_file "$DISM" "$W/wimlib-mwl-MultiImage.wim"

make_windows_disk "$TMPD/disk.raw" 32 || { not_ok "build the test disk"; exit 1; }
make_vhdx "$TMPD/disk.raw" "$TMPD/a.vhdx"
rm -f "$TMPD/disk.raw"
cp "$W/wimlib-mwl-MultiImage.wim" "$TMPD/w.wim"; chmod u+w "$TMPD/w.wim"
ALL=${DISM_KILL_STEPS_ALL:-0}
M=$TMPD/m1
mkdir -p "$M"
run() { OUT=$(dism "$@" 2>&1); RC=$?; }
sum() { sha256sum < "$1" | cut -d' ' -f1; }

# ---- the steps, from real runs ----------------------------------------------------
SL=$TMPD/steps.log
steps_of() {  # steps_of FUNC: the steps FUNC reached in $SL, in order, once each
  sed -n "s/^$1://p" "$SL" | awk '!seen[$0]++' | tr '\n' ' '
}
: > "$SL"
export DISM_TEST_STEPS_LOG=$SL
run /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$M"
is "a mount that logs its steps" "$RC" 0
run /Commit-Image /MountDir:"$M"
is "  /Commit-Image" "$RC" 0
run /Unmount-Image /MountDir:"$M" /Commit
is "  /Unmount-Image /Commit" "$RC" 0
unset DISM_TEST_STEPS_LOG
MOUNT_STEPS=$(steps_of DismMountImage)
COMMIT_STEPS=$(steps_of DismCommitImage)
UNMOUNT_STEPS=$(steps_of DismUnmountImage)
: > "$SL"
DISM_TEST_STEPS_LOG=$SL dism /Mount-Image /ImageFile:"$TMPD/w.wim" /Index:1 /MountDir:"$M" >/dev/null 2>&1
WIM_MOUNT_STEPS=$(steps_of DismMountImage)
DISM_TEST_STEPS_LOG=$SL dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
DISCARD_STEPS=$(steps_of DismUnmountImage)
run /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$M"
simulate_reboot "$M"
: > "$SL"
DISM_TEST_STEPS_LOG=$SL dism /Remount-Image /MountDir:"$M" >/dev/null 2>&1
REMOUNT_STEPS=$(steps_of DismRemountImage)
run /Unmount-Image /MountDir:"$M" /Discard
diag "mount: $MOUNT_STEPS"; diag "WIM mount: $WIM_MOUNT_STEPS"; diag "commit: $COMMIT_STEPS"
diag "unmount /Commit: $UNMOUNT_STEPS"; diag "unmount /Discard: $DISCARD_STEPS"
diag "remount: $REMOUNT_STEPS"
has_all() { local s; for s in $2; do [[ " $1 " == *" $s "* ]] || return 1; done; }
check "mount steps: locked .. mounted" has_all "$MOUNT_STEPS" \
  "locked recorded live server-started attached fs-mounted mounted"
check "WIM mount steps add volume" has_all "$WIM_MOUNT_STEPS" "$MOUNT_STEPS volume"
check "commit steps: locked" has_all "$COMMIT_STEPS" "locked"
check "unmount /Commit steps: locked .. live-removed" has_all "$UNMOUNT_STEPS" \
  "locked fs-unmounted detached committed server-stopped overlay-removed live-removed"
check "unmount /Discard steps: no commit" has_all "$DISCARD_STEPS" \
  "locked fs-unmounted detached server-stopped overlay-removed live-removed"
unlike "  (and no committed step)" "$DISCARD_STEPS" "committed"
check "remount steps: locked, torn-down + the bring-up" has_all "$REMOUNT_STEPS" \
  "locked torn-down server-started attached fs-mounted"

# ---- checks ---------------------------------------------------------------------------
# A status /Get-MountedImageInfo gives M ("" when not listed), asserting
# it is one of DISM's and agrees with what is mounted at M.
STATUS=
listed_status() {
  local what=$1 json
  json=$(dism /Get-MountedImageInfo /Format:json 2>&1)
  if [ $? -ne 0 ]; then not_ok "$what: /Get-MountedImageInfo exits 0"; diag "$json"; STATUS=?; return; fi
  STATUS=$($PY -c '
import json,sys
for m in json.load(sys.stdin)["mounted_images"]:
    if m["mount_dir"] == sys.argv[1]: print(m["status"])' "$M" <<<"$json")
  local fs=unmounted
  mountpoint -q "$M" && fs=mounted
  case "$STATUS/$fs" in
    Ok/mounted|NeedsRemount/*|Invalid/*|/unmounted) ok "$what: status '${STATUS:-not listed}' ($fs)" ;;
    *) not_ok "$what: status '${STATUS:-not listed}' is DISM's and true ($fs)" ;;
  esac
}
# What is left of the test's mounts, one line each ("" = clean).
leftovers() {
  ls -A "$DISM_STATE_DIR/mounts" 2>/dev/null | sed 's/^/record /'
  ls -A "$DISM_RUN_DIR/mounts" 2>/dev/null | sed 's/^/live /'
  ls -A "$DISM_STATE_DIR/scratch" 2>/dev/null | grep -v '^wim-cache$' | sed 's/^/scratch /'
  ls -A "$DISM_STATE_DIR/scratch/wim-cache" 2>/dev/null | grep '^\.build-' | sed 's/^/cache /'
  grep -F "$TMPD" /proc/mounts | sed 's/^/mount /'
  losetup -a | grep -F "$TMPD" | sed 's/^/loop /'
  pgrep -af 'dism-nbd-server|dism-supervise' | grep -F "$TMPD" | sed 's/^/process /'
  ls -A "$M" | sed 's/^/folder /'
}
clean() {
  local left
  left=$(leftovers)
  if [ -z "$left" ]; then ok "$1: clean"; else not_ok "$1: clean"; diag "$left"; fi
}

# The image: byte-identical to REF, or (after a commit) holding the case's
# file whole; REF follows a completed commit.
declare -A REF
image_intact() {  # image_intact WHAT KIND IMG CONTENT
  local what=$1 kind=$2 img=$3 content=$4 now got
  now=$(sum "$img")
  if [ "$now" = "${REF[$img]}" ] && [ "$MUST_CHANGE" = 1 ]; then
    not_ok "$what: the image holds the commit"; return
  fi
  if [ "$now" = "${REF[$img]}" ]; then ok "$what: image byte-identical"; return; fi
  if [ -z "$content" ]; then not_ok "$what: image byte-identical"; return; fi
  if [ "$kind" = wim ]; then
    check "$what: the WIM changed by a complete commit: verify passes" wimlib-imagex verify "$img"
    got=$(wimlib-imagex extract "$img" 1 /kill.txt --to-stdout 2>/dev/null)
  else
    check "$what: the VHDX changed by a complete commit: qemu-img check passes" \
      qemu-img check -q "$img"
    got=$(dism_peek "$img" kill.txt)
  fi
  is "$what:   it holds the whole written file" "$got" "$content"
  REF[$img]=$now
}
# dism_peek IMG FILE: FILE as a read-only mount of IMG shows it.
dism_peek() {
  dism /Mount-Image /ImageFile:"$1" /Index:1 /MountDir:"$M" /ReadOnly >/dev/null 2>&1 || return 1
  cat "$M/$2" 2>/dev/null
  dism /Unmount-Image /MountDir:"$M" /Discard >/dev/null 2>&1
}

# mount_args KIND IMG: the /Mount-Image arguments of a case
mount_args() {
  ARGS=(/Mount-Image /ImageFile:"$2" /Index:1 /MountDir:"$M")
  [ "$1" = ro ] && ARGS+=(/ReadOnly)
}
# killed ENV-STEP ARGS...: run dism killed at that step; it must die of SIGKILL.
killed() {
  local step=$1 rc; shift
  # (in a subshell of its own: its shell, not this one, reports the kill)
  (DISM_TEST_KILL_AT=$step "$DISM" /LogPath:"$LOG" "$@" >"$TMPD/k.out" 2>&1; exit $?) 2>/dev/null
  rc=$?
  if [ $rc -eq 137 ]; then ok "killed at $step"; else not_ok "killed at $step (exit $rc)"; diag "$(cat "$TMPD/k.out")"; fi
}
# The documented recovery of a killed OP, given the status seen: a killed
# read/write VHDX mount that needs a remount is remounted (proving the
# record true) and unmounted, the others' go with /Cleanup-Mountpoints (a
# mount that never completed is removed whatever its status);
# a killed unmount /Commit that needs a remount is remounted and committed
# again (nothing is lost), otherwise finished with /Discard (Invalid too);
# an Invalid or unlisted mount's leftovers otherwise go with
# /Cleanup-Mountpoints.
recover() {  # recover WHAT OP
  local what=$1 op=$2
  case "$op/$STATUS" in
    unmount-commit/NeedsRemount)
      run /Remount-Image /MountDir:"$M"
      is "$what: /Remount-Image" "$RC" 0
      is "$what:   the change is there" "$(cat "$M/kill.txt" 2>&1)" "$CONTENT"
      run /Unmount-Image /MountDir:"$M" /Commit
      is "$what:   then /Unmount-Image /Commit" "$RC" 0
      MUST_CHANGE=1 ;;
    unmount-commit/?*|unmount-discard/Ok|unmount-discard/NeedsRemount)
      run /Unmount-Image /MountDir:"$M" /Discard
      is "$what: /Unmount-Image /Discard" "$RC" 0 ;;
    remount/NeedsRemount|mount/NeedsRemount)
      if [ "$op" = mount ] && [ "$KIND" != rw ]; then
        run /Cleanup-Mountpoints
        is "$what: /Cleanup-Mountpoints" "$RC" 0
        return
      fi
      run /Remount-Image /MountDir:"$M"
      is "$what: /Remount-Image" "$RC" 0
      is "$what:   status Ok" "$(status_of "$M")" Ok
      run /Unmount-Image /MountDir:"$M" /Discard
      is "$what:   then /Unmount-Image /Discard" "$RC" 0 ;;
    */Ok|*/NeedsRemount)
      run /Unmount-Image /MountDir:"$M" /Discard
      is "$what: /Unmount-Image /Discard" "$RC" 0 ;;
    *)
      run /Cleanup-Mountpoints
      is "$what: /Cleanup-Mountpoints" "$RC" 0 ;;
  esac
  [ "$RC" -ne 0 ] && diag "$OUT"
}

# One case: the setup OP needs, dism killed at STEP, the status, the
# recovery, nothing left, the image intact.
kill_case() {  # kill_case KIND IMG OP STEP
  local kind=$1 img=$2 op=$3 step=$4 what content=
  KIND=$kind MUST_CHANGE=0
  what="$kind $op killed at $step"
  mount_args "$kind" "$img"
  if [ "$op" != mount ]; then
    run "${ARGS[@]}"
    is "$what: a fresh mount of the same image into the folder" "$RC" 0
    [ "$RC" -ne 0 ] && diag "$OUT"
  fi
  case $op in
    mount) killed "DismMountImage:$step" "${ARGS[@]}" ;;
    commit|unmount-commit)
      content="written before the kill at $kind $op $step"
      echo "$content" > "$M/kill.txt"; sync
      if [ "$op" = commit ]; then
        killed "DismCommitImage:$step" /Commit-Image /MountDir:"$M"
      else
        killed "DismUnmountImage:$step" /Unmount-Image /MountDir:"$M" /Commit
      fi ;;
    unmount-discard)
      [ "$kind" != ro ] && echo "discarded" > "$M/kill.txt"; sync
      killed "DismUnmountImage:$step" /Unmount-Image /MountDir:"$M" /Discard ;;
    remount)
      simulate_reboot "$M"
      killed "DismRemountImage:$step" /Remount-Image /MountDir:"$M" ;;
  esac
  CONTENT=$content
  listed_status "$what"
  recover "$what" "$op"
  clean "$what"
  image_intact "$what" "$kind" "$img" "$content"
}

REF[$TMPD/a.vhdx]=$(sum "$TMPD/a.vhdx")
REF[$TMPD/w.wim]=$(sum "$TMPD/w.wim")
clean "before the kills"
# kind image: the operations killed, each at every step it reached
matrix() {  # matrix KIND IMG MOUNT-STEPS
  local kind=$1 img=$2 s t0=$SECONDS
  for s in $3; do kill_case "$kind" "$img" mount "$s"; done
  [ "$kind" != ro ] &&
    for s in $UNMOUNT_STEPS; do kill_case "$kind" "$img" unmount-commit "$s"; done
  # (a WIM mount is slow under ASan: its other operations only on request)
  [ "$kind" = wim ] && [ "$ALL" != 1 ] && { diag "$kind: $((SECONDS - t0)) s"; return; }
  [ "$kind" != ro ] &&
    for s in $COMMIT_STEPS; do kill_case "$kind" "$img" commit "$s"; done
  for s in $DISCARD_STEPS; do kill_case "$kind" "$img" unmount-discard "$s"; done
  for s in $REMOUNT_STEPS; do kill_case "$kind" "$img" remount "$s"; done
  diag "$kind: $((SECONDS - t0)) s"
}
matrix rw "$TMPD/a.vhdx" "$MOUNT_STEPS"
matrix ro "$TMPD/a.vhdx" "$MOUNT_STEPS"
matrix wim "$TMPD/w.wim" "$WIM_MOUNT_STEPS"

# ---- a fresh mount after it all ----------------------------------------------------
for img in "$TMPD/a.vhdx" "$TMPD/w.wim"; do
  run /Mount-Image /ImageFile:"$img" /Index:1 /MountDir:"$M"
  is "a fresh mount of ${img##*/} after the kills" "$RC" 0
  is "  status Ok" "$(status_of "$M")" Ok
  run /Unmount-Image /MountDir:"$M" /Discard
  is "  unmounted" "$RC" 0
done
clean "after the fresh mounts"

# ---- SIGTERM / SIGINT cancel an operation in progress -------------------------------
# The CLI turns either signal into the cancel event.  A process paused by
# DISM_TEST_PAUSE_AT waits out the pause and sees the cancel at its next
# check: the mount after the server started, the unmount before unmounting.
P=$TMPD/pause
wait_for() { local i; for i in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
paused() {  # paused SIG STEP ARGS...: dism paused at STEP gets SIG, then goes on
  local sig=$1 step=$2; shift 2
  rm -f "$P"
  DISM_TEST_PAUSE_AT="$step:$P" "$DISM" /LogPath:"$LOG" "$@" >"$TMPD/t.out" 2>&1 &
  pid=$!
  check "dism paused at $step" wait_for "$P"
  kill "-$sig" "$pid"
  sleep 0.3
  rm -f "$P"
  wait "$pid"; RC=$?
}
paused TERM DismMountImage:live /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$M"
isnt "  SIGTERM to the mount: non-zero exit" "$RC" 0
like "  ERROR_CANCELLED (0x800704c7)" "$(cat "$TMPD/t.out")" "Error: 0x800704c7"
listed_status "mount cancelled by SIGTERM"
is "  not listed" "$STATUS" ""
clean "mount cancelled by SIGTERM"
is "  the image byte-identical" "$(sum "$TMPD/a.vhdx")" "${REF[$TMPD/a.vhdx]}"

run /Mount-Image /ImageFile:"$TMPD/a.vhdx" /Index:1 /MountDir:"$M"
is "mount again" "$RC" 0
echo "not committed" > "$M/kill.txt"
paused INT DismUnmountImage:locked /Unmount-Image /MountDir:"$M" /Commit
isnt "  SIGINT to the unmount /Commit: non-zero exit" "$RC" 0
like "  ERROR_CANCELLED (0x800704c7)" "$(cat "$TMPD/t.out")" "Error: 0x800704c7"
is "  the mount stays, status Ok" "$(status_of "$M")" Ok
is "  with its change" "$(cat "$M/kill.txt" 2>&1)" "not committed"
run /Unmount-Image /MountDir:"$M" /Discard
is "  unmount /Discard" "$RC" 0
clean "unmount cancelled by SIGINT"
is "  the image byte-identical" "$(sum "$TMPD/a.vhdx")" "${REF[$TMPD/a.vhdx]}"
