#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""ctl.py SOCKET COMMAND: send one command to dism-nbd-server's control
socket, print every answer line, exit 0 on a final OK, 1 on ERR."""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    lines = buf.decode().splitlines()
    if lines and (lines[-1].startswith("OK") or lines[-1].startswith("ERR")) and buf.endswith(b"\n"):
        break
print(buf.decode(), end="")
sys.exit(0 if buf.decode().splitlines()[-1].startswith("OK") else 1)
