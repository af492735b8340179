/* SPDX-License-Identifier: GPL-2.0-or-later */
/* sandbox.h - what dism-nbd-server gives up once it is set up (no new
 * privileges, no capabilities, optionally another user, a Landlock ruleset
 * and a seccomp filter).  Used by main.c only; linked into the server
 * binary, not into libnbdserver.a.  docs/nbd-server.md, section
 * PRIVILEGES, describes the policy. */
#ifndef DISM_SANDBOX_H
#define DISM_SANDBOX_H

#include <stdbool.h>

struct sandbox;

/* A sandbox with nothing allowed yet.  Never fails except on ENOMEM. */
int sandbox_new(struct sandbox **out);

/* Free; a running unmount helper is told to unmount (as when the server
 * dies).  Accepts NULL. */
void sandbox_free(struct sandbox *sb);

/* --user USER[:GROUP] or UID[:GID]: resolved now (NSS may read files),
 * applied by sandbox_lock_down.  Returns 0 or -errno with a message. */
int sandbox_set_user(struct sandbox *sb, const char *spec);

/* What the server still does with paths after setup (Landlock rules). */
int sandbox_allow_remove(struct sandbox *sb, const char *file);  /* unlink at exit */
int sandbox_allow_replace(struct sandbox *sb, const char *file); /* rename into place */
int sandbox_allow_read(struct sandbox *sb, const char *path);    /* file or tree */
/* The FUSE export: /dev/fuse may be opened (libfuse clones its session
 * fd per worker), and its ioctl and splice calls are allowed. */
void sandbox_allow_fuse(struct sandbox *sb);

/* Fork the helper that unmounts the FUSE file fuse_path for the server,
 * which can no longer do it itself (Landlock forbids umount, and it has no
 * CAP_SYS_ADMIN).  The helper keeps CAP_SYS_ADMIN and nothing else, holds
 * no descriptor but a pipe, and unmounts (lazily) when asked or when the
 * server dies.  Call before any thread exists. */
int sandbox_start_unmount_helper(struct sandbox *sb, const char *fuse_path);

/* Ask the helper to unmount and wait for it: 0 once unmounted, -errno
 * otherwise (message in disk_last_error()).  opaque is the sandbox. */
int sandbox_unmount(void *opaque);

/* Step 1, before any thread is created (capabilities, the user and the
 * Landlock domain are per thread; threads inherit them): switch user,
 * drop every capability (and the bounding set), set no_new_privs, apply
 * the Landlock ruleset (skipped with a warning where the kernel has no
 * Landlock).  Returns 0 or -errno with a message. */
int sandbox_lock_down(struct sandbox *sb);

/* Step 2, once the server is created (its TLS credentials read): the
 * seccomp filter, synchronised to every thread. */
int sandbox_filter_syscalls(struct sandbox *sb);

/* One line describing what is in force, for the log. */
const char *sandbox_describe(struct sandbox *sb);

/* DISM_TEST_SANDBOX_SELFTEST=1 (tests): try what the sandbox must refuse (an
 * execve, an AF_INET socket, a fork, kill(1, 0), an executable mapping,
 * opening /etc/passwd, reopening image, creating a file in /tmp) and print
 * one line per attempt to stderr: "sandbox selftest: WHAT: refused
 * (ERROR)", "...: ALLOWED", or "...: failed, not by the sandbox (ERROR)". */
void sandbox_selftest(const char *image);

#endif
