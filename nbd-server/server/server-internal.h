/* server-internal.h - shared between the server library's files. */
#ifndef DISM_SERVER_INTERNAL_H
#define DISM_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "disk.h"
#include "nbd-server.h"

struct nbd_conn;

#define RECV_BUFFER_SIZE (64u << 10)   /* per-connection read buffer */

/* One request, from the receive thread to a worker, then (with its reply
 * built in job-owned memory) to the connection's send queue. */
struct nbd_job {
  struct nbd_job *next;        /* worker queue or send queue link */
  struct nbd_conn *conn;
  uint16_t flags, type;
  uint64_t cookie, offset, length;
  void *payload;               /* WRITE data (owned, from bufpool), else NULL */
  size_t payload_len;
  size_t budget_cost;          /* bytes charged to the budgets */
  uint32_t early_error;        /* NBD error decided while receiving, or 0 */

  /* The reply: iovecs over rhead, rdata, raux and static strings. */
  struct iovec *riov;          /* riov_inline or heap (riov_heap) */
  int riovcnt;
  struct iovec riov_inline[4];
  struct iovec *riov_heap;     /* owned */
  uint8_t rhead[64];           /* headers and small payloads */
  void *rdata;                 /* owned reply data (READ data, extents) */
  size_t rdata_pool_len;       /* != 0: rdata came from bufpool (READ data) */
  void *raux;                  /* owned helper memory (READ chunk headers) */
};

struct nbd_server {
  struct disk *disk;           /* borrowed */
  char *export_name;
  char *description;
  bool readonly;
  bool multi_conn;
  nbd_log_fn log;
  void *log_opaque;

  /* Worker pool: one FIFO of jobs for all connections. */
  pthread_mutex_t queue_lock;
  pthread_cond_t queue_cond;
  struct nbd_job *queue_head, *queue_tail;
  bool stopping;
  unsigned nthreads;
  pthread_t *threads;
  unsigned per_conn_limit;     /* jobs one connection may have in flight */

  /* Budget of in-flight payload bytes. */
  pthread_mutex_t budget_lock;
  pthread_cond_t budget_cond;
  size_t budget, budget_used;

  /* Open connections, for shutdown and idle tracking. */
  pthread_mutex_t conns_lock;
  pthread_cond_t conns_cond;
  struct nbd_conn *conns;
  unsigned nconns;
  unsigned long total_conns;
  bool shutting_down;
  int event_fd;
};

struct nbd_conn {
  struct nbd_server *srv;
  struct nbd_conn *next;       /* in srv->conns */
  int fd;
  unsigned long id;            /* for log messages */

  /* Receive side: used only by the receive thread. */
  uint8_t *rbuf;
  size_t rbuf_pos, rbuf_len;

  /* Negotiated state (fixed before the first request is queued). */
  bool no_zeroes;
  bool structured;             /* structured replies */
  bool extended;               /* extended headers (implies structured) */
  bool meta_allocation;        /* base:allocation selected */
  uint16_t tflags;             /* transmission flags sent to this client */

  /* Send side.  A worker sends a reply itself without blocking when the
   * socket takes it all; otherwise the reply waits in the send queue for
   * the connection's sender thread, so workers never block on a client
   * that does not read. */
  pthread_mutex_t send_lock;
  pthread_cond_t send_cond;
  struct nbd_job *sendq_head, *sendq_tail;
  bool sender_busy;            /* the sender thread is writing a reply */
  bool sender_stop;
  bool sender_started;
  pthread_t sender;
  bool broken;                 /* a send failed: send nothing more (send_lock) */

  /* Jobs queued or running; the receive thread waits for zero before it
   * frees the connection. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned inflight;
  size_t budget_used;          /* this connection's share of the budget */
};

#define META_CONTEXT_ID_ALLOCATION 1

/* Log to the server's callback (printf-style). */
void nbd_log(struct nbd_server *srv, enum nbd_log_level level,
             const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* conn-io.c: exact reads through the connection's buffer, whole sends. */
int conn_read(struct nbd_conn *c, void *buf, size_t len);
int conn_at_eof(struct nbd_conn *c);
/* Bytes received and not yet consumed. */
size_t conn_buffered(const struct nbd_conn *c);
int conn_discard(struct nbd_conn *c, uint64_t len);
int conn_send(struct nbd_conn *c, struct iovec *iov, int iovcnt);
void conn_mark_broken(struct nbd_conn *c);
void conn_send_reply(struct nbd_job *job);
int conn_sender_start(struct nbd_conn *c);
void conn_sender_stop(struct nbd_conn *c);

/* handshake.c: returns 1 to enter transmission, 0 on a soft disconnect
 * (ABORT), a negative errno to drop the connection. */
int nbd_handshake(struct nbd_conn *c);

/* transmission.c */
int nbd_transmission(struct nbd_conn *c);
void nbd_job_run(struct nbd_job *job);
/* Run a READ in the calling thread if its data needs no waiting for
 * storage; -EAGAIN (job untouched) if it should go to a worker. */
int nbd_job_try_inline(struct nbd_job *job);

/* server.c */
void budget_acquire(struct nbd_conn *c, size_t cost);
void job_submit(struct nbd_job *job);
void job_finish(struct nbd_job *job);

#endif
