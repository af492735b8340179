#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mkvhd.py - VHD helpers for the tests (qemu-img cannot make differencing VHDs).

  mkvhd.py diff CHILD PARENT [--locators W2ru,W2ku,Wi2r,Wi2k] [--name NAME]
                [--parent-id GUID] [--size BYTES] [--block-size BYTES]
      Write an empty differencing VHD whose parent is PARENT (its unique id and
      size are read from PARENT's footer unless --parent-id / --size are given,
      which is how a missing parent is made).  Locators hold PARENT as given
      (W2ru/Wi2r: relative to CHILD's folder, W2ku/Wi2k: "C:\\..." absolute).
  mkvhd.py dyn IMG SIZE BLOCK_SIZE
      An empty dynamic VHD with any block size (qemu-img only makes 2 MiB).
  mkvhd.py loop A B SIZE
      Two differencing VHDs that name each other as parent.
  mkvhd.py check IMG
      Structural check of a dynamic/differencing/fixed VHD: footer at the end
      and its copy at 0 with valid checksums, header checksum, every allocated
      block inside the file and clear of the metadata and of other blocks.
  mkvhd.py set IMG FIELD VALUE [--keep-checksum]
      Patch a field and recompute the checksums (both footer copies).  FIELD:
      footer.<name> | header.<name> | bat.<index>; names: cur_size, type,
      data_offset, checksum, table_offset, max_entries, block_size.
  mkvhd.py model RAW SCRIPT
      Apply a disk-tool script's "w OFF LEN SEED" and "z OFF LEN" lines to the
      raw model file RAW (same byte generator as disk-tool).
  mkvhd.py uid IMG        print the footer unique id
"""
import os
import struct
import sys
import uuid

FOOTER_FIELDS = {"data_offset": (16, ">Q"), "cur_size": (48, ">Q"),
                 "orig_size": (40, ">Q"), "type": (60, ">I"), "checksum": (64, ">I")}
HEADER_FIELDS = {"table_offset": (16, ">Q"), "max_entries": (28, ">I"),
                 "block_size": (32, ">I"), "checksum": (36, ">I")}


def csum(buf, off):
    s = sum(buf[:off]) + sum(buf[off + 4:])
    return (~s) & 0xFFFFFFFF


def chs(size):
    sectors = min(size // 512, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt


def make_footer(size, dtype, data_offset, uid):
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, data_offset, 0)
    f[28:32] = b"dism"
    struct.pack_into(">I", f, 32, 0x00010000)
    f[36:40] = b"Wi2k"
    struct.pack_into(">QQ", f, 40, size, size)
    c, h, s = chs(size)
    struct.pack_into(">HBBI", f, 56, c, h, s, dtype)
    f[68:84] = uid
    struct.pack_into(">I", f, 64, csum(f, 64))
    return f


def read_footer(path):
    with open(path, "rb") as fh:
        fh.seek(-512, 2)
        return bytearray(fh.read(512))


def write_diff(child, size, parent_uid, name, locators, block_size=2 << 20, uid=None, dtype=4):
    uid = uid or uuid.uuid4().bytes
    entries = (size + block_size - 1) // block_size
    bat_off = 1536
    bat_len = (entries * 4 + 511) // 512 * 512
    loc_data = []
    off = bat_off + bat_len
    for code, text in locators:
        data = text.encode("utf-16-le") if code in ("W2ru", "W2ku") else text.encode()
        space = (len(data) + 511) // 512 * 512
        loc_data.append((code, data, space, off))
        off += space
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 0xFFFFFFFFFFFFFFFF, bat_off, 0x00010000, entries, block_size)
    h[40:56] = parent_uid
    nm = name.encode("utf-16-be")[:512]
    h[64:64 + len(nm)] = nm
    for k, (code, data, space, loff) in enumerate(loc_data):
        struct.pack_into(">4sIIIQ", h, 576 + 24 * k, code.encode(), space, len(data), 0, loff)
    struct.pack_into(">I", h, 36, csum(h, 36))
    foot = make_footer(size, dtype, 512, uid)
    with open(child, "wb") as fh:
        fh.write(foot)
        fh.write(h)
        fh.write(b"\xff" * (entries * 4) + b"\0" * (bat_len - entries * 4))
        for code, data, space, loff in loc_data:
            fh.seek(loff)
            fh.write(data + b"\0" * (space - len(data)))
        fh.seek(off)
        fh.write(foot)


def cmd_diff(args):
    child, parent = args[0], args[1]
    opts = dict(zip(args[2::2], args[3::2]))
    if "--parent-id" in opts:
        puid = uuid.UUID(opts["--parent-id"]).bytes
        size = int(opts["--size"])
    else:
        pf = read_footer(parent)
        puid = bytes(pf[68:84])
        size = int(opts.get("--size", struct.unpack_from(">Q", pf, 48)[0]))
    base = os.path.basename(parent)
    rel = os.path.relpath(parent, os.path.dirname(os.path.abspath(child)))
    locs = []
    for code in filter(None, opts.get("--locators", "W2ru,W2ku").split(",")):
        if code in ("W2ru", "Wi2r"):
            locs.append((code, ".\\" + rel.replace("/", "\\")))
        else:
            locs.append((code, "C:\\Images\\Somewhere\\" + base))
    write_diff(child, size, puid, opts.get("--name", base), locs,
               int(opts.get("--block-size", 2 << 20)))


def cmd_dyn(args):
    path, size, bs = args[0], int(args[1]), int(args[2])
    write_diff(path, size, bytes(16), "", [], bs, dtype=3)


def cmd_loop(args):
    a, b, size = args[0], args[1], int(args[2])
    ua, ub = uuid.uuid4().bytes, uuid.uuid4().bytes
    write_diff(a, size, ub, os.path.basename(b), [("W2ru", ".\\" + os.path.basename(b))], uid=ua)
    write_diff(b, size, ua, os.path.basename(a), [("W2ru", ".\\" + os.path.basename(a))], uid=ub)


def cmd_check(args):
    path = args[0]
    errs = []
    data = open(path, "rb").read()
    n = len(data)
    foot = bytearray(data[-512:])
    if foot[0:8] != b"conectix":
        print("no footer at end of file")
        return 1
    if csum(foot, 64) != struct.unpack_from(">I", foot, 64)[0]:
        errs.append("footer checksum")
    dtype = struct.unpack_from(">I", foot, 60)[0]
    size = struct.unpack_from(">Q", foot, 48)[0]
    if dtype == 2:
        if n - 512 < size:
            errs.append("fixed disk truncated")
    else:
        if bytes(data[:512]) != bytes(foot):
            errs.append("footer copy at offset 0 differs from the footer at the end")
        hoff = struct.unpack_from(">Q", foot, 16)[0]
        h = bytearray(data[hoff:hoff + 1024])
        if h[0:8] != b"cxsparse":
            errs.append("no dynamic header")
        else:
            if csum(h, 36) != struct.unpack_from(">I", h, 36)[0]:
                errs.append("header checksum")
            toff, ents, bs = struct.unpack_from(">QII", h, 16)[0], *struct.unpack_from(">II", h, 28)
            bm = ((bs // 512 + 7) // 8 + 511) // 512 * 512
            spans = []
            for i in range(ents):
                e = struct.unpack_from(">I", data, toff + 4 * i)[0]
                if e == 0xFFFFFFFF:
                    continue
                s = e * 512
                if i * bs >= size:
                    continue
                if s + bm + bs > n - 512:
                    errs.append("block %d past end of data (%d > %d)" % (i, s + bm + bs, n - 512))
                if s < toff + ents * 4 and toff < s + bm + bs:
                    errs.append("block %d overlaps the BAT" % i)
                spans.append((s, i))
            spans.sort()
            for (s1, i1), (s2, i2) in zip(spans, spans[1:]):
                if s2 < s1 + bm + bs:
                    errs.append("blocks %d and %d overlap" % (i1, i2))
    for e in errs:
        print(path + ": " + e)
    if not errs:
        print(path + ": clean")
    return 1 if errs else 0


def cmd_set(args):
    path, field, value = args[0], args[1], int(args[2], 0)
    keep = "--keep-checksum" in args
    with open(path, "r+b") as fh:
        fh.seek(0, 2)
        n = fh.tell()
        fh.seek(n - 512)
        foot = bytearray(fh.read(512))
        fh.seek(0)
        copy = bytearray(fh.read(512))
        has_copy = copy[0:8] == b"conectix"
        hoff = struct.unpack_from(">Q", foot, 16)[0]
        h = None
        if struct.unpack_from(">I", foot, 60)[0] != 2:
            fh.seek(hoff)
            h = bytearray(fh.read(1024))
        part, name = field.split(".", 1)
        if part == "footer":
            o, fmt = FOOTER_FIELDS[name]
            struct.pack_into(fmt, foot, o, value)
            if name != "checksum" and not keep:
                struct.pack_into(">I", foot, 64, csum(foot, 64))
            fh.seek(n - 512)
            fh.write(foot)
            if has_copy:
                fh.seek(0)
                fh.write(foot)
        elif part == "header":
            o, fmt = HEADER_FIELDS[name]
            struct.pack_into(fmt, h, o, value)
            if name != "checksum" and not keep:
                struct.pack_into(">I", h, 36, csum(h, 36))
            fh.seek(hoff)
            fh.write(h)
        elif part == "bat":
            toff = struct.unpack_from(">Q", h, 16)[0]
            fh.seek(toff + 4 * int(name))
            fh.write(struct.pack(">I", value))
    return 0


def fill(n, seed, off):
    m = 0xFFFFFFFFFFFFFFFF
    x = ((seed * 0x9E3779B97F4A7C15) & m) ^ off
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
        out[i] = x & 0xFF
    return out


def cmd_model(args):
    raw, script = args
    with open(raw, "r+b") as fh, open(script) as sc:
        for line in sc:
            p = line.split()
            if not p:
                continue
            if p[0] == "w":
                off, ln, seed = int(p[1]), int(p[2]), int(p[3])
                fh.seek(off)
                fh.write(fill(ln, seed, off))
            elif p[0] == "z":
                off, ln = int(p[1]), int(p[2])
                fh.seek(off)
                fh.write(b"\0" * ln)
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "diff":
        cmd_diff(args)
    elif cmd == "dyn":
        cmd_dyn(args)
    elif cmd == "loop":
        cmd_loop(args)
    elif cmd == "check":
        return cmd_check(args)
    elif cmd == "set":
        return cmd_set(args)
    elif cmd == "model":
        return cmd_model(args)
    elif cmd == "uid":
        print(str(uuid.UUID(bytes=bytes(read_footer(args[0])[68:84]))))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
