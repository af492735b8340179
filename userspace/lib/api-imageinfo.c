/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* api-imageinfo.c - DismGetImageInfo: the images of a WIM (its XML, and
 * the image's own registry for what the XML lacks) or the one image of a
 * VHD/VHDX (the registry of its Windows partition), read in place
 * (imageinfo.c).  See docs/dism-api.md, "Which Windows: /Get-ImageInfo". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "disk.h"
#include "dism-internal.h"
#include "imageinfo.h"
#include "wim.h"

static __thread struct dism_image_info_extra extra;

const struct dism_image_info_extra *
dism_image_info_extra(void)
{
  return &extra;
}

/* FILETIME (100 ns since 1601, UTC) -> SYSTEMTIME; zero stays zero. */
static SYSTEMTIME
systemtime_from_filetime(uint64_t ft)
{
  SYSTEMTIME st = { 0 };
  struct tm tm;
  if (ft == 0)
    return st;
  time_t t = (time_t) (ft / 10000000ULL) - (time_t) 11644473600LL;
  if (!gmtime_r(&t, &tm))
    return st;
  st.wYear = (WORD) (tm.tm_year + 1900);
  st.wMonth = (WORD) (tm.tm_mon + 1);
  st.wDayOfWeek = (WORD) tm.tm_wday;
  st.wDay = (WORD) tm.tm_mday;
  st.wHour = (WORD) tm.tm_hour;
  st.wMinute = (WORD) tm.tm_min;
  st.wSecond = (WORD) tm.tm_sec;
  st.wMilliseconds = (WORD) (ft / 10000ULL % 1000);
  return st;
}

/* One image as the API gives it, before it is laid out. */
struct entry {
  DismImageType type;
  unsigned index;
  char name[512], description[1024];
  uint64_t size;
  DismImageBootable bootable;
  struct dism_windows win;
  bool custom;                       /* a WIM: DismWimCustomizedInfo */
  uint64_t dirs, files, created, modified;
};

static size_t
entry_text(const struct entry *e)
{
  const struct dism_windows *w = &e->win;
  size_t n = dism_utf8_wide_len(e->name) + dism_utf8_wide_len(e->description) +
             dism_utf8_wide_len(w->product_name) + dism_utf8_wide_len(w->edition) +
             dism_utf8_wide_len(w->installation_type) + dism_utf8_wide_len(w->hal) +
             dism_utf8_wide_len(w->product_type) + dism_utf8_wide_len(w->product_suite) +
             dism_utf8_wide_len(w->system_root);
  for (unsigned l = 0; l < w->language_count; l++)
    n += dism_utf8_wide_len(w->languages[l]);
  return n;
}

/* All entries in one allocation DismDelete frees: the structures, the
 * customized infos, the language arrays, then the text. */
static HRESULT
publish(const char *func, const struct entry *e, unsigned n, DismImageInfo **out, UINT *count)
{
  size_t text = 0, langs = 0;
  for (unsigned i = 0; i < n; i++) {
    text += entry_text(&e[i]);
    langs += e[i].win.language_count;
  }
  size_t head = (n * sizeof(DismImageInfo) + 7) / 8 * 8;
  size_t custom = (n * sizeof(DismWimCustomizedInfo) + 7) / 8 * 8;
  size_t lang = (langs * sizeof(DismLanguage) + 7) / 8 * 8;
  char *block = calloc(1, head + custom + lang + text * sizeof(wchar_t) + 8);
  if (!block)
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  DismImageInfo *info = (DismImageInfo *) block;
  DismWimCustomizedInfo *ci = (DismWimCustomizedInfo *) (block + head);
  DismLanguage *lg = (DismLanguage *) (block + head + custom);
  wchar_t *cursor = (wchar_t *) (block + head + custom + lang);
  for (unsigned i = 0; i < n; i++) {
    const struct dism_windows *w = &e[i].win;
    info[i].ImageType = e[i].type;
    info[i].ImageIndex = e[i].index;
    info[i].ImageName = dism_put_wide(&cursor, e[i].name);
    info[i].ImageDescription = dism_put_wide(&cursor, e[i].description);
    info[i].ImageSize = e[i].size;
    info[i].Architecture = w->arch;
    info[i].ProductName = dism_put_wide(&cursor, w->product_name);
    info[i].EditionId = dism_put_wide(&cursor, w->edition);
    info[i].InstallationType = dism_put_wide(&cursor, w->installation_type);
    info[i].Hal = dism_put_wide(&cursor, w->hal);
    info[i].ProductType = dism_put_wide(&cursor, w->product_type);
    info[i].ProductSuite = dism_put_wide(&cursor, w->product_suite);
    info[i].SystemRoot = dism_put_wide(&cursor, w->system_root);
    info[i].MajorVersion = w->major;
    info[i].MinorVersion = w->minor;
    info[i].Build = w->build;
    info[i].SpBuild = w->spbuild;
    info[i].SpLevel = w->splevel;
    info[i].Bootable = e[i].bootable;
    info[i].LanguageCount = w->language_count;
    info[i].Language = w->language_count ? lg : NULL;
    for (unsigned l = 0; l < w->language_count; l++)
      (lg++)->Value = dism_put_wide(&cursor, w->languages[l]);
    info[i].DefaultLanguageIndex = w->default_language < w->language_count ? w->default_language : 0;
    if (e[i].custom) {
      ci[i].Size = e[i].size > 0xFFFFFFFFULL ? 0xFFFFFFFFU : (UINT) e[i].size;
      ci[i].DirectoryCount = (UINT) e[i].dirs;
      ci[i].FileCount = (UINT) e[i].files;
      ci[i].CreatedTime = systemtime_from_filetime(e[i].created);
      ci[i].ModifiedTime = systemtime_from_filetime(e[i].modified);
      info[i].CustomizedInfo = &ci[i];
    }
  }
  if (dism_track_allocation(block) < 0) {
    free(block);
    return dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
  }
  *out = info;
  *count = n;
  return S_OK;
}

/* Does the XML lack a fact the registry gives?  (HAL and ProductSuite do
 * not count: Windows 10's own WIMs have none, and reading their hives for
 * nothing would cost seconds.) */
static bool
xml_lacks(const struct dism_windows *w)
{
  return !w->product_name[0] || !w->edition[0] || !w->installation_type[0] ||
         !w->product_type[0] || !w->system_root[0] || w->arch == DISM_ARCH_UNKNOWN ||
         !w->have_version || !w->language_count;
}

static HRESULT
wim_image_info(const char *func, const char *path, DismImageInfo **out, UINT *count)
{
  struct dism_wim_image *imgs = NULL;
  struct entry *e = NULL;
  struct dism_windows *reg = NULL;
  unsigned n = 0, *idx = NULL, *ids = NULL;
  HRESULT hr;
  int rc = dism_wim_list(path, &imgs, &n);
  if (rc < 0)
    return dism_api_fail_errno(func, rc);
  e = calloc(n ? n : 1, sizeof *e);
  reg = calloc(n ? n : 1, sizeof *reg);
  idx = calloc(n ? n : 1, sizeof *idx);
  ids = calloc(n ? n : 1, sizeof *ids);
  if (!e || !reg || !idx || !ids) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  unsigned lacking = 0;
  for (unsigned i = 0; i < n; i++) {
    const struct dism_wim_image *x = &imgs[i];
    e[i].type = DismImageTypeWim;
    e[i].index = x->index;
    snprintf(e[i].name, sizeof e[i].name, "%s", x->name);
    snprintf(e[i].description, sizeof e[i].description, "%s", x->description);
    e[i].size = x->total_bytes;
    e[i].bootable = x->boot ? DismImageBootableYes : DismImageBootableNo;
    e[i].custom = true;
    e[i].dirs = x->dir_count;
    e[i].files = x->file_count;
    e[i].created = x->created;
    e[i].modified = x->modified;
    e[i].win = x->win;
    if (xml_lacks(&e[i].win))
      idx[lacking++] = i;
  }
  /* the registry of the images whose XML lacks facts, the WIM opened once */
  if (lacking) {
    for (unsigned k = 0; k < lacking; k++)
      ids[k] = e[idx[k]].index;
    dism_wim_windows(path, lacking, ids, reg);
    for (unsigned k = 0; k < lacking; k++)
      dism_windows_merge(&e[idx[k]].win, &reg[k]);
  }
  for (unsigned i = 0; i < n; i++)
    if (e[i].win.warning[0])
      snprintf(extra.warnings + strlen(extra.warnings),
               sizeof extra.warnings - strlen(extra.warnings), "%s\n", e[i].win.warning);
  hr = publish(func, e, n, out, count);
out:
  free(ids);
  free(idx);
  free(reg);
  free(e);
  free(imgs);
  return hr;
}

static int
engine_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
  int r = disk_pread(ctx, buf, len, off);
  return r < 0 ? r : 0;
}

static HRESULT
vhd_image_info(const char *func, const char *path, const char *want, DismImageInfo **out,
               UINT *count)
{
  HRESULT hr;
  struct disk *d = NULL;
  struct disk_info di;
  struct entry *e = NULL;
  struct dism_image_facts *f = NULL;
  struct stat st;

  if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
    return dism_api_fail(func, E_INVALIDARG, "%s: %s", path,
                         errno == ENOENT ? "the image file does not exist" : "not a regular file");
  struct disk_open_opts opts = { .readonly = true };
  int rc = disk_open(path, &opts, &d);
  if (rc < 0) {
    dism_error_from_engine(rc);
    return dism_api_fail_last(func, rc == -ENOENT ? HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)
                                                  : HRESULT_FROM_WIN32(ERROR_FILE_CORRUPT));
  }
  if ((rc = disk_info(d, &di)) < 0) {
    hr = dism_api_fail(func, E_FAIL, "%s: %s", path, disk_last_error());
    goto out;
  }
  if (strcmp(di.format, want) != 0) {
    hr = dism_api_fail(func, HRESULT_FROM_WIN32(ERROR_FILE_CORRUPT),
                       "%s: the extension says %s but the file holds a %s image.", path, want,
                       di.format);
    goto out;
  }
  e = calloc(1, sizeof *e);
  f = calloc(1, sizeof *f);
  if (!e || !f) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  e->type = DismImageTypeVhd;
  e->index = 1;
  snprintf(e->name, sizeof e->name, "%s", name);
  snprintf(e->description, sizeof e->description, "%s %s disk", di.format[3] ? "VHDX" : "VHD",
           di.subtype);
  e->size = di.virtual_size;
  e->bootable = DismImageBootableUnknown;
  struct dism_disk_io io = { .pread = engine_pread, .ctx = d, .size = di.virtual_size,
                             .name = path };
  if ((rc = dism_disk_facts(&io, f)) < 0) {
    hr = dism_api_fail_errno(func, rc);
    goto out;
  }
  e->win = f->win;
  extra.have_counts = f->have_counts;
  extra.dir_count = f->dir_count;
  extra.file_count = f->file_count;
  extra.created = systemtime_from_filetime(f->created);
  extra.modified = systemtime_from_filetime(f->modified);
  snprintf(extra.volume, sizeof extra.volume, "%s", f->volume);
  if (f->win.warning[0])
    snprintf(extra.warnings, sizeof extra.warnings, "%s\n", f->win.warning);
  dism_log(DISM_LOG_INFO, "%s: image information read from %s", path, f->volume);
  hr = publish(func, e, 1, out, count);
out:
  free(f);
  free(e);
  disk_close(d);
  return hr;
}

DISM_API HRESULT WINAPI
DismGetImageInfo(PCWSTR ImageFilePath, DismImageInfo **ImageInfo, UINT *Count)
{
  static const char func[] = "DismGetImageInfo";
  REQUIRE_INIT(func);
  if (!ImageInfo || !Count)
    return dism_api_fail(func, E_INVALIDARG, "ImageInfo and Count must not be NULL.");
  *ImageInfo = NULL;
  *Count = 0;
  memset(&extra, 0, sizeof extra);
  HRESULT hr;
  char *path = NULL;
  if (FAILED(hr = dism_path_arg(func, ImageFilePath, "image file path", &path)))
    return hr;
  if (dism_has_ext(path, ".wim") || dism_has_ext(path, ".swm"))
    hr = wim_image_info(func, path, ImageInfo, Count);
  else if (dism_has_ext(path, ".vhdx") || dism_has_ext(path, ".vhd"))
    hr = vhd_image_info(func, path, dism_has_ext(path, ".vhdx") ? "vhdx" : "vhd", ImageInfo,
                        Count);
  else
    hr = dism_api_fail(func, E_INVALIDARG,
                       "%s: the image file must have a .wim, .vhd or .vhdx extension.", path);
  /* DISM logs what it could not read and goes on */
  for (char *line = extra.warnings, *nl; *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (!nl)
      break;
    dism_log(DISM_LOG_WARN, "%s: %.*s", func, (int) (nl - line), line);
  }
  free(path);
  return hr;
}
