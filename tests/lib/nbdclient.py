# SPDX-License-Identifier: GPL-2.0-or-later
"""nbdclient.py - a small raw-socket NBD client for protocol tests.

It sends exactly what it is told (including things libnbd refuses to send:
bad magic, unknown options and commands, oversized requests, garbage) and
parses replies strictly, so the tests can check every byte the server sends.
Written from the NBD protocol specification.
"""
import socket
import struct

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
EXT_REQUEST_MAGIC = 0x21e41c71
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668e33ef
EXT_REPLY_MAGIC = 0x6e8a278c

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_PEEK, OPT_STARTTLS, OPT_INFO, OPT_GO, \
    OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT, \
    OPT_EXTENDED_HEADERS = range(1, 12)

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID, REP_ERR_PLATFORM, \
    REP_ERR_TLS_REQD, REP_ERR_UNKNOWN, REP_ERR_SHUTDOWN, \
    REP_ERR_BLOCK_SIZE_REQD, REP_ERR_TOO_BIG, REP_ERR_EXT_HEADER_REQD = \
    [REP_ERR | i for i in range(1, 11)]

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = range(4)

(TF_HAS_FLAGS, TF_READ_ONLY, TF_SEND_FLUSH, TF_SEND_FUA, TF_ROTATIONAL,
 TF_SEND_TRIM, TF_SEND_WRITE_ZEROES, TF_SEND_DF, TF_CAN_MULTI_CONN,
 TF_SEND_RESIZE, TF_SEND_CACHE, TF_SEND_FAST_ZERO) = [1 << i for i in range(12)]

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, \
    CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = range(8)
CMDF_FUA, CMDF_NO_HOLE, CMDF_DF, CMDF_REQ_ONE, CMDF_FAST_ZERO, \
    CMDF_PAYLOAD_LEN = [1 << i for i in range(6)]

REPLY_FLAG_DONE = 1
RT_NONE, RT_OFFSET_DATA, RT_OFFSET_HOLE = 0, 1, 2
RT_BLOCK_STATUS, RT_BLOCK_STATUS_EXT = 5, 6
RT_ERROR, RT_ERROR_OFFSET = (1 << 15) + 1, (1 << 15) + 2

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = \
    1, 5, 12, 22, 28, 75, 95, 108


class Disconnected(Exception):
    pass


class ProtocolError(Exception):
    pass


class Client:
    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.structured = False
        self.extended = False
        self.size = None
        self.tflags = None
        self.cookie = 0
        self.read_lengths = {}     # cookie -> length, for simple READ replies

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- raw I/O --------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Disconnected("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def is_closed_by_peer(self, timeout=5):
        """True if the server closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    # -- handshake ------------------------------------------------------
    def greeting(self):
        passwd, magic, flags = struct.unpack(">QQH", self.recv_exact(18))
        if passwd != NBDMAGIC or magic != IHAVEOPT:
            raise ProtocolError("bad greeting")
        return flags

    def handshake(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        self.server_flags = self.greeting()
        self.no_zeroes = bool(client_flags & FLAG_NO_ZEROES)
        self.send(struct.pack(">I", client_flags))
        return self.server_flags

    def send_option(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def recv_option_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        if magic != REPLY_MAGIC:
            raise ProtocolError("bad option reply magic %#x" % magic)
        return opt, rtype, self.recv_exact(length)

    def option(self, opt, data=b""):
        """Send an option; return all replies up to the final one."""
        self.send_option(opt, data)
        replies = []
        while True:
            ropt, rtype, rdata = self.recv_option_reply()
            if ropt != opt:
                raise ProtocolError("reply for option %d, expected %d" % (ropt, opt))
            replies.append((rtype, rdata))
            if rtype == REP_ACK or rtype & REP_ERR:
                return replies

    @staticmethod
    def info_data(name=b"", infos=()):
        return (struct.pack(">I", len(name)) + name +
                struct.pack(">H", len(infos)) +
                b"".join(struct.pack(">H", i) for i in infos))

    def info_go(self, opt, name=b"", infos=()):
        replies = self.option(opt, self.info_data(name, infos))
        result = {"final": replies[-1][0], "replies": replies}
        for rtype, rdata in replies:
            if rtype != REP_INFO:
                continue
            itype = struct.unpack(">H", rdata[:2])[0]
            if itype == INFO_EXPORT:
                result["size"], result["flags"] = struct.unpack(">QH", rdata[2:])
            elif itype == INFO_BLOCK_SIZE:
                result["block_size"] = struct.unpack(">III", rdata[2:])
            else:
                result[itype] = rdata[2:]
        if opt == OPT_GO and result["final"] == REP_ACK:
            self.size, self.tflags = result["size"], result["flags"]
        return result

    def go(self, name=b"", infos=()):
        r = self.info_go(OPT_GO, name, infos)
        if r["final"] != REP_ACK:
            raise ProtocolError("GO failed: %#x" % r["final"])
        return r

    def export_name(self, name=b""):
        self.send_option(OPT_EXPORT_NAME, name)
        n = 10 if self.no_zeroes else 134
        data = self.recv_exact(n)
        self.size, self.tflags = struct.unpack(">QH", data[:10])
        if n == 134 and data[10:] != bytes(124):
            raise ProtocolError("padding is not zero")
        return self.size, self.tflags

    def structured_reply(self):
        r = self.option(OPT_STRUCTURED_REPLY)
        if r[-1][0] == REP_ACK:
            self.structured = True
        return r[-1][0]

    def extended_headers(self):
        r = self.option(OPT_EXTENDED_HEADERS)
        if r[-1][0] == REP_ACK:
            self.extended = self.structured = True
        return r[-1][0]

    @staticmethod
    def meta_data(name, queries):
        return (struct.pack(">I", len(name)) + name +
                struct.pack(">I", len(queries)) +
                b"".join(struct.pack(">I", len(q)) + q for q in queries))

    def meta_context(self, opt, queries, name=b""):
        """Returns (final reply type, [(id, name)])."""
        replies = self.option(opt, self.meta_data(name, queries))
        contexts = []
        for rtype, rdata in replies:
            if rtype == REP_META_CONTEXT:
                contexts.append((struct.unpack(">I", rdata[:4])[0], rdata[4:]))
        return replies[-1][0], contexts

    # -- transmission ---------------------------------------------------
    def next_cookie(self):
        self.cookie += 1
        return self.cookie * 0x0101010101 + 0x1000000000000000

    def request(self, cmd, offset=0, length=0, flags=0, payload=b"",
                cookie=None, send_payload=True):
        """Send one request; returns its cookie."""
        if cookie is None:
            cookie = self.next_cookie()
        if self.extended:
            hdr = struct.pack(">IHHQQQ", EXT_REQUEST_MAGIC, flags, cmd, cookie,
                              offset, length)
        else:
            hdr = struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie,
                              offset, length)
        if cmd == CMD_READ:
            self.read_lengths[cookie] = length
        self.send(hdr + (payload if send_payload else b""))
        return cookie

    def reply(self):
        """Read one complete reply.  Returns dict(cookie, error, data,
        chunks, form) where data is the READ data assembled from the
        chunks (holes as zeroes) and chunks lists (flags, type, offset
        field, payload)."""
        if self.extended:
            magic, flags, rtype, cookie, offset, length = \
                struct.unpack(">IHHQQQ", self.recv_exact(32))
            if magic != EXT_REPLY_MAGIC:
                raise ProtocolError("bad extended reply magic %#x" % magic)
            return self._chunks(cookie, [(flags, rtype, offset, self.recv_exact(length))])
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            if self.extended:
                raise ProtocolError("simple reply under extended headers")
            error, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = b""
            rlen = self.read_lengths.pop(cookie, None)
            if rlen is not None and error == 0:
                data = self.recv_exact(rlen)
            return {"cookie": cookie, "error": error, "data": data,
                    "chunks": [], "form": "simple"}
        if magic == STRUCTURED_REPLY_MAGIC:
            if not self.structured:
                raise ProtocolError("structured reply without negotiation")
            flags, rtype, cookie, length = struct.unpack(">HHQI", self.recv_exact(16))
            return self._chunks(cookie, [(flags, rtype, None, self.recv_exact(length))])
        raise ProtocolError("bad reply magic %#x" % magic)

    def _chunks(self, cookie, chunks):
        """Read further chunks of the same reply until DONE (we never have
        more than one request in flight when using this)."""
        while not chunks[-1][0] & REPLY_FLAG_DONE:
            if self.extended:
                magic, flags, rtype, c2, offset, length = \
                    struct.unpack(">IHHQQQ", self.recv_exact(32))
                if magic != EXT_REPLY_MAGIC:
                    raise ProtocolError("bad extended reply magic")
            else:
                magic, flags, rtype, c2, length = \
                    struct.unpack(">IHHQI", self.recv_exact(20))
                offset = None
                if magic != STRUCTURED_REPLY_MAGIC:
                    raise ProtocolError("bad structured reply magic %#x" % magic)
            if c2 != cookie:
                raise ProtocolError("interleaved chunks: %#x vs %#x" % (c2, cookie))
            chunks.append((flags, rtype, offset, self.recv_exact(length)))
        error = 0
        pieces = []
        for flags, rtype, offset, payload in chunks:
            if rtype in (RT_ERROR, RT_ERROR_OFFSET):
                error = struct.unpack(">I", payload[:4])[0]
            elif rtype == RT_OFFSET_DATA:
                pieces.append((struct.unpack(">Q", payload[:8])[0], payload[8:]))
            elif rtype == RT_OFFSET_HOLE:
                o, n = struct.unpack(">QI", payload)
                pieces.append((o, bytes(n)))
        self.read_lengths.pop(cookie, None)
        pieces.sort(key=lambda p: p[0])
        return {"cookie": cookie, "error": error, "chunks": chunks,
                "pieces": pieces, "data": b"".join(p[1] for p in pieces),
                "form": "extended" if self.extended else "structured"}

    def call(self, cmd, offset=0, length=0, flags=0, payload=b""):
        cookie = self.request(cmd, offset, length, flags, payload)
        r = self.reply()
        if r["cookie"] != cookie:
            raise ProtocolError("cookie %#x, expected %#x" % (r["cookie"], cookie))
        return r

    def read(self, offset, length, flags=0):
        return self.call(CMD_READ, offset, length, flags)

    def write(self, offset, data, flags=0):
        return self.call(CMD_WRITE, offset, len(data), flags, data)

    def disc(self):
        self.request(CMD_DISC)


def connect_go(path, structured=True, meta=False, extended=False, name=b""):
    c = Client(path)
    c.handshake()
    if extended:
        c.extended_headers()
    elif structured:
        c.structured_reply()
    if meta:
        c.meta_context(OPT_SET_META_CONTEXT, [b"base:allocation"], name)
    c.go(name)
    return c
