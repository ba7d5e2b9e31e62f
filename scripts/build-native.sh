#!/usr/bin/env bash
# Builds the one native helper (pty allocation and fd passing, which Node cannot do), statically, so the
# same binary runs on the host and in the guest. Rebuilt only when its source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/kata-ts-tty.c
out=dist/native/kata-ts-tty
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
command -v gcc >/dev/null || { echo "build-native: gcc is not installed (apt-get install -y gcc libc6-dev)" >&2; exit 1; }
mkdir -p dist/native
gcc -O2 -Wall -Wextra -Werror -static -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
