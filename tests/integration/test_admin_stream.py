"""GET /status/stream: server-sent events over a real socket. Events arrive
(the status at once, then a sample and a status every second), a breaker
trip is announced by its own `transition` event, the number of stream clients
is capped (503 JSON past it), a client that never reads is dropped (logged,
its place freed) without cynic's memory growing with what it did not read,
and the token rule (?token= accepted on this endpoint only)."""
import json
import os
import socket
import threading
import time

import adminutil as au
import proxyutil as pu

MAX_STREAMS = 8  # CYNIC__ADMIN_MAX_STREAMS


class Stream:
    """A raw server-sent-events client: sends the GET, parses the head, then
    yields (event, data) blocks."""

    def __init__(self, adm, path="/status/stream", headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((adm.host, adm.port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: cynic\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.buf = b""

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            assert data, "closed before the head"
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        return status, hdrs

    def body_rest(self):
        """For a non-stream answer: the body (Content-Length)."""
        status, hdrs = self.head()
        n = int(hdrs["content-length"])
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        return status, hdrs, json.loads(self.buf[:n])

    def event(self):
        """The next event with a name: (name, parsed data)."""
        while True:
            while b"\n\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("stream closed")
                self.buf += data
            block, self.buf = self.buf.split(b"\n\n", 1)
            name, data = None, []
            for line in block.decode().split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if name is not None:
                return name, json.loads("\n".join(data))

    def close(self):
        self.sock.close()


def state_of(st, upstream, endpoint):
    for u in st["upstreams"]:
        if u["name"] == upstream and not u.get("retired"):
            for e in u["endpoints"]:
                if e["name"] == endpoint:
                    return e["breaker"]["state"]
    return None


def test_stream_pushes_status_samples_and_transitions():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    s = None
    try:
        s = Stream(adm)
        status, hdrs = s.head()
        assert status == 200
        assert hdrs["content-type"] == "text/event-stream"
        assert hdrs["cache-control"] == "no-store"
        assert "content-length" not in hdrs
        name, st = s.event()  # the status at once
        assert name == "status"
        assert state_of(st, "backend", good.endpoint) == "closed"
        assert st["version"] and "upstreams" in st and "transitions" in st
        # then, every second, the newest samples and the status
        seen = set()
        end = time.monotonic() + 10
        while seen != {"sample", "status"} and time.monotonic() < end:
            name, data = s.event()
            seen.add(name)
            if name == "sample":
                assert "backend" in data["upstreams"] and "now" in data
                assert {"t", "conns", "done", "errors", "open", "in_use", "p99_ms"} <= set(data["upstreams"]["backend"])
        assert seen == {"sample", "status"}

        # a trip is announced by its own event, before any later tick
        t0 = time.monotonic()
        assert adm.post("/breakers/backend/trip", {"reason": "stream test"})[0] == 200
        while True:
            name, data = s.event()
            if name in ("status", "transition") and state_of(data, "backend", good.endpoint) == "forced_open":
                break
        assert name == "transition", "the first status showing the trip came from a tick, not the transition"
        assert time.monotonic() - t0 < 5  # generous: it is pushed in the same loop iteration
        assert data["transitions"][0]["to"] == "forced_open"
        assert data["transitions"][0]["why"] == "stream test"

        # only GET
        st_, _, js, _ = adm.post("/status/stream")
        assert st_ == 405 and js["status"] == 405
    finally:
        if s:
            s.close()
        px.stop()
        good.close()


def test_stream_clients_are_capped():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            s = Stream(adm)
            streams.append(s)
            assert s.head()[0] == 200
            assert s.event()[0] == "status"
        extra = Stream(adm)
        status, hdrs, js = extra.body_rest()
        extra.close()
        assert status == 503, status
        assert js["status"] == 503 and "too many status streams" in js["error"]
        assert hdrs["retry-after"] == "5"
        assert adm.get("/health")[0] == 200  # the API itself is not capped by this
        # one leaves: its place is free again
        streams.pop().close()
        def reopened():
            s = Stream(adm)
            if s.head()[0] == 200:
                streams.append(s)
                return True
            s.close()
            return False
        pu.wait_for(reopened, timeout=10, interval=0.1, what="a free stream place")
    finally:
        for s in streams:
            s.close()
        px.stop()
        good.close()


def test_a_client_that_never_reads_is_dropped():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    reader = stuck = None
    stop = threading.Event()
    got = {"events": 0}
    try:
        reader = Stream(adm)
        assert reader.head()[0] == 200

        def read_all():
            try:
                while not stop.is_set():
                    reader.event()
                    got["events"] += 1
            except (OSError, EOFError):
                pass
        th = threading.Thread(target=read_all, daemon=True)
        th.start()
        stuck = Stream(adm, rcvbuf=4096)  # sends the GET, then never reads
        pu.wait_for(lambda: got["events"] >= 1, what="the reader's first event")
        base = pu.rss_kb(px.pid)
        # every trip and reset pushes a `transition` event with the whole
        # status (its transitions list grows to 128 entries, ~25 KB)
        pairs = 0
        while not px.logs(event="status_stream_dropped") and pairs < 3000:
            adm.post("/breakers/backend/trip")
            adm.post("/breakers/backend/reset")
            pairs += 1
        drops = px.logs(event="status_stream_dropped")
        assert drops, f"not dropped after {pairs} trip/reset pairs"
        d = drops[0]
        assert d["level"] == "warn"
        # the limit: 1 MiB plus the previous push (a reader that keeps up
        # gets every event, however large the status)
        assert (1 << 20) < d["limit_bytes"] <= (1 << 20) + (256 << 10)
        # dropped at the first event finding more than the limit queued
        assert d["limit_bytes"] < d["pending_bytes"] <= d["limit_bytes"] + (1 << 20)
        assert d["client"].startswith("127.0.0.1:")
        grown_kb = pu.rss_kb(px.pid) - base
        print(f"dropped after {pairs} pairs; RSS grew {grown_kb} KB; drop {d}")
        limit_kb = 128 * 1024 if pu.sanitized() else 24 * 1024
        assert grown_kb < limit_kb, f"RSS grew {grown_kb} KB"
        # the dropped client sees the end of its stream once it reads
        stuck.sock.settimeout(10)
        total = 0
        while True:
            try:
                data = stuck.sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not data:
                break
            total += len(data)
            assert total < 64 << 20
        # the reader kept up and was not dropped; the stuck one's place is free
        assert len(px.logs(event="status_stream_dropped")) == 1
        n = got["events"]
        pu.wait_for(lambda: got["events"] > n, what="the reader still gets events")
        more = [Stream(adm) for _ in range(MAX_STREAMS - 1)]
        try:
            for s in more:
                assert s.head()[0] == 200
        finally:
            for s in more:
                s.close()
    finally:
        stop.set()
        for s in (reader, stuck):
            if s:
                s.close()
        px.stop()
        good.close()


def test_stream_token_in_the_query_on_this_endpoint_only(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret+/=\n")
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint]),
                            admin=au.token_config(str(tok))))
    adm = au.Admin(px, token="s3cret+/=")
    try:
        for path in ("/status/stream", "/status/stream?token=wrong", "/status/stream?token="):
            s = Stream(adm, path)
            status, hdrs, js = s.body_rest()
            s.close()
            assert status == 401 and js["status"] == 401, path
            assert hdrs["www-authenticate"].startswith("Bearer")
        for path, headers in (("/status/stream?token=s3cret%2B%2F%3D", None),
                              ("/status/stream?x=1&token=s3cret%2B%2F%3D", None),
                              ("/status/stream", {"Authorization": "Bearer s3cret+/="})):
            s = Stream(adm, path, headers=headers)
            assert s.head()[0] == 200, path
            assert s.event()[0] == "status"
            s.close()
        # anywhere else the query token is not a credential
        assert adm.get("/status?token=s3cret%2B%2F%3D", token="")[0] == 401
    finally:
        px.stop()
        good.close()
