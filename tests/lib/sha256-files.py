#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""sha256-files.py FILE... : "sha256  path" of each file, one line each, or
"ERROR reason  path" for a file that cannot be read (a damaged WIM's file).
Run by several readers at once (xargs -P) in 61-wim-differential.t and
62-wim-damaged.t: one write(2) per line is atomic on the pipe they share."""
import hashlib, os, sys
for p in sys.argv[1:]:
    h = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        line = '%s  %s\n' % (h.hexdigest(), p)
    except OSError as e:
        line = 'ERROR %s  %s\n' % (e.strerror, p)
    os.write(1, line.encode('utf-8', 'surrogateescape'))
