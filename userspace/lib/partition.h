/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* partition.h - find the Windows partition of a virtual disk.
 *
 * The disk is read through a callback, so the same code reads the FUSE file
 * (LOOP method), an NBD connection before it is handed to the kernel (NBD
 * method), or a memory buffer (the fuzzer).  Everything read is untrusted:
 * every field is range-checked before use.
 *
 * Partition numbers follow the Linux kernel's numbering, so that number K is
 * /dev/nbdNpK: MBR primary slots 1-4, logical partitions from 5 in chain
 * order; GPT entry slot + 1.
 */
#ifndef DISM_PARTITION_H
#define DISM_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISM_PART_MAX 128            /* partitions kept from one table */
#define DISM_GPT_MAX_ARRAY (1u << 20) /* largest GPT entry array read (bytes) */

/* Read exactly len bytes at off; 0 or a negative errno. */
typedef int (*dism_disk_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);

struct dism_disk_io {
  dism_disk_pread_fn pread;
  void *ctx;
  uint64_t size;                     /* bytes */
  const char *name;                  /* for messages: the image or device */
};

struct dism_part {
  unsigned number;                   /* kernel numbering (see above) */
  uint64_t offset, size;             /* bytes */
  uint8_t mbr_type;                  /* MBR only */
  uint8_t gpt_type[16];              /* GPT only, as stored */
  char type_name[24];                /* "basic data", "0x07", "EFI system", ... */
  bool candidate;                    /* the type allows NTFS (0x07, basic data) */
  bool extended;                     /* an MBR extended partition (a container) */
  bool ntfs;                         /* its boot sector is NTFS */
  bool windows;                      /* \Windows exists (dism_part_choose) */
};

struct dism_part_table {
  char kind[8];                      /* "mbr", "gpt" or "none" */
  unsigned sector_size;              /* 512 or 4096 */
  uint64_t disk_size;
  bool gpt_backup;                   /* the primary GPT was bad; the backup is used */
  bool whole_disk_ntfs;              /* sector 0 is an NTFS boot sector */
  unsigned count;
  struct dism_part part[DISM_PART_MAX];
};

struct dism_part_choice {
  int number;                        /* 0: the whole disk */
  uint64_t offset, size;
  char reason[160];
};

/* Parse the MBR (with logical partitions) or GPT of the disk and check each
 * candidate's boot sector.  sector_hint: 512 or 4096 if known, 0 to detect.
 * Fails (negative errno + dism_set_error) on a malformed table. */
int dism_part_read_table(const struct dism_disk_io *io, unsigned sector_hint,
                         struct dism_part_table *t);

/* Is this (512+ byte) sector an NTFS boot sector with a sane BPB? */
bool dism_ntfs_boot_sector(const uint8_t *sec, size_t len);

/* "1:EFI system 100M, 2:basic data 300M NTFS, ..." for messages. */
void dism_part_list(const struct dism_part_table *t, char *buf, size_t len);

/* Look for \Windows on each NTFS partition (libntfs-3g, read-only, through
 * io) and choose: the NTFS partition holding \Windows, else the largest NTFS
 * partition, else the whole disk if it is NTFS.  Fails with -ENOENT and a
 * message listing what was found when there is nothing to mount. */
int dism_part_choose(const struct dism_disk_io *io, struct dism_part_table *t,
                     struct dism_part_choice *c);

/* Does the NTFS volume at [offset, offset+size) of the disk hold a \Windows
 * directory (case-insensitive)?  1 yes, 0 no, negative errno if it could not
 * be read as NTFS. */
int dism_ntfs_holds_windows(const struct dism_disk_io *io, uint64_t offset,
                            uint64_t size);

/* The NTFS volume at [offset, offset+size) of the disk, opened read-only
 * through libntfs-3g over io (names looked up without case); io must
 * outlive it.  Close with dism_ntfs_close_range. */
struct _ntfs_volume;
int dism_ntfs_open_range(const struct dism_disk_io *io, uint64_t offset, uint64_t size,
                         struct _ntfs_volume **vol);
void dism_ntfs_close_range(struct _ntfs_volume *vol);

#endif
