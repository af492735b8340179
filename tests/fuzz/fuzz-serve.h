/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-serve.h - shared by the NBD fuzzers (fuzz-nbd, fuzz-nbd-transmission):
 * one input is written as a client's byte stream into a socketpair while a
 * second thread drains whatever the server answers, and the server serves
 * the other end in the calling thread.  Header-only: each fuzzer is one
 * translation unit linked with the engine and server sources. */
#ifndef DISM_FUZZ_SERVE_H
#define DISM_FUZZ_SERVE_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd-server.h"

static void *
fuzz_drain_main(void *arg)
{
  int fd = *(int *) arg;
  char buf[65536];

  while (read(fd, buf, sizeof buf) > 0)
    ;
  return NULL;
}

struct fuzz_feeder {
  int fd;
  const uint8_t *data;
  size_t size;
};

static void *
fuzz_feed_main(void *arg)
{
  struct fuzz_feeder *f = arg;
  size_t off = 0;

  while (off < f->size) {
    ssize_t n = send(f->fd, f->data + off, f->size - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;   /* the server hung up: fine */
    }
    off += (size_t) n;
  }
  shutdown(f->fd, SHUT_WR);
  return NULL;
}

/* Serve data[0..size) as one client connection: serve is
 * nbd_server_serve_fd or nbd_server_serve_fd_transmission (both close fd). */
static void
fuzz_serve_input(struct nbd_server *server, int (*serve)(struct nbd_server *, int),
                 const uint8_t *data, size_t size)
{
  struct fuzz_feeder feeder;
  pthread_t drainer, feed;
  int sv[2];

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    abort();
  /* sv[0]: the client end (we write the input and drain replies);
   * sv[1]: the server end, served in this thread. */
  feeder = (struct fuzz_feeder) { sv[0], data, size };
  if (pthread_create(&feed, NULL, fuzz_feed_main, &feeder) != 0 ||
      pthread_create(&drainer, NULL, fuzz_drain_main, &sv[0]) != 0)
    abort();
  serve(server, sv[1]);
  pthread_join(feed, NULL);
  pthread_join(drainer, NULL);
  close(sv[0]);
}

#endif
