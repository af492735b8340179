/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* attach.c - method choice, the registry text, and helpers shared by the NBD
 * and LOOP attach code. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "attach-internal.h"
#include "dism-error.h"
#include "spawn.h"

void
dism_attach_sleep_ms(int ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

int
dism_attach_read_file(const char *path, char *buf, size_t len)
{
  ssize_t n;
  int fd, r = 0;

  if (len == 0)
    return -EINVAL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  n = read(fd, buf, len - 1);
  if (n < 0) {
    r = -errno;
    n = 0;
  }
  buf[n] = 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = 0;
  close(fd);
  return r;
}

int
dism_attach_write_file(const char *path, const char *s)
{
  size_t len = strlen(s);
  ssize_t n;
  int fd, r = 0;

  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  n = write(fd, s, len);
  if (n < 0)
    r = -errno;
  else if ((size_t) n != len)
    r = -EIO;
  close(fd);
  return r;
}

bool
dism_attach_wait_path(const char *path, int timeout_ms)
{
  int waited = 0;

  while (access(path, F_OK) != 0) {
    if (waited >= timeout_ms)
      return false;
    dism_attach_sleep_ms(20);
    waited += 20;
  }
  return true;
}

int
dism_attach_dev_node(const char *name, char *path, size_t len)
{
  char sys[128], devno[32];
  unsigned maj, min;
  struct stat st;
  int r;

  snprintf(path, len, "/dev/%s", name);
  if (dism_attach_wait_path(path, ATTACH_NODE_WAIT_MS))
    goto check;
  /* no devtmpfs or udev (a container): make the node from sysfs */
  snprintf(sys, sizeof sys, "/sys/class/block/%s/dev", name);
  r = dism_attach_read_file(sys, devno, sizeof devno);
  if (r < 0) {
    dism_set_error("%s: no such block device (%s: %s)", path, sys, strerror(-r));
    return r;
  }
  if (sscanf(devno, "%u:%u", &maj, &min) != 2) {
    dism_set_error("%s: unexpected device number '%s'", sys, devno);
    return -EINVAL;
  }
  if (mknod(path, S_IFBLK | 0660, makedev(maj, min)) < 0 && errno != EEXIST) {
    r = -errno;
    dism_set_error("%s: the node did not appear and mknod failed: %s", path,
                   strerror(-r));
    return r;
  }
check:
  if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
    dism_set_error("%s exists but is not a block device", path);
    return -ENOTBLK;
  }
  return 0;
}

int
dism_attach_choose(const struct dism_disk_io *io, unsigned sector_hint, struct dism_attach *out)
{
  struct dism_part_table *t;
  struct dism_part_choice c;
  int r;

  t = malloc(sizeof *t);
  if (!t) {
    dism_set_error("out of memory reading the partition table of %s", io->name);
    return -ENOMEM;
  }
  r = dism_part_read_table(io, sector_hint, t);
  if (r < 0)
    goto out;
  r = dism_part_choose(io, t, &c);
  if (r < 0)
    goto out;
  out->partition = c.number;
  out->part_offset = c.offset;
  out->part_size = c.size;
  out->sector_size = t->sector_size;
  snprintf(out->part_table, sizeof out->part_table, "%s", t->kind);
  snprintf(out->reason, sizeof out->reason, "%s", c.reason);
out:
  free(t);
  return r;
}

/* Run modprobe (from $PATH, else /sbin) with 0, 1 and 2 on /dev/null. */
static void
run_modprobe(const char *const argv[])
{
  struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
  const char *const sbin_argv[] = { "/sbin/modprobe", argv[1], argv[2], NULL };
  int status = 0;
  pid_t pid;

  o.search_path = true;
  if (dism_spawn(argv, &o, &pid) == 0 && dism_spawn_wait(pid, &status) == 0 &&
      dism_spawn_exit_code(status) != 127)
    return;
  /* 127: no modprobe in $PATH (a root shell's PATH may lack /sbin); no
   * status at all: an application that ignores SIGCHLD.  Then /sbin's,
   * unless the module has appeared meanwhile. */
  if (access("/sys/module/nbd", F_OK) != 0 && dism_spawn(sbin_argv, NULL, &pid) == 0)
    (void) dism_spawn_wait(pid, NULL);
}

bool
dism_nbd_available(void)
{
  static const char *const argv[] = { "modprobe", "-q", "nbd", NULL };

  if (access("/sys/module/nbd", F_OK) == 0)
    return true;
  /* nbd may be a module nobody loaded yet (modprobe also honours
   * modprobe.d options such as nbds_max=0) */
  run_modprobe(argv);
  return access("/sys/module/nbd", F_OK) == 0;
}

int
dism_attach(const struct dism_attach_request *req, struct dism_attach *out)
{
  enum dism_attach_method m;

  if (!req || !out) {
    dism_set_error("dism_attach: no request or no result");
    return -EINVAL;
  }
  memset(out, 0, sizeof *out);
  out->nbd_index = -1;
  if (!req->backend_id || !req->backend_id[0] ||
      strlen(req->backend_id) >= sizeof out->backend_id ||
      strchr(req->backend_id, '\n')) {
    dism_set_error("dism_attach: the backend id must be 1-%zu characters on one line",
                   sizeof out->backend_id - 1);
    return -EINVAL;
  }
  m = req->method;
  if (m == DISM_ATTACH_AUTO)
    m = dism_nbd_available() ? DISM_ATTACH_NBD : DISM_ATTACH_LOOP;
  switch (m) {
  case DISM_ATTACH_NBD:
    if (!req->nbd_socket || !req->nbd_socket[0]) {
      dism_set_error("dism_attach: NBD needs the server's socket");
      return -EINVAL;
    }
    return dism_attach_nbd(req, out);
  case DISM_ATTACH_LOOP:
    if (!req->fuse_file || !req->fuse_file[0]) {
      dism_set_error("dism_attach: the loop method needs the server's FUSE file "
                     "(nbd.ko is not available)");
      return -EINVAL;
    }
    return dism_attach_loop(req, out);
  default:
    dism_set_error("dism_attach: unknown method %d", (int) req->method);
    return -EINVAL;
  }
}

int
dism_detach(const struct dism_attach *a)
{
  if (!a)
    return -EINVAL;
  switch (a->method) {
  case DISM_ATTACH_NBD:
    return dism_detach_nbd(a);
  case DISM_ATTACH_LOOP:
    return dism_detach_loop(a);
  default:
    dism_set_error("dism_detach: unknown attach method %d", (int) a->method);
    return -EINVAL;
  }
}

int
dism_attach_abort(const struct dism_attach *a)
{
  if (!a)
    return -EINVAL;
  return a->method == DISM_ATTACH_NBD ? dism_attach_abort_nbd(a) : 0;
}

bool
dism_attach_alive(const struct dism_attach *a)
{
  if (!a)
    return false;
  if (a->method == DISM_ATTACH_NBD)
    return dism_attach_alive_nbd(a);
  if (a->method == DISM_ATTACH_LOOP)
    return dism_attach_alive_loop(a);
  return false;
}

int
dism_attach_autoclear(const struct dism_attach *a)
{
  if (!a)
    return -EINVAL;
  return a->method == DISM_ATTACH_LOOP ? dism_attach_autoclear_loop(a) : 0;
}

static const char *
method_name(enum dism_attach_method m)
{
  return m == DISM_ATTACH_NBD ? "nbd" : m == DISM_ATTACH_LOOP ? "loop" : "auto";
}

int
dism_attach_format(const struct dism_attach *a, char *buf, unsigned len)
{
  int n;

  n = snprintf(buf, len,
               "method=%s\ndisk_dev=%s\nfs_dev=%s\nnbd_index=%d\npartition=%d\n"
               "part_offset=%" PRIu64 "\npart_size=%" PRIu64 "\npart_table=%s\n"
               "sector_size=%u\nbackend_id=%s\nreason=%s\n",
               method_name(a->method), a->disk_dev, a->fs_dev, a->nbd_index,
               a->partition, a->part_offset, a->part_size, a->part_table,
               a->sector_size, a->backend_id, a->reason);
  if (n < 0 || (unsigned) n >= len)
    return -ENOSPC;
  return n;
}

static int
parse_u64(const char *v, uint64_t *out)
{
  unsigned long long x;
  char *end;

  if (!*v || *v == '-')
    return -EINVAL;
  errno = 0;
  x = strtoull(v, &end, 10);
  if (errno || *end)
    return -EINVAL;
  *out = x;
  return 0;
}

static int
parse_int(const char *v, long min, long max, long *out)
{
  char *end;

  errno = 0;
  *out = strtol(v, &end, 10);
  if (!*v || errno || *end || *out < min || *out > max)
    return -EINVAL;
  return 0;
}

static int
copy_str(char *dst, size_t cap, const char *v)
{
  if (strlen(v) >= cap)
    return -EINVAL;
  memcpy(dst, v, strlen(v) + 1);
  return 0;
}

int
dism_attach_parse_kv(struct dism_attach *a, const char *key, const char *value)
{
  long l;
  int r;

  if (!strcmp(key, "method")) {
    if (!strcmp(value, "nbd"))
      a->method = DISM_ATTACH_NBD;
    else if (!strcmp(value, "loop"))
      a->method = DISM_ATTACH_LOOP;
    else
      return -EINVAL;
    return 0;
  }
  if (!strcmp(key, "disk_dev"))
    return copy_str(a->disk_dev, sizeof a->disk_dev, value);
  if (!strcmp(key, "fs_dev"))
    return copy_str(a->fs_dev, sizeof a->fs_dev, value);
  if (!strcmp(key, "part_table"))
    return copy_str(a->part_table, sizeof a->part_table, value);
  if (!strcmp(key, "reason"))
    return copy_str(a->reason, sizeof a->reason, value);
  if (!strcmp(key, "backend_id"))
    return copy_str(a->backend_id, sizeof a->backend_id, value);
  if (!strcmp(key, "part_offset"))
    return parse_u64(value, &a->part_offset);
  if (!strcmp(key, "part_size"))
    return parse_u64(value, &a->part_size);
  if (!strcmp(key, "nbd_index")) {
    r = parse_int(value, -1, 1 << 20, &l);
    if (r == 0)
      a->nbd_index = (int) l;
    return r;
  }
  if (!strcmp(key, "partition")) {
    r = parse_int(value, 0, 1 << 16, &l);
    if (r == 0)
      a->partition = (int) l;
    return r;
  }
  if (!strcmp(key, "sector_size")) {
    r = parse_int(value, 0, 65536, &l);
    if (r == 0)
      a->sector_size = (unsigned) l;
    return r;
  }
  return 1;
}
