#!/bin/sh
# Completes a kata-ts release in DIR, which already holds package.json, node_modules (production),
# dist/src, dist/agent, dist/native, image/ (the guest image) and deploy/kata-ts-deploy.sh: copies NODE
# to node/bin/node, writes the wrappers dist/bin/kata-ts and dist/bin/containerd-shim-kata-ts-v2 (they
# run that Node on the dist scripts, wherever DIR is copied: `kata-ts install` links them), and VERSION.
# Used by deploy/Dockerfile, and by test/integration/install.test.ts on the same layout.
set -eu
[ $# -eq 3 ] || { echo "usage: make-release.sh DIR NODE VERSION" >&2; exit 2; }
dir=$1 node=$2 version=$3
mkdir -p "$dir/node/bin" "$dir/dist/bin"
cp "$node" "$dir/node/bin/node"
for pair in kata-ts:kata-ts-main containerd-shim-kata-ts-v2:containerd-shim-main; do
  name=${pair%%:*}
  main=${pair#*:}
  # shellcheck disable=SC2016 # $0, $d and $@ belong to the wrapper
  printf '#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")/../..\nexec "$d/node/bin/node" "$d/dist/src/cli/%s.js" "$@"\n' \
    "$main" >"$dir/dist/bin/$name"
  chmod 0755 "$dir/dist/bin/$name"
done
echo "$version" >"$dir/VERSION"
