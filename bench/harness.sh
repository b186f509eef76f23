#!/usr/bin/env bash
# bench/harness.sh: cynic-harness with no toxics against the same traffic sent
# direct to the backend and through HAProxy (mode tcp, the reference for a
# plain proxy), in one run on loopback. Prints figures and ratios; never
# pass/fail.
#
#   bench/harness.sh [BUILD_DIR]      (make bench runs it)
#
# Measured: bulk throughput of a 4 GB transfer on one connection (MB/s, best
# of 3), and the latency of 64-byte round trips on one kept-open connection
# (p50 and p99 in microseconds over 20,000 round trips, best of 3 runs by
# p99), from which the latency each proxy adds is derived. HAProxy runs one
# thread (nbthread 1) like the harness's single loop.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
peer=$build/tcp_peer
harness=$build/cynic-harness
for bin in "$peer" "$harness"; do
  [ -x "$bin" ] || { echo "bench/harness.sh: $bin missing; run make first" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "bench/harness.sh: haproxy missing (make bench installs it)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/harness.sh: nothing listens on $1" >&2; exit 1
}

"$peer" serve "$work/backend.port" & pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/backend.port" ] && break; sleep 0.05; done
backend=$(cat "$work/backend.port")

api=$(free_port); xport=$(free_port); hport=$(free_port)
"$harness" -host 127.0.0.1 -port "$api" 2>"$work/harness.stderr" & pids+=($!)
wait_port "$api"
python3 - "$api" "$xport" "$backend" <<'PY'
import json, sys, urllib.request
api, listen, backend = sys.argv[1:]
body = json.dumps({"name": "bench", "listen": f"127.0.0.1:{listen}",
                   "upstream": f"127.0.0.1:{backend}"}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{api}/proxies", data=body, method="POST",
                             headers={"Content-Type": "application/json"})
assert urllib.request.urlopen(req).status == 201
PY

cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 1000
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:$hport
  default_backend backend
backend backend
  server b1 127.0.0.1:$backend
CFG
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.stderr" & pids+=($!)
wait_port "$xport"; wait_port "$hport"

bulk() { for _ in 1 2 3; do "$peer" bulk "$1" 4096; done | sort -g | tail -1; }
lat() { for _ in 1 2 3; do "$peer" lat "$1" 20000; done | sort -g -k2 | head -1; }

echo "harness benchmark, $(date -u +%FT%TZ), $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
d_bulk=$(bulk "$backend"); x_bulk=$(bulk "$xport"); h_bulk=$(bulk "$hport")
read -r d50 d99 < <(lat "$backend")
read -r x50 x99 < <(lat "$xport")
read -r h50 h99 < <(lat "$hport")

py() { python3 -c "print($1)"; }
printf '\n%-32s %10s %10s %10s %15s %15s\n' "" direct harness haproxy harness/direct harness/haproxy
printf '%-32s %10s %10s %10s %15s %15s\n' "4 GB transfer (MB/s)" "$d_bulk" "$x_bulk" "$h_bulk" \
  "$(py "f'{$x_bulk/$d_bulk:.2f}x'")" "$(py "f'{$x_bulk/$h_bulk:.2f}x'")"
printf '%-32s %10s %10s %10s\n' "round trip p50 (us)" "$d50" "$x50" "$h50"
printf '%-32s %10s %10s %10s\n' "round trip p99 (us)" "$d99" "$x99" "$h99"
printf '%-32s %10s %10s %10s\n' "added at p50 (us)" "-" "$(py "f'{$x50-$d50:.1f}'")" "$(py "f'{$h50-$d50:.1f}'")"
printf '%-32s %10s %10s %10s\n' "added at p99 (us)" "-" "$(py "f'{$x99-$d99:.1f}'")" "$(py "f'{$h99-$d99:.1f}'")"
