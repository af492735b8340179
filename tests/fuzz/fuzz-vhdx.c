/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-vhdx - libFuzzer target for the VHDX reader, log replay and writer.
 *
 * A valid VHDX is at least ~4 MiB (regions are 1 MiB aligned) but mostly
 * zeroes, and libFuzzer caps inputs at 1 MiB, so the input is a sparse file
 * description (tests/lib/mkvhdx.py fuzzpack makes one from an image):
 *   byte 0       mode: bit 0 read-write, bit 1 re-seal checksums
 *   bytes 1..4   file size in 4 KiB pages (LE, capped at 256 MiB)
 *   records      u32 LE page number, u16 LE length, then length bytes,
 *                written at page * 4096
 * Re-sealing recomputes the CRC-32C of both headers and region tables so
 * mutations get past them.  Then:
 *   read-only:  open (a dirty log is replayed in memory), read a few ranges
 *               and the extents, info, close;
 *   read-write: open (a dirty log is replayed into the memfd), the same
 *               reads, a 4 KiB write that must read back, zero, trim, flush.
 * Differencing images fail to find their parent; that path is covered too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAGES (256u * 256)         /* 256 MiB */

static uint32_t
crc32c_sw(const uint8_t *p, size_t n)
{
  uint32_t c = ~0u;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0x82F63B78u & -(c & 1));
  }
  return ~c;
}

static void
reseal(int fd, uint64_t off, size_t len)
{
  static uint8_t b[64 * 1024];
  if (pread(fd, b, len, (off_t) off) != (ssize_t) len)
    return;
  memset(b + 4, 0, 4);
  uint32_t c = crc32c_sw(b, len);
  (void) pwrite(fd, &c, 4, (off_t) off + 4);
}

/* Build the sparse file the input describes. */
static int
unpack(const uint8_t *data, size_t size)
{
  int fd = memfd_create("fuzz-vhdx", MFD_CLOEXEC);
  uint32_t pages;
  size_t i = 5;

  if (fd < 0)
    return -1;
  memcpy(&pages, data + 1, 4);
  if (pages > MAX_PAGES)
    pages = MAX_PAGES;
  if (ftruncate(fd, (off_t) pages * 4096) < 0)
    goto fail;
  while (i + 6 <= size) {
    uint32_t pg;
    uint16_t len;
    memcpy(&pg, data + i, 4);
    memcpy(&len, data + i + 4, 2);
    i += 6;
    if (len > size - i)
      len = (uint16_t) (size - i);
    if (pg < MAX_PAGES && (uint64_t) pg * 4096 + len <= (uint64_t) MAX_PAGES * 4096 &&
        pwrite(fd, data + i, len, (off_t) pg * 4096) != (ssize_t) len)
      goto fail;
    i += len;
  }
  if (data[0] & 2) {
    reseal(fd, 64 * 1024, 4096);
    reseal(fd, 128 * 1024, 4096);
    reseal(fd, 192 * 1024, 64 * 1024);
    reseal(fd, 256 * 1024, 64 * 1024);
  }
  return fd;
fail:
  close(fd);
  return -1;
}

static void
exercise(struct disk *d, bool rw, const uint8_t *data, size_t size)
{
  static uint8_t buf[256 * 1024], wbuf[4096];
  const uint64_t probes[] = { 0, 512, 1 << 20, d->size / 2, d->size - 1 };
  struct disk_extents e;
  struct disk_info info;

  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    uint64_t off = probes[i] < d->size ? probes[i] : 0;
    size_t n = d->size - off < sizeof buf ? (size_t) (d->size - off) : sizeof buf;
    if (n)
      (void) disk_pread(d, buf, n, off);
  }
  disk_extents_init(&e, 0, d->size, 64);
  (void) disk_extents(d, d->size, 0, &e);
  disk_extents_free(&e);
  (void) disk_info(d, &info);

  if (!rw || d->size < sizeof wbuf)
    return;
  /* A write somewhere derived from the input must read back. */
  uint64_t off = 0;
  if (size >= 13)
    memcpy(&off, data + 5, 8);
  off = (off % (d->size / 512)) * 512;
  if (off + sizeof wbuf > d->size)
    off = d->size - sizeof wbuf;
  for (size_t i = 0; i < sizeof wbuf; i++)
    wbuf[i] = (uint8_t) (i * 7 + 1);
  if (disk_pwrite(d, wbuf, sizeof wbuf, off, 0) == 0) {
    if (disk_pread(d, buf, sizeof wbuf, off) == 0 && memcmp(buf, wbuf, sizeof wbuf) != 0)
      abort();
  }
  (void) disk_zero(d, d->size < (2u << 20) ? d->size : (2u << 20), 0, DISK_F_MAY_TRIM);
  (void) disk_trim(d, d->size, 0, 0);
  (void) disk_flush(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct disk_open_opts opts = { .format = "vhdx" };
  struct disk *d = NULL;
  char path[64];
  bool rw;
  int fd;

  if (size < 5)
    return 0;
  rw = data[0] & 1;
  fd = unpack(data, size);
  if (fd < 0)
    return 0;
  opts.readonly = !rw;
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  if (disk_open(path, &opts, &d) == 0) {
    exercise(d, rw, data, size);
    disk_close(d);
  }
  close(fd);
  return 0;
}
