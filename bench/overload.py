#!/usr/bin/env python3
"""bench/overload.py: cynic driven past its limits with wrk (issue 13, "Load and
overload"), TCP mode, loopback only.

    python3 bench/overload.py [--build-dir build] [--seconds 8] [--delay-ms 10]

One cynic in front of a small HTTP backend (its own process: asyncio, keep-alive,
--delay-ms per answer, so that requests hold their bulkhead slot for a while),
with deliberately small limits: listener max_connections 100, upstream bulkhead
10 slots + 10 waiting (queue_timeout 100ms). Phases, each --seconds long:

  baseline   wrk -c 5                       (well within every limit)
  bulkhead   wrk -c 100  (10x the bulkhead)
  maxconn    wrk -c 1000 (10x max_connections)
  reconnect  wrk -c 200 with "Connection: close": a new connection per request
  after      wrk -c 5 again: back to normal?

Throughout, a prober asks the admin listener for /health and /ready every 50 ms
(a new connection each time, as a load balancer would), and a sampler reads
/metrics every 250 ms for the open client connections, the bulkhead's queue and
cynic's RSS. Printed per phase: requests/s, wrk's p50/p99, wrk's socket errors
(what cynic shed shows up there: it closes, it does not queue), cynic's outcomes
(from cynic_connections_total), the peaks of open connections and queue, the
admin probes' p50/p99/max, and RSS. Then the verdicts the issue asks for:

  - shed, not queued: open connections never above max_connections, the queue
    never above max_pending, RSS peak bounded;
  - /health and /ready answered promptly under every storm (max under 250 ms);
  - back to normal: "after" within 25% of baseline's requests/s.

Exits 1 when a verdict fails. A benchmark, not part of `make test`: the figures
depend on the machine (the load average is printed).
"""
import argparse
import http.client
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

BACKEND = r'''
import asyncio, sys
delay = float(sys.argv[1]) / 1000.0
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if delay:
                await asyncio.sleep(delay)
            close = b"connection: close" in head.lower()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                         + (b"Connection: close\r\n" if close else b"") + b"\r\nok\n")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
'''

MAX_CONNECTIONS = 100
BULKHEAD = 10
PENDING = 10


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def wrk(url, conns, seconds, close=False):
    threads = min(2, conns)
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--latency",
           "--timeout", "5s", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    r = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": 0, "requests": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))

    def ms(v, unit):
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m:
            r["p" + q] = ms(m.group(1), m.group(2))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = sum(int(x) for x in m.groups())
        r["err_detail"] = "connect %s, read %s, write %s, timeout %s" % m.groups()
    return r


class Sampler:
    """Reads /metrics every 250 ms; peaks of open connections, queue, RSS."""

    def __init__(self, host, port, pid):
        import adminutil
        self.host, self.port, self.pid = host, port, pid
        self.parse = adminutil.parse_prometheus
        self.peak_open = self.peak_pending = self.peak_rss = 0
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        import proxyutil
        while not self.stop.wait(0.25):
            try:
                m = self.parse(get(self.host, self.port, "/metrics")[1])
                self.peak_open = max(self.peak_open, int(sum(
                    v for _, v in m.all("cynic_listener_connections_open"))))
                self.peak_pending = max(self.peak_pending, int(sum(
                    v for _, v in m.all("cynic_bulkhead_pending"))))
                self.peak_rss = max(self.peak_rss, proxyutil.rss_kb(self.pid))
            except Exception:  # a sample lost to the storm is not a verdict
                pass

    def reset(self):
        self.peak_open = self.peak_pending = self.peak_rss = 0

    def close(self):
        self.stop.set()
        self.th.join(5)


class Prober:
    """GET /health and /ready alternately every 50 ms, a new connection each."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.samples, self.failures = [], 0
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        i = 0
        while not self.stop.wait(0.05):
            path = "/health" if i % 2 == 0 else "/ready"
            i += 1
            t0 = time.monotonic()
            try:
                status, _ = get(self.host, self.port, path, timeout=5)
                if status not in (200, 503):
                    self.failures += 1
            except OSError:
                self.failures += 1
                continue
            self.samples.append((time.monotonic() - t0) * 1e3)

    def take(self):
        xs, self.samples = self.samples, []
        f, self.failures = self.failures, 0
        return xs, f

    def close(self):
        self.stop.set()
        self.th.join(10)


def get(host, port, path, timeout=10):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def outcomes(host, port):
    import adminutil
    m = adminutil.parse_prometheus(get(host, port, "/metrics")[1])
    out = {}
    for labels, v in m.all("cynic_connections_total"):
        out[labels["outcome"]] = out.get(labels["outcome"], 0) + v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.environ.get("CYNIC_BUILD_DIR", "build"))
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--delay-ms", type=float, default=10)
    a = ap.parse_args()
    os.environ["CYNIC_BUILD_DIR"] = os.path.abspath(a.build_dir)
    import proxyutil as pu

    backend = subprocess.Popen([sys.executable, "-c", BACKEND, str(a.delay_ms)],
                               stdout=subprocess.PIPE, text=True)
    bport = int(backend.stdout.readline())
    cfg = pu.config(
        pu.listener("app", "backend", f"max_connections: {MAX_CONNECTIONS}\n"),
        pu.upstream("backend", [f"127.0.0.1:{bport}"],
                    f"bulkhead: {{ max_connections: {BULKHEAD}, max_pending: {PENDING}, "
                    "queue_timeout: 100ms }\n"),
        log_level="info")
    px = pu.Cynic(cfg)
    host, port = px.addr("app")
    ahost, aport = px.addr("admin")
    url = f"http://{host}:{port}/"
    print(f"cynic {pu.CYNIC}; backend delay {a.delay_ms} ms; listener max_connections "
          f"{MAX_CONNECTIONS}; bulkhead {BULKHEAD} + {PENDING} waiting, queue_timeout 100ms; "
          f"load average {os.getloadavg()[0]:.2f}")
    sampler = Sampler(ahost, aport, px.pid)
    prober = Prober(ahost, aport)
    phases = [("baseline", 5, False), ("bulkhead", 100, False), ("maxconn", 1000, False),
              ("reconnect", 200, True), ("after", 5, False)]
    rows = []
    before = outcomes(ahost, aport)
    for name, conns, close in phases:
        sampler.reset()
        prober.take()
        w = wrk(url, conns, a.seconds, close)
        time.sleep(0.5)  # the last closes reach the counters
        probes, probe_failures = prober.take()
        now = outcomes(ahost, aport)
        delta = {k: int(v - before.get(k, 0)) for k, v in now.items() if v - before.get(k, 0) > 0}
        before = now
        rows.append((name, conns, w, probes, probe_failures, delta, sampler.peak_open,
                     sampler.peak_pending, sampler.peak_rss))
        time.sleep(1)
    sampler.close()
    prober.close()
    px.stop()
    backend.kill()
    backend.wait()

    print(f"\n{'phase':10} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'wrk errors':>10} "
          f"{'open max':>8} {'queue max':>9} {'admin p50':>9} {'p99':>6} {'max ms':>7} {'RSS MB':>7}")
    for name, conns, w, probes, pf, delta, po, pp, rss in rows:
        print(f"{name:10} {conns:5d} {w['rps']:8.0f} {w['p50']:8.2f} {w['p99']:8.2f} "
              f"{w['errors']:10d} {po:8d} {pp:9d} {pct(probes, 0.5):9.2f} {pct(probes, 0.99):6.2f} "
              f"{max(probes) if probes else float('nan'):7.2f} {rss / 1024:7.1f}")
    print("\ncynic's outcomes per phase (cynic_connections_total):")
    for name, _, w, _, pf, delta, *_ in rows:
        print(f"  {name:10} {delta}" + (f"; wrk socket errors: {w['err_detail']}" if "err_detail" in w
                                        else "") + (f"; admin probes failed: {pf}" if pf else ""))

    ok = True

    def verdict(good, text):
        nonlocal ok
        ok = ok and good
        print(f"  {'ok    ' if good else 'FAILED'} {text}")

    print("\nverdicts:")
    peak_open = max(r[6] for r in rows)
    peak_queue = max(r[7] for r in rows)
    verdict(peak_open <= MAX_CONNECTIONS,
            f"open client connections never above max_connections ({peak_open} <= {MAX_CONNECTIONS})")
    verdict(peak_queue <= PENDING, f"bulkhead queue never above max_pending ({peak_queue} <= {PENDING})")
    shed = sum(r[5].get("bulkhead_full", 0) + r[5].get("queue_timeout", 0) +
               r[5].get("max_connections", 0) for r in rows[1:4])
    verdict(shed > 0, f"the storms were shed, not queued ({shed} connections closed by a limit)")
    worst = max((max(r[3]) if r[3] else 0.0) for r in rows)
    failed = sum(r[4] for r in rows)
    verdict(worst < 250 and failed == 0,
            f"/health and /ready answered within 250 ms throughout (worst {worst:.1f} ms, "
            f"{failed} failed)")
    base, after = rows[0][2]["rps"], rows[-1][2]["rps"]
    verdict(base > 0 and after >= 0.75 * base,
            f"back to normal after the storms: {after:.0f} req/s vs {base:.0f} at baseline "
            f"({after / base if base else 0:.2f}x)")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
