#!/usr/bin/env bash
# `npm run demo`: set up what is missing (idempotent), then run a busybox container in a VM.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s%N)
bash scripts/setup.sh
export KATA_TS_SETUP_MS=$(( ($(date +%s%N) - start) / 1000000 ))
exec node dist/src/cli/demo-main.js
