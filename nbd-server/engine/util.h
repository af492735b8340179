/* util.h - small helpers shared by the format backends: byte order,
 * checksums, GUIDs, UTF-16 and path handling. */
#ifndef DISM_UTIL_H
#define DISM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t get_le16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get_le32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get_le64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint16_t get_be16(const void *p) { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
static inline uint32_t get_be32(const void *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t get_be64(const void *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline void put_le16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put_le32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_le64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void put_be16(void *p, uint16_t v) { v = __builtin_bswap16(v); memcpy(p, &v, 2); }
static inline void put_be32(void *p, uint32_t v) { v = __builtin_bswap32(v); memcpy(p, &v, 4); }
static inline void put_be64(void *p, uint64_t v) { v = __builtin_bswap64(v); memcpy(p, &v, 8); }

/* CRC-32C (Castagnoli), as VHDX uses it: crc32c(0, buf, len) gives the
 * standard value (initial ~0, final xor ~0 are applied inside). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* A 16-byte GUID in the on-disk (mixed-endian, Microsoft) layout. */
struct guid { uint8_t b[16]; };
/* Formats as "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (37 bytes with NUL),
 * reading the first three fields little-endian, as Windows prints them. */
void guid_to_string(const struct guid *g, char out[37]);
/* Same, for a GUID stored fully big-endian (VHD footers). */
void guid_be_to_string(const uint8_t b[16], char out[37]);
bool guid_is_zero(const struct guid *g);
bool guid_equal(const struct guid *a, const struct guid *b);
/* Parse "{xxxxxxxx-...}" or "xxxxxxxx-..." into the Microsoft layout. */
int guid_parse(const char *s, struct guid *g);
/* A random version-4 GUID. */
void guid_generate(struct guid *g);

/* UTF-16LE (or BE) to UTF-8.  len16 counts 16-bit units; stops at a NUL
 * unit.  Returns the byte length written (excluding the NUL) or -EILSEQ /
 * -ENAMETOOLONG.  out is always NUL-terminated when outsize > 0. */
int utf16le_to_utf8(const void *in, size_t len16, char *out, size_t outsize);
int utf16be_to_utf8(const void *in, size_t len16, char *out, size_t outsize);
/* UTF-8 to UTF-16LE; returns the number of 16-bit units or a negative errno. */
int utf8_to_utf16le(const char *in, void *out, size_t out_units);

/* Resolve a parent path recorded in a child image (Windows or POSIX form,
 * absolute or relative) against the child's directory.  Converts '\' to '/',
 * drops a leading ".\" and, for absolute Windows paths ("C:\dir\x.vhd"),
 * yields only the file name joined to the child's directory (the drive does
 * not exist here).  Returns 0 and the candidate path in out. */
int resolve_parent_path(const char *child_path, const char *recorded,
                        bool windows_absolute, char *out, size_t outsize);

#endif
