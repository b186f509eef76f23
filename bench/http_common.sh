# bench/http_common.sh: sourced by bench/http.sh, bench/http_cpu.sh and
# bench/tls.sh (not run on its own): the helpers they use (tools, the temp
# dir and its clean-up, ports, RSS), and the set-up http.sh and http_cpu.sh
# both measure, written once so the CPU figures are of the same backend and
# proxy configs as the throughput ones: nginx serving $work/www, cynic's
# listener and upstream blocks, HAProxy in `mode http` doing the per-request
# header work cynic does. The caller sets $me (its name in messages) first;
# bench_workdir sets $work (its temp directory).
# shellcheck shell=bash disable=SC2154

# tool...: each on PATH, or a line naming the missing one and exit 1
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$me: $tool missing (scripts/deps.sh bench installs the benchmark's tools)" >&2; exit 1; }
  done
}

# $work, a temp dir removed at exit, after every process in $pids is killed
# and every cgroup in $cgroups (bench/http.sh's proxy-bound rows) removed.
bench_workdir() {
  work=$(mktemp -d)
  pids=() cgroups=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  local p g
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for g in "${cgroups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  rm -rf "$work"
}

rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; } # pid -> VmRSS in KB

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# name pid port seconds: a bounded wait for a listener, or its stderr and exit
wait_port() {
  local i
  for ((i = 0; i < $4 * 20; i++)); do
    kill -0 "$2" 2>/dev/null || { echo "$me: $1 exited at start:" >&2; cat "$work/$1.stderr" >&2; exit 1; }
    (exec 3<>/dev/tcp/127.0.0.1/"$3") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$me: $1 does not listen on $3 after $4 s" >&2; exit 1
}

# port connections [server lines] [more server blocks]: nginx as the current
# user from the temp dir, no master, one worker, every path it writes under
# $work (start it with -e so it stays off /var/log at start); keep-alive for
# as long as a run lasts, access log off.
nginx_conf() {
  cat <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $2;
pid $work/nginx/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections $2; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$1;
    root $work/www;
${3:-}
  }
${4:-}
}
CONF
}

# admin_port: the top of cynic's config, up to its listeners
cynic_head() {
  cat <<YAML
admin:
  listen: 127.0.0.1:$1
  drain_timeout: 5s
log:
  file: "$work/cynic.log"
  level: info
listeners:
YAML
}

# name port mode upstream [max_connections]: one of cynic's listeners
cynic_listener() {
  printf '  - name: %s\n    listen: 127.0.0.1:%s\n    mode: %s\n    upstream: %s\n' "$1" "$2" "$3" "$4"
  [ -z "${5:-}" ] || printf '    max_connections: %s\n' "$5"
  printf '    timeouts: { header: 10s, idle: 120s }\n'
}

# name backend_port max_connections [more lines]: one of cynic's upstreams
# (after an `upstreams:` line). The pool keeps as many idle upstream
# connections as the largest load has requests in flight (HAProxy keeps
# every one by default), so both proxies reuse rather than reconnect; the
# default (the bulkhead's max_connections, here 2,000 or more) would too,
# with a larger bound than the bench needs.
cynic_upstream() {
  cat <<YAML
  - name: $1
    endpoints: [127.0.0.1:$2]
    timeouts: { connect: 1s, first_byte: 10s, idle: 120s }
    bulkhead: { max_connections: $3, max_pending: 1000, queue_timeout: 100ms }
    breaker: { faults: 5, leak: 10s, open_for: 30s, half_open_probes: 1 }
    pool: { max_idle: 128, idle_timeout: 60s }
YAML
  [ -z "${4:-}" ] || printf '    %s\n' "$4"
}

# port backend_port maxconn: HAProxy in HTTP mode, one thread, keep-alive on
# both sides, idle server connections shared safely, doing the per-request
# header work cynic does: X-Forwarded-For, Via both ways, a request id.
haproxy_cfg() {
  cat <<CFG
global
  nbthread 1
  maxconn $3
defaults
  mode http
  option http-keep-alive
  http-reuse safe
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  timeout http-request 10s
  timeout http-keep-alive 120s
frontend bench
  bind 127.0.0.1:$1
  option forwardfor
  unique-id-format %{+X}o\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  unique-id-header X-Request-Id
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy"
  default_backend backend
backend backend
  server b1 127.0.0.1:$2 maxconn $3
CFG
}
