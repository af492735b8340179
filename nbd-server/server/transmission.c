/* SPDX-License-Identifier: GPL-2.0-or-later */
/* transmission.c - the transmission phase: the receive loop (one per
 * connection) that validates requests and queues them, and the request
 * handlers the workers run, each ending in exactly one reply. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nbd-protocol.h"
#include "server-internal.h"
#include "bufpool.h"


/* A structured READ is split into at most this many data/hole chunks. */
#define READ_MAX_SEGMENTS 64
/* Below this, a READ is sent as one data chunk without asking for holes. */
#define READ_HOLE_MIN     4096
/* A zero-copy READ is sent from at most this many file or zero pieces;
 * a read that needs more (fragmented sector bitmaps) is copied. */
#define READ_MAX_PIECES   64
/* Smaller READs are copied: one sendmsg beats a send plus a sendfile. */
#define READ_ZERO_COPY_MIN (32u << 10)

static bool
conn_is_broken(struct nbd_conn *c)
{
  return __atomic_load_n(&c->broken, __ATOMIC_RELAXED);
}

/* ---- replies ----------------------------------------------------------- */
/* Handlers build the reply in memory the job owns (rhead, rdata, raux) and
 * describe it with job->riov; conn_send_reply() then sends it. */

static void
reply_iov(struct nbd_job *job, void *base, size_t len)
{
  job->riov[job->riovcnt++] = (struct iovec) { base, len };
}

/* Fill a structured or extended chunk header at p; returns its size. */
static size_t
chunk_header(const struct nbd_job *job, void *p, uint16_t flags,
             uint16_t type, uint64_t payload_len)
{
  if (job->conn->extended) {
    struct nbd_extended_reply h = {
      .magic = htobe32(NBD_MAGIC_EXTENDED_REPLY),
      .flags = htobe16(flags),
      .type = htobe16(type),
      .cookie = htobe64(job->cookie),
      .offset = htobe64(job->offset),
      .length = htobe64(payload_len),
    };
    memcpy(p, &h, sizeof h);
    return sizeof h;
  } else {
    struct nbd_structured_reply h = {
      .magic = htobe32(NBD_MAGIC_STRUCTURED_REPLY),
      .flags = htobe16(flags),
      .type = htobe16(type),
      .cookie = htobe64(job->cookie),
      .length = htobe32((uint32_t) payload_len),
    };
    memcpy(p, &h, sizeof h);
    return sizeof h;
  }
}

/* The whole reply to a request that carries no data: success or an error.
 * Simple replies unless the client negotiated otherwise; after structured
 * replies, READ and BLOCK_STATUS must answer in chunks.  msg must be a
 * static string (the reply points at it). */
static void
reply_status(struct nbd_job *job, uint32_t error, const char *msg)
{
  struct nbd_conn *c = job->conn;
  struct nbd_chunk_error err;
  size_t hlen, msglen;

  job->riovcnt = 0;
  if (!c->extended &&
      !(c->structured && (job->type == NBD_CMD_READ ||
                          job->type == NBD_CMD_BLOCK_STATUS))) {
    struct nbd_simple_reply r = {
      .magic = htobe32(NBD_MAGIC_SIMPLE_REPLY),
      .error = htobe32(error),
      .cookie = htobe64(job->cookie),
    };
    memcpy(job->rhead, &r, sizeof r);
    reply_iov(job, job->rhead, sizeof r);
    return;
  }
  if (error == 0) {
    reply_iov(job, job->rhead, chunk_header(job, job->rhead, NBD_REPLY_FLAG_DONE,
                                            NBD_REPLY_TYPE_NONE, 0));
    return;
  }
  msglen = msg ? strlen(msg) : 0;
  err.error = htobe32(error);
  err.msg_len = htobe16((uint16_t) msglen);
  hlen = chunk_header(job, job->rhead, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                      sizeof err + msglen);
  memcpy(job->rhead + hlen, &err, sizeof err);
  reply_iov(job, job->rhead, hlen + sizeof err);
  if (msglen)
    reply_iov(job, (void *) msg, msglen);
}

/* Reply to an engine result (0 or a negative errno). */
static void
reply_result(struct nbd_job *job, int r, const char *what)
{
  uint32_t error;

  if (r >= 0) {
    reply_status(job, 0, NULL);
    return;
  }
  error = nbd_errno_from_engine(-r, job->type == NBD_CMD_WRITE_ZEROES &&
                                        (job->flags & NBD_CMD_FLAG_FAST_ZERO));
  /* A slow FAST_ZERO is an expected answer, not a failure worth logging. */
  if (error != NBD_ENOTSUP)
    nbd_log(job->conn->srv, NBD_LOG_ERROR, "%s at %llu+%llu: %s", what,
            (unsigned long long) job->offset,
            (unsigned long long) job->length, disk_last_error());
  reply_status(job, error, what);
}

/* ---- READ -------------------------------------------------------------- */

struct read_segment {
  uint64_t offset;             /* absolute */
  uint64_t length;
  bool hole;
  uint8_t hdr[sizeof(struct nbd_extended_reply)];
  uint8_t payload[sizeof(struct nbd_chunk_offset_hole)];
};

/* Split [offset, offset+length) into data and hole segments from the
 * engine's extents.  Always covers the whole range exactly: anything the
 * extents do not describe is data. */
static size_t
read_plan(struct nbd_job *job, struct read_segment *seg, size_t max)
{
  struct disk *d = job->conn->srv->disk;
  uint64_t pos = job->offset, end = job->offset + job->length;
  struct disk_extents ext;
  size_t n = 0, i;

  disk_extents_init(&ext, pos, end, max - 1);
  if (disk_extents(d, job->length, job->offset, &ext) < 0)
    ext.n = 0;   /* only an optimisation: read it all as data */
  for (i = 0; i < ext.n && pos < end; i++) {
    uint64_t xend = ext.v[i].offset + ext.v[i].length;
    bool hole = ext.v[i].flags & DISK_EXTENT_ZERO;

    if (ext.v[i].offset > pos || xend <= pos)
      break;   /* not contiguous: stop trusting the list */
    if (xend > end)
      xend = end;
    if (n > 0 && seg[n - 1].hole == hole)
      seg[n - 1].length += xend - pos;
    else
      seg[n++] = (struct read_segment) { .offset = pos, .length = xend - pos,
                                         .hole = hole };
    pos = xend;
  }
  disk_extents_free(&ext);
  if (pos < end) {
    if (n > 0 && !seg[n - 1].hole)
      seg[n - 1].length += end - pos;
    else
      seg[n++] = (struct read_segment) { .offset = pos, .length = end - pos,
                                         .hole = false };
  }
  return n;
}

/* Undo what a nowait read attempt set up, so a worker can start over. */
static int
read_not_now(struct nbd_job *job)
{
  bufpool_put(job->rdata, job->rdata_pool_len);
  job->rdata = NULL;
  job->rdata_pool_len = 0;
  free(job->raux);
  job->raux = NULL;
  free(job->rpieces);
  job->rpieces = NULL;
  free(job->riov_heap);
  job->riov_heap = NULL;
  job->riov = job->riov_inline;
  job->riovcnt = 0;
  return -EAGAIN;
}

/* cachestat(2) (Linux 6.5): how many pages of a file range are in the page
 * cache.  Not in every libc's headers yet. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct cachestat_range_v1 {
  uint64_t off, len;
};
struct cachestat_v1 {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Would sending this piece read from storage?  Zero pieces never do; file
 * pieces not wholly in the page cache (or a kernel without cachestat) do:
 * the receive thread leaves those to a worker. */
static bool
piece_cached(const struct disk_piece *p)
{
  const uint64_t pg = 4096;
  uint64_t first = p->offset / pg, last = (p->offset + p->length - 1) / pg;
  struct cachestat_range_v1 range = { first * pg, (last - first + 1) * pg };
  struct cachestat_v1 cs;

  if (p->fd < 0)
    return true;
  if (syscall(__NR_cachestat, p->fd, &range, &cs, 0) < 0)
    return false;
  return cs.nr_cache >= last - first + 1;
}

/* Map [offset, offset+length) into m's free tail as its own run of pieces
 * (no merging with the previous segment's).  Returns the pieces added or a
 * negative errno. */
static int
map_segment(struct nbd_job *job, struct disk_map *m, uint64_t offset,
            uint64_t length, bool nowait)
{
  struct disk_map sub = { m->v + m->n, 0, m->max - m->n };
  struct disk *d = job->conn->srv->disk;
  int r = nowait ? disk_map_nowait(d, length, offset, &sub)
                 : disk_map(d, length, offset, &sub);

  if (r < 0)
    return r;
  for (size_t i = 0; nowait && i < sub.n; i++)
    if (!piece_cached(&sub.v[i]))
      return -EAGAIN;
  m->n += sub.n;
  return (int) sub.n;
}

/* The header of a successful simple READ reply. */
static void
reply_read_head(struct nbd_job *job)
{
  struct nbd_simple_reply hdr = {
    .magic = htobe32(NBD_MAGIC_SIMPLE_REPLY),
    .error = 0,
    .cookie = htobe64(job->cookie),
  };

  memcpy(job->rhead, &hdr, sizeof hdr);
  reply_iov(job, job->rhead, sizeof hdr);
}

/* The piece iovecs of a segment: NULL bases (see nbd_job.rpieces). */
static void
reply_pieces(struct nbd_job *job, const struct disk_map *m, size_t from, size_t n)
{
  for (size_t i = from; i < from + n; i++)
    reply_iov(job, NULL, m->v[i].length);
}

/* A structured READ reply's chunks, holes as OFFSET_HOLE: the data from buf
 * (the copy path), or else from m's pieces, npc[i] of them for segment i. */
static void
reply_read_chunks(struct nbd_job *job, struct read_segment *seg, size_t nseg,
                  uint8_t *buf, const struct disk_map *m, const size_t *npc)
{
  for (size_t pc = 0, i = 0; i < nseg; pc += m ? npc[i] : 0, i++) {
    uint16_t flags = i + 1 == nseg ? NBD_REPLY_FLAG_DONE : 0;
    uint64_t be_off = htobe64(seg[i].offset);

    if (seg[i].hole) {
      struct nbd_chunk_offset_hole h = { be_off, htobe32((uint32_t) seg[i].length) };
      memcpy(seg[i].payload, &h, sizeof h);
      reply_iov(job, seg[i].hdr, chunk_header(job, seg[i].hdr, flags,
                                              NBD_REPLY_TYPE_OFFSET_HOLE, sizeof h));
      reply_iov(job, seg[i].payload, sizeof h);
      continue;
    }
    memcpy(seg[i].payload, &be_off, 8);
    reply_iov(job, seg[i].hdr, chunk_header(job, seg[i].hdr, flags,
                                            NBD_REPLY_TYPE_OFFSET_DATA,
                                            8 + seg[i].length));
    reply_iov(job, seg[i].payload, 8);
    if (buf)
      reply_iov(job, buf + (seg[i].offset - job->offset), seg[i].length);
    else
      reply_pieces(job, m, pc, npc[i]);
  }
}

/* A READ on a zero-copy connection: the data goes from the image's files
 * to the socket (send_job in conn-io.c), holes as OFFSET_HOLE chunks.
 * -ENOTSUP (job untouched) when the disk cannot describe the range as
 * file pieces: the caller copies.  nowait as for handle_read. */
static int
handle_read_mapped(struct nbd_job *job, bool nowait)
{
  struct nbd_conn *c = job->conn;
  struct read_segment *seg = NULL;
  struct disk_map m = { 0 };
  size_t nseg = 1, niov, i, npc[READ_MAX_SEGMENTS];
  int r;

  m.max = READ_MAX_PIECES;
  m.v = job->rpieces = malloc(READ_MAX_PIECES * sizeof *m.v);
  if (!m.v)
    return -ENOTSUP;   /* the copy path says ENOMEM if it must */
  if (c->structured) {
    seg = job->raux = malloc(READ_MAX_SEGMENTS * sizeof *seg);
    if (!seg) {
      r = -ENOMEM;
      goto fail;
    }
    if ((job->flags & NBD_CMD_FLAG_DF) || job->length < READ_HOLE_MIN) {
      seg[0] = (struct read_segment) { .offset = job->offset, .length = job->length };
      nseg = 1;
    } else {
      nseg = read_plan(job, seg, READ_MAX_SEGMENTS);
    }
  }
  /* Map everything before building the reply: an error is still the
   * whole reply. */
  niov = c->structured ? 0 : 1;
  for (i = 0; i < nseg; i++) {
    npc[i] = 0;
    niov += 2;
    if (seg && seg[i].hole)
      continue;
    r = seg ? map_segment(job, &m, seg[i].offset, seg[i].length, nowait)
            : map_segment(job, &m, job->offset, job->length, nowait);
    if (r < 0)
      goto fail;
    npc[i] = (size_t) r;
    niov += (size_t) r;
  }
  if (niov > sizeof job->riov_inline / sizeof job->riov_inline[0]) {
    job->riov = job->riov_heap = malloc(niov * sizeof *job->riov);
    if (!job->riov) {
      r = -ENOMEM;
      goto fail;
    }
  }
  if (!c->structured) {
    reply_read_head(job);
    reply_pieces(job, &m, 0, npc[0]);
  } else {
    reply_read_chunks(job, seg, nseg, NULL, &m, npc);
  }
  return 0;

fail:
  read_not_now(job);
  if (r == -EAGAIN || r == -ENOTSUP || r == -E2BIG)
    return r == -EAGAIN ? -EAGAIN : -ENOTSUP;
  reply_result(job, r, "read");
  return 0;
}

/* nowait: read only from the page cache; returns -EAGAIN (nothing sent,
 * job state reset) if the data is not there, for a worker to redo. */
static int
handle_read(struct nbd_job *job, bool nowait)
{
  struct nbd_conn *c = job->conn;
  struct disk *d = c->srv->disk;
  struct read_segment *seg;
  uint8_t *buf;
  size_t nseg, i;
  int r;

  if (job->length == 0) {
    reply_status(job, 0, NULL);
    return 0;
  }
  if (c->zero_copy && job->length >= READ_ZERO_COPY_MIN &&
      (r = handle_read_mapped(job, nowait)) != -ENOTSUP)
    return r;
  buf = job->rdata = bufpool_get(job->length);
  job->rdata_pool_len = job->length;
  if (!buf) {
    reply_status(job, NBD_ENOMEM, "out of memory");
    return 0;
  }

  if (!c->structured) {
    r = nowait ? disk_pread_nowait(d, buf, job->length, job->offset)
               : disk_pread(d, buf, job->length, job->offset);
    if (r == -EAGAIN && nowait)
      return read_not_now(job);
    if (r < 0) {
      reply_result(job, r, "read");
      return 0;
    }
    reply_read_head(job);
    reply_iov(job, buf, job->length);
    return 0;
  }

  /* Structured: data and hole chunks.  All the reading happens before the
   * reply is built, so an error can still be the whole reply. */
  seg = job->raux = malloc(READ_MAX_SEGMENTS * sizeof *seg);
  if (!seg) {
    reply_status(job, NBD_ENOMEM, "out of memory");
    return 0;
  }
  if ((job->flags & NBD_CMD_FLAG_DF) || job->length < READ_HOLE_MIN) {
    seg[0] = (struct read_segment) { .offset = job->offset, .length = job->length };
    nseg = 1;
  } else {
    nseg = read_plan(job, seg, READ_MAX_SEGMENTS);
  }
  for (i = 0; i < nseg; i++) {
    if (seg[i].hole)
      continue;
    r = nowait ? disk_pread_nowait(d, buf + (seg[i].offset - job->offset),
                                   seg[i].length, seg[i].offset)
               : disk_pread(d, buf + (seg[i].offset - job->offset), seg[i].length,
                            seg[i].offset);
    if (r == -EAGAIN && nowait)
      return read_not_now(job);
    if (r < 0) {
      reply_result(job, r, "read");
      return 0;
    }
  }
  if (3 * nseg > sizeof job->riov_inline / sizeof job->riov_inline[0]) {
    job->riov = job->riov_heap = malloc(3 * nseg * sizeof *job->riov);
    if (!job->riov) {
      job->riov = job->riov_inline;
      reply_status(job, NBD_ENOMEM, "out of memory");
      return 0;
    }
  }
  reply_read_chunks(job, seg, nseg, buf, NULL, NULL);
  return 0;
}

static void
handle_block_status(struct nbd_job *job)
{
  struct nbd_conn *c = job->conn;
  struct disk *d = c->srv->disk;
  uint64_t pos = job->offset, end = job->offset + job->length;
  size_t max = (job->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_SERVER_MAX_EXTENTS;
  size_t desc_size = c->extended ? sizeof(struct nbd_block_descriptor_ext)
                                 : sizeof(struct nbd_block_descriptor);
  size_t head_size = c->extended ? 8 : 4;   /* context id [+ count] */
  struct disk_extents ext;
  uint8_t *payload, *p;
  uint32_t be32v;
  size_t n = 0, i, len;
  int r;

  disk_extents_init(&ext, pos, end, max);
  r = disk_extents(d, job->length, job->offset, &ext);
  if (r < 0) {
    reply_result(job, r, "block status");
    goto out;
  }
  payload = job->rdata = malloc(head_size + (ext.n ? ext.n : 1) * desc_size);
  if (!payload) {
    reply_status(job, NBD_ENOMEM, "out of memory");
    goto out;
  }
  p = payload + head_size;
  for (i = 0; i < ext.n && n < max && pos < end; i++) {
    uint64_t xend = ext.v[i].offset + ext.v[i].length;
    uint32_t flags = 0;

    if (ext.v[i].offset > pos || xend <= pos)
      break;
    if (xend > end)
      xend = end;   /* never describe more than was asked */
    if (ext.v[i].flags & DISK_EXTENT_HOLE)
      flags |= NBD_STATE_HOLE;
    if (ext.v[i].flags & DISK_EXTENT_ZERO)
      flags |= NBD_STATE_ZERO;
    if (c->extended) {
      struct nbd_block_descriptor_ext e = { htobe64(xend - pos), htobe64(flags) };
      memcpy(p, &e, sizeof e);
    } else {
      /* The request length was 32-bit, so every clipped extent fits. */
      struct nbd_block_descriptor e = { htobe32((uint32_t) (xend - pos)),
                                        htobe32(flags) };
      memcpy(p, &e, sizeof e);
    }
    p += desc_size;
    n++;
    pos = xend;
  }
  if (n == 0) {
    disk_set_error("%s: no extent returned at %llu", d->path,
                   (unsigned long long) job->offset);
    reply_result(job, -EIO, "block status");
    goto out;
  }
  be32v = htobe32(META_CONTEXT_ID_ALLOCATION);
  memcpy(payload, &be32v, 4);
  if (c->extended) {
    be32v = htobe32((uint32_t) n);
    memcpy(payload + 4, &be32v, 4);
  }
  len = head_size + n * desc_size;
  reply_iov(job, job->rhead,
            chunk_header(job, job->rhead, NBD_REPLY_FLAG_DONE,
                         c->extended ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                                     : NBD_REPLY_TYPE_BLOCK_STATUS, len));
  reply_iov(job, payload, len);
out:
  disk_extents_free(&ext);
}

/* ---- the worker side --------------------------------------------------- */

static void
handle_job(struct nbd_job *job)
{
  struct disk *d = job->conn->srv->disk;
  unsigned fua = (job->flags & NBD_CMD_FLAG_FUA) ? DISK_F_FUA : 0;
  unsigned zflags;

  if (job->early_error) {
    reply_status(job, job->early_error, "invalid request");
    return;
  }
  /* Zero-length requests succeed without touching the disk. */
  if (job->length == 0 && job->type != NBD_CMD_FLUSH) {
    reply_status(job, 0, NULL);
    return;
  }
  switch (job->type) {
  case NBD_CMD_READ:
    handle_read(job, false);
    break;
  case NBD_CMD_WRITE:
    reply_result(job, disk_pwrite(d, job->payload, job->length, job->offset, fua),
                 "write");
    break;
  case NBD_CMD_FLUSH:
    /* One shared disk: this covers every connection's replied writes. */
    reply_result(job, disk_flush(d), "flush");
    break;
  case NBD_CMD_TRIM:
    reply_result(job, disk_trim(d, job->length, job->offset, fua), "trim");
    break;
  case NBD_CMD_CACHE:
    reply_result(job, disk_cache(d, job->length, job->offset), "cache");
    break;
  case NBD_CMD_WRITE_ZEROES:
    zflags = fua;
    if (!(job->flags & NBD_CMD_FLAG_NO_HOLE))
      zflags |= DISK_F_MAY_TRIM;
    if (job->flags & NBD_CMD_FLAG_FAST_ZERO)
      zflags |= DISK_F_FAST_ZERO;
    reply_result(job, disk_zero(d, job->length, job->offset, zflags),
                 "write zeroes");
    break;
  case NBD_CMD_BLOCK_STATUS:
    handle_block_status(job);
    break;
  default:
    /* validate_request() let an unknown command through: a bug. */
    reply_status(job, NBD_EINVAL, "unknown command");
    break;
  }
}

int
nbd_job_try_inline(struct nbd_job *job)
{
  job->riov = job->riov_inline;
  job->riovcnt = 0;
  if (conn_is_broken(job->conn)) {
    job_finish(job);
    return 0;
  }
  if (job->early_error || job->type != NBD_CMD_READ) {
    handle_job(job);
  } else if (handle_read(job, true) < 0) {
    job->riovcnt = 0;
    return -EAGAIN;
  }
  conn_send_reply(job);
  return 0;
}

void
nbd_job_run(struct nbd_job *job)
{
  job->riov = job->riov_inline;
  job->riovcnt = 0;
  /* A dead connection gets no more work done: nobody can see the reply
   * (the receive thread is already tearing it down). */
  if (conn_is_broken(job->conn)) {
    job_finish(job);
    return;
  }
  handle_job(job);
  conn_send_reply(job);   /* finishes the job once sent */
}

/* ---- the receive side -------------------------------------------------- */

/* Check a request against the spec's table; returns the NBD error to
 * reply with, or 0.  *payload_len is set to the bytes that follow the
 * header on the wire, whether or not the request is valid. */
static uint32_t
validate_request(const struct nbd_conn *c, const struct nbd_job *job,
                 uint64_t *payload_len)
{
  const struct nbd_server *srv = c->srv;
  uint64_t size = srv->disk->size;
  bool in_range = job->offset <= size && job->length <= size - job->offset;
  uint16_t allowed = NBD_CMD_FLAG_FUA;   /* accepted on any command */
  bool writes = false;
  uint32_t range_error = NBD_EINVAL;

  *payload_len = 0;
  if (job->type == NBD_CMD_WRITE ||
      (c->extended && (job->flags & NBD_CMD_FLAG_PAYLOAD_LEN)))
    *payload_len = job->length;

  switch (job->type) {
  case NBD_CMD_READ:
    if (c->structured)
      allowed |= NBD_CMD_FLAG_DF;
    if (job->length > NBD_SERVER_MAX_PAYLOAD)
      return NBD_EINVAL;
    break;
  case NBD_CMD_WRITE:
    if (c->extended)
      allowed |= NBD_CMD_FLAG_PAYLOAD_LEN;
    writes = true;
    range_error = NBD_ENOSPC;
    break;
  case NBD_CMD_FLUSH:
    if (job->offset != 0 || job->length != 0)
      return NBD_EINVAL;
    break;
  case NBD_CMD_TRIM:
    writes = true;
    break;
  case NBD_CMD_CACHE:
    break;
  case NBD_CMD_WRITE_ZEROES:
    allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    writes = true;
    range_error = NBD_ENOSPC;
    break;
  case NBD_CMD_BLOCK_STATUS:
    allowed |= NBD_CMD_FLAG_REQ_ONE;
    if (!c->meta_allocation || job->length == 0)
      return NBD_EINVAL;
    break;
  default:
    return NBD_EINVAL;
  }
  if (job->flags & ~allowed)
    return NBD_EINVAL;
  if (writes && srv->readonly)
    return NBD_EPERM;
  if (job->type == NBD_CMD_WRITE && job->length > NBD_SERVER_MAX_PAYLOAD)
    return NBD_EINVAL;
  if (!in_range)
    return range_error;
  return 0;
}

/* Memory every queued request holds besides its data: the job (with
 * malloc's slack) and, for a structured READ, its chunk table and the
 * iovecs over it. */
#define JOB_OVERHEAD  (sizeof(struct nbd_job) + 64)
#define READ_CHUNKS_OVERHEAD \
  (READ_MAX_SEGMENTS * (sizeof(struct read_segment) + 3 * sizeof(struct iovec)))

/* Bytes of memory a valid request will hold while in flight.  Every
 * request is charged, not only the data: a flood of tiny pipelined READs
 * from a client that does not read its replies once held ~9 KiB per
 * request outside the budget (64 such clients: > 64 MiB RSS). */
static size_t
request_cost(const struct nbd_conn *c, const struct nbd_job *job)
{
  uint64_t n;

  switch (job->type) {
  case NBD_CMD_READ:
  case NBD_CMD_WRITE:
    /* the buffer bufpool really allocates, in whole pages */
    n = (bufpool_size((size_t) job->length) + 4095) & ~(uint64_t) 4095;
    if (job->type == NBD_CMD_READ && c->structured)
      n += READ_CHUNKS_OVERHEAD;
    return (size_t) n + JOB_OVERHEAD;
  case NBD_CMD_BLOCK_STATUS:
    /* engine extent (24 bytes) + wire descriptor (16), at most one per
     * 512 bytes and at most NBD_SERVER_MAX_EXTENTS */
    n = job->length / 512 + 2;
    if ((job->flags & NBD_CMD_FLAG_REQ_ONE))
      n = 1;
    if (n > NBD_SERVER_MAX_EXTENTS)
      n = NBD_SERVER_MAX_EXTENTS;
    return (size_t) n * 40 + JOB_OVERHEAD;
  default:
    return JOB_OVERHEAD;
  }
}

/* Read one request header; 1 at a clean EOF, 0 with *job filled.  The
 * magic is checked before the rest is read, so a client using the wrong
 * header size is dropped at once instead of waiting for more bytes. */
static int
read_request(struct nbd_conn *c, struct nbd_job *job)
{
  union {
    struct nbd_request compact;
    struct nbd_extended_request extended;
  } req;
  uint32_t magic;
  int r = conn_at_eof(c);

  if (r != 0)
    return r < 0 ? r : 1;
  r = conn_read(c, &req, sizeof magic);
  if (r < 0)
    return r;
  memcpy(&magic, &req, sizeof magic);
  magic = be32toh(magic);
  if (magic != (c->extended ? NBD_MAGIC_EXTENDED_REQUEST : NBD_MAGIC_REQUEST))
    return -EPROTO;
  if (c->extended) {
    r = conn_read(c, (uint8_t *) &req + sizeof magic,
                  sizeof req.extended - sizeof magic);
    if (r < 0)
      return r;
    job->flags = be16toh(req.extended.flags);
    job->type = be16toh(req.extended.type);
    job->cookie = be64toh(req.extended.cookie);
    job->offset = be64toh(req.extended.offset);
    job->length = be64toh(req.extended.length);
  } else {
    r = conn_read(c, (uint8_t *) &req + sizeof magic,
                  sizeof req.compact - sizeof magic);
    if (r < 0)
      return r;
    job->flags = be16toh(req.compact.flags);
    job->type = be16toh(req.compact.type);
    job->cookie = be64toh(req.compact.cookie);
    job->offset = be64toh(req.compact.offset);
    job->length = be32toh(req.compact.length);
  }
  return 0;
}

/* Take a slot in this connection's in-flight count (bounded by
 * per_conn_limit: queued jobs cost memory even without payloads). */
static void
conn_slot_acquire(struct nbd_conn *c)
{
  pthread_mutex_lock(&c->lock);
  while (c->inflight >= c->srv->per_conn_limit)
    pthread_cond_wait(&c->cond, &c->lock);
  c->inflight++;
  pthread_mutex_unlock(&c->lock);
}

int
nbd_transmission(struct nbd_conn *c)
{
  struct nbd_server *srv = c->srv;
  struct nbd_job *job = NULL;
  int r;

  r = conn_sender_start(c);
  if (r < 0)
    return r;
  conn_zero_copy_start(c);
  for (;;) {
    uint64_t payload_len;

    job = calloc(1, sizeof *job);
    if (!job) {
      r = -ENOMEM;
      goto out;
    }
    job->conn = c;
    r = read_request(c, job);
    if (r != 0) {
      if (r == 1 || (r == -ECONNRESET && conn_is_broken(c)))
        r = 0;   /* EOF between requests, or torn down after a send error */
      else if (r == -EPROTO)
        nbd_log(srv, NBD_LOG_INFO, "connection %lu: bad request magic", c->id);
      goto out;
    }
    if (job->type == NBD_CMD_DISC) {
      nbd_log(srv, NBD_LOG_DEBUG, "connection %lu: disconnect requested", c->id);
      r = 0;
      goto out;
    }
    job->early_error = validate_request(c, job, &payload_len);
    if (payload_len > NBD_SERVER_MAX_DRAIN) {
      /* Reading that much just to throw it away looks like abuse. */
      nbd_log(srv, NBD_LOG_INFO, "connection %lu: payload of %llu bytes refused",
              c->id, (unsigned long long) payload_len);
      r = -EPROTO;
      goto out;
    }
    if (job->type != NBD_CMD_WRITE && payload_len > 0 && !job->early_error)
      job->early_error = NBD_EINVAL;   /* payloads on other commands: unsupported */

    conn_slot_acquire(c);
    if (!job->early_error) {
      job->budget_cost = request_cost(c, job);
      budget_acquire(c, job->budget_cost);
    }
    if (payload_len > 0 && job->early_error) {
      /* Rejected: consume the payload so the next header is in sync. */
      r = conn_discard(c, payload_len);
    } else if (payload_len > 0) {
      job->payload = bufpool_get(payload_len);
      job->payload_len = payload_len;
      r = job->payload ? conn_read(c, job->payload, payload_len) : -ENOMEM;
    }
    if (r < 0) {
      job_finish(job);   /* releases the slot and the budget */
      job = NULL;
      goto out;
    }
    /* A read whose data is in the page cache (or in holes) runs right
     * here: handing it to a worker (a wakeup and a context switch) costs
     * more than the copy.  Reads that would wait for storage go to the
     * workers, so slow disks still see many requests in parallel. */
    if (job->type != NBD_CMD_READ || nbd_job_try_inline(job) < 0)
      job_submit(job);
    job = NULL;
  }
out:
  free(job);
  return r;
}
