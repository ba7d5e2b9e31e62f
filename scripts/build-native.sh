#!/usr/bin/env bash
# Builds the native helpers (what Node cannot do), statically, so the same binary runs on the host and in
# the guest. Each is rebuilt only when its source changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# kata-ts-exec: every child the host side starts goes through it, so it holds only the descriptors it was given.
exec_src=native/kata-ts-exec.c
exec_out=dist/native/kata-ts-exec
if ! { [ -x "$exec_out" ] && [ "$exec_out" -nt "$exec_src" ]; }; then
  command -v gcc >/dev/null || { echo "build-native: gcc is not installed (apt-get install -y gcc libc6-dev)" >&2; exit 1; }
  mkdir -p dist/native
  gcc -O2 -Wall -Wextra -Werror -static -o "$exec_out.tmp" "$exec_src"
  mv "$exec_out.tmp" "$exec_out"
fi

# kata-ts-tty: pty allocation and fd passing.
src=native/kata-ts-tty.c
out=dist/native/kata-ts-tty
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
command -v gcc >/dev/null || { echo "build-native: gcc is not installed (apt-get install -y gcc libc6-dev)" >&2; exit 1; }
mkdir -p dist/native
gcc -O2 -Wall -Wextra -Werror -static -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
