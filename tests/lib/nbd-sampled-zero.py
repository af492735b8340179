#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbd-sampled-zero.py URI: 97 reads of 64 KiB spread over the export; print
"zero" when all are zeroes, else "nonzero"."""
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
size = h.get_size()
ok = all(h.pread(65536, off) == bytes(65536) for off in range(0, size - 65536, size // 97))
print("zero" if ok else "nonzero")
