/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-crc32c.c - common/crc32c.c against known answers. */
#include <stdint.h>
#include <string.h>

#include "crc32c.h"
#include "unit-tap.h"

int
main(void)
{
  uint8_t buf[1031], block[32];
  uint32_t whole, parts;

  ok(dism_crc32c(0, "123456789", 9) == 0xE3069283u, "CRC-32C of \"123456789\" is 0xE3069283");
  ok(dism_crc32c(0, "", 0) == 0, "CRC-32C of nothing is 0");
  /* RFC 3720 (iSCSI) B.4 vectors */
  memset(block, 0, sizeof block);
  ok(dism_crc32c(0, block, 32) == 0x8A9136AAu, "32 zero bytes: 0x8A9136AA");
  memset(block, 0xff, sizeof block);
  ok(dism_crc32c(0, block, 32) == 0x62A8AB43u, "32 0xFF bytes: 0x62A8AB43");
  for (int i = 0; i < 32; i++)
    block[i] = (uint8_t) i;
  ok(dism_crc32c(0, block, 32) == 0x46DD794Eu, "32 incrementing bytes: 0x46DD794E");

  /* Continuing a CRC gives the one-shot value, whatever the split and the
   * alignment (8-byte words, then the tail). */
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t) (i * 131 + 7);
  whole = dism_crc32c(0, buf + 1, sizeof buf - 1);
  parts = dism_crc32c(0, buf + 1, 13);
  parts = dism_crc32c(parts, buf + 14, 500);
  parts = dism_crc32c(parts, buf + 514, sizeof buf - 514);
  ok(whole == parts, "split and unaligned: same value");
  parts = 0;
  for (size_t i = 1; i < sizeof buf; i++)
    parts = dism_crc32c(parts, buf + i, 1);
  ok(whole == parts, "byte by byte: same value");
  return tap_done();
}
