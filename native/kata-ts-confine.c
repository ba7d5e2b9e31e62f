/*
 * kata-ts-confine: starts QEMU unable to make a file that is more than data on the host. QEMU runs as
 * root and its 9p server (security_model=none) does what the guest asks in the shared directories: a
 * guest could otherwise leave setuid or setgid binaries (owned by root, or chowned to a privileged
 * group), device nodes, or file capabilities in a read-write volume, for a host process to run.
 * security_model=mapped-xattr would keep those in xattrs, but it cannot read the real symlinks every
 * image and host directory holds; this seccomp filter refuses the calls instead (EPERM in the guest).
 *
 *   kata-ts-confine -- PROG ARGS...
 *
 * Sets no_new_privs and a seccomp filter, then execvp(PROG). The filter (x86_64; any other syscall ABI
 * kills the process, so no numbering of another architecture can slip past it) refuses with EPERM:
 *   chmod, fchmod, fchmodat, fchmodat2   a mode with S_ISUID or S_ISGID
 *   open, openat, creat                  O_CREAT with S_ISUID or S_ISGID in the mode
 *   mknod, mknodat                       a character or block device, or S_ISUID/S_ISGID
 *   setxattr, lsetxattr, fsetxattr       any (security.capability would grant file capabilities)
 * and openat2 with ENOSYS (its mode is in a struct a filter cannot read; callers fall back to openat).
 * Everything else is allowed. Exit status: 125 bad usage, 126 filter or exec failed, 127 no PROG.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif

#define ARG_LO(n) (offsetof(struct seccomp_data, args) + (n) * sizeof(__u64))
#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define DENY BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define SETID (S_ISUID | S_ISGID)

/* Jumps are relative to the next instruction: each block below is laid out so its offsets are local. */
static struct sock_filter filter[] = {
    LOAD(offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    LOAD(offsetof(struct seccomp_data, nr)),
    /* x32 syscalls share the arch value: refuse them outright. */
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),

    /* mode in args[1]: chmod, fchmod, creat */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_chmod, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmod, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_creat, 0, 4),
    LOAD(ARG_LO(1)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 0, 1),
    DENY,
    ALLOW,
    /* mode in args[2]: fchmodat, fchmodat2 */
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmodat, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmodat2, 0, 4),
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 0, 1),
    DENY,
    ALLOW,
    /* open: flags in args[1], mode in args[2] */
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_open, 0, 6),
    LOAD(ARG_LO(1)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, O_CREAT, 0, 3),
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 0, 1),
    DENY,
    ALLOW,
    /* openat: flags in args[2], mode in args[3] */
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 0, 6),
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, O_CREAT, 0, 3),
    LOAD(ARG_LO(3)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 0, 1),
    DENY,
    ALLOW,
    /* mknod: mode in args[1]; mknodat: mode in args[2] */
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknod, 0, 1),
    BPF_JUMP(BPF_JMP | BPF_JA, 3, 0, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknodat, 0, 9),
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0),
    LOAD(ARG_LO(1)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 4, 0),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, S_IFMT),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFCHR, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFBLK, 1, 0),
    ALLOW,
    DENY,
    /* xattrs that can carry privilege */
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setxattr, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_lsetxattr, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fsetxattr, 0, 1),
    DENY,
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
    ALLOW,
};

int main(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "--") != 0) {
    fputs("usage: kata-ts-confine -- PROG ARGS...\n", stderr);
    return 125;
  }
  struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
    fprintf(stderr, "kata-ts-confine: seccomp: %s\n", strerror(errno));
    return 126;
  }
  execvp(argv[2], &argv[2]);
  fprintf(stderr, "kata-ts-confine: exec %s: %s\n", argv[2], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
