/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-source.c - read file data straight out of a WIM file (wim-source.h).
 *
 * Resource layouts (checked against wimlib's src/resource.c and
 * include/wimlib/resource.h):
 *  - uncompressed: the bytes as they are;
 *  - compressed, not solid: the WIM header's compression and chunk size;
 *    N = ceil(usize / chunk) chunks; a chunk table of N-1 entries (offsets
 *    of chunks 1..N-1 relative to the end of the table; 8 bytes each when
 *    usize > UINT32_MAX, else 4), then the chunks;
 *  - solid: a 16-byte header (le64 usize, le32 chunk size, le32 format:
 *    0 none, 1 XPRESS, 2 LZX, 3 LZMS), N le32 compressed sizes, the chunks.
 * A chunk whose stored size equals its uncompressed size is stored raw; a
 * stored size of 0 or above the uncompressed size is damage.
 *
 * The cache holds decompressed chunks and parsed chunk tables, keyed by
 * (resource offset, chunk index; UINT64_MAX for the table), in one LRU
 * bounded by bytes.  A missing entry is inserted "loading" before the lock
 * is dropped: other threads wanting it wait on the condition variable,
 * threads wanting other entries go on, so one chunk is decompressed once
 * and different chunks in parallel.  Entries in use (refs) are never
 * evicted; the cache may exceed its bound by what readers hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wimlib.h>

#include "byteorder.h"
#include "disk.h"
#include "formats.h"
#include "wim-source.h"

#define WIM_HEADER_SIZE      208u
#define WIM_VERSION_DEFAULT  0x10d00u
#define WIM_VERSION_SOLID    0xe00u
#define WIM_HDR_COMPRESSION  0x2u
#define WIM_HDR_XPRESS       0x20000u
#define WIM_HDR_LZX          0x40000u
#define WIM_HDR_LZMS         0x80000u
#define WIM_HDR_XPRESS_2     0x200000u
#define SOLID_HEADER_SIZE    16u
/* The largest chunk wimlib writes (LZMS solid, 1 GiB). */
#define WIM_MAX_CHUNK        (1u << 30)
#define TABLE_INDEX          UINT64_MAX

/* A parsed chunk table: chunk i is stored at file offset data + start[i],
 * start[i+1] - start[i] bytes (start[] has nchunks + 1 entries). */
struct chunk_table {
  uint64_t data;               /* file offset of the first chunk */
  uint64_t data_size;          /* bytes of chunk data in the resource */
  uint64_t usize;
  uint64_t size;               /* the resource as it was described */
  uint32_t flags;
  uint64_t nchunks;
  uint32_t chunk_size;
  int ctype;
  uint64_t start[];
};

struct centry {
  uint64_t roff, idx;          /* key */
  void *data;                  /* chunk bytes or a struct chunk_table */
  size_t len;                  /* bytes of data */
  size_t bytes;                /* counted against the cache */
  unsigned refs;
  bool loading, failed, in_hash;
  struct centry *hnext, *prev, *next;   /* hash chain; LRU (head: newest) */
};

struct decomp {
  int ctype;
  uint32_t chunk_size;
  struct wimlib_decompressor *d;
  struct decomp *next;
};

struct wim_source {
  char *path;
  int fd;
  uint64_t file_size;
  struct wim_header_info hdr;

  pthread_mutex_t lock;        /* the cache, the LRU, the pool */
  pthread_cond_t loaded;
  struct centry **buckets;
  size_t nbuckets;             /* a power of two */
  struct centry *lru_head, *lru_tail;
  uint64_t cache_used, cache_limit;
  uint64_t inflight;           /* bytes being decompressed, within cache_limit
                                  unless one chunk alone is larger */
  struct decomp *pool;         /* idle decompressors */

  struct wim_source_stats stats;   /* updated with __atomic builtins */
};

static void
stat_add(uint64_t *c, uint64_t v)
{
  __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* ---- the header -------------------------------------------------------- */

static const struct {
  int ctype;
  uint32_t min, max;
} chunk_limits[] = {
  { WIMLIB_COMPRESSION_TYPE_XPRESS, 4096, 65536 },
  { WIMLIB_COMPRESSION_TYPE_LZX, 32768, 2097152 },
  { WIMLIB_COMPRESSION_TYPE_LZMS, 32768, WIM_MAX_CHUNK },
};

static bool
chunk_size_valid(int ctype, uint32_t cs)
{
  if (cs == 0 || (cs & (cs - 1)))
    return false;
  for (size_t i = 0; i < sizeof chunk_limits / sizeof chunk_limits[0]; i++)
    if (chunk_limits[i].ctype == ctype)
      return cs >= chunk_limits[i].min && cs <= chunk_limits[i].max;
  return false;
}

static const char *
ctype_name(int ctype)
{
  switch (ctype) {
  case WIMLIB_COMPRESSION_TYPE_NONE: return "none";
  case WIMLIB_COMPRESSION_TYPE_XPRESS: return "XPRESS";
  case WIMLIB_COMPRESSION_TYPE_LZX: return "LZX";
  case WIMLIB_COMPRESSION_TYPE_LZMS: return "LZMS";
  default: return "unknown";
  }
}

int
wim_header_parse(const uint8_t *buf, size_t len, const char *path,
                 struct wim_header_info *out)
{
  struct wim_header_info h;
  uint32_t hsize;

  memset(out, 0, sizeof *out);
  memset(&h, 0, sizeof h);
  if (len >= 8 && memcmp(buf, "WLPWM\0\0\0", 8) == 0) {
    disk_set_error("%s: a pipable WIM (wimlib-imagex --pipable) cannot be read in place; "
                   "convert it first: wimlib-imagex export '%s' all NEW.wim", path, path);
    return -ENOTSUP;
  }
  if (len < WIM_HEADER_SIZE || memcmp(buf, "MSWIM\0\0\0", 8) != 0) {
    disk_set_error("%s: not a WIM file (no MSWIM header)", path);
    return -EINVAL;
  }
  hsize = get_le32(buf + 8);
  h.version = get_le32(buf + 12);
  h.flags = get_le32(buf + 16);
  h.chunk_size = get_le32(buf + 20);
  memcpy(h.guid, buf + 24, 16);
  h.part_number = get_le16(buf + 40);
  h.total_parts = get_le16(buf + 42);
  h.image_count = get_le32(buf + 44);
  if (hsize != WIM_HEADER_SIZE) {
    disk_set_error("%s: WIM header size %u, expected %u", path, hsize, WIM_HEADER_SIZE);
    return -EINVAL;
  }
  if (h.version != WIM_VERSION_DEFAULT && h.version != WIM_VERSION_SOLID) {
    disk_set_error("%s: unknown WIM version %#x", path, h.version);
    return -ENOTSUP;
  }
  if (h.total_parts == 0 || h.part_number == 0 || h.part_number > h.total_parts) {
    disk_set_error("%s: invalid WIM part number %u of %u", path, h.part_number,
                   h.total_parts);
    return -EINVAL;
  }
  if (h.total_parts != 1) {
    disk_set_error("%s: part %u of a split WIM (%u parts) cannot be read in place; "
                   "join it first (wimlib-imagex join)", path, h.part_number, h.total_parts);
    return -ENOTSUP;
  }
  /* The order wimlib tests the bits in; XPRESS_2 is XPRESS. */
  if (!(h.flags & WIM_HDR_COMPRESSION))
    h.compression = WIMLIB_COMPRESSION_TYPE_NONE;
  else if (h.flags & WIM_HDR_LZX)
    h.compression = WIMLIB_COMPRESSION_TYPE_LZX;
  else if (h.flags & (WIM_HDR_XPRESS | WIM_HDR_XPRESS_2))
    h.compression = WIMLIB_COMPRESSION_TYPE_XPRESS;
  else if (h.flags & WIM_HDR_LZMS)
    h.compression = WIMLIB_COMPRESSION_TYPE_LZMS;
  else {
    disk_set_error("%s: WIM header flags %#x: compressed, but with no known compression",
                   path, h.flags);
    return -ENOTSUP;
  }
  if (h.compression != WIMLIB_COMPRESSION_TYPE_NONE) {
    if (h.chunk_size == 0)
      h.chunk_size = 32768;
    if (!chunk_size_valid(h.compression, h.chunk_size)) {
      disk_set_error("%s: chunk size %u is not valid for %s", path, h.chunk_size,
                     ctype_name(h.compression));
      return -ENOTSUP;
    }
  }
  *out = h;
  return 0;
}

/* ---- decompressors ----------------------------------------------------- */

static int
decomp_get(struct wim_source *ws, int ctype, uint32_t cs, struct decomp **out)
{
  struct decomp **pp, *dc;
  int r;

  pthread_mutex_lock(&ws->lock);
  for (pp = &ws->pool; *pp; pp = &(*pp)->next)
    if ((*pp)->ctype == ctype && (*pp)->chunk_size == cs)
      break;
  dc = *pp;
  if (dc)
    *pp = dc->next;
  pthread_mutex_unlock(&ws->lock);
  if (dc) {
    *out = dc;
    return 0;
  }
  dc = calloc(1, sizeof *dc);
  if (!dc)
    return -ENOMEM;
  dc->ctype = ctype;
  dc->chunk_size = cs;
  r = wimlib_create_decompressor((enum wimlib_compression_type) ctype, cs, &dc->d);
  if (r != 0) {
    free(dc);
    disk_set_error("%s: cannot create a %s decompressor for %u-byte chunks: %s",
                   ws->path, ctype_name(ctype), cs, wimlib_get_error_string(r));
    return r == WIMLIB_ERR_NOMEM ? -ENOMEM : -EIO;
  }
  *out = dc;
  return 0;
}

static void
decomp_put(struct wim_source *ws, struct decomp *dc)
{
  pthread_mutex_lock(&ws->lock);
  dc->next = ws->pool;
  ws->pool = dc;
  pthread_mutex_unlock(&ws->lock);
}

/* ---- the cache --------------------------------------------------------- */

static size_t
bucket_of(const struct wim_source *ws, uint64_t roff, uint64_t idx)
{
  uint64_t h = roff * 0x9e3779b97f4a7c15ull ^ (idx + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
  return (size_t) (h ^ (h >> 29)) & (ws->nbuckets - 1);
}

static void
lru_unlink(struct wim_source *ws, struct centry *e)
{
  if (e->prev)
    e->prev->next = e->next;
  else if (ws->lru_head == e)
    ws->lru_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else if (ws->lru_tail == e)
    ws->lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void
lru_push(struct wim_source *ws, struct centry *e)
{
  e->prev = NULL;
  e->next = ws->lru_head;
  if (ws->lru_head)
    ws->lru_head->prev = e;
  ws->lru_head = e;
  if (!ws->lru_tail)
    ws->lru_tail = e;
}

static void
hash_remove(struct wim_source *ws, struct centry *e)
{
  struct centry **pp = &ws->buckets[bucket_of(ws, e->roff, e->idx)];
  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
  e->in_hash = false;
  lru_unlink(ws, e);
}

static void
centry_free(struct centry *e)
{
  free(e->data);
  free(e);
}

/* Evict unused entries, oldest first, until the cache fits (lock held). */
static void
cache_trim(struct wim_source *ws)
{
  struct centry *e = ws->lru_tail;
  while (e && ws->cache_used > ws->cache_limit) {
    struct centry *prev = e->prev;
    if (e->refs == 0 && !e->loading) {
      hash_remove(ws, e);
      ws->cache_used -= e->bytes;
      centry_free(e);
    }
    e = prev;
  }
}

static void
centry_put(struct wim_source *ws, struct centry *e)
{
  pthread_mutex_lock(&ws->lock);
  if (--e->refs == 0) {
    if (!e->in_hash)
      centry_free(e);
    else
      cache_trim(ws);
  }
  pthread_mutex_unlock(&ws->lock);
}

typedef int (*load_fn)(struct wim_source *ws, const struct wim_resource *res,
                       uint64_t idx, const void *arg, void **data, size_t *bytes);

/* Find entry (res, idx) or load it with fn; *out holds a reference (put it
 * with centry_put).  With nowait, a missing entry is -EAGAIN.  cost: the
 * bytes loading allocates; loads wait while the ones in flight would pass
 * the cache's bound with it (64 MiB LZMS chunks on 64 workers), so memory
 * stays near the bound.  A loader never waits for another entry: no
 * deadlock. */
static int
cache_get(struct wim_source *ws, const struct wim_resource *res, uint64_t idx,
          load_fn fn, const void *arg, uint64_t cost, bool nowait, struct centry **out)
{
  struct centry *e;
  void *data = NULL;
  size_t bytes = 0;
  int r;

  pthread_mutex_lock(&ws->lock);
  for (;;) {
    for (e = ws->buckets[bucket_of(ws, res->offset, idx)]; e; e = e->hnext)
      if (e->roff == res->offset && e->idx == idx)
        break;
    if (!e) {
      if (nowait || !cost || ws->inflight == 0 || ws->inflight + cost <= ws->cache_limit)
        break;
      pthread_cond_wait(&ws->loaded, &ws->lock);
      continue;
    }
    e->refs++;
    if (!e->loading) {
      lru_unlink(ws, e);
      lru_push(ws, e);
      pthread_mutex_unlock(&ws->lock);
      if (idx != TABLE_INDEX)
        stat_add(&ws->stats.cache_hits, 1);
      *out = e;
      return 0;
    }
    if (nowait) {
      pthread_mutex_unlock(&ws->lock);
      centry_put(ws, e);
      return -EAGAIN;
    }
    while (e->loading)
      pthread_cond_wait(&ws->loaded, &ws->lock);
    if (!e->failed) {
      pthread_mutex_unlock(&ws->lock);
      if (idx != TABLE_INDEX)
        stat_add(&ws->stats.cache_hits, 1);
      *out = e;
      return 0;
    }
    /* Its loader failed: try ourselves (and record our own message). */
    if (--e->refs == 0 && !e->in_hash)
      centry_free(e);
  }
  if (nowait) {
    pthread_mutex_unlock(&ws->lock);
    return -EAGAIN;
  }
  e = calloc(1, sizeof *e);
  if (!e) {
    pthread_mutex_unlock(&ws->lock);
    return -ENOMEM;
  }
  e->roff = res->offset;
  e->idx = idx;
  e->refs = 1;
  e->loading = true;
  e->in_hash = true;
  size_t b = bucket_of(ws, res->offset, idx);
  e->hnext = ws->buckets[b];
  ws->buckets[b] = e;
  ws->inflight += cost;
  pthread_mutex_unlock(&ws->lock);

  r = fn(ws, res, idx, arg, &data, &bytes);

  pthread_mutex_lock(&ws->lock);
  ws->inflight -= cost;
  e->loading = false;
  if (r < 0) {
    e->failed = true;
    hash_remove(ws, e);
    if (--e->refs == 0)
      centry_free(e);
    e = NULL;
  } else {
    e->data = data;
    e->len = bytes;
    e->bytes = bytes + sizeof *e;
    ws->cache_used += e->bytes;
    lru_push(ws, e);
    cache_trim(ws);
  }
  pthread_cond_broadcast(&ws->loaded);
  pthread_mutex_unlock(&ws->lock);
  *out = e;
  return r;
}

/* ---- chunk tables and chunks ------------------------------------------- */

static int
file_read(struct wim_source *ws, void *buf, size_t count, uint64_t offset)
{
  int r = disk_full_pread(ws->fd, ws->path, buf, count, offset, false);
  if (r == 0)
    stat_add(&ws->stats.file_bytes_read, count);
  return r;
}

static int
table_load(struct wim_source *ws, const struct wim_resource *res, uint64_t idx,
           const void *arg, void **data, size_t *bytes)
{
  const bool solid = res->flags & WIM_RES_SOLID;
  uint64_t nchunks, nentries, esize, tsize, hsize = solid ? SOLID_HEADER_SIZE : 0;
  uint8_t hdr[SOLID_HEADER_SIZE], *raw = NULL;
  struct chunk_table *t = NULL;
  uint32_t cs = ws->hdr.chunk_size;
  int ctype = ws->hdr.compression, r;

  (void) idx;
  (void) arg;
  if (solid) {
    uint64_t usize;
    uint32_t fmt;
    if (res->size < SOLID_HEADER_SIZE) {
      r = -EIO;
      disk_set_error("%s: solid resource at %" PRIu64 ": %" PRIu64 " bytes, too small for its header",
                     ws->path, res->offset, res->size);
      goto out;
    }
    r = file_read(ws, hdr, sizeof hdr, res->offset);
    if (r < 0)
      goto out;
    usize = get_le64(hdr);
    cs = get_le32(hdr + 8);
    fmt = get_le32(hdr + 12);
    ctype = (int) fmt;
    if (usize != res->uncompressed_size || fmt > WIMLIB_COMPRESSION_TYPE_LZMS ||
        (fmt != WIMLIB_COMPRESSION_TYPE_NONE && !chunk_size_valid(ctype, cs)) ||
        (fmt == WIMLIB_COMPRESSION_TYPE_NONE && (cs == 0 || cs > WIM_MAX_CHUNK))) {
      r = -EIO;
      disk_set_error("%s: solid resource at %" PRIu64 ": bad header (size %" PRIu64
                     ", expected %" PRIu64 "; chunk size %u; format %u)", ws->path,
                     res->offset, usize, res->uncompressed_size, cs, fmt);
      goto out;
    }
  } else if (ctype == WIMLIB_COMPRESSION_TYPE_NONE) {
    r = -EIO;
    disk_set_error("%s: resource at %" PRIu64 " is marked compressed in a WIM without compression",
                   ws->path, res->offset);
    goto out;
  }
  nchunks = res->uncompressed_size / cs + (res->uncompressed_size % cs != 0);
  if (nchunks == 0) {
    r = -EIO;
    disk_set_error("%s: resource at %" PRIu64 ": compressed, but empty", ws->path, res->offset);
    goto out;
  }
  nentries = solid ? nchunks : nchunks - 1;
  esize = (!solid && res->uncompressed_size > UINT32_MAX) ? 8 : 4;
  if (nentries > (res->size - hsize) / esize) {
    r = -EIO;
    disk_set_error("%s: resource at %" PRIu64 ": %" PRIu64 " bytes cannot hold a table of %"
                   PRIu64 " chunks", ws->path, res->offset, res->size, nchunks);
    goto out;
  }
  tsize = nentries * esize;
  t = malloc(sizeof *t + (nchunks + 1) * sizeof t->start[0]);
  raw = malloc(tsize ? tsize : 1);
  if (!t || !raw) {
    r = -ENOMEM;
    goto out;
  }
  r = file_read(ws, raw, tsize, res->offset + hsize);
  if (r < 0)
    goto out;
  t->data = res->offset + hsize + tsize;
  t->data_size = res->size - hsize - tsize;
  t->usize = res->uncompressed_size;
  t->size = res->size;
  t->flags = res->flags;
  t->nchunks = nchunks;
  t->chunk_size = cs;
  t->ctype = ctype;
  /* Offsets are kept as read; each chunk is checked when it is read, so a
   * damaged entry costs its chunks only.  Solid sums saturate. */
  t->start[0] = 0;
  for (uint64_t i = 0; i < nentries; i++) {
    uint64_t v = esize == 8 ? get_le64(raw + i * 8) : get_le32(raw + i * 4);
    if (solid)
      t->start[i + 1] = t->start[i] > UINT64_MAX - v ? UINT64_MAX : t->start[i] + v;
    else
      t->start[i + 1] = v;
  }
  if (!solid)
    t->start[nchunks] = t->data_size;
  *data = t;
  *bytes = sizeof *t + (nchunks + 1) * sizeof t->start[0];
  t = NULL;
out:
  free(raw);
  free(t);
  return r;
}

static int
chunk_load(struct wim_source *ws, const struct wim_resource *res, uint64_t idx,
           const void *arg, void **data, size_t *bytes)
{
  const struct chunk_table *t = arg;
  uint64_t start = t->start[idx], end = t->start[idx + 1];
  uint64_t usize = idx + 1 < t->nchunks ? t->chunk_size
                                        : t->usize - (t->nchunks - 1) * (uint64_t) t->chunk_size;
  uint64_t csize = end - start;
  struct decomp *dc = NULL;
  uint8_t *out = NULL, *cbuf = NULL;
  int r;

  if (end <= start || end > t->data_size || csize > usize) {
    r = -EIO;
    disk_set_error("%s: resource at %" PRIu64 ": chunk %" PRIu64 " of %" PRIu64
                   ": bad chunk table entry (stored at %" PRIu64 "..%" PRIu64
                   " of %" PRIu64 " data bytes, %" PRIu64 " bytes uncompressed)",
                   ws->path, res->offset, idx, t->nchunks, start, end, t->data_size, usize);
    goto out;
  }
  out = malloc(usize);
  if (!out) {
    r = -ENOMEM;
    goto out;
  }
  if (csize == usize || t->ctype == WIMLIB_COMPRESSION_TYPE_NONE) {
    if (csize != usize) {
      r = -EIO;
      disk_set_error("%s: resource at %" PRIu64 ": chunk %" PRIu64 " of %" PRIu64
                     ": %" PRIu64 " bytes stored for %" PRIu64 " without compression",
                     ws->path, res->offset, idx, t->nchunks, csize, usize);
      goto out;
    }
    r = file_read(ws, out, usize, t->data + start);
    goto out;
  }
  cbuf = malloc(csize);
  if (!cbuf) {
    r = -ENOMEM;
    goto out;
  }
  r = file_read(ws, cbuf, csize, t->data + start);
  if (r < 0)
    goto out;
  r = decomp_get(ws, t->ctype, t->chunk_size, &dc);
  if (r < 0)
    goto out;
  if (wimlib_decompress(cbuf, csize, out, usize, dc->d) != 0) {
    r = -EIO;
    disk_set_error("%s: resource at %" PRIu64 ": chunk %" PRIu64 " of %" PRIu64
                   " does not decompress (%s, %" PRIu64 " bytes at file offset %" PRIu64 ")",
                   ws->path, res->offset, idx, t->nchunks, ctype_name(t->ctype), csize,
                   t->data + start);
    goto out;
  }
  stat_add(&ws->stats.chunks_decompressed, 1);
out:
  if (dc)
    decomp_put(ws, dc);
  free(cbuf);
  if (r < 0) {
    free(out);
    return r;
  }
  *data = out;
  *bytes = usize;
  return 0;
}

/* ---- reading ----------------------------------------------------------- */

int
wim_source_read(struct wim_source *ws, const struct wim_resource *res,
                uint64_t offset, void *buf, size_t count)
{
  const bool nowait = disk_nowait_reads();
  struct centry *te = NULL;
  const struct chunk_table *t;
  uint8_t *p = buf;
  int r = 0;

  if (res->offset > ws->file_size || res->size > ws->file_size - res->offset ||
      offset > res->uncompressed_size || count > res->uncompressed_size - offset ||
      (res->flags & ~WIM_RES_FLAGS)) {
    disk_set_error("%s: read of %zu bytes at %" PRIu64 " of resource at %" PRIu64
                   " (%" PRIu64 " bytes, %" PRIu64 " uncompressed, flags %#x): outside the "
                   "resource or the file (%" PRIu64 " bytes)", ws->path, count, offset,
                   res->offset, res->size, res->uncompressed_size, res->flags, ws->file_size);
    return -EINVAL;
  }
  if (count == 0)
    return 0;
  if (res->flags & WIM_RES_DAMAGED) {
    disk_set_error("%s: read of %zu bytes at %" PRIu64 " of the data at %" PRIu64
                   " (%" PRIu64 " bytes): damaged, its SHA-1 did not match when the "
                   "volume was built", ws->path, count, offset, res->offset,
                   res->uncompressed_size);
    return -EIO;
  }
  if (!(res->flags & (WIM_RES_COMPRESSED | WIM_RES_SOLID))) {
    if (res->size != res->uncompressed_size) {
      disk_set_error("%s: uncompressed resource at %" PRIu64 ": %" PRIu64
                     " bytes stored for %" PRIu64, ws->path, res->offset, res->size,
                     res->uncompressed_size);
      return -EIO;
    }
    r = file_read(ws, buf, count, res->offset + offset);
    if (r == 0)
      stat_add(&ws->stats.bytes_returned, count);
    return r;
  }

  r = cache_get(ws, res, TABLE_INDEX, table_load, NULL, 0, nowait, &te);
  if (r < 0)
    return r;
  t = te->data;
  /* The cache knows a resource by its offset: another description of it
   * (a bad map) must not index this table past its end. */
  if (t->usize != res->uncompressed_size || t->size != res->size || t->flags != res->flags) {
    disk_set_error("%s: resource at %" PRIu64 " described two ways (%" PRIu64 " bytes, %"
                   PRIu64 " uncompressed, flags %#x; then %" PRIu64 ", %" PRIu64 ", %#x)",
                   ws->path, res->offset, t->size, t->usize, t->flags, res->size,
                   res->uncompressed_size, res->flags);
    centry_put(ws, te);
    return -EIO;
  }
  while (count > 0) {
    uint64_t idx = offset / t->chunk_size, in = offset % t->chunk_size;
    uint64_t usize = idx + 1 < t->nchunks ? t->chunk_size
                                          : t->usize - idx * (uint64_t) t->chunk_size;
    struct centry *ce;
    size_t n;

    r = cache_get(ws, res, idx, chunk_load, t, usize, nowait, &ce);
    if (r < 0)
      break;
    n = ce->len - in;
    if (n > count)
      n = count;
    memcpy(p, (uint8_t *) ce->data + in, n);
    centry_put(ws, ce);
    p += n;
    offset += n;
    count -= n;
    stat_add(&ws->stats.bytes_returned, n);
  }
  centry_put(ws, te);
  return r;
}

void
wim_resource_of_blob(const struct wimlib_resource_entry *e, struct wim_resource *res,
                     uint64_t *offset)
{
  if (e->packed) {
    res->offset = e->raw_resource_offset_in_wim;
    res->size = e->raw_resource_compressed_size;
    res->uncompressed_size = e->raw_resource_uncompressed_size;
    res->flags = WIM_RES_SOLID | WIM_RES_COMPRESSED;
    *offset = e->offset;     /* for a packed blob: inside the solid resource */
  } else {
    res->offset = e->offset;
    res->size = e->compressed_size;
    res->uncompressed_size = e->uncompressed_size;
    res->flags = e->is_compressed ? WIM_RES_COMPRESSED : 0;
    *offset = 0;
  }
}

/* ---- open/close -------------------------------------------------------- */

int
wim_source_open(const char *path, const struct wim_source_opts *opts,
                struct wim_source **out)
{
  uint8_t hbuf[WIM_HEADER_SIZE];
  struct wim_source *ws = NULL;
  struct decomp *dc = NULL;
  struct stat st;
  ssize_t n;
  uint64_t limit = opts && opts->cache_bytes ? opts->cache_bytes : WIM_SOURCE_DEFAULT_CACHE;
  int r;

  *out = NULL;
  r = wimlib_global_init(0);
  if (r != 0) {
    disk_set_error("%s: wimlib: %s", path, wimlib_get_error_string(r));
    return -EIO;
  }
  ws = calloc(1, sizeof *ws);
  if (!ws || !(ws->path = strdup(path))) {
    free(ws);
    return -ENOMEM;
  }
  pthread_mutex_init(&ws->lock, NULL);
  pthread_cond_init(&ws->loaded, NULL);
  ws->cache_limit = limit;
  ws->fd = -1;
  ws->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (ws->fd < 0) {
    r = -errno;
    disk_set_error("%s: cannot open WIM: %s", path, strerror(errno));
    goto out;
  }
  if (fstat(ws->fd, &st) < 0) {
    r = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    r = -EINVAL;
    disk_set_error("%s: not a regular file", path);
    goto out;
  }
  ws->file_size = (uint64_t) st.st_size;
  do
    n = pread(ws->fd, hbuf, sizeof hbuf, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    r = -errno;
    disk_set_error("%s: read: %s", path, strerror(errno));
    goto out;
  }
  r = wim_header_parse(hbuf, (size_t) n, path, &ws->hdr);
  if (r < 0)
    goto out;
  /* Buckets for about one entry per 32 KiB of cache. */
  ws->nbuckets = 1024;
  while (ws->nbuckets < (1u << 20) && ws->nbuckets < limit / 32768)
    ws->nbuckets <<= 1;
  ws->buckets = calloc(ws->nbuckets, sizeof *ws->buckets);
  if (!ws->buckets) {
    r = -ENOMEM;
    goto out;
  }
  /* One decompressor made now checks the type and, with wimlib's global
   * init above, does its set-up before the server's sandbox. */
  if (ws->hdr.compression != WIMLIB_COMPRESSION_TYPE_NONE) {
    r = decomp_get(ws, ws->hdr.compression, ws->hdr.chunk_size, &dc);
    if (r < 0)
      goto out;
    decomp_put(ws, dc);
  }
  *out = ws;
  ws = NULL;
out:
  wim_source_close(ws);
  return r;
}

void
wim_source_close(struct wim_source *ws)
{
  if (!ws)
    return;
  for (size_t i = 0; ws->buckets && i < ws->nbuckets; i++) {
    struct centry *e = ws->buckets[i];
    while (e) {
      struct centry *next = e->hnext;
      centry_free(e);
      e = next;
    }
  }
  while (ws->pool) {
    struct decomp *dc = ws->pool;
    ws->pool = dc->next;
    wimlib_free_decompressor(dc->d);
    free(dc);
  }
  if (ws->fd >= 0)
    close(ws->fd);
  pthread_mutex_destroy(&ws->lock);
  pthread_cond_destroy(&ws->loaded);
  free(ws->buckets);
  free(ws->path);
  free(ws);
}

const struct wim_header_info *
wim_source_header(const struct wim_source *ws)
{
  return &ws->hdr;
}

void
wim_source_get_stats(struct wim_source *ws, struct wim_source_stats *out)
{
  out->file_bytes_read = __atomic_load_n(&ws->stats.file_bytes_read, __ATOMIC_RELAXED);
  out->chunks_decompressed = __atomic_load_n(&ws->stats.chunks_decompressed, __ATOMIC_RELAXED);
  out->cache_hits = __atomic_load_n(&ws->stats.cache_hits, __ATOMIC_RELAXED);
  out->bytes_returned = __atomic_load_n(&ws->stats.bytes_returned, __ATOMIC_RELAXED);
}
