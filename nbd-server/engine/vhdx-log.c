/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx-log.c - the VHDX metadata log (MS-VHDX 2.3): finding and replaying
 * the active sequence (in memory for read-only opens, to the file for
 * read-write ones) and writing our own entries for BAT/bitmap updates. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "crc32c.h"
#include "vhdx.h"

#define LOG_HDR_SIZE   64
#define LOG_DESC_SIZE  32
#define LOG_MAX_BYTES  (256ull * VX_MiB)      /* refuse to load larger logs */
#define VX_MAX_FILE    (1ull << 48)           /* no VHDX file is this large */

/* Log entry header (MS-VHDX 2.3.1.1). */
#define LE_SIGNATURE       0
#define LE_CHECKSUM        4
#define LE_ENTRY_LENGTH    8
#define LE_TAIL            12
#define LE_SEQ             16
#define LE_DESC_COUNT      24
#define LE_LOG_GUID        32
#define LE_FLUSHED_OFFSET  48
#define LE_LAST_OFFSET     56

/* Zero and data descriptors (2.3.1.2, 2.3.1.3).  A data descriptor keeps
 * the first 8 and the last 4 bytes of its page; its data sector the rest. */
#define LD_SIGNATURE       0
#define LD_TRAILING        4            /* data: the page's last 4 bytes */
#define LD_LEADING         8            /* data: the page's first 8 bytes */
#define LD_ZERO_LENGTH     8            /* zero: bytes to zero */
#define LD_FILE_OFFSET     16
#define LD_SEQ             24
#define LEADING_BYTES      8
#define TRAILING_BYTES     4

/* Data sector (2.3.1.4): the page's middle at the same offsets as in the
 * page, between the two halves of the sequence number. */
#define DS_SIGNATURE       0
#define DS_SEQ_HIGH        4
#define DS_DATA            LEADING_BYTES
#define DS_DATA_SIZE       (VX_PAGE - LEADING_BYTES - TRAILING_BYTES)
#define DS_SEQ_LOW         (VX_PAGE - TRAILING_BYTES)

static const char SIG_LOGE[4] = { 'l', 'o', 'g', 'e' };
static const char SIG_DESC[4] = { 'd', 'e', 's', 'c' };
static const char SIG_ZERO[4] = { 'z', 'e', 'r', 'o' };
static const char SIG_DATA[4] = { 'd', 'a', 't', 'a' };

/* One replay operation: write a 4 KiB page or zero a range. */
struct log_op {
  uint64_t off, end;
  size_t idx;                   /* replay order: later wins */
  size_t page;                  /* index into the page store, SIZE_MAX: zeroes */
  const uint8_t *data;          /* set from page once the store is final */
};

struct log_scan {
  const uint8_t *buf;           /* the whole log region */
  uint32_t n;                   /* sectors */
  uint8_t *state;               /* 0 unknown, 1 invalid, 2 valid */
  uint64_t *seq;
  uint32_t *nsect, *tail, *head_of;
  const struct dism_guid *guid;
};

static const uint8_t *
sect(const struct log_scan *s, uint64_t i)
{
  return s->buf + (size_t) (i % s->n) * VX_PAGE;
}

/* Descriptor k of the entry starting at sector i (never straddles sectors:
 * 64 + 32k is a multiple of 32 and a sector holds 128 slots). */
static const uint8_t *
desc_at(const struct log_scan *s, uint32_t i, uint64_t k)
{
  uint64_t b = LOG_HDR_SIZE + LOG_DESC_SIZE * k;
  return sect(s, i + b / VX_PAGE) + b % VX_PAGE;
}

/* Validate the entry at sector i completely (header, checksum, every
 * descriptor and data sector) and remember the result. */
static bool
entry_valid(struct log_scan *s, uint32_t i)
{
  const uint8_t *h = sect(s, i);
  uint8_t tmp[VX_PAGE];
  uint32_t len, tail, nsect, dsect, ndata = 0;
  uint64_t seq, dc;
  uint32_t crc;

  if (s->state[i])
    return s->state[i] == 2;
  s->state[i] = 1;
  if (memcmp(h + LE_SIGNATURE, SIG_LOGE, 4) != 0)
    return false;
  len = get_le32(h + LE_ENTRY_LENGTH);
  tail = get_le32(h + LE_TAIL);
  seq = get_le64(h + LE_SEQ);
  dc = get_le32(h + LE_DESC_COUNT);
  if (len == 0 || len % VX_PAGE || len / VX_PAGE > s->n || tail % VX_PAGE ||
      tail / VX_PAGE >= s->n || seq == 0)
    return false;
  if (memcmp(h + LE_LOG_GUID, s->guid, 16) != 0)
    return false;
  nsect = len / VX_PAGE;
  dsect = (uint32_t) ((LOG_HDR_SIZE + LOG_DESC_SIZE * dc + VX_PAGE - 1) / VX_PAGE);
  if (dsect > nsect)
    return false;
  memcpy(tmp, h, VX_PAGE);
  put_le32(tmp + LE_CHECKSUM, 0);
  crc = dism_crc32c(0, tmp, VX_PAGE);
  for (uint32_t k = 1; k < nsect; k++)
    crc = dism_crc32c(crc, sect(s, (uint64_t) i + k), VX_PAGE);
  if (crc != get_le32(h + LE_CHECKSUM))
    return false;
  for (uint64_t k = 0; k < dc; k++) {
    const uint8_t *d = desc_at(s, i, k);
    if (get_le64(d + LD_SEQ) != seq || get_le64(d + LD_FILE_OFFSET) % VX_PAGE)
      return false;
    if (memcmp(d + LD_SIGNATURE, SIG_ZERO, 4) == 0) {
      uint64_t zl = get_le64(d + LD_ZERO_LENGTH);
      if (zl == 0 || zl % VX_PAGE)
        return false;
    } else if (memcmp(d + LD_SIGNATURE, SIG_DESC, 4) == 0) {
      const uint8_t *ds;
      if (dsect + ndata >= nsect)
        return false;
      ds = sect(s, (uint64_t) i + dsect + ndata);
      if (memcmp(ds + DS_SIGNATURE, SIG_DATA, 4) != 0 ||
          get_le32(ds + DS_SEQ_HIGH) != (uint32_t) (seq >> 32) ||
          get_le32(ds + DS_SEQ_LOW) != (uint32_t) seq)
        return false;
      ndata++;
    } else {
      return false;
    }
  }
  s->seq[i] = seq;
  s->nsect[i] = nsect;
  s->tail[i] = tail / VX_PAGE;
  s->state[i] = 2;
  return true;
}

/* The entry following i in a sequence, or UINT32_MAX. */
static uint32_t
succ(struct log_scan *s, uint32_t i)
{
  uint32_t j = (uint32_t) (((uint64_t) i + s->nsect[i]) % s->n);
  if (entry_valid(s, j) && s->seq[j] == s->seq[i] + 1)
    return j;
  return UINT32_MAX;
}

/* Find the active sequence: the valid sequence whose head has the highest
 * sequence number and whose head's Tail points at an entry that leads, entry
 * by entry with consecutive sequence numbers, to that head. */
static int
find_sequence(struct log_scan *s, uint32_t *tail_out, uint32_t *head_out)
{
  uint32_t *path = malloc((size_t) s->n * sizeof *path);
  bool found = false;
  uint64_t best = 0;

  if (!path)
    return -ENOMEM;
  for (uint32_t i = 0; i < s->n; i++)
    s->head_of[i] = UINT32_MAX;
  /* head_of[] with path compression: O(n) over the whole log. */
  for (uint32_t i = 0; i < s->n; i++) {
    uint32_t np = 0, j = i, h;
    if (!entry_valid(s, i) || s->head_of[i] != UINT32_MAX)
      continue;
    for (;;) {
      uint32_t nx;
      path[np++] = j;
      nx = succ(s, j);
      if (nx == UINT32_MAX) {
        h = j;
        break;
      }
      if (s->head_of[nx] != UINT32_MAX) {
        h = s->head_of[nx];
        break;
      }
      j = nx;
      if (np >= s->n) {         /* cannot happen: seq strictly increases */
        h = j;
        break;
      }
    }
    for (uint32_t k = 0; k < np; k++)
      s->head_of[path[k]] = h;
  }
  for (uint32_t i = 0; i < s->n; i++) {
    uint32_t t;
    if (s->state[i] != 2 || succ(s, i) != UINT32_MAX)
      continue;                 /* not a head */
    t = s->tail[i];
    if (!entry_valid(s, t) || s->head_of[t] != i)
      continue;
    if (!found || s->seq[i] > best) {
      found = true;
      best = s->seq[i];
      *tail_out = t;
      *head_out = i;
    }
  }
  free(path);
  return found ? 1 : 0;
}

static int
op_cmp_off(const void *a, const void *b)
{
  const struct log_op *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

static int
u64_cmp(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* Max-heap of op pointers by idx. */
static void
heap_push(const struct log_op **h, size_t *n, const struct log_op *o)
{
  size_t i = (*n)++;
  h[i] = o;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p]->idx >= h[i]->idx)
      break;
    const struct log_op *t = h[p]; h[p] = h[i]; h[i] = t;
    i = p;
  }
}

static void
heap_pop(const struct log_op **h, size_t *n)
{
  size_t i = 0;
  h[0] = h[--(*n)];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < *n && h[l]->idx > h[m]->idx) m = l;
    if (r < *n && h[r]->idx > h[m]->idx) m = r;
    if (m == i)
      break;
    const struct log_op *t = h[m]; h[m] = h[i]; h[i] = t;
    i = m;
  }
}

/* Turn the ordered replay operations into sorted non-overlapping segments
 * (the last operation covering a byte wins): a sweep over all boundaries
 * with a max-heap of the active operations, O(n log n). */
static int
build_overlay(struct vhdx *v, struct log_op *ops, size_t nops)
{
  uint64_t *pts = NULL;
  const struct log_op **heap = NULL;
  struct vx_seg *segs = NULL;
  size_t npts = 0, nh = 0, nsegs = 0, next = 0;
  int r = -ENOMEM;

  if (nops == 0)
    return 0;
  pts = malloc(2 * nops * sizeof *pts);
  heap = malloc(nops * sizeof *heap);
  segs = malloc(2 * nops * sizeof *segs);
  if (!pts || !heap || !segs)
    goto out;
  for (size_t i = 0; i < nops; i++) {
    pts[npts++] = ops[i].off;
    pts[npts++] = ops[i].end;
  }
  qsort(pts, npts, sizeof *pts, u64_cmp);
  qsort(ops, nops, sizeof *ops, op_cmp_off);
  for (size_t k = 0; k + 1 < npts; k++) {
    uint64_t a = pts[k], b = pts[k + 1];
    if (a == b)
      continue;
    while (next < nops && ops[next].off <= a)
      heap_push(heap, &nh, &ops[next++]);
    while (nh > 0 && heap[0]->end <= a)
      heap_pop(heap, &nh);
    if (nh == 0)
      continue;
    const struct log_op *w = heap[0];
    const uint8_t *data = w->data ? w->data + (a - w->off) : NULL;
    if (nsegs > 0) {
      struct vx_seg *p = &segs[nsegs - 1];
      if (p->off + p->len == a &&
          ((!p->data && !data) || (p->data && data && p->data + p->len == data))) {
        p->len += b - a;
        continue;
      }
    }
    segs[nsegs++] = (struct vx_seg) { a, b - a, data };
  }
  v->ovl = segs;
  v->novl = nsegs;
  segs = NULL;
  r = 0;
out:
  free(pts);
  free(heap);
  free(segs);
  return r;
}

void
vx_ovl_free(struct vhdx *v)
{
  free(v->ovl);
  free(v->ovl_pages);
  v->ovl = NULL;
  v->ovl_pages = NULL;
  v->novl = 0;
}

/* Zero a file range on disk (read-write replay). */
static int
zero_file_range(struct vhdx *v, uint64_t off, uint64_t len)
{
  static const uint8_t zeroes[64 * 1024];
  uint64_t end = off + len;

  if (off >= v->phys_size)
    return 0;                   /* the later extension reads as zeroes */
  if (end > v->phys_size)
    end = v->phys_size;
  if (fallocate(v->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                (off_t) off, (off_t) (end - off)) == 0)
    return 0;
  for (uint64_t o = off; o < end;) {
    size_t n = end - o < sizeof zeroes ? (size_t) (end - o) : sizeof zeroes;
    int r = disk_full_pwrite(v->fd, v->path, zeroes, n, o);
    if (r < 0)
      return r;
    o += n;
  }
  return 0;
}

/* What a replay tracks while it walks the active sequence, and what it
 * collects for a read-only open (replayed in memory). */
struct replay {
  struct log_op *ops;           /* the operations, in log order */
  size_t nops, nops_cap;
  uint8_t *pages;               /* their 4 KiB pages, 64 at a time */
  size_t npages;
  uint64_t maxend;              /* the file's size once replayed */
};

static int
scan_alloc(struct log_scan *s, uint32_t n)
{
  s->n = n;
  s->state = calloc(n, 1);
  s->seq = calloc(n, sizeof *s->seq);
  s->nsect = calloc(n, sizeof *s->nsect);
  s->tail = calloc(n, sizeof *s->tail);
  s->head_of = calloc(n, sizeof *s->head_of);
  return s->state && s->seq && s->nsect && s->tail && s->head_of ? 0 : -ENOMEM;
}

static void
scan_free(struct log_scan *s)
{
  free(s->state);
  free(s->seq);
  free(s->nsect);
  free(s->tail);
  free(s->head_of);
}

/* The head entry's FlushedOffset and LastFileOffset, checked against the
 * file: *maxend is where the replayed file ends, at least. */
static int
check_head(struct vhdx *v, const struct log_scan *s, uint32_t head, uint64_t *maxend)
{
  uint64_t flushed = get_le64(sect(s, head) + LE_FLUSHED_OFFSET);
  uint64_t last = get_le64(sect(s, head) + LE_LAST_OFFSET);

  if (flushed > v->phys_size) {
    disk_set_error("%s: truncated: the log says the file was flushed up to %llu bytes "
                   "but it has %llu", v->path, (unsigned long long) flushed,
                   (unsigned long long) v->phys_size);
    return -EIO;
  }
  if (last > VX_MAX_FILE) {
    disk_set_error("%s: log entry LastFileOffset %llu is absurd", v->path,
                   (unsigned long long) last);
    return -EINVAL;
  }
  *maxend = last > v->phys_size ? last : v->phys_size;
  return 0;
}

/* Remember one operation (page NULL: zero the range) for the in-memory
 * replay. */
static int
collect_op(struct replay *rp, uint64_t off, uint64_t len, const uint8_t *page)
{
  size_t pidx = SIZE_MAX;

  if (rp->nops == rp->nops_cap) {
    size_t cap = rp->nops_cap ? rp->nops_cap * 2 : 64;
    struct log_op *no = realloc(rp->ops, cap * sizeof *no);
    if (!no)
      return -ENOMEM;
    rp->ops = no;
    rp->nops_cap = cap;
  }
  if (page) {
    if (rp->npages % 64 == 0) {
      uint8_t *np = realloc(rp->pages, (rp->npages + 64) * VX_PAGE);
      if (!np)
        return -ENOMEM;
      rp->pages = np;
    }
    memcpy(rp->pages + rp->npages * VX_PAGE, page, VX_PAGE);
    pidx = rp->npages++;
  }
  rp->ops[rp->nops] = (struct log_op) { off, off + len, rp->nops, pidx, NULL };
  rp->nops++;
  return 0;
}

/* Descriptor k of the entry at sector i, whose data sectors start dsect
 * sectors in (*ndata of them used so far): checked, then written to the
 * file or, read-only, collected. */
static int
replay_descriptor(struct vhdx *v, const struct log_scan *s, struct replay *rp,
                  uint32_t i, uint32_t dsect, uint64_t k, uint32_t *ndata)
{
  const uint8_t *d = desc_at(s, i, k);
  uint64_t off = get_le64(d + LD_FILE_OFFSET), len;
  const uint8_t *page = NULL;
  uint8_t full[VX_PAGE];

  if (memcmp(d + LD_SIGNATURE, SIG_ZERO, 4) == 0) {
    len = get_le64(d + LD_ZERO_LENGTH);
  } else {
    const uint8_t *ds = sect(s, (uint64_t) i + dsect + (*ndata)++);
    len = VX_PAGE;
    memcpy(full, d + LD_LEADING, LEADING_BYTES);
    memcpy(full + DS_DATA, ds + DS_DATA, DS_DATA_SIZE);
    memcpy(full + VX_PAGE - TRAILING_BYTES, d + LD_TRAILING, TRAILING_BYTES);
    page = full;
  }
  if (off > VX_MAX_FILE || len > VX_MAX_FILE - off) {
    disk_set_error("%s: log descriptor for offset %llu length %llu is out of range",
                   v->path, (unsigned long long) off, (unsigned long long) len);
    return -EINVAL;
  }
  if (off < 192 * VX_KiB) {
    /* Headers and the file identifier never go through the log. */
    disk_set_error("%s: log entry writes into the VHDX headers (offset %llu)",
                   v->path, (unsigned long long) off);
    return -EINVAL;
  }
  if (off + len > rp->maxend)
    rp->maxend = off + len;
  if (v->readonly)
    return collect_op(rp, off, len, page);
  if (page)
    return disk_full_pwrite(v->fd, v->path, page, VX_PAGE, off);
  return zero_file_range(v, off, len);
}

/* Walk the sequence tail..head and replay every descriptor in order. */
static int
replay_sequence(struct vhdx *v, struct log_scan *s, struct replay *rp,
                uint32_t tail, uint32_t head)
{
  unsigned entries = 0;
  uint32_t i = tail;
  int r;

  for (;;) {
    uint64_t dc = get_le32(sect(s, i) + LE_DESC_COUNT);
    uint32_t dsect = (uint32_t) ((LOG_HDR_SIZE + LOG_DESC_SIZE * dc + VX_PAGE - 1) / VX_PAGE);
    uint32_t ndata = 0;

    entries++;
    for (uint64_t k = 0; k < dc; k++) {
      r = replay_descriptor(v, s, rp, i, dsect, k, &ndata);
      if (r < 0)
        return r;
    }
    if (i == head)
      break;
    i = succ(s, i);
    if (i == UINT32_MAX)        /* find_sequence guarantees the path */
      return -EIO;
  }
  v->replayed_entries = entries;
  return 0;
}

/* Read-only: the collected operations become the overlay reads see. */
static int
finish_in_memory(struct vhdx *v, struct replay *rp)
{
  int r;

  for (size_t q = 0; q < rp->nops; q++)
    rp->ops[q].data = rp->ops[q].page == SIZE_MAX ? NULL
                                                  : rp->pages + rp->ops[q].page * VX_PAGE;
  r = build_overlay(v, rp->ops, rp->nops);
  if (r < 0)
    return r;
  v->ovl_pages = rp->pages;
  rp->pages = NULL;
  v->file_size = rp->maxend;
  v->replayed_in_memory = true;
  return 0;
}

/* Read-write: the file extended to the size the log gives it, and the
 * replayed writes made durable. */
static int
finish_on_disk(struct vhdx *v, uint64_t maxend)
{
  if (maxend > v->phys_size) {
    struct stat st;
    if (ftruncate(v->fd, (off_t) maxend) < 0 && fstat(v->fd, &st) == 0 &&
        (uint64_t) st.st_size < maxend) {
      int r = -errno;
      disk_set_error("%s: extending the file to %llu bytes for log replay: %s",
                     v->path, (unsigned long long) maxend, strerror(errno));
      return r;
    }
    v->phys_size = v->file_size = maxend;
  }
  if (fdatasync(v->fd) < 0) {
    int r = -errno;
    disk_set_error("%s: fdatasync after log replay: %s", v->path, strerror(errno));
    return r;
  }
  v->replayed_on_disk = true;
  return 0;
}

int
vx_log_replay(struct vhdx *v)
{
  struct log_scan s = { 0 };
  struct replay rp = { 0 };
  uint8_t *logbuf = NULL;
  uint32_t tail = 0, head = 0;
  int r;

  if (dism_guid_is_zero(&v->log_guid))
    return 0;
  if (v->log_length > LOG_MAX_BYTES) {
    disk_set_error("%s: the log (%u bytes) needs replaying but is larger than the "
                   "supported %llu bytes", v->path, v->log_length, LOG_MAX_BYTES);
    return -EINVAL;
  }
  logbuf = malloc(v->log_length);
  r = scan_alloc(&s, v->log_length / VX_PAGE);
  if (r == 0 && !logbuf)
    r = -ENOMEM;
  if (r == 0)
    r = disk_full_pread(v->fd, v->path, logbuf, v->log_length, v->log_offset, false);
  if (r < 0)
    goto out;
  s.buf = logbuf;
  s.guid = &v->log_guid;

  r = find_sequence(&s, &tail, &head);
  if (r < 0)
    goto out;
  if (r == 0) {
    /* LogGuid set but nothing valid with it: nothing to replay (an image
     * closed right after a log was started). */
    v->log_empty_guid = true;
    goto clear;
  }
  r = check_head(v, &s, head, &rp.maxend);
  if (r == 0)
    r = replay_sequence(v, &s, &rp, tail, head);
  if (r < 0)
    goto out;
  if (v->readonly) {
    r = finish_in_memory(v, &rp);
    goto out;
  }
  r = finish_on_disk(v, rp.maxend);
  if (r < 0)
    goto out;
clear:
  r = 0;
  if (!v->readonly) {
    /* The log is applied: a new header without LogGuid makes that final. */
    memset(&v->log_guid, 0, sizeof v->log_guid);
    r = vx_write_header(v);
  }
out:
  free(logbuf);
  scan_free(&s);
  free(rp.ops);
  free(rp.pages);
  return r;
}

/* ---- writing ------------------------------------------------------------ */

static int
sync_fd(struct vhdx *v)
{
  return disk_full_fdatasync(v->fd, v->path);
}

/* One log entry with up to 126 data descriptors (one descriptor sector). */
static int
commit_batch(struct vhdx *v, size_t n, const uint64_t *offs, uint8_t *const *pages)
{
  size_t len = (n + 1) * VX_PAGE;
  uint8_t *e = calloc(1, len);
  int r;

  if (!e)
    return -ENOMEM;
  if (v->log_pos + len > v->log_length)
    v->log_pos = 0;             /* entries never wrap: start again at 0 */
  memcpy(e + LE_SIGNATURE, SIG_LOGE, 4);
  put_le32(e + LE_ENTRY_LENGTH, (uint32_t) len);
  put_le32(e + LE_TAIL, (uint32_t) v->log_pos);  /* each entry is its own tail */
  put_le64(e + LE_SEQ, v->log_seq);
  put_le32(e + LE_DESC_COUNT, (uint32_t) n);
  memcpy(e + LE_LOG_GUID, &v->log_guid, 16);
  put_le64(e + LE_FLUSHED_OFFSET, v->phys_size);
  put_le64(e + LE_LAST_OFFSET, v->phys_size);
  for (size_t k = 0; k < n; k++) {
    uint8_t *d = e + LOG_HDR_SIZE + LOG_DESC_SIZE * k;
    uint8_t *ds = e + (k + 1) * VX_PAGE;
    memcpy(d + LD_SIGNATURE, SIG_DESC, 4);
    memcpy(d + LD_TRAILING, pages[k] + VX_PAGE - TRAILING_BYTES, TRAILING_BYTES);
    memcpy(d + LD_LEADING, pages[k], LEADING_BYTES);
    put_le64(d + LD_FILE_OFFSET, offs[k]);
    put_le64(d + LD_SEQ, v->log_seq);
    memcpy(ds + DS_SIGNATURE, SIG_DATA, 4);
    put_le32(ds + DS_SEQ_HIGH, (uint32_t) (v->log_seq >> 32));
    memcpy(ds + DS_DATA, pages[k] + DS_DATA, DS_DATA_SIZE);
    put_le32(ds + DS_SEQ_LOW, (uint32_t) v->log_seq);
  }
  put_le32(e + LE_CHECKSUM, dism_crc32c(0, e, len));

  /* MS-VHDX order: everything the entry depends on (new payload data, the
   * previous entry's in-place writes) is stable before the entry; the entry
   * is stable before it is applied.  The apply itself is made stable by the
   * next entry's first flush or by disk flush. */
  r = sync_fd(v);
  if (r == 0)
    r = disk_full_pwrite(v->fd, v->path, e, len, v->log_offset + v->log_pos);
  if (r == 0)
    r = sync_fd(v);
  for (size_t k = 0; r == 0 && k < n; k++)
    r = disk_full_pwrite(v->fd, v->path, pages[k], VX_PAGE, offs[k]);
  if (r == 0) {
    v->log_pos += len;
    v->log_seq++;
  }
  free(e);
  return r;
}

int
vx_log_commit(struct vhdx *v, size_t n, const uint64_t *offs, uint8_t *const *pages)
{
  size_t maxn = (VX_PAGE - LOG_HDR_SIZE) / LOG_DESC_SIZE;   /* 126 */
  int r;

  if (v->log_length / VX_PAGE - 1 < maxn)
    maxn = v->log_length / VX_PAGE - 1;
  if (!v->log_active) {
    /* Start a fresh log: a new LogGuid makes every old entry invalid. */
    dism_guid_generate(&v->log_guid);
    r = vx_write_header(v);
    if (r < 0)
      return r;
    v->log_active = true;
    v->log_pos = 0;
    v->log_seq = 1;
  }
  for (size_t k = 0; k < n; k += maxn) {
    size_t m = n - k < maxn ? n - k : maxn;
    r = commit_batch(v, m, offs + k, pages + k);
    if (r < 0)
      return r;
  }
  return 0;
}
