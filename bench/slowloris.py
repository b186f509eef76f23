#!/usr/bin/env python3
"""bench/slowloris.py: what 2,000 slowloris clients cost the normal requests
of an HTTP-mode listener (issue 11: "do not move normal requests' p99 by more
than a few milliseconds"), loopback only.

    python3 bench/slowloris.py [--build-dir build] [--slow 2000] [--seconds 8]

One cynic (`mode: http`, timeouts.header 4s) in front of nginx (Debian's,
started here as the current user: no system config is touched). Phases, each
--seconds long, wrk -t1 -c8 keep-alive GETs of a 128-byte body throughout:

  baseline   no slow client
  slowloris  --slow clients, each sending a request head one byte a second
             (one selector loop in a process of its own, so that the slow
             clients and wrk do not share a CPU-bound Python), reconnecting
             when cynic closes one: the listener's header timeout answers
             each 408 and closes it; all --slow stay open throughout
  after      none again

Printed per phase: wrk's requests/s, p50 and p99, the open slow clients, the
408s cynic gave, cynic's RSS; then the p99 difference slowloris - baseline.
A benchmark, not part of `make test` (the figures depend on the machine; the
load average is printed). Exits 1 when wrk saw errors or the slow clients were
not answered 408 at the header timeout.
"""
import argparse
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HEAD = b"GET /slow HTTP/1.1\r\nHost: bench\r\nUser-Agent: slowloris\r\nX-Pad: " + b"p" * 40 + b"\r\n\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def slow_clients(port, count, seconds, report):
    """The slow clients (run in a child process): `count` connections, each
    sending HEAD one byte a second, reopened when closed; writes a JSON line
    {"open_min", "answered_408", "other"} to `report` at the end."""
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> next byte index
    answered = other = 0
    open_min = count

    def opened():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        conns[s] = [0, b""]
        sel.register(s, selectors.EVENT_READ)

    for _ in range(count):
        opened()
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_tick:  # one byte each, once a second
            next_tick = now + 1.0
            for s, st in list(conns.items()):
                if st[0] < len(HEAD):
                    try:
                        s.send(HEAD[st[0]:st[0] + 1])
                        st[0] += 1
                    except OSError:
                        pass
            open_min = min(open_min, len(conns))
        for key, _ in sel.select(timeout=max(0.0, min(next_tick, end) - time.monotonic())):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                conns[s][1] += data
                continue
            got = conns[s][1]
            if got.startswith(b"HTTP/1.1 408 ") and b"Cynic-Answer: header_timeout" in got:
                answered += 1
            else:
                other += 1
            sel.unregister(s)
            s.close()
            del conns[s]
            opened()  # slowloris keeps its count
    with open(report, "w") as f:
        json.dump({"open_min": open_min, "answered_408": answered, "other": other}, f)


def wrk(port, seconds):
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "5s", "-s",
                          os.path.join(HERE, "http_report.lua"), f"http://127.0.0.1:{port}/small"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        sys.exit("wrk gave no result:\n" + out)
    f = [float(x) for x in m.group(1).split()]
    return {"rps": f[0] / (f[1] / 1e6), "p50": f[3], "p99": f[4], "errors": int(sum(f[6:11]))}


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    if not 1 <= a.slow <= 20000 or not 2 <= a.seconds <= 60:
        sys.exit("--slow 1..20000, --seconds 2..60")
    work = tempfile.mkdtemp(prefix="cynic-slowloris-")
    nport, cport, aport = free_port(), free_port(), free_port()
    os.makedirs(f"{work}/html")
    with open(f"{work}/html/small", "wb") as f:
        f.write(b"x" * 128)
    with open(f"{work}/nginx.conf", "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;
error_log {work}/nginx.err; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:{nport}; root {work}/html; }} }}
""")
    with open(f"{work}/cynic.yaml", "w") as f:
        f.write(f"""admin:
  listen: 127.0.0.1:{aport}
log:
  file: "{work}/cynic.log"
listeners:
  - name: web
    listen: 127.0.0.1:{cport}
    mode: http
    upstream: nginx
    max_connections: {a.slow + 1000}
    timeouts: {{ header: 4s, idle: 60s }}
upstreams:
  - name: nginx
    endpoints: [127.0.0.1:{nport}]
    pool: {{ max_idle: 64 }}
""")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * a.slow + 2000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    procs = [subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/nginx.conf"],
                              stderr=subprocess.DEVNULL)]
    cynic = subprocess.Popen([os.path.join(a.build_dir, "cynic"), "-c", f"{work}/cynic.yaml"])
    procs.append(cynic)
    failed = []
    try:
        wait_port(nport, "nginx")
        wait_port(cport, "cynic")
        print(f"slowloris bench, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
              f"{os.cpu_count()} cores, load {' '.join(open('/proc/loadavg').read().split()[:3])}; "
              f"{a.slow} slow clients, timeouts.header 4s, wrk -t1 -c8, {a.seconds} s a phase")
        wrk(cport, 2)  # warm the pool
        rows = []
        base = wrk(cport, a.seconds)
        rows.append(("baseline", base, "-", "-", rss_kb(cynic.pid)))
        report = f"{work}/slow.json"
        # the slow clients start, reach their count, and run past the phase
        slow = subprocess.Popen([sys.executable, __file__, "--child", str(cport), str(a.slow),
                                 str(a.seconds + 8), report])
        procs.append(slow)
        time.sleep(3)  # all connected and dripping
        during = wrk(cport, a.seconds)
        peak = rss_kb(cynic.pid)
        slow.wait(timeout=a.seconds + 60)
        with open(report) as f:
            sr = json.load(f)
        rows.append(("slowloris", during, sr["open_min"], sr["answered_408"], peak))
        after = wrk(cport, a.seconds)
        rows.append(("after", after, "-", "-", rss_kb(cynic.pid)))
        print(f"\n{'phase':<10} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'errors':>7} "
              f"{'slow open':>10} {'408s':>6} {'RSS KB':>8}")
        for name, r, op, ans, rss in rows:
            print(f"{name:<10} {r['rps']:>9.0f} {r['p50']:>8.0f} {r['p99']:>8.0f} {r['errors']:>7} "
                  f"{op!s:>10} {ans!s:>6} {rss:>8}")
        print(f"\np99 slowloris - baseline: {(during['p99'] - base['p99']) / 1000:+.2f} ms; "
              f"p50: {(during['p50'] - base['p50']) / 1000:+.2f} ms; requests/s "
              f"{during['rps'] / base['rps']:.2f}x; cynic RSS per slow connection "
              f"{(peak - rows[0][4]) / a.slow:.1f} KB")
        if any(r["errors"] for _, r, *_ in rows):
            failed.append("wrk saw errors")
        if sr["other"] or sr["answered_408"] < a.slow:
            failed.append(f"slow clients: {sr['answered_408']} answered 408, {sr['other']} otherwise")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        slow_clients(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        sys.exit(0)
    sys.exit(main())
