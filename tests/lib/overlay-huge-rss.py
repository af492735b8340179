#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""overlay-huge-rss.py DISKTOOL OVL IMG SCRIPT: disk-tool runs SCRIPT into a
new overlay OVL of IMG, then maps it; print the larger peak RSS (KiB)."""
import os, subprocess, sys
dt, ovl, img, script = sys.argv[1:]
worst = 0
for args in ([dt, "-N", ovl, img, "script", script], [dt, "-O", ovl, img, "map"]):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit("failed: %s" % args)
    worst = max(worst, ru.ru_maxrss)
print(worst)
