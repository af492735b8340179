#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-abuse.py - misbehaving NBD clients against running dism-nbd-servers.

Each scenario is one scripted client that breaks the protocol (or the
rules of good behaviour) in one way.  For each one we check what the NBD
spec asks of the server (the right error, or a clean hard disconnect), and
after it that:
  - both server processes are alive,
  - the rw server is back to its baseline of connections, threads and fds
    (nothing leaked),
  - three well-behaved clients connected all along (two on the rw export,
    simple and extended headers; one on the ro export) still get correct
    data, and a fresh client can connect, GO and read,
  - the rw server's peak RSS (VmHWM) stays within --rss-limit.
A few slow clients (slowloris) run in the background on the ro server for
the whole run and are checked at the end.

Prints "PASS name" / "FAIL name" per scenario, diagnostics as "# ...";
the calling .t script turns them into TAP.

usage: nbd-abuse.py --rw SOCK --ro SOCK --ctl SOCK --tcp PORT --image FILE
                    --pid PID --ro-pid PID [--rss-limit MIB] [--max-conns N]
                    [--only SUBSTRING]
The image is 64 MiB, sparse, with data only in [8 MiB, 12 MiB); the rw
server also listens on 127.0.0.1:PORT and has its control socket at --ctl.
"""
import argparse
import os
import random
import select
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdclient as N  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
DATA_OFF, DATA_LEN = 8 * MiB, 4 * MiB      # image data; never written
SCRATCH = 32 * MiB                         # [32, 48) MiB: scenario writes
FRAG = 44 * MiB                            # [44, 48) MiB: fragmented
BYSTANDER_W = 48 * MiB                     # [48, 49) MiB: bystander writes
FN = N.FLAG_FIXED_NEWSTYLE
NZ = N.FLAG_NO_ZEROES
REQ = struct.Struct(">IHHQQI")
EXTREQ = struct.Struct(">IHHQQQ")

A = None            # arguments
SIZE = 0
SNAP = b""          # the data region at the start
failures = 0
peak_hwm = 0
rss_log = []        # (scenario, VmHWM after it)


def report(ok, what, diag=None):
    global failures
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1
    if diag:
        for line in str(diag).rstrip().splitlines():
            print("# " + line, flush=True)


class Fail(AssertionError):
    pass


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


def image_bytes(off, n):
    with open(A.image, "rb") as f:
        f.seek(off)
        return f.read(n)


def data_at(off, n):
    """The expected bytes of the (never written) data region."""
    return SNAP[off - DATA_OFF:off - DATA_OFF + n]


# ---- process facts ----------------------------------------------------------

def proc_status(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, v = line.split(":", 1)
            d[k] = v.strip()
    return d


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def kib(pid, key):
    return int(proc_status(pid)[key].split()[0]) * KiB


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def ctl_connections():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(A.ctl)
    s.sendall(b"STATUS\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    for field in buf.decode().split():
        if field.startswith("connections="):
            return int(field.split("=")[1])
    raise Fail("no connections= in STATUS: %r" % buf)


# ---- clients ----------------------------------------------------------------

def client(path=None, timeout=10):
    """An nbdclient.Client; connect() is retried while the listen backlog
    is full (a non-blocking Unix connect then fails with EAGAIN)."""
    path = path or A.rw
    deadline = time.time() + 10
    while True:
        try:
            return N.Client(path, timeout)
        except BlockingIOError:
            if time.time() > deadline:
                raise
            time.sleep(0.01)


def tcp_client(timeout=10):
    c = N.Client.__new__(N.Client)
    c.sock = socket.create_connection(("127.0.0.1", A.tcp), timeout)
    c.sock.settimeout(timeout)
    c.structured = c.extended = False
    c.size = c.tflags = None
    c.cookie = 0
    c.read_lengths = {}
    return c


def hs(path=None, flags=FN | NZ):
    c = client(path)
    c.handshake(flags)
    return c


def tx(path=None, structured=False, extended=False, meta=False):
    c = hs(path)
    if extended:
        expect(c.extended_headers() == N.REP_ACK, "EXTENDED_HEADERS refused")
    elif structured:
        expect(c.structured_reply() == N.REP_ACK, "STRUCTURED_REPLY refused")
    if meta:
        f, _ = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"])
        expect(f == N.REP_ACK, "SET_META_CONTEXT refused")
    c.go()
    return c


def drain(c, timeout=5):
    """Read until EOF.  Returns (closed, bytes received before EOF)."""
    got = 0
    end = time.time() + timeout
    try:
        while True:
            left = end - time.time()
            if left <= 0:
                return False, got
            c.sock.settimeout(left)
            data = c.sock.recv(1 << 20)
            if not data:
                return True, got
            got += len(data)
    except (ConnectionResetError, BrokenPipeError):
        return True, got
    except socket.timeout:
        return False, got


def expect_dropped(c, silent=True, timeout=5):
    """The server hard-disconnects; with silent, without sending anything."""
    closed, got = drain(c, timeout)
    c.close()
    expect(closed, "the server kept the connection open")
    if silent:
        expect(got == 0, "the server sent %d bytes before closing" % got)


def send_quiet(c, data):
    """Send what the server may refuse to read (it may have closed)."""
    try:
        c.sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def opt_raw(c, opt, data=b""):
    return struct.pack(">QII", N.IHAVEOPT, opt, len(data)) + data


def final(c, opt, data=b""):
    """Send one option; the type of its final reply (all replies checked
    to echo the option)."""
    return c.option(opt, data)[-1][0]


def in_sync(c):
    """The connection still works: one READ of the data region."""
    r = c.read(DATA_OFF + 4096, 4096)
    expect(r["error"] == 0 and r["data"] == data_at(DATA_OFF + 4096, 4096),
           "connection out of sync (error %r)" % r["error"])


def negotiation_goes_on(c):
    """After a refused option the handshake continues: GO, READ, DISC."""
    c.go()
    in_sync(c)
    c.disc()
    c.close()


def err_of(c, cmd, offset=0, length=0, flags=0, payload=b""):
    return c.call(cmd, offset, length, flags, payload)["error"]


def req(cmd, cookie, offset, length, flags=0):
    return REQ.pack(N.REQUEST_MAGIC, flags, cmd, cookie, offset, length)


def push_until_blocked(sock, buf, idle=1.0):
    """Non-blocking sends until the peer stops reading for `idle` s (or
    all is sent).  Returns bytes sent."""
    sock.setblocking(False)
    sent, last = 0, time.time()
    while sent < len(buf):
        try:
            sent += sock.send(buf[sent:sent + 256 * KiB])
            last = time.time()
        except BlockingIOError:
            if time.time() - last > idle:
                break
            select.select([], [sock], [], 0.05)
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


class Reader:
    """Buffered exact reads from a socket (for floods of replies)."""
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def read(self, n):
        while len(self.buf) - self.pos < n:
            if self.pos > (1 << 20):
                del self.buf[:self.pos]
                self.pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise N.Disconnected("EOF")
            self.buf += chunk
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out


# ---- well-behaved clients running all along --------------------------------

class Bystander(threading.Thread):
    def __init__(self, name, path, extended=False, write_region=None):
        super().__init__(daemon=True)
        self.name_ = name
        self.c = tx(path, extended=extended, meta=extended)
        self.c.sock.settimeout(60)
        self.extended = extended
        self.write_region = write_region
        self.ops = 0
        self.errors = []
        self.worst = 0.0
        self.stop = threading.Event()
        self.rng = random.Random(name)

    def op(self, i):
        c = self.c
        off = DATA_OFF + self.rng.randrange(0, DATA_LEN - 64 * KiB, 512)
        r = c.read(off, 64 * KiB)
        if r["error"] or r["data"] != data_at(off, 64 * KiB):
            raise Fail("read at %d: error %r or wrong data" % (off, r["error"]))
        if self.write_region is not None and i % 4 == 0:
            woff = self.write_region + self.rng.randrange(0, 256) * 4096
            data = os.urandom(4096)
            r = c.write(woff, data)
            if r["error"]:
                raise Fail("write at %d: error %r" % (woff, r["error"]))
            r = c.read(woff, 4096)
            if r["error"] or r["data"] != data:
                raise Fail("read back at %d differs" % woff)
        if self.extended and i % 8 == 0:
            r = c.call(N.CMD_BLOCK_STATUS, 0, SIZE)
            if r["error"]:
                raise Fail("block status: error %r" % r["error"])

    def run(self):
        i = 0
        while not self.stop.is_set():
            t = time.time()
            try:
                self.op(i)
            except Exception as e:
                self.errors.append("%s: op %d: %r" % (self.name_, i, e))
                return
            self.worst = max(self.worst, time.time() - t)
            self.ops += 1
            i += 1
            time.sleep(0.01)

    def finish(self):
        self.stop.set()
        self.join(60)
        try:
            self.c.disc()
            self.c.close()
        except OSError:
            pass


BYSTANDERS = []
BASE = {}


def baseline():
    return {"conns": ctl_connections(), "threads": int(proc_status(A.pid)["Threads"]),
            "fds": nfds(A.pid)}


def post_check(name):
    """Problems left behind by a scenario (empty list: none)."""
    global peak_hwm
    problems = []
    for pid, what in ((A.pid, "rw"), (A.ro_pid, "ro")):
        if not alive(pid):
            return ["the %s server process is gone" % what]
    # A new client is served.
    try:
        c = tx()
        in_sync(c)
        c.disc()
        c.close()
    except Exception as e:
        problems.append("fresh client: %r" % e)
    # Nothing leaked: connections, threads and fds back to the baseline.
    deadline = time.time() + 10
    while True:
        now = baseline()
        if now == BASE or time.time() > deadline:
            break
        time.sleep(0.05)
    if now != BASE:
        problems.append("rw server not back to baseline: %r, expected %r" % (now, BASE))
    # The bystanders made progress since, without errors.
    marks = [b.ops for b in BYSTANDERS]
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(b.ops >= m + 2 or b.errors for b, m in zip(BYSTANDERS, marks)):
            break
        time.sleep(0.02)
    for b, m in zip(BYSTANDERS, marks):
        if b.errors:
            problems.append("bystander " + "; ".join(b.errors))
        elif b.ops < m + 2:
            problems.append("bystander %s made no progress for 10 s" % b.name_)
    hwm = kib(A.pid, "VmHWM")
    peak_hwm = max(peak_hwm, hwm)
    rss_log.append((name, hwm))
    if A.rss_limit and hwm > A.rss_limit * MiB:
        problems.append("rw server peak RSS %.1f MiB > %d MiB" % (hwm / MiB, A.rss_limit))
    return problems


# ---- scenario registry ---------------------------------------------------------

SCENARIOS = []


def scenario(name):
    def reg(fn):
        SCENARIOS.append((name, fn))
        return fn
    return reg


def run_scenario(name, fn):
    t0 = time.time()
    err = None
    try:
        fn()
    except Exception:
        err = traceback.format_exc(limit=4)
    problems = post_check(name)
    diag = []
    if err:
        diag.append(err)
    diag.extend(problems)
    took = time.time() - t0
    if took > 3:
        diag.append("%s took %.1f s" % (name, took))
    report(not err and not problems, name, "\n".join(diag) if diag else None)


# =============================================================================
# Handshake phase
# =============================================================================

@scenario("hs: HTTP request instead of client flags: dropped")
def _():
    c = client()
    c.greeting()
    send_quiet(c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect_dropped(c)


@scenario("hs: unknown client flag bit: dropped")
def _():
    expect_dropped(hs(flags=FN | NZ | 4))


@scenario("hs: all 32 client flag bits set: dropped")
def _():
    expect_dropped(hs(flags=0xffffffff))


@scenario("hs: client flags without FIXED_NEWSTYLE: dropped")
def _():
    expect_dropped(hs(flags=0))


@scenario("hs: client flags NO_ZEROES alone: dropped")
def _():
    expect_dropped(hs(flags=NZ))


@scenario("hs: bad IHAVEOPT magic: dropped")
def _():
    c = hs()
    send_quiet(c, struct.pack(">QII", 0x0123456789abcdef, N.OPT_GO, 0))
    expect_dropped(c)


@scenario("hs: oldstyle cliserv magic as option magic: dropped")
def _():
    c = hs()
    send_quiet(c, struct.pack(">QII", 0x00420281861253, N.OPT_LIST, 0))
    expect_dropped(c)


@scenario("hs: option header truncated then EOF: closed, no reply")
def _():
    c = hs()
    c.send(opt_raw(c, N.OPT_LIST)[:10])
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)


@scenario("hs: option data truncated then EOF: closed, no reply")
def _():
    c = hs()
    c.send(struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 100) + bytes(50))
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)


@scenario("hs: option length 4 GiB - 1: dropped without waiting for the data")
def _():
    c = hs()
    t = time.time()
    c.send(struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 0xffffffff))
    expect_dropped(c)
    expect(time.time() - t < 3, "took %.1f s" % (time.time() - t))


@scenario("hs: option length 64 KiB + 1 (past the limit): dropped")
def _():
    c = hs()
    c.send(struct.pack(">QII", N.IHAVEOPT, 4242, 64 * KiB + 1))
    send_quiet(c, bytes(1000))
    expect_dropped(c)


@scenario("hs: unknown option with 64 KiB of data: ERR_UNSUP, negotiation goes on")
def _():
    c = hs()
    r = c.option(4242, os.urandom(64 * KiB))
    expect(len(r) == 1 and r[0][0] == N.REP_ERR_UNSUP, "got %r" % ([x[0] for x in r],))
    negotiation_goes_on(c)


@scenario("hs: unknown option numbers 0, 4, 12..31, 2^31-1, 2^31, 2^32-1: ERR_UNSUP each")
def _():
    c = hs()
    for opt in [0, 4] + list(range(12, 32)) + [0x7fffffff, 0x80000000, 0xffffffff]:
        f = final(c, opt, b"junk" * (opt % 5))
        expect(f == N.REP_ERR_UNSUP, "option %#x: %#x" % (opt, f))
    negotiation_goes_on(c)


@scenario("hs: EXPORT_NAME of a nonexistent export: dropped, nothing sent")
def _():
    c = hs()
    c.send_option(N.OPT_EXPORT_NAME, b"no-such-export")
    expect_dropped(c)


@scenario("hs: EXPORT_NAME with a 5000-byte name: dropped")
def _():
    c = hs()
    c.send_option(N.OPT_EXPORT_NAME, b"x" * 5000)
    expect_dropped(c)


@scenario("hs: EXPORT_NAME with a NUL byte in the name: dropped")
def _():
    c = hs()
    c.send_option(N.OPT_EXPORT_NAME, b"\0")
    expect_dropped(c)


@scenario("hs: GO for a nonexistent export: ERR_UNKNOWN, then GO works")
def _():
    c = hs()
    r = c.info_go(N.OPT_GO, b"nope")
    expect(r["final"] == N.REP_ERR_UNKNOWN, "%#x" % r["final"])
    expect("size" not in r, "INFO sent before the error")
    negotiation_goes_on(c)


@scenario("hs: GO with 30000 garbage info requests: ACK, unknown ones ignored")
def _():
    c = hs()
    rng = random.Random(1)
    infos = [rng.randrange(0, 65536) for _ in range(30000)] + [0xffff, 4, 5]
    r = c.info_go(N.OPT_GO, b"", infos)
    expect(r["final"] == N.REP_ACK, "%#x" % r["final"])
    expect(r["size"] == SIZE, "size %r" % r.get("size"))
    for rtype, rdata in r["replies"][:-1]:
        itype = struct.unpack(">H", rdata[:2])[0]
        expect(rtype == N.REP_INFO and itype <= 3, "reply %#x info %d" % (rtype, itype))
    in_sync(c)
    c.close()


@scenario("hs: GO whose info count exceeds its data: ERR_INVALID")
def _():
    c = hs()
    data = struct.pack(">I", 0) + struct.pack(">H", 10) + struct.pack(">HHH", 0, 1, 3)
    expect(final(c, N.OPT_GO, data) == N.REP_ERR_INVALID, "not ERR_INVALID")
    negotiation_goes_on(c)


@scenario("hs: GO with name length 2^32-1: ERR_INVALID")
def _():
    c = hs()
    expect(final(c, N.OPT_GO, struct.pack(">IH", 0xffffffff, 0) + b"abc")
           == N.REP_ERR_INVALID, "not ERR_INVALID")
    negotiation_goes_on(c)


@scenario("hs: GO and INFO shorter than their fixed part: ERR_INVALID")
def _():
    c = hs()
    for opt in (N.OPT_GO, N.OPT_INFO):
        for data in (b"", b"\0", b"\0\0\0", b"\0\0\0\0\0"):
            expect(final(c, opt, data) == N.REP_ERR_INVALID, "%d %r" % (opt, data))
    negotiation_goes_on(c)


@scenario("hs: INFO with a 4097-byte name (over the spec's 4096): ERR_INVALID")
def _():
    c = hs()
    r = c.info_go(N.OPT_INFO, b"n" * 4097)
    expect(r["final"] == N.REP_ERR_INVALID, "%#x" % r["final"])
    negotiation_goes_on(c)


@scenario("hs: STARTTLS when TLS is not configured: ERR_UNSUP/POLICY, clear GO works")
def _():
    c = hs()
    f = final(c, N.OPT_STARTTLS)
    expect(f in (N.REP_ERR_UNSUP, N.REP_ERR_POLICY), "%#x" % f)
    negotiation_goes_on(c)


@scenario("hs: STARTTLS with data, repeated 100 times: an error each time")
def _():
    c = hs()
    for i in range(100):
        f = final(c, N.OPT_STARTTLS, b"x" * (i % 3))
        expect(f & N.REP_ERR, "STARTTLS %d: %#x" % (i, f))
    negotiation_goes_on(c)


@scenario("hs: 3000 options pipelined before reading replies: all answered in order")
def _():
    c = hs()
    kinds = [(N.OPT_LIST, b""), (N.OPT_INFO, c.info_data()), (99, b"zz"),
             (N.OPT_LIST, b"bad"), (N.OPT_STARTTLS, b"")]
    seq = [kinds[i % len(kinds)] for i in range(3000)]
    done = []

    def sender():
        try:
            c.sock.sendall(b"".join(opt_raw(c, o, d) for o, d in seq))
        except OSError as e:
            done.append(e)
    t = threading.Thread(target=sender)
    t.start()
    for i, (opt, _) in enumerate(seq):
        while True:
            ropt, rtype, _ = c.recv_option_reply()
            expect(ropt == opt, "reply %d for option %d, expected %d" % (i, ropt, opt))
            if rtype == N.REP_ACK or rtype & N.REP_ERR:
                break
        want = {N.OPT_LIST: N.REP_ACK, N.OPT_INFO: N.REP_ACK, 99: N.REP_ERR_UNSUP}
        if i % len(kinds) == 3:
            expect(rtype == N.REP_ERR_INVALID, "LIST with data %d: %#x" % (i, rtype))
        elif opt in want:
            expect(rtype == want[opt], "option %d (#%d): %#x" % (opt, i, rtype))
    t.join()
    expect(not done, done)
    negotiation_goes_on(c)


@scenario("hs: 30000 options pipelined, replies never read, then close")
def _():
    c = hs()
    buf = opt_raw(c, N.OPT_LIST) * 30000
    sent = push_until_blocked(c.sock, buf, idle=0.5)
    expect(sent < len(buf), "the server buffered every reply (no backpressure)")
    c.close()


@scenario("hs: STRUCTURED_REPLY twice: ERR_INVALID the second time")
def _():
    c = hs()
    expect(c.structured_reply() == N.REP_ACK, "first")
    expect(c.structured_reply() == N.REP_ERR_INVALID, "second")
    negotiation_goes_on(c)


@scenario("hs: EXTENDED_HEADERS twice and STRUCTURED_REPLY after it: errors")
def _():
    c = hs()
    expect(c.extended_headers() == N.REP_ACK, "first")
    expect(final(c, N.OPT_EXTENDED_HEADERS) == N.REP_ERR_INVALID, "second")
    f = final(c, N.OPT_STRUCTURED_REPLY)
    expect(f in (N.REP_ERR_EXT_HEADER_REQD, N.REP_ERR_INVALID), "%#x" % f)
    negotiation_goes_on(c)


@scenario("hs: EXPORT_NAME after EXTENDED_HEADERS: dropped")
def _():
    c = hs()
    c.extended_headers()
    c.send_option(N.OPT_EXPORT_NAME, b"")
    expect_dropped(c)


@scenario("hs: SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID")
def _():
    c = hs()
    f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"])
    expect(f == N.REP_ERR_INVALID and not ctx, (f, ctx))
    negotiation_goes_on(c)


@scenario("hs: META_CONTEXT with query count 2^32-1 or a query past the data: ERR_INVALID")
def _():
    c = hs()
    c.structured_reply()
    for opt in (N.OPT_LIST_META_CONTEXT, N.OPT_SET_META_CONTEXT):
        bad = [struct.pack(">II", 0, 0xffffffff),
               struct.pack(">III", 0, 1, 100) + b"base:allocation",
               struct.pack(">II", 0xfffffff0, 0),
               struct.pack(">II", 0, 0) + b"trailing"]
        for data in bad:
            f = final(c, opt, data)
            expect(f == N.REP_ERR_INVALID, "opt %d data %r: %#x" % (opt, data[:12], f))
    negotiation_goes_on(c)


@scenario("hs: SET_META_CONTEXT with 15 garbage 4 KiB queries: ACK, nothing selected")
def _():
    c = hs()
    c.structured_reply()
    qs = [os.urandom(4096).replace(b"\0", b"x") for _ in range(15)]
    f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, qs)
    expect(f == N.REP_ACK and ctx == [], (f, ctx))
    c.go()
    expect(err_of(c, N.CMD_BLOCK_STATUS, 0, 4096) == N.EINVAL,
           "BLOCK_STATUS without a selected context")
    in_sync(c)
    c.close()


@scenario("hs: LIST with data: ERR_INVALID")
def _():
    c = hs()
    expect(final(c, N.OPT_LIST, b"data") == N.REP_ERR_INVALID, "not ERR_INVALID")
    negotiation_goes_on(c)


@scenario("hs: ABORT with data, then more options: ACK, then closed")
def _():
    c = hs()
    c.send(opt_raw(c, N.OPT_ABORT, b"ignored data") + opt_raw(c, N.OPT_LIST))
    ropt, rtype, rdata = c.recv_option_reply()
    expect((ropt, rtype) == (N.OPT_ABORT, N.REP_ACK), (ropt, rtype))
    expect_dropped(c)


@scenario("hs: a READ request instead of an option (request before GO): dropped")
def _():
    c = hs()
    send_quiet(c, req(N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("hs: a READ request after INFO, before GO: dropped")
def _():
    c = hs()
    expect(c.info_go(N.OPT_INFO)["final"] == N.REP_ACK, "INFO")
    send_quiet(c, req(N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("hs: an extended request after EXTENDED_HEADERS, before GO: dropped")
def _():
    c = hs()
    c.extended_headers()
    send_quiet(c, EXTREQ.pack(N.EXT_REQUEST_MAGIC, 0, N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("hs: GO with a READ right behind it in one write: ACK, then the reply")
def _():
    c = hs()
    c.send(opt_raw(c, N.OPT_GO, c.info_data()) + req(N.CMD_READ, 77, DATA_OFF, 4096))
    while True:
        ropt, rtype, rdata = c.recv_option_reply()
        if rtype == N.REP_ACK or rtype & N.REP_ERR:
            break
    expect(rtype == N.REP_ACK, "%#x" % rtype)
    c.read_lengths[77] = 4096
    r = c.reply()
    expect(r["cookie"] == 77 and r["data"] == data_at(DATA_OFF, 4096), "reply")
    c.close()


@scenario("hs: half-close before the client flags: closed")
def _():
    c = client()
    c.sock.shutdown(socket.SHUT_WR)
    closed, got = drain(c)
    c.close()
    expect(closed and got <= 18, "closed %r, %d bytes" % (closed, got))


@scenario("hs: half-close after the client flags: closed")
def _():
    c = hs()
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)


@scenario("hs: half-close in the middle of GO's data: closed, no reply")
def _():
    c = hs()
    c.send(opt_raw(c, N.OPT_GO, c.info_data(b"", (1, 2, 3)))[:-3])
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)


def disconnect_at(stage):
    """Close the socket at one point of the handshake."""
    c = client()
    if stage == "connect":
        c.close()
        return
    if stage == "greeting":
        c.recv_exact(5)
        c.close()
        return
    c.greeting()
    if stage == "flags-partial":
        c.send(struct.pack(">I", FN | NZ)[:2])
        c.close()
        return
    c.send(struct.pack(">I", FN | NZ))
    c.no_zeroes = True
    go = opt_raw(c, N.OPT_GO, c.info_data(b"", (1, 2, 3)))
    if stage == "flags":
        c.close()
        return
    if stage == "option-header-partial":
        c.send(go[:8])
    elif stage == "option-header":
        c.send(go[:16])
    elif stage == "option-data-partial":
        c.send(go[:20])
    elif stage == "option-sent":
        c.send(go)
    elif stage == "reply-partial":
        c.send(go)
        c.recv_option_reply()
    elif stage == "after-go":
        c.go()
    elif stage == "export-name":
        c.send_option(N.OPT_EXPORT_NAME, b"")
    c.close()


for _stage in ("connect", "greeting", "flags-partial", "flags", "option-header-partial",
               "option-header", "option-data-partial", "option-sent", "reply-partial",
               "after-go", "export-name"):
    scenario("hs: client disconnects at stage '%s'" % _stage)(
        lambda s=_stage: disconnect_at(s))


@scenario("hs: TCP reset (SO_LINGER 0) in the middle of an option's data")
def _():
    c = tcp_client()
    c.handshake()
    c.send(struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 5000) + bytes(1000))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


@scenario("hs: 40 clients handshaking and reading at once: all served")
def _():
    errors = []

    def one(i):
        try:
            c = tx(structured=bool(i & 1), extended=bool(i & 2))
            for _ in range(5):
                in_sync(c)
            c.disc()
            c.close()
        except Exception as e:
            errors.append("client %d: %r" % (i, e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    [t.start() for t in ts]
    [t.join(60) for t in ts]
    expect(not errors, errors[:5])


@scenario("hs: 300 connect/close cycles: nothing leaks")
def _():
    for i in range(300):
        s = socket.socket(socket.AF_UNIX)
        s.connect(A.rw)
        if i % 3 == 1:
            s.recv(18)
        elif i % 3 == 2:
            s.send(b"\0\0\0\3")
        s.close()


def open_many(n, then=None):
    """n raw connections at once; returns (greeted, refused) client lists.
    then(c) runs on each greeted one."""
    cs = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(A.rw)          # blocking: waits for room in the backlog
        s.settimeout(10)
        cs.append(s)
    greeted, refused = [], []
    for s in cs:
        c = N.Client.__new__(N.Client)
        c.sock = s
        c.structured = c.extended = False
        c.cookie = 0
        c.read_lengths = {}
        try:
            c.greeting()
            greeted.append(c)
        except N.Disconnected:
            refused.append(c)
    if then:
        for c in greeted:
            then(c)
    return greeted, refused


@scenario("hs: 100 connections at once, past the limit: the excess closed before the greeting")
def _():
    room = A.max_conns - BASE["conns"]
    greeted, refused = open_many(100)
    try:
        expect(len(greeted) == room, "%d greeted, expected %d (limit %d, %d open)"
               % (len(greeted), room, A.max_conns, BASE["conns"]))
        expect(len(refused) == 100 - room, "%d refused" % len(refused))
        # Existing connections are unaffected; the greeted ones work.
        for b in BYSTANDERS:
            expect(not b.errors, b.errors)
        c = greeted[-1]
        c.send(struct.pack(">I", FN | NZ))
        c.no_zeroes = True
        negotiation_goes_on(c)
    finally:
        for c in greeted + refused:
            c.close()


@scenario("hs: every free slot held by a silent client: new ones refused until the "
          "handshake deadline frees the slots, then served")
def _():
    t0 = time.time()
    room = A.max_conns - BASE["conns"]
    greeted, refused = open_many(room)
    try:
        expect(len(greeted) == room and not refused,
               "%d greeted, %d refused, room %d" % (len(greeted), len(refused), room))
        s = socket.socket(socket.AF_UNIX)
        s.connect(A.rw)
        s.settimeout(5)
        expect(s.recv(1) == b"", "a client past the limit was greeted")
        s.close()
        # the silent ones are closed at the deadline, the slots come back
        for c in greeted:
            closed, _ = drain(c, A.handshake_timeout + 5 - (time.time() - t0))
            expect(closed, "a silent client was kept past the deadline")
        took = time.time() - t0
        expect(took >= A.handshake_timeout - 0.5, "dropped early, after %.1f s" % took)
        c = tx()
        in_sync(c)
        c.disc()
        c.close()
        for b in BYSTANDERS:
            expect(not b.errors, b.errors)
    finally:
        for c in greeted + refused:
            c.close()


@scenario("hs: every free connection holds a 64 KiB option (all but its last byte)")
def _():
    def fill(c):
        c.send(struct.pack(">I", FN | NZ))
        c.send(struct.pack(">QII", N.IHAVEOPT, 4242, 64 * KiB) + os.urandom(64 * KiB - 1))
    greeted, refused = open_many(A.max_conns, fill)
    try:
        time.sleep(0.5)
        rss = kib(A.pid, "VmRSS")
        print("# %d connections holding 64 KiB options: RSS %.1f MiB"
              % (len(greeted), rss / MiB), flush=True)
        if A.rss_limit:
            expect(rss <= A.rss_limit * MiB, "RSS %.1f MiB" % (rss / MiB))
        # the options complete: ERR_UNSUP for each
        for c in greeted[:5]:
            c.send(b"\0")
            ropt, rtype, _ = c.recv_option_reply()
            expect((ropt, rtype) == (4242, N.REP_ERR_UNSUP), (ropt, rtype))
    finally:
        for c in greeted + refused:
            c.close()


# =============================================================================
# Transmission phase
# =============================================================================

@scenario("tx: bad request magic: dropped")
def _():
    c = tx()
    send_quiet(c, REQ.pack(0x12345678, 0, N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("tx: reply magic sent as a request: dropped")
def _():
    c = tx()
    send_quiet(c, REQ.pack(N.SIMPLE_REPLY_MAGIC, 0, N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("tx: extended request without EXTENDED_HEADERS: dropped")
def _():
    c = tx(structured=True)
    send_quiet(c, EXTREQ.pack(N.EXT_REQUEST_MAGIC, 0, N.CMD_READ, 1, 0, 512))
    expect_dropped(c)


@scenario("tx: compact request under extended headers: dropped after the good ones")
def _():
    c = tx(extended=True)
    in_sync(c)
    send_quiet(c, req(N.CMD_READ, 5, 0, 512))
    expect_dropped(c)


@scenario("tx: unknown commands 8..15, 42, 255, 65535: EINVAL, connection in sync")
def _():
    for kw in ({}, {"structured": True}, {"extended": True}):
        c = tx(**kw)
        for cmd in list(range(8, 16)) + [42, 255, 65535]:
            e = err_of(c, cmd, 0, 512)
            expect(e == N.EINVAL, "%r cmd %d: %r" % (kw, cmd, e))
        in_sync(c)
        c.close()


@scenario("tx: unknown command flag bits 6..15: EINVAL")
def _():
    c = tx(structured=True)
    for bit in range(6, 16):
        for cmd in (N.CMD_READ, N.CMD_FLUSH, N.CMD_CACHE):
            e = err_of(c, cmd, 0, 0 if cmd == N.CMD_FLUSH else 512, 1 << bit)
            expect(e == N.EINVAL, "cmd %d bit %d: %r" % (cmd, bit, e))
    in_sync(c)
    c.close()


@scenario("tx: flags not negotiated or not valid for the command: EINVAL")
def _():
    c = tx()
    cases = [(N.CMD_READ, N.CMDF_DF, "DF without structured replies"),
             (N.CMD_READ, N.CMDF_PAYLOAD_LEN, "PAYLOAD_LEN without extended headers"),
             (N.CMD_READ, N.CMDF_REQ_ONE, "REQ_ONE on READ"),
             (N.CMD_READ, N.CMDF_NO_HOLE, "NO_HOLE on READ"),
             (N.CMD_TRIM, N.CMDF_FAST_ZERO, "FAST_ZERO on TRIM"),
             (N.CMD_CACHE, N.CMDF_DF, "DF on CACHE")]
    for cmd, flag, what in cases:
        expect(err_of(c, cmd, DATA_OFF, 512, flag) == N.EINVAL, what)
    expect(err_of(c, N.CMD_WRITE, SCRATCH, 512, N.CMDF_FAST_ZERO, bytes(512)) == N.EINVAL,
           "FAST_ZERO on WRITE (payload drained)")
    in_sync(c)
    c.close()


@scenario("tx: READ past the end and with overflowing offsets: EINVAL")
def _():
    c = tx()
    for off, n in ((SIZE, 1), (SIZE - 1, 2), (SIZE + 4096, 512), (2 ** 63, 512),
                   (2 ** 64 - 512, 1024), (2 ** 64 - 1, 1)):
        r = c.read(off, n)
        expect(r["error"] == N.EINVAL and r["data"] == b"", "%d+%d: %r" % (off, n, r["error"]))
    in_sync(c)
    c.close()


@scenario("tx: WRITE past the end: ENOSPC, payload drained, nothing written")
def _():
    c = tx()
    before = image_bytes(SIZE - 4096, 4096)
    for off, n in ((SIZE - 4096, 8192), (SIZE, 512), (2 ** 64 - 4096, 8192)):
        e = err_of(c, N.CMD_WRITE, off, n, 0, os.urandom(n))
        expect(e == N.ENOSPC, "%d+%d: %r" % (off, n, e))
    in_sync(c)
    c.close()
    expect(image_bytes(SIZE - 4096, 4096) == before, "the image's tail changed")


@scenario("tx: TRIM/WRITE_ZEROES/CACHE past the end and 4 GiB long: EINVAL/ENOSPC")
def _():
    c = tx()
    for off, n in ((SIZE - 512, 1024), (0, 0xffffffff)):
        expect(err_of(c, N.CMD_TRIM, off, n) == N.EINVAL, "trim %d+%d" % (off, n))
        expect(err_of(c, N.CMD_CACHE, off, n) == N.EINVAL, "cache %d+%d" % (off, n))
        expect(err_of(c, N.CMD_WRITE_ZEROES, off, n) == N.ENOSPC, "zero %d+%d" % (off, n))
    in_sync(c)
    c.close()


@scenario("tx: length 0 on every command: success (BLOCK_STATUS: EINVAL)")
def _():
    for kw in ({}, {"structured": True, "meta": True}, {"extended": True, "meta": True}):
        c = tx(**kw)
        for cmd in (N.CMD_READ, N.CMD_WRITE, N.CMD_TRIM, N.CMD_WRITE_ZEROES, N.CMD_CACHE,
                    N.CMD_FLUSH):
            r = c.call(cmd, SCRATCH if cmd != N.CMD_FLUSH else 0, 0)
            expect(r["error"] == 0 and r["data"] == b"", "%r cmd %d: %r" % (kw, cmd, r["error"]))
        expect(err_of(c, N.CMD_BLOCK_STATUS, 0, 0) == N.EINVAL, "%r BLOCK_STATUS 0" % kw)
        in_sync(c)
        c.close()


@scenario("tx: READ of 4 GiB - 1 and of 32 MiB + 1: EINVAL, no disconnect")
def _():
    for kw in ({}, {"structured": True}):
        c = tx(**kw)
        for n in (0xffffffff, 32 * MiB + 1):
            r = c.read(0, n)
            expect(r["error"] == N.EINVAL and r["data"] == b"", "%r %d: %r" % (kw, n, r["error"]))
        in_sync(c)
        c.close()


@scenario("tx: WRITE of 4 GiB - 1 without its payload: hard disconnect")
def _():
    c = tx()
    c.send(req(N.CMD_WRITE, 1, 0, 0xffffffff))
    expect_dropped(c)


@scenario("tx: WRITE of 64 MiB + 4 KiB (header only): hard disconnect")
def _():
    c = tx()
    c.send(req(N.CMD_WRITE, 1, 0, 64 * MiB + 4096))
    send_quiet(c, bytes(64 * KiB))
    expect_dropped(c, silent=False)


@scenario("tx: WRITE of 40 MiB with its payload: EINVAL, payload drained, nothing written")
def _():
    c = tx()
    before = image_bytes(16 * MiB, 4096)
    e = err_of(c, N.CMD_WRITE, 16 * MiB, 40 * MiB, 0, b"\xa5" * (40 * MiB))
    expect(e == N.EINVAL, "error %r" % e)
    in_sync(c)
    c.close()
    expect(image_bytes(16 * MiB, 4096) == before, "data written")


@scenario("tx: structured READ errors are ERROR chunks, never simple replies")
def _():
    c = tx(structured=True)
    for off, n, flags in ((SIZE, 512, 0), (0, 32 * MiB + 1, 0), (0, 512, 1 << 9),
                          (SIZE - 1, 2, N.CMDF_DF)):
        r = c.read(off, n, flags)
        expect(r["form"] == "structured" and r["error"] == N.EINVAL and
               r["chunks"][0][1] in (N.RT_ERROR, N.RT_ERROR_OFFSET) and
               r["chunks"][-1][0] & N.REPLY_FLAG_DONE, "%d+%d: %r" % (off, n, r["chunks"][:1]))
    in_sync(c)
    c.close()


def extents(r, ext):
    ch = r["chunks"][0]
    p = ch[3]
    if ext:
        expect(ch[1] == N.RT_BLOCK_STATUS_EXT, "type %d" % ch[1])
        count = struct.unpack(">I", p[4:8])[0]
        e = [struct.unpack(">QQ", p[i:i + 16]) for i in range(8, len(p), 16)]
        expect(count == len(e), "count %d for %d extents" % (count, len(e)))
        return e
    expect(ch[1] == N.RT_BLOCK_STATUS, "type %d" % ch[1])
    return [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]


@scenario("tx: huge BLOCK_STATUS: past the end EINVAL; 2^64-1 EINVAL; whole disk answered")
def _():
    c = tx(structured=True, meta=True)
    expect(err_of(c, N.CMD_BLOCK_STATUS, 0, 0xffffffff) == N.EINVAL, "4 GiB")
    expect(err_of(c, N.CMD_BLOCK_STATUS, SIZE, 1) == N.EINVAL, "at the end")
    for flags in (0, N.CMDF_REQ_ONE):
        r = c.call(N.CMD_BLOCK_STATUS, 0, SIZE, flags)
        e = extents(r, False)
        expect(r["error"] == 0 and 1 <= len(e) <= 1 << 20, "%d extents" % len(e))
        expect(sum(x[0] for x in e) <= SIZE, "extents past the request")
        expect(flags == 0 or len(e) == 1, "REQ_ONE: %d extents" % len(e))
    c.close()
    c = tx(extended=True, meta=True)
    for n in (2 ** 64 - 1, 2 ** 40, SIZE + 1):
        expect(err_of(c, N.CMD_BLOCK_STATUS, 0, n) == N.EINVAL, "ext length %d" % n)
    r = c.call(N.CMD_BLOCK_STATUS, 0, SIZE)
    e = extents(r, True)
    expect(r["error"] == 0 and sum(x[0] for x in e) == SIZE, "ext: %d extents" % len(e))
    c.close()


@scenario("tx: 500 whole-disk BLOCK_STATUS pipelined over a fragmented region: all answered")
def _():
    c = tx(structured=True, meta=True)
    c.sock.settimeout(60)
    hdrs = b"".join(req(N.CMD_BLOCK_STATUS, i, 0, SIZE) for i in range(500))
    t = threading.Thread(target=c.sock.sendall, args=(hdrs,))
    t.start()
    seen = set()
    for _ in range(500):
        r = c.reply()
        expect(r["error"] == 0, "error %r" % r["error"])
        expect(sum(x[0] for x in extents(r, False)) == SIZE, "coverage")
        seen.add(r["cookie"])
    t.join()
    expect(seen == set(range(500)), "cookies")
    in_sync(c)
    c.close()


@scenario("tx: BLOCK_STATUS without a negotiated meta context: EINVAL")
def _():
    for kw in ({}, {"structured": True}, {"extended": True}):
        c = tx(**kw)
        expect(err_of(c, N.CMD_BLOCK_STATUS, 0, 4096) == N.EINVAL, repr(kw))
        in_sync(c)
        c.close()


@scenario("tx: writes on the read-only export: EPERM, payloads drained, image unchanged")
def _():
    before = image_bytes(DATA_OFF, 64 * KiB)
    c = tx(A.ro)
    expect(c.tflags & N.TF_READ_ONLY, "READ_ONLY not advertised")
    cases = [(N.CMD_WRITE, 0, 64 * KiB), (N.CMD_WRITE, N.CMDF_FUA, 4096),
             (N.CMD_WRITE, 0, 32 * MiB), (N.CMD_TRIM, 0, 64 * KiB),
             (N.CMD_WRITE_ZEROES, 0, 64 * KiB), (N.CMD_WRITE_ZEROES, N.CMDF_NO_HOLE, 4096)]
    for cmd, flags, n in cases:
        payload = b"\x5a" * n if cmd == N.CMD_WRITE else b""
        e = err_of(c, cmd, DATA_OFF, n, flags, payload)
        expect(e == N.EPERM, "cmd %d flags %d len %d: %r" % (cmd, flags, n, e))
    e = err_of(c, N.CMD_WRITE_ZEROES, DATA_OFF, 4096, N.CMDF_FAST_ZERO)
    expect(e in (N.EPERM, N.EINVAL), "FAST_ZERO (not advertised): %r" % e)
    in_sync(c)
    c.close()
    expect(image_bytes(DATA_OFF, 64 * KiB) == before, "the image changed")


@scenario("tx: extended: PAYLOAD_LEN on READ/BLOCK_STATUS/CACHE: EINVAL, payload drained")
def _():
    c = tx(extended=True, meta=True)
    for cmd in (N.CMD_READ, N.CMD_BLOCK_STATUS, N.CMD_CACHE, N.CMD_TRIM):
        e = err_of(c, cmd, DATA_OFF, 8192, N.CMDF_PAYLOAD_LEN, os.urandom(8192))
        expect(e == N.EINVAL, "cmd %d: %r" % (cmd, e))
    in_sync(c)
    c.close()


@scenario("tx: extended: WRITE with PAYLOAD_LEN of 2^40: hard disconnect")
def _():
    c = tx(extended=True)
    send_quiet(c, EXTREQ.pack(N.EXT_REQUEST_MAGIC, N.CMDF_PAYLOAD_LEN, N.CMD_WRITE, 1,
                              0, 2 ** 40))
    expect_dropped(c)


@scenario("tx: extended: 64-bit lengths past the end: EINVAL/ENOSPC")
def _():
    c = tx(extended=True)
    for n in (2 ** 33, 2 ** 63, 2 ** 64 - 1):
        expect(err_of(c, N.CMD_READ, 0, n) == N.EINVAL, "read %d" % n)
        expect(err_of(c, N.CMD_TRIM, 0, n) == N.EINVAL, "trim %d" % n)
        expect(err_of(c, N.CMD_WRITE_ZEROES, 0, n) == N.ENOSPC, "zero %d" % n)
        expect(err_of(c, N.CMD_CACHE, 0, n) == N.EINVAL, "cache %d" % n)
    in_sync(c)
    c.close()


@scenario("tx: FLUSH with an offset or a length: EINVAL")
def _():
    c = tx()
    expect(err_of(c, N.CMD_FLUSH, 4096, 0) == N.EINVAL, "offset")
    expect(err_of(c, N.CMD_FLUSH, 0, 4096) == N.EINVAL, "length")
    expect(err_of(c, N.CMD_FLUSH, 0, 0, N.CMDF_FUA) == 0, "FUA on FLUSH is accepted")
    in_sync(c)
    c.close()


@scenario("tx: one cookie reused by 200 pipelined requests: 200 replies")
def _():
    c = tx()
    for _ in range(200):
        c.request(N.CMD_CACHE, DATA_OFF, 4096, cookie=0x42)
    for _ in range(200):
        r = c.reply()
        expect(r["cookie"] == 0x42 and r["error"] == 0, r)
    in_sync(c)
    c.close()


def read_flood(c, n, length, must_block=True):
    """Pipeline n READs of the data region without reading a reply until
    the server stops taking requests; check the memory; then read and
    check every reply while sending the rest.  must_block: the requests
    are more than socket buffers hold, so the server must push back."""
    offs = [DATA_OFF + (i * 4096) % (DATA_LEN - length) for i in range(n)]
    hdrs = b"".join(req(N.CMD_READ, i, offs[i], length) for i in range(n))
    sent = push_until_blocked(c.sock, hdrs)
    expect(sent < len(hdrs) or not must_block,
           "all %d requests taken without a reply read: no backpressure" % n)
    rss = kib(A.pid, "VmRSS")
    if A.rss_limit:
        expect(rss <= A.rss_limit * MiB, "RSS %.1f MiB while blocked" % (rss / MiB))
    c.sock.settimeout(60)
    errors = []

    def rest():
        try:
            c.sock.sendall(hdrs[sent:])
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=rest)
    t.start()
    rd = Reader(c.sock)
    seen = bytearray(n)
    for _ in range(n):
        magic, err, cookie = struct.unpack(">IIQ", rd.read(16))
        expect(magic == N.SIMPLE_REPLY_MAGIC and err == 0 and cookie < n and not seen[cookie],
               "reply %#x %d %d" % (magic, err, cookie))
        seen[cookie] = 1
        expect(rd.read(length) == data_at(offs[cookie], length), "data of %d" % cookie)
    t.join()
    expect(not errors, errors)
    return sent // REQ.size, rss


@scenario("tx: 50000 pipelined 512-byte READs, replies unread: backpressure, then all correct")
def _():
    c = tx()
    taken, rss = read_flood(c, 50000, 512)
    print("# server took %d of 50000 requests before pushing back; RSS %.1f MiB"
          % (taken, rss / MiB), flush=True)
    in_sync(c)
    c.close()


@scenario("tx: 3000 pipelined 64 KiB READs, replies unread: memory bounded, then all correct")
def _():
    c = tx()
    read_flood(c, 3000, 64 * KiB, must_block=False)
    in_sync(c)
    c.close()


@scenario("tx: 20000 pipelined 4 KiB WRITEs, replies unread: backpressure, all applied")
def _():
    # The server stops reading once its unread replies fill the socket's
    # send buffer.  A zero-copy Unix connection asks for 4 MiB (8 MiB after
    # the kernel doubles it); each 16-byte reply takes ~768 bytes of it, so
    # ~11000 replies: 20000 are well past that, at 80 MiB of data in all.
    c = tx()
    n, size = 20000, 4 * KiB
    datas = [os.urandom(size) for _ in range(16)]
    buf = b"".join(req(N.CMD_WRITE, i, SCRATCH + (i % 64) * size, size) + datas[i % 16]
                   for i in range(n))
    sent = push_until_blocked(c.sock, buf)
    expect(sent < len(buf), "every write taken without a reply read")
    c.sock.settimeout(60)
    t = threading.Thread(target=c.sock.sendall, args=(buf[sent:],))
    t.start()
    rd = Reader(c.sock)
    for _ in range(n):
        magic, err, cookie = struct.unpack(">IIQ", rd.read(16))
        expect(magic == N.SIMPLE_REPLY_MAGIC and err == 0, "reply %#x %d" % (magic, err))
    t.join()
    for i in range(n - 64, n):
        off = SCRATCH + (i % 64) * size
        expect(c.read(off, size)["data"] == datas[i % 16], "write %d lost" % i)
    c.close()


@scenario("tx: 60 clients pipelining 1-byte structured READs, replies unread (regression)")
def _():
    # Each queued request once held ~9 KiB outside the budget (job, chunk
    # table, 4 KiB buffer): 60 such clients took the server past 64 MiB.
    cs = [tx(structured=True) for _ in range(60)]
    hdrs = b"".join(req(N.CMD_READ, i, DATA_OFF + i, 1) for i in range(3000))
    ts = [threading.Thread(target=push_until_blocked, args=(c.sock, hdrs, 0.5)) for c in cs]
    [t.start() for t in ts]
    [t.join() for t in ts]
    time.sleep(1)      # let the server take all it will take
    rss = kib(A.pid, "VmRSS")
    print("# 60 non-reading clients: RSS %.1f MiB" % (rss / MiB), flush=True)
    for c in cs:
        c.close()
    if A.rss_limit:
        expect(rss <= A.rss_limit * MiB, "RSS %.1f MiB" % (rss / MiB))


@scenario("tx: clients that stop reading hold the whole budget (regression): others go on")
def _():
    # They once held every byte of the payload budget forever, and every
    # other connection's next request waited for it.
    stuck = [tx(), tx(), tx(), tx()]
    plan = [(1 * MiB, 200), (1 * MiB, 200), (16 * KiB, 2000), (16 * KiB, 2000)]
    for c, (n, k) in zip(stuck, plan):
        push_until_blocked(c.sock, b"".join(req(N.CMD_READ, i, 0, n) for i in range(k)), 0.3)
        time.sleep(0.3)
    c = tx()
    t = time.time()
    r = c.read(DATA_OFF, 64 * KiB)
    took = time.time() - t
    expect(r["error"] == 0 and r["data"] == data_at(DATA_OFF, 64 * KiB), "read")
    print("# a new client's READ waited %.2f s for memory" % took, flush=True)
    expect(took < 5, "a new client's READ waited %.1f s" % took)
    # (the bystanders may have been the ones to reclaim it)
    deadline = time.time() + 5
    while ctl_connections() >= BASE["conns"] + 5 and time.time() < deadline:
        time.sleep(0.05)
    expect(ctl_connections() < BASE["conns"] + 5, "no stuck client was dropped")
    for s in stuck:
        s.close()
    c.close()


@scenario("tx: disconnect in the middle of a 1 MiB WRITE's payload: nothing written")
def _():
    c = tx()
    before = image_bytes(SCRATCH + 16 * MiB - 2 * MiB, MiB)
    c.send(req(N.CMD_WRITE, 1, SCRATCH + 16 * MiB - 2 * MiB, MiB) + b"\xee" * (MiB // 2))
    c.close()
    time.sleep(0.1)
    expect(image_bytes(SCRATCH + 16 * MiB - 2 * MiB, MiB) == before, "partial write applied")


@scenario("tx: TCP reset in the middle of a WRITE's payload: nothing written")
def _():
    c = tcp_client()
    c.handshake()
    c.go()
    off = SCRATCH + 16 * MiB - 3 * MiB
    before = image_bytes(off, MiB)
    c.send(req(N.CMD_WRITE, 1, off, MiB) + b"\xdd" * (300 * KiB))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.1)
    expect(image_bytes(off, MiB) == before, "partial write applied")


@scenario("tx: half-close in the middle of a WRITE's payload: closed, nothing written")
def _():
    c = tx()
    off = SCRATCH + 16 * MiB - 4 * MiB
    before = image_bytes(off, 64 * KiB)
    c.send(req(N.CMD_WRITE, 1, off, 64 * KiB) + b"\xcc" * 1000)
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)
    expect(image_bytes(off, 64 * KiB) == before, "partial write applied")


@scenario("tx: half-close after 100 pipelined READs: all 100 answered, then EOF")
def _():
    c = tx()
    for i in range(100):
        c.request(N.CMD_READ, DATA_OFF + i * 4096, 4096, cookie=i)
    c.sock.shutdown(socket.SHUT_WR)
    seen = set()
    for _ in range(100):
        r = c.reply()
        i = r["cookie"]
        expect(r["error"] == 0 and r["data"] == data_at(DATA_OFF + i * 4096, 4096), "reply %d" % i)
        seen.add(i)
    expect(seen == set(range(100)), "missing replies")
    expect_dropped(c)


@scenario("tx: half-close in the middle of a request header: closed")
def _():
    c = tx()
    c.send(req(N.CMD_READ, 1, 0, 512)[:10])
    c.sock.shutdown(socket.SHUT_WR)
    expect_dropped(c)


@scenario("tx: disconnect with 1000 unread 1 MiB replies in flight")
def _():
    c = tx()
    push_until_blocked(c.sock, b"".join(req(N.CMD_READ, i, DATA_OFF, MiB)
                                        for i in range(1000)), 0.3)
    c.close()


@scenario("tx: DISC with requests in flight: their replies, then the server closes")
def _():
    c = tx(structured=True)
    for i in range(50):
        c.request(N.CMD_READ, DATA_OFF + i * 512, 4096, cookie=i)
    c.request(N.CMD_DISC)
    c.request(N.CMD_READ, DATA_OFF, 4096, cookie=999)   # after DISC: ignored
    seen = set()
    for _ in range(50):
        r = c.reply()
        expect(r["error"] == 0 and r["data"] == data_at(DATA_OFF + r["cookie"] * 512, 4096),
               "reply %r" % r["cookie"])
        seen.add(r["cookie"])
    expect(seen == set(range(50)), "replies %r" % sorted(seen)[:5])
    expect_dropped(c)


@scenario("tx: DISC with an offset, a length and flags: closed, no reply")
def _():
    c = tx()
    c.send(req(N.CMD_DISC, 1, 4096, 512, N.CMDF_FUA))
    expect_dropped(c)


@scenario("tx: garbage behind valid requests: valid ones answered, then dropped")
def _():
    c = tx()
    c.read_lengths.update({1: 512, 2: 512})
    send_quiet(c, req(N.CMD_READ, 1, DATA_OFF, 512) + req(N.CMD_READ, 2, DATA_OFF, 512) +
               os.urandom(100))
    got = sorted(c.reply()["cookie"] for _ in range(2))
    expect(got == [1, 2], got)
    expect_dropped(c)


@scenario("tx: random garbage streams after GO (50 clients): each dropped")
def _():
    rng = random.Random(7)
    for i in range(50):
        c = tx(structured=bool(i & 1))
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(28, 300)))
        if junk[:4] == struct.pack(">I", N.REQUEST_MAGIC):
            junk = b"\0" + junk
        send_quiet(c, junk)
        closed, _ = drain(c, 5)
        c.close()
        expect(closed, "client %d (%d bytes) kept" % (i, len(junk)))


# =============================================================================
# Background: slow clients on the ro server for the whole run
# =============================================================================

class Slow(threading.Thread):
    """A slowloris client: runs in the background, result at the end."""
    def __init__(self, name, fn):
        super().__init__(daemon=True)
        self.name_, self.fn, self.err = name, fn, None

    def run(self):
        try:
            self.fn()
        except Exception:
            self.err = traceback.format_exc(limit=4)


def trickle(c, data, interval):
    for b in data:
        c.sock.sendall(bytes([b]))
        time.sleep(interval)


def trickle_until_dropped(c, data, interval):
    """Send data a byte at a time; the time at which the server turned out
    to have closed the connection (None: it never did)."""
    try:
        for b in data:
            c.sock.sendall(bytes([b]))
            time.sleep(interval)
        c.no_zeroes = True
        c.recv_option_reply()
    except (BrokenPipeError, ConnectionResetError, N.Disconnected):
        return time.time()
    return None


def expect_handshake_deadline(t_connect, t_dropped):
    """Dropped once --handshake-timeout passed (1 s of slack for the trickle)."""
    expect(t_dropped is not None, "a handshake trickling past the deadline was finished")
    took = t_dropped - t_connect
    expect(A.handshake_timeout - 0.5 <= took <= A.handshake_timeout + 3,
           "dropped after %.1f s, deadline %d s" % (took, A.handshake_timeout))


def slow_handshake():
    t0 = time.time()
    c = client(A.ro, timeout=120)
    c.greeting()
    t = trickle_until_dropped(c, struct.pack(">I", FN | NZ) +
                              opt_raw(c, N.OPT_GO, c.info_data()), 1.0)
    c.close()
    expect_handshake_deadline(t0, t)
    # the slot is free again: a client that negotiates at once gets in
    c = tx(A.ro)
    in_sync(c)
    c.close()


def slow_request():
    c = tx(A.ro)
    c.sock.settimeout(120)
    c.read_lengths[5] = 4096
    trickle(c, req(N.CMD_READ, 5, DATA_OFF + 8192, 4096), 1.0)
    r = c.reply()
    expect(r["cookie"] == 5 and r["data"] == data_at(DATA_OFF + 8192, 4096), "reply")
    in_sync(c)
    c.close()


def slow_write_payload():
    c = tx(A.ro)
    c.sock.settimeout(120)
    c.sock.sendall(req(N.CMD_WRITE, 6, DATA_OFF, 2048))
    for i in range(16):
        c.sock.sendall(b"\x77" * 128)
        time.sleep(1.0)
    r = c.reply()
    expect(r["cookie"] == 6 and r["error"] == N.EPERM, r)
    in_sync(c)
    c.close()


def slow_crowd():
    t0 = time.time()
    cs = [client(A.ro, timeout=120) for _ in range(20)]
    for c in cs:
        c.greeting()
    msg = struct.pack(">I", FN | NZ) + opt_raw(cs[0], N.OPT_GO, cs[0].info_data())
    dropped = [None] * len(cs)
    for b in msg:
        for i, c in enumerate(cs):
            if dropped[i] is None:
                try:
                    c.sock.sendall(bytes([b]))
                except (BrokenPipeError, ConnectionResetError):
                    dropped[i] = time.time()
        if all(dropped):
            break
        time.sleep(1.0)
    for i, c in enumerate(cs):
        if dropped[i] is None:
            dropped[i] = trickle_until_dropped(c, b"", 0)
        c.close()
        expect_handshake_deadline(t0, dropped[i])


def idle_after_go():
    """The deadline ends with the negotiation: a client idle after GO for
    longer than it is served as usual."""
    c = tx(A.ro)
    c.sock.settimeout(60)
    time.sleep(A.handshake_timeout + 2)
    in_sync(c)
    c.disc()
    c.close()


SLOW = [("slowloris: handshake at one byte per second (ro server): dropped at the "
         "handshake deadline, then a fresh client gets in", slow_handshake),
        ("slowloris: READ header at one byte per second (ro server)", slow_request),
        ("slowloris: WRITE payload at 128 bytes per second (ro server): EPERM after it",
         slow_write_payload),
        ("slowloris: 20 clients handshaking at one byte per second together (ro server): "
         "all dropped at the deadline", slow_crowd),
        ("a client idle after GO for longer than the handshake deadline is still served "
         "(ro server)", idle_after_go)]


# =============================================================================

def setup_image():
    """A fragmented region for BLOCK_STATUS: 4 KiB of data every 8 KiB."""
    c = tx()
    for i in range(0, 4 * MiB, 8192):
        expect(c.write(FRAG + i, b"\x11" * 4096)["error"] == 0, "setup write")
    expect(err_of(c, N.CMD_FLUSH) == 0, "setup flush")
    c.disc()
    c.close()


def main():
    global A, SIZE, SNAP, BASE
    ap = argparse.ArgumentParser()
    ap.add_argument("--rw", required=True)
    ap.add_argument("--ro", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--tcp", type=int, required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--ro-pid", type=int, required=True)
    ap.add_argument("--rss-limit", type=int, default=64, help="MiB; 0: no check")
    ap.add_argument("--max-conns", type=int, default=64)
    ap.add_argument("--handshake-timeout", type=int, default=10,
                    help="the servers' --handshake-timeout, s")
    ap.add_argument("--only", default="")
    A = ap.parse_args()
    SIZE = os.path.getsize(A.image)
    SNAP = image_bytes(DATA_OFF, DATA_LEN)
    t0 = time.time()

    setup_image()
    BYSTANDERS.extend([Bystander("rw-simple", A.rw, write_region=BYSTANDER_W),
                       Bystander("rw-extended", A.rw, extended=True),
                       Bystander("ro-simple", A.ro)])
    for b in BYSTANDERS:
        b.start()
    slow = [Slow(name, fn) for name, fn in SLOW if A.only in name]
    for s in slow:
        s.start()
    time.sleep(0.2)
    BASE = baseline()
    print("# baseline of the rw server: %r" % BASE, flush=True)

    n = 0
    for name, fn in SCENARIOS:
        if A.only in name:
            run_scenario(name, fn)
            n += 1

    for s in slow:
        s.join(120)
        report(not s.err and not s.is_alive(), s.name_,
               s.err or ("still running" if s.is_alive() else None))
        n += 1

    for b in BYSTANDERS:
        b.finish()
    worst = max(b.worst for b in BYSTANDERS)
    report(all(not b.errors for b in BYSTANDERS) and worst < 5,
           "well-behaved clients: correct data throughout, worst wait %.2f s (%s ops)"
           % (worst, "/".join(str(b.ops) for b in BYSTANDERS)),
           "\n".join(e for b in BYSTANDERS for e in b.errors))
    report(alive(A.pid) and alive(A.ro_pid), "both servers alive at the end")
    top = sorted(rss_log, key=lambda x: -x[1])[:3]
    print("# scenarios: %d; rw server peak RSS (VmHWM) %.1f MiB; highest after: %s"
          % (n, peak_hwm / MiB, "; ".join("%s (%.1f)" % (nm, h / MiB) for nm, h in top)))
    if A.rss_limit:
        report(peak_hwm <= A.rss_limit * MiB, "rw server peak RSS %.1f MiB <= %d MiB"
               % (peak_hwm / MiB, A.rss_limit))
    print("# SUMMARY scenarios=%d peak_rss_mib=%.1f seconds=%.1f"
          % (n, peak_hwm / MiB, time.time() - t0), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
