/* bufpool.c - reusable buffers for request payloads and read replies.
 *
 * Without it every READ/WRITE of 128 KiB or more would be a fresh mmap,
 * 32+ page faults and an munmap (with TLB shootdowns across the worker
 * threads): a quarter of the CPU time of a sequential read in profiles.
 * Buffers come in power-of-two classes from 4 KiB to 32 MiB; freed ones
 * are kept per class up to a global cap, so RSS stays bounded by the
 * in-flight budget plus the cap.
 */
#include <pthread.h>
#include <stdlib.h>

#include "bufpool.h"

#define MIN_SHIFT 12u
#define MAX_SHIFT 25u
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define PER_CLASS 64u
#define CACHE_CAP (16u << 20)     /* bytes kept idle in the pool, at most */

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

static int
class_of(size_t len)
{
  unsigned shift = MIN_SHIFT;

  while (shift <= MAX_SHIFT && ((size_t) 1 << shift) < len)
    shift++;
  return shift > MAX_SHIFT ? -1 : (int) (shift - MIN_SHIFT);
}

void *
bufpool_get(size_t len)
{
  int k = class_of(len);
  void *p = NULL;

  if (k < 0)
    return malloc(len);
  pthread_mutex_lock(&classes[k].lock);
  if (classes[k].n > 0)
    p = classes[k].free[--classes[k].n];
  pthread_mutex_unlock(&classes[k].lock);
  if (p) {
    __atomic_sub_fetch(&cached_bytes, (size_t) 1 << (k + MIN_SHIFT), __ATOMIC_RELAXED);
    return p;
  }
  return malloc((size_t) 1 << (k + MIN_SHIFT));
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
  for (unsigned k = 0; k < NCLASSES; k++) {
    pthread_mutex_lock(&classes[k].lock);
    while (classes[k].n > 0) {
      free(classes[k].free[--classes[k].n]);
      __atomic_sub_fetch(&cached_bytes, (size_t) 1 << (k + MIN_SHIFT), __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&classes[k].lock);
  }
}
