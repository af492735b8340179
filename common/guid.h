/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guid.h - GUIDs: text form, comparison, parsing, random generation. */
#ifndef DISM_COMMON_GUID_H
#define DISM_COMMON_GUID_H

#include <stdbool.h>
#include <stdint.h>

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" and its NUL. */
#define DISM_GUID_STRLEN 37

/* A 16-byte GUID in the on-disk (mixed-endian, Microsoft) layout: the
 * first three fields little-endian, the last eight bytes as written. */
struct dism_guid { uint8_t b[16]; };

/* Lower-case text, the first three fields read little-endian, as Windows
 * prints them. */
void dism_guid_to_string(const struct dism_guid *g, char out[DISM_GUID_STRLEN]);
/* Same, for a GUID stored fully big-endian (VHD footers). */
void dism_guid_be_to_string(const uint8_t b[16], char out[DISM_GUID_STRLEN]);
bool dism_guid_is_zero(const struct dism_guid *g);
bool dism_guid_equal(const struct dism_guid *a, const struct dism_guid *b);
/* "{xxxxxxxx-...}" or "xxxxxxxx-..." (either case) into the Microsoft
 * layout.  0 or -EINVAL. */
int dism_guid_parse(const char *s, struct dism_guid *g);
/* A random version-4 (variant 1) GUID: 0, or -errno when the kernel gave
 * no random bytes; g is then still filled (from the pid and an address),
 * for the callers that must go on, but should not be trusted as unique. */
int dism_guid_generate(struct dism_guid *g);
/* The same as text: one generator for the binary and the text form. */
int dism_guid_generate_string(char out[DISM_GUID_STRLEN]);

#endif
