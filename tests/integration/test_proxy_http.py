"""HTTP mode's session over real sockets: keep-alive and the idle pool,
pipelining, per-request breaker verdicts and timeouts, the access log's
request fields, drain, and a client that leaves mid-exchange. The byte-exact
conformance table is test_http_conformance.py."""
import json
import os
import re
import signal
import socket
import struct
import tempfile
import threading
import time

import adminutil as au
import proxyutil as pu


def read_head(conn, buf=b""):
    """Reads one request head from conn: (head bytes, rest) or (None, b"")."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def content_length(head):
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    return int(m.group(1)) if m else 0


RESET = "reset"


def read_chunked(conn, buf):
    """A chunked body (no trailers) as it came, framing included: (raw, the
    bytes after it), or (None, b"") when the peer closed first."""
    at = 0
    while True:
        while b"\r\n" not in buf[at:]:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buf += data
        eol = buf.index(b"\r\n", at)
        size = int(buf[at:eol].split(b";")[0], 16)
        end = eol + 2 + size + 2
        while len(buf) < end:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buf += data
        at = end
        if size == 0:
            return buf[:at], buf[at:]


class Backend(pu.Server):
    """HTTP/1.1 backend: answers each request with respond(head, body, n):
    raw bytes (the connection kept), (bytes, "close"), RESET (closed with
    RST) or None (hang). Records each request as (head, body) in requests
    and its time.monotonic() in times."""

    def __init__(self, respond=None):
        self.requests = []
        self.times = []
        self.respond = respond or (lambda head, body, n: ok(b"hi"))
        self.hang = threading.Event()
        super().__init__(self.handle)

    def handle(self, conn):
        buf = b""
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                return
            if b"transfer-encoding: chunked" in head.lower():
                body, buf = read_chunked(conn, buf)  # as it came, framing included
                if body is None:
                    return
            else:
                need = content_length(head)
                while len(buf) < need:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:need], buf[need:]
            self.times.append(time.monotonic())
            self.requests.append((head, body))
            out = self.respond(head, body, len(self.requests))
            if out is None:
                self.hang.wait(60)
                return
            if out == RESET:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            close = isinstance(out, tuple)  # (bytes, "close"): then close
            conn.sendall(out[0] if close else out)
            if close:
                return


def ok(body, status=b"200 OK", extra=b""):
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


def read_response(sock, buf=b""):
    """One response with a Content-Length body: (status, headers dict, body, rest)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "closed before a response: %r" % buf
        buf += data
    i = buf.index(b"\r\n\r\n") + 4
    head = buf[:i].decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    need = int(headers.get("content-length", "0"))
    buf = buf[i:]
    while len(buf) < need:
        data = sock.recv(65536)
        assert data, "closed mid-body"
        buf += data
    return status, headers, buf[:need], buf[need:]


def get(path=b"/", extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: app\r\n" + extra + b"\r\n"


def access_records(path, n, timeout=10.0):
    """The access log's records (one JSON object a line) once it has n at
    least; a bounded wait."""
    def read():
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    pu.wait_for(lambda: len(read()) >= n, timeout=timeout, what=f"{n} access-log lines")
    return read()


def http_config(be_endpoint, listener_extra="", upstream_extra="", admin=""):
    return pu.config(pu.listener("app", "backend", "mode: http\n" + listener_extra),
                     pu.upstream("backend", [be_endpoint], upstream_extra), admin=admin)


def test_keep_alive_reuses_one_upstream_connection_and_logs_each_request():
    be = Backend(lambda head, body, n: ok(b"r%d" % n))
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    px = pu.Cynic(http_config(be.endpoint, listener_extra=f"access_log: {log}\n"))
    try:
        with px.connect() as c:
            c.settimeout(10)
            for i in range(3):
                extra = b"X-Request-Id: mine-1\r\n" if i == 1 else b""
                c.sendall(get(b"/p%d?q=1" % i, extra))
                status, h, body, rest = read_response(c)
                assert (status, body, rest) == (200, b"r%d" % (i + 1), b"")
                assert h["via"] == "1.1 cynic" and "connection" not in h
        # one upstream connection served all three (the idle pool)
        assert be.accepted == 1 and len(be.requests) == 3
        heads = [r[0] for r in be.requests]
        assert heads[0].startswith(b"GET /p0?q=1 HTTP/1.1\r\n")
        assert b"\r\nVia: 1.1 cynic\r\n" in heads[0] and b"\r\nX-Forwarded-For: 127.0.0.1\r\n" in heads[0]
        made = re.search(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n", heads[0])
        assert made, heads[0]
        assert b"\r\nX-Request-Id: mine-1\r\n" in heads[1]
        lines = access_records(log, 3)
        assert [x["path"] for x in lines] == ["/p0?q=1", "/p1?q=1", "/p2?q=1"]
        assert all(x["method"] == "GET" and x["status"] == 200 and x["upstream_status"] == 200 and
                   x["outcome"] == "ok" and x["answer"] is None for x in lines)
        assert lines[0]["request_id"] == made.group(1).decode() and lines[1]["request_id"] == "mine-1"
        assert lines[0]["connect_us"] is not None and lines[1]["connect_us"] is None  # pooled
        # the operator's side: pool reuse and responses by class
        adm = au.Admin(px)
        up = adm.status()["upstreams"][0]
        assert up["pool"]["reused"] == 2 and up["pool"]["idle"] == 1, up["pool"]
        assert up["responses"]["2xx"] == 3 and up["responses"]["5xx"] == 0, up["responses"]
        metrics = adm.get("/metrics")[3].decode()
        assert 'cynic_http_responses_total{upstream="backend",class="2xx"} 3' in metrics
        assert 'cynic_pool_reused_total{upstream="backend",endpoint="%s"} 2' % be.endpoint in metrics
        assert 'cynic_pool_idle_connections{upstream="backend",endpoint="%s"} 1' % be.endpoint in metrics
    finally:
        px.stop()
        be.close()
        os.unlink(log)


def test_pipelined_requests_are_answered_in_order():
    be = Backend(lambda head, body, n: ok(head.split(b" ")[1]))
    px = pu.Cynic(http_config(be.endpoint))
    try:
        with px.connect() as c:
            c.settimeout(10)
            c.sendall(get(b"/a") + b"POST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nxyz" +
                      get(b"/c", b"Connection: close\r\n"))
            rest = b""
            for want in (b"/a", b"/b", b"/c"):
                status, h, body, rest = read_response(c, rest)
                assert (status, body) == (200, want)
            assert h["connection"] == "close"
            assert rest == b"" and pu.recv_all(c) == b""  # closed after the third
        assert [r[0].split(b" ")[1] for r in be.requests] == [b"/a", b"/b", b"/c"]
        assert be.requests[1][1] == b"xyz"
    finally:
        px.stop()
        be.close()


def test_first_byte_timeout_answers_504_and_is_a_fault():
    be = Backend(lambda head, body, n: None)  # hangs
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="timeouts: { first_byte: 500ms }\n"))
    try:
        with px.connect() as c:
            c.settimeout(10)
            t0 = time.monotonic()
            c.sendall(get())
            status, h, body, _ = read_response(c)
            took = time.monotonic() - t0
        assert status == 504 and h["cynic-answer"] == "first_byte_timeout", (status, h)
        assert 0.4 <= took <= 3.0, took
        assert json.loads(body)["error"] == "first_byte_timeout"
        rec = px.wait_log(lambda r: r.get("event") == "first_byte_timeout")
        assert rec["endpoint"] == be.endpoint
    finally:
        be.hang.set()
        px.stop()
        be.close()


def test_unexpected_status_is_passed_on_and_opens_the_breaker():
    be = Backend(lambda head, body, n: ok(b"oops", b"500 Internal Server Error"))
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="breaker: { faults: 3, open_for: 30s }\n"))
    try:
        with px.connect() as c:
            c.settimeout(10)
            rest = b""
            for _ in range(3):  # the upstream's own 500s reach the client unchanged
                c.sendall(get())
                status, h, body, rest = read_response(c, rest)
                assert (status, body) == (500, b"oops") and "cynic-answer" not in h
            c.sendall(get())  # the breaker is open now: fail fast, no upstream call
            status, h, body, rest = read_response(c, rest)
        assert status == 503 and h["cynic-answer"] == "breaker_open"
        assert 1 <= int(h["retry-after"]) <= 30
        assert len(be.requests) == 3
        px.wait_log(lambda r: r.get("event") == "unexpected_status", what="the unexpected_status event")
    finally:
        px.stop()
        be.close()


def test_client_leaving_mid_exchange_is_not_a_fault():
    be = Backend(lambda head, body, n: None)
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="breaker: { faults: 1 }\n"))
    adm = au.Admin(px)
    try:
        for i in range(3):
            with px.connect() as c:
                c.sendall(get())
                pu.wait_for(lambda: len(be.requests) > i, what="the request upstream")
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            # closed with a reset: the client is gone
        pu.wait_for(lambda: adm.status()["connections"] == 0, what="connections gone")
        br = adm.status()["upstreams"][0]["endpoints"][0]["breaker"]
        assert br["state"] == "closed" and br["bucket_level"] == 0, br
    finally:
        be.hang.set()
        px.stop()
        be.close()


def test_drain_closes_idle_keep_alive_connections_at_once():
    be = Backend()
    px = pu.Cynic(http_config(be.endpoint, admin="  drain_timeout: 60s\n"))
    try:
        with px.connect() as c:
            c.settimeout(10)
            c.sendall(get())
            assert read_response(c)[0] == 200
            t0 = time.monotonic()
            px.signal(signal.SIGTERM)
            assert pu.recv_all(c) == b""  # closed at once, not after the drain timeout
            assert time.monotonic() - t0 < 10
        px.wait_exit(timeout=10)
    finally:
        px.stop()
        be.close()


def test_upstream_closing_between_requests_is_not_reused():
    def respond(head, body, n):
        return ok(b"x", extra=b"Connection: close\r\n")

    be = Backend(respond)
    px = pu.Cynic(http_config(be.endpoint))
    try:
        with px.connect() as c:
            c.settimeout(10)
            rest = b""
            for _ in range(2):
                c.sendall(get())
                status, h, body, rest = read_response(c, rest)
                assert status == 200 and "connection" not in h  # the client is kept
        assert be.accepted == 2  # a new upstream connection for the second
    finally:
        px.stop()
        be.close()


def test_http10_client_request_goes_upstream_as_10():
    be = Backend(lambda head, body, n: (b"HTTP/1.0 200 OK\r\n\r\nold style", "close"))
    px = pu.Cynic(http_config(be.endpoint))
    try:
        with px.connect() as c:
            c.settimeout(10)
            c.sendall(b"GET /old HTTP/1.0\r\n\r\n")
            got = pu.recv_all(c)
        # cynic speaks its own version; Via says what the upstream spoke
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nVia: 1.0 cynic\r\n" in got, got
        assert got.endswith(b"\r\nConnection: close\r\n\r\nold style"), got
        assert be.requests[0][0].startswith(b"GET /old HTTP/1.0\r\n")
    finally:
        px.stop()
        be.close()


def test_a_pooled_connection_the_upstream_closed_is_retried_not_a_fault():
    """The keep-alive race: the upstream closes an idle connection (here: right
    after every response, without saying so) just as cynic reuses it. A
    request without a body goes once more on a new connection; the breaker
    hears no fault."""
    be = Backend(lambda head, body, n: (ok(b"r%d" % n), "close"))
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="breaker: { faults: 1 }\n"))
    adm = au.Admin(px)
    try:
        for _ in range(5):
            with px.connect() as c:
                c.settimeout(10)
                c.sendall(get(b"/1") + get(b"/2", b"Connection: close\r\n"))
                s1, _, b1, rest = read_response(c)
                s2, _, b2, rest = read_response(c, rest)
                assert (s1, s2) == (200, 200), (s1, s2)
        br = adm.status()["upstreams"][0]["endpoints"][0]["breaker"]
        assert br["state"] == "closed" and br["bucket_level"] == 0, br
        assert not px.logs(event="closed_before_first_byte") and not px.logs(event="reset_before_first_byte")
        assert be.accepted >= 10  # every request on a connection of its own in the end
    finally:
        px.stop()
        be.close()


def test_cynic_answers_a_head_request_without_a_body():
    """cynic's own answer to HEAD is its head alone (Content-Length says what
    the body would be): the connection stays usable for the next request."""
    be = Backend(lambda head, body, n: None)  # hangs: first_byte_timeout
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="timeouts: { first_byte: 300ms }\n"
                                                        "breaker: { faults: 100 }\n"))
    try:
        with px.connect() as c:
            c.settimeout(10)
            c.sendall(b"HEAD /h HTTP/1.1\r\nHost: app\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                assert data, "closed before the answer's head: %r" % buf
                buf += data
            head, rest = buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 504 ") and b"\r\nCynic-Answer: first_byte_timeout" in head
            assert int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1)) > 0
            assert rest == b""
            c.settimeout(0.5)  # no body follows, and the connection is not closed
            try:
                after = c.recv(100)
                raise AssertionError("after the HEAD answer: %r (a body, or the close)" % after)
            except socket.timeout:
                pass
            # the next request on it gets its answer (a GET's, with the body)
            c.settimeout(10)
            c.sendall(get(b"/next"))
            status, h, body, _ = read_response(c)
            assert status == 504 and h["cynic-answer"] == "first_byte_timeout" and body, (status, h, body)
    finally:
        be.hang.set()
        px.stop()
        be.close()


def test_interim_responses_are_bounded():
    """At most 8 interim (1xx) responses are forwarded for one request: an
    upstream that sends more is cut (each is a write to a client that may not
    read). Eight pass and the final response follows; nine cut the client."""
    def respond(head, body, n):
        interims = int(head.split(b" ")[1].strip(b"/"))
        return b"HTTP/1.1 100 Continue\r\n\r\n" * interims + ok(b"done")

    be = Backend(respond)
    px = pu.Cynic(http_config(be.endpoint, upstream_extra="breaker: { faults: 100 }\n"))
    try:
        for interims, whole in ((8, True), (9, False)):
            with px.connect() as c:
                c.settimeout(10)
                c.sendall(get(b"/%d" % interims, b"Connection: close\r\n"))
                try:
                    got = pu.recv_all(c)
                except ConnectionResetError:
                    got = b"<reset>"
                if whole:
                    assert got.count(b"HTTP/1.1 100 Continue\r\n") == 8, got
                    assert b"HTTP/1.1 200 OK\r\n" in got and got.endswith(b"done"), got
                else:
                    assert b"HTTP/1.1 200 OK" not in got, got
        px.wait_log(lambda r: r.get("event") == "bad_response", what="the bad_response event")
    finally:
        px.stop()
        be.close()
