/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* util.c - wide strings, files written atomically, paths, mount table,
 * helper programs found (common/spawn.h runs them). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "path-size.h"

char *
dism_wide_to_utf8(const wchar_t *w)
{
  size_t n = wcslen(w);
  char *out = malloc(n * 4 + 1);
  if (!out) {
    errno = ENOMEM;
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = (uint32_t) w[i];
    if (c < 0x80) {
      out[o++] = (char) c;
    } else if (c < 0x800) {
      out[o++] = (char) (0xC0 | (c >> 6));
      out[o++] = (char) (0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      if (c >= 0xD800 && c <= 0xDFFF)
        goto bad;
      out[o++] = (char) (0xE0 | (c >> 12));
      out[o++] = (char) (0x80 | ((c >> 6) & 0x3F));
      out[o++] = (char) (0x80 | (c & 0x3F));
    } else if (c <= 0x10FFFF) {
      out[o++] = (char) (0xF0 | (c >> 18));
      out[o++] = (char) (0x80 | ((c >> 12) & 0x3F));
      out[o++] = (char) (0x80 | ((c >> 6) & 0x3F));
      out[o++] = (char) (0x80 | (c & 0x3F));
    } else {
      goto bad;
    }
  }
  out[o] = '\0';
  return out;
bad:
  free(out);
  errno = EINVAL;
  return NULL;
}

/* Decode one UTF-8 sequence at s; returns its length (>= 1) and the code
 * point (U+FFFD for an invalid sequence, consuming one byte). */
static size_t
utf8_decode(const unsigned char *s, uint32_t *cp)
{
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
  if (len == 0 || s[0] > 0xF4)
    goto bad;
  uint32_t c = s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      goto bad;
    c = (c << 6) | (s[i] & 0x3F);
  }
  static const uint32_t min_for_len[5] = { 0, 0, 0x80, 0x800, 0x10000 };
  if (c < min_for_len[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    goto bad;
  *cp = c;
  return len;
bad:
  *cp = 0xFFFD;
  return 1;
}

size_t
dism_utf8_wide_len(const char *s)
{
  size_t n = 0;
  uint32_t cp;
  for (const unsigned char *p = (const unsigned char *) s; *p; p += utf8_decode(p, &cp))
    n++;
  return n + 1;
}

size_t
dism_utf8_to_wide(const char *s, wchar_t *out, size_t cap)
{
  size_t n = 0;
  uint32_t cp;
  if (cap == 0)
    return 0;
  for (const unsigned char *p = (const unsigned char *) s; *p && n + 1 < cap;) {
    p += utf8_decode(p, &cp);
    out[n++] = (wchar_t) cp;
  }
  out[n++] = L'\0';
  return n;
}

static int
fsync_dir_of(const char *path)
{
  char dir[DISM_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return r;
}

int
dism_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
  char tmp[DISM_SUBPATH_MAX];
  int r = 0, fd = -1;
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int) getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    r = -errno;
    dism_set_error("cannot create %s: %s", tmp, strerror(-r));
    goto out;
  }
  for (size_t done = 0; done < len;) {
    ssize_t w = write(fd, data + done, len - done);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      r = -errno;
      dism_set_error("cannot write %s: %s", tmp, strerror(-r));
      goto out;
    }
    done += (size_t) w;
  }
  if (fsync(fd) < 0) {
    r = -errno;
    dism_set_error("cannot sync %s: %s", tmp, strerror(-r));
    goto out;
  }
  close(fd);
  fd = -1;
  if (rename(tmp, path) < 0) {
    r = -errno;
    dism_set_error("cannot rename %s to %s: %s", tmp, path, strerror(-r));
    goto out;
  }
  r = fsync_dir_of(path);
  if (r < 0)
    dism_set_error("cannot sync the directory of %s: %s", path, strerror(-r));
out:
  if (fd >= 0)
    close(fd);
  if (r < 0)
    unlink(tmp);
  return r;
}

int
dism_mkdir_p(const char *path, mode_t mode)
{
  char buf[DISM_PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int) sizeof buf) {
    dism_set_error("path too long: %s", path);
    return -ENAMETOOLONG;
  }
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(buf, mode) < 0 && errno != EEXIST) {
        int e = errno;
        dism_set_error("cannot create the directory %s: %s", buf, strerror(e));
        return -e;
      }
      *p = saved;
      if (saved == '\0')
        break;
    }
  }
  return 0;
}

int
dism_private_dir(const char *path, bool create)
{
  struct stat st;
  int r;

  if (create && (r = dism_mkdir_p(path, 0700)) < 0)
    return r;
  if (stat(path, &st) < 0) {
    if (errno == ENOENT && !create)
      return 0;
    r = -errno;
    dism_set_error("%s: %s", path, strerror(-r));
    return r;
  }
  if (!S_ISDIR(st.st_mode)) {
    dism_set_error("%s is not a directory", path);
    return -ENOTDIR;
  }
  /* State another user owns could be forged: refuse it.  One created by
   * an older version with mode 0755 is tightened. */
  if (st.st_uid != geteuid()) {
    dism_set_error("%s is owned by uid %u, not by uid %u: refusing to keep state there",
                   path, (unsigned) st.st_uid, (unsigned) geteuid());
    return -EPERM;
  }
  if ((st.st_mode & 077) && chmod(path, st.st_mode & 07700) < 0) {
    r = -errno;
    dism_set_error("cannot make %s private: %s", path, strerror(-r));
    return r;
  }
  return 0;
}

int
dism_remove_flat_dir(const char *path)
{
  DIR *d = opendir(path);
  if (!d)
    return errno == ENOENT ? 0 : -errno;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    unlinkat(dirfd(d), de->d_name, 0);
  }
  closedir(d);
  return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
}

int
dism_canonical(const char *path, char *out, size_t cap)
{
  char buf[PATH_MAX];
  if (!realpath(path, buf))
    return -errno;
  if (strlen(buf) >= cap)
    return -ENAMETOOLONG;
  memcpy(out, buf, strlen(buf) + 1);
  return 0;
}

bool
dism_has_ext(const char *path, const char *ext)
{
  size_t n = strlen(path), e = strlen(ext);
  return n > e && strcasecmp(path + n - e, ext) == 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
unescape_mountinfo(char *s)
{
  char *o = s;
  for (char *p = s; *p;) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
      *o++ = (char) (((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0'));
      p += 4;
    } else {
      *o++ = *p++;
    }
  }
  *o = '\0';
}

bool
dism_is_mountpoint(const char *path, char *source, size_t cap)
{
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f)
    return false;
  char *line = NULL;
  size_t line_cap = 0;
  bool found = false;
  /* Fields: id parent maj:min root mountpoint options [optional...] - fstype
   * source superoptions.  The last matching line is the mount on top. */
  while (getline(&line, &line_cap, f) > 0) {
    char *save = NULL, *fields[64];
    int nf = 0;
    for (char *tok = strtok_r(line, " \n", &save); tok && nf < 64;
         tok = strtok_r(NULL, " \n", &save))
      fields[nf++] = tok;
    if (nf < 5)
      continue;
    unescape_mountinfo(fields[4]);
    if (strcmp(fields[4], path) != 0)
      continue;
    found = true;
    const char *src = "";
    for (int i = 5; i + 2 < nf; i++) {
      if (!strcmp(fields[i], "-")) {
        unescape_mountinfo(fields[i + 2]);
        src = fields[i + 2];
        break;
      }
    }
    if (source && cap)
      snprintf(source, cap, "%s", src);
  }
  free(line);
  fclose(f);
  return found;
}

int
dism_flock_open(const char *path, int how, bool create)
{
  int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    int r = -errno;
    dism_set_error("cannot open the lock file %s: %s", path, strerror(-r));
    return r;
  }
  while (flock(fd, how) < 0) {
    if (errno == EINTR)
      continue;
    int r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (r != -EAGAIN)
      dism_set_error("cannot lock %s: %s", path, strerror(-r));
    close(fd);
    return r;
  }
  return fd;
}

/* A process forking elsewhere (another thread of this one included) holds a
 * copy of every descriptor, one into the mount among them, until its child
 * execs or closes them: that EBUSY passes in milliseconds; open files do not. */
int
dism_umount_patiently(const char *dir)
{
  for (unsigned waited_ms = 0;; waited_ms += 20) {
    if (umount2(dir, 0) == 0)
      return 0;
    if (errno != EBUSY || waited_ms >= 1000)
      return -errno;
    struct timespec ts = { 0, 20 * 1000000L };
    nanosleep(&ts, NULL);
  }
}

void
dism_read_tail(const char *path, char *out, size_t cap)
{
  out[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  off_t size = lseek(fd, 0, SEEK_END);
  off_t start = size > (off_t) cap - 1 ? size - (off_t) cap + 1 : 0;
  ssize_t n = pread(fd, out, cap - 1, start);
  close(fd);
  if (n < 0)
    n = 0;
  out[n] = '\0';
  /* Trim the trailing newline so the text fits in one message. */
  while (n > 0 && (out[n - 1] == '\n' || isspace((unsigned char) out[n - 1])))
    out[--n] = '\0';
}

const char *
dism_find_tool(const char *env, const char *const candidates[])
{
  const char *e = env ? getenv(env) : NULL;
  if (e && *e)
    return e;
  for (size_t i = 0; candidates[i]; i++)
    if (access(candidates[i], X_OK) == 0)
      return candidates[i];
  return NULL;
}
