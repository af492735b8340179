/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* imageinfo.c - the Windows inside a VHD/VHDX or a WIM image, read in
 * place: see imageinfo.h and docs/dism-api.md, "Which Windows". */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wimlib.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/endians.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/volume.h>

#include "disk.h"
#include "dism-error.h"
#include "imageinfo.h"
#include "wim-source.h"
#include "wim.h"

#define HIVE_MAX (1ULL << 30)        /* larger than any real hive: refused */
#define CHUNK (1U << 20)

static const char *const hive_names[2] = { "SOFTWARE", "SYSTEM" };

/* A hive copied into a memory file hivex opens by name. */
struct hive {
  int fd;
  char path[40];
  char what[300];                    /* for warnings: the file and where it is */
};

static void
hives_close(struct hive h[2])
{
  for (int i = 0; i < 2; i++)
    if (h[i].fd >= 0)
      close(h[i].fd);
}

/* Make h's memory file for `size` bytes; false (warning given) if not. */
static bool
hive_create(struct hive *h, uint64_t size, struct dism_windows *w)
{
  if (size > HIVE_MAX) {
    dism_windows_warn(w, "the registry hive %s is not read: %" PRIu64 " bytes is too large",
                      h->what, size);
    return false;
  }
  h->fd = memfd_create("dism-hive", MFD_CLOEXEC);
  if (h->fd < 0) {
    dism_windows_warn(w, "the registry hive %s is not read: %s", h->what, strerror(errno));
    return false;
  }
  snprintf(h->path, sizeof h->path, "/proc/self/fd/%d", h->fd);
  return true;
}

static bool
hive_append(struct hive *h, const void *buf, size_t len, struct dism_windows *w)
{
  const char *p = buf;
  while (len) {
    ssize_t n = write(h->fd, p, len);
    if (n < 0) {
      dism_windows_warn(w, "the registry hive %s is not read: %s", h->what, strerror(errno));
      return false;
    }
    p += n;
    len -= (size_t) n;
  }
  return true;
}

/* Both hives (those present) through winreg.c. */
static void
hives_read(struct hive h[2], struct dism_windows *w)
{
  dism_winreg_read(h[0].fd >= 0 ? h[0].path : NULL, h[0].what, h[1].fd >= 0 ? h[1].path : NULL,
                   h[1].what, w);
}

/* ---- VHD/VHDX: NTFS through libntfs-3g -------------------------------------------- */
static uint64_t
ntfs_filetime(ntfs_time t)
{
  int64_t v = sle64_to_cpu(t);
  return v > 0 ? (uint64_t) v : 0;
}

/* Directories and files: the base records in use of the $MFT, metadata
 * files (the first 24 records, view indexes) left out; hard links count
 * once.  Only the record headers matter, which the update sequence fixups
 * never touch (they change the last two bytes of each sector). */
static void
count_mft(ntfs_volume *vol, struct dism_image_facts *f)
{
  uint32_t rs = vol->mft_record_size;
  uint8_t *buf = NULL;
  s64 records, per = CHUNK / rs;

  if (!vol->mft_na || rs < 512 || rs > CHUNK || !(buf = malloc(CHUNK)))
    goto out;
  records = vol->mft_na->initialized_size / rs;
  for (s64 i = 0; i < records; i += per) {
    s64 want = (records - i < per ? records - i : per) * rs;
    s64 got = ntfs_attr_pread(vol->mft_na, i * rs, want, buf);
    if (got <= 0)
      goto out;
    for (s64 j = 0; j < got / rs; j++) {
      const MFT_RECORD *m = (const MFT_RECORD *) (buf + j * rs);
      u16 flags = le16_to_cpu(m->flags);
      if (i + j < FILE_first_user + 8 || memcmp(buf + j * rs, "FILE", 4) != 0 ||
          !(flags & 0x0001) || (flags & 0x0008) || m->base_mft_record)
        continue;
      if (flags & 0x0002)
        f->dir_count++;
      else
        f->file_count++;
    }
  }
  f->have_counts = true;
out:
  free(buf);
}

/* Copy one file of the volume into h; its modification time into *mtime.
 * An absent file is no warning (no Windows there). */
static void
ntfs_hive(ntfs_volume *vol, const char *path, struct hive *h, uint64_t *mtime,
          struct dism_windows *w)
{
  ntfs_inode *ni = ntfs_pathname_to_inode(vol, NULL, path);
  ntfs_attr *na = NULL;
  uint8_t *buf = NULL;

  if (!ni)
    return;
  *mtime = ntfs_filetime(ni->last_data_change_time);
  na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
  if (!na) {
    dism_windows_warn(w, "the registry hive %s cannot be read: %s", h->what, strerror(errno));
    goto out;
  }
  if (!hive_create(h, (uint64_t) na->data_size, w) || !(buf = malloc(CHUNK)))
    goto out;
  for (s64 off = 0; off < na->data_size;) {
    s64 n = na->data_size - off < CHUNK ? na->data_size - off : CHUNK;
    n = ntfs_attr_pread(na, off, n, buf);
    if (n <= 0) {
      /* hivex will find what is missing and say the hive is damaged */
      dism_windows_warn(w, "the registry hive %s cannot be read whole: %s", h->what,
                        n < 0 ? strerror(errno) : "short read");
      break;
    }
    if (!hive_append(h, buf, (size_t) n, w))
      break;
    off += n;
  }
out:
  free(buf);
  if (na)
    ntfs_attr_close(na);
  ntfs_inode_close(ni);
}

int
dism_disk_facts(const struct dism_disk_io *io, struct dism_image_facts *f)
{
  struct dism_part_table *t = malloc(sizeof *t);
  struct dism_part_choice c;
  struct hive h[2] = { { .fd = -1 }, { .fd = -1 } };
  ntfs_volume *vol = NULL;
  ntfs_inode *root = NULL;
  uint64_t mtime[2] = { 0, 0 };
  int r = 0;

  memset(f, 0, sizeof *f);
  dism_windows_init(&f->win);
  if (!t) {
    r = -ENOMEM;
    dism_set_error("out of memory reading %s", io->name);
    goto out;
  }
  /* no partition table, no NTFS: nothing to say about Windows, no error */
  if (dism_part_read_table(io, 0, t) < 0 || dism_part_choose(io, t, &c) < 0) {
    snprintf(f->volume, sizeof f->volume, "none: %s", dism_last_error());
    dism_clear_error();
    goto out;
  }
  snprintf(f->volume, sizeof f->volume, "%s", c.reason);
  if (dism_ntfs_open_range(io, c.offset, c.size, &vol) < 0) {
    dism_windows_warn(&f->win, "%s", dism_last_error());
    dism_clear_error();
    goto out;
  }
  count_mft(vol, f);
  root = ntfs_inode_open(vol, FILE_root);
  if (root) {
    f->created = ntfs_filetime(root->creation_time);
    f->modified = ntfs_filetime(root->last_data_change_time);
  }
  for (int i = 0; i < 2; i++) {
    char path[64];
    snprintf(path, sizeof path, "/Windows/System32/config/%s", hive_names[i]);
    snprintf(h[i].what, sizeof h[i].what, "Windows\\System32\\config\\%s of %s (%s)",
             hive_names[i], io->name, c.reason);
    ntfs_hive(vol, path, &h[i], &mtime[i], &f->win);
    if (mtime[i] > f->modified)
      f->modified = mtime[i];
  }
  hives_read(h, &f->win);
out:
  if (root)
    ntfs_inode_close(root);
  dism_ntfs_close_range(vol);
  hives_close(h);
  free(t);
  return r;
}

/* ---- WIM: the two files read out of the image ------------------------------------- */
struct find {
  const char *want;
  bool found, is_dir;
  char name[256];
  struct wimlib_resource_entry res;
};

static int
find_child(const struct wimlib_dir_entry *e, void *opaque)
{
  struct find *fd = opaque;

  if (fd->found || !e->filename || strcasecmp(e->filename, fd->want) != 0)
    return 0;
  fd->found = true;
  fd->is_dir = e->attributes & WIMLIB_FILE_ATTRIBUTE_DIRECTORY;
  snprintf(fd->name, sizeof fd->name, "%s", e->filename);
  if (!(e->attributes & WIMLIB_FILE_ATTRIBUTE_REPARSE_POINT))
    fd->res = e->streams[0].resource;
  return 0;
}

/* The data of /Windows/System32/config/NAME, found without case, into h. */
static void
wim_hive(WIMStruct *wim, struct wim_source *ws, int image, const char *name, struct hive *h,
         struct dism_windows *w)
{
  const char *parts[] = { "Windows", "System32", "config", name };
  char path[1024] = "";
  struct find fd;
  struct wim_resource res;
  uint64_t off;
  uint8_t *buf = NULL;

  for (size_t i = 0; i < 4; i++) {
    memset(&fd, 0, sizeof fd);
    fd.want = parts[i];
    if (wimlib_iterate_dir_tree(wim, image, path[0] ? path : "/",
                                WIMLIB_ITERATE_DIR_TREE_FLAG_CHILDREN, find_child, &fd) != 0 ||
        !fd.found || fd.is_dir != (i < 3))
      return;                        /* no Windows there */
    size_t used = strlen(path);
    snprintf(path + used, sizeof path - used, "/%s", fd.name);
  }
  if (fd.res.is_missing) {
    dism_windows_warn(w, "the registry hive %s cannot be read: its data is missing from the WIM",
                      h->what);
    return;
  }
  if (!hive_create(h, fd.res.uncompressed_size, w) || !(buf = malloc(CHUNK)))
    goto out;
  wim_resource_of_blob(&fd.res, &res, &off);
  for (uint64_t done = 0; done < fd.res.uncompressed_size;) {
    size_t n = fd.res.uncompressed_size - done < CHUNK ? (size_t) (fd.res.uncompressed_size - done)
                                                       : CHUNK;
    int r = wim_source_read(ws, &res, off + done, buf, n);
    if (r < 0) {
      dism_windows_warn(w, "the registry hive %s cannot be read whole: %s", h->what,
                        disk_last_error());
      break;
    }
    if (!hive_append(h, buf, n, w))
      break;
    done += n;
  }
out:
  free(buf);
}

int
dism_wim_windows(const char *wim, unsigned count, const unsigned *index, struct dism_windows *out)
{
  struct wim_source_opts opts = { .cache_bytes = 8u << 20 };
  struct wim_source *ws = NULL;
  WIMStruct *wst = NULL;

  for (unsigned i = 0; i < count; i++)
    dism_windows_init(&out[i]);
  if (count && (dism_wim_open(wim, 0, &wst) < 0 || wim_source_open(wim, &opts, &ws) < 0)) {
    dism_windows_warn(&out[0], "%s: the registry of its images cannot be read: %s", wim,
                      wst ? disk_last_error() : dism_last_error());
    dism_clear_error();
    goto out;
  }
  for (unsigned i = 0; i < count; i++) {
    struct hive h[2] = { { .fd = -1 }, { .fd = -1 } };
    for (int k = 0; k < 2; k++) {
      snprintf(h[k].what, sizeof h[k].what, "Windows\\System32\\config\\%s of image %u of %s",
               hive_names[k], index[i], wim);
      wim_hive(wst, ws, (int) index[i], hive_names[k], &h[k], &out[i]);
    }
    hives_read(h, &out[i]);
    hives_close(h);
  }
out:
  if (ws)
    wim_source_close(ws);
  wimlib_free(wst);
  return 0;
}
