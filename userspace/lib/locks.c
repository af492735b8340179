/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* locks.c - folder and image locks (locks.h).
 *
 * OFD locks (F_OFD_SETLK) rather than flock on one file per thing: one
 * file for all, no lock files to remove (removing a lock file races with
 * its next user), and a range per thing.  Two things whose hashes collide
 * just share a lock; a folder and an image never do (separate ranges). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "locks.h"
#include "operation.h"
#include "path-size.h"

#define RANGE_BITS 40
#define FOLDER_BASE ((off_t) 1 << RANGE_BITS)
#define IMAGE_BASE ((off_t) 2 << RANGE_BITS)
#define WIM_VOLUME_BASE ((off_t) 3 << RANGE_BITS)

static uint64_t
fnv1a(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

static off_t
folder_offset(const char *dir)
{
  uint64_t h = fnv1a(0xcbf29ce484222325ULL, dir, strlen(dir));
  return FOLDER_BASE + (off_t) (h & (((uint64_t) 1 << RANGE_BITS) - 1));
}

static uint64_t
file_hash(uint64_t dev, uint64_t ino)
{
  uint64_t h = fnv1a(0xcbf29ce484222325ULL, &dev, sizeof dev);
  return fnv1a(h, &ino, sizeof ino);
}

static off_t
image_offset(uint64_t dev, uint64_t ino)
{
  return IMAGE_BASE + (off_t) (file_hash(dev, ino) & (((uint64_t) 1 << RANGE_BITS) - 1));
}

static off_t
wim_volume_offset(uint64_t dev, uint64_t ino, unsigned index)
{
  uint64_t h = fnv1a(file_hash(dev, ino), &index, sizeof index);
  return WIM_VOLUME_BASE + (off_t) (h & (((uint64_t) 1 << RANGE_BITS) - 1));
}

static int
open_lock_file(void)
{
  char path[DISM_SUBPATH_MAX];
  int r = dism_private_dir(dism_run_dir(), true);
  if (r < 0)
    return r;
  snprintf(path, sizeof path, "%s/locks", dism_run_dir());
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    r = -errno;
    dism_set_error("cannot open the lock file %s: %s", path, strerror(-r));
    return r;
  }
  return fd;
}

/* One attempt: 0 (held), -EAGAIN (someone else holds it), or an error. */
static int
try_range(int fd, off_t at, bool exclusive)
{
  struct flock fl = { .l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET,
                      .l_start = at, .l_len = 1 };
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
    return 0;
  if (errno == EAGAIN || errno == EACCES)
    return -EAGAIN;
  int r = -errno;
  dism_set_error("cannot lock %s/locks: %s", dism_run_dir(), strerror(-r));
  return r;
}

/* Polling rather than F_OFD_SETLKW: a wait must end when the operation is
 * cancelled (the cancel event, or SIGINT to the CLI), and a blocked fcntl
 * does not see an eventfd. */
static int
take(struct dism_op *o, off_t at, bool exclusive, const char *what)
{
  int fd = open_lock_file();
  if (fd < 0)
    return fd;
  int r;
  unsigned waited_ms = 0, step_ms = 2;
  while ((r = try_range(fd, at, exclusive)) == -EAGAIN) {
    if (waited_ms == 0)
      dism_log(DISM_LOG_INFO, "waiting for another operation on %s", what);
    if (o && dism_op_cancelled(o)) {
      r = dism_op_cancel_error(o, "while waiting for another operation to finish");
      break;
    }
    struct timespec ts = { 0, (long) step_ms * 1000000L };
    nanosleep(&ts, NULL);
    waited_ms += step_ms;
    if (step_ms < 50)
      step_ms *= 2;
  }
  if (r < 0) {
    close(fd);
    return r;
  }
  if (waited_ms)
    dism_log(DISM_LOG_INFO, "%s is free after %u ms", what, waited_ms);
  return fd;
}

int
dism_lock_folder(struct dism_op *o, const char *canonical_dir)
{
  return take(o, folder_offset(canonical_dir), true, canonical_dir);
}

int
dism_lock_image(struct dism_op *o, uint64_t dev, uint64_t ino, bool exclusive)
{
  char what[80];
  snprintf(what, sizeof what, "the image file (device %llu, inode %llu)",
           (unsigned long long) dev, (unsigned long long) ino);
  return take(o, image_offset(dev, ino), exclusive, what);
}

int
dism_lock_wim_volume(struct dism_op *o, uint64_t dev, uint64_t ino, unsigned index)
{
  char what[96];
  snprintf(what, sizeof what, "the metadata volume of image %u of the WIM (device %llu, "
           "inode %llu)", index, (unsigned long long) dev, (unsigned long long) ino);
  return take(o, wim_volume_offset(dev, ino, index), true, what);
}

int
dism_lock_folder_try(const char *canonical_dir)
{
  int fd = open_lock_file();
  if (fd < 0)
    return fd;
  int r = try_range(fd, folder_offset(canonical_dir), true);
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

bool
dism_folder_busy(const char *canonical_dir)
{
  int fd = open_lock_file();
  if (fd < 0)
    return false;
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                      .l_start = folder_offset(canonical_dir), .l_len = 1 };
  bool busy = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  close(fd);
  return busy;
}

void
dism_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* closing the description drops its OFD locks */
}
