/* SPDX-License-Identifier: GPL-2.0-or-later */
/* disk-tool - drive the disk engine directly from tests, without the server.
 *
 *   disk-tool [-r] [-B] [-O OVERLAY|-N OVERLAY] IMAGE cat            raw bytes to stdout
 *   disk-tool ... IMAGE read OFFSET LENGTH                          a range's raw bytes to stdout
 *   disk-tool ... IMAGE info                                        facts as key=value
 *   disk-tool ... IMAGE map                                         extents: offset length flags
 *   disk-tool ... IMAGE write OFFSET FILE                           FILE's bytes at OFFSET
 *   disk-tool ... IMAGE zero|trim OFFSET LENGTH [mt|fast]
 *   disk-tool ... IMAGE flush
 *   disk-tool ... IMAGE script FILE    lines: "w OFF LEN SEED", "z OFF LEN", "t OFF LEN", "f", "k" (kill -9 self)
 *
 * -r read-only open, -B allow bad checksums, -O reopen overlay, -N create overlay,
 * -F FORMAT force the format (raw, vhd, vhdx) instead of probing.
 * -W open the base read-write under an overlay; "commit" then merges the
 *    overlay into the base and empties it.
 * Errors go to stderr with the engine's message; exit 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"
#include "overlay.h"

static int
die(const char *what, int r)
{
  fprintf(stderr, "disk-tool: %s: %s (%s)\n", what, disk_last_error(), strerror(-r));
  return 1;
}

/* Deterministic bytes for script writes: a cheap PRNG seeded per write. */
static void
fill(unsigned char *b, size_t n, uint64_t seed, uint64_t off)
{
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ off;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    b[i] = (unsigned char) x;
  }
}

/* One command on the open disk; the exit status.  main closes the disk on
 * every path (a leak check runs at exit under ASan). */
static int
run_command(struct disk *d, const char *ovl, const char *cmd, char **args, int nargs)
{
  int r = 0;

  if (strcmp(cmd, "cat") == 0) {
    size_t bs = 1 << 20;
    unsigned char *buf = malloc(bs);
    for (uint64_t off = 0; off < d->size; off += bs) {
      size_t n = d->size - off < bs ? (size_t) (d->size - off) : bs;
      if ((r = disk_pread(d, buf, n, off)) < 0 || fwrite(buf, 1, n, stdout) != n) {
        free(buf);
        return r < 0 ? die("read", r) : 1;
      }
    }
    free(buf);
  } else if (strcmp(cmd, "read") == 0 && nargs == 2) {
    uint64_t off = strtoull(args[0], NULL, 0), len = strtoull(args[1], NULL, 0);
    size_t bs = 1 << 20;
    unsigned char *buf = malloc(bs);
    if (off > d->size || len > d->size - off) {
      fprintf(stderr, "disk-tool: read range past the end of the disk\n");
      free(buf);
      return 1;
    }
    while (len > 0) {
      size_t n = len < bs ? (size_t) len : bs;
      if ((r = disk_pread(d, buf, n, off)) < 0 || fwrite(buf, 1, n, stdout) != n) {
        free(buf);
        return r < 0 ? die("read", r) : 1;
      }
      off += n;
      len -= n;
    }
    free(buf);
  } else if (strcmp(cmd, "info") == 0) {
    struct disk_info i;
    if ((r = disk_info(d, &i)) < 0)
      return die("info", r);
    printf("format=%s\nsubtype=%s\nvirtual_size=%llu\nlogical_sector=%u\n"
           "physical_sector=%u\nblock_size=%u\nallocated_bytes=%llu\n"
           "unique_id=%s\nparent=%s\nhas_parent=%d\ncreator=%s\nnotes=%s\n",
           i.format, i.subtype, (unsigned long long) i.virtual_size,
           i.logical_sector, i.physical_sector, i.block_size,
           (unsigned long long) i.allocated_bytes, i.unique_id, i.parent_hint,
           d->parent != NULL, i.creator, i.notes);
  } else if (strcmp(cmd, "map") == 0) {
    uint64_t off = 0;
    while (off < d->size) {
      struct disk_extents e;
      disk_extents_init(&e, off, d->size, 0);
      if ((r = disk_extents(d, d->size - off, off, &e)) < 0 || e.n == 0) {
        disk_extents_free(&e);
        if (r < 0)
          return die("extents", r);
        fprintf(stderr, "disk-tool: extents made no progress at %llu\n",
                (unsigned long long) off);
        return 1;
      }
      for (size_t k = 0; k < e.n; k++) {
        uint64_t len = e.v[k].length;
        if (e.v[k].offset + len > d->size)
          len = d->size - e.v[k].offset;
        printf("%llu %llu %u\n", (unsigned long long) e.v[k].offset,
               (unsigned long long) len, e.v[k].flags);
        off = e.v[k].offset + len;
      }
      disk_extents_free(&e);
    }
  } else if (strcmp(cmd, "write") == 0 && nargs == 2) {
    FILE *f = fopen(args[1], "rb");
    uint64_t off = strtoull(args[0], NULL, 0);
    unsigned char buf[65536];
    size_t n;
    if (!f) { perror(args[1]); return 1; }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
      if ((r = disk_pwrite(d, buf, n, off, 0)) < 0) {
        fclose(f);
        return die("write", r);
      }
      off += n;
    }
    fclose(f);
    if ((r = disk_flush(d)) < 0)
      return die("flush", r);
  } else if ((strcmp(cmd, "zero") == 0 || strcmp(cmd, "trim") == 0) && nargs >= 2) {
    uint64_t off = strtoull(args[0], NULL, 0), len = strtoull(args[1], NULL, 0);
    unsigned fl = 0;
    if (nargs > 2 && strcmp(args[2], "mt") == 0) fl |= DISK_F_MAY_TRIM;
    if (nargs > 2 && strcmp(args[2], "fast") == 0) fl |= DISK_F_FAST_ZERO;
    r = cmd[0] == 'z' ? disk_zero(d, len, off, fl) : disk_trim(d, len, off, fl);
    if (r < 0)
      return die(cmd, r);
    if ((r = disk_flush(d)) < 0)
      return die("flush", r);
  } else if (strcmp(cmd, "commit") == 0 && ovl) {
    if ((r = overlay_commit(d, NULL, NULL)) < 0)
      return die("commit", r);
  } else if (strcmp(cmd, "flush") == 0) {
    if ((r = disk_flush(d)) < 0)
      return die("flush", r);
  } else if (strcmp(cmd, "script") == 0 && nargs == 1) {
    FILE *f = fopen(args[0], "r");
    char line[256];
    if (!f) { perror(args[0]); return 1; }
    while (fgets(line, sizeof line, f)) {
      unsigned long long off = 0, len = 0, seed = 0;
      char op = line[0];
      sscanf(line + 1, "%llu %llu %llu", &off, &len, &seed);
      if (op == 'w') {
        unsigned char *b = malloc(len);
        fill(b, len, seed, off);
        r = disk_pwrite(d, b, len, off, 0);
        free(b);
      } else if (op == 'z') r = disk_zero(d, len, off, DISK_F_MAY_TRIM);
      else if (op == 't') r = disk_trim(d, len, off, 0);
      else if (op == 'f') r = disk_flush(d);
      else if (op == 'k') { fflush(stdout); kill(getpid(), SIGKILL); }
      else continue;
      if (r < 0) {
        fclose(f);
        return die("script", r);
      }
    }
    fclose(f);
  } else {
    fprintf(stderr, "disk-tool: unknown command %s\n", cmd);
    return 2;
  }
  return 0;
}

int
main(int argc, char **argv)
{
  struct disk_open_opts opts = { 0 };
  const char *ovl = NULL;
  unsigned ovl_flags = 0;
  bool base_rw = false;
  struct disk *d = NULL;
  int c, r;

  while ((c = getopt(argc, argv, "rBWO:N:F:")) != -1) {
    switch (c) {
    case 'F': opts.format = optarg; break;
    case 'r': opts.readonly = true; break;
    case 'B': opts.allow_bad_checksum = true; break;
    case 'O': ovl = optarg; ovl_flags = OVERLAY_OPEN_EXISTING; break;
    case 'N': ovl = optarg; ovl_flags = OVERLAY_CREATE; break;
    case 'W': base_rw = true; break;
    default: return 2;
    }
  }
  if (argc - optind < 2) {
    fprintf(stderr, "usage: disk-tool [-r] [-B] [-O|-N overlay] IMAGE CMD ...\n");
    return 2;
  }
  const char *img = argv[optind], *cmd = argv[optind + 1];
  char **args = argv + optind + 2;
  int nargs = argc - optind - 2;

  if (ovl && !base_rw)
    opts.readonly = true;
  r = disk_open(img, &opts, &d);
  if (r < 0)
    return die("open", r);
  if (ovl) {
    struct disk *o;
    r = overlay_open(d, ovl, ovl_flags, &o);
    if (r < 0)
      return die("overlay", r);
    d = o;
  }

  r = run_command(d, ovl, cmd, args, nargs);
  disk_close(d);
  return r;
}

