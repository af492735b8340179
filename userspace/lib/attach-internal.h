/* attach-internal.h - what attach.c, attach-nbd.c and attach-loop.c share. */
#ifndef DISM_ATTACH_INTERNAL_H
#define DISM_ATTACH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attach.h"
#include "partition.h"

/* Bounded waits (milliseconds). */
#define ATTACH_NODE_WAIT_MS   3000   /* devtmpfs/udev creating /dev nodes */
#define ATTACH_PART_WAIT_MS   10000  /* the kernel's partition scan */
#define ATTACH_DETACH_WAIT_MS 10000  /* teardown after disconnect / clear */

int dism_attach_nbd(const struct dism_attach_request *req, struct dism_attach *out);
int dism_detach_nbd(const struct dism_attach *a);
int dism_attach_abort_nbd(const struct dism_attach *a);
bool dism_attach_alive_nbd(const struct dism_attach *a);

int dism_attach_loop(const struct dism_attach_request *req, struct dism_attach *out);
int dism_detach_loop(const struct dism_attach *a);
bool dism_attach_alive_loop(const struct dism_attach *a);
int dism_attach_autoclear_loop(const struct dism_attach *a);

/* Read a sysfs-style file (trailing newline removed); 0 or -errno. */
int attach_read_file(const char *path, char *buf, size_t len);
/* Write a string to a sysfs file; 0 or -errno. */
int attach_write_file(const char *path, const char *s);
/* Wait until path exists; true if it does. */
bool attach_wait_path(const char *path, int timeout_ms);
/* Make sure /dev/NAME exists: wait for devtmpfs/udev, else mknod it from
 * /sys/class/block/NAME/dev.  0 or -errno (message set). */
int attach_dev_node(const char *name, char *path, size_t len);
void attach_sleep_ms(int ms);

/* Partition table + choice for the disk read through io; fills out's
 * partition fields (partition, part_offset, part_size, part_table, reason,
 * sector_size). */
int attach_choose(const struct dism_disk_io *io, unsigned sector_hint,
                  struct dism_attach *out);

#endif
