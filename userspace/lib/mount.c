/* mount.c - DismMountImage, DismUnmountImage, DismRemountImage,
 * DismCommitImage and DismCleanupMountpoints.
 *
 * Mount = validate (DISM's rules) -> lock the registry -> start the image
 * server -> attach it as a block device -> mount the NTFS partition with
 * ntfs-3g -> write the record.  Each step is undone in reverse order when a
 * later one fails, so a failed mount leaves no record, device or server. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "dism-internal.h"
#include "overlay.h"
#include "wim.h"

#define PROGRESS_TOTAL 100

/* One API call's progress callback and cancel event. */
struct op {
  const char *func;
  int cancel_fd;             /* -1: no cancel event */
  DISM_PROGRESS_CALLBACK progress;
  void *user;
  UINT from, span;           /* op_progress(0..100) is reported as from..from+span */
};

static HRESULT
op_init(struct op *o, const char *func, HANDLE cancel, DISM_PROGRESS_CALLBACK progress, void *user)
{
  o->func = func;
  o->cancel_fd = cancel ? DISM_FD_FROM_HANDLE(cancel) : -1;
  o->progress = progress;
  o->user = user;
  o->from = 0;
  o->span = PROGRESS_TOTAL;
  if (o->cancel_fd >= 0 && fcntl(o->cancel_fd, F_GETFD) < 0)
    return dism_api_fail(func, E_HANDLE, "The cancel event handle is not valid.");
  if (cancel && o->cancel_fd < 0)
    return dism_api_fail(func, E_HANDLE, "The cancel event handle is not valid.");
  return S_OK;
}

/* Progress is reported from the calling thread, between steps. */
static void
op_progress(struct op *o, UINT current)
{
  if (o->progress)
    o->progress(o->from + current * o->span / PROGRESS_TOTAL, PROGRESS_TOTAL, o->user);
}

/* Signalled?  The counter is not consumed, so the event stays signalled. */
static bool
op_cancelled(struct op *o)
{
  if (o->cancel_fd < 0)
    return false;
  struct pollfd p = { .fd = o->cancel_fd, .events = POLLIN };
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static HRESULT
op_cancel_result(struct op *o, const char *stage)
{
  dism_log(DISM_LOG_INFO, "%s: cancelled %s", o->func, stage);
  return dism_api_fail(o->func, HRESULT_FROM_WIN32(ERROR_CANCELLED),
                       "The operation was cancelled (%s); everything it had done was undone.",
                       stage);
}

/* ---- ntfs-3g -------------------------------------------------------------- */
static const char *
ntfs3g_path(void)
{
  static const char *const candidates[] = { "/usr/bin/ntfs-3g", "/bin/ntfs-3g",
                                            "/usr/local/bin/ntfs-3g", NULL };
  return dism_find_tool("DISM_NTFS3G", candidates);
}

/* The ntfs-3g options (docs/dism-api.md explains each):
 *  - no permissions/acl/uid/gid mapping: ownership and ACLs stay as Windows
 *    wrote them (security descriptors are not rewritten);
 *  - umask=077: the files show as root's alone.  Windows ACLs are not
 *    mapped to local users, so anything wider would open the image (its
 *    registry hives too) to every user; umask only sets the modes shown
 *    (new files still inherit their descriptors as without it);
 *  - streams_interface=xattr: alternate data streams as user.* xattrs;
 *  - windows_names: refuse names Windows cannot open (the image must boot);
 *  - noatime: reading must not change the image;
 *  - nodev,nosuid: files inside an image are not trusted by this host;
 *  - ro for read-only mounts. */
static const char *
ntfs3g_options(enum dism_mode mode)
{
  return mode == DISM_MODE_RO ? "ro,streams_interface=xattr,noatime,nodev,nosuid,umask=077"
                              : "windows_names,streams_interface=xattr,noatime,nodev,nosuid,"
                                "umask=077";
}

static int
ntfs_mount(const struct dism_record *r, const struct dism_live *l)
{
  const char *ntfs3g = ntfs3g_path();
  if (!ntfs3g) {
    dism_set_error("ntfs-3g is not installed (package ntfs-3g)");
    return -ENOENT;
  }
  char log_path[4200];
  snprintf(log_path, sizeof log_path, "%s/ntfs-3g.log", l->dir);
  int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    int e = errno;
    dism_set_error("cannot create %s: %s", log_path, strerror(e));
    return -e;
  }
  const char *argv[] = { ntfs3g, "-o", ntfs3g_options(r->mode), r->attach.fs_dev, r->mount_dir,
                         NULL };
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(argv[0], (char *const *) argv);
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) {
    int e = errno;
    dism_set_error("fork: %s", strerror(e));
    return -e;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char tail[1024];
    dism_read_tail(log_path, tail, sizeof tail);
    dism_set_error("ntfs-3g could not mount %s at %s: %s", r->attach.fs_dev, r->mount_dir,
                   tail[0] ? tail : "(no output)");
    return -EIO;
  }
  dism_log(DISM_LOG_INFO, "Mounted %s at %s with ntfs-3g -o %s", r->attach.fs_dev, r->mount_dir,
           ntfs3g_options(r->mode));
  return 0;
}

/* ---- undoing live state ----------------------------------------------------- */
/* A mount whose server died: its NBD device would hold every request (the
 * syncfs, ntfs-3g's flush at umount) for the dead-connection timeout before
 * failing it.  Fail them now; nothing can reach the image any more anyway.
 * (A server its supervisor is restarting is waited for, not given up.) */
static void
abort_if_server_dead(const struct dism_record *r, const struct dism_live *l)
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
  abort_if_server_dead(r, &l);
  if (dism_record_mounted(r)) {
    if (umount2(r->mount_dir, 0) < 0) {
      int e = errno;
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
 * everything it started is undone and an API error is published. */
static HRESULT
bring_up(struct op *o, struct dism_record *r, const struct dism_live *l)
{
  HRESULT hr = S_OK;
  bool server_up = false, attached = false;
  int rc;

  enum dism_attach_method method = dism_nbd_available() ? DISM_ATTACH_NBD : DISM_ATTACH_LOOP;
  pid_t pid = 0;
  rc = dism_server_start(r, l, method == DISM_ATTACH_LOOP, &pid, r->server_cmd,
                         sizeof r->server_cmd);
  if (rc < 0) {
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  server_up = true;
  op_progress(o, 20);
  if (op_cancelled(o)) {
    hr = op_cancel_result(o, "after the image server started");
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
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc), "Cannot attach %s as a block device: %s",
                       r->image, dism_last_error());
    goto out;
  }
  r->have_attach = attached = true;
  op_progress(o, 50);
  dism_log(DISM_LOG_INFO, "Attached %s as %s (%s); mounting %s", r->image, r->attach.disk_dev,
           method == DISM_ATTACH_NBD ? "NBD" : "loop over FUSE", r->attach.reason);
  op_progress(o, 70);
  /* live.conf now names the device, so a crash from here on is cleanable. */
  if (dism_record_write_path(l->live_conf, r) < 0)
    dism_log(DISM_LOG_WARN, "cannot update %s: %s", l->live_conf, dism_last_error());
  else
    udev_announce(&r->attach);
  if (op_cancelled(o)) {
    hr = op_cancel_result(o, "after the disk was attached");
    goto out;
  }

  rc = ntfs_mount(r, l);
  if (rc < 0) {
    hr = dism_api_fail(o->func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  /* LOOP: the loop device now frees itself once the file system lets go,
   * even if the mount is later detached lazily. */
  if (dism_attach_autoclear(&r->attach) < 0)
    dism_log(DISM_LOG_WARN, "cannot set autoclear on %s: %s", r->attach.fs_dev, dism_last_error());
out:
  if (FAILED(hr)) {
    if (attached && dism_detach(&r->attach) < 0)
      dism_log(DISM_LOG_WARN, "undo: cannot detach %s: %s", r->attach.disk_dev, dism_last_error());
    if (server_up)
      dism_server_stop(l);
    r->have_attach = false;
  }
  return hr;
}

/* ---- validation ------------------------------------------------------------- */
static bool
on_network_fs(const char *path)
{
  struct statfs sf;
  if (statfs(path, &sf) < 0)
    return false;
  switch ((unsigned long) sf.f_type) {
  case 0x6969UL:     /* NFS */
  case 0x517BUL:     /* SMB */
  case 0xFF534D42UL: /* CIFS */
  case 0xFE534D42UL: /* SMB2 */
    return true;
  default:
    return false;
  }
}

static bool
dir_is_empty(const char *path)
{
  DIR *d = opendir(path);
  if (!d)
    return false;
  struct dirent *de;
  bool empty = true;
  while (empty && (de = readdir(d)))
    empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
  closedir(d);
  return empty;
}

/* The root of a file system: "/" or a directory on another device than its
 * parent (a mount point). */
static bool
is_fs_root(const char *dir)
{
  char parent[4200];
  struct stat st, pst;
  snprintf(parent, sizeof parent, "%s/..", dir);
  if (stat(dir, &st) < 0 || stat(parent, &pst) < 0)
    return false;
  return st.st_dev != pst.st_dev || (st.st_ino == pst.st_ino);
}

/* A WIM: open it (verifying its integrity table with /CheckIntegrity) and
 * find the image by index or name. */
static HRESULT
validate_wim(const char *func, UINT index, PCWSTR name, DismImageIdentifier ident, DWORD flags,
             struct dism_record *r, struct dism_wim_image *wi)
{
  char *name_utf8 = NULL;
  if (ident == DismImageName) {
    if (!name || !(name_utf8 = dism_wide_to_utf8(name)))
      return dism_api_fail(func, DISMAPI_E_INVALID_IMAGE_NAME,
                           "%s: ImageName must be a valid image name.", r->image);
  } else if (ident == DismImageNone) {
    index = 1;
  }
  if (flags & DISM_MOUNT_SUPPORT_EA)
    dism_log(DISM_LOG_INFO, "%s: /SupportEa: NTFS extended attributes are kept anyway; ignored",
             func);
  HRESULT hr = dism_wim_resolve(r->image, (flags & DISM_MOUNT_CHECK_INTEGRITY) != 0,
                                ident == DismImageName, index, name_utf8, wi);
  free(name_utf8);
  if (FAILED(hr))
    return dism_api_fail(func, hr, "%s", dism_last_error());
  r->index = wi->index;
  snprintf(r->image_name, sizeof r->image_name, "%s", wi->name);
  snprintf(r->format, sizeof r->format, "wim");
  return S_OK;
}

/* What can be checked without the registry.  wi: the WIM image (WIMs only). */
static HRESULT
validate_mount_args(const char *func, const char *image_arg, const char *dir_arg, UINT index,
                    PCWSTR name, DismImageIdentifier ident, DWORD flags, struct dism_record *r,
                    struct dism_wim_image *wi)
{
  bool vhdx = dism_has_ext(image_arg, ".vhdx"), vhd = dism_has_ext(image_arg, ".vhd");
  bool wim = !vhd && !vhdx;
  if (dism_has_ext(image_arg, ".swm"))
    return dism_api_fail(func, E_INVALIDARG,
                         "%s is a split WIM (.swm): split WIM files cannot be mounted.", image_arg);
  if (!vhd && !vhdx && !dism_has_ext(image_arg, ".wim"))
    return dism_api_fail(func, E_INVALIDARG,
                         "%s: the image file must have a .wim, .vhd or .vhdx extension.",
                         image_arg);
  if (flags & ~(DWORD) (DISM_MOUNT_READONLY | DISM_MOUNT_OPTIMIZE | DISM_MOUNT_CHECK_INTEGRITY |
                        DISM_MOUNT_SUPPORT_EA))
    return dism_api_fail(func, E_INVALIDARG, "Unknown mount flags 0x%08X.", (unsigned) flags);
  struct stat st;
  if (stat(image_arg, &st) < 0)
    return dism_api_fail(func, E_INVALIDARG, "The image file %s does not exist.", image_arg);
  if (!S_ISREG(st.st_mode))
    return dism_api_fail(func, E_INVALIDARG, "The image file %s is not a file.", image_arg);
  if (on_network_fs(image_arg))
    return dism_api_fail(func, E_INVALIDARG,
                         "%s is on a network file system: images must be local to be mounted.",
                         image_arg);
  if (ident != DismImageIndex && ident != DismImageNone && ident != DismImageName)
    return dism_api_fail(func, E_INVALIDARG, "ImageIdentifier %d is not valid.", (int) ident);
  /* A WIM's index or name is resolved by validate_wim, below. */
  if (!wim && ident == DismImageName)
    return dism_api_fail(func, DISMAPI_E_INVALID_IMAGE_NAME,
                         "%s: a VHD/VHDX image has no names; use index 1.", image_arg);
  if (!wim && ident == DismImageIndex && index != 1)
    return dism_api_fail(func, DISMAPI_E_INVALID_IMAGE_INDEX,
                         "%s: index %u is not valid: a VHD/VHDX image has only index 1.",
                         image_arg, (unsigned) index);
  if (stat(dir_arg, &st) < 0)
    return dism_api_fail(func, E_INVALIDARG, "The mount folder %s does not exist.", dir_arg);
  if (!S_ISDIR(st.st_mode))
    return dism_api_fail(func, E_INVALIDARG, "The mount folder %s is not a directory.", dir_arg);
  if (dism_canonical(image_arg, r->image, sizeof r->image) < 0 ||
      dism_canonical(dir_arg, r->mount_dir, sizeof r->mount_dir) < 0)
    return dism_api_fail(func, E_INVALIDARG, "Cannot resolve %s or %s.", image_arg, dir_arg);
  if (strchr(r->image, '\n') || strchr(r->mount_dir, '\n'))
    return dism_api_fail(func, E_INVALIDARG, "Paths with newlines are not supported.");
  if (stat(r->image, &st) < 0)
    return dism_api_fail(func, E_INVALIDARG, "The image file %s does not exist.", r->image);
  r->image_dev = (uint64_t) st.st_dev;
  r->image_ino = (uint64_t) st.st_ino;
  r->index = 1;
  r->mode = (flags & DISM_MOUNT_READONLY) ? DISM_MODE_RO : DISM_MODE_RW;
  if (wim) {
    if (r->mode == DISM_MODE_RW && access(r->image, W_OK) < 0)
      return dism_api_fail(func, DISM_E_NO_PERMISSION_TO_MOUNT_RW,
                           "You do not have permission to mount and modify %s: %s. Mount it "
                           "with /ReadOnly instead.", r->image, strerror(errno));
    return validate_wim(func, index, name, ident, flags, r, wi);
  }
  snprintf(r->format, sizeof r->format, "%s", vhdx ? "vhdx" : "vhd");
  if (flags & (DISM_MOUNT_OPTIMIZE | DISM_MOUNT_CHECK_INTEGRITY | DISM_MOUNT_SUPPORT_EA))
    dism_log(DISM_LOG_INFO, "%s: /Optimize, /CheckIntegrity and /SupportEa do not apply to "
             "VHD/VHDX images; ignored", func);

  /* The image must be a sound image of the format its name says. */
  struct disk *d = NULL;
  struct disk_open_opts opts = { .readonly = true };
  int rc = disk_open(r->image, &opts, &d);
  if (rc < 0)
    return dism_api_fail(func, HRESULT_FROM_WIN32(1392L), "%s", disk_last_error());
  struct disk_info di;
  rc = disk_info(d, &di);
  bool format_ok = rc == 0 && strcmp(di.format, r->format) == 0;
  char found[16];
  snprintf(found, sizeof found, "%s", rc == 0 ? di.format : "unknown");
  disk_close(d);
  if (!format_ok)
    return dism_api_fail(func, HRESULT_FROM_WIN32(1392L),
                         "%s: the extension says %s but the file holds a %s image.", r->image,
                         r->format, found);
  if (r->mode == DISM_MODE_RW && access(r->image, W_OK) < 0)
    return dism_api_fail(func, DISM_E_NO_PERMISSION_TO_MOUNT_RW,
                         "You do not have permission to mount and modify %s: %s. Mount it with "
                         "/ReadOnly instead.", r->image, strerror(errno));
  return S_OK;
}

/* What needs the registry (call with the lock held). */
static HRESULT
validate_against_registry(const char *func, const struct dism_record *r)
{
  HRESULT hr = S_OK;
  char(*ids)[37] = NULL;
  size_t n = 0;
  struct dism_record *other = malloc(sizeof *other);
  if (!other)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  int rc = dism_record_list(&ids, &n);
  if (rc < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot read the mount registry: %s",
                       strerror(-rc));
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (dism_record_read(ids[i], other) < 0)
      continue;
    if (strcmp(other->mount_dir, r->mount_dir) == 0) {
      hr = dism_api_fail(func, DISM_E_MOUNT_DIR_HAS_MOUNT,
                         "The folder %s already holds a mounted image (%s).", r->mount_dir,
                         other->image);
      goto out;
    }
  }
  if (is_fs_root(r->mount_dir)) {
    hr = dism_api_fail(func, E_INVALIDARG,
                       "%s is the root of a file system (a mount point): mounting to the root "
                       "of a drive is not allowed; use an empty folder.", r->mount_dir);
    goto out;
  }
  if (!dir_is_empty(r->mount_dir)) {
    hr = dism_api_fail(func, DISM_E_MOUNT_DIR_NOT_EMPTY,
                       "The user attempted to mount to a directory that is not empty (%s). "
                       "This is not supported.", r->mount_dir);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (dism_record_read(ids[i], other) < 0 || other->image_dev != r->image_dev ||
        other->image_ino != r->image_ino)
      continue;
    if (dism_record_status(other) == DismMountStatusInvalid)
      continue;
    /* WIM mounts each have their own volume: read-only ones coexist with
     * the one read/write mount (they keep the image as it was). */
    if (dism_record_is_wim(r) && dism_record_is_wim(other) &&
        (r->mode == DISM_MODE_RO || other->mode == DISM_MODE_RO))
      continue;
    if (other->mode == DISM_MODE_RW) {
      hr = dism_api_fail(func, DISM_E_ALREADY_MOUNTED_READWRITE,
                         "The specified image in the specified file is already mounted for "
                         "read/write access (at %s).", other->mount_dir);
      goto out;
    }
    if (r->mode == DISM_MODE_RW) {
      hr = dism_api_fail(func, HRESULT_FROM_WIN32(32L) /* ERROR_SHARING_VIOLATION */,
                         "%s is mounted read-only at %s: unmount it before mounting the image "
                         "read/write.", r->image, other->mount_dir);
      goto out;
    }
  }
out:
  free(other);
  free(ids);
  return hr;
}

/* ---- WIM: the synthesized volume, and capture back into the WIM ---------------- */
struct wim_relay {
  struct op *o;
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
    op_progress(w->o, at);
  }
  return op_cancelled(w->o);
}

/* Build the mount's volume file from its WIM image (progress 5..60). */
static HRESULT
synthesize(struct op *o, struct dism_record *r, const struct dism_wim_image *wi, bool optimize)
{
  uint64_t size = dism_wim_volume_size(wi, optimize);
  uint64_t need = dism_wim_volume_need(wi);
  struct statvfs fs;

  /* The volume is sparse, but the image's files will take real space:
   * refuse now rather than after minutes of extraction (and a WIM whose
   * XML claims terabytes gets no terabyte volume). */
  if (statvfs(dism_config()->scratch_dir, &fs) == 0 &&
      need > (uint64_t) fs.f_bavail * fs.f_frsize)
    return dism_api_fail(o->func, HRESULT_FROM_WIN32(ERROR_DISK_FULL),
                         "There is not enough space in the scratch directory %s for image "
                         "%u of %s: its files take about %llu MiB (by the WIM's XML), "
                         "%llu MiB are free.", dism_config()->scratch_dir, r->index, r->image,
                         (unsigned long long) (need >> 20),
                         (unsigned long long) (((uint64_t) fs.f_bavail * fs.f_frsize) >> 20));
  dism_log(DISM_LOG_INFO, "%s: building the NTFS volume %s (%llu bytes%s) from image %u (%s) "
           "of %s", o->func, r->volume, (unsigned long long) size,
           optimize ? ", /Optimize: no servicing room" : "", r->index, r->image_name, r->image);
  struct wim_relay relay = { o, 5, 55, 5 };
  HRESULT hr = dism_wim_synthesize(r->image, r->index, size, r->volume, wim_relay_progress,
                                   &relay);
  if (hr == HRESULT_FROM_WIN32(ERROR_CANCELLED))
    return op_cancel_result(o, "while the image was applied to its volume");
  if (FAILED(hr))
    return dism_api_fail(o->func, hr, "%s", dism_last_error());
  return S_OK;
}

/* Capture the (unmounted, detached, unserved) volume into the WIM.  On
 * failure the message is in dism_last_error() (the caller words the API
 * error: what happens to the changes differs). */
static HRESULT
commit_wim(struct op *o, struct dism_record *r, DWORD flags, UINT from, UINT span)
{
  unsigned wflags = ((flags & DISM_COMMIT_APPEND) ? DISM_WIM_COMMIT_APPEND : 0) |
                    ((flags & DISM_COMMIT_GENERATE_INTEGRITY) ? DISM_WIM_COMMIT_INTEGRITY : 0);
  struct wim_relay relay = { o, from, span, from };
  unsigned written = 0;
  dism_log(DISM_LOG_INFO, "%s: capturing %s into %s (%s image %u%s)", o->func, r->volume,
           r->image, (flags & DISM_COMMIT_APPEND) ? "append after" : "replace", r->index,
           (flags & DISM_COMMIT_GENERATE_INTEGRITY) ? ", with an integrity table" : "");
  HRESULT hr = dism_wim_capture(r->image, r->index, r->volume, wflags, wim_relay_progress, &relay,
                                &written);
  if (FAILED(hr))
    return hr;
  struct stat st;
  if (stat(r->image, &st) == 0) {
    r->image_dev = (uint64_t) st.st_dev;
    r->image_ino = (uint64_t) st.st_ino;
  }
  dism_log(DISM_LOG_INFO, "%s: committed into image %u of %s", o->func, written, r->image);
  return S_OK;
}

/* ---- DismMountImage ----------------------------------------------------------- */
DISM_API HRESULT WINAPI
DismMountImage(PCWSTR ImageFilePath, PCWSTR MountPath, UINT ImageIndex, PCWSTR ImageName,
               DismImageIdentifier ImageIdentifier, DWORD Flags, HANDLE CancelEvent,
               DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismMountImage";
  REQUIRE_INIT(func);
  struct op o;
  HRESULT hr = op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char *image_arg = NULL, *dir_arg = NULL;
  struct dism_record *r = NULL;
  struct dism_live l;
  struct dism_wim_image wi;
  int lock_fd = -1;
  bool live_made = false, up = false;

  if (FAILED(hr = dism_path_arg(func, ImageFilePath, "image file path", &image_arg)) ||
      FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  r = calloc(1, sizeof *r);
  if (!r) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  r->attach.nbd_index = -1;
  hr = validate_mount_args(func, image_arg, dir_arg, ImageIndex, ImageName, ImageIdentifier,
                           Flags, r, &wi);
  if (FAILED(hr))
    goto out;
  lock_fd = dism_registry_lock();
  if (lock_fd < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(lock_fd), "%s", dism_last_error());
    goto out;
  }
  if (FAILED(hr = validate_against_registry(func, r)))
    goto out;
  op_progress(&o, 5);
  if (op_cancelled(&o)) {
    hr = op_cancel_result(&o, "before the image server started");
    goto out;
  }

  int rc = dism_new_guid(r->id);
  if (rc == 0) {
    dism_live_paths(r->id, &l);
    rc = dism_mkdir_p(l.dir, 0700);
  }
  if (rc < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  live_made = true;
  if (r->mode == DISM_MODE_RW &&
      snprintf(r->overlay, sizeof r->overlay, "%s/%s.ovl", dism_config()->scratch_dir, r->id) >=
          (int) sizeof r->overlay) {
    hr = dism_api_fail(func, E_INVALIDARG, "The scratch directory path is too long.");
    goto out;
  }
  if (dism_record_is_wim(r) &&
      snprintf(r->volume, sizeof r->volume, "%s/%s.vol", dism_config()->scratch_dir, r->id) >=
          (int) sizeof r->volume) {
    hr = dism_api_fail(func, E_INVALIDARG, "The scratch directory path is too long.");
    goto out;
  }
  r->created = (int64_t) time(NULL);
  snprintf(r->state, sizeof r->state, "mounting");
  dism_log(DISM_LOG_INFO, "%s: mount %s: %s index %u at %s, %s", func, r->id, r->image,
           r->index, r->mount_dir, r->mode == DISM_MODE_RO ? "read-only" : "read/write");
  /* live.conf names the volume before it exists: cleanup can remove it. */
  if (dism_record_write_path(l.live_conf, r) < 0) {
    hr = dism_api_fail(func, E_FAIL, "%s", dism_last_error());
    goto out;
  }
  if (dism_record_is_wim(r)) {
    if (FAILED(hr = synthesize(&o, r, &wi, (Flags & DISM_MOUNT_OPTIMIZE) != 0)))
      goto out;
    /* bring_up's 0..100 becomes 60..100. */
    o.from = 60;
    o.span = 40;
  }
  if (FAILED(hr = bring_up(&o, r, &l)))
    goto out;
  up = true;
  snprintf(r->state, sizeof r->state, "mounted");
  if ((rc = dism_record_write(r)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: mounted %s at %s (%s)", func, r->image, r->mount_dir,
           r->attach.reason);
  op_progress(&o, PROGRESS_TOTAL);
out:
  if (FAILED(hr) && r) {
    if (up)
      dism_teardown_live(r, true);
    if (live_made) {
      if (r->overlay[0])
        overlay_remove(r->overlay);
      if (r->volume[0])
        unlink(r->volume);
      dism_remove_flat_dir(l.dir);
      dism_record_remove(r->id);
    }
  }
  dism_registry_unlock(lock_fd);
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
  char dir[4096];
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

/* Lock the registry and load the record of the mount at dir into a new
 * *out.  On failure (*lock_fd may then still hold the lock, for the caller's
 * unlock) the HRESULT says why; a folder without a mount gets not_found and
 * the message "<dir> <what>". */
static HRESULT
lock_and_find_mount(const char *func, const char *dir, HRESULT not_found,
                    const char *what, int *lock_fd, struct dism_record **out)
{
  *out = calloc(1, sizeof **out);
  if (!*out)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  *lock_fd = dism_registry_lock();
  if (*lock_fd < 0)
    return dism_api_fail(func, dism_hr_from_errno(*lock_fd), "%s", dism_last_error());
  if (find_mount(dir, *out) < 0)
    return dism_api_fail(func, not_found, "%s %s", dir, what);
  return S_OK;
}

struct commit_relay {
  struct op *o;
  UINT from, span;
};

static void
relay_commit_progress(uint64_t cur, uint64_t total, void *opaque)
{
  struct commit_relay *c = opaque;
  UINT at = c->from + (UINT) (total ? (cur >= total ? c->span : cur * c->span / total) : 0);
  op_progress(c->o, at);
}

/* COMMIT on the record's server (started if it does not run); progress
 * between from and from+span. */
static int
commit_record(struct op *o, const struct dism_record *r, UINT from, UINT span)
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
static void
flush_mount(const struct dism_record *r)
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

/* ---- DismUnmountImage ------------------------------------------------------------ */
DISM_API HRESULT WINAPI
DismUnmountImage(PCWSTR MountPath, DWORD Flags, HANDLE CancelEvent,
                 DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismUnmountImage";
  REQUIRE_INIT(func);
  struct op o;
  HRESULT hr = op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char *dir_arg = NULL;
  struct dism_record *r = NULL;
  int lock_fd = -1, rc;
  if (FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  DWORD action = Flags & ~(DWORD) DISM_COMMIT_MASK;
  if (action != DISM_COMMIT_IMAGE && action != DISM_DISCARD_IMAGE) {
    hr = dism_api_fail(func, E_INVALIDARG, "Flags 0x%08X: use DISM_COMMIT_IMAGE or "
                       "DISM_DISCARD_IMAGE.", (unsigned) Flags);
    goto out;
  }
  hr = lock_and_find_mount(func, dir_arg, DISMAPI_E_UNABLE_TO_UNMOUNT_IMAGE_PATH,
                           "does not hold an image mounted by DISM.", &lock_fd, &r);
  if (FAILED(hr))
    goto out;
  if (dism_session_open_on(r->id)) {
    hr = dism_api_fail(func, DISMAPI_E_OPEN_HANDLES_UNABLE_TO_UNMOUNT_IMAGE_PATH,
                       "A DismSession is open on %s: close it with DismCloseSession first.",
                       r->mount_dir);
    goto out;
  }
  if (op_cancelled(&o)) {
    hr = op_cancel_result(&o, "before unmounting");
    goto out;
  }
  bool commit = action == DISM_COMMIT_IMAGE && r->mode == DISM_MODE_RW;
  bool wim = dism_record_is_wim(r);
  if ((Flags & DISM_COMMIT_MASK) && !wim)
    dism_log(DISM_LOG_INFO, "%s: /CheckIntegrity and /Append do not apply to VHD/VHDX images; "
             "ignored", func);
  dism_log(DISM_LOG_INFO, "%s: unmount %s from %s (%s)", func, r->image, r->mount_dir,
           commit ? "commit" : r->mode == DISM_MODE_RO ? "read-only" : "discard");
  /* Unmount first without forcing: open files -> EBUSY -> nothing changed. */
  if (dism_record_mounted(r)) {
    struct dism_live dl;
    dism_live_paths(r->id, &dl);
    abort_if_server_dead(r, &dl);
    flush_mount(r);
    if (umount2(r->mount_dir, 0) < 0) {
      int e = errno;
      hr = e == EBUSY
               ? dism_api_fail(func, DISM_E_PARTIAL_UNMOUNT,
                               "The directory %s could not be completely unmounted: files are "
                               "still open in it. Close them and unmount again; the mount is "
                               "unchanged.", r->mount_dir)
               : dism_api_fail(func, dism_hr_from_errno(-e), "Cannot unmount %s: %s",
                               r->mount_dir, strerror(e));
      goto out;
    }
    dism_log(DISM_LOG_INFO, "Unmounted %s", r->mount_dir);
  }
  op_progress(&o, 10);
  if (r->have_attach && dism_attach_alive(&r->attach)) {
    if ((rc = dism_detach(&r->attach)) < 0) {
      hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot detach %s: %s",
                         r->attach.disk_dev, dism_last_error());
      goto out;
    }
    dism_log(DISM_LOG_INFO, "Detached %s", r->attach.disk_dev);
  }
  op_progress(&o, 20);
  if (wim) {
    /* The server flushes the volume as it stops: then it is complete on
     * disk for libntfs-3g to read. */
    struct dism_live wl;
    dism_live_paths(r->id, &wl);
    dism_server_stop(&wl);
    if (commit && FAILED(hr = commit_wim(&o, r, Flags, 20, 70))) {
      hr = dism_api_fail(func, hr, "%s. The WIM is unchanged; the changes are kept in %s: the "
                         "mount needs a remount (/Remount-Image) to retry, or an unmount with "
                         "/Discard.", dism_last_error(), r->volume);
      snprintf(r->state, sizeof r->state, "commit-failed");
      dism_record_write(r);
      goto out;
    }
  } else if (commit && (rc = commit_record(&o, r, 20, 70)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc),
                       "%s. The changes are kept in %s; the mount needs a remount "
                       "(/Remount-Image) or an unmount with /Discard.", dism_last_error(),
                       r->overlay);
    snprintf(r->state, sizeof r->state, "commit-failed");
    dism_record_write(r);
    struct dism_live l;
    dism_live_paths(r->id, &l);
    dism_server_stop(&l);
    goto out;
  }
  op_progress(&o, 90);
  struct dism_live l;
  dism_live_paths(r->id, &l);
  dism_server_stop(&l);
  op_progress(&o, 95);
  int orc = r->overlay[0] ? overlay_remove(r->overlay) : 0;   /* and its live map */
  if (orc < 0)
    dism_log(DISM_LOG_WARN, "cannot remove %s: %s", r->overlay, strerror(-orc));
  if (r->volume[0] && unlink(r->volume) < 0 && errno != ENOENT)
    dism_log(DISM_LOG_WARN, "cannot remove %s: %s", r->volume, strerror(errno));
  dism_remove_flat_dir(l.dir);
  if ((rc = dism_record_remove(r->id)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: %s unmounted", func, r->mount_dir);
  op_progress(&o, 100);
out:
  dism_registry_unlock(lock_fd);
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
  struct op o;
  HRESULT hr = op_init(&o, func, NULL, NULL, NULL);
  char *dir_arg = NULL;
  struct dism_record *r = NULL;
  int lock_fd = -1, rc;
  if (FAILED(hr) || FAILED(hr = dism_path_arg(func, MountPath, "mount path", &dir_arg)))
    goto out;
  hr = lock_and_find_mount(func, dir_arg, DISM_E_NOT_A_MOUNT_POINT,
                           "is not a DISM mount point.", &lock_fd, &r);
  if (FAILED(hr))
    goto out;
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
  if (dism_record_mounted(r) || !dir_is_empty(r->mount_dir)) {
    hr = dism_api_fail(func, DISM_E_MOUNT_DIR_NOT_EMPTY,
                       "The mount folder %s is in use or not empty; it cannot be remounted.",
                       r->mount_dir);
    goto out;
  }
  if ((rc = dism_mkdir_p(l.dir, 0700)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  dism_record_write_path(l.live_conf, r);
  dism_log(DISM_LOG_INFO, "%s: remounting %s at %s", func, r->image, r->mount_dir);
  if (FAILED(hr = bring_up(&o, r, &l)))
    goto out;
  snprintf(r->state, sizeof r->state, "mounted");
  if ((rc = dism_record_write(r)) < 0) {
    dism_teardown_live(r, true);
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s", dism_last_error());
    goto out;
  }
  dism_log(DISM_LOG_INFO, "%s: remounted %s at %s", func, r->image, r->mount_dir);
out:
  dism_registry_unlock(lock_fd);
  free(r);
  free(dir_arg);
  return hr;
}

/* ---- DismCommitImage ------------------------------------------------------------- */
/* DismCommitImage of a WIM mount.  libntfs-3g must read a volume nobody has
 * mounted, so: unmount (open files -> ERROR_BUSY, nothing changed), detach,
 * stop the server, capture, then serve, attach and mount again.  The folder
 * is empty for that time. */
static HRESULT
commit_wim_mounted(struct op *o, struct dism_record *r, DWORD flags)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  op_progress(o, 0);
  flush_mount(r);
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
  else if (FAILED(hr = commit_wim(o, r, flags, 5, 80)))
    hr = dism_api_fail(o->func, hr, "%s. The WIM is unchanged; the changes stay in the mount.",
                       dism_last_error());
  /* Mounted again whatever happened: the changes live in the volume. */
  o->from = 85;
  o->span = 15;
  HRESULT up = bring_up(o, r, &l);
  o->from = 0;
  o->span = PROGRESS_TOTAL;
  if (dism_record_write(r) < 0)
    dism_log(DISM_LOG_WARN, "cannot update the record of %s: %s", r->mount_dir,
             dism_last_error());
  if (FAILED(up))
    return dism_api_fail(o->func, up, "%s The image could not be mounted again at %s: %s; "
                         "run /Remount-Image.", SUCCEEDED(hr) ? "The changes were committed." :
                         "Nothing was committed.", r->mount_dir, dism_last_error());
  return hr;
}

DISM_API HRESULT WINAPI
DismCommitImage(DismSession Session, DWORD Flags, HANDLE CancelEvent,
                DISM_PROGRESS_CALLBACK Progress, PVOID UserData)
{
  static const char func[] = "DismCommitImage";
  REQUIRE_INIT(func);
  struct op o;
  HRESULT hr = op_init(&o, func, CancelEvent, Progress, UserData);
  if (FAILED(hr))
    return hr;
  char mount_id[37], path[4096];
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
  int lock_fd = -1, rc;
  if (!r)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  lock_fd = dism_registry_lock();
  if (lock_fd < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(lock_fd), "%s", dism_last_error());
    goto out;
  }
  if (dism_record_read(mount_id, r) < 0) {
    hr = dism_api_fail(func, E_INVALIDARG, "The image mounted at %s is no longer mounted.", path);
    goto out;
  }
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
  if (op_cancelled(&o)) {
    hr = op_cancel_result(&o, "before committing");
    goto out;
  }
  if (dism_record_is_wim(r)) {
    hr = commit_wim_mounted(&o, r, Flags);
    if (SUCCEEDED(hr))
      op_progress(&o, PROGRESS_TOTAL);
    goto out;
  }
  if (Flags & DISM_COMMIT_MASK)
    dism_log(DISM_LOG_INFO, "%s: /CheckIntegrity and /Append do not apply to VHD/VHDX images; "
             "ignored", func);
  op_progress(&o, 0);
  flush_mount(r);
  if ((rc = commit_record(&o, r, 0, 100)) < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "%s. The mount is unchanged.",
                       dism_last_error());
    goto out;
  }
  op_progress(&o, 100);
out:
  dism_registry_unlock(lock_fd);
  free(r);
  return hr;
}

/* ---- DismCleanupMountpoints -------------------------------------------------------- */
/* Remove everything a broken mount left: its live part, overlay, record. */
static void
remove_mount_leftovers(const struct dism_record *r, bool remove_overlay)
{
  dism_teardown_live(r, true);
  if (remove_overlay && r->overlay[0])
    overlay_remove(r->overlay);
  if (remove_overlay && r->volume[0])
    unlink(r->volume);
  char dir[4200];
  dism_live_dir(r->id, dir, sizeof dir);
  dism_remove_flat_dir(dir);
  dism_record_remove(r->id);
  dism_log(DISM_LOG_INFO, "DismCleanupMountpoints: removed mount %s (%s at %s)", r->id,
           r->image[0] ? r->image : "?", r->mount_dir[0] ? r->mount_dir : "?");
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
  int lock_fd = -1;
  if (!r)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  lock_fd = dism_registry_lock();
  if (lock_fd < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(lock_fd), "%s", dism_last_error());
    goto out;
  }
  int rc = dism_record_list(&ids, &n);
  if (rc < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot read the mount registry.");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (dism_record_read(ids[i], r) < 0) {
      /* Unreadable record: what live.conf knows is all there is to undo. */
      struct dism_live l;
      dism_live_paths(ids[i], &l);
      if (dism_record_read_path(l.live_conf, ids[i], r) < 0) {
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", ids[i]);
      }
      remove_mount_leftovers(r, true);
    } else if (dism_record_status(r) == DismMountStatusInvalid) {
      remove_mount_leftovers(r, true);
    }
  }
  /* Live parts without a record: a mount that never completed. */
  char live_root[4200];
  snprintf(live_root, sizeof live_root, "%s/mounts", dism_run_dir());
  DIR *d = opendir(live_root);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    char record_path[4200];
    if (strlen(de->d_name) != 36)
      continue;
    dism_record_path(de->d_name, record_path, sizeof record_path);
    if (access(record_path, F_OK) == 0)
      continue;
    struct dism_live l;
    dism_live_paths(de->d_name, &l);
    if (dism_record_read_path(l.live_conf, de->d_name, r) < 0) {
      memset(r, 0, sizeof *r);
      memcpy(r->id, de->d_name, 36); /* length checked above */
      r->id[36] = '\0';
    }
    remove_mount_leftovers(r, true);
  }
  if (d)
    closedir(d);
out:
  dism_registry_unlock(lock_fd);
  free(ids);
  free(r);
  return hr;
}
