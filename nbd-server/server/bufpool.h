/* SPDX-License-Identifier: GPL-2.0-or-later */
/* bufpool.h - reusable I/O buffers (see bufpool.c). */
#ifndef DISM_BUFPOOL_H
#define DISM_BUFPOOL_H

#include <stddef.h>

/* A buffer of at least len bytes, or NULL.  Return it with bufpool_put and
 * the same len. */
void *bufpool_get(size_t len);
void bufpool_put(void *buf, size_t len);
/* The bytes bufpool_get(len) really allocates (what a request costs). */
size_t bufpool_size(size_t len);
/* Free every idle buffer (at shutdown, so leak checkers stay quiet). */
void bufpool_trim(void);

#endif
