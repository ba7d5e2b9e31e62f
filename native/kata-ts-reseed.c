/*
 * kata-ts-reseed: gives the guest kernel's random number generator fresh seed from the host. A VM
 * restored from a template (docs/factory.md) starts with the template's CRNG state, so every clone
 * would otherwise produce the same /dev/urandom bytes (and boot_id) until its next scheduled reseed.
 *
 *   kata-ts-reseed < SEED        (1..4096 bytes)
 *
 * Adds SEED to the input pool with RNDADDENTROPY (credited: the host's bytes are random), then forces
 * a reseed with RNDRESEEDCRNG, so the next read of /dev/urandom or getrandom(2) already derives from
 * it. Node has no ioctl(2), hence this helper. Needs CAP_SYS_ADMIN (the agent runs as root).
 * Exit status: 0 reseeded, 1 failed (message on stderr), 2 no seed.
 *
 *   kata-ts-reseed --serve
 *
 * The agent's long-lived helper for a template clone's first calls (docs/factory.md): spawning a
 * process from the agent costs a fork of the whole Node process, 0.1-0.3 s under TCG, so the agent
 * starts this once (in the template, where clones inherit it) and sends it requests on stdin:
 * one byte op, a 4-byte little-endian length, the payload. 'R': a seed (1..4096 bytes), as above.
 * 'T': the clock, two little-endian int64 (seconds, microseconds since the epoch), set with
 * clock_settime. Each answer on stdout: one status byte (0 done, 1 failed), a 4-byte little-endian
 * length, the message. Ends at EOF on stdin (status 0) or at a malformed request (status 2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEED 4096

/* Mixes n bytes of seed into the input pool (credited) and forces a CRNG reseed; 0 or an error message. */
static const char *reseed(const unsigned char *seed, size_t n) {
  static union {
    struct rand_pool_info info;
    unsigned char raw[sizeof(struct rand_pool_info) + MAX_SEED];
  } req;
  static char why[160];
  memcpy(req.raw + sizeof(struct rand_pool_info), seed, n);
  req.info.entropy_count = (int)(n * 8);
  req.info.buf_size = (int)n;
  int fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(why, sizeof why, "open /dev/random: %s", strerror(errno));
    return why;
  }
  const char *what = NULL;
  if (ioctl(fd, RNDADDENTROPY, &req.info) != 0) {
    what = "RNDADDENTROPY";
  } else if (ioctl(fd, RNDRESEEDCRNG) != 0) {
    what = "RNDRESEEDCRNG";
  }
  if (what != NULL) snprintf(why, sizeof why, "%s: %s", what, strerror(errno));
  close(fd);
  return what == NULL ? NULL : why;
}

/* Reads exactly n bytes; 1 read, 0 EOF before the first byte, -1 error or EOF within. */
static int read_full(unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(0, buf + got, n - got);
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)r;
  }
  return 1;
}

static int write_full(const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

static uint64_t le64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

static int answer(const char *err) {
  size_t n = err == NULL ? 0 : strlen(err);
  unsigned char head[5] = {err == NULL ? 0 : 1, (unsigned char)n, (unsigned char)(n >> 8), 0, 0};
  if (write_full(head, sizeof head) != 0) return -1;
  return n == 0 ? 0 : write_full((const unsigned char *)err, n);
}

static int serve(void) {
  static unsigned char payload[MAX_SEED];
  for (;;) {
    unsigned char head[5];
    int r = read_full(head, sizeof head);
    if (r == 0) return 0;
    if (r < 0) return 2;
    uint32_t n = (uint32_t)head[1] | (uint32_t)head[2] << 8 | (uint32_t)head[3] << 16 | (uint32_t)head[4] << 24;
    if (n > MAX_SEED || read_full(payload, n) != 1) {
      fprintf(stderr, "kata-ts-reseed: malformed request (op %d, %u bytes)\n", head[0], n);
      return 2;
    }
    const char *err = NULL;
    static char why[160];
    if (head[0] == 'R' && n >= 1) {
      err = reseed(payload, n);
    } else if (head[0] == 'T' && n == 16) {
      int64_t sec = (int64_t)le64(payload), usec = (int64_t)le64(payload + 8);
      struct timespec ts = {.tv_sec = (time_t)sec, .tv_nsec = (long)(usec * 1000)};
      if (usec < 0 || usec >= 1000000) {
        err = "clock: microseconds out of range";
      } else if (clock_settime(CLOCK_REALTIME, &ts) != 0) {
        snprintf(why, sizeof why, "clock_settime: %s", strerror(errno));
        err = why;
      }
    } else {
      fprintf(stderr, "kata-ts-reseed: malformed request (op %d, %u bytes)\n", head[0], n);
      return 2;
    }
    if (answer(err) != 0) return 1;
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--serve") == 0) return serve();
  static unsigned char seed[MAX_SEED];
  size_t n = 0;
  while (n < MAX_SEED) {
    ssize_t r = read(0, seed + n, MAX_SEED - n);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "kata-ts-reseed: read seed: %s\n", strerror(errno));
      return 1;
    }
    n += (size_t)r;
  }
  if (n == 0) {
    fprintf(stderr, "kata-ts-reseed: no seed on stdin\n");
    return 2;
  }
  const char *err = reseed(seed, n);
  if (err != NULL) {
    fprintf(stderr, "kata-ts-reseed: %s\n", err);
    return 1;
  }
  return 0;
}
