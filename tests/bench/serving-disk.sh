# SPDX-License-Identifier: GPL-2.0-or-later
# serving-disk.sh - the serving benchmarks' disk (sourced by run-bench.sh
# and run-ab-serving.sh, so both measure the same thing).
# make_serving_disk DIR: DIR/disk.raw, 2 GiB holding 1 GiB of random data in
# 64 MiB pieces spread over it (every other 64 MiB), and DIR/disk.vhdx, the
# same as a dynamic VHDX.
make_serving_disk() {
  local raw=$1/disk.raw i
  truncate -s 2G "$raw"
  for i in $(seq 0 2 31); do
    head -c 64M /dev/urandom | dd of="$raw" bs=1M seek=$((i*64)) conv=notrunc status=none
  done
  qemu-img convert -f raw -O vhdx -o subformat=dynamic "$raw" "$1/disk.vhdx"
}
