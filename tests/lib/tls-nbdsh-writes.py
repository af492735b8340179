# SPDX-License-Identifier: GPL-2.0-or-later
# tls-nbdsh-writes.py: an nbdsh script (nbdsh -c - < this file), with
# TLS_CLIENT_PKI (the client's X.509 directory) and TLS_PORT in the
# environment: two writes over TLS on one connection, read back on a new one
# (48-nbd-tls.t); prints "written".
import os, nbd
def conn():
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(os.environ["TLS_CLIENT_PKI"])
    h.connect_tcp("127.0.0.1", os.environ["TLS_PORT"])
    return h
MiB = 1024 * 1024
data = bytes(range(256)) * 4096 * 3          # 3 MiB, across VHDX blocks
h = conn()
h.pwrite(data, 5 * MiB + 123)
h.pwrite(b"tls!" * 1024, 45 * MiB)          # into a hole
h.flush()
h.shutdown()
h = conn()
assert h.pread(len(data), 5 * MiB + 123) == data
assert h.pread(4096, 45 * MiB) == b"tls!" * 1024
h.shutdown()
print("written")
