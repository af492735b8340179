/* dism-error.c - the calling thread's error messages, and the API edge's
 * turning them into HRESULTs (see dism-error.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "disk.h"
#include "dism-internal.h"

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

int
dism_error_from_engine(int rc)
{
  dism_set_error("%s", disk_last_error());
  return rc;
}

static HRESULT
publish(const char *func, HRESULT hr, const char *msg)
{
  if (msg != slot.published)
    snprintf(slot.published, sizeof slot.published, "%s", msg);
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
  return publish(func, hr, slot.message);
}

HRESULT
dism_api_fail_errno(const char *func, int neg_errno)
{
  return publish(func, dism_hr_from_errno(neg_errno), slot.message);
}

const char *
dism_published_error(void)
{
  return slot.published;
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
  case ESRCH: return DISMAPI_E_INVALID_IMAGE_INDEX;
  default: return E_FAIL;
  }
}
