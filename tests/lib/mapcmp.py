#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Compare allocation maps: nbdinfo --map --json (ours, over NBD) against
qemu-img map --output=json (an independent reader of the same image).
Both are reduced to merged runs of 'allocated' (data present in the image
file) and the runs must be equal.  Prints the first difference."""
import json, sys

def runs(items):
    out = []
    for off, length, alloc in items:
        if out and out[-1][2] == alloc and out[-1][0] + out[-1][1] == off:
            out[-1][1] += length
        else:
            out.append([off, length, alloc])
    return out

ours = json.load(open(sys.argv[1]))
qemu = json.load(open(sys.argv[2]))
a = runs((e["offset"], e["length"], (e["type"] & 1) == 0) for e in ours)
b = runs((e["start"], e["length"], bool(e["data"])) for e in qemu)
if a != b:
    for x, y in zip(a, b):
        if x != y:
            print("first difference: ours", x, "qemu", y)
            break
    else:
        print("different run counts:", len(a), len(b))
    sys.exit(1)
print("maps agree:", len(a), "runs")
