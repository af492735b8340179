/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-guid.c - common/guid.c: text, Microsoft layout, parse, generate. */
#include <errno.h>
#include <string.h>

#include "guid.h"
#include "unit-tap.h"

int
main(void)
{
  /* {6BA7B810-9DAD-11D1-80B4-00C04FD430C8} as Windows stores it: the first
   * three fields little-endian, the last eight bytes as written. */
  static const uint8_t ms[16] = { 0x10, 0xb8, 0xa7, 0x6b, 0xad, 0x9d, 0xd1, 0x11,
                                  0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8 };
  static const uint8_t be[16] = { 0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                  0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8 };
  static const char text[] = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
  struct dism_guid g, h, zero = { { 0 } };
  char s[DISM_GUID_STRLEN];

  ok(dism_guid_parse("{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}", &g) == 0, "parse with braces");
  ok(memcmp(g.b, ms, 16) == 0, "parsed into the mixed-endian layout");
  ok(dism_guid_parse(text, &h) == 0 && dism_guid_equal(&g, &h), "parse without braces, lower case");
  dism_guid_to_string(&g, s);
  ok(strcmp(s, text) == 0, "to_string: %s", s);
  dism_guid_be_to_string(be, s);
  ok(strcmp(s, text) == 0, "be_to_string of the big-endian bytes: %s", s);
  ok(!dism_guid_is_zero(&g) && dism_guid_is_zero(&zero), "is_zero");
  h.b[15] ^= 1;
  ok(!dism_guid_equal(&g, &h), "equal sees the last byte");

  ok(dism_guid_parse("{6ba7b810-9dad-11d1-80b4-00c04fd430c8", &h) == -EINVAL, "no closing brace");
  ok(dism_guid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8}", &h) == -EINVAL, "stray closing brace");
  ok(dism_guid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c", &h) == -EINVAL, "one digit short");
  ok(dism_guid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8a", &h) == -EINVAL, "one digit long");
  ok(dism_guid_parse("6ba7b810+9dad-11d1-80b4-00c04fd430c8", &h) == -EINVAL, "bad separator");
  ok(dism_guid_parse("6ba7b81g-9dad-11d1-80b4-00c04fd430c8", &h) == -EINVAL, "bad hex digit");
  ok(dism_guid_parse("", &h) == -EINVAL, "empty");

  ok(dism_guid_generate(&g) == 0, "generate");
  dism_guid_to_string(&g, s);
  ok(s[14] == '4', "version 4 in the text: %s", s);
  ok(strchr("89ab", s[19]) != NULL, "variant 1 in the text: %s", s);
  ok(dism_guid_parse(s, &h) == 0 && dism_guid_equal(&g, &h), "generated text round trip");
  dism_guid_generate(&h);
  ok(!dism_guid_equal(&g, &h), "two generated GUIDs differ");
  return tap_done();
}
