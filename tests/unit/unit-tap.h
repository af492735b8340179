/* SPDX-License-Identifier: GPL-2.0-or-later */
/* unit-tap.h - the few lines of TAP the unit tests of common/ print. */
#ifndef DISM_UNIT_TAP_H
#define DISM_UNIT_TAP_H

#include <stdio.h>

static int tap_n, tap_failed;

/* ok(cond, "what %d", ...): one test line; the format names the check. */
#define ok(cond, ...)                                                   \
  do {                                                                  \
    int ok_ = !!(cond);                                                 \
    printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);                   \
    printf(__VA_ARGS__);                                                \
    printf("\n");                                                       \
    if (!ok_) {                                                         \
      tap_failed++;                                                     \
      printf("#   at %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
    }                                                                   \
  } while (0)

/* The plan at the end; the exit status says whether everything passed. */
static inline int
tap_done(void)
{
  printf("1..%d\n", tap_n);
  fflush(stdout);
  return tap_failed ? 1 : 0;
}

#endif
