/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* live.h - the live part of a mount (live.c) and its ntfs-3g mount
 * (ntfs3g.c).  0 or a negative errno with a message (dism-error.h). */
#ifndef DISM_LIVE_H
#define DISM_LIVE_H

#include <stdbool.h>

#include "dism-internal.h"
#include "operation.h"

/* Mount the record's NTFS partition (attach.fs_dev) at its mount dir with
 * ntfs-3g; its output goes to ntfs-3g.log in the live directory. */
int dism_ntfs_mount(const struct dism_record *r, const struct dism_live *l);

/* Start the server, attach, mount: the live part of a mount.  On failure
 * everything it started is undone (a cancel: -ECANCELED). */
int dism_bring_up(struct dism_op *o, struct dism_record *r, const struct dism_live *l);
/* A mount whose server died (and is not being restarted): fail its NBD
 * device's requests now instead of at the dead-connection timeout. */
void dism_abort_if_server_dead(const struct dism_record *r, const struct dism_live *l);
/* Flush the mount's file system and block device (before a COMMIT). */
void dism_flush_mount(const struct dism_record *r);
/* COMMIT on the record's server (started if it does not run); progress
 * between from and from+span. */
int dism_commit_record(struct dism_op *o, const struct dism_record *r, UINT from, UINT span);
/* Remove everything a broken mount left: its live part, overlay (and WIM
 * volume) if remove_overlay, record. */
void dism_remove_mount_leftovers(const struct dism_record *r, bool remove_overlay);

#endif
