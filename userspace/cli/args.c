/* SPDX-License-Identifier: GPL-2.0-or-later */
/* args.c - the dism command line parser (see args.h).
 *
 * Moved out of dism.c unchanged: dism.c turns an error into DISM's usage
 * message (report_usage_error) exactly as before. */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "args.h"

static const struct {
  const char *name;
  enum dism_cli_command cmd;
} command_names[] = {
  { "mount-image", CMD_MOUNT },           { "mount-wim", CMD_MOUNT },
  { "unmount-image", CMD_UNMOUNT },       { "unmount-wim", CMD_UNMOUNT },
  { "commit-image", CMD_COMMIT },         { "commit-wim", CMD_COMMIT },
  { "remount-image", CMD_REMOUNT },       { "remount-wim", CMD_REMOUNT },
  { "get-mountedimageinfo", CMD_GET_MOUNTED }, { "get-mountedwiminfo", CMD_GET_MOUNTED },
  { "get-imageinfo", CMD_GET_IMAGE_INFO }, { "get-wiminfo", CMD_GET_IMAGE_INFO },
  { "cleanup-mountpoints", CMD_CLEANUP }, { "cleanup-wim", CMD_CLEANUP },
};

static int
usage_error(struct dism_cli_error *err, const char *fmt, const char *arg)
{
  err->fmt = fmt;
  err->arg = arg;
  return -1;
}

int
dism_cli_parse(int argc, char **argv, struct dism_cli_options *o, struct dism_cli_error *err)
{
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "/?") || !strcmp(arg, "-?") || !strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      o->help = true;
      continue;
    }
    if (arg[0] != '/')
      return usage_error(err, "The argument \"%s\" is not valid: options start with /.\n", arg);
    const char *name = arg + 1, *colon = strchr(name, ':');
    size_t name_len = colon ? (size_t) (colon - name) : strlen(name);
    const char *value = colon ? colon + 1 : NULL;
#define IS(s) (name_len == strlen(s) && strncasecmp(name, s, name_len) == 0)
    bool matched = false;
    for (size_t c = 0; c < sizeof command_names / sizeof command_names[0]; c++) {
      if (IS(command_names[c].name)) {
        if (o->cmd != CMD_NONE)
          return usage_error(err, "Only one command may be given (%s is the second).\n", arg);
        o->cmd = command_names[c].cmd;
        o->cmd_name = arg;
        matched = true;
      }
    }
    if (matched)
      continue;
    const char **slot = NULL;
    bool *flag = NULL;
    if (IS("ImageFile") || IS("WimFile"))
      slot = &o->image_file;
    else if (IS("MountDir"))
      slot = &o->mount_dir;
    else if (IS("Index"))
      slot = &o->index;
    else if (IS("Name"))
      slot = &o->name;
    else if (IS("LogPath"))
      slot = &o->log_path;
    else if (IS("ScratchDir"))
      slot = &o->scratch_dir;
    else if (IS("LogLevel"))
      slot = &o->log_level;
    else if (IS("Format"))
      slot = &o->format;
    else if (IS("ReadOnly"))
      flag = &o->read_only;
    else if (IS("Optimize"))
      flag = &o->optimize;
    else if (IS("CheckIntegrity"))
      flag = &o->check_integrity;
    else if (IS("Commit"))
      flag = &o->commit;
    else if (IS("Discard"))
      flag = &o->discard;
    else if (IS("Append"))
      flag = &o->append;
    else if (IS("Quiet"))
      flag = &o->quiet;
    else if (IS("English") || IS("NoRestart"))
      continue;
    else
      return usage_error(err, "The option %s is unknown.\n", arg);
#undef IS
    if (slot) {
      if (!value || !*value)
        return usage_error(err, "The option %s needs a value (/Option:value).\n", arg);
      *slot = value;
    } else {
      if (value)
        return usage_error(err, "The option %s takes no value.\n", arg);
      *flag = true;
    }
  }
  return 0;
}
