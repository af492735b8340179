/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-map.h - the map of a lazily built WIM volume.
 *
 * A WIM image is mounted as an NTFS volume built from its metadata alone
 * (userspace/lib/wim-build.c): every file's data attribute gets clusters
 * that are never written.  The map file says, for each such volume range,
 * which WIM resource and which offset of its uncompressed data hold those
 * bytes.  The server's "wim" format (wimvol.c) serves the volume file with
 * those ranges read from the WIM (wim-source.h).  The map is written once
 * by the builder and never changed; it is the "image" the server opens.
 *
 * File layout (little-endian), all checked on read:
 *   header (WIM_MAP_HEADER_SIZE bytes, see wim-map.c), then the resource
 *   table, then the extents sorted by volume_offset, not overlapping, then
 *   the two path strings, then a CRC-32C of everything before it.
 */
#ifndef DISM_WIM_MAP_H
#define DISM_WIM_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "wim-source.h"

#define WIM_MAP_MAGIC "DISMWMAP"

/* What a map was built from: a WIM whose identity differs is a different
 * WIM (the metadata cache is keyed on it, and the server refuses a map
 * whose WIM changed). */
struct wim_identity {
  uint64_t dev, ino, size;
  int64_t mtime_ns, ctime_ns;
  uint8_t guid[16];
};

struct wim_map_extent {
  uint64_t volume_offset;      /* bytes into the volume */
  uint64_t length;             /* bytes (the last one of a stream need not
                                  fill its cluster: the rest reads from the
                                  volume file, zeroes) */
  uint64_t resource_offset;    /* offset in the resource's uncompressed data */
  uint32_t resource;           /* index into resources[] */
  uint32_t mft_record;         /* the file (MFT record number) that owns it */
};

struct wim_map {
  char *wim_path;              /* absolute */
  char *volume_path;           /* the metadata volume; relative paths are
                                  relative to the map file's directory */
  struct wim_identity wim;
  uint32_t image_index;
  uint32_t cluster_size;
  uint64_t volume_size;        /* the virtual disk: the volume file's size */
  struct wim_resource *resources;
  uint32_t resource_count;
  struct wim_map_extent *extents;
  uint64_t extent_count;
};

/* Write m to path atomically (a temporary file, fsync, rename, fsync of the
 * directory). */
int wim_map_write(const char *path, const struct wim_map *m);
/* Read and validate a map file (*out: free with wim_map_free). */
int wim_map_read(const char *path, struct wim_map **out);
/* The same from a buffer (path only names it in messages; fuzzed). */
int wim_map_parse(const uint8_t *buf, size_t len, const char *path,
                  struct wim_map **out);
void wim_map_free(struct wim_map *m);
/* The index of the first extent that ends after offset (extent_count if
 * none). */
uint64_t wim_map_lookup(const struct wim_map *m, uint64_t offset);
/* Fill id from an open WIM file (fstat + the header's GUID). */
int wim_identity_of(int fd, const char *path, struct wim_identity *id);

#endif
