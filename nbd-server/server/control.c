/* SPDX-License-Identifier: GPL-2.0-or-later */
/* control.c - the server's control socket: what libdism asks a running
 * server to do besides serving blocks.
 *
 * A Unix stream socket (mode 0600) taking one command per line, answered
 * with zero or more "PROGRESS <done> <total>" lines and then one final line,
 * "OK [key=value ...]" or "ERR <errno> <message>":
 *
 *   STATUS    size, logical sector, overlay bytes, open connections
 *   FLUSH     make every acknowledged write durable
 *   COMMIT    merge the overlay into the image while serving (overlay_commit)
 *   SHUTDOWN  stop the server as SIGTERM does
 *
 * Commands are rare and short-lived, so one thread serves the connections
 * one after another.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "overlay.h"

struct control {
  int listen_fd;
  int stop_fd;              /* eventfd: control_stop wakes the thread */
  struct disk *disk;
  struct nbd_server *srv;
  pthread_t thread;
};

static void
send_line(int fd, const char *fmt, ...)
{
  char line[1024];
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t) n > sizeof line - 2)
    n = sizeof line - 2;
  line[n++] = '\n';
  /* A client that went away only loses its answer. */
  (void) !send(fd, line, (size_t) n, MSG_NOSIGNAL);
}

static void
send_error(int fd, int r)
{
  char msg[512];
  /* Keep the answer on one line. */
  snprintf(msg, sizeof msg, "%s", disk_last_error());
  for (char *p = msg; *p; p++)
    if (*p == '\n')
      *p = ' ';
  send_line(fd, "ERR %d %s", -r, msg);
}

static bool
is_overlay(const struct disk *d)
{
  return strcmp(d->ops->name, "overlay") == 0;
}

struct progress_ctx {
  int fd;
  uint64_t last;
};

static void
commit_progress(void *opaque, uint64_t done, uint64_t total)
{
  struct progress_ctx *p = opaque;

  /* About a hundred lines for a whole commit is plenty. */
  if (done != total && done - p->last < total / 100)
    return;
  p->last = done;
  send_line(p->fd, "PROGRESS %llu %llu", (unsigned long long) done,
            (unsigned long long) total);
}

static void
run_command(struct control *c, int fd, const char *cmd)
{
  int r;

  if (strcmp(cmd, "STATUS") == 0) {
    send_line(fd, "OK size=%llu sector=%u overlay_bytes=%llu connections=%u readonly=%d",
              (unsigned long long) c->disk->size, c->disk->logical_sector,
              (unsigned long long) (is_overlay(c->disk) ? overlay_used_bytes(c->disk) : 0),
              nbd_server_connections(c->srv), c->disk->readonly);
  } else if (strcmp(cmd, "FLUSH") == 0) {
    r = disk_flush(c->disk);
    if (r < 0)
      send_error(fd, r);
    else
      send_line(fd, "OK");
  } else if (strcmp(cmd, "COMMIT") == 0) {
    struct progress_ctx p = { .fd = fd };
    if (!is_overlay(c->disk)) {
      send_line(fd, "ERR %d nothing to commit: the server has no overlay", EINVAL);
      return;
    }
    r = overlay_commit(c->disk, commit_progress, &p);
    if (r < 0)
      send_error(fd, r);
    else
      send_line(fd, "OK");
  } else if (strcmp(cmd, "SHUTDOWN") == 0) {
    send_line(fd, "OK");
    kill(getpid(), SIGTERM);      /* main's signalfd does the clean stop */
  } else {
    send_line(fd, "ERR %d unknown command", EINVAL);
  }
}

static void
serve_client(struct control *c, int fd)
{
  char buf[256];
  size_t len = 0;

  for (;;) {
    ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
    char *nl;

    if (n <= 0)
      return;
    len += (size_t) n;
    buf[len] = 0;
    while ((nl = strchr(buf, '\n')) != NULL) {
      *nl = 0;
      if (nl > buf && nl[-1] == '\r')
        nl[-1] = 0;
      run_command(c, fd, buf);
      len -= (size_t) (nl + 1 - buf);
      memmove(buf, nl + 1, len + 1);
    }
    if (len == sizeof buf - 1)
      return;                       /* a line that long is not a command */
  }
}

static void *
control_thread(void *arg)
{
  struct control *c = arg;

  for (;;) {
    struct pollfd p[2] = { { c->listen_fd, POLLIN, 0 }, { c->stop_fd, POLLIN, 0 } };
    int fd;

    if (poll(p, 2, -1) < 0 && errno != EINTR)
      break;
    if (p[1].revents)
      break;
    if (!(p[0].revents & POLLIN))
      continue;
    fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    serve_client(c, fd);
    close(fd);
  }
  return NULL;
}

int
control_start_fd(int listen_fd, struct disk *disk, struct nbd_server *srv,
                 struct control **out)
{
  struct control *c = calloc(1, sizeof *c);
  int r;

  if (!c) {
    close(listen_fd);
    return -ENOMEM;
  }
  c->disk = disk;
  c->srv = srv;
  c->listen_fd = listen_fd;
  c->stop_fd = eventfd(0, EFD_CLOEXEC);
  if (c->stop_fd < 0) {
    r = -errno;
    disk_set_error("eventfd: %s", strerror(errno));
    goto fail;
  }
  r = pthread_create(&c->thread, NULL, control_thread, c);
  if (r != 0) {
    disk_set_error("cannot start the control thread: %s", strerror(r));
    r = -r;
    goto fail;
  }
  *out = c;
  return 0;

fail:
  close(c->listen_fd);
  if (c->stop_fd >= 0)
    close(c->stop_fd);
  free(c);
  return r;
}

int
control_start(const char *path, struct disk *disk, struct nbd_server *srv,
              struct control **out)
{
  int fd = nbd_listen_unix(path);

  if (fd < 0)
    return fd;
  return control_start_fd(fd, disk, srv, out);
}

void
control_stop(struct control *c)
{
  uint64_t one = 1;

  if (!c)
    return;
  (void) !write(c->stop_fd, &one, sizeof one);
  pthread_join(c->thread, NULL);
  close(c->listen_fd);
  close(c->stop_fd);
  free(c);
}
