/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dism-server.h - one mount's dism-nbd-server (server.c): start it under
 * its supervisor, find it, stop it, COMMIT through its control socket. */
#ifndef DISM_SERVER_H
#define DISM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dism-registry.h"

/* Start dism-nbd-server for a record, under dism-supervise (which restarts
 * it if it dies; $DISM_SUPERVISE names it, "off" runs the server alone);
 * waits for its pidfile.  cmd_out gets the server's command line.  fuse:
 * pass --fuse-file (LOOP attach). */
int dism_server_start(const struct dism_record *r, const struct dism_live *l, bool fuse,
                      pid_t *pid_out, char *cmd_out, size_t cmd_cap);
/* The pid of the record's live server, or 0 if none runs. */
pid_t dism_server_pid(const struct dism_live *l);
/* The same, but if the server is down while its supervisor (dism-supervise)
 * restarts it, wait for the new one (DISM_SERVER_TIMEOUT_MS at most). */
pid_t dism_server_pid_wait(const struct dism_live *l);
/* The pid of the server's supervisor, or 0 if none runs. */
pid_t dism_supervisor_pid(const struct dism_live *l);
/* Stop the server: its supervisor told to stop restarting it, SHUTDOWN on
 * the control socket, else SIGTERM, then wait; SIGKILL after a timeout. */
int dism_server_stop(const struct dism_live *l);
/* COMMIT over the control socket; progress(cur, total, opaque) per PROGRESS
 * line.  Returns 0 or a negative errno with the server's message. */
typedef void (*dism_commit_progress_fn)(uint64_t cur, uint64_t total, void *opaque);
int dism_server_commit(const struct dism_live *l, dism_commit_progress_fn fn, void *opaque);
/* Locate the server binary. */
int dism_server_path(char *out, size_t cap);

#endif
