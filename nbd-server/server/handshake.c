/* SPDX-License-Identifier: GPL-2.0-or-later */
/* handshake.c - fixed newstyle negotiation, up to NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-protocol.h"
#include "server-internal.h"

/* Handshake step outcomes besides a negative errno (drop the connection). */
enum { NEXT_OPTION = 2, START_TRANSMISSION = 1, SOFT_DISCONNECT = 0 };

static int
send_option_reply(struct nbd_conn *c, uint32_t option, uint32_t type,
                  const void *data, size_t len)
{
  struct nbd_option_reply hdr = {
    .magic = htobe64(NBD_MAGIC_OPTION_REPLY),
    .option = htobe32(option),
    .reply = htobe32(type),
    .len = htobe32((uint32_t) len),
  };
  struct iovec iov[2] = {
    { &hdr, sizeof hdr },
    { (void *) data, len },
  };
  return conn_send(c, iov, len ? 2 : 1);
}

/* An error reply with a message for humans; the option is finished. */
static int
send_option_error(struct nbd_conn *c, uint32_t option, uint32_t type,
                  const char *why)
{
  int r;

  nbd_log(c->srv, NBD_LOG_DEBUG, "connection %lu: option %u refused: %s",
          c->id, option, why);
  r = send_option_reply(c, option, type, why, strlen(why));
  return r < 0 ? r : NEXT_OPTION;
}

static int
send_ack(struct nbd_conn *c, uint32_t option)
{
  int r = send_option_reply(c, option, NBD_REP_ACK, NULL, 0);
  return r < 0 ? r : NEXT_OPTION;
}

/* A client's export name selects our one export when it is empty (the
 * default export) or equals the configured name. */
static bool
export_name_matches(const struct nbd_server *srv, const uint8_t *name,
                    uint32_t len)
{
  return len == 0 ||
         (len == strlen(srv->export_name) &&
          memcmp(name, srv->export_name, len) == 0);
}

static bool
string_ok(const uint8_t *s, uint32_t len)
{
  return len <= NBD_MAX_STRING && !memchr(s, 0, len);
}

static int
send_info_string(struct nbd_conn *c, uint32_t option, uint16_t info,
                 const char *s)
{
  size_t n = strlen(s);
  uint8_t buf[2 + NBD_MAX_STRING];
  uint16_t be = htobe16(info);

  memcpy(buf, &be, 2);
  memcpy(buf + 2, s, n);
  return send_option_reply(c, option, NBD_REP_INFO, buf, 2 + n);
}

/* NBD_OPT_INFO and NBD_OPT_GO: u32 name length, name, u16 count, count
 * info types. */
static int
option_info_go(struct nbd_conn *c, uint32_t option, const uint8_t *data,
               uint32_t len)
{
  struct nbd_server *srv = c->srv;
  struct nbd_info_export exp;
  struct nbd_info_block_size bs;
  uint32_t namelen, i;
  uint16_t nreq, tflags;
  bool want_name = false, want_description = false;
  int r;

  if (len < 6)
    return send_option_error(c, option, NBD_REP_ERR_INVALID, "option too short");
  memcpy(&namelen, data, 4);
  namelen = be32toh(namelen);
  if (namelen > len - 6)
    return send_option_error(c, option, NBD_REP_ERR_INVALID, "bad name length");
  if (!string_ok(data + 4, namelen))
    return send_option_error(c, option, NBD_REP_ERR_INVALID, "bad export name");
  memcpy(&nreq, data + 4 + namelen, 2);
  nreq = be16toh(nreq);
  if ((uint64_t) 6 + namelen + 2u * nreq != len)
    return send_option_error(c, option, NBD_REP_ERR_INVALID,
                             "bad information request count");
  if (!export_name_matches(srv, data + 4, namelen))
    return send_option_error(c, option, NBD_REP_ERR_UNKNOWN, "no such export");
  for (i = 0; i < nreq; i++) {
    uint16_t type;
    memcpy(&type, data + 6 + namelen + 2 * i, 2);
    type = be16toh(type);
    if (type == NBD_INFO_NAME)
      want_name = true;
    else if (type == NBD_INFO_DESCRIPTION)
      want_description = true;
    /* BLOCK_SIZE is always sent; unknown types are ignored. */
  }

  tflags = nbd_server_transmission_flags(srv, c->structured);
  exp = (struct nbd_info_export) {
    .info = htobe16(NBD_INFO_EXPORT),
    .size = htobe64(srv->disk->size),
    .flags = htobe16(tflags),
  };
  r = send_option_reply(c, option, NBD_REP_INFO, &exp, sizeof exp);
  if (r == 0 && want_name)
    r = send_info_string(c, option, NBD_INFO_NAME, srv->export_name);
  if (r == 0 && want_description && srv->description[0])
    r = send_info_string(c, option, NBD_INFO_DESCRIPTION, srv->description);
  if (r == 0) {
    bs = (struct nbd_info_block_size) {
      .info = htobe16(NBD_INFO_BLOCK_SIZE),
      .minimum = htobe32(NBD_SERVER_BLOCK_MIN),
      .preferred = htobe32(NBD_SERVER_BLOCK_PREFERRED),
      .maximum = htobe32(NBD_SERVER_MAX_PAYLOAD),
    };
    r = send_option_reply(c, option, NBD_REP_INFO, &bs, sizeof bs);
  }
  if (r == 0)
    r = send_option_reply(c, option, NBD_REP_ACK, NULL, 0);
  if (r < 0)
    return r;
  if (option != NBD_OPT_GO)
    return NEXT_OPTION;
  c->tflags = tflags;
  return START_TRANSMISSION;
}

/* NBD_OPT_EXPORT_NAME: no reply framing, no way to report an error. */
static int
option_export_name(struct nbd_conn *c, const uint8_t *data, uint32_t len)
{
  struct nbd_server *srv = c->srv;
  struct nbd_export_name_reply reply;
  struct iovec iov;
  int r;

  if (c->extended) {
    nbd_log(srv, NBD_LOG_INFO, "connection %lu: EXPORT_NAME after extended headers",
            c->id);
    return -EPROTO;
  }
  if (!string_ok(data, len) || !export_name_matches(srv, data, len)) {
    nbd_log(srv, NBD_LOG_INFO, "connection %lu: EXPORT_NAME: no such export",
            c->id);
    return -ENOENT;
  }
  c->tflags = nbd_server_transmission_flags(srv, c->structured);
  memset(&reply, 0, sizeof reply);
  reply.size = htobe64(srv->disk->size);
  reply.flags = htobe16(c->tflags);
  iov.iov_base = &reply;
  iov.iov_len = c->no_zeroes ? sizeof reply - NBD_EXPORT_ZEROES : sizeof reply;
  r = conn_send(c, &iov, 1);
  return r < 0 ? r : START_TRANSMISSION;
}

static int
option_list(struct nbd_conn *c, uint32_t len)
{
  struct nbd_server *srv = c->srv;
  size_t namelen = strlen(srv->export_name);
  size_t desclen = strlen(srv->description);
  uint8_t buf[4 + 2 * NBD_MAX_STRING];
  uint32_t be = htobe32((uint32_t) namelen);
  int r;

  if (len != 0)
    return send_option_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                             "LIST takes no data");
  memcpy(buf, &be, 4);
  memcpy(buf + 4, srv->export_name, namelen);
  memcpy(buf + 4 + namelen, srv->description, desclen);
  r = send_option_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf,
                        4 + namelen + desclen);
  return r < 0 ? r : send_ack(c, NBD_OPT_LIST);
}

static int
send_meta_context(struct nbd_conn *c, uint32_t option, uint32_t id)
{
  static const char name[] = NBD_META_BASE_ALLOCATION;
  uint8_t buf[4 + sizeof name];
  uint32_t be = htobe32(id);

  memcpy(buf, &be, 4);
  memcpy(buf + 4, name, sizeof name - 1);
  return send_option_reply(c, option, NBD_REP_META_CONTEXT, buf,
                           4 + sizeof name - 1);
}

static bool
query_is(const uint8_t *q, uint32_t qlen, const char *s)
{
  return qlen == strlen(s) && memcmp(q, s, qlen) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 name length,
 * name, u32 query count, then (u32 length, query) per query.  We know one
 * context, base:allocation. */
static int
option_meta_context(struct nbd_conn *c, uint32_t option, const uint8_t *data,
                    uint32_t len)
{
  bool set = option == NBD_OPT_SET_META_CONTEXT;
  uint32_t namelen, nqueries, i, pos;
  bool matched = false;
  int pass, r;

  /* SET replaces the selection even when it fails. */
  if (set)
    c->meta_allocation = false;
  if (!c->structured)
    return send_option_error(c, option, NBD_REP_ERR_INVALID,
                             "structured replies not negotiated");
  if (len < 8)
    return send_option_error(c, option, NBD_REP_ERR_INVALID, "option too short");
  memcpy(&namelen, data, 4);
  namelen = be32toh(namelen);
  if (namelen > len - 8 || !string_ok(data + 4, namelen))
    return send_option_error(c, option, NBD_REP_ERR_INVALID, "bad export name");
  memcpy(&nqueries, data + 4 + namelen, 4);
  nqueries = be32toh(nqueries);

  /* Pass 0 validates the whole option, pass 1 answers it: no context is
   * reported for an option that then turns out to be malformed. */
  for (pass = 0; pass < 2; pass++) {
    pos = 8 + namelen;
    for (i = 0; i < nqueries; i++) {
      uint32_t qlen;
      const uint8_t *q;

      if (len - pos < 4)
        return send_option_error(c, option, NBD_REP_ERR_INVALID,
                                 "query count exceeds the data");
      memcpy(&qlen, data + pos, 4);
      qlen = be32toh(qlen);
      pos += 4;
      if (qlen > len - pos || !string_ok(data + pos, qlen))
        return send_option_error(c, option, NBD_REP_ERR_INVALID,
                                 "bad query length");
      q = data + pos;
      pos += qlen;
      if (pass == 0 || matched)
        continue;
      if (query_is(q, qlen, NBD_META_BASE_ALLOCATION) ||
          (!set && query_is(q, qlen, "base:")))
        matched = true;
    }
    if (pass == 0) {
      if (pos != len)
        return send_option_error(c, option, NBD_REP_ERR_INVALID,
                                 "trailing data after the queries");
      if (!export_name_matches(c->srv, data + 4, namelen))
        return send_option_error(c, option, NBD_REP_ERR_UNKNOWN,
                                 "no such export");
    }
  }
  if (!set && nqueries == 0)
    matched = true;          /* an empty LIST query lists everything */
  if (matched) {
    r = send_meta_context(c, option, set ? META_CONTEXT_ID_ALLOCATION : 0);
    if (r < 0)
      return r;
    if (set)
      c->meta_allocation = true;
  }
  return send_ack(c, option);
}

/* NBD_OPT_STARTTLS: ACK, then the TLS handshake on the same socket.  All
 * negotiated state is forgotten (the spec: it was agreed in the clear). */
static int
option_starttls(struct nbd_conn *c, uint32_t len)
{
  int r;

  if (len != 0)
    return send_option_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                             "STARTTLS takes no data");
  if (!c->srv->tls)
    return send_option_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
                             "TLS is not enabled on this server");
  if (c->tls)
    return send_option_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                             "TLS is already active");
  /* Bytes sent behind STARTTLS before our reply would be taken as if they
   * had come over TLS (plaintext injection): the client must wait. */
  if (conn_buffered(c) > 0) {
    nbd_log(c->srv, NBD_LOG_INFO,
            "connection %lu: data sent after STARTTLS before its reply", c->id);
    return -EPROTO;
  }
  r = send_option_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
  if (r < 0)
    return r;
  r = conn_tls_start(c);
  if (r < 0)
    return r;
  c->structured = false;
  c->extended = false;
  c->meta_allocation = false;
  return NEXT_OPTION;
}

static int
handle_option(struct nbd_conn *c, uint32_t option, const uint8_t *data,
              uint32_t len)
{
  /* TLS required: before it, only STARTTLS and ABORT.  EXPORT_NAME has no
   * way to report an error, so the spec says to drop the connection. */
  if (c->srv->tls_mode == NBD_TLS_REQUIRE && !c->tls &&
      option != NBD_OPT_STARTTLS && option != NBD_OPT_ABORT) {
    if (option == NBD_OPT_EXPORT_NAME) {
      nbd_log(c->srv, NBD_LOG_INFO,
              "connection %lu: EXPORT_NAME without TLS: disconnecting", c->id);
      return -EACCES;
    }
    return send_option_error(c, option, NBD_REP_ERR_TLS_REQD,
                             "TLS is required: use STARTTLS");
  }
  switch (option) {
  case NBD_OPT_EXPORT_NAME:
    return option_export_name(c, data, len);
  case NBD_OPT_ABORT:
    /* The client may close without reading this: ignore send errors. */
    send_option_reply(c, option, NBD_REP_ACK, NULL, 0);
    return SOFT_DISCONNECT;
  case NBD_OPT_LIST:
    return option_list(c, len);
  case NBD_OPT_STARTTLS:
    return option_starttls(c, len);
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    return option_info_go(c, option, data, len);
  case NBD_OPT_STRUCTURED_REPLY:
    if (len != 0)
      return send_option_error(c, option, NBD_REP_ERR_INVALID,
                               "STRUCTURED_REPLY takes no data");
    if (c->extended)
      return send_option_error(c, option, NBD_REP_ERR_EXT_HEADER_REQD,
                               "extended headers already negotiated");
    if (c->structured)
      return send_option_error(c, option, NBD_REP_ERR_INVALID,
                               "structured replies already negotiated");
    c->structured = true;
    return send_ack(c, option);
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    return option_meta_context(c, option, data, len);
  case NBD_OPT_EXTENDED_HEADERS:
    if (len != 0)
      return send_option_error(c, option, NBD_REP_ERR_INVALID,
                               "EXTENDED_HEADERS takes no data");
    if (c->extended)
      return send_option_error(c, option, NBD_REP_ERR_INVALID,
                               "extended headers already negotiated");
    c->extended = true;
    c->structured = true;
    return send_ack(c, option);
  default:
    return send_option_error(c, option, NBD_REP_ERR_UNSUP, "unknown option");
  }
}

int
nbd_handshake(struct nbd_conn *c)
{
  struct nbd_greeting greeting = {
    .passwd = htobe64(NBD_MAGIC_INIT_PASSWD),
    .magic = htobe64(NBD_MAGIC_IHAVEOPT),
    .flags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
  };
  struct iovec iov = { &greeting, sizeof greeting };
  uint8_t *data = NULL;
  uint32_t client_flags;
  int r;

  r = conn_send(c, &iov, 1);
  if (r < 0)
    goto out;
  r = conn_read(c, &client_flags, sizeof client_flags);
  if (r < 0)
    goto out;
  client_flags = be32toh(client_flags);
  /* Unknown flags are a MUST-drop; a client that is not fixed newstyle
   * cannot cope with our option replies. */
  if ((client_flags & ~(uint32_t) (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) ||
      !(client_flags & NBD_FLAG_C_FIXED_NEWSTYLE)) {
    nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: bad client flags 0x%x",
            c->id, client_flags);
    r = -EPROTO;
    goto out;
  }
  c->no_zeroes = client_flags & NBD_FLAG_C_NO_ZEROES;
  data = malloc(NBD_SERVER_MAX_OPTION_LEN);
  if (!data) {
    r = -ENOMEM;
    goto out;
  }

  for (;;) {
    struct nbd_option_header opt;
    uint32_t option, len;

    r = conn_read(c, &opt, sizeof opt);
    if (r < 0)
      goto out;
    option = be32toh(opt.option);
    len = be32toh(opt.len);
    if (be64toh(opt.magic) != NBD_MAGIC_IHAVEOPT) {
      nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: bad option magic", c->id);
      r = -EPROTO;
      goto out;
    }
    /* Nothing we understand needs this much: treat it as abuse. */
    if (len > NBD_SERVER_MAX_OPTION_LEN) {
      nbd_log(c->srv, NBD_LOG_INFO, "connection %lu: option %u too long (%u bytes)",
              c->id, option, len);
      r = -EPROTO;
      goto out;
    }
    r = conn_read(c, data, len);
    if (r < 0)
      goto out;
    nbd_log(c->srv, NBD_LOG_DEBUG, "connection %lu: option %u, %u bytes",
            c->id, option, len);
    r = handle_option(c, option, data, len);
    if (r != NEXT_OPTION)
      goto out;
  }
out:
  free(data);
  return r;
}
