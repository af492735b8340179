#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""tls-sigterm-client.py PKIDIR PORT PID: a TLS (X.509) client on
127.0.0.1:PORT reads, sends SIGTERM to the server PID; print "closed" when
the connection then ends, else "still served"."""
import nbd, os, signal, sys, time
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(sys.argv[1])
h.connect_tcp("127.0.0.1", sys.argv[2])
h.pread(512, 0)
os.kill(int(sys.argv[3]), signal.SIGTERM)
time.sleep(0.5)
try:
    h.pread(512, 0); print("still served")
except nbd.Error:
    print("closed")
