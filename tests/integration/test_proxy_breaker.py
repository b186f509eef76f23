"""Circuit breaker per endpoint, seen from outside: a refused endpoint trips
its breaker after exactly `faults` faults while the other endpoint keeps
serving; once every breaker is open clients are closed in well under the
connect timeout; after `open_for` a probe goes through and a recovered
endpoint closes its breaker. Every transition is logged with its reason."""
import datetime
import socket
import struct

import pytest

import proxyutil as pu


exchange = pu.exchange


def log_time(rec):
    """A log line's time (RFC 3339 UTC with milliseconds) in seconds."""
    return datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def transitions(px, endpoint):
    return [(r["from"], r["to"], r["reason"]) for r in px.logs(msg="breaker transition", endpoint=endpoint)]


def test_refused_endpoint_trips_then_recovers():
    good = pu.echo()
    bad = pu.Refused()
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend"),
        pu.upstream("backend", [bad.endpoint, good.endpoint], """
balance: round_robin
timeouts: { connect: 2s }
breaker: { faults: 3, leak: 60s, open_for: 1500ms, half_open_probes: 1 }
""")))
    try:
        results = []
        while not transitions(px, bad.endpoint):
            results.append(exchange(px))
            assert len(results) < 20, "breaker never opened"
        # exactly `faults` clients were lost, every other one was served
        assert results.count(False) == 3, results
        assert transitions(px, bad.endpoint) == [("closed", "open", "fault_threshold")]
        refused = px.logs(msg="connect refused", endpoint=bad.endpoint)
        assert len(refused) == 1  # the rest go into the 10 s summary
        # open: the other endpoint serves everyone; the bad one is not tried
        served_before = good.accepted
        for _ in range(10):
            assert exchange(px)
        assert good.accepted == served_before + 10
        # the endpoint recovers: a listener on its port
        port = bad.port
        bad.close()
        recovered = pu.echo(port)
        # after open_for a probe goes through and closes the breaker
        pu.wait_for(lambda: exchange(px) and ("half_open", "closed", "probes_succeeded")
                    in transitions(px, f"127.0.0.1:{port}"), timeout=15, interval=0.05,
                    what="the breaker to close after a successful probe")
        assert transitions(px, f"127.0.0.1:{port}") == [
            ("closed", "open", "fault_threshold"),
            ("open", "half_open", "open_elapsed"),
            ("half_open", "closed", "probes_succeeded"),
        ]
        # half open only after open_for (1.5 s), by the log's own clock (the
        # test's clock started after the trip and so proved less)
        at = {r["to"]: log_time(r) for r in px.logs(msg="breaker transition", endpoint=f"127.0.0.1:{port}")}
        assert at["half_open"] - at["open"] >= 1.4, at
        # both endpoints serve again
        before = recovered.accepted
        for _ in range(6):
            assert exchange(px)
        assert recovered.accepted - before == 3
        recovered.close()
    finally:
        px.stop()
        good.close()
    assert px.totals("endpoint", bad.endpoint) == {"connect_refused": 3}


def test_all_open_fails_fast_well_under_connect_timeout():
    hole = pu.ConnectBlackHole()
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend"),
        pu.upstream("backend", [hole.endpoint], """
timeouts: { connect: 1s }
breaker: { faults: 2, leak: 60s, open_for: 60s }
""")))
    try:
        # the first two clients wait for the connect timeout: faults
        for _ in range(2):
            with px.connect() as c:
                took = pu.closed_within(c, 10)
                assert took is not None and 0.8 <= took <= 5.0, took
        px.wait_log(lambda r: r.get("msg") == "breaker transition" and r.get("to") == "open")
        # now every client is closed at once, without a connect attempt
        for _ in range(5):
            with px.connect() as c:
                took = pu.closed_within(c, 10)
                # at once: well under the 0.8 s a connect timeout takes
                assert took is not None and took < 0.5, took
        px.wait_msg("client closed: every breaker is open", upstream="backend")
        px.wait_msg("connect timeout")
        assert len(px.logs(msg="connect timeout")) == 1  # the second went into the summary
    finally:
        px.stop()
        hole.close()
    assert px.totals("endpoint", hole.endpoint) == {"connect_timeout": 2}
    assert px.totals("upstream", "backend") == {"breaker_open": 5}


def upstream_sockets(px, port):
    socks = pu.process_sockets(px.pid)
    n = 0
    for s in socks:
        try:
            if s.getpeername()[1] == port:
                n += 1
        except OSError:
            pass
        s.close()
    return n


def test_least_connections_picks_the_emptier_endpoint():
    a, b = pu.black_hole(), pu.black_hole()  # hold connections, close on EOF
    px = pu.Cynic(pu.config(pu.listener("app", "backend"),
                            pu.upstream("backend", [a.endpoint, b.endpoint], "balance: least_connections")))
    try:
        c1 = px.connect()  # a tie: the first endpoint
        pu.wait_for(lambda: a.accepted == 1)
        c2 = px.connect()  # a has one: b
        pu.wait_for(lambda: b.accepted == 1)
        c2.close()
        pu.wait_for(lambda: upstream_sockets(px, b.port) == 0, what="the proxy to let go of b")
        # the socket goes before the connection is freed: wait until the proxy
        # itself counts no active connection to b, or c3 could see a tie
        api = px.api()

        def b_active():
            _, body, _ = api.get("/status")
            return [e for u in body["upstreams"] for e in u["endpoints"]
                    if e["address"].endswith(f":{b.port}")][0]["active"]
        pu.wait_for(lambda: b_active() == 0, what="b's active count to reach 0")
        # round robin would now pick a; least connections picks b (0 < 1)
        c3 = px.connect()
        pu.wait_for(lambda: b.accepted == 2)
        assert a.accepted == 1
        c1.close()
        c3.close()
    finally:
        px.stop()
        a.close()
        b.close()


def rude(reset):
    """Accepts, reads what comes, and closes (FIN) or resets (RST) without a
    byte of answer."""
    def handler(conn):
        conn.recv(100)
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return pu.Server(handler)


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_close_or_reset_before_first_byte_is_a_fault(reset):
    srv = rude(reset)
    px = pu.Cynic(pu.config(pu.listener("app", "backend"),
                            pu.upstream("backend", [srv.endpoint], "breaker: { faults: 2, open_for: 60s }")))
    try:
        for _ in range(2):
            assert not exchange(px)
        px.wait_log(lambda r: r.get("msg") == "breaker transition" and r.get("to") == "open")
        assert srv.accepted == 2
        assert not exchange(px)  # closed at once: the endpoint is not tried
        assert srv.accepted == 2
    finally:
        px.stop()
        srv.close()
    kind = "reset_before_first_byte" if reset else "closed_before_first_byte"
    assert px.totals("endpoint", srv.endpoint) == {kind: 2}


def test_client_leaving_without_a_word_is_not_a_fault():
    """A client that connects and closes without sending anything (a TCP
    health check): the upstream closes too; that is no fault of its own."""
    srv = pu.black_hole()  # closes when the client does, having said nothing
    px = pu.Cynic(pu.config(pu.listener("app", "backend"),
                            pu.upstream("backend", [srv.endpoint], "breaker: { faults: 1 }")))
    try:
        for _ in range(3):
            with px.connect() as c:
                c.shutdown(socket.SHUT_WR)
                assert pu.recv_all(c) == b""
        pu.wait_for(lambda: srv.accepted == 3)
    finally:
        px.stop()
        srv.close()
    assert not px.logs(msg="breaker transition")
    assert px.totals("endpoint", srv.endpoint) == {}


def test_failure_rate_window_trips_the_breaker():
    bad = pu.Refused()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [bad.endpoint], """
breaker:
  faults: 1000
  open_for: 60s
  window: { type: count, size: 4, min_calls: 4, failure_rate: 50% }
""")))
    try:
        for _ in range(3):
            assert not exchange(px)
        assert not px.logs(msg="breaker transition")  # fewer than min_calls: no verdict
        assert not exchange(px)
        rec = px.wait_msg("breaker transition", endpoint=bad.endpoint)
        assert (rec["from"], rec["to"], rec["reason"]) == ("closed", "open", "failure_rate")
    finally:
        px.stop()
        bad.close()
    assert px.totals("endpoint", bad.endpoint) == {"connect_refused": 4}
