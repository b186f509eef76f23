"""Active health checks (health_check, src/proxy/health.c) over real sockets:
an endpoint whose check path starts failing leaves the rotation within
unhealthy_after x interval (plus jitter) while user requests see no error,
comes back after healthy_after passes without a user request as the probe;
checks of several endpoints are not synchronised; TCP upstreams are checked
by a connect; an operator's trip outlives passing checks; /status and
/metrics show the counts; a reload changes the interval and keeps the
counts; a check that hangs is cut at its timeout."""
import statistics
import threading
import time

import adminutil as au
import proxyutil as pu

INTERVAL = 0.2  # seconds; every bound below is generous around it


def read_head(conn, buf=b""):
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def response(status=b"200 OK", body=b"ok", ctype=b"text/plain"):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


class Backend(pu.Server):
    """An HTTP/1.1 endpoint: /healthz answers `self.health` (bytes, or None to
    hang), everything else 200 "user" on a kept-alive connection. Records the
    time of every check and counts user requests."""

    def __init__(self):
        self.health = response()
        self.checks = []  # time.monotonic() of each check request
        self.check_heads = []
        self.users = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        super().__init__(self.handle)

    def handle(self, conn):
        buf = b""
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                return
            target = head.split(b" ", 2)[1]
            if target == b"/healthz":
                with self.lock:
                    self.checks.append(time.monotonic())
                    self.check_heads.append(head)
                out = self.health
                if out is None:
                    self.release.wait(30)
                    return
                conn.sendall(out)
                return  # Connection: close
            with self.lock:
                self.users += 1
            if target == b"/slow":  # a user request that holds its bulkhead slot
                self.release.wait(30)
                return
            conn.sendall(response(body=b"user"))

    def close(self):
        self.release.set()
        super().close()


def health_cfg(extra=""):
    return (f"health_check: {{ path: /healthz, interval: {int(INTERVAL * 1000)}ms, timeout: 150ms, "
            f"unhealthy_after: 2, healthy_after: 2{extra} }}")


def http_config(endpoints, health, admin_extra="", upstream_extra=""):
    return pu.config(pu.listener("app", "backend", "mode: http"),
                     pu.upstream("backend", endpoints, health + "\n" + upstream_extra))


def endpoint_status(adm, upstream, endpoint):
    for u in adm.status()["upstreams"]:
        if u["name"] == upstream and not u.get("retired"):  # a reload's old object: no checks
            for e in u["endpoints"]:
                if e["name"] == endpoint:
                    return e
    raise AssertionError(f"no endpoint {upstream}/{endpoint}")


def health_state(adm, endpoint, upstream="backend"):
    h = endpoint_status(adm, upstream, endpoint)["health"]
    return h["state"] if h else None


def get(px, path=b"/", timeout=5.0):
    """One request on its own connection: (status, body)."""
    with px.connect("app", timeout=timeout) as c:
        c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = pu.recv_all(c)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Users(threading.Thread):
    """User requests one after another until stopped; records each status."""

    def __init__(self, px):
        super().__init__(daemon=True)
        self.px, self.statuses, self.stop_ = px, [], threading.Event()
        self.start()

    def run(self):
        while not self.stop_.is_set():
            try:
                self.statuses.append(get(self.px)[0])
            except OSError as e:  # a reset or refused connection is an error too
                self.statuses.append(repr(e))
            time.sleep(0.01)

    def stop(self):
        self.stop_.set()
        self.join(10)
        return self.statuses


def test_failing_endpoint_leaves_the_rotation_and_comes_back():
    a, b = Backend(), Backend()
    px = pu.Cynic(http_config([a.endpoint, b.endpoint], health_cfg()))
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy" and
                    health_state(adm, b.endpoint) == "healthy", timeout=5, what="both healthy")
        users = Users(px)
        pu.wait_for(lambda: a.users > 0 and b.users > 0, timeout=5, what="users on both")
        a.health = response(b"500 Internal Server Error", b"down")
        t0 = time.monotonic()
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        took = time.monotonic() - t0
        # two failed checks: at most 2 x (interval + 10 %) after the change,
        # plus a check that may have just started; 2 s is far above, and far
        # below anything that is not the checks
        assert took < 2.0, took
        br = endpoint_status(adm, "backend", a.endpoint)["breaker"]
        assert br["state"] == "open" and br["reason"] == "health_check", br
        assert br["next_probe_s"] is None  # held until the checks pass: no user probe
        rec = px.wait_log(lambda r: r.get("event") == "endpoint_unhealthy")
        assert rec["endpoint"] == a.endpoint and rec["upstream"] == "backend"
        assert rec["level"] == "warn" and "status 500" in rec["error"], rec
        assert px.wait_log(lambda r: r.get("event") == "health_check_failed")["endpoint"] == a.endpoint
        # out of rotation: no user request reaches a any more
        # a request picked just before the verdict may still be on its way:
        # Users sends one at a time, so once one more has ended, none is
        n = len(users.statuses)
        pu.wait_for(lambda: len(users.statuses) > n, timeout=10, what="a user request after the verdict")
        before_a, before_b = a.users, b.users
        pu.wait_for(lambda: b.users >= before_b + 20, timeout=10, what="users on b")
        assert a.users == before_a
        # back after healthy_after passes, straight to closed
        a.health = response()
        t1 = time.monotonic()
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy", timeout=5, what="a back")
        assert time.monotonic() - t1 < 2.0
        br = endpoint_status(adm, "backend", a.endpoint)["breaker"]
        assert br["state"] == "closed" and br["reason"] == "health_check", br
        rec = px.wait_log(lambda r: r.get("event") == "endpoint_healthy")
        assert rec["endpoint"] == a.endpoint and rec["breaker_closed"] is True
        trans = [r for r in px.logs(event="breaker_transition") if r["endpoint"] == a.endpoint]
        assert [(r["from"], r["to"], r["reason"]) for r in trans] == [
            ("closed", "open", "health_check"), ("open", "closed", "health_check")]
        before_a = a.users
        pu.wait_for(lambda: a.users > before_a, timeout=5, what="users on a again")
        statuses = users.stop()
        assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]
        # the checks were GETs of their own, never a user's request
        head = a.check_heads[-1].decode()
        assert head.startswith("GET /healthz HTTP/1.1\r\n")
        assert f"Host: {a.endpoint}\r\n" in head and "User-Agent: cynic-health-check\r\n" in head
        assert "Connection: close\r\n" in head
    finally:
        px.stop()
        a.close()
        b.close()


def test_checks_of_several_endpoints_are_not_synchronised():
    backends = [Backend() for _ in range(3)]
    px = pu.Cynic(http_config([x.endpoint for x in backends], health_cfg()))
    try:
        pu.wait_for(lambda: all(len(x.checks) >= 12 for x in backends), timeout=10,
                    what="12 checks each")
    finally:
        px.stop()
        for x in backends:
            x.close()
    for x in backends:
        gaps = [(t2 - t1) * 1000 for t1, t2 in zip(x.checks, x.checks[1:])]
        # interval +-10 %: the gaps vary (never one fixed period) and stay near 200 ms
        assert statistics.pstdev(gaps) > 2.0, gaps
        assert 100 < statistics.median(gaps) < 320, gaps
    # lockstep would put every check of one endpoint within a millisecond or
    # two of another's; random phases and jitter keep most of them apart
    for i in range(3):
        for j in range(i + 1, 3):
            near = sum(1 for t in backends[i].checks[1:12]
                       if min(abs(t - u) for u in backends[j].checks) < 0.002)
            assert near <= 5, (i, j, near)


def test_checks_of_two_instances_are_not_synchronised():
    """Two cynic processes checking the same endpoint (told apart by the Host
    header of their checks): each process seeds its own jitter, so their
    checks drift apart instead of keeping one rhythm."""
    a = Backend()
    one = pu.Cynic(http_config([a.endpoint], health_cfg(", host: one")))
    two = pu.Cynic(http_config([a.endpoint], health_cfg(", host: two")))
    try:
        def times(host):
            with a.lock:
                return [t for t, h in zip(a.checks, a.check_heads) if b"\r\nHost: " + host + b"\r\n" in h]
        pu.wait_for(lambda: len(times(b"one")) >= 21 and len(times(b"two")) >= 21, timeout=15,
                    what="21 checks from each")
    finally:
        one.stop()
        two.stop()
        a.close()
    t1, t2 = times(b"one"), times(b"two")
    # the same random sequence in both (one seed for every process), or no
    # jitter at all, would give the same gaps to within the loop's millisecond;
    # independent draws of interval +-10 % differ by 13 ms on average
    g1 = [(y - x) * 1000 for x, y in zip(t1, t1[1:])][:20]
    g2 = [(y - x) * 1000 for x, y in zip(t2, t2[1:])][:20]
    assert statistics.mean(abs(x - y) for x, y in zip(g1, g2)) > 5.0, (g1, g2)


def test_tcp_upstream_checked_by_a_connect():
    a, b = pu.echo(), pu.echo()
    text = pu.config(pu.listener("app", "backend"),
                     pu.upstream("backend", [a.endpoint, b.endpoint],
                                 "health_check: { interval: 200ms, timeout: 150ms, "
                                 "unhealthy_after: 2, healthy_after: 2 }"))
    px = pu.Cynic(text)
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy", timeout=5, what="a healthy")
        a.close()  # stops listening: connects are refused
        t0 = time.monotonic()
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        assert time.monotonic() - t0 < 2.0
        h = endpoint_status(adm, "backend", a.endpoint)["health"]
        assert h["last_failure"].startswith("connect:"), h
        assert endpoint_status(adm, "backend", a.endpoint)["breaker"]["reason"] == "health_check"
        # every client goes to b now, none fails
        for _ in range(10):
            assert pu.exchange(px, "app", b"hello")
        assert health_state(adm, b.endpoint) == "healthy"
    finally:
        px.stop()
        a.close()
        b.close()


def test_operator_trip_is_not_undone_by_passing_checks():
    a, b = Backend(), Backend()
    px = pu.Cynic(http_config([a.endpoint, b.endpoint], health_cfg()))
    try:
        adm = au.Admin(px)
        # out of rotation by its checks, then tripped by hand: checks that pass
        # again bring it back to healthy, but never close the operator's breaker
        a.health = response(b"500 Internal Server Error")
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        st, _, _, _ = adm.post(f"/breakers/backend/{a.endpoint}/trip", {"reason": "maintenance"})
        assert st == 200
        a.health = response()
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy", timeout=5, what="a passes")
        n = len(a.checks)
        pu.wait_for(lambda: len(a.checks) >= n + 3, timeout=5, what="3 more checks")
        e = endpoint_status(adm, "backend", a.endpoint)
        assert e["breaker"]["state"] == "forced_open", e["breaker"]
        assert e["health"]["state"] == "healthy"  # the checks still run and pass
        rec = px.wait_log(lambda r: r.get("event") == "endpoint_healthy")
        assert rec["breaker_closed"] is False
        # an unhealthy endpoint forced closed by hand stays forced closed too
        b.health = response(b"503 Service Unavailable")
        st, _, _, _ = adm.post(f"/breakers/backend/{b.endpoint}/force_closed")
        assert st == 200
        pu.wait_for(lambda: health_state(adm, b.endpoint) == "unhealthy", timeout=5,
                    what="b unhealthy")
        n = len(b.checks)
        pu.wait_for(lambda: len(b.checks) >= n + 3, timeout=5, what="3 more checks")
        assert endpoint_status(adm, "backend", b.endpoint)["breaker"]["state"] == "forced_closed"
        rec = px.wait_log(lambda r: r.get("event") == "endpoint_unhealthy" and
                          r["endpoint"] == b.endpoint)
        assert rec["breaker_held"] is False
        # a reset by hand gives it back to automatic control: the next failed check holds it
        adm.post(f"/breakers/backend/{b.endpoint}/reset")
        pu.wait_for(lambda: endpoint_status(adm, "backend", b.endpoint)["breaker"]["reason"] ==
                    "health_check", timeout=5, what="held again")
    finally:
        px.stop()
        a.close()
        b.close()


def test_every_endpoint_unhealthy_fails_fast_and_not_ready():
    a = Backend()
    a.health = response(b"500 Internal Server Error")
    px = pu.Cynic(http_config([a.endpoint], health_cfg(), upstream_extra="required: true"))
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        status, body = get(px)
        assert status == 503 and a.users == 0
        px.wait_log(lambda r: r.get("event") == "breaker_open", what="breaker_open")
        st, _, js, _ = adm.get("/ready")
        assert st == 503, js
    finally:
        px.stop()
        a.close()


def test_status_and_metrics_show_the_counts():
    a = Backend()
    a.health = response(body=b"degraded", ctype=b"application/json")
    px = pu.Cynic(http_config([a.endpoint], health_cfg(
        ", expect: { status: 200, content_type: application/json, body: '\"ok\"' }")))
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: endpoint_status(adm, "backend", a.endpoint)["health"]["failures"] >= 3,
                    timeout=5, what="3 failures")
        h = endpoint_status(adm, "backend", a.endpoint)["health"]
        assert h["state"] == "unhealthy" and h["last_failure"] == "body without '\"ok\"'", h
        assert h["checks"] >= h["failures"] >= 3 and h["last_latency_us"] > 0
        a.health = response(body=b'{"status": "ok"}', ctype=b"text/html")
        pu.wait_for(lambda: endpoint_status(adm, "backend", a.endpoint)["health"]["last_failure"]
                    .startswith("content type text/html"), timeout=5, what="content type")
        a.health = response(body=b'{"status": "ok"}', ctype=b"application/json; charset=utf-8")
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy", timeout=5, what="healthy")
        h = endpoint_status(adm, "backend", a.endpoint)["health"]
        m = adm.metrics()
        au.check_conventions(m)
        lab = {"upstream": "backend", "endpoint": a.endpoint}
        passes = m.get("cynic_health_checks_total", result="pass", **lab)
        fails = m.get("cynic_health_checks_total", result="fail", **lab)
        assert fails >= h["failures"] and passes >= 2 and passes + fails >= h["checks"]
        assert m.get("cynic_endpoint_healthy", **lab) == 1
        # the last check's duration: at most its 150 ms timeout, plus however
        # late a loaded machine runs the loop's timer
        assert 0 < m.get("cynic_health_check_duration_seconds", **lab) < 1.0
        assert m.get("cynic_events_total", event="health_check_failed", **lab) == fails
        a.health = response(b"500 Internal Server Error")
        pu.wait_for(lambda: adm.metrics().get("cynic_endpoint_healthy", **lab) == 0, timeout=5,
                    what="healthy 0")
        # the status page renders each endpoint's health from /status
        st, _, _, raw = adm.get("/")
        assert st == 200 and b"e.health.state" in raw and b"data-health" in raw
    finally:
        px.stop()
        a.close()


def test_reload_changes_the_interval_and_keeps_the_counts():
    a, b = Backend(), Backend()
    text = http_config([a.endpoint], "health_check: { path: /healthz, interval: 1s }")
    px = pu.Cynic(text)
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: len(a.checks) >= 2, timeout=5, what="2 checks")
        time.sleep(1.0)
        n0, t0 = len(a.checks), time.monotonic()
        time.sleep(2.0)
        slow = (len(a.checks) - n0) / (time.monotonic() - t0)
        checks_before = endpoint_status(adm, "backend", a.endpoint)["health"]["checks"]
        with open(px.config, "w") as f:
            f.write(text.replace("interval: 1s", "interval: 100ms"))
        st, _, js, _ = adm.post("/reload")
        assert st == 200, js
        time.sleep(0.3)
        n1, t1 = len(a.checks), time.monotonic()
        time.sleep(1.0)
        fast = (len(a.checks) - n1) / (time.monotonic() - t1)
        assert slow <= 1.6 and fast >= 5, (slow, fast)
        assert endpoint_status(adm, "backend", a.endpoint)["health"]["checks"] >= checks_before
        # a out of rotation, then a reload that rebuilds the upstream (another
        # endpoint): a's verdict, counts and held breaker carry over to the new
        # object, b gets checks of its own, the old object's checks stop
        a.health = response(b"500 Internal Server Error")
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        fails = endpoint_status(adm, "backend", a.endpoint)["health"]["failures"]
        with open(px.config, "w") as f:
            f.write(http_config([a.endpoint, b.endpoint],
                                "health_check: { path: /healthz, interval: 100ms }"))
        st, _, js, _ = adm.post("/reload")
        assert st == 200 and js["removed"]["upstreams"] == ["backend"], js
        e = endpoint_status(adm, "backend", a.endpoint)
        assert e["health"]["state"] == "unhealthy" and e["health"]["failures"] >= fails, e["health"]
        assert e["breaker"]["state"] == "open" and e["breaker"]["reason"] == "health_check"
        pu.wait_for(lambda: health_state(adm, b.endpoint) == "healthy", timeout=5, what="b checked")
        for _ in range(5):
            assert get(px)[0] == 200
        assert a.users == 0
        a.health = response()
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "healthy", timeout=5, what="a back")
        # health_check removed: the checks stop, the endpoint shows none
        with open(px.config, "w") as f:
            f.write(pu.config(pu.listener("app", "backend", "mode: http"),
                              pu.upstream("backend", [a.endpoint])))
        st, _, js, _ = adm.post("/reload")
        assert st == 200, js
        time.sleep(0.2)
        n, nb = len(a.checks), len(b.checks)
        time.sleep(0.5)
        assert len(a.checks) == n and len(b.checks) == nb
        assert endpoint_status(adm, "backend", a.endpoint)["health"] is None
    finally:
        px.stop()
        a.close()
        b.close()


def test_checks_take_no_bulkhead_slot_and_are_no_breaker_calls():
    a = Backend()
    px = pu.Cynic(http_config([a.endpoint], health_cfg(),
                              upstream_extra="bulkhead: { max_connections: 1, max_pending: 0 }"))
    try:
        adm = au.Admin(px)
        hold = px.connect("app")
        hold.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        pu.wait_for(lambda: adm.bulkhead("backend")["in_use"] == 1, timeout=5, what="slot taken")
        assert get(px)[0] == 503  # the bulkhead is full for users...
        n = endpoint_status(adm, "backend", a.endpoint)["health"]["checks"]
        pu.wait_for(lambda: endpoint_status(adm, "backend", a.endpoint)["health"]["checks"] >= n + 5,
                    timeout=5, what="5 more checks")
        e = endpoint_status(adm, "backend", a.endpoint)  # ...and the checks go on and pass
        assert e["health"]["state"] == "healthy" and e["health"]["failures"] == 0, e["health"]
        # the breaker heard of no check: only the one user request that got through
        assert e["breaker"]["successes"] == 0 and e["breaker"]["failures"] == 0, e["breaker"]
        assert adm.bulkhead("backend")["in_use"] == 1
        hold.close()
        a.release.set()  # the slow request ends: nothing left for the drain to wait for
    finally:
        px.stop()
        a.close()


def test_a_check_that_hangs_is_cut_at_its_timeout():
    a, b = Backend(), Backend()
    a.health = None  # accepts, reads the request, never answers
    px = pu.Cynic(http_config([a.endpoint, b.endpoint], health_cfg()))
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: health_state(adm, a.endpoint) == "unhealthy", timeout=5,
                    what="a unhealthy")
        h = endpoint_status(adm, "backend", a.endpoint)["health"]
        assert h["last_failure"] == "timeout after 150 ms", h
        # the timer runs on the loop's millisecond clock, the latency on the
        # high-resolution one: a millisecond either way
        assert 145_000 <= h["last_latency_us"] < 1_000_000, h
        assert health_state(adm, b.endpoint) == "healthy"
        assert get(px)[0] == 200
    finally:
        px.stop()
        a.close()
        b.close()
