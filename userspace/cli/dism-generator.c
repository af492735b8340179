/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism-generator.c - systemd generator for dismtab(5).
 *
 *   dism-generator NORMAL-DIR [EARLY-DIR LATE-DIR]   (run by systemd at boot
 *                                                     and daemon-reload)
 *   dism-generator --check [FILE]                    (lint a dismtab)
 *
 * Each good line of /etc/dismtab ($DISMTAB) becomes one oneshot service,
 * dism-mount@<escaped mount folder>.service, written into NORMAL-DIR:
 * ExecStart mounts the image (through dism-boot, which turns a mount that is
 * already there into success and a NeedsRemount one into /Remount-Image when
 * the entry says remount), ExecStop unmounts it with /Commit or /Discard, or
 * parks it (keep).  Entries are ordered in file order (After= the previous
 * one) and after the file systems holding their paths (RequiresMountsFor=);
 * multi-user.target requires them (wants them with nofail).
 *
 * A bad line is logged as "FILE:LINE: what is wrong" (to the kernel log when
 * systemd runs us, where generators' messages go, else to stderr) and
 * skipped; the other lines still get their units.  The exit status is 1 if
 * any line was bad, so systemd reports the generator as failed.  Nothing
 * here reads the images or the registry: generators run before most file
 * systems are mounted.  docs/boot.md has the design; dismtab(5) the format. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dismtab.h"

#ifndef SBINDIR
#define SBINDIR "/usr/local/sbin"
#endif
#ifndef LIBEXECDIR
#define LIBEXECDIR "/usr/local/libexec/dism"
#endif
/* libdism's defaults (registry.c, api.c): the mounts need these paths. */
#define DISM_STATE_DEFAULT "/var/lib/dism"
#define DISM_LOG_DIR_DEFAULT "/var/log/dism"

#define UNIT_PREFIX "dism-mount@"
#define UNIT_SUFFIX ".service"
#define UNIT_NAME_MAX 255
#define WANTED_BY "multi-user.target"

static const char *prog = "dism-generator";
static int kmsg_fd = -1;

/* ---- messages ---------------------------------------------------------------------- */
/* LOG_ERR / LOG_WARNING / LOG_INFO */
enum { PRIO_ERR = 3, PRIO_WARNING = 4, PRIO_INFO = 6 };

static void __attribute__((format(printf, 2, 3)))
say(int prio, const char *fmt, ...)
{
  char msg[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* One write() per record (/dev/kmsg takes a message per write; it cannot
   * seek, which stdio's dprintf wants). */
  char line[8300];
  int n = snprintf(line, sizeof line, "<%d>%s[%d]: %s\n", prio, prog, (int) getpid(), msg);
  if (kmsg_fd < 0 || n < 0 || write(kmsg_fd, line, (size_t) n < sizeof line ? (size_t) n
                                                                        : sizeof line - 1) < 0)
    fprintf(stderr, "%s: %s\n", prog, msg);
}

/* As systemd's own generators do: the journal is not up yet, so messages go
 * to the kernel log; by hand (a terminal, or SYSTEMD_LOG_TARGET=console)
 * they go to stderr. */
static void
log_setup(void)
{
  const char *target = getenv("SYSTEMD_LOG_TARGET");
  if (isatty(STDERR_FILENO) || (target && strcmp(target, "kmsg") != 0 &&
                                strcmp(target, "auto") != 0 &&
                                strcmp(target, "journal-or-kmsg") != 0))
    return;
  kmsg_fd = open("/dev/kmsg", O_WRONLY | O_NOCTTY | O_CLOEXEC);
}

/* ---- systemd's escaping -------------------------------------------------------------- */
/* systemd-escape --path: the path without its leading '/', '/' -> '-', and
 * every byte that is not [A-Za-z0-9:_.] (and a leading '.') as \xhh. */
static char *
path_escape(const char *path)
{
  const char *p = path;
  while (*p == '/')
    p++;
  if (!*p)
    return strdup("-");
  char *out = malloc(strlen(p) * 4 + 1), *o = out;
  if (!out)
    return NULL;
  for (const char *c = p; *c; c++) {
    unsigned char ch = (unsigned char) *c;
    bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == ':' || ch == '_' || (ch == '.' && c != p);
    if (ch == '/')
      *o++ = '-';
    else if (plain)
      *o++ = (char) ch;
    else
      o += sprintf(o, "\\x%02x", ch);
  }
  *o = '\0';
  return out;
}

/* Unit-file text: '%' is a specifier, so it is doubled. */
static void
put_text(FILE *f, const char *s)
{
  for (; *s; s++) {
    if (*s == '%')
      fputc('%', f);
    fputc(*s, f);
  }
}

/* One word of a command line (exec = ExecStart/ExecStop: '$' is an
 * environment variable there) or of a path list (RequiresMountsFor=):
 * double-quoted when it holds a space, a quote or a backslash, with '\' and
 * '"' escaped inside; '%' doubled.  Control characters other than tab never
 * reach here (the parser refuses them). */
static void
put_word(FILE *f, const char *w, bool exec)
{
  bool quote = !*w || strpbrk(w, " \t\"'\\;") != NULL;
  if (quote)
    fputc('"', f);
  for (const char *c = w; *c; c++) {
    if (quote && (*c == '\\' || *c == '"'))
      fputc('\\', f);
    if (*c == '%' || (exec && *c == '$'))
      fputc(*c, f);
    fputc(*c, f);
  }
  if (quote)
    fputc('"', f);
}

/* "/Option:value" as one word. */
static void
put_option(FILE *f, const char *option, const char *value)
{
  char *w;
  if (asprintf(&w, "/%s:%s", option, value) < 0)
    return;
  fputc(' ', f);
  put_word(f, w, true);
  free(w);
}

/* ---- units --------------------------------------------------------------------------- */
struct paths {
  const char *dism, *boot, *source;
};

static char *
unit_name_of(const struct dismtab_entry *e)
{
  char *esc = path_escape(e->mount_dir), *name = NULL;
  if (esc && asprintf(&name, UNIT_PREFIX "%s" UNIT_SUFFIX, esc) < 0)
    name = NULL;
  free(esc);
  return name;
}

static void
write_exec_start(FILE *f, const struct dismtab_entry *e, const struct paths *p)
{
  fputs("ExecStart=", f);
  put_word(f, p->boot, true);
  fputs(" start", f);
  if (e->remount)
    fputs(" --remount", f);
  if (e->make_dir)
    fputs(" --mkdir", f);
  fputc(' ', f);
  put_word(f, p->dism, true);
  fputs(" /Quiet", f);
  if (e->log_path)
    put_option(f, "LogPath", e->log_path);
  if (e->scratch_dir)
    put_option(f, "ScratchDir", e->scratch_dir);
  fputs(" /Mount-Image", f);
  put_option(f, "ImageFile", e->image);
  if (e->name) {
    put_option(f, "Name", e->name);
  } else {
    char idx[16];
    snprintf(idx, sizeof idx, "%u", e->index);
    put_option(f, "Index", idx);
  }
  put_option(f, "MountDir", e->mount_dir);
  if (!e->read_write)
    fputs(" /ReadOnly", f);
  if (e->optimize)
    fputs(" /Optimize", f);
  if (e->check_integrity)
    fputs(" /CheckIntegrity", f);
  fputc('\n', f);
}

static void
write_exec_stop(FILE *f, const struct dismtab_entry *e, const struct paths *p)
{
  fputs("ExecStop=", f);
  if (e->shutdown == DISMTAB_KEEP) {
    put_word(f, p->boot, true);
    fputs(" park", f);
    if (e->log_path) {
      fputs(" --log ", f);
      put_word(f, e->log_path, true);
    }
    fputc(' ', f);
    put_word(f, e->mount_dir, true);
  } else {
    put_word(f, p->dism, true);
    fputs(" /Quiet", f);
    if (e->log_path)
      put_option(f, "LogPath", e->log_path);
    fputs(" /Unmount-Image", f);
    put_option(f, "MountDir", e->mount_dir);
    fputs(e->shutdown == DISMTAB_COMMIT ? " /Commit" : " /Discard", f);
  }
  fputc('\n', f);
}

static void
write_timeout(FILE *f, const char *key, unsigned s)
{
  if (s)
    fprintf(f, "%s=%u\n", key, s);
  else
    fprintf(f, "%s=infinity\n", key);
}

static int
write_unit(FILE *f, const struct dismtab_entry *e, const char *prev, const struct paths *p)
{
  fprintf(f, "# Automatically generated by dism-generator from ");
  put_text(f, p->source);
  fprintf(f, ", line %u.\n# Edit that line and run \"systemctl daemon-reload\" to change it "
          "(dismtab(5)).\n\n", e->line);
  fputs("[Unit]\nDescription=DISM mount of ", f);
  put_text(f, e->image);
  if (e->name) {
    fputs(" (", f);
    put_text(f, e->name);
    fputs(")", f);
  }
  fputs(" at ", f);
  put_text(f, e->mount_dir);
  fputs("\nDocumentation=man:dismtab(5) man:dism(8)\nSourcePath=", f);
  put_text(f, p->source);
  /* dism-remount.service (if enabled) brings back every NeedsRemount mount
   * first; the entries follow in file order, so an image may live inside
   * an earlier entry's mount.  Before user sessions: files are there at
   * login, and at shutdown the sessions (and their open files) are gone
   * before the unmount. */
  fputs("\nAfter=dism-remount.service\n", f);
  if (prev)
    fprintf(f, "After=%s\n", prev);
  fputs("Before=systemd-user-sessions.service\nRequiresMountsFor=", f);
  put_word(f, e->image, false);
  fputc(' ', f);
  put_word(f, e->mount_dir, false);
  fputc(' ', f);
  put_word(f, DISM_STATE_DEFAULT, false);
  fputc(' ', f);
  put_word(f, e->log_path ? e->log_path : DISM_LOG_DIR_DEFAULT, false);
  if (e->scratch_dir) {
    fputc(' ', f);
    put_word(f, e->scratch_dir, false);
  }
  fputs("\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n", f);
  write_timeout(f, "TimeoutStartSec", e->timeout_s);
  write_timeout(f, "TimeoutStopSec", e->timeout_s);
  fputs("StandardOutput=journal\nStandardError=journal\nSyslogIdentifier=dism\n", f);
  write_exec_start(f, e, p);
  write_exec_stop(f, e, p);
  return ferror(f) ? -EIO : 0;
}

static int
mkdir_one(const char *path)
{
  if (mkdir(path, 0755) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

/* <dir>/<target>.{requires,wants}/<unit> -> ../<unit> */
static int
add_dependency_link(const char *dir, const char *unit, bool wants)
{
  char *d = NULL, *link = NULL, *target = NULL;
  int rc = 0;
  if (asprintf(&d, "%s/" WANTED_BY ".%s", dir, wants ? "wants" : "requires") < 0 ||
      asprintf(&link, "%s/%s", d, unit) < 0 || asprintf(&target, "../%s", unit) < 0) {
    rc = -ENOMEM;
    goto out;
  }
  if ((rc = mkdir_one(d)) < 0)
    goto out;
  unlink(link);
  if (symlink(target, link) < 0)
    rc = -errno;
out:
  free(d);
  free(link);
  free(target);
  return rc;
}

static void
report_errors(const struct dismtab *tab)
{
  for (size_t i = 0; i < tab->n_errors; i++) {
    const struct dismtab_error *e = &tab->errors[i];
    if (e->line)
      say(PRIO_ERR, "%s:%u: %s; line skipped", e->file, e->line, e->message);
    else
      say(PRIO_ERR, "%s: %s", e->file, e->message);
  }
}

static int
generate(const char *dir, const struct paths *p)
{
  struct dismtab tab;
  int rc = dismtab_parse_file(p->source, &tab);
  if (rc == -ENOENT)
    return 0; /* no dismtab: nothing to mount */
  report_errors(&tab);
  if (rc < 0) {
    if (rc == -ENOMEM)
      say(PRIO_ERR, "%s: out of memory", p->source);
    dismtab_free(&tab);
    return 1;
  }
  int status = tab.n_errors ? 1 : 0;
  char *prev = NULL;
  for (size_t i = 0; i < tab.n_entries; i++) {
    const struct dismtab_entry *e = &tab.entries[i];
    char *unit = unit_name_of(e), *path = NULL;
    if (!unit || asprintf(&path, "%s/%s", dir, unit) < 0) {
      say(PRIO_ERR, "%s:%u: out of memory; line skipped", p->source, e->line);
      free(unit);
      status = 1;
      continue;
    }
    if (strlen(unit) > UNIT_NAME_MAX) {
      say(PRIO_ERR, "%s:%u: the mount folder %s is too long for a unit name (%zu > %d "
          "characters once escaped); line skipped", p->source, e->line, e->mount_dir,
          strlen(unit), UNIT_NAME_MAX);
      status = 1;
      goto next;
    }
    FILE *f = fopen(path, "we");
    if (!f) {
      say(PRIO_ERR, "%s:%u: cannot create %s: %s", p->source, e->line, path, strerror(errno));
      status = 1;
      goto next;
    }
    rc = write_unit(f, e, prev, p);
    if (fclose(f) != 0 && rc == 0)
      rc = -errno;
    if (rc == 0)
      rc = add_dependency_link(dir, unit, e->nofail);
    if (rc < 0) {
      say(PRIO_ERR, "%s:%u: cannot write %s: %s", p->source, e->line, path, strerror(-rc));
      unlink(path);
      status = 1;
      goto next;
    }
    free(prev);
    prev = unit;
    unit = NULL;
  next:
    free(unit);
    free(path);
  }
  free(prev);
  dismtab_free(&tab);
  return status;
}

/* --check: the problems on stderr, what each good line becomes on stdout. */
static int
check(const char *file)
{
  struct dismtab tab;
  int rc = dismtab_parse_file(file, &tab);
  if (rc == -ENOENT) {
    fprintf(stderr, "%s: %s: no such file (nothing would be mounted at boot)\n", prog, file);
    return 1;
  }
  for (size_t i = 0; i < tab.n_errors; i++) {
    const struct dismtab_error *e = &tab.errors[i];
    if (e->line)
      fprintf(stderr, "%s:%u: %s\n", e->file, e->line, e->message);
    else
      fprintf(stderr, "%s: %s\n", e->file, e->message);
  }
  int status = rc < 0 || tab.n_errors ? 1 : 0;
  for (size_t i = 0; i < tab.n_entries; i++) {
    const struct dismtab_entry *e = &tab.entries[i];
    char *unit = unit_name_of(e);
    if (unit && strlen(unit) > UNIT_NAME_MAX) {
      fprintf(stderr, "%s:%u: the mount folder %s is too long for a unit name\n", file, e->line,
              e->mount_dir);
      status = 1;
    } else {
      char what[64];
      snprintf(what, sizeof what, "index %u", e->index);
      printf("%s:%u: %s: %s %s%s at %s, %s, %s at shutdown%s%s\n", file, e->line,
             unit ? unit : "?", e->image, e->name ? "image " : what, e->name ? e->name : "",
             e->mount_dir, e->read_write ? "read/write" : "read-only",
             dismtab_shutdown_name(e->shutdown), e->remount ? ", remount" : "",
             e->nofail ? ", nofail" : "");
    }
    free(unit);
  }
  dismtab_free(&tab);
  return status;
}

static void
usage(FILE *f)
{
  fprintf(f, "usage: %s NORMAL-DIR [EARLY-DIR LATE-DIR]\n"
             "       %s --check [DISMTAB]\n"
             "Writes a dism-mount@.service unit for each line of the dismtab (%s, or\n"
             "$DISMTAB); --check lists the problems and what each good line becomes.\n"
             "See dismtab(5).\n", prog, prog, "/etc/dismtab");
}

int
main(int argc, char **argv)
{
  const char *env = getenv("DISMTAB");
  struct paths p = {
    .dism = getenv("DISM_CLI") && *getenv("DISM_CLI") ? getenv("DISM_CLI") : SBINDIR "/dism",
    .boot = getenv("DISM_BOOT") && *getenv("DISM_BOOT") ? getenv("DISM_BOOT")
                                                        : LIBEXECDIR "/dism-boot",
    .source = env && *env ? env : "/etc/dismtab",
  };
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--check")) {
    if (argc > 3) {
      usage(stderr);
      return 2;
    }
    return check(argc == 3 ? argv[2] : p.source);
  }
  if (argc != 2 && argc != 4) {
    usage(stderr);
    return 2;
  }
  log_setup();
  struct stat st;
  if (stat(argv[1], &st) < 0 || !S_ISDIR(st.st_mode)) {
    say(PRIO_ERR, "%s: not a directory", argv[1]);
    return 1;
  }
  return generate(argv[1], &p);
}
