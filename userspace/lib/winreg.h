/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* winreg.h - which Windows an image holds, from its offline registry.
 *
 * The SOFTWARE and SYSTEM hives (Windows\System32\config) are read with
 * hivex; where each field comes from is in docs/dism-api.md, "Which
 * Windows: /Get-ImageInfo".  A hive is untrusted input: a hive that cannot
 * be read leaves its fields empty and adds a warning naming it, never an
 * error.  Nothing here prints. */
#ifndef DISM_WINREG_H
#define DISM_WINREG_H

#include <stdbool.h>
#include <stdint.h>

#define DISM_WIN_LANG_MAX 32
#define DISM_WIN_NO_DEFAULT 0xFFFFFFFFu
#define DISM_ARCH_UNKNOWN 0xFFFFu     /* PROCESSOR_ARCHITECTURE_UNKNOWN */

struct dism_windows {
  bool found;                        /* at least one hive was read */
  char product_name[256], edition[128], installation_type[64], product_type[64];
  char product_suite[128], hal[64], system_root[64];
  unsigned arch;                     /* PROCESSOR_ARCHITECTURE_*, DISM_ARCH_UNKNOWN */
  bool have_version;
  unsigned major, minor, build, spbuild, splevel; /* spbuild: UBR */
  char languages[DISM_WIN_LANG_MAX][24];
  unsigned language_count;
  unsigned default_language;         /* index, or DISM_WIN_NO_DEFAULT */
  char warning[1024];                /* "" or one line per hive not read */
};

/* Empty: every text "", arch unknown, no default language. */
void dism_windows_init(struct dism_windows *w);

/* Read the two hives (file names hivex can open, e.g. /proc/self/fd/N;
 * NULL for a hive that is absent).  what_* name them in warnings.
 * Always returns 0: what could not be read is in w->warning. */
int dism_winreg_read(const char *software, const char *what_software, const char *system,
                     const char *what_system, struct dism_windows *w);

/* The same from hive bytes in memory (copied to a memfd), for the readers
 * of an image and the fuzzer; NULL/0 for an absent hive.  0, or -ENOMEM /
 * -errno if the memfd could not be made. */
int dism_winreg_read_mem(const void *software, size_t software_len, const char *what_software,
                         const void *system, size_t system_len, const char *what_system,
                         struct dism_windows *w);

/* Append a warning line to w->warning (truncated if full). */
void dism_windows_warn(struct dism_windows *w, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Fill each field of `to` that is empty from `from` (the XML first, the
 * registry for what it lacks). */
void dism_windows_merge(struct dism_windows *to, const struct dism_windows *from);

#endif
