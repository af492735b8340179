/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spawn.h - running a child process: the one way the project does it.
 *
 * The child gets the three descriptors it is given as stdin/stdout/stderr
 * and no other (every descriptor from 3 up is closed before exec), so a
 * child never holds a socket, lock or device of ours open.  Only
 * async-signal-safe calls run between fork and exec: callable from
 * threaded programs.  Functions return 0 (or a count/code) or -errno. */
#ifndef DISM_COMMON_SPAWN_H
#define DISM_COMMON_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct dism_spawn_opts {
  int stdin_fd;            /* the child's 0, 1, 2; -1: /dev/null */
  int stdout_fd;
  int stderr_fd;
  bool new_session;        /* setsid(): no controlling terminal, own group */
  bool detach;             /* double fork: the child is not ours (reparented
                            * to init, never our zombie); not waitable */
  bool search_path;        /* argv[0] without '/' is looked up in $PATH */
  bool reset_signals;      /* unblock every signal, SIGPIPE to default */
  /* When exec fails the child writes "<prefix><argv[0]>: <reason>\n" to its
   * stderr if this is set, then exits 127 (as a shell does) either way. */
  const char *exec_fail_prefix;
};

/* The options every caller starts from: /dev/null for 0, 1 and 2. */
#define DISM_SPAWN_OPTS_INIT { .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 }

/* Start argv[0] with argv.  *pid receives the child's pid (with detach:
 * the detached process's pid).  0, or -errno if no child could be made; a
 * program that cannot be executed is a child that exits 127. */
int dism_spawn(const char *const argv[], const struct dism_spawn_opts *o, pid_t *pid);

/* Wait for a (non-detached) child, EINTR retried.  *status: as waitpid
 * gives it (may be NULL).  0 or -errno. */
int dism_spawn_wait(pid_t pid, int *status);

/* A wait status as a shell reports it: the exit code, or 128 + signal. */
int dism_spawn_exit_code(int status);

/* Which part of a longer output dism_spawn_capture keeps. */
enum dism_spawn_keep {
  DISM_SPAWN_KEEP_HEAD,    /* the first cap-1 bytes; reading stops there */
  DISM_SPAWN_KEEP_TAIL,    /* the last bytes: messages end with the reason */
};

/* Run argv[0] (a path) with stdin on /dev/null, stdout and stderr captured
 * together into out (cap >= 1; always NUL-terminated), and wait for it.
 * Returns its exit code (dism_spawn_exit_code), or -errno if it could not
 * be started (out is then ""). */
int dism_spawn_capture(const char *const argv[], char *out, size_t cap,
                       enum dism_spawn_keep keep);

#endif
