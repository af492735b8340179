#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-sigterm-client.py URI PID: connect, write, send SIGTERM to the server
PID; print "closed" when the connection then ends, else "still served
after SIGTERM"."""
import nbd, os, signal, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"term" * 1024, 0)
os.kill(int(sys.argv[2]), signal.SIGTERM)
time.sleep(0.3)
try:
    h.pread(512, 0); print("still served after SIGTERM")
except nbd.Error:
    print("closed")
