/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* raw.c - a raw image file (or block device) as a disk. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "formats.h"

struct raw {
  int fd;
  bool is_blk;
};

static int
raw_pread(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  struct raw *r = d->priv;
  return disk_full_pread(r->fd, d->path, buf, count, offset, false);
}

/* The bytes are the file's: one piece. */
static int
raw_map(struct disk *d, uint64_t count, uint64_t offset, struct disk_map *out)
{
  struct raw *r = d->priv;
  return disk_map_add(out, r->fd, offset, count);
}

static int
raw_pwrite(struct disk *d, const void *buf, size_t count, uint64_t offset,
           unsigned flags)
{
  struct raw *r = d->priv;
  int e = disk_full_pwrite(r->fd, d->path, buf, count, offset);

  if (e == 0 && (flags & DISK_F_FUA) && fdatasync(r->fd) < 0) {
    e = -errno;
    disk_set_error("%s: fdatasync: %s", d->path, strerror(errno));
  }
  return e;
}

static int
raw_flush(struct disk *d)
{
  struct raw *r = d->priv;
  return disk_full_fdatasync(r->fd, d->path);
}

static int
raw_punch(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct raw *r = d->priv;
  int e = 0;

  if (r->is_blk) {
    uint64_t range[2] = { offset, count };
    if (ioctl(r->fd, BLKZEROOUT, range) < 0)
      e = -errno;
  } else if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       (off_t) offset, (off_t) count) < 0) {
    e = -errno;
  }
  if (e == 0 && (flags & DISK_F_FUA))
    e = raw_flush(d);
  return e;
}

static int
raw_trim(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  int e = raw_punch(d, count, offset, flags);
  /* Trim is advisory: a file system without hole punching is fine. */
  return (e == -EOPNOTSUPP || e == -ENOTTY) ? 0 : e;
}

static int
raw_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct raw *r = d->priv;
  int e;

  if (!r->is_blk && (flags & DISK_F_MAY_TRIM)) {
    e = raw_punch(d, count, offset, flags);
    if (e != -EOPNOTSUPP)
      return e;
  }
  if (!r->is_blk &&
      fallocate(r->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                (off_t) offset, (off_t) count) == 0)
    return (flags & DISK_F_FUA) ? raw_flush(d) : 0;
  if (r->is_blk)
    return raw_punch(d, count, offset, flags);
  return -EOPNOTSUPP;   /* the generic layer writes zeroes */
}

static int
raw_extents(struct disk *d, uint64_t count, uint64_t offset,
            struct disk_extents *out)
{
  struct raw *r = d->priv;
  uint64_t end = offset + count;

  if (r->is_blk)
    return disk_extents_add(out, offset, count, 0) < 0 ? -ENOMEM : 0;
  while (offset < end) {
    off_t data = lseek(r->fd, (off_t) offset, SEEK_DATA);
    off_t hole;
    int a;

    if (data < 0) {
      if (errno != ENXIO)   /* no SEEK_DATA: report all data */
        return disk_extents_add(out, offset, end - offset, 0) < 0 ? -ENOMEM : 0;
      data = (off_t) end;   /* hole up to EOF */
    }
    if ((uint64_t) data > offset) {
      uint64_t hend = (uint64_t) data < end ? (uint64_t) data : end;
      a = disk_extents_add(out, offset, hend - offset,
                           DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
      if (a != 0)
        return a < 0 ? -ENOMEM : 0;
      offset = hend;
      if (offset >= end)
        break;
    }
    hole = lseek(r->fd, (off_t) offset, SEEK_HOLE);
    if (hole < 0 || (uint64_t) hole > end)
      hole = (off_t) end;
    a = disk_extents_add(out, offset, (uint64_t) hole - offset, 0);
    if (a != 0)
      return a < 0 ? -ENOMEM : 0;
    offset = (uint64_t) hole;
  }
  return 0;
}

static int
raw_cache(struct disk *d, uint64_t count, uint64_t offset)
{
  struct raw *r = d->priv;
  posix_fadvise(r->fd, (off_t) offset, (off_t) count, POSIX_FADV_WILLNEED);
  return 0;
}

static int
raw_info(struct disk *d, struct disk_info *info)
{
  struct raw *r = d->priv;
  struct stat st;

  info->subtype = r->is_blk ? "block device" : "file";
  if (!r->is_blk && fstat(r->fd, &st) == 0)
    info->allocated_bytes = (uint64_t) st.st_blocks * 512;
  else
    info->allocated_bytes = d->size;
  return 0;
}

static void
raw_close(struct disk *d)
{
  struct raw *r = d->priv;
  if (r) {
    close(r->fd);
    free(r);
  }
}

static const struct disk_ops raw_ops = {
  .name    = "raw",
  .pread   = raw_pread,
  .pwrite  = raw_pwrite,
  .flush   = raw_flush,
  .trim    = raw_trim,
  .zero    = raw_zero,
  .extents = raw_extents,
  .map     = raw_map,
  .cache   = raw_cache,
  .info    = raw_info,
  .close   = raw_close,
};

static int
raw_open(const char *path, int fd, const struct disk_open_opts *opts,
         struct disk **out)
{
  struct stat st;
  struct disk *d;
  struct raw *r;

  if (fstat(fd, &st) < 0) {
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    return -errno;
  }
  d = disk_new(&raw_ops, path);
  r = calloc(1, sizeof *r);
  if (!d || !r) {
    free(r);
    disk_close(d);
    return -ENOMEM;
  }
  r->fd = fd;
  r->is_blk = S_ISBLK(st.st_mode);
  d->priv = r;
  if (r->is_blk) {
    uint64_t sz = 0;
    int lbs = 512, pbs = 512;
    ioctl(fd, BLKGETSIZE64, &sz);
    ioctl(fd, BLKSSZGET, &lbs);
    ioctl(fd, BLKPBSZGET, &pbs);
    d->size = sz;
    d->logical_sector = (uint32_t) lbs;
    d->physical_sector = (uint32_t) pbs;
  } else {
    d->size = (uint64_t) st.st_size;
  }
  d->readonly = opts->readonly;
  *out = d;
  return 0;
}

/* Raw takes whatever the other formats do not recognise. */
static bool
raw_probe(int fd, uint64_t file_size)
{
  (void) fd;
  (void) file_size;
  return true;
}

const struct disk_format dism_format_raw = {
  .name = "raw",
  .probe = raw_probe,
  .open = raw_open,
};
