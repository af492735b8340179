/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism.c - the `dism` command: DISM's command-line syntax over libdism.
 *
 *   dism /Mount-Image /ImageFile:<f> {/Index:<n>|/Name:<s>} /MountDir:<d> [/ReadOnly] ...
 *
 * Options are case-insensitive and take values as /Option:value.  Output
 * follows dism.exe: a banner, a progress bar on a terminal (plain lines
 * otherwise), "The operation completed successfully." or "Error: 0x..." and
 * the message.  Exit status: 0, or the low 8 bits of the HRESULT (1 when
 * those are 0).  See dism(8). */
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <wchar.h>

#include "DismApi.h"
#include "args.h"
#include "dism-internal.h"
#include "path-size.h"

#define DISM_TOOL_VERSION "10.0.0.1 (dism for Linux 1.0)"

static bool json_output, quiet;
static HANDLE cancel_event;
static char log_path_shown[DISM_PATH_MAX] = "/var/log/dism/dism.log";

/* ---- output -------------------------------------------------------------- */
static void
banner(void)
{
  if (json_output || quiet)
    return;
  printf("\nDeployment Image Servicing and Management tool\nVersion: %s\n\n", DISM_TOOL_VERSION);
}

struct progress_state {
  bool tty;
  int last_tenths;
};

/* dism.exe's bar: 58 columns, the percentage in the middle. */
static void CALLBACK
progress_cb(UINT current, UINT total, PVOID user)
{
  struct progress_state *p = user;
  if (quiet || json_output || total == 0)
    return;
  int tenths = (int) ((uint64_t) current * 1000 / total);
  if (tenths > 1000)
    tenths = 1000;
  if (tenths == p->last_tenths)
    return;
  p->last_tenths = tenths;
  if (!p->tty) {
    printf("Progress: %d.%d%%\n", tenths / 10, tenths % 10);
    fflush(stdout);
    return;
  }
  enum { WIDTH = 58 };
  char bar[WIDTH + 1], pct[16];
  int filled = tenths * WIDTH / 1000;
  for (int i = 0; i < WIDTH; i++)
    bar[i] = i < filled ? '=' : ' ';
  int len = snprintf(pct, sizeof pct, "%d.%d%%", tenths / 10, tenths % 10);
  memcpy(bar + (WIDTH - len) / 2, pct, (size_t) len);
  bar[WIDTH] = '\0';
  printf("\r[%s]", bar);
  if (tenths == 1000)
    printf("\n");
  fflush(stdout);
}

static int
exit_code(HRESULT hr)
{
  int low = (int) ((uint32_t) hr & 0xFF);
  return low ? low : 1;
}

static int
report_error(HRESULT hr)
{
  DismString *msg = NULL;
  FILE *out = json_output ? stderr : stdout;
  fprintf(out, "\nError: 0x%08x\n\n", (unsigned) hr);
  if (DismGetLastErrorMessage(&msg) == S_OK && msg && msg->Value[0])
    fprintf(out, "%ls\n", msg->Value);
  DismDelete(msg);
  fprintf(out, "\nThe DISM log file can be found at %s\n", log_path_shown);
  return exit_code(hr);
}

static int
report_usage_error(const char *fmt, const char *arg)
{
  FILE *out = json_output ? stderr : stdout;
  fprintf(out, "\nError: 0x%08x\n\n", (unsigned) E_INVALIDARG);
  fprintf(out, fmt, arg);
  fprintf(out, "\nFor more information, refer to the help by running dism /?.\n");
  return exit_code(E_INVALIDARG);
}

static void
success(void)
{
  if (!json_output && !quiet)
    printf("The operation completed successfully.\n");
}

/* JSON string from wide text. */
static void
json_wstr(PCWSTR s)
{
  putchar('"');
  for (; s && *s; s++) {
    if (*s == L'"' || *s == L'\\')
      printf("\\%lc", (wint_t) *s);
    else if ((unsigned) *s < 0x20)
      printf("\\u%04x", (unsigned) *s);
    else
      printf("%lc", (wint_t) *s);
  }
  putchar('"');
}

/* ---- help ---------------------------------------------------------------- */
static void
help(enum dism_cli_command cmd)
{
  switch (cmd) {
  case CMD_MOUNT:
    printf("/Mount-Image /ImageFile:<path> {/Index:<n> | /Name:<name>} /MountDir:<dir>\n"
           "            [/ReadOnly] [/Optimize] [/CheckIntegrity]\n\n"
           "  Mounts an image (.wim, .vhd, .vhdx) at an empty folder.  A VHD/VHDX has one\n"
           "  image: /Index:1.  /ReadOnly mounts can't be committed.  WIM: the image is\n"
           "  applied to an NTFS volume file in the scratch directory; /CheckIntegrity\n"
           "  verifies the WIM's integrity table first, /Optimize makes the volume without\n"
           "  room for servicing.  Both are ignored for VHD/VHDX.\n"
           "  Legacy: /Mount-Wim /WimFile:<path>.\n");
    break;
  case CMD_UNMOUNT:
    printf("/Unmount-Image /MountDir:<dir> {/Commit | /Discard} [/CheckIntegrity] [/Append]\n\n"
           "  Unmounts the image; /Commit saves the changes into the image file first,\n"
           "  /Discard throws them away.  Fails with 0xc1420117 (nothing changed) while\n"
           "  files are open in the folder.  WIM: /Append saves as a new last image,\n"
           "  /CheckIntegrity writes an integrity table.  Legacy: /Unmount-Wim.\n");
    break;
  case CMD_COMMIT:
    printf("/Commit-Image /MountDir:<dir> [/CheckIntegrity] [/Append]\n\n"
           "  Saves the changes into the image file; the image stays mounted (a WIM\n"
           "  mount is briefly unmounted meanwhile: open files make it fail).\n");
    break;
  case CMD_REMOUNT:
    printf("/Remount-Image /MountDir:<dir>\n\n"
           "  Brings back a mount whose status is Needs Remount (e.g. after a reboot),\n"
           "  with its changes.\n");
    break;
  case CMD_GET_MOUNTED:
    printf("/Get-MountedImageInfo [/Format:{List|Json}]\n\n"
           "  Lists the mounted images: folder, image file, index, read/write, status\n"
           "  (Ok, Needs Remount, Invalid).  Legacy: /Get-MountedWimInfo.\n");
    break;
  case CMD_GET_IMAGE_INFO:
    printf("/Get-ImageInfo /ImageFile:<path> [/Index:<n> | /Name:<name>] [/Format:{List|Json}]\n\n"
           "  Describes the images in a .wim/.vhd/.vhdx file (index, name, description,\n"
           "  size); with /Index or /Name a WIM image's details.\n");
    break;
  case CMD_CLEANUP:
    printf("/Cleanup-Mountpoints\n\n"
           "  Removes what Invalid mounts left behind (server, device, overlay, record).\n"
           "  Healthy and remountable mounts are left alone.  Legacy: /Cleanup-Wim.\n");
    break;
  default:
    printf("DISM.exe [dism_options] {Imaging_command} [<Imaging_arguments>]\n\n"
           "IMAGE COMMANDS:\n"
           "  /Mount-Image            - Mounts an image from a WIM, VHD or VHDX file.\n"
           "  /Unmount-Image          - Unmounts a mounted image (/Commit or /Discard).\n"
           "  /Commit-Image           - Saves changes to a mounted image.\n"
           "  /Remount-Image          - Recovers an orphaned (Needs Remount) mount.\n"
           "  /Get-MountedImageInfo   - Displays information about mounted images.\n"
           "  /Get-ImageInfo          - Displays information about images in a file.\n"
           "  /Cleanup-Mountpoints    - Deletes resources of corrupted (Invalid) mounts.\n\n"
           "DISM OPTIONS:\n"
           "  /LogPath:<path>         - Log file (default /var/log/dism/dism.log).\n"
           "  /LogLevel:<n>           - 1 errors, 2 +warnings, 3 +information (default),\n"
           "                            4 +debug.\n"
           "  /ScratchDir:<dir>       - Where overlays of read/write mounts are kept\n"
           "                            (default /var/lib/dism/scratch).\n"
           "  /Format:{List|Json}     - Output of the info commands.\n"
           "  /Quiet                  - No banner, progress or success message.\n\n"
           "For help on a command, type the command followed by /?, e.g.\n"
           "  dism /Mount-Image /?\n");
  }
}

/* ---- arguments ------------------------------------------------------------ */
static int
parse_args(int argc, char **argv, struct dism_cli_options *o)
{
  struct dism_cli_error err;
  if (dism_cli_parse(argc, argv, o, &err) < 0)
    return report_usage_error(err.fmt, err.arg);
  return 0;
}

/* PCWSTR from a command-line string (the locale is UTF-8). */
static wchar_t *
wide(const char *s)
{
  if (!s)
    return NULL;
  size_t n = mbstowcs(NULL, s, 0);
  if (n == (size_t) -1)
    return NULL;
  wchar_t *w = calloc(n + 1, sizeof *w);
  if (w)
    mbstowcs(w, s, n + 1);
  return w;
}

static void
on_interrupt(int sig)
{
  (void) sig;
  if (cancel_event) {
    uint64_t one = 1;
    ssize_t w = write(DISM_FD_FROM_HANDLE(cancel_event), &one, sizeof one);
    (void) w;
  }
}

static const char *
status_text(DismMountStatus s)
{
  return s == DismMountStatusOk ? "Ok" : s == DismMountStatusNeedsRemount ? (json_output ? "NeedsRemount" : "Needs Remount")
                                                                           : "Invalid";
}

/* ---- commands ------------------------------------------------------------- */
static int
cmd_mount(const struct dism_cli_options *o)
{
  if (!o->image_file || !o->mount_dir)
    return report_usage_error("%s needs /ImageFile:<path> and /MountDir:<dir>.\n", o->cmd_name);
  if (!o->index == !o->name)
    return report_usage_error("%s needs exactly one of /Index:<n> and /Name:<name>.\n", o->cmd_name);
  char *end = NULL;
  unsigned long index = o->index ? strtoul(o->index, &end, 10) : 0;
  if (o->index && (*end || index == 0 || index > 0xFFFFFFFFUL))
    return report_usage_error("The index \"%s\" is not a number from 1 on.\n", o->index);
  wchar_t *image = wide(o->image_file), *dir = wide(o->mount_dir), *name = wide(o->name);
  DWORD flags = (o->read_only ? DISM_MOUNT_READONLY : 0) | (o->optimize ? DISM_MOUNT_OPTIMIZE : 0) |
                (o->check_integrity ? DISM_MOUNT_CHECK_INTEGRITY : 0);
  struct progress_state ps = { isatty(1), -1 };
  if (!quiet)
    printf("Mounting image\n");
  HRESULT hr = DismMountImage(image, dir, (UINT) index, name,
                              o->name ? DismImageName : DismImageIndex, flags, cancel_event,
                              progress_cb, &ps);
  int rc = 0;
  if (FAILED(hr)) {
    if (ps.tty && ps.last_tenths >= 0 && ps.last_tenths < 1000)
      printf("\n");
    rc = report_error(hr);
  } else {
    /* Which partition was mounted: the attach layer's reason, from the record. */
    char canon[DISM_PATH_MAX];
    struct dism_record *r = calloc(1, sizeof *r);
    if (!quiet && r && dism_canonical(o->mount_dir, canon, sizeof canon) == 0 &&
        dism_record_find_by_dir(canon, r) == 0 && r->have_attach)
      printf("Mounted %s (%s) at %s\n", r->attach.reason, r->attach.fs_dev, r->mount_dir);
    free(r);
    success();
  }
  free(image);
  free(dir);
  free(name);
  return rc;
}

static int
cmd_unmount(const struct dism_cli_options *o)
{
  if (!o->mount_dir)
    return report_usage_error("%s needs /MountDir:<dir>.\n", o->cmd_name);
  if (o->commit == o->discard)
    return report_usage_error("%s needs exactly one of /Commit and /Discard.\n", o->cmd_name);
  wchar_t *dir = wide(o->mount_dir);
  DWORD flags = (o->discard ? DISM_DISCARD_IMAGE : DISM_COMMIT_IMAGE) |
                (o->check_integrity ? DISM_COMMIT_GENERATE_INTEGRITY : 0) |
                (o->append ? DISM_COMMIT_APPEND : 0);
  struct progress_state ps = { isatty(1), -1 };
  if (!quiet)
    printf("%s\n", o->commit ? "Saving image and unmounting" : "Unmounting image");
  HRESULT hr = DismUnmountImage(dir, flags, cancel_event, progress_cb, &ps);
  free(dir);
  if (FAILED(hr)) {
    if (ps.tty && ps.last_tenths >= 0 && ps.last_tenths < 1000)
      printf("\n");
    return report_error(hr);
  }
  success();
  return 0;
}

static int
cmd_commit(const struct dism_cli_options *o)
{
  if (!o->mount_dir)
    return report_usage_error("%s needs /MountDir:<dir>.\n", o->cmd_name);
  wchar_t *dir = wide(o->mount_dir);
  DismSession session = DISM_SESSION_DEFAULT;
  struct progress_state ps = { isatty(1), -1 };
  HRESULT hr = DismOpenSession(dir, NULL, NULL, &session);
  free(dir);
  if (FAILED(hr))
    return report_error(hr);
  if (!quiet)
    printf("Saving image\n");
  DWORD flags = (o->check_integrity ? DISM_COMMIT_GENERATE_INTEGRITY : 0) |
                (o->append ? DISM_COMMIT_APPEND : 0);
  hr = DismCommitImage(session, flags, cancel_event, progress_cb, &ps);
  int rc = FAILED(hr) ? report_error(hr) : 0;
  DismCloseSession(session);
  if (!rc)
    success();
  return rc;
}

static int
cmd_remount(const struct dism_cli_options *o)
{
  if (!o->mount_dir)
    return report_usage_error("%s needs /MountDir:<dir>.\n", o->cmd_name);
  wchar_t *dir = wide(o->mount_dir);
  if (!quiet)
    printf("Remounting image\n");
  HRESULT hr = DismRemountImage(dir);
  free(dir);
  if (FAILED(hr))
    return report_error(hr);
  success();
  return 0;
}

static int
cmd_get_mounted(void)
{
  DismMountedImageInfo *info = NULL;
  UINT count = 0;
  HRESULT hr = DismGetMountedImageInfo(&info, &count);
  if (FAILED(hr))
    return report_error(hr);
  if (json_output) {
    printf("{\"mounted_images\": [");
    for (UINT i = 0; i < count; i++) {
      printf("%s\n  {\"mount_dir\": ", i ? "," : "");
      json_wstr(info[i].MountPath);
      printf(", \"image_file\": ");
      json_wstr(info[i].ImageFilePath);
      printf(", \"image_index\": %u, \"read_write\": %s, \"status\": \"%s\"}",
             (unsigned) info[i].ImageIndex, info[i].MountMode == DismReadWrite ? "true" : "false",
             status_text(info[i].MountStatus));
    }
    printf("%s]}\n", count ? "\n" : "");
  } else {
    printf("Mounted images:\n\n");
    if (count == 0)
      printf("No mounted images found.\n\n");
    for (UINT i = 0; i < count; i++)
      printf("Mount Dir : %ls\nImage File : %ls\nImage Index : %u\nMounted Read/Write : %s\n"
             "Status : %s\n\n",
             info[i].MountPath, info[i].ImageFilePath, (unsigned) info[i].ImageIndex,
             info[i].MountMode == DismReadWrite ? "Yes" : "No", status_text(info[i].MountStatus));
  }
  DismDelete(info);
  success();
  return 0;
}

static void
print_size(UINT64 bytes)
{
  char digits[32], out[48];
  int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long) bytes), o = 0;
  for (int i = 0; i < n; i++) {
    if (i && (n - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
  printf("Size : %s bytes\n", out);
}

static const char *
arch_text(UINT arch)
{
  switch (arch) {
  case 0: return "x86";
  case 5: return "arm";
  case 6: return "ia64";
  case 9: return "x64";
  case 12: return "arm64";
  default: return "<undefined>";
  }
}

static void
print_time(const char *label, const SYSTEMTIME *t)
{
  if (!t->wYear) {
    printf("%s : <undefined>\n", label);
    return;
  }
  unsigned h12 = t->wHour % 12 ? t->wHour % 12 : 12;
  printf("%s : %u/%u/%u - %u:%02u:%02u %s\n", label, t->wMonth, t->wDay, t->wYear, h12,
         t->wMinute, t->wSecond, t->wHour < 12 ? "AM" : "PM");
}

static const wchar_t *
or_undefined(const wchar_t *s)
{
  return s && *s ? s : L"<undefined>";
}

/* Counts and times: a WIM's CustomizedInfo, a VHD's volume as read. */
struct counts {
  bool have;
  unsigned long long dirs, files;
  SYSTEMTIME created, modified;
};

static struct counts
counts_of(const DismImageInfo *i, const struct dism_image_info_extra *x)
{
  const DismWimCustomizedInfo *c = i->CustomizedInfo;
  struct counts n = { 0 };
  if (c)
    n = (struct counts) { true, c->DirectoryCount, c->FileCount, c->CreatedTime, c->ModifiedTime };
  else if (x->have_counts)
    n = (struct counts) { true, x->dir_count, x->file_count, x->created, x->modified };
  return n;
}

/* /Get-ImageInfo /Index or /Name of a WIM, or a VHD: the details DISM shows. */
static void
print_details(const DismImageInfo *i, const struct dism_image_info_extra *x)
{
  struct counts n = counts_of(i, x);
  printf("WIM Bootable : %s\nArchitecture : %s\nHal : %ls\n",
         i->Bootable == DismImageBootableYes ? "Yes" :
         i->Bootable == DismImageBootableNo ? "No" : "<undefined>", arch_text(i->Architecture),
         or_undefined(i->Hal));
  if (i->MajorVersion || i->Build)
    printf("Version : %u.%u.%u\nServicePack Build : %u\nServicePack Level : %u\n",
           i->MajorVersion, i->MinorVersion, i->Build, i->SpBuild, i->SpLevel);
  else
    printf("Version : <undefined>\n");
  printf("Edition : %ls\nInstallation : %ls\nProductType : %ls\nProductSuite : %ls\n"
         "System Root : %ls\n", or_undefined(i->EditionId), or_undefined(i->InstallationType),
         or_undefined(i->ProductType), or_undefined(i->ProductSuite),
         or_undefined(i->SystemRoot));
  if (n.have) {
    printf("Directories : %llu\nFiles : %llu\n", n.dirs, n.files);
    print_time("Created", &n.created);
    print_time("Modified", &n.modified);
  }
  printf("Languages :%s\n", i->LanguageCount ? "" : " <undefined>");
  for (UINT l = 0; l < i->LanguageCount; l++)
    printf("        %ls%s\n", i->Language[l].Value,
           l == i->DefaultLanguageIndex ? " (Default)" : "");
}

static void
json_time(const char *key, const SYSTEMTIME *t)
{
  if (t->wYear)
    printf(", \"%s\": \"%04u-%02u-%02uT%02u:%02u:%02uZ\"", key, t->wYear, t->wMonth, t->wDay,
           t->wHour, t->wMinute, t->wSecond);
  else
    printf(", \"%s\": null", key);
}

/* The same fields as print_details, empty text as null. */
static void
json_details(const DismImageInfo *i, const struct dism_image_info_extra *x)
{
  static const struct { const char *key; size_t off; } text[] = {
    { "product_name", offsetof(DismImageInfo, ProductName) },
    { "edition", offsetof(DismImageInfo, EditionId) },
    { "installation", offsetof(DismImageInfo, InstallationType) },
    { "hal", offsetof(DismImageInfo, Hal) },
    { "product_type", offsetof(DismImageInfo, ProductType) },
    { "product_suite", offsetof(DismImageInfo, ProductSuite) },
    { "system_root", offsetof(DismImageInfo, SystemRoot) },
  };
  struct counts n = counts_of(i, x);
  printf(", \"bootable\": %s, \"architecture\": \"%s\"",
         i->Bootable == DismImageBootableYes ? "true" :
         i->Bootable == DismImageBootableNo ? "false" : "null", arch_text(i->Architecture));
  for (size_t k = 0; k < sizeof text / sizeof text[0]; k++) {
    PCWSTR v;
    memcpy(&v, (const char *) i + text[k].off, sizeof v);
    printf(", \"%s\": ", text[k].key);
    if (v && *v)
      json_wstr(v);
    else
      printf("null");
  }
  if (i->MajorVersion || i->Build)
    printf(", \"version\": \"%u.%u.%u\", \"full_version\": \"%u.%u.%u.%u\"",
           i->MajorVersion, i->MinorVersion, i->Build, i->MajorVersion, i->MinorVersion,
           i->Build, i->SpBuild);
  else
    printf(", \"version\": null, \"full_version\": null");
  printf(", \"servicepack_build\": %u, \"servicepack_level\": %u", i->SpBuild, i->SpLevel);
  if (n.have) {
    printf(", \"directories\": %llu, \"files\": %llu", n.dirs, n.files);
    json_time("created", &n.created);
    json_time("modified", &n.modified);
  }
  printf(", \"languages\": [");
  for (UINT l = 0; l < i->LanguageCount; l++) {
    printf("%s", l ? ", " : "");
    json_wstr(i->Language[l].Value);
  }
  printf("], \"default_language\": ");
  if (i->LanguageCount)
    json_wstr(i->Language[i->DefaultLanguageIndex].Value);
  else
    printf("null");
}

/* Each warning line of the last DismGetImageInfo (a hive not read). */
static void
print_warnings(const char *w, bool json)
{
  bool first = true;
  if (json)
    printf(", \"warnings\": [");
  for (const char *nl; *w && (nl = strchr(w, '\n')) != NULL; w = nl + 1) {
    if (json) {
      char *line = strndup(w, (size_t) (nl - w));
      wchar_t *wl = line ? wide(line) : NULL;
      printf("%s", first ? "" : ", ");
      json_wstr(wl ? wl : L"");
      free(wl);
      free(line);
    } else {
      printf("Warning: %.*s\n", (int) (nl - w), w);
    }
    first = false;
  }
  if (json)
    printf("]");
  else if (!first)
    printf("\n");
}

static int
cmd_get_image_info(const struct dism_cli_options *o)
{
  if (!o->image_file)
    return report_usage_error("%s needs /ImageFile:<path>.\n", o->cmd_name);
  if (o->index && o->name)
    return report_usage_error("%s takes /Index or /Name, not both.\n", o->cmd_name);
  wchar_t *image = wide(o->image_file), *name = wide(o->name);
  DismImageInfo *info = NULL;
  UINT count = 0;
  HRESULT hr = DismGetImageInfo(image, &info, &count);
  int rc = 0;
  if (FAILED(hr)) {
    rc = report_error(hr);
    goto out;
  }
  UINT first = 0, last = count;
  if (o->index) {
    char *end;
    unsigned long index = strtoul(o->index, &end, 10);
    if (*end || index == 0 || index > count) {
      FILE *err = json_output ? stderr : stdout;
      fprintf(err, "\nError: 0x%08x\n\nThe image index %s is not valid: %s has %u image(s).\n",
              (unsigned) DISMAPI_E_INVALID_IMAGE_INDEX, o->index, o->image_file, (unsigned) count);
      rc = exit_code(DISMAPI_E_INVALID_IMAGE_INDEX);
      goto out;
    }
    first = (UINT) index - 1;
    last = first + 1;
  } else if (name) {
    for (first = 0; first < count && wcscmp(info[first].ImageName, name) != 0; first++)
      ;
    if (first == count) {
      FILE *err = json_output ? stderr : stdout;
      fprintf(err, "\nError: 0x%08x\n\nNo image named \"%s\" in %s.\n",
              (unsigned) DISMAPI_E_INVALID_IMAGE_NAME, o->name, o->image_file);
      rc = exit_code(DISMAPI_E_INVALID_IMAGE_NAME);
      goto out;
    }
    last = first + 1;
  }
  const struct dism_image_info_extra *x = dism_image_info_extra();
  if (json_output) {
    printf("{\"image_file\": ");
    json_wstr(image);
    printf(", \"images\": [");
    for (UINT i = first; i < last; i++) {
      printf("%s\n  {\"index\": %u, \"type\": \"%s\", \"name\": ", i > first ? "," : "",
             (unsigned) info[i].ImageIndex, info[i].ImageType == DismImageTypeVhd ? "vhd" : "wim");
      json_wstr(info[i].ImageName);
      printf(", \"description\": ");
      json_wstr(info[i].ImageDescription);
      printf(", \"size\": %llu", (unsigned long long) info[i].ImageSize);
      json_details(&info[i], x);
      printf("}");
    }
    printf("\n]");
    print_warnings(x->warnings, true);
    printf("}\n");
  } else {
    print_warnings(x->warnings, false);
    printf("Details for image : %s\n\n", o->image_file);
    for (UINT i = first; i < last; i++) {
      printf("Index : %u\nName : %ls\nDescription : %ls\n", (unsigned) info[i].ImageIndex,
             info[i].ImageName, info[i].ImageDescription);
      print_size(info[i].ImageSize);
      if (info[i].ImageType == DismImageTypeVhd || o->index || name)
        print_details(&info[i], x);
      printf("\n");
    }
    success();
  }
out:
  DismDelete(info);
  free(image);
  free(name);
  return rc;
}

static int
cmd_cleanup(void)
{
  if (!quiet)
    printf("Scanning drive for mount points to clean up...\n");
  HRESULT hr = DismCleanupMountpoints();
  if (FAILED(hr))
    return report_error(hr);
  success();
  return 0;
}

int
main(int argc, char **argv)
{
  /* Wide strings go through the locale: make sure it is a UTF-8 one. */
  if (!setlocale(LC_ALL, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
    setlocale(LC_CTYPE, "C.UTF-8");
  struct dism_cli_options o = { 0 };
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  if (o.format) {
    if (!strcasecmp(o.format, "json"))
      json_output = true;
    else if (strcasecmp(o.format, "list") != 0 && strcasecmp(o.format, "table") != 0)
      return report_usage_error("/Format:%s is not List or Json.\n", o.format);
  }
  quiet = o.quiet;
  if (o.help || o.cmd == CMD_NONE) {
    banner();
    help(o.cmd);
    return o.help ? 0 : exit_code(E_INVALIDARG);
  }
  banner();

  DismLogLevel level = DismLogErrorsWarningsInfo;
  if (o.log_level) {
    char *end;
    long l = strtol(o.log_level, &end, 10);
    if (*end || l < 1 || l > 4)
      return report_usage_error("/LogLevel:%s is not 1, 2, 3 or 4.\n", o.log_level);
    level = (DismLogLevel) (l - 1);
  }
  if (o.log_path) {
    char cwd[2048];
    if (o.log_path[0] != '/' && getcwd(cwd, sizeof cwd))
      snprintf(log_path_shown, sizeof log_path_shown, "%s/%s", cwd, o.log_path);
    else
      snprintf(log_path_shown, sizeof log_path_shown, "%s", o.log_path);
  }
  wchar_t *log_w = wide(o.log_path), *scratch_w = wide(o.scratch_dir);
  HRESULT hr = DismInitialize(level, log_w, scratch_w);
  free(log_w);
  free(scratch_w);
  if (FAILED(hr))
    return report_error(hr);

  cancel_event = DismCreateCancelEvent();
  struct sigaction sa = { .sa_handler = on_interrupt };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  switch (o.cmd) {
  case CMD_MOUNT: rc = cmd_mount(&o); break;
  case CMD_UNMOUNT: rc = cmd_unmount(&o); break;
  case CMD_COMMIT: rc = cmd_commit(&o); break;
  case CMD_REMOUNT: rc = cmd_remount(&o); break;
  case CMD_GET_MOUNTED: rc = cmd_get_mounted(); break;
  case CMD_GET_IMAGE_INFO: rc = cmd_get_image_info(&o); break;
  case CMD_CLEANUP: rc = cmd_cleanup(); break;
  default: rc = 1;
  }
  DismShutdown();
  if (cancel_event)
    DismCloseCancelEvent(cancel_event);
  return rc;
}
