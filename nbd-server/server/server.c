/* SPDX-License-Identifier: GPL-2.0-or-later */
/* server.c - the server object: worker pool, payload budget, connection
 * registry, and the entry points that serve a socket. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "nbd-protocol.h"
#include "server-internal.h"
#include "bufpool.h"

void
nbd_log(struct nbd_server *srv, enum nbd_log_level level, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  if (!srv->log)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  srv->log(srv->log_opaque, level, msg);
}

uint32_t
nbd_errno_from_engine(int err, bool fast_zero)
{
  switch (err) {
  case 0:          return 0;
  case EPERM:
  case EROFS:      return NBD_EPERM;
  case EIO:        return NBD_EIO;
  case ENOMEM:     return NBD_ENOMEM;
  case EINVAL:     return NBD_EINVAL;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:      return NBD_ENOSPC;
  case ESHUTDOWN:  return NBD_ESHUTDOWN;
  case ENOTSUP:    /* == EOPNOTSUPP on Linux */
    /* The spec reserves ENOTSUP for a FAST_ZERO that would be slow. */
    return fast_zero ? NBD_ENOTSUP : NBD_EINVAL;
  case EOVERFLOW:  return NBD_EINVAL;   /* only meaningful with DF; we never fail DF */
  default:         return NBD_EIO;
  }
}

uint16_t
nbd_server_transmission_flags(const struct nbd_server *srv, bool structured)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_SEND_CACHE;

  if (srv->readonly)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
         NBD_FLAG_SEND_FAST_ZERO;
  if (srv->multi_conn)
    f |= NBD_FLAG_CAN_MULTI_CONN;
  if (structured)
    f |= NBD_FLAG_SEND_DF;
  return f;
}

/* ---- budget ------------------------------------------------------------ */

/* While a request waits for the server's budget, every RECLAIM_CHECK_MS
 * the other connections are checked; one that has held budget with
 * replies waiting to be sent and finished no request for RECLAIM_STUCK_MS
 * is not reading its replies, and is dropped so the budget comes back.
 * Without this, three clients that stop reading held the whole budget
 * and every other connection waited forever. */
#define RECLAIM_CHECK_MS 250
#define RECLAIM_STUCK_MS 2000

uint64_t
server_now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void
reclaim_stuck(struct nbd_server *srv, struct nbd_conn *self)
{
  struct nbd_conn *x, *victim = NULL;
  size_t victim_used = 0;
  uint64_t now = server_now_ms();

  pthread_mutex_lock(&srv->conns_lock);
  for (x = srv->conns; x; x = x->next) {
    unsigned long finished;
    size_t used;
    bool pending;

    if (x == self)
      continue;
    pthread_mutex_lock(&x->lock);
    finished = x->finished;
    used = x->budget_used;
    pthread_mutex_unlock(&x->lock);
    pthread_mutex_lock(&x->send_lock);
    pending = (x->sendq_head || x->sender_busy) && !x->broken;
    pthread_mutex_unlock(&x->send_lock);
    /* reclaim_* fields are only used here, under conns_lock */
    if (!pending || used == 0 || finished != x->reclaim_finished) {
      x->reclaim_finished = finished;
      x->reclaim_since = 0;
      continue;
    }
    if (x->reclaim_since == 0)
      x->reclaim_since = now;
    else if (now - x->reclaim_since >= RECLAIM_STUCK_MS && used > victim_used) {
      victim = x;
      victim_used = used;
    }
  }
  if (victim) {
    nbd_log(srv, NBD_LOG_INFO, "connection %lu: replies not read for %d s "
            "while others wait for memory: dropped", victim->id,
            RECLAIM_STUCK_MS / 1000);
    pthread_mutex_lock(&victim->send_lock);
    conn_mark_broken(victim);   /* its blocked send fails, its jobs finish */
    pthread_mutex_unlock(&victim->send_lock);
  }
  pthread_mutex_unlock(&srv->conns_lock);
}

/* Wait until cost fits this connection's share (half the budget, so one
 * client that stops reading its replies cannot hold all of it) and then
 * the server's budget.  A request larger than either is still admitted
 * once nothing else is in flight there. */
void
budget_acquire(struct nbd_conn *c, size_t cost)
{
  struct nbd_server *srv = c->srv;

  if (cost == 0)
    return;
  pthread_mutex_lock(&c->lock);
  while (c->budget_used > 0 && c->budget_used + cost > srv->budget / 2)
    pthread_cond_wait(&c->cond, &c->lock);
  c->budget_used += cost;
  pthread_mutex_unlock(&c->lock);

  pthread_mutex_lock(&srv->budget_lock);
  while (srv->budget_used > 0 && srv->budget_used + cost > srv->budget) {
    uint64_t deadline = server_now_ms() + RECLAIM_CHECK_MS;
    struct timespec ts = { (time_t) (deadline / 1000),
                           (long) (deadline % 1000) * 1000000 };

    if (pthread_cond_clockwait(&srv->budget_cond, &srv->budget_lock,
                               CLOCK_MONOTONIC, &ts) == ETIMEDOUT) {
      pthread_mutex_unlock(&srv->budget_lock);
      reclaim_stuck(srv, c);
      pthread_mutex_lock(&srv->budget_lock);
    }
  }
  srv->budget_used += cost;
  pthread_mutex_unlock(&srv->budget_lock);
}

/* ---- worker pool ------------------------------------------------------- */

void
job_submit(struct nbd_job *job)
{
  struct nbd_server *srv = job->conn->srv;

  job->next = NULL;
  pthread_mutex_lock(&srv->queue_lock);
  if (srv->queue_tail)
    srv->queue_tail->next = job;
  else
    srv->queue_head = job;
  srv->queue_tail = job;
  pthread_cond_signal(&srv->queue_cond);
  pthread_mutex_unlock(&srv->queue_lock);
}

/* Release everything a job holds (after its reply was sent or dropped).
 * The in-flight count drops last: once it reaches zero the receive thread
 * may free the connection. */
void
job_finish(struct nbd_job *job)
{
  struct nbd_conn *c = job->conn;
  struct nbd_server *srv = c->srv;
  size_t cost = job->budget_cost;

  bufpool_put(job->payload, job->payload_len);
  if (job->rdata_pool_len)
    bufpool_put(job->rdata, job->rdata_pool_len);
  else
    free(job->rdata);
  free(job->raux);
  free(job->rpieces);
  free(job->riov_heap);
  free(job);
  if (cost) {
    pthread_mutex_lock(&srv->budget_lock);
    srv->budget_used -= cost;
    pthread_cond_broadcast(&srv->budget_cond);
    pthread_mutex_unlock(&srv->budget_lock);
  }
  pthread_mutex_lock(&c->lock);
  c->budget_used -= cost;
  c->inflight--;
  c->finished++;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

static void *
worker_main(void *arg)
{
  struct nbd_server *srv = arg;

  for (;;) {
    struct nbd_job *job;

    pthread_mutex_lock(&srv->queue_lock);
    while (!srv->queue_head && !srv->stopping)
      pthread_cond_wait(&srv->queue_cond, &srv->queue_lock);
    job = srv->queue_head;
    if (job) {
      srv->queue_head = job->next;
      if (!srv->queue_head)
        srv->queue_tail = NULL;
    }
    pthread_mutex_unlock(&srv->queue_lock);
    if (!job)
      break;
    nbd_job_run(job);
  }
  return NULL;
}

static unsigned
default_threads(void)
{
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  long n = ncpu > 0 ? 2 * ncpu : 4;

  if (n < 4)
    n = 4;
  if (n > NBD_SERVER_MAX_THREADS)
    n = NBD_SERVER_MAX_THREADS;
  return (unsigned) n;
}

static void
stop_workers(struct nbd_server *srv, unsigned started)
{
  unsigned i;

  pthread_mutex_lock(&srv->queue_lock);
  srv->stopping = true;
  pthread_cond_broadcast(&srv->queue_cond);
  pthread_mutex_unlock(&srv->queue_lock);
  for (i = 0; i < started; i++)
    pthread_join(srv->threads[i], NULL);
}

int
nbd_server_new(struct disk *disk, const struct nbd_server_config *cfg,
               struct nbd_server **out)
{
  struct nbd_server *srv;
  unsigned i;
  int r = 0;

  *out = NULL;
  srv = calloc(1, sizeof *srv);
  if (!srv)
    return -ENOMEM;
  srv->disk = disk;
  srv->event_fd = -1;
  srv->export_name = strdup(cfg->export_name ? cfg->export_name : "");
  srv->description = strdup(cfg->description ? cfg->description : "");
  if (!srv->export_name || !srv->description) {
    r = -ENOMEM;
    goto out;
  }
  if (strlen(srv->export_name) > NBD_MAX_STRING ||
      strlen(srv->description) > NBD_MAX_STRING) {
    disk_set_error("export name or description longer than %d bytes",
                   NBD_MAX_STRING);
    r = -ENAMETOOLONG;
    goto out;
  }
  srv->readonly = cfg->readonly || disk->readonly;
  srv->multi_conn = !cfg->no_multi_conn;
  srv->sendfile = !cfg->no_sendfile;
  srv->log = cfg->log;
  srv->log_opaque = cfg->log_opaque;
  srv->tls_mode = cfg->tls;
  if (cfg->tls != NBD_TLS_OFF) {
    r = nbd_tls_new(cfg, &srv->tls);
    if (r < 0)
      goto out;
  }
  srv->budget = cfg->budget ? cfg->budget : NBD_SERVER_DEFAULT_BUDGET;
  srv->nthreads = cfg->threads ? cfg->threads : default_threads();
  if (srv->nthreads > NBD_SERVER_MAX_THREADS)
    srv->nthreads = NBD_SERVER_MAX_THREADS;
  srv->per_conn_limit = NBD_SERVER_CONN_QUEUE_DEPTH;
  srv->max_conns = cfg->max_connections ? cfg->max_connections
                                        : NBD_SERVER_MAX_CONNECTIONS;
  srv->handshake_timeout_ms = (cfg->handshake_timeout && cfg->handshake_timeout <= 86400
                               ? cfg->handshake_timeout : NBD_SERVER_HANDSHAKE_TIMEOUT) * 1000u;
  pthread_mutex_init(&srv->queue_lock, NULL);
  pthread_cond_init(&srv->queue_cond, NULL);
  pthread_mutex_init(&srv->budget_lock, NULL);
  pthread_cond_init(&srv->budget_cond, NULL);
  pthread_mutex_init(&srv->conns_lock, NULL);
  pthread_cond_init(&srv->conns_cond, NULL);
  srv->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (srv->event_fd < 0) {
    r = -errno;
    disk_set_error("eventfd: %s", strerror(errno));
    goto out;
  }
  srv->threads = calloc(srv->nthreads, sizeof *srv->threads);
  if (!srv->threads) {
    r = -ENOMEM;
    goto out;
  }
  for (i = 0; i < srv->nthreads; i++) {
    int e = pthread_create(&srv->threads[i], NULL, worker_main, srv);
    if (e != 0) {
      disk_set_error("cannot start worker thread: %s", strerror(e));
      stop_workers(srv, i);
      r = -e;
      goto out;
    }
  }
  *out = srv;
  srv = NULL;
out:
  if (srv) {
    if (srv->event_fd >= 0)
      close(srv->event_fd);
    free(srv->threads);
    nbd_tls_free(srv->tls);
    free(srv->export_name);
    free(srv->description);
    free(srv);
  }
  return r;
}

void
nbd_server_shutdown(struct nbd_server *srv)
{
  struct nbd_conn *c;

  pthread_mutex_lock(&srv->conns_lock);
  srv->shutting_down = true;
  /* End reading on every connection: each receive thread then sees EOF at
   * its next read, lets the requests it queued finish, and closes. */
  for (c = srv->conns; c; c = c->next)
    shutdown(c->fd, SHUT_RD);
  pthread_mutex_unlock(&srv->conns_lock);
}

void
nbd_server_free(struct nbd_server *srv)
{
  if (!srv)
    return;
  pthread_mutex_lock(&srv->conns_lock);
  while (srv->nconns > 0)
    pthread_cond_wait(&srv->conns_cond, &srv->conns_lock);
  pthread_mutex_unlock(&srv->conns_lock);
  stop_workers(srv, srv->nthreads);
  pthread_mutex_destroy(&srv->queue_lock);
  pthread_cond_destroy(&srv->queue_cond);
  pthread_mutex_destroy(&srv->budget_lock);
  pthread_cond_destroy(&srv->budget_cond);
  pthread_mutex_destroy(&srv->conns_lock);
  pthread_cond_destroy(&srv->conns_cond);
  close(srv->event_fd);
  free(srv->threads);
  nbd_tls_free(srv->tls);
  free(srv->export_name);
  free(srv->description);
  free(srv);
  bufpool_trim();
}

unsigned
nbd_server_connections(struct nbd_server *srv)
{
  unsigned n;

  pthread_mutex_lock(&srv->conns_lock);
  n = srv->nconns;
  pthread_mutex_unlock(&srv->conns_lock);
  return n;
}

unsigned long
nbd_server_connections_total(struct nbd_server *srv)
{
  unsigned long n;

  pthread_mutex_lock(&srv->conns_lock);
  n = srv->total_conns;
  pthread_mutex_unlock(&srv->conns_lock);
  return n;
}

int
nbd_server_event_fd(struct nbd_server *srv)
{
  return srv->event_fd;
}

/* ---- connections ------------------------------------------------------- */

/* Register a connection for fd.  Ownership of fd passes to the server: it
 * is closed here on failure. */
static int
conn_new(struct nbd_server *srv, int fd, struct nbd_conn **out)
{
  struct nbd_conn *c = calloc(1, sizeof *c);
  int one = 1;
  int r = 0;

  *out = NULL;
  if (c)
    c->rbuf = malloc(RECV_BUFFER_SIZE);
  if (!c || !c->rbuf) {
    r = -ENOMEM;
    goto out;
  }
  c->srv = srv;
  c->fd = fd;
  c->io = &conn_plain_io;
  pthread_mutex_init(&c->send_lock, NULL);
  pthread_cond_init(&c->send_cond, NULL);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
  /* Replies are whole messages: do not let Nagle hold them back.  Fails
   * harmlessly on Unix sockets. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  pthread_mutex_lock(&srv->conns_lock);
  if (srv->shutting_down) {
    r = -ESHUTDOWN;
  } else if (srv->nconns >= srv->max_conns) {
    /* Every connection costs two threads and up to ~150 KiB of buffers:
     * without a limit, a flood of connections grew the server past any
     * memory bound.  Refused ones are closed before the greeting. */
    r = -EMFILE;
  } else {
    c->id = ++srv->total_conns;
    c->next = srv->conns;
    srv->conns = c;
    srv->nconns++;
  }
  pthread_mutex_unlock(&srv->conns_lock);
  if (r < 0) {
    pthread_mutex_destroy(&c->send_lock);
    pthread_cond_destroy(&c->send_cond);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    goto out;
  }
  *out = c;
  c = NULL;
out:
  if (c) {
    free(c->rbuf);
    free(c);
    close(fd);
  }
  return r;
}

static void
conn_free(struct nbd_conn *c)
{
  struct nbd_server *srv = c->srv;
  struct nbd_conn **pp;
  uint64_t one = 1;

  /* Requests already queued finish (and reply) before the socket closes. */
  pthread_mutex_lock(&c->lock);
  while (c->inflight > 0)
    pthread_cond_wait(&c->cond, &c->lock);
  pthread_mutex_unlock(&c->lock);
  conn_sender_stop(c);
  if (c->io->close)
    c->io->close(c);   /* TLS close_notify: nothing else sends now */

  pthread_mutex_lock(&srv->conns_lock);
  for (pp = &srv->conns; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  close(c->fd);   /* under conns_lock: shutdown() never sees a reused fd */
  srv->nconns--;
  if (write(srv->event_fd, &one, sizeof one) < 0) {
    /* the counter cannot overflow in practice; nothing to do */
  }
  pthread_cond_broadcast(&srv->conns_cond);
  pthread_mutex_unlock(&srv->conns_lock);

  pthread_mutex_destroy(&c->send_lock);
  pthread_cond_destroy(&c->send_cond);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  free(c->rbuf);
  free(c);
}

static int
conn_serve(struct nbd_server *srv, int fd, bool handshake_done)
{
  struct nbd_conn *c;
  unsigned long id;
  int r;

  r = conn_new(srv, fd, &c);
  if (r < 0) {
    if (r == -EMFILE)
      nbd_log(srv, NBD_LOG_INFO, "connection refused: %u connections open",
              srv->max_conns);
    return r;
  }
  id = c->id;
  nbd_log(srv, NBD_LOG_DEBUG, "connection %lu: open%s", id,
          handshake_done ? " (transmission only)" : "");
  if (handshake_done) {
    c->tflags = nbd_server_transmission_flags(srv, false);
    r = nbd_transmission(c);
  } else {
    c->handshake_deadline_ms = server_now_ms() + srv->handshake_timeout_ms;
    r = nbd_handshake(c);
    if (r == -ETIMEDOUT)
      nbd_log(srv, NBD_LOG_INFO, "connection %lu: no NBD_OPT_GO within %u s: "
              "dropped", id, srv->handshake_timeout_ms / 1000);
    if (r == 1) {
      static const struct timeval forever = { 0, 0 };

      c->handshake_deadline_ms = 0;
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &forever, sizeof forever);
      r = nbd_transmission(c);
    }
  }
  nbd_log(srv, r < 0 ? NBD_LOG_INFO : NBD_LOG_DEBUG,
          "connection %lu: closing%s%s", id, r < 0 ? ": " : "",
          r < 0 ? strerror(-r) : "");
  /* Last use of srv: nbd_server_free may return as soon as this is done. */
  conn_free(c);
  return r;
}

int
nbd_server_serve_fd(struct nbd_server *srv, int fd)
{
  return conn_serve(srv, fd, false);
}

int
nbd_server_serve_fd_transmission(struct nbd_server *srv, int fd)
{
  return conn_serve(srv, fd, true);
}

struct conn_thread_arg {
  struct nbd_server *srv;
  int fd;
  bool handshake_done;
};

static void *
conn_thread_main(void *p)
{
  struct conn_thread_arg arg = *(struct conn_thread_arg *) p;

  free(p);
  conn_serve(arg.srv, arg.fd, arg.handshake_done);
  return NULL;
}

int
nbd_server_start_fd(struct nbd_server *srv, int fd, bool handshake_done)
{
  struct conn_thread_arg *arg = malloc(sizeof *arg);
  pthread_attr_t attr;
  pthread_t tid;
  int e;

  if (!arg) {
    close(fd);
    return -ENOMEM;
  }
  *arg = (struct conn_thread_arg) { srv, fd, handshake_done };
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  e = pthread_create(&tid, &attr, conn_thread_main, arg);
  pthread_attr_destroy(&attr);
  if (e != 0) {
    disk_set_error("cannot start connection thread: %s", strerror(e));
    free(arg);
    close(fd);
    return -e;
  }
  return 0;
}
