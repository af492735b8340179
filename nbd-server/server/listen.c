/* SPDX-License-Identifier: GPL-2.0-or-later */
/* listen.c - listening sockets: a Unix socket (mode 0600) and TCP. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-server.h"

#define LISTEN_BACKLOG 64

/* A socket file left behind by a dead server is replaced; a live one (it
 * accepts connections) or any other file is an error. */
static int
remove_stale_socket(const char *path, const struct sockaddr_un *addr)
{
  struct stat st;
  int fd, r = 0;

  if (lstat(path, &st) < 0)
    return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) {
    disk_set_error("%s: exists and is not a socket", path);
    return -EEXIST;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, (const struct sockaddr *) addr, sizeof *addr) == 0) {
    disk_set_error("%s: another server is listening there", path);
    r = -EADDRINUSE;
  } else if (unlink(path) < 0 && errno != ENOENT) {
    r = -errno;
    disk_set_error("%s: cannot remove stale socket: %s", path, strerror(errno));
  }
  close(fd);
  return r;
}

int
nbd_listen_unix(const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct sockaddr_un tmp = { .sun_family = AF_UNIX };
  bool bound = false;
  int fd = -1, r;

  if (strlen(path) + 16 >= sizeof addr.sun_path) {
    disk_set_error("%s: socket path too long", path);
    return -ENAMETOOLONG;
  }
  strcpy(addr.sun_path, path);
  snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s.%ld.tmp", path, (long) getpid());
  r = remove_stale_socket(path, &addr);
  if (r < 0)
    goto out;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    disk_set_error("socket: %s", strerror(errno));
    goto out;
  }
  /* Bind under a temporary name, restrict it to the owner, listen, and
   * only then rename it into place: whoever sees PATH can connect. */
  unlink(tmp.sun_path);
  if (bind(fd, (struct sockaddr *) &tmp, sizeof tmp) < 0) {
    r = -errno;
    disk_set_error("%s: bind: %s", path, strerror(errno));
    goto out;
  }
  bound = true;
  if (chmod(tmp.sun_path, 0600) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
      rename(tmp.sun_path, path) < 0) {
    r = -errno;
    disk_set_error("%s: %s", path, strerror(errno));
    goto out;
  }
  bound = false;
  r = fd;
  fd = -1;
out:
  if (bound)
    unlink(tmp.sun_path);
  if (fd >= 0)
    close(fd);
  return r;
}

/* Split "[HOST:]PORT" / "[v6]:PORT" into host and port (in buf).  *host
 * is NULL when no host was given: loopback only. */
static int
parse_host_port(const char *spec, char *buf, size_t bufsize,
                const char **host, const char **port)
{
  char *colon;

  if (strlen(spec) >= bufsize)
    return -ENAMETOOLONG;
  strcpy(buf, spec);
  if (buf[0] == '[') {
    char *close_bracket = strchr(buf, ']');
    if (!close_bracket || close_bracket[1] != ':')
      return -EINVAL;
    *close_bracket = '\0';
    *host = buf + 1;
    *port = close_bracket + 2;
  } else if ((colon = strrchr(buf, ':')) != NULL) {
    *colon = '\0';
    *host = buf;
    *port = colon + 1;
  } else {
    *host = NULL;
    *port = buf;
  }
  if (**port == '\0')
    return -EINVAL;
  if (*host && **host == '\0')
    *host = NULL;
  return 0;
}

/* Listen on every address host:port resolves to, appending to fds[*n..max).
 * Failures are remembered in *last_errno and skipped. */
static int
listen_host(const char *host, const char *port, int flags, int *fds, int *n,
            int max, int *last_errno)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                            .ai_flags = flags };
  struct addrinfo *res = NULL, *ai;
  int gai;

  gai = getaddrinfo(host, port, &hints, &res);
  if (gai != 0)
    return gai;
  for (ai = res; ai && *n < max; ai = ai->ai_next) {
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);

    if (fd < 0) {
      *last_errno = errno;
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
      *last_errno = errno;
      close(fd);
      continue;
    }
    fds[(*n)++] = fd;
  }
  freeaddrinfo(res);
  return 0;
}

int
nbd_listen_tcp(const char *spec, int *fds, int max)
{
  const char *host, *port;
  char buf[512];
  int n = 0, r, gai, last_errno = 0;

  r = parse_host_port(spec, buf, sizeof buf, &host, &port);
  if (r < 0) {
    disk_set_error("%s: expected [HOST:]PORT", spec);
    return r;
  }
  if (host) {
    gai = listen_host(host, port, AI_PASSIVE | AI_ADDRCONFIG, fds, &n, max,
                      &last_errno);
    if (gai != 0) {
      disk_set_error("%s: %s", spec, gai_strerror(gai));
      return -EINVAL;
    }
  } else {
    /* No address given: loopback only, never the network.  ::1 is best
     * effort (IPv6 may be off); 127.0.0.1 must work. */
    gai = listen_host("127.0.0.1", port, AI_NUMERICHOST, fds, &n, max,
                      &last_errno);
    if (gai != 0) {
      disk_set_error("%s: %s", spec, gai_strerror(gai));
      return -EINVAL;
    }
    if (n == 0) {
      r = last_errno ? -last_errno : -EADDRNOTAVAIL;
      disk_set_error("%s: cannot listen on 127.0.0.1: %s", spec, strerror(-r));
      return r;
    }
    listen_host("::1", port, AI_NUMERICHOST, fds, &n, max, &last_errno);
  }
  if (n == 0) {
    r = last_errno ? -last_errno : -EADDRNOTAVAIL;
    disk_set_error("%s: cannot listen: %s", spec, strerror(-r));
    return r;
  }
  return n;
}
