#!/bin/sh
# Runs the status page test in headless Chromium against CYNIC (the binary).
# Installs playwright-core from package-lock.json when it is missing; the
# browser is Debian's chromium (scripts/deps.sh), never a downloaded one.
set -eu
cd "$(dirname "$0")"
: "${CYNIC:?set CYNIC to the cynic binary}"
if [ ! -f node_modules/playwright-core/package.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-reporter=spec status_page.test.mjs
