/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dism-imageinfo - print the facts of a VHD, VHDX or raw image: format and
 * subtype, virtual size, sector sizes, block size, allocated bytes and the
 * whole parent chain.  It never writes to the image (opened read-only; a
 * dirty VHDX log is replayed in memory). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"

static void
usage(FILE *f)
{
  fprintf(f,
          "Usage: dism-imageinfo [--json] [--format raw|vhd|vhdx] [--allow-bad-checksum] IMAGE\n"
          "Print the facts of a disk image and its parent chain.\n");
}

static void
json_string(const char *s)
{
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void
print_text(const struct disk *d, const struct disk_info *i, int depth)
{
  const char *ind = depth ? "  " : "";

  if (depth)
    printf("\nParent %d:\n", depth);
  printf("%sImage file:       %s\n", ind, d->path);
  printf("%sFormat:           %s%s%s\n", ind, i->format, i->subtype[0] ? " " : "",
         i->subtype);
  printf("%sVirtual size:     %llu bytes (%.2f GiB)\n", ind,
         (unsigned long long) i->virtual_size, i->virtual_size / 1073741824.0);
  printf("%sLogical sector:   %u\n", ind, i->logical_sector);
  printf("%sPhysical sector:  %u\n", ind, i->physical_sector);
  if (i->block_size)
    printf("%sBlock size:       %u bytes\n", ind, i->block_size);
  printf("%sAllocated:        %llu bytes\n", ind,
         (unsigned long long) i->allocated_bytes);
  printf("%sFile size:        %llu bytes\n", ind, (unsigned long long) i->file_size);
  if (i->unique_id[0])
    printf("%sUnique id:        %s\n", ind, i->unique_id);
  if (i->creator[0])
    printf("%sCreator:          %s\n", ind, i->creator);
  if (i->parent_hint[0])
    printf("%sParent:           %s\n", ind, i->parent_hint);
  if (i->notes[0])
    printf("%sNotes:            %s\n", ind, i->notes);
}

static void
print_json(const struct disk *d, const struct disk_info *i)
{
  printf("{\"file\":");
  json_string(d->path);
  printf(",\"format\":");
  json_string(i->format);
  printf(",\"subtype\":");
  json_string(i->subtype);
  printf(",\"virtual_size\":%llu,\"logical_sector\":%u,\"physical_sector\":%u,"
         "\"block_size\":%u,\"allocated_bytes\":%llu,\"file_size\":%llu",
         (unsigned long long) i->virtual_size, i->logical_sector,
         i->physical_sector, i->block_size,
         (unsigned long long) i->allocated_bytes,
         (unsigned long long) i->file_size);
  printf(",\"unique_id\":");
  json_string(i->unique_id);
  printf(",\"creator\":");
  json_string(i->creator);
  printf(",\"parent_hint\":");
  json_string(i->parent_hint);
  printf(",\"notes\":");
  json_string(i->notes);
  putchar('}');
}

int
main(int argc, char **argv)
{
  static const struct option longopts[] = {
    { "json", no_argument, NULL, 'j' },
    { "format", required_argument, NULL, 'f' },
    { "allow-bad-checksum", no_argument, NULL, 'B' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct disk_open_opts opts = { .readonly = true };
  bool json = false;
  struct disk *d = NULL;
  int c, r, depth = 0, status = 1;

  while ((c = getopt_long(argc, argv, "jf:Bh", longopts, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'f': opts.format = optarg; break;
    case 'B': opts.allow_bad_checksum = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (argc - optind != 1) {
    usage(stderr);
    return 2;
  }

  r = disk_open(argv[optind], &opts, &d);
  if (r < 0) {
    fprintf(stderr, "dism-imageinfo: %s\n", disk_last_error());
    goto out;
  }
  if (json)
    printf("{\"chain\":[");
  for (struct disk *p = d; p; p = p->parent, depth++) {
    struct disk_info info;
    r = disk_info(p, &info);
    if (r < 0) {
      fprintf(stderr, "dism-imageinfo: %s\n", disk_last_error());
      goto out;
    }
    if (json) {
      if (depth)
        putchar(',');
      print_json(p, &info);
    } else {
      print_text(p, &info, depth);
    }
  }
  if (json)
    printf("]}\n");
  status = 0;
out:
  disk_close(d);
  return status;
}
