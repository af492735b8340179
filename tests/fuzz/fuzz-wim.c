/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-wim - libFuzzer target for the WIM data source and the volume map.
 *
 * Input: a mode byte, then the rest.
 *  mode % 4 == 0: the rest is a WIM volume map (wim_map_parse); with mode
 *    bit 2 its size field and CRC trailer are re-sealed first, so
 *    mutations reach the table checks.  Accepted maps get lookups.
 *  mode % 4 == 3: the rest is a WIM header (wim_header_parse).
 *  mode % 4 == 1 or 2: a resource.  The rest is: one byte (compression
 *    1 XPRESS, 2 LZX, 3 LZMS in bits 0-1, chunk size 2^(12+bits 2-5)),
 *    le32 uncompressed size (at most 4 MiB), le16 read offset seed, then
 *    the resource's bytes as stored: mode 1 non-solid (chunk table, chunks),
 *    mode 2 solid (16-byte header, sizes, chunks; the uncompressed size is
 *    the header's, capped).  A WIM header is put before it in a memfd, the
 *    resource is read whole and in pieces through a 1 MiB cache.
 * Must not crash, hang or leak.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "byteorder.h"
#include "crc32c.h"
#include "disk.h"
#include "wim-map.h"
#include "wim-source.h"

#define MAX_USIZE (4u << 20)

static void
fuzz_map(const uint8_t *data, size_t size, int reseal)
{
  struct wim_map *m = NULL;
  uint8_t *buf = malloc(size ? size : 1);

  if (!buf)
    abort();
  memcpy(buf, data, size);
  if (reseal && size >= 132) {
    put_le64(buf + 112, size);
    put_le32(buf + size - 4, dism_crc32c(0, buf, size - 4));
  }
  if (wim_map_parse(buf, size, "fuzz.map", &m) == 0) {
    uint64_t probes[] = { 0, 1, 4095, 4096, m->volume_size / 2, m->volume_size - 1 };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
      if (wim_map_lookup(m, probes[i]) > m->extent_count)
        abort();
    wim_map_free(m);
  }
  free(buf);
}

static void
fuzz_resource(const uint8_t *data, size_t size, bool solid)
{
  static const uint32_t ctype_flag[4] = { 0, 0x20000, 0x40000, 0x80000 };
  struct wim_source_opts opts = { .cache_bytes = 1u << 20 };
  struct wim_source *ws = NULL;
  struct wim_resource res;
  uint8_t hdr[208] = { 0 }, *out = NULL;
  char path[64];
  uint32_t ctype, cs, usize;
  uint16_t seed;
  int fd;

  if (size < 7)
    return;
  ctype = data[0] & 3;
  if (ctype == 0)
    ctype = 1;
  cs = 1u << (12 + ((data[0] >> 2) & 15));
  usize = get_le32(data + 1) % (MAX_USIZE + 1);
  seed = get_le16(data + 5);
  data += 7;
  size -= 7;
  if (solid && size >= 8) {
    uint64_t h = get_le64(data);
    usize = h <= MAX_USIZE ? (uint32_t) h : MAX_USIZE;
  }

  memcpy(hdr, "MSWIM\0\0\0", 8);
  put_le32(hdr + 8, 208);
  put_le32(hdr + 12, solid ? 0xe00 : 0x10d00);
  put_le32(hdr + 16, 0x2 | ctype_flag[ctype]);
  put_le32(hdr + 20, cs);
  put_le16(hdr + 40, 1);
  put_le16(hdr + 42, 1);
  put_le32(hdr + 44, 1);
  fd = memfd_create("fuzz.wim", MFD_CLOEXEC);
  if (fd < 0)
    abort();
  if (write(fd, hdr, sizeof hdr) != (ssize_t) sizeof hdr ||
      (size && write(fd, data, size) != (ssize_t) size))
    abort();
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  if (wim_source_open(path, &opts, &ws) < 0)
    goto out;
  res.offset = sizeof hdr;
  res.size = size;
  res.uncompressed_size = usize;
  res.flags = WIM_RES_COMPRESSED | (solid ? WIM_RES_SOLID : 0);
  out = malloc(usize ? usize : 1);
  if (!out)
    abort();
  /* Pieces first (they fill the cache), then the whole, then past the end. */
  if (usize) {
    uint64_t a = (uint64_t) seed * 131 % usize, b = (uint64_t) seed * 7919 % usize;
    (void) wim_source_read(ws, &res, a, out, usize - a < 5000 ? usize - a : 5000);
    (void) wim_source_read(ws, &res, b, out, 1);
  }
  (void) wim_source_read(ws, &res, 0, out, usize);
  if (wim_source_read(ws, &res, usize, out, 1) != -EINVAL)
    abort();
  /* The same resource described otherwise (a bad map): the table cached
   * for the first description is never indexed past its end. */
  res.uncompressed_size += 70000;
  (void) wim_source_read(ws, &res, usize, out, 1);
out:
  free(out);
  wim_source_close(ws);
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct wim_header_info h;

  if (size < 1)
    return 0;
  switch (data[0] & 3) {
  case 0:
    fuzz_map(data + 1, size - 1, data[0] & 4);
    break;
  case 1:
  case 2:
    fuzz_resource(data + 1, size - 1, (data[0] & 3) == 2);
    break;
  default:
    (void) wim_header_parse(data + 1, size - 1, "fuzz.wim", &h);
    break;
  }
  return 0;
}
