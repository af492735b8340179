#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""tree-listing.py DIR IMAGE: the tree as the corpus WIM listings write it
(image, type, path, size, sha256 of the unnamed stream), sorted by path."""
import hashlib, os, sys
root, image = sys.argv[1], sys.argv[2]
out = []
for d, dirs, files in os.walk(root):
    for n in dirs:
        out.append((image, 'dir', os.path.relpath(os.path.join(d, n), root), '-', '-'))
    for n in files:
        p = os.path.join(d, n)
        with open(p, 'rb') as f:
            h = hashlib.sha256(f.read()).hexdigest()
        out.append((image, 'file', os.path.relpath(p, root), str(os.path.getsize(p)), h))
for t in sorted(out, key=lambda t: t[2]):
    print('\t'.join(t))
