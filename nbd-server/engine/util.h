/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* util.h - engine helpers that are not byte-level: byte order, CRC-32C,
 * GUIDs and UTF-16 are in common/ (byteorder.h, crc32c.h, guid.h, utf16.h). */
#ifndef DISM_UTIL_H
#define DISM_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Resolve a parent path recorded in a child image (Windows or POSIX form,
 * absolute or relative) against the child's directory.  Converts '\' to '/',
 * drops a leading ".\" and, for absolute Windows paths ("C:\dir\x.vhd"),
 * yields only the file name joined to the child's directory (the drive does
 * not exist here).  Returns 0 and the candidate path in out. */
int dism_resolve_parent_path(const char *child_path, const char *recorded,
                             bool windows_absolute, char *out, size_t outsize);

#endif
