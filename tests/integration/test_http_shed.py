"""Load shedding in HTTP mode (issue 12, "Unwanted users and overload") over
real sockets: `limits.max_pending_requests` is a process-wide ceiling on
requests in flight (from a complete head until the response); past it a
request is answered 503 overloaded with Retry-After: 1 before any upstream
work, /ready answers 503 so a load balancer backs off (Handshaking), /health
keeps answering, and throughput returns when the storm ends. The pending
count returns to 0 however requests end."""
import selectors
import socket
import struct
import subprocess
import threading
import time

import adminutil as au
import proxyutil as pu
from test_proxy_http import Backend, get, ok, read_response


def shed_config(listeners, upstreams, max_pending):
    return f"limits:\n  max_pending_requests: {max_pending}\n" + pu.config(listeners, upstreams)


def gated_backend():
    """A backend whose /slow requests wait until gate is set (30 s at most);
    others are answered at once."""
    gate = threading.Event()

    def respond(head, body, n):
        if head.startswith(b"GET /slow"):
            gate.wait(30)
        return ok(b"done")
    be = Backend(respond)
    be.gate = gate
    return be


def pending(admin):
    return admin.status()["requests"]["pending"]


def test_a_storm_of_ten_times_the_ceiling_is_shed_at_once_and_service_returns():
    ceiling = 10
    n = 10 * ceiling
    be = gated_backend()
    px = pu.Cynic(shed_config(pu.listener("app", "backend", "mode: http\nmax_connections: 1000\n"),
                              pu.upstream("backend", [be.endpoint], "required: true\n"), ceiling))
    admin = au.Admin(px)
    socks = []
    try:
        assert admin.get("/ready")[0] == 200
        # the storm: n clients, each one slow request, all at once
        for _ in range(n):
            s = px.connect()
            s.settimeout(10)
            socks.append(s)
        sent_at = {}
        for s in socks:
            sent_at[s] = time.monotonic()
            s.sendall(get(b"/slow"))
        # the excess is answered at once: 503 overloaded, Retry-After: 1;
        # each answer's time is when its socket became readable
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        answered = {}
        # "at once": well before the gate (30 s) or any timeout, with room
        # for a loaded machine under ASan (the print below has the figure)
        deadline = time.monotonic() + 5.0
        while len(answered) < n - ceiling and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                answered[key.fileobj] = time.monotonic() - sent_at[key.fileobj]
                sel.unregister(key.fileobj)
        time.sleep(0.2)  # none of the admitted ones is answered meanwhile
        for key, _ in sel.select(timeout=0):
            answered[key.fileobj] = time.monotonic() - sent_at[key.fileobj]
        sel.close()
        shed = []
        waiting = [s for s in socks if s not in answered]
        for s, took in answered.items():
            status, h, body, _ = read_response(s)
            assert status == 503 and h["cynic-answer"] == "overloaded", (status, h, body)
            assert h["retry-after"] == "1", h
            assert b'"error": "overloaded"' in body, body
            assert "connection" not in h, h  # the connection stays open
            assert took < 3.0, took
            shed.append(took)
        assert len(shed) == n - ceiling and len(waiting) == ceiling, (len(shed), len(waiting))
        print(f"{len(shed)} shed: slowest answer {max(shed) * 1000:.1f} ms after its request")
        # during the storm the admin answers: alive, not ready, and why
        st, _, js, _ = admin.get("/health")
        assert st == 200 and js["status"] == "alive", (st, js)
        st, _, js, _ = admin.get("/ready")
        assert st == 503 and js["reason"].startswith("overloaded: 10 requests pending"), (st, js)
        req = admin.status()["requests"]
        assert req == {"pending": ceiling, "max_pending": ceiling, "shed": n - ceiling,
                       "overloaded": True}, req
        m = admin.metrics()
        assert m.get("cynic_requests_pending") == ceiling
        assert m.get("cynic_requests_pending_limit") == ceiling
        assert m.get("cynic_requests_shed_total") == n - ceiling
        assert m.get("cynic_overloaded") == 1 and m.get("cynic_ready") == 0
        assert m.get("cynic_events_total", listener="app", event="overloaded") == n - ceiling
        px.wait_msg("request refused: too many requests pending", listener="app")
        assert len(be.requests) == ceiling  # the shed ones never reached the backend
        # the storm ends: the admitted ones are served, /ready is 200 again
        be.gate.set()
        for s in waiting:
            status, _, body, _ = read_response(s)
            assert (status, body) == (200, b"done")
        pu.wait_for(lambda: pending(admin) == 0, 5)
        st, _, js, _ = admin.get("/ready")
        assert st == 200 and js["reason"] == "ready", (st, js)
        # and throughput returns: the shed clients' own connections too
        for s in socks:
            s.sendall(get(b"/again"))
            status, _, body, _ = read_response(s)
            assert (status, body) == (200, b"done")
        assert admin.status()["requests"]["shed"] == n - ceiling
    finally:
        be.gate.set()
        for s in socks:
            s.close()
        px.stop()
        be.close()


def test_ready_comes_back_below_ninety_percent_of_the_ceiling():
    """Hysteresis: overloaded from the ceiling until pending falls below 90%
    of it, so /ready does not flap at the edge."""
    ceiling = 10
    gates = [threading.Event() for _ in range(ceiling)]

    def respond(head, body, n):
        i = int(head.split(b" ")[1][len(b"/slow"):])
        gates[i].wait(30)
        return ok(b"done")
    be = Backend(respond)
    px = pu.Cynic(shed_config(pu.listener("app", "backend", "mode: http\n"),
                              pu.upstream("backend", [be.endpoint]), ceiling))
    admin = au.Admin(px)
    socks = []
    try:
        for i in range(ceiling):
            s = px.connect()
            s.settimeout(10)
            s.sendall(get(b"/slow%d" % i))
            socks.append(s)
        pu.wait_for(lambda: pending(admin) == ceiling, 5)
        assert admin.get("/ready")[0] == 503
        # 9 pending: 90%, not below it: still not ready
        gates[0].set()
        assert read_response(socks[0])[0] == 200
        pu.wait_for(lambda: pending(admin) == 9, 5)
        assert admin.get("/ready")[0] == 503
        # 8: below 90%: ready again
        gates[1].set()
        assert read_response(socks[1])[0] == 200
        pu.wait_for(lambda: pending(admin) == 8, 5)
        assert admin.get("/ready")[0] == 200
        # one more request is admitted (9 < 10) and ready stays
        socks[0].sendall(get(b"/slow2"))  # gate 2 is still shut
        pu.wait_for(lambda: pending(admin) == 9, 5)
        assert admin.get("/ready")[0] == 200
    finally:
        for g in gates:
            g.set()
        for s in socks:
            s.close()
        px.stop()
        be.close()


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_the_pending_count_returns_to_zero_however_requests_end():
    """Requests end every way: a response, cynic's own answers (502, 504,
    503 bulkhead_full and queue_timeout, 501 and close), a response cut by the
    upstream, a client that resets or half-closes mid-request, pipelined
    requests, and an operator's trip that closes connections. After each the
    pending gauge is back to 0; while a request waits it counts 1."""
    be = gated_backend()
    truncated = Backend(lambda head, body, n: (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "close"))
    refused = pu.Refused()
    listeners = (pu.listener("app", "backend", "mode: http\n") +
                 pu.listener("dead", "dead", "mode: http\n") +
                 pu.listener("cut", "cut", "mode: http\n") +
                 pu.listener("tight", "tight", "mode: http\n"))
    upstreams = (pu.upstream("backend", [be.endpoint]) +
                 pu.upstream("dead", [refused.endpoint]) +
                 pu.upstream("cut", [truncated.endpoint]) +
                 pu.upstream("tight", [be.endpoint],
                             "bulkhead: { max_connections: 1, max_pending: 1, queue_timeout: 200ms }\n"
                             "timeouts: { first_byte: 600ms }\n"))
    px = pu.Cynic(shed_config(listeners, upstreams, 1000))
    admin = au.Admin(px)

    def zero():
        pu.wait_for(lambda: pending(admin) == 0, 5)

    def one(listener, req, expect):
        with px.connect(listener) as c:
            c.settimeout(10)
            c.sendall(req)
            status, h, _, _ = read_response(c)
            assert status == expect, (listener, status, h)
        zero()

    try:
        one("app", get(b"/ok"), 200)
        one("dead", get(b"/"), 502)
        one("app", b"GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 501)
        # the upstream cuts its response short: the client is cut too
        with px.connect("cut") as c:
            c.settimeout(10)
            c.sendall(get(b"/"))
            assert pu.closed_within(c, 5) is not None
        zero()
        # a client that resets while its request waits
        c = px.connect()
        c.sendall(get(b"/slow"))
        pu.wait_for(lambda: pending(admin) == 1, 5)
        reset(c)
        zero()
        # a client that half-closes in the middle of its request body
        c = px.connect()
        c.sendall(b"POST /slow HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
        pu.wait_for(lambda: pending(admin) == 1, 5)
        c.shutdown(socket.SHUT_WR)
        zero()
        c.close()
        # the tight upstream: one slot (held until its first-byte timeout,
        # 504), one queued (queue_timeout: 503), one more (bulkhead_full: 503)
        holder, queued, extra = px.connect("tight"), px.connect("tight"), px.connect("tight")
        for s in (holder, queued, extra):
            s.settimeout(10)
        holder.sendall(get(b"/slow"))
        pu.wait_for(lambda: pending(admin) == 1, 5)
        queued.sendall(get(b"/ok"))
        pu.wait_for(lambda: pending(admin) == 2, 5)
        extra.sendall(get(b"/ok"))
        assert read_response(extra)[1]["cynic-answer"] == "bulkhead_full"
        assert read_response(queued)[1]["cynic-answer"] == "queue_timeout"
        assert read_response(holder)[0] == 504
        for s in (holder, queued, extra):
            s.close()
        zero()
        # pipelined requests, one after another
        with px.connect() as c:
            c.settimeout(10)
            c.sendall(get(b"/a") + get(b"/b") + get(b"/c"))
            rest = b""
            for _ in range(3):
                status, _, body, rest = read_response(c, rest)
                assert (status, body) == (200, b"done")
        zero()
        # an operator's trip that closes connections
        c = px.connect()
        c.sendall(get(b"/slow"))
        pu.wait_for(lambda: pending(admin) == 1, 5)
        st, _, _, _ = admin.post("/breakers/backend/trip", body={"reason": "t", "close_connections": True})
        assert st == 200
        assert pu.closed_within(c, 5) is not None
        c.close()
        zero()
        assert admin.metrics().get("cynic_requests_pending") == 0
        assert admin.status()["requests"]["shed"] == 0
    finally:
        be.gate.set()
        px.stop()
        be.close()
        truncated.close()
        refused.close()


def test_a_drain_lets_pending_requests_finish_and_counts_each_once():
    """POST /drain with two requests in flight: each still gets its response
    (with Connection: close) and leaves the pending count as it does; the
    process exits once the last is done."""
    gates = {b"/slowA": threading.Event(), b"/slowB": threading.Event()}

    def respond(head, body, n):
        gates[head.split(b" ")[1]].wait(30)
        return ok(b"done")
    be = Backend(respond)
    px = pu.Cynic(shed_config(pu.listener("app", "backend", "mode: http\n"),
                              pu.upstream("backend", [be.endpoint]), 100))
    admin = au.Admin(px)
    a, b = px.connect(), px.connect()
    try:
        for s, path in ((a, b"/slowA"), (b, b"/slowB")):
            s.settimeout(10)
            s.sendall(get(path))
        pu.wait_for(lambda: pending(admin) == 2, 5)
        assert admin.post("/drain")[0] == 202
        st, _, js, _ = admin.get("/ready")
        assert st == 503 and js["reason"] == "draining", (st, js)
        gates[b"/slowA"].set()
        status, h, body, _ = read_response(a)
        assert (status, body, h.get("connection")) == (200, b"done", "close")
        pu.wait_for(lambda: pending(admin) == 1, 5)
        gates[b"/slowB"].set()
        status, h, body, _ = read_response(b)
        assert (status, body) == (200, b"done")
        assert px.wait_exit(10) == 0
    finally:
        for g in gates.values():
            g.set()
        a.close()
        b.close()
        px.stop()
        be.close()


def check(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    r = subprocess.run([pu.CYNIC, "--check", "-c", str(f)], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr.replace(str(f), "{f}")


GOOD = """\
listeners:
  - name: app
    listen: 127.0.0.1:8080
    upstream: backend
    mode: http
upstreams:
  - name: backend
    endpoints: [127.0.0.1:9000]
"""


def test_limits_section_is_checked(tmp_path):
    assert check(tmp_path, "limits:\n  max_pending_requests: 0\n" + GOOD) == (0, "")
    assert check(tmp_path, "limits:\n  max_pending_requests: 1000000\n" + GOOD) == (0, "")
    assert check(tmp_path, "limits: {}\n" + GOOD) == (0, "")
    cases = [
        ("limits:\n  max_pending_requests: 1000001\n",
         "{f}:2:25: max_pending_requests: 1000001 is out of range; use 0..1000000"),
        ("limits:\n  max_pending_requests: -1\n",
         "{f}:2:25: max_pending_requests: '-1' is negative; use 0..1000000"),
        ("limits:\n  max_pending_requests: lots\n",
         "{f}:2:25: max_pending_requests: 'lots' is not a whole number; use 0..1000000"),
        ("limits:\n  max_pending: 10\n",
         "{f}:2:3: unknown key 'max_pending' in limits; valid keys: max_pending_requests"),
        ("limits: 10\n",
         "{f}:1:9: limits must be a mapping of keys to values, got a single value"),
    ]
    for text, want in cases:
        rc, err = check(tmp_path, text + GOOD)
        assert rc == 2 and err.splitlines() == [want], (text, err)
