"""cynic-harness: the range rules of numeric inputs (issue 10). GET /events
takes since = 0..2^63-1 and limit = 1..10000, decimal digits only; anything
else, out of range or not a plain number, is a 400, never read as something
else (strtoull took "-1" and 2^64-1 as huge ids and wrapped to the whole log)."""
import json

import pytest

from harness_util import echo, harness  # noqa: F401
from netutil import connect, recv_exactly, wait_for


def lines(raw):
    return [json.loads(ln) for ln in raw.decode().splitlines() if ln]


@pytest.fixture
def logged(harness, echo):
    """A harness whose log holds a few events (ids 1..n)."""
    p = harness.create("ev", echo.address)
    s = connect(harness.listen_port(p))
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    s.close()
    wait_for(lambda: any(e["event"] == "connection_closed" for e in lines(harness.api.get("/events")[2])),
             what="connection_closed")
    return harness


SINCE_BAD = ["-1", "-0", "+3", " 3", "3 ", "1e3", "0x10", "3.0", "", "abc", "18446744073709551615",
             "18446744073709551616", "99999999999999999999999", "9223372036854775808", "%33", "3;", "1_000"]
LIMIT_BAD = ["0", "-1", "+3", "10001", "18446744073709551615", "99999999999999999999999", "", "1e3", "2.5"]


@pytest.mark.parametrize("value", SINCE_BAD)
def test_since_out_of_range_or_not_a_number_is_400(logged, value):
    st, js, raw = logged.api.get("/events?since=" + value.replace(" ", "%20"))
    assert st == 400, (value, raw)
    assert js == {"error": "since must be an event id: 0..9223372036854775807", "status": 400}


@pytest.mark.parametrize("value", LIMIT_BAD)
def test_limit_out_of_range_is_400(logged, value):
    st, js, raw = logged.api.get("/events?limit=" + value)
    assert st == 400 and js["status"] == 400, (value, raw)


def test_since_in_range(logged):
    api = logged.api
    everything = lines(api.get("/events")[2])
    n = everything[-1]["id"]
    assert [e["id"] for e in everything] == list(range(1, n + 1))
    for value, want in [("0", list(range(1, n + 1))), ("00", list(range(1, n + 1))), ("1", list(range(2, n + 1))), ("0" * 30 + "1", list(range(2, n + 1))),
                        (str(n), []), (str(n + 1), []), ("9223372036854775807", [])]:
        st, _, raw = api.get("/events?since=" + value)
        assert st == 200, (value, raw)
        got = lines(raw)
        assert not [e for e in got if e["event"] == "dropped"], (value, got)
        assert [e["id"] for e in got] == want, value
    st, _, raw = api.get("/events?since=0&limit=10000")
    assert st == 200 and len(lines(raw)) == n
    st, _, raw = api.get("/events?limit=1&since=1")
    assert st == 200 and [e["id"] for e in lines(raw)] == [2]
