/* SPDX-License-Identifier: GPL-2.0-or-later */
/* wim-blobs - read every blob of a WIM through wim-source.c and check it.
 *
 *   wim-blobs [--threads N] [--reads N] [--cache BYTES] WIM
 *       every blob wimlib lists (wimlib_iterate_lookup_table) is read whole
 *       through wim_source_read (1 MiB at a time) and its SHA-1 compared
 *       with the blob table's; then N threads make random partial reads of
 *       the blobs up to 64 MiB and compare them with the whole reads.
 *       Prints one FAIL line per bad blob (the engine's message), then
 *       "blobs N ok N failed N bytes N partial N stats ...".
 *       Exit 0: all good; 1: a blob failed; 2: the WIM did not open.
 *   wim-blobs [--blobs-from OTHER.wim] ... WIM
 *       the blobs are those OTHER.wim lists (e.g. the intact copy of a
 *       truncated or damaged WIM)
 *   wim-blobs --list WIM
 *       print each blob: resource offset, size, uncompressed size, flags,
 *       offset in the resource, size (one line each)
 *   wim-blobs --open WIM
 *       only wim_source_open: prints "open ok" or the message (exit 2).
 *   wim-blobs --mkmap WIM DIR
 *       a "wim" disk for the format test: DIR/vol.img (zeroes, one 4 KiB
 *       cluster between blobs), DIR/vol.map mapping every blob (not the
 *       metadata) and DIR/expect.img, the same volume with the blob bytes
 *       written in (what reading the map's disk must give).  A blob that
 *       does not read is mapped too (zeroes in expect.img) and printed:
 *       "bad VOLUME_OFFSET LENGTH".  Blobs over 64 MiB are left out.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wimlib.h>

#include "disk.h"
#include "wim-map.h"
#include "wim-source.h"

#define STEP (1u << 20)
#define KEEP_MAX (64ull << 20)

struct blob {
  struct wim_resource res;
  uint64_t offset, size;       /* the blob inside res's uncompressed data */
  uint8_t sha1[20];
  bool metadata;
  uint8_t *data;               /* whole read, kept when size <= KEEP_MAX */
};

static struct blob *blobs;
static size_t nblobs, capblobs;
static struct wim_source *ws;
static unsigned nreads = 2000;
static uint64_t partial_ok, partial_bad;

static int
add_blob(const struct wimlib_resource_entry *r, void *ctx)
{
  struct blob *b;
  (void) ctx;
  if (r->is_missing || r->uncompressed_size == 0)
    return 0;
  if (nblobs == capblobs) {
    capblobs = capblobs ? capblobs * 2 : 64;
    blobs = realloc(blobs, capblobs * sizeof *blobs);
    if (!blobs)
      return WIMLIB_ERR_NOMEM;
  }
  b = &blobs[nblobs++];
  memset(b, 0, sizeof *b);
  wim_resource_of_blob(r, &b->res, &b->offset);
  b->size = r->uncompressed_size;
  b->metadata = r->is_metadata;
  memcpy(b->sha1, r->sha1_hash, 20);
  return 0;
}

static int
list_blobs(const char *path)
{
  WIMStruct *w = NULL;
  int r = wimlib_open_wim(path, 0, &w);
  if (r != 0) {
    fprintf(stderr, "wimlib_open_wim %s: %s\n", path, wimlib_get_error_string(r));
    return -1;
  }
  r = wimlib_iterate_lookup_table(w, 0, add_blob, NULL);
  wimlib_free(w);
  if (r != 0) {
    fprintf(stderr, "wimlib_iterate_lookup_table: %s\n", wimlib_get_error_string(r));
    return -1;
  }
  return 0;
}

/* Read blob b whole: 0 if its SHA-1 matches. */
static int
read_whole(struct blob *b)
{
  gnutls_hash_hd_t h;
  uint8_t digest[20], *buf = malloc(STEP);
  int r = 0;

  if (!buf || gnutls_hash_init(&h, GNUTLS_DIG_SHA1) < 0) {
    free(buf);
    return -ENOMEM;
  }
  if (b->size <= KEEP_MAX)
    b->data = malloc(b->size);
  for (uint64_t at = 0; at < b->size && r == 0;) {
    size_t n = b->size - at < STEP ? (size_t) (b->size - at) : STEP;
    r = wim_source_read(ws, &b->res, b->offset + at, buf, n);
    if (r == 0) {
      gnutls_hash(h, buf, n);
      if (b->data)
        memcpy(b->data + at, buf, n);
    }
    at += n;
  }
  gnutls_hash_deinit(h, digest);
  free(buf);
  if (r == 0 && memcmp(digest, b->sha1, 20) != 0) {
    disk_set_error("SHA-1 mismatch");
    r = -EBADMSG;
  }
  if (r < 0) {
    free(b->data);
    b->data = NULL;
  }
  return r;
}

static void *
random_reads(void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg;
  uint8_t *buf = malloc(STEP);
  size_t kept = 0;

  for (size_t i = 0; i < nblobs; i++)
    kept += blobs[i].data != NULL;
  for (unsigned i = 0; buf && kept && i < nreads; i++) {
    struct blob *b;
    uint64_t off, len;
    do
      b = &blobs[rand_r(&seed) % nblobs];
    while (!b->data);
    off = ((uint64_t) rand_r(&seed) << 16 ^ (uint64_t) rand_r(&seed)) % b->size;
    len = 1 + (uint64_t) rand_r(&seed) % (rand_r(&seed) % 4 ? 8192 : STEP);
    if (len > b->size - off)
      len = b->size - off;
    if (wim_source_read(ws, &b->res, b->offset + off, buf, len) == 0 &&
        memcmp(buf, b->data + off, len) == 0)
      __atomic_fetch_add(&partial_ok, 1, __ATOMIC_RELAXED);
    else
      __atomic_fetch_add(&partial_bad, 1, __ATOMIC_RELAXED);
  }
  free(buf);
  return NULL;
}

static int
mkmap(const char *wim, const char *dir)
{
  char path[PATH_MAX];
  struct wim_map m = { 0 };
  uint64_t at = 4096;
  int vfd = -1, efd = -1, rc = 1, wfd;

  m.resources = calloc(nblobs + 1, sizeof *m.resources);
  m.extents = calloc(nblobs + 1, sizeof *m.extents);
  m.wim_path = realpath(wim, NULL);
  m.volume_path = "vol.img";
  m.image_index = 1;
  m.cluster_size = 4096;
  if (!m.resources || !m.extents || !m.wim_path)
    goto out;
  wfd = open(wim, O_RDONLY);
  if (wfd < 0 || wim_identity_of(wfd, wim, &m.wim) < 0) {
    fprintf(stderr, "identity: %s\n", disk_last_error());
    goto out;
  }
  close(wfd);
  snprintf(path, sizeof path, "%s/vol.img", dir);
  vfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  snprintf(path, sizeof path, "%s/expect.img", dir);
  efd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (vfd < 0 || efd < 0)
    goto out;
  for (size_t i = 0; i < nblobs; i++) {
    struct blob *b = &blobs[i];
    struct wim_map_extent *x;
    if (b->metadata || b->size > KEEP_MAX)
      continue;
    x = &m.extents[m.extent_count++];
    m.resources[m.resource_count] = b->res;
    x->volume_offset = at;
    x->length = b->size;
    x->resource_offset = b->offset;
    x->resource = m.resource_count++;
    x->mft_record = (uint32_t) (64 + i);
    if (!b->data)
      printf("bad %" PRIu64 " %" PRIu64 "\n", at, b->size);
    else if (pwrite(efd, b->data, b->size, (off_t) at) != (ssize_t) b->size)
      goto out;
    /* The volume file holds a pattern under mapped ranges: the map wins. */
    at = (at + b->size + 4096 + 4095) / 4096 * 4096;
  }
  m.volume_size = at + 8192;
  /* Unmapped bytes come from the volume file: a marker there. */
  if (pwrite(vfd, "VOLUME", 6, 0) != 6 || pwrite(efd, "VOLUME", 6, 0) != 6 ||
      ftruncate(vfd, (off_t) m.volume_size) < 0 || ftruncate(efd, (off_t) m.volume_size) < 0)
    goto out;
  snprintf(path, sizeof path, "%s/vol.map", dir);
  if (wim_map_write(path, &m) < 0) {
    fprintf(stderr, "%s\n", disk_last_error());
    goto out;
  }
  printf("map %zu extents, volume %" PRIu64 " bytes\n", (size_t) m.extent_count, m.volume_size);
  rc = 0;
out:
  if (vfd >= 0)
    close(vfd);
  if (efd >= 0)
    close(efd);
  free(m.resources);
  free(m.extents);
  free(m.wim_path);
  return rc;
}

int
main(int argc, char **argv)
{
  struct wim_source_opts opts = { 0 };
  struct wim_source_stats st;
  unsigned threads = 4;
  uint64_t ok = 0, bad = 0, bytes = 0;
  const char *mkmap_dir = NULL, *blobs_from = NULL;
  bool open_only = false, list = false;
  int i;

  for (i = 1; i < argc - 1 && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = (unsigned) atoi(argv[++i]);
    else if (strcmp(argv[i], "--reads") == 0 && i + 1 < argc)
      nreads = (unsigned) atoi(argv[++i]);
    else if (strcmp(argv[i], "--cache") == 0 && i + 1 < argc)
      opts.cache_bytes = strtoull(argv[++i], NULL, 0);
    else if (strcmp(argv[i], "--open") == 0)
      open_only = true;
    else if (strcmp(argv[i], "--list") == 0)
      list = true;
    else if (strcmp(argv[i], "--blobs-from") == 0 && i + 1 < argc)
      blobs_from = argv[++i];
    else if (strcmp(argv[i], "--mkmap") == 0 && i + 2 < argc) {
      mkmap_dir = argv[argc - 1];
      argc--;
    } else
      break;
  }
  if (i != argc - 1) {
    fprintf(stderr, "usage: wim-blobs [--threads N] [--reads N] [--cache BYTES] WIM | "
            "--open WIM | --mkmap WIM DIR\n");
    return 2;
  }
  if (wim_source_open(argv[i], &opts, &ws) < 0) {
    printf("open failed: %s\n", disk_last_error());
    return 2;
  }
  if (open_only) {
    printf("open ok\n");
    wim_source_close(ws);
    return 0;
  }
  if (list_blobs(blobs_from ? blobs_from : argv[i]) < 0)
    return 2;
  if (list) {
    for (size_t k = 0; k < nblobs; k++)
      printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %#x %" PRIu64 " %" PRIu64 "%s\n",
             blobs[k].res.offset, blobs[k].res.size, blobs[k].res.uncompressed_size,
             blobs[k].res.flags, blobs[k].offset, blobs[k].size,
             blobs[k].metadata ? " metadata" : "");
    return 0;
  }
  for (size_t k = 0; k < nblobs; k++) {
    struct blob *b = &blobs[k];
    int r = read_whole(b);
    if (r == 0) {
      ok++;
      bytes += b->size;
    } else {
      bad++;
      printf("FAIL blob %02x%02x%02x%02x (%" PRIu64 " bytes at %" PRIu64
             " of resource %" PRIu64 "%s): %s: %s\n", b->sha1[0], b->sha1[1], b->sha1[2],
             b->sha1[3], b->size, b->offset, b->res.offset,
             b->res.flags & WIM_RES_SOLID ? " solid" : "", strerror(-r), disk_last_error());
    }
  }
  if (mkmap_dir) {
    int rc = mkmap(argv[i], mkmap_dir);
    fflush(stdout);
    wim_source_close(ws);
    return rc;
  }
  {
    pthread_t tid[64];
    if (threads > 64)
      threads = 64;
    for (unsigned t = 0; t < threads; t++)
      pthread_create(&tid[t], NULL, random_reads, (void *) (uintptr_t) (t + 1));
    for (unsigned t = 0; t < threads; t++)
      pthread_join(tid[t], NULL);
  }
  wim_source_get_stats(ws, &st);
  printf("blobs %zu ok %" PRIu64 " failed %" PRIu64 " bytes %" PRIu64 " partial %" PRIu64
         " partial_bad %" PRIu64 " stats file_read %" PRIu64 " decompressed %" PRIu64
         " hits %" PRIu64 " returned %" PRIu64 "\n", nblobs, ok, bad, bytes, partial_ok,
         partial_bad, st.file_bytes_read, st.chunks_decompressed, st.cache_hits,
         st.bytes_returned);
  for (size_t k = 0; k < nblobs; k++)
    free(blobs[k].data);
  free(blobs);
  wim_source_close(ws);
  return bad || partial_bad ? 1 : 0;
}
