/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-mount.h - a WIM mount's own steps (wim-mount.c), between the Dism*
 * functions and wim.c.  dism_wim_commit_mounted is part of the API edge
 * (it words DismCommitImage's errors); the others return negative errnos. */
#ifndef DISM_WIM_MOUNT_H
#define DISM_WIM_MOUNT_H

#include <stdbool.h>

#include "dism-internal.h"
#include "operation.h"
#include "wim.h"

/* Build the mount's volume file from its WIM image (progress 5..60): 0 or
 * a negative errno (-ENOSPC: the scratch directory is too small for it,
 * -ECANCELED). */
int dism_wim_build_volume(struct dism_op *o, struct dism_record *r,
                          const struct dism_wim_image *wi, bool optimize);
/* Capture the (unmounted, detached, unserved) volume into the WIM.  0 or a
 * negative errno with the message in dism_last_error() (the caller words
 * the API error: what happens to the changes differs). */
int dism_wim_commit_volume(struct dism_op *o, struct dism_record *r, DWORD flags, UINT from,
                           UINT span);
/* DismCommitImage of a mounted WIM: unmount, capture, mount again. */
HRESULT dism_wim_commit_mounted(struct dism_op *o, struct dism_record *r, DWORD flags);

#endif
