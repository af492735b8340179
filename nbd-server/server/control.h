/* SPDX-License-Identifier: GPL-2.0-or-later */
/* control.h - the server's control socket (STATUS, FLUSH, COMMIT,
 * SHUTDOWN); the protocol is described in control.c and docs/nbd-server.md. */
#ifndef DISM_CONTROL_H
#define DISM_CONTROL_H

#include "disk.h"
#include "nbd-server.h"

struct control;

/* Listen on the Unix socket path (mode 0600) and answer commands about
 * disk (the exported disk: an overlay for read-write mounts) on a thread.
 * disk and srv are borrowed. */
int control_start(const char *path, struct disk *disk, struct nbd_server *srv,
                  struct control **out);
/* The same on a socket already listening (nbd_listen_unix), which it
 * takes over (closes it even on failure). */
int control_start_fd(int listen_fd, struct disk *disk, struct nbd_server *srv,
                     struct control **out);
void control_stop(struct control *c);

#endif
