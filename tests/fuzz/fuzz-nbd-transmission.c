/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-nbd-transmission - libFuzzer target for the NBD server's
 * transmission phase entered directly, as on the kernel attach path
 * (nbd_server_serve_fd_transmission: the handshake was done elsewhere;
 * compact requests, simple replies).
 *
 * fuzz-nbd reaches transmission too, but only behind a handshake the
 * mutations must keep intact; here every byte is a request, a payload or
 * garbage.  Input: byte 0 picks the export (bits 0-1: 0 and 3 a read/write
 * raw disk, 1 the same read-only, 2 a copy-on-write overlay over a raw
 * base, as read/write mounts serve), the rest is what the client sends.
 * Replies are drained by a thread; the server must not crash, leak or hang. */
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
#include "overlay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_SIZE (1u << 20)

enum { EXP_RW, EXP_RO, EXP_OVERLAY, NEXPORTS };
static struct nbd_server *servers[NEXPORTS];

static struct disk *
raw_disk(bool readonly)
{
  struct disk_open_opts opts = { .format = "raw", .readonly = readonly };
  struct disk *d;
  char path[64];
  int fd;

  fd = memfd_create("fuzz-nbd-disk", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
    abort();
  /* Some data, some holes: exercises OFFSET_HOLE and BLOCK_STATUS. */
  if (pwrite(fd, "dism", 4, 65536) != 4)
    abort();
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  if (disk_open(path, &opts, &d) < 0) {
    fprintf(stderr, "fuzz-nbd-transmission: %s\n", disk_last_error());
    abort();
  }
  close(fd);   /* the disk has its own descriptor */
  return d;
}

static void
setup(void)
{
  struct nbd_server_config cfg = { .export_name = "", .threads = 2 };
  char dir[] = "/tmp/fuzz-nbd-transmission.XXXXXX", ovl_path[64];
  struct disk *disks[NEXPORTS];

  disks[EXP_RW] = raw_disk(false);
  disks[EXP_RO] = raw_disk(true);
  /* The overlay file (and its live map) is unlinked once open: nothing is
   * left behind. */
  if (!mkdtemp(dir))
    abort();
  snprintf(ovl_path, sizeof ovl_path, "%s/ovl", dir);
  if (overlay_open(raw_disk(true), ovl_path, OVERLAY_CREATE, &disks[EXP_OVERLAY]) < 0) {
    fprintf(stderr, "fuzz-nbd-transmission: %s\n", disk_last_error());
    abort();
  }
  overlay_remove(ovl_path);
  rmdir(dir);
  for (int i = 0; i < NEXPORTS; i++) {
    cfg.readonly = i == EXP_RO;
    if (nbd_server_new(disks[i], &cfg, &servers[i]) < 0) {
      fprintf(stderr, "fuzz-nbd-transmission: setup: %s\n", disk_last_error());
      abort();
    }
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const int exports[4] = { EXP_RW, EXP_RO, EXP_OVERLAY, EXP_RW };

  if (size < 1)
    return 0;
  if (!servers[0])
    setup();
  fuzz_serve_input(servers[exports[data[0] & 3]], nbd_server_serve_fd_transmission,
                   data + 1, size - 1);
  return 0;
}
