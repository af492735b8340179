#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""zero-copy-io.py - reads for 39-zero-copy.t, over the raw protocol client.

  zero-copy-io.py read SOCK REF simple|structured|extended
      Read the whole export in uneven requests (1 byte to 8 MiB, unaligned)
      with simple or structured replies (or extended headers); print "equal holes=N chunks=M"
      when every byte equals REF (a raw file), else the first difference.
  zero-copy-io.py cut SOCK REF ROUNDS
      Clients that send 32 MiB READs and vanish after a few KiB of the reply
      (close, reset) while one more client keeps reading and checking: print
      "intact N" (N checked reads) when every checked reply was whole and
      right and the server still answers a new client.
  zero-copy-io.py short SOCK REF
      The image file was cut short under the server: a READ of the export's
      last MiB must end in an error reply or a dropped connection, never in
      a reply taken as whole with wrong bytes; a new client still reads the
      start.  Print "refused: HOW".
  zero-copy-io.py write SOCK MODEL
      Writes and zeroes (unaligned, some overlapping) through the export,
      applied to the raw file MODEL as well; print "written N".
"""
import os
import random
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdclient as nc  # noqa: E402

MiB = 1 << 20


def ref_bytes(ref, off, n):
    with open(ref, "rb") as f:
        f.seek(off)
        data = f.read(n)
    return data + bytes(n - len(data))


def cmd_read(sock, ref, form):
    c = nc.connect_go(sock, structured=(form == "structured"),
                      extended=(form == "extended"))
    size, r = c.size, random.Random(7)
    off = holes = chunks = 0
    while off < size:
        n = min(size - off, r.choice([1, 511, 4096, 65536 + 17, MiB - 3, 4 * MiB, 8 * MiB]))
        rep = c.read(off, n)
        if rep["error"] or rep["data"] != ref_bytes(ref, off, n):
            print("differs in read %d+%d (error %d)" % (off, n, rep["error"]))
            return 1
        holes += sum(1 for ch in rep["chunks"] if ch[1] == nc.RT_OFFSET_HOLE)
        chunks += len(rep["chunks"])
        off += n
    c.disc()
    print("equal holes=%d chunks=%d" % (holes, chunks))
    return 0


def vanish(sock, form, rst):
    c = nc.connect_go(sock, structured=form)
    c.request(nc.CMD_READ, 0, 32 * MiB)
    c.recv_exact(4096 + 17)
    if rst:   # RST instead of FIN: the server's next send fails at once
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def cmd_cut(sock, ref, rounds):
    size = nc.connect_go(sock).size
    stop, bad, checked = threading.Event(), [], [0]

    def checker(form):
        c, r = nc.connect_go(sock, structured=form), random.Random(form)
        while not stop.is_set():
            off = r.randrange(0, size - 1)
            n = min(size - off, r.choice([4096, 3 * MiB + 5, 16 * MiB]))
            rep = c.read(off, n)
            if rep["error"] or rep["data"] != ref_bytes(ref, off, n):
                bad.append((off, n))
                break
            checked[0] += 1
        c.disc()

    ts = [threading.Thread(target=checker, args=(f,)) for f in (True, False)]
    for t in ts:
        t.start()
    for i in range(rounds):
        vanish(sock, i % 2 == 0, i % 3 == 0)
    stop.set()
    for t in ts:
        t.join()
    if bad:
        print("corrupt reply at %d+%d" % bad[0])
        return 1
    rep = nc.connect_go(sock).read(size - 4096, 4096)
    if rep["data"] != ref_bytes(ref, size - 4096, 4096):
        print("a new client reads wrong data")
        return 1
    print("intact %d" % checked[0])
    return 0


def cmd_short(sock, ref):
    how = None
    for form in (False, True):
        c = nc.connect_go(sock, structured=form)
        try:
            # DF: one data chunk (the hole plan would answer from the
            # file's extents, where the cut end is a hole).
            rep = c.read(c.size - MiB, MiB, nc.CMDF_DF if form else 0)
            if not rep["error"]:
                print("a whole reply for bytes the file no longer has")
                return 1
            how = "error %d" % rep["error"]
        except nc.Disconnected:
            how = "dropped"
        c.close()
    if nc.connect_go(sock).read(0, 65536)["data"] != ref_bytes(ref, 0, 65536):
        print("a new client reads wrong data")
        return 1
    print("refused: %s" % how)
    return 0


def cmd_write(sock, model):
    c, r = nc.connect_go(sock), random.Random(11)
    n = 0
    with open(model, "r+b") as f:
        for _ in range(24):
            off = r.randrange(0, c.size - 3 * MiB)
            ln = r.randrange(1, 3 * MiB)
            if r.random() < 0.25:
                rep = c.call(nc.CMD_WRITE_ZEROES, off, ln)
                data = bytes(ln)
            else:
                data = r.randbytes(ln)
                rep = c.write(off, data)
            if rep["error"]:
                print("write %d+%d failed: %d" % (off, ln, rep["error"]))
                return 1
            f.seek(off)
            f.write(data)
            n += 1
    c.call(nc.CMD_FLUSH)
    c.disc()
    print("written %d" % n)
    return 0


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "read":
        return cmd_read(a[0], a[1], a[2])
    if cmd == "cut":
        return cmd_cut(a[0], a[1], int(a[2]))
    if cmd == "short":
        return cmd_short(a[0], a[1])
    if cmd == "write":
        return cmd_write(a[0], a[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
