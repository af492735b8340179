#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-random-io.py - random writes, trims, zeroes, reads and flushes over
several libnbd connections at once (aio, many requests in flight) against an
in-memory model of the disk.

usage: nbd-random-io.py URI IMAGE MODEL-OUT [SEED] [ROUNDS]
(IMAGE "-": compare by reading the export back instead of a raw file)

Requests in flight at the same time never overlap (their order is
undefined), so the model is exact.  Every few rounds one connection sends
FLUSH (the export is multi-conn: it covers every connection's writes) and
the image file must then equal the model.  At the end the model is written
to MODEL-OUT after a last flush, for a check after kill -9.
Prints "ok: ..." on success; exits 1 with a message on the first mismatch.
"""
import errno
import os
import random
import sys

import nbd

uri, image, model_out = sys.argv[1], sys.argv[2], sys.argv[3]
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 30
rng = random.Random(seed)
NCONN, PER_CONN = 4, 24

handles = []
for i in range(NCONN):
    h = nbd.NBD()
    h.connect_uri(uri)
    handles.append(h)
size = handles[0].get_size()
assert handles[0].can_multi_conn(), "export does not advertise multi-conn"
assert handles[0].can_fast_zero() and handles[0].can_trim()
def read_export(h):
    out = bytearray()
    for off in range(0, size, 8 << 20):
        out += h.pread(min(8 << 20, size - off), off)
    return out


# IMAGE "-": the export is not a plain file (an overlay, a VHDX): the model
# starts from what the export reads, and checks read it back over NBD.
if image == "-":
    model = read_export(handles[0])
else:
    with open(image, "rb") as f:
        model = bytearray(f.read())
assert len(model) == size
SLOT = size // 256
counts = {"write": 0, "trim": 0, "zero": 0, "read": 0, "flush": 0,
          "fast-zero-refused": 0}


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def compare_file(when):
    if image == "-":
        disk = read_export(handles[-1])
    else:
        with open(image, "rb") as f:
            disk = f.read()
    if disk != model:
        first = next(i for i in range(size) if disk[i] != model[i])
        fail("%s: image differs from the model at byte %d" % (when, first))


def run_round():
    slots = rng.sample(range(size // SLOT), NCONN * PER_CONN)
    pending = []     # (handle, cookie, kind, offset, length, extra)
    for n, slot in enumerate(slots):
        h = handles[n % NCONN]
        base = slot * SLOT
        if rng.random() < 0.5:      # sector-aligned
            length = rng.randrange(1, SLOT // 512 + 1) * 512
            off = base + rng.randrange(0, (SLOT - length) // 512 + 1) * 512
        else:
            length = rng.randrange(1, SLOT)
            off = base + rng.randrange(0, SLOT - length + 1)
        kind = rng.choices(["write", "trim", "zero", "read"], [5, 1, 2, 3])[0]
        if kind == "write":
            data = bytearray(os.urandom(length))
            flags = nbd.CMD_FLAG_FUA if rng.random() < 0.2 else 0
            c = h.aio_pwrite(nbd.Buffer.from_bytearray(data), off, flags=flags)
            pending.append((h, c, kind, off, length, data))
        elif kind == "trim":
            c = h.aio_trim(length, off)
            pending.append((h, c, kind, off, length, None))
        elif kind == "zero":
            flags = rng.choice([0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FAST_ZERO])
            c = h.aio_zero(length, off, flags=flags)
            pending.append((h, c, kind, off, length, flags))
        else:
            buf = nbd.Buffer(length)
            c = h.aio_pread(buf, off)
            pending.append((h, c, kind, off, length, (buf, bytes(model[off:off + length]))))
    for h in handles:
        while h.aio_in_flight() > 0:
            h.poll(-1)
    for h, c, kind, off, length, extra in pending:
        try:
            h.aio_command_completed(c)
        except nbd.Error as e:
            # libnbd's Python binding gives errno as a name ("ENOTSUP").
            if kind == "zero" and extra == nbd.CMD_FLAG_FAST_ZERO and \
                    e.errno in (errno.ENOTSUP, "ENOTSUP", "EOPNOTSUPP"):
                counts["fast-zero-refused"] += 1   # allowed; contents unchanged
                continue
            fail("%s %d+%d: %s" % (kind, off, length, e))
        counts[kind] += 1
        if kind == "write":
            model[off:off + length] = extra
        elif kind == "trim" and image == "-":
            # After TRIM the content is unspecified (VHD ignores it, VHDX
            # only unmaps whole blocks): take what the export now reads.
            model[off:off + length] = h.pread(length, off)
        elif kind in ("trim", "zero"):
            model[off:off + length] = bytes(length)   # raw punches holes: zeroes
        else:
            buf, want = extra
            if buf.to_bytearray() != want:
                fail("read %d+%d differs from the model" % (off, length))


for r in range(rounds):
    run_round()
    if r % 5 == 4:
        rng.choice(handles).flush()
        counts["flush"] += 1
        compare_file("after flush in round %d" % r)

handles[rng.randrange(NCONN)].flush()
compare_file("after the final flush")
with open(model_out, "wb") as f:
    f.write(model)
print("ok: " + ", ".join("%s %d" % kv for kv in sorted(counts.items())), flush=True)
# Exit without NBD_CMD_DISC or a server-side flush: the caller kills the
# server with -9 next.
os._exit(0)
