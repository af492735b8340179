/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-partition - libFuzzer target for libdism's partition-table parser
 * (userspace/lib/partition.c): MBR with the logical chain, GPT primary and
 * backup with both CRCs, the NTFS boot-sector check.
 *
 * Input: byte 0 picks the sector-size hint (0: detect, 1: 512, 2: 4096);
 * the rest is the disk (its first sectors, GPT entries, ...; the backup GPT
 * is at its end).  Reads past the end fail like a short image would. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"

struct mem {
  const uint8_t *p;
  size_t n;
};

static int
mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
  const struct mem *m = ctx;

  if (off > m->n || len > m->n - off)
    return -EIO;
  memcpy(buf, m->p + off, len);
  return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const unsigned hints[4] = { 0, 512, 4096, 0 };
  static struct dism_part_table t;
  struct mem m;
  struct dism_disk_io io;
  char list[256];

  if (size < 1)
    return 0;
  m = (struct mem) { data + 1, size - 1 };
  io = (struct dism_disk_io) { .pread = mem_pread, .ctx = &m, .size = m.n,
                               .name = "fuzz" };
  if (dism_part_read_table(&io, hints[data[0] & 3], &t) == 0) {
    dism_part_list(&t, list, sizeof list);
    /* what the attach code relies on */
    for (unsigned i = 0; i < t.count; i++)
      if (t.part[i].offset > m.n || t.part[i].size > m.n - t.part[i].offset ||
          t.part[i].size == 0)
        abort();
    if (t.sector_size != 512 && t.sector_size != 4096)
      abort();
  }
  return 0;
}
