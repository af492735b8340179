/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dismtab.c - the dismtab(5) parser (see dismtab.h).
 *
 * One line, one entry: IMAGE, INDEX or name=NAME, MOUNTDIR and optional
 * comma-separated OPTIONS, separated by spaces or tabs.  As in fstab, a space
 * inside a field is written \040 (any byte as \NNN, three octal digits);
 * '#' at the start of a field starts a comment; blank lines are skipped; a
 * CR before the newline is ignored (files edited on Windows).
 *
 * Every line is checked completely before it becomes an entry (paths
 * absolute and normalised, DISM's extensions, index rules, options and their
 * conflicts, a mount folder used twice, an image mounted read/write twice),
 * so what the generator turns into units is already known to make sense.
 * The first problem of a line is reported and the line skipped; the other
 * lines go on.  Only libc is used and nothing is printed: this file is also
 * the unit a fuzzer links. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dismtab.h"

#define MAX_FIELDS 4
#define QUOTE_MAX 120 /* bytes of a bad field quoted in a message */

struct parser {
  struct dismtab *tab;
  const char *file;
  unsigned line;
  size_t cap_entries, cap_errors;
  bool oom;
  bool line_failed; /* this line already has its error */
};

struct field {
  const char *s;
  size_t len;
};

/* ---- errors ------------------------------------------------------------------ */
static void __attribute__((format(printf, 2, 3)))
line_error(struct parser *p, const char *fmt, ...)
{
  if (p->oom || p->line_failed)
    return;
  p->line_failed = true;
  struct dismtab *t = p->tab;
  if (t->n_errors == p->cap_errors) {
    size_t cap = p->cap_errors ? p->cap_errors * 2 : 8;
    struct dismtab_error *grown = realloc(t->errors, cap * sizeof *grown);
    if (!grown) {
      p->oom = true;
      return;
    }
    t->errors = grown;
    p->cap_errors = cap;
  }
  struct dismtab_error *e = &t->errors[t->n_errors];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  e->message = n >= 0 ? malloc((size_t) n + 1) : NULL;
  e->file = strdup(p->file);
  if (!e->message || !e->file) {
    free(e->message);
    free(e->file);
    p->oom = true;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(e->message, (size_t) n + 1, fmt, ap);
  va_end(ap);
  e->line = p->line;
  t->n_errors++;
}

/* A field for a message: at most QUOTE_MAX bytes, "..." if cut. */
#define QUOTED(f) (int) ((f).len > QUOTE_MAX ? QUOTE_MAX : (f).len), (f).s, \
                  (f).len > QUOTE_MAX ? "..." : ""

/* ---- fields --------------------------------------------------------------------- */
static bool
is_octal(char c)
{
  return c >= '0' && c <= '7';
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF)?  systemd ignores unit-file lines that are not UTF-8. */
static bool
utf8_valid(const unsigned char *s, size_t n)
{
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > n)
      return false;
    unsigned cp = len == 1 ? c : c & (0xFFu >> (len + 1));
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static const unsigned min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

/* Decode \NNN escapes into a new string.  what names the field for the
 * messages.  NULL (error recorded) if an escape is bad, gives NUL or a
 * control character other than tab, the result is not UTF-8 or is longer
 * than max. */
static char *
unescape(struct parser *p, struct field f, const char *what, size_t max)
{
  char *out = malloc(f.len + 1);
  if (!out) {
    p->oom = true;
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < f.len; i++) {
    unsigned char c = (unsigned char) f.s[i];
    if (c != '\\') {
      out[o++] = (char) c;
      continue;
    }
    if (i + 3 >= f.len || !is_octal(f.s[i + 1]) || !is_octal(f.s[i + 2]) ||
        !is_octal(f.s[i + 3])) {
      size_t rest = f.len - i < 4 ? f.len - i : 4;
      line_error(p, "%s '%.*s%s': bad escape '%.*s': write \\NNN with three octal digits "
                 "(\\040 is a space, \\134 a backslash)", what, QUOTED(f), (int) rest, f.s + i);
      free(out);
      return NULL;
    }
    unsigned v = (unsigned) (f.s[i + 1] - '0') * 64 + (unsigned) (f.s[i + 2] - '0') * 8 +
                 (unsigned) (f.s[i + 3] - '0');
    if (v > 255 || (v < 0x20 && v != '\t') || v == 0x7f) {
      line_error(p, "%s '%.*s%s': the escape '%.4s' gives %s, which is not allowed", what,
                 QUOTED(f), f.s + i,
                 v > 255 ? "a value over 255" : v == 0 ? "a NUL byte" : "a control character");
      free(out);
      return NULL;
    }
    out[o++] = (char) v;
    i += 3;
  }
  out[o] = '\0';
  if (!utf8_valid((const unsigned char *) out, o)) {
    /* Quote it as it would be written, with its bytes >= 0x80 as \NNN:
     * the message must not carry invalid UTF-8 into the logs either. */
    char shown[QUOTE_MAX * 4 + 1];
    size_t n = 0, i = 0;
    for (; i < f.len && n + 4 < sizeof shown; i++) {
      unsigned char c = (unsigned char) f.s[i];
      if (c < 0x80)
        shown[n++] = (char) c;
      else
        n += (size_t) snprintf(shown + n, sizeof shown - n, "\\%03o", c);
    }
    shown[n] = '\0';
    line_error(p, "%s '%s%s' is not valid UTF-8 (systemd units need UTF-8)", what, shown,
               i < f.len ? "..." : "");
    free(out);
    return NULL;
  }
  if (o > max) {
    line_error(p, "%s '%.*s%s' is too long (%zu bytes; at most %zu)", what, QUOTED(f), o, max);
    free(out);
    return NULL;
  }
  return out;
}

/* An absolute path: collapse '//', drop a trailing '/', refuse '.' and '..'
 * components (systemd wants normalised paths in RequiresMountsFor=, and the
 * mount folder is compared with other entries as text). */
static bool
normalise_path(struct parser *p, char *s, const char *what)
{
  if (s[0] != '/') {
    line_error(p, "%s '%s' is not an absolute path", what, s);
    return false;
  }
  size_t o = 0;
  for (size_t i = 0; s[i]; i++) {
    if (s[i] == '/' && o > 0 && s[o - 1] == '/')
      continue;
    s[o++] = s[i];
  }
  if (o > 1 && s[o - 1] == '/')
    o--;
  s[o] = '\0';
  for (const char *c = s; *c; c++) {
    if (*c != '/')
      continue;
    const char *e = c + 1;
    size_t n = strcspn(e, "/");
    if ((n == 1 && e[0] == '.') || (n == 2 && e[0] == '.' && e[1] == '.')) {
      line_error(p, "%s '%s' has a '.' or '..' component: write the plain absolute path", what,
                 s);
      return false;
    }
  }
  return true;
}

static bool
ends_with_ci(const char *s, const char *ext)
{
  size_t n = strlen(s), e = strlen(ext);
  return n >= e && strcasecmp(s + n - e, ext) == 0;
}

/* Digits only (no sign, no spaces), at most UINT32_MAX. */
static bool
parse_u32(const char *s, size_t len, unsigned *out)
{
  if (len == 0 || len > 10)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t) (s[i] - '0');
  }
  if (v > UINT32_MAX)
    return false;
  *out = (unsigned) v;
  return true;
}

/* ---- options ---------------------------------------------------------------------- */
enum opt {
  OPT_RO, OPT_RW, OPT_COMMIT, OPT_DISCARD, OPT_KEEP, OPT_REMOUNT, OPT_NOFAIL,
  OPT_CHECKINTEGRITY, OPT_OPTIMIZE, OPT_MKDIR, OPT_DEFAULTS, OPT_SCRATCH, OPT_LOG, OPT_TIMEOUT,
};

static const struct {
  const char *name;
  enum opt opt;
  bool value; /* takes =VALUE */
} options[] = {
  { "ro", OPT_RO, false },           { "rw", OPT_RW, false },
  { "commit", OPT_COMMIT, false },   { "discard", OPT_DISCARD, false },
  { "keep", OPT_KEEP, false },       { "remount", OPT_REMOUNT, false },
  { "nofail", OPT_NOFAIL, false },   { "checkintegrity", OPT_CHECKINTEGRITY, false },
  { "optimize", OPT_OPTIMIZE, false }, { "mkdir", OPT_MKDIR, false },
  { "defaults", OPT_DEFAULTS, false }, { "scratch", OPT_SCRATCH, true },
  { "log", OPT_LOG, true },          { "timeout", OPT_TIMEOUT, true },
};

#define KNOWN_OPTIONS "ro, rw, commit, discard, keep, remount, nofail, scratch=DIR, log=FILE, " \
                      "timeout=SEC, checkintegrity, optimize, mkdir, defaults, x-*"

/* A path-valued option (scratch=, log=): unescaped, absolute, normalised;
 * given once. */
static bool
path_option(struct parser *p, struct field val, const char *key, char **slot)
{
  char what[32];
  snprintf(what, sizeof what, "%s=", key);
  if (*slot) {
    line_error(p, "option '%s' is given twice", what);
    return false;
  }
  char *v = unescape(p, val, what, DISMTAB_PATH_MAX);
  if (!v)
    return false;
  if (!normalise_path(p, v, what)) {
    free(v);
    return false;
  }
  *slot = v;
  return true;
}

static bool
parse_options(struct parser *p, struct field f, struct dismtab_entry *e)
{
  int mode = 0;              /* 0 unset, 1 ro, 2 rw */
  int action = -1;           /* enum dismtab_shutdown once set */
  bool have_timeout = false;
  size_t i = 0;
  while (i <= f.len) {
    size_t j = i;
    while (j < f.len && f.s[j] != ',')
      j++;
    struct field item = { f.s + i, j - i };
    i = j + 1;
    if (item.len == 0) {
      line_error(p, "options '%.*s%s': empty option (two commas, or a comma at the start or "
                 "end)", QUOTED(f));
      return false;
    }
    const char *eq = memchr(item.s, '=', item.len);
    struct field key = { item.s, eq ? (size_t) (eq - item.s) : item.len };
    struct field val = { eq ? eq + 1 : NULL, eq ? item.len - key.len - 1 : 0 };
    if (key.len >= 2 && key.s[0] == 'x' && key.s[1] == '-')
      continue; /* for other tools, as in fstab */
    size_t k;
    for (k = 0; k < sizeof options / sizeof options[0]; k++)
      if (strlen(options[k].name) == key.len && memcmp(options[k].name, key.s, key.len) == 0)
        break;
    if (k == sizeof options / sizeof options[0]) {
      line_error(p, "unknown option '%.*s%s' (known: " KNOWN_OPTIONS ")", QUOTED(key));
      return false;
    }
    if (options[k].value && (!eq || val.len == 0)) {
      line_error(p, "option '%s' needs a value (%s=%s)", options[k].name, options[k].name,
                 options[k].opt == OPT_TIMEOUT ? "SECONDS" : options[k].opt == OPT_LOG ? "FILE"
                                                                                        : "DIR");
      return false;
    }
    if (!options[k].value && eq) {
      line_error(p, "option '%s' takes no value (found '%.*s%s')", options[k].name, QUOTED(item));
      return false;
    }
    enum opt o = options[k].opt;
    switch (o) {
    case OPT_RO:
    case OPT_RW:
      if (mode && mode != (o == OPT_RO ? 1 : 2)) {
        line_error(p, "options 'ro' and 'rw' are both given");
        return false;
      }
      mode = o == OPT_RO ? 1 : 2;
      break;
    case OPT_COMMIT:
    case OPT_DISCARD:
    case OPT_KEEP: {
      int a = o == OPT_COMMIT ? DISMTAB_COMMIT : o == OPT_DISCARD ? DISMTAB_DISCARD : DISMTAB_KEEP;
      if (action >= 0 && action != a) {
        line_error(p, "options '%s' and '%s' are both given: say once what happens to the "
                   "mount at shutdown", dismtab_shutdown_name((enum dismtab_shutdown) action),
                   dismtab_shutdown_name((enum dismtab_shutdown) a));
        return false;
      }
      action = a;
      break;
    }
    case OPT_REMOUNT: e->remount = true; break;
    case OPT_NOFAIL: e->nofail = true; break;
    case OPT_CHECKINTEGRITY: e->check_integrity = true; break;
    case OPT_OPTIMIZE: e->optimize = true; break;
    case OPT_MKDIR: e->make_dir = true; break;
    case OPT_DEFAULTS: break;
    case OPT_SCRATCH:
      if (!path_option(p, val, "scratch", &e->scratch_dir))
        return false;
      break;
    case OPT_LOG:
      if (!path_option(p, val, "log", &e->log_path))
        return false;
      break;
    case OPT_TIMEOUT:
      if (have_timeout) {
        line_error(p, "option 'timeout=' is given twice");
        return false;
      }
      if (!parse_u32(val.s, val.len, &e->timeout_s)) {
        line_error(p, "timeout '%.*s%s' is not a number of seconds (0: no limit)", QUOTED(val));
        return false;
      }
      have_timeout = true;
      break;
    }
  }
  e->read_write = mode == 2;
  if (e->read_write && action < 0) {
    line_error(p, "a read/write entry needs 'commit', 'discard' or 'keep': what happens to its "
               "changes at shutdown");
    return false;
  }
  if (!e->read_write && action == DISMTAB_COMMIT) {
    line_error(p, "'commit' needs a read/write entry ('rw'): a read-only mount has nothing to "
               "commit");
    return false;
  }
  e->shutdown = action < 0 ? DISMTAB_DISCARD : (enum dismtab_shutdown) action;
  return true;
}

/* ---- lines ------------------------------------------------------------------------ */
static void
entry_free(struct dismtab_entry *e)
{
  free(e->image);
  free(e->name);
  free(e->mount_dir);
  free(e->scratch_dir);
  free(e->log_path);
  memset(e, 0, sizeof *e);
}

/* What other (good) entries say about this one. */
static bool
check_against_others(struct parser *p, const struct dismtab_entry *e)
{
  bool wim = ends_with_ci(e->image, ".wim");
  for (size_t i = 0; i < p->tab->n_entries; i++) {
    const struct dismtab_entry *o = &p->tab->entries[i];
    if (strcmp(o->mount_dir, e->mount_dir) == 0) {
      line_error(p, "mount folder %s is already used on line %u", e->mount_dir, o->line);
      return false;
    }
    if (strcmp(o->image, e->image) != 0)
      continue;
    /* DISM's rule: a VHD/VHDX mounted read/write excludes every other mount
     * of it; a WIM file has at most one read/write mount. */
    if (wim ? (o->read_write && e->read_write) : (o->read_write || e->read_write)) {
      line_error(p, "image %s is already mounted on line %u, and %s", e->image, o->line,
                 wim ? "a WIM file has one read/write mount at most"
                     : "a VHD/VHDX mounted read/write cannot be mounted twice");
      return false;
    }
  }
  return true;
}

static void
add_entry(struct parser *p, struct dismtab_entry *e)
{
  struct dismtab *t = p->tab;
  if (t->n_entries == p->cap_entries) {
    size_t cap = p->cap_entries ? p->cap_entries * 2 : 8;
    struct dismtab_entry *grown = realloc(t->entries, cap * sizeof *grown);
    if (!grown) {
      p->oom = true;
      entry_free(e);
      return;
    }
    t->entries = grown;
    p->cap_entries = cap;
  }
  t->entries[t->n_entries++] = *e;
}

static void
parse_line(struct parser *p, const char *s, size_t n)
{
  p->line_failed = false;
  if (n > 0 && s[n - 1] == '\r')
    n--;
  if (memchr(s, '\0', n)) {
    line_error(p, "the line contains a NUL byte");
    return;
  }
  struct field f[MAX_FIELDS + 1];
  size_t nf = 0, i = 0, extra = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
      i++;
    if (i == n || s[i] == '#')
      break;
    size_t start = i;
    while (i < n && s[i] != ' ' && s[i] != '\t') {
      unsigned char c = (unsigned char) s[i];
      if (c < 0x20 || c == 0x7f) {
        line_error(p, "control character 0x%02x in the line (inside a path write it as \\NNN)",
                   c);
        return;
      }
      i++;
    }
    if (nf < MAX_FIELDS + 1)
      f[nf++] = (struct field){ s + start, i - start };
    else
      extra++;
  }
  if (nf == 0)
    return; /* blank or comment */
  if (nf < 3) {
    line_error(p, "%zu field%s: expected IMAGE INDEX|name=NAME MOUNTDIR [OPTIONS]", nf,
               nf == 1 ? "" : "s");
    return;
  }
  if (nf > MAX_FIELDS) {
    line_error(p, "%zu fields: expected at most 4 (IMAGE INDEX|name=NAME MOUNTDIR OPTIONS); a "
               "space inside a path or name is written \\040", nf + extra);
    return;
  }

  struct dismtab_entry e = { .line = p->line, .timeout_s = DISMTAB_DEFAULT_TIMEOUT_S };
  /* IMAGE */
  if (!(e.image = unescape(p, f[0], "image", DISMTAB_PATH_MAX)) ||
      !normalise_path(p, e.image, "image"))
    goto bad;
  bool wim = ends_with_ci(e.image, ".wim");
  if (ends_with_ci(e.image, ".swm")) {
    line_error(p, "image %s is a split WIM (.swm): split WIM files cannot be mounted", e.image);
    goto bad;
  }
  if (!wim && !ends_with_ci(e.image, ".vhd") && !ends_with_ci(e.image, ".vhdx")) {
    line_error(p, "image %s is not a .wim, .vhd or .vhdx file", e.image);
    goto bad;
  }
  /* INDEX | name=NAME */
  if (f[1].len >= 5 && memcmp(f[1].s, "name=", 5) == 0) {
    struct field nv = { f[1].s + 5, f[1].len - 5 };
    if (nv.len == 0) {
      line_error(p, "'name=' needs the WIM image's name (name=NAME)");
      goto bad;
    }
    if (!(e.name = unescape(p, nv, "image name", DISMTAB_NAME_MAX)))
      goto bad;
    if (!wim) {
      line_error(p, "%s is a VHD/VHDX: it holds one image, chosen with index 1 (names are for "
                 "WIM images)", e.image);
      goto bad;
    }
  } else if (!parse_u32(f[1].s, f[1].len, &e.index) || e.index == 0) {
    line_error(p, "index '%.*s%s' is not a number from 1 (or name=NAME for a WIM image)",
               QUOTED(f[1]));
    goto bad;
  } else if (!wim && e.index != 1) {
    line_error(p, "%s is a VHD/VHDX, which holds one image: the index must be 1, not %u",
               e.image, e.index);
    goto bad;
  }
  /* MOUNTDIR */
  if (!(e.mount_dir = unescape(p, f[2], "mount folder", DISMTAB_PATH_MAX)) ||
      !normalise_path(p, e.mount_dir, "mount folder"))
    goto bad;
  if (strcmp(e.mount_dir, "/") == 0) {
    line_error(p, "mount folder is '/': mounting to the root of a file system is not allowed");
    goto bad;
  }
  /* OPTIONS */
  if (nf == 4 && !parse_options(p, f[3], &e))
    goto bad;
  if (!check_against_others(p, &e))
    goto bad;
  add_entry(p, &e);
  return;
bad:
  entry_free(&e);
}

/* ---- the API -------------------------------------------------------------------------- */
int
dismtab_parse_buffer(const char *buf, size_t len, const char *filename, struct dismtab *tab)
{
  memset(tab, 0, sizeof *tab);
  struct parser p = { .tab = tab, .file = filename ? filename : "dismtab" };
  size_t start = 0;
  while (start < len && !p.oom) {
    const char *nl = memchr(buf + start, '\n', len - start);
    size_t end = nl ? (size_t) (nl - buf) : len;
    p.line++;
    parse_line(&p, buf + start, end - start);
    start = end + 1;
  }
  if (p.oom) {
    dismtab_free(tab);
    return -ENOMEM;
  }
  return 0;
}

int
dismtab_parse_file(const char *path, struct dismtab *tab)
{
  memset(tab, 0, sizeof *tab);
  struct parser p = { .tab = tab, .file = path };
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT)
      return -ENOENT;
    line_error(&p, "cannot open: %s", strerror(e));
    return p.oom ? -ENOMEM : -e;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  int rc = 0;
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  for (;;) {
    if (len == cap) {
      if (cap > DISMTAB_FILE_MAX) {
        line_error(&p, "the file is larger than %u bytes", DISMTAB_FILE_MAX);
        rc = -EFBIG;
        break;
      }
      char *grown = realloc(buf, cap * 2);
      if (!grown) {
        rc = -ENOMEM;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      line_error(&p, "cannot read: %s", strerror(-rc));
      break;
    }
    if (n == 0)
      break;
    len += (size_t) n;
  }
  close(fd);
  if (rc == 0 && len > DISMTAB_FILE_MAX) {
    line_error(&p, "the file is larger than %u bytes", DISMTAB_FILE_MAX);
    rc = -EFBIG;
  }
  if (rc == 0) {
    rc = dismtab_parse_buffer(buf, len, path, tab);
  } else if (p.oom || rc == -ENOMEM) {
    dismtab_free(tab);
    rc = -ENOMEM;
  }
  free(buf);
  return rc;
}

void
dismtab_free(struct dismtab *tab)
{
  if (!tab)
    return;
  for (size_t i = 0; i < tab->n_entries; i++)
    entry_free(&tab->entries[i]);
  for (size_t i = 0; i < tab->n_errors; i++) {
    free(tab->errors[i].file);
    free(tab->errors[i].message);
  }
  free(tab->entries);
  free(tab->errors);
  memset(tab, 0, sizeof *tab);
}

const char *
dismtab_shutdown_name(enum dismtab_shutdown s)
{
  switch (s) {
  case DISMTAB_COMMIT: return "commit";
  case DISMTAB_KEEP: return "keep";
  default: return "discard";
  }
}
