#!/usr/bin/env python3
"""bench/admin_load.py: the data plane while the admin is busy (issue 10).

    CYNIC_BUILD_DIR=build python3 bench/admin_load.py [--seconds S] [--clients N]
                                                      [--upstreams U] [--endpoints E]
                                                      [--poll PATH] [--streams N]

Starts `cynic` with a config of U upstreams x E endpoints (default: the
documented limits, 256 x 64), one listener to a loopback echo server, and
measures proxied round trips (32 bytes out and back on one kept connection,
1 ms apart) for S seconds in four phases of the same run:

  idle     no admin client;
  hostile  N clients pipelining GET /metrics (60 each) or GET
           /status/history (5,000 each), alternately, never reading;
  polling  one client fetching /metrics (--poll PATH) in a loop, reading it whole;
  stream   one client reading GET /status/stream (--streams N: N of them)
           as fast as the events come.

For each phase: p50/p99/max of the round trips and the differences and
ratios against idle, and cynic's RSS (before, peak, after). Prints the load
average too: on a shared machine it decides what the figures mean. Never part
of the pass/fail suite.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import adminutil as au  # noqa: E402
import proxyutil as pu  # noqa: E402
from netutil import RoundTrips, hostile  # noqa: E402
from test_admin_load import big_config  # noqa: E402


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def phase(px, seconds, load=None):
    rt = RoundTrips(px)
    peak = pu.rss_kb(px.pid)
    stop = threading.Event()
    th = None
    if load is not None:
        th = threading.Thread(target=load, args=(stop,), daemon=True)
        th.start()
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        peak = max(peak, pu.rss_kb(px.pid))
        time.sleep(0.05)
    stop.set()
    try:
        xs = sorted(rt.finish())
    except AssertionError:  # a round trip timed out (30 s): a stall, counted as 30 s
        xs = sorted(rt.samples + [30.0])
        print(f"  a round trip timed out: {rt.error}")
    if th is not None:
        th.join(30)
    return {"n": len(xs), "p50": pct(xs, 0.5) * 1e3, "p99": pct(xs, 0.99) * 1e3,
            "max": xs[-1] * 1e3, "rss_peak": peak}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--upstreams", type=int, default=256)
    ap.add_argument("--endpoints", type=int, default=64)
    ap.add_argument("--poll", default="/metrics", help="the path the polling client fetches")
    ap.add_argument("--streams", type=int, default=1, help="status stream clients (0: no phase)")
    a = ap.parse_args()
    echo = pu.echo()
    px = pu.Cynic(big_config(a.upstreams, a.endpoints, echo.endpoint), timeout=120)
    adm = au.Admin(px, timeout=120)
    addr = (adm.host, adm.port)
    print(f"cynic {pu.CYNIC}; {a.upstreams} upstreams x {a.endpoints} endpoints; "
          f"load average before {os.getloadavg()[0]:.2f}")
    rss_start = pu.rss_kb(px.pid)

    def hostile_load(stop):
        socks = []
        for i in range(a.clients):
            req = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n" if i % 2 == 0 else \
                b"GET /status/history HTTP/1.1\r\nHost: a\r\n\r\n"
            socks.append(hostile(addr, req, 60 if i % 2 == 0 else 5000))
        stop.wait()
        for s in socks:
            s.close()

    def polling_load(stop):
        while not stop.is_set():
            with socket.create_connection(addr, timeout=60) as s:
                s.sendall(b"GET " + a.poll.encode() + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                while s.recv(1 << 20):
                    pass

    def stream_load(stop):
        # readers in their own processes (a Python reader here would hold
        # the round-trip thread's GIL), reading as fast as events come
        code = ("import socket,sys\n"
                "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
                "s.sendall(b'GET /status/stream HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n')\n"
                "while s.recv(1 << 20):\n    pass\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, addr[0], str(addr[1])])
                 for _ in range(a.streams)]
        stop.wait()
        for pr in procs:
            pr.kill()
            pr.wait()

    results = {}
    results["idle"] = phase(px, a.seconds)
    results["hostile"] = phase(px, a.seconds, hostile_load)
    time.sleep(1)
    results["polling"] = phase(px, a.seconds, polling_load)
    if a.streams > 0:
        time.sleep(1)
        results["stream"] = phase(px, a.seconds, stream_load)
    time.sleep(1)
    rss_end = pu.rss_kb(px.pid)
    idle = results["idle"]
    print(f"{'phase':8} {'trips':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'p50 +ms':>8} {'p99 +ms':>8} {'max +ms':>8} {'p99 x':>6} {'RSS peak MB':>11}")
    for name, r in results.items():
        print(f"{name:8} {r['n']:6d} {r['p50']:8.3f} {r['p99']:8.3f} {r['max']:8.2f} "
              f"{r['p50'] - idle['p50']:8.3f} {r['p99'] - idle['p99']:8.3f} {r['max'] - idle['max']:8.2f} "
              f"{r['p99'] / idle['p99']:6.2f} {r['rss_peak'] / 1024:11.1f}")
    print(f"RSS: start {rss_start / 1024:.1f} MB, end {rss_end / 1024:.1f} MB; "
          f"load average after {os.getloadavg()[0]:.2f}")
    px.stop()
    echo.close()


if __name__ == "__main__":
    main()
