/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tls.c - TLS for NBD connections (NBD_OPT_STARTTLS), with GnuTLS.
 *
 * The credentials (an X.509 certificate, key and CA, or a table of
 * pre-shared keys) are loaded once by nbd_server_new, before anything is
 * served, so no file is read while connections run.  A connection that
 * completes STARTTLS swaps its transport (conn->io) for the one here: the
 * rest of the option haggling and the whole transmission phase then go
 * through gnutls_record_recv/send.
 *
 * Threads: the receive thread is the only reader, and sends are serialised
 * by the connection's send_lock / sender_busy exactly as on a plain socket.
 * GnuTLS allows one sending and one receiving thread on a session as long
 * as nobody renegotiates, and we never do: a TLS 1.2 client that asks for a
 * new handshake is disconnected (GnuTLS's rule for a server is to
 * renegotiate or end the session).
 *
 * Non-blocking sends: a worker's fast path sends with MSG_DONTWAIT.  When
 * the socket is full GnuTLS keeps the record it has already encrypted, and
 * that record must go out (gnutls_record_send(NULL, 0)) before anything
 * else.  conn_tls.pending remembers it; the caller has not advanced its
 * iovecs past the record, and the sender thread, which gets that reply at
 * the head of its queue, completes the record first and then advances by
 * what GnuTLS reports. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "server-internal.h"

/* TLS 1.2 is the spec's minimum; NORMAL leaves out what is broken. */
#define TLS_PRIORITY      "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TLS_PRIORITY_PSK  TLS_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"
#define TLS_RECORD_MAX    16384          /* plaintext bytes in one record */
#define TLS_HANDSHAKE_TIMEOUT_MS 30000   /* a client that stalls the handshake */
#define PSK_MAX_USER      256
#define PSK_MAX_KEY       512            /* bytes (psktool makes 32) */

struct psk_key {
  char *user;
  uint8_t *key;
  size_t keylen;
};

struct nbd_tls {
  gnutls_certificate_credentials_t x509;   /* --tls-certificates, or NULL */
  gnutls_psk_server_credentials_t psk;     /* --tls-psk, or NULL */
  gnutls_priority_t priority;
  bool verify_peer;
  struct psk_key *keys;                    /* the PSK file, in memory */
  size_t nkeys;
};

struct conn_tls {
  gnutls_session_t session;
  bool nonblock;           /* the send in progress must not block */
  bool pending;            /* a record was cut short by EAGAIN: finish it first */
  size_t record_max;       /* plaintext bytes per record we send */
  uint8_t gather[TLS_RECORD_MAX];  /* small pieces of a reply, made one record */
};

/* ---- credentials ------------------------------------------------------- */

static int
tls_error(int e, const char *what, const char *path)
{
  disk_set_error("%s: %s: %s", path, what, gnutls_strerror(e));
  return e == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
}

static int
need_file(char *buf, size_t size, const char *dir, const char *name)
{
  if ((size_t) snprintf(buf, size, "%s/%s", dir, name) >= size) {
    disk_set_error("%s: path too long", dir);
    return -ENAMETOOLONG;
  }
  if (access(buf, R_OK) < 0) {
    int e = errno;
    disk_set_error("%s: %s", buf, strerror(e));
    return -e;
  }
  return 0;
}

/* DIR/ca-cert.pem, DIR/server-cert.pem and DIR/server-key.pem (the names
 * qemu-nbd and nbdkit use), and DIR/ca-crl.pem if present. */
static int
load_certificates(struct nbd_tls *t, const char *dir)
{
  char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], crl[PATH_MAX];
  int e, r;

  if ((r = need_file(ca, sizeof ca, dir, "ca-cert.pem")) < 0 ||
      (r = need_file(cert, sizeof cert, dir, "server-cert.pem")) < 0 ||
      (r = need_file(key, sizeof key, dir, "server-key.pem")) < 0)
    return r;
  e = gnutls_certificate_allocate_credentials(&t->x509);
  if (e < 0)
    return tls_error(e, "allocating credentials", dir);
  e = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
  if (e < 0)
    return tls_error(e, "loading the CA certificate", ca);
  if (e == 0) {
    disk_set_error("%s: no certificate in it", ca);
    return -EINVAL;
  }
  if (need_file(crl, sizeof crl, dir, "ca-crl.pem") == 0) {
    e = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
    if (e < 0)
      return tls_error(e, "loading the revocation list", crl);
  }
  e = gnutls_certificate_set_x509_key_file(t->x509, cert, key,
                                           GNUTLS_X509_FMT_PEM);
  if (e < 0)
    return tls_error(e, "loading the server certificate and key", cert);
  gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
  return 0;
}

static int
hex_value(char ch)
{
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* One "username:hexkey" line (psktool's format) into a new table entry. */
static int
parse_psk_line(struct nbd_tls *t, char *line, const char *path, unsigned lineno)
{
  char *colon = strchr(line, ':'), *hex;
  size_t hexlen, i;
  struct psk_key *k, *grown;

  if (!colon || colon == line || colon - line > PSK_MAX_USER) {
    disk_set_error("%s:%u: expected username:hexkey", path, lineno);
    return -EINVAL;
  }
  *colon = '\0';
  hex = colon + 1;
  hexlen = strlen(hex);
  if (hexlen == 0 || hexlen % 2 || hexlen / 2 > PSK_MAX_KEY) {
    disk_set_error("%s:%u: the key must be 1 to %d bytes in hex", path, lineno,
                   PSK_MAX_KEY);
    return -EINVAL;
  }
  for (i = 0; i < t->nkeys; i++) {
    if (strcmp(t->keys[i].user, line) == 0) {
      disk_set_error("%s:%u: user %s is listed twice", path, lineno, line);
      return -EINVAL;
    }
  }
  grown = realloc(t->keys, (t->nkeys + 1) * sizeof *t->keys);
  if (!grown)
    return -ENOMEM;
  t->keys = grown;
  k = &t->keys[t->nkeys];
  k->user = strdup(line);
  k->key = malloc(hexlen / 2);
  k->keylen = hexlen / 2;
  if (!k->user || !k->key) {
    free(k->user);
    free(k->key);
    return -ENOMEM;
  }
  t->nkeys++;   /* from here on freed with the table */
  for (i = 0; i < k->keylen; i++) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      disk_set_error("%s:%u: the key is not hexadecimal", path, lineno);
      return -EINVAL;
    }
    k->key[i] = (uint8_t) (hi << 4 | lo);
  }
  return 0;
}

/* Read the whole PSK file now: GnuTLS's own file callback would read it at
 * every handshake, after a sandbox may have closed the file system. */
static int
load_psk_file(struct nbd_tls *t, const char *path)
{
  FILE *f = fopen(path, "re");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  unsigned lineno = 0;
  int r = 0;

  if (!f) {
    r = -errno;
    disk_set_error("%s: %s", path, strerror(errno));
    return r;
  }
  while (r == 0 && (n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0 || line[0] == '#')
      continue;
    r = parse_psk_line(t, line, path, lineno);
  }
  if (r == 0 && ferror(f)) {
    r = -EIO;
    disk_set_error("%s: read error", path);
  }
  if (r == 0 && t->nkeys == 0) {
    r = -EINVAL;
    disk_set_error("%s: no keys in it (expected username:hexkey lines)", path);
  }
  if (line) {
    explicit_bzero(line, cap);
    free(line);
  }
  fclose(f);
  return r;
}

/* GnuTLS asks for the key of the identity the client sent.  An unknown
 * identity fails the handshake. */
static int
psk_lookup(gnutls_session_t session, const char *user, gnutls_datum_t *key)
{
  struct nbd_conn *c = gnutls_session_get_ptr(session);
  const struct nbd_tls *t = c->srv->tls;
  size_t i;

  for (i = 0; i < t->nkeys; i++) {
    if (strcmp(t->keys[i].user, user) != 0)
      continue;
    key->data = gnutls_malloc(t->keys[i].keylen);
    if (!key->data)
      return -1;
    memcpy(key->data, t->keys[i].key, t->keys[i].keylen);
    key->size = (unsigned) t->keys[i].keylen;
    return 0;
  }
  nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: TLS: unknown PSK identity",
          c->id);
  return -1;
}

static int
load_psk(struct nbd_tls *t, const char *path)
{
  int e, r;

  r = load_psk_file(t, path);
  if (r < 0)
    return r;
  e = gnutls_psk_allocate_server_credentials(&t->psk);
  if (e < 0)
    return tls_error(e, "allocating credentials", path);
  gnutls_psk_set_server_credentials_function(t->psk, psk_lookup);
  gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
  return 0;
}

void
nbd_tls_free(struct nbd_tls *t)
{
  size_t i;

  if (!t)
    return;
  if (t->x509)
    gnutls_certificate_free_credentials(t->x509);
  if (t->psk)
    gnutls_psk_free_server_credentials(t->psk);
  if (t->priority)
    gnutls_priority_deinit(t->priority);
  for (i = 0; i < t->nkeys; i++) {
    explicit_bzero(t->keys[i].key, t->keys[i].keylen);
    free(t->keys[i].key);
    free(t->keys[i].user);
  }
  free(t->keys);
  free(t);
}

int
nbd_tls_new(const struct nbd_server_config *cfg, struct nbd_tls **out)
{
  struct nbd_tls *t;
  int e, r;

  *out = NULL;
  if (!cfg->tls_certificates == !cfg->tls_psk) {
    disk_set_error("TLS needs either a certificate directory or a PSK file");
    return -EINVAL;
  }
  if (cfg->tls_verify_peer && !cfg->tls_certificates) {
    disk_set_error("verifying the peer needs X.509 certificates");
    return -EINVAL;
  }
  t = calloc(1, sizeof *t);
  if (!t)
    return -ENOMEM;
  t->verify_peer = cfg->tls_verify_peer;
  r = cfg->tls_certificates ? load_certificates(t, cfg->tls_certificates)
                            : load_psk(t, cfg->tls_psk);
  if (r < 0)
    goto out;
  e = gnutls_priority_init(&t->priority,
                           t->psk ? TLS_PRIORITY_PSK : TLS_PRIORITY, NULL);
  if (e < 0) {
    r = tls_error(e, "priority string", t->psk ? TLS_PRIORITY_PSK : TLS_PRIORITY);
    goto out;
  }
  *out = t;
  t = NULL;
out:
  nbd_tls_free(t);
  return r;
}

/* ---- transport under GnuTLS -------------------------------------------- */

static ssize_t
tls_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
  struct nbd_conn *c = ptr;
  struct msghdr msg = { .msg_iov = (struct iovec *) iov,
                        .msg_iovlen = (size_t) iovcnt };
  bool nonblock = c->tls->nonblock;
  ssize_t n;

  /* In the negotiation every blocking send is bounded by its deadline
   * (GnuTLS retries a timed-out push itself). */
  if (!nonblock && conn_deadline_arm(c, SO_SNDTIMEO) < 0) {
    errno = ETIMEDOUT;
    return -1;
  }
  n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
  if (n < 0 && errno == ENOTSOCK && !nonblock)   /* a pipe handed to --fd */
    n = writev(c->fd, iov, iovcnt);
  if (n < 0 && errno == EWOULDBLOCK)
    errno = EAGAIN;
  return n;
}

static ssize_t
tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
  struct nbd_conn *c = ptr;
  ssize_t n;

  /* One TLS record may take many receives: each is bounded by the
   * negotiation's deadline, not only the first. */
  if (conn_deadline_arm(c, SO_RCVTIMEO) < 0) {
    errno = ETIMEDOUT;
    return -1;
  }
  n = recv(c->fd, buf, len, 0);
  if (n < 0 && errno == ENOTSOCK)
    n = read(c->fd, buf, len);
  return n;
}

/* Only the handshake uses this (for its timeout). */
static int
tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
  struct nbd_conn *c = ptr;
  struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
  int r;

  do
    r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int) ms);
  while (r < 0 && errno == EINTR);
  return r;
}

static ssize_t
tls_recv(struct nbd_conn *c, void *buf, size_t len)
{
  gnutls_session_t s = c->tls->session;

  for (;;) {
    ssize_t n = gnutls_record_recv(s, buf, len);

    if (n >= 0)
      return n;   /* 0: close_notify */
    /* The peer closed the socket without close_notify.  Everything before
     * was authenticated, and a cut inside a message is caught by the
     * caller's exact reads: an EOF like any other. */
    if (n == GNUTLS_E_PREMATURE_TERMINATION)
      return 0;
    if (n == GNUTLS_E_REHANDSHAKE) {
      nbd_log(c->srv, NBD_LOG_INFO,
              "connection %lu: TLS renegotiation refused: disconnecting", c->id);
      return -ECONNABORTED;
    }
    /* The negotiation's deadline (SO_RCVTIMEO) expired: the caller
     * decides whether time is left. */
    if (n == GNUTLS_E_AGAIN && c->handshake_deadline_ms)
      return -EAGAIN;
    if (!gnutls_error_is_fatal((int) n))
      continue;   /* AGAIN, INTERRUPTED, a warning alert */
    nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: TLS receive: %s", c->id,
            gnutls_strerror((int) n));
    return -EBADMSG;
  }
}

/* Skip n sent bytes of the iovec array. */
static void
advance_iov(struct iovec **iovp, int *iovcnt, size_t n)
{
  struct iovec *iov = *iovp;

  while (*iovcnt > 0 && n >= iov->iov_len) {
    n -= iov->iov_len;
    iov++;
    (*iovcnt)--;
  }
  if (*iovcnt > 0) {
    iov->iov_base = (uint8_t *) iov->iov_base + n;
    iov->iov_len -= n;
  }
  *iovp = iov;
}

/* Like the plain send: 0 when all is sent, -EAGAIN when a MSG_DONTWAIT
 * send would block (the iovecs point at what is left), or a negative
 * errno.  A piece of a record's size or more is sent from where it is;
 * smaller pieces (headers, short data) are gathered into one record. */
static int
tls_send(struct nbd_conn *c, struct iovec **iovp, int *iovcnt, int flags)
{
  struct conn_tls *ct = c->tls;

  ct->nonblock = (flags & MSG_DONTWAIT) != 0;
  for (;;) {
    ssize_t n;

    if (!ct->pending) {
      advance_iov(iovp, iovcnt, 0);   /* empty pieces: no empty records */
      if (*iovcnt == 0)
        break;
    }
    if (ct->pending) {
      n = gnutls_record_send(ct->session, NULL, 0);
    } else if ((*iovp)->iov_len >= ct->record_max) {
      n = gnutls_record_send(ct->session, (*iovp)->iov_base, ct->record_max);
    } else {
      size_t len = 0;
      int i;

      for (i = 0; i < *iovcnt && len < ct->record_max; i++) {
        size_t take = (*iovp)[i].iov_len;
        if (take > ct->record_max - len)
          take = ct->record_max - len;
        memcpy(ct->gather + len, (*iovp)[i].iov_base, take);
        len += take;
      }
      n = gnutls_record_send(ct->session, ct->gather, len);
    }
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      ct->pending = true;   /* GnuTLS holds the record: send it next */
      if (n == GNUTLS_E_AGAIN && ct->nonblock)
        return -EAGAIN;
      continue;
    }
    ct->pending = false;
    if (n <= 0) {   /* 0 never comes for a non-empty record */
      nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: TLS send: %s", c->id,
              n ? gnutls_strerror((int) n) : "nothing sent");
      return -EPIPE;
    }
    advance_iov(iovp, iovcnt, (size_t) n);
  }
  return 0;
}

/* Before the socket closes: close_notify, unless the connection broke or a
 * record is half sent, and without waiting for a client that does not
 * read.  No thread sends any more. */
static void
tls_close(struct nbd_conn *c)
{
  struct conn_tls *ct = c->tls;

  if (!__atomic_load_n(&c->broken, __ATOMIC_RELAXED) && !ct->pending) {
    ct->nonblock = true;
    gnutls_bye(ct->session, GNUTLS_SHUT_WR);
  }
  gnutls_deinit(ct->session);
  free(ct);
  c->tls = NULL;
  c->io = &conn_plain_io;
}

static const struct conn_io_ops tls_io = {
  .recv = tls_recv,
  .send = tls_send,
  .close = tls_close,
};

int
conn_tls_start(struct nbd_conn *c)
{
  const struct nbd_tls *t = c->srv->tls;
  struct conn_tls *ct;
  gnutls_session_t s;
  unsigned timeout_ms;
  uint64_t left_ms;
  int e, tries = 0;

  ct = calloc(1, sizeof *ct);
  if (!ct)
    return -ENOMEM;
  e = gnutls_init(&ct->session, GNUTLS_SERVER | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
  if (e < 0) {
    free(ct);
    nbd_log(c->srv, NBD_LOG_ERROR, "connection %lu: gnutls_init: %s", c->id,
            gnutls_strerror(e));
    return -ENOMEM;
  }
  s = ct->session;
  gnutls_session_set_ptr(s, c);
  e = gnutls_priority_set(s, t->priority);
  if (e == 0 && t->x509) {
    e = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
    if (t->verify_peer) {
      /* A client certificate is required and must chain to our CA. */
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert(s, NULL, 0);
    }
  } else if (e == 0) {
    e = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
  }
  if (e < 0) {
    nbd_log(c->srv, NBD_LOG_ERROR, "connection %lu: TLS setup: %s", c->id,
            gnutls_strerror(e));
    gnutls_deinit(s);
    free(ct);
    return -EINVAL;
  }
  gnutls_transport_set_ptr(s, c);
  gnutls_transport_set_vec_push_function(s, tls_push);
  gnutls_transport_set_pull_function(s, tls_pull);
  gnutls_transport_set_pull_timeout_function(s, tls_pull_timeout);
  timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS;
  if (c->handshake_deadline_ms) {   /* within the negotiation's deadline */
    uint64_t now = server_now_ms();

    left_ms = c->handshake_deadline_ms > now ? c->handshake_deadline_ms - now : 1;
    if (left_ms < timeout_ms)
      timeout_ms = (unsigned) left_ms;
  }
  gnutls_handshake_set_timeout(s, timeout_ms);
  c->tls = ct;   /* the transport functions reach the socket through c */

  do
    e = gnutls_handshake(s);
  while (e < 0 && !gnutls_error_is_fatal(e) && e != GNUTLS_E_TIMEDOUT &&
         ++tries < 16);
  if (e < 0) {
    nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: TLS handshake failed: %s",
            c->id, gnutls_strerror(e));
    /* Tell the client why (best effort, never blocking), then hang up:
     * the spec allows a hard disconnect after a failed TLS handshake. */
    ct->nonblock = true;
    gnutls_alert_send_appropriate(s, e);
    gnutls_deinit(s);
    free(ct);
    c->tls = NULL;
    return -ECONNABORTED;
  }
  ct->record_max = gnutls_record_get_max_size(s);
  if (ct->record_max == 0 || ct->record_max > sizeof ct->gather)
    ct->record_max = sizeof ct->gather;
  c->io = &tls_io;
  if (t->psk) {
    const char *user = gnutls_psk_server_get_username(s);
    nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: %s with PSK identity %s",
            c->id, gnutls_protocol_get_name(gnutls_protocol_get_version(s)),
            user ? user : "?");
  } else {
    nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: %s with X.509%s", c->id,
            gnutls_protocol_get_name(gnutls_protocol_get_version(s)),
            t->verify_peer ? " (client certificate verified)" : "");
  }
  return 0;
}
