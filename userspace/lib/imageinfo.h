/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* imageinfo.h - /Get-ImageInfo's look inside an image, without mounting it
 * and without a kernel device.
 *
 * A VHD/VHDX: the disk is read through the engine (a dism_disk_io), the
 * Windows partition chosen as a mount chooses it (dism_part_choose), its
 * NTFS volume opened with libntfs-3g on top (partition-ntfs.c), and the
 * two hives copied to memory files for hivex (winreg.c).  A WIM: the
 * image's two hives read to memory with wim-source.c.  An image without
 * Windows is not an error: the facts it lacks stay empty.  Functions return
 * 0 or a negative errno (out of memory only); what could not be read is in
 * the warning text. */
#ifndef DISM_IMAGEINFO_H
#define DISM_IMAGEINFO_H

#include <stdbool.h>
#include <stdint.h>

#include "partition.h"
#include "winreg.h"

struct dism_image_facts {
  struct dism_windows win;
  bool have_counts;                  /* dirs and files were counted */
  uint64_t dir_count, file_count;
  uint64_t created, modified;        /* FILETIME (100 ns since 1601), 0 unknown */
  char volume[200];                  /* which volume was read, for the log */
};

/* A virtual disk read through io. */
int dism_disk_facts(const struct dism_disk_io *io, struct dism_image_facts *f);

/* The registry facts of images index[0..count) of a WIM into out[0..count)
 * (the WIM opened once). */
int dism_wim_windows(const char *wim, unsigned count, const unsigned *index,
                     struct dism_windows *out);

#endif
