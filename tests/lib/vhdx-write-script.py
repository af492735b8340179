#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""vhdx-write-script.py SIZE SEED BS: print a random disk-tool script for
30-vhdx.t: writes, zeroes, trims of whole BS blocks and flushes inside SIZE,
then whole-block zero/trim that change the BAT states."""
import random, sys
size, seed, bs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
for i in range(40):
    k = r.random()
    big = r.random() < 0.3
    ln = r.randrange(1, (8 << 20) if big else 200000)
    ln = min(ln, size // 2)
    off = r.randrange(0, size - ln)
    if r.random() < 0.4:
        off -= off % 512; ln = max(512, ln - ln % 512)
    if k < 0.6:   print("w %d %d %d" % (off, ln, r.randrange(1 << 30)))
    elif k < 0.8: print("z %d %d" % (off, ln))
    elif k < 0.95:
        b = r.randrange(0, size // bs); n = r.randrange(1, min(4, size // bs - b) + 1)
        print("t %d %d" % (b * bs, n * bs))
    else:         print("f")
# Whole-block zero/trim at the end exercise the BAT state changes.
print("z 0 %d" % (size // 4))
print("w 4096 8192 7")
print("t %d %d" % (size // 2 // bs * bs, bs))
print("f")
