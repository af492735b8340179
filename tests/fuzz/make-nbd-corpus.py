#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make-nbd-corpus.py - write the seed corpora for fuzz-nbd (the bytes a
client sends in a few valid sessions) and, with a second directory, for
fuzz-nbd-transmission (requests only, after a mode byte that picks the
export), recorded from tests/lib/nbdclient.py.  (The client's bytes do not
depend on the server's replies: cookies are ours, so recording needs no
server.)

usage: make-nbd-corpus.py OUTDIR [TRANSMISSION_OUTDIR]"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import nbdclient as N  # noqa: E402


class Recorder:
    def __init__(self):
        self.data = bytearray()

    def sendall(self, b):
        self.data += b


def session(extended=False, structured=False):
    c = N.Client.__new__(N.Client)
    c.sock = Recorder()
    c.structured = c.extended = False
    c.cookie = 0
    c.read_lengths = {}
    c.send(struct.pack(">I", N.FLAG_FIXED_NEWSTYLE | N.FLAG_NO_ZEROES))
    c.no_zeroes = True
    if extended:
        c.send_option(N.OPT_EXTENDED_HEADERS)
    elif structured:
        c.send_option(N.OPT_STRUCTURED_REPLY)
    if extended or structured:
        c.send_option(N.OPT_SET_META_CONTEXT, c.meta_data(b"", [b"base:allocation"]))
    c.send_option(N.OPT_GO, c.info_data(b"", (N.INFO_NAME, N.INFO_BLOCK_SIZE)))
    c.extended = extended
    c.structured = structured or extended
    return c


def requests(c):
    c.request(N.CMD_WRITE, 4096, 512, N.CMDF_FUA, payload=bytes(range(256)) * 2)
    c.request(N.CMD_READ, 0, 131072)
    c.request(N.CMD_READ, 65536, 4096, N.CMDF_DF if c.structured else 0)
    c.request(N.CMD_TRIM, 8192, 4096)
    c.request(N.CMD_WRITE_ZEROES, 16384, 4096, N.CMDF_NO_HOLE)
    c.request(N.CMD_WRITE_ZEROES, 20480, 4096, N.CMDF_FAST_ZERO)
    c.request(N.CMD_CACHE, 0, 65536)
    c.request(N.CMD_FLUSH)
    if c.structured:
        c.request(N.CMD_BLOCK_STATUS, 0, 1 << 20)
        c.request(N.CMD_BLOCK_STATUS, 0, 1 << 20, N.CMDF_REQ_ONE)
    c.request(N.CMD_READ, (1 << 20) - 512, 1024)     # past the end
    c.request(N.CMD_DISC)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {}
    for name, kw in (("simple", {}), ("structured", {"structured": True}),
                     ("extended", {"extended": True})):
        c = session(**kw)
        requests(c)
        seeds["session-" + name] = c.sock.data

    # EXPORT_NAME, kernel style
    c = N.Client.__new__(N.Client)
    c.sock = Recorder(); c.structured = c.extended = False
    c.cookie = 0; c.read_lengths = {}
    c.send(struct.pack(">I", N.FLAG_FIXED_NEWSTYLE))
    c.send_option(N.OPT_EXPORT_NAME, b"")
    requests(c)
    seeds["session-export-name"] = c.sock.data

    # option haggling only
    c = N.Client.__new__(N.Client)
    c.sock = Recorder()
    c.send(struct.pack(">I", N.FLAG_FIXED_NEWSTYLE | N.FLAG_NO_ZEROES))
    c.send_option(N.OPT_LIST)
    c.send_option(N.OPT_STARTTLS)
    c.send_option(4242, b"unknown")
    c.send_option(N.OPT_INFO, c.info_data(b"", (0, 1, 2, 3)))
    c.send_option(N.OPT_STRUCTURED_REPLY)
    c.send_option(N.OPT_LIST_META_CONTEXT, c.meta_data(b"", [b"base:"]))
    c.send_option(N.OPT_LIST_META_CONTEXT, c.meta_data(b"", []))
    c.send_option(N.OPT_ABORT)
    seeds["options"] = c.sock.data

    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    if len(sys.argv) > 2:
        transmission(sys.argv[2])


def transmission(out):
    """Compact requests with no handshake, as the kernel sends them; byte 0
    of each seed picks the export (0 read/write, 1 read-only, 2 overlay)."""
    os.makedirs(out, exist_ok=True)
    for mode, name in ((0, "rw"), (1, "ro"), (2, "overlay")):
        c = N.Client.__new__(N.Client)
        c.sock = Recorder()
        c.structured = c.extended = False
        c.cookie = 0
        c.read_lengths = {}
        requests(c)
        with open(os.path.join(out, "requests-" + name), "wb") as f:
            f.write(bytes([mode]) + c.sock.data)
    # Overlapping partial writes, zeroes and trims over one granule, then
    # reads across them: the overlay's copy-up paths.
    c = N.Client.__new__(N.Client)
    c.sock = Recorder()
    c.structured = c.extended = False
    c.cookie = 0
    c.read_lengths = {}
    c.request(N.CMD_WRITE, 4000, 700, payload=b"\xa5" * 700)
    c.request(N.CMD_WRITE_ZEROES, 4500, 5000)
    c.request(N.CMD_TRIM, 12288, 8192)
    c.request(N.CMD_WRITE, 8190, 10, N.CMDF_FUA, payload=b"z" * 10)
    c.request(N.CMD_READ, 0, 24576)
    c.request(N.CMD_FLUSH)
    c.request(N.CMD_DISC)
    with open(os.path.join(out, "overlay-copy-up"), "wb") as f:
        f.write(bytes([2]) + c.sock.data)


if __name__ == "__main__":
    main()
