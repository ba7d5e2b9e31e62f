// Parsers for the kernel's mount tables. Paths there escape space, tab, newline and backslash as
// octal (\040, \011, \012, \134); Kata's Go runtime did not decode them, so a volume path with a space
// never matched. We decode.

export interface MountEntry {
  readonly mountId?: number;
  readonly parentId?: number;
  readonly source: string;
  readonly mountPoint: string;
  readonly fstype: string;
  readonly options: readonly string[];
  /** Optional fields of mountinfo: "shared:N", "master:N", ... (empty for /proc/mounts). */
  readonly propagation: readonly string[];
}

export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/mounts (fstab format). Malformed lines are skipped. */
export function parseProcMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 4) continue;
    const [source, mountPoint, fstype, opts] = f;
    if (source === undefined || mountPoint === undefined || fstype === undefined || opts === undefined) continue;
    out.push({
      source: unescapeMountPath(source),
      mountPoint: unescapeMountPath(mountPoint),
      fstype,
      options: opts.split(","),
      propagation: [],
    });
  }
  return out;
}

/** Parses /proc/<pid>/mountinfo. Malformed lines are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    if (sep < 6 || f.length < sep + 4) continue;
    const [mountId, parentId, , , mountPoint, mountOpts] = f;
    const fstype = f[sep + 1];
    const source = f[sep + 2];
    const superOpts = f[sep + 3];
    if (mountPoint === undefined || fstype === undefined || source === undefined) continue;
    out.push({
      mountId: Number(mountId),
      parentId: Number(parentId),
      source: unescapeMountPath(source),
      mountPoint: unescapeMountPath(mountPoint),
      fstype,
      options: [...(mountOpts ?? "").split(","), ...(superOpts ?? "").split(",")],
      propagation: f.slice(6, sep),
    });
  }
  return out;
}

/** Mount points at or below `dir` (for leak checks and teardown), deepest first. */
export function mountsUnder(entries: readonly MountEntry[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return entries
    .map((e) => e.mountPoint)
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}
