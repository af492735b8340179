/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-cli - libFuzzer target for the dism command's argument parser
 * (userspace/cli/args.c, dism_cli_parse).
 *
 * Input: the arguments after "dism", separated by NUL bytes (at most 64).
 * Each argument is its own allocation, so a read past its end is caught.
 * Beyond "no crash": a parse that succeeds leaves every value non-empty and
 * inside the argument that gave it, and a command name exactly when there
 * is a command; a parse that fails names one of the arguments and has a
 * message with one %s and no other conversion (dism.c hands it to printf). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

static int argc;
static char *argv[MAX_ARGS + 2];

/* p points into one of the arguments (at or after its start, before its NUL). */
static bool
inside_arg(const char *p, bool whole)
{
  for (int i = 1; i < argc; i++) {
    size_t n = strlen(argv[i]);
    if (whole ? p == argv[i] : (p > argv[i] && p < argv[i] + n))
      return true;
  }
  return false;
}

static void
check_value(const char *v)
{
  if (v && (!v[0] || !inside_arg(v, false) || v[-1] != ':'))
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct dism_cli_options o = { 0 };
  struct dism_cli_error err = { 0 };
  size_t start = 0;

  argc = 0;
  argv[argc++] = strdup("dism");
  while (start <= size && argc <= MAX_ARGS) {
    const uint8_t *nul = memchr(data + start, 0, size - start);
    size_t len = nul ? (size_t) (nul - (data + start)) : size - start;
    char *a = malloc(len + 1);
    if (!a)
      abort();
    memcpy(a, data + start, len);
    a[len] = '\0';
    argv[argc++] = a;
    start += len + 1;
  }
  argv[argc] = NULL;

  if (dism_cli_parse(argc, argv, &o, &err) == 0) {
    if ((o.cmd == CMD_NONE) != (o.cmd_name == NULL) || o.cmd > CMD_CLEANUP ||
        (o.cmd_name && (!inside_arg(o.cmd_name, true) || o.cmd_name[0] != '/')))
      abort();
    check_value(o.image_file);
    check_value(o.mount_dir);
    check_value(o.name);
    check_value(o.index);
    check_value(o.log_path);
    check_value(o.scratch_dir);
    check_value(o.log_level);
    check_value(o.format);
  } else {
    const char *s = err.fmt ? strstr(err.fmt, "%s") : NULL;
    if (!s || strchr(s + 2, '%') || strchr(err.fmt, '%') != s || !err.arg ||
        !inside_arg(err.arg, true))
      abort();
    char msg[512];
    snprintf(msg, sizeof msg, err.fmt, err.arg);
  }
  for (int i = 0; i < argc; i++)
    free(argv[i]);
  return 0;
}
