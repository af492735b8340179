/* fuzz-nbd.c - libFuzzer target for the NBD server: the input is what a
 * client sends (handshake, options, requests, payloads), fed through a
 * socketpair to nbd_server_serve_fd over an in-memory raw disk.
 *
 * The server must not crash, leak or hang whatever the bytes; replies are
 * read and thrown away by a drain thread so the server never blocks on a
 * full socket. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "disk.h"
#include "nbd-server.h"

#define DISK_SIZE (1u << 20)

static struct disk *disk;
static struct nbd_server *server;

static void
setup(void)
{
  struct disk_open_opts opts = { .format = "raw" };
  struct nbd_server_config cfg = { .export_name = "", .threads = 2 };
  char path[64];
  int fd;

  fd = memfd_create("fuzz-nbd-disk", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
    abort();
  /* Some data, some holes: exercises OFFSET_HOLE and BLOCK_STATUS. */
  if (pwrite(fd, "dism", 4, 65536) != 4)
    abort();
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  if (disk_open(path, &opts, &disk) < 0 ||
      nbd_server_new(disk, &cfg, &server) < 0) {
    fprintf(stderr, "fuzz-nbd: setup: %s\n", disk_last_error());
    abort();
  }
  close(fd);   /* the disk has its own descriptor */
}

static void *
drain_main(void *arg)
{
  int fd = *(int *) arg;
  char buf[65536];

  while (read(fd, buf, sizeof buf) > 0)
    ;
  return NULL;
}

struct feeder {
  int fd;
  const uint8_t *data;
  size_t size;
};

static void *
feed_main(void *arg)
{
  struct feeder *f = arg;
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct feeder feeder;
  pthread_t drainer, feed;
  int sv[2];

  if (!server)
    setup();
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    abort();
  /* sv[0]: the client end (we write the input and drain replies);
   * sv[1]: the server end, served in this thread. */
  feeder = (struct feeder) { sv[0], data, size };
  if (pthread_create(&feed, NULL, feed_main, &feeder) != 0 ||
      pthread_create(&drainer, NULL, drain_main, &sv[0]) != 0)
    abort();
  nbd_server_serve_fd(server, sv[1]);   /* closes sv[1] */
  pthread_join(feed, NULL);
  pthread_join(drainer, NULL);
  close(sv[0]);
  return 0;
}
