/*
 * kata-ts-mount: host binds into a sandbox's share that hold under a race with a hostile guest
 * (CVE-2021-30465, CVE-2020-2026 classes). Node can neither open a path without following symlinks
 * nor mount from a descriptor.
 *
 *   kata-ts-mount bind [--ro] --kind dir|file SOURCE ROOT RELATIVE
 *       Opens SOURCE once, with no symlink anywhere in it (openat2 RESOLVE_NO_SYMLINKS: a component
 *       swapped for a symlink after the runtime resolved it is refused, not followed), checks that
 *       descriptor (its kind, and that its file system is not one of the kernel's own, like /proc),
 *       clones it as a detached mount (nosuid, nodev, read-only with --ro: set before it is attached, so
 *       its propagated copies carry them too), creates RELATIVE below ROOT without following any symlink
 *       without leaving ROOT and without entering another mount below it (RESOLVE_BENEATH |
 *       RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV), and attaches the mount there.
 *       Nothing is looked up by path after it was checked.
 *
 *   kata-ts-mount bind [--ro] --kind dir|file SOURCE ROOT RELATIVE --and [--ro] --kind ... RELATIVE ...
 *       Several binds in one run (a container's rootfs and volumes: one spawn instead of one each), made in
 *       order, each as above; "bound" on stdout after each one made, so that a caller whose batch failed
 *       part way knows which to unbind. The first failure ends the run (its own leftovers removed).
 *
 *   kata-ts-mount mkdir --mode OCTAL [--gid GID] ROOT RELATIVE
 *       Makes directory RELATIVE below ROOT (resolved as above: ROOT is a bind the guest writes in, so
 *       nothing of it is followed) and gives it GID, then MODE (setgid kept: chown first), whether it
 *       was made now or found. For what QEMU may not do for the guest (a setgid directory).
 *
 *   kata-ts-mount unbind ROOT RELATIVE
 *       Unmounts what is mounted at RELATIVE below ROOT (resolved as above; lazily when busy), removes
 *       the mount point and the parents it leaves empty. A RELATIVE that does not exist is not an error.
 *
 *   kata-ts-mount views MOUNTS SHARED
 *       The share's two views of one directory, in one run instead of five mount(8) spawns (~40 ms from
 *       the runtime's Node process): MOUNTS bound on itself with shared propagation (where the runtime
 *       binds), and SHARED a read-only slave bind of it (what QEMU serves: copies of MOUNTS' binds appear
 *       there, and nothing the guest does reaches MOUNTS). Both paths are the runtime's own directories
 *       (mode 0700 under its state dir), not a guest's. On failure what it made is unmounted again.
 *
 * Exit status: 0 done; 2 bad usage; 3 refused (a symlink, an escape, a kernel file system, a wrong
 * kind: the message names it); 1 any other failure. Messages go to stderr, one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#ifndef TRACEFS_MAGIC
#define TRACEFS_MAGIC 0x74726163
#endif
#ifndef EFIVARFS_MAGIC
#define EFIVARFS_MAGIC 0xde5e81e4
#endif

enum { EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

/* What a failing bind made and must take away again: directories below the root on the way to REL. */
static int cleanup_root = -1;
static char *cleanup_rel = NULL;
static void remove_empty_parents(int rootfd, char *rel);

static void fail(int status, const char *fmt, ...) {
  if (cleanup_root >= 0 && cleanup_rel != NULL) remove_empty_parents(cleanup_root, cleanup_rel);
  va_list ap;
  va_start(ap, fmt);
  fputs("kata-ts-mount: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(status);
}

static int openat2_(int dirfd, const char *path, int flags, unsigned long long resolve) {
  struct open_how how = {.flags = (unsigned long long)flags, .resolve = resolve};
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* The error of a path lookup, as the reason a path was refused or failed. */
static void lookup_failed(const char *what, const char *path) {
  int e = errno;
  if (e == ELOOP) fail(EXIT_REFUSED, "%s %s: a component is a symlink: refusing to follow it", what, path);
  if (e == EXDEV) fail(EXIT_REFUSED, "%s %s: leaves its root or enters another mount: refusing", what, path);
  fail(EXIT_FAIL, "%s %s: %s", what, path, strerror(e));
}

/* File systems that are the host kernel's own state: never shared with a guest. */
static int kernel_fs(long type) {
  switch ((unsigned long)type) {
  case PROC_SUPER_MAGIC:
  case SYSFS_MAGIC:
  case CGROUP_SUPER_MAGIC:
  case CGROUP2_SUPER_MAGIC:
  case SECURITYFS_MAGIC:
  case DEBUGFS_MAGIC:
  case TRACEFS_MAGIC:
  case BPF_FS_MAGIC:
  case EFIVARFS_MAGIC:
    return 1;
  default:
    return 0;
  }
}

/* RELATIVE must be a plain relative path: no empty, "." or ".." components (RESOLVE_BENEATH would
 * refuse an escape anyway; this names the problem). */
static void check_relative(const char *rel) {
  if (rel[0] == '\0' || rel[0] == '/') fail(EXIT_USAGE, "relative path \"%s\" must be relative", rel);
  const char *p = rel;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      fail(EXIT_REFUSED, "relative path \"%s\": empty, \".\" or \"..\" component", rel);
    p += n;
    if (*p == '/') p++;
  }
}

static int open_root(const char *root) {
  int fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) lookup_failed("root", root);
  return fd;
}

/*
 * How every path below ROOT is resolved: no symlink, no way out of ROOT, and no crossing into another
 * mount (a volume or rootfs bound earlier, which the guest can write): a mount point is only ever made in
 * ROOT's own directories, which only the host writes.
 */
static const unsigned long long beneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;

/*
 * Creates the parent directories of REL below rootfd (mkdirat, each opened beneath the last with no
 * symlink followed) and returns a descriptor of the last parent; *base points at REL's last component.
 */
static int make_parents(int rootfd, char *rel, char **base) {
  int dirfd = dup(rootfd);
  if (dirfd < 0) fail(EXIT_FAIL, "dup: %s", strerror(errno));
  char *p = rel;
  for (;;) {
    char *slash = strchr(p, '/');
    if (slash == NULL) break;
    *slash = '\0';
    if (mkdirat(dirfd, p, 0755) < 0 && errno != EEXIST) fail(EXIT_FAIL, "mkdir %s: %s", p, strerror(errno));
    int next = openat2_(dirfd, p, O_PATH | O_DIRECTORY | O_CLOEXEC, beneath);
    if (next < 0) lookup_failed("directory", p);
    close(dirfd);
    dirfd = next;
    *slash = '/';
    p = slash + 1;
  }
  *base = p;
  return dirfd;
}

static int bind(int argc, char **argv) {
  int ro = 0;
  const char *kind = NULL;
  int i = 0;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--ro") == 0) ro = 1;
    else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) kind = argv[++i];
    else fail(EXIT_USAGE, "bind: unknown option %s", argv[i]);
  }
  if (kind == NULL || (strcmp(kind, "dir") != 0 && strcmp(kind, "file") != 0) || argc - i != 3)
    fail(EXIT_USAGE, "usage: kata-ts-mount bind [--ro] --kind dir|file SOURCE ROOT RELATIVE");
  const char *source = argv[i], *root = argv[i + 1];
  char *rel = argv[i + 2];
  check_relative(rel);
  if (source[0] != '/') fail(EXIT_USAGE, "source %s must be absolute", source);

  int src = openat2_(AT_FDCWD, source, O_PATH | O_CLOEXEC, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (src < 0) lookup_failed("source", source);
  struct stat st;
  struct statfs sfs;
  if (fstat(src, &st) < 0 || fstatfs(src, &sfs) < 0) fail(EXIT_FAIL, "stat source %s: %s", source, strerror(errno));
  int want_dir = strcmp(kind, "dir") == 0;
  if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
    fail(EXIT_REFUSED, "source %s is not a %s any more", source, want_dir ? "directory" : "regular file");
  if (kernel_fs(sfs.f_type))
    fail(EXIT_REFUSED, "source %s is on a kernel file system (type 0x%lx): refusing to share it", source,
         (unsigned long)sfs.f_type);

  int tree = open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  if (tree < 0) fail(EXIT_FAIL, "clone mount of %s: %s", source, strerror(errno));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0)};
  if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    fail(EXIT_FAIL, "set attributes of %s: %s", source, strerror(errno));

  int rootfd = open_root(root);
  cleanup_root = rootfd;
  free(cleanup_rel);
  cleanup_rel = strdup(rel);
  char *base;
  int parent = make_parents(rootfd, rel, &base);
  int made;
  if (want_dir) {
    made = mkdirat(parent, base, 0755) == 0;
    if (!made && errno != EEXIST) fail(EXIT_FAIL, "mkdir %s: %s", rel, strerror(errno));
  } else {
    int f = openat2_(parent, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, beneath);
    made = f >= 0;
    if (!made && errno != EEXIST) fail(EXIT_FAIL, "create %s: %s", rel, strerror(errno));
    if (made) close(f);
  }
  int target = openat2_(parent, base, O_PATH | O_CLOEXEC | O_NOFOLLOW | (want_dir ? O_DIRECTORY : 0), beneath);
  if (target < 0) {
    int e = errno;
    if (made) unlinkat(parent, base, want_dir ? AT_REMOVEDIR : 0);
    errno = e;
    lookup_failed("mount point", rel);
  }
  if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
    int e = errno;
    if (made) unlinkat(parent, base, want_dir ? AT_REMOVEDIR : 0);
    fail(EXIT_FAIL, "mount %s at %s: %s", source, rel, strerror(e));
  }
  cleanup_root = -1;
  close(target);
  close(parent);
  close(rootfd);
  close(tree);
  close(src);
  return 0;
}

/* Runs the binds of a batch (groups of bind arguments separated by "--and"), reporting each one made. */
static int bind_all(int argc, char **argv) {
  int start = 0;
  for (int i = 0; i <= argc; i++) {
    if (i < argc && strcmp(argv[i], "--and") != 0) continue;
    if (i == start) fail(EXIT_USAGE, "bind: an empty bind in the batch");
    bind(i - start, argv + start);
    if (write(STDOUT_FILENO, "bound\n", 6) != 6) fail(EXIT_FAIL, "report bind: %s", strerror(errno));
    start = i + 1;
  }
  return 0;
}

/* Removes REL's parent directories below rootfd that are empty now, deepest first. */
static void remove_empty_parents(int rootfd, char *rel) {
  char *last;
  while ((last = strrchr(rel, '/')) != NULL) {
    *last = '\0';
    if (unlinkat(rootfd, rel, AT_REMOVEDIR) < 0) return; /* not empty (another bind), or gone */
  }
}

static int unbind(int argc, char **argv) {
  if (argc != 2) fail(EXIT_USAGE, "usage: kata-ts-mount unbind ROOT RELATIVE");
  char *rel = argv[1];
  check_relative(rel);
  int rootfd = open_root(argv[0]);
  char *last = strrchr(rel, '/');
  int parent = rootfd;
  const char *base = rel;
  if (last != NULL) {
    *last = '\0';
    parent = openat2_(rootfd, rel, O_PATH | O_DIRECTORY | O_CLOEXEC, beneath);
    if (parent < 0 && errno == ENOENT) return 0;
    if (parent < 0) lookup_failed("directory", rel);
    *last = '/';
    base = last + 1;
  }
  /* Without RESOLVE_NO_XDEV: the descriptor lands on the mount's own root, which umount2 then names. */
  int target = openat2_(parent, base, O_PATH | O_CLOEXEC | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
  if (target < 0 && errno == ENOENT) return 0;
  if (target < 0) lookup_failed("mount point", rel);
  struct stat st;
  if (fstat(target, &st) < 0) fail(EXIT_FAIL, "stat %s: %s", rel, strerror(errno));
  char fdpath[64];
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", target);
  if (umount2(fdpath, 0) < 0) {
    /* Busy: the VM's 9p server still holds files of it. Detached, it leaves the host's view now and is
     * freed when QEMU lets go. EINVAL: nothing is mounted there (a half-made bind). */
    if (errno == EBUSY) {
      if (umount2(fdpath, MNT_DETACH) < 0) fail(EXIT_FAIL, "detach %s: %s", rel, strerror(errno));
    } else if (errno != EINVAL) {
      fail(EXIT_FAIL, "unmount %s: %s", rel, strerror(errno));
    }
  }
  close(target);
  if (unlinkat(parent, base, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
    fail(EXIT_FAIL, "remove mount point %s: %s", rel, strerror(errno));
  remove_empty_parents(rootfd, rel);
  return 0;
}

static int make_dir(int argc, char **argv) {
  long mode = -1, gid = -1;
  int i = 0;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    char *end = NULL;
    if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      mode = strtol(argv[++i], &end, 8);
      if (*end != '\0' || mode < 0 || mode > 07777) fail(EXIT_USAGE, "mkdir: bad --mode %s", argv[i]);
    } else if (strcmp(argv[i], "--gid") == 0 && i + 1 < argc) {
      gid = strtol(argv[++i], &end, 10);
      if (*end != '\0' || gid < 0 || gid > 0x7fffffff) fail(EXIT_USAGE, "mkdir: bad --gid %s", argv[i]);
    } else {
      fail(EXIT_USAGE, "mkdir: unknown option %s", argv[i]);
    }
  }
  if (mode < 0 || argc - i != 2) fail(EXIT_USAGE, "usage: kata-ts-mount mkdir --mode OCTAL [--gid GID] ROOT RELATIVE");
  char *rel = argv[i + 1];
  check_relative(rel);
  int rootfd = open_root(argv[i]);
  char *base;
  int parent = make_parents(rootfd, rel, &base);
  if (mkdirat(parent, base, 0700) < 0 && errno != EEXIST) fail(EXIT_FAIL, "mkdir %s: %s", rel, strerror(errno));
  int dir = openat2_(parent, base, O_PATH | O_DIRECTORY | O_CLOEXEC, beneath);
  if (dir < 0) lookup_failed("directory", rel);
  if (gid >= 0 && fchownat(dir, "", (uid_t)-1, (gid_t)gid, AT_EMPTY_PATH) < 0)
    fail(EXIT_FAIL, "chown %s: %s", rel, strerror(errno));
  char fdpath[64];
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", dir);
  if (chmod(fdpath, (mode_t)mode) < 0) fail(EXIT_FAIL, "chmod %s: %s", rel, strerror(errno));
  return 0;
}

/* The read-only remount of a bind keeps the mount's other flags (a bind made below a nosuid,nodev /run
 * has them): MS_REMOUNT sets the flags given, so they are read first, as mount(8) does. */
static unsigned long kept_flags(const char *path) {
  struct statvfs st;
  if (statvfs(path, &st) != 0) return 0;
  unsigned long f = 0;
  if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) f |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static int views(int argc, char **argv) {
  if (argc != 2) fail(EXIT_USAGE, "usage: kata-ts-mount views MOUNTS SHARED");
  const char *mounts = argv[0], *shared = argv[1];
  if (mounts[0] != '/' || shared[0] != '/') fail(EXIT_USAGE, "views: MOUNTS and SHARED must be absolute paths");
  if (mount(mounts, mounts, NULL, MS_BIND, NULL) != 0) fail(EXIT_FAIL, "bind %s on itself: %s", mounts, strerror(errno));
  const char *step = "make %s shared";
  const char *at = mounts;
  int shared_made = 0;
  if (mount(NULL, mounts, NULL, MS_SHARED, NULL) != 0) goto undo;
  step = "bind %s";
  at = shared;
  if (mount(mounts, shared, NULL, MS_BIND, NULL) != 0) goto undo;
  shared_made = 1;
  step = "make %s a slave";
  if (mount(NULL, shared, NULL, MS_SLAVE, NULL) != 0) goto undo;
  step = "remount %s read-only";
  if (mount(NULL, shared, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(shared), NULL) != 0) goto undo;
  return 0;
undo:;
  int e = errno;
  if (shared_made) umount2(shared, MNT_DETACH);
  umount2(mounts, MNT_DETACH);
  char what[4096];
  snprintf(what, sizeof what, step, at);
  fail(EXIT_FAIL, "%s: %s", what, strerror(e));
  return EXIT_FAIL;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "bind") == 0) return bind_all(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "unbind") == 0) return unbind(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "mkdir") == 0) return make_dir(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "views") == 0) return views(argc - 2, argv + 2);
  fail(EXIT_USAGE, "usage: kata-ts-mount bind [--ro] --kind dir|file SOURCE ROOT RELATIVE | unbind ROOT RELATIVE | "
                   "mkdir --mode OCTAL [--gid GID] ROOT RELATIVE | views MOUNTS SHARED");
  return EXIT_USAGE;
}
