/* SPDX-License-Identifier: GPL-2.0-or-later */
/* crash-shim.c - an LD_PRELOAD fault injector for the crash tests.
 *
 *   CRASH_SHIM_PATH=FILE     the file whose writes are counted
 *   CRASH_SHIM_AFTER=N       SIGKILL the process just before its Nth write
 *                            (write, pwrite, writev, pwritev, ftruncate,
 *                            fsync, fdatasync) to FILE; N >= 1
 *   CRASH_SHIM_COUNT=OUT     at exit, write the number of such calls to OUT
 *
 * It interposes libc's entry points, so it reaches what a library (wimlib,
 * libntfs-3g) writes, which the engine's own DISM_TEST_CRASH_AFTER_WRITES cannot.
 * A kill before a call, not after, so every prefix of the call sequence is
 * a state the test sees.  Test code only: never installed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static dev_t target_dev;
static ino_t target_ino;
static int have_target = -1;          /* -1: not looked up yet */
static unsigned long calls, kill_at;

static int
is_target(int fd)
{
  if (have_target < 0) {
    struct stat st;
    const char *path = getenv("CRASH_SHIM_PATH");
    const char *after = getenv("CRASH_SHIM_AFTER");
    have_target = path && stat(path, &st) == 0;
    if (have_target)
      target_dev = st.st_dev, target_ino = st.st_ino;
    kill_at = after ? strtoul(after, NULL, 10) : 0;
  }
  struct stat st;
  return have_target && fstat(fd, &st) == 0 && st.st_dev == target_dev && st.st_ino == target_ino;
}

static void
count(int fd)
{
  if (!is_target(fd))
    return;
  if (++calls == kill_at)
    raise(SIGKILL);
}

__attribute__((destructor)) static void
report(void)
{
  const char *out = getenv("CRASH_SHIM_COUNT");
  if (!out)
    return;
  FILE *f = fopen(out, "w");
  if (f) {
    fprintf(f, "%lu\n", calls);
    fclose(f);
  }
}

#define NEXT(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

ssize_t
write(int fd, const void *buf, size_t n)
{
  count(fd);
  return NEXT(write)(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
  count(fd);
  return NEXT(pwrite)(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
  count(fd);
  return NEXT(pwrite64)(fd, buf, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int n)
{
  count(fd);
  return NEXT(writev)(fd, iov, n);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
  count(fd);
  return NEXT(pwritev)(fd, iov, n, off);
}

int
ftruncate(int fd, off_t len)
{
  count(fd);
  return NEXT(ftruncate)(fd, len);
}

int
ftruncate64(int fd, off_t len)
{
  count(fd);
  return NEXT(ftruncate64)(fd, len);
}

int
fsync(int fd)
{
  count(fd);
  return NEXT(fsync)(fd);
}

int
fdatasync(int fd)
{
  count(fd);
  return NEXT(fdatasync)(fd);
}
