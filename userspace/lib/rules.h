/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rules.h - DISM's rules for a mount (rules.c).  Each check publishes the
 * API error DISM gives (dism_api_fail) and returns its HRESULT. */
#ifndef DISM_RULES_H
#define DISM_RULES_H

#include <stdbool.h>

#include "dism-internal.h"
#include "wim.h"

/* What can be checked without the registry; fills r's image, mount_dir,
 * format, index, mode.  wi: the WIM image (WIMs only). */
HRESULT dism_validate_mount_args(const char *func, const char *image_arg, const char *dir_arg,
                                 UINT index, PCWSTR name, DismImageIdentifier ident, DWORD flags,
                                 struct dism_record *r, struct dism_wim_image *wi);
/* What needs the registry (call with the lock held). */
HRESULT dism_validate_against_registry(const char *func, const struct dism_record *r);
/* Does the directory hold nothing (false if it cannot be read)? */
bool dism_dir_is_empty(const char *path);

#endif
