/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* operation.h - one API call's progress callback and cancel event, shared by
 * the mount files (mount.c, live.c, wim-mount.c). */
#ifndef DISM_OPERATION_H
#define DISM_OPERATION_H

#include <stdbool.h>

#include "DismApi.h"

#define PROGRESS_TOTAL 100

/* One API call's progress callback and cancel event. */
struct dism_op {
  const char *func;
  int cancel_fd;             /* -1: no cancel event */
  DISM_PROGRESS_CALLBACK progress;
  void *user;
  UINT from, span;           /* dism_op_progress(0..100) is reported as from..from+span */
};

HRESULT dism_op_init(struct dism_op *o, const char *func, HANDLE cancel,
                     DISM_PROGRESS_CALLBACK progress, void *user);
/* Report current (0..100) as from..from+span of the whole call. */
void dism_op_progress(struct dism_op *o, UINT current);
/* Has the cancel event been signalled? */
bool dism_op_cancelled(struct dism_op *o);
/* Cancelled at stage: log it, record the message, return -ECANCELED. */
int dism_op_cancel_error(struct dism_op *o, const char *stage);
/* The same as the API's result (ERROR_CANCELLED, message published). */
HRESULT dism_op_cancel_result(struct dism_op *o, const char *stage);

/* The operation reached step: the test suite's kill and pause hooks act
 * on "<func>:<step>" (common/test-hooks.h). */
void dism_op_step(struct dism_op *o, const char *step);

#endif
