/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* winreg.c - the Windows facts of an offline registry, read with hivex.
 * See winreg.h; the keys read are listed in docs/dism-api.md. */
#include <errno.h>
#include <hivex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "winreg.h"

void
dism_windows_init(struct dism_windows *w)
{
  memset(w, 0, sizeof *w);
  w->arch = DISM_ARCH_UNKNOWN;
  w->default_language = DISM_WIN_NO_DEFAULT;
}

void
dism_windows_warn(struct dism_windows *w, const char *fmt, ...)
{
  size_t used = strlen(w->warning);
  va_list ap;

  if (used >= sizeof w->warning - 1)
    return;
  if (used)
    w->warning[used++] = '\n';
  va_start(ap, fmt);
  vsnprintf(w->warning + used, sizeof w->warning - used, fmt, ap);
  va_end(ap);
}

/* The node at a backslash-separated path under `node` (hivex compares
 * names without case, as Windows does); 0 if any part is missing. */
static hive_node_h
node_at(hive_h *h, hive_node_h node, const char *path)
{
  char part[256];

  while (node && *path) {
    size_t n = strcspn(path, "\\");
    if (n == 0 || n >= sizeof part)
      return 0;
    memcpy(part, path, n);
    part[n] = '\0';
    node = hivex_node_get_child(h, node, part);
    path += n + (path[n] == '\\');
  }
  return node;
}

/* A REG_SZ / REG_EXPAND_SZ value, or the first non-empty string of a
 * REG_MULTI_SZ, copied into out; false if absent or of another type. */
static bool
get_text(hive_h *h, hive_node_h node, const char *key, char *out, size_t len)
{
  hive_value_h v;
  hive_type t;
  size_t size;
  bool ok = false;

  if (!node || !(v = hivex_node_get_value(h, node, key)) || hivex_value_type(h, v, &t, &size) < 0)
    return false;
  if (t == hive_t_REG_SZ || t == hive_t_REG_EXPAND_SZ) {
    char *s = hivex_value_string(h, v);
    if (s) {
      snprintf(out, len, "%s", s);
      ok = true;
    }
    free(s);
  } else if (t == hive_t_REG_MULTI_SZ) {
    char **list = hivex_value_multiple_strings(h, v);
    for (size_t i = 0; list && list[i]; i++) {
      if (!ok && *list[i]) {
        snprintf(out, len, "%s", list[i]);
        ok = true;
      }
      free(list[i]);
    }
    free(list);
  }
  return ok;
}

static bool
get_dword(hive_h *h, hive_node_h node, const char *key, unsigned *out)
{
  hive_value_h v;
  hive_type t;
  size_t size;

  if (!node || !(v = hivex_node_get_value(h, node, key)) || hivex_value_type(h, v, &t, &size) < 0 ||
      (t != hive_t_REG_DWORD && t != hive_t_REG_DWORD_BIG_ENDIAN) || size < 4)
    return false;
  errno = 0;
  int32_t d = hivex_value_dword(h, v);
  if (d == -1 && errno)
    return false;
  *out = (unsigned) (uint32_t) d;
  return true;
}

/* SOFTWARE\Microsoft\Windows NT\CurrentVersion. */
static void
read_software(hive_h *h, struct dism_windows *w)
{
  hive_node_h cv = node_at(h, hivex_root(h), "Microsoft\\Windows NT\\CurrentVersion");
  char text[256];

  if (!cv)
    return;
  get_text(h, cv, "ProductName", w->product_name, sizeof w->product_name);
  get_text(h, cv, "EditionID", w->edition, sizeof w->edition);
  get_text(h, cv, "InstallationType", w->installation_type, sizeof w->installation_type);
  /* "C:\Windows" -> "Windows", as the WIM XML's SYSTEMROOT has it */
  if (get_text(h, cv, "SystemRoot", text, sizeof text)) {
    const char *root = text;
    if (root[0] && root[1] == ':')
      root += 2;
    root += strspn(root, "\\");
    snprintf(w->system_root, sizeof w->system_root, "%s", root);
  }
  /* Windows 10 and later: two DWORDs; before: CurrentVersion "6.1" */
  bool major = get_dword(h, cv, "CurrentMajorVersionNumber", &w->major);
  if (major)
    get_dword(h, cv, "CurrentMinorVersionNumber", &w->minor);
  else if (get_text(h, cv, "CurrentVersion", text, sizeof text))
    major = sscanf(text, "%u.%u", &w->major, &w->minor) >= 1;
  if (get_text(h, cv, "CurrentBuildNumber", text, sizeof text) ||
      get_text(h, cv, "CurrentBuild", text, sizeof text))
    w->build = (unsigned) strtoul(text, NULL, 10);
  w->have_version = major || w->build;
  /* DISM's "ServicePack Build" is the update revision: UBR, or before
   * Windows 10 the second field of BuildLabEx ("7601.17514.amd64fre...") */
  if (!get_dword(h, cv, "UBR", &w->spbuild) &&
      get_text(h, cv, "BuildLabEx", text, sizeof text)) {
    const char *dot = strchr(text, '.');
    w->spbuild = dot ? (unsigned) strtoul(dot + 1, NULL, 10) : 0;
  }
  if (get_text(h, cv, "CSDVersion", text, sizeof text)) {
    const char *digits = text + strcspn(text, "0123456789");
    w->splevel = (unsigned) strtoul(digits, NULL, 10);
  }
}

static unsigned
arch_from_name(const char *s)
{
  static const struct { const char *name; unsigned arch; } names[] = {
    { "x86", 0 }, { "ARM", 5 }, { "IA64", 6 }, { "AMD64", 9 }, { "ARM64", 12 },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(s, names[i].name) == 0)
      return names[i].arch;
  return DISM_ARCH_UNKNOWN;
}

/* Language names of the LCIDs a UILanguages key may lack an LCID value for. */
static const char *
lcid_name(unsigned lcid)
{
  static const struct { unsigned lcid; const char *name; } names[] = {
    { 0x0409, "en-US" }, { 0x0809, "en-GB" }, { 0x0407, "de-DE" }, { 0x040c, "fr-FR" },
    { 0x0c0a, "es-ES" }, { 0x0410, "it-IT" }, { 0x0411, "ja-JP" }, { 0x0412, "ko-KR" },
    { 0x0416, "pt-BR" }, { 0x0816, "pt-PT" }, { 0x0419, "ru-RU" }, { 0x0804, "zh-CN" },
    { 0x0404, "zh-TW" }, { 0x0413, "nl-NL" }, { 0x0415, "pl-PL" }, { 0x041f, "tr-TR" },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].lcid == lcid)
      return names[i].name;
  return NULL;
}

/* Control\MUI\UILanguages (one subkey a language, LCID value) and the
 * default: Control\Nls\Language InstallLanguage, else Default (hex LCIDs). */
static void
read_languages(hive_h *h, hive_node_h control, struct dism_windows *w)
{
  unsigned lcids[DISM_WIN_LANG_MAX] = { 0 };
  hive_node_h *kids = NULL;
  hive_node_h ui = node_at(h, control, "MUI\\UILanguages");
  hive_node_h nls = node_at(h, control, "Nls\\Language");
  char text[64];
  unsigned want = 0;

  if (ui && (kids = hivex_node_children(h, ui)) != NULL) {
    for (size_t i = 0; kids[i] && w->language_count < DISM_WIN_LANG_MAX; i++) {
      char *name = hivex_node_name(h, kids[i]);
      if (name && *name && strlen(name) < sizeof w->languages[0]) {
        snprintf(w->languages[w->language_count], sizeof w->languages[0], "%s", name);
        get_dword(h, kids[i], "LCID", &lcids[w->language_count]);
        w->language_count++;
      }
      free(name);
    }
  }
  free(kids);
  if (get_text(h, nls, "InstallLanguage", text, sizeof text) ||
      get_text(h, nls, "Default", text, sizeof text))
    want = (unsigned) strtoul(text, NULL, 16);
  if (!want)
    return;
  const char *known = lcid_name(want);
  for (unsigned i = 0; i < w->language_count; i++)
    if (lcids[i] == want || (known && strcasecmp(w->languages[i], known) == 0)) {
      w->default_language = i;
      return;
    }
  if (known && w->language_count < DISM_WIN_LANG_MAX) {
    snprintf(w->languages[w->language_count], sizeof w->languages[0], "%s", known);
    w->default_language = w->language_count++;
  }
}

/* SYSTEM: the current control set (Select\Current), then ProductOptions,
 * the processor architecture, the HAL and the languages. */
static void
read_system(hive_h *h, struct dism_windows *w)
{
  hive_node_h root = hivex_root(h);
  unsigned current = 1;
  char path[64], text[64];

  if (!get_dword(h, node_at(h, root, "Select"), "Current", &current))
    get_dword(h, node_at(h, root, "Select"), "Default", &current);
  snprintf(path, sizeof path, "ControlSet%03u\\Control", current % 1000);
  hive_node_h control = node_at(h, root, path);
  if (!control)
    return;
  hive_node_h options = node_at(h, control, "ProductOptions");
  get_text(h, options, "ProductType", w->product_type, sizeof w->product_type);
  get_text(h, options, "ProductSuite", w->product_suite, sizeof w->product_suite);
  if (get_text(h, node_at(h, control, "Session Manager\\Environment"), "PROCESSOR_ARCHITECTURE",
               text, sizeof text))
    w->arch = arch_from_name(text);
  /* the HAL is recorded (up to Windows 7 at least) as the hardware id of
   * the root-enumerated ACPI_HAL device */
  snprintf(path, sizeof path, "ControlSet%03u\\Enum\\Root\\ACPI_HAL\\0000", current % 1000);
  get_text(h, node_at(h, root, path), "HardwareID", w->hal, sizeof w->hal);
  read_languages(h, control, w);
}

static void
read_hive(const char *file, const char *what, void (*reader)(hive_h *, struct dism_windows *),
          struct dism_windows *w)
{
  hive_h *h = hivex_open(file, 0);

  if (!h) {
    int e = errno;
    /* hivex says EINVAL for a bad header, checksum or size, ENOTSUP for
     * an unknown version: both mean a damaged file here */
    dism_windows_warn(w, "the registry hive %s cannot be read: %s (%s)", what,
                      e == EINVAL || e == ENOTSUP || !e ? "it is damaged or not a registry hive"
                                                        : "it could not be opened",
                      e ? strerror(e) : "no error code");
    return;
  }
  if (!hivex_root(h))
    dism_windows_warn(w, "the registry hive %s has no root key: %s", what,
                      errno ? strerror(errno) : "damaged");
  else
    reader(h, w);
  w->found = true;
  hivex_close(h);
}

int
dism_winreg_read(const char *software, const char *what_software, const char *system,
                 const char *what_system, struct dism_windows *w)
{
  if (software)
    read_hive(software, what_software, read_software, w);
  if (system)
    read_hive(system, what_system, read_system, w);
  return 0;
}

/* bytes -> an anonymous file hivex can open by name */
static int
memfd_of(const void *data, size_t len)
{
  int fd = memfd_create("dism-hive", MFD_CLOEXEC);
  const char *p = data;

  if (fd < 0)
    return -errno;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    p += n;
    len -= (size_t) n;
  }
  return fd;
}

int
dism_winreg_read_mem(const void *software, size_t software_len, const char *what_software,
                     const void *system, size_t system_len, const char *what_system,
                     struct dism_windows *w)
{
  int sw = -1, sy = -1, r = 0;
  char p1[40], p2[40];

  if (software && (sw = memfd_of(software, software_len)) < 0) {
    r = sw;
    goto out;
  }
  if (system && (sy = memfd_of(system, system_len)) < 0) {
    r = sy;
    goto out;
  }
  snprintf(p1, sizeof p1, "/proc/self/fd/%d", sw);
  snprintf(p2, sizeof p2, "/proc/self/fd/%d", sy);
  r = dism_winreg_read(sw >= 0 ? p1 : NULL, what_software, sy >= 0 ? p2 : NULL, what_system, w);
out:
  if (sw >= 0)
    close(sw);
  if (sy >= 0)
    close(sy);
  return r;
}

#define FILL(field) do { if (!to->field[0]) memcpy(to->field, from->field, sizeof to->field); } while (0)

void
dism_windows_merge(struct dism_windows *to, const struct dism_windows *from)
{
  FILL(product_name);
  FILL(edition);
  FILL(installation_type);
  FILL(product_type);
  FILL(product_suite);
  FILL(hal);
  FILL(system_root);
  if (to->arch == DISM_ARCH_UNKNOWN)
    to->arch = from->arch;
  if (!to->have_version && from->have_version) {
    to->have_version = true;
    to->major = from->major;
    to->minor = from->minor;
    to->build = from->build;
    to->spbuild = from->spbuild;
    to->splevel = from->splevel;
  }
  if (!to->language_count) {
    memcpy(to->languages, from->languages, sizeof to->languages);
    to->language_count = from->language_count;
    to->default_language = from->default_language;
  }
  to->found = to->found || from->found;
  if (from->warning[0])
    dism_windows_warn(to, "%s", from->warning);
}
