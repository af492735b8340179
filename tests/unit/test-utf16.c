/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-utf16.c - common/utf16.c: BMP, surrogate pairs, invalid input. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "utf16.h"
#include "unit-tap.h"

int
main(void)
{
  /* "A", U+00E9, U+20AC, U+1F600 (the pair D83D DE00) */
  static const uint8_t le[] = { 0x41, 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde };
  static const uint8_t be[] = { 0, 0x41, 0, 0xe9, 0x20, 0xac, 0xd8, 0x3d, 0xde, 0x00 };
  static const char utf8[] = "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  static const uint8_t lone_hi[] = { 0x41, 0, 0x3d, 0xd8 };
  static const uint8_t lone_lo[] = { 0x00, 0xde, 0x41, 0 };
  static const uint8_t hi_hi[] = { 0x3d, 0xd8, 0x3d, 0xd8 };
  static const uint8_t nul_mid[] = { 0x41, 0, 0, 0, 0x42, 0 };
  char out[32];
  uint8_t u16[16];

  ok(dism_utf16le_to_utf8(le, 5, out, sizeof out) == 10 && strcmp(out, utf8) == 0,
     "LE with a surrogate pair");
  ok(dism_utf16be_to_utf8(be, 5, out, sizeof out) == 10 && strcmp(out, utf8) == 0,
     "BE with a surrogate pair");
  ok(dism_utf16le_to_utf8(nul_mid, 3, out, sizeof out) == 1 && strcmp(out, "A") == 0,
     "stops at a NUL unit");
  ok(dism_utf16le_to_utf8(lone_hi, 2, out, sizeof out) == -EILSEQ, "high surrogate at the end");
  ok(dism_utf16le_to_utf8(lone_lo, 2, out, sizeof out) == -EILSEQ && out[0] == 0,
     "lone low surrogate");
  ok(dism_utf16le_to_utf8(hi_hi, 2, out, sizeof out) == -EILSEQ, "high surrogate, then high");
  ok(dism_utf16le_to_utf8(le, 5, out, 10) == -ENAMETOOLONG && strcmp(out, "A\xc3\xa9\xe2\x82\xac") == 0,
     "too small: -ENAMETOOLONG, what fitted NUL-terminated");
  ok(dism_utf16le_to_utf8(le, 5, out, 0) == -ENAMETOOLONG, "no room at all");

  memset(u16, 0xee, sizeof u16);
  ok(dism_utf8_to_utf16le(utf8, u16, 8) == 5 && memcmp(u16, le, sizeof le) == 0,
     "UTF-8 to LE, the pair made");
  ok(u16[10] == 0xee, "no NUL unit written");
  ok(dism_utf8_to_utf16le(utf8, u16, 4) == -ENAMETOOLONG, "no room for the pair");
  ok(dism_utf8_to_utf16le("\xff", u16, 8) == -EILSEQ, "invalid lead byte");
  ok(dism_utf8_to_utf16le("\xe2\x82", u16, 8) == -EILSEQ, "truncated sequence");
  ok(dism_utf8_to_utf16le("a\x80", u16, 8) == -EILSEQ, "stray continuation byte");
  ok(dism_utf8_to_utf16le("", u16, 8) == 0, "empty string: no units");
  return tap_done();
}
