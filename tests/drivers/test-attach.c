/* SPDX-License-Identifier: GPL-2.0-or-later */
/* test-attach - drive libdism's attach layer from test scripts.
 *
 *   test-attach table IMAGE            partition table + choice, no device
 *   test-attach attach [--method auto|nbd|loop] [--socket S] [--fuse-file F]
 *                      [--id ID] [--ro] [--conns N] [--dead-timeout S]
 *                                      attach; prints the registry text
 *   test-attach detach|alive|autoclear STATEFILE
 *                                      act on a saved registry text
 *   test-attach selftest               format/parse_kv round trips
 *
 * Errors go to stderr as "error: <libdism's message>", exit 2. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach.h"
#include "dism-error.h"
#include "partition.h"

static int
fail(const char *what)
{
  fprintf(stderr, "error: %s%s%s\n", what, what[0] ? ": " : "", dism_last_error());
  return 2;
}

static int
file_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
  int fd = *(int *) ctx;
  ssize_t n = pread(fd, buf, len, (off_t) off);

  if (n < 0)
    return -errno;
  return (size_t) n == len ? 0 : -EIO;
}

static int
cmd_table(const char *image)
{
  struct dism_part_table *t = malloc(sizeof *t);
  struct dism_part_choice c;
  struct dism_disk_io io;
  struct stat st;
  char list[1024];
  int fd, r, rc = 2;

  fd = open(image, O_RDONLY);
  if (!t || fd < 0 || fstat(fd, &st) < 0) {
    perror(image);
    goto out;
  }
  io = (struct dism_disk_io) { .pread = file_pread, .ctx = &fd,
                               .size = (uint64_t) st.st_size, .name = image };
  r = dism_part_read_table(&io, 0, t);
  if (r < 0) {
    rc = fail("");
    goto out;
  }
  r = dism_part_choose(&io, t, &c);
  dism_part_list(t, list, sizeof list);
  printf("table=%s\nsector_size=%u\ncount=%u\nbackup=%d\nlist=%s\n", t->kind,
         t->sector_size, t->count, t->gpt_backup, list);
  for (unsigned i = 0; i < t->count; i++)
    printf("part=%u offset=%" PRIu64 " size=%" PRIu64 " type=%s ntfs=%d windows=%d\n",
           t->part[i].number, t->part[i].offset, t->part[i].size,
           t->part[i].type_name, t->part[i].ntfs, t->part[i].windows);
  if (r < 0) {
    rc = fail("");
    goto out;
  }
  printf("partition=%d\npart_offset=%" PRIu64 "\npart_size=%" PRIu64 "\nreason=%s\n",
         c.number, c.offset, c.size, c.reason);
  rc = 0;
out:
  if (fd >= 0)
    close(fd);
  free(t);
  return rc;
}

static int
load_state(const char *path, struct dism_attach *a)
{
  char line[512];
  FILE *f = fopen(path, "r");

  memset(a, 0, sizeof *a);
  a->nbd_index = -1;
  if (!f) {
    perror(path);
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char *eq = strchr(line, '=');
    line[strcspn(line, "\n")] = 0;
    if (!eq)
      continue;
    *eq = 0;
    if (dism_attach_parse_kv(a, line, eq + 1) < 0) {
      fprintf(stderr, "error: bad registry line %s=%s\n", line, eq + 1);
      fclose(f);
      return -1;
    }
  }
  fclose(f);
  return 0;
}

static int
cmd_attach(int argc, char **argv)
{
  struct dism_attach_request req = { .backend_id = "dism:test" };
  struct dism_attach a;
  char buf[2048];
  int i;

  for (i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--ro")) { req.readonly = true; continue; }
    if (!v) { fprintf(stderr, "error: %s needs a value\n", o); return 2; }
    i++;
    if (!strcmp(o, "--method"))
      req.method = !strcmp(v, "nbd") ? DISM_ATTACH_NBD : !strcmp(v, "loop") ? DISM_ATTACH_LOOP
                   : DISM_ATTACH_AUTO;
    else if (!strcmp(o, "--socket")) req.nbd_socket = v;
    else if (!strcmp(o, "--fuse-file")) req.fuse_file = v;
    else if (!strcmp(o, "--id")) req.backend_id = v;
    else if (!strcmp(o, "--conns")) req.connections = (unsigned) atoi(v);
    else if (!strcmp(o, "--dead-timeout")) req.dead_conn_timeout = (unsigned) atoi(v);
    else { fprintf(stderr, "error: unknown option %s\n", o); return 2; }
  }
  if (dism_attach(&req, &a) < 0)
    return fail("dism_attach");
  if (dism_attach_format(&a, buf, sizeof buf) < 0)
    return fail("dism_attach_format");
  fputs(buf, stdout);
  return 0;
}

static int
cmd_state(const char *cmd, const char *path)
{
  struct dism_attach a;

  if (load_state(path, &a) < 0)
    return 2;
  if (!strcmp(cmd, "alive"))
    return dism_attach_alive(&a) ? 0 : 1;
  if (!strcmp(cmd, "detach"))
    return dism_detach(&a) < 0 ? fail("dism_detach") : 0;
  if (!strcmp(cmd, "autoclear"))
    return dism_attach_autoclear(&a) < 0 ? fail("dism_attach_autoclear") : 0;
  fprintf(stderr, "error: unknown command %s\n", cmd);
  return 2;
}

#define CHECK(cond) do { if (!(cond)) { printf("not ok - %s (line %d)\n", #cond, __LINE__); bad++; } \
                         else printf("ok - %s\n", #cond); } while (0)

static int
cmd_selftest(void)
{
  struct dism_attach a, b;
  char buf[2048], small[16];
  int bad = 0, n;

  memset(&a, 0, sizeof a);
  a.method = DISM_ATTACH_NBD;
  strcpy(a.disk_dev, "/dev/nbd3");
  strcpy(a.fs_dev, "/dev/nbd3p2");
  a.nbd_index = 3;
  a.partition = 2;
  a.part_offset = UINT64_C(1) << 40;
  a.part_size = 12345;
  strcpy(a.part_table, "gpt");
  strcpy(a.reason, "partition 2 of 3 (gpt, NTFS, holds \\Windows)");
  strcpy(a.backend_id, "dism:0123");
  a.sector_size = 4096;
  n = dism_attach_format(&a, buf, sizeof buf);
  CHECK(n > 0 && (size_t) n == strlen(buf));
  CHECK(dism_attach_format(&a, small, sizeof small) == -ENOSPC);
  memset(&b, 0, sizeof b);
  b.nbd_index = -1;
  for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(l, '=');
    *eq = 0;
    CHECK(dism_attach_parse_kv(&b, l, eq + 1) == 0);
  }
  CHECK(memcmp(&a, &b, sizeof a) == 0);
  CHECK(dism_attach_parse_kv(&b, "future_key", "x") == 1);
  CHECK(dism_attach_parse_kv(&b, "method", "floppy") == -EINVAL);
  CHECK(dism_attach_parse_kv(&b, "nbd_index", "12x") == -EINVAL);
  CHECK(dism_attach_parse_kv(&b, "part_offset", "-1") == -EINVAL);
  CHECK(dism_attach_parse_kv(&b, "part_offset", "99999999999999999999999") == -EINVAL);
  CHECK(dism_attach_parse_kv(&b, "part_table", "much-too-long") == -EINVAL);
  CHECK(b.part_offset == a.part_offset && !strcmp(b.part_table, "gpt"));
  CHECK(!dism_attach_alive(&b));     /* no such nbd device here */
  return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
  if (argc >= 3 && !strcmp(argv[1], "table"))
    return cmd_table(argv[2]);
  if (argc >= 2 && !strcmp(argv[1], "attach"))
    return cmd_attach(argc - 2, argv + 2);
  if (argc == 3 && (!strcmp(argv[1], "detach") || !strcmp(argv[1], "alive") ||
                    !strcmp(argv[1], "autoclear")))
    return cmd_state(argv[1], argv[2]);
  if (argc == 2 && !strcmp(argv[1], "selftest"))
    return cmd_selftest();
  fprintf(stderr, "usage: test-attach table IMAGE | attach [options] | "
                  "detach|alive|autoclear STATEFILE | selftest\n");
  return 2;
}
