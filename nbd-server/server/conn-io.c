/* SPDX-License-Identifier: GPL-2.0-or-later */
/* conn-io.c - I/O for one connection: buffered exact reads (many small
 * request headers per recv) and whole-message sends, through the
 * connection's transport (c->io): the plain socket here (recv, sendmsg),
 * or TLS after STARTTLS (tls.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "server-internal.h"

#define DIRECT_READ_MIN  (16u << 10)   /* larger reads bypass the buffer */

/* A zero-copy socket is O_NONBLOCK: a blocking receive or send waits
 * here.  A connection torn down (shutdown) wakes it. */
static void
wait_socket(struct nbd_conn *c, short events)
{
  struct pollfd pfd = { .fd = c->fd, .events = events };

  (void) poll(&pfd, 1, -1);
}

/* One recv into buf; 0 at EOF, a negative errno on error. */
static ssize_t
plain_recv(struct nbd_conn *c, void *buf, size_t len)
{
  int fd = c->fd;

  for (;;) {
    ssize_t n = recv(fd, buf, len, 0);
    if (n >= 0)
      return n;
    if (errno == ENOTSOCK) {   /* a pipe or file handed to us: read() */
      n = read(fd, buf, len);
      if (n >= 0)
        return n;
    }
    if (errno == EAGAIN && c->zero_copy)
      wait_socket(c, POLLIN);
    else if (errno != EINTR)
      return -errno;
  }
}

int
conn_deadline_arm(struct nbd_conn *c, int sockopt)
{
  struct timeval left;
  uint64_t now, ms;

  if (c->handshake_deadline_ms == 0)
    return 0;
  now = server_now_ms();
  if (now >= c->handshake_deadline_ms)
    return -ETIMEDOUT;
  ms = c->handshake_deadline_ms - now;
  left.tv_sec = (time_t) (ms / 1000);
  left.tv_usec = (suseconds_t) (ms % 1000) * 1000;
  /* Fails harmlessly on a pipe handed to --fd. */
  setsockopt(c->fd, SOL_SOCKET, sockopt, &left, sizeof left);
  return 0;
}

/* One receive, within the handshake's deadline: a receive that timed out
 * (EAGAIN on this blocking socket) is tried again until the deadline. */
static ssize_t
recv_some(struct nbd_conn *c, void *buf, size_t len)
{
  for (;;) {
    int r = conn_deadline_arm(c, SO_RCVTIMEO);
    ssize_t n;

    if (r < 0)
      return r;
    n = c->io->recv(c, buf, len);
    if (n != -EAGAIN || c->handshake_deadline_ms == 0)
      return n;
  }
}

/* Read exactly len bytes.  -ECONNRESET at EOF (also at EOF before the
 * first byte: callers that accept a clean EOF check for it themselves). */
int
conn_read(struct nbd_conn *c, void *buf, size_t len)
{
  uint8_t *dst = buf;

  while (len > 0) {
    ssize_t n;

    if (c->rbuf_pos < c->rbuf_len) {
      size_t take = c->rbuf_len - c->rbuf_pos;
      if (take > len)
        take = len;
      memcpy(dst, c->rbuf + c->rbuf_pos, take);
      c->rbuf_pos += take;
      dst += take;
      len -= take;
      continue;
    }
    if (len >= DIRECT_READ_MIN) {
      n = recv_some(c, dst, len);
      if (n <= 0)
        return n == 0 ? -ECONNRESET : (int) n;
      dst += n;
      len -= (size_t) n;
      continue;
    }
    n = recv_some(c, c->rbuf, RECV_BUFFER_SIZE);
    if (n <= 0)
      return n == 0 ? -ECONNRESET : (int) n;
    c->rbuf_pos = 0;
    c->rbuf_len = (size_t) n;
  }
  return 0;
}

/* At a message boundary: 1 if the peer has closed (nothing buffered, EOF
 * on the socket), 0 if more data is there, a negative errno on error. */
int
conn_at_eof(struct nbd_conn *c)
{
  ssize_t n;

  if (c->rbuf_pos < c->rbuf_len)
    return 0;
  n = c->io->recv(c, c->rbuf, RECV_BUFFER_SIZE);
  if (n < 0)
    return (int) n;
  c->rbuf_pos = 0;
  c->rbuf_len = (size_t) n;
  return n == 0;
}

/* Read and throw away len bytes (a rejected payload). */
int
conn_discard(struct nbd_conn *c, uint64_t len)
{
  uint8_t scratch[4096];

  while (len > 0) {
    size_t n = len < sizeof scratch ? (size_t) len : sizeof scratch;
    int r;

    /* Whatever is buffered goes first, then whole scratch-sized reads. */
    if (c->rbuf_pos < c->rbuf_len) {
      size_t avail = c->rbuf_len - c->rbuf_pos;
      size_t take = avail < len ? avail : (size_t) len;
      c->rbuf_pos += take;
      len -= take;
      continue;
    }
    r = conn_read(c, scratch, n);
    if (r < 0)
      return r;
    len -= n;
  }
  return 0;
}

void
conn_mark_broken(struct nbd_conn *c)
{
  /* Caller holds send_lock.  Waking the receive thread makes it stop
   * reading requests and tear the connection down. */
  if (!c->broken) {
    __atomic_store_n(&c->broken, true, __ATOMIC_RELAXED);
    shutdown(c->fd, SHUT_RDWR);
  }
}

/* Send as much of iov[0..*iovcnt) as the socket takes, advancing *iov and
 * *iovcnt past what was sent.  flags: MSG_DONTWAIT or 0.  Returns 0 when
 * all is sent, -EAGAIN when a non-blocking send would block, or another
 * negative errno. */
static int
plain_send(struct nbd_conn *c, struct iovec **iovp, int *iovcnt, int flags)
{
  struct iovec *iov = *iovp;
  bool wait = !(flags & MSG_DONTWAIT);
  int fd = c->fd;
  int r = 0;

  while (*iovcnt > 0) {
    struct msghdr msg = { 0 };
    ssize_t n;

    /* A client reading slowly must not stretch the negotiation. */
    if (wait && (r = conn_deadline_arm(c, SO_SNDTIMEO)) < 0)
      break;
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t) (*iovcnt < IOV_MAX ? *iovcnt : IOV_MAX);
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
    if (n < 0 && errno == ENOTSOCK && wait)
      n = writev(fd, iov, (int) msg.msg_iovlen);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EWOULDBLOCK && wait && c->zero_copy) {
        wait_socket(c, POLLOUT);
        continue;
      }
      r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
      break;
    }
    /* Skip what was sent, partially into the first unsent iovec. */
    while (*iovcnt > 0 && (size_t) n >= iov->iov_len) {
      n -= (ssize_t) iov->iov_len;
      iov++;
      (*iovcnt)--;
    }
    if (*iovcnt > 0) {
      iov->iov_base = (uint8_t *) iov->iov_base + n;
      iov->iov_len -= (size_t) n;
    }
  }
  *iovp = iov;
  return r;
}

/* The send buffer asked for on zero-copy Unix connections.  With the
 * default (wmem_default, 208 KiB) a 256 KiB reply does not fit: server and
 * client take turns instead of overlapping, and one nbdcopy connection ran
 * at half speed (docs/benchmarks.md).  The buffer holds references to
 * page-cache pages, not copies.  The kernel caps it at net.core.wmem_max;
 * TCP is left to its own autotuning, which a fixed SO_SNDBUF would turn off. */
#define UNIX_ZERO_COPY_SNDBUF (4 << 20)

static void
unix_sndbuf_grow(struct nbd_conn *c)
{
  int domain = 0, want = UNIX_ZERO_COPY_SNDBUF;
  socklen_t len = sizeof domain;

  if (getsockopt(c->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
      domain == AF_UNIX)
    (void) setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
}

void
conn_zero_copy_start(struct nbd_conn *c)
{
  int type = 0, fl;
  socklen_t len = sizeof type;

  /* TLS encrypts in user space: the bytes must pass through a buffer.
   * A pipe or file handed to --fd keeps the plain path too. */
  if (!c->srv->sendfile || c->io != &conn_plain_io ||
      getsockopt(c->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
      type != SOCK_STREAM)
    return;
  fl = fcntl(c->fd, F_GETFL);
  if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return;
  c->zero_copy = true;
  unix_sndbuf_grow(c);
}

/* Zeroes for zero pieces.  Never written, so its pages stay the kernel's
 * shared zero page: no memory of ours. */
static uint8_t zero_pages[64u << 10];

/* Send the piece an iovec with a NULL base stands for: iov->iov_len bytes
 * from p->offset of p->fd (sendfile: from the page cache), or zeroes.
 * Both advance as bytes go out, so a send that stops (-EAGAIN) resumes
 * where it was.  A file that ends early fails the reply (-EIO): what was
 * sent cannot be taken back, so the caller drops the connection rather
 * than let the client take a short reply as complete. */
static int
send_piece(struct nbd_conn *c, struct iovec *iov, struct disk_piece *p,
           int flags)
{
  bool wait = !(flags & MSG_DONTWAIT);

  while (iov->iov_len > 0) {
    size_t want = iov->iov_len;
    ssize_t n;

    if (p->fd >= 0) {
      off_t off = (off_t) p->offset;
      n = sendfile(c->fd, p->fd, &off, want);
    } else {
      if (want > sizeof zero_pages)
        want = sizeof zero_pages;
      n = send(c->fd, zero_pages, want, MSG_NOSIGNAL | MSG_DONTWAIT | (flags & MSG_MORE));
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN && wait) {
        wait_socket(c, POLLOUT);
        continue;
      }
      if (errno == EAGAIN)
        return -EAGAIN;
      if (errno != EPIPE && errno != ECONNRESET)
        nbd_log(c->srv, NBD_LOG_ERROR, "connection %lu: sending READ data from "
                "offset %llu: %s: dropped", c->id,
                (unsigned long long) p->offset, strerror(errno));
      return -errno;
    }
    if (n == 0) {
      nbd_log(c->srv, NBD_LOG_ERROR, "connection %lu: the image ended at offset "
              "%llu inside a READ reply: dropped", c->id,
              (unsigned long long) p->offset);
      return -EIO;
    }
    if (p->fd >= 0)
      p->offset += (uint64_t) n;
    iov->iov_len -= (size_t) n;
  }
  return 0;
}

/* Send a job's reply: its iovecs, and on zero-copy connections the file
 * pieces between them.  Same contract as conn_io_ops.send. */
static int
send_job(struct nbd_conn *c, struct nbd_job *job, int flags)
{
  if (!job->rpieces)
    return c->io->send(c, &job->riov, &job->riovcnt, flags);
  while (job->riovcnt > 0) {
    int k = 0, left, r;

    while (k < job->riovcnt && job->riov[k].iov_base)
      k++;
    /* MSG_MORE: a chunk header waits for its data, not a packet alone. */
    if (k > 0) {
      left = k;
      r = plain_send(c, &job->riov, &left,
                     flags | (k < job->riovcnt ? MSG_MORE : 0));
      job->riovcnt -= k - left;
    } else {
      r = send_piece(c, job->riov, &job->rpieces[job->rpiece],
                     flags | (job->riovcnt > 1 ? MSG_MORE : 0));
      if (r == 0) {
        job->riov++;
        job->riovcnt--;
        job->rpiece++;
      }
    }
    if (r < 0)
      return r;
  }
  return 0;
}

const struct conn_io_ops conn_plain_io = {
  .recv = plain_recv,
  .send = plain_send,
  .close = NULL,
};

/* Send a whole message, blocking (the handshake: no workers yet).
 * iov is modified.  Returns 0 or a negative errno; after a failure the
 * connection is broken and sends nothing more. */
int
conn_send(struct nbd_conn *c, struct iovec *iov, int iovcnt)
{
  int r = -EPIPE;

  pthread_mutex_lock(&c->send_lock);
  if (!c->broken && (r = conn_deadline_arm(c, SO_SNDTIMEO)) == 0) {
    r = c->io->send(c, &iov, &iovcnt, 0);
    if (r == -EAGAIN)
      r = -ETIMEDOUT;   /* blocking: only the negotiation's deadline */
    if (r < 0)
      conn_mark_broken(c);
  }
  pthread_mutex_unlock(&c->send_lock);
  return r;
}

/* Drop every queued reply of a broken connection (send_lock held; the
 * jobs are finished after it is released). */
static struct nbd_job *
take_send_queue(struct nbd_conn *c)
{
  struct nbd_job *list = c->sendq_head;

  c->sendq_head = c->sendq_tail = NULL;
  return list;
}

static void
finish_list(struct nbd_job *list)
{
  while (list) {
    struct nbd_job *next = list->next;
    job_finish(list);
    list = next;
  }
}

/* A worker hands over a job whose reply is built.  Fast path: nothing is
 * queued, so the worker writes the reply itself without blocking.
 * Whatever the socket does not take at once goes to the sender thread,
 * with the job (and the memory the reply points into). */
void
conn_send_reply(struct nbd_job *job)
{
  struct nbd_conn *c = job->conn;
  struct nbd_job *dropped = NULL;
  bool done = true;
  int r;

  pthread_mutex_lock(&c->send_lock);
  if (c->broken) {
    /* nobody is listening any more */
  } else if (!c->sendq_head && !c->sender_busy) {
    r = send_job(c, job, MSG_DONTWAIT);
    if (r == -EAGAIN) {
      done = false;
    } else if (r < 0) {
      conn_mark_broken(c);
      dropped = take_send_queue(c);
    }
  } else {
    done = false;
  }
  if (!done) {
    job->next = NULL;
    if (c->sendq_tail)
      c->sendq_tail->next = job;
    else
      c->sendq_head = job;
    c->sendq_tail = job;
    pthread_cond_signal(&c->send_cond);
  }
  pthread_mutex_unlock(&c->send_lock);
  if (done)
    job_finish(job);
  finish_list(dropped);
}

static void *
sender_main(void *arg)
{
  struct nbd_conn *c = arg;

  pthread_mutex_lock(&c->send_lock);
  for (;;) {
    struct nbd_job *job, *dropped = NULL;
    int r;

    while (!c->sendq_head && !c->sender_stop)
      pthread_cond_wait(&c->send_cond, &c->send_lock);
    job = c->sendq_head;
    if (!job)
      break;
    c->sendq_head = job->next;
    if (!c->sendq_head)
      c->sendq_tail = NULL;
    /* Blocking send outside the lock; sender_busy keeps workers from
     * writing in between. */
    c->sender_busy = true;
    pthread_mutex_unlock(&c->send_lock);
    r = __atomic_load_n(&c->broken, __ATOMIC_RELAXED)
          ? -EPIPE : send_job(c, job, 0);
    pthread_mutex_lock(&c->send_lock);
    c->sender_busy = false;
    if (r < 0) {
      conn_mark_broken(c);
      dropped = take_send_queue(c);
    }
    pthread_mutex_unlock(&c->send_lock);
    job_finish(job);
    finish_list(dropped);
    pthread_mutex_lock(&c->send_lock);
  }
  pthread_mutex_unlock(&c->send_lock);
  return NULL;
}

int
conn_sender_start(struct nbd_conn *c)
{
  int e = pthread_create(&c->sender, NULL, sender_main, c);

  if (e != 0) {
    disk_set_error("cannot start sender thread: %s", strerror(e));
    return -e;
  }
  c->sender_started = true;
  return 0;
}

/* After the last job has finished: the queue is empty. */
void
conn_sender_stop(struct nbd_conn *c)
{
  if (!c->sender_started)
    return;
  pthread_mutex_lock(&c->send_lock);
  c->sender_stop = true;
  pthread_cond_signal(&c->send_cond);
  pthread_mutex_unlock(&c->send_lock);
  pthread_join(c->sender, NULL);
  c->sender_started = false;
}

size_t
conn_buffered(const struct nbd_conn *c)
{
  return c->rbuf_len - c->rbuf_pos;
}
