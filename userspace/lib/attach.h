/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* attach.h - turn a running dism-nbd-server into a block device holding the
 * file system to mount, and undo it.
 *
 * Two methods:
 *  - NBD: where nbd.ko is loaded or loadable.  The handshake is done here
 *    over one Unix-socket connection to the server (N, multi-conn, when
 *    asked: attach-nbd.c says why one is the default), then the
 *    sockets are handed to the kernel with a generic-netlink NBD_CMD_CONNECT
 *    with no index (the kernel picks /dev/nbdN), BACKEND_IDENTIFIER set, a
 *    dead-connection timeout, then max_sectors raised, a change uevent sent
 *    and the partition table read.
 *  - LOOP: where it is not: the server exposes the virtual disk as one file
 *    through FUSE (dism-nbd-server --fuse-file PATH) and that file (or the
 *    chosen partition's byte range of it: offset + size limit) is attached
 *    to a loop device.
 * Either way the Windows partition is chosen the same way: the NTFS
 * partition holding \Windows, else the largest NTFS partition, else the whole
 * disk if it is NTFS.
 *
 * Everything needed to undo an attach later, from another process, is in
 * struct dism_attach (the mount registry stores it as text).
 */
#ifndef DISM_ATTACH_H
#define DISM_ATTACH_H

#include <stdbool.h>
#include <stdint.h>

enum dism_attach_method {
  DISM_ATTACH_AUTO = 0,
  DISM_ATTACH_NBD = 1,
  DISM_ATTACH_LOOP = 2,
};

struct dism_attach_request {
  enum dism_attach_method method;
  const char *nbd_socket;      /* server's Unix socket (both methods) */
  const char *fuse_file;       /* LOOP: the server's FUSE file of the disk */
  const char *backend_id;      /* "dism:<mount id>" (NBD backend, loop file name) */
  bool readonly;
  unsigned connections;        /* NBD: sockets to hand over (0: DISM_NBD_CONNECTIONS,
                                  else 1); at most the online CPUs and 16 */
  unsigned dead_conn_timeout;  /* NBD: seconds (0: default) */
};

struct dism_attach {
  enum dism_attach_method method;
  char disk_dev[64];           /* /dev/nbd3, or the loop device of the whole disk ("" if none) */
  char fs_dev[64];             /* what to mount: /dev/nbd3p2, /dev/loop8, ... */
  int nbd_index;               /* -1 if not NBD */
  int partition;               /* 1-based partition number mounted; 0 = whole disk */
  uint64_t part_offset, part_size;
  char part_table[8];          /* "mbr", "gpt" or "none" */
  char reason[160];            /* "partition 2 (NTFS, holds \\Windows)" ... for the user */
  /* added by the attach layer (the registry stores them too): */
  char backend_id[64];         /* req->backend_id: tells our device from a reused one */
  unsigned sector_size;        /* logical sector size given to the device (512, 4096) */
};

/* Is the NBD method usable here (nbd.ko loaded, or loaded now by modprobe)? */
bool dism_nbd_available(void);

/* Attach and choose the partition; on failure nothing is left attached. */
int dism_attach(const struct dism_attach_request *req, struct dism_attach *out);
/* Undo dism_attach: disconnect the NBD device or clear the loop devices. */
int dism_detach(const struct dism_attach *a);
/* The server behind the device is gone: make queued and later requests fail
 * now rather than after the dead-connection timeout (NBD: DISCONNECT without
 * waiting; LOOP: nothing, a dead FUSE file already fails), so the file system
 * on it unmounts at once.  dism_detach is still called afterwards. */
int dism_attach_abort(const struct dism_attach *a);
/* Is the recorded device still attached to what we attached (for status)? */
bool dism_attach_alive(const struct dism_attach *a);

/* LOOP: after fs_dev is mounted, let the loop device free itself when the
 * file system lets go of it (LO_FLAGS_AUTOCLEAR).  Not set by dism_attach,
 * because the loop would be cleared the moment dism_attach closes it, before
 * the mount opens it.  NBD: nothing to do (0). */
int dism_attach_autoclear(const struct dism_attach *a);

/* ---- NBD: keeping a device across a restart of its server --------------
 * (dism-supervise).  The kernel keeps /dev/nbdN while its connections are
 * dead: new requests wait up to the dead-connection timeout for a
 * reconnect, requests the dead server never answered are sent again when
 * their request timeout expires. */

/* The /dev/nbdN whose backend is backend_id, or -1. */
int dism_nbd_find(const char *backend_id);
/* Handshake fresh connections to the server at nbd_socket (as many as the
 * device has) and hand them to /dev/nbd<index> with NBD_CMD_RECONFIGURE
 * (and the backend id); each replaces one dead connection, the rest are
 * ignored.  Refused if the export's size differs from the device's. */
int dism_nbd_reconnect(const char *nbd_socket, const char *backend_id, int index);
/* A netlink socket that receives the kernel's LINK_DEAD notices (one per
 * connection that died); read it with dism_nbd_monitor_read, which returns
 * how many were for index (any device if index < 0) without blocking. */
int dism_nbd_monitor_open(void);
int dism_nbd_monitor_read(int fd, int index);

/* Serialise to/from "key=value" lines (the mount registry).  format returns
 * the length written, or -ENOSPC.  parse_kv returns 0 (used), 1 (a key this
 * version does not know: ignored), or -EINVAL (bad value). */
int dism_attach_format(const struct dism_attach *a, char *buf, unsigned len);
int dism_attach_parse_kv(struct dism_attach *a, const char *key, const char *value);

#endif
