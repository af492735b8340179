/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* api-error.c - the API edge's errors: a failed Dism* call publishes the
 * thread's message for DismGetLastErrorMessage, logs it with its HRESULT,
 * and a negative errno from inside becomes the HRESULT DISM gives (the one
 * table, dism_hr_from_errno).  See dism-error.h. */
#include <errno.h>
#include <stdio.h>

#include "disk.h"
#include "dism-internal.h"

#define MESSAGE_MAX 2048

static HRESULT
publish(const char *func, HRESULT hr, const char *msg)
{
  dism_publish_error(msg);
  dism_log(DISM_LOG_ERROR, "%s failed. HRESULT=0x%08X: %s", func, (unsigned) hr, msg);
  return hr;
}

HRESULT
dism_api_fail(const char *func, HRESULT hr, const char *fmt, ...)
{
  char msg[MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return publish(func, hr, msg);
}

HRESULT
dism_api_fail_last(const char *func, HRESULT hr)
{
  return publish(func, hr, dism_last_error());
}

HRESULT
dism_api_fail_errno(const char *func, int neg_errno)
{
  return publish(func, dism_hr_from_errno(neg_errno), dism_last_error());
}

HRESULT
dism_hr_from_errno(int neg_errno)
{
  switch (-neg_errno) {
  case ENOENT: return HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND);
  case EACCES:
  case EPERM: return E_ACCESSDENIED;
  case EROFS: return HRESULT_FROM_WIN32(ERROR_WRITE_PROTECT);
  case ENOSPC: return HRESULT_FROM_WIN32(ERROR_DISK_FULL);
  case EBUSY: return HRESULT_FROM_WIN32(ERROR_BUSY);
  case ETXTBSY: return HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION);
  case ENOMEM: return E_OUTOFMEMORY;
  case ENOTSUP: return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
  case EINVAL: return E_INVALIDARG;
  case ECANCELED: return HRESULT_FROM_WIN32(ERROR_CANCELLED);
  case EBADMSG:
  case EUCLEAN: return HRESULT_FROM_WIN32(ERROR_FILE_CORRUPT);
  /* libdism's own meanings: ETXTBSY is a file another program holds
   * (a locked WIM), ESRCH "no such image in this file". */
  case ESRCH: return DISMAPI_E_INVALID_IMAGE_INDEX;
  default: return E_FAIL;
  }
}

int
dism_error_from_engine(int rc)
{
  dism_set_error("%s", disk_last_error());
  return rc;
}
