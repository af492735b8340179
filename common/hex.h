/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hex.h - one hexadecimal digit's value (GUID text, %XX escapes in
 * locator URLs). */
#ifndef DISM_COMMON_HEX_H
#define DISM_COMMON_HEX_H

/* The value of hex digit c (either case), or -1 if c is not one. */
static inline int
dism_hex_digit(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

#endif
