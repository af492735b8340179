/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* path-size.h - the sizes of the path buffers, named once.
 *
 * DISM_PATH_MAX holds any path the kernel accepts (PATH_MAX, 4096 with
 * the NUL).  DISM_SUBPATH_MAX holds a file inside such a directory: a
 * DISM_PATH_MAX directory, '/' and a name of up to 103 bytes ("nbd.sock",
 * "supervisor.pid", a mount id and suffix): snprintf into it never
 * truncates a name we make under a directory we were given. */
#ifndef DISM_COMMON_PATH_SIZE_H
#define DISM_COMMON_PATH_SIZE_H

#include <limits.h>

#define DISM_PATH_MAX     PATH_MAX
#define DISM_SUBPATH_MAX  (DISM_PATH_MAX + 104)

#endif
