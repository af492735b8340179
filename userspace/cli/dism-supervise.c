/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism-supervise.c - keep one mount's image server running.
 *
 *   dism-supervise --pidfile FILE --backend ID --socket PATH -- SERVER [ARGS...]
 *
 * libdism starts every dism-nbd-server under this helper (server.c).  It
 * runs SERVER ARGS as its child and waits.  When the server dies without
 * being asked to (a signal, or a non-zero exit) while the kernel's
 * /dev/nbdN whose backend is ID still exists, it starts the same command
 * again (same overlay: the live map gives it every write the dead one
 * acknowledged) and, once the new server accepts on PATH, hands the device
 * fresh connections with NBD_CMD_RECONFIGURE (attach-nbd.c).  Requests
 * wait for that in the kernel (the dead-connection timeout, 30 s) and the
 * file system sees no error.  It also listens to the kernel's LINK_DEAD
 * notices, so a connection the kernel dropped while the server lives (a
 * request that outlived the request timeout) is replaced the same way.
 *
 * No NBD device with that backend (a loop device over the server's FUSE
 * file, which dies with the server, or a server that died before the
 * attach): nothing to give a new server to, so it exits and the mount is
 * NeedsRemount as before.  A server that keeps dying at once (five times
 * within 1 s of coming up) is given up on the same way.
 *
 * SIGTERM, SIGINT or SIGHUP: stop restarting, pass SIGTERM to the server,
 * exit once it is gone.  A server that exits 0 (SHUTDOWN on its control
 * socket) ends the supervisor too.  Messages go to stderr, which libdism
 * points at the mount's server.log.  Exit status: 0 after a clean stop, 1
 * when it gave up, 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "dism-error.h"
#include "path-size.h"
#include "spawn.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#define READY_TIMEOUT_MS   20000   /* a restarted server must accept by then */
#define PROBE_MS           20      /* how often a starting server is probed */
#define QUICK_DEATH_MS     1000    /* died this soon after coming up: a crash loop */
#define MAX_QUICK_DEATHS   5
#define RECONNECT_RETRY_MS 250
#define RECONNECT_TRIES    40      /* 10 s: well inside the dead-connection timeout */
#define LINK_DEAD_DELAY_MS 50      /* let the notices of one event arrive together */
#define MONITOR_RETRY_MS   2000

enum state { STARTING, RUNNING, BACKOFF };

struct sup {
  const char *pidfile, *backend, *socket;
  char **argv;
  pid_t child;
  enum state state;
  int64_t deadline;        /* STARTING: give up; BACKOFF: start again (ms) */
  int64_t up_at;           /* when the child accepted */
  int64_t died_at;         /* when the last crash was seen (ms) */
  bool ever_up;            /* a child has accepted connections */
  bool restarted;          /* the child is a restart: the device needs it */
  int64_t reconnect_at;    /* RUNNING: hand over connections then (0: no) */
  unsigned reconnect_tries;
  unsigned quick_deaths, restarts;
  bool stopping;
  int sfd, mfd;
  int64_t monitor_retry_at;
};

static int64_t
now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
  char stamp[32], msg[1024];
  struct timespec ts;
  struct tm tm;
  va_list ap;

  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s.%03ld dism-supervise[%d]: %s\n", stamp, ts.tv_nsec / 1000000L,
          (int) getpid(), msg);
}

static int
write_pidfile(const char *path)
{
  char tmp[DISM_SUBPATH_MAX], buf[32];
  int fd, n;

  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return -ENAMETOOLONG;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  n = snprintf(buf, sizeof buf, "%d\n", (int) getpid());
  if (write(fd, buf, (size_t) n) != n || close(fd) < 0 || rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  return 0;
}

static void __attribute__((noreturn))
finish(struct sup *s, int status)
{
  unlink(s->pidfile);
  exit(status);
}

static void
start_child(struct sup *s)
{
  /* The server gets our 0, 1 and 2 (libdism's /dev/null and the server
   * log), signals as a fresh process has them, and nothing else. */
  struct dism_spawn_opts o = {
    .stdin_fd = 0, .stdout_fd = 1, .stderr_fd = 2, .reset_signals = true,
    .exec_fail_prefix = "dism-supervise: cannot execute ",
  };
  pid_t pid;
  int r = dism_spawn((const char *const *) s->argv, &o, &pid);

  if (r < 0) {
    say("cannot fork: %s", strerror(-r));
    s->child = 0;
    s->state = BACKOFF;
    s->deadline = now_ms() + 1000;
    return;
  }
  s->child = pid;
  s->state = STARTING;
  /* The first start is libdism's to time (DISM_SERVER_TIMEOUT_MS). */
  s->deadline = s->ever_up ? now_ms() + READY_TIMEOUT_MS : INT64_MAX;
}

/* Does the server accept connections on its socket yet? */
static bool
accepting(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd;
  bool ok;

  if (strlen(path) >= sizeof sa.sun_path)
    return false;
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

static void
open_monitor(struct sup *s)
{
  if (s->mfd >= 0 || access("/sys/module/nbd", F_OK) != 0)
    return;
  s->mfd = dism_nbd_monitor_open();
  if (s->mfd < 0) {
    say("cannot listen for the kernel's dead-connection notices: %s", dism_last_error());
    s->monitor_retry_at = now_ms() + MONITOR_RETRY_MS;
  }
}

/* Hand the device fresh connections to the running child. */
static void
reconnect(struct sup *s)
{
  int index = dism_nbd_find(s->backend);
  int r;

  s->reconnect_at = 0;
  if (index < 0) {
    say("no NBD device carries %s any more: nothing to reconnect", s->backend);
    return;
  }
  r = dism_nbd_reconnect(s->socket, s->backend, index);
  if (r < 0) {
    if (++s->reconnect_tries >= RECONNECT_TRIES) {
      say("giving up reconnecting /dev/nbd%d: %s", index, dism_last_error());
      s->reconnect_tries = 0;
      return;
    }
    say("reconnecting /dev/nbd%d failed (%s); trying again", index, dism_last_error());
    s->reconnect_at = now_ms() + RECONNECT_RETRY_MS;
    return;
  }
  s->reconnect_tries = 0;
  if (s->mfd >= 0)
    dism_nbd_monitor_read(s->mfd, index);   /* notices of what was just repaired */
  if (s->restarted) {
    say("restart %u: server PID %d serves /dev/nbd%d again, %.2f s after the crash",
        s->restarts, (int) s->child, index, (double) (now_ms() - s->died_at) / 1000.0);
    s->restarted = false;
  } else {
    say("/dev/nbd%d: dead connections replaced (server PID %d)", index, (int) s->child);
  }
}

static void
child_died(struct sup *s, int status)
{
  int64_t t = now_ms();
  bool quick = s->state != RUNNING || t - s->up_at < QUICK_DEATH_MS;
  char how[64];
  int index;

  s->child = 0;
  s->reconnect_at = 0;
  if (s->stopping)
    finish(s, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    say("the image server exited");
    finish(s, 0);
  }
  /* The first server failed to come up: libdism reports its messages. */
  if (!s->ever_up)
    finish(s, WIFEXITED(status) ? WEXITSTATUS(status) : 1);
  if (WIFSIGNALED(status))
    snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
  else
    snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
  index = dism_nbd_find(s->backend);
  if (index < 0) {
    say("the image server %s; not restarting: no NBD device carries %s (a loop device "
        "over the server's FUSE file dies with it: /Remount-Image brings the mount back)",
        how, s->backend);
    finish(s, 1);
  }
  s->quick_deaths = quick ? s->quick_deaths + 1 : 0;
  if (s->quick_deaths >= MAX_QUICK_DEATHS) {
    say("the image server %s, %u times in a row within %d ms of starting: giving up "
        "(/dev/nbd%d fails its requests after the dead-connection timeout)",
        how, s->quick_deaths, QUICK_DEATH_MS, index);
    finish(s, 1);
  }
  if (!s->restarted)
    s->died_at = t;
  s->restarts++;
  s->restarted = true;
  s->state = BACKOFF;
  s->deadline = t + (s->quick_deaths ? 100L << s->quick_deaths : 0);
  say("the image server %s; restarting it for /dev/nbd%d (restart %u)", how, index,
      s->restarts);
}

static void
handle_signals(struct sup *s)
{
  struct signalfd_siginfo si;

  while (read(s->sfd, &si, sizeof si) == (ssize_t) sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (pid == s->child)
          child_died(s, status);
    } else if (!s->stopping) {
      s->stopping = true;
      if (!s->child)
        finish(s, 0);
      kill(s->child, SIGTERM);
    }
  }
}

static void
handle_link_dead(struct sup *s)
{
  int index = dism_nbd_find(s->backend);
  int n = dism_nbd_monitor_read(s->mfd, index);

  if (n < 0) {
    say("reading the kernel's notices: %s", strerror(-n));
    close(s->mfd);
    s->mfd = -1;
    s->monitor_retry_at = now_ms() + MONITOR_RETRY_MS;
    return;
  }
  /* A dead server is restarted (SIGCHLD) and reconnected then. */
  if (n > 0 && index >= 0 && s->state == RUNNING && !s->reconnect_at)
    s->reconnect_at = now_ms() + LINK_DEAD_DELAY_MS;
}

/* Milliseconds until the next timed step (-1: none). */
static int
next_timeout(const struct sup *s)
{
  int64_t t = now_ms(), at = -1;

  if (s->state == STARTING)
    at = t + PROBE_MS;
  else if (s->state == BACKOFF)
    at = s->deadline;
  else if (s->reconnect_at)
    at = s->reconnect_at;
  if (s->mfd < 0 && (at < 0 || s->monitor_retry_at < at))
    at = s->monitor_retry_at > t ? s->monitor_retry_at : t + MONITOR_RETRY_MS;
  if (at < 0)
    return -1;
  return at <= t ? 0 : (int) (at - t);
}

static void
step(struct sup *s)
{
  int64_t t = now_ms();

  if (s->mfd < 0 && t >= s->monitor_retry_at) {
    s->monitor_retry_at = t + MONITOR_RETRY_MS;
    open_monitor(s);
  }
  if (s->stopping)
    return;
  if (s->state == BACKOFF && t >= s->deadline) {
    start_child(s);
  } else if (s->state == STARTING) {
    if (accepting(s->socket)) {
      s->state = RUNNING;
      s->up_at = t;
      s->ever_up = true;
      if (s->restarted)
        reconnect(s);
    } else if (t >= s->deadline) {
      say("the image server PID %d did not come up within %d ms; killing it",
          (int) s->child, READY_TIMEOUT_MS);
      kill(s->child, SIGKILL);
      s->deadline = t + READY_TIMEOUT_MS;   /* its SIGCHLD decides what next */
    }
  } else if (s->state == RUNNING && s->reconnect_at && t >= s->reconnect_at) {
    reconnect(s);
  }
}

static void
usage(FILE *f)
{
  fprintf(f, "usage: dism-supervise --pidfile FILE --backend ID --socket PATH -- SERVER [ARGS...]\n"
             "Runs an image server for libdism, restarts it when it dies and hands the\n"
             "kernel's /dev/nbdN (backend ID) new connections to it.\n");
}

int
main(int argc, char **argv)
{
  static const struct option opts[] = {
    { "pidfile", required_argument, NULL, 'P' },
    { "backend", required_argument, NULL, 'b' },
    { "socket", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct sup s = { .sfd = -1, .mfd = -1 };
  sigset_t set;
  int c, r;

  while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
    switch (c) {
    case 'P': s.pidfile = optarg; break;
    case 'b': s.backend = optarg; break;
    case 's': s.socket = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!s.pidfile || !s.backend || !s.socket || optind >= argc) {
    usage(stderr);
    return 2;
  }
  s.argv = argv + optind;

  /* Signals arrive through a descriptor: no handler runs in the middle of
   * anything.  The child gets them back before exec. */
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  s.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (s.sfd < 0) {
    say("signalfd: %s", strerror(errno));
    return 1;
  }
  /* It sits in the I/O path of a block device while it repairs it: its
   * allocations must not wait for that device's writeback (best effort). */
  (void) prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
  r = write_pidfile(s.pidfile);
  if (r < 0) {
    say("cannot write %s: %s", s.pidfile, strerror(-r));
    return 1;
  }
  open_monitor(&s);
  start_child(&s);
  if (!s.child)
    finish(&s, 1);

  for (;;) {
    struct pollfd p[2] = { { .fd = s.sfd, .events = POLLIN }, { .fd = s.mfd, .events = POLLIN } };
    int n = poll(p, s.mfd >= 0 ? 2 : 1, next_timeout(&s));

    if (n < 0 && errno != EINTR) {
      say("poll: %s", strerror(errno));
      sleep(1);
      continue;
    }
    if (n > 0 && p[0].revents)
      handle_signals(&s);
    if (n > 0 && s.mfd >= 0 && p[1].revents)
      handle_link_dead(&s);
    step(&s);
  }
}
