"""cynic-harness: the misbehaviours Toxiproxy lacks, and the event log."""
import json
import socket
import threading
import time

import pytest

from harness_util import Harness, echo, harness  # noqa: F401
from netutil import TcpServer, connect, echo_handler, recv_all, recv_exactly, refused, wait_for

SLACK = 1.5


def test_refuse_closes_listener_and_reopens_same_port(harness, echo):
    p = harness.create("ref", echo.address)
    port = harness.listen_port(p)
    live = connect(port)
    live.sendall(b"a")
    assert recv_exactly(live, 1) == b"a"
    harness.add_toxic("ref", type="refuse")
    assert refused(port)
    live.sendall(b"b")  # an established connection is left alone
    assert recv_exactly(live, 1) == b"b"
    st, js, _ = harness.api.get("/proxies/ref")
    assert js["enabled"] is True and js["toxics"][0]["type"] == "refuse"
    assert harness.api.delete("/proxies/ref/toxics/refuse_downstream")[0] == 204
    s = connect(port)
    s.sendall(b"c")
    assert recv_exactly(s, 1) == b"c"
    s.close()
    live.close()


def test_blackhole_fills_buffers_without_reading(harness):
    received = [0]

    def counter(c):
        c.settimeout(20)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                received[0] += len(d)
        except OSError:
            pass
    up = TcpServer(counter)
    try:
        p = harness.create("bh", up.address)
        harness.add_toxic("bh", type="blackhole", stream="upstream")
        s = connect(harness.listen_port(p))
        s.setblocking(False)
        sent = 0
        stalled_since = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                sent += s.send(b"z" * 65536)
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        assert stalled_since is not None, "sends never blocked"
        assert sent < 32 << 20, sent  # only the kernel buffers took data
        assert received[0] == 0
        # Removing the blackhole lets everything through.
        assert harness.api.delete("/proxies/bh/toxics/blackhole_upstream")[0] == 204
        s.setblocking(True)
        wait_for(lambda: received[0] == sent, timeout=20, what="drain after blackhole")
        s.close()
    finally:
        up.close()


def test_accept_delay_holds_dial(harness):
    accepted_at = []

    def handler(c):
        accepted_at.append(time.monotonic())
        echo_handler(c)
    up = TcpServer(handler)
    try:
        p = harness.create("ad", up.address)
        harness.add_toxic("ad", type="accept_delay", attributes={"delay": 400})
        t0 = time.monotonic()
        s = connect(harness.listen_port(p))
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
        took = time.monotonic() - t0
        assert 0.4 <= took < 0.4 + SLACK, took
        assert accepted_at and accepted_at[0] - t0 >= 0.39
        s.close()
    finally:
        up.close()


def test_garbage_sends_n_random_bytes_then_closes(harness, echo):
    p = harness.create("gb", echo.address)
    harness.add_toxic("gb", type="garbage", attributes={"bytes": 5000})
    s = connect(harness.listen_port(p))
    s.sendall(b"hello")
    data = recv_all(s)
    assert len(data) == 5000
    assert len(set(data)) > 200  # random, not the echo
    s.close()


def test_flood_endless_and_sized(harness, echo):
    p = harness.create("fl", echo.address)
    harness.add_toxic("fl", type="flood", attributes={"bytes": 0})
    s = connect(harness.listen_port(p))
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    got = len(recv_exactly(s, 20 << 20, timeout=60))
    assert got == 20 << 20  # and it is still going
    s.settimeout(5)
    assert len(s.recv(65536)) > 0
    s.close()
    assert harness.api.post("/proxies/fl/toxics/flood_downstream", {"attributes": {"bytes": 3_000_000}})[0] == 200
    s = connect(harness.listen_port(p))
    data = recv_all(s, timeout=60)
    assert len(data) == 3_000_000  # never stops before its size, never after
    s.close()


def test_reset_after_bytes(harness):
    def sender(c):
        # Wait for the client's request: a reset racing the client's connect()
        # would surface as ECONNRESET from connect itself.
        c.settimeout(10)
        try:
            c.recv(10)
            c.sendall(b"r" * 100_000)
        except OSError:
            pass
        c.settimeout(10)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
    up = TcpServer(sender)
    try:
        p = harness.create("rab", up.address)
        harness.add_toxic("rab", type="reset_after_bytes", attributes={"bytes": 1000})
        s = connect(harness.listen_port(p))
        s.sendall(b"go")
        s.settimeout(10)
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        assert got == b"r" * 1000
        s.close()
    finally:
        up.close()


def events(h, since=0, **q):
    qs = "&".join([f"since={since}"] + [f"{k}={v}" for k, v in q.items()])
    st, _, raw = h.api.request("GET", "/events?" + qs)
    assert st == 200
    return [json.loads(line) for line in raw.decode().splitlines() if line]


def test_event_log(harness, echo):
    p = harness.create("ev", echo.address)
    harness.add_toxic("ev", type="latency", attributes={"latency": 1})
    s = connect(harness.listen_port(p))
    s.sendall(b"12345")
    assert recv_exactly(s, 5) == b"12345"
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b""
    s.close()
    evs = wait_for(lambda: [e for e in events(harness) if e["event"] == "connection_closed"] and events(harness),
                   what="connection_closed event")
    kinds = [e["event"] for e in evs]
    assert kinds[:4] == ["connection_opened", "toxic_applied", "upstream_connected", "connection_closed"], kinds
    ids = [e["id"] for e in evs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    closed = evs[3]
    assert closed["proxy"] == "ev" and closed["reset"] is False
    assert closed["upstream"] == {"read": 5, "written": 5}
    assert closed["downstream"] == {"read": 5, "written": 5}
    assert evs[1]["toxic"] == "latency_downstream"
    later = events(harness, since=ids[1])
    assert [e["id"] for e in later] == ids[2:]
    assert len(events(harness, limit=1)) == 1
    assert harness.api.get("/events?since=abc")[0] == 400
    assert harness.api.get("/events?limit=0")[0] == 400


def test_event_log_is_bounded(harness, echo):
    p = harness.create("evb", echo.address)
    port = harness.listen_port(p)
    # ~3 events per connection: 3,500 connections overflow the 10,000 ring.
    for _ in range(3500):
        s = connect(port)
        s.close()
    wait_for(lambda: events(harness, since=10_000, limit=10_000) and
             events(harness, since=0, limit=1)[0]["event"] == "dropped", timeout=60,
             what="ring to overflow")
    first = events(harness, since=0, limit=2)
    assert first[0]["event"] == "dropped" and first[0]["count"] >= 1
    assert first[1]["id"] == first[0]["count"] + 1


def test_event_log_filtered_by_proxy(harness, echo):
    ports = {name: harness.listen_port(harness.create(name, echo.address)) for name in ("a1", "b1")}
    for name in ("a1", "b1", "a1"):
        s = connect(ports[name])
        s.sendall(b"z")
        assert recv_exactly(s, 1) == b"z"
        s.close()
    wait_for(lambda: len([e for e in events(harness) if e["event"] == "connection_closed"]) == 3,
             what="three closes")
    only_a = events(harness, proxy="a1")
    assert only_a and all(e["proxy"] == "a1" for e in only_a)
    assert len([e for e in only_a if e["event"] == "connection_opened"]) == 2
    assert events(harness, proxy="zz") == []
    assert harness.api.get("/events?proxy=../x")[0] == 400
