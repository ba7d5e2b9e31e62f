/*
 * kata-ts-sealed-exec: runs PROG from a sealed in-memory copy of itself.
 *
 *   kata-ts-sealed-exec PROG ARGS...
 *
 * crun defends against CVE-2019-5736 (a container overwriting the runtime through /proc/<pid>/exe) by
 * re-executing itself from a read-only bind mount and then from a sealed memfd copy, at every command,
 * unless /proc/self/exe already is a memfd sealed with exactly F_SEAL_SEAL|SHRINK|GROW|WRITE or lies on
 * a read-only filesystem (then the agent runs crun direct, and this only for crun exec: see
 * src/guest/crun-launcher.ts). Each of those executions links crun's ten shared libraries again, which
 * under TCG costs more than the command itself. This makes that copy once, before crun starts: crun
 * runs once, and the defence holds (the memfd can be neither written nor resized, and the file it came
 * from is on the read-only tools disk). argv[0] stays PROG. Exit 125: bad arguments; 127: PROG cannot
 * be opened; 126: the copy or the exec failed (each with a line on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int main(int argc, char **argv) {
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
