#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""malformed.py - a deterministic suite of malformed VHD, VHDX and WIM images,
made from the real images of the shared corpus, and its runner.

  malformed.py list [--only REGEX]            the case names, one a line
  malformed.py make NAME OUTDIR               write one case's files (to debug it)
  malformed.py run --san BUILD_DIR [--jobs N] [--only REGEX] [--work DIR] [--keep]
                   [--no-mount]
      run every case and print "ok - NAME: ..." / "not ok - NAME: ..." lines
      (tests/t/46-malformed.t relays them as TAP) and a "# summary" line.

Every case is a copy of a corpus image (or a small set of files: parent
chains) with one kind of damage: a header field at a boundary value (with
the checksum made valid again, so the field itself is what the parser meets,
or left invalid), a truncation, an overlap, a loop, or random bit flips from
a fixed seed.  The same names always give the same bytes.

For a VHD/VHDX case the runner records the sha256 of every file, then runs,
under the ASan+UBSan build and a timeout, dism-imageinfo, disk-scan (which
opens the image read-only through the engine and reads all of it: see
tests/drivers/disk-scan.c) and dism /Get-ImageInfo (libdism).  Each run must end
in success or in a clean error: exit 1 with a stderr line that names the
image (dism: see below).  No sanitizer report, no signal, no timeout, the
tools agree on whether the image opens, and every file keeps its sha256.
Each case also says what it expects:
  same   the damage is in something the reader must not depend on: it must
         open, and read the same bytes as the undamaged image (its digest);
  error  the reader must refuse it (a clean error);
  any    either; a raw read (the damage removed every VHD/VHDX signature)
         must equal the file's own bytes.
VHD cases whose strict open fails on a checksum are read again in forensic
mode (-B), with the same rules.  WIM cases run `dism /Get-ImageInfo` (with
and without /Index:1; dism prints its errors on stdout, as Windows DISM
does, so a clean error is a non-zero exit with an "Error:" line naming the
file), and the cases marked for it `dism /Mount-Image /ReadOnly` (with
/CheckIntegrity for the integrity-table cases), which must give a clean error
and leave nothing mounted or recorded, or mount (the files readable; for
`same` cases equal to the corpus listing; for `any` cases a file may read
EIO, since a lazy mount reads damaged data only when a file is read) and
unmount, leaving only finished volumes in the WIM metadata cache.

MALFORMED_EXTRA=N adds N more seeded cases to each random family (a longer
campaign; the default suite has none of them).
"""
import bz2
import gzip
import errno
import hashlib
import multiprocessing
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

KiB, MiB, TiB = 1 << 10, 1 << 20, 1 << 40
U32, U64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.environ.get("CORPUS", os.path.join(os.path.dirname(ROOT), "shared", "corpus"))
TIMEOUT = 10            # seconds per engine/dism run
MOUNT_TIMEOUT = 40      # a mount synthesizes an NTFS volume

# ---- checksums and digests ----------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t
_C32C = _crc32c_table()

def crc32c(data):
    c, t = 0xFFFFFFFF, _C32C
    for x in data:
        c = t[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

_ZPAGE = bytes(4096)

def raw_digest(data, size=None):
    """disk-scan's digest of a disk whose bytes are data (zero-padded or cut
    to size): a fold of (page number, zlib CRC-32) over non-zero 4 KiB pages."""
    size = len(data) if size is None else size
    acc = 0
    mv = memoryview(data)
    for o in range(0, min(size, len(data)), 4096):
        p = bytes(mv[o:min(o + 4096, size)])
        if p == _ZPAGE[:len(p)]:
            continue
        v = ((o // 4096) << 32) | zlib.crc32(p + _ZPAGE[len(p):])
        acc = ((acc ^ v) * 0x100000001B3) & U64
    return "%016x" % acc

def put(b, off, fmt, val):
    if fmt == "raw":
        b[off:off + len(val)] = val
    else:
        struct.pack_into(fmt, b, off, val)

def get(b, off, fmt):
    return struct.unpack_from(fmt, b, off)[0]

# ---- special files in a case ----------------------------------------------------

class Special:
    def __init__(self, kind, target=None):
        self.kind, self.target = kind, target
FIFO = Special("fifo")
DIRECTORY = Special("dir")
def symlink(target):
    return Special("symlink", target)

# ---- the corpus images used ------------------------------------------------------

BASES = {
    "vhd-dyn": "vhd/dissect-win10-dynamic.vhd",
    "vhd-fixed": "vhd/dissect-win10-fixed.vhd.gz",
    "vhd-127g": "vhd/qemu-hyperv2012r2-dynamic.vhd",
    "vhd-512m": "vhd/nodevhd-win10-dynamic-512M.vhd.gz",
    "vhd-diff": "vhd/dfvfs-fat-orphan/fat-differential.vhd",
    "vhd-small": "vhd/dfvfs-image-chain/image.vhd",
    "vhdx-fixed": "vhdx/dissect-win10-fixed.vhdx.gz",
    "vhdx-dyn": "vhdx/dissect-win10-dynamic.vhdx",
    "vhdx-log": "vhdx/discutils-win10-dirty-log-1G.vhdx.gz",
    "vhdx-qlog": "vhdx/qemu-qemumade-dirty-log-10G.vhdx.bz2",
    "vhdx-1g": "vhdx/qemu-hyperv2012-dynamic-1G.vhdx.bz2",
    "vhdx-diff": "vhdx/dissect-win10-differencing-orphan.avhdx.gz",
    "wim-lzx": "wim/imagex-archive1-lzx.wim",
    "wim-xpress": "wim/imagex-simple1-xpress.wim",
    "wim-none": "wim/imagex-archive2-none.wim",
    "wim-multi": "wim/wimlib-mwl-MultiImage.wim",
    "wim-lzms": "wim/wimlib-mwl-LZMS.wim",
    "wim-boot": "wim/wimlib-mwl-BootXPRESS.wim",
    "wim-chunks": "wim/imagex-simple2-lzx.wim",
}
_base_cache = {}

def base(key):
    if key not in _base_cache:
        p = os.path.join(CORPUS, BASES[key])
        with open(p, "rb") as f:
            data = f.read()
        if p.endswith(".gz"):
            data = gzip.decompress(data)
        elif p.endswith(".bz2"):
            data = bz2.decompress(data)
        _base_cache[key] = data
    return _base_cache[key]

def base_name(key):
    n = os.path.basename(BASES[key])
    return re.sub(r"\.(gz|bz2)$", "", n)

# ---- cases ---------------------------------------------------------------------

class Case:
    """name; fmt vhd|vhdx|wim; build() -> (files {name: bytes|Special}, main);
    expect same|error|any; ref: the reference setup for 'same'; forensic: the
    expectation of a -B read (VHD); mount: WIM cases that are also mounted."""
    def __init__(self, name, fmt, build, expect, ref=None, forensic=None, mount=False):
        self.name, self.fmt, self.build, self.expect = name, fmt, build, expect
        self.ref, self.forensic, self.mount = ref, forensic, mount

CASES = []
_names = set()

def case(name, fmt, build, expect, **kw):
    assert expect in ("same", "error", "any"), expect
    assert name not in _names, "duplicate case " + name
    _names.add(name)
    CASES.append(Case(name, fmt, build, expect, **kw))

def single(key, fn, cls):
    """build() for one damaged copy of base key: fn(obj) edits cls(bytes)."""
    def build():
        o = cls(base(key))
        fn(o)
        return {base_name(key): bytes(o.b)}, base_name(key)
    return build

# ---- VHD -----------------------------------------------------------------------

def vhd_fix(b, at, n, coff):
    struct.pack_into(">I", b, at + coff, 0)
    struct.pack_into(">I", b, at + coff, (~sum(b[at:at + n])) & U32)

class Vhd:
    def __init__(self, data):
        self.b = bytearray(data)
    @property
    def end(self):
        return len(self.b) - 512
    def footers(self, where):
        r = []
        if where in ("end", "both"):
            r.append(self.end)
        if where in ("copy", "both") and self.b[0:8] == b"conectix" and len(self.b) >= 1536:
            r.append(0)
        return r
    def fput(self, off, fmt, val, where="both", fix=True):
        for at in self.footers(where):
            put(self.b, at + off, fmt, val)
            if fix:
                vhd_fix(self.b, at, 512, 64)
    def fget(self, off, fmt):
        return get(self.b, self.end + off, fmt)
    @property
    def hoff(self):
        return self.fget(16, ">Q")
    def hput(self, off, fmt, val, fix=True):
        put(self.b, self.hoff + off, fmt, val)
        if fix:
            vhd_fix(self.b, self.hoff, 1024, 36)
    def hget(self, off, fmt):
        return get(self.b, self.hoff + off, fmt)
    @property
    def bat_off(self):
        return self.hget(16, ">Q")
    def bput(self, i, val):
        struct.pack_into(">I", self.b, self.bat_off + 4 * i, val)
    def bget(self, i):
        return get(self.b, self.bat_off + 4 * i, ">I")
    def loc(self, k):
        """(code, space, length, offset) of locator entry k."""
        e = self.hoff + 576 + 24 * k
        code, space, ln, _, off = struct.unpack_from(">4sIIIQ", self.b, e)
        return code, space, ln, off
    def loc_put(self, k, code=None, space=None, length=None, offset=None, fix=True):
        e = self.hoff + 576 + 24 * k
        c, s, ln, off = self.loc(k)
        struct.pack_into(">4sIIIQ", self.b, e, code if code is not None else c,
                         space if space is not None else s,
                         length if length is not None else ln, 0,
                         offset if offset is not None else off)
        if fix:
            vhd_fix(self.b, self.hoff, 1024, 36)
    def loc_text(self, k, text, enc="utf-16-le", fix=True):
        """Store text in locator k's data space (same offset)."""
        data = text if isinstance(text, bytes) else text.encode(enc)
        _, space, _, off = self.loc(k)
        self.b[off:off + len(data)] = data
        self.loc_put(k, length=len(data), fix=fix)

def vhd_cases():
    D, F, H, N = "vhd-dyn", "vhd-fixed", "vhd-127g", "vhd-512m"

    def add(name, key, fn, expect, **kw):
        kw.setdefault("ref", key)
        case("vhd/%s/%s" % (key[4:], name), "vhd", single(key, fn, Vhd), expect, **kw)

    # -- footer fields (both copies, checksums made valid) --
    for key in (D, F):
        size = len(base(key))
        cur = Vhd(base(key)).fget(48, ">Q")
        dyn = key == D
        for v in (0, 1, U32):
            add("footer-features-%#x" % v, key, lambda o, v=v: o.fput(8, ">I", v), "same")
        for v, e in ((0, "error"), (0x00020000, "error"), (0x0001FFFF, "same"), (U32, "error")):
            add("footer-version-%#x" % v, key, lambda o, v=v: o.fput(12, ">I", v), e)
        for v in (0, U32):
            add("footer-timestamp-%#x" % v, key, lambda o, v=v: o.fput(24, ">I", v), "same")
        add("footer-creator-binary", key, lambda o: o.fput(28, "raw", b"\xff\x00\x1b\x7f" + b"\xfe\xed\xfa\xce" + b"\x00\x01\x02\x03"), "same")
        for v in (0, U64):
            add("footer-original-size-%#x" % v, key, lambda o, v=v: o.fput(40, ">Q", v), "same")
        for v in (0, U32):
            add("footer-geometry-%#x" % v, key, lambda o, v=v: o.fput(56, ">I", v), "same")
        for v in (b"\0" * 16, b"\xff" * 16):
            add("footer-unique-id-%s" % v[:1].hex(), key, lambda o, v=v: o.fput(68, "raw", v), "same")
        add("footer-saved-state-0xff", key, lambda o: o.fput(84, "B", 0xFF), "same")
        add("footer-reserved-garbage", key, lambda o: o.fput(85, "raw", bytes(range(200, 256)) * 7), "same")
        for v in (0, 1, 5, 0x80000003, U32):
            add("footer-type-%#x" % v, key, lambda o, v=v: o.fput(60, ">I", v), "error")
        add("footer-type-%s" % ("fixed" if dyn else "dynamic"), key,
            lambda o, dyn=dyn: o.fput(60, ">I", 2 if dyn else 3), "error")
        add("footer-type-differencing", key, lambda o: o.fput(60, ">I", 4), "error")
        # current size: small, odd, one sector more than the BAT/data holds, huge
        for v, e in ((0, "any"), (1, "any"), (511, "any"), (513, "any"), (cur - 512, "any"),
                     (cur + 512, "error"), (cur + 2 * MiB, "error"), (2 * TiB, "error"),
                     (1 << 63, "error"), (U64 - 511, "error"), (U64, "error")):
            add("footer-current-size-%#x" % v, key, lambda o, v=v: o.fput(48, ">Q", v), e)
        # checksums: only the end footer (a dynamic VHD falls back to the copy), both
        add("footer-checksum-end", key, lambda o: o.fput(64, ">I", o.fget(64, ">I") ^ 1, "end", False),
            "same" if dyn else "error", forensic="same")
        if dyn:
            add("footer-checksum-both", key, lambda o: o.fput(64, ">I", o.fget(64, ">I") ^ 1, "both", False),
                "error", forensic="same")
            add("footer-checksum-copy", key, lambda o: o.fput(64, ">I", 0, "copy", False), "same")
        # cookies: the end one only (the copy is used), both (no VHD left: raw)
        add("footer-cookie-end-zero", key, lambda o: o.fput(0, "raw", bytes(8), "end", False),
            "same" if dyn else "any")
        add("footer-cookie-both-zero", key, lambda o: o.fput(0, "raw", bytes(8), "both", False), "any")
        add("footer-cookie-both-conectiX", key, lambda o: o.fput(0, "raw", b"conectiX", "both"), "any")
        # data offset: fixed images must ignore it; a dynamic one must find its header
        if dyn:
            for v in (0, 1, 511, 513, 1024, 1536, size - 1024, size - 512, size, size + 512,
                      1 << 63, U64 - 1023, U64):
                add("footer-data-offset-%#x" % v, key, lambda o, v=v: o.fput(16, ">Q", v), "error")
        else:
            for v in (0, 512, 1 << 63):
                add("footer-data-offset-%#x" % v, key, lambda o, v=v: o.fput(16, ">Q", v), "same")

    # -- dynamic header fields (checksum made valid) --
    size = len(base(D))
    add("header-cookie-zero", D, lambda o: o.hput(0, "raw", bytes(8)), "error")
    add("header-cookie-cxsparsE", D, lambda o: o.hput(0, "raw", b"cxsparsE"), "error")
    add("header-data-offset-0", D, lambda o: o.hput(8, ">Q", 0), "same")
    for v, e in ((0, "error"), (511, "error"), (512, "error"), (1024, "error"), (1535, "error"),
                 (2048, "any"), (size - 20, "error"), (size - 512, "error"), (size, "error"),
                 (1 << 63, "error"), (U64 - 3, "error"), (U64, "error")):
        add("header-table-offset-%#x" % v, D, lambda o, v=v: o.hput(16, ">Q", v), e)
    for v in (0, U32):
        add("header-version-%#x" % v, D, lambda o, v=v: o.hput(24, ">I", v), "any")
    for v, e in ((0, "error"), (4, "error"), (6, "same"), (1 << 20, "error"), (1 << 30, "error"),
                 (0x7FFFFFFF, "error"), (U32, "error")):
        add("header-max-entries-%#x" % v, D, lambda o, v=v: o.hput(28, ">I", v), e)
    for v, e in ((0, "error"), (1, "error"), (511, "error"), (512, "error"), (513, "error"),
                 (MiB, "error"), (2 * MiB - 1, "error"), (2 * MiB + 512, "error"),
                 (3 * MiB, "error"), (4 * MiB, "any"), (256 * MiB, "any"), (512 * MiB, "error"),
                 (1 << 31, "error"), (U32, "error")):
        add("header-block-size-%#x" % v, D, lambda o, v=v: o.hput(32, ">I", v), e)
    add("header-checksum", D, lambda o: o.hput(36, ">I", o.hget(36, ">I") ^ 0x80, False), "error",
        forensic="same")
    add("header-parent-uid-random", D, lambda o: o.hput(40, "raw", bytes(range(1, 17))), "same")
    add("header-parent-name-bad-utf16", D, lambda o: o.hput(64, "raw", b"\xd8\x00" * 256), "same")
    add("header-locators-garbage", D,
        lambda o: o.hput(576, "raw", (b"W2ru" + struct.pack(">IIIQ", U32, U32, 0, U64)) * 8), "same")

    # -- BAT entries --
    e0, e1, e3 = (Vhd(base(D)).bget(i) for i in (0, 1, 3))
    data_end_sect = (size - 512) // 512
    for name, i, v, e in (("past-eof", 2, 0x7FFFFFFF, "error"),
                          ("0xfffffffe", 2, 0xFFFFFFFE, "error"),
                          ("at-footer", 2, data_end_sect, "error"),
                          ("last-sector-short", 2, data_end_sect - 4096, "error"),
                          ("into-footer-copy", 2, 0, "error"),
                          ("into-header", 2, 1, "error"),
                          ("into-header-end", 2, 2, "error"),
                          ("into-bat", 2, 3, "error"),
                          ("same-as-block0", 2, e0, "error"),
                          ("overlaps-block0-by-1", 2, e0 + 1, "error"),
                          ("overlaps-block0-tail", 2, e0 + 4096, "error"),
                          ("overlaps-block3-head", 1, e3 - 4096, "error"),
                          ("after-last-block", 2, e1 + 4097, "error"),
                          ("block0-free", 0, U32, "any"),
                          ("block1-past-eof", 1, 0x00FFFFFF, "error")):
        add("bat-%s" % name, D, lambda o, i=i, v=v: o.bput(i, v), e)
    add("bat-all-free", D, lambda o: [o.bput(i, U32) for i in range(5)], "any")
    add("bat-all-zero", D, lambda o: [o.bput(i, 0) for i in range(5)], "error")
    add("bat-swap-0-1", D, lambda o: (o.bput(0, e1), o.bput(1, e0)), "any")
    add("bat-every-block-same", D, lambda o: [o.bput(i, e3) for i in range(5)], "error")
    add("bitmap-block0-zero", D, lambda o: put(o.b, e0 * 512, "raw", bytes(512)), "any")
    add("bitmap-block0-random", D,
        lambda o: put(o.b, e0 * 512, "raw", random.Random(7).randbytes(512)), "any")
    # the 127 GiB image: a large BAT, nothing allocated
    h = Vhd(base(H))
    hsize = len(base(H))
    for name, i, v, e in (("bat-last-past-eof", 65023, 0x7FFFFFFF, "error"),
                          ("bat-last-into-header", 65023, 1, "error"),
                          ("bat-first-into-bat", 0, 3, "error"),
                          ("bat-mid-at-footer", 30000, (hsize - 512) // 512, "error")):
        add(name, H, lambda o, i=i, v=v: o.bput(i, v), e)
    add("bat-all-zero", H, lambda o: put(o.b, o.bat_off, "raw", bytes(65024 * 4)), "error")
    add("header-max-entries-0xffffffff", H, lambda o: o.hput(28, ">I", U32), "error")
    add("header-max-entries-65023", H, lambda o: o.hput(28, ">I", 65023), "error")
    add("footer-current-size-1tib", H, lambda o: o.fput(48, ">Q", TiB), "error")
    add("footer-current-size-minus-512", H, lambda o: o.fput(48, ">Q", h.fget(48, ">Q") - 512), "any")
    add("header-block-size-512", H, lambda o: o.hput(32, ">I", 512), "error")
    # the 512 MiB image (read through its extents)
    n = Vhd(base(N))
    n16, n17 = n.bget(16), n.bget(17)
    add("bat-16-past-eof", N, lambda o: o.bput(16, 0x7FFFFFFF), "error")
    add("bat-16-equals-17", N, lambda o: o.bput(16, n17), "error")
    add("bat-17-overlaps-16", N, lambda o: o.bput(17, n16 + 8), "error")
    add("footer-current-size-2tib", N, lambda o: o.fput(48, ">Q", 2 * TiB), "error")
    add("truncated-half", N, lambda o: o.b.__delitem__(slice(len(o.b) // 2, None)), "error")
    add("header-block-size-1m", N, lambda o: o.hput(32, ">I", MiB), "error")

    # -- truncations and extensions --
    def trunc(n_):
        return lambda o: o.b.__delitem__(slice(n_, None))
    def extend(data):
        return lambda o: o.b.extend(data)
    for n_, e in ((0, "any"), (1, "any"), (8, "any"), (511, "any"), (512, "any"), (513, "any"),
                  (1024, "any"), (1535, "any"), (1536, "any"), (1556, "error"), (2048, "error"),
                  (7680, "error"), (8192, "error"), (MiB, "error"), (e3 * 512, "error"),
                  (e1 * 512 + 512, "error"), (size - 513, "same"), (size - 512, "same"),
                  (size - 511, "any"), (size - 256, "any"), (size - 1, "same")):
        add("truncated-at-%d" % n_, D, trunc(n_), e)
    add("extended-1-byte", D, extend(b"\0"), "same")
    add("extended-1-sector", D, extend(bytes(512)), "same")
    add("extended-garbage", D, extend(b"\xa5" * 1000), "same")
    fsize = len(base(F))
    for n_, e in ((0, "any"), (511, "any"), (512, "any"), (4096, "any"), (fsize // 2, "any"),
                  (fsize - 513, "any"), (fsize - 512, "any"), (fsize - 511, "any"),
                  (fsize - 1, "same")):
        add("truncated-at-%d" % n_, F, trunc(n_), e)
    add("extended-1-sector", F, extend(bytes(512)), "any")
    add("footer-copy-at-0", F, lambda o: put(o.b, 0, "raw", o.b[o.end:o.end + 512]), "any")

    vhd_chain_cases()


# ---- VHD parent chains -----------------------------------------------------------
# The orphaned differencing VHD of the corpus gets a parent: the dynamic one,
# with its unique id set to the id the child wants.

CHILD = "fat-differential.vhd"
PARENT = "fat-parent.vhd"

def vhd_chain(child_fn=None, parent_fn=None, extra=None, parent=True):
    def build():
        c = Vhd(base("vhd-diff"))
        files = {}
        if parent:
            p = Vhd(base("vhd-dyn"))
            p.fput(68, "raw", bytes(c.hget(40, "16s")))
            if parent_fn:
                r = parent_fn(p)
                files[PARENT] = r if r is not None else bytes(p.b)
            else:
                files[PARENT] = bytes(p.b)
        if child_fn:
            child_fn(c)
        files[CHILD] = bytes(c.b)
        if extra:
            extra(files)
        return files, CHILD
    return build

def vhd_chain_cases():
    def add(name, expect, **kw):
        kw.setdefault("ref", "vhd-chain")
        case("vhd/chain/%s" % name, "vhd", vhd_chain(**kw.pop("b")), expect, **kw)

    W2KU, W2RU = 0, 1      # locator entries of the corpus child
    c = Vhd(base("vhd-diff"))
    loc_off = {k: c.loc(k)[3] for k in (0, 1)}
    add("parent-missing", "error", b=dict(parent=False))
    add("parent-uid-mismatch", "error", b=dict(parent_fn=lambda p: p.fput(68, "raw", bytes(16))))
    add("parent-is-vhdx", "error", b=dict(parent_fn=lambda p: base("vhdx-dyn")))
    add("parent-is-raw-zeroes", "error", b=dict(parent_fn=lambda p: bytes(MiB)))
    add("parent-is-empty", "error", b=dict(parent_fn=lambda p: b""))
    add("parent-truncated", "error", b=dict(parent_fn=lambda p: bytes(p.b[:MiB])))
    add("parent-bad-checksums", "error", forensic="same",
        b=dict(parent_fn=lambda p: p.fput(64, ">I", 1, "both", False)))
    def smaller(p):
        s = Vhd(base("vhd-small"))
        s.fput(68, "raw", bytes(c.hget(40, "16s")))
        return bytes(s.b)
    add("parent-smaller", "any", b=dict(parent_fn=smaller))
    add("parent-fifo", "error", b=dict(extra=lambda f: f.__setitem__(PARENT, FIFO)))
    add("parent-directory", "error", b=dict(extra=lambda f: f.__setitem__(PARENT, DIRECTORY)))
    add("parent-symlink-to-child", "error", b=dict(extra=lambda f: f.__setitem__(PARENT, symlink(CHILD))))
    add("parent-symlink-loop", "error", b=dict(extra=lambda f: f.__setitem__(PARENT, symlink(PARENT))))
    add("parent-uid-zero", "error", b=dict(child_fn=lambda o: o.hput(40, "raw", bytes(16))))
    # self-parents, through each kind of locator and through the parent name
    add("self-parent-w2ru", "error", b=dict(child_fn=lambda o: o.loc_text(W2RU, ".\\" + CHILD)))
    add("self-parent-w2ku", "error",
        b=dict(child_fn=lambda o: (o.loc_put(W2RU, code=b"\0\0\0\0"), o.loc_text(W2KU, "C:\\x\\" + CHILD))))
    add("self-parent-name", "error",
        b=dict(child_fn=lambda o: (o.loc_put(W2RU, code=b"\0\0\0\0"), o.loc_put(W2KU, code=b"\0\0\0\0"),
                                   o.hput(64, "raw", (CHILD + "\0").encode("utf-16-be")))))
    add("self-parent-macx", "error",
        b=dict(child_fn=lambda o: (o.loc_put(W2RU, code=b"\0\0\0\0"),
                                   o.loc_put(W2KU, code=b"MacX"),
                                   o.loc_text(W2KU, ("file:///nonexistent/" + CHILD).encode()))))
    # loops of two and three images
    def loop(names):
        def extra(files):
            for i, n_ in enumerate(names):
                o = Vhd(files[CHILD])
                o.loc_text(W2RU, ".\\" + names[(i + 1) % len(names)])
                files[n_] = bytes(o.b)
        return extra
    def loop_case(names):
        def build():
            files, _ = vhd_chain(extra=loop(names), parent=False)()
            del files[CHILD]
            return files, names[0]
        return build
    case("vhd/chain/loop-of-2", "vhd", loop_case(["a.vhd", "b.vhd"]), "error")
    case("vhd/chain/loop-of-3", "vhd", loop_case(["a.vhd", "b.vhd", "c.vhd"]), "error")
    # chains: 20 deep (valid, same data as the short chain) and 34 deep (refused)
    def deep(n_, valid):
        def build():
            files, _ = vhd_chain()()
            child = files.pop(CHILD)
            want = Vhd(child).hget(40, "16s")
            names = ["c%02d.vhd" % i for i in range(n_)]
            for i in reversed(range(n_)):
                o = Vhd(child)
                nxt = names[i + 1] if i + 1 < n_ else PARENT
                o.loc_text(W2RU, ".\\" + nxt)
                o.loc_put(W2KU, code=b"\0\0\0\0")
                o.hput(40, "raw", want)
                if valid:
                    want = uuid.UUID(int=0x1234 + i).bytes
                    o.fput(68, "raw", want)
                files[names[i]] = bytes(o.b)
            return files, names[0]
        return build
    case("vhd/chain/depth-20", "vhd", deep(20, True), "same", ref="vhd-chain")
    case("vhd/chain/depth-34", "vhd", deep(34, False), "error")
    # locators pointing out of the file, overlapping, huge, undecodable
    for name, k, kw, e in (("w2ru-offset-past-eof", W2RU, dict(offset=len(c.b)), "same"),
                           ("w2ru-offset-huge", W2RU, dict(offset=U64 - 10), "same"),
                           ("w2ru-length-huge", W2RU, dict(length=U32), "same"),
                           ("w2ru-length-64k-plus-1", W2RU, dict(length=64 * KiB + 1), "same"),
                           ("w2ru-length-zero", W2RU, dict(length=0), "same"),
                           ("w2ru-length-odd", W2RU, dict(length=33), "any"),
                           ("w2ru-space-huge", W2RU, dict(space=U32), "same"),
                           ("w2ru-into-footer-copy", W2RU, dict(offset=0), "same"),
                           ("w2ru-into-header", W2RU, dict(offset=512, length=1024), "same"),
                           ("w2ru-into-bat", W2RU, dict(offset=8192), "same"),
                           ("w2ru-overlaps-w2ku", W2RU, dict(offset=loc_off[W2KU], length=84), "any"),
                           ("w2ru-ends-at-eof", W2RU, dict(offset=len(c.b) - 32, length=32), "same"),
                           ("w2ku-unknown-code", W2KU, dict(code=b"W2xx"), "same")):
        add("locator-" + name, e, b=dict(child_fn=lambda o, k=k, kw=kw: o.loc_put(k, **kw)))
    add("locator-w2ku-past-eof-w2ru-missing", "same",
        b=dict(child_fn=lambda o: (o.loc_put(W2KU, offset=len(c.b)), o.loc_put(W2RU, code=b"\0\0\0\0"))))
    add("locators-all-w2ru-huge", "any",
        b=dict(child_fn=lambda o: [o.loc_put(k, code=b"W2ru", space=U32, length=U32, offset=U64 - k)
                                   for k in range(8)]))
    add("locators-none-name-only", "same",
        b=dict(child_fn=lambda o: [o.loc_put(k, code=b"\0\0\0\0") for k in range(8)]))
    add("locators-none-name-garbage", "error",
        b=dict(child_fn=lambda o: ([o.loc_put(k, code=b"\0\0\0\0") for k in range(8)],
                                   o.hput(64, "raw", b"\xdc\x00" * 256))))
    add("locator-w2ru-lone-surrogate", "same", b=dict(child_fn=lambda o: o.loc_text(W2RU, b"\x00\xd8a\x00")))
    add("locator-w2ru-traversal", "same",
        b=dict(child_fn=lambda o: o.loc_text(W2RU, "..\\" * 24 + "etc\\passwd")))
    add("locator-w2ru-dot", "same", b=dict(child_fn=lambda o: o.loc_text(W2RU, ".")))
    add("locator-w2ru-4095-chars", "same", b=dict(child_fn=lambda o: o.loc_text(W2RU, "a" * 4095)))
    add("locator-w2ru-32k-chars", "same", b=dict(child_fn=lambda o: o.loc_text(W2RU, "\\" * 32000)))
    # the later kinds are only tried when W2ru and W2ku give nothing
    def only(code, text):
        return lambda o: (o.loc_put(W2KU, code=b"\0\0\0\0"), o.loc_put(W2RU, code=code),
                          o.loc_text(W2RU, text))
    add("locator-wi2r-unterminated", "same", b=dict(child_fn=only(b"Wi2r", b"\xff" * 512)))
    add("locator-wi2k-absolute", "same", b=dict(child_fn=only(b"Wi2k", b"C:\\y\\" + PARENT.encode())))
    add("locator-macx-escapes", "same",
        b=dict(child_fn=only(b"MacX", b"file://host/%zz/%/%4/fat%2Dparent.vhd")))
    add("locator-macx-no-slash", "same", b=dict(child_fn=only(b"MacX", b"file://" + b"%41" * 300)))
    add("locator-macx-percent-at-end", "same", b=dict(child_fn=only(b"MacX", b"file:///tmp/%")))
    add("header-checksum", "error", forensic="same",
        b=dict(child_fn=lambda o: o.hput(36, ">I", 0, False)))
    add("bat-into-locator-data", "any", b=dict(child_fn=lambda o: o.bput(0, loc_off[W2RU] // 512)))
    add("bitmap-random", "any",
        b=dict(child_fn=lambda o: put(o.b, o.bget(0) * 512, "raw", random.Random(11).randbytes(512))))
    add("bitmap-zero", "any", b=dict(child_fn=lambda o: put(o.b, o.bget(0) * 512, "raw", bytes(512))))


# ---- VHDX ----------------------------------------------------------------------

def guid(s):
    return uuid.UUID(s).bytes_le

G_BAT = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
G_META = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
G_ITEMS = {"fparams": guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"),
           "vsize": guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8"),
           "page83": guid("BECA12AB-B2E6-4523-93EF-C309E000C746"),
           "lss": guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F"),
           "pss": guid("CDA348C7-445D-4471-9CC9-E9885251C556"),
           "ploc": guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")}
G_PLOC_VHDX = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")
G_UNKNOWN = guid("01234567-89ab-cdef-0123-456789abcdef")
HDR = (64 * KiB, 128 * KiB)
RT = (192 * KiB, 256 * KiB)

class Vhdx:
    def __init__(self, data):
        self.b = bytearray(data)
    # headers
    def hfix(self, i):
        at = HDR[i]
        struct.pack_into("<I", self.b, at + 4, 0)
        struct.pack_into("<I", self.b, at + 4, crc32c(self.b[at:at + 4096]))
    def hput(self, i, off, fmt, val, fix=True):
        for j in ((0, 1) if i == "both" else (i,)):
            put(self.b, HDR[j] + off, fmt, val)
            if fix:
                self.hfix(j)
    def hget(self, i, off, fmt):
        return get(self.b, HDR[i] + off, fmt)
    @property
    def cur(self):
        return 1 if self.hget(1, 8, "<Q") > self.hget(0, 8, "<Q") else 0
    # region tables
    def rfix(self, i):
        at = RT[i]
        struct.pack_into("<I", self.b, at + 4, 0)
        struct.pack_into("<I", self.b, at + 4, crc32c(self.b[at:at + 64 * KiB]))
    def rput(self, off, fmt, val, which="both", fix=True):
        for j in ((0, 1) if which == "both" else (which,)):
            put(self.b, RT[j] + off, fmt, val)
            if fix:
                self.rfix(j)
    def regions(self):
        n = get(self.b, RT[0] + 8, "<I")
        out = {}
        for i in range(n):
            g, off, ln, req = struct.unpack_from("<16sQII", self.b, RT[0] + 16 + 32 * i)
            out["bat" if g == G_BAT else "meta" if g == G_META else g.hex()] = (i, off, ln, req)
        return out
    def region_put(self, name, field, val):
        i = self.regions()[name][0]
        off, fmt = {"guid": (0, "raw"), "offset": (16, "<Q"), "length": (24, "<I"),
                    "required": (28, "<I")}[field]
        self.rput(16 + 32 * i + off, fmt, val)
    # metadata
    @property
    def moff(self):
        return self.regions()["meta"][1]
    def items(self):
        n = get(self.b, self.moff + 10, "<H")
        out = {}
        for i in range(n):
            g, io, il, fl = struct.unpack_from("<16sIII", self.b, self.moff + 32 + 32 * i)
            name = next((k for k, v in G_ITEMS.items() if v == g), g.hex())
            out[name] = (i, io, il, fl)
        return out
    def item_entry_put(self, name, field, val):
        i = self.items()[name][0]
        off, fmt = {"guid": (0, "raw"), "offset": (16, "<I"), "length": (20, "<I"),
                    "flags": (24, "<I")}[field]
        put(self.b, self.moff + 32 + 32 * i + off, fmt, val)
    def item_put(self, name, off, fmt, val):
        put(self.b, self.moff + self.items()[name][1] + off, fmt, val)
    def item_get(self, name, off, fmt):
        return get(self.b, self.moff + self.items()[name][1] + off, fmt)
    def add_item(self, g, data, flags, at=None):
        """Append a metadata table entry; its data at meta offset `at`."""
        n = get(self.b, self.moff + 10, "<H")
        at = at if at is not None else 256 * KiB + 4096 * n
        struct.pack_into("<16sIII", self.b, self.moff + 32 + 32 * n, g, at, len(data), flags)
        struct.pack_into("<H", self.b, self.moff + 10, n + 1)
        put(self.b, self.moff + at, "raw", data)
    # BAT
    @property
    def boff(self):
        return self.regions()["bat"][1]
    def bput(self, i, val):
        struct.pack_into("<Q", self.b, self.boff + 8 * i, val)
    def bget(self, i):
        return get(self.b, self.boff + 8 * i, "<Q")
    # log (entries do not wrap in these images)
    @property
    def loff(self):
        return self.hget(self.cur, 72, "<Q")
    def entries(self):
        """[(sector, seq, nsect)] of log entries with the header's LogGuid."""
        lg = bytes(self.b[HDR[self.cur] + 48:HDR[self.cur] + 64])
        out = []
        for s in range(self.hget(self.cur, 68, "<I") // 4096):
            at = self.loff + 4096 * s
            if self.b[at:at + 4] == b"loge" and self.b[at + 32:at + 48] == lg:
                out.append((s, get(self.b, at + 16, "<Q"), get(self.b, at + 8, "<I") // 4096))
        return out
    def head(self):
        return max(self.entries(), key=lambda e: e[1])[0]
    def efix(self, s):
        at = self.loff + 4096 * s
        ln = get(self.b, at + 8, "<I")
        ln = ln if 0 < ln <= 64 * 4096 and ln % 4096 == 0 else 4096
        struct.pack_into("<I", self.b, at + 4, 0)
        struct.pack_into("<I", self.b, at + 4, crc32c(self.b[at:at + ln]))
    def eput(self, s, off, fmt, val, fix=True):
        put(self.b, self.loff + 4096 * s + off, fmt, val)
        if fix:
            self.efix(s)
    def dput(self, s, off, fmt, val):
        """Edit the first data sector of the entry at s, then fix its checksum."""
        put(self.b, self.loff + 4096 * (s + 1) + off, fmt, val)
        self.efix(s)
    def eget(self, s, off, fmt):
        return get(self.b, self.loff + 4096 * s + off, fmt)

def vhdx_locator(pairs, gd=G_PLOC_VHDX, count=None):
    n = len(pairs)
    hdr = bytearray(20 + 12 * n)
    hdr[0:16] = gd
    struct.pack_into("<HH", hdr, 16, 0, n if count is None else count)
    blob = bytearray()
    for i, (k, v) in enumerate(pairs):
        kb = k.encode("utf-16-le") if isinstance(k, str) else k
        vb = v.encode("utf-16-le") if isinstance(v, str) else v
        ko = len(hdr) + len(blob); blob += kb
        vo = len(hdr) + len(blob); blob += vb
        struct.pack_into("<IIHH", hdr, 20 + 12 * i, ko, vo, len(kb), len(vb))
    return bytes(hdr + blob)

def vhdx_cases():
    XF, XD, XL, XQ, X1 = "vhdx-fixed", "vhdx-dyn", "vhdx-log", "vhdx-qlog", "vhdx-1g"

    def add(name, key, fn, expect, **kw):
        kw.setdefault("ref", key)
        case("vhdx/%s/%s" % (key[5:], name), "vhdx", single(key, fn, Vhdx), expect, **kw)

    d = Vhdx(base(XD))
    size = len(d.b)
    cur, old = d.cur, 1 - d.cur
    # -- file identifier --
    add("ident-signature-zero", XD, lambda o: put(o.b, 0, "raw", bytes(8)), "any")
    add("ident-creator-lone-surrogates", XD, lambda o: put(o.b, 8, "raw", b"\x00\xd8" * 256), "same")
    add("ident-creator-unterminated", XD, lambda o: put(o.b, 8, "raw", b"A\x00" * 256), "same")
    # -- headers --
    for i, nm in ((cur, "current"), (old, "other")):
        add("header-%s-signature-zero" % nm, XD, lambda o, i=i: o.hput(i, 0, "raw", bytes(4), False), "same")
        add("header-%s-checksum" % nm, XD, lambda o, i=i: o.hput(i, 4, "<I", 0, False), "same")
        add("header-%s-seq-max" % nm, XD, lambda o, i=i: o.hput(i, 8, "<Q", U64), "same")
        add("header-%s-seq-zero" % nm, XD, lambda o, i=i: o.hput(i, 8, "<Q", 0), "same")
    add("headers-both-signature-zero", XD, lambda o: o.hput("both", 0, "raw", bytes(4), False), "error")
    add("headers-both-checksum", XD, lambda o: o.hput("both", 4, "<I", 1, False), "error")
    add("headers-equal-seq", XD, lambda o: o.hput("both", 8, "<Q", 77), "same")
    add("headers-both-seq-max", XD, lambda o: o.hput("both", 8, "<Q", U64), "same")
    add("headers-other-newer-and-broken", XD,
        lambda o: (o.hput(old, 8, "<Q", U64), o.hput(old, 66, "<H", 9)), "any")
    for v in (0, 2, 0xFFFF):
        add("header-version-%d" % v, XD, lambda o, v=v: o.hput(cur, 66, "<H", v), "error")
    add("header-log-version-1", XD, lambda o: o.hput(cur, 64, "<H", 1), "error")
    for v in (0, 1, 4096, MiB + 4096, 0xFFF00000, U32):
        add("header-log-length-%#x" % v, XD, lambda o, v=v: o.hput(cur, 68, "<I", v), "error")
    for v, e in ((0, "error"), (4096, "error"), (64 * KiB, "error"), (MiB + 4096, "error"),
                 (2 * MiB, "error"), (3 * MiB, "error"), (size - MiB, "any"), (size, "error"),
                 (1 << 63, "error"), (U64 - MiB + 1, "error")):
        add("header-log-offset-%#x" % v, XD, lambda o, v=v: o.hput(cur, 72, "<Q", v), e)
    add("header-log-guid-random", XD, lambda o: o.hput("both", 48, "raw", bytes(range(16))), "same")
    add("header-write-guids-zero", XD, lambda o: o.hput("both", 16, "raw", bytes(32)), "same")
    # -- region tables --
    add("rt1-signature-zero", XD, lambda o: o.rput(0, "raw", bytes(4), 0, False), "same")
    add("rt1-checksum", XD, lambda o: o.rput(4, "<I", 0, 0, False), "same")
    add("rt-both-checksum", XD, lambda o: o.rput(4, "<I", 1, "both", False), "error")
    add("rt-both-signature-zero", XD, lambda o: o.rput(0, "raw", bytes(4), "both", False), "error")
    for v, e in ((0, "error"), (1, "error"), (3, "same"), (2047, "same"), (2048, "error"),
                 (0x10000, "error"), (U32, "error")):
        add("rt-count-%#x" % v, XD, lambda o, v=v: o.rput(8, "<I", v), e)
    add("rt-reserved-garbage", XD, lambda o: o.rput(12, "<I", U32), "same")
    for reg in ("bat", "meta"):
        other = 3 * MiB if reg == "meta" else 2 * MiB
        for v, e in ((0, "error"), (64 * KiB, "error"), (MiB, "error"), (MiB + 4096, "error"),
                     (other, "error"), (size, "error"), (size - MiB, "any"), (1 << 63, "error"),
                     (U64 - MiB + 1, "error")):
            add("region-%s-offset-%#x" % (reg, v), XD,
                lambda o, r=reg, v=v: o.region_put(r, "offset", v), e)
        for v, e in ((0, "error"), (4096, "error"), (2 * MiB, "error"), (0xFFF00000, "error"),
                     (U32, "error")):
            add("region-%s-length-%#x" % (reg, v), XD,
                lambda o, r=reg, v=v: o.region_put(r, "length", v), e)
        add("region-%s-unknown-guid" % reg, XD, lambda o, r=reg: o.region_put(r, "guid", G_UNKNOWN), "error")
        add("region-%s-not-required" % reg, XD, lambda o, r=reg: o.region_put(r, "required", 0), "same")
    def dup_region(o, which):
        i, off, ln, req = o.regions()[which]
        o.rput(8, "<I", 3)
        o.rput(16 + 64, "raw", struct.pack("<16sQII", G_BAT if which == "bat" else G_META, off, ln, req))
    add("region-bat-twice", XD, lambda o: dup_region(o, "bat"), "error")
    add("region-meta-twice", XD, lambda o: dup_region(o, "meta"), "error")
    add("region-unknown-required", XD,
        lambda o: (o.rput(8, "<I", 3), o.rput(16 + 64, "raw", struct.pack("<16sQII", G_UNKNOWN, 8 * MiB, MiB, 1))), "error")
    add("region-unknown-optional", XD,
        lambda o: (o.rput(8, "<I", 3), o.rput(16 + 64, "raw", struct.pack("<16sQII", G_UNKNOWN, U64, U32, 0))), "same")
    add("regions-swapped", XD,
        lambda o: (o.region_put("bat", "offset", 2 * MiB), o.region_put("meta", "offset", 3 * MiB)), "error")
    add("region-meta-overlaps-bat", XD, lambda o: o.region_put("meta", "length", 2 * MiB), "error")
    # -- metadata table and items --
    add("meta-signature-zero", XD, lambda o: put(o.b, o.moff, "raw", bytes(8)), "error")
    # Windows left a stale copy of the Page 83 entry after the five counted ones
    add("meta-count-6-stale-entry", XD, lambda o: put(o.b, o.moff + 10, "<H", 6), "error")
    def count_zeroed(v):
        def f(o):
            put(o.b, o.moff + 32 + 32 * 5, "raw", bytes(64 * KiB - 32 - 32 * 5))
            put(o.b, o.moff + 10, "<H", v)
        return f
    for v, e in ((6, "same"), (2047, "same"), (2048, "error"), (0xFFFF, "error")):
        add("meta-count-%#x-zero-entries" % v, XD, count_zeroed(v), e)
    mlen = d.regions()["meta"][2]
    for item in ("fparams", "vsize", "lss", "pss", "page83"):
        for v in (0, 0xFFFF, mlen - 4, mlen, U32):
            add("meta-%s-offset-%#x" % (item, v), XD,
                lambda o, it=item, v=v: o.item_entry_put(it, "offset", v), "error")
        for v in (0, 3, 1024 * KiB + 1, U32):
            add("meta-%s-length-%#x" % (item, v), XD,
                lambda o, it=item, v=v: o.item_entry_put(it, "length", v), "error")
    add("meta-vsize-twice", XD, lambda o: o.add_item(G_ITEMS["vsize"], struct.pack("<Q", 10 * MiB), 6), "error")
    add("meta-page83-twice", XD, lambda o: o.add_item(G_ITEMS["page83"], bytes(16), 6), "error")
    add("meta-unknown-required", XD, lambda o: o.add_item(G_UNKNOWN, bytes(8), 4), "error")
    add("meta-unknown-optional", XD, lambda o: o.add_item(G_UNKNOWN, bytes(8), 0), "same")
    add("meta-vsize-missing", XD, lambda o: o.item_entry_put("vsize", "guid", G_UNKNOWN), "error")
    add("meta-lss-missing", XD, lambda o: o.item_entry_put("lss", "guid", G_UNKNOWN), "error")
    add("meta-page83-unknown-required", XD, lambda o: o.item_entry_put("page83", "guid", G_UNKNOWN), "error")
    add("meta-page83-missing", XD,
        lambda o: (o.item_entry_put("page83", "flags", 0), o.item_entry_put("page83", "guid", G_UNKNOWN)), "same")
    add("meta-vsize-shares-fparams", XD,
        lambda o: o.item_entry_put("vsize", "offset", o.items()["fparams"][1]), "any")
    for v, e in ((0, "error"), (1, "error"), (4096, "error"), (512 * KiB, "error"),
                 (MiB - 1, "error"), (MiB, "any"), (3 * MiB, "error"), (256 * MiB, "any"),
                 (512 * MiB, "error"), (1 << 31, "error"), (U32, "error")):
        add("meta-block-size-%#x" % v, XD, lambda o, v=v: o.item_put("fparams", 0, "<I", v), e)
    for v, e in ((1, "same"), (2, "error"), (0xFFFFFFFC, "same"), (U32, "error")):
        add("meta-fparams-flags-%#x" % v, XD, lambda o, v=v: o.item_put("fparams", 4, "<I", v), e)
    for v, e in ((0, "error"), (1, "error"), (511, "error"), (512, "any"),
                 (10 * MiB - 512, "any"), (10 * MiB + 512, "any"), (2 * TiB, "any"),
                 (64 * TiB, "error"), (64 * TiB + 512, "error"), (1 << 63, "error"),
                 (U64 - 511, "error"), (U64, "error")):
        add("meta-vsize-%#x" % v, XD, lambda o, v=v: o.item_put("vsize", 0, "<Q", v), e)
    for v, e in ((0, "error"), (1, "error"), (511, "error"), (1024, "error"), (4096, "any"),
                 (8192, "error"), (U32, "error")):
        add("meta-lss-%#x" % v, XD, lambda o, v=v: o.item_put("lss", 0, "<I", v), e)
    for v, e in ((0, "error"), (512, "same"), (8192, "error"), (U32, "error")):
        add("meta-pss-%#x" % v, XD, lambda o, v=v: o.item_put("pss", 0, "<I", v), e)
    add("meta-page83-zero", XD, lambda o: o.item_put("page83", 0, "raw", bytes(16)), "same")
    add("meta-locator-on-dynamic", XD,
        lambda o: o.add_item(G_ITEMS["ploc"], vhdx_locator([("parent_linkage", "{%s}" % uuid.UUID(int=5))]), 4), "any")
    # -- BAT entries, every state --
    e0 = d.bget(0)
    for st in range(8):
        exp = {4: "error", 5: "error", 7: "error", 6: "same"}.get(st, "any")
        add("bat-block0-state-%d" % st, XD, lambda o, st=st: o.bput(0, (e0 & ~7) | st), exp)
    for name, v, e in (("offset-0", 0, "error"), ("into-log", MiB, "error"),
                       ("into-metadata", 2 * MiB, "error"), ("into-bat", 3 * MiB, "error"),
                       ("shifted-1m", 5 * MiB, "any"), ("at-eof", size, "error"),
                       ("ends-past-eof", size - MiB, "error"),
                       ("max-offset", (U64 >> 20) << 20, "error")):
        add("bat-block0-present-%s" % name, XD, lambda o, v=v: o.bput(0, v | 6), e)
    add("bat-block0-reserved-bits", XD, lambda o: o.bput(0, e0 | 0xFFFF8), "same")
    add("bat-all-ones", XD, lambda o: put(o.b, o.boff, "raw", b"\xff" * MiB), "error")
    add("bat-padding-garbage", XD, lambda o: put(o.b, o.boff + 8 * 8, "raw", b"\xff" * 4096), "same")
    f = Vhdx(base(XF))
    fsize = len(f.b)
    fe = [f.bget(i) for i in range(5)]
    add("bat-1-equals-0", XF, lambda o: o.bput(1, fe[0]), "error")
    add("bat-1-overlaps-0", XF, lambda o: o.bput(1, fe[0] + MiB), "error")
    add("bat-4-past-eof", XF, lambda o: o.bput(4, ((fsize >> 20) << 20) | 6), "error")
    add("bat-4-half-past-eof", XF, lambda o: o.bput(4, (((fsize >> 20) - 1) << 20) | 6), "error")
    add("bat-2-not-present", XF, lambda o: o.bput(2, fe[2] & ~7), "any")
    add("bat-all-zero-state", XF, lambda o: [o.bput(i, (fe[i] & ~7) | 2) for i in range(5)], "any")
    add("bat-0-partially-present", XF, lambda o: o.bput(0, fe[0] | 7), "error")
    add("bat-reversed", XF, lambda o: [o.bput(i, fe[4 - i]) for i in range(5)], "any")
    add("meta-block-size-1m", XF, lambda o: o.item_put("fparams", 0, "<I", MiB), "any")
    add("meta-block-size-4m", XF, lambda o: o.item_put("fparams", 0, "<I", 4 * MiB), "error")
    add("meta-not-fixed", XF, lambda o: o.item_put("fparams", 4, "<I", 0), "same")
    add("truncated-last-block", XF, lambda o: o.b.__delitem__(slice(fsize - MiB, None)), "error")
    g = Vhdx(base(X1))
    present = [i for i in range(32) if g.bget(i) & 7 == 6]
    zero = [i for i in range(32) if g.bget(i) & 7 == 2]
    add("bat-zero-block-present-at-0", X1, lambda o: o.bput(zero[0], 6), "error")
    add("bat-zero-block-present-max", X1, lambda o: o.bput(zero[0], ((U64 >> 20) << 20) | 6), "error")
    add("bat-present-chained-overlap", X1,
        lambda o: [o.bput(i, (g.bget(present[0]) + (k << 20))) for k, i in enumerate(present)], "error")
    add("bat-zero-block-into-bat", X1, lambda o: o.bput(zero[0], g.boff | 6), "error")
    add("meta-vsize-2t", X1, lambda o: o.item_put("vsize", 0, "<Q", 2 * TiB), "any")
    q = Vhdx(base(XQ))
    add("bat-sb-entry-garbage", XQ, lambda o: o.bput(4096, U64), "any")
    add("bat-sb-entry-present-past-eof", XQ, lambda o: o.bput(4096, (1 << 40) | 6), "any")

    # -- log (the Windows-made dirty image and the qemu-made one) --
    lg = Vhdx(base(XL))
    hd = lg.head()
    ents = lg.entries()
    def desc(o, s, k, off, fmt, val, fix=True):
        o.eput(s, 64 + 32 * k + off, fmt, val, fix)
    for key, o0 in ((XL, lg), (XQ, q)):
        h0 = o0.head()
        osz = len(o0.b)
        add("log-head-checksum", key, lambda o, h0=h0: o.eput(h0, 4, "<I", 0, False), "any")
        add("log-all-checksums", key, lambda o: [o.eput(s, 4, "<I", 0, False) for s, _, _ in o.entries()], "any")
        add("log-head-dc-huge", key, lambda o, h0=h0: o.eput(h0, 24, "<I", U32), "any")
        add("log-head-dc-2", key, lambda o, h0=h0: o.eput(h0, 24, "<I", 2), "any")
        add("log-head-dc-0", key, lambda o, h0=h0: o.eput(h0, 24, "<I", 0), "any")
        for v in (0, 4097, U32 - 4095, 256 * 4096 + 4096):
            add("log-head-length-%#x" % v, key, lambda o, h0=h0, v=v: o.eput(h0, 8, "<I", v), "any")
        for v in (MiB, 4097, h0 * 4096):
            add("log-head-tail-%#x" % v, key, lambda o, h0=h0, v=v: o.eput(h0, 12, "<I", v), "any")
        add("log-head-seq-zero", key, lambda o, h0=h0: o.eput(h0, 16, "<Q", 0), "any")
        add("log-head-seq-plus-10", key, lambda o, h0=h0: o.eput(h0, 16, "<Q", o.eget(h0, 16, "<Q") + 10), "any")
        for v, e in ((osz + MiB, "error"), (1 << 63, "error"), (0, "any")):
            add("log-head-flushed-%#x" % v, key, lambda o, h0=h0, v=v: o.eput(h0, 48, "<Q", v), e)
        for v, e in ((1 << 63, "error"), ((1 << 48) + 1, "error"), (1 << 40, "any"), (0, "any")):
            add("log-head-last-%#x" % v, key, lambda o, h0=h0, v=v: o.eput(h0, 56, "<Q", v), e)
        for v, e in ((0, "error"), (64 * KiB, "error"), (128 * KiB + 4096, "error"),
                     (192 * KiB, "any"), (3 * MiB + 1, "any"), (1 << 40, "any"),
                     (1 << 48, "error"), (U64 - 4095, "error")):
            add("log-desc-offset-%#x" % v, key, lambda o, h0=h0, v=v: desc(o, h0, 0, 16, "<Q", v), e)
        add("log-desc-seq-mismatch", key, lambda o, h0=h0: desc(o, h0, 0, 24, "<Q", 1), "any")
        add("log-desc-signature-zero", key, lambda o, h0=h0: desc(o, h0, 0, 0, "raw", bytes(4)), "any")
        add("log-data-signature-zero", key, lambda o, h0=h0: o.dput(h0, 0, "raw", bytes(4)), "any")
        add("log-data-seq-high-mismatch", key, lambda o, h0=h0: o.dput(h0, 4, "<I", 0xDEAD), "any")
        add("log-data-seq-low-mismatch", key, lambda o, h0=h0: o.dput(h0, 4092, "<I", 0xDEAD), "any")
        for v, e in ((1 << 47, "any"), (0, "any"), (4095, "any"), (U64 - 4095, "error")):
            add("log-zero-desc-length-%#x" % v, key,
                lambda o, h0=h0, v=v: (desc(o, h0, 0, 0, "raw", b"zero", False),
                                       desc(o, h0, 0, 8, "<Q", v)), e)
        add("log-guid-mismatch", key, lambda o: o.hput("both", 48, "raw", bytes(range(16))), "any")
    mid = sorted(ents, key=lambda e: e[1])[-2][0]
    add("log-middle-entry-checksum", XL, lambda o: o.eput(mid, 4, "<I", 1, False), "any")
    add("log-middle-entry-seq-gap", XL, lambda o: o.eput(mid, 16, "<Q", o.eget(mid, 16, "<Q") - 1), "any")
    add("log-header-log-offset-moved", XL, lambda o: o.hput("both", 72, "<Q", 30 * MiB), "any")
    # a log full of copies of the head entry, and one long consecutive sequence
    def copies(o):
        e = bytes(o.b[o.loff + 4096 * hd:o.loff + 4096 * (hd + 2)])
        for s in range(0, 256, 2):
            put(o.b, o.loff + 4096 * s, "raw", e)
    add("log-full-of-head-copies", XL, copies, "any")
    def long_sequence(o):
        e = bytearray(o.b[o.loff + 4096 * hd:o.loff + 4096 * (hd + 2)])
        seq0 = get(e, 16, "<Q") - 127
        for k in range(128):
            s = 2 * k
            x = bytearray(e)
            seq = seq0 + k
            struct.pack_into("<IQ", x, 12, 0, seq)
            struct.pack_into("<Q", x, 64 + 24, seq)
            struct.pack_into("<I", x, 4096 + 4, seq >> 32)
            struct.pack_into("<I", x, 4096 + 4092, seq & U32)
            struct.pack_into("<I", x, 4, 0)
            struct.pack_into("<I", x, 4, crc32c(x))
            put(o.b, o.loff + 4096 * s, "raw", x)
    add("log-128-entry-sequence", XL, long_sequence, "any")
    add("log-truncated-file", XL, lambda o: o.b.__delitem__(slice(8 * MiB, None)), "error")

    vhdx_chain_cases()


# ---- VHDX parent chains ----------------------------------------------------------
# The orphaned Windows AVHDX gets a parent: the dynamic VHDX, whose
# DataWriteGuid its rewritten locator names.

XCHILD = "dissect-win10-differencing.vhdx"
XPARENT = "parent.vhdx"

def parent_dw():
    p = Vhdx(base("vhdx-dyn"))
    return "{%s}" % uuid.UUID(bytes_le=bytes(p.b[HDR[p.cur] + 32:HDR[p.cur] + 48]))

def std_pairs(rel=XPARENT, link=None):
    return [("parent_linkage", link or parent_dw()), ("relative_path", ".\\" + rel),
            ("volume_path", "\\\\?\\Volume{2a9e1e4b-0000-0000-0000-100000000000}\\vms\\" + rel),
            ("absolute_win32_path", "C:\\vms\\" + rel)]

def set_locator(o, blob):
    """Move the child's parent locator item to meta offset 512 KiB."""
    o.item_entry_put("ploc", "offset", 512 * KiB)
    o.item_entry_put("ploc", "length", len(blob))
    put(o.b, o.moff + 512 * KiB, "raw", blob)

def vhdx_chain(loc=None, child_fn=None, parent_fn=None, extra=None, parent=True):
    def build():
        c = Vhdx(base("vhdx-diff"))
        set_locator(c, loc if loc is not None else vhdx_locator(std_pairs()))
        if child_fn:
            child_fn(c)
        files = {XCHILD: bytes(c.b)}
        if parent:
            if parent_fn:
                p = Vhdx(base("vhdx-dyn"))
                r = parent_fn(p)
                files[XPARENT] = r if r is not None else bytes(p.b)
            else:
                files[XPARENT] = base("vhdx-dyn")
        if extra:
            extra(files)
        return files, XCHILD
    return build

def vhdx_chain_cases():
    def add(name, expect, **kw):
        kw.setdefault("ref", "vhdx-chain")
        case("vhdx/chain/%s" % name, "vhdx", vhdx_chain(**kw.pop("b")), expect, **kw)

    dw = parent_dw()
    case("vhdx/chain/orphan-as-in-corpus", "vhdx",
         lambda: ({XCHILD: base("vhdx-diff")}, XCHILD), "error")
    add("parent-missing", "error", b=dict(parent=False))
    add("parent-linkage-mismatch", "error", b=dict(loc=vhdx_locator(std_pairs(link="{%s}" % uuid.UUID(int=1)))))
    add("parent-linkage2-matches", "same",
        b=dict(loc=vhdx_locator(std_pairs(link="{%s}" % uuid.UUID(int=1)) + [("parent_linkage2", dw)])))
    add("parent-linkage-not-a-guid", "error", b=dict(loc=vhdx_locator(std_pairs(link="{zz}"))))
    add("parent-linkage-missing", "error", b=dict(loc=vhdx_locator(std_pairs()[1:])))
    add("parent-is-vhd", "error", b=dict(parent_fn=lambda p: base("vhd-dyn")))
    add("parent-4k-sectors", "error", b=dict(parent_fn=lambda p: p.item_put("lss", 0, "<I", 4096)))
    add("parent-broken-headers", "error",
        b=dict(parent_fn=lambda p: p.hput("both", 4, "<I", 1, False)))
    add("parent-fifo", "error", b=dict(extra=lambda f: f.__setitem__(XPARENT, FIFO)))
    add("parent-directory", "error", b=dict(extra=lambda f: f.__setitem__(XPARENT, DIRECTORY)))
    add("self-parent-relative", "error", b=dict(loc=vhdx_locator(std_pairs(rel=XCHILD))))
    add("self-parent-symlink", "error", b=dict(extra=lambda f: f.__setitem__(XPARENT, symlink(XCHILD))))
    add("self-parent-absolute-only", "error",
        b=dict(loc=vhdx_locator([("parent_linkage", dw), ("absolute_win32_path", "D:\\x\\" + XCHILD)])))
    def loop(o_names):
        def build():
            files = {}
            for i, n_ in enumerate(o_names):
                c = Vhdx(base("vhdx-diff"))
                set_locator(c, vhdx_locator(std_pairs(rel=o_names[(i + 1) % len(o_names)])))
                files[n_] = bytes(c.b)
            return files, o_names[0]
        return build
    case("vhdx/chain/loop-of-2", "vhdx", loop(["a.vhdx", "b.vhdx"]), "error")
    case("vhdx/chain/loop-of-3", "vhdx", loop(["a.vhdx", "b.vhdx", "c.vhdx"]), "error")
    add("relative-missing-absolute-found", "same",
        b=dict(loc=vhdx_locator([p for p in std_pairs() if p[0] != "relative_path"])))
    add("relative-empty", "same",
        b=dict(loc=vhdx_locator([(k, "" if k == "relative_path" else v) for k, v in std_pairs()])))
    add("no-paths", "error", b=dict(loc=vhdx_locator(std_pairs()[:1])))
    add("locator-type-unknown", "error", b=dict(loc=vhdx_locator(std_pairs(), gd=G_UNKNOWN)))
    add("locator-too-short", "error", b=dict(loc=G_PLOC_VHDX + b"\0\0"))
    add("locator-count-huge", "error", b=dict(loc=vhdx_locator(std_pairs(), count=0xFFFF)))
    def patch_entry(k, field, val):
        blob = bytearray(vhdx_locator(std_pairs()))
        struct.pack_into({"ko": "<I", "vo": "<I", "kl": "<H", "vl": "<H"}[field], blob,
                         20 + 12 * k + {"ko": 0, "vo": 4, "kl": 8, "vl": 10}[field], val)
        return bytes(blob)
    for k, field, val, e in ((1, "ko", U32, "error"), (1, "vo", U32 - 1, "error"),
                             (1, "kl", 0xFFFF, "error"), (1, "vl", 0xFFFE, "error"),
                             (1, "kl", 3, "error"), (1, "kl", 0, "error"), (1, "vl", 0, "same"),
                             (0, "vo", 0, "error")):
        add("locator-entry%d-%s-%#x" % (k, field, val), e, b=dict(loc=patch_entry(k, field, val)))
    add("locator-value-lone-surrogate", "error",
        b=dict(loc=vhdx_locator(std_pairs()[:1] + [("relative_path", b"\x00\xd8.\x00")])))
    add("locator-relative-4k-chars", "error",
        b=dict(loc=vhdx_locator(std_pairs()[:1] + [("relative_path", "a" * 4096)])))
    add("locator-key-long-unknown", "same",
        b=dict(loc=vhdx_locator([("k" * 200, "v")] + std_pairs())))
    add("locator-duplicate-relative", "same",
        b=dict(loc=vhdx_locator([("relative_path", "nonexistent.vhdx")] + std_pairs())))
    add("locator-traversal", "any",
        b=dict(loc=vhdx_locator([("parent_linkage", dw), ("relative_path", "..\\" * 30 + "etc\\passwd"),
                                 ("absolute_win32_path", "C:\\vms\\" + XPARENT)])))
    add("has-parent-flag-cleared", "error", b=dict(child_fn=lambda o: o.item_put("fparams", 4, "<I", 0)))
    add("locator-item-missing", "error", b=dict(child_fn=lambda o: o.item_entry_put("ploc", "guid", G_UNKNOWN)))
    # the child's BAT: block 0 and the sector bitmap of chunk 0
    add("bat-sb0-not-present", "error", b=dict(child_fn=lambda o: o.bput(2048, 0)))
    add("bat-sb0-past-eof", "error", b=dict(child_fn=lambda o: o.bput(2048, (1 << 40) | 6)))
    add("bat-sb0-overlaps-block0", "error", b=dict(child_fn=lambda o: o.bput(2048, (o.bget(0) & ~7) | 6)))
    add("bat-sb0-state-7", "any", b=dict(child_fn=lambda o: o.bput(2048, (o.bget(2048) & ~7) | 7)))
    add("bat-block0-fully-present", "any", b=dict(child_fn=lambda o: o.bput(0, (o.bget(0) & ~7) | 6)))
    for st in (0, 1, 2, 3):
        add("bat-block0-state-%d" % st, "any", b=dict(child_fn=lambda o, st=st: o.bput(0, (o.bget(0) & ~7) | st)))
    add("bitmap-chunk0-all-ones", "any",
        b=dict(child_fn=lambda o: put(o.b, o.bget(2048) & ~0xFFFFF, "raw", b"\xff" * MiB)))
    add("bitmap-chunk0-random", "any",
        b=dict(child_fn=lambda o: put(o.b, o.bget(2048) & ~0xFFFFF, "raw", random.Random(5).randbytes(4096))))


# ---- WIM -----------------------------------------------------------------------

class Wim:
    def __init__(self, data):
        self.b = bytearray(data)
    def reshdr(self, at):
        sz = int.from_bytes(self.b[at:at + 7], "little")
        return sz, self.b[at + 7], get(self.b, at + 8, "<Q"), get(self.b, at + 16, "<Q")
    def reshdr_put(self, at, size=None, flags=None, offset=None, orig=None):
        s, f, o, u = self.reshdr(at)
        s = s if size is None else size
        self.b[at:at + 7] = (s & ((1 << 56) - 1)).to_bytes(7, "little")
        self.b[at + 7] = f if flags is None else flags
        struct.pack_into("<QQ", self.b, at + 8, o if offset is None else offset, u if orig is None else orig)
    def blobs(self):
        s, f, o, u = self.reshdr(48)
        return [o + 50 * i for i in range(s // 50)]
    def metadata_blob(self):
        return next(e for e in self.blobs() if self.b[e + 7] & 2)
    def xml(self):
        s, f, o, u = self.reshdr(72)
        return o, s
    def xml_sub(self, old, new):
        """Replace text in the XML (the last resource of the file)."""
        o, s = self.xml()
        assert o + s == len(self.b), "XML is not last"
        t = bytes(self.b[o:o + s]).decode("utf-16-le")
        assert old in t, old
        nb = t.replace(old, new, 1).encode("utf-16-le", "surrogatepass")
        del self.b[o:]
        self.b += nb
        self.reshdr_put(72, size=len(nb), orig=len(nb))

def wim_cases():
    L, X, N, M, Z, B, C = ("wim-lzx", "wim-xpress", "wim-none", "wim-multi", "wim-lzms",
                           "wim-boot", "wim-chunks")

    def add(name, key, fn, expect, **kw):
        kw.setdefault("ref", key)
        case("wim/%s/%s" % (key[4:], name), "wim", single(key, fn, Wim), expect, **kw)

    # -- header fields --
    add("magic-zero", L, lambda o: put(o.b, 0, "raw", bytes(8)), "error", mount=True)
    add("magic-pipable", L, lambda o: put(o.b, 0, "raw", b"WLPWM\0\0\0"), "error")
    add("magic-last-byte", L, lambda o: put(o.b, 7, "B", 1), "error")
    for v in (0, 207, 209, 0x1000, U32):
        add("header-size-%#x" % v, L, lambda o, v=v: put(o.b, 8, "<I", v), "error" if v < 208 else "any")
    for v in (0, 0xE00, 0x10D01, 0x10000, U32):
        add("version-%#x" % v, L, lambda o, v=v: put(o.b, 12, "<I", v), "any", mount=v == 0xE00)
    for v in (0, 0x2, 0x40000, 0x2 | 0x20000 | 0x40000, 0x2 | 0x100000, 0x8 | 0x40082,
              0x40 | 0x40082, 0x20 | 0x40082, 0x10 | 0x40082, U32):
        add("flags-%#x" % v, L, lambda o, v=v: put(o.b, 16, "<I", v), "any",
            mount=v in (0x2 | 0x100000, 0x40 | 0x40082))
    for v in (0, 1, 4096, 0x10000, 33333, 1 << 26, 0x80000000, U32):
        add("chunk-size-%#x" % v, L, lambda o, v=v: put(o.b, 20, "<I", v), "any", mount=v in (4096, 1 << 26))
    add("guid-zero", L, lambda o: put(o.b, 24, "raw", bytes(16)), "same", mount=True)
    for v in (0, 2, 0xFFFF):
        add("part-number-%#x" % v, L, lambda o, v=v: put(o.b, 40, "<H", v), "any")
    for v in (0, 2, 0xFFFF):
        add("total-parts-%#x" % v, L, lambda o, v=v: put(o.b, 42, "<H", v), "any", mount=v == 2)
    for v in (0, 2, 0xFFFF, U32):
        add("image-count-%#x" % v, L, lambda o, v=v: put(o.b, 44, "<I", v), "any", mount=v == 2)
    for v in (2, U32):
        add("boot-index-%#x" % v, L, lambda o, v=v: put(o.b, 120, "<I", v), "any")
    size = len(base(L))
    # -- resource headers: blob table, XML, boot metadata, integrity --
    for nm, at in (("blob-table", 48), ("xml", 72), ("boot-metadata", 96), ("integrity", 124)):
        for what, kw in (("offset-past-eof", dict(offset=size + 4096)),
                         ("offset-huge", dict(offset=U64 - 100)),
                         ("offset-zero", dict(offset=0)),
                         ("size-huge", dict(size=(1 << 56) - 1)),
                         ("size-odd", dict(size=7)),
                         ("orig-huge", dict(orig=U64)),
                         ("compressed", dict(flags=0x04 | 0x02)),
                         ("ends-at-eof-plus-1", dict(offset=size - 10, size=11, orig=11))):
            if nm in ("boot-metadata", "integrity") and what in ("size-odd", "orig-huge"):
                continue
            add("reshdr-%s-%s" % (nm, what), L, lambda o, at=at, kw=kw: o.reshdr_put(at, **kw), "any",
                mount=(nm, what) in (("blob-table", "size-odd"), ("boot-metadata", "offset-huge")))
    add("reshdr-blob-table-size-zero", L, lambda o: o.reshdr_put(48, size=0, orig=0), "any")
    add("reshdr-xml-size-zero", L, lambda o: o.reshdr_put(72, size=0, orig=0), "any")
    add("reshdr-xml-into-header", L, lambda o: o.reshdr_put(72, offset=0, size=208, orig=208), "any")
    # integrity tables are read by a /CheckIntegrity mount
    add("integrity-intact", M, lambda o: None, "same", mount="check")
    add("reshdr-integrity-garbage", M, lambda o: o.reshdr_put(124, offset=o.reshdr(124)[2] - 1000), "any",
        mount="check")
    add("reshdr-integrity-past-eof", M, lambda o: o.reshdr_put(124, offset=len(o.b) + 8), "any", mount="check")
    add("reshdr-integrity-size-huge", M, lambda o: o.reshdr_put(124, size=(1 << 56) - 1), "any", mount="check")
    add("integrity-table-entries-huge", M, lambda o: put(o.b, o.reshdr(124)[2] + 4, "<I", U32), "any",
        mount="check")
    add("integrity-table-chunk-size-zero", M, lambda o: put(o.b, o.reshdr(124)[2] + 8, "<I", 0), "any",
        mount="check")
    add("integrity-table-hash-flipped", M, lambda o: flip(o.b, random.Random(3), o.reshdr(124)[2] + 12,
                                                           o.reshdr(124)[2] + 32, 1), "any", mount="check")
    add("boot-index-3-of-3", M, lambda o: put(o.b, 120, "<I", 3), "any")
    add("boot-metadata-past-eof", B, lambda o: o.reshdr_put(96, offset=len(o.b) + 100), "any", mount=True)
    add("boot-metadata-size-huge", B, lambda o: o.reshdr_put(96, size=(1 << 56) - 1), "any")
    # -- blob table entries --
    for key in (L, N):
        w = Wim(base(key))
        mb = w.metadata_blob()
        fb = next(e for e in w.blobs() if not w.b[e + 7] & 2 and w.reshdr(e)[0] > 10)
        for nm, e, kw, m in (("metadata-offset-past-eof", mb, dict(offset=len(w.b) + 10), False),
                             ("metadata-size-huge", mb, dict(size=(1 << 56) - 1), True),
                             ("metadata-orig-huge", mb, dict(orig=1 << 40), True),
                             ("metadata-orig-zero", mb, dict(orig=0), False),
                             ("metadata-flag-cleared", mb, dict(flags=w.b[mb + 7] & ~2), True),
                             ("metadata-compressed-toggled", mb, dict(flags=w.b[mb + 7] ^ 4), True),
                             ("metadata-solid", mb, dict(flags=w.b[mb + 7] | 0x10), False),
                             ("file-offset-past-eof", fb, dict(offset=len(w.b) * 2), True),
                             ("file-orig-huge", fb, dict(orig=1 << 50), True),
                             ("file-size-zero", fb, dict(size=0), False),
                             ("file-compressed-toggled", fb, dict(flags=w.b[fb + 7] ^ 4), False)):
            add("blob-%s" % nm, key, lambda o, e=e, kw=kw: o.reshdr_put(e, **kw), "any",
                mount=m and key == N)
        add("blob-metadata-hash-zero", key, lambda o, mb=mb: put(o.b, mb + 30, "raw", bytes(20)), "any",
            mount=key == N)
        add("blob-metadata-part-2", key, lambda o, mb=mb: put(o.b, mb + 24, "<H", 2), "any")
        add("blob-metadata-refcnt-zero", key, lambda o, mb=mb: put(o.b, mb + 26, "<I", 0), "any")
        add("blob-file-hash-zero", key, lambda o, fb=fb: put(o.b, fb + 30, "raw", bytes(20)), "any",
            mount=key == L)
        add("blob-duplicate-entry", key,
            lambda o, fb=fb: put(o.b, o.blobs()[-1], "raw", o.b[fb:fb + 50]), "any", mount=key == N)
    add("blob-solid-header-size-huge", Z,
        lambda o: o.reshdr_put(next(e for e in o.blobs() if o.reshdr(e)[3] == 1 << 32), orig=U64), "any")
    add("blob-solid-member-offset-huge", Z,
        lambda o: o.reshdr_put(o.blobs()[2], offset=U64 - 5), "any", mount=True)
    # -- XML --
    add("xml-totalbytes-huge", L, lambda o: o.xml_sub("<TOTALBYTES>23646<", "<TOTALBYTES>18446744073709551615<"),
        "any", mount=True)
    add("xml-counts-huge", L,
        lambda o: (o.xml_sub("<DIRCOUNT>31<", "<DIRCOUNT>99999999999999999999<"),
                   o.xml_sub("<FILECOUNT>252<", "<FILECOUNT>18446744073709551615<")), "any", mount=True)
    add("xml-totalbytes-negative", L, lambda o: o.xml_sub("<TOTALBYTES>23646<", "<TOTALBYTES>-1<"), "any")
    add("xml-index-2", L, lambda o: o.xml_sub('INDEX="1"', 'INDEX="2"'), "any")
    add("xml-no-image", L, lambda o: o.xml_sub("<IMAGE INDEX", "<IMAGX INDEX"), "any")
    add("xml-unclosed", L, lambda o: o.xml_sub("</WIM>", "<WIM>"), "any")
    add("xml-name-long", L, lambda o: o.xml_sub("<NAME>M", "<NAME>" + "N" * 5000 + "M"), "any")
    add("xml-name-control-chars", L, lambda o: o.xml_sub("<NAME>M", "<NAME>\x1b[31m\x07M"), "any")
    add("xml-deep-nesting", L, lambda o: o.xml_sub("<NAME>", "<A>" * 3000 + "</A>" * 3000 + "<NAME>"), "any")
    add("xml-times-garbage", L,
        lambda o: o.xml_sub("<HIGHPART>0x01CDEBD7<", "<HIGHPART>0xFFFFFFFFFFFFFFFFFF<"), "any")
    add("xml-lone-surrogate", L, lambda o: o.xml_sub("<NAME>", "<NAME>\ud800"), "any")
    # -- truncations --
    for n_ in (0, 8, 100, 207, 208, 1000, 3404, 5654, 5654 + 50, size - 834, size - 1):
        add("truncated-at-%d" % n_, L, lambda o, n_=n_: o.b.__delitem__(slice(n_, None)), "any",
            mount=n_ == 3404)
    add("extended-garbage", L, lambda o: o.b.extend(b"\xa5" * 4096), "same", mount=True)
    # -- compressed resources: bit flips, chunk tables --
    w = Wim(base(C))
    cb = next(e for e in w.blobs() if w.b[e + 7] & 4 and not w.b[e + 7] & 2)
    cs, _, co, _ = w.reshdr(cb)
    add("chunk-table-entry-huge", C, lambda o: put(o.b, co, "<I", U32), "any", mount=True)
    add("chunk-table-entry-zero", C, lambda o: put(o.b, co, "<I", 0), "any", mount=True)
    add("chunk-table-entry-past-resource", C, lambda o: put(o.b, co, "<I", cs), "any")
    for k, seed in enumerate((1, 2, 3)):
        add("compressed-data-flips-%d" % k, C,
            lambda o, seed=seed: flip(o.b, random.Random(seed), co + 8, co + cs, 4 + 4 * seed), "any",
            mount=k == 0)
    wl = Wim(base(L))
    lm = wl.metadata_blob()
    ls, _, lo, _ = wl.reshdr(lm)
    for k, seed in enumerate((21, 22)):
        add("metadata-compressed-flips-%d" % k, L,
            lambda o, seed=seed: flip(o.b, random.Random(seed), lo, lo + ls, 8), "any", mount=k == 0)
    wx = Wim(base(X))
    xs, _, xo, _ = wx.reshdr(wx.metadata_blob())
    for k, seed in enumerate((31, 32, 33)):
        add("metadata-compressed-flips-%d" % k, X,
            lambda o, seed=seed, k=k: flip(o.b, random.Random(seed), xo, xo + xs, 2 + 6 * k), "any",
            mount=True)
    add("metadata-compressed-truncated-resource", X,
        lambda o: o.reshdr_put(o.metadata_blob(), size=xs // 2), "any", mount=True)
    # -- the uncompressed metadata resource, edited and re-hashed --
    wim_metadata_cases()

def flip_regions(b, rng, regions, n):
    for _ in range(n):
        lo, hi = rng.choice(regions)
        bit = rng.randrange((hi - lo) * 8)
        b[lo + bit // 8] ^= 1 << (bit % 8)

def flip(b, rng, lo, hi, n):
    for _ in range(n):
        bit = rng.randrange((hi - lo) * 8)
        b[lo + bit // 8] ^= 1 << (bit % 8)

def metadata_edit(fn):
    """An edit of the uncompressed metadata resource of wim-none, with its
    SHA-1 in the blob table made right again so wimlib parses the damage."""
    def edit(o):
        mb = o.metadata_blob()
        s, f, off, u = o.reshdr(mb)
        md = bytearray(o.b[off:off + s])
        fn(md)
        assert len(md) == s
        o.b[off:off + s] = md
        put(o.b, mb + 30, "raw", hashlib.sha1(bytes(md)).digest())
    return edit

def dentries(md):
    """Offsets of the root dentry and of every dentry of the root's directory."""
    root = (get(md, 0, "<I") + 7) & ~7
    out = []
    p = get(md, root + 16, "<Q")
    while p and p + 8 <= len(md) and get(md, p, "<Q"):
        out.append(p)
        ln = get(md, p, "<Q")
        p += (ln + 7) & ~7
        for _ in range(get(md, p - ((ln + 7) & ~7) + 96, "<H")):
            p += (get(md, p, "<Q") + 7) & ~7
    return root, out

def wim_metadata_cases():
    N = "wim-none"
    w = Wim(base(N))
    mb = w.metadata_blob()
    md = bytearray(w.b[w.reshdr(mb)[2]:][:w.reshdr(mb)[0]])
    root, kids = dentries(md)
    kid = kids[0]
    sub = next(k for k in kids if get(md, k + 16, "<Q"))     # a directory

    def add(name, fn, expect="any", mount=True):
        case("wim/none/metadata-%s" % name, "wim", single(N, metadata_edit(fn), Wim), expect,
             ref=N, mount=mount)
    add("rehash-only", lambda m: None, "same")
    add("security-length-zero", lambda m: put(m, 0, "<I", 0))
    add("security-length-huge", lambda m: put(m, 0, "<I", U32))
    add("security-count-huge", lambda m: put(m, 4, "<I", U32))
    add("root-length-zero", lambda m: put(m, root, "<Q", 0))
    add("root-length-huge", lambda m: put(m, root, "<Q", U64))
    add("root-subdir-self", lambda m: put(m, root + 16, "<Q", root))
    add("root-subdir-past-end", lambda m: put(m, root + 16, "<Q", len(m) + 8))
    add("subdir-points-at-root", lambda m: put(m, sub + 16, "<Q", root))
    add("subdir-points-at-parent-list", lambda m: put(m, sub + 16, "<Q", kid))
    add("name-length-odd", lambda m: put(m, kid + 100, "<H", 7))
    add("name-length-huge", lambda m: put(m, kid + 100, "<H", 0xFFFE))
    add("short-name-length-huge", lambda m: put(m, kid + 98, "<H", 0xFFFE))
    add("extra-streams-huge", lambda m: put(m, kid + 96, "<H", 0xFFFF))
    add("attributes-all", lambda m: put(m, kid + 8, "<I", U32))
    add("security-id-huge", lambda m: put(m, kid + 12, "<i", 0x7FFFFFFF), mount=False)
    add("hash-unknown-blob", lambda m: put(m, kid + 64, "raw", b"\x5a" * 20))
    add("name-with-slash", lambda m: put(m, kid + 102, "raw", "/".encode("utf-16-le")))
    add("name-dotdot", lambda m: (put(m, kid + 100, "<H", 4), put(m, kid + 102, "raw", "..".encode("utf-16-le"))),
        mount=False)
    add("dentry-length-short", lambda m: put(m, kid, "<Q", 50))


# ---- random bit flips with a fixed seed -----------------------------------------

def random_cases():
    def build(key, cls, seed, regions, n, fix):
        def b():
            o = cls(base(key))
            rng = random.Random(seed)
            regs = regions(o)       # where the structures are before the damage
            for _ in range(n):
                lo, hi = rng.choice(regs)
                bit = rng.randrange((hi - lo) * 8)
                o.b[lo + bit // 8] ^= 1 << (bit % 8)
            if fix:
                fix(o)
            return {base_name(key): bytes(o.b)}, base_name(key)
        return b
    def vfix(o):
        vhd_fix(o.b, o.end, 512, 64)
        if o.b[0:8] == b"conectix":
            vhd_fix(o.b, 0, 512, 64)
        h = o.fget(16, ">Q")
        if h + 1024 <= len(o.b) and o.b[h:h + 8] == b"cxsparse":
            vhd_fix(o.b, h, 1024, 36)
    def xfix(o):
        o.hfix(0); o.hfix(1); o.rfix(0); o.rfix(1)
    vhd_meta = lambda o: [(o.end, len(o.b)), (0, 512), (512, 1536), (1536, 1556)]
    vhd_any = lambda o: [(0, min(len(o.b), 64 * KiB)), (len(o.b) - 512, len(o.b))]
    extra = int(os.environ.get("MALFORMED_EXTRA", "0"))
    for i in range(20 + extra):
        fix = vfix if i % 2 else None
        n = (1, 2, 4, 8, 32)[i % 5]
        case("random/vhd-dyn-%02d-%dbits%s" % (i, n, "-resealed" if fix else ""), "vhd",
             build("vhd-dyn", Vhd, 1000 + i, vhd_meta if i % 20 < 14 else vhd_any, n, fix), "any",
             forensic="any")
    for i in range(6):
        case("random/vhd-fixed-%02d" % i, "vhd",
             build("vhd-fixed", Vhd, 2000 + i, lambda o: [(o.end, len(o.b))], 1 + i, vfix if i % 2 else None),
             "any", forensic="any")
    for i in range(4):
        case("random/vhd-127g-%02d" % i, "vhd",
             build("vhd-127g", Vhd, 2500 + i, lambda o: [(0, 2048), (1536, 1536 + 65024 * 4)], 4, vfix),
             "any", forensic="any")
    xmeta = lambda o: [(64 * KiB, 64 * KiB + 4096), (128 * KiB, 128 * KiB + 4096),
                       (192 * KiB, 192 * KiB + 1024), (256 * KiB, 256 * KiB + 1024),
                       (o.moff, o.moff + 256), (o.moff + 64 * KiB, o.moff + 64 * KiB + 64),
                       (o.boff, o.boff + 64)]
    for i in range(20 + extra):
        fix = xfix if i % 2 else None
        n = (1, 3, 8, 24)[i % 4]
        case("random/vhdx-dyn-%02d-%dbits%s" % (i, n, "-resealed" if fix else ""), "vhdx",
             build("vhdx-dyn", Vhdx, 3000 + i, xmeta, n, fix), "any")
    for i in range(8):
        case("random/vhdx-log-%02d" % i, "vhdx",
             build("vhdx-log", Vhdx, 4000 + i, lambda o: [(MiB, MiB + 10 * 4096)], 2 + i, None), "any")
    for i in range(6):
        case("random/vhdx-fixed-%02d" % i, "vhdx",
             build("vhdx-fixed", Vhdx, 5000 + i, xmeta, 6, xfix), "any")
    # Flips the parsers meet past their checksums: inside the active log
    # entries (each entry's CRC made right again), in the differencing
    # child's metadata, locator and BAT, and in the uncompressed metadata
    # resource of a WIM (its SHA-1 made right again).
    def log_regions(o):
        r = []
        for s_, _, ns in o.entries():
            at = o.loff + 4096 * s_
            r.append((at + 8, at + 64 + 32 * max(1, o.eget(s_, 24, "<I"))))
            r += [(at + 4096 * k, at + 4096 * k + 8) for k in range(1, ns)]
        return r
    def log_fix(o):
        for s_, _, _ in o.entries():
            o.efix(s_)
    for i in range(8 + extra):
        key = "vhdx-log" if i % 2 else "vhdx-qlog"
        case("random/%s-entries-resealed-%02d" % (key, i), "vhdx",
             build(key, Vhdx, 7000 + i, log_regions, 1 + i % 6, log_fix), "any")
    def chain_build(seed, n):
        def b():
            files, main_ = vhdx_chain()()
            o = Vhdx(files[XCHILD])
            rng = random.Random(seed)
            it = o.items()["ploc"]
            regs = [(o.moff, o.moff + 32 + 32 * 6), (o.moff + it[1], o.moff + it[1] + it[2]),
                    (o.boff, o.boff + 64), (o.boff + 8 * 2048, o.boff + 8 * 2049)]
            flip_regions(o.b, rng, regs, n)
            files[XCHILD] = bytes(o.b)
            return files, main_
        return b
    for i in range(8 + extra):
        case("random/vhdx-chain-%02d" % i, "vhdx", chain_build(8000 + i, 1 + i % 4), "any")
    def wim_md(seed, n):
        def f(md):
            flip_regions(md, random.Random(seed), [(0, len(md))], n)
        return f
    for i in range(8 + extra):
        case("random/wim-none-metadata-resealed-%02d" % i, "wim",
             single("wim-none", metadata_edit(wim_md(9000 + i, 1 + i % 4)), Wim), "any",
             mount=True)

    whole = lambda o: [(0, len(o.b))]
    body = lambda o: [(208, len(o.b))]
    for key, n_ in (("wim-lzx", 10), ("wim-none", 6), ("wim-multi", 4), ("wim-lzms", 4), ("wim-boot", 4)):
        for i in range(n_):
            case("random/%s-%02d" % (key, i), "wim",
                 build(key, Wim, 6000 + 100 * list(BASES).index(key) + i,
                       body if i % 2 else whole, 1 + i % 4, None),
                 "any", mount=key == "wim-lzx" and i < 2)

_built = False

def all_cases():
    global _built
    if not _built:
        vhd_cases()
        vhdx_cases()
        wim_cases()
        random_cases()
        _built = True
    return CASES

# references for 'same': the undamaged images and the two made chains
REFS = {k: (lambda k=k: ({base_name(k): base(k)}, base_name(k)))
        for k in BASES if not k.startswith("wim") and k not in ("vhd-diff", "vhdx-diff", "vhd-small")}
REFS["vhd-chain"] = vhd_chain()
REFS["vhdx-chain"] = vhdx_chain()

# ---- running -------------------------------------------------------------------

SAN = None                # the ASan build directory (absolute)
ENV = dict(os.environ)
ENV.update(ASAN_OPTIONS="detect_leaks=1:exitcode=86:max_allocation_size_mb=2048:"
                        "allocator_may_return_null=0:handle_abort=1",
           UBSAN_OPTIONS="print_stacktrace=1:exitcode=87:halt_on_error=1",
           LSAN_OPTIONS="exitcode=88")
# wimlib (not ours, not instrumented) trusts size fields for some allocations
# (malloc(2^64-1) for a blob table or XML claiming that size) and handles the
# NULL it gets from glibc; under ASan such a malloc would abort instead.  So
# for dism, allocations over 2 GiB fail as they would on a machine without the
# memory, and what is checked is that the failure is handled.
#
# libntfs-3g (2022.10.3) leaks the converted name in ntfs_set_ntfs_dos_name()
# when it rejects a short name (wimlib passes it the damaged names of a WIM):
# that one third-party leak is suppressed, by function, which needs the slow
# unwinder to see past libntfs-3g's missing frame pointers.
DISM_LSAN_SUPP = "leak:ntfs_set_ntfs_dos_name\n"
DISM_ASAN = ENV["ASAN_OPTIONS"].replace("allocator_may_return_null=0", "allocator_may_return_null=1") + \
    ":fast_unwind_on_malloc=0"
SAN_RE = re.compile(r"ERROR: \w*Sanitizer|SUMMARY: \w*Sanitizer|runtime error:")

def write_files(d, files):
    shas = {}
    for name, content in files.items():
        p = os.path.join(d, name)
        if isinstance(content, Special):
            if content.kind == "fifo":
                os.mkfifo(p)
            elif content.kind == "dir":
                os.mkdir(p)
            else:
                os.symlink(content.target, p)
            continue
        with open(p, "wb") as f:
            mv = memoryview(content)
            zero = bytes(MiB)
            for o in range(0, len(content), MiB):     # sparse: skip zero MiBs
                chunk = mv[o:o + MiB]
                if bytes(chunk) != zero[:len(chunk)]:
                    f.seek(o)
                    f.write(chunk)
            f.truncate(len(content))
        shas[name] = hashlib.sha256(content).hexdigest()
    return shas

def file_sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for blk in iter(lambda: f.read(4 * MiB), b""):
            h.update(blk)
    return h.hexdigest()

class Run:
    def __init__(self, argv, rc, out, err, secs, timeout):
        self.argv, self.rc, self.out, self.err, self.secs, self.timeout = argv, rc, out, err, secs, timeout
    def kv(self):
        return dict(l.split("=", 1) for l in self.out.splitlines() if "=" in l)

def run(argv, timeout=TIMEOUT, env=None):
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV,
                         start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
        to = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        to = True
    return Run(argv, p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
               time.time() - t0, to)

def judge_engine(r, main):
    """'ok', 'error' (clean, naming main) or a failure text."""
    both = r.out + r.err
    if r.timeout:
        return "timeout after %ds" % TIMEOUT
    if SAN_RE.search(both):
        return "sanitizer report"
    if r.rc < 0:
        return "killed by signal %d" % -r.rc
    if r.rc == 0:
        return "ok"
    if r.rc == 1:
        lines = [l for l in r.err.splitlines() if l.strip()]
        if any(main in l and len(l) > len(main) + 12 for l in lines):
            return "error"
        return "error message does not name %s" % main
    return "exit status %d" % r.rc

def judge_dism(r, main):
    both = r.out + r.err
    if r.timeout:
        return "timeout"
    if SAN_RE.search(both):
        return "sanitizer report"
    if r.rc < 0:
        return "killed by signal %d" % -r.rc
    if r.rc == 0:
        return "ok"
    if re.search(r"^Error: ", both, re.M) and any(main in l for l in both.splitlines()):
        return "error"
    return "unclean failure (exit %d)" % r.rc

def engine_checks(c, d, main, refs):
    """Run dism-imageinfo, disk-scan (strict, and forensic where asked) and
    dism /Get-ImageInfo on the image; the problems found, the outcome."""
    path = os.path.join(d, main)
    problems, notes = [], []
    info = run([os.path.join(SAN, "bin", "dism-imageinfo"), path])
    scan = run([os.path.join(SAN, "tests", "disk-scan"), path])
    ji, js = judge_engine(info, main), judge_engine(scan, main)
    for tool, r, j in (("dism-imageinfo", info, ji), ("disk-scan", scan, js)):
        if j not in ("ok", "error"):
            problems.append("%s: %s" % (tool, j))
            problems.append("  " + " ".join(r.argv))
            problems.extend("  " + l for l in (r.err or r.out).splitlines()[:25])
    # libdism's view: dism /Get-ImageInfo (the extension must match the format)
    wstate = os.path.join(_work, "dism.%d" % os.getpid())
    dm = run([os.path.join(SAN, "bin", "dism"), "/LogPath:" + os.path.join(wstate, "dism.log"),
              "/Get-ImageInfo", "/ImageFile:" + path], env=dism_env(wstate))
    jd = judge_dism(dm, main)
    if jd not in ("ok", "error"):
        problems.append("dism /Get-ImageInfo: %s" % jd)
        problems.extend("  " + l for l in (dm.out + dm.err).splitlines()[-25:])
    elif ji in ("ok", "error") and (jd == "ok") != (ji == "ok" and "Format:           raw" not in info.out):
        problems.append("dism /Get-ImageInfo %s but dism-imageinfo %s" %
                        ("succeeded" if jd == "ok" else "failed", "succeeded" if ji == "ok" else "failed"))
    opened = "format=" in scan.out
    if ji in ("ok", "error") and js in ("ok", "error") and (ji == "ok") != opened:
        problems.append("dism-imageinfo %s but disk-scan %s the image" %
                        ("opened" if ji == "ok" else "refused", "opened" if opened else "refused"))
    outcome = "read" if js == "ok" else "refused"
    msg = (scan.err.strip().splitlines() or [""])[-1] if js == "error" else ""
    if not problems:
        problems += expect_checks(c, scan, js, refs, path, "")
    # forensic mode: asked for, or the strict open failed on a checksum
    if c.fmt == "vhd" and (c.forensic or (js == "error" and "checksum" in scan.err)):
        fs = run([os.path.join(SAN, "tests", "disk-scan"), "-B", path])
        jf = judge_engine(fs, main)
        if jf not in ("ok", "error"):
            problems.append("disk-scan -B: %s" % jf)
            problems.extend("  " + l for l in (fs.err or fs.out).splitlines()[:25])
        else:
            fc = Case(c.name, c.fmt, None, c.forensic or "any", ref=c.ref)
            problems += expect_checks(fc, fs, jf, refs, path, " (forensic -B)")
            notes.append("forensic: %s" % ("read" if jf == "ok" else "refused"))
    return problems, outcome, msg, notes

def expect_checks(c, scan, j, refs, path, tag):
    p = []
    kv = scan.kv()
    if c.expect == "error" and j != "error":
        p.append("expected a clean error%s, but it opened and read (%s)" % (tag, kv.get("format")))
    if c.expect == "same":
        if j != "ok":
            p.append("expected the same data as the undamaged image%s, but: %s" %
                     (tag, (scan.err.strip().splitlines() or ["?"])[-1]))
        else:
            want = refs[c.ref]
            got = (int(kv["size"]), kv["digest"])
            if got != want:
                p.append("read different data%s: size %d digest %s, undamaged %d %s" % ((tag,) + got + want))
    if j == "ok" and kv.get("format") == "raw":
        with open(path, "rb") as f:
            data = f.read()
        if raw_digest(data) != kv["digest"] or int(kv["size"]) != len(data):
            p.append("read as raw%s, but not the file's bytes" % tag)
    return p

_rundir = None

def dism_env(d):
    supp = os.path.join(_work, "lsan-dism.supp")
    if not os.path.exists(supp):
        with open(supp + ".tmp.%d" % os.getpid(), "w") as f:
            f.write(DISM_LSAN_SUPP)
        os.replace(supp + ".tmp.%d" % os.getpid(), supp)
    e = dict(ENV, ASAN_OPTIONS=DISM_ASAN, LSAN_OPTIONS=ENV["LSAN_OPTIONS"] + ":suppressions=" + supp)
    # The run directory holds the servers' Unix sockets: keep its path short.
    e["DISM_RUN_DIR"] = os.path.join(_rundir, str(os.getpid()))
    e["DISM_STATE_DIR"] = os.path.join(d, "state")
    return e

def wim_checks(c, d, main, wstate, mount):
    """dism /Get-ImageInfo (and /Index:1); a read-only mount if asked
    (mount == "check": with /CheckIntegrity)."""
    path = os.path.join(d, main)
    dism = os.path.join(SAN, "bin", "dism")
    env = dism_env(wstate)
    log = os.path.join(wstate, "dism.log")
    problems, outcome, msg = [], "", ""
    results = []
    for extra in ([], ["/Index:1"]):
        r = run([dism, "/LogPath:" + log, "/Get-ImageInfo", "/ImageFile:" + path] + extra, env=env)
        j = judge_dism(r, main)
        results.append(j)
        if j not in ("ok", "error"):
            problems.append("dism /Get-ImageInfo%s: %s" % (" /Index:1" if extra else "", j))
            problems.extend("  " + l for l in (r.out + r.err).splitlines()[-25:])
        if j == "error" and not msg:
            msg = next((l for l in r.out.splitlines() if main in l), "")
    outcome = "listed" if results[0] == "ok" else "refused"
    if c.expect == "error" and results[0] != "error":
        problems.append("expected a clean error from /Get-ImageInfo")
    if c.expect == "same" and results[0] != "ok":
        problems.append("expected /Get-ImageInfo to succeed")
    if mount and not problems:
        p2, mo = wim_mount(c, path, main, wstate, env, log, mount == "check")
        problems += p2
        outcome += ", " + mo
    return problems, outcome, msg

def listing_of(root, eio=None):
    """The tree's listing.  With eio (a list), a file whose read fails with
    EIO is appended there instead of failing the walk: a lazily mounted WIM
    reads a damaged chunk as EIO for that file only."""
    out = []
    for dp, dirs, files in os.walk(root):
        for n in dirs:
            out.append(("dir", os.path.relpath(os.path.join(dp, n), root), "-", "-"))
        for n in files:
            p = os.path.join(dp, n)
            try:
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                if eio is None or e.errno != errno.EIO:
                    raise
                eio.append(os.path.relpath(p, root))
                h = "EIO"
            out.append(("file", os.path.relpath(p, root), str(os.path.getsize(p)), h))
    return sorted(out, key=lambda t: t[1])

def corpus_listing(key):
    name = os.path.basename(BASES[key])[:-4]
    rows = []
    with open(os.path.join(CORPUS, "wim", "listings", name + ".tsv"), encoding="utf-8") as f:
        for l in f:
            t = l.rstrip("\n").split("\t")
            if len(t) == 5 and t[0] == "1":
                rows.append(tuple(t[1:]))
    return sorted(rows, key=lambda t: t[1])

def leftovers(wstate, mnt):
    left = []
    if os.path.ismount(mnt):
        left.append("%s is still mounted" % mnt)
    for sub in ("run/mounts", "state/mounts", "state/scratch"):
        p = (os.path.join(_rundir, str(os.getpid()), "mounts") if sub == "run/mounts"
             else os.path.join(wstate, sub))
        names = os.listdir(p) if os.path.isdir(p) else []
        if sub == "state/scratch" and "wim-cache" in names:
            # The WIM metadata cache keeps finished volumes on purpose; a
            # half-built one (.build-*) or a stray file is a leftover.
            names.remove("wim-cache")
            cache = os.path.join(p, "wim-cache")
            for e in os.listdir(cache):
                d = os.path.join(cache, e)
                if e == ".lock":
                    continue
                if (len(e) != 16 or not os.path.isdir(d)
                        or sorted(os.listdir(d)) != ["map", "volume"]):
                    left.append("the WIM metadata cache holds %s" % e)
        if names:
            left.append("%s holds %s" % (sub, " ".join(names)))
    return left

def force_cleanup(wstate, mnt, env, log):
    dism = os.path.join(SAN, "bin", "dism")
    run([dism, "/LogPath:" + log, "/Unmount-Image", "/MountDir:" + mnt, "/Discard"], 60, env)
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
    run([dism, "/LogPath:" + log, "/Cleanup-Mountpoints"], 60, env)
    mroot = os.path.join(_rundir, str(os.getpid()), "mounts")
    if os.path.isdir(mroot):
        for m in os.listdir(mroot):
            pf = os.path.join(mroot, m, "server.pid")
            try:
                os.kill(int(open(pf).read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass

def wim_mount(c, path, main, wstate, env, log, check_integrity=False):
    dism = os.path.join(SAN, "bin", "dism")
    mnt = os.path.join(wstate, "mnt")
    os.makedirs(mnt, exist_ok=True)
    problems = []
    r = run([dism, "/LogPath:" + log, "/Mount-Image", "/ImageFile:" + path, "/Index:1",
             "/MountDir:" + mnt, "/ReadOnly"] + (["/CheckIntegrity"] if check_integrity else []),
            MOUNT_TIMEOUT, env)
    j = judge_dism(r, main)
    outcome = {"ok": "mounted", "error": "mount refused"}.get(j, "mount failed")
    if j == "error":
        outcome += ": " + next((l for l in r.out.splitlines() if main in l), "")
    if j not in ("ok", "error"):
        problems.append("dism /Mount-Image /ReadOnly: %s" % j)
        problems.extend("  " + l for l in (r.out + r.err).splitlines()[-25:])
    elif j == "ok":
        if not os.path.ismount(mnt):
            problems.append("/Mount-Image succeeded but %s is not a mount point" % mnt)
        else:
            try:
                eio = [] if c.expect == "any" else None
                got = listing_of(mnt, eio)
                if c.expect == "same" and got != corpus_listing(c.ref):
                    problems.append("the mounted tree differs from the corpus listing")
                if eio:
                    outcome += ", %d file(s) read EIO" % len(eio)
            except OSError as e:
                problems.append("reading the mounted tree: %s" % e)
        u = run([dism, "/LogPath:" + log, "/Unmount-Image", "/MountDir:" + mnt, "/Discard"],
                MOUNT_TIMEOUT, env)
        if u.rc != 0:
            problems.append("/Unmount-Image /Discard failed: %s" % (u.out + u.err).strip()[-300:])
    elif c.expect == "same":
        problems.append("expected the mount to succeed")
    left = leftovers(wstate, mnt)
    if left:
        problems.append("left behind: " + "; ".join(left))
        force_cleanup(wstate, mnt, env, log)
    return problems, outcome

_refs = {}
_work = None
_keep = False
_mount = True

_cases = []

def run_case(i):
    c = _cases[i]
    t0 = time.time()
    d = tempfile.mkdtemp(prefix="case.", dir=_work)
    wstate = os.path.join(_work, "dism.%d" % os.getpid())
    os.makedirs(wstate, exist_ok=True)
    problems, notes = [], []
    try:
        files, main = c.build()
        shas = write_files(d, files)
        if c.fmt == "wim":
            problems, outcome, msg = wim_checks(c, d, main, wstate, _mount and c.mount)
        else:
            problems, outcome, msg, notes = engine_checks(c, d, main, _refs)
        for name, sha in sorted(shas.items()):
            p = os.path.join(d, name)
            if not os.path.exists(p) or file_sha(p) != sha:
                problems.append("%s was modified (sha256 changed)" % name)
    except Exception as e:              # a generator bug is a failure too
        import traceback
        problems = ["the case could not be run: %r" % e] + traceback.format_exc().splitlines()
        outcome, msg = "", ""
    finally:
        if not (_keep and problems):
            shutil.rmtree(d, ignore_errors=True)
    desc = outcome + ("; " + "; ".join(notes) if notes else "")
    if msg:
        desc += ": " + re.sub(r"\s+", " ", msg.replace(d + "/", ""))[:160]
    desc = desc.replace(d + "/", "").replace("#", "no.")     # no TAP directives
    return c.name, c.fmt, c.expect, not problems, desc, problems, time.time() - t0, outcome

def init_worker(refs, work, keep, mount, san, rundir):
    global _refs, _work, _keep, _mount, SAN, _rundir
    _refs, _work, _keep, _mount, SAN, _rundir = refs, work, keep, mount, san, rundir
    signal.signal(signal.SIGINT, signal.SIG_IGN)

def reference_digests(work):
    """Scan every undamaged reference (ASan build): {ref: (size, digest)}, and
    TAP lines checking the small ones against qemu-img's reading."""
    refs, lines = {}, []
    for name, build in sorted(REFS.items()):
        d = tempfile.mkdtemp(prefix="ref.", dir=work)
        try:
            files, main = build()
            write_files(d, files)
            path = os.path.join(d, main)
            r = run([os.path.join(SAN, "tests", "disk-scan"), path], 60)
            kv = r.kv()
            if r.rc != 0 or "digest" not in kv:
                lines.append("not ok - reference %s: the undamaged image reads (%s)" %
                             (name, (r.err.strip().splitlines() or ["?"])[-1]))
                continue
            refs[name] = (int(kv["size"]), kv["digest"])
            desc = "reference %s: the undamaged image reads (%s %s, %s bytes, digest %s)" % (
                name, kv["format"], kv["subtype"], kv["size"], kv["digest"])
            if kv["mode"] == "full" and name in ("vhd-dyn", "vhd-fixed", "vhdx-fixed", "vhdx-dyn"):
                fmt = "vpc" if name.startswith("vhd-") else "vhdx"
                q = subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", path, path + ".raw"],
                                   capture_output=True)
                if q.returncode == 0:
                    with open(path + ".raw", "rb") as f:
                        qd = raw_digest(f.read(), int(kv["size"]))
                    ok = qd == kv["digest"]
                    lines.append("%s - %s, equal to qemu-img's raw" % ("ok" if ok else "not ok", desc))
                    continue
            lines.append("ok - " + desc)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return refs, lines

def main_run(args):
    global SAN, _cases
    opts = {"--jobs": "2", "--only": None, "--work": None, "--san": None}
    flags = set()
    i = 0
    while i < len(args):
        if args[i] in ("--keep", "--no-mount"):
            flags.add(args[i]); i += 1
        else:
            opts[args[i]] = args[i + 1]; i += 2
    SAN = os.path.abspath(opts["--san"] or os.path.join(ROOT, "build-san"))
    work = opts["--work"] or tempfile.mkdtemp(prefix="dism-malformed.")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    cases = _cases = [c for c in all_cases() if not opts["--only"] or re.search(opts["--only"], c.name)]
    for k in BASES:
        base(k)         # load once, before the workers fork
    refs, lines = reference_digests(work)
    for l in lines:
        print(l, flush=True)
    counts = {}
    failed = 0
    slow = []
    rundir = tempfile.mkdtemp(prefix="dmf.", dir="/tmp")
    try:
        with multiprocessing.get_context("fork").Pool(
                int(opts["--jobs"]), init_worker,
                (refs, work, "--keep" in flags, "--no-mount" not in flags, SAN, rundir)) as pool:
            results = pool.imap(run_case, range(len(cases)), chunksize=1)
            for name, fmt, expect, ok, desc, problems, secs, outcome in results:
                ct = counts.setdefault(fmt, dict.fromkeys(
                    ("cases", "failed", "refused", "opened", "mounted", "mount refused"), 0))
                ct["cases"] += 1
                ct["failed"] += not ok
                ct["refused" if outcome.startswith("refused") else "opened"] += 1
                ct["mounted"] += ", mounted" in outcome
                ct["mount refused"] += "mount refused" in outcome
                failed += not ok
                print("%s - %s [%s]: %s" % ("ok" if ok else "not ok", name, expect, desc), flush=True)
                for p in problems:
                    print("# " + p, flush=True)
                slow.append((secs, name))
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    slow.sort(reverse=True)
    for fmt, ct in sorted(counts.items()):
        print("# summary %s: %d cases, %d failed, %d refused, %d opened/listed%s" % (
            fmt, ct["cases"], ct["failed"], ct["refused"], ct["opened"],
            ", %d mounted, %d mounts refused" % (ct["mounted"], ct["mount refused"])
            if fmt == "wim" else ""), flush=True)
    print("# summary total: %d cases, %d failed, %.0f s; slowest: %s" % (
        len(cases), failed, time.time() - t0,
        ", ".join("%s %.1fs" % (n, s) for s, n in slow[:3])), flush=True)
    if not opts["--work"]:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0

def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "list":
        only = a[2] if len(a) > 2 and a[1] == "--only" else None
        for c in all_cases():
            if not only or re.search(only, c.name):
                print("%s\t%s\t%s%s" % (c.name, c.fmt, c.expect, "\tmount" if c.mount else ""))
    elif a[0] == "make" and len(a) == 3:
        c = next((c for c in all_cases() if c.name == a[1]), None)
        if not c:
            sys.exit("malformed.py: no case " + a[1])
        os.makedirs(a[2], exist_ok=True)
        files, main_ = c.build()
        write_files(a[2], files)
        print(os.path.join(a[2], main_))
    elif a[0] == "run":
        sys.exit(main_run(a[1:]))
    else:
        sys.exit(__doc__)

if __name__ == "__main__":
    main()
