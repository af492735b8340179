/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-commit.h - commit a lazily mounted WIM image in proportion to the
 * change.
 *
 * The mount's volume as built (the base volume file: metadata only; the
 * file data it maps reads as zeroes there, which is all right, only
 * metadata is compared) is compared with the volume as it is now (a block
 * device or file holding base + map + overlay, nobody mounting it).  MFT
 * records that differ are classified (new, deleted, renamed or moved,
 * data or metadata changed) and the WIM image is updated with
 * wimlib_update_image(): DELETE and RENAME for what only moved or went,
 * ADD from a small temporary NTFS volume holding only the new and changed
 * files (with all their NTFS metadata) at their paths.  Unchanged files
 * keep their blobs, never read nor hashed.  What cannot be expressed
 * exactly falls back to a full capture of the current volume, and the
 * log says why.  The WIM is written as dism_wim_capture() does (append,
 * header last: an interrupted commit leaves the old image).
 */
#ifndef DISM_WIM_COMMIT_H
#define DISM_WIM_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "wim.h"

struct dism_wim_commit_stats {
  /* added, replaced: files and directories new, or copied again (changed, or
   * redone: see docs/dism-api.md), through the one ADD; deleted, renamed:
   * the DELETE and RENAME commands issued.  0 after a full capture. */
  uint64_t added, replaced, deleted, renamed;
  uint64_t volume_bytes_read;  /* read from the current volume, all of it */
  uint64_t data_bytes_read;    /* of those, file data (copied into the temp volume) */
  bool full_capture;           /* fell back to a full capture */
  char fallback_reason[256];   /* why, when it did */
};

/* Commit the changes between base_volume (the volume as built) and
 * current (a path libntfs-3g can open read-only: /dev/nbdN, /dev/loopN,
 * or a file) into image `index` of `wim` (flags: DISM_WIM_COMMIT_*; with
 * DISM_WIM_COMMIT_APPEND a new image is written: full capture).
 * scratch_dir holds the temporary volume.  *new_index gets the image
 * written.  progress: 0-40 comparing and copying (a cancel there returns
 * -ECANCELED, the WIM untouched), 40-100 writing (not cancellable); a full
 * capture reports as dism_wim_capture().  stats may be NULL. */
int dism_wim_commit_changes(const char *wim, unsigned index, const char *base_volume,
                            const char *current, const char *scratch_dir, unsigned flags,
                            dism_wim_progress_fn progress, void *opaque, unsigned *new_index,
                            struct dism_wim_commit_stats *stats);

/* Remove the temporary volumes (<scratch_dir>/wim-commit-<pid>.vol) of
 * commits whose process is gone (killed midway). */
void dism_wim_commit_remove_stale(const char *scratch_dir);

#endif
