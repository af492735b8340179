#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Install every Debian package the build, tests and benchmarks need.
# Idempotent: when everything is present it changes nothing (apt-get update is
# still run first, as CI on a brand-new machine needs current lists).
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config clang libclang-rt-14-dev llvm linux-libc-dev
  libnbd-dev libfuse3-dev libwim-dev ntfs-3g-dev libgnutls28-dev nettle-dev libseccomp-dev libhivex-dev
  # test oracles and peers
  libnbd-bin python3-libnbd nbdkit qemu-utils libvhdi-utils python3-libvhdi fio gnutls-bin
  wimtools ntfs-3g fuse3 fdisk gdisk util-linux dosfstools
  # test registry hives (tests/t/11-imageinfo-windows.t: hivexregedit, hivexget)
  libhivex-bin libwin-hivex-perl
  gzip bzip2 xxd bc strace attr procps psmisc kmod cpio unzip
  # socket buffers (tests/t/39-zero-copy.t: ss)
  iproute2
  # udev rules (tests/t/86-udev-*.t: udevadm test; 87-vm-udev.t: systemd-udevd in the VM)
  udev
  # dismtab and the generator's units (tests/t/84-dismtab-*.t: systemd-analyze
  # verify, systemd-escape; dismtab(5) checked with groff)
  systemd groff-base
  # VM suite
  qemu-system-x86 busybox-static
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
  echo "deps.sh: missing packages (${missing[*]}) and not root: run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
