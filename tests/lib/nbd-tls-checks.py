#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-tls-checks.py - STARTTLS at the byte level, for tests/t/48-nbd-tls.t.

A raw NBD client (nbdclient.py) that wraps its socket in Python's ssl module
after NBD_OPT_STARTTLS, so every option reply before and after TLS can be
checked, and things libnbd never does can be sent (data behind STARTTLS, a
second STARTTLS, READs pipelined while not reading replies).

  nbd-tls-checks.py --require PORT --on PORT --off PORT --certs DIR --image FILE
                    [--deadline-port PORT --deadline SECONDS]

--require: a --tls=require --tls-verify-peer X.509 server; --on: a --tls=on
X.509 server, read-only; --off: a server without TLS.  All three serve
FILE's contents (a raw reference of the export).  --certs holds ca-cert.pem,
client-cert.pem and client-key.pem.  Prints "PASS what" / "FAIL what".
"""
import argparse
import os
import random
import socket
import ssl
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdclient as N  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--require", type=int, required=True)
ap.add_argument("--on", type=int, required=True)
ap.add_argument("--off", type=int, required=True)
ap.add_argument("--certs", required=True)
ap.add_argument("--image", required=True)
ap.add_argument("--deadline-port", type=int, default=0,
                help="a --tls=on X.509 server run with --handshake-timeout DEADLINE")
ap.add_argument("--deadline", type=int, default=3)
args = ap.parse_args()
IMAGE = open(args.image, "rb").read()
failures = 0


def check(name):
    def run(fn):
        global failures
        try:
            fn()
            print("PASS " + name, flush=True)
        except Exception:
            failures += 1
            print("FAIL " + name, flush=True)
            for line in traceback.format_exc().splitlines():
                print("# " + line, flush=True)
        return fn
    return run


def connect(port):
    c = N.Client.__new__(N.Client)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.structured = c.extended = False
    c.size = c.tflags = None
    c.cookie = 0
    c.read_lengths = {}
    c.handshake()
    return c


def tls_context(with_cert=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(args.certs, "ca-cert.pem"))
    if with_cert:
        ctx.load_cert_chain(os.path.join(args.certs, "client-cert.pem"),
                            os.path.join(args.certs, "client-key.pem"))
    return ctx


def starttls(c, with_cert=True):
    r = c.option(N.OPT_STARTTLS)
    assert r[-1][0] == N.REP_ACK, "STARTTLS: %#x" % r[-1][0]
    c.sock = tls_context(with_cert).wrap_socket(c.sock, server_hostname="localhost")


def closed_without_data(c, timeout=10):
    """The server hung up and sent nothing more (EOF, reset or a TLS error)."""
    c.sock.settimeout(timeout)
    try:
        data = c.sock.recv(65536)
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    return data == b""


# -- --tls=require -----------------------------------------------------------
@check("require: every option but STARTTLS/ABORT before TLS gets ERR_TLS_REQD and no export data")
def _():
    c = connect(args.require)
    for opt, data in [(N.OPT_INFO, c.info_data()), (N.OPT_GO, c.info_data()),
                      (N.OPT_LIST, b""), (N.OPT_STRUCTURED_REPLY, b""),
                      (N.OPT_EXTENDED_HEADERS, b""),
                      (N.OPT_LIST_META_CONTEXT, c.meta_data(b"", [b"base:"])),
                      (N.OPT_SET_META_CONTEXT, c.meta_data(b"", [b"base:allocation"])),
                      (42, b"xyz")]:
        replies = c.option(opt, data)
        assert replies == [(N.REP_ERR_TLS_REQD, replies[0][1])], \
            "option %d: %r" % (opt, replies)
    r = c.option(N.OPT_ABORT)
    assert r[-1][0] == N.REP_ACK
    c.close()


@check("require: EXPORT_NAME before TLS: disconnected, no size or flags sent")
def _():
    c = connect(args.require)
    c.send_option(N.OPT_EXPORT_NAME, b"")
    assert closed_without_data(c)


@check("require: STARTTLS, then GO and READ over TLS (client certificate): data equals the image")
def _():
    c = connect(args.require)
    starttls(c)
    c.structured_reply()
    c.go()
    assert c.size == len(IMAGE)
    for off in (0, 4096, len(IMAGE) // 2 + 512, len(IMAGE) - 65536):
        r = c.read(off, 65536)
        assert r["error"] == 0 and r["data"] == IMAGE[off:off + 65536], off
    c.disc()
    c.close()


@check("require: TLS without a client certificate (--tls-verify-peer): no export data")
def _():
    c = connect(args.require)
    try:
        starttls(c, with_cert=False)
        # TLS 1.3: the server's verdict on the (missing) certificate comes
        # after the client's side of the handshake has finished.
        c.send_option(N.OPT_GO, c.info_data())
    except (ssl.SSLError, OSError):
        return
    assert closed_without_data(c)


# -- --tls=on ----------------------------------------------------------------
@check("on: a client without TLS is served in the clear")
def _():
    c = connect(args.on)
    c.go()
    r = c.read(8192, 4096)
    assert r["data"] == IMAGE[8192:8192 + 4096]
    c.disc()
    c.close()


@check("on: STARTTLS forgets what was negotiated in the clear (structured replies)")
def _():
    c = connect(args.on)
    assert c.structured_reply() == N.REP_ACK
    starttls(c, with_cert=False)
    c.structured = False
    rtype, _ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"])
    assert rtype == N.REP_ERR_INVALID, "SET_META_CONTEXT after STARTTLS: %#x" % rtype
    assert c.structured_reply() == N.REP_ACK, "STRUCTURED_REPLY again"
    c.go()
    r = c.read(0, 100000)
    assert r["data"] == IMAGE[:100000]
    c.disc()
    c.close()


@check("on: a second STARTTLS over TLS gets ERR_INVALID, negotiation goes on")
def _():
    c = connect(args.on)
    starttls(c, with_cert=False)
    r = c.option(N.OPT_STARTTLS)
    assert r[-1][0] == N.REP_ERR_INVALID, "%#x" % r[-1][0]
    c.go()
    assert c.read(0, 512)["data"] == IMAGE[:512]
    c.disc()
    c.close()


@check("on: STARTTLS with option data gets ERR_INVALID, the connection stays in the clear")
def _():
    c = connect(args.on)
    r = c.option(N.OPT_STARTTLS, b"x")
    assert r[-1][0] == N.REP_ERR_INVALID, "%#x" % r[-1][0]
    c.go()
    assert c.read(0, 512)["data"] == IMAGE[:512]
    c.close()


@check("on: bytes sent behind STARTTLS before its reply: disconnected, no ACK")
def _():
    c = connect(args.on)
    c.send(struct.pack(">QII", N.IHAVEOPT, N.OPT_STARTTLS, 0) +
           struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 6) + bytes(6))
    assert closed_without_data(c)


@check("on: EXPORT_NAME over TLS")
def _():
    c = connect(args.on)
    starttls(c, with_cert=False)
    size, _flags = c.export_name(b"")
    assert size == len(IMAGE)
    assert c.read(12345, 999)["data"] == IMAGE[12345:12345 + 999]
    c.disc()
    c.close()


@check("on: READs pipelined over TLS while the client does not read (full socket, 4 rounds of 64): every reply whole and right")
def _():
    c = connect(args.on)
    starttls(c, with_cert=False)
    c.go()
    rnd = random.Random(48)
    seen = 0
    # Each round starts with an empty send queue, so a worker's
    # non-blocking send is the one that finds the socket full.
    for _round in range(4):
        want = {}
        reqs = b""
        for _i in range(64):
            length = rnd.choice([1, 512, 4096, 65536, 262144, 1 << 20])
            off = rnd.randrange(0, len(IMAGE) - length)
            cookie = c.next_cookie()
            want[cookie] = (off, length)
            c.read_lengths[cookie] = length
            reqs += struct.pack(">IHHQQI", N.REQUEST_MAGIC, 0, N.CMD_READ,
                                cookie, off, length)
        c.send(reqs)
        time.sleep(0.5)   # the server fills the socket; its sends would block
        while want:
            r = c.reply()
            off, length = want.pop(r["cookie"])
            assert r["error"] == 0 and r["data"] == IMAGE[off:off + length], \
                "cookie %#x off %d len %d" % (r["cookie"], off, length)
            seen += 1
    assert seen == 256
    assert c.call(N.CMD_FLUSH)["error"] == 0
    c.disc()
    c.close()


# -- --tls=off ---------------------------------------------------------------
@check("off: STARTTLS gets ERR_UNSUP and negotiation goes on")
def _():
    c = connect(args.off)
    r = c.option(N.OPT_STARTTLS)
    assert r[-1][0] == N.REP_ERR_UNSUP, "%#x" % r[-1][0]
    c.go()
    assert c.read(0, 512)["data"] == IMAGE[:512]
    c.close()


# -- the negotiation's deadline under TLS (--handshake-timeout) ----------------
def tls_deadline_client():
    """A connection to the deadline server, over TLS; and when it connected."""
    t0 = time.time()
    c = connect(args.deadline_port)
    starttls(c, with_cert=False)
    return c, t0


def dropped_within(c, t0, what):
    """The server closes c at the deadline (1 s early .. 4 s late)."""
    end = t0 + args.deadline + 6
    c.sock.settimeout(0.5)
    while time.time() < end:
        try:
            data = c.sock.recv(65536)
            if not data:
                break
        except (socket.timeout, TimeoutError):
            continue
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            break
    else:
        raise AssertionError("%s: still open %d s after connecting" % (what, args.deadline + 6))
    took = time.time() - t0
    assert took >= args.deadline - 1, "%s: closed after %.1f s" % (what, took)


if args.deadline_port:
    @check("deadline: STARTTLS acknowledged, then no TLS handshake: closed at the deadline")
    def _():
        t0 = time.time()
        c = connect(args.deadline_port)
        r = c.option(N.OPT_STARTTLS)
        assert r[-1][0] == N.REP_ACK
        dropped_within(c, t0, "a stalled TLS handshake")

    @check("deadline: over TLS, options sent and their replies never read: closed at the deadline")
    def _():
        c, t0 = tls_deadline_client()
        opt = struct.pack(">QII", N.IHAVEOPT, N.OPT_LIST, 0)
        c.sock.settimeout(0.2)
        # Options, and never a reply read, until past the deadline (the
        # server blocks on its replies once the buffers are full) ...
        while time.time() - t0 < args.deadline + 1:
            try:
                c.sock.sendall(opt * 64)
            except (socket.timeout, TimeoutError, ssl.SSLWantWriteError):
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                break
        # ... then the replies: they must end (EOF or reset), the server
        # having hung up; without the deadline it would wait for more options.
        dropped_within(c, t0, "a client not reading its option replies")

    @check("deadline: over TLS, an option trickled a byte every 0.5 s: closed at the deadline")
    def _():
        c, t0 = tls_deadline_client()
        msg = struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 64) + bytes(64)
        try:
            for b in msg:
                c.sock.sendall(bytes([b]))
                time.sleep(0.5)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            pass
        else:
            raise AssertionError("the whole option went through (%.1f s)" % (time.time() - t0))
        took = time.time() - t0
        assert args.deadline - 1 <= took <= args.deadline + 4, "closed after %.1f s" % took

    @check("deadline: a TLS client that negotiates at once is served, and stays idle past it")
    def _():
        c, _ = tls_deadline_client()
        c.go()
        time.sleep(args.deadline + 1)
        assert c.read(0, 512)["data"] == IMAGE[:512]
        c.disc()
        c.close()


sys.exit(1 if failures else 0)
