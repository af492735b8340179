#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""file-extent-map.py IMG: the file's data and holes (SEEK_DATA/SEEK_HOLE) as
"OFFSET LENGTH TYPE" lines, TYPE 0 for data and 3 for a hole, as nbdinfo
--map prints them."""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size; pos = 0
while pos < size:
    try: data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError: data = size
    if data > pos: print(pos, data - pos, 3); pos = data; continue
    hole = os.lseek(fd, pos, os.SEEK_HOLE); print(pos, hole - pos, 0); pos = hole
