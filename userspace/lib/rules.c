/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rules.c - DISM's rules for a mount: the arguments, the image (its
 * extension, format and soundness; a WIM's image by index or name), the
 * mount folder, and what other mounts in the registry allow. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "disk.h"
#include "dism-internal.h"
#include "path-size.h"
#include "rules.h"
#include "wim.h"

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

bool
dism_dir_is_empty(const char *path)
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
  char parent[DISM_SUBPATH_MAX];
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
  int rc = dism_wim_resolve(r->image, (flags & DISM_MOUNT_CHECK_INTEGRITY) != 0,
                            ident == DismImageName, index, name_utf8, wi);
  free(name_utf8);
  if (rc == -ESRCH && ident == DismImageName)
    return dism_api_fail_last(func, DISMAPI_E_INVALID_IMAGE_NAME);
  if (rc < 0)
    return dism_api_fail_errno(func, rc);
  r->index = wi->index;
  snprintf(r->image_name, sizeof r->image_name, "%s", wi->name);
  snprintf(r->format, sizeof r->format, "wim");
  return S_OK;
}

/* What can be checked without the registry.  wi: the WIM image (WIMs only). */
HRESULT
dism_validate_mount_args(const char *func, const char *image_arg, const char *dir_arg,
                         UINT index, PCWSTR name, DismImageIdentifier ident, DWORD flags,
                         struct dism_record *r, struct dism_wim_image *wi)
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
  if (rc < 0) {
    dism_error_from_engine(rc);
    return dism_api_fail_last(func, HRESULT_FROM_WIN32(ERROR_FILE_CORRUPT));
  }
  struct disk_info di;
  rc = disk_info(d, &di);
  bool format_ok = rc == 0 && strcmp(di.format, r->format) == 0;
  char found[16];
  snprintf(found, sizeof found, "%s", rc == 0 ? di.format : "unknown");
  disk_close(d);
  if (!format_ok)
    return dism_api_fail(func, HRESULT_FROM_WIN32(ERROR_FILE_CORRUPT),
                         "%s: the extension says %s but the file holds a %s image.", r->image,
                         r->format, found);
  if (r->mode == DISM_MODE_RW && access(r->image, W_OK) < 0)
    return dism_api_fail(func, DISM_E_NO_PERMISSION_TO_MOUNT_RW,
                         "You do not have permission to mount and modify %s: %s. Mount it with "
                         "/ReadOnly instead.", r->image, strerror(errno));
  return S_OK;
}

/* What needs the registry (call with the registry lock held, and the
 * folder and image locked: locks.h). */
HRESULT
dism_validate_against_registry(const char *func, const struct dism_record *r)
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
  if (!dism_dir_is_empty(r->mount_dir)) {
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
    /* Read-only WIM mounts coexist with the one read/write mount: its
     * writes go to its overlay, and its commit appends to the WIM, which
     * never moves the blobs the read-only mounts' servers read (they keep
     * the image as it was). */
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
      hr = dism_api_fail(func, HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION),
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
