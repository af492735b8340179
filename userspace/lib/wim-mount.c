/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-mount.c - a WIM mount's own steps: building its NTFS volume from the
 * WIM image, capturing the volume back into the WIM, and DismCommitImage of
 * a mounted WIM (unmount, capture, mount again). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "dism-internal.h"
#include "live.h"
#include "operation.h"
#include "wim-mount.h"
#include "wim.h"

struct wim_relay {
  struct dism_op *o;
  UINT from, span, last;
};

/* wimlib's percent -> the op's callback (only when it changes); cancel polled. */
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

/* Build the mount's volume file from its WIM image (progress 5..60). */
int
dism_wim_build_volume(struct dism_op *o, struct dism_record *r, const struct dism_wim_image *wi,
                      bool optimize)
{
  uint64_t size = dism_wim_volume_size(wi, optimize);
  uint64_t need = dism_wim_volume_need(wi);
  struct statvfs fs;

  /* The volume is sparse, but the image's files will take real space:
   * refuse now rather than after minutes of extraction (and a WIM whose
   * XML claims terabytes gets no terabyte volume). */
  if (statvfs(dism_config()->scratch_dir, &fs) == 0 &&
      need > (uint64_t) fs.f_bavail * fs.f_frsize) {
    dism_set_error("There is not enough space in the scratch directory %s for image %u of %s: "
                   "its files take about %llu MiB (by the WIM's XML), %llu MiB are free.",
                   dism_config()->scratch_dir, r->index, r->image,
                   (unsigned long long) (need >> 20),
                   (unsigned long long) (((uint64_t) fs.f_bavail * fs.f_frsize) >> 20));
    return -ENOSPC;
  }
  dism_log(DISM_LOG_INFO, "%s: building the NTFS volume %s (%llu bytes%s) from image %u (%s) "
           "of %s", o->func, r->volume, (unsigned long long) size,
           optimize ? ", /Optimize: no servicing room" : "", r->index, r->image_name, r->image);
  struct wim_relay relay = { o, 5, 55, 5 };
  int rc = dism_wim_synthesize(r->image, r->index, size, r->volume, wim_relay_progress, &relay);
  if (rc == -ECANCELED)
    return dism_op_cancel_error(o, "while the image was applied to its volume");
  return rc;
}

/* Capture the (unmounted, detached, unserved) volume into the WIM.  On
 * failure the message is in dism_last_error() (the caller words the API
 * error: what happens to the changes differs). */
int
dism_wim_commit_volume(struct dism_op *o, struct dism_record *r, DWORD flags, UINT from,
                       UINT span)
{
  unsigned wflags = ((flags & DISM_COMMIT_APPEND) ? DISM_WIM_COMMIT_APPEND : 0) |
                    ((flags & DISM_COMMIT_GENERATE_INTEGRITY) ? DISM_WIM_COMMIT_INTEGRITY : 0);
  struct wim_relay relay = { o, from, span, from };
  unsigned written = 0;
  dism_log(DISM_LOG_INFO, "%s: capturing %s into %s (%s image %u%s)", o->func, r->volume,
           r->image, (flags & DISM_COMMIT_APPEND) ? "append after" : "replace", r->index,
           (flags & DISM_COMMIT_GENERATE_INTEGRITY) ? ", with an integrity table" : "");
  int rc = dism_wim_capture(r->image, r->index, r->volume, wflags, wim_relay_progress, &relay,
                            &written);
  if (rc < 0)
    return rc;
  struct stat st;
  if (stat(r->image, &st) == 0) {
    r->image_dev = (uint64_t) st.st_dev;
    r->image_ino = (uint64_t) st.st_ino;
  }
  dism_log(DISM_LOG_INFO, "%s: committed into image %u of %s", o->func, written, r->image);
  return 0;
}

/* DismCommitImage of a WIM mount.  libntfs-3g must read a volume nobody has
 * mounted, so: unmount (open files -> ERROR_BUSY, nothing changed), detach,
 * stop the server, capture, then serve, attach and mount again.  The folder
 * is empty for that time. */
HRESULT
dism_wim_commit_mounted(struct dism_op *o, struct dism_record *r, DWORD flags)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_op_progress(o, 0);
  dism_flush_mount(r);
  if (umount2(r->mount_dir, 0) < 0) {
    int e = errno;
    if (e == EBUSY)
      return dism_api_fail(o->func, HRESULT_FROM_WIN32(ERROR_BUSY),
                           "Files are open in %s. A WIM image is committed from its volume "
                           "while that is briefly unmounted: close them and commit again. The "
                           "mount is unchanged.", r->mount_dir);
    return dism_api_fail(o->func, dism_hr_from_errno(-e), "Cannot unmount %s: %s",
                         r->mount_dir, strerror(e));
  }
  HRESULT hr = S_OK;
  int rc = dism_teardown_live(r, false);
  if (rc < 0)
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc), "%s. Nothing was committed.",
                       dism_last_error());
  else if ((rc = dism_wim_commit_volume(o, r, flags, 5, 80)) < 0)
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc),
                       "%s. The WIM is unchanged; the changes stay in the mount.",
                       dism_last_error());
  /* Mounted again whatever happened: the changes live in the volume. */
  o->from = 85;
  o->span = 15;
  int up = dism_bring_up(o, r, &l);
  o->from = 0;
  o->span = PROGRESS_TOTAL;
  if (dism_record_write(r) < 0)
    dism_log(DISM_LOG_WARN, "cannot update the record of %s: %s", r->mount_dir,
             dism_last_error());
  if (up < 0)
    return dism_api_fail(o->func, dism_hr_from_errno(up),
                         "%s The image could not be mounted again at %s: %s; run "
                         "/Remount-Image.", SUCCEEDED(hr) ? "The changes were committed." :
                         "Nothing was committed.", r->mount_dir, dism_last_error());
  return hr;
}
