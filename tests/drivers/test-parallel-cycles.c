/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-parallel-cycles.c - many threads of one libdism process mount and
 * unmount at once, each its own image on its own folder; afterwards the
 * process's descriptors, threads and child processes are what they were.
 * Prints "ok - ..." / "not ok - ..." lines that tests/t/58-fd-cycles.t
 * turns into TAP.
 *
 *   test-parallel-cycles LOGFILE ROUNDS IMAGE DIR [IMAGE DIR]...
 *
 * One thread per IMAGE DIR pair.  A round: every thread mounts its image
 * (read/write for odd threads, read-only for even ones), all wait for each
 * other, the main thread checks DismGetMountedImageInfo lists every mount
 * once, then every thread writes a file into a read/write mount and
 * unmounts (every other read/write one with DISM_COMMIT_IMAGE, the rest
 * DISM_DISCARD_IMAGE) and the list is empty again.  Round 1 is a warm-up
 * of the first WARMUP_THREADS pairs (libraries that open a descriptor once
 * may do it there); the counts
 * taken after it must hold after the last round; after DismShutdown the
 * descriptors and threads are those from before DismInitialize.  Each
 * thread checks its own failure's message is its own (per-thread error). */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "DismApi.h"
#include "path-size.h"
#include "proc-counts.h"

/* Threads of the warm-up round: one of each kind the caller mixes (three
 * VHDX to one WIM, read-only and read/write alternating) is enough for
 * what a library opens once. */
#define WARMUP_THREADS 4u

static int failures;
static pthread_mutex_t out_mutex = PTHREAD_MUTEX_INITIALIZER;

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
check(int cond, const char *fmt, ...)
{
  va_list ap;
  pthread_mutex_lock(&out_mutex);
  printf("%sok - ", cond ? "" : "not ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  if (!cond)
    failures++;
  pthread_mutex_unlock(&out_mutex);
}

struct worker {
  pthread_t tid;
  unsigned index, round;
  const char *image, *dir;
  wchar_t *wimage, *wdir;
  bool mounted, ok;
  char why[3 * DISM_PATH_MAX];
};

static pthread_barrier_t mounted_barrier, listed_barrier;

static void
fail(struct worker *w, const char *what, HRESULT hr)
{
  DismString *msg = NULL;
  DismGetLastErrorMessage(&msg);
  snprintf(w->why, sizeof w->why, "%s: 0x%08x: %ls", what, (unsigned) hr,
           msg ? msg->Value : L"(no message)");
  DismDelete(msg);
  w->ok = false;
}

static void *
worker_main(void *arg)
{
  struct worker *w = arg;
  bool rw = w->index & 1, commit = rw && (w->index & 2);
  HANDLE cancel = DismCreateCancelEvent();
  HRESULT hr;

  w->ok = cancel != NULL;
  w->mounted = false;
  w->why[0] = '\0';
  hr = DismMountImage(w->wimage, w->wdir, 1, NULL, DismImageIndex,
                      rw ? DISM_MOUNT_READWRITE : DISM_MOUNT_READONLY, cancel, NULL, NULL);
  if (FAILED(hr))
    fail(w, "DismMountImage", hr);
  else
    w->mounted = true;
  pthread_barrier_wait(&mounted_barrier);   /* all mounted: the main thread lists them */
  pthread_barrier_wait(&listed_barrier);
  if (w->mounted && rw) {
    char path[DISM_SUBPATH_MAX];
    snprintf(path, sizeof path, "%s/thread-%u-round-%u.txt", w->dir, w->index, w->round);
    FILE *f = fopen(path, "we");
    if (!f || fprintf(f, "thread %u\n", w->index) < 0) {
      snprintf(w->why, sizeof w->why, "cannot write %s", path);
      w->ok = false;
    }
    if (f && fclose(f) != 0)
      w->ok = false;
  }
  if (w->mounted) {
    hr = DismUnmountImage(w->wdir, commit ? DISM_COMMIT_IMAGE : DISM_DISCARD_IMAGE, cancel,
                          NULL, NULL);
    if (FAILED(hr))
      fail(w, "DismUnmountImage", hr);
  }
  /* A failure of this thread's own: its message must name this folder,
   * not another thread's. */
  if (w->ok) {
    hr = DismUnmountImage(w->wdir, DISM_DISCARD_IMAGE, cancel, NULL, NULL);
    DismString *msg = NULL;
    DismGetLastErrorMessage(&msg);
    char dir[DISM_PATH_MAX];
    snprintf(dir, sizeof dir, "%ls", msg ? msg->Value : L"");
    if (!FAILED(hr) || !strstr(dir, w->dir)) {
      snprintf(w->why, sizeof w->why, "a second unmount: 0x%08x, message \"%s\" does not "
               "name %s", (unsigned) hr, dir, w->dir);
      w->ok = false;
    }
    DismDelete(msg);
  }
  if (cancel)
    DismCloseCancelEvent(cancel);
  return NULL;
}

static UINT
mounted_count(void)
{
  DismMountedImageInfo *info = NULL;
  UINT n = 0;
  if (FAILED(DismGetMountedImageInfo(&info, &n)))
    return (UINT) -1;
  DismDelete(info);
  return n;
}

/* One round: all workers at once.  Returns how many failed. */
static unsigned
round_run(struct worker *ws, unsigned n, unsigned round, double *seconds)
{
  double t0 = now();
  unsigned failed = 0, listed;

  pthread_barrier_init(&mounted_barrier, NULL, n + 1);
  pthread_barrier_init(&listed_barrier, NULL, n + 1);
  for (unsigned i = 0; i < n; i++) {
    ws[i].round = round;
    if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      exit(1);
    }
  }
  pthread_barrier_wait(&mounted_barrier);
  listed = mounted_count();
  unsigned mounted = 0;
  for (unsigned i = 0; i < n; i++)
    mounted += ws[i].mounted;
  check(listed == mounted && mounted == n, "round %u: %u threads mounted at once, "
        "DismGetMountedImageInfo lists %u", round, mounted, listed);
  pthread_barrier_wait(&listed_barrier);
  for (unsigned i = 0; i < n; i++) {
    pthread_join(ws[i].tid, NULL);
    if (!ws[i].ok) {
      failed++;
      printf("# thread %u (%s on %s): %s\n", i, ws[i].image, ws[i].dir, ws[i].why);
    }
  }
  pthread_barrier_destroy(&mounted_barrier);
  pthread_barrier_destroy(&listed_barrier);
  check(mounted_count() == 0, "round %u: nothing mounted after the unmounts", round);
  *seconds = now() - t0;
  return failed;
}

int
main(int argc, char **argv)
{
  if (argc < 5 || (argc - 3) % 2) {
    fprintf(stderr, "usage: test-parallel-cycles LOGFILE ROUNDS IMAGE DIR [IMAGE DIR]...\n");
    return 2;
  }
  unsigned rounds = (unsigned) atoi(argv[2]), n = (unsigned) (argc - 3) / 2;
  struct worker *ws = calloc(n, sizeof *ws);
  wchar_t *log = W(argv[1]);
  if (!ws || rounds < 2) {
    fprintf(stderr, "test-parallel-cycles: ROUNDS >= 2 (the first is a warm-up)\n");
    return 2;
  }
  for (unsigned i = 0; i < n; i++) {
    ws[i].index = i;
    ws[i].image = argv[3 + 2 * i];
    ws[i].dir = argv[4 + 2 * i];
    ws[i].wimage = W(ws[i].image);
    ws[i].wdir = W(ws[i].dir);
  }

  int fds0 = count_fds(false), threads0 = count_threads();
  HRESULT hr = DismInitialize(DismLogErrorsWarnings, log, NULL);
  check(SUCCEEDED(hr), "DismInitialize");
  if (FAILED(hr))
    return 1;

  int fds1 = 0, threads1 = 0, max_fds = 0;   /* the most seen after a round */
  for (unsigned r = 1; r <= rounds; r++) {
    double s;
    unsigned nr = r == 1 && n > WARMUP_THREADS ? WARMUP_THREADS : n;
    unsigned failed = round_run(ws, nr, r, &s);
    check(failed == 0, "round %u%s: %u threads mounted, wrote, unmounted in %.1f s; %u failed",
          r, r == 1 ? " (warm-up)" : "", nr, s, failed);
    int fds = count_fds(false), threads = count_threads();
    printf("# after round %u: %d fds, %d threads, %d children\n", r, fds, threads,
           count_children());
    if (r == 1) {
      fds1 = fds;
      threads1 = threads;
    }
    if (fds > max_fds)
      max_fds = fds;
    if (failed && r == 1)
      break;   /* broken: say so below rather than take the time again */
  }
  int fds2 = count_fds(false), threads2 = count_threads();
  int children2 = count_children();
  check(fds2 == fds1, "open fds after %u parallel rounds: %d, as after the first (%d; at "
        "most %d after a round, %d before DismInitialize)", rounds, fds2, fds1, max_fds, fds0);
  if (fds2 != fds1)
    count_fds(true);
  check(threads2 == threads1 && threads2 == threads0, "threads after the rounds: %d, as after "
        "the first (%d) and before DismInitialize (%d)", threads2, threads1, threads0);
  if (children2 >= 0)
    check(children2 == 0, "no child process (server, supervisor or zombie) left: %d", children2);
  else
    printf("# /proc/self/task/*/children is not available: child processes not counted\n");

  check(SUCCEEDED(DismShutdown()), "DismShutdown");
  int fds3 = count_fds(false), threads3 = count_threads();
  check(fds3 == fds0, "open fds after DismShutdown: %d, as before DismInitialize (%d)", fds3,
        fds0);
  if (fds3 != fds0)
    count_fds(true);
  check(threads3 == threads0, "threads after DismShutdown: %d, as before DismInitialize (%d)",
        threads3, threads0);
  for (unsigned i = 0; i < n; i++) {
    free(ws[i].wimage);
    free(ws[i].wdir);
  }
  free(ws);
  free(log);
  return failures ? 1 : 0;
}
