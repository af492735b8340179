/* overlay.c - placeholder until the overlay lands. */
#include <errno.h>
#include "overlay.h"
int overlay_open(struct disk *base, const char *p, unsigned f, struct disk **out)
{ (void) base; (void) f; (void) out; disk_set_error("%s: overlay not implemented", p); return -ENOTSUP; }
int overlay_foreach(struct disk *o, overlay_range_fn fn, void *op) { (void) o; (void) fn; (void) op; return -ENOTSUP; }
uint64_t overlay_used_bytes(struct disk *o) { (void) o; return 0; }
