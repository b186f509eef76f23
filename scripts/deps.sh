#!/bin/sh
# Installs the Debian packages cynic needs that are missing. Idempotent and
# quiet when nothing is missing. `scripts/deps.sh bench` adds the benchmark
# peers (wrk, haproxy, nginx: bench/http.sh runs its own nginx as the current
# user from a temp dir on a free loopback port, never the packaged service;
# on these machines policy-rc.d keeps the package from starting that service);
# `scripts/deps.sh fuzz` adds clang and libFuzzer;
# `scripts/deps.sh soak` adds gnuplot (the soak's plot) and valgrind.
# libssl-dev is OpenSSL 3 for TLS (src/proxy/tls.c); the openssl CLI makes the
# tests' certificates.
# python3 runs `make run`, `make demo` and the demo backend (scripts/run.py,
# scripts/demo.py, examples/demo/); curl is what the commands `make run`
# prints (and the README's) use. nginx is test_tls.py's HTTPS backend (run as
# the current user from a temp dir, like the benchmark's).
set -eu
pkgs="cmake make gcc pkg-config libcmocka-dev libuv1-dev libyaml-dev libjansson-dev
libssl-dev openssl node-llhttp python3 python3-pytest curl chromium nginx"
if [ "${1:-}" = bench ]; then
  pkgs="$pkgs wrk haproxy nginx"
fi
if [ "${1:-}" = fuzz ]; then
  pkgs="$pkgs clang libclang-rt-14-dev"
fi
if [ "${1:-}" = soak ]; then
  pkgs="$pkgs gnuplot-nox valgrind"
fi
missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done
# The Toxiproxy compatibility suite runs toxiproxy-node-client under Node.js;
# a machine that has no node at all gets Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "deps: missing packages:$missing; run as root: apt-get install -y$missing" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
