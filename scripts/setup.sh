#!/usr/bin/env bash
# Installs what kata-ts needs on a Debian 12 host, idempotently, and fast when nothing is missing:
# Debian packages, npm dependencies, the TypeScript build, and the guest image (kernel, initrd, tools disk).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the runtime and its tests use. The guest kernel is NOT installed: the image builder
# downloads Debian's linux-image .deb and extracts it into its cache.
PACKAGES=(qemu-system-x86 busybox-static crun cpio xz-utils erofs-utils iproute2 util-linux gcc libc6-dev python3 containernetworking-plugins containerd runc podman conmon)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or: apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# npm ci only when the lock changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

echo "setup: build" >&2
npm run --silent build >&2

# The guest image is rebuilt only when its inputs changed (the builder hashes them).
if [ "$(id -u)" = 0 ]; then
  node dist/src/cli/kata-ts-main.js image build >&2
else
  echo "setup: not root: skipping the guest image build (kata-ts image build --output DIR)" >&2
fi
