/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spawn.c - fork/exec with the descriptors given and no others. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

/* Write a string to fd, ignoring errors (the child's last words). */
static void
say(int fd, const char *s)
{
  ssize_t w = write(fd, s, strlen(s));
  (void) w;
}

/* In the child, after fork: only async-signal-safe calls.  Never returns. */
static void __attribute__((noreturn))
exec_child(const char *const argv[], const struct dism_spawn_opts *o, int max_fd)
{
  int want[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
  int high[3];
  int devnull = -1;

  /* Move every source above 2 first, so that installing one as 0, 1 or 2
   * never overwrites another still to be installed. */
  for (int i = 0; i < 3; i++) {
    int src = want[i];
    if (src < 0) {
      if (devnull < 0 && (devnull = open("/dev/null", O_RDWR)) < 0)
        _exit(127);
      src = devnull;
    }
    high[i] = fcntl(src, F_DUPFD, 3);
    /* A launcher whose own 0, 1 or 2 is closed still starts its child,
     * on /dev/null there, as a plain fork and exec would have. */
    if (high[i] < 0 && errno == EBADF && src != devnull &&
        (devnull >= 0 || (devnull = open("/dev/null", O_RDWR)) >= 0))
      high[i] = fcntl(devnull, F_DUPFD, 3);
    if (high[i] < 0)
      _exit(127);
  }
  for (int i = 0; i < 3; i++)
    if (dup2(high[i], i) < 0)
      _exit(127);
  if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
    for (int fd = 3; fd < max_fd; fd++)
      close(fd);
  if (o->reset_signals) {
    sigset_t all;
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    sigaction(SIGPIPE, &dfl, NULL);
  }
  if (o->search_path)
    execvp(argv[0], (char *const *) argv);
  else
    execv(argv[0], (char *const *) argv);
  if (o->exec_fail_prefix) {
    const char *why = strerrordesc_np(errno);
    say(2, o->exec_fail_prefix);
    say(2, argv[0]);
    say(2, ": ");
    say(2, why ? why : "cannot execute");
    say(2, "\n");
  }
  _exit(127);
}

/* The detached case: a middle process starts the child in its own
 * session if asked, hands its pid back on pid_fd and exits at once. */
static void __attribute__((noreturn))
exec_detached(const char *const argv[], const struct dism_spawn_opts *o, int max_fd,
              int pid_fd)
{
  pid_t child;

  if (o->new_session)
    setsid();
  child = fork();
  if (child == 0)
    exec_child(argv, o, max_fd);
  ssize_t w = write(pid_fd, &child, sizeof child);
  (void) w;
  _exit(child > 0 ? 0 : 1);
}

int
dism_spawn(const char *const argv[], const struct dism_spawn_opts *o, pid_t *pid)
{
  static const struct dism_spawn_opts defaults = DISM_SPAWN_OPTS_INIT;
  struct rlimit rl;
  int max_fd = 1024, pid_pipe[2] = { -1, -1 }, r = 0;
  pid_t child;

  if (!o)
    o = &defaults;
  if (!argv || !argv[0] || !pid)
    return -EINVAL;
  /* close_range (Linux 5.9) may be missing: the bound of the fallback loop,
   * taken here because getrlimit is not async-signal-safe everywhere. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < 65536)
    max_fd = (int) rl.rlim_cur;
  if (o->detach && pipe2(pid_pipe, O_CLOEXEC) < 0)
    return -errno;

  child = fork();
  if (child == 0) {
    if (o->detach)
      exec_detached(argv, o, max_fd, pid_pipe[1]);
    if (o->new_session)
      setsid();
    exec_child(argv, o, max_fd);
  }
  if (child < 0) {
    r = -errno;
    goto out;
  }
  if (!o->detach) {
    *pid = child;
    goto out;
  }
  /* The middle process exits at once; its pipe holds the real pid. */
  close(pid_pipe[1]);
  pid_pipe[1] = -1;
  (void) dism_spawn_wait(child, NULL);
  if (read(pid_pipe[0], &child, sizeof child) != (ssize_t) sizeof child || child <= 0) {
    r = -EAGAIN;
    goto out;
  }
  *pid = child;
out:
  if (pid_pipe[0] >= 0)
    close(pid_pipe[0]);
  if (pid_pipe[1] >= 0)
    close(pid_pipe[1]);
  return r;
}

int
dism_spawn_wait(pid_t pid, int *status)
{
  int st = 0;

  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -errno;
  if (status)
    *status = st;
  return 0;
}

int
dism_spawn_exit_code(int status)
{
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 255;
}

int
dism_spawn_capture(const char *const argv[], char *out, size_t cap,
                   enum dism_spawn_keep keep)
{
  struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
  int pipefd[2], status = 0, r;
  size_t len = 0;
  char buf[4096];
  ssize_t n;
  pid_t pid;

  out[0] = '\0';
  if (pipe2(pipefd, O_CLOEXEC) < 0)
    return -errno;
  o.stdout_fd = o.stderr_fd = pipefd[1];
  r = dism_spawn(argv, &o, &pid);
  close(pipefd[1]);
  if (r < 0) {
    close(pipefd[0]);
    return r;
  }
  /* The head stops reading once full (the child may then die of SIGPIPE);
   * the tail reads to the end, dropping the older half whenever full. */
  while (!(keep == DISM_SPAWN_KEEP_HEAD && len + 1 >= cap) &&
         (n = read(pipefd[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (len + 1 >= cap) {
        if (keep == DISM_SPAWN_KEEP_HEAD)
          break;
        if (cap < 2)
          continue;                /* room for the NUL alone */
        memmove(out, out + cap / 2, len - cap / 2);
        len -= cap / 2;
      }
      out[len++] = buf[i];
    }
  }
  out[len] = '\0';
  close(pipefd[0]);
  (void) dism_spawn_wait(pid, &status);
  return dism_spawn_exit_code(status);
}
