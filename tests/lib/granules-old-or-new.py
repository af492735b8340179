#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""granules-old-or-new.py OVL OLD NEW: exit 0 when every 4 KiB granule of OVL
equals OLD's or NEW's (the files the same size), else say which."""
import sys
ovl, old, new = (open(p, 'rb').read() for p in sys.argv[1:4])
if not (len(ovl) == len(old) == len(new)):
    sys.exit("sizes differ: %d %d %d" % (len(ovl), len(old), len(new)))
bad = []
for g in range(0, len(ovl), 4096):
    o = ovl[g:g + 4096]
    if o != old[g:g + 4096] and o != new[g:g + 4096]:
        bad.append(g // 4096)
if bad:
    sys.exit("granules neither old nor new: %s" % bad[:20])
