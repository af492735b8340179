/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse-export.c - the virtual disk as one regular file through FUSE.
 *
 * The fallback where nbd.ko is absent: the server mounts a FUSE file system
 * over a regular file (like nbdfuse), whose content is the whole virtual
 * disk, served by the same engine as the NBD exports in this process; the
 * helper attaches that file (or a partition's byte range of it) to a loop
 * device.  Requests go straight to the shared disk: no NBD hop, no copy
 * beyond FUSE's own.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse-export.h"

struct fuse_export {
  struct disk *disk;
  bool readonly;
  struct fuse *fuse;
  pthread_t thread;
  bool mounted, running;
  int loop_result;
  int (*unmount)(void *opaque);   /* NULL: fuse_unmount */
  void *unmount_opaque;
  nbd_log_fn log;                 /* NULL: failures are not logged */
  void *log_opaque;
};

/* A failed request, with the engine's message (which names the image and
 * the problem), as the NBD side logs it (transmission.c). */
static void
log_failure(struct fuse_export *fe, const char *what, size_t n, off_t offset, int r)
{
  char msg[1024];
  if (!fe->log || r == -ENOTSUP)
    return;
  snprintf(msg, sizeof msg, "fuse %s at %lld+%zu: %s", what, (long long) offset, n,
           disk_last_error()[0] ? disk_last_error() : strerror(-r));
  fe->log(fe->log_opaque, NBD_LOG_ERROR, msg);
}

static struct fuse_export *
export_of_context(void)
{
  return fuse_get_context()->private_data;
}

static void *
fe_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  /* The page cache would hold a second copy of what the loop device and
   * ntfs-3g cache already, and go stale across a commit: bypass it. */
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->attr_timeout = 3600;
  cfg->entry_timeout = 3600;
  cfg->use_ino = 1;
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  return export_of_context();
}

static int
fe_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
  struct fuse_export *fe = export_of_context();

  (void) fi;
  if (strcmp(path, "/") != 0)
    return -ENOENT;
  memset(st, 0, sizeof *st);
  st->st_ino = 1;
  st->st_mode = S_IFREG | (fe->readonly ? 0400 : 0600);
  st->st_nlink = 1;
  st->st_size = (off_t) fe->disk->size;
  st->st_blksize = (blksize_t) fe->disk->logical_sector;
  st->st_blocks = (blkcnt_t) ((fe->disk->size + 511) / 512);
  return 0;
}

static int
fe_open(const char *path, struct fuse_file_info *fi)
{
  struct fuse_export *fe = export_of_context();

  if (strcmp(path, "/") != 0)
    return -ENOENT;
  if (fe->readonly && (fi->flags & O_ACCMODE) != O_RDONLY)
    return -EROFS;
  fi->direct_io = 1;
  return 0;
}

/* Clamp [offset, offset+size) to the disk; returns the usable length. */
static size_t
clamp(const struct fuse_export *fe, size_t size, off_t offset)
{
  if (offset < 0 || (uint64_t) offset >= fe->disk->size)
    return 0;
  if (size > fe->disk->size - (uint64_t) offset)
    size = (size_t) (fe->disk->size - (uint64_t) offset);
  return size;
}

static int
fe_read(const char *path, char *buf, size_t size, off_t offset,
        struct fuse_file_info *fi)
{
  struct fuse_export *fe = export_of_context();
  size_t n = clamp(fe, size, offset);
  int r;

  (void) path;
  (void) fi;
  if (n == 0)
    return 0;
  r = disk_pread(fe->disk, buf, n, (uint64_t) offset);
  if (r < 0)
    log_failure(fe, "read", n, offset, r);
  return r < 0 ? r : (int) n;
}

static int
fe_write(const char *path, const char *buf, size_t size, off_t offset,
         struct fuse_file_info *fi)
{
  struct fuse_export *fe = export_of_context();
  size_t n = clamp(fe, size, offset);
  int r;

  (void) path;
  if (fe->readonly)
    return -EROFS;
  if (n < size)
    return -ENOSPC;       /* a disk does not grow */
  r = disk_pwrite(fe->disk, buf, n, (uint64_t) offset,
                  (fi->flags & (O_SYNC | O_DSYNC)) ? DISK_F_FUA : 0);
  if (r < 0)
    log_failure(fe, "write", n, offset, r);
  return r < 0 ? r : (int) n;
}

static int
fe_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
  (void) path;
  (void) datasync;
  (void) fi;
  return disk_flush(export_of_context()->disk);
}

static int
fe_fallocate(const char *path, int mode, off_t offset, off_t length,
             struct fuse_file_info *fi)
{
  struct fuse_export *fe = export_of_context();
  size_t n = clamp(fe, (size_t) length, offset);

  (void) path;
  (void) fi;
  if (fe->readonly)
    return -EROFS;
  if (!(mode & FALLOC_FL_KEEP_SIZE) && n < (size_t) length)
    return -ENOSPC;
  if (n == 0)
    return 0;
  /* The loop driver turns discard into PUNCH_HOLE and write-zeroes into
   * ZERO_RANGE (or PUNCH_HOLE): map them to the engine's trim and zero. */
  if (mode & FALLOC_FL_PUNCH_HOLE)
    return disk_zero(fe->disk, n, (uint64_t) offset, DISK_F_MAY_TRIM);
  if (mode & FALLOC_FL_ZERO_RANGE)
    return disk_zero(fe->disk, n, (uint64_t) offset, 0);
  if ((mode & ~FALLOC_FL_KEEP_SIZE) == 0)
    return 0;             /* plain allocation: every byte already exists */
  return -EOPNOTSUPP;
}

static int
fe_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
  (void) path;
  (void) fi;
  return (uint64_t) size == export_of_context()->disk->size ? 0 : -EPERM;
}

static const struct fuse_operations fe_ops = {
  .init      = fe_init,
  .getattr   = fe_getattr,
  .open      = fe_open,
  .read      = fe_read,
  .write     = fe_write,
  .fsync     = fe_fsync,
  .fallocate = fe_fallocate,
  .truncate  = fe_truncate,
};

static void *
loop_thread(void *arg)
{
  struct fuse_export *fe = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();

  if (cfg) {
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    fuse_loop_cfg_set_max_threads(cfg, 16);
    fuse_loop_cfg_set_idle_threads(cfg, 4);
  }
  fe->loop_result = cfg ? fuse_loop_mt(fe->fuse, cfg) : -ENOMEM;
  fuse_loop_cfg_destroy(cfg);
  return NULL;
}

int
fuse_export_mount(struct disk *disk, const char *path, bool readonly,
                  struct fuse_export **out)
{
  char fsname[128];
  char *argv[] = { "dism-nbd-server", "-o", fsname, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(3, argv);
  struct fuse_export *fe;
  struct stat st;
  int fd, r;

  /* The mount point is a regular file; create it if needed. */
  if (stat(path, &st) < 0) {
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      r = -errno;
      disk_set_error("%s: cannot create the FUSE file: %s", path, strerror(errno));
      return r;
    }
    close(fd);
  } else if (!S_ISREG(st.st_mode)) {
    disk_set_error("%s: the FUSE file must be a regular file", path);
    return -EINVAL;
  }
  snprintf(fsname, sizeof fsname,
           "fsname=dism,subtype=dism-disk,default_permissions%s",
           readonly ? ",ro" : "");
  fe = calloc(1, sizeof *fe);
  if (!fe)
    return -ENOMEM;
  fe->disk = disk;
  fe->readonly = readonly || disk->readonly;
  fe->fuse = fuse_new(&args, &fe_ops, sizeof fe_ops, fe);
  if (!fe->fuse) {
    disk_set_error("%s: cannot set up FUSE", path);
    r = -EIO;
    goto fail;
  }
  if (fuse_mount(fe->fuse, path) != 0) {
    disk_set_error("%s: cannot mount FUSE over it (is /dev/fuse there?)", path);
    r = -EIO;
    goto fail;
  }
  fe->mounted = true;
  fuse_opt_free_args(&args);
  *out = fe;
  return 0;

fail:
  fuse_opt_free_args(&args);
  if (fe->fuse)
    fuse_destroy(fe->fuse);
  free(fe);
  return r;
}

void
fuse_export_set_log(struct fuse_export *fe, nbd_log_fn fn, void *opaque)
{
  fe->log = fn;
  fe->log_opaque = opaque;
}

void
fuse_export_set_unmount(struct fuse_export *fe, int (*fn)(void *opaque), void *opaque)
{
  fe->unmount = fn;
  fe->unmount_opaque = opaque;
}

int
fuse_export_serve(struct fuse_export *fe)
{
  int r = pthread_create(&fe->thread, NULL, loop_thread, fe);

  if (r != 0) {
    disk_set_error("cannot start the FUSE thread: %s", strerror(r));
    return -r;
  }
  fe->running = true;
  return 0;
}

int
fuse_export_start(struct disk *disk, const char *path, bool readonly,
                  struct fuse_export **out)
{
  struct fuse_export *fe;
  int r = fuse_export_mount(disk, path, readonly, &fe);

  if (r < 0)
    return r;
  r = fuse_export_serve(fe);
  if (r < 0) {
    fuse_export_stop(fe);
    return r;
  }
  *out = fe;
  return 0;
}

/* Unmount through the hook if there is one (the sandboxed server cannot
 * unmount itself); true once the mount is gone. */
static bool
unmount(struct fuse_export *fe)
{
  fe->mounted = false;
  if (!fe->unmount) {
    fuse_unmount(fe->fuse);
    return true;
  }
  return fe->unmount(fe->unmount_opaque) == 0;
}

int
fuse_export_stop(struct fuse_export *fe)
{
  bool hooked;

  if (!fe)
    return 0;
  hooked = fe->unmount != NULL && fe->mounted;
  if (fe->running) {
    fuse_exit(fe->fuse);
    /* Unmounting ends the session's read loop in every worker.  If it
     * could not be done the workers may still be blocked in the kernel, or
     * serving: leave them (and the session, and the disk) to the process's
     * exit. */
    if (!unmount(fe))
      return -EBUSY;
    pthread_join(fe->thread, NULL);
  }
  if (fe->mounted)
    unmount(fe);
  /* After the hook's unmount the connection is gone: libfuse sees that
   * (POLLERR on its fd) and only frees its state. */
  if (hooked)
    fuse_unmount(fe->fuse);
  fuse_destroy(fe->fuse);
  free(fe);
  return 0;
}
