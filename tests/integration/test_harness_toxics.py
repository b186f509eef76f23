"""cynic-harness: each toxic's effect on real loopback traffic.

Timing bounds are generous on the slow side (2 shared cores, sanitizers) and
strict on the fast side: a toxic may never let data through early.
"""
import socket
import threading
import time

import pytest

from harness_util import Harness, echo, harness  # noqa: F401
from netutil import TcpServer, connect, echo_handler, recv_all, recv_exactly, wait_for

SLACK = 1.5  # seconds of allowed lateness


def rtt(s, msg=b"ping"):
    t0 = time.monotonic()
    s.sendall(msg)
    assert recv_exactly(s, len(msg)) == msg
    return time.monotonic() - t0


def sender(payload, then_close=True):
    """An upstream that sends `payload` as soon as a client connects."""
    def handler(c):
        c.sendall(payload)
        if then_close:
            c.shutdown(socket.SHUT_WR)
        c.settimeout(10)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
    return TcpServer(handler)


def test_latency_downstream_and_upstream(harness, echo):
    p = harness.create("lat", echo.address)
    s = connect(harness.listen_port(p))
    assert rtt(s) < 0.3 + SLACK
    harness.add_toxic("lat", type="latency", attributes={"latency": 300})
    for _ in range(3):
        d = rtt(s)
        assert 0.3 <= d < 0.3 + SLACK, d
    harness.add_toxic("lat", type="latency", stream="upstream", attributes={"latency": 200})
    d = rtt(s)
    assert 0.5 <= d < 0.5 + SLACK, d
    s.close()


def test_latency_jitter_bounds(harness, echo):
    p = harness.create("jit", echo.address)
    harness.add_toxic("jit", type="latency", attributes={"latency": 200, "jitter": 100})
    s = connect(harness.listen_port(p))
    samples = [rtt(s) for _ in range(6)]
    assert all(0.1 <= d < 0.3 + SLACK for d in samples), samples
    s.close()


def test_toxic_on_live_connection_and_removal(harness, echo):
    p = harness.create("live", echo.address)
    s = connect(harness.listen_port(p))
    assert rtt(s) < SLACK
    harness.add_toxic("live", name="slow", type="latency", attributes={"latency": 5000})
    # Data held by a toxic is delivered when the toxic goes away.
    s.sendall(b"held")
    time.sleep(0.1)
    t0 = time.monotonic()
    st, _, _ = harness.api.delete("/proxies/live/toxics/slow")
    assert st == 204
    assert recv_exactly(s, 4) == b"held"
    assert time.monotonic() - t0 < 2.0
    assert rtt(s) < SLACK
    s.close()


def test_bandwidth_rate_within_15_percent(harness):
    size = 3_000_000
    up = sender(b"b" * size)
    try:
        p = harness.create("bw", up.address)
        harness.add_toxic("bw", type="bandwidth", attributes={"rate": 1500})  # 1.5 MB/s
        s = connect(harness.listen_port(p))
        t0 = time.monotonic()
        data = recv_all(s, timeout=30)
        took = time.monotonic() - t0
        assert len(data) == size
        rate = size / took / 1000  # KB/s, KB = 1000 bytes as in Toxiproxy
        assert 1500 * 0.85 <= rate <= 1500 * 1.15, rate
        s.close()
    finally:
        up.close()


def test_control_api_answers_fast_under_traffic(harness):
    """Adding and removing toxics while a rate-limited transfer runs."""
    up = sender(b"c" * 2_000_000)
    try:
        p = harness.create("busy", up.address)
        harness.add_toxic("busy", type="bandwidth", attributes={"rate": 1000})
        s = connect(harness.listen_port(p))
        got = []
        t = threading.Thread(target=lambda: got.append(recv_all(s, timeout=30)))
        t.start()
        time.sleep(0.2)
        worst = 0.0
        for i in range(20):
            t0 = time.monotonic()
            harness.add_toxic("busy", name=f"l{i}", type="latency", attributes={"latency": 1})
            st, _, _ = harness.api.delete(f"/proxies/busy/toxics/l{i}")
            assert st == 204
            worst = max(worst, time.monotonic() - t0)
        assert worst < 0.25, worst
        st, _, _ = harness.api.delete("/proxies/busy/toxics/bandwidth_downstream")
        t.join(30)
        assert len(got[0]) == 2_000_000
        s.close()
    finally:
        up.close()


def test_slicer_piece_sizes(harness):
    up = sender(b"s" * 1000)
    try:
        p = harness.create("sl", up.address)
        harness.add_toxic("sl", type="slicer",
                          attributes={"average_size": 100, "size_variation": 20, "delay": 30000})
        s = connect(harness.listen_port(p))
        s.settimeout(10)
        sizes = []
        while True:
            d = s.recv(65536)
            if not d:
                break
            sizes.append(len(d))
        assert sum(sizes) == 1000
        assert len(sizes) >= 7, sizes
        assert all(n <= 120 for n in sizes), sizes
        assert all(n >= 80 for n in sizes[:-1]), sizes
        s.close()
    finally:
        up.close()


def test_limit_data_exact_bytes(harness):
    up = sender(b"0123456789" * 500)
    try:
        p = harness.create("lim", up.address)
        harness.add_toxic("lim", type="limit_data", attributes={"bytes": 1234})
        s = connect(harness.listen_port(p))
        data = recv_all(s)
        assert data == (b"0123456789" * 500)[:1234]
        s.close()
    finally:
        up.close()


def test_limit_data_upstream(harness):
    received = []

    def sink(c):
        c.settimeout(10)
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        received.append(buf)
    up = TcpServer(sink)
    try:
        p = harness.create("limup", up.address)
        harness.add_toxic("limup", type="limit_data", stream="upstream", attributes={"bytes": 10})
        s = connect(harness.listen_port(p))
        try:
            s.sendall(b"x" * 100)
        except OSError:
            pass
        wait_for(lambda: received, what="upstream to see EOF")
        assert received[0] == b"x" * 10
        s.close()
    finally:
        up.close()


def test_reset_peer_gives_econnreset(harness, echo):
    p = harness.create("rst", echo.address)
    harness.add_toxic("rst", type="reset_peer", attributes={"timeout": 200})
    s = connect(harness.listen_port(p))
    t0 = time.monotonic()
    s.sendall(b"hello")
    s.settimeout(10)
    with pytest.raises(ConnectionResetError):
        while s.recv(100):
            pass
    took = time.monotonic() - t0
    assert 0.2 <= took < 0.2 + SLACK, took
    s.close()


def test_timeout_drops_and_closes(harness, echo):
    p = harness.create("to", echo.address)
    harness.add_toxic("to", type="timeout", attributes={"timeout": 400})
    s = connect(harness.listen_port(p))
    t0 = time.monotonic()
    s.sendall(b"hello")
    s.settimeout(10)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    took = time.monotonic() - t0
    assert data == b""  # dropped, then closed
    assert 0.4 <= took < 0.4 + SLACK, took
    s.close()


def test_timeout_zero_holds_until_removed(harness, echo):
    p = harness.create("to0", echo.address)
    harness.add_toxic("to0", type="timeout", attributes={"timeout": 0})
    s = connect(harness.listen_port(p))
    s.sendall(b"lost")
    s.settimeout(0.6)
    with pytest.raises(socket.timeout):
        s.recv(100)
    assert harness.api.delete("/proxies/to0/toxics/timeout_downstream")[0] == 204
    assert rtt(s, b"after") < SLACK
    s.close()


def test_slow_close_delays_fin(harness, echo):
    p = harness.create("sc", echo.address)
    harness.add_toxic("sc", type="slow_close", attributes={"delay": 400})
    s = connect(harness.listen_port(p))
    assert rtt(s) < SLACK  # data is not delayed
    t0 = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b""
    took = time.monotonic() - t0
    assert 0.4 <= took < 0.4 + SLACK, took
    s.close()


def toxicity_pattern(seed, conns=24):
    h = Harness(seed=seed)
    up = TcpServer(echo_handler)
    try:
        p = h.create("tox", up.address)
        h.add_toxic("tox", type="limit_data", toxicity=0.5, attributes={"bytes": 1})
        port = h.listen_port(p)
        pattern = []
        for _ in range(conns):
            s = connect(port)
            s.sendall(b"abc")
            s.shutdown(socket.SHUT_WR)
            data = recv_all(s)
            s.close()
            assert data in (b"a", b"abc"), data
            pattern.append(data == b"a")
        return pattern
    finally:
        up.close()
        h.stop()


def test_toxicity_rolled_per_connection_reproducible_with_seed():
    a = toxicity_pattern(42)
    b = toxicity_pattern(42)
    c = toxicity_pattern(7)
    assert a == b
    assert 3 <= sum(a) <= 21, a
    assert a != c


def test_toxicity_zero_and_one(harness, echo):
    p = harness.create("t01", echo.address)
    harness.add_toxic("t01", type="latency", toxicity=0, attributes={"latency": 2000})
    s = connect(harness.listen_port(p))
    assert rtt(s) < 1.0
    st, js, _ = harness.api.post("/proxies/t01/toxics/latency_downstream", {"toxicity": 1})
    assert st == 200
    assert rtt(s) >= 2.0
    s.close()


def garbage_bytes(seed):
    h = Harness(seed=seed)
    up = TcpServer(echo_handler)
    try:
        p = h.create("g", up.address)
        h.add_toxic("g", type="garbage", attributes={"bytes": 256})
        out = []
        for _ in range(2):
            s = connect(h.listen_port(p))
            out.append(recv_all(s))
            s.close()
        return out
    finally:
        up.close()
        h.stop()


def test_seed_makes_generated_bytes_reproducible():
    a, b, c = garbage_bytes(5), garbage_bytes(5), garbage_bytes(6)
    assert a == b and len(a[0]) == 256
    assert a[0] != a[1]  # each connection draws its own stream
    assert a != c
