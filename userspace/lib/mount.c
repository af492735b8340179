/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mount.c - DismMountImage, DismUnmountImage, DismRemountImage,
 * DismCommitImage and DismCleanupMountpoints.
 *
 * Mount = validate (DISM's rules) -> lock the folder and the image
 * (locks.h) -> check against the registry and write the record, state
 * "mounting", under the registry's short lock -> start the image server ->
 * attach it as a block device -> mount the NTFS partition with ntfs-3g ->
 * the record's state "mounted".  Each step is undone in reverse order when
 * a later one fails, so a failed mount leaves no record, device or server;
 * a killed one leaves a record that tells what is left (NeedsRemount or
 * Invalid) for /Remount-Image, /Unmount-Image or /Cleanup-Mountpoints. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "guid.h"
#include "live.h"
#include "locks.h"
#include "operation.h"
#include "overlay.h"
#include "path-size.h"
#include "rules.h"
#include "wim-cache.h"
#include "wim-commit.h"
#include "wim-mount.h"
#include "wim.h"

/* A failed lock as the API's result. */
static HRESULT
lock_failed(struct dism_op *o, int rc)
{
  return rc == -ECANCELED ? dism_op_cancel_result(o, "while waiting for another operation to finish")
                          : dism_api_fail_errno(o->func, rc);
}

/* ---- DismMountImage ----------------------------------------------------------- */
DISM_API HRESULT WINAPI
DismMountImage(PCWSTR ImageFilePath, PCWSTR MountPath, UINT ImageIndex, PCWSTR ImageName,
               DismImageIdentifier ImageIdentifier, DWORD Flags, HANDLE CancelEvent,
               DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismMountImage";
  REQUIRE_INIT(func);
  struct dism_op o;
  HRESULT hr = dism_op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char *image_arg = NULL, *dir_arg = NULL;
  struct dism_record *r = NULL;
  struct dism_live l;
  struct dism_wim_image wi;
  int lock_fd = -1, folder_fd = -1, image_fd = -1, cache_fd = -1;
  bool recorded = false, live_made = false, up = false;

  if (FAILED(hr = dism_path_arg(func, ImageFilePath, "image file path", &image_arg)) ||
      FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  r = calloc(1, sizeof *r);
  if (!r) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  r->attach.nbd_index = -1;
  hr = dism_validate_mount_args(func, image_arg, dir_arg, ImageIndex, ImageName, ImageIdentifier,
                           Flags, r, &wi);
  if (FAILED(hr))
    goto out;
  int rc;
  if ((folder_fd = rc = dism_lock_folder(&o, r->mount_dir)) < 0 ||
      (image_fd = rc = dism_lock_image(&o, r->image_dev, r->image_ino,
                                       r->mode == DISM_MODE_RW)) < 0) {
    hr = lock_failed(&o, rc);
    goto out;
  }
  dism_op_step(&o, "locked");
  if ((rc = dism_guid_generate_string(r->id)) < 0) {
    dism_set_error("getrandom failed: %s", strerror(-rc));
    hr = dism_api_fail_errno(func, -EIO);
    goto out;
  }
  dism_live_paths(r->id, &l);
  if (r->mode == DISM_MODE_RW &&
      snprintf(r->overlay, sizeof r->overlay, "%s/%s.ovl", dism_config()->scratch_dir, r->id) >=
          (int) sizeof r->overlay) {
    hr = dism_api_fail(func, E_INVALIDARG, "The scratch directory path is too long.");
    goto out;
  }
  r->created = (int64_t) time(NULL);
  snprintf(r->state, sizeof r->state, "mounting");
  /* Check and claim in one step: the record (naming the overlay before it
   * exists) is what other operations and a later cleanup see. */
  lock_fd = dism_registry_lock();
  if (lock_fd < 0) {
    hr = dism_api_fail_errno(func, lock_fd);
    goto out;
  }
  if (FAILED(hr = dism_validate_against_registry(func, r)))
    goto out;
  if ((rc = dism_record_write(r)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  recorded = true;
  dism_registry_unlock(lock_fd);
  lock_fd = -1;
  dism_op_step(&o, "recorded");
  dism_op_progress(&o, 5);
  if (dism_op_cancelled(&o)) {
    hr = dism_op_cancel_result(&o, "before the image server started");
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: mount %s: %s index %u at %s, %s", func, r->id, r->image,
           r->index, r->mount_dir, r->mode == DISM_MODE_RO ? "read-only" : "read/write");
  if ((rc = dism_mkdir_p(l.dir, 0700)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  live_made = true;
  if (dism_record_write_path(l.live_conf, r) < 0) {
    hr = dism_api_fail_last(func, E_FAIL);
    goto out;
  }
  dism_op_step(&o, "live");
  if (dism_record_is_wim(r)) {
    /* Held until the record names the volume (the prune goes by records). */
    if ((cache_fd = rc = dism_wim_cache_hold(dism_config()->scratch_dir)) < 0 ||
        (rc = dism_wim_prepare_volume(&o, r, &wi, (Flags & DISM_MOUNT_OPTIMIZE) != 0)) < 0 ||
        (rc = dism_record_write(r)) < 0) {
      hr = dism_api_fail_errno(func, rc);
      goto out;
    }
    dism_wim_cache_release(cache_fd);
    cache_fd = -1;
    dism_op_step(&o, "volume");
    /* dism_bring_up's 0..100 becomes 60..100. */
    o.from = 60;
    o.span = 40;
  }
  if ((rc = dism_bring_up(&o, r, &l)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  up = true;
  snprintf(r->state, sizeof r->state, "mounted");
  if ((rc = dism_record_write(r)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  dism_op_step(&o, "mounted");
  dism_log(DISM_LOG_INFO, "%s: mounted %s at %s (%s)", func, r->image, r->mount_dir,
           r->attach.reason);
  dism_op_progress(&o, PROGRESS_TOTAL);
out:
  if (FAILED(hr) && r) {
    if (up)
      dism_teardown_live(r, true);
    if (live_made) {
      if (r->overlay[0])
        overlay_remove(r->overlay);
      dism_remove_flat_dir(l.dir);
    }
    if (recorded)
      dism_record_remove(r->id);
  }
  dism_wim_cache_release(cache_fd);
  dism_registry_unlock(lock_fd);
  dism_unlock(image_fd);
  dism_unlock(folder_fd);
  free(r);
  free(dir_arg);
  free(image_arg);
  return hr;
}

/* ---- the mount a path names ---------------------------------------------------- */
/* Find the record of the mount at path (canonical if it exists, else as an
 * absolute path so that mounts whose folder is gone are still found). */
static int
find_mount(const char *path, struct dism_record *r)
{
  char dir[DISM_PATH_MAX];
  if (dism_canonical(path, dir, sizeof dir) < 0) {
    char cwd[2048];
    if (path[0] == '/')
      snprintf(dir, sizeof dir, "%s", path);
    else if (getcwd(cwd, sizeof cwd))
      snprintf(dir, sizeof dir, "%s/%s", cwd, path);
    else
      return -errno;
  }
  return dism_record_find_by_dir(dir, r);
}

/* Load the record of the mount at dir into a new *out and lock its folder,
 * then its image (shared, or exclusive to write it) into *folder_fd and
 * *image_fd (the caller unlocks them).  The record is read again once the
 * folder is ours: the operation we waited for may have changed it.  A
 * folder without a mount gets not_found and the message "<dir> <what>". */
static HRESULT
lock_and_find_mount(struct dism_op *o, const char *dir, HRESULT not_found, const char *what,
                    bool image_exclusive, int *folder_fd, int *image_fd,
                    struct dism_record **out)
{
  *out = calloc(1, sizeof **out);
  if (!*out)
    return dism_api_fail(o->func, E_OUTOFMEMORY, "Out of memory.");
  if (find_mount(dir, *out) < 0)
    return dism_api_fail(o->func, not_found, "%s %s", dir, what);
  if ((*folder_fd = dism_lock_folder(o, (*out)->mount_dir)) < 0)
    return lock_failed(o, *folder_fd);
  if (find_mount(dir, *out) < 0)
    return dism_api_fail(o->func, not_found, "%s %s", dir, what);
  if ((*image_fd = dism_lock_image(o, (*out)->image_dev, (*out)->image_ino,
                                   image_exclusive)) < 0)
    return lock_failed(o, *image_fd);
  return S_OK;
}

/* ---- DismUnmountImage ------------------------------------------------------------ */
/* Unmount the file system without forcing: open files -> EBUSY ->
 * DISM_E_PARTIAL_UNMOUNT, nothing changed. */
static HRESULT
unmount_fs(const char *func, const struct dism_record *r)
{
  if (!dism_record_mounted(r))
    return S_OK;
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_abort_if_server_dead(r, &l);
  dism_flush_mount(r);
  int e = -dism_umount_patiently(r->mount_dir);
  if (e) {
    if (e == EBUSY)
      return dism_api_fail(func, DISM_E_PARTIAL_UNMOUNT,
                           "The directory %s could not be completely unmounted: files are "
                           "still open in it. Close them and unmount again; the mount is "
                           "unchanged.", r->mount_dir);
    return dism_api_fail(func, dism_hr_from_errno(-e), "Cannot unmount %s: %s", r->mount_dir,
                         strerror(e));
  }
  dism_log(DISM_LOG_INFO, "Unmounted %s", r->mount_dir);
  return S_OK;
}

/* The commit of an unmount.  A WIM is committed from the volume as the
 * attached device shows it, before the detach (progress 10..85); a VHD's
 * overlay is merged by its server after the detach (20..90).  A failed
 * commit keeps the changes and marks the record commit-failed. */
static HRESULT
unmount_commit(struct dism_op *o, struct dism_record *r, DWORD flags, bool wim)
{
  int rc = wim ? dism_wim_commit_device(o, r, flags, 10, 75) : dism_commit_record(o, r, 20, 70);
  if (rc == 0)
    return S_OK;
  HRESULT hr = dism_api_fail(o->func, dism_hr_from_errno(rc),
                             "%s. %sThe changes are kept in %s; the mount needs a remount "
                             "(/Remount-Image) or an unmount with /Discard.", dism_last_error(),
                             wim ? "The WIM is unchanged. " : "", r->overlay);
  snprintf(r->state, sizeof r->state, "commit-failed");
  dism_record_write(r);
  if (r->have_attach && dism_attach_alive(&r->attach) && dism_detach(&r->attach) < 0)
    dism_log(DISM_LOG_WARN, "cannot detach %s: %s", r->attach.disk_dev, dism_last_error());
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_server_stop(&l);
  return hr;
}

DISM_API HRESULT WINAPI
DismUnmountImage(PCWSTR MountPath, DWORD Flags, HANDLE CancelEvent,
                 DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismUnmountImage";
  REQUIRE_INIT(func);
  struct dism_op o;
  HRESULT hr = dism_op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char *dir_arg = NULL;
  struct dism_record *r = NULL;
  int folder_fd = -1, image_fd = -1, rc;
  if (FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  DWORD action = Flags & ~(DWORD) DISM_COMMIT_MASK;
  if (action != DISM_COMMIT_IMAGE && action != DISM_DISCARD_IMAGE) {
    hr = dism_api_fail(func, E_INVALIDARG, "Flags 0x%08X: use DISM_COMMIT_IMAGE or "
                       "DISM_DISCARD_IMAGE.", (unsigned) Flags);
    goto out;
  }
  /* Exclusive when a commit may write the image (the mode is known once
   * the record is read; a read-only mount's unmount never commits). */
  hr = lock_and_find_mount(&o, dir_arg, DISMAPI_E_UNABLE_TO_UNMOUNT_IMAGE_PATH,
                           "does not hold an image mounted by DISM.",
                           action == DISM_COMMIT_IMAGE, &folder_fd, &image_fd, &r);
  if (FAILED(hr))
    goto out;
  dism_op_step(&o, "locked");
  if (dism_session_open_on(r->id)) {
    hr = dism_api_fail(func, DISMAPI_E_OPEN_HANDLES_UNABLE_TO_UNMOUNT_IMAGE_PATH,
                       "A DismSession is open on %s: close it with DismCloseSession first.",
                       r->mount_dir);
    goto out;
  }
  if (dism_op_cancelled(&o)) {
    hr = dism_op_cancel_result(&o, "before unmounting");
    goto out;
  }
  bool commit = action == DISM_COMMIT_IMAGE && r->mode == DISM_MODE_RW;
  if ((Flags & DISM_COMMIT_MASK) && !dism_record_is_wim(r))
    dism_log(DISM_LOG_INFO, "%s: /CheckIntegrity and /Append do not apply to VHD/VHDX images; "
             "ignored", func);
  dism_log(DISM_LOG_INFO, "%s: unmount %s from %s (%s)", func, r->image, r->mount_dir,
           commit ? "commit" : r->mode == DISM_MODE_RO ? "read-only" : "discard");
  if (FAILED(hr = unmount_fs(func, r)))
    goto out;
  dism_op_step(&o, "fs-unmounted");
  dism_op_progress(&o, 10);
  bool wim = dism_record_is_wim(r);
  if (commit && wim && FAILED(hr = unmount_commit(&o, r, Flags, true)))
    goto out;
  if (commit && wim)
    dism_op_step(&o, "committed");
  if (r->have_attach && dism_attach_alive(&r->attach)) {
    if ((rc = dism_detach(&r->attach)) < 0) {
      hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot detach %s: %s",
                         r->attach.disk_dev, dism_last_error());
      goto out;
    }
    dism_log(DISM_LOG_INFO, "Detached %s", r->attach.disk_dev);
  }
  dism_op_step(&o, "detached");
  dism_op_progress(&o, 20);
  if (commit && !wim && FAILED(hr = unmount_commit(&o, r, Flags, false)))
    goto out;
  if (commit && !wim)
    dism_op_step(&o, "committed");
  dism_op_progress(&o, 90);
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_server_stop(&l);
  dism_op_step(&o, "server-stopped");
  dism_op_progress(&o, 95);
  int orc = r->overlay[0] ? overlay_remove(r->overlay) : 0;   /* and its live map */
  if (orc < 0)
    dism_log(DISM_LOG_WARN, "cannot remove %s: %s", r->overlay, strerror(-orc));
  dism_op_step(&o, "overlay-removed");
  dism_remove_flat_dir(l.dir);
  dism_op_step(&o, "live-removed");
  if ((rc = dism_record_remove(r->id)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  if (wim) {
    dism_wim_cache_prune(dism_config()->scratch_dir);
    dism_wim_commit_remove_stale(dism_config()->scratch_dir);
  }
  dism_log(DISM_LOG_INFO, "%s: %s unmounted", func, r->mount_dir);
  dism_op_progress(&o, 100);
out:
  dism_unlock(image_fd);
  dism_unlock(folder_fd);
  free(r);
  free(dir_arg);
  return hr;
}

/* ---- DismRemountImage ------------------------------------------------------------- */
DISM_API HRESULT WINAPI
DismRemountImage(PCWSTR MountPath)
{
  static const char func[] = "DismRemountImage";
  REQUIRE_INIT(func);
  struct dism_op o;
  HRESULT hr = dism_op_init(&o, func, NULL, NULL, NULL);
  char *dir_arg = NULL;
  struct dism_record *r = NULL;
  int folder_fd = -1, image_fd = -1, rc;
  if (FAILED(hr) || FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  hr = lock_and_find_mount(&o, dir_arg, DISM_E_NOT_A_MOUNT_POINT, "is not a DISM mount point.",
                           false, &folder_fd, &image_fd, &r);
  if (FAILED(hr))
    goto out;
  dism_op_step(&o, "locked");
  if (dism_session_open_on(r->id)) {
    hr = dism_api_fail(func, DISMAPI_E_OPEN_HANDLES_UNABLE_TO_REMOUNT_IMAGE_PATH,
                       "A DismSession is open on %s: close it first.", r->mount_dir);
    goto out;
  }
  DismMountStatus status = dism_record_status(r);
  if (status == DismMountStatusOk) {
    dism_log(DISM_LOG_INFO, "%s: %s is mounted and healthy; nothing to do", func, r->mount_dir);
    goto out;
  }
  if (status == DismMountStatusInvalid) {
    hr = dism_api_fail(func, E_FAIL,
                       "The mount at %s is invalid (its image, overlay or folder is gone) and "
                       "cannot be remounted; run /Cleanup-Mountpoints.", r->mount_dir);
    goto out;
  }
  /* Clear what is left of the old live part (a dead server's mount is
   * detached lazily: no data can flow through it any more). */
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_teardown_live(r, dism_server_pid(&l) == 0);
  dism_op_step(&o, "torn-down");
  if (dism_record_mounted(r) || !dism_dir_is_empty(r->mount_dir)) {
    hr = dism_api_fail(func, DISM_E_MOUNT_DIR_NOT_EMPTY,
                       "The mount folder %s is in use or not empty; it cannot be remounted.",
                       r->mount_dir);
    goto out;
  }
  if ((rc = dism_mkdir_p(l.dir, 0700)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  dism_record_write_path(l.live_conf, r);
  dism_log(DISM_LOG_INFO, "%s: remounting %s at %s", func, r->image, r->mount_dir);
  if ((rc = dism_bring_up(&o, r, &l)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  snprintf(r->state, sizeof r->state, "mounted");
  if ((rc = dism_record_write(r)) < 0) {
    dism_teardown_live(r, true);
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: remounted %s at %s", func, r->image, r->mount_dir);
out:
  dism_unlock(image_fd);
  dism_unlock(folder_fd);
  free(r);
  free(dir_arg);
  return hr;
}

/* ---- DismCommitImage ------------------------------------------------------------- */
DISM_API HRESULT WINAPI
DismCommitImage(DismSession Session, DWORD Flags, HANDLE CancelEvent,
                DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismCommitImage";
  REQUIRE_INIT(func);
  struct dism_op o;
  HRESULT hr = dism_op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char mount_id[37], path[DISM_PATH_MAX];
  if (!dism_session_lookup(Session, mount_id, path, sizeof path))
    return dism_api_fail(func, E_INVALIDARG, "%u is not an open DismSession.", (unsigned) Session);
  if (!mount_id[0])
    return dism_api_fail(func, E_INVALIDARG,
                         "The session on %s is not associated with an image mounted by DISM.",
                         path);
  DWORD action = Flags & ~(DWORD) DISM_COMMIT_MASK;
  if (action != DISM_COMMIT_IMAGE && action != DISM_DISCARD_IMAGE)
    return dism_api_fail(func, E_INVALIDARG, "Flags 0x%08X are not valid.", (unsigned) Flags);
  if (action == DISM_DISCARD_IMAGE) {
    dism_log(DISM_LOG_INFO, "%s: DISM_DISCARD_IMAGE: nothing to commit", func);
    return S_OK;
  }
  struct dism_record *r = calloc(1, sizeof *r);
  int folder_fd = -1, image_fd = -1, rc;
  if (!r)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  /* Read the record, lock its folder, read it again: it may have changed
   * while the lock was awaited. */
  bool gone = dism_record_read(mount_id, r) < 0;
  if (!gone) {
    if ((folder_fd = dism_lock_folder(&o, r->mount_dir)) < 0) {
      hr = lock_failed(&o, folder_fd);
      goto out;
    }
    gone = dism_record_read(mount_id, r) < 0;
  }
  if (gone) {
    hr = dism_api_fail(func, E_INVALIDARG, "The image mounted at %s is no longer mounted.", path);
    goto out;
  }
  if ((image_fd = dism_lock_image(&o, r->image_dev, r->image_ino, true)) < 0) {
    hr = lock_failed(&o, image_fd);
    goto out;
  }
  dism_op_step(&o, "locked");
  DismMountStatus status = dism_record_status(r);
  if (status == DismMountStatusNeedsRemount) {
    hr = dism_api_fail(func, DISMAPI_E_NEEDS_REMOUNT,
                       "The image at %s needs to be remounted before it can be committed.",
                       r->mount_dir);
    goto out;
  }
  if (status == DismMountStatusInvalid) {
    hr = dism_api_fail(func, E_FAIL, "The mount at %s is invalid.", r->mount_dir);
    goto out;
  }
  if (r->mode == DISM_MODE_RO) {
    hr = dism_api_fail(func, E_ACCESSDENIED,
                       "The image at %s is mounted read-only: read-only mounts cannot be "
                       "committed.", r->mount_dir);
    goto out;
  }
  if (dism_op_cancelled(&o)) {
    hr = dism_op_cancel_result(&o, "before committing");
    goto out;
  }
  if (dism_record_is_wim(r)) {
    hr = dism_wim_commit_mounted(&o, r, Flags);
    if (SUCCEEDED(hr))
      dism_op_progress(&o, PROGRESS_TOTAL);
    goto out;
  }
  if (Flags & DISM_COMMIT_MASK)
    dism_log(DISM_LOG_INFO, "%s: /CheckIntegrity and /Append do not apply to VHD/VHDX images; "
             "ignored", func);
  dism_op_progress(&o, 0);
  dism_flush_mount(r);
  if ((rc = dism_commit_record(&o, r, 0, 100)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s. The mount is unchanged.",
                       dism_last_error());
    goto out;
  }
  dism_op_progress(&o, 100);
out:
  dism_unlock(image_fd);
  dism_unlock(folder_fd);
  free(r);
  return hr;
}


/* ---- DismCleanupMountpoints -------------------------------------------------------- */
/* What is known of mount id into r: its record (true), else what its
 * live.conf says, else just its id (false). */
static bool
load_leftover(const char *id, struct dism_record *r)
{
  struct dism_live l;
  if (dism_record_read(id, r) == 0)
    return true;
  dism_live_paths(id, &l);
  if (dism_record_read_path(l.live_conf, id, r) < 0) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
  }
  return false;
}

/* Undo what mount id left, unless an operation works on its folder now
 * (then it is not left over: it is in progress).  A readable record goes
 * only if it is Invalid or still "mounting"; what has no readable record
 * (only live.conf, or nothing but the id) always goes. */
static void
cleanup_one(const char *id, struct dism_record *r)
{
  int folder_fd = -1;
  load_leftover(id, r);
  if (r->mount_dir[0] && (folder_fd = dism_lock_folder_try(r->mount_dir)) == -EAGAIN) {
    dism_log(DISM_LOG_INFO, "%s: an operation is in progress there; left alone", r->mount_dir);
    return;
  }
  /* Read again, now that nobody can be changing it.  A record still
   * "mounting" whose folder we could lock is a mount whose maker died before
   * it completed (tests/t/67-kill-steps.t): nobody ever had it, so it goes
   * like an Invalid one whatever its live parts say. */
  if (!load_leftover(id, r) || strcmp(r->state, "mounting") == 0 ||
      dism_record_status(r) == DismMountStatusInvalid)
    dism_remove_mount_leftovers(r, true);
  dism_unlock(folder_fd);
}

DISM_API HRESULT WINAPI
DismCleanupMountpoints(void)
{
  static const char func[] = "DismCleanupMountpoints";
  REQUIRE_INIT(func);
  HRESULT hr = S_OK;
  char(*ids)[37] = NULL;
  size_t n = 0;
  struct dism_record *r = calloc(1, sizeof *r);
  if (!r)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  int rc = dism_record_list(&ids, &n);
  if (rc < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot read the mount registry.");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    cleanup_one(ids[i], r);
  /* Live parts without a record: a mount that never completed. */
  char live_root[DISM_SUBPATH_MAX];
  snprintf(live_root, sizeof live_root, "%s/mounts", dism_run_dir());
  DIR *d = opendir(live_root);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    char record_path[DISM_SUBPATH_MAX];
    if (strlen(de->d_name) != 36)
      continue;
    dism_record_path(de->d_name, record_path, sizeof record_path);
    if (access(record_path, F_OK) == 0)
      continue;
    cleanup_one(de->d_name, r);
  }
  if (d)
    closedir(d);
  dism_wim_cache_prune(dism_config()->scratch_dir);
  dism_wim_commit_remove_stale(dism_config()->scratch_dir);
out:
  free(ids);
  free(r);
  return hr;
}
