/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* overlay.c - a copy-on-write layer over any disk.
 *
 * On-disk format (all integers little-endian; see docs/architecture.md,
 * "Copy-on-write overlay"):
 *
 *   [0, 4096)            header: magic, version, geometry, base identity, crc
 *   [map_off, data_off)  map: for each map page two 4096-byte slots (A, B)
 *   [data_off, ...)      data: virtual offset X lives at data_off + X
 *
 * The file is sparse: untouched data granules and map pages take no space.
 * A map slot is a 32-byte header (magic, crc32c, generation, page index)
 * and 4064 bytes holding 2 bits per granule (BASE, DATA, ZERO), so one map
 * page describes 16256 granules (63.5 MiB of virtual disk).
 *
 * Granule: 4 KiB.  It matches the page size and the 4K logical sectors of
 * modern disks, so a typical guest write is whole granules (no copy-up),
 * while keeping the copy-up cost of a 512-byte write small; the map costs
 * 2 bits per 4 KiB (64 MiB of map for 1 TiB fully written, far less in
 * memory since uniform map pages are not materialised).
 *
 * Durability: data is written in place, the map is changed only in memory
 * (pages marked dirty).  disk_flush() snapshots the dirty map pages,
 * fdatasyncs the data, writes each snapshot into the slot of its page that
 * does NOT hold the newest durable copy (with a generation number higher
 * than any before) and fdatasyncs again.  After a crash each page loads
 * from its valid slot with the highest generation, so a torn slot falls
 * back to the previous flushed version of that page, and no slot ever
 * claims DATA for a granule whose data was not synced before it.
 *
 * Live map (<overlay>.live): every map change is also written, without a
 * sync, into a side file, so that a process killed between flushes (the
 * machine still up, its page cache intact) loses nothing it acknowledged:
 * the next open in the same boot adopts that file instead of the last
 * flushed map.  See "live map" below.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "crc32c.h"
#include "overlay.h"
#include "test-hooks.h"

#define OVL_MAGIC        "DISMOVL\0"
#define OVL_VERSION      1u
#define OVL_HDR_SIZE     4096u
#define OVL_GRANULE      4096u
#define OVL_SLOT_SIZE    4096u
#define OVL_SLOT_HDR     32u
#define OVL_PAYLOAD      (OVL_SLOT_SIZE - OVL_SLOT_HDR)
#define OVL_GPP          (OVL_PAYLOAD * 4u)      /* granules per map page */
#define OVL_SLOT_MAGIC   "OVMP"
#define OVL_PATH_OFF     128u
#define OVL_PATH_MAX     (OVL_HDR_SIZE - OVL_PATH_OFF)

/* The live map file: a header, then map page p's payload at
 * LIVE_HDR + p * LIVE_STRIDE (sparse; a hole reads as all BASE). */
#define LIVE_MAGIC       "DISMLIVE"
#define LIVE_VERSION     1u
#define LIVE_HDR         4096u
#define LIVE_STRIDE      4096u
#define LIVE_SUFFIX      ".live"
#define L_VERSION        8
#define L_BOOTID         16      /* 40 bytes: /proc/sys/kernel/random/boot_id */
#define L_DEV            56
#define L_INO            64
#define L_NPAGES         72
#define L_GENLO          80      /* the durable map generation lies in */
#define L_GENHI          88      /* [GENLO, GENHI] while this file is current */
#define L_BOOTID_LEN     40u

/* Header field offsets. */
#define H_VERSION    8
#define H_CRC        12
#define H_GRANULE    16
#define H_SLOTSIZE   20
#define H_GPP        24
#define H_LSECTOR    28
#define H_SIZE       32
#define H_MAPOFF     40
#define H_MAPPAGES   48
#define H_DATAOFF    56
#define H_FORMAT     64      /* 16 bytes */
#define H_UNIQUEID   80      /* 40 bytes */

/* Map slot header offsets. */
#define S_CRC        4
#define S_GEN        8
#define S_PAGE       16

enum { ST_BASE = 0, ST_DATA = 1, ST_ZERO = 2 };

/* Striped granule locks: every mutation locks the stripes of the granules
 * it touches (in ascending stripe order, so no deadlock), so a copy-up of
 * a partial granule never races with another write to the same granule. */
#define NSTRIPES     1024u

/* Flush writes dirty map pages in batches so its buffer stays small. */
#define FLUSH_BATCH  256u

struct mpage {
  uint8_t *bits;     /* OVL_PAYLOAD bytes, NULL: every granule is 'uniform' */
  uint8_t uniform;
  uint8_t dirty;     /* changed since its last snapshot (map_lock) */
  int8_t slot;       /* slot holding the newest durable copy, -1: none
                      * (only touched under flush_lock) */
  uint8_t reserved;  /* its slots (and live page) have file space (atomic) */
};

struct overlay {
  int fd;
  uint64_t data_off, map_off;
  uint64_t ngran, npages;
  struct mpage *pages;
  pthread_rwlock_t map_lock;     /* pages[].bits/uniform/dirty */
  pthread_mutex_t flush_lock;    /* serialises flushes; pages[].slot, gen */
  /* Mutations (write, zero, trim) hold it shared; overlay_commit holds it
   * exclusively, so no change can land in a range already merged and then
   * be forgotten by the reset.  Reads never take it: during a commit the
   * overlay and the base hold the same bytes for every merged range. */
  pthread_rwlock_t commit_lock;
  uint64_t gen;                  /* highest map slot generation written */
  int broken;                    /* a flush failed: refuse further writes */
  int live_fd;                   /* the live map, -1: none (map_lock) */
  char *live_path;
  pthread_mutex_t stripes[NSTRIPES];
};

static void live_page(struct overlay *o, uint64_t p, uint32_t a, uint32_t b);
static void overlay_remove_live(const char *path);

/* ---- in-memory map ------------------------------------------------------ */

static inline uint32_t
page_granules(const struct overlay *o, uint64_t p)
{
  uint64_t left = o->ngran - p * OVL_GPP;
  return left < OVL_GPP ? (uint32_t) left : OVL_GPP;
}

static inline unsigned
bits_get(const uint8_t *bits, uint32_t i)
{
  return (bits[i >> 2] >> ((i & 3) * 2)) & 3;
}

static inline void
bits_set(uint8_t *bits, uint32_t i, unsigned st)
{
  unsigned sh = (i & 3) * 2;
  bits[i >> 2] = (uint8_t) ((bits[i >> 2] & ~(3u << sh)) | (st << sh));
}

static inline uint8_t
pattern(unsigned st)
{
  return (uint8_t) (st * 0x55);
}

static unsigned
map_get(const struct overlay *o, uint64_t g)
{
  const struct mpage *mp = &o->pages[g / OVL_GPP];
  return mp->bits ? bits_get(mp->bits, (uint32_t) (g % OVL_GPP)) : mp->uniform;
}

/* The state shared by all n granules of bits, or -1. */
static int
bits_uniform(const uint8_t *bits, uint32_t n)
{
  unsigned st = bits_get(bits, 0);
  uint32_t nb = n / 4;

  if (nb > 0 && (bits[0] != pattern(st) || memcmp(bits, bits + 1, nb - 1) != 0))
    return -1;
  for (uint32_t i = nb * 4; i < n; i++)
    if (bits_get(bits, i) != st)
      return -1;
  return (int) st;
}

/* Set granules [g0, g1) to st.  Caller holds map_lock for writing. */
static int
map_set(struct overlay *o, uint64_t g0, uint64_t g1, unsigned st)
{
  for (uint64_t p = g0 / OVL_GPP; g0 < g1; p++) {
    struct mpage *mp = &o->pages[p];
    uint64_t first = p * OVL_GPP;
    uint32_t n = page_granules(o, p);
    uint32_t a = (uint32_t) (g0 - first);
    uint32_t b = g1 - first < n ? (uint32_t) (g1 - first) : n;

    g0 = first + b;
    if (a == 0 && b == n) {
      bool changed = mp->bits || mp->uniform != st;
      free(mp->bits);
      mp->bits = NULL;
      mp->uniform = (uint8_t) st;
      if (changed) {
        mp->dirty = 1;
        live_page(o, p, 0, n);
      }
      continue;
    }
    if (!mp->bits) {
      if (mp->uniform == st)
        continue;
      mp->bits = malloc(OVL_PAYLOAD);
      if (!mp->bits)
        return -ENOMEM;
      memset(mp->bits, pattern(mp->uniform), OVL_PAYLOAD);
    }
    uint32_t i = a;
    for (; i < b && (i & 3); i++)
      bits_set(mp->bits, i, st);
    if (b - i >= 4) {
      memset(mp->bits + i / 4, pattern(st), (b - i) / 4);
      i += (b - i) & ~3u;
    }
    for (; i < b; i++)
      bits_set(mp->bits, i, st);
    mp->dirty = 1;
    if (bits_uniform(mp->bits, n) == (int) st) {
      free(mp->bits);
      mp->bits = NULL;
      mp->uniform = (uint8_t) st;
    }
    live_page(o, p, a, b);
  }
  return 0;
}

/* State of granule g and the first granule after g (below glim) whose state
 * differs.  Caller holds map_lock. */
static unsigned
map_run(const struct overlay *o, uint64_t g, uint64_t glim, uint64_t *run_end)
{
  unsigned st = map_get(o, g);
  uint64_t pos = g + 1;

  while (pos < glim) {
    uint64_t p = pos / OVL_GPP, first = p * OVL_GPP;
    const struct mpage *mp = &o->pages[p];
    uint64_t pend = first + page_granules(o, p);
    uint32_t i, iend;

    if (pend > glim)
      pend = glim;
    if (!mp->bits) {
      if (mp->uniform != st)
        break;
      pos = pend;
      continue;
    }
    i = (uint32_t) (pos - first);
    iend = (uint32_t) (pend - first);
    while (i < iend) {
      if ((i & 3) == 0 && i + 4 <= iend && mp->bits[i >> 2] == pattern(st)) {
        i += 4;
        continue;
      }
      if (bits_get(mp->bits, i) != st)
        break;
      i++;
    }
    pos = first + i;
    if (i < iend)
      break;
  }
  *run_end = pos < glim ? pos : glim;
  return st;
}

/* ---- granule locks ------------------------------------------------------ */

static void
stripes_range(uint64_t g0, uint64_t g1, uint32_t r[4])
{
  /* Granules [g0, g1] as up to two ascending stripe ranges [r0,r1) [r2,r3). */
  if (g1 - g0 + 1 >= NSTRIPES) {
    r[0] = 0; r[1] = NSTRIPES; r[2] = r[3] = 0;
    return;
  }
  uint32_t s0 = (uint32_t) (g0 % NSTRIPES), s1 = (uint32_t) (g1 % NSTRIPES);
  if (s0 <= s1) {
    r[0] = s0; r[1] = s1 + 1; r[2] = r[3] = 0;
  } else {
    r[0] = 0; r[1] = s1 + 1; r[2] = s0; r[3] = NSTRIPES;
  }
}

static void
lock_granules(struct overlay *o, uint64_t g0, uint64_t g1)
{
  uint32_t r[4];
  stripes_range(g0, g1, r);
  for (uint32_t s = r[0]; s < r[1]; s++)
    pthread_mutex_lock(&o->stripes[s]);
  for (uint32_t s = r[2]; s < r[3]; s++)
    pthread_mutex_lock(&o->stripes[s]);
}

static void
unlock_granules(struct overlay *o, uint64_t g0, uint64_t g1)
{
  uint32_t r[4];
  stripes_range(g0, g1, r);
  for (uint32_t s = r[0]; s < r[1]; s++)
    pthread_mutex_unlock(&o->stripes[s]);
  for (uint32_t s = r[2]; s < r[3]; s++)
    pthread_mutex_unlock(&o->stripes[s]);
}

/* ---- data path ---------------------------------------------------------- */

static inline uint64_t
gran_len(const struct disk *d, uint64_t g)
{
  uint64_t left = d->size - g * OVL_GRANULE;
  return left < OVL_GRANULE ? left : OVL_GRANULE;
}

static int
check_broken(struct disk *d)
{
  struct overlay *o = d->priv;
  if (__atomic_load_n(&o->broken, __ATOMIC_ACQUIRE)) {
    disk_set_error("%s: an earlier flush failed; the overlay refuses writes "
                   "until it is reopened", d->path);
    return -EIO;
  }
  return 0;
}

/* A read walks the range in runs of one granule state; pread copies them,
 * map describes them. */
typedef int (*ovl_run_fn)(struct disk *d, void *opaque, uint64_t voff,
                          uint64_t len, unsigned st);

static int
ovl_walk(struct disk *d, uint64_t count, uint64_t offset, ovl_run_fn fn,
         void *opaque)
{
  struct overlay *o = d->priv;
  uint64_t end = offset + count, glim = (end - 1) / OVL_GRANULE + 1;
  int r = 0;

  while (offset < end && r == 0) {
    uint64_t gend, n;
    unsigned st;

    pthread_rwlock_rdlock(&o->map_lock);
    st = map_run(o, offset / OVL_GRANULE, glim, &gend);
    pthread_rwlock_unlock(&o->map_lock);
    n = (gend * OVL_GRANULE < end ? gend * OVL_GRANULE : end) - offset;
    r = fn(d, opaque, offset, n, st);
    offset += n;
  }
  return r;
}

struct ovl_read_ctx {
  char *buf;
  uint64_t start;
};

static int
read_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len, unsigned st)
{
  struct ovl_read_ctx *x = opaque;
  struct overlay *o = d->priv;
  char *p = x->buf + (voff - x->start);

  if (st == ST_BASE)
    return disk_pread(d->parent, p, len, voff);
  if (st == ST_DATA)
    return disk_full_pread(o->fd, d->path, p, len, o->data_off + voff, false);
  memset(p, 0, len);
  return 0;
}

static int
ovl_pread(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  struct ovl_read_ctx x = { buf, offset };
  return ovl_walk(d, count, offset, read_run, &x);
}

/* DATA granules are written before the map says DATA, so they are in the
 * file (or its page cache) as they read; BASE comes from the layer below. */
static int
describe_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len, unsigned st)
{
  struct overlay *o = d->priv;

  if (st == ST_BASE)
    return disk_map_parent(d->parent, len, voff, opaque);
  if (st == ST_DATA)
    return disk_map_add(opaque, o->fd, o->data_off + voff, len);
  return disk_map_add(opaque, -1, 0, len);
}

static int
ovl_map(struct disk *d, uint64_t count, uint64_t offset, struct disk_map *out)
{
  return ovl_walk(d, count, offset, describe_run, out);
}

/* Fill buf with the current contents of granule g.  Caller holds its lock. */
static int
read_granule(struct disk *d, uint64_t g, unsigned st, void *buf)
{
  struct overlay *o = d->priv;
  uint64_t len = gran_len(d, g), off = g * OVL_GRANULE;

  if (st == ST_BASE)
    return disk_pread(d->parent, buf, len, off);
  if (st == ST_DATA)
    return disk_full_pread(o->fd, d->path, buf, len, o->data_off + off, false);
  memset(buf, 0, len);
  return 0;
}

/* Write len bytes (src, or zeroes if src is NULL) at offset inside granule
 * g, copying up the rest of the granule if it is not DATA yet.  Caller
 * holds the granule's lock.  *copied is set when g became DATA. */
static int
write_partial(struct disk *d, uint64_t g, const void *src, uint64_t len,
              uint64_t offset, bool *copied)
{
  struct overlay *o = d->priv;
  unsigned char gbuf[OVL_GRANULE];
  uint64_t gstart = g * OVL_GRANULE;
  unsigned st;
  int r;

  pthread_rwlock_rdlock(&o->map_lock);
  st = map_get(o, g);
  pthread_rwlock_unlock(&o->map_lock);
  *copied = false;
  if (st == ST_ZERO && !src)
    return 0;
  if (st == ST_DATA) {
    if (src)
      return disk_full_pwrite(o->fd, d->path, src, len, o->data_off + offset);
    memset(gbuf, 0, len);
    return disk_full_pwrite(o->fd, d->path, gbuf, len, o->data_off + offset);
  }
  r = read_granule(d, g, st, gbuf);
  if (r < 0)
    return r;
  if (src)
    memcpy(gbuf + (offset - gstart), src, len);
  else
    memset(gbuf + (offset - gstart), 0, len);
  r = disk_full_pwrite(o->fd, d->path, gbuf, gran_len(d, g), o->data_off + gstart);
  *copied = r == 0;
  return r;
}

static int
map_update(struct disk *d, uint64_t g0, uint64_t g1, unsigned st)
{
  struct overlay *o = d->priv;
  int r;

  pthread_rwlock_wrlock(&o->map_lock);
  r = map_set(o, g0, g1, st);
  pthread_rwlock_unlock(&o->map_lock);
  if (r < 0)
    disk_set_error("%s: out of memory for the overlay map", d->path);
  return r;
}

static int ovl_flush(struct disk *d);
static uint64_t slot_offset(const struct overlay *o, uint64_t p, int slot);

/* Give the map pages of granules [g0, g1] their file space (both slots and
 * the live map's page) before a change to them is acknowledged: a sparse
 * map slot written only at the next flush could find the scratch file
 * system full after the writes it records were accepted.  Done once per
 * page; a file system without fallocate is not refused. */
static int
reserve_map_pages(struct disk *d, uint64_t g0, uint64_t g1)
{
  struct overlay *o = d->priv;
  int r = 0;

  for (uint64_t p = g0 / OVL_GPP; p <= g1 / OVL_GPP && r == 0; p++) {
    struct mpage *mp = &o->pages[p];
    if (__atomic_load_n(&mp->reserved, __ATOMIC_ACQUIRE))
      continue;
    r = disk_file_reserve(o->fd, d->path, slot_offset(o, p, 0), 2 * OVL_SLOT_SIZE);
    if (r < 0)
      break;
    pthread_rwlock_rdlock(&o->map_lock);       /* live_fd */
    if (o->live_fd >= 0)
      (void) fallocate(o->live_fd, FALLOC_FL_KEEP_SIZE,
                       (off_t) (LIVE_HDR + p * LIVE_STRIDE), LIVE_STRIDE);
    pthread_rwlock_unlock(&o->map_lock);
    __atomic_store_n(&mp->reserved, 1, __ATOMIC_RELEASE);
  }
  return r;
}

static int
ovl_pwrite(struct disk *d, const void *buf, size_t count, uint64_t offset,
           unsigned flags)
{
  struct overlay *o = d->priv;
  uint64_t end = offset + count, pos = offset;
  uint64_t g0 = offset / OVL_GRANULE, g1 = (end - 1) / OVL_GRANULE;
  const char *src = buf;
  int r = check_broken(d);

  if (r == 0)
    r = reserve_map_pages(d, g0, g1);
  if (r < 0)
    return r;
  pthread_rwlock_rdlock(&o->commit_lock);
  lock_granules(o, g0, g1);
  while (pos < end && r == 0) {
    uint64_t g = pos / OVL_GRANULE, gstart = g * OVL_GRANULE;
    uint64_t gend = gstart + gran_len(d, g);

    if (pos == gstart && end >= gend) {
      /* Whole granules: straight into the data region. */
      uint64_t fend = end == d->size ? end : end / OVL_GRANULE * OVL_GRANULE;
      r = disk_full_pwrite(o->fd, d->path, src + (pos - offset), fend - pos,
                           o->data_off + pos);
      pos = fend;
    } else {
      uint64_t n = (end < gend ? end : gend) - pos;
      bool copied;
      r = write_partial(d, g, src + (pos - offset), n, pos, &copied);
      pos += n;
    }
  }
  /* The map changes only after the data is written: a reader that sees
   * DATA sees the bytes. */
  if (r == 0)
    r = map_update(d, g0, g1 + 1, ST_DATA);
  unlock_granules(o, g0, g1);
  if (r == 0 && (flags & DISK_F_FUA))
    r = ovl_flush(d);
  pthread_rwlock_unlock(&o->commit_lock);
  return r;
}

/* Free the data region behind whole granules that became ZERO, so the
 * space comes back and the bytes there read as zeroes even if a crash
 * keeps an older map that still says DATA. */
static void
release_data(struct overlay *o, uint64_t off, uint64_t len)
{
  if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                (off_t) (o->data_off + off), (off_t) len) == 0)
    return;
  /* No hole punching: zero the range if the file system can; otherwise
   * the map alone makes it read as zeroes (see the architecture notes). */
  (void) fallocate(o->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                   (off_t) (o->data_off + off), (off_t) len);
}

/* Zero and trim: whole granules become ZERO, partial ones get zeroes
 * written (copying up the rest).  Trim is a zero here so that contents
 * after a trim are deterministic. */
static int
ovl_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct overlay *o = d->priv;
  uint64_t end = offset + count, pos = offset;
  uint64_t g0 = offset / OVL_GRANULE, g1 = (end - 1) / OVL_GRANULE;
  int r = check_broken(d);

  if (r == 0)
    r = reserve_map_pages(d, g0, g1);
  if (r < 0)
    return r;
  pthread_rwlock_rdlock(&o->commit_lock);
  lock_granules(o, g0, g1);
  while (pos < end && r == 0) {
    uint64_t g = pos / OVL_GRANULE, gstart = g * OVL_GRANULE;
    uint64_t gend = gstart + gran_len(d, g);

    if (pos == gstart && end >= gend) {
      uint64_t fend = end == d->size ? end : end / OVL_GRANULE * OVL_GRANULE;
      release_data(o, pos, fend - pos);
      r = map_update(d, g, (fend + OVL_GRANULE - 1) / OVL_GRANULE, ST_ZERO);
      pos = fend;
    } else {
      uint64_t n = (end < gend ? end : gend) - pos;
      bool copied;
      r = write_partial(d, g, NULL, n, pos, &copied);
      if (r == 0 && copied)
        r = map_update(d, g, g + 1, ST_DATA);
      pos += n;
    }
  }
  unlock_granules(o, g0, g1);
  if (r == 0 && (flags & DISK_F_FUA))
    r = ovl_flush(d);
  pthread_rwlock_unlock(&o->commit_lock);
  return r;
}

static int
ovl_trim(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  return ovl_zero(d, count, offset, flags | DISK_F_MAY_TRIM);
}

static int
ovl_extents(struct disk *d, uint64_t count, uint64_t offset,
            struct disk_extents *out)
{
  struct overlay *o = d->priv;
  uint64_t end = offset + count, glim = (end - 1) / OVL_GRANULE + 1;

  while (offset < end) {
    uint64_t gend, rend;
    unsigned st;
    int a = 0;

    pthread_rwlock_rdlock(&o->map_lock);
    st = map_run(o, offset / OVL_GRANULE, glim, &gend);
    pthread_rwlock_unlock(&o->map_lock);
    rend = gend * OVL_GRANULE < end ? gend * OVL_GRANULE : end;
    if (st == ST_BASE) {
      /* Ask the base about this run and pass its answer through. */
      struct disk_extents be;
      uint64_t covered = offset;
      int r;

      disk_extents_init(&be, offset, rend, out->max);
      r = disk_extents(d->parent, rend - offset, offset, &be);
      for (size_t k = 0; r >= 0 && a == 0 && k < be.n; k++) {
        uint64_t s = be.v[k].offset, e = s + be.v[k].length;
        if (s < covered)
          s = covered;
        if (e > rend)
          e = rend;
        if (e <= s)
          continue;
        a = disk_extents_add(out, s, e - s, be.v[k].flags);
        covered = e;
      }
      disk_extents_free(&be);
      if (r < 0)
        return r;
      if (a == 0 && covered == offset) {
        disk_set_error("%s: base %s reported no extents at offset %" PRIu64,
                       d->path, d->parent->path, offset);
        return -EIO;
      }
      if (a == 0 && covered < rend)
        return 0;        /* the base stopped early: so do we */
    } else {
      a = disk_extents_add(out, offset, rend - offset,
                           st == ST_ZERO ? DISK_EXTENT_ZERO : 0);
    }
    if (a < 0)
      return -ENOMEM;
    if (a > 0)
      return 0;
    offset = rend;
  }
  return 0;
}

/* ---- live map -------------------------------------------------------------
 *
 * Between flushes the map changes only in memory.  A server killed with
 * kill -9 (not the machine) has written the data of every write it
 * acknowledged into the overlay file's page cache, but the map that says
 * where that data is dies with it.  So every map change is also written,
 * with a plain pwrite and no sync, into <overlay>.live: for a killed
 * process the kernel keeps those bytes, and the next open in the same boot
 * finds the map exactly as it was, acknowledged writes included.
 *
 * Across a reboot neither the unsynced data nor this file can be trusted,
 * so the file names the boot it was written in (boot_id) and is used only
 * in that boot; otherwise the last flushed map stands, as after a power
 * loss.  It is also refused unless it belongs to this overlay file (device
 * and inode) and the durable map's generation lies in the window this file
 * was current for: a flush widens the window before it writes map slots
 * and narrows it after, so a flush by anything that did not keep the file
 * up to date makes it stale.  An adopted page that differs from the
 * flushed map is marked dirty: the next flush makes it durable (its data
 * is in the page cache, so the fdatasync before the map slots covers it).
 *
 * Writes go under map_lock (held for writing by map_set), so the bytes of
 * a page reach the file in the order the map changed; 2 bits per granule,
 * so every granule reads its old or its new state whatever a kill
 * interrupts.  Best effort: a failed write truncates the file (then it is
 * refused at the next open) and the overlay keeps its flush semantics.  A
 * clean close flushes and removes it (truncates it where a sandbox forbids
 * the unlink); overlay_remove() deletes it with the overlay.
 */

static void
live_disable(struct overlay *o)
{
  if (o->live_fd < 0)
    return;
  (void) ftruncate(o->live_fd, 0);
  close(o->live_fd);
  o->live_fd = -1;
}

/* Through disk_full_pwrite, so the crash tests' write counts (and their
 * kill points, DISM_TEST_CRASH_AFTER_WRITES) include these writes too. */
static void
live_write(struct overlay *o, const void *buf, size_t len, uint64_t off)
{
  if (o->live_fd >= 0 && disk_full_pwrite(o->live_fd, o->live_path, buf, len, off) < 0)
    live_disable(o);
}

/* Mirror the bytes of page p that hold granules [a, b).  Caller holds
 * map_lock for writing (or is alone, at open). */
static void
live_page(struct overlay *o, uint64_t p, uint32_t a, uint32_t b)
{
  const struct mpage *mp = &o->pages[p];
  uint64_t off = LIVE_HDR + p * LIVE_STRIDE;
  uint32_t b0 = a / 4, b1 = (b + 3) / 4;
  uint8_t fill[512];

  if (o->live_fd < 0 || b1 <= b0)
    return;
  if (mp->bits) {
    live_write(o, mp->bits + b0, b1 - b0, off + b0);
    return;
  }
  memset(fill, pattern(mp->uniform), sizeof fill);
  while (b0 < b1) {
    uint32_t n = b1 - b0 < sizeof fill ? b1 - b0 : (uint32_t) sizeof fill;
    live_write(o, fill, n, off + b0);
    b0 += n;
  }
}

static void
live_window(struct overlay *o, uint64_t lo, uint64_t hi)
{
  uint8_t g[16];

  put_le64(g, lo);
  put_le64(g + 8, hi);
  live_write(o, g, sizeof g, L_GENLO);
}

static int
read_boot_id(char id[L_BOOTID_LEN])
{
  const char *env = dism_test_boot_id();   /* tests: a simulated reboot */
  ssize_t n = 0;
  int fd;

  memset(id, 0, L_BOOTID_LEN);
  if (env && *env) {
    snprintf(id, L_BOOTID_LEN, "%s", env);
    return 0;
  }
  fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = read(fd, id, L_BOOTID_LEN - 1);
    close(fd);
  }
  if (n < 32)
    return -ENOENT;
  id[n] = 0;
  id[strcspn(id, "\n")] = 0;
  return 0;
}

static bool
bits_equal(const uint8_t *x, const uint8_t *y, uint32_t n)
{
  if (memcmp(x, y, n / 4) != 0)
    return false;
  for (uint32_t i = n / 4 * 4; i < n; i++)
    if (bits_get(x, i) != bits_get(y, i))
      return false;
  return true;
}

/* Page p of the live file into buf (OVL_PAYLOAD bytes; past its end, or in
 * a hole, all BASE); false if unreadable or a granule has the invalid
 * state 3. */
static bool
live_read_page(struct overlay *o, uint64_t p, uint8_t *buf)
{
  uint64_t off = LIVE_HDR + p * LIVE_STRIDE;
  size_t done = 0;

  while (done < OVL_PAYLOAD) {
    ssize_t n = pread(o->live_fd, buf + done, OVL_PAYLOAD - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    if (n == 0) {
      memset(buf + done, 0, OVL_PAYLOAD - done);
      break;
    }
    done += (size_t) n;
  }
  for (uint32_t i = 0, n = page_granules(o, p); i < n; i++)
    if (bits_get(buf, i) == 3)
      return false;
  return true;
}

/* Take the live map over the flushed one; 0, or -1 if the file does not
 * qualify (nothing changed then). */
static int
live_adopt(struct disk *d, const char *boot_id, const struct stat *st)
{
  struct overlay *o = d->priv;
  uint8_t h[128], *buf = malloc(OVL_PAYLOAD);
  uint64_t p;

  if (!buf)
    return -1;
  if (pread(o->live_fd, h, sizeof h, 0) != (ssize_t) sizeof h ||
      memcmp(h, LIVE_MAGIC, 8) != 0 || get_le32(h + L_VERSION) != LIVE_VERSION ||
      strncmp((const char *) h + L_BOOTID, boot_id, L_BOOTID_LEN) != 0 ||
      get_le64(h + L_DEV) != (uint64_t) st->st_dev ||
      get_le64(h + L_INO) != (uint64_t) st->st_ino ||
      get_le64(h + L_NPAGES) != o->npages ||
      o->gen < get_le64(h + L_GENLO) || o->gen > get_le64(h + L_GENHI))
    goto refuse;
  /* Check every page before changing any. */
  for (p = 0; p < o->npages; p++)
    if (!live_read_page(o, p, buf))
      goto refuse;
  for (p = 0; p < o->npages; p++) {
    struct mpage *mp = &o->pages[p];
    uint32_t n = page_granules(o, p);
    int u;

    live_read_page(o, p, buf);
    u = bits_uniform(buf, n);
    if (u >= 0 ? !mp->bits && mp->uniform == u : mp->bits && bits_equal(mp->bits, buf, n))
      continue;
    if (u < 0 && !mp->bits && !(mp->bits = malloc(OVL_PAYLOAD)))
      goto refuse;             /* pages adopted so far are whole and dirty */
    if (u < 0) {
      memcpy(mp->bits, buf, OVL_PAYLOAD);
    } else {
      free(mp->bits);
      mp->bits = NULL;
      mp->uniform = (uint8_t) u;
    }
    mp->dirty = 1;
  }
  free(buf);
  return 0;

refuse:
  free(buf);
  return -1;
}

/* Open, adopt or rebuild the live map.  Called once the flushed map is
 * loaded (or the overlay created), before the disk is shared. */
static void
live_open(struct disk *d, bool create)
{
  struct overlay *o = d->priv;
  char boot_id[L_BOOTID_LEN];
  uint8_t h[128];
  struct stat st;

  if (read_boot_id(boot_id) < 0 || fstat(o->fd, &st) < 0 ||
      asprintf(&o->live_path, "%s" LIVE_SUFFIX, d->path) < 0) {
    o->live_path = NULL;
    return;
  }
  o->live_fd = open(o->live_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (o->live_fd < 0)
    return;                    /* e.g. a read-only directory: flush semantics */
  if (!create && live_adopt(d, boot_id, &st) == 0) {
    live_window(o, o->gen, o->gen);
    return;
  }
  /* Rebuild it from the map in memory; the header goes last, so a file
   * cut short by a kill is refused. */
  if (ftruncate(o->live_fd, 0) < 0) {
    live_disable(o);
    return;
  }
  for (uint64_t p = 0; p < o->npages; p++)
    if (o->pages[p].bits || o->pages[p].uniform != ST_BASE)
      live_page(o, p, 0, page_granules(o, p));
  memset(h, 0, sizeof h);
  memcpy(h, LIVE_MAGIC, 8);
  put_le32(h + L_VERSION, LIVE_VERSION);
  memcpy(h + L_BOOTID, boot_id, L_BOOTID_LEN);
  put_le64(h + L_DEV, (uint64_t) st.st_dev);
  put_le64(h + L_INO, (uint64_t) st.st_ino);
  put_le64(h + L_NPAGES, o->npages);
  put_le64(h + L_GENLO, o->gen);
  put_le64(h + L_GENHI, o->gen);
  live_write(o, h, sizeof h, 0);
}

/* A clean close: the map is flushed (or the flush failed and the flushed
 * map is all there is), so the live map must not outlive us. */
static void
live_close(struct overlay *o)
{
  if (o->live_fd >= 0) {
    live_disable(o);
    if (o->live_path)
      (void) unlink(o->live_path);   /* refused in a sandbox: it stays empty */
  }
  free(o->live_path);
  o->live_path = NULL;
}

/* ---- map on disk -------------------------------------------------------- */

static uint64_t
slot_offset(const struct overlay *o, uint64_t p, int slot)
{
  return o->map_off + (2 * p + (uint64_t) slot) * OVL_SLOT_SIZE;
}

/* Write the snapshot of map page p (payload in slot+OVL_SLOT_HDR) into the
 * slot that does not hold its newest durable copy.  Caller holds
 * flush_lock. */
static int
write_map_page(struct disk *d, uint64_t p, uint8_t *slot)
{
  struct overlay *o = d->priv;
  struct mpage *mp = &o->pages[p];
  int target = mp->slot == 0 ? 1 : 0;
  int r;

  memcpy(slot, OVL_SLOT_MAGIC, 4);
  put_le32(slot + S_CRC, 0);
  put_le64(slot + S_GEN, ++o->gen);
  put_le64(slot + S_PAGE, p);
  memset(slot + S_PAGE + 8, 0, OVL_SLOT_HDR - S_PAGE - 8);
  put_le32(slot + S_CRC, dism_crc32c(0, slot, OVL_SLOT_SIZE));
  r = disk_full_pwrite(o->fd, d->path, slot, OVL_SLOT_SIZE,
                       slot_offset(o, p, target));
  if (r == 0)
    mp->slot = (int8_t) target;
  else
    o->gen--;       /* the slot is torn or untouched: not a durable copy */
  return r;
}

static int
sync_file(struct disk *d)
{
  struct overlay *o = d->priv;
  return disk_full_fdatasync(o->fd, d->path);
}

static int
ovl_flush(struct disk *d)
{
  struct overlay *o = d->priv;
  uint8_t *buf = NULL;
  uint64_t batch[FLUSH_BATCH];
  uint64_t next = 0, gen_lo;
  bool wrote = false, full = false;
  int r = check_broken(d);

  if (r < 0)
    return r;
  buf = malloc((size_t) FLUSH_BATCH * OVL_SLOT_SIZE);
  if (!buf) {
    disk_set_error("%s: out of memory for the map flush", d->path);
    return -ENOMEM;
  }
  pthread_mutex_lock(&o->flush_lock);
  gen_lo = o->gen;
  for (;;) {
    size_t n = 0;

    /* 1. Snapshot a batch of dirty pages: every map change in it belongs
     *    to data whose pwrite already returned ... */
    pthread_rwlock_wrlock(&o->map_lock);
    for (; next < o->npages && n < FLUSH_BATCH; next++) {
      struct mpage *mp = &o->pages[next];
      uint8_t *payload = buf + n * OVL_SLOT_SIZE + OVL_SLOT_HDR;
      if (!mp->dirty)
        continue;
      if (mp->bits)
        memcpy(payload, mp->bits, OVL_PAYLOAD);
      else
        memset(payload, pattern(mp->uniform), OVL_PAYLOAD);
      mp->dirty = 0;
      batch[n++] = next;
    }
    pthread_rwlock_unlock(&o->map_lock);

    /* 2. ... so syncing now makes that data (and the previous batch of
     *    map pages) durable before ... */
    r = sync_file(d);
    if (r < 0 || n == 0)
      break;

    /* 3. ... the map pages that point at it are written (the live map's
     *    window first takes in the generations they get). */
    pthread_rwlock_wrlock(&o->map_lock);
    live_window(o, gen_lo, o->gen + n);
    pthread_rwlock_unlock(&o->map_lock);
    size_t k = 0;
    for (; k < n && r == 0; k++)
      r = write_map_page(d, batch[k], buf + k * OVL_SLOT_SIZE);
    if (r == -ENOSPC || r == -EDQUOT) {
      /* A slot write refused for space (reserve_map_pages could not
       * allocate it) loses nothing: the data is synced, the older slot
       * stands.  The pages not written stay dirty for the next flush. */
      full = true;
      pthread_rwlock_wrlock(&o->map_lock);
      for (k--; k < n; k++)
        o->pages[batch[k]].dirty = 1;
      pthread_rwlock_unlock(&o->map_lock);
    }
    if (r < 0)
      break;
    wrote = true;
  }
  if (r == 0 && wrote)
    r = sync_file(d);
  if ((r < 0 && !full) || (r == 0 && wrote)) {
    pthread_rwlock_wrlock(&o->map_lock);
    if (r < 0) {
      /* After a failed fdatasync the kernel may have dropped dirty pages:
       * the only safe state is a stop, the last durable map is on disk
       * (and the live map, which may point at lost data, is dropped). */
      __atomic_store_n(&o->broken, 1, __ATOMIC_RELEASE);
      live_disable(o);
    } else {
      live_window(o, o->gen, o->gen);
    }
    pthread_rwlock_unlock(&o->map_lock);
  }
  pthread_mutex_unlock(&o->flush_lock);
  free(buf);
  return r;
}

enum { SLOT_EMPTY, SLOT_VALID, SLOT_BAD };

static int
classify_slot(const uint8_t *s, uint64_t p, uint64_t *gen)
{
  uint8_t tmp[OVL_SLOT_SIZE];

  if (disk_is_zero(s, OVL_SLOT_SIZE))
    return SLOT_EMPTY;
  if (memcmp(s, OVL_SLOT_MAGIC, 4) != 0 || get_le64(s + S_PAGE) != p)
    return SLOT_BAD;
  memcpy(tmp, s, OVL_SLOT_SIZE);
  put_le32(tmp + S_CRC, 0);
  if (dism_crc32c(0, tmp, OVL_SLOT_SIZE) != get_le32(s + S_CRC))
    return SLOT_BAD;
  *gen = get_le64(s + S_GEN);
  return SLOT_VALID;
}

/* Load one map page from its newest valid slot. */
static int
load_page(struct disk *d, uint64_t p, const uint8_t *slots)
{
  struct overlay *o = d->priv;
  struct mpage *mp = &o->pages[p];
  uint64_t gen[2] = { 0, 0 };
  int c[2], pick = -1;
  uint32_t n = page_granules(o, p);
  const uint8_t *bits;

  c[0] = classify_slot(slots, p, &gen[0]);
  c[1] = classify_slot(slots + OVL_SLOT_SIZE, p, &gen[1]);
  if (c[0] == SLOT_VALID)
    pick = 0;
  if (c[1] == SLOT_VALID && (pick < 0 || gen[1] > gen[0]))
    pick = 1;
  if (pick < 0) {
    /* Flushes never write both slots of a page at once, so two bad
     * copies are corruption, not a crash. */
    if (c[0] == SLOT_BAD && c[1] == SLOT_BAD) {
      disk_set_error("%s: map page %" PRIu64 " is corrupt (both copies "
                     "fail their checksum)", d->path, p);
      return -EUCLEAN;
    }
    return 0;            /* never flushed (or its first write was torn) */
  }
  bits = slots + pick * OVL_SLOT_SIZE + OVL_SLOT_HDR;
  for (uint32_t i = 0; i < n; i++)
    if (bits_get(bits, i) == 3) {
      disk_set_error("%s: map page %" PRIu64 " has an invalid state for "
                     "granule %" PRIu64, d->path, p, p * OVL_GPP + i);
      return -EUCLEAN;
    }
  mp->slot = (int8_t) pick;
  if (gen[pick] > o->gen)
    o->gen = gen[pick];
  int u = bits_uniform(bits, n);
  if (u >= 0) {
    mp->uniform = (uint8_t) u;
    return 0;
  }
  mp->bits = malloc(OVL_PAYLOAD);
  if (!mp->bits) {
    disk_set_error("%s: out of memory for the overlay map", d->path);
    return -ENOMEM;
  }
  memcpy(mp->bits, bits, OVL_PAYLOAD);
  return 0;
}

static int
load_map(struct disk *d)
{
  struct overlay *o = d->priv;
  uint8_t *slots = malloc(2 * OVL_SLOT_SIZE);
  int r = 0;

  if (!slots)
    return -ENOMEM;
  for (uint64_t p = 0; p < o->npages && r == 0; p++) {
    /* Skip never-written (sparse) map pages without reading them. */
    off_t pos = (off_t) slot_offset(o, p, 0);
    off_t next = lseek(o->fd, pos, SEEK_DATA);
    if (next < 0 && errno == ENXIO)
      break;
    if (next > pos) {
      uint64_t skip = ((uint64_t) next - o->map_off) / (2 * OVL_SLOT_SIZE);
      if (skip > p) {
        p = skip - 1;
        continue;
      }
    }
    r = disk_full_pread(o->fd, d->path, slots, 2 * OVL_SLOT_SIZE,
                        (uint64_t) pos, true);
    if (r == 0)
      r = load_page(d, p, slots);
  }
  free(slots);
  return r;
}

/* ---- header and base identity ------------------------------------------- */

struct identity {
  uint64_t size;
  uint32_t lsector;
  char format[16];
  char unique_id[40];
  char path[OVL_PATH_MAX];
};

static int
base_identity(struct disk *base, struct identity *id)
{
  struct disk_info *info = malloc(sizeof *info);
  char *rp;
  int r;

  if (!info)
    return -ENOMEM;
  memset(id, 0, sizeof *id);
  r = disk_info(base, info);
  if (r == 0) {
    id->size = base->size;
    id->lsector = base->logical_sector;
    snprintf(id->format, sizeof id->format, "%s", info->format ? info->format : "");
    snprintf(id->unique_id, sizeof id->unique_id, "%s", info->unique_id);
    /* The canonical path, so "./x.vhd" and "/abs/x.vhd" are the same base;
     * paths that do not resolve (memfds) are kept as given. */
    rp = realpath(base->path, NULL);
    snprintf(id->path, sizeof id->path, "%s", rp ? rp : base->path);
    free(rp);
  }
  free(info);
  return r;
}

static void
layout(uint64_t size, uint64_t *ngran, uint64_t *npages, uint64_t *map_off,
       uint64_t *data_off)
{
  *ngran = (size + OVL_GRANULE - 1) / OVL_GRANULE;
  *npages = (*ngran + OVL_GPP - 1) / OVL_GPP;
  *map_off = OVL_HDR_SIZE;
  *data_off = *map_off + *npages * 2 * OVL_SLOT_SIZE;
}

static void
encode_header(uint8_t *h, const struct identity *id)
{
  uint64_t ngran, npages, map_off, data_off;

  layout(id->size, &ngran, &npages, &map_off, &data_off);
  memset(h, 0, OVL_HDR_SIZE);
  memcpy(h, OVL_MAGIC, 8);
  put_le32(h + H_VERSION, OVL_VERSION);
  put_le32(h + H_GRANULE, OVL_GRANULE);
  put_le32(h + H_SLOTSIZE, OVL_SLOT_SIZE);
  put_le32(h + H_GPP, OVL_GPP);
  put_le32(h + H_LSECTOR, id->lsector);
  put_le64(h + H_SIZE, id->size);
  put_le64(h + H_MAPOFF, map_off);
  put_le64(h + H_MAPPAGES, npages);
  put_le64(h + H_DATAOFF, data_off);
  memcpy(h + H_FORMAT, id->format, sizeof id->format);
  memcpy(h + H_UNIQUEID, id->unique_id, sizeof id->unique_id);
  memcpy(h + OVL_PATH_OFF, id->path, OVL_PATH_MAX - 1);
  put_le32(h + H_CRC, dism_crc32c(0, h, OVL_HDR_SIZE));
}

/* Check a header read from the file against the base. */
static int
check_header(const char *path, uint8_t *h, const struct identity *id,
             const char *base_path)
{
  uint32_t crc = get_le32(h + H_CRC);
  uint64_t ngran, npages, map_off, data_off;
  char rec_path[OVL_PATH_MAX], rec_id[41], rec_fmt[17];

  if (memcmp(h, OVL_MAGIC, 8) != 0) {
    disk_set_error("%s: not a dism overlay (bad magic)", path);
    return -EINVAL;
  }
  put_le32(h + H_CRC, 0);
  if (dism_crc32c(0, h, OVL_HDR_SIZE) != crc) {
    disk_set_error("%s: overlay header is corrupt (checksum mismatch)", path);
    return -EUCLEAN;
  }
  put_le32(h + H_CRC, crc);
  if (get_le32(h + H_VERSION) != OVL_VERSION) {
    disk_set_error("%s: unsupported overlay version %u", path,
                   get_le32(h + H_VERSION));
    return -ENOTSUP;
  }
  memcpy(rec_path, h + OVL_PATH_OFF, OVL_PATH_MAX);
  rec_path[OVL_PATH_MAX - 1] = 0;
  memcpy(rec_id, h + H_UNIQUEID, 40);
  rec_id[40] = 0;
  memcpy(rec_fmt, h + H_FORMAT, 16);
  rec_fmt[16] = 0;
  if (get_le64(h + H_SIZE) != id->size) {
    disk_set_error("%s: overlay was made for base %s of %" PRIu64 " bytes, "
                   "but base %s is %" PRIu64 " bytes", path, rec_path,
                   get_le64(h + H_SIZE), base_path, id->size);
    return -EINVAL;
  }
  if (get_le32(h + H_LSECTOR) != id->lsector) {
    disk_set_error("%s: overlay was made for base %s with %u-byte sectors, "
                   "but base %s has %u-byte sectors", path, rec_path,
                   get_le32(h + H_LSECTOR), base_path, id->lsector);
    return -EINVAL;
  }
  if (strcmp(rec_fmt, id->format) != 0 || strcmp(rec_id, id->unique_id) != 0) {
    disk_set_error("%s: overlay was made for base %s (%s, id '%s'), but "
                   "base %s is a different image (%s, id '%s')", path, rec_path,
                   rec_fmt, rec_id, base_path, id->format, id->unique_id);
    return -EINVAL;
  }
  if (strcmp(rec_path, id->path) != 0) {
    disk_set_error("%s: overlay was made for base %s, not for base %s",
                   path, rec_path, id->path);
    return -EINVAL;
  }
  layout(id->size, &ngran, &npages, &map_off, &data_off);
  if (get_le32(h + H_GRANULE) != OVL_GRANULE ||
      get_le32(h + H_SLOTSIZE) != OVL_SLOT_SIZE ||
      get_le32(h + H_GPP) != OVL_GPP || get_le64(h + H_MAPOFF) != map_off ||
      get_le64(h + H_MAPPAGES) != npages || get_le64(h + H_DATAOFF) != data_off) {
    disk_set_error("%s: overlay header has an unsupported layout", path);
    return -EUCLEAN;
  }
  return 0;
}

static int
fsync_dir_of(const char *path)
{
  char *dir = strdup(path), *slash;
  int fd, r = 0;

  if (!dir)
    return -ENOMEM;
  slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = 0;
  else
    *slash = 0;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    if (fsync(fd) < 0)
      r = -errno;
    close(fd);
  }
  free(dir);
  return r;
}

static int
create_file(struct disk *d, const struct identity *id)
{
  struct overlay *o = d->priv;
  uint8_t *h = malloc(OVL_HDR_SIZE);
  int r;

  if (!h)
    return -ENOMEM;
  encode_header(h, id);
  r = disk_full_pwrite(o->fd, d->path, h, OVL_HDR_SIZE, 0);
  if (r == 0 && ftruncate(o->fd, (off_t) (o->data_off + d->size)) < 0) {
    r = -errno;
    disk_set_error("%s: cannot size the overlay: %s", d->path, strerror(-r));
  }
  if (r == 0)
    r = sync_file(d);
  if (r == 0 && (r = fsync_dir_of(d->path)) < 0)
    disk_set_error("%s: fsync of its directory: %s", d->path, strerror(-r));
  free(h);
  return r;
}

static int
open_file(struct disk *d, const struct identity *id)
{
  struct overlay *o = d->priv;
  uint8_t *h = malloc(OVL_HDR_SIZE);
  int r;

  if (!h)
    return -ENOMEM;
  r = disk_full_pread(o->fd, d->path, h, OVL_HDR_SIZE, 0, true);
  if (r == 0)
    r = check_header(d->path, h, id, d->parent->path);
  if (r == 0)
    r = load_map(d);
  free(h);
  return r;
}

/* ---- the disk ----------------------------------------------------------- */

static int
ovl_info(struct disk *d, struct disk_info *info)
{
  uint64_t used = overlay_used_bytes(d);

  info->subtype = "copy-on-write";
  info->block_size = OVL_GRANULE;
  info->allocated_bytes = used;
  snprintf(info->parent_hint, sizeof info->parent_hint, "%s", d->parent->path);
  snprintf(info->notes, sizeof info->notes,
           "overlay holds %" PRIu64 " bytes of the disk in %u-byte granules; "
           "base %s", used, OVL_GRANULE, d->parent->path);
  return 0;
}

static void
ovl_close(struct disk *d)
{
  struct overlay *o = d->priv;

  if (!o)
    return;
  if (o->fd >= 0) {
    /* A clean close leaves nothing unflushed; errors cannot be reported
     * here, and a failed flush keeps the last durable map. */
    if (o->pages && !o->broken)
      (void) ovl_flush(d);
    live_close(o);
    close(o->fd);
  }
  for (uint64_t p = 0; o->pages && p < o->npages; p++)
    free(o->pages[p].bits);
  free(o->pages);
  pthread_rwlock_destroy(&o->map_lock);
  pthread_rwlock_destroy(&o->commit_lock);
  pthread_mutex_destroy(&o->flush_lock);
  for (unsigned s = 0; s < NSTRIPES; s++)
    pthread_mutex_destroy(&o->stripes[s]);
  free(o);
  d->priv = NULL;
}

static const struct disk_ops overlay_ops = {
  .name    = "overlay",
  .pread   = ovl_pread,
  .pwrite  = ovl_pwrite,
  .flush   = ovl_flush,
  .trim    = ovl_trim,
  .zero    = ovl_zero,
  .extents = ovl_extents,
  .map     = ovl_map,
  .info    = ovl_info,
  .close   = ovl_close,
};

static struct overlay *
overlay_new(void)
{
  struct overlay *o = calloc(1, sizeof *o);

  if (!o)
    return NULL;
  o->fd = -1;
  o->live_fd = -1;
  pthread_rwlock_init(&o->map_lock, NULL);
  {
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* A waiting commit must not starve behind a stream of writes. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&o->commit_lock, &a);
    pthread_rwlockattr_destroy(&a);
  }
  pthread_mutex_init(&o->flush_lock, NULL);
  for (unsigned s = 0; s < NSTRIPES; s++)
    pthread_mutex_init(&o->stripes[s], NULL);
  return o;
}

int
overlay_open(struct disk *base, const char *path, unsigned flags,
             struct disk **out)
{
  struct identity *id = NULL;
  struct overlay *o = NULL;
  struct disk *d = NULL;
  bool create = flags == OVERLAY_CREATE;
  int r;

  *out = NULL;
  if (flags != OVERLAY_CREATE && flags != OVERLAY_OPEN_EXISTING) {
    disk_set_error("%s: overlay_open needs exactly one of OVERLAY_CREATE "
                   "and OVERLAY_OPEN_EXISTING", path);
    disk_close(base);
    return -EINVAL;
  }
  d = disk_new(&overlay_ops, path);
  o = overlay_new();
  id = malloc(sizeof *id);
  if (!d || !o || !id) {
    r = -ENOMEM;
    disk_set_error("%s: out of memory", path);
    free(o);
    o = NULL;
    goto fail;
  }
  d->parent = base;       /* from here on disk_close(d) frees the base */
  base = NULL;
  d->priv = o;
  d->size = d->parent->size;
  d->logical_sector = d->parent->logical_sector;
  d->physical_sector = d->parent->physical_sector;
  d->readonly = false;

  r = base_identity(d->parent, id);
  if (r < 0)
    goto fail;
  layout(d->size, &o->ngran, &o->npages, &o->map_off, &o->data_off);
  o->pages = calloc(o->npages ? o->npages : 1, sizeof *o->pages);
  if (!o->pages) {
    r = -ENOMEM;
    disk_set_error("%s: out of memory for the overlay map", path);
    goto fail;
  }
  for (uint64_t p = 0; p < o->npages; p++)
    o->pages[p].slot = -1;

  if (create)
    overlay_remove_live(path);   /* a stale one of an overlay deleted earlier */
  o->fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
  if (o->fd < 0) {
    r = -errno;
    disk_set_error("%s: cannot %s overlay: %s", path,
                   create ? "create" : "open", strerror(-r));
    goto fail;
  }
  /* One user at a time: two servers on one overlay would corrupt it. */
  if (flock(o->fd, LOCK_EX | LOCK_NB) < 0) {
    r = -errno;
    disk_set_error("%s: overlay is in use by another process: %s", path,
                   strerror(-r));
    goto fail;
  }
  r = create ? create_file(d, id) : open_file(d, id);
  if (r < 0) {
    if (create)
      unlink(path);      /* a half-made overlay is of no use to anyone */
    goto fail;
  }
  live_open(d, create);
  free(id);
  *out = d;
  return 0;

fail:
  if (o && o->fd >= 0) {
    close(o->fd);
    o->fd = -1;          /* ovl_close must not flush a half-open overlay */
  }
  free(o ? o->live_path : NULL);
  if (o)
    o->live_path = NULL;
  free(id);
  disk_close(base);
  disk_close(d);
  return r;
}

static void
overlay_remove_live(const char *path)
{
  char *live;

  if (asprintf(&live, "%s" LIVE_SUFFIX, path) >= 0) {
    (void) unlink(live);
    free(live);
  }
}

int
overlay_remove(const char *path)
{
  overlay_remove_live(path);
  return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int
overlay_foreach(struct disk *d, overlay_range_fn fn, void *opaque)
{
  struct overlay *o = d->priv;
  uint64_t g = 0;

  while (g < o->ngran) {
    uint64_t gend;
    unsigned st;
    int r;

    pthread_rwlock_rdlock(&o->map_lock);
    st = map_run(o, g, o->ngran, &gend);
    pthread_rwlock_unlock(&o->map_lock);
    if (st != ST_BASE) {
      uint64_t off = g * OVL_GRANULE;
      uint64_t end = gend * OVL_GRANULE < d->size ? gend * OVL_GRANULE : d->size;
      /* The callback runs unlocked: it may read the overlay. */
      r = fn(opaque, off, end - off, st == ST_DATA ? OVERLAY_DATA : OVERLAY_ZERO);
      if (r != 0)
        return r;
    }
    g = gend;
  }
  return 0;
}

uint64_t
overlay_used_bytes(struct disk *d)
{
  struct overlay *o = d->priv;
  uint64_t g = 0, used = 0;

  pthread_rwlock_rdlock(&o->map_lock);
  while (g < o->ngran) {
    uint64_t gend;
    if (map_run(o, g, o->ngran, &gend) != ST_BASE) {
      uint64_t end = gend * OVL_GRANULE < d->size ? gend * OVL_GRANULE : d->size;
      used += end - g * OVL_GRANULE;
    }
    g = gend;
  }
  pthread_rwlock_unlock(&o->map_lock);
  return used;
}

#ifdef FUZZING
/* Fuzzing aid: make buf (an overlay file) name base and carry valid
 * checksums, so the fuzzer reaches the map decoder.  fix_pages also
 * re-seals map slots that carry the slot magic. */
void
overlay_fuzz_fixup(struct disk *base, uint8_t *buf, size_t len, bool fix_pages)
{
  struct identity id;
  uint64_t ngran, npages, map_off, data_off;

  if (len < OVL_HDR_SIZE || base_identity(base, &id) < 0)
    return;
  memcpy(buf + OVL_PATH_OFF, id.path, OVL_PATH_MAX - 1);
  put_le32(buf + H_CRC, 0);
  put_le32(buf + H_CRC, dism_crc32c(0, buf, OVL_HDR_SIZE));
  if (!fix_pages)
    return;
  layout(id.size, &ngran, &npages, &map_off, &data_off);
  for (uint64_t s = 0; s < 2 * npages; s++) {
    uint64_t off = map_off + s * OVL_SLOT_SIZE;
    if (off + OVL_SLOT_SIZE > len)
      break;
    if (memcmp(buf + off, OVL_SLOT_MAGIC, 4) != 0)
      continue;
    put_le32(buf + off + S_CRC, 0);
    put_le32(buf + off + S_CRC, dism_crc32c(0, buf + off, OVL_SLOT_SIZE));
  }
}
#endif

/* ---- commit: merge the overlay into its base ---------------------------- */

struct commit_ctx {
  struct disk *ovl, *base;
  uint8_t *buf;
  uint64_t done, total;
  overlay_progress_fn progress;
  void *opaque;
};

#define COMMIT_CHUNK (4u << 20)

static int
commit_range(void *opaque, uint64_t offset, uint64_t length, int state)
{
  struct commit_ctx *c = opaque;
  int r = 0;

  if (state == OVERLAY_ZERO) {
    r = disk_zero(c->base, length, offset, DISK_F_MAY_TRIM);
    c->done += length;
    if (r == 0 && c->progress)
      c->progress(c->opaque, c->done, c->total);
    return r;
  }
  while (length > 0 && r == 0) {
    size_t n = length < COMMIT_CHUNK ? (size_t) length : COMMIT_CHUNK;
    r = disk_pread(c->ovl, c->buf, n, offset);
    if (r == 0)
      r = disk_pwrite(c->base, c->buf, n, offset, 0);
    offset += n;
    length -= n;
    c->done += n;
    if (r == 0 && c->progress)
      c->progress(c->opaque, c->done, c->total);
  }
  return r;
}

struct range_list {
  struct disk_range *v;
  size_t n, cap;
};

static int
collect_range(void *opaque, uint64_t offset, uint64_t length, int state)
{
  struct range_list *l = opaque;

  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 256;
    struct disk_range *v = realloc(l->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (struct disk_range) { offset, length, state == OVERLAY_ZERO };
  return 0;
}

/* Allocate in the image's file system, before the merge's first write,
 * everything the merge will add to the image: a merge that ran out of
 * space half-way would leave the image neither old nor new. */
static int
reserve_merge(struct disk *d)
{
  struct range_list l = { 0 };
  int r = overlay_foreach(d, collect_range, &l);

  if (r == -ENOMEM)
    disk_set_error("%s: out of memory for the merge's range list", d->path);
  if (r == 0 && l.n > 0 && (r = disk_reserve(d->parent, l.v, l.n)) < 0) {
    char why[512];
    snprintf(why, sizeof why, "%s", disk_last_error());
    disk_set_error("no room for the merge in the image's file system (the image is "
                   "unchanged): %s", why);
  }
  free(l.v);
  return r;
}

int
overlay_commit(struct disk *d, overlay_progress_fn progress, void *opaque)
{
  struct overlay *o = d->priv;
  struct disk *base = d->parent;
  struct commit_ctx c = { .ovl = d, .base = base, .progress = progress,
                          .opaque = opaque };
  bool reserved = false;
  int r;

  if (base->readonly || !base->ops->pwrite) {
    disk_set_error("%s: cannot commit: the image %s is open read-only",
                   d->path, base->path);
    return -EROFS;
  }
  c.buf = malloc(COMMIT_CHUNK);
  if (!c.buf) {
    disk_set_error("%s: out of memory for the commit buffer", d->path);
    return -ENOMEM;
  }
  /* Writers wait (reads go on) until the commit is over. */
  pthread_rwlock_wrlock(&o->commit_lock);
  /* 1. The overlay is durable first: a crash anywhere below leaves it
   *    complete, and committing again is idempotent. */
  r = ovl_flush(d);
  if (r < 0)
    goto out;
  reserved = true;
  r = reserve_merge(d);
  if (r < 0)
    goto out;
  c.total = overlay_used_bytes(d);
  if (progress)
    progress(opaque, 0, c.total);
  /* 2. Merge: the backends' write paths keep the image valid at every
   *    moment (data before metadata), so each block holds old or new. */
  r = overlay_foreach(d, commit_range, &c);
  if (r < 0)
    goto out;
  /* 3. The image is durable before the overlay forgets anything. */
  r = disk_flush(base);
  if (r < 0)
    goto out;
  /* 4. Reset: the map (all BASE) is made durable before the data region
   *    is released, so no durable map ever points at a punched hole.
   *    Readers switching to the base in between see the same bytes. */
  pthread_rwlock_wrlock(&o->map_lock);
  r = map_set(o, 0, o->ngran, ST_BASE);
  pthread_rwlock_unlock(&o->map_lock);
  if (r == 0)
    r = ovl_flush(d);
  if (r == 0)
    release_data(o, 0, d->size);
out:
  if (reserved)
    (void) disk_reserve(base, NULL, 0);
  pthread_rwlock_unlock(&o->commit_lock);
  free(c.buf);
  return r;
}
