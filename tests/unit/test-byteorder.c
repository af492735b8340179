/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-byteorder.c - common/byteorder.h on fixed arrays, at odd addresses. */
#include <stdint.h>
#include <string.h>

#include "byteorder.h"
#include "unit-tap.h"

int
main(void)
{
  static const uint8_t seq[9] = { 0xee, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
  const uint8_t *p = seq + 1;            /* unaligned on purpose */
  uint8_t buf[9], want[8];

  ok(get_le16(p) == 0x0201, "get_le16");
  ok(get_le32(p) == 0x04030201u, "get_le32");
  ok(get_le64(p) == UINT64_C(0x0807060504030201), "get_le64");
  ok(get_be16(p) == 0x0102, "get_be16");
  ok(get_be32(p) == 0x01020304u, "get_be32");
  ok(get_be64(p) == UINT64_C(0x0102030405060708), "get_be64");

  memcpy(want, p, 8);
  memset(buf, 0xee, sizeof buf);
  put_le16(buf + 1, 0x0201);
  ok(memcmp(buf + 1, want, 2) == 0 && buf[3] == 0xee, "put_le16 writes 2 bytes");
  put_le32(buf + 1, 0x04030201u);
  ok(memcmp(buf + 1, want, 4) == 0 && buf[5] == 0xee, "put_le32 writes 4 bytes");
  put_le64(buf + 1, UINT64_C(0x0807060504030201));
  ok(memcmp(buf + 1, want, 8) == 0, "put_le64");
  memset(buf, 0xee, sizeof buf);
  put_be16(buf + 1, 0x0102);
  ok(memcmp(buf + 1, want, 2) == 0 && buf[3] == 0xee, "put_be16 writes 2 bytes");
  put_be32(buf + 1, 0x01020304u);
  ok(memcmp(buf + 1, want, 4) == 0 && buf[5] == 0xee, "put_be32 writes 4 bytes");
  put_be64(buf + 1, UINT64_C(0x0102030405060708));
  ok(memcmp(buf + 1, want, 8) == 0, "put_be64");
  ok(buf[0] == 0xee, "nothing written before the address");

  put_le64(buf, UINT64_C(0xfedcba9876543210));
  ok(get_le64(buf) == UINT64_C(0xfedcba9876543210), "le64 round trip");
  put_be32(buf, 0x80000001u);
  ok(get_be32(buf) == 0x80000001u && buf[0] == 0x80, "be32 round trip, high byte first");
  return tap_done();
}
