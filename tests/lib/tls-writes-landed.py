#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""tls-writes-landed.py VHDX RAW SRC: convert VHDX to RAW with qemu-img and
print "same" when it is SRC with 48-nbd-tls.t's two TLS writes, else
"differs"."""
import subprocess, sys
vhdx, raw, src = sys.argv[1:]
subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", vhdx, raw], check=True)
got = open(raw, "rb").read(); want = bytearray(open(src, "rb").read())
data = bytes(range(256)) * 4096 * 3
want[5 * 2**20 + 123: 5 * 2**20 + 123 + len(data)] = data
want[45 * 2**20: 45 * 2**20 + 4096] = b"tls!" * 1024
print("same" if got == bytes(want) else "differs")
