/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dism-registry.h - the mount registry (registry.c): one record per mount
 * (persistent, <state>/mounts/<id>.conf), the paths of a mount's live part
 * (<run>/mounts/<id>/), the registry lock.  Storage only: whether a mount
 * is healthy is live.c's question (dism_record_status). */
#ifndef DISM_REGISTRY_H
#define DISM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attach.h"
#include "path-size.h"

enum dism_mode { DISM_MODE_RW = 0, DISM_MODE_RO = 1 };

struct dism_record {
  char id[37];
  char image[DISM_PATH_MAX];     /* absolute, canonical */
  uint64_t image_dev, image_ino;
  char format[8];                /* "vhd", "vhdx", "wim" */
  unsigned index;
  char image_name[512];          /* WIM: the image's name at mount time */
  char volume[DISM_PATH_MAX];    /* WIM: the map of its metadata volume, served ("" otherwise) */
  enum dism_mode mode;
  char mount_dir[DISM_PATH_MAX]; /* absolute, canonical */
  char overlay[DISM_PATH_MAX];   /* "" for read-only mounts */
  char server_cmd[8192];         /* for the log and for people */
  int64_t created;
  char state[24];                /* "mounted", "commit-failed" */
  bool have_attach;
  struct dism_attach attach;
};

/* Paths: DISM_RUN_DIR (default /run/dism) holds the live part and the lock,
 * DISM_STATE_DIR (default /var/lib/dism) the records and default scratch. */
const char *dism_run_dir(void);
const char *dism_state_dir(void);
void dism_live_dir(const char *id, char *out, size_t cap);
void dism_record_path(const char *id, char *out, size_t cap);

/* Exclusive registry lock (flock on <run>/lock), across processes. */
int dism_registry_lock(void);         /* returns the lock fd */
void dism_registry_unlock(int fd);

int dism_record_write(const struct dism_record *r);
int dism_record_read(const char *id, struct dism_record *r);
/* The same format at another path (the live part's live.conf). */
int dism_record_write_path(const char *path, const struct dism_record *r);
int dism_record_read_path(const char *path, const char *id, struct dism_record *r);
int dism_record_remove(const char *id);
/* All record ids; *ids is one malloc'd array of 37-byte strings. */
int dism_record_list(char (**ids)[37], size_t *count);
/* The record whose mount_dir equals canonical dir; -ENOENT if none. */
int dism_record_find_by_dir(const char *dir, struct dism_record *r);

/* The live part of a mount: /run/dism/mounts/<id>/{nbd.sock, control.sock,
 * server.pid, server.log, disk, live.conf}.  live.conf repeats what is
 * needed to undo a half-made mount that has no record yet. */
struct dism_live {
  char dir[DISM_PATH_MAX];
  char nbd_sock[DISM_SUBPATH_MAX];
  char control_sock[DISM_SUBPATH_MAX];
  char pidfile[DISM_SUBPATH_MAX];
  char sup_pidfile[DISM_SUBPATH_MAX]; /* supervisor.pid: dism-supervise, the server's parent */
  char server_log[DISM_SUBPATH_MAX];
  char fuse_file[DISM_SUBPATH_MAX];
  char live_conf[DISM_SUBPATH_MAX];
};
void dism_live_paths(const char *id, struct dism_live *l);

/* Is the record a WIM mount (served from its synthesized volume)? */
bool dism_record_is_wim(const struct dism_record *r);

#endif
