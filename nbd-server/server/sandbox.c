/* SPDX-License-Identifier: GPL-2.0-or-later */
/* sandbox.c - what dism-nbd-server gives up once it is set up.
 *
 * Once the image, its parents, the overlay, the listening sockets and the
 * FUSE mount are open, serving needs no capability, no new file and a few
 * dozen system calls.  The layers, each stopping something the others do
 * not:
 *
 *  1. Capabilities: all dropped (effective, permitted, inheritable,
 *     ambient, and the bounding set), after switching to --user if given;
 *     no_new_privs, so no execve can give any back.
 *  2. Landlock (where the kernel has it): no file may be opened, created or
 *     removed except /dev/fuse (libfuse clones its session fd per worker),
 *     the socket and pid file directories (unlink at exit, the pid file
 *     renamed into place) and the TLS credentials (read while the server
 *     is created).  Descriptors opened before are not affected: the image,
 *     its parents and the overlay stay usable and cannot be opened again
 *     (say, read-write).  Landlock also forbids mount and umount, and (ABI
 *     4 and 6) TCP bind/connect and signals or abstract sockets outside the
 *     server.
 *  3. seccomp: an allow-list of the serving loop's system calls, a few
 *     with their arguments checked (clone only for threads, kill and
 *     tgkill only to ourselves, no PROT_EXEC, two ioctls).  Any other call
 *     fails with EPERM.  EPERM rather than killing the process: a call the
 *     list misses on some rare path then fails like an I/O error instead
 *     of taking a mounted image (and its unflushed writes) down with it,
 *     and an attacker gains nothing either way: the call does not happen.
 *  4. The FUSE unmount helper: umount needs CAP_SYS_ADMIN and Landlock
 *     refuses it, so a helper forked before the rest keeps exactly that
 *     capability (and a seccomp filter of eleven calls) and unmounts when
 *     the server stops or dies.
 *
 * Capabilities, the uid and the Landlock domain belong to a thread and are
 * inherited by the threads it creates, so main.c calls sandbox_lock_down
 * before any thread exists.  The seccomp filter comes after the server is
 * created (so GnuTLS loads its credentials unfiltered) and is loaded with
 * TSYNC: it covers the worker threads started in between.
 *
 * Sanitizer builds: LeakSanitizer stops the world at exit with a
 * ptrace-ing clone and reads /proc/self, so with ASan the filter also
 * allows clone (any flags), ptrace, prctl and a few more, and Landlock lets
 * the server read its own /proc directory.  Everything else is the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dlfcn.h>

#include "disk.h"
#include "sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_ASAN 1
#endif
#endif

#ifdef SANDBOX_ASAN
/* What the ASan/LSan runtime calls beyond the serving loop (reports, the
 * stop-the-world tracer, /proc/self reads); clone is checked separately. */
static const char *const sanitizer_calls[] = {
  "ptrace", "prctl", "open", "stat", "lstat", "access", "getdents",
  "getdents64", "sigaltstack", "readlink", "readlinkat",
  "getrlimit", "prlimit64", "mincore", "uname", "dup", "dup2", "dup3", "getppid",
  NULL,
};
#endif

/* Landlock constants newer than this system's <linux/landlock.h>. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define LL_NET_BIND_TCP                (1ULL << 0)
#define LL_NET_CONNECT_TCP             (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET  (1ULL << 0)
#define LL_SCOPE_SIGNAL                (1ULL << 1)
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

/* struct landlock_ruleset_attr as of ABI 6; older kernels get a prefix. */
struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

#define LL_FS_ABI1                                                          \
  (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |             \
   LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |             \
   LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |         \
   LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |             \
   LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |             \
   LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |           \
   LANDLOCK_ACCESS_FS_MAKE_SYM)
/* The rights that apply to a file (the rest only to directories). */
#define LL_FILE_RIGHTS                                                      \
  (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |             \
   LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |             \
   LANDLOCK_ACCESS_FS_IOCTL_DEV)

#define MAX_RULES 16
#define FUSE_DEV_IOC_CLONE_CMD 0x8004e500UL   /* _IOR(229, 0, uint32_t) */
#ifndef BLKZEROOUT
#define BLKZEROOUT _IO(0x12, 127)
#endif

struct rule {
  char *path;
  uint64_t access;
  bool keep_open;               /* /proc/<pid>: see landlock_apply */
};

struct sandbox {
  struct rule rules[MAX_RULES];
  int nrules;
  bool fuse;
  bool have_user;
  uid_t uid;
  gid_t gid;
  char *fuse_path;              /* the unmount helper's mount point */
  pid_t helper;                 /* 0: none */
  bool helper_root;             /* it keeps CAP_SYS_ADMIN (else: fusermount3) */
  int helper_fd;                /* its pipe: closing it means "unmount" */
  int landlock_abi;             /* 0: not applied */
  int nsyscalls;                /* 0: no filter */
  char desc[512];
};

int
sandbox_new(struct sandbox **out)
{
  struct sandbox *sb = calloc(1, sizeof *sb);

  if (!sb)
    return -ENOMEM;
  sb->helper_fd = -1;
  *out = sb;
  return 0;
}

void
sandbox_free(struct sandbox *sb)
{
  int i;

  if (!sb)
    return;
  if (sb->helper_fd >= 0)
    close(sb->helper_fd);           /* the helper unmounts and exits */
  for (i = 0; i < sb->nrules; i++)
    free(sb->rules[i].path);
  free(sb->fuse_path);
  free(sb);
}

static bool
all_digits(const char *s)
{
  if (!*s)
    return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

int
sandbox_set_user(struct sandbox *sb, const char *spec)
{
  char buf[256], *group;
  struct passwd *pw = NULL;
  struct group *gr;

  if (snprintf(buf, sizeof buf, "%s", spec) >= (int) sizeof buf) {
    disk_set_error("--user %s: too long", spec);
    return -ENAMETOOLONG;
  }
  group = strchr(buf, ':');
  if (group)
    *group++ = '\0';
  if (all_digits(buf)) {
    sb->uid = (uid_t) strtoul(buf, NULL, 10);
    pw = getpwuid(sb->uid);
  } else {
    pw = getpwnam(buf);
    if (!pw) {
      disk_set_error("--user %s: no such user", buf);
      return -ENOENT;
    }
    sb->uid = pw->pw_uid;
  }
  if (group && all_digits(group)) {
    sb->gid = (gid_t) strtoul(group, NULL, 10);
  } else if (group) {
    gr = getgrnam(group);
    if (!gr) {
      disk_set_error("--user %s: no such group", group);
      return -ENOENT;
    }
    sb->gid = gr->gr_gid;
  } else if (pw) {
    sb->gid = pw->pw_gid;
  } else {
    disk_set_error("--user %s: a numeric user without a passwd entry needs :GID", spec);
    return -EINVAL;
  }
  sb->have_user = true;
  return 0;
}

static int
add_rule(struct sandbox *sb, const char *path, uint64_t access)
{
  if (sb->nrules == MAX_RULES) {
    disk_set_error("sandbox: too many file rules");
    return -E2BIG;
  }
  sb->rules[sb->nrules].path = strdup(path);
  if (!sb->rules[sb->nrules].path)
    return -ENOMEM;
  sb->rules[sb->nrules++].access = access;
  return 0;
}

/* A rule on the directory holding file. */
static int
add_parent_rule(struct sandbox *sb, const char *file, uint64_t access)
{
  char dir[PATH_MAX];
  char *slash;

  if (snprintf(dir, sizeof dir, "%s", file) >= (int) sizeof dir)
    return -ENAMETOOLONG;
  slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  return add_rule(sb, dir, access);
}

int
sandbox_allow_remove(struct sandbox *sb, const char *file)
{
  return add_parent_rule(sb, file, LANDLOCK_ACCESS_FS_REMOVE_FILE);
}

int
sandbox_allow_replace(struct sandbox *sb, const char *file)
{
  return add_parent_rule(sb, file, LANDLOCK_ACCESS_FS_MAKE_REG |
                                   LANDLOCK_ACCESS_FS_REMOVE_FILE);
}

int
sandbox_allow_read(struct sandbox *sb, const char *path)
{
  return add_rule(sb, path, LANDLOCK_ACCESS_FS_READ_FILE);
}

void
sandbox_allow_fuse(struct sandbox *sb)
{
  sb->fuse = true;
}

/* Empty the bounding set but for keep (a mask of CAP_* bits).  That needs
 * CAP_SETPCAP: an unprivileged server has none, and nothing to drop. */
static int
drop_bounding_set(uint64_t keep)
{
  int cap, r;

  for (cap = 0; cap < 64; cap++) {
    r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0)
      break;                        /* past the last capability */
    if (r == 0 || (keep & (1ULL << cap)))
      continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EPERM)
        break;
      return -errno;
    }
  }
  return 0;
}

/* Keep only the capabilities in keep: effective, permitted, none
 * inheritable or ambient. */
static int
set_capabilities(uint64_t keep)
{
  struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
  struct __user_cap_data_struct d[2];

  (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  memset(d, 0, sizeof d);
  d[0].effective = d[0].permitted = (uint32_t) keep;
  d[1].effective = d[1].permitted = (uint32_t) (keep >> 32);
  if (syscall(SYS_capset, &h, d) < 0)
    return -errno;
  return 0;
}

/* Rules are a name list: a name this architecture lacks is skipped. */
static int
allow(scmp_filter_ctx ctx, const char *name, int *count)
{
  int nr = seccomp_syscall_resolve_name(name);
  int r;

  if (nr == __NR_SCMP_ERROR)
    return 0;
  r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
  if (r < 0 && nr >= 0)
    return r;
  (*count)++;
  return 0;
}

static int
allow_list(scmp_filter_ctx ctx, const char *const *names, int *count)
{
  int r;

  for (; *names; names++)
    if ((r = allow(ctx, *names, count)) < 0) {
      disk_set_error("seccomp: cannot allow %s: %s", *names, strerror(-r));
      return r;
    }
  return 0;
}

/* The unmount helper: waits for EOF on rfd (the server closed it, or
 * died), unmounts path lazily, exits. */
static void __attribute__((noreturn))
helper_main(int rfd, const char *path)
{
  static const char *const calls[] = {
    "read", "write", "umount2", "close", "exit", "exit_group", "rt_sigreturn",
    "restart_syscall", "brk", "mmap", "munmap", NULL,
  };
#ifdef SANDBOX_ASAN
  /* ASan's runtime needs more than these calls, even here (a report). */
  static const char *const helper_sanitizer_calls[] = {
    "openat", "fstat", "newfstatat", "getpid", "gettid", "futex", "sched_yield",
    "madvise", "mprotect", "rt_sigaction", "rt_sigprocmask", "pread64",
    "sched_getaffinity", NULL,
  };
#endif
  bool root = geteuid() == 0;
  sigset_t none;
  char c;
  ssize_t n;
  int e;

  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Hold nothing of the server's: not /dev/fuse (its connection must end
   * with the server), not the overlay (its flock), not the sockets. */
  if (rfd != 3 && dup2(rfd, 3) == 3)
    rfd = 3;
  syscall(SYS_close_range, (unsigned) rfd + 1, ~0U, 0U);
  prctl(PR_SET_NAME, "dism-fuse-umnt", 0, 0, 0);   /* 15 characters at most */
  if (root) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    int count = 0;

    if (drop_bounding_set(1ULL << CAP_SYS_ADMIN) < 0 ||
        set_capabilities(1ULL << CAP_SYS_ADMIN) < 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        (ctx && (allow_list(ctx, calls, &count) < 0 ||
#ifdef SANDBOX_ASAN
                 allow_list(ctx, sanitizer_calls, &count) < 0 ||
                 allow_list(ctx, helper_sanitizer_calls, &count) < 0 ||
#endif
                 seccomp_load(ctx) < 0)))
      dprintf(2, "dism-nbd-server: FUSE unmount helper: cannot restrict itself "
              "(continuing)\n");
    if (ctx)
      seccomp_release(ctx);
  }
  do
    n = read(rfd, &c, 1);
  while (n < 0 && errno == EINTR);
  if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
    _exit(0);
  e = errno;
  if (e == EINVAL)
    _exit(0);                       /* not mounted (any more) */
  if (e == EPERM && !root) {
    /* Mounted through fusermount3: unmount the same way (as libfuse). */
    execlp("fusermount3", "fusermount3", "-u", "-q", "-z", "--", path, (char *) NULL);
    e = errno;
  }
  dprintf(2, "dism-nbd-server: %s: cannot unmount the FUSE file: %s\n", path, strerror(e));
  _exit(1);
}

int
sandbox_start_unmount_helper(struct sandbox *sb, const char *fuse_path)
{
  int p[2];
  pid_t pid;

  sb->fuse_path = strdup(fuse_path);
  if (!sb->fuse_path)
    return -ENOMEM;
  if (pipe2(p, O_CLOEXEC) < 0) {
    disk_set_error("pipe: %s", strerror(errno));
    return -errno;
  }
  pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    disk_set_error("cannot start the FUSE unmount helper: %s", strerror(e));
    return -e;
  }
  if (pid == 0) {
    close(p[1]);
    helper_main(p[0], sb->fuse_path);
  }
  close(p[0]);
  sb->helper = pid;
  sb->helper_root = geteuid() == 0;
  sb->helper_fd = p[1];
  return 0;
}

int
sandbox_unmount(void *opaque)
{
  struct sandbox *sb = opaque;
  int st;
  pid_t r;

  if (sb->helper <= 0) {
    disk_set_error("%s: no unmount helper", sb->fuse_path ? sb->fuse_path : "FUSE file");
    return -ECHILD;
  }
  close(sb->helper_fd);
  sb->helper_fd = -1;
  while ((r = waitpid(sb->helper, &st, 0)) < 0 && errno == EINTR)
    ;
  sb->helper = 0;
  if (r < 0) {
    disk_set_error("%s: waiting for the unmount helper: %s", sb->fuse_path, strerror(errno));
    return -ECHILD;
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  if (WIFSIGNALED(st))
    disk_set_error("%s: the unmount helper was killed (signal %d)", sb->fuse_path,
                   WTERMSIG(st));
  else
    disk_set_error("%s: the unmount helper could not unmount it", sb->fuse_path);
  return -EIO;
}

static int
switch_user(const struct sandbox *sb)
{
  if (geteuid() != 0) {
    if (sb->uid == getuid() && sb->gid == getgid())
      return 0;                     /* already that user */
    disk_set_error("--user: only root can switch users");
    return -EPERM;
  }
  if (setgroups(1, &sb->gid) < 0 || setresgid(sb->gid, sb->gid, sb->gid) < 0 ||
      setresuid(sb->uid, sb->uid, sb->uid) < 0) {
    int e = errno;
    disk_set_error("--user: cannot switch to uid %u gid %u: %s", (unsigned) sb->uid,
                   (unsigned) sb->gid, strerror(e));
    return -e;
  }
  return 0;
}

static int
landlock_apply(struct sandbox *sb)
{
  struct ll_ruleset_attr attr = { 0 };
  size_t attr_size;
  long abi;
  int rfd, i, r = 0;

  abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 0) {
    if (errno == ENOSYS || errno == EOPNOTSUPP)
      return 0;                     /* no Landlock here: reported by describe */
    disk_set_error("Landlock: %s", strerror(errno));
    return -errno;
  }
  attr.handled_access_fs = LL_FS_ABI1;
  if (abi >= 2)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  if (abi >= 4)
    attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
  if (abi >= 6)
    attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
  attr_size = abi >= 6 ? sizeof attr : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
  rfd = (int) syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
  if (rfd < 0) {
    disk_set_error("Landlock: cannot create a ruleset: %s", strerror(errno));
    return -errno;
  }
  for (i = 0; i < sb->nrules; i++) {
    struct landlock_path_beneath_attr pb;
    struct stat st;
    int fd = open(sb->rules[i].path, O_PATH | O_CLOEXEC);

    if (fd < 0) {
      if (errno == ENOENT)
        continue;                   /* whoever opens it will say so */
      r = -errno;
      disk_set_error("Landlock: %s: %s", sb->rules[i].path, strerror(errno));
      goto out;
    }
    pb.allowed_access = sb->rules[i].access & attr.handled_access_fs;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
      pb.allowed_access &= LL_FILE_RIGHTS;
    pb.parent_fd = fd;
    if (pb.allowed_access &&
        syscall(__NR_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
      r = -errno;
      disk_set_error("Landlock: rule for %s: %s", sb->rules[i].path, strerror(errno));
      close(fd);
      goto out;
    }
    /* A rule is bound to an inode, and procfs makes a new inode for
     * /proc/<pid> at each lookup once its dentry is unused: keep it used. */
    if (!sb->rules[i].keep_open)
      close(fd);
  }
  if (syscall(__NR_landlock_restrict_self, rfd, 0) < 0) {
    r = -errno;
    disk_set_error("Landlock: cannot restrict the server: %s", strerror(errno));
    goto out;
  }
  sb->landlock_abi = (int) abi;
out:
  close(rfd);
  return r;
}

#ifdef SANDBOX_ASAN
/* The directory of log_path=PREFIX in a sanitizer's option string. */
static void
allow_sanitizer_log(struct sandbox *sb, const char *options)
{
  const char *p = NULL, *q = options;
  char prefix[PATH_MAX];
  size_t len;

  /* The last one counts, as for the sanitizer's own parser. */
  while (q && (q = strstr(q, "log_path=")) != NULL)
    p = q++;
  if (!p)
    return;
  p += strlen("log_path=");
  len = strcspn(p, ": ,\t\r\n");
  if (len == 0 || len >= sizeof prefix || p[0] != '/')
    return;
  memcpy(prefix, p, len);
  prefix[len] = '\0';
  add_parent_rule(sb, prefix, LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG |
                  LANDLOCK_ACCESS_FS_TRUNCATE);
}
#endif

int
sandbox_lock_down(struct sandbox *sb)
{
  void *libgcc;
  int r;

  if (sb->fuse)
    add_rule(sb, "/dev/fuse", LANDLOCK_ACCESS_FS_READ_FILE |
             LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_IOCTL_DEV);
#ifdef SANDBOX_ASAN
  /* LeakSanitizer reads /proc/self/{maps,task} at exit. */
  if (add_rule(sb, "/proc/self", LANDLOCK_ACCESS_FS_READ_FILE |
               LANDLOCK_ACCESS_FS_READ_DIR) == 0)
    sb->rules[sb->nrules - 1].keep_open = true;
  /* Reports go to log_path.<pid> when asked (the suite's sanitizer pass
   * collects them): the file is created only when there is a report. */
  allow_sanitizer_log(sb, getenv("ASAN_OPTIONS"));
  allow_sanitizer_log(sb, getenv("UBSAN_OPTIONS"));
  allow_sanitizer_log(sb, getenv("LSAN_OPTIONS"));
#endif
  /* glibc's get_nprocs (thread count, malloc arenas) reads it; without it
   * glibc falls back to sched_getaffinity, but the refused open is noise. */
  add_rule(sb, "/sys/devices/system/cpu/online", LANDLOCK_ACCESS_FS_READ_FILE);
  /* glibc loads libgcc_s on the first pthread_cancel (libfuse cancels its
   * workers): load it now, while files can still be opened and mapped. */
  libgcc = dlopen("libgcc_s.so.1", RTLD_NOW);
  (void) libgcc;

  /* The bounding set needs CAP_SETPCAP, which a user switch drops: first. */
  r = drop_bounding_set(0);
  if (r < 0) {
    disk_set_error("cannot empty the capability bounding set: %s", strerror(-r));
    return r;
  }
  if (sb->have_user && (r = switch_user(sb)) < 0)
    return r;
  r = set_capabilities(0);
  if (r < 0) {
    disk_set_error("cannot drop capabilities: %s", strerror(-r));
    return r;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    disk_set_error("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    return -errno;
  }
  return landlock_apply(sb);
}

int
sandbox_filter_syscalls(struct sandbox *sb)
{
  /* The serving loop: sockets already open, the disk's descriptors, the
   * worker pool, the control socket, the exit path (unlink, flush). */
  static const char *const calls[] = {
    /* I/O on open descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "lseek", "close", "fstat", "newfstatat", "statx", "fcntl",
    "flock", "fsync", "fdatasync", "fallocate", "ftruncate", "fadvise64",
    /* sockets already listening or connected */
    "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown", "setsockopt",
    "getsockopt", "getsockname", "getpeername", "poll", "ppoll",
    /* READ data from the page cache (conn-io.c), and whether it is there
     * (transmission.c) */
    "sendfile", "cachestat",
    /* threads, memory, signals, time */
    "futex", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity", "gettid",
    "getpid", "getuid", "geteuid", "getgid", "getegid", "brk", "munmap", "mremap",
    "madvise", "rt_sigprocmask", "rt_sigreturn", "rt_sigaction", "restart_syscall",
    "exit", "exit_group", "clock_gettime", "clock_getres", "clock_nanosleep",
    "nanosleep", "gettimeofday", "getrandom", "eventfd2",
    /* paths: Landlock decides which (pid file rename, sockets at exit) */
    "openat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    /* reaping the FUSE unmount helper */
    "wait4",
    NULL,
  };
  static const char *const fuse_calls[] = { "splice", "pipe2", NULL };
  scmp_filter_ctx ctx;
  pid_t pid = getpid();
  int r, count = 0;

  ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (!ctx) {
    disk_set_error("seccomp: cannot create a filter");
    return -ENOMEM;
  }
  /* One filter for every thread (the workers already run); a syscall from
   * another ABI (i386 on x86-64) kills at once: nothing here uses one. */
  r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
  if (r == 0)
    r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (r < 0) {
    disk_set_error("seccomp: %s", strerror(-r));
    goto out;
  }
  if ((r = allow_list(ctx, calls, &count)) < 0)
    goto out;
  if (sb->fuse && (r = allow_list(ctx, fuse_calls, &count)) < 0)
    goto out;
#ifdef SANDBOX_ASAN
  if ((r = allow_list(ctx, sanitizer_calls, &count)) < 0)
    goto out;
  /* Threads and LeakSanitizer's tracer (CLONE_VM without CLONE_THREAD):
   * still no fork, no new process. */
  r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_VM, CLONE_VM));
#else
  /* Threads only: no fork, no new process. */
  r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
#endif
  count++;
  /* clone3's flags are in memory a filter cannot read: ENOSYS makes glibc
   * fall back to clone, which is checked above. */
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  /* No executable memory. */
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  /* Signals to ourselves only (SHUTDOWN's SIGTERM, raise, abort). */
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                         SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) pid));
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                         SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) pid));
  /* ioctl: zeroing a block-device image; cloning the FUSE session fd. */
  if (r == 0)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t) BLKZEROOUT));
  if (r == 0 && sb->fuse)
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t) FUSE_DEV_IOC_CLONE_CMD));
  count += 5;
  if (r < 0) {
    disk_set_error("seccomp: cannot add a rule: %s", strerror(-r));
    goto out;
  }
  r = seccomp_load(ctx);
  if (r < 0) {
    disk_set_error("seccomp: cannot load the filter: %s", strerror(-r));
    goto out;
  }
  sb->nsyscalls = count;
out:
  seccomp_release(ctx);
  return r;
}

const char *
sandbox_describe(struct sandbox *sb)
{
  char ll[64];

  if (sb->landlock_abi)
    snprintf(ll, sizeof ll, "Landlock ABI %d", sb->landlock_abi);
  else
    snprintf(ll, sizeof ll, "no Landlock (not supported by this kernel)");
  snprintf(sb->desc, sizeof sb->desc,
           "sandbox: uid %u gid %u, no capabilities, no_new_privs, %s, seccomp "
           "(%d system calls allowed, others EPERM)%s%s",
           (unsigned) geteuid(), (unsigned) getegid(), ll, sb->nsyscalls,
#ifdef SANDBOX_ASAN
           ", widened for ASan",
#else
           "",
#endif
           sb->helper <= 0 ? "" : sb->helper_root ? ", FUSE unmount helper with CAP_SYS_ADMIN only"
                                                   : ", FUSE unmount helper (fusermount3)");
  return sb->desc;
}

static void
report(const char *what, bool done, int err)
{
  if (done)
    fprintf(stderr, "dism-nbd-server: sandbox selftest: %s: ALLOWED\n", what);
  else if (err == EPERM || err == EACCES)
    fprintf(stderr, "dism-nbd-server: sandbox selftest: %s: refused (%s)\n", what,
            strerror(err));
  else
    fprintf(stderr, "dism-nbd-server: sandbox selftest: %s: failed, not by the "
            "sandbox (%s)\n", what, strerror(err));
}

void
sandbox_selftest(const char *image)
{
  char *const argv[] = { "/nonexistent/dism-sandbox-selftest", NULL };
  char *const envp[] = { NULL };
  char path[64];
  uint64_t range[2] = { 0, 4096 }, cs[5];
  bool ok;
  pid_t pid;
  void *p;
  int fd;

  /* A program that does not exist: seccomp refuses before the lookup
   * (EPERM); without the sandbox the answer is ENOENT, not a new program. */
  execve(argv[0], argv, envp);
  report("execve", false, errno);

  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  report("socket(AF_INET)", fd >= 0, errno);
  if (fd >= 0)
    close(fd);

  pid = fork();
  if (pid == 0)
    _exit(0);
  report("fork", pid > 0, errno);
  if (pid > 0)
    waitpid(pid, NULL, 0);

  report("kill(1, 0)", kill(1, 0) == 0, errno);

  p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  report("mmap PROT_EXEC", p != MAP_FAILED, errno);
  if (p != MAP_FAILED)
    munmap(p, 4096);

  /* The zero-copy READ path's calls are allowed: on a bad descriptor they
   * fail with EBADF, past the filter.  Their neighbours stay refused
   * (splice only without FUSE).  One statement each: errno after the call. */
  ok = sendfile(-1, -1, NULL, 1) >= 0;
  report("sendfile", ok, errno);
  ok = syscall(seccomp_syscall_resolve_name("cachestat"), -1, range, cs, 0) >= 0;
  report("cachestat", ok, errno);
  ok = splice(-1, NULL, -1, NULL, 1, 0) >= 0;
  report("splice", ok, errno);
  ok = tee(-1, -1, 1, 0) >= 0;
  report("tee", ok, errno);
  ok = vmsplice(-1, NULL, 0, 0) >= 0;
  report("vmsplice", ok, errno);
  ok = copy_file_range(-1, NULL, -1, NULL, 1, 0) >= 0;
  report("copy_file_range", ok, errno);

  fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
  report("open /etc/passwd", fd >= 0, errno);
  if (fd >= 0)
    close(fd);

  fd = open(image, O_RDONLY | O_CLOEXEC);
  report("reopen the image", fd >= 0, errno);
  if (fd >= 0)
    close(fd);

  snprintf(path, sizeof path, "/tmp/dism-sandbox-selftest.%ld", (long) getpid());
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  report("create a file in /tmp", fd >= 0, errno);
  if (fd >= 0) {
    close(fd);
    unlink(path);
  }
}
