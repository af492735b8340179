/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-cache.c - the metadata volumes of WIM images, kept for the next
 * mount: lookup, build into place, prune (wim-cache.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "dism-internal.h"
#include "wim-cache.h"
#include "wim-map.h"

#define CACHE_DIR "wim-cache"
/* Part of the key: a builder that makes different volumes bumps it. */
#define BUILD_FORMAT 1u

static void
fnv(uint64_t *h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    *h ^= b[i];
    *h *= 0x100000001b3ull;
  }
}

static int
wim_identity(const char *wim, struct wim_identity *id)
{
  int fd = open(wim, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    dism_set_error("cannot open %s: %s", wim, strerror(e));
    return -e;
  }
  int rc = wim_identity_of(fd, wim, id);
  if (rc < 0)
    dism_set_error("%s", disk_last_error());
  close(fd);
  return rc;
}

static int
entry_path(const char *scratch, const struct wim_identity *id, unsigned index, uint64_t size,
           char *out, size_t cap)
{
  uint64_t h = 0xcbf29ce484222325ull;
  uint32_t v = BUILD_FORMAT;
  fnv(&h, &v, sizeof v);
  fnv(&h, &id->dev, sizeof id->dev);
  fnv(&h, &id->ino, sizeof id->ino);
  fnv(&h, &id->size, sizeof id->size);
  fnv(&h, &id->mtime_ns, sizeof id->mtime_ns);
  fnv(&h, &id->ctime_ns, sizeof id->ctime_ns);
  fnv(&h, id->guid, sizeof id->guid);
  fnv(&h, &index, sizeof index);
  fnv(&h, &size, sizeof size);
  if (snprintf(out, cap, "%s/%s/%016llx", scratch, CACHE_DIR, (unsigned long long) h) >= (int) cap) {
    dism_set_error("The scratch directory path %s is too long.", scratch);
    return -ENAMETOOLONG;
  }
  return 0;
}

/* Remove an entry directory: its two files, then itself. */
static void
remove_entry(const char *dir)
{
  int rc = dism_remove_flat_dir(dir);
  if (rc < 0)
    dism_log(DISM_LOG_WARN, "cannot remove the cached WIM volume %s: %s", dir, strerror(-rc));
}

/* Does the entry's map still describe (wim, index, size)? */
static bool
entry_current(const char *map_path, const struct wim_identity *id, unsigned index,
              uint64_t size)
{
  struct wim_map *m = NULL;
  char volume[DISM_PATH_MAX];
  struct stat st;
  bool ok = wim_map_read(map_path, &m) == 0 && m->image_index == index &&
            m->volume_size == size && memcmp(&m->wim, id, sizeof *id) == 0 &&
            dism_wim_cache_volume_of(map_path, volume, sizeof volume) == 0 &&
            stat(volume, &st) == 0 && (uint64_t) st.st_size == size;
  wim_map_free(m);
  return ok;
}

int
dism_wim_cache_volume_of(const char *map, char *volume, size_t cap)
{
  const char *slash = strrchr(map, '/');
  int dir_len = slash ? (int) (slash - map) : 1;
  if (snprintf(volume, cap, "%.*s/volume", dir_len, slash ? map : ".") >= (int) cap)
    return -ENAMETOOLONG;
  return 0;
}

int
dism_wim_cache_lookup(const char *scratch, const char *wim, unsigned index, uint64_t size,
                      char *map, size_t cap)
{
  struct wim_identity id;
  char dir[DISM_PATH_MAX];
  int rc = wim_identity(wim, &id);
  if (rc < 0 || (rc = entry_path(scratch, &id, index, size, dir, sizeof dir)) < 0)
    return rc;
  if (snprintf(map, cap, "%s/map", dir) >= (int) cap)
    return -ENAMETOOLONG;
  if (access(dir, F_OK) < 0)
    return -ENOENT;
  if (entry_current(map, &id, index, size)) {
    /* Its time is what the pruning's LRU goes by. */
    utimensat(AT_FDCWD, map, NULL, 0);
    return 0;
  }
  dism_log(DISM_LOG_INFO, "the cached volume %s does not match image %u of %s any more: "
           "removed", dir, index, wim);
  remove_entry(dir);
  return -ENOENT;
}

int
dism_wim_cache_build(const char *scratch, const char *wim, unsigned index, uint64_t size,
                     const char *tag, dism_wim_progress_fn progress, void *opaque, char *map,
                     size_t cap, struct dism_wim_build_stats *stats)
{
  struct wim_identity id;
  char dir[DISM_PATH_MAX], tmp[DISM_PATH_MAX], volume[DISM_SUBPATH_MAX],
      tmp_map[DISM_SUBPATH_MAX], root[DISM_PATH_MAX];
  bool made = false;
  int rc = wim_identity(wim, &id);
  if (rc < 0 || (rc = entry_path(scratch, &id, index, size, dir, sizeof dir)) < 0)
    return rc;
  if (snprintf(root, sizeof root, "%s/%s", scratch, CACHE_DIR) >= (int) sizeof root ||
      snprintf(tmp, sizeof tmp, "%s/.build-%s", root, tag) >= (int) sizeof tmp ||
      snprintf(map, cap, "%s/map", dir) >= (int) cap) {
    dism_set_error("The scratch directory path %s is too long.", scratch);
    return -ENAMETOOLONG;
  }
  snprintf(volume, sizeof volume, "%s/volume", tmp);
  snprintf(tmp_map, sizeof tmp_map, "%s/map", tmp);
  if ((rc = dism_mkdir_p(root, 0700)) < 0)
    goto out;
  remove_entry(tmp);   /* a build of this tag that did not finish */
  if (mkdir(tmp, 0700) < 0) {
    rc = -errno;
    dism_set_error("cannot create %s: %s", tmp, strerror(-rc));
    goto out;
  }
  made = true;
  if ((rc = dism_wim_build(wim, index, size, volume, tmp_map, progress, opaque, stats)) < 0)
    goto out;
  /* Into place; another mount may have built the same entry meanwhile. */
  if (rename(tmp, dir) < 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      rc = -errno;
      dism_set_error("cannot move %s to %s: %s", tmp, dir, strerror(-rc));
      goto out;
    }
    if (!entry_current(map, &id, index, size)) {
      remove_entry(dir);
      if (rename(tmp, dir) < 0) {
        rc = -errno;
        dism_set_error("cannot move %s to %s: %s", tmp, dir, strerror(-rc));
        goto out;
      }
    }
  } else {
    made = false;
  }
  int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
out:
  if (made)
    remove_entry(tmp);
  return rc;
}

/* Is dir named by a mount record (its map is the record's volume)? */
static bool
entry_in_use(const char *dir, char (*ids)[37], size_t n, struct dism_record *r)
{
  size_t len = strlen(dir);
  for (size_t i = 0; i < n; i++)
    if (dism_record_read(ids[i], r) == 0 && strncmp(r->volume, dir, len) == 0 &&
        r->volume[len] == '/')
      return true;
  return false;
}

struct unused_entry {
  char name[64];
  int64_t used;      /* the map's mtime, ns */
};

static int
by_use(const void *a, const void *b)
{
  const struct unused_entry *x = a, *y = b;
  return x->used < y->used ? -1 : x->used > y->used;
}

/* <scratch>/wim-cache/.lock: shared while a mount or commit looks up,
 * builds or names an entry, until its record names it; exclusive (and only
 * if free) to prune.  Made by the first WIM mount (create), never by a
 * prune: a scratch directory that never saw a WIM gets no cache. */
static int
cache_lock(const char *scratch, int how, bool create)
{
  char root[DISM_PATH_MAX], path[DISM_PATH_MAX + 8];
  if (snprintf(root, sizeof root, "%s/%s", scratch, CACHE_DIR) >= (int) sizeof root) {
    dism_set_error("The scratch directory path %s is too long.", scratch);
    return -ENAMETOOLONG;
  }
  snprintf(path, sizeof path, "%s/.lock", root);
  int rc = create ? dism_mkdir_p(root, 0700) : 0;
  if (rc < 0)
    return rc;
  return dism_flock_open(path, how, create);
}

int
dism_wim_cache_hold(const char *scratch)
{
  return cache_lock(scratch, LOCK_SH, true);
}

void
dism_wim_cache_release(int fd)
{
  if (fd >= 0)
    close(fd);
}

void
dism_wim_cache_prune(const char *scratch)
{
  /* Someone is between naming an entry and recording it: prune next time. */
  int lock_fd = cache_lock(scratch, LOCK_EX | LOCK_NB, false);
  if (lock_fd < 0)
    return;
  char root[DISM_PATH_MAX];
  char(*ids)[37] = NULL;
  size_t n_ids = 0, n_unused = 0, cap_unused = 0;
  struct unused_entry *unused = NULL;
  struct dism_record *r = calloc(1, sizeof *r);
  DIR *d = NULL;
  struct dirent *de;
  if (!r || snprintf(root, sizeof root, "%s/%s", scratch, CACHE_DIR) >= (int) sizeof root ||
      !(d = opendir(root)) || dism_record_list(&ids, &n_ids) < 0)
    goto out;
  while ((de = readdir(d))) {
    char dir[DISM_SUBPATH_MAX], map[DISM_SUBPATH_MAX + 8];
    struct stat st;
    /* Our names are 16 hex digits, .build-<36-character id> and .lock. */
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
        strcmp(de->d_name, ".lock") == 0 ||
        strlen(de->d_name) >= sizeof unused[0].name ||
        snprintf(dir, sizeof dir, "%s/%s", root, de->d_name) >= (int) sizeof dir)
      continue;
    if (entry_in_use(dir, ids, n_ids, r))
      continue;
    snprintf(map, sizeof map, "%s/map", dir);
    struct wim_map *m = NULL;
    struct wim_identity id;
    bool keep = strncmp(de->d_name, ".build-", 7) != 0 && stat(map, &st) == 0 &&
                wim_map_read(map, &m) == 0 && wim_identity(m->wim_path, &id) == 0 &&
                memcmp(&id, &m->wim, sizeof id) == 0;
    wim_map_free(m);
    if (!keep) {
      dism_log(DISM_LOG_INFO, "removing the cached WIM volume %s (its WIM changed or is gone)",
               dir);
      remove_entry(dir);
      continue;
    }
    if (n_unused == cap_unused) {
      size_t nc = cap_unused ? cap_unused * 2 : 16;
      struct unused_entry *nu = realloc(unused, nc * sizeof *nu);
      if (!nu)
        goto out;
      unused = nu;
      cap_unused = nc;
    }
    memcpy(unused[n_unused].name, de->d_name, strlen(de->d_name) + 1);
    unused[n_unused++].used = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (n_unused > DISM_WIM_CACHE_KEEP) {
    qsort(unused, n_unused, sizeof *unused, by_use);
    for (size_t i = 0; i < n_unused - DISM_WIM_CACHE_KEEP; i++) {
      char dir[DISM_SUBPATH_MAX];
      snprintf(dir, sizeof dir, "%s/%s", root, unused[i].name);
      dism_log(DISM_LOG_INFO, "removing the cached WIM volume %s (least recently used)", dir);
      remove_entry(dir);
    }
  }
out:
  if (d)
    closedir(d);
  free(unused);
  free(ids);
  free(r);
  close(lock_fd);
}
