/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* registry.c - the mount registry.
 *
 * Persistent part: <state>/mounts/<id>.conf, "key=value" lines, one file per
 * mount, written atomically.  It survives a reboot, which is what makes
 * NeedsRemount possible.  Live part: <run>/mounts/<id>/ (sockets, pid file,
 * server log); /run is cleared at boot.  Changes happen under an exclusive
 * flock on <run>/lock, so concurrent dism processes never interleave. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dism-internal.h"
#include "path-size.h"

const char *
dism_run_dir(void)
{
  const char *d = getenv("DISM_RUN_DIR");
  return d && *d ? d : "/run/dism";
}

const char *
dism_state_dir(void)
{
  const char *d = getenv("DISM_STATE_DIR");
  return d && *d ? d : "/var/lib/dism";
}

void
dism_live_dir(const char *id, char *out, size_t cap)
{
  snprintf(out, cap, "%s/mounts/%s", dism_run_dir(), id);
}

void
dism_record_path(const char *id, char *out, size_t cap)
{
  snprintf(out, cap, "%s/mounts/%s.conf", dism_state_dir(), id);
}

void
dism_live_paths(const char *id, struct dism_live *l)
{
  dism_live_dir(id, l->dir, sizeof l->dir);
  snprintf(l->nbd_sock, sizeof l->nbd_sock, "%s/nbd.sock", l->dir);
  snprintf(l->control_sock, sizeof l->control_sock, "%s/control.sock", l->dir);
  snprintf(l->pidfile, sizeof l->pidfile, "%s/server.pid", l->dir);
  snprintf(l->sup_pidfile, sizeof l->sup_pidfile, "%s/supervisor.pid", l->dir);
  snprintf(l->server_log, sizeof l->server_log, "%s/server.log", l->dir);
  snprintf(l->fuse_file, sizeof l->fuse_file, "%s/disk", l->dir);
  snprintf(l->live_conf, sizeof l->live_conf, "%s/live.conf", l->dir);
}

int
dism_registry_lock(void)
{
  char path[DISM_SUBPATH_MAX];
  /* Both state directories are root's alone (0700): what is inside (the
   * records, the servers' sockets, the lock) needs no further guard. */
  int r = dism_private_dir(dism_run_dir(), true);
  if (r == 0)
    r = dism_private_dir(dism_state_dir(), false);
  if (r < 0)
    return r;
  snprintf(path, sizeof path, "%s/lock", dism_run_dir());
  return dism_flock_open(path, LOCK_EX, true);
}

void
dism_registry_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* closing drops the flock */
}

/* Values are single lines; a newline in a path would break the format, so
 * paths with one are refused before a record is made. */
int
dism_record_write(const struct dism_record *r)
{
  char dir[DISM_SUBPATH_MAX], path[DISM_SUBPATH_MAX];
  snprintf(dir, sizeof dir, "%s/mounts", dism_state_dir());
  int rc = dism_private_dir(dism_state_dir(), true);
  if (rc == 0)
    rc = dism_private_dir(dir, true);
  if (rc < 0)
    return rc;
  dism_record_path(r->id, path, sizeof path);
  return dism_record_write_path(path, r);
}

int
dism_record_write_path(const char *path, const struct dism_record *r)
{
  int rc;
  size_t cap = 32768, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    dism_set_error("out of memory");
    return -ENOMEM;
  }
#define PUT(...) len += (size_t) snprintf(buf + len, len < cap ? cap - len : 0, __VA_ARGS__)
  PUT("# dism mount record (written by libdism; do not edit while mounted)\n");
  PUT("id=%s\n", r->id);
  PUT("image=%s\n", r->image);
  PUT("image_dev=%" PRIu64 "\nimage_ino=%" PRIu64 "\n", r->image_dev, r->image_ino);
  PUT("format=%s\n", r->format);
  PUT("index=%u\n", r->index);
  if (r->image_name[0])
    PUT("image_name=%s\n", r->image_name);
  if (r->volume[0])
    PUT("volume=%s\n", r->volume);
  PUT("mode=%s\n", r->mode == DISM_MODE_RO ? "ro" : "rw");
  PUT("mount_dir=%s\n", r->mount_dir);
  PUT("overlay=%s\n", r->overlay);
  PUT("server_cmd=%s\n", r->server_cmd);
  PUT("created=%" PRId64 "\n", r->created);
  PUT("state=%s\n", r->state);
  if (r->have_attach && len < cap) {
    char attach_text[4096];
    if (dism_attach_format(&r->attach, attach_text, sizeof attach_text) >= 0) {
      char *save = NULL;
      for (char *l = strtok_r(attach_text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        PUT("attach.%s\n", l);
    }
  }
#undef PUT
  if (len >= cap) {
    free(buf);
    dism_set_error("mount record %s too large", r->id);
    return -E2BIG;
  }
  rc = dism_write_file_atomic(path, buf, len, 0600);
  free(buf);
  return rc;
}

static int
record_set(struct dism_record *r, const char *key, const char *value)
{
#define COPY(field) snprintf(r->field, sizeof r->field, "%s", value)
  if (!strcmp(key, "id"))
    COPY(id);
  else if (!strcmp(key, "image"))
    COPY(image);
  else if (!strcmp(key, "image_dev"))
    r->image_dev = strtoull(value, NULL, 10);
  else if (!strcmp(key, "image_ino"))
    r->image_ino = strtoull(value, NULL, 10);
  else if (!strcmp(key, "format"))
    COPY(format);
  else if (!strcmp(key, "index"))
    r->index = (unsigned) strtoul(value, NULL, 10);
  else if (!strcmp(key, "image_name"))
    COPY(image_name);
  else if (!strcmp(key, "volume"))
    COPY(volume);
  else if (!strcmp(key, "mode"))
    r->mode = strcmp(value, "ro") == 0 ? DISM_MODE_RO : DISM_MODE_RW;
  else if (!strcmp(key, "mount_dir"))
    COPY(mount_dir);
  else if (!strcmp(key, "overlay"))
    COPY(overlay);
  else if (!strcmp(key, "server_cmd"))
    COPY(server_cmd);
  else if (!strcmp(key, "created"))
    r->created = strtoll(value, NULL, 10);
  else if (!strcmp(key, "state"))
    COPY(state);
  else if (!strncmp(key, "attach.", 7)) {
    if (dism_attach_parse_kv(&r->attach, key + 7, value) >= 0)
      r->have_attach = true;
  }
#undef COPY
  return 0;
}

int
dism_record_read(const char *id, struct dism_record *r)
{
  char path[DISM_SUBPATH_MAX];
  dism_record_path(id, path, sizeof path);
  return dism_record_read_path(path, id, r);
}

int
dism_record_read_path(const char *path, const char *id, struct dism_record *r)
{
  memset(r, 0, sizeof *r);
  r->attach.nbd_index = -1;
  FILE *f = fopen(path, "re");
  if (!f) {
    int e = errno;
    dism_set_error("cannot read the mount record %s: %s", path, strerror(e));
    return -e;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] == '\n')
      line[--n] = '\0';
    if (line[0] == '#' || line[0] == '\0')
      continue;
    char *eq = strchr(line, '=');
    if (!eq)
      continue;
    *eq = '\0';
    record_set(r, line, eq + 1);
  }
  free(line);
  fclose(f);
  /* A record without these is unusable: report it as unreadable. */
  if (strcmp(r->id, id) != 0 || r->image[0] != '/' || r->mount_dir[0] != '/' || r->index == 0) {
    dism_set_error("the mount record %s is damaged", path);
    return -EBADMSG;
  }
  return 0;
}

int
dism_record_remove(const char *id)
{
  char path[DISM_SUBPATH_MAX];
  dism_record_path(id, path, sizeof path);
  if (unlink(path) < 0 && errno != ENOENT) {
    int e = errno;
    dism_set_error("cannot remove the mount record %s: %s", path, strerror(e));
    return -e;
  }
  char dir[DISM_SUBPATH_MAX];
  snprintf(dir, sizeof dir, "%s/mounts", dism_state_dir());
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return 0;
}

int
dism_record_list(char (**ids)[37], size_t *count)
{
  char dir[DISM_SUBPATH_MAX];
  snprintf(dir, sizeof dir, "%s/mounts", dism_state_dir());
  *ids = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d)
    return errno == ENOENT ? 0 : -errno;
  size_t cap = 0;
  struct dirent *de;
  int r = 0;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name);
    if (len != 36 + 5 || strcmp(de->d_name + 36, ".conf") != 0)
      continue;
    if (*count == cap) {
      cap = cap ? cap * 2 : 8;
      char(*grown)[37] = realloc(*ids, cap * sizeof **ids);
      if (!grown) {
        r = -ENOMEM;
        dism_set_error("out of memory");
        break;
      }
      *ids = grown;
    }
    memcpy((*ids)[*count], de->d_name, 36);
    (*ids)[*count][36] = '\0';
    (*count)++;
  }
  closedir(d);
  if (r < 0) {
    free(*ids);
    *ids = NULL;
    *count = 0;
  }
  return r;
}

int
dism_record_find_by_dir(const char *dir, struct dism_record *r)
{
  char(*ids)[37];
  size_t n;
  int rc = dism_record_list(&ids, &n);
  if (rc < 0)
    return rc;
  rc = -ENOENT;
  for (size_t i = 0; i < n && rc == -ENOENT; i++)
    if (dism_record_read(ids[i], r) == 0 && strcmp(r->mount_dir, dir) == 0)
      rc = 0;
  free(ids);
  return rc;
}

bool
dism_record_is_wim(const struct dism_record *r)
{
  return strcmp(r->format, "wim") == 0;
}
