/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-overlay-threads - concurrent sub-granule writes to an overlay.
 *
 *   test-overlay-threads DIR
 *
 * Several threads write and zero small ranges of the same granules.  Bytes
 * are owned by threads in 512-byte stripes shifted by 256 (so some ranges
 * straddle two granules), hence each granule is shared by all threads while
 * no byte is written by two of them: the final contents are exactly what a
 * per-byte model predicts.  A lost copy-up shows up as bytes reverting to
 * the base.  Checked live, then again after close and reopen.  Prints TAP
 * lines; exit status 0 only if all pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"
#include "overlay.h"
#include "path-size.h"

#define NTHREADS  8
#define DISK_SIZE (1024 * 4096)
#define CHUNK     512
#define NROUNDS   8

static struct disk *ovl;
static unsigned char base_bytes[DISK_SIZE], expect[DISK_SIZE];
static int round_no;
static int failures;

static unsigned
owner(size_t b)
{
  return (unsigned) (((b + CHUNK / 2) / CHUNK) % NTHREADS);
}

static uint64_t
rnd(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static pthread_barrier_t barrier;

/* One round: every thread walks all its chunks in disk order, so the
 * threads reach each granule at about the same time, while the granule is
 * still BASE or ZERO: their copy-ups collide. */
static void *
worker(void *arg)
{
  unsigned t = (unsigned) (uintptr_t) arg;
  uint64_t s = 0x1234567ull + t * 7919 + (uint64_t) round_no * 104729;
  unsigned char buf[CHUNK];

  pthread_barrier_wait(&barrier);
  for (size_t c = t; c <= DISK_SIZE / CHUNK; c += NTHREADS) {
    /* Chunk c covers [c*512-256, c*512+256), clipped to the disk. */
    size_t lo = c * CHUNK >= CHUNK / 2 ? c * CHUNK - CHUNK / 2 : 0;
    size_t hi = c * CHUNK + CHUNK / 2 < DISK_SIZE ? c * CHUNK + CHUNK / 2 : DISK_SIZE;
    size_t a = lo + rnd(&s) % (hi - lo);
    size_t n = 1 + rnd(&s) % (hi - a);
    int r;

    if (owner(a) != t || owner(a + n - 1) != t) {
      fprintf(stderr, "test bug: thread %u range %zu+%zu\n", t, a, n);
      abort();
    }
    if (rnd(&s) % 8 == 0) {
      r = disk_zero(ovl, n, a, DISK_F_MAY_TRIM);
      if (r == 0)
        memset(expect + a, 0, n);
    } else {
      for (size_t k = 0; k < n; k++)
        buf[k] = (unsigned char) rnd(&s);
      r = disk_pwrite(ovl, buf, n, a, 0);
      if (r == 0)
        memcpy(expect + a, buf, n);
    }
    if (r == 0 && c % 128 == t)
      r = disk_flush(ovl);
    if (r < 0) {
      fprintf(stderr, "thread %u: %s\n", t, disk_last_error());
      __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
      break;
    }
  }
  return NULL;
}

static int
verify(const char *what)
{
  static unsigned char got[DISK_SIZE];
  int r = disk_pread(ovl, got, DISK_SIZE, 0);

  if (r < 0) {
    printf("not ok - %s: read: %s\n", what, disk_last_error());
    return 1;
  }
  for (size_t b = 0; b < DISK_SIZE; b++)
    if (got[b] != expect[b]) {
      printf("not ok - %s: byte %zu (granule %zu, owner %u) is %02x, "
             "expected %02x\n", what, b, b / 4096, owner(b), got[b], expect[b]);
      return 1;
    }
  printf("ok - %s\n", what);
  return 0;
}

static int
open_overlay(const char *base, const char *path, unsigned flags)
{
  struct disk_open_opts opts = { .readonly = true, .format = "raw" };
  struct disk *b;
  int r = disk_open(base, &opts, &b);

  if (r == 0)
    r = overlay_open(b, path, flags, &ovl);
  if (r < 0)
    printf("not ok - open overlay: %s\n", disk_last_error());
  return r;
}

int
main(int argc, char **argv)
{
  char base[DISM_PATH_MAX], path[DISM_PATH_MAX], what[128];
  pthread_t th[NTHREADS];
  uint64_t s = 42;
  int fd, bad = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: test-overlay-threads DIR\n");
    return 2;
  }
  snprintf(base, sizeof base, "%s/threads-base.img", argv[1]);
  snprintf(path, sizeof path, "%s/threads.ovl", argv[1]);
  for (size_t b = 0; b < DISK_SIZE; b++)
    base_bytes[b] = (unsigned char) rnd(&s);
  fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, base_bytes, DISK_SIZE) != DISK_SIZE || close(fd) < 0) {
    perror(base);
    return 1;
  }
  pthread_barrier_init(&barrier, NULL, NTHREADS);
  for (round_no = 0; round_no < NROUNDS; round_no++) {
    /* Even rounds start from a fresh overlay (copy-up from the base), odd
     * ones from a zeroed disk (copy-up of ZERO granules). */
    if (round_no % 2 == 0) {
      if (ovl)
        disk_close(ovl);
      unlink(path);
      if (open_overlay(base, path, OVERLAY_CREATE) < 0)
        return 1;
      memcpy(expect, base_bytes, DISK_SIZE);
    } else {
      if (disk_zero(ovl, DISK_SIZE, 0, DISK_F_MAY_TRIM) < 0) {
        printf("not ok - zero the disk: %s\n", disk_last_error());
        return 1;
      }
      memset(expect, 0, DISK_SIZE);
    }
    for (unsigned t = 0; t < NTHREADS; t++)
      pthread_create(&th[t], NULL, worker, (void *) (uintptr_t) t);
    for (unsigned t = 0; t < NTHREADS; t++)
      pthread_join(th[t], NULL);
    if (failures) {
      printf("not ok - %d threads failed an operation\n", failures);
      bad++;
    }
    snprintf(what, sizeof what, "round %d (%s): concurrent partial writes "
             "match the per-byte model", round_no,
             round_no % 2 ? "from ZERO" : "from BASE");
    bad += verify(what);
  }
  disk_close(ovl);
  if (open_overlay(base, path, OVERLAY_OPEN_EXISTING) < 0)
    return 1;
  bad += verify("after reopen: contents match the per-byte model");
  disk_close(ovl);
  pthread_barrier_destroy(&barrier);
  return bad ? 1 : 0;
}
