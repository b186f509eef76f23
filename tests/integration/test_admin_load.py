"""The control plane must never stall or starve the data plane (issue 10):
hostile admin clients beside proxied traffic, over real loopback sockets.

- Pipelined GET /metrics and /status/history that are never read, with a
  config at the documented limits (256 upstreams x 64 endpoints; /metrics is
  ~29 MB): proxied round trips keep going (the worst one well under a second,
  where the bug stalled them for seconds) and RSS stays bounded (the bug grew
  it by hundreds of MB).
- Slot hoarding: 64 kept-alive connections do not lock out /health and
  /ready (the longest-idle one is evicted); a connection that never speaks is
  closed at the documented 15 s.
- With a token: a 401 closes the connection; failed authentications are
  rate-limited per client (429 without comparing the token).
- /status/stream delivers `status` and `transition` events when /status is
  over 1 MB.

Timing bounds are generous (the machine is shared): they rule out stalls of
seconds, they are not benchmarks (bench/admin_load.py measures).
"""
import json
import socket
import subprocess
import sys
import threading
import time

import adminutil as au
import proxyutil as pu
from netutil import RoundTrips, hostile


def big_config(n_up, n_ep, backend_endpoint, admin=""):
    ups = pu.upstream("backend", [backend_endpoint])
    for i in range(1, n_up):
        ups += pu.upstream(f"u{i:03d}", [f"127.0.0.1:{20000 + k}" for k in range(n_ep)])
    return pu.config(pu.listener("app", "backend"), ups, admin=admin)


def read_head(s):
    """Reads up to the end of a response's head (bounded by s's timeout);
    returns (head, the body bytes read with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        assert d, f"closed before the end of the head: {data!r}"
        data += d
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def dechunk(data):
    """The body of a chunked transfer, whole and terminated."""
    body, pos = bytearray(), 0
    while True:
        eol = data.index(b"\r\n", pos)
        n = int(data[pos:eol], 16)
        if n == 0:
            return bytes(body)
        body += data[eol + 2:eol + 2 + n]
        assert data[eol + 2 + n:eol + 4 + n] == b"\r\n"
        pos = eol + 2 + n + 2


def test_hostile_pipelined_admin_clients_do_not_stall_the_data_plane():
    echo = pu.echo()
    n_up, n_ep = (64, 32) if pu.sanitized() else (256, 64)  # the documented limits
    px = pu.Cynic(big_config(n_up, n_ep, echo.endpoint), timeout=60)
    adm = au.Admin(px, timeout=60)
    socks = []
    try:
        base_rss = pu.rss_kb(px.pid)
        rt = RoundTrips(px)
        time.sleep(0.5)
        addr = (adm.host, adm.port)
        for i in range(8):
            if i % 2 == 0:
                socks.append(hostile(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 60))
            else:
                socks.append(hostile(addr, b"GET /status/history HTTP/1.1\r\nHost: a\r\n\r\n", 5000))
        peak = base_rss
        t_end = time.monotonic() + (6 if not pu.sanitized() else 10)
        while time.monotonic() < t_end:
            peak = max(peak, pu.rss_kb(px.pid))
            time.sleep(0.1)
        # a probe is still answered meanwhile
        t0 = time.monotonic()
        st, _, js, _ = adm.get("/health")
        probe = time.monotonic() - t0
        samples = rt.finish()
        samples.sort()
        worst = samples[-1]
        print(f"round trips {len(samples)}, p50 {samples[len(samples) // 2] * 1e3:.2f} ms, "
              f"worst {worst * 1e3:.1f} ms; RSS {base_rss} -> peak {peak} KB; /health {probe * 1e3:.1f} ms")
        assert st == 200 and js["status"] == "alive"
        assert probe < 2.0, f"/health took {probe:.2f} s under admin load"
        assert len(samples) > 100, f"only {len(samples)} round trips in the window"
        assert worst < 1.0, f"a proxied round trip took {worst:.2f} s while the admin was busy"
        # the bug: +230 MB (history) and 1.75 GB (/metrics). Bounded now by
        # one slice per connection plus a 64 KiB read each.
        # (ASan's quarantine holds freed memory: up to 256 MB more there)
        limit = 768 * 1024 if pu.sanitized() else 64 * 1024
        assert peak - base_rss < limit, f"RSS grew {peak - base_rss} KB under admin load"
    finally:
        for s in socks:
            s.close()
        px.stop()
        echo.close()


def test_metrics_stream_is_whole_and_chunked():
    """/metrics at the limits arrives whole (chunked, terminated); a reload
    in the middle of it neither crashes nor cuts it."""
    echo = pu.echo()
    n_up, n_ep = (64, 32) if pu.sanitized() else (256, 64)
    px = pu.Cynic(big_config(n_up, n_ep, echo.endpoint), timeout=60)
    adm = au.Admin(px, timeout=60)
    try:
        s = socket.create_connection((adm.host, adm.port), timeout=30)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
        # fewer upstreams now, while the answer is half-way
        with open(px.config, "w") as f:
            f.write(big_config(n_up // 2, n_ep, echo.endpoint))
        st, _, js, _ = adm.post("/reload")
        assert st == 200, js
        data = bytearray(rest)
        s.settimeout(30)
        while not data.endswith(b"\r\n0\r\n\r\n"):
            d = s.recv(1 << 20)
            assert d, "connection closed before the last chunk"
            data += d
        m = au.parse_prometheus(dechunk(bytes(data)).decode())
        assert m.all("cynic_build_info")[0][1] == 1
        # the last family is there: nothing was cut
        assert m.all("cynic_endpoint_faults_total", upstream="backend")
        assert not m.all("cynic_breaker_state", upstream=f"u{n_up - 1:03d}")  # gone with the reload
        s.close()
        # the connection is kept: another request on a new one works too
        st, _, _, raw = adm.get("/metrics")
        assert st == 200 and raw.endswith(b"\n")
    finally:
        px.stop()
        echo.close()


def small_px(admin=""):
    """cynic with one listener in front of an echo upstream; returns
    (cynic, the echo server, its admin). The caller stops and closes both."""
    echo = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [echo.endpoint]),
                            admin=admin))
    return px, echo, au.Admin(px)


def test_hoarded_admin_slots_do_not_lock_out_probes():
    px, echo, adm = small_px()
    socks = []
    try:
        for _ in range(64):  # every slot, kept alive with one /health each
            s = socket.create_connection((adm.host, adm.port), timeout=10)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            socks.append(s)
        for path in ("/health", "/ready"):
            for _ in range(5):
                st, _, js, _ = adm.get(path)
                assert st == 200, (path, st, js)
    finally:
        for s in socks:
            s.close()
        px.stop()
        echo.close()


def test_a_silent_connection_is_closed_at_the_request_timeout():
    px, echo, adm = small_px()
    try:
        s = socket.create_connection((adm.host, adm.port), timeout=10)
        took = pu.closed_within(s, 40)
        s.close()
        assert took is not None, "a connection that never spoke was kept 40 s"
        assert 12 <= took <= 25, f"closed after {took:.1f} s; documented: 15 s"  # the bug: 60 s
    finally:
        px.stop()
        echo.close()


def token_px(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret-token\n")
    return small_px(admin=au.token_config(tok))


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        if not d:
            return data, True
        data += d
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        d = s.recv(4096)
        if not d:
            break
        body += d
    return head + b"\r\n\r\n" + body, False


def test_a_401_closes_the_connection(tmp_path):
    px, echo, adm = token_px(tmp_path)
    try:
        s = socket.create_connection((adm.host, adm.port), timeout=10)
        s.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
        resp, _ = read_response(s)
        assert resp.startswith(b"HTTP/1.1 401")
        assert b"Connection: close" in resp
        assert pu.closed_within(s, 5) is not None, "a 401 left the connection open"
        s.close()
        # with the token: kept alive
        s = socket.create_connection((adm.host, adm.port), timeout=10)
        for _ in range(2):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret-token\r\n\r\n")
            resp, eof = read_response(s)
            assert resp.startswith(b"HTTP/1.1 200") and not eof
        s.close()
    finally:
        px.stop()
        echo.close()


def test_failed_authentications_are_rate_limited_per_client(tmp_path):
    px, echo, adm = token_px(tmp_path)
    try:
        counts = {}
        t0 = time.monotonic()
        for i in range(200):
            st, h, js, _ = adm.get("/status", token=f"guess-{i}")
            counts[st] = counts.get(st, 0) + 1
        elapsed = time.monotonic() - t0
        # burst 20 and 5/s: the rest are refused before the token is compared
        assert counts.get(401, 0) <= 20 + 5 * elapsed + 2, (counts, elapsed)
        assert counts.get(429, 0) >= 100, counts
        assert set(counts) <= {401, 429}, counts
        # while refused, even the right token gets 429 (no oracle)... Asked
        # right after a refused guess: the bucket refills one every 200 ms,
        # which one slow round trip (ASan, a loaded machine) can outlast, so
        # up to 20 tries; an oracle answers the right token every time.
        def right_token_refused():
            for i in range(20):
                if adm.get("/status", token=f"again-{i}")[0] != 429:
                    continue
                st, h, js, _ = adm.get("/status", token="s3cret-token")
                if st == 429:
                    assert "retry-after" in h, (st, h, js)
                    return True
            return False
        assert right_token_refused(), "the right token was answered while failures were refused"
        # ... and once the bucket refills, it works
        def ok():
            return adm.get("/health", token="s3cret-token")[0] == 200
        assert pu.wait_for(ok, timeout=10, interval=0.1, what="admitted again")
    finally:
        px.stop()
        echo.close()


def test_status_stream_events_when_status_is_over_a_megabyte():
    echo = pu.echo()
    n_up, n_ep = (60, 20) if pu.sanitized() else (160, 20)
    px = pu.Cynic(big_config(n_up, n_ep, echo.endpoint), timeout=60)
    adm = au.Admin(px, timeout=60)
    try:
        st, _, _, raw = adm.get("/status")
        assert st == 200 and (pu.sanitized() or len(raw) > 1 << 20), len(raw)
        s = socket.create_connection((adm.host, adm.port), timeout=20)
        s.sendall(b"GET /status/stream HTTP/1.1\r\nHost: a\r\n\r\n")
        events = {}
        buf = b""
        tripped = False
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end and not (events.get("transition") and events.get("status", 0) >= 3):
            d = s.recv(1 << 20)
            assert d, "stream closed"
            buf += d
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                name = None
                for line in ev.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: ") and name in ("status", "transition"):
                        json.loads(line[6:])  # whole
                if name:
                    events[name] = events.get(name, 0) + 1
            if events.get("status") and not tripped:
                assert adm.post("/breakers/u001/trip")[0] == 200
                tripped = True
        s.close()
        assert events.get("status", 0) >= 2, events
        assert events.get("transition", 0) >= 1, events
        assert not px.logs(event="status_stream_event_failed")
    finally:
        px.stop()
        echo.close()


def test_streamed_json_survives_a_reload_midway():
    """GET /status, /breakers and /status/history streamed while a reload
    retires half the upstreams: each answer is whole JSON (retired ones listed
    as retired or left out, never half-written), and nothing freed is read
    (the ASan build checks). /status at 200 x 64 is ~4.7 MB: more than the
    socket buffers hold, so the reload lands mid-way."""
    echo = pu.echo()
    n_up, n_ep = (64, 32) if pu.sanitized() else (200, 64)
    for path in (b"/status", b"/breakers", b"/status/history"):
        px = pu.Cynic(big_config(n_up, n_ep, echo.endpoint), timeout=60)
        adm = au.Admin(px, timeout=60)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # before connect
            s.settimeout(30)
            s.connect((adm.host, adm.port))
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            head, rest = read_head(s)
            with open(px.config, "w") as f:
                f.write(big_config(n_up // 2, n_ep, echo.endpoint))
            assert adm.post("/reload")[0] == 200
            data = bytearray(rest)
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                data += d
            s.close()
            data = bytes(data)
            if b"Transfer-Encoding: chunked" in head:
                data = dechunk(data)
            js = json.loads(data)
            assert "upstreams" in js, path
            if path == b"/status" and not pu.sanitized():  # the reload did land mid-way
                assert any(u["retired"] for u in js["upstreams"]), "reload after the whole answer"
                assert not js["upstreams"][0]["retired"]
        finally:
            px.stop()
    echo.close()


# Reads a status stream until a 4th `status` event begins (3 whole ones: the
# loop built two a second apart while the round trips ran) or for argv[3]
# seconds (a bound, not a window), and prints how many whole `status` events
# came. In its own process: parsing a 6 MB event holds the test's GIL for
# ~0.1 s, which the round-trip thread would count as a stall.
STREAM_READER = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(b"GET /status/stream HTTP/1.1\r\nHost: a\r\n\r\n")
start = b"\n\nevent: status\n"
chunks, begun, last, t_end = [], 0, b"", time.monotonic() + float(sys.argv[3])
while begun < 4 and time.monotonic() < t_end:
    d = s.recv(1 << 20)
    if not d:
        break
    chunks.append(d)
    begun += (last + d).count(start)
    last = d[-(len(start) - 1):]
s.close()
head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
n = 0
for ev in body.split(b"\n\n")[:-1]:
    if ev.startswith(b"event: status\ndata: "):
        json.loads(ev[len(b"event: status\ndata: "):])  # whole
        n += 1
print(n)
"""


def test_a_status_stream_does_not_stall_the_data_plane():
    """Issue 10: at the config limits (256 x 64: a 6 MB status) with a status
    stream open, proxied round trips never wait for a whole status event to
    be built (that held the loop ~0.4 s once a second); the events still
    arrive, whole."""
    echo = pu.echo()
    n_up, n_ep = (128, 32) if pu.sanitized() else (256, 64)  # the documented limits
    px = pu.Cynic(big_config(n_up, n_ep, echo.endpoint), timeout=60)
    adm = au.Admin(px, timeout=60)
    try:
        rt = RoundTrips(px)
        time.sleep(0.3)
        reader = subprocess.run([sys.executable, "-c", STREAM_READER, adm.host, str(adm.port), "30"],
                                capture_output=True, timeout=60)
        samples = sorted(rt.finish())
        worst = samples[-1]
        assert reader.returncode == 0, reader.stderr.decode()
        statuses = int(reader.stdout)
        slow = [t for t in samples if t > 0.15]
        print(f"round trips {len(samples)}, p50 {samples[len(samples) // 2] * 1e3:.2f} ms, "
              f"worst {worst * 1e3:.1f} ms, {len(slow)} over 150 ms; {statuses} status events")
        assert statuses >= 3, statuses
        assert len(samples) > 100, f"only {len(samples)} round trips in the window"
        # built whole, each event held the loop >= 0.4 s here, so every event
        # stalled a round trip; sliced, a round trip waits for a slice or two
        # and the push's copies (~10-25 ms). One slow round trip is the shared
        # machine descheduling us (ctest -j2, other jobs), not the loop: a
        # stall per event is >= 3 of them.
        assert len(slow) <= 1, f"{len(slow)} proxied round trips over 150 ms with a stream open: {slow}"
        assert worst < 1.0, f"a proxied round trip took {worst * 1e3:.0f} ms with a stream open"
    finally:
        px.stop()
        echo.close()
