/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-vhd - libFuzzer target for the VHD backend.
 *
 * Input: byte 0 holds flags (bit 0: allow bad checksums, bit 1: open
 * read-write and write a little), the rest is the image file.  The image is
 * put in a memfd and opened with the format forced to VHD; then a few ranges
 * are read, the extents listed, the disk closed.  Parent look-ups resolve
 * beside a directory that does not exist, so they find nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk.h"
#include "formats.h"

static void
exercise(struct disk *d, bool rw)
{
  static char buf[1 << 16];
  uint64_t offs[4];
  struct disk_extents e;

  if (d->size == 0)
    return;
  offs[0] = 0;
  offs[1] = d->size / 2;
  offs[2] = d->size > 5000 ? d->size - 5000 : 0;
  offs[3] = d->size / 3 + 1;
  for (int i = 0; i < 4; i++) {
    size_t n = d->size - offs[i] < sizeof buf ? (size_t) (d->size - offs[i]) : sizeof buf;
    if (n == 0)
      continue;
    if (rw && i == 3) {
      memset(buf, 0xa5, n > 1300 ? 1300 : n);
      disk_pwrite(d, buf, n > 1300 ? 1300 : n, offs[i], 0);
      disk_zero(d, n > 700 ? 700 : n, offs[i], 0);
      disk_flush(d);
    }
    disk_pread(d, buf, n, offs[i]);
  }
  disk_extents_init(&e, 0, d->size, 64);
  disk_extents(d, d->size, 0, &e);
  disk_extents_free(&e);
  {
    struct disk_info info;
    disk_info(d, &info);
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct disk_open_opts opts = { 0 };
  struct disk *d = NULL;
  bool rw;
  int fd;

  if (size < 1)
    return 0;
  opts.allow_bad_checksum = data[0] & 1;
  rw = data[0] & 2;
  opts.readonly = !rw;
  opts.format = "vhd";
  fd = memfd_create("fuzz-vhd", MFD_CLOEXEC);
  if (fd < 0)
    abort();
  if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t) (size - 1))
    abort();
  if (dism_format_vhd.open("/nonexistent-fuzz-dir/fuzz.vhd", fd, &opts, &d) < 0) {
    close(fd);        /* on failure the caller keeps fd */
    return 0;
  }
  exercise(d, rw);
  disk_close(d);      /* closes fd */
  return 0;
}
