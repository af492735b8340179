/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* disk.h - the virtual-disk backend interface.
 *
 * A disk is a virtual block device of a fixed size backed by an image file
 * (raw, VHD, VHDX) or by another disk (the copy-on-write overlay).  Each
 * format is one file that fills a struct disk_ops.  Callers above this layer
 * (the NBD server, tools, libdism) only see struct disk.
 *
 * Conventions:
 *  - Every function returns 0 (or a count) on success and a negative errno on
 *    failure.  A failing call also records a message naming the file and the
 *    problem with disk_set_error(); disk_last_error() returns it (thread-local,
 *    like libnbd's nbd_get_error).  Library code never prints or exits.
 *  - All data operations are thread-safe: the server calls them concurrently
 *    from its worker threads on one shared disk.  Backends take their own
 *    locks, never one around data I/O.
 *  - Ranges passed to data operations have been validated by the caller:
 *    offset + count <= disk->size, count > 0.  Backends may assert() that.
 */
#ifndef DISM_DISK_H
#define DISM_DISK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "path-size.h"

struct disk;
struct disk_extents;
struct disk_map;

/* Flags for pwrite/trim/zero. */
#define DISK_F_FUA        0x1u  /* data must be stable before returning */
#define DISK_F_MAY_TRIM   0x2u  /* zero: a hole may be punched (NBD !NO_HOLE) */
#define DISK_F_FAST_ZERO  0x4u  /* zero: fail with -ENOTSUP unless it is cheap */

/* Extent flags: the NBD base:allocation bits. */
#define DISK_EXTENT_HOLE  0x1u  /* not allocated in the image */
#define DISK_EXTENT_ZERO  0x2u  /* reads as zeroes */

/* A range a merge will change (disk_reserve): written with data, or made
 * to read as zeroes. */
struct disk_range {
  uint64_t offset, length;
  bool zero;
};

/* What disk_info() reports (dism-imageinfo, dism /Get-ImageInfo). */
struct disk_info {
  const char *format;        /* "raw", "vhd", "vhdx", "overlay" */
  const char *subtype;       /* "fixed", "dynamic", "differencing", "" */
  uint64_t virtual_size;
  uint32_t logical_sector;
  uint32_t physical_sector;
  uint32_t block_size;       /* allocation unit in bytes; 0 for raw/fixed VHD */
  uint64_t allocated_bytes;  /* virtual bytes whose data lives in this file */
  uint64_t file_size;        /* size of the image file itself */
  char unique_id[40];        /* image GUID as text, "" if none */
  char parent_hint[DISM_PATH_MAX]; /* parent path as recorded in the image, "" if none */
  char creator[64];          /* creator application / string, "" if none */
  char notes[512];           /* format-specific remarks (e.g. VHD CHS size) */
};

struct disk_ops {
  const char *name;
  int (*pread)(struct disk *d, void *buf, size_t count, uint64_t offset);
  /* NULL for read-only formats.  flags: DISK_F_FUA. */
  int (*pwrite)(struct disk *d, const void *buf, size_t count,
                uint64_t offset, unsigned flags);
  /* Make every write that returned durable. */
  int (*flush)(struct disk *d);
  /* Discard a range: reads afterwards return zeroes.  NULL: not supported. */
  int (*trim)(struct disk *d, uint64_t count, uint64_t offset, unsigned flags);
  /* Make a range read as zeroes.  NULL: the generic layer writes zeroes.
   * With DISK_F_FAST_ZERO return -ENOTSUP if this would be a plain write. */
  int (*zero)(struct disk *d, uint64_t count, uint64_t offset, unsigned flags);
  /* Describe allocation from offset onwards, appending with
   * disk_extents_add(); must cover at least [offset, offset+1) and may stop
   * early.  NULL: the whole disk is one allocated, non-zero extent. */
  int (*extents)(struct disk *d, uint64_t count, uint64_t offset,
                 struct disk_extents *out);
  /* Describe a read of [offset, offset+count) as file ranges, appending
   * with disk_map_add() in order until all count bytes are covered, so a
   * server can send the bytes from the page cache (sendfile) instead of
   * copying them.  Only for bytes that sit in a file as they read, and stay
   * there until the next write of them; -ENOTSUP (no message) for anything
   * else (cached in memory, encoded), -E2BIG when the map is full.  NULL:
   * never (the copy path through pread). */
  int (*map)(struct disk *d, uint64_t count, uint64_t offset,
             struct disk_map *out);
  /* Prefetch hint; NULL means no-op. */
  int (*cache)(struct disk *d, uint64_t count, uint64_t offset);
  /* Fill the format-specific fields of info (the generic ones are preset). */
  int (*info)(struct disk *d, struct disk_info *info);
  /* Before a merge writes the ranges r[0..n) (ascending, disjoint):
   * allocate in the image's file system what those writes will add to the
   * file, so that none of them fails half-way for want of space; -ENOSPC
   * (the image unchanged) when it does not fit.  n == 0: give back what is
   * left of the reservation past the end of the file.  NULL: the format
   * writes in place and never grows. */
  int (*reserve)(struct disk *d, const struct disk_range *r, size_t n);
  /* Release everything; the generic layer frees the parent and the struct. */
  void (*close)(struct disk *d);
};

struct disk {
  const struct disk_ops *ops;
  char *path;                 /* the image file (owned) */
  uint64_t size;              /* virtual size in bytes */
  uint32_t logical_sector;    /* 512 or 4096 */
  uint32_t physical_sector;
  bool readonly;
  struct disk *parent;        /* differencing parent, owned; NULL if none */
  void *priv;                 /* backend state, owned by the backend */
};

/* How to open an image. */
struct disk_open_opts {
  bool readonly;              /* open the file O_RDONLY, never write to it */
  bool allow_bad_checksum;    /* forensic reads: accept bad VHD checksums */
  const char *format;         /* NULL: probe; else "raw", "vhd", "vhdx", "wim" */
  uint64_t wim_cache_bytes;   /* "wim": decompressed-chunk cache (wim-source.h);
                                 0: WIM_SOURCE_DEFAULT_CACHE */
  /* internal: parent-chain depth and the files already in the chain, so
   * that loops are refused.  Callers outside the engine leave them zero. */
  unsigned depth;
  const struct disk_chain_link *chain;
};

struct disk_chain_link {
  uint64_t dev, ino;
  const struct disk_chain_link *next;
};

#define DISK_MAX_CHAIN_DEPTH 32

/* Open an image, probing its format unless opts->format says.  On success
 * *out owns the disk (close it with disk_close).  Differencing images open
 * their parents (read-only) themselves. */
int disk_open(const char *path, const struct disk_open_opts *opts,
              struct disk **out);
void disk_close(struct disk *d);

/* Probe: returns "vhdx", "vhd", "wim" or "raw" for an open fd. */
const char *disk_probe_format(int fd, uint64_t file_size);
/* The formats disk_open knows, in detection order: the i-th one's name,
 * NULL past the last. */
const char *disk_format_name(size_t i);
/* Is name one of them (a valid opts->format)? */
bool disk_format_known(const char *name);

/* Generic entry points: these apply fallbacks (zero without ->zero, etc.)
 * and are what the server and tools call. */
int disk_pread(struct disk *d, void *buf, size_t count, uint64_t offset);
/* The same read, but only if it needs no waiting for storage (page-cache
 * hits, holes): returns -EAGAIN (and records no message) when it would
 * block, so a server can run cached reads inline and hand the rest to its
 * workers.  Backends need nothing special: image reads go through
 * disk_full_pread, which honours it. */
int disk_pread_nowait(struct disk *d, void *buf, size_t count, uint64_t offset);
int disk_pwrite(struct disk *d, const void *buf, size_t count,
                uint64_t offset, unsigned flags);
int disk_flush(struct disk *d);
int disk_trim(struct disk *d, uint64_t count, uint64_t offset, unsigned flags);
int disk_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags);
int disk_extents(struct disk *d, uint64_t count, uint64_t offset,
                 struct disk_extents *out);
int disk_cache(struct disk *d, uint64_t count, uint64_t offset);
int disk_info(struct disk *d, struct disk_info *info);
int disk_reserve(struct disk *d, const struct disk_range *r, size_t n);

/* Extent lists.  disk_extents_add() merges with the previous extent when the
 * flags match and it is contiguous; it returns 1 once the list is full or has
 * reached the end of the requested range (callers stop adding), 0 otherwise,
 * -ENOMEM on allocation failure. */
struct disk_extent {
  uint64_t offset;
  uint64_t length;
  uint32_t flags;
};
struct disk_extents {
  struct disk_extent *v;
  size_t n, cap;
  size_t max;                 /* stop after this many extents */
  uint64_t start, end;        /* requested range */
};
void disk_extents_init(struct disk_extents *e, uint64_t start, uint64_t end,
                       size_t max);
int disk_extents_add(struct disk_extents *e, uint64_t offset, uint64_t length,
                     uint32_t flags);
void disk_extents_free(struct disk_extents *e);

/* Read maps (disk_map): pieces in virtual order.  fd < 0 reads as zeroes;
 * otherwise length bytes at offset of fd (borrowed: valid while the disk is
 * open).  The caller provides v[0..max). */
struct disk_piece {
  int fd;
  uint64_t offset;
  uint64_t length;
};
struct disk_map {
  struct disk_piece *v;
  size_t n, max;
};
/* Describe a read (see disk_ops.map) into out, from out->v[0]: 0, -ENOTSUP if
 * some of the range cannot be described (read it with disk_pread), -E2BIG
 * if it needs more than max pieces, or another negative errno with a
 * message.  On failure out->n is 0. */
int disk_map(struct disk *d, uint64_t count, uint64_t offset,
             struct disk_map *out);
/* The same, but only if describing needs no waiting for storage (as
 * disk_pread_nowait): -EAGAIN (no message) when it would block. */
int disk_map_nowait(struct disk *d, uint64_t count, uint64_t offset,
                    struct disk_map *out);
/* Append a piece, merging with the last one when contiguous: 0 or -E2BIG. */
int disk_map_add(struct disk_map *m, int fd, uint64_t offset, uint64_t length);
/* Map count bytes of a differencing parent at offset; what lies past the
 * parent's end reads as zeroes (what the formats' parent reads do). */
int disk_map_parent(struct disk *parent, uint64_t count, uint64_t offset,
                    struct disk_map *out);

/* Errors: a thread-local message for the last failure. */
void disk_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void disk_set_verror(const char *fmt, va_list ap);
const char *disk_last_error(void);

/* Helpers for backends. */
struct disk *disk_new(const struct disk_ops *ops, const char *path);
/* Full pread/pwrite on an fd; a short read past EOF is an error (-EIO with a
 * message naming path and offset) unless zero_fill_eof. */
int disk_full_pread(int fd, const char *path, void *buf, size_t count,
                    uint64_t offset, bool zero_fill_eof);
int disk_full_pwrite(int fd, const char *path, const void *buf, size_t count,
                     uint64_t offset);
/* Open a parent image named by a differencing child, refusing loops and
 * over-deep chains.  The parent is always opened read-only. */
int disk_open_parent(const char *parent_path, const struct disk_open_opts *child_opts,
                     int child_fd, struct disk **out);
bool disk_is_zero(const void *buf, size_t len);
/* Allocate [off, off+len) of fd without changing its size or contents
 * (fallocate KEEP_SIZE): 0, or -ENOSPC (...) with a message.  A file
 * system without fallocate gets 0: nothing can be promised there. */
int disk_file_reserve(int fd, const char *path, uint64_t off, uint64_t len);
/* The same for [off, off+len) past the end of the file, where a merge will
 * append: *reserved_end is widened to cover it; on failure what was
 * allocated is given back. */
int disk_file_reserve_tail(int fd, const char *path, uint64_t off, uint64_t len,
                           uint64_t *reserved_end);
/* Give back what a reservation left allocated between the end of the file
 * and end. */
void disk_file_unreserve(int fd, uint64_t end);
/* fdatasync(fd), with a message naming path on failure. */
int disk_full_fdatasync(int fd, const char *path);

#endif
