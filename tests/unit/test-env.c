/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-env.c - common/env.h: unset, empty and set variables. */
#include <stdlib.h>

#include "env.h"
#include "unit-tap.h"

#define VAR "DISM_UNIT_TEST_ENV"

int
main(void)
{
  unsetenv(VAR);
  ok(dism_env_long(VAR, 30) == 30, "unset: the default");
  setenv(VAR, "", 1);
  ok(dism_env_long(VAR, 30) == 30, "empty: the default");
  setenv(VAR, "5", 1);
  ok(dism_env_long(VAR, 30) == 5, "\"5\": 5");
  setenv(VAR, "-7", 1);
  ok(dism_env_long(VAR, 30) == -7, "\"-7\": -7 (the caller judges the range)");
  setenv(VAR, "abc", 1);
  ok(dism_env_long(VAR, 30) == 0, "\"abc\": 0, as strtol reads it");
  setenv(VAR, "12ms", 1);
  ok(dism_env_long(VAR, 30) == 12, "\"12ms\": the leading number");
  return tap_done();
}
