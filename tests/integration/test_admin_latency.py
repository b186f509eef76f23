"""Latency resolution: phase times come from a microsecond clock, so an
upstream that answers after a known delay lands in the right histogram bucket
and an immediate loopback upstream is seen below a millisecond. Real sockets;
the bounds are generous and only the lower one is exact (an upstream that
sleeps 3 ms cannot answer in less); no speed is asserted beyond that."""
import json
import os
import socket
import time

import adminutil as au
import proxyutil as pu

DELAY_S = 0.003
N = 20


def delayed_echo(delay):
    """Echoes every chunk `delay` seconds after reading it."""
    def handler(conn):
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            time.sleep(delay)
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    return pu.Server(handler)


exchange = pu.exchange


def test_first_byte_and_connect_times_have_microsecond_resolution(tmp_path):
    slow = delayed_echo(DELAY_S)
    fast = pu.echo()
    alog = tmp_path / "access.log"
    px = pu.Cynic(pu.config(
        pu.listener("slow", "delayed", f"access_log: {alog}") + pu.listener("fast", "loopback"),
        pu.upstream("delayed", [slow.endpoint]) + pu.upstream("loopback", [fast.endpoint])))
    adm = au.Admin(px)
    try:
        for _ in range(N):
            assert exchange(px, "slow", b"ping")
            assert exchange(px, "fast", b"ping")
        m = adm.metrics()
        au.check_conventions(m)
        fb = "cynic_upstream_first_byte_seconds_bucket"
        # the new low buckets are there
        assert m.get(fb, upstream="loopback", le="0.0001") is not None
        assert m.get(fb, upstream="loopback", le="0.00025") is not None
        # 3 ms upstream: never at or under 2.5 ms (it sleeps 3 ms after reading),
        # and some of the twenty in the (2.5 ms, 5 ms] bucket
        assert m.get(fb, upstream="delayed", le="+Inf") == N
        assert m.get(fb, upstream="delayed", le="0.0025") == 0
        in_bucket = m.get(fb, upstream="delayed", le="0.005") - m.get(fb, upstream="delayed", le="0.0025")
        assert in_bucket >= 1, f"none of {N} first bytes of a 3 ms upstream in (2.5 ms, 5 ms]"
        total = m.get("cynic_upstream_first_byte_seconds_sum", upstream="delayed")
        assert total >= N * DELAY_S, total  # exact lower bound, sub-ms resolution
        # immediate loopback upstream: some first bytes and connects under 1 ms,
        # and measured (not a millisecond clock's zero)
        assert m.get(fb, upstream="loopback", le="0.001") >= 1
        cb = "cynic_upstream_connect_duration_seconds_bucket"
        assert m.get(cb, upstream="loopback", le="0.001") >= 1
        assert m.get("cynic_upstream_connect_duration_seconds_sum", upstream="loopback") > 0
        assert m.get("cynic_upstream_first_byte_seconds_sum", upstream="loopback") > 0

        # /status: p99 is a bucket bound, at least 5 ms for the delayed upstream
        st = adm.status()
        ups = {u["name"]: u for u in st["upstreams"]}
        assert ups["delayed"]["first_byte_p99_s"] >= 0.005
        # /status/history: the delayed upstream's samples carry p99 >= 5 ms
        def sample():
            h = adm.get("/status/history")[2]["upstreams"]["delayed"]
            vals = [x["p99_ms"] for x in h if x["p99_ms"] is not None]
            return vals or None
        vals = pu.wait_for(sample, timeout=10, interval=0.2, what="a history sample with p99")
        assert all(v >= 5.0 for v in vals), vals

        # access log: *_ms whole milliseconds as before, *_us microseconds
        def lines():
            if not alog.exists():
                return None
            ls = [json.loads(x) for x in alog.read_text().splitlines() if x.strip()]
            return ls if len(ls) >= N else None
        ls = pu.wait_for(lines, timeout=10, interval=0.1, what="access log lines")
        for r in ls:
            for ph in ("queue", "connect", "first_byte", "duration"):
                us, ms = r[ph + "_us"], r[ph + "_ms"]
                assert isinstance(us, int) and isinstance(ms, int), r
                assert ms == us // 1000, r
            # connected -> first byte includes the upstream's 3 ms sleep
            assert r["first_byte_us"] >= int(DELAY_S * 1e6), r
            assert r["duration_us"] >= r["first_byte_us"] + r["connect_us"], r
    finally:
        px.stop()
        slow.close(), fast.close()
