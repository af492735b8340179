/* SPDX-License-Identifier: LGPL-2.1-or-later */
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
#define ATTACH_IO_TIMEOUT_MS  30000  /* one NBD handshake step or read, one netlink call */

int dism_attach_nbd(const struct dism_attach_request *req, struct dism_attach *out);
int dism_detach_nbd(const struct dism_attach *a);
int dism_attach_abort_nbd(const struct dism_attach *a);
bool dism_attach_alive_nbd(const struct dism_attach *a);

/* The NBD wire before the kernel owns a connection (attach-nbd-wire.c). */
struct dism_nbd_export {
  uint64_t size;
  uint16_t flags;                    /* transmission flags (NBD_FLAG_*) */
  uint32_t min_block;                /* 0 if the server did not say */
};
/* Connect to the server's socket at path and do the fixed-newstyle
 * handshake with NBD_OPT_GO for the default export; *fd_out is the
 * connection, in transmission.  0 or -errno (message set). */
int dism_nbd_handshake(const char *path, int *fd_out, struct dism_nbd_export *ei);
/* A struct dism_disk_io reader over such a connection (simple replies). */
struct dism_nbd_probe {
  int fd;
  uint64_t cookie;
};
int dism_nbd_probe_pread(void *ctx, void *buf, size_t len, uint64_t off);

int dism_attach_loop(const struct dism_attach_request *req, struct dism_attach *out);
int dism_detach_loop(const struct dism_attach *a);
bool dism_attach_alive_loop(const struct dism_attach *a);
int dism_attach_autoclear_loop(const struct dism_attach *a);

/* Read a sysfs-style file (trailing newline removed); 0 or -errno. */
int dism_attach_read_file(const char *path, char *buf, size_t len);
/* Write a string to a sysfs file; 0 or -errno. */
int dism_attach_write_file(const char *path, const char *s);
/* Wait until path exists; true if it does. */
bool dism_attach_wait_path(const char *path, int timeout_ms);
/* Make sure /dev/NAME exists: wait for devtmpfs/udev, else mknod it from
 * /sys/class/block/NAME/dev.  0 or -errno (message set). */
int dism_attach_dev_node(const char *name, char *path, size_t len);
void dism_attach_sleep_ms(int ms);

/* Partition table + choice for the disk read through io; fills out's
 * partition fields (partition, part_offset, part_size, part_table, reason,
 * sector_size). */
int dism_attach_choose(const struct dism_disk_io *io, unsigned sector_hint,
                       struct dism_attach *out);

#endif
