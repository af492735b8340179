# SPDX-License-Identifier: GPL-2.0-or-later
"""ovl-script.py SEED SIZE NOPS FLUSHES KILL - a random disk-tool script for
the overlay tests (tests/t/50-overlay.t, 51-overlay-live.t): NOPS writes
(any byte offset, 1 byte .. 3 granules+; some granule-aligned, like most
guests), zeroes and trims, FLUSHES "f" lines at random places, and a final
"k" (kill -9 self) if KILL is 1."""
import random
import sys

seed, size, nops, nflush, kill = (int(a) for a in sys.argv[1:])
r = random.Random(seed)
flush_at = set(r.sample(range(nops), min(nflush, nops)))
for i in range(nops):
    kind = r.random()
    if r.random() < 0.3:           # granule-aligned, like most guests
        off = r.randrange(0, size // 4096) * 4096
        ln = r.randrange(1, 8) * 4096
    else:
        off = r.randrange(0, size)
        ln = r.randrange(1, 14000)
    ln = max(1, min(ln, size - off))
    if kind < 0.7:
        print("w %d %d %d" % (off, ln, r.randrange(1, 1 << 30)))
    elif kind < 0.85:
        print("z %d %d" % (off, ln))
    else:
        print("t %d %d" % (off, ln))
    if i in flush_at:
        print("f")
if kill:
    print("k")
