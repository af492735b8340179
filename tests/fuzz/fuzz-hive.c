/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuzz-hive - libFuzzer target for the offline-registry reader
 * (userspace/lib/winreg.c, dism_winreg_read_mem) that /Get-ImageInfo runs
 * on the SOFTWARE and SYSTEM hives of an image.
 *
 * Input: one byte choosing where the rest goes (bit 0: as SOFTWARE, bit 1:
 * as SYSTEM, neither: both), then the hive's bytes.  Beyond "no crash, no
 * leak": whatever the hive holds, every text field stays a terminated
 * string within its buffer, the language list within its bounds and the
 * default language index names one of them or none. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "winreg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(const char *s, size_t cap)
{
  if (strnlen(s, cap) >= cap)
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct dism_windows w;

  if (size < 1)
    return 0;
  unsigned mode = data[0] & 3 ? data[0] & 3 : 3;
  const uint8_t *hive = data + 1;
  size_t len = size - 1;
  dism_windows_init(&w);
  if (dism_winreg_read_mem(mode & 1 ? hive : NULL, len, "SOFTWARE", mode & 2 ? hive : NULL, len,
                           "SYSTEM", &w) != 0)
    return 0;
  check_text(w.product_name, sizeof w.product_name);
  check_text(w.edition, sizeof w.edition);
  check_text(w.installation_type, sizeof w.installation_type);
  check_text(w.product_type, sizeof w.product_type);
  check_text(w.product_suite, sizeof w.product_suite);
  check_text(w.hal, sizeof w.hal);
  check_text(w.system_root, sizeof w.system_root);
  check_text(w.warning, sizeof w.warning);
  if (w.language_count > DISM_WIN_LANG_MAX)
    abort();
  for (unsigned i = 0; i < w.language_count; i++)
    check_text(w.languages[i], sizeof w.languages[i]);
  if (w.default_language != DISM_WIN_NO_DEFAULT && w.default_language >= w.language_count)
    abort();
  return 0;
}
