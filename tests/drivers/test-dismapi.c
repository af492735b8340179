/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-dismapi.c - DISM's C API as Windows sample code would use it: L"..."
 * literals, a progress callback, a cancel event.  Prints "ok - ..." /
 * "not ok - ..." lines that tests/t/71-dismapi.t turns into TAP.
 *
 *   test-dismapi rules IMAGE.vhdx WORKDIR   rules that need no mounting
 *   test-dismapi mount IMAGE.vhdx MOUNTDIR  mount RW, commit, unmount
 *   test-dismapi expect-needs-remount MOUNTDIR
 *   test-dismapi remount MOUNTDIR
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wchar.h>

#include "DismApi.h"
#include "path-size.h"

static int failures;

static void
check(int cond, const char *what)
{
  printf("%sok - %s\n", cond ? "" : "not ", what);
  if (!cond)
    failures++;
}

static void
check_hr(HRESULT got, HRESULT want, const char *what)
{
  if (got != want) {
    DismString *msg = NULL;
    DismGetLastErrorMessage(&msg);
    printf("# %s: got 0x%08x, want 0x%08x: %ls\n", what, (unsigned) got, (unsigned) want,
           msg ? msg->Value : L"");
    DismDelete(msg);
  }
  check(got == want, what);
}

static wchar_t *
W(const char *s)
{
  size_t n = mbstowcs(NULL, s, 0);
  wchar_t *w = calloc(n + 1, sizeof *w);
  mbstowcs(w, s, n + 1);
  return w;
}

struct progress_log {
  UINT last, calls, total;
  int monotonic;
};

static void CALLBACK
Progress(UINT Current, UINT Total, PVOID UserData)
{
  struct progress_log *p = UserData;
  if (Current < p->last)
    p->monotonic = 0;
  p->last = Current;
  p->total = Total;
  p->calls++;
}

/* DismGetLastErrorMessage is per thread. */
static void *
thread_error(void *arg)
{
  (void) arg;
  HRESULT hr = DismMountImage(L"/nonexistent/thread.iso", L"/tmp", 1, NULL, DismImageIndex,
                              DISM_MOUNT_READWRITE, NULL, NULL, NULL);
  DismString *msg = NULL;
  DismGetLastErrorMessage(&msg);
  int ok = hr == E_INVALIDARG && msg && wcsstr(msg->Value, L"thread.iso");
  DismDelete(msg);
  return (void *) (intptr_t) ok;
}

static int
count_entries(const char *dir)
{
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "ls -A '%s' 2>/dev/null | wc -l", dir);
  FILE *f = popen(cmd, "r");
  int n = -1;
  if (f) {
    if (fscanf(f, "%d", &n) != 1)
      n = -1;
    pclose(f);
  }
  return n;
}

static int
rules(const char *image, const char *work)
{
  char path[DISM_PATH_MAX];
  wchar_t *wimage = W(image);

  /* before DismInitialize */
  check_hr(DismMountImage(wimage, L"/tmp", 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           DISMAPI_E_DISMAPI_NOT_INITIALIZED, "mount before DismInitialize");
  check_hr(DismShutdown(), DISMAPI_E_DISMAPI_NOT_INITIALIZED, "shutdown before DismInitialize");
  DismMountedImageInfo *mi = NULL;
  UINT count = 0;
  check_hr(DismGetMountedImageInfo(&mi, &count), DISMAPI_E_DISMAPI_NOT_INITIALIZED,
           "DismGetMountedImageInfo before DismInitialize");

  /* not root -> ERROR_ELEVATION_REQUIRED */
  pid_t pid = fork();
  if (pid == 0) {
    if (setresuid(65534, 65534, 65534) < 0)
      _exit(2);
    _exit(DismInitialize(DismLogErrors, NULL, NULL) ==
                  HRESULT_FROM_WIN32(ERROR_ELEVATION_REQUIRED) ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "DismInitialize as a normal user -> HRESULT_FROM_WIN32(ERROR_ELEVATION_REQUIRED)");

  snprintf(path, sizeof path, "%s/api.log", work);
  wchar_t *log = W(path);
  snprintf(path, sizeof path, "%s/scratch", work);
  wchar_t *scratch = W(path);
  check_hr(DismInitialize(DismLogErrorsWarningsInfo, log, scratch), S_OK, "DismInitialize");
  check_hr(DismInitialize(DismLogErrorsWarningsInfo, log, scratch),
           DISMAPI_E_DISMAPI_ALREADY_INITIALIZED, "second DismInitialize -> 0xC0040008");
  snprintf(path, sizeof path, "%s/api.log", work);
  struct stat st;
  check(stat(path, &st) == 0 && st.st_size > 0, "the log file is written");
  snprintf(path, sizeof path, "%s/scratch", work);
  check(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "the scratch directory is created");

  /* DismDelete */
  check_hr(DismDelete(NULL), S_OK, "DismDelete(NULL) -> S_OK");
  int dummy;
  check_hr(DismDelete(&dummy), E_INVALIDARG, "DismDelete(unknown pointer) -> E_INVALIDARG");
  check_hr(DismGetMountedImageInfo(&mi, &count), S_OK, "DismGetMountedImageInfo");
  check(count == 0, "no mounts yet");
  DismDelete(mi);
  DismImageInfo *ii = NULL;
  check_hr(DismGetImageInfo(wimage, &ii, &count), S_OK, "DismGetImageInfo on a VHDX");
  check(count == 1 && ii && ii[0].ImageIndex == 1 && ii[0].ImageType == DismImageTypeVhd &&
            ii[0].ImageSize > 0 && wcslen(ii[0].ImageName) > 0,
        "one image: index 1, DismImageTypeVhd, virtual size, a name");
  check_hr(DismDelete(ii), S_OK, "DismDelete(image info) -> S_OK");
  check_hr(DismDelete(ii), E_INVALIDARG, "DismDelete twice -> E_INVALIDARG");
  check_hr(DismGetImageInfo(L"/nonexistent/some.wim", &ii, &count),
           HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND), "DismGetImageInfo on a missing WIM -> "
           "ERROR_FILE_NOT_FOUND");

  /* DISM's mount rules */
  snprintf(path, sizeof path, "%s/empty", work);
  mkdir(path, 0755);
  wchar_t *empty = W(path);
  check_hr(DismMountImage(NULL, empty, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL), E_INVALIDARG,
           "NULL image path -> E_INVALIDARG");
  check_hr(DismMountImage(L"", empty, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL), E_INVALIDARG,
           "empty image path -> E_INVALIDARG");
  check_hr(DismMountImage(wimage, NULL, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL), E_INVALIDARG,
           "NULL mount path -> E_INVALIDARG");
  check_hr(DismMountImage(wimage, L"/nonexistent/dir", 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           E_INVALIDARG, "nonexistent mount path -> E_INVALIDARG");
  check_hr(DismMountImage(wimage, wimage, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL), E_INVALIDARG,
           "mount path that is a file -> E_INVALIDARG");
  check_hr(DismMountImage(L"/nonexistent/x.vhdx", empty, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           E_INVALIDARG, "nonexistent image -> E_INVALIDARG");
  check_hr(DismMountImage(L"/etc/passwd", empty, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           E_INVALIDARG, "image without .wim/.vhd/.vhdx -> E_INVALIDARG");
  check_hr(DismMountImage(L"/tmp/install.swm", empty, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           E_INVALIDARG, ".swm -> refused");
  check_hr(DismMountImage(wimage, empty, 2, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           DISMAPI_E_INVALID_IMAGE_INDEX, "VHDX index 2 -> DISMAPI_E_INVALID_IMAGE_INDEX");
  check_hr(DismMountImage(wimage, empty, 0, L"Windows 10 Pro", DismImageName, 0, NULL, NULL, NULL),
           DISMAPI_E_INVALID_IMAGE_NAME, "VHDX by name -> DISMAPI_E_INVALID_IMAGE_NAME");
  check_hr(DismMountImage(wimage, L"/", 1, NULL, DismImageIndex, 0, NULL, NULL, NULL), E_INVALIDARG,
           "mount at / (root of a file system) -> refused");
  check_hr(DismMountImage(wimage, L"/proc", 1, NULL, DismImageIndex, DISM_MOUNT_READONLY, NULL, NULL,
                          NULL),
           E_INVALIDARG, "mount at a mount point (/proc) -> refused");
  snprintf(path, sizeof path, "%s/full", work);
  mkdir(path, 0755);
  wchar_t *full = W(path);
  snprintf(path, sizeof path, "%s/full/file", work);
  fclose(fopen(path, "w"));
  check_hr(DismMountImage(wimage, full, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL),
           DISM_E_MOUNT_DIR_NOT_EMPTY, "non-empty folder -> 0xC1420114");

  /* per-thread last error */
  DismMountImage(wimage, full, 1, NULL, DismImageIndex, 0, NULL, NULL, NULL);
  pthread_t t;
  void *thread_ok = NULL;
  pthread_create(&t, NULL, thread_error, NULL);
  pthread_join(t, &thread_ok);
  check(thread_ok != NULL, "another thread sees its own error message");
  DismString *msg = NULL;
  check_hr(DismGetLastErrorMessage(&msg), S_OK, "DismGetLastErrorMessage");
  check(msg && wcsstr(msg->Value, L"not empty") != NULL,
        "this thread still sees its own error (not the other thread's)");
  check_hr(DismDelete(msg), S_OK, "DismDelete(error message)");

  /* unmount of a folder without a mount */
  check_hr(DismUnmountImage(empty, DISM_DISCARD_IMAGE, NULL, NULL, NULL),
           DISMAPI_E_UNABLE_TO_UNMOUNT_IMAGE_PATH, "unmount of a non-mount -> 0xC0040007");

  /* cancel before start: nothing happens, nothing is left */
  HANDLE cancel = DismCreateCancelEvent();
  check(cancel != NULL, "DismCreateCancelEvent");
  check_hr(DismSetCancelEvent(cancel), S_OK, "DismSetCancelEvent");
  struct progress_log pl = { 0, 0, 0, 1 };
  check_hr(DismMountImage(wimage, empty, 1, NULL, DismImageIndex, DISM_MOUNT_READWRITE, cancel,
                          Progress, &pl),
           HRESULT_FROM_WIN32(ERROR_CANCELLED), "cancelled mount -> ERROR_CANCELLED");
  check(pl.calls >= 1 && pl.total == 100 && pl.last < 100, "progress reported up to the cancel");
  check_hr(DismGetMountedImageInfo(&mi, &count), S_OK, "DismGetMountedImageInfo after cancel");
  check(count == 0, "cancelled mount left no record");
  DismDelete(mi);
  snprintf(path, sizeof path, "%s/empty", work);
  check(count_entries(path) == 0, "cancelled mount left the folder empty");
  snprintf(path, sizeof path, "%s/scratch", work);
  check(count_entries(path) == 0, "cancelled mount left no overlay");
  const char *run = getenv("DISM_RUN_DIR");
  if (run) {
    snprintf(path, sizeof path, "%s/mounts", run);
    check(count_entries(path) <= 0, "cancelled mount left no live state");
  }
  check_hr(DismCloseCancelEvent(cancel), S_OK, "DismCloseCancelEvent");

  /* sessions */
  DismSession session = DISM_SESSION_DEFAULT;
  check_hr(DismCommitImage(12345, 0, NULL, NULL, NULL), E_INVALIDARG,
           "DismCommitImage on an invalid session -> E_INVALIDARG");
  check_hr(DismOpenSession(empty, NULL, NULL, &session), S_OK, "DismOpenSession on a folder");
  check_hr(DismCommitImage(session, 0, NULL, NULL, NULL), E_INVALIDARG,
           "DismCommitImage on a session that is not a mount -> E_INVALIDARG");
  check_hr(DismShutdown(), DISMAPI_E_OPEN_SESSION_HANDLES,
           "DismShutdown with an open session -> DISMAPI_E_OPEN_SESSION_HANDLES");
  check_hr(DismCloseSession(session), S_OK, "DismCloseSession");
  check_hr(DismCloseSession(session), DISMAPI_E_INVALID_DISM_SESSION,
           "closing it twice -> DISMAPI_E_INVALID_DISM_SESSION");
  check_hr(DismShutdown(), S_OK, "DismShutdown");
  check_hr(DismShutdown(), DISMAPI_E_DISMAPI_NOT_INITIALIZED, "DismShutdown twice");
  free(wimage);
  free(log);
  free(scratch);
  free(empty);
  free(full);
  return failures ? 1 : 0;
}

static int
mount_cycle(const char *image, const char *dir)
{
  wchar_t *wimage = W(image), *wdir = W(dir);
  char path[DISM_SUBPATH_MAX];
  check_hr(DismInitialize(DismLogErrorsWarningsInfo, NULL, NULL), S_OK, "DismInitialize");
  struct progress_log pl = { 0, 0, 0, 1 };
  HANDLE cancel = DismCreateCancelEvent();
  check_hr(DismMountImage(wimage, wdir, 1, NULL, DismImageIndex, DISM_MOUNT_READWRITE, cancel,
                          Progress, &pl),
           S_OK, "DismMountImage read/write");
  check(pl.monotonic && pl.last == 100 && pl.total == 100 && pl.calls >= 4,
        "progress: monotonic, several milestones, ends at 100/100");
  snprintf(path, sizeof path, "%s/hello.txt", dir);
  check(access(path, F_OK) == 0, "the image's files are visible");
  DismMountedImageInfo *mi = NULL;
  UINT count = 0;
  check_hr(DismGetMountedImageInfo(&mi, &count), S_OK, "DismGetMountedImageInfo");
  check(count == 1 && mi[0].MountMode == DismReadWrite && mi[0].MountStatus == DismMountStatusOk &&
            mi[0].ImageIndex == 1,
        "one mount, read/write, status Ok");
  DismDelete(mi);

  snprintf(path, sizeof path, "%s/from-api.txt", dir);
  FILE *f = fopen(path, "w");
  if (f) {
    fputs("written through the C API test\n", f);
    fclose(f);
  }
  DismSession session = DISM_SESSION_DEFAULT;
  check_hr(DismOpenSession(wdir, NULL, NULL, &session), S_OK, "DismOpenSession on the mount");
  check_hr(DismUnmountImage(wdir, DISM_COMMIT_IMAGE, NULL, NULL, NULL),
           DISMAPI_E_OPEN_HANDLES_UNABLE_TO_UNMOUNT_IMAGE_PATH,
           "unmount with a session open -> 0xC004000A");
  pl = (struct progress_log) { 0, 0, 0, 1 };
  check_hr(DismCommitImage(session, DISM_COMMIT_IMAGE, NULL, Progress, &pl), S_OK,
           "DismCommitImage while mounted");
  check(pl.last == 100, "commit progress reaches 100");
  check(access(path, F_OK) == 0, "the mount is still usable after the commit");
  check_hr(DismCloseSession(session), S_OK, "DismCloseSession");
  /* cancel signalled: unmount is cancelled before it starts */
  DismSetCancelEvent(cancel);
  check_hr(DismUnmountImage(wdir, DISM_DISCARD_IMAGE, cancel, NULL, NULL),
           HRESULT_FROM_WIN32(ERROR_CANCELLED), "cancelled unmount -> ERROR_CANCELLED");
  check(access(path, F_OK) == 0, "a cancelled unmount leaves the mount intact");
  DismCloseCancelEvent(cancel);
  check_hr(DismUnmountImage(wdir, DISM_DISCARD_IMAGE, NULL, NULL, NULL), S_OK,
           "DismUnmountImage /Discard (the commit already saved from-api.txt)");
  check_hr(DismGetMountedImageInfo(&mi, &count), S_OK, "DismGetMountedImageInfo after unmount");
  check(count == 0, "no mount left");
  DismDelete(mi);
  check_hr(DismShutdown(), S_OK, "DismShutdown");
  free(wimage);
  free(wdir);
  return failures ? 1 : 0;
}

static int
expect_needs_remount(const char *dir)
{
  wchar_t *wdir = W(dir);
  DismSession session = DISM_SESSION_DEFAULT;
  check_hr(DismInitialize(DismLogErrorsWarningsInfo, NULL, NULL), S_OK, "DismInitialize");
  check_hr(DismOpenSession(wdir, NULL, NULL, &session), DISMAPI_E_NEEDS_REMOUNT,
           "DismOpenSession on a NeedsRemount mount -> DISMAPI_E_NEEDS_REMOUNT");
  check_hr(DismShutdown(), S_OK, "DismShutdown");
  free(wdir);
  return failures ? 1 : 0;
}

static int
remount(const char *dir)
{
  wchar_t *wdir = W(dir);
  check_hr(DismInitialize(DismLogErrorsWarningsInfo, NULL, NULL), S_OK, "DismInitialize");
  check_hr(DismRemountImage(wdir), S_OK, "DismRemountImage");
  check_hr(DismShutdown(), S_OK, "DismShutdown");
  free(wdir);
  return failures ? 1 : 0;
}

int
main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && !strcmp(argv[1], "rules"))
    return rules(argv[2], argv[3]);
  if (argc == 4 && !strcmp(argv[1], "mount"))
    return mount_cycle(argv[2], argv[3]);
  if (argc == 3 && !strcmp(argv[1], "expect-needs-remount"))
    return expect_needs_remount(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "remount"))
    return remount(argv[2]);
  fprintf(stderr, "usage: test-dismapi {rules IMAGE WORK | mount IMAGE DIR | "
                  "expect-needs-remount DIR | remount DIR}\n");
  return 2;
}
