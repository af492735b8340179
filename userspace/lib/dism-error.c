/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dism-error.c - the calling thread's error messages: the one per-thread
 * slot (see dism-error.h).  Depends on nothing else in libdism; the API
 * edge's HRESULTs are in api-error.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dism-error.h"

#define MESSAGE_MAX 2048

/* The one per-thread slot. */
static __thread struct {
  char message[MESSAGE_MAX];     /* the last problem recorded inside */
  char published[MESSAGE_MAX];   /* the last failed API call's */
} slot;

void
dism_set_error(const char *fmt, ...)
{
  /* Format aside first: an argument may be the message itself. */
  char msg[MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(slot.message, msg, sizeof msg);
}

const char *
dism_last_error(void)
{
  return slot.message;
}

void
dism_clear_error(void)
{
  slot.message[0] = '\0';
}

void
dism_publish_error(const char *msg)
{
  if (msg != slot.published)
    snprintf(slot.published, sizeof slot.published, "%s", msg);
}

const char *
dism_published_error(void)
{
  return slot.published;
}
