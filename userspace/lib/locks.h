/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* locks.h - what an operation locks, and in what order (docs/dism-api.md,
 * "Locking").
 *
 * An operation locks the things it changes, for as long as it runs:
 *   1. its mount folder (exclusive), then
 *   2. its image file (exclusive to write the image: a read/write mount,
 *      commit, remount or unmount of a read/write mount; shared for a
 *      read-only mount, remount or unmount), then
 *   3. briefly, the registry (registry.c) to check and claim in one step,
 *      or the WIM metadata cache (wim-cache.c), and then, while a WIM
 *      image's metadata volume is found or built, that volume.
 * A lock is only ever waited for while holding locks earlier in this
 * order, so operations never deadlock; operations on other folders and
 * other images never wait for each other.  Folder and image locks are OFD
 * byte-range locks on one file, <run>/locks, at an offset hashed from the
 * folder's path or the image's device and inode: they work between threads
 * of one process as between processes, vanish with a killed process, and
 * leave no files behind. */
#ifndef DISM_LOCKS_H
#define DISM_LOCKS_H

#include <stdbool.h>
#include <stdint.h>

struct dism_op;

/* Wait for the lock (cancellable through o, which may be NULL: then
 * -ECANCELED never happens); the returned fd holds it until
 * dism_unlock.  Negative errno on failure, with the message set. */
int dism_lock_folder(struct dism_op *o, const char *canonical_dir);
int dism_lock_image(struct dism_op *o, uint64_t dev, uint64_t ino, bool exclusive);

/* One image of one WIM file, while its metadata volume is looked up in the
 * cache and, on a miss, built: mounts of the same image that all miss the
 * cache build it once, the others wait and then find it.  Taken after the
 * image lock and the cache hold (wim-cache.h), exclusive. */
int dism_lock_wim_volume(struct dism_op *o, uint64_t dev, uint64_t ino, unsigned index);

/* Take the folder's lock only if it is free: the fd, or -EAGAIN while
 * another operation works on that folder. */
int dism_lock_folder_try(const char *canonical_dir);

/* Is an operation working on this folder now? */
bool dism_folder_busy(const char *canonical_dir);

void dism_unlock(int fd);

#endif
