/* dism-error.c - the calling thread's last error message. */
#include <stdio.h>

#include "dism-error.h"

static __thread char last_error[2048];

void
dism_set_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
}

const char *
dism_last_error(void)
{
  return last_error;
}

void
dism_clear_error(void)
{
  last_error[0] = '\0';
}
