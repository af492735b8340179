/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* partition.c - MBR and GPT parsing for an untrusted virtual disk.
 *
 * Only what is needed to choose the Windows partition the way the kernel
 * will number it: MBR primaries and the logical chain, GPT (primary, or the
 * backup when the primary is damaged, as the kernel does) with both CRCs.
 * No libntfs-3g here, so the fuzzer can link this file alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "dism-error.h"
#include "partition.h"

#define MBR_EBR_CHAIN_MAX 64         /* logical partitions followed */

static const uint8_t GUID_BASIC_DATA[16] = {
  0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44,
  0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99, 0xc7 };
static const uint8_t GUID_ESP[16] = {
  0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
  0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b };
static const uint8_t GUID_MSR[16] = {
  0x16, 0xe3, 0xc9, 0xe3, 0x5c, 0x0b, 0xb8, 0x4d,
  0x81, 0x7d, 0xf9, 0x2d, 0xf0, 0x02, 0x15, 0xae };
static const uint8_t GUID_WINRE[16] = {
  0xa4, 0xbb, 0x94, 0xde, 0xd1, 0x06, 0x40, 0x4d,
  0xa1, 0x6a, 0xbf, 0xd5, 0x01, 0x79, 0xd6, 0xac };

/* CRC-32 (IEEE 802.3, reflected), as the UEFI spec uses for GPT. */
static uint32_t
crc32_gpt(const uint8_t *p, size_t n)
{
  static uint32_t table[256];
  static int ready;
  uint32_t c = 0xffffffffu;
  size_t i;

  if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
    for (uint32_t k = 0; k < 256; k++) {
      uint32_t v = k;
      for (int b = 0; b < 8; b++)
        v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
      table[k] = v;
    }
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
  }
  for (i = 0; i < n; i++)
    c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static int
disk_read(const struct dism_disk_io *io, void *buf, size_t len, uint64_t off)
{
  int r;

  if (off > io->size || len > io->size - off) {
    dism_set_error("%s: read of %zu bytes at %" PRIu64 " is past the end of the "
                   "disk (%" PRIu64 " bytes)", io->name, len, off, io->size);
    return -ERANGE;
  }
  r = io->pread(io->ctx, buf, len, off);
  if (r < 0)
    dism_set_error("%s: cannot read %zu bytes at offset %" PRIu64 ": %s",
                   io->name, len, off, strerror(-r));
  return r;
}

bool
dism_ntfs_boot_sector(const uint8_t *sec, size_t len)
{
  uint16_t bps;
  uint8_t spc;

  if (len < 512 || memcmp(sec + 3, "NTFS    ", 8) != 0)
    return false;
  if (sec[510] != 0x55 || sec[511] != 0xaa)
    return false;
  bps = get_le16(sec + 11);
  if (bps < 256 || bps > 4096 || (bps & (bps - 1)))
    return false;
  spc = sec[13];
  /* 1..128 sectors per cluster, or 2^(256-spc) for large clusters */
  if (spc == 0 || (spc > 128 && spc < 244))
    return false;
  return get_le64(sec + 40) != 0;       /* total sectors */
}

/* Read the boot sector of each candidate and mark the NTFS ones.  A
 * partition that cannot be read is simply not NTFS. */
static unsigned
probe_boot_sectors(const struct dism_disk_io *io, struct dism_part_table *t)
{
  uint8_t sec[512];
  unsigned i, found = 0;

  for (i = 0; i < t->count; i++) {
    struct dism_part *p = &t->part[i];
    p->ntfs = false;
    if (!p->candidate || p->size < sizeof sec)
      continue;
    if (io->pread(io->ctx, sec, sizeof sec, p->offset) == 0 &&
        dism_ntfs_boot_sector(sec, sizeof sec)) {
      p->ntfs = true;
      found++;
    }
  }
  return found;
}

static int
add_part(const struct dism_disk_io *io, struct dism_part_table *t,
         unsigned number, uint64_t offset, uint64_t size)
{
  struct dism_part *p;
  unsigned i;

  if (t->count >= DISM_PART_MAX) {
    dism_set_error("%s: more than %d partitions in the %s partition table",
                   io->name, DISM_PART_MAX, t->kind);
    return -E2BIG;
  }
  if (size == 0 || offset > io->size || size > io->size - offset) {
    dism_set_error("%s: %s partition %u (offset %" PRIu64 ", %" PRIu64
                   " bytes) extends past the end of the disk (%" PRIu64 " bytes)",
                   io->name, t->kind, number, offset, size, io->size);
    return -EINVAL;
  }
  for (i = 0; i < t->count; i++) {
    const struct dism_part *q = &t->part[i];
    if (q->extended)
      continue;                      /* holds the logicals: checked by the chain */
    if (offset < q->offset + q->size && q->offset < offset + size) {
      dism_set_error("%s: %s partitions %u and %u overlap", io->name, t->kind,
                     q->number, number);
      return -EINVAL;
    }
  }
  p = &t->part[t->count++];
  memset(p, 0, sizeof *p);
  p->number = number;
  p->offset = offset;
  p->size = size;
  return 0;
}

static bool
mbr_is_extended(uint8_t type)
{
  return type == 0x05 || type == 0x0f || type == 0x85;
}

static void
mbr_set_type(struct dism_part *p, uint8_t type)
{
  p->mbr_type = type;
  p->candidate = type == 0x07;
  snprintf(p->type_name, sizeof p->type_name, "%s(0x%02x)",
           type == 0x07 ? "NTFS/exFAT" : type == 0x0c || type == 0x0b ? "FAT32" :
           type == 0xef ? "EFI system" : type == 0x27 ? "WinRE" :
           mbr_is_extended(type) ? "extended" : "type", type);
}

/* The logical partitions of the extended partition at [ext, ext+len)
 * sectors.  Each EBR's data entries are relative to that EBR; its link entry
 * is relative to the extended partition's start (as the kernel reads it). */
static int
parse_ebr_chain(const struct dism_disk_io *io, struct dism_part_table *t,
                unsigned ss, uint64_t ext, uint64_t len)
{
  uint8_t sec[512];
  uint64_t ebr = ext;
  unsigned next_number = 5, hops;
  int r;

  for (hops = 0; hops < MBR_EBR_CHAIN_MAX; hops++) {
    uint64_t link = 0;
    int i;

    if (ebr > UINT64_MAX / ss || (r = disk_read(io, sec, sizeof sec, ebr * ss)) < 0) {
      if (ebr <= UINT64_MAX / ss)
        return r;
      dism_set_error("%s: extended partition link out of range", io->name);
      return -EINVAL;
    }
    if (sec[510] != 0x55 || sec[511] != 0xaa)
      return 0;                      /* end of a damaged chain: keep what we have */
    for (i = 0; i < 4; i++) {
      const uint8_t *e = sec + 446 + 16 * i;
      uint8_t type = e[4];
      uint64_t start = get_le32(e + 8), n = get_le32(e + 12);

      if (type == 0 || n == 0)
        continue;
      if (mbr_is_extended(type)) {
        if (!link)
          link = start;
        continue;
      }
      if (ebr - ext + start + n > len) {
        dism_set_error("%s: logical partition %u extends past its extended partition",
                       io->name, next_number);
        return -EINVAL;
      }
      r = add_part(io, t, next_number, (ebr + start) * ss, n * ss);
      if (r < 0)
        return r;
      mbr_set_type(&t->part[t->count - 1], type);
      next_number++;
    }
    if (!link)
      return 0;
    if (link >= len) {
      dism_set_error("%s: logical partition chain leaves the extended partition",
                     io->name);
      return -EINVAL;
    }
    if (ext + link == ebr) {
      dism_set_error("%s: logical partition chain loops", io->name);
      return -EINVAL;
    }
    ebr = ext + link;
  }
  dism_set_error("%s: more than %d logical partitions (a loop in the chain?)",
                 io->name, MBR_EBR_CHAIN_MAX);
  return -EINVAL;
}

static int
parse_mbr(const struct dism_disk_io *io, const uint8_t *mbr, unsigned ss,
          struct dism_part_table *t)
{
  bool extended_seen = false;
  int i, r;

  memset(t, 0, sizeof *t);
  strcpy(t->kind, "mbr");
  t->sector_size = ss;
  t->disk_size = io->size;
  for (i = 0; i < 4; i++) {
    const uint8_t *e = mbr + 446 + 16 * i;
    uint8_t type = e[4];
    uint64_t start = get_le32(e + 8), n = get_le32(e + 12);

    if (type == 0 || n == 0)
      continue;
    if (start == 0) {
      dism_set_error("%s: MBR partition %d starts at sector 0", io->name, i + 1);
      return -EINVAL;
    }
    if (mbr_is_extended(type) && extended_seen) {
      dism_set_error("%s: more than one extended partition in the MBR", io->name);
      return -EINVAL;
    }
    r = add_part(io, t, (unsigned) i + 1, start * ss, n * ss);
    if (r < 0)
      return r;
    extended_seen |= mbr_is_extended(type);
    mbr_set_type(&t->part[t->count - 1], type);
    if (mbr_is_extended(type)) {
      /* the container itself is not a file system; its logicals are */
      t->part[t->count - 1].candidate = false;
      t->part[t->count - 1].extended = true;
      r = parse_ebr_chain(io, t, ss, start, n);
      if (r < 0)
        return r;
    }
  }
  return 0;
}

static void
gpt_set_type(struct dism_part *p, const uint8_t *guid)
{
  const char *name = "other";

  memcpy(p->gpt_type, guid, 16);
  if (!memcmp(guid, GUID_BASIC_DATA, 16)) {
    name = "basic data";
    p->candidate = true;
  } else if (!memcmp(guid, GUID_ESP, 16)) {
    name = "EFI system";
  } else if (!memcmp(guid, GUID_MSR, 16)) {
    name = "MS reserved";
  } else if (!memcmp(guid, GUID_WINRE, 16)) {
    name = "WinRE";
  }
  snprintf(p->type_name, sizeof p->type_name, "%s", name);
}

/* Validate the GPT header at lba and, if it is good, read its entries into t.
 * On failure *why says what is wrong (the caller decides whether the backup
 * header can still save the day). */
static int
parse_gpt_at(const struct dism_disk_io *io, unsigned ss, uint64_t lba,
             struct dism_part_table *t, char *why, size_t whylen)
{
  uint8_t *hdr = NULL, *ents = NULL;
  uint64_t nsect = io->size / ss, my_lba, first, last, ent_lba, arr_bytes, arr_sectors;
  uint32_t hsize, crc, nent, esize, i;
  int r;

  if (nsect < 3 || lba >= nsect) {
    snprintf(why, whylen, "the disk is too small for a GPT");
    r = -EINVAL;
    goto out;
  }
  hdr = malloc(ss);
  if (!hdr) {
    r = -ENOMEM;
    snprintf(why, whylen, "out of memory");
    goto out;
  }
  r = io->pread(io->ctx, hdr, ss, lba * ss);
  if (r < 0) {
    snprintf(why, whylen, "cannot read LBA %" PRIu64 ": %s", lba, strerror(-r));
    goto out;
  }
  r = -EINVAL;
  if (memcmp(hdr, "EFI PART", 8) != 0) {
    snprintf(why, whylen, "no \"EFI PART\" signature at LBA %" PRIu64, lba);
    goto out;
  }
  hsize = get_le32(hdr + 12);
  if (hsize < 92 || hsize > ss) {
    snprintf(why, whylen, "header size %u is invalid", hsize);
    goto out;
  }
  crc = get_le32(hdr + 16);
  memset(hdr + 16, 0, 4);
  if (crc32_gpt(hdr, hsize) != crc) {
    snprintf(why, whylen, "header CRC32 mismatch at LBA %" PRIu64, lba);
    goto out;
  }
  my_lba = get_le64(hdr + 24);
  first = get_le64(hdr + 40);
  last = get_le64(hdr + 48);
  ent_lba = get_le64(hdr + 72);
  nent = get_le32(hdr + 80);
  esize = get_le32(hdr + 84);
  if (my_lba != lba) {
    snprintf(why, whylen, "header at LBA %" PRIu64 " says it is at LBA %" PRIu64,
             lba, my_lba);
    goto out;
  }
  if (first > last || last >= nsect || first < 2) {
    snprintf(why, whylen, "usable range %" PRIu64 "-%" PRIu64 " does not fit the "
             "disk (%" PRIu64 " sectors)", first, last, nsect);
    goto out;
  }
  if (esize < 128 || esize > 4096 || (esize & (esize - 1))) {
    snprintf(why, whylen, "entry size %u is invalid", esize);
    goto out;
  }
  arr_bytes = (uint64_t) nent * esize;
  if (nent == 0 || arr_bytes > DISM_GPT_MAX_ARRAY) {
    snprintf(why, whylen, "entry array of %u entries x %u bytes is %s", nent, esize,
             nent ? "too large" : "empty");
    goto out;
  }
  arr_sectors = (arr_bytes + ss - 1) / ss;
  /* the array must lie outside the usable area and inside the disk */
  if (ent_lba < 2 || ent_lba >= nsect || arr_sectors > nsect - ent_lba ||
      (lba >= ent_lba && lba < ent_lba + arr_sectors) ||
      (ent_lba < last + 1 && ent_lba + arr_sectors > first)) {
    snprintf(why, whylen, "entry array at LBA %" PRIu64 " (%" PRIu64 " sectors) "
             "is outside the disk or overlaps the usable area", ent_lba, arr_sectors);
    goto out;
  }
  ents = malloc(arr_bytes);
  if (!ents) {
    r = -ENOMEM;
    snprintf(why, whylen, "out of memory");
    goto out;
  }
  r = io->pread(io->ctx, ents, arr_bytes, ent_lba * ss);
  if (r < 0) {
    snprintf(why, whylen, "cannot read the entry array: %s", strerror(-r));
    goto out;
  }
  r = -EINVAL;
  if (crc32_gpt(ents, arr_bytes) != get_le32(hdr + 88)) {
    snprintf(why, whylen, "entry array CRC32 mismatch");
    goto out;
  }

  memset(t, 0, sizeof *t);
  strcpy(t->kind, "gpt");
  t->sector_size = ss;
  t->disk_size = io->size;
  for (i = 0; i < nent; i++) {
    const uint8_t *e = ents + (uint64_t) i * esize;
    static const uint8_t zero[16];
    uint64_t s, l;

    if (!memcmp(e, zero, 16))
      continue;                      /* unused slot */
    s = get_le64(e + 32);
    l = get_le64(e + 40);
    if (s > l || s < first || l > last) {
      snprintf(why, whylen, "partition %u (LBA %" PRIu64 "-%" PRIu64 ") is outside "
               "the usable range %" PRIu64 "-%" PRIu64, i + 1, s, l, first, last);
      r = -EINVAL;
      goto out;
    }
    r = add_part(io, t, i + 1, s * ss, (l - s + 1) * ss);
    if (r < 0) {
      snprintf(why, whylen, "%s", dism_last_error());
      goto out;
    }
    gpt_set_type(&t->part[t->count - 1], e);
  }
  r = 0;
out:
  free(ents);
  free(hdr);
  return r;
}

/* GPT: the primary header at LBA 1; if it is damaged, the backup at the last
 * LBA, like the kernel (so our numbering matches /dev/nbdNpK). */
static int
parse_gpt(const struct dism_disk_io *io, unsigned ss, struct dism_part_table *t)
{
  char why1[200], why2[200];
  int r;

  why1[0] = why2[0] = 0;
  r = parse_gpt_at(io, ss, 1, t, why1, sizeof why1);
  if (r == 0 || r == -ENOMEM)
    goto out;
  if (io->size / ss >= 3 &&
      parse_gpt_at(io, ss, io->size / ss - 1, t, why2, sizeof why2) == 0) {
    t->gpt_backup = true;
    r = 0;
    goto out;
  }
  dism_set_error("%s: invalid GPT (%u-byte sectors): primary: %s; backup: %s",
                 io->name, ss, why1, why2[0] ? why2 : "not found");
out:
  return r;
}

static bool
has_gpt_signature(const struct dism_disk_io *io, unsigned ss)
{
  uint8_t sig[8];

  return io->size >= 3ull * ss && io->pread(io->ctx, sig, 8, ss) == 0 &&
         memcmp(sig, "EFI PART", 8) == 0;
}

int
dism_part_read_table(const struct dism_disk_io *io, unsigned sector_hint,
                     struct dism_part_table *t)
{
  uint8_t mbr[512];
  struct dism_part_table *alt = NULL;
  bool protective = false;
  unsigned ss;
  int i, r;

  memset(t, 0, sizeof *t);
  if (sector_hint != 0 && sector_hint != 512 && sector_hint != 4096) {
    dism_set_error("%s: unsupported sector size %u", io->name, sector_hint);
    r = -EINVAL;
    goto out;
  }
  if (io->size < sizeof mbr) {
    dism_set_error("%s: the disk is too small (%" PRIu64 " bytes)", io->name, io->size);
    r = -EINVAL;
    goto out;
  }
  r = disk_read(io, mbr, sizeof mbr, 0);
  if (r < 0)
    goto out;

  if (dism_ntfs_boot_sector(mbr, sizeof mbr)) {
    strcpy(t->kind, "none");
    t->sector_size = get_le16(mbr + 11) >= 4096 ? 4096 : 512;
    t->disk_size = io->size;
    t->whole_disk_ntfs = true;
    r = 0;
    goto out;
  }
  if (mbr[510] != 0x55 || mbr[511] != 0xaa) {
    strcpy(t->kind, "none");
    t->sector_size = sector_hint ? sector_hint : 512;
    t->disk_size = io->size;
    r = 0;
    goto out;
  }
  for (i = 0; i < 4; i++) {
    const uint8_t *e = mbr + 446 + 16 * i;
    if (e[0] != 0 && e[0] != 0x80) {
      dism_set_error("%s: sector 0 has a boot signature but MBR entry %d has an "
                     "invalid status byte 0x%02x", io->name, i + 1, e[0]);
      r = -EINVAL;
      goto out;
    }
    if (e[4] == 0xee)
      protective = true;
  }

  if (protective) {
    ss = sector_hint;
    if (!ss)
      ss = has_gpt_signature(io, 512) ? 512 : has_gpt_signature(io, 4096) ? 4096 : 512;
    r = parse_gpt(io, ss, t);
    if (r == 0)
      probe_boot_sectors(io, t);
    goto out;
  }

  r = parse_mbr(io, mbr, sector_hint ? sector_hint : 512, t);
  if (r < 0 && sector_hint)
    goto out;
  if ((r < 0 || probe_boot_sectors(io, t) == 0) && !sector_hint) {
    /* An MBR says nothing about its sector size: if 512-byte units find no
     * NTFS, try 4096 (a 4Kn disk) and keep that only if it finds some. */
    alt = malloc(sizeof *alt);
    if (!alt) {
      r = -ENOMEM;
      goto out;
    }
    if (parse_mbr(io, mbr, 4096, alt) == 0 && probe_boot_sectors(io, alt) > 0) {
      memcpy(t, alt, sizeof *t);
      dism_clear_error();
      r = 0;
    } else if (r < 0) {
      /* report the 512-byte parse's problem, not the retry's */
      r = parse_mbr(io, mbr, 512, t);
    }
  }
out:
  free(alt);
  return r;
}

void
dism_part_list(const struct dism_part_table *t, char *buf, size_t len)
{
  size_t used = 0;
  unsigned i;

  if (len == 0)
    return;
  buf[0] = 0;
  if (t->count == 0) {
    snprintf(buf, len, "%s", strcmp(t->kind, "none") ? "an empty partition table"
                                                      : "no partition table");
    return;
  }
  for (i = 0; i < t->count && used < len; i++) {
    const struct dism_part *p = &t->part[i];
    int n = snprintf(buf + used, len - used, "%s%u:%s %" PRIu64 "MiB%s", i ? ", " : "",
                     p->number, p->type_name, p->size >> 20,
                     p->ntfs ? " NTFS" : "");
    if (n < 0)
      break;
    used += (size_t) n;
  }
}
