/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tls-client.c - a small GnuTLS NBD client for tests/t/48-nbd-tls.t: what
 * libnbd and qemu never do (TLS 1.2 only, a client-initiated
 * renegotiation).  PSK only.
 *
 *   tls-client PORT USER HEXKEY read OFFSET LENGTH
 *       STARTTLS, a TLS 1.2 handshake, GO, one READ (simple reply); the
 *       data goes to stdout.
 *   tls-client PORT USER HEXKEY reneg-options | reneg-transmission
 *       STARTTLS, a TLS 1.2 handshake, [GO,] then a renegotiation.  Exit 0
 *       if the server refused it and closed the connection.
 *
 * Exit status 0 on the expected outcome, 1 otherwise (reason on stderr). */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "nbd-protocol.h"

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
  va_list ap;

  fputs("tls-client: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

/* Plain or TLS, depending on whether the session is set. */
static gnutls_session_t session;
static int sock = -1;

static void
put(const void *buf, size_t len)
{
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = session ? gnutls_record_send(session, p, len)
                        : send(sock, p, len, MSG_NOSIGNAL);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
      continue;
    if (n <= 0)
      die("send: %s", session ? gnutls_strerror((int) n) : strerror(errno));
    p += n;
    len -= (size_t) n;
  }
}

static void
get(void *buf, size_t len)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = session ? gnutls_record_recv(session, p, len)
                        : recv(sock, p, len, 0);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
      continue;
    if (n <= 0)
      die("receive: %s", n == 0 ? "EOF" :
          session ? gnutls_strerror((int) n) : strerror(errno));
    p += n;
    len -= (size_t) n;
  }
}

/* Send an option and read its one reply (ACK expected); returns the reply
 * type.  INFO replies before the final one are skipped. */
static uint32_t
option(uint32_t opt, const void *data, uint32_t len)
{
  struct nbd_option_header h = {
    .magic = htobe64(NBD_MAGIC_IHAVEOPT),
    .option = htobe32(opt),
    .len = htobe32(len),
  };

  put(&h, sizeof h);
  if (len)
    put(data, len);
  for (;;) {
    struct nbd_option_reply r;
    uint8_t skip[4096];
    uint32_t rlen, type;

    get(&r, sizeof r);
    rlen = be32toh(r.len);
    type = be32toh(r.reply);
    if (be64toh(r.magic) != NBD_MAGIC_OPTION_REPLY || rlen > sizeof skip)
      die("bad option reply");
    get(skip, rlen);
    if (type != NBD_REP_INFO)
      return type;
  }
}

static void
go(void)
{
  uint8_t data[6] = { 0 };   /* empty name, no info requests */

  if (option(NBD_OPT_GO, data, sizeof data) != NBD_REP_ACK)
    die("GO refused");
}

/* True if the server has closed the connection (EOF or an error). */
static int
peer_closed(void)
{
  uint8_t b;
  struct timeval tv = { .tv_sec = 10 };

  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (;;) {
    ssize_t n = recv(sock, &b, 1, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
      return 1;
    if (n < 0)
      return 0;   /* timed out: still open */
  }
}

int
main(int argc, char **argv)
{
  struct sockaddr_in sa = { .sin_family = AF_INET };
  gnutls_psk_client_credentials_t psk;
  gnutls_datum_t key;
  struct nbd_greeting g;
  uint32_t flags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  const char *mode;
  size_t keylen;
  int e;

  if (argc < 5)
    die("usage: tls-client PORT USER HEXKEY MODE [OFFSET LENGTH]");
  mode = argv[4];
  sa.sin_port = htons((uint16_t) atoi(argv[1]));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sock = socket(AF_INET, SOCK_STREAM, 0);
  if (sock < 0 || connect(sock, (struct sockaddr *) &sa, sizeof sa) < 0)
    die("connect: %s", strerror(errno));

  get(&g, sizeof g);
  put(&flags, sizeof flags);
  if (option(NBD_OPT_STARTTLS, NULL, 0) != NBD_REP_ACK)
    die("STARTTLS refused");

  keylen = strlen(argv[3]) / 2;
  key.data = malloc(keylen);
  key.size = (unsigned) keylen;
  for (size_t i = 0; i < keylen; i++)
    sscanf(argv[3] + 2 * i, "%2hhx", &key.data[i]);
  if (gnutls_psk_allocate_client_credentials(&psk) < 0 ||
      gnutls_psk_set_client_credentials(psk, argv[2], &key, GNUTLS_PSK_KEY_RAW) < 0)
    die("PSK credentials");
  free(key.data);   /* GnuTLS keeps its own copy */
  e = gnutls_init(&session, GNUTLS_CLIENT);
  if (e == 0)
    e = gnutls_priority_set_direct(session,
          "NORMAL:-VERS-ALL:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK:+PSK", NULL);
  if (e == 0)
    e = gnutls_credentials_set(session, GNUTLS_CRD_PSK, psk);
  if (e < 0)
    die("session setup: %s", gnutls_strerror(e));
  gnutls_transport_set_int(session, sock);
  do
    e = gnutls_handshake(session);
  while (e < 0 && !gnutls_error_is_fatal(e));
  if (e < 0)
    die("handshake: %s", gnutls_strerror(e));
  if (gnutls_protocol_get_version(session) != GNUTLS_TLS1_2)
    die("not TLS 1.2");

  if (strcmp(mode, "read") == 0 && argc == 7) {
    uint64_t off = strtoull(argv[5], NULL, 0);
    uint32_t len = (uint32_t) strtoul(argv[6], NULL, 0);
    struct nbd_request req = {
      .magic = htobe32(NBD_MAGIC_REQUEST),
      .type = htobe16(NBD_CMD_READ),
      .cookie = htobe64(1),
      .offset = htobe64(off),
      .length = htobe32(len),
    };
    struct nbd_simple_reply rep;
    uint8_t *buf = malloc(len);

    go();
    put(&req, sizeof req);
    get(&rep, sizeof rep);
    if (be32toh(rep.magic) != NBD_MAGIC_SIMPLE_REPLY || rep.error != 0)
      die("READ failed");
    get(buf, len);
    if (fwrite(buf, 1, len, stdout) != len)
      die("stdout");
    req.type = htobe16(NBD_CMD_DISC);
    req.length = 0;
    req.offset = 0;
    put(&req, sizeof req);
    gnutls_bye(session, GNUTLS_SHUT_WR);
    free(buf);
    gnutls_deinit(session);
    gnutls_psk_free_client_credentials(psk);
    return 0;
  }
  if (strcmp(mode, "reneg-options") == 0 || strcmp(mode, "reneg-transmission") == 0) {
    if (strcmp(mode, "reneg-transmission") == 0)
      go();
    do
      e = gnutls_handshake(session);
    while (e < 0 && !gnutls_error_is_fatal(e));
    if (e == 0)
      die("the server accepted a renegotiation");
    if (!peer_closed())
      die("renegotiation failed (%s) but the connection stays open",
          gnutls_strerror(e));
    gnutls_deinit(session);
    gnutls_psk_free_client_credentials(psk);
    return 0;
  }
  die("unknown mode %s", mode);
}
