/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-build.c - build the metadata-only volume of a WIM image and its map
 * (dism_wim_build) without a mount around it, for tests/t/36-wim-build.t
 * and measurements.
 *
 *   wim-build WIM INDEX SIZE VOLUME MAP [--cancel-at PERCENT]
 *   wim-build --fill MAP OUT
 *
 * Exit 0 and one line of figures on stdout (files dirs links streams
 * mapped_bytes resident_bytes extents seconds files_per_second), or 1 with
 * libdism's message.  --fill checks the map without a server: OUT gets a
 * copy of the map's volume with every mapped range written from the WIM
 * (the engine's wim_map_read and wim_source_read), i.e. what the server
 * serves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "wim-build.h"
#include "wim-map.h"
#include "wim-source.h"
#include "disk.h"

static unsigned cancel_at = 101;
static bool backwards;

static bool
progress(unsigned percent, void *opaque)
{
  unsigned *last = opaque;
  if (percent < *last || percent > 100) {
    fprintf(stderr, "wim-build: progress went from %u to %u\n", *last, percent);
    backwards = true;
  }
  *last = percent;
  return percent >= cancel_at;
}

static int
copy_sparse(int in, int out)
{
  static char buf[1 << 20];
  off_t end = lseek(in, 0, SEEK_END), pos = 0;
  if (end < 0 || ftruncate(out, end) < 0)
    return -1;
  for (;;) {
    off_t d = lseek(in, pos, SEEK_DATA);
    if (d < 0)
      return errno == ENXIO ? 0 : -1;
    off_t h = lseek(in, d, SEEK_HOLE);
    for (pos = d; pos < h;) {
      size_t n = (size_t) (h - pos) < sizeof buf ? (size_t) (h - pos) : sizeof buf;
      ssize_t r = pread(in, buf, n, pos);
      if (r <= 0 || pwrite(out, buf, (size_t) r, pos) != r)
        return -1;
      pos += r;
    }
  }
}

static int
fill(const char *map_path, const char *out_path)
{
  struct wim_map *m = NULL;
  struct wim_source *ws = NULL;
  int in = -1, out = -1, ret = 1;
  char *vol = NULL;
  static char buf[1 << 20];
  if (wim_map_read(map_path, &m) < 0 || wim_source_open(m->wim_path, NULL, &ws) < 0) {
    fprintf(stderr, "wim-build --fill: %s\n", disk_last_error());
    goto out;
  }
  if (m->volume_path[0] == '/')
    vol = strdup(m->volume_path);
  else {
    const char *slash = strrchr(map_path, '/');
    if (asprintf(&vol, "%.*s%s", slash ? (int) (slash - map_path + 1) : 0, map_path,
                 m->volume_path) < 0)
      vol = NULL;
  }
  in = vol ? open(vol, O_RDONLY) : -1;
  out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (in < 0 || out < 0 || copy_sparse(in, out) < 0) {
    fprintf(stderr, "wim-build --fill: copying %s: %s\n", vol ? vol : "?", strerror(errno));
    goto out;
  }
  for (uint64_t i = 0; i < m->extent_count; i++) {
    const struct wim_map_extent *e = &m->extents[i];
    for (uint64_t done = 0; done < e->length;) {
      size_t n = e->length - done < sizeof buf ? (size_t) (e->length - done) : sizeof buf;
      if (wim_source_read(ws, &m->resources[e->resource], e->resource_offset + done, buf, n) < 0) {
        fprintf(stderr, "wim-build --fill: extent %llu: %s\n", (unsigned long long) i,
                disk_last_error());
        goto out;
      }
      if (pwrite(out, buf, n, (off_t) (e->volume_offset + done)) != (ssize_t) n) {
        fprintf(stderr, "wim-build --fill: write: %s\n", strerror(errno));
        goto out;
      }
      done += n;
    }
  }
  printf("extents %llu resources %u\n", (unsigned long long) m->extent_count, m->resource_count);
  ret = 0;
out:
  if (in >= 0)
    close(in);
  if (out >= 0)
    close(out);
  free(vol);
  if (ws)
    wim_source_close(ws);
  if (m)
    wim_map_free(m);
  return ret;
}

int
main(int argc, char **argv)
{
  if (argc == 4 && strcmp(argv[1], "--fill") == 0)
    return fill(argv[2], argv[3]);
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
         "damaged %llu progress %u seconds %.3f files/s %.0f\n",
         (unsigned long long) st.files, (unsigned long long) st.dirs,
         (unsigned long long) st.links, (unsigned long long) st.streams,
         (unsigned long long) st.mapped_bytes, (unsigned long long) st.resident_bytes,
         (unsigned long long) st.extents, (unsigned long long) st.damaged,
         backwards ? 1000 : last, s,
         (double) (st.files + st.dirs + st.links) / (s > 0 ? s : 1));
  return 0;
}
