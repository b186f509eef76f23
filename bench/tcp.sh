#!/usr/bin/env bash
# bench/tcp.sh: cynic in TCP mode against the same traffic sent direct to the
# backend and through HAProxy (mode tcp, equivalent timeouts), in one run on
# loopback. Prints figures and ratios; never pass/fail.
#
#   bench/tcp.sh [BUILD_DIR]      (make bench runs it)
#
# Measured: bulk throughput (MB/s, one connection, 2 GB), new connections per
# second (one 64-byte exchange each, 4 client threads, 5 s), and the RSS each
# proxy adds per 1,000 idle proxied connections. Each throughput figure is
# the best of 3. Both proxies run one thread (HAProxy nbthread 1; cynic is one
# libuv loop) so the comparison is per core.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
peer=$build/tcp_peer
cynic=$build/cynic
for bin in "$peer" "$cynic"; do
  [ -x "$bin" ] || { echo "bench/tcp.sh: $bin missing; run make first" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "bench/tcp.sh: haproxy missing (make bench installs it)" >&2; exit 1; }

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
  echo "bench/tcp.sh: nothing listens on $1" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }

"$peer" serve "$work/backend.port" & pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/backend.port" ] && break; sleep 0.05; done
backend=$(cat "$work/backend.port")

cport=$(free_port); aport=$(free_port); hport=$(free_port)
# HAProxy refuses to start when maxconn needs more descriptors than the hard
# limit allows (two per connection plus some): size both proxies to fit.
maxconn=$(( ($(ulimit -Hn) - 100) / 2 )); [ "$maxconn" -gt 20000 ] && maxconn=20000
cat > "$work/cynic.yaml" <<YAML
admin:
  listen: 127.0.0.1:$aport
log:
  file: "$work/cynic.log"
  level: warn
listeners:
  - name: bench
    listen: 127.0.0.1:$cport
    mode: tcp
    upstream: backend
    max_connections: $maxconn
    timeouts: { idle: 60s }
upstreams:
  - name: backend
    endpoints: [127.0.0.1:$backend]
    timeouts: { connect: 1s, first_byte: 10s, idle: 60s }
    bulkhead: { max_connections: $maxconn, max_pending: 1000, queue_timeout: 100ms }
    breaker: { faults: 5, leak: 10s, open_for: 30s, half_open_probes: 1 }
YAML
"$cynic" -c "$work/cynic.yaml" 2>"$work/cynic.stderr" & cynic_pid=$!; pids+=($cynic_pid)

cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn $maxconn
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:$hport
  default_backend backend
backend backend
  server b1 127.0.0.1:$backend maxconn $maxconn
CFG
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.stderr" & haproxy_pid=$!; pids+=($haproxy_pid)
wait_port "$cport"; wait_port "$hport"

best() { sort -g | tail -1; }
bulk() { for _ in 1 2 3; do "$peer" bulk "$1" 2048; done | best; }
rr() { for _ in 1 2 3; do "$peer" rr "$1" 5 4; done | best; }
idle_rss() { # pid port -> KB added per 1,000 idle connections
  local before after
  before=$(rss_kb "$1")
  coproc IDLE { "$peer" idle "$2" 1000; }
  read -r _ <&"${IDLE[0]}"
  after=$(rss_kb "$1")
  exec {IDLE[1]}>&-
  wait "$IDLE_PID" 2>/dev/null || true
  echo $((after - before))
}

echo "TCP benchmark, $(date -u +%FT%TZ), $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
d_bulk=$(bulk "$backend"); c_bulk=$(bulk "$cport"); h_bulk=$(bulk "$hport")
d_rr=$(rr "$backend"); c_rr=$(rr "$cport"); h_rr=$(rr "$hport")
c_mem=$(idle_rss "$cynic_pid" "$cport"); h_mem=$(idle_rss "$haproxy_pid" "$hport")

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
printf '\n%-34s %12s %12s %12s %14s %14s\n' "" direct cynic haproxy cynic/direct cynic/haproxy
printf '%-34s %12s %12s %12s %14s %14s\n' "bulk throughput (MB/s)" "$d_bulk" "$c_bulk" "$h_bulk" \
  "$(ratio "$c_bulk" "$d_bulk")" "$(ratio "$c_bulk" "$h_bulk")"
printf '%-34s %12s %12s %12s %14s %14s\n' "new connections/s (64 B each)" "$d_rr" "$c_rr" "$h_rr" \
  "$(ratio "$c_rr" "$d_rr")" "$(ratio "$c_rr" "$h_rr")"
printf '%-34s %12s %12s %12s %14s %14s\n' "RSS per 1,000 idle conns (KB)" "-" "$c_mem" "$h_mem" \
  "-" "$(ratio "$c_mem" "$h_mem")"
