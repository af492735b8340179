#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""live-write-64.py SOCK: 64 writes of 40960 bytes (2.5 MiB, byte i+1 in the
i-th) and no FLUSH; print "written" when all are acknowledged."""
import sys, nbdclient
c = nbdclient.connect_go(sys.argv[1], structured=False)
errs = [c.write(i * 40960, bytes([i + 1]) * 40960)["error"] for i in range(64)]
print("written" if not any(errs) else "errors %s" % errs)   # 2.5 MiB, no FLUSH
