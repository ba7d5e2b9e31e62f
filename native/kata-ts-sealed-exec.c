/*
 * kata-ts-sealed-exec: runs PROG from a sealed in-memory copy of itself.
 *
 *   kata-ts-sealed-exec PROG ARGS...
 *
 * crun defends against CVE-2019-5736 (a container overwriting the runtime through /proc/<pid>/exe) by
 * re-executing itself from a read-only bind mount and then from a sealed memfd copy, at every command,
 * unless /proc/self/exe already is a memfd sealed with exactly F_SEAL_SEAL|SHRINK|GROW|WRITE. In the
 * guest each of those executions links crun's ten shared libraries again, which under TCG costs more
 * than the command itself. This makes that copy once, before crun starts: crun runs once, and the
 * defence holds (the memfd can be neither written nor resized, and the file it came from is on the
 * read-only tools disk). argv[0] stays PROG. Exit 125: bad arguments; 127: PROG cannot be opened;
 * 126: the copy or the exec failed (each with a line on stderr).
 *
 *   kata-ts-sealed-exec --standby
 *
 * Started ahead of need, with its stdio already connected: waits for PROG ARGS... on descriptor 3 (each
 * argument NUL-terminated, then EOF), then goes on as above. The agent keeps one ready while the guest is
 * idle, so that starting crun does not fork the agent (a ~50 MB Node process: 15-40 ms under TCG, more
 * under load) on the container's critical path; the pid, the stdio pipes, the exit status and every
 * signal are crun's, as with a direct start. EOF with nothing read: exit 0 (not needed after all).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

#define STANDBY_MAX (256 * 1024)

/* Reads the NUL-terminated arguments from descriptor 3 into a fresh argv (argv[0] kept); NULL on EOF at once. */
static char **standby_args(char *self, int *argc) {
  static char buf[STANDBY_MAX];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(3, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fprintf(stderr, "kata-ts-sealed-exec: read arguments: %s\n", strerror(errno));
      exit(125);
    }
    if (n == 0) break;
    len += (size_t)n;
    if (len == sizeof buf) {
      fprintf(stderr, "kata-ts-sealed-exec: arguments longer than %d bytes\n", STANDBY_MAX);
      exit(125);
    }
  }
  close(3);
  if (len == 0) return NULL;
  if (buf[len - 1] != '\0') {
    fprintf(stderr, "kata-ts-sealed-exec: arguments not NUL-terminated\n");
    exit(125);
  }
  int n = 0;
  for (size_t i = 0; i < len; i++) n += buf[i] == '\0';
  char **av = calloc((size_t)n + 2, sizeof *av);
  if (av == NULL) exit(126);
  av[0] = self;
  char *p = buf;
  for (int i = 1; i <= n; i++) {
    av[i] = p;
    p += strlen(p) + 1;
  }
  *argc = n + 1;
  return av;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--standby") == 0) {
    argv = standby_args(argv[0], &argc);
    if (argv == NULL) return 0;
  }
  if (argc < 2 || argv[1][0] != '/') {
    fprintf(stderr, "usage: kata-ts-sealed-exec /ABSOLUTE/PROG ARGS...\n");
    return 125;
  }
  const char *prog = argv[1];
  int src = open(prog, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (src < 0 || fstat(src, &st) < 0) {
    fprintf(stderr, "kata-ts-sealed-exec: open %s: %s\n", prog, strerror(errno));
    return 127;
  }
  int fd = memfd_create("kata-ts-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    fprintf(stderr, "kata-ts-sealed-exec: memfd_create: %s\n", strerror(errno));
    return 126;
  }
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));
    if (n <= 0) {
      fprintf(stderr, "kata-ts-sealed-exec: copy %s: %s\n", prog, n == 0 ? "file shrank" : strerror(errno));
      return 126;
    }
  }
  close(src);
  if (fcntl(fd, F_ADD_SEALS, SEALS) < 0) {
    fprintf(stderr, "kata-ts-sealed-exec: seal: %s\n", strerror(errno));
    return 126;
  }
  /* MFD_CLOEXEC is fine for an ELF binary: the kernel has it mapped before the descriptor closes. */
  fexecve(fd, argv + 1, environ);
  fprintf(stderr, "kata-ts-sealed-exec: exec %s: %s\n", prog, strerror(errno));
  return 126;
}
