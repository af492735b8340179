/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* env.h - integer settings read from the environment (DISM_*: dism(8),
 * ENVIRONMENT).  Static inline: nothing here becomes a symbol. */
#ifndef DISM_COMMON_ENV_H
#define DISM_COMMON_ENV_H

#include <stdlib.h>

/* The variable as a decimal integer, or dflt when it is unset or empty;
 * callers judge the range. */
static inline long
dism_env_long(const char *name, long dflt)
{
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

#endif
