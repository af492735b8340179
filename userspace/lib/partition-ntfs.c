/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* partition-ntfs.c - which NTFS partition holds Windows, and the choice.
 *
 * libntfs-3g reads the volume through our own device operations (a byte
 * range of the disk read with the dism_disk_io callback), so the check needs
 * no temporary block device for either method and never writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/volume.h>

#include "dism-error.h"
#include "partition.h"

struct range_dev {
  const struct dism_disk_io *io;
  uint64_t offset, size;
  uint64_t pos;
};

static int
rd_open(struct ntfs_device *dev, int flags)
{
  if ((flags & O_ACCMODE) != O_RDONLY) {
    errno = EROFS;
    return -1;
  }
  NDevSetOpen(dev);
  NDevSetReadOnly(dev);
  return 0;
}

static int
rd_close(struct ntfs_device *dev)
{
  NDevClearOpen(dev);
  return 0;
}

static s64
rd_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset)
{
  struct range_dev *rd = dev->d_private;
  int r;

  if (count < 0 || offset < 0) {
    errno = EINVAL;
    return -1;
  }
  if ((uint64_t) offset >= rd->size)
    return 0;
  if ((uint64_t) count > rd->size - (uint64_t) offset)
    count = (s64) (rd->size - (uint64_t) offset);
  r = rd->io->pread(rd->io->ctx, buf, (size_t) count, rd->offset + (uint64_t) offset);
  if (r < 0) {
    errno = -r;
    return -1;
  }
  return count;
}

static s64
rd_seek(struct ntfs_device *dev, s64 offset, int whence)
{
  struct range_dev *rd = dev->d_private;
  s64 base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (s64) rd->pos :
             whence == SEEK_END ? (s64) rd->size : -1;

  if (base < 0 || base + offset < 0) {
    errno = EINVAL;
    return -1;
  }
  rd->pos = (uint64_t) (base + offset);
  return (s64) rd->pos;
}

static s64
rd_read(struct ntfs_device *dev, void *buf, s64 count)
{
  struct range_dev *rd = dev->d_private;
  s64 n = rd_pread(dev, buf, count, (s64) rd->pos);

  if (n > 0)
    rd->pos += (uint64_t) n;
  return n;
}

static s64
rd_write(struct ntfs_device *dev, const void *buf, s64 count)
{
  (void) dev; (void) buf; (void) count;
  errno = EROFS;
  return -1;
}

static s64
rd_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset)
{
  (void) dev; (void) buf; (void) count; (void) offset;
  errno = EROFS;
  return -1;
}

static int
rd_sync(struct ntfs_device *dev)
{
  (void) dev;
  return 0;
}

static int
rd_stat(struct ntfs_device *dev, struct stat *st)
{
  struct range_dev *rd = dev->d_private;

  memset(st, 0, sizeof *st);
  st->st_mode = S_IFREG | 0400;
  st->st_size = (off_t) rd->size;
  return 0;
}

static int
rd_ioctl(struct ntfs_device *dev, unsigned long request, void *argp)
{
  (void) dev; (void) request; (void) argp;
  errno = ENOTTY;
  return -1;
}

static struct ntfs_device_operations range_dev_ops = {
  .open = rd_open, .close = rd_close, .seek = rd_seek, .read = rd_read,
  .write = rd_write, .pread = rd_pread, .pwrite = rd_pwrite, .sync = rd_sync,
  .stat = rd_stat, .ioctl = rd_ioctl,
};

int
dism_ntfs_open_range(const struct dism_disk_io *io, uint64_t offset, uint64_t size,
                     ntfs_volume **out)
{
  struct range_dev *rd = NULL;
  struct ntfs_device *dev = NULL;
  char name[64];
  int r = 0;

  *out = NULL;
  /* a library never prints: libntfs-3g logs to stderr unless told not to */
  ntfs_log_set_handler(ntfs_log_handler_null);
  snprintf(name, sizeof name, "dism-probe@%" PRIu64, offset);
  rd = malloc(sizeof *rd);
  if (rd)
    *rd = (struct range_dev) { .io = io, .offset = offset, .size = size };
  dev = rd ? ntfs_device_alloc(name, 0, &range_dev_ops, rd) : NULL;
  if (!dev) {
    r = -ENOMEM;
    dism_set_error("out of memory reading %s", io->name);
    goto out;
  }
  errno = 0;
  *out = ntfs_device_mount(dev, NTFS_MNT_RDONLY | NTFS_MNT_IGNORE_HIBERFILE);
  if (!*out) {
    r = errno ? -errno : -EIO;
    dism_set_error("%s: the NTFS volume at offset %" PRIu64 " cannot be read: %s",
                   io->name, offset, strerror(-r));
    goto out;
  }
  dev = NULL;                        /* the volume owns it now */
  rd = NULL;                         /* freed by dism_ntfs_close_range */
  /* names whatever their case, as Windows itself would find them */
  ntfs_set_ignore_case(*out);
out:
  if (dev)
    ntfs_device_free(dev);
  free(rd);
  return r;
}

void
dism_ntfs_close_range(ntfs_volume *vol)
{
  if (!vol)
    return;
  void *rd = vol->dev->d_private;
  ntfs_umount(vol, FALSE);
  free(rd);
}

int
dism_ntfs_holds_windows(const struct dism_disk_io *io, uint64_t offset, uint64_t size)
{
  ntfs_volume *vol = NULL;
  ntfs_inode *ni = NULL;
  int r = dism_ntfs_open_range(io, offset, size, &vol);

  if (r < 0)
    return r;
  ni = ntfs_pathname_to_inode(vol, NULL, "/Windows");
  r = ni && (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) ? 1 : 0;
  if (ni)
    ntfs_inode_close(ni);
  dism_ntfs_close_range(vol);
  return r;
}

int
dism_part_choose(const struct dism_disk_io *io, struct dism_part_table *t,
                 struct dism_part_choice *c)
{
  const struct dism_part *best = NULL;
  char list[512];
  unsigned i, nntfs = 0;
  bool windows = false;
  int r;

  memset(c, 0, sizeof *c);
  for (i = 0; i < t->count; i++) {
    struct dism_part *p = &t->part[i];
    if (!p->ntfs)
      continue;
    nntfs++;
    r = dism_ntfs_holds_windows(io, p->offset, p->size);
    p->windows = r == 1;
    if (r == 1 && !windows) {
      best = p;
      windows = true;
    } else if (!windows && (!best || p->size > best->size)) {
      best = p;
    }
  }
  if (best) {
    c->number = (int) best->number;
    c->offset = best->offset;
    c->size = best->size;
    snprintf(c->reason, sizeof c->reason, "partition %u of %u (%s%s, NTFS, %s)",
             best->number, t->count, t->kind, t->gpt_backup ? " from the backup header" : "",
             windows ? "holds \\Windows" :
             nntfs > 1 ? "the largest NTFS partition, no \\Windows" : "no \\Windows");
    dism_clear_error();
    return 0;
  }
  if (t->whole_disk_ntfs) {
    c->number = 0;
    c->offset = 0;
    c->size = t->disk_size;
    r = dism_ntfs_holds_windows(io, 0, t->disk_size);
    snprintf(c->reason, sizeof c->reason, "the whole disk (no partition table, NTFS%s)",
             r == 1 ? ", holds \\Windows" : "");
    dism_clear_error();
    return 0;
  }
  dism_part_list(t, list, sizeof list);
  dism_set_error("no NTFS partition in %s: found %s (%s)", io->name, list,
                 strcmp(t->kind, "none") ? t->kind : "no MBR or GPT");
  return -ENOENT;
}
