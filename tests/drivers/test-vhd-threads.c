/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-vhd-threads - concurrent writes and reads on one disk (written for
 * the VHD backend, works on any writable image).
 *
 *   test-vhd-threads IMAGE [THREADS] [ITERATIONS]
 *
 * The disk is cut into 4 KiB chunks dealt round-robin to the threads, so all
 * threads hit the same blocks at once (allocation races, bitmap updates of
 * differencing blocks) while each owns its bytes.  Writes are unaligned
 * sub-ranges of the thread's chunks; each thread reads back what it wrote.
 * At the end the whole disk is compared with the expected image, after a
 * close and reopen.  Exit 0 on success. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"

#define CHUNK 4096u

static struct disk *d;
static unsigned char *expect;
static unsigned nthreads = 8, iters = 400;
static int failed;

struct targ { unsigned id; };

static uint64_t
rnd(uint64_t *x)
{
  *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
  return *x;
}

static void *
worker(void *p)
{
  unsigned id = ((struct targ *) p)->id;
  uint64_t x = 0x9E3779B97F4A7C15ull * (id + 1);
  uint64_t nchunks = d->size / CHUNK;
  unsigned char buf[CHUNK], back[CHUNK];

  for (unsigned i = 0; i < iters && !__atomic_load_n(&failed, __ATOMIC_RELAXED); i++) {
    uint64_t c = (rnd(&x) % (nchunks / nthreads)) * nthreads + id;
    unsigned off = (unsigned) (rnd(&x) % CHUNK);
    unsigned len = 1 + (unsigned) (rnd(&x) % (CHUNK - off));
    uint64_t pos = c * CHUNK + off;
    int r;

    if (c >= nchunks)
      continue;
    for (unsigned k = 0; k < len; k++)
      buf[k] = (unsigned char) rnd(&x);
    if ((r = disk_pwrite(d, buf, len, pos, (i % 50 == 0) ? DISK_F_FUA : 0)) < 0) {
      fprintf(stderr, "thread %u: write: %s\n", id, disk_last_error());
      __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
      break;
    }
    memcpy(expect + pos, buf, len);
    if ((r = disk_pread(d, back, CHUNK, c * CHUNK)) < 0 ||
        memcmp(back, expect + c * CHUNK, CHUNK) != 0) {
      fprintf(stderr, "thread %u: read-back of chunk %llu differs (%s)\n", id,
              (unsigned long long) c, r < 0 ? disk_last_error() : "data");
      __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
      break;
    }
    if (i % 97 == 0)
      disk_flush(d);
  }
  return NULL;
}

static int
compare_all(const char *what)
{
  size_t bs = 1 << 20;
  unsigned char *buf = malloc(bs);
  int bad = 0;

  for (uint64_t off = 0; off < d->size && !bad; off += bs) {
    size_t n = d->size - off < bs ? (size_t) (d->size - off) : bs;
    if (disk_pread(d, buf, n, off) < 0 || memcmp(buf, expect + off, n) != 0) {
      fprintf(stderr, "%s: disk differs from the expected data near %llu\n",
              what, (unsigned long long) off);
      bad = 1;
    }
  }
  free(buf);
  return bad;
}

int
main(int argc, char **argv)
{
  struct disk_open_opts opts = { 0 };
  pthread_t th[64];
  struct targ ta[64];
  int r;

  if (argc < 2) {
    fprintf(stderr, "usage: test-vhd-threads IMAGE [THREADS] [ITERATIONS]\n");
    return 2;
  }
  if (argc > 2) nthreads = (unsigned) atoi(argv[2]);
  if (argc > 3) iters = (unsigned) atoi(argv[3]);
  if (nthreads < 1 || nthreads > 64)
    return 2;
  if ((r = disk_open(argv[1], &opts, &d)) < 0) {
    fprintf(stderr, "open: %s\n", disk_last_error());
    return 1;
  }
  if (d->size < (uint64_t) CHUNK * nthreads || !(expect = malloc(d->size))) {
    fprintf(stderr, "disk too small or no memory\n");
    return 1;
  }
  if (disk_pread(d, expect, d->size, 0) < 0) {
    fprintf(stderr, "initial read: %s\n", disk_last_error());
    return 1;
  }
  for (unsigned t = 0; t < nthreads; t++) {
    ta[t].id = t;
    pthread_create(&th[t], NULL, worker, &ta[t]);
  }
  for (unsigned t = 0; t < nthreads; t++)
    pthread_join(th[t], NULL);
  if (failed || compare_all("after the threads"))
    return 1;
  if (disk_flush(d) < 0)
    return 1;
  disk_close(d);
  opts.readonly = true;
  if ((r = disk_open(argv[1], &opts, &d)) < 0) {
    fprintf(stderr, "reopen: %s\n", disk_last_error());
    return 1;
  }
  r = compare_all("after reopen");
  disk_close(d);
  free(expect);
  return r;
}
