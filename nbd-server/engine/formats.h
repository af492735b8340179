/* formats.h - the open functions of the format backends (engine-internal).
 * Each takes ownership of fd on success and leaves it open on failure (the
 * caller closes it). */
#ifndef DISM_FORMATS_H
#define DISM_FORMATS_H

#include "disk.h"

int raw_open(const char *path, int fd, const struct disk_open_opts *opts,
             struct disk **out);
int vhd_open(const char *path, int fd, const struct disk_open_opts *opts,
             struct disk **out);
int vhdx_open(const char *path, int fd, const struct disk_open_opts *opts,
              struct disk **out);

#endif
