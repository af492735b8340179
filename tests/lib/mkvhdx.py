#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mkvhdx.py - write small, valid VHDX files for tests (MS-VHDX 1.0).

qemu-img cannot make 4Kn or differencing VHDX, and malformed-image tests need
byte-level control, so this writes the format directly.  Layout is compact:
headers in the first MiB, log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB,
then payload blocks and sector bitmaps.

  mkvhdx.py create OUT --size N [--block-size N] [--lss 512|4096] [--pss N]
            [--fixed] [--data RAW] [--zero-blocks I,J] [--creator S]
            [--parent P | --parent-path REL --linkage GUID] [--present OFF:LEN,...]
            [--abs-path WINPATH] [--volume-path WINPATH]
            [--dirty-log] [--log-extend N]
  mkvhdx.py corrupt FILE WHAT    hdr1 | hdr2 | rt1 | rt-both | bat-eof |
                                 meta-required | blocksize | bat-overlap
  mkvhdx.py guid FILE            print the current DataWriteGuid
  mkvhdx.py fuzzpack IMG OUT MODE   the sparse input format of tests/fuzz/fuzz-vhdx.c
                                    (MODE bit 0: read-write, bit 1: re-seal checksums)
Sizes accept K/M/G suffixes.
"""
import os
import struct
import sys
import uuid

KiB, MiB = 1024, 1024 * 1024

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t
_T = _crc_table()

def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def g(s):
    return uuid.UUID(s).bytes_le

BAT_GUID = g("2DC27766-F623-4200-9D64-115E9BFD4A08")
META_GUID = g("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FPARAMS = g("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VSIZE = g("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83 = g("BECA12AB-B2E6-4523-93EF-C309E000C746")
LSS = g("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PSS = g("CDA348C7-445D-4471-9CC9-E9885251C556")
PLOC = g("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
PLOC_VHDX = g("B04AEFB7-D19E-4A81-B789-25B8E9445913")

def num(s):
    s = s.strip()
    mult = {"K": KiB, "M": MiB, "G": 1024 * MiB}.get(s[-1:].upper())
    return int(s[:-1]) * mult if mult else int(s, 0)

def header(seq, fw, dw, logguid, log_len, log_off):
    h = bytearray(4096)
    h[0:4] = b"head"
    struct.pack_into("<Q16s16s16sHHIQ", h, 8, seq, fw, dw, logguid, 0, 1, log_len, log_off)
    struct.pack_into("<I", h, 4, crc32c(bytes(h)))
    return bytes(h)

def region_table(entries):
    rt = bytearray(64 * KiB)
    rt[0:4] = b"regi"
    struct.pack_into("<I", rt, 8, len(entries))
    for i, (gd, off, ln, req) in enumerate(entries):
        struct.pack_into("<16sQII", rt, 16 + 32 * i, gd, off, ln, req)
    struct.pack_into("<I", rt, 4, crc32c(bytes(rt)))
    return bytes(rt)

def read_current_header(path):
    with open(path, "rb") as f:
        f.seek(64 * KiB); h1 = f.read(4096)
        f.seek(128 * KiB); h2 = f.read(4096)
    best = None
    for h in (h1, h2):
        if h[0:4] != b"head":
            continue
        z = bytearray(h); z[4:8] = b"\0\0\0\0"
        if crc32c(bytes(z)) != struct.unpack_from("<I", h, 4)[0]:
            continue
        seq = struct.unpack_from("<Q", h, 8)[0]
        if best is None or seq > best[0]:
            best = (seq, h)
    if best is None:
        sys.exit("mkvhdx: %s: no valid header" % path)
    return best[1]

def utf16(s):
    return s.encode("utf-16-le")

def locator(pairs):
    n = len(pairs)
    hdr = bytearray(20 + 12 * n)
    hdr[0:16] = PLOC_VHDX
    struct.pack_into("<HH", hdr, 16, 0, n)
    blob = bytearray()
    for i, (k, v) in enumerate(pairs):
        kb, vb = utf16(k), utf16(v)
        ko = len(hdr) + len(blob); blob += kb
        vo = len(hdr) + len(blob); blob += vb
        struct.pack_into("<IIHH", hdr, 20 + 12 * i, ko, vo, len(kb), len(vb))
    return bytes(hdr + blob)

def ranges_arg(s):
    out = []
    for part in s.split(","):
        if part:
            o, l = part.split(":")
            out.append((num(o), num(l)))
    return out

def create(args):
    opts = {"size": None, "block-size": "32M", "lss": "512", "pss": "4096", "data": None,
            "parent": None, "parent-path": None, "linkage": None, "present": "",
            "creator": "dism mkvhdx.py", "zero-blocks": "", "log-extend": "0",
            "abs-path": None, "volume-path": None}
    flags = set()
    out = args[0]
    i = 1
    while i < len(args):
        a = args[i]
        if a in ("--fixed", "--dirty-log"):
            flags.add(a[2:]); i += 1; continue
        opts[a[2:]] = args[i + 1]; i += 2
    size, bs = num(opts["size"]), num(opts["block-size"])
    lss, pss = int(opts["lss"]), int(opts["pss"])
    has_parent = bool(opts["parent"] or opts["parent-path"])
    fixed = "fixed" in flags
    cr = (1 << 23) * lss // bs
    nblocks = (size + bs - 1) // bs
    nsb = (nblocks + cr - 1) // cr
    nentries = nsb * (cr + 1) if has_parent else nblocks + (nblocks - 1) // cr
    log_off, log_len = 1 * MiB, 1 * MiB
    meta_off, meta_len = 2 * MiB, 1 * MiB
    bat_off = 3 * MiB
    bat_len = max(MiB, (nentries * 8 + MiB - 1) // MiB * MiB)
    data_off = bat_off + bat_len
    raw = open(opts["data"], "rb") if opts["data"] else None
    present = ranges_arg(opts["present"])
    zero_blocks = {int(x) for x in opts["zero-blocks"].split(",") if x}

    bat = [0] * nentries
    def pbi(b): return b + b // cr
    def sbi(c): return c * (cr + 1) + cr
    f = open(out, "wb+")
    end = data_off
    bitmaps = {}            # chunk -> bytearray(1 MiB)
    for b in range(nblocks):
        blen = min(bs, size - b * bs)
        chunk = raw.read(blen) if raw else b""
        if raw and len(chunk) < blen:
            chunk += bytes(blen - len(chunk))
        if b in zero_blocks:
            bat[pbi(b)] = 2
            continue
        if has_parent:
            secs = []
            for s in range(blen // lss):
                vo = b * bs + s * lss
                if any(o < vo + lss and vo < o + l for o, l in present):
                    secs.append(s)
            if not secs:
                continue
            full = len(secs) == bs // lss
            f.seek(end)
            buf = bytearray(blen)
            for s in secs:
                buf[s * lss:(s + 1) * lss] = chunk[s * lss:(s + 1) * lss]
            f.write(buf)
            bat[pbi(b)] = end | (6 if full else 7)
            end += bs
            if not full:
                bm = bitmaps.setdefault(b // cr, bytearray(MiB))
                base = (b % cr) * (bs // lss)
                for s in secs:
                    bit = base + s
                    bm[bit // 8] |= 1 << (bit % 8)
            continue
        if fixed or (raw and any(chunk)):
            if any(chunk):
                f.seek(end); f.write(chunk)
            bat[pbi(b)] = end | 6
            end += bs
    for c, bm in sorted(bitmaps.items()):
        f.seek(end); f.write(bm)
        bat[sbi(c)] = end | 6
        end += MiB

    fw, dw, p83 = uuid.uuid4().bytes_le, uuid.uuid4().bytes_le, uuid.uuid4().bytes_le
    ident = bytearray(64 * KiB)
    ident[0:8] = b"vhdxfile"
    cb = utf16(opts["creator"])[:510]
    ident[8:8 + len(cb)] = cb
    f.seek(0); f.write(ident)

    meta = bytearray(meta_len)
    meta[0:8] = b"metadata"
    items = [(FPARAMS, struct.pack("<II", bs, (1 if fixed else 0) | (2 if has_parent else 0)), 4),
             (VSIZE, struct.pack("<Q", size), 6),
             (PAGE83, p83, 6),
             (LSS, struct.pack("<I", lss), 6),
             (PSS, struct.pack("<I", pss), 6)]
    if has_parent:
        if opts["parent"]:
            ph = read_current_header(opts["parent"])
            link = "{%s}" % uuid.UUID(bytes_le=ph[32:48])
            rel = opts["parent-path"] or os.path.basename(opts["parent"])
        else:
            link, rel = opts["linkage"], opts["parent-path"]
        if opts["linkage"]:
            link = opts["linkage"]
        name = rel.replace("/", "\\").split("\\")[-1]
        items.append((PLOC, locator([
            ("parent_linkage", link),
            ("relative_path", ".\\" + rel.replace("/", "\\")),
            ("volume_path", opts["volume-path"] or
             "\\\\?\\Volume{2a9e1e4b-0000-0000-0000-100000000000}\\vms\\" + name),
            ("absolute_win32_path", opts["abs-path"] or "C:\\vms\\" + name)]), 4))
    off = 64 * KiB
    struct.pack_into("<H", meta, 10, len(items))
    for i, (gd, data, fl) in enumerate(items):
        struct.pack_into("<16sIII", meta, 32 + 32 * i, gd, off, len(data), fl)
        meta[off:off + len(data)] = data
        off += (len(data) + 7) // 8 * 8
    f.seek(meta_off); f.write(meta)

    batb = bytearray(bat_len)
    for i, e in enumerate(bat):
        struct.pack_into("<Q", batb, 8 * i, e)
    f.seek(bat_off); f.write(batb)

    rt = region_table([(BAT_GUID, bat_off, bat_len, 1), (META_GUID, meta_off, meta_len, 1)])
    f.seek(192 * KiB); f.write(rt)
    f.seek(256 * KiB); f.write(rt)
    f.truncate(max(end, data_off))
    file_size = max(end, data_off)

    logguid = bytes(16)
    if "dirty-log" in flags:
        logguid = uuid.uuid4().bytes_le
        dirty_log(f, bat, batb, bat_off, log_off, log_len, logguid, file_size,
                  num(opts["log-extend"]), nblocks, pbi, bs)
    f.seek(64 * KiB); f.write(header(1, fw, dw, logguid, log_len, log_off))
    f.seek(128 * KiB); f.write(header(2, fw, dw, logguid, log_len, log_off))
    f.close()

def log_entry(seq, tail, logguid, flushed, last, descs):
    """descs: list of ('data', off, page) or ('zero', off, length)."""
    nd = sum(1 for d in descs if d[0] == "data")
    dsect = (64 + 32 * len(descs) + 4095) // 4096
    e = bytearray(4096 * (dsect + nd))
    e[0:4] = b"loge"
    struct.pack_into("<IIQII16sQQ", e, 8, len(e), tail, seq, len(descs), 0, logguid, flushed, last)
    k = 0
    for i, d in enumerate(descs):
        p = 64 + 32 * i
        if d[0] == "zero":
            e[p:p + 4] = b"zero"
            struct.pack_into("<IQQQ", e, p + 4, 0, d[2], d[1], seq)
        else:
            page = d[2]
            e[p:p + 4] = b"desc"
            e[p + 4:p + 8] = page[4092:4096]
            e[p + 8:p + 16] = page[0:8]
            struct.pack_into("<QQ", e, p + 16, d[1], seq)
            s = 4096 * (dsect + k); k += 1
            e[s:s + 4] = b"data"
            struct.pack_into("<I", e, s + 4, seq >> 32)
            e[s + 8:s + 4092] = page[8:4092]
            struct.pack_into("<I", e, s + 4092, seq & 0xFFFFFFFF)
    struct.pack_into("<I", e, 4, crc32c(bytes(e)))
    return bytes(e)

def dirty_log(f, bat, batb, bat_off, log_off, log_len, logguid, file_size, extend, nblocks, pbi, bs):
    """Leave the image with its last BAT change and some payload only in the
    log: two entries (seq S, S+1; the second's tail is the first)."""
    alloc = [b for b in range(nblocks) if bat[pbi(b)] & 7 == 6]
    if not alloc:
        sys.exit("mkvhdx: --dirty-log needs at least one allocated block")
    b = alloc[0]
    ent = pbi(b)
    page_off = bat_off + (ent * 8) // 4096 * 4096
    good_bat = bytes(batb[page_off - bat_off:page_off - bat_off + 4096])
    stale = bytearray(good_bat)
    struct.pack_into("<Q", stale, (ent * 8) % 4096, 0)       # on disk: not present
    f.seek(page_off); f.write(stale)
    boff = bat[ent] & ~0xFFFFF
    f.seek(boff); good_page = f.read(4096)
    f.seek(boff); f.write(b"\xAA" * 4096)                      # on disk: garbage
    # A zero payload page of the same block: garbage on disk, zeroed by the log.
    zero_desc = []
    for pg in range(1, bs // 4096):
        f.seek(boff + pg * 4096)
        if not any(f.read(4096)):
            f.seek(boff + pg * 4096); f.write(b"\x55" * 4096)
            zero_desc = [("zero", boff + pg * 4096, 4096)]
            break
    seq = 0x1_0000_0007
    last = file_size + extend
    e1 = log_entry(seq, 0, logguid, file_size, last,
                   [("data", boff, b"\xBB" * 4096)])
    e2 = log_entry(seq + 1, 0, logguid, file_size, last,
                   [("data", page_off, good_bat), ("data", boff, good_page)] + zero_desc)
    log = bytearray(log_len)
    log[0:len(e1)] = e1
    log[len(e1):len(e1) + len(e2)] = e2
    # An older entry of a previous log (other GUID) further on: ignored.
    old = log_entry(3, 0, uuid.uuid4().bytes_le, file_size, file_size, [("data", boff, b"\xCC" * 4096)])
    log[64 * KiB:64 * KiB + len(old)] = old
    f.seek(log_off); f.write(log)

def corrupt(path, what):
    with open(path, "r+b") as f:
        def rd(o, n): f.seek(o); return f.read(n)
        def wr(o, b): f.seek(o); f.write(b)
        if what == "hdr1":
            wr(64 * KiB + 200, b"\x01")
        elif what == "hdr2":
            wr(128 * KiB + 200, b"\x01")
        elif what == "rt1":
            wr(192 * KiB + 1000, b"\x01")
        elif what == "rt-both":
            wr(192 * KiB + 1000, b"\x01"); wr(256 * KiB + 1000, b"\x01")
        elif what in ("bat-eof", "bat-overlap", "meta-required", "blocksize"):
            rt = rd(192 * KiB, 64 * KiB)
            regs = {}
            for i in range(struct.unpack_from("<I", rt, 8)[0]):
                gd, off, ln, _ = struct.unpack_from("<16sQII", rt, 16 + 32 * i)
                regs[gd] = (off, ln)
            bat_off = regs[BAT_GUID][0]
            meta_off = regs[META_GUID][0]
            size = os.fstat(f.fileno()).st_size
            if what == "bat-eof":
                wr(bat_off, struct.pack("<Q", ((size + 64 * MiB) // MiB * MiB) | 6))
            elif what == "bat-overlap":
                wr(bat_off, struct.pack("<Q", bat_off | 6))
            else:
                meta = bytearray(rd(meta_off, 64 * KiB))
                n = struct.unpack_from("<H", meta, 10)[0]
                if what == "meta-required":
                    struct.pack_into("<16sIII", meta, 32 + 32 * n,
                                     g("01234567-89ab-cdef-0123-456789abcdef"), 64 * KiB, 8, 4)
                    struct.pack_into("<H", meta, 10, n + 1)
                    wr(meta_off, bytes(meta))
                else:
                    for i in range(n):
                        gd, ioff, _, _ = struct.unpack_from("<16sIII", meta, 32 + 32 * i)
                        if gd == FPARAMS:
                            wr(meta_off + ioff, struct.pack("<I", 3 * MiB))
        else:
            sys.exit("mkvhdx: unknown corruption " + what)

def fuzzpack(img, out, mode):
    data = open(img, "rb").read()
    pages = (len(data) + 4095) // 4096
    rec = bytearray(struct.pack("<BI", mode, pages))
    for pg in range(pages):
        chunk = data[pg * 4096:(pg + 1) * 4096].rstrip(b"\0")
        if chunk:
            rec += struct.pack("<IH", pg, len(chunk)) + chunk
    open(out, "wb").write(rec)

def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "create":
        create(sys.argv[2:])
    elif cmd == "corrupt":
        corrupt(sys.argv[2], sys.argv[3])
    elif cmd == "fuzzpack":
        fuzzpack(sys.argv[2], sys.argv[3], int(sys.argv[4], 0))
    elif cmd == "guid":
        print("{%s}" % uuid.UUID(bytes_le=read_current_header(sys.argv[2])[32:48]))
    else:
        sys.exit(__doc__)

if __name__ == "__main__":
    main()
