/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ntfs3g.c - mounting a mount's NTFS partition with ntfs-3g: where the
 * program is, the options DISM's semantics need, running it (dism_spawn). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dism-internal.h"
#include "live.h"
#include "path-size.h"
#include "spawn.h"

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

int
dism_ntfs_mount(const struct dism_record *r, const struct dism_live *l)
{
  const char *ntfs3g = ntfs3g_path();
  if (!ntfs3g) {
    dism_set_error("ntfs-3g is not installed (package ntfs-3g)");
    return -ENOENT;
  }
  char log_path[DISM_SUBPATH_MAX];
  snprintf(log_path, sizeof log_path, "%s/ntfs-3g.log", l->dir);
  int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    int e = errno;
    dism_set_error("cannot create %s: %s", log_path, strerror(e));
    return -e;
  }
  const char *argv[] = { ntfs3g, "-o", ntfs3g_options(r->mode), r->attach.fs_dev, r->mount_dir,
                         NULL };
  /* ntfs-3g keeps none of our descriptors (its daemon outlives this call);
   * it opens the device and /dev/fuse itself. */
  struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
  o.stdout_fd = o.stderr_fd = log_fd;
  pid_t pid;
  int rc = dism_spawn(argv, &o, &pid);
  close(log_fd);
  if (rc < 0) {
    dism_set_error("fork: %s", strerror(-rc));
    return rc;
  }
  /* A caller that ignores SIGCHLD leaves no status: status 0, as before. */
  int status = 0;
  (void) dism_spawn_wait(pid, &status);
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
