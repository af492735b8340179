/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim.h - WIM images for libdism, through wimlib (libwim).
 *
 * What the WIM parts share: opening a WIM, its images' details, the size
 * of an image's volume, making a volume file (mkntfs), and the full capture
 * of a volume into the WIM (WIMLIB_ADD_FLAG_NTFS) in place or as a new
 * image — the commit's fallback (wim-commit.c).  The metadata volume a
 * mount serves is wim-build.c's, kept by wim-cache.c.
 *
 * Every function returns 0 or a negative errno chosen so that the API edge
 * gives the HRESULT DISM gives (dism_hr_from_errno): -ENOENT a missing WIM
 * or mkntfs, -EINVAL a split WIM, -EUCLEAN a damaged WIM, -ETXTBSY a WIM
 * another process writes, -ESRCH no image of that index or name, -ECANCELED
 * a cancel; on failure a message names the WIM and the problem
 * (dism_set_error).  Nothing here prints. */
#ifndef DISM_WIM_H
#define DISM_WIM_H

#include <stdbool.h>
#include <stdint.h>

#include "winreg.h"

/* One image of a WIM, from its header and XML document. */
struct dism_wim_image {
  unsigned index;
  char name[512], description[1024];
  uint64_t total_bytes, file_count, dir_count;
  uint64_t hardlink_bytes;       /* of total_bytes, counted again for each extra link */
  struct dism_windows win;       /* the XML's WINDOWS element (empty where absent) */
  uint64_t created, modified;    /* FILETIME (100 ns since 1601), 0 if absent */
  bool boot;                     /* the WIM's boot index names this image */
};

/* All images of a WIM (*images malloc'd, free()).  Split WIMs are refused. */
int dism_wim_list(const char *wim, struct dism_wim_image **images, unsigned *count);

/* Open a WIM for mounting: refuse split WIMs, verify the integrity table if
 * check_integrity (a WIM without one is accepted: nothing to verify, logged),
 * and resolve the image: by index (by_name false) or by name.  *image gets
 * that image's details. */
int dism_wim_resolve(const char *wim, bool check_integrity, bool by_name, unsigned index,
                     const char *name, struct dism_wim_image *image);

/* Progress in percent; return true to cancel (cancel honoured where the
 * function says so). */
typedef bool (*dism_wim_progress_fn)(unsigned percent, void *opaque);

/* The size of the volume for an image: see dism-api.md "WIM" (optimize:
 * /Optimize, no servicing room). */
uint64_t dism_wim_volume_size(const struct dism_wim_image *image, bool optimize);
/* What the image's metadata volume (volume_size bytes) takes in the
 * scratch directory (file data stays in the WIM): from the WIM's XML, per
 * file and directory, and the volume's cluster bitmap. */
uint64_t dism_wim_metadata_need(const struct dism_wim_image *image, uint64_t volume_size);

#define DISM_WIM_COMMIT_APPEND    0x1u  /* a new last image instead of replacing */
#define DISM_WIM_COMMIT_INTEGRITY 0x2u  /* write an integrity table */

/* Capture the NTFS volume file (nothing may have it mounted) into the WIM:
 * replace image `index` in place, or append it (*new_index gets the index
 * of the image written).  Written by appending to the WIM and then
 * rewriting its header, so an interrupted commit leaves the WIM as it was.
 * Not cancellable. */
int dism_wim_capture(const char *wim, unsigned index, const char *volume, unsigned flags,
                     dism_wim_progress_fn progress, void *opaque, unsigned *new_index);

/* Shared inside libdism (wim-build.c): open a WIM as dism_wim_resolve does
 * (split WIMs refused, messages set); a wimlib error as errno + message
 * (fmt_what has one %s, the WIM); make the sparse mkntfs'd volume file. */
struct WIMStruct;
int dism_wim_open(const char *wim, int flags, struct WIMStruct **out);
int dism_wim_fail(int wimlib_code, const char *fmt_what, const char *wim);
int dism_wim_make_volume(const char *volume, uint64_t size, const char *wim);
/* Write an updated WIM back in place (flags: DISM_WIM_COMMIT_INTEGRITY):
 * appended, fsynced, header last, so an interrupted write leaves the old
 * WIM.  The one way both commits write. */
int dism_wim_write(struct WIMStruct *w, const char *wim, unsigned flags);

#endif
