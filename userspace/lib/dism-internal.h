/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dism-internal.h - what libdism's files share: process state, the API
 * edge's HRESULTs, logging, strings and files, helper programs, the live
 * mount; the mount registry and the server have headers of their own,
 * included here.  Internal functions return 0 or a negative errno and
 * record a message with dism_set_error(); only the API edge turns results
 * into HRESULTs (dism-error.h). */
#ifndef DISM_INTERNAL_H
#define DISM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "DismApi.h"
#include "attach.h"
#include "dism-error.h"
#include "dism-registry.h"   /* the mount registry (registry.c) */
#include "dism-server.h"     /* the server (server.c) */
#include "path-size.h"

#define DISM_API __attribute__((visibility("default")))

/* ---- process state (api.c) ---------------------------------------------- */
struct dism_config {
  char log_path[DISM_PATH_MAX];
  char scratch_dir[DISM_PATH_MAX];
  DismLogLevel log_level;
};
/* The configuration DismInitialize set; valid while initialised. */
const struct dism_config *dism_config(void);
/* 0 when initialised, else DISMAPI_E_DISMAPI_NOT_INITIALIZED (message set). */
HRESULT dism_require_init(void);
/* At the top of an API function: fail it (with the message for
 * DismGetLastErrorMessage) unless DismInitialize has been called. */
#define REQUIRE_INIT(func)                                                         \
  do {                                                                             \
    if (dism_require_init() != S_OK)                                               \
      return dism_api_fail(func, DISMAPI_E_DISMAPI_NOT_INITIALIZED,                \
                           "DismInitialize has not been called in this process."); \
  } while (0)
/* Record an allocation that DismDelete may free (one block per result). */
int dism_track_allocation(void *p);
/* The mount id ("" if none) and path of an open session; false if none. */
bool dism_session_lookup(DismSession s, char mount_id[37], char *path, size_t cap);
/* Is a session of this process open on the mount with this id? */
bool dism_session_open_on(const char *mount_id);

/* ---- the API edge: HRESULTs (api-error.c; see dism-error.h) -------------- */
/* Fail an API call: publish the message for DismGetLastErrorMessage (this
 * thread), log it, return hr. */
HRESULT dism_api_fail(const char *func, HRESULT hr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the thread's message as it stands. */
HRESULT dism_api_fail_last(const char *func, HRESULT hr);
/* The same for a negative errno (dism_hr_from_errno). */
HRESULT dism_api_fail_errno(const char *func, int neg_errno);

/* A negative errno as the HRESULT DISM gives: -ENOENT ERROR_FILE_NOT_FOUND,
 * -EACCES/-EPERM E_ACCESSDENIED, -EROFS ERROR_WRITE_PROTECT, -ENOSPC
 * ERROR_DISK_FULL, -EBUSY ERROR_BUSY, -ETXTBSY ERROR_SHARING_VIOLATION,
 * -ENOMEM E_OUTOFMEMORY, -ENOTSUP ERROR_NOT_SUPPORTED, -EINVAL E_INVALIDARG,
 * -ECANCELED ERROR_CANCELLED, -EUCLEAN/-EBADMSG ERROR_FILE_CORRUPT, -ESRCH
 * (no such image in a WIM) DISMAPI_E_INVALID_IMAGE_INDEX, else E_FAIL. */
HRESULT dism_hr_from_errno(int neg_errno);
/* The disk engine's message (disk_last_error, a library of its own) as
 * this thread's message; returns rc.  Here, at the API edge, and not in
 * dism-error.c: every program that links libdism.a's message slot (the
 * helpers) would otherwise pull in the whole engine. */
int dism_error_from_engine(int rc);

/* A required path argument as UTF-8 (malloc'd); E_INVALIDARG if NULL, empty
 * or not valid Unicode. */
HRESULT dism_path_arg(const char *func, PCWSTR w, const char *what, char **out);

/* ---- logging (log.c) ---------------------------------------------------- */
enum dism_log_kind { DISM_LOG_ERROR = 0, DISM_LOG_WARN = 1, DISM_LOG_INFO = 2, DISM_LOG_DEBUG = 3 };
int dism_log_open(const char *path, DismLogLevel level);
void dism_log_close(void);
void dism_log(enum dism_log_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- strings and files (util.c) ----------------------------------------- */
/* UTF-32 wchar_t -> newly allocated UTF-8; NULL with errno EINVAL on a bad
 * code point, ENOMEM on allocation failure. */
char *dism_wide_to_utf8(const wchar_t *w);
/* UTF-8 -> wide, written to out (capacity in wchar_t); returns the number of
 * wchar_t written including the NUL.  Invalid bytes become U+FFFD. */
size_t dism_utf8_to_wide(const char *s, wchar_t *out, size_t cap);
size_t dism_utf8_wide_len(const char *s);
/* Copy UTF-8 text as wide text at *cursor (room: dism_utf8_wide_len),
 * advancing it; returns where it starts (api.c). */
PCWSTR dism_put_wide(wchar_t **cursor, const char *s);
/* What this thread's last DismGetImageInfo found beyond DismImageInfo
 * (api-imageinfo.c), for the dism command: the warnings ("" if none, one
 * a line: a hive that could not be read) and, for a VHD/VHDX, whose
 * CustomizedInfo is NULL as in Microsoft's API, the counts and times of
 * the volume read. */
struct dism_image_info_extra {
  bool have_counts;
  unsigned long long dir_count, file_count;
  SYSTEMTIME created, modified;
  char volume[200];                  /* which volume was read */
  char warnings[2048];
};
const struct dism_image_info_extra *dism_image_info_extra(void);
/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync the directory. */
int dism_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode);
/* mkdir -p with mode for the created parts. */
int dism_mkdir_p(const char *path, mode_t mode);
/* A directory only its owner may enter: created 0700 (with its missing
 * parents) when create is set; an existing one must be a directory owned
 * by the caller (else -EPERM with a message) and loses any group/other
 * permission.  A missing one is left alone when create is not set. */
int dism_private_dir(const char *path, bool create);
/* Remove a directory and the regular files/sockets directly inside it. */
int dism_remove_flat_dir(const char *path);
/* Absolute, canonical path of an existing file (realpath). */
int dism_canonical(const char *path, char *out, size_t cap);
/* Does the file end with ext (".vhd"), compared case-insensitively? */
bool dism_has_ext(const char *path, const char *ext);
/* Is path a mount point?  dev_source, if not NULL, receives the source. */
bool dism_is_mountpoint(const char *path, char *source, size_t cap);
/* Open (O_CREAT with create) and flock(how) the lock file path: the fd,
 * whose close drops the lock, or -errno (-EAGAIN, without a message, when
 * how has LOCK_NB and another holds it). */
int dism_flock_open(const char *path, int how, bool create);
/* umount2(dir, 0), retried for up to a second while it fails with EBUSY:
 * 0 or -errno (-EBUSY: files are really open there). */
int dism_umount_patiently(const char *dir);
/* Read up to cap-1 bytes of a file's tail (for error messages). */
void dism_read_tail(const char *path, char *out, size_t cap);

/* ---- helper programs (util.c) ------------------------------------------- */
/* A tool's path: $env if set and not empty (taken as is: exec reports a bad
 * one), else the first executable of candidates (NULL-terminated), else
 * NULL.  The result is borrowed (the environment or candidates). */
const char *dism_find_tool(const char *env, const char *const candidates[]);
/* Running them: common/spawn.h (dism_spawn, dism_spawn_capture). */

/* ---- the live mount (live.c) ------------------------------------------- */
/* Status of a record as DismGetMountedImageInfo reports it. */
DismMountStatus dism_record_status(const struct dism_record *r);
/* Is the record's file system mounted at its mount dir from its device? */
bool dism_record_mounted(const struct dism_record *r);
/* Undo whatever live state a record (or live.conf) describes: unmount the
 * file system (lazily if force), detach, stop the server.  Never fails
 * half-way silently: returns the first error, continues with the rest only
 * when force. */
int dism_teardown_live(const struct dism_record *r, bool force);

#endif
