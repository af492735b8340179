#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""unit-cmd.py UNITFILE KEY: run the unit's KEY= command as systemd would
(its quoting, "%%" and "$$", a leading "-"); exit with the command's status,
99 when the unit has not exactly one KEY= line."""
import shlex, subprocess, sys
unit, key = sys.argv[1], sys.argv[2]
lines = [l.rstrip('\n')[len(key) + 1:] for l in open(unit, encoding='utf-8') if l.startswith(key + '=')]
if len(lines) != 1:
    print('%s: %d %s= lines' % (unit, len(lines), key)); sys.exit(99)
v = lines[0].lstrip('-').replace('%%', '%').replace('$$', '$')
sys.exit(subprocess.run(shlex.split(v)).returncode)
