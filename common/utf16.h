/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* utf16.h - UTF-16 (on-disk names, Windows strings) to and from UTF-8. */
#ifndef DISM_COMMON_UTF16_H
#define DISM_COMMON_UTF16_H

#include <stddef.h>

/* UTF-16LE (or BE) to UTF-8.  len16 counts 16-bit units; stops at a NUL
 * unit.  Returns the byte length written (excluding the NUL), -EILSEQ for
 * an unpaired surrogate or -ENAMETOOLONG.  out is always NUL-terminated
 * when outsize > 0. */
int dism_utf16le_to_utf8(const void *in, size_t len16, char *out, size_t outsize);
int dism_utf16be_to_utf8(const void *in, size_t len16, char *out, size_t outsize);
/* NUL-terminated UTF-8 to UTF-16LE (no NUL unit written); returns the
 * number of 16-bit units, -EILSEQ or -ENAMETOOLONG. */
int dism_utf8_to_utf16le(const char *in, void *out, size_t out_units);

#endif
