"""GET /metrics, parsed as Prometheus text (adminutil.parse_prometheus) and
checked against the traffic the test sent: connections by outcome, bytes each
way, histogram counts, breaker state and transitions, bulkhead rejections,
timeouts by kind; and the naming conventions of every family."""
import time

import adminutil as au
import proxyutil as pu


exchange = pu.exchange


def test_metrics_match_the_traffic():
    good = pu.echo()
    bad = pu.Refused()
    hole = pu.black_hole()
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend") + pu.listener("flaky", "db") + pu.listener("slow", "hole"),
        pu.upstream("backend", [good.endpoint]) +
        pu.upstream("db", [bad.endpoint], "breaker: { faults: 3, leak: 60s, open_for: 60s }") +
        pu.upstream("hole", [hole.endpoint], """
timeouts: { first_byte: 300ms }
bulkhead: { max_connections: 1, max_pending: 0, queue_timeout: 0 }
breaker: { faults: 100 }
""")))
    adm = au.Admin(px)
    try:
        m = adm.metrics()
        au.check_conventions(m)
        assert m.get("cynic_connections_total", listener="app", outcome="ok") == 0
        assert m.get("cynic_ready") == 1 and m.get("cynic_draining") == 0
        assert m.get("cynic_build_info", version=adm.status()["version"]) == 1
        assert abs(m.get("cynic_start_time_seconds") - time.time()) < 60

        n, size = 7, 1000
        for i in range(n):
            assert exchange(px, "app", bytes([65 + i]) * size)
        for _ in range(5):  # 3 refused, then the breaker is open: 2 fail fast
            assert not exchange(px, "flaky", b"x")
        # the black hole: one holds the only slot until its first-byte timeout,
        # a second is turned away by the full bulkhead
        held = px.connect("slow")
        held.sendall(b"q")
        pu.wait_for(lambda: adm.metrics().get("cynic_bulkhead_in_use", upstream="hole") == 1,
                    what="slot in use")
        m = adm.metrics()
        assert m.get("cynic_bulkhead_limit", upstream="hole") == 1
        assert m.get("cynic_listener_connections_open", listener="slow") == 1
        assert not exchange(px, "slow", b"y")
        assert pu.closed_within(held, 10) is not None
        held.close()
        pu.wait_for(lambda: adm.metrics().get("cynic_listener_connections_open", listener="slow") == 0,
                    what="slow listener empty")

        m = adm.metrics()
        au.check_conventions(m)
        ok = m.get("cynic_connections_total", listener="app", upstream="backend", outcome="ok")
        assert ok == n
        assert m.get("cynic_bytes_total", listener="app", direction="to_upstream") == n * size
        assert m.get("cynic_bytes_total", listener="app", direction="to_client") == n * size
        assert m.get("cynic_upstream_first_byte_seconds_count", upstream="backend") == n
        assert m.get("cynic_upstream_connect_duration_seconds_count", upstream="backend") == n
        assert m.get("cynic_connection_duration_seconds_count", upstream="backend") == n
        assert 0 <= m.get("cynic_connection_duration_seconds_sum", upstream="backend") < n * 5  # ms resolution
        assert m.get("cynic_upstream_first_byte_seconds_bucket", upstream="backend", le="+Inf") == n

        assert m.get("cynic_connections_total", listener="flaky", outcome="connect_refused") == 3
        assert m.get("cynic_connections_total", listener="flaky", outcome="breaker_open") == 2
        assert m.get("cynic_fail_fast_total", upstream="db") == 2
        assert m.get("cynic_endpoint_faults_total", upstream="db", endpoint=bad.endpoint,
                     kind="connect_refused") == 3
        assert m.get("cynic_breaker_state", upstream="db", endpoint=bad.endpoint, state="open") == 1
        assert m.get("cynic_breaker_state", upstream="db", endpoint=bad.endpoint, state="closed") == 0
        assert sum(v for _, v in m.all("cynic_breaker_state", endpoint=bad.endpoint)) == 1
        assert m.get("cynic_breaker_transitions_total", upstream="db", endpoint=bad.endpoint, to="open") == 1
        assert m.get("cynic_breaker_state", upstream="backend", endpoint=good.endpoint, state="closed") == 1
        assert m.get("cynic_breaker_bucket_level", upstream="db", endpoint=bad.endpoint) == 0

        assert m.get("cynic_connections_total", listener="slow", outcome="first_byte_timeout") == 1
        assert m.get("cynic_connections_total", listener="slow", outcome="bulkhead_full") == 1
        assert m.get("cynic_timeouts_total", upstream="hole", kind="first_byte") == 1
        assert m.get("cynic_timeouts_total", upstream="hole", kind="connect") == 0
        assert m.get("cynic_bulkhead_rejections_total", upstream="hole", reason="full") == 1
        assert m.get("cynic_upstream_first_byte_seconds_count", upstream="hole") == 0

        # a manual trip counts as a transition and shows in the state gauge
        adm.post("/breakers/backend/trip")
        m = adm.metrics()
        assert m.get("cynic_breaker_state", upstream="backend", endpoint=good.endpoint, state="forced_open") == 1
        assert m.get("cynic_breaker_transitions_total", upstream="backend", endpoint=good.endpoint,
                     to="forced_open") == 1
        assert m.get("cynic_ready") == 1  # backend is not required
    finally:
        px.stop()
        good.close(), bad.close(), hole.close()


def test_listener_rejections_are_connections_too():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend", "max_connections: 1"),
                            pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    try:
        held = px.connect()
        held.sendall(b"a")
        assert held.recv(1) == b"a"
        for _ in range(3):
            with px.connect() as c:
                assert pu.closed_within(c, 5) is not None
        m = adm.metrics()
        assert m.get("cynic_connections_total", listener="app", outcome="max_connections") == 3
        assert m.get("cynic_ready") == 0
        held.close()
    finally:
        px.stop()
        good.close()


def test_history_has_a_sample_a_second():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    try:
        for _ in range(4):
            assert exchange(px, "app", b"hi")
        def samples():
            h = adm.get("/status/history")[2]
            s = h["upstreams"]["backend"]
            return s if sum(x["conns"] for x in s) >= 4 and len(s) >= 2 else None
        s = pu.wait_for(samples, timeout=10, interval=0.2, what="history samples")
        h = adm.get("/status/history")[2]
        assert h["interval_s"] == 1
        assert sum(x["done"] for x in s) == 4 and sum(x["errors"] for x in s) == 0
        assert any(x["p99_ms"] is not None for x in s)
        assert all(x["open"] == 0 for x in s)
        ts = [x["t"] for x in s]
        assert ts == sorted(ts)
    finally:
        px.stop()
        good.close()
