/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nbd-protocol.h - the NBD wire format, written from the protocol
 * specification (doc/proto.md, incl. the extended-headers extension).
 *
 * Every field on the wire is big-endian.  The structs below are packed
 * images of the fixed-size messages; fill them with htobe*() and send them
 * as they are.
 */
#ifndef DISM_NBD_PROTOCOL_H
#define DISM_NBD_PROTOCOL_H

#include <stdint.h>

/* Magic numbers. */
#define NBD_MAGIC_INIT_PASSWD        UINT64_C(0x4e42444d41474943)  /* "NBDMAGIC" */
#define NBD_MAGIC_IHAVEOPT           UINT64_C(0x49484156454F5054)  /* "IHAVEOPT" */
#define NBD_MAGIC_OPTION_REPLY       UINT64_C(0x0003e889045565a9)
#define NBD_MAGIC_REQUEST            UINT32_C(0x25609513)
#define NBD_MAGIC_EXTENDED_REQUEST   UINT32_C(0x21e41c71)
#define NBD_MAGIC_SIMPLE_REPLY       UINT32_C(0x67446698)
#define NBD_MAGIC_STRUCTURED_REPLY   UINT32_C(0x668e33ef)
#define NBD_MAGIC_EXTENDED_REPLY     UINT32_C(0x6e8a278c)

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE      (1u << 0)
#define NBD_FLAG_NO_ZEROES           (1u << 1)

/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE    (1u << 0)
#define NBD_FLAG_C_NO_ZEROES         (1u << 1)

/* Options. */
#define NBD_OPT_EXPORT_NAME          1
#define NBD_OPT_ABORT                2
#define NBD_OPT_LIST                 3
#define NBD_OPT_PEEK_EXPORT          4   /* withdrawn */
#define NBD_OPT_STARTTLS             5
#define NBD_OPT_INFO                 6
#define NBD_OPT_GO                   7
#define NBD_OPT_STRUCTURED_REPLY     8
#define NBD_OPT_LIST_META_CONTEXT    9
#define NBD_OPT_SET_META_CONTEXT     10
#define NBD_OPT_EXTENDED_HEADERS     11

/* Option reply types. */
#define NBD_REP_ACK                  1
#define NBD_REP_SERVER               2
#define NBD_REP_INFO                 3
#define NBD_REP_META_CONTEXT         4
#define NBD_REP_FLAG_ERROR           (UINT32_C(1) << 31)
#define NBD_REP_ERR_UNSUP            (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY           (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID          (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM         (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD         (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN          (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN         (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD  (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG          (NBD_REP_FLAG_ERROR | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD  (NBD_REP_FLAG_ERROR | 10)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT              0
#define NBD_INFO_NAME                1
#define NBD_INFO_DESCRIPTION         2
#define NBD_INFO_BLOCK_SIZE          3

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS           (1u << 0)
#define NBD_FLAG_READ_ONLY           (1u << 1)
#define NBD_FLAG_SEND_FLUSH          (1u << 2)
#define NBD_FLAG_SEND_FUA            (1u << 3)
#define NBD_FLAG_ROTATIONAL          (1u << 4)
#define NBD_FLAG_SEND_TRIM           (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES   (1u << 6)
#define NBD_FLAG_SEND_DF             (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN      (1u << 8)
#define NBD_FLAG_SEND_RESIZE         (1u << 9)
#define NBD_FLAG_SEND_CACHE          (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO      (1u << 11)
#define NBD_FLAG_BLOCK_STATUS_PAYLOAD (1u << 12)

/* Commands. */
#define NBD_CMD_READ                 0
#define NBD_CMD_WRITE                1
#define NBD_CMD_DISC                 2
#define NBD_CMD_FLUSH                3
#define NBD_CMD_TRIM                 4
#define NBD_CMD_CACHE                5
#define NBD_CMD_WRITE_ZEROES         6
#define NBD_CMD_BLOCK_STATUS         7
#define NBD_CMD_RESIZE               8   /* experimental; not supported */

/* Command flags (16 bits). */
#define NBD_CMD_FLAG_FUA             (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE         (1u << 1)
#define NBD_CMD_FLAG_DF              (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE         (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO       (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN     (1u << 5)

/* Structured reply chunk flags and types. */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_OFFSET_HOLE   2
#define NBD_REPLY_TYPE_BLOCK_STATUS  5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6
#define NBD_REPLY_TYPE_ERROR         ((1u << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET  ((1u << 15) + 2)

/* Error values on the wire. */
#define NBD_EPERM                    1
#define NBD_EIO                      5
#define NBD_ENOMEM                   12
#define NBD_EINVAL                   22
#define NBD_ENOSPC                   28
#define NBD_EOVERFLOW                75
#define NBD_ENOTSUP                  95
#define NBD_ESHUTDOWN                108

/* base:allocation flags. */
#define NBD_STATE_HOLE               (1u << 0)
#define NBD_STATE_ZERO               (1u << 1)

#define NBD_META_BASE_ALLOCATION     "base:allocation"

/* Limits from the specification. */
#define NBD_MAX_STRING               4096           /* any string on the wire */
#define NBD_EXPORT_ZEROES            124            /* EXPORT_NAME padding */

/* Handshake messages. */
struct nbd_greeting {            /* server -> client, newstyle */
  uint64_t passwd;               /* NBD_MAGIC_INIT_PASSWD */
  uint64_t magic;                /* NBD_MAGIC_IHAVEOPT */
  uint16_t flags;                /* NBD_FLAG_FIXED_NEWSTYLE | ... */
} __attribute__((packed));

struct nbd_option_header {       /* client -> server, then len bytes */
  uint64_t magic;                /* NBD_MAGIC_IHAVEOPT */
  uint32_t option;
  uint32_t len;
} __attribute__((packed));

struct nbd_option_reply {        /* server -> client, then len bytes */
  uint64_t magic;                /* NBD_MAGIC_OPTION_REPLY */
  uint32_t option;
  uint32_t reply;
  uint32_t len;
} __attribute__((packed));

struct nbd_export_name_reply {   /* answer to NBD_OPT_EXPORT_NAME */
  uint64_t size;
  uint16_t flags;
  uint8_t zeroes[NBD_EXPORT_ZEROES];   /* omitted under NO_ZEROES */
} __attribute__((packed));

struct nbd_info_export {         /* NBD_REP_INFO payload, type EXPORT */
  uint16_t info;
  uint64_t size;
  uint16_t flags;
} __attribute__((packed));

struct nbd_info_block_size {     /* NBD_REP_INFO payload, type BLOCK_SIZE */
  uint16_t info;
  uint32_t minimum;
  uint32_t preferred;
  uint32_t maximum;
} __attribute__((packed));

/* Transmission messages. */
struct nbd_request {             /* compact, 28 bytes */
  uint32_t magic;                /* NBD_MAGIC_REQUEST */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint32_t length;
} __attribute__((packed));

struct nbd_extended_request {    /* 32 bytes */
  uint32_t magic;                /* NBD_MAGIC_EXTENDED_REQUEST */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint64_t length;
} __attribute__((packed));

struct nbd_simple_reply {        /* 16 bytes */
  uint32_t magic;                /* NBD_MAGIC_SIMPLE_REPLY */
  uint32_t error;
  uint64_t cookie;
} __attribute__((packed));

struct nbd_structured_reply {    /* 20 bytes, then length bytes */
  uint32_t magic;                /* NBD_MAGIC_STRUCTURED_REPLY */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint32_t length;
} __attribute__((packed));

struct nbd_extended_reply {      /* 32 bytes, then length bytes */
  uint32_t magic;                /* NBD_MAGIC_EXTENDED_REPLY */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;               /* echoes the request's offset */
  uint64_t length;
} __attribute__((packed));

struct nbd_chunk_offset_hole {   /* OFFSET_HOLE payload */
  uint64_t offset;
  uint32_t length;
} __attribute__((packed));

struct nbd_chunk_error {         /* ERROR payload head, then the message */
  uint32_t error;
  uint16_t msg_len;
} __attribute__((packed));

struct nbd_block_descriptor {    /* BLOCK_STATUS */
  uint32_t length;
  uint32_t flags;
} __attribute__((packed));

struct nbd_block_descriptor_ext {  /* BLOCK_STATUS_EXT */
  uint64_t length;
  uint64_t flags;
} __attribute__((packed));

_Static_assert(sizeof(struct nbd_greeting) == 18, "greeting size");
_Static_assert(sizeof(struct nbd_option_header) == 16, "option header size");
_Static_assert(sizeof(struct nbd_option_reply) == 20, "option reply size");
_Static_assert(sizeof(struct nbd_export_name_reply) == 134, "export reply size");
_Static_assert(sizeof(struct nbd_info_export) == 12, "info export size");
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "info block size size");
_Static_assert(sizeof(struct nbd_request) == 28, "request size");
_Static_assert(sizeof(struct nbd_extended_request) == 32, "extended request size");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "simple reply size");
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "structured reply size");
_Static_assert(sizeof(struct nbd_extended_reply) == 32, "extended reply size");

#endif
