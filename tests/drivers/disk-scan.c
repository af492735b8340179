/* SPDX-License-Identifier: GPL-2.0-or-later */
/* disk-scan - open an image read-only through the engine and read it, for
 * the malformed-image suite (tests/t/46-malformed.t, tests/lib/malformed.py).
 *
 *   disk-scan [-B] [-F FORMAT] [-L LIMIT] IMAGE
 *
 * Prints key=value facts (format, subtype, size, sectors, mode, pages,
 * bytes_read, digest) on stdout and exits 0, or prints "disk-scan: " and the
 * engine's message (which names the file) on stderr and exits 1.
 *
 * A disk of at most LIMIT bytes (default 256 MiB) is read whole, in 1 MiB
 * requests.  A larger one is read through its extents: every data extent
 * (at most LIMIT bytes in all), the first 64 KiB and the last 4 KiB of every
 * hole, and the first and last MiB of the disk.  Either way, a range the
 * extents call ZERO must read as zeroes (exit 3 otherwise: the engine
 * contradicts itself).
 *
 * digest: a 64-bit fold, in ascending order, of (page number, CRC-32 of the
 * page) over every 4 KiB page that was read and is not all zeroes (the last
 * page zero-padded).  Zero pages do not count, so the digest of a complete
 * read equals tests/lib/malformed.py's digest of a raw file with the same
 * bytes, and a read through the extents equals a complete one whenever all
 * non-zero data was read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"

#define MiB (1024ull * 1024)
#define PAGE 4096u
#define CHUNK MiB

struct range { uint64_t off, end; };

struct scan {
  struct disk *d;
  uint32_t crc_table[256];
  uint64_t digest, pages, bytes_read;
  struct disk_extent *zero;   /* the ZERO extents, ascending */
  size_t nzero, zero_cap;
  uint64_t limit;
  unsigned char *buf;
};

static int
fail(const char *what, int r)
{
  fprintf(stderr, "disk-scan: %s: %s (%s)\n", what, disk_last_error(), strerror(-r));
  return 1;
}

static void
crc_init(struct scan *s)
{
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    s->crc_table[i] = c;
  }
}

/* zlib's crc32, so Python's zlib.crc32 gives the same page sums. */
static uint32_t
crc32_page(const struct scan *s, const unsigned char *p, size_t n)
{
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++)
    c = s->crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  for (size_t i = n; i < PAGE; i++)          /* zero padding of the last page */
    c = s->crc_table[c & 0xFF] ^ (c >> 8);
  return ~c;
}

/* Does [off, end) of the disk lie in an extent reported ZERO? */
static bool
in_zero_extent(const struct scan *s, uint64_t off, uint64_t end)
{
  size_t lo = 0, hi = s->nzero;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (s->zero[mid].offset + s->zero[mid].length <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < s->nzero && s->zero[lo].offset <= off &&
         end <= s->zero[lo].offset + s->zero[lo].length;
}

/* Read [off, end) (4 KiB aligned, except at the end of the disk), fold its
 * pages into the digest.  Returns 0, 1 (read error, printed) or 3. */
static int
read_range(struct scan *s, uint64_t off, uint64_t end)
{
  while (off < end) {
    size_t n = end - off < CHUNK ? (size_t) (end - off) : CHUNK;
    int r = disk_pread(s->d, s->buf, n, off);
    if (r < 0) {
      char what[64];
      snprintf(what, sizeof what, "read at %llu", (unsigned long long) off);
      return fail(what, r);
    }
    s->bytes_read += n;
    for (size_t p = 0; p < n; p += PAGE) {
      size_t len = n - p < PAGE ? n - p : PAGE;
      uint64_t at = off + p;
      if (disk_is_zero(s->buf + p, len))
        continue;
      if (in_zero_extent(s, at, at + len)) {
        fprintf(stderr, "disk-scan: %s: the page at %llu is reported ZERO by the "
                "extents but does not read as zeroes\n", s->d->path,
                (unsigned long long) at);
        return 3;
      }
      uint64_t v = (at / PAGE) << 32 | crc32_page(s, s->buf + p, len);
      s->digest = (s->digest ^ v) * 0x100000001B3ull;
      s->pages++;
    }
    off += n;
  }
  return 0;
}

/* Walk the extents of the whole disk; collect ZERO ones, and (when ranges is
 * not NULL) the ranges an extents-mode scan reads. */
static int
walk_extents(struct scan *s, struct range **ranges, size_t *nranges)
{
  struct disk *d = s->d;
  size_t cap = 0;
  uint64_t off = 0, data_budget = s->limit;

  while (off < d->size) {
    struct disk_extents e;
    disk_extents_init(&e, off, d->size, 4096);
    int r = disk_extents(d, d->size - off, off, &e);
    if (r < 0)
      return fail("extents", r);
    if (e.n == 0 || e.v[0].offset > off) {
      fprintf(stderr, "disk-scan: %s: extents at %llu made no progress\n", d->path,
              (unsigned long long) off);
      disk_extents_free(&e);
      return 3;
    }
    for (size_t k = 0; k < e.n && off < d->size; k++) {
      uint64_t a = e.v[k].offset, len = e.v[k].length;
      if (a != off || len == 0) {
        fprintf(stderr, "disk-scan: %s: extent at %llu does not continue at %llu\n",
                d->path, (unsigned long long) a, (unsigned long long) off);
        disk_extents_free(&e);
        return 3;
      }
      if (len > d->size - a)
        len = d->size - a;
      uint64_t b = a + len;
      if (e.v[k].flags & DISK_EXTENT_ZERO) {
        if (s->nzero == s->zero_cap) {
          size_t nc = s->zero_cap ? 2 * s->zero_cap : 64;
          struct disk_extent *nz = realloc(s->zero, nc * sizeof *nz);
          if (!nz) {
            disk_extents_free(&e);
            return fail("extents", -ENOMEM);
          }
          s->zero = nz;
          s->zero_cap = nc;
        }
        s->zero[s->nzero++] = (struct disk_extent) { a, len, e.v[k].flags };
      }
      if (ranges) {
        struct range want[2];
        size_t nw = 0;
        if (!(e.v[k].flags & DISK_EXTENT_ZERO)) {
          uint64_t take = len < data_budget ? len : data_budget;
          data_budget -= take;
          if (take)
            want[nw++] = (struct range) { a, a + take };
        } else {
          want[nw++] = (struct range) { a, a + (len < 65536 ? len : 65536) };
          if (len > 65536 + PAGE)
            want[nw++] = (struct range) { b - PAGE, b };
        }
        for (size_t w = 0; w < nw; w++) {
          if (*nranges == cap) {
            size_t nc = cap ? 2 * cap : 64;
            struct range *nr = realloc(*ranges, nc * sizeof *nr);
            if (!nr) {
              disk_extents_free(&e);
              return fail("extents", -ENOMEM);
            }
            *ranges = nr;
            cap = nc;
          }
          (*ranges)[(*nranges)++] = want[w];
        }
      }
      off = b;
    }
    disk_extents_free(&e);
  }
  return 0;
}

static int
range_cmp(const void *a, const void *b)
{
  const struct range *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

int
main(int argc, char **argv)
{
  struct disk_open_opts opts = { .readonly = true };
  struct scan s = { .limit = 256 * MiB };
  struct range *rg = NULL;
  size_t nrg = 0;
  struct disk_info info;
  int c, r;

  while ((c = getopt(argc, argv, "BF:L:")) != -1) {
    switch (c) {
    case 'B': opts.allow_bad_checksum = true; break;
    case 'F': opts.format = optarg; break;
    case 'L': s.limit = strtoull(optarg, NULL, 0); break;
    default: return 2;
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, "usage: disk-scan [-B] [-F FORMAT] [-L LIMIT] IMAGE\n");
    return 2;
  }
  crc_init(&s);
  r = disk_open(argv[optind], &opts, &s.d);
  if (r < 0)
    return fail("open", r);
  /* Every exit from here closes the disk, so LeakSanitizer only ever
   * reports the engine's own leaks. */
  if ((r = disk_info(s.d, &info)) < 0) {
    r = fail("info", r);
    goto out;
  }
  printf("format=%s\nsubtype=%s\nsize=%llu\nlogical_sector=%u\nphysical_sector=%u\n"
         "has_parent=%d\n", info.format, info.subtype,
         (unsigned long long) s.d->size, s.d->logical_sector, s.d->physical_sector,
         s.d->parent != NULL);
  s.buf = malloc(CHUNK);
  if (!s.buf) {
    r = fail("scan", -ENOMEM);
    goto out;
  }

  bool full = s.d->size <= s.limit;
  if ((r = walk_extents(&s, full ? NULL : &rg, &nrg)) != 0)
    goto out;
  if (full) {
    r = read_range(&s, 0, s.d->size);
  } else {
    /* The disk's first and last MiB too; then 4 KiB-align, sort, merge. */
    struct range *nr = realloc(rg, (nrg + 2) * sizeof *nr);
    if (!nr) {
      r = fail("scan", -ENOMEM);
      goto out;
    }
    rg = nr;
    rg[nrg++] = (struct range) { 0, MiB < s.d->size ? MiB : s.d->size };
    rg[nrg++] = (struct range) { s.d->size > MiB ? s.d->size - MiB : 0, s.d->size };
    for (size_t k = 0; k < nrg; k++) {
      rg[k].off &= ~(uint64_t) (PAGE - 1);
      rg[k].end = (rg[k].end + PAGE - 1) & ~(uint64_t) (PAGE - 1);
      if (rg[k].end > s.d->size)
        rg[k].end = s.d->size;
    }
    qsort(rg, nrg, sizeof *rg, range_cmp);
    size_t m = 0;
    for (size_t k = 0; k < nrg; k++) {
      if (m > 0 && rg[k].off <= rg[m - 1].end) {
        if (rg[k].end > rg[m - 1].end)
          rg[m - 1].end = rg[k].end;
      } else {
        rg[m++] = rg[k];
      }
    }
    r = 0;
    for (size_t k = 0; k < m && r == 0; k++)
      r = read_range(&s, rg[k].off, rg[k].end);
  }
  if (r == 0)
    printf("mode=%s\npages=%llu\nbytes_read=%llu\ndigest=%016llx\n",
           full ? "full" : "extents", (unsigned long long) s.pages,
           (unsigned long long) s.bytes_read, (unsigned long long) s.digest);
out:
  free(rg);
  free(s.zero);
  free(s.buf);
  disk_close(s.d);
  return r;
}
