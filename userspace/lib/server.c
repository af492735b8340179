/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* server.c - start, find, stop and talk to one mount's dism-nbd-server.
 *
 * The server is started detached (dism_spawn: double fork, new session) so
 * it outlives the calling process: mounts are system-wide state.  It runs
 * as the child of dism-supervise (userspace/cli/dism-supervise.c), which
 * starts it again if it dies and reconnects the NBD device to the new one;
 * the supervisor's pid is in supervisor.pid, the server's in server.pid.
 * Their stdout and stderr go to server.log in the mount's live directory;
 * the text is quoted when the server fails to come up. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dism-internal.h"
#include "env.h"
#include "path-size.h"
#include "spawn.h"

static bool
is_executable(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* A helper program: next to the running program (installed layout, then
 * the build tree: bin/ and tests/ side by side), else in LIBEXECDIR. */
static int
helper_path(const char *name, char *out, size_t cap)
{
  char exe[DISM_PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      static const char *const rel[] = { "../libexec/dism/", "", "../bin/" };
      for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, cap, "%s/%s%s", exe, rel[i], name);
        if (is_executable(out))
          return 0;
      }
    }
  }
  snprintf(out, cap, "%s/%s", LIBEXECDIR, name);
  return is_executable(out) ? 0 : -ENOENT;
}

int
dism_server_path(char *out, size_t cap)
{
  const char *env = getenv("DISM_NBD_SERVER");
  if (env && *env) {
    if (!is_executable(env)) {
      dism_set_error("DISM_NBD_SERVER=%s is not an executable file", env);
      return -ENOENT;
    }
    snprintf(out, cap, "%s", env);
    return 0;
  }
  if (helper_path("dism-nbd-server", out, cap) == 0)
    return 0;
  dism_set_error("dism-nbd-server not found (set DISM_NBD_SERVER, or install it in %s)",
                 LIBEXECDIR);
  return -ENOENT;
}

/* The supervisor: $DISM_SUPERVISE ("off": none), else found like the
 * server.  Without one the server runs alone (a crash then leaves the
 * mount NeedsRemount, as before). */
static bool
supervisor_path(char *out, size_t cap)
{
  const char *env = getenv("DISM_SUPERVISE");
  if (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)) {
    dism_log(DISM_LOG_WARN, "DISM_SUPERVISE=%s: the image server runs unsupervised (it is not "
             "restarted if it dies)", env);
    return false;
  }
  if (env && *env) {
    snprintf(out, cap, "%s", env);
    if (is_executable(out))
      return true;
    dism_log(DISM_LOG_WARN, "DISM_SUPERVISE=%s is not an executable file: the image server "
             "runs unsupervised", env);
    return false;
  }
  if (helper_path("dism-supervise", out, cap) == 0)
    return true;
  dism_log(DISM_LOG_WARN, "dism-supervise not found: the image server runs unsupervised "
           "(it is not restarted if it dies)");
  return false;
}

/* What the server says it supports: `dism-nbd-server --capabilities`
 * prints one word a line and exits 0.  A server without that option (an
 * older one) has none: then commit while serving (control) and the
 * loop-device fallback (fuse-file) are unavailable. */
struct server_caps {
  bool control;                  /* --control: COMMIT, SHUTDOWN */
  bool fuse_file;                /* --fuse-file */
};

static void
server_capabilities(const char *server, struct server_caps *caps)
{
  const char *const argv[] = { server, "--capabilities", NULL };
  char buf[4096];
  memset(caps, 0, sizeof *caps);
  if (dism_spawn_capture(argv, buf, sizeof buf, DISM_SPAWN_KEEP_HEAD) != 0)
    return;
  char *save = NULL;
  for (char *w = strtok_r(buf, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
    if (strcmp(w, "control") == 0)
      caps->control = true;
    else if (strcmp(w, "fuse-file") == 0)
      caps->fuse_file = true;
  }
}

/* The pid in pidfile, if that process still runs and its command line
 * names pidfile (no recycled pids; a zombie has an empty command line). */
static pid_t
pid_from_file(const char *pidfile)
{
  char buf[64], path[64], cmdline[8192];
  int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  long pid = strtol(buf, NULL, 10);
  if (pid <= 0 || pid > INT_MAX)
    return 0;
  snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n <= 0)
    return 0;
  for (ssize_t i = 0; i < n; i++)
    if (cmdline[i] == '\0')
      cmdline[i] = ' ';
  cmdline[n] = '\0';
  return strstr(cmdline, pidfile) ? (pid_t) pid : 0;
}

pid_t
dism_server_pid(const struct dism_live *l)
{
  return pid_from_file(l->pidfile);
}

pid_t
dism_supervisor_pid(const struct dism_live *l)
{
  return pid_from_file(l->sup_pidfile);
}

static bool
pid_gone(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return true;
  char state = '?';
  int got = fscanf(f, "%*d (%*[^)]) %c", &state);
  fclose(f);
  return got == 1 && (state == 'Z' || state == 'X');
}

static void
sleep_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static bool
wait_gone(pid_t pid, long timeout_ms)
{
  for (long waited = 0; waited < timeout_ms; waited += 20) {
    if (pid_gone(pid))
      return true;
    sleep_ms(20);
  }
  return pid_gone(pid);
}

pid_t
dism_server_pid_wait(const struct dism_live *l)
{
  pid_t pid = dism_server_pid(l);
  long timeout = dism_env_long("DISM_SERVER_TIMEOUT_MS", 20000);
  for (long waited = 0; pid == 0 && waited < timeout; waited += 20) {
    if (dism_supervisor_pid(l) == 0)
      break;
    sleep_ms(20);
    pid = dism_server_pid(l);
  }
  return pid;
}

/* The server's own command line (argv: 24 entries). */
static void
server_argv(const struct dism_record *r, const struct dism_live *l, const char *server, bool fuse,
            bool control, const char *argv[])
{
  int argc = 0;
  argv[argc++] = server;
  /* A WIM mount serves its metadata volume's map (the "wim" format: file
   * data from the WIM); read/write mounts put the overlay on top, as for
   * a VHD. */
  bool wim = dism_record_is_wim(r);
  if (r->mode == DISM_MODE_RO) {
    argv[argc++] = "--readonly";
  } else {
    argv[argc++] = "--overlay";
    argv[argc++] = r->overlay;
  }
  argv[argc++] = "--unix";
  argv[argc++] = l->nbd_sock;
  argv[argc++] = "--pidfile";
  argv[argc++] = l->pidfile;
  if (fuse) {
    argv[argc++] = "--fuse-file";
    argv[argc++] = l->fuse_file;
  }
  if (control) {
    argv[argc++] = "--control";
    argv[argc++] = l->control_sock;
  }
  argv[argc++] = "--format";
  argv[argc++] = r->format;
  argv[argc++] = wim ? r->volume : r->image;
  argv[argc] = NULL;
}

/* Under the supervisor: dism-supervise OPTIONS -- SERVER ARGS into full
 * (room for argv and 8 more).  The backend id is the attach's (live.c), how
 * the supervisor finds the device again.  False: no supervisor. */
static bool
supervised_argv(const struct dism_record *r, const struct dism_live *l, const char *const argv[],
                char supervisor[DISM_PATH_MAX], char backend_id[64], const char *full[])
{
  if (!supervisor_path(supervisor, DISM_PATH_MAX))
    return false;
  int n = 0;
  snprintf(backend_id, 64, "dism:%s", r->id);
  full[n++] = supervisor;
  full[n++] = "--pidfile";
  full[n++] = l->sup_pidfile;
  full[n++] = "--backend";
  full[n++] = backend_id;
  full[n++] = "--socket";
  full[n++] = l->nbd_sock;
  full[n++] = "--";
  for (int i = 0; argv[i]; i++)
    full[n++] = argv[i];
  full[n] = NULL;
  return true;
}

/* Run argv (the server, or its supervisor) detached in a session of its
 * own, its output appended to the server log.  Detached (double fork): the
 * program is nobody's child here, so it never becomes a zombie of a
 * long-lived caller and survives it.  It keeps no descriptor of ours: the
 * supervisor and the server open what they need themselves.  *pid_out:
 * its pid; server names the server in messages. */
static int
spawn_detached(const struct dism_live *l, const char *const argv[], const char *server,
               pid_t *pid_out)
{
  int log_fd = open(l->server_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    int rc = -errno;
    dism_set_error("cannot create %s: %s", l->server_log, strerror(-rc));
    return rc;
  }
  struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
  o.stdout_fd = o.stderr_fd = log_fd;
  o.new_session = true;
  o.detach = true;
  o.exec_fail_prefix = "libdism: cannot execute the server: ";
  int rc = dism_spawn(argv, &o, pid_out);
  close(log_fd);
  if (rc == -EMFILE || rc == -ENFILE) {        /* no descriptor for the pid pipe */
    dism_set_error("pipe: %s", strerror(-rc));
    return rc;
  }
  if (rc < 0) {
    dism_set_error("cannot start %s: fork failed", server);
    return -EAGAIN;
  }
  return 0;
}

/* Wait until the server's pidfile names it (and its control socket exists,
 * with control); spawned is what spawn_detached started (the supervisor if
 * supervised).  A server that exits or does not come up in time is killed
 * (its supervisor first) and its log's tail quoted. */
static int
wait_for_server(const struct dism_record *r, const struct dism_live *l, pid_t spawned,
                bool supervised, bool control, pid_t *pid_out)
{
  long timeout = dism_env_long("DISM_SERVER_TIMEOUT_MS", 20000);
  for (long waited = 0;; waited += 20) {
    pid_t up = dism_server_pid(l);
    if (up > 0 && (supervised || up == spawned) &&
        (!control || access(l->control_sock, F_OK) == 0)) {
      *pid_out = up;
      return 0;
    }
    if (pid_gone(spawned) || waited >= timeout)
      break;
    sleep_ms(20);
  }
  char tail[1024];
  bool died = pid_gone(spawned);
  if (!died) {
    /* the supervisor first, so that it restarts nothing */
    pid_t child = supervised ? dism_server_pid(l) : 0;
    kill(spawned, SIGKILL);
    wait_gone(spawned, 2000);
    if (child > 0) {
      kill(child, SIGKILL);
      wait_gone(child, 2000);
    }
  }
  dism_read_tail(l->server_log, tail, sizeof tail);
  dism_set_error("the image server for %s %s: %s", r->image,
                 died ? "exited at start" : "did not come up in time",
                 tail[0] ? tail : "(no output)");
  return -EIO;
}

int
dism_server_start(const struct dism_record *r, const struct dism_live *l, bool fuse,
                  pid_t *pid_out, char *cmd_out, size_t cmd_cap)
{
  char server[DISM_PATH_MAX];
  int rc = dism_server_path(server, sizeof server);
  if (rc < 0)
    return rc;
  struct server_caps caps;
  server_capabilities(server, &caps);
  if (fuse && !caps.fuse_file) {
    dism_set_error("NBD is not available here and %s has no --fuse-file option for the "
                   "loop-device fallback", server);
    return -ENOTSUP;
  }
  const char *argv[24];
  server_argv(r, l, server, fuse, caps.control, argv);
  size_t used = 0;
  cmd_out[0] = '\0';
  for (int i = 0; argv[i] && used < cmd_cap; i++)
    used += (size_t) snprintf(cmd_out + used, cmd_cap - used, "%s%s", i ? " " : "", argv[i]);

  char supervisor[DISM_PATH_MAX], backend_id[64];
  const char *full[sizeof argv / sizeof argv[0] + 8];
  bool supervised = supervised_argv(r, l, argv, supervisor, backend_id, full);
  unlink(l->pidfile);
  unlink(l->sup_pidfile);
  unlink(l->nbd_sock);
  unlink(l->control_sock);
  pid_t spawned = 0, srv = 0;
  if ((rc = spawn_detached(l, supervised ? full : argv, server, &spawned)) < 0 ||
      (rc = wait_for_server(r, l, spawned, supervised, caps.control, &srv)) < 0)
    return rc;
  *pid_out = srv;
  if (supervised)
    dism_log(DISM_LOG_INFO, "Image server started for mount %s: PID %d (supervisor PID %d): %s",
             r->id, (int) srv, (int) spawned, cmd_out);
  else
    dism_log(DISM_LOG_INFO, "Image server started for mount %s: PID %d: %s", r->id, (int) srv,
             cmd_out);
  return 0;
}

static int
control_connect(const struct dism_live *l)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(l->control_sock) >= sizeof sa.sun_path) {
    dism_set_error("control socket path too long: %s", l->control_sock);
    return -ENAMETOOLONG;
  }
  memcpy(sa.sun_path, l->control_sock, strlen(l->control_sock) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    dism_set_error("cannot connect to the image server's control socket %s: %s",
                   l->control_sock, strerror(e));
    return -e;
  }
  return fd;
}

static int
send_all(int fd, const char *s)
{
  for (size_t done = 0, len = strlen(s); done < len;) {
    ssize_t w = send(fd, s + done, len - done, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    done += (size_t) w;
  }
  return 0;
}

/* Read one line (without the newline); timeout_ms < 0 waits forever.
 * Returns the length, -EPIPE at EOF, -ETIMEDOUT. */
static int
read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
  size_t len = 0;
  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int pr = poll(&p, 1, timeout_ms);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr == 0)
      return -ETIMEDOUT;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return len ? (int) len : -EPIPE;
    if (c == '\n')
      break;
    if (len < cap - 1)
      buf[len++] = c;
  }
  buf[len] = '\0';
  return (int) len;
}

int
dism_server_commit(const struct dism_live *l, dism_commit_progress_fn fn, void *opaque)
{
  dism_server_pid_wait(l);           /* a server being restarted: its successor */
  if (access(l->control_sock, F_OK) < 0) {
    dism_set_error("the image server has no control socket (%s): this dism-nbd-server "
                   "cannot commit while serving", l->control_sock);
    return -ENOTSUP;
  }
  int fd = control_connect(l);
  if (fd < 0)
    return fd;
  int rc = send_all(fd, "COMMIT\n");
  if (rc < 0) {
    dism_set_error("cannot send COMMIT to the image server: %s", strerror(-rc));
    goto out;
  }
  char line[2048];
  for (;;) {
    rc = read_line(fd, line, sizeof line, -1);
    if (rc < 0) {
      dism_set_error("the image server closed the control connection during COMMIT");
      rc = -EIO;
      goto out;
    }
    unsigned long long cur, total;
    if (sscanf(line, "PROGRESS %llu %llu", &cur, &total) == 2) {
      if (fn)
        fn(cur, total, opaque);
    } else if (strcmp(line, "OK") == 0 || strncmp(line, "OK ", 3) == 0) {
      rc = 0;
      goto out;
    } else if (strncmp(line, "ERR", 3) == 0) {
      char *end = NULL;
      long code = strtol(line + 3, &end, 10);
      while (end && *end == ' ')
        end++;
      if (code < 0)
        code = -code;
      dism_set_error("commit failed: %s", end && *end ? end : line);
      rc = code > 0 && code < 4096 ? (int) -code : -EIO;
      goto out;
    }
    /* other lines (e.g. informational) are ignored */
  }
out:
  close(fd);
  return rc;
}

int
dism_server_stop(const struct dism_live *l)
{
  /* The supervisor first: it restarts nothing from now on, passes SIGTERM
   * to the server and exits after it. */
  pid_t sup = dism_supervisor_pid(l);
  if (sup > 0)
    kill(sup, SIGTERM);
  pid_t pid = dism_server_pid(l);
  if (pid <= 0) {
    if (sup > 0 && !wait_gone(sup, 5000)) {
      kill(sup, SIGKILL);
      wait_gone(sup, 5000);
    }
    return 0;
  }
  bool asked = false;
  if (access(l->control_sock, F_OK) == 0) {
    int fd = control_connect(l);
    if (fd >= 0) {
      char line[256];
      asked = send_all(fd, "SHUTDOWN\n") == 0;
      if (asked)
        read_line(fd, line, sizeof line, 5000);
      close(fd);
    }
  }
  if (!asked)
    kill(pid, SIGTERM);
  /* The server flushes the overlay before exiting: give it time. */
  if (!wait_gone(pid, dism_env_long("DISM_SERVER_STOP_MS", 60000))) {
    if (asked)
      kill(pid, SIGTERM);
    if (!wait_gone(pid, 5000)) {
      dism_log(DISM_LOG_WARN, "image server PID %d did not stop; killing it", (int) pid);
      kill(pid, SIGKILL);
      wait_gone(pid, 5000);
    }
  }
  if (sup > 0 && !wait_gone(sup, 5000)) {
    kill(sup, SIGKILL);
    wait_gone(sup, 5000);
  }
  dism_log(DISM_LOG_INFO, "Image server PID %d stopped", (int) pid);
  return 0;
}
