// Whether crun needs the sealed launcher (kata-ts-sealed-exec). crun's CVE-2019-5736 defence (a container
// overwriting the runtime through /proc/<pid>/exe) copies crun into a sealed memfd and re-executes it,
// unless its binary already is such a copy or lies on a read-only filesystem: crun fstatfs()es
// /proc/self/exe and skips the copy on ST_RDONLY (seen with strace in the guest: no memfd, no second
// execve). The image's crun lies on the read-only erofs tools disk, so there crun never copies itself,
// and the launcher would only add a copy of crun (490 KB) and an exec to every crun command.

/** A mountinfo path field: the kernel escapes space, tab, newline and backslash as octal (\040). */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function isUnder(file: string, mountPoint: string): boolean {
  return mountPoint === "/" || file === mountPoint || file.startsWith(`${mountPoint}/`);
}

/**
 * Whether the mount holding `file` (an absolute path with no symlinks left: realpath it first) is
 * read-only, from /proc/self/mountinfo's text: its per-mount options or its superblock's say "ro", as
 * statfs's ST_RDONLY does. The deepest mount point wins, and of mounts stacked on one point the last
 * listed (the one on top). Undefined when no line covers the file.
 */
export function isOnReadOnlyMount(mountinfo: string, file: string): boolean | undefined {
  let best: { depth: number; readOnly: boolean } | undefined;
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mount-point mount-options [optional fields...] - fstype source super-options
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (fields.length < 6 || sep < 6 || fields.length < sep + 4) continue;
    const mountPoint = unescapeMountPath(fields[4] ?? "");
    if (!mountPoint.startsWith("/") || !isUnder(file, mountPoint)) continue;
    const depth = mountPoint === "/" ? 0 : mountPoint.split("/").length;
    if (best !== undefined && depth < best.depth) continue;
    const ro = (opts: string | undefined): boolean => (opts ?? "").split(",").includes("ro");
    best = { depth, readOnly: ro(fields[5]) || ro(fields[sep + 3]) };
  }
  return best?.readOnly;
}

/** How the agent runs crun: direct, or through the launcher for the verbs named (all when undefined). */
export interface CrunLauncherPlan {
  readonly viaLauncher: boolean;
  readonly verbs?: ReadonlySet<"exec">;
  /** Why crun runs in its slow way, for the log. */
  readonly warning?: string;
}

/**
 * The launcher for every verb where crun would copy itself (crun not known to be on a read-only mount);
 * where it would not, for exec only: there the launcher's copy cost `crun run` 75–195 ms under TCG but
 * made `crun exec` 25 ms faster, paired medians over 45 interleaved pairs (docs/benchmarks.md).
 */
export function planCrunLauncher(crunOnReadOnlyMount: boolean | undefined, launcherInImage: boolean): CrunLauncherPlan {
  if (!launcherInImage) {
    return crunOnReadOnlyMount === true
      ? { viaLauncher: false }
      : {
          viaLauncher: false,
          warning:
            "crun is not on a read-only mount and the image has no kata-ts-sealed-exec: crun copies itself at every command",
        };
  }
  return crunOnReadOnlyMount === true
    ? { viaLauncher: true, verbs: new Set(["exec"] as const) }
    : { viaLauncher: true };
}
