"""The fault matrix, HTTP mode: the test harness against the system.

The TCP matrix's idea (test_fault_matrix_tcp.py) with `mode: http`
listeners: every misbehaviour of an HTTP dependency is driven, with real
requests over loopback, into cynic and checked against the protection that
should catch it (docs/design-http.md):

- the caller's worst wait stays within the configured bound plus MARGIN, and
  what it gets is exact: the upstream's own status, cynic's answer (status and
  Cynic-Answer), or a reset when part of a response had gone out;
- the breaker opens after exactly `faults` faults when the fault is one (and
  not one fault sooner), then fails fast (503, Cynic-Answer: breaker_open,
  Retry-After), and closes again once the dependency recovers; for what is
  not a fault (a 404 with the default expect.status, a client that leaves, a
  response under the bounds) its bucket stays empty;
- a second, healthy upstream behind the same cynic keeps answering, every
  call 200, none slower than HEALTHY_WORST (bulkhead isolation);
- nothing leaks: cynic's descriptors return to their count before the fault
  and its RSS to within RSS_MARGIN_KB of it.

Each row records what it observed; the run writes them as JSON
($CYNIC_FAULTS_OUT, default BUILD/faults/http.json) and the last test checks
that docs/faults.md's HTTP section (`make faults-doc` renders it from that
file) still shows what this run saw, timings aside.

The rig of every row: a scripted HTTP/1.1 backend (the dependency; its
`mode` says how it answers) behind a cynic-harness proxy `dep`; cynic's
listener `app` (mode http) -> upstream `dep` (one endpoint: the harness
proxy) and listener `other` (mode http) -> upstream `healthy` (another
backend, direct). The harness injects what it can (statuses, content types,
resets, garbage, truncation, black holes, latency); the backend does what it
cannot (a 1 GB response, streamed and never built in memory; a hang before or
after the head; a slow body). Upstream `dep` keeps no idle connections
(pool.max_idle 0): every request gets a connection of its own through the
harness, so a toxic that counts bytes counts them from the request's first.
"""
import json
import socket
import statistics
import threading
import time

import pytest

import adminutil as au
import proxyutil as pu
from harness_util import Harness
import matrixutil as mu
from matrixutil import MARGIN, SLOW, fds, ms

CONNECT, FIRST_BYTE, IDLE, REQUEST, OPEN_FOR, FAULTS = 0.3, 1.0, 1.0, 2.5, 1.5, 3
MAX_RESPONSE = 1 << 20  # limits.max_response_bytes: 1MB
GIGABYTE = 1 << 30

# Bounds sit against the configured timeouts, not against how fast the
# (shared, 2-core) machine is (as in the TCP matrix; MARGIN and RSS_MARGIN_KB
# are matrixutil's).
AT_ONCE = CONNECT if SLOW else CONNECT - 0.05  # s: a fail-fast answer
NO_TIMER = 0.1                          # s: the bound of an answer no timer has to end
HEALTHY_WORST = 1.5 if SLOW else FIRST_BYTE - 0.1
MAX_CONNECTIONS, MAX_PENDING = 4, 2
DEP = f"""
timeouts: {{ connect: 300ms, first_byte: 1s, idle: 1s, request: 2500ms }}
breaker: {{ faults: {FAULTS}, leak: 60s, open_for: 1500ms, half_open_probes: 1 }}
bulkhead: {{ max_connections: {MAX_CONNECTIONS}, max_pending: {MAX_PENDING}, queue_timeout: 200ms }}
expect: {{ content_type: application/json }}
limits: {{ max_response_bytes: 1MB }}
pool: {{ max_idle: 0 }}
"""
BODY = (b'{"pad": "' + b"x" * 4000 + b'"}')  # a 4 KB JSON body

RESULTS = mu.Results("http")
record = RESULTS.record


@pytest.fixture(scope="module", autouse=True)
def write_results():
    yield
    RESULTS.write()


# ---- the dependency ------------------------------------------------------------

def response(status=b"200 OK", body=BODY, ctype=b"application/json", extra=b""):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def drain(conn):
    """Hangs: reads and discards until the peer closes (cynic gives up on the
    connection at its timeout, which ends this thread)."""
    while conn.recv(65536):
        pass


class Backend(pu.Server):
    """A keep-alive HTTP/1.1 backend answering every request by `mode`:
    ok (200, 4 KB of JSON), 404, hang (reads the request, never answers),
    hang_after_head (the head and 10 of 1,000 body bytes, then nothing),
    gigabyte (Content-Length: 1 GB, streamed), gigabyte_chunked (1 GB in
    64 KB chunks), slow_body (100 KB, 1 KB every 100 ms: bytes keep flowing
    under the idle timeout). A response is never built whole in memory:
    the streams write one 64 KB block over and over until done or cut."""

    def __init__(self):
        self.mode = "ok"
        self.requests = 0
        self.sent = 0  # body bytes written by the streaming modes (all connections)
        super().__init__(self.handle)

    def handle(self, conn):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[buf.index(b"\r\n\r\n") + 4:]  # GETs only: no body
            self.requests += 1
            mode = self.mode
            if mode == "ok":
                conn.sendall(response())
            elif mode == "404":
                conn.sendall(response(b"404 Not Found", b'{"error": "no such thing"}'))
            elif mode == "hang":
                return drain(conn)
            elif mode == "hang_after_head":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
                return drain(conn)
            elif mode in ("gigabyte", "gigabyte_chunked"):
                return self.stream(conn, chunked=mode == "gigabyte_chunked")
            elif mode == "slow_body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 102400\r\n\r\n")
                for _ in range(100):
                    conn.sendall(b"y" * 1024)
                    time.sleep(0.1)
                return None
            else:
                raise AssertionError(mode)

    def stream(self, conn, chunked):
        block = b"z" * 65536
        if chunked:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            block = b"10000\r\n" + block + b"\r\n"
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % GIGABYTE)
        for _ in range(GIGABYTE // 65536):
            conn.sendall(block)  # raises once cynic cuts the connection
            self.sent += 65536
        if chunked:
            conn.sendall(b"0\r\n\r\n")


# ---- calls -------------------------------------------------------------------

class Answer:
    """What one caller saw: `outcome` is "<status>" for a whole response of
    the upstream's, "<status> <Cynic-Answer>" for a whole answer of cynic's,
    "reset" (reset before the response's framed end, head seen or not: a
    caller's kernel may drop unread bytes when the reset lands), "cut" (a
    clean EOF before the framed end: a cut response that looks whole to a
    careless reader; never expected), "nothing" (EOF without a byte) or
    "hung" (no end within the timeout)."""

    def __init__(self, outcome, seconds, head=None, body=b"", received=0):
        self.outcome, self.seconds, self.received = outcome, seconds, received
        self.status, self.headers, self.body = None, {}, body
        if head is not None:
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                if line:
                    k, v = line.split(":", 1)
                    self.headers[k.strip().lower()] = v.strip()

    def __repr__(self):
        return f"<{self.outcome} {self.seconds:.3f}s {self.received}B {self.headers}>"


def chunked_end(body):
    """True when `body` is a complete chunked body (sizes, data, last chunk,
    trailers)."""
    i = 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            return False
        size = int(body[i:j].split(b";")[0], 16)
        i = j + 2
        if size == 0:
            return body.find(b"\r\n\r\n", i - 2) >= 0
        i += size + 2
        if i > len(body):
            return False


def call(addr, path="/", timeout=10.0, keep=1 << 22):
    """One caller: GET with Connection: close, read to EOF. Keeps at most
    `keep` bytes of what arrives (a flood is counted, not stored)."""
    t0 = time.monotonic()
    got, received = bytearray(), 0
    req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
    error = None
    try:
        with socket.create_connection(addr, timeout=timeout) as c:
            c.sendall(req)
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                received += len(d)
                if len(got) < keep:
                    got += d[:keep - len(got)]
    except socket.timeout:
        error = "hung"
    except OSError:  # reset, or broken pipe at the send
        error = "reset"
    dt = time.monotonic() - t0
    end = got.find(b"\r\n\r\n")
    head = bytes(got[:end + 4]) if end >= 0 else None
    if head is None:
        return Answer(error or ("nothing" if not got else "cut"), dt, received=received)
    ans = Answer("", dt, head, bytes(got[end + 4:]), received)
    if error:
        ans.outcome = error
        return ans
    if "content-length" in ans.headers:
        whole = len(ans.body) == int(ans.headers["content-length"])
    elif ans.headers.get("transfer-encoding") == "chunked":
        whole = chunked_end(ans.body)
    else:
        whole = True  # read to EOF by definition
    if not whole:
        ans.outcome = "cut"
    elif "cynic-answer" in ans.headers:
        ans.outcome = f"{ans.status} {ans.headers['cynic-answer']}"
    else:
        ans.outcome = str(ans.status)
    return ans


class Rig(mu.RigBase):
    """The dependency behind the harness, the healthy upstream, and cynic."""

    def __init__(self, spare=None, extra=""):
        self.backend = Backend()
        self.healthy = Backend()
        self.spare = spare  # a second endpoint of `dep`, direct (the retry rows)
        self.harness = Harness()
        self.dep = self.harness.create("dep", self.backend.endpoint)["listen"]
        endpoints = [self.dep] + ([spare.endpoint] if spare else [])
        self.px = pu.Cynic(pu.config(
            pu.listener("app", "dep", "mode: http") + pu.listener("other", "healthy", "mode: http"),
            pu.upstream("dep", endpoints, DEP + extra) + pu.upstream("healthy", [self.healthy.endpoint])))
        self.admin = au.Admin(self.px)
        self.app, self.other = self.px.addr("app"), self.px.addr("other")
        for _ in range(5):  # warm up both paths, then take the baseline
            assert call(self.app).outcome == "200"
            assert call(self.other).outcome == "200"
        self.watch(mu.Monitor(self.probe_healthy, "200", HEALTHY_WORST))

    def probe_healthy(self):
        a = call(self.other, "/healthy", timeout=5)
        return a.outcome, a.seconds

    def backend_mode(self, mode):
        """A fault the backend makes: returns a clear() for it."""
        self.backend.mode = mode
        self.injected = time.time()
        return mode

    def backend_ok(self, _name):
        self.backend.mode = "ok"
        self.cleared = time.time()

    def breaker(self):
        return self.admin.breaker("dep", self.dep)

    def close(self):
        self.monitor.halt.set()
        self.px.stop()
        self.harness.stop()
        self.backend.close()
        self.healthy.close()
        if self.spare:
            self.spare.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


# ---- the two shapes of a row -------------------------------------------------

def breaker_row(rig, row, inject, clear, expect, bound, timed=False, check=None, sees=None):
    """A fault the breaker must count: `faults` calls each end as `expect`
    within bound + MARGIN (timed: each one ended by that timeout, so no
    sooner than the bound); after `faults` - 1 of them the breaker is still
    closed, after the last it opens, later calls get 503 breaker_open at once
    without reaching the dependency, and after the fault clears a probe
    closes it again. check(answer): more to assert on each faulty call;
    sees: what the document says the caller saw (default: `expect`)."""
    name = inject()
    outcomes, worst, last_start = [], 0.0, None
    for i in range(FAULTS):
        if i == FAULTS - 1:  # one fault short: still closed, nothing logged
            assert rig.transitions() == [], rig.transitions()
            assert rig.breaker()["state"] == "closed"
        last_start = time.time()
        a = call(rig.app, timeout=bound + 10)
        outcomes.append(a.outcome)
        worst = max(worst, a.seconds)
        assert not timed or a.seconds >= bound - 0.05, f"a call ended after {a.seconds:.3f}s, before the {bound}s timeout"
        if check:
            check(a)
    assert outcomes == [expect] * FAULTS, outcomes
    assert worst <= bound + MARGIN, f"a caller waited {worst:.3f}s (bound {bound}s)"
    pu.wait_for(rig.transitions, timeout=5, what="the breaker to open")
    opened = rig.transitions()[0]
    assert opened[:3] == ("closed", "open", "fault_threshold"), opened
    assert opened[3] >= last_start - 0.005, "the breaker opened before the last fault"
    before = rig.backend.requests
    fast = []
    for _ in range(5):
        a = call(rig.app)
        assert a.outcome == "503 breaker_open", a
        assert 1 <= int(a.headers["retry-after"]) <= 2, a.headers  # open_for 1.5 s, rounded up
        said = json.loads(a.body)
        assert (said["error"], said["upstream"]) == ("breaker_open", "dep"), said
        fast.append(a.seconds)
    assert max(fast) < AT_ONCE, f"fail fast took {max(fast):.3f}s"
    assert rig.backend.requests == before, "a request reached the dependency through an open breaker"
    clear(name)
    rig.wait_closed(lambda: call(rig.app).outcome == "200", OPEN_FOR)
    ts = rig.transitions()
    assert [t[:2] for t in ts] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")], ts
    healthy, rss = rig.finish()
    record(row, caller_sees=sees or expect, breaker="opens after 3 faults, fails fast, closes after recovery",
           bound_ms=ms(bound), worst_ms=ms(worst), detect_ms=ms(opened[3] - rig.injected),
           recover_ms=ms(ts[2][3] - rig.cleared), fail_fast_us=round(statistics.median(fast) * 1e6),
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def pass_row(rig, row, inject, clear, expect, bound, lower=0.0, calls=5, sees=None):
    """Not a fault: every call ends as `expect` within [lower, bound +
    MARGIN], more calls than `faults` and the breaker's bucket stays empty;
    calls are 200 again once the fault clears."""
    name = inject()
    worst, first = 0.0, None
    for _ in range(calls):
        a = call(rig.app, timeout=bound + 10)
        assert a.outcome == expect, a
        assert lower <= a.seconds <= bound + MARGIN, f"call took {a.seconds:.3f}s, expected {lower}..{bound}s"
        worst = max(worst, a.seconds)
        first = a.seconds if first is None else first
    br = rig.breaker()
    assert (br["state"], br["bucket_level"]) == ("closed", 0), br
    assert rig.transitions() == [], rig.transitions()
    clear(name)
    t0 = time.monotonic()
    pu.wait_for(lambda: call(rig.app).outcome == "200", timeout=10, what="whole calls again")
    recovered = time.monotonic() - t0
    healthy, rss = rig.finish()
    record(row, caller_sees=sees or expect, breaker="stays closed (bucket empty)", bound_ms=ms(bound),
           worst_ms=ms(worst), detect_ms=ms(first), recover_ms=ms(recovered), fail_fast_us=None,
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def row(id_, fault, injected_by, protection):
    return {"id": id_, "fault": fault, "injected_by": injected_by, "protection": protection}


def not_cynics(a):
    assert "cynic-answer" not in a.headers, a.headers


def head_seen(a):
    assert a.status == 200 and a.headers.get("content-length") == "1000", a


# ---- faults the breaker must count -------------------------------------------

def test_status_500(rig):
    breaker_row(rig, row("01-status-500", "500 Internal Server Error", "`http_status` 500, JSON (downstream)",
                         "expect.status (default 200-499): the upstream's 500 is passed on and counted"),
                lambda: rig.toxic("http_status", status=500, body='{"error": "oops"}',
                                  content_type="application/json"), rig.clear, "500", NO_TIMER,
                check=not_cynics)


def test_html_instead_of_json(rig):
    breaker_row(rig, row("02-html-200", "200 with HTML where JSON is expected",
                         "`http_content_type` text/html",
                         "expect.content_type: application/json: 502, the page is not passed on"),
                lambda: rig.toxic("http_content_type", content_type="text/html"), rig.clear,
                "502 unexpected_content_type", NO_TIMER)


def test_refused(rig):
    breaker_row(rig, row("03-refused", "refused connection", "`refuse`",
                         "502 connect_refused, breaker"),
                lambda: rig.toxic("refuse"), rig.clear, "502 connect_refused", CONNECT)


def test_hang_before_head(rig):
    breaker_row(rig, row("04-hang-before-head", "reads the request, never answers",
                         "backend (hangs before the head)", "first-byte timeout: 504, breaker"),
                lambda: rig.backend_mode("hang"), rig.backend_ok, "504 first_byte_timeout",
                FIRST_BYTE, timed=True)


def test_hang_after_head(rig):
    breaker_row(rig, row("05-hang-after-head", "the head and 10 of 1,000 body bytes, then silence",
                         "backend (hangs after the head)",
                         "idle timeout: the client is reset (a cut body must not look whole), breaker"),
                lambda: rig.backend_mode("hang_after_head"), rig.backend_ok, "reset", IDLE, timed=True,
                check=head_seen, sees="the head and 10 bytes, then a reset")


def test_reset_before_head(rig):
    breaker_row(rig, row("06-reset-before-head", "reset before the response head",
                         "`reset_peer` 0 ms (upstream)", "502 upstream_reset, breaker"),
                lambda: rig.toxic("reset_peer", stream="upstream", timeout=0), rig.clear,
                "502 upstream_reset", NO_TIMER)


def test_reset_mid_body(rig):
    breaker_row(rig, row("07-reset-mid-body", "reset mid-body (after 1 KB of 4 KB)",
                         "`reset_after_bytes` 1024",
                         "the client is reset (the cut answer cannot look whole); a fault, unlike TCP mode"),
                lambda: rig.toxic("reset_after_bytes", bytes=1024), rig.clear, "reset", NO_TIMER)


def test_garbage(rig):
    breaker_row(rig, row("08-garbage", "garbage instead of a response", "`garbage` 512",
                         "the strict parser refuses it: 502 bad_response, breaker"),
                lambda: rig.toxic("garbage", bytes=512), rig.clear, "502 bad_response", NO_TIMER)


def test_truncated(rig):
    breaker_row(rig, row("09-truncated", "truncated body (1 KB of 4 KB, then FIN)", "`limit_data` 1024",
                         "framing tells: the client is reset, breaker (TCP mode cannot tell)"),
                lambda: rig.toxic("limit_data", bytes=1024), rig.clear, "reset", NO_TIMER)


def test_gigabyte_declared(rig):
    breaker_row(rig, row("10-gigabyte-declared", "a 1 GB response, Content-Length says so",
                         "backend (streams 1 GB)",
                         "limits.max_response_bytes 1MB: 502 before a byte, breaker"),
                lambda: rig.backend_mode("gigabyte"), rig.backend_ok, "502 response_too_large", NO_TIMER)


def test_gigabyte_chunked(rig):
    def cut_near_the_limit(a):
        assert a.status == 200 and a.received <= MAX_RESPONSE + (256 << 10), a
    breaker_row(rig, row("11-gigabyte-chunked", "a 1 GB chunked response (size not declared)",
                         "backend (streams 1 GB in 64 KB chunks)",
                         "limits.max_response_bytes 1MB: cut past it, the client is reset, breaker"),
                lambda: rig.backend_mode("gigabyte_chunked"), rig.backend_ok, "reset", NO_TIMER,
                check=cut_near_the_limit, sees="the head and up to 1 MB, then a reset")
    assert rig.backend.sent < 64 * MAX_RESPONSE, f"the backend wrote {rig.backend.sent} bytes"


def slow_head_seen(a):
    assert a.status == 200 and a.headers.get("content-length") == "102400", a
    assert 0 < len(a.body) < 102400, a


def test_slow_body(rig):
    breaker_row(rig, row("12-slow-body", "slow body (1 KB every 100 ms of 100 KB)", "backend (slow body)",
                         "request timeout (bytes keep flowing, so idle never fires): the client is reset, breaker"),
                lambda: rig.backend_mode("slow_body"), rig.backend_ok, "reset", REQUEST, timed=True,
                check=slow_head_seen, sees="the head and part of the body, then a reset")


# ---- not faults ----------------------------------------------------------------

def test_not_found(rig):
    pass_row(rig, row("20-not-found", "404 Not Found", "backend (404)",
                      "none: inside the default expect.status (200-499), passed on, not counted"),
             lambda: rig.backend_mode("404"), rig.backend_ok, "404", NO_TIMER)


def test_latency_under_the_bound(rig):
    pass_row(rig, row("21-latency-jitter", "latency under the bound (150 ± 100 ms per response)",
                      "`http_latency` 150, jitter 100", "none needed: under the first-byte timeout"),
             lambda: rig.toxic("http_latency", latency=150, jitter=100), rig.clear, "200", 0.25)


def test_client_leaves(rig):
    """Callers that hang up (with a reset) while their request waits on a
    hanging dependency: the dependency did nothing wrong that anyone saw, so
    the breaker hears nothing, twice `faults` times over."""
    r = row("22-client-leaves", "the caller leaves mid-exchange (reset, 6 times)", "caller; backend hangs",
            "none: a client that leaves is not the dependency's fault")
    rig.backend_mode("hang")
    worst = 0.0
    for i in range(2 * FAULTS):
        seen = rig.backend.requests
        t0 = time.monotonic()
        c = socket.create_connection(rig.app, timeout=10)
        c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        pu.wait_for(lambda: rig.backend.requests > seen, what="the request upstream")
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        worst = max(worst, time.monotonic() - t0)
    rig.backend_ok(None)
    # cynic lets go of each client and its upstream connection (both counted
    # in its descriptors), and its bucket stays empty
    pu.wait_for(lambda: fds(rig.px.pid) <= rig.base_fds, timeout=FIRST_BYTE + 5,
                what="cynic to let go of the callers that left")
    br = rig.breaker()
    assert (br["state"], br["bucket_level"]) == ("closed", 0), br
    assert rig.transitions() == []
    t1 = time.monotonic()
    pu.wait_for(lambda: call(rig.app).outcome == "200", timeout=10, what="whole calls again")
    healthy, rss = rig.finish()
    record(r, caller_sees="(gone)", breaker="stays closed (bucket empty)", bound_ms=None,
           worst_ms=ms(worst), detect_ms=None, recover_ms=ms(time.monotonic() - t1), fail_fast_us=None,
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


# ---- the bulkhead ----------------------------------------------------------------

def test_bulkhead_holds_a_hanging_dependency(rig):
    """12 requests at once to a black hole: 4 hold the bulkhead's slots until
    the first-byte timeout (504), 2 wait in its queue for queue_timeout (503
    queue_timeout), 6 are answered 503 bulkhead_full at once; the healthy
    upstream never notices."""
    r = row("30-bulkhead", "a hanging dependency under load (12 requests at once)", "`blackhole`",
            "bulkhead: 4 slots (504 at the first-byte timeout), 2 queued for 200 ms, the rest 503 at once")
    name = rig.toxic("blackhole")
    results = [None] * 12

    def one(i):
        results[i] = call(rig.app, timeout=FIRST_BYTE + 10)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(FIRST_BYTE + 15)
    assert all(x is not None for x in results), results
    by = {}
    for a in results:
        by.setdefault(a.outcome, []).append(a.seconds)
    assert sorted((k, len(v)) for k, v in by.items()) == [
        ("503 bulkhead_full", 12 - MAX_CONNECTIONS - MAX_PENDING), ("503 queue_timeout", MAX_PENDING),
        ("504 first_byte_timeout", MAX_CONNECTIONS)], by
    assert max(by["503 bulkhead_full"]) < FIRST_BYTE / 2, by
    assert all(0.2 - 0.05 <= t <= 0.2 + MARGIN for t in by["503 queue_timeout"]), by
    assert all(FIRST_BYTE - 0.05 <= t <= FIRST_BYTE + MARGIN for t in by["504 first_byte_timeout"]), by
    rig.clear(name)
    t1 = time.monotonic()
    pu.wait_for(lambda: call(rig.app).outcome == "200", timeout=OPEN_FOR + 15, interval=0.05,
                what="whole calls again")
    recover = time.monotonic() - t1
    opened = [t[:3] for t in rig.transitions() if t[1] == "open"]
    assert opened == [("closed", "open", "fault_threshold")], rig.transitions()
    healthy, rss = rig.finish()
    times = sorted(a.seconds for a in results)
    record(r, caller_sees="6 × 503 bulkhead_full at once, 2 × 503 queue_timeout, 4 × 504 first_byte_timeout",
           breaker="opens (4 first-byte timeouts)",
           bound_ms=ms(FIRST_BYTE), worst_ms=ms(times[-1]), detect_ms=ms(times[0]), recover_ms=ms(recover),
           fail_fast_us=round(times[0] * 1e6), healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


# ---- retries ---------------------------------------------------------------------

RETRY = "retry: { attempts: 1, backoff: 10ms..50ms, on: [connect_failure] }\n"


def test_retry_on_the_other_endpoint():
    """One of two endpoints refuses: each call that lands on it goes again on
    the other one (retry.on connect_failure) and the caller sees 200; the
    refusing endpoint's breaker still counts every refusal, opens after
    `faults`, and from then on no call tries it (no retry needed either)."""
    r = row("40-retry-other-endpoint", "one of two endpoints refuses connections",
            "`refuse` on one endpoint; the other direct",
            "retry.on connect_failure: sent again on the other endpoint, the caller sees 200; "
            "the refusing endpoint's breaker opens")
    rig = Rig(spare=Backend(), extra=RETRY)
    try:
        name = rig.toxic("refuse")
        worst, opened_at = 0.0, None
        for _ in range(4 * FAULTS):
            a = call(rig.app, timeout=10)
            assert a.outcome == "200", a
            worst = max(worst, a.seconds)
            if opened_at is None and rig.transitions():
                opened_at = rig.transitions()[0][3]
        pu.wait_for(rig.transitions, timeout=5, what="the refusing endpoint's breaker to open")
        opened = rig.transitions()[0]
        assert opened[:3] == ("closed", "open", "fault_threshold"), opened
        assert worst <= CONNECT + 0.05 + MARGIN, f"a caller waited {worst:.3f}s"
        retried = [x for x in rig.px.logs(event="retry")]
        assert retried, "no retry was logged"
        spare_before = rig.spare.requests
        for _ in range(4):  # the open endpoint is skipped: straight to the other one
            assert call(rig.app).outcome == "200"
        assert rig.spare.requests == spare_before + 4
        rig.clear(name)
        rig.wait_closed(lambda: call(rig.app).outcome == "200", OPEN_FOR)
        ts = rig.transitions()
        healthy, rss = rig.finish()
        record(r, caller_sees="200 (every call)",
               breaker="the refusing endpoint's opens after 3 faults, closes after recovery",
               bound_ms=ms(CONNECT), worst_ms=ms(worst), detect_ms=ms(opened[3] - rig.injected),
               recover_ms=ms(ts[-1][3] - rig.cleared), fail_fast_us=None,
               healthy_worst_ms=ms(healthy), rss_delta_kb=rss)
    finally:
        rig.close()


# ---- fallbacks -------------------------------------------------------------------

STALE = "fallback: { stale: { max_age: 1h } }\n"
STATIC = ("fallback: { status: 200, content_type: application/json, body: '{\"degraded\": true}', "
          "headers: { Cache-Control: no-store } }\n")


def fallback_row(rig, r, inject, clear, kind, body, bound, timed=False):
    """The dependency fails while a fallback is configured: `faults` calls
    each get the fallback's answer (Cynic-Fallback: kind, the expected body)
    within bound + MARGIN (timed: no sooner than the bound); the breaker still
    counts each failure and opens after the last; later calls get the same
    answer at once, without reaching the dependency; after the fault clears a
    probe closes the breaker and whole answers of the upstream's come back."""
    name = inject()
    worst = 0.0
    for i in range(FAULTS):
        if i == FAULTS - 1:
            assert rig.breaker()["state"] == "closed"
        a = call(rig.app, timeout=bound + 10)
        assert a.status == 200 and a.headers.get("cynic-fallback") == kind and a.body == body, a
        assert not timed or a.seconds >= bound - 0.05, a
        worst = max(worst, a.seconds)
    assert worst <= bound + MARGIN, f"a caller waited {worst:.3f}s (bound {bound}s)"
    pu.wait_for(rig.transitions, timeout=5, what="the breaker to open")
    opened = rig.transitions()[0]
    assert opened[:3] == ("closed", "open", "fault_threshold"), opened
    before = rig.backend.requests
    fast = []
    for _ in range(5):
        a = call(rig.app)
        assert a.status == 200 and a.headers.get("cynic-fallback") == kind, a
        assert a.headers.get("cynic-answer") == "breaker_open", a.headers
        fast.append(a.seconds)
    assert max(fast) < AT_ONCE, f"the fallback took {max(fast):.3f}s with the breaker open"
    assert rig.backend.requests == before, "a request reached the dependency through an open breaker"
    clear(name)

    def whole():
        a = call(rig.app)
        return a.outcome == "200" and "cynic-fallback" not in a.headers
    rig.wait_closed(whole, OPEN_FOR)
    ts = rig.transitions()
    healthy, rss = rig.finish()
    record(r, caller_sees=f"200 (Cynic-Fallback: {kind})",
           breaker="opens after 3 faults, the fallback answers at once, closes after recovery",
           bound_ms=ms(bound), worst_ms=ms(worst), detect_ms=ms(opened[3] - rig.injected),
           recover_ms=ms(ts[-1][3] - rig.cleared), fail_fast_us=round(statistics.median(fast) * 1e6),
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def test_fallback_stale_for_a_hanging_dependency():
    r = row("41-fallback-stale", "reads the request, never answers; a good answer was seen before",
            "backend (hangs before the head)",
            "first-byte timeout, then fallback.stale: the last good response instead of a 504; "
            "breaker")
    rig = Rig(extra=STALE)  # the warm-up's GETs leave "/" in the stale cache
    try:
        fallback_row(rig, r, lambda: rig.backend_mode("hang"), rig.backend_ok, "stale", BODY,
                     FIRST_BYTE, timed=True)
    finally:
        rig.close()


def test_fallback_static_for_500s():
    r = row("42-fallback-static", "500 Internal Server Error", "`http_status` 500, JSON (downstream)",
            "expect.status, then the static fallback replaces the 500 (the caller never sees it); "
            "breaker")
    rig = Rig(extra=STATIC)
    try:
        fallback_row(rig, r, lambda: rig.toxic("http_status", status=500, body='{"error": "oops"}',
                                               content_type="application/json"),
                     rig.clear, "static", b'{"degraded": true}', NO_TIMER)
    finally:
        rig.close()


# ---- the document ------------------------------------------------------------

def test_zz_doc_matches_this_run():
    """docs/faults.md's HTTP section shows what this run observed (timings
    aside). Runs last (pytest keeps file order); skipped when only some rows
    ran."""
    expected_rows = len([k for k in globals() if k.startswith("test_") and k != "test_zz_doc_matches_this_run"])
    RESULTS.check_doc(expected_rows)
