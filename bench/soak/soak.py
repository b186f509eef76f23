#!/usr/bin/env python3
"""bench/soak/soak.py: cynic (TCP mode) under mixed traffic and a fault
schedule for a bounded time, sampled into a CSV and a PNG, with a verdict.

    bench/soak/soak.py [--duration S] [--interval S] [--build-dir DIR] [--out DIR]
                       [--valgrind] [--warmup S] [--fault-on S] [--fault-off S]

`make soak` runs it with the defaults (SOAK_SECONDS sets --duration). Not part
of `make test` nor CI. docs/soak.md describes the rig, the CSV columns and the
figures of a run.

The rig (loopback only, every port bound as 0 and read back):

    clients --> cynic listener "flaky"   --> cynic-harness proxy "flaky" --> echo backend
    clients --> cynic listener "healthy" --> echo backend (direct)

Three helper processes (spawned, so their GILs do not share a core with the
sampler): the two echo backends, the healthy traffic and the flaky traffic.
Each traffic process runs the same bounded set of client loops: SHORT
request/response connections (512 bytes out, half-close, the echo back to
EOF), one STREAM connection (1 KB every 100 ms, echoed, for 20 s, then a new
one) and one BULK transfer (2 MB through and back, then a pause). Each call
is an outcome (ok or the way it failed) and a latency, sent to this process.

The fault schedule, on the flaky upstream only, through the harness's
Toxiproxy API: each fault in FAULTS is injected for --fault-on seconds, then
cleared for --fault-off seconds, round and round. Breakers open on the faults
cynic counts (timeout, reset, refused, latency past first_byte) and close again
through the half-open probe in the clear phases.

Every --interval seconds a row: cynic's RSS and open descriptors
(/proc/PID/status, /proc/PID/fd), its open connections and the flaky
endpoint's breaker state (admin GET /status), the healthy calls / errors /
p50 / p99 and the flaky outcomes of that interval, the fault in force and the
load average (the machine may be shared: it decides what the latencies mean).

The verdict (exit status 1 when any line fails):
  - RSS: median of the first window after warm-up (--warmup, default 300 s:
    cynic's bounded rings fill meanwhile) vs the median of the last window
    (both --rss-window s, default 60), growth under 5 %
    (reported, not judged, under valgrind or in a sanitizer build, whose own
    heaps dominate RSS);
  - descriptors: after the faults are cleared, traffic stops and cynic has no
    connection left, the count is the baseline's (taken before any traffic)
    within --fd-allowance (default 0);
  - healthy upstream: zero errors; its p99 reported;
  - the flaky breaker opened and closed again at least once (else the
    schedule tested nothing), and is closed at the end;
  - cynic exits 0 on SIGTERM; under valgrind: no error, nothing definitely
    lost.
"""
import argparse
import csv
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

# ---- the fault schedule -----------------------------------------------------
# (label, how): a toxic (type, stream, attributes) or "down" (the harness proxy
# disabled: connections refused). The flaky upstream's config below decides
# which of them are faults to cynic.
FAULTS = [
    ("latency", ("latency", "downstream", {"latency": 1500, "jitter": 100})),
    ("timeout", ("timeout", "downstream", {"timeout": 0})),
    ("reset_peer", ("reset_peer", "downstream", {"timeout": 0})),
    ("limit_data", ("limit_data", "downstream", {"bytes": 100})),
    ("bandwidth", ("bandwidth", "downstream", {"rate": 64})),
    ("down", None),
]

FLAKY = """timeouts: { connect: 300ms, first_byte: 1s, idle: 3s }
breaker: { faults: 3, leak: 30s, open_for: 2s, half_open_probes: 1 }
bulkhead: { max_connections: 16, max_pending: 8, queue_timeout: 200ms }
"""
HEALTHY = """timeouts: { connect: 1s, first_byte: 10s, idle: 30s }
breaker: { faults: 3, leak: 30s, open_for: 2s, half_open_probes: 1 }
bulkhead: { max_connections: 64, max_pending: 32, queue_timeout: 1s }
"""

SHORT_PAYLOAD = bytes(range(256)) * 2        # 512 B
STREAM_CHUNK = bytes(range(256)) * 4         # 1 KB
BULK_BYTES = 2 << 20                         # 2 MB
BULK_CHUNK = 64 << 10


# ---- helper processes --------------------------------------------------------

def backends_main(conn):
    """Two threaded echo servers (netutil's); sends their ports, then serves
    until told to stop."""
    import netutil
    flaky = netutil.TcpServer(netutil.echo_handler)
    healthy = netutil.TcpServer(netutil.echo_handler)
    conn.send((flaky.port, healthy.port))
    conn.recv()
    flaky.close()
    healthy.close()


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        d = s.recv(min(n - len(out), 1 << 16))
        if not d:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
        out += d
    return bytes(out)


def outcome_of(exc):
    if isinstance(exc, socket.timeout):
        return "hung"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, EOFError):
        return "closed"
    if isinstance(exc, AssertionError):
        return "altered"
    if isinstance(exc, OSError) and exc.errno:
        import errno
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def call_short(addr, timeout):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(SHORT_PAYLOAD)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            got += d
        if not got:
            raise EOFError("EOF before any byte")
        if bytes(got) != SHORT_PAYLOAD:
            if SHORT_PAYLOAD.startswith(bytes(got)):
                raise EOFError(f"truncated at {len(got)}")
            raise AssertionError("altered")


def call_stream(addr, timeout, seconds, gap, stop):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and not stop.is_set():
            s.sendall(STREAM_CHUNK)
            if recv_exactly(s, len(STREAM_CHUNK)) != STREAM_CHUNK:
                raise AssertionError("altered")
            stop.wait(gap)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1):
            raise AssertionError("bytes after the last echo")


def call_bulk(addr, timeout, nbytes):
    block = bytes(range(256)) * (BULK_CHUNK // 256)
    with socket.create_connection(addr, timeout=timeout) as s:
        sent = 0
        while sent < nbytes:
            s.sendall(block)
            if recv_exactly(s, len(block)) != block:
                raise AssertionError("altered")
            sent += len(block)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1):
            raise AssertionError("bytes after the echo")


def traffic_main(name, addr, events, stop, scale, t_end):
    """The client loops of one upstream, until `stop` is set or t_end
    (time.time()) passes. Each call puts (time, upstream, kind, outcome,
    seconds) on `events`. `scale` stretches every pause (valgrind: 10)."""
    timeout = 15.0 * (4 if scale > 1 else 1)
    short_gap = (0.02 if name == "healthy" else 0.05) * scale

    def record(kind, t0, exc):
        events.put((time.time(), name, kind, "ok" if exc is None else outcome_of(exc),
                    time.monotonic() - t0))

    def done():
        return stop.is_set() or time.time() >= t_end

    def short_loop():
        while not done():
            t0, exc = time.monotonic(), None
            try:
                call_short(addr, timeout)
            except (OSError, EOFError, AssertionError) as e:
                exc = e
            record("short", t0, exc)
            stop.wait(short_gap)

    def stream_loop():
        while not done():
            t0, exc = time.monotonic(), None
            try:
                call_stream(addr, timeout, 20.0, 0.1 * scale, stop)
            except (OSError, EOFError, AssertionError) as e:
                exc = e
            record("stream", t0, exc)
            stop.wait(0.5 * scale)

    def bulk_loop():
        while not done():
            t0, exc = time.monotonic(), None
            try:
                call_bulk(addr, timeout, BULK_BYTES // (8 if scale > 1 else 1))
            except (OSError, EOFError, AssertionError) as e:
                exc = e
            record("bulk", t0, exc)
            stop.wait(2.0 * scale)

    loops = [short_loop, short_loop, stream_loop, bulk_loop]
    threads = [threading.Thread(target=f, daemon=True) for f in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- the run -----------------------------------------------------------------

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Schedule(threading.Thread):
    """Injects and clears FAULTS on the harness proxy `flaky`, round and round."""

    def __init__(self, harness, on, off, stop):
        super().__init__(daemon=True)
        self.h, self.on, self.off, self.stop = harness, on, off, stop
        self.current = "none"
        self.history = [(time.time(), "none")]  # (since, fault in force)
        self.injected = 0
        self.errors = []

    def api(self, method, path, body=None, want=(200, 201, 204)):
        st, _, raw = self.h.api.request(method, path, body=body)
        if st not in want:
            self.errors.append(f"{method} {path}: {st} {raw[:200]!r}")

    def run(self):
        i = 0
        while not self.stop.is_set():
            label, how = FAULTS[i % len(FAULTS)]
            i += 1
            if how is None:
                self.api("POST", "/proxies/flaky", {"enabled": False})
            else:
                typ, stream, attrs = how
                self.api("POST", "/proxies/flaky/toxics",
                         {"name": label, "type": typ, "stream": stream, "toxicity": 1.0,
                          "attributes": attrs})
            self.current = label
            self.history.append((time.time(), label))
            self.injected += 1
            self.stop.wait(self.on)
            self.clear()
            self.stop.wait(self.off)

    def clear(self):
        # POST /reset enables every proxy and removes every toxic
        self.api("POST", "/reset")
        self.current = "none"
        self.history.append((time.time(), "none"))

    def in_force(self, a, b):
        """The fault in force for most of [a, b) (time.time() values)."""
        spans = {}
        hist = list(self.history)
        for i, (since, label) in enumerate(hist):
            until = hist[i + 1][0] if i + 1 < len(hist) else b
            lo, hi = max(since, a), min(until, b)
            if hi > lo:
                spans[label] = spans.get(label, 0.0) + hi - lo
        return max(spans, key=spans.get) if spans else self.current


def admin_status(api, size=None):
    """GET /status, parsed; `size` (a list) gets the answer's length appended."""
    st, js, raw = api.get("/status")
    if st != 200 or js is None:
        raise RuntimeError(f"GET /status: {st} {raw[:200]!r}")
    if size is not None:
        size.append(len(raw))
    return js


def flaky_endpoint(status):
    for u in status["upstreams"]:
        if u["name"] == "flaky":
            return u["endpoints"][0]
    raise RuntimeError("no flaky upstream in /status")


CHILDREN = []  # every process the run starts, for cleanup()

BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 2, "forced_closed": 0}

COLUMNS = ["t_s", "fault", "rss_kb", "fds", "connections", "healthy_calls", "healthy_errors",
           "healthy_p50_ms", "healthy_p99_ms", "healthy_max_ms", "flaky_ok", "flaky_failed",
           "flaky_failed_kinds", "breaker", "breaker_level", "breaker_transitions", "status_bytes", "load1"]


def plot(csv_path, png_path, title):
    gp = shutil.which("gnuplot")
    if gp is None:
        print("soak: gnuplot missing (scripts/deps.sh soak installs it); no plot", file=sys.stderr)
        return False
    script = f"""
set terminal pngcairo size 900,900 font ",9"
set output "{png_path}"
set datafile separator ","
set key autotitle columnhead
set multiplot layout 3,1 title "{title}"
set grid
set xlabel "s"
set ylabel "RSS (MB)"
set y2label "open descriptors"
set ytics nomirror
set y2tics
set key top left
plot "{csv_path}" using 1:($3/1024) with lines lw 2 title "RSS (MB)", \\
     "" using 1:4 axes x1y2 with steps title "descriptors"
unset y2label
unset y2tics
set ytics mirror
set ylabel "healthy latency (ms)"
set logscale y
plot "{csv_path}" using 1:8 with lines title "p50", "" using 1:9 with lines lw 2 title "p99", \\
     "" using 1:10 with points pt 1 ps 0.5 title "max"
unset logscale y
set ylabel "flaky calls per interval"
set y2label "breaker (0 closed, 1 half-open, 2 open)"
set y2range [0:5]
set y2tics 0,1,2
set ytics nomirror
plot "{csv_path}" using 1:11 with steps title "ok", "" using 1:12 with steps title "failed", \\
     "" using 1:15 axes x1y2 with steps lw 2 title "breaker (at the sample)"
unset multiplot
"""
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print(f"soak: gnuplot failed: {r.stderr}", file=sys.stderr)
        return False
    return True


def valgrind_summary(path):
    text = open(path, errors="replace").read()
    def num(pattern):
        m = re.search(pattern, text)
        return int(m.group(1).replace(",", "")) if m else None
    return {
        "errors": num(r"ERROR SUMMARY: ([\d,]+) errors"),
        "definitely_lost": num(r"definitely lost: ([\d,]+) bytes"),
        "indirectly_lost": num(r"indirectly lost: ([\d,]+) bytes"),
        "possibly_lost": num(r"possibly lost: ([\d,]+) bytes"),
        "all_freed": "All heap blocks were freed" in text,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of traffic (default 600; 60 with --valgrind)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (5)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None, help="directory for soak.csv, soak.png (BUILD/soak)")
    ap.add_argument("--valgrind", action="store_true",
                    help="run cynic under valgrind --leak-check=full, traffic scaled down")
    ap.add_argument("--warmup", type=float, default=None,
                    help="s before the RSS baseline (300, or half a shorter run; 15 with --valgrind)")
    ap.add_argument("--rss-window", type=float, default=60.0,
                    help="s of samples in each RSS median (60; shortened to a third of the run after warm-up)")
    ap.add_argument("--rss-growth", type=float, default=5.0, help="largest RSS growth allowed, percent (5)")
    ap.add_argument("--fd-allowance", type=int, default=0, help="descriptors the end may differ from the baseline (0)")
    ap.add_argument("--fault-on", type=float, default=5.0, help="s each fault is in force (5)")
    ap.add_argument("--fault-off", type=float, default=5.0, help="s clear after each fault (5)")
    a = ap.parse_args()
    duration = a.duration if a.duration is not None else (60.0 if a.valgrind else 600.0)
    # cynic's bounded state fills in the first 300 s (the per-second history
    # ring, /status's last 128 transitions, the pooled buffers' pages): RSS
    # is judged after that (docs/soak.md, "Warm-up")
    warmup = a.warmup if a.warmup is not None else (15.0 if a.valgrind else min(300.0, duration / 2))
    if duration <= 0 or a.interval <= 0 or a.fault_on <= 0 or a.fault_off <= 0:
        ap.error("--duration, --interval, --fault-on and --fault-off must be positive")
    if warmup >= duration:
        ap.error(f"--warmup ({warmup:g} s) must be shorter than --duration ({duration:g} s)")
    build = os.path.abspath(a.build_dir)
    out = os.path.abspath(a.out or os.path.join(build, "soak"))
    for b in ("cynic", "cynic-harness"):
        if not os.access(os.path.join(build, b), os.X_OK):
            ap.error(f"{build}/{b} missing: build first (make build)")
    if a.valgrind and shutil.which("valgrind") is None:
        ap.error("valgrind missing (scripts/deps.sh soak installs it)")
    os.makedirs(out, exist_ok=True)
    os.environ["CYNIC_BUILD_DIR"] = build  # read by proxyutil and netutil at import
    import proxyutil as pu
    from netutil import Api, Program, binary

    scale = 10 if a.valgrind else 1
    ctx = mp.get_context("spawn")
    back_conn, child_conn = ctx.Pipe()
    backends = ctx.Process(target=backends_main, args=(child_conn,), daemon=True)
    backends.start()
    CHILDREN.append(backends)
    flaky_port, healthy_port = back_conn.recv()

    # cynic-harness as tests/integration/harness_util.py starts it (that
    # module imports pytest, which a soak does not need)
    harness = Program([binary("cynic-harness"), "-host", "127.0.0.1", "-port", "0", "-seed", "1"],
                      "API listening")
    CHILDREN.append(harness.proc)
    harness.api = Api(harness.host, harness.port)
    st, js, raw = harness.api.post("/proxies", {"name": "flaky", "listen": "127.0.0.1:0",
                                                "upstream": f"127.0.0.1:{flaky_port}"})
    if st != 201:
        raise RuntimeError(f"cynic-harness: POST /proxies: {st} {raw!r}")
    harness_port = int(js["listen"].rsplit(":", 1)[1])

    vg_log = os.path.join(out, "valgrind.log")
    wrap = ()
    if a.valgrind:
        wrap = ("valgrind", "--leak-check=full", "--show-leak-kinds=definite",
                "--errors-for-leak-kinds=definite", "--error-exitcode=99", f"--log-file={vg_log}")
    cfg = pu.config(pu.listener("flaky", "flaky") + pu.listener("healthy", "healthy",
                                                             "timeouts: { idle: 60s }"),
                    pu.upstream("flaky", [f"127.0.0.1:{harness_port}"], FLAKY)
                    + pu.upstream("healthy", [f"127.0.0.1:{healthy_port}"], HEALTHY))
    px = pu.Cynic(cfg, timeout=120 if a.valgrind else 15, wrap=wrap)
    CHILDREN.append(px.proc)
    admin = Api(*px.addr("admin"), timeout=60 if a.valgrind else 10)
    load_start = os.getloadavg()
    print(f"soak: cynic pid {px.pid}{' under valgrind' if a.valgrind else ''}; {duration:g} s, "
          f"sample every {a.interval:g} s, warm-up {warmup:g} s; faults {a.fault_on:g} s on / "
          f"{a.fault_off:g} s off: {', '.join(f[0] for f in FAULTS)}; "
          f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)

    # one call per listener so lazily made things exist, then the baseline
    for name in ("flaky", "healthy"):
        call_short(px.addr(name), 60)
    admin_status(admin)
    pu.wait_for(lambda: admin_status(admin)["connections"] == 0, timeout=30, what="no connection")
    base_fds, base_rss = fd_count(px.pid), rss_kb(px.pid)

    events = ctx.Queue()
    stop = ctx.Event()
    t0 = time.time()
    t_end = t0 + duration
    workers = [ctx.Process(target=traffic_main, args=(n, px.addr(n), events, stop, scale, t_end), daemon=True)
               for n in ("healthy", "flaky")]
    for w in workers:
        w.start()
        CHILDREN.append(w)
    sched_stop = threading.Event()
    sched = Schedule(harness, a.fault_on, a.fault_off, sched_stop)
    sched.start()

    rows = []
    healthy_all, healthy_errors, healthy_err_kinds = [], 0, {}
    flaky_totals = {}
    csv_path = os.path.join(out, "soak.csv")
    f = open(csv_path, "w", newline="")
    w = csv.writer(f)
    w.writerow(COLUMNS)
    pending = []

    def drain_events():
        while True:
            try:
                pending.append(events.get_nowait())
            except queue.Empty:
                return

    next_t = t0 + a.interval
    while True:
        now = time.time()
        if now < next_t:
            time.sleep(min(next_t - now, 0.2))
            drain_events()
            continue
        drain_events()
        mine = [e for e in pending if e[0] < next_t]
        pending[:] = [e for e in pending if e[0] >= next_t]
        h = [e for e in mine if e[1] == "healthy"]
        hl = [e[4] * 1e3 for e in h if e[2] == "short" and e[3] == "ok"]
        herr = [e for e in h if e[3] != "ok"]
        healthy_errors += len(herr)
        for e in herr:
            k = f"{e[2]}:{e[3]}"
            healthy_err_kinds[k] = healthy_err_kinds.get(k, 0) + 1
        healthy_all += hl
        fl = [e for e in mine if e[1] == "flaky"]
        kinds = {}
        for e in fl:
            if e[3] != "ok":
                kinds[e[3]] = kinds.get(e[3], 0) + 1
            k = f"{e[2]}:{e[3]}"
            flaky_totals[k] = flaky_totals.get(k, 0) + 1
        size = []
        st = admin_status(admin, size)
        ep = flaky_endpoint(st)
        br = ep["breaker"]
        row = {
            "t_s": round(next_t - t0, 1), "fault": sched.in_force(next_t - a.interval, next_t),
            "rss_kb": rss_kb(px.pid), "fds": fd_count(px.pid), "connections": st["connections"],
            "healthy_calls": len(h), "healthy_errors": len(herr),
            "healthy_p50_ms": f"{pct(hl, 0.5):.3f}" if hl else "",
            "healthy_p99_ms": f"{pct(hl, 0.99):.3f}" if hl else "",
            "healthy_max_ms": f"{max(hl):.3f}" if hl else "",
            "flaky_ok": sum(1 for e in fl if e[3] == "ok"),
            "flaky_failed": sum(1 for e in fl if e[3] != "ok"),
            "flaky_failed_kinds": " ".join(f"{k}={v}" for k, v in sorted(kinds.items())),
            "breaker": br["state"], "breaker_level": BREAKER_LEVEL.get(br["state"], 0),
            "breaker_transitions": br["transitions"], "status_bytes": size[0], "load1": f"{os.getloadavg()[0]:.2f}",
        }
        rows.append(row)
        w.writerow([row[c] for c in COLUMNS])
        f.flush()
        print(f"  {row['t_s']:6.0f} s  {row['fault']:10} RSS {row['rss_kb'] / 1024:6.1f} MB  fds {row['fds']:3}  "
              f"conns {row['connections']:3}  healthy {row['healthy_calls']:4} calls {row['healthy_errors']} err "
              f"p99 {row['healthy_p99_ms'] or '-':>8} ms  flaky ok {row['flaky_ok']:3} failed {row['flaky_failed']:3}  "
              f"breaker {row['breaker']:9} load {row['load1']}", flush=True)
        next_t += a.interval
        if next_t > t_end + 1e-6:
            break

    # faults cleared, traffic stopped and drained, then the end figures
    sched_stop.set()
    sched.join(30)
    sched.clear()
    stop.set()
    for wk in workers:
        wk.join(120)
    drain_events()
    late_healthy_errors = [e for e in pending if e[1] == "healthy" and e[3] != "ok"]
    healthy_errors += len(late_healthy_errors)
    for e in late_healthy_errors:
        k = f"{e[2]}:{e[3]}"
        healthy_err_kinds[k] = healthy_err_kinds.get(k, 0) + 1
    f.close()
    drained = True
    try:
        pu.wait_for(lambda: admin_status(admin)["connections"] == 0, timeout=60, interval=0.2,
                    what="cynic's connections drained")
    except AssertionError:
        drained = False
    # the breaker closes on its next successful call once open_for is over:
    # a few calls on the cleared dependency, bounded
    end_breaker = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        end_breaker = flaky_endpoint(admin_status(admin))["breaker"]["state"]
        if end_breaker == "closed":
            break
        try:
            call_short(px.addr("flaky"), 30)
        except (OSError, EOFError, AssertionError):
            pass
        time.sleep(0.5)
    pu.wait_for(lambda: admin_status(admin)["connections"] == 0, timeout=60, interval=0.2, what="no connection")
    fds_settled = None
    try:
        pu.wait_for(lambda: abs(fd_count(px.pid) - base_fds) <= a.fd_allowance, timeout=10, interval=0.2)
    except AssertionError:
        pass
    fds_settled = fd_count(px.pid)
    end_rss = rss_kb(px.pid)
    opens = len([r for r in px.logs(event="breaker_transition", upstream="flaky") if r.get("to") == "open"])
    closes = len([r for r in px.logs(event="breaker_transition", upstream="flaky") if r.get("to") == "closed"])
    healthy_breaker = [r for r in px.logs(event="breaker_transition", upstream="healthy")]
    admin.close()
    load_end = os.getloadavg()

    # cynic's exit (and valgrind's report)
    px.signal(15)
    try:
        rc = px.proc.wait(600 if a.valgrind else 30)
    except subprocess.TimeoutExpired:
        px.kill()
        rc = "killed (no exit 600 s after SIGTERM)"
    px._reader.join(5)
    log_path = os.path.join(out, "cynic.log")
    with open(log_path, "w") as lf:
        lf.write("\n".join(px.lines) + "\n")
    harness.api.close()
    harness.stop()
    back_conn.send("stop")
    backends.join(10)

    png_path = os.path.join(out, "soak.png")
    title = (f"cynic soak: {duration:g} s{' under valgrind' if a.valgrind else ''}, faults {a.fault_on:g} s on / "
             f"{a.fault_off:g} s off; load avg {load_start[0]:.1f} -> {load_end[0]:.1f} (2 cores, shared)")
    plotted = plot(csv_path, png_path, title)

    # ---- the verdict ----------------------------------------------------------
    verdict = []

    def check(ok, text):
        verdict.append((ok, text))

    after = [r for r in rows if r["t_s"] > warmup]
    window = min(a.rss_window, (duration - warmup) / 3)
    first = [r["rss_kb"] for r in after if r["t_s"] <= warmup + window]
    last = [r["rss_kb"] for r in after if r["t_s"] > duration - window]
    growth = None
    if first and last:
        m0, m1 = statistics.median(first), statistics.median(last)
        growth = (m1 - m0) / m0 * 100
        text = (f"RSS: median {m0 / 1024:.1f} MB in {warmup:.0f}-{warmup + window:.0f} s, "
                f"{m1 / 1024:.1f} MB in the last {window:.0f} s: {growth:+.2f} % "
                f"(limit {a.rss_growth:g} %; start {base_rss / 1024:.1f} MB, end {end_rss / 1024:.1f} MB, "
                f"peak {max(r['rss_kb'] for r in rows) / 1024:.1f} MB)")
        if a.valgrind or pu.sanitized():
            # valgrind's heap, or ASan's quarantine (freed blocks held back,
            # up to 256 MB), is most of the RSS: the figure says nothing of cynic's
            check(True, text + f" [not judged under {'valgrind' if a.valgrind else 'a sanitizer build'}]")
        else:
            check(growth < a.rss_growth, text)
    else:
        check(a.valgrind, "RSS: too few samples after warm-up to judge (run longer or sample more often)")
    check(drained, "connections drained after traffic stopped" + ("" if drained else ": NOT within 60 s"))
    check(abs(fds_settled - base_fds) <= a.fd_allowance,
          f"descriptors: baseline {base_fds}, end {fds_settled} (allowance {a.fd_allowance}; "
          f"peak {max(r['fds'] for r in rows)})")
    p99_all = pct(healthy_all, 0.99)
    p99s = [float(r["healthy_p99_ms"]) for r in rows if r["healthy_p99_ms"]]
    check(healthy_errors == 0,
          f"healthy upstream: {len(healthy_all)} short calls, {healthy_errors} errors"
          + (f" ({healthy_err_kinds})" if healthy_errors else "")
          + (f"; p50 {pct(healthy_all, 0.5):.2f} ms, p99 {p99_all:.2f} ms over the run, interval p99 "
             f"{min(p99s):.2f}-{max(p99s):.2f} ms, max {max(healthy_all):.1f} ms" if healthy_all else ""))
    check(not healthy_breaker, f"healthy breaker transitions: {len(healthy_breaker)}")
    check(opens >= 1 and closes >= 1 and end_breaker == "closed",
          f"flaky breaker: opened {opens} times, closed {closes} times, {end_breaker} at the end; "
          f"{sched.injected} faults injected")
    check(not sched.errors, f"harness API calls: {len(sched.errors)} failed" +
          (f" ({sched.errors[:3]})" if sched.errors else ""))
    flaky_ok = sum(v for k, v in flaky_totals.items() if k.endswith(":ok"))
    flaky_bad = sum(v for k, v in flaky_totals.items() if not k.endswith(":ok"))
    print(f"flaky outcomes: {flaky_ok} ok, {flaky_bad} failed: "
          + ", ".join(f"{k}={v}" for k, v in sorted(flaky_totals.items())))
    check(rc == 0 or (a.valgrind and rc == 99), f"cynic exit status on SIGTERM: {rc}")
    if a.valgrind:
        vs = valgrind_summary(vg_log)
        check(vs["errors"] == 0 and vs["definitely_lost"] in (0, None) and rc == 0,
              f"valgrind: {vs['errors']} errors, definitely lost {vs['definitely_lost']} bytes, "
              f"indirectly {vs['indirectly_lost']}, possibly {vs['possibly_lost']}"
              f"{', all heap blocks freed' if vs['all_freed'] else ''} ({vg_log})")
    print(f"load average: start {load_start[0]:.2f}, end {load_end[0]:.2f} (2 cores shared with other work)")
    print(f"CSV {csv_path}; plot {png_path if plotted else '(none)'}; cynic log {log_path}")
    print("verdict:")
    for ok, text in verdict:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    failed = [t for ok, t in verdict if not ok]
    print("soak: " + ("PASS" if not failed else f"FAIL ({len(failed)})"))
    summary = {"duration_s": duration, "valgrind": a.valgrind, "rss_growth_pct": growth,
               "base_rss_kb": base_rss, "end_rss_kb": end_rss, "base_fds": base_fds, "end_fds": fds_settled,
               "healthy_calls": len(healthy_all), "healthy_errors": healthy_errors,
               "healthy_p99_ms": p99_all, "flaky_breaker_opens": opens, "flaky_breaker_closes": closes,
               "flaky_outcomes": flaky_totals, "load_start": load_start, "load_end": load_end,
               "verdict": [[ok, t] for ok, t in verdict]}
    with open(os.path.join(out, "summary.json"), "w") as sf:
        json.dump(summary, sf, indent=1)
    return 0 if not failed else 1


def cleanup():
    """Ends whatever the run started and is still running (an interrupted
    or failed run): the processes in CHILDREN, each by its own handle."""
    for c in reversed(CHILDREN):
        try:
            if isinstance(c, subprocess.Popen):
                if c.poll() is None:
                    c.kill()
                    c.wait(10)
            elif c.is_alive():
                c.kill()
                c.join(10)
        except Exception:  # noqa: BLE001 (best effort on the way out)
            pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rc = main()
    except KeyboardInterrupt:
        rc = 130
    finally:
        cleanup()
    sys.exit(rc)
