/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-mount.h - a WIM mount's own steps (wim-mount.c), between the Dism*
 * functions and the WIM parts (wim.c, wim-cache.c, wim-build.c,
 * wim-commit.c).  A WIM mount serves the image's metadata volume and its
 * map (the server's "wim" format: file data read from the WIM on first
 * access), with the copy-on-write overlay on top for a read/write mount,
 * like a VHD.  dism_wim_commit_mounted is part of the API edge (it words
 * DismCommitImage's errors); the others return negative errnos. */
#ifndef DISM_WIM_MOUNT_H
#define DISM_WIM_MOUNT_H

#include <stdbool.h>

#include "dism-internal.h"
#include "operation.h"
#include "wim.h"

/* Set r->volume to the map of the image's metadata volume: the cached one
 * when it is current, else built now (progress 5..60).  0 or a negative
 * errno (-ENOSPC: the scratch directory is too small for it,
 * -ECANCELED). */
int dism_wim_prepare_volume(struct dism_op *o, struct dism_record *r,
                            const struct dism_wim_image *wi, bool optimize);
/* Commit the changes of a read/write WIM mount whose file system is
 * unmounted and whose device (r->attach.fs_dev) is still attached into
 * the WIM (progress from..from+span).  0 or a negative errno with the
 * message in dism_last_error() (the caller words the API error: what
 * happens to the changes differs). */
int dism_wim_commit_device(struct dism_op *o, struct dism_record *r, DWORD flags, UINT from,
                           UINT span);
/* DismCommitImage of a mounted WIM: unmount, commit, and mount again the
 * image as written, with an empty overlay. */
HRESULT dism_wim_commit_mounted(struct dism_op *o, struct dism_record *r, DWORD flags);

#endif
