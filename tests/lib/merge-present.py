#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""merge-present.py DIR RANGES: write DIR/merged.raw, DIR/base.raw with the
RANGES (OFF:LEN,..., K and M suffixes) of DIR/c.raw widened to 512-byte
sectors: what a differencing VHDX with those sectors present reads as."""
import sys
d, ranges = sys.argv[1], sys.argv[2]
num = lambda s: int(s[:-1]) * {"K": 1024, "M": 1 << 20}[s[-1]] if s[-1] in "KM" else int(s)
b = bytearray(open(d + "/base.raw", "rb").read()); c = open(d + "/c.raw", "rb").read()
for r in ranges.split(","):
    o, l = map(num, r.split(":")); s = o // 512 * 512; e = (o + l + 511) // 512 * 512
    b[s:e] = c[s:e]
open(d + "/merged.raw", "wb").write(b)
