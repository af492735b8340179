/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* util.c - engine helpers that are not byte-level (those are in common/). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "path-size.h"
#include "util.h"

int
dism_resolve_parent_path(const char *child_path, const char *recorded,
                         bool windows_absolute, char *out, size_t outsize)
{
  char rec[DISM_PATH_MAX];
  const char *name;
  size_t dirlen;
  const char *slash = strrchr(child_path, '/');
  int n;

  if (snprintf(rec, sizeof rec, "%s", recorded) >= (int) sizeof rec)
    return -ENAMETOOLONG;
  for (char *p = rec; *p; p++)
    if (*p == '\\')
      *p = '/';
  dirlen = slash ? (size_t) (slash - child_path) : 0;

  if (rec[0] == '/' && !windows_absolute) {
    n = snprintf(out, outsize, "%s", rec);       /* POSIX absolute */
  } else if (windows_absolute ||
             (rec[0] && rec[1] == ':') || (rec[0] == '/' && rec[1] == '/')) {
    /* A Windows absolute path ("C:/x/y.vhd", "//server/share/y.vhd"): the
     * drive does not exist here, so look beside the child. */
    name = strrchr(rec, '/');
    name = name ? name + 1 : (rec[0] && rec[1] == ':' ? rec + 2 : rec);
    n = dirlen ? snprintf(out, outsize, "%.*s/%s", (int) dirlen, child_path, name)
               : snprintf(out, outsize, "%s", name);
  } else {
    const char *r = rec;
    while (r[0] == '.' && r[1] == '/')
      r += 2;
    n = dirlen ? snprintf(out, outsize, "%.*s/%s", (int) dirlen, child_path, r)
               : snprintf(out, outsize, "%s", r);
  }
  if (n < 0 || (size_t) n >= outsize)
    return -ENAMETOOLONG;
  return 0;
}
