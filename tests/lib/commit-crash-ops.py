#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""commit-crash-ops.py FILE: the disk-tool script of 55-commit-crash.t (seeded):
writes, zeroes and trims spread over a 64 MiB disk, then a flush."""
import random, sys
r = random.Random(77)
size = 64 << 20
with open(sys.argv[1], "w") as f:
    for i in range(60):
        off = r.randrange(0, size - (2 << 20)) & ~511
        k = r.random()
        if k < 0.8:
            print(f"w {off} {r.randrange(512, 2 << 20) & ~511} {i}", file=f)
        elif k < 0.9:
            print(f"z {off} {r.randrange(4096, 4 << 20) & ~4095}", file=f)
        else:
            print(f"t {off} {r.randrange(4096, 4 << 20) & ~4095}", file=f)
    print("f", file=f)
