/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism-udev-id.c - udev helper: the DISM_* properties of a dism block device.
 *
 *   dism-udev-id [--run-dir DIR] [--state-dir DIR] SYSPATH
 *
 * udev/60-dism.rules runs it as IMPORT{program}="<libexecdir>/dism-udev-id %S%p"
 * for an nbd disk whose `backend` is "dism:<mount id>" (and its partitions)
 * and for a loop device over a file named .../mounts/<mount id>/disk (the
 * loop fallback's FUSE file).  It recognises the device, reads the mount's
 * record and prints KEY=value lines for udev (docs/udev.md):
 *
 *   DISM_MOUNT_ID DISM_ATTACH DISM_IMAGE_FILE_ENC DISM_INDEX [DISM_PART]
 *   DISM_IMAGE_FILE DISM_FORMAT DISM_MODE [DISM_IMAGE_NAME] DISM_IMAGE
 *   DISM_MOUNT_DIR
 *
 * Exit 0 with the properties; 1 and no output when the device is not a dism
 * device, its record is missing or not trusted, or (loop) the record does not
 * name it yet; 2 on a usage error.
 *
 * Which record: <run>/mounts/<id>/live.conf, which libdism writes before it
 * attaches anything and removes only after the device is gone, so it exists
 * whenever udev can see one of our devices (the persistent
 * <state>/mounts/<id>.conf is written only once the mount is complete, after
 * the attach's change event, and is the fallback).  <run> is /run/dism (or
 * --run-dir, or $DISM_RUN_DIR when run by hand: udev passes programs no
 * environment of its own); for a loop device it is the directory its backing
 * file lies in, so mounts made with another DISM_RUN_DIR are named too.
 *
 * Everything read is untrusted: sysfs values must have exactly the form dism
 * gives them, the mount id must be a GUID before it goes into a path, a loop
 * device must also carry "dism:<id>" as its loop file name (set only by
 * libdism's LOOP_CONFIGURE; `losetup` and udisks put the file's path there),
 * and a record is believed only if it is a regular file owned by root (or by
 * the caller) that no one else may write.  libc only, nothing allocated: udev
 * runs it for every event on such a device, early at boot included.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path-size.h"

#define DEFAULT_RUN_DIR   "/run/dism"
#define DEFAULT_STATE_DIR "/var/lib/dism"
#define GUID_LEN          36
#define RECORD_MAX        65536  /* a record is a few KiB; anything bigger is not ours */
/* The encoded image file name is cut (at a character boundary) to this many
 * bytes, so that "<name>-<index>-part<N>" stays within NAME_MAX (255). */
#define NAME_ENC_MAX      200

enum kind { KIND_NBD, KIND_LOOP };

struct device {
  enum kind kind;
  char kname[64];         /* nbd0, nbd0p3, loop7 */
  unsigned part;          /* partition number; 0 for a whole disk */
  char id[GUID_LEN + 1];  /* mount id */
  char run_dir[DISM_PATH_MAX];
};

/* What the helper needs from a record (pointers into the record's text). */
struct record {
  const char *id, *image, *format, *image_name, *mode, *mount_dir;
  const char *attach_method, *attach_fs_dev, *attach_partition;
  unsigned long index;
};

static char record_text[RECORD_MAX + 1];

/* ---- small readers ------------------------------------------------------------ */
/* Read a small file whole (sysfs attribute, record) into buf, which holds
 * cap bytes; strip one trailing newline.  Returns the length, or -1 if it
 * cannot be read or has cap bytes or more (so buf[len] is the terminator). */
static long
read_small(int fd, char *buf, size_t cap)
{
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      break;
    len += (size_t) n;
    if (len == cap)
      return -1;
  }
  if (len > 0 && buf[len - 1] == '\n')
    len--;
  buf[len] = '\0';
  return (long) len;
}

static long
read_attr(const char *dir, const char *name, char *buf, size_t cap)
{
  char path[DISM_SUBPATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int) sizeof path)
    return -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  long n = read_small(fd, buf, cap - 1);
  close(fd);
  /* sysfs values are text: a NUL inside means someone else's content */
  if (n >= 0 && strlen(buf) != (size_t) n)
    return -1;
  return n;
}

static bool
is_guid(const char *s, size_t len)
{
  if (len != GUID_LEN)
    return false;
  for (size_t i = 0; i < len; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return true;
}

/* "prefix" followed by 1-9 decimal digits and nothing else. */
static bool
is_kname(const char *s, const char *prefix)
{
  size_t p = strlen(prefix), n = strlen(s);
  if (strncmp(s, prefix, p) != 0 || n == p || n - p > 9)
    return false;
  return strspn(s + p, "0123456789") == n - p;
}

/* A decimal number in [min, max]: no sign, no spaces, no leading zero. */
static bool
parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
  size_t n = strlen(s);
  if (n == 0 || n > 10 || strspn(s, "0123456789") != n || (s[0] == '0' && n > 1))
    return false;
  unsigned long v = strtoul(s, NULL, 10);
  if (v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* ---- which device ----------------------------------------------------------- */
static int
identify_nbd(const char *disk_dir, struct device *d)
{
  char backend[128];
  long n = read_attr(disk_dir, "backend", backend, sizeof backend);
  if (n < 0 || strncmp(backend, "dism:", 5) != 0 || !is_guid(backend + 5, (size_t) n - 5))
    return -1;
  memcpy(d->id, backend + 5, GUID_LEN + 1);
  return 0;
}

/* The loop device's backing file must be <run>/mounts/<id>/disk and its
 * loop file name "dism:<id>". */
static int
identify_loop(const char *disk_dir, const char *run_opt, struct device *d)
{
  static const char tail[] = "/disk";
  char backing[DISM_PATH_MAX];
  long n = read_attr(disk_dir, "loop/backing_file", backing, sizeof backing);
  size_t tl = sizeof tail - 1, ml = sizeof "/mounts/" - 1;
  if (n < (long) (1 + ml + GUID_LEN + tl) || backing[0] != '/')
    return -1;
  char *end = backing + n - tl, *id = end - GUID_LEN, *mounts = id - ml;
  if (strcmp(end, tail) != 0 || !is_guid(id, GUID_LEN) || strncmp(mounts, "/mounts/", ml) != 0)
    return -1;
  memcpy(d->id, id, GUID_LEN);
  d->id[GUID_LEN] = '\0';
  *mounts = '\0'; /* backing is now <run>, at least "/" */
  if (run_opt && strcmp(run_opt, backing) != 0)
    return -1;
  snprintf(d->run_dir, sizeof d->run_dir, "%s", backing);

  /* The node: udev passes DEVNAME; by hand it is /dev/<kname>. */
  char node[128];
  const char *dn = getenv("DEVNAME");
  const char *slash = dn ? strrchr(dn, '/') : NULL;
  if (dn && strncmp(dn, "/dev/", 5) == 0 && slash && strcmp(slash + 1, d->kname) == 0 &&
      strlen(dn) < sizeof node)
    snprintf(node, sizeof node, "%s", dn);
  else
    snprintf(node, sizeof node, "/dev/%s", d->kname);
  int fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -1;
  struct loop_info64 info;
  memset(&info, 0, sizeof info);
  int rc = ioctl(fd, LOOP_GET_STATUS64, &info);
  close(fd);
  if (rc < 0)
    return -1;
  char want[LO_NAME_SIZE];
  snprintf(want, sizeof want, "dism:%s", d->id);
  info.lo_file_name[LO_NAME_SIZE - 1] = 0;
  return strcmp((const char *) info.lo_file_name, want) == 0 ? 0 : -1;
}

static int
identify(const char *syspath, const char *run_opt, struct device *d)
{
  /* canonical: /sys/class/block/nbd0p3 is .../devices/virtual/block/nbd0/nbd0p3,
   * whose directory's parent is its disk's */
  char path[DISM_PATH_MAX], part[32];
  if (!realpath(syspath, path))
    return -1;
  const char *base = strrchr(path, '/') + 1;
  if (strlen(base) >= sizeof d->kname)
    return -1;
  snprintf(d->kname, sizeof d->kname, "%s", base);

  char disk_dir[DISM_PATH_MAX];
  snprintf(disk_dir, sizeof disk_dir, "%s", path);
  d->part = 0;
  if (read_attr(path, "partition", part, sizeof part) >= 0) {
    unsigned long p;
    if (!parse_uint(part, 1, 65535, &p))
      return -1;
    d->part = (unsigned) p;
    *strrchr(disk_dir, '/') = '\0';
  }
  const char *disk = strrchr(disk_dir, '/');
  if (!disk)
    return -1;
  disk++;

  if (is_kname(disk, "nbd")) {
    d->kind = KIND_NBD;
    if (identify_nbd(disk_dir, d) < 0)
      return -1;
    const char *env = getenv("DISM_RUN_DIR");
    snprintf(d->run_dir, sizeof d->run_dir, "%s",
             run_opt ? run_opt : env && *env ? env : DEFAULT_RUN_DIR);
    return 0;
  }
  if (is_kname(disk, "loop") && d->part == 0) {
    /* libdism never partitions a loop device: it holds one partition's range */
    d->kind = KIND_LOOP;
    return identify_loop(disk_dir, run_opt, d);
  }
  return -1;
}

/* ---- the record --------------------------------------------------------------- */
/* Open a record only if it can be trusted: a regular file (no symlink)
 * owned by root or the caller, writable by no one else. */
static int
open_trusted(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
      (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The record format is registry.c's: "key=value" lines, '#' comments. */
static int
read_record(const struct device *d, const char *state_opt, struct record *r)
{
  char path[DISM_SUBPATH_MAX];
  snprintf(path, sizeof path, "%s/mounts/%s/live.conf", d->run_dir, d->id);
  int fd = open_trusted(path);
  if (fd < 0) {
    const char *env = getenv("DISM_STATE_DIR");
    snprintf(path, sizeof path, "%s/mounts/%s.conf",
             state_opt ? state_opt : env && *env ? env : DEFAULT_STATE_DIR, d->id);
    fd = open_trusted(path);
  }
  if (fd < 0)
    return -1;
  long n = read_small(fd, record_text, sizeof record_text);
  close(fd);
  if (n < 0 || strlen(record_text) != (size_t) n)
    return -1;

  memset(r, 0, sizeof *r);
  const char *index = NULL;
  char *save = NULL;
  for (char *line = strtok_r(record_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '=');
    if (line[0] == '#' || !eq)
      continue;
    *eq = '\0';
    const char *v = eq + 1;
    if (!strcmp(line, "id"))
      r->id = v;
    else if (!strcmp(line, "image"))
      r->image = v;
    else if (!strcmp(line, "format"))
      r->format = v;
    else if (!strcmp(line, "index"))
      index = v;
    else if (!strcmp(line, "image_name"))
      r->image_name = v;
    else if (!strcmp(line, "mode"))
      r->mode = v;
    else if (!strcmp(line, "mount_dir"))
      r->mount_dir = v;
    else if (!strcmp(line, "attach.method"))
      r->attach_method = v;
    else if (!strcmp(line, "attach.fs_dev"))
      r->attach_fs_dev = v;
    else if (!strcmp(line, "attach.partition"))
      r->attach_partition = v;
  }
  if (!r->id || strcmp(r->id, d->id) != 0 || !r->image || r->image[0] != '/' ||
      !r->image[1] || r->image[strlen(r->image) - 1] == '/' || !index ||
      !parse_uint(index, 1, 0xFFFFFFFFUL, &r->index))
    return -1;
  return 0;
}

/* A loop device holds one partition's byte range (or the whole disk); which
 * one only the attach record knows.  It is written right after the attach,
 * so an event that comes before it finds none: no properties then, and
 * libdism sends another change event once the record names the device. */
static int
loop_partition(const struct device *d, const struct record *r, unsigned *part)
{
  char dev[80];
  unsigned long p;
  snprintf(dev, sizeof dev, "/dev/%s", d->kname);
  if (!r->attach_method || strcmp(r->attach_method, "loop") != 0 || !r->attach_fs_dev ||
      strcmp(r->attach_fs_dev, dev) != 0 || !r->attach_partition ||
      !parse_uint(r->attach_partition, 0, 65535, &p))
    return -1;
  *part = (unsigned) p;
  return 0;
}

/* ---- output --------------------------------------------------------------------- */
/* Length of the valid UTF-8 sequence (2-4 bytes) at s, else 0; the code
 * points udev refuses (surrogates, U+FDD0..FDEF, U+xxFFFE/F, overlong forms,
 * beyond U+10FFFF) count as invalid, as in udev's encode_devnode_name(). */
static size_t
utf8_len(const unsigned char *s)
{
  unsigned n, cp;
  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    n = 2, cp = s[0] & 0x1fu;
  else if (s[0] >= 0xe0 && s[0] <= 0xef)
    n = 3, cp = s[0] & 0x0fu;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4)
    n = 4, cp = s[0] & 0x07u;
  else
    return 0;
  for (unsigned i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0xfdd0 && cp <= 0xfdef) ||
      (cp & 0xfffe) == 0xfffe)
    return 0;
  return n;
}

/* Encode a name for a /dev link the way udev and blkid do for by-label
 * (ID_FS_LABEL_ENC): ASCII letters, digits and "#+-.:=@_" and valid UTF-8
 * stay, every other byte becomes \xHH ('/' \x2f, space \x20, '\' \x5c).
 * Cut at a character boundary to NAME_ENC_MAX bytes. */
static void
encode_name(const char *in, char *out, size_t cap)
{
  const unsigned char *s = (const unsigned char *) in;
  size_t o = 0;
  if (cap > NAME_ENC_MAX + 1)
    cap = NAME_ENC_MAX + 1;
  while (*s) {
    size_t n = *s < 0x80 ? 0 : utf8_len(s);
    bool keep = n > 0 || (*s < 0x80 && ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                                        (*s >= 'A' && *s <= 'Z') || strchr("#+-.:=@_", *s)));
    size_t w = n > 0 ? n : keep ? 1 : 4;
    if (o + w >= cap)
      break;
    if (n > 0 || keep)
      memcpy(out + o, s, w);
    else
      snprintf(out + o, 5, "\\x%02x", *s);
    o += w;
    s += n > 0 ? n : 1;
  }
  out[o] = '\0';
}

/* One KEY=value line as udev's IMPORT{program} reads it: it strips
 * whitespace at both ends and one pair of enclosing quotes, so such values
 * are quoted.  Control characters become '?'.  Empty values are left out. */
static void
put(const char *key, const char *value)
{
  if (!value || !*value)
    return;
  size_t n = strlen(value);
  bool quote = strchr(" \t\"'", value[0]) || strchr(" \t\v\f\r", value[n - 1]);
  printf("%s=%s", key, quote ? "\"" : "");
  for (const unsigned char *p = (const unsigned char *) value; *p; p++)
    putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
  printf("%s\n", quote ? "\"" : "");
}

static void
usage(FILE *f)
{
  fprintf(f, "usage: dism-udev-id [--run-dir DIR] [--state-dir DIR] SYSPATH\n"
             "Print the DISM_* udev properties of a dism block device (udev/60-dism.rules).\n"
             "Exit 0 with the properties, 1 with none (not a dism device), 2 on a usage error.\n");
}

int
main(int argc, char **argv)
{
  const char *run_opt = NULL, *state_opt = NULL, *syspath = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--run-dir") && i + 1 < argc) {
      run_opt = argv[++i];
    } else if (!strcmp(argv[i], "--state-dir") && i + 1 < argc) {
      state_opt = argv[++i];
    } else if (argv[i][0] != '-' && !syspath) {
      syspath = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!syspath || (run_opt && run_opt[0] != '/') || (state_opt && state_opt[0] != '/')) {
    usage(stderr);
    return 2;
  }

  static struct device d;
  struct record r;
  unsigned part;
  if (identify(syspath, run_opt, &d) < 0 || read_record(&d, state_opt, &r) < 0)
    return 1;
  part = d.part;
  if (d.kind == KIND_LOOP && loop_partition(&d, &r, &part) < 0)
    return 1;

  const char *file = strrchr(r.image, '/') + 1;
  char enc[NAME_ENC_MAX + 1], num[16], partnum[16];
  encode_name(file, enc, sizeof enc);
  snprintf(num, sizeof num, "%lu", r.index);
  snprintf(partnum, sizeof partnum, "%u", part);
  /* What the links are made of first: IMPORT{program} reads at most 16 KiB
   * (UDEV_LINE_SIZE), and the paths at the end may be long. */
  put("DISM_MOUNT_ID", d.id);
  put("DISM_ATTACH", d.kind == KIND_NBD ? "nbd" : "loop");
  put("DISM_IMAGE_FILE_ENC", enc);
  put("DISM_INDEX", num);
  if (part > 0)
    put("DISM_PART", partnum);
  put("DISM_IMAGE_FILE", file);
  put("DISM_FORMAT", r.format);
  put("DISM_MODE", r.mode);
  put("DISM_IMAGE_NAME", r.image_name);
  put("DISM_IMAGE", r.image);
  put("DISM_MOUNT_DIR", r.mount_dir);
  return fflush(stdout) == 0 ? 0 : 1;
}
