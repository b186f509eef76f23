#!/usr/bin/env bash
# bench/tls.sh: cynic's TLS against HAProxy's, terminating (TLS client ->
# proxy -> plain nginx) and originating (plain client -> proxy -> TLS nginx),
# both proxies in TCP mode, in one run on loopback, with the same
# certificate (EC P-256, from a CA made here with the openssl CLI), the same
# version (TLS 1.3) and the same cipher (TLS_AES_256_GCM_SHA384, the one
# OpenSSL clients prefer): HAProxy is pinned to it on both sides, the TLS
# nginx allows only it, and the termination clients offer it first. The
# cipher, group and version each listener actually negotiated are printed.
# Prints figures and ratios; never pass/fail.
#
#   bench/tls.sh [BUILD_DIR]
#
# Measured (best of 2 runs of 5 s each unless said):
# - full handshakes/s, terminating: `openssl s_time -new` (a full handshake
#   per connection, then GET /small over HTTP/1.0), 4 in parallel, summed.
#   Not wrk: wrk resumes the session on its reconnects (643 of 645 handshakes
#   were resumptions when checked against a Python ssl server), so its
#   `Connection: close` rate is a resumption rate. That rate is the next row.
# - resumed handshakes/s, terminating: wrk -t1 -c16 -H "Connection: close".
# - upstream handshakes/s, originating: wrk (plain) -t1 -c16 -H "Connection:
#   close": each client connection is a new upstream TLS connection, resumed
#   when the proxy keeps sessions (both do by default) -- and again against a
#   nginx that refuses resumption (no cache, no tickets): full handshakes.
# - bulk throughput (MB/s), both ways: wrk -t1 -c1 keep-alive GET of a 64 MB
#   file, one connection (the response direction).
# - RSS added per 1,000 idle TLS connections (bench/http_idle.py --tls: one
#   keep-alive request each, then held): terminating (the client side is
#   TLS) and originating (the upstream side is TLS).
# Both proxies run one thread (HAProxy nbthread 1; cynic is one libuv loop).
# The "direct" column is wrk or s_time against the TLS nginx itself.
# While this cynic has no TLS (its config check refuses `tls:`), the cynic
# column prints "-" and HAProxy's still runs.
set -euo pipefail
me=bench/tls.sh
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
cynic=$build/cynic
[ -x "$cynic" ] || { echo "$me: $cynic missing; run make first" >&2; exit 1; }
# shellcheck source=bench/http_common.sh
. "$here/bench/http_common.sh"
need_tools nginx haproxy wrk openssl python3 curl
bench_workdir
SECONDS_PER_RUN=${TLS_BENCH_SECONDS:-5}
SUITE=TLS_AES_256_GCM_SHA384

# ---- certificates: a CA and a server certificate for localhost + 127.0.0.1
mkdir -p "$work/pki" "$work/www" "$work/nginx"
(
  cd "$work/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 30 -subj "/O=cynic bench/CN=cynic bench CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
    -subj "/O=cynic bench/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 30 -extfile ext \
    -out server.pem 2>/dev/null
  cat server.pem server.key > haproxy.pem
)
pki=$work/pki

# ---- nginx: plain on nport, TLS on sport (resumption on) and fport (off)
head -c 1024 /dev/urandom > "$work/www/small"
head -c $((64 << 20)) /dev/zero > "$work/www/big"
maxconn=$(( ($(ulimit -Hn) - 100) / 2 )); [ "$maxconn" -gt 20000 ] && maxconn=20000
nport=$(free_port); sport=$(free_port); fport=$(free_port)
tls_server() { # port cache-lines
  cat <<CONF
  server {
    listen 127.0.0.1:$1 ssl;
    root $work/www;
    ssl_certificate $pki/server.pem;
    ssl_certificate_key $pki/server.key;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites $SUITE;
    $2
    add_header X-TLS "\$ssl_protocol \$ssl_cipher \$ssl_curve reused=\$ssl_session_reused";
  }
CONF
}
nginx_conf "$nport" $((maxconn * 2)) "" \
  "$(tls_server "$sport" "ssl_session_cache shared:bench:10m; ssl_session_tickets on;")
$(tls_server "$fport" "ssl_session_cache off; ssl_session_tickets off;")" > "$work/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx.conf" -e "$work/nginx.error.log" 2>"$work/nginx.stderr" &
nginx_pid=$!; pids+=("$nginx_pid")

# ---- the proxies: a terminating listener (-> nport) and two originating
# ones (-> sport, -> fport) each
cterm=$(free_port); corig=$(free_port); cfull=$(free_port); cadmin=$(free_port)
hterm=$(free_port); horig=$(free_port); hfull=$(free_port)
cat > "$work/cynic.yaml" <<YAML
admin:
  listen: 127.0.0.1:$cadmin
log:
  file: "$work/cynic.log"
  level: warn
listeners:
  - name: term
    listen: 127.0.0.1:$cterm
    mode: tcp
    upstream: plain
    max_connections: $maxconn
    timeouts: { idle: 120s, tls_handshake: 5s }
    tls: { cert_file: "$pki/server.pem", key_file: "$pki/server.key", min_version: "1.3" }
  - name: orig
    listen: 127.0.0.1:$corig
    mode: tcp
    upstream: vendor
    max_connections: $maxconn
    timeouts: { idle: 120s }
  - name: full
    listen: 127.0.0.1:$cfull
    mode: tcp
    upstream: vendor_full
    max_connections: $maxconn
    timeouts: { idle: 120s }
upstreams:
YAML
for up in "plain $nport" "vendor $sport" "vendor_full $fport"; do
  set -- $up
  cat >> "$work/cynic.yaml" <<YAML
  - name: $1
    endpoints: [127.0.0.1:$2]
    timeouts: { connect: 1s, first_byte: 10s, idle: 120s$([ "$1" = plain ] || echo ", tls_handshake: 2s") }
    bulkhead: { max_connections: $maxconn, max_pending: 1000, queue_timeout: 100ms }
    breaker: { faults: 5, leak: 10s, open_for: 30s, half_open_probes: 1 }
YAML
  [ "$1" = plain ] || echo "    tls: { server_name: localhost, ca_file: \"$pki/ca.pem\", min_version: \"1.3\" }" >> "$work/cynic.yaml"
done
cynic_pid=
if "$cynic" --check -c "$work/cynic.yaml" >"$work/cynic.check" 2>&1; then
  "$cynic" -c "$work/cynic.yaml" 2>"$work/cynic.stderr" & cynic_pid=$!; pids+=("$cynic_pid")
else
  echo "$me: this cynic refuses the TLS config, so its column is '-':" >&2
  grep -m3 -i "tls\|error" "$work/cynic.check" >&2 || head -3 "$work/cynic.check" >&2
fi

cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn $maxconn
  ssl-default-bind-ciphersuites $SUITE
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-ciphersuites $SUITE
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 1s
  timeout client 120s
  timeout server 120s
frontend term
  bind 127.0.0.1:$hterm ssl crt $pki/haproxy.pem
  default_backend plain
frontend orig
  bind 127.0.0.1:$horig
  default_backend vendor
frontend full
  bind 127.0.0.1:$hfull
  default_backend vendor_full
backend plain
  server n 127.0.0.1:$nport maxconn $maxconn
backend vendor
  server s 127.0.0.1:$sport maxconn $maxconn ssl verify required ca-file $pki/ca.pem sni str(localhost) verifyhost localhost
backend vendor_full
  server s 127.0.0.1:$fport maxconn $maxconn ssl verify required ca-file $pki/ca.pem sni str(localhost) verifyhost localhost
CFG
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.stderr" & haproxy_pid=$!; pids+=("$haproxy_pid")

wait_port nginx "$nginx_pid" "$sport" 5
wait_port haproxy "$haproxy_pid" "$hterm" 5
[ -z "$cynic_pid" ] || wait_port cynic "$cynic_pid" "$cterm" 5

# ---- what each path negotiated
negotiated() { # port: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" as the client saw it
  openssl s_client -connect "127.0.0.1:$1" -servername localhost -CAfile "$pki/ca.pem" -verify_return_error \
    -brief </dev/null 2>&1 | awk -F': ' '/^Protocol version/ {v=$2} /^Ciphersuite/ {c=$2}
      /^(Peer|Server) Temp Key/ {k=$2} END {split(k, g, ","); print v, c, g[1]}'
}
upstream_tls() { # port: the X-TLS header nginx sent back through a plain listener
  curl -sS -D - -o /dev/null "http://127.0.0.1:$1/small" | tr -d '\r' | awk -F': ' '/^X-TLS/ {print $2}'
}
echo "TLS benchmark, $(date -u +%FT%TZ), $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3), $(openssl version | cut -d' ' -f1-2)"
echo "negotiated, terminating (client <-> proxy):"
echo "  haproxy: $(negotiated "$hterm")"
[ -z "$cynic_pid" ] || echo "  cynic:   $(negotiated "$cterm")"
echo "  nginx:   $(negotiated "$sport")"
echo "negotiated, originating (proxy <-> nginx; a first request, then a second on a new connection):"
echo "  haproxy: $(upstream_tls "$horig") / $(upstream_tls "$horig" | grep -o 'reused=.*')"
echo "           refusing resumption: $(upstream_tls "$hfull" | grep -o 'reused=.*')"
if [ -n "$cynic_pid" ]; then
  echo "  cynic:   $(upstream_tls "$corig") / $(upstream_tls "$corig" | grep -o 'reused=.*')"
  echo "           refusing resumption: $(upstream_tls "$cfull" | grep -o 'reused=.*')"
fi

# ---- the measurements
best() { sort -g | tail -1; }
wrk_rps() { # url [wrk args]: requests/s, or "err" with the errors
  local out url=$1; shift
  out=$(wrk -t1 -d"${SECONDS_PER_RUN}s" "$@" "$url" 2>&1)
  if grep -q -E "Non-2xx|Socket errors" <<<"$out"; then
    echo "$me: $url: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" >&2
  fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}
wrk_mbs() { # url: MB/s of the response bodies, one connection
  wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" "$1" 2>&1 | awk '/^Transfer\/sec/ {
    v = $2; u = substr(v, length(v) - 1); n = v + 0
    if (u == "GB") n *= 1024; else if (u == "KB") n /= 1024; else if (u != "MB") n /= 1048576
    printf "%.0f\n", n }'
}
stime() { # port: full handshakes/s (s_time -new, 4 in parallel, summed)
  local i
  for i in 1 2 3 4; do
    openssl s_time -connect "127.0.0.1:$1" -new -time "$SECONDS_PER_RUN" -www /small -tls1_3 \
      -ciphersuites "$SUITE" -CAfile "$pki/ca.pem" 2>/dev/null \
      | awk '/connections in .* real seconds/ {print $1 / $4}' &
  done | awk '{s += $1} END {printf "%.0f\n", s}'
}
twice() { for _ in 1 2; do "$@"; done | best; }
idle_rss() { # pid port [--tls CA]: KB added per 1,000 idle connections
  local before after
  before=$(rss_kb "$1")
  local line=""
  coproc IDLE { python3 "$here/bench/http_idle.py" "$2" 1000 /small 1024 "${@:3}"; }
  read -r line <&"${IDLE[0]}" || true
  after=$(rss_kb "$1")
  exec {IDLE[1]}>&-
  wait "$IDLE_PID" 2>/dev/null || true
  # without all 1,000 set up (http_idle.py said why on stderr) there is no figure
  if [ "$line" = "ready 1000" ]; then echo $((after - before)); else echo -; fi
}
cyn() { if [ -n "$cynic_pid" ]; then "$@"; else echo -; fi; }

d_full=$(twice stime "$sport");            h_full=$(twice stime "$hterm");  c_full=$(cyn twice stime "$cterm")
d_res=$(twice wrk_rps "https://127.0.0.1:$sport/small" -c16 -H "Connection: close")
h_res=$(twice wrk_rps "https://127.0.0.1:$hterm/small" -c16 -H "Connection: close")
c_res=$(cyn twice wrk_rps "https://127.0.0.1:$cterm/small" -c16 -H "Connection: close")
h_ores=$(twice wrk_rps "http://127.0.0.1:$horig/small" -c16 -H "Connection: close")
c_ores=$(cyn twice wrk_rps "http://127.0.0.1:$corig/small" -c16 -H "Connection: close")
d_ofull=$(twice wrk_rps "https://127.0.0.1:$fport/small" -c16 -H "Connection: close")
h_ofull=$(twice wrk_rps "http://127.0.0.1:$hfull/small" -c16 -H "Connection: close")
c_ofull=$(cyn twice wrk_rps "http://127.0.0.1:$cfull/small" -c16 -H "Connection: close")
d_bulk=$(twice wrk_mbs "https://127.0.0.1:$sport/big")
h_tbulk=$(twice wrk_mbs "https://127.0.0.1:$hterm/big"); c_tbulk=$(cyn twice wrk_mbs "https://127.0.0.1:$cterm/big")
h_obulk=$(twice wrk_mbs "http://127.0.0.1:$horig/big");  c_obulk=$(cyn twice wrk_mbs "http://127.0.0.1:$corig/big")
h_tmem=$(idle_rss "$haproxy_pid" "$hterm" --tls "$pki/ca.pem")
c_tmem=$(cyn idle_rss "$cynic_pid" "$cterm" --tls "$pki/ca.pem")
h_omem=$(idle_rss "$haproxy_pid" "$horig")
c_omem=$(cyn idle_rss "$cynic_pid" "$corig")

ratio() { if [ "$1" = - ] || [ "$2" = - ] || [ -z "$1" ] || [ -z "$2" ]; then echo -;
          else python3 -c "print(f'{$1/$2:.2f}x')"; fi; }
row() { printf '%-52s %10s %10s %10s %14s\n' "$1" "$2" "$3" "$4" "$(ratio "$3" "$4")"; }
printf '\n%-52s %10s %10s %10s %14s\n' "" direct cynic haproxy cynic/haproxy
row "full handshakes/s, terminating (s_time -new x4)" "$d_full" "$c_full" "$h_full"
row "resumed handshakes/s, terminating (wrk, close)" "$d_res" "$c_res" "$h_res"
row "upstream handshakes/s, originating, resumable" "$d_res" "$c_ores" "$h_ores"
row "upstream handshakes/s, originating, full" "$d_ofull" "$c_ofull" "$h_ofull"
row "bulk MB/s, terminating (1 conn, 64 MB GETs)" "$d_bulk" "$c_tbulk" "$h_tbulk"
row "bulk MB/s, originating (1 conn, 64 MB GETs)" "$d_bulk" "$c_obulk" "$h_obulk"
row "RSS per 1,000 idle TLS conns (KB), terminating" - "$c_tmem" "$h_tmem"
row "RSS per 1,000 idle TLS conns (KB), originating" - "$c_omem" "$h_omem"
