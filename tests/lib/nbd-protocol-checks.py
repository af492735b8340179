#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-protocol-checks.py - protocol conformance checks against a running
dism-nbd-server, with the raw-socket client (nbdclient.py).

Prints one line per check: "PASS what" or "FAIL what", diagnostics as
"# ..." lines; the calling .t script turns them into TAP.

usage: nbd-protocol-checks.py --rw SOCK --ro SOCK --image FILE --pid PID
                              [--no-rss]
The rw export serves FILE (64 MiB, sparse: data only in [8 MiB, 12 MiB)).
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdclient as N  # noqa: E402

MiB = 1 << 20
failures = 0


def report(ok, what, diag=None):
    global failures
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1
        if diag:
            for line in str(diag).splitlines():
                print("# " + line, flush=True)


def check(what):
    """Decorator: run a check function; exceptions are failures."""
    def wrap(fn):
        try:
            r = fn()
            if r is None or r is True:
                report(True, what)
            else:
                report(False, what, r)
        except Exception:
            report(False, what, traceback.format_exc())
        return fn
    return wrap


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rw", required=True)
    ap.add_argument("--ro", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--no-rss", action="store_true")
    a = ap.parse_args()
    RW, RO, IMAGE = a.rw, a.ro, a.image
    SIZE = os.path.getsize(IMAGE)

    def image_bytes(off, n):
        with open(IMAGE, "rb") as f:
            f.seek(off)
            return f.read(n)

    # A second connection that keeps working while others misbehave.
    bystander = N.connect_go(RW, structured=False)
    bystander_ok = [True]

    def bystander_check():
        try:
            r = bystander.read(8 * MiB, 4096)
            if r["error"] != 0 or r["data"] != image_bytes(8 * MiB, 4096):
                bystander_ok[0] = False
        except Exception:
            bystander_ok[0] = False
        return bystander_ok[0]

    # ---- handshake ------------------------------------------------------
    @check("greeting: fixed newstyle with NO_ZEROES")
    def _():
        c = N.Client(RW)
        flags = c.greeting()
        c.close()
        expect(flags == N.FLAG_FIXED_NEWSTYLE | N.FLAG_NO_ZEROES, "flags %#x" % flags)

    @check("unknown client flag: connection dropped")
    def _():
        c = N.Client(RW)
        c.handshake(client_flags=N.FLAG_FIXED_NEWSTYLE | 0x80)
        expect(c.is_closed_by_peer(), "server kept the connection")
        c.close()

    @check("client without FIXED_NEWSTYLE: connection dropped")
    def _():
        c = N.Client(RW)
        c.handshake(client_flags=0)
        expect(c.is_closed_by_peer(), "server kept the connection")
        c.close()

    @check("bad option magic: connection dropped")
    def _():
        c = N.Client(RW)
        c.handshake()
        c.send(struct.pack(">QII", 0x1234567812345678, N.OPT_GO, 0))
        expect(c.is_closed_by_peer(), "server kept the connection")
        c.close()

    @check("option longer than 64 KiB: connection dropped")
    def _():
        c = N.Client(RW)
        c.handshake()
        c.send(struct.pack(">QII", N.IHAVEOPT, 999, 65 * 1024))
        expect(c.is_closed_by_peer(), "server kept the connection")
        c.close()

    @check("unknown option: ERR_UNSUP after its data, then GO works")
    def _():
        c = N.Client(RW)
        c.handshake()
        r = c.option(4242, b"x" * 1000)
        expect(r == [(N.REP_ERR_UNSUP, r[0][1])], "got %r" % (r,))
        r = c.option(N.OPT_PEEK, b"")
        expect(r[-1][0] == N.REP_ERR_UNSUP, "PEEK_EXPORT: %#x" % r[-1][0])
        c.go()
        expect(c.size == SIZE, "size %r" % c.size)
        r = c.read(0, 512)
        expect(r["error"] == 0 and r["form"] == "simple", r)
        c.disc()
        c.close()

    @check("STARTTLS refused with ERR_UNSUP/ERR_POLICY, negotiation continues")
    def _():
        c = N.Client(RW)
        c.handshake()
        r = c.option(N.OPT_STARTTLS)
        expect(r[-1][0] in (N.REP_ERR_UNSUP, N.REP_ERR_POLICY), "%#x" % r[-1][0])
        c.go()
        c.close()

    @check("LIST with data: ERR_INVALID; LIST: one export then ACK")
    def _():
        c = N.Client(RW)
        c.handshake()
        r = c.option(N.OPT_LIST, b"junk")
        expect(r[-1][0] == N.REP_ERR_INVALID, r)
        r = c.option(N.OPT_LIST)
        expect(len(r) == 2 and r[0][0] == N.REP_SERVER and r[1][0] == N.REP_ACK, r)
        nlen = struct.unpack(">I", r[0][1][:4])[0]
        expect(r[0][1][4:4 + nlen] == b"", "name %r" % r[0][1][4:4 + nlen])
        c.close()

    @check("INFO: unknown export ERR_UNKNOWN; truncated ERR_INVALID; INFO then GO agree")
    def _():
        c = N.Client(RW)
        c.handshake()
        r = c.info_go(N.OPT_INFO, b"nosuch")
        expect(r["final"] == N.REP_ERR_UNKNOWN, r)
        r = c.option(N.OPT_INFO, struct.pack(">I", 100) + b"ab")
        expect(r[-1][0] == N.REP_ERR_INVALID, r)
        r = c.option(N.OPT_GO, c.info_data(b"", (1, 2, 3)) + b"extra")
        expect(r[-1][0] == N.REP_ERR_INVALID, r)
        i = c.info_go(N.OPT_INFO, b"", (N.INFO_NAME, N.INFO_BLOCK_SIZE, 77))
        g = c.go(b"", (N.INFO_NAME, N.INFO_BLOCK_SIZE, 77))
        expect(i["final"] == N.REP_ACK, i)
        expect((i["size"], i["flags"]) == (g["size"], g["flags"]), (i, g))
        expect(g["block_size"] == (1, 4096, 32 * MiB), g["block_size"])
        expect(g[N.INFO_NAME] == b"", g)
        c.close()

    @check("advertised flags: honest for rw and ro, DF only with structured replies")
    def _():
        c = N.Client(RW)
        c.handshake()
        plain = c.info_go(N.OPT_INFO)["flags"]
        c.structured_reply()
        structured = c.info_go(N.OPT_INFO)["flags"]
        c.close()
        want = (N.TF_HAS_FLAGS | N.TF_SEND_FLUSH | N.TF_SEND_FUA | N.TF_SEND_TRIM |
                N.TF_SEND_WRITE_ZEROES | N.TF_SEND_FAST_ZERO | N.TF_CAN_MULTI_CONN |
                N.TF_SEND_CACHE)
        expect(plain == want, "plain %#x want %#x" % (plain, want))
        expect(structured == want | N.TF_SEND_DF, "structured %#x" % structured)
        c = N.Client(RO)
        c.handshake()
        ro = c.info_go(N.OPT_INFO)["flags"]
        c.close()
        expect(ro & N.TF_READ_ONLY, "ro %#x" % ro)
        expect(not ro & (N.TF_SEND_TRIM | N.TF_SEND_WRITE_ZEROES | N.TF_SEND_FAST_ZERO),
               "ro export advertises write commands: %#x" % ro)

    @check("repeated STRUCTURED_REPLY: ERR_INVALID; meta context before it: ERR_INVALID")
    def _():
        c = N.Client(RW)
        c.handshake()
        final, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"])
        expect(final == N.REP_ERR_INVALID and not ctx, (final, ctx))
        expect(c.structured_reply() == N.REP_ACK, "first")
        expect(c.structured_reply() == N.REP_ERR_INVALID, "second")
        c.close()

    @check("LIST/SET_META_CONTEXT: base:allocation, base: listing, unknown ignored")
    def _():
        c = N.Client(RW)
        c.handshake()
        c.structured_reply()
        f, ctx = c.meta_context(N.OPT_LIST_META_CONTEXT, [])
        expect(f == N.REP_ACK and [n for _, n in ctx] == [b"base:allocation"], ctx)
        f, ctx = c.meta_context(N.OPT_LIST_META_CONTEXT, [b"base:"])
        expect(f == N.REP_ACK and [n for _, n in ctx] == [b"base:allocation"], ctx)
        f, ctx = c.meta_context(N.OPT_LIST_META_CONTEXT, [b"qemu:dirty-bitmap:x"])
        expect(f == N.REP_ACK and ctx == [], ctx)
        f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:", b"x-foo:bar"])
        expect(f == N.REP_ACK and ctx == [], "base: must be ignored by SET: %r" % ctx)
        f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"], b"nosuch")
        expect(f == N.REP_ERR_UNKNOWN, f)
        f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT,
                                [b"base:allocation", b"base:allocation"])
        expect(f == N.REP_ACK and len(ctx) == 1 and ctx[0][0] != 0, ctx)
        c.go()
        r = c.call(N.CMD_BLOCK_STATUS, 0, 4096)
        expect(r["error"] == 0, r)
        c.close()

    @check("EXPORT_NAME with NO_ZEROES: 10-byte reply, then simple replies")
    def _():
        c = N.Client(RW)
        c.handshake()
        size, flags = c.export_name(b"")
        expect(size == SIZE and flags & N.TF_HAS_FLAGS, (size, flags))
        expect(not flags & N.TF_SEND_DF, "DF without structured replies")
        r = c.read(8 * MiB, 8192)
        expect(r["form"] == "simple" and r["data"] == image_bytes(8 * MiB, 8192), "read")
        c.disc()
        expect(c.is_closed_by_peer(), "DISC did not close")
        c.close()

    @check("EXPORT_NAME without NO_ZEROES: 134-byte reply with zero padding")
    def _():
        c = N.Client(RW)
        c.handshake(client_flags=N.FLAG_FIXED_NEWSTYLE)
        c.export_name(b"")
        r = c.read(0, 512)
        expect(r["error"] == 0 and r["data"] == bytes(512), r["error"])
        c.close()

    @check("EXPORT_NAME of an unknown export: connection dropped")
    def _():
        c = N.Client(RW)
        c.handshake()
        c.send_option(N.OPT_EXPORT_NAME, b"nosuch")
        expect(c.is_closed_by_peer(), "kept")
        c.close()

    @check("ABORT: ACK then the server closes")
    def _():
        c = N.Client(RW)
        c.handshake()
        r = c.option(N.OPT_ABORT)
        expect(r == [(N.REP_ACK, b"")], r)
        expect(c.is_closed_by_peer(), "kept")
        c.close()

    # ---- transmission, kernel style (no negotiation) -------------------
    k = N.connect_go(RW, structured=False)

    @check("kernel path: GO without structured replies, simple READ/WRITE/FLUSH")
    def _():
        data = os.urandom(65536)
        r = k.write(1 * MiB, data)
        expect(r["form"] == "simple" and r["error"] == 0, r)
        r = k.call(N.CMD_FLUSH)
        expect(r["form"] == "simple" and r["error"] == 0, r)
        r = k.read(1 * MiB, 65536)
        expect(r["data"] == data, "read back differs")
        expect(image_bytes(1 * MiB, 65536) == data, "file differs after flush")
        r = k.call(N.CMD_WRITE, 1 * MiB, 4096, N.CMDF_FUA, bytes(4096))
        expect(r["error"] == 0, r)

    @check("cookie echoed byte for byte")
    def _():
        cookie = 0xdeadbeefcafef00d
        k.request(N.CMD_READ, 0, 16, cookie=cookie)
        r = k.reply()
        expect(r["cookie"] == cookie, "%#x" % r["cookie"])

    @check("READ past the end: EINVAL")
    def _():
        r = k.read(SIZE - 512, 1024)
        expect(r["error"] == N.EINVAL and r["data"] == b"", r)
        r = k.read(SIZE + 4096, 1)
        expect(r["error"] == N.EINVAL, r)
        r = k.read(2 ** 64 - 512, 1024)
        expect(r["error"] == N.EINVAL, "offset overflow: %r" % r["error"])

    @check("WRITE past the end: ENOSPC, payload drained, next request works")
    def _():
        r = k.write(SIZE - 4096, os.urandom(8192))
        expect(r["error"] == N.ENOSPC, r)
        r = k.read(8 * MiB, 4096)
        expect(r["error"] == 0 and r["data"] == image_bytes(8 * MiB, 4096), "out of sync")

    @check("WRITE_ZEROES past the end: ENOSPC; TRIM/CACHE past the end: EINVAL")
    def _():
        expect(k.call(N.CMD_WRITE_ZEROES, SIZE - 512, 1024)["error"] == N.ENOSPC, "zero")
        expect(k.call(N.CMD_TRIM, SIZE - 512, 1024)["error"] == N.EINVAL, "trim")
        expect(k.call(N.CMD_CACHE, SIZE - 512, 1024)["error"] == N.EINVAL, "cache")

    @check("unknown command: EINVAL")
    def _():
        expect(k.call(42, 0, 512)["error"] == N.EINVAL, "42")
        expect(k.call(8, SIZE, 0)["error"] == N.EINVAL, "RESIZE (not supported)")

    @check("unknown flag / flag invalid for the command: EINVAL")
    def _():
        expect(k.call(N.CMD_READ, 0, 512, 1 << 9)["error"] == N.EINVAL, "bit 9")
        expect(k.call(N.CMD_READ, 0, 512, N.CMDF_NO_HOLE)["error"] == N.EINVAL, "NO_HOLE on READ")
        expect(k.call(N.CMD_READ, 0, 512, N.CMDF_DF)["error"] == N.EINVAL,
               "DF without structured replies")
        expect(k.call(N.CMD_TRIM, 0, 512, N.CMDF_FAST_ZERO)["error"] == N.EINVAL, "FAST_ZERO on TRIM")
        expect(k.call(N.CMD_WRITE, 0, 512, N.CMDF_REQ_ONE, bytes(512))["error"] == N.EINVAL,
               "REQ_ONE on WRITE (payload drained)")
        expect(k.call(N.CMD_WRITE, 0, 512, N.CMDF_PAYLOAD_LEN, bytes(512))["error"] == N.EINVAL,
               "PAYLOAD_LEN without extended headers")
        expect(k.call(N.CMD_READ, 0, 512, N.CMDF_FUA)["error"] == 0, "FUA is accepted on READ")
        r = k.read(8 * MiB, 512)
        expect(r["data"] == image_bytes(8 * MiB, 512), "out of sync")

    @check("FLUSH with offset/length: EINVAL")
    def _():
        expect(k.call(N.CMD_FLUSH, 4096, 0)["error"] == N.EINVAL, "offset")
        expect(k.call(N.CMD_FLUSH, 0, 4096)["error"] == N.EINVAL, "length")

    @check("length 0: READ/WRITE/TRIM/ZERO/CACHE succeed without disconnect")
    def _():
        for cmd in (N.CMD_READ, N.CMD_WRITE, N.CMD_TRIM, N.CMD_WRITE_ZEROES, N.CMD_CACHE):
            r = k.call(cmd, 4096, 0)
            expect(r["error"] == 0 and r["data"] == b"", (cmd, r))

    @check("BLOCK_STATUS without a meta context: EINVAL")
    def _():
        expect(k.call(N.CMD_BLOCK_STATUS, 0, 4096)["error"] == N.EINVAL, "bs")

    @check("READ of 32 MiB accepted, READ of 32 MiB + 1 refused with EINVAL")
    def _():
        r = k.read(0, 32 * MiB)
        expect(r["error"] == 0 and len(r["data"]) == 32 * MiB, r["error"])
        expect(r["data"] == image_bytes(0, 32 * MiB), "data")
        r = k.read(0, 32 * MiB + 1)
        expect(r["error"] == N.EINVAL and r["data"] == b"", r["error"])

    @check("WRITE of 32 MiB accepted; 32 MiB + 4 KiB refused (EINVAL) and drained")
    def _():
        data = os.urandom(32 * MiB)
        r = k.write(16 * MiB, data)
        expect(r["error"] == 0, r)
        expect(k.call(N.CMD_FLUSH)["error"] == 0, "flush")
        expect(image_bytes(16 * MiB, 32 * MiB) == data, "file")
        r = k.write(0, os.urandom(32 * MiB + 4096))
        expect(r["error"] == N.EINVAL, r)
        r = k.read(16 * MiB, 4096)
        expect(r["data"] == data[:4096], "out of sync after drain")
        # restore the sparse layout for the hole checks below
        expect(k.call(N.CMD_TRIM, 16 * MiB, 32 * MiB)["error"] == 0, "trim")
        expect(k.call(N.CMD_TRIM, 1 * MiB, 64 * 1024)["error"] == 0, "trim")

    @check("WRITE larger than 64 MiB: hard disconnect")
    def _():
        c = N.connect_go(RW, structured=False)
        c.request(N.CMD_WRITE, 0, 0xffffff00, send_payload=False)
        expect(c.is_closed_by_peer(), "kept")
        c.close()

    @check("bad request magic: hard disconnect")
    def _():
        c = N.connect_go(RW, structured=False)
        c.send(struct.pack(">IHHQQI", 0x12345678, 0, 0, 1, 0, 512))
        expect(c.is_closed_by_peer(), "kept")
        c.close()

    @check("DISC: requests in flight finish and are answered, then the server closes")
    def _():
        c = N.connect_go(RW, structured=False)
        data = os.urandom(1 * MiB)
        cookie = c.request(N.CMD_WRITE, 2 * MiB, len(data), 0, data)
        c.request(N.CMD_DISC)
        r = c.reply()
        expect(r["cookie"] == cookie and r["error"] == 0, r)
        expect(c.is_closed_by_peer(), "kept")
        c.close()
        r = k.read(2 * MiB, len(data))
        expect(r["data"] == data, "write before DISC lost")
        expect(k.call(N.CMD_TRIM, 2 * MiB, len(data))["error"] == 0, "trim")

    # ---- read-only export ----------------------------------------------
    @check("read-only export: WRITE/TRIM/WRITE_ZEROES get EPERM, payload drained")
    def _():
        c = N.connect_go(RO, structured=False)
        expect(c.tflags & N.TF_READ_ONLY, "flags %#x" % c.tflags)
        expect(c.write(0, os.urandom(65536))["error"] == N.EPERM, "write")
        expect(c.call(N.CMD_TRIM, 0, 4096)["error"] == N.EPERM, "trim")
        expect(c.call(N.CMD_WRITE_ZEROES, 0, 4096)["error"] == N.EPERM, "zero")
        r = c.read(8 * MiB, 4096)
        expect(r["error"] == 0 and r["data"] == image_bytes(8 * MiB, 4096), "out of sync")
        expect(c.call(N.CMD_FLUSH)["error"] == 0, "flush on ro")
        c.close()

    # ---- structured replies --------------------------------------------
    s = N.connect_go(RW, structured=True, meta=True)

    @check("structured READ: data and hole chunks cover the range exactly")
    def _():
        off, n = 6 * MiB, 8 * MiB      # hole [6,8), data [8,12), hole [12,14)
        r = s.read(off, n)
        expect(r["error"] == 0, r["error"])
        types = [c[1] for c in r["chunks"]]
        expect(N.RT_OFFSET_HOLE in types and N.RT_OFFSET_DATA in types, types)
        expect(all(not c[0] & N.REPLY_FLAG_DONE for c in r["chunks"][:-1]) and
               r["chunks"][-1][0] & N.REPLY_FLAG_DONE, "DONE only on the last chunk")
        pos = off
        for o, piece in r["pieces"]:
            expect(o == pos, "gap/overlap at %d (expected %d)" % (o, pos))
            pos += len(piece)
        expect(pos == off + n, "covers up to %d" % pos)
        expect(r["data"] == image_bytes(off, n), "data")

    @check("structured READ with DF: one data chunk")
    def _():
        r = s.read(6 * MiB, 4 * MiB, N.CMDF_DF)
        expect(len(r["chunks"]) == 1 and r["chunks"][0][1] == N.RT_OFFSET_DATA, r["chunks"][:1])
        expect(r["data"] == image_bytes(6 * MiB, 4 * MiB), "data")

    @check("structured READ errors come as ERROR chunks (past end, > 32 MiB, length 0 ok)")
    def _():
        r = s.read(SIZE, 512)
        expect(r["form"] == "structured" and r["error"] == N.EINVAL and
               r["chunks"][0][1] == N.RT_ERROR, r["chunks"])
        r = s.read(0, 32 * MiB + 1)
        expect(r["error"] == N.EINVAL, r["error"])
        r = s.read(0, 0)
        expect(r["error"] == 0 and r["chunks"][0][1] == N.RT_NONE, r["chunks"])
        expect(s.call(N.CMD_FLUSH)["error"] == 0, "flush")

    @check("BLOCK_STATUS: extents of the sparse file, REQ_ONE, past end EINVAL")
    def _():
        r = s.call(N.CMD_BLOCK_STATUS, 0, SIZE)
        expect(r["error"] == 0 and r["chunks"][0][1] == N.RT_BLOCK_STATUS, r)
        p = r["chunks"][0][3]
        ext = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
        expect(ext == [(8 * MiB, 3), (4 * MiB, 0), (SIZE - 12 * MiB, 3)], ext)
        r = s.call(N.CMD_BLOCK_STATUS, 4 * MiB, SIZE - 4 * MiB, N.CMDF_REQ_ONE)
        p = r["chunks"][0][3]
        expect(len(p) == 12 and struct.unpack(">II", p[4:]) == (4 * MiB, 3), p)
        expect(s.call(N.CMD_BLOCK_STATUS, 0, SIZE + 1)["error"] == N.EINVAL, "past end")
        expect(s.call(N.CMD_BLOCK_STATUS, 0, 0)["error"] == N.EINVAL, "length 0")

    @check("WRITE_ZEROES with FAST_ZERO and NO_HOLE succeed and read back as zero")
    def _():
        expect(s.write(9 * MiB, os.urandom(8192))["error"] == 0, "write")
        r = s.call(N.CMD_WRITE_ZEROES, 9 * MiB, 4096, N.CMDF_FAST_ZERO)
        expect(r["error"] in (0, N.ENOTSUP), r["error"])
        r = s.call(N.CMD_WRITE_ZEROES, 9 * MiB, 8192, N.CMDF_NO_HOLE)
        expect(r["error"] == 0, r["error"])
        expect(s.read(9 * MiB, 8192)["data"] == bytes(8192), "not zero")
        data = image_bytes(9 * MiB + 16384, 4096)  # untouched neighbour
        expect(s.read(9 * MiB + 16384, 4096)["data"] == data, "neighbour")
        s.write(9 * MiB, os.urandom(8192))

    # ---- extended headers ------------------------------------------------
    @check("extended headers: 32-byte replies echo the offset; BLOCK_STATUS_EXT")
    def _():
        c = N.Client(RW)
        c.handshake()
        expect(c.extended_headers() == N.REP_ACK, "ext")
        expect(c.extended_headers() == N.REP_ERR_INVALID, "repeated ext")
        expect(c.structured_reply() != N.REP_ACK, "structured after ext")
        f, ctx = c.meta_context(N.OPT_SET_META_CONTEXT, [b"base:allocation"])
        expect(f == N.REP_ACK and len(ctx) == 1, ctx)
        c.go()
        r = c.read(7 * MiB, 2 * MiB)
        expect(r["form"] == "extended" and r["error"] == 0, r["error"])
        expect(all(ch[2] == 7 * MiB for ch in r["chunks"]), [ch[2] for ch in r["chunks"]])
        expect(r["data"] == image_bytes(7 * MiB, 2 * MiB), "data")
        r = c.call(N.CMD_FLUSH)
        expect(r["chunks"][0][1] == N.RT_NONE and r["chunks"][0][0] & 1, r["chunks"])
        newdata = os.urandom(4096)
        r = c.call(N.CMD_WRITE, 8 * MiB, 4096, N.CMDF_PAYLOAD_LEN, newdata)
        expect(r["error"] == 0 and r["chunks"][0][2] == 8 * MiB, r)
        r = c.call(N.CMD_WRITE, SIZE, 4096, 0, bytes(4096))
        expect(r["error"] == N.ENOSPC and r["chunks"][0][1] == N.RT_ERROR and
               r["chunks"][0][2] == SIZE, r)
        r = c.call(N.CMD_BLOCK_STATUS, 0, SIZE)
        ch = r["chunks"][0]
        expect(ch[1] == N.RT_BLOCK_STATUS_EXT and ch[2] == 0, ch[:3])
        ctx_id, count = struct.unpack(">II", ch[3][:8])
        ext = [struct.unpack(">QQ", ch[3][i:i + 16]) for i in range(8, len(ch[3]), 16)]
        expect(count == len(ext) and ext[0] == (8 * MiB, 3) and
               sum(e[0] for e in ext) == SIZE, (count, ext))
        # 64-bit effect length on TRIM past the end, and a payload on READ
        expect(c.call(N.CMD_TRIM, 0, 2 ** 40)["error"] == N.EINVAL, "64-bit trim")
        r = c.call(N.CMD_CACHE, 0, 512, N.CMDF_PAYLOAD_LEN, bytes(512))
        expect(r["error"] == N.EINVAL, "payload on CACHE")
        expect(c.read(8 * MiB, 512)["data"] == image_bytes(8 * MiB, 512), "in sync")
        c.request(N.CMD_READ, 0, 512)      # compact magic is now a violation
        c.sock.sendall(struct.pack(">IHHQQI", N.REQUEST_MAGIC, 0, 0, 9, 0, 512))
        c.reply()
        expect(c.is_closed_by_peer(), "compact request accepted under extended headers")
        c.close()

    # ---- robustness ----------------------------------------------------
    @check("garbage and mid-request disconnects do not disturb another connection")
    def _():
        for i in range(20):
            c = N.Client(RW)
            if i % 4 == 0:
                c.send(os.urandom(200))
            elif i % 4 == 1:
                c.handshake()
                c.send(os.urandom(100))
            elif i % 4 == 2:
                c.close()
                c = N.connect_go(RW, structured=bool(i & 8))
                c.request(N.CMD_WRITE, 0, 1 * MiB, payload=os.urandom(4000),
                          send_payload=True)   # payload cut short
            else:
                c.close()
                c = N.connect_go(RW, structured=False)
                for _ in range(8):
                    c.request(N.CMD_READ, 0, 4 * MiB)   # replies never read
            c.close()
            expect(bystander_check(), "bystander failed at round %d" % i)
        time.sleep(0.2)
        expect(bystander_check(), "bystander failed at the end")

    @check("the server process survived everything so far")
    def _():
        os.kill(a.pid, 0)

    if not a.no_rss:
        @check("pipelined flood of 32 MiB writes and reads: peak RSS stays <= 64 MiB")
        def _():
            c = N.connect_go(RW, structured=False)
            data = os.urandom(32 * MiB)
            n = 12
            peak = [0]
            errors = []

            def sender():
                try:
                    for i in range(n):
                        c.request(N.CMD_WRITE, (i % 2) * 32 * MiB, len(data), 0, data)
                    for i in range(n):
                        c.request(N.CMD_READ, (i % 2) * 32 * MiB, 32 * MiB)
                except Exception as e:
                    errors.append(e)
            t = threading.Thread(target=sender)
            t.start()
            time.sleep(1.0)   # let the server fill up before we read anything
            for i in range(2 * n):
                r = c.reply()
                if r["error"]:
                    errors.append(r["error"])
            t.join()
            with open("/proc/%d/status" % a.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak[0] = int(line.split()[1]) * 1024
            c.close()
            expect(not errors, errors)
            expect(0 < peak[0] <= 64 * MiB, "peak RSS %.1f MiB" % (peak[0] / MiB))
            print("# peak RSS %.1f MiB" % (peak[0] / MiB))

    @check("bystander connection still works at the end")
    def _():
        expect(bystander_check(), "failed")
        bystander.disc()

    k.close()
    s.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
