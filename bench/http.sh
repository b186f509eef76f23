#!/usr/bin/env bash
# bench/http.sh: cynic's `mode: http` against the same HTTP traffic sent
# direct to nginx and through HAProxy (`mode http`), in one run on loopback.
# Prints figures and ratios (cynic/direct, cynic/haproxy); the figures are
# never pass/fail, but a run in which any path answered wrongly (wrk errors,
# answers outside 2xx/3xx, short bodies, idle connections dropped, no HTTP
# mode in cynic, cynic draining, a breaker moving, cynic not exiting 0 on
# SIGTERM at the end) prints what went wrong and exits 3.
#
#   bench/http.sh [--seconds S] [--rounds R] [--cynic-mode http|tcp]
#                 [--proxy-cpu PCT] [BUILD_DIR]
#
# The backend is nginx (one worker, keep-alive, access log off) serving a
# 128-byte and a 1 MiB file. The load is wrk over keep-alive connections, one
# wrk thread for every path: requests/s and latency p50/p99 for the small body
# at 1, 16 and 64 connections, MB/s (MiB/s) for the big one at 4 connections.
# Each figure is the best of R rounds of S seconds (the round with the most
# requests/s or MB/s, its latencies with it); rounds go direct, cynic,
# HAProxy in turn, so a noisy neighbour hits every path. Then the RSS each
# proxy adds per 1,000 idle keep-alive client connections that have made one
# request each, measured on the proxy's own process before any load. Both
# proxies run one thread (HAProxy nbthread 1; cynic is one libuv loop).
# With the defaults (3 rounds of 3 s) the whole run takes about 3 minutes.
#
# Proxy-bound rows: on a machine where wrk, nginx and the proxy share few
# cores, the rows above are bound by all three processes' CPU (the kernel's
# loopback TCP most of it), not by the proxy's. So each proxy is then held to
# PCT % of one core by a cgroup CPU quota (10 ms period; default 40, 0 turns
# the rows off) and pinned to the last core, with wrk and nginx pinned to the
# first (where the scheduler puts them otherwise moves a round by tens of
# percent), and the same small GETs at 16 and 64 connections measure what the
# proxy itself can carry: requests/s, p50/p99 and its CPU (user + system) per
# request. They need two cores, root and a writable cgroup cpu controller (v1
# cpu.cfs_quota_us or v2 cpu.max); without them the run says so and skips
# them.
#
# --cynic-mode tcp runs cynic's listener in `mode: tcp` (bytes relayed, no
# parsing): a reference for what HTTP parsing costs, and the stand-in used
# before HTTP mode landed. The second line says which mode cynic really ran.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
me=bench/http.sh

usage() {
  echo "usage: $me [--seconds 1..30] [--rounds 1..10] [--cynic-mode http|tcp] [--proxy-cpu 0|10..100] [BUILD_DIR]" >&2
  exit 2
}
seconds=3 rounds=3 cmode=http build="" proxy_cpu=40
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
    --cynic-mode) [ $# -ge 2 ] || usage; cmode=$2; shift 2 ;;
    --proxy-cpu) [ $# -ge 2 ] || usage; proxy_cpu=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "$me: unknown option $1" >&2; usage ;;
    *) [ -z "$build" ] || usage; build=$1; shift ;;
  esac
done
in_range() { [[ "$1" =~ ^[0-9]{1,4}$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$seconds" 1 30 || { echo "$me: --seconds must be a whole number from 1 to 30, not '$seconds'" >&2; exit 2; }
in_range "$rounds" 1 10 || { echo "$me: --rounds must be a whole number from 1 to 10, not '$rounds'" >&2; exit 2; }
case "$cmode" in http|tcp) ;; *) echo "$me: --cynic-mode must be http or tcp, not '$cmode'" >&2; exit 2 ;; esac
[ "$proxy_cpu" = 0 ] || in_range "$proxy_cpu" 10 100 ||
  { echo "$me: --proxy-cpu must be 0 (no proxy-bound rows) or a whole number from 10 to 100, not '$proxy_cpu'" >&2; exit 2; }
build=${build:-$here/build}
cynic=$build/cynic
[ -x "$cynic" ] || { echo "$me: $cynic missing; run make first" >&2; exit 1; }
# shellcheck source=bench/http_common.sh
. "$here/bench/http_common.sh"
need_tools nginx haproxy wrk python3 curl ss

# Connections held at once: 1,000 idle + 64 loaded, each through a proxy
# (two descriptors there) to nginx; HAProxy refuses to start when maxconn
# needs more descriptors than the hard limit allows.
idle_n=1000
maxconn=$(( ($(ulimit -Hn) - 100) / 2 )); [ "$maxconn" -gt 20000 ] && maxconn=20000
[ "$maxconn" -ge 1200 ] || { echo "$me: the descriptor limit ($(ulimit -Hn)) is too low for $idle_n idle connections" >&2; exit 1; }

bench_workdir
mkdir -p "$work/www" "$work/nginx" "$work/wrk"
# The RSS figures must be the proxy's own process (not a wrapper, not wrk).
is_process() { [ "$(cat /proc/"$1"/comm 2>/dev/null)" = "$2" ] || {
  echo "$me: pid $1 is '$(cat /proc/"$1"/comm 2>/dev/null)', not $2" >&2; exit 1; }; }

small_size=128 big_size=$((1024 * 1024))
head -c "$small_size" /dev/zero | tr '\0' s > "$work/www/small"
head -c "$big_size" /dev/urandom > "$work/www/big"

nport=$(free_port); cport=$(free_port); aport=$(free_port); hport=$(free_port); rport=$(free_port); sport=$(free_port)

nginx_conf "$nport" $(( maxconn * 2 )) '    location = /nginx_status { stub_status; }' > "$work/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx.conf" -e "$work/nginx.error.log" 2>"$work/nginx.stderr" &
nginx_pid=$!; pids+=("$nginx_pid")

# cynic. The stale fallback's rows use a listener and upstream of their own
# (the same nginx), so the other rows never pay for its capture.
{
  cynic_head "$aport"
  cynic_listener bench "$cport" "$cmode" backend "$maxconn"
  cynic_listener bench_retry "$rport" "$cmode" backend_retry "$maxconn"
  [ "$cmode" != http ] || cynic_listener stale "$sport" http cached
  echo "upstreams:"
  cynic_upstream backend "$nport" "$maxconn"
  # the same, with retries configured (never needed here)
  cynic_upstream backend_retry "$nport" "$maxconn" "retry: { attempts: 2, backoff: 50ms..1s, budget: 20% }"
  [ "$cmode" != http ] || cynic_upstream cached "$nport" "$maxconn" "fallback: { stale: { max_age: 1h } }"
} > "$work/cynic.yaml"
"$cynic" -c "$work/cynic.yaml" 2>"$work/cynic.stderr" & cynic_pid=$!; pids+=("$cynic_pid")

haproxy_cfg "$hport" "$nport" "$maxconn" > "$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.stderr" & haproxy_pid=$!; pids+=("$haproxy_pid")

wait_port nginx "$nginx_pid" "$nport" 5; wait_port cynic "$cynic_pid" "$cport" 5; wait_port haproxy "$haproxy_pid" "$hport" 5
is_process "$cynic_pid" cynic; is_process "$haproxy_pid" haproxy; is_process "$nginx_pid" nginx

declare -A port=([direct]=$nport [cynic]=$cport [haproxy]=$hport [retry]=$rport)
declare -A pid=([cynic]=$cynic_pid [haproxy]=$haproxy_pid [retry]=$cynic_pid)
problems=()
problem() { problems+=("$1"); }

# Which mode cynic really runs: HTTP mode adds `Via: 1.1 cynic` to responses.
via=$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$cport/small" | tr -d '\r' | awk 'tolower($1) == "via:"' | tr '\n' ' ')
if [ "$cmode" = tcp ]; then
  mode_note="cynic mode: tcp (bytes relayed, no HTTP parsing)"
elif [[ "$via" == *cynic* ]]; then
  mode_note="cynic mode: http (responses carry '${via% }')"
else
  mode_note="cynic mode: http requested, but responses carry no 'Via: ... cynic': this build relays the listener as tcp (HTTP mode not in it)"
  problem "cynic: a mode: http listener answered without Via (HTTP mode not active); its figures are TCP mode's"
fi

nginx_counts() { # -> "accepted_connections requests", less this query's own
  curl -s -m 5 "http://127.0.0.1:$nport/nginx_status" | awk 'NR == 3 {print $1 - 1, $3 - 1}'
}

# One wrk run: path test conns seconds url_path body_size round.
# Appends "rps p50 p99 mbs accepted" to $work/wrk/path-test; a failed run
# (wrk's exit, errors, answers outside 2xx/3xx, short bodies) is a problem.
run_wrk() {
  local path=$1 test=$2 conns=$3 secs=$4 urlp=$5 size=$6 round=$7
  local out="$work/wrk/$path-$test-$round.txt" before after line
  before=$(nginx_counts)
  if ! timeout $((secs + 30)) "${wrk_pin[@]}" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s -s "$here/bench/http_report.lua" \
      "http://127.0.0.1:${port[$path]}$urlp" >"$out" 2>&1; then
    problem "$path $test round $round: wrk failed (exit status above 0): $out"
  fi
  after=$(nginx_counts)
  line=$(awk '$1 == "RESULT"' "$out")
  if [ -z "$line" ]; then
    problem "$path $test round $round: no result from wrk: $out"
    return 0
  fi
  # shellcheck disable=SC2086
  set -- $line
  local reqs=$2 dur=$3 bytes=$4 p50=$5 p99=$6 errs=$(($8 + $9 + ${10} + ${11} + ${12}))
  if [ "$errs" -gt 0 ] || [ "$reqs" -eq 0 ] || [ "$bytes" -lt $((reqs * size)) ]; then
    problem "$path $test round $round: $reqs requests, $bytes bytes, errors connect/read/write/status/timeout $8/$9/${10}/${11}/${12}: $out"
  fi
  awk -v r="$reqs" -v d="$dur" -v b="$bytes" -v p50="$p50" -v p99="$p99" -v bf="$before" -v af="$after" 'BEGIN {
    split(bf, x, " "); split(af, y, " ");
    printf "%.0f %s %s %.1f %d\n", r / (d / 1e6), p50, p99, b / (d / 1e6) / 1048576, y[1] - x[1] - 1 }' \
    >>"$work/wrk/$path-$test"
  if [ "$path" != direct ] && ! kill -0 "${pid[$path]}" 2>/dev/null; then
    problem "$path exited during $test round $round"
  fi
}
best() { sort -g -k"$2" "$work/wrk/$1" | tail -1; } # file column -> the best round's line
wrk_pin=() # the proxy-bound rows pin wrk to core 0 (below)

# RSS added by idle keep-alive connections that made one request each.
# Sets idle_kb, idle_up (upstream connections the proxy then holds to nginx)
# and idle_open (client connections still open once measured).
idle_rss() { # path n
  local path=$1 n=$2 p=${pid[$1]} line before after
  before=$(rss_kb "$p")
  local from to cpid
  # The helper talks through two FIFOs (a coproc's descriptors vanish as soon
  # as it exits, which may be before its last line is read).
  rm -f "$work/idle.in" "$work/idle.out"; mkfifo "$work/idle.in" "$work/idle.out"
  timeout 120 python3 "$here/bench/http_idle.py" "${port[$path]}" "$n" /small "$small_size" \
    <"$work/idle.in" >"$work/idle.out" 2>"$work/idle-$path.stderr" & cpid=$!
  exec {to}>"$work/idle.in" {from}<"$work/idle.out"
  idle_kb=- idle_up=- idle_open=-
  if ! read -r -t 100 line <&"$from" || [ "$line" != "ready $n" ]; then
    problem "$path: $n idle connections could not be set up: $(cat "$work/idle-$path.stderr")"
    exec {from}<&- {to}>&-
    wait "$cpid" 2>/dev/null || true
    return 0
  fi
  after=$(rss_kb "$p")
  idle_up=$(ss -Htnp state established "( dport = :$nport )" | grep -c "pid=$p," || true)
  echo check >&"$to"
  read -r -t 30 line <&"$from" || line=""
  idle_open=${line#open }
  exec {from}<&- {to}>&-
  wait "$cpid" 2>/dev/null || true
  idle_kb=$(( (after - before) * 1000 / n ))
  [ "$idle_open" = "$n" ] || problem "$path: of $n idle connections ${idle_open:-?} were still open when measured"
}

started=$(date +%s)
echo "HTTP benchmark, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "$mode_note"
echo "wrk: 1 thread, keep-alive; best of $rounds rounds of $seconds s; bodies $small_size B and 1 MiB"

declare -A mem up
for path in cynic haproxy; do
  idle_rss "$path" 16 # warm-up: first-use allocations are not per-connection memory
  idle_rss "$path" "$idle_n"
  mem[$path]=$idle_kb up[$path]=$idle_up
done

for path in direct cynic haproxy; do # warm-up, not measured
  timeout 30 wrk -t1 -c16 -d1s "http://127.0.0.1:${port[$path]}/small" >/dev/null 2>&1 || true
done
conn_list="1 16 64"
for round in $(seq 1 "$rounds"); do
  for conns in $conn_list; do
    for path in direct cynic haproxy; do
      run_wrk "$path" "small$conns" "$conns" "$seconds" /small "$small_size" "$round"
    done
  done
  for path in direct cynic haproxy; do
    run_wrk "$path" big 4 "$seconds" /big "$big_size" "$round"
  done
done

# The retry machinery's cost when nothing fails: the same upstream without
# and with `retry`, through the same cynic, back to back in each round.
if [ "$cmode" = http ]; then
  for round in $(seq 1 "$rounds"); do
    run_wrk cynic plain16 16 "$seconds" /small "$small_size" "$round"
    run_wrk retry retry16 16 "$seconds" /small "$small_size" "$round"
  done
fi

# Proxy-bound rounds (see the top): each proxy in a cgroup of its own with a
# CPU quota, the same small GETs at 16 and 64 connections, and the proxy's
# CPU time per request over all rounds (from /proc/<pid>/stat).
cg_base="" cg_kind="" bound_note=""
ncpu=$(nproc)
if [ "$proxy_cpu" = 0 ]; then
  bound_note="proxy-bound rows: off (--proxy-cpu 0)"
elif [ "$ncpu" -lt 2 ] || ! command -v taskset >/dev/null; then
  bound_note="proxy-bound rows: skipped (they need two cores and taskset)"
elif [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] && [ -w /sys/fs/cgroup/cpu ]; then
  cg_kind=v1 cg_base=/sys/fs/cgroup/cpu
elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null && [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
  cg_kind=v2 cg_base=/sys/fs/cgroup
else
  bound_note="proxy-bound rows: skipped (no writable cgroup cpu controller: needs root and cgroup v1 cpu or v2 cpu.max)"
fi
declare -A cg
cg_make() { # name: cg[name], a cgroup held to $proxy_cpu % of one core
  local g="$cg_base/cynic-bench-$$-$1"
  mkdir "$g" 2>/dev/null || return 1
  cgroups+=("$g") cg[$1]=$g
  if [ "$cg_kind" = v1 ]; then
    echo 10000 >"$g/cpu.cfs_period_us" && echo $((proxy_cpu * 100)) >"$g/cpu.cfs_quota_us" || return 1
  else
    grep -qw cpu "$cg_base/cgroup.subtree_control" || echo +cpu >"$cg_base/cgroup.subtree_control" || return 1
    echo "$((proxy_cpu * 100)) 10000" >"$g/cpu.max" || return 1
  fi
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bound_ok=0
if [ -n "$cg_kind" ]; then
  last=$((ncpu - 1))
  if cg_make cynic && cg_make haproxy &&
      echo "$cynic_pid" >"${cg[cynic]}/cgroup.procs" && echo "$haproxy_pid" >"${cg[haproxy]}/cgroup.procs" &&
      taskset -a -p -c "$last" "$cynic_pid" >/dev/null && taskset -a -p -c "$last" "$haproxy_pid" >/dev/null &&
      taskset -a -p -c 0 "$nginx_pid" >/dev/null; then
    bound_ok=1
    wrk_pin=(taskset -c 0)
    for path in cynic haproxy; do # settle under the quota, not measured
      timeout 30 "${wrk_pin[@]}" wrk -t1 -c16 -d1s "http://127.0.0.1:${port[$path]}/small" >/dev/null 2>&1 || true
    done
    for round in $(seq 1 "$rounds"); do
      for conns in 16 64; do
        for path in cynic haproxy; do
          t0=$(cpu_ticks "${pid[$path]}")
          run_wrk "$path" "bound$conns" "$conns" "$seconds" /small "$small_size" "$round"
          t1=$(cpu_ticks "${pid[$path]}")
          reqs=$(awk '$1 == "RESULT" {print $2}' "$work/wrk/$path-bound$conns-$round.txt")
          echo "$((t1 - t0)) ${reqs:-0}" >>"$work/wrk/$path-bound$conns.cpu"
        done
      done
    done
    wrk_pin=()
    bound_note="proxy-bound: each proxy held to $proxy_cpu % of core $last (cgroup $cg_kind CPU quota, 10 ms period); wrk and nginx on core 0, unbound"
  else
    bound_note="proxy-bound rows: skipped (the cgroup $cg_kind cpu controller or taskset refused)"
  fi
  # back to the root group and every core for the rows that follow (fail fast, stale)
  for p in "$cynic_pid" "$haproxy_pid"; do echo "$p" >"$cg_base/cgroup.procs" 2>/dev/null || true; done
  for p in "$cynic_pid" "$haproxy_pid" "$nginx_pid"; do taskset -a -p -c "0-$last" "$p" >/dev/null 2>&1 || true; done
fi
cpu_per_req() { # path test -> CPU us per request over every round, "-" without requests
  awk -v t="$(getconf CLK_TCK)" '{ticks += $1; reqs += $2}
    END { if (reqs > 0) printf "%.1f\n", ticks * 1e6 / t / reqs; else print "-" }' "$work/wrk/$1-$2.cpu" 2>/dev/null || echo -
}

fig() { # path test column -> the figure from the best round, "-" without one
  local sortcol=$4
  [ -s "$work/wrk/$1-$2" ] || { echo -; return; }
  best "$1-$2" "$sortcol" | awk -v c="$3" '{print $c}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2fx\n", a / b }'; }
row() { # label direct cynic haproxy [noratio]
  local r1 r2
  r1=$(ratio "$3" "$2") r2=$(ratio "$3" "$4")
  [ -z "${5:-}" ] || r1=- r2=-
  printf '%-40s %11s %11s %11s %13s %14s\n' "$1" "$2" "$3" "$4" "$r1" "$r2"
}
printf '\n%-40s %11s %11s %11s %13s %14s\n' "" direct cynic haproxy cynic/direct cynic/haproxy
for conns in $conn_list; do
  t=small$conns
  row "requests/s, $conns conn(s)" "$(fig direct "$t" 1 1)" "$(fig cynic "$t" 1 1)" "$(fig haproxy "$t" 1 1)"
  row "  latency p50 (us)" "$(fig direct "$t" 2 1)" "$(fig cynic "$t" 2 1)" "$(fig haproxy "$t" 2 1)"
  row "  latency p99 (us)" "$(fig direct "$t" 3 1)" "$(fig cynic "$t" 3 1)" "$(fig haproxy "$t" 3 1)"
done
row "1 MiB body, 4 conns (MB/s)" "$(fig direct big 4 4)" "$(fig cynic big 4 4)" "$(fig haproxy big 4 4)"
if [ "$cmode" = http ]; then
  rr=$(fig retry retry16 1 1) rp=$(fig cynic plain16 1 1)
  printf '%-40s %11s %11s %11s %13s\n' "retry configured, not needed, 16 conns" "$rp req/s" "$rr req/s" - \
    "$(ratio "$rr" "$rp") of without"
  printf '%-40s %11s %11s %11s %13s\n' "  p99 without / with retry (us)" "$(fig cynic plain16 3 1)" "$(fig retry retry16 3 1)" - \
    "$(ratio "$(fig retry retry16 3 1)" "$(fig cynic plain16 3 1)")"
fi
row "RSS per 1,000 idle keep-alive conns (KB)" - "${mem[cynic]}" "${mem[haproxy]}"
row "  upstream conns held meanwhile" - "${up[cynic]}" "${up[haproxy]}" noratio
echo
echo "$bound_note"
if [ "$bound_ok" = 1 ]; then
  for conns in 16 64; do
    t=bound$conns
    row "bound requests/s, $conns conns" - "$(fig cynic "$t" 1 1)" "$(fig haproxy "$t" 1 1)"
    row "  bound p50 (us)" - "$(fig cynic "$t" 2 1)" "$(fig haproxy "$t" 2 1)"
    row "  bound p99 (us)" - "$(fig cynic "$t" 3 1)" "$(fig haproxy "$t" 3 1)"
    row "  bound CPU per request (us)" - "$(cpu_per_req cynic "$t")" "$(cpu_per_req haproxy "$t")"
  done
fi
echo
echo "connections nginx accepted during the best round (keep-alive reuse; 64 = one per client):"
for path in direct cynic haproxy; do
  printf '  %-8s 1 conn: %s, 16 conns: %s, 64 conns: %s, 1 MiB x 4: %s\n' "$path" \
    "$(fig $path small1 5 1)" "$(fig $path small16 5 1)" "$(fig $path small64 5 1)" "$(fig $path big 5 4)"
done

# cynic logs at info level (a handful of lines, none per request): a drain or
# a breaker that opened during the run makes its figures meaningless.
if grep -q -E '"event":"(draining|breaker_transition)"' "$work/cynic.log" 2>/dev/null; then
  problem "cynic drained or a breaker changed state during the run (its log below)"
fi
# Fail fast: an operator trips the upstream's breaker; every request is then
# cynic's own 503 (Cynic-Answer: breaker_open), never reaching nginx. Its
# latency is what a caller waits for "no" while the dependency is down.
ff_line=""
if [ "$cmode" = http ] && curl -s -m 5 -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d '{"reason": "bench: fail fast"}' "http://127.0.0.1:$aport/breakers/backend/trip"; then
  answer=$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$cport/small" | tr -d '\r' |
    awk 'tolower($1) == "cynic-answer:" {print $2}')
  if [ "$answer" != breaker_open ]; then
    problem "fail fast: a request with the breaker tripped was not answered breaker_open ('$answer')"
  fi
  out="$work/wrk/failfast.txt"
  before=$(nginx_counts)
  timeout $((seconds + 30)) wrk -t1 -c16 -d"${seconds}s" --timeout 5s -s "$here/bench/http_report.lua" \
    "http://127.0.0.1:$cport/small" >"$out" 2>&1 || problem "fail fast: wrk failed: $out"
  after=$(nginx_counts)
  ff_line=$(awk '$1 == "RESULT" {printf "%.0f %s %s %s", $2 / ($3 / 1e6), $5, $6, $2}' "$out")
  if [ $(( $(echo "$after" | awk '{print $2}') - $(echo "$before" | awk '{print $2}') )) -gt 1 ]; then
    problem "fail fast: requests reached nginx while the breaker was tripped ($before -> $after)"
  fi
  curl -s -m 5 -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"reason": "bench"}' \
    "http://127.0.0.1:$aport/breakers/backend/reset" || true
fi
# The fail-fast path answered from the stale cache: /small kept by the GETs
# through the `stale` listener, then both upstreams' breakers tripped; every
# request there is then the kept response (Cynic-Fallback: stale, checked),
# never nginx's (checked), measured against the plain listener's breaker_open
# answers in the same rounds (R of each in turn, best of each).
# Before that, what keeping costs: the `stale` listener proxying (each GET
# looked up and, at most once a second per URL, its body copied and stored)
# against the plain listener, R rounds of each in turn, best of each.
st_line="" sp_line="" st_plain=""
wrk_line() { # port name [503s] -> "rps p50 p99 requests" of one 16-connection run on /small
  local out="$work/wrk/$2.txt" no5xx=1
  [ -z "${3:-}" ] || no5xx=0 # cynic's breaker_open answers are 503s: not errors there
  timeout $((seconds + 30)) wrk -t1 -c16 -d"${seconds}s" --timeout 5s -s "$here/bench/http_report.lua" \
    "http://127.0.0.1:$1/small" >"$out" 2>&1 || problem "$2: wrk failed: $out"
  awk -v s="$no5xx" '$1 == "RESULT" {
    if ($8 + $9 + $10 + s * $11 + $12 > 0) print "errors"; else printf "%.0f %s %s %s", $2 / ($3 / 1e6), $5, $6, $2 }' "$out"
}
sp_plain=""
if [ "$cmode" = http ] && [ -n "$ff_line" ]; then
  # rounds of the plain listener and the keeping one in turn, best of each
  : >"$work/wrk/sp-plain" && : >"$work/wrk/sp-stale"
  for round in $(seq 1 "$rounds"); do
    for which in plain stale; do
      l=$(wrk_line "$([ $which = plain ] && echo "$cport" || echo "$sport")" "sp-$which-$round")
      if [ "$l" = errors ] || [ -z "$l" ]; then
        problem "proxied ($which listener) round $round: wrk errors: $work/wrk/sp-$which-$round.txt"
      else
        echo "$l" >>"$work/wrk/sp-$which"
      fi
    done
  done
  sp_line=$(sort -g -k1 "$work/wrk/sp-stale" | tail -1) sp_plain=$(sort -g -k1 "$work/wrk/sp-plain" | tail -1)
  sp_plain=${sp_plain%% *}
  for u in cached backend; do
    curl -s -m 5 -o /dev/null -X POST -H 'Content-Type: application/json' \
      -d '{"reason": "bench: stale"}' "http://127.0.0.1:$aport/breakers/$u/trip" ||
      problem "stale: the breaker of '$u' could not be tripped"
  done
  marker=$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$sport/small" | tr -d '\r' |
    awk 'tolower($1) == "cynic-fallback:" {print $2}')
  [ "$marker" = stale ] || problem "stale: a request with the breaker tripped was not answered from the stale cache ('$marker')"
  # rounds of plain fail fast (breaker_open) and the stale answer in turn
  : >"$work/wrk/st-plain" && : >"$work/wrk/st-stale"
  before=$(nginx_counts)
  for round in $(seq 1 "$rounds"); do
    for which in plain stale; do
      if [ $which = plain ]; then l=$(wrk_line "$cport" "st-$which-$round" 503s)
      else l=$(wrk_line "$sport" "st-$which-$round"); fi
      if [ "$l" = errors ] || [ -z "$l" ]; then
        problem "fail fast ($which listener) round $round: wrk errors: $work/wrk/st-$which-$round.txt"
      else
        echo "$l" >>"$work/wrk/st-$which"
      fi
    done
  done
  after=$(nginx_counts)
  st_line=$(sort -g -k1 "$work/wrk/st-stale" | tail -1) st_plain=$(sort -g -k1 "$work/wrk/st-plain" | tail -1)
  st_plain=${st_plain%% *}
  if [ $(( $(echo "$after" | awk '{print $2}') - $(echo "$before" | awk '{print $2}') )) -gt 1 ]; then
    problem "stale: requests reached nginx while the breakers were tripped ($before -> $after)"
  fi
  for u in cached backend; do
    curl -s -m 5 -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"reason": "bench"}' \
      "http://127.0.0.1:$aport/breakers/$u/reset" || true
  done
fi
if [ -n "$ff_line" ]; then
  # shellcheck disable=SC2086
  set -- $ff_line
  printf '%-40s %11s %11s %11s %13s %14s\n' "fail fast (breaker tripped), 16 conns" - "$1 req/s" - - \
    "$(ratio "$1" "$(fig cynic small16 1 1)") of proxied"
  printf '%-40s %11s %11s %11s\n' "  latency p50 / p99 (us)" - "$2 / $3" -
  if [ -n "$st_line" ]; then
    # shellcheck disable=SC2086
    set -- $st_line
    printf '%-40s %11s %11s %11s %13s %14s\n' "fail fast from the stale cache, 16 conns" - "$1 req/s" - - \
      "$(ratio "$1" "$st_plain") of fail fast"
    printf '%-40s %11s %11s %11s\n' "  latency p50 / p99 (us)" - "$2 / $3" -
  fi
  if [ -n "$sp_line" ]; then
    # shellcheck disable=SC2086
    set -- $sp_line
    printf '%-40s %11s %11s %11s %13s %14s\n' "proxied, fallback.stale keeping, 16 c." - "$1 req/s" - - \
      "$(ratio "$1" "$sp_plain") of proxied"
  fi
fi
echo "took $(( $(date +%s) - started )) s"

# cynic must exit cleanly on SIGTERM (a sanitizer build reports leaks and
# errors through its exit status); its drain is bounded by drain_timeout.
kill -TERM "$cynic_pid" 2>/dev/null || true
for _ in $(seq 1 200); do kill -0 "$cynic_pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$cynic_pid" 2>/dev/null; then
  problem "cynic still running 10 s after SIGTERM"
else
  cynic_rc=0; wait "$cynic_pid" || cynic_rc=$?
  [ "$cynic_rc" -eq 0 ] || problem "cynic exited with status $cynic_rc after SIGTERM (its stderr below)"
fi

if [ "${#problems[@]}" -gt 0 ]; then
  {
    echo
    echo "$me: the figures above are not valid; what went wrong:"
    for p in "${problems[@]}"; do echo "  - $p"; done
    for f in "$work"/wrk/*.txt; do
      grep -q -E 'errors|Non-2xx' "$f" || ! grep -q '^RESULT' "$f" || continue
      echo "--- $f"; cat "$f"
    done
    echo "--- cynic's log (last 40 lines) and stderr"
    tail -n 40 "$work/cynic.log" 2>/dev/null || true
    tail -n 40 "$work/cynic.stderr"
    echo "--- haproxy's stderr (last 20 lines)"; tail -n 20 "$work/haproxy.stderr"
    echo "--- nginx's error log (last 20 lines)"; tail -n 20 "$work/nginx.error.log" 2>/dev/null || true
  } >&2
  exit 3
fi
