/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* overlay.h - a copy-on-write layer over any disk.
 *
 * Writes, trims and zeroes go to a sparse overlay file with its own
 * allocation map; reads merge the overlay over the base.  The base is only
 * read, except by overlay_commit().  After disk_flush() returns, every write that returned before
 * it survives a crash (kill -9, power loss) and is there when the overlay is
 * reopened with overlay_open(.., OVERLAY_OPEN_EXISTING).  A kill -9 of the
 * process alone (the machine still up) loses nothing that returned, flushed
 * or not: reopened in the same boot, the overlay takes its map from the live
 * map file <path>.live.
 */
#ifndef DISM_OVERLAY_H
#define DISM_OVERLAY_H

#include "disk.h"

#define OVERLAY_CREATE        0x1u  /* create a new overlay (fails if it exists) */
#define OVERLAY_OPEN_EXISTING 0x2u  /* reopen one made earlier for this base */

/* Wrap base (ownership passes to the overlay disk: closing the overlay closes
 * the base; it becomes the overlay's d->parent).  The overlay records the
 * base's virtual size (and checks it on reopen).  On failure the base has
 * been closed too.  The base's identity (canonical path, size, logical
 * sector size, format and unique id) is recorded at creation and checked on
 * reopen; the overlay file is flock()ed while open. */
int overlay_open(struct disk *base, const char *overlay_path, unsigned flags,
                 struct disk **out);

/* Delete an overlay file and its live map (<path>.live, the map as it was
 * in memory, which lets a server killed between flushes be restarted
 * without losing acknowledged writes; see overlay.c).  0, or -errno of the
 * overlay's unlink (a missing file is not an error). */
int overlay_remove(const char *path);

/* Walk the ranges the overlay holds, in order, for merging into the base
 * image (the commit of the mount issue).  state is OVERLAY_DATA (read the
 * bytes with disk_pread on the overlay disk) or OVERLAY_ZERO.  The callback
 * returns 0 to go on, or a negative errno to stop (returned as is). */
#define OVERLAY_DATA 1
#define OVERLAY_ZERO 2
typedef int (*overlay_range_fn)(void *opaque, uint64_t offset, uint64_t length,
                                int state);
int overlay_foreach(struct disk *ovl, overlay_range_fn fn, void *opaque);

/* Merge the overlay into its base (which must have been opened read-write)
 * and empty it.  The caller stops other writers first (the server pauses
 * requests).  Order: overlay flushed, ranges written into the base, base
 * flushed, then the overlay's map reset and flushed before its data is
 * released; a crash at any point leaves a valid image holding old or new
 * content per block and an overlay that still holds every change not yet
 * known durable in the base, so committing again completes the job.
 * progress(opaque, done, total) is called after each chunk (bytes). */
typedef void (*overlay_progress_fn)(void *opaque, uint64_t done, uint64_t total);
int overlay_commit(struct disk *ovl, overlay_progress_fn progress, void *opaque);

/* Bytes of virtual disk currently held in the overlay (data + zero). */
uint64_t overlay_used_bytes(struct disk *ovl);

#ifdef FUZZING
/* Fuzzing aid only: rewrite an overlay file image in buf so that it names
 * base and carries a valid header checksum (and, with fix_pages, valid map
 * slot checksums), letting the fuzzer reach the map decoder. */
void overlay_fuzz_fixup(struct disk *base, uint8_t *buf, size_t len,
                        bool fix_pages);
#endif

#endif
