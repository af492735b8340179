#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""oldnew.py OLD NEW GOT [GRANULE]: every GRANULE-sized block (default 4096)
of GOT equals the same block of OLD or of NEW.  Prints counts; exit 1 with
the first offending offset otherwise."""
import sys
old, new, got = (open(p, "rb") for p in sys.argv[1:4])
g = int(sys.argv[4]) if len(sys.argv) > 4 else 4096
n_old = n_new = off = 0
while True:
    a, b, c = old.read(g), new.read(g), got.read(g)
    if not c and not a:
        break
    if c == b:
        n_new += 1
    elif c == a:
        n_old += 1
    else:
        print(f"block at offset {off} is neither old nor new")
        sys.exit(1)
    off += g
print(f"old={n_old} new={n_new}")
