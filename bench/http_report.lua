-- bench/http_report.lua: wrk's end-of-run report for bench/http.sh, one line
-- the script parses (wrk's own text rounds its figures):
--   RESULT requests duration_us bytes p50_us p99_us max_us
--          connect_errors read_errors write_errors status_errors timeouts
-- status_errors counts answers outside 2xx/3xx. No request() or response()
-- hook: those would make wrk run Lua per request and measure wrk.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.0f %.0f %.0f %d %d %d %d %d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
