/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-test-hooks.c - common/test-hooks.c: each DISM_TEST_* variable read
 * once, announced on stderr, and the crash hook's kill point. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-hooks.h"
#include "unit-tap.h"

/* In a child: DISM_TEST_CRASH_AFTER_WRITES=n, then `writes` writes.  The
 * signal that ended it, or 0 if it exited. */
static int
crash_after(const char *n, int writes)
{
  int status;
  pid_t pid = fork();

  if (pid == 0) {
    setenv("DISM_TEST_CRASH_AFTER_WRITES", n, 1);
    dism_test_hooks_init();
    for (int i = 0; i < writes; i++)
      if (dism_test_crash_armed)
        dism_test_before_write();
    _exit(0);
  }
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return -1;
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

int
main(void)
{
  ok(crash_after("3", 2) == 0, "CRASH_AFTER_WRITES=3: two writes go through");
  ok(crash_after("3", 3) == SIGKILL, "CRASH_AFTER_WRITES=3: SIGKILL at the third");
  ok(crash_after("0", 1) == SIGKILL, "CRASH_AFTER_WRITES=0: SIGKILL at the first");
  ok(crash_after("", 5) == 0, "CRASH_AFTER_WRITES empty: off");

  unsetenv("DISM_TEST_CRASH_AFTER_WRITES");
  unsetenv("DISM_TEST_SANDBOX_SELFTEST");
  setenv("DISM_TEST_BOOT_ID", "boot-1", 1);
  dism_test_hooks_init();
  ok(!dism_test_crash_armed, "no CRASH_AFTER_WRITES: not armed");
  ok(!dism_test_sandbox_selftest(), "no SANDBOX_SELFTEST: off");
  ok(dism_test_boot_id() && strcmp(dism_test_boot_id(), "boot-1") == 0,
     "BOOT_ID: its value");
  setenv("DISM_TEST_BOOT_ID", "boot-2", 1);
  setenv("DISM_TEST_SANDBOX_SELFTEST", "1", 1);
  dism_test_hooks_init();
  ok(strcmp(dism_test_boot_id(), "boot-1") == 0 && !dism_test_sandbox_selftest(),
     "read once: later changes to the environment are not seen");
  return tap_done();
}
