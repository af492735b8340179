/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-hooks.c - the DISM_TEST_* environment variables (test-hooks.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test-hooks.h"

bool dism_test_crash_armed;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static long crash_after_writes;
static long writes_done;
static bool sandbox_selftest;
static const char *boot_id;
static const char *steps_log, *kill_at, *pause_at;
static long step_hits;

/* The value of a hook, NULL when unset or empty; warns when set. */
static const char *
hook(const char *name)
{
  const char *v = getenv(name);

  if (!v || !*v)
    return NULL;
  fprintf(stderr, "%s: warning: test hook %s=%s is in force\n",
          program_invocation_short_name, name, v);
  return v;
}

static void
read_hooks(void)
{
  const char *v = hook("DISM_TEST_CRASH_AFTER_WRITES");

  if (v) {
    crash_after_writes = strtol(v, NULL, 10);
    __atomic_store_n(&dism_test_crash_armed, crash_after_writes >= 0, __ATOMIC_RELEASE);
  }
  sandbox_selftest = hook("DISM_TEST_SANDBOX_SELFTEST") != NULL;
  boot_id = hook("DISM_TEST_BOOT_ID");
  steps_log = hook("DISM_TEST_STEPS_LOG");
  kill_at = hook("DISM_TEST_KILL_AT");
  pause_at = hook("DISM_TEST_PAUSE_AT");
}

void
dism_test_hooks_init(void)
{
  pthread_once(&once, read_hooks);
}

void
dism_test_before_write(void)
{
  if (__atomic_add_fetch(&writes_done, 1, __ATOMIC_RELAXED) >= crash_after_writes)
    raise(SIGKILL);
}

bool
dism_test_sandbox_selftest(void)
{
  dism_test_hooks_init();
  return sandbox_selftest;
}

const char *
dism_test_boot_id(void)
{
  dism_test_hooks_init();
  return boot_id;
}

/* Does spec ("NAME" or "NAME:REST") name step?  *rest gets REST or "". */
static bool
names_step(const char *spec, const char *step, const char **rest)
{
  size_t n = strlen(step);
  if (!spec || strncmp(spec, step, n) != 0 || (spec[n] != '\0' && spec[n] != ':'))
    return false;
  *rest = spec[n] ? spec + n + 1 : "";
  return true;
}

void
dism_test_step(const char *step)
{
  const char *rest;
  dism_test_hooks_init();
  if (steps_log) {
    FILE *f = fopen(steps_log, "ae");
    if (f) {
      fprintf(f, "%s\n", step);
      fclose(f);
    }
  }
  if (names_step(kill_at, step, &rest)) {
    long nth = *rest ? strtol(rest, NULL, 10) : 1;
    if (__atomic_add_fetch(&step_hits, 1, __ATOMIC_RELAXED) >= nth)
      raise(SIGKILL);
  }
  if (names_step(pause_at, step, &rest) && *rest) {
    FILE *f = fopen(rest, "we");
    if (!f)
      return;
    fprintf(f, "%ld\n", (long) getpid());
    fclose(f);
    while (access(rest, F_OK) == 0) {
      struct timespec ts = { 0, 10 * 1000000L };
      nanosleep(&ts, NULL);
    }
  }
}
