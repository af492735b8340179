/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* operation.c - the progress callback and cancel event of one API call
 * (struct dism_op): progress is reported from the calling thread between steps;
 * cancel is polled there too. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>

#include "dism-internal.h"
#include "operation.h"
#include "test-hooks.h"

HRESULT
dism_op_init(struct dism_op *o, const char *func, HANDLE cancel, DISM_PROGRESS_CALLBACK progress,
             void *user)
{
  o->func = func;
  o->cancel_fd = cancel ? DISM_FD_FROM_HANDLE(cancel) : -1;
  o->progress = progress;
  o->user = user;
  o->from = 0;
  o->span = PROGRESS_TOTAL;
  if (o->cancel_fd >= 0 && fcntl(o->cancel_fd, F_GETFD) < 0)
    return dism_api_fail(func, E_HANDLE, "The cancel event handle is not valid.");
  if (cancel && o->cancel_fd < 0)
    return dism_api_fail(func, E_HANDLE, "The cancel event handle is not valid.");
  return S_OK;
}

/* Progress is reported from the calling thread, between steps. */
void
dism_op_progress(struct dism_op *o, UINT current)
{
  if (o->progress)
    o->progress(o->from + current * o->span / PROGRESS_TOTAL, PROGRESS_TOTAL, o->user);
}

/* Signalled?  The counter is not consumed, so the event stays signalled. */
bool
dism_op_cancelled(struct dism_op *o)
{
  if (o->cancel_fd < 0)
    return false;
  struct pollfd p = { .fd = o->cancel_fd, .events = POLLIN };
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int
dism_op_cancel_error(struct dism_op *o, const char *stage)
{
  dism_log(DISM_LOG_INFO, "%s: cancelled %s", o->func, stage);
  dism_set_error("The operation was cancelled (%s); everything it had done was undone.", stage);
  return -ECANCELED;
}

HRESULT
dism_op_cancel_result(struct dism_op *o, const char *stage)
{
  return dism_api_fail_errno(o->func, dism_op_cancel_error(o, stage));
}

void
dism_op_step(struct dism_op *o, const char *step)
{
  char name[128];
  snprintf(name, sizeof name, "%s:%s", o->func, step);
  dism_test_step(name);
}
