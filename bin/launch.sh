# Sourced by bin/kata-ts and bin/containerd-shim-kata-ts-v2 (with `here`: the script's resolved path).
# `launch ENTRY ESM ARGS...` execs node on the host's V8 startup snapshot (dist/host/, built by `npm run
# build`: src/cli/host-snapshot.ts) when it was built for this node, this CPU and this directory, and
# on the entry's ES module otherwise, or when KATA_TS_NO_SNAPSHOT is set. The check is made here: node
# exits 14 when it cannot load a blob, and after exec nobody is left to fall back.

# One line naming what the blob depends on: node's file (a new node, even at the same path, has another
# inode and change time), the CPU's features (V8 refuses a blob built with others) and the install's
# directory (the blob holds its paths). host-bundle.ts writes it next to the blob with this function.
snapshot_key() {
  printf '%s|%s|%s\n' "$(stat -L -c '%d:%i:%s:%Y:%Z' "$1")" "$(grep -m1 '^flags' /proc/cpuinfo)" "$2"
}

launch() {
  entry=$1 esm=$2
  shift 2
  root=${here%/bin/*}
  node=$(command -v node) || {
    echo "$entry: node is not on PATH" >&2
    exit 127
  }
  blob=$root/dist/host/kata-ts-host.blob key=$root/dist/host/kata-ts-host.key
  if [ -z "${KATA_TS_NO_SNAPSHOT-}" ] && [ -r "$blob" ] && [ -r "$key" ] && IFS= read -r want <"$key" &&
    [ "$want" = "$(snapshot_key "$node" "$root")" ]; then
    exec "$node" --snapshot-blob "$blob" -- "$entry" "$@"
  fi
  exec "$node" "$root/$esm" "$@"
}
