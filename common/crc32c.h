/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* crc32c.h - CRC-32C (Castagnoli), as VHDX and the overlay use it. */
#ifndef DISM_COMMON_CRC32C_H
#define DISM_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* dism_crc32c(0, buf, len) gives the standard value (the initial ~0 and the
 * final xor with ~0 are applied inside); pass a previous result as crc to
 * continue over more bytes. */
uint32_t dism_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
