/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-hex.c - common/hex.h over every byte value. */
#include "hex.h"
#include "unit-tap.h"

int
main(void)
{
  const char *digits = "0123456789abcdef", *upper = "0123456789ABCDEF";
  int right = 0, rejected = 0, bytes = 0;

  for (int i = 0; i < 16; i++)
    right += dism_hex_digit(digits[i]) == i && dism_hex_digit(upper[i]) == i;
  ok(right == 16, "0-9, a-f and A-F have their values");
  for (int c = 0; c < 256; c++) {
    int is_hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!is_hex) {
      bytes++;
      rejected += dism_hex_digit(c) == -1;
    }
  }
  ok(rejected == bytes, "the other %d byte values are -1", bytes);
  ok(dism_hex_digit(-1) == -1, "EOF is -1");
  return tap_done();
}
