#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""disk-tamper.py HOW IMAGE - damage a partition table on purpose (in place),
keeping every other check valid so the one fault is what the parser meets.

GPT (512-byte sectors), both headers unless said:
  primary-crc   break the primary header's CRC (the backup stays good)
  both-crc      break both headers' CRCs
  entries-crc   break the entry array's CRC (both copies)
  past-end      partition 4 ends past the last usable LBA (CRCs fixed)
  huge-count    10 million entries claimed (CRCs fixed)
  overlap       partition 4 starts inside partition 3 (CRCs fixed)
  array-out     the entry array is said to lie past the end of the disk
MBR:
  mbr-past-end  partition 1 ends past the end of the disk
  mbr-overlap   partition 2 starts inside partition 1
  ebr-loop      the first EBR links to itself
  bad-status    entry 1 has status byte 0x42
"""
import struct
import sys
import zlib

SS = 512


def crc(b):
    return zlib.crc32(b) & 0xffffffff


def read_hdr(f, lba):
    f.seek(lba * SS)
    return bytearray(f.read(SS))


def fix_hdr(h):
    size = struct.unpack_from("<I", h, 12)[0]
    struct.pack_into("<I", h, 16, 0)
    struct.pack_into("<I", h, 16, crc(bytes(h[:size])))


def gpt_edit(f, edit_entries=None, edit_hdr=None):
    """Apply edits to both GPT copies and fix every CRC."""
    f.seek(0, 2)
    last = f.tell() // SS - 1
    for lba in (1, last):
        h = read_hdr(f, lba)
        assert h[:8] == b"EFI PART", "no GPT at LBA %d" % lba
        ent_lba, n, esz = struct.unpack_from("<QII", h, 72)
        f.seek(ent_lba * SS)
        ents = bytearray(f.read(n * esz))
        if edit_entries:
            edit_entries(ents, esz)
        struct.pack_into("<I", h, 88, crc(bytes(ents)))
        if edit_hdr:
            edit_hdr(h)
        fix_hdr(h)
        f.seek(ent_lba * SS)
        f.write(ents)
        f.seek(lba * SS)
        f.write(h)


def main():
    how, path = sys.argv[1], sys.argv[2]
    with open(path, "r+b") as f:
        f.seek(0, 2)
        nsect = f.tell() // SS
        if how in ("primary-crc", "both-crc"):
            for lba in ((1,) if how == "primary-crc" else (1, nsect - 1)):
                h = read_hdr(f, lba)
                h[16] ^= 0xff
                f.seek(lba * SS)
                f.write(h)
        elif how == "entries-crc":
            gpt_edit(f, edit_hdr=lambda h: struct.pack_into(
                "<I", h, 88, struct.unpack_from("<I", h, 88)[0] ^ 1))
        elif how == "past-end":
            def e(ents, esz):
                last_usable = nsect - 34
                struct.pack_into("<Q", ents, 3 * esz + 40, last_usable + 100)
            gpt_edit(f, e)
        elif how == "huge-count":
            gpt_edit(f, edit_hdr=lambda h: struct.pack_into("<I", h, 80, 10_000_000))
        elif how == "overlap":
            def e(ents, esz):
                s3, l3 = struct.unpack_from("<QQ", ents, 2 * esz + 32)
                struct.pack_into("<Q", ents, 3 * esz + 32, (s3 + l3) // 2)
            gpt_edit(f, e)
        elif how == "array-out":
            gpt_edit(f, edit_hdr=lambda h: struct.pack_into("<Q", h, 72, nsect + 10))
        elif how.startswith("mbr-") or how in ("ebr-loop", "bad-status"):
            f.seek(0)
            mbr = bytearray(f.read(SS))
            ent = lambda i: 446 + 16 * i
            if how == "mbr-past-end":
                struct.pack_into("<I", mbr, ent(0) + 12, nsect)
            elif how == "mbr-overlap":
                s0 = struct.unpack_from("<I", mbr, ent(0) + 8)[0]
                struct.pack_into("<I", mbr, ent(1) + 8, s0 + 8)
            elif how == "bad-status":
                mbr[ent(0)] = 0x42
            elif how == "ebr-loop":
                for i in range(4):
                    if mbr[ent(i) + 4] in (0x05, 0x0f, 0x85):
                        ext = struct.unpack_from("<I", mbr, ent(i) + 8)[0]
                        f.seek(ext * SS)
                        ebr = bytearray(f.read(SS))
                        # link entry (2nd) pointing at the EBR itself: offset 0
                        # is "no link", so point at a second EBR that links back
                        struct.pack_into("<BBBBBBBBII", ebr, 446 + 16, 0, 0, 0, 0, 0x05,
                                         0, 0, 0, 1, 1)
                        f.seek(ext * SS)
                        f.write(ebr)
                        ebr2 = bytearray(SS)
                        ebr2[510:512] = b"\x55\xaa"
                        struct.pack_into("<BBBBBBBBII", ebr2, 446 + 16, 0, 0, 0, 0, 0x05,
                                         0, 0, 0, 0 + 1, 1)
                        f.seek((ext + 1) * SS)
                        f.write(ebr2)
                        break
                else:
                    sys.exit("no extended partition")
            f.seek(0)
            f.write(mbr)
        else:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
