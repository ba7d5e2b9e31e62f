/*
 * kata-ts-exec: starts a program holding no file descriptor but the ones it was given (the
 * CVE-2024-21626 class: a descriptor the caller of kata-ts left open without close-on-exec must not
 * reach the sandbox service, QEMU or any helper). Node opens its own descriptors close-on-exec but can
 * neither mark nor close the ones it inherited, so every child the host side starts goes through this.
 *
 *   kata-ts-exec [--keep N] [--argv0 NAME] [--status-fd FD] -- PROG ARGS...
 *
 * Keeps 0, 1, 2 and the N descriptors after them (3 .. 3+N-1), closes every other one (close_range(2);
 * on kernels before 5.9, each one listed in /proc/self/fd), then execvp(PROG) with argv[0] NAME
 * (default PROG). With --status-fd, FD (>= 3+N) is kept too, but close-on-exec: a successful exec closes
 * it with nothing written; a failure writes one line "<step> <ERRNO> <message>" to it (step: close or
 * exec; ERRNO: ENOENT, EACCES...) and exits 127 when PROG does not exist, 126 otherwise (the shell's
 * codes). Without --status-fd that line goes to stderr. Bad arguments: exit 125.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int status_fd = -1;

static void usage(const char *why) {
  fprintf(stderr, "kata-ts-exec: %s\nusage: kata-ts-exec [--keep N] [--argv0 NAME] [--status-fd FD] -- PROG ARGS...\n",
          why);
  exit(125);
}

static void fail(const char *step, int err) {
  const char *name = strerrorname_np(err);
  dprintf(status_fd >= 0 ? status_fd : 2, "%s %s %s\n", step, name == NULL ? "EUNKNOWN" : name, strerror(err));
  exit(err == ENOENT ? 127 : 126);
}

static int parse_fd_number(const char *s, const char *flag) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX - 3) usage(flag);
  return (int)v;
}

/* Closes every descriptor >= first except `except` (-1: none): /proc/self/fd when close_range is missing. */
static int close_listed(int first, int except) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int own = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    if (fd >= first && fd != own && fd != except) close(fd);
  }
  closedir(d);
  return 0;
}

static int close_from(unsigned first, unsigned last) {
#ifdef SYS_close_range
  if (first > last) return 0;
  return (int)syscall(SYS_close_range, first, last, 0U);
#else
  (void)first;
  (void)last;
  errno = ENOSYS;
  return -1;
#endif
}

static void close_others(int first) {
  int r;
  if (status_fd < 0) {
    r = close_from((unsigned)first, ~0U);
  } else {
    r = close_from((unsigned)first, (unsigned)status_fd - 1);
    if (r == 0) r = close_from((unsigned)status_fd + 1, ~0U);
  }
  if (r == 0) return;
  /* ENOSYS: a kernel before 5.9; EINVAL: one that knows the call but not these arguments. */
  if (errno != ENOSYS && errno != EINVAL) fail("close", errno);
  if (close_listed(first, status_fd) != 0) fail("close", errno);
}

int main(int argc, char **argv) {
  int keep = 0;
  const char *argv0 = NULL;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) {
      keep = parse_fd_number(argv[++i], "--keep: not a count");
    } else if (strcmp(argv[i], "--argv0") == 0 && i + 1 < argc) {
      argv0 = argv[++i];
    } else if (strcmp(argv[i], "--status-fd") == 0 && i + 1 < argc) {
      status_fd = parse_fd_number(argv[++i], "--status-fd: not a descriptor");
    } else {
      usage("unknown or incomplete option");
    }
  }
  if (i + 1 >= argc) usage("no program after --");
  if (status_fd >= 0 && status_fd < 3 + keep) usage("--status-fd must come after the kept descriptors");
  if (status_fd >= 0 && fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) {
    int err = errno;
    status_fd = -1;
    fail("close", err);
  }
  close_others(3 + keep);
  char **args = &argv[i + 1];
  const char *prog = args[0];
  if (argv0 != NULL) args[0] = (char *)argv0;
  execvp(prog, args);
  fail("exec", errno);
  return 126;
}
