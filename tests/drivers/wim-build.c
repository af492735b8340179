/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-build.c - build the metadata-only volume of a WIM image and its map
 * (dism_wim_build) without a mount around it, for tests/t/36-wim-build.t
 * and measurements.
 *
 *   wim-build WIM INDEX SIZE VOLUME MAP [--cancel-at PERCENT]
 *
 * Exit 0 and one line of figures on stdout (files dirs links streams
 * mapped_bytes resident_bytes extents seconds files_per_second), or 1 with
 * libdism's message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dism-internal.h"
#include "wim-build.h"

static unsigned cancel_at = 101;

static bool
progress(unsigned percent, void *opaque)
{
  unsigned *last = opaque;
  if (percent < *last || percent > 100)
    fprintf(stderr, "wim-build: progress went from %u to %u\n", *last, percent);
  *last = percent;
  return percent >= cancel_at;
}

int
main(int argc, char **argv)
{
  if (argc < 6) {
    fprintf(stderr, "usage: wim-build WIM INDEX SIZE VOLUME MAP [--cancel-at PERCENT]\n");
    return 2;
  }
  if (argc == 8 && strcmp(argv[6], "--cancel-at") == 0)
    cancel_at = (unsigned) strtoul(argv[7], NULL, 10);
  struct dism_wim_build_stats st;
  unsigned last = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = dism_wim_build(argv[1], (unsigned) strtoul(argv[2], NULL, 10),
                          strtoull(argv[3], NULL, 0), argv[4], argv[5], progress, &last, &st);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (rc < 0) {
    fprintf(stderr, "wim-build: %s: %s\n", strerror(-rc), dism_last_error());
    return 1;
  }
  double s = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("files %llu dirs %llu links %llu streams %llu mapped %llu resident %llu extents %llu "
         "seconds %.3f files/s %.0f\n",
         (unsigned long long) st.files, (unsigned long long) st.dirs,
         (unsigned long long) st.links, (unsigned long long) st.streams,
         (unsigned long long) st.mapped_bytes, (unsigned long long) st.resident_bytes,
         (unsigned long long) st.extents, s,
         (double) (st.files + st.dirs + st.links) / (s > 0 ? s : 1));
  return 0;
}
