/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* attach-nbd.c - hand N connections to the server to the kernel's nbd driver.
 *
 * Order: N fixed-newstyle handshakes (NBD_OPT_GO, simple replies only, as
 * the kernel speaks no other kind); the partition table is read and chosen
 * over the first connection while it is still ours (so the block size the
 * kernel gets is the disk's sector size, and nothing is attached for a disk
 * with no NTFS); then one generic netlink NBD_CMD_CONNECT without an index
 * (the kernel picks or creates a free device), our copies of the sockets
 * closed; then bigger requests, a change uevent (so udev sees `backend`) and
 * the partition scan the kernel only does on open.
 *
 * For the supervisor (dism-supervise): finding our device again by its
 * backend id, NBD_CMD_RECONFIGURE with fresh connections to a restarted
 * server (they replace the dead ones), and the kernel's LINK_DEAD notices.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <linux/netlink.h>
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "attach-internal.h"
#include "dism-error.h"
#include "env.h"

#define MAX_CONNS           16
#define REQ_TIMEOUT_S       30       /* kernel request timeout (DISM_NBD_TIMEOUT): see
                                      * nbd_connect */
#define DEAD_CONN_DEFAULT_S 30
#define CONNECT_TRIES       8        /* EBUSY: a prober held the device the kernel picked */
#define MAX_SECTORS_KB      4096

/* ---- generic netlink --------------------------------------------------------- */

struct nlbuf {
  union {
    struct nlmsghdr h;
    uint8_t b[4096];
  } u;
  size_t len;
  size_t nest[4];
  int depth;
  bool overflow;
};

static void
nl_init(struct nlbuf *m, uint16_t family, uint8_t cmd, uint16_t flags)
{
  struct genlmsghdr *g;

  memset(m, 0, sizeof *m);
  m->u.h.nlmsg_type = family;
  m->u.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  g = (struct genlmsghdr *) NLMSG_DATA(&m->u.h);
  g->cmd = cmd;
  g->version = 1;
  m->len = NLMSG_LENGTH(GENL_HDRLEN);
}

static void
nl_put(struct nlbuf *m, uint16_t type, const void *data, size_t len)
{
  struct nlattr *a;

  if (m->len + NLA_ALIGN(NLA_HDRLEN + len) > sizeof m->u.b) {
    m->overflow = true;
    return;
  }
  a = (struct nlattr *) (m->u.b + m->len);
  a->nla_type = type;
  a->nla_len = (uint16_t) (NLA_HDRLEN + len);
  if (len)
    memcpy((uint8_t *) a + NLA_HDRLEN, data, len);
  m->len += NLA_ALIGN(a->nla_len);
}

static void nl_put_u32(struct nlbuf *m, uint16_t t, uint32_t v) { nl_put(m, t, &v, 4); }
static void nl_put_u64(struct nlbuf *m, uint16_t t, uint64_t v) { nl_put(m, t, &v, 8); }

static void
nl_nest_start(struct nlbuf *m, uint16_t type)
{
  if (m->depth >= 4) {
    m->overflow = true;
    return;
  }
  m->nest[m->depth++] = m->len;
  nl_put(m, type | NLA_F_NESTED, NULL, 0);
}

static void
nl_nest_end(struct nlbuf *m)
{
  struct nlattr *a;

  if (m->depth <= 0 || m->overflow)
    return;
  a = (struct nlattr *) (m->u.b + m->nest[--m->depth]);
  a->nla_len = (uint16_t) (m->len - m->nest[m->depth]);
}

/* Called for each attribute of each reply message. */
typedef void (*nl_attr_fn)(void *arg, const struct nlattr *a);

/* Call fn for each attribute in [p, p + rem). */
static void
nl_foreach(const uint8_t *p, size_t rem, nl_attr_fn fn, void *arg)
{
  while (rem >= NLA_HDRLEN) {
    const struct nlattr *a = (const struct nlattr *) p;
    if (a->nla_len < NLA_HDRLEN || a->nla_len > rem)
      break;
    fn(arg, a);
    if ((size_t) NLA_ALIGN(a->nla_len) >= rem)
      break;
    rem -= (size_t) NLA_ALIGN(a->nla_len);
    p += NLA_ALIGN(a->nla_len);
  }
}

/* The attributes of a generic netlink message, if it has any. */
static void
nl_msg_foreach(const struct nlmsghdr *h, nl_attr_fn fn, void *arg)
{
  if (h->nlmsg_len >= NLMSG_LENGTH(GENL_HDRLEN))
    nl_foreach((const uint8_t *) NLMSG_DATA(h) + GENL_HDRLEN,
               h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN), fn, arg);
}

static void
nl_close(int fd)
{
  if (fd >= 0)
    close(fd);
}

static int
nl_open(void)
{
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  struct timeval tv = { .tv_sec = ATTACH_IO_TIMEOUT_MS / 1000 };
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

  if (fd < 0)
    return -errno;
  if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

/* Send m and read replies until the ACK; 0 or the kernel's -errno. */
static int
nl_call(int fd, struct nlbuf *m, nl_attr_fn fn, void *arg)
{
  static uint32_t seq;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  uint8_t buf[16384] __attribute__((aligned(4)));
  uint32_t my_seq;

  if (m->overflow)
    return -EMSGSIZE;
  my_seq = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED) + (uint32_t) time(NULL);
  m->u.h.nlmsg_len = (uint32_t) m->len;
  m->u.h.nlmsg_seq = my_seq;
  if (sendto(fd, m->u.b, m->len, 0, (struct sockaddr *) &kernel, sizeof kernel) < 0)
    return -errno;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    struct nlmsghdr *h;

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno == EAGAIN ? -ETIMEDOUT : -errno;
    for (h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != my_seq)
        continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e))
          return -EPROTO;
        return e->error;             /* 0 is the ACK */
      }
      if (h->nlmsg_type == NLMSG_DONE)
        return 0;
      if (fn)
        nl_msg_foreach(h, fn, arg);
    }
  }
}

struct nbd_family_ids {
  uint16_t id;
  uint32_t mcast;                    /* nbd_mc_group, 0 if not found */
};

static const void *nla_data(const struct nlattr *a) { return (const uint8_t *) a + NLA_HDRLEN; }
static size_t nla_len(const struct nlattr *a) { return a->nla_len - NLA_HDRLEN; }

/* One entry of CTRL_ATTR_MCAST_GROUPS: a nest of name and id. */
struct mcast_entry {
  bool is_nbd;
  uint32_t id;
};

static void
mcast_entry_attr(void *arg, const struct nlattr *a)
{
  struct mcast_entry *e = arg;

  if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GRP_NAME)
    e->is_nbd = strncmp(nla_data(a), NBD_GENL_MCAST_GROUP_NAME, nla_len(a)) == 0;
  else if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GRP_ID && nla_len(a) >= 4)
    memcpy(&e->id, nla_data(a), 4);
}

static void
mcast_group_attr(void *arg, const struct nlattr *a)
{
  struct mcast_entry e = { 0 };

  nl_foreach(nla_data(a), nla_len(a), mcast_entry_attr, &e);
  if (e.is_nbd)
    ((struct nbd_family_ids *) arg)->mcast = e.id;
}

static void
family_attr(void *arg, const struct nlattr *a)
{
  struct nbd_family_ids *f = arg;

  if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_FAMILY_ID && nla_len(a) >= 2)
    memcpy(&f->id, nla_data(a), 2);
  else if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GROUPS)
    nl_foreach(nla_data(a), nla_len(a), mcast_group_attr, f);
}

static int
nbd_family_ids(int fd, struct nbd_family_ids *f)
{
  struct nlbuf m;
  int r;

  memset(f, 0, sizeof *f);
  nl_init(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0);
  nl_put(&m, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME, sizeof NBD_GENL_FAMILY_NAME);
  r = nl_call(fd, &m, family_attr, f);
  if (r == 0 && f->id == 0)
    r = -ENOENT;
  if (r < 0)
    dism_set_error("generic netlink family \"nbd\" not found (%s): is nbd.ko loaded?",
                   strerror(-r));
  return r;
}

/* A netlink socket (returned) and the nbd family's ids; -errno with a
 * message. */
static int
nbd_nl_open(struct nbd_family_ids *f)
{
  int fd = nl_open(), r;

  if (fd < 0) {
    dism_set_error("netlink socket: %s", strerror(-fd));
    return fd;
  }
  r = nbd_family_ids(fd, f);
  if (r < 0) {
    nl_close(fd);
    return r;
  }
  return fd;
}

/* For one request: a netlink socket (returned), the nbd family id and a
 * message buffer (*m, the caller frees it); -errno with a message. */
static int
nbd_genl_open(uint16_t *fam, struct nlbuf **m)
{
  struct nbd_family_ids f;
  int fd = nbd_nl_open(&f);

  *m = NULL;
  if (fd < 0)
    return fd;
  *m = malloc(sizeof **m);
  if (!*m) {
    nl_close(fd);
    dism_set_error("out of memory");
    return -ENOMEM;
  }
  *fam = f.id;
  return fd;
}

static void
index_attr(void *arg, const struct nlattr *a)
{
  if ((a->nla_type & NLA_TYPE_MASK) == NBD_ATTR_INDEX && a->nla_len >= NLA_HDRLEN + 4) {
    uint32_t v;
    memcpy(&v, (const uint8_t *) a + NLA_HDRLEN, 4);
    *(int *) arg = (int) v;
  }
}

static int
nbd_disconnect_index(int index)
{
  struct nlbuf *m;
  uint16_t fam;
  int fd, r;

  fd = nbd_genl_open(&fam, &m);
  if (fd < 0)
    return fd;
  nl_init(m, fam, NBD_CMD_DISCONNECT, 0);
  nl_put_u32(m, NBD_ATTR_INDEX, (uint32_t) index);
  r = nl_call(fd, m, NULL, NULL);
  if (r < 0)
    dism_set_error("/dev/nbd%d: NBD_CMD_DISCONNECT: %s", index, strerror(-r));
  free(m);
  nl_close(fd);
  return r;
}

/* ---- sysfs state ------------------------------------------------------------- */

static bool
nbd_backend_is(int index, const char *id)
{
  char path[96], val[128];

  snprintf(path, sizeof path, "/sys/block/nbd%d/backend", index);
  return id[0] && dism_attach_read_file(path, val, sizeof val) == 0 && strcmp(val, id) == 0;
}

/* Free: the device is gone (DESTROY_ON_DISCONNECT) or has size 0, no pid and
 * nothing in flight (the teardown's asynchronous half is over). */
static bool
nbd_is_free(int index)
{
  char path[96], val[64];

  snprintf(path, sizeof path, "/sys/block/nbd%d", index);
  if (access(path, F_OK) != 0)
    return true;
  snprintf(path, sizeof path, "/sys/block/nbd%d/size", index);
  if (dism_attach_read_file(path, val, sizeof val) == 0 && strcmp(val, "0") != 0)
    return false;
  snprintf(path, sizeof path, "/sys/block/nbd%d/pid", index);
  if (access(path, F_OK) == 0)
    return false;
  snprintf(path, sizeof path, "/sys/block/nbd%d/inflight", index);
  if (dism_attach_read_file(path, val, sizeof val) == 0) {
    unsigned rd = 0, wr = 0;
    if (sscanf(val, "%u %u", &rd, &wr) == 2 && (rd || wr))
      return false;
  }
  return true;
}

static int
wait_free(int index)
{
  int waited;

  for (waited = 0; waited < ATTACH_DETACH_WAIT_MS; waited += 20) {
    if (nbd_is_free(index))
      return 0;
    dism_attach_sleep_ms(20);
  }
  dism_set_error("/dev/nbd%d still busy %d ms after the disconnect", index,
                 ATTACH_DETACH_WAIT_MS);
  return -EBUSY;
}

/* Raise the largest request the kernel sends (128 KiB by default). */
static void
raise_max_sectors(int index)
{
  char path[96], val[32];
  unsigned long hw = MAX_SECTORS_KB;

  snprintf(path, sizeof path, "/sys/block/nbd%d/queue/max_hw_sectors_kb", index);
  if (dism_attach_read_file(path, val, sizeof val) == 0)
    hw = strtoul(val, NULL, 10);
  if (hw > MAX_SECTORS_KB)
    hw = MAX_SECTORS_KB;
  snprintf(val, sizeof val, "%lu", hw);
  snprintf(path, sizeof path, "/sys/block/nbd%d/queue/max_sectors_kb", index);
  dism_attach_write_file(path, val);      /* a tuning: the device works without it */
}

/* The kernel scans partitions on the first open after connect; BLKRRPART
 * makes sure, then wait for nbdNpK and check it is where we read it. */
static int
scan_partitions(struct dism_attach *a)
{
  char name[32], path[128], val[32];
  int fd, waited, rescans = 0;

  fd = open(a->disk_dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    dism_set_error("%s: %s", a->disk_dev, strerror(errno));
    return -errno;
  }
  if (a->partition == 0) {
    close(fd);
    snprintf(a->fs_dev, sizeof a->fs_dev, "%s", a->disk_dev);
    return 0;
  }
  snprintf(name, sizeof name, "nbd%dp%d", a->nbd_index, a->partition);
  snprintf(path, sizeof path, "/sys/block/nbd%d/%s/start", a->nbd_index, name);
  /* the open normally scanned already; a second scan only costs uevents */
  if (access(path, F_OK) != 0)
    ioctl(fd, BLKRRPART, 0);
  for (waited = 0; access(path, F_OK) != 0; waited += 20) {
    if (waited >= ATTACH_PART_WAIT_MS) {
      close(fd);
      dism_set_error("/dev/%s did not appear within %d ms (the kernel's partition "
                     "limit, max_part, may be too small)", name, ATTACH_PART_WAIT_MS);
      return -ENOENT;
    }
    if (waited >= 1000 * (rescans + 1) && rescans < 3) {
      ioctl(fd, BLKRRPART, 0);
      rescans++;
    }
    dism_attach_sleep_ms(20);
  }
  close(fd);
  if (dism_attach_read_file(path, val, sizeof val) < 0 ||
      strtoull(val, NULL, 10) * 512 != a->part_offset) {
    dism_set_error("/dev/%s starts at sector %s, not at byte %" PRIu64 " as the "
                   "partition table read before said", name, val, a->part_offset);
    return -EIO;
  }
  return dism_attach_dev_node(name, a->fs_dev, sizeof a->fs_dev);
}

/* ---- attach / detach -------------------------------------------------------- */

/* One connection unless asked (req->connections, else DISM_NBD_CONNECTIONS).
 * The kernel reads each connection's replies in a work item that runs until
 * the connection ends, on the device's WQ_MEM_RECLAIM workqueue.  When a
 * worker thread takes over 10 ms to create (a loaded or memory-starved
 * machine; often under TCG), that queue's rescuer takes every
 * pending item and runs them in turn: the first never returns, so the other
 * connections' replies are never read and their requests wait out the
 * request timeout (30 s) before going to a live connection.  Linux fixed
 * the rescuer in 6.19 ("workqueue: Process rescuer work items one-by-one
 * using a cursor"); Debian 12's 6.1.192 still serializes (docs/reliability.md). */
static unsigned
want_connections(const struct dism_attach_request *req)
{
  long n = req->connections ? (long) req->connections
                            : dism_env_long("DISM_NBD_CONNECTIONS", 1);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);

  /* blk-mq gives a device no more hardware queues than CPUs, one per
   * connection: a connection beyond them would carry nothing, and the
   * supervisor, which counts the queues, would not replace it. */
  if (cpus > 0 && n > cpus)
    n = cpus;
  if (n < 1)
    n = 1;
  return n > MAX_CONNS ? MAX_CONNS : (unsigned) n;
}

/* NBD_ATTR_SOCKETS: one NBD_SOCK_ITEM { NBD_SOCK_FD } per socket. */
static void
nl_put_sockets(struct nlbuf *m, const int *fds, unsigned nfds)
{
  nl_nest_start(m, NBD_ATTR_SOCKETS);
  for (unsigned i = 0; i < nfds; i++) {
    nl_nest_start(m, NBD_SOCK_ITEM);
    nl_put_u32(m, NBD_SOCK_FD, (uint32_t) fds[i]);
    nl_nest_end(m);
  }
  nl_nest_end(m);
}

/* The kernel's request timeout.  An expired request marks its socket dead
 * and is queued again: sent on another connection if the device has one,
 * else held until the supervisor replaces the dead socket (LINK_DEAD,
 * RECONFIGURE), up to the dead-connection timeout.  So a slow server looks
 * like a dead socket and costs a resend, not an error.  And after
 * a server crash the requests the dead server had not answered wait this
 * long before they are sent again: the longest stall a crash causes. */
static uint64_t
request_timeout(void)
{
  long s = dism_env_long("DISM_NBD_TIMEOUT", 0);

  return s > 0 ? (uint64_t) s : REQ_TIMEOUT_S;
}

static int
nbd_connect(const struct dism_attach_request *req, const int *fds, unsigned nfds,
            const struct dism_nbd_export *ei, unsigned blksize, int *index)
{
  struct nlbuf *m = NULL;
  uint16_t fam;
  unsigned tries;
  int nl = -1, r;
  uint64_t flags = ei->flags | (req->readonly ? NBD_FLAG_READ_ONLY : 0);

  nl = nbd_genl_open(&fam, &m);
  if (nl < 0) {
    r = nl;
    goto out;
  }
  for (tries = 0; tries < CONNECT_TRIES; tries++) {
    nl_init(m, fam, NBD_CMD_CONNECT, 0);
    nl_put_u64(m, NBD_ATTR_SIZE_BYTES, ei->size);
    nl_put_u64(m, NBD_ATTR_BLOCK_SIZE_BYTES, blksize);
    nl_put_u64(m, NBD_ATTR_SERVER_FLAGS, flags);
    nl_put_u64(m, NBD_ATTR_TIMEOUT, request_timeout());
    nl_put_u64(m, NBD_ATTR_DEAD_CONN_TIMEOUT,
               req->dead_conn_timeout ? req->dead_conn_timeout : DEAD_CONN_DEFAULT_S);
    /* on-demand devices vanish on disconnect: none pile up for udev to probe;
     * no DISCONNECT_ON_CLOSE: it races udev's probe open/close */
    nl_put_u64(m, NBD_ATTR_CLIENT_FLAGS, NBD_CFLAG_DESTROY_ON_DISCONNECT);
    nl_put(m, NBD_ATTR_BACKEND_IDENTIFIER, req->backend_id, strlen(req->backend_id) + 1);
    nl_put_sockets(m, fds, nfds);
    *index = -1;
    r = nl_call(nl, m, index_attr, index);
    if (r != -EBUSY)
      break;
    dism_attach_sleep_ms(50 << (tries < 4 ? tries : 4));
  }
  if (r < 0) {
    dism_set_error("NBD_CMD_CONNECT of %s (%" PRIu64 " bytes, %u connection%s): %s",
                   req->nbd_socket, ei->size, nfds, nfds == 1 ? "" : "s", strerror(-r));
    goto out;
  }
  if (*index < 0) {
    r = -EPROTO;
    dism_set_error("NBD_CMD_CONNECT succeeded but the kernel sent no device index");
  }
out:
  free(m);
  nl_close(nl);
  return r;
}

/* Up to *n handshaked connections to the server at path (one without
 * CAN_MULTI_CONN), all seeing the same export; *n is set to how many.  On
 * failure none is left open. */
static int
handshake_all(const char *path, int *fds, unsigned *n, struct dism_nbd_export *ei)
{
  struct dism_nbd_export ej;
  unsigned i;
  int r;

  r = dism_nbd_handshake(path, &fds[0], ei);
  if (r < 0)
    return r;
  if (!(ei->flags & NBD_FLAG_CAN_MULTI_CONN))
    *n = 1;                          /* the kernel refuses more without it */
  for (i = 1; i < *n; i++) {
    r = dism_nbd_handshake(path, &fds[i], &ej);
    if (r == 0 && (ej.size != ei->size || ej.flags != ei->flags)) {
      close(fds[i]);
      r = -EPROTO;
      dism_set_error("%s: connection %u saw a different export (size or flags)", path, i + 1);
    }
    if (r < 0) {
      while (i-- > 0)
        close(fds[i]);
      return r;
    }
  }
  return 0;
}

int
dism_attach_nbd(const struct dism_attach_request *req, struct dism_attach *out)
{
  int fds[MAX_CONNS];
  struct dism_nbd_export ei;
  struct dism_nbd_probe probe;
  struct dism_disk_io io;
  unsigned n, nfds = 0, i;
  int index = -1, r;
  char name[32];

  out->method = DISM_ATTACH_NBD;
  out->nbd_index = -1;
  snprintf(out->backend_id, sizeof out->backend_id, "%s", req->backend_id);
  n = want_connections(req);

  r = handshake_all(req->nbd_socket, fds, &n, &ei);
  if (r < 0)
    goto out;
  nfds = n;
  if (req->readonly == false && (ei.flags & NBD_FLAG_READ_ONLY)) {
    r = -EROFS;
    dism_set_error("%s: read-write attach asked, but the server exports read-only",
                   req->nbd_socket);
    goto out;
  }

  /* choose the partition over our first connection */
  probe = (struct dism_nbd_probe) { .fd = fds[0] };
  io = (struct dism_disk_io) { .pread = dism_nbd_probe_pread, .ctx = &probe, .size = ei.size,
                               .name = req->nbd_socket };
  r = dism_attach_choose(&io, ei.min_block == 4096 ? 4096 : 0, out);
  if (r < 0)
    goto out;

  r = nbd_connect(req, fds, nfds, &ei, out->sector_size, &index);
  if (r < 0)
    goto out;
  out->nbd_index = index;
  /* the kernel holds its own references to the sockets */
  for (i = 0; i < nfds; i++)
    close(fds[i]);
  nfds = 0;

  snprintf(name, sizeof name, "nbd%d", index);
  raise_max_sectors(index);
  {
    char path[96];
    snprintf(path, sizeof path, "/sys/block/%s/uevent", name);
    dism_attach_write_file(path, "change");  /* udev rules now see `backend` */
  }
  r = dism_attach_dev_node(name, out->disk_dev, sizeof out->disk_dev);
  if (r < 0)
    goto out;
  r = scan_partitions(out);
out:
  for (i = 0; i < nfds; i++)
    close(fds[i]);
  if (r < 0 && index >= 0) {
    /* undo: no device left behind */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", dism_last_error());
    if (nbd_disconnect_index(index) == 0)
      wait_free(index);
    dism_set_error("%s", msg);
    out->nbd_index = -1;
  }
  if (r < 0) {
    out->disk_dev[0] = 0;
    out->fs_dev[0] = 0;
  }
  return r;
}

int
dism_detach_nbd(const struct dism_attach *a)
{
  int r;

  if (a->nbd_index < 0) {
    dism_set_error("no NBD device index recorded");
    return -EINVAL;
  }
  /* after a crash and reboot the index may belong to someone else */
  if (!nbd_backend_is(a->nbd_index, a->backend_id))
    return 0;
  r = nbd_disconnect_index(a->nbd_index);
  if (r < 0)
    return r;
  return wait_free(a->nbd_index);
}

/* The server is dead: requests wait dead_conn_timeout for a reconnect that
 * cannot come.  DISCONNECT fails them (and later ones) at once.  No wait for
 * the device to be free: the file system still holds it open. */
int
dism_attach_abort_nbd(const struct dism_attach *a)
{
  if (a->nbd_index < 0 || !nbd_backend_is(a->nbd_index, a->backend_id))
    return 0;
  return nbd_disconnect_index(a->nbd_index);
}

bool
dism_attach_alive_nbd(const struct dism_attach *a)
{
  char path[96];

  if (a->nbd_index < 0 || !nbd_backend_is(a->nbd_index, a->backend_id))
    return false;
  snprintf(path, sizeof path, "/sys/block/nbd%d/pid", a->nbd_index);
  return access(path, F_OK) == 0;
}

/* ---- after a server restart (dism-supervise) ----------------------------- */

int
dism_nbd_find(const char *backend_id)
{
  DIR *d = opendir("/sys/block");
  struct dirent *de;
  int found = -1;

  if (!d)
    return -1;
  while (found < 0 && (de = readdir(d))) {
    int index;
    char end;
    if (sscanf(de->d_name, "nbd%d%c", &index, &end) == 1 && nbd_backend_is(index, backend_id))
      found = index;
  }
  closedir(d);
  return found;
}

/* The number of connections of /dev/nbdN: one hardware queue each. */
static unsigned
nbd_connections(int index)
{
  char path[96];
  DIR *d;
  struct dirent *de;
  unsigned n = 0;

  snprintf(path, sizeof path, "/sys/block/nbd%d/mq", index);
  d = opendir(path);
  if (!d)
    return 1;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.')
      n++;
  closedir(d);
  return n < 1 ? 1 : n > MAX_CONNS ? MAX_CONNS : n;
}

int
dism_nbd_reconnect(const char *nbd_socket, const char *backend_id, int index)
{
  int fds[MAX_CONNS];
  struct dism_nbd_export ei;
  struct nlbuf *m = NULL;
  unsigned n = nbd_connections(index), i;
  uint16_t fam;
  char path[96], val[32];
  int nl = -1, r;

  r = handshake_all(nbd_socket, fds, &n, &ei);
  if (r < 0)
    return r;
  /* The same disk, or nothing: a size the device does not have means the
   * server behind the socket is serving something else. */
  snprintf(path, sizeof path, "/sys/block/nbd%d/size", index);
  if (dism_attach_read_file(path, val, sizeof val) == 0 &&
      strtoull(val, NULL, 10) * 512 != ei.size) {
    r = -EPROTO;
    dism_set_error("%s exports %" PRIu64 " bytes, but /dev/nbd%d has %s sectors",
                   nbd_socket, ei.size, index, val);
    goto out;
  }
  nl = nbd_genl_open(&fam, &m);
  if (nl < 0) {
    r = nl;
    goto out;
  }
  /* Each socket replaces one dead connection; with none dead left the
   * kernel ignores the rest.  The backend id must match the CONNECT's. */
  nl_init(m, fam, NBD_CMD_RECONFIGURE, 0);
  nl_put_u32(m, NBD_ATTR_INDEX, (uint32_t) index);
  nl_put(m, NBD_ATTR_BACKEND_IDENTIFIER, backend_id, strlen(backend_id) + 1);
  nl_put_sockets(m, fds, n);
  r = nl_call(nl, m, NULL, NULL);
  if (r < 0)
    dism_set_error("/dev/nbd%d: NBD_CMD_RECONFIGURE with %u connection%s to %s: %s", index, n,
                   n == 1 ? "" : "s", nbd_socket, strerror(-r));
out:
  for (i = 0; i < n; i++)
    close(fds[i]);                   /* the kernel holds its own references */
  free(m);
  nl_close(nl);
  return r;
}

int
dism_nbd_monitor_open(void)
{
  struct nbd_family_ids f;
  int fd = nbd_nl_open(&f), r = 0;

  if (fd < 0)
    return fd;
  if (f.mcast == 0) {
    r = -ENOENT;
    dism_set_error("the nbd netlink family has no multicast group \"%s\"",
                   NBD_GENL_MCAST_GROUP_NAME);
  }
  if (r == 0 && setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &f.mcast,
                           sizeof f.mcast) < 0) {
    r = -errno;
    dism_set_error("joining the nbd multicast group: %s", strerror(-r));
  }
  if (r < 0) {
    nl_close(fd);
    return r;
  }
  return fd;
}

int
dism_nbd_monitor_read(int fd, int index)
{
  uint8_t buf[8192] __attribute__((aligned(4)));
  int count = 0;

  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    struct nlmsghdr *h;

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == ENOBUFS)
      return count + 1;              /* notices were lost: assume one was ours */
    if (n < 0)
      return errno == EAGAIN ? count : -errno;
    for (h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n); h = NLMSG_NEXT(h, n)) {
      const struct genlmsghdr *g = NLMSG_DATA(h);
      int dead = -1;

      if (h->nlmsg_type < NLMSG_MIN_TYPE || h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN) ||
          g->cmd != NBD_CMD_LINK_DEAD)
        continue;
      nl_msg_foreach(h, index_attr, &dead);
      count += dead >= 0 && (index < 0 || dead == index);
    }
  }
}
