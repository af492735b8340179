/* SPDX-License-Identifier: GPL-2.0-or-later */
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
#include "fuzz-serve.h"

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!server)
    setup();
  fuzz_serve_input(server, nbd_server_serve_fd, data, size);
  return 0;
}
