#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""sparse-random-raw.py FILE: a sparse raw disk of 72 MiB + 3 sectors (not a
multiple of any block size) with seeded random data scattered over it and
in its last block."""
import os, random, sys
r = random.Random(1234)
size = 72 * 1024 * 1024 + 3 * 512          # not a multiple of any block size
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    for _ in range(40):                    # scattered data, holes between
        off = r.randrange(0, size - 300000) & ~511
        f.seek(off); f.write(r.randbytes(r.randrange(1, 300000)))
    f.seek(size - 4096); f.write(b"\xa5" * 4096)   # data in the last block
