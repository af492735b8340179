/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-capture.c - commit an NTFS volume file into a WIM the way a dism
 * commit does (dism_wim_capture), without a mount around it: the WIM crash
 * test (tests/t/57-wim-commit-crash.t) runs it under tests/shim/crash-shim.so
 * at many kill points.
 *
 *   wim-capture WIM INDEX VOLUME [--append] [--integrity]
 *
 * Exit 0 and the index written on stdout, or 1 with libdism's message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dism-internal.h"
#include "wim.h"

int
main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: wim-capture WIM INDEX VOLUME [--append] [--integrity]\n");
    return 2;
  }
  unsigned flags = 0, written = 0;
  for (int i = 4; i < argc; i++) {
    if (strcmp(argv[i], "--append") == 0)
      flags |= DISM_WIM_COMMIT_APPEND;
    else if (strcmp(argv[i], "--integrity") == 0)
      flags |= DISM_WIM_COMMIT_INTEGRITY;
    else {
      fprintf(stderr, "wim-capture: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  int rc = dism_wim_capture(argv[1], (unsigned) strtoul(argv[2], NULL, 10), argv[3], flags,
                            NULL, NULL, &written);
  if (rc < 0) {
    fprintf(stderr, "wim-capture: %s: %s\n", strerror(-rc), dism_last_error());
    return 1;
  }
  printf("%u\n", written);
  return 0;
}
