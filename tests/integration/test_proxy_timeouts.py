"""Timeouts per upstream (connect is in test_proxy_breaker.py): first byte,
from the first byte forwarded to the upstream until the first byte back; idle,
no bytes either way. Each closes both sides near its configured value and is
logged by kind. TCP keepalive and TCP_USER_TIMEOUT are set on both sockets of
a proxied connection, read back from the proxy's own sockets."""
import socket
import time

import proxyutil as pu


def test_first_byte_timeout_fires_near_its_value():
    srv = pu.silent()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], """
timeouts: { first_byte: 600ms, idle: 30s }
breaker: { faults: 100 }
""")))
    try:
        # connected but silent: the clock starts at the first byte sent
        with px.connect() as c:
            assert pu.closed_within(c, 1.5) is None  # nothing sent, nothing owed
            c.sendall(b"SELECT 1")
            took = pu.closed_within(c, 10)
            assert took is not None and 0.5 <= took <= 2.0, took
        rec = px.wait_log(lambda r: r.get("msg") == "first-byte timeout")
        assert rec["event"] == "first_byte_timeout" and rec["endpoint"] == srv.endpoint
        # both sides were closed: the upstream sees EOF
        pu.wait_for(lambda: srv.accepted == 1)
        srv.conns[0].settimeout(5)
        assert srv.conns[0].recv(100) in (b"SELECT 1",)
        assert srv.conns[0].recv(100) == b""
    finally:
        srv.release.set()
        px.stop()
        srv.close()
    assert px.totals("endpoint", srv.endpoint) == {"first_byte_timeout": 1}


def test_first_byte_answered_in_time_is_not_a_timeout():
    def handler(conn):
        conn.recv(100)
        time.sleep(0.3)
        conn.sendall(b"late but in time")
        conn.recv(100)

    srv = pu.Server(handler)
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], """
timeouts: { first_byte: 1s }
""")))
    try:
        with px.connect() as c:
            c.sendall(b"q")
            assert c.recv(100) == b"late but in time"
            time.sleep(1.2)  # past first_byte: it no longer applies
            c.shutdown(socket.SHUT_WR)
            assert pu.recv_all(c) == b""
        assert not px.logs(msg="first-byte timeout")
    finally:
        px.stop()
        srv.close()


def test_idle_timeout_closes_both_sides():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], """
timeouts: { idle: 1s }
""")))
    try:
        with px.connect() as c:
            # activity keeps it open past the idle timeout
            t0 = time.monotonic()
            for _ in range(4):
                c.sendall(b"tick")
                assert c.recv(100) == b"tick"
                last = time.monotonic()
                time.sleep(0.4)
            assert pu.closed_within(c, 10) is not None
            took = time.monotonic() - last
            assert 0.8 <= took <= 2.5, took
            assert last - t0 >= 1.0  # it lived past one idle timeout
        rec = px.wait_log(lambda r: r.get("msg") == "idle timeout")
        assert rec["endpoint"] == srv.endpoint
    finally:
        px.stop()
        srv.close()
    assert px.totals("endpoint", srv.endpoint) == {"idle_timeout": 1}


def test_listener_idle_timeout():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend", "timeouts: { idle: 1s }"),
                            pu.upstream("backend", [srv.endpoint], "timeouts: { idle: 60s }")))
    try:
        with px.connect() as c:
            c.sendall(b"x")
            assert c.recv(10) == b"x"
            took = pu.closed_within(c, 10)
            assert took is not None and 0.8 <= took <= 2.5, took
    finally:
        px.stop()
        srv.close()


def peer(s):
    try:
        return s.getpeername()
    except OSError:
        return None  # a listening socket


def test_keepalive_options_on_both_sockets():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], """
tcp_keepalive: { idle: 17s, interval: 7s, probes: 4, user_timeout: 3500ms }
""")))
    socks = []
    try:
        with px.connect() as c:
            c.sendall(b"x")
            assert c.recv(10) == b"x"
            socks = pu.process_sockets(px.pid)
            client_side = [s for s in socks if peer(s) == c.getsockname()]
            upstream_side = [s for s in socks if peer(s) == ("127.0.0.1", srv.port)]
            assert len(client_side) == 1 and len(upstream_side) == 1
            for s in client_side + upstream_side:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 17
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 3500
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for s in socks:
            s.close()
        px.stop()
        srv.close()


def test_keepalive_old_name_still_applies_with_a_warning():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], """
keepalive: { idle: 19s, probes: 5 }
""")))
    socks = []
    try:
        rec = px.wait_log(lambda r: r.get("event") == "config_deprecated")
        assert rec["level"] == "warn" and rec["key"] == "keepalive" and rec["use"] == "tcp_keepalive"
        assert rec["upstream"] == "backend" and rec["line"] > 0
        with px.connect() as c:
            c.sendall(b"x")
            assert c.recv(10) == b"x"
            socks = pu.process_sockets(px.pid)
            mine = [s for s in socks if peer(s) in (c.getsockname(), ("127.0.0.1", srv.port))]
            assert len(mine) == 2
            for s in mine:
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 19
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 5
    finally:
        for s in socks:
            s.close()
        px.stop()
        srv.close()
