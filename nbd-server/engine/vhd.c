/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhd.c - Microsoft VHD images (Virtual PC, Virtual Server, Hyper-V):
 * fixed, dynamic and differencing.
 *
 * Layout (VHD Image Format Specification): a 512-byte big-endian footer
 * ("conectix") at the end of the file; dynamic and differencing images also
 * keep a copy of it at offset 0, then a 1024-byte dynamic header
 * ("cxsparse") at footer.data_offset and a Block Allocation Table of
 * big-endian sector numbers.  A block is a sector bitmap (padded to 512
 * bytes, MSB first, bit set = sector present in this file) then the data.
 *
 * Concurrency: the BAT lives in memory and is read with atomic loads; a
 * per-block state byte says whether the block's bitmap is all ones (FULL:
 * reads and writes go straight to the file, no lock).  Blocks with a partial
 * bitmap keep it in a bounded cache (short per-slot mutex); changing a bitmap
 * takes a striped per-block mutex; allocating a block takes the per-image
 * allocation mutex.  Lock order: alloc -> stripe -> slot.
 *
 * Decisions (virtual size, checksums, locators, write order) are documented
 * in docs/formats.md, section VHD. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "hex.h"
#include "path-size.h"
#include "disk.h"
#include "formats.h"
#include "guid.h"
#include "utf16.h"
#include "util.h"

#define SECTOR          512u
#define FOOTER_SIZE     512u
#define HEADER_SIZE     1024u
#define TYPE_FIXED      2u
#define TYPE_DYNAMIC    3u
#define TYPE_DIFF       4u
#define BAT_FREE        0xFFFFFFFFu
#define MIN_BLOCK       512u
#define MAX_BLOCK       (256u << 20)
#define NSTRIPES        64u
#define CACHE_BYTES     (16u << 20)     /* bound on cached sector bitmaps */
#define MAX_LOCATOR     (64u << 10)     /* bytes of locator data we read */
#define WIN_SECTORS     32768u          /* bitmap window per lookup (4 KiB) */

/* Footer fields. */
#define F_COOKIE        0
#define F_VERSION       12
#define F_DATA_OFFSET   16
#define F_CREATOR_APP   28
#define F_CREATOR_VER   32
#define F_CREATOR_OS    36
#define F_ORIG_SIZE     40
#define F_CUR_SIZE      48
#define F_GEOMETRY      56
#define F_TYPE          60
#define F_CHECKSUM      64
#define F_UID           68

/* Dynamic header fields. */
#define H_COOKIE        0
#define H_TABLE_OFFSET  16
#define H_MAX_ENTRIES   28
#define H_BLOCK_SIZE    32
#define H_CHECKSUM      36
#define H_PARENT_UID    40
#define H_PARENT_NAME   64
#define H_LOCATORS      576

enum { BS_UNKNOWN = 0, BS_FULL = 1, BS_PARTIAL = 2 };

struct bm_slot {
  pthread_mutex_t lock;
  uint32_t block;              /* UINT32_MAX: empty */
  uint8_t *bits;               /* bitmap_size bytes, allocated on first use */
};

struct vhd {
  int fd;
  unsigned type;
  bool readonly;
  uint8_t footer[FOOTER_SIZE]; /* the footer in use, rewritten at the end */
  const char *footer_src;      /* which copy was used, for info notes */
  bool bad_checksum_accepted;

  /* dynamic / differencing */
  uint32_t block_size, block_shift, spb, bitmap_size;
  uint32_t nblocks;
  uint64_t table_offset;
  uint32_t *bat;               /* host order; atomic loads/stores */
  uint8_t *bstate;             /* BS_*; atomic */
  pthread_mutex_t alloc_lock;
  uint64_t next_free;          /* where the next block goes (under alloc_lock) */
  uint64_t file_end;           /* current file size (under alloc_lock) */
  uint64_t reserve_end;        /* end of a merge's reservation (alloc_lock) */
  pthread_mutex_t stripe[NSTRIPES];
  struct bm_slot *slots;
  uint32_t nslots;
  bool locks_ready;

  char parent_hint[DISM_PATH_MAX];
  char notes[512];
};

/* ---- small helpers ---------------------------------------------------- */

static uint32_t
vhd_checksum(const uint8_t *p, size_t len, size_t csum_off)
{
  uint32_t s = 0;

  for (size_t i = 0; i < len; i++)
    if (i < csum_off || i >= csum_off + 4)
      s += p[i];
  return ~s;
}

static uint32_t
bat_get(const struct vhd *v, uint32_t blk)
{
  return __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
}

static int
state_get(const struct vhd *v, uint32_t blk)
{
  return __atomic_load_n(&v->bstate[blk], __ATOMIC_ACQUIRE);
}

static void
state_set(struct vhd *v, uint32_t blk, int st)
{
  __atomic_store_n(&v->bstate[blk], (uint8_t) st, __ATOMIC_RELEASE);
}

/* Sectors of block blk that lie inside the virtual disk (the last block may
 * be cut short by current_size). */
static uint32_t
used_sectors(const struct disk *d, const struct vhd *v, uint32_t blk)
{
  uint64_t start = (uint64_t) blk << v->block_shift;
  uint64_t left = d->size - start;
  if (left >= v->block_size)
    return v->spb;
  return (uint32_t) ((left + SECTOR - 1) / SECTOR);
}

static uint64_t
block_pos(uint32_t e)
{
  return (uint64_t) e * SECTOR;
}

static bool
bm_test(const uint8_t *bm, uint32_t s)
{
  return (bm[s >> 3] >> (7 - (s & 7))) & 1;
}

static void
bm_set_range(uint8_t *bm, uint32_t s, uint32_t e)
{
  for (; s < e && (s & 7); s++)
    bm[s >> 3] |= (uint8_t) (0x80 >> (s & 7));
  if (s + 8 <= e) {
    memset(bm + (s >> 3), 0xff, (e - s) >> 3);
    s += (e - s) & ~7u;
  }
  for (; s < e; s++)
    bm[s >> 3] |= (uint8_t) (0x80 >> (s & 7));
}

/* End of the run of equal bits starting at sector s (bits relative to bm,
 * whose length covers whole 64-bit words up to lim).  Word-wise: a 64-bit
 * big-endian load puts sector 64k at the most significant bit. */
static uint32_t
bm_run_end(const uint8_t *bm, uint32_t s, uint32_t lim, bool *present)
{
  bool set = bm_test(bm, s);
  uint32_t k = s / 64;
  uint64_t w = get_be64(bm + 8 * (size_t) k);

  *present = set;
  if (set)
    w = ~w;
  w &= ~0ull >> (s % 64);
  for (;;) {
    if (w) {
      uint32_t e = k * 64 + (uint32_t) __builtin_clzll(w);
      return e < lim ? e : lim;
    }
    k++;
    if ((uint64_t) k * 64 >= lim)
      return lim;
    w = get_be64(bm + 8 * (size_t) k);
    if (set)
      w = ~w;
  }
}

/* All of sectors [s, e) set? */
static bool
bm_all_set(const uint8_t *bm, uint32_t s, uint32_t e)
{
  bool present;
  if (s >= e)
    return true;
  return bm_run_end(bm, s, e, &present) == e && present;
}

/* Read background data (what a sector reads as when its bitmap bit is
 * clear): the parent for differencing disks, zeroes otherwise. */
static int
background_read(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  struct disk *p = d->parent;
  size_t n = 0;
  int r;

  if (p && offset < p->size) {
    n = p->size - offset < count ? (size_t) (p->size - offset) : count;
    if ((r = disk_pread(p, buf, n, offset)) < 0)
      return r;
  }
  memset((char *) buf + n, 0, count - n);
  return 0;
}

static int
sync_fd(struct disk *d, struct vhd *v)
{
  return disk_full_fdatasync(v->fd, d->path);
}

/* ---- sector bitmaps --------------------------------------------------- */

static struct bm_slot *
slot_of(struct vhd *v, uint32_t blk)
{
  return &v->slots[blk & (v->nslots - 1)];
}

static pthread_mutex_t *
stripe_of(struct vhd *v, uint32_t blk)
{
  return &v->stripe[blk % NSTRIPES];
}

/* Copy bytes [from, to) of block blk's cached bitmap into out; false on a
 * cache miss. */
static bool
cache_copy(struct vhd *v, uint32_t blk, size_t from, size_t to, uint8_t *out)
{
  struct bm_slot *sl = slot_of(v, blk);
  bool hit;

  pthread_mutex_lock(&sl->lock);
  hit = sl->block == blk && sl->bits;
  if (hit)
    memcpy(out, sl->bits + from, to - from);
  pthread_mutex_unlock(&sl->lock);
  return hit;
}

/* Caller holds the block's stripe lock, so no stale bitmap can be installed
 * over a newer one.  Failure to allocate only costs a future re-read. */
static void
cache_install(struct vhd *v, uint32_t blk, const uint8_t *bm)
{
  struct bm_slot *sl = slot_of(v, blk);

  pthread_mutex_lock(&sl->lock);
  if (!sl->bits)
    sl->bits = malloc(v->bitmap_size);
  if (sl->bits) {
    memcpy(sl->bits, bm, v->bitmap_size);
    sl->block = blk;
  }
  pthread_mutex_unlock(&sl->lock);
}

/* Load block blk's full bitmap into bm (bitmap_size bytes).  Caller holds
 * the stripe lock. */
static int
bitmap_load_locked(struct disk *d, struct vhd *v, uint32_t blk, uint32_t e,
                   uint8_t *bm)
{
  int r;

  if (cache_copy(v, blk, 0, v->bitmap_size, bm))
    return 0;
  r = disk_full_pread(v->fd, d->path, bm, v->bitmap_size, block_pos(e), false);
  if (r < 0)
    return r;
  if (state_get(v, blk) != BS_FULL)
    cache_install(v, blk, bm);
  return 0;
}

/* The state of an allocated block, reading its bitmap the first time. */
static int
block_state(struct disk *d, struct vhd *v, uint32_t blk, uint32_t e)
{
  int st = state_get(v, blk);
  uint8_t *bm = NULL;
  int r;

  if (st != BS_UNKNOWN)
    return st;
  pthread_mutex_lock(stripe_of(v, blk));
  st = state_get(v, blk);
  if (st != BS_UNKNOWN) {
    r = st;
    goto out;
  }
  bm = malloc(v->bitmap_size);
  if (!bm) {
    r = -ENOMEM;
    goto out;
  }
  r = disk_full_pread(v->fd, d->path, bm, v->bitmap_size, block_pos(e), false);
  if (r < 0)
    goto out;
  st = bm_all_set(bm, 0, used_sectors(d, v, blk)) ? BS_FULL : BS_PARTIAL;
  if (st == BS_PARTIAL)
    cache_install(v, blk, bm);
  state_set(v, blk, st);
  r = st;
out:
  pthread_mutex_unlock(stripe_of(v, blk));
  free(bm);
  return r;
}

/* Copy the bitmap words covering sectors [s0, s1) of a PARTIAL block into
 * out; out[0] holds sector (s0 & ~63).  s1 - s0 <= WIN_SECTORS. */
static int
bitmap_window(struct disk *d, struct vhd *v, uint32_t blk, uint32_t e,
              uint32_t s0, uint32_t s1, uint8_t *out)
{
  size_t from = (s0 & ~63u) / 8, to = ((size_t) s1 + 63) / 64 * 8;
  uint8_t *bm = NULL;
  int r;

  if (cache_copy(v, blk, from, to, out))
    return 0;
  pthread_mutex_lock(stripe_of(v, blk));
  bm = malloc(v->bitmap_size);
  if (!bm) {
    r = -ENOMEM;
    goto out;
  }
  r = bitmap_load_locked(d, v, blk, e, bm);
  if (r == 0)
    memcpy(out, bm + from, to - from);
out:
  pthread_mutex_unlock(stripe_of(v, blk));
  free(bm);
  return r;
}

/* ---- reads ------------------------------------------------------------ */

/* A pending run of "absent" bytes (zero or parent), coalesced across blocks
 * so a long unallocated range costs one memset or one parent read. */
struct absent_run {
  char *buf;
  uint64_t off;
  size_t len;
};

static int
absent_flush(struct disk *d, struct absent_run *a)
{
  int r = 0;

  if (a->len) {
    if (d->parent)
      r = background_read(d, a->buf, a->len, a->off);
    else
      memset(a->buf, 0, a->len);
  }
  a->len = 0;
  return r;
}

static int
absent_add(struct disk *d, struct absent_run *a, char *buf, size_t len,
           uint64_t off)
{
  int r;

  if (a->len && a->off + a->len == off) {
    a->len += len;
    return 0;
  }
  if ((r = absent_flush(d, a)) < 0)
    return r;
  a->buf = buf;
  a->off = off;
  a->len = len;
  return 0;
}

/* A read walks the range in runs: present sectors at file position fpos,
 * or absent ones (the parent's, or zeroes).  pread copies them, map
 * describes them; both see the same runs. */
typedef int (*vhd_run_fn)(struct disk *d, void *opaque, uint64_t voff,
                          uint64_t len, bool present, uint64_t fpos);

static int
vhd_walk(struct disk *d, uint64_t count, uint64_t offset, vhd_run_fn fn,
         void *opaque)
{
  struct vhd *v = d->priv;
  uint64_t win[WIN_SECTORS / 64 + 2];
  int r = 0;

  if (v->type == TYPE_FIXED)
    return fn(d, opaque, offset, count, true, offset);

  while (count > 0) {
    uint32_t blk = (uint32_t) (offset >> v->block_shift);
    uint32_t in_blk = (uint32_t) (offset & (v->block_size - 1));
    uint64_t n = v->block_size - in_blk < count ? v->block_size - in_blk : count;
    uint32_t e = bat_get(v, blk);
    uint64_t data = block_pos(e) + v->bitmap_size;
    int st;

    if (e == BAT_FREE) {
      r = fn(d, opaque, offset, n, false, 0);
    } else if ((st = block_state(d, v, blk, e)) < 0) {
      r = st;
    } else if (st == BS_FULL) {
      r = fn(d, opaque, offset, n, true, data + in_blk);
    } else {
      /* Partial bitmap: one run per run of equal sector bits. */
      uint32_t pos = in_blk;
      uint32_t end = in_blk + (uint32_t) n;
      while (r == 0 && pos < end) {
        uint32_t s0 = pos / SECTOR;
        uint32_t s1 = (end + SECTOR - 1) / SECTOR;
        uint32_t base = s0 & ~63u;
        if (s1 - s0 > WIN_SECTORS)
          s1 = s0 + WIN_SECTORS;
        r = bitmap_window(d, v, blk, e, s0, s1, (uint8_t *) win);
        for (uint32_t s = s0; r == 0 && s < s1;) {
          bool present;
          uint32_t se = bm_run_end((uint8_t *) win, s - base, s1 - base,
                                   &present) + base;
          uint32_t bend = se * SECTOR < end ? se * SECTOR : end;
          r = fn(d, opaque, offset - in_blk + pos, bend - pos, present,
                 data + pos);
          pos = bend;
          s = se;
        }
      }
    }
    if (r < 0)
      return r;
    count -= n;
    offset += n;
  }
  return 0;
}

struct vhd_read_ctx {
  char *buf;
  uint64_t start;
  struct absent_run absent;
};

static int
read_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len,
         bool present, uint64_t fpos)
{
  struct vhd_read_ctx *x = opaque;
  struct vhd *v = d->priv;
  char *p = x->buf + (voff - x->start);
  int r;

  if (!present)
    return absent_add(d, &x->absent, p, len, voff);
  if ((r = absent_flush(d, &x->absent)) < 0)
    return r;
  return disk_full_pread(v->fd, d->path, p, len, fpos, false);
}

static int
vhd_pread(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  struct vhd_read_ctx x = { .buf = buf, .start = offset };
  int r = vhd_walk(d, count, offset, read_run, &x);

  return r < 0 ? r : absent_flush(d, &x.absent);
}

static int
map_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len,
        bool present, uint64_t fpos)
{
  struct vhd *v = d->priv;

  if (present)
    return disk_map_add(opaque, v->fd, fpos, len);
  if (d->parent)
    return disk_map_parent(d->parent, len, voff, opaque);
  return disk_map_add(opaque, -1, 0, len);
}

/* Writes go to the file before the BAT or bitmap says present, so every
 * present run is in the file (or its page cache) as it reads. */
static int
vhd_map(struct disk *d, uint64_t count, uint64_t offset, struct disk_map *out)
{
  return vhd_walk(d, count, offset, map_run, out);
}

/* ---- writes ----------------------------------------------------------- */

/* Write payload [off, off+n) of block data at data_pos (the block's data
 * start), merging the partial head/tail sectors whose bitmap bit is clear
 * with background data: those sectors become present as a whole.  bm is the
 * block's bitmap before the write (NULL: all clear). */
static int
write_merged(struct disk *d, struct vhd *v, uint32_t blk, uint64_t data_pos,
             const uint8_t *bm, const char *p, uint32_t off, uint32_t n)
{
  uint64_t vbase = (uint64_t) blk << v->block_shift;
  uint32_t end = off + n;
  uint32_t hs = off / SECTOR, ts = (end - 1) / SECTOR;
  char sec[SECTOR];
  int r;

  /* Head sector partially covered and not present. */
  if (off % SECTOR && !(bm && bm_test(bm, hs))) {
    uint32_t ss = hs * SECTOR;
    uint32_t take = end < ss + SECTOR ? end - off : ss + SECTOR - off;
    if ((r = background_read(d, sec, SECTOR, vbase + ss)) < 0)
      return r;
    memcpy(sec + (off - ss), p, take);
    if (end < ss + SECTOR) {
      /* Head and tail in one sector: done after this write. */
      return disk_full_pwrite(v->fd, d->path, sec, SECTOR, data_pos + ss);
    }
    if ((r = disk_full_pwrite(v->fd, d->path, sec, SECTOR, data_pos + ss)) < 0)
      return r;
    p += take;
    off += take;
  }
  /* Tail sector partially covered and not present. */
  if (end % SECTOR && end > off && !(bm && bm_test(bm, ts))) {
    uint32_t ss = ts * SECTOR;
    if ((r = background_read(d, sec, SECTOR, vbase + ss)) < 0)
      return r;
    memcpy(sec, p + (ss - off), end - ss);
    if ((r = disk_full_pwrite(v->fd, d->path, sec, SECTOR, data_pos + ss)) < 0)
      return r;
    end = ss;
  }
  if (end > off)
    return disk_full_pwrite(v->fd, d->path, p, end - off, data_pos + off);
  return 0;
}

static int
zero_file_range(struct disk *d, struct vhd *v, uint64_t from, uint64_t to)
{
  static const char z[4096];
  int r = 0;

  if (fallocate(v->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                (off_t) from, (off_t) (to - from)) == 0)
    return 0;
  for (; from < to && r == 0; from += sizeof z < to - from ? sizeof z : to - from)
    r = disk_full_pwrite(v->fd, d->path, z,
                         sizeof z < to - from ? sizeof z : (size_t) (to - from), from);
  return r;
}

/* Allocate block blk at the end of the file and write the payload into it.
 * Caller holds alloc_lock.  Order: footer at the new end, bitmap + data,
 * fdatasync, then the BAT entry; so a crash leaves either no block (a leak)
 * or a complete one. */
static int
alloc_block(struct disk *d, struct vhd *v, uint32_t blk, const char *p,
            uint32_t off, uint32_t n)
{
  uint64_t pos = v->next_free;
  uint64_t data_pos = pos + v->bitmap_size;
  uint64_t new_end = data_pos + v->block_size;
  uint8_t *bm = NULL;
  uint8_t ent[4];
  int r, st = BS_FULL;

  if (new_end / SECTOR > BAT_FREE - 1) {
    disk_set_error("%s: VHD is full: block %u would start beyond the 2 TiB "
                   "addressable by the BAT", d->path, blk);
    return -ENOSPC;
  }
  bm = calloc(1, v->bitmap_size);
  if (!bm) {
    r = -ENOMEM;
    goto out;
  }
  /* 1. The footer at the new end keeps the file valid whatever happens. */
  if ((r = disk_full_pwrite(v->fd, d->path, v->footer, FOOTER_SIZE, new_end)) < 0)
    goto out;
  /* Old bytes under the new block's data (never with our own layout: the
   * old footer lies under the bitmap) must read as zero. */
  if (v->file_end > data_pos &&
      (r = zero_file_range(d, v, data_pos, v->file_end < new_end ? v->file_end : new_end)) < 0)
    goto out;
  if (new_end + FOOTER_SIZE > v->file_end)
    v->file_end = new_end + FOOTER_SIZE;
  /* 2. Bitmap and data.  A dynamic block is fully present (what Windows
   * writes), its unwritten parts read as zero from the fresh file space; a
   * differencing block has bits only for the sectors written. */
  if (v->type == TYPE_DIFF) {
    uint32_t s0 = off / SECTOR, s1 = (off + n + SECTOR - 1) / SECTOR;
    if ((r = write_merged(d, v, blk, data_pos, NULL, p, off, n)) < 0)
      goto out;
    bm_set_range(bm, s0, s1);
    if (!bm_all_set(bm, 0, used_sectors(d, v, blk)))
      st = BS_PARTIAL;
  } else {
    memset(bm, 0xff, v->bitmap_size);
    if ((r = disk_full_pwrite(v->fd, d->path, p, n, data_pos + off)) < 0)
      goto out;
  }
  if ((r = disk_full_pwrite(v->fd, d->path, bm, v->bitmap_size, pos)) < 0)
    goto out;
  /* 3. Durable before the BAT points at it. */
  if ((r = sync_fd(d, v)) < 0)
    goto out;
  /* 4. The BAT entry. */
  put_be32(ent, (uint32_t) (pos / SECTOR));
  if ((r = disk_full_pwrite(v->fd, d->path, ent, 4, v->table_offset + 4ull * blk)) < 0)
    goto out;
  v->next_free = new_end;
  pthread_mutex_lock(stripe_of(v, blk));
  if (st == BS_PARTIAL)
    cache_install(v, blk, bm);
  state_set(v, blk, st);
  pthread_mutex_unlock(stripe_of(v, blk));
  __atomic_store_n(&v->bat[blk], (uint32_t) (pos / SECTOR), __ATOMIC_RELEASE);
out:
  free(bm);
  return r;
}

/* Write [off, off+n) inside block blk. */
static int
write_block(struct disk *d, struct vhd *v, uint32_t blk, const char *p,
            uint32_t off, uint32_t n)
{
  uint32_t e = bat_get(v, blk);
  uint32_t s0 = off / SECTOR, s1 = (off + n + SECTOR - 1) / SECTOR;
  uint64_t data_pos;
  uint8_t *bm = NULL;
  bool locked = false;
  int r, st;

  if (e == BAT_FREE) {
    pthread_mutex_lock(&v->alloc_lock);
    e = bat_get(v, blk);
    r = e == BAT_FREE ? alloc_block(d, v, blk, p, off, n) : 1;
    pthread_mutex_unlock(&v->alloc_lock);
    if (r <= 0)
      return r;
  }
  data_pos = block_pos(e) + v->bitmap_size;
  if ((st = block_state(d, v, blk, e)) < 0)
    return st;
  if (st == BS_FULL)
    return disk_full_pwrite(v->fd, d->path, p, n, data_pos + off);

  /* Partial bitmap: sectors that become present need their data durable
   * before their bits are set. */
  pthread_mutex_lock(stripe_of(v, blk));
  locked = true;
  bm = malloc(v->bitmap_size);
  if (!bm) {
    r = -ENOMEM;
    goto out;
  }
  if ((r = bitmap_load_locked(d, v, blk, e, bm)) < 0)
    goto out;
  if (bm_all_set(bm, s0, s1)) {
    pthread_mutex_unlock(stripe_of(v, blk));
    locked = false;
    r = disk_full_pwrite(v->fd, d->path, p, n, data_pos + off);
    goto out;
  }
  if ((r = write_merged(d, v, blk, data_pos, bm, p, off, n)) < 0)
    goto out;
  if ((r = sync_fd(d, v)) < 0)
    goto out;
  {
    /* Rewrite only the bitmap sectors that change. */
    size_t b0 = (s0 / 8) & ~(size_t) (SECTOR - 1);
    size_t b1 = ((s1 - 1) / 8 + SECTOR) & ~(size_t) (SECTOR - 1);
    bm_set_range(bm, s0, s1);
    r = disk_full_pwrite(v->fd, d->path, bm + b0, b1 - b0, block_pos(e) + b0);
    if (r < 0)
      goto out;
  }
  cache_install(v, blk, bm);
  if (bm_all_set(bm, 0, used_sectors(d, v, blk)))
    state_set(v, blk, BS_FULL);
out:
  if (locked)
    pthread_mutex_unlock(stripe_of(v, blk));
  free(bm);
  return r;
}

static int
vhd_pwrite(struct disk *d, const void *buf, size_t count, uint64_t offset,
           unsigned flags)
{
  struct vhd *v = d->priv;
  const char *p = buf;
  int r = 0;

  if (v->readonly) {
    disk_set_error("%s: read-only", d->path);
    return -EROFS;
  }
  if (v->type == TYPE_FIXED) {
    r = disk_full_pwrite(v->fd, d->path, buf, count, offset);
  } else {
    while (count > 0 && r == 0) {
      uint32_t blk = (uint32_t) (offset >> v->block_shift);
      uint32_t in_blk = (uint32_t) (offset & (v->block_size - 1));
      size_t n = v->block_size - in_blk < count ? v->block_size - in_blk : count;
      r = write_block(d, v, blk, p, in_blk, (uint32_t) n);
      p += n;
      count -= n;
      offset += n;
    }
  }
  if (r == 0 && (flags & DISK_F_FUA))
    r = sync_fd(d, v);
  return r;
}

static int
vhd_flush(struct disk *d)
{
  struct vhd *v = d->priv;

  if (v->readonly)
    return 0;
  return sync_fd(d, v);
}

/* Zero: unallocated blocks of a dynamic disk already read as zero; fixed
 * disks punch a zero range; everything else is a plain write. */
static int
vhd_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct vhd *v = d->priv;
  static const size_t chunk = 1 << 20;
  char *zeroes = NULL;
  int r = 0;

  if (v->readonly) {
    disk_set_error("%s: read-only", d->path);
    return -EROFS;
  }
  if (v->type == TYPE_FIXED) {
    if (fallocate(v->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                  (off_t) offset, (off_t) count) == 0)
      return (flags & DISK_F_FUA) ? sync_fd(d, v) : 0;
    return (flags & DISK_F_FAST_ZERO) ? -ENOTSUP : -EOPNOTSUPP;
  }
  if (v->type == TYPE_DIFF)   /* must hide the parent: a real write */
    return (flags & DISK_F_FAST_ZERO) ? -ENOTSUP : -EOPNOTSUPP;

  if (flags & DISK_F_FAST_ZERO) {
    uint32_t b0 = (uint32_t) (offset >> v->block_shift);
    uint32_t b1 = (uint32_t) ((offset + count - 1) >> v->block_shift);
    for (uint32_t b = b0; b <= b1; b++)
      if (bat_get(v, b) != BAT_FREE)
        return -ENOTSUP;
  }
  while (count > 0 && r == 0) {
    uint32_t blk = (uint32_t) (offset >> v->block_shift);
    uint32_t in_blk = (uint32_t) (offset & (v->block_size - 1));
    uint64_t n = v->block_size - in_blk < count ? v->block_size - in_blk : count;

    if (bat_get(v, blk) != BAT_FREE) {
      if (!zeroes && !(zeroes = calloc(1, chunk))) {
        r = -ENOMEM;
        break;
      }
      for (uint64_t done = 0; done < n && r == 0;) {
        uint32_t k = n - done < chunk ? (uint32_t) (n - done) : (uint32_t) chunk;
        r = write_block(d, v, blk, zeroes, in_blk + (uint32_t) done, k);
        done += k;
      }
    }
    count -= n;
    offset += n;
  }
  free(zeroes);
  if (r == 0 && (flags & DISK_F_FUA))
    r = sync_fd(d, v);
  return r;
}

/* ---- extents ---------------------------------------------------------- */

/* Append the parent's view of [off, end); beyond the parent's size, zeroes.
 * Returns 1 when out is full, 0 to go on, negative errno. */
static int
parent_extents(struct disk *d, uint64_t off, uint64_t end,
               struct disk_extents *out)
{
  struct disk *p = d->parent;
  uint64_t pend = end < p->size ? end : p->size;
  int a;

  while (off < pend) {
    struct disk_extents t;
    uint64_t next = off;
    int r;

    disk_extents_init(&t, off, pend, 64);
    r = disk_extents(p, pend - off, off, &t);
    if (r < 0) {
      disk_extents_free(&t);
      return r;
    }
    for (size_t k = 0; k < t.n; k++) {
      uint64_t s = t.v[k].offset, e = s + t.v[k].length;
      if (s < next)
        s = next;
      if (e > pend)
        e = pend;
      if (e <= s)
        continue;
      if (s > next)   /* a gap in the parent's answer: say "data" */
        if ((a = disk_extents_add(out, next, s - next, 0)) != 0) {
          disk_extents_free(&t);
          return a < 0 ? -ENOMEM : 1;
        }
      if ((a = disk_extents_add(out, s, e - s, t.v[k].flags)) != 0) {
        disk_extents_free(&t);
        return a < 0 ? -ENOMEM : 1;
      }
      next = e;
    }
    disk_extents_free(&t);
    if (next == off)   /* no progress: report the rest as data */
      next = pend, a = disk_extents_add(out, off, pend - off, 0);
    else
      a = 0;
    if (a != 0)
      return a < 0 ? -ENOMEM : 1;
    off = next;
  }
  if (off < end) {
    a = disk_extents_add(out, off, end - off, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
    if (a != 0)
      return a < 0 ? -ENOMEM : 1;
  }
  return 0;
}

static int
vhd_extents(struct disk *d, uint64_t count, uint64_t offset,
            struct disk_extents *out)
{
  struct vhd *v = d->priv;
  uint64_t end = offset + count;
  int a;

  if (v->type == TYPE_FIXED)
    return disk_extents_add(out, offset, count, 0) < 0 ? -ENOMEM : 0;
  while (offset < end) {
    uint32_t blk = (uint32_t) (offset >> v->block_shift);
    uint64_t bend = ((uint64_t) blk + 1) << v->block_shift;
    uint32_t e = bat_get(v, blk);

    if (bend > end)
      bend = end;
    if (e != BAT_FREE) {
      a = disk_extents_add(out, offset, bend - offset, 0);
    } else if (!d->parent) {
      a = disk_extents_add(out, offset, bend - offset,
                           DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
    } else {
      /* A run of unallocated blocks: ask the parent once. */
      while (bend < end && bat_get(v, (uint32_t) (bend >> v->block_shift)) == BAT_FREE)
        bend = bend + v->block_size < end ? bend + v->block_size : end;
      a = parent_extents(d, offset, bend, out);
      if (a < 0)
        return a;
    }
    if (a != 0)
      return a < 0 ? -ENOMEM : 0;
    offset = bend;
  }
  return 0;
}

/* ---- info / close ----------------------------------------------------- */

static void
fourcc(const uint8_t *p, char out[5])
{
  size_t n = 0;
  for (int i = 0; i < 4; i++)
    if (p[i])
      out[n++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char) p[i] : '?';
  out[n] = 0;
}

static int
vhd_info(struct disk *d, struct disk_info *info)
{
  struct vhd *v = d->priv;
  uint32_t ver = get_be32(v->footer + F_CREATOR_VER);
  char app[5], os[5];

  info->subtype = v->type == TYPE_FIXED ? "fixed"
                : v->type == TYPE_DYNAMIC ? "dynamic" : "differencing";
  if (v->type == TYPE_FIXED) {
    info->block_size = 0;
    info->allocated_bytes = info->file_size;
  } else {
    uint64_t n = 0;
    for (uint32_t b = 0; b < v->nblocks; b++)
      n += bat_get(v, b) != BAT_FREE;
    info->block_size = v->block_size;
    info->allocated_bytes = n * v->block_size;
  }
  dism_guid_be_to_string(v->footer + F_UID, info->unique_id);
  fourcc(v->footer + F_CREATOR_APP, app);
  fourcc(v->footer + F_CREATOR_OS, os);
  snprintf(info->creator, sizeof info->creator, "%s %u.%u (%s)", app,
           ver >> 16, ver & 0xffff, os);
  snprintf(info->parent_hint, sizeof info->parent_hint, "%s", v->parent_hint);
  snprintf(info->notes, sizeof info->notes, "%s", v->notes);
  return 0;
}

/* Before a merge: every block the ranges will allocate goes at next_free
 * (its bitmap, then the block), the footer after the last; the BAT entries
 * are written in place.  Unallocated blocks of a dynamic disk read as
 * zeroes already, so only a differencing disk allocates for a zero range. */
static int
vhd_reserve(struct disk *d, const struct disk_range *rg, size_t n)
{
  struct vhd *v = d->priv;
  uint64_t nnew = 0, last = UINT64_MAX, need;
  int r = 0;

  if (v->type == TYPE_FIXED)
    return 0;
  pthread_mutex_lock(&v->alloc_lock);
  if (n == 0) {
    disk_file_unreserve(v->fd, v->reserve_end);
    v->reserve_end = 0;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t b0 = rg[i].offset >> v->block_shift;
    uint64_t b1 = (rg[i].offset + rg[i].length - 1) >> v->block_shift;
    if (rg[i].zero && v->type != TYPE_DIFF)
      continue;
    for (uint64_t b = last != UINT64_MAX && last >= b0 ? last + 1 : b0; b <= b1; b++)
      nnew += bat_get(v, (uint32_t) b) == BAT_FREE;
    if (last == UINT64_MAX || b1 > last)
      last = b1;
  }
  r = disk_file_reserve(v->fd, d->path, v->table_offset,
                        ((uint64_t) v->nblocks * 4 + SECTOR - 1) / SECTOR * SECTOR);
  if (r < 0 || nnew == 0)
    goto out;
  need = nnew * ((uint64_t) v->bitmap_size + v->block_size) + FOOTER_SIZE;
  r = disk_file_reserve_tail(v->fd, d->path, v->next_free, need, &v->reserve_end);
out:
  pthread_mutex_unlock(&v->alloc_lock);
  return r;
}

static void
vhd_close(struct disk *d)
{
  struct vhd *v = d->priv;

  if (!v)
    return;
  if (v->fd >= 0)
    close(v->fd);
  if (v->locks_ready) {
    pthread_mutex_destroy(&v->alloc_lock);
    for (unsigned i = 0; i < NSTRIPES; i++)
      pthread_mutex_destroy(&v->stripe[i]);
    for (uint32_t i = 0; i < v->nslots; i++) {
      pthread_mutex_destroy(&v->slots[i].lock);
      free(v->slots[i].bits);
    }
  }
  free(v->slots);
  free(v->bat);
  free(v->bstate);
  free(v);
  d->priv = NULL;
}

static const struct disk_ops vhd_ops = {
  .name    = "vhd",
  .pread   = vhd_pread,
  .pwrite  = vhd_pwrite,
  .flush   = vhd_flush,
  .trim    = NULL,        /* a hint; blocks are never freed in a VHD */
  .zero    = vhd_zero,
  .extents = vhd_extents,
  .map     = vhd_map,
  .info    = vhd_info,
  .reserve = vhd_reserve,
  .close   = vhd_close,
};

/* ---- open: footer ----------------------------------------------------- */

struct footer_cand {
  uint8_t b[FOOTER_SIZE];
  bool found, csum_ok;
  uint32_t stored, computed;
  unsigned len;              /* 512, or 511 for old Virtual PC footers */
};

static void
footer_read(int fd, uint64_t off, unsigned len, struct footer_cand *c)
{
  ssize_t n;

  memset(c, 0, sizeof *c);
  do
    n = pread(fd, c->b, len, (off_t) off);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t) len || memcmp(c->b + F_COOKIE, "conectix", 8) != 0)
    return;
  c->found = true;
  c->len = len;
  c->stored = get_be32(c->b + F_CHECKSUM);
  c->computed = vhd_checksum(c->b, FOOTER_SIZE, F_CHECKSUM);
  c->csum_ok = c->stored == c->computed;
}

static bool
is_sparse_type(const uint8_t *f)
{
  uint32_t t = get_be32(f + F_TYPE);
  return t == TYPE_DYNAMIC || t == TYPE_DIFF;
}

/* ---- open: parent ----------------------------------------------------- */

#define LOC_W2RU 0x57327275u
#define LOC_W2KU 0x57326b75u
#define LOC_WI2R 0x57693272u
#define LOC_WI2K 0x5769326bu
#define LOC_MACX 0x4d616358u

#define MAX_CANDS 24

struct parent_search {
  char *cands[MAX_CANDS];    /* paths already tried */
  size_t ncands;
  char tried[700];
  size_t tried_len;
  char first_err[1024];
  int first_r;
};

static void
note_tried(struct parent_search *s, const char *tag, const char *path)
{
  int n = snprintf(s->tried + s->tried_len, sizeof s->tried - s->tried_len,
                   "%s%s %s", s->tried_len ? ", " : "", tag, path);
  if (n > 0)
    s->tried_len += (size_t) n;
  if (s->tried_len >= sizeof s->tried)
    s->tried_len = sizeof s->tried - 1;
}

/* Try one candidate parent path.  Returns 0 with *out set, 1 to try the next
 * candidate, or a negative errno to stop (loops). */
static int
try_parent(struct disk *d, int fd, const struct disk_open_opts *opts,
           const uint8_t *want_uid, const char *tag, const char *recorded,
           const char *cand, struct parent_search *s, struct vhd *v,
           struct disk **out)
{
  struct disk_info *pi = NULL;
  struct disk *p = NULL;
  char want[37], msg[1024];
  struct stat st;
  int r;

  for (size_t k = 0; k < s->ncands; k++)
    if (strcmp(s->cands[k], cand) == 0) {   /* found by an earlier locator */
      note_tried(s, tag, "(same path)");
      return 1;
    }
  if (s->ncands < MAX_CANDS && (s->cands[s->ncands] = strdup(cand)))
    s->ncands++;
  note_tried(s, tag, cand);
  if (stat(cand, &st) < 0)
    return 1;
  r = disk_open_parent(cand, opts, fd, &p);
  if (r == -ELOOP) {
    snprintf(msg, sizeof msg, "%s", disk_last_error());
    disk_set_error("%s: parent %s: %s", d->path, cand, msg);
    return r;
  }
  if (r < 0) {
    if (!s->first_r) {
      /* The parent's message names only the parent: say whose parent. */
      s->first_r = r;
      snprintf(s->first_err, sizeof s->first_err, "%s: parent %s: %s", d->path, cand,
               disk_last_error());
    }
    return 1;
  }
  pi = malloc(sizeof *pi);
  if (!pi) {
    disk_close(p);
    return -ENOMEM;
  }
  dism_guid_be_to_string(want_uid, want);
  if (strcmp(p->ops->name, "vhd") != 0) {
    r = -EINVAL;
    snprintf(msg, sizeof msg, "%s: parent %s is not a VHD (format %s)",
             d->path, cand, p->ops->name);
  } else if ((r = disk_info(p, pi)) < 0) {
    snprintf(msg, sizeof msg, "%s", disk_last_error());
  } else if (strcmp(pi->unique_id, want) != 0) {
    r = -EINVAL;
    snprintf(msg, sizeof msg,
             "%s: parent %s has unique id %s, but %s expects parent id %s",
             d->path, cand, pi->unique_id, d->path, want);
  }
  free(pi);
  if (r < 0) {
    if (!s->first_r) {
      s->first_r = r;
      snprintf(s->first_err, sizeof s->first_err, "%s", msg);
    }
    disk_close(p);
    return 1;
  }
  snprintf(v->parent_hint, sizeof v->parent_hint, "%s", recorded);
  *out = p;
  return 0;
}

/* MacX locators hold a file URL: "file://localhost/dir/parent.vhd". */
static void
macx_path(const char *url, char *out, size_t outsize)
{
  const char *p = url;
  size_t o = 0;

  if (strncmp(p, "file://", 7) == 0) {
    p += 7;
    if (*p != '/')
      p = strchr(p, '/') ? strchr(p, '/') : p + strlen(p);
  }
  while (*p && o + 1 < outsize) {
    int hi = p[0] == '%' && p[1] ? dism_hex_digit(p[1]) : -1;
    int lo = hi >= 0 && p[2] ? dism_hex_digit(p[2]) : -1;
    if (lo >= 0) {
      out[o++] = (char) (hi << 4 | lo);
      p += 3;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = 0;
}

static int
open_parent(struct disk *d, struct vhd *v, int fd, uint64_t file_size,
            const uint8_t *hdr, const struct disk_open_opts *opts,
            struct disk **out)
{
  static const struct { uint32_t code; const char *tag; } order[] = {
    { LOC_W2RU, "W2ru" }, { LOC_W2KU, "W2ku" }, { LOC_WI2R, "Wi2r" },
    { LOC_WI2K, "Wi2k" }, { LOC_MACX, "MacX" },
  };
  struct parent_search *s = NULL;
  char *raw = NULL, *rec = NULL, *cand = NULL;
  const uint8_t *uid = hdr + H_PARENT_UID;
  char want[37];
  int r;

  s = calloc(1, sizeof *s);
  raw = malloc(MAX_LOCATOR + 2);
  rec = malloc(DISM_PATH_MAX);
  cand = malloc(DISM_PATH_MAX);
  if (!s || !raw || !rec || !cand) {
    r = -ENOMEM;
    goto out;
  }
  for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
    for (int k = 0; k < 8; k++) {
      const uint8_t *l = hdr + H_LOCATORS + 24 * k;
      uint32_t len = get_be32(l + 8);
      uint64_t loff = get_be64(l + 16);

      if (get_be32(l) != order[o].code)
        continue;
      if (len == 0 || len > MAX_LOCATOR || loff > file_size ||
          len > file_size - loff) {
        note_tried(s, order[o].tag, "(invalid locator)");
        continue;
      }
      if ((r = disk_full_pread(fd, d->path, raw, len, loff, false)) < 0)
        goto out;
      raw[len] = raw[len + 1] = 0;
      if (order[o].code == LOC_W2RU || order[o].code == LOC_W2KU)
        r = dism_utf16le_to_utf8(raw, len / 2, rec, DISM_PATH_MAX);
      else
        r = snprintf(rec, DISM_PATH_MAX, "%s", raw) >= DISM_PATH_MAX ? -ENAMETOOLONG : 0;
      if (r < 0 || !rec[0]) {
        note_tried(s, order[o].tag, "(undecodable)");
        continue;
      }
      if (order[o].code == LOC_MACX) {
        char *url = strdup(rec);
        if (!url) {
          r = -ENOMEM;
          goto out;
        }
        macx_path(url, rec, DISM_PATH_MAX);
        free(url);
        /* The absolute path as is, then its name beside the child. */
        if (rec[0] == '/') {
          r = try_parent(d, fd, opts, uid, order[o].tag, rec, rec, s, v, out);
          if (r <= 0)
            goto out;
        }
      }
      bool abs = order[o].code == LOC_W2KU || order[o].code == LOC_WI2K ||
                 order[o].code == LOC_MACX;
      if (dism_resolve_parent_path(d->path, rec, abs, cand, DISM_PATH_MAX) < 0)
        continue;
      r = try_parent(d, fd, opts, uid, order[o].tag, rec, cand, s, v, out);
      if (r <= 0)
        goto out;
    }
  }
  /* Last resort: the parent's unicode name, beside the child. */
  if (dism_utf16be_to_utf8(hdr + H_PARENT_NAME, 256, rec, DISM_PATH_MAX) > 0 &&
      dism_resolve_parent_path(d->path, rec, false, cand, DISM_PATH_MAX) == 0) {
    r = try_parent(d, fd, opts, uid, "name", rec, cand, s, v, out);
    if (r <= 0)
      goto out;
  }
  dism_guid_be_to_string(uid, want);
  if (s->first_r) {
    r = s->first_r;
    disk_set_error("%s", s->first_err);
  } else {
    r = -ENOENT;
    disk_set_error("%s: parent image (unique id %s) not found; tried %s",
                   d->path, want, s->tried_len ? s->tried : "nothing (no locators, no parent name)");
  }
out:
  if (s)
    for (size_t k = 0; k < s->ncands; k++)
      free(s->cands[k]);
  free(s);
  free(raw);
  free(rec);
  free(cand);
  return r;
}

/* ---- open ------------------------------------------------------------- */

struct span { uint64_t start, len; uint32_t blk; };

static int
span_cmp(const void *a, const void *b)
{
  const struct span *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

static bool
overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
  return a < b + blen && b < a + alen;
}

/* Validate every allocated BAT entry: inside the file, clear of the
 * metadata and of each other. */
static int
check_bat(struct disk *d, struct vhd *v, uint64_t data_end, uint64_t hdr_off,
          uint64_t bat_len)
{
  struct span *sp = NULL;
  size_t n = 0;
  int r = 0;

  sp = malloc(sizeof *sp * (v->nblocks ? v->nblocks : 1));
  if (!sp)
    return -ENOMEM;
  for (uint32_t b = 0; b < v->nblocks; b++) {
    uint32_t e = v->bat[b];
    uint64_t start = block_pos(e);
    uint64_t need = v->bitmap_size + (uint64_t) used_sectors(d, v, b) * SECTOR;
    if (e == BAT_FREE)
      continue;
    if (start > data_end || need > data_end - start) {
      disk_set_error("%s: BAT entry %u points past the end of the file "
                     "(block at %llu..%llu, data ends at %llu)", d->path, b,
                     (unsigned long long) start,
                     (unsigned long long) (start + need),
                     (unsigned long long) data_end);
      r = -EINVAL;
      goto out;
    }
    if (overlaps(start, need, 0, FOOTER_SIZE) ||
        overlaps(start, need, hdr_off, HEADER_SIZE) ||
        overlaps(start, need, v->table_offset, bat_len)) {
      disk_set_error("%s: BAT entry %u (block at %llu) overlaps the VHD "
                     "metadata", d->path, b, (unsigned long long) start);
      r = -EINVAL;
      goto out;
    }
    sp[n++] = (struct span) { start, need, b };
  }
  qsort(sp, n, sizeof *sp, span_cmp);
  for (size_t k = 1; k < n; k++)
    if (sp[k].start < sp[k - 1].start + sp[k - 1].len) {
      disk_set_error("%s: BAT entries %u and %u point at overlapping blocks",
                     d->path, sp[k - 1].blk, sp[k].blk);
      r = -EINVAL;
      goto out;
    }
  for (size_t k = 0; k < n; k++) {
    uint64_t end = sp[k].start + v->bitmap_size + v->block_size;
    if (end > v->next_free)
      v->next_free = end;
  }
out:
  free(sp);
  return r;
}

/* The dynamic header at footer.data_offset (hoff) into hdr: its checksum,
 * block size and BAT location (*bat_len bytes), checked against the file
 * and the virtual size. */
static int
read_dynamic_header(struct disk *d, struct vhd *v, int fd, uint64_t file_size,
                    uint64_t data_end, uint64_t hoff, uint8_t hdr[HEADER_SIZE],
                    const struct disk_open_opts *opts, uint64_t *bat_len)
{
  uint32_t max_entries, stored, computed;
  uint64_t nb;
  int r;

  if (hoff < FOOTER_SIZE || data_end < HEADER_SIZE || hoff > data_end - HEADER_SIZE) {
    disk_set_error("%s: dynamic header offset %llu is outside the file "
                   "(%llu bytes)", d->path, (unsigned long long) hoff,
                   (unsigned long long) file_size);
    return -EINVAL;
  }
  if ((r = disk_full_pread(fd, d->path, hdr, HEADER_SIZE, hoff, false)) < 0)
    return r;
  if (memcmp(hdr + H_COOKIE, "cxsparse", 8) != 0) {
    disk_set_error("%s: no dynamic header ('cxsparse') at offset %llu",
                   d->path, (unsigned long long) hoff);
    return -EINVAL;
  }
  stored = get_be32(hdr + H_CHECKSUM);
  computed = vhd_checksum(hdr, HEADER_SIZE, H_CHECKSUM);
  if (stored != computed) {
    if (!opts->allow_bad_checksum) {
      disk_set_error("%s: bad VHD dynamic header checksum (expected 0x%08x, "
                     "found 0x%08x); forensic mode (allow bad checksums) "
                     "reads it anyway", d->path, computed, stored);
      return -EINVAL;
    }
    v->bad_checksum_accepted = true;
  }
  v->table_offset = get_be64(hdr + H_TABLE_OFFSET);
  max_entries = get_be32(hdr + H_MAX_ENTRIES);
  v->block_size = get_be32(hdr + H_BLOCK_SIZE);
  if (v->block_size < MIN_BLOCK || v->block_size > MAX_BLOCK ||
      (v->block_size & (v->block_size - 1))) {
    disk_set_error("%s: unsupported block size %u (must be a power of two "
                   "from 512 B to 256 MiB)", d->path, v->block_size);
    return -EINVAL;
  }
  v->block_shift = (uint32_t) __builtin_ctz(v->block_size);
  v->spb = v->block_size / SECTOR;
  v->bitmap_size = ((v->spb + 7) / 8 + SECTOR - 1) & ~(SECTOR - 1);
  nb = (d->size >> v->block_shift) + ((d->size & (v->block_size - 1)) != 0);
  if (nb > max_entries) {
    disk_set_error("%s: BAT has %u entries but the virtual size %llu needs "
                   "%llu blocks of %u bytes", d->path, max_entries,
                   (unsigned long long) d->size, (unsigned long long) nb,
                   v->block_size);
    return -EINVAL;
  }
  v->nblocks = (uint32_t) nb;
  *bat_len = (uint64_t) max_entries * 4;
  if (v->table_offset > data_end || *bat_len > data_end - v->table_offset) {
    disk_set_error("%s: BAT (offset %llu, %u entries) extends past the end of "
                   "the file (%llu bytes)", d->path,
                   (unsigned long long) v->table_offset, max_entries,
                   (unsigned long long) file_size);
    return -EINVAL;
  }
  if (overlaps(v->table_offset, *bat_len, hoff, HEADER_SIZE) ||
      v->table_offset < FOOTER_SIZE) {
    disk_set_error("%s: BAT at offset %llu overlaps the footer copy or the "
                   "dynamic header", d->path, (unsigned long long) v->table_offset);
    return -EINVAL;
  }
  return 0;
}

/* The bitmap cache (a power of two of slots within CACHE_BYTES) and the
 * locks of a dynamic or differencing image. */
static int
init_locks(struct vhd *v)
{
  uint32_t want = CACHE_BYTES / v->bitmap_size;
  uint32_t n = 16;

  if (want > v->nblocks)
    want = v->nblocks;
  while (n < want && n < (1u << 20))
    n <<= 1;
  v->slots = calloc(n, sizeof *v->slots);
  if (!v->slots)
    return -ENOMEM;
  v->nslots = n;
  pthread_mutex_init(&v->alloc_lock, NULL);
  for (unsigned i = 0; i < NSTRIPES; i++)
    pthread_mutex_init(&v->stripe[i], NULL);
  for (uint32_t i = 0; i < v->nslots; i++) {
    pthread_mutex_init(&v->slots[i].lock, NULL);
    v->slots[i].block = UINT32_MAX;
  }
  v->locks_ready = true;
  return 0;
}

static int
open_sparse(struct disk *d, struct vhd *v, int fd, uint64_t file_size,
            uint64_t data_end, const struct disk_open_opts *opts)
{
  uint8_t hdr[HEADER_SIZE];
  uint64_t hoff = get_be64(v->footer + F_DATA_OFFSET);
  uint64_t bat_len;
  uint8_t *raw = NULL;
  int r;

  r = read_dynamic_header(d, v, fd, file_size, data_end, hoff, hdr, opts, &bat_len);
  if (r < 0)
    return r;

  /* The BAT: bounded by the file size, checked above. */
  v->bat = malloc((size_t) v->nblocks * 4 + 4);
  v->bstate = calloc((size_t) v->nblocks + 1, 1);
  raw = malloc((size_t) v->nblocks * 4 + 4);
  if (!v->bat || !v->bstate || !raw) {
    r = -ENOMEM;
    goto out;
  }
  if ((r = disk_full_pread(fd, d->path, raw, (size_t) v->nblocks * 4,
                           v->table_offset, false)) < 0)
    goto out;
  for (uint32_t b = 0; b < v->nblocks; b++)
    v->bat[b] = get_be32(raw + 4 * (size_t) b);

  v->next_free = (data_end + SECTOR - 1) & ~(uint64_t) (SECTOR - 1);
  {
    uint64_t e1 = (hoff + HEADER_SIZE + SECTOR - 1) & ~(uint64_t) (SECTOR - 1);
    uint64_t e2 = (v->table_offset + bat_len + SECTOR - 1) & ~(uint64_t) (SECTOR - 1);
    if (e1 > v->next_free) v->next_free = e1;
    if (e2 > v->next_free) v->next_free = e2;
  }
  if ((r = check_bat(d, v, data_end, hoff, bat_len)) < 0)
    goto out;
  v->file_end = file_size;
  if ((r = init_locks(v)) < 0)
    goto out;

  if (v->type == TYPE_DIFF) {
    struct disk *p = NULL;
    if ((r = open_parent(d, v, fd, file_size, hdr, opts, &p)) < 0)
      goto out;
    d->parent = p;
    if (p->size != d->size) {
      size_t l = strlen(v->notes);
      snprintf(v->notes + l, sizeof v->notes - l,
               "; parent size %llu differs from this disk's",
               (unsigned long long) p->size);
    }
  }
out:
  free(raw);
  return r;
}

/* The footer to use: the one at the end (512 bytes, or 511 from old
 * Virtual PC), else the copy at offset 0 that dynamic and differencing
 * disks keep; one with a bad checksum only in forensic mode.  Copied into
 * v->footer; *data_end is where the data before it ends. */
static int
choose_footer(struct disk *d, struct vhd *v, int fd, uint64_t file_size,
              const struct disk_open_opts *opts, uint64_t *data_end)
{
  struct footer_cand *end = calloc(1, sizeof *end), *copy = calloc(1, sizeof *copy);
  struct footer_cand *use;
  const char *src;
  int r = 0;

  if (!end || !copy) {
    r = -ENOMEM;
    goto out;
  }
  if (file_size >= FOOTER_SIZE)
    footer_read(fd, file_size - FOOTER_SIZE, FOOTER_SIZE, end);
  if (!end->found)
    footer_read(fd, file_size - (FOOTER_SIZE - 1), FOOTER_SIZE - 1, end);
  if (file_size >= FOOTER_SIZE + HEADER_SIZE)
    footer_read(fd, 0, FOOTER_SIZE, copy);

  if (end->found && end->csum_ok) {
    use = end;
    src = end->len == FOOTER_SIZE ? "footer at end of file"
                                  : "511-byte footer at end of file";
  } else if (copy->found && copy->csum_ok && is_sparse_type(copy->b) &&
             !(end->found && !is_sparse_type(end->b))) {
    use = copy;
    src = end->found ? "footer copy at offset 0 (footer at end has a bad checksum)"
                     : "footer copy at offset 0 (no footer at end of file)";
  } else if (end->found || copy->found) {
    struct footer_cand *c = end->found ? end : copy;
    if (!opts->allow_bad_checksum) {
      disk_set_error("%s: bad VHD footer checksum (expected 0x%08x, found "
                     "0x%08x); forensic mode (allow bad checksums) reads it "
                     "anyway", d->path, c->computed, c->stored);
      r = -EINVAL;
      goto out;
    }
    use = c;
    v->bad_checksum_accepted = true;
    src = c == end ? "footer at end of file, bad checksum accepted"
                   : "footer copy at offset 0, bad checksum accepted";
  } else {
    disk_set_error("%s: not a VHD: no 'conectix' footer at the end of the file "
                   "or at offset 0", d->path);
    r = -EINVAL;
    goto out;
  }
  memcpy(v->footer, use->b, FOOTER_SIZE);
  v->footer_src = src;
  *data_end = use == end ? file_size - end->len : file_size;
out:
  free(end);
  free(copy);
  return r;
}

/* The footer's disk type, version and virtual size (and its CHS geometry,
 * for the notes). */
static int
parse_footer(struct disk *d, struct vhd *v)
{
  const uint8_t *g = v->footer + F_GEOMETRY;
  unsigned cyl = get_be16(g), heads = g[2], spt = g[3];

  v->type = get_be32(v->footer + F_TYPE);
  if (v->type != TYPE_FIXED && v->type != TYPE_DYNAMIC && v->type != TYPE_DIFF) {
    disk_set_error("%s: unsupported VHD disk type %u", d->path, v->type);
    return -EINVAL;
  }
  if (get_be32(v->footer + F_VERSION) >> 16 != 1) {
    disk_set_error("%s: unsupported VHD format version 0x%08x", d->path,
                   get_be32(v->footer + F_VERSION));
    return -EINVAL;
  }
  /* Windows uses current_size; CHS goes into the notes. */
  d->size = get_be64(v->footer + F_CUR_SIZE);
  snprintf(v->notes, sizeof v->notes,
           "CHS %u/%u/%u = %llu bytes; virtual size is current_size %llu; %s",
           cyl, heads, spt, (unsigned long long) cyl * heads * spt * SECTOR,
           (unsigned long long) d->size, v->footer_src);
  return 0;
}

static int
vhd_open(const char *path, int fd, const struct disk_open_opts *opts,
         struct disk **out)
{
  struct disk *d = NULL;
  struct vhd *v = NULL;
  uint64_t file_size, data_end = 0;
  struct stat st;
  int r;

  *out = NULL;
  if (fstat(fd, &st) < 0) {
    r = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    return r;
  }
  file_size = (uint64_t) st.st_size;
  if (S_ISBLK(st.st_mode)) {
    off_t e = lseek(fd, 0, SEEK_END);
    file_size = e > 0 ? (uint64_t) e : 0;
  }
  d = disk_new(&vhd_ops, path);
  v = calloc(1, sizeof *v);
  if (!d || !v) {
    r = -ENOMEM;
    goto out;
  }
  v->fd = -1;
  d->priv = v;
  if (file_size < FOOTER_SIZE - 1) {
    disk_set_error("%s: too small for a VHD (%llu bytes)", path,
                   (unsigned long long) file_size);
    r = -EINVAL;
    goto out;
  }
  r = choose_footer(d, v, fd, file_size, opts, &data_end);
  if (r == 0)
    r = parse_footer(d, v);
  if (r < 0)
    goto out;
  v->fd = fd;
  v->readonly = opts->readonly;
  if (v->type == TYPE_FIXED) {
    if (d->size > data_end) {
      disk_set_error("%s: fixed VHD is truncated: current size %llu but only "
                     "%llu bytes of data before the footer", path,
                     (unsigned long long) d->size, (unsigned long long) data_end);
      r = -EINVAL;
      goto out;
    }
  } else if ((r = open_sparse(d, v, fd, file_size, data_end, opts)) < 0) {
    goto out;
  }
  if (v->bad_checksum_accepted && !v->readonly) {
    /* Never write new metadata next to a footer we could not verify. */
    size_t l = strlen(v->notes);
    v->readonly = true;
    d->readonly = true;
    snprintf(v->notes + l, sizeof v->notes - l,
             "; opened read-only because a bad checksum was accepted");
  }
  d->readonly = d->readonly || v->readonly;
  *out = d;
  d = NULL;
  r = 0;
out:
  if (d) {
    if (v)
      v->fd = -1;   /* on failure the caller closes fd */
    disk_close(d);
  } else if (r < 0) {
    free(v);
  }
  return r;
}

/* A VHD ends with a 512-byte footer ("conectix"); images written by old
 * Virtual PC versions may have a 511-byte footer.  Dynamic VHDs also carry
 * a copy of the footer at offset 0. */
static bool
vhd_probe(int fd, uint64_t file_size)
{
  char sig[8];

  if (file_size >= 512 && pread(fd, sig, 8, file_size - 512) == 8 &&
      memcmp(sig, "conectix", 8) == 0)
    return true;
  if (file_size >= 511 && pread(fd, sig, 8, file_size - 511) == 8 &&
      memcmp(sig, "conectix", 8) == 0)
    return true;
  return file_size >= 512 && pread(fd, sig, 8, 0) == 8 &&
         memcmp(sig, "conectix", 8) == 0;
}

const struct disk_format dism_format_vhd = {
  .name = "vhd",
  .probe = vhd_probe,
  .open = vhd_open,
};
