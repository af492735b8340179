/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-mount.c - a WIM mount's own steps: its metadata volume (cached or
 * built), committing its changes from the attached device, and
 * DismCommitImage of a mounted WIM (unmount, commit, mount again). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "dism-internal.h"
#include "live.h"
#include "locks.h"
#include "operation.h"
#include "overlay.h"
#include "wim-cache.h"
#include "wim-commit.h"
#include "wim-mount.h"
#include "wim.h"

struct wim_relay {
  struct dism_op *o;
  UINT from, span, last;
};

/* A WIM part's percent -> the op's callback (only when it changes); cancel
 * polled. */
static bool
wim_relay_progress(unsigned percent, void *opaque)
{
  struct wim_relay *w = opaque;
  UINT at = w->from + percent * w->span / 100;
  if (at != w->last) {
    w->last = at;
    dism_op_progress(w->o, at);
  }
  return dism_op_cancelled(w->o);
}

/* The cache's entry for this image, if it has one; 1 when it has none. */
static int
reuse_volume(struct dism_op *o, struct dism_record *r, const char *scratch, uint64_t size)
{
  int rc = dism_wim_cache_lookup(scratch, r->image, r->index, size, r->volume, sizeof r->volume);
  if (rc == 0)
    dism_log(DISM_LOG_INFO, "%s: image %u of %s: reusing its metadata volume %s", o->func,
             r->index, r->image, r->volume);
  return rc == -ENOENT ? 1 : rc;
}

int
dism_wim_prepare_volume(struct dism_op *o, struct dism_record *r, const struct dism_wim_image *wi,
                        bool optimize)
{
  const char *scratch = dism_config()->scratch_dir;
  uint64_t size = dism_wim_volume_size(wi, optimize);
  int build_fd = -1;
  int rc = reuse_volume(o, r, scratch, size);
  if (rc <= 0)
    return rc;
  /* A miss: whoever holds the image's build lock is building it; after
   * the wait, look again before building it a second time. */
  if ((build_fd = rc = dism_lock_wim_volume(o, r->image_dev, r->image_ino, r->index)) < 0)
    return rc;
  if ((rc = reuse_volume(o, r, scratch, size)) <= 0)
    goto out;
  /* The volume holds metadata only (file data stays in the WIM): an MFT
   * record, index entries and small files' data per file or directory. */
  uint64_t need = dism_wim_metadata_need(wi, size);
  struct statvfs fs;
  if (statvfs(scratch, &fs) == 0 && need > (uint64_t) fs.f_bavail * fs.f_frsize) {
    dism_set_error("There is not enough space in the scratch directory %s for image %u of %s: "
                   "its metadata volume takes about %llu MiB, %llu MiB are free.",
                   scratch, r->index, r->image, (unsigned long long) (need >> 20),
                   (unsigned long long) (((uint64_t) fs.f_bavail * fs.f_frsize) >> 20));
    rc = -ENOSPC;
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: building the metadata volume (%llu bytes%s) of image %u (%s) "
           "of %s", o->func, (unsigned long long) size,
           optimize ? ", /Optimize: no servicing room" : "", r->index, r->image_name, r->image);
  struct wim_relay relay = { o, 5, 55, 5 };
  struct dism_wim_build_stats st = { 0 };
  rc = dism_wim_cache_build(scratch, r->image, r->index, size, r->id, wim_relay_progress,
                            &relay, r->volume, sizeof r->volume, &st);
  if (rc == -ECANCELED)
    rc = dism_op_cancel_error(o, "while the image's metadata volume was built");
  if (rc < 0)
    goto out;
  dism_log(DISM_LOG_INFO, "%s: built %s: %llu files, %llu directories, %llu bytes of data "
           "left in the WIM, %llu written into the volume", o->func, r->volume,
           (unsigned long long) st.files, (unsigned long long) st.dirs,
           (unsigned long long) st.mapped_bytes, (unsigned long long) st.resident_bytes);
out:
  dism_unlock(build_fd);
  return rc;
}

int
dism_wim_commit_device(struct dism_op *o, struct dism_record *r, DWORD flags, UINT from,
                       UINT span)
{
  unsigned wflags = ((flags & DISM_COMMIT_APPEND) ? DISM_WIM_COMMIT_APPEND : 0) |
                    ((flags & DISM_COMMIT_GENERATE_INTEGRITY) ? DISM_WIM_COMMIT_INTEGRITY : 0);
  struct wim_relay relay = { o, from, span, from };
  struct dism_wim_commit_stats st;
  char base[DISM_PATH_MAX];
  unsigned written = 0;
  int rc = dism_wim_cache_volume_of(r->volume, base, sizeof base);
  if (rc < 0)
    return rc;
  /* The volume as it is now: the NBD device stays attached; a loop device
   * clears itself when ntfs-3g lets it go, but the server's FUSE file it
   * showed is still there (a WIM volume is a whole disk). */
  struct dism_live l;
  dism_live_paths(r->id, &l);
  const char *current = r->attach.method == DISM_ATTACH_LOOP ? l.fuse_file : r->attach.fs_dev;
  memset(&st, 0, sizeof st);
  dism_log(DISM_LOG_INFO, "%s: committing %s (as changed since %s) into %s (%s image %u%s)",
           o->func, current, base, r->image,
           (flags & DISM_COMMIT_APPEND) ? "append after" : "replace", r->index,
           (flags & DISM_COMMIT_GENERATE_INTEGRITY) ? ", with an integrity table" : "");
  rc = dism_wim_commit_changes(r->image, r->index, base, current,
                               dism_config()->scratch_dir, wflags, wim_relay_progress, &relay,
                               &written, &st);
  if (rc < 0)
    return rc;
  struct stat sb;
  if (stat(r->image, &sb) == 0) {
    r->image_dev = (uint64_t) sb.st_dev;
    r->image_ino = (uint64_t) sb.st_ino;
  }
  /* (wim-commit.c logged what it did and what it read) */
  dism_log(DISM_LOG_INFO, "%s: committed into image %u of %s", o->func, written, r->image);
  r->index = written;
  return 0;
}

/* Mount the image as the WIM now holds it: its metadata volume, an empty
 * overlay (progress 60..100). */
static int
bring_up_committed(struct dism_op *o, struct dism_record *r, const struct dism_live *l)
{
  struct dism_wim_image wi;
  int rc = dism_wim_resolve(r->image, false, false, r->index, NULL, &wi);
  if (rc < 0)
    return rc;
  snprintf(r->image_name, sizeof r->image_name, "%s", wi.name);
  if (r->overlay[0] && (rc = overlay_remove(r->overlay)) < 0) {
    dism_set_error("cannot remove %s: %s", r->overlay, strerror(-rc));
    return rc;
  }
  o->from = 60;
  o->span = 20;
  /* The volume size a mount chose is kept (it is in the old map). */
  rc = dism_wim_prepare_volume(o, r, &wi, false);
  o->from = 80;
  o->span = 20;
  if (rc == 0)
    rc = dism_bring_up(o, r, l);
  o->from = 0;
  o->span = PROGRESS_TOTAL;
  return rc;
}

/* DismCommitImage of a WIM mount.  libntfs-3g must read a volume nobody has
 * mounted, so: unmount (open files -> ERROR_BUSY, nothing changed), commit
 * from the attached device, then serve and mount the image as written,
 * with an empty overlay (a failed commit: the same overlay again).  The
 * folder is empty for that time. */
HRESULT
dism_wim_commit_mounted(struct dism_op *o, struct dism_record *r, DWORD flags)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_op_progress(o, 0);
  dism_flush_mount(r);
  int e = -dism_umount_patiently(r->mount_dir);
  if (e) {
    if (e == EBUSY)
      return dism_api_fail(o->func, HRESULT_FROM_WIN32(ERROR_BUSY),
                           "Files are open in %s. A WIM image is committed from its volume "
                           "while that is briefly unmounted: close them and commit again. The "
                           "mount is unchanged.", r->mount_dir);
    return dism_api_fail(o->func, dism_hr_from_errno(-e), "Cannot unmount %s: %s",
                         r->mount_dir, strerror(e));
  }
  HRESULT hr = S_OK;
  int rc = dism_wim_commit_device(o, r, flags, 5, 55);
  if (rc < 0)
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc),
                       "%s. The WIM is unchanged; the changes stay in the mount.",
                       dism_last_error());
  int down = dism_teardown_live(r, false);
  /* The new volume is named by the record before anyone may prune it. */
  int hold = dism_wim_cache_hold(dism_config()->scratch_dir);
  int up;
  if (down < 0) {
    up = down;
  } else if (SUCCEEDED(hr)) {
    up = bring_up_committed(o, r, &l);
  } else {
    o->from = 85;
    o->span = 15;
    up = dism_bring_up(o, r, &l);
    o->from = 0;
    o->span = PROGRESS_TOTAL;
  }
  if (dism_record_write(r) < 0)
    dism_log(DISM_LOG_WARN, "cannot update the record of %s: %s", r->mount_dir,
             dism_last_error());
  dism_wim_cache_release(hold);
  if (SUCCEEDED(hr))
    dism_wim_cache_prune(dism_config()->scratch_dir);   /* the old image's volume */
  if (up < 0)
    return dism_api_fail(o->func, dism_hr_from_errno(up),
                         "%s The image could not be mounted again at %s: %s; run "
                         "/Remount-Image.", SUCCEEDED(hr) ? "The changes were committed." :
                         "Nothing was committed.", r->mount_dir, dism_last_error());
  return hr;
}
