/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism-boot.c - what the boot units run around the dism command.
 *
 *   dism-boot start [--remount] [--mkdir] DISM [ARGS...]
 *       ExecStart of a dismtab entry's unit; ARGS are a dism /Mount-Image
 *       command line.  If the folder holds no mount, exec DISM ARGS (the
 *       mount).  If it holds a mount of the same image (file, index or name,
 *       mode): Ok -> success, nothing done (the unit was restarted, or
 *       dism-remount.service came first); NeedsRemount -> with --remount exec
 *       DISM /Remount-Image (the changes come back), else fail saying how to
 *       recover; a read-only mount has no changes to lose and is always
 *       remounted.  Another mount there, or an Invalid one: fail, saying what.
 *   dism-boot park [--log FILE] {MOUNTDIR... | --all | --own}
 *       Unmount, detach and stop the server of a mount but keep its record
 *       and its changes (overlay or WIM volume): it is NeedsRemount at the
 *       next boot, like a mount that was live when the machine went down,
 *       only cleanly.  ExecStop of "keep" entries; --own (every Ok mount
 *       whose server runs in our own cgroup, i.e. was started by this unit)
 *       is dism-remount.service's ExecStop.
 *   dism-boot remount [--log FILE] {MOUNTDIR... | --all}
 *       /Remount-Image of the given mounts, or of every NeedsRemount mount
 *       (dism-remount.service).  A failure does not stop the others.
 *
 * Messages go to stdout/stderr (the journal, under a unit).  Exit status 0,
 * or 1 if anything failed; 2 for a usage error.  See docs/boot.md. */
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <wchar.h>

#include "DismApi.h"
#include "dism-internal.h"
#include "locks.h"
#include "path-size.h"

static const char *prog = "dism-boot";

static void
usage(FILE *f)
{
  fprintf(f, "usage: %s start [--remount] [--mkdir] DISM /Mount-Image ARGS...\n"
             "       %s park [--log FILE] {MOUNTDIR... | --all | --own}\n"
             "       %s remount [--log FILE] {MOUNTDIR... | --all}\n"
             "The helper of the dismtab(5) units and dism-remount.service.\n",
          prog, prog, prog);
}

/* The value of /Name:value in a dism command line (case-insensitive). */
static const char *
dism_option(int argc, char **argv, const char *name)
{
  size_t n = strlen(name);
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '/' && strncasecmp(argv[i] + 1, name, n) == 0 && argv[i][n + 1] == ':')
      return argv[i] + n + 2;
  return NULL;
}

static bool
dism_flag(int argc, char **argv, const char *name)
{
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '/' && strcasecmp(argv[i] + 1, name) == 0)
      return true;
  return false;
}

static const char *
status_name(DismMountStatus s)
{
  return s == DismMountStatusOk ? "Ok" : s == DismMountStatusNeedsRemount ? "NeedsRemount"
                                                                           : "Invalid";
}

/* ---- start ---------------------------------------------------------------------------- */
static int
exec_dism(char **argv)
{
  fflush(stdout);
  fflush(stderr);
  execv(argv[0], argv);
  fprintf(stderr, "%s: cannot run %s: %s\n", prog, argv[0], strerror(errno));
  return 1;
}

/* DISM /Remount-Image /MountDir:dir, keeping the log options of argv. */
static int
exec_remount(int argc, char **argv, const char *dir)
{
  char **nargv = calloc((size_t) argc + 3, sizeof *nargv);
  char *mount_dir = NULL;
  if (!nargv || asprintf(&mount_dir, "/MountDir:%s", dir) < 0) {
    fprintf(stderr, "%s: out of memory\n", prog);
    return 1;
  }
  int n = 0;
  nargv[n++] = argv[0];
  for (int i = 1; i < argc; i++)
    if (!strcasecmp(argv[i], "/Quiet") || !strncasecmp(argv[i], "/LogPath:", 9) ||
        !strncasecmp(argv[i], "/LogLevel:", 10))
      nargv[n++] = argv[i];
  nargv[n++] = "/Remount-Image";
  nargv[n++] = mount_dir;
  nargv[n] = NULL;
  return exec_dism(nargv);
}

static int
cmd_start(int argc, char **argv)
{
  bool remount = false, make_dir = false;
  int i = 1;
  for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
    if (!strcmp(argv[i], "--remount"))
      remount = true;
    else if (!strcmp(argv[i], "--mkdir"))
      make_dir = true;
    else {
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc || argv[i][0] != '/') {
    usage(stderr);
    return 2;
  }
  int dargc = argc - i;
  char **dargv = argv + i;
  const char *dir = dism_option(dargc, dargv, "MountDir");
  const char *image = dism_option(dargc, dargv, "ImageFile");
  if (!image)
    image = dism_option(dargc, dargv, "WimFile");
  if (!dir || !image)
    return exec_dism(dargv); /* dism says what is missing */
  if (make_dir) {
    int rc = dism_mkdir_p(dir, 0755);
    if (rc < 0) {
      fprintf(stderr, "%s: cannot create the mount folder %s: %s\n", prog, dir,
              dism_last_error());
      return 1;
    }
  }
  char canon_dir[DISM_PATH_MAX], canon_image[DISM_PATH_MAX];
  struct dism_record *r = calloc(1, sizeof *r);
  if (!r) {
    fprintf(stderr, "%s: out of memory\n", prog);
    return 1;
  }
  int rc = dism_canonical(dir, canon_dir, sizeof canon_dir);
  if (rc == 0)
    rc = dism_record_find_by_dir(canon_dir, r);
  if (rc < 0) {
    /* No mount there (or no folder: dism says so): mount. */
    free(r);
    printf("%s: mounting %s at %s\n", prog, image, dir);
    return exec_dism(dargv);
  }
  DismMountStatus status = dism_record_status(r);
  const char *name = dism_option(dargc, dargv, "Name"), *index = dism_option(dargc, dargv, "Index");
  bool read_only = dism_flag(dargc, dargv, "ReadOnly");
  bool same = dism_canonical(image, canon_image, sizeof canon_image) == 0 &&
              strcmp(canon_image, r->image) == 0 &&
              (r->mode == DISM_MODE_RO) == read_only &&
              (name ? strcmp(name, r->image_name) == 0
                    : index && strtoul(index, NULL, 10) == r->index);
  int ret = 1;
  if (status == DismMountStatusInvalid) {
    fprintf(stderr, "%s: the mount of %s at %s is Invalid (its image, overlay or volume is "
            "gone): run dism /Cleanup-Mountpoints, then start this unit again.\n", prog,
            r->image, r->mount_dir);
  } else if (!same) {
    fprintf(stderr, "%s: %s already holds another mount: %s index %u (%s), %s, status %s; "
            "this entry wants %s %s%s (%s). Unmount the other one first (dism /Unmount-Image "
            "/MountDir:%s {/Commit|/Discard}).\n", prog, r->mount_dir, r->image, r->index,
            r->image_name[0] ? r->image_name : "-", r->mode == DISM_MODE_RO ? "read-only"
                                                                         : "read/write",
            status_name(status), image, name ? "name " : "index ", name ? name : index ? index : "?",
            read_only ? "read-only" : "read/write", r->mount_dir);
  } else if (status == DismMountStatusOk) {
    printf("%s: %s is already mounted at %s (status Ok): nothing to do\n", prog, r->image,
           r->mount_dir);
    ret = 0;
  } else if (status == DismMountStatusNeedsRemount && (remount || r->mode == DISM_MODE_RO)) {
    printf("%s: %s at %s needs a remount (it was mounted when the system went down): "
           "remounting it%s\n", prog, r->image, r->mount_dir,
           r->mode == DISM_MODE_RO ? " (read-only)" : " with its changes");
    ret = exec_remount(dargc, dargv, r->mount_dir);
  } else {
    fprintf(stderr, "%s: %s at %s needs a remount (it was mounted when the system went down; "
            "its changes are kept). Run dism /Remount-Image /MountDir:%s, or add the option "
            "'remount' to its dismtab line to do it at boot.\n", prog, r->image, r->mount_dir,
            r->mount_dir);
  }
  free(r);
  return ret;
}

/* ---- park ------------------------------------------------------------------------------- */
/* The unified-hierarchy cgroup ("0::/path") of a process, or "" */
static void
cgroup_of(const char *pid, char *out, size_t cap)
{
  char path[64], line[4096];
  out[0] = '\0';
  snprintf(path, sizeof path, "/proc/%s/cgroup", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "0::", 3)) {
      line[strcspn(line, "\n")] = '\0';
      snprintf(out, cap, "%s", line + 3);
    }
  fclose(f);
}

static bool
server_in_my_cgroup(const struct dism_record *r)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  pid_t pid = dism_server_pid(&l);
  if (pid <= 0)
    return false;
  char mine[DISM_PATH_MAX], theirs[DISM_PATH_MAX], pid_text[32];
  snprintf(pid_text, sizeof pid_text, "%d", (int) pid);
  cgroup_of("self", mine, sizeof mine);
  cgroup_of(pid_text, theirs, sizeof theirs);
  return mine[0] && strcmp(mine, theirs) == 0;
}

/* Park one mount; the registry lock is held. */
/* The folder's lock (locks.h): an operation on it finishes first. */
static int
lock_folder(const char *dir)
{
  int fd = dism_lock_folder(NULL, dir);
  if (fd < 0)
    fprintf(stderr, "%s: %s\n", prog, dism_last_error());
  return fd;
}

static int
park_record(const struct dism_record *r)
{
  struct dism_live l;
  dism_live_paths(r->id, &l);
  DismMountStatus status = dism_record_status(r);
  if (status == DismMountStatusInvalid) {
    fprintf(stderr, "%s: the mount of %s at %s is Invalid: nothing to park (dism "
            "/Cleanup-Mountpoints removes it)\n", prog, r->image, r->mount_dir);
    return 1;
  }
  if (status == DismMountStatusNeedsRemount) {
    /* Whatever is left of it (a dead server's mount) goes. */
    dism_teardown_live(r, dism_server_pid(&l) == 0);
    dism_remove_flat_dir(l.dir);
    printf("%s: %s at %s already needs a remount: left so\n", prog, r->image, r->mount_dir);
    return 0;
  }
  /* Write back what the file system holds before it goes away. */
  int fd = open(r->mount_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    syncfs(fd);
    close(fd);
  }
  int rc = dism_teardown_live(r, false);
  if (rc < 0) {
    fprintf(stderr, "%s: cannot park %s: %s%s\n", prog, r->mount_dir, dism_last_error(),
            rc == -EBUSY ? " (files are open in it)" : "");
    return 1;
  }
  dism_remove_flat_dir(l.dir);
  dism_log(DISM_LOG_INFO, "dism-boot: parked %s at %s: the record and the changes are kept "
           "(NeedsRemount)", r->image, r->mount_dir);
  printf("%s: parked %s: unmounted and its server stopped; the changes are kept%s%s, and the "
         "mount is Needs Remount until it is remounted\n", prog, r->mount_dir,
         r->overlay[0] || r->volume[0] ? " in " : "",
         r->volume[0] ? r->volume : r->overlay);
  return 0;
}

/* --log FILE: DismInitialize with it (the default log otherwise). */
static int
init_api(const char *log)
{
  wchar_t *wlog = NULL;
  if (log) {
    size_t n = mbstowcs(NULL, log, 0);
    if (n == (size_t) -1 || !(wlog = calloc(n + 1, sizeof *wlog))) {
      fprintf(stderr, "%s: bad log path %s\n", prog, log);
      return -1;
    }
    mbstowcs(wlog, log, n + 1);
  }
  HRESULT hr = DismInitialize(DismLogErrorsWarningsInfo, wlog, NULL);
  free(wlog);
  if (FAILED(hr)) {
    DismString *msg = NULL;
    DismGetLastErrorMessage(&msg);
    fprintf(stderr, "%s: DismInitialize failed (0x%08x): %ls\n", prog, (unsigned) hr,
            msg ? msg->Value : L"");
    DismDelete(msg);
    return -1;
  }
  return 0;
}

/* Options shared by park and remount: --log FILE, --all, --own (park). */
struct targets {
  const char *log;
  bool all, own;
  int first; /* argv index of the first MOUNTDIR */
};

static int
parse_targets(int argc, char **argv, bool allow_own, struct targets *t)
{
  memset(t, 0, sizeof *t);
  int i = 1;
  for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
    if (!strcmp(argv[i], "--log") && i + 1 < argc)
      t->log = argv[++i];
    else if (!strcmp(argv[i], "--all"))
      t->all = true;
    else if (allow_own && !strcmp(argv[i], "--own"))
      t->own = true;
    else
      return -1;
  }
  t->first = i;
  bool dirs = i < argc;
  if ((t->all || t->own) == dirs || (t->all && t->own))
    return -1;
  return 0;
}

static int
cmd_park(int argc, char **argv)
{
  struct targets t;
  if (parse_targets(argc, argv, true, &t) < 0) {
    usage(stderr);
    return 2;
  }
  if (init_api(t.log) < 0)
    return 1;
  int ret = 0;
  struct dism_record *r = calloc(1, sizeof *r);
  char(*ids)[37] = NULL;
  size_t n = 0;
  if (!r) {
    fprintf(stderr, "%s: out of memory\n", prog);
    ret = 1;
    goto out;
  }
  if (t.all || t.own) {
    int rc = dism_record_list(&ids, &n);
    if (rc < 0) {
      fprintf(stderr, "%s: cannot read the mount registry: %s\n", prog, strerror(-rc));
      ret = 1;
      goto out;
    }
    for (size_t k = 0; k < n; k++) {
      if (dism_record_read(ids[k], r) < 0)
        continue;
      int lock = lock_folder(r->mount_dir);
      if (lock < 0) {
        ret = 1;
        break;
      }
      if (dism_record_read(ids[k], r) == 0 && dism_record_status(r) == DismMountStatusOk &&
          (!t.own || server_in_my_cgroup(r)))
        ret |= park_record(r);
      dism_unlock(lock);
    }
  } else {
    for (int k = t.first; k < argc; k++) {
      char dir[DISM_PATH_MAX];
      int lock = -1;
      if (dism_canonical(argv[k], dir, sizeof dir) == 0 && dism_record_find_by_dir(dir, r) == 0) {
        if ((lock = lock_folder(dir)) < 0) {
          ret = 1;
          break;
        }
      }
      /* (found again under the lock: it may have been unmounted meanwhile) */
      if (lock < 0 || dism_record_find_by_dir(dir, r) < 0) {
        fprintf(stderr, "%s: %s does not hold an image mounted by DISM\n", prog, argv[k]);
        ret = 1;
      } else {
        ret |= park_record(r);
      }
      dism_unlock(lock);
    }
  }
out:
  free(ids);
  free(r);
  DismShutdown();
  return ret;
}

/* ---- remount ------------------------------------------------------------------------------ */
static int
remount_one(PCWSTR dir)
{
  HRESULT hr = DismRemountImage(dir);
  if (SUCCEEDED(hr)) {
    printf("%s: remounted %ls\n", prog, dir);
    return 0;
  }
  DismString *msg = NULL;
  DismGetLastErrorMessage(&msg);
  fprintf(stderr, "%s: cannot remount %ls (0x%08x): %ls\n", prog, dir, (unsigned) hr,
          msg ? msg->Value : L"");
  DismDelete(msg);
  return 1;
}

static int
cmd_remount(int argc, char **argv)
{
  struct targets t;
  if (parse_targets(argc, argv, false, &t) < 0) {
    usage(stderr);
    return 2;
  }
  if (init_api(t.log) < 0)
    return 1;
  int ret = 0;
  if (t.all) {
    DismMountedImageInfo *info = NULL;
    UINT count = 0;
    HRESULT hr = DismGetMountedImageInfo(&info, &count);
    if (FAILED(hr)) {
      fprintf(stderr, "%s: cannot list the mounts (0x%08x)\n", prog, (unsigned) hr);
      ret = 1;
    }
    UINT done = 0;
    for (UINT k = 0; k < count; k++)
      if (info[k].MountStatus == DismMountStatusNeedsRemount) {
        ret |= remount_one(info[k].MountPath);
        done++;
      }
    if (!ret)
      printf("%s: %u mount%s needed a remount\n", prog, done, done == 1 ? "" : "s");
    DismDelete(info);
  } else {
    for (int k = t.first; k < argc; k++) {
      size_t n = mbstowcs(NULL, argv[k], 0);
      wchar_t *w = n == (size_t) -1 ? NULL : calloc(n + 1, sizeof *w);
      if (!w) {
        fprintf(stderr, "%s: bad path %s\n", prog, argv[k]);
        ret = 1;
        continue;
      }
      mbstowcs(w, argv[k], n + 1);
      ret |= remount_one(w);
      free(w);
    }
  }
  DismShutdown();
  return ret;
}

int
main(int argc, char **argv)
{
  if (!setlocale(LC_ALL, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
    setlocale(LC_CTYPE, "C.UTF-8");
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "start"))
    return cmd_start(argc - 1, argv + 1);
  if (!strcmp(argv[1], "park"))
    return cmd_park(argc - 1, argv + 1);
  if (!strcmp(argv[1], "remount"))
    return cmd_remount(argc - 1, argv + 1);
  usage(stderr);
  return 2;
}
