/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imageinfo-api IMAGE - every field DismGetImageInfo gives for each image of
 * IMAGE, one "key=value" a line (tests/t/11-imageinfo-windows.t compares them
 * with what the test hives set).  Exit 0, or 1 with the error message. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "DismApi.h"

static void
field(const char *key, PCWSTR v)
{
  printf("%s=%ls\n", key, v ? v : L"(null)");
}

int
main(int argc, char **argv)
{
  DismImageInfo *info = NULL;
  UINT count = 0;
  wchar_t path[4096];
  int rc = 1;

  setlocale(LC_ALL, "C.UTF-8");
  if (argc != 2 || mbstowcs(path, argv[1], 4096) == (size_t) -1) {
    fprintf(stderr, "usage: imageinfo-api IMAGE\n");
    return 2;
  }
  if (FAILED(DismInitialize(DismLogErrors, NULL, NULL)))
    return 1;
  HRESULT hr = DismGetImageInfo(path, &info, &count);
  if (FAILED(hr)) {
    DismString *msg = NULL;
    DismGetLastErrorMessage(&msg);
    fprintf(stderr, "DismGetImageInfo: 0x%08x %ls\n", (unsigned) hr, msg ? msg->Value : L"");
    DismDelete(msg);
    goto out;
  }
  printf("count=%u\n", count);
  for (UINT i = 0; i < count; i++) {
    const DismImageInfo *ii = &info[i];
    printf("index=%u\ntype=%d\nsize=%llu\narch=%u\n", ii->ImageIndex, (int) ii->ImageType,
           (unsigned long long) ii->ImageSize, ii->Architecture);
    field("name", ii->ImageName);
    field("product_name", ii->ProductName);
    field("edition", ii->EditionId);
    field("installation", ii->InstallationType);
    field("hal", ii->Hal);
    field("product_type", ii->ProductType);
    field("product_suite", ii->ProductSuite);
    field("system_root", ii->SystemRoot);
    printf("version=%u.%u.%u\nspbuild=%u\nsplevel=%u\nbootable=%d\n", ii->MajorVersion,
           ii->MinorVersion, ii->Build, ii->SpBuild, ii->SpLevel, (int) ii->Bootable);
    printf("languages=");
    for (UINT l = 0; l < ii->LanguageCount; l++)
      printf("%s%ls", l ? "," : "", ii->Language[l].Value);
    printf("\ndefault_language=%ls\n",
           ii->LanguageCount ? ii->Language[ii->DefaultLanguageIndex].Value : L"");
    const DismWimCustomizedInfo *c = ii->CustomizedInfo;
    if (c)
      printf("dirs=%u\nfiles=%u\ncreated_year=%u\n", c->DirectoryCount, c->FileCount,
             c->CreatedTime.wYear);
    else
      printf("customized=none\n");
  }
  rc = 0;
out:
  DismDelete(info);
  DismShutdown();
  return rc;
}
