/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* attach-nbd-wire.c - libdism's side of the NBD wire, before the kernel
 * owns a connection: the fixed-newstyle handshake (NBD_OPT_GO, simple
 * replies only, as the kernel speaks no other kind) and plain reads for
 * the partition probe.  The wire constants are common/nbd-protocol.h's;
 * the kernel's (netlink, ioctl) stay in attach-nbd.c, apart from these:
 * <linux/nbd.h> spells some of the same names for other things. */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "attach-internal.h"
#include "byteorder.h"
#include "dism-error.h"
#include "nbd-protocol.h"

#define PROBE_CHUNK (1u << 20)

/* ---- socket I/O with a deadline ------------------------------------------ */

static int
full_io(int fd, void *buf, size_t len, bool out)
{
  size_t done = 0;

  while (done < len) {
    struct pollfd p = { .fd = fd, .events = out ? POLLOUT : POLLIN };
    ssize_t n;
    int pr = poll(&p, 1, ATTACH_IO_TIMEOUT_MS);

    if (pr < 0 && errno == EINTR)
      continue;
    if (pr < 0)
      return -errno;
    if (pr == 0)
      return -ETIMEDOUT;
    n = out ? send(fd, (char *) buf + done, len - done, MSG_NOSIGNAL)
            : recv(fd, (char *) buf + done, len - done, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -ECONNRESET;
    done += (size_t) n;
  }
  return 0;
}

static int recv_all(int fd, void *buf, size_t len) { return full_io(fd, buf, len, false); }
static int send_all(int fd, const void *buf, size_t len) { return full_io(fd, (void *) buf, len, true); }

static int
discard(int fd, uint32_t len)
{
  char junk[512];
  int r = 0;

  while (len > 0 && r == 0) {
    uint32_t n = len < sizeof junk ? len : (uint32_t) sizeof junk;
    r = recv_all(fd, junk, n);
    len -= n;
  }
  return r;
}

/* ---- the handshake --------------------------------------------------------- */


int
dism_nbd_handshake(const char *path, int *fd_out, struct dism_nbd_export *ei)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct nbd_greeting hello;
  struct __attribute__((packed)) {       /* client flags, then NBD_OPT_GO */
    uint32_t cflags;
    struct nbd_option_header h;
    uint32_t namelen;
    uint16_t nreq, req0;
  } go;
  struct nbd_option_reply rep;
  uint8_t data[256];
  uint16_t info;
  bool have_export = false;
  int fd = -1, r;

  memset(ei, 0, sizeof *ei);
  if (strlen(path) >= sizeof sa.sun_path) {
    dism_set_error("%s: socket path too long", path);
    return -ENAMETOOLONG;
  }
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    dism_set_error("%s: socket: %s", path, strerror(-r));
    goto out;
  }
  if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    r = -errno;
    dism_set_error("%s: cannot connect to the NBD server: %s", path, strerror(-r));
    goto out;
  }
  r = recv_all(fd, &hello, sizeof hello);
  if (r < 0) {
    dism_set_error("%s: no NBD greeting: %s", path, strerror(-r));
    goto out;
  }
  if (be64toh(hello.passwd) != NBD_MAGIC_INIT_PASSWD || be64toh(hello.magic) != NBD_MAGIC_IHAVEOPT ||
      !(be16toh(hello.flags) & NBD_FLAG_FIXED_NEWSTYLE)) {
    r = -EPROTO;
    dism_set_error("%s: not a fixed-newstyle NBD server", path);
    goto out;
  }
  /* GO for the default export, asking for BLOCK_SIZE (a hint of the
   * sector size); no structured replies: the kernel cannot take them */
  go.cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE |
                      (be16toh(hello.flags) & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
  go.h.magic = htobe64(NBD_MAGIC_IHAVEOPT);
  go.h.option = htobe32(NBD_OPT_GO);
  go.h.len = htobe32(4 + 2 + 2);
  go.namelen = 0;
  go.nreq = htobe16(1);
  go.req0 = htobe16(NBD_INFO_BLOCK_SIZE);
  r = send_all(fd, &go, sizeof go);
  if (r < 0) {
    dism_set_error("%s: sending NBD_OPT_GO: %s", path, strerror(-r));
    goto out;
  }
  for (;;) {
    uint32_t type, len;
    r = recv_all(fd, &rep, sizeof rep);
    if (r < 0) {
      dism_set_error("%s: reading the reply to NBD_OPT_GO: %s", path, strerror(-r));
      goto out;
    }
    type = be32toh(rep.reply);
    len = be32toh(rep.len);
    if (be64toh(rep.magic) != NBD_MAGIC_OPTION_REPLY || be32toh(rep.option) != NBD_OPT_GO) {
      r = -EPROTO;
      dism_set_error("%s: malformed option reply", path);
      goto out;
    }
    if (type & NBD_REP_FLAG_ERROR) {
      uint32_t n = len < sizeof data - 1 ? len : (uint32_t) sizeof data - 1;
      if (recv_all(fd, data, n) < 0)
        n = 0;
      data[n] = 0;
      r = -EPROTO;
      dism_set_error("%s: the server refused the export (error 0x%x%s%s)", path, type,
                     n ? ": " : "", (char *) data);
      goto out;
    }
    if (type == NBD_REP_ACK) {
      if (len)
        r = discard(fd, len);
      break;
    }
    if (type != NBD_REP_INFO || len < 2 || len > sizeof data) {
      r = discard(fd, len);          /* unknown reply or info: skip */
      if (r < 0)
        goto io_err;
      continue;
    }
    r = recv_all(fd, data, len);
    if (r < 0)
      goto io_err;
    info = get_be16(data);
    if (info == NBD_INFO_EXPORT && len == 12) {
      ei->size = get_be64(data + 2);
      ei->flags = get_be16(data + 10);
      have_export = true;
    } else if (info == NBD_INFO_BLOCK_SIZE && len == 14) {
      ei->min_block = get_be32(data + 2);
    }
  }
io_err:
  if (r < 0) {
    dism_set_error("%s: reading the reply to NBD_OPT_GO: %s", path, strerror(-r));
    goto out;
  }
  if (!have_export || !(ei->flags & NBD_FLAG_HAS_FLAGS)) {
    r = -EPROTO;
    dism_set_error("%s: the server sent no export size and flags", path);
    goto out;
  }
  *fd_out = fd;
  fd = -1;
out:
  if (fd >= 0)
    close(fd);
  return r;
}


int
dism_nbd_probe_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
  struct dism_nbd_probe *p = ctx;
  struct nbd_request req;
  struct nbd_simple_reply rep;
  size_t done = 0;
  int r;

  while (done < len) {
    uint32_t n = len - done < PROBE_CHUNK ? (uint32_t) (len - done) : PROBE_CHUNK;
    req.magic = htobe32(NBD_MAGIC_REQUEST);
    req.flags = 0;
    req.type = htobe16(NBD_CMD_READ);
    req.cookie = htobe64(++p->cookie);
    req.offset = htobe64(off + done);
    req.length = htobe32(n);
    r = send_all(p->fd, &req, sizeof req);
    if (r == 0)
      r = recv_all(p->fd, &rep, sizeof rep);
    if (r < 0)
      return r;
    if (be32toh(rep.magic) != NBD_MAGIC_SIMPLE_REPLY || be64toh(rep.cookie) != p->cookie)
      return -EPROTO;
    if (rep.error)
      return -EIO;
    r = recv_all(p->fd, (char *) buf + done, n);
    if (r < 0)
      return r;
    done += n;
  }
  return 0;
}
