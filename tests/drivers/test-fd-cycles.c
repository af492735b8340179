/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-fd-cycles.c - a long-lived libdism process mounts and unmounts
 * images many times; nothing it holds may grow.  Prints "ok - ..." /
 * "not ok - ..." lines that tests/t/58-fd-cycles.t turns into TAP.
 *
 *   test-fd-cycles VHDX WIM MOUNTDIR N_VHDX N_WIM LOGFILE
 *
 * Cycles alternate read-only and read/write (a file written in each
 * read/write mount, discarded, every tenth VHDX one committed); the N_WIM
 * WIM cycles are spread among the N_VHDX VHDX ones.  The first read-only
 * and read/write cycle of each image is a warm-up (libraries that open a
 * descriptor once, e.g. on first use, may do so there); after it the
 * process's open descriptors, threads and child processes are counted,
 * and again after the last cycle: they must not have grown (nor the heap
 * in use, beyond a little once).  After DismShutdown the descriptors and
 * threads must be back to what they were before DismInitialize. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
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

static int failures;

static void
check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
check(int cond, const char *fmt, ...)
{
  va_list ap;
  printf("%sok - ", cond ? "" : "not ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  if (!cond)
    failures++;
}

static long
rss_kib(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long n = -1;

  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &n) == 1)
      break;
  fclose(f);
  return n;
}

static HRESULT
show_error(HRESULT hr, const char *what)
{
  if (FAILED(hr)) {
    DismString *msg = NULL;
    DismGetLastErrorMessage(&msg);
    printf("# %s: 0x%08x: %ls\n", what, (unsigned) hr, msg ? msg->Value : L"");
    DismDelete(msg);
  }
  return hr;
}

static UINT
mounted_count(void)
{
  DismMountedImageInfo *info = NULL;
  UINT n = 0;
  if (FAILED(show_error(DismGetMountedImageInfo(&info, &n), "DismGetMountedImageInfo")))
    return (UINT) -1;
  DismDelete(info);
  return n;
}

struct stats {
  unsigned cycles, failed;
  double seconds[2];       /* VHDX, WIM */
  unsigned count[2];
};

/* One mount/unmount cycle; false if any step failed. */
static bool
cycle(const wchar_t *image, bool wim, bool rw, bool commit, const char *mount_dir,
      const wchar_t *wdir, HANDLE cancel, struct stats *st)
{
  double t0 = now();
  bool ok = true;
  HRESULT hr;

  hr = DismMountImage(image, wdir, 1, NULL, DismImageIndex,
                      rw ? DISM_MOUNT_READWRITE : DISM_MOUNT_READONLY, cancel, NULL, NULL);
  if (FAILED(show_error(hr, "DismMountImage")))
    return false;
  if (mounted_count() != 1)
    ok = false;
  if (rw) {
    char path[DISM_SUBPATH_MAX];
    snprintf(path, sizeof path, "%s/cycle-%u.txt", mount_dir, st->cycles);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "cycle\n", 6) != 6)
      ok = false;
    if (fd >= 0)
      close(fd);
  }
  hr = DismUnmountImage(wdir, rw && commit ? DISM_COMMIT_IMAGE : DISM_DISCARD_IMAGE, cancel,
                        NULL, NULL);
  if (FAILED(show_error(hr, "DismUnmountImage")))
    ok = false;
  if (mounted_count() != 0)
    ok = false;
  st->seconds[wim] += now() - t0;
  st->count[wim]++;
  st->cycles++;
  if (!ok)
    st->failed++;
  return ok;
}

int
main(int argc, char **argv)
{
  if (argc != 7) {
    fprintf(stderr, "usage: test-fd-cycles VHDX WIM MOUNTDIR N_VHDX N_WIM LOGFILE\n");
    return 2;
  }
  const char *mount_dir = argv[3];
  unsigned n_vhdx = (unsigned) atoi(argv[4]), n_wim = (unsigned) atoi(argv[5]);
  wchar_t *vhdx = W(argv[1]), *wim = W(argv[2]), *wdir = W(mount_dir), *log = W(argv[6]);
  struct stats st = { 0 };

  int fds0 = count_fds(false), threads0 = count_threads();
  HRESULT hr = DismInitialize(DismLogErrorsWarnings, log, NULL);
  check(SUCCEEDED(show_error(hr, "DismInitialize")), "DismInitialize");
  if (FAILED(hr))
    return 1;
  HANDLE cancel = DismCreateCancelEvent();
  check(cancel != NULL, "a cancel event for every call");

  /* Warm-up: read-only and read/write of each kind. */
  bool warm = true;
  for (int k = 0; k < 4; k++) {
    bool is_wim = k >= 2;
    if (is_wim && n_wim == 0)
      break;
    warm &= cycle(is_wim ? wim : vhdx, is_wim, k & 1, false, mount_dir, wdir, cancel, &st);
  }
  check(warm, "warm-up: %u cycles (VHDX and WIM, read-only and read/write)", st.cycles);
  int fds1 = count_fds(false), threads1 = count_threads(), children1 = count_children();
  long rss1 = rss_kib();
  size_t heap1 = mallinfo2().uordblks;
  printf("# after DismInitialize and the warm-up: %d fds (%d before DismInitialize), "
         "%d threads, %d children, RSS %ld KiB, heap in use %zu bytes\n", fds1, fds0, threads1,
         children1, rss1, heap1);

  /* The cycles, WIM ones spread evenly among the VHDX ones. */
  unsigned vhdx_left = n_vhdx > st.count[0] ? n_vhdx - st.count[0] : 0;
  unsigned wim_left = n_wim > st.count[1] ? n_wim - st.count[1] : 0;
  unsigned total = vhdx_left + wim_left, wim_spread = wim_left, rw_vhdx = 0;
  unsigned max_fds = (unsigned) fds1;
  for (unsigned i = 0; i < total; i++) {
    bool use_wim = wim_left && (vhdx_left == 0 || (i + 1) * wim_spread / total != i * wim_spread / total);
    bool rw = st.cycles & 1, commit = false;
    if (use_wim) {
      wim_left--;
    } else {
      vhdx_left--;
      if (rw && ++rw_vhdx % 10 == 0)
        commit = true;   /* every tenth read/write VHDX cycle commits */
    }
    if (!cycle(use_wim ? wim : vhdx, use_wim, rw, commit, mount_dir, wdir, cancel, &st) &&
        st.failed > 3)
      break;   /* something is broken: say so below, don't take 200 times as long */
    int n = count_fds(false);
    if (n > 0 && (unsigned) n > max_fds)
      max_fds = (unsigned) n;
  }
  check(st.failed == 0, "%u mount/unmount cycles (%u VHDX in %.1f s, %u WIM in %.1f s), "
        "every one mounted, listed, unmounted", st.cycles, st.count[0], st.seconds[0],
        st.count[1], st.seconds[1]);
  printf("# per cycle: VHDX %.2f s, WIM %.2f s\n",
         st.count[0] ? st.seconds[0] / st.count[0] : 0.0,
         st.count[1] ? st.seconds[1] / st.count[1] : 0.0);

  int fds2 = count_fds(false), threads2 = count_threads(), children2 = count_children();
  long rss2 = rss_kib();
  size_t heap2 = mallinfo2().uordblks;
  printf("# after %u cycles: %d fds (at most %u meanwhile), %d threads, %d children, "
         "RSS %ld KiB, heap in use %zu bytes\n", st.cycles, fds2, max_fds, threads2, children2,
         rss2, heap2);
  check(fds2 == fds1, "open fds after the cycles: %d, as after the warm-up (%d)", fds2, fds1);
  if (fds2 != fds1)
    count_fds(true);
  check(threads2 == threads1, "threads after the cycles: %d, as after the warm-up (%d)",
        threads2, threads1);
  /* Reachable memory that grows per cycle (a list never trimmed) escapes
   * LeakSanitizer.  mallinfo2 counts the chunks glibc's per-thread cache
   * holds as in use, so the figure drifts by some KiB as that cache fills;
   * with the cache off (GLIBC_TUNABLES=glibc.malloc.tcache_count=0, as
   * 58-fd-cycles.t runs it) it is exact and must not move at all.  (Under
   * ASan mallinfo2 sees none of the heap: the check is void there.) */
  const char *tun = getenv("GLIBC_TUNABLES");
  size_t slack = tun && strstr(tun, "tcache_count=0") ? 0 : 64 * 1024;
  check(heap2 <= heap1 + slack, "heap in use after the cycles: %zu bytes, %zu after the "
        "warm-up (%s)", heap2, heap1, slack ? "less than 64 KiB more" : "no more");
  if (children1 >= 0)
    check(children2 == 0, "no child process (server or zombie) left: %d", children2);
  else
    printf("# /proc/self/task/*/children is not available: child processes not counted\n");

  check(DismCloseCancelEvent(cancel) == S_OK, "DismCloseCancelEvent");
  check(SUCCEEDED(show_error(DismShutdown(), "DismShutdown")), "DismShutdown");
  int fds3 = count_fds(false), threads3 = count_threads();
  check(fds3 == fds0, "open fds after DismShutdown: %d, as before DismInitialize (%d)", fds3,
        fds0);
  if (fds3 != fds0)
    count_fds(true);
  check(threads3 == threads0, "threads after DismShutdown: %d, as before DismInitialize (%d)",
        threads3, threads0);
  free(vhdx);
  free(wim);
  free(wdir);
  free(log);
  return failures ? 1 : 0;
}
