/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-map.c - the map file of a lazily built WIM volume (see wim-map.h).
 *
 * On-disk layout, version 1, every integer little-endian:
 *
 *   header, WIM_MAP_HEADER_SIZE (128) bytes:
 *     0   8  magic "DISMWMAP"
 *     8   4  version (1)
 *    12   4  header size (128)
 *    16   8  volume_size (bytes; > 0)
 *    24   4  cluster_size (power of two, 512 .. 2 MiB)
 *    28   4  image_index (>= 1)
 *    32   4  resource_count
 *    36   4  reserved (0)
 *    40   8  extent_count
 *    48   8  wim identity: dev
 *    56   8                ino
 *    64   8                size
 *    72   8                mtime_ns (signed)
 *    80   8                ctime_ns (signed)
 *    88  16                guid (the WIM header's)
 *   104   4  wim_path length in bytes, its NUL included (>= 2)
 *   108   4  volume_path length in bytes, its NUL included (>= 2)
 *   112   8  file size (the whole map, trailer included)
 *   120   8  reserved (0)
 *   resources, 32 bytes each: offset 8, size 8, uncompressed_size 8,
 *     flags 4 (WIM_RES_*), reserved 4 (0)
 *   extents, 40 bytes each: volume_offset 8, length 8, resource_offset 8,
 *     resource 4, mft_record 4
 *   wim_path (absolute), volume_path (relative: to the map's directory):
 *     NUL-terminated, no NUL inside
 *   CRC-32C of every byte before it, 4 bytes
 *
 * The file size is exactly the sum of those parts; extents are sorted by
 * volume_offset, not empty, not overlapping, inside volume_size, and each
 * lies inside its resource's uncompressed data.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "crc32c.h"
#include "disk.h"
#include "wim-map.h"

#define WIM_MAP_VERSION     1u
#define WIM_MAP_HEADER_SIZE 128u
#define WIM_MAP_RES_SIZE    32u
#define WIM_MAP_EXT_SIZE    40u
#define WIM_MAP_TRAILER     4u
/* A map larger than this is not one we wrote (10^8 extents). */
#define WIM_MAP_MAX_FILE    (4ull << 30)

static void
put_identity(uint8_t *h, const struct wim_identity *id)
{
  put_le64(h + 48, id->dev);
  put_le64(h + 56, id->ino);
  put_le64(h + 64, id->size);
  put_le64(h + 72, (uint64_t) id->mtime_ns);
  put_le64(h + 80, (uint64_t) id->ctime_ns);
  memcpy(h + 88, id->guid, 16);
}

/* Serialize m into a new buffer (*out, *outlen); no validation here, the
 * writer parses the result before writing it. */
static int
map_serialize(const struct wim_map *m, uint8_t **out, size_t *outlen)
{
  size_t wl, vl, len, p;
  uint8_t *b;

  if (!m->wim_path || !m->volume_path)
    return -EINVAL;
  wl = strlen(m->wim_path) + 1;
  vl = strlen(m->volume_path) + 1;
  if (wl > UINT32_MAX || vl > UINT32_MAX ||
      m->extent_count > (WIM_MAP_MAX_FILE / WIM_MAP_EXT_SIZE))
    return -EINVAL;
  len = WIM_MAP_HEADER_SIZE + (size_t) m->resource_count * WIM_MAP_RES_SIZE +
        (size_t) m->extent_count * WIM_MAP_EXT_SIZE + wl + vl + WIM_MAP_TRAILER;
  b = calloc(1, len);
  if (!b)
    return -ENOMEM;
  memcpy(b, WIM_MAP_MAGIC, 8);
  put_le32(b + 8, WIM_MAP_VERSION);
  put_le32(b + 12, WIM_MAP_HEADER_SIZE);
  put_le64(b + 16, m->volume_size);
  put_le32(b + 24, m->cluster_size);
  put_le32(b + 28, m->image_index);
  put_le32(b + 32, m->resource_count);
  put_le64(b + 40, m->extent_count);
  put_identity(b, &m->wim);
  put_le32(b + 104, (uint32_t) wl);
  put_le32(b + 108, (uint32_t) vl);
  put_le64(b + 112, len);
  p = WIM_MAP_HEADER_SIZE;
  for (uint32_t i = 0; i < m->resource_count; i++, p += WIM_MAP_RES_SIZE) {
    const struct wim_resource *r = &m->resources[i];
    put_le64(b + p, r->offset);
    put_le64(b + p + 8, r->size);
    put_le64(b + p + 16, r->uncompressed_size);
    put_le32(b + p + 24, r->flags);
  }
  for (uint64_t i = 0; i < m->extent_count; i++, p += WIM_MAP_EXT_SIZE) {
    const struct wim_map_extent *e = &m->extents[i];
    put_le64(b + p, e->volume_offset);
    put_le64(b + p + 8, e->length);
    put_le64(b + p + 16, e->resource_offset);
    put_le32(b + p + 24, e->resource);
    put_le32(b + p + 28, e->mft_record);
  }
  memcpy(b + p, m->wim_path, wl);
  p += wl;
  memcpy(b + p, m->volume_path, vl);
  p += vl;
  put_le32(b + p, dism_crc32c(0, b, p));
  *out = b;
  *outlen = len;
  return 0;
}

void
wim_map_free(struct wim_map *m)
{
  if (!m)
    return;
  free(m->wim_path);
  free(m->volume_path);
  free(m->resources);
  free(m->extents);
  free(m);
}

/* A NUL-terminated string of exactly len bytes (NUL included) at p. */
static char *
take_string(const uint8_t *p, uint32_t len)
{
  char *s;
  if (len < 2 || p[len - 1] != 0 || memchr(p, 0, len - 1))
    return NULL;
  s = malloc(len);
  if (s)
    memcpy(s, p, len);
  return s;
}

int
wim_map_parse(const uint8_t *buf, size_t len, const char *path,
              struct wim_map **out)
{
  struct wim_map *m = NULL;
  uint64_t ec, need, fsize, prev_end = 0;
  uint32_t rc, wl, vl, version, hsize, cs;
  size_t p;
  int e = -EINVAL;

  *out = NULL;
  if (len < WIM_MAP_HEADER_SIZE + WIM_MAP_TRAILER) {
    disk_set_error("%s: WIM map too short (%zu bytes)", path, len);
    goto out;
  }
  if (memcmp(buf, WIM_MAP_MAGIC, 8) != 0) {
    disk_set_error("%s: not a WIM volume map (bad magic)", path);
    goto out;
  }
  version = get_le32(buf + 8);
  hsize = get_le32(buf + 12);
  if (version != WIM_MAP_VERSION || hsize != WIM_MAP_HEADER_SIZE) {
    disk_set_error("%s: WIM map version %u (header %u bytes) not supported",
                   path, version, hsize);
    goto out;
  }
  if (get_le32(buf + 36) != 0 || get_le64(buf + 120) != 0) {
    disk_set_error("%s: WIM map: reserved header fields not zero", path);
    goto out;
  }
  rc = get_le32(buf + 32);
  ec = get_le64(buf + 40);
  wl = get_le32(buf + 104);
  vl = get_le32(buf + 108);
  fsize = get_le64(buf + 112);
  /* Every term is bounded (32- or 64-bit counts checked against len before
   * multiplying), so the sum cannot overflow. */
  if (ec > len / WIM_MAP_EXT_SIZE || rc > len / WIM_MAP_RES_SIZE) {
    disk_set_error("%s: WIM map: %u resources, %llu extents do not fit in %zu bytes",
                   path, rc, (unsigned long long) ec, len);
    goto out;
  }
  need = (uint64_t) WIM_MAP_HEADER_SIZE + (uint64_t) rc * WIM_MAP_RES_SIZE +
         ec * WIM_MAP_EXT_SIZE + wl + vl + WIM_MAP_TRAILER;
  if (need != len || fsize != len) {
    disk_set_error("%s: WIM map: size %zu bytes, header says %llu, counts give %llu",
                   path, len, (unsigned long long) fsize, (unsigned long long) need);
    goto out;
  }
  if (get_le32(buf + len - 4) != dism_crc32c(0, buf, len - 4)) {
    disk_set_error("%s: WIM map: checksum mismatch", path);
    goto out;
  }

  m = calloc(1, sizeof *m);
  if (!m) {
    e = -ENOMEM;
    goto out;
  }
  m->volume_size = get_le64(buf + 16);
  cs = m->cluster_size = get_le32(buf + 24);
  m->image_index = get_le32(buf + 28);
  m->resource_count = rc;
  m->extent_count = ec;
  m->wim.dev = get_le64(buf + 48);
  m->wim.ino = get_le64(buf + 56);
  m->wim.size = get_le64(buf + 64);
  m->wim.mtime_ns = (int64_t) get_le64(buf + 72);
  m->wim.ctime_ns = (int64_t) get_le64(buf + 80);
  memcpy(m->wim.guid, buf + 88, 16);
  if (m->volume_size == 0 || cs < 512 || cs > (2u << 20) || (cs & (cs - 1)) ||
      m->image_index == 0) {
    disk_set_error("%s: WIM map: bad volume size %llu, cluster size %u or image %u",
                   path, (unsigned long long) m->volume_size, cs, m->image_index);
    goto out;
  }

  m->resources = calloc(rc ? rc : 1, sizeof *m->resources);
  m->extents = calloc(ec ? ec : 1, sizeof *m->extents);
  if (!m->resources || !m->extents) {
    e = -ENOMEM;
    goto out;
  }
  p = WIM_MAP_HEADER_SIZE;
  for (uint32_t i = 0; i < rc; i++, p += WIM_MAP_RES_SIZE) {
    struct wim_resource *r = &m->resources[i];
    r->offset = get_le64(buf + p);
    r->size = get_le64(buf + p + 8);
    r->uncompressed_size = get_le64(buf + p + 16);
    r->flags = get_le32(buf + p + 24);
    if ((r->flags & ~WIM_RES_FLAGS) ||
        get_le32(buf + p + 28) != 0 || r->offset + r->size < r->offset ||
        (!(r->flags & (WIM_RES_COMPRESSED | WIM_RES_SOLID)) &&
         r->size != r->uncompressed_size)) {
      disk_set_error("%s: WIM map: resource %u is invalid (offset %llu, size %llu, "
                     "uncompressed %llu, flags %#x)", path, i,
                     (unsigned long long) r->offset, (unsigned long long) r->size,
                     (unsigned long long) r->uncompressed_size, r->flags);
      goto out;
    }
  }
  for (uint64_t i = 0; i < ec; i++, p += WIM_MAP_EXT_SIZE) {
    struct wim_map_extent *x = &m->extents[i];
    x->volume_offset = get_le64(buf + p);
    x->length = get_le64(buf + p + 8);
    x->resource_offset = get_le64(buf + p + 16);
    x->resource = get_le32(buf + p + 24);
    x->mft_record = get_le32(buf + p + 28);
    if (x->length == 0 || x->volume_offset < prev_end ||
        x->length > m->volume_size || x->volume_offset > m->volume_size - x->length ||
        x->resource >= rc ||
        x->length > m->resources[x->resource].uncompressed_size ||
        x->resource_offset > m->resources[x->resource].uncompressed_size - x->length) {
      disk_set_error("%s: WIM map: extent %llu is invalid (volume %llu+%llu, "
                     "resource %u at %llu)", path, (unsigned long long) i,
                     (unsigned long long) x->volume_offset,
                     (unsigned long long) x->length, x->resource,
                     (unsigned long long) x->resource_offset);
      goto out;
    }
    prev_end = x->volume_offset + x->length;
  }
  m->wim_path = take_string(buf + p, wl);
  p += wl;
  m->volume_path = take_string(buf + p, vl);
  if (!m->wim_path || !m->volume_path) {
    disk_set_error("%s: WIM map: a path is not a NUL-terminated string", path);
    goto out;
  }
  if (m->wim_path[0] != '/') {
    disk_set_error("%s: WIM map: the WIM path '%s' is not absolute", path, m->wim_path);
    goto out;
  }
  *out = m;
  m = NULL;
  e = 0;
out:
  wim_map_free(m);
  return e;
}

int
wim_map_read(const char *path, struct wim_map **out)
{
  uint8_t *buf = NULL;
  struct stat st;
  size_t got = 0;
  int fd, e;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    e = -errno;
    disk_set_error("%s: cannot open WIM map: %s", path, strerror(errno));
    return e;
  }
  if (fstat(fd, &st) < 0) {
    e = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size > WIM_MAP_MAX_FILE) {
    e = -EINVAL;
    disk_set_error("%s: not a WIM map (not a regular file or too large)", path);
    goto out;
  }
  buf = malloc(st.st_size ? (size_t) st.st_size : 1);
  if (!buf) {
    e = -ENOMEM;
    goto out;
  }
  while (got < (size_t) st.st_size) {
    ssize_t n = pread(fd, buf + got, (size_t) st.st_size - got, (off_t) got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      e = n < 0 ? -errno : -EIO;
      disk_set_error("%s: read: %s", path, n < 0 ? strerror(errno) : "short read");
      goto out;
    }
    got += (size_t) n;
  }
  e = wim_map_parse(buf, got, path, out);
out:
  free(buf);
  close(fd);
  return e;
}

/* The directory part of path ("." if none), for the fsync after rename. */
static int
fsync_parent_dir(const char *path)
{
  const char *slash = strrchr(path, '/');
  char dir[DISM_PATH_MAX];
  int fd, e = 0;

  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else if ((size_t) (slash - path) >= sizeof dir)
    return -ENAMETOOLONG;
  else
    snprintf(dir, sizeof dir, "%.*s", (int) (slash - path), path);
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fsync(fd) < 0)
    e = -errno;
  close(fd);
  return e;
}

int
wim_map_write(const char *path, const struct wim_map *m)
{
  char tmp[DISM_PATH_MAX];
  uint8_t *buf = NULL;
  struct wim_map *check = NULL;
  size_t len = 0, done = 0;
  int fd = -1, e;

  tmp[0] = 0;
  e = map_serialize(m, &buf, &len);
  if (e < 0) {
    disk_set_error("%s: WIM map: cannot serialize (%s)", path, strerror(-e));
    goto out;
  }
  /* Never write a map the reader would refuse. */
  e = wim_map_parse(buf, len, path, &check);
  if (e < 0)
    goto out;
  if ((size_t) snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path) >= sizeof tmp) {
    e = -ENAMETOOLONG;
    disk_set_error("%s: path too long", path);
    goto out;
  }
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    e = -errno;
    disk_set_error("%s: cannot create: %s", tmp, strerror(errno));
    goto out;
  }
  while (done < len) {
    ssize_t n = write(fd, buf + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      e = -errno;
      disk_set_error("%s: write: %s", tmp, strerror(errno));
      goto out;
    }
    done += (size_t) n;
  }
  if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
    e = -errno;
    disk_set_error("%s: fsync: %s", tmp, strerror(errno));
    goto out;
  }
  if (close(fd) < 0) {
    fd = -1;
    e = -errno;
    disk_set_error("%s: close: %s", tmp, strerror(errno));
    goto out;
  }
  fd = -1;
  if (rename(tmp, path) < 0) {
    e = -errno;
    disk_set_error("%s: rename to %s: %s", tmp, path, strerror(errno));
    goto out;
  }
  tmp[0] = 0;
  e = fsync_parent_dir(path);
  if (e < 0)
    disk_set_error("%s: fsync of its directory: %s", path, strerror(-e));
out:
  if (fd >= 0)
    close(fd);
  if (e < 0 && tmp[0])
    unlink(tmp);
  wim_map_free(check);
  free(buf);
  return e;
}

uint64_t
wim_map_lookup(const struct wim_map *m, uint64_t offset)
{
  uint64_t lo = 0, hi = m->extent_count;

  /* Extents are sorted and disjoint, so their ends are increasing. */
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    const struct wim_map_extent *x = &m->extents[mid];
    if (x->volume_offset + x->length > offset)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

int
wim_identity_of(int fd, const char *path, struct wim_identity *id)
{
  uint8_t hdr[40];
  struct stat st;
  ssize_t n;

  memset(id, 0, sizeof *id);
  if (fstat(fd, &st) < 0) {
    int e = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    return e;
  }
  do
    n = pread(fd, hdr, sizeof hdr, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = -errno;
    disk_set_error("%s: read: %s", path, strerror(errno));
    return e;
  }
  if ((size_t) n < sizeof hdr ||
      (memcmp(hdr, "MSWIM\0\0\0", 8) != 0 && memcmp(hdr, "WLPWM\0\0\0", 8) != 0)) {
    disk_set_error("%s: not a WIM file", path);
    return -EINVAL;
  }
  id->dev = (uint64_t) st.st_dev;
  id->ino = (uint64_t) st.st_ino;
  id->size = (uint64_t) st.st_size;
  id->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  id->ctime_ns = (int64_t) st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
  memcpy(id->guid, hdr + 24, 16);
  return 0;
}
