#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# run-vm.sh - run a test script inside Debian's kernel under qemu (TCG).
#
#   Kbuild/vm/run-vm.sh [--mem MiB] [--timeout SECS] [--file HOSTPATH:GUESTPATH ...]
#                       [--drive HOSTPATH ...] [--modopt 'MODULE ARGS' ...]
#                       [--log FILE] [--keep] TEST_SCRIPT [BINARY...]
#
# Builds an initramfs (mkinitramfs.sh: busybox, kernel modules, ntfs-3g tools,
# nbd-client, BINARY... with their libraries, TEST_SCRIPT as /test/run.sh,
# --file copies), boots the cached kernel (fetch-kernel.sh) with
#   qemu-system-x86_64 -accel tcg -m MEM -smp 2 -nodefaults -display none
#     -no-reboot -serial file:LOG -kernel ... -initrd ... -append 'console=ttyS0 ...'
# under a hard host-side timeout (default 240 s), and prints on stdout the
# lines the guest script wrote between the markers (TAP, passed through).
# --drive attaches a raw file as a virtio disk (/dev/vda, /dev/vdb, ... in
# order) for images too big for the initramfs; --file is for small ones.
# The full serial log (kernel, init, script, dmesg) is kept in LOG (default
# build/vm/logs/<script>.console.log).
# Exit: 0 the script ran and exited 0; 1 it exited non-zero; 2 the VM did not
# reach the end marker (boot failure, hang, watchdog, timeout); 3 usage/setup.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
die() { echo "run-vm.sh: $*" >&2; exit 3; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 3; }

mem=1024 timeout=240 log='' keep=0
mkargs=() drives=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) mem=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --file) mkargs+=(--file "$2"); shift 2 ;;
    --modopt) mkargs+=(--modopt "$2"); shift 2 ;;
    --drive) [ -f "$2" ] || die "--drive: '$2' not found"; drives+=("$2"); shift 2 ;;
    --log) log=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
script=$1; shift
[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -ge 30 ] || die "--timeout wants an integer >= 30"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (package qemu-system-x86: run tests/deps.sh)"
command -v timeout >/dev/null || die "'timeout' is missing (coreutils)"

VMDIR=$ROOT/build/vm
mkdir -p "$VMDIR/logs"
: "${log:=$VMDIR/logs/$(basename "$script" .sh).console.log}"
work=$(mktemp -d "$VMDIR/run.XXXXXX")
if [ "$keep" = 1 ]; then echo "run-vm.sh: keeping $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

t0=$(date +%s.%N)
"$HERE/mkinitramfs.sh" -o "$work/initrd.gz" ${mkargs[@]+"${mkargs[@]}"} "$script" "$@" \
  || die "building the initramfs failed"
KDIR=$VMDIR/kernel/current
t1=$(date +%s.%N)

# The guest watchdog fires first (it prints its report: init.sh), the host timeout last.
gwd=$((timeout - 25)); [ "$gwd" -ge 10 ] || gwd=10
qargs=(-accel tcg -m "$mem" -smp 2 -nodefaults -display none -monitor none -no-reboot
       -serial "file:$log" -kernel "$KDIR/vmlinuz" -initrd "$work/initrd.gz"
       -append "console=ttyS0 quiet panic=-1 oops=panic dism.timeout=$gwd")
for d in ${drives[@]+"${drives[@]}"}; do
  qargs+=(-drive "file=$d,format=raw,if=virtio,cache=unsafe")
done
rm -f "$log"
set +e
timeout --kill-after=5 "$timeout" qemu-system-x86_64 "${qargs[@]}" </dev/null
qrc=$?
set -e
t2=$(date +%s.%N)
[ -f "$log" ] || die "qemu wrote no serial log (exit $qrc)"

tr -d '\r' < "$log" > "$log.tmp" && mv "$log.tmp" "$log"
# (a script whose last line lacks a newline puts the end marker mid-line)
awk 'f && (i = index($0, "===DISM-VM-")) { if (i > 1) print substr($0, 1, i-1); exit }
     f {print} /^===DISM-VM-BEGIN===$/ {f=1}' "$log"
end=$(grep -o -m1 '===DISM-VM-END rc=[0-9]* uptime=[0-9.]*' "$log" || true)
printf 'run-vm.sh: initramfs %.1fs, VM %.1fs (qemu exit %d), guest %s; log %s\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$qrc" "${end:-(no end marker)}" "$log" >&2
if [ -z "$end" ]; then
  [ "$qrc" = 124 ] && echo "run-vm.sh: VM killed after the ${timeout}s timeout" >&2
  if grep -q '^===DISM-VM-WATCHDOG' "$log"; then
    # The watchdog's report (processes, kernel stacks, logs, dmesg) is what
    # explains a hang; CI keeps only this test's output.
    echo "run-vm.sh: the guest watchdog fired; its report:" >&2
    # (sed reads to the end: a head here could die of SIGPIPE under pipefail)
    sed -n '/^===DISM-VM-WATCHDOG/,$p' "$log" | sed -n '1,400s/^/  | /p' >&2
  else
    echo "run-vm.sh: the VM did not reach the end marker; last console lines:" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
  fi
  grep -q '^===DISM-VM-BEGIN===' "$log" || echo "run-vm.sh: the guest script never started (kernel or /init failed: see $log)" >&2
  exit 2
fi
rc=${end#*rc=}; rc=${rc%% *}
[ "$rc" = 0 ] || exit 1
exit 0
