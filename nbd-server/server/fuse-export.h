/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse-export.h - expose a disk as one regular file through FUSE (the
 * loop-device fallback where nbd.ko is absent). */
#ifndef DISM_FUSE_EXPORT_H
#define DISM_FUSE_EXPORT_H

#include <stdbool.h>

#include "disk.h"
#include "nbd-server.h"

struct fuse_export;

/* Mount a FUSE file system over the regular file path (created if absent)
 * whose content is the whole disk, and serve it on background threads.
 * disk is borrowed and must outlive the export. */
int fuse_export_start(struct disk *disk, const char *path, bool readonly,
                      struct fuse_export **out);

/* The same in two steps: mount (before the server gives up its
 * privileges), then serve on background threads (after). */
int fuse_export_mount(struct disk *disk, const char *path, bool readonly,
                      struct fuse_export **out);
int fuse_export_serve(struct fuse_export *fe);

/* Log failed reads and writes (with the engine's message) through fn. */
void fuse_export_set_log(struct fuse_export *fe, nbd_log_fn fn, void *opaque);

/* Unmount with fn(opaque) (0 on success) instead of libfuse's
 * fuse_unmount, which a sandboxed server cannot do (sandbox.c). */
void fuse_export_set_unmount(struct fuse_export *fe, int (*fn)(void *opaque),
                             void *opaque);

/* Unmount and stop.  Fails to unmount only if the file is still in use
 * (e.g. a loop device over it); the mount is then detached lazily by the
 * kernel once the last user goes.  Returns 0, or -EBUSY when the unmount
 * hook failed: the FUSE threads may still use the disk, which must then
 * not be closed before the process exits. */
int fuse_export_stop(struct fuse_export *fe);

#endif
