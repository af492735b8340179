/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-dismtab - libFuzzer target for the dismtab(5) parser
 * (userspace/lib/dismtab.c, dismtab_parse_buffer).
 *
 * Input: the file's bytes, as they are.  Beyond "no crash, no leak", every
 * entry the parser accepts must hold what dismtab.h promises (absolute
 * normalised paths, index xor name, 'commit' only read/write, ...), every
 * error must name a line of the input, and the accepted entries written
 * back out in dismtab syntax (escaped) must parse again to the same entries
 * with no error: the parser and its escaping agree with each other. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dismtab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_path(const char *p, size_t max)
{
  size_t n = strlen(p);
  if (n == 0 || n > max || p[0] != '/' || strstr(p, "//") || (n > 1 && p[n - 1] == '/'))
    abort();
  if (strstr(p, "/./") || strstr(p, "/../") || (n >= 2 && !strcmp(p + n - 2, "/.")) ||
      (n >= 3 && !strcmp(p + n - 3, "/..")))
    abort();
}

static bool
ends_ci(const char *s, const char *ext)
{
  size_t n = strlen(s), e = strlen(ext);
  return n >= e && strcasecmp(s + n - e, ext) == 0;
}

static void
check_entry(const struct dismtab_entry *e, unsigned lines)
{
  check_path(e->image, DISMTAB_PATH_MAX);
  check_path(e->mount_dir, DISMTAB_PATH_MAX);
  if (!strcmp(e->mount_dir, "/") || e->line == 0 || e->line > lines)
    abort();
  bool wim = ends_ci(e->image, ".wim");
  if (!wim && !ends_ci(e->image, ".vhd") && !ends_ci(e->image, ".vhdx"))
    abort();
  if (e->name ? (e->index != 0 || !wim || !e->name[0] || strlen(e->name) > DISMTAB_NAME_MAX)
              : (e->index == 0 || (!wim && e->index != 1)))
    abort();
  if (e->shutdown == DISMTAB_COMMIT && !e->read_write)
    abort();
  if (e->scratch_dir)
    check_path(e->scratch_dir, DISMTAB_PATH_MAX);
  if (e->log_path)
    check_path(e->log_path, DISMTAB_PATH_MAX);
}

/* Append s with every byte the syntax gives a meaning to as \NNN. */
static void
put_escaped(FILE *f, const char *s)
{
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;
    if (c <= ' ' || c == '\\' || c == '#' || c == ',' || c == 0x7f)
      fprintf(f, "\\%03o", c);
    else
      fputc(c, f);
  }
}

static void
write_entry(FILE *f, const struct dismtab_entry *e)
{
  put_escaped(f, e->image);
  if (e->name) {
    fputs("\tname=", f);
    put_escaped(f, e->name);
  } else {
    fprintf(f, "\t%u", e->index);
  }
  fputc('\t', f);
  put_escaped(f, e->mount_dir);
  fprintf(f, "\t%s,%s", e->read_write ? "rw" : "ro", dismtab_shutdown_name(e->shutdown));
  if (e->remount)
    fputs(",remount", f);
  if (e->nofail)
    fputs(",nofail", f);
  if (e->check_integrity)
    fputs(",checkintegrity", f);
  if (e->optimize)
    fputs(",optimize", f);
  if (e->make_dir)
    fputs(",mkdir", f);
  if (e->scratch_dir) {
    fputs(",scratch=", f);
    put_escaped(f, e->scratch_dir);
  }
  if (e->log_path) {
    fputs(",log=", f);
    put_escaped(f, e->log_path);
  }
  fprintf(f, ",timeout=%u\n", e->timeout_s);
}

static bool
same_str(const char *a, const char *b)
{
  return a == b || (a && b && !strcmp(a, b));
}

static bool
same_entry(const struct dismtab_entry *a, const struct dismtab_entry *b)
{
  return same_str(a->image, b->image) && a->index == b->index && same_str(a->name, b->name) &&
         same_str(a->mount_dir, b->mount_dir) && a->read_write == b->read_write &&
         a->shutdown == b->shutdown && a->remount == b->remount && a->nofail == b->nofail &&
         a->check_integrity == b->check_integrity && a->optimize == b->optimize &&
         a->make_dir == b->make_dir && same_str(a->scratch_dir, b->scratch_dir) &&
         same_str(a->log_path, b->log_path) && a->timeout_s == b->timeout_s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct dismtab tab, again;
  unsigned lines = 1;
  char *text = NULL;
  size_t text_len = 0;

  if (size > DISMTAB_FILE_MAX)
    return 0;
  /* A copy of exactly size bytes, so reading past the end is caught. */
  char *buf = malloc(size ? size : 1);
  if (!buf)
    abort();
  memcpy(buf, data, size);
  for (size_t i = 0; i < size; i++)
    lines += buf[i] == '\n';
  if (dismtab_parse_buffer(buf, size, "fuzz", &tab) < 0)
    abort();   /* only -ENOMEM, which does not happen here */
  free(buf);

  for (size_t i = 0; i < tab.n_entries; i++) {
    check_entry(&tab.entries[i], lines);
    if (i && tab.entries[i].line <= tab.entries[i - 1].line)
      abort();
  }
  for (size_t i = 0; i < tab.n_errors; i++) {
    const struct dismtab_error *e = &tab.errors[i];
    if (strcmp(e->file, "fuzz") || e->line == 0 || e->line > lines || !e->message[0] ||
        (i && e->line <= tab.errors[i - 1].line))
      abort();
  }

  /* The round trip. */
  FILE *f = open_memstream(&text, &text_len);
  if (!f)
    abort();
  for (size_t i = 0; i < tab.n_entries; i++)
    write_entry(f, &tab.entries[i]);
  if (fclose(f) != 0)
    abort();
  if (dismtab_parse_buffer(text, text_len, "again", &again) < 0)
    abort();
  if (again.n_errors != 0) {
    fprintf(stderr, "round trip: line %u: %s\n%s", again.errors[0].line,
            again.errors[0].message, text);
    abort();
  }
  if (again.n_entries != tab.n_entries)
    abort();
  for (size_t i = 0; i < tab.n_entries; i++)
    if (!same_entry(&tab.entries[i], &again.entries[i]))
      abort();
  free(text);
  dismtab_free(&again);
  dismtab_free(&tab);
  dismtab_free(NULL);
  return 0;
}
