/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* live.c - the live part of a mount: its health (is the server up, the
 * device attached, the file system mounted: dism_record_status), bring-up
 * (server, attach, ntfs-3g), teardown, flushing and committing through the
 * running server, and removing what a broken mount left. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dism-internal.h"
#include "live.h"
#include "operation.h"
#include "overlay.h"
#include "path-size.h"

/* ---- health: what the live part of a record looks like ---------------------- */
bool
dism_record_mounted(const struct dism_record *r)
{
  char source[DISM_PATH_MAX];
  if (!r->have_attach || !dism_is_mountpoint(r->mount_dir, source, sizeof source))
    return false;
  return strcmp(source, r->attach.fs_dev) == 0;
}

DismMountStatus
dism_record_status(const struct dism_record *r)
{
  struct stat st;
  bool wim = dism_record_is_wim(r);
  /* The image gone or replaced, or the mount dir gone: nothing to remount.
   * A WIM mount is served from its metadata volume's map: that must be
   * there, and the WIM only needs to exist (a commit of another mount may
   * have rewritten it). */
  if (stat(r->image, &st) < 0 || !S_ISREG(st.st_mode) ||
      (!wim && ((uint64_t) st.st_dev != r->image_dev || (uint64_t) st.st_ino != r->image_ino)))
    return DismMountStatusInvalid;
  if (stat(r->mount_dir, &st) < 0 || !S_ISDIR(st.st_mode))
    return DismMountStatusInvalid;
  if (wim && (r->volume[0] == '\0' || access(r->volume, F_OK) < 0))
    return DismMountStatusInvalid;
  if (r->mode == DISM_MODE_RW && (r->overlay[0] == '\0' || access(r->overlay, F_OK) < 0))
    return DismMountStatusInvalid;
  struct dism_live l;
  dism_live_paths(r->id, &l);
  if (strcmp(r->state, "mounted") == 0 && dism_server_pid(&l) > 0 && r->have_attach &&
      dism_attach_alive(&r->attach) && dism_record_mounted(r))
    return DismMountStatusOk;
  return DismMountStatusNeedsRemount;
}

/* ---- undoing live state ----------------------------------------------------- */
/* A mount whose server died: its NBD device would hold every request (the
 * syncfs, ntfs-3g's flush at umount) for the dead-connection timeout before
 * failing it.  Fail them now; nothing can reach the image any more anyway.
 * (A server its supervisor is restarting is waited for, not given up.) */
void
dism_abort_if_server_dead(const struct dism_record *r, const struct dism_live *l)
{
  if (r->have_attach && dism_server_pid_wait(l) == 0 && dism_attach_alive(&r->attach)) {
    if (dism_attach_abort(&r->attach) < 0)
      dism_log(DISM_LOG_WARN, "cannot abort %s: %s", r->attach.disk_dev, dism_last_error());
    else
      dism_log(DISM_LOG_INFO, "The image server is gone: aborted %s", r->attach.disk_dev);
  }
}

int
dism_teardown_live(const struct dism_record *r, bool force)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  int first_error = 0;
  dism_abort_if_server_dead(r, &l);
  if (dism_record_mounted(r)) {
    int e = -dism_umount_patiently(r->mount_dir);
    if (e) {
      if (!force) {
        dism_set_error("cannot unmount %s: %s", r->mount_dir, strerror(e));
        return -e;
      }
      /* Forced (cleanup of a broken mount): detach it lazily. */
      if (umount2(r->mount_dir, MNT_DETACH) < 0 && !first_error) {
        first_error = -errno;
        dism_set_error("cannot unmount %s: %s", r->mount_dir, strerror(errno));
      }
    }
    dism_log(DISM_LOG_INFO, "Unmounted %s", r->mount_dir);
  }
  if (r->have_attach && dism_attach_alive(&r->attach)) {
    int rc = dism_detach(&r->attach);
    if (rc < 0) {
      if (!force)
        return rc;
      if (!first_error)
        first_error = rc;
    } else {
      dism_log(DISM_LOG_INFO, "Detached %s", r->attach.disk_dev);
    }
  }
  dism_server_stop(&l);
  /* A killed server leaves its FUSE file mounted and dead (ENOTCONN); it
   * would block the next server's --fuse-file. */
  if (dism_is_mountpoint(l.fuse_file, NULL, 0) && dism_server_pid(&l) == 0)
    umount2(l.fuse_file, MNT_DETACH);
  return first_error;
}

/* udev names our devices from live.conf (udev/60-dism.rules, dism-udev-id).
 * An NBD device needs nothing more: live.conf named the image before the
 * attach, and its partitions are the kernel's own.  A loop device holds one
 * partition's byte range, and which partition that is only the attach record
 * says, written after the kernel's change event for the loop: ask udev to
 * look again now.  Best effort (no udev, read-only sysfs: nothing lost). */
static void
udev_announce(const struct dism_attach *a)
{
  char path[128];
  if (a->method != DISM_ATTACH_LOOP || strncmp(a->fs_dev, "/dev/", 5) != 0 ||
      snprintf(path, sizeof path, "/sys/class/block/%s/uevent", a->fs_dev + 5) >=
          (int) sizeof path)
    return;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "change", 6) != 6)
    dism_log(DISM_LOG_DEBUG, "cannot send a change event for %s: %s", a->fs_dev, strerror(errno));
  if (fd >= 0)
    close(fd);
}

/* Start the server, attach, mount: the live part of a mount.  On failure
 * everything it started is undone; the message says why it failed. */
int
dism_bring_up(struct dism_op *o, struct dism_record *r, const struct dism_live *l)
{
  bool server_up = false, attached = false;
  int rc;

  enum dism_attach_method method = dism_nbd_available() ? DISM_ATTACH_NBD : DISM_ATTACH_LOOP;
  pid_t pid = 0;
  rc = dism_server_start(r, l, method == DISM_ATTACH_LOOP, &pid, r->server_cmd,
                         sizeof r->server_cmd);
  if (rc < 0)
    goto out;
  server_up = true;
  dism_op_step(o, "server-started");
  dism_op_progress(o, 20);
  if (dism_op_cancelled(o)) {
    rc = dism_op_cancel_error(o, "after the image server started");
    goto out;
  }

  char backend_id[64];
  snprintf(backend_id, sizeof backend_id, "dism:%s", r->id);
  struct dism_attach_request req = {
    .method = method,
    .nbd_socket = l->nbd_sock,
    .fuse_file = l->fuse_file,
    .backend_id = backend_id,
    .readonly = r->mode == DISM_MODE_RO,
  };
  memset(&r->attach, 0, sizeof r->attach);
  rc = dism_attach(&req, &r->attach);
  if (rc < 0) {
    dism_set_error("Cannot attach %s as a block device: %s", r->image, dism_last_error());
    goto out;
  }
  r->have_attach = attached = true;
  dism_op_progress(o, 50);
  dism_log(DISM_LOG_INFO, "Attached %s as %s (%s); mounting %s", r->image, r->attach.disk_dev,
           method == DISM_ATTACH_NBD ? "NBD" : "loop over FUSE", r->attach.reason);
  dism_op_progress(o, 70);
  /* The record and live.conf now name the device, so a process killed
   * from here on leaves what /Unmount-Image and /Cleanup-Mountpoints undo. */
  if (dism_record_write(r) < 0 || dism_record_write_path(l->live_conf, r) < 0)
    dism_log(DISM_LOG_WARN, "cannot record %s: %s", r->attach.disk_dev, dism_last_error());
  else
    udev_announce(&r->attach);
  dism_op_step(o, "attached");
  if (dism_op_cancelled(o)) {
    rc = dism_op_cancel_error(o, "after the disk was attached");
    goto out;
  }

  rc = dism_ntfs_mount(r, l);
  if (rc < 0)
    goto out;
  dism_op_step(o, "fs-mounted");
  /* LOOP: the loop device now frees itself once the file system lets go,
   * even if the mount is later detached lazily. */
  if (dism_attach_autoclear(&r->attach) < 0)
    dism_log(DISM_LOG_WARN, "cannot set autoclear on %s: %s", r->attach.fs_dev, dism_last_error());
out:
  if (rc < 0) {
    /* The undo may record messages of its own: keep the reason. */
    char why[2048];
    snprintf(why, sizeof why, "%s", dism_last_error());
    if (attached && dism_detach(&r->attach) < 0)
      dism_log(DISM_LOG_WARN, "undo: cannot detach %s: %s", r->attach.disk_dev, dism_last_error());
    if (server_up)
      dism_server_stop(l);
    r->have_attach = false;
    dism_set_error("%s", why);
  }
  return rc;
}

struct commit_relay {
  struct dism_op *o;
  UINT from, span;
};

static void
relay_commit_progress(uint64_t cur, uint64_t total, void *opaque)
{
  struct commit_relay *c = opaque;
  UINT at = c->from + (UINT) (total ? (cur >= total ? c->span : cur * c->span / total) : 0);
  dism_op_progress(c->o, at);
}

/* COMMIT on the record's server (started if it does not run); progress
 * between from and from+span. */
int
dism_commit_record(struct dism_op *o, const struct dism_record *r, UINT from, UINT span)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  if (dism_server_pid(&l) == 0) {
    if (access(r->image, F_OK) < 0) {
      dism_set_error("the image file %s is gone: the changes cannot be committed; unmount "
                     "with /Discard or run /Cleanup-Mountpoints", r->image);
      return -ENOENT;
    }
    struct dism_record copy = *r;
    pid_t pid;
    int rc = dism_mkdir_p(l.dir, 0700);
    if (rc == 0)
      rc = dism_server_start(&copy, &l, false, &pid, copy.server_cmd, sizeof copy.server_cmd);
    if (rc < 0)
      return rc;
  }
  struct commit_relay relay = { o, from, span };
  dism_log(DISM_LOG_INFO, "%s: committing %s into %s", o->func, r->overlay, r->image);
  int rc = dism_server_commit(&l, relay_commit_progress, &relay);
  if (rc == 0)
    dism_log(DISM_LOG_INFO, "%s: committed the changes into %s", o->func, r->image);
  return rc;
}

/* Flush what the file system and the block device hold, so that COMMIT sees
 * every write made before this call. */
void
dism_flush_mount(const struct dism_record *r)
{
  int fd = open(r->mount_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    syncfs(fd);
    close(fd);
  }
  if (r->have_attach && r->attach.disk_dev[0]) {
    fd = open(r->attach.disk_dev, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
  }
}

/* Remove everything a broken mount left: its live part, overlay, record. */
void
dism_remove_mount_leftovers(const struct dism_record *r, bool remove_overlay)
{
  dism_teardown_live(r, true);
  if (remove_overlay && r->overlay[0])
    overlay_remove(r->overlay);
  char dir[DISM_SUBPATH_MAX];
  dism_live_dir(r->id, dir, sizeof dir);
  dism_remove_flat_dir(dir);
  dism_record_remove(r->id);
  dism_log(DISM_LOG_INFO, "DismCleanupMountpoints: removed mount %s (%s at %s)", r->id,
           r->image[0] ? r->image : "?", r->mount_dir[0] ? r->mount_dir : "?");
}
