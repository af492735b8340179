/* SPDX-License-Identifier: GPL-2.0-or-later */
/* proc-counts.h - what a test driver counts of its own process (descriptors,
 * threads, children) and the small helpers both cycle drivers share
 * (test-fd-cycles.c, test-parallel-cycles.c). */
#ifndef DISM_TEST_PROC_COUNTS_H
#define DISM_TEST_PROC_COUNTS_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "path-size.h"

/* A wide copy of a multibyte string (aborts when out of memory). */
static inline wchar_t *
W(const char *s)
{
  size_t n = mbstowcs(NULL, s, 0);
  wchar_t *w = calloc(n + 1, sizeof *w);
  if (!w)
    abort();
  mbstowcs(w, s, n + 1);
  return w;
}

/* Open descriptors, not counting the one that lists them; -1 if unknown.
 * With show, each is printed with its target (to diagnose a leak). */
static inline int
count_fds(bool show)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;

  if (!d)
    return -1;
  while ((e = readdir(d))) {
    char path[300], target[DISM_PATH_MAX];
    ssize_t len;
    if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
      continue;
    n++;
    if (!show)
      continue;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    len = readlink(path, target, sizeof target - 1);
    target[len > 0 ? len : 0] = '\0';
    printf("#   fd %s -> %s\n", e->d_name, target);
  }
  closedir(d);
  return n;
}

/* Threads of this process; -1 if unknown. */
static inline int
count_threads(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;

  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  fclose(f);
  return n;
}

/* Child processes (live or zombie) of every thread of this process; -1 if
 * the kernel does not say (no CONFIG_PROC_CHILDREN). */
static inline int
count_children(void)
{
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;

  if (!d)
    return -1;
  while ((e = readdir(d))) {
    char path[300];
    int c;
    FILE *f;
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
    if (!(f = fopen(path, "r"))) {
      n = -1;
      break;
    }
    while ((c = fgetc(f)) != EOF)
      n += c == ' ';   /* "pid pid " */
    fclose(f);
  }
  closedir(d);
  return n;
}

static inline double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
