/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* api.c - DismInitialize/DismShutdown, sessions, results and their memory,
 * error messages, cancel events, DismGetMountedImageInfo (DismGetImageInfo:
 * api-imageinfo.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "dism-internal.h"
#include "locks.h"
#include "path-size.h"
#include "wim.h"

#define DEFAULT_LOG_PATH "/var/log/dism/dism.log"

/* ---- process state ------------------------------------------------------ */
struct session {
  DismSession id;
  char mount_id[37];         /* "" when the path is not a dism mount */
  char path[DISM_PATH_MAX];
};

static pthread_mutex_t state_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool initialized;
static struct dism_config config;
static struct session *sessions;
static size_t session_count, session_cap;
static DismSession next_session_id = 1;

static pthread_mutex_t alloc_mutex = PTHREAD_MUTEX_INITIALIZER;
static void **allocations;
static size_t allocation_count, allocation_cap;

const struct dism_config *
dism_config(void)
{
  return &config;
}

HRESULT
dism_path_arg(const char *func, PCWSTR w, const char *what, char **out)
{
  *out = NULL;
  if (!w || !*w)
    return dism_api_fail(func, E_INVALIDARG, "The %s is missing or empty.", what);
  char *s = dism_wide_to_utf8(w);
  if (!s)
    return errno == ENOMEM ? dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.")
                           : dism_api_fail(func, E_INVALIDARG,
                                           "The %s is not valid Unicode text.", what);
  if (strchr(s, '\n')) {
    free(s);
    return dism_api_fail(func, E_INVALIDARG, "The %s contains a newline.", what);
  }
  *out = s;
  return S_OK;
}

HRESULT
dism_require_init(void)
{
  pthread_mutex_lock(&state_mutex);
  bool ok = initialized;
  pthread_mutex_unlock(&state_mutex);
  return ok ? S_OK : DISMAPI_E_DISMAPI_NOT_INITIALIZED;
}

static int
absolute_path(const char *path, char *out, size_t cap)
{
  if (path[0] == '/') {
    snprintf(out, cap, "%s", path);
    return 0;
  }
  char cwd[DISM_PATH_MAX];
  if (!getcwd(cwd, sizeof cwd))
    return -errno;
  if (snprintf(out, cap, "%s/%s", cwd, path) >= (int) cap)
    return -ENAMETOOLONG;
  return 0;
}

DISM_API HRESULT WINAPI
DismInitialize(DismLogLevel LogLevel, PCWSTR LogFilePath, PCWSTR ScratchDirectory)
{
  static const char func[] = "DismInitialize";
  HRESULT hr = S_OK;
  char *log_arg = NULL, *scratch_arg = NULL;
  struct dism_config cfg = { .log_level = LogLevel };

  pthread_mutex_lock(&state_mutex);
  if (initialized) {
    hr = dism_api_fail(func, DISMAPI_E_DISMAPI_ALREADY_INITIALIZED,
                       "DISM API was already initialized for this process.");
    goto out;
  }
  if (geteuid() != 0) {
    hr = dism_api_fail(func, HRESULT_FROM_WIN32(ERROR_ELEVATION_REQUIRED),
                       "Elevated permissions are required to run DISM: run it as root "
                       "(e.g. with sudo).");
    goto out;
  }
  if ((int) LogLevel < DismLogErrors || LogLevel > DismLogErrorsWarningsInfoDebug) {
    hr = dism_api_fail(func, E_INVALIDARG, "LogLevel %d is not a DismLogLevel.", (int) LogLevel);
    goto out;
  }
  if (LogFilePath && *LogFilePath) {
    if (FAILED(hr = dism_path_arg(func, LogFilePath, "log file path", &log_arg)))
      goto out;
  }
  if (ScratchDirectory && *ScratchDirectory) {
    if (FAILED(hr = dism_path_arg(func, ScratchDirectory, "scratch directory", &scratch_arg)))
      goto out;
  }
  if (absolute_path(log_arg ? log_arg : DEFAULT_LOG_PATH, cfg.log_path, sizeof cfg.log_path) < 0) {
    hr = dism_api_fail(func, E_INVALIDARG, "The log file path is too long.");
    goto out;
  }
  char scratch_default[DISM_SUBPATH_MAX];
  snprintf(scratch_default, sizeof scratch_default, "%s/scratch", dism_state_dir());
  const char *scratch = scratch_arg ? scratch_arg : scratch_default;
  if (dism_mkdir_p(scratch, 0700) < 0 ||
      dism_canonical(scratch, cfg.scratch_dir, sizeof cfg.scratch_dir) < 0) {
    hr = dism_api_fail(func, E_INVALIDARG, "The scratch directory %s cannot be used: %s",
                       scratch, dism_last_error()[0] ? dism_last_error() : strerror(errno));
    goto out;
  }
  struct stat st;
  if (stat(cfg.scratch_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    hr = dism_api_fail(func, E_INVALIDARG, "The scratch directory %s is not a directory.",
                       cfg.scratch_dir);
    goto out;
  }
  if (dism_log_open(cfg.log_path, LogLevel) < 0) {
    hr = dism_api_fail_last(func, DISMAPI_E_LOGGING_DISABLED);
    goto out;
  }
  config = cfg;
  initialized = true;
  dism_log(DISM_LOG_INFO, "DismInitialize: log level %d, log %s, scratch directory %s",
           (int) LogLevel, cfg.log_path, cfg.scratch_dir);
out:
  pthread_mutex_unlock(&state_mutex);
  free(log_arg);
  free(scratch_arg);
  return hr;
}

DISM_API HRESULT WINAPI
DismShutdown(void)
{
  HRESULT hr = S_OK;
  pthread_mutex_lock(&state_mutex);
  if (!initialized)
    hr = dism_api_fail("DismShutdown", DISMAPI_E_DISMAPI_NOT_INITIALIZED,
                       "DismInitialize has not been called in this process.");
  else if (session_count > 0)
    hr = dism_api_fail("DismShutdown", DISMAPI_E_OPEN_SESSION_HANDLES,
                       "%zu DismSession(s) are still open: close them with DismCloseSession.",
                       session_count);
  if (SUCCEEDED(hr)) {
    dism_log(DISM_LOG_INFO, "DismShutdown");
    dism_log_close();
    initialized = false;
  }
  pthread_mutex_unlock(&state_mutex);
  return hr;
}

/* ---- sessions ------------------------------------------------------------ */
bool
dism_session_open_on(const char *mount_id)
{
  bool found = false;
  pthread_mutex_lock(&state_mutex);
  for (size_t i = 0; i < session_count && !found; i++)
    found = strcmp(sessions[i].mount_id, mount_id) == 0;
  pthread_mutex_unlock(&state_mutex);
  return found;
}

bool
dism_session_lookup(DismSession s, char mount_id[37], char *path, size_t cap)
{
  bool found = false;
  pthread_mutex_lock(&state_mutex);
  for (size_t i = 0; i < session_count && !found; i++) {
    if (sessions[i].id == s) {
      found = true;
      memcpy(mount_id, sessions[i].mount_id, 37);
      snprintf(path, cap, "%s", sessions[i].path);
    }
  }
  pthread_mutex_unlock(&state_mutex);
  return found;
}

DISM_API HRESULT WINAPI
DismOpenSession(PCWSTR ImagePath, PCWSTR WindowsDirectory, PCWSTR SystemDrive,
                DismSession *Session)
{
  static const char func[] = "DismOpenSession";
  HRESULT hr = S_OK;
  char *path = NULL;
  char canon[DISM_PATH_MAX];
  struct dism_record *rec = NULL;
  (void) WindowsDirectory;
  (void) SystemDrive;
  REQUIRE_INIT(func);
  if (!Session)
    return dism_api_fail(func, E_INVALIDARG, "Session is NULL.");
  *Session = DISM_SESSION_DEFAULT;
  if (ImagePath && wcscmp(ImagePath, DISM_ONLINE_IMAGE) == 0)
    return dism_api_fail(func, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                         "Servicing the running system (DISM_ONLINE_IMAGE) is not supported.");
  if (FAILED(hr = dism_path_arg(func, ImagePath, "image path", &path)))
    return hr;
  struct stat st;
  if (dism_canonical(path, canon, sizeof canon) < 0 || stat(canon, &st) < 0 || !S_ISDIR(st.st_mode)) {
    hr = dism_api_fail(func, E_INVALIDARG, "%s is not an existing directory.", path);
    goto out;
  }
  rec = malloc(sizeof *rec);
  if (!rec) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  bool is_mount = dism_record_find_by_dir(canon, rec) == 0;
  if (is_mount) {
    DismMountStatus status = dism_record_status(rec);
    if (status == DismMountStatusNeedsRemount) {
      hr = dism_api_fail(func, DISMAPI_E_NEEDS_REMOUNT,
                         "The image mounted at %s needs to be remounted before any servicing "
                         "operation (DismRemountImage, dism /Remount-Image).", canon);
      goto out;
    }
    if (status == DismMountStatusInvalid) {
      hr = dism_api_fail(func, E_FAIL,
                         "The mount at %s is invalid (its image or folder is gone): clean it "
                         "up with DismCleanupMountpoints.", canon);
      goto out;
    }
  }
  pthread_mutex_lock(&state_mutex);
  if (session_count == session_cap) {
    size_t cap = session_cap ? session_cap * 2 : 4;
    struct session *grown = realloc(sessions, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&state_mutex);
      hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
      goto out;
    }
    sessions = grown;
    session_cap = cap;
  }
  struct session *s = &sessions[session_count++];
  s->id = next_session_id++;
  if (next_session_id == DISM_SESSION_DEFAULT)
    next_session_id = 1;
  snprintf(s->mount_id, sizeof s->mount_id, "%s", is_mount ? rec->id : "");
  snprintf(s->path, sizeof s->path, "%s", canon);
  *Session = s->id;
  pthread_mutex_unlock(&state_mutex);
  dism_log(DISM_LOG_INFO, "DismOpenSession: session %u on %s%s", (unsigned) *Session, canon,
           is_mount ? "" : " (not a dism mount)");
out:
  free(rec);
  free(path);
  return hr;
}

DISM_API HRESULT WINAPI
DismCloseSession(DismSession Session)
{
  REQUIRE_INIT("DismCloseSession");
  bool found = false;
  pthread_mutex_lock(&state_mutex);
  for (size_t i = 0; i < session_count && !found; i++) {
    if (sessions[i].id == Session) {
      sessions[i] = sessions[--session_count];
      found = true;
    }
  }
  pthread_mutex_unlock(&state_mutex);
  if (!found)
    return dism_api_fail("DismCloseSession", DISMAPI_E_INVALID_DISM_SESSION,
                         "%u is not an open DismSession.", (unsigned) Session);
  dism_log(DISM_LOG_INFO, "DismCloseSession: session %u", (unsigned) Session);
  return S_OK;
}

/* ---- results: one allocation each, freed by DismDelete ------------------- */
int
dism_track_allocation(void *p)
{
  int rc = 0;
  pthread_mutex_lock(&alloc_mutex);
  if (allocation_count == allocation_cap) {
    size_t cap = allocation_cap ? allocation_cap * 2 : 16;
    void **grown = realloc(allocations, cap * sizeof *grown);
    if (!grown)
      rc = -ENOMEM;
    else {
      allocations = grown;
      allocation_cap = cap;
    }
  }
  if (rc == 0)
    allocations[allocation_count++] = p;
  pthread_mutex_unlock(&alloc_mutex);
  return rc;
}

DISM_API HRESULT WINAPI
DismDelete(VOID *DismStructure)
{
  if (!DismStructure)
    return S_OK;
  bool found = false;
  pthread_mutex_lock(&alloc_mutex);
  for (size_t i = 0; i < allocation_count && !found; i++) {
    if (allocations[i] == DismStructure) {
      allocations[i] = allocations[--allocation_count];
      found = true;
    }
  }
  pthread_mutex_unlock(&alloc_mutex);
  if (!found)
    return E_INVALIDARG;
  free(DismStructure);
  return S_OK;
}

/* Copy a UTF-8 string as wide text at *cursor, advancing it. */
PCWSTR
dism_put_wide(wchar_t **cursor, const char *s)
{
  wchar_t *start = *cursor;
  size_t n = dism_utf8_wide_len(s);
  dism_utf8_to_wide(s, start, n);
  *cursor += n;
  return start;
}

DISM_API HRESULT WINAPI
DismGetLastErrorMessage(DismString **ErrorMessage)
{
  if (!ErrorMessage)
    return E_INVALIDARG;
  *ErrorMessage = NULL;
  const char *text = dism_published_error();
  size_t n = dism_utf8_wide_len(text);
  /* The struct is followed by the text; round it up so the text is aligned. */
  size_t head = (sizeof(DismString) + sizeof(wchar_t) - 1) / sizeof(wchar_t) * sizeof(wchar_t);
  DismString *s = malloc(head + n * sizeof(wchar_t));
  if (!s)
    return E_OUTOFMEMORY;
  wchar_t *cursor = (wchar_t *) ((char *) s + head);
  s->Value = dism_put_wide(&cursor, text);
  if (dism_track_allocation(s) < 0) {
    free(s);
    return E_OUTOFMEMORY;
  }
  *ErrorMessage = s;
  return S_OK;
}

/* ---- cancel events ------------------------------------------------------- */
DISM_API HANDLE
DismCreateCancelEvent(void)
{
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? NULL : DISM_HANDLE_FROM_FD(fd);
}

DISM_API HRESULT
DismSetCancelEvent(HANDLE CancelEvent)
{
  if (!CancelEvent)
    return E_HANDLE;
  uint64_t one = 1;
  if (write(DISM_FD_FROM_HANDLE(CancelEvent), &one, sizeof one) != (ssize_t) sizeof one)
    return E_HANDLE;
  return S_OK;
}

DISM_API HRESULT
DismCloseCancelEvent(HANDLE CancelEvent)
{
  if (!CancelEvent)
    return E_HANDLE;
  return close(DISM_FD_FROM_HANDLE(CancelEvent)) < 0 ? E_HANDLE : S_OK;
}

/* ---- DismGetMountedImageInfo ---------------------------------------------- */
DISM_API HRESULT WINAPI
DismGetMountedImageInfo(DismMountedImageInfo **MountedImageInfo, UINT *Count)
{
  static const char func[] = "DismGetMountedImageInfo";
  REQUIRE_INIT(func);
  if (!MountedImageInfo || !Count)
    return dism_api_fail(func, E_INVALIDARG, "MountedImageInfo and Count must not be NULL.");
  *MountedImageInfo = NULL;
  *Count = 0;
  HRESULT hr = S_OK;
  char(*ids)[37] = NULL;
  size_t n = 0, shown = 0;
  struct dism_record *recs = NULL;
  DismMountStatus *status = NULL;
  int rc = dism_record_list(&ids, &n);
  if (rc < 0) {
    hr = dism_api_fail(func, dism_hr_from_errno(rc), "Cannot list the mount records: %s",
                       strerror(-rc));
    goto out;
  }
  if (n == 0)
    goto out;
  recs = calloc(n, sizeof *recs);
  status = calloc(n, sizeof *status);
  if (!recs || !status) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  size_t text = 0;
  for (size_t i = 0; i < n; i++) {
    struct dism_record *r = &recs[shown];
    int read_rc = dism_record_read(ids[i], r);
    if (read_rc < 0 && r->mount_dir[0] == '\0')
      continue; /* nothing to show; DismCleanupMountpoints removes it */
    /* A mount still being made is not a mount yet; one whose maker died
     * is shown, with what is left of it. */
    if (read_rc == 0 && strcmp(r->state, "mounting") == 0 && dism_folder_busy(r->mount_dir))
      continue;
    status[shown] = read_rc < 0 ? DismMountStatusInvalid : dism_record_status(r);
    if (r->index == 0)
      r->index = 1;
    text += dism_utf8_wide_len(r->mount_dir) + dism_utf8_wide_len(r->image);
    shown++;
  }
  if (shown == 0)
    goto out;
  size_t head = shown * sizeof(DismMountedImageInfo);
  head = (head + sizeof(wchar_t) - 1) / sizeof(wchar_t) * sizeof(wchar_t);
  DismMountedImageInfo *info = malloc(head + text * sizeof(wchar_t));
  if (!info) {
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  wchar_t *cursor = (wchar_t *) ((char *) info + head);
  for (size_t i = 0; i < shown; i++) {
    info[i].MountPath = dism_put_wide(&cursor, recs[i].mount_dir);
    info[i].ImageFilePath = dism_put_wide(&cursor, recs[i].image);
    info[i].ImageIndex = recs[i].index;
    info[i].MountMode = recs[i].mode == DISM_MODE_RO ? DismReadOnly : DismReadWrite;
    info[i].MountStatus = status[i];
  }
  if (dism_track_allocation(info) < 0) {
    free(info);
    hr = dism_api_fail(func, E_OUTOFMEMORY, "Out of memory.");
    goto out;
  }
  *MountedImageInfo = info;
  *Count = (UINT) shown;
out:
  free(status);
  free(recs);
  free(ids);
  return hr;
}
