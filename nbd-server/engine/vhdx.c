/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx.c - Hyper-V VHDX images (MS-VHDX 1.0): fixed, dynamic and
 * differencing, 512 and 4096-byte logical sectors, log replay (in memory for
 * read-only opens), and writes whose metadata changes go through the log.
 *
 * Concurrency: reads never lock.  BAT entries are loaded atomically and only
 * change (under v->lock) after the data they point at is written, so a
 * concurrent reader sees either the old or the new state.  Writes into
 * present blocks go straight to the file; allocation, BAT and sector-bitmap
 * updates take v->lock. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "path-size.h"
#include "crc32c.h"
#include "formats.h"
#include "utf16.h"
#include "util.h"
#include "vhdx.h"

#define VX_HDR1      (64 * VX_KiB)
#define VX_HDR2      (128 * VX_KiB)
#define VX_RT1       (192 * VX_KiB)
#define VX_RT2       (256 * VX_KiB)
#define VX_RT_SIZE   (64 * VX_KiB)
#define VX_MAX_VSIZE (64ull << 40)            /* 64 TiB, the spec's maximum */
#define VX_MAX_ITEM  VX_MiB                   /* metadata items are <= 1 MiB */
#define VX_IDENT_CREATOR 8                    /* file identifier: Creator, UTF-16 */

/* Header fields (MS-VHDX 2.2.2). */
#define HDR_SIGNATURE        0
#define HDR_CHECKSUM         4
#define HDR_SEQ              8
#define HDR_FILE_WRITE_GUID  16
#define HDR_DATA_WRITE_GUID  32
#define HDR_LOG_GUID         48
#define HDR_LOG_VERSION      64
#define HDR_VERSION          66
#define HDR_LOG_LENGTH       68
#define HDR_LOG_OFFSET       72

/* Region table (2.2.3): a header, then entries. */
#define RT_SIGNATURE         0
#define RT_CHECKSUM          4
#define RT_COUNT             8
#define RT_ENTRIES           16
#define RT_ENTRY_SIZE        32
#define RTE_GUID             0
#define RTE_OFFSET           16
#define RTE_LENGTH           24
#define RTE_FLAGS            28
#define RTE_F_REQUIRED       1u

/* Metadata table (2.6.1): a header, then entries. */
#define MT_SIGNATURE         0
#define MT_COUNT             10
#define MT_ENTRIES           32
#define MT_ENTRY_SIZE        32
#define MTE_ITEM_ID          0
#define MTE_OFFSET           16
#define MTE_LENGTH           20
#define MTE_FLAGS            24
#define MTE_F_REQUIRED       4u

/* File parameters metadata item (2.6.2.1). */
#define FP_BLOCK_SIZE        0
#define FP_FLAGS             4
#define FP_F_LEAVE_ALLOC     1u
#define FP_F_HAS_PARENT      2u

/* Parent locator (2.6.2.6): a header, then key/value entries. */
#define PL_TYPE              0
#define PL_COUNT             18
#define PL_ENTRIES           20
#define PL_ENTRY_SIZE        12
#define PLE_KEY_OFFSET       0
#define PLE_VALUE_OFFSET     4
#define PLE_KEY_LENGTH       8
#define PLE_VALUE_LENGTH     10

static const char GUID_BAT[]      = "2DC27766-F623-4200-9D64-115E9BFD4A08";
static const char GUID_META[]     = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
static const char GUID_FPARAMS[]  = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
static const char GUID_VSIZE[]    = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
static const char GUID_PAGE83[]   = "BECA12AB-B2E6-4523-93EF-C309E000C746";
static const char GUID_LSS[]      = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
static const char GUID_PSS[]      = "CDA348C7-445D-4471-9CC9-E9885251C556";
static const char GUID_PLOC[]     = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";
static const char GUID_PLOC_VHDX[] = "B04AEFB7-D19E-4A81-B789-25B8E9445913";

static const struct disk_ops vx_ops;

static bool
guid_is(const uint8_t *p, const char *s)
{
  struct dism_guid g;
  return dism_guid_parse(s, &g) == 0 && memcmp(p, g.b, 16) == 0;
}

static inline uint64_t
bat_get(const struct vhdx *v, uint64_t i)
{
  return __atomic_load_n(&v->bat[i], __ATOMIC_ACQUIRE);
}

static inline uint64_t
pb_index(const struct vhdx *v, uint64_t blk)
{
  return blk + blk / v->chunk_ratio;
}

static inline uint64_t
sb_index(const struct vhdx *v, uint64_t chunk)
{
  return chunk * (v->chunk_ratio + 1) + v->chunk_ratio;
}

/* ---- file access through the replay overlay ---------------------------- */

int
vx_read_file(struct vhdx *v, void *buf, size_t len, uint64_t off)
{
  /* Sizes grow under v->lock while readers run (new blocks). */
  uint64_t fsize = __atomic_load_n(&v->file_size, __ATOMIC_ACQUIRE);
  uint64_t psize = __atomic_load_n(&v->phys_size, __ATOMIC_ACQUIRE);
  uint8_t *p = buf;
  size_t lo, hi;
  int r;

  if (off > fsize || len > fsize - off) {
    disk_set_error("%s: read of %zu bytes at offset %llu is past the end of the file "
                   "(%llu bytes)", v->path, len, (unsigned long long) off,
                   (unsigned long long) fsize);
    return -EIO;
  }
  r = disk_full_pread(v->fd, v->path, buf, len, off, off + len > psize);
  if (r < 0 || v->novl == 0)
    return r;
  /* First segment ending after off. */
  lo = 0;
  hi = v->novl;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v->ovl[mid].off + v->ovl[mid].len <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i < v->novl && v->ovl[i].off < off + len; i++) {
    const struct vx_seg *s = &v->ovl[i];
    uint64_t a = s->off > off ? s->off : off;
    uint64_t b = s->off + s->len < off + len ? s->off + s->len : off + len;
    if (s->data)
      memcpy(p + (a - off), s->data + (a - s->off), b - a);
    else
      memset(p + (a - off), 0, b - a);
  }
  return 0;
}

static int
sync_fd(struct vhdx *v)
{
  return disk_full_fdatasync(v->fd, v->path);
}

/* Write the current header fields with sequence number + 1 into the slot
 * that is not current, and flush (MS-VHDX 2.2.2.1). */
int
vx_write_header(struct vhdx *v)
{
  uint8_t h[VX_PAGE] = { 0 };
  int slot = 1 - v->hdr_slot, r;

  memcpy(h + HDR_SIGNATURE, "head", 4);
  put_le64(h + HDR_SEQ, v->seq + 1);
  memcpy(h + HDR_FILE_WRITE_GUID, &v->file_write_guid, 16);
  memcpy(h + HDR_DATA_WRITE_GUID, &v->data_write_guid, 16);
  memcpy(h + HDR_LOG_GUID, &v->log_guid, 16);
  put_le16(h + HDR_LOG_VERSION, 0);
  put_le16(h + HDR_VERSION, 1);
  put_le32(h + HDR_LOG_LENGTH, v->log_length);
  put_le64(h + HDR_LOG_OFFSET, v->log_offset);
  put_le32(h + HDR_CHECKSUM, dism_crc32c(0, h, sizeof h));
  r = disk_full_pwrite(v->fd, v->path, h, sizeof h, slot ? VX_HDR2 : VX_HDR1);
  if (r == 0)
    r = sync_fd(v);
  if (r == 0) {
    v->seq++;
    v->hdr_slot = slot;
  }
  return r;
}

/* ---- opening: headers, regions, metadata, BAT -------------------------- */

static bool
header_ok(const uint8_t *h)
{
  uint8_t tmp[VX_PAGE];

  if (memcmp(h + HDR_SIGNATURE, "head", 4) != 0)
    return false;
  memcpy(tmp, h, VX_PAGE);
  put_le32(tmp + HDR_CHECKSUM, 0);
  return dism_crc32c(0, tmp, VX_PAGE) == get_le32(h + HDR_CHECKSUM);
}

static int
parse_headers(struct vhdx *v)
{
  uint8_t h[2][VX_PAGE];
  bool ok[2];
  const uint8_t *c;
  int r, slot;

  r = disk_full_pread(v->fd, v->path, h[0], VX_PAGE, VX_HDR1, false);
  if (r == 0)
    r = disk_full_pread(v->fd, v->path, h[1], VX_PAGE, VX_HDR2, false);
  if (r < 0)
    return r;
  ok[0] = header_ok(h[0]);
  ok[1] = header_ok(h[1]);
  if (!ok[0] && !ok[1]) {
    disk_set_error("%s: both VHDX headers are invalid (bad signature or checksum)",
                   v->path);
    return -EINVAL;
  }
  /* The higher sequence number wins; Disk2vhd writes equal ones. */
  if (ok[0] && ok[1])
    slot = get_le64(h[1] + HDR_SEQ) > get_le64(h[0] + HDR_SEQ) ? 1 : 0;
  else
    slot = ok[0] ? 0 : 1;
  c = h[slot];
  v->hdr_slot = slot;
  v->seq = get_le64(c + HDR_SEQ);
  memcpy(&v->file_write_guid, c + HDR_FILE_WRITE_GUID, 16);
  memcpy(&v->data_write_guid, c + HDR_DATA_WRITE_GUID, 16);
  memcpy(&v->log_guid, c + HDR_LOG_GUID, 16);
  v->log_version = get_le16(c + HDR_LOG_VERSION);
  v->version = get_le16(c + HDR_VERSION);
  v->log_length = get_le32(c + HDR_LOG_LENGTH);
  v->log_offset = get_le64(c + HDR_LOG_OFFSET);
  if (v->version != 1) {
    disk_set_error("%s: unsupported VHDX version %u", v->path, v->version);
    return -ENOTSUP;
  }
  if (v->log_version != 0) {
    disk_set_error("%s: unsupported VHDX log version %u", v->path, v->log_version);
    return -ENOTSUP;
  }
  if (v->log_length == 0 || v->log_length % VX_MiB || v->log_offset < VX_MiB ||
      v->log_offset % VX_MiB || v->log_offset > v->phys_size ||
      v->log_length > v->phys_size - v->log_offset) {
    disk_set_error("%s: invalid log location (offset %llu, length %u, file %llu bytes)",
                   v->path, (unsigned long long) v->log_offset, v->log_length,
                   (unsigned long long) v->phys_size);
    return -EINVAL;
  }
  return 0;
}

static bool
ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
  return a < b + blen && b < a + alen;
}

static int
parse_region_table(struct vhdx *v, const uint8_t *rt)
{
  uint32_t n = get_le32(rt + RT_COUNT);
  bool have_bat = false, have_meta = false;

  if (n > 2047) {
    disk_set_error("%s: region table has %u entries (at most 2047)", v->path, n);
    return -EINVAL;
  }
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *e = rt + RT_ENTRIES + RT_ENTRY_SIZE * (size_t) i;
    uint64_t off = get_le64(e + RTE_OFFSET);
    uint32_t len = get_le32(e + RTE_LENGTH);
    bool required = get_le32(e + RTE_FLAGS) & RTE_F_REQUIRED;
    const uint8_t *id = e + RTE_GUID;
    bool is_bat = guid_is(id, GUID_BAT), is_meta = guid_is(id, GUID_META);

    if (!is_bat && !is_meta) {
      if (required) {
        char g[37];
        dism_guid_to_string((const struct dism_guid *) id, g);
        disk_set_error("%s: unknown required region {%s}", v->path, g);
        return -ENOTSUP;
      }
      continue;
    }
    if ((is_bat && have_bat) || (is_meta && have_meta)) {
      disk_set_error("%s: region table lists the %s region twice", v->path,
                     is_bat ? "BAT" : "metadata");
      return -EINVAL;
    }
    if (off < VX_MiB || off % VX_MiB || len == 0 || len % VX_MiB ||
        off > v->phys_size || len > v->phys_size - off) {
      disk_set_error("%s: %s region (offset %llu, length %u) is misaligned or outside "
                     "the file (%llu bytes)", v->path, is_bat ? "BAT" : "metadata",
                     (unsigned long long) off, len, (unsigned long long) v->phys_size);
      return -EINVAL;
    }
    if (is_bat) {
      v->bat_offset = off;
      v->bat_length = len;
      have_bat = true;
    } else {
      v->meta_offset = off;
      v->meta_length = len;
      have_meta = true;
    }
  }
  if (!have_bat || !have_meta) {
    disk_set_error("%s: region table has no %s region", v->path,
                   have_bat ? "metadata" : "BAT");
    return -EINVAL;
  }
  if (ranges_overlap(v->bat_offset, v->bat_length, v->meta_offset, v->meta_length) ||
      ranges_overlap(v->bat_offset, v->bat_length, v->log_offset, v->log_length) ||
      ranges_overlap(v->meta_offset, v->meta_length, v->log_offset, v->log_length)) {
    disk_set_error("%s: the BAT, metadata and log regions overlap", v->path);
    return -EINVAL;
  }
  return 0;
}

static int
parse_regions(struct vhdx *v)
{
  uint8_t *rt = malloc(VX_RT_SIZE);
  int r = -ENOMEM;
  bool ok = false;

  if (!rt)
    return r;
  for (int k = 0; k < 2 && !ok; k++) {
    r = vx_read_file(v, rt, VX_RT_SIZE, k ? VX_RT2 : VX_RT1);
    if (r < 0)
      goto out;
    if (memcmp(rt + RT_SIGNATURE, "regi", 4) != 0)
      continue;
    uint32_t sum = get_le32(rt + RT_CHECKSUM);
    put_le32(rt + RT_CHECKSUM, 0);
    if (dism_crc32c(0, rt, VX_RT_SIZE) != sum)
      continue;
    ok = true;
  }
  if (!ok) {
    disk_set_error("%s: both region tables are invalid (bad signature or checksum)",
                   v->path);
    r = -EINVAL;
    goto out;
  }
  r = parse_region_table(v, rt);
out:
  free(rt);
  return r;
}

/* UTF-16LE key/value pairs of the VHDX parent locator (MS-VHDX 2.6.2.6). */
static int
parse_locator(struct vhdx *v, const uint8_t *p, uint32_t len)
{
  uint16_t n;

  if (len < PL_ENTRIES) {
    disk_set_error("%s: parent locator is truncated", v->path);
    return -EINVAL;
  }
  if (!guid_is(p + PL_TYPE, GUID_PLOC_VHDX)) {
    char g[37];
    dism_guid_to_string((const struct dism_guid *) (p + PL_TYPE), g);
    disk_set_error("%s: unsupported parent locator type {%s}", v->path, g);
    return -ENOTSUP;
  }
  n = get_le16(p + PL_COUNT);
  if (PL_ENTRIES + PL_ENTRY_SIZE * (uint64_t) n > len) {
    disk_set_error("%s: parent locator has %u entries but only %u bytes", v->path, n, len);
    return -EINVAL;
  }
  for (uint16_t i = 0; i < n; i++) {
    const uint8_t *e = p + PL_ENTRIES + PL_ENTRY_SIZE * (size_t) i;
    uint32_t ko = get_le32(e + PLE_KEY_OFFSET), vo = get_le32(e + PLE_VALUE_OFFSET);
    uint16_t kl = get_le16(e + PLE_KEY_LENGTH), vl = get_le16(e + PLE_VALUE_LENGTH);
    char key[64], val[DISM_PATH_MAX];  /* a locator value is a path */
    char **slot = NULL;

    if (ko > len || kl > len - ko || vo > len || vl > len - vo || kl % 2 || vl % 2 ||
        kl == 0) {
      disk_set_error("%s: parent locator entry %u is out of bounds", v->path, i);
      return -EINVAL;
    }
    if (dism_utf16le_to_utf8(p + ko, kl / 2, key, sizeof key) < 0)
      continue;                 /* an unknown long key: not one of ours */
    if (dism_utf16le_to_utf8(p + vo, vl / 2, val, sizeof val) < 0) {
      disk_set_error("%s: parent locator value for '%s' is not valid UTF-16", v->path, key);
      return -EINVAL;
    }
    if (strcmp(key, "parent_linkage") == 0 || strcmp(key, "parent_linkage2") == 0) {
      bool two = key[14] == '2';
      struct dism_guid *g = two ? &v->parent_linkage2 : &v->parent_linkage;
      if (dism_guid_parse(val, g) < 0) {
        disk_set_error("%s: parent locator %s '%s' is not a GUID", v->path, key, val);
        return -EINVAL;
      }
      *(two ? &v->have_linkage2 : &v->have_linkage) = true;
      continue;
    }
    if (strcmp(key, "relative_path") == 0)
      slot = &v->loc_relative;
    else if (strcmp(key, "volume_path") == 0)
      slot = &v->loc_volume;
    else if (strcmp(key, "absolute_win32_path") == 0)
      slot = &v->loc_abswin32;
    if (slot) {
      free(*slot);
      *slot = strdup(val);
      if (!*slot)
        return -ENOMEM;
    }
  }
  if (!v->have_linkage) {
    disk_set_error("%s: parent locator has no parent_linkage", v->path);
    return -EINVAL;
  }
  return 0;
}

static int
parse_metadata(struct vhdx *v)
{
  uint8_t *t = malloc(64 * VX_KiB), *item = NULL;
  bool seen[7] = { false };
  int r;

  if (!t)
    return -ENOMEM;
  r = vx_read_file(v, t, 64 * VX_KiB, v->meta_offset);
  if (r < 0)
    goto out;
  if (memcmp(t + MT_SIGNATURE, "metadata", 8) != 0) {
    disk_set_error("%s: metadata table has a bad signature", v->path);
    r = -EINVAL;
    goto out;
  }
  uint16_t n = get_le16(t + MT_COUNT);
  if (n > 2047) {
    disk_set_error("%s: metadata table has %u entries (at most 2047)", v->path, n);
    r = -EINVAL;
    goto out;
  }
  item = malloc(VX_MAX_ITEM);
  if (!item) {
    r = -ENOMEM;
    goto out;
  }
  for (uint16_t i = 0; i < n; i++) {
    const uint8_t *e = t + MT_ENTRIES + MT_ENTRY_SIZE * (size_t) i;
    uint32_t ioff = get_le32(e + MTE_OFFSET), ilen = get_le32(e + MTE_LENGTH);
    bool required = get_le32(e + MTE_FLAGS) & MTE_F_REQUIRED;
    const uint8_t *id = e + MTE_ITEM_ID;
    int kind;
    static const uint32_t want_len[6] = { 8, 8, 16, 4, 4, 0 };

    if (guid_is(id, GUID_FPARAMS)) kind = 0;
    else if (guid_is(id, GUID_VSIZE)) kind = 1;
    else if (guid_is(id, GUID_PAGE83)) kind = 2;
    else if (guid_is(id, GUID_LSS)) kind = 3;
    else if (guid_is(id, GUID_PSS)) kind = 4;
    else if (guid_is(id, GUID_PLOC)) kind = 5;
    else {
      if (required) {
        char g[37];
        dism_guid_to_string((const struct dism_guid *) id, g);
        disk_set_error("%s: unknown required metadata item {%s}", v->path, g);
        r = -ENOTSUP;
        goto out;
      }
      continue;
    }
    if (seen[kind]) {
      disk_set_error("%s: metadata item %d appears twice", v->path, kind);
      r = -EINVAL;
      goto out;
    }
    seen[kind] = true;
    if (ilen > VX_MAX_ITEM || ioff < 64 * VX_KiB || ioff > v->meta_length ||
        ilen > v->meta_length - ioff || (want_len[kind] && ilen < want_len[kind])) {
      disk_set_error("%s: metadata item %d (offset %u, length %u) is invalid", v->path,
                     kind, ioff, ilen);
      r = -EINVAL;
      goto out;
    }
    r = vx_read_file(v, item, ilen, v->meta_offset + ioff);
    if (r < 0)
      goto out;
    switch (kind) {
    case 0:
      v->block_size = get_le32(item + FP_BLOCK_SIZE);
      v->leave_alloc = get_le32(item + FP_FLAGS) & FP_F_LEAVE_ALLOC;
      v->has_parent = get_le32(item + FP_FLAGS) & FP_F_HAS_PARENT;
      break;
    case 1: v->vsize = get_le64(item); break;
    case 2: memcpy(&v->page83, item, 16); v->have_page83 = true; break;
    case 3: v->lss = get_le32(item); break;
    case 4: v->pss = get_le32(item); break;
    case 5:
      r = parse_locator(v, item, ilen);
      if (r < 0)
        goto out;
      break;
    }
  }
  r = -EINVAL;
  if (!seen[0] || !seen[1] || !seen[3] || !seen[4]) {
    disk_set_error("%s: required metadata missing (%s)", v->path,
                   !seen[0] ? "file parameters" : !seen[1] ? "virtual disk size" :
                   !seen[3] ? "logical sector size" : "physical sector size");
    goto out;
  }
  if (v->block_size < VX_MiB || v->block_size > 256 * VX_MiB ||
      (v->block_size & (v->block_size - 1))) {
    disk_set_error("%s: block size %u is not a power of two between 1 MiB and 256 MiB",
                   v->path, v->block_size);
    goto out;
  }
  if (v->lss != 512 && v->lss != 4096) {
    disk_set_error("%s: logical sector size %u is not 512 or 4096", v->path, v->lss);
    goto out;
  }
  if (v->pss != 512 && v->pss != 4096) {
    disk_set_error("%s: physical sector size %u is not 512 or 4096", v->path, v->pss);
    goto out;
  }
  if (v->vsize == 0 || v->vsize > VX_MAX_VSIZE || v->vsize % v->lss) {
    disk_set_error("%s: virtual disk size %llu is invalid", v->path,
                   (unsigned long long) v->vsize);
    goto out;
  }
  if (v->has_parent && !seen[5]) {
    disk_set_error("%s: differencing image without a parent locator", v->path);
    goto out;
  }
  r = 0;
out:
  free(t);
  free(item);
  return r;
}

struct ival { uint64_t off, len; };

static int
ival_cmp(const void *a, const void *b)
{
  const struct ival *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

static int
load_bat(struct vhdx *v)
{
  struct ival *iv = NULL;
  size_t niv = 0;
  int r;

  v->block_shift = (unsigned) __builtin_ctz(v->block_size);
  v->chunk_ratio = ((1ull << 23) * v->lss) / v->block_size;
  v->data_blocks = (v->vsize + v->block_size - 1) / v->block_size;
  v->bitmap_blocks = (v->data_blocks + v->chunk_ratio - 1) / v->chunk_ratio;
  if (v->has_parent)
    v->bat_entries = v->bitmap_blocks * (v->chunk_ratio + 1);
  else
    v->bat_entries = v->data_blocks + (v->data_blocks - 1) / v->chunk_ratio;
  if (v->bat_entries * 8 > v->bat_length) {
    disk_set_error("%s: BAT region (%u bytes) is too small for %llu entries", v->path,
                   v->bat_length, (unsigned long long) v->bat_entries);
    return -EINVAL;
  }
  v->bat_alloc = (size_t) ((v->bat_entries + 511) / 512 * 512);
  v->bat = malloc(v->bat_alloc * 8);
  if (!v->bat)
    return -ENOMEM;
  r = vx_read_file(v, v->bat, v->bat_alloc * 8, v->bat_offset);
  if (r < 0)
    return r;
  for (size_t i = 0; i < v->bat_alloc; i++)
    v->bat[i] = get_le64(&v->bat[i]);

  /* Every present block must lie inside the file and overlap nothing.
   * Size the list by what is present, not by what the header claims. */
  size_t npresent = 4;
  for (uint64_t b = 0; b < v->data_blocks; b++) {
    unsigned st = VX_BAT_STATE(v->bat[pb_index(v, b)]);
    npresent += st == VX_PB_FULLY_PRESENT || st == VX_PB_PARTIALLY_PRESENT;
  }
  for (uint64_t c = 0; v->has_parent && c < v->bitmap_blocks; c++)
    npresent += VX_BAT_STATE(v->bat[sb_index(v, c)]) == VX_SB_PRESENT;
  iv = malloc(npresent * sizeof *iv);
  if (!iv)
    return -ENOMEM;
  iv[niv++] = (struct ival) { 0, VX_MiB };
  iv[niv++] = (struct ival) { v->log_offset, v->log_length };
  iv[niv++] = (struct ival) { v->bat_offset, v->bat_length };
  iv[niv++] = (struct ival) { v->meta_offset, v->meta_length };
  r = -EINVAL;
  for (uint64_t b = 0; b < v->data_blocks; b++) {
    uint64_t e = v->bat[pb_index(v, b)], off = VX_BAT_OFFSET(e);
    unsigned st = VX_BAT_STATE(e);
    uint64_t need = v->vsize - b * v->block_size;

    if (need > v->block_size)
      need = v->block_size;
    if (st == 4 || st == 5 || (st == VX_PB_PARTIALLY_PRESENT && !v->has_parent)) {
      disk_set_error("%s: BAT entry for block %llu has invalid state %u", v->path,
                     (unsigned long long) b, st);
      goto out;
    }
    if (st != VX_PB_FULLY_PRESENT && st != VX_PB_PARTIALLY_PRESENT)
      continue;
    if (off > v->file_size || need > v->file_size - off) {
      disk_set_error("%s: BAT entry for block %llu points at offset %llu, past the end "
                     "of the file (%llu bytes)", v->path, (unsigned long long) b,
                     (unsigned long long) off, (unsigned long long) v->file_size);
      goto out;
    }
    iv[niv++] = (struct ival) { off, need };
    if (st == VX_PB_PARTIALLY_PRESENT) {
      uint64_t se = v->bat[sb_index(v, b / v->chunk_ratio)];
      if (VX_BAT_STATE(se) != VX_SB_PRESENT) {
        disk_set_error("%s: block %llu is partially present but its sector bitmap "
                       "is not", v->path, (unsigned long long) b);
        goto out;
      }
    }
  }
  if (v->has_parent) {
    for (uint64_t c = 0; c < v->bitmap_blocks; c++) {
      uint64_t se = v->bat[sb_index(v, c)], off = VX_BAT_OFFSET(se);
      if (VX_BAT_STATE(se) != VX_SB_PRESENT)
        continue;
      if (off > v->file_size || VX_MiB > v->file_size - off) {
        disk_set_error("%s: sector bitmap %llu points at offset %llu, past the end of "
                       "the file", v->path, (unsigned long long) c,
                       (unsigned long long) off);
        goto out;
      }
      iv[niv++] = (struct ival) { off, VX_MiB };
    }
  }
  qsort(iv, niv, sizeof *iv, ival_cmp);
  for (size_t i = 1; i < niv; i++)
    if (iv[i].off < iv[i - 1].off + iv[i - 1].len) {
      disk_set_error("%s: file ranges at offsets %llu and %llu overlap (corrupt BAT)",
                     v->path, (unsigned long long) iv[i - 1].off,
                     (unsigned long long) iv[i].off);
      goto out;
    }
  /* New blocks go after everything, 1 MiB aligned. */
  v->alloc_end = v->phys_size;
  for (size_t i = 0; i < niv; i++)
    if (iv[i].off + iv[i].len > v->alloc_end)
      v->alloc_end = iv[i].off + iv[i].len;
  v->alloc_end = (v->alloc_end + VX_MiB - 1) / VX_MiB * VX_MiB;
  r = 0;
out:
  free(iv);
  return r;
}

/* Open one parent candidate and check that it is the image the child was
 * made from.  Returns 0 with *out set, or a negative errno with the reason
 * in why; a rejected parent is closed here. */
static int
try_parent(struct vhdx *v, const char *cand, const struct disk_open_opts *opts,
           struct disk **out, char *why, size_t whysize)
{
  struct disk *p = NULL;
  struct vhdx *pv;
  struct stat st;
  int r;

  if (stat(cand, &st) < 0) {
    r = -errno;
    snprintf(why, whysize, "%s", errno == ENOENT ? "not found" : strerror(errno));
    return r;
  }
  r = disk_open_parent(cand, opts, v->fd, &p);
  if (r < 0) {
    /* The parent's message starts with its own path, already shown. */
    const char *msg = disk_last_error();
    size_t n = strlen(cand);
    if (strncmp(msg, cand, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
      msg += n + 2;
    snprintf(why, whysize, "%s", msg);
    return r;
  }
  r = -EINVAL;
  if (p->ops != &vx_ops) {
    snprintf(why, whysize, "a %s image, not VHDX", p->ops->name);
    goto reject;
  }
  pv = p->priv;
  if (!dism_guid_equal(&pv->data_write_guid, &v->parent_linkage) &&
      !(v->have_linkage2 && !dism_guid_is_zero(&v->parent_linkage2) &&
        dism_guid_equal(&pv->data_write_guid, &v->parent_linkage2))) {
    char a[37], b[37], alt[48] = "";
    dism_guid_to_string(&pv->data_write_guid, b);
    dism_guid_to_string(&v->parent_linkage, a);
    if (v->have_linkage2 && !dism_guid_is_zero(&v->parent_linkage2)) {
      char a2[37];
      dism_guid_to_string(&v->parent_linkage2, a2);
      snprintf(alt, sizeof alt, " or {%s}", a2);
    }
    snprintf(why, whysize, "DataWriteGuid {%s} does not match the expected {%s}%s", b, a,
             alt);
    goto reject;
  }
  if (p->logical_sector != v->lss) {
    snprintf(why, whysize, "%u-byte logical sectors, the child has %u", p->logical_sector,
             v->lss);
    goto reject;
  }
  *out = p;
  return 0;

reject:
  disk_close(p);
  return r;
}

/* Hyper-V's search: each locator path in turn, skipping a file that exists
 * but is not the parent (another image of the same name, a stale copy).
 * Only when none fits is it an error, listing why each was refused. */
static int
open_parent(struct disk *d, struct vhdx *v, const struct disk_open_opts *opts)
{
  const char *rec[3] = { v->loc_relative, v->loc_abswin32, v->loc_volume };
  char cand[3][DISM_PATH_MAX], tried[2560] = "", why[320];
  size_t tl = 0;
  int r = -ENOENT;

  for (int k = 0; k < 3; k++) {
    bool dup = false;
    int e;

    cand[k][0] = 0;             /* never equal to a later candidate */
    if (!rec[k] || !rec[k][0])
      continue;
    e = dism_resolve_parent_path(v->path, rec[k], k > 0, cand[k], sizeof cand[k]);
    if (e < 0) {
      cand[k][0] = 0;
      snprintf(why, sizeof why, "%s", strerror(-e));
    } else {
      for (int j = 0; j < k; j++)
        dup = dup || strcmp(cand[j], cand[k]) == 0;
      if (dup)
        continue;               /* already tried and listed */
      e = try_parent(v, cand[k], opts, &d->parent, why, sizeof why);
      if (e == 0) {
        v->loc_found = rec[k];
        return 0;
      }
    }
    /* Report the first failure other than "no such file". */
    if (r == -ENOENT)
      r = e;
    /* "recorded -> resolved: why"; paths cut short so that every
     * candidate fits in the message. */
    bool show = cand[k][0] && strcmp(rec[k], cand[k]) != 0;
    if (tl < sizeof tried)
      tl += (size_t) snprintf(tried + tl, sizeof tried - tl, "%s%.200s%s%.200s: %s",
                              tl ? "; " : "", rec[k], show ? " -> " : "",
                              show ? cand[k] : "", why);
  }
  disk_set_error("%s: no parent found: %s", v->path,
                 tl ? tried : "the parent locator has no paths");
  return r;
}

/* ---- reads -------------------------------------------------------------- */

static int
parent_read(struct disk *d, uint8_t *buf, uint64_t n, uint64_t off)
{
  struct disk *p = d->parent;
  uint64_t m = 0;

  if (off < p->size) {
    m = p->size - off < n ? p->size - off : n;
    int r = disk_pread(p, buf, (size_t) m, off);
    if (r < 0)
      return r;
  }
  if (m < n)
    memset(buf + m, 0, n - m);
  return 0;
}

/* End of the run of bits equal to val starting at bit p (relative to a
 * buffer whose bit 0 is a multiple of 64), scanning 64 bits at a time. */
static uint64_t
bit_run_end(const uint8_t *bm, uint64_t p, uint64_t end, bool val)
{
  while (p < end) {
    uint64_t w = get_le64(bm + (p / 64) * 8);
    unsigned sh = (unsigned) (p % 64);
    if (!val)
      w = ~w;
    w >>= sh;
    uint64_t miss = ~w;         /* bits that differ; padded with ones above */
    if (miss == 0) {
      p += 64;
      continue;
    }
    unsigned k = (unsigned) __builtin_ctzll(miss);
    if (k >= 64 - sh) {
      p += 64 - sh;
      continue;
    }
    p += k;
    break;
  }
  return p < end ? p : end;
}

/* Sector bitmap bits [b0, b1) of the chunk's bitmap block, into a buffer
 * starting at bit (b0 & ~63). */
static int
read_bitmap(struct vhdx *v, uint64_t sb_off, uint64_t b0, uint64_t b1, uint8_t **out)
{
  uint64_t w0 = b0 / 64, w1 = (b1 + 63) / 64;
  uint8_t *bm = malloc((size_t) (w1 - w0) * 8);
  int r;

  if (!bm)
    return -ENOMEM;
  r = vx_read_file(v, bm, (size_t) (w1 - w0) * 8, sb_off + w0 * 8);
  if (r < 0) {
    free(bm);
    return r;
  }
  *out = bm;
  return 0;
}

enum { K_DATA, K_PARTIAL, K_PARENT, K_ZERO };

/* A read walks the range in runs of one kind: K_DATA at file position
 * fpos, K_PARENT or K_ZERO.  pread copies them, map describes them; both
 * see the same runs. */
typedef int (*vx_run_fn)(struct disk *d, void *opaque, uint64_t voff,
                         uint64_t len, int kind, uint64_t fpos);

/* A PARTIALLY_PRESENT block: runs of set bits from this file, clear bits
 * from the parent. */
static int
walk_partial(struct disk *d, struct vhdx *v, uint64_t n, uint64_t off,
             uint64_t blk, uint64_t e, vx_run_fn fn, void *opaque)
{
  uint64_t inoff = off - (blk << v->block_shift);
  uint64_t spb = v->block_size / v->lss;
  uint64_t base = (blk % v->chunk_ratio) * spb;
  uint64_t b0 = base + inoff / v->lss, b1 = base + (inoff + n + v->lss - 1) / v->lss;
  uint64_t sb_off = VX_BAT_OFFSET(bat_get(v, sb_index(v, blk / v->chunk_ratio)));
  uint64_t rel = b0 & ~63ull;
  uint8_t *bm = NULL;
  int r;

  r = read_bitmap(v, sb_off, b0, b1, &bm);
  if (r < 0)
    return r;
  for (uint64_t p = b0; p < b1;) {
    bool val = (bm[(p - rel) / 8] >> ((p - rel) % 8)) & 1;
    uint64_t q = bit_run_end(bm, p - rel, b1 - rel, val) + rel;
    uint64_t a = (p - base) * v->lss, b = (q - base) * v->lss;
    if (a < inoff)
      a = inoff;
    if (b > inoff + n)
      b = inoff + n;
    r = fn(d, opaque, (blk << v->block_shift) + a, b - a,
           val ? K_DATA : K_PARENT, VX_BAT_OFFSET(e) + a);
    if (r < 0)
      break;
    p = q;
  }
  free(bm);
  return r;
}

static int
block_kind(const struct vhdx *v, uint64_t e)
{
  switch (VX_BAT_STATE(e)) {
  case VX_PB_FULLY_PRESENT: return K_DATA;
  case VX_PB_PARTIALLY_PRESENT: return K_PARTIAL;
  /* NOT_PRESENT means "look at the parent"; UNMAPPED contents are
   * undefined, and the parent's data is one of the permitted answers. */
  case VX_PB_NOT_PRESENT:
  case VX_PB_UNMAPPED: return v->has_parent ? K_PARENT : K_ZERO;
  default: return K_ZERO;
  }
}

static int
vx_walk(struct disk *d, uint64_t count, uint64_t offset, vx_run_fn fn,
        void *opaque)
{
  struct vhdx *v = d->priv;
  const uint64_t bs = v->block_size;
  int r = 0;

  while (count > 0) {
    uint64_t blk = offset >> v->block_shift;
    uint64_t inoff = offset & (bs - 1);
    uint64_t e = bat_get(v, pb_index(v, blk));
    int kind = block_kind(v, e);
    uint64_t run = bs - inoff < count ? bs - inoff : count;

    if (kind == K_PARTIAL) {
      r = walk_partial(d, v, run, offset, blk, e, fn, opaque);
    } else {
      /* Extend over following blocks of the same kind (and, for data,
       * physically contiguous) so a long read is one pread/memset. */
      for (uint64_t k = 1; run < count; k++) {
        uint64_t e2 = bat_get(v, pb_index(v, blk + k));
        if (block_kind(v, e2) != kind ||
            (kind == K_DATA && VX_BAT_OFFSET(e2) != VX_BAT_OFFSET(e) + k * bs))
          break;
        run += bs < count - run ? bs : count - run;
      }
      r = fn(d, opaque, offset, run, kind, VX_BAT_OFFSET(e) + inoff);
    }
    if (r < 0)
      return r;
    offset += run;
    count -= run;
  }
  return 0;
}

struct vx_read_ctx {
  uint8_t *buf;
  uint64_t start;
};

static int
read_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len, int kind,
         uint64_t fpos)
{
  struct vx_read_ctx *x = opaque;
  uint8_t *p = x->buf + (voff - x->start);

  if (kind == K_DATA)
    return vx_read_file(d->priv, p, (size_t) len, fpos);
  if (kind == K_PARENT)
    return parent_read(d, p, len, voff);
  memset(p, 0, (size_t) len);
  return 0;
}

static int
vx_pread(struct disk *d, void *vbuf, size_t count, uint64_t offset)
{
  struct vx_read_ctx x = { vbuf, offset };
  return vx_walk(d, count, offset, read_run, &x);
}

static int
map_run(struct disk *d, void *opaque, uint64_t voff, uint64_t len, int kind,
        uint64_t fpos)
{
  struct vhdx *v = d->priv;
  uint64_t psize = __atomic_load_n(&v->phys_size, __ATOMIC_ACQUIRE);

  if (kind == K_PARENT)
    return disk_map_parent(d->parent, len, voff, opaque);
  if (kind != K_DATA)
    return disk_map_add(opaque, -1, 0, len);
  /* Bytes past the real end (read as zeroes) or in the replayed log's
   * pages (held in memory): the copy path knows them. */
  if (fpos > psize || len > psize - fpos)
    return -ENOTSUP;
  return disk_map_add(opaque, v->fd, fpos, len);
}

/* Data is written before the BAT or bitmap says present, so every present
 * run is in the file (or its page cache) as it reads. */
static int
vx_map(struct disk *d, uint64_t count, uint64_t offset, struct disk_map *out)
{
  struct vhdx *v = d->priv;

  if (__atomic_load_n(&v->novl, __ATOMIC_ACQUIRE) != 0)
    return -ENOTSUP;
  return vx_walk(d, count, offset, map_run, out);
}

/* ---- writes ------------------------------------------------------------- */

/* The first write of a session gets new FileWriteGuid/DataWriteGuid in a
 * new header (MS-VHDX 2.2.2.1) before anything else changes. */
static int
start_write(struct vhdx *v)
{
  int r = 0;

  if (__atomic_load_n(&v->write_started, __ATOMIC_ACQUIRE))
    return v->broken ? -EIO : 0;
  pthread_mutex_lock(&v->lock);
  if (!v->write_started) {
    dism_guid_generate(&v->file_write_guid);
    dism_guid_generate(&v->data_write_guid);
    r = vx_write_header(v);
    if (r == 0)
      __atomic_store_n(&v->write_started, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&v->lock);
  if (r == 0 && v->broken) {
    disk_set_error("%s: an earlier metadata update failed; the image is read-only now",
                   v->path);
    r = -EIO;
  }
  return r;
}

/* Reserve size bytes at the end of the file (extended, so they read as
 * zeroes).  Called with v->lock held. */
static int
alloc_space(struct vhdx *v, uint64_t size, uint64_t *off)
{
  uint64_t end = v->alloc_end + size;

  if (end > v->phys_size) {
    if (ftruncate(v->fd, (off_t) end) < 0) {
      int e = errno;
      disk_set_error("%s: extending the file to %llu bytes: %s", v->path,
                     (unsigned long long) end, strerror(e));
      return -e;
    }
    __atomic_store_n(&v->phys_size, end, __ATOMIC_RELEASE);
    __atomic_store_n(&v->file_size, end, __ATOMIC_RELEASE);
  }
  *off = v->alloc_end;
  v->alloc_end = end;
  return 0;
}

/* Metadata pages changed by one operation (BAT pages and bitmap pages). */
struct pageset {
  size_t n, cap;
  uint64_t *offs;
  uint8_t **pages;
};

static void
pageset_free(struct pageset *ps)
{
  for (size_t i = 0; i < ps->n; i++)
    free(ps->pages[i]);
  free(ps->pages);
  free(ps->offs);
  memset(ps, 0, sizeof *ps);
}

/* The page at file offset off, loaded from the file on first use. */
static int
pageset_get(struct vhdx *v, struct pageset *ps, uint64_t off, uint8_t **out)
{
  int r;

  for (size_t i = ps->n; i-- > 0;)
    if (ps->offs[i] == off) {
      *out = ps->pages[i];
      return 0;
    }
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? ps->cap * 2 : 8;
    uint64_t *o = realloc(ps->offs, cap * sizeof *o);
    if (!o)
      return -ENOMEM;
    ps->offs = o;
    uint8_t **p = realloc(ps->pages, cap * sizeof *p);
    if (!p)
      return -ENOMEM;
    ps->pages = p;
    ps->cap = cap;
  }
  uint8_t *pg = malloc(VX_PAGE);
  if (!pg)
    return -ENOMEM;
  r = vx_read_file(v, pg, VX_PAGE, off);
  if (r < 0) {
    free(pg);
    return r;
  }
  ps->offs[ps->n] = off;
  ps->pages[ps->n++] = pg;
  *out = pg;
  return 0;
}

/* Stage BAT entry i = val (written through the log by commit_pages). */
static int
stage_bat(struct vhdx *v, struct pageset *ps, uint64_t i, uint64_t val)
{
  uint64_t byte = i * 8;
  uint8_t *pg;
  int r = pageset_get(v, ps, v->bat_offset + byte / VX_PAGE * VX_PAGE, &pg);
  if (r == 0)
    put_le64(pg + byte % VX_PAGE, val);
  return r;
}

/* Stage setting sector-bitmap bits [b0, b1) of the bitmap block at sb_off. */
static int
stage_bits(struct vhdx *v, struct pageset *ps, uint64_t sb_off, uint64_t b0, uint64_t b1)
{
  for (uint64_t b = b0; b < b1;) {
    uint64_t pgno = b / (VX_PAGE * 8);
    uint64_t pend = (pgno + 1) * VX_PAGE * 8 < b1 ? (pgno + 1) * VX_PAGE * 8 : b1;
    uint8_t *pg;
    int r = pageset_get(v, ps, sb_off + pgno * VX_PAGE, &pg);
    if (r < 0)
      return r;
    for (uint64_t k = b; k < pend; k++) {
      uint64_t in = k - pgno * VX_PAGE * 8;
      if (in % 8 == 0 && k + 8 <= pend) {
        pg[in / 8] = 0xff;
        k += 7;
      } else {
        pg[in / 8] |= (uint8_t) (1u << (in % 8));
      }
    }
    b = pend;
  }
  return 0;
}

static int
commit_pages(struct vhdx *v, struct pageset *ps)
{
  int r;

  if (ps->n == 0)
    return 0;
  r = vx_log_commit(v, ps->n, ps->offs, ps->pages);
  if (r < 0)
    v->broken = true;           /* the in-memory BAT may no longer match */
  return r;
}

/* Copy buf into a sector-aligned buffer covering [*a, *b) of the virtual
 * disk, filling the edges from the current contents. */
static int
align_write(struct disk *d, struct vhdx *v, const uint8_t *buf, uint64_t n,
            uint64_t off, uint8_t **out, uint64_t *aoff, uint64_t *alen)
{
  uint64_t a = off / v->lss * v->lss;
  uint64_t b = (off + n + v->lss - 1) / v->lss * v->lss;
  uint8_t *t;
  int r = 0;

  *out = NULL;
  *aoff = a;
  *alen = b - a;
  if (a == off && b == off + n)
    return 0;
  t = malloc((size_t) (b - a));
  if (!t)
    return -ENOMEM;
  if (a < off)
    r = vx_pread(d, t, v->lss, a);
  if (r == 0 && b > off + n && !(a < off && b - v->lss == a))
    r = vx_pread(d, t + (b - a - v->lss), v->lss, b - v->lss);
  if (r < 0) {
    free(t);
    return r;
  }
  memcpy(t + (off - a), buf, (size_t) n);
  *out = t;
  return 0;
}

/* True if all sector bits [b0, b1) are set. */
static int
bits_all_set(struct vhdx *v, uint64_t sb_off, uint64_t b0, uint64_t b1, bool *all)
{
  uint8_t *bm;
  uint64_t rel = b0 & ~63ull;
  int r = read_bitmap(v, sb_off, b0, b1, &bm);
  if (r < 0)
    return r;
  *all = bit_run_end(bm, b0 - rel, b1 - rel, true) + rel == b1;
  free(bm);
  return 0;
}

/* Write within one block that is not FULLY_PRESENT. */
static int
write_block_slow(struct disk *d, struct vhdx *v, const uint8_t *buf, uint64_t n,
                 uint64_t off, uint64_t blk)
{
  const uint64_t bs = v->block_size;
  uint64_t pi = pb_index(v, blk), inoff = off - (blk << v->block_shift);
  uint64_t spb = bs / v->lss, base = (blk % v->chunk_ratio) * spb;
  uint8_t *abuf = NULL;
  const uint8_t *obuf = buf;
  const uint64_t on = n, ooff = off;
  uint64_t aoff, alen, e, newoff;
  struct pageset ps = { 0 };
  bool locked = false, all;
  int kind, r;

  e = bat_get(v, pi);
  if (VX_BAT_STATE(e) == VX_PB_FULLY_PRESENT)
    return disk_full_pwrite(v->fd, v->path, buf, (size_t) n, VX_BAT_OFFSET(e) + inoff);
  kind = block_kind(v, e);
  /* Differencing: sectors not written must keep coming from the parent, so
   * work in whole sectors (read-modify-write of partial edge sectors). */
  if (kind == K_PARTIAL || (kind == K_PARENT && n < bs)) {
    r = align_write(d, v, buf, n, off, &abuf, &aoff, &alen);
    if (r < 0)
      goto out;
    if (abuf)
      buf = abuf;
    inoff = aoff - (blk << v->block_shift);
    n = alen;
  }
  if (kind == K_PARTIAL) {
    uint64_t sb_off = VX_BAT_OFFSET(bat_get(v, sb_index(v, blk / v->chunk_ratio)));
    uint64_t b0 = base + inoff / v->lss, b1 = base + (inoff + n) / v->lss;
    /* Data first (invisible while its bits are clear), then the bits. */
    r = disk_full_pwrite(v->fd, v->path, buf, (size_t) n, VX_BAT_OFFSET(e) + inoff);
    if (r < 0)
      goto out;
    r = bits_all_set(v, sb_off, b0, b1, &all);
    if (r < 0 || all)
      goto out;
    pthread_mutex_lock(&v->lock);
    locked = true;
    r = stage_bits(v, &ps, sb_off, b0, b1);
    if (r == 0)
      r = commit_pages(v, &ps);
    goto out;
  }

  pthread_mutex_lock(&v->lock);
  locked = true;
  if (bat_get(v, pi) != e) {
    /* Someone changed it meanwhile: start again on the new state. */
    pthread_mutex_unlock(&v->lock);
    locked = false;
    r = write_block_slow(d, v, obuf, on, ooff, blk);
    goto out;
  }
  r = alloc_space(v, bs, &newoff);
  if (r < 0)
    goto out;
  r = disk_full_pwrite(v->fd, v->path, buf, (size_t) n, newoff + inoff);
  if (r < 0)
    goto out;
  if (kind == K_PARENT) {
    /* New block in a differencing image: present only where written. */
    uint64_t c = blk / v->chunk_ratio, si = sb_index(v, c), se = bat_get(v, si);
    if (n < bs && VX_BAT_STATE(se) != VX_SB_PRESENT) {
      uint64_t sboff;
      r = alloc_space(v, VX_MiB, &sboff);
      if (r < 0)
        goto out;
      se = sboff | VX_SB_PRESENT;
      r = stage_bat(v, &ps, si, se);
      if (r < 0)
        goto out;
    }
    if (n == bs) {
      r = stage_bat(v, &ps, pi, newoff | VX_PB_FULLY_PRESENT);
    } else {
      r = stage_bits(v, &ps, VX_BAT_OFFSET(se), base + inoff / v->lss,
                     base + (inoff + n) / v->lss);
      if (r == 0)
        r = stage_bat(v, &ps, pi, newoff | VX_PB_PARTIALLY_PRESENT);
    }
    if (r == 0)
      r = commit_pages(v, &ps);
    if (r == 0) {
      __atomic_store_n(&v->bat[si], se, __ATOMIC_RELEASE);
      __atomic_store_n(&v->bat[pi], newoff | (n == bs ? VX_PB_FULLY_PRESENT :
                                              VX_PB_PARTIALLY_PRESENT), __ATOMIC_RELEASE);
    }
  } else {
    /* The rest of the new block reads as zeroes: it is past the old EOF. */
    r = stage_bat(v, &ps, pi, newoff | VX_PB_FULLY_PRESENT);
    if (r == 0)
      r = commit_pages(v, &ps);
    if (r == 0)
      __atomic_store_n(&v->bat[pi], newoff | VX_PB_FULLY_PRESENT, __ATOMIC_RELEASE);
  }
out:
  if (locked)
    pthread_mutex_unlock(&v->lock);
  pageset_free(&ps);
  free(abuf);
  return r;
}

static int
vx_pwrite(struct disk *d, const void *vbuf, size_t count, uint64_t offset,
          unsigned flags)
{
  struct vhdx *v = d->priv;
  const uint8_t *buf = vbuf;
  const uint64_t bs = v->block_size;
  int r = start_write(v);

  while (r == 0 && count > 0) {
    uint64_t blk = offset >> v->block_shift;
    uint64_t inoff = offset & (bs - 1);
    uint64_t e = bat_get(v, pb_index(v, blk));
    uint64_t run = bs - inoff < count ? bs - inoff : count;

    if (VX_BAT_STATE(e) == VX_PB_FULLY_PRESENT) {
      /* In place, no lock; merge physically contiguous present blocks. */
      for (uint64_t k = 1; run < count; k++) {
        uint64_t e2 = bat_get(v, pb_index(v, blk + k));
        if (VX_BAT_STATE(e2) != VX_PB_FULLY_PRESENT ||
            VX_BAT_OFFSET(e2) != VX_BAT_OFFSET(e) + k * bs)
          break;
        run += bs < count - run ? bs : count - run;
      }
      r = disk_full_pwrite(v->fd, v->path, buf, (size_t) run, VX_BAT_OFFSET(e) + inoff);
    } else {
      r = write_block_slow(d, v, buf, run, offset, blk);
    }
    buf += run;
    offset += run;
    count -= (size_t) run;
  }
  if (r == 0 && (flags & DISK_F_FUA))
    r = sync_fd(v);
  return r;
}

static int
vx_flush(struct disk *d)
{
  return sync_fd(d->priv);
}

/* Does block blk read as zeroes already? */
static bool
reads_zero(const struct vhdx *v, uint64_t e)
{
  return block_kind(v, e) == K_ZERO;
}

/* zero (is_trim false) or trim a range.  Whole blocks change state through
 * the log; partial blocks are written with zeroes (zero) or left (trim). */
static int
discard(struct disk *d, uint64_t count, uint64_t off, unsigned flags, bool is_trim)
{
  struct vhdx *v = d->priv;
  const uint64_t bs = v->block_size;
  uint64_t end = off + count;
  uint64_t wb0 = (off + bs - 1) / bs;
  uint64_t wb1 = end == v->vsize ? v->data_blocks : end / bs;
  uint64_t part[2][2];
  int npart = 0, r;
  unsigned target = is_trim && !v->has_parent ? VX_PB_UNMAPPED : VX_PB_ZERO;
  struct pageset ps = { 0 };
  uint64_t *freed = NULL;
  size_t nfreed = 0;
  bool fixed = v->leave_alloc && !v->has_parent;

  if (wb0 >= wb1) {
    part[npart][0] = off; part[npart++][1] = end;
    wb1 = wb0;
  } else {
    if (off < wb0 * bs) { part[npart][0] = off; part[npart++][1] = wb0 * bs; }
    if (wb1 * bs < end) { part[npart][0] = wb1 * bs; part[npart++][1] = end; }
  }
  /* Partial blocks: trim ignores them (a hint); zero writes zeroes unless
   * the block reads as zeroes already. */
  bool need_write[2] = { false, false };
  for (int i = 0; i < npart && !is_trim; i++) {
    uint64_t e = bat_get(v, pb_index(v, part[i][0] / bs));
    need_write[i] = !reads_zero(v, e);
    if (need_write[i] && (flags & DISK_F_FAST_ZERO))
      return -ENOTSUP;
  }
  r = start_write(v);
  if (r < 0)
    return r;
  for (int i = 0; i < npart && r == 0; i++) {
    static const uint8_t zeroes[64 * 1024];
    if (!need_write[i])
      continue;
    for (uint64_t o = part[i][0]; o < part[i][1] && r == 0;) {
      size_t n = part[i][1] - o < sizeof zeroes ? (size_t) (part[i][1] - o) : sizeof zeroes;
      r = vx_pwrite(d, zeroes, n, o, 0);
      o += n;
    }
  }
  if (r < 0 || wb0 >= wb1)
    goto out;

  if (fixed) {
    /* A fixed image keeps every block allocated in the BAT (and the file
     * size): zero the payload in place.  Trim may punch it (a sparse file
     * is still fully provisioned as far as VHDX is concerned). */
    for (uint64_t b = wb0; b < wb1 && r == 0; b++) {
      uint64_t e = bat_get(v, pb_index(v, b)), len = v->vsize - b * bs;
      if (VX_BAT_STATE(e) != VX_PB_FULLY_PRESENT)
        continue;
      if (len > bs)
        len = bs;
      if (fallocate(v->fd, (is_trim ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) |
                    FALLOC_FL_KEEP_SIZE, (off_t) VX_BAT_OFFSET(e), (off_t) len) == 0)
        continue;
      if (is_trim)
        continue;               /* a hint: keep the data */
      if (flags & DISK_F_FAST_ZERO) {
        r = -ENOTSUP;
        break;
      }
      static const uint8_t zeroes[64 * 1024];
      for (uint64_t o = 0; o < len && r == 0; o += sizeof zeroes)
        r = disk_full_pwrite(v->fd, v->path, zeroes,
                             len - o < sizeof zeroes ? (size_t) (len - o) : sizeof zeroes,
                             VX_BAT_OFFSET(e) + o);
    }
    goto out;
  }

  freed = malloc((size_t) (wb1 - wb0) * sizeof *freed);
  if (!freed) {
    r = -ENOMEM;
    goto out;
  }
  pthread_mutex_lock(&v->lock);
  for (uint64_t b = wb0; b < wb1 && r == 0; b++) {
    uint64_t e = bat_get(v, pb_index(v, b));
    unsigned st = VX_BAT_STATE(e);
    /* Only blocks that hold data (or show the parent's) need a change. */
    if (st != VX_PB_FULLY_PRESENT && st != VX_PB_PARTIALLY_PRESENT &&
        !(v->has_parent && (st == VX_PB_NOT_PRESENT || st == VX_PB_UNMAPPED)))
      continue;
    if (st == VX_PB_FULLY_PRESENT || st == VX_PB_PARTIALLY_PRESENT)
      freed[nfreed++] = VX_BAT_OFFSET(e);
    r = stage_bat(v, &ps, pb_index(v, b), target);
  }
  if (r == 0)
    r = commit_pages(v, &ps);
  if (r == 0)
    for (uint64_t b = wb0; b < wb1; b++) {
      uint64_t i = pb_index(v, b);
      uint64_t byte = i * 8;
      for (size_t k = 0; k < ps.n; k++)
        if (ps.offs[k] == v->bat_offset + byte / VX_PAGE * VX_PAGE) {
          __atomic_store_n(&v->bat[i], get_le64(ps.pages[k] + byte % VX_PAGE),
                           __ATOMIC_RELEASE);
          break;
        }
    }
  pthread_mutex_unlock(&v->lock);
  /* The freed space is never reused (we allocate at EOF), so give it back
   * to the file system; the log entry that freed it is already stable. */
  for (size_t k = 0; r == 0 && k < nfreed; k++)
    (void) fallocate(v->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     (off_t) freed[k], (off_t) bs);
out:
  pageset_free(&ps);
  free(freed);
  if (r == 0 && (flags & DISK_F_FUA))
    r = sync_fd(v);
  return r;
}

static int
vx_zero(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  return discard(d, count, offset, flags, false);
}

static int
vx_trim(struct disk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  return discard(d, count, offset, flags, true);
}

static int
vx_extents(struct disk *d, uint64_t count, uint64_t offset, struct disk_extents *out)
{
  struct vhdx *v = d->priv;
  uint64_t end = offset + count;

  while (offset < end) {
    uint64_t blk = offset >> v->block_shift;
    uint64_t bend = (blk + 1) << v->block_shift;
    uint64_t e = bat_get(v, pb_index(v, blk));
    uint32_t fl = block_kind(v, e) == K_ZERO ? DISK_EXTENT_HOLE | DISK_EXTENT_ZERO : 0;
    int a;

    if (bend > end)
      bend = end;
    a = disk_extents_add(out, offset, bend - offset, fl);
    if (a != 0)
      return a < 0 ? -ENOMEM : 0;
    offset = bend;
  }
  return 0;
}

static int
vx_info(struct disk *d, struct disk_info *info)
{
  struct vhdx *v = d->priv;
  uint64_t present = 0;
  char dw[37], log[96];
  const char *hint;

  for (uint64_t b = 0; b < v->data_blocks; b++) {
    unsigned st = VX_BAT_STATE(bat_get(v, pb_index(v, b)));
    present += st == VX_PB_FULLY_PRESENT || st == VX_PB_PARTIALLY_PRESENT;
  }
  info->subtype = v->has_parent ? "differencing" : v->leave_alloc ? "fixed" : "dynamic";
  info->block_size = v->block_size;
  info->allocated_bytes = present * v->block_size;
  if (v->have_page83)
    dism_guid_to_string(&v->page83, info->unique_id);
  else
    dism_guid_to_string(&v->data_write_guid, info->unique_id);
  hint = v->loc_found ? v->loc_found : "";
  snprintf(info->parent_hint, sizeof info->parent_hint, "%s", hint);
  /* Truncate the creator at a UTF-8 character boundary. */
  size_t cl = strlen(v->creator);
  if (cl >= sizeof info->creator) {
    cl = sizeof info->creator - 1;
    while (cl > 0 && (v->creator[cl] & 0xc0) == 0x80)
      cl--;
  }
  memcpy(info->creator, v->creator, cl);
  info->creator[cl] = 0;
  if (v->replayed_in_memory)
    snprintf(log, sizeof log, "log replayed in memory (%u entries)", v->replayed_entries);
  else if (v->replayed_on_disk)
    snprintf(log, sizeof log, "log replayed to the file (%u entries)", v->replayed_entries);
  else if (v->log_empty_guid)
    snprintf(log, sizeof log, "log GUID set but no valid entries");
  else
    snprintf(log, sizeof log, "log clean");
  dism_guid_to_string(&v->data_write_guid, dw);
  snprintf(info->notes, sizeof info->notes,
           "%s; unique_id is the Page 83 virtual disk id%s; DataWriteGuid %s; "
           "chunk ratio %llu", log, v->have_page83 ? "" : " (absent: DataWriteGuid used)",
           dw, (unsigned long long) v->chunk_ratio);
  return 0;
}

static void
vx_free(struct vhdx *v)
{
  vx_ovl_free(v);
  free(v->bat);
  free(v->loc_relative);
  free(v->loc_volume);
  free(v->loc_abswin32);
  pthread_mutex_destroy(&v->lock);
  free(v);
}

/* Before a merge: new payload blocks (and, in a differencing image, sector
 * bitmap blocks) are allocated at alloc_end; headers, log and BAT are
 * written in place, so holes there (a sparse-created file) are filled now.
 * Blocks that are not present read as zeroes in a dynamic image, so only
 * a differencing one allocates for a zero range. */
static int
vx_reserve(struct disk *d, const struct disk_range *rg, size_t n)
{
  struct vhdx *v = d->priv;
  uint64_t nnew = 0, nsb = 0, last = UINT64_MAX, last_chunk = UINT64_MAX, need;
  int r;

  pthread_mutex_lock(&v->lock);
  if (n == 0) {
    disk_file_unreserve(v->fd, v->reserve_end);
    v->reserve_end = 0;
    r = 0;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t b0 = rg[i].offset >> v->block_shift;
    uint64_t b1 = (rg[i].offset + rg[i].length - 1) >> v->block_shift;
    if (rg[i].zero && !v->has_parent)
      continue;
    for (uint64_t b = last != UINT64_MAX && last >= b0 ? last + 1 : b0; b <= b1; b++) {
      unsigned st = VX_BAT_STATE(bat_get(v, pb_index(v, b)));
      uint64_t c = b / v->chunk_ratio;
      if (st == VX_PB_FULLY_PRESENT || st == VX_PB_PARTIALLY_PRESENT)
        continue;
      nnew++;
      if (v->has_parent && c != last_chunk &&
          VX_BAT_STATE(bat_get(v, sb_index(v, c))) != VX_SB_PRESENT)
        nsb++;
      last_chunk = c;
    }
    if (last == UINT64_MAX || b1 > last)
      last = b1;
  }
  r = disk_file_reserve(v->fd, v->path, 0, VX_MiB);
  if (r == 0)
    r = disk_file_reserve(v->fd, v->path, v->log_offset, v->log_length);
  if (r == 0)
    r = disk_file_reserve(v->fd, v->path, v->bat_offset, v->bat_length);
  if (r < 0 || nnew == 0)
    goto out;
  need = nnew * v->block_size + nsb * VX_MiB;
  r = disk_file_reserve_tail(v->fd, v->path, v->alloc_end, need, &v->reserve_end);
out:
  pthread_mutex_unlock(&v->lock);
  return r;
}

static void
vx_close(struct disk *d)
{
  struct vhdx *v = d->priv;

  if (!v)
    return;
  if (v->log_active && !v->broken) {
    /* Clean close: everything applied and stable, then drop the LogGuid so
     * other readers need no replay. */
    if (sync_fd(v) == 0) {
      memset(&v->log_guid, 0, sizeof v->log_guid);
      (void) vx_write_header(v);
    }
  } else if (v->write_started) {
    (void) sync_fd(v);
  }
  close(v->fd);
  vx_free(v);
  d->priv = NULL;
}

static const struct disk_ops vx_ops = {
  .name    = "vhdx",
  .pread   = vx_pread,
  .pwrite  = vx_pwrite,
  .flush   = vx_flush,
  .trim    = vx_trim,
  .zero    = vx_zero,
  .extents = vx_extents,
  .map     = vx_map,
  .info    = vx_info,
  .reserve = vx_reserve,
  .close   = vx_close,
};

static int
vhdx_open(const char *path, int fd, const struct disk_open_opts *opts,
          struct disk **out)
{
  struct disk *d = NULL;
  struct vhdx *v = NULL;
  struct stat st;
  uint8_t ident[VX_IDENT_CREATOR + 512];
  int r;

  *out = NULL;
  if (fstat(fd, &st) < 0) {
    r = -errno;
    disk_set_error("%s: fstat: %s", path, strerror(errno));
    return r;
  }
  d = disk_new(&vx_ops, path);
  v = calloc(1, sizeof *v);
  if (!d || !v) {
    r = -ENOMEM;
    goto fail;
  }
  pthread_mutex_init(&v->lock, NULL);
  v->fd = fd;
  v->path = d->path;
  v->readonly = opts->readonly;
  if (S_ISBLK(st.st_mode)) {
    off_t e = lseek(fd, 0, SEEK_END);
    v->phys_size = e > 0 ? (uint64_t) e : 0;
  } else {
    v->phys_size = (uint64_t) st.st_size;
  }
  v->file_size = v->phys_size;
  if (v->phys_size < 3 * VX_MiB) {
    disk_set_error("%s: too small (%llu bytes) to be a VHDX image", path,
                   (unsigned long long) v->phys_size);
    r = -EINVAL;
    goto fail;
  }
  r = disk_full_pread(fd, path, ident, sizeof ident, 0, false);
  if (r < 0)
    goto fail;
  if (memcmp(ident, "vhdxfile", 8) != 0) {
    disk_set_error("%s: no VHDX file identifier", path);
    r = -EINVAL;
    goto fail;
  }
  (void) dism_utf16le_to_utf8(ident + VX_IDENT_CREATOR, 256, v->creator, sizeof v->creator);

  r = parse_headers(v);
  if (r == 0)
    r = vx_log_replay(v);
  if (r == 0)
    r = parse_regions(v);
  if (r == 0)
    r = parse_metadata(v);
  if (r == 0)
    r = load_bat(v);
  if (r < 0)
    goto fail;
  d->priv = v;
  d->size = v->vsize;
  d->logical_sector = v->lss;
  d->physical_sector = v->pss;
  d->readonly = opts->readonly;
  if (v->has_parent) {
    r = open_parent(d, v, opts);
    if (r < 0)
      goto fail;
  }
  *out = d;
  return 0;

fail:
  /* The caller closes fd on failure; nothing here was written to it except
   * a completed read-write log replay, which is valid on its own. */
  if (d) {
    disk_close(d->parent);
    d->parent = NULL;
    d->priv = NULL;
    d->ops = NULL;
    disk_close(d);
  }
  if (v)
    vx_free(v);
  return r;
}

static bool
vhdx_probe(int fd, uint64_t file_size)
{
  char sig[8];

  return file_size >= 8 && pread(fd, sig, 8, 0) == 8 &&
         memcmp(sig, "vhdxfile", 8) == 0;
}

const struct disk_format dism_format_vhdx = {
  .name = "vhdx",
  .probe = vhdx_probe,
  .open = vhdx_open,
};
