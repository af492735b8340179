/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim.c - open, list, resolve, size and make an image's volume file
 * (mkntfs), and capture (NTFS volume -> WIM image) through wimlib.  See wim.h and
 * docs/dism-api.md, section "WIM". */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wimlib.h>

#include "dism-internal.h"
#include "spawn.h"
#include "wim.h"

#define GIB (1024ULL * 1024 * 1024)
#define MIB (1024ULL * 1024)

static pthread_once_t wimlib_once = PTHREAD_ONCE_INIT;

/* wimlib must never print: libdism reports through its messages and log. */
static void
wimlib_setup(void)
{
  wimlib_set_print_errors(false);
  wimlib_global_init(0);
}

/* A wimlib error as the errno whose HRESULT (dism_hr_from_errno) is the one
 * DISM gives: damaged data -EUCLEAN (ERROR_FILE_CORRUPT, as for a damaged
 * VHD), a cancel -ECANCELED, a WIM another process writes -ETXTBSY
 * (ERROR_SHARING_VIOLATION). */
static int
errno_from_wimlib(int code)
{
  switch (code) {
  case WIMLIB_ERR_ABORTED_BY_PROGRESS:
    return -ECANCELED;
  case WIMLIB_ERR_NOMEM:
    return -ENOMEM;
  case WIMLIB_ERR_IS_SPLIT_WIM:
  case WIMLIB_ERR_INVALID_PARAM:
    return -EINVAL;
  case WIMLIB_ERR_ALREADY_LOCKED:
    return -ETXTBSY;
  case WIMLIB_ERR_WIM_IS_READONLY:
    return -EACCES;
  case WIMLIB_ERR_DECOMPRESSION:
  case WIMLIB_ERR_INTEGRITY:
  case WIMLIB_ERR_INVALID_CHUNK_SIZE:
  case WIMLIB_ERR_INVALID_COMPRESSION_TYPE:
  case WIMLIB_ERR_INVALID_HEADER:
  case WIMLIB_ERR_INVALID_INTEGRITY_TABLE:
  case WIMLIB_ERR_INVALID_LOOKUP_TABLE_ENTRY:
  case WIMLIB_ERR_INVALID_METADATA_RESOURCE:
  case WIMLIB_ERR_INVALID_PART_NUMBER:
  case WIMLIB_ERR_INVALID_PIPABLE_WIM:
  case WIMLIB_ERR_INVALID_REPARSE_DATA:
  case WIMLIB_ERR_INVALID_RESOURCE_HASH:
  case WIMLIB_ERR_METADATA_NOT_FOUND:
  case WIMLIB_ERR_NOT_A_WIM_FILE:
  case WIMLIB_ERR_RESOURCE_NOT_FOUND:
  case WIMLIB_ERR_UNEXPECTED_END_OF_FILE:
  case WIMLIB_ERR_UNKNOWN_VERSION:
  case WIMLIB_ERR_XML:
  case WIMLIB_ERR_WIM_IS_ENCRYPTED:
  case WIMLIB_ERR_WIM_IS_INCOMPLETE:
  case WIMLIB_ERR_INVALID_XATTR:
    return -EUCLEAN;
  default:
    return -EIO;
  }
}

int
dism_wim_fail(int code, const char *fmt_what, const char *wim)
{
  char what[4600];
  snprintf(what, sizeof what, fmt_what, wim);
  dism_set_error("%s: %s (wimlib error %d)", what, wimlib_get_error_string(code), code);
  return errno_from_wimlib(code);
}

static int
wim_open(const char *wim, int flags, WIMStruct **out, wimlib_progress_func_t fn, void *ctx)
{
  pthread_once(&wimlib_once, wimlib_setup);
  *out = NULL;
  if (dism_has_ext(wim, ".swm")) {
    dism_set_error("%s is a split WIM (.swm): split WIM files cannot be mounted.", wim);
    return -EINVAL;
  }
  struct stat st;
  if (stat(wim, &st) < 0 && errno == ENOENT) {
    dism_set_error("The WIM file %s does not exist.", wim);
    return -ENOENT;
  }
  int rc = wimlib_open_wim_with_progress(wim, flags | WIMLIB_OPEN_FLAG_ERROR_IF_SPLIT, out, fn,
                                         ctx);
  if (rc == WIMLIB_ERR_IS_SPLIT_WIM) {
    dism_set_error("%s is a part of a split WIM: split WIM files cannot be mounted.", wim);
    return -EINVAL;
  }
  if (rc == WIMLIB_ERR_INTEGRITY) {
    dism_set_error("%s failed its integrity check: the file is damaged (its integrity table "
                   "does not match its contents).", wim);
    return -EUCLEAN;
  }
  if (rc)
    return dism_wim_fail(rc, "%s cannot be opened as a WIM file", wim);
  return 0;
}

int
dism_wim_open(const char *wim, int flags, WIMStruct **out)
{
  return wim_open(wim, flags, out, NULL, NULL);
}

/* ---- image details ----------------------------------------------------------- */
static const char *
prop(WIMStruct *w, int image, const char *name)
{
  const char *v = wimlib_get_image_property(w, image, name);
  return v ? v : "";
}

static uint64_t
prop_num(WIMStruct *w, int image, const char *name, int base)
{
  const char *v = wimlib_get_image_property(w, image, name);
  return v && *v ? strtoull(v, NULL, base) : 0;
}

static uint64_t
prop_time(WIMStruct *w, int image, const char *what)
{
  char hi[64], lo[64];
  snprintf(hi, sizeof hi, "%s/HIGHPART", what);
  snprintf(lo, sizeof lo, "%s/LOWPART", what);
  return prop_num(w, image, hi, 16) << 32 | (prop_num(w, image, lo, 16) & 0xFFFFFFFFULL);
}

/* The XML's WINDOWS element: empty fields where it has none. */
static void
windows_details(WIMStruct *w, int image, struct dism_windows *win)
{
  static const struct { const char *key; size_t off, len; } text[] = {
#define TEXT(key, field) { "WINDOWS/" key, offsetof(struct dism_windows, field), \
                           sizeof(((struct dism_windows *) 0)->field) }
    TEXT("EDITIONID", edition), TEXT("PRODUCTNAME", product_name),
    TEXT("INSTALLATIONTYPE", installation_type), TEXT("PRODUCTTYPE", product_type),
    TEXT("PRODUCTSUITE", product_suite), TEXT("HAL", hal), TEXT("SYSTEMROOT", system_root),
#undef TEXT
  };
  dism_windows_init(win);
  for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
    snprintf((char *) win + text[i].off, text[i].len, "%s", prop(w, image, text[i].key));
  const char *arch = wimlib_get_image_property(w, image, "WINDOWS/ARCH");
  if (arch && *arch)
    win->arch = (unsigned) strtoul(arch, NULL, 10);
  win->have_version = wimlib_get_image_property(w, image, "WINDOWS/VERSION/MAJOR") != NULL;
  win->major = (unsigned) prop_num(w, image, "WINDOWS/VERSION/MAJOR", 10);
  win->minor = (unsigned) prop_num(w, image, "WINDOWS/VERSION/MINOR", 10);
  win->build = (unsigned) prop_num(w, image, "WINDOWS/VERSION/BUILD", 10);
  win->spbuild = (unsigned) prop_num(w, image, "WINDOWS/VERSION/SPBUILD", 10);
  win->splevel = (unsigned) prop_num(w, image, "WINDOWS/VERSION/SPLEVEL", 10);
  const char *def = prop(w, image, "WINDOWS/LANGUAGES/DEFAULT");
  for (unsigned l = 0; l < DISM_WIN_LANG_MAX; l++) {
    char key[48];
    snprintf(key, sizeof key, "WINDOWS/LANGUAGES/LANGUAGE[%u]", l + 1);
    const char *lang = wimlib_get_image_property(w, image, key);
    if (!lang)
      break;
    if (strcmp(lang, def) == 0)
      win->default_language = l;
    snprintf(win->languages[win->language_count++], sizeof win->languages[0], "%s", lang);
  }
}

static void
image_details(WIMStruct *w, int image, struct dism_wim_image *out)
{
  memset(out, 0, sizeof *out);
  out->index = (unsigned) image;
  snprintf(out->name, sizeof out->name, "%s", prop(w, image, "NAME"));
  snprintf(out->description, sizeof out->description, "%s", prop(w, image, "DESCRIPTION"));
  out->total_bytes = prop_num(w, image, "TOTALBYTES", 10);
  out->hardlink_bytes = prop_num(w, image, "HARDLINKBYTES", 10);
  out->file_count = prop_num(w, image, "FILECOUNT", 10);
  out->dir_count = prop_num(w, image, "DIRCOUNT", 10);
  windows_details(w, image, &out->win);
  out->created = prop_time(w, image, "CREATIONTIME");
  out->modified = prop_time(w, image, "LASTMODIFICATIONTIME");
}

int
dism_wim_list(const char *wim, struct dism_wim_image **images, unsigned *count)
{
  WIMStruct *w = NULL;
  struct wimlib_wim_info info;
  *images = NULL;
  *count = 0;
  int rc = wim_open(wim, 0, &w, NULL, NULL);
  if (rc < 0)
    return rc;
  wimlib_get_wim_info(w, &info);
  struct dism_wim_image *list = calloc(info.image_count ? info.image_count : 1, sizeof *list);
  if (!list) {
    dism_set_error("out of memory");
    rc = -ENOMEM;
    goto out;
  }
  for (unsigned i = 0; i < info.image_count; i++) {
    image_details(w, (int) i + 1, &list[i]);
    list[i].boot = info.boot_index == i + 1;
  }
  *images = list;
  *count = info.image_count;
out:
  wimlib_free(w);
  return rc;
}

int
dism_wim_resolve(const char *wim, bool check_integrity, bool by_name, unsigned index,
                 const char *name, struct dism_wim_image *image)
{
  WIMStruct *w = NULL;
  struct wimlib_wim_info info;
  int rc = wim_open(wim, check_integrity ? WIMLIB_OPEN_FLAG_CHECK_INTEGRITY : 0, &w, NULL, NULL);
  if (rc < 0)
    return rc;
  wimlib_get_wim_info(w, &info);
  if (info.total_parts != 1 || info.part_number != 1) {
    dism_set_error("%s is part %u of a split WIM of %u parts: split WIM files cannot be "
                   "mounted.", wim, (unsigned) info.part_number, (unsigned) info.total_parts);
    rc = -EINVAL;
    goto out;
  }
  if (check_integrity && !info.has_integrity_table)
    dism_log(DISM_LOG_WARN, "%s has no integrity table: /CheckIntegrity has nothing to verify",
             wim);
  unsigned found = 0;
  if (by_name) {
    for (unsigned i = 1; i <= info.image_count && !found; i++)
      if (strcmp(prop(w, (int) i, "NAME"), name ? name : "") == 0)
        found = i;
    if (!found) {
      dism_set_error("%s has no image named \"%s\".", wim, name ? name : "");
      rc = -ESRCH;
      goto out;
    }
  } else {
    if (index == 0 || index > info.image_count) {
      dism_set_error("%s: index %u is not valid: the WIM holds %u image(s).", wim, index,
                     (unsigned) info.image_count);
      rc = -ESRCH;
      goto out;
    }
    found = index;
  }
  image_details(w, (int) found, image);
out:
  wimlib_free(w);
  return rc;
}

/* The figures come from the XML: saturate (at 2^62, so the sizes below
 * cannot wrap) rather than overflow. */
static uint64_t
xml_sum(uint64_t bytes, const struct dism_wim_image *image, unsigned per_entry)
{
  unsigned __int128 sum = (unsigned __int128) bytes +
                          ((unsigned __int128) image->file_count + image->dir_count) * per_entry;
  return sum > (1ULL << 62) ? 1ULL << 62 : (uint64_t) sum;
}

uint64_t
dism_wim_metadata_need(const struct dism_wim_image *image, uint64_t volume_size)
{
  /* An MFT record, index entries and a small file's data per entry; NTFS's
   * own metadata and log; the cluster bitmap (a bit per 4 KiB cluster). */
  uint64_t need = xml_sum(64 * MIB, image, 4096);
  return need + volume_size / 32768 > need ? need + volume_size / 32768 : UINT64_MAX;
}

uint64_t
dism_wim_volume_size(const struct dism_wim_image *image, bool optimize)
{
  /* Data, plus a cluster and an MFT record per file or directory (small
   * files and cluster rounding), plus room for servicing. */
  uint64_t need = xml_sum(image->total_bytes, image, 5120);
  uint64_t extra = need / 2 > GIB ? need / 2 : GIB;
  /* DISM_WIM_EXTRA_BYTES: a user setting (dism(8)), logged when it applies. */
  const char *env = getenv("DISM_WIM_EXTRA_BYTES");
  if (optimize) {
    extra = need / 8;
  } else if (env && *env) {
    extra = strtoull(env, NULL, 10);
    dism_log(DISM_LOG_INFO, "DISM_WIM_EXTRA_BYTES=%s: %llu bytes of servicing room instead of "
             "max(1 GiB, 50%%)", env, (unsigned long long) extra);
  }
  uint64_t size = need + extra + 64 * MIB; /* NTFS's own metadata and log */
  return (size + MIB - 1) / MIB * MIB;
}

/* ---- the volume file ----------------------------------------------------------- */
/* $DISM_MKNTFS, else where the distributions install it. */
static const char *
mkntfs_path(void)
{
  static const char *const candidates[] = { "/sbin/mkntfs", "/usr/sbin/mkntfs",
                                            "/usr/local/sbin/mkntfs", "/usr/bin/mkntfs",
                                            NULL };
  return dism_find_tool("DISM_MKNTFS", candidates);
}

int
dism_wim_make_volume(const char *volume, uint64_t size, const char *wim)
{
  const char *mkntfs = mkntfs_path();
  if (!mkntfs) {
    dism_set_error("mkntfs is not installed (package ntfs-3g): it is needed to mount %s", wim);
    return -ENOENT;
  }
  int fd = open(volume, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    dism_set_error("cannot create the volume file %s for %s: %s", volume, wim, strerror(e));
    return -e;
  }
  /* Sparse: only what mkntfs and the extraction write takes space.  Any
   * failure from here on removes the file again. */
  int rc = ftruncate(fd, (off_t) size) < 0 ? -errno : 0;
  close(fd);
  if (rc < 0) {
    unlink(volume);
    dism_set_error("cannot size the volume file %s to %llu bytes: %s", volume,
                   (unsigned long long) size, strerror(-rc));
    return rc;
  }
  /* -F: a file, not a block device; -Q: no zeroing (the file is sparse). */
  const char *argv[] = { mkntfs, "-F", "-Q", "-q", volume, NULL };
  char output[1024];
  rc = dism_spawn_capture(argv, output, sizeof output, DISM_SPAWN_KEEP_TAIL);
  if (rc != 0) {
    unlink(volume);
    dism_set_error("mkntfs could not format the volume file %s for %s (exit %d): %s", volume,
                   wim, rc, output[0] ? output : "(no output)");
    return -EIO;
  }
  return 0;
}

struct progress_relay {
  dism_wim_progress_fn fn;
  void *opaque;
  unsigned from, span;
  uint64_t scan_total;           /* capture: the bytes expected to be scanned */
  bool cancelled;
  unsigned last;                 /* the last percent reported */
};

static void
relay(struct progress_relay *p, uint64_t done, uint64_t total, bool cancellable)
{
  if (!p->fn)
    return;
  unsigned pct = p->from + (unsigned) (total ? (done >= total ? p->span : done * p->span / total)
                                             : 0);
  if (pct < p->last) /* progress never goes back */
    pct = p->last;
  p->last = pct;
  if (p->fn(pct, p->opaque) && cancellable)
    p->cancelled = true;
}

/* ---- capture ------------------------------------------------------------------ */
static enum wimlib_progress_status
capture_progress(enum wimlib_progress_msg msg, union wimlib_progress_info *info, void *ctx)
{
  struct progress_relay *p = ctx;
  /* 0-40: scanning the volume; 40-95: writing new data; then metadata. */
  switch (msg) {
  case WIMLIB_PROGRESS_MSG_SCAN_DENTRY:
    p->from = 0, p->span = 40;
    relay(p, info->scan.num_bytes_scanned, p->scan_total, false);
    break;
  case WIMLIB_PROGRESS_MSG_WRITE_STREAMS:
    p->from = 40, p->span = 55;
    relay(p, info->write_streams.completed_bytes, info->write_streams.total_bytes, false);
    break;
  case WIMLIB_PROGRESS_MSG_WRITE_METADATA_END:
  case WIMLIB_PROGRESS_MSG_CALC_INTEGRITY:
    p->from = 95, p->span = 5;
    relay(p, 0, 1, false);
    break;
  default:
    break;
  }
  return WIMLIB_PROGRESS_STATUS_CONTINUE;
}

/* The part of a WIM's header wimlib rewrites (its on-disk header size). */
#define WIM_HEADER_BYTES 208

/* Put the WIM back as it was before a failed write: wimlib truncates only
 * to the end of the old tables and rewrites the header's flags itself, so
 * check both against what was saved. */
static int
wim_restore(int fd, const char *wim, off_t size, const uint8_t *hdr)
{
  uint8_t now[WIM_HEADER_BYTES];
  struct stat st;
  int rc = 0;

  if (fstat(fd, &st) == 0 && st.st_size != size && ftruncate(fd, size) < 0)
    rc = -errno;
  if (rc == 0 && (pread(fd, now, sizeof now, 0) != (ssize_t) sizeof now ||
                  memcmp(now, hdr, sizeof now) != 0) &&
      pwrite(fd, hdr, WIM_HEADER_BYTES, 0) != (ssize_t) WIM_HEADER_BYTES)
    rc = errno ? -errno : -EIO;
  if (rc == 0 && fdatasync(fd) < 0)
    rc = -errno;
  if (rc < 0)
    dism_set_error("%s; putting %s back as it was failed too: %s", dism_last_error(), wim,
                   strerror(-rc));
  return rc;
}

int
dism_wim_write(struct WIMStruct *w, const char *wim, unsigned flags)
{
  /* Append mode (never REBUILD): new data, metadata, tables and XML go
   * after the old ones, then the header is rewritten; until that last write
   * the WIM on disk is the old, valid one.  If the write fails (a full file
   * system) the file is cut back to its old size and header, so it is
   * byte-identical to before. */
  int write_flags = WIMLIB_WRITE_FLAG_FSYNC;
  uint8_t hdr[WIM_HEADER_BYTES];
  struct stat st;
  int rc = 0, fd = open(wim, O_RDWR | O_CLOEXEC);

  if (fd < 0 || fstat(fd, &st) < 0)
    rc = -errno;
  else if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t) sizeof hdr)
    rc = -EIO;
  if (rc < 0) {
    dism_set_error("the changes cannot be written into %s: %s", wim, strerror(-rc));
    goto out;
  }
  if (flags & DISM_WIM_COMMIT_INTEGRITY)
    write_flags |= WIMLIB_WRITE_FLAG_CHECK_INTEGRITY;
  errno = 0;
  int wrc = wimlib_overwrite(w, write_flags, 0);
  int e = errno;            /* a failed write(2) leaves it; wimlib's code does not say */
  if (wrc == 0)
    goto out;
  rc = dism_wim_fail(wrc, "the changes cannot be written into %s", wim);
  if (wrc == WIMLIB_ERR_WRITE && (e == ENOSPC || e == EDQUOT)) {
    dism_set_error("%s: the file system holding it is full", dism_last_error());
    rc = -ENOSPC;
  }
  (void) wim_restore(fd, wim, st.st_size, hdr);
out:
  if (fd >= 0)
    close(fd);
  return rc;
}

/* A name for an appended image: "<name> (2)", "(3)", ... unique in the WIM;
 * an unnamed image stays unnamed. */
static int
append_name(WIMStruct *w, const char *base, char *out, size_t cap)
{
  if (!*base) {
    out[0] = '\0';
    return 0;
  }
  for (unsigned n = 2; n < 100000; n++) {
    snprintf(out, cap, "%s (%u)", base, n);
    if (!wimlib_image_name_in_use(w, out))
      return 0;
  }
  return -EEXIST;
}

int
dism_wim_capture(const char *wim, unsigned index, const char *volume, unsigned flags,
                 dism_wim_progress_fn progress, void *opaque, unsigned *new_index)
{
  struct progress_relay p = { progress, opaque, 0, 40, 0, false, 0 };
  WIMStruct *w = NULL;
  struct wimlib_wim_info info;
  char name[600], description[1100];
  int rc = wim_open(wim, WIMLIB_OPEN_FLAG_WRITE_ACCESS, &w, capture_progress, &p);
  if (rc < 0)
    goto out;
  wimlib_get_wim_info(w, &info);
  if (index == 0 || index > info.image_count) {
    dism_set_error("%s no longer holds image %u (it holds %u): the changes cannot be "
                   "committed into it.", wim, index, (unsigned) info.image_count);
    rc = -ESRCH;
    goto out;
  }
  p.scan_total = prop_num(w, (int) index, "TOTALBYTES", 10);
  int add_flags = WIMLIB_ADD_FLAG_NTFS | WIMLIB_ADD_FLAG_NORPFIX | WIMLIB_ADD_FLAG_VERBOSE;
  int wrc;
  if (flags & DISM_WIM_COMMIT_APPEND) {
    snprintf(description, sizeof description, "%s", prop(w, (int) index, "DESCRIPTION"));
    if ((rc = append_name(w, prop(w, (int) index, "NAME"), name, sizeof name)) < 0) {
      dism_set_error("%s: no free name for the appended image", wim);
      goto out;
    }
    wrc = wimlib_add_image(w, volume, name, NULL, add_flags);
    if (wrc == 0 && description[0])
      wrc = wimlib_set_image_property(w, (int) info.image_count + 1, "DESCRIPTION", description);
    *new_index = info.image_count + 1;
  } else {
    /* Same index, name, description and other XML: empty the image's tree,
     * then add the volume as its root.  wimlib rolls both back together if
     * either fails.  Unchanged file data is found by SHA-1 in the WIM's blob
     * table and not written again. */
    struct wimlib_update_command cmds[2];
    memset(cmds, 0, sizeof cmds);
    cmds[0].op = WIMLIB_UPDATE_OP_DELETE;
    cmds[0].delete_.wim_path = (char *) WIMLIB_WIM_ROOT_PATH;
    cmds[0].delete_.delete_flags = WIMLIB_DELETE_FLAG_RECURSIVE;
    cmds[1].op = WIMLIB_UPDATE_OP_ADD;
    cmds[1].add.fs_source_path = (char *) volume;
    cmds[1].add.wim_target_path = (char *) WIMLIB_WIM_ROOT_PATH;
    cmds[1].add.add_flags = add_flags;
    wrc = wimlib_update_image(w, (int) index, cmds, 2, 0);
    *new_index = index;
  }
  if (wrc) {
    rc = dism_wim_fail(wrc, "the mounted volume cannot be captured into %s", wim);
    goto out;
  }
  if ((rc = dism_wim_write(w, wim, flags)) < 0)
    goto out;
  p.from = 100;
  p.span = 0;
  relay(&p, 1, 1, false);
out:
  if (w)
    wimlib_free(w);
  return rc;
}
