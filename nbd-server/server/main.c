/* SPDX-License-Identifier: GPL-2.0-or-later */
/* main.c - dism-nbd-server: serve one disk image over NBD.
 *
 * The only part of the server that talks to the user: it parses the
 * command line, opens the image, sets up listeners and signals, gives up
 * its privileges (sandbox.c: everything that opens a path or needs a
 * capability happens before, every thread starts after), and runs the
 * accept loop.  Everything else is in libnbdserver.a. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "nbd-server.h"
#include "overlay.h"
#include "control.h"
#include "fuse-export.h"
#include "sandbox.h"
#include "test-hooks.h"

#define PROG "dism-nbd-server"
#define MAX_LISTENERS 32
#define MAX_FDS 64

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

struct options {
  const char *image;
  const char *overlay;
  const char *format;
  const char *export_name;
  const char *description;
  const char *pidfile;
  const char *unix_path;
  const char *fuse_file;
  const char *control_path;
  const char *tcp[MAX_LISTENERS];
  int ntcp;
  int fds[MAX_FDS];
  int nfds;
  int transmission_fds[MAX_FDS];
  int ntransmission_fds;
  bool socket_activation;
  bool readonly;
  bool exit_when_idle;
  bool no_multi_conn;
  bool no_sendfile;
  bool verbose;
  bool allow_bad_checksum;
  uint64_t wim_cache_bytes;    /* --wim-cache-size; 0: the default */
  bool no_sandbox;
  const char *user;
  unsigned threads;
  unsigned handshake_timeout;
  int tls;                     /* enum nbd_tls_mode, or -1: not given */
  const char *tls_certificates;
  const char *tls_psk;
  bool tls_verify_peer;
};

static void
usage(FILE *f)
{
  fprintf(f,
"Usage: " PROG " [OPTIONS] IMAGE\n"
"Serve a disk image (raw, VHD, VHDX) over the NBD protocol.\n"
"\n"
"Where to listen (at least one):\n"
"  -u, --unix PATH            Unix socket PATH (created with mode 0600)\n"
"  -p, --tcp [HOST:]PORT      TCP; without HOST only loopback (127.0.0.1, ::1)\n"
"      --fd N                 serve the connected socket N, from the handshake on\n"
"                             (repeatable)\n"
"      --fd-transmission N    serve socket N whose handshake was done elsewhere:\n"
"                             transmission, simple replies only (repeatable)\n"
"      --socket-activation    listen on the sockets systemd passed (LISTEN_FDS)\n"
"      --fuse-file PATH       also expose the disk as the regular file PATH through\n"
"                             FUSE (created if absent; for a loop device where\n"
"                             nbd.ko is missing)\n"
"\n"
"Control:\n"
"      --control PATH         Unix control socket (STATUS, FLUSH, COMMIT, SHUTDOWN;\n"
"                             see docs/nbd-server.md).  With --overlay it opens the\n"
"                             image read-write so COMMIT can merge the overlay into it\n"
"                             while serving; the image is written only by COMMIT\n"
"\n"
"TLS (for network clients; the kernel client has none):\n"
"      --tls=off|on|require   STARTTLS refused / offered / required before\n"
"                             anything else (default: require when credentials\n"
"                             are given, else off)\n"
"      --tls-certificates DIR X.509: DIR/ca-cert.pem, server-cert.pem,\n"
"                             server-key.pem (and ca-crl.pem if present)\n"
"      --tls-verify-peer      X.509: require a client certificate signed by the CA\n"
"      --tls-psk FILE         pre-shared keys, \"username:hexkey\" lines (psktool)\n"
"\n"
"The image:\n"
"  -r, --readonly             export read-only\n"
"  -o, --overlay FILE         send writes to the copy-on-write overlay FILE\n"
"                             (created if absent, reopened if present)\n"
"  -f, --format FMT           raw, vhd, vhdx or wim (default: detect)\n"
"      --allow-bad-checksum   open images with bad checksums (forensics)\n"
"      --wim-cache-size SIZE  \"wim\" images (a WIM volume map): decompressed\n"
"                             chunks kept in memory, bytes or with K, M, G\n"
"                             (default 256M; a solid .esd needs 64M a chunk)\n"
"\n"
"The export:\n"
"  -e, --export-name NAME     export name (default \"\")\n"
"  -d, --description TEXT     export description\n"
"      --no-multi-conn        do not advertise multi-connection support\n"
"      --no-sendfile          copy READ data through a buffer instead of sending\n"
"                             it from the page cache (also DISM_NBD_SENDFILE=0)\n"
"      --handshake-timeout S  close a client that has not finished negotiating\n"
"                             (NBD_OPT_GO, TLS included) S s after connecting\n"
"                             (default 10)\n"
"\n"
"The process:\n"
"  -t, --threads N            worker threads (default 2 x CPUs, 4..64)\n"
"  -P, --pidfile FILE         write the pid to FILE once listening\n"
"      --exit-when-idle, --oneshot\n"
"                             exit when the last client disconnects\n"
"      --user USER[:GROUP]    run as USER once the image and sockets are open\n"
"      --no-sandbox           keep every privilege (debugging; see PRIVILEGES in\n"
"                             docs/nbd-server.md)\n"
"  -v, --verbose              log connections and errors to stderr\n"
"      --capabilities         print what this server supports, one word a line\n"
"                             (control, fuse-file, overlay, tls, format-vhdx...),\n"
"                             and exit: for programs, instead of reading this help\n"
"  -h, --help                 this help\n"
"\n"
"SIGTERM or SIGINT: stop accepting, finish in-flight requests, flush, exit.\n");
}

/* --capabilities: one word per feature a caller may need to know about
 * before starting the server (libdism asks for control and fuse-file).
 * Words are only ever added; a word's meaning never changes. */
static void
print_capabilities(void)
{
  static const char *const words[] = {
    "control",            /* --control PATH: STATUS, FLUSH, COMMIT, SHUTDOWN */
    "fuse-file",          /* --fuse-file PATH */
    "overlay",            /* --overlay FILE */
    "tls",                /* --tls, --tls-certificates, --tls-psk */
    "fd",                 /* --fd N */
    "fd-transmission",    /* --fd-transmission N */
    "socket-activation",  /* --socket-activation */
    "sandbox",            /* sandboxed by default; --no-sandbox, --user */
    "handshake-timeout",  /* --handshake-timeout S */
    "exit-when-idle",     /* --exit-when-idle */
    "wim",                /* the "wim" format (a WIM volume map), --wim-cache-size */
    "sendfile",           /* READ data from the page cache; --no-sendfile */
  };

  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    printf("%s\n", words[i]);
  for (size_t i = 0; disk_format_name(i); i++)
    printf("format-%s\n", disk_format_name(i));
}

static void __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
  va_list ap;

  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void
log_to_stderr(void *opaque, enum nbd_log_level level, const char *msg)
{
  bool verbose = *(bool *) opaque;

  if (verbose || level == NBD_LOG_ERROR)
    fprintf(stderr, PROG ": %s\n", msg);
}

static bool
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v > max)
    return false;
  *out = v;
  return true;
}

enum {
  OPT_FD = 256, OPT_FD_TRANSMISSION, OPT_SOCKET_ACTIVATION, OPT_EXIT_WHEN_IDLE,
  OPT_NO_MULTI_CONN, OPT_HANDSHAKE_TIMEOUT, OPT_ALLOW_BAD_CHECKSUM, OPT_FUSE_FILE, OPT_CONTROL,
  OPT_TLS, OPT_TLS_CERTIFICATES, OPT_TLS_VERIFY_PEER, OPT_TLS_PSK,
  OPT_NO_SANDBOX, OPT_USER, OPT_CAPABILITIES, OPT_WIM_CACHE_SIZE, OPT_NO_SENDFILE,
};

/* A size: bytes, or with a K, M, G or T suffix (powers of 1024). */
static bool
parse_size(const char *s, uint64_t *out)
{
  unsigned shift = 0;
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-')
    return false;
  switch (*end) {
  case 'K': case 'k': shift = 10; end++; break;
  case 'M': case 'm': shift = 20; end++; break;
  case 'G': case 'g': shift = 30; end++; break;
  case 'T': case 't': shift = 40; end++; break;
  default: break;
  }
  if (*end || v > (UINT64_MAX >> shift))
    return false;
  *out = (uint64_t) v << shift;
  return true;
}

/* The TLS options together.  Credentials without --tls mean
 * --tls=require (as qemu-nbd's --tls-creds): serving in the clear by
 * mistake is the failure to avoid. */
static int
check_tls_args(struct options *o)
{
  bool creds = o->tls_certificates || o->tls_psk;

  if (o->tls_certificates && o->tls_psk) {
    fail("--tls-certificates and --tls-psk: give one of them");
    return 1;
  }
  if (o->tls_verify_peer && !o->tls_certificates) {
    fail("--tls-verify-peer needs --tls-certificates");
    return 1;
  }
  if (o->tls < 0)
    o->tls = creds ? NBD_TLS_REQUIRE : NBD_TLS_OFF;
  if (o->tls == NBD_TLS_OFF && creds) {
    fail("--tls=off with TLS credentials: drop one or the other");
    return 1;
  }
  if (o->tls != NBD_TLS_OFF && !creds) {
    fail("--tls=%s needs --tls-certificates DIR or --tls-psk FILE",
         o->tls == NBD_TLS_ON ? "on" : "require");
    return 1;
  }
  /* The kernel's socket skips the handshake, so STARTTLS never happens. */
  if (o->tls == NBD_TLS_REQUIRE && o->ntransmission_fds) {
    fail("--fd-transmission cannot be used with --tls=require (no TLS there)");
    return 1;
  }
  return 0;
}

static const struct option longopts[] = {
  { "unix", required_argument, NULL, 'u' },
  { "tcp", required_argument, NULL, 'p' },
  { "fd", required_argument, NULL, OPT_FD },
  { "fd-transmission", required_argument, NULL, OPT_FD_TRANSMISSION },
  { "socket-activation", no_argument, NULL, OPT_SOCKET_ACTIVATION },
  { "fuse-file", required_argument, NULL, OPT_FUSE_FILE },
  { "control", required_argument, NULL, OPT_CONTROL },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certificates", required_argument, NULL, OPT_TLS_CERTIFICATES },
  { "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY_PEER },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "readonly", no_argument, NULL, 'r' },
  { "overlay", required_argument, NULL, 'o' },
  { "format", required_argument, NULL, 'f' },
  { "allow-bad-checksum", no_argument, NULL, OPT_ALLOW_BAD_CHECKSUM },
  { "wim-cache-size", required_argument, NULL, OPT_WIM_CACHE_SIZE },
  { "export-name", required_argument, NULL, 'e' },
  { "description", required_argument, NULL, 'd' },
  { "no-multi-conn", no_argument, NULL, OPT_NO_MULTI_CONN },
  { "no-sendfile", no_argument, NULL, OPT_NO_SENDFILE },
  { "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
  { "threads", required_argument, NULL, 't' },
  { "pidfile", required_argument, NULL, 'P' },
  { "exit-when-idle", no_argument, NULL, OPT_EXIT_WHEN_IDLE },
  { "oneshot", no_argument, NULL, OPT_EXIT_WHEN_IDLE },
  { "no-sandbox", no_argument, NULL, OPT_NO_SANDBOX },
  { "user", required_argument, NULL, OPT_USER },
  { "capabilities", no_argument, NULL, OPT_CAPABILITIES },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

/* --fd N and --fd-transmission N: an open descriptor, either kind. */
static int
add_fd(struct options *o, int c, const char *arg)
{
  unsigned long v;

  if (!parse_uint(arg, INT_MAX, &v) || fcntl((int) v, F_GETFD) < 0) {
    fail("--fd %s: not an open file descriptor", arg);
    return 1;
  }
  if (o->nfds + o->ntransmission_fds >= MAX_FDS) {
    fail("too many --fd options");
    return 1;
  }
  if (c == OPT_FD)
    o->fds[o->nfds++] = (int) v;
  else
    o->transmission_fds[o->ntransmission_fds++] = (int) v;
  return 0;
}

static int
parse_tls_mode(struct options *o, const char *arg)
{
  if (strcmp(arg, "off") == 0)
    o->tls = NBD_TLS_OFF;
  else if (strcmp(arg, "on") == 0)
    o->tls = NBD_TLS_ON;
  else if (strcmp(arg, "require") == 0)
    o->tls = NBD_TLS_REQUIRE;
  else {
    fail("--tls=%s: expected off, on or require", arg);
    return 1;
  }
  return 0;
}

/* The options that take a number. */
static int
parse_number_option(struct options *o, int c, const char *arg)
{
  unsigned long v;

  if (c == OPT_HANDSHAKE_TIMEOUT) {
    if (!parse_uint(arg, 3600, &v) || v == 0) {
      fail("--handshake-timeout %s: expected 1..3600 seconds", arg);
      return 1;
    }
    o->handshake_timeout = (unsigned) v;
    return 0;
  }
  if (!parse_uint(arg, NBD_SERVER_MAX_THREADS, &v) || v == 0) {
    fail("--threads %s: expected 1..%d", arg, NBD_SERVER_MAX_THREADS);
    return 1;
  }
  o->threads = (unsigned) v;
  return 0;
}

/* One option from getopt_long: 0, 1 for an error (already printed), or 2
 * after --help or --capabilities. */
static int
parse_option(struct options *o, int c, const char *arg)
{
  switch (c) {
  case 'u':
    o->unix_path = arg;
    break;
  case 'p':
    if (o->ntcp == MAX_LISTENERS) {
      fail("too many --tcp options");
      return 1;
    }
    o->tcp[o->ntcp++] = arg;
    break;
  case OPT_FD:
  case OPT_FD_TRANSMISSION:
    return add_fd(o, c, arg);
  case OPT_SOCKET_ACTIVATION:
    o->socket_activation = true;
    break;
  case OPT_FUSE_FILE:
    o->fuse_file = arg;
    break;
  case OPT_CONTROL:
    o->control_path = arg;
    break;
  case OPT_TLS:
    return parse_tls_mode(o, arg);
  case OPT_TLS_CERTIFICATES:
    o->tls_certificates = arg;
    break;
  case OPT_TLS_VERIFY_PEER:
    o->tls_verify_peer = true;
    break;
  case OPT_TLS_PSK:
    o->tls_psk = arg;
    break;
  case 'r':
    o->readonly = true;
    break;
  case 'o':
    o->overlay = arg;
    break;
  case 'f':
    if (!disk_format_known(arg)) {
      fail("--format %s: expected raw, vhd, vhdx or wim", arg);
      return 1;
    }
    o->format = arg;
    break;
  case OPT_ALLOW_BAD_CHECKSUM:
    o->allow_bad_checksum = true;
    break;
  case OPT_WIM_CACHE_SIZE:
    /* At least 1 MiB: below, every read would decompress again. */
    if (!parse_size(arg, &o->wim_cache_bytes) || o->wim_cache_bytes < (1u << 20)) {
      fail("--wim-cache-size %s: expected a size of at least 1M (bytes, or with K, M, G)", arg);
      return 1;
    }
    break;
  case 'e':
    o->export_name = arg;
    break;
  case 'd':
    o->description = arg;
    break;
  case OPT_NO_MULTI_CONN:
    o->no_multi_conn = true;
    break;
  case OPT_NO_SENDFILE:
    o->no_sendfile = true;
    break;
  case OPT_HANDSHAKE_TIMEOUT:
  case 't':
    return parse_number_option(o, c, arg);
  case 'P':
    o->pidfile = arg;
    break;
  case OPT_EXIT_WHEN_IDLE:
    o->exit_when_idle = true;
    break;
  case OPT_NO_SANDBOX:
    o->no_sandbox = true;
    break;
  case OPT_USER:
    o->user = arg;
    break;
  case 'v':
    o->verbose = true;
    break;
  case OPT_CAPABILITIES:
    print_capabilities();
    return 2;
  case 'h':
    usage(stdout);
    return 2;
  default:
    usage(stderr);
    return 1;
  }
  return 0;
}

/* Returns 0, 1 for an error (already printed), or 2 after --help or
 * --capabilities. */
static int
parse_args(int argc, char **argv, struct options *o)
{
  int c, r;

  while ((c = getopt_long(argc, argv, "u:p:ro:f:e:d:t:P:vh", longopts, NULL)) != -1) {
    r = parse_option(o, c, optarg);
    if (r != 0)
      return r;
  }
  if (optind + 1 != argc) {
    fail(optind == argc ? "no IMAGE given" : "more than one IMAGE given");
    usage(stderr);
    return 1;
  }
  o->image = argv[optind];
  if (!o->unix_path && !o->ntcp && !o->nfds && !o->ntransmission_fds &&
      !o->socket_activation && !o->fuse_file) {
    fail("nowhere to serve: use --unix, --tcp, --fd, --socket-activation or --fuse-file");
    return 1;
  }
  if (o->user && o->no_sandbox) {
    fail("--user and --no-sandbox: the user switch is part of the sandbox");
    return 1;
  }
  return check_tls_args(o);
}

/* systemd socket activation: fds 3.. when LISTEN_PID is us. */
static int
activation_fds(int *fds, int max)
{
  const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
  unsigned long p, n, i;

  if (!pid || !nfds || !parse_uint(pid, INT_MAX, &p) ||
      (pid_t) p != getpid() || !parse_uint(nfds, (unsigned long) max, &n) || n == 0)
    return -1;
  for (i = 0; i < n; i++) {
    fds[i] = 3 + (int) i;
    fcntl(fds[i], F_SETFD, FD_CLOEXEC);
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return (int) n;
}

static int
open_image(const struct options *o, struct disk **out)
{
  struct disk_open_opts dopts = {
    /* Under an overlay the image is written only by a COMMIT, which needs
     * the control socket; without one it is opened read-only.  A WIM
     * volume map is never written (libdism commits a WIM mount itself). */
    .readonly = o->readonly || (o->overlay != NULL && o->control_path == NULL) ||
                (o->format != NULL && strcmp(o->format, "wim") == 0),
    .allow_bad_checksum = o->allow_bad_checksum,
    .format = o->format,
    .wim_cache_bytes = o->wim_cache_bytes,
  };
  struct disk *base = NULL;
  struct stat st;
  unsigned flags;
  int r;

  r = disk_open(o->image, &dopts, &base);
  if (r < 0) {
    fail("%s", disk_last_error());
    return r;
  }
  if (!o->overlay) {
    *out = base;
    return 0;
  }
  flags = stat(o->overlay, &st) == 0 ? OVERLAY_OPEN_EXISTING : OVERLAY_CREATE;
  r = overlay_open(base, o->overlay, flags, out);
  if (r < 0)
    fail("%s", disk_last_error());   /* overlay_open closed the base */
  return r;
}

/* The pid file is written under a temporary name during setup (the
 * sandbox allows no new file afterwards) and renamed into place once the
 * server serves: a reader never sees it empty, nor too early. */
static int
pidfile_prepare(const char *path, char *tmp, size_t tmpsize)
{
  FILE *f;

  if (snprintf(tmp, tmpsize, "%s.tmp", path) >= (int) tmpsize)
    return -ENAMETOOLONG;
  f = fopen(tmp, "we");
  if (!f)
    return -errno;
  fprintf(f, "%ld\n", (long) getpid());
  if (fclose(f) != 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  return 0;
}

/* The Landlock rules for what the server still does with paths once it is
 * set up, and the FUSE unmount helper; then step 1 of the sandbox. */
static int
lock_down(const struct options *o, struct sandbox *sb, struct fuse_export *fuse)
{
  int r = 0;

  if (o->unix_path)
    r = sandbox_allow_remove(sb, o->unix_path);
  if (r == 0 && o->control_path)
    r = sandbox_allow_remove(sb, o->control_path);
  if (r == 0 && o->pidfile)
    r = sandbox_allow_replace(sb, o->pidfile);
  /* nbd_server_new reads the TLS credentials after this. */
  if (r == 0 && o->tls_certificates)
    r = sandbox_allow_read(sb, o->tls_certificates);
  if (r == 0 && o->tls_psk)
    r = sandbox_allow_read(sb, o->tls_psk);
  if (r == 0 && fuse) {
    sandbox_allow_fuse(sb);
    r = sandbox_start_unmount_helper(sb, o->fuse_file);
    if (r == 0)
      fuse_export_set_unmount(fuse, sandbox_unmount, sb);
  }
  if (r == 0)
    r = sandbox_lock_down(sb);
  return r;
}

/* What main sets up, for the steps below and their one teardown. */
struct run {
  struct options o;
  struct sandbox *sb;
  int sigfd;
  struct disk *disk;
  int listeners[MAX_LISTENERS];
  int nlisteners;
  bool unix_created;
  struct fuse_export *fuse;
  int control_fd;
  bool control_created;
  char pidfile_tmp[PATH_MAX];
  bool pidfile_prepared, pidfile_written;
  struct nbd_server *srv;
  struct control *control;
  bool selftest;
};

/* The process itself: file modes, the sandbox object, memory, signals. */
static int
setup_process(struct run *rn)
{
  const struct options *o = &rn->o;
  sigset_t stop_signals;
  int r;

  /* Sockets (between bind and chmod), the pid file, the FUSE file and the
   * overlay: for their owner only. */
  umask(077);
  if (!o->no_sandbox) {
    r = sandbox_new(&rn->sb);
    if (r == 0 && o->user)
      r = sandbox_set_user(rn->sb, o->user);
    if (r < 0) {
      fail("%s", r == -ENOMEM ? strerror(ENOMEM) : disk_last_error());
      return r;
    }
  }

  /* Fixed mmap threshold: big request buffers go back to the kernel on
   * free instead of growing per-thread arenas (peak RSS stays near the
   * payload budget). */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  signal(SIGPIPE, SIG_IGN);
  /* Signals are taken synchronously through a signalfd; blocking them
   * before any thread starts keeps them off the workers. */
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, NULL);
  rn->sigfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (rn->sigfd < 0) {
    fail("signalfd: %s", strerror(errno));
    return -1;
  }
  /* Serving the kernel's nbd driver: our I/O must not recurse into the
   * block device we serve under memory pressure.  Needs CAP_SYS_RESOURCE;
   * best effort.  Threads created later inherit it. */
  if ((o->nfds || o->ntransmission_fds) &&
      prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0 && o->verbose)
    fail("PR_SET_IO_FLUSHER: %s (continuing)", strerror(errno));
  return 0;
}

/* Everything that opens a path or binds a socket, before the sandbox:
 * the listeners, the FUSE file, the control socket, the pid file. */
static int
open_endpoints(struct run *rn)
{
  const struct options *o = &rn->o;
  int i, r;

  if (o->unix_path) {
    r = nbd_listen_unix(o->unix_path);
    if (r < 0) {
      fail("%s", disk_last_error());
      return r;
    }
    rn->listeners[rn->nlisteners++] = r;
    rn->unix_created = true;
  }
  for (i = 0; i < o->ntcp; i++) {
    r = nbd_listen_tcp(o->tcp[i], rn->listeners + rn->nlisteners,
                       MAX_LISTENERS - rn->nlisteners);
    if (r < 0) {
      fail("%s", disk_last_error());
      return r;
    }
    rn->nlisteners += r;
  }
  if (o->socket_activation) {
    r = activation_fds(rn->listeners + rn->nlisteners, MAX_LISTENERS - rn->nlisteners);
    if (r < 0) {
      fail("--socket-activation: no sockets passed (LISTEN_PID/LISTEN_FDS)");
      return r;
    }
    rn->nlisteners += r;
  }
  if (o->fuse_file) {
    r = fuse_export_mount(rn->disk, o->fuse_file, o->readonly, &rn->fuse);
    if (r < 0) {
      fail("%s", disk_last_error());
      return r;
    }
    fuse_export_set_log(rn->fuse, log_to_stderr, &rn->o.verbose);
  }
  if (o->control_path) {
    rn->control_fd = nbd_listen_unix(o->control_path);
    if (rn->control_fd < 0) {
      fail("%s", disk_last_error());
      return rn->control_fd;
    }
    rn->control_created = true;
  }
  if (o->pidfile) {
    r = pidfile_prepare(o->pidfile, rn->pidfile_tmp, sizeof rn->pidfile_tmp);
    if (r < 0) {
      fail("%s: %s", o->pidfile, strerror(-r));
      return r;
    }
    rn->pidfile_prepared = true;
  }
  return 0;
}

/* DISM_NBD_SENDFILE=0: the copy path for every READ, as --no-sendfile
 * (for a server started by dism, whose options are its own). */
static bool
no_sendfile_env(void)
{
  const char *v = getenv("DISM_NBD_SENDFILE");
  return v && strcmp(v, "0") == 0;
}

/* The NBD server, created once the sandbox's first step is in force, and
 * then its seccomp filter (after the TLS credentials are read). */
static int
create_server(struct run *rn)
{
  const struct options *o = &rn->o;
  struct nbd_server_config cfg = {
    .export_name = o->export_name,
    .description = o->description,
    .readonly = o->readonly,
    .no_multi_conn = o->no_multi_conn,
    .no_sendfile = o->no_sendfile || no_sendfile_env(),
    .threads = o->threads,
    .handshake_timeout = o->handshake_timeout,
    .log = log_to_stderr,
    .log_opaque = &rn->o.verbose,
    .tls = (enum nbd_tls_mode) o->tls,
    .tls_certificates = o->tls_certificates,
    .tls_psk = o->tls_psk,
    .tls_verify_peer = o->tls_verify_peer,
  };
  int r;

  /* Set up: give up what serving does not need, before any thread exists
   * (sandbox.c; docs/nbd-server.md, PRIVILEGES). */
  if (rn->sb && lock_down(o, rn->sb, rn->fuse) < 0) {
    fail("%s (--no-sandbox turns the sandbox off)", disk_last_error());
    return -1;
  }
  r = nbd_server_new(rn->disk, &cfg, &rn->srv);
  if (r < 0) {
    fail("%s", disk_last_error());
    return r;
  }
  if (rn->sb) {
    r = sandbox_filter_syscalls(rn->sb);
    if (r < 0) {
      fail("%s (--no-sandbox turns the sandbox off)", disk_last_error());
      return r;
    }
    if (o->verbose || rn->selftest)
      fail("%s", sandbox_describe(rn->sb));
  }
  if (rn->selftest)
    sandbox_selftest(o->image);
  return 0;
}

/* Start every server thread (FUSE, control, the --fd connections), then
 * publish the pid file: from then on the server serves. */
static int
start_serving(struct run *rn)
{
  const struct options *o = &rn->o;
  int i, r;

  if (rn->fuse) {
    r = fuse_export_serve(rn->fuse);
    if (r < 0) {
      fail("%s: %s", o->fuse_file, disk_last_error());
      return r;
    }
  }
  if (rn->control_fd >= 0) {
    r = control_start_fd(rn->control_fd, rn->disk, rn->srv, &rn->control);
    rn->control_fd = -1;
    if (r < 0) {
      fail("%s: %s", o->control_path, disk_last_error());
      return r;
    }
  }
  for (i = 0; i < o->nfds; i++)
    nbd_server_start_fd(rn->srv, o->fds[i], false);
  for (i = 0; i < o->ntransmission_fds; i++)
    nbd_server_start_fd(rn->srv, o->transmission_fds[i], true);

  if (rn->pidfile_prepared) {
    if (rename(rn->pidfile_tmp, o->pidfile) < 0) {
      fail("%s: %s", o->pidfile, strerror(errno));
      return -1;
    }
    rn->pidfile_prepared = false;
    rn->pidfile_written = true;
  }
  return 0;
}

/* Accept connections until a stop signal, or until idle when that ends
 * the server.  0, or -1 if poll failed. */
static int
serve_loop(struct run *rn)
{
  const struct options *o = &rn->o;
  struct pollfd pfd[MAX_LISTENERS + 2];
  int n = rn->nlisteners, i;

  for (i = 0; i < n; i++)
    pfd[i] = (struct pollfd) { .fd = rn->listeners[i], .events = POLLIN };
  pfd[n] = (struct pollfd) { .fd = rn->sigfd, .events = POLLIN };
  pfd[n + 1] = (struct pollfd) { .fd = nbd_server_event_fd(rn->srv), .events = POLLIN };
  for (;;) {
    if (poll(pfd, (nfds_t) n + 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      fail("poll: %s", strerror(errno));
      return -1;
    }
    if (pfd[n].revents) {
      if (o->verbose)
        fail("signal received: shutting down");
      return 0;
    }
    if (pfd[n + 1].revents) {
      uint64_t ended;
      if (read(pfd[n + 1].fd, &ended, sizeof ended) < 0) {
        /* spurious wakeup: the count below decides */
      }
      /* Without listeners nothing new can come: the same as idle exit. */
      if ((o->exit_when_idle || n == 0) &&
          nbd_server_connections(rn->srv) == 0 &&
          nbd_server_connections_total(rn->srv) > 0)
        return 0;
    }
    for (i = 0; i < n; i++) {
      int fd;

      if (!pfd[i].revents)
        continue;
      fd = accept4(rn->listeners[i], NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED && o->verbose)
          fail("accept: %s", strerror(errno));
        continue;
      }
      nbd_server_start_fd(rn->srv, fd, false);
    }
  }
}

/* Stop accepting, let in-flight requests finish, then flush; undo what
 * was set up.  Returns the exit status. */
static int
teardown(struct run *rn, int status)
{
  const struct options *o = &rn->o;
  bool fuse_running = false;
  int i;

  for (i = 0; i < rn->nlisteners; i++)
    close(rn->listeners[i]);
  if (rn->unix_created)
    unlink(o->unix_path);
  control_stop(rn->control);
  if (rn->control_fd >= 0)
    close(rn->control_fd);
  if (rn->control_created)
    unlink(o->control_path);
  if (fuse_export_stop(rn->fuse) < 0) {
    fail("%s (its FUSE threads are left to the exit)", disk_last_error());
    fuse_running = true;
    status = 1;
  }
  if (rn->srv) {
    nbd_server_shutdown(rn->srv);
    nbd_server_free(rn->srv);
  }
  if (rn->disk) {
    if (!rn->disk->readonly && disk_flush(rn->disk) < 0) {
      fail("%s", disk_last_error());
      status = 1;
    }
    if (!fuse_running)
      disk_close(rn->disk);
  }
  if (rn->pidfile_written)
    unlink(o->pidfile);
  if (rn->pidfile_prepared)
    unlink(rn->pidfile_tmp);
  sandbox_free(rn->sb);
  if (rn->sigfd >= 0)
    close(rn->sigfd);
  return status;
}

int
main(int argc, char **argv)
{
  struct run rn = {
    .o = { .export_name = "", .description = "", .tls = -1 },
    .sigfd = -1,
    .control_fd = -1,
  };
  int status = 1, r;

  r = parse_args(argc, argv, &rn.o);
  if (r != 0)
    return r == 2 ? 0 : 1;
  dism_test_hooks_init();
  rn.selftest = dism_test_sandbox_selftest();

  if (setup_process(&rn) == 0 &&
      open_image(&rn.o, &rn.disk) == 0 &&
      open_endpoints(&rn) == 0 &&
      create_server(&rn) == 0 &&
      start_serving(&rn) == 0 &&
      serve_loop(&rn) == 0)
    status = 0;
  return teardown(&rn, status);
}
