/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-commit.c - commit the changes between two NTFS volumes into a WIM
 * image the way a dism commit of a lazily mounted WIM does
 * (dism_wim_commit_changes), without a mount around it: tests/t/79 and the
 * incremental crash test (tests/t/59) run it.
 *
 *   wim-commit WIM INDEX BASE CURRENT SCRATCH [--append] [--integrity] [--cancel]
 *
 * --cancel: the progress callback asks to cancel at its first call.
 * Exit 0 with the index written and the stats on stdout (key=value lines),
 * 3 when cancelled, or 1 with libdism's message. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dism-internal.h"
#include "wim-commit.h"

static unsigned calls;

static bool
progress(unsigned percent, void *opaque)
{
  (void) percent;
  calls++;
  return *(bool *) opaque;
}

int
main(int argc, char **argv)
{
  if (argc < 6) {
    fprintf(stderr, "usage: wim-commit WIM INDEX BASE CURRENT SCRATCH [--append] [--integrity] [--cancel]\n");
    return 2;
  }
  unsigned flags = 0, written = 0;
  bool cancel = false;
  for (int i = 6; i < argc; i++) {
    if (strcmp(argv[i], "--append") == 0)
      flags |= DISM_WIM_COMMIT_APPEND;
    else if (strcmp(argv[i], "--integrity") == 0)
      flags |= DISM_WIM_COMMIT_INTEGRITY;
    else if (strcmp(argv[i], "--cancel") == 0)
      cancel = true;
    else {
      fprintf(stderr, "wim-commit: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  struct dism_wim_commit_stats st;
  int rc = dism_wim_commit_changes(argv[1], (unsigned) strtoul(argv[2], NULL, 10), argv[3],
                                   argv[4], argv[5], flags, progress, &cancel, &written, &st);
  if (rc < 0) {
    fprintf(stderr, "wim-commit: %s: %s\n", strerror(-rc), dism_last_error());
    if (rc == -ECANCELED)
      return 3;
    return 1;
  }
  printf("index=%u\nadded=%llu\nreplaced=%llu\ndeleted=%llu\nrenamed=%llu\n"
         "volume_bytes_read=%llu\ndata_bytes_read=%llu\nfull_capture=%d\nfallback_reason=%s\n"
         "progress_calls=%u\n",
         written, (unsigned long long) st.added, (unsigned long long) st.replaced,
         (unsigned long long) st.deleted, (unsigned long long) st.renamed,
         (unsigned long long) st.volume_bytes_read, (unsigned long long) st.data_bytes_read,
         st.full_capture ? 1 : 0, st.fallback_reason, calls);
  return 0;
}
