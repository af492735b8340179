/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbd-server.h - the NBD server library (libnbdserver.a).
 *
 * One struct nbd_server serves one export (a struct disk) to any number of
 * connections.  Each connection has one receive thread (or the caller's
 * thread, for nbd_server_serve_fd) that reads requests and hands them to a
 * shared pool of worker threads; the workers call the disk engine and send
 * the replies.  Memory for in-flight payloads is bounded by a global budget.
 *
 * Library code never prints or exits: functions return 0 or a negative
 * errno, with a message in disk_last_error(); diagnostics go to the
 * optional log callback.
 */
#ifndef DISM_NBD_SERVER_H
#define DISM_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk.h"

struct nbd_server;

enum nbd_log_level { NBD_LOG_ERROR, NBD_LOG_INFO, NBD_LOG_DEBUG };
typedef void (*nbd_log_fn)(void *opaque, enum nbd_log_level level,
                           const char *msg);

/* Defaults and hard limits.  Memory: requests in flight (data, replies,
 * bookkeeping) are charged to the budget; each connection costs up to
 * ~150 KiB besides; so 40 MiB + 64 connections + the process itself stay
 * under 64 MiB RSS whatever clients do (tests/t/44-nbd-abuse.t). */
#define NBD_SERVER_MAX_PAYLOAD       (32u << 20)    /* READ/WRITE accepted */
#define NBD_SERVER_MAX_DRAIN         (64u << 20)    /* larger WRITE: disconnect */
#define NBD_SERVER_MAX_OPTION_LEN    (64u << 10)    /* larger option: disconnect */
#define NBD_SERVER_DEFAULT_BUDGET    (40u << 20)    /* in-flight request memory */
#define NBD_SERVER_MAX_THREADS       64
#define NBD_SERVER_CONN_QUEUE_DEPTH  128            /* requests per connection */
#define NBD_SERVER_MAX_CONNECTIONS   64             /* more are closed at once */
#define NBD_SERVER_HANDSHAKE_TIMEOUT 10             /* s from accept to GO (qemu-nbd's) */
#define NBD_SERVER_MAX_EXTENTS       (1u << 20)     /* per BLOCK_STATUS chunk */
#define NBD_SERVER_BLOCK_MIN         1
#define NBD_SERVER_BLOCK_PREFERRED   4096

/* TLS (NBD_OPT_STARTTLS) for connections that go through the handshake.
 * ON: offered, not required.  REQUIRE: before STARTTLS only STARTTLS and
 * ABORT are accepted (everything else: NBD_REP_ERR_TLS_REQD; EXPORT_NAME:
 * disconnect). */
enum nbd_tls_mode { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE };

struct nbd_server_config {
  const char *export_name;     /* NULL or "": the default export "" */
  const char *description;     /* NULL or "": none */
  bool readonly;               /* also forced when the disk is read-only */
  bool no_multi_conn;          /* do not advertise CAN_MULTI_CONN */
  bool no_sendfile;            /* READ data always copied (pread + send),
                                  never sent from the page cache */
  unsigned threads;            /* worker threads; 0: 2 * CPUs (4..64) */
  size_t budget;               /* in-flight payload bytes; 0: default */
  unsigned max_connections;    /* open at once; 0: NBD_SERVER_MAX_CONNECTIONS */
  unsigned handshake_timeout;  /* s to finish negotiating (TLS included), or
                                  the connection is closed; 0: the default */
  nbd_log_fn log;              /* NULL: silent */
  void *log_opaque;
  enum nbd_tls_mode tls;       /* default OFF: STARTTLS gets ERR_UNSUP */
  /* With tls != OFF, exactly one of: a directory holding ca-cert.pem,
   * server-cert.pem, server-key.pem (and optionally ca-crl.pem), or a PSK
   * file of "username:hexkey" lines (psktool).  Read by nbd_server_new. */
  const char *tls_certificates;
  const char *tls_psk;
  bool tls_verify_peer;        /* X.509: require a client certificate
                                  signed by the CA */
};

/* Create a server for disk (borrowed: the caller closes it after
 * nbd_server_free) and start its worker pool. */
int nbd_server_new(struct disk *disk, const struct nbd_server_config *cfg,
                   struct nbd_server **out);

/* Serve one connected socket in the calling thread, starting with the
 * handshake; returns once the connection has ended and every request on it
 * has finished.  Takes ownership of fd (closes it).  Returns 0 after a clean
 * end (ABORT, DISC, EOF between requests), a negative errno otherwise. */
int nbd_server_serve_fd(struct nbd_server *srv, int fd);

/* Same, for a socket whose handshake was done elsewhere (the kernel attach
 * path): transmission with compact requests and simple replies only. */
int nbd_server_serve_fd_transmission(struct nbd_server *srv, int fd);

/* Serve fd on a new (detached) thread; ownership of fd passes to the
 * server even on failure. */
int nbd_server_start_fd(struct nbd_server *srv, int fd, bool handshake_done);

/* Connections currently open, and connections ever started. */
unsigned nbd_server_connections(struct nbd_server *srv);
unsigned long nbd_server_connections_total(struct nbd_server *srv);

/* A file descriptor that becomes readable each time a connection ends
 * (read it to reset).  For event loops that wait for idleness. */
int nbd_server_event_fd(struct nbd_server *srv);

/* Stop: refuse new connections and end the open ones at the next request
 * boundary (requests already received still finish and get replies). */
void nbd_server_shutdown(struct nbd_server *srv);

/* Wait for every connection to end, stop the workers and free.  Does not
 * flush or close the disk. */
void nbd_server_free(struct nbd_server *srv);

/* The transmission flags this server advertises. */
uint16_t nbd_server_transmission_flags(const struct nbd_server *srv,
                                       bool structured);

/* Map an engine errno (positive) to the NBD error value. */
uint32_t nbd_errno_from_engine(int err, bool fast_zero);

/* Listening sockets.  Return a listening fd or a negative errno (message in
 * disk_last_error()). */
int nbd_listen_unix(const char *path);
/* spec: "[HOST:]PORT" ("[v6addr]:PORT" accepted).  Without HOST (or with
 * an empty one) only the loopback addresses are bound: 127.0.0.1, and ::1
 * where IPv6 is available.  Fills fds with up to max listening sockets;
 * returns their count. */
int nbd_listen_tcp(const char *spec, int *fds, int max);

#endif
