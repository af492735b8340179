/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dismtab.h - the dismtab(5) parser: the images to mount at boot.
 *
 *   # IMAGE                 INDEX|name=NAME  MOUNTDIR     [OPTIONS]
 *   /srv/img/win11.vhdx     1                /mnt/win11   rw,commit,nofail
 *   /srv/img/install.wim    name=Windows\04011\040Pro  /mnt/install  ro
 *
 * Self-contained (libc only, no libdism state), so the generator, the tests
 * and a fuzzer can use it alone.  It never prints: every problem is returned
 * as a struct dismtab_error naming the file, the line and what is wrong, and
 * a bad line never stops the lines after it.  docs/man/dismtab.5 is the
 * format's reference; docs/boot.md says how the entries are mounted. */
#ifndef DISMTAB_H
#define DISMTAB_H

#include <stdbool.h>
#include <stddef.h>

/* What the entry's unit does with the mount when it is stopped (shutdown). */
enum dismtab_shutdown {
  DISMTAB_DISCARD = 0, /* /Unmount-Image /Discard (read-only entries' default) */
  DISMTAB_COMMIT,      /* /Unmount-Image /Commit */
  DISMTAB_KEEP,        /* unmount, stop the server, keep the record and the
                        * changes: the mount is NeedsRemount at the next boot */
};

#define DISMTAB_DEFAULT_TIMEOUT_S 900u /* start/stop limit unless timeout= */
#define DISMTAB_PATH_MAX 4095u         /* bytes of a path after unescaping */
#define DISMTAB_NAME_MAX 511u          /* bytes of a WIM image name */
#define DISMTAB_FILE_MAX (1u << 20)    /* dismtab_parse_file reads at most this */

struct dismtab_entry {
  unsigned line;            /* 1-based line in the file */
  char *image;              /* absolute; '//' collapsed, no trailing '/' */
  unsigned index;           /* 1.., or 0 when name is set */
  char *name;               /* WIM image name (name=NAME), else NULL */
  char *mount_dir;          /* absolute, normalised like image; never "/" */
  bool read_write;          /* rw (default ro) */
  enum dismtab_shutdown shutdown;
  bool remount;             /* bring back a NeedsRemount mount of it at boot */
  bool nofail;              /* boot does not depend on it (Wants, not Requires) */
  bool check_integrity;     /* /CheckIntegrity (WIM) */
  bool optimize;            /* /Optimize (WIM) */
  bool make_dir;            /* mkdir: create the mount folder if missing */
  char *scratch_dir;        /* scratch=DIR (/ScratchDir:), else NULL */
  char *log_path;           /* log=FILE (/LogPath:), else NULL */
  unsigned timeout_s;       /* timeout=SEC; 0 = no limit */
};

struct dismtab_error {
  char *file;               /* as given to the parser */
  unsigned line;            /* 1-based; 0 = the file as a whole */
  char *message;            /* what is wrong, without the "file:line: " */
};

struct dismtab {
  struct dismtab_entry *entries;   /* the good lines, in file order */
  size_t n_entries;
  struct dismtab_error *errors;    /* the bad lines, in file order */
  size_t n_errors;
};

/* Parse len bytes of dismtab text (NUL bytes in it are errors, not the
 * end).  filename names the text in the errors.  tab is initialised here.
 * Returns 0 (then look at tab->n_errors) or -ENOMEM, with tab left empty. */
int dismtab_parse_buffer(const char *buf, size_t len, const char *filename, struct dismtab *tab);

/* Read and parse a file.  0 as above; -ENOENT if it does not exist (tab
 * empty, no error recorded: no dismtab means nothing to mount); another
 * negative errno if it cannot be read or is larger than DISMTAB_FILE_MAX
 * (tab holds one error with line 0 saying why). */
int dismtab_parse_file(const char *path, struct dismtab *tab);

/* Free what a parse allocated; tab becomes empty.  NULL is fine. */
void dismtab_free(struct dismtab *tab);

/* "discard", "commit" or "keep". */
const char *dismtab_shutdown_name(enum dismtab_shutdown s);

#endif
