/* SPDX-License-Identifier: GPL-2.0-or-later */
/* args.h - the dism command line parsed into options (DISM's syntax:
 * /Command, /Option:value, /Flag, case-insensitive).
 *
 * Kept apart from dism.c, which prints and runs the commands, so that the
 * fuzzer (tests/fuzz/fuzz-cli.c) can call the parser alone.  Nothing here
 * prints, allocates or keeps state: the option values point into argv. */
#ifndef DISM_CLI_ARGS_H
#define DISM_CLI_ARGS_H

#include <stdbool.h>

enum dism_cli_command {
  CMD_NONE, CMD_HELP, CMD_MOUNT, CMD_UNMOUNT, CMD_COMMIT, CMD_REMOUNT,
  CMD_GET_MOUNTED, CMD_GET_IMAGE_INFO, CMD_CLEANUP,
};

struct dism_cli_options {
  enum dism_cli_command cmd;
  const char *cmd_name;      /* the argument that named the command */
  bool help;
  const char *image_file, *mount_dir, *name, *index;
  const char *log_path, *scratch_dir, *log_level, *format;
  bool read_only, optimize, check_integrity, commit, discard, append, quiet;
};

/* A usage error: fmt has one %s, which arg (an argv string) fills. */
struct dism_cli_error {
  const char *fmt;
  const char *arg;
};

/* Parse argv[1..argc-1] into o (which the caller zeroes).  0, or -1 with
 * err set: the first bad argument stops the parse. */
int dism_cli_parse(int argc, char **argv, struct dism_cli_options *o, struct dism_cli_error *err);

#endif
