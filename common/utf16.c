/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* utf16.c - UTF-16 to and from UTF-8, surrogate pairs checked. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "byteorder.h"
#include "utf16.h"

static int
utf16_to_utf8(const unsigned char *in, size_t len16, bool be, char *out,
              size_t outsize)
{
  size_t o = 0;

  if (outsize == 0)
    return -ENAMETOOLONG;
  for (size_t i = 0; i < len16; i++) {
    uint32_t u = be ? (uint32_t) (in[2 * i] << 8 | in[2 * i + 1])
                    : (uint32_t) (in[2 * i + 1] << 8 | in[2 * i]);
    if (u == 0)
      break;
    if (u >= 0xd800 && u < 0xdc00) {
      if (i + 1 >= len16)
        goto bad;
      uint32_t lo = be ? (uint32_t) (in[2 * i + 2] << 8 | in[2 * i + 3])
                       : (uint32_t) (in[2 * i + 3] << 8 | in[2 * i + 2]);
      if (lo < 0xdc00 || lo >= 0xe000)
        goto bad;
      u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
      i++;
    } else if (u >= 0xdc00 && u < 0xe000) {
      goto bad;
    }
    char tmp[4];
    size_t n;
    if (u < 0x80) { tmp[0] = (char) u; n = 1; }
    else if (u < 0x800) { tmp[0] = (char) (0xc0 | u >> 6); tmp[1] = (char) (0x80 | (u & 0x3f)); n = 2; }
    else if (u < 0x10000) { tmp[0] = (char) (0xe0 | u >> 12); tmp[1] = (char) (0x80 | ((u >> 6) & 0x3f)); tmp[2] = (char) (0x80 | (u & 0x3f)); n = 3; }
    else { tmp[0] = (char) (0xf0 | u >> 18); tmp[1] = (char) (0x80 | ((u >> 12) & 0x3f)); tmp[2] = (char) (0x80 | ((u >> 6) & 0x3f)); tmp[3] = (char) (0x80 | (u & 0x3f)); n = 4; }
    if (o + n + 1 > outsize) {
      out[o] = 0;
      return -ENAMETOOLONG;
    }
    memcpy(out + o, tmp, n);
    o += n;
  }
  out[o] = 0;
  return (int) o;
bad:
  out[o] = 0;
  return -EILSEQ;
}

int
dism_utf16le_to_utf8(const void *in, size_t len16, char *out, size_t outsize)
{
  return utf16_to_utf8(in, len16, false, out, outsize);
}

int
dism_utf16be_to_utf8(const void *in, size_t len16, char *out, size_t outsize)
{
  return utf16_to_utf8(in, len16, true, out, outsize);
}

int
dism_utf8_to_utf16le(const char *in, void *out_v, size_t out_units)
{
  const unsigned char *s = (const unsigned char *) in;
  unsigned char *out = out_v;
  size_t o = 0;

  while (*s) {
    uint32_t u;
    int n;
    if (s[0] < 0x80) { u = s[0]; n = 1; }
    else if ((s[0] & 0xe0) == 0xc0) { u = s[0] & 0x1f; n = 2; }
    else if ((s[0] & 0xf0) == 0xe0) { u = s[0] & 0x0f; n = 3; }
    else if ((s[0] & 0xf8) == 0xf0) { u = s[0] & 0x07; n = 4; }
    else return -EILSEQ;
    for (int k = 1; k < n; k++) {
      if ((s[k] & 0xc0) != 0x80)
        return -EILSEQ;
      u = u << 6 | (s[k] & 0x3f);
    }
    s += n;
    if (u >= 0x10000) {
      if (o + 2 > out_units)
        return -ENAMETOOLONG;
      u -= 0x10000;
      put_le16(out + 2 * o++, (uint16_t) (0xd800 | (u >> 10)));
      put_le16(out + 2 * o++, (uint16_t) (0xdc00 | (u & 0x3ff)));
    } else {
      if (o + 1 > out_units)
        return -ENAMETOOLONG;
      put_le16(out + 2 * o++, (uint16_t) u);
    }
  }
  return (int) o;
}
