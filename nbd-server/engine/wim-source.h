/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-source.h - read file data straight out of a WIM file.
 *
 * A WIM holds each file's data (a "blob") in a resource: its own
 * (uncompressed, or compressed in chunks with the WIM's compression type and
 * chunk size, a chunk table before the chunks) or a share of a solid
 * resource (a 16-byte header naming its own compression and chunk size, one
 * 4-byte compressed size per chunk, then the chunks; LZMS with 64 MiB chunks
 * in .esd files).  wim_source_read() returns any byte range of a resource's
 * uncompressed data, decompressing only the chunks it needs with wimlib's
 * public decompressors.  Decompressed chunks are kept in a bounded cache
 * shared by all threads: different chunks decompress in parallel, one chunk
 * is never decompressed twice at once.
 *
 * Where the resources are comes from wimlib_iterate_lookup_table() (the
 * builder, userspace/lib/wim-build.c, writes them into the map, wim-map.h).
 * Everything read from the file (header, chunk tables, solid headers) is
 * checked before use.  A damaged chunk fails that read with -EIO and a
 * message naming the WIM, the resource and the chunk; other reads go on.
 * Conventions as disk.h: 0 or a negative errno, message in disk_last_error().
 */
#ifndef DISM_WIM_SOURCE_H
#define DISM_WIM_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A resource of the WIM file. */
#define WIM_RES_COMPRESSED 0x1u  /* in chunks (else stored as is) */
#define WIM_RES_SOLID      0x2u  /* a solid resource: its own header gives
                                    compression and chunk size */
#define WIM_RES_DAMAGED    0x4u  /* known damaged: every read fails with -EIO
                                    and a message saying its SHA-1 did not
                                    match when the volume was built */
#define WIM_RES_FLAGS (WIM_RES_COMPRESSED | WIM_RES_SOLID | WIM_RES_DAMAGED)
struct wim_resource {
  uint64_t offset;             /* where it starts in the WIM file */
  uint64_t size;               /* bytes it takes in the WIM file */
  uint64_t uncompressed_size;  /* bytes of data it holds */
  uint32_t flags;              /* WIM_RES_* */
};

/* Facts from the WIM header (208 bytes at offset 0). */
struct wim_header_info {
  uint32_t version;
  uint32_t flags;              /* the header's flags (compression bits) */
  int compression;             /* enum wimlib_compression_type; 0 none */
  uint32_t chunk_size;         /* of non-solid resources */
  uint8_t guid[16];
  uint16_t part_number, total_parts;
  uint32_t image_count;
};

struct wim_source_opts {
  uint64_t cache_bytes;        /* decompressed-chunk cache; 0: the default */
};
#define WIM_SOURCE_DEFAULT_CACHE (256ull << 20)

struct wim_source_stats {
  uint64_t file_bytes_read;    /* read from the WIM file */
  uint64_t chunks_decompressed;
  uint64_t cache_hits;
  uint64_t bytes_returned;
};

struct wim_source;

/* Open a WIM read-only.  Refuses (clear message naming the file) what is
 * not a WIM, a pipable WIM, a part of a split WIM, an unknown compression
 * or chunk size. */
int wim_source_open(const char *path, const struct wim_source_opts *opts,
                    struct wim_source **out);
void wim_source_close(struct wim_source *ws);
const struct wim_header_info *wim_source_header(const struct wim_source *ws);

/* Read count bytes at offset of res's uncompressed data.  Thread-safe.
 * res must lie inside the file and offset + count <= res->uncompressed_size
 * (checked: -EINVAL otherwise). */
int wim_source_read(struct wim_source *ws, const struct wim_resource *res,
                    uint64_t offset, void *buf, size_t count);

void wim_source_get_stats(struct wim_source *ws, struct wim_source_stats *out);

/* Where a blob wimlib lists (wimlib_iterate_lookup_table, or a stream of
 * wimlib_iterate_dir_tree) lives: its resource (a packed blob's is the
 * solid resource: raw_resource_*, WIM_RES_SOLID | WIM_RES_COMPRESSED) and
 * the offset of its bytes in that resource's uncompressed data (0 for a
 * blob with a resource of its own).  The blob is e->uncompressed_size
 * bytes from there. */
struct wimlib_resource_entry;
void wim_resource_of_blob(const struct wimlib_resource_entry *e,
                          struct wim_resource *res, uint64_t *offset);

/* Pure parsers, exposed for the fuzzer and unit tests. */
int wim_header_parse(const uint8_t *buf, size_t len, const char *path,
                     struct wim_header_info *out);

#endif
