/* util.c - byte-level helpers shared by the format backends. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util.h"

/* ---- CRC-32C ---------------------------------------------------------- */

static uint32_t crc32c_table[8][256];

static void __attribute__((constructor))
crc32c_init_table(void)
{
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc32c_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
                           crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

static uint32_t
crc32c_sw(uint32_t c, const unsigned char *p, size_t len)
{
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= c;
    c = crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff] ^
        crc32c_table[5][(w >> 16) & 0xff] ^ crc32c_table[4][(w >> 24) & 0xff] ^
        crc32c_table[3][(w >> 32) & 0xff] ^ crc32c_table[2][(w >> 40) & 0xff] ^
        crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--)
    c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t c, const unsigned char *p, size_t len)
{
  uint64_t c64 = c;
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
    p += 8;
    len -= 8;
  }
  c = (uint32_t) c64;
  while (len--)
    c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
#endif

uint32_t
crc32c(uint32_t crc, const void *buf, size_t len)
{
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2"))
    return ~crc32c_hw(c, buf, len);
#endif
  return ~crc32c_sw(c, buf, len);
}

/* ---- GUIDs ------------------------------------------------------------ */

void
guid_to_string(const struct guid *g, char out[37])
{
  const uint8_t *b = g->b;
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void
guid_be_to_string(const uint8_t b[16], char out[37])
{
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

bool
guid_is_zero(const struct guid *g)
{
  static const struct guid zero;
  return memcmp(g, &zero, sizeof zero) == 0;
}

bool
guid_equal(const struct guid *a, const struct guid *b)
{
  return memcmp(a, b, sizeof *a) == 0;
}

static int
hexval(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int
guid_parse(const char *s, struct guid *g)
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
    int hi = hexval(s[0]), lo;
    if (hi < 0 || (lo = hexval(s[1])) < 0)
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

void
guid_generate(struct guid *g)
{
  if (getrandom(g->b, sizeof g->b, 0) != (ssize_t) sizeof g->b) {
    /* getrandom on Linux >= 3.17 does not fail for 16 bytes; fall back to
     * something unique anyway. */
    uint64_t t = (uint64_t) getpid() ^ (uint64_t) (uintptr_t) g;
    memcpy(g->b, &t, 8);
  }
  g->b[7] = (uint8_t) ((g->b[7] & 0x0f) | 0x40);  /* version 4 */
  g->b[8] = (uint8_t) ((g->b[8] & 0x3f) | 0x80);  /* variant 1 */
}

/* ---- UTF-16 ----------------------------------------------------------- */

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
utf16le_to_utf8(const void *in, size_t len16, char *out, size_t outsize)
{
  return utf16_to_utf8(in, len16, false, out, outsize);
}

int
utf16be_to_utf8(const void *in, size_t len16, char *out, size_t outsize)
{
  return utf16_to_utf8(in, len16, true, out, outsize);
}

int
utf8_to_utf16le(const char *in, void *out_v, size_t out_units)
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

/* ---- parent paths ----------------------------------------------------- */

int
resolve_parent_path(const char *child_path, const char *recorded,
                    bool windows_absolute, char *out, size_t outsize)
{
  char rec[4096];
  const char *name;
  size_t dirlen;
  const char *slash = strrchr(child_path, '/');
  int n;

  if (snprintf(rec, sizeof rec, "%s", recorded) >= (int) sizeof rec)
    return -ENAMETOOLONG;
  for (char *p = rec; *p; p++)
    if (*p == '\\')
      *p = '/';
  dirlen = slash ? (size_t) (slash - child_path) : 0;

  if (rec[0] == '/' && !windows_absolute) {
    n = snprintf(out, outsize, "%s", rec);       /* POSIX absolute */
  } else if (windows_absolute ||
             (rec[0] && rec[1] == ':') || (rec[0] == '/' && rec[1] == '/')) {
    /* A Windows absolute path ("C:/x/y.vhd", "//server/share/y.vhd"): the
     * drive does not exist here, so look beside the child. */
    name = strrchr(rec, '/');
    name = name ? name + 1 : (rec[0] && rec[1] == ':' ? rec + 2 : rec);
    n = dirlen ? snprintf(out, outsize, "%.*s/%s", (int) dirlen, child_path, name)
               : snprintf(out, outsize, "%s", name);
  } else {
    const char *r = rec;
    while (r[0] == '.' && r[1] == '/')
      r += 2;
    n = dirlen ? snprintf(out, outsize, "%.*s/%s", (int) dirlen, child_path, r)
               : snprintf(out, outsize, "%s", r);
  }
  if (n < 0 || (size_t) n >= outsize)
    return -ENAMETOOLONG;
  return 0;
}
