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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_SEED 4096

int main(void) {
  /* struct rand_pool_info ends in a flexible array: the seed follows the two counts. */
  static union {
    struct rand_pool_info info;
    unsigned char raw[sizeof(struct rand_pool_info) + MAX_SEED];
  } req;
  unsigned char *seed = req.raw + sizeof(struct rand_pool_info);
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
  req.info.entropy_count = (int)(n * 8);
  req.info.buf_size = (int)n;
  int fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "kata-ts-reseed: open /dev/random: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(fd, RNDADDENTROPY, &req.info) != 0) {
    fprintf(stderr, "kata-ts-reseed: RNDADDENTROPY: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(fd, RNDRESEEDCRNG) != 0) {
    fprintf(stderr, "kata-ts-reseed: RNDRESEEDCRNG: %s\n", strerror(errno));
    return 1;
  }
  close(fd);
  return 0;
}
