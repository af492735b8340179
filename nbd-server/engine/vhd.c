/* vhd.c - placeholder until the backend lands. */
#include <errno.h>
#include "formats.h"
int vhd_open(const char *path, int fd, const struct disk_open_opts *opts, struct disk **out)
{ (void) fd; (void) opts; (void) out; disk_set_error("%s: vhd not implemented", path); return -ENOTSUP; }
