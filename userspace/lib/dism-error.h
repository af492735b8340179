/* dism-error.h - libdism's internal error reporting.  Internal functions
 * return a negative errno (or an HRESULT at the API edge) and record a
 * message naming the object and the problem; the API turns the last message
 * into DismGetLastErrorMessage's text (per thread). */
#ifndef DISM_ERROR_H
#define DISM_ERROR_H

#include <stdarg.h>

void dism_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *dism_last_error(void);
void dism_clear_error(void);

#endif
