/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-overlay-map - libFuzzer target for reopening an overlay file.
 *
 * Input: one mode byte, then the overlay file.  The file goes into a memfd
 * and is reopened with OVERLAY_OPEN_EXISTING over a small raw base (also a
 * memfd).  Mode bit 0 re-seals the header for this base (path and
 * checksum) and bit 1 the map slot checksums, so mutations reach the map
 * decoder instead of dying at a checksum; with the bits clear the bytes
 * are taken as they are.  Then: read ranges, extents, foreach, a small
 * write + flush, close.  Must not crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk.h"
#include "overlay.h"

#define BASE_SIZE (32 * 1024)

static int base_fd = -1;

static int
memfd_with(const char *name, const void *buf, size_t len)
{
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0)
    return -1;
  if (len && write(fd, buf, len) != (ssize_t) len) {
    close(fd);
    return -1;
  }
  return fd;
}

static int
count_range(void *opaque, uint64_t offset, uint64_t length, int state)
{
  uint64_t *n = opaque;
  (void) offset;
  (void) state;
  *n += length;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct disk_open_opts opts = { .readonly = true, .format = "raw" };
  char base_path[64], ovl_path[64];
  struct disk *base = NULL, *ovl = NULL;
  uint8_t *file, buf[BASE_SIZE];
  uint64_t n = 0;
  int ofd;

  if (size < 1)
    return 0;
  if (base_fd < 0) {
    for (size_t i = 0; i < BASE_SIZE; i++)
      buf[i] = (uint8_t) (i * 7 + 3);
    base_fd = memfd_with("ovl-base", buf, BASE_SIZE);
    if (base_fd < 0)
      abort();
  }
  snprintf(base_path, sizeof base_path, "/proc/self/fd/%d", base_fd);
  if (disk_open(base_path, &opts, &base) < 0)
    abort();

  file = malloc(size - 1 ? size - 1 : 1);
  if (!file)
    abort();
  memcpy(file, data + 1, size - 1);
  if (data[0] & 1)
    overlay_fuzz_fixup(base, file, size - 1, data[0] & 2);
  ofd = memfd_with("ovl", file, size - 1);
  free(file);
  if (ofd < 0)
    abort();
  snprintf(ovl_path, sizeof ovl_path, "/proc/self/fd/%d", ofd);

  if (overlay_open(base, ovl_path, OVERLAY_OPEN_EXISTING, &ovl) == 0) {
    struct disk_extents e;
    disk_pread(ovl, buf, BASE_SIZE, 0);
    disk_pread(ovl, buf, 5000, 1234);
    disk_extents_init(&e, 0, BASE_SIZE, 0);
    disk_extents(ovl, BASE_SIZE, 0, &e);
    disk_extents_free(&e);
    overlay_foreach(ovl, count_range, &n);
    if (n > BASE_SIZE || overlay_used_bytes(ovl) != n)
      abort();   /* foreach and used_bytes must agree */
    disk_pwrite(ovl, buf, 1000, 3000, 0);
    disk_zero(ovl, 9000, 8000, DISK_F_MAY_TRIM);
    disk_flush(ovl);
    disk_close(ovl);
  }
  close(ofd);
  return 0;
}
