#!/usr/bin/env bash
# Runs every test tier on the compiled output: unit and component tests (next to the sources), then
# integration tests (real QEMU, crun, mounts) one file at a time, since VMs under TCG share 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
node --test --test-reporter=spec dist/src
node --test --test-reporter=spec --test-concurrency=1 dist/test/integration
node --test --test-reporter=spec --test-concurrency=1 dist/test/security
