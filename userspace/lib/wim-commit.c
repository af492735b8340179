/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wim-commit.c - commit a mounted WIM image in proportion to the change.
 * See wim-commit.h and docs/dism-api.md, section "WIM", "Incremental
 * commit".
 *
 * 1. The base volume (as built) and the current one are opened read-only
 *    with libntfs-3g; their $MFTs are compared record by record.
 * 2. Each record that differs is classified: deleted, new, renamed (a file
 *    whose names alone changed), changed (a file: replaced whole), or
 *    "redo" (a directory whose own metadata or name changed: wimlib's ADD
 *    onto an existing directory keeps the old directory's metadata, so the
 *    old one is renamed aside, the new one added, its unchanged children
 *    renamed back in and the emptied old one deleted).
 * 3. New, changed and redo entries are copied with all their NTFS metadata
 *    into a small temporary NTFS volume at their paths; the copy is checked
 *    against its source.
 * 4. One wimlib_update_image() (atomic in memory): base-path operations
 *    deepest first (DELETE, RENAME aside), the ADD of the temporary volume
 *    at the root, the renames into place shallowest first, the emptied
 *    directories deleted; then wimlib_overwrite() as dism_wim_capture().
 * Anything not expressible exactly falls back to dism_wim_capture(). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wimlib.h>

/* libntfs-3g's BOOL (an enum) and DismApi.h's (an int) cannot both be
 * BOOL in one file: libntfs-3g's is renamed here. */
#define BOOL ntfs_BOOL
#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/device_io.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/object_id.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/security.h>
#include <ntfs-3g/volume.h>
#undef BOOL

#include "dism-internal.h"
#include "spawn.h"
#include "utf16.h"
#include "wim-commit.h"

#define MIB (1024ULL * 1024)
#define COPY_CHUNK (1u << 20)
#define MAX_DEPTH 512

/* ---- counting reads of the current volume -------------------------------------- */
/* libntfs-3g's own Unix device operations, with the reads counted: the
 * stats say how much of the current volume a commit read.  libntfs-3g reads
 * in the calling thread, so the counter is per thread. */
static __thread uint64_t *read_counter;
static struct ntfs_device_operations counting_ops;

static s64
counting_read(struct ntfs_device *dev, void *buf, s64 count)
{
  s64 n = ntfs_device_unix_io_ops.read(dev, buf, count);
  if (n > 0 && read_counter)
    *read_counter += (uint64_t) n;
  return n;
}

static s64
counting_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset)
{
  s64 n = ntfs_device_unix_io_ops.pread(dev, buf, count, offset);
  if (n > 0 && read_counter)
    *read_counter += (uint64_t) n;
  return n;
}

static void
counting_ops_init(void)
{
  counting_ops = ntfs_device_unix_io_ops;
  counting_ops.read = counting_read;
  counting_ops.pread = counting_pread;
}

static ntfs_volume *
mount_counting(const char *path)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, counting_ops_init);
  struct ntfs_device *dev = ntfs_device_alloc(path, 0, &counting_ops, NULL);
  if (!dev)
    return NULL;
  ntfs_volume *vol = ntfs_device_mount(dev, NTFS_MNT_RDONLY);
  if (!vol)
    ntfs_device_free(dev);
  return vol;
}

/* ---- small containers ---------------------------------------------------------- */
struct buf {
  unsigned char *p;
  size_t n, cap;
};

static int
buf_add(struct buf *b, const void *data, size_t n)
{
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n)
      cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p)
      return -ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->n, data, n);
  b->n += n;
  return 0;
}

static int
buf_u64(struct buf *b, uint64_t v)
{
  return buf_add(b, &v, sizeof v);
}

/* One name of an inode: the directory it is in and the name (UTF-8). */
struct link {
  uint64_t parent;
  char *name;
  bool dos;              /* a DOS-only (8.3) name, the short name of a Win32 one */
  bool win32;            /* a Win32-only name: the one a short name in its directory goes with */
};

struct links {
  struct link *v;
  size_t n;
};

static void
links_free(struct links *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i].name);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* ---- the commit's state ------------------------------------------------------------ */
enum kind {
  K_NONE = 0,
  K_DELETED,     /* in base only: DELETE its paths */
  K_NEW,         /* in current only: ADD */
  K_RENAMED,     /* a file, only its (single) name changed: RENAME */
  K_CHANGED,     /* a file: DELETE its base paths, ADD it */
  K_REDO,        /* a directory: aside, ADD, children back, DELETE aside */
  K_COPY,        /* an unchanged file that must be copied (a short name RENAME would drop) */
};

struct entry {
  uint64_t mft;
  enum kind kind;
  bool dir;
  char **base_paths, **cur_paths;   /* non-DOS names, full WIM paths */
  size_t nbase, ncur;
  char *aside;                      /* K_RENAMED / K_REDO: its name while aside */
  uint64_t tmp_mft;                 /* its copy in the temporary volume */
  uint64_t data_size;               /* all its streams, for sizing the temp volume */
};

struct cmd {
  int op;                           /* WIMLIB_UPDATE_OP_* */
  char *src, *dst;                  /* owned */
  bool recursive;
  int phase, depth;
};

struct side {
  ntfs_volume *vol;
  uint64_t nrec;
  char **dirpath;                   /* memo: a directory's path, by record number */
};

struct commit {
  const char *wim, *current;
  struct side base, cur;
  struct entry *e;
  size_t ne, cape;
  int32_t *by_mft;                  /* record number -> index in e, or -1 */
  uint8_t *inuse_b, *inuse_c;       /* base records in use, per side (from the scan) */
  uint64_t nby;
  struct cmd *c;
  size_t nc, capc;
  uint64_t volume_read;             /* bytes read from the current volume */
  uint64_t data_read;
  char reason[256];                 /* why a full capture, when one is needed */
  char aside_prefix[64];
  unsigned aside_next;
  dism_wim_progress_fn progress;
  void *opaque;
  bool cancelled;
};

/* Not expressible (or not understood): note why; the caller falls back. */
static int __attribute__((format(printf, 2, 3)))
fallback(struct commit *cm, const char *fmt, ...)
{
  if (!cm->reason[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cm->reason, sizeof cm->reason, fmt, ap);
    va_end(ap);
  }
  return -EAGAIN;
}

static bool
report(struct commit *cm, unsigned pct)
{
  if (cm->progress && cm->progress(pct, cm->opaque))
    cm->cancelled = true;
  return cm->cancelled;
}

/* ---- names and paths ------------------------------------------------------------- */
static int
get_links(ntfs_inode *ni, struct links *out)
{
  out->v = NULL;
  out->n = 0;
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
  if (!ctx)
    return -ENOMEM;
  int rc = 0;
  size_t cap = 0;
  while (ntfs_attr_lookup(AT_FILE_NAME, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
    ATTR_RECORD *a = ctx->attr;
    if (a->non_resident) {
      rc = -EUCLEAN;
      break;
    }
    const FILE_NAME_ATTR *fn = (const FILE_NAME_ATTR *) ((const u8 *) a +
                                                        le16_to_cpu(a->value_offset));
    char name[1024];
    if (dism_utf16le_to_utf8(fn->file_name, fn->file_name_length, name, sizeof name) < 0) {
      rc = -EILSEQ;
      break;
    }
    if (out->n == cap) {
      cap = cap ? cap * 2 : 4;
      struct link *v = realloc(out->v, cap * sizeof *v);
      if (!v) {
        rc = -ENOMEM;
        break;
      }
      out->v = v;
    }
    struct link *l = &out->v[out->n];
    l->parent = MREF_LE(fn->parent_directory);
    l->dos = fn->file_name_type == FILE_NAME_DOS;
    l->win32 = fn->file_name_type == FILE_NAME_WIN32;
    l->name = strdup(name);
    if (!l->name) {
      rc = -ENOMEM;
      break;
    }
    out->n++;
  }
  ntfs_attr_put_search_ctx(ctx);
  if (rc < 0)
    links_free(out);
  return rc;
}

/* A record that belongs to NTFS itself (not captured into a WIM). */
static bool
is_system(uint64_t mft)
{
  return mft < FILE_first_user && mft != FILE_root;
}

/* The WIM path of directory `mft` ("" for the root); -ENOTDIR for one
 * under a system directory ($Extend). */
static int
dir_path(struct side *s, uint64_t mft, unsigned depth, const char **out)
{
  if (mft == FILE_root) {
    *out = "";
    return 0;
  }
  if (is_system(mft))
    return -ENOTDIR;
  if (mft >= s->nrec || depth > MAX_DEPTH)
    return -EUCLEAN;
  if (s->dirpath[mft]) {
    *out = s->dirpath[mft];
    return 0;
  }
  ntfs_inode *ni = ntfs_inode_open(s->vol, mft);
  if (!ni)
    return -errno ? -errno : -EIO;
  struct links l;
  int rc = get_links(ni, &l);
  ntfs_inode_close(ni);
  if (rc < 0)
    return rc;
  rc = -EUCLEAN;
  for (size_t i = 0; i < l.n; i++) {
    if (l.v[i].dos)
      continue;
    const char *parent;
    rc = dir_path(s, l.v[i].parent, depth + 1, &parent);
    if (rc < 0)
      break;
    size_t n = strlen(parent) + strlen(l.v[i].name) + 2;
    char *p = malloc(n);
    if (!p) {
      rc = -ENOMEM;
      break;
    }
    snprintf(p, n, "%s/%s", parent, l.v[i].name);
    s->dirpath[mft] = p;
    *out = p;
    rc = 0;
    break;
  }
  links_free(&l);
  return rc;
}

static int
path_depth(const char *p)
{
  int d = 0;
  for (; *p; p++)
    d += *p == '/';
  return d;
}

/* The long name short name l->v[dos] goes with: the Win32 name in its
 * directory (any long name there if none is marked Win32), as an index in
 * l->v; SIZE_MAX if none. */
static size_t
paired_name(const struct links *l, size_t dos)
{
  size_t any = SIZE_MAX;
  for (size_t j = 0; j < l->n; j++) {
    if (l->v[j].dos || l->v[j].parent != l->v[dos].parent)
      continue;
    if (l->v[j].win32)
      return j;
    if (any == SIZE_MAX)
      any = j;
  }
  return any;
}

/* The full paths of every non-DOS name of an inode.  -ENOTDIR: a system file. */
static int
inode_paths(struct commit *cm, struct side *s, const struct links *l, char ***out, size_t *n)
{
  *out = NULL;
  *n = 0;
  char **v = calloc(l->n + 1, sizeof *v);
  if (!v)
    return -ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].dos)
      continue;
    const char *name = l->v[i].name;
    /* wimlib takes both separators in a path: a name holding one cannot
     * be named in an update command. */
    if (!*name || strchr(name, '/') || strchr(name, '\\')) {
      rc = fallback(cm, "the name \"%s\" cannot be named in a wimlib update command", name);
      break;
    }
    const char *parent;
    rc = dir_path(s, l->v[i].parent, 0, &parent);
    if (rc < 0)
      break;
    size_t len = strlen(parent) + strlen(name) + 2;
    v[*n] = malloc(len);
    if (!v[*n]) {
      rc = -ENOMEM;
      break;
    }
    snprintf(v[*n], len, "%s/%s", parent, name);
    (*n)++;
  }
  if (rc < 0) {
    for (size_t i = 0; i < *n; i++)
      free(v[i]);
    free(v);
    *n = 0;
    return rc;
  }
  /* The name a short name goes with first: the copy is made there and
   * gets its short name at once (libntfs-3g refuses a short name to a file
   * that already has several links, EMLINK). */
  for (size_t i = 0; i < l->n; i++) {
    if (!l->v[i].dos)
      continue;
    size_t j = paired_name(l, i), k = 0;
    if (j == SIZE_MAX)
      break;
    for (size_t m = 0; m < j; m++)  /* its index among the long names */
      k += !l->v[m].dos;
    char *t = v[0];
    v[0] = v[k];
    v[k] = t;
    break;
  }
  *out = v;
  return 0;
}

static bool
has_dos_name(const struct links *l)
{
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].dos)
      return true;
  return false;
}

static size_t
count_links(const struct links *l)
{
  size_t n = 0;
  for (size_t i = 0; i < l->n; i++)
    n += !l->v[i].dos;
  return n;
}

static int
cmp_link(const void *a, const void *b)
{
  const struct link *x = a, *y = b;
  if (x->parent != y->parent)
    return x->parent < y->parent ? -1 : 1;
  if (x->dos != y->dos)
    return x->dos ? 1 : -1;
  return strcmp(x->name, y->name);
}

static bool
links_equal(struct links *a, struct links *b)
{
  if (a->n != b->n)
    return false;
  if (!a->n)
    return true;
  qsort(a->v, a->n, sizeof *a->v, cmp_link);
  qsort(b->v, b->n, sizeof *b->v, cmp_link);
  for (size_t i = 0; i < a->n; i++)
    if (cmp_link(&a->v[i], &b->v[i]))
      return false;
  return true;
}

/* ---- what a WIM keeps of an inode ------------------------------------------------- */
/* A byte string of everything the WIM keeps of an inode apart from its
 * names and its data's bytes: attributes, creation and last-write times
 * (not the change time, which a WIM does not hold, nor the access time: the
 * mount is noatime), the security descriptor, and every attribute except
 * the names, the directory index and the security descriptor (which the
 * descriptor's bytes stand for).  strict: also the data attributes'
 * layout (runlists, resident values, flags), for comparing two states of
 * one volume; otherwise stream names and sizes only (a copy on another
 * volume lays its data out differently) plus the names' count and short
 * names. */
static int
inode_sig(ntfs_volume *vol, ntfs_inode *ni, bool strict, const struct links *l, struct buf *b)
{
  int rc = 0;
  le32 flags = ni->flags;
  /* The index bit is the directory's on-disk shape, not an attribute a WIM holds. */
  flags &= ~FILE_ATTR_I30_INDEX_PRESENT;
  if ((rc = buf_add(b, &flags, sizeof flags)) < 0 ||
      (rc = buf_add(b, &ni->creation_time, sizeof ni->creation_time)) < 0 ||
      (rc = buf_add(b, &ni->last_data_change_time, sizeof ni->last_data_change_time)) < 0)
    return rc;
  struct SECURITY_CONTEXT scx;
  memset(&scx, 0, sizeof scx);
  scx.vol = vol;
  char sd[65536];
  int sdlen = ntfs_get_ntfs_acl(&scx, ni, sd, sizeof sd);
  if (sdlen < 0 || (size_t) sdlen > sizeof sd)
    return -EUCLEAN;
  if ((rc = buf_u64(b, (uint64_t) sdlen)) < 0 || (rc = buf_add(b, sd, (size_t) sdlen)) < 0)
    return rc;
  bool dir = ni->mrec->flags & MFT_RECORD_IS_DIRECTORY;
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
  if (!ctx)
    return -ENOMEM;
  while (rc == 0 && ntfs_attr_lookup(AT_UNUSED, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
    ATTR_RECORD *a = ctx->attr;
    ATTR_TYPES type = a->type;
    if (type == AT_END)
      break;
    if (type == AT_STANDARD_INFORMATION || type == AT_FILE_NAME ||
        type == AT_ATTRIBUTE_LIST || type == AT_SECURITY_DESCRIPTOR)
      continue;
    if (dir && (type == AT_INDEX_ROOT || type == AT_INDEX_ALLOCATION || type == AT_BITMAP))
      continue;
    uint32_t t = le32_to_cpu(type);
    const u8 *name = (const u8 *) a + le16_to_cpu(a->name_offset);
    if ((rc = buf_add(b, &t, sizeof t)) < 0 || (rc = buf_add(b, &a->name_length, 1)) < 0 ||
        (rc = buf_add(b, name, a->name_length * 2u)) < 0)
      break;
    if (!strict && type == AT_DATA) {
      if (a->non_resident && a->lowest_vcn)
        continue;
      uint64_t size = a->non_resident ? (uint64_t) sle64_to_cpu(a->data_size)
                                      : le32_to_cpu(a->value_length);
      rc = buf_u64(b, size);
      continue;
    }
    if ((rc = buf_add(b, &a->non_resident, 1)) < 0 ||
        (strict && (rc = buf_add(b, &a->flags, sizeof a->flags)) < 0))
      break;
    if (!a->non_resident) {
      uint32_t len = le32_to_cpu(a->value_length);
      if ((rc = buf_add(b, &len, sizeof len)) < 0 ||
          (rc = buf_add(b, (const u8 *) a + le16_to_cpu(a->value_offset), len)) < 0)
        break;
    } else {
      if (a->lowest_vcn == 0 && (rc = buf_add(b, &a->data_size, sizeof a->data_size)) < 0)
        break;
      if (strict) {
        uint32_t off = le16_to_cpu(a->mapping_pairs_offset), len = le32_to_cpu(a->length);
        if (off > len) {
          rc = -EUCLEAN;
          break;
        }
        if ((rc = buf_add(b, &a->lowest_vcn, sizeof a->lowest_vcn)) < 0 ||
            (rc = buf_add(b, &a->initialized_size, sizeof a->initialized_size)) < 0 ||
            (rc = buf_add(b, (const u8 *) a + off, len - off)) < 0)
          break;
      }
    }
  }
  ntfs_attr_put_search_ctx(ctx);
  if (rc == 0 && !strict && l) {
    /* Names by count; short names by value (they stay in the WIM). */
    rc = buf_u64(b, count_links(l));
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
      if (!l->v[i].dos)
        continue;
      /* and the long name each goes with */
      size_t j = paired_name(l, i);
      if ((rc = buf_add(b, l->v[i].name, strlen(l->v[i].name) + 1)) == 0 && j != SIZE_MAX)
        rc = buf_add(b, l->v[j].name, strlen(l->v[j].name) + 1);
    }
  }
  return rc;
}

static bool
sig_equal(const struct buf *a, const struct buf *b)
{
  return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/* An inode a copy cannot reproduce exactly: fall back. */
static int
check_copyable(struct commit *cm, ntfs_inode *ni, const char *path)
{
  if (ni->flags & FILE_ATTR_ENCRYPTED)
    return fallback(cm, "%s is encrypted (EFS): its raw data is not copied", path);
  if (ntfs_attr_exist(ni, AT_EA, AT_UNNAMED, 0) ||
      ntfs_attr_exist(ni, AT_EA_INFORMATION, AT_UNNAMED, 0))
    return fallback(cm, "%s has extended attributes (EAs)", path);
  if (ntfs_attr_exist(ni, AT_LOGGED_UTILITY_STREAM, NULL, 0))
    return fallback(cm, "%s has a logged utility stream", path);
  if ((ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) && ntfs_attr_exist(ni, AT_DATA, AT_UNNAMED, 0))
    return fallback(cm, "directory %s has an unnamed data stream", path);
  return 0;
}

/* ---- 1. the records that differ ----------------------------------------------------- */
static int
add_entry(struct commit *cm, uint64_t mft, struct entry **out)
{
  if (mft >= cm->nby)
    return -EUCLEAN;
  if (cm->by_mft[mft] >= 0) {
    *out = &cm->e[cm->by_mft[mft]];
    return 0;
  }
  if (cm->ne == cm->cape) {
    size_t cap = cm->cape ? cm->cape * 2 : 64;
    struct entry *e = realloc(cm->e, cap * sizeof *e);
    if (!e)
      return -ENOMEM;
    cm->e = e;
    cm->cape = cap;
  }
  struct entry *e = &cm->e[cm->ne];
  memset(e, 0, sizeof *e);
  e->mft = mft;
  cm->by_mft[mft] = (int32_t) cm->ne++;
  *out = e;
  return 0;
}

#define BIT_SET(map, n) ((map)[(n) / 8] |= (uint8_t) (1u << ((n) % 8)))
#define BIT_TEST(map, n) (((map)[(n) / 8] >> ((n) % 8)) & 1u)

/* A differing record of one side: its base record differs too; a base
 * record in use is noted (only those are opened later). */
static void
mark(uint8_t *changed, uint8_t *inuse, uint64_t nby, uint64_t rec_no, const u8 *rec)
{
  const MFT_RECORD *m = (const MFT_RECORD *) rec;
  if (memcmp(rec, "FILE", 4) != 0 || !(m->flags & MFT_RECORD_IN_USE))
    return;
  uint64_t base = MREF_LE(m->base_mft_record);
  if (!base)
    BIT_SET(inuse, rec_no);
  else if (changed && base < nby)
    BIT_SET(changed, base);
}

static int
scan_mft(struct commit *cm, uint8_t *changed)
{
  ntfs_volume *bv = cm->base.vol, *cv = cm->cur.vol;
  u32 rs = bv->mft_record_size;
  if (rs != cv->mft_record_size)
    return fallback(cm, "the two volumes' MFT record sizes differ");
  const uint64_t per = 256;
  u8 *ba = malloc(per * rs), *ca = malloc(per * rs);
  int rc = 0;
  if (!ba || !ca) {
    rc = -ENOMEM;
    goto out;
  }
  for (uint64_t r = 0; r < cm->nby; r += per) {
    uint64_t n = cm->nby - r < per ? cm->nby - r : per;
    uint64_t nb = r < cm->base.nrec ? (cm->base.nrec - r < n ? cm->base.nrec - r : n) : 0;
    uint64_t nc = r < cm->cur.nrec ? (cm->cur.nrec - r < n ? cm->cur.nrec - r : n) : 0;
    if (nb && ntfs_attr_pread(bv->mft_na, (s64) (r * rs), (s64) (nb * rs), ba) != (s64) (nb * rs)) {
      rc = fallback(cm, "the base volume's $MFT cannot be read");
      goto out;
    }
    if (nc && ntfs_attr_pread(cv->mft_na, (s64) (r * rs), (s64) (nc * rs), ca) != (s64) (nc * rs)) {
      rc = fallback(cm, "the current volume's $MFT cannot be read");
      goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
      uint64_t rec = r + i;
      bool inb = i < nb, inc = i < nc;
      bool same = inb && inc && memcmp(ba + i * rs, ca + i * rs, rs) == 0;
      if (!same)
        BIT_SET(changed, rec);
      if (inb)
        mark(same ? NULL : changed, cm->inuse_b, cm->nby, rec, ba + i * rs);
      if (inc)
        mark(same ? NULL : changed, cm->inuse_c, cm->nby, rec, ca + i * rs);
    }
  }
out:
  free(ba);
  free(ca);
  return rc;
}

static int
add_cmd(struct commit *cm, int op, const char *src, const char *dst, bool recursive, int phase,
        int depth)
{
  if (cm->nc == cm->capc) {
    size_t cap = cm->capc ? cm->capc * 2 : 64;
    struct cmd *c = realloc(cm->c, cap * sizeof *c);
    if (!c)
      return -ENOMEM;
    cm->c = c;
    cm->capc = cap;
  }
  struct cmd *c = &cm->c[cm->nc];
  memset(c, 0, sizeof *c);
  c->op = op;
  c->recursive = recursive;
  c->phase = phase;
  c->depth = depth;
  c->src = src ? strdup(src) : NULL;
  c->dst = dst ? strdup(dst) : NULL;
  if ((src && !c->src) || (dst && !c->dst)) {
    free(c->src);
    free(c->dst);
    return -ENOMEM;
  }
  cm->nc++;
  return 0;
}

/* Open record mft of a side: NULL when not in use or an extension record
 * (an extension's base record is marked on its own). */
static ntfs_inode *
open_rec(struct side *s, const uint8_t *inuse, uint64_t mft, bool *error)
{
  *error = false;
  if (mft >= s->nrec || !BIT_TEST(inuse, mft))
    return NULL;
  ntfs_inode *ni = ntfs_inode_open(s->vol, mft);
  if (!ni) {
    *error = errno != ENOENT;
    return NULL;
  }
  if (!(ni->mrec->flags & MFT_RECORD_IN_USE) || ni->mrec->base_mft_record) {
    ntfs_inode_close(ni);
    return NULL;
  }
  return ni;
}

/* A file under a system directory ($Extend and what is below it): not
 * part of the image (wimlib's capture skips them too). */
static bool
under_system(struct side *s, const struct links *l)
{
  for (size_t i = 0; i < l->n; i++) {
    const char *p;
    if (is_system(l->v[i].parent) || dir_path(s, l->v[i].parent, 0, &p) == -ENOTDIR)
      return true;
  }
  return false;
}

static int
classify_one(struct commit *cm, uint64_t mft)
{
  bool eb, ec;
  int rc = 0;
  struct links lb = { 0 }, lc = { 0 };
  struct buf sb = { 0 }, sc = { 0 };
  ntfs_inode *b = open_rec(&cm->base, cm->inuse_b, mft, &eb);
  ntfs_inode *c = open_rec(&cm->cur, cm->inuse_c, mft, &ec);
  if (eb || ec) {
    rc = fallback(cm, "MFT record %llu cannot be read: %s", (unsigned long long) mft,
                  strerror(errno));
    goto out;
  }
  if (b && (rc = get_links(b, &lb)) < 0)
    goto bad;
  if (c && (rc = get_links(c, &lc)) < 0)
    goto bad;
  if (b && under_system(&cm->base, &lb)) {
    ntfs_inode_close(b);
    b = NULL;
  }
  if (c && under_system(&cm->cur, &lc)) {
    ntfs_inode_close(c);
    c = NULL;
  }
  if (!b && !c)
    goto out;
  if (mft == FILE_root) {
    /* The root stays in place (wimlib merges onto it); its times are kept
     * as they were (a WIM root's times are those of the capture source's
     * top directory, which a change inside does not make more right). */
    if (!b || !c) {
      rc = fallback(cm, "the root directory's record is not in use");
      goto out;
    }
    if ((rc = inode_sig(cm->base.vol, b, true, NULL, &sb)) < 0 ||
        (rc = inode_sig(cm->cur.vol, c, true, NULL, &sc)) < 0)
      goto bad;
    size_t skip = 4 + 16; /* attributes are compared, the two times are not */
    if (sb.n != sc.n || memcmp(sb.p, sc.p, 4) || memcmp(sb.p + skip, sc.p + skip, sb.n - skip))
      rc = fallback(cm, "the root directory's own attributes, security descriptor or streams "
                    "changed");
    goto out;
  }
  bool seq_differs = b && c && b->mrec->sequence_number != c->mrec->sequence_number;
  struct entry *e;
  if (seq_differs) {
    /* The record was freed and used again: the old file's paths are
     * deleted here, the record is then a new file. */
    char **paths;
    size_t np;
    if ((rc = inode_paths(cm, &cm->base, &lb, &paths, &np)) < 0)
      goto bad;
    bool dir = b->mrec->flags & MFT_RECORD_IS_DIRECTORY;
    for (size_t i = 0; i < np; i++) {
      if (rc == 0)
        rc = add_cmd(cm, WIMLIB_UPDATE_OP_DELETE, paths[i], NULL, dir, 1, path_depth(paths[i]));
      free(paths[i]);
    }
    free(paths);
    if (rc < 0)
      goto bad;
    ntfs_inode_close(b);
    b = NULL;
    links_free(&lb);
  }
  if ((rc = add_entry(cm, mft, &e)) < 0)
    goto bad;
  if (b && (rc = inode_paths(cm, &cm->base, &lb, &e->base_paths, &e->nbase)) < 0)
    goto bad;
  if (c && (rc = inode_paths(cm, &cm->cur, &lc, &e->cur_paths, &e->ncur)) < 0)
    goto bad;
  if (!b) {
    e->kind = K_NEW;
    e->dir = c->mrec->flags & MFT_RECORD_IS_DIRECTORY;
  } else if (!c) {
    e->kind = K_DELETED;
    e->dir = b->mrec->flags & MFT_RECORD_IS_DIRECTORY;
  } else {
    e->dir = c->mrec->flags & MFT_RECORD_IS_DIRECTORY;
    if (e->dir != !!(b->mrec->flags & MFT_RECORD_IS_DIRECTORY)) {
      rc = fallback(cm, "MFT record %llu changed between file and directory",
                    (unsigned long long) mft);
      goto out;
    }
    if ((rc = inode_sig(cm->base.vol, b, true, NULL, &sb)) < 0 ||
        (rc = inode_sig(cm->cur.vol, c, true, NULL, &sc)) < 0)
      goto bad;
    bool meta_same = sig_equal(&sb, &sc);
    bool names_same = links_equal(&lb, &lc);
    if (e->dir)
      e->kind = meta_same && names_same ? K_NONE : K_REDO;
    else if (meta_same && !names_same && count_links(&lb) == 1 && count_links(&lc) == 1 &&
             !has_dos_name(&lc))
      e->kind = K_RENAMED;
    else
      /* Also when nothing the WIM keeps seems to differ: the record
       * changed, perhaps data written and its time set back; re-reading
       * the file is the safe side. */
      e->kind = K_CHANGED;
  }
  if (c && e->kind != K_DELETED && e->kind != K_NONE)
    rc = check_copyable(cm, c, e->ncur ? e->cur_paths[0] : "?");
  goto out;
bad:
  if (rc != -EAGAIN && rc != -ENOMEM)
    rc = fallback(cm, "MFT record %llu cannot be compared: %s", (unsigned long long) mft,
                  strerror(-rc));
out:
  links_free(&lb);
  links_free(&lc);
  free(sb.p);
  free(sc.p);
  if (b)
    ntfs_inode_close(b);
  if (c)
    ntfs_inode_close(c);
  return rc;
}

/* ---- 2. the plan ------------------------------------------------------------------ */
static bool
in_temp(enum kind k)
{
  return k == K_NEW || k == K_CHANGED || k == K_REDO || k == K_COPY;
}

static enum kind
kind_of(struct commit *cm, uint64_t mft)
{
  return mft < cm->nby && cm->by_mft[mft] >= 0 ? cm->e[cm->by_mft[mft]].kind : K_NONE;
}

static int
make_aside(struct commit *cm, struct entry *e)
{
  char name[128];
  snprintf(name, sizeof name, "/%s-%u", cm->aside_prefix, cm->aside_next++);
  /* wimlib's RENAME onto an existing file replaces it: the name must be
   * free in the image (the base volume's root) and in the current one. */
  struct side *sides[2] = { &cm->base, &cm->cur };
  for (int i = 0; i < 2; i++) {
    ntfs_inode *root = ntfs_inode_open(sides[i]->vol, FILE_root);
    if (!root)
      return fallback(cm, "the root directory cannot be opened");
    u64 m = ntfs_inode_lookup_by_mbsname(root, name + 1);
    ntfs_inode_close(root);
    if (m != (u64) -1)
      return fallback(cm, "the image holds %s, a name the commit needs for itself", name);
  }
  e->aside = strdup(name);
  return e->aside ? 0 : -ENOMEM;
}

/* Every directory between a directory that is recreated (new or redo) and
 * a copied entry must be recreated too: after the ADD it is not where the
 * placeholder in the temporary volume would merge into. */
static int
promote_chain(struct commit *cm, struct entry *e)
{
  uint64_t chain[MAX_DEPTH];
  int n = 0;
  ntfs_inode *ni = ntfs_inode_open(cm->cur.vol, e->mft);
  if (!ni)
    return fallback(cm, "record %llu cannot be opened", (unsigned long long) e->mft);
  struct links l;
  int rc = get_links(ni, &l);
  ntfs_inode_close(ni);
  if (rc < 0)
    return fallback(cm, "record %llu: its names cannot be read", (unsigned long long) e->mft);
  for (size_t i = 0; rc == 0 && i < l.n; i++) {
    if (l.v[i].dos)
      continue;
    n = 0;
    uint64_t d = l.v[i].parent;
    while (d != FILE_root && n < MAX_DEPTH) {
      chain[n++] = d;
      ntfs_inode *dn = ntfs_inode_open(cm->cur.vol, d);
      struct links dl = { 0 };
      if (!dn || get_links(dn, &dl) < 0 || dl.n == 0) {
        if (dn)
          ntfs_inode_close(dn);
        rc = fallback(cm, "directory record %llu cannot be read", (unsigned long long) d);
        break;
      }
      ntfs_inode_close(dn);
      d = dl.v[0].parent;
      for (size_t k = 0; k < dl.n; k++)
        if (!dl.v[k].dos)
          d = dl.v[k].parent;
      links_free(&dl);
    }
    if (rc < 0)
      break;
    bool recreated = false;
    for (int k = n - 1; k >= 0; k--) {
      enum kind kd = kind_of(cm, chain[k]);
      if (kd == K_NEW || kd == K_REDO) {
        recreated = true;
      } else if (recreated) {
        struct entry *p;
        if ((rc = add_entry(cm, chain[k], &p)) < 0)
          break;
        e = NULL; /* cm->e may have moved */
        p->kind = K_REDO;
        p->dir = true;
        if (!p->nbase) {
          const char *bp, *cp;
          if (dir_path(&cm->base, chain[k], 0, &bp) < 0 || dir_path(&cm->cur, chain[k], 0, &cp) < 0) {
            rc = fallback(cm, "directory record %llu has no path", (unsigned long long) chain[k]);
            break;
          }
          p->base_paths = calloc(1, sizeof(char *));
          p->cur_paths = calloc(1, sizeof(char *));
          if (!p->base_paths || !p->cur_paths || !(p->base_paths[0] = strdup(bp)) ||
              !(p->cur_paths[0] = strdup(cp))) {
            rc = -ENOMEM;
            break;
          }
          p->nbase = p->ncur = 1;
        }
      }
    }
  }
  links_free(&l);
  return rc;
}

struct readdir_ctx {
  struct commit *cm;
  struct entry *dir;
  int rc;
};

static int
redo_child(void *opaque, const ntfschar *name, const int name_len, const int name_type,
           const s64 pos, const MFT_REF mref, const unsigned dt_type)
{
  (void) pos;
  (void) dt_type;
  struct readdir_ctx *rd = opaque;
  struct commit *cm = rd->cm;
  if (name_type == FILE_NAME_DOS)
    return 0;
  uint64_t child = MREF(mref);
  char u8name[1024];
  if (dism_utf16le_to_utf8(name, (size_t) name_len, u8name, sizeof u8name) < 0) {
    rd->rc = fallback(cm, "a name in %s is not valid UTF-16", rd->dir->cur_paths[0]);
    return -1;
  }
  if (!strcmp(u8name, ".") || !strcmp(u8name, ".."))
    return 0;
  enum kind k = kind_of(cm, child);
  if (in_temp(k) || k == K_RENAMED)
    return 0;
  /* Unchanged, so it was in this directory under this name before: back
   * from the aside directory, unless RENAME would drop its short name. */
  ntfs_inode *ni = ntfs_inode_open(cm->cur.vol, child);
  struct links l = { 0 };
  if (!ni || get_links(ni, &l) < 0) {
    if (ni)
      ntfs_inode_close(ni);
    rd->rc = fallback(cm, "%s/%s cannot be read", rd->dir->cur_paths[0], u8name);
    return -1;
  }
  bool dos = has_dos_name(&l), dir = ni->mrec->flags & MFT_RECORD_IS_DIRECTORY;
  size_t nl = count_links(&l);
  int rc = 0;
  if (dos) {
    if (dir || nl != 1) {
      rd->rc = fallback(cm, "%s/%s has a short (DOS) name a move back would drop",
                        rd->dir->cur_paths[0], u8name);
      rc = -1;
    } else {
      /* Copied instead (its data read): the copy keeps the short name. */
      struct entry *e;
      size_t di = (size_t) (rd->dir - cm->e);
      if ((rd->rc = add_entry(cm, child, &e)) < 0 ||
          (rd->rc = check_copyable(cm, ni, u8name)) < 0 ||
          (rd->rc = inode_paths(cm, &cm->cur, &l, &e->cur_paths, &e->ncur)) < 0)
        rc = -1;
      else
        e->kind = K_COPY;
      rd->dir = &cm->e[di];
    }
  } else {
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", rd->dir->aside, u8name);
    snprintf(dst, sizeof dst, "%s/%s", rd->dir->cur_paths[0], u8name);
    if ((rd->rc = add_cmd(cm, WIMLIB_UPDATE_OP_RENAME, src, dst, false, 3, path_depth(dst))) < 0)
      rc = -1;
  }
  links_free(&l);
  ntfs_inode_close(ni);
  return rc;
}

static int
cmp_cmd(const void *a, const void *b)
{
  const struct cmd *x = a, *y = b;
  if (x->phase != y->phase)
    return x->phase - y->phase;
  if (x->phase == 1) /* base paths: deepest first */
    return y->depth - x->depth;
  return x->depth - y->depth;
}

static int
plan(struct commit *cm, bool *have_temp)
{
  int rc = 0;
  /* Promote first: it adds entries. */
  for (size_t i = 0; i < cm->ne; i++)
    if (in_temp(cm->e[i].kind) && (rc = promote_chain(cm, &cm->e[i])) < 0)
      return rc;
  for (size_t i = 0; i < cm->ne; i++) {
    struct entry *e = &cm->e[i];
    if ((e->kind == K_RENAMED || e->kind == K_REDO) && (rc = make_aside(cm, e)) < 0)
      return rc;
  }
  for (size_t i = 0; i < cm->ne; i++) {
    /* K_COPY entries are added while walking (they go with their aside directory). */
    if (cm->e[i].kind != K_REDO)
      continue;
    struct readdir_ctx rd = { cm, &cm->e[i], 0 };
    ntfs_inode *dn = ntfs_inode_open(cm->cur.vol, cm->e[i].mft);
    if (!dn)
      return fallback(cm, "directory %s cannot be opened", cm->e[i].cur_paths[0]);
    s64 pos = 0;
    int r = ntfs_readdir(dn, &pos, &rd, redo_child);
    ntfs_inode_close(dn);
    if (rd.rc < 0)
      return rd.rc;
    if (r < 0)
      return fallback(cm, "directory %s cannot be listed", cm->e[i].cur_paths[0]);
  }
  *have_temp = false;
  for (size_t i = 0; i < cm->ne; i++) {
    struct entry *e = &cm->e[i];
    switch (e->kind) {
    case K_DELETED:
    case K_CHANGED:
      for (size_t k = 0; rc == 0 && k < e->nbase; k++)
        rc = add_cmd(cm, WIMLIB_UPDATE_OP_DELETE, e->base_paths[k], NULL, e->dir, 1,
                     path_depth(e->base_paths[k]));
      break;
    case K_RENAMED:
      if (e->nbase != 1 || e->ncur != 1)
        return fallback(cm, "a renamed file has %zu names", e->ncur);
      if ((rc = add_cmd(cm, WIMLIB_UPDATE_OP_RENAME, e->base_paths[0], e->aside, false, 1,
                        path_depth(e->base_paths[0]))) == 0)
        rc = add_cmd(cm, WIMLIB_UPDATE_OP_RENAME, e->aside, e->cur_paths[0], false, 3,
                     path_depth(e->cur_paths[0]));
      break;
    case K_REDO:
      if (e->nbase != 1 || e->ncur != 1)
        return fallback(cm, "a directory has %zu names", e->ncur);
      if ((rc = add_cmd(cm, WIMLIB_UPDATE_OP_RENAME, e->base_paths[0], e->aside, false, 1,
                        path_depth(e->base_paths[0]))) == 0)
        rc = add_cmd(cm, WIMLIB_UPDATE_OP_DELETE, e->aside, NULL, true, 4, 0);
      break;
    default:
      break;
    }
    if (rc < 0)
      return rc;
    if (in_temp(e->kind))
      *have_temp = true;
  }
  if (*have_temp && (rc = add_cmd(cm, WIMLIB_UPDATE_OP_ADD, NULL, WIMLIB_WIM_ROOT_PATH, false, 2,
                                  0)) < 0)
    return rc;
  if (cm->nc)
    qsort(cm->c, cm->nc, sizeof *cm->c, cmp_cmd);
  return 0;
}

/* ---- 3. the temporary volume -------------------------------------------------------- */
/* The temporary volume: dism_wim_make_volume (a sparse file, mkntfs);
 * any failure there is a reason to fall back, not an error. */
static int
make_temp(struct commit *cm, const char *path, uint64_t size)
{
  int rc = dism_wim_make_volume(path, size, cm->wim);
  if (rc < 0)
    return fallback(cm, "the temporary volume cannot be made: %s", dism_last_error());
  return 0;
}

/* The directory `path` ("/a/b") in the temporary volume, made (a plain
 * placeholder, merged away by the ADD) where missing.  *out is opened. */
static int
temp_dir(ntfs_volume *tv, const char *path, ntfs_inode **out)
{
  ntfs_inode *dir = ntfs_inode_open(tv, FILE_root);
  if (!dir)
    return -errno ? -errno : -EIO;
  const char *p = path;
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t) (end - p) : strlen(p);
    char comp[1024];
    ntfschar uname[256];
    if (len >= sizeof comp) {
      ntfs_inode_close(dir);
      return -ENAMETOOLONG;
    }
    memcpy(comp, p, len);
    comp[len] = '\0';
    int ulen = dism_utf8_to_utf16le(comp, uname, 255);
    if (ulen <= 0) {
      ntfs_inode_close(dir);
      return -EILSEQ;
    }
    u64 m = ntfs_inode_lookup_by_name(dir, uname, ulen);
    ntfs_inode *next;
    if (m == (u64) -1)
      next = ntfs_create(dir, 0, uname, (u8) ulen, S_IFDIR);
    else
      next = ntfs_inode_open(tv, MREF(m));
    int e = errno;
    ntfs_inode_close(dir);
    if (!next)
      return e ? -e : -EIO;
    dir = next;
    p += len;
  }
  *out = dir;
  return 0;
}

/* Split "/a/b/name" into the directory ("/a/b") and the name. */
static int
split_path(const char *path, char *dir, size_t cap, ntfschar *uname, int *ulen)
{
  const char *slash = strrchr(path, '/');
  if (!slash || (size_t) (slash - path) >= cap)
    return -EINVAL;
  memcpy(dir, path, (size_t) (slash - path));
  dir[slash - path] = '\0';
  *ulen = dism_utf8_to_utf16le(slash + 1, uname, 255);
  return *ulen > 0 ? 0 : -EILSEQ;
}

/* Bytes [from, to) of one attribute into another. */
static int
copy_range(ntfs_attr *sa, ntfs_attr *da, s64 from, s64 to, unsigned char *buf)
{
  for (s64 off = from; off < to;) {
    s64 n = to - off < COPY_CHUNK ? to - off : COPY_CHUNK;
    if (ntfs_attr_pread(sa, off, n, buf) != n)
      return -EIO;
    if (ntfs_attr_pwrite(da, off, n, buf) != n)
      return -ENOSPC;
    off += n;
  }
  return 0;
}

static int
copy_stream(struct commit *cm, ntfs_inode *src, ntfs_inode *dst, ntfschar *name, u32 len,
            unsigned char *buf)
{
  int rc = 0;
  ntfs_attr *sa = ntfs_attr_open(src, AT_DATA, name, len);
  ntfs_attr *da = NULL;
  if (!sa)
    return -errno ? -errno : -EIO;
  if (len && ntfs_attr_add(dst, AT_DATA, name, (u8) len, NULL, 0) < 0) {
    rc = -errno;
    goto out;
  }
  da = ntfs_attr_open(dst, AT_DATA, name, len);
  if (!da) {
    rc = -errno;
    goto out;
  }
  s64 size = sa->data_size;
  if (ntfs_attr_truncate(da, size) < 0) {
    rc = -errno;
    goto out;
  }
  uint64_t before = cm->volume_read;
  if (!(sa->data_flags & ATTR_IS_SPARSE) || !NAttrNonResident(sa)) {
    rc = copy_range(sa, da, 0, size, buf);
  } else {
    /* Sparse: only the allocated runs are written, so the copy keeps holes
     * and its sparse flag (all of a non-sparse file is written: skipped
     * zeroes would make the copy sparse). */
    if (ntfs_attr_map_whole_runlist(sa) < 0) {
      rc = -errno ? -errno : -EIO;
      goto out;
    }
    u8 bits = src->vol->cluster_size_bits;
    for (const runlist_element *r = sa->rl; rc == 0 && r && r->length; r++) {
      if (r->lcn == LCN_HOLE)
        continue;
      if (r->lcn < 0) {
        rc = -EUCLEAN;
        break;
      }
      s64 from = r->vcn << bits, to = (r->vcn + r->length) << bits;
      if (to > size)
        to = size;
      if (from < to)
        rc = copy_range(sa, da, from, to, buf);
    }
  }
  if (rc < 0)
    goto out;
  cm->data_read += cm->volume_read - before;
out:
  if (da)
    ntfs_attr_close(da);
  ntfs_attr_close(sa);
  return rc;
}

/* Data streams (names collected first: no search open while writing). */
static int
copy_streams(struct commit *cm, ntfs_inode *src, ntfs_inode *dst, unsigned char *buf)
{
  ntfschar names[64][256];
  u32 lens[64];
  int n = 0, rc = 0;
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(src, NULL);
  if (!ctx)
    return -ENOMEM;
  while (ntfs_attr_lookup(AT_DATA, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
    ATTR_RECORD *a = ctx->attr;
    if (a->non_resident && a->lowest_vcn)
      continue;
    if (n == 64) {
      rc = -E2BIG;
      break;
    }
    lens[n] = a->name_length;
    memcpy(names[n], (const u8 *) a + le16_to_cpu(a->name_offset), a->name_length * 2u);
    n++;
  }
  ntfs_attr_put_search_ctx(ctx);
  for (int i = 0; rc == 0 && i < n; i++)
    rc = copy_stream(cm, src, dst, lens[i] ? names[i] : AT_UNNAMED, lens[i], buf);
  return rc;
}

static int
copy_meta(struct commit *cm, ntfs_inode *src, ntfs_inode *dst)
{
  char v[65536];
  int n;
  struct SECURITY_CONTEXT scx;
  memset(&scx, 0, sizeof scx);
  scx.vol = cm->cur.vol;
  if ((n = ntfs_get_ntfs_object_id(src, v, sizeof v)) > 0 &&
      ntfs_set_ntfs_object_id(dst, v, (size_t) n, 0) < 0)
    return -errno;
  if ((n = ntfs_get_ntfs_reparse_data(src, v, sizeof v)) > 0 &&
      ntfs_set_ntfs_reparse_data(dst, v, (size_t) n, 0) < 0)
    return -errno;
  if ((n = ntfs_get_ntfs_acl(&scx, src, v, sizeof v)) > 0) {
    scx.vol = dst->vol;
    if (ntfs_set_ntfs_acl(&scx, dst, v, (size_t) n, 0) < 0)
      return -errno;
  }
  if ((n = ntfs_get_ntfs_attrib(src, v, sizeof v)) > 0 &&
      ntfs_set_ntfs_attrib(dst, v, (size_t) n, 0) < 0)
    return -errno;
  return 0;
}

/* The short name src has in dir's counterpart, set on *dst (just made in
 * *dir).  libntfs-3g's call closes both inodes: then both are NULL. */
static int
set_short_name(ntfs_inode *src, ntfs_inode **dst, ntfs_inode **dir)
{
  struct links l;
  int rc = get_links(src, &l);
  if (rc < 0)
    return rc;
  /* The first short name: inode_paths put its long name first, so the
   * copy was made in its directory. */
  for (size_t k = 0; k < l.n; k++) {
    if (!l.v[k].dos)
      continue;
    if (ntfs_set_ntfs_dos_name(*dst, *dir, l.v[k].name, strlen(l.v[k].name), 0) < 0)
      rc = -errno ? -errno : -EIO;
    *dst = *dir = NULL;
    break;
  }
  links_free(&l);
  return rc;
}

static int
cmp_entry_depth(const void *a, const void *b)
{
  const struct entry *const *x = a, *const *y = b;
  int dx = (*x)->ncur ? path_depth((*x)->cur_paths[0]) : 0;
  int dy = (*y)->ncur ? path_depth((*y)->cur_paths[0]) : 0;
  return dx - dy;
}

/* Copy every new and changed entry, with its metadata, at its paths. */
static int
fill_temp(struct commit *cm, ntfs_volume *tv)
{
  int rc = 0;
  size_t n = 0;
  struct entry **v = calloc(cm->ne + 1, sizeof *v);
  unsigned char *buf = malloc(COPY_CHUNK);
  char dirpath[4200];
  ntfschar uname[256];
  int ulen;
  if (!v || !buf) {
    rc = -ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < cm->ne; i++)
    if (in_temp(cm->e[i].kind))
      v[n++] = &cm->e[i];
  if (n)
    qsort(v, n, sizeof *v, cmp_entry_depth);
  /* A: each at its first path, its data, object id, reparse data,
   * security descriptor and attributes. */
  for (size_t i = 0; i < n; i++) {
    struct entry *e = v[i];
    if (!e->ncur) {
      rc = fallback(cm, "record %llu has no name", (unsigned long long) e->mft);
      goto out;
    }
    ntfs_inode *dir = NULL, *dst = NULL, *src = NULL;
    if ((rc = split_path(e->cur_paths[0], dirpath, sizeof dirpath, uname, &ulen)) < 0 ||
        (rc = temp_dir(tv, dirpath, &dir)) < 0) {
      rc = fallback(cm, "%s cannot be made in the temporary volume: %s", e->cur_paths[0],
                    strerror(-rc));
      goto out;
    }
    dst = ntfs_create(dir, 0, uname, (u8) ulen, e->dir ? S_IFDIR : S_IFREG);
    src = ntfs_inode_open(cm->cur.vol, e->mft);
    if (dst && src) {
      /* The short name first, right after the create (as wimlib does it;
       * later, after the other metadata, libntfs-3g refuses it). */
      u64 mft = dst->mft_no;
      int r = set_short_name(src, &dst, &dir);
      if (r < 0)
        rc = fallback(cm, "%s: its short name cannot be set: %s", e->cur_paths[0],
                      strerror(-r));
      else if (!dst && !(dst = ntfs_inode_open(tv, mft)))
        rc = -errno ? -errno : -EIO;
    }
    if (rc < 0)
      ;
    else if (!dst || !src)
      rc = -errno ? -errno : -EIO;
    else {
      e->tmp_mft = dst->mft_no;
      if ((rc = copy_streams(cm, src, dst, buf)) == 0)
        rc = copy_meta(cm, src, dst);
    }
    if (src)
      ntfs_inode_close(src);
    /* In its directory: closing it alone would open the directory a second
     * time to update its entry there, and the two copies of the directory
     * record would overwrite each other. */
    if (dst && dir)
      ntfs_inode_close_in_dir(dst, dir);
    else if (dst)
      ntfs_inode_close(dst);
    if (dir)
      ntfs_inode_close(dir);
    if (rc == -EAGAIN)
      goto out;
    if (rc < 0) {
      rc = fallback(cm, "%s cannot be copied into the temporary volume: %s", e->cur_paths[0],
                    strerror(-rc));
      goto out;
    }
    if (report(cm, 10 + (unsigned) (30 * (i + 1) / n))) {
      rc = -ECANCELED;
      goto out;
    }
  }
  /* B: the other hard links. */
  for (size_t i = 0; i < n; i++) {
    struct entry *e = v[i];
    for (size_t k = 1; k < e->ncur; k++) {
      ntfs_inode *dir = NULL, *ni = NULL;
      if ((rc = split_path(e->cur_paths[k], dirpath, sizeof dirpath, uname, &ulen)) == 0 &&
          (rc = temp_dir(tv, dirpath, &dir)) == 0) {
        ni = ntfs_inode_open(tv, e->tmp_mft);
        if (!ni || ntfs_link(ni, dir, uname, (u8) ulen) < 0)
          rc = -errno ? -errno : -EIO;
        if (ni)
          ntfs_inode_close_in_dir(ni, dir);
        ntfs_inode_close(dir);
      }
      if (rc < 0) {
        rc = fallback(cm, "link %s cannot be made: %s", e->cur_paths[k], strerror(-rc));
        goto out;
      }
    }
  }
  /* C: a second short name (of another link) cannot be set: libntfs-3g
   * refuses a short name to a file with several links (EMLINK). */
  for (size_t i = 0; i < n; i++) {
    struct entry *e = v[i];
    ntfs_inode *src = ntfs_inode_open(cm->cur.vol, e->mft);
    struct links l = { 0 };
    if (!src || get_links(src, &l) < 0) {
      if (src)
        ntfs_inode_close(src);
      rc = fallback(cm, "%s: names cannot be read", e->cur_paths[0]);
      goto out;
    }
    ntfs_inode_close(src);
    size_t dos = 0;
    for (size_t k = 0; k < l.n; k++)
      dos += l.v[k].dos;
    links_free(&l);
    if (dos > 1) {
      rc = fallback(cm, "%s has %zu short names", e->cur_paths[0], dos);
      goto out;
    }
  }
  /* D: times, last (everything above changes them); E: check each copy. */
  for (size_t i = 0; i < n; i++) {
    struct entry *e = v[i];
    ntfs_inode *src = ntfs_inode_open(cm->cur.vol, e->mft);
    ntfs_inode *dst = ntfs_inode_open(tv, e->tmp_mft);
    char t[64];
    int tn;
    if (!src || !dst || (tn = ntfs_inode_get_times(src, t, sizeof t)) <= 0 ||
        ntfs_inode_set_times(dst, t, (size_t) tn, 0) < 0)
      rc = fallback(cm, "%s: times cannot be copied", e->cur_paths[0]);
    if (src)
      ntfs_inode_close(src);
    if (dst)
      ntfs_inode_close(dst);
    if (rc < 0)
      goto out;
  }
  for (size_t i = 0; i < n; i++) {
    struct entry *e = v[i];
    struct links ls = { 0 }, ld = { 0 };
    struct buf ss = { 0 }, sd = { 0 };
    ntfs_inode *src = ntfs_inode_open(cm->cur.vol, e->mft);
    ntfs_inode *dst = ntfs_inode_open(tv, e->tmp_mft);
    if (!src || !dst || get_links(src, &ls) < 0 || get_links(dst, &ld) < 0 ||
        inode_sig(cm->cur.vol, src, false, &ls, &ss) < 0 ||
        inode_sig(tv, dst, false, &ld, &sd) < 0 || !sig_equal(&ss, &sd)) {
      rc = fallback(cm, "the copy of %s does not hold what the volume holds (attributes, "
                    "times, security descriptor, streams or names)", e->cur_paths[0]);
    }
    links_free(&ls);
    links_free(&ld);
    free(ss.p);
    free(sd.p);
    if (src)
      ntfs_inode_close(src);
    if (dst)
      ntfs_inode_close(dst);
    if (rc < 0)
      goto out;
  }
out:
  free(v);
  free(buf);
  return rc;
}

/* ---- 4. the update ---------------------------------------------------------------- */
struct write_relay {
  dism_wim_progress_fn fn;
  void *opaque;
};

static enum wimlib_progress_status
write_progress(enum wimlib_progress_msg msg, union wimlib_progress_info *info, void *ctx)
{
  struct write_relay *p = ctx;
  if (p->fn && msg == WIMLIB_PROGRESS_MSG_WRITE_STREAMS) {
    uint64_t t = info->write_streams.total_bytes, d = info->write_streams.completed_bytes;
    (void) p->fn(40 + (unsigned) (t ? (d >= t ? 55 : d * 55 / t) : 55), p->opaque);
  }
  return WIMLIB_PROGRESS_STATUS_CONTINUE;
}

static int
wimlib_errno(int code)
{
  switch (code) {
  case WIMLIB_ERR_NOMEM:
    return -ENOMEM;
  case WIMLIB_ERR_ALREADY_LOCKED:
    return -ETXTBSY;
  case WIMLIB_ERR_WIM_IS_READONLY:
    return -EACCES;
  default:
    return -EIO;
  }
}

/* Returns 0, -EAGAIN when the update itself is refused (rolled back by
 * wimlib: the caller falls back), or another error. */
static int
update_wim(struct commit *cm, unsigned index, const char *temp, unsigned flags,
           struct dism_wim_commit_stats *stats)
{
  struct write_relay relay = { cm->progress, cm->opaque };
  WIMStruct *w = NULL;
  struct wimlib_update_command *u = calloc(cm->nc + 1, sizeof *u);
  int rc = 0;
  if (!u)
    return -ENOMEM;
  int wrc = wimlib_open_wim_with_progress(cm->wim, WIMLIB_OPEN_FLAG_WRITE_ACCESS |
                                          WIMLIB_OPEN_FLAG_ERROR_IF_SPLIT, &w,
                                          write_progress, &relay);
  if (wrc) {
    dism_set_error("%s cannot be opened for writing: %s (wimlib error %d)", cm->wim,
                   wimlib_get_error_string(wrc), wrc);
    rc = wimlib_errno(wrc);
    goto out;
  }
  struct wimlib_wim_info info;
  wimlib_get_wim_info(w, &info);
  if (index == 0 || index > info.image_count) {
    dism_set_error("%s no longer holds image %u (it holds %u): the changes cannot be "
                   "committed into it.", cm->wim, index, (unsigned) info.image_count);
    rc = -ESRCH;
    goto out;
  }
  for (size_t i = 0; i < cm->nc; i++) {
    const struct cmd *c = &cm->c[i];
    u[i].op = c->op;
    switch (c->op) {
    case WIMLIB_UPDATE_OP_DELETE:
      u[i].delete_.wim_path = c->src;
      u[i].delete_.delete_flags = c->recursive ? WIMLIB_DELETE_FLAG_RECURSIVE : 0;
      stats->deleted++;
      break;
    case WIMLIB_UPDATE_OP_RENAME:
      u[i].rename.wim_source_path = c->src;
      u[i].rename.wim_target_path = c->dst;
      stats->renamed++;
      break;
    case WIMLIB_UPDATE_OP_ADD:
      u[i].add.fs_source_path = (char *) temp;
      u[i].add.wim_target_path = c->dst;
      u[i].add.add_flags = WIMLIB_ADD_FLAG_NTFS | WIMLIB_ADD_FLAG_NORPFIX;
      break;
    }
    dism_log(DISM_LOG_DEBUG, "commit %s: %s %s%s%s", cm->wim,
             c->op == WIMLIB_UPDATE_OP_ADD ? "ADD" : c->op == WIMLIB_UPDATE_OP_DELETE ? "DELETE"
                                                                                 : "RENAME",
             c->src ? c->src : "(temporary volume)", c->dst ? " -> " : "", c->dst ? c->dst : "");
  }
  if (cm->nc) {
    wrc = wimlib_update_image(w, (int) index, u, cm->nc, 0);
    if (wrc) {
      /* wimlib rolled the image back in memory; nothing was written. */
      rc = fallback(cm, "wimlib refused the update: %s (wimlib error %d)",
                    wimlib_get_error_string(wrc), wrc);
      goto out;
    }
  }
  if ((rc = dism_wim_write(w, cm->wim, flags)) < 0)
    goto out;
out:
  if (w)
    wimlib_free(w);
  free(u);
  return rc;
}

/* ---- the whole ---------------------------------------------------------------------- */
/* The volumes closed (before wimlib reads the temporary one or a full
 * capture reads the current one). */
static void
close_sides(struct commit *cm)
{
  struct side *sides[2] = { &cm->base, &cm->cur };
  for (int s = 0; s < 2; s++) {
    if (sides[s]->dirpath)
      for (uint64_t i = 0; i < sides[s]->nrec; i++)
        free(sides[s]->dirpath[i]);
    free(sides[s]->dirpath);
    sides[s]->dirpath = NULL;
    if (sides[s]->vol)
      ntfs_umount(sides[s]->vol, FALSE);
    sides[s]->vol = NULL;
  }
  free(cm->inuse_b);
  free(cm->inuse_c);
  cm->inuse_b = cm->inuse_c = NULL;
}

static void
commit_free(struct commit *cm)
{
  close_sides(cm);
  for (size_t i = 0; i < cm->ne; i++) {
    struct entry *e = &cm->e[i];
    for (size_t k = 0; k < e->nbase; k++)
      free(e->base_paths[k]);
    for (size_t k = 0; k < e->ncur; k++)
      free(e->cur_paths[k]);
    free(e->base_paths);
    free(e->cur_paths);
    free(e->aside);
  }
  free(cm->e);
  for (size_t i = 0; i < cm->nc; i++) {
    free(cm->c[i].src);
    free(cm->c[i].dst);
  }
  free(cm->c);
  free(cm->by_mft);
}

static int
open_side(struct commit *cm, struct side *s, const char *path, bool counting)
{
  s->vol = counting ? mount_counting(path) : ntfs_mount(path, NTFS_MNT_RDONLY);
  if (!s->vol)
    return fallback(cm, "%s cannot be opened as an NTFS volume: %s", path, strerror(errno));
  s->nrec = (uint64_t) s->vol->mft_na->initialized_size >> s->vol->mft_record_size_bits;
  s->dirpath = calloc(s->nrec + 1, sizeof *s->dirpath);
  return s->dirpath ? 0 : -ENOMEM;
}

/* The bytes of all the data streams of an inode (sizing the temporary volume). */
static uint64_t
streams_size(ntfs_inode *ni)
{
  uint64_t sum = 0;
  ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
  if (!ctx)
    return 0;
  while (ntfs_attr_lookup(AT_DATA, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
    const ATTR_RECORD *a = ctx->attr;
    if (!a->non_resident)
      sum += le32_to_cpu(a->value_length);
    else if (!a->lowest_vcn)
      sum += (uint64_t) sle64_to_cpu(a->data_size);
  }
  ntfs_attr_put_search_ctx(ctx);
  return sum;
}

/* Everything up to the temporary volume filled; -EAGAIN: fall back. */
static int
analyse_and_fill(struct commit *cm, const char *base_volume, const char *temp, bool *have_temp,
                 struct dism_wim_commit_stats *stats)
{
  int rc;
  uint8_t *changed = NULL;
  ntfs_volume *tv = NULL;
  if ((rc = open_side(cm, &cm->base, base_volume, false)) < 0 ||
      (rc = open_side(cm, &cm->cur, cm->current, true)) < 0)
    goto out;
  cm->nby = cm->base.nrec > cm->cur.nrec ? cm->base.nrec : cm->cur.nrec;
  cm->by_mft = malloc(cm->nby * sizeof *cm->by_mft);
  changed = calloc(cm->nby / 8 + 1, 1);
  cm->inuse_b = calloc(cm->nby / 8 + 1, 1);
  cm->inuse_c = calloc(cm->nby / 8 + 1, 1);
  if (!cm->by_mft || !changed || !cm->inuse_b || !cm->inuse_c) {
    rc = -ENOMEM;
    goto out;
  }
  memset(cm->by_mft, 0xff, cm->nby * sizeof *cm->by_mft);
  if ((rc = scan_mft(cm, changed)) < 0)
    goto out;
  if (report(cm, 5)) {
    rc = -ECANCELED;
    goto out;
  }
  for (uint64_t m = 0; m < cm->nby; m++) {
    if (!BIT_TEST(changed, m) || is_system(m))
      continue;
    if ((rc = classify_one(cm, m)) < 0)
      goto out;
  }
  if ((rc = plan(cm, have_temp)) < 0)
    goto out;
  if (report(cm, 10)) {
    rc = -ECANCELED;
    goto out;
  }
  uint64_t need = 0;
  for (size_t i = 0; i < cm->ne; i++) {
    struct entry *e = &cm->e[i];
    if (e->kind == K_NEW)
      stats->added++;
    else if (e->kind == K_CHANGED || e->kind == K_COPY || e->kind == K_REDO)
      stats->replaced++;
    if (in_temp(e->kind)) {
      ntfs_inode *ni = ntfs_inode_open(cm->cur.vol, e->mft);
      if (ni) {
        need += streams_size(ni);
        ntfs_inode_close(ni);
      }
      need += 16384; /* an MFT record, small files' clusters */
    }
  }
  if (!*have_temp)
    goto out;
  /* Sparse: only what is written takes space. */
  uint64_t size = (need + need / 4 + 64 * MIB + MIB - 1) / MIB * MIB;
  if ((rc = make_temp(cm, temp, size)) < 0)
    goto out;
  tv = ntfs_mount(temp, 0);
  if (!tv) {
    rc = fallback(cm, "the temporary volume %s cannot be opened: %s", temp, strerror(errno));
    goto out;
  }
  rc = fill_temp(cm, tv);
  if (ntfs_umount(tv, FALSE) < 0 && rc == 0)
    rc = fallback(cm, "the temporary volume %s cannot be closed: %s", temp, strerror(errno));
out:
  free(changed);
  return rc;
}

/* A commit killed midway leaves its temporary volume (named after its
 * process): removed by the next commit, unmount or cleanup once that
 * process is gone. */
void
dism_wim_commit_remove_stale(const char *scratch_dir)
{
  DIR *d = opendir(scratch_dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d))) {
    long pid;
    unsigned seq;
    char tail[8];
    if (sscanf(de->d_name, "wim-commit-%ld-%u.vo%1s", &pid, &seq, tail) != 3 ||
        strcmp(tail, "l") || pid <= 0 || pid == (long) getpid())
      continue;
    if (kill((pid_t) pid, 0) < 0 && errno == ESRCH) {
      char path[4200];
      snprintf(path, sizeof path, "%s/%s", scratch_dir, de->d_name);
      if (unlink(path) == 0)
        dism_log(DISM_LOG_INFO, "removed %s, left by an interrupted commit", path);
    }
  }
  closedir(d);
}

int
dism_wim_commit_changes(const char *wim, unsigned index, const char *base_volume,
                        const char *current, const char *scratch_dir, unsigned flags,
                        dism_wim_progress_fn progress, void *opaque, unsigned *new_index,
                        struct dism_wim_commit_stats *stats)
{
  struct dism_wim_commit_stats dummy;
  if (!stats)
    stats = &dummy;
  memset(stats, 0, sizeof *stats);
  if (flags & DISM_WIM_COMMIT_APPEND) {
    stats->full_capture = true;
    snprintf(stats->fallback_reason, sizeof stats->fallback_reason,
             "a new image (/Append) is a full capture");
    return dism_wim_capture(wim, index, current, flags, progress, opaque, new_index);
  }
  ntfs_log_set_handler(ntfs_log_handler_null);
  struct commit cm;
  memset(&cm, 0, sizeof cm);
  cm.wim = wim;
  cm.current = current;
  cm.progress = progress;
  cm.opaque = opaque;
  read_counter = &cm.volume_read;
  /* A prefix for the names things take while aside at the root: none of
   * the image's own names starts with it (checked by wimlib: a RENAME onto
   * an existing name fails, and then we fall back). */
  snprintf(cm.aside_prefix, sizeof cm.aside_prefix, ".dism-commit-%ld-%ld", (long) getpid(),
           (long) time(NULL));
  dism_wim_commit_remove_stale(scratch_dir);
  /* Threads of one process commit other mounts at the same time. */
  static unsigned commit_seq;
  char temp[4200];
  snprintf(temp, sizeof temp, "%s/wim-commit-%ld-%u.vol", scratch_dir, (long) getpid(),
           __atomic_add_fetch(&commit_seq, 1, __ATOMIC_RELAXED));
  bool have_temp = false;
  int rc = analyse_and_fill(&cm, base_volume, temp, &have_temp, stats);
  close_sides(&cm);
  read_counter = NULL;
  if (rc == 0) {
    rc = update_wim(&cm, index, temp, flags, stats);
    if (rc == 0)
      *new_index = index;
  }
  commit_free(&cm);
  unlink(temp);
  stats->volume_bytes_read = cm.volume_read;
  stats->data_bytes_read = cm.data_read;
  if (rc == -EAGAIN) {
    dism_log(DISM_LOG_INFO, "commit of image %u of %s: a full capture: %s", index, wim,
             cm.reason);
    stats->full_capture = true;
    stats->added = stats->replaced = stats->deleted = stats->renamed = 0;
    snprintf(stats->fallback_reason, sizeof stats->fallback_reason, "%s", cm.reason);
    rc = dism_wim_capture(wim, index, current, flags, progress, opaque, new_index);
  } else if (rc == -ECANCELED) {
    dism_set_error("the commit into %s was cancelled before anything was written", wim);
  } else if (rc == 0) {
    dism_log(DISM_LOG_INFO, "commit of image %u of %s: %llu added, %llu replaced, %llu deleted, "
             "%llu renamed; %llu bytes read from the volume, %llu of them file data",
             index, wim, (unsigned long long) stats->added, (unsigned long long) stats->replaced,
             (unsigned long long) stats->deleted, (unsigned long long) stats->renamed,
             (unsigned long long) stats->volume_bytes_read,
             (unsigned long long) stats->data_bytes_read);
  }
  if (rc == 0 && progress)
    (void) progress(100, opaque);
  return rc;
}
