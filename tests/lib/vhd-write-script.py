#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""vhd-write-script.py FILE SEED SIZE COUNT MAXLEN ALIGN [ZEROES]: write to
FILE a random disk-tool script for 20-vhd.t: COUNT writes (every fifth a
zero with ZEROES) of up to MAXLEN bytes aligned to ALIGN, a flush every
seventh, then writes across a block boundary and at the end of the disk."""
import random, sys
path, seed, size, count, maxlen, align = sys.argv[1], *map(int, sys.argv[2:7])
zeroes = len(sys.argv) > 7
r = random.Random(seed)
with open(path, "w") as f:
    for i in range(count):
        ln = max(align, r.randrange(1, maxlen) // align * align)
        off = r.randrange(0, size - ln) // align * align
        if zeroes and i % 5 == 4:
            f.write("z %d %d\n" % (off, ln))
        else:
            f.write("w %d %d %d\n" % (off, ln, i + 1))
        if i % 7 == 6:
            f.write("f\n")
    # across a block boundary, and the very end of the disk
    if align > 1:
        f.write("w %d %d 900\n" % ((2 << 20) - 4096, 8192))
        f.write("w %d %d 901\n" % (size // 4096 * 4096 - 4096, 4096))
    else:
        f.write("w %d %d 900\n" % ((2 << 20) - 1000, 3000))
        f.write("w %d %d 901\n" % (size - 777, 777))
    f.write("f\n")
