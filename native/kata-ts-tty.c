/*
 * kata-ts-tty: the pseudo-terminal pieces Node cannot do (it can neither allocate a pty nor pass file
 * descriptors over a unix socket).
 *
 *   kata-ts-tty run ROWS COLS RESIZE_FILE -- CMD ARGS...
 *       (guest) runs CMD on a new pty: CMD gets the slave as its controlling terminal and stdio; our
 *       stdin is copied to the master and the master's output to our stdout. SIGUSR1 re-reads
 *       "ROWS COLS" from RESIZE_FILE and resizes the pty. Exits with CMD's status (128+N if killed).
 *
 *   kata-ts-tty console SOCKET STDIN_FIFO STDOUT_FIFO [WINSIZE_FIFO]
 *       (host, OCI --console-socket) makes a pty, sends its master to SOCKET (SCM_RIGHTS, the pty's
 *       name as data) and copies between the slave and the fifos the runtime service opens, until the
 *       container's output ends. Prints the copier's pid. With WINSIZE_FIFO, the slave is the copier's
 *       controlling terminal, so a resize of the master (the caller's TIOCSWINSZ) reaches it as SIGWINCH:
 *       it writes "ROWS COLS" lines there for the stand-in to pass to the guest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t resize_pending = 0;
static void on_usr1(int sig) { (void)sig; resize_pending = 1; }
static volatile sig_atomic_t winch_pending = 0;
static void on_winch(int sig) { (void)sig; winch_pending = 1; }

static void die(const char *what) {
  fprintf(stderr, "kata-ts-tty: %s: %s\n", what, strerror(errno));
  exit(125);
}

static int open_master(char *name, size_t len) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) die("posix_openpt");
  if (grantpt(m) < 0 || unlockpt(m) < 0) die("grantpt/unlockpt");
  if (ptsname_r(m, name, len) != 0) die("ptsname");
  return m;
}

static void set_size(int fd, int rows, int cols) {
  struct winsize ws = {0};
  if (rows <= 0 || cols <= 0) return;
  ws.ws_row = (unsigned short)rows;
  ws.ws_col = (unsigned short)cols;
  ioctl(fd, TIOCSWINSZ, &ws);
}

static void resize_from(int master, const char *file) {
  FILE *f = fopen(file, "r");
  int rows = 0, cols = 0;
  if (f == NULL) return;
  if (fscanf(f, "%d %d", &rows, &cols) == 2) set_size(master, rows, cols);
  fclose(f);
}

/* Writes all of buf; a closed reader ends the copy in that direction. */
static int write_all(int fd, const char *buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { struct pollfd p = {fd, POLLOUT, 0}; poll(&p, 1, -1); continue; }
      return -1;
    }
    buf += w;
    n -= w;
  }
  return 0;
}

static int run(int rows, int cols, const char *resize_file, char **argv) {
  /* First of all: a SIGUSR1 before the handler exists would kill us (its default action), and the agent
   * sends one as soon as the process's terminal is resized. It checks SigCgt before signalling; a size
   * written before then is read once below (resize_pending starts set). The child gets SIG_DFL back at exec. */
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  resize_pending = 1;
  char name[128];
  int master = open_master(name, sizeof name);
  set_size(master, rows, cols);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    if (setsid() < 0) die("setsid");
    int slave = open(name, O_RDWR);
    if (slave < 0) die("open pty slave");
    if (ioctl(slave, TIOCSCTTY, 0) < 0) die("TIOCSCTTY");
    dup2(slave, 0); dup2(slave, 1); dup2(slave, 2);
    if (slave > 2) close(slave);
    execvp(argv[0], argv);
    die("exec");
  }
  signal(SIGPIPE, SIG_IGN);
  char buf[65536];
  int in_open = 1;
  for (;;) {
    if (resize_pending) { resize_pending = 0; resize_from(master, resize_file); }
    struct pollfd p[2] = {{master, POLLIN, 0}, {0, in_open ? POLLIN : 0, 0}};
    if (poll(p, in_open ? 2 : 1, -1) < 0) { if (errno == EINTR) continue; die("poll"); }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) { if (n < 0 && errno == EINTR) continue; break; } /* EIO: every slave fd closed */
      if (write_all(1, buf, n) < 0) break;
    }
    if (in_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) { in_open = 0; const char eot = 4; write_all(master, &eot, 1); continue; }
      write_all(master, buf, n);
    }
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

static void send_fd(const char *sock_path, int fd, const char *name) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct sockaddr_un addr = {0};
  addr.sun_family = AF_UNIX;
  if (strlen(sock_path) >= sizeof addr.sun_path) { errno = ENAMETOOLONG; die("console socket path"); }
  strcpy(addr.sun_path, sock_path);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect console socket");
  char control[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {(void *)name, strlen(name)};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(s, &msg, 0) < 0) die("send pty master");
  close(s);
}

/* Writes the slave's size as one "ROWS COLS" line (never blocks: a full or unread fifo drops it). */
static void report_size(int slave, int winsize) {
  struct winsize ws;
  char line[32];
  if (winsize < 0 || ioctl(slave, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0 || ws.ws_col == 0) return;
  int n = snprintf(line, sizeof line, "%u %u\n", (unsigned)ws.ws_row, (unsigned)ws.ws_col);
  if (n > 0 && write(winsize, line, (size_t)n) < 0) { /* dropped: the next resize says it again */ }
}

static int console(const char *sock_path, const char *stdin_fifo, const char *stdout_fifo, const char *winsize_fifo) {
  char name[128];
  int master = open_master(name, sizeof name);
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) die("open pty slave");
  struct termios t;
  if (tcgetattr(slave, &t) == 0) { cfmakeraw(&t); tcsetattr(slave, TCSANOW, &t); } /* the guest's pty cooks */
  /* Open our fifo ends first (the runtime opens the others), then hand the master over. */
  int out = open(stdout_fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int in = open(stdin_fifo, O_RDWR | O_CLOEXEC);
  if (out < 0 || in < 0) die("open fifo");
  /* Read-write: the open never waits for the stand-in, and a write never fails for want of a reader. */
  int winsize = winsize_fifo == NULL ? -1 : open(winsize_fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (winsize_fifo != NULL && winsize < 0) die("open winsize fifo");
  send_fd(sock_path, master, name);
  close(master);
  pid_t copier = fork();
  if (copier < 0) die("fork");
  if (copier > 0) { printf("%d\n", (int)copier); return 0; } /* the caller goes on; the copier stays */
  setsid();
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); } /* never hold the caller's pipes */
  signal(SIGPIPE, SIG_IGN);
  if (winsize >= 0) {
    /* The caller closing the master hangs the slave up: that ends the loop below, not a signal. */
    signal(SIGHUP, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_winch;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, NULL);
    /* As session leader, the slave becomes our controlling terminal and our group its foreground one. */
    if (ioctl(slave, TIOCSCTTY, 0) == 0) report_size(slave, winsize); /* a resize before we got here */
  }
  char buf[65536];
  int writer_seen = 0;
  for (;;) {
    struct pollfd p[2] = {{out, POLLIN, 0}, {slave, POLLIN, 0}};
    int ready = poll(p, 2, -1);
    if (winch_pending) { winch_pending = 0; report_size(slave, winsize); }
    if (ready < 0) { if (errno == EINTR) continue; break; }
    if (p[0].revents & POLLIN) {
      ssize_t n = read(out, buf, sizeof buf);
      if (n > 0) { writer_seen = 1; if (write_all(slave, buf, n) < 0) break; }
      else if (n == 0 && writer_seen) break;
    } else if (p[0].revents & POLLHUP) {
      break; /* the runtime closed the container's output: it exited */
    }
    if (p[1].revents & POLLIN) {
      ssize_t n = read(slave, buf, sizeof buf);
      if (n > 0) write_all(in, buf, n);
    } else if (p[1].revents & (POLLHUP | POLLERR)) {
      break; /* the caller closed the master */
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 6 && strcmp(argv[1], "run") == 0 && strcmp(argv[5], "--") == 0 && argc >= 7)
    return run(atoi(argv[2]), atoi(argv[3]), argv[4], argv + 6);
  if ((argc == 5 || argc == 6) && strcmp(argv[1], "console") == 0)
    return console(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
  fprintf(stderr, "usage: kata-ts-tty run ROWS COLS RESIZE_FILE -- CMD...\n"
                  "       kata-ts-tty console SOCKET STDIN_FIFO STDOUT_FIFO [WINSIZE_FIFO]\n");
  return 2;
}
