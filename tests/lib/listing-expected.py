#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""listing-expected.py TSV IMAGE: that image's lines of the corpus listing
TSV, sorted as tree-listing.py sorts."""
import sys
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1], encoding='utf-8') if l.strip()]
for t in sorted((r for r in rows if r[0] == sys.argv[2]), key=lambda t: t[2]):
    print('\t'.join(t))
