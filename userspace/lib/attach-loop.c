/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* attach-loop.c - the fallback where nbd.ko is absent: the server's FUSE
 * file (the whole virtual disk) goes to a loop device, limited to the chosen
 * partition's byte range, since loop devices on these kernels show no
 * partitions of their own.  Direct I/O stays off: FUSE files do not
 * support it well and the page cache is what makes this path fast. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach-internal.h"
#include "dism-error.h"

#define LOOP_GRAB_TRIES 32           /* another process may take the free loop first */

struct file_io {
  int fd;
};

static int
file_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
  struct file_io *f = ctx;
  size_t done = 0;

  while (done < len) {
    ssize_t n = pread(f->fd, (char *) buf + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO;                   /* the file shrank under us */
    done += (size_t) n;
  }
  return 0;
}

static int
file_size(int fd, const char *name, uint64_t *size)
{
  struct stat st;

  if (fstat(fd, &st) < 0) {
    dism_set_error("%s: %s", name, strerror(errno));
    return -errno;
  }
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, size) < 0) {
      dism_set_error("%s: cannot get the device size: %s", name, strerror(errno));
      return -errno;
    }
    return 0;
  }
  if (!S_ISREG(st.st_mode)) {
    dism_set_error("%s is neither a file nor a block device", name);
    return -EINVAL;
  }
  *size = (uint64_t) st.st_size;
  return 0;
}

/* Bind file_fd to a free loop device; on success *loopfd is open on it. */
static int
loop_bind(int file_fd, const struct dism_attach_request *req, struct dism_attach *a,
          int *loopfd)
{
  struct loop_config cfg;
  char name[32];
  int ctl = -1, fd = -1, r = 0, tries, mode = req->readonly ? O_RDONLY : O_RDWR;

  ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    r = -errno;
    dism_set_error("/dev/loop-control: %s (is the loop driver available?)", strerror(-r));
    goto out;
  }
  memset(&cfg, 0, sizeof cfg);
  cfg.fd = (uint32_t) file_fd;
  cfg.block_size = a->sector_size;
  cfg.info.lo_offset = a->part_offset;
  cfg.info.lo_sizelimit = a->part_size;
  cfg.info.lo_flags = req->readonly ? LO_FLAGS_READ_ONLY : 0;
  /* the name tells our loop devices from others' (dism_attach_alive) */
  snprintf((char *) cfg.info.lo_file_name, LO_NAME_SIZE, "%s", req->backend_id);

  for (tries = 0; tries < LOOP_GRAB_TRIES; tries++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      r = -errno;
      dism_set_error("/dev/loop-control: no free loop device: %s", strerror(-r));
      goto out;
    }
    snprintf(name, sizeof name, "loop%d", n);
    r = dism_attach_dev_node(name, a->fs_dev, sizeof a->fs_dev);
    if (r < 0)
      goto out;
    fd = open(a->fs_dev, mode | O_CLOEXEC);
    if (fd < 0) {
      r = -errno;
      dism_set_error("%s: %s", a->fs_dev, strerror(-r));
      goto out;
    }
    if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
      goto bound;
    r = -errno;
    if (r == -EINVAL || r == -ENOTTY) {
      /* kernels before 5.8 have no LOOP_CONFIGURE */
      if (ioctl(fd, LOOP_SET_FD, file_fd) == 0) {
        if (ioctl(fd, LOOP_SET_STATUS64, &cfg.info) < 0 ||
            (a->sector_size != 512 &&
             ioctl(fd, LOOP_SET_BLOCK_SIZE, (unsigned long) a->sector_size) < 0)) {
          r = -errno;
          ioctl(fd, LOOP_CLR_FD, 0);
          dism_set_error("%s: cannot set offset %" PRIu64 ", size %" PRIu64
                         " and %u-byte sectors: %s", a->fs_dev, a->part_offset,
                         a->part_size, a->sector_size, strerror(-r));
          goto out;
        }
        goto bound;
      }
      r = -errno;
    }
    close(fd);
    fd = -1;
    if (r != -EBUSY) {
      dism_set_error("%s: cannot attach %s: %s", a->fs_dev, req->fuse_file, strerror(-r));
      goto out;
    }
  }
  dism_set_error("no loop device could be attached: each free one was taken by "
                 "another process first (%d tries)", LOOP_GRAB_TRIES);
  r = -EBUSY;
  goto out;
bound:
  *loopfd = fd;
  fd = -1;
  r = 0;
out:
  if (fd >= 0)
    close(fd);
  if (ctl >= 0)
    close(ctl);
  return r;
}

int
dism_attach_loop(const struct dism_attach_request *req, struct dism_attach *out)
{
  struct file_io f = { .fd = -1 };
  struct dism_disk_io io;
  uint64_t size = 0, got = 0;
  int loopfd = -1, r;

  out->method = DISM_ATTACH_LOOP;
  out->nbd_index = -1;
  snprintf(out->backend_id, sizeof out->backend_id, "%s", req->backend_id);
  f.fd = open(req->fuse_file, (req->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (f.fd < 0) {
    r = -errno;
    dism_set_error("%s: %s", req->fuse_file, strerror(-r));
    goto out;
  }
  r = file_size(f.fd, req->fuse_file, &size);
  if (r < 0)
    goto out;
  io = (struct dism_disk_io) { .pread = file_pread, .ctx = &f, .size = size,
                               .name = req->fuse_file };
  r = dism_attach_choose(&io, 0, out);
  if (r < 0)
    goto out;
  r = loop_bind(f.fd, req, out, &loopfd);
  if (r < 0)
    goto out;
  /* check the kernel took the range we asked for */
  if (ioctl(loopfd, BLKGETSIZE64, &got) < 0 || got != out->part_size) {
    r = -EIO;
    dism_set_error("%s: the loop device has %" PRIu64 " bytes, expected %" PRIu64,
                   out->fs_dev, got, out->part_size);
    ioctl(loopfd, LOOP_CLR_FD, 0);
    goto out;
  }
  out->disk_dev[0] = 0;              /* only the partition is attached */
  r = 0;
out:
  if (loopfd >= 0)
    close(loopfd);
  if (f.fd >= 0)
    close(f.fd);
  if (r < 0)
    out->fs_dev[0] = 0;
  return r;
}

/* Is fd's loop device bound to our backend at our offset? */
static bool
loop_is_ours(int fd, const struct dism_attach *a)
{
  struct loop_info64 info;

  if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
    return false;
  return info.lo_offset == a->part_offset && a->backend_id[0] &&
         strncmp((const char *) info.lo_file_name, a->backend_id, LO_NAME_SIZE) == 0;
}

static int
open_loop(const struct dism_attach *a)
{
  if (strncmp(a->fs_dev, "/dev/loop", 9) != 0) {
    dism_set_error("'%s' is not a loop device", a->fs_dev);
    errno = EINVAL;
    return -1;
  }
  return open(a->fs_dev, O_RDONLY | O_CLOEXEC);
}

static const char *
sys_name(const struct dism_attach *a)
{
  return a->fs_dev + 5;              /* "/dev/loop7" -> "loop7" */
}

int
dism_detach_loop(const struct dism_attach *a)
{
  char path[128], val[32];
  int fd, r = 0, waited;

  fd = open_loop(a);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENXIO)
      return 0;                      /* gone already */
    r = -errno;
    dism_set_error("%s: %s", a->fs_dev, strerror(-r));
    return r;
  }
  if (!loop_is_ours(fd, a)) {
    close(fd);
    return 0;                        /* cleared already, maybe reused by others */
  }
  /* a busy loop device is not refused: it is marked to clear itself on
   * last close */
  if (ioctl(fd, LOOP_CLR_FD, 0) < 0 && errno != ENXIO) {
    r = -errno;
    dism_set_error("%s: LOOP_CLR_FD: %s", a->fs_dev, strerror(-r));
  }
  close(fd);
  if (r < 0)
    return r;
  snprintf(path, sizeof path, "/sys/class/block/%s/size", sys_name(a));
  for (waited = 0; waited < ATTACH_DETACH_WAIT_MS; waited += 20) {
    if (dism_attach_read_file(path, val, sizeof val) < 0 || strcmp(val, "0") == 0)
      return 0;
    dism_attach_sleep_ms(20);
  }
  dism_set_error("%s is still in use (mounted?): it will be released when its "
                 "last user closes it", a->fs_dev);
  return -EBUSY;
}

bool
dism_attach_alive_loop(const struct dism_attach *a)
{
  char path[128], val[32];
  bool ours;
  int fd;

  /* sysfs first: no open of a device that may be set to clear on close */
  snprintf(path, sizeof path, "/sys/class/block/%s/loop/offset", sys_name(a));
  if (strncmp(a->fs_dev, "/dev/loop", 9) != 0 || dism_attach_read_file(path, val, sizeof val) < 0)
    return false;
  if (strtoull(val, NULL, 10) != a->part_offset)
    return false;
  fd = open_loop(a);
  if (fd < 0)
    return false;
  ours = loop_is_ours(fd, a);
  close(fd);
  return ours;
}

int
dism_attach_autoclear_loop(const struct dism_attach *a)
{
  struct loop_info64 info;
  int fd, r = 0;

  fd = open_loop(a);
  if (fd < 0) {
    r = -errno;
    dism_set_error("%s: %s", a->fs_dev, strerror(-r));
    return r;
  }
  if (!loop_is_ours(fd, a) || ioctl(fd, LOOP_GET_STATUS64, &info) < 0) {
    r = -ENXIO;
    dism_set_error("%s is no longer attached to %s", a->fs_dev, a->backend_id);
    goto out;
  }
  info.lo_flags |= LO_FLAGS_AUTOCLEAR;
  if (ioctl(fd, LOOP_SET_STATUS64, &info) < 0) {
    r = -errno;
    dism_set_error("%s: cannot set autoclear: %s", a->fs_dev, strerror(-r));
  }
out:
  close(fd);
  return r;
}
