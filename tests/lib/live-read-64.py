#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""live-read-64.py SOCK: read back what live-write-64.py wrote; print "all
there" or the first bad writes."""
import sys, nbdclient
c = nbdclient.connect_go(sys.argv[1], structured=False)
bad = [i for i in range(64) if c.read(i * 40960, 40960)["data"] != bytes([i + 1]) * 40960]
print("bad %s" % bad[:8] if bad else "all there")
