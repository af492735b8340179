#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-fd-modes.py SERVER IMG LIBDIR: the server on one end of a socketpair,
with --fd (libnbd does the handshake) and with --fd-transmission (handshake
done elsewhere, simple replies only); prints fd-ok when both serve IMG and
exit 0."""
import os, socket, subprocess, sys, struct
sys.path.insert(0, sys.argv[3]); import nbd, nbdclient as N
srv, img = sys.argv[1], sys.argv[2]
want = open(img, "rb").read(4096 * 3)[4096:8192]
a, b = socket.socketpair()
p = subprocess.Popen([srv, "--fd", str(b.fileno()), img], pass_fds=[b.fileno()])
b.close()
h = nbd.NBD(); h.connect_socket(a.detach())   # libnbd owns the fd now
assert h.pread(4096, 4096) == want, "--fd read"
h.shutdown(); del h
assert p.wait(timeout=10) == 0, "--fd: server exit status"
a, b = socket.socketpair()
p = subprocess.Popen([srv, "--fd-transmission", str(b.fileno()), img], pass_fds=[b.fileno()])
b.close()
c = N.Client.__new__(N.Client); c.sock = a; c.structured = c.extended = False
c.cookie = 0; c.read_lengths = {}
r = c.read(4096, 4096)
assert r["form"] == "simple" and r["data"] == want, "--fd-transmission read"
assert c.call(N.CMD_FLUSH)["error"] == 0
assert c.call(N.CMD_BLOCK_STATUS, 0, 4096)["error"] == N.EINVAL
c.disc(); assert c.is_closed_by_peer()
assert p.wait(timeout=10) == 0, "--fd-transmission: server exit status"
print("fd-ok")
