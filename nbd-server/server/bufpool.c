/* SPDX-License-Identifier: GPL-2.0-or-later */
/* bufpool.c - reusable buffers for request payloads and read replies.
 *
 * Without it every READ/WRITE of 128 KiB or more would be a fresh mmap,
 * 32+ page faults and an munmap (with TLB shootdowns across the worker
 * threads): a quarter of the CPU time of a sequential read in profiles.
 * Buffers of 128 KiB to 32 MiB come in power-of-two classes; freed ones
 * are kept per class up to a global cap.  Smaller ones are plain malloc
 * (cheap from the arenas; main.c keeps the mmap threshold at 128 KiB, so
 * every pooled buffer is its own mapping and freeing one returns it).
 *
 * Memory bound: the server charges each request bufpool_size() bytes, so
 * buffers in use stay within its budget; and a class miss first frees
 * idle buffers of other classes (as many bytes as it allocates, keeping
 * up to 4 MiB of them so that mixed sizes do not thrash), so buffers in
 * use plus idle ones never grow past the most ever in use at once plus
 * 4 MiB.  (Before, 16 MiB idle in one class plus a full budget of another
 * could be resident together.)
 */
#include <pthread.h>
#include <stdlib.h>

#include "bufpool.h"

#define MIN_SHIFT 17u
#define MAX_SHIFT 25u
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define PER_CLASS 64u
#define CACHE_CAP (16u << 20)     /* bytes kept idle in the pool, at most */
#define EVICT_SLACK (4u << 20)    /* idle bytes a miss leaves to other classes */

static struct {
  pthread_mutex_t lock;
  void *free[PER_CLASS];
  unsigned n;
} classes[NCLASSES] = {
#define C PTHREAD_MUTEX_INITIALIZER
  [0 ... NCLASSES - 1] = { .lock = C },
#undef C
};
static size_t cached_bytes;       /* atomic */

/* The class of len, or -1 if it is not pooled (too small or too big). */
static int
class_of(size_t len)
{
  unsigned shift = MIN_SHIFT;

  if (len < ((size_t) 1 << MIN_SHIFT))
    return -1;
  while (shift <= MAX_SHIFT && ((size_t) 1 << shift) < len)
    shift++;
  return shift > MAX_SHIFT ? -1 : (int) (shift - MIN_SHIFT);
}

size_t
bufpool_size(size_t len)
{
  int k = class_of(len);

  return k < 0 ? len : (size_t) 1 << (k + MIN_SHIFT);
}

/* Free idle buffers of classes other than keep, largest first, until at
 * least want bytes are gone or nothing else is idle. */
static void
evict(size_t want, int keep)
{
  size_t freed = 0;
  int k;

  for (k = NCLASSES - 1; k >= 0 && freed < want; k--) {
    size_t size = (size_t) 1 << (k + MIN_SHIFT);

    if (k == keep)
      continue;
    pthread_mutex_lock(&classes[k].lock);
    while (classes[k].n > 0 && freed < want) {
      free(classes[k].free[--classes[k].n]);
      __atomic_sub_fetch(&cached_bytes, size, __ATOMIC_RELAXED);
      freed += size;
    }
    pthread_mutex_unlock(&classes[k].lock);
  }
}

void *
bufpool_get(size_t len)
{
  int k = class_of(len);
  size_t size, idle;
  void *p = NULL;

  if (k < 0)
    return malloc(len);
  size = (size_t) 1 << (k + MIN_SHIFT);
  pthread_mutex_lock(&classes[k].lock);
  if (classes[k].n > 0)
    p = classes[k].free[--classes[k].n];
  pthread_mutex_unlock(&classes[k].lock);
  if (p) {
    __atomic_sub_fetch(&cached_bytes, size, __ATOMIC_RELAXED);
    return p;
  }
  idle = __atomic_load_n(&cached_bytes, __ATOMIC_RELAXED);
  if (idle > EVICT_SLACK)
    evict(size < idle - EVICT_SLACK ? size : idle - EVICT_SLACK, k);
  return malloc(size);
}

void
bufpool_put(void *buf, size_t len)
{
  int k = class_of(len);
  size_t size;

  if (!buf)
    return;
  if (k < 0) {
    free(buf);
    return;
  }
  size = (size_t) 1 << (k + MIN_SHIFT);
  if (__atomic_add_fetch(&cached_bytes, size, __ATOMIC_RELAXED) <= CACHE_CAP) {
    pthread_mutex_lock(&classes[k].lock);
    if (classes[k].n < PER_CLASS) {
      classes[k].free[classes[k].n++] = buf;
      buf = NULL;
    }
    pthread_mutex_unlock(&classes[k].lock);
  }
  if (buf) {
    __atomic_sub_fetch(&cached_bytes, size, __ATOMIC_RELAXED);
    free(buf);
  }
}

void
bufpool_trim(void)
{
  evict((size_t) -1, -1);
}
