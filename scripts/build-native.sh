#!/usr/bin/env bash
# Builds the native helpers (what Node cannot do: ptys and fd passing, descriptor-based mounts), one
# static binary per native/*.c, so the same binary runs on the host and in the guest. Each is rebuilt
# only when its source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/native
for src in native/*.c; do
  out="dist/native/$(basename "$src" .c)"
  if [ -x "$out" ] && [ "$out" -nt "$src" ]; then continue; fi
  command -v gcc >/dev/null || { echo "build-native: gcc is not installed (apt-get install -y gcc libc6-dev)" >&2; exit 1; }
  gcc -O2 -Wall -Wextra -Werror -static -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
done
