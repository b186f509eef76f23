#!/usr/bin/env bash
# bench/http_cpu.sh: CPU per request of cynic's `mode: http` and of HAProxy
# (`mode http`), counted so that a busy machine does not change the figure:
# each proxy runs under valgrind's callgrind, its counters are zeroed after a
# warm-up, wrk sends small keep-alive GETs for S seconds, and the instructions
# the proxy executed (user space: cynic, libuv, libc; HAProxy and its libs)
# are divided by the requests wrk completed. Same backend, proxy configs and
# load as bench/http.sh (nginx, a 128-byte file; wrk -t1 keep-alive at 1, 16
# and 64 connections; HAProxy nbthread 1 with forwardfor, Via both ways and a
# unique-id header).
#
#   bench/http_cpu.sh [--seconds S] [--conns "1 16 64"] [--only cynic|haproxy]
#                     [--native] [--keep DIR] [BUILD_DIR]
#
# --native runs the proxies without valgrind and reports the CPU time their
# process used per request instead (user and system, from /proc/<pid>/stat,
# 10 ms ticks): the kernel's share, which instruction counts do not see, but
# moved by the neighbours' cache and scheduling. --keep DIR keeps each
# callgrind dump (DIR/<proxy>.<conns>) for callgrind_annotate.
#
# Requests/s under callgrind are 10 to 50 times lower than native and mean
# nothing; the figure is instructions per request. A run with wrk errors or
# answers outside 2xx/3xx, or a cynic whose responses carry no
# `Via: 1.1 cynic` (not HTTP mode), prints what went wrong and exits 3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
me=bench/http_cpu.sh
usage() {
  echo "usage: $me [--seconds 1..60] [--conns \"1 16 64\"] [--only cynic|haproxy] [--native] [--keep DIR] [BUILD_DIR]" >&2
  exit 2
}
seconds=3 conns="1 16 64" only="" native=0 keep="" build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --conns) [ $# -ge 2 ] || usage; conns=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || usage; only=$2; shift 2 ;;
    --native) native=1; shift ;;
    --keep) [ $# -ge 2 ] || usage; keep=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "$me: unknown option $1" >&2; usage ;;
    *) [ -z "$build" ] || usage; build=$1; shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]{1,2}$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 60 ] ||
  { echo "$me: --seconds must be a whole number from 1 to 60, not '$seconds'" >&2; exit 2; }
for c in $conns; do
  [[ "$c" =~ ^[0-9]{1,4}$ ]] && [ "$c" -ge 1 ] && [ "$c" -le 1000 ] ||
    { echo "$me: --conns takes numbers from 1 to 1000, not '$c'" >&2; exit 2; }
done
case "$only" in ""|cynic|haproxy) ;; *) echo "$me: --only must be cynic or haproxy" >&2; exit 2 ;; esac
[ -z "$keep" ] || mkdir -p "$keep"
build=${build:-$here/build}
cynic=$build/cynic
[ -x "$cynic" ] || { echo "$me: $cynic missing; run make first" >&2; exit 1; }
tools="nginx haproxy wrk python3 curl"
[ "$native" = 1 ] || tools="$tools valgrind callgrind_control"
# shellcheck source=bench/http_common.sh
. "$here/bench/http_common.sh"
# shellcheck disable=SC2086
need_tools $tools
bench_workdir
mkdir -p "$work/www" "$work/nginx"
head -c 128 /dev/zero | tr '\0' s > "$work/www/small"
nport=$(free_port); cport=$(free_port); aport=$(free_port); hport=$(free_port)
maxconn=2000
vg=()
[ "$native" = 1 ] || vg=(valgrind -q --tool=callgrind "--callgrind-out-file=$work/callgrind.out.%p")

nginx_conf "$nport" 4096 > "$work/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx.conf" -e "$work/nginx.error.log" 2>"$work/nginx.stderr" &
nginx_pid=$!; pids+=("$nginx_pid")

{
  cynic_head "$aport"
  cynic_listener bench "$cport" http backend "$maxconn"
  echo "upstreams:"
  cynic_upstream backend "$nport" "$maxconn"
} > "$work/cynic.yaml"
haproxy_cfg "$hport" "$nport" "$maxconn" > "$work/haproxy.cfg"
paths=${only:-cynic haproxy}
declare -A port=([cynic]=$cport [haproxy]=$hport) pid=()
for p in $paths; do
  if [ "$p" = cynic ]; then
    "${vg[@]}" "$cynic" -c "$work/cynic.yaml" 2>"$work/cynic.stderr" & pid[cynic]=$!
  else
    "${vg[@]}" haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.stderr" & pid[haproxy]=$!
  fi
  pids+=("${pid[$p]}")
done
wait_port nginx "$nginx_pid" "$nport" 30 # valgrind starts slowly
for p in $paths; do wait_port "$p" "${pid[$p]}" "${port[$p]}" 30; done
# Only cynic's HTTP mode adds `Via: 1.1 cynic` to responses: a build or a
# stand-in that does not is not what this measures.
if [ -n "${pid[cynic]:-}" ]; then
  via=$(curl -s -m 30 -o /dev/null -D - "http://127.0.0.1:$cport/small" | tr -d '\r' | awk 'tolower($1) == "via:"' | tr '\n' ' ')
  if [[ "$via" != *cynic* ]]; then
    echo "$me: cynic's responses carry no 'Via: 1.1 cynic' (got '${via% }'): not HTTP mode; nothing measured" >&2
    exit 3
  fi
fi
for p in $paths; do # warm-up: first-use allocations, page faults, the pool filling
  timeout 60 wrk -t1 -c64 -d2s "http://127.0.0.1:${port[$p]}/small" >/dev/null 2>&1 || true
done

echo "CPU per request, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$([ "$native" = 1 ] && echo "native: CPU time per request" || echo "callgrind: instructions per request"), $seconds s per row"
bad=0
for c in $conns; do
  for p in $paths; do
    [ "$native" = 1 ] || callgrind_control -z "${pid[$p]}" >/dev/null 2>&1
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${pid[$p]}/stat")
    timeout $((seconds + 60)) wrk -t1 -c"$c" -d"${seconds}s" --timeout 10s -s "$here/bench/http_report.lua" \
      "http://127.0.0.1:${port[$p]}/small" >"$work/wrk.txt" 2>&1 || true
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${pid[$p]}/stat")
    line=$(awk '$1 == "RESULT"' "$work/wrk.txt")
    # shellcheck disable=SC2086
    set -- $line
    if [ -z "$line" ] || [ "$2" -eq 0 ] || [ $(($8 + $9 + ${10} + ${11} + ${12})) -gt 0 ]; then
      echo "$me: $p at $c connections: wrk failed or had errors:" >&2; cat "$work/wrk.txt" >&2; bad=1; continue
    fi
    reqs=$2
    if [ "$native" = 1 ]; then
      tick=$(getconf CLK_TCK)
      awk -v p="$p" -v c="$c" -v r="$reqs" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$tick" 'BEGIN {
        printf "%-8s %3d conns  %8d requests  user %6.2f us/request  system %6.2f us/request\n",
          p, c, r, u * 1e6 / t / r, s * 1e6 / t / r }'
    else
      rm -f "$work"/callgrind.out.*
      callgrind_control -d "${pid[$p]}" >/dev/null 2>&1
      f=""
      for _ in $(seq 1 100); do
        f=$(ls "$work"/callgrind.out."${pid[$p]}".* 2>/dev/null | head -1) && [ -n "$f" ] && break
        sleep 0.1
      done
      [ -n "$f" ] || { echo "$me: no callgrind dump from $p" >&2; exit 1; }
      sleep 0.3 # the dump is written by then; its totals line is last
      ir=$(awk '$1 == "totals:" || $1 == "summary:" {print $2; exit}' "$f")
      [ -z "$keep" ] || cp "$f" "$keep/$p.$c"
      awk -v p="$p" -v c="$c" -v r="$reqs" -v i="$ir" 'BEGIN {
        printf "%-8s %3d conns  %8d requests  %7.0f instructions/request\n", p, c, r, i / r }'
    fi
  done
done
[ "$bad" = 0 ] || exit 3
