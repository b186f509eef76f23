#!/bin/sh
# Runs the node:test compatibility suite against CYNIC_HARNESS (the binary).
# Installs toxiproxy-node-client from package-lock.json when it is missing.
set -eu
cd "$(dirname "$0")"
: "${CYNIC_HARNESS:?set CYNIC_HARNESS to the cynic-harness binary}"
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "compat: $tool not found; run 'make deps' (installs Debian's nodejs and npm)" >&2; exit 1; }
done
if ! grep -q '"version": "4.1.0"' node_modules/toxiproxy-node-client/package.json 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-reporter=spec compat.test.mjs
