#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""vhdxbat.py IMAGE: an independent reading of a VHDX's BAT (MS-VHDX 2.5),
printed as allocation runs in qemu-img map's JSON shape
[{"start":..,"length":..,"data":bool}], data = payload block FULLY_PRESENT
or PARTIALLY_PRESENT.  For clean-log, non-differencing images (the test
generates them); it checks the structure signatures, not the checksums."""
import json, struct, sys, uuid

def gbytes(s):
    return uuid.UUID(s).bytes_le

BAT = gbytes("2DC27766-F623-4200-9D64-115E9BFD4A08")
META = gbytes("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMS = gbytes("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VDISK_SIZE = gbytes("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
LOGICAL = gbytes("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")

f = open(sys.argv[1], "rb")
def at(off, n):
    f.seek(off); return f.read(n)

assert at(0, 8) == b"vhdxfile", "not a VHDX"
rt = at(192 * 1024, 64 * 1024)
assert rt[:4] == b"regi", "no region table"
regions = {}
for i in range(struct.unpack_from("<I", rt, 8)[0]):
    guid, off, length, _ = struct.unpack_from("<16sQII", rt, 16 + 32 * i)
    regions[guid] = (off, length)
moff, mlen = regions[META]
mt = at(moff, 64 * 1024)
assert mt[:8] == b"metadata", "no metadata table"
items = {}
for i in range(struct.unpack_from("<H", mt, 10)[0]):
    guid, ioff, ilen, _ = struct.unpack_from("<16sIII", mt, 32 + 32 * i)
    items[guid] = at(moff + ioff, ilen)
block = struct.unpack_from("<I", items[FILE_PARAMS])[0]
size = struct.unpack_from("<Q", items[VDISK_SIZE])[0]
lsec = struct.unpack_from("<I", items[LOGICAL])[0]
cr = (1 << 23) * lsec // block
boff, blen = regions[BAT]
bat = at(boff, blen)
runs = []
nblocks = (size + block - 1) // block
for b in range(nblocks):
    entry = struct.unpack_from("<Q", bat, 8 * (b + b // cr))[0]
    data = (entry & 7) in (6, 7)
    start, length = b * block, min(block, size - b * block)
    if runs and runs[-1]["data"] == data:
        runs[-1]["length"] += length
    else:
        runs.append({"start": start, "length": length, "data": data})
print(json.dumps(runs))
