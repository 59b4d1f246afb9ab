#!/usr/bin/env bash
# Browser end-to-end tests of the dashboard. Builds nothing: point SPILLWAY_BIN at a built
# spillway binary, e.g.  cargo build -p spillway && SPILLWAY_BIN=target/debug/spillway tests/browser/run.sh
set -euo pipefail
: "${SPILLWAY_BIN:?set SPILLWAY_BIN to the spillway binary, e.g. target/debug/spillway}"
SPILLWAY_BIN="$(realpath "$SPILLWAY_BIN")"
export SPILLWAY_BIN
cd "$(dirname "$0")"
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "chromium is missing: run 'apt-get install chromium' as root, or set CHROMIUM" >&2
    exit 1
  fi
fi
npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-concurrency=1 ./*.test.mjs
