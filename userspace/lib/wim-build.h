/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-build.h - build the metadata-only NTFS volume of a WIM image.
 *
 * The volume (a sparse file formatted with mkntfs) receives, through
 * libntfs-3g's public API, every directory and file of the image with its
 * names (long, DOS), security descriptor, attributes, times, object id,
 * reparse data, hard links and named streams, from
 * wimlib_iterate_dir_tree(RESOURCES_NEEDED).  Small data is written into
 * the MFT (resident); every other data attribute gets clusters that are
 * allocated but never written (initialized size = data size, so readers
 * go to the device), and those ranges go into the map (wim-map.h) with the
 * WIM resource that holds their bytes.  A sparse file is read at build
 * time to find its zero clusters: they become holes, only the rest is
 * allocated and mapped.  Resident and reparse data, read whole at build
 * time, are checked against their blob's SHA-1.  The server serves the
 * volume with the map; the WIM and the volume are never written after the
 * build.
 *
 * Conventions as wim.h: 0 or a negative errno, message in dism_last_error().
 */
#ifndef DISM_WIM_BUILD_H
#define DISM_WIM_BUILD_H

#include <stdint.h>

#include "wim.h"

struct dism_wim_build_stats {
  uint64_t files, dirs, links, streams;
  uint64_t mapped_bytes;       /* data left in the WIM, served through the map */
  uint64_t resident_bytes;     /* data written into the MFT at build time */
  uint64_t extents;
  uint64_t damaged;            /* small files whose data did not decompress or
                                  whose SHA-1 did not match: mapped instead of
                                  resident, to a resource that reads EIO */
};

/* Build volume (must not exist; size bytes, sparse) and its map file
 * map_path for image `index` of `wim`.  Progress 0..100; cancellable
 * (-ECANCELED).  On failure both files are removed.  The map names the
 * volume by its basename when both sit in one directory (the pair can
 * move together), else by its absolute path; the WIM by its absolute path.
 * stats may be NULL.  Sets libntfs-3g's process-wide settings: UTF-8 names
 * (ntfs_set_char_encoding) and no logging.  docs/formats.md, "WIM metadata
 * volume", has the details. */
int dism_wim_build(const char *wim, unsigned index, uint64_t size, const char *volume,
                   const char *map_path, dism_wim_progress_fn progress, void *opaque,
                   struct dism_wim_build_stats *stats);

#endif
