"""cynic-harness: HTTP-aware toxics over a real keep-alive HTTP/1.1 upstream."""
import http.client
import http.server
import socket
import threading
import time

import pytest

from harness_util import Harness, harness  # noqa: F401
from netutil import TcpServer, connect, echo_handler, recv_exactly, wait_for

SLACK = 1.5


SEEN = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        SEEN.append(self.path)
        body = self.path.encode()
        self.send_response(200)
        if not self.path.startswith("/noctype"):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        SEEN.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.path)))  # the GET's length, no body
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def web():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.getheader("Content-Type"), r.read()


def test_http_latency_per_request(harness, web):
    p = harness.create("hl", web)
    harness.add_toxic("hl", type="http_latency", attributes={"latency": 300})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    for i in range(3):
        t0 = time.monotonic()
        st, _, body = get(conn, f"/r{i}")
        took = time.monotonic() - t0
        assert (st, body) == (200, f"/r{i}".encode())
        assert 0.3 <= took < 0.3 + SLACK, took
    conn.close()


def test_http_latency_upstream_requests(harness, web):
    p = harness.create("hlu", web)
    harness.add_toxic("hlu", type="http_latency", stream="upstream", attributes={"latency": 250})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    for i in range(2):
        t0 = time.monotonic()
        assert get(conn, f"/u{i}")[2] == f"/u{i}".encode()
        assert 0.25 <= time.monotonic() - t0 < 0.25 + SLACK
    conn.close()


def status_sequence(web, seed, n=40):
    h = Harness(seed=seed)
    try:
        p = h.create("hs", web)
        h.add_toxic("hs", type="http_status",
                    attributes={"status": 503, "percent": 50, "body": '{"error":"injected"}',
                                "content_type": "application/json"})
        conn = http.client.HTTPConnection("127.0.0.1", h.listen_port(p), timeout=20)
        seq = []
        for i in range(n):
            st, ctype, body = get(conn, f"/s{i}")
            if st == 503:
                assert body == b'{"error":"injected"}' and ctype == "application/json"
            else:
                assert (st, body) == (200, f"/s{i}".encode())  # never out of step
            seq.append(st)
        conn.close()
        return seq
    finally:
        h.stop()


def test_http_status_share_reproducible(web):
    a = status_sequence(web, seed=11)
    b = status_sequence(web, seed=11)
    c = status_sequence(web, seed=12)
    assert a == b
    assert 8 <= a.count(503) <= 32, a
    assert a != c


def test_http_status_all(harness, web):
    p = harness.create("hsa", web)
    harness.add_toxic("hsa", type="http_status", attributes={"status": 418, "body": "teapot"})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    for i in range(3):
        st, ctype, body = get(conn, "/x")
        assert (st, ctype, body) == (418, "text/plain", b"teapot")
    conn.close()


def test_http_drop_first_n(harness, web):
    p = harness.create("hd", web)
    t = harness.add_toxic("hd", type="http_drop_first_n", attributes={"n": 2})
    assert t["attributes"] == {"n": 2, "status": 503}
    for _ in range(2):  # per connection
        conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
        assert [get(conn, f"/d{i}")[0] for i in range(4)] == [503, 503, 200, 200]
        conn.close()


def test_http_status_upstream_answers_instead_of_forwarding(harness, web):
    p = harness.create("hsu", web)
    harness.add_toxic("hsu", type="http_status", stream="upstream",
                      attributes={"status": 503, "body": "down"})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    for i in range(3):
        assert get(conn, f"/never{i}") == (503, "text/plain", b"down")
    conn.close()
    assert not [x for x in SEEN if x.startswith("/never")]


def test_http_drop_first_n_upstream(harness, web):
    p = harness.create("hdu", web)
    harness.add_toxic("hdu", type="http_drop_first_n", stream="upstream", attributes={"n": 1})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    assert [get(conn, f"/first{i}")[0] for i in range(3)] == [503, 200, 200]
    conn.close()
    assert "/first0" not in SEEN and "/first1" in SEEN


def test_http_content_type_rewrite(harness, web):
    p = harness.create("hc", web)
    harness.add_toxic("hc", type="http_content_type", attributes={"content_type": "text/html; charset=utf-8"})
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    assert get(conn, "/api/login") == (200, "text/html; charset=utf-8", b"/api/login")
    assert get(conn, "/noctype") == (200, "text/html; charset=utf-8", b"/noctype")
    conn.close()


def test_http_toxic_steps_aside_for_non_http(harness):
    up = TcpServer(echo_handler)
    try:
        p = harness.create("raw", up.address)
        harness.add_toxic("raw", type="http_status", attributes={"status": 500})
        s = connect(harness.listen_port(p))
        s.sendall(b"\x00\x01 not http at all\r\n\r\n")
        assert recv_exactly(s, 22) == b"\x00\x01 not http at all\r\n\r\n"
        s.close()
    finally:
        up.close()


@pytest.mark.parametrize("body", [
    {"type": "http_status", "attributes": {"status": 99}},
    {"type": "http_status", "attributes": {"percent": 101}},
    {"type": "http_status", "attributes": {"body": 5}},
    {"type": "http_status", "attributes": {"content_type": "a\r\nX-Evil: 1"}},
    {"type": "http_status", "attributes": {"body": "x" * 2000}},
    {"type": "http_content_type", "attributes": {"content_type": ""}},
    {"type": "http_drop_first_n", "attributes": {"n": -1}},
])
def test_http_toxic_validation(harness, body):
    harness.create("v", "127.0.0.1:1")
    st, js, raw = harness.api.post("/proxies/v/toxics", body)
    assert st == 400, raw


def test_http_toxic_joins_live_keepalive_connection(harness, web):
    p = harness.create("live", web)
    conn = http.client.HTTPConnection("127.0.0.1", harness.listen_port(p), timeout=20)
    assert get(conn, "/before")[0] == 200
    harness.add_toxic("live", type="http_status", attributes={"status": 502, "body": "late"})
    harness.add_toxic("live", name="up", type="http_drop_first_n", stream="upstream",
                      attributes={"n": 1, "status": 429})
    # Both pick up at the next message boundary of this very connection.
    assert get(conn, "/after1") == (429, "text/plain", b"")
    assert get(conn, "/after2") == (502, "text/plain", b"late")
    assert harness.api.delete("/proxies/live/toxics/http_status_downstream")[0] == 204
    assert get(conn, "/after3") == (200, "application/json", b"/after3")
    conn.close()


def read_responses(sock, count, timeout=20, heads=()):
    """Parse `count` Content-Length framed responses off a raw socket; the
    responses whose index is in `heads` answer HEAD requests (no body)."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            assert d, f"EOF after {len(out)} responses"
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        if len(out) in heads:
            length = 0
        while len(buf) < length:
            d = sock.recv(65536)
            assert d, "EOF in a body"
            buf += d
        out.append((status, buf[:length]))
        buf = buf[length:]
    return out


def test_upstream_answers_keep_order_with_pipelining(harness, web):
    """A pipelining client: answers given in place of the upstream must wait
    for the responses to earlier requests, as HTTP/1.1 requires."""
    p = harness.create("pipe", web)
    harness.add_toxic("pipe", type="http_status", stream="upstream",
                      attributes={"status": 503, "percent": 50, "body": "no"})
    harness.add_toxic("pipe", name="slow", type="http_latency",  # make the upstream's answers lag
                      attributes={"latency": 50})
    s = connect(harness.listen_port(p))
    n = 20
    s.sendall(b"".join(b"GET /pipe%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n)))
    got = read_responses(s, n)
    s.close()
    statuses = [st for st, _ in got]
    assert 2 <= statuses.count(503) <= 18, statuses
    for i, (st, body) in enumerate(got):
        if st == 503:
            assert body == b"no"
        else:
            assert (st, body) == (200, b"/pipe%d" % i), (i, st, body)


def test_upstream_answers_in_order_after_head_requests(harness, web):
    """A pipelined HEAD's response has a Content-Length but no body: the gate
    must not wait for that body before an answer that follows it."""
    p = harness.create("phead", web)
    harness.add_toxic("phead", type="http_status", stream="upstream",
                      attributes={"status": 503, "percent": 50, "body": "no"})
    methods = [b"HEAD" if i % 2 == 0 else b"GET" for i in range(16)]
    s = connect(harness.listen_port(p))
    t0 = time.monotonic()
    s.sendall(b"".join(b"%s /h%d HTTP/1.1\r\nHost: x\r\n\r\n" % (m, i) for i, m in enumerate(methods)))
    heads = {i for i, m in enumerate(methods) if m == b"HEAD"}
    got = read_responses(s, len(methods), heads=heads)
    s.close()
    assert time.monotonic() - t0 < 5  # not the 10 s fallback
    assert 2 <= [st for st, _ in got].count(503) <= 14
    for i, (st, body) in enumerate(got):
        if st == 503:
            assert body == (b"" if i in heads else b"no")
        else:
            assert (st, body) == (200, b"" if i in heads else b"/h%d" % i), (i, st, body)


def test_two_answering_toxics_keep_pipelined_order(harness, web):
    """Two answering toxics on the upstream stream of one connection: the gate
    numbers requests itself, so both agree on which response each answer
    follows and nothing waits for the 10 s fallback."""
    p = harness.create("two", web)
    harness.add_toxic("two", type="http_status", stream="upstream",
                      attributes={"status": 503, "percent": 50, "body": "no"})
    harness.add_toxic("two", type="http_drop_first_n", stream="upstream",
                      attributes={"n": 5, "status": 429})
    harness.add_toxic("two", name="slow", type="http_latency", attributes={"latency": 20})
    s = connect(harness.listen_port(p))
    n = 30
    t0 = time.monotonic()
    s.sendall(b"".join(b"GET /two%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n)))
    got = read_responses(s, n, timeout=10)
    took = time.monotonic() - t0
    s.close()
    assert took < 3, took  # generous; the fallback would take 10 s
    statuses = [st for st, _ in got]
    assert statuses.count(429) == 5, statuses
    assert statuses.count(503) >= 2, statuses
    for i, (st, body) in enumerate(got):
        if st == 503:
            assert body == b"no"
        elif st == 429:
            assert body == b""
        else:
            assert (st, body) == (200, b"/two%d" % i), (i, st, body)


def test_answers_in_order_beyond_the_request_window(harness, web):
    """More pipelined requests than the gate's window (256): the client is
    read as responses go out (back pressure), answers stay in order, HEAD
    responses keep their framing, and nothing waits for the fallback."""
    p = harness.create("many", web)
    harness.add_toxic("many", type="http_status", stream="upstream",
                      attributes={"status": 503, "percent": 30, "body": "no"})
    n = 600
    methods = [b"HEAD" if i % 7 == 3 else b"GET" for i in range(n)]
    heads = {i for i, m in enumerate(methods) if m == b"HEAD"}
    s = connect(harness.listen_port(p))
    t0 = time.monotonic()
    s.sendall(b"".join(b"%s /m%d HTTP/1.1\r\nHost: x\r\n\r\n" % (m, i) for i, m in enumerate(methods)))
    got = read_responses(s, n, timeout=10, heads=heads)
    took = time.monotonic() - t0
    s.close()
    assert took < 6, took  # generous for 600 requests; the fallback would take 10 s
    assert 60 <= [st for st, _ in got].count(503) <= 300
    for i, (st, body) in enumerate(got):
        if st == 503:
            assert body == (b"" if i in heads else b"no"), (i, body)
        else:
            assert (st, body) == (200, b"" if i in heads else b"/m%d" % i), (i, st, body)


class BodyUpstream:
    """A raw keep-alive HTTP/1.1 upstream: Content-Length requests, answered
    with `METHOD PATH LEN` as the body; counts the bytes it has read and keeps
    the bodies, so a test can tell what the harness forwarded."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = 0
        self.requests = []  # (method, path, body)
        self.split = (b"", b"")
        self.released = threading.Event()
        self.srv = TcpServer(self.handle)
        self.address = self.srv.address

    def handle(self, sock):
        buf = b""

        def more():
            nonlocal buf
            d = sock.recv(65536)
            if not d:
                raise EOFError
            with self.lock:
                self.received += len(d)
            buf += d

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    more()
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    more()
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.requests.append((method, path, body))
                if path == b"/split":  # a body sent in two parts, the second on release()
                    first, second = self.split
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/real\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(first) + len(second), first))
                    self.released.wait(10)
                    sock.sendall(second)
                    continue
                out = b"%s %s %d" % (method, path, len(body))
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
        except (EOFError, OSError, ValueError):
            pass

    def wait_received(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.received >= n:
                    return
            time.sleep(0.01)
        raise AssertionError(f"upstream read {self.received} of {n} bytes")

    def close(self):
        self.srv.close()


def test_http_toxic_joining_mid_body_ignores_a_body_that_looks_like_a_request(harness):
    """A toxic added while a request body is on its way: the rest of the body
    starts with "GET / HTTP/1.1", yet the toxic knows it is body (the gate
    followed the framing from the first byte), passes it intact and acts on
    the next real request only."""
    up = BodyUpstream()
    try:
        p = harness.create("mid", up.address)
        s = connect(harness.listen_port(p))
        first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(first)
        assert read_responses(s, 1) == [(200, b"GET /first 0")]
        fake = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3
        body = b"prefix|" + fake
        head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nprefix|" % len(body)
        s.sendall(head)
        up.wait_received(len(first) + len(head))  # the harness passed it on
        harness.add_toxic("mid", type="http_status", stream="upstream",
                          attributes={"status": 503, "body": "late"})
        harness.add_toxic("mid", name="down", type="http_content_type",
                          attributes={"content_type": "text/x-late"})
        s.sendall(fake)  # a chunk that starts like a request, inside the body
        assert read_responses(s, 1) == [(200, b"POST /up %d" % len(body))]
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(s, 1) == [(503, b"late")]
        s.close()
        with up.lock:
            assert up.requests[1] == (b"POST", b"/up", body)
            assert [r[1] for r in up.requests] == [b"/first", b"/up"]
    finally:
        up.close()


def recv_until(s, done, got=b""):
    """Reads s (with its timeout) until done(bytes so far); fails on EOF."""
    while not done(got):
        d = s.recv(65536)
        assert d, got
        got += d
    return got


def test_http_toxic_joining_mid_response_ignores_a_body_that_looks_like_a_response(harness):
    """The downstream twin: a response body whose second part starts with
    "HTTP/1.1 200 OK"; a content-type toxic added between the parts leaves
    the body intact and rewrites the next real response only."""
    up = BodyUpstream()
    fake = b"HTTP/1.1 200 OK\r\nContent-Type: text/fake\r\nContent-Length: 0\r\n\r\n"
    up.split = (b"part one|", fake)
    try:
        p = harness.create("midr", up.address)
        s = connect(harness.listen_port(p))
        s.settimeout(10)
        s.sendall(b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_until(s, lambda b: b.endswith(b"part one|"))  # the head and the first part
        harness.add_toxic("midr", type="http_content_type",
                          attributes={"content_type": "text/x-late"})
        up.released.set()
        want = len(b"part one|") + len(fake)
        head, body = got.split(b"\r\n\r\n", 1)
        body = recv_until(s, lambda b: len(b) >= want, body)
        assert b"Content-Type: text/real" in head
        assert body == b"part one|" + fake  # intact: not taken for a response
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        nxt = recv_until(s, lambda b: b"GET /next 0" in b)
        assert b"Content-Type: text/x-late" in nxt, nxt
        s.close()
    finally:
        up.released.set()
        up.close()


def received(h, direction):
    """Bytes the harness has read on `direction` (its -proxy-metrics counter)."""
    st, _, raw = h.api.get("/metrics")
    assert st == 200, raw
    for line in raw.decode().splitlines():
        if line.startswith("toxiproxy_proxy_received_bytes_total{") and \
                f'direction="{direction}"' in line:
            return int(line.rsplit(" ", 1)[1])
    return 0


HOLD_MS = 700  # generous: the test's API calls must fit inside it, on a loaded machine too


def test_http_toxic_joining_behind_a_held_body_that_looks_like_a_request():
    """The rest of a request body, starting "GET / HTTP/1.1", is read and held
    by a latency toxic when an http_status toxic is added behind it: by then
    the connection's gate has parsed past those bytes. The new toxic places
    them by their stream position: it passes the body intact (the upstream
    gets the whole request and answers it) and answers the next request."""
    h = Harness("-proxy-metrics")
    up = BodyUpstream()
    try:
        p = h.create("held", up.address)
        h.add_toxic("held", name="hold", type="latency", stream="upstream",
                    attributes={"latency": HOLD_MS})
        s = connect(h.listen_port(p))
        fake = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3
        body = b"prefix|" + fake
        head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nprefix|" % len(body)
        s.sendall(head)
        up.wait_received(len(head), timeout=10)  # through the latency
        s.sendall(fake)
        wait_for(lambda: received(h, "upstream") >= len(head) + len(fake), timeout=10,
                 what="the harness to read the request-looking part")
        h.add_toxic("held", type="http_status", stream="upstream",
                    attributes={"status": 503, "percent": 100, "body": "late"})
        with up.lock:
            assert up.received == len(head), "not held when the toxic joined"
        assert read_responses(s, 1) == [(200, b"POST /up %d" % len(body))]
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(s, 1) == [(503, b"late")]
        s.close()
        with up.lock:
            assert up.requests == [(b"POST", b"/up", body)]
    finally:
        up.close()
        h.stop()


def test_http_toxic_joining_behind_a_held_body_that_looks_like_a_response():
    """The downstream twin: the second part of a response body starts
    "HTTP/1.1 200 OK" and is held by a latency toxic when an http_status
    toxic is added behind it; the body reaches the client intact and the next
    response is the one replaced."""
    h = Harness("-proxy-metrics")
    up = BodyUpstream()
    fake = b"HTTP/1.1 200 OK\r\nContent-Type: text/fake\r\nContent-Length: 0\r\n\r\n"
    up.split = (b"part one|", fake)
    try:
        p = h.create("heldr", up.address)
        h.add_toxic("heldr", name="hold", type="latency", attributes={"latency": HOLD_MS})
        s = connect(h.listen_port(p))
        s.settimeout(10)
        s.sendall(b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_until(s, lambda b: b.endswith(b"part one|"))  # the head and the first part
        before = received(h, "downstream")
        up.released.set()
        wait_for(lambda: received(h, "downstream") >= before + len(fake), timeout=10,
                 what="the harness to read the response-looking part")
        h.add_toxic("heldr", type="http_status",
                    attributes={"status": 502, "percent": 100, "body": "swapped"})
        s.setblocking(False)
        try:
            early = s.recv(65536)
        except BlockingIOError:
            early = b""
        s.setblocking(True)
        s.settimeout(10)
        assert early == b"", "not held when the toxic joined"
        want = len(b"part one|") + len(fake)
        head, body = got.split(b"\r\n\r\n", 1)
        body = recv_until(s, lambda b: len(b) >= want, body)
        assert b"Content-Type: text/real" in head
        assert body == b"part one|" + fake  # intact: neither replaced nor taken for a response
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(s, 1) == [(502, b"swapped")]
        s.close()
        with up.lock:
            assert [r[1] for r in up.requests] == [b"/split", b"/next"]
    finally:
        up.released.set()
        up.close()
        h.stop()
