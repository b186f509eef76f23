"""Loopback helpers shared by the integration tests of cynic's programs.

Harness-neutral: start a program that logs JSON lines to stderr, learn the port
it bound (port 0, read back from its log), talk HTTP/JSON to it, run small TCP
servers and clients, wait for conditions with bounded polls.
"""
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

BUILD_DIR = os.environ.get("CYNIC_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))


def binary(name):
    path = os.path.join(BUILD_DIR, name)
    assert os.access(path, os.X_OK), f"{path} not built"
    return path


def wait_for(cond, timeout=10.0, interval=0.01, what="condition"):
    """Poll cond() until it returns a truthy value or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Program:
    """A program under test that logs JSON lines on stderr.

    `ready_msg` is the log message carrying the bound address in its
    "address" field. stop() sends SIGTERM and checks a clean exit (which, in
    the sanitizer builds, also means no leaks).
    """

    def __init__(self, args, ready_msg, timeout=15.0, env=None):
        self.args = args
        self.lines = []
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = None
        rec = self.wait_log(lambda r: r.get("msg") == ready_msg, timeout)
        self.address = rec["address"]
        host, port = self.address.rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def records(self):
        out = []
        with self._cond:
            lines = list(self.lines)
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_log(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.records():
                if pred(rec):
                    return rec
            if self.proc.poll() is not None:
                time.sleep(0.05)
                raise AssertionError(f"program exited ({self.proc.returncode}): " + "\n".join(self.lines[-30:]))
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for a log line:\n" + "\n".join(self.lines[-30:]))
            with self._cond:
                self._cond.wait(0.05)

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("program did not stop on SIGTERM")
        self._reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert rc == 0, f"exit status {rc}:\n" + "\n".join(self.lines[-40:])
        return rc


class Api:
    """A keep-alive HTTP/JSON client."""

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def request(self, method, path, body=None, raw=None, headers=None):
        """Returns (status, parsed JSON or None, raw bytes)."""
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        parsed = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = None
        return resp.status, parsed, payload

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return self.request("POST", path, body=body)

    def patch(self, path, body=None):
        return self.request("PATCH", path, body=body)

    def delete(self, path):
        return self.request("DELETE", path)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class TcpServer:
    """A threaded loopback TCP server on host:port (0: any); `handler(sock)`
    runs per connection. close() also closes the connections still open."""

    def __init__(self, handler, host="127.0.0.1", port=0, backlog=128):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.accepted = 0
        self.conns = []
        self.errors = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return self.address

    def _loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(c)
        except OSError as e:
            self.errors.append(e)
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def echo_handler(c):
    """Echo until EOF, then half-close back."""
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    c.settimeout(5)
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass


def connect(port, host="127.0.0.1", timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(s, timeout=10.0, limit=1 << 30):
    """Read until EOF; returns bytes. Raises on timeout."""
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < limit:
        d = s.recv(1 << 20)
        if not d:
            break
        out += d
    return bytes(out)


def recv_to_end(s, timeout=10.0):
    """Read until the peer ends the stream; returns (bytes, how) where how is
    "fin" (EOF) or "reset" (ECONNRESET)."""
    s.settimeout(timeout)
    out = bytearray()
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                return bytes(out), "fin"
            out += d
    except ConnectionResetError:
        return bytes(out), "reset"


def reset_behind_data(payload):
    """A server that reads the request, sends `payload` and resets at once
    (SO_LINGER 0): its last bytes and the reset arrive together."""
    def handler(conn):
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sendall(payload)
        conn.close()
    return TcpServer(handler)


def rounds_ending_in_fin(connect, payload, rounds=30):
    """`rounds` calls through connect() to a reset_behind_data(payload)
    server; each must get a prefix of payload. Returns the (round, bytes)
    of those that ended in a FIN instead of a reset."""
    fins = []
    for i in range(rounds):
        with connect() as c:
            c.sendall(b"go")
            data, how = recv_to_end(c)
            assert payload.startswith(data)
            if how == "fin":
                fins.append((i, len(data)))
    return fins


def raw_request(host, port, request, timeout=10.0):
    """Send request (raw bytes, Connection: close) on a new connection and
    read the answer to EOF within timeout; returns (head, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        data = recv_all(s, timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


# Requests every HTTP listener of ours (the admin API, the harness API) must
# refuse with 400 and a close: the request-smuggling vectors of
# src/common/http_msg.h that llhttp's defaults would let through.
SMUGGLING = [
    ("two Host", b"GET {path} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "duplicate Host"),
    ("no Host on HTTP/1.1", b"GET {path} HTTP/1.1\r\nUser-Agent: t\r\n\r\n", "missing Host"),
    ("space before the colon", b"GET {path} HTTP/1.1\r\nHost : a\r\n\r\n", "Invalid header token"),
    ("obs-fold", b"GET {path} HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", "obs-fold"),
    ("identity, chunked", b"POST {path} HTTP/1.1\r\nHost: a\r\n"
     b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding other than chunked"),
    ("CL and TE", b"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Content-Length can't be present with Transfer-Encoding"),
]


def assert_smuggling_refused(host, port, path, timeout=10.0):
    """Each SMUGGLING request (with `path`) on its own connection: a 400 whose
    JSON names the rule, then the server closes (EOF within timeout)."""
    for name, template, reason in SMUGGLING:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(template.replace(b"{path}", path.encode()))
            data, how = recv_to_end(s, timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (name, data, how)
        js = strict_json(body)
        assert js["status"] == 400 and reason in js["error"], (name, js)


def strict_json(payload):
    """payload parsed as JSON from strict UTF-8 (bad bytes raise)."""
    return json.loads(payload.decode("utf-8", "strict"))


def recv_exactly(s, n, timeout=10.0):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise AssertionError(f"EOF after {len(out)} of {n} bytes")
        out += d
    return bytes(out)


def refused(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), timeout=2)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


# ---- load helpers shared by test_admin_load, test_harness_api_load and bench/admin_load.py

def hostile(addr, request, count):
    """A client that pipelines `count` copies of `request` (as many as the
    server takes) and never reads; a tiny receive buffer. Returns the socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(addr)
    s.setblocking(False)
    data = request * count
    sent = 0
    try:
        while sent < len(data):
            sent += s.send(data[sent:sent + (1 << 16)])
    except BlockingIOError:
        pass  # the server stopped reading: no read-ahead
    return s


class RoundTrips:
    """Proxied round trips on one kept connection, in a thread: 32 bytes out,
    32 back, as fast as they come."""

    def __init__(self, px):
        self.sock = px.connect("app", timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.samples = []
        self.stop = threading.Event()
        self.error = None
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        msg = b"x" * 32
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                self.sock.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    d = self.sock.recv(64)
                    if not d:
                        raise EOFError("proxy closed the client")
                    got += d
                self.samples.append(time.monotonic() - t0)
                time.sleep(0.001)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def finish(self):
        self.stop.set()
        self.th.join(30)
        self.sock.close()
        assert self.error is None, self.error
        return self.samples
