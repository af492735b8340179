#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""commit-race.py URI MODEL CTLSOCK CTL: random writes through NBD while three
COMMITs run on the control socket (CTL is ctl.py); the disk as the client
sees it goes to MODEL; exit 0 when every COMMIT succeeded."""
import nbd, random, subprocess, sys, threading
uri, model_path, ctl_sock, ctl = sys.argv[1:5]
h = nbd.NBD(); h.connect_uri(uri)
size = h.get_size()
model = bytearray()                         # the disk as the client sees it
for off in range(0, size, 8 << 20):
    model += h.pread(min(8 << 20, size - off), off)
r = random.Random(11)
stop = threading.Event()
commits = []
def committer():
    for _ in range(3):
        p = subprocess.run(["/usr/bin/python3", ctl, ctl_sock, "COMMIT"], capture_output=True, text=True)
        commits.append(p.returncode)
    stop.set()
t = threading.Thread(target=committer); t.start()
n = 0
while not stop.is_set() or n < 200:
    off = r.randrange(0, size - 65536) & ~511
    data = r.randbytes(r.randrange(512, 65536) & ~511)
    h.pwrite(data, off)
    model[off:off + len(data)] = data
    n += 1
    if n > 20000: break
t.join()
h.flush()
open(model_path, "wb").write(model)
print("writes", n, "commits", commits)
sys.exit(0 if commits == [0, 0, 0] else 1)
