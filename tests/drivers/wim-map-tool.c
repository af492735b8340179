/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-map-tool - the WIM volume map (wim-map.h) for the tests.
 *
 *   wim-map-tool selftest DIR      write, read back, lookups, every byte
 *                                  flipped and every truncation refused
 *   wim-map-tool dump MAP          print a map (text, one extent a line)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "wim-map.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); } } while (0)

static int
selftest(const char *dir)
{
  char path[4096];
  struct wim_resource res[2] = {
    { 1000, 5000, 9000, WIM_RES_COMPRESSED },
    { 7000, 300, 300, 0 },
  };
  struct wim_map_extent ext[3] = {
    { 4096, 8192, 0, 0, 64 },
    { 20480, 300, 0, 1, 65 },
    { 24576, 800, 8200, 0, 66 },
  };
  struct wim_map m = {
    .wim_path = "/some/where/x.wim", .volume_path = "vol.img",
    .wim = { 1, 2, 3, 4, 5, { 9, 8, 7 } },
    .image_index = 1, .cluster_size = 4096, .volume_size = 1 << 20,
    .resources = res, .resource_count = 2, .extents = ext, .extent_count = 3,
  };
  struct wim_map *r = NULL;
  uint8_t *buf;
  struct stat st;
  FILE *f;

  snprintf(path, sizeof path, "%s/t.map", dir);
  CHECK(wim_map_write(path, &m) == 0, "write: %s", disk_last_error());
  CHECK(wim_map_read(path, &r) == 0, "read: %s", disk_last_error());
  if (!r)
    return 1;
  CHECK(strcmp(r->wim_path, m.wim_path) == 0 && strcmp(r->volume_path, "vol.img") == 0, "paths");
  CHECK(memcmp(&r->wim, &m.wim, sizeof m.wim) == 0, "identity");
  CHECK(r->resource_count == 2, "resource count");
  for (int i = 0; i < 2 && r->resource_count == 2; i++)
    CHECK(r->resources[i].offset == res[i].offset && r->resources[i].size == res[i].size &&
          r->resources[i].uncompressed_size == res[i].uncompressed_size &&
          r->resources[i].flags == res[i].flags, "resource %d", i);
  CHECK(r->extent_count == 3 && memcmp(r->extents, ext, sizeof ext) == 0, "extents");
  CHECK(wim_map_lookup(r, 0) == 0 && wim_map_lookup(r, 4096 + 8191) == 0 &&
        wim_map_lookup(r, 4096 + 8192) == 1 && wim_map_lookup(r, 20780) == 2 &&
        wim_map_lookup(r, 24576 + 800) == 3, "lookup");
  wim_map_free(r);

  /* Invalid maps are refused by the writer. */
  ext[2].resource_offset = 8201;
  CHECK(wim_map_write(path, &m) == -EINVAL, "extent past its resource written");
  ext[2].resource_offset = 8200;
  ext[1].volume_offset = 12000;
  CHECK(wim_map_write(path, &m) == -EINVAL, "overlapping extents written");
  ext[1].volume_offset = 20480;

  /* Every flipped byte and every truncation is refused by the reader. */
  if (stat(path, &st) < 0 || !(buf = malloc(st.st_size)))
    return 1;
  f = fopen(path, "rb");
  if (!f || fread(buf, 1, st.st_size, f) != (size_t) st.st_size)
    return 1;
  fclose(f);
  for (off_t i = 0; i < st.st_size; i++) {
    buf[i] ^= 0x41;
    CHECK(wim_map_parse(buf, st.st_size, "flip", &r) < 0, "byte %lld flipped accepted", (long long) i);
    wim_map_free(r);
    buf[i] ^= 0x41;
    CHECK(wim_map_parse(buf, i, "trunc", &r) < 0, "truncated to %lld accepted", (long long) i);
    wim_map_free(r);
  }
  CHECK(wim_map_parse(buf, st.st_size, "good", &r) == 0, "good buffer refused");
  wim_map_free(r);
  free(buf);
  printf("%s\n", failures ? "selftest FAILED" : "selftest ok");
  return failures ? 1 : 0;
}

static int
dump(const char *path)
{
  struct wim_map *m;
  if (wim_map_read(path, &m) < 0) {
    fprintf(stderr, "%s\n", disk_last_error());
    return 1;
  }
  printf("wim %s\nvolume %s\nimage %u cluster %u size %" PRIu64 "\n", m->wim_path,
         m->volume_path, m->image_index, m->cluster_size, m->volume_size);
  for (uint32_t i = 0; i < m->resource_count; i++)
    printf("res %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %#x\n", i, m->resources[i].offset,
           m->resources[i].size, m->resources[i].uncompressed_size, m->resources[i].flags);
  for (uint64_t i = 0; i < m->extent_count; i++)
    printf("ext %" PRIu64 " %" PRIu64 " res %u at %" PRIu64 " mft %u\n",
           m->extents[i].volume_offset, m->extents[i].length, m->extents[i].resource,
           m->extents[i].resource_offset, m->extents[i].mft_record);
  wim_map_free(m);
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "selftest") == 0)
    return selftest(argv[2]);
  if (argc == 3 && strcmp(argv[1], "dump") == 0)
    return dump(argv[2]);
  fprintf(stderr, "usage: wim-map-tool selftest DIR | dump MAP\n");
  return 2;
}
