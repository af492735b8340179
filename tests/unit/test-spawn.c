/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-spawn.c - common/spawn.c: exit codes, signals, capture head and
 * tail, descriptors closed, sessions, exec failure, detach. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"
#include "unit-tap.h"

/* Everything a pipe gives until EOF, NUL-terminated. */
static void
read_all(int fd, char *buf, size_t cap)
{
  size_t len = 0;
  ssize_t n;

  while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
    len += (size_t) n;
  buf[len] = 0;
}

static int
run(const char *script)
{
  const char *argv[] = { "/bin/sh", "-c", script, NULL };
  pid_t pid;
  int status;

  if (dism_spawn(argv, NULL, &pid) < 0 || dism_spawn_wait(pid, &status) < 0)
    return -1;
  return dism_spawn_exit_code(status);
}

static int
capture(const char *script, char *out, size_t cap, enum dism_spawn_keep keep)
{
  const char *argv[] = { "/bin/sh", "-c", script, NULL };
  return dism_spawn_capture(argv, out, cap, keep);
}

int
main(void)
{
  char out[128], big[8192], script[256];
  int status, fd;
  pid_t pid;

  ok(run("exit 0") == 0, "exit 0");
  ok(run("exit 3") == 3, "exit 3");
  ok(run("kill -9 $$") == 128 + SIGKILL, "killed by SIGKILL: 137");
  ok(dism_spawn_exit_code(W_EXITCODE(0, SIGTERM)) == 128 + SIGTERM, "exit code of a signal");

  ok(capture("echo hello; echo world >&2", out, sizeof out, DISM_SPAWN_KEEP_HEAD) == 0 &&
     strcmp(out, "hello\nworld\n") == 0, "capture: stdout and stderr together");
  ok(capture("cat", out, sizeof out, DISM_SPAWN_KEEP_HEAD) == 0 && out[0] == 0,
     "capture: stdin is /dev/null");
  ok(capture("printf abc; exit 7", out, sizeof out, DISM_SPAWN_KEEP_TAIL) == 7 &&
     strcmp(out, "abc") == 0, "capture: the exit code comes back");
  /* 20000 lines "NNNNN\n": the head keeps the first bytes, the tail the last */
  capture("i=10000; while [ $i -lt 30000 ]; do echo $i; i=$((i+1)); done", big, 100,
          DISM_SPAWN_KEEP_HEAD);
  ok(strlen(big) == 99 && strncmp(big, "10000\n10001\n", 12) == 0, "capture head: the first 99 bytes");
  ok(capture("i=10000; while [ $i -lt 30000 ]; do echo $i; i=$((i+1)); done", big, 100,
             DISM_SPAWN_KEEP_TAIL) == 0, "capture tail: read to the end");
  ok(strlen(big) < 100 && strlen(big) >= 50 &&
     strcmp(big + strlen(big) - 12, "29998\n29999\n") == 0, "capture tail: the last bytes");
  ok(capture("echo x", out, 1, DISM_SPAWN_KEEP_TAIL) == 0 && out[0] == 0, "capture into 1 byte");

  /* A descriptor without O_CLOEXEC is not inherited. */
  fd = open("/dev/null", O_RDONLY);
  ok(fd >= 3 && dup2(fd, 57) == 57, "an inheritable descriptor 57");
  ok(capture("[ -e /proc/$$/fd/57 ] && echo open || echo closed", out, sizeof out,
             DISM_SPAWN_KEEP_HEAD) == 0 && strcmp(out, "closed\n") == 0,
     "descriptor 57 closed in the child: %.6s", out);
  /* builtins only: a fork of the shell's would open descriptors of its own */
  snprintf(script, sizeof script, "for i in 3 4 5 6 7 8 9 10 %d; do [ -e /proc/$$/fd/$i ] && "
           "printf '%%s ' $i; done; echo end", fd);
  ok(capture(script, out, sizeof out, DISM_SPAWN_KEEP_HEAD) == 0 && strcmp(out, "end\n") == 0,
     "nothing open in the child above 2 (%.40s)", out[0] == 'e' ? "none" : out);
  close(57);
  close(fd);

  /* The descriptors given, even when they are 0, 1 and 2 swapped. */
  {
    int p[2];
    struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
    const char *argv[] = { "/bin/sh", "-c", "echo to-stderr >&2; echo to-stdout", NULL };
    ok(pipe(p) == 0, "pipe");
    o.stderr_fd = p[1];
    ok(dism_spawn(argv, &o, &pid) == 0, "spawn with stderr on a pipe");
    close(p[1]);
    read_all(p[0], out, sizeof out);
    close(p[0]);
    ok(dism_spawn_wait(pid, &status) == 0 && WIFEXITED(status) && strcmp(out, "to-stderr\n") == 0,
       "stderr went to the pipe, stdout to /dev/null");
  }

  /* A new session: the child leads it (session id = its pid). */
  {
    struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
    const char *argv[] = { "/bin/sh", "-c", "cut -d' ' -f6 /proc/$$/stat; echo $$", NULL };
    int p[2];
    long sid = 0, me = -1;
    ok(pipe(p) == 0, "pipe");
    o.stdout_fd = p[1];
    o.new_session = true;
    ok(dism_spawn(argv, &o, &pid) == 0, "spawn in a new session");
    close(p[1]);
    read_all(p[0], big, sizeof big);
    close(p[0]);
    dism_spawn_wait(pid, NULL);
    ok(sscanf(big, "%ld %ld", &sid, &me) == 2 && sid == me && me == pid,
       "session id %ld, pid %ld", sid, me);
  }

  /* exec failure: exit 127 and the message asked for. */
  {
    const char *argv[] = { "/nonexistent/program", NULL };
    ok(dism_spawn_capture(argv, out, sizeof out, DISM_SPAWN_KEEP_HEAD) == 127,
       "a missing program exits 127");
  }
  {
    struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
    const char *argv[] = { "/nonexistent/program", NULL };
    int p[2];
    ok(pipe(p) == 0, "pipe");
    o.stderr_fd = p[1];
    o.exec_fail_prefix = "test: cannot execute ";
    ok(dism_spawn(argv, &o, &pid) == 0, "spawn of a missing program starts a child");
    close(p[1]);
    read_all(p[0], out, sizeof out);
    close(p[0]);
    ok(dism_spawn_wait(pid, &status) == 0 && dism_spawn_exit_code(status) == 127 &&
       strcmp(out, "test: cannot execute /nonexistent/program: No such file or directory\n") == 0,
       "exit 127 and the message: %s", out);
  }
  {
    struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
    const char *argv[] = { "true", NULL };
    o.search_path = true;
    ok(dism_spawn(argv, &o, &pid) == 0 && dism_spawn_wait(pid, &status) == 0 &&
       dism_spawn_exit_code(status) == 0, "search_path finds true in $PATH");
  }

  /* Detached: the pid is real but not our child. */
  {
    struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    char path[] = "/tmp/test-spawn-XXXXXX";
    FILE *f;
    long got = 0;
    int tmp = mkstemp(path);
    ok(tmp >= 0, "temporary file");
    snprintf(script, sizeof script, "echo $$ > %s.new && mv %s.new %s", path, path, path);
    o.detach = true;
    o.new_session = true;
    ok(dism_spawn(argv, &o, &pid) == 0 && pid > 0, "detached spawn");
    ok(dism_spawn_wait(pid, NULL) == -ECHILD, "a detached child is not ours to wait for");
    for (int i = 0; i < 500 && got != pid; i++) {
      usleep(10000);
      if ((f = fopen(path, "r"))) {
        if (fscanf(f, "%ld", &got) != 1)
          got = 0;
        fclose(f);
      }
    }
    ok(got == pid, "the pid given is the detached process's (%ld)", got);
    close(tmp);
    unlink(path);
  }
  {
    const char *argv[] = { NULL };
    ok(dism_spawn(argv, NULL, &pid) == -EINVAL, "no program: -EINVAL");
  }
  {
    /* A launcher whose stdin is closed passes it on as the child's stdin:
     * the child still runs (on /dev/null), it does not exit 127. */
    const char *argv[] = { "/bin/sh", "-c", "exit 5", NULL };
    pid_t launcher = fork();
    if (launcher == 0) {
      struct dism_spawn_opts o = DISM_SPAWN_OPTS_INIT;
      int st = 0;
      pid_t child;
      close(0);
      o.stdin_fd = 0;
      _exit(dism_spawn(argv, &o, &child) == 0 && dism_spawn_wait(child, &st) == 0
              ? dism_spawn_exit_code(st) : 99);
    }
    ok(launcher > 0 && dism_spawn_wait(launcher, &status) == 0 &&
       dism_spawn_exit_code(status) == 5, "a closed stdin given as the child's: the child runs");
  }
  return tap_done();
}
