/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-vhdx-threads - concurrent writes and reads on one VHDX disk.
 *
 *   test-vhdx-threads IMAGE     (a fresh dynamic or differencing VHDX)
 *
 * Eight threads write interleaved 64 KiB chunks (so several threads race to
 * allocate the same blocks) while reading back what they wrote; then every
 * chunk is checked.  Exit 0 on success.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"

#define NTHREADS 8
#define CHUNK    (64 * 1024)

static struct disk *d;
static uint64_t nchunks;
static int failed;

static void
pattern(unsigned char *b, uint64_t chunk)
{
  for (size_t i = 0; i < CHUNK; i += 8) {
    uint64_t v = chunk * 0x9E3779B97F4A7C15ull + i;
    memcpy(b + i, &v, 8);
  }
}

static void *
worker(void *arg)
{
  uintptr_t t = (uintptr_t) arg;
  unsigned char *w = malloc(CHUNK), *r = malloc(CHUNK);

  for (uint64_t c = t; c < nchunks; c += NTHREADS) {
    pattern(w, c);
    if (disk_pwrite(d, w, CHUNK, c * CHUNK, 0) < 0 ||
        disk_pread(d, r, CHUNK, c * CHUNK) < 0 || memcmp(w, r, CHUNK) != 0) {
      fprintf(stderr, "chunk %llu: %s\n", (unsigned long long) c, disk_last_error());
      __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
      break;
    }
  }
  free(w);
  free(r);
  return NULL;
}

int
main(int argc, char **argv)
{
  struct disk_open_opts opts = { 0 };
  pthread_t th[NTHREADS];
  unsigned char *w = malloc(CHUNK), *r = malloc(CHUNK);

  if (argc != 2 || disk_open(argv[1], &opts, &d) < 0) {
    fprintf(stderr, "test-vhdx-threads: %s\n", argc == 2 ? disk_last_error() : "usage");
    return 2;
  }
  nchunks = d->size / CHUNK;
  for (uintptr_t t = 0; t < NTHREADS; t++)
    pthread_create(&th[t], NULL, worker, (void *) t);
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  for (uint64_t c = 0; c < nchunks && !failed; c++) {
    pattern(w, c);
    if (disk_pread(d, r, CHUNK, c * CHUNK) < 0 || memcmp(w, r, CHUNK) != 0) {
      fprintf(stderr, "verify chunk %llu failed\n", (unsigned long long) c);
      failed = 1;
    }
  }
  if (disk_flush(d) < 0)
    failed = 1;
  disk_close(d);
  free(w);
  free(r);
  return failed;
}
