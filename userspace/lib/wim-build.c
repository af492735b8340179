/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-build.c - the metadata-only NTFS volume of a WIM image and its map.
 *
 * One pass over wimlib_iterate_dir_tree(RECURSIVE | RESOURCES_NEEDED),
 * which visits a directory before its children: each entry is made in its
 * parent, the parent kept open while its entries come one after another.
 * Directories get their attributes and times in a last pass (creating
 * entries and DOS names change a directory's times, and a compressed
 * directory would compress its new children's data).
 *
 * Data: ntfs_attr_truncate_solid() sizes a data attribute.  If ntfs-3g keeps
 * it resident (it fits the MFT record) its bytes are read from the WIM now
 * and written.  Otherwise ntfs-3g allocated real clusters (no holes) without
 * writing them and left the initialized size at 0; we raise the initialized
 * size to the data size in the attribute record, so readers take the bytes
 * from the device, and put the runlist into the map.
 *
 * A sparse file's data is read now (in pieces): its all-zero clusters
 * become holes of the attribute (ntfs_attr_truncate() makes the whole
 * attribute one hole), clusters are allocated (not written) for the rest
 * and only those go into the map.  Data read whole (resident data,
 * reparse data) is checked against the blob's SHA-1: damaged resident data
 * is mapped to a WIM_RES_DAMAGED resource, so that file reads EIO.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <nettle/sha1.h>
#include <wimlib.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/cache.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/lcnalloc.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/object_id.h>
#include <ntfs-3g/param.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/runlist.h>
#include <ntfs-3g/security.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

#include "disk.h"
#include "dism-error.h"
#include "utf16.h"
#include "wim-build.h"
#include "wim-map.h"
#include "wim-source.h"

/* 100 ns intervals between 1601-01-01 and 1970-01-01. */
#define NTFS_EPOCH_OFFSET 116444736000000000ull
#define REPARSE_MAX 16384u
/* Sparse files are scanned for zero clusters in pieces of this size. */
#define SCAN_PIECE (1u << 20)

/* A directory made: its attributes and times are set once all entries
 * are in (creating entries and DOS names change a directory's times, and a
 * compressed directory would compress its new children's data). */
struct made_dir {
  uint64_t mft;
  uint32_t attributes;
  uint64_t times[3];
  char *path;                    /* for messages */
};

/* ntfs-3g sets a DOS name only on a file with one link: a hard-link group
 * with a DOS-named alias is created through that alias, and the names met
 * before it wait here. */
struct pending_link {
  uint64_t group, parent;
  ntfschar name[255];
  uint8_t len;
  bool done;
  char *path;
};

/* Small data and reparse data of a solid resource, written after the walk
 * in the order of the resource's data: in walk order, reads would jump
 * between 64 MiB LZMS chunks and thrash the chunk cache. */
struct deferred {
  uint64_t mft;
  struct wimlib_resource_entry re;
  uint32_t reparse_tag;          /* reparse data (else 0: a data stream) */
  ntfschar name[255];
  uint8_t name_len;
  char *path;
};

struct u64map {                  /* open addressing; key 0 kept aside */
  uint64_t *keys, *vals;
  size_t cap, used;
  bool has_zero;
  uint64_t zero;
};

struct build {
  const char *wim;
  ntfs_volume *vol;
  struct wim_source *ws;
  struct SECURITY_CONTEXT scx;
  uint32_t cluster;

  struct wim_resource *res;
  uint32_t nres, capres;
  struct u64map res_by_offset;   /* WIM offset -> index */

  struct wim_map_extent *ext;
  uint64_t next, capext;

  struct u64map links;           /* hard_link_group_id -> MFT number */
  struct u64map dos_groups;      /* hard-link groups with a DOS-named alias */
  struct pending_link *pend;     /* names of such groups met before that alias */
  size_t npend, cappend, pend_left;

  struct made_dir *dirs;          /* every directory, in walk order */
  size_t ndirs, capdirs;
  uint64_t *parents;             /* MFT number of the directory at each depth */
  size_t capparents, ndepth;     /* parents[0 .. ndepth - 1] hold the current path */
  /* The one directory kept open: the parent of the entries being made.
   * Only one: libntfs-3g opens a parent itself when an inode's names must
   * be synced, and two in-memory copies of a directory would lose writes. */
  ntfs_inode *dir;

  struct deferred *defer;
  size_t ndefer, capdefer;
  bool writing_deferred;

  uint8_t *buf;                  /* resident data and reparse buffers */
  size_t bufcap;

  dism_wim_progress_fn progress;
  void *opaque;
  uint64_t total, done;
  unsigned last_percent;
  bool cancelled;

  struct dism_wim_build_stats st;
  int rc;
};

/* ---- small tables ----------------------------------------------------------- */
static uint64_t
mix(uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static int
u64map_grow(struct u64map *m)
{
  size_t cap = m->cap ? m->cap * 2 : 1024;
  uint64_t *k = calloc(cap, sizeof *k), *v = calloc(cap, sizeof *v);
  if (!k || !v) {
    free(k);
    free(v);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i])
      continue;
    size_t j = mix(m->keys[i]) & (cap - 1);
    while (k[j])
      j = (j + 1) & (cap - 1);
    k[j] = m->keys[i];
    v[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = k, m->vals = v, m->cap = cap;
  return 0;
}

/* *slot: the value slot of key (new: *found false, value 0). */
static int
u64map_slot(struct u64map *m, uint64_t key, uint64_t **slot, bool *found)
{
  if (key == 0) {
    *found = m->has_zero;
    if (!m->has_zero)
      m->zero = 0;
    m->has_zero = true;
    *slot = &m->zero;
    return 0;
  }
  if ((m->used + 1) * 4 > m->cap * 3) {
    int rc = u64map_grow(m);
    if (rc < 0)
      return rc;
  }
  size_t j = mix(key) & (m->cap - 1);
  while (m->keys[j] && m->keys[j] != key)
    j = (j + 1) & (m->cap - 1);
  *found = m->keys[j] == key;
  if (!*found) {
    m->keys[j] = key;
    m->vals[j] = 0;
    m->used++;
  }
  *slot = &m->vals[j];
  return 0;
}

static bool
u64map_find(struct u64map *m, uint64_t key, uint64_t **val)
{
  if (key == 0) {
    *val = &m->zero;
    return m->has_zero;
  }
  if (!m->cap)
    return false;
  size_t j = mix(key) & (m->cap - 1);
  while (m->keys[j] && m->keys[j] != key)
    j = (j + 1) & (m->cap - 1);
  if (m->keys[j] != key)
    return false;
  *val = &m->vals[j];
  return true;
}

static void
u64map_free(struct u64map *m)
{
  free(m->keys);
  free(m->vals);
}

/* ---- the volume through a write-back page cache ----------------------------------- */
/* libntfs-3g writes every MFT record, index block and bitmap change with a
 * pwrite of its own and reads them back with preads: ~8 syscalls per file,
 * half of a build's time.  The volume is new and only its metadata is
 * touched, so its pages stay in memory until ntfs-3g syncs the device; then
 * the dirty ones go out sorted, adjacent pages in one pwritev. */
#define CPAGE 4096u
#define CSLAB 256u                 /* pages per allocation */
#define CMAX (65536u)              /* pages kept (256 MiB): then written and dropped */

struct cdev {
  int fd;
  uint64_t size, pos;
  struct u64map index;             /* page number -> slot */
  uint64_t *pageno;                /* per slot */
  uint8_t *dirty;                  /* per slot */
  size_t nslots, capslots;
  uint8_t **slabs;                 /* slot n: slabs[n / CSLAB] + (n % CSLAB) * CPAGE */
  size_t nslabs;
};

static uint8_t *
cdev_mem(const struct cdev *c, size_t slot)
{
  return c->slabs[slot / CSLAB] + (slot % CSLAB) * CPAGE;
}

static int
cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* Write the dirty pages, sorted, runs of adjacent pages in one pwritev. */
static int
cdev_flush(struct cdev *c)
{
  size_t n = 0;
  uint64_t *keys = malloc((c->nslots + 1) * sizeof *keys);
  if (!keys) {
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < c->nslots; i++)
    if (c->dirty[i])
      keys[n++] = c->pageno[i];
  qsort(keys, n, sizeof *keys, cmp_u64);
  int rc = 0;
  struct iovec iov[256];
  for (size_t i = 0; i < n && rc == 0;) {
    size_t k = 0;
    uint64_t first = keys[i];
    while (i < n && k < 256 && keys[i] == first + k) {
      uint64_t *v;
      u64map_find(&c->index, keys[i], &v);
      iov[k].iov_base = cdev_mem(c, (size_t) *v);
      iov[k].iov_len = CPAGE;
      c->dirty[*v] = 0;
      k++, i++;
    }
    size_t want = k * CPAGE, done = 0;
    struct iovec *p = iov;
    int cnt = (int) k;
    while (done < want) {
      ssize_t w = pwritev(c->fd, p, cnt, (off_t) (first * CPAGE + done));
      if (w <= 0) {
        rc = -1;
        break;
      }
      done += (size_t) w;
      while (cnt && (size_t) w >= p->iov_len) {
        w -= (ssize_t) p->iov_len;
        p++, cnt--;
      }
      if (cnt) {
        p->iov_base = (uint8_t *) p->iov_base + w;
        p->iov_len -= (size_t) w;
      }
    }
  }
  free(keys);
  return rc;
}

/* The cached page pg (read from the file first if load), its slot in *slot. */
static uint8_t *
cdev_page(struct cdev *c, uint64_t pg, bool load, size_t *slot)
{
  uint64_t *v;
  if (u64map_find(&c->index, pg, &v)) {
    *slot = (size_t) *v;
    return cdev_mem(c, *slot);
  }
  if (c->nslots == CMAX) {     /* bound the memory: write out, start again */
    if (cdev_flush(c) < 0)
      return NULL;
    if (c->index.cap)
      memset(c->index.keys, 0, c->index.cap * sizeof *c->index.keys);
    c->index.used = 0;
    c->index.has_zero = false;
    c->nslots = 0;
  }
  if (c->nslots == c->capslots) {
    size_t cap = c->capslots ? c->capslots * 2 : 1024;
    uint64_t *p = realloc(c->pageno, cap * sizeof *p);
    if (!p)
      goto nomem;
    c->pageno = p;
    uint8_t *d = realloc(c->dirty, cap);
    if (!d)
      goto nomem;
    c->dirty = d;
    c->capslots = cap;
  }
  if (c->nslots == c->nslabs * CSLAB) {
    uint8_t **s = realloc(c->slabs, (c->nslabs + 1) * sizeof *s);
    if (!s)
      goto nomem;
    c->slabs = s;
    if (!(c->slabs[c->nslabs] = malloc((size_t) CSLAB * CPAGE)))
      goto nomem;
    c->nslabs++;
  }
  size_t n = c->nslots;
  uint8_t *page = cdev_mem(c, n);
  if (load) {
    ssize_t r = pread(c->fd, page, CPAGE, (off_t) (pg * CPAGE));
    if (r < 0)
      return NULL;
    memset(page + r, 0, CPAGE - (size_t) r);
  }
  bool found;
  if (u64map_slot(&c->index, pg, &v, &found) < 0)
    goto nomem;
  *v = n;
  c->pageno[n] = pg;
  c->dirty[n] = 0;
  c->nslots++;
  *slot = n;
  return page;
nomem:
  errno = ENOMEM;
  return NULL;
}

static s64
cdev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset)
{
  struct cdev *c = dev->d_private;
  if (count < 0 || offset < 0) {
    errno = EINVAL;
    return -1;
  }
  uint8_t *out = buf;
  uint64_t off = (uint64_t) offset, left = (uint64_t) count;
  while (left) {
    size_t slot, in = off % CPAGE, n = CPAGE - in < left ? CPAGE - in : (size_t) left;
    uint8_t *page = cdev_page(c, off / CPAGE, true, &slot);
    if (!page)
      return -1;
    memcpy(out, page + in, n);
    out += n, off += n, left -= n;
  }
  return count;
}

static s64
cdev_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset)
{
  struct cdev *c = dev->d_private;
  if (count < 0 || offset < 0) {
    errno = EINVAL;
    return -1;
  }
  const uint8_t *in_buf = buf;
  uint64_t off = (uint64_t) offset, left = (uint64_t) count;
  while (left) {
    size_t slot, in = off % CPAGE, n = CPAGE - in < left ? CPAGE - in : (size_t) left;
    uint8_t *page = cdev_page(c, off / CPAGE, n != CPAGE, &slot);
    if (!page)
      return -1;
    memcpy(page + in, in_buf, n);
    c->dirty[slot] = 1;
    in_buf += n, off += n, left -= n;
  }
  NDevSetDirty(dev);
  return count;
}

static s64
cdev_seek(struct ntfs_device *dev, s64 offset, int whence)
{
  struct cdev *c = dev->d_private;
  s64 base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (s64) c->pos :
             whence == SEEK_END ? (s64) c->size : -1;
  if (base < 0 || base + offset < 0) {
    errno = EINVAL;
    return -1;
  }
  c->pos = (uint64_t) (base + offset);
  return (s64) c->pos;
}

static s64
cdev_read(struct ntfs_device *dev, void *buf, s64 count)
{
  struct cdev *c = dev->d_private;
  s64 n = cdev_pread(dev, buf, count, (s64) c->pos);
  if (n > 0)
    c->pos += (uint64_t) n;
  return n;
}

static s64
cdev_write(struct ntfs_device *dev, const void *buf, s64 count)
{
  struct cdev *c = dev->d_private;
  s64 n = cdev_pwrite(dev, buf, count, (s64) c->pos);
  if (n > 0)
    c->pos += (uint64_t) n;
  return n;
}

static int
cdev_sync(struct ntfs_device *dev)
{
  struct cdev *c = dev->d_private;
  if (cdev_flush(c) < 0 || fsync(c->fd) < 0)
    return -1;
  NDevClearDirty(dev);
  return 0;
}

static int
cdev_open(struct ntfs_device *dev, int flags)
{
  (void) flags;
  NDevSetOpen(dev);
  return 0;
}

static int
cdev_close(struct ntfs_device *dev)
{
  int rc = NDevDirty(dev) ? cdev_sync(dev) : 0;
  NDevClearOpen(dev);
  return rc;
}

static int
cdev_stat(struct ntfs_device *dev, struct stat *st)
{
  struct cdev *c = dev->d_private;
  return fstat(c->fd, st);
}

static int
cdev_ioctl(struct ntfs_device *dev, unsigned long request, void *argp)
{
  (void) dev, (void) request, (void) argp;
  errno = ENOTTY;
  return -1;
}

static struct ntfs_device_operations cdev_ops = {
  .open = cdev_open, .close = cdev_close, .seek = cdev_seek, .read = cdev_read,
  .write = cdev_write, .pread = cdev_pread, .pwrite = cdev_pwrite, .sync = cdev_sync,
  .stat = cdev_stat, .ioctl = cdev_ioctl,
};

static void
cdev_free(struct cdev *c)
{
  for (size_t i = 0; i < c->nslabs; i++)
    free(c->slabs[i]);
  free(c->slabs);
  free(c->pageno);
  free(c->dirty);
  u64map_free(&c->index);
  if (c->fd >= 0)
    close(c->fd);
}

static int
fail(struct build *b, int rc, const char *path, const char *msg, const char *what)
{
  if (b->rc == 0) {
    b->rc = rc;
    dism_set_error("%s: image file %s: %s%s%s", b->wim, path ? path : "/", msg,
                   what ? ": " : "", what ? what : "");
  }
  return rc;
}

static int
fail_errno(struct build *b, const char *path, const char *what)
{
  int e = errno ? errno : EIO;
  return fail(b, -e, path, what, strerror(e));
}

/* ---- resources and the map ---------------------------------------------------- */
/* Its index in the map's resource table (added once: keyed by offset). */
static int
map_resource(struct build *b, const struct wim_resource *r, uint32_t *idx)
{
  uint64_t *slot;
  bool found;
  /* A damaged blob's resource is an entry of its own (a solid resource
   * holds good blobs too); offsets are below 2^63, so ~offset is free. */
  uint64_t key = r->flags & WIM_RES_DAMAGED ? ~r->offset : r->offset;
  int rc = u64map_slot(&b->res_by_offset, key, &slot, &found);
  if (rc < 0)
    return rc;
  if (found) {
    *idx = (uint32_t) *slot;
    return 0;
  }
  if (b->nres == UINT32_MAX)
    return -EOVERFLOW;
  if (b->nres == b->capres) {
    uint32_t cap = b->capres ? b->capres * 2 : 256;
    struct wim_resource *n = realloc(b->res, cap * sizeof *n);
    if (!n)
      return -ENOMEM;
    b->res = n, b->capres = cap;
  }
  b->res[b->nres] = *r;
  *slot = b->nres;
  *idx = b->nres++;
  return 0;
}

static int
add_extent(struct build *b, uint64_t voff, uint64_t len, uint32_t res, uint64_t roff,
           uint32_t mft)
{
  if (b->next) {               /* continues the previous one? */
    struct wim_map_extent *p = &b->ext[b->next - 1];
    if (p->resource == res && p->mft_record == mft && p->volume_offset + p->length == voff &&
        p->resource_offset + p->length == roff) {
      p->length += len;
      return 0;
    }
  }
  if (b->next == b->capext) {
    uint64_t cap = b->capext ? b->capext * 2 : 4096;
    struct wim_map_extent *n = realloc(b->ext, cap * sizeof *n);
    if (!n)
      return -ENOMEM;
    b->ext = n, b->capext = cap;
  }
  b->ext[b->next++] = (struct wim_map_extent) {
    .volume_offset = voff, .length = len, .resource_offset = roff, .resource = res,
    .mft_record = mft,
  };
  return 0;
}

static int
cmp_extent(const void *a, const void *c)
{
  const struct wim_map_extent *x = a, *y = c;
  return x->volume_offset < y->volume_offset ? -1 : x->volume_offset > y->volume_offset;
}

static uint8_t *
buffer(struct build *b, size_t n)
{
  if (n > b->bufcap) {
    size_t cap = n < 65536 ? 65536 : n;
    uint8_t *p = realloc(b->buf, cap);
    if (!p)
      return NULL;
    b->buf = p, b->bufcap = cap;
  }
  return b->buf;
}

/* Whether n bytes read whole match the blob's SHA-1 (an unknown SHA-1, all
 * zero, is not checked). */
static bool
sha1_matches(const struct wimlib_resource_entry *re, const void *data, size_t n)
{
  static const uint8_t unknown[SHA1_DIGEST_SIZE];
  uint8_t digest[SHA1_DIGEST_SIZE];
  struct sha1_ctx ctx;
  if (!memcmp(re->sha1_hash, unknown, sizeof unknown))
    return true;
  sha1_init(&ctx);
  sha1_update(&ctx, n, data);
  sha1_digest(&ctx, sizeof digest, digest);
  return !memcmp(digest, re->sha1_hash, sizeof digest);
}

/* The blob's bytes, read from the WIM now (reparse data), checked. */
static int
read_blob(struct build *b, const struct wimlib_resource_entry *re, void *out, const char *path)
{
  struct wim_resource r;
  uint64_t off;
  wim_resource_of_blob(re, &r, &off);
  int rc = wim_source_read(b->ws, &r, off, out, re->uncompressed_size);
  if (rc < 0)
    return fail(b, rc, path, "cannot read its data from the WIM", disk_last_error());
  if (!sha1_matches(re, out, re->uncompressed_size))
    return fail(b, -EUCLEAN, path, "its data does not match its SHA-1 in the WIM", NULL);
  return 0;
}

/* ---- sparse files ------------------------------------------------------------------ */
struct crun {                    /* clusters with data: [vcn, vcn + len) */
  uint64_t vcn, len;
};

static bool
all_zero(const uint8_t *p, size_t n)
{
  return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* The runs of clusters of a blob that are not all zero, read through the
 * WIM source in pieces.  -EIO: the data is damaged (the caller maps it as
 * is, so it reads EIO).  *runs is the caller's to free. */
static int
scan_sparse(struct build *b, const struct wimlib_resource_entry *re, struct crun **runs,
            size_t *nruns)
{
  const uint64_t size = re->uncompressed_size, cs = b->cluster;
  /* whole clusters per piece (clusters are powers of two up to 2 MiB) */
  const size_t plen = cs > SCAN_PIECE ? (size_t) cs : SCAN_PIECE;
  struct wim_resource r;
  uint64_t base;
  size_t n = 0, cap = 0;
  struct crun *v = NULL;
  int rc = 0;
  uint8_t *piece = malloc(plen);
  if (!piece) {
    rc = -ENOMEM;
    goto out;
  }
  wim_resource_of_blob(re, &r, &base);
  for (uint64_t pos = 0; pos < size; pos += plen) {
    size_t len = size - pos < plen ? (size_t) (size - pos) : plen;
    rc = wim_source_read(b->ws, &r, base + pos, piece, len);
    if (rc < 0)
      goto out;
    for (size_t o = 0; o < len; o += cs) {
      size_t c = len - o < cs ? len - o : cs;
      if (all_zero(piece + o, c))
        continue;
      uint64_t vcn = (pos + o) / cs;
      if (n && v[n - 1].vcn + v[n - 1].len == vcn) {
        v[n - 1].len++;
        continue;
      }
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        struct crun *nv = realloc(v, ncap * sizeof *nv);
        if (!nv) {
          rc = -ENOMEM;
          goto out;
        }
        v = nv, cap = ncap;
      }
      v[n++] = (struct crun) { vcn, 1 };
    }
  }
out:
  free(piece);
  if (rc < 0) {
    free(v);
    v = NULL, n = 0;
  }
  *runs = v, *nruns = n;
  return rc;
}

/* Clusters (allocated, not written) for the runs with data of a sparse
 * attribute that is one hole: ntfs-3g flags it sparse and keeps the
 * compressed size (the allocated bytes) when it writes the runlist. */
static int
fill_runs(struct build *b, ntfs_attr *na, const struct crun *runs, size_t nruns,
          const char *path)
{
  LCN hint = -1;
  if (ntfs_attr_map_whole_runlist(na))
    return fail_errno(b, path, "cannot read back its runlist");
  for (size_t i = 0; i < nruns; i++) {
    runlist_element *rl = ntfs_cluster_alloc(b->vol, (VCN) runs[i].vcn, (s64) runs[i].len,
                                             hint, DATA_ZONE);
    if (!rl)
      return fail_errno(b, path, "cannot allocate its data in the volume");
    runlist_element *last = rl;
    while (last[1].length)
      last++;
    hint = last->lcn + last->length;
    runlist_element *merged = ntfs_runlists_merge(na->rl, rl);
    if (!merged) {
      int e = errno ? errno : EIO;
      free(rl);
      return fail(b, -e, path, "cannot add clusters to its runlist", strerror(e));
    }
    na->rl = merged;
  }
  NAttrSetRunlistDirty(na);
  if (ntfs_attr_update_mapping_pairs(na, 0))
    return fail_errno(b, path, "cannot write its runlist");
  return 0;
}

/* ---- data attributes ------------------------------------------------------------ */
/* The attribute record's initialized size = its data size: ntfs-3g expanded
 * the attribute with clusters it did not write, and a reader must take them
 * from the device rather than return zeroes. */
static int
set_initialized(ntfs_attr *na)
{
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(na->ni, NULL);
  if (!ctx)
    return -ENOMEM;
  int rc = 0;
  if (ntfs_attr_lookup(na->type, na->name, na->name_len, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
    rc = errno ? -errno : -EIO;
  } else {
    ctx->attr->initialized_size = cpu_to_sle64(na->data_size);
    ntfs_inode_mark_dirty(ctx->ntfs_ino);
    na->initialized_size = na->data_size;
  }
  ntfs_attr_put_search_ctx(ctx);
  return rc;
}

/* A sparse file of the WIM stays a sparse file: its data attribute is
 * flagged sparse (with the compressed size such a record carries) though
 * every cluster is allocated, as Windows has it for a sparse file without
 * zeroed ranges.  ntfs-3g has no call for that: the record is edited.  No
 * room in the record: it stays a plain file (its bytes are the same). */
static int
mark_sparse(ntfs_attr *na)
{
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(na->ni, NULL);
  if (!ctx)
    return -ENOMEM;
  int rc = 0;
  if (ntfs_attr_lookup(na->type, na->name, na->name_len, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
    rc = errno ? -errno : -EIO;
    goto out;
  }
  ATTR_RECORD *a = ctx->attr;
  if (!a->non_resident)
    goto out;
  if (!(a->flags & (ATTR_IS_SPARSE | ATTR_IS_COMPRESSED))) {
    /* compressed_size goes at 0x40, before the name and mapping pairs */
    uint32_t len = le32_to_cpu(a->length);
    if (len < 0x40 || ntfs_attr_record_resize(ctx->mrec, a, len + 8))
      goto out;
    memmove((uint8_t *) a + 0x48, (uint8_t *) a + 0x40, len - 0x40);
    if (a->name_length)
      a->name_offset = cpu_to_le16(le16_to_cpu(a->name_offset) + 8);
    a->mapping_pairs_offset = cpu_to_le16(le16_to_cpu(a->mapping_pairs_offset) + 8);
  }
  a->flags |= ATTR_IS_SPARSE;
  a->compression_unit = STANDARD_COMPRESSION_UNIT;
  a->compressed_size = a->allocated_size;
  ntfs_inode_mark_dirty(ctx->ntfs_ino);
  if (na->type == AT_DATA && na->name_len == 0) {
    na->ni->flags |= FILE_ATTR_SPARSE_FILE;
    NInoFileNameSetDirty(na->ni);
    ntfs_inode_mark_dirty(na->ni);
  }
out:
  ntfs_attr_put_search_ctx(ctx);
  return rc;
}

/* A non-resident data attribute whose clusters were allocated and not
 * written: readers go to the device, the map says what is there.  holes:
 * the attribute has real holes (a sparse file's zero clusters), which stay
 * out of the map.  damaged: its data did not match its SHA-1, it is mapped
 * to a WIM_RES_DAMAGED resource. */
static int
map_data(struct build *b, ntfs_attr *na, const struct wimlib_resource_entry *re, bool sparse,
         bool holes, bool damaged, const char *path)
{
  uint64_t size = re->uncompressed_size;
  int rc = 0;
  if (ntfs_attr_map_whole_runlist(na)) {
    rc = fail_errno(b, path, "cannot read back its runlist");
    goto out;
  }
  rc = set_initialized(na);
  if (rc < 0) {
    fail(b, rc, path, "cannot set its initialized size", strerror(-rc));
    goto out;
  }
  if (sparse && !holes && (rc = mark_sparse(na)) < 0) {
    fail(b, rc, path, "cannot mark it sparse", strerror(-rc));
    goto out;
  }
  struct wim_resource r;
  uint32_t idx;
  uint64_t blob_off;
  wim_resource_of_blob(re, &r, &blob_off);
  if (damaged)
    r.flags |= WIM_RES_DAMAGED;
  rc = map_resource(b, &r, &idx);
  if (rc < 0) {
    fail(b, rc, path, "out of memory", NULL);
    goto out;
  }
  uint64_t cs = b->cluster;
  for (runlist_element *run = na->rl; run && run->length; run++) {
    uint64_t start = (uint64_t) run->vcn * cs;
    if (start >= size)
      break;
    if (run->lcn == LCN_HOLE && holes)
      continue;
    if (run->lcn < 0) {          /* allocation without holes: never expected */
      rc = fail(b, -EIO, path, "ntfs-3g left a hole in its data", NULL);
      goto out;
    }
    uint64_t len = (uint64_t) run->length * cs;
    if (len > size - start)
      len = size - start;
    rc = add_extent(b, (uint64_t) run->lcn * cs, len, idx, blob_off + start,
                    (uint32_t) na->ni->mft_no);
    if (rc < 0) {
      fail(b, rc, path, "out of memory", NULL);
      goto out;
    }
    b->st.mapped_bytes += len;
  }
out:
  return rc;
}

static int
defer_data(struct build *b, uint64_t mft, const ntfschar *name, uint8_t name_len,
           const struct wimlib_resource_entry *re, uint32_t reparse_tag, const char *path)
{
  if (b->ndefer == b->capdefer) {
    size_t cap = b->capdefer ? b->capdefer * 2 : 1024;
    struct deferred *n = realloc(b->defer, cap * sizeof *n);
    if (!n)
      return fail(b, -ENOMEM, path, "out of memory", NULL);
    b->defer = n, b->capdefer = cap;
  }
  struct deferred *d = &b->defer[b->ndefer];
  d->mft = mft;
  d->re = *re;
  d->reparse_tag = reparse_tag;
  d->name_len = name_len;
  if (name_len)
    memcpy(d->name, name, name_len * sizeof *name);
  if (!(d->path = strdup(path)))
    return fail(b, -ENOMEM, path, "out of memory", NULL);
  b->ndefer++;
  return 0;
}

static int
put_data(struct build *b, ntfs_inode *ni, ntfschar *name, u32 name_len,
         const struct wimlib_resource_entry *re, bool sparse, const char *path)
{
  uint64_t size = re->uncompressed_size;
  struct crun *runs = NULL;
  size_t nruns = 0;
  bool holes = false, damaged = false;
  ntfs_attr *na = NULL;
  int rc = 0;
  if (re->is_missing)
    return fail(b, -EUCLEAN, path, "its data is missing from the WIM", NULL);
  if (size > (uint64_t) INT64_MAX / 2)
    return fail(b, -EUCLEAN, path, "impossible data size", NULL);
  if (sparse && size > b->vol->mft_record_size) {
    /* Too large for the MFT record: find the clusters that hold data.  A
     * damaged blob is mapped whole (it reads EIO). */
    rc = scan_sparse(b, re, &runs, &nruns);
    if (rc < 0 && rc != -EIO) {
      fail(b, rc, path, "cannot read its data from the WIM", disk_last_error());
      goto out;
    }
    uint64_t clusters = (size + b->cluster - 1) / b->cluster;
    holes = rc == 0 && !(nruns == 1 && runs[0].vcn == 0 && runs[0].len == clusters);
    rc = 0;
  }
  na = ntfs_attr_open(ni, AT_DATA, name ? name : AT_UNNAMED, name_len);
  if (!na) {
    rc = fail_errno(b, path, "cannot open its data attribute in the volume");
    goto out;
  }
  if (holes ? ntfs_attr_truncate(na, (s64) size) : ntfs_attr_truncate_solid(na, (s64) size)) {
    rc = fail_errno(b, path, "cannot allocate its data in the volume");
    goto out;
  }
  if (!NAttrNonResident(na) && re->packed && !b->writing_deferred) {
    rc = defer_data(b, ni->mft_no, name, (uint8_t) name_len, re, 0, path);
    goto out;
  }
  if (!NAttrNonResident(na)) {
    /* ntfs-3g kept it in the MFT record: the bytes go there now. */
    holes = false;
    uint8_t *p = buffer(b, size);
    if (!p) {
      rc = fail(b, -ENOMEM, path, "out of memory", NULL);
      goto out;
    }
    struct wim_resource r;
    uint64_t off;
    wim_resource_of_blob(re, &r, &off);
    rc = wim_source_read(b->ws, &r, off, p, size);
    if (rc == 0 && !sha1_matches(re, p, size)) {
      /* Wrong bytes: the file reads EIO through the server, never them. */
      damaged = true;
      rc = -EIO;
    }
    if (rc == -EIO) {
      /* A damaged blob: map it like large data, so this file reads EIO
       * through the server and the rest of the image still mounts. */
      if (ntfs_attr_force_non_resident(na)) {
        rc = fail_errno(b, path, "cannot move its data out of the MFT record");
        goto out;
      }
      b->st.damaged++;
      rc = 0;
    } else if (rc < 0) {
      fail(b, rc, path, "cannot read its data from the WIM", disk_last_error());
      goto out;
    } else {
      if (ntfs_attr_pwrite(na, 0, (s64) size, p) != (s64) size) {
        rc = fail_errno(b, path, "cannot write its data into the volume");
        goto out;
      }
      b->st.resident_bytes += size;
      goto out;
    }
  }
  if (holes && (rc = fill_runs(b, na, runs, nruns, path)) < 0)
    goto out;
  rc = map_data(b, na, re, sparse, holes, damaged, path);
out:
  if (na)
    ntfs_attr_close(na);
  free(runs);
  return rc;
}

/* ---- per entry ------------------------------------------------------------------- */
static uint64_t
wim_ntfs_time(const struct wimlib_timespec *t)
{
  return (uint64_t) ((int64_t) t->tv_sec * 10000000 + t->tv_nsec / 100) + NTFS_EPOCH_OFFSET;
}

static int
name16(struct build *b, const char *utf8, ntfschar *out, const char *path)
{
  int n = dism_utf8_to_utf16le(utf8, out, 255);
  if (n <= 0)
    return fail(b, n < 0 ? n : -EINVAL, path, "its name cannot be an NTFS name", NULL);
  return n;
}

static int
set_times(ntfs_inode *ni, const uint64_t t[3])
{
  le64 v[3] = { cpu_to_le64(t[0]), cpu_to_le64(t[1]), cpu_to_le64(t[2]) };
  return ntfs_inode_set_times(ni, (const char *) v, sizeof v, 0);
}

static int
set_attributes(ntfs_inode *ni, uint32_t attributes)
{
  /* ntfs-3g sets the reparse and directory bits itself; sparse and
   * encrypted describe data this volume does not hold that way. */
  le32 a = cpu_to_le32(attributes & ~(uint32_t) (FILE_ATTR_SPARSE_FILE | FILE_ATTR_ENCRYPTED));
  return ntfs_set_ntfs_attrib(ni, (const char *) &a, sizeof a, 0);
}

static int
close_dir(struct build *b)
{
  int rc = 0;
  if (b->dir && ntfs_inode_close(b->dir))
    rc = fail_errno(b, NULL, "cannot write a directory into the volume");
  b->dir = NULL;
  return rc;
}

/* b->dir = the directory mft, opened unless it is open already. */
static int
open_dir(struct build *b, uint64_t mft, const char *path)
{
  if (b->dir && b->dir->mft_no == mft)
    return 0;
  int rc = close_dir(b);
  if (rc < 0)
    return rc;
  b->dir = ntfs_inode_open(b->vol, mft);
  if (!b->dir)
    return fail_errno(b, path, "cannot open its directory in the volume");
  return 0;
}

static int
note_dir(struct build *b, uint64_t mft, const struct wimlib_dir_entry *de)
{
  if (b->ndirs == b->capdirs) {
    size_t cap = b->capdirs ? b->capdirs * 2 : 256;
    struct made_dir *n = realloc(b->dirs, cap * sizeof *n);
    if (!n)
      return fail(b, -ENOMEM, de->full_path, "out of memory", NULL);
    b->dirs = n, b->capdirs = cap;
  }
  if (de->depth >= b->capparents) {
    size_t cap = b->capparents ? b->capparents * 2 : 64;
    uint64_t *n = realloc(b->parents, cap * sizeof *n);
    if (!n)
      return fail(b, -ENOMEM, de->full_path, "out of memory", NULL);
    b->parents = n, b->capparents = cap;
  }
  b->parents[de->depth] = mft;
  b->ndepth = de->depth + 1;
  struct made_dir *d = &b->dirs[b->ndirs];
  *d = (struct made_dir) {
    .mft = mft, .attributes = de->attributes,
    .times = { wim_ntfs_time(&de->creation_time), wim_ntfs_time(&de->last_write_time),
               wim_ntfs_time(&de->last_access_time) },
    .path = strdup(de->full_path),
  };
  if (!d->path)
    return fail(b, -ENOMEM, de->full_path, "out of memory", NULL);
  b->ndirs++;
  b->st.dirs++;
  return 0;
}

/* Last: every directory's attributes and times. */
static int
finish_dirs(struct build *b)
{
  int rc = close_dir(b);
  for (size_t i = 0; i < b->ndirs && rc == 0; i++) {
    struct made_dir *d = &b->dirs[i];
    ntfs_inode *ni = ntfs_inode_open(b->vol, d->mft);
    if (!ni)
      return fail_errno(b, d->path, "cannot open it again");
    if (set_attributes(ni, d->attributes))
      rc = fail_errno(b, d->path, "cannot set its attributes");
    else if (set_times(ni, d->times))
      rc = fail_errno(b, d->path, "cannot set its times");
    if (ntfs_inode_close(ni) && rc == 0)
      rc = fail_errno(b, d->path, "cannot write it into the volume");
  }
  return rc;
}

/* The DOS name: ntfs_set_ntfs_dos_name() closes both inodes, whatever it
 * returns; *ni is opened again (and b->dir when next needed). */
static int
set_dos_name(struct build *b, ntfs_inode **ni, const struct wimlib_dir_entry *de,
             bool extra_link)
{
  uint64_t mft = (*ni)->mft_no;
  int r = ntfs_set_ntfs_dos_name(*ni, b->dir, de->dos_name, strlen(de->dos_name), 0);
  int e = errno;
  b->dir = NULL;
  *ni = ntfs_inode_open(b->vol, mft);
  if (!*ni)
    return fail_errno(b, de->full_path, "cannot open it again after setting its DOS name");
  /* A second DOS-named alias of one file: ntfs-3g keeps the first only,
   * as wimlib's apply does. */
  if (r && !(extra_link && e == EMLINK)) {
    errno = e;
    return fail_errno(b, de->full_path, "cannot set its DOS name");
  }
  return 0;
}

static bool
has_object_id(const struct wimlib_dir_entry *de)
{
  const uint8_t *p = (const uint8_t *) &de->object_id;
  for (size_t i = 0; i < sizeof de->object_id; i++)
    if (p[i])
      return true;
  return false;
}

/* Reparse data: the unnamed stream's blob behind the 8-byte header. */
static int
set_reparse(struct build *b, ntfs_inode *ni, uint32_t reparse_tag,
            const struct wimlib_resource_entry *re, const char *path)
{
  uint64_t n = re->uncompressed_size;
  if (n > REPARSE_MAX - 8)
    return fail(b, -EUCLEAN, path, "its reparse data is too large", NULL);
  uint8_t *p = buffer(b, 8 + n);
  if (!p)
    return fail(b, -ENOMEM, path, "out of memory", NULL);
  le32 tag = cpu_to_le32(reparse_tag);
  le16 len = cpu_to_le16((uint16_t) n);
  memcpy(p, &tag, 4);
  memcpy(p + 4, &len, 2);
  memset(p + 6, 0, 2);
  if (n) {
    if (re->is_missing)
      return fail(b, -EUCLEAN, path, "its reparse data is missing from the WIM", NULL);
    int rc = read_blob(b, re, p + 8, path);
    if (rc < 0)
      return rc;
  }
  if (ntfs_set_ntfs_reparse_data(ni, (const char *) p, 8 + n, 0))
    return fail_errno(b, path, "cannot set its reparse data");
  return 0;
}

/* Security descriptor, object id, reparse data, named streams and (files)
 * the unnamed data: everything but attributes and times. */
static int
set_contents(struct build *b, ntfs_inode *ni, const struct wimlib_dir_entry *de, bool is_dir)
{
  const char *path = de->full_path;
  if (de->security_descriptor && de->security_descriptor_size &&
      ntfs_set_ntfs_acl(&b->scx, ni, de->security_descriptor, de->security_descriptor_size, 0))
    return fail_errno(b, path, "cannot set its security descriptor");
  if (has_object_id(de) &&
      ntfs_set_ntfs_object_id(ni, (const char *) &de->object_id, sizeof de->object_id, 0))
    return fail_errno(b, path, "cannot set its object id");
  if (de->attributes & WIMLIB_FILE_ATTRIBUTE_ENCRYPTED)
    return fail(b, -EOPNOTSUPP, path, "encrypted files are not supported", NULL);
  const struct wimlib_resource_entry *unnamed = &de->streams[0].resource;
  bool sparse = de->attributes & WIMLIB_FILE_ATTRIBUTE_SPARSE_FILE;
  if (de->attributes & WIMLIB_FILE_ATTRIBUTE_REPARSE_POINT) {
    if (unnamed->uncompressed_size && unnamed->packed && !unnamed->is_missing &&
        de->reparse_tag) {
      int rc = defer_data(b, ni->mft_no, NULL, 0, unnamed, de->reparse_tag, path);
      if (rc < 0)
        return rc;
    } else {
      int rc = set_reparse(b, ni, de->reparse_tag, unnamed, path);
      if (rc < 0)
        return rc;
    }
  } else if (!is_dir && unnamed->uncompressed_size) {
    int rc = put_data(b, ni, NULL, 0, unnamed, sparse, path);
    if (rc < 0)
      return rc;
  }
  for (uint32_t i = 1; i <= de->num_named_streams; i++) {
    const struct wimlib_stream_entry *s = &de->streams[i];
    ntfschar name[256];
    int n = name16(b, s->stream_name, name, path);
    if (n < 0)
      return n;
    if (ntfs_attr_add(ni, AT_DATA, name, (u32) n, NULL, 0))
      return fail_errno(b, path, "cannot add a named stream");
    b->st.streams++;
    if (s->resource.uncompressed_size) {
      int rc = put_data(b, ni, name, (u32) n, &s->resource, sparse, path);
      if (rc < 0)
        return rc;
    }
  }
  return 0;
}

static void
tick(struct build *b)
{
  b->done++;
  if (!b->progress || (b->done & 255))
    return;
  uint64_t t = b->total > b->done ? b->total : b->done;
  unsigned pc = 5 + (unsigned) (90 * b->done / t);
  if (pc != b->last_percent) {
    b->last_percent = pc;
    if (b->progress(pc, b->opaque))
      b->cancelled = true;
  }
}

/* Close an entry made in b->dir: its names are synced through b->dir. */
static int
close_entry(struct build *b, ntfs_inode *ni, const char *path)
{
  int r = b->dir ? ntfs_inode_close_in_dir(ni, b->dir) : ntfs_inode_close(ni);
  return r ? fail_errno(b, path, "cannot write it into the volume") : 0;
}

/* Close a file just given one more name in b->dir.  ntfs_link made the
 * new index entry from the file as it is, and the other names' entries
 * were made or synced when they were; a sync through b->dir would look
 * every name up in b->dir, and names in other directories are not there
 * (EIO once the file has names in several directories). */
static int
close_link(struct build *b, ntfs_inode *ni, const char *path)
{
  NInoFileNameClearDirty(ni);
  return close_entry(b, ni, path);
}

static int
defer_link(struct build *b, const struct wimlib_dir_entry *de, const ntfschar *name, int n)
{
  if (b->npend == b->cappend) {
    size_t cap = b->cappend ? b->cappend * 2 : 64;
    struct pending_link *p = realloc(b->pend, cap * sizeof *p);
    if (!p)
      return fail(b, -ENOMEM, de->full_path, "out of memory", NULL);
    b->pend = p, b->cappend = cap;
  }
  struct pending_link *p = &b->pend[b->npend];
  p->group = de->hard_link_group_id;
  p->parent = b->parents[de->depth - 1];
  memcpy(p->name, name, (size_t) n * sizeof *name);
  p->len = (uint8_t) n;
  p->done = false;
  if (!(p->path = strdup(de->full_path)))
    return fail(b, -ENOMEM, de->full_path, "out of memory", NULL);
  b->npend++, b->pend_left++;
  tick(b);
  return 0;
}

/* The names of group gid that waited for it: linked to the file now made. */
static int
link_pending(struct build *b, uint64_t gid, uint64_t mft)
{
  for (size_t i = 0; i < b->npend; i++) {
    struct pending_link *p = &b->pend[i];
    if (p->done || p->group != gid)
      continue;
    if (open_dir(b, p->parent, p->path) < 0)
      return -1;
    ntfs_inode *ni = ntfs_inode_open(b->vol, mft);
    if (!ni)
      return fail_errno(b, p->path, "cannot open the file it links to");
    if (ntfs_link(ni, b->dir, p->name, p->len)) {
      fail_errno(b, p->path, "cannot link it");
      ntfs_inode_close(ni);
      return -1;
    }
    if (close_link(b, ni, p->path) < 0)
      return -1;
    p->done = true;
    b->pend_left--;
    b->st.links++;
  }
  return 0;
}

/* First pass: which hard-link groups have a DOS-named alias. */
static int
prescan(const struct wimlib_dir_entry *de, void *ctx)
{
  struct build *b = ctx;
  if (!(de->attributes & WIMLIB_FILE_ATTRIBUTE_DIRECTORY) && de->num_links > 1 &&
      de->dos_name && *de->dos_name) {
    uint64_t *v;
    bool found;
    if (u64map_slot(&b->dos_groups, de->hard_link_group_id, &v, &found) < 0)
      return fail(b, -ENOMEM, de->full_path, "out of memory", NULL), 1;
  }
  return 0;
}

static int
visit(const struct wimlib_dir_entry *de, void *ctx)
{
  struct build *b = ctx;
  const char *path = de->full_path;
  bool is_dir = de->attributes & WIMLIB_FILE_ATTRIBUTE_DIRECTORY;
  ntfs_inode *ni = NULL;
  int rc;

  if (de->depth == 0) {        /* the root: the volume's own root directory */
    if (open_dir(b, FILE_root, path) < 0 || note_dir(b, FILE_root, de) < 0)
      return 1;
    return set_contents(b, b->dir, de, true) < 0;
  }
  if (de->depth > b->ndepth)
    return fail(b, -EIO, path, "the walk lost its parent directory", NULL), 1;
  if (open_dir(b, b->parents[de->depth - 1], path) < 0)
    return 1;
  ntfschar name[256];
  int n = name16(b, de->filename, name, path);
  if (n < 0)
    return 1;

  bool linked = !is_dir && de->num_links > 1;
  bool has_dos = de->dos_name && *de->dos_name;
  uint64_t gid = de->hard_link_group_id, *v;
  if (linked && u64map_find(&b->links, gid, &v)) {
    /* A further name of a file made before: a link, nothing else to set. */
    ni = ntfs_inode_open(b->vol, *v);
    if (!ni)
      return fail_errno(b, path, "cannot open the file it links to"), 1;
    if (ntfs_link(ni, b->dir, name, (u8) n)) {
      fail_errno(b, path, "cannot link it");
      goto bad;
    }
    if (has_dos && set_dos_name(b, &ni, de, true) < 0)
      goto bad;
    b->st.links++;
    tick(b);
    return close_link(b, ni, path) < 0 || b->cancelled;
  }
  if (linked && !has_dos && u64map_find(&b->dos_groups, gid, &v))
    return defer_link(b, de, name, n) < 0 || b->cancelled;

  ni = ntfs_create(b->dir, const_cpu_to_le32(0), name, (u8) n, is_dir ? S_IFDIR : S_IFREG);
  if (!ni)
    return fail_errno(b, path, "cannot create it in the volume"), 1;
  if (linked) {
    bool found;
    if ((rc = u64map_slot(&b->links, gid, &v, &found)) < 0) {
      fail(b, rc, path, "out of memory", NULL);
      goto bad;
    }
    *v = ni->mft_no;
  }
  if (has_dos && set_dos_name(b, &ni, de, false) < 0)
    goto bad;
  if (is_dir) {
    if (note_dir(b, ni->mft_no, de) < 0 || set_contents(b, ni, de, true) < 0)
      goto bad;
  } else {
    b->st.files++;
    if (set_contents(b, ni, de, false) < 0)
      goto bad;
    if (set_attributes(ni, de->attributes)) {
      fail_errno(b, path, "cannot set its attributes");
      goto bad;
    }
    uint64_t t[3] = { wim_ntfs_time(&de->creation_time), wim_ntfs_time(&de->last_write_time),
                      wim_ntfs_time(&de->last_access_time) };
    if (set_times(ni, t)) {
      fail_errno(b, path, "cannot set its times");
      goto bad;
    }
  }
  tick(b);
  uint64_t mft = ni->mft_no;
  if (close_entry(b, ni, path) < 0)
    return 1;
  if (linked && b->pend_left && link_pending(b, gid, mft) < 0)
    return 1;
  return b->cancelled;
bad:
  if (ni)
    ntfs_inode_close(ni);
  return 1;
}

static int
cmp_deferred(const void *a, const void *c)
{
  const struct deferred *x = a, *y = c;
  uint64_t xo = x->re.raw_resource_offset_in_wim, yo = y->re.raw_resource_offset_in_wim;
  if (xo != yo)
    return xo < yo ? -1 : 1;
  return x->re.offset < y->re.offset ? -1 : x->re.offset > y->re.offset;
}

/* The deferred small data, in the order of the solid resources' data. */
static int
write_deferred(struct build *b)
{
  if (close_dir(b) < 0)
    return -1;
  if (b->ndefer)
    qsort(b->defer, b->ndefer, sizeof *b->defer, cmp_deferred);
  b->writing_deferred = true;
  for (size_t i = 0; i < b->ndefer; i++) {
    struct deferred *d = &b->defer[i];
    ntfs_inode *ni = ntfs_inode_open(b->vol, d->mft);
    if (!ni)
      return fail_errno(b, d->path, "cannot open it again");
    int rc = d->reparse_tag ? set_reparse(b, ni, d->reparse_tag, &d->re, d->path) :
             put_data(b, ni, d->name_len ? d->name : NULL, d->name_len, &d->re, false, d->path);
    if (ntfs_inode_close(ni) && rc == 0)
      rc = fail_errno(b, d->path, "cannot write it into the volume");
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* ---- the whole build --------------------------------------------------------------- */
static uint64_t
image_count_prop(WIMStruct *w, unsigned index, const char *name)
{
  const char *v = wimlib_get_image_property(w, (int) index, name);
  return v && *v ? strtoull(v, NULL, 10) : 0;
}

/* The volume as the map names it: its basename when it sits in the map's
 * directory (the pair can move together), else its absolute path. */
static char *
volume_name_for_map(const char *volume, const char *map_path)
{
  char *vdir = strdup(volume), *mdir = strdup(map_path), *out = NULL;
  char rv[PATH_MAX], rm[PATH_MAX];
  if (!vdir || !mdir)
    goto out;
  char *vs = strrchr(vdir, '/'), *ms = strrchr(mdir, '/');
  const char *vbase = vs ? vs + 1 : volume;
  if (vs)
    vs == vdir ? (void) (vs[1] = 0) : (void) (*vs = 0);
  if (ms)
    ms == mdir ? (void) (ms[1] = 0) : (void) (*ms = 0);
  if (realpath(vs ? vdir : ".", rv) && realpath(ms ? mdir : ".", rm)) {
    if (strcmp(rv, rm) == 0)
      out = strdup(vbase);
    else if (asprintf(&out, "%s/%s", strcmp(rv, "/") ? rv : "", vbase) < 0)
      out = NULL;
  }
out:
  free(vdir);
  free(mdir);
  return out;
}

int
dism_wim_build(const char *wim, unsigned index, uint64_t size, const char *volume,
               const char *map_path, dism_wim_progress_fn progress, void *opaque,
               struct dism_wim_build_stats *stats)
{
  struct build b = { .wim = wim, .progress = progress, .opaque = opaque };
  struct cdev cdev = { .fd = -1 };
  WIMStruct *w = NULL;
  bool made = false;
  struct wim_map m = { 0 };
  int fd = -1;
  int rc = dism_wim_open(wim, 0, &w);
  if (rc < 0)
    goto out;
  struct wimlib_wim_info info;
  wimlib_get_wim_info(w, &info);
  if (index < 1 || index > info.image_count) {
    dism_set_error("%s has no image %u (it has %u).", wim, index, info.image_count);
    rc = -ESRCH;
    goto out;
  }
  b.total = image_count_prop(w, index, "FILECOUNT") + image_count_prop(w, index, "DIRCOUNT");
  rc = wim_source_open(wim, NULL, &b.ws);
  if (rc < 0) {
    dism_set_error("%s", disk_last_error());
    goto out;
  }
  if (progress && progress(0, opaque)) {
    rc = -ECANCELED;
    dism_set_error("cancelled before the volume for %s was made", wim);
    goto out;
  }
  rc = dism_wim_make_volume(volume, size, wim);
  if (rc < 0)
    goto out;
  made = true;
  if (progress && progress(5, opaque)) {
    rc = -ECANCELED;
    dism_set_error("cancelled while the volume for %s was being made", wim);
    goto out;
  }
  /* Names reach ntfs-3g as UTF-16 except DOS names, which it converts
   * itself: UTF-8, whatever the process locale. */
  ntfs_set_char_encoding("utf8");
  ntfs_log_set_handler(ntfs_log_handler_null);
  cdev.fd = open(volume, O_RDWR | O_CLOEXEC);
  cdev.size = size;
  struct ntfs_device *dev = cdev.fd < 0 ? NULL : ntfs_device_alloc(volume, 0, &cdev_ops, &cdev);
  b.vol = dev ? ntfs_device_mount(dev, NTFS_MNT_NONE) : NULL;
  if (!b.vol && dev)
    ntfs_device_free(dev);
  if (b.vol)                   /* as ntfs_mount() does: lookup and inode caches */
    ntfs_create_lru_caches(b.vol);
  if (!b.vol) {
    rc = errno ? -errno : -EIO;
    dism_set_error("cannot open the new volume %s for %s: %s", volume, wim, strerror(-rc));
    goto out;
  }
  b.cluster = b.vol->cluster_size;
  b.scx.vol = b.vol;
  int wrc = wimlib_iterate_dir_tree(w, (int) index, "", WIMLIB_ITERATE_DIR_TREE_FLAG_RECURSIVE,
                                    prescan, &b);
  if (wrc == 0 && !b.rc)
    wrc = wimlib_iterate_dir_tree(w, (int) index, "",
                                  WIMLIB_ITERATE_DIR_TREE_FLAG_RECURSIVE |
                                  WIMLIB_ITERATE_DIR_TREE_FLAG_RESOURCES_NEEDED,
                                  visit, &b);
  if (wrc == 0 && !b.rc && b.pend_left)
    fail(&b, -EUCLEAN, b.pend[0].path, "its hard-link group's DOS-named name was not found",
         NULL);
  if (wrc == 0 && !b.rc && !b.cancelled && write_deferred(&b) == 0)
    finish_dirs(&b);
  close_dir(&b);
  if (b.cancelled && !b.rc) {
    b.rc = -ECANCELED;
    dism_set_error("cancelled while the volume for image %u of %s was being built", index, wim);
  }
  if (!b.rc && wrc) {
    char what[128];
    snprintf(what, sizeof what, "image %u of %%s cannot be read", index);
    b.rc = dism_wim_fail(wrc, what, wim);
  }
  rc = b.rc;
  int urc = ntfs_umount(b.vol, FALSE);
  b.vol = NULL;
  if (rc < 0)
    goto out;
  if (urc) {
    rc = errno ? -errno : -EIO;
    dism_set_error("cannot close the new volume %s for %s: %s", volume, wim, strerror(-rc));
    goto out;
  }

  /* The map. */
  if (b.next)
    qsort(b.ext, b.next, sizeof *b.ext, cmp_extent);
  for (uint64_t i = 1; i < b.next; i++) {
    if (b.ext[i - 1].volume_offset + b.ext[i - 1].length > b.ext[i].volume_offset) {
      dism_set_error("the volume for %s has two files on the same clusters (offset %llu)",
                     wim, (unsigned long long) b.ext[i].volume_offset);
      rc = -EIO;
      goto out;
    }
  }
  fd = open(wim, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    dism_set_error("cannot open %s: %s", wim, strerror(-rc));
    goto out;
  }
  rc = wim_identity_of(fd, wim, &m.wim);
  if (rc < 0) {
    dism_set_error("%s", disk_last_error());
    goto out;
  }
  m.wim_path = realpath(wim, NULL);
  m.volume_path = volume_name_for_map(volume, map_path);
  if (!m.wim_path || !m.volume_path) {
    rc = errno ? -errno : -ENOMEM;
    dism_set_error("cannot resolve the paths of %s and %s: %s", wim, volume, strerror(-rc));
    goto out;
  }
  m.image_index = index;
  m.cluster_size = b.cluster;
  m.volume_size = size;
  m.resources = b.res;
  m.resource_count = b.nres;
  m.extents = b.ext;
  m.extent_count = b.next;
  rc = wim_map_write(map_path, &m);
  if (rc < 0) {                /* atomic: no map file was left */
    dism_set_error("%s", disk_last_error());
    goto out;
  }
  b.st.extents = b.next;
  if (progress)
    progress(100, opaque);
out:
  if (b.vol)
    ntfs_umount(b.vol, TRUE);
  cdev_free(&cdev);
  if (rc < 0 && made)
    unlink(volume);
  if (fd >= 0)
    close(fd);
  if (stats)
    *stats = b.st;
  free(m.wim_path);
  free(m.volume_path);
  if (b.ws)
    wim_source_close(b.ws);
  if (w)
    wimlib_free(w);
  u64map_free(&b.res_by_offset);
  u64map_free(&b.links);
  u64map_free(&b.dos_groups);
  for (size_t i = 0; i < b.npend; i++)
    free(b.pend[i].path);
  free(b.pend);
  for (size_t i = 0; i < b.ndefer; i++)
    free(b.defer[i].path);
  free(b.defer);
  free(b.res);
  free(b.ext);
  for (size_t i = 0; i < b.ndirs; i++)
    free(b.dirs[i].path);
  free(b.dirs);
  free(b.parents);
  free(b.buf);
  return rc;
}
