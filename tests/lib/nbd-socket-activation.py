#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-socket-activation.py SERVER IMG PATH: a listening Unix socket at PATH
passed as fd 3 (LISTEN_PID/LISTEN_FDS) to SERVER --socket-activation
--oneshot; prints sa-ok when it serves IMG and exits 0."""
import os, socket, subprocess, sys, nbd
srv, img, path = sys.argv[1:]
ls = socket.socket(socket.AF_UNIX); ls.bind(path); ls.listen(4)
p = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --socket-activation --oneshot "$1"', srv, img],
                     pass_fds=[ls.fileno()], preexec_fn=lambda: os.dup2(ls.fileno(), 3))
ls.close()
h = nbd.NBD(); h.connect_unix(path)
assert h.get_size() == os.path.getsize(img)
h.shutdown(); del h
assert p.wait(timeout=10) == 0, "exit status"
print("sa-ok")
