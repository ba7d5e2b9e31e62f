/*
 * kata-ts-vmguard: who owns a cached VM's QEMU (docs/factory.md#vm-cache). QEMU is started by the cache
 * server but must end up owned by the sandbox service that takes the VM, and die with it even when that
 * service is SIGKILLed. QEMU cannot change its parent, so it runs under this guard, and ownership is a
 * descriptor: the guard's "lifeline", one end of a socketpair whose other end the owner holds.
 *
 *   kata-ts-vmguard run CONTROL_SOCKET STDERR_FILE -- CMD ARGS...
 *       fd 3 is the first owner's lifeline. Runs CMD (QEMU) as a child that gets SIGKILL when the guard
 *       dies (PR_SET_PDEATHSIG), its stderr appended to STDERR_FILE. Tells the owner "P <pid>\n". When
 *       the lifeline reads EOF (the owner closed it or died), SIGKILLs CMD and exits. When CMD exits,
 *       tells the owner "X <status>\n" (exit code, or 128+signal) and exits. Listens once on
 *       CONTROL_SOCKET (mode 0600) for a new lifeline: the first connection from our own uid that passes
 *       a socket over SCM_RIGHTS becomes the owner ("P <pid>\n" to it), the old owner is told "A\n"
 *       (adopted) and let go, and the control socket is removed.
 *
 *   kata-ts-vmguard adopt CONTROL_SOCKET
 *       Sends fd 3 (the new owner's end) to CONTROL_SOCKET and exits 0 once the guard took it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "kata-ts-vmguard: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void say(int fd, const char *fmt, long v) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, fmt, v);
  if (fd >= 0 && n > 0) (void)!send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int unix_addr(struct sockaddr_un *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(a->sun_path, path);
  return 0;
}

/* One handoff: a socket descriptor from a peer of our uid, or -1. */
static int receive_lifeline(int ctl) {
  int conn = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) return -1;
  struct ucred cred;
  socklen_t len = sizeof cred;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != getuid()) {
    close(conn);
    return -1;
  }
  char data;
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = &data, .iov_len = 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  int fd = -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (n == 1 && c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
      c->cmsg_len == CMSG_LEN(sizeof(int))) {
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
      close(fd);
      fd = -1;
    }
  }
  /* The sender waits for this close: the guard holds the new lifeline from here on. */
  close(conn);
  return fd;
}

static int run(const char *ctl_path, const char *stderr_path, char **argv) {
  int life = 3;
  if (fcntl(life, F_GETFD) < 0) die("fd 3 (lifeline)");
  fcntl(life, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  int errfd = open(stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (errfd < 0) die("open stderr file");
  struct sockaddr_un addr;
  if (unix_addr(&addr, ctl_path) < 0) die("control socket path");
  int ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ctl < 0) die("socket");
  mode_t old = umask(0177);
  if (bind(ctl, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind control socket");
  umask(old);
  if (listen(ctl, 4) < 0) die("listen");

  pid_t guard = getpid();
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) _exit(125);
    if (getppid() != guard) _exit(125);
    signal(SIGPIPE, SIG_DFL);
    dup2(errfd, 2);
    execvp(argv[0], argv);
    fprintf(stderr, "kata-ts-vmguard: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  dup2(errfd, 2);
  close(errfd);
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) {
    kill(child, SIGKILL);
    die("pidfd_open");
  }
  say(life, "P %ld\n", (long)child);

  for (;;) {
    struct pollfd p[3] = {
        {.fd = life, .events = POLLIN},
        {.fd = pidfd, .events = POLLIN},
        {.fd = ctl, .events = POLLIN},
    };
    if (poll(p, ctl >= 0 ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) {
      int status = 0;
      if (waitpid(child, &status, 0) < 0) break;
      long code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      say(life, "X %ld\n", code);
      return 0;
    }
    if (p[0].revents) {
      char buf[256];
      ssize_t n = recv(life, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break; /* the owner is gone */
    }
    if (ctl >= 0 && p[2].revents) {
      int fresh = receive_lifeline(ctl);
      if (fresh >= 0) {
        say(life, "A\n", 0);
        close(life);
        life = fresh;
        close(ctl);
        ctl = -1;
        unlink(ctl_path);
        say(life, "P %ld\n", (long)child);
      }
    }
  }
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  if (ctl >= 0) unlink(ctl_path);
  return 0;
}

static int adopt(const char *ctl_path) {
  int fd = 3;
  if (fcntl(fd, F_GETFD) < 0) die("fd 3 (lifeline)");
  struct sockaddr_un addr;
  if (unix_addr(&addr, ctl_path) < 0) die("control socket path");
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect to the guard");
  char data = 'L';
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = &data, .iov_len = 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  if (sendmsg(s, &msg, MSG_NOSIGNAL) != 1) die("send the lifeline");
  /* The guard closes the connection once it holds the descriptor (or refused it). */
  char b;
  while (read(s, &b, 1) > 0) {
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 6 && strcmp(argv[1], "run") == 0 && strcmp(argv[4], "--") == 0) return run(argv[2], argv[3], argv + 5);
  if (argc == 3 && strcmp(argv[1], "adopt") == 0) return adopt(argv[2]);
  fprintf(stderr, "usage: kata-ts-vmguard run CONTROL_SOCKET STDERR_FILE -- CMD ARGS... | adopt CONTROL_SOCKET\n");
  return 125;
}
