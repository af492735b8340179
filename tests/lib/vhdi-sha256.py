#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""vhdi-sha256.py IMG [PARENT]: sha256 of the whole disk as libvhdi (pyvhdi)
reads it, PARENT opened as IMG's parent."""
import hashlib, sys, pyvhdi
f = pyvhdi.file(); f.open(sys.argv[1])
if len(sys.argv) > 2:
    p = pyvhdi.file(); p.open(sys.argv[2]); f.set_parent(p)
h = hashlib.sha256(); size = f.get_media_size(); off = 0
while off < size:
    n = min(4 << 20, size - off); h.update(f.read_buffer_at_offset(n, off)); off += n
print(h.hexdigest())
