/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx.h - private state shared by vhdx.c and vhdx-log.c (MS-VHDX). */
#ifndef DISM_VHDX_H
#define DISM_VHDX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk.h"
#include "guid.h"

#define VX_KiB 1024ull
#define VX_MiB (1024ull * 1024)
#define VX_PAGE 4096u

/* Payload BAT entry states (MS-VHDX 2.5.1.1), sector bitmap states (2.5.1.2). */
#define VX_PB_NOT_PRESENT       0
#define VX_PB_UNDEFINED         1
#define VX_PB_ZERO              2
#define VX_PB_UNMAPPED          3
#define VX_PB_FULLY_PRESENT     6
#define VX_PB_PARTIALLY_PRESENT 7
#define VX_SB_PRESENT           6

#define VX_BAT_STATE(e)  ((unsigned) ((e) & 7))
#define VX_BAT_OFFSET(e) ((e) & ~0xfffffull)   /* FileOffsetMB << 20 */

/* The in-memory result of replaying a log into a read-only view: sorted,
 * non-overlapping file ranges whose bytes come from the log (data != NULL)
 * or are zero (data == NULL). */
struct vx_seg {
  uint64_t off, len;
  const uint8_t *data;
};

struct vhdx {
  int fd;
  const char *path;             /* = disk->path */
  bool readonly;

  /* The file as the reader sees it.  phys_size is the real size; in a
   * read-only replay the log may say the file is longer (LastFileOffset):
   * reads between phys_size and file_size then return zeroes. */
  uint64_t phys_size;
  uint64_t file_size;
  struct vx_seg *ovl;
  size_t novl;
  uint8_t *ovl_pages;

  /* Current header (MS-VHDX 2.2.2). */
  int hdr_slot;                 /* 0: 64 KiB, 1: 128 KiB */
  uint64_t seq;
  struct dism_guid file_write_guid, data_write_guid, log_guid;
  uint16_t log_version, version;
  uint32_t log_length;
  uint64_t log_offset;

  /* Regions. */
  uint64_t bat_offset, meta_offset;
  uint32_t bat_length, meta_length;

  /* Metadata. */
  uint32_t block_size, lss, pss;
  bool leave_alloc, has_parent;
  uint64_t vsize;
  struct dism_guid page83;
  bool have_page83;
  uint64_t chunk_ratio, data_blocks, bitmap_blocks, bat_entries;
  unsigned block_shift;         /* log2(block_size) */

  /* BAT in host order, rounded up to whole 4 KiB pages of the region.
   * Readers load entries atomically; writers change them under lock. */
  uint64_t *bat;
  size_t bat_alloc;             /* entries in bat[] */

  /* Parent locator (UTF-8). */
  struct dism_guid parent_linkage, parent_linkage2;
  bool have_linkage, have_linkage2;
  char *loc_relative, *loc_volume, *loc_abswin32;
  const char *loc_found;        /* the one of the three that found the parent */
  char creator[260];

  /* Log state. */
  unsigned replayed_entries;
  bool replayed_in_memory, replayed_on_disk, log_empty_guid;

  /* Writes. */
  pthread_mutex_t lock;         /* allocation, BAT/bitmap changes, log */
  int write_started;            /* header bumped for this session */
  bool log_active;              /* header carries our LogGuid */
  uint64_t log_seq;
  uint64_t log_pos;
  uint64_t alloc_end;           /* next free 1 MiB-aligned file offset */
  uint64_t reserve_end;         /* end of a merge's reservation (lock) */
  bool broken;                  /* a metadata update failed half-way */
};

/* vhdx.c */
int vx_read_file(struct vhdx *v, void *buf, size_t len, uint64_t off);
int vx_write_header(struct vhdx *v);

/* vhdx-log.c */
/* If the header's LogGuid is set, find the active sequence and replay it:
 * in memory (v->readonly) or to the file, followed by a header update. */
int vx_log_replay(struct vhdx *v);
/* Write n 4 KiB metadata pages through the log: log entry, flush, apply in
 * place.  Called with v->lock held.  offs[i] are file offsets. */
int vx_log_commit(struct vhdx *v, size_t n, const uint64_t *offs,
                  uint8_t *const *pages);
void vx_ovl_free(struct vhdx *v);

#endif
