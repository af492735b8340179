/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guid.c - GUIDs in the Microsoft mixed-endian layout. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include "guid.h"
#include "hex.h"

void
dism_guid_to_string(const struct dism_guid *g, char out[DISM_GUID_STRLEN])
{
  const uint8_t *b = g->b;
  snprintf(out, DISM_GUID_STRLEN,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void
dism_guid_be_to_string(const uint8_t b[16], char out[DISM_GUID_STRLEN])
{
  snprintf(out, DISM_GUID_STRLEN,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

bool
dism_guid_is_zero(const struct dism_guid *g)
{
  static const struct dism_guid zero;
  return memcmp(g, &zero, sizeof zero) == 0;
}

bool
dism_guid_equal(const struct dism_guid *a, const struct dism_guid *b)
{
  return memcmp(a, b, sizeof *a) == 0;
}

int
dism_guid_parse(const char *s, struct dism_guid *g)
{
  uint8_t be[16];
  size_t n = 0;
  bool brace = false;

  if (*s == '{') {
    brace = true;
    s++;
  }
  for (int i = 0; i < 36; i++, s++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (*s != '-')
        return -EINVAL;
      continue;
    }
    int hi = dism_hex_digit(s[0]), lo;
    if (hi < 0 || (lo = dism_hex_digit(s[1])) < 0)
      return -EINVAL;
    be[n++] = (uint8_t) (hi << 4 | lo);
    s++;
    i++;
  }
  if (brace && *s++ != '}')
    return -EINVAL;
  if (*s)
    return -EINVAL;
  /* Microsoft layout: first three fields little-endian. */
  g->b[0] = be[3]; g->b[1] = be[2]; g->b[2] = be[1]; g->b[3] = be[0];
  g->b[4] = be[5]; g->b[5] = be[4]; g->b[6] = be[7]; g->b[7] = be[6];
  memcpy(g->b + 8, be + 8, 8);
  return 0;
}

int
dism_guid_generate(struct dism_guid *g)
{
  int r = 0;

  if (getrandom(g->b, sizeof g->b, 0) != (ssize_t) sizeof g->b) {
    /* getrandom on Linux >= 3.17 does not fail for 16 bytes; a caller that
     * cannot stop here still gets something unique (see guid.h). */
    uint64_t t = (uint64_t) getpid() ^ (uint64_t) (uintptr_t) g;
    r = errno ? -errno : -EIO;   /* a short read leaves errno alone */
    memcpy(g->b, &t, 8);
  }
  g->b[7] = (uint8_t) ((g->b[7] & 0x0f) | 0x40);  /* version 4 */
  g->b[8] = (uint8_t) ((g->b[8] & 0x3f) | 0x80);  /* variant 1 */
  return r;
}

int
dism_guid_generate_string(char out[DISM_GUID_STRLEN])
{
  struct dism_guid g;
  int r = dism_guid_generate(&g);

  dism_guid_to_string(&g, out);
  return r;
}
