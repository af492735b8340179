/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dism-error.h - libdism's one error convention.
 *
 * Inside libdism a function returns 0 or a negative errno and records a
 * message naming the object and the problem (dism_set_error).  Only the API
 * edge (the Dism* functions and the DISM rules they apply) speaks HRESULT:
 * it publishes the message for DismGetLastErrorMessage with dism_api_fail,
 * or with dism_api_fail_errno, which turns a negative errno into the
 * HRESULT DISM gives (dism_hr_from_errno: the one table).
 *
 * The messages live in one per-thread slot: the working message, and the
 * one published by the thread's last failed API call (a later successful
 * call must not change what DismGetLastErrorMessage returns, whatever it
 * recovered from inside).  The HRESULT side is declared in dism-internal.h:
 * this header stays free of DismApi.h (ntfs-3g's headers define BOOL too). */
#ifndef DISM_ERROR_H
#define DISM_ERROR_H

#include <stdarg.h>

void dism_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *dism_last_error(void);
void dism_clear_error(void);
/* Publish msg as the thread's last failed API call's message (only the API
 * edge, api-error.c, does), and read it back (DismGetLastErrorMessage). */
void dism_publish_error(const char *msg);
const char *dism_published_error(void);

#endif
