/* SPDX-License-Identifier: GPL-2.0-or-later */
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
struct nbd_tls;        /* tls.c: credentials shared by all connections */
struct conn_tls;       /* tls.c: one connection's TLS session */

/* A connection's transport: the plain socket, or TLS over it once
 * STARTTLS has succeeded (conn_tls_start switches it).  Only the receive
 * thread reads; sends are serialised by send_lock / sender_busy. */
struct conn_io_ops {
  /* One read of at most len bytes: the count, 0 at EOF, a negative errno. */
  ssize_t (*recv)(struct nbd_conn *c, void *buf, size_t len);
  /* Send as much of iov[0..*iovcnt) as the transport takes, advancing
   * *iov and *iovcnt.  flags: MSG_DONTWAIT or 0.  0 when all is sent,
   * -EAGAIN when a MSG_DONTWAIT send would block, another negative errno
   * on failure. */
  int (*send)(struct nbd_conn *c, struct iovec **iov, int *iovcnt, int flags);
  /* Before the socket is closed, with no send in progress; may be NULL. */
  void (*close)(struct nbd_conn *c);
};
extern const struct conn_io_ops conn_plain_io;

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
  /* READ data sent from the disk's files (zero-copy connections): each
   * riov entry with a NULL iov_base stands for the next of these pieces,
   * in order (fd < 0: zeroes), iov_len bytes from its offset. */
  struct disk_piece *rpieces;  /* owned, or NULL */
  size_t rpiece;               /* the next piece to send */
};

struct nbd_server {
  struct disk *disk;           /* borrowed */
  char *export_name;
  char *description;
  bool readonly;
  bool multi_conn;
  nbd_log_fn log;
  void *log_opaque;
  bool sendfile;               /* READ data by sendfile on plain sockets */
  enum nbd_tls_mode tls_mode;
  struct nbd_tls *tls;         /* credentials; NULL when tls_mode is OFF */

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
  unsigned max_conns;
  unsigned handshake_timeout_ms;
  unsigned long total_conns;
  bool shutting_down;
  int event_fd;
};

struct nbd_conn {
  struct nbd_server *srv;
  struct nbd_conn *next;       /* in srv->conns */
  int fd;
  unsigned long id;            /* for log messages */
  /* Until negotiation ends (ms, CLOCK_MONOTONIC; 0 afterwards): a client
   * that has not reached GO by then is dropped, so idle or trickling
   * clients cannot hold every connection slot. */
  uint64_t handshake_deadline_ms;
  const struct conn_io_ops *io;  /* plain, or TLS after STARTTLS */
  struct conn_tls *tls;        /* the TLS session, or NULL */
  /* Transmission on a plain socket with srv->sendfile: the socket is
   * O_NONBLOCK (sendfile has no MSG_DONTWAIT; blocking sends poll) and
   * READ replies may carry file pieces (nbd_job.rpieces). */
  bool zero_copy;

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
  unsigned long finished;      /* jobs finished so far */
  /* reclaim_stuck (server.c), under srv->conns_lock: finished at the last
   * look, and since when (ms) it has not moved with replies pending. */
  unsigned long reclaim_finished;
  uint64_t reclaim_since;
};

#define META_CONTEXT_ID_ALLOCATION 1

/* Log to the server's callback (printf-style). */
void nbd_log(struct nbd_server *srv, enum nbd_log_level level,
             const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* conn-io.c: exact reads through the connection's buffer, whole sends. */
int conn_read(struct nbd_conn *c, void *buf, size_t len);
/* CLOCK_MONOTONIC in milliseconds. */
uint64_t server_now_ms(void);
/* Before a blocking receive or send of the handshake: -ETIMEDOUT once its
 * deadline has passed, else the socket's timeout (SO_RCVTIMEO or
 * SO_SNDTIMEO) set to what is left of it; 0 outside the handshake. */
int conn_deadline_arm(struct nbd_conn *c, int sockopt);
int conn_at_eof(struct nbd_conn *c);
/* Bytes received and not yet consumed. */
size_t conn_buffered(const struct nbd_conn *c);
int conn_discard(struct nbd_conn *c, uint64_t len);
int conn_send(struct nbd_conn *c, struct iovec *iov, int iovcnt);
void conn_mark_broken(struct nbd_conn *c);
/* At the start of transmission: switch a plain socket to zero-copy
 * READ replies when the server allows it. */
void conn_zero_copy_start(struct nbd_conn *c);
void conn_send_reply(struct nbd_job *job);
int conn_sender_start(struct nbd_conn *c);
void conn_sender_stop(struct nbd_conn *c);

/* tls.c: credentials from cfg (tls_certificates or tls_psk), and the TLS
 * handshake of one connection right after the ACK to NBD_OPT_STARTTLS:
 * 0 with the connection's transport switched to TLS, or a negative errno
 * (the handshake failed: drop the connection). */
int nbd_tls_new(const struct nbd_server_config *cfg, struct nbd_tls **out);
void nbd_tls_free(struct nbd_tls *t);
int conn_tls_start(struct nbd_conn *c);

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
