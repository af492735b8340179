/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* disk.c - the generic layer over disk backends: open/probe, fallbacks,
 * extents lists, errors and parent-chain handling. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "disk.h"
#include "formats.h"
#include "test-hooks.h"

static __thread char last_error[1024];

void
disk_set_verror(const char *fmt, va_list ap)
{
  vsnprintf(last_error, sizeof last_error, fmt, ap);
}

void
disk_set_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  disk_set_verror(fmt, ap);
  va_end(ap);
}

const char *
disk_last_error(void)
{
  return last_error[0] ? last_error : "unknown error";
}

struct disk *
disk_new(const struct disk_ops *ops, const char *path)
{
  struct disk *d = calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->ops = ops;
  d->path = strdup(path ? path : "");
  if (!d->path) {
    free(d);
    return NULL;
  }
  d->logical_sector = 512;
  d->physical_sector = 512;
  return d;
}

void
disk_close(struct disk *d)
{
  if (!d)
    return;
  if (d->ops && d->ops->close)
    d->ops->close(d);
  disk_close(d->parent);
  free(d->path);
  free(d);
}

/* The formats, in detection order: each probe is asked in turn, and raw,
 * which takes anything, comes last. */
static const struct disk_format *const formats[] = {
  &dism_format_vhdx,
  &dism_format_vhd,
  &dism_format_wim,
  &dism_format_raw,
};
#define NFORMATS (sizeof formats / sizeof formats[0])

static const struct disk_format *
format_by_name(const char *name)
{
  for (size_t i = 0; i < NFORMATS; i++)
    if (strcmp(formats[i]->name, name) == 0)
      return formats[i];
  return NULL;
}

static const struct disk_format *
format_probe(int fd, uint64_t file_size)
{
  for (size_t i = 0; i < NFORMATS - 1; i++)
    if (formats[i]->probe(fd, file_size))
      return formats[i];
  return formats[NFORMATS - 1];
}

const char *
disk_format_name(size_t i)
{
  return i < NFORMATS ? formats[i]->name : NULL;
}

bool
disk_format_known(const char *name)
{
  return format_by_name(name) != NULL;
}

const char *
disk_probe_format(int fd, uint64_t file_size)
{
  return format_probe(fd, file_size)->name;
}

int
disk_open(const char *path, const struct disk_open_opts *opts_in,
          struct disk **out)
{
  struct disk_open_opts opts = { 0 };
  const struct disk_format *fmt;
  struct stat st;
  int fd = -1, r;

  if (opts_in)
    opts = *opts_in;
  *out = NULL;
  dism_test_hooks_init();

  /* O_NONBLOCK: a parent path read from an image may name a FIFO, whose
   * open would wait forever for a writer.  Cleared once the file is known
   * to be a regular file or a block device. */
  fd = open(path, (opts.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    r = -errno;
    disk_set_error("%s: cannot open: %s", path, strerror(errno));
    return r;
  }
  if (fstat(fd, &st) < 0) {
    r = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    r = -EINVAL;
    disk_set_error("%s: not a regular file or block device", path);
    goto out;
  }
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
    r = -errno;
    disk_set_error("%s: fcntl: %s", path, strerror(errno));
    goto out;
  }
  for (const struct disk_chain_link *l = opts.chain; l; l = l->next)
    if (l->dev == (uint64_t) st.st_dev && l->ino == (uint64_t) st.st_ino) {
      r = -ELOOP;
      disk_set_error("%s: parent loop: this file is already in the chain", path);
      goto out;
    }

  if (opts.format) {
    fmt = format_by_name(opts.format);
    if (!fmt) {
      r = -EINVAL;
      disk_set_error("%s: unknown format '%s'", path, opts.format);
      goto out;
    }
  } else {
    uint64_t fsize = (uint64_t) st.st_size;
    if (S_ISBLK(st.st_mode)) {
      off_t end = lseek(fd, 0, SEEK_END);
      fsize = end > 0 ? (uint64_t) end : 0;
    }
    fmt = format_probe(fd, fsize);
  }

  /* The backend takes ownership of fd on success. */
  r = fmt->open(path, fd, &opts, out);
  if (r == 0) {
    (*out)->readonly = (*out)->readonly || opts.readonly;
    return 0;
  }
out:
  close(fd);
  return r;
}

int
disk_open_parent(const char *parent_path, const struct disk_open_opts *child_opts,
                 int child_fd, struct disk **out)
{
  struct disk_open_opts popts = { 0 };
  struct disk_chain_link link;
  struct stat st;

  if (child_opts->depth + 1 >= DISK_MAX_CHAIN_DEPTH) {
    disk_set_error("%s: parent chain deeper than %d images", parent_path,
                   DISK_MAX_CHAIN_DEPTH);
    return -ELOOP;
  }
  if (fstat(child_fd, &st) < 0) {
    disk_set_error("%s: fstat: %s", parent_path, strerror(errno));
    return -errno;
  }
  link.dev = st.st_dev;
  link.ino = st.st_ino;
  link.next = child_opts->chain;
  popts.readonly = true;
  popts.allow_bad_checksum = child_opts->allow_bad_checksum;
  popts.depth = child_opts->depth + 1;
  popts.chain = &link;
  /* popts.chain points at the stack; disk_open only reads it while opening. */
  return disk_open(parent_path, &popts, out);
}

/* Set by disk_pread_nowait for the reads it makes on this thread. */
static __thread bool nowait_reads;

bool
disk_nowait_reads(void)
{
  return nowait_reads;
}

int
disk_full_pread(int fd, const char *path, void *buf, size_t count,
                uint64_t offset, bool zero_fill_eof)
{
  char *p = buf;

  while (count > 0) {
    ssize_t n;

    if (nowait_reads) {
      struct iovec iov = { p, count };
      n = preadv2(fd, &iov, 1, (off_t) offset, RWF_NOWAIT);
      /* Would block, partly cached, or no RWF_NOWAIT here: not now. */
      if ((n < 0 && errno != EINTR) || (n > 0 && (size_t) n < count))
        return -EAGAIN;
    } else {
      n = pread(fd, p, count, (off_t) offset);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      disk_set_error("%s: read at offset %llu: %s", path,
                     (unsigned long long) offset, strerror(e));
      return -e;
    }
    if (n == 0) {
      if (zero_fill_eof) {
        memset(p, 0, count);
        return 0;
      }
      disk_set_error("%s: truncated: read at offset %llu is past the end of the file",
                     path, (unsigned long long) offset);
      return -EIO;
    }
    p += n;
    count -= (size_t) n;
    offset += (uint64_t) n;
  }
  return 0;
}

int
disk_full_pwrite(int fd, const char *path, const void *buf, size_t count,
                 uint64_t offset)
{
  const char *p = buf;

  /* The crash tests' kill point (DISM_TEST_CRASH_AFTER_WRITES, read by
   * disk_open): one flag test when off. */
  if (__builtin_expect(__atomic_load_n(&dism_test_crash_armed, __ATOMIC_RELAXED), 0))
    dism_test_before_write();

  while (count > 0) {
    ssize_t n = pwrite(fd, p, count, (off_t) offset);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      disk_set_error("%s: write at offset %llu: %s", path,
                     (unsigned long long) offset, strerror(e));
      return -e;
    }
    p += n;
    count -= (size_t) n;
    offset += (uint64_t) n;
  }
  return 0;
}

int
disk_full_fdatasync(int fd, const char *path)
{
  if (fdatasync(fd) < 0) {
    int e = errno;
    disk_set_error("%s: fdatasync: %s", path, strerror(e));
    return -e;
  }
  return 0;
}

int
disk_file_reserve(int fd, const char *path, uint64_t off, uint64_t len)
{
  int e;

  if (len == 0 || fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t) off, (off_t) len) == 0)
    return 0;
  e = errno;
  if (e == EOPNOTSUPP)
    return 0;
  disk_set_error("%s: cannot allocate %llu bytes at offset %llu: %s", path,
                 (unsigned long long) len, (unsigned long long) off, strerror(e));
  return -e;
}

int
disk_file_reserve_tail(int fd, const char *path, uint64_t off, uint64_t len,
                       uint64_t *reserved_end)
{
  int r = disk_file_reserve(fd, path, off, len);

  if (r < 0)
    disk_file_unreserve(fd, off + len);    /* a partial allocation */
  else if (off + len > *reserved_end)
    *reserved_end = off + len;
  return r;
}

void
disk_file_unreserve(int fd, uint64_t end)
{
  struct stat st;

  if (fstat(fd, &st) == 0 && (uint64_t) st.st_size < end)
    (void) fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size,
                     (off_t) (end - (uint64_t) st.st_size));
}

bool
disk_is_zero(const void *buf, size_t len)
{
  const unsigned char *p = buf;

  /* Check the first 16 bytes, then compare the buffer with itself shifted:
   * memcmp is vectorised, a byte loop is not. */
  for (size_t i = 0; i < len && i < 16; i++)
    if (p[i])
      return false;
  return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

int
disk_pread(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  return d->ops->pread(d, buf, count, offset);
}

int
disk_pread_nowait(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  int r;

  nowait_reads = true;
  r = d->ops->pread(d, buf, count, offset);
  nowait_reads = false;
  return r;
}

int
disk_pwrite(struct disk *d, const void *buf, size_t count, uint64_t offset,
            unsigned flags)
{
  if (d->readonly || !d->ops->pwrite) {
    disk_set_error("%s: read-only", d->path);
    return -EROFS;
  }
  return d->ops->pwrite(d, buf, count, offset, flags);
}

int
disk_flush(struct disk *d)
{
  if (d->readonly || !d->ops->flush)
    return 0;
  return d->ops->flush(d);
}

int
disk_reserve(struct disk *d, const struct disk_range *r, size_t n)
{
  if (d->readonly || !d->ops->reserve)
    return 0;
  return d->ops->reserve(d, r, n);
}

int
disk_trim(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  if (d->readonly) {
    disk_set_error("%s: read-only", d->path);
    return -EROFS;
  }
  if (!d->ops->trim)
    return (flags & DISK_F_FUA) ? disk_flush(d) : 0;   /* trim is a hint */
  return d->ops->trim(d, count, offset, flags);
}

int
disk_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  static const size_t chunk = 1 << 20;
  void *zeroes;
  int r = 0;

  if (d->readonly || !d->ops->pwrite) {
    disk_set_error("%s: read-only", d->path);
    return -EROFS;
  }
  if (d->ops->zero) {
    r = d->ops->zero(d, count, offset, flags);
    if (r != -EOPNOTSUPP || (flags & DISK_F_FAST_ZERO))
      return r;
  } else if (flags & DISK_F_FAST_ZERO) {
    return -ENOTSUP;
  }
  /* Fallback: write zeroes. */
  zeroes = calloc(1, chunk);
  if (!zeroes)
    return -ENOMEM;
  while (count > 0) {
    size_t n = count < chunk ? (size_t) count : chunk;
    r = d->ops->pwrite(d, zeroes, n, offset, flags & DISK_F_FUA);
    if (r < 0)
      break;
    count -= n;
    offset += n;
  }
  free(zeroes);
  return r < 0 ? r : 0;
}

int
disk_extents(struct disk *d, uint64_t count, uint64_t offset,
             struct disk_extents *out)
{
  if (!d->ops->extents)
    return disk_extents_add(out, offset, count, 0) < 0 ? -ENOMEM : 0;
  return d->ops->extents(d, count, offset, out);
}

int
disk_map(struct disk *d, uint64_t count, uint64_t offset, struct disk_map *out)
{
  int r = -ENOTSUP;

  out->n = 0;
  if (d->ops->map)
    r = d->ops->map(d, count, offset, out);
  if (r < 0)
    out->n = 0;
  return r;
}

int
disk_map_nowait(struct disk *d, uint64_t count, uint64_t offset,
                struct disk_map *out)
{
  int r;

  nowait_reads = true;
  r = disk_map(d, count, offset, out);
  nowait_reads = false;
  return r;
}

int
disk_map_add(struct disk_map *m, int fd, uint64_t offset, uint64_t length)
{
  struct disk_piece *last = m->n ? &m->v[m->n - 1] : NULL;

  if (length == 0)
    return 0;
  if (fd < 0)
    offset = 0;
  if (last && last->fd == fd &&
      (fd < 0 || last->offset + last->length == offset)) {
    last->length += length;
    return 0;
  }
  if (m->n >= m->max)
    return -E2BIG;
  m->v[m->n++] = (struct disk_piece) { fd, offset, length };
  return 0;
}

int
disk_map_parent(struct disk *parent, uint64_t count, uint64_t offset,
                struct disk_map *out)
{
  uint64_t m = 0;
  int r;

  if (offset < parent->size) {
    m = parent->size - offset < count ? parent->size - offset : count;
    /* The parent appends to the same map. */
    if (!parent->ops->map)
      return -ENOTSUP;
    if ((r = parent->ops->map(parent, m, offset, out)) < 0)
      return r;
  }
  return disk_map_add(out, -1, 0, count - m);
}

int
disk_cache(struct disk *d, uint64_t count, uint64_t offset)
{
  if (!d->ops->cache)
    return 0;
  return d->ops->cache(d, count, offset);
}

int
disk_info(struct disk *d, struct disk_info *info)
{
  struct stat st;

  memset(info, 0, sizeof *info);
  info->format = d->ops->name;
  info->subtype = "";
  info->virtual_size = d->size;
  info->logical_sector = d->logical_sector;
  info->physical_sector = d->physical_sector;
  if (d->path[0] && stat(d->path, &st) == 0)
    info->file_size = (uint64_t) st.st_size;
  return d->ops->info ? d->ops->info(d, info) : 0;
}

void
disk_extents_init(struct disk_extents *e, uint64_t start, uint64_t end,
                  size_t max)
{
  memset(e, 0, sizeof *e);
  e->start = start;
  e->end = end;
  e->max = max ? max : SIZE_MAX;
}

int
disk_extents_add(struct disk_extents *e, uint64_t offset, uint64_t length,
                 uint32_t flags)
{
  if (length == 0)
    return 0;
  if (e->n > 0) {
    struct disk_extent *last = &e->v[e->n - 1];
    if (last->offset + last->length == offset && last->flags == flags) {
      last->length += length;
      return offset + length >= e->end ? 1 : 0;
    }
  }
  if (e->n >= e->max)
    return 1;
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 16;
    struct disk_extent *v = realloc(e->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n++] = (struct disk_extent) { offset, length, flags };
  return (offset + length >= e->end || e->n >= e->max) ? 1 : 0;
}

void
disk_extents_free(struct disk_extents *e)
{
  free(e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}
