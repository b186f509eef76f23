"""HTTP mode's retries and deadlines (issue 12) over real sockets: a failed
attempt goes again on another endpoint after a jittered backoff, only for
idempotent requests, never once a response byte reached the client, never
past the deadline, and only while the retry budget allows; the request
deadline travels upstream in a header and an incoming one is honoured."""
import contextlib
import socket
import subprocess
import tempfile
import threading
import time

import adminutil as au
import proxyutil as pu
import test_proxy_http as tph
from test_proxy_http import RESET, access_records, get, ok, read_response


class Backend(tph.Backend):
    """test_proxy_http's backend with respond(head, body): bytes, RESET or
    None (hang)."""

    def __init__(self, respond):
        super().__init__(lambda head, body, n: respond(head, body))


def first_attempt_resets():
    """respond() for backends sharing it: the first attempt at each path is
    reset, the next one answered."""
    seen, lock = set(), threading.Lock()

    def respond(head, body):
        path = head.split(b" ")[1]
        with lock:
            first = path not in seen
            seen.add(path)
        return RESET if first else ok(b"ok " + path + b" " + body)
    return respond


@contextlib.contextmanager
def resetting_pair(**cfg):
    """Two backends sharing first_attempt_resets() behind a cynic made by
    config([a, b], **cfg): yields (px, a, b), stops all three after."""
    respond = first_attempt_resets()
    a, b = Backend(respond), Backend(respond)
    try:
        px = pu.Cynic(config([a.endpoint, b.endpoint], **cfg))
        try:
            yield px, a, b
        finally:
            px.stop()
    finally:
        a.close(), b.close()


def config(endpoints, retry="retry: { attempts: 2, backoff: 10ms..20ms }", listener_extra="",
           upstream_extra="", breaker="breaker: { faults: 1000000 }"):
    ups = "\n".join(x for x in (retry, breaker, upstream_extra) if x)
    return pu.config(pu.listener("app", "backend", "mode: http\n" + listener_extra),
                     pu.upstream("backend", endpoints, ups))


def access_log():
    return tempfile.NamedTemporaryFile(suffix=".log", delete=False).name


def metrics(px):
    st, _, raw = px.api().get("/metrics")
    assert st == 200
    return au.parse_prometheus(raw.decode())


def status_of(px):
    st, js, _ = px.api().get("/status")
    assert st == 200
    return js


def check(text):
    """cynic --check on a config: (exit code, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    r = subprocess.run([pu.CYNIC, "--check", "-c", f.name], capture_output=True, text=True,
                       timeout=20)
    return r.returncode, r.stdout + r.stderr


def request(px, raw, timeout=10):
    with px.connect() as c:
        c.settimeout(timeout)
        c.sendall(raw)
        return read_response(c)


def test_a_reset_first_attempt_goes_again_on_the_other_endpoint():
    log = access_log()
    with resetting_pair(listener_extra=f"access_log: {log}") as (px, a, b):
        with px.connect() as c:
            c.settimeout(10)
            rest = b""
            for i in range(4):
                c.sendall(get(b"/g%d" % i))
                status, h, body, rest = read_response(c, rest)
                assert (status, body) == (200, b"ok /g%d " % i), (status, h, body)
        recs = access_records(log, 4)
        for r in recs:
            assert r["status"] == 200 and r["attempts"] == 2, r
            assert sorted(r["tried"]) == sorted([a.endpoint, b.endpoint]), r
        assert len(a.requests) + len(b.requests) == 8
        m = metrics(px)
        assert m.get("cynic_retries_total", upstream="backend", result="retried") == 4
        st = status_of(px)
        rb = st["upstreams"][0]["retry_budget"]
        assert rb["retried"] == 4 and rb["refused_budget"] == 0, rb
        px.wait_log(lambda r: r.get("event") == "retry", what="the retry event")


def test_a_post_is_not_retried_and_an_idempotent_header_marks_one():
    with resetting_pair(retry="retry: { attempts: 2, backoff: 10ms..20ms, "
                              "idempotent_header: Idempotency-Key }") as (px, a, b):
        post = b"POST /p1 HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody"
        status, h, body, _ = request(px, post)
        assert status == 502 and h["cynic-answer"] in ("upstream_reset", "upstream_closed"), (status, h)
        assert len(a.requests) + len(b.requests) == 1
        marked = (b"POST /p2 HTTP/1.1\r\nHost: app\r\nIdempotency-Key: k1\r\n"
                  b"Content-Length: 4\r\n\r\nbody")
        status, h, body, _ = request(px, marked)
        assert (status, body) == (200, b"ok /p2 body"), (status, h, body)
        assert len(a.requests) + len(b.requests) == 3


def test_a_put_body_is_replayed_but_not_past_max_body():
    with resetting_pair(retry="retry: { attempts: 1, backoff: 10ms..20ms, max_body: 1KB }") as (px, a, b):
        small = b"x" * 1000
        put = b"PUT /s HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % len(small) + small
        status, h, body, _ = request(px, put)
        assert (status, body) == (200, b"ok /s " + small), (status, h)
        assert [q for _, q in a.requests + b.requests] == [small, small]
        big = b"y" * 2000
        put = b"PUT /b HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % len(big) + big
        status, h, body, _ = request(px, put)
        assert status == 502, (status, h)
        assert len(a.requests) + len(b.requests) == 3
        rec = px.wait_log(lambda r: r.get("event") == "retry_refused", what="retry_refused")
        assert rec["error"] == "request body over retry.max_body", rec


def chunked(body, size):
    return b"".join(b"%x\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n"
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def test_a_chunked_put_is_replayed_as_sent_but_not_past_max_body():
    """A chunked body is kept as it went out (framing and all, grown as it
    comes: its length is not known in advance) and sent whole again; one
    whose bytes pass retry.max_body is not retried."""
    respond = first_attempt_resets()
    a, b = Backend(respond), Backend(respond)
    px = pu.Cynic(config([a.endpoint, b.endpoint],
                         retry="retry: { attempts: 1, backoff: 10ms..20ms, max_body: 64KB }"))
    try:
        head = b"PUT /%s HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        small = chunked(bytes(range(256)) * 40, 1000)  # 10,240 bytes in 11 chunks
        with px.connect() as c:  # in four writes apart: the kept copy grows three times
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.settimeout(10)
            c.sendall(head % b"s")
            for i in range(0, len(small), 2600):
                c.sendall(small[i:i + 2600])
                time.sleep(0.05)
            status, h, body, _ = read_response(c)
        assert status == 200, (status, h)
        assert [r[1] for r in a.requests + b.requests] == [small, small]
        big = chunked(b"z" * 70000, 7000)
        status, h, body, _ = request(px, head % b"b" + big)
        assert status == 502, (status, h)
        bodies = [r[1] for r in a.requests + b.requests]
        assert len(bodies) == 3 and bodies.count(big) == 1  # once: not again
        rec = px.wait_log(lambda r: r.get("event") == "retry_refused", what="retry_refused")
        assert rec["error"] == "request body over retry.max_body", rec
    finally:
        px.stop()
        a.close(), b.close()


def test_a_reload_keeps_the_budgets_window_unless_the_budget_changes():
    """The retry budget counts requests over a 10 s window: a reload that
    changes another setting of the upstream keeps it (and its count); one
    that changes the budget's share or floor makes a new, empty one."""
    be = Backend(lambda head, body: ok(b"fine"))
    retry = "retry: { attempts: 1, backoff: 10ms..20ms, budget: 20%%, min_per_second: %d }"
    px = pu.Cynic(config([be.endpoint], retry=retry % 10))
    adm = au.Admin(px)

    def reload(text):
        with open(px.config, "w") as f:
            f.write(text)
        st, _, js, _ = adm.post("/reload")
        assert st == 200, js

    def window():
        return status_of(px)["upstreams"][0]["retry_budget"]["requests_in_window"]
    try:
        for i in range(5):
            assert request(px, get(b"/w%d" % i))[0] == 200
        assert window() == 5
        reload(config([be.endpoint], retry=retry % 10, upstream_extra="timeouts: { first_byte: 9s }"))
        assert window() == 5  # the same budget
        reload(config([be.endpoint], retry=retry % 11, upstream_extra="timeouts: { first_byte: 9s }"))
        assert window() == 0  # a new one
        assert request(px, get(b"/after"))[0] == 200
        assert window() == 1
    finally:
        px.stop()
        be.close()


def test_no_retry_with_a_zero_budget():
    with resetting_pair(retry="retry: { attempts: 2, backoff: 10ms..20ms, budget: 0% }") as (px, a, b):
        status, h, _, _ = request(px, get(b"/z"))
        assert status == 502, (status, h)
        assert len(a.requests) + len(b.requests) == 1


def test_the_budget_bounds_attempts_against_a_failing_upstream():
    """Every attempt fails: without a budget 1,000 requests would make 3,000
    attempts; with 20 % (and no reserve) at most 1.2 x requests."""
    a = Backend(lambda head, body: RESET)
    px = pu.Cynic(config([a.endpoint],
                         retry="retry: { attempts: 2, backoff: 1ms..1ms, budget: 20%, "
                               "min_per_second: 0 }"))
    try:
        n = 1000
        for _ in range(n):
            status, h, _, _ = request(px, get(b"/f"))
            assert status == 502, (status, h)
        attempts = len(a.requests)
        assert n < attempts <= 1.2 * n + 2, attempts
        m = metrics(px)
        retried = m.get("cynic_retries_total", upstream="backend", result="retried")
        refused = m.get("cynic_retries_total", upstream="backend", result="budget_exhausted")
        assert retried == attempts - n and refused > 0, (retried, refused)
    finally:
        px.stop()
        a.close()


def test_backoff_delays_fall_within_their_bounds():
    a = Backend(lambda head, body: RESET)
    px = pu.Cynic(config([a.endpoint],
                         retry="retry: { attempts: 3, backoff: 300ms..600ms, budget: 100% }"))
    try:
        status, _, _, _ = request(px, get(b"/slow"))
        assert status == 502
        times = a.times
        assert len(times) == 4, times
        gaps = [b - a for a, b in zip(times, times[1:])]
        # decorrelated jitter: each delay in min..max. A gap is measured where
        # the backend's threads note each request: the earlier one noted late
        # shortens it (50 ms allowed), scheduling lengthens it (500 ms allowed)
        for g in gaps:
            assert 0.25 <= g <= 0.6 + 0.5, gaps
    finally:
        px.stop()
        a.close()


def test_a_retry_never_starts_after_the_deadline():
    """Attempts every 450 ms (300 ms first-byte timeout, 150 ms backoff)
    under a 1.8 s deadline: the fourth starts at 1.35 s, a fifth would start
    at the deadline and is not made. The last attempt's start sits 450 ms
    before the bound, room for a loaded machine's late timers."""
    a = Backend(lambda head, body: None)  # hangs: first-byte timeouts
    px = pu.Cynic(config([a.endpoint],
                         retry="retry: { attempts: 10, backoff: 150ms..150ms, budget: 100% }",
                         upstream_extra="timeouts: { first_byte: 300ms, request: 1800ms }"))
    try:
        t0 = time.monotonic()
        status, h, _, _ = request(px, get(b"/d"))
        took = time.monotonic() - t0
        assert status == 504 and h["cynic-answer"] in ("first_byte_timeout", "request_timeout"), (status, h)
        assert 1.5 <= took <= 3.5, took
        times = a.times
        assert 2 <= len(times) <= 5, times
        assert all(t - t0 < 1.8 for t in times), [t - t0 for t in times]
    finally:
        a.hang.set()
        px.stop()
        a.close()


def test_a_backoff_that_would_outlast_the_deadline_is_not_waited():
    """The first attempt fails at 100 ms; a 10 s backoff would end past the
    3 s deadline: the failure is answered at once, not at the deadline (the
    2 s bound leaves a loaded machine 1.9 s past the first-byte timeout and
    still tells the two apart)."""
    a = Backend(lambda head, body: None)
    px = pu.Cynic(config([a.endpoint],
                         retry="retry: { attempts: 2, backoff: 10s..10s, budget: 100% }",
                         upstream_extra="timeouts: { first_byte: 100ms, request: 3s }"))
    try:
        t0 = time.monotonic()
        status, h, _, _ = request(px, get(b"/d"))
        took = time.monotonic() - t0
        assert status == 504 and h["cynic-answer"] == "first_byte_timeout", (status, h)
        assert took < 2.0, took
        assert len(a.requests) == 1
        rec = px.wait_log(lambda r: r.get("event") == "retry_refused", what="retry_refused")
        assert rec["error"] == "too close to the request deadline", rec
    finally:
        a.hang.set()
        px.stop()
        a.close()


def test_a_retry_on_status_hides_the_first_503():
    state = {"n": 0}

    def respond(head, body):
        state["n"] += 1
        return ok(b"busy", b"503 Service Unavailable") if state["n"] == 1 else ok(b"fine")
    a = Backend(respond)
    px = pu.Cynic(config([a.endpoint]))
    try:
        status, h, body, _ = request(px, get(b"/s"))
        assert (status, body) == (200, b"fine"), (status, h, body)
        assert state["n"] == 2
    finally:
        px.stop()
        a.close()


def test_the_deadline_travels_and_an_incoming_one_is_honoured():
    """cynic -> cynic -> a backend that never answers: the inner hop gives up
    when the outer deadline would, not after its own 10 s."""
    a = Backend(lambda head, body: None)
    inner = pu.Cynic(config([a.endpoint], retry="",
                            upstream_extra="deadline_header: X-Deadline-Ms\n"
                                           "timeouts: { first_byte: 10s, request: 10s }"))
    outer = pu.Cynic(config(["%s:%d" % inner.addr()], retry="",
                            upstream_extra="deadline_header: X-Deadline-Ms\n"
                                           "timeouts: { first_byte: 10s, request: 700ms }"))
    try:
        t0 = time.monotonic()
        status, h, _, _ = request(outer, get(b"/chain"))
        took = time.monotonic() - t0
        # the inner hop gives up with the outer: its deadline is the outer's
        # less 5 ms (the header's allowance for the way back), so either
        # hop's request_timeout may answer first on a loaded machine; the
        # inner honouring a header on its own is asserted below (300 ms)
        assert status == 504 and h["cynic-answer"] == "request_timeout", (status, h)
        assert 0.5 <= took <= 2.5, took
        pu.wait_for(lambda: inner.logs(event="request_timeout") or outer.logs(event="request_timeout"),
                    what="a request_timeout on either hop")
        head = a.requests[0][0].decode().lower()
        sent = int(head.split("x-deadline-ms:")[1].split("\r\n")[0])
        assert 400 <= sent <= 700, head
        # a client's deadline shorter than the upstream's is taken
        t0 = time.monotonic()
        status, h, _, _ = request(inner, get(b"/own", b"X-Deadline-Ms: 300\r\n"))
        assert status == 504 and 0.25 <= time.monotonic() - t0 <= 2.0
        # too little left for an attempt: 504 at once, no upstream call
        before = len(a.requests)
        status, h, _, _ = request(inner, get(b"/none", b"X-Deadline-Ms: 3\r\n"))
        assert status == 504 and h["cynic-answer"] == "deadline_exceeded", (status, h)
        assert len(a.requests) == before
        # an unreadable value is ignored: the upstream's own deadline applies
        status, h, _, _ = request(outer, get(b"/bad", b"X-Deadline-Ms: soon\r\n"))
        assert status == 504
    finally:
        a.hang.set()
        outer.stop()
        inner.stop()
        a.close()


def test_the_config_is_checked():
    bad = [
        ("retry: { on: [teapot] }", "not a retry condition"),
        ("retry: { on: [404] }", "not a retry condition"),
        ("retry: { max_body: 32MB }", "max_body"),
        ("retry: { idempotent_header: 'a b' }", "not a header name"),
        ("deadline_header: 'x:y'", "not a header name"),
    ]
    for text, want in bad:
        out = check(config(["127.0.0.1:1"], retry=text, breaker=""))
        assert out[0] != 0 and want in out[1], (text, out)
    assert check(config(["127.0.0.1:1"], retry="retry: { on: [reset, 500, 599], min_per_second: 0 }",
                        breaker=""))[0] == 0


def test_secondary_takes_over_while_the_primary_is_open_and_gives_back_after_its_probe():
    """fallback.secondary: the primary resets every request; once its breaker
    is open (and before, when its failure is answered) the request goes to
    the secondary upstream, whose answer carries Cynic-Fallback: secondary;
    when the primary heals, its half-open probe closes the breaker and the
    requests go back to it."""
    mode = {"primary": "bad"}
    primary = Backend(lambda head, body: RESET if mode["primary"] == "bad" else ok(b"primary"))
    second = Backend(lambda head, body: ok(b"secondary " + head.split(b" ")[1]))
    log = access_log()
    cfg = pu.config(pu.listener("app", "main", f"mode: http\naccess_log: {log}"),
                    pu.upstream("main", [primary.endpoint],
                                "breaker: { faults: 2, open_for: 600ms }\n"
                                "fallback: { secondary: spare, status: 503 }") +
                    pu.upstream("spare", [second.endpoint]))
    px = pu.Cynic(cfg)
    try:
        with px.connect() as c:
            c.settimeout(10)
            rest = b""
            for i in range(5):
                c.sendall(get(b"/s%d" % i))
                status, h, body, rest = read_response(c, rest)
                assert (status, body) == (200, b"secondary /s%d" % i), (status, h, body)
                assert h["cynic-fallback"] == "secondary" and "cynic-answer" not in h, h
        assert len(primary.requests) == 2  # then its breaker opened: no more calls
        assert len(second.requests) == 5
        # a POST's body goes along when none of it had gone out: a breaker_open
        # is decided before the body is read
        post = b"POST /p HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc"
        status, h, body, _ = request(px, post)
        assert (status, body, h.get("cynic-fallback")) == (200, b"secondary /p", "secondary")
        assert second.requests[-1][1] == b"abc"
        recs = access_records(log, 6)
        assert all(r["fallback"] == "secondary" and r["status"] == 200 for r in recs), recs
        assert recs[-1]["endpoint"] == second.endpoint, recs[-1]
        m = metrics(px)
        assert m.get("cynic_fallbacks_total", upstream="main", kind="secondary") == 6
        mode["primary"] = "good"
        time.sleep(0.7)  # open_for: the next request is the primary's probe

        def back():
            s, h, b, _ = request(px, get(b"/back"))
            return (s, b) == (200, b"primary") and "cynic-fallback" not in h
        pu.wait_for(back, timeout=10, what="requests back on the primary")
        assert status_of(px)["upstreams"][0]["endpoints"][0]["breaker"]["state"] == "closed"
    finally:
        px.stop()
        primary.close(), second.close()


def test_without_a_usable_secondary_the_next_kind_answers():
    """The secondary's breaker is open too: the static answer goes out."""
    primary = Backend(lambda head, body: RESET)
    second = Backend(lambda head, body: RESET)
    cfg = pu.config(pu.listener("app", "main", "mode: http"),
                    pu.upstream("main", [primary.endpoint],
                                "breaker: { faults: 1, open_for: 30s }\n"
                                "fallback: { secondary: spare, status: 299, body: static }") +
                    pu.upstream("spare", [second.endpoint], "breaker: { faults: 1, open_for: 30s }"))
    px = pu.Cynic(cfg)
    try:
        status, h, body, _ = request(px, get(b"/1"))  # primary resets, then the secondary resets
        assert status in (502, 299), (status, h)
        for _ in range(3):
            status, h, body, _ = request(px, get(b"/2"))
            assert (status, body, h["cynic-fallback"]) == (299, b"static", "static"), (status, h, body)
        assert len(second.requests) == 1
    finally:
        px.stop()
        primary.close(), second.close()


def test_a_secondary_retired_by_a_reload_lives_until_its_borrowed_request_ends():
    """A reload rebuilds the secondary (new endpoints) while a request handed
    to it waits on its hanging backend: the retired upstream is not reclaimed
    (its memory freed) until that request has its answer, which it still gets
    from the old endpoint."""
    primary = Backend(lambda head, body: RESET)
    release = threading.Event()

    def slow(head, body):
        release.wait(10)
        return ok(b"from the old secondary")
    old, new = Backend(slow), Backend(lambda head, body: ok(b"from the new secondary"))

    def cfg(spare):
        return pu.config(pu.listener("app", "main", "mode: http"),
                         pu.upstream("main", [primary.endpoint],
                                     "breaker: { faults: 1000 }\nfallback: { secondary: spare }") +
                         pu.upstream("spare", [spare.endpoint]))
    px = pu.Cynic(cfg(old))
    try:
        got = {}

        def one():
            got["answer"] = request(px, get(b"/slow"), timeout=20)
        t = threading.Thread(target=one)
        t.start()
        pu.wait_for(lambda: len(old.requests) == 1, what="the request at the old secondary")
        with open(px.config, "w") as f:
            f.write(cfg(new))
        st, js, _ = px.api().post("/reload")
        assert st == 200, js
        time.sleep(1.5)  # sweeps run each second: the retired upstream must still be there
        assert not px.logs(event="upstream_reclaimed"), px.logs(event="upstream_reclaimed")
        release.set()
        t.join(20)
        status, h, body, _ = got["answer"]
        assert (status, body, h["cynic-fallback"]) == (200, b"from the old secondary", "secondary")
        px.wait_log(lambda r: r.get("event") == "upstream_reclaimed" and r.get("upstream") == "spare",
                    what="the old secondary reclaimed once its request ended")
        status, h, body, _ = request(px, get(b"/next"))
        assert (status, body) == (200, b"from the new secondary"), (status, body)
    finally:
        release.set()
        px.stop()
        primary.close(), old.close(), new.close()
