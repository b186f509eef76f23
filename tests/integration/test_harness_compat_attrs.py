"""cynic-harness accepts every toxic attribute combination Toxiproxy 2.12
accepts (issue 10): Toxiproxy decodes attributes into Go ints and checks no
range, and takes any float32 toxicity. A suite written for Toxiproxy (its own
client tests create a slicer with average_size 1000, size_variation 1000)
must run unchanged. Each value still gets a sane meaning at the edges: no
empty slice, no negative sleep, no overflow. -strict-toxics refuses the
values outside the sensible ranges (opt-in)."""
import os
import socket
import time

import pytest

from harness_util import Harness, echo, harness  # noqa: F401
from netutil import TcpServer, connect, recv_all, recv_exactly

I64_MAX = 2**63 - 1
I64_MIN = -2**63

# (type, attributes, toxicity or None): all accepted by Toxiproxy 2.12.0 (its
# toxics/*.go have no validation; toxic_collection.go decodes and adds).
ACCEPTED = [
    ("slicer", {"average_size": 1000, "size_variation": 1000, "delay": 1000}, None),  # Toxiproxy client's own test
    ("slicer", {"average_size": 0, "size_variation": 0, "delay": 0}, None),
    ("slicer", {"average_size": 10, "size_variation": 50, "delay": 0}, None),
    ("slicer", {"average_size": -5, "size_variation": -5, "delay": -5}, None),
    ("slicer", {"average_size": I64_MAX, "size_variation": I64_MAX, "delay": I64_MAX}, None),
    ("slicer", {"average_size": I64_MIN, "size_variation": I64_MIN, "delay": I64_MIN}, None),
    ("latency", {"latency": -1, "jitter": -1}, None),
    ("latency", {"latency": 0, "jitter": I64_MAX}, None),
    ("latency", {"latency": 3600001, "jitter": 0}, None),
    ("latency", {"latency": I64_MAX, "jitter": I64_MAX}, None),
    ("bandwidth", {"rate": 0}, None),
    ("bandwidth", {"rate": -1}, None),
    ("bandwidth", {"rate": I64_MAX}, None),
    ("slow_close", {"delay": -1}, None),
    ("slow_close", {"delay": I64_MAX}, None),
    ("timeout", {"timeout": -1}, None),
    ("timeout", {"timeout": I64_MAX}, None),
    ("reset_peer", {"timeout": -1}, None),
    ("reset_peer", {"timeout": I64_MIN}, None),
    ("limit_data", {"bytes": -1}, None),
    ("limit_data", {"bytes": I64_MIN}, None),
    ("noop", {}, None),
    ("latency", {"latency": 1, "jitter": 0}, -1),
    ("latency", {"latency": 1, "jitter": 0}, 2),
    ("latency", {"latency": 1, "jitter": 0}, 1e30),
    ("latency", {"latency": 1, "jitter": 0}, 0),
]
# the ones -strict-toxics refuses (the rest of ACCEPTED pass it too)
STRICT_REFUSES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 17, 18, 19, 20, 22, 23, 24}
# values every mode accepts, to create a toxic that an update then changes
SANE = {"slicer": {"average_size": 10, "size_variation": 1, "delay": 1}, "bandwidth": {"rate": 10}}


def ids(cases):
    return [f"{i}-{t}-{'-'.join(map(str, a.values()))}-{tox}" for i, (t, a, tox) in enumerate(cases)]


def body(typ, attrs, tox):
    b = {"type": typ, "attributes": attrs}
    if tox is not None:
        b["toxicity"] = tox
    return b


@pytest.mark.parametrize("case", ACCEPTED, ids=ids(ACCEPTED))
def test_accepted_as_toxiproxy_does(harness, case):
    typ, attrs, tox = case
    harness.create("p", "127.0.0.1:1")
    for stream in ("downstream", "upstream"):
        st, js, raw = harness.api.post("/proxies/p/toxics", {**body(typ, attrs, tox), "stream": stream})
        assert st == 200, raw
        assert js["attributes"] == attrs and js["type"] == typ and js["stream"] == stream
        assert js["toxicity"] == (1 if tox is None else tox)
        assert js["name"] == f"{typ}_{stream}"
    # an update to the same values is accepted too
    st, js, raw = harness.api.post(f"/proxies/p/toxics/{typ}_downstream", {"attributes": attrs, "toxicity": tox or 1})
    assert st == 200, raw


@pytest.mark.parametrize("i", range(len(ACCEPTED)), ids=ids(ACCEPTED))
def test_strict_toxics_refuses_out_of_range(i):
    typ, attrs, tox = ACCEPTED[i]
    h = Harness("-strict-toxics")
    try:
        h.create("p", "127.0.0.1:1")
        st, js, raw = h.api.post("/proxies/p/toxics", body(typ, attrs, tox))
        if i in STRICT_REFUSES:
            assert st == 400 and "-strict-toxics" in js["error"], raw
        else:
            assert st == 200, raw
        # an update is held to the same rules
        h.add_toxic("p", name="ok", type=typ, attributes=SANE.get(typ, {}))
        st, js, raw = h.api.post("/proxies/p/toxics/ok", {"attributes": attrs, **({"toxicity": tox} if tox is not None else {})})
        assert st == (400 if i in STRICT_REFUSES else 200), raw
    finally:
        h.stop()


def test_strict_flag_forms():
    for flag in ("-strict-toxics=true", "--strict-toxics"):
        h = Harness(flag)
        try:
            h.create("p", "127.0.0.1:1")
            st, _, raw = h.api.post("/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 0}})
            assert st == 400, raw
        finally:
            h.stop()
    h = Harness("-strict-toxics=false")
    try:
        h.create("p", "127.0.0.1:1")
        assert h.api.post("/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 0}})[0] == 200
    finally:
        h.stop()


@pytest.mark.parametrize("bad", [
    {"type": "latency", "attributes": {"latency": 1.5}},           # Go: cannot unmarshal number into int
    {"type": "latency", "attributes": {"latency": 1e3}},
    {"type": "latency", "attributes": {"latency": "5"}},
    {"type": "latency", "attributes": {"latency": 2**63}},         # overflows int64
    {"type": "latency", "toxicity": 1e39},                         # overflows float32
    {"type": "latency", "toxicity": "x"},
    {"type": "latency", "stream": ""},
])
def test_still_refused_as_toxiproxy_refuses(harness, bad):
    harness.create("p", "127.0.0.1:1")
    st, js, raw = harness.api.post("/proxies/p/toxics", bad)
    assert st == 400 and js["status"] == 400, raw


def sender(payload):
    def handler(c):
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        c.settimeout(10)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
    return TcpServer(handler)


@pytest.mark.parametrize("attrs,size", [
    ({"average_size": 1000, "size_variation": 1000, "delay": 1000}, 200_000),
    ({"average_size": 0, "size_variation": 0, "delay": 0}, 20_000),
    ({"average_size": 0, "size_variation": 3, "delay": 0}, 20_000),
    ({"average_size": -5, "size_variation": -5, "delay": -5}, 20_000),
    ({"average_size": 10, "size_variation": 50, "delay": 10}, 50_000),
    ({"average_size": I64_MAX, "size_variation": I64_MAX, "delay": 0}, 200_000),
    ({"average_size": I64_MIN, "size_variation": I64_MAX, "delay": 0}, 20_000),
])
def test_slicer_edges_forward_every_byte(harness, attrs, size):
    payload = os.urandom(size)
    up = sender(payload)
    try:
        p = harness.create("sl", up.address)
        harness.add_toxic("sl", type="slicer", attributes=attrs)
        s = connect(harness.listen_port(p))
        got = recv_all(s, timeout=60)
        s.close()
        assert got == payload
    finally:
        up.close()


@pytest.mark.parametrize("typ,attrs,tox", [
    ("latency", {"latency": -1000, "jitter": -5}, None),
    ("latency", {"latency": 60000, "jitter": 0}, -1),      # toxicity <= 0: never applies
    ("latency", {"latency": 60000}, -0.5),
    ("bandwidth", {"rate": 0}, None),                      # no limit, as in Toxiproxy
    ("bandwidth", {"rate": -7}, None),
    ("bandwidth", {"rate": I64_MAX}, None),
    ("slow_close", {"delay": -1000}, None),
    ("noop", {}, None),
])
def test_edges_pass_data_promptly(harness, echo, typ, attrs, tox):
    p = harness.create("e", echo.address)
    harness.add_toxic("e", **body(typ, attrs, tox))
    s = connect(harness.listen_port(p))
    payload = os.urandom(300_000)
    t0 = time.monotonic()
    s.sendall(payload)
    assert recv_exactly(s, len(payload), timeout=30) == payload
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=30) == b""
    assert time.monotonic() - t0 < 20
    s.close()


def test_toxicity_above_one_always_applies(harness, echo):
    p = harness.create("t", echo.address)
    harness.add_toxic("t", type="latency", attributes={"latency": 400}, toxicity=7)
    for _ in range(3):
        s = connect(harness.listen_port(p))
        t0 = time.monotonic()
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
        assert time.monotonic() - t0 >= 0.39
        s.close()


def test_negative_times_act_at_once(harness, echo):
    # limit_data bytes < 0: nothing passes, closed at the first data
    p = harness.create("l", echo.address)
    harness.add_toxic("l", type="limit_data", attributes={"bytes": -1}, stream="upstream")
    s = connect(harness.listen_port(p))
    s.sendall(b"hello")
    assert recv_all(s, timeout=10) == b""
    s.close()
    # reset_peer timeout < 0: reset at the first data, at once
    p = harness.create("r", echo.address)
    harness.add_toxic("r", type="reset_peer", attributes={"timeout": -5000})
    s = connect(harness.listen_port(p))
    t0 = time.monotonic()
    s.sendall(b"x")
    # the reset must be what ends the read: a FIN (b"" from recv_all) fails.
    # (Writing more after a FIN would draw a RST from the closed peer and
    # hide exactly that failure, so nothing is written here.)
    with pytest.raises(ConnectionResetError):
        recv_all(s, timeout=10)
    assert time.monotonic() - t0 < 5
    s.close()


def test_timeout_negative_never_closes(harness, echo):
    p = harness.create("t", echo.address)
    harness.add_toxic("t", type="timeout", attributes={"timeout": -1})
    s = connect(harness.listen_port(p))
    s.sendall(b"dropped")
    s.settimeout(1.0)
    with pytest.raises(socket.timeout):
        s.recv(10)  # data dropped, connection held open (timeout <= 0: never close)
    s.close()
