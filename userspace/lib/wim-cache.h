/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-cache.h - the metadata volumes of WIM images, kept for the next
 * mount (docs/dism-api.md, "WIM: the metadata cache").
 *
 * <scratch>/wim-cache/<key>/volume is the NTFS volume built from an image's
 * metadata (wim-build.h), <key>/map its map (wim-map.h); the map is what a
 * mount's server serves.  The key hashes the WIM's identity (device, inode,
 * size, mtime, ctime, GUID), the image index and the volume size, and the
 * map repeats them: an entry is used only when they all still match, so a
 * changed WIM never gets a stale volume.  Entries are never written after
 * they are built, so any number of mounts share one. */
#ifndef DISM_WIM_CACHE_H
#define DISM_WIM_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "wim-build.h"
#include "wim.h"

/* The map of a current entry for (wim, index, size) in map (cap bytes):
 * 0, or -ENOENT when there is none (a stale or damaged one is removed). */
int dism_wim_cache_lookup(const char *scratch, const char *wim, unsigned index, uint64_t size,
                          char *map, size_t cap);

/* Build the entry (in <scratch>/wim-cache/.build-<tag>, renamed into place
 * when complete) and return its map like dism_wim_cache_lookup. */
int dism_wim_cache_build(const char *scratch, const char *wim, unsigned index, uint64_t size,
                         const char *tag, dism_wim_progress_fn progress, void *opaque,
                         char *map, size_t cap, struct dism_wim_build_stats *stats);

/* The volume file of an entry, from its map's path. */
int dism_wim_cache_volume_of(const char *map, char *volume, size_t cap);

/* Hold the cache against pruning, from the lookup or build of an entry
 * until a record names it (the returned fd; negative errno on failure). */
int dism_wim_cache_hold(const char *scratch);
void dism_wim_cache_release(int fd);

/* Remove the entries no mount record names whose WIM is gone or changed,
 * unfinished builds, and beyond DISM_WIM_CACHE_KEEP unused entries the
 * least recently used ones; nothing while anyone holds the cache. */
#define DISM_WIM_CACHE_KEEP 8
void dism_wim_cache_prune(const char *scratch);

#endif
