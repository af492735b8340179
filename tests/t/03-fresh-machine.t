#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The README's first command on a fresh machine: `sudo make deps demo`, typed
# by root as a minimal Debian has no sudo, in a copy of the project tree, in
# a chroot of this machine's root under an overlay where the build's -dev
# packages, pkg-config and the demo's tools are purged (so their headers and
# .pc files are really gone) until deps installs them again
# (tests/fresh-machine.sh; the host is never written).  Then the same with
# make -j2: every build target waits for deps.
# needs-root: a chroot with mount namespaces, overlayfs and apt-get install
source "$(dirname "$0")/../lib/tap.sh"
need_cmd unshare chroot apt-get dpkg-query tar
# The run builds its own tree inside the chroot: nothing in it depends on
# $BUILD, so the sanitizer pass does not repeat it.
if [ "$SANITIZED" = 1 ]; then
  ok "fresh machine: run in the plain pass only (independent of \$BUILD)"
  exit 0
fi

fresh() {  # fresh OUT COMMAND: one run, its checks
  local out=$1 cmd=$2 log
  "$ROOT/tests/fresh-machine.sh" overlay "$out" "$cmd" > "$out.err" 2>&1
  check "[$cmd] the fresh-machine harness ran" test -s "$out/command.rc"
  [ -s "$out/command.rc" ] || { diag "$(tail -20 "$out.err")"; return; }
  is "[$cmd] before: no -dev package, pkg-config or demo tool installed" \
    "$(grep -c ' installed$\| present$' "$out/before.txt")" 0
  log=$(cat "$out/command.log")
  is "[$cmd] exits 0 (took $(cat "$out/seconds")s)" "$(cat "$out/command.rc")" 0
  [ "$(cat "$out/command.rc")" = 0 ] || diag "$(tail -30 "$out/command.log")"
  like "[$cmd] deps installed the packages" "$log" 'deps.sh: installing [^
]*libfuse3-dev'
  # Nothing was compiled before deps.sh had finished installing.
  local first_cc deps_end
  first_cc=$(grep -n '^cc \|^clang ' "$out/command.log" | head -1 | cut -d: -f1)
  deps_end=$(grep -n '^deps.sh: installing' "$out/command.log" | head -1 | cut -d: -f1)
  check "[$cmd] the first compilation comes after deps" test "${first_cc:-0}" -gt "${deps_end:-999999}"
  like "[$cmd] the demo mounted the sample and read its file" "$log" 'Hello from a Windows image'
  like "[$cmd] the demo's commit is in the VHDX (nbdinfo, remount)" "$log" \
    'description: dism demo sample.*after remounting read-only: Written on Linux'
  is "[$cmd] after: every package and header is back" \
    "$(grep -c ' absent$' "$out/after.txt")" 0
  diag "[$cmd] $(cat "$out/seconds")s"
}

fresh "$TMPD/serial" "make deps demo"
fresh "$TMPD/parallel" "make -j2 deps demo"
is "no mount left behind" "$(grep -c dism-fresh /proc/mounts)" 0
