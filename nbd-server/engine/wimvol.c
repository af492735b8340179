/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wimvol.c - the "wim" format: a lazily built WIM volume served from its
 * map (wim-map.h).  The image opened is the map file; the disk is the
 * metadata volume file it names, with the mapped ranges read from the WIM
 * (wim-source.h).  Read-only: writes go to an overlay on top, so neither
 * the WIM nor the volume file is ever written. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "formats.h"
#include "guid.h"
#include "wim-map.h"
#include "wim-source.h"

struct wimvol {
  struct wim_map *map;
  struct wim_source *ws;
  int vfd;                     /* the volume file */
  char *vpath;
  uint64_t mapped_bytes;
};

/* Add where to the message of the failure just recorded. */
static void
error_context(const struct wim_map_extent *x, uint64_t pos)
{
  char msg[768];
  snprintf(msg, sizeof msg, "%s", disk_last_error());
  disk_set_error("%s (volume offset %" PRIu64 ", MFT record %u)", msg, pos, x->mft_record);
}

static int
wimvol_pread(struct disk *d, void *buf, size_t count, uint64_t offset)
{
  struct wimvol *v = d->priv;
  const struct wim_map *m = v->map;
  uint64_t i = wim_map_lookup(m, offset), pos = offset, end = offset + count;
  uint8_t *p = buf;
  int r;

  while (pos < end) {
    uint64_t next;
    if (i < m->extent_count && m->extents[i].volume_offset <= pos) {
      const struct wim_map_extent *x = &m->extents[i];
      next = x->volume_offset + x->length < end ? x->volume_offset + x->length : end;
      r = wim_source_read(v->ws, &m->resources[x->resource],
                          x->resource_offset + (pos - x->volume_offset), p,
                          (size_t) (next - pos));
      if (r < 0) {
        if (r != -EAGAIN)
          error_context(x, pos);
        return r;
      }
      i++;
    } else {
      next = i < m->extent_count && m->extents[i].volume_offset < end
               ? m->extents[i].volume_offset : end;
      r = disk_full_pread(v->vfd, v->vpath, p, (size_t) (next - pos), pos, true);
      if (r < 0)
        return r;
    }
    p += next - pos;
    pos = next;
  }
  return 0;
}

/* The volume file's own allocation for [offset, end), as raw.c reports it. */
static int
file_extents(int fd, uint64_t offset, uint64_t end, struct disk_extents *out)
{
  while (offset < end) {
    off_t data = lseek(fd, (off_t) offset, SEEK_DATA), hole;
    int a;

    if (data < 0) {
      if (errno != ENXIO)
        return disk_extents_add(out, offset, end - offset, 0) < 0 ? -ENOMEM : 1;
      data = (off_t) end;
    }
    if ((uint64_t) data > offset) {
      uint64_t hend = (uint64_t) data < end ? (uint64_t) data : end;
      a = disk_extents_add(out, offset, hend - offset, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
      if (a != 0)
        return a < 0 ? -ENOMEM : 1;
      offset = hend;
      if (offset >= end)
        break;
    }
    hole = lseek(fd, (off_t) offset, SEEK_HOLE);
    if (hole < 0 || (uint64_t) hole > end)
      hole = (off_t) end;
    a = disk_extents_add(out, offset, (uint64_t) hole - offset, 0);
    if (a != 0)
      return a < 0 ? -ENOMEM : 1;
    offset = (uint64_t) hole;
  }
  return 0;
}

static int
wimvol_extents(struct disk *d, uint64_t count, uint64_t offset, struct disk_extents *out)
{
  struct wimvol *v = d->priv;
  const struct wim_map *m = v->map;
  uint64_t i = wim_map_lookup(m, offset), pos = offset, end = offset + count;
  int a;

  /* Mapped ranges are data; between them, the volume file says. */
  while (pos < end) {
    uint64_t next;
    if (i < m->extent_count && m->extents[i].volume_offset <= pos) {
      const struct wim_map_extent *x = &m->extents[i];
      next = x->volume_offset + x->length < end ? x->volume_offset + x->length : end;
      a = disk_extents_add(out, pos, next - pos, 0);
      i++;
    } else {
      next = i < m->extent_count && m->extents[i].volume_offset < end
               ? m->extents[i].volume_offset : end;
      a = file_extents(v->vfd, pos, next, out);
    }
    if (a != 0)
      return a < 0 ? -ENOMEM : 0;
    pos = next;
  }
  return 0;
}

static int
wimvol_flush(struct disk *d)
{
  (void) d;
  return 0;
}

static int
wimvol_info(struct disk *d, struct disk_info *info)
{
  struct wimvol *v = d->priv;
  const struct wim_map *m = v->map;
  struct wim_source_stats st;
  struct stat vst;

  info->subtype = "volume map";
  info->block_size = m->cluster_size;
  info->allocated_bytes = v->mapped_bytes;
  if (fstat(v->vfd, &vst) == 0)
    info->allocated_bytes += (uint64_t) vst.st_blocks * 512;
  dism_guid_to_string((const struct dism_guid *) m->wim.guid, info->unique_id);
  wim_source_get_stats(v->ws, &st);
  snprintf(info->notes, sizeof info->notes,
           "WIM %s image %u; volume %s; %" PRIu64 " extents, %" PRIu64
           " bytes mapped from %u resources; read from the WIM %" PRIu64
           " bytes, %" PRIu64 " chunks decompressed, %" PRIu64 " cache hits",
           m->wim_path, m->image_index, v->vpath, m->extent_count, v->mapped_bytes,
           m->resource_count, st.file_bytes_read, st.chunks_decompressed, st.cache_hits);
  return 0;
}

static void
wimvol_close(struct disk *d)
{
  struct wimvol *v = d->priv;
  if (!v)
    return;
  wim_source_close(v->ws);
  wim_map_free(v->map);
  if (v->vfd >= 0)
    close(v->vfd);
  free(v->vpath);
  free(v);
}

static const struct disk_ops wimvol_ops = {
  .name    = "wim",
  .pread   = wimvol_pread,
  .flush   = wimvol_flush,
  .extents = wimvol_extents,
  .info    = wimvol_info,
  .close   = wimvol_close,
};

/* The volume path: relative ones are relative to the map's directory. */
static char *
volume_path_of(const char *map_path, const char *volume)
{
  const char *slash = strrchr(map_path, '/');
  char *out = NULL;

  if (volume[0] == '/' || !slash)
    return strdup(volume);
  if (asprintf(&out, "%.*s/%s", (int) (slash - map_path), map_path, volume) < 0)
    return NULL;
  return out;
}

/* The chunk cache unless --wim-cache-size says: WIM_SOURCE_DEFAULT_CACHE,
 * or, when the map reads solid resources, enough to hold all of them (up to
 * a quarter of the machine's memory).  A solid resource's blobs are in
 * wimlib's order (by name and extension), not the tree's, so reading a tree
 * jumps between its 64 MiB LZMS chunks: a cache that holds a few of them
 * decompresses the same chunk again and again; one that holds them all
 * decompresses each once.  The cache fills only with what is read. */
static uint64_t
default_cache_bytes(const struct wim_map *m)
{
  uint64_t solid = 0;
  for (uint32_t i = 0; i < m->resource_count; i++)
    if (m->resources[i].flags & WIM_RES_SOLID)
      solid += m->resources[i].uncompressed_size;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t cap = pages > 0 && page > 0 ? (uint64_t) pages * (uint64_t) page / 4 : 0;
  uint64_t want = solid + (64ull << 20);
  if (want > cap)
    want = cap;
  return want > WIM_SOURCE_DEFAULT_CACHE ? want : WIM_SOURCE_DEFAULT_CACHE;
}

static int
wimvol_open(const char *path, int fd, const struct disk_open_opts *opts, struct disk **out)
{
  struct wim_source_opts wopts = { .cache_bytes = opts->wim_cache_bytes };
  struct wim_identity now;
  struct wimvol *v = NULL;
  struct disk *d = NULL;
  struct stat st;
  int r, wfd = -1;

  if (!opts->readonly) {
    disk_set_error("%s: a WIM volume map is read-only: open it read-only "
                   "(writes go to an overlay on top)", path);
    return -EROFS;
  }
  v = calloc(1, sizeof *v);
  d = disk_new(&wimvol_ops, path);
  if (!v || !d) {
    r = -ENOMEM;
    goto out;
  }
  v->vfd = -1;
  d->priv = v;
  r = wim_map_read(path, &v->map);
  if (r < 0)
    goto out;
  v->vpath = volume_path_of(path, v->map->volume_path);
  if (!v->vpath) {
    r = -ENOMEM;
    goto out;
  }
  v->vfd = open(v->vpath, O_RDONLY | O_CLOEXEC);
  if (v->vfd < 0 || fstat(v->vfd, &st) < 0) {
    r = -errno;
    disk_set_error("%s: the volume of WIM map %s: %s", v->vpath, path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size != v->map->volume_size) {
    r = -EINVAL;
    disk_set_error("%s: the volume of WIM map %s is %lld bytes, the map says %" PRIu64,
                   v->vpath, path, (long long) st.st_size, v->map->volume_size);
    goto out;
  }
  if (wopts.cache_bytes == 0)
    wopts.cache_bytes = default_cache_bytes(v->map);
  r = wim_source_open(v->map->wim_path, &wopts, &v->ws);
  if (r < 0)
    goto out;
  /* The same file, unchanged since the build or only appended to: wimlib
   * writes a WIM by appending (new data, metadata and tables after the old
   * end, the header rewritten last), so a commit — finished, or killed
   * half-way — leaves every resource the map names where it was.  Another
   * file (a rebuild, an optimize: a new inode), another WIM (GUID) or a
   * shorter one would put other bytes under the map.  (wimlib's
   * --unsafe-compact, which moves data inside the same file, is not told
   * apart: it is documented as unsafe for a WIM in use.) */
  wfd = open(v->map->wim_path, O_RDONLY | O_CLOEXEC);
  if (wfd < 0) {
    r = -errno;
    disk_set_error("%s: %s", v->map->wim_path, strerror(errno));
    goto out;
  }
  r = wim_identity_of(wfd, v->map->wim_path, &now);
  if (r < 0)
    goto out;
  if (now.dev != v->map->wim.dev || now.ino != v->map->wim.ino ||
      memcmp(now.guid, v->map->wim.guid, sizeof now.guid) != 0 ||
      now.size < v->map->wim.size) {
    r = -ESTALE;
    disk_set_error("%s: the WIM changed since the volume was built from it "
                   "(map %s): build the volume again", v->map->wim_path, path);
    goto out;
  }
  for (uint64_t i = 0; i < v->map->extent_count; i++)
    v->mapped_bytes += v->map->extents[i].length;
  d->size = v->map->volume_size;
  d->readonly = true;
  close(fd);
  *out = d;
  d = NULL;
  r = 0;
out:
  if (wfd >= 0)
    close(wfd);
  if (d)
    disk_close(d);           /* calls wimvol_close: frees v */
  else if (r < 0)
    free(v);
  return r;
}

static bool
wimvol_probe(int fd, uint64_t file_size)
{
  char magic[8];
  return file_size >= 8 && pread(fd, magic, 8, 0) == 8 &&
         memcmp(magic, WIM_MAP_MAGIC, 8) == 0;
}

const struct disk_format dism_format_wim = {
  .name = "wim",
  .probe = wimvol_probe,
  .open = wimvol_open,
};
