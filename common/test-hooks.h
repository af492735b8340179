/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-hooks.h - the test suite's hooks into the programs: the DISM_TEST_*
 * environment variables, all read here, once per process, and announced:
 * each one set makes the process write one warning line to stderr, so a
 * hook is never in force silently.
 *
 *   DISM_TEST_CRASH_AFTER_WRITES=N  SIGKILL just before the N-th image write
 *                                   (disk_full_pwrite), as kill -9 would: the
 *                                   crash tests stop a commit at every write
 *   DISM_TEST_SANDBOX_SELFTEST=1    the server tries what its sandbox must
 *                                   refuse, and logs each attempt
 *   DISM_TEST_BOOT_ID=ID            the overlay's boot id: a simulated reboot
 *   DISM_TEST_STEPS_LOG=FILE        append the name of each step of a mount,
 *                                   unmount, remount or commit as it is reached
 *   DISM_TEST_KILL_AT=STEP[:N]      SIGKILL at the N-th (default first) time
 *                                   STEP is reached: the kill tests stop an
 *                                   operation at every step
 *   DISM_TEST_PAUSE_AT=STEP:FILE    at STEP, create FILE (holding the pid) and
 *                                   wait until it is removed: the locking tests
 *                                   hold an operation in the middle
 */
#ifndef DISM_TEST_HOOKS_H
#define DISM_TEST_HOOKS_H

#include <stdbool.h>

/* Read the hooks and warn about those set.  Idempotent and thread-safe;
 * called where a program starts using them (disk_open, the server's
 * main), never on a per-write path. */
void dism_test_hooks_init(void);

/* Set by dism_test_hooks_init when DISM_TEST_CRASH_AFTER_WRITES is: the
 * write path tests this flag alone, then calls dism_test_before_write. */
extern bool dism_test_crash_armed;

/* Count one image write; SIGKILL the process if it is the N-th. */
void dism_test_before_write(void);

/* DISM_TEST_SANDBOX_SELFTEST set (non-empty). */
bool dism_test_sandbox_selftest(void);

/* DISM_TEST_BOOT_ID, or NULL when unset or empty. */
const char *dism_test_boot_id(void);

/* An operation reached step (libdism's mount.c and live.c name theirs):
 * log, kill or pause as the hooks above say. */
void dism_test_step(const char *step);

#endif
