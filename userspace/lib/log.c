/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* log.c - the DISM log file.  One line per event, DISM's layout:
 * "2024-05-01 10:00:00, Info                  DISM   text".  Lines above the
 * level DismInitialize chose are dropped.  A log over 8 MiB is moved to
 * <log>.bak when it is opened (DISM archives its log the same way). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "path-size.h"

#define LOG_ROTATE_BYTES (8u << 20)

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static DismLogLevel log_level = DismLogErrorsWarningsInfo;

int
dism_log_open(const char *path, DismLogLevel level)
{
  char parent[DISM_PATH_MAX];
  snprintf(parent, sizeof parent, "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    int r = dism_mkdir_p(parent, 0755);
    if (r < 0)
      return r;
  }
  struct stat st;
  if (stat(path, &st) == 0 && (uint64_t) st.st_size > LOG_ROTATE_BYTES) {
    char bak[DISM_SUBPATH_MAX];
    snprintf(bak, sizeof bak, "%s.bak", path);
    rename(path, bak);
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    dism_set_error("cannot open the log file %s: %s", path, strerror(e));
    return -e;
  }
  pthread_mutex_lock(&log_mutex);
  if (log_fd >= 0)
    close(log_fd);
  log_fd = fd;
  log_level = level;
  pthread_mutex_unlock(&log_mutex);
  return 0;
}

void
dism_log_close(void)
{
  pthread_mutex_lock(&log_mutex);
  if (log_fd >= 0)
    close(log_fd);
  log_fd = -1;
  pthread_mutex_unlock(&log_mutex);
}

void
dism_log(enum dism_log_kind kind, const char *fmt, ...)
{
  static const char *const kind_names[] = { "Error", "Warning", "Info", "Debug" };
  pthread_mutex_lock(&log_mutex);
  if (log_fd < 0 || (int) kind > (int) log_level) {
    pthread_mutex_unlock(&log_mutex);
    return;
  }
  char line[4096];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  int n = (int) strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
  n += snprintf(line + n, sizeof line - (size_t) n, ", %-21s DISM   PID=%d ",
                kind_names[kind], (int) getpid());
  va_list ap;
  va_start(ap, fmt);
  if ((size_t) n < sizeof line)
    n += vsnprintf(line + n, sizeof line - (size_t) n, fmt, ap);
  va_end(ap);
  if ((size_t) n >= sizeof line - 1)
    n = (int) sizeof line - 2;
  line[n++] = '\n';
  /* A log write that fails must not fail the operation being logged. */
  ssize_t w = write(log_fd, line, (size_t) n);
  (void) w;
  pthread_mutex_unlock(&log_mutex);
}
