/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* formats.h - the format backends (engine-internal): one table entry per
 * format, exported by its file (raw.c, vhd.c, vhdx.c, wimvol.c).  disk.c chooses
 * from the table (disk_open: by name, or by probing in table order). */
#ifndef DISM_FORMATS_H
#define DISM_FORMATS_H

#include <stdbool.h>
#include <stdint.h>

#include "disk.h"

struct disk_format {
  const char *name;                  /* "raw", "vhd", "vhdx", "wim" (--format) */
  /* Does the file (file_size bytes, open as fd) look like this format? */
  bool (*probe)(int fd, uint64_t file_size);
  /* Takes ownership of fd on success and leaves it open on failure (the
   * caller closes it). */
  int (*open)(const char *path, int fd, const struct disk_open_opts *opts,
              struct disk **out);
};

/* Is this thread inside disk_pread_nowait?  Backends that do more than
 * disk_full_pread (decompression: wim-source.c) answer -EAGAIN then. */
bool disk_nowait_reads(void);

extern const struct disk_format dism_format_raw;
extern const struct disk_format dism_format_vhd;
extern const struct disk_format dism_format_vhdx;
extern const struct disk_format dism_format_wim;

#endif
